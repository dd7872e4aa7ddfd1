// Plays a gateway player page (/watch/{video}?token=…) in headless Chromium
// and prints, for each subtitle track hls.js exposes, the cues it loaded
// (start, end, text) once playback has passed N seconds (default 2.9):
// the times hls.js computes from each WebVTT segment's X-TIMESTAMP-MAP and
// the video's PTS, decrypting the subtitle segments (AES-128) on the way.
//
//   node e2e/browser/cues.mjs <url> [--seconds N]
//
// One JSON line: {"tracks":[{label, lang, cues:[[start,end,text]…]}…], "errors":[…]}.
// Exit 1 when a track shows no cue in time. CHROMIUM overrides the browser.
import { chromium } from "playwright-core";

const url = process.argv[2];
const secIdx = process.argv.indexOf("--seconds");
const minSeconds = secIdx > 0 ? Number(process.argv[secIdx + 1]) : 2.9;
const redact = (s) => String(s).replace(/(token=)[^&\s"]+/g, "$1REDACTED");
if (!url) {
  console.error("usage: node cues.mjs <url> [--seconds N]");
  process.exit(2);
}
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--autoplay-policy=no-user-gesture-required", "--mute-audio"],
});
const tracks = [];
const problems = [];
let errors = [];
try {
  const page = await browser.newPage();
  page.on("response", (r) => {
    if (r.status() >= 400) problems.push(`HTTP ${r.status()}: ${redact(r.url())}`);
  });
  await page.goto(url, { waitUntil: "load" });
  const n = await (await page.waitForFunction(() => {
    const v = document.getElementById("player");
    return v && v.textTracks.length > 0 && window.__hlsvault && window.__hlsvault.ready && v.textTracks.length;
  }, null, { timeout: 30000 })).jsonValue();
  for (let idx = 0; idx < n; idx++) {
    // Showing a track makes hls.js load its playlist and segments.
    await page.evaluate((i) => {
      const v = document.getElementById("player");
      for (let j = 0; j < v.textTracks.length; j++) v.textTracks[j].mode = j === i ? "showing" : "disabled";
      v.currentTime = 0;
      v.play();
    }, idx);
    const res = await page.waitForFunction(([i, min]) => {
      const v = document.getElementById("player");
      const t = v.textTracks[i];
      if (!t.cues || t.cues.length === 0 || v.currentTime < min) return false;
      return { label: t.label, lang: t.language, cues: Array.from(t.cues).map((c) => [c.startTime, c.endTime, c.text]) };
    }, [idx, minSeconds], { timeout: 30000, polling: 200 });
    tracks.push(await res.jsonValue());
  }
  errors = await page.evaluate(() => window.__hlsvault.errors);
} catch (e) {
  problems.push("error: " + redact(e && e.message ? e.message : e));
} finally {
  await browser.close();
}
console.log(JSON.stringify({ tracks, errors, problems }));
process.exit(problems.length === 0 ? 0 : 1);
