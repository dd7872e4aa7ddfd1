package gc

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hlsvault/hlsvault/internal/catalog"
	"github.com/hlsvault/hlsvault/internal/testenv"
	"github.com/hlsvault/hlsvault/internal/testenv/fixtures"
)

// TestCollectorDestroysEveryPeriodKey: collecting a retired version made
// with key periods leaves no key row for any of its periods (and none of
// its key ids resolves), while every key of the current version stays.
func TestCollectorDestroysEveryPeriodKey(t *testing.T) {
	ctx := context.Background()
	db, dbURL := fixtures.CatalogURL(t)
	fs := fixtures.FS(t)
	f := &fixture{t: t, db: db, store: fs}
	publish := func(a catalog.Attempt, base int) []string {
		var ks []catalog.WrappedKey
		var ids []string
		for p := range 3 {
			id := fmt.Sprintf("k_%032x", base+p)
			ks = append(ks, catalog.WrappedKey{KeyID: id, KEKID: "kek_x", Wrapped: make([]byte, 45), Period: p, Start: 300 * float64(p)})
			ids = append(ids, id)
		}
		if ok, err := db.Publish(ctx, catalog.PublishParams{Attempt: a, Master: a.Prefix + "master.m3u8", Keys: ks}); err != nil || !ok {
			t.Fatalf("publish: %v %v", ok, err)
		}
		return ids
	}
	old := publish(f.attempt("kp", "tkp1"), 1000)
	cur := publish(f.attempt("kp", "tkp2"), 2000)

	time.Sleep(20 * time.Millisecond)
	c, err := New(Config{Grace: 10 * time.Millisecond}, db, fs, nil, testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	if res, err := c.RunOnce(ctx); err != nil || res.Versions != 1 {
		t.Fatalf("collected %+v %v, want the retired version", res, err)
	}
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, `select count(*) from content_keys where video_id = 'kp' and version = 1`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d key rows left for the collected version (%v), want 0", n, err)
	}
	for _, id := range old {
		if _, _, _, err := db.KeyByID(ctx, id); err == nil {
			t.Errorf("key %s of the collected version survived", id)
		}
	}
	for _, id := range cur {
		if _, v, _, err := db.KeyByID(ctx, id); err != nil || v != 2 {
			t.Errorf("key %s of the current version: v%d %v", id, v, err)
		}
	}
}
