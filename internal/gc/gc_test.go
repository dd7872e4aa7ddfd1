package gc

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/hlsvault/hlsvault/internal/catalog"
	"github.com/hlsvault/hlsvault/internal/storage"
	"github.com/hlsvault/hlsvault/internal/testenv"
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
		Key: catalog.WrappedKey{KeyID: fmt.Sprintf("k_%032x", f.n), KEKID: "kek_x", Wrapped: make([]byte, 45)},
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
	db, err := catalog.Open(ctx, testenv.DatabaseURL(t), slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	fs, err := storage.NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
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

	log := slog.New(slog.NewTextHandler(testWriter{t}, nil))
	// Nothing is old enough yet.
	res, err := New(Config{Grace: time.Hour}, db, fs, log).RunOnce(ctx)
	if err != nil || res.Versions != 0 {
		t.Fatalf("within grace: %+v %v", res, err)
	}
	time.Sleep(20 * time.Millisecond)
	res, err = New(Config{Grace: 10 * time.Millisecond, BatchSize: 1}, db, fs, log).RunOnce(ctx)
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
	if res, err := New(Config{Grace: 10 * time.Millisecond}, db, fs, log).RunOnce(ctx); err != nil || res.Versions != 0 {
		t.Errorf("second pass: %+v %v", res, err)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}
