package catalog

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"
)

// startBackfill prepares a backfill job and starts its attempt.
func startBackfill(t *testing.T, db *DB, video, taskID string, rekeyBefore time.Time) (Attempt, BackfillStart) {
	t.Helper()
	ctx := context.Background()
	st, err := db.PrepareBackfillJob(ctx, video, "legacy/"+video+"/master.m3u8", taskID, rekeyBefore)
	if err != nil {
		t.Fatalf("prepare %s: %v", taskID, err)
	}
	a, err := db.StartAttempt(ctx, taskID)
	if err != nil {
		t.Fatalf("start %s: %v", taskID, err)
	}
	return a, st
}

func TestPublishBackfillNeverReplacesFreshUpload(t *testing.T) {
	ctx := context.Background()
	db := openTestDB(t)

	// A legacy title: the backfill expects no current version.
	ab, st := startBackfill(t, db, "leg1", "bf-1-leg1", time.Time{})
	if st.Expected != 0 {
		t.Fatalf("expected = %d, want 0", st.Expected)
	}
	// Meanwhile a fresh upload of the same video is published.
	if _, _, err := db.UpsertJob(ctx, "leg1", "uploads/new.mp4", "t-new"); err != nil {
		t.Fatal(err)
	}
	at, _ := db.StartAttempt(ctx, "t-new")
	if !publish(t, db, at, 10) {
		t.Fatal("fresh upload not published")
	}
	if publish(t, db, ab, 11) {
		t.Fatal("backfill replaced a fresh upload")
	}
	cur, _ := db.CurrentVersion(ctx, "leg1")
	if cur.Version != at.Version {
		t.Fatalf("current = v%d, want the upload's v%d", cur.Version, at.Version)
	}
	// The title now has a key: a new backfill of it is skipped.
	if _, err := db.PrepareBackfillJob(ctx, "leg1", "legacy/leg1/master.m3u8", "bf-2-leg1", time.Time{}); !errors.Is(err, ErrHasKey) {
		t.Fatalf("backfill of a keyed title: %v", err)
	}
}

func TestPublishBackfillNeverBlocksTranscode(t *testing.T) {
	ctx := context.Background()
	db := openTestDB(t)
	// A transcode job is enqueued (lower job id) and starts...
	if _, _, err := db.UpsertJob(ctx, "leg2", "uploads/a.mp4", "t-a"); err != nil {
		t.Fatal(err)
	}
	at, _ := db.StartAttempt(ctx, "t-a")
	// ...while the backfill of the legacy title (higher job id) publishes.
	ab, _ := startBackfill(t, db, "leg2", "bf-1-leg2", time.Time{})
	if !publish(t, db, ab, 20) {
		t.Fatal("backfill of a legacy title not published")
	}
	if !publish(t, db, at, 21) {
		t.Fatal("a backfill version blocked a transcode")
	}
	cur, _ := db.CurrentVersion(ctx, "leg2")
	if cur.Version != at.Version || cur.Keys[0].KeyID != key(21).KeyID {
		t.Fatalf("current = %+v, want the transcode's v%d", cur, at.Version)
	}
}

func TestPublishRekeyCompareAndSwap(t *testing.T) {
	ctx := context.Background()
	db := openTestDB(t)
	for _, task := range []string{"t-old", "t-new"} {
		if _, _, err := db.UpsertJob(ctx, "vid", "uploads/"+task, task); err != nil {
			t.Fatal(err)
		}
	}
	aOld, _ := db.StartAttempt(ctx, "t-old")
	aNew, _ := db.StartAttempt(ctx, "t-new")
	if !publish(t, db, aNew, 30) {
		t.Fatal("newer upload not published")
	}
	// Re-key the current version.
	future := time.Now().Add(time.Hour)
	if _, err := db.PrepareBackfillJob(ctx, "vid", "x", "bf-nokey", time.Time{}); !errors.Is(err, ErrHasKey) {
		t.Fatalf("without rekey: %v", err)
	}
	ar, st := startBackfill(t, db, "vid", "bf-rekey", future)
	if st.Expected != aNew.Version {
		t.Fatalf("expected = %d, want %d", st.Expected, aNew.Version)
	}
	// A concurrent re-key of the same version loses the compare-and-swap.
	ar2, _ := startBackfill(t, db, "vid", "bf-rekey-2", future)
	if !publish(t, db, ar, 31) {
		t.Fatal("re-key not published")
	}
	if publish(t, db, ar2, 32) {
		t.Fatal("second re-key of the same version published over the first")
	}
	// The older upload finishing now must not replace the newer upload's
	// content, re-keyed or not.
	if publish(t, db, aOld, 33) {
		t.Fatal("an older transcode replaced a re-keyed newer upload")
	}
	cur, _ := db.CurrentVersion(ctx, "vid")
	if cur.Version != ar.Version || cur.Keys[0].KeyID != key(31).KeyID {
		t.Fatalf("current = v%d %s, want v%d", cur.Version, cur.Keys[0].KeyID, ar.Version)
	}
	// The old version keeps its key, for players still on it.
	if _, ver, _, err := db.KeyByID(ctx, key(30).KeyID); err != nil || ver != aNew.Version {
		t.Fatalf("old key: v%d %v", ver, err)
	}
	old, err := db.VersionWithKey(ctx, "vid", aNew.Version)
	if err != nil || old.Keys[0].KeyID != key(30).KeyID {
		t.Fatalf("old version: %+v %v", old, err)
	}
	// A re-key with a cutoff before the re-keyed version leaves it alone.
	if _, err := db.PrepareBackfillJob(ctx, "vid", "x", "bf-rekey-3", time.Now().Add(-time.Hour)); !errors.Is(err, ErrHasKey) {
		t.Fatalf("re-key of a version newer than the cutoff: %v", err)
	}
	// A duplicate delivery of a published backfill job is recognised.
	if _, err := db.PrepareBackfillJob(ctx, "vid", "x", "bf-rekey", future); !errors.Is(err, ErrAlreadyPublished) {
		t.Fatalf("published backfill job: %v", err)
	}
}

func TestBackfillRunLifecycle(t *testing.T) {
	ctx := context.Background()
	db := openTestDB(t)
	opts := json.RawMessage(`{"prefix":"legacy/"}`)
	items := []NewBackfillItem{
		{VideoID: "a", Legacy: "legacy/a/master.m3u8", EstBytes: 100, EstSegments: 3},
		{VideoID: "b", Legacy: "legacy/b/master.m3u8", EstBytes: 200},
		{VideoID: "c", Legacy: "legacy/c/index.m3u8", EstBytes: 300},
		{VideoID: "d", State: ItemFailed, Error: "no playlist under legacy/d/"},
	}
	run, created, err := db.CreateBackfillRun(ctx, opts, "fp1", 2, 1, items)
	if err != nil || !created || run.State != RunRunning {
		t.Fatalf("create: %+v %v %v", run, created, err)
	}
	again, created, err := db.CreateBackfillRun(ctx, opts, "fp1", 2, 1, items)
	if err != nil || created || again.ID != run.ID {
		t.Fatalf("second start of the same backfill: %+v %v %v", again, created, err)
	}

	_, batches, err := db.ScheduleBackfillBatches(ctx, run.ID)
	if err != nil || len(batches) != 1 || len(batches[0].Items) != 2 {
		t.Fatalf("schedule: %+v %v", batches, err)
	}
	b1 := batches[0]
	if _, more, _ := db.ScheduleBackfillBatches(ctx, run.ID); len(more) != 0 {
		t.Fatalf("max-inflight 1 exceeded: %+v", more)
	}
	if out, _ := db.OutstandingBackfillBatches(ctx, run.ID); len(out) != 1 || out[0].Batch != b1.Batch {
		t.Fatalf("outstanding: %+v", out)
	}
	it, err := db.ClaimBackfillItem(ctx, run.ID, b1.Batch, b1.Items[0], 3)
	if err != nil || it.State != ItemRunning || it.Attempts != 1 {
		t.Fatalf("claim: %+v %v", it, err)
	}
	if _, err := db.ClaimBackfillItem(ctx, run.ID, b1.Batch+1, b1.Items[1], 3); !errors.Is(err, ErrItemNotClaimable) {
		t.Fatalf("claim from another batch: %v", err)
	}
	if err := db.FinishBackfillItem(ctx, it.ID, BackfillOutcome{State: ItemDone, Version: 1, Bytes: 110, Segments: 3}); err != nil {
		t.Fatal(err)
	}

	// Pause: the batch's next item cannot start and goes back to pending.
	if _, err := db.SetBackfillRunState(ctx, run.ID, []string{RunRunning}, RunPaused); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ClaimBackfillItem(ctx, run.ID, b1.Batch, b1.Items[1], 3); !errors.Is(err, ErrRunNotRunning) {
		t.Fatalf("claim in a paused run: %v", err)
	}
	if n, err := db.ReleaseBackfillBatch(ctx, run.ID, b1.Batch); err != nil || n != 1 {
		t.Fatalf("release: %d %v", n, err)
	}
	if _, more, _ := db.ScheduleBackfillBatches(ctx, run.ID); len(more) != 0 {
		t.Fatalf("a paused run scheduled %+v", more)
	}
	if _, err := db.SetBackfillRunState(ctx, run.ID, []string{RunRunning}, RunPaused); !errors.Is(err, ErrBadTransition) {
		t.Fatalf("pause of a paused run: %v", err)
	}
	if _, err := db.SetBackfillRunState(ctx, run.ID, []string{RunPaused}, RunRunning); err != nil {
		t.Fatal(err)
	}

	// Resume: the rest goes out in a new batch; an interrupted attempt is
	// requeued without counting, a failure is recorded.
	_, batches, _ = db.ScheduleBackfillBatches(ctx, run.ID)
	if len(batches) != 1 || len(batches[0].Items) != 2 {
		t.Fatalf("after resume: %+v", batches)
	}
	b2 := batches[0]
	x, _ := db.ClaimBackfillItem(ctx, run.ID, b2.Batch, b2.Items[0], 3)
	if err := db.RequeueBackfillItem(ctx, x.ID, "", false); err != nil {
		t.Fatal(err)
	}
	x, _ = db.ClaimBackfillItem(ctx, run.ID, b2.Batch, b2.Items[0], 3)
	if x.Attempts != 1 {
		t.Fatalf("interrupted attempt counted: %+v", x)
	}
	db.FinishBackfillItem(ctx, x.ID, BackfillOutcome{State: ItemFailed, Error: "segment 2 missing"})
	y, _ := db.ClaimBackfillItem(ctx, run.ID, b2.Batch, b2.Items[1], 3)
	db.FinishBackfillItem(ctx, y.ID, BackfillOutcome{State: ItemSkipped, Error: "already has a key"})

	r, more, err := db.ScheduleBackfillBatches(ctx, run.ID)
	if err != nil || len(more) != 0 || r.State != RunDone {
		t.Fatalf("finished run: %+v %+v %v", r, more, err)
	}
	p, err := db.BackfillProgressOf(ctx, run.ID)
	if err != nil || p.Total != 4 || p.Counts[ItemDone] != 1 || p.Counts[ItemFailed] != 2 || p.Counts[ItemSkipped] != 1 || p.BytesDone != 110 {
		t.Fatalf("progress: %+v %v", p, err)
	}

	// retry-failed re-queues the failed items only and reopens the run.
	n, err := db.RetryFailedBackfillItems(ctx, run.ID)
	if err != nil || n != 2 {
		t.Fatalf("retry failed: %d %v", n, err)
	}
	r, _ = db.BackfillRunByID(ctx, run.ID)
	if r.State != RunRunning {
		t.Fatalf("run after retry-failed: %s", r.State)
	}
	pending, _ := db.BackfillItems(ctx, run.ID, ItemPending)
	if len(pending) != 2 || pending[0].VideoID != "b" || pending[1].VideoID != "d" {
		t.Fatalf("pending after retry-failed: %+v", pending)
	}
	done, _ := db.BackfillItems(ctx, run.ID, ItemDone)
	if len(done) != 1 || done[0].Version != 1 || done[0].Attempts != 1 {
		t.Fatalf("done item changed: %+v", done)
	}

	// Attempts are bounded.
	_, batches, _ = db.ScheduleBackfillBatches(ctx, run.ID)
	b3 := batches[0]
	for i := 0; i < 2; i++ {
		z, err := db.ClaimBackfillItem(ctx, run.ID, b3.Batch, b3.Items[0], 2)
		if err != nil || z.State != ItemRunning {
			t.Fatalf("claim %d: %+v %v", i, z, err)
		}
		db.RequeueBackfillItem(ctx, z.ID, "storage timeout", true)
	}
	z, err := db.ClaimBackfillItem(ctx, run.ID, b3.Batch, b3.Items[0], 2)
	if err != nil || z.State != ItemFailed || z.Error != "gave up after 2 attempts; last error: storage timeout" {
		t.Fatalf("third claim with 2 attempts allowed: %+v %v", z, err)
	}

	// Cancel ends the run; a new start with the same fingerprint is a new run.
	if _, err := db.SetBackfillRunState(ctx, run.ID, []string{RunRunning, RunPaused}, RunCancelled); err != nil {
		t.Fatal(err)
	}
	if _, err := db.RetryFailedBackfillItems(ctx, run.ID); !errors.Is(err, ErrBadTransition) {
		t.Fatalf("retry-failed of a cancelled run: %v", err)
	}
	next, created, err := db.CreateBackfillRun(ctx, opts, "fp1", 2, 1, items)
	if err != nil || !created || next.ID == run.ID {
		t.Fatalf("start after cancel: %+v %v %v", next, created, err)
	}
	if latest, _ := db.LatestBackfillRun(ctx); latest.ID != next.ID {
		t.Fatalf("latest run = %d", latest.ID)
	}
}

func TestRekeyCutoffAndKnownVideos(t *testing.T) {
	ctx := context.Background()
	db := openTestDB(t)
	if _, ok, err := db.RekeyCutoff(ctx, ""); err != nil || ok {
		t.Fatalf("no runs: %v %v", ok, err)
	}
	run, _, err := db.CreateBackfillRun(ctx, json.RawMessage(`{"rekey":true,"label":"leak-1"}`), "fp-r", 1, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	c, ok, err := db.RekeyCutoff(ctx, "leak-1")
	if err != nil || !ok || !c.Equal(run.CreatedAt) {
		t.Fatalf("cutoff: %v %v %v", c, ok, err)
	}
	if _, ok, _ := db.RekeyCutoff(ctx, "leak-2"); ok {
		t.Fatal("cutoff for another label")
	}

	if _, err := db.pool.Exec(ctx, `insert into videos (id) values ('legacy-a'), ('busy')`); err != nil {
		t.Fatal(err)
	}
	if _, _, err := db.UpsertJob(ctx, "busy", "uploads/x", "t-busy"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := db.UpsertJob(ctx, "pub", "uploads/y", "t-pub"); err != nil {
		t.Fatal(err)
	}
	a, _ := db.StartAttempt(ctx, "t-pub")
	publish(t, db, a, 1)
	ids, err := db.KnownVideos(ctx, false)
	if err != nil || len(ids) != 1 || ids[0] != "legacy-a" {
		t.Fatalf("known videos without a key: %v %v", ids, err)
	}
	ids, _ = db.KnownVideos(ctx, true)
	if len(ids) != 2 || ids[0] != "legacy-a" || ids[1] != "pub" {
		t.Fatalf("known videos with re-key: %v", ids)
	}
	cur, err := db.CurrentVersions(ctx, []string{"legacy-a", "pub", "nope"})
	if err != nil || len(cur) != 1 || cur["pub"].Version != 1 {
		t.Fatalf("current versions: %+v %v", cur, err)
	}
}
