package catalog

import (
	"context"
	"testing"
)

// TestBackfillBusyTime pins what a run's rate is made of: the titles worked
// on and the union of their worked intervals, not the time since the first
// title started (which counts pauses) nor discovery's broken titles.
func TestBackfillBusyTime(t *testing.T) {
	ctx := context.Background()
	db := openTestDB(t)
	run, _, err := db.CreateBackfillRun(ctx, []byte(`{"prefix":"busy/"}`), "fp-busy", 10, 2, []NewBackfillItem{
		{VideoID: "a"}, {VideoID: "b"}, {VideoID: "c"}, {VideoID: "d", State: ItemFailed, Error: "broken"},
		{VideoID: "e"}, {VideoID: "f"}, {VideoID: "g"},
	})
	if err != nil {
		t.Fatal(err)
	}
	// Seconds after a base an hour ago: a and b overlap (one island of 15 s),
	// c is alone (10 s, failed), e was skipped at once (0 s), f is running
	// since 30 s ago, g is pending; d was broken at discovery.
	for _, it := range []struct {
		video, state string
		start, end   *int
	}{
		{"a", ItemDone, ip(0), ip(10)}, {"b", ItemDone, ip(5), ip(15)}, {"c", ItemFailed, ip(100), ip(110)},
		{"e", ItemSkipped, ip(200), ip(200)}, {"f", ItemRunning, nil, nil},
	} {
		var err error
		if it.start != nil {
			_, err = db.pool.Exec(ctx, `update backfill_items set state = $3,
				started_at = now() - interval '1 hour' + make_interval(secs => $4),
				finished_at = now() - interval '1 hour' + make_interval(secs => $5)
				where run_id = $1 and video_id = $2`, run.ID, it.video, it.state, *it.start, *it.end)
		} else {
			_, err = db.pool.Exec(ctx, `update backfill_items set state = $3, started_at = now() - interval '30 seconds'
				where run_id = $1 and video_id = $2`, run.ID, it.video, it.state)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	p, err := db.BackfillProgressOf(ctx, run.ID)
	if err != nil {
		t.Fatal(err)
	}
	if p.Worked != 4 {
		t.Errorf("worked = %d, want 4 (a, b, c, e)", p.Worked)
	}
	// 15 + 10 + 0 + about 30 for the running title.
	if p.BusySeconds < 55 || p.BusySeconds > 65 {
		t.Errorf("busy = %.1f s, want about 55", p.BusySeconds)
	}

	runs, err := db.ListBackfillRuns(ctx, 10)
	if err != nil || len(runs) != 1 {
		t.Fatalf("list: %+v %v", runs, err)
	}
	if r := runs[0]; r.ID != run.ID || r.State != RunRunning || r.Done != 2 || r.Failed != 2 || r.Skipped != 1 || r.Total != 7 {
		t.Errorf("list: %+v", r)
	}
	by, err := db.BackfillProgressByRun(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{ItemPending: 1, ItemQueued: 0, ItemRunning: 1, ItemDone: 2, ItemFailed: 2, ItemSkipped: 1}
	if got := by[run.ID]; len(got) != len(want) {
		t.Errorf("progress by run: %v, want %v", got, want)
	} else {
		for s, n := range want {
			if got[s] != n {
				t.Errorf("progress by run: %s = %d, want %d", s, got[s], n)
			}
		}
	}
	if _, err := db.SetBackfillRunState(ctx, run.ID, []string{RunRunning}, RunPaused); err != nil {
		t.Fatal(err)
	}
	if by, err := db.BackfillProgressByRun(ctx); err != nil || len(by) != 0 {
		t.Errorf("progress of a paused run reported: %v %v", by, err)
	}
	if runs, err := db.ListBackfillRuns(ctx, 0); err != nil || len(runs) != 0 {
		t.Errorf("list with limit 0: %v %v", runs, err)
	}
}

func ip(n int) *int { return &n }

// TestSetStage: the stage changes only while the job is processing.
func TestSetStage(t *testing.T) {
	ctx := context.Background()
	db := openTestDB(t)
	j, _, err := db.UpsertJob(ctx, "stg", "uploads/stg.mp4", "t-stg")
	if err != nil {
		t.Fatal(err)
	}
	stage := func() string {
		var s *string
		if err := db.pool.QueryRow(ctx, `select stage from jobs where id = $1`, j.ID).Scan(&s); err != nil {
			t.Fatal(err)
		}
		if s == nil {
			return ""
		}
		return *s
	}
	if err := db.SetStage(ctx, j.ID, StageDownload); err != nil || stage() != "" {
		t.Fatalf("stage of a queued job: %q %v", stage(), err)
	}
	if _, err := db.StartAttempt(ctx, "t-stg"); err != nil {
		t.Fatal(err)
	}
	for _, s := range []JobStage{StageDownload, StageProbe, StageEncode} {
		if err := db.SetStage(ctx, j.ID, s); err != nil || stage() != string(s) {
			t.Fatalf("stage %s: %q %v", s, stage(), err)
		}
	}
	if err := db.FailAttempt(ctx, j.ID, "boom", true); err != nil {
		t.Fatal(err)
	}
	if err := db.SetStage(ctx, j.ID, StageUpload); err != nil || stage() != string(StageEncode) {
		t.Fatalf("stage after the job failed: %q %v (want encode kept)", stage(), err)
	}
}
