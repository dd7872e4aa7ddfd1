package pipeline

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/hlsvault/hlsvault/internal/layout"
	"github.com/hlsvault/hlsvault/internal/packager"
	"github.com/hlsvault/hlsvault/internal/playlist"
	"github.com/hlsvault/hlsvault/internal/transcode"
	"github.com/hlsvault/hlsvault/jobs"
)

// segmentFormat is the job's segment container: its own option, else the
// worker's. HEVC rungs in MPEG-TS are refused (bad input: the job's
// ladder or option asked for it).
func (p *Pipeline) segmentFormat(payload jobs.TranscodePayload, ladder transcode.Ladder) (transcode.SegmentFormat, error) {
	f := cmp.Or(p.cfg.Segments, transcode.SegmentsTS)
	if payload.Segments != "" {
		var err error
		if f, err = transcode.ParseSegmentFormat(payload.Segments); err != nil {
			return "", err
		}
	}
	if err := ladder.CheckSegments(f); err != nil {
		return "", err
	}
	return f, nil
}

// noteInit records the init section ffmpeg names in the EXT-X-MAP of a
// rendition's playlist (init_<name>.mp4 in its directory). ffmpeg writes
// it before the first fragment, which is listed only once complete.
func noteInit(r *renditionOutput, dir string, m *playlist.ParsedMedia) error {
	if r.init != "" || len(m.Segments) == 0 || m.Segments[0].Map == nil {
		return nil
	}
	uri := m.Segments[0].Map.URI
	if uri != path.Base(uri) || m.Segments[0].Map.ByteRange != nil {
		return fmt.Errorf("pipeline: unexpected init section %q in ffmpeg playlist of %s", uri, r.rendition.Name)
	}
	r.init = filepath.Join(dir, uri)
	return nil
}

// storeInits encrypts and stores each fMP4 rendition's init section once
// per key period its segments use (init_00000.mp4, init_00001.mp4, …),
// under that period's key with its own IV, and hangs each copy on the first
// segment of its period (EXT-X-MAP after the period's EXT-X-KEY). RFC 8216
// section 4.3.2.5: the init section is decrypted with the key and IV in
// effect at its EXT-X-MAP, so one period's copy must not serve the next.
// It runs once every segment is stored; the plain init section is then
// removed.
func (p *Pipeline) storeInits(ctx context.Context, v *packager.Version, res *uploadResult) error {
	for _, r := range res.renditions {
		if r.init == "" {
			continue
		}
		durations := make([]float64, len(r.segments))
		for i, s := range r.segments {
			durations[i] = s.Duration
		}
		starts, err := playlist.Starts(durations)
		if err != nil {
			return fmt.Errorf("pipeline: init sections of %s: %w", r.rendition.Name, err)
		}
		period, copies := -1, 0
		for i := range r.segments {
			n, err := v.PeriodOf(starts[i])
			if err != nil {
				return fmt.Errorf("pipeline: init sections of %s: %w", r.rendition.Name, err)
			}
			if n == period {
				continue
			}
			period = n
			name := layout.InitName(copies, transcode.InitExt)
			st, err := p.putFile(ctx, v, r.init, r.rendition.Name+"/"+name, starts[i])
			if err != nil {
				return fmt.Errorf("pipeline: upload init section: %w", err)
			}
			p.metrics.uploadedBytes.Add(float64(st.Size))
			r.segments[i].Init = &playlist.Init{URI: name, IV: st.IV, KeyURI: st.Key.URI}
			copies++
		}
		if err := os.Remove(r.init); err != nil {
			return fmt.Errorf("pipeline: remove plain init section: %w", err)
		}
	}
	return nil
}

// putFile stores the local file local as object name (relative to the
// version prefix), encrypted under the key of the period at start.
func (p *Pipeline) putFile(ctx context.Context, v *packager.Version, local, name string, start float64) (packager.Stored, error) {
	f, err := os.Open(local)
	if err != nil {
		return packager.Stored{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return packager.Stored{}, err
	}
	return v.Put(ctx, packager.Object{Name: name, Body: f, Size: fi.Size(), Start: start})
}

// orderVariants is the master's order: the H.264 variants first, highest
// bandwidth first, then the HEVC ones the same way. Players choose among
// the variants whose CODECS they can decode (hls.js and Shaka ask
// MediaSource.isTypeSupported; Safari knows its own), but an old player
// that takes the first variant it is given must be given one it decodes.
// A TS ladder has H.264 only: SortByBandwidth's order.
func orderVariants(vs []playlist.Variant) []playlist.Variant {
	sorted := playlist.SortByBandwidth(vs)
	slices.SortStableFunc(sorted, func(a, b playlist.Variant) int {
		return compareBool(isHEVC(a.Codecs), isHEVC(b.Codecs))
	})
	return sorted
}

func isHEVC(codecs string) bool {
	return strings.HasPrefix(codecs, "hvc1.") || strings.HasPrefix(codecs, "hev1.")
}

func compareBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}
