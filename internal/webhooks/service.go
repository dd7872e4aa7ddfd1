package webhooks

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hlsvault/hlsvault/internal/catalog"
	"github.com/hlsvault/hlsvault/internal/config"
	"github.com/hlsvault/hlsvault/internal/worker"
)

// Defaults for Config fields left zero.
const (
	DefaultConcurrency    = 4
	DefaultRequestTimeout = 10 * time.Second
	DefaultPollInterval   = 30 * time.Second
	DefaultBatchSize      = 100
	DefaultEventRetention = 7 * 24 * time.Hour
	DefaultPruneInterval  = time.Hour
	// DefaultTaskRetention keeps a delivered task (and so its id) in
	// Redis this long, so that a dispatch repeated after a crash between
	// enqueue and commit conflicts even when the first delivery is done.
	// The crashed transaction rolls back at once and any worker's next
	// dispatch (30 s poll) repeats it, so an hour is ample; a longer one
	// costs Redis memory per delivery. Past it, receivers still
	// deduplicate by webhook-id.
	DefaultTaskRetention = time.Hour
)

// Config tunes a Service.
type Config struct {
	// Queue is the webhooks queue (QueueName(QUEUE_PREFIX)).
	Queue string
	// URLs receive every event. None: events are still recorded and marked
	// dispatched (then pruned), nothing is delivered.
	URLs []string
	// Secret is the signing key (ParseSecret), required with URLs.
	Secret []byte
	// Concurrency is how many deliveries run at once (default 4).
	Concurrency int
	// RequestTimeout bounds one POST (default 10 s).
	RequestTimeout time.Duration
	// PollInterval is the fallback when a LISTEN notice is missed
	// (default 30 s).
	PollInterval time.Duration
	// BatchSize is how many events one dispatch transaction claims.
	BatchSize int
	// EventRetention: events recorded longer ago are deleted (7 days).
	EventRetention time.Duration
	// PruneInterval is how often they are (1 h).
	PruneInterval time.Duration
	// TaskRetention: see DefaultTaskRetention.
	TaskRetention time.Duration
	// RetryDelay is the delay before retry n (default RetryDelay); tests
	// shorten it.
	RetryDelay func(n int) time.Duration
	// TaskCheckInterval is how often the idle delivery server looks for
	// work (default 200 ms, as the worker's).
	TaskCheckInterval time.Duration
	// DelayedTaskCheckInterval is how often due retries are moved back to
	// the queue (default 1 s: asynq's 5 s would double the first, 5 s,
	// retry delay).
	DelayedTaskCheckInterval time.Duration
}

func (c Config) withDefaults() Config {
	c.Concurrency = cmp.Or(c.Concurrency, DefaultConcurrency)
	c.RequestTimeout = cmp.Or(c.RequestTimeout, DefaultRequestTimeout)
	c.PollInterval = cmp.Or(c.PollInterval, DefaultPollInterval)
	c.BatchSize = cmp.Or(c.BatchSize, DefaultBatchSize)
	c.EventRetention = cmp.Or(c.EventRetention, DefaultEventRetention)
	c.PruneInterval = cmp.Or(c.PruneInterval, DefaultPruneInterval)
	c.TaskRetention = cmp.Or(c.TaskRetention, DefaultTaskRetention)
	c.TaskCheckInterval = cmp.Or(c.TaskCheckInterval, worker.DefaultTaskCheckInterval)
	c.DelayedTaskCheckInterval = cmp.Or(c.DelayedTaskCheckInterval, time.Second)
	if c.RetryDelay == nil {
		c.RetryDelay = RetryDelay
	}
	return c
}

// Metrics are the delivery counters.
type Metrics struct {
	// Deliveries counts attempts by outcome: delivered (2xx), retry (to be
	// retried) and failed (given up: archived).
	Deliveries *prometheus.CounterVec
}

// Delivery outcomes (the outcome label).
const (
	OutcomeDelivered = "delivered"
	OutcomeRetry     = "retry"
	OutcomeFailed    = "failed"
)

// NewMetrics registers the webhook metrics on reg, every outcome present
// from the start so that an alert on failed has a series to watch.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{Deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hlsvault_webhook_deliveries_total",
		Help: "Webhook delivery attempts by outcome: delivered (2xx), retry (failed, will be retried), failed (given up).",
	}, []string{"outcome"})}
	for _, o := range []string{OutcomeDelivered, OutcomeRetry, OutcomeFailed} {
		m.Deliveries.WithLabelValues(o).Add(0)
	}
	reg.MustRegister(m.Deliveries)
	return m
}

// Service is the dispatcher and the delivery server of one worker. Use it
// once: Start, then Shutdown.
type Service struct {
	cfg     Config
	db      *catalog.DB
	redis   asynq.RedisConnOpt
	log     *slog.Logger
	metrics *Metrics

	client *asynq.Client
	srv    *asynq.Server
	wake   chan struct{}
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once

	// afterEnqueue runs after a dispatch enqueued its tasks, before it
	// commits; tests simulate a crash there.
	afterEnqueue func() error
	// drained runs after every drain of the loop (tests).
	drained func()
}

// New checks cfg and builds a Service; nothing connects before Start.
func New(cfg Config, db *catalog.DB, redis asynq.RedisConnOpt, m *Metrics, log *slog.Logger) (*Service, error) {
	cfg = cfg.withDefaults()
	switch {
	case cfg.Queue == "":
		return nil, errors.New("webhooks: a queue name is required")
	case len(cfg.URLs) > 0 && len(cfg.Secret) < MinSecretBytes:
		return nil, errors.New("webhooks: URLs need a secret of at least 24 bytes")
	case cfg.Concurrency < 1:
		return nil, fmt.Errorf("webhooks: concurrency %d", cfg.Concurrency)
	}
	return &Service{cfg: cfg, db: db, redis: redis, log: log.With("component", "webhooks"), metrics: m,
		wake: make(chan struct{}, 1)}, nil
}

// Start starts the delivery server (when there are URLs), the LISTEN
// loop, and the dispatch and prune loop. They run until Shutdown.
func (s *Service) Start(ctx context.Context) error {
	ctx, s.cancel = context.WithCancel(ctx)
	if len(s.cfg.URLs) > 0 {
		d, err := newDeliverer(s.cfg, s.metrics)
		if err != nil {
			s.cancel()
			return err
		}
		mux := asynq.NewServeMux()
		mux.Use(worker.Logging(s.log))
		mux.Handle(TypeDeliver, d)
		s.srv = asynq.NewServer(s.redis, asynq.Config{
			Concurrency: s.cfg.Concurrency,
			Queues:      map[string]int{s.cfg.Queue: 1},
			// A shutdown lets a running POST finish (it is bounded by the
			// request timeout) rather than spend a retry on it.
			BaseContext:              func() context.Context { return context.WithoutCancel(ctx) },
			RetryDelayFunc:           func(n int, _ error, _ *asynq.Task) time.Duration { return s.cfg.RetryDelay(n) },
			ShutdownTimeout:          s.cfg.RequestTimeout + 2*time.Second,
			TaskCheckInterval:        s.cfg.TaskCheckInterval,
			DelayedTaskCheckInterval: s.cfg.DelayedTaskCheckInterval,
			Logger:                   config.SlogAsynq{L: s.log},
			LogLevel:                 asynq.WarnLevel,
		})
		if err := s.srv.Start(mux); err != nil {
			s.cancel()
			return fmt.Errorf("webhooks: start: %w", err)
		}
		s.client = asynq.NewClient(s.redis)
	}
	s.wg.Go(func() { s.listen(ctx) })
	s.wg.Go(func() { s.loop(ctx) })
	s.log.Info("webhooks started", "queue", s.cfg.Queue, "urls", len(s.cfg.URLs), "concurrency", s.cfg.Concurrency)
	return nil
}

// Drain stops taking new deliveries (running ones finish), for a worker's
// graceful drain before a deploy; dispatching goes on, and the other
// workers deliver. Shutdown still ends it.
func (s *Service) Drain() {
	if s.srv != nil {
		s.srv.Stop()
	}
}

// Shutdown stops dispatching, lets running deliveries finish (bounded by
// the request timeout) and closes the Redis connections. Safe to call more
// than once, and concurrently: every call returns when it is done.
func (s *Service) Shutdown() {
	s.once.Do(func() {
		if s.cancel != nil {
			s.cancel()
		}
		s.wg.Wait()
		if s.srv != nil {
			s.srv.Shutdown()
		}
		if s.client != nil {
			_ = s.client.Close()
		}
	})
}

func (s *Service) kick() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// listen keeps a LISTEN session open, reconnecting after a failure (the
// poll covers the gap).
func (s *Service) listen(ctx context.Context) {
	for ctx.Err() == nil {
		if err := s.db.ListenEvents(ctx, s.kick, s.kick); err != nil {
			s.log.Warn("webhooks: listen for events (polling meanwhile)", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(5 * time.Second):
			}
		}
	}
}

func (s *Service) loop(ctx context.Context) {
	poll := time.NewTicker(s.cfg.PollInterval)
	defer poll.Stop()
	var pruned time.Time
	for {
		s.drain(ctx)
		if s.drained != nil {
			s.drained()
		}
		if time.Since(pruned) >= s.cfg.PruneInterval {
			pruned = time.Now()
			if n, err := s.db.PruneEvents(ctx, time.Now().Add(-s.cfg.EventRetention)); err != nil {
				s.log.Warn("webhooks: prune events", "err", err)
			} else if n > 0 {
				s.log.Info("webhooks: pruned old events", "events", n, "older_than", s.cfg.EventRetention.String())
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		case <-poll.C:
		}
	}
}

// drain dispatches until no undispatched event is left (or an error,
// retried at the next notice or poll).
func (s *Service) drain(ctx context.Context) {
	for ctx.Err() == nil {
		n, err := s.dispatch(ctx)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("webhooks: dispatch", "err", err)
			}
			return
		}
		if n < s.cfg.BatchSize {
			return
		}
	}
}

// dispatch claims one batch of events, enqueues their deliveries and marks
// them dispatched, in one transaction; it returns how many it claimed.
func (s *Service) dispatch(ctx context.Context) (int, error) {
	return s.db.DispatchEvents(ctx, s.cfg.BatchSize, func(ctx context.Context, evs []catalog.Event) error {
		var queued, dup int
		for _, e := range evs {
			if len(s.cfg.URLs) == 0 {
				continue
			}
			body, err := Body(e)
			if err != nil {
				return err
			}
			for _, u := range s.cfg.URLs {
				n, err := s.enqueue(ctx, e.ID, u, body)
				if err != nil {
					return err
				}
				queued, dup = queued+n, dup+1-n
			}
		}
		if s.afterEnqueue != nil {
			if err := s.afterEnqueue(); err != nil {
				return err
			}
		}
		s.log.Debug("webhooks: dispatched", "events", len(evs), "tasks", queued, "already_queued", dup)
		return nil
	})
}

// enqueue queues one delivery; 0 when its task id exists already (a
// repeated dispatch).
func (s *Service) enqueue(ctx context.Context, eventID, url string, body []byte) (int, error) {
	p, err := jsonMarshal(Payload{EventID: eventID, URL: url, Body: string(body)})
	if err != nil {
		return 0, err
	}
	_, err = s.client.EnqueueContext(ctx, asynq.NewTask(TypeDeliver, p), asynq.Queue(s.cfg.Queue),
		asynq.TaskID(TaskID(eventID, url)), asynq.MaxRetry(MaxRetry), asynq.Retention(s.cfg.TaskRetention),
		asynq.Timeout(s.cfg.RequestTimeout+5*time.Second))
	switch {
	case errors.Is(err, asynq.ErrTaskIDConflict):
		return 0, nil
	case err != nil:
		return 0, fmt.Errorf("webhooks: enqueue %s for %s: %w", eventID, Redact(url), err)
	}
	return 1, nil
}
