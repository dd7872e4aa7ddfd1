package packager

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/hlsvault/hlsvault/internal/storage"
	"github.com/hlsvault/hlsvault/internal/storyboard"
)

// TestStoryboardObjects: sprites and track are stored plain under the
// version prefix with their content types and a private cache header; a
// track that does not cover the duration, or names another sprite, is
// refused before anything of it is stored.
func TestStoryboardObjects(t *testing.T) {
	ctx := context.Background()
	s := newSetup(t, Options{})
	v, err := s.p.Begin("hls/vid/v1/", "https://k.example/{key_id}")
	if err != nil {
		t.Fatal(err)
	}
	jpg := []byte("\xff\xd8 not really a jpeg \xff\xd9")
	name, err := v.PutStoryboardSprite(ctx, 0, bytes.NewReader(jpg), int64(len(jpg)))
	if err != nil || name != "hls/vid/v1/storyboard/sprite_000.jpg" {
		t.Fatalf("%q %v", name, err)
	}
	rc, err := s.store.Get(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if !bytes.Equal(got, jpg) {
		t.Error("the sprite was not stored as given (plain)")
	}
	if o := s.store.options(name); o.ContentType != "image/jpeg" || !strings.HasPrefix(o.CacheControl, "private,") {
		t.Errorf("sprite stored with %+v", o)
	}
	g := storyboard.Geometry{Interval: time.Second, Duration: 2500 * time.Millisecond, Thumbnails: 3, Columns: 10, Rows: 1, TileWidth: 160, TileHeight: 90}
	track, err := storyboard.Write(g, storyboard.SpriteName)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := v.WriteStoryboardTrack(ctx, track, 1, 3*time.Second); err == nil {
		t.Error("a track ending before the duration was stored")
	}
	other, _ := storyboard.Write(g, func(int) string { return "sprite_001.jpg" })
	if _, _, err := v.WriteStoryboardTrack(ctx, other, 1, g.Duration); err == nil {
		t.Error("a track naming a sprite that was not stored was accepted")
	}
	if _, err := s.store.Stat(ctx, "hls/vid/v1/storyboard/storyboard.vtt"); err == nil {
		t.Fatal("a refused track was stored")
	}
	tn, size, err := v.WriteStoryboardTrack(ctx, track, 1, g.Duration)
	if err != nil || tn != "hls/vid/v1/storyboard/storyboard.vtt" || size != int64(len(track)) {
		t.Fatalf("%q %d %v", tn, size, err)
	}
	if o := s.store.options(tn); o.ContentType != "text/vtt" || !strings.HasPrefix(o.CacheControl, "private,") {
		t.Errorf("track stored with %+v", o)
	}
	// A redelivered title piece makes the same storyboard: the same bytes
	// count as stored, other bytes are refused, a short body is refused.
	if _, err := v.PutStoryboardSprite(ctx, 0, bytes.NewReader(jpg), int64(len(jpg))); err != nil {
		t.Errorf("the same sprite again: %v", err)
	}
	if _, _, err := v.WriteStoryboardTrack(ctx, track, 1, g.Duration); err != nil {
		t.Errorf("the same track again: %v", err)
	}
	if _, err := v.PutStoryboardSprite(ctx, 0, strings.NewReader("another"), 7); !errors.Is(err, storage.ErrExists) {
		t.Errorf("another sprite under a taken name: %v, want ErrExists", err)
	}
	if _, err := v.PutStoryboardSprite(ctx, 1, bytes.NewReader(jpg), int64(len(jpg))+1); err == nil {
		t.Error("a sprite shorter than declared was stored")
	}
}
