package transcode

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestFirstIFrame cuts the first access unit out of each segment of a
// real HLS encode (with audio, closed 1 s GOPs) and has ffprobe decode the
// cut: exactly one video frame, a keyframe, at the segment's first video
// timestamp, and no audio stream.
func TestFirstIFrame(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ffmpegRun(t, "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25:duration=3", "-f", "lavfi", "-i", "sine=duration=3",
		"-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", "25", "-keyint_min", "25", "-sc_threshold", "0",
		"-flags:v", "+cgop", "-c:a", "aac", "-f", "hls", "-hls_time", "1", "-hls_list_size", "0",
		"-hls_segment_filename", filepath.Join(dir, "seg_%05d.ts"), filepath.Join(dir, "index.m3u8"))
	segs, _ := filepath.Glob(filepath.Join(dir, "seg_*.ts"))
	if len(segs) != 3 {
		t.Fatalf("%d segments, want 3", len(segs))
	}
	for _, seg := range segs {
		b, err := os.ReadFile(seg)
		if err != nil {
			t.Fatal(err)
		}
		cut, err := FirstIFrame(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("%s: %v", seg, err)
		}
		if len(cut)%188 != 0 || len(cut) >= len(b) {
			t.Fatalf("%s: cut of %d bytes from %d", seg, len(cut), len(b))
		}
		out := seg + ".iframe.ts"
		if err := os.WriteFile(out, cut, 0o600); err != nil {
			t.Fatal(err)
		}
		frames := strings.Fields(ffprobeOut(t, "-show_entries", "frame=pts_time,key_frame,pict_type", "-of", "csv=p=0", out))
		want := strings.Fields(ffprobeOut(t, "-select_streams", "v", "-show_entries", "frame=pts_time,key_frame,pict_type", "-of", "csv=p=0",
			"-read_intervals", "%+#1", seg))
		if len(frames) != 1 || len(want) != 1 || frames[0] != want[0] || !strings.HasPrefix(frames[0], "1,") {
			t.Fatalf("%s: I-frame segment decodes to %q; the segment's first frame is %q", seg, frames, want)
		}
		// ffprobe lists a stream once more under its program: count distinct
		// indexes.
		streams := map[string]bool{}
		for _, s := range strings.Fields(ffprobeOut(t, "-show_entries", "stream=index,codec_type", "-of", "csv=p=0", out)) {
			streams[s] = true
		}
		if len(streams) != 1 || !streams["0,video"] {
			t.Fatalf("%s: I-frame segment has streams %v, want video only", seg, streams)
		}
	}
}

func TestFirstIFrameRefusesNonIDR(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	src := filepath.Join(dir, "src.ts")
	ffmpegRun(t, "-f", "lavfi", "-i", "testsrc2=size=160x90:rate=25:duration=1", "-c:v", "libx264", "-preset", "ultrafast",
		"-pix_fmt", "yuv420p", "-g", "25", "-f", "mpegts", src)
	// Starting at the second frame: the first access unit is a P frame.
	late := filepath.Join(dir, "late.ts")
	ffmpegRun(t, "-i", src, "-c", "copy", "-bsf:v", "noise=drop=eq(n\\,0)", "-f", "mpegts", late)
	b, err := os.ReadFile(late)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := FirstIFrame(bytes.NewReader(b)); !errors.Is(err, ErrNoIFrame) {
		t.Fatalf("FirstIFrame of a segment starting with a P frame: %v, want ErrNoIFrame", err)
	}
	if _, err := FirstIFrame(bytes.NewReader([]byte("not a transport stream at all, 188 bytes or not"))); err == nil {
		t.Fatal("FirstIFrame of garbage succeeded")
	}
}

func TestMPEGCRC(t *testing.T) {
	// The CRC-32/MPEG-2 check value of "123456789".
	if got := mpegCRC([]byte("123456789")); got != 0x0376e6e7 {
		t.Fatalf("mpegCRC = %#x, want 0x0376e6e7", got)
	}
}

// FuzzFirstIFrame: any input gives a cut or an error, never a panic, and a
// cut is whole TS packets no longer than the input.
func FuzzFirstIFrame(f *testing.F) {
	pkt := func(pid int, pusi bool, payload ...byte) []byte {
		p := make([]byte, 188)
		p[0], p[1], p[2], p[3] = 0x47, byte(pid>>8), byte(pid), 0x10
		if pusi {
			p[1] |= 0x40
		}
		copy(p[4:], payload)
		return p
	}
	f.Add(pkt(0, true, 0, 0, 0xb0, 13, 0, 1, 0xc1, 0, 0, 0, 1, 0xf0, 0))
	f.Add(append(pkt(0, true, 0, 0, 0xb0, 13, 0, 1, 0xc1, 0, 0, 0, 1, 0xf0, 0),
		pkt(0x1000, true, 0, 2, 0xb0, 18, 0, 1, 0xc1, 0, 0, 0xe1, 0, 0xf0, 0, 0x1b, 0xe1, 0, 0xf0, 0)...))
	f.Fuzz(func(t *testing.T, b []byte) {
		cut, err := FirstIFrame(bytes.NewReader(b))
		if err == nil && (len(cut)%188 != 0 || len(cut) > len(b)+188) {
			t.Fatalf("cut of %d bytes from %d", len(cut), len(b))
		}
	})
}
