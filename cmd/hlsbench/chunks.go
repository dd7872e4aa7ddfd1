package main

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hlsvault/hlsvault/internal/config"
	"github.com/hlsvault/hlsvault/internal/transcode"
	"github.com/hlsvault/hlsvault/jobs"
)

// runChunks is `hlsbench chunks`: chunked against unchunked transcoding
// of one 1080p source (at least 120 s), end to end through worker
// processes and Azurite, in interleaved runs:
//
//	unchunked: one worker process (its ffmpeg uses every core);
//	chunked:   two worker processes on the same cores, CHUNK_SECONDS=chunk.
//
// It prints the CPU ratio (user+sys of the workers and everything they
// ran, chunked / unchunked; target ≤ 1.05), the wall ratio (enqueue →
// published, chunked with two processes / unchunked with one; target ≤
// 1.05), and the time-to-publish model for N workers from the measured
// per-piece times (see model).
func runChunks(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var c Config
	fs := flag.NewFlagSet("hlsbench chunks", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sourceFlags(fs, &c)
	fs.StringVar(&c.Worker, "worker", "bin/worker", "worker binary")
	chunk := fs.Int("chunk-seconds", 30, "CHUNK_SECONDS of the chunked runs")
	fs.StringVar(&c.DatabaseURL, "database-url", config.Getenv(getenv, "DATABASE_URL", config.DefaultDatabaseURL), "PostgreSQL")
	fs.StringVar(&c.RedisURL, "redis-url", config.Getenv(getenv, "REDIS_URL", config.DefaultRedisURL), "Redis")
	if err := fs.Parse(append([]string{"-seconds", "120"}, args...)); err != nil {
		return err
	}
	if c.Seconds < 120 {
		return fmt.Errorf("chunks: -seconds %d: the figure is for a source of at least 120 s", c.Seconds)
	}
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		return err
	}
	dir, err := filepath.Abs(c.Dir)
	if err != nil {
		return err
	}
	c.Dir = dir
	x, err := transcode.NewExec(transcode.ExecConfig{Sandbox: c.Sandbox})
	if err != nil {
		return err
	}
	b := &bench{cfg: c, exec: x, getenv: getenv, out: stdout, log: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	src, err := b.source(ctx, "src_1080p", 1920, 1080, c.Seconds)
	if err != nil {
		return err
	}
	if err := b.setup(ctx); err != nil {
		return err
	}
	defer b.db.Close()
	defer b.client.Close()
	// LOG_LEVEL=info: the per-piece times come from the workers' logs.
	// The workers keep the decoder sandbox they are deployed with: as a
	// subreaper, hlsbench adopts the sandboxes' orphaned ffmpeg and counts
	// its CPU with the workers' (see cpu.go).
	if err := becomeSubreaper(); err != nil {
		return err
	}
	b.env = append(b.env, "LOG_LEVEL=info")
	fmt.Fprintf(stdout, "source: 1920x1080, %d s, default ladder, preset %s, %d cores; chunked: CHUNK_SECONDS=%d, 2 worker processes\n",
		c.Seconds, c.Preset, nproc(), *chunk)

	var wall1, wall2, cpu1, cpu2, wallRatio, cpuRatio []float64
	var last []pieceTime
	var fanOut, join float64
	for i := range c.Runs {
		b.progress("run %d/%d: unchunked, one worker process", i+1, c.Runs)
		w, cpu, _, err := b.timedJob(ctx, src, 1, "CHUNK_SECONDS=0")
		if err != nil {
			return err
		}
		wall1, cpu1 = append(wall1, w), append(cpu1, cpu)
		b.progress("run %d/%d: chunked, two worker processes", i+1, c.Runs)
		w2, cpuc, logs, err := b.timedJob(ctx, src, 2, "CHUNK_SECONDS="+strconv.Itoa(*chunk))
		if err != nil {
			return err
		}
		wall2, cpu2 = append(wall2, w2), append(cpu2, cpuc)
		wallRatio, cpuRatio = append(wallRatio, w2/w), append(cpuRatio, cpuc/cpu)
		if last, fanOut, join, err = pieceTimes(logs); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "\n%-58s %-26s %9s %s\n", "figure", "runs", "median", "target")
	row := func(name string, xs []float64, target string) {
		var parts []string
		for _, x := range xs {
			parts = append(parts, strconv.FormatFloat(x, 'f', 2, 64))
		}
		fmt.Fprintf(stdout, "%-58s %-26s %9.2f %s\n", name, strings.Join(parts, " "), median(xs), target)
	}
	row("unchunked, 1 worker process: enqueue→published (s)", wall1, "")
	row("chunked, 2 worker processes: enqueue→published (s)", wall2, "")
	row("wall chunked (2 processes) / unchunked (1 process)", wallRatio, "≤ 1.05")
	row("unchunked CPU, worker and children (user+sys s)", cpu1, "")
	row("chunked CPU, both workers and children (user+sys s)", cpu2, "")
	row("CPU chunked / unchunked", cpuRatio, "≤ 1.05")

	fmt.Fprintf(stdout, "\npieces of the last chunked run (each worker had one of the two cores' worth):\n")
	for _, p := range last {
		fmt.Fprintf(stdout, "  piece %2d %-6s %7.2f s\n", p.Piece, p.Kind, p.Seconds)
	}
	fmt.Fprintf(stdout, "  coordinator (download, probe, checks, fan-out) %.2f s, join %.2f s\n", fanOut, join)
	fmt.Fprintf(stdout, "\ntime-to-publish model, N workers each with the resources of one measured worker:\n")
	for _, n := range []int{1, 4, 20} {
		fmt.Fprintf(stdout, "  N = %2d: %7.1f s\n", n, model(last, n, fanOut, join))
	}
	return nil
}

// timedJob starts n worker processes with env, transcodes src through
// them and stops them; it returns the wall time from enqueue to
// published, the CPU time (user+sys) the workers and their children
// used, and the workers' log files.
func (b *bench) timedJob(ctx context.Context, src string, n int, env ...string) (float64, float64, []string, error) {
	video, name, err := b.upload(ctx, src)
	if err != nil {
		return 0, 0, nil, err
	}
	var (
		workers []*workerProc
		logs    []string
	)
	defer func() {
		for _, w := range workers {
			w.stop() // once more is harmless
		}
	}()
	before, err := childrenCPU()
	if err != nil {
		return 0, 0, nil, err
	}
	for i := range n {
		w, err := b.startWorker(ctx, fmt.Sprintf("worker-%d.log", i), append(env, fmt.Sprintf("WORKER_ID=bench-%d", i))...)
		if err != nil {
			return 0, 0, nil, err
		}
		workers, logs = append(workers, w), append(logs, w.log)
	}
	time.Sleep(500 * time.Millisecond)
	start := time.Now()
	if err := b.transcode(ctx, jobs.TranscodeRequest{VideoID: video, Source: name}, workers); err != nil {
		return 0, 0, nil, err
	}
	wall := time.Since(start).Seconds()
	for _, w := range workers {
		w.stop()
	}
	// The workers, what they reaped, and the sandboxes' orphans.
	after, err := childrenCPU()
	if err != nil {
		return 0, 0, nil, err
	}
	return wall, after - before, logs, nil
}

// pieceTime is one piece as a worker logged it.
type pieceTime struct {
	Piece   int
	Kind    string
	Seconds float64
}

// pieceTimes reads the pieces' times, the coordinator's and the join's
// from the workers' JSON logs.
func pieceTimes(logs []string) ([]pieceTime, float64, float64, error) {
	var (
		out          []pieceTime
		fanOut, join float64
	)
	for _, name := range logs {
		f, err := os.Open(name)
		if err != nil {
			return nil, 0, 0, err
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var l struct {
				Msg     string  `json:"msg"`
				Piece   int     `json:"piece"`
				Seconds float64 `json:"seconds"`
				Join    float64 `json:"join_seconds"`
			}
			if json.Unmarshal(sc.Bytes(), &l) != nil {
				continue
			}
			switch l.Msg {
			case "piece stored":
				out = append(out, pieceTime{Piece: l.Piece, Seconds: l.Seconds, Kind: "video"})
			case "job fanned out into pieces":
				fanOut = l.Seconds
			case "chunked job done":
				join = l.Join
			}
		}
		f.Close()
		if err := sc.Err(); err != nil {
			return nil, 0, 0, err
		}
	}
	if len(out) == 0 {
		return nil, 0, 0, fmt.Errorf("no piece in the workers' logs (%s): was the job chunked?", strings.Join(logs, ", "))
	}
	slices.SortFunc(out, func(a, b pieceTime) int { return cmp.Compare(a.Piece, b.Piece) })
	out[len(out)-1].Kind = "title" // the last piece: audio and storyboard
	return out, fanOut, join, nil
}

// model is the time to publish with n workers: the coordinator, then the
// pieces taken in the order they are enqueued (the title piece first,
// then the chunks) by whichever worker is free first, as asynq hands them
// out, then the join. Each worker is taken to run a piece in the time
// one measured worker did.
func model(pieces []pieceTime, n int, fanOut, join float64) float64 {
	if len(pieces) == 0 || n < 1 {
		return 0
	}
	order := append([]pieceTime{pieces[len(pieces)-1]}, pieces[:len(pieces)-1]...)
	free := make([]float64, n) // when each worker is next free
	var end float64
	for _, p := range order {
		i := slices.Index(free, slices.Min(free))
		free[i] += p.Seconds
		end = max(end, free[i])
	}
	return fanOut + end + join
}
