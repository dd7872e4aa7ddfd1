package storyboard

import (
	"strings"
	"testing"
	"time"
)

func TestWriteParse(t *testing.T) {
	g := Geometry{Interval: 2500 * time.Millisecond, Duration: 251*time.Second + 40*time.Millisecond, Thumbnails: 101, Columns: 10, Rows: 10,
		TileWidth: 160, TileHeight: 90}
	b, err := Write(g, SpriteName)
	if err != nil {
		t.Fatal(err)
	}
	want := "WEBVTT\n\n00:00:00.000 --> 00:00:02.500\nsprite_000.jpg#xywh=0,0,160,90\n\n00:00:02.500 --> 00:00:05.000\nsprite_000.jpg#xywh=160,0,160,90\n"
	if !strings.HasPrefix(string(b), want) {
		t.Fatalf("track starts\n%s", b[:200])
	}
	if !strings.HasSuffix(string(b), "\n00:04:10.000 --> 00:04:11.040\nsprite_001.jpg#xywh=0,0,160,90\n") {
		t.Fatalf("track ends\n%s", b[len(b)-200:])
	}
	cues, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(cues) != 101 {
		t.Fatalf("%d cues", len(cues))
	}
	if c := cues[99]; c.Sprite != "sprite_000.jpg" || c.X != 1440 || c.Y != 810 {
		t.Errorf("cue 99: %+v, want the last tile of sprite 0", c)
	}
	if err := Check(cues, g.Duration, 1600, 900); err != nil {
		t.Error(err)
	}
	if err := Check(cues, g.Duration+time.Second, 1600, 900); err == nil {
		t.Error("Check accepted cues that stop before the duration")
	}
	if err := Check(cues, g.Duration, 1600, 800); err == nil {
		t.Error("Check accepted tiles outside the sprite")
	}
	gap := append([]Cue(nil), cues...)
	gap[3].Start += time.Millisecond
	if err := Check(gap, g.Duration, 0, 0); err == nil {
		t.Error("Check accepted a gap between cues")
	}
}

func TestGeometryRefused(t *testing.T) {
	ok := Geometry{Interval: time.Second, Duration: 3 * time.Second, Thumbnails: 3, Columns: 10, Rows: 1, TileWidth: 160, TileHeight: 90}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, mut := range []func(*Geometry){
		func(g *Geometry) { g.Thumbnails = 4 }, // the 4th would start at the end
		func(g *Geometry) { g.Interval = 0 },
		func(g *Geometry) { g.Rows = 0 },
		func(g *Geometry) { g.Duration = 0 },
	} {
		g := ok
		mut(&g)
		if _, err := Write(g, SpriteName); err == nil {
			t.Errorf("Write(%+v) accepted", g)
		}
	}
}

func TestTimestamps(t *testing.T) {
	for _, d := range []time.Duration{0, 999 * time.Millisecond, 59*time.Minute + 59*time.Second, 7*time.Hour + 3*time.Minute + 4*time.Second + 5*time.Millisecond} {
		got, err := ParseTimestamp(Timestamp(d))
		if err != nil || got != d {
			t.Errorf("%v → %s → %v %v", d, Timestamp(d), got, err)
		}
	}
	if d, err := ParseTimestamp("01:02.003"); err != nil || d != time.Minute+2*time.Second+3*time.Millisecond {
		t.Errorf("mm:ss.ttt: %v %v", d, err)
	}
	for _, bad := range []string{"", "1.000", "00:60:00.000", "00:00:00.1", "00:00:0a.000", "-1:00:00.000"} {
		if _, err := ParseTimestamp(bad); err == nil {
			t.Errorf("ParseTimestamp(%q) accepted", bad)
		}
	}
}

func TestRewrite(t *testing.T) {
	g := Geometry{Interval: time.Second, Duration: 2 * time.Second, Thumbnails: 2, Columns: 10, Rows: 1, TileWidth: 160, TileHeight: 90}
	b, _ := Write(g, SpriteName)
	out, err := Rewrite(b, func(name string) (string, bool) {
		return "https://gw.example/v1/segments/hls/v/v1/storyboard/" + name + "?exp=1&sig=x&s=y", name == "sprite_000.jpg"
	})
	if err != nil {
		t.Fatal(err)
	}
	cues, err := Parse(out)
	if err != nil || len(cues) != 2 || cues[1].Sprite != "https://gw.example/v1/segments/hls/v/v1/storyboard/sprite_000.jpg?exp=1&sig=x&s=y" || cues[1].X != 160 {
		t.Fatalf("%v %+v\n%s", err, cues, out)
	}
	if _, err := Rewrite(b, func(string) (string, bool) { return "", false }); err == nil {
		t.Error("a track naming an unknown sprite was rewritten")
	}
}

func TestSpriteIndex(t *testing.T) {
	for _, i := range []int{0, 1, 999, 1000} {
		if n, ok := SpriteIndex(SpriteName(i)); !ok || n != i {
			t.Errorf("SpriteIndex(%s) = %d %v", SpriteName(i), n, ok)
		}
	}
	for _, bad := range []string{"sprite_1.jpg", "sprite_0001.jpg", "../sprite_000.jpg", "sprite_000.png", "sprite_-01.jpg", "x"} {
		if _, ok := SpriteIndex(bad); ok {
			t.Errorf("SpriteIndex(%q) accepted", bad)
		}
	}
}

func FuzzParse(f *testing.F) {
	g := Geometry{Interval: time.Second, Duration: 2 * time.Second, Thumbnails: 2, Columns: 10, Rows: 1, TileWidth: 160, TileHeight: 90}
	b, _ := Write(g, SpriteName)
	f.Add(b)
	f.Fuzz(func(t *testing.T, data []byte) {
		cues, err := Parse(data)
		if err != nil {
			return
		}
		for _, c := range cues {
			if c.X < 0 || c.Y < 0 || c.W < 0 || c.H < 0 || c.Sprite == "" {
				t.Fatalf("parsed %+v", c)
			}
		}
	})
}
