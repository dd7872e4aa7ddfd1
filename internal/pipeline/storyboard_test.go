package pipeline

import (
	"bytes"
	"context"
	"errors"
	"image/jpeg"
	"strings"
	"testing"
	"time"

	"github.com/hlsvault/hlsvault/internal/catalog"
	"github.com/hlsvault/hlsvault/internal/storyboard"
	"github.com/hlsvault/hlsvault/internal/testenv"
	"github.com/hlsvault/hlsvault/internal/testenv/decoder"
	"github.com/hlsvault/hlsvault/internal/testenv/fixtures"
	"github.com/hlsvault/hlsvault/internal/verify"
	"github.com/hlsvault/hlsvault/jobs"
)

func withStoryboard(interval time.Duration) func(*Config) {
	return func(c *Config) { c.Storyboard = StoryboardConfig{Enabled: true, Interval: interval} }
}

// TestStoryboardPublished: a real job on a 4.5 s source with 1 s
// thumbnails publishes a storyboard with its version: the track's 5 cues
// run contiguously from 0 to the duration, each tile inside its sprite's
// real pixel size, the sprite a JPEG of the plan's size; the status says
// so, and verify still passes (the storyboard is no variant).
func TestStoryboardPublished(t *testing.T) {
	for name, mk := range fixtures.Stores() {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, mk(t), withStoryboard(time.Second))
			ctx := context.Background()
			// 16:9 at an odd width: the tile height follows the display
			// aspect ratio (160 x 90).
			src := testenv.MakeSource(t, t.TempDir(), testenv.Source{Width: 384, Height: 216, Seconds: 4.5, Audio: true})
			h.upload("uploads/sb.mp4", src)
			video := testenv.Name("sb")
			res, err := h.client.EnqueueTranscode(ctx, jobs.TranscodeRequest{VideoID: video, Source: "uploads/sb.mp4"})
			if err != nil {
				t.Fatal(err)
			}
			h.startWorker()
			if j := h.waitJob(res.TaskID); j.State != jobs.Published {
				t.Fatalf("job: %+v", j)
			}
			cur, err := h.db.CurrentVersion(ctx, video)
			if err != nil {
				t.Fatal(err)
			}
			sb, ok := cur.Storyboard()
			if !ok || sb.Playlist != cur.Prefix+"storyboard/storyboard.vtt" || sb.Segments != 1 || sb.Width != 160 || sb.Height != 90 {
				t.Fatalf("storyboard rendition %+v (found %v)", sb, ok)
			}
			st, err := h.client.Status(ctx, video)
			if err != nil || !st.Current.Storyboard {
				t.Fatalf("status does not show the storyboard: %+v %v", st.Current, err)
			}
			objs := h.objects(cur.Prefix + "storyboard/")
			if len(objs) != 2 {
				t.Fatalf("storyboard objects: %d, want the track and one sprite", len(objs))
			}
			cues, err := storyboard.Parse(objs[sb.Playlist])
			if err != nil {
				t.Fatal(err)
			}
			img, err := jpeg.Decode(bytes.NewReader(objs[cur.Prefix+"storyboard/sprite_000.jpg"]))
			if err != nil {
				t.Fatal(err)
			}
			if b := img.Bounds(); b.Dx() != 1600 || b.Dy() != 90 {
				t.Errorf("sprite is %dx%d, want 10 x 1 tiles of 160x90", b.Dx(), b.Dy())
			}
			if len(cues) != 5 {
				t.Errorf("%d cues, want 5 (4.5 s every 1 s)", len(cues))
			}
			if err := storyboard.Check(cues, time.Duration(cur.Duration*float64(time.Second)), img.Bounds().Dx(), img.Bounds().Dy()); err != nil {
				t.Error(err)
			}
			for _, c := range cues {
				if c.Sprite != "sprite_000.jpg" {
					t.Errorf("cue names %q", c.Sprite)
				}
			}
			// Distinct moments: testsrc2 moves, so the first and the last
			// thumbnails differ (a pass that repeated one frame would not).
			var diff int64
			for y := 0; y < 90; y++ {
				for x := 0; x < 160; x++ {
					r1, g1, b1, _ := img.At(x, y).RGBA()
					r2, g2, b2, _ := img.At(4*160+x, y).RGBA()
					diff += absDiff(r1, r2) + absDiff(g1, g2) + absDiff(b1, b2)
				}
			}
			if mean := diff / (160 * 90 * 3) >> 8; mean < 2 {
				t.Errorf("the first and the last thumbnails differ by %d/255 on average: one frame repeated?", mean)
			}
			ver := &verify.Verifier{Store: h.store, DB: h.db, Keyring: h.keyring, Exec: decoder.Exec(t)}
			if rep, err := ver.Verify(ctx, video); err != nil || !rep.OK() {
				t.Fatalf("verify: %+v %v", rep, err)
			}
		})
	}
}

// TestStoryboardFailureIsTolerated: a storyboard pass that fails leaves
// the job published, without a storyboard recorded (so nothing of it is
// ever served), and says so in the log.
func TestStoryboardFailureIsTolerated(t *testing.T) {
	store := fixtures.Stores()["fs"](t)
	h := newHarness(t, store, withStoryboard(time.Second))
	h.pipe.storyboardHook = func(string) error { return errors.New("injected storyboard failure") }
	ctx := context.Background()
	src := testenv.MakeSource(t, t.TempDir(), testenv.Source{Width: 320, Height: 240, Seconds: 2, Audio: false})
	h.upload("uploads/sbfail.mp4", src)
	video := testenv.Name("sbf")
	res, err := h.client.EnqueueTranscode(ctx, jobs.TranscodeRequest{VideoID: video, Source: "uploads/sbfail.mp4"})
	if err != nil {
		t.Fatal(err)
	}
	h.startWorker()
	if j := h.waitJob(res.TaskID); j.State != jobs.Published {
		t.Fatalf("job: %+v", j)
	}
	cur, err := h.db.CurrentVersion(ctx, video)
	if err != nil {
		t.Fatal(err)
	}
	if sb, ok := cur.Storyboard(); ok {
		t.Fatalf("a failed storyboard was recorded: %+v", sb)
	}
	if n := len(catalog.VideoRenditions(cur.Renditions)); n != len(cur.Renditions) || n != 2 {
		t.Fatalf("renditions %+v", cur.Renditions)
	}
	if len(h.objects(cur.Prefix+"storyboard/")) != 0 {
		t.Error("storyboard objects stored after the pass failed")
	}
	if !strings.Contains(h.logs.String(), "storyboard failed; publishing without one") || !strings.Contains(h.logs.String(), "injected storyboard failure") {
		t.Error("no log line for the failed storyboard")
	}
	st, err := h.client.Status(ctx, video)
	if err != nil || st.Current.Storyboard {
		t.Fatalf("status: %+v %v", st.Current, err)
	}
}

func absDiff(a, b uint32) int64 {
	if a > b {
		return int64(a - b)
	}
	return int64(b - a)
}
