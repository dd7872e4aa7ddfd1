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

// TestChunkedTitlePlaysAcrossSeams: a 10-minute title with an English
// subtitle track, transcoded in 60-second chunks (CHUNK_SECONDS=60, 4 s
// segments, 140 s key periods), is served by the gateway with playlists
// the strict parsers accept, and hls.js and Shaka Player play from the
// start and play through the seams they are sought just before: the first
// (60 s), a key change in the middle of a chunk (140 s), one in the middle
// of the title (300 s) and the last (540 s), each showing the subtitle cue
// that spans it (the join cut the cues along the joined segments).
func TestChunkedTitlePlaysAcrossSeams(t *testing.T) {
	_, _, hlsjs := browserDeps(t)
	e := newEnv(t, fixtures.FS(t), envOptions{cfg: func(c *Config) { c.PlayerScript = hlsjs }})
	enq := asynq.NewClient(fixtures.Redis(t))
	t.Cleanup(func() { enq.Close() })
	ladder, err := transcode.ParseLadder("90p:120k:64k,72p:80k:48k")
	if err != nil {
		t.Fatal(err)
	}
	seams := []float64{60, 140, 300, 540}
	var srt strings.Builder
	for i, at := range seams {
		fmt.Fprintf(&srt, "%d\n%s --> %s\n%s\n\n", i+1, srtTime(at-0.6), srtTime(at+0.6), seamCue(at))
	}
	video := e.publishRealSource(testenv.Source{Width: 160, Height: 90, Seconds: 600, Audio: true, Subtitles: srt.String()}, func(c *pipeline.Config) {
		c.Ladder, c.Segment, c.Chunk, c.Enqueuer, c.KeyPeriod = ladder, 4*time.Second, time.Minute, enq, 140*time.Second
	})
	cur, err := e.db.CurrentVersion(context.Background(), video)
	if err != nil {
		t.Fatal(err)
	}
	// A one-track source has muxed audio unless it was chunked.
	var audio, subs bool
	for _, r := range cur.Renditions {
		audio = audio || r.Name == "audio1"
		subs = subs || r.Type == pipeline.RenditionSubtitles
	}
	if !audio || !subs || len(cur.Keys) != 5 {
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
	for _, at := range seams {
		t.Run(fmt.Sprintf("seam at %g s", at), func(t *testing.T) {
			for p, r := range player.Play(t, masterURL, player.Options{Start: at - 1.5, Seconds: at + 1.5, Text: "en"}) {
				t.Logf("%s: at %.2f s, %d frames (%d dropped), cue %q", p, r.CurrentTime, r.Frames, r.Dropped, r.Cue.Text)
				if r.Cue.Shown && r.Cue.Text != seamCue(at) {
					t.Errorf("%s showed %q, want %q", p, r.Cue.Text, seamCue(at))
				}
			}
		})
	}
}

func seamCue(at float64) string { return fmt.Sprintf("Across the seam at %g s", at) }

// srtTime formats seconds as a SubRip time.
func srtTime(s float64) string {
	ms := int64(s*1000 + 0.5)
	return fmt.Sprintf("%02d:%02d:%02d,%03d", ms/3_600_000, ms/60_000%60, ms/1000%60, ms%1000)
}
