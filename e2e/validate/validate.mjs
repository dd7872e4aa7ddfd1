// Checks HLS playlists (master or media) with two third-party parsers that
// share no code with ours:
//
//   - hls-parser (npm) in strict mode: parse, then stringify the result
//     (strict mode throws on what RFC 8216 forbids: a missing required
//     attribute, a tag in the wrong kind of playlist, an EXTINF longer than
//     the target duration, a version too low for a feature, ...);
//   - m3u8-parser (npm, video.js's parser): lenient, but it reports what it
//     ignored or defaulted as warnings, and every warning counts here.
//
//   node e2e/validate/validate.mjs FILE...      one or more playlist files
//   node e2e/validate/validate.mjs -            one playlist on stdin
//   node e2e/validate/validate.mjs --json       a JSON array on stdin:
//                                               [{"name": "...", "text": "..."}]
//
// Prints one line per playlist ("ok NAME (master|media)" or
// "FAIL NAME: parser: message"), or with --json one JSON object
// {"ok": bool, "results": [{"name", "kind", "problems": [...]}]}.
// Exits 0 when every playlist passes both parsers, 1 when one fails, 2 on
// bad usage. Tokens in URLs are redacted from everything printed.
import { readFileSync } from "node:fs";
import HLS from "hls-parser";
import { Parser as M3U8Parser } from "m3u8-parser";

HLS.setOptions({ strictMode: true, silent: true });

const redact = (s) => String(s).replace(/(token=)[^&\s"]+/g, "$1REDACTED");

// check returns the playlist's kind and the list of problems (empty: ok).
export function check(text) {
  const problems = [];
  let kind = "unknown";
  if (!text.startsWith("#EXTM3U")) problems.push("not a playlist: the first line is not #EXTM3U");
  try {
    const pl = HLS.parse(text);
    kind = pl.isMasterPlaylist ? "master" : "media";
    try {
      HLS.stringify(pl);
    } catch (e) {
      problems.push("hls-parser (strict) stringify: " + (e && e.message ? e.message : e));
    }
  } catch (e) {
    problems.push("hls-parser (strict): " + (e && e.message ? e.message : e));
  }
  const p = new M3U8Parser();
  p.on("warn", (w) => problems.push("m3u8-parser warning: " + (w && w.message ? w.message : JSON.stringify(w))));
  try {
    p.push(text);
    p.end();
    const m = p.manifest;
    if (kind === "media" && (!m.segments || m.segments.length === 0)) {
      problems.push("m3u8-parser: a media playlist without segments");
    }
    if (kind === "master" && (!m.playlists || m.playlists.length === 0)) {
      problems.push("m3u8-parser: a master playlist without variants");
    }
  } catch (e) {
    problems.push("m3u8-parser: " + (e && e.message ? e.message : e));
  }
  return { kind, problems: problems.map(redact) };
}

function readStdin() {
  return readFileSync(0, "utf8");
}

const args = process.argv.slice(2);
if (args.length === 0) {
  console.error("usage: node validate.mjs FILE... | - | --json");
  process.exit(2);
}
let inputs;
const json = args[0] === "--json";
try {
  if (json) {
    inputs = JSON.parse(readStdin());
    if (!Array.isArray(inputs)) throw new Error("stdin: want a JSON array of {name, text}");
  } else if (args[0] === "-") {
    inputs = [{ name: "stdin", text: readStdin() }];
  } else {
    inputs = args.map((f) => ({ name: f, text: readFileSync(f, "utf8") }));
  }
} catch (e) {
  console.error("validate.mjs: " + (e && e.message ? e.message : e));
  process.exit(2);
}

const results = inputs.map(({ name, text }) => ({ name: redact(name), ...check(String(text)) }));
const ok = results.every((r) => r.problems.length === 0);
if (json) {
  console.log(JSON.stringify({ ok, results }));
} else {
  for (const r of results) {
    if (r.problems.length === 0) console.log(`ok ${r.name} (${r.kind})`);
    for (const p of r.problems) console.log(`FAIL ${r.name}: ${p}`);
  }
}
process.exit(ok ? 0 : 1);
