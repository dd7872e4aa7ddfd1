package gateway

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/hlsvault/hlsvault/internal/catalog"
	"github.com/hlsvault/hlsvault/internal/keys"
	"github.com/hlsvault/hlsvault/internal/layout"
	"github.com/hlsvault/hlsvault/internal/playlist"
	"github.com/hlsvault/hlsvault/internal/storage"
)

// Fixture describes a synthetic published title for benchmarks and tests:
// playlists and a wrapped key exactly as the pipeline publishes them, but no
// ffmpeg, and segment objects only if asked for (placeholders, not video).
type Fixture struct {
	Video          string
	Duration       time.Duration // default 2h
	Segment        time.Duration // default 4s
	Renditions     []string      // default 1080p, 720p, 480p, 360p
	KeyURITemplate string        // default the gateway's own
	// SegmentBytes > 0 stores every segment as that many random bytes.
	SegmentBytes int
}

// FixtureResult is what PublishSynthetic published.
type FixtureResult struct {
	Video      string
	Version    int
	KeyID      string
	Renditions []string
	Segments   int // per rendition
}

// PublishSynthetic publishes a synthetic version through the catalog's
// ordinary publish path (job, attempt, one-transaction publish), so the
// gateway sees it as it sees any title.
func PublishSynthetic(ctx context.Context, db *catalog.DB, store storage.Store, keyring *keys.Keyring, f Fixture) (FixtureResult, error) {
	if f.Duration <= 0 {
		f.Duration = 2 * time.Hour
	}
	if f.Segment <= 0 {
		f.Segment = 4 * time.Second
	}
	if len(f.Renditions) == 0 {
		f.Renditions = []string{"1080p", "720p", "480p", "360p"}
	}
	if f.KeyURITemplate == "" {
		f.KeyURITemplate = "http://127.0.0.1:8080/v1/keys/{key_id}"
	}
	var nonce [6]byte
	_, _ = rand.Read(nonce[:])
	source := "synthetic/" + f.Video
	job, _, err := db.UpsertJob(ctx, f.Video, source, "synthetic-"+f.Video+"-"+hex.EncodeToString(nonce[:]))
	if err != nil {
		return FixtureResult{}, err
	}
	att, err := db.StartAttempt(ctx, job.TaskID)
	if err != nil {
		return FixtureResult{}, err
	}
	ck, err := keys.NewContentKey()
	if err != nil {
		return FixtureResult{}, err
	}
	keyID, err := keys.NewKeyID()
	if err != nil {
		return FixtureResult{}, err
	}
	n := int((f.Duration + f.Segment - 1) / f.Segment)
	res := FixtureResult{Video: f.Video, Version: att.Version, KeyID: keyID, Renditions: f.Renditions, Segments: n}
	put := func(name string, b []byte) error {
		return store.Put(ctx, name, bytes.NewReader(b), int64(len(b)), storage.PutOptions{ContentType: layout.ContentType(name), CacheControl: layout.Immutable})
	}
	var (
		variants   []playlist.Variant
		renditions []catalog.Rendition
	)
	for ri, name := range f.Renditions {
		m := playlist.Media{KeyURI: strings.ReplaceAll(f.KeyURITemplate, "{key_id}", keyID), Independent: true}
		for i := range n {
			var iv [16]byte
			_, _ = rand.Read(iv[:])
			d := f.Segment.Seconds()
			if i == n-1 {
				d = (f.Duration - time.Duration(n-1)*f.Segment).Seconds()
			}
			seg := layout.SegmentName(i, ".ts")
			m.Segments = append(m.Segments, playlist.Segment{URI: seg, Duration: d, IV: iv, Size: int64(max(f.SegmentBytes, 188))})
			if f.SegmentBytes > 0 {
				b := make([]byte, f.SegmentBytes)
				_, _ = rand.Read(b)
				if err := put(att.Prefix+name+"/"+seg, b); err != nil {
					return res, err
				}
			}
		}
		var buf bytes.Buffer
		if err := playlist.WriteMedia(&buf, m); err != nil {
			return res, err
		}
		pl := layout.MediaPlaylistName(att.Prefix, name)
		if err := put(pl, buf.Bytes()); err != nil {
			return res, err
		}
		bw := int64(4_000_000 >> ri)
		variants = append(variants, playlist.Variant{URI: layout.MediaPlaylistURI(name), Bandwidth: bw, AverageBandwidth: bw * 3 / 4,
			Codecs: "avc1.64001f,mp4a.40.2", Width: 1920 >> ri, Height: 1080 >> ri, FrameRate: 30})
		renditions = append(renditions, catalog.Rendition{Name: name, Playlist: pl, Width: 1920 >> ri, Height: 1080 >> ri,
			Bandwidth: bw, AverageBandwidth: bw * 3 / 4, Codecs: "avc1.64001f,mp4a.40.2", FrameRate: 30, Segments: n,
			Duration: f.Duration.Seconds()})
	}
	var buf bytes.Buffer
	if err := playlist.WriteMaster(&buf, playlist.Master{Variants: playlist.SortByBandwidth(variants), Independent: true, Complete: true}); err != nil {
		return res, err
	}
	master := layout.MasterName(att.Prefix)
	if err := put(master, buf.Bytes()); err != nil {
		return res, err
	}
	wrapped, err := keyring.Primary().Wrap(keyID, ck)
	if err != nil {
		return res, err
	}
	ok, err := db.Publish(ctx, catalog.PublishParams{Attempt: att, Master: master, Renditions: renditions, Duration: f.Duration.Seconds(),
		Key: catalog.WrappedKey{KeyID: keyID, KEKID: keyring.Primary().ID(), Wrapped: wrapped}})
	if err != nil {
		return res, err
	}
	if !ok {
		return res, fmt.Errorf("gateway: fixture %s v%d was superseded", f.Video, att.Version)
	}
	return res, nil
}
