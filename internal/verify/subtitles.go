package verify

import (
	"fmt"
	"time"

	"github.com/hlsvault/hlsvault/internal/transcode"
)

// maxVTTSegment bounds what a subtitle segment may hold for the cue check.
const maxVTTSegment = 4 << 20

// cueProblems parses the decrypted WebVTT segment i (starting at start
// seconds, of a rendition lasting total seconds) and reports cues that
// do not parse or start after the end of the media, where no player
// shows them; it counts the cues in rr.
func (c *vttChecker) cueProblems(rr *RenditionReport, i int, start, total float64) []string {
	if c.n > maxVTTSegment {
		return []string{fmt.Sprintf("segment %d: %d bytes of WebVTT, more than %d", i, c.n, maxVTTSegment)}
	}
	cues, err := transcode.ParseVTT(c.body)
	if err != nil {
		return []string{fmt.Sprintf("segment %d: %v", i, err)}
	}
	rr.Cues += len(cues)
	end := time.Duration((total + 0.5) * float64(time.Second))
	var problems []string
	for _, q := range cues {
		if q.Start > end {
			problems = append(problems, fmt.Sprintf("segment %d (from %.3fs): cue at %s starts after the media ends (%.3fs)", i, start, transcode.FormatVTTTime(q.Start), total))
		}
	}
	return problems
}
