package transcode

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/hlsvault/hlsvault/internal/testenv"
)

// TestSegmentCodecs encodes real segments with a forced profile and level and
// checks the bytes read from their SPS and ADTS headers.
func TestSegmentCodecs(t *testing.T) {
	ffmpeg, _ := testenv.FFmpeg(t)
	dir := t.TempDir()
	for _, tc := range []struct {
		name  string
		args  []string
		audio bool
		want  string
	}{
		{"high_aac", []string{"-c:v", "libx264", "-preset", "veryfast", "-profile:v", "high", "-level:v", "3.1"}, true, "avc1.64001f,mp4a.40.2"},
		{"main_noaudio", []string{"-c:v", "libx264", "-preset", "veryfast", "-profile:v", "main", "-level:v", "4.0"}, false, "avc1.4d4028"},
		{"baseline", []string{"-c:v", "libx264", "-preset", "ultrafast", "-profile:v", "baseline", "-level:v", "3.0"}, true, "avc1.42c01e,mp4a.40.2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(dir, tc.name+".ts")
			args := []string{"-hide_banner", "-loglevel", "error", "-nostdin", "-y",
				"-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=1"}
			if tc.audio {
				args = append(args, "-f", "lavfi", "-i", "sine=duration=1", "-c:a", "aac")
			}
			args = append(append(args, tc.args...), "-pix_fmt", "yuv420p", "-f", "mpegts", out)
			if b, err := exec.Command(ffmpeg, args...).CombinedOutput(); err != nil {
				t.Fatalf("%v: %s", err, b)
			}
			got, err := SegmentCodecs(out)
			if err != nil || got != tc.want {
				t.Fatalf("SegmentCodecs = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestCodecsFromTSRefusesGarbage(t *testing.T) {
	for name, b := range map[string][]byte{
		"empty":   nil,
		"text":    bytes.Repeat([]byte("hello "), 100),
		"no sync": bytes.Repeat([]byte{0x47, 0, 0, 0x10}, 47*4),
	} {
		if _, err := CodecsFromTS(bytes.NewReader(b)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func FuzzCodecsFromTS(f *testing.F) {
	if b, err := os.ReadFile(filepath.Join("testdata", "codecs_seed.ts")); err == nil {
		f.Add(b)
	}
	f.Add(bytes.Repeat([]byte{0x47, 0x40, 0, 0x10}, 47))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = CodecsFromTS(bytes.NewReader(b))
	})
}
