package backfill

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/hlsvault/hlsvault/internal/catalog"
	"github.com/hlsvault/hlsvault/internal/storage"
	"github.com/hlsvault/hlsvault/internal/synthetic"
	"github.com/hlsvault/hlsvault/internal/testenv/fixtures"
	"github.com/hlsvault/hlsvault/internal/worker"
)

var errStopDiscovery = errors.New("test: discovery interrupted")

// tinyCatalogue stores n tiny legacy titles under legacy/, plus one
// directory that is not a video id and one broken title (a missing
// segment), and returns the ids of the n titles.
func tinyCatalogue(t *testing.T, store storage.Store, n int) []string {
	t.Helper()
	ctx := context.Background()
	if err := synthetic.LegacyCatalogue(ctx, store, synthetic.LegacyTitle{Prefix: "legacy/"}, 0, n, 8); err != nil {
		t.Fatal(err)
	}
	body := "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\nseg_00000.ts\n#EXT-X-ENDLIST\n"
	for _, name := range []string{"legacy/not.an.id/index.m3u8", "legacy/broken-title/index.m3u8"} {
		if err := store.Put(ctx, name, strings.NewReader(body), int64(len(body)), storage.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	ids := make([]string, n)
	for i := range ids {
		ids[i] = synthetic.LegacyVideoID(i)
	}
	return ids
}

// TestStartStreamsAndResumes interrupts a start in the middle of its
// discovery and starts it again: the second start resumes after the last
// chunk recorded (it plans only the titles after it), the run holds every
// title exactly once, and it runs only once the start is complete.
func TestStartStreamsAndResumes(t *testing.T) {
	h := newHarness(t, fixtures.FS(t))
	ctx := context.Background()
	const n = 95
	tinyCatalogue(t, h.store, n)
	opts := StartOptions{RunOptions: RunOptions{Prefix: "legacy/"}, BatchSize: 7, Chunk: 10}

	seen := 0
	interrupted := opts
	interrupted.Each = func(Candidate) error {
		if seen++; seen > 35 {
			return errStopDiscovery
		}
		return nil
	}
	if _, err := h.client.Start(ctx, interrupted); !errors.Is(err, errStopDiscovery) {
		t.Fatalf("interrupted start: %v", err)
	}
	run, err := h.db.LatestBackfillRun(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if run.State != catalog.RunStarting {
		t.Fatalf("interrupted run is %s, want starting", run.State)
	}
	items, _ := h.db.BackfillItems(ctx, run.ID, "")
	if len(items) != 29 { // three whole chunks of 10 (less not.an.id); the fourth was never recorded
		t.Fatalf("interrupted start recorded %d items, want 29", len(items))
	}
	through, _ := h.db.DiscoveredThrough(ctx, run.ID)
	// Directory order: "broken-title/" < "not.an.id/" < "t0000000/" …
	if want := "legacy/" + synthetic.LegacyVideoID(27) + "/"; through != want {
		t.Fatalf("cursor %q, want %q", through, want)
	}
	// A starting run is not worked on: no tick keeps it alive, no batch.
	if _, batches, err := h.db.ScheduleBackfillBatches(ctx, run.ID); err != nil || len(batches) != 0 {
		t.Fatalf("a starting run was scheduled: %v %v", batches, err)
	}
	if st, err := h.client.Status(ctx, run.ID); err != nil || st.Run.State != catalog.RunStarting || st.ETASeconds != nil {
		t.Fatalf("status of a starting run: %+v %v", st, err)
	}

	res := h.start(opts)
	if !res.Resumed || res.Run == nil || res.Run.ID != run.ID || res.Run.State != catalog.RunRunning {
		t.Fatalf("second start: %+v", res)
	}
	if res.Discovered != n+2-30 {
		t.Errorf("resumed start planned %d titles, want %d (only those after the cursor)", res.Discovered, n+2-30)
	}
	if res.Summary.Titles[ActionConvert] != n || res.Summary.Titles[ActionBroken] != 1 {
		t.Errorf("resumed summary %+v, want %d to convert and 1 broken", res.Summary, n)
	}
	items, _ = h.db.BackfillItems(ctx, run.ID, "")
	var videos []string
	for _, it := range items {
		videos = append(videos, it.VideoID)
	}
	slices.Sort(videos)
	if len(videos) != n+1 || len(slices.Compact(slices.Clone(videos))) != n+1 || slices.Contains(videos, "not.an.id") {
		t.Fatalf("run holds %d items (%d distinct), want %d titles once each", len(videos), len(slices.Compact(videos)), n+1)
	}
	if again := h.start(opts); !again.Existing || again.Run.ID != run.ID {
		t.Fatalf("third start: %+v", again)
	}
}

// TestResumeContinuesInterruptedStart: `enqueue backfill resume RUN` of a
// run left starting finishes its discovery, from its recorded options.
func TestResumeContinuesInterruptedStart(t *testing.T) {
	h := newHarness(t, fixtures.FS(t))
	ctx := context.Background()
	tinyCatalogue(t, h.store, 25)
	o := StartOptions{RunOptions: RunOptions{Prefix: "legacy"}, Chunk: 5,
		Each: func(c Candidate) error {
			if c.VideoID == synthetic.LegacyVideoID(12) {
				return errStopDiscovery
			}
			return nil
		}}
	if _, err := h.client.Start(ctx, o); !errors.Is(err, errStopDiscovery) {
		t.Fatalf("interrupted start: %v", err)
	}
	run, err := h.db.LatestBackfillRun(ctx)
	if err != nil || run.State != catalog.RunStarting {
		t.Fatalf("run %+v %v", run, err)
	}
	if _, err := h.client.Pause(ctx, run.ID); !errors.Is(err, catalog.ErrBadTransition) {
		t.Errorf("pause of a starting run: %v", err)
	}
	r, err := h.client.Resume(ctx, run.ID)
	if err != nil || r.State != catalog.RunRunning {
		t.Fatalf("resume: %+v %v", r, err)
	}
	p, _ := h.db.BackfillProgressOf(ctx, run.ID)
	if p.Total != 26 || p.Counts[catalog.ItemPending] != 25 {
		t.Fatalf("after resume: %+v", p)
	}
}

// TestCancelStopsAStart: a run cancelled while it starts refuses the next
// chunk, and the start ends with that error.
func TestCancelStopsAStart(t *testing.T) {
	h := newHarness(t, fixtures.FS(t))
	ctx := context.Background()
	tinyCatalogue(t, h.store, 12)
	cancelled := false
	o := StartOptions{RunOptions: RunOptions{Prefix: "legacy"}, Chunk: 4, Each: func(Candidate) error {
		if !cancelled {
			run, err := h.db.LatestBackfillRun(ctx)
			if err != nil {
				return err
			}
			if _, err := h.client.Cancel(ctx, run.ID); err != nil {
				return err
			}
			cancelled = true
		}
		return nil
	}}
	if _, err := h.client.Start(ctx, o); !errors.Is(err, catalog.ErrBadTransition) {
		t.Fatalf("start of a cancelled run: %v", err)
	}
	run, _ := h.db.LatestBackfillRun(ctx)
	if items, _ := h.db.BackfillItems(ctx, run.ID, ""); run.State != catalog.RunCancelled || len(items) != 0 {
		t.Fatalf("cancelled run %s with %d items", run.State, len(items))
	}
}

// TestDiscoverEachOrderAndCursor: titles come in the byte order of their
// directories ("a-b/" before "a/"), for a prefix scan and for an id list
// alike, and After skips up to the cursor.
func TestDiscoverEachOrderAndCursor(t *testing.T) {
	h := newHarness(t, fixtures.FS(t))
	ctx := context.Background()
	ids := []string{"a", "a-b", "a_c", "b"}
	for _, v := range ids {
		if err := synthetic.PutLegacyTitle(ctx, h.store, synthetic.LegacyTitle{Prefix: "legacy/", Video: v}); err != nil {
			t.Fatal(err)
		}
	}
	collect := func(o RunOptions, vids []string, after string) (got, cursors []string) {
		err := DiscoverEach(ctx, h.store, h.db, o, vids, DiscoverOptions{After: after, Chunk: 2}, func(cs []Candidate, through string) error {
			for _, c := range cs {
				got = append(got, c.VideoID)
			}
			cursors = append(cursors, through)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return got, cursors
	}
	want := []string{"a-b", "a", "a_c", "b"}
	for name, o := range map[string]RunOptions{"prefix": {Prefix: "legacy/"}, "ids": {LegacyPrefix: "legacy"}} {
		got, cursors := collect(o, ids, "")
		if !slices.Equal(got, want) || !slices.Equal(cursors, []string{"legacy/a/", "legacy/b/"}) {
			t.Errorf("%s: order %v, cursors %v; want %v", name, got, cursors, want)
		}
		if got, _ := collect(o, ids, "legacy/a/"); !slices.Equal(got, want[2:]) {
			t.Errorf("%s after legacy/a/: %v, want %v", name, got, want[2:])
		}
	}
}

// TestTwoWorkersShareARun is scale-out: two worker servers, each with its
// own PostgreSQL pool and Redis connections, share one run of a few
// hundred tiny titles. Every title is converted exactly once (one job,
// one attempt, one version, and in storage only that version's objects)
// and none is lost; both servers did part of the work.
func TestTwoWorkersShareARun(t *testing.T) {
	h := newHarness(t, fixtures.FS(t))
	ctx := context.Background()
	const n = 300
	tinyCatalogue(t, h.store, n)
	res := h.start(StartOptions{RunOptions: RunOptions{Prefix: "legacy/"}, BatchSize: 5, MaxInflight: 6})

	// The second worker: another process would have its own pool and
	// connections; so does this one.
	db2, err := catalog.Open(ctx, h.dbURL, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db2.Close)
	svc2, err := New(h.svc.cfg, h.store, db2, h.keyring, asynq.RedisClientOpt{Addr: h.redis.Addr}, h.log.With("worker", "2"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc2.Close() })
	h.startWorker()
	fixtures.Worker(t, worker.Config{Queues: h.queues}, asynq.RedisClientOpt{Addr: h.redis.Addr}, h.log.With("worker", "2"),
		worker.Handlers{TypeBatch: asynq.HandlerFunc(svc2.HandleBatch), TypeTick: asynq.HandlerFunc(svc2.HandleTick)})

	st := h.waitRun(res.Run.ID, 3*time.Minute, catalog.RunDone)
	if st.Done != n || st.Failed != 1 || st.Remaining != 0 {
		t.Fatalf("status: done %d failed %d remaining %d, want %d, 1, 0", st.Done, st.Failed, st.Remaining, n)
	}
	fixtures.CheckConvertedOnce(t, h.db, h.store, n, 4, 0) // two segments, the media playlist, the master
	second := 0
	for line := range strings.Lines(h.logs.String()) {
		if strings.Contains(line, "title re-encrypted and published") && strings.Contains(line, "worker=2") {
			second++
		}
	}
	t.Logf("the second worker converted %d of %d titles", second, n)
	if second == 0 || second == n {
		t.Errorf("the second worker converted %d of %d titles: the run was not shared", second, n)
	}
}
