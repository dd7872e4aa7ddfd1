package testenv

import "testing"

// SubtitleSRT is the SubRip track MakeSubtitledSource muxes in: two cues,
// the second spanning a 2 s segment boundary, so a test can check cue
// text, times and the repeat across segments.
const SubtitleSRT = "1\n00:00:00,500 --> 00:00:01,500\nHello from the source\n\n" +
	"2\n00:00:01,800 --> 00:00:02,600\nSecond source cue\n\n"

// SubtitleVTT is a sidecar WebVTT file for the same video.
const SubtitleVTT = "WEBVTT\n\n00:00:00.250 --> 00:00:01.000\nBonjour du fichier\n\n" +
	"00:00:02.200 --> 00:00:02.900 line:0\nDeuxième réplique\n"

// MakeSubtitledSource writes a synthetic video (as MakeSource) with
// SubtitleSRT muxed in as a mov_text stream tagged language=eng and named
// "English" into dir, and returns its path. Also reusable for player
// checks of a subtitled title.
func MakeSubtitledSource(t testing.TB, dir string, s Source) string {
	t.Helper()
	s.Subtitles = SubtitleSRT
	return MakeSource(t, dir, s)
}
