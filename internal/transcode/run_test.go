package transcode

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hlsvault/hlsvault/internal/testenv"
)

// prepare probes src and builds the plan and argv for a ladder.
func prepare(t *testing.T, src, ladder string, segment time.Duration) (*Probe, Plan, []string, string) {
	t.Helper()
	probe, err := ProbeFile(testContext(t), testExec(t), src, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	l, err := ParseLadder(ladder)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := PlanLadder(probe, l, segment)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "hls")
	args, err := Args(plan, src, out, ArgsOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return probe, plan, args, out
}

// mediaPlaylist reads a rendition playlist: its EXTINF values and URIs.
func mediaPlaylist(t *testing.T, path string) (extinf, uris []string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	ended := false
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "#EXTINF:"):
			extinf = append(extinf, strings.TrimPrefix(line, "#EXTINF:"))
		case line == "#EXT-X-ENDLIST":
			ended = true
		case line != "" && !strings.HasPrefix(line, "#"):
			uris = append(uris, line)
		}
	}
	if !ended {
		t.Fatalf("%s has no #EXT-X-ENDLIST", path)
	}
	return extinf, uris
}

type segmentInfo struct {
	firstVideoKey bool
	width, height int
	audio         bool
}

func probeSegment(t *testing.T, path string) segmentInfo {
	t.Helper()
	out := ffprobeOut(t, "-show_entries", "stream=codec_type,width,height:packet=codec_type,flags", "-of", "json", path)
	var r struct {
		Packets []struct {
			CodecType string `json:"codec_type"`
			Flags     string `json:"flags"`
		} `json:"packets"`
		Streams []struct {
			CodecType string `json:"codec_type"`
			Width     int    `json:"width"`
			Height    int    `json:"height"`
		} `json:"streams"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatal(err)
	}
	var info segmentInfo
	for _, p := range r.Packets {
		if p.CodecType == "video" {
			info.firstVideoKey = strings.HasPrefix(p.Flags, "K")
			break
		}
	}
	for _, s := range r.Streams {
		switch s.CodecType {
		case "video":
			info.width, info.height = s.Width, s.Height
		case "audio":
			info.audio = true
		}
	}
	return info
}

// checkOutput verifies the HLS tree of one run against its plan.
func checkOutput(t *testing.T, plan Plan, out string, wantSegments int) {
	t.Helper()
	var first []string
	for i, r := range plan.Renditions {
		dir := filepath.Join(out, r.Name)
		extinf, uris := mediaPlaylist(t, filepath.Join(dir, "index.m3u8"))
		files, _ := filepath.Glob(filepath.Join(dir, "seg_*.ts"))
		leftovers, _ := filepath.Glob(filepath.Join(dir, "*.tmp"))
		if len(leftovers) > 0 {
			t.Errorf("%s: temporary files left: %v", r.Name, leftovers)
		}
		if len(uris) != wantSegments || len(files) != wantSegments {
			t.Fatalf("%s: %d playlist entries and %d files, want %d segments", r.Name, len(uris), len(files), wantSegments)
		}
		if i == 0 {
			first = extinf
		} else if !slices.Equal(extinf, first) {
			t.Errorf("segment boundaries differ: %s %v, %s %v", plan.Renditions[0].Name, first, r.Name, extinf)
		}
		for k, u := range uris {
			if want := filepath.Base(files[k]); u != want {
				t.Errorf("%s: playlist entry %d is %q, want %q", r.Name, k, u, want)
			}
			info := probeSegment(t, filepath.Join(dir, u))
			if !info.firstVideoKey {
				t.Errorf("%s/%s does not start with a keyframe", r.Name, u)
			}
			if info.width != r.Width || info.height != r.Height {
				t.Errorf("%s/%s is %dx%d, want %dx%d", r.Name, u, info.width, info.height, r.Width, r.Height)
			}
			if info.audio != plan.HasAudio {
				t.Errorf("%s/%s: audio %v, want %v", r.Name, u, info.audio, plan.HasAudio)
			}
		}
	}
	t.Logf("EXTINF %v", first)
}

func TestTranscodeLadder(t *testing.T) {
	for _, audio := range []bool{true, false} {
		name := map[bool]string{true: "audio", false: "no audio"}[audio]
		t.Run(name, func(t *testing.T) {
			src := testenv.MakeSource(t, t.TempDir(), testenv.Source{Width: 320, Height: 240, Seconds: 2, FPS: 25, Audio: audio})
			probe, plan, args, out := prepare(t, src, "240p:300k,144p:150k", time.Second)
			if (probe.Audio != nil) != audio || plan.GOP != 25 || len(plan.Renditions) != 2 {
				t.Fatalf("probe %+v plan %+v", probe, plan)
			}
			if r := plan.Renditions[1]; r.Width != 192 || r.Height != 144 {
				t.Fatalf("144p rendition %dx%d", r.Width, r.Height)
			}
			var last Progress
			var blocks int
			r := Runner{Exec: testExec(t), Input: src, Logger: testenv.Logger(t), Timeout: 30 * time.Second, MaxOutputBytes: 50 << 20, OutDir: out}
			if err := r.Run(testContext(t), args, func(p Progress) { last = p; blocks++ }); err != nil {
				t.Fatal(err)
			}
			if !last.Done || last.OutTime < 1900*time.Millisecond {
				t.Errorf("last progress %+v after %d blocks, want Done at about 2s", last, blocks)
			}
			checkOutput(t, plan, out, 2) // 2 s in 1 s segments
		})
	}
}

func TestTranscodeRotated(t *testing.T) {
	// ffmpeg 5.1 has no -display_rotation, and -metadata:s:v rotate=90 is
	// dropped when encoding: only a stream-copy remux turns the legacy tag
	// into the mp4 display matrix.
	dir := t.TempDir()
	plain := testenv.MakeSource(t, dir, testenv.Source{Width: 320, Height: 240, Seconds: 1, FPS: 25})
	src := filepath.Join(dir, "rotated.mp4")
	ffmpegRun(t, "-i", plain, "-c", "copy", "-metadata:s:v", "rotate=90", src)
	probe, plan, args, out := prepare(t, src, "240p:300k", time.Second)
	v := probe.Video
	if (v.Rotation != 90 && v.Rotation != 270) || v.DisplayWidth != 240 || v.DisplayHeight != 320 {
		t.Fatalf("video %+v: want a quarter turn and 240x320 display", v)
	}
	if r := plan.Renditions[0]; r.Width != 240 || r.Height != 320 {
		t.Fatalf("rendition %+v, want portrait 240x320", r)
	}
	r := Runner{Exec: testExec(t), Input: src, OutDir: out, Logger: testenv.Logger(t)}
	if err := r.Run(testContext(t), args, nil); err != nil {
		t.Fatal(err)
	}
	checkOutput(t, plan, out, 1)
}

// TestTranscodeVFR feeds a variable-rate source (1 s at 30 fps, then 2 s
// at 15 fps): fps= makes it constant, so a keyframe every GOP frames is a
// keyframe every second on every rung.
func TestTranscodeVFR(t *testing.T) {
	src := filepath.Join(t.TempDir(), "vfr.mkv")
	ffmpegRun(t, "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30:duration=2",
		"-vf", "setpts='(N+max(N-30,0))/30/TB'", "-fps_mode", "passthrough",
		"-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", src)
	_, plan, args, out := prepare(t, src, "240p:300k,144p:150k", time.Second)
	r := Runner{Exec: testExec(t), Input: src, OutDir: out, Logger: testenv.Logger(t)}
	if err := r.Run(testContext(t), args, nil); err != nil {
		t.Fatal(err)
	}
	checkOutput(t, plan, out, 3)
	extinf, _ := mediaPlaylist(t, filepath.Join(out, plan.Renditions[0].Name, "index.m3u8"))
	for _, d := range extinf[:len(extinf)-1] {
		if d != "1.000000," {
			t.Fatalf("EXTINF %v: want whole seconds but the last", extinf)
		}
	}
}

// liveMembers counts the non-zombie processes of a group.
func liveMembers(t *testing.T, pgid int) int {
	t.Helper()
	n := 0
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		i := strings.LastIndexByte(string(b), ')')
		f := strings.Fields(string(b[i+1:]))
		if len(f) >= 3 && f[2] == strconv.Itoa(pgid) && f[0] != "Z" && f[0] != "X" {
			n++
		}
	}
	return n
}

// stopTest runs r until stop says so (on the first progress block), then
// checks that Run came back in time and left no process behind.
func stopTest(t *testing.T, r Runner, args []string, stop func(cancel context.CancelFunc), wantIn time.Duration) error {
	t.Helper()
	ctx, cancel := context.WithCancel(testContext(t))
	defer cancel()
	var pgid int
	r.OnStart = func(pid int) { pgid = pid }
	var once sync.Once
	var stoppedAt time.Time
	var members int
	start := time.Now()
	err := r.Run(ctx, args, func(p Progress) {
		once.Do(func() {
			members = liveMembers(t, pgid)
			stoppedAt = time.Now()
			if stop != nil {
				stop(cancel)
			}
		})
	})
	if stoppedAt.IsZero() {
		stoppedAt = start
	}
	if took := time.Since(stoppedAt); took > wantIn {
		t.Errorf("Run returned %s after the stop, want within %s", took.Round(time.Millisecond), wantIn)
	}
	if pgid == 0 {
		t.Fatal("OnStart was not called")
	}
	if err := syscall.Kill(-pgid, 0); err == nil && liveMembers(t, pgid) > 0 {
		t.Errorf("process group %d survives Run", pgid)
	}
	t.Logf("group had %d live members at first progress; Run: %v", members, err)
	return err
}

func TestRunCancel(t *testing.T) {
	_, _, args, out := prepare(t, longSource(t), "360p:800k,240p:400k", 2*time.Second)
	grace := time.Second
	err := stopTest(t, Runner{Exec: testExec(t), Input: longSource(t), OutDir: out, Logger: testenv.Logger(t), KillGrace: grace}, args,
		func(cancel context.CancelFunc) { cancel() }, grace+time.Second)
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrInvalidInput) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
}

func TestRunTimeout(t *testing.T) {
	_, _, args, out := prepare(t, longSource(t), "360p:800k,240p:400k", 2*time.Second)
	r := Runner{Exec: testExec(t), Input: longSource(t), OutDir: out, Logger: testenv.Logger(t), KillGrace: time.Second, Timeout: 1500 * time.Millisecond}
	start := time.Now()
	err := stopTest(t, r, args, nil, r.Timeout+r.KillGrace+time.Second)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "deadline of 1.5s exceeded") {
		t.Fatalf("error %v, want the deadline", err)
	}
	if took := time.Since(start); took < r.Timeout {
		t.Fatalf("returned after %s, before the timeout", took)
	}
}

func TestRunOutputCap(t *testing.T) {
	_, _, args, out := prepare(t, longSource(t), "360p:800k,240p:400k", 1*time.Second)
	r := Runner{Exec: testExec(t), Input: longSource(t), Logger: testenv.Logger(t), KillGrace: time.Second, MaxOutputBytes: 100_000, OutDir: out}
	err := stopTest(t, r, args, nil, outputPoll+r.KillGrace+3*time.Second)
	if !errors.Is(err, ErrInvalidInput) || !strings.Contains(err.Error(), "output exceeded 100000 bytes") {
		t.Fatalf("error %v, want the output cap", err)
	}
}

// TestRunStubbornGroup stands in for an ffmpeg that ignores SIGTERM and has
// a child holding its stdout: Run must still return after the grace, with
// the whole group gone.
func TestRunStubbornGroup(t *testing.T) {
	grace := 500 * time.Millisecond
	// The fake ffmpeg is the test binary: unsandboxed, since the test
	// binary lives where the sandbox need not show it.
	x, err := NewExec(ExecConfig{Sandbox: SandboxNone, FFmpeg: os.Args[0]})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	err = stopTest(t, Runner{Exec: x, Input: dir, OutDir: dir, Logger: testenv.Logger(t), KillGrace: grace}, []string{helperArg + "parent"},
		func(cancel context.CancelFunc) { cancel() }, grace+time.Second)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
}

func TestRunFailure(t *testing.T) {
	dir := t.TempDir()
	r := Runner{Exec: testExec(t), Input: dir, OutDir: dir}
	err := r.Run(testContext(t), []string{"-hide_banner", "-nostdin", "-loglevel", "error",
		"-f", "lavfi", "-i", "nullsrc=d=0.1", "-c:v", "no_such_encoder", "-f", "null", "-"}, nil)
	if err == nil || !strings.HasPrefix(err.Error(), "transcode: ffmpeg: exit status 1: ") || !strings.Contains(err.Error(), "no_such_encoder") {
		t.Fatalf("error %v, want exit status and stderr tail", err)
	}
	if err := (&Runner{}).Run(testContext(t), nil, nil); err == nil {
		t.Fatal("Runner without Exec accepted")
	}
	if err := (&Runner{Exec: testExec(t), Input: dir, MaxOutputBytes: 1}).Run(testContext(t), nil, nil); err == nil {
		t.Fatal("Runner without OutDir accepted")
	}
}
