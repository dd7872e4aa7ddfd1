package gateway

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/hlsvault/hlsvault/internal/pipeline"
	"github.com/hlsvault/hlsvault/internal/testenv"
	"github.com/hlsvault/hlsvault/internal/testenv/fixtures"
	"github.com/hlsvault/hlsvault/internal/testenv/hlscheck"
	"github.com/hlsvault/hlsvault/internal/testenv/player"
	"github.com/hlsvault/hlsvault/internal/transcode"
	"github.com/hlsvault/hlsvault/playback"
)

// TestChunkedTitlePlaysAcrossSeams: a 10-minute title transcoded in
// 60-second chunks (CHUNK_SECONDS=60, 4 s segments, 140 s key periods) is
// served by the gateway with playlists the strict parsers accept, and
// hls.js and Shaka Player play from the start and play through the seams
// they are sought just before: the first (60 s), a key change in the
// middle of a chunk (140 s), one in the middle of the title (300 s) and
// the last (540 s).
func TestChunkedTitlePlaysAcrossSeams(t *testing.T) {
	_, _, hlsjs := browserDeps(t)
	e := newEnv(t, fixtures.FS(t), envOptions{cfg: func(c *Config) { c.PlayerScript = hlsjs }})
	enq := asynq.NewClient(fixtures.Redis(t))
	t.Cleanup(func() { enq.Close() })
	ladder, err := transcode.ParseLadder("90p:120k:64k,72p:80k:48k")
	if err != nil {
		t.Fatal(err)
	}
	video := e.publishRealSource(testenv.Source{Width: 160, Height: 90, Seconds: 600, Audio: true}, func(c *pipeline.Config) {
		c.Ladder, c.Segment, c.Chunk, c.Enqueuer, c.KeyPeriod = ladder, 4*time.Second, time.Minute, enq, 140*time.Second
	})
	cur, err := e.db.CurrentVersion(context.Background(), video)
	if err != nil {
		t.Fatal(err)
	}
	// A one-track source has muxed audio unless it was chunked.
	var audio bool
	for _, r := range cur.Renditions {
		audio = audio || r.Name == "audio1"
	}
	if !audio || len(cur.Keys) != 5 {
		t.Fatalf("not a chunked title: renditions %+v, %d keys", cur.Renditions, len(cur.Keys))
	}
	tok := e.token(video, testenv.Name("seams"), playback.NewSessionID(), time.Hour)
	masterURL := playback.MasterURL(e.ts.URL, video, tok)
	crawled := hlscheck.Crawl(t, e.ts.Client(), masterURL)
	hlscheck.StrictAll(t, crawled)
	for name, b := range crawled {
		if strings.Contains(string(b), "#EXT-X-DISCONTINUITY") {
			t.Errorf("%s has a discontinuity", name)
		}
	}

	player.Play(t, masterURL, player.Options{})
	for _, at := range []float64{60, 140, 300, 540} {
		t.Run(fmt.Sprintf("seam at %g s", at), func(t *testing.T) {
			for p, r := range player.Play(t, masterURL, player.Options{Start: at - 1.5, Seconds: at + 1.5}) {
				t.Logf("%s: at %.2f s, %d frames (%d dropped)", p, r.CurrentTime, r.Frames, r.Dropped)
			}
		})
	}
}
