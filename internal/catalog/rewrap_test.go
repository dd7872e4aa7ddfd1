package catalog

import (
	"context"
	"encoding/base64"
	"fmt"
	"testing"

	"github.com/hlsvault/hlsvault/internal/keys"
)

func kekString(seed byte) string {
	raw := make([]byte, 32)
	for i := range raw {
		raw[i] = seed + byte(i)
	}
	return base64.StdEncoding.EncodeToString(raw)
}

func TestRewrapKeys(t *testing.T) {
	ctx := context.Background()
	db := openTestDB(t)
	old, _ := keys.NewKeyring(kekString(1))
	content := map[string]keys.ContentKey{}
	for i := range 5 {
		video := fmt.Sprintf("rw%d", i)
		task := "t-" + video
		if _, _, err := db.UpsertJob(ctx, video, "uploads/x", task); err != nil {
			t.Fatal(err)
		}
		a, err := db.StartAttempt(ctx, task)
		if err != nil {
			t.Fatal(err)
		}
		ck, _ := keys.NewContentKey()
		id, _ := keys.NewKeyID()
		w, _ := old.Primary().Wrap(id, ck)
		if _, err := db.Publish(ctx, PublishParams{Attempt: a, Master: a.Prefix + "master.m3u8",
			Key: WrappedKey{KeyID: id, KEKID: old.Primary().ID(), Wrapped: w}}); err != nil {
			t.Fatal(err)
		}
		content[video] = ck
	}

	// Deploy the new KEK as primary with the old one retired, then rewrap.
	both, err := keys.NewKeyring(kekString(100), kekString(1))
	if err != nil {
		t.Fatal(err)
	}
	rewrap := func(kekID, keyID string, wrapped []byte) (string, []byte, error) {
		ck, err := both.Unwrap(kekID, keyID, wrapped)
		if err != nil {
			return "", nil, err
		}
		w, err := both.Primary().Wrap(keyID, ck)
		return both.Primary().ID(), w, err
	}
	n, err := db.RewrapKeys(ctx, both.Primary().ID(), 2, rewrap)
	if err != nil || n != 5 {
		t.Fatalf("rewrapped %d, %v; want 5", n, err)
	}
	if n, err := db.RewrapKeys(ctx, both.Primary().ID(), 2, rewrap); err != nil || n != 0 {
		t.Fatalf("second run rewrapped %d, %v; want 0", n, err)
	}
	usage, _ := db.KEKUsage(ctx)
	if len(usage) != 1 || usage[both.Primary().ID()] != 5 {
		t.Fatalf("KEK usage after rewrap: %v", usage)
	}
	// The old KEK can now be dropped: the new one alone opens every key,
	// and every content key is unchanged.
	onlyNew, _ := keys.NewKeyring(kekString(100))
	for video, want := range content {
		cur, err := db.CurrentVersion(ctx, video)
		if err != nil {
			t.Fatal(err)
		}
		got, err := onlyNew.Unwrap(cur.Key.KEKID, cur.Key.KeyID, cur.Key.Wrapped)
		if err != nil || got != want {
			t.Fatalf("%s: unwrap with the new KEK only: %v (same key: %v)", video, err, got == want)
		}
		if _, err := old.Unwrap(cur.Key.KEKID, cur.Key.KeyID, cur.Key.Wrapped); err == nil {
			t.Fatalf("%s: the old KEK still opens the rewrapped key", video)
		}
	}
}
