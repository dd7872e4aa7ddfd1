// The test page's player code: play.mjs puts it in place of the gateway's
// /player/watch.js on the gateway's /watch page (the gateway never serves
// it). It plays the master in window.__e2eOptions with one MSE player,
// hls.js or Shaka Player, and records what a test asserts in
// window.__e2e:
//
//   ready, fatal (string or null), errors [{player-specific fields, fatal}],
//   audioTracks [{lang, name, default}], textTracks [{lang, name, kind}],
//   activeAudio (language of the audio track in use, once switched),
//   audioSwitched (the player confirmed the requested language),
//   cue {shown, text} (a cue of the enabled text track was active on the
//   video element), steps [what the page did, in order].
//
// Options: {player: "hlsjs"|"shaka", src, audio: LANG|null, text: LANG|null}.
// LANG matches a track whose language equals it or shares its primary
// subtag ("fr" matches "fr-FR"; "fra" is not normalised here: give what the
// master's LANGUAGE says).
(function () {
  "use strict";
  var opts = window.__e2eOptions;
  var el = document.getElementById("player");
  var state = window.__e2e = {
    player: opts.player, ready: false, fatal: null, errors: [], audioTracks: [], textTracks: [],
    activeAudio: null, audioSwitched: false, cue: { shown: false, text: null }, steps: [],
  };
  function langMatch(have, want) {
    if (!have || !want) return false;
    have = String(have).toLowerCase();
    want = String(want).toLowerCase();
    return have === want || have.split("-")[0] === want.split("-")[0];
  }
  function step(s) { state.steps.push(s); }
  function fail(msg) { if (!state.fatal) state.fatal = msg; }

  // Cues reach the video element's text tracks with both players (hls.js
  // renders natively by default; Shaka without its UI uses the native
  // displayer): a cue is shown when a showing track has an active cue.
  function watchCues() {
    setInterval(function () {
      for (var i = 0; i < el.textTracks.length; i++) {
        var tt = el.textTracks[i];
        if (tt.mode === "showing" && tt.activeCues && tt.activeCues.length > 0 && !state.cue.shown) {
          state.cue = { shown: true, text: tt.activeCues[0].text || "", at: el.currentTime, lang: tt.language };
        }
        // A cue that arrived after its time had played (on a loaded
        // machine Shaka fetched a 3 s title's subtitles after playing to
        // its end) is played again, once: the check is that the player
        // shows the track's cues, not that it fetches text before video.
        if (tt.mode === "showing" && !state.cue.shown && !state.cueReplayed && tt.cues && tt.cues.length > 0 &&
            el.currentTime > tt.cues[0].endTime) {
          state.cueReplayed = true;
          step("replayed from the first cue, which arrived after its time");
          el.currentTime = tt.cues[0].startTime;
          var p = el.play();
          if (p && p.catch) p.catch(function () {});
        }
      }
    }, 100);
  }

  function playHlsjs() {
    if (!window.Hls || !window.Hls.isSupported()) return fail("hls.js: MSE not supported");
    var Hls = window.Hls;
    var hls = window.__hls = new Hls({ renderTextTracksNatively: true });
    hls.on(Hls.Events.ERROR, function (ev, d) {
      state.errors.push({ type: d.type, details: d.details, fatal: !!d.fatal,
        code: d.response ? d.response.code : null, frag: d.frag ? d.frag.type + ":" + d.frag.sn : null });
      if (d.fatal) fail("hls.js " + d.type + " " + d.details);
    });
    // hls.js lists the tracks of the current variant's groups, once known.
    function listAudio() {
      state.audioTracks = hls.audioTracks.map(function (t) {
        return { lang: t.lang || null, name: t.name || null, default: !!t.default };
      });
    }
    function listText() {
      state.textTracks = hls.subtitleTracks.map(function (t) {
        return { lang: t.lang || null, name: t.name || null, kind: t.type || "subtitles" };
      });
    }
    hls.on(Hls.Events.MANIFEST_PARSED, function (ev, d) {
      state.ready = true;
      step("manifest parsed: " + d.levels.length + " levels");
      listAudio();
      listText();
      el.play().catch(function (e) { step("play() refused: " + e.name); });
    });
    hls.on(Hls.Events.AUDIO_TRACKS_UPDATED, listAudio);
    hls.on(Hls.Events.SUBTITLE_TRACKS_UPDATED, listText);
    hls.on(Hls.Events.LEVEL_SWITCHED, function (ev, d) {
      var l = hls.levels[d.level] || {};
      step("level " + d.level + ": " + (l.width || 0) + "x" + (l.height || 0) + " " + (l.codecs || l.attrs && l.attrs.CODECS || "no CODECS"));
    });
    hls.on(Hls.Events.AUDIO_TRACK_SWITCHED, function (ev, d) {
      var t = hls.audioTracks[d.id];
      state.activeAudio = t ? t.lang || null : null;
      if (opts.audio && langMatch(state.activeAudio, opts.audio)) state.audioSwitched = true;
      step("audio track " + state.activeAudio);
    });
    hls.on(Hls.Events.SUBTITLE_TRACK_SWITCH, function (ev, d) { step("subtitle track " + d.id); });
    // Switch once playback runs: that is the switch a viewer makes.
    el.addEventListener("playing", function once() {
      el.removeEventListener("playing", once);
      if (opts.audio) {
        var i = hls.audioTracks.findIndex(function (t) { return langMatch(t.lang, opts.audio); });
        if (i < 0) fail("hls.js: no audio track in " + opts.audio);
        else if (hls.audioTrack === i) { state.activeAudio = hls.audioTracks[i].lang; state.audioSwitched = true; }
        else hls.audioTrack = i;
      }
      if (opts.text) {
        var j = hls.subtitleTracks.findIndex(function (t) { return langMatch(t.lang, opts.text); });
        if (j < 0) fail("hls.js: no subtitle track in " + opts.text);
        else { hls.subtitleDisplay = true; hls.subtitleTrack = j; }
      }
    });
    hls.loadSource(opts.src);
    hls.attachMedia(el);
  }

  function playShaka() {
    var shaka = window.shaka;
    if (!shaka) return fail("shaka: library not loaded");
    shaka.polyfill.installAll();
    if (!shaka.Player.isBrowserSupported()) return fail("shaka: browser not supported");
    var player = window.__shaka = new shaka.Player();
    player.addEventListener("error", function (ev) {
      var d = ev.detail || {};
      state.errors.push({ category: d.category, code: d.code, severity: d.severity, fatal: d.severity === 2,
        data: (d.data || []).map(function (x) { return String(x).slice(0, 200); }) });
      if (d.severity === 2) fail("shaka error " + d.category + "/" + d.code);
    });
    player.addEventListener("variantchanged", function () { step("variant changed"); });
    player.attach(el).then(function () {
      return player.load(opts.src);
    }).then(function () {
      state.ready = true;
      step("loaded");
      var seen = {};
      state.audioTracks = [];
      player.getVariantTracks().forEach(function (t) {
        var key = (t.language || "") + "|" + (t.label || "");
        if (seen[key]) return;
        seen[key] = true;
        state.audioTracks.push({ lang: t.language || null, name: t.label || null, default: !!t.primary });
      });
      state.textTracks = player.getTextTracks().map(function (t) {
        return { lang: t.language || null, name: t.label || null, kind: t.kind || "subtitle" };
      });
      el.play().catch(function (e) { step("play() refused: " + e.name); });
    }).catch(function (e) {
      state.errors.push({ category: e.category, code: e.code, severity: e.severity, fatal: true });
      fail("shaka load: " + (e.code ? e.category + "/" + e.code : e));
    });
    el.addEventListener("playing", function once() {
      el.removeEventListener("playing", once);
      if (opts.audio) {
        var langs = player.getAudioLanguages();
        var want = langs.find(function (l) { return langMatch(l, opts.audio); });
        if (!want) fail("shaka: no audio track in " + opts.audio + " (have " + langs.join(",") + ")");
        else {
          player.selectAudioLanguage(want);
          var active = player.getVariantTracks().find(function (t) { return t.active; });
          state.activeAudio = active ? active.language : null;
          state.audioSwitched = langMatch(state.activeAudio, opts.audio);
          step("audio language " + state.activeAudio);
        }
      }
      if (opts.text) {
        var t = player.getTextTracks().find(function (x) { return langMatch(x.language, opts.text); });
        if (!t) fail("shaka: no text track in " + opts.text);
        else { player.selectTextTrack(t); player.setTextTrackVisibility(true); step("text track " + t.language); }
      }
    });
  }

  watchCues();
  if (opts.player === "shaka") playShaka();
  else if (opts.player === "hlsjs") playHlsjs();
  else fail("unknown player " + opts.player);
})();
