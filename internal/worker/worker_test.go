package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/hlsvault/hlsvault/internal/testenv"
	"github.com/hlsvault/hlsvault/jobs"
)

func TestRetryDelay(t *testing.T) {
	t.Parallel()
	for n, want := range map[int]time.Duration{0: 10 * time.Second, 1: 20 * time.Second, 3: 80 * time.Second, 20: 10 * time.Minute} {
		d := RetryDelay(n)
		if d < want*8/10 || d > want*12/10 {
			t.Errorf("RetryDelay(%d) = %v, want %v ±20%%", n, d, want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	q := jobs.QueueNames("x")
	for name, cfg := range map[string]Config{
		"no queues":        {},
		"same queue":       {Queues: jobs.Queues{Transcode: "a", Background: "a"}},
		"negative":         {Queues: q, Concurrency: -1},
		"negative timeout": {Queues: q, ShutdownTimeout: -time.Second},
	} {
		if _, err := New(cfg, asynq.RedisClientOpt{}, slog.New(slog.DiscardHandler), nil); err == nil {
			t.Errorf("%s: New accepted %+v", name, cfg)
		}
	}
}

type bundle struct {
	redis  asynq.RedisClientOpt
	queues jobs.Queues
	client *asynq.Client
	insp   *asynq.Inspector
	logs   *testenv.SyncBuffer
	log    *slog.Logger
}

func setup(t *testing.T) *bundle {
	t.Helper()
	b := &bundle{redis: asynq.RedisClientOpt{Addr: testenv.RedisAddr(t)}, queues: jobs.QueueNames(testenv.Name("w")), logs: &testenv.SyncBuffer{}}
	b.client = asynq.NewClient(b.redis)
	t.Cleanup(func() { b.client.Close() })
	b.insp = asynq.NewInspector(b.redis)
	t.Cleanup(func() { b.insp.Close() })
	b.log = slog.New(slog.NewJSONHandler(b.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	return b
}

func (b *bundle) enqueue(t *testing.T, typ, queue string) string {
	t.Helper()
	info, err := b.client.Enqueue(asynq.NewTask(typ, nil), asynq.Queue(queue), asynq.MaxRetry(3), asynq.Timeout(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	return info.ID
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// run runs srv until stop, which returns when Run has.
func run(t *testing.T, srv *Server) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	return func() {
		t.Helper()
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

// records returns the JSON log records with message msg.
func records(t *testing.T, logs, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(logs), "\n") {
		if line == "" {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

// TestShutdownWaitsForCleanup: a shutdown cancels a running handler at
// once, waits for its cleanup to finish, and puts the task back without
// spending a retry.
func TestShutdownWaitsForCleanup(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var started, cleaned atomic.Bool
	srv, err := New(Config{Queues: b.queues, ShutdownTimeout: 5 * time.Second}, b.redis, b.log, Handlers{
		jobs.TypeTranscode: asynq.HandlerFunc(func(ctx context.Context, _ *asynq.Task) error {
			started.Store(true)
			<-ctx.Done()
			time.Sleep(300 * time.Millisecond) // ffmpeg killed, temp dir removed
			cleaned.Store(true)
			return ctx.Err()
		}),
	})
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, srv)
	id := b.enqueue(t, jobs.TypeTranscode, b.queues.Transcode)
	waitFor(t, "the handler to start", started.Load)
	stop()
	if !cleaned.Load() {
		t.Fatal("Run returned before the handler's cleanup finished")
	}
	info, err := b.insp.GetTaskInfo(b.queues.Transcode, id)
	if err != nil {
		t.Fatal(err)
	}
	if info.Retried != 0 || (info.State != asynq.TaskStatePending && info.State != asynq.TaskStateRetry) {
		t.Errorf("after shutdown: state %v, retried %d; want back in the queue, no retry spent", info.State, info.Retried)
	}
	if recs := records(t, b.logs.String(), "task done"); len(recs) != 1 || recs[0]["outcome"] != OutcomeCanceled {
		t.Errorf("task done lines: %v", recs)
	}
}

// TestTaskLogger: every handler finds a logger with the task's type, id,
// queue and retry count, and every task ends with one line that says how.
func TestTaskLogger(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var n atomic.Int32
	handler := func(ctx context.Context, task *asynq.Task) error {
		Logger(ctx, nil).Info("inside")
		defer n.Add(1)
		if task.Type() == "fail" {
			return fmt.Errorf("no luck: %w", asynq.SkipRetry)
		}
		return nil
	}
	srv, err := New(Config{Queues: b.queues}, b.redis, b.log, Handlers{
		jobs.TypeTranscode: asynq.HandlerFunc(handler), "fail": asynq.HandlerFunc(handler)})
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, srv)
	okID := b.enqueue(t, jobs.TypeTranscode, b.queues.Transcode)
	failID := b.enqueue(t, "fail", b.queues.Background)
	waitFor(t, "both tasks", func() bool { return n.Load() == 2 })
	waitFor(t, "both end lines", func() bool { return len(records(t, b.logs.String(), "task done")) == 2 })
	stop()

	want := map[string]struct{ typ, queue, outcome string }{
		okID:   {jobs.TypeTranscode, b.queues.Transcode, OutcomeOK},
		failID: {"fail", b.queues.Background, OutcomeSkipRetry},
	}
	logs := b.logs.String()
	for _, msg := range []string{"inside", "task done"} {
		recs := records(t, logs, msg)
		if len(recs) != 2 {
			t.Fatalf("%d %q lines, want 2:\n%s", len(recs), msg, logs)
		}
		for _, rec := range recs {
			task, _ := rec["asynq"].(map[string]any)
			id, _ := task["id"].(string)
			w, ok := want[id]
			if !ok || task["type"] != w.typ || task["queue"] != w.queue || task["retry"] != 0.0 {
				t.Errorf("%q: task attributes %v, want id in %v", msg, task, want)
			}
			if msg == "task done" {
				if _, secs := rec["seconds"].(float64); rec["outcome"] != w.outcome || !secs {
					t.Errorf("task done: %v, want outcome %s and its seconds", rec, w.outcome)
				}
				if w.outcome != OutcomeOK && !strings.Contains(fmt.Sprint(rec["err"]), "no luck") {
					t.Errorf("task done without the error: %v", rec)
				}
			}
		}
	}
}

func TestLoggerFallback(t *testing.T) {
	t.Parallel()
	fb := slog.New(slog.DiscardHandler)
	if Logger(context.Background(), fb) != fb {
		t.Error("outside a task Logger must return the fallback")
	}
}

// TestDrain: Drain stops taking tasks, lets the running one finish under
// a context that nothing cancels, and returns once it has; a task enqueued
// meanwhile stays queued. Shutdown then has nothing to requeue.
func TestDrain(t *testing.T) {
	t.Parallel()
	b := setup(t)
	started := make(chan string, 2)
	release := make(chan struct{})
	srv, err := New(Config{Queues: b.queues, ShutdownTimeout: 5 * time.Second}, b.redis, b.log, Handlers{
		jobs.TypeTranscode: asynq.HandlerFunc(func(ctx context.Context, _ *asynq.Task) error {
			id, _ := asynq.GetTaskID(ctx)
			started <- id
			select {
			case <-release:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	first := b.enqueue(t, jobs.TypeTranscode, b.queues.Transcode)
	if id := <-started; id != first {
		t.Fatalf("started %s, want %s", id, first)
	}
	drained := make(chan error, 1)
	go func() { drained <- srv.Drain(context.Background()) }()
	waitFor(t, "the draining line", func() bool { return len(records(t, b.logs.String(), "draining: 1 tasks running")) == 1 })
	if !srv.Draining() || srv.Running() != 1 {
		t.Fatalf("draining %v, running %d", srv.Draining(), srv.Running())
	}
	second := b.enqueue(t, jobs.TypeTranscode, b.queues.Transcode)
	select {
	case err := <-drained:
		t.Fatalf("Drain returned while a task runs: %v", err)
	default:
	}
	close(release)
	if err := <-drained; err != nil {
		t.Fatal(err)
	}
	if len(records(t, b.logs.String(), "drained")) != 1 {
		t.Errorf("no drained line:\n%s", b.logs.String())
	}
	srv.Shutdown()
	select {
	case id := <-started:
		t.Fatalf("task %s started while draining", id)
	default:
	}
	if info, err := b.insp.GetTaskInfo(b.queues.Transcode, first); err == nil {
		t.Errorf("the first task is still in Redis: %v %d", info.State, info.Retried)
	}
	if info, err := b.insp.GetTaskInfo(b.queues.Transcode, second); err != nil || info.State != asynq.TaskStatePending {
		t.Errorf("the second task: %+v %v, want pending", info, err)
	}
	if recs := records(t, b.logs.String(), "task done"); len(recs) != 1 || recs[0]["outcome"] != OutcomeOK {
		t.Errorf("task done lines: %v", recs)
	}
}

// TestDrainInterrupted: a Drain whose context ends returns its error with
// the task still running; Shutdown then cancels and requeues it.
func TestDrainInterrupted(t *testing.T) {
	t.Parallel()
	b := setup(t)
	started := make(chan struct{})
	srv, err := New(Config{Queues: b.queues, ShutdownTimeout: 5 * time.Second}, b.redis, b.log, Handlers{
		jobs.TypeTranscode: asynq.HandlerFunc(func(ctx context.Context, _ *asynq.Task) error {
			close(started)
			<-ctx.Done()
			return ctx.Err()
		}),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	id := b.enqueue(t, jobs.TypeTranscode, b.queues.Transcode)
	<-started
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := srv.Drain(ctx); err == nil || srv.Running() != 1 {
		t.Fatalf("Drain with a done context: %v, running %d", err, srv.Running())
	}
	srv.Shutdown()
	info, err := b.insp.GetTaskInfo(b.queues.Transcode, id)
	if err != nil || info.Retried != 0 || (info.State != asynq.TaskStatePending && info.State != asynq.TaskStateRetry) {
		t.Errorf("after shutdown: %+v %v; want back in the queue, no retry spent", info, err)
	}
}

// TestTaskArrivingWhileDrainingIsPutBack: a task that asynq hands over
// once Drain has begun (dequeued while Stop ran) does not run; its error
// is an interruption, so asynq puts it back without spending a retry.
func TestTaskArrivingWhileDrainingIsPutBack(t *testing.T) {
	t.Parallel()
	var ran atomic.Bool
	srv, err := New(Config{Queues: jobs.QueueNames("x")}, asynq.RedisClientOpt{}, slog.New(slog.DiscardHandler), Handlers{
		jobs.TypeTranscode: asynq.HandlerFunc(func(context.Context, *asynq.Task) error { ran.Store(true); return nil }),
	})
	if err != nil {
		t.Fatal(err)
	}
	srv.draining.Store(true)
	err = srv.mux.ProcessTask(context.Background(), asynq.NewTask(jobs.TypeTranscode, nil))
	if !errors.Is(err, errDraining) || ran.Load() || srv.Running() != 0 {
		t.Fatalf("err %v, ran %v, running %d; want put back unrun", err, ran.Load(), srv.Running())
	}
}

// TestStrictPriority: with tasks waiting in every queue, one worker serves
// high, then normal, then low transcodes, then the background, whatever
// the order they were enqueued in.
func TestStrictPriority(t *testing.T) {
	t.Parallel()
	b := setup(t)
	q := b.queues
	order := []string{q.Background, q.TranscodeLow, q.Transcode, q.TranscodeHigh, q.Background, q.TranscodeLow, q.Transcode, q.TranscodeHigh}
	for _, queue := range order {
		if _, err := b.client.Enqueue(asynq.NewTask(jobs.TypeTranscode, []byte(queue)), asynq.Queue(queue)); err != nil {
			t.Fatal(err)
		}
	}
	var (
		mu  sync.Mutex
		got []string
	)
	srv, err := New(Config{Queues: q, Concurrency: 1}, b.redis, b.log, Handlers{
		jobs.TypeTranscode: asynq.HandlerFunc(func(_ context.Context, task *asynq.Task) error {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, string(task.Payload()))
			return nil
		}),
	})
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, srv)
	waitFor(t, "every task", func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == len(order) })
	stop()
	want := []string{q.TranscodeHigh, q.TranscodeHigh, q.Transcode, q.Transcode, q.TranscodeLow, q.TranscodeLow, q.Background, q.Background}
	if !slices.Equal(got, want) {
		t.Fatalf("served %v\nwant     %v", got, want)
	}
}
