package catalog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"
)

// TestBackfillStartInChunks: a run starts in state starting, takes its
// items a chunk at a time (a chunk offered twice changes nothing, the
// cursor never goes back), is returned to a second begin while it starts,
// and becomes running at the end; one with nothing pending is removed.
func TestBackfillStartInChunks(t *testing.T) {
	ctx := context.Background()
	db := openTestDB(t)
	opts := json.RawMessage(`{"prefix":"legacy/"}`)
	run, created, err := db.BeginBackfillRun(ctx, opts, "fp-chunks", 10, 2)
	if err != nil || !created || run.State != RunStarting {
		t.Fatalf("begin: %+v %v %v", run, created, err)
	}
	chunk := func(from, to int) []NewBackfillItem {
		var out []NewBackfillItem
		for i := from; i < to; i++ {
			out = append(out, NewBackfillItem{VideoID: fmt.Sprintf("v%03d", i), Legacy: "legacy/x/index.m3u8", EstBytes: 100, EstSegments: 2})
		}
		return out
	}
	if err := db.AddBackfillItems(ctx, run.ID, chunk(0, 5), "legacy/v004/"); err != nil {
		t.Fatal(err)
	}
	// The same chunk again (a start interrupted before its cursor moved
	// would offer it again), then the next, with a broken title.
	if err := db.AddBackfillItems(ctx, run.ID, chunk(0, 5), "legacy/v004/"); err != nil {
		t.Fatal(err)
	}
	next := append(chunk(5, 8), NewBackfillItem{VideoID: "v008", State: ItemFailed, Error: "broken: no segment"})
	if err := db.AddBackfillItems(ctx, run.ID, next, "legacy/v008/"); err != nil {
		t.Fatal(err)
	}
	// A late chunk from a concurrent start does not move the cursor back.
	if err := db.AddBackfillItems(ctx, run.ID, nil, "legacy/v002/"); err != nil {
		t.Fatal(err)
	}
	if c, _ := db.DiscoveredThrough(ctx, run.ID); c != "legacy/v008/" {
		t.Errorf("cursor %q, want legacy/v008/", c)
	}
	again, created, err := db.BeginBackfillRun(ctx, opts, "fp-chunks", 10, 2)
	if err != nil || created || again.ID != run.ID || again.State != RunStarting {
		t.Fatalf("second begin: %+v %v %v", again, created, err)
	}
	counts, segs, bytes, err := db.BackfillStartSummary(ctx, run.ID)
	if err != nil || counts[ItemPending] != 8 || counts[ItemFailed] != 1 || segs != 16 || bytes != 800 {
		t.Fatalf("summary: %v %d %d %v", counts, segs, bytes, err)
	}
	run, deleted, err := db.FinishBackfillStart(ctx, run.ID)
	if err != nil || deleted || run.State != RunRunning {
		t.Fatalf("finish: %+v %v %v", run, deleted, err)
	}
	if err := db.AddBackfillItems(ctx, run.ID, chunk(9, 10), "legacy/v009/"); !errors.Is(err, ErrBadTransition) {
		t.Errorf("a chunk after the start ended: %v, want ErrBadTransition", err)
	}

	// Nothing to do: every title skipped. The run is removed.
	empty, _, err := db.BeginBackfillRun(ctx, opts, "fp-empty", 10, 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.AddBackfillItems(ctx, empty.ID, []NewBackfillItem{{VideoID: "k1", State: ItemSkipped, Error: "has a key"}}, "legacy/k1/"); err != nil {
		t.Fatal(err)
	}
	if _, deleted, err := db.FinishBackfillStart(ctx, empty.ID); err != nil || !deleted {
		t.Fatalf("finish with nothing to do: deleted=%v %v", deleted, err)
	}
	if _, err := db.BackfillRunByID(ctx, empty.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("the empty run is still there: %v", err)
	}
}

// TestLockBackfillStart: one holder at a time per fingerprint; released,
// the next caller gets it.
func TestLockBackfillStart(t *testing.T) {
	ctx := context.Background()
	db := openTestDB(t)
	release, ok, err := db.LockBackfillStart(ctx, "fp-lock")
	if err != nil || !ok {
		t.Fatalf("first lock: %v %v", ok, err)
	}
	if _, ok, err := db.LockBackfillStart(ctx, "fp-lock"); err != nil || ok {
		t.Fatalf("second lock while held: %v %v", ok, err)
	}
	other, ok, err := db.LockBackfillStart(ctx, "fp-other")
	if err != nil || !ok {
		t.Fatalf("another fingerprint: %v %v", ok, err)
	}
	other()
	release()
	again, ok, err := db.LockBackfillStart(ctx, "fp-lock")
	if err != nil || !ok {
		t.Fatalf("lock after release: %v %v", ok, err)
	}
	again()
}

// TestScheduleLargeRun: on a run of 100,000 items the scheduler's step
// and the status aggregates stay fast (index scans, no count of the
// pending items per step).
func TestScheduleLargeRun(t *testing.T) {
	ctx := context.Background()
	db := openTestDB(t)
	run, _, err := db.BeginBackfillRun(ctx, json.RawMessage(`{"prefix":"big/"}`), "fp-big", 10, 4)
	if err != nil {
		t.Fatal(err)
	}
	const n = 100_000
	for c := 0; c < n; c += 10_000 {
		items := make([]NewBackfillItem, 10_000)
		for i := range items {
			items[i] = NewBackfillItem{VideoID: fmt.Sprintf("t%07d", c+i), EstBytes: 1000, EstSegments: 2}
		}
		if err := db.AddBackfillItems(ctx, run.ID, items, fmt.Sprintf("big/t%07d/", c+9_999)); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := db.FinishBackfillStart(ctx, run.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pool().Exec(ctx, `analyze backfill_items`); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, batches, err := db.ScheduleBackfillBatches(ctx, run.ID)
	schedule := time.Since(start)
	if err != nil || len(batches) != 4 || len(batches[0].Items) != 10 {
		t.Fatalf("schedule: %d batches, %v", len(batches), err)
	}
	start = time.Now()
	_, batches, err = db.ScheduleBackfillBatches(ctx, run.ID) // all four outstanding: nothing to do
	again := time.Since(start)
	if err != nil || len(batches) != 0 {
		t.Fatalf("second schedule: %d batches, %v", len(batches), err)
	}
	start = time.Now()
	p, err := db.BackfillProgressOf(ctx, run.ID)
	progress := time.Since(start)
	if err != nil || p.Total != n || p.Counts[ItemQueued] != 40 || p.BytesRemaining != n*1000 {
		t.Fatalf("progress: %+v %v", p, err)
	}
	// Half the run worked on: the busy-time pass merges 50,000 intervals.
	if _, err := db.Pool().Exec(ctx, `update backfill_items set state = 'done', bytes = 1000, segments = 2,
			started_at = now() - make_interval(secs => id % 50000), finished_at = now() - make_interval(secs => id % 50000) + interval '1.5 s'
		where run_id = $1 and state = 'pending' and id % 2 = 0`, run.ID); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	p, err = db.BackfillProgressOf(ctx, run.ID)
	worked := time.Since(start)
	if err != nil || p.Counts[ItemDone] < n/2-40 || p.BusySeconds <= 0 {
		t.Fatalf("progress: %+v %v", p, err)
	}
	progress = max(progress, worked)
	t.Logf("100,000 items: schedule %v, idle schedule %v, progress %v (half done: %v)", schedule, again, progress, worked)
	// Generous bounds for a shared machine; a sequential count of the run
	// per step would not break them, a pathological plan would.
	if schedule > 2*time.Second || again > 2*time.Second || progress > 3*time.Second {
		t.Errorf("too slow on 100,000 items: schedule %v, idle schedule %v, progress %v", schedule, again, progress)
	}
}

// TestEachBackfillItem: a run's items in id order, page by page (the last
// page short or empty), filtered by state, and fn's error stops it.
func TestEachBackfillItem(t *testing.T) {
	ctx := context.Background()
	db := openTestDB(t)
	run, _, err := db.BeginBackfillRun(ctx, json.RawMessage(`{"prefix":"each/"}`), "fp-each", 10, 2)
	if err != nil {
		t.Fatal(err)
	}
	var items []NewBackfillItem
	for i := range 7 {
		it := NewBackfillItem{VideoID: fmt.Sprintf("e%d", i), EstBytes: 1, EstSegments: 1}
		if i%3 == 0 {
			it.State, it.Error = ItemSkipped, "has a key"
		}
		items = append(items, it)
	}
	if err := db.AddBackfillItems(ctx, run.ID, items, "each/e6/"); err != nil {
		t.Fatal(err)
	}
	list := func(state string, page int) []string {
		t.Helper()
		var ids []string
		if err := db.EachBackfillItem(ctx, run.ID, state, page, func(it BackfillItem) error {
			ids = append(ids, it.VideoID)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return ids
	}
	all, _ := db.BackfillItems(ctx, run.ID, "")
	for _, page := range []int{1, 2, 7, 1000} {
		if got := list("", page); fmt.Sprint(got) != "[e0 e1 e2 e3 e4 e5 e6]" || len(all) != len(got) {
			t.Errorf("page %d: %v", page, got)
		}
	}
	if got := list(ItemSkipped, 2); fmt.Sprint(got) != "[e0 e3 e6]" {
		t.Errorf("skipped: %v", got)
	}
	stop := errors.New("stop")
	n := 0
	err = db.EachBackfillItem(ctx, run.ID, "", 2, func(BackfillItem) error {
		if n++; n == 3 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || n != 3 {
		t.Errorf("stopped after %d: %v", n, err)
	}
}
