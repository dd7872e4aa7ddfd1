// Plays encrypted titles through the hlsvault gateway in headless Chromium.
//
//   node e2e/browser/play.mjs <watch-url> [--seconds N]
//       the gateway's own player page (/watch/{video}?token=…, hls.js);
//       prints one JSON line {ok, frames, currentTime, width, height, ...}.
//
//   node e2e/browser/play.mjs --master <master-url> [--players hlsjs,shaka]
//       [--seconds N] [--audio LANG] [--text LANG] [--start T]
//       [--page <watch-url>]
//       each player (default both) in its own page of ONE Chromium, in
//       parallel: the gateway's /watch page for the master's video (or
//       --page), with its scripts replaced by the player's library and
//       harness.js, so the master is fetched same-origin and under the
//       gateway's own Content-Security-Policy. --audio switches to
//       that audio language once playback runs and requires the player to
//       confirm it; --text enables that subtitle track and requires one of
//       its cues to be shown. Prints one JSON line
//       {ok, players: {hlsjs: R, shaka: R}, problems} where R is
//       {ok, frames, dropped, currentTime, width, height, audioTracks,
//        textTracks, activeAudio, audioSwitched, cue, notices, problems}.
//
// A player passes when the video element has decoded frames, its
// currentTime has advanced past N seconds (default 1.5), every requested
// switch happened, and there was no player error, page error, console error
// or failed request. hls.js's non-fatal gap jumps (bufferSeekOverHole,
// bufferNudgeOnStall), non-fatal stalls (bufferStalledError,
// bufferAppendNoProgress) and, with --audio or --start, a non-fatal aborted
// load, which a switch or seek causes, are reported as notices,
// not errors. Exit 0 when every
// player passes, 1 otherwise, 2 on bad usage.
// CHROMIUM overrides the browser binary (default /usr/bin/chromium, Debian's
// package). Tokens are redacted from everything printed.
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const argv = process.argv.slice(2);
const flag = (name, def) => {
  const i = argv.indexOf("--" + name);
  return i >= 0 && i + 1 < argv.length ? argv[i + 1] : def;
};
const masterURL = flag("master", null);
const watchURL = masterURL ? null : argv.find((a) => !a.startsWith("--"));
const minSeconds = Number(flag("seconds", "1.5"));
// --start T: seek to T once playing (e.g. just before a chunk seam), then
// play past --seconds.
const startAt = Number(flag("start", "0"));
const players = flag("players", "hlsjs,shaka").split(",").filter(Boolean);
const audio = flag("audio", null);
const text = flag("text", null);
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
const redact = (s) => String(s).replace(/(token=|sig=)[^&\s"]+/g, "$1REDACTED");

if (!masterURL && !watchURL) {
  console.error("usage: node play.mjs <watch-url> [--seconds N]\n" +
    "       node play.mjs --master <url> [--players hlsjs,shaka] [--seconds N] [--audio LANG] [--text LANG]");
  process.exit(2);
}
for (const p of players) {
  if (p !== "hlsjs" && p !== "shaka") {
    console.error(`unknown player ${p} (hlsjs, shaka)`);
    process.exit(2);
  }
}
if (!existsSync(executablePath)) {
  console.error(`chromium not found at ${executablePath} (apt-get install chromium, or set CHROMIUM)`);
  process.exit(2);
}

const LIBS = {
  hlsjs: join(here, "node_modules", "hls.js", "dist", "hls.min.js"),
  shaka: join(here, "node_modules", "shaka-player", "dist", "shaka-player.compiled.js"),
};
const BENIGN = new Set(["bufferSeekOverHole", "bufferNudgeOnStall"]);
// A non-fatal stall (the buffer ran dry, or an append waited) is a matter of
// timing, not of the stream: on a loaded 2-core CI machine hls.js reported
// both, once each, in the first 1.6 s of an unchunked and of a chunked
// title that then played on. They are notices; a pass still needs frames
// decoded and currentTime past --seconds, so a stall that never recovers
// fails by timeout.
const STALL = new Set(["bufferStalledError", "bufferAppendNoProgress"]);
// An audio switch while playing aborts the old track's fragment load and
// flushes and refills the audio buffer: hls.js may report (non-fatal) the
// abort, a short stall or an append that added nothing. Playback must still
// advance past --seconds.
const SWITCH = new Set(["aborted", "bufferStalledError", "bufferAppendNoProgress"]);
// A seek (--start) flushes and refills the buffers as a switch does, so
// the same are notices after one (frames must still be decoded past the
// seek). hls.js 1.7 also reports its first append of an alternate audio
// rendition's first fragment as making no progress, on every title with an
// audio group: a STALL notice.

// dedupe keeps the first of repeated problems (a player retrying a
// request reports the same failure many times), at most 20.
function dedupe(list) {
  const out = [...new Set(list)];
  return out.length > 20 ? [...out.slice(0, 20), `... and ${out.length - 20} more`] : out;
}

// watch records what goes wrong on a page into problems.
function watch(page, problems) {
  page.on("pageerror", (e) => problems.push("page error: " + redact(e)));
  page.on("console", (m) => {
    if (m.type() === "error") problems.push("console error: " + redact(m.text()));
  });
  page.on("requestfailed", (r) => {
    // A player aborting a request it no longer needs (a switch) is no failure.
    const err = r.failure()?.errorText || "";
    if (err !== "net::ERR_ABORTED") problems.push(`request failed: ${redact(r.url())} ${err}`);
  });
  page.on("response", (r) => {
    if (r.status() >= 400) problems.push(`HTTP ${r.status()}: ${redact(r.url())}`);
  });
}

// playWatchPage is the gateway's product page with its hls.js.
async function playWatchPage(browser) {
  const problems = [];
  const notices = [];
  let result = null;
  const page = await browser.newPage();
  watch(page, problems);
  try {
    await page.goto(watchURL, { waitUntil: "load" });
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
      if (!e.fatal && e.type === "mediaError" && (BENIGN.has(e.details) || STALL.has(e.details))) notices.push(e.details);
      else problems.push("hls.js error: " + JSON.stringify(e));
    }
  } catch (e) {
    problems.push("error: " + redact(e && e.message ? e.message : e));
  }
  const ok = problems.length === 0 && result && result.frames > 0;
  if (result) delete result.errors;
  return { ok, ...(result || {}), notices, problems };
}

// playHarness plays the master with one player. The document is the
// gateway's own /watch page (a real response from the gateway, so Chromium
// places it in the gateway's address space and applies the gateway's
// Content-Security-Policy); its two scripts, /player/hls.min.js and
// /player/watch.js, are replaced here by the player's library and
// harness.js, and the options are injected before any script runs.
async function playHarness(browser, player) {
  const problems = [];
  const notices = [];
  const m = new URL(masterURL);
  const video = decodeURIComponent((m.pathname.match(/^\/v1\/videos\/([^/]+)\/master\.m3u8$/) || [])[1] || "");
  const pageURL = flag("page", null) || `${m.origin}/watch/${encodeURIComponent(video)}${m.search}`;
  const context = await browser.newContext();
  await context.addInitScript((o) => { window.__e2eOptions = o; }, { player, src: masterURL, audio, text });
  const origin = new URL(pageURL).origin;
  await context.route(origin + "/player/hls.min.js*", (route) =>
    route.fulfill({ status: 200, contentType: "text/javascript; charset=utf-8", body: readFileSync(LIBS[player]) }));
  await context.route(origin + "/player/watch.js*", (route) =>
    route.fulfill({ status: 200, contentType: "text/javascript; charset=utf-8", body: readFileSync(join(here, "harness.js")) }));
  const page = await context.newPage();
  watch(page, problems);
  let r = null;
  try {
    await page.goto(pageURL, { waitUntil: "load" });
    const handle = await page.waitForFunction(({ min, audio, text, start }) => {
      const s = window.__e2e;
      const v = document.getElementById("player");
      if (!s || !v) return false;
      const q = v.getVideoPlaybackQuality();
      const snap = { ...s, frames: q.totalVideoFrames, dropped: q.droppedVideoFrames, currentTime: v.currentTime,
        width: v.videoWidth, height: v.videoHeight, seekedFrom: window.__e2eSeeked ? window.__e2eSeeked.frames : null };
      if (s.fatal) return snap;
      // --start: once playing, seek there once; frames must then be
      // decoded after the seek, up to --seconds.
      if (start > 0 && !window.__e2eSeeked && q.totalVideoFrames > 0) {
        window.__e2eSeeked = { frames: q.totalVideoFrames };
        v.currentTime = start;
        return false;
      }
      const seeked = !(start > 0) || (window.__e2eSeeked && q.totalVideoFrames > window.__e2eSeeked.frames);
      const played = seeked && q.totalVideoFrames > 0 && v.currentTime >= min;
      if (played && (!audio || s.audioSwitched) && (!text || s.cue.shown)) return snap;
      window.__e2eLast = snap;
      return false;
    }, { min: minSeconds, audio, text, start: startAt }, { timeout: 60000, polling: 200 }).catch(async (e) => {
      problems.push(`${player}: timed out (${redact(e.message.split("\n")[0])})`);
      return null;
    });
    r = handle ? await handle.jsonValue() : await page.evaluate(() => window.__e2eLast || window.__e2e || null);
  } catch (e) {
    problems.push(`${player}: error: ` + redact(e && e.message ? e.message : e));
  }
  await context.close();
  if (!r) return { ok: false, notices, problems };
  if (r.fatal) problems.push(`${player}: fatal: ${redact(r.fatal)}`);
  for (const e of r.errors || []) {
    if (player === "hlsjs" && !e.fatal && (e.type === "mediaError" && (BENIGN.has(e.details) || STALL.has(e.details)) || (audio || startAt > 0) && SWITCH.has(e.details))) {
      notices.push(e.details);
    }
    else problems.push(`${player} error: ` + redact(JSON.stringify(e)));
  }
  if (audio && !r.audioSwitched) problems.push(`${player}: did not switch to audio ${audio} (active ${r.activeAudio})`);
  if (text && !r.cue.shown) problems.push(`${player}: no cue of text track ${text} shown`);
  if (!(r.frames > 0)) problems.push(`${player}: no decoded frames`);
  const { errors, fatal, ready, player: _, ...rest } = r;
  return { ok: problems.length === 0, ...rest, notices: [...new Set(notices)], problems: dedupe(problems) };
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
let out;
try {
  if (watchURL) {
    out = await playWatchPage(browser);
  } else {
    const results = await Promise.all(players.map((p) => playHarness(browser, p)));
    const byPlayer = Object.fromEntries(players.map((p, i) => [p, results[i]]));
    out = { ok: results.every((r) => r.ok), players: byPlayer, problems: results.flatMap((r) => r.problems) };
  }
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
process.exit(out.ok ? 0 : 1);
