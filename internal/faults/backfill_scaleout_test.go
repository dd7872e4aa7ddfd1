//go:build faults

package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hlsvault/hlsvault/internal/backfill"
	"github.com/hlsvault/hlsvault/internal/catalog"
	"github.com/hlsvault/hlsvault/internal/synthetic"
	"github.com/hlsvault/hlsvault/internal/testenv/fixtures"
)

// TestBackfillScaleOutSurvivesAKilledWorker: two real worker processes,
// sharing one backfill run of 300 tiny titles through Redis and PostgreSQL
// only, one SIGKILLed in the middle of the run. The other finishes the run
// (the dead worker's batch comes back after asynq's lease): every title is
// converted exactly once — one job, one published version, its objects in
// storage — and none is lost; at most the title the dead worker was on
// leaves an unpublished attempt behind.
func TestBackfillScaleOutSurvivesAKilledWorker(t *testing.T) {
	redis := startRedis(t)
	e, store := newFSEnv(t, redis.port)
	ctx := context.Background()
	const n = 300
	if err := synthetic.LegacyCatalogue(ctx, store, synthetic.LegacyTitle{Prefix: "legacy/"}, 0, n, 8); err != nil {
		t.Fatal(err)
	}
	if out, err := enqueue(t, e, "backfill", "start", "--prefix", "legacy/", "--batch-size", "10", "--max-inflight", "4"); err != nil ||
		!strings.Contains(out, fmt.Sprintf("%d titles to work on", n)) {
		t.Fatalf("start: %v\n%s", err, out)
	}
	w1, w2 := startWorker(t, e), startWorker(t, e)

	db, err := catalog.Open(ctx, e["DATABASE_URL"], nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	run, err := db.LatestBackfillRun(ctx)
	if err != nil {
		t.Fatal(err)
	}
	progress := func() catalog.BackfillProgress {
		p, err := db.BackfillProgressOf(ctx, run.ID)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	waitFor(t, "a third of the titles", 2*time.Minute, func() bool { return progress().Counts[catalog.ItemDone] >= n/3 })
	w1.kill()
	killedAt := progress()
	t.Logf("worker 1 killed with %d titles done, %d running", killedAt.Counts[catalog.ItemDone], killedAt.Counts[catalog.ItemRunning])

	waitFor(t, "the run to finish", 4*time.Minute, func() bool {
		st, err := enqueue(t, e, "backfill", "status", fmt.Sprint(run.ID), "--json")
		var s backfill.Status
		return err == nil && json.Unmarshal([]byte(st), &s) == nil && s.Run.State == catalog.RunDone
	})
	p := progress()
	if p.Counts[catalog.ItemDone] != n || p.Total != n {
		t.Fatalf("run ended with %v of %d titles\nworker 2:\n%s", p.Counts, n, w2.logs())
	}
	if !strings.Contains(w1.logs(), "title re-encrypted and published") {
		t.Error("worker 1 converted nothing before it was killed")
	}

	// Exactly once; the title the dead worker was on may leave its attempt.
	fixtures.CheckConvertedOnce(t, db, store, n, 4, 1)
}
