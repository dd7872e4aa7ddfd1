package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/hlsvault/hlsvault/internal/catalog"
	"github.com/hlsvault/hlsvault/internal/config"
	"github.com/hlsvault/hlsvault/internal/storage"
	"github.com/hlsvault/hlsvault/jobs"
)

// runLoad queues many small jobs for several worker processes and checks
// that every one is published exactly once and none is stuck; it prints
// jobs per minute and the queue wait.
//
//	hlsbench load [-jobs 200] [-workers 2] [-timeout 15m]
func runLoad(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("hlsbench load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	n := fs.Int("jobs", 200, "jobs to queue")
	workers := fs.Int("workers", 2, "worker processes")
	timeout := fs.Duration("timeout", 15*time.Minute, "give up (and fail) after this long")
	dir := fs.String("dir", ".cache/bench", "work directory")
	worker := fs.String("worker", "bin/worker", "worker binary")
	dbURL := fs.String("database-url", config.Getenv(getenv, "DATABASE_URL", config.DefaultDatabaseURL), "PostgreSQL")
	redisURL := fs.String("redis-url", config.Getenv(getenv, "REDIS_URL", config.DefaultRedisURL), "Redis")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var id [4]byte
	rand.Read(id[:])
	run := fmt.Sprintf("load%x", id)
	work, err := filepath.Abs(filepath.Join(*dir, run))
	if err != nil {
		return err
	}
	if err := os.MkdirAll(work, 0o755); err != nil {
		return err
	}
	defer os.RemoveAll(work)

	src := filepath.Join(work, "src.mp4")
	gen := exec.CommandContext(ctx, "ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
		"-f", "lavfi", "-i", "testsrc2=size=160x120:rate=15:duration=2", "-f", "lavfi", "-i", "sine=duration=2",
		"-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-b:a", "32k", src)
	if out, err := gen.CombinedOutput(); err != nil {
		return fmt.Errorf("generate source: %v: %s", err, out)
	}
	storeURL := "file://" + filepath.Join(work, "storage")
	store, err := storage.Open(ctx, storeURL, getenv)
	if err != nil {
		return err
	}
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	err = store.Put(ctx, "uploads/load.mp4", f, -1, storage.PutOptions{})
	f.Close()
	if err != nil {
		return err
	}
	db, err := catalog.Open(ctx, *dbURL, nil)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := db.Migrate(ctx); err != nil {
		return err
	}
	redisOpt, err := config.RedisOpt(*redisURL)
	if err != nil {
		return err
	}
	client, err := jobs.New(db.Pool(), redisOpt, jobs.ClientConfig{Queues: jobs.QueueNames(run)})
	if err != nil {
		return err
	}
	defer client.Close()

	kek := make([]byte, 32)
	rand.Read(kek)
	env := append(os.Environ(), "KEY_ENCRYPTION_KEY="+base64.StdEncoding.EncodeToString(kek),
		"DATABASE_URL="+*dbURL, "REDIS_URL="+*redisURL, // the flags', not only the environment's
		"STORAGE_URL="+storeURL, "QUEUE_PREFIX="+run, "LADDER=144p:150k:32k", "SEGMENT_SECONDS=1",
		"X264_PRESET=ultrafast", "METRICS_ADDR=off", "LOG_LEVEL=warn", "TMPDIR="+work, "GC_INTERVAL=off")
	var procs []*exec.Cmd
	for i := range *workers {
		cmd := exec.CommandContext(ctx, *worker)
		cmd.Env = env
		logf, err := os.Create(filepath.Join(work, fmt.Sprintf("worker%d.log", i)))
		if err != nil {
			return err
		}
		defer logf.Close()
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			return err
		}
		procs = append(procs, cmd)
	}
	defer func() {
		for _, p := range procs {
			p.Process.Signal(syscall.SIGTERM)
			p.Wait()
		}
	}()

	fmt.Fprintf(stdout, "load: %d jobs (160x120, 2 s, one rung) across %d worker processes, %d cores\n", *n, *workers, nproc())
	start := time.Now()
	for i := range *n {
		if _, err := client.EnqueueTranscode(ctx, jobs.TranscodeRequest{VideoID: fmt.Sprintf("%s-%03d", run, i), Source: "uploads/load.mp4"}); err != nil {
			return err
		}
	}
	enqueued := time.Since(start)
	deadline := time.Now().Add(*timeout)
	var timings []catalog.JobTiming
	for {
		if timings, err = db.JobTimings(ctx, run+"-"); err != nil {
			return err
		}
		done := 0
		for _, t := range timings {
			if t.State == catalog.Published || t.State == catalog.Failed {
				done++
			}
		}
		if done == len(timings) || time.Now().After(deadline) {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	var (
		published, failed, stuck, duplicates int
		waits                                []float64
		last                                 time.Time
	)
	for _, t := range timings {
		switch t.State {
		case catalog.Published:
			published++
		case catalog.Failed:
			failed++
		default:
			stuck++
		}
		if t.UpdatedAt.After(last) {
			last = t.UpdatedAt
		}
		waits = append(waits, t.QueueWait().Seconds())
		states, err := db.VersionStates(ctx, t.VideoID)
		if err != nil {
			return err
		}
		if states["published"] > 1 {
			duplicates++
		}
	}
	slices.Sort(waits)
	wall := last.Sub(timings[0].EnqueuedAt)
	fmt.Fprintf(stdout, "  enqueue: %d jobs in %.2f s\n", *n, enqueued.Seconds())
	fmt.Fprintf(stdout, "  published %d, failed %d, stuck %d, duplicated %d\n", published, failed, stuck, duplicates)
	fmt.Fprintf(stdout, "  throughput: %.1f jobs/min (%.1f s from the first enqueue to the last publish)\n",
		float64(published)/wall.Minutes(), wall.Seconds())
	fmt.Fprintf(stdout, "  queue wait: p50 %.1f s, p95 %.1f s, max %.1f s\n",
		percentile(waits, 0.50), percentile(waits, 0.95), waits[len(waits)-1])
	if published != *n || failed+stuck+duplicates > 0 {
		return fmt.Errorf("load: %d of %d published, %d failed, %d stuck, %d duplicated (logs in %s)", published, *n, failed, stuck, duplicates, work)
	}
	return nil
}

func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}
