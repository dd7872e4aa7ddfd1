// Package worker is the asynq server and mux that cmd/worker runs: queues
// and priorities, retry policy, shutdown, and the middleware that wraps
// every handler (in-flight tracking, a per-task logger). Tests build their
// workers here too, so that they run the production wiring.
package worker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"

	"github.com/hlsvault/hlsvault/internal/config"
	"github.com/hlsvault/hlsvault/jobs"
)

// Defaults for Config fields left zero.
const (
	DefaultConcurrency       = 1
	DefaultShutdownTimeout   = 20 * time.Second
	DefaultTaskCheckInterval = 200 * time.Millisecond
)

// Config tunes a Server.
type Config struct {
	// Concurrency is how many tasks run at once (default 1: ffmpeg uses
	// every core).
	Concurrency int
	// Queues are served strictly by priority: TranscodeHigh, Transcode,
	// TranscodeLow, then Background.
	Queues jobs.Queues
	// ShutdownTimeout bounds how long Shutdown waits for running tasks to
	// stop and clean up (default 20 s).
	ShutdownTimeout time.Duration
	// TaskCheckInterval is how often an idle worker looks for work
	// (default 200 ms; asynq's 1 s would add up to a second to every job's
	// latency).
	TaskCheckInterval time.Duration
	// RetryDelay is the backoff before retry n (default RetryDelay). Tests
	// shorten it.
	RetryDelay func(n int) time.Duration
	// LogLevel is asynq's own log level (default warn).
	LogLevel asynq.LogLevel
}

func (c Config) withDefaults() Config {
	c.Concurrency = cmp.Or(c.Concurrency, DefaultConcurrency)
	c.ShutdownTimeout = cmp.Or(c.ShutdownTimeout, DefaultShutdownTimeout)
	c.TaskCheckInterval = cmp.Or(c.TaskCheckInterval, DefaultTaskCheckInterval)
	if c.RetryDelay == nil {
		c.RetryDelay = RetryDelay
	}
	c.LogLevel = cmp.Or(c.LogLevel, asynq.WarnLevel)
	return c
}

func (c Config) validate() error {
	switch {
	case c.Concurrency < 0:
		return fmt.Errorf("worker: concurrency %d is negative", c.Concurrency)
	case c.Queues.TranscodeHigh == "" || c.Queues.Transcode == "" || c.Queues.TranscodeLow == "" || c.Queues.Background == "":
		return errors.New("worker: every queue name is required (jobs.QueueNames)")
	case len(map[string]bool{c.Queues.TranscodeHigh: true, c.Queues.Transcode: true, c.Queues.TranscodeLow: true, c.Queues.Background: true}) != 4:
		return errors.New("worker: the transcode (high, normal, low) and background queues must differ")
	case c.ShutdownTimeout < 0:
		return fmt.Errorf("worker: shutdown timeout %v is negative", c.ShutdownTimeout)
	case c.TaskCheckInterval < 0:
		return fmt.Errorf("worker: task check interval %v is negative", c.TaskCheckInterval)
	}
	return nil
}

// Handlers maps task types to their handlers: jobs.TypeTranscode to the
// pipeline, backfill.TypeBatch and backfill.TypeTick to the backfill
// service. A map, not named fields, so that this package imports neither
// (their own tests build workers here).
type Handlers map[string]asynq.Handler

// Server is an asynq server with the worker's mux. Use it once: Start
// then Shutdown, or Run.
type Server struct {
	cfg      Config
	redis    asynq.RedisConnOpt
	log      *slog.Logger
	mux      *asynq.ServeMux
	inflight sync.WaitGroup
	running  atomic.Int64  // tasks in their handler now
	idle     chan struct{} // signalled whenever a task ends
	draining atomic.Bool
	srv      *asynq.Server
	busy     inflight // running tasks by queue (InFlight)
	// jobs is the handlers' base context; cancelJobs ends it (Shutdown).
	jobs       context.Context
	cancelJobs context.CancelFunc
}

// New builds a Server for the handlers; nothing connects before Start.
func New(cfg Config, redis asynq.RedisConnOpt, log *slog.Logger, h Handlers) (*Server, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, redis: redis, log: log, mux: asynq.NewServeMux(), idle: make(chan struct{}, 1)}
	// Tracking is outermost so that Shutdown also waits for the end-of-task
	// log line.
	s.mux.Use(s.track, Logging(log))
	for typ, hd := range h {
		s.mux.Handle(typ, hd)
	}
	return s, nil
}

// Start starts processing; handlers run under ctx, so cancelling it (or
// Shutdown) stops ffmpeg at once. Such an interruption is not a failure:
// asynq puts the task back without spending a retry. A worker that drains
// (Drain) passes a ctx that no signal cancels, so that its running tasks
// finish.
func (s *Server) Start(ctx context.Context) error {
	s.jobs, s.cancelJobs = context.WithCancel(ctx)
	jobs := s.jobs
	interrupted := func(err error) bool {
		return errors.Is(err, errDraining) || (errors.Is(err, context.Canceled) && jobs.Err() != nil)
	}
	s.srv = asynq.NewServer(s.redis, asynq.Config{
		Concurrency:    s.cfg.Concurrency,
		Queues:         Priorities(s.cfg.Queues),
		StrictPriority: true, // fresh uploads first, by priority, always
		BaseContext:    func() context.Context { return jobs },
		IsFailure:      func(err error) bool { return !interrupted(err) },
		RetryDelayFunc: func(n int, err error, _ *asynq.Task) time.Duration {
			if interrupted(err) {
				return time.Second
			}
			return s.cfg.RetryDelay(n)
		},
		ShutdownTimeout:   s.cfg.ShutdownTimeout,
		TaskCheckInterval: s.cfg.TaskCheckInterval,
		Logger:            config.SlogAsynq{L: s.log},
		LogLevel:          s.cfg.LogLevel,
	})
	if err := s.srv.Start(s.mux); err != nil {
		return fmt.Errorf("worker: start: %w", err)
	}
	return nil
}

// Shutdown stops taking tasks, requeues the running ones and waits, at most
// ShutdownTimeout, for their handlers to return: asynq stops waiting for a
// handler whose context is done, but the worker must still wait for its
// cleanup (ffmpeg killed, temp dir removed, a title put back).
func (s *Server) Shutdown() {
	if s.srv == nil {
		return
	}
	s.log.Info("shutting down", "running", s.running.Load())
	// Cancelled first: asynq's Shutdown would otherwise wait out
	// ShutdownTimeout for handlers that nothing told to stop.
	s.cancelJobs()
	s.srv.Shutdown()
	done := make(chan struct{})
	go func() { s.inflight.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(s.cfg.ShutdownTimeout):
		s.log.Error("jobs did not stop in time", "timeout_seconds", s.cfg.ShutdownTimeout.Seconds())
	}
	s.log.Info("stopped")
}

// Drain stops taking tasks (asynq's Stop: the leases of the running ones
// are still extended) and waits until the running tasks have finished, or
// until ctx is done (then it returns ctx's error and the tasks still run:
// Shutdown cancels and requeues them). It logs "draining: N tasks running"
// and "drained". One caller at a time; call Shutdown afterwards in any
// case.
func (s *Server) Drain(ctx context.Context) error {
	if s.srv == nil {
		return nil
	}
	if s.draining.CompareAndSwap(false, true) {
		s.srv.Stop()
		s.log.Info(fmt.Sprintf("draining: %d tasks running", s.running.Load()), "running", s.running.Load())
	}
	for s.running.Load() > 0 {
		select {
		case <-ctx.Done():
			s.log.Warn("drain interrupted", "running", s.running.Load(), "err", context.Cause(ctx))
			return ctx.Err()
		case <-s.idle:
		}
	}
	s.log.Info("drained", "running", 0)
	return nil
}

// Draining reports whether Drain was called: the worker takes no more
// tasks.
func (s *Server) Draining() bool { return s.draining.Load() }

// Running is the number of tasks in their handler now.
func (s *Server) Running() int { return int(s.running.Load()) }

// Run starts, serves until ctx is done, then shuts down.
func (s *Server) Run(ctx context.Context) error {
	if err := s.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	s.Shutdown()
	return nil
}

// errDraining puts back, without spending a retry, a task that asynq
// dequeued as Drain stopped it.
var errDraining = errors.New("worker: draining: task put back")

func (s *Server) track(next asynq.Handler) asynq.Handler {
	return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
		s.inflight.Add(1)
		s.busy.add(ctx, 1)
		s.running.Add(1)
		defer func() {
			s.busy.add(ctx, -1)
			s.running.Add(-1)
			select { // wake Drain
			case s.idle <- struct{}{}:
			default:
			}
			s.inflight.Done()
		}()
		// Counted first, checked second: Drain sets draining before it
		// reads running, so a task is either counted by Drain or sees
		// draining here. One that asynq dequeued during Stop does not run.
		if s.draining.Load() {
			id, _ := asynq.GetTaskID(ctx)
			s.log.Info("task arrived while draining; put back", "task", id, "type", t.Type())
			return errDraining
		}
		return next.ProcessTask(ctx, t)
	})
}

// Priorities are asynq's queue priorities, served strictly: high, normal
// and low transcodes, then the background.
func Priorities(q jobs.Queues) map[string]int {
	return map[string]int{q.TranscodeHigh: 30, q.Transcode: 20, q.TranscodeLow: 10, q.Background: 1}
}

// RetryDelay is the backoff before retry n (0-based): 10 s doubling, at most
// 10 minutes, with ±20% jitter so that workers do not retry in lockstep.
func RetryDelay(n int) time.Duration {
	d := 10 * time.Second << min(n, 6)
	d = min(d, 10*time.Minute)
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}
