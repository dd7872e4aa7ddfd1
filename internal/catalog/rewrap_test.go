package catalog

import (
	"context"
	"fmt"
	"testing"

	"github.com/hlsvault/hlsvault/internal/keys"
	"github.com/hlsvault/hlsvault/internal/testenv"
)

func TestRewrapKeys(t *testing.T) {
	ctx := context.Background()
	db := openTestDB(t)
	old, _ := keys.NewKeyring(testenv.SeededKEK(1))
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
			Keys: []WrappedKey{{KeyID: id, KEKID: old.Primary().ID(), Wrapped: w}}}); err != nil {
			t.Fatal(err)
		}
		content[video] = ck
	}

	// Deploy the new KEK as primary with the old one retired, then rewrap.
	both, err := keys.NewKeyring(testenv.SeededKEK(100), testenv.SeededKEK(1))
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
	onlyNew, _ := keys.NewKeyring(testenv.SeededKEK(100))
	for video, want := range content {
		cur, err := db.CurrentVersion(ctx, video)
		if err != nil {
			t.Fatal(err)
		}
		got, err := onlyNew.Unwrap(cur.Keys[0].KEKID, cur.Keys[0].KeyID, cur.Keys[0].Wrapped)
		if err != nil || got != want {
			t.Fatalf("%s: unwrap with the new KEK only: %v (same key: %v)", video, err, got == want)
		}
		if _, err := old.Unwrap(cur.Keys[0].KEKID, cur.Keys[0].KeyID, cur.Keys[0].Wrapped); err == nil {
			t.Fatalf("%s: the old KEK still opens the rewrapped key", video)
		}
	}
}
