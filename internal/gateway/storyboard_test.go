package gateway

import (
	"bytes"
	"context"
	"image"
	"image/jpeg"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hlsvault/hlsvault/internal/pipeline"
	"github.com/hlsvault/hlsvault/internal/storyboard"
	"github.com/hlsvault/hlsvault/internal/testenv/fixtures"
	"github.com/hlsvault/hlsvault/playback"
)

// TestStoryboardThroughGateway publishes a real title with a storyboard
// (1 s thumbnails of a 3 s source) and fetches it as a player would: the
// track only with a token for the video, its cues covering the title, and
// every sprite through the signed, session-bound URL the track names,
// decoding as a JPEG that holds every tile the cues point at.
func TestStoryboardThroughGateway(t *testing.T) {
	for name, mk := range fixtures.Stores() {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, mk(t), envOptions{})
			video := e.publishReal(3, func(c *pipeline.Config) {
				c.Storyboard = pipeline.StoryboardConfig{Enabled: true, Interval: time.Second}
			})
			v, err := e.db.CurrentVersion(context.Background(), video)
			if err != nil {
				t.Fatal(err)
			}
			path := "/v1/videos/" + video + "/storyboard.vtt"

			if r := e.get(path); r.code != 401 {
				t.Fatalf("without a token: %d %s, want 401", r.code, r.body)
			}
			other := e.token("someone-else", "viewer", playback.NewSessionID(), time.Hour)
			if r := e.get(withToken(path, other)); r.code != 403 {
				t.Fatalf("with another video's token: %d, want 403", r.code)
			}
			tok := e.token(video, "viewer", playback.NewSessionID(), time.Hour)
			r := e.get(withToken(path, tok))
			if r.code != 200 {
				t.Fatalf("storyboard: %d %s", r.code, r.body)
			}
			if ct, cc := r.header.Get("Content-Type"), r.header.Get("Cache-Control"); !strings.HasPrefix(ct, "text/vtt") || cc != "private, no-store" {
				t.Errorf("Content-Type %q, Cache-Control %q", ct, cc)
			}
			if r2 := e.get(withToken(path+"?v=99", tok)); r2.code != 404 {
				t.Errorf("?v=99: %d, want 404", r2.code)
			}
			if r2 := e.get(withToken(path+"?v="+strconv.Itoa(v.Version), tok)); r2.code != 200 {
				t.Errorf("?v=%d: %d", v.Version, r2.code)
			}
			cues, err := storyboard.Parse(r.body)
			if err != nil {
				t.Fatalf("%v\n%s", err, r.body)
			}
			if len(cues) != 3 {
				t.Errorf("%d cues for a 3 s title every 1 s, want 3:\n%s", len(cues), r.body)
			}
			dur := time.Duration(v.Duration * float64(time.Second))
			sprites := map[string]image.Image{}
			for i, c := range cues {
				if strings.HasPrefix(c.Sprite, "/") { // relative to the gateway without a PUBLIC_URL
					c.Sprite = e.ts.URL + c.Sprite
					cues[i].Sprite = c.Sprite
				}
				if !strings.HasPrefix(c.Sprite, e.ts.URL+"/v1/segments/") {
					t.Fatalf("sprite URL %q is not a gateway URL", c.Sprite)
				}
				if strings.Contains(c.Sprite, "token=") {
					t.Errorf("sprite URL %q carries the playback token", c.Sprite)
				}
				if sprites[c.Sprite] == nil {
					sr := e.get(c.Sprite)
					if sr.code != 200 || sr.header.Get("Content-Type") != "image/jpeg" {
						t.Fatalf("sprite %s: %d %q", c.Sprite, sr.code, sr.header.Get("Content-Type"))
					}
					img, err := jpeg.Decode(bytes.NewReader(sr.body))
					if err != nil {
						t.Fatal(err)
					}
					sprites[c.Sprite] = img
				}
				if b := sprites[c.Sprite].Bounds(); c.X+c.W > b.Dx() || c.Y+c.H > b.Dy() || c.W != 160 || c.H != 120 {
					t.Errorf("cue tile %d,%d,%d,%d: not a 160x120 tile inside the %dx%d sprite", c.X, c.Y, c.W, c.H, b.Dx(), b.Dy())
				}
			}
			if err := storyboard.Check(cues, dur, 0, 0); err != nil {
				t.Error(err)
			}
			// A sprite URL is a credential like a segment's: tampered or
			// without its session part, refused.
			u, _ := url.Parse(cues[0].Sprite)
			q := u.Query()
			q.Set("sig", "AAAAAAAAAAAAAAAAAAAAAA")
			u.RawQuery = q.Encode()
			if r := e.get(u.String()); r.code != 403 {
				t.Errorf("tampered sprite URL: %d, want 403", r.code)
			}
			u, _ = url.Parse(cues[0].Sprite)
			q = u.Query()
			q.Del("s")
			u.RawQuery = q.Encode()
			if r := e.get(u.String()); r.code != 403 {
				t.Errorf("sprite URL without its session: %d, want 403", r.code)
			}
		})
	}
}
