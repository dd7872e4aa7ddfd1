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
	srv      *asynq.Server
}

// New builds a Server for the handlers; nothing connects before Start.
func New(cfg Config, redis asynq.RedisConnOpt, log *slog.Logger, h Handlers) (*Server, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, redis: redis, log: log, mux: asynq.NewServeMux()}
	// Tracking is outermost so that Shutdown also waits for the end-of-task
	// log line.
	s.mux.Use(s.track, Logging(log))
	for typ, hd := range h {
		s.mux.Handle(typ, hd)
	}
	return s, nil
}

// Start starts processing; handlers run under ctx, so cancelling it stops
// ffmpeg at once. Such an interruption is not a failure: asynq puts the
// task back without spending a retry.
func (s *Server) Start(ctx context.Context) error {
	interrupted := func(err error) bool { return errors.Is(err, context.Canceled) && ctx.Err() != nil }
	s.srv = asynq.NewServer(s.redis, asynq.Config{
		Concurrency:    s.cfg.Concurrency,
		Queues:         Priorities(s.cfg.Queues),
		StrictPriority: true, // fresh uploads first, by priority, always
		BaseContext:    func() context.Context { return ctx },
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
	s.log.Info("shutting down")
	s.srv.Shutdown()
	done := make(chan struct{})
	go func() { s.inflight.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(s.cfg.ShutdownTimeout):
		s.log.Error("jobs did not stop in time", "timeout", s.cfg.ShutdownTimeout)
	}
	s.log.Info("stopped")
}

// Run starts, serves until ctx is done, then shuts down.
func (s *Server) Run(ctx context.Context) error {
	if err := s.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	s.Shutdown()
	return nil
}

func (s *Server) track(next asynq.Handler) asynq.Handler {
	return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
		s.inflight.Add(1)
		defer s.inflight.Done()
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
