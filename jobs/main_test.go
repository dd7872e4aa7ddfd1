package jobs_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5"

	"github.com/hlsvault/hlsvault/internal/catalog"
	"github.com/hlsvault/hlsvault/internal/keys"
	"github.com/hlsvault/hlsvault/internal/pipeline"
	"github.com/hlsvault/hlsvault/internal/storage"
	"github.com/hlsvault/hlsvault/internal/testenv"
	"github.com/hlsvault/hlsvault/internal/transcode"
	"github.com/hlsvault/hlsvault/internal/worker"
	"github.com/hlsvault/hlsvault/jobs"
)

// services is what the examples and the external program run against:
// a migrated database, a filesystem store holding uploads/example.mp4, and
// a real worker (the production pipeline and wiring) on its own queues.
// TestMain sets DATABASE_URL, REDIS_URL and QUEUE_PREFIX to them, as an
// upload service's deployment would, since an Example has no *testing.T.
type services struct {
	dbURL, redisURL, prefix string
	store                   *storage.FS
	logs                    *testenv.SyncBuffer
}

// shared is set by TestMain for the examples and the external-module test.
var shared *services

func TestMain(m *testing.M) {
	svc, stop, err := startServices()
	if err != nil {
		fmt.Fprintln(os.Stderr, "jobs tests:", err)
		os.Exit(1)
	}
	shared = svc
	code := m.Run()
	if code != 0 {
		fmt.Fprintf(os.Stderr, "worker log of the shared services:\n%s\n", svc.logs.String())
	}
	stop()
	os.Exit(code)
}

func getenv(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func startServices() (*services, func(), error) {
	ctx := context.Background()
	var cleanups []func()
	stop := func() {
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
	}
	fail := func(err error) (*services, func(), error) { stop(); return nil, nil, err }

	admin := getenv("TEST_DATABASE_URL", testenv.DefaultDatabaseURL)
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return fail(fmt.Errorf("PostgreSQL: %w", err))
	}
	name := testenv.Name("hlsv_test_jobs_")
	_, err = conn.Exec(ctx, "create database "+name)
	conn.Close(ctx)
	if err != nil {
		return fail(fmt.Errorf("create database: %w", err))
	}
	cleanups = append(cleanups, func() {
		if conn, err := pgx.Connect(ctx, admin); err == nil {
			conn.Exec(ctx, "drop database if exists "+name+" with (force)")
			conn.Close(ctx)
		}
	})
	u, _ := url.Parse(admin)
	u.Path = "/" + name
	svc := &services{dbURL: u.String(), redisURL: "redis://" + getenv("TEST_REDIS_ADDR", testenv.DefaultRedisAddr) + "/0",
		prefix: testenv.Name("jobsx"), logs: &testenv.SyncBuffer{}}
	log := slog.New(slog.NewTextHandler(svc.logs, &slog.HandlerOptions{Level: slog.LevelInfo}))

	db, err := catalog.Open(ctx, svc.dbURL, log)
	if err != nil {
		return fail(err)
	}
	cleanups = append(cleanups, db.Close)
	if err := db.Migrate(ctx); err != nil {
		return fail(err)
	}
	dir, err := os.MkdirTemp("", "hlsvault-jobs-test-")
	if err != nil {
		return fail(err)
	}
	cleanups = append(cleanups, func() { os.RemoveAll(dir) })
	if svc.store, err = storage.NewFS(filepath.Join(dir, "store")); err != nil {
		return fail(err)
	}
	ffmpeg, err := exec.LookPath(getenv("FFMPEG", "ffmpeg"))
	if err != nil {
		return fail(err)
	}
	ffprobe, err := exec.LookPath(getenv("FFPROBE", "ffprobe"))
	if err != nil {
		return fail(err)
	}
	src := filepath.Join(dir, "example.mp4")
	if out, err := exec.Command(ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi",
		"-i", "testsrc2=size=160x120:rate=25:duration=1", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
		src).CombinedOutput(); err != nil {
		return fail(fmt.Errorf("make source: %v\n%s", err, out))
	}
	if err := putFile(ctx, svc.store, "uploads/example.mp4", src); err != nil {
		return fail(err)
	}
	x, err := transcode.NewExec(transcode.ExecConfig{Sandbox: transcode.SandboxBwrap, FFmpeg: ffmpeg, FFprobe: ffprobe})
	if err != nil {
		return fail(err)
	}
	keyring, err := keys.NewKeyring(testenv.SeededKEK(7))
	if err != nil {
		return fail(err)
	}
	ladder, err := transcode.ParseLadder("144p:150k:64k")
	if err != nil {
		return fail(err)
	}
	tmp := filepath.Join(dir, "tmp")
	if err := os.Mkdir(tmp, 0o700); err != nil {
		return fail(err)
	}
	pipe, err := pipeline.New(pipeline.Config{Exec: x, Ladder: ladder, Segment: time.Second, Preset: "ultrafast", TempDir: tmp,
		KeyURITemplate: "https://video.example.com/v1/keys/{key_id}", PollInterval: 50 * time.Millisecond}, svc.store, db, keyring, log, nil)
	if err != nil {
		return fail(err)
	}
	srv, err := worker.New(worker.Config{Queues: jobs.QueueNames(svc.prefix), ShutdownTimeout: 5 * time.Second,
		RetryDelay: func(int) time.Duration { return 500 * time.Millisecond }, LogLevel: asynq.ErrorLevel},
		asynq.RedisClientOpt{Addr: getenv("TEST_REDIS_ADDR", testenv.DefaultRedisAddr)}, log, worker.Handlers{jobs.TypeTranscode: pipe})
	if err != nil {
		return fail(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	if err := srv.Start(wctx); err != nil {
		cancel()
		return fail(err)
	}
	cleanups = append(cleanups, func() { cancel(); srv.Shutdown() })
	for k, v := range map[string]string{"DATABASE_URL": svc.dbURL, "REDIS_URL": svc.redisURL, "QUEUE_PREFIX": svc.prefix} {
		os.Setenv(k, v)
	}
	return svc, stop, nil
}

func putFile(ctx context.Context, store storage.Store, name, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return store.Put(ctx, name, f, -1, storage.PutOptions{})
}
