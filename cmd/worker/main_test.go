package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/hlsvault/hlsvault/internal/catalog"
	"github.com/hlsvault/hlsvault/internal/gc"
	"github.com/hlsvault/hlsvault/internal/keys"
	"github.com/hlsvault/hlsvault/internal/testenv"
	"github.com/hlsvault/hlsvault/jobs"
)

var buildOnce = map[string]*struct {
	once sync.Once
	path string
	err  error
}{"worker": {}, "enqueue": {}}

var binDir string

// binary builds ./cmd/NAME once per test run.
func binary(t *testing.T, name string) string {
	t.Helper()
	b := buildOnce[name]
	b.once.Do(func() {
		out := filepath.Join(binDir, name)
		cmd := exec.Command("go", "build", "-o", out, "github.com/hlsvault/hlsvault/cmd/"+name)
		if msg, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go build %s: %v\n%s", name, err, msg)
		}
		b.path = out
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "hlsvault-bin-")
	if err != nil {
		panic(err)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// testEnv is a complete, isolated configuration: its own database, queues,
// storage directory and temp directory.
func testEnv(t *testing.T) map[string]string {
	t.Helper()
	ffmpeg, ffprobe := testenv.FFmpeg(t)
	return map[string]string{
		"REDIS_URL":          "redis://" + testenv.RedisAddr(t) + "/0",
		"DATABASE_URL":       testenv.DatabaseURL(t),
		"STORAGE_URL":        "file://" + t.TempDir(),
		"KEY_ENCRYPTION_KEY": testenv.KEK(t),
		"KEY_URI_TEMPLATE":   "https://video.example.com/v1/keys/{key_id}",
		"LADDER":             "240p:300k:64k,144p:150k:64k",
		"SEGMENT_SECONDS":    "1",
		"X264_PRESET":        "ultrafast",
		"QUEUE_PREFIX":       testenv.Name("q"),
		"METRICS_ADDR":       "127.0.0.1:0",
		"SHUTDOWN_TIMEOUT":   "10s",
		"TMPDIR":             t.TempDir(),
		"FFMPEG":             ffmpeg,
		"FFPROBE":            ffprobe,
		"PATH":               os.Getenv("PATH"),
		"HOME":               os.Getenv("HOME"),
	}
}

func (e envMap) get(k string) string { return e[k] }

type envMap map[string]string

func (e envMap) list() []string {
	var out []string
	for k, v := range e {
		out = append(out, k+"="+v)
	}
	return out
}

func runEnqueue(t *testing.T, env envMap, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(binary(t, "enqueue"), args...)
	cmd.Env = env.list()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

func TestRefusesToStartWithoutKEK(t *testing.T) {
	env := envMap(testEnv(t))
	delete(env, "KEY_ENCRYPTION_KEY")
	err := run(context.Background(), nil, env.get, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "KEY_ENCRYPTION_KEY") {
		t.Fatalf("err = %v, want a KEY_ENCRYPTION_KEY error", err)
	}
	env["KEY_ENCRYPTION_KEY"] = "c2hvcnQ="
	if err := run(context.Background(), nil, env.get, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "32 bytes") {
		t.Fatalf("short KEK: err = %v", err)
	}
}

// TestEnqueueAndWorker drives both programs as a user would: the worker in
// process, the enqueue CLI as a real process.
func TestEnqueueAndWorker(t *testing.T) {
	env := envMap(testEnv(t))
	ctx, cancel := context.WithCancel(context.Background())
	var stderr testenv.SyncBuffer
	done := make(chan error, 1)
	// The worker already holds the next KEK as retired (step 2 of the
	// rotation runbook), so that the rotation below may rewrap under it.
	workerEnv := maps.Clone(env)
	workerEnv["KEY_ENCRYPTION_KEYS_RETIRED"] = testenv.SeededKEK(100)
	go func() { done <- run(ctx, nil, workerEnv.get, io.Discard, &stderr) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("worker: %v", err)
		}
	})

	dir := t.TempDir()
	src := testenv.MakeSource(t, dir, testenv.Source{Width: 320, Height: 240, Seconds: 2, Audio: true})
	out, err := runEnqueue(t, env, "transcode", "--video", "clip-1", "--source", src, "--wait")
	if err != nil || !strings.Contains(out, "published video clip-1 version 1") {
		t.Fatalf("enqueue --wait: %v\n%s\nworker log:\n%s", err, out, stderr.String())
	}
	out, err = runEnqueue(t, env, "transcode", "--video", "clip-1", "--source", src)
	if err != nil || !strings.Contains(out, "already published") {
		t.Fatalf("second enqueue of the same file: %v\n%s", err, out)
	}
	out, err = runEnqueue(t, env, "status", "--video", "clip-1")
	if err != nil {
		t.Fatalf("status: %v\n%s", err, out)
	}
	var st jobs.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil || st.State != jobs.Published || st.Current == nil || st.Current.Number != 1 ||
		st.Current.Master != "hls/clip-1/v1/master.m3u8" || len(st.Current.Renditions) != 3 || !st.Current.Storyboard ||
		st.Current.Renditions[2].Type != "storyboard" || st.Current.Renditions[2].Playlist != "hls/clip-1/v1/storyboard/storyboard.vtt" {
		// Two video renditions and, STORYBOARD being on by default, the
		// storyboard.
		t.Fatalf("status: %v\n%s", err, out)
	}
	out, err = runEnqueue(t, env, "verify", "--video", "clip-1")
	if err != nil || !strings.Contains(out, "verified") {
		t.Fatalf("verify: %v\n%s", err, out)
	}

	bad := filepath.Join(dir, "-bad name|.mp4")
	os.WriteFile(bad, []byte("#EXTM3U\n#EXTINF:1,\nfile:///etc/passwd\n"), 0o644)
	out, err = runEnqueue(t, env, "transcode", "--video", "clip-2", "--source", bad, "--wait")
	if err == nil || !strings.Contains(out, "job failed") || !strings.Contains(out, "playlist") {
		t.Fatalf("bad source: %v\n%s", err, out)
	}
	out, err = runEnqueue(t, env, "transcode", "--video", "../x", "--source", src)
	if err == nil || !strings.Contains(out, "invalid video id") {
		t.Fatalf("bad id: %v\n%s", err, out)
	}
	if strings.Contains(stderr.String(), "panic") {
		t.Fatalf("worker log:\n%s", stderr.String())
	}

	// KEK rotation without downtime, while the worker runs: the new KEK
	// becomes primary with the old one retired, keys are rewrapped, and
	// then the new KEK alone opens everything.
	rot := envMap{}
	for k, v := range env {
		rot[k] = v
	}
	rot["KEY_ENCRYPTION_KEY"] = testenv.SeededKEK(100)
	rot["KEY_ENCRYPTION_KEYS_RETIRED"] = env["KEY_ENCRYPTION_KEY"]
	var rotOut bytes.Buffer
	if err := run(ctx, []string{"rewrap-keys"}, rot.get, &rotOut, io.Discard); err != nil || !strings.Contains(rotOut.String(), "rewrapped 1 keys") {
		t.Fatalf("rewrap-keys: %v\n%s", err, rotOut.String())
	}
	delete(rot, "KEY_ENCRYPTION_KEYS_RETIRED")
	if out, err := runEnqueue(t, rot, "verify", "--video", "clip-1"); err != nil {
		t.Fatalf("verify with the new KEK only: %v\n%s", err, out)
	}
	if out, err := runEnqueue(t, env, "verify", "--video", "clip-1"); err == nil {
		t.Fatalf("the old KEK still opens the key:\n%s", out)
	}

	// Operations: health and metrics.
	addr := metricsAddr(t, stderr.String())
	for path, want := range map[string]string{
		"/healthz": "ok",
		"/metrics": `hlsvault_jobs_total{outcome="published"} 1`,
	} {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), want) {
			t.Errorf("GET %s: %d, want %q in:\n%.2000s", path, resp.StatusCode, want, body)
		}
	}
	opsMetricsServed(t, addr, env["QUEUE_PREFIX"])
}

// metricsAddr finds the address the worker's metrics server listens on in
// its JSON log.
func metricsAddr(t *testing.T, logs string) string {
	t.Helper()
	for _, line := range strings.Split(logs, "\n") {
		var rec struct {
			Msg  string `json:"msg"`
			Addr string `json:"addr"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "metrics listening" {
			return rec.Addr
		}
	}
	t.Fatalf("no metrics address in the worker log:\n%s", logs)
	return ""
}

// TestSIGTERMRequeues stops a real worker process in the middle of ffmpeg:
// ffmpeg must be gone, the temp directory removed, and the task back in the
// queue without a spent retry; a new worker then publishes it.
func TestSIGTERMRequeues(t *testing.T) {
	env := envMap(testEnv(t))
	env["LADDER"] = "360p:600k:64k,240p:300k:64k"
	env["X264_PRESET"] = "medium"
	src := testenv.MakeSource(t, t.TempDir(), testenv.Source{Width: 640, Height: 360, Seconds: 30, Audio: true})

	start := func() (*exec.Cmd, *testenv.SyncBuffer) {
		cmd := exec.Command(binary(t, "worker"))
		cmd.Env = env.list()
		logs := &testenv.SyncBuffer{}
		cmd.Stdout, cmd.Stderr = logs, logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		return cmd, logs
	}
	worker, logs := start()
	if out, err := runEnqueue(t, env, "transcode", "--video", "long", "--source", src); err != nil {
		t.Fatalf("enqueue: %v\n%s", err, out)
	}
	// Wait until ffmpeg is encoding.
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, _ := runEnqueue(t, env, "status", "--video", "long")
		var st jobs.Status
		json.Unmarshal([]byte(out), &st)
		if st.State == jobs.Processing && st.Job != nil && st.Job.Progress > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("job never made progress: %s\nworker log:\n%s", out, logs.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	if n := ffmpegsUnder(env["TMPDIR"]); n == 0 {
		t.Fatal("no ffmpeg running under the worker's temp dir")
	}
	stopped := time.Now()
	worker.Process.Signal(syscall.SIGTERM)
	if err := worker.Wait(); err != nil {
		t.Fatalf("worker exit: %v\n%s", err, logs.String())
	}
	if d := time.Since(stopped); d > 10*time.Second {
		t.Errorf("shutdown took %v", d)
	}
	if n := ffmpegsUnder(env["TMPDIR"]); n != 0 {
		t.Errorf("%d ffmpeg processes left behind", n)
	}
	if left, _ := filepath.Glob(filepath.Join(env["TMPDIR"], "hlsvault-job-*")); len(left) != 0 {
		t.Errorf("temp dirs left behind: %v", left)
	}
	out, _ := runEnqueue(t, env, "status", "--video", "long")
	if !strings.Contains(out, `"state": "queued"`) {
		t.Errorf("after SIGTERM the job is not queued:\n%s", out)
	}
	insp := asynq.NewInspector(asynq.RedisClientOpt{Addr: testenv.RedisAddr(t)})
	defer insp.Close()
	info, err := insp.GetTaskInfo(jobs.QueueNames(env["QUEUE_PREFIX"]).Transcode, jobs.TaskID("long", sourceOf(t, out)))
	if err != nil {
		t.Fatalf("task after SIGTERM: %v", err)
	}
	if info.Retried != 0 || (info.State != asynq.TaskStatePending && info.State != asynq.TaskStateRetry) {
		t.Errorf("task after SIGTERM: state %v, retried %d; want back in the queue, no retry spent", info.State, info.Retried)
	}

	// A new worker finishes the job.
	_, logs2 := start()
	if out, err := runEnqueue(t, env, "transcode", "--video", "long", "--source", src, "--wait", "--wait-timeout", "3m"); err != nil {
		t.Fatalf("after restart: %v\n%s\n%s", err, out, logs2.String())
	}
	if out, err := runEnqueue(t, env, "verify", "--video", "long"); err != nil {
		t.Fatalf("verify: %v\n%s", err, out)
	}
}

func sourceOf(t *testing.T, statusJSON string) string {
	var st jobs.Status
	if err := json.Unmarshal([]byte(statusJSON), &st); err != nil || st.Job == nil {
		t.Fatalf("status: %v", err)
	}
	return st.Job.Source
}

// ffmpegsUnder counts live ffmpeg processes whose arguments mention dir.
func ffmpegsUnder(dir string) int {
	n := 0
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || !bytes.Contains(b, []byte(dir)) {
			continue
		}
		stat, err := os.ReadFile(filepath.Join(filepath.Dir(p), "stat"))
		if err != nil || bytes.Contains(stat, []byte(") Z ")) {
			continue
		}
		if argv0 := strings.SplitN(string(b), "\x00", 2)[0]; strings.HasSuffix(argv0, "ffmpeg") {
			n++
		}
	}
	return n
}

// holdingPurger keeps a collector's pass, and so its lock, until released.
type holdingPurger struct{ held, release chan struct{} }

func (p holdingPurger) PurgeLegacy(context.Context, time.Duration, int) (int, int, error) {
	close(p.held)
	<-p.release
	return 0, 0, nil
}

// TestGCCommand: `worker gc` runs one pass of both steps, versions and
// legacy objects, and skips it, saying so, while another worker's
// collector holds the lock.
func TestGCCommand(t *testing.T) {
	env := envMap(testEnv(t))
	ctx := context.Background()
	var out bytes.Buffer
	if err := run(ctx, []string{"gc"}, env.get, &out, io.Discard); err != nil ||
		!strings.Contains(out.String(), "removed 0 versions (0 objects, 0 bytes) older than 48h0m0s") ||
		!strings.Contains(out.String(), "removed the legacy objects of 0 re-encrypted titles (0 objects) older than 48h0m0s") {
		t.Fatalf("gc: %v\n%s", err, out.String())
	}

	db, err := catalog.Open(ctx, env["DATABASE_URL"], testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	p := holdingPurger{held: make(chan struct{}), release: make(chan struct{})}
	other, err := gc.New(gc.Config{Legacy: p}, db, nil, nil, testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := other.RunOnce(ctx); done <- err }()
	<-p.held
	out.Reset()
	err = run(ctx, []string{"gc"}, env.get, &out, io.Discard)
	close(p.release)
	if err != nil || !strings.Contains(out.String(), "another worker is collecting garbage; nothing done") {
		t.Errorf("gc while another collector runs: %v\n%s", err, out.String())
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestHeartbeatAndRewrapRefusal: a running worker records the KEKs it
// holds; rewrap-keys under a KEK it lacks is refused naming it, changes
// nothing, and runs once the worker holds the KEK; a clean shutdown removes
// the row.
func TestHeartbeatAndRewrapRefusal(t *testing.T) {
	env := envMap(testEnv(t))
	env["KEY_ENCRYPTION_KEYS_RETIRED"] = testenv.SeededKEK(4)
	ctx := context.Background()
	db, err := catalog.Open(ctx, env["DATABASE_URL"], testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	kr, _ := keys.NewKeyring(env["KEY_ENCRYPTION_KEY"], env["KEY_ENCRYPTION_KEYS_RETIRED"])

	startWorker := func(env envMap) (stop func()) {
		wctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- run(wctx, nil, env.get, io.Discard, io.Discard) }()
		deadline := time.Now().Add(15 * time.Second)
		for {
			live, err := db.LiveKEKHolders(ctx)
			if err == nil && len(live) == 1 {
				break
			}
			select {
			case err := <-done:
				t.Fatalf("worker exited: %v", err)
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("no kek_holders row: %v %v", live, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		return func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("worker: %v", err)
			}
		}
	}
	stop := startWorker(env)
	live, _ := db.LiveKEKHolders(ctx)
	host, _ := os.Hostname()
	if h := live[0]; h.Program != "worker" || h.PID != os.Getpid() || h.Host != host || h.PrimaryKEK != kr.Primary().ID() ||
		strings.Join(h.KEKs, ",") != strings.Join(kr.IDs(), ",") {
		t.Fatalf("row: %+v, want the keyring %v", h, kr.IDs())
	}

	// A key under the current KEK, then a rotation to a KEK the running
	// worker does not hold.
	old, _ := keys.NewKeyring(env["KEY_ENCRYPTION_KEY"])
	if _, _, err := db.UpsertJob(ctx, "rw1", "uploads/x", "t-rw1"); err != nil {
		t.Fatal(err)
	}
	a, _ := db.StartAttempt(ctx, "t-rw1")
	ck, _ := keys.NewContentKey()
	id, _ := keys.NewKeyID()
	w, _ := old.Primary().Wrap(id, ck)
	if _, err := db.Publish(ctx, catalog.PublishParams{Attempt: a, Master: a.Prefix + "master.m3u8",
		Keys: []catalog.WrappedKey{{KeyID: id, KEKID: old.Primary().ID(), Wrapped: w}}}); err != nil {
		t.Fatal(err)
	}
	rotated := maps.Clone(env)
	rotated["KEY_ENCRYPTION_KEY"], rotated["KEY_ENCRYPTION_KEYS_RETIRED"] = testenv.SeededKEK(9), env["KEY_ENCRYPTION_KEY"]
	next, _ := keys.NewKeyring(rotated["KEY_ENCRYPTION_KEY"])
	var out bytes.Buffer
	err = run(ctx, []string{"rewrap-keys"}, rotated.get, &out, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "refusing to rewrap under "+next.Primary().ID()) ||
		!strings.Contains(err.Error(), fmt.Sprintf("worker on %s pid %d", host, os.Getpid())) || !strings.Contains(err.Error(), "nothing was rewrapped") {
		t.Fatalf("rewrap with a live worker lacking the KEK: %v\n%s", err, out.String())
	}
	if usage, _ := db.KEKUsage(ctx); usage[old.Primary().ID()] != 1 {
		t.Fatalf("a refused rewrap changed keys: %v", usage)
	}
	// Restart the worker with the new KEK retired: now the rewrap runs.
	stop()
	if live, _ := db.LiveKEKHolders(ctx); len(live) != 0 {
		t.Fatalf("a clean shutdown left its row: %+v", live)
	}
	withNew := maps.Clone(env)
	withNew["KEY_ENCRYPTION_KEYS_RETIRED"] = rotated["KEY_ENCRYPTION_KEY"]
	stop = startWorker(withNew)
	defer stop()
	out.Reset()
	if err := run(ctx, []string{"rewrap-keys"}, rotated.get, &out, io.Discard); err != nil || !strings.Contains(out.String(), "rewrapped 1 keys under "+next.Primary().ID()) {
		t.Fatalf("rewrap with every holder updated: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "still wraps new keys under "+old.Primary().ID()) {
		t.Errorf("no note about the worker whose primary is the old KEK:\n%s", out.String())
	}
}
