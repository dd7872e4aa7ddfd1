package catalog

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/hlsvault/hlsvault/internal/keys"
	"github.com/hlsvault/hlsvault/internal/testenv"
)

func periodKeys(base, n int) []WrappedKey {
	ks := make([]WrappedKey, n)
	for i := range ks {
		ks[i] = key(base + i)
		ks[i].Period, ks[i].Start = i, 300*float64(i)
	}
	return ks
}

// TestPublishKeyPeriods: Publish stores every key of a version in one
// transaction; the version reads back with its keys in period order; each
// key id leads back to its version; a bad key set is refused before
// anything is written.
func TestPublishKeyPeriods(t *testing.T) {
	ctx := context.Background()
	db := openTestDB(t)
	if _, _, err := db.UpsertJob(ctx, "kp1", "uploads/a.mp4", "t-kp1"); err != nil {
		t.Fatal(err)
	}
	a, err := db.StartAttempt(ctx, "t-kp1")
	if err != nil {
		t.Fatal(err)
	}
	for name, ks := range map[string][]WrappedKey{
		"none":                 nil,
		"period 0 not at 0":    {{KeyID: key(1).KeyID, Period: 0, Start: 5}},
		"periods out of order": func() []WrappedKey { ks := periodKeys(1, 2); ks[0], ks[1] = ks[1], ks[0]; return ks }(),
		"repeated key id":      func() []WrappedKey { ks := periodKeys(1, 2); ks[1].KeyID = ks[0].KeyID; return ks }(),
		"negative start":       {{KeyID: key(1).KeyID, Period: 1, Start: -1}},
	} {
		if _, err := db.Publish(ctx, PublishParams{Attempt: a, Master: a.Prefix + "master.m3u8", Keys: ks}); err == nil {
			t.Errorf("%s: published", name)
		}
	}
	if _, err := db.CurrentVersion(ctx, "kp1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a refused publish left a current version: %v", err)
	}
	// A duplicate key id inside the transaction (another version's) rolls
	// every key back: none of the version's keys is left.
	if _, _, err := db.UpsertJob(ctx, "kp0", "uploads/z.mp4", "t-kp0"); err != nil {
		t.Fatal(err)
	}
	a0, _ := db.StartAttempt(ctx, "t-kp0")
	if _, err := db.Publish(ctx, PublishParams{Attempt: a0, Master: a0.Prefix + "master.m3u8", Keys: periodKeys(103, 1)}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Publish(ctx, PublishParams{Attempt: a, Master: a.Prefix + "master.m3u8", Keys: periodKeys(101, 3)}); err == nil {
		t.Fatal("a key id already stored for another version was accepted")
	}
	for _, id := range []string{key(101).KeyID, key(102).KeyID} {
		if _, _, _, err := db.KeyByID(ctx, id); !errors.Is(err, ErrNotFound) {
			t.Errorf("key %s of a failed publish: %v", id, err)
		}
	}
	a, err = db.StartAttempt(ctx, "t-kp1")
	if err != nil {
		t.Fatal(err)
	}
	want := periodKeys(10, 3)
	if ok, err := db.Publish(ctx, PublishParams{Attempt: a, Master: a.Prefix + "master.m3u8", Keys: want}); err != nil || !ok {
		t.Fatalf("publish: %v %v", ok, err)
	}
	cur, err := db.CurrentVersion(ctx, "kp1")
	if err != nil {
		t.Fatal(err)
	}
	byNumber, err := db.VersionWithKey(ctx, "kp1", a.Version)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []Version{cur, byNumber} {
		if len(v.Keys) != 3 {
			t.Fatalf("keys %+v", v.Keys)
		}
		for i, k := range v.Keys {
			if k.KeyID != want[i].KeyID || k.Period != i || k.Start != want[i].Start || k.KEKID != "kek_test" || len(k.Wrapped) != 45 {
				t.Errorf("key %d: %+v, want %+v", i, k, want[i])
			}
		}
		if strings.Join(v.KeyIDs(), ",") != want[0].KeyID+","+want[1].KeyID+","+want[2].KeyID {
			t.Errorf("KeyIDs %v", v.KeyIDs())
		}
	}
	for _, k := range want {
		video, version, wk, err := db.KeyByID(ctx, k.KeyID)
		if err != nil || video != "kp1" || version != a.Version || wk.KeyID != k.KeyID {
			t.Errorf("KeyByID(%s) = %s v%d %+v %v", k.KeyID, video, version, wk, err)
		}
	}
}

// TestKeyPeriodsMigration: a key stored before migration 005 is period 0
// starting at 0, and (video, version, period) is unique.
func TestKeyPeriodsMigration(t *testing.T) {
	ctx := context.Background()
	db := openTestDB(t)
	if _, _, err := db.UpsertJob(ctx, "kpm", "uploads/a.mp4", "t-kpm"); err != nil {
		t.Fatal(err)
	}
	a, _ := db.StartAttempt(ctx, "t-kpm")
	conn := db.pool
	// An insert as the code before periods wrote it.
	if _, err := conn.Exec(ctx, `insert into content_keys (key_id, video_id, version, kek_id, wrapped) values ($1, 'kpm', $2, 'kek_test', $3)`,
		key(200).KeyID, a.Version, make([]byte, 45)); err != nil {
		t.Fatal(err)
	}
	var (
		period int
		start  float64
	)
	if err := conn.QueryRow(ctx, `select period, starts_at_s from content_keys where key_id = $1`, key(200).KeyID).Scan(&period, &start); err != nil || period != 0 || start != 0 {
		t.Fatalf("default period %d start %v %v", period, start, err)
	}
	if _, err := conn.Exec(ctx, `insert into content_keys (key_id, video_id, version, kek_id, wrapped, period) values ($1, 'kpm', $2, 'kek_test', $3, 0)`,
		key(201).KeyID, a.Version, make([]byte, 45)); err == nil {
		t.Fatal("two keys for one period of a version")
	}
	if _, err := conn.Exec(ctx, `insert into content_keys (key_id, video_id, version, kek_id, wrapped, period, starts_at_s) values ($1, 'kpm', $2, 'kek_test', $3, 1, 300)`,
		key(202).KeyID, a.Version, make([]byte, 45)); err != nil {
		t.Fatalf("a second period: %v", err)
	}
}

// TestRewrapKeysAllPeriods: rewrap-keys moves every period's key of every
// version to the new KEK, and each still opens to the same content key.
func TestRewrapKeysAllPeriods(t *testing.T) {
	ctx := context.Background()
	db := openTestDB(t)
	old, _ := keys.NewKeyring(testenv.SeededKEK(1))
	content := map[string]keys.ContentKey{}
	for i := range 2 {
		video := fmt.Sprintf("rwp%d", i)
		if _, _, err := db.UpsertJob(ctx, video, "uploads/x", "t-"+video); err != nil {
			t.Fatal(err)
		}
		a, err := db.StartAttempt(ctx, "t-"+video)
		if err != nil {
			t.Fatal(err)
		}
		var ks []WrappedKey
		for p := range 3 {
			ck, _ := keys.NewContentKey()
			id, _ := keys.NewKeyID()
			w, _ := old.Primary().Wrap(id, ck)
			ks = append(ks, WrappedKey{KeyID: id, KEKID: old.Primary().ID(), Wrapped: w, Period: p, Start: 120 * float64(p)})
			content[id] = ck
		}
		if _, err := db.Publish(ctx, PublishParams{Attempt: a, Master: a.Prefix + "master.m3u8", Keys: ks}); err != nil {
			t.Fatal(err)
		}
	}
	both, err := keys.NewKeyring(testenv.SeededKEK(100), testenv.SeededKEK(1))
	if err != nil {
		t.Fatal(err)
	}
	n, err := db.RewrapKeys(ctx, both.Primary().ID(), 4, func(kekID, keyID string, wrapped []byte) (string, []byte, error) {
		ck, err := both.Unwrap(kekID, keyID, wrapped)
		if err != nil {
			return "", nil, err
		}
		w, err := both.Primary().Wrap(keyID, ck)
		return both.Primary().ID(), w, err
	})
	if err != nil || n != 6 {
		t.Fatalf("rewrapped %d, %v; want 6 (3 periods × 2 versions)", n, err)
	}
	onlyNew, _ := keys.NewKeyring(testenv.SeededKEK(100))
	for i := range 2 {
		cur, err := db.CurrentVersion(ctx, fmt.Sprintf("rwp%d", i))
		if err != nil || len(cur.Keys) != 3 {
			t.Fatalf("version: %+v %v", cur.Keys, err)
		}
		for _, k := range cur.Keys {
			got, err := onlyNew.Unwrap(k.KEKID, k.KeyID, k.Wrapped)
			if err != nil || got != content[k.KeyID] {
				t.Errorf("period %d key %s: %v", k.Period, k.KeyID, err)
			}
		}
	}
}

func TestCheckKeysAndKeyAt(t *testing.T) {
	ks := periodKeys(1, 3) // starts 0, 300, 600
	if err := CheckKeys(ks); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		t    float64
		want int
	}{{0, 0}, {299.998, 0}, {299.9995, 1}, {300, 1}, {599, 1}, {601, 2}, {1e6, 2}} {
		if got := KeyAt(ks, tc.t); got != tc.want {
			t.Errorf("KeyAt(%v) = %d, want %d", tc.t, got, tc.want)
		}
	}
}
