package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/hlsvault/hlsvault/internal/catalog"
	"github.com/hlsvault/hlsvault/internal/testenv"
	"github.com/hlsvault/hlsvault/jobs"
)

// closedPort is a local address that nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// logLines parses the worker's JSON log.
func logLines(t *testing.T, logs string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(logs, "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, rec)
	}
	return out
}

// TestRefusesToStartWithDependencyDown: with Redis or PostgreSQL on a
// closed port the worker refuses to start, naming which and its address
// and never the password; its log lines carry WORKER_ID.
func TestRefusesToStartWithDependencyDown(t *testing.T) {
	for _, tc := range []struct{ key, value, want string }{
		{"REDIS_URL", "redis://:hunter2secret@%s/0", "redis at %s (REDIS_URL) is unreachable"},
		{"DATABASE_URL", "postgres://postgres:hunter2secret@%s/postgres?sslmode=disable", "postgresql at %s (DATABASE_URL) is unreachable"},
	} {
		t.Run(tc.key, func(t *testing.T) {
			env := envMap(testEnv(t))
			addr := closedPort(t)
			env[tc.key] = fmt.Sprintf(tc.value, addr)
			env["WORKER_ID"] = "w-" + tc.key
			var logs testenv.SyncBuffer
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			err := run(ctx, nil, env.get, io.Discard, &logs)
			if err == nil {
				t.Fatalf("the worker started with %s down", tc.key)
			}
			if want := fmt.Sprintf(tc.want, addr); !strings.Contains(err.Error(), want) {
				t.Errorf("err = %v, want %q", err, want)
			}
			if strings.Contains(err.Error()+logs.String(), "hunter2secret") {
				t.Errorf("the password is shown: %v\n%s", err, logs.String())
			}
			lines := logLines(t, logs.String())
			if len(lines) == 0 {
				t.Fatal("no log line")
			}
			for _, rec := range lines {
				if rec["worker"] != "w-"+tc.key {
					t.Errorf("log line without worker=%q: %v", "w-"+tc.key, rec)
				}
			}
		})
	}
}

// TestHealthzReportsStorage: /healthz probes the store: a file:// root
// that became a file (which fails for root too) makes it 503 with the
// reason, and it recovers with the directory. Every log line carries the
// default worker id, hostname:pid.
func TestHealthzReportsStorage(t *testing.T) {
	env := envMap(testEnv(t))
	ctx, cancel := context.WithCancel(context.Background())
	var logs testenv.SyncBuffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, nil, env.get, io.Discard, &logs) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("worker: %v", err)
		}
	}()
	addr := waitMetricsAddr(t, &logs, done)
	get := func() (int, string) {
		t.Helper()
		resp, err := http.Get("http://" + addr + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get(); code != 200 || body != "ok\n" {
		t.Fatalf("healthz: %d %q", code, body)
	}
	root := strings.TrimPrefix(env["STORAGE_URL"], "file://")
	if err := os.RemoveAll(root); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(root, []byte("not a directory"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, body := get(); code != 503 || !strings.Contains(body, "storage: storage: probe file://"+root+": the root is not a directory") {
		t.Errorf("healthz with the root a file: %d %q", code, body)
	}
	os.Remove(root)
	if err := os.Mkdir(root, 0o700); err != nil {
		t.Fatal(err)
	}
	if code, body := get(); code != 200 {
		t.Errorf("healthz with the root back: %d %q", code, body)
	}
	host, _ := os.Hostname()
	want := fmt.Sprintf("%s:%d", host, os.Getpid())
	for _, rec := range logLines(t, logs.String()) {
		if rec["worker"] != want {
			t.Errorf("log line without worker=%q: %v", want, rec)
		}
	}
}

// waitMetricsAddr waits for the in-process worker's "metrics listening"
// line.
func waitMetricsAddr(t *testing.T, logs *testenv.SyncBuffer, done <-chan error) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		for _, rec := range logLines(t, logs.String()) {
			if rec["msg"] == "metrics listening" {
				return rec["addr"].(string)
			}
		}
		select {
		case err := <-done:
			t.Fatalf("worker exited: %v\n%s", err, logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no metrics address:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// gatedFFmpeg writes a stand-in for ffmpeg that, except for the worker's
// start check, creates dir/waiting and then waits for dir/go before it
// runs the real ffmpeg: the test decides when the job may proceed.
func gatedFFmpeg(t *testing.T, dir, real string) (path, waiting, gate string) {
	t.Helper()
	waiting, gate = filepath.Join(dir, "waiting"), filepath.Join(dir, "go")
	script := fmt.Sprintf("#!/bin/sh\nif [ \"$2\" = -version ]; then exec '%[1]s' \"$@\"; fi\n"+
		": > '%[2]s'\nwhile [ ! -e '%[3]s' ]; do sleep 0.05; done\nexec '%[1]s' \"$@\"\n", real, waiting, gate)
	path = filepath.Join(dir, "ffmpeg")
	if err := os.WriteFile(path, []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}
	return path, waiting, gate
}

// waitUntil polls cond (a file, a log line, a row) until it holds.
func waitUntil(t *testing.T, what string, exited <-chan struct{}, logs *testenv.SyncBuffer, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for !cond() {
		select {
		case <-exited:
			t.Fatalf("the worker exited while waiting for %s:\n%s", what, logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s:\n%s", what, logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func hasLog(logs *testenv.SyncBuffer, msg string) bool {
	for _, line := range strings.Split(logs.String(), "\n") {
		var rec struct {
			Msg string `json:"msg"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == msg {
			return true
		}
	}
	return false
}

// gatedWorker is a real worker process whose ffmpeg waits for the test's
// gate, with one job ("first") in its ffmpeg and SIGTSTP received.
type gatedWorker struct {
	env     envMap
	src     string
	gate    string
	cmd     *exec.Cmd
	logs    *testenv.SyncBuffer
	exited  chan struct{}
	waitErr error // once exited is closed
	db      *catalog.DB
}

func (w *gatedWorker) status(t *testing.T, video string) catalog.Status {
	t.Helper()
	st, err := w.db.VideoStatus(context.Background(), video)
	if err != nil {
		t.Fatalf("status of %s: %v", video, err)
	}
	return st
}

// startDraining starts the worker, waits until the first job is in its
// (gated) ffmpeg, sends SIGTSTP and waits for the draining line.
func startDraining(t *testing.T) *gatedWorker {
	t.Helper()
	w := &gatedWorker{env: envMap(testEnv(t)), logs: &testenv.SyncBuffer{}, exited: make(chan struct{})}
	ffmpeg, _ := testenv.FFmpeg(t)
	var waiting string
	w.env["FFMPEG"], waiting, w.gate = gatedFFmpeg(t, t.TempDir(), ffmpeg)
	w.env["DECODER_SANDBOX"] = "none" // the gate files are outside the sandbox's view
	w.env["GC_INTERVAL"] = "1s"
	w.src = testenv.MakeSource(t, t.TempDir(), testenv.Source{Width: 320, Height: 240, Seconds: 2, Audio: true})
	db, err := catalog.Open(context.Background(), w.env["DATABASE_URL"], testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	w.db = db

	w.cmd = exec.Command(binary(t, "worker"))
	w.cmd.Env = w.env.list()
	w.cmd.Stdout, w.cmd.Stderr = w.logs, w.logs
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { w.waitErr = w.cmd.Wait(); close(w.exited) }()
	t.Cleanup(func() { w.cmd.Process.Kill(); <-w.exited })

	if out, err := runEnqueue(t, w.env, "transcode", "--video", "first", "--source", w.src); err != nil {
		t.Fatalf("enqueue: %v\n%s", err, out)
	}
	waitUntil(t, "the first job's ffmpeg", w.exited, w.logs, func() bool { _, err := os.Stat(waiting); return err == nil })
	if st := w.status(t, "first"); st.State != catalog.Processing {
		t.Fatalf("first job: %+v, want processing", st)
	}
	w.cmd.Process.Signal(syscall.SIGTSTP)
	waitUntil(t, "the draining line", w.exited, w.logs, func() bool { return hasLog(w.logs, "draining: 1 tasks running") })
	return w
}

// sigterm sends SIGTERM and waits for the line that says the worker waits
// for its running job; the process must still run and the job too.
func (w *gatedWorker) sigterm(t *testing.T) {
	t.Helper()
	w.cmd.Process.Signal(syscall.SIGTERM)
	waitUntil(t, "the SIGTERM line", w.exited, w.logs, func() bool {
		return hasLog(w.logs, "SIGTERM while draining: exiting once 1 tasks finish (SIGTERM again cancels them)")
	})
	select {
	case <-w.exited:
		t.Fatalf("the worker exited at SIGTERM with a job running:\n%s", w.logs.String())
	default:
	}
	if st := w.status(t, "first"); st.State != catalog.Processing {
		t.Fatalf("first job after SIGTERM: %+v, want still processing", st)
	}
}

func (w *gatedWorker) wait(t *testing.T) {
	t.Helper()
	select {
	case <-w.exited:
	case <-time.After(3 * time.Minute):
		t.Fatalf("the worker did not exit:\n%s", w.logs.String())
	}
	if w.waitErr != nil {
		t.Fatalf("worker exit: %v\n%s", w.waitErr, w.logs.String())
	}
}

// TestDrainThenSIGTERM is the deploy procedure on a real worker process:
// SIGTSTP while a job runs, a second job enqueued meanwhile, SIGTERM. The
// running job is published (not requeued), the second stays queued and is
// never started, and the process exits 0 only after the publication.
func TestDrainThenSIGTERM(t *testing.T) {
	w := startDraining(t)
	resp, err := http.Get("http://" + metricsAddr(t, w.logs.String()) + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || string(body) != "draining: 1 tasks running\n" {
		t.Errorf("healthz while draining: %d %q", resp.StatusCode, body)
	}
	if out, err := runEnqueue(t, w.env, "transcode", "--video", "second", "--source", w.src); err != nil {
		t.Fatalf("enqueue while draining: %v\n%s", err, out)
	}
	w.sigterm(t)

	// Let the job proceed: the worker exits once it is published.
	if err := os.WriteFile(w.gate, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	w.wait(t)
	if st := w.status(t, "first"); st.State != catalog.Published || st.Version != 1 || st.Attempts != 1 {
		t.Errorf("first job after exit: %+v, want published by its one attempt", st)
	}
	second := w.status(t, "second")
	if second.State != catalog.Queued || second.Attempts != 0 {
		t.Errorf("second job after exit: %+v, want queued and never started", second)
	}
	insp := asynq.NewInspector(asynq.RedisClientOpt{Addr: testenv.RedisAddr(t)})
	defer insp.Close()
	info, err := insp.GetTaskInfo(jobs.QueueNames(w.env["QUEUE_PREFIX"]).Transcode, jobs.TaskID("second", second.Source))
	if err != nil || info.State != asynq.TaskStatePending || info.Retried != 0 {
		t.Errorf("second task: %+v %v, want pending, never retried", info, err)
	}
	for _, msg := range []string{"drained", "stopped"} {
		if !hasLog(w.logs, msg) {
			t.Errorf("no %q line:\n%s", msg, w.logs.String())
		}
	}
	if strings.Contains(w.logs.String(), "job interrupted; requeued") {
		t.Errorf("a job was requeued:\n%s", w.logs.String())
	}
}

// TestDrainSecondSIGTERMCancels: while a drained worker waits for its
// job after a SIGTERM, a second SIGTERM cancels the job at once, as a
// plain SIGTERM does: requeued without a spent retry, the process exits 0.
func TestDrainSecondSIGTERMCancels(t *testing.T) {
	w := startDraining(t)
	w.sigterm(t)
	w.cmd.Process.Signal(syscall.SIGTERM) // the gate stays closed
	w.wait(t)
	if st := w.status(t, "first"); st.State != catalog.Queued {
		t.Errorf("first job after the second SIGTERM: %+v, want queued again", st)
	}
	insp := asynq.NewInspector(asynq.RedisClientOpt{Addr: testenv.RedisAddr(t)})
	defer insp.Close()
	info, err := insp.GetTaskInfo(jobs.QueueNames(w.env["QUEUE_PREFIX"]).Transcode, jobs.TaskID("first", w.status(t, "first").Source))
	if err != nil || info.Retried != 0 || (info.State != asynq.TaskStatePending && info.State != asynq.TaskStateRetry) {
		t.Errorf("first task: %+v %v, want back in the queue, no retry spent", info, err)
	}
	if !hasLog(w.logs, "drain interrupted") || !strings.Contains(w.logs.String(), "job interrupted; requeued") {
		t.Errorf("no interrupted drain and requeue in the log:\n%s", w.logs.String())
	}
}
