package transcode

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hlsvault/hlsvault/internal/testenv"
)

var update = flag.Bool("update", false, "rewrite golden files")

// goldenDir holds golden files and fixtures shared with the lead's tools.
const goldenDir = "../../testdata/transcode"

// helperArg, as the first argument, makes the test binary act as a
// stubborn fake ffmpeg (see stubbornHelper), the os/exec test idiom for
// child processes. An argument rather than a variable: the decoder gets
// no variable of ours.
const helperArg = "-transcode-test-helper="

var shared struct {
	dir string // removed after all tests

	longOnce sync.Once
	long     string
	longErr  error
}

func TestMain(m *testing.M) {
	if len(os.Args) > 1 && strings.HasPrefix(os.Args[1], helperArg) {
		stubbornHelper(strings.TrimPrefix(os.Args[1], helperArg))
		return
	}
	flag.Parse()
	dir, err := os.MkdirTemp("", "transcode-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	shared.dir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// stubbornHelper ignores SIGTERM and, as "parent", starts a child in the
// same process group that ignores it too and holds stdout open: the worst
// case for Runner's shutdown. It prints one progress block and then sleeps.
func stubbornHelper(role string) {
	signal.Ignore(syscall.SIGTERM)
	if role == "parent" {
		child := exec.Command(os.Args[0], helperArg+"child")
		child.Stdout = os.Stdout
		if err := child.Start(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(3)
		}
		fmt.Printf("frame=1\nout_time_us=40000\nspeed=1x\nprogress=continue\n")
	}
	time.Sleep(time.Hour)
	os.Exit(0)
}

// golden compares got with the golden file name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join(goldenDir, name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if bytes.Equal(got, want) {
		return
	}
	gl, wl := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
	for i := 0; i < max(len(gl), len(wl)); i++ {
		var g, w string
		if i < len(gl) {
			g = gl[i]
		}
		if i < len(wl) {
			w = wl[i]
		}
		if g != w {
			t.Fatalf("%s differs at line %d:\n got: %q\nwant: %q\n(run go test -update if the change is intended)", path, i+1, g, w)
		}
	}
}

// ffmpegRun runs ffmpeg (tests only) and fails the test on error.
func ffmpegRun(t testing.TB, args ...string) {
	t.Helper()
	ff, _ := testenv.FFmpeg(t)
	cmd := exec.Command(ff, append([]string{"-hide_banner", "-nostdin", "-loglevel", "error", "-y"}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg %v: %v\n%s", args, err, out)
	}
}

// ffprobeOut runs ffprobe (tests only) and returns its stdout.
func ffprobeOut(t testing.TB, args ...string) string {
	t.Helper()
	_, fp := testenv.FFmpeg(t)
	cmd := exec.Command(fp, append([]string{"-hide_banner", "-v", "error"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("ffprobe %v: %v\n%s", args, err, stderr.Bytes())
	}
	return string(out)
}

// longSource is a 30 s 640x360 clip with audio, long enough that ffmpeg is
// still busy when the cancellation tests stop it; made once per run.
func longSource(t *testing.T) string {
	t.Helper()
	shared.longOnce.Do(func() {
		ff, _ := testenv.FFmpeg(t)
		out := filepath.Join(shared.dir, "long.mp4")
		cmd := exec.Command(ff, "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
			"-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25:duration=30",
			"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=30",
			"-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "64k", out)
		if b, err := cmd.CombinedOutput(); err != nil {
			shared.longErr = fmt.Errorf("make long source: %v\n%s", err, b)
			return
		}
		shared.long = out
	})
	if shared.longErr != nil {
		t.Fatal(shared.longErr)
	}
	return shared.long
}

// testExec is the decoder Exec of the tests: the test's ffmpeg and ffprobe
// in the bwrap sandbox, as the worker runs them by default.
func testExec(t testing.TB) *Exec {
	t.Helper()
	ff, fp := testenv.FFmpeg(t)
	x, err := NewExec(ExecConfig{FFmpeg: ff, FFprobe: fp})
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// testContext is cancelled when the test ends or after a generous deadline.
func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}
