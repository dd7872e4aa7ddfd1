package transcode

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// Runner runs ffmpeg. The zero value is not usable: Exec, Input and
// OutDir must be set. A Runner holds no state between runs; copy it to
// vary fields per job.
type Runner struct {
	Exec   *Exec        // starts ffmpeg (in the decoder sandbox)
	Logger *slog.Logger // nil discards
	// Input is the source file given to Args: the only file ffmpeg may
	// read, read-only.
	Input string
	// Timeout is the wall-clock deadline for the whole run (0 = none); the
	// caller derives it from the source duration.
	Timeout time.Duration
	// MaxOutputBytes stops ffmpeg when the regular files under OutDir total
	// more than this (0 = no cap); checked every second. It measures what
	// is on disk, so if the pipeline deletes uploaded segments it caps disk
	// use rather than the total output.
	MaxOutputBytes int64
	// OutDir is the outDir given to Args: the only directory ffmpeg may
	// write to, and the one MaxOutputBytes watches.
	OutDir string
	// KillGrace is how long ffmpeg gets to finish after SIGTERM (it flushes
	// and closes its files) before the process group is SIGKILLed;
	// default 2s.
	KillGrace time.Duration
	// OnStart, if set, is called with ffmpeg's pid, which is also its
	// process group id, right after it starts and before any progress.
	OnStart func(pid int)
}

// outputPoll is how often Run measures OutDir.
const outputPoll = time.Second

var errOutputCap = errors.New("output cap exceeded")

// Run executes ffmpeg with args (from Args) and reports each -progress block
// to onProgress, on another goroutine (it may be nil, and should return
// quickly: ffmpeg stalls while it blocks). ffmpeg runs in its own process
// group with stdin closed and dies with the worker (Pdeathsig). On failure
// the error carries the last 4 KiB of stderr:
// "transcode: ffmpeg: exit status 1: <tail>".
//
// Cancelling ctx, the Timeout and the output cap all stop ffmpeg the same
// way: SIGTERM to the group, SIGKILL after KillGrace. Run returns only when
// no process of the group is left. The error then wraps ctx.Err(),
// context.DeadlineExceeded (naming the deadline) or ErrInvalidInput
// ("output exceeded N bytes") respectively. Note that ffmpeg finalises its
// playlists on SIGTERM, #EXT-X-ENDLIST included: only a nil error means the
// ladder is complete.
func (r *Runner) Run(ctx context.Context, args []string, onProgress func(Progress)) error {
	if r.Exec == nil {
		return errNoExec
	}
	if !filepath.IsAbs(r.OutDir) || !filepath.IsAbs(r.Input) {
		return fmt.Errorf("transcode: ffmpeg needs an absolute Input and OutDir, got %q and %q", r.Input, r.OutDir)
	}
	// The sandbox binds OutDir, so it must exist; private to the worker.
	if err := os.MkdirAll(r.OutDir, 0o700); err != nil {
		return fmt.Errorf("transcode: ffmpeg output: %w", err)
	}
	log := r.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	grace := r.KillGrace
	if grace <= 0 {
		grace = 2 * time.Second
	}

	runCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	if r.Timeout > 0 {
		var cancelT context.CancelFunc
		runCtx, cancelT = context.WithTimeoutCause(runCtx, r.Timeout,
			fmt.Errorf("transcode: ffmpeg: deadline of %s exceeded: %w", r.Timeout, context.DeadlineExceeded))
		defer cancelT()
	}

	cmd, err := r.Exec.Command(runCtx, FFmpeg, args, []string{r.Input}, []string{r.OutDir})
	if err != nil {
		return err
	}
	// ffmpeg treats SIGTERM like q: it stops reading, flushes and exits.
	// (In the sandbox the group is bwrap's: SIGTERM ends bwrap, and its
	// pid namespace, ffmpeg included, goes with it.)
	cmd.Cancel = func() error { return killGroup(cmd.Process.Pid, syscall.SIGTERM) }
	// After the grace, exec SIGKILLs ffmpeg and stops waiting for its pipes;
	// the rest of the group is killed below.
	cmd.WaitDelay = grace
	stderr := newTail(4 << 10)
	cmd.Stderr = stderr
	pr, pw := io.Pipe()
	cmd.Stdout = pw

	// onProgress waits for OnStart, so callers can rely on their order.
	started, parsed := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(parsed)
		<-started
		if err := ParseProgress(pr, onProgress); err != nil {
			log.Warn("ignoring ffmpeg progress", "err", err)
		}
		// Keep draining so ffmpeg never blocks on a full stdout pipe.
		_, _ = io.Copy(io.Discard, pr)
	}()

	start := time.Now()
	if err := cmd.Start(); err != nil {
		close(started)
		pw.Close()
		<-parsed
		return fmt.Errorf("transcode: start ffmpeg: %w", err)
	}
	pgid := cmd.Process.Pid
	log.Debug("ffmpeg started", "pid", pgid)
	if r.OnStart != nil {
		r.OnStart(pgid)
	}
	close(started)

	exited := make(chan struct{})
	if r.MaxOutputBytes > 0 {
		go r.watchOutput(runCtx, exited, cancel, log)
	}

	waitErr := cmd.Wait()
	close(exited)
	pw.Close()
	<-parsed
	r.reap(pgid, log)

	if waitErr == nil {
		log.Debug("ffmpeg finished", "elapsed_seconds", time.Since(start).Seconds())
		return nil
	}
	if runCtx.Err() != nil {
		cause := context.Cause(runCtx)
		switch {
		case errors.Is(cause, errOutputCap):
			return invalid("output exceeded %d bytes", r.MaxOutputBytes)
		case ctx.Err() != nil:
			return fmt.Errorf("transcode: ffmpeg: %w", ctx.Err())
		default:
			return cause // the timeout, already worded
		}
	}
	return fmt.Errorf("transcode: ffmpeg: %w: %s", waitErr, stderr.String())
}

// reap makes sure nothing of the group outlives Run. ffmpeg itself has been
// waited for; anything it spawned is SIGKILLed and given a moment to go.
func (r *Runner) reap(pgid int, log *slog.Logger) {
	if err := killGroup(pgid, syscall.SIGKILL); err != nil {
		log.Warn("cannot kill ffmpeg's process group", "pgid", pgid, "err", err)
	}
	for deadline := time.Now().Add(time.Second); groupAlive(pgid); {
		if time.Now().After(deadline) {
			log.Warn("ffmpeg's process group survives SIGKILL", "pgid", pgid)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (r *Runner) watchOutput(ctx context.Context, exited <-chan struct{}, stop context.CancelCauseFunc, log *slog.Logger) {
	t := time.NewTicker(outputPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-exited:
			return
		case <-t.C:
		}
		if n := dirSize(r.OutDir); n > r.MaxOutputBytes {
			log.Warn("stopping ffmpeg: output too large", "bytes", n, "limit", r.MaxOutputBytes)
			stop(errOutputCap)
			return
		}
	}
}

// dirSize totals the regular files under dir. Files come and go while
// ffmpeg renames temporaries and the pipeline removes uploaded segments,
// so errors on single entries are skipped.
func dirSize(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		if fi, err := d.Info(); err == nil {
			n += fi.Size()
		}
		return nil
	})
	return n
}
