package transcode

// IFrameMaxHeight is the tallest rendition that gets an I-frame playlist.
// Trick play shows small pictures fast (a scrub preview, 8x scan): a player
// fetching I-frames at several per second wants them small, and the top
// rungs' IDRs are most of the storage trick play would cost. The lowest
// rendition always gets one, so that every title has trick play.
const IFrameMaxHeight = 720

// IFrameRungs reports which renditions of rs get an I-frame playlist: every
// video rendition up to IFrameMaxHeight, and the lowest. Renditions without
// a size are not video renditions. The pipeline applies it to its ladder,
// the backfill to a legacy title's variants.
func IFrameRungs(rs []Rendition) map[string]bool {
	out := map[string]bool{}
	lowest := -1
	for i, r := range rs {
		if r.Width <= 0 || r.Height <= 0 {
			continue // not a video rendition
		}
		if r.Height <= IFrameMaxHeight {
			out[r.Name] = true
		}
		if lowest < 0 || r.Height < rs[lowest].Height {
			lowest = i
		}
	}
	if lowest >= 0 {
		out[rs[lowest].Name] = true
	}
	return out
}
