package gateway

import (
	"strings"
	"testing"
	"time"

	"github.com/hlsvault/hlsvault/internal/pipeline"
	"github.com/hlsvault/hlsvault/internal/testenv"
	"github.com/hlsvault/hlsvault/internal/testenv/fixtures"
	"github.com/hlsvault/hlsvault/internal/testenv/hlscheck"
	"github.com/hlsvault/hlsvault/internal/testenv/player"
	"github.com/hlsvault/hlsvault/playback"
)

// TestNewUserTitle is issue 12's "done when" as a new user meets it: one
// real upload with two audio languages (eng, fra) and an English subtitle
// track, plus a French sidecar, transcoded by the worker's pipeline, is
// offered through the gateway with both languages, both subtitles, trick
// play and a storyboard; every playlist the gateway serves passes the
// third-party strict parsers; and both hls.js and Shaka Player in headless
// Chromium play it, switch to French audio and show an English cue.
func TestNewUserTitle(t *testing.T) {
	_, _, hlsjs := browserDeps(t)
	e := newEnv(t, fixtures.FS(t), envOptions{cfg: func(c *Config) { c.PlayerScript = hlsjs }}) // the /watch page
	video := e.publishSubtitledSource(testenv.Source{Width: 320, Height: 240, Seconds: 4, AudioTracks: []string{"eng", "fra"}},
		func(c *pipeline.Config) {
			c.Storyboard = pipeline.StoryboardConfig{Enabled: true, Interval: time.Second}
		})
	tok := e.token(video, testenv.Name("newuser"), playback.NewSessionID(), time.Hour)
	masterURL := playback.MasterURL(e.ts.URL, video, tok)

	r := e.get(withToken("/v1/videos/"+video+"/master.m3u8", tok))
	if r.code != 200 {
		t.Fatalf("master: %d %s", r.code, r.body)
	}
	master := string(r.body)
	for _, want := range []string{
		`TYPE=AUDIO,GROUP-ID="aud"`, `LANGUAGE="en"`, `LANGUAGE="fr"`,
		`TYPE=SUBTITLES,GROUP-ID="subs"`, `SUBTITLES="subs"`, `AUDIO="aud"`,
		`CLOSED-CAPTIONS=NONE`, `#EXT-X-I-FRAME-STREAM-INF:`,
	} {
		if !strings.Contains(master, want) {
			t.Errorf("the master lacks %s:\n%s", want, master)
		}
	}
	if n := strings.Count(master, "TYPE=SUBTITLES"); n != 2 {
		t.Errorf("%d subtitle renditions, want the embedded English and the French sidecar:\n%s", n, master)
	}
	// Every playlist reachable from the master, as the gateway rewrites it.
	crawled := hlscheck.Crawl(t, e.ts.Client(), masterURL)
	if len(crawled) < 1+2+2+2+2 { // master, 2 video, 2 audio, 2 subtitle, 2 I-frame playlists
		t.Errorf("crawled %d playlists from the master: %v", len(crawled), playlistNames(crawled))
	}
	hlscheck.StrictAll(t, crawled)

	// The storyboard, gated like the rest.
	if r := e.get("/v1/videos/" + video + "/storyboard.vtt"); r.code != 401 {
		t.Errorf("storyboard without a token: %d", r.code)
	}
	if r := e.get(withToken("/v1/videos/"+video+"/storyboard.vtt", tok)); r.code != 200 ||
		!strings.HasPrefix(string(r.body), "WEBVTT") || !strings.Contains(string(r.body), "#xywh=") {
		t.Errorf("storyboard: %d %s", r.code, r.body)
	}

	for p, res := range player.Play(t, masterURL, player.Options{Audio: "fr", Text: "en"}) {
		langs := map[string]bool{}
		for _, a := range res.AudioTracks {
			langs[a.Lang] = true
		}
		if !langs["en"] || !langs["fr"] || !res.AudioSwitched || !strings.HasPrefix(res.ActiveAudio, "fr") {
			t.Errorf("%s: audio tracks %+v, active %q, switched %v; want en and fr, French active", p, res.AudioTracks, res.ActiveAudio, res.AudioSwitched)
		}
		if len(res.TextTracks) < 2 || !res.Cue.Shown {
			t.Errorf("%s: text tracks %+v, cue %+v; want both subtitles and an English cue shown", p, res.TextTracks, res.Cue)
		}
		t.Logf("%s: %dx%d, %d frames, audio %v (active %s), text %v, cue %q", p, res.Width, res.Height, res.Frames,
			res.AudioTracks, res.ActiveAudio, res.TextTracks, res.Cue.Text)
	}
}

func playlistNames(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
