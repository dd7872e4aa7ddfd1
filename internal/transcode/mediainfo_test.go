package transcode

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// probeVideo returns ffprobe's width, height and frame rate of a file's
// first video stream: an independent reading to hold ours to.
func probeVideo(t *testing.T, file string) (int, int, float64) {
	t.Helper()
	out := ffprobeOut(t, "-select_streams", "v:0", "-show_entries", "stream=width,height,r_frame_rate", "-of", "csv=p=0", file)
	first, _, _ := strings.Cut(strings.TrimSpace(out), "\n") // MPEG-TS lists the stream again under its program
	f := strings.Split(first, ",")
	if len(f) != 3 {
		t.Fatalf("ffprobe: %q", f)
	}
	w, _ := strconv.Atoi(f[0])
	h, _ := strconv.Atoi(f[1])
	num, den, _ := strings.Cut(f[2], "/")
	n, _ := strconv.ParseFloat(num, 64)
	d, _ := strconv.ParseFloat(den, 64)
	return w, h, n / d
}

// TestTSInspector reads real MPEG-TS written in odd-sized pieces (as a
// tee sees it) and holds each reading to an independent one: the codec
// string to SegmentCodecs, size and frame rate to ffprobe (including a
// size the SPS must crop to, and 29.97 fps), the channel count to what
// was encoded, the I-frame to FirstIFrame of the whole segment.
func TestTSInspector(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, tc := range []struct {
		name     string
		size     string
		rate     string
		args     []string
		channels int
	}{
		{"1080p_high_5.1", "1920x1080", "30000/1001", []string{"-profile:v", "high", "-ac", "6"}, 6},
		{"cropped_main_stereo", "318x178", "25", []string{"-profile:v", "main", "-ac", "2"}, 2},
		{"baseline_mono", "160x120", "24", []string{"-profile:v", "baseline", "-ac", "1"}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(dir, tc.name+".ts")
			ffmpegRun(t, append(append([]string{"-f", "lavfi", "-i", "testsrc2=size=" + tc.size + ":rate=" + tc.rate + ":duration=0.4",
				"-f", "lavfi", "-i", "sine=duration=0.4", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac"},
				tc.args...), "-f", "mpegts", out)...)
			b, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			s := NewTSInspector(true)
			for p := b; len(p) > 0; {
				n := min(len(p), 1000)
				s.Write(p[:n])
				p = p[n:]
			}
			info, err := s.Finish()
			if err != nil {
				t.Fatal(err)
			}
			codecs, err := SegmentCodecs(out)
			if err != nil {
				t.Fatal(err)
			}
			w, h, fps := probeVideo(t, out)
			switch {
			case info.Video == nil || info.Audio == nil:
				t.Fatalf("no video or audio: %+v", info)
			case info.Video.Codec+","+info.Audio.Codec != codecs:
				t.Errorf("codecs %s,%s; SegmentCodecs says %s", info.Video.Codec, info.Audio.Codec, codecs)
			case info.Video.Width != w || info.Video.Height != h:
				t.Errorf("size %dx%d; ffprobe says %dx%d", info.Video.Width, info.Video.Height, w, h)
			case strconv.FormatFloat(info.Video.FrameRate, 'f', 3, 64) != strconv.FormatFloat(fps, 'f', 3, 64):
				t.Errorf("frame rate %v; ffprobe says %v", info.Video.FrameRate, fps)
			case info.Audio.Channels != tc.channels:
				t.Errorf("%d channels, want %d", info.Audio.Channels, tc.channels)
			case !info.StartsWithIDR || info.Captions || info.VideoFrames < 9:
				t.Errorf("IDR %v, captions %v, %d frames", info.StartsWithIDR, info.Captions, info.VideoFrames)
			}
			cut, err := FirstIFrame(bytes.NewReader(b))
			if err != nil || !bytes.Equal(cut, info.IFrame) {
				t.Errorf("I-frame of %d bytes; FirstIFrame gives %d (%v)", len(info.IFrame), len(cut), err)
			}
		})
	}
}

func TestTSInspectorRefusesGarbage(t *testing.T) {
	s := NewTSInspector(false)
	s.Write(bytes.Repeat([]byte("not a transport stream "), 40))
	if _, err := s.Finish(); err == nil {
		t.Fatal("no error")
	}
}

// sei builds an SEI NAL unit with one user_data_registered_itu_t_t35
// message holding cc_data triples.
func sei(provider string, valid bool, triples ...byte) []byte {
	body := append([]byte{0xb5, 0x00, 0x31}, provider...)
	body = append(body, 0x03, 0xc0|byte(len(triples)/3), 0xff)
	for i := 0; i < len(triples); i += 3 {
		flags := triples[i]
		if !valid {
			flags &^= 0x04
		}
		body = append(body, flags, triples[i+1], triples[i+2])
	}
	body = append(body, 0xff)
	return append(append([]byte{0x06, 0x04, byte(len(body))}, body...), 0x80)
}

// TestSEICaptions: A/53 caption data is told from padding, from other
// registered user data and from invalid triples.
func TestSEICaptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		nal  []byte
		want bool
	}{
		{"608 field 1", sei("GA94", true, 0xfc, 0xc8, 0xe9), true},
		{"708 packet", sei("GA94", true, 0xff, 0x02, 0x21), true},
		{"608 padding", sei("GA94", true, 0xfc, 0x80, 0x80, 0xfd, 0x80, 0x80), false},
		{"invalid", sei("GA94", false, 0xfc, 0xc8, 0xe9), false},
		{"bar data", sei("DTG1", true, 0xfc, 0xc8, 0xe9), false},
		{"x264 unregistered", append([]byte{0x06, 0x05, 0x10}, bytes.Repeat([]byte{0x42}, 0x10)...), false},
	} {
		if got := seiHasCaptions(tc.nal); got != tc.want {
			t.Errorf("%s: seiHasCaptions = %v", tc.name, got)
		}
	}
}

// TestFMP4Readers reads an fMP4 HLS encode's init section (avcC, esds)
// and its first segment's samples.
func TestFMP4Readers(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ffmpegRun(t, "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=2", "-f", "lavfi", "-i", "sine=duration=2",
		"-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", "25", "-sc_threshold", "0", "-c:a", "aac", "-ac", "2",
		"-f", "hls", "-hls_time", "1", "-hls_segment_type", "fmp4", "-hls_fmp4_init_filename", "init.mp4",
		"-hls_segment_filename", filepath.Join(dir, "seg_%d.m4s"), filepath.Join(dir, "index.m3u8"))
	b, err := os.ReadFile(filepath.Join(dir, "init.mp4"))
	if err != nil {
		t.Fatal(err)
	}
	in, err := ParseFMP4Init(b)
	if err != nil {
		t.Fatal(err)
	}
	if in.Video == nil || in.Video.Width != 320 || in.Video.Height != 240 || in.Video.FrameRate != 25 || !strings.HasPrefix(in.Video.Codec, "avc1.42") {
		t.Errorf("video %+v", in.Video)
	}
	if in.Audio == nil || in.Audio.Codec != "mp4a.40.2" || in.Audio.Channels != 2 {
		t.Errorf("audio %+v", in.Audio)
	}
	seg, err := os.ReadFile(filepath.Join(dir, "seg_0.m4s"))
	if err != nil {
		t.Fatal(err)
	}
	s := NewFMP4Inspector(in)
	s.Write(seg)
	info, err := s.Finish()
	if err != nil || !info.StartsWithIDR || info.VideoFrames != 25 || info.Captions {
		t.Errorf("segment: %+v %v", info, err)
	}
	if _, err := ParseFMP4Init(seg[:100]); err == nil {
		t.Error("a cut segment parsed as an init section")
	}
}

// FuzzMediaReaders: no input makes the readers panic or loop, and what
// the one fMP4 init reader names is an avc, hvc1/hev1 or mp4a list. Seeded
// with ffmpeg's init sections (testdata/init_seed_*.mp4) and the init
// section that once ran mp4ff out of memory, besides its corpus.
func FuzzMediaReaders(f *testing.F) {
	f.Add(bytes.Repeat([]byte{0x47, 0x40, 0x00, 0x10, 0x00}, 60))
	f.Add(append([]byte{0x64, 0x00, 0x1f, 0xac}, bytes.Repeat([]byte{0xff}, 40)...))
	f.Add(sei("GA94", true, 0xfc, 0xc8, 0xe9)[1:])
	for _, name := range []string{"init_seed_avc.mp4", "init_seed_hevc.mp4", "init_oom_elst.mp4"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s := NewTSInspector(true)
		s.Write(b)
		_, _ = s.Finish()
		_, _ = ParseSPS(append([]byte{0x67}, b...))
		seiHasCaptions(append([]byte{0x06}, b...))
		if in, err := ParseFMP4Init(b); err == nil {
			m := NewFMP4Inspector(in)
			m.Write(b)
			_, _ = m.Finish()
		}
		_, _ = firstPTSFMP4(b, b)
		if c, err := CodecsFromInit(b); err == nil {
			for _, one := range strings.Split(c, ",") {
				if !strings.HasPrefix(one, "avc") && !strings.HasPrefix(one, "hvc1.") && !strings.HasPrefix(one, "hev1.") && !strings.HasPrefix(one, "mp4a.40.") {
					t.Fatalf("codecs %q", c)
				}
			}
		}
	})
}

// BenchmarkTSInspector measures the tee's cost per byte of a 720p segment
// (compare with AES-128-CBC, about 900 MB/s on one core here).
func BenchmarkTSInspector(b *testing.B) {
	dir := b.TempDir()
	out := filepath.Join(dir, "seg.ts")
	ffmpegRun(b, "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=25:duration=2", "-f", "lavfi", "-i", "sine=duration=2",
		"-c:v", "libx264", "-preset", "ultrafast", "-b:v", "3M", "-pix_fmt", "yuv420p", "-g", "50", "-c:a", "aac", "-f", "mpegts", out)
	seg, err := os.ReadFile(out)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(seg)))
	for b.Loop() {
		s := NewTSInspector(true)
		for p := seg; len(p) > 0; {
			n := min(len(p), 32<<10)
			s.Write(p[:n])
			p = p[n:]
		}
		if _, err := s.Finish(); err != nil {
			b.Fatal(err)
		}
	}
}
