package gateway

import (
	"io"
	"math"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hlsvault/hlsvault/internal/pipeline"
	"github.com/hlsvault/hlsvault/internal/testenv"
	"github.com/hlsvault/hlsvault/internal/testenv/fixtures"
	"github.com/hlsvault/hlsvault/internal/testenv/hlscheck"
	"github.com/hlsvault/hlsvault/internal/testenv/player"
	"github.com/hlsvault/hlsvault/internal/transcode"
	"github.com/hlsvault/hlsvault/playback"
)

var mapURIRE = regexp.MustCompile(`(?m)^#EXT-X-MAP:URI="([^"]+)"`)

// TestFMP4HEVCTitle: a real fMP4 title with H.264 and HEVC rungs, an
// English subtitle stream and a French sidecar, under 1 s key periods,
// through the gateway. Every playlist passes the strict parsers; each
// EXT-X-MAP URI is rewritten to a signed URL like the segments', and the
// init section and fragments are served as video/mp4; hls.js and Shaka
// (MSE: Chromium's own HLS fails on AES-128 fMP4) play it and show an
// English cue; hls.js shows the cues at the source's times, so the
// X-TIMESTAMP-MAP matches the fMP4 timeline. What each player did with
// the HEVC variant is logged.
func TestFMP4HEVCTitle(t *testing.T) {
	node, _, hlsjs := browserDeps(t)
	e := newEnv(t, fixtures.FS(t), envOptions{cfg: func(c *Config) { c.PlayerScript = hlsjs }})
	ladder, err := transcode.ParseLadder("240p:300k:64k,144p:150k:64k,240p:200k:64k:hevc")
	if err != nil {
		t.Fatal(err)
	}
	video := e.publishSubtitledSource(testenv.Source{Width: 320, Height: 240, Seconds: 4, Audio: true}, func(c *pipeline.Config) {
		c.Ladder, c.Segments = ladder, transcode.SegmentsFMP4
	})
	tok := e.token(video, testenv.Name("fmp4"), playback.NewSessionID(), time.Hour)
	masterURL := playback.MasterURL(e.ts.URL, video, tok)

	crawled := hlscheck.Crawl(t, e.ts.Client(), masterURL)
	hlscheck.StrictAll(t, crawled)
	var master string
	maps := 0
	for u, b := range crawled {
		body := string(b)
		if strings.Contains(body, "#EXT-X-STREAM-INF") {
			master = body
			continue
		}
		for _, m := range mapURIRE.FindAllStringSubmatch(body, -1) {
			maps++
			if !strings.HasPrefix(m[1], "/v1/segments/") || !strings.Contains(m[1], "sig=") || !strings.Contains(m[1], "/init_0000") {
				t.Errorf("%s: EXT-X-MAP URI %q is not a signed gateway URL", hlscheckName(u), m[1])
				continue
			}
			checkServed(t, e, e.ts.URL+m[1], "video/mp4")
		}
		if strings.Contains(body, "#EXT-X-MAP") {
			if !strings.Contains(body, "#EXT-X-VERSION:6") {
				t.Errorf("%s: a playlist with EXT-X-MAP below version 6", hlscheckName(u))
			}
			seg := regexp.MustCompile(`(?m)^(/v1/segments/\S+\.m4s\?\S+)$`).FindStringSubmatch(body)
			if seg == nil {
				t.Errorf("%s: no .m4s segment", hlscheckName(u))
			} else {
				checkServed(t, e, e.ts.URL+seg[1], "video/mp4")
			}
		}
	}
	// Three video renditions, 4 s in 1 s key periods: four init sections each.
	if maps != 3*4 {
		t.Errorf("%d EXT-X-MAP tags, want 12", maps)
	}
	if !strings.Contains(master, `CODECS="hvc1.`) || strings.Index(master, `CODECS="hvc1.`) < strings.LastIndex(master, `CODECS="avc1.`) {
		t.Errorf("the master lacks its HEVC variant after the H.264 ones:\n%s", master)
	}
	if strings.Contains(master, "#EXT-X-I-FRAME-STREAM-INF") {
		t.Errorf("an fMP4 title has I-frame variants:\n%s", master)
	}

	// hls.js lists the levels whose CODECS MediaSource accepts: Chromium
	// without HEVC decoding drops the HEVC variant ("2 levels"), and every
	// player plays H.264.
	for p, res := range player.Play(t, masterURL, player.Options{Text: "en"}) {
		if res.Width != 320 && res.Width != 192 {
			t.Errorf("%s played %dx%d, want an H.264 variant", p, res.Width, res.Height)
		}
		t.Logf("%s: played %dx%d, %d frames to %.2f s; text %v, cue %q; notices %v", p, res.Width, res.Height, res.Frames,
			res.CurrentTime, res.TextTracks, res.Cue.Text, res.Notices)
	}

	// The cues, as hls.js places them on the fMP4 timeline.
	cues := hlsjsCues(t, node, e.ts.URL+"/watch/"+video+"?token="+url.QueryEscape(tok))
	want := map[string]float64{"en": 0.5, "fr": 0.25} // first cue starts (testenv's subtitles)
	for _, tr := range cues.Tracks {
		if len(tr.Cues) == 0 {
			t.Errorf("%s: no cues", tr.Lang)
			continue
		}
		if start, _ := tr.Cues[0][0].(float64); math.Abs(start-want[tr.Lang]) > 0.05 {
			t.Errorf("%s: first cue at %.3f s, want %.3f s: the X-TIMESTAMP-MAP does not match the fMP4 timeline", tr.Lang, start, want[tr.Lang])
		}
	}
	if len(cues.Tracks) != 2 {
		t.Errorf("hls.js shows %d subtitle tracks, want 2", len(cues.Tracks))
	}
}

// checkServed GETs a gateway URL and holds it to a 200 with the content
// type and a whole number of AES blocks.
func checkServed(t *testing.T, e *env, u, contentType string) {
	t.Helper()
	resp, err := e.ts.Client().Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != contentType || len(b) == 0 || len(b)%16 != 0 {
		t.Errorf("GET %s: %d %q, %d bytes; want 200 %s, whole AES blocks", hlscheckName(u), resp.StatusCode,
			resp.Header.Get("Content-Type"), len(b), contentType)
	}
}

// hlscheckName is a URL without its query (the token and signatures).
func hlscheckName(u string) string {
	name, _, _ := strings.Cut(u, "?")
	return name
}
