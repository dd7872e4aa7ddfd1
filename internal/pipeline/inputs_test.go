package pipeline

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hlsvault/hlsvault/internal/catalog"
	"github.com/hlsvault/hlsvault/internal/storage"
	"github.com/hlsvault/hlsvault/internal/testenv"
	"github.com/hlsvault/hlsvault/internal/verify"
)

// ffmpegMake runs ffmpeg to build a test input.
func ffmpegMake(t *testing.T, args ...string) {
	t.Helper()
	ffmpeg, _ := testenv.FFmpeg(t)
	args = append([]string{"-hide_banner", "-loglevel", "error", "-nostdin", "-y"}, args...)
	if b, err := exec.Command(ffmpeg, args...).CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg %v: %v\n%s", args, err, b)
	}
}

const lavfiVideo = "testsrc2=size=320x240:rate=25:duration="

// TestBadInputCorpus feeds hostile and broken uploads through the whole
// worker: each must fail at once with a specific reason, leave no object and
// no key, and never let a local file into any output.
func TestBadInputCorpus(t *testing.T) {
	fs, err := storage.NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, fs)
	h.pipe.cfg.Limits.MaxDuration = 5 * time.Second
	h.pipe.cfg.Limits.MaxBytes = 1 << 20
	dir := t.TempDir()
	file := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	valid := filepath.Join(dir, "valid.mp4")
	ffmpegMake(t, "-f", "lavfi", "-i", lavfiVideo+"2", "-c:v", "libx264", "-preset", "ultrafast", valid)
	whole, _ := os.ReadFile(valid)
	avi := filepath.Join(dir, "embed.avi")
	// An AVI carrying an HLS playlist that names a local file: the 2017
	// disclosure. AVI is not an allowed container, so it never reaches a
	// demuxer that would follow the playlist.
	ffmpegMake(t, "-f", "lavfi", "-i", lavfiVideo+"1", "-c:v", "mjpeg",
		"-metadata", "comment=#EXTM3U\n#EXTINF:1,\nfile:///etc/passwd", avi)
	audioOnly := filepath.Join(dir, "audio.m4a")
	ffmpegMake(t, "-f", "lavfi", "-i", "sine=duration=2", "-c:a", "aac", audioOnly)
	long := filepath.Join(dir, "long.mp4")
	ffmpegMake(t, "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=5:duration=7", "-c:v", "libx264", "-preset", "ultrafast", long)
	big := filepath.Join(dir, "big.mp4")
	ffmpegMake(t, "-f", "lavfi", "-i", "nullsrc=size=640x360:rate=25:duration=2,geq=lum='random(1)*255':cb=128:cr=128",
		"-c:v", "libx264", "-preset", "ultrafast", "-qp", "0", big)
	if st, err := os.Stat(big); err != nil || st.Size() <= 1<<20 {
		t.Fatalf("big source is not over the limit: %v", err)
	}

	huge := hugePictureTS(t, dir)

	cases := []struct {
		name, path, reason string
	}{
		{"header claiming 100000x100000", huge, "100000x100000"},
		{"zero bytes", file("empty.mp4", nil), "empty"},
		{"text", file("notes.txt", []byte("hello, this is not a video\n")), "unrecognised"},
		{"truncated mp4", file("cut.mp4", whole[:len(whole)/3]), "invalid input"},
		{"hls playlist", file("list.mp4", []byte("#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n")), "HLS playlist"},
		{"ffconcat", file("concat.mp4", []byte("ffconcat version 1.0\nfile /etc/passwd\n")), "invalid input"},
		{"avi embedding hls", avi, "not allowed"},
		{"audio only", audioOnly, "video"},
		{"over duration limit", long, "duration"},
		{"over size limit", big, "limit"},
	}
	h.startWorker()
	ctx := context.Background()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			video := testenv.Name("bad")
			h.upload("uploads/"+video, tc.path)
			res, err := h.client.EnqueueTranscode(ctx, video, "uploads/"+video, false)
			if err != nil {
				t.Fatal(err)
			}
			j := h.waitJob(res.TaskID)
			if j.State != catalog.Failed || !strings.Contains(j.Error, tc.reason) || j.Attempts != 1 {
				t.Errorf("job %+v: want failed after one attempt with %q in the reason", j, tc.reason)
			}
			if objs := h.objects("hls/" + video + "/"); len(objs) != 0 {
				t.Errorf("objects left: %d", len(objs))
			}
			if _, err := h.db.CurrentVersion(ctx, video); !errors.Is(err, catalog.ErrNotFound) {
				t.Errorf("a version was published: %v", err)
			}
		})
	}
	passwd, err := os.ReadFile("/etc/passwd")
	if err != nil {
		t.Fatal(err)
	}
	first := bytes.SplitN(passwd, []byte("\n"), 2)[0]
	for name, b := range h.objects("hls/") {
		if bytes.Contains(b, first) {
			t.Errorf("%s holds bytes of /etc/passwd", name)
		}
	}
}

// TestAwkwardInputs packages valid but unusual sources: each must publish a
// version that verifies.
func TestAwkwardInputs(t *testing.T) {
	fs, err := storage.NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, fs)
	dir := t.TempDir()
	out := func(name string) string { return filepath.Join(dir, name) }
	x264 := []string{"-c:v", "libx264", "-preset", "ultrafast"}
	sine := []string{"-f", "lavfi", "-i", "sine=frequency=300:duration=2"}

	ffmpegMake(t, append(append([]string{"-f", "lavfi", "-i", "testsrc2=size=321x241:rate=25:duration=2"}, x264...), out("odd.mp4"))...)
	ffmpegMake(t, append(append([]string{"-f", "lavfi", "-i", lavfiVideo + "2"}, x264...), out("landscape.mp4"))...)
	ffmpegMake(t, "-i", out("landscape.mp4"), "-c", "copy", "-metadata:s:v", "rotate=90", out("rotated.mp4"))
	ffmpegMake(t, append(append([]string{"-f", "lavfi", "-i", lavfiVideo + "2"}, "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p10le"), out("10bit.mp4"))...)
	ffmpegMake(t, append(append([]string{"-f", "lavfi", "-i", lavfiVideo + "2", "-vf", "select='not(mod(n\\,3))+eq(mod(n\\,7)\\,1)'", "-fps_mode", "vfr"}, x264...), out("vfr.mkv"))...)
	ffmpegMake(t, append(append([]string{"-f", "lavfi", "-i", lavfiVideo + "1"}, x264...), out("one-second.mp4"))...)
	ffmpegMake(t, append(append(append([]string{"-f", "lavfi", "-i", "testsrc2=size=640x480:rate=25:duration=2"}, sine...), x264...), "-c:a", "aac", out("4x3.mp4"))...)
	ffmpegMake(t, append(append([]string{"-f", "lavfi", "-i", lavfiVideo + "3", "-itsoffset", "1.5", "-f", "lavfi", "-i", "sine=duration=1.5"}, x264...), "-c:a", "aac", out("late-audio.ts"))...)

	inputs := []struct{ name, object string }{
		{"odd.mp4", "uploads/odd.mp4"},
		{"rotated.mp4", "uploads/rotated.mp4"},
		{"10bit.mp4", "uploads/10bit.mp4"},
		{"vfr.mkv", "uploads/vfr.mkv"},
		{"one-second.mp4", "uploads/one second.mp4"},
		{"4x3.mp4", "uploads/-rf 4x3|tee.mp4"}, // hostile-looking names never reach argv
		{"late-audio.ts", "uploads/late-audio.ts"},
	}
	h.startWorker()
	ctx := context.Background()
	tasks := map[string]string{}
	for _, in := range inputs {
		h.upload(in.object, out(in.name))
		video := strings.NewReplacer(".", "_").Replace(in.name)
		res, err := h.client.EnqueueTranscode(ctx, video, in.object, false)
		if err != nil {
			t.Fatal(err)
		}
		tasks[video] = res.TaskID
	}
	ver := &verify.Verifier{Store: h.store, DB: h.db, Keyring: h.keyring}
	for video, task := range tasks {
		t.Run(video, func(t *testing.T) {
			if j := h.waitJob(task); j.State != catalog.Published {
				t.Fatalf("job: %+v", j)
			}
			rep, err := ver.Verify(ctx, video)
			if err != nil || !rep.OK() {
				t.Fatalf("verify: %+v %v", rep, err)
			}
			st, _ := h.client.Status(ctx, video)
			for _, r := range st.Renditions {
				if r.Width%2 != 0 || r.Height%2 != 0 {
					t.Errorf("rendition %s is %dx%d: odd", r.Name, r.Width, r.Height)
				}
				if video == "rotated_mp4" && r.Width > r.Height {
					t.Errorf("rotated source gave landscape %dx%d", r.Width, r.Height)
				}
			}
		})
	}
}

// hugePictureTS makes an MPEG-TS whose H.264 sequence parameter set claims a
// 100000x100000 picture: a real stream from x264 with its SPS replaced by
// one written here bit by bit.
func hugePictureTS(t *testing.T, dir string) string {
	t.Helper()
	small, ts := filepath.Join(dir, "small.h264"), filepath.Join(dir, "huge.ts")
	ffmpegMake(t, "-f", "lavfi", "-i", "testsrc2=size=64x64:rate=10:duration=1", "-c:v", "libx264", "-preset", "ultrafast",
		"-profile:v", "baseline", "-f", "h264", small)
	in, err := os.ReadFile(small)
	if err != nil {
		t.Fatal(err)
	}
	var w bitWriter
	w.bits(0x67, 8) // NAL header: SPS
	w.bits(66, 8)   // profile_idc: baseline
	w.bits(0xc0, 8) // constraint flags
	w.bits(51, 8)   // level_idc
	w.ue(0)         // seq_parameter_set_id
	w.ue(0)         // log2_max_frame_num_minus4
	w.ue(2)         // pic_order_cnt_type
	w.ue(1)         // max_num_ref_frames
	w.bits(0, 1)    // gaps_in_frame_num_value_allowed_flag
	w.ue(100000/16 - 1)
	w.ue(100000/16 - 1)
	w.bits(0b11, 2) // frame_mbs_only_flag, direct_8x8_inference_flag
	w.bits(0, 2)    // frame_cropping_flag, vui_parameters_present_flag
	w.bits(1, 1)    // rbsp_stop_one_bit
	for w.n != 0 {
		w.bits(0, 1)
	}
	var sps []byte // with emulation prevention bytes
	zeros := 0
	for _, c := range w.b {
		if zeros >= 2 && c <= 3 {
			sps, zeros = append(sps, 3), 0
		}
		sps = append(sps, c)
		if c == 0 {
			zeros++
		} else {
			zeros = 0
		}
	}
	i := bytes.Index(in, []byte{0, 0, 0, 1, 0x67})
	if i < 0 {
		t.Fatal("no SPS in the x264 stream")
	}
	end := i + 4 + bytes.Index(in[i+4:], []byte{0, 0, 1})
	if in[end-1] == 0 {
		end--
	}
	out := append(append(append([]byte{}, in[:i+4]...), sps...), in[end:]...)
	crafted := filepath.Join(dir, "huge.h264")
	if err := os.WriteFile(crafted, out, 0o644); err != nil {
		t.Fatal(err)
	}
	ffmpegMake(t, "-f", "h264", "-i", crafted, "-c", "copy", "-f", "mpegts", ts)
	return ts
}

type bitWriter struct {
	b   []byte
	cur byte
	n   int
}

func (w *bitWriter) bits(v uint64, n int) {
	for i := n - 1; i >= 0; i-- {
		w.cur = w.cur<<1 | byte(v>>i&1)
		if w.n++; w.n == 8 {
			w.b, w.cur, w.n = append(w.b, w.cur), 0, 0
		}
	}
}

// ue writes an Exp-Golomb code.
func (w *bitWriter) ue(v uint64) {
	v++
	n := 0
	for x := v; x > 1; x >>= 1 {
		n++
	}
	w.bits(0, n)
	w.bits(v, n+1)
}
