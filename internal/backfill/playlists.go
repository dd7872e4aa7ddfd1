package backfill

import (
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/hlsvault/hlsvault/internal/catalog"
	"github.com/hlsvault/hlsvault/internal/layout"
	"github.com/hlsvault/hlsvault/internal/packager"
	"github.com/hlsvault/hlsvault/internal/playlist"
)

// The new version's playlists keep everything the legacy master said
// (variants, alternate audio with CHANNELS, subtitle groups, closed
// caption groups with INSTREAM-ID) and complete what it lacked from what
// the re-encryption read in the media (media.go): CODECS, RESOLUTION,
// FRAME-RATE, CHANNELS, CLOSED-CAPTIONS, EXT-X-INDEPENDENT-SEGMENTS and
// I-frame playlists (iframes.go). A value the legacy master gives is kept
// as it is; the media only fills gaps, and only with what it was read to
// say (a segment that could not be read leaves the gap, never a guess).

// ccGroup is the CLOSED-CAPTIONS group declared for captions found in the
// media of a legacy master that declared none.
const ccGroup = "cc"

// writePlaylists writes each rendition's media playlist, the I-frame
// playlists, then the master.
func (c *Converter) writePlaylists(ctx context.Context, p *Plan, v *packager.Version, tt *titleTasks, mp *mediaPlan, res *Result) error {
	prefix := v.Prefix()
	type measured struct{ peak, avg int64 }
	bw := map[*renditionPlan]measured{}
	totals := map[*renditionPlan]float64{}
	for _, r := range p.renditions {
		m := playlist.Media{Independent: r.independent}
		if ind, checked := mp.byRendition[r].independent(); checked {
			m.Independent = ind
		}
		var segs []playlist.Segment
		for i := range r.segments {
			s := &r.segments[i]
			out := tt.segment[&s.obj].out
			es := playlist.Segment{URI: s.obj.dest, Duration: s.duration, Size: out.Size, IV: out.IV, Discontinuity: s.discontinuity,
				KeyURI: out.Key.URI}
			if in, ok := tt.init[&s.obj]; ok {
				es.Init = &playlist.Init{URI: path.Base(in.name), IV: in.out.IV, KeyURI: in.out.Key.URI}
			}
			m.Segments = append(m.Segments, es)
			segs = append(segs, playlist.Segment{URI: s.obj.dest, Duration: s.duration, Size: out.Size})
			totals[r] += s.duration
		}
		if _, _, err := v.WriteMedia(ctx, r.name, m); errors.Is(err, packager.ErrInvalidPlaylist) {
			return broken("media playlist %s cannot be rewritten: %v", r.legacy, err)
		} else if err != nil {
			return fmt.Errorf("backfill: %w", err)
		}
		peak, avg := playlist.Bandwidth(segs)
		bw[r] = measured{peak, avg}
	}
	iframes, err := mp.writeIFramePlaylists(ctx, v, p)
	if err != nil {
		return err
	}

	master := playlist.Master{IFrameVariants: iframes}
	if p.master == nil {
		r := p.renditions[0]
		mv := playlist.Variant{URI: layout.MediaPlaylistURI(r.name), Bandwidth: max(bw[r].peak, 1), AverageBandwidth: bw[r].avg}
		mp.fill(&mv, r, nil, totals[r])
		mv.ClosedCaptions = mp.captions(r, "", &master)
		master.Variants = []playlist.Variant{mv}
		master.Independent = mp.masterIndependent(p, false)
		res.Renditions = append(res.Renditions, catalog.Rendition{Name: r.name, Playlist: layout.MediaPlaylistName(prefix, r.name),
			Width: mv.Width, Height: mv.Height, Codecs: mv.Codecs, FrameRate: mv.FrameRate,
			Bandwidth: bw[r].peak, AverageBandwidth: bw[r].avg, Segments: len(r.segments), Duration: totals[r]})
		res.Duration = totals[r]
	} else {
		pl := &planner{store: c.Store, src: p.Source}
		lm := p.master
		master.Independent = mp.masterIndependent(p, lm.Independent)
		groups := map[string][]*renditionPlan{} // group id → renditions with a URI
		written := map[string]bool{}
		for _, lmed := range lm.Media {
			mm := lmed.Alternative
			if mm.Type == "CLOSED-CAPTIONS" {
				mm.URI = "" // RFC 8216: the captions are in the video
				if playlist.CheckClosedCaptions(mm) != nil {
					continue // an INSTREAM-ID no player reads
				}
			}
			if mm.URI != "" {
				name, err := pl.resolve(p.Source.Playlist, mm.URI)
				if err != nil {
					return err
				}
				r := p.byLegacy[name]
				mm.URI = layout.MediaPlaylistURI(r.name)
				if rm := mp.byRendition[r]; mm.Type == "AUDIO" && mm.Channels == "" && rm.audio != nil && rm.audio.Channels > 0 {
					mm.Channels = strconv.Itoa(rm.audio.Channels)
				}
				groups[mm.GroupID] = append(groups[mm.GroupID], r)
				// In the catalog too: the gateway serves a master's
				// URIs only when they name the version's renditions.
				res.Renditions = append(res.Renditions, alternateRendition(mm, r.name, layout.MediaPlaylistName(prefix, r.name),
					bw[r].peak, bw[r].avg, len(r.segments), totals[r]))
			}
			written[mm.GroupID] = true
			master.Alternatives = append(master.Alternatives, mm)
		}
		for _, v := range lm.Variants {
			name, err := pl.resolve(p.Source.Playlist, v.URI)
			if err != nil {
				return err
			}
			r := p.byLegacy[name]
			m := bw[r]
			// A variant plays its alternate audio alongside: count the
			// heaviest rendition of its group.
			var extra measured
			for _, a := range groups[v.Audio] {
				if a != r {
					extra.peak, extra.avg = max(extra.peak, bw[a].peak), max(extra.avg, bw[a].avg)
				}
			}
			peak := max(v.Bandwidth, m.peak+extra.peak, 1)
			mv := playlist.Variant{
				URI: layout.MediaPlaylistURI(r.name), Bandwidth: peak, AverageBandwidth: min(m.avg+extra.avg, peak),
				Codecs: v.Codecs, Width: v.Width, Height: v.Height, FrameRate: v.FrameRate,
			}
			if written[v.Audio] {
				mv.Audio = v.Audio
			}
			if written[v.Video] {
				mv.Video = v.Video
			}
			if written[v.Subtitles] {
				mv.Subtitles = v.Subtitles
			}
			mp.fill(&mv, r, groups[mv.Audio], totals[r])
			cc := v.ClosedCaptions
			if cc != "NONE" && !written[cc] {
				cc = ""
			}
			mv.ClosedCaptions = mp.captions(r, cc, &master)
			master.Variants = append(master.Variants, mv)
			res.Renditions = append(res.Renditions, catalog.Rendition{Name: r.name, Playlist: layout.MediaPlaylistName(prefix, r.name),
				Width: mv.Width, Height: mv.Height, Bandwidth: mv.Bandwidth, AverageBandwidth: mv.AverageBandwidth, Codecs: mv.Codecs,
				FrameRate: mv.FrameRate, Segments: len(r.segments), Duration: totals[r]})
			res.Duration = max(res.Duration, totals[r])
		}
		// Renditions only an EXT-X-MEDIA names (subtitles, alternate
		// audio) are catalogued too: the gateway serves only those.
		recorded := map[string]bool{}
		for _, cr := range res.Renditions {
			recorded[cr.Name] = true
		}
		for _, mm := range master.Alternatives {
			name, ok := layout.RenditionFromURI(mm.URI)
			if !ok || recorded[name] {
				continue
			}
			recorded[name] = true
			for _, r := range groups[mm.GroupID] {
				if r.name == name {
					res.Renditions = append(res.Renditions, catalog.Rendition{Type: strings.ToLower(mm.Type), Name: r.name,
						Playlist: layout.MediaPlaylistName(prefix, r.name), Segments: len(r.segments), Duration: totals[r]})
				}
			}
		}
	}
	name, _, err := v.WriteMaster(ctx, master)
	if errors.Is(err, packager.ErrInvalidPlaylist) {
		return broken("master playlist %s cannot be rewritten: %v", p.Source.Playlist, err)
	}
	if err != nil {
		return fmt.Errorf("backfill: %w", err)
	}
	res.Master = name
	return nil
}

// fill completes a variant from its media where the legacy master left a
// gap: CODECS (its own streams' and its audio group's, only when every one
// is known), RESOLUTION and FRAME-RATE from the SPS.
func (mp *mediaPlan) fill(mv *playlist.Variant, r *renditionPlan, audio []*renditionPlan, duration float64) {
	rm := mp.byRendition[r]
	if mv.Codecs == "" {
		codecs := []string{}
		own := rm.codecs()
		ok := own != "" && rm.complete()
		if ok {
			codecs = append(codecs, strings.Split(own, ",")...)
		}
		for _, a := range audio {
			am := mp.byRendition[a]
			c := am.codecs()
			if c == "" || !am.complete() {
				ok = false
				break
			}
			for part := range strings.SplitSeq(c, ",") {
				if !slices.Contains(codecs, part) {
					codecs = append(codecs, part)
				}
			}
		}
		if ok {
			mv.Codecs = strings.Join(codecs, ",")
		}
	}
	if rm.video != nil {
		if mv.Width == 0 && mv.Height == 0 {
			mv.Width, mv.Height = rm.video.Width, rm.video.Height
		}
		if mv.FrameRate == 0 {
			mv.FrameRate = rm.frameRate(duration)
		}
	}
}

// captions chooses a variant's CLOSED-CAPTIONS: the legacy master's group
// (or NONE) when it named one and the media does not contradict a NONE;
// else NONE when every segment was read and none carries A/53 captions;
// else, when some do, the CC1 group ccGroup (declared once in m); ""
// (nothing written) when the media could not be read.
func (mp *mediaPlan) captions(r *renditionPlan, legacy string, m *playlist.Master) string {
	rm := mp.byRendition[r]
	switch {
	case legacy != "" && legacy != "NONE":
		return legacy
	case rm.captions:
		for _, a := range m.Alternatives {
			if a.Type == "CLOSED-CAPTIONS" && a.GroupID == ccGroup {
				return ccGroup
			}
		}
		for _, a := range m.Alternatives {
			if a.GroupID == ccGroup {
				return "" // the legacy master uses the name for another group
			}
		}
		m.Alternatives = append(m.Alternatives, playlist.Alternative{Type: "CLOSED-CAPTIONS", GroupID: ccGroup, Name: "CC1",
			Autoselect: "YES", InstreamID: "CC1"})
		return ccGroup
	case legacy == "NONE":
		return legacy
	case rm.complete():
		return "NONE" // read to the end: no captions (or no video at all)
	}
	return ""
}

// masterIndependent is EXT-X-INDEPENDENT-SEGMENTS for the master: true when
// every segment of every rendition was read and each starts with an IDR
// (or holds no video), false when one was read not to, and otherwise what
// the legacy master said.
func (mp *mediaPlan) masterIndependent(p *Plan, legacy bool) bool {
	all := true
	for _, r := range p.renditions {
		ind, checked := mp.byRendition[r].independent()
		if checked && !ind {
			return false
		}
		all = all && checked
	}
	return all || legacy
}
