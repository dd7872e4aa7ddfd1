package main

// benchcmd catalogue: the figures of a large legacy catalogue (issue 13).
//
//	a generated catalogue of tiny titles on the filesystem (20,000 by default)
//	discovery time (`enqueue backfill start --dry-run`), start time, the
//	  time of a start killed half-way and started again (it resumes)
//	peak RSS of `enqueue backfill start` for 5,000 and 20,000 titles (must
//	  be the same: discovery streams, items go in by chunks)
//	`enqueue backfill status` on the 20,000-title run, before and after it ran
//	titles per second converted by N worker processes, one core each
//	  (GOMAXPROCS=1, taskset), and the check that each title has one version
//	the extrapolation to 100,000 titles and 100 TB on 20 workers, and the
//	  figure that bounds it
//
// Every program is the real binary (bin/enqueue, bin/worker) on a fresh
// database, a fresh queue prefix and the catalogue kept under -dir.

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hlsvault/hlsvault/internal/catalog"
	"github.com/hlsvault/hlsvault/internal/config"
	"github.com/hlsvault/hlsvault/internal/storage"
	"github.com/hlsvault/hlsvault/internal/synthetic"
)

type catCfg struct {
	dir, enqueue, worker  string
	titles, small, runs   int
	workers               int
	convert               bool
	reencryptMBps         float64
	databaseURL, redisURL string
	timeout               time.Duration
}

func catalogueMain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c catCfg
	fs := flag.NewFlagSet("benchcmd catalogue", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.dir, "dir", ".cache/bench-catalogue", "work directory (the generated catalogue is kept between runs)")
	fs.StringVar(&c.enqueue, "enqueue", "bin/enqueue", "the enqueue program")
	fs.StringVar(&c.worker, "worker", "bin/worker", "the worker program")
	fs.IntVar(&c.titles, "titles", 20000, "tiny titles in the catalogue")
	fs.IntVar(&c.small, "small", 5000, "tiny titles in the small catalogue (the RSS comparison)")
	fs.IntVar(&c.runs, "runs", 3, "discoveries and starts per figure (median)")
	fs.IntVar(&c.workers, "workers", 2, "worker processes converting the catalogue, one core each")
	fs.BoolVar(&c.convert, "convert", true, "convert the catalogue (false: discovery, start and status figures only, e.g. with -titles 100000)")
	fs.Float64Var(&c.reencryptMBps, "reencrypt-mbps", 0, "re-encryption MB/s of one worker core (scripts/backfill-bench.sh passes its measured figure), for the 100 TB extrapolation")
	fs.DurationVar(&c.timeout, "timeout", 30*time.Minute, "longest conversion of the catalogue")
	fs.StringVar(&c.databaseURL, "database-url", config.Getenv(os.Getenv, "DATABASE_URL", config.DefaultDatabaseURL), "PostgreSQL server (a fresh database is created on it)")
	fs.StringVar(&c.redisURL, "redis-url", config.Getenv(os.Getenv, "REDIS_URL", config.DefaultRedisURL), "Redis")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if c.titles <= 0 || c.small <= 0 || c.runs <= 0 || c.workers <= 0 {
		return errors.New("catalogue: -titles, -small, -runs and -workers must be positive")
	}
	var err error
	for _, p := range []*string{&c.dir, &c.enqueue, &c.worker} {
		if *p, err = filepath.Abs(*p); err != nil {
			return err
		}
	}
	progress := func(format string, a ...any) { fmt.Fprintf(stderr, "  "+format+"\n", a...) }

	storeDir := filepath.Join(c.dir, "store")
	if err := ensureCatalogue(ctx, c, storeDir, progress); err != nil {
		return err
	}
	dbURL, drop, err := freshDatabase(ctx, c.databaseURL)
	if err != nil {
		return err
	}
	defer drop()
	env := []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "TMPDIR=" + os.TempDir(),
		"DATABASE_URL=" + dbURL, "REDIS_URL=" + c.redisURL, "STORAGE_URL=file://" + storeDir,
		"QUEUE_PREFIX=" + randID("catbench"), "KEY_ENCRYPTION_KEY=" + benchKEK(), "METRICS_ADDR=127.0.0.1:0",
	}
	en := func(args ...string) (childRun, error) { return runChild(ctx, c.enqueue, env, args...) }
	if _, err := en("backfill", "list"); err != nil { // migrates the fresh database
		return err
	}
	startArgs := func(prefix string) []string {
		return []string{"backfill", "start", "--prefix", prefix, "--batch-size", "50", "--max-inflight", strconv.Itoa(2 * c.workers)}
	}
	db, err := catalog.Open(ctx, dbURL, nil)
	if err != nil {
		return err
	}
	defer db.Close()

	var disc, discRSS, start, startRSS, smallRSS, smallDiscRSS []float64
	for i := range c.runs {
		progress("discovery and start, run %d of %d", i+1, c.runs)
		r, err := en("backfill", "start", "--prefix", "legacy/", "--dry-run")
		if err != nil {
			return err
		}
		if want := fmt.Sprintf("would work on %d titles", c.titles); !strings.Contains(r.tail, want) {
			return fmt.Errorf("dry run: %q, want %q", r.tail, want)
		}
		disc, discRSS = append(disc, r.secs), append(discRSS, r.rssMB)
		if r, err = en("backfill", "start", "--prefix", "small/", "--dry-run"); err != nil {
			return err
		}
		smallDiscRSS = append(smallDiscRSS, r.rssMB)
		// A start, then cancelled: the next start records a new run of the
		// same titles. The last 20,000-title run stays for the workers.
		for _, s := range []struct {
			prefix string
			n      int
			secs   *[]float64
			rss    *[]float64
		}{{"small/", c.small, nil, &smallRSS}, {"legacy/", c.titles, &start, &startRSS}} {
			r, err := en(startArgs(s.prefix)...)
			if err != nil {
				return err
			}
			if want := fmt.Sprintf("%d titles to work on", s.n); !strings.Contains(r.out, want) {
				return fmt.Errorf("start: %q, want %q", r.out, want)
			}
			if s.secs != nil {
				*s.secs = append(*s.secs, r.secs)
			}
			*s.rss = append(*s.rss, r.rssMB)
			if s.prefix == "legacy/" && i == c.runs-1 {
				break
			}
			run, err := db.LatestBackfillRun(ctx)
			if err != nil {
				return err
			}
			if _, err := en("backfill", "cancel", strconv.FormatInt(run.ID, 10)); err != nil {
				return err
			}
		}
	}
	run, err := db.LatestBackfillRun(ctx)
	if err != nil {
		return err
	}
	// A start killed half-way, then started again: it resumes. On a run
	// of its own (the one above is cancelled first, then a fresh start).
	progress("a start killed half-way, then started again")
	if _, err := en("backfill", "cancel", strconv.FormatInt(run.ID, 10)); err != nil {
		return err
	}
	killed, err := startChild(ctx, c.enqueue, env, startArgs("legacy/")...)
	if err != nil {
		return err
	}
	// SIGKILL once about half the titles are recorded.
	var before catalog.BackfillProgress
	for deadline := time.Now().Add(2 * time.Minute); ; {
		if run, err = db.LatestBackfillRun(ctx); err != nil && !errors.Is(err, catalog.ErrNotFound) {
			return err
		}
		if err == nil && run.State == catalog.RunStarting {
			if before, err = db.BackfillProgressOf(ctx, run.ID); err != nil {
				return err
			}
			if before.Total >= c.titles/2 {
				break
			}
		}
		if time.Now().After(deadline) {
			return errors.New("the start to kill never recorded half the titles")
		}
		time.Sleep(20 * time.Millisecond)
	}
	killed.Process.Kill()
	killed.Wait()
	if before, err = db.BackfillProgressOf(ctx, run.ID); err != nil {
		return err
	}
	resumed, err := en(startArgs("legacy/")...)
	if err != nil {
		return err
	}
	after, err := db.BackfillProgressOf(ctx, run.ID)
	if err != nil {
		return err
	}
	if run.State != catalog.RunStarting || !strings.Contains(resumed.out, "resumed") || after.Total != c.titles {
		return fmt.Errorf("resumed start: run %d was %s with %d items, then %d; output %q", run.ID, run.State, before.Total, after.Total, resumed.out)
	}
	runID := strconv.FormatInt(run.ID, 10)

	status := func() (float64, error) {
		var xs []float64
		for range c.runs {
			r, err := en("backfill", "status", runID, "--json")
			if err != nil {
				return 0, err
			}
			xs = append(xs, r.secs)
		}
		return median(xs), nil
	}
	statusBefore, err := status()
	if err != nil {
		return err
	}

	row := func(name string, v float64, format, target string) {
		fmt.Fprintf(stdout, "%-72s %10s  %s\n", name, fmt.Sprintf(format, v), target)
	}
	startRows := func() {
		fmt.Fprintf(stdout, "\n%-72s %10s  %s\n", fmt.Sprintf("catalogue figures, %d tiny titles on the filesystem (medians of %d)", c.titles, c.runs), "value", "target")
		row("discovery, enqueue backfill start --dry-run (s)", median(disc), "%.2f", "")
		row("start, enqueue backfill start (s)", median(start), "%.2f", "")
		row("  start killed half-way, then started again: the second start (s)", resumed.secs, "%.2f", "resumes")
		row(fmt.Sprintf("  items recorded before the kill (of %d)", c.titles), float64(before.Total), "%.0f", "")
		row(fmt.Sprintf("peak RSS, enqueue backfill start, %d titles (MB)", c.small), median(smallRSS), "%.1f", "")
		row(fmt.Sprintf("peak RSS, enqueue backfill start, %d titles (MB)", c.titles), median(startRSS), "%.1f", "same as the small one")
		row(fmt.Sprintf("peak RSS, --dry-run, %d / %d titles (MB)", c.small, c.titles), median(smallDiscRSS), "%.1f", fmt.Sprintf("/ %.1f", median(discRSS)))
	}
	if !c.convert {
		startRows()
		row("enqueue backfill status, before the run (s, whole process)", statusBefore, "%.3f", "")
		return nil
	}

	progress("converting %d titles with %d workers, one core each", c.titles, c.workers)
	var workers []*exec.Cmd
	var logs []*bytes.Buffer
	defer func() {
		for _, w := range workers {
			w.Process.Signal(syscall.SIGTERM)
			w.Wait()
		}
	}()
	for i := range c.workers {
		argv := []string{c.worker}
		if _, err := exec.LookPath("taskset"); err == nil {
			argv = append([]string{"taskset", "-c", strconv.Itoa(i % runtime.NumCPU())}, argv...)
		}
		cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
		cmd.Env = append(env, "GOMAXPROCS=1")
		var log bytes.Buffer
		cmd.Stdout, cmd.Stderr = &log, &log
		if err := cmd.Start(); err != nil {
			return err
		}
		workers, logs = append(workers, cmd), append(logs, &log)
	}
	t0 := time.Now()
	var p catalog.BackfillProgress
	for {
		r, err := db.BackfillRunByID(ctx, run.ID)
		if err != nil {
			return err
		}
		if r.State == catalog.RunDone {
			break
		}
		if time.Since(t0) > c.timeout {
			return fmt.Errorf("run %d is %s after %v", run.ID, r.State, c.timeout)
		}
		for i, w := range workers {
			if w.ProcessState != nil {
				return fmt.Errorf("worker %d exited: %s", i, tail(logs[i].String()))
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	wall := time.Since(t0).Seconds()
	if p, err = db.BackfillProgressOf(ctx, run.ID); err != nil {
		return err
	}
	if p.Counts[catalog.ItemDone] != c.titles {
		return fmt.Errorf("run %d: %v, want %d done", run.ID, p.Counts, c.titles)
	}
	var dups, versions int
	if err := db.Pool().QueryRow(ctx, `select count(*) filter (where n > 1), coalesce(sum(n), 0) from
		(select count(*) n from versions group by video_id) v`).Scan(&dups, &versions); err != nil {
		return err
	}
	if dups != 0 || versions != c.titles {
		return fmt.Errorf("%d titles with more than one version, %d versions for %d titles", dups, versions, c.titles)
	}
	convSecs := p.LastFinished.Sub(*p.FirstStarted).Seconds()
	tps := float64(c.titles) / convSecs
	statusAfter, err := status()
	if err != nil {
		return err
	}

	startRows()
	row("enqueue backfill status, before / after the run (s, whole process)", statusBefore, "%.3f", fmt.Sprintf("/ %.3f", statusAfter))
	row(fmt.Sprintf("titles per second, %d workers, one core each", c.workers), tps, "%.1f", "")
	row("  per worker", tps/float64(c.workers), "%.1f", "")
	row("  conversion time, first title started to last finished (s)", convSecs, "%.1f", fmt.Sprintf("(%.1f s from the workers' launch)", wall))
	row("  titles with more than one version", float64(dups), "%.0f", "0")

	// The extrapolation: 100,000 titles, 100 TB, 20 workers.
	const bigTitles, bigBytes, bigWorkers = 100_000, 100e12, 20
	scale := float64(bigTitles) / float64(c.titles)
	perWorker := tps / float64(c.workers)
	titleSecs := bigTitles / (perWorker * bigWorkers)
	fmt.Fprintf(stdout, "\nextrapolation to %d titles and 100 TB on %d workers (one core each)\n", bigTitles, bigWorkers)
	row("  discovery, linear in titles (s)", median(disc)*scale, "%.0f", "")
	row("  start, linear in titles (s)", median(start)*scale, "%.0f", "< 60")
	row("  per-title overhead: titles / (per-worker titles/s × 20) (h)", titleSecs/3600, "%.2f", "")
	if c.reencryptMBps > 0 {
		byteSecs := bigBytes / (c.reencryptMBps * 1e6 * bigWorkers)
		row(fmt.Sprintf("  bytes: 100 TB / (%.0f MB/s per core × 20) (h)", c.reencryptMBps), byteSecs/3600, "%.1f", "")
		bound := "re-encryption throughput (bytes per core), not the per-title overhead"
		if titleSecs > byteSecs {
			bound = "the per-title overhead, not the bytes"
		}
		row("  total, the larger of the two (h)", max(titleSecs, byteSecs)/3600, "%.1f", "bounded by "+bound)
		row("  storage traffic at that rate: read twice + write once (GB/s)", 3*c.reencryptMBps*bigWorkers/1000, "%.1f",
			"must fit the storage account's bandwidth")
	} else {
		fmt.Fprintln(stdout, "  bytes: run with -reencrypt-mbps (scripts/backfill-bench.sh passes the figure it measured)")
	}
	return nil
}

// ensureCatalogue generates legacy/ (c.titles) and small/ (c.small) once;
// a marker file says what the store holds.
func ensureCatalogue(ctx context.Context, c catCfg, storeDir string, progress func(string, ...any)) error {
	marker := filepath.Join(c.dir, "catalogue-ready")
	want := fmt.Sprintf("%d %d\n", c.titles, c.small)
	if b, err := os.ReadFile(marker); err == nil && string(b) == want {
		// The legacy titles are kept (generating them takes a while), but
		// not what the last run converted: each run has a fresh database,
		// whose first versions would meet the last run's objects under
		// the same names (ErrExists, retried until the run times out).
		return os.RemoveAll(filepath.Join(storeDir, "hls"))
	}
	if err := os.RemoveAll(storeDir); err != nil {
		return err
	}
	if err := os.MkdirAll(storeDir, 0o700); err != nil {
		return err
	}
	store, err := storage.NewFS(storeDir)
	if err != nil {
		return err
	}
	t0 := time.Now()
	progress("generating %d + %d tiny legacy titles in %s", c.titles, c.small, storeDir)
	if err := synthetic.LegacyCatalogue(ctx, store, synthetic.LegacyTitle{Prefix: "legacy/"}, 0, c.titles, 16); err != nil {
		return err
	}
	if err := synthetic.LegacyCatalogue(ctx, store, synthetic.LegacyTitle{Prefix: "small/"}, 0, c.small, 16); err != nil {
		return err
	}
	progress("generated in %.1f s", time.Since(t0).Seconds())
	return os.WriteFile(marker, []byte(want), 0o600)
}

// freshDatabase creates a database on the server of admin and returns its
// URL and a function that drops it.
func freshDatabase(ctx context.Context, admin string) (string, func(), error) {
	u, err := url.Parse(admin)
	if err != nil {
		return "", nil, fmt.Errorf("catalogue: database URL: %w", err)
	}
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return "", nil, err
	}
	defer conn.Close(ctx)
	name := randID("hlsv_bench_cat_")
	if _, err := conn.Exec(ctx, "create database "+name); err != nil {
		return "", nil, err
	}
	u.Path = "/" + name
	drop := func() {
		ctx := context.WithoutCancel(ctx)
		if conn, err := pgx.Connect(ctx, admin); err == nil {
			conn.Exec(ctx, "drop database if exists "+name+" with (force)")
			conn.Close(ctx)
		}
	}
	return u.String(), drop, nil
}

// benchKEK is a throwaway key-encryption key: 32 distinct byte values, as
// keys.ParseKEK requires.
func benchKEK() string {
	var raw []byte
	for _, b := range mrand.Perm(256)[:32] {
		raw = append(raw, byte(b))
	}
	return base64.StdEncoding.EncodeToString(raw)
}

// childRun is what a finished child process measured.
type childRun struct {
	secs  float64
	rssMB float64 // peak resident set, from the kernel's accounting
	out   string
	tail  string // its last output line
}

func runChild(ctx context.Context, prog string, env []string, args ...string) (childRun, error) {
	cmd := exec.CommandContext(ctx, prog, args...)
	cmd.Env = env
	var out, errb bytes.Buffer
	// A dry run prints a line per title: keep only the end.
	cmd.Stdout, cmd.Stderr = &tailWriter{b: &out, max: 64 << 10}, &errb
	t0 := time.Now()
	err := cmd.Run()
	r := childRun{secs: time.Since(t0).Seconds(), out: out.String()}
	if err != nil {
		return r, fmt.Errorf("%s %s: %v: %s%s", filepath.Base(prog), strings.Join(args, " "), err, tail(errb.String()), tail(out.String()))
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		r.rssMB = float64(ru.Maxrss) / 1024 // KiB on Linux
	}
	r.tail = tail(r.out)
	return r, nil
}

func startChild(ctx context.Context, prog string, env []string, args ...string) (*exec.Cmd, error) {
	cmd := exec.CommandContext(ctx, prog, args...)
	cmd.Env = env
	return cmd, cmd.Start()
}

// tailWriter keeps the last max bytes written (roughly).
type tailWriter struct {
	b   *bytes.Buffer
	max int
}

func (w *tailWriter) Write(p []byte) (int, error) {
	w.b.Write(p)
	if w.b.Len() > 2*w.max {
		rest := bytes.Clone(w.b.Bytes()[w.b.Len()-w.max:])
		w.b.Reset()
		w.b.Write(rest)
	}
	return len(p), nil
}

// tail is the last non-empty line of s.
func tail(s string) string {
	s = strings.TrimRight(s, "\n")
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}
