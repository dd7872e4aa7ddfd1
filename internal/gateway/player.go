package gateway

import (
	"html/template"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/hlsvault/hlsvault/internal/ids"
	"github.com/hlsvault/hlsvault/internal/layout"
)

// The player page: /watch/{video}?token=… plays the video with hls.js (or
// the browser's own HLS support, as in Safari), keeps the session alive with
// a heartbeat while the page is open and releases it when the page goes
// away. It is served only when Config.PlayerScript names hls.min.js; the app
// server's own page does the same with its own look.

var pageTemplate = template.Must(template.New("watch").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<link rel="icon" href="data:,">
<title>{{.Video}} · hlsvault</title>
<style>
body { margin: 0; background: #111; color: #eee; font: 15px/1.4 system-ui, sans-serif; }
main { max-width: 960px; margin: 2rem auto; padding: 0 1rem; }
video { width: 100%; background: #000; aspect-ratio: 16 / 9; }
#status { min-height: 1.5em; color: #fc6; }
</style>
</head>
<body data-video="{{.Video}}" data-heartbeat-ms="{{.HeartbeatMS}}">
<main>
<h1>{{.Video}}</h1>
<video id="player" controls muted autoplay playsinline></video>
<p id="status"></p>
<p>AES-128 encrypted HLS through the hlsvault playback gateway.</p>
</main>
<script src="/player/hls.min.js"></script>
<script src="/player/watch.js"></script>
</body>
</html>
`))

const watchJS = `(function () {
  "use strict";
  var params = new URLSearchParams(location.search);
  var token = params.get("token") || "";
  var video = document.body.dataset.video;
  var el = document.getElementById("player");
  var status = document.getElementById("status");
  var state = window.__hlsvault = { errors: [], ready: false, fatal: null };
  var q = "token=" + encodeURIComponent(token);
  var src = "/v1/videos/" + encodeURIComponent(video) + "/master.m3u8?" + q;
  function show(msg) { status.textContent = msg; }
  function explain(res) {
    return res.json().then(function (j) { return j.message; }, function () { return "HTTP " + res.status; });
  }
  function explainURL(url) {
    return fetch(url).then(function (r) { return r.ok ? null : explain(r); }, function () { return null; });
  }
  if (window.Hls && window.Hls.isSupported()) {
    var hls = new window.Hls();
    hls.on(window.Hls.Events.ERROR, function (ev, data) {
      state.errors.push({ type: data.type, details: data.details, fatal: !!data.fatal,
        code: data.response ? data.response.code : null });
      if (data.fatal) {
        state.fatal = data.details;
        var url = (data.context && data.context.url) || (data.frag && data.frag.url) || src;
        explainURL(url).then(function (m) { show("Playback stopped: " + (m || data.details)); });
      }
    });
    hls.on(window.Hls.Events.MANIFEST_PARSED, function () {
      state.ready = true;
      el.play().catch(function (e) { show("Press play to start (" + e.name + ")"); });
    });
    hls.loadSource(src);
    hls.attachMedia(el);
  } else if (el.canPlayType("application/vnd.apple.mpegurl")) {
    el.src = src;
    el.addEventListener("loadedmetadata", function () { state.ready = true; el.play().catch(function () {}); });
    el.addEventListener("error", function () {
      state.fatal = "media error";
      explainURL(src).then(function (m) { show("Playback stopped: " + (m || "media error")); });
    });
  } else {
    show("This browser cannot play HLS.");
  }
  var hb = Number(document.body.dataset.heartbeatMs) || 30000;
  setInterval(function () {
    fetch("/v1/sessions/heartbeat?" + q, { method: "POST" }).then(function (r) {
      if (!r.ok) { explain(r).then(show); }
    }, function () {});
  }, hb);
  window.addEventListener("pagehide", function () {
    navigator.sendBeacon("/v1/sessions/release?" + q);
  });
})();
`

// storageOrigin is where players fetch segments from when it is not the
// gateway (Azure), for the page's Content-Security-Policy.
func (s *Server) storageOrigin() string {
	if s.az == nil {
		return ""
	}
	raw, err := s.az.SignedURL(layout.VersionPrefix("probe", 1)+"probe.ts", time.Minute, time.Now())
	if err != nil {
		return ""
	}
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return u.Scheme + "://" + u.Host
}

func (s *Server) servePlayerPage(w http.ResponseWriter, r *http.Request) {
	video := r.PathValue("video")
	if ids.ValidateVideoID(video) != nil {
		s.fail(w, r, http.StatusNotFound, "not_found", "no such video")
		return
	}
	connect := "'self'"
	if o := s.storageOrigin(); o != "" {
		connect += " " + o
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "private, no-store")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
	// media-src data: is for the players' placeholder subtitle track
	// (<track src="data:,WEBVTT">, hls.js and Shaka both add one); media
	// from a data: URI runs no script.
	h.Set("Content-Security-Policy", strings.Join([]string{
		"default-src 'none'", "script-src 'self'", "style-src 'unsafe-inline'",
		"connect-src " + connect, "media-src 'self' blob: data:", "worker-src 'self' blob:", "img-src 'self' data:",
		"frame-ancestors 'none'", "base-uri 'none'",
	}, "; "))
	hb := int(math.Max(1000, float64(s.sessions.TTL().Milliseconds()/3)))
	_ = pageTemplate.Execute(w, struct {
		Video       string
		HeartbeatMS string
	}{video, strconv.Itoa(hb)})
}

func (s *Server) servePlayerAsset(w http.ResponseWriter, r *http.Request) {
	switch r.PathValue("file") {
	case "hls.min.js":
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
		w.Header().Set("Cache-Control", "public, max-age=3600")
		http.ServeFile(w, r, s.cfg.PlayerScript)
	case "watch.js":
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
		w.Header().Set("Cache-Control", "no-cache")
		_, _ = w.Write([]byte(watchJS))
	default:
		s.fail(w, r, http.StatusNotFound, "not_found", "no such file")
	}
}
