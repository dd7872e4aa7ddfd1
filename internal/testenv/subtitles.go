package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

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
	srt := filepath.Join(dir, "embedded.srt")
	if err := os.WriteFile(srt, []byte(SubtitleSRT), 0o600); err != nil {
		t.Fatal(err)
	}
	plain := MakeSource(t, dir, s)
	out := filepath.Join(dir, "subtitled.mp4")
	ffmpeg, _ := FFmpeg(t)
	cmd := exec.Command(ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
		"-i", plain, "-i", srt, "-map", "0", "-map", "1", "-c", "copy", "-c:s", "mov_text",
		"-metadata:s:s:0", "language=eng", "-metadata:s:s:0", "handler_name=English", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("testenv: make subtitled source: %v\n%s", err, b)
	}
	return out
}
