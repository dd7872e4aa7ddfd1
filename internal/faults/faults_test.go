//go:build faults

// Package faults holds the long fault-injection tests: real worker
// processes killed at each stage of a job, and dependencies that go away
// in the middle of one. They run with `make test-faults` (part of `make
// test`), after the rest of the suite, because they start their own
// Azurite and Redis instances and take minutes.
package faults

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hlsvault/hlsvault/internal/catalog"
	"github.com/hlsvault/hlsvault/internal/storage"
	"github.com/hlsvault/hlsvault/internal/testenv"
	"github.com/hlsvault/hlsvault/jobs"
)

var (
	binDir string
	root   string
)

func TestMain(m *testing.M) {
	_, file, _, _ := runtime.Caller(0)
	root = filepath.Join(filepath.Dir(file), "..", "..")
	dir, err := os.MkdirTemp("", "hlsvault-faults-")
	if err != nil {
		panic(err)
	}
	binDir = dir
	cmd := exec.Command("go", "build", "-o", dir+"/", "./cmd/worker", "./cmd/enqueue", "./cmd/hlsbench")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func waitPort(t *testing.T, port int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			c.Close()
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("nothing listens on %d", port)
}

// service is a process the test owns and may stop, pause and restart.
type service struct {
	t    *testing.T
	argv []string
	port int
	cmd  *exec.Cmd
	log  bytes.Buffer
}

func (s *service) start() {
	s.t.Helper()
	s.cmd = exec.Command(s.argv[0], s.argv[1:]...)
	s.cmd.Stdout, s.cmd.Stderr = &s.log, &s.log
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	waitPort(s.t, s.port)
}

func (s *service) stop() {
	if s.cmd == nil {
		return
	}
	syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	s.cmd.Wait()
	s.cmd = nil
}

func (s *service) signal(sig syscall.Signal) { syscall.Kill(-s.cmd.Process.Pid, sig) }

// startAzurite runs a private, in-memory Azurite blob service.
func startAzurite(t *testing.T) (*service, string) {
	t.Helper()
	bin := filepath.Join(root, ".cache", "azurite", "node_modules", ".bin", "azurite-blob")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("azurite not installed (run make deps): %v", err)
	}
	port := freePort(t)
	s := &service{t: t, port: port, argv: []string{bin, "--blobHost", "127.0.0.1", "--blobPort", fmt.Sprint(port),
		"--inMemoryPersistence", "--skipApiVersionCheck", "--loose", "--silent"}}
	s.start()
	t.Cleanup(s.stop)
	cs := strings.Replace(testenv.AzuriteConnString, "127.0.0.1:10000", fmt.Sprintf("127.0.0.1:%d", port), 1)
	return s, cs
}

// startRedis runs a private Redis.
func startRedis(t *testing.T) *service {
	t.Helper()
	port := freePort(t)
	s := &service{t: t, port: port, argv: []string{"redis-server", "--bind", "127.0.0.1", "--port", fmt.Sprint(port),
		"--save", "", "--appendonly", "yes", "--appendfsync", "always", "--dir", t.TempDir()}}
	s.start()
	t.Cleanup(s.stop)
	return s
}

type env map[string]string

func (e env) list() []string {
	out := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for k, v := range e {
		out = append(out, k+"="+v)
	}
	return out
}

func newEnv(t *testing.T, redisPort int, azure string) env {
	return env{
		"REDIS_URL":                       fmt.Sprintf("redis://127.0.0.1:%d/0", redisPort),
		"DATABASE_URL":                    testenv.DatabaseURL(t),
		"STORAGE_URL":                     "azblob://faults",
		"AZURE_STORAGE_CONNECTION_STRING": azure,
		"KEY_ENCRYPTION_KEY":              testenv.KEK(t),
		"LADDER":                          "240p:300k:64k,144p:150k:64k",
		"SEGMENT_SECONDS":                 "1",
		"X264_PRESET":                     "veryfast",
		"QUEUE_PREFIX":                    testenv.Name("f"),
		"METRICS_ADDR":                    "127.0.0.1:0",
		"SHUTDOWN_TIMEOUT":                "5s",
		"TMPDIR":                          t.TempDir(),
	}
}

// newFSEnv is newEnv on a filesystem store (returned) instead of
// Azurite, one task at a time per worker.
func newFSEnv(t *testing.T, redisPort int) (env, storage.Store) {
	storeDir := t.TempDir()
	e := newEnv(t, redisPort, "")
	delete(e, "AZURE_STORAGE_CONNECTION_STRING")
	e["STORAGE_URL"] = "file://" + storeDir
	e["WORKER_CONCURRENCY"] = "1"
	store, err := storage.NewFS(storeDir)
	if err != nil {
		t.Fatal(err)
	}
	return e, store
}

type worker struct {
	cmd *exec.Cmd
	log *testenv.SyncBuffer
}

func startWorker(t *testing.T, e env) *worker {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "worker"))
	cmd.Env = e.list()
	w := &worker{cmd: cmd, log: &testenv.SyncBuffer{}}
	cmd.Stdout, cmd.Stderr = w.log, w.log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return w
}

func (w *worker) logs() string { return w.log.String() }

func (w *worker) kill() {
	w.cmd.Process.Signal(syscall.SIGKILL)
	w.cmd.Wait()
}

func enqueue(t *testing.T, e env, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "enqueue"), args...)
	cmd.Env = e.list()
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// videoStatus is what the fault tests read of `enqueue status`.
type videoStatus struct {
	State    catalog.JobState
	Error    string
	Attempts int
}

func status(t *testing.T, e env, video string) videoStatus {
	t.Helper()
	out, err := enqueue(t, e, "status", "--video", video)
	var st jobs.Status
	if err == nil {
		json.Unmarshal([]byte(out), &st)
	}
	v := videoStatus{State: catalog.JobState(st.State)}
	if st.Job != nil {
		v.Error, v.Attempts = st.Job.Error, st.Job.Attempts
	}
	return v
}

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ffmpegs counts live ffmpeg processes working under dir.
func ffmpegs(dir string) int {
	n := 0
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || !bytes.Contains(b, []byte(dir)) || !strings.HasSuffix(strings.SplitN(string(b), "\x00", 2)[0], "ffmpeg") {
			continue
		}
		if stat, err := os.ReadFile(filepath.Join(filepath.Dir(p), "stat")); err == nil && !bytes.Contains(stat, []byte(") Z ")) {
			n++
		}
	}
	return n
}

// finish waits for the job to end and checks the invariants: published,
// one version current, and the whole version decrypts and decodes.
func finish(t *testing.T, e env, video string, w *worker) {
	t.Helper()
	waitFor(t, video+" to finish", 4*time.Minute, func() bool {
		st := status(t, e, video)
		return st.State == catalog.Published || st.State == catalog.Failed
	})
	st := status(t, e, video)
	if st.State != catalog.Published {
		t.Fatalf("job ended %s: %s\nworker:\n%s", st.State, st.Error, w.logs())
	}
	if out, err := enqueue(t, e, "verify", "--video", video); err != nil {
		t.Fatalf("verify: %v\n%s", err, out)
	}
	db, err := catalog.Open(context.Background(), e["DATABASE_URL"], nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	states, err := db.VersionStates(context.Background(), video)
	if err != nil {
		t.Fatal(err)
	}
	if states["published"] != 1 {
		t.Fatalf("versions by state: %v, want exactly one published", states)
	}
	t.Logf("%s: versions by state %v, %d attempts", video, states, st.Attempts)
}

func putFile(t *testing.T, s storage.Store, name, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := s.Put(context.Background(), name, f, -1, storage.PutOptions{}); err != nil {
		t.Fatal(err)
	}
}
