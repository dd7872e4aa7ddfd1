package backfill

import (
	"strings"

	"github.com/hlsvault/hlsvault/internal/catalog"
	"github.com/hlsvault/hlsvault/internal/playlist"
)

// alternateRendition is the catalog row of an EXT-X-MEDIA rendition with
// its own playlist (an alternate audio track, a subtitle track) carried
// into the new version: its type in lower case ("audio", "subtitles",
// "video"), group, language, NAME and DEFAULT, as in the master.
func alternateRendition(a playlist.Alternative, name, playlistName string, peak, avg int64, segments int, duration float64) catalog.Rendition {
	return catalog.Rendition{
		Name: name, Playlist: playlistName, Bandwidth: peak, AverageBandwidth: avg, Segments: segments, Duration: duration,
		Type: strings.ToLower(a.Type), Group: a.GroupID, Language: a.Language, Label: a.Name, Default: a.Default,
	}
}
