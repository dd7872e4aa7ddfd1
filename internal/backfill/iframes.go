package backfill

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/hlsvault/hlsvault/internal/layout"
	"github.com/hlsvault/hlsvault/internal/packager"
	"github.com/hlsvault/hlsvault/internal/playlist"
	"github.com/hlsvault/hlsvault/internal/transcode"
)

// Trick play for re-encrypted titles. A legacy I-frame playlist points
// with EXT-X-BYTERANGE into whole segments; once each segment is one
// AES-128-CBC ciphertext, a sub-range of it cannot be decrypted alone (RFC
// 8216 decrypts each range as a segment of its own). So the legacy I-frame
// playlists are not copied: the re-encryption cuts each segment's first
// I-frame itself while the segment streams past (transcode.FirstIFrame,
// as the pipeline does), stores it as its own small encrypted MPEG-TS
// under {rendition}-iframes/, and writes a new I-frame playlist and its
// EXT-X-I-FRAME-STREAM-INF. It does so for the renditions the legacy
// I-frame playlists pointed into, and, for a title that had none, for the
// renditions our own transcodes would give trick play
// (transcode.IFrameRungs), which completes what the legacy title lacked.
// Only MPEG-TS video renditions are cut (fMP4 would need its fragments
// rewritten); a rendition where some segment does not start with an IDR
// gets no I-frame playlist.

// chooseTrickPlay decides which renditions get an I-frame playlist. It
// reads the legacy I-frame playlists (small) to find the renditions whose
// segments they point into.
func (pl *planner) chooseTrickPlay(ctx context.Context, p *Plan) error {
	p.trick = map[*renditionPlan]bool{}
	names := map[string]bool{}
	for _, r := range p.renditions {
		names[r.name] = true
	}
	eligible := func(r *renditionPlan) bool {
		in := layout.IFrameRendition(r.name)
		return formatOf(r) == formatTS && !names[in] && layout.ValidRendition(in)
	}
	if p.master == nil {
		if r := p.renditions[0]; eligible(r) {
			p.trick[r] = true
		}
		return nil
	}
	// Renditions by their first segment's object, which a legacy I-frame
	// playlist's first range lies in.
	bySource := map[string]*renditionPlan{}
	for _, r := range p.renditions {
		bySource[r.segments[0].obj.src] = r
	}
	for _, iv := range p.master.IFrameVariants {
		// A legacy I-frame playlist that is missing or broken only says
		// less about which renditions had trick play: ours replace them.
		name, err := pl.resolve(pl.src.Playlist, iv.URI)
		if err != nil {
			continue
		}
		data, err := pl.readPlaylist(ctx, name)
		if IsBroken(err) {
			continue
		}
		if err != nil {
			return err
		}
		m, err := playlist.ParseMedia(bytes.NewReader(data))
		if err != nil || len(m.Segments) == 0 {
			continue // an unreadable I-frame playlist: ours replaces it anyway
		}
		src, err := pl.resolve(name, m.Segments[0].URI)
		if err != nil {
			continue
		}
		if r := bySource[src]; r != nil && eligible(r) {
			p.trick[r] = true
		}
	}
	if len(p.trick) > 0 {
		return nil
	}
	// None in the legacy title: the renditions our transcodes would cut,
	// by the variants' RESOLUTION, or every TS variant when none has one.
	var (
		rungs []transcode.Rendition
		all   []*renditionPlan
	)
	byName := map[string]*renditionPlan{}
	for _, v := range p.master.Variants {
		name, err := pl.resolve(pl.src.Playlist, v.URI)
		if err != nil {
			return err
		}
		r := p.byLegacy[name]
		if !eligible(r) || audioOnlyCodecs(v.Codecs) || byName[r.name] != nil {
			continue
		}
		byName[r.name] = r
		all = append(all, r)
		rungs = append(rungs, transcode.Rendition{Name: r.name, Width: v.Width, Height: v.Height})
	}
	chosen := transcode.IFrameRungs(rungs)
	for _, r := range all {
		if chosen[r.name] || len(chosen) == 0 {
			p.trick[r] = true
		}
	}
	return nil
}

// audioOnlyCodecs reports whether a CODECS value names audio only.
func audioOnlyCodecs(codecs string) bool {
	if codecs == "" {
		return false
	}
	for c := range strings.SplitSeq(codecs, ",") {
		c = strings.TrimSpace(c)
		if !strings.HasPrefix(c, "mp4a.") && !strings.HasPrefix(c, "ac-3") && !strings.HasPrefix(c, "ec-3") && !strings.HasPrefix(c, "opus") {
			return false
		}
	}
	return true
}

// writeIFramePlaylists writes the I-frame playlist of every trick play
// rendition whose segments all gave an I-frame, and returns the master's
// entries for them, highest bandwidth first.
func (mp *mediaPlan) writeIFramePlaylists(ctx context.Context, v *packager.Version, p *Plan) ([]playlist.IFrameVariant, error) {
	var out []playlist.IFrameVariant
	for _, r := range p.renditions {
		rm := mp.byRendition[r]
		if !rm.trick || rm.noIFrame || !rm.complete() || rm.video == nil {
			continue
		}
		name := layout.IFrameRendition(r.name)
		if _, _, err := v.WriteMedia(ctx, name, playlist.Media{Segments: rm.iframes, Independent: true, IFramesOnly: true}); err != nil {
			return nil, fmt.Errorf("backfill: %w", err)
		}
		peak, avg := playlist.Bandwidth(rm.iframes)
		out = append(out, playlist.IFrameVariant{URI: layout.MediaPlaylistURI(name), Bandwidth: max(peak, 1), AverageBandwidth: avg,
			Codecs: rm.video.Codec, Width: rm.video.Width, Height: rm.video.Height})
	}
	slices.SortStableFunc(out, func(a, b playlist.IFrameVariant) int { return cmp.Compare(b.Bandwidth, a.Bandwidth) })
	return out, nil
}
