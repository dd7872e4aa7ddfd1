package transcode

import (
	"image"
	"image/jpeg"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hlsvault/hlsvault/internal/storyboard"
)

func TestStoryboardInterval(t *testing.T) {
	for _, tc := range []struct {
		duration, base, want time.Duration
	}{
		{20 * time.Second, 0, 5 * time.Second},
		{20 * time.Second, time.Second, time.Second},
		{5000 * time.Second, 0, 5 * time.Second}, // exactly 1000 thumbnails
		{5001 * time.Second, 0, 6 * time.Second}, // 1001 would be too many
		{2 * time.Hour, 0, 8 * time.Second},      // 900 thumbnails
		{6 * time.Hour, 0, 22 * time.Second},     // 982
		{2 * time.Hour, 30 * time.Second, 30 * time.Second},
		{3 * time.Second, 1500 * time.Millisecond, 1500 * time.Millisecond},
	} {
		got := StoryboardInterval(tc.duration, tc.base)
		if got != tc.want {
			t.Errorf("StoryboardInterval(%v, %v) = %v, want %v", tc.duration, tc.base, got, tc.want)
		}
		if n := (tc.duration + got - 1) / got; n > StoryboardMaxThumbnails {
			t.Errorf("%v every %v: %d thumbnails", tc.duration, got, n)
		}
	}
}

func TestPlanStoryboard(t *testing.T) {
	for _, tc := range []struct {
		w, h                 int
		d, base              time.Duration
		n, rows, th, sprites int
	}{
		{1920, 1080, 20 * time.Second, 0, 4, 1, 90, 1},
		{1080, 1920, 20 * time.Second, 0, 4, 1, 284, 1}, // portrait
		{320, 240, 3 * time.Second, time.Second, 3, 1, 120, 1},
		{1920, 800, 2 * time.Hour, 0, 900, 10, 66, 9},
		{1920, 1080, 501 * time.Second, 0, 101, 10, 90, 2},
		{4000, 10, time.Minute, 0, 12, 2, 2, 1}, // a strip: at least 2 pixels
	} {
		p, err := PlanStoryboard(tc.w, tc.h, tc.d, tc.base)
		if err != nil {
			t.Fatal(err)
		}
		if p.Thumbnails != tc.n || p.Rows != tc.rows || p.TileHeight != tc.th || p.Sprites != tc.sprites || p.Columns != 10 || p.TileWidth != 160 {
			t.Errorf("%dx%d %v: %+v, want %d thumbnails, %d rows, tile height %d, %d sprites", tc.w, tc.h, tc.d, p, tc.n, tc.rows, tc.th, tc.sprites)
		}
		g := storyboard.Geometry{Interval: p.Interval, Duration: p.Duration, Thumbnails: p.Thumbnails, Columns: p.Columns, Rows: p.Rows,
			TileWidth: p.TileWidth, TileHeight: p.TileHeight}
		if err := g.Validate(); err != nil || g.Sprites() != p.Sprites {
			t.Errorf("geometry of %+v: %v, %d sprites", p, err, g.Sprites())
		}
	}
	for _, bad := range []struct {
		w, h    int
		d, base time.Duration
	}{{0, 1080, time.Minute, 0}, {1920, 1080, 0, 0}, {1920, 1080, time.Minute, time.Millisecond}} {
		if _, err := PlanStoryboard(bad.w, bad.h, bad.d, bad.base); err == nil {
			t.Errorf("PlanStoryboard(%+v) accepted", bad)
		}
	}
	if SpriteName(7) != storyboard.SpriteName(7) {
		t.Error("transcode and storyboard name sprites differently")
	}
}

func TestStoryboardArgsGolden(t *testing.T) {
	p := synthetic(1920, 1080, 0, Rational{30000, 1001}, true)
	plan, err := PlanStoryboard(p.Video.DisplayWidth, p.Video.DisplayHeight, p.Duration, 0)
	if err != nil {
		t.Fatal(err)
	}
	args, err := StoryboardArgs(p, plan, "/job/source", "/job/storyboard")
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "args_storyboard.golden.txt", []byte(strings.Join(args, "\n")+"\n"))
	for _, bad := range []struct{ in, out string }{{"job/source", "/job/sb"}, {"/job/source", "sb"}, {"/job/source", "/job/%d"}} {
		if _, err := StoryboardArgs(p, plan, bad.in, bad.out); err == nil {
			t.Errorf("StoryboardArgs(%q, %q) accepted", bad.in, bad.out)
		}
	}
	q := *p
	q.Format = "avi"
	if _, err := StoryboardArgs(&q, plan, "/job/source", "/job/sb"); err == nil {
		t.Error("a container outside the allowlist was accepted")
	}
}

func TestCheckSprites(t *testing.T) {
	plan := StoryboardPlan{Interval: time.Second, Duration: 3 * time.Second, Thumbnails: 3, Columns: 10, Rows: 1, TileWidth: 160, TileHeight: 90, Sprites: 1}
	write := func(dir string, i, w, h int) {
		f, err := os.Create(filepath.Join(dir, SpriteName(i)))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := jpeg.Encode(f, image.NewGray(image.Rect(0, 0, w, h)), nil); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	write(dir, 0, 1600, 90)
	if got, err := CheckSprites(dir, plan); err != nil || len(got) != 1 {
		t.Fatalf("good sprite: %v %v", got, err)
	}
	write(dir, 1, 1600, 90)
	if _, err := CheckSprites(dir, plan); err == nil {
		t.Error("an extra sprite was accepted")
	}
	dir = t.TempDir()
	write(dir, 0, 1600, 80)
	if _, err := CheckSprites(dir, plan); err == nil {
		t.Error("a sprite of the wrong size was accepted")
	}
	dir = t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, SpriteName(0)), []byte("not a jpeg"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := CheckSprites(dir, plan); err == nil {
		t.Error("a broken sprite was accepted")
	}
}
