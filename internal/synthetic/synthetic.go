// Package synthetic publishes made-up titles for benchmarks and tests:
// playlists, a wrapped key and (if asked) encrypted random segments, written
// through the packager and published through the catalog exactly as the
// pipeline publishes a real title, but with no ffmpeg. `gateway
// bench-fixture` and the gateway's tests use it; nothing on a viewer's path
// does.
package synthetic

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"time"

	"github.com/hlsvault/hlsvault/internal/catalog"
	"github.com/hlsvault/hlsvault/internal/keys"
	"github.com/hlsvault/hlsvault/internal/layout"
	"github.com/hlsvault/hlsvault/internal/packager"
	"github.com/hlsvault/hlsvault/internal/playlist"
	"github.com/hlsvault/hlsvault/internal/storage"
)

// Title describes a synthetic title: its length, segments and renditions,
// and whether segment objects are stored at all (a playlist-only title is
// enough for playlist benchmarks).
type Title struct {
	Video          string
	Duration       time.Duration // default 2h
	Segment        time.Duration // default 4s
	Renditions     []string      // default 1080p, 720p, 480p, 360p
	KeyURITemplate string        // default the local gateway's
	// SegmentBytes > 0 stores every segment: that many random bytes,
	// encrypted under the version's key like any segment (so the object is
	// up to 16 bytes longer, see segcrypt.EncryptedSize).
	SegmentBytes int
	// KeyPeriod > 0 encrypts the title under a new key every KeyPeriod of
	// media, as KEY_PERIOD does for a real title; 0: one key.
	KeyPeriod time.Duration
}

// Result is what Publish published.
type Result struct {
	Video      string
	Version    int
	KeyID      string   // the key of the first period
	KeyIDs     []string // every key, in period order
	Renditions []string
	Segments   int // per rendition
}

// Publish publishes a synthetic version of f.Video through the catalog's
// ordinary publish path (job, attempt, one-transaction publish), so the
// gateway sees it as it sees any title.
func Publish(ctx context.Context, db *catalog.DB, store storage.Store, keyring *keys.Keyring, f Title) (Result, error) {
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
		return Result{}, err
	}
	att, err := db.StartAttempt(ctx, job.TaskID)
	if err != nil {
		return Result{}, err
	}
	v, err := packager.New(store, keyring, packager.Options{KeyPeriod: f.KeyPeriod}).Begin(att.Prefix, f.KeyURITemplate)
	if err != nil {
		return Result{}, err
	}
	n := int((f.Duration + f.Segment - 1) / f.Segment)
	res := Result{Video: f.Video, Version: att.Version, Renditions: f.Renditions, Segments: n}
	var (
		variants   []playlist.Variant
		renditions []catalog.Rendition
	)
	for ri, name := range f.Renditions {
		m := playlist.Media{Independent: true}
		for i := range n {
			d := f.Segment.Seconds()
			if i == n-1 {
				d = (f.Duration - time.Duration(n-1)*f.Segment).Seconds()
			}
			seg := playlist.Segment{URI: layout.SegmentName(i, ".ts"), Duration: d, Size: 188}
			start := (time.Duration(i) * f.Segment).Seconds()
			if f.SegmentBytes > 0 {
				st, err := v.Put(ctx, packager.Object{Name: name + "/" + seg.URI, Body: io.LimitReader(rand.Reader, int64(f.SegmentBytes)),
					Size: int64(f.SegmentBytes), Start: start})
				if err != nil {
					return res, err
				}
				seg.IV, seg.Size, seg.KeyURI = st.IV, st.Size, st.Key.URI
			} else {
				// No object: the IV only has to look like one.
				_, _ = rand.Read(seg.IV[:])
				k, err := v.KeyAt(start)
				if err != nil {
					return res, err
				}
				seg.KeyURI = k.URI
			}
			m.Segments = append(m.Segments, seg)
		}
		pl, _, err := v.WriteMedia(ctx, name, m)
		if err != nil {
			return res, err
		}
		bw := int64(4_000_000 >> ri)
		variants = append(variants, playlist.Variant{URI: layout.MediaPlaylistURI(name), Bandwidth: bw, AverageBandwidth: bw * 3 / 4,
			Codecs: "avc1.64001f,mp4a.40.2", Width: 1920 >> ri, Height: 1080 >> ri, FrameRate: 30})
		renditions = append(renditions, catalog.Rendition{Name: name, Playlist: pl, Width: 1920 >> ri, Height: 1080 >> ri,
			Bandwidth: bw, AverageBandwidth: bw * 3 / 4, Codecs: "avc1.64001f,mp4a.40.2", FrameRate: 30, Segments: n,
			Duration: f.Duration.Seconds()})
	}
	master, _, err := v.WriteMaster(ctx, playlist.Master{Variants: playlist.SortByBandwidth(variants), Independent: true, Complete: true})
	if err != nil {
		return res, err
	}
	wks, err := v.WrappedKeys()
	if err != nil {
		return res, err
	}
	for _, k := range wks {
		res.KeyIDs = append(res.KeyIDs, k.KeyID)
	}
	res.KeyID = res.KeyIDs[0]
	ok, err := db.Publish(ctx, catalog.PublishParams{Attempt: att, Master: master, Renditions: renditions, Duration: f.Duration.Seconds(),
		Keys: wks})
	if err != nil {
		return res, err
	}
	if !ok {
		return res, fmt.Errorf("synthetic: %s v%d was superseded", f.Video, att.Version)
	}
	return res, nil
}
