package pipeline

import (
	"slices"
	"strconv"

	"github.com/hlsvault/hlsvault/internal/catalog"
	"github.com/hlsvault/hlsvault/internal/layout"
	"github.com/hlsvault/hlsvault/internal/playlist"
	"github.com/hlsvault/hlsvault/internal/transcode"
)

// audioOutputs are the outputs of a plan's alternate audio renditions,
// uploaded like the video ones (same packager, same key periods) under
// their own directories.
func audioOutputs(plan transcode.Plan) []*renditionOutput {
	var out []*renditionOutput
	for _, a := range plan.Audio {
		out = append(out, &renditionOutput{rendition: transcode.Rendition{Name: a.Name}, audio: &a})
	}
	return out
}

// writtenAudio is an audio rendition whose media playlist is stored.
type writtenAudio struct {
	r         *renditionOutput
	playlist  string // object name
	peak, avg int64
	duration  float64
}

// audioGroup is what the master and the catalog say of the audio group.
type audioGroup struct {
	alternatives []playlist.Alternative
	renditions   []catalog.Rendition
	codecs       []string // distinct, in order
	// peak and avg are the largest audio rendition's, which every video
	// variant's BANDWIDTH and AVERAGE-BANDWIDTH must include (RFC 8216
	// section 4.3.4.2).
	peak, avg int64
}

func newAudioGroup(ws []writtenAudio) audioGroup {
	// The default rendition first, then the rest in source order: a
	// player that ignores DEFAULT takes the first, and hls.js, which starts
	// on the first and then switches to the DEFAULT one, re-appends the
	// same stretch of audio otherwise (a bufferAppendNoProgress warning).
	ws = slices.Clone(ws)
	slices.SortStableFunc(ws, func(a, b writtenAudio) int {
		switch {
		case a.r.audio.Default == b.r.audio.Default:
			return 0
		case a.r.audio.Default:
			return -1
		}
		return 1
	})
	var g audioGroup
	seen := map[string]bool{}
	for _, w := range ws {
		a := w.r.audio
		g.alternatives = append(g.alternatives, playlist.Alternative{
			Type: "AUDIO", GroupID: transcode.AudioGroup, Name: a.Label, Language: a.Language,
			Default: a.Default, Autoselect: "YES", Channels: strconv.Itoa(a.Channels),
			URI: layout.MediaPlaylistURI(a.Name),
		})
		g.renditions = append(g.renditions, catalog.Rendition{
			Name: a.Name, Playlist: w.playlist, Bandwidth: w.peak, AverageBandwidth: w.avg, Codecs: w.r.codecs,
			Segments: len(w.r.segments), Duration: w.duration,
			Type: catalog.RenditionAudio, Group: transcode.AudioGroup, Language: a.Language, Label: a.Label,
			Channels: a.Channels, Default: a.Default,
		})
		if !seen[w.r.codecs] {
			seen[w.r.codecs] = true
			g.codecs = append(g.codecs, w.r.codecs)
		}
		g.peak, g.avg = max(g.peak, w.peak), max(g.avg, w.avg)
	}
	return g
}

// apply makes the video variants (and their catalog rows, index for
// index) play with the group.
func (g audioGroup) apply(variants []playlist.Variant, renditions []catalog.Rendition) {
	for i := range variants {
		v := &variants[i]
		v.Audio = transcode.AudioGroup
		v.Bandwidth += g.peak
		v.AverageBandwidth += g.avg
		for _, c := range g.codecs {
			v.Codecs += "," + c
		}
		renditions[i].Bandwidth, renditions[i].AverageBandwidth, renditions[i].Codecs = v.Bandwidth, v.AverageBandwidth, v.Codecs
	}
}
