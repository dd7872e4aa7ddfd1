package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/hlsvault/hlsvault/internal/catalog"
	"github.com/hlsvault/hlsvault/internal/storage"
	"github.com/hlsvault/hlsvault/internal/testenv"
	"github.com/hlsvault/hlsvault/internal/testenv/decoder"
	"github.com/hlsvault/hlsvault/internal/testenv/hlscheck"
	"github.com/hlsvault/hlsvault/internal/transcode"
	"github.com/hlsvault/hlsvault/internal/verify"
	"github.com/hlsvault/hlsvault/jobs"
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
	namedSource := 0 // reasons that quote the decoder on the source's path
	insp := asynq.NewInspector(h.redis)
	defer insp.Close()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			video := testenv.Name("bad")
			h.upload("uploads/"+video, tc.path)
			res, err := h.client.EnqueueTranscode(ctx, jobs.TranscodeRequest{VideoID: video, Source: "uploads/" + video})
			if err != nil {
				t.Fatal(err)
			}
			j := h.waitJob(res.TaskID)
			if j.State != jobs.Failed || !strings.Contains(j.Error, tc.reason) || j.Attempts != 1 {
				t.Errorf("job %+v: want failed after one attempt with %q in the reason", j, tc.reason)
			}
			// The reason names no local path: the job's directory is <job>.
			if strings.Contains(j.Error, h.pipe.cfg.TempDir) || strings.Contains(j.Error, "hlsvault-job-") {
				t.Errorf("job error names a local path: %s", j.Error)
			}
			if strings.Contains(j.Error, "<job>/source") {
				namedSource++
			}
			if task, err := insp.GetTaskInfo(h.queues.Transcode, res.TaskID); err != nil || strings.Contains(task.LastErr, h.pipe.cfg.TempDir) {
				t.Errorf("asynq task: %v, last error %q", err, task.LastErr)
			}
			if objs := h.objects("hls/" + video + "/"); len(objs) != 0 {
				t.Errorf("objects left: %d", len(objs))
			}
			if _, err := h.db.CurrentVersion(ctx, video); !errors.Is(err, catalog.ErrNotFound) {
				t.Errorf("a version was published: %v", err)
			}
		})
	}
	if namedSource == 0 {
		t.Error("no reason quoted the decoder on the source: the path check above ran on nothing")
	}
	if strings.Contains(h.logs.String(), h.pipe.cfg.TempDir) {
		t.Errorf("the worker's log names the job's temp dir %s", h.pipe.cfg.TempDir)
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
// version that verifies, whose every rung is progressive, tagged BT.709
// (primaries, transfer, matrix, limited range), square-pixelled at the
// source's display aspect, and as long as the source.
func TestAwkwardInputs(t *testing.T) {
	fs, err := storage.NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, fs)
	dir := t.TempDir()
	out := func(name string) string { return filepath.Join(dir, name) }
	x264 := []string{"-c:v", "libx264", "-preset", "ultrafast"}
	x265 := []string{"-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=error"}
	sine := []string{"-f", "lavfi", "-i", "sine=frequency=300:duration=2"}
	hdr := func(trc string) []string {
		return append(append([]string{"-pix_fmt", "yuv420p10le", "-profile:v", "main10"}, x265...),
			"-color_primaries", "bt2020", "-color_trc", trc, "-colorspace", "bt2020nc", "-color_range", "tv")
	}
	// Woven fields: 50 fps motion, two instants per frame, top first.
	weave := func(size, seconds string) string {
		return "testsrc2=size=" + size + ":rate=50:duration=" + seconds + ",tinterlace=mode=interleave_top"
	}
	mk := func(args ...string) { ffmpegMake(t, args...) }
	cat := func(parts ...[]string) []string { return slices.Concat(parts...) }

	mk(cat([]string{"-f", "lavfi", "-i", "testsrc2=size=321x241:rate=25:duration=2"}, x264, []string{out("odd.mp4")})...)
	mk(cat([]string{"-f", "lavfi", "-i", lavfiVideo + "2"}, x264, []string{out("landscape.mp4")})...)
	mk("-i", out("landscape.mp4"), "-c", "copy", "-metadata:s:v", "rotate=90", out("rotated.mp4"))
	mk(cat([]string{"-f", "lavfi", "-i", lavfiVideo + "2"}, x264, []string{"-pix_fmt", "yuv420p10le", out("10bit.mp4")})...)
	mk(cat([]string{"-f", "lavfi", "-i", lavfiVideo + "2", "-vf", "select='not(mod(n\\,3))+eq(mod(n\\,7)\\,1)'", "-fps_mode", "vfr"}, x264, []string{out("vfr.mkv")})...)
	mk(cat([]string{"-f", "lavfi", "-i", lavfiVideo + "1"}, x264, []string{out("one-second.mp4")})...)
	mk(cat([]string{"-f", "lavfi", "-i", "testsrc2=size=640x480:rate=25:duration=2"}, sine, x264, []string{"-c:a", "aac", out("4x3.mp4")})...)
	mk(cat([]string{"-f", "lavfi", "-i", lavfiVideo + "3", "-itsoffset", "1.5", "-f", "lavfi", "-i", "sine=duration=1.5"}, x264, []string{"-c:a", "aac", out("late-audio.ts")})...)
	// 1080i25 top field first, flagged so (field_order tt), one second.
	mk(cat([]string{"-f", "lavfi", "-i", weave("1920x1080", "1") + ",setfield=tff"}, x264,
		[]string{"-flags", "+ildct+ilme", "-x264opts", "tff=1", "-r", "25", out("1080i-tff.mp4")})...)
	// The same kind of woven fields, encoded and flagged progressive: the lie.
	mk(cat([]string{"-f", "lavfi", "-i", weave("320x240", "2") + ",setfield=prog"}, x264, []string{"-r", "25", out("lying-flag.mp4")})...)
	// A phone's HDR: HEVC Main 10, BT.2020, HLG, in MOV; and PQ (HDR10).
	mk(cat([]string{"-f", "lavfi", "-i", lavfiVideo + "2"}, sine, hdr("arib-std-b67"), []string{"-tag:v", "hvc1", "-c:a", "aac", out("hlg.mov")})...)
	mk(cat([]string{"-f", "lavfi", "-i", lavfiVideo + "2"}, hdr("smpte2084"), []string{out("pq.mkv")})...)
	// A PAL DVD: 720x576, SAR 64:45 (16:9 display), BT.601 matrix.
	mk(cat([]string{"-f", "lavfi", "-i", "testsrc2=size=720x576:rate=25:duration=2", "-vf", "setsar=64/45,scale=out_color_matrix=bt601"}, x264,
		[]string{"-color_primaries", "bt470bg", "-color_trc", "bt709", "-colorspace", "bt470bg", out("anamorphic.mp4")})...)
	mk(cat([]string{"-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30000/1001:duration=2"}, sine, x264, []string{"-c:a", "aac", out("ntsc.mp4")})...)
	mk(cat([]string{"-f", "lavfi", "-i", lavfiVideo + "2"}, x265, []string{"-tag:v", "hvc1", "-timecode", "01:00:00:00", out("timecode.mov")})...)
	mk(cat([]string{"-f", "lavfi", "-i", "testsrc2=size=96x64:rate=25:duration=2"}, x264, []string{out("tiny.mp4")})...)

	type want struct {
		fps string // the renditions' frame rate, when it matters
		hdr bool   // tone-mapped: the picture must not be the HDR values as they were
	}
	inputs := []struct {
		name, object string
		want         want
	}{
		{"odd.mp4", "uploads/odd.mp4", want{}},
		{"rotated.mp4", "uploads/rotated.mp4", want{}},
		{"10bit.mp4", "uploads/10bit.mp4", want{}},
		{"vfr.mkv", "uploads/vfr.mkv", want{}},
		{"one-second.mp4", "uploads/one second.mp4", want{}},
		{"4x3.mp4", "uploads/-rf 4x3|tee.mp4", want{}}, // hostile-looking names never reach argv
		{"late-audio.ts", "uploads/late-audio.ts", want{}},
		{"1080i-tff.mp4", "uploads/1080i-tff.mp4", want{fps: "50/1"}}, // deinterlaced at field rate
		{"lying-flag.mp4", "uploads/lying-flag.mp4", want{fps: "50/1"}},
		{"hlg.mov", "uploads/hlg.mov", want{hdr: true}},
		{"pq.mkv", "uploads/pq.mkv", want{hdr: true}},
		{"anamorphic.mp4", "uploads/anamorphic.mp4", want{fps: "25/1"}},
		{"ntsc.mp4", "uploads/ntsc.mp4", want{fps: "30000/1001"}},
		{"timecode.mov", "uploads/timecode.mov", want{}},
		{"tiny.mp4", "uploads/tiny.mp4", want{}},
	}
	h.startWorker()
	ctx := context.Background()
	_, ffprobe := testenv.FFmpeg(t)
	tasks := map[string]string{}
	sources := map[string]string{}
	expect := map[string]want{}
	for _, in := range inputs {
		h.upload(in.object, out(in.name))
		video := strings.NewReplacer(".", "_").Replace(in.name)
		res, err := h.client.EnqueueTranscode(ctx, jobs.TranscodeRequest{VideoID: video, Source: in.object})
		if err != nil {
			t.Fatal(err)
		}
		tasks[video], sources[video], expect[video] = res.TaskID, out(in.name), in.want
	}
	ver := &verify.Verifier{Store: h.store, DB: h.db, Keyring: h.keyring, Exec: decoder.Exec(t)}
	for video, task := range tasks {
		t.Run(video, func(t *testing.T) {
			if j := h.waitJob(task); j.State != jobs.Published {
				t.Fatalf("job: %+v", j)
			}
			rep, err := ver.Verify(ctx, video)
			if err != nil || !rep.OK() {
				t.Fatalf("verify: %+v %v", rep, err)
			}
			src, err := transcode.ProbeFile(ctx, decoder.Exec(t), sources[video], transcode.Limits{})
			if err != nil {
				t.Fatal(err)
			}
			srcAspect := float64(src.Video.DisplayWidth) / float64(src.Video.DisplayHeight)
			for _, rr := range rep.Renditions {
				if d := src.Duration.Seconds(); rr.DecodedDuration < d-0.15 || rr.DecodedDuration > d+0.25 {
					t.Errorf("%s: decoded %.3fs of a %.3fs source", rr.Name, rr.DecodedDuration, d)
				}
			}
			st, err := h.client.Status(ctx, video)
			if err != nil || st.Current == nil {
				t.Fatalf("status: %+v %v", st, err)
			}
			for _, r := range st.Current.Renditions {
				if r.Width%2 != 0 || r.Height%2 != 0 {
					t.Errorf("rendition %s is %dx%d: odd", r.Name, r.Width, r.Height)
				}
				if video == "rotated_mp4" && r.Width > r.Height {
					t.Errorf("rotated source gave landscape %dx%d", r.Width, r.Height)
				}
			}
			w := expect[video]
			for _, r := range h.decryptRenditions(t, video) {
				v := probeVideo(t, ffprobe, r.path)
				t.Logf("%s: %+v", r.name, v)
				if v.ColorPrimaries != "bt709" || v.ColorTransfer != "bt709" || v.ColorSpace != "bt709" || v.ColorRange != "tv" {
					t.Errorf("%s: colour %s/%s/%s/%s, want bt709/bt709/bt709/tv", r.name, v.ColorPrimaries, v.ColorTransfer, v.ColorSpace, v.ColorRange)
				}
				if v.PixFmt != "yuv420p" {
					t.Errorf("%s: pixel format %s", r.name, v.PixFmt)
				}
				if v.SAR != "1:1" {
					t.Errorf("%s: sample aspect ratio %s, want 1:1", r.name, v.SAR)
				}
				// Even sizes cost up to a pixel per side: 96x64 at 2% would fail.
				aspect := float64(v.Width) / float64(v.Height)
				if tol := 2 / float64(min(v.Width, v.Height)); aspect/srcAspect > 1+tol+0.01 || aspect/srcAspect < 1-tol-0.01 {
					t.Errorf("%s: %dx%d (aspect %.3f), source displays %dx%d (%.3f)", r.name, v.Width, v.Height, aspect, src.Video.DisplayWidth, src.Video.DisplayHeight, srcAspect)
				}
				if v.FieldOrder != "progressive" && v.FieldOrder != "" {
					t.Errorf("%s: field order %q", r.name, v.FieldOrder)
				}
				if w.fps != "" && v.AvgFrameRate != w.fps {
					t.Errorf("%s: frame rate %s, want %s", r.name, v.AvgFrameRate, w.fps)
				}
				c := idetCounts(t, r.path)
				if 10*(c.TFF+c.BFF) > c.Decided() {
					t.Errorf("%s: idet finds %d of %d decided frames interlaced: %+v", r.name, c.TFF+c.BFF, c.Decided(), c)
				}
			}
			if w.hdr {
				// The HDR signal as it was, squeezed into 8 bits, would be
				// the "washed out" picture; tone mapping moves its mean.
				raw := meanLuma(t, sources[video], "scale=426:240,format=yuv420p")
				got := meanLuma(t, h.decryptRenditions(t, video)[0].path, "null")
				if math.Abs(raw-got) < 10 {
					t.Errorf("mean luma %.1f, untouched HDR values give %.1f: not tone-mapped", got, raw)
				}
			}
		})
	}
	// Every playlist of every awkward input (odd sizes, NTSC and field
	// rates, no audio, late audio, ...) passes third-party strict parsing,
	// in one batch.
	hlscheck.StrictAll(t, hlscheck.Stored(t, h.store, "hls/"))
}

type decrypted struct{ name, path string }

// decryptRenditions decrypts every segment of each rendition of the
// video's current version into one MPEG-TS file per rendition (see
// decryptRendition).
func (h *harness) decryptRenditions(t *testing.T, video string) []decrypted {
	t.Helper()
	cur, err := h.db.CurrentVersion(context.Background(), video)
	if err != nil {
		t.Fatal(err)
	}
	var out []decrypted
	for _, r := range cur.Renditions {
		name := r.Playlist
		if !strings.HasPrefix(name, cur.Prefix) {
			name = path.Join(path.Dir(cur.Master), name)
		}
		p, _ := h.decryptRendition(t, cur, name)
		out = append(out, decrypted{r.Name, p})
	}
	return out
}

type videoInfo struct {
	Width          int    `json:"width"`
	Height         int    `json:"height"`
	PixFmt         string `json:"pix_fmt"`
	SAR            string `json:"sample_aspect_ratio"`
	FieldOrder     string `json:"field_order"`
	AvgFrameRate   string `json:"avg_frame_rate"`
	ColorRange     string `json:"color_range"`
	ColorSpace     string `json:"color_space"`
	ColorTransfer  string `json:"color_transfer"`
	ColorPrimaries string `json:"color_primaries"`
}

func probeVideo(t *testing.T, ffprobe, file string) videoInfo {
	t.Helper()
	b, err := exec.Command(ffprobe, "-v", "error", "-select_streams", "v:0", "-show_streams", "-of", "json", file).Output()
	if err != nil {
		t.Fatalf("ffprobe %s: %v", file, err)
	}
	var out struct{ Streams []videoInfo }
	if err := json.Unmarshal(b, &out); err != nil || len(out.Streams) != 1 {
		t.Fatalf("ffprobe %s: %v: %s", file, err, b)
	}
	return out.Streams[0]
}

// idetCounts runs idet, at the threshold the worker uses, over a whole file.
func idetCounts(t *testing.T, file string) transcode.IdetCounts {
	t.Helper()
	ffmpeg, _ := testenv.FFmpeg(t)
	b, err := exec.Command(ffmpeg, "-hide_banner", "-nostdin", "-nostats", "-i", file, "-an", "-vf", "idet=intl_thres=1.2", "-f", "null", "-").CombinedOutput()
	if err != nil {
		t.Fatalf("idet %s: %v\n%s", file, err, b)
	}
	c, err := transcode.ParseIdet(string(b))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// meanLuma is signalstats' mean Y of the file's first frame after vf.
func meanLuma(t *testing.T, file, vf string) float64 {
	t.Helper()
	ffmpeg, _ := testenv.FFmpeg(t)
	b, err := exec.Command(ffmpeg, "-hide_banner", "-nostdin", "-nostats", "-i", file, "-an", "-frames:v", "1",
		"-vf", vf+",signalstats,metadata=print:key=lavfi.signalstats.YAVG", "-f", "null", "-").CombinedOutput()
	if err != nil {
		t.Fatalf("signalstats %s: %v\n%s", file, err, b)
	}
	_, after, ok := strings.Cut(string(b), "lavfi.signalstats.YAVG=")
	if !ok {
		t.Fatalf("no YAVG in\n%s", b)
	}
	f, err := strconv.ParseFloat(strings.Fields(after)[0], 64)
	if err != nil {
		t.Fatal(err)
	}
	return f
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
