package player

import (
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hlsvault/hlsvault/internal/testenv"
)

// multiLanguageTitle writes, with ffmpeg's HLS muxer, a plain 3 s title
// with English and French audio and English WebVTT subtitles whose one cue
// runs from 0 to 2.9 s, and returns its directory.
func multiLanguageTitle(t *testing.T) string {
	t.Helper()
	ffmpeg, _ := testenv.FFmpeg(t)
	dir := t.TempDir()
	srt := filepath.Join(dir, "subs.srt")
	if err := os.WriteFile(srt, []byte("1\n00:00:00,000 --> 00:00:02,900\nHello from the subtitles\n\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "title")
	cmd := exec.Command(ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
		"-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=3",
		"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=3",
		"-f", "lavfi", "-i", "sine=frequency=880:sample_rate=48000:duration=3", "-i", srt,
		"-map", "0:v", "-map", "1:a", "-map", "2:a", "-map", "3:s",
		"-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-sc_threshold", "0", "-c:a", "aac", "-b:a", "64k",
		"-c:s", "webvtt", "-metadata:s:s:0", "language=eng",
		"-f", "hls", "-hls_time", "1", "-hls_playlist_type", "vod", "-var_stream_map",
		"a:0,agroup:aud,language:en,name:aud_en,default:yes a:1,agroup:aud,language:fr,name:aud_fr v:0,agroup:aud,s:0,sgroup:subs,name:video",
		"-master_pl_name", "master.m3u8", "-hls_segment_filename", filepath.Join(out, "%v", "seg_%03d.ts"),
		filepath.Join(out, "%v", "index.m3u8"))
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg: %v\n%s", err, b)
	}
	// ffmpeg 5.1 writes the SUBTITLES rendition without LANGUAGE.
	m := filepath.Join(out, "master.m3u8")
	b, err := os.ReadFile(m)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "LANGUAGE=\"en\",URI=\"video/index_vtt.m3u8\"") {
		b = []byte(strings.Replace(string(b), "#EXT-X-MEDIA:TYPE=SUBTITLES,", "#EXT-X-MEDIA:TYPE=SUBTITLES,LANGUAGE=\"en\",", 1))
	}
	if err := os.WriteFile(m, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestPlaySwitchesAndCues checks the driver itself, without the gateway:
// a static server holds a plain two-language subtitled title and a page
// shaped like the gateway's /watch page. Both players list en and fr audio
// and the English subtitles, switch to French, and show the cue; asking
// for a language the title does not have fails in each player.
func TestPlaySwitchesAndCues(t *testing.T) {
	dir := multiLanguageTitle(t)
	mux := http.NewServeMux()
	mux.Handle("/title/", http.StripPrefix("/title/", http.FileServer(http.Dir(dir))))
	mux.HandleFunc("/watch", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(`<!doctype html><html><head><link rel="icon" href="data:,"></head><body>
<video id="player" muted autoplay playsinline></video>
<script src="/player/hls.min.js"></script><script src="/player/watch.js"></script></body></html>`))
	})
	ts := httptest.NewServer(mux)
	defer ts.Close()
	master := ts.URL + "/title/master.m3u8"

	for p, r := range Play(t, master, Options{Page: ts.URL + "/watch", Audio: "fr", Text: "en"}) {
		var langs []string
		for _, a := range r.AudioTracks {
			langs = append(langs, a.Lang)
		}
		if strings.Join(langs, ",") != "en,fr" || r.ActiveAudio != "fr" {
			t.Errorf("%s: audio %+v, active %q; want en,fr and fr", p, r.AudioTracks, r.ActiveAudio)
		}
		if len(r.TextTracks) != 1 || !strings.HasPrefix(r.TextTracks[0].Lang, "en") {
			t.Errorf("%s: text tracks %+v, want English", p, r.TextTracks)
		}
		if r.Cue.Text != "Hello from the subtitles" {
			t.Errorf("%s: cue %+v", p, r.Cue)
		}
	}

	res, err := Run(t, master, Options{Page: ts.URL + "/watch", Audio: "de", Text: "de", Seconds: 0.5})
	if err == nil {
		t.Fatalf("play.mjs passed German audio and subtitles the title does not have: %+v", res)
	}
	for _, p := range []string{"hlsjs", "shaka"} {
		if r := res[p]; r.OK || !strings.Contains(strings.Join(r.Problems, "\n"), "no audio track in de") {
			t.Errorf("%s: %+v, want a failure naming the missing audio track", p, r)
		}
	}
}
