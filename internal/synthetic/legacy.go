package synthetic

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"strings"

	"golang.org/x/sync/errgroup"

	"github.com/hlsvault/hlsvault/internal/storage"
)

// LegacyTitle describes a tiny plain-HLS title as the legacy catalogue
// holds them: {Prefix}{Video}/index.m3u8, one media playlist, and its
// unencrypted MPEG-TS segments. The segments are made-up TS packets (sync
// byte, then bytes derived from the video and segment number), enough for
// the backfill, which re-encrypts bytes and never decodes them; they do
// not decode as video.
type LegacyTitle struct {
	Prefix       string // e.g. "legacy/"
	Video        string
	Segments     int // default 2
	SegmentBytes int // default 2 TS packets (376 bytes); rounded up to whole packets
}

// PutLegacyTitle stores a LegacyTitle. It fails (ErrExists) if any of its
// objects exists.
func PutLegacyTitle(ctx context.Context, store storage.Store, t LegacyTitle) error {
	segs := max(t.Segments, 1)
	if t.Segments == 0 {
		segs = 2
	}
	const packet = 188
	size := max((t.SegmentBytes+packet-1)/packet, 1) * packet
	if t.SegmentBytes == 0 {
		size = 2 * packet
	}
	dir := strings.TrimSuffix(t.Prefix, "/") + "/" + t.Video + "/"
	var pl strings.Builder
	pl.WriteString("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-PLAYLIST-TYPE:VOD\n")
	for i := range segs {
		name := fmt.Sprintf("seg_%05d.ts", i)
		fmt.Fprintf(&pl, "#EXTINF:2.000,\n%s\n", name)
		if err := store.Put(ctx, dir+name, bytes.NewReader(tsBytes(t.Video, i, size)), int64(size), storage.PutOptions{ContentType: "video/mp2t"}); err != nil {
			return fmt.Errorf("synthetic: legacy title %s: %w", t.Video, err)
		}
	}
	pl.WriteString("#EXT-X-ENDLIST\n")
	body := pl.String()
	// The playlist last, as a packager would: a title is complete once it
	// has one.
	if err := store.Put(ctx, dir+"index.m3u8", strings.NewReader(body), int64(len(body)),
		storage.PutOptions{ContentType: "application/vnd.apple.mpegurl"}); err != nil {
		return fmt.Errorf("synthetic: legacy title %s: %w", t.Video, err)
	}
	return nil
}

// tsBytes fills size bytes (whole packets) with TS sync bytes and a
// deterministic payload, different for every title and segment.
func tsBytes(video string, seg, size int) []byte {
	b := make([]byte, size)
	seed := sha256.Sum256(fmt.Appendf(nil, "%s/%d", video, seg))
	for i := range b {
		b[i] = seed[i%len(seed)] ^ byte(i/len(seed))
	}
	for i := 0; i < size; i += 188 {
		b[i] = 0x47
	}
	return b
}

// LegacyVideoID is the id of the i-th title of LegacyCatalogue: fixed
// width, so that ids sort as their numbers do.
func LegacyVideoID(i int) string { return fmt.Sprintf("t%07d", i) }

// LegacyCatalogue stores titles from..to-1 (LegacyVideoID) under prefix,
// like tmpl, parallel at a time.
func LegacyCatalogue(ctx context.Context, store storage.Store, tmpl LegacyTitle, from, to, parallel int) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(parallel, 1))
	for i := from; i < to; i++ {
		t := tmpl
		t.Video = LegacyVideoID(i)
		g.Go(func() error { return PutLegacyTitle(gctx, store, t) })
	}
	return g.Wait()
}
