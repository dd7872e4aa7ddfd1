package catalog

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"
)

// ctlFinishedAt reads jobs.finished_at (null: the zero time).
func ctlFinishedAt(t *testing.T, db *DB, jobID int64) time.Time {
	t.Helper()
	var at *time.Time
	if err := db.pool.QueryRow(context.Background(), `select finished_at from jobs where id = $1`, jobID).Scan(&at); err != nil {
		t.Fatal(err)
	}
	if at == nil {
		return time.Time{}
	}
	return *at
}

func ctlUnpurged(t *testing.T, db *DB, stale time.Duration, video string) []int {
	t.Helper()
	ds, err := db.Unpurged(context.Background(), stale, 100)
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, d := range ds {
		if d.VideoID == video {
			out = append(out, d.Version)
		}
	}
	slices.Sort(out)
	return out
}

func TestCancelQueuedJob(t *testing.T) {
	ctx := context.Background()
	db := openTestDB(t)
	if _, err := db.CancelJobs(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("cancel of an unknown video: %v", err)
	}
	j, _, err := db.UpsertJob(ctx, "cq", "uploads/a", "t-cq")
	if err != nil {
		t.Fatal(err)
	}
	c, err := db.CancelJobs(ctx, "cq")
	if err != nil || c.Already || len(c.Jobs) != 1 || c.Jobs[0].Was != Queued || c.Jobs[0].Job.State != Cancelled || c.Jobs[0].Job.ID != j.ID {
		t.Fatalf("cancel: %+v %v", c, err)
	}
	if ctlFinishedAt(t, db, j.ID).IsZero() {
		t.Error("a cancelled queued job has no finished_at: no attempt of it runs")
	}
	if _, err := db.StartAttempt(ctx, "t-cq"); !errors.Is(err, ErrCancelled) {
		t.Fatalf("attempt of a cancelled job: %v", err)
	}
	if n, _ := db.VersionStates(ctx, "cq"); len(n) != 0 {
		t.Fatalf("a refused attempt made a version: %v", n)
	}
	again, err := db.CancelJobs(ctx, "cq")
	if err != nil || !again.Already || len(again.Jobs) != 1 || again.Jobs[0].Job.ID != j.ID {
		t.Fatalf("second cancel: %+v %v", again, err)
	}
	// A failure reported late by a worker does not undo the cancellation.
	if err := db.FailAttempt(ctx, j.ID, "late", false); err != nil {
		t.Fatal(err)
	}
	if got, _ := db.JobByTask(ctx, "t-cq"); got.State != Cancelled {
		t.Fatalf("after a late failure: %s", got.State)
	}
	// Enqueued again, the same job runs.
	if err := db.ResetJob(ctx, "t-cq"); err != nil {
		t.Fatal(err)
	}
	if a, err := db.StartAttempt(ctx, "t-cq"); err != nil || a.Version != 1 {
		t.Fatalf("attempt after re-enqueue: %+v %v", a, err)
	}

	// Nothing active: a clear error naming the latest job's state.
	if _, _, err := db.UpsertJob(ctx, "cp", "uploads/p", "t-cp"); err != nil {
		t.Fatal(err)
	}
	a, _ := db.StartAttempt(ctx, "t-cp")
	publish(t, db, a, 1)
	if _, err := db.CancelJobs(ctx, "cp"); !errors.Is(err, ErrNotActive) {
		t.Fatalf("cancel of a published video: %v", err)
	}
}

// TestPublishRefusedAfterCancel: a cancel that lands while the attempt
// runs, even just before its publish, publishes nothing.
func TestPublishRefusedAfterCancel(t *testing.T) {
	ctx := context.Background()
	db := openTestDB(t)
	if _, _, err := db.UpsertJob(ctx, "cr", "uploads/a", "t-cr"); err != nil {
		t.Fatal(err)
	}
	a, err := db.StartAttempt(ctx, "t-cr")
	if err != nil {
		t.Fatal(err)
	}
	c, err := db.CancelJobs(ctx, "cr")
	if err != nil || len(c.Jobs) != 1 || c.Jobs[0].Was != Processing {
		t.Fatalf("cancel: %+v %v", c, err)
	}
	if !ctlFinishedAt(t, db, a.Job.ID).IsZero() {
		t.Error("a processing job got finished_at at cancel; its worker records it when it has stopped")
	}
	ok, err := db.Publish(ctx, PublishParams{Attempt: a, Master: a.Prefix + "master.m3u8", Keys: []WrappedKey{key(1)}})
	if ok || !errors.Is(err, ErrCancelled) {
		t.Fatalf("publish after cancel: %v %v", ok, err)
	}
	if _, err := db.CurrentVersion(ctx, "cr"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("current version after a refused publish: %v", err)
	}
	if _, _, _, err := db.KeyByID(ctx, key(1).KeyID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("key of a refused publish: %v", err)
	}
	if n, _ := db.VersionStates(ctx, "cr"); n["pending"] != 1 || len(n) != 1 {
		t.Fatalf("versions: %v, want the attempt's pending debris (GC's)", n)
	}
	if s, n, err := db.JobState(ctx, a.Job.ID); err != nil || s != Cancelled || n != 1 {
		t.Fatalf("job state: %s, %d attempts, %v", s, n, err)
	}
	if err := db.FinishCancelled(ctx, a.Job.ID); err != nil {
		t.Fatal(err)
	}
	if ctlFinishedAt(t, db, a.Job.ID).IsZero() {
		t.Error("FinishCancelled did not record the end")
	}
}

func TestDeleteVideo(t *testing.T) {
	ctx := context.Background()
	db := openTestDB(t)
	if _, err := db.DeleteVideo(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("delete of an unknown video: %v", err)
	}
	// v1 published then retired by v2 (two keys), v3 still being made.
	for i, task := range []string{"t-d1", "t-d2"} {
		if _, _, err := db.UpsertJob(ctx, "dv", "uploads/"+task, task); err != nil {
			t.Fatal(err)
		}
		a, _ := db.StartAttempt(ctx, task)
		ok, err := db.Publish(ctx, PublishParams{Attempt: a, Master: a.Prefix + "master.m3u8",
			Keys: []WrappedKey{key(10*i + 1), {KeyID: key(10*i + 2).KeyID, KEKID: "kek_test", Wrapped: make([]byte, 45), Period: 1, Start: 60}}})
		if err != nil || !ok {
			t.Fatalf("publish %s: %v %v", task, ok, err)
		}
	}
	if _, _, err := db.UpsertJob(ctx, "dv", "uploads/d3", "t-d3"); err != nil {
		t.Fatal(err)
	}
	running, err := db.StartAttempt(ctx, "t-d3")
	if err != nil || running.Version != 3 {
		t.Fatalf("attempt 3: %+v %v", running, err)
	}
	if _, _, err := db.UpsertJob(ctx, "dv", "uploads/d4", "t-d4"); err != nil { // queued
		t.Fatal(err)
	}

	d, err := db.DeleteVideo(ctx, "dv")
	if err != nil {
		t.Fatal(err)
	}
	if d.Already || !slices.Equal(d.Versions, []int{1, 2, 3}) || len(d.Keys) != 4 || len(d.Jobs) != 2 || d.DeletedAt.IsZero() {
		t.Fatalf("deletion: %+v", d)
	}
	was := map[string]JobState{}
	for _, j := range d.Jobs {
		if j.Job.State != Cancelled {
			t.Errorf("job %s left %s", j.Job.TaskID, j.Job.State)
		}
		was[j.Job.TaskID] = j.Was
	}
	if was["t-d3"] != Processing || was["t-d4"] != Queued {
		t.Errorf("cancelled jobs were %v", was)
	}
	for _, id := range d.Keys {
		if _, _, _, err := db.KeyByID(ctx, id); !errors.Is(err, ErrNotFound) {
			t.Errorf("key %s after delete: %v", id, err)
		}
	}
	var keysLeft int
	if err := db.pool.QueryRow(ctx, `select count(*) from content_keys where video_id = 'dv'`).Scan(&keysLeft); err != nil || keysLeft != 0 {
		t.Fatalf("%d key rows left (%v)", keysLeft, err)
	}
	if _, err := db.CurrentVersion(ctx, "dv"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("current version after delete: %v", err)
	}
	if n, _ := db.VersionStates(ctx, "dv"); n["deleted"] != 3 || len(n) != 1 {
		t.Fatalf("versions: %v", n)
	}
	if at, err := db.VideoDeletedAt(ctx, "dv"); err != nil || !at.Equal(d.DeletedAt) {
		t.Fatalf("deleted at: %v %v", at, err)
	}

	// v3's attempt still runs: its objects are not purged until it has
	// stopped, or until it must be dead (a crashed worker).
	if got := ctlUnpurged(t, db, time.Hour, "dv"); !slices.Equal(got, []int{1, 2}) {
		t.Fatalf("purgeable while attempt 3 runs: %v, want [1 2]", got)
	}
	if got := ctlUnpurged(t, db, 0, "dv"); !slices.Equal(got, []int{1, 2, 3}) {
		t.Fatalf("purgeable once a crashed attempt must be dead: %v, want [1 2 3]", got)
	}
	ok, err := db.Publish(ctx, PublishParams{Attempt: running, Master: running.Prefix + "master.m3u8", Keys: []WrappedKey{key(99)}})
	if ok || !errors.Is(err, ErrCancelled) {
		t.Fatalf("publish of the running attempt after delete: %v %v", ok, err)
	}
	if err := db.FinishCancelled(ctx, running.Job.ID); err != nil {
		t.Fatal(err)
	}
	if got := ctlUnpurged(t, db, time.Hour, "dv"); !slices.Equal(got, []int{1, 2, 3}) {
		t.Fatalf("purgeable after attempt 3 stopped: %v, want [1 2 3]", got)
	}

	// A job recorded afterwards (a task enqueued around the client) makes
	// nothing.
	if _, _, err := db.UpsertJob(ctx, "dv", "uploads/d5", "t-d5"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.StartAttempt(ctx, "t-d5"); !errors.Is(err, ErrVideoDeleted) {
		t.Fatalf("attempt for a deleted video: %v", err)
	}
	if j, _ := db.JobByTask(ctx, "t-d5"); j.State != Cancelled {
		t.Fatalf("job of a deleted video left %s", j.State)
	}
	if n, _ := db.VersionStates(ctx, "dv"); n["deleted"] != 3 || len(n) != 1 {
		t.Fatalf("versions after a refused attempt: %v", n)
	}

	again, err := db.DeleteVideo(ctx, "dv")
	if err != nil || !again.Already || len(again.Versions) != 0 || len(again.Keys) != 0 || !again.DeletedAt.Equal(d.DeletedAt) {
		t.Fatalf("second delete: %+v %v", again, err)
	}
}

// TestDeleteRacesPublish: a delete and a publish of the same video at once
// end with either nothing current and no key (whichever commits first),
// never a deleted video with a playable version.
func TestDeleteRacesPublish(t *testing.T) {
	ctx := context.Background()
	db := openTestDB(t)
	for i := range 10 {
		video := "race" + string(rune('a'+i))
		task := "t-" + video
		if _, _, err := db.UpsertJob(ctx, video, "uploads/x", task); err != nil {
			t.Fatal(err)
		}
		a, err := db.StartAttempt(ctx, task)
		if err != nil {
			t.Fatal(err)
		}
		errs := make(chan error, 2)
		go func() {
			_, err := db.Publish(ctx, PublishParams{Attempt: a, Master: a.Prefix + "master.m3u8", Keys: []WrappedKey{key(100 + i)}})
			if errors.Is(err, ErrCancelled) {
				err = nil
			}
			errs <- err
		}()
		go func() { _, err := db.DeleteVideo(ctx, video); errs <- err }()
		for range 2 {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		if _, err := db.CurrentVersion(ctx, video); !errors.Is(err, ErrNotFound) {
			t.Fatalf("%s: current version after delete: %v", video, err)
		}
		if _, _, _, err := db.KeyByID(ctx, key(100+i).KeyID); !errors.Is(err, ErrNotFound) {
			t.Fatalf("%s: key after delete: %v", video, err)
		}
	}
}
