// Command hlsbench measures the worker against bare ffmpeg, in one run, and
// prints ratios (medians of interleaved runs; these machines are noisy, so
// only figures from the same run are compared).
//
//	worker end to end (enqueue → published, Azurite) / one bare ffmpeg for the same ladder on local disk
//	CPU of the one-process ladder / one ffmpeg process per rung
//	the worker's own peak RSS (ffmpeg excluded) for a short and a long source
//
// `hlsbench load` queues 200 small jobs for two worker processes (see
// runLoad). `hlsbench analysis` measures the pre-transcode checks (the
// integrity check's packet read and the interlace check's idet sample)
// against the transcode's wall time (see runAnalysis; no services needed).
// `hlsbench chunks` compares chunked with unchunked transcoding of a 1080p
// source of at least 120 s (CPU, wall with two worker processes) and
// models the time to publish with N workers (see runChunks).
// `hlsbench renditions` measures a title with every extra rendition
// (alternate audio, subtitles, I-frame playlists, storyboard) against bare
// ffmpeg for its ladder (see runRenditions).
//
// It expects the services of `make services` and ./bin/worker (make build).
package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hlsvault/hlsvault/internal/catalog"
	"github.com/hlsvault/hlsvault/internal/config"
	"github.com/hlsvault/hlsvault/internal/storage"
	"github.com/hlsvault/hlsvault/internal/transcode"
	"github.com/hlsvault/hlsvault/jobs"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "hlsbench:", err)
		os.Exit(1)
	}
}

// Config of one benchmark run.
type Config struct {
	Dir          string
	Worker       string
	Runs         int
	Seconds      int
	ShortSeconds int
	LongSeconds  int
	Preset       string
	Sandbox      string // DECODER_SANDBOX of the bare ffmpeg and the probes
	DatabaseURL  string
	RedisURL     string
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "load" {
		return runLoad(ctx, args[1:], getenv, stdout, stderr)
	}
	if len(args) > 0 && args[0] == "chunks" {
		return runChunks(ctx, args[1:], getenv, stdout, stderr)
	}
	if len(args) > 0 && args[0] == "renditions" {
		return runRenditions(ctx, args[1:], getenv, stdout, stderr)
	}
	if len(args) > 0 && args[0] == "analysis" {
		return runAnalysis(ctx, args[1:], stdout, stderr)
	}
	var c Config
	fs := flag.NewFlagSet("hlsbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sourceFlags(fs, &c)
	workerFlags(fs, &c, getenv)
	fs.IntVar(&c.ShortSeconds, "short-seconds", 10, "short source for the RSS figure")
	fs.IntVar(&c.LongSeconds, "long-seconds", 120, "long source for the RSS figure")
	if err := fs.Parse(args); err != nil {
		return err
	}
	b, err := newBench(c, getenv, stdout, stderr)
	if err != nil {
		return err
	}
	return b.run(ctx)
}

// workerFlags are the flags of every figure that runs the worker.
func workerFlags(fs *flag.FlagSet, c *Config, getenv func(string) string) {
	fs.StringVar(&c.Worker, "worker", "bin/worker", "worker binary")
	fs.StringVar(&c.DatabaseURL, "database-url", config.Getenv(getenv, "DATABASE_URL", config.DefaultDatabaseURL), "PostgreSQL")
	fs.StringVar(&c.RedisURL, "redis-url", config.Getenv(getenv, "REDIS_URL", config.DefaultRedisURL), "Redis")
}

// newBench makes the work directory and the decoder sandbox of c.
func newBench(c Config, getenv func(string) string, stdout, stderr io.Writer) (*bench, error) {
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(c.Dir)
	if err != nil {
		return nil, err
	}
	c.Dir = dir
	x, err := transcode.NewExec(transcode.ExecConfig{Sandbox: c.Sandbox})
	if err != nil {
		return nil, err
	}
	if err := becomeSubreaper(); err != nil {
		return nil, err
	}
	return &bench{cfg: c, exec: x, getenv: getenv, out: stdout, log: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}, nil
}

// sourceFlags are the flags of every figure made from the 1080p source:
// where it is kept, its length, the preset and how many interleaved runs.
func sourceFlags(fs *flag.FlagSet, c *Config) {
	fs.StringVar(&c.Dir, "dir", ".cache/bench", "work directory (sources are kept between runs)")
	fs.IntVar(&c.Runs, "runs", 3, "interleaved runs per figure")
	fs.IntVar(&c.Seconds, "seconds", 20, "duration of the 1080p source")
	fs.StringVar(&c.Preset, "preset", "veryfast", "x264 preset")
	fs.StringVar(&c.Sandbox, "decoder-sandbox", transcode.SandboxBwrap, "decoder sandbox of the probes and the bare ffmpeg, as the worker's DECODER_SANDBOX (bwrap or none)")
}

type bench struct {
	cfg    Config
	exec   *transcode.Exec
	getenv func(string) string
	out    io.Writer
	log    *slog.Logger
	db     *catalog.DB
	client *jobs.Client
	env    []string
	queue  string
}

func (b *bench) progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "  "+format+"\n", args...)
}

func (b *bench) run(ctx context.Context) error {
	src, err := b.source(ctx, "src_1080p", 1920, 1080, b.cfg.Seconds)
	if err != nil {
		return err
	}
	short, err := b.source(ctx, "src_480p_short", 854, 480, b.cfg.ShortSeconds)
	if err != nil {
		return err
	}
	long, err := b.source(ctx, "src_480p_long", 854, 480, b.cfg.LongSeconds)
	if err != nil {
		return err
	}
	if err := b.setup(ctx); err != nil {
		return err
	}
	defer b.db.Close()
	defer b.client.Close()

	probe, plan, err := b.plan(ctx, src)
	if err != nil {
		return err
	}
	fmt.Fprintf(b.out, "source: %dx%d, %v, ladder %s, preset %s, %d cores\n", probe.Video.DisplayWidth, probe.Video.DisplayHeight,
		probe.Duration, names(plan), b.cfg.Preset, nproc())

	var bareWall, bareCPU, perRungCPU, workerWall, e2eRatio, cpuRatio []float64
	for i := range b.cfg.Runs {
		b.progress("run %d/%d: bare ffmpeg (one process, whole ladder)", i+1, b.cfg.Runs)
		w, cpu, err := b.ffmpeg(ctx, plan, src)
		if err != nil {
			return err
		}
		bareWall, bareCPU = append(bareWall, w), append(bareCPU, cpu)
		b.progress("run %d/%d: one ffmpeg process per rung", i+1, b.cfg.Runs)
		var rungCPU float64
		for _, r := range plan.Renditions {
			one := plan
			one.Renditions = []transcode.Rendition{r}
			_, cpu, err := b.ffmpeg(ctx, one, src)
			if err != nil {
				return err
			}
			rungCPU += cpu
		}
		perRungCPU = append(perRungCPU, rungCPU)
		b.progress("run %d/%d: worker end to end (Azurite)", i+1, b.cfg.Runs)
		wr, err := b.worker(ctx, workerJob{src: src})
		if err != nil {
			return err
		}
		workerWall = append(workerWall, wr.wall)
		e2eRatio = append(e2eRatio, wr.wall/w)
		cpuRatio = append(cpuRatio, bareCPU[i]/rungCPU)
	}
	b.progress("worker peak RSS: short source")
	shortRun, err := b.worker(ctx, workerJob{src: short})
	if err != nil {
		return err
	}
	rssShort := shortRun.rssMiB
	b.progress("worker peak RSS: long source")
	longRun, err := b.worker(ctx, workerJob{src: long})
	if err != nil {
		return err
	}
	rssLong := longRun.rssMiB

	figureHeader(b.out)
	row := func(name string, xs []float64, target string) { figureRow(b.out, name, xs, 2, target) }
	row("bare ffmpeg, whole ladder, wall (s)", bareWall, "")
	row("worker enqueue→published, Azurite, wall (s)", workerWall, "")
	row("worker end to end / bare ffmpeg", e2eRatio, "≤ 1.10")
	row("ffmpeg CPU one process (user+sys s)", bareCPU, "")
	row("ffmpeg CPU one process per rung (user+sys s)", perRungCPU, "")
	row("CPU one process / one process per rung", cpuRatio, "≤ 0.85")
	fmt.Fprintf(b.out, "%-58s %-26s %9.1f MiB\n", fmt.Sprintf("worker peak RSS, %d s source", b.cfg.ShortSeconds), "", rssShort)
	fmt.Fprintf(b.out, "%-58s %-26s %9.1f MiB  (long/short %.2f; must not grow with length)\n",
		fmt.Sprintf("worker peak RSS, %d s source", b.cfg.LongSeconds), "", rssLong, rssLong/rssShort)
	return nil
}

// plan probes src and plans the worker's default ladder for it (4 s
// segments), as the worker does.
func (b *bench) plan(ctx context.Context, src string) (*transcode.Probe, transcode.Plan, error) {
	probe, err := transcode.ProbeFile(ctx, b.exec, src, transcode.DefaultLimits())
	if err != nil {
		return nil, transcode.Plan{}, err
	}
	plan, err := transcode.PlanLadder(probe, transcode.DefaultLadder(), 4*time.Second)
	return probe, plan, err
}

// names lists a plan's renditions: the video rungs, then any alternate
// audio.
func names(p transcode.Plan) string {
	var n []string
	for _, r := range p.Renditions {
		n = append(n, fmt.Sprintf("%s %dx%d", r.Name, r.Width, r.Height))
	}
	for _, a := range p.Audio {
		n = append(n, fmt.Sprintf("%s %s %dch", a.Name, a.Language, a.Channels))
	}
	return strings.Join(n, ", ")
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func nproc() int {
	n := 0
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "processor") {
			n++
		}
	}
	return n
}

// source generates a test video once and keeps it.
func (b *bench) source(ctx context.Context, name string, w, h, seconds int) (string, error) {
	return b.generate(ctx, fmt.Sprintf("%s_%ds.mp4", name, seconds),
		"-f", "lavfi", "-i", fmt.Sprintf("testsrc2=size=%dx%d:rate=30:duration=%d", w, h, seconds),
		"-f", "lavfi", "-i", fmt.Sprintf("sine=frequency=440:sample_rate=48000:duration=%d", seconds),
		"-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p", "-c:a", "aac")
}

// generate runs ffmpeg with args (inputs and encoding, no output) into
// name under the work directory, once: an existing file is kept.
func (b *bench) generate(ctx context.Context, name string, args ...string) (string, error) {
	path := filepath.Join(b.cfg.Dir, name)
	if st, err := os.Stat(path); err == nil && st.Size() > 0 {
		return path, nil
	}
	b.progress("generating %s", path)
	tmp := path + ".tmp.mp4"
	argv := append([]string{"-hide_banner", "-loglevel", "error", "-nostdin", "-y"}, args...)
	cmd := exec.CommandContext(ctx, "ffmpeg", append(argv, tmp)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("generate %s: %v: %s", name, err, out)
	}
	return path, os.Rename(tmp, path)
}

// ffmpeg runs one bare ffmpeg for plan on local disk and returns its wall
// time and CPU time (user+sys), in seconds.
func (b *bench) ffmpeg(ctx context.Context, plan transcode.Plan, src string) (float64, float64, error) {
	out, err := os.MkdirTemp(b.cfg.Dir, "bare-")
	if err != nil {
		return 0, 0, err
	}
	defer os.RemoveAll(out)
	args, err := transcode.Args(plan, src, out, transcode.ArgsOptions{Preset: b.cfg.Preset})
	if err != nil {
		return 0, 0, err
	}
	return b.runFFmpeg(ctx, args, src, out)
}

// runFFmpeg runs ffmpeg with args in the decoder sandbox (reading src,
// writing under out) and returns its wall time and CPU time (user+sys of
// every process of the run, the sandbox's included), in seconds.
func (b *bench) runFFmpeg(ctx context.Context, args []string, src, out string) (float64, float64, error) {
	cmd, err := b.exec.Command(ctx, transcode.FFmpeg, args, []string{src}, []string{out})
	if err != nil {
		return 0, 0, err
	}
	before, err := childrenCPU()
	if err != nil {
		return 0, 0, err
	}
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		return 0, 0, fmt.Errorf("ffmpeg: %v: %s", err, out)
	}
	wall := time.Since(start).Seconds()
	after, err := childrenCPU() // the sandbox's orphaned pid 1 (see cpu.go)
	return wall, after - before, err
}

func (b *bench) setup(ctx context.Context) error {
	var err error
	if b.db, err = catalog.Open(ctx, b.cfg.DatabaseURL, b.log); err != nil {
		return err
	}
	if err := b.db.Migrate(ctx); err != nil {
		return err
	}
	redisOpt, err := config.RedisOpt(b.cfg.RedisURL)
	if err != nil {
		return err
	}
	var suffix [4]byte
	rand.Read(suffix[:])
	prefix := fmt.Sprintf("bench%x", suffix)
	b.queue = prefix
	if b.client, err = jobs.New(b.db.Pool(), redisOpt, jobs.ClientConfig{Queues: jobs.QueueNames(prefix)}); err != nil {
		return err
	}
	kek := make([]byte, 32)
	rand.Read(kek)
	b.env = append(os.Environ(),
		"DATABASE_URL="+b.cfg.DatabaseURL, // the flags', not only the environment's
		"REDIS_URL="+b.cfg.RedisURL,
		"KEY_ENCRYPTION_KEY="+base64.StdEncoding.EncodeToString(kek),
		"STORAGE_URL=azblob://"+prefix,
		"QUEUE_PREFIX="+prefix,
		"X264_PRESET="+b.cfg.Preset,
		"METRICS_ADDR=off",
		"LOG_LEVEL=warn",
		"TMPDIR="+b.cfg.Dir,
	)
	return nil
}

// workerJob is what one fresh worker process is given to publish.
type workerJob struct {
	src string
	// sidecars are local subtitle files, uploaded next to the source and
	// enqueued as its sidecar subtitles.
	sidecars []sidecar
	env      []string // added to the worker's environment
}

type sidecar struct{ lang, path string }

// workerRun is what one worker run measured.
type workerRun struct {
	video  string
	wall   float64 // enqueue → published, s
	rssMiB float64 // the worker's own peak RSS (ffmpeg excluded)
	// cpu is user+sys of the worker process and of every process it
	// started (ffmpeg, ffprobe, bwrap, sandboxed or not), start to exit, s.
	cpu float64
}

// worker starts a fresh worker process, uploads j's files to Azurite,
// enqueues the source and waits until it is published, then stops the
// worker.
func (b *bench) worker(ctx context.Context, j workerJob) (workerRun, error) {
	var run workerRun
	video, name, err := b.upload(ctx, j.src)
	if err != nil {
		return run, err
	}
	run.video = video
	var subs []jobs.Subtitle
	for i, s := range j.sidecars {
		obj := fmt.Sprintf("uploads/%s/subs/%d%s", video, i, filepath.Ext(s.path))
		if err := b.put(ctx, obj, s.path); err != nil {
			return run, err
		}
		subs = append(subs, jobs.Subtitle{Language: s.lang, Source: obj})
	}

	cpuBefore, err := childrenCPU()
	if err != nil {
		return run, err
	}
	w, err := b.startWorker(ctx, "worker.log", j.env...)
	if err != nil {
		return run, err
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			w.stop()
		}
	}
	defer stop()
	time.Sleep(500 * time.Millisecond) // let it connect, as a running fleet would be

	start := time.Now()
	req := jobs.TranscodeRequest{VideoID: video, Source: name, Subtitles: subs}
	if err := b.transcode(ctx, req, []*workerProc{w}); err != nil {
		return run, err
	}
	run.wall = time.Since(start).Seconds()
	run.rssMiB = peakRSS(w.cmd.Process.Pid)
	stop()
	// The worker's rusage counts the children it waited for; the
	// sandboxes' orphans were adopted by this process (see cpu.go).
	cpuAfter, err := childrenCPU()
	run.cpu = cpuAfter - cpuBefore
	return run, err
}

// upload stores src in Azurite for a new video id, and returns the id
// and the object name.
func (b *bench) upload(ctx context.Context, src string) (video, name string, err error) {
	var id [6]byte
	rand.Read(id[:])
	video = fmt.Sprintf("bench-%x", id)
	name = "uploads/" + video + ".mp4"
	return video, name, b.put(ctx, name, src)
}

// put stores the local file path in Azurite as name.
func (b *bench) put(ctx context.Context, name, path string) error {
	store, err := storage.Open(ctx, "azblob://"+b.queue, b.getenv)
	if err != nil {
		return err
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return store.Put(ctx, name, f, -1, storage.PutOptions{})
}

// workerProc is a running worker process of the bench.
type workerProc struct {
	cmd *exec.Cmd
	log string // its log file
	// exited is closed once the process has exited and been waited for:
	// a worker that exits early (a refused configuration, a migration it
	// cannot run) ends the bench's wait.
	exited chan struct{}
}

// startWorker starts a worker process with the bench's environment and
// extra variables, logging into log under the work directory.
func (b *bench) startWorker(ctx context.Context, log string, env ...string) (*workerProc, error) {
	cmd := exec.CommandContext(ctx, b.cfg.Worker)
	cmd.Env = append(slices.Clone(b.env), env...)
	logFile, err := os.Create(filepath.Join(b.cfg.Dir, log))
	if err != nil {
		return nil, err
	}
	defer logFile.Close() // the child has its own descriptor
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	w := &workerProc{cmd: cmd, log: logFile.Name(), exited: make(chan struct{})}
	go func() { cmd.Wait(); close(w.exited) }()
	return w, nil
}

// stop stops the worker as a deployment would (SIGTERM) and waits; after
// it, cmd.ProcessState holds the worker's rusage (its reaped children's
// included). Stopping a worker that has exited is a no-op.
func (w *workerProc) stop() {
	w.cmd.Process.Signal(syscall.SIGTERM)
	<-w.exited
}

// transcode enqueues req and waits until it is published, while the
// workers run.
func (b *bench) transcode(ctx context.Context, req jobs.TranscodeRequest, workers []*workerProc) error {
	res, err := b.client.EnqueueTranscode(ctx, req)
	if err != nil {
		return err
	}
	for {
		j, err := b.client.Job(ctx, res.TaskID)
		if err != nil {
			return err
		}
		if j.State == jobs.Published {
			return nil
		}
		if j.State == jobs.Failed {
			return fmt.Errorf("job failed: %s", j.Error)
		}
		for _, w := range workers {
			select {
			case <-w.exited:
				return errors.New("worker exited; see " + w.log)
			default:
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// peakRSS reads VmHWM of one process (its children, ffmpeg, excluded), MiB.
func peakRSS(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			return kb / 1024
		}
	}
	return 0
}
