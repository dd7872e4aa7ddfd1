package gc

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hlsvault/hlsvault/internal/backfill"
	"github.com/hlsvault/hlsvault/internal/catalog"
	"github.com/hlsvault/hlsvault/internal/storage"
	"github.com/hlsvault/hlsvault/internal/testenv"
	"github.com/hlsvault/hlsvault/internal/testenv/fixtures"
)

type fixture struct {
	t     *testing.T
	db    *catalog.DB
	store *storage.FS
	n     int
}

func (f *fixture) attempt(video, task string) catalog.Attempt {
	f.t.Helper()
	ctx := context.Background()
	if _, _, err := f.db.UpsertJob(ctx, video, "uploads/"+task, task); err != nil {
		f.t.Fatal(err)
	}
	a, err := f.db.StartAttempt(ctx, task)
	if err != nil {
		f.t.Fatal(err)
	}
	for _, name := range []string{"master.m3u8", "240p/index.m3u8", "240p/seg_00000.ts"} {
		if err := f.store.Put(ctx, a.Prefix+name, strings.NewReader("x"), 1, storage.PutOptions{}); err != nil {
			f.t.Fatal(err)
		}
	}
	return a
}

func (f *fixture) publish(a catalog.Attempt) bool {
	f.t.Helper()
	f.n++
	ok, err := f.db.Publish(context.Background(), catalog.PublishParams{
		Attempt: a, Master: a.Prefix + "master.m3u8",
		Keys: []catalog.WrappedKey{{KeyID: fmt.Sprintf("k_%032x", f.n), KEKID: "kek_x", Wrapped: make([]byte, 45)}},
	})
	if err != nil {
		f.t.Fatal(err)
	}
	return ok
}

func (f *fixture) exists(prefix string) bool {
	_, err := f.store.Stat(context.Background(), prefix+"master.m3u8")
	return err == nil
}

func TestCollector(t *testing.T) {
	ctx := context.Background()
	db, fs := fixtures.Catalog(t), fixtures.FS(t)
	f := &fixture{t: t, db: db, store: fs}

	// a: v1 published, then retired by v2.
	a1 := f.attempt("a", "ta1")
	f.publish(a1)
	a2 := f.attempt("a", "ta2")
	f.publish(a2)
	// b: a crashed attempt (v1, pending) and the retry still running (v2).
	f.attempt("b", "tb")
	b2, err := db.StartAttempt(ctx, "tb")
	if err != nil {
		t.Fatal(err)
	}
	f.store.Put(ctx, b2.Prefix+"master.m3u8", strings.NewReader("x"), 1, storage.PutOptions{})
	// c: a duplicate delivery that lost (superseded) and the winner.
	c1 := f.attempt("c", "tc")
	c2, _ := db.StartAttempt(ctx, "tc")
	f.store.Put(ctx, c2.Prefix+"master.m3u8", strings.NewReader("x"), 1, storage.PutOptions{})
	f.publish(c2)
	if f.publish(c1) {
		t.Fatal("duplicate published")
	}

	log := testenv.Logger(t)
	collector := func(cfg Config) *Collector {
		t.Helper()
		c, err := New(cfg, db, fs, nil, log)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	// Nothing is old enough yet.
	res, err := collector(Config{Grace: time.Hour}).RunOnce(ctx)
	if err != nil || res.Versions != 0 {
		t.Fatalf("within grace: %+v %v", res, err)
	}
	time.Sleep(20 * time.Millisecond)
	res, err = collector(Config{Grace: 10 * time.Millisecond, BatchSize: 1}).RunOnce(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Versions != 3 || res.Objects != 9 {
		t.Errorf("collected %+v, want 3 versions (a v1, b v1, c v1) and 9 objects", res)
	}
	for prefix, want := range map[string]bool{
		"hls/a/v1/": false, "hls/a/v2/": true, // current stays
		"hls/b/v1/": false, "hls/b/v2/": true, // the running attempt stays
		"hls/c/v1/": false, "hls/c/v2/": true,
	} {
		if got := f.exists(prefix); got != want {
			t.Errorf("%s exists = %v, want %v", prefix, got, want)
		}
	}
	for _, v := range []string{"a", "c"} {
		cur, err := db.CurrentVersion(ctx, v)
		if err != nil || cur.Version != 2 {
			t.Errorf("%s: current version damaged: %+v %v", v, cur, err)
		}
	}
	if _, _, _, err := db.KeyByID(ctx, fmt.Sprintf("k_%032x", 1)); err == nil {
		t.Error("the retired version's key survived collection")
	}
	// A second pass has nothing to do.
	if res, err := collector(Config{Grace: 10 * time.Millisecond}).RunOnce(ctx); err != nil || res.Versions != 0 {
		t.Errorf("second pass: %+v %v", res, err)
	}
}

// blockingPurger is a legacy step that records how many passes run it at
// once, and holds the first one until released.
type blockingPurger struct {
	mu          sync.Mutex
	calls, busy int
	maxBusy     int
	entered     chan struct{}
	release     chan struct{}
}

func (p *blockingPurger) PurgeLegacy(ctx context.Context, grace time.Duration, limit int) (int, int, error) {
	p.mu.Lock()
	p.calls++
	p.busy++
	p.maxBusy = max(p.maxBusy, p.busy)
	first := p.calls == 1
	p.mu.Unlock()
	if first {
		close(p.entered)
		<-p.release
	}
	p.mu.Lock()
	p.busy--
	p.mu.Unlock()
	return 1, 2, nil
}

var _ LegacyPurger = (*backfill.Purger)(nil)

// TestLegacyPurgeUnderLock: the legacy step runs under the collector's
// lock, so of two workers' collectors only one purges at a time; the other
// skips its pass and says so.
func TestLegacyPurgeUnderLock(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, fs, log := fixtures.Catalog(t), fixtures.FS(t), testenv.Logger(t)
	p := &blockingPurger{entered: make(chan struct{}), release: make(chan struct{})}
	var cs [2]*Collector
	for i := range cs {
		c, err := New(Config{Legacy: p}, db, fs, nil, log)
		if err != nil {
			t.Fatal(err)
		}
		cs[i] = c
	}
	first := make(chan Result, 1)
	go func() {
		res, err := cs[0].RunOnce(ctx)
		if err != nil {
			t.Error(err)
		}
		first <- res
	}()
	<-p.entered
	res, err := cs[1].RunOnce(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Ran || res.LegacyTitles != 0 {
		t.Errorf("second collector while the first purges: %+v, want a skipped pass", res)
	}
	close(p.release)
	if res := <-first; !res.Ran || res.LegacyTitles != 1 || res.LegacyObjects != 2 {
		t.Errorf("first collector: %+v, want 1 legacy title and 2 objects", res)
	}
	if p.maxBusy != 1 || p.calls != 1 {
		t.Errorf("legacy purge ran %d times, %d at once; want once", p.calls, p.maxBusy)
	}
	// With the lock free again, the next pass purges.
	if res, err := cs[1].RunOnce(ctx); err != nil || !res.Ran || res.LegacyTitles != 1 {
		t.Errorf("pass after the first: %+v %v", res, err)
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	for name, cfg := range map[string]Config{
		"grace":    {Grace: -time.Second},
		"interval": {Interval: -time.Second},
		"timeout":  {Timeout: -time.Second},
		"batch":    {BatchSize: -1},
	} {
		if _, err := New(cfg, nil, nil, nil, testenv.Logger(t)); err == nil {
			t.Errorf("%s: New accepted %+v", name, cfg)
		}
	}
}
