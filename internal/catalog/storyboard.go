package catalog

// RenditionStoryboard is the Rendition.Type of a version's thumbnail storyboard,
// recorded among its renditions (versions.renditions) so that it is
// published with the version in the same transaction and needs no schema:
// Playlist is the WebVTT track's object name, Width and Height one
// thumbnail's size, Segments the number of sprites (named by
// internal/storyboard beside the track), Duration the title's.
const RenditionStoryboard = "storyboard"

// Storyboard returns the version's storyboard rendition, if it has one.
func (v Version) Storyboard() (Rendition, bool) {
	for _, r := range v.Renditions {
		if r.Type == RenditionStoryboard {
			return r, true
		}
	}
	return Rendition{}, false
}

// VideoRenditions returns the renditions that are video variants of the
// master playlist (Type empty), in order.
func VideoRenditions(rs []Rendition) []Rendition {
	out := make([]Rendition, 0, len(rs))
	for _, r := range rs {
		if r.Type == "" {
			out = append(out, r)
		}
	}
	return out
}
