package transcode

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// headerOf returns the first SniffSize bytes of path, as ProbeFile reads them.
func headerOf(t *testing.T, path string) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, SniffSize)
	n, err := io.ReadFull(f, b)
	if err != nil && err != io.ErrUnexpectedEOF {
		t.Fatal(err)
	}
	return b[:n]
}

func TestSniff(t *testing.T) {
	dir := t.TempDir()
	// One tiny clip per container, all from one ffmpeg process (each start
	// costs about half a second); the encoder matters only where the
	// container demands one.
	h264 := []string{"-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"}
	outputs := [][]string{
		append(h264, "a.mp4"),
		append(h264, "a.mov"),
		append(h264, "-movflags", "+faststart", "b.mp4"),
		append(h264, "a.mkv"),
		{"-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "a.webm"},
		append(h264, "a.ts"),
		append(h264, "-f", "mpegts", "-mpegts_m2ts_mode", "1", "a.m2ts"),
		{"-c:v", "mpeg4", "a.avi"},
		append(h264, "a.flv"),
		{"-c:v", "mpeg2video", "a.mpg"},
		{"a.gif"},
	}
	args := []string{"-f", "lavfi", "-i", "testsrc2=size=64x64:rate=10:duration=0.2"}
	for _, o := range outputs {
		o = slices.Clone(o)
		o[len(o)-1] = filepath.Join(dir, o[len(o)-1])
		args = append(args, o...)
	}
	ffmpegRun(t, args...)
	header := func(name string) []byte { return headerOf(t, filepath.Join(dir, name)) }
	files := []struct {
		name   string
		header []byte
		want   string // format, or a substring of the error
	}{
		{"mp4", header("a.mp4"), "mov"},
		{"mov", header("a.mov"), "mov"},
		{"mp4 faststart", header("b.mp4"), "mov"},
		{"mkv", header("a.mkv"), "matroska"},
		{"webm", header("a.webm"), "matroska"},
		{"ts", header("a.ts"), "mpegts"},
		{"m2ts", header("a.m2ts"), `container "m2ts" is not allowed (allowed: mp4/mov, matroska/webm, mpegts)`},
		{"avi", header("a.avi"), `container "avi" is not allowed`},
		{"flv", header("a.flv"), `container "flv" is not allowed`},
		{"mpeg-ps", header("a.mpg"), `container "mpeg-ps" is not allowed`},
		{"gif", header("a.gif"), `container "gif" is not allowed`},
		{"hls playlist", []byte("#EXTM3U\n"), "looks like an HLS playlist"},
		{"hls playlist with BOM", []byte("\xEF\xBB\xBF\r\n#EXTM3U\n#EXT-X-VERSION:3\n"), "looks like an HLS playlist"},
		{"ffconcat", []byte("ffconcat version 1.0\nfile /etc/passwd\n"), "looks like an ffconcat script"},
		{"empty", []byte{}, "file is empty"},
		{"text", []byte("hello"), "unrecognised container"},
		{"lone sync byte", []byte("G"), "unrecognised container"},
		{"ts sync broken", append(append([]byte{0x47}, make([]byte, 187)...), 0x00), "unrecognised container"},
		{"ebml only", []byte{0x1A, 0x45, 0xDF}, "unrecognised container"},
	}
	for _, tc := range files {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Sniff(tc.header)
			if err == nil {
				if got != tc.want {
					t.Fatalf("Sniff = %q, want %q", got, tc.want)
				}
				return
			}
			if !errors.Is(err, ErrInvalidInput) {
				t.Fatalf("error %v does not wrap ErrInvalidInput", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q, want it to mention %q", err, tc.want)
			}
			if !strings.HasPrefix(err.Error(), "transcode: invalid input: ") {
				t.Fatalf("error %q lacks the package prefix", err)
			}
		})
	}
}
