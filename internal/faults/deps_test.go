//go:build faults

package faults

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hlsvault/hlsvault/internal/catalog"
	"github.com/hlsvault/hlsvault/internal/storage"
	"github.com/hlsvault/hlsvault/internal/testenv"
)

// startPostgres runs a private PostgreSQL cluster (initdb as the postgres
// user, trust auth) that the test may restart.
func startPostgres(t *testing.T) (*service, string) {
	t.Helper()
	bin := "/usr/lib/postgresql/15/bin"
	if _, err := os.Stat(bin + "/initdb"); err != nil {
		t.Fatalf("PostgreSQL server binaries not found: %v", err)
	}
	dir, err := os.MkdirTemp("", "hlsvault-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	asPostgres := func(args ...string) *exec.Cmd {
		if os.Geteuid() == 0 {
			return exec.Command("runuser", append([]string{"-u", "postgres", "--"}, args...)...)
		}
		return exec.Command(args[0], args[1:]...)
	}
	if os.Geteuid() == 0 {
		if out, err := exec.Command("chown", "postgres:postgres", dir).CombinedOutput(); err != nil {
			t.Fatalf("chown: %v %s", err, out)
		}
	}
	data := filepath.Join(dir, "data")
	if out, err := asPostgres(bin+"/initdb", "-D", data, "-A", "trust", "-U", "postgres", "--no-sync").CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	port := freePort(t)
	s := &service{t: t, port: port}
	s.argv = []string{bin + "/postgres", "-D", data, "-p", fmt.Sprint(port), "-k", dir, "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"}
	if os.Geteuid() == 0 {
		s.argv = append([]string{"runuser", "-u", "postgres", "--"}, s.argv...)
	}
	s.start()
	t.Cleanup(s.stop)
	return s, fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
}

// restart stops a service (SIGTERM, SIGKILL after 10 s) and starts it again
// after pause, on the same port and data.
func (s *service) restart(pause time.Duration) {
	s.t.Helper()
	s.signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		s.signal(syscall.SIGKILL)
		<-done
	}
	time.Sleep(pause)
	s.start()
}

// startDiskAzurite runs a private Azurite that keeps its blobs on disk, so
// they survive a restart.
func startDiskAzurite(t *testing.T) (*service, string) {
	t.Helper()
	bin := filepath.Join(root, ".cache", "azurite", "node_modules", ".bin", "azurite-blob")
	port := freePort(t)
	s := &service{t: t, port: port, argv: []string{bin, "--blobHost", "127.0.0.1", "--blobPort", fmt.Sprint(port),
		"--location", t.TempDir(), "--skipApiVersionCheck", "--loose", "--silent"}}
	s.start()
	t.Cleanup(s.stop)
	return s, strings.Replace(testenv.AzuriteConnString, "127.0.0.1:10000", fmt.Sprintf("127.0.0.1:%d", port), 1)
}

// TestDependencyRestarts restarts Redis, PostgreSQL and Azurite while a job
// runs: the job survives (or is retried with backoff) and ends published.
func TestDependencyRestarts(t *testing.T) {
	for _, dep := range []string{"redis", "postgres", "azurite"} {
		t.Run(dep, func(t *testing.T) {
			redis := startRedis(t)
			pg, pgURL := startPostgres(t)
			az, cs := startDiskAzurite(t)
			e := newEnv(t, redis.port, cs)
			e["DATABASE_URL"] = pgURL
			src := testenv.MakeSource(t, t.TempDir(), testenv.Source{Width: 640, Height: 360, Seconds: 12, Audio: true})
			store, err := storage.NewAzure(context.Background(), storage.AzureConfig{ConnectionString: cs, Container: "faults"})
			if err != nil {
				t.Fatal(err)
			}
			putFile(t, store, "uploads/dep.mp4", src)
			w := startWorker(t, e)
			waitFor(t, "the worker to start", 30*time.Second, func() bool { return strings.Contains(w.logs(), "worker started") })
			if out, err := enqueue(t, e, "transcode", "--video", "dep", "--source", "uploads/dep.mp4"); err != nil {
				t.Fatalf("enqueue: %v\n%s", err, out)
			}
			waitFor(t, "ffmpeg", time.Minute, func() bool { return ffmpegs(e["TMPDIR"]) > 0 })
			switch dep {
			case "redis":
				redis.restart(2 * time.Second)
			case "postgres":
				pg.restart(2 * time.Second)
			case "azurite":
				az.restart(5 * time.Second)
			}
			finish(t, e, "dep", w)
		})
	}
}

// TestStorageOutage leaves the blob storage down for longer than the
// retries last: the job must end failed with the reason, not hang in
// processing.
func TestStorageOutage(t *testing.T) {
	redis := startRedis(t)
	az, cs := startDiskAzurite(t)
	e := newEnv(t, redis.port, cs)
	src := testenv.MakeSource(t, t.TempDir(), testenv.Source{Width: 320, Height: 240, Seconds: 8})
	store, err := storage.NewAzure(context.Background(), storage.AzureConfig{ConnectionString: cs, Container: "faults"})
	if err != nil {
		t.Fatal(err)
	}
	putFile(t, store, "uploads/out.mp4", src)
	w := startWorker(t, e)
	waitFor(t, "the worker to start", 30*time.Second, func() bool { return strings.Contains(w.logs(), "worker started") })
	az.stop()
	out, err := enqueue(t, e, "transcode", "--video", "out", "--source", "uploads/out.mp4", "--max-retry", "1", "--wait", "--wait-timeout", "3m")
	if err == nil || !strings.Contains(out, "job failed") {
		t.Fatalf("enqueue --wait: %v\n%s\nworker:\n%s", err, out, w.logs())
	}
	st := status(t, e, "out")
	if st.State != catalog.Failed || st.Error == "" || st.Attempts != 2 {
		t.Fatalf("status: %+v", st)
	}
	t.Logf("reason shown to the user: %s", st.Error)
}
