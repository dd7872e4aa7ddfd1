package packager

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/hlsvault/hlsvault/internal/layout"
	"github.com/hlsvault/hlsvault/internal/storage"
	"github.com/hlsvault/hlsvault/internal/storyboard"
)

// The storyboard (thumbnail sprites and their WebVTT track) is stored
// plain: players load sprites as ordinary images (an <img> or a canvas
// draws them, no HLS key applies), so AES-128 would only make them
// unreadable. They are 160-pixel previews, one frame every few seconds;
// what protects them is the gateway, which serves them only through
// token-gated, signed, session-bound URLs, as it serves segments, with a
// private Cache-Control. They still go through the packager, under the
// version prefix, and become visible only when the version is published.

// PutStoryboardSprite stores sprite i (a JPEG of size bytes, read whole:
// sprites are a few hundred KiB) of the version's storyboard and returns
// its object name. Like the track, a sprite already stored with the same
// bytes counts as stored (putSame): a chunked title piece redelivered
// after its worker died makes the same storyboard again.
func (v *Version) PutStoryboardSprite(ctx context.Context, i int, body io.Reader, size int64) (string, error) {
	name := v.prefix + storyboard.Dir + storyboard.SpriteName(i)
	b, err := io.ReadAll(io.LimitReader(body, size+1))
	if err == nil && int64(len(b)) != size {
		err = fmt.Errorf("the sprite is %d bytes, not the %d declared", len(b), size)
	}
	if err == nil {
		err = v.putSame(ctx, name, b, storage.PutOptions{ContentType: layout.ContentType(name), CacheControl: layout.PrivateImmutable})
	}
	if err != nil {
		return "", fmt.Errorf("packager: put %s: %w", name, err)
	}
	return name, nil
}

// WriteStoryboardTrack stores the storyboard's WebVTT track, after
// checking that it reads back, covers duration with contiguous cues and
// names only sprites under the storyboard's directory, and returns its
// object name and size.
func (v *Version) WriteStoryboardTrack(ctx context.Context, track []byte, sprites int, duration time.Duration) (string, int64, error) {
	cues, err := storyboard.Parse(track)
	if err == nil {
		err = storyboard.Check(cues, duration, 0, 0)
	}
	if err != nil {
		return "", 0, fmt.Errorf("packager: storyboard track does not read back: %w", err)
	}
	for _, c := range cues {
		n, ok := storyboard.SpriteIndex(c.Sprite)
		if !ok || n >= sprites || strings.Contains(c.Sprite, "/") {
			return "", 0, fmt.Errorf("packager: storyboard track names %q, not one of its %d sprites", c.Sprite, sprites)
		}
	}
	name := v.prefix + storyboard.Dir + storyboard.VTT
	if err := v.putSame(ctx, name, track, storage.PutOptions{ContentType: layout.ContentType(name), CacheControl: layout.PrivateImmutable}); err != nil {
		return "", 0, fmt.Errorf("packager: put %s: %w", name, err)
	}
	return name, int64(len(track)), nil
}
