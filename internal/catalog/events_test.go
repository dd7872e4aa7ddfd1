package catalog

import (
	"context"
	"encoding/json"
	"errors"
	"regexp"
	"testing"
	"time"
)

// eventData is the part of an event's data the tests look at.
type eventData struct {
	VideoID  string          `json:"video_id"`
	TaskID   string          `json:"task_id"`
	State    string          `json:"state"`
	Version  int             `json:"version"`
	Master   string          `json:"master"`
	Error    string          `json:"error"`
	Progress float64         `json:"progress"`
	Metadata json.RawMessage `json:"metadata"`
	RunID    int64           `json:"run_id"`
	Items    map[string]int  `json:"items"`
}

func allEvents(t *testing.T, db *DB) ([]Event, []eventData) {
	t.Helper()
	var evs []Event
	_, err := db.DispatchEvents(context.Background(), 1000, func(_ context.Context, e []Event) error {
		evs = e
		return errors.New("look only")
	})
	if err == nil && evs != nil {
		t.Fatal("DispatchEvents ignored deliver's error")
	}
	data := make([]eventData, len(evs))
	for i, e := range evs {
		if err := json.Unmarshal(e.Data, &data[i]); err != nil {
			t.Fatal(err)
		}
	}
	return evs, data
}

// TestEventTriggers: every state change records its event in its own
// transaction, with the task id and the caller's metadata.
func TestEventTriggers(t *testing.T) {
	ctx := context.Background()
	db := openTestDB(t)
	setMeta := func(task, md string) {
		t.Helper()
		if _, err := db.pool.Exec(ctx, `update jobs set metadata = $2 where task_id = $1`, task, md); err != nil {
			t.Fatal(err)
		}
	}

	// A job that publishes, with progress on the way.
	if _, _, err := db.UpsertJob(ctx, "vid1", "uploads/a.mp4", "t-a"); err != nil {
		t.Fatal(err)
	}
	setMeta("t-a", `{"order": 42, "tag": "x"}`)
	a, err := db.StartAttempt(ctx, "t-a")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []float64{10, 30, 40, 60, 99} {
		if err := db.SetProgress(ctx, a.Job.ID, p); err != nil {
			t.Fatal(err)
		}
	}
	publish(t, db, a, 1)

	// A job that fails: a retried failure is no event, the final one is.
	if _, _, err := db.UpsertJob(ctx, "vid2", "uploads/b.mp4", "t-b"); err != nil {
		t.Fatal(err)
	}
	b, err := db.StartAttempt(ctx, "t-b")
	if err != nil {
		t.Fatal(err)
	}
	if err := db.FailAttempt(ctx, b.Job.ID, "first", false); err != nil {
		t.Fatal(err)
	}
	if err := db.FailAttempt(ctx, b.Job.ID, "bad input: not a video", true); err != nil {
		t.Fatal(err)
	}
	// A second final failure of a failed job is no second event.
	if err := db.FailAttempt(ctx, b.Job.ID, "again", true); err != nil {
		t.Fatal(err)
	}

	// Cancelled (as the control helper sets it) and deleted.
	if _, _, err := db.UpsertJob(ctx, "vid3", "uploads/c.mp4", "t-c"); err != nil {
		t.Fatal(err)
	}
	setMeta("t-c", `{"who": "cancel"}`)
	if _, err := db.pool.Exec(ctx, `update jobs set state = 'cancelled', finished_at = now() where task_id = 't-c'`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.pool.Exec(ctx, `update videos set deleted_at = now() where id = 'vid1'`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.pool.Exec(ctx, `update videos set deleted_at = now() where id = 'vid1'`); err != nil {
		t.Fatal(err)
	}

	// A backfill run that finishes.
	run, _, err := db.CreateBackfillRun(ctx, json.RawMessage(`{"label": "rekey-2026"}`), "fp1", 10, 1,
		[]NewBackfillItem{{VideoID: "vid2", State: "pending"}, {VideoID: "vid3", State: "skipped"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.SetBackfillRunState(ctx, run.ID, []string{"running"}, "paused"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.SetBackfillRunState(ctx, run.ID, []string{"paused"}, "done"); err != nil {
		t.Fatal(err)
	}

	evs, data := allEvents(t, db)
	var types []string
	for _, e := range evs {
		types = append(types, e.Type)
	}
	want := []string{"video.progress", "video.progress", "video.progress", "video.published", "video.failed",
		"video.cancelled", "video.deleted", "backfill.run.finished"}
	if len(types) != len(want) {
		t.Fatalf("events %v, want %v", types, want)
	}
	idRE := regexp.MustCompile(`^msg_[0-9a-f]{32}$`)
	for i := range want {
		if types[i] != want[i] {
			t.Fatalf("events %v, want %v", types, want)
		}
		if !idRE.MatchString(evs[i].ID) {
			t.Errorf("event id %q", evs[i].ID)
		}
	}
	for i, p := range []float64{25, 50, 75} {
		if d := data[i]; d.Progress != p || d.TaskID != "t-a" || d.VideoID != "vid1" || d.State != "processing" {
			t.Errorf("progress event %d: %+v", i, d)
		}
	}
	var md map[string]any
	pub := data[3]
	if err := json.Unmarshal(pub.Metadata, &md); err != nil || md["order"] != float64(42) || md["tag"] != "x" {
		t.Errorf("published metadata %s", pub.Metadata)
	}
	if pub.Version != a.Version || pub.Master != a.Prefix+"master.m3u8" || pub.TaskID != "t-a" || evs[3].VideoID != "vid1" {
		t.Errorf("published: %+v", pub)
	}
	if f := data[4]; f.Error != "bad input: not a video" || f.TaskID != "t-b" || string(f.Metadata) != "{}" {
		t.Errorf("failed: %+v", f)
	}
	if c := data[5]; c.TaskID != "t-c" || string(c.Metadata) != `{"who": "cancel"}` {
		t.Errorf("cancelled: %+v %s", c, c.Metadata)
	}
	if d := data[6]; d.VideoID != "vid1" || d.TaskID != "t-a" || d.State != "deleted" || len(d.Metadata) < 10 {
		t.Errorf("deleted: %+v", d)
	}
	if r := data[7]; r.RunID != run.ID || r.State != "done" || r.Items["pending"] != 1 || r.Items["skipped"] != 1 || evs[7].VideoID != "" {
		t.Errorf("run finished: %+v", r)
	}

	// Dispatch marks them; a second dispatch finds nothing; prune removes
	// old ones only.
	n, err := db.DispatchEvents(ctx, 5, func(context.Context, []Event) error { return nil })
	if err != nil || n != 5 {
		t.Fatalf("dispatch: %d %v", n, err)
	}
	n, err = db.DispatchEvents(ctx, 5, func(context.Context, []Event) error { return nil })
	if err != nil || n != 3 {
		t.Fatalf("dispatch: %d %v", n, err)
	}
	n, err = db.DispatchEvents(ctx, 5, func(context.Context, []Event) error { t.Error("called with nothing"); return nil })
	if err != nil || n != 0 {
		t.Fatalf("dispatch: %d %v", n, err)
	}
	if _, err := db.pool.Exec(ctx, `update events set created_at = now() - interval '8 days' where type = 'video.progress'`); err != nil {
		t.Fatal(err)
	}
	if n, err := db.PruneEvents(ctx, time.Now().Add(-7*24*time.Hour)); err != nil || n != 3 {
		t.Fatalf("prune: %d %v", n, err)
	}
}

// TestEventRollback: an event is recorded only if its change commits.
func TestEventRollback(t *testing.T) {
	ctx := context.Background()
	db := openTestDB(t)
	if _, _, err := db.UpsertJob(ctx, "vid1", "uploads/a.mp4", "t-a"); err != nil {
		t.Fatal(err)
	}
	tx, err := db.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `update jobs set state = 'failed', error = 'x' where task_id = 't-a'`); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if evs, _ := allEvents(t, db); len(evs) != 0 {
		t.Fatalf("rolled-back change left events: %+v", evs)
	}
}

// TestListenEvents: a committed event notifies the listener.
func TestListenEvents(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db := openTestDB(t)
	if _, _, err := db.UpsertJob(ctx, "vid1", "uploads/a.mp4", "t-a"); err != nil {
		t.Fatal(err)
	}
	ready, got := make(chan struct{}), make(chan struct{}, 10)
	done := make(chan error, 1)
	go func() { done <- db.ListenEvents(ctx, func() { close(ready) }, func() { got <- struct{}{} }) }()
	<-ready
	if _, err := db.pool.Exec(ctx, `update jobs set state = 'failed', error = 'x' where task_id = 't-a'`); err != nil {
		t.Fatal(err)
	}
	select {
	case <-got:
	case <-ctx.Done():
		t.Fatal("no notice")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("listen after cancel: %v", err)
	}
}
