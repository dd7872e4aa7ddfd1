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

// TestDrainThenSIGTERM is the deploy procedure on a real worker process:
// SIGTSTP while a job runs, a second job enqueued meanwhile, SIGTERM. The
// running job is published (not requeued), the second stays queued and is
// never started, and the process exits 0 only after the publication.
func TestDrainThenSIGTERM(t *testing.T) {
	env := envMap(testEnv(t))
	ffmpeg, _ := testenv.FFmpeg(t)
	gateDir := t.TempDir()
	var waiting, gate string
	env["FFMPEG"], waiting, gate = gatedFFmpeg(t, gateDir, ffmpeg)
	env["DECODER_SANDBOX"] = "none" // the gate files are outside the sandbox's view
	env["GC_INTERVAL"] = "1s"
	src := testenv.MakeSource(t, t.TempDir(), testenv.Source{Width: 320, Height: 240, Seconds: 2, Audio: true})

	db, err := catalog.Open(context.Background(), env["DATABASE_URL"], testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	status := func(video string) catalog.Status {
		t.Helper()
		st, err := db.VideoStatus(context.Background(), video)
		if err != nil {
			t.Fatalf("status of %s: %v", video, err)
		}
		return st
	}

	cmd := exec.Command(binary(t, "worker"))
	cmd.Env = env.list()
	logs := &testenv.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() { cmd.Process.Kill(); <-exited })

	if out, err := runEnqueue(t, env, "transcode", "--video", "first", "--source", src); err != nil {
		t.Fatalf("enqueue: %v\n%s", err, out)
	}
	waitUntil(t, "the first job's ffmpeg", exited, logs, func() bool { _, err := os.Stat(waiting); return err == nil })
	if st := status("first"); st.State != catalog.Processing {
		t.Fatalf("first job: %+v, want processing", st)
	}

	cmd.Process.Signal(syscall.SIGTSTP)
	waitUntil(t, "the draining line", exited, logs, func() bool { return hasLog(logs, "draining: 1 tasks running") })
	resp, err := http.Get("http://" + metricsAddr(t, logs.String()) + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || string(body) != "draining: 1 tasks running\n" {
		t.Errorf("healthz while draining: %d %q", resp.StatusCode, body)
	}
	if out, err := runEnqueue(t, env, "transcode", "--video", "second", "--source", src); err != nil {
		t.Fatalf("enqueue while draining: %v\n%s", err, out)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	waitUntil(t, "the SIGTERM line", exited, logs, func() bool {
		return hasLog(logs, "SIGTERM while draining: exiting once 1 tasks finish (SIGTERM again cancels them)")
	})
	select {
	case <-exited:
		t.Fatalf("the worker exited at SIGTERM with a job running:\n%s", logs.String())
	default:
	}
	if st := status("first"); st.State != catalog.Processing {
		t.Fatalf("first job after SIGTERM: %+v, want still processing", st)
	}

	// Let the job proceed: the worker exits once it is published.
	if err := os.WriteFile(gate, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(3 * time.Minute):
		t.Fatalf("the worker did not exit:\n%s", logs.String())
	}
	if waitErr != nil {
		t.Fatalf("worker exit: %v\n%s", waitErr, logs.String())
	}
	if st := status("first"); st.State != catalog.Published || st.Version != 1 || st.Attempts != 1 {
		t.Errorf("first job after exit: %+v, want published by its one attempt", st)
	}
	if st := status("second"); st.State != catalog.Queued || st.Attempts != 0 {
		t.Errorf("second job after exit: %+v, want queued and never started", st)
	}
	insp := asynq.NewInspector(asynq.RedisClientOpt{Addr: testenv.RedisAddr(t)})
	defer insp.Close()
	info, err := insp.GetTaskInfo(jobs.QueueNames(env["QUEUE_PREFIX"]).Transcode, jobs.TaskID("second", status("second").Source))
	if err != nil || info.State != asynq.TaskStatePending || info.Retried != 0 {
		t.Errorf("second task: %+v %v, want pending, never retried", info, err)
	}
	for _, msg := range []string{"drained", "stopped"} {
		if !hasLog(logs, msg) {
			t.Errorf("no %q line:\n%s", msg, logs.String())
		}
	}
	if strings.Contains(logs.String(), "job interrupted; requeued") {
		t.Errorf("a job was requeued:\n%s", logs.String())
	}
}
