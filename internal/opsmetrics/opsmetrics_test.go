package opsmetrics

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/hlsvault/hlsvault/internal/catalog"
	"github.com/hlsvault/hlsvault/internal/testenv"
	"github.com/hlsvault/hlsvault/internal/testenv/fixtures"
	"github.com/hlsvault/hlsvault/internal/worker"
	"github.com/hlsvault/hlsvault/jobs"
)

// expected renders the exposition of the three families for the given
// values: queue → [pending active scheduled retry archived], queue → in
// flight, run → state → titles.
func expected(queues []string, tasks map[string][5]int, inflight map[string]int, runs map[int64]map[string]int) string {
	var b strings.Builder
	b.WriteString("# HELP hlsvault_backfill_items Titles of each running backfill run by state.\n# TYPE hlsvault_backfill_items gauge\n")
	for id, counts := range runs {
		for _, s := range catalog.BackfillItemStates() {
			fmt.Fprintf(&b, "hlsvault_backfill_items{run=\"%d\",state=\"%s\"} %d\n", id, s, counts[s])
		}
	}
	b.WriteString("# HELP hlsvault_inflight_tasks Tasks this worker process is running now, by the queue they came from.\n# TYPE hlsvault_inflight_tasks gauge\n")
	for _, q := range queues {
		fmt.Fprintf(&b, "hlsvault_inflight_tasks{queue=\"%s\"} %d\n", q, inflight[q])
	}
	b.WriteString("# HELP hlsvault_queue_tasks Tasks in the queue by state, across every worker (asynq).\n# TYPE hlsvault_queue_tasks gauge\n")
	for _, q := range queues {
		for i, s := range queueStates() {
			fmt.Fprintf(&b, "hlsvault_queue_tasks{queue=\"%s\",state=\"%s\"} %d\n", q, s, tasks[q][i])
		}
	}
	return b.String()
}

var families = []string{"hlsvault_queue_tasks", "hlsvault_inflight_tasks", "hlsvault_backfill_items"}

// TestCollector enqueues a known set of tasks on real Redis (a test queue
// prefix), runs one of them in a real worker, records backfill runs in a
// real catalog, and scrapes.
func TestCollector(t *testing.T) {
	ctx := context.Background()
	redis := fixtures.Redis(t)
	db := fixtures.Catalog(t)
	names := jobs.QueueNames(testenv.Name("q"))
	unused := names.Transcode + "-webhooks" // served, never used: zeros
	queues := []string{names.Background, names.Transcode, unused}

	insp := asynq.NewInspector(redis)
	defer insp.Close()
	client := asynq.NewClient(redis)
	defer client.Close()

	started, release := make(chan struct{}, 1), make(chan struct{})
	srv, err := worker.New(worker.Config{Queues: names, Concurrency: 1, RetryDelay: func(int) time.Duration { return time.Hour },
		LogLevel: asynq.ErrorLevel, ShutdownTimeout: 5 * time.Second}, redis, testenv.Logger(t), worker.Handlers{
		"ops:fail": asynq.HandlerFunc(func(context.Context, *asynq.Task) error { return errors.New("boom") }),
		"ops:block": asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
			started <- struct{}{}
			select {
			case <-release:
			case <-ctx.Done():
			}
			return nil
		}),
		"ops:noop": asynq.HandlerFunc(func(context.Context, *asynq.Task) error { return nil }),
	})
	if err != nil {
		t.Fatal(err)
	}
	c := New(Config{Queues: queues, Inspector: insp, InFlight: srv.InFlight, Backfill: db, Timeout: 5 * time.Second})

	// Before anything: every queue and state is there, at 0.
	if err := testutil.CollectAndCompare(c, strings.NewReader(expected(queues, nil, nil, nil)), families...); err != nil {
		t.Fatalf("first scrape: %v", err)
	}

	enqueue := func(queue, typ string, opts ...asynq.Option) *asynq.TaskInfo {
		t.Helper()
		info, err := client.Enqueue(asynq.NewTask(typ, nil), append(opts, asynq.Queue(queue), asynq.MaxRetry(3))...)
		if err != nil {
			t.Fatal(err)
		}
		return info
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer func() { close(release); cancel(); srv.Shutdown() }()
	// A failing background task waits for its retry (an hour).
	enqueue(names.Background, "ops:fail")
	if err := srv.Start(runCtx); err != nil {
		t.Fatal(err)
	}
	// asynq moves the task to retry after the handler returns and offers
	// no event for it: poll the condition, with a deadline.
	deadline := time.Now().Add(30 * time.Second)
	for {
		info, err := insp.GetQueueInfo(names.Background)
		if err == nil && info.Retry == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the failed task never reached retry: %+v %v", info, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// A transcode task runs (and holds the only slot); three wait, two are
	// scheduled for later; a background task is archived.
	enqueue(names.Transcode, "ops:block")
	<-started
	for range 3 {
		enqueue(names.Transcode, "ops:noop")
	}
	for range 2 {
		enqueue(names.Transcode, "ops:noop", asynq.ProcessIn(time.Hour))
	}
	arch := enqueue(names.Background, "ops:noop")
	if err := insp.ArchiveTask(names.Background, arch.ID); err != nil {
		t.Fatal(err)
	}

	// Backfill: a running run with titles in several states, and a paused
	// one, which is not reported.
	running, _, err := db.CreateBackfillRun(ctx, []byte(`{"prefix":"a/"}`), "fp-a", 10, 2, []catalog.NewBackfillItem{
		{VideoID: "a1"}, {VideoID: "a2"}, {VideoID: "a3", State: catalog.ItemFailed, Error: "broken"},
		{VideoID: "a4", State: catalog.ItemSkipped, Error: "has a key"},
	})
	if err != nil {
		t.Fatal(err)
	}
	paused, _, err := db.CreateBackfillRun(ctx, []byte(`{"prefix":"b/"}`), "fp-b", 10, 2, []catalog.NewBackfillItem{{VideoID: "b1"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.SetBackfillRunState(ctx, paused.ID, []string{catalog.RunRunning}, catalog.RunPaused); err != nil {
		t.Fatal(err)
	}
	if _, batches, err := db.ScheduleBackfillBatches(ctx, running.ID); err != nil || len(batches) != 1 {
		t.Fatalf("schedule: %v %v", batches, err)
	}

	want := expected(queues,
		map[string][5]int{names.Transcode: {3, 1, 2, 0, 0}, names.Background: {0, 0, 0, 1, 1}},
		map[string]int{names.Transcode: 1},
		map[int64]map[string]int{running.ID: {catalog.ItemQueued: 2, catalog.ItemFailed: 1, catalog.ItemSkipped: 1}})
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), families...); err != nil {
		t.Fatalf("scrape: %v", err)
	}
	if n := testutil.ToFloat64(c.errors.WithLabelValues(sourceRedis)) + testutil.ToFloat64(c.errors.WithLabelValues(sourcePostgres)); n != 0 {
		t.Errorf("scrape errors: %v", n)
	}
}

type stuckInspector struct{ unblock chan struct{} }

func (s stuckInspector) Queues() ([]string, error) { <-s.unblock; return nil, errors.New("late") }
func (s stuckInspector) GetQueueInfo(string) (*asynq.QueueInfo, error) {
	return nil, errors.New("unreachable")
}

// TestCollectorTimeout: a Redis that does not answer costs the scrape at
// most the timeout; the queue series are left out, the error is counted,
// and a scrape while the read is still pending does not start another.
func TestCollectorTimeout(t *testing.T) {
	stuck := stuckInspector{unblock: make(chan struct{})}
	defer close(stuck.unblock)
	c := New(Config{Queues: []string{"q"}, Inspector: stuck, InFlight: func() map[string]int { return nil }, Timeout: 50 * time.Millisecond})
	want := "# HELP hlsvault_inflight_tasks Tasks this worker process is running now, by the queue they came from.\n" +
		"# TYPE hlsvault_inflight_tasks gauge\nhlsvault_inflight_tasks{queue=\"q\"} 0\n"
	for i := 1; i <= 2; i++ {
		if err := testutil.CollectAndCompare(c, strings.NewReader(want), families...); err != nil {
			t.Fatalf("scrape %d: %v", i, err)
		}
		if n := testutil.ToFloat64(c.errors.WithLabelValues(sourceRedis)); n != float64(i) {
			t.Fatalf("scrape %d: redis errors = %v", i, n)
		}
	}
}
