package pipeline

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/hlsvault/hlsvault/internal/layout"
	"github.com/hlsvault/hlsvault/internal/packager"
	"github.com/hlsvault/hlsvault/internal/playlist"
	"github.com/hlsvault/hlsvault/internal/transcode"
)

// Trick play: an I-frame-only rendition per chosen video rendition. Each
// I-frame segment is the first access unit (an IDR: every segment starts
// with one, and holds exactly one GOP) of a plain segment, cut in process
// by transcode.FirstIFrame before the plain segment is deleted, stored as
// its own small MPEG-TS and encrypted whole by the packager, under the key
// of the period it plays in, with its own IV. Its EXTINF is its segment's
// duration: the time until the next I-frame. Byte ranges into the normal
// segments are not an option: a sub-range of a whole-segment AES-128-CBC
// ciphertext cannot be decrypted on its own (RFC 8216 decrypts each range
// as a segment of its own, with its own IV).

// iframeRungs reports which renditions of rs get an I-frame playlist
// (transcode.IFrameRungs: the rule the backfill applies too).
func iframeRungs(rs []transcode.Rendition) map[string]bool { return transcode.IFrameRungs(rs) }

// checkIFrameNames refuses a ladder where an I-frame rendition's name would
// be another rendition's, or not a valid rendition name.
func checkIFrameNames(rs []transcode.Rendition, chosen map[string]bool) error {
	names := map[string]bool{}
	for _, r := range rs {
		names[r.Name] = true
	}
	for name := range chosen {
		in := layout.IFrameRendition(name)
		if names[in] || !layout.ValidRendition(in) {
			return fmt.Errorf("pipeline: rendition %q cannot have an I-frame rendition named %q", name, in)
		}
	}
	return nil
}

// uploadIFrame cuts the first I-frame out of the plain segment j.local and
// stores it, encrypted, as the I-frame rendition's segment of the same
// index and name.
func (p *Pipeline) uploadIFrame(ctx context.Context, v *packager.Version, j segmentJob, mu *sync.Mutex) error {
	f, err := os.Open(j.local)
	if err != nil {
		return fmt.Errorf("pipeline: I-frame of %s/%s: %w", j.r.rendition.Name, j.uri, err)
	}
	cut, err := transcode.FirstIFrame(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("pipeline: I-frame of %s/%s: %w", j.r.rendition.Name, j.uri, err)
	}
	name := layout.IFrameRendition(j.r.rendition.Name) + "/" + j.uri
	st, err := v.Put(ctx, packager.Object{Name: name, Body: bytes.NewReader(cut), Size: int64(len(cut)), Start: j.start})
	if err != nil {
		return fmt.Errorf("pipeline: upload I-frame segment: %w", err)
	}
	p.metrics.uploadedBytes.Add(float64(st.Size))
	mu.Lock()
	j.r.iframes[j.index] = playlist.Segment{URI: j.uri, Duration: j.duration, Size: st.Size, IV: st.IV, KeyURI: st.Key.URI}
	mu.Unlock()
	return nil
}

// writeIFramePlaylists stores the I-frame playlists of the renditions that
// have one and returns their master entries, highest bandwidth first.
func (p *Pipeline) writeIFramePlaylists(ctx context.Context, v *packager.Version, res *uploadResult) ([]playlist.IFrameVariant, error) {
	var out []playlist.IFrameVariant
	for _, r := range res.renditions {
		if r.iframes == nil {
			continue
		}
		name := layout.IFrameRendition(r.rendition.Name)
		_, size, err := v.WriteMedia(ctx, name, playlist.Media{Segments: r.iframes, Independent: true, IFramesOnly: true})
		if err != nil {
			return nil, fmt.Errorf("pipeline: %w", err)
		}
		p.metrics.uploadedBytes.Add(float64(size))
		peak, avg := playlist.Bandwidth(r.iframes)
		out = append(out, playlist.IFrameVariant{URI: layout.MediaPlaylistURI(name), Bandwidth: peak, AverageBandwidth: avg,
			Codecs: videoCodec(r.codecs), Width: r.rendition.Width, Height: r.rendition.Height})
	}
	slices.SortStableFunc(out, func(a, b playlist.IFrameVariant) int { return cmp.Compare(b.Bandwidth, a.Bandwidth) })
	return out, nil
}

// videoCodec is the video part of a variant's CODECS: an I-frame stream
// carries no audio.
func videoCodec(codecs string) string {
	for c := range strings.SplitSeq(codecs, ",") {
		if strings.HasPrefix(c, "avc1.") || strings.HasPrefix(c, "hvc1.") || strings.HasPrefix(c, "hev1.") {
			return c
		}
	}
	first, _, _ := strings.Cut(codecs, ",")
	return first
}
