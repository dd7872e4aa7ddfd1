// Plays a gateway player page (/watch/{video}?token=…) in headless Chromium
// and checks that hls.js decodes the encrypted title without an error.
//
//   node e2e/browser/play.mjs <url> [--seconds N]
//
// Exit 0 and one JSON line on stdout when the video element has decoded
// frames and its currentTime has advanced past N seconds (default 1.5) with
// no hls.js error, no page error and no failed request; exit 1 otherwise.
// hls.js's non-fatal gap jumps (bufferSeekOverHole, bufferNudgeOnStall) are
// reported as notices, not errors.
// CHROMIUM overrides the browser binary (default /usr/bin/chromium, Debian's
// package). Tokens are redacted from everything printed.
import { existsSync } from "node:fs";
import { chromium } from "playwright-core";

const url = process.argv[2];
const secIdx = process.argv.indexOf("--seconds");
const minSeconds = secIdx > 0 ? Number(process.argv[secIdx + 1]) : 1.5;
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
const redact = (s) => String(s).replace(/(token=)[^&\s"]+/g, "$1REDACTED");

if (!url) {
  console.error("usage: node play.mjs <url> [--seconds N]");
  process.exit(2);
}
if (!existsSync(executablePath)) {
  console.error(`chromium not found at ${executablePath} (apt-get install chromium, or set CHROMIUM)`);
  process.exit(2);
}

const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--autoplay-policy=no-user-gesture-required", "--mute-audio",
  ],
});
const BENIGN = new Set(["bufferSeekOverHole", "bufferNudgeOnStall"]);
const problems = [];
const notices = [];
let result = null;
try {
  const page = await browser.newPage();
  page.on("pageerror", (e) => problems.push("page error: " + redact(e)));
  page.on("console", (m) => {
    if (m.type() === "error") problems.push("console error: " + redact(m.text()));
  });
  page.on("requestfailed", (r) => problems.push(`request failed: ${redact(r.url())} ${r.failure()?.errorText}`));
  page.on("response", (r) => {
    if (r.status() >= 400) problems.push(`HTTP ${r.status()}: ${redact(r.url())}`);
  });
  await page.goto(url, { waitUntil: "load" });
  const handle = await page.waitForFunction((min) => {
    const s = window.__hlsvault;
    const v = document.getElementById("player");
    if (!s || !v) return false;
    if (s.fatal) return { fatal: s.fatal, errors: s.errors };
    const q = v.getVideoPlaybackQuality();
    if (q.totalVideoFrames > 0 && v.currentTime >= min) {
      return { frames: q.totalVideoFrames, dropped: q.droppedVideoFrames, currentTime: v.currentTime,
        width: v.videoWidth, height: v.videoHeight, errors: s.errors };
    }
    return false;
  }, minSeconds, { timeout: 60000, polling: 200 });
  result = await handle.jsonValue();
  if (result.fatal) problems.push("hls.js fatal error: " + result.fatal);
  for (const e of result.errors || []) {
    // hls.js reports jumping a small gap in the buffer (e.g. the first
    // segment starting a frame late) as a non-fatal "error" it has already
    // handled; anything else counts.
    if (!e.fatal && e.type === "mediaError" && BENIGN.has(e.details)) notices.push(e.details);
    else problems.push("hls.js error: " + JSON.stringify(e));
  }
} catch (e) {
  problems.push("error: " + redact(e && e.message ? e.message : e));
} finally {
  await browser.close();
}
const ok = problems.length === 0 && result && result.frames > 0;
if (result) delete result.errors;
console.log(JSON.stringify({ ok, ...(result || {}), notices, problems }));
process.exit(ok ? 0 : 1);
