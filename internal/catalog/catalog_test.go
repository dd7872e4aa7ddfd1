package catalog

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/hlsvault/hlsvault/internal/testenv"
)

func openTestDB(t *testing.T) *DB {
	t.Helper()
	ctx := context.Background()
	url := testenv.DatabaseURL(t)
	// Several workers start at once: migrations must not trip over each other.
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			db, err := Open(ctx, url, testenv.Logger(t))
			if err != nil {
				errs <- err
				return
			}
			defer db.Close()
			errs <- db.Migrate(ctx)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent migrate: %v", err)
		}
	}
	db, err := Open(ctx, url, testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	return db
}

func key(n int) WrappedKey {
	return WrappedKey{KeyID: fmt.Sprintf("k_%032x", n), KEKID: "kek_test", Wrapped: make([]byte, 45)}
}

func publish(t *testing.T, db *DB, a Attempt, n int) bool {
	t.Helper()
	ok, err := db.Publish(context.Background(), PublishParams{
		Attempt: a, Master: a.Prefix + "master.m3u8", Duration: 2,
		Renditions: []Rendition{{Name: "240p", Playlist: a.Prefix + "240p/index.m3u8", Width: 426, Height: 240}},
		Keys:       []WrappedKey{key(n)},
	})
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

func TestPublishLifecycle(t *testing.T) {
	ctx := context.Background()
	db := openTestDB(t)

	j, created, err := db.UpsertJob(ctx, "vid1", "uploads/a.mp4", "t-a")
	if err != nil || !created || j.State != Queued {
		t.Fatalf("upsert: %+v %v %v", j, created, err)
	}
	if _, created, _ := db.UpsertJob(ctx, "vid1", "uploads/a.mp4", "t-a"); created {
		t.Fatal("second upsert created a job")
	}
	if _, err := db.VideoStatus(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("status of unknown video: %v", err)
	}

	a1, err := db.StartAttempt(ctx, "t-a")
	if err != nil || a1.Version != 1 || a1.Prefix != "hls/vid1/v1/" {
		t.Fatalf("attempt 1: %+v %v", a1, err)
	}
	// A duplicate delivery of the same job runs concurrently: it gets its own version.
	a2, err := db.StartAttempt(ctx, "t-a")
	if err != nil || a2.Version != 2 {
		t.Fatalf("attempt 2: %+v %v", a2, err)
	}
	if !publish(t, db, a2, 2) {
		t.Fatal("first completion not published")
	}
	if publish(t, db, a1, 1) {
		t.Fatal("second completion of the same job replaced the published version")
	}
	if _, err := db.StartAttempt(ctx, "t-a"); !errors.Is(err, ErrAlreadyPublished) {
		t.Fatalf("attempt after publish: %v", err)
	}
	st, err := db.VideoStatus(ctx, "vid1")
	if err != nil || st.State != Published || st.Version != 2 || st.Master != "hls/vid1/v2/master.m3u8" || len(st.Renditions) != 1 {
		t.Fatalf("status: %+v %v", st, err)
	}
	cur, err := db.CurrentVersion(ctx, "vid1")
	if err != nil || cur.Keys[0].KeyID != key(2).KeyID {
		t.Fatalf("current key: %+v %v", cur, err)
	}

	// An older job finishing after a newer one must not win.
	if _, _, err := db.UpsertJob(ctx, "vid1", "uploads/b.mp4", "t-b"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := db.UpsertJob(ctx, "vid1", "uploads/c.mp4", "t-c"); err != nil {
		t.Fatal(err)
	}
	ab, _ := db.StartAttempt(ctx, "t-b")
	ac, _ := db.StartAttempt(ctx, "t-c")
	if !publish(t, db, ac, 4) {
		t.Fatal("newer job not published")
	}
	if publish(t, db, ab, 3) {
		t.Fatal("older job replaced a newer job's version")
	}
	cur, _ = db.CurrentVersion(ctx, "vid1")
	if cur.Version != ac.Version {
		t.Fatalf("current = v%d, want v%d", cur.Version, ac.Version)
	}
	vid, ver, k, err := db.KeyByID(ctx, key(4).KeyID)
	if err != nil || vid != "vid1" || ver != ac.Version || len(k.Wrapped) != 45 {
		t.Fatalf("key by id: %s %d %v", vid, ver, err)
	}
	if _, _, _, err := db.KeyByID(ctx, key(3).KeyID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("superseded version's key was stored: %v", err)
	}
}

func TestFailAttempt(t *testing.T) {
	ctx := context.Background()
	db := openTestDB(t)
	if _, _, err := db.UpsertJob(ctx, "v2", "uploads/x", "t-x"); err != nil {
		t.Fatal(err)
	}
	a, _ := db.StartAttempt(ctx, "t-x")
	if err := db.FailAttempt(ctx, a.Job.ID, "ffmpeg crashed", false); err != nil {
		t.Fatal(err)
	}
	j, _ := db.JobByTask(ctx, "t-x")
	if j.State != Queued || j.Error != "ffmpeg crashed" || j.Attempts != 1 {
		t.Fatalf("after transient failure: %+v", j)
	}
	if err := db.FailAttempt(ctx, a.Job.ID, "no video stream", true); err != nil {
		t.Fatal(err)
	}
	st, _ := db.VideoStatus(ctx, "v2")
	if st.State != Failed || st.Error != "no video stream" || st.Version != 0 {
		t.Fatalf("status after final failure: %+v", st)
	}
}
