//go:build faults

package faults

import (
	"context"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hlsvault/hlsvault/internal/storage"
	"github.com/hlsvault/hlsvault/internal/testenv"
)

// TestCrashAtEachStage SIGKILLs a real worker at each stage of a job.
// Another worker recovers the task once its lease expires (asynq: 30 s
// lease, recovery checked every minute), and the job ends published with
// exactly one current version that verifies.
func TestCrashAtEachStage(t *testing.T) {
	redis := startRedis(t)
	stages := []struct {
		name string
		// reach brings the first worker to the stage; release undoes what
		// it did to get there, after the kill.
		reach func(t *testing.T, e env, az *service, video string) (release func())
	}{
		{"downloading", func(t *testing.T, e env, az *service, video string) func() {
			// Azurite paused: the worker is stuck reading the source.
			az.signal(syscall.SIGSTOP)
			waitFor(t, "processing", time.Minute, func() bool { return dbState(t, e, video) == "processing" })
			time.Sleep(500 * time.Millisecond)
			return func() { az.signal(syscall.SIGCONT) }
		}},
		{"ffmpeg", func(t *testing.T, e env, az *service, video string) func() {
			waitFor(t, "ffmpeg", time.Minute, func() bool { return ffmpegs(e["TMPDIR"]) > 0 })
			return func() {}
		}},
		{"uploading", func(t *testing.T, e env, az *service, video string) func() {
			// Azurite paused while ffmpeg runs: segments pile up unuploaded.
			waitFor(t, "ffmpeg", time.Minute, func() bool { return ffmpegs(e["TMPDIR"]) > 0 })
			az.signal(syscall.SIGSTOP)
			time.Sleep(time.Second)
			return func() { az.signal(syscall.SIGCONT) }
		}},
		{"before commit", func(t *testing.T, e env, az *service, video string) func() {
			// Holding the video's row makes Publish wait after every object
			// is stored; the master playlist is the last object written.
			ctx := context.Background()
			conn, err := pgx.Connect(ctx, e["DATABASE_URL"])
			if err != nil {
				t.Fatal(err)
			}
			waitFor(t, "processing", time.Minute, func() bool { return dbState(t, e, video) == "processing" })
			tx, err := conn.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Exec(ctx, `select 1 from videos where id = $1 for update`, video); err != nil {
				t.Fatal(err)
			}
			store, err := storage.NewAzure(ctx, storage.AzureConfig{ConnectionString: e["AZURE_STORAGE_CONNECTION_STRING"], Container: "faults"})
			if err != nil {
				t.Fatal(err)
			}
			waitFor(t, "master playlist", 2*time.Minute, func() bool {
				_, err := store.Stat(ctx, "hls/"+video+"/v1/master.m3u8")
				return err == nil
			})
			time.Sleep(300 * time.Millisecond)
			return func() { tx.Rollback(ctx); conn.Close(ctx) }
		}},
	}
	for _, st := range stages {
		t.Run(st.name, func(t *testing.T) {
			t.Parallel()
			az, cs := startAzurite(t)
			e := newEnv(t, redis.port, cs)
			src := testenv.MakeSource(t, t.TempDir(), testenv.Source{Width: 640, Height: 360, Seconds: 12, Audio: true})
			video := "crash"
			// The source is in storage before the job is enqueued, as the
			// upload service leaves it.
			store, err := storage.NewAzure(context.Background(), storage.AzureConfig{ConnectionString: cs, Container: "faults"})
			if err != nil {
				t.Fatal(err)
			}
			putFile(t, store, "uploads/crash.mp4", src)

			w1 := startWorker(t, e)
			waitFor(t, "the worker to start", 30*time.Second, func() bool {
				if w1.cmd.ProcessState != nil {
					t.Fatalf("worker exited:\n%s", w1.logs())
				}
				return strings.Contains(w1.logs(), "worker started")
			})
			if out, err := enqueue(t, e, "transcode", "--video", video, "--source", "uploads/crash.mp4"); err != nil {
				t.Fatalf("enqueue: %v\n%s", err, out)
			}
			release := st.reach(t, e, az, video)
			w1.kill()
			release()
			if n := ffmpegs(e["TMPDIR"]); n != 0 {
				// Pdeathsig takes ffmpeg down with its worker.
				time.Sleep(time.Second)
				if n = ffmpegs(e["TMPDIR"]); n != 0 {
					t.Errorf("%d ffmpeg processes outlived the killed worker", n)
				}
			}
			w2 := startWorker(t, e)
			finish(t, e, video, w2)
			if left, _ := filepath.Glob(filepath.Join(e["TMPDIR"], "hlsvault-job-*")); len(left) > 1 {
				t.Errorf("temp dirs: %v", left)
			}
		})
	}
}

func dbState(t *testing.T, e env, video string) string {
	return string(status(t, e, video).State)
}
