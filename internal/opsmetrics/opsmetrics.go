// Package opsmetrics is the worker's Prometheus collector of what an
// operator alerts on, read at scrape time: queue depth by task state for
// every queue the worker serves (from asynq's Inspector), this process's
// in-flight tasks by queue, and the progress of running backfill runs
// (from the catalog).
//
// Every series an alert may name is present from the first scrape: a queue
// that was never used reports 0 for every state, and a queue with no task
// running here reports 0 in flight. A source that cannot be read within
// the scrape timeout leaves its series out of that scrape and counts an
// error in hlsvault_metrics_scrape_errors_total{source}; the rest of the
// scrape is served.
package opsmetrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hlsvault/hlsvault/internal/catalog"
)

// QueueInspector is the part of *asynq.Inspector the collector reads.
type QueueInspector interface {
	Queues() ([]string, error)
	GetQueueInfo(queue string) (*asynq.QueueInfo, error)
}

// BackfillSource is the part of *catalog.DB the collector reads.
type BackfillSource interface {
	BackfillProgressByRun(ctx context.Context) (map[int64]map[string]int, error)
}

// Config is what the collector reads. A nil source is not reported.
type Config struct {
	// Queues are the queues the worker serves (every one is reported).
	Queues    []string
	Inspector QueueInspector
	// InFlight returns this process's running tasks by queue
	// (worker.Server.InFlight).
	InFlight func() map[string]int
	Backfill BackfillSource
	// Timeout bounds the reading of each source per scrape (default 2s).
	Timeout time.Duration
	Log     *slog.Logger
}

// queueStates are the task states hlsvault_queue_tasks reports, in the
// order of queueCounts' arrays.
func queueStates() [5]string {
	return [5]string{"pending", "active", "scheduled", "retry", "archived"}
}

// Scrape error sources.
const (
	sourceRedis    = "redis"
	sourcePostgres = "postgres"
)

// Collector implements prometheus.Collector.
type Collector struct {
	cfg                  Config
	queueTasks, inFlight *prometheus.Desc
	backfillItems        *prometheus.Desc
	errors               *prometheus.CounterVec
	// Set while a read of the source is still running (one that outlived
	// its timeout): the next scrape does not start another.
	redisBusy, pgBusy atomic.Bool
}

// New builds the collector; register it on the worker's registry.
func New(cfg Config) *Collector {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	cfg.Queues = slices.Compact(slices.Sorted(slices.Values(cfg.Queues)))
	c := &Collector{
		cfg: cfg,
		queueTasks: prometheus.NewDesc("hlsvault_queue_tasks",
			"Tasks in the queue by state, across every worker (asynq).", []string{"queue", "state"}, nil),
		inFlight: prometheus.NewDesc("hlsvault_inflight_tasks",
			"Tasks this worker process is running now, by the queue they came from.", []string{"queue"}, nil),
		backfillItems: prometheus.NewDesc("hlsvault_backfill_items",
			"Titles of each running backfill run by state.", []string{"run", "state"}, nil),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hlsvault_metrics_scrape_errors_total",
			Help: "Scrapes that could not read a source (redis: queue depth; postgres: backfill progress) in time.",
		}, []string{"source"}),
	}
	for _, s := range []string{sourceRedis, sourcePostgres} {
		c.errors.WithLabelValues(s)
	}
	return c
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.queueTasks
	ch <- c.inFlight
	ch <- c.backfillItems
	c.errors.Describe(ch)
}

// Collect implements prometheus.Collector: the sources are read in
// parallel, each within the timeout.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	type queues struct {
		counts map[string][5]int
		err    error
	}
	type runs struct {
		counts map[int64]map[string]int
		err    error
	}
	var (
		qc = make(chan queues, 1)
		rc = make(chan runs, 1)
	)
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.Timeout)
	defer cancel()
	if c.cfg.Inspector != nil && c.redisBusy.CompareAndSwap(false, true) {
		go func() {
			defer c.redisBusy.Store(false)
			counts, err := c.queueCounts()
			qc <- queues{counts, err}
		}()
	} else if c.cfg.Inspector != nil {
		qc <- queues{err: errors.New("the previous read has not returned")}
	}
	if c.cfg.Backfill != nil && c.pgBusy.CompareAndSwap(false, true) {
		go func() {
			defer c.pgBusy.Store(false)
			counts, err := c.cfg.Backfill.BackfillProgressByRun(ctx)
			rc <- runs{counts, err}
		}()
	} else if c.cfg.Backfill != nil {
		rc <- runs{err: errors.New("the previous read has not returned")}
	}

	if c.cfg.InFlight != nil {
		n := c.cfg.InFlight()
		for _, q := range c.cfg.Queues {
			ch <- prometheus.MustNewConstMetric(c.inFlight, prometheus.GaugeValue, float64(n[q]), q)
		}
	}
	if c.cfg.Inspector != nil {
		select {
		case r := <-qc:
			if r.err != nil {
				c.fail(sourceRedis, r.err)
				break
			}
			for _, q := range c.cfg.Queues {
				counts := r.counts[q]
				for i, s := range queueStates() {
					ch <- prometheus.MustNewConstMetric(c.queueTasks, prometheus.GaugeValue, float64(counts[i]), q, s)
				}
			}
		case <-ctx.Done():
			c.fail(sourceRedis, fmt.Errorf("no answer within %v", c.cfg.Timeout))
		}
	}
	if c.cfg.Backfill != nil {
		select {
		case r := <-rc:
			if r.err != nil {
				c.fail(sourcePostgres, r.err)
				break
			}
			for id, counts := range r.counts {
				run := strconv.FormatInt(id, 10)
				for _, s := range catalog.BackfillItemStates() {
					ch <- prometheus.MustNewConstMetric(c.backfillItems, prometheus.GaugeValue, float64(counts[s]), run, s)
				}
			}
		case <-ctx.Done():
			c.fail(sourcePostgres, fmt.Errorf("no answer within %v", c.cfg.Timeout))
		}
	}
	c.errors.Collect(ch)
}

func (c *Collector) fail(source string, err error) {
	c.errors.WithLabelValues(source).Inc()
	c.cfg.Log.Warn("metrics: cannot read "+source, "err", err)
}

// queueCounts reads each served queue's counts, in queueStates order. A
// queue asynq does not know yet (nothing was ever enqueued to it) has
// none.
func (c *Collector) queueCounts() (map[string][5]int, error) {
	known, err := c.cfg.Inspector.Queues()
	if err != nil {
		return nil, fmt.Errorf("opsmetrics: queues: %w", err)
	}
	out := map[string][5]int{}
	for _, q := range c.cfg.Queues {
		if !slices.Contains(known, q) {
			continue
		}
		info, err := c.cfg.Inspector.GetQueueInfo(q)
		if err != nil {
			return nil, fmt.Errorf("opsmetrics: queue %s: %w", q, err)
		}
		out[q] = [5]int{info.Pending, info.Active, info.Scheduled, info.Retry, info.Archived}
	}
	return out, nil
}
