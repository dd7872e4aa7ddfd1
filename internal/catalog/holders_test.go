package catalog

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hlsvault/hlsvault/internal/keys"
	"github.com/hlsvault/hlsvault/internal/testenv"
)

// publishUnder publishes n videos whose keys are wrapped under kr's primary.
func publishUnder(t *testing.T, db *DB, kr *keys.Keyring, prefix string, n int) {
	t.Helper()
	ctx := context.Background()
	for i := range n {
		video := fmt.Sprintf("%s%d", prefix, i)
		if _, _, err := db.UpsertJob(ctx, video, "uploads/x", "t-"+video); err != nil {
			t.Fatal(err)
		}
		a, err := db.StartAttempt(ctx, "t-"+video)
		if err != nil {
			t.Fatal(err)
		}
		ck, _ := keys.NewContentKey()
		id, _ := keys.NewKeyID()
		w, _ := kr.Primary().Wrap(id, ck)
		if _, err := db.Publish(ctx, PublishParams{Attempt: a, Master: a.Prefix + "master.m3u8",
			Keys: []WrappedKey{{KeyID: id, KEKID: kr.Primary().ID(), Wrapped: w}}}); err != nil {
			t.Fatal(err)
		}
	}
}

func rewrapWith(kr *keys.Keyring) RewrapFunc {
	return func(kekID, keyID string, wrapped []byte) (string, []byte, error) {
		ck, err := kr.Unwrap(kekID, keyID, wrapped)
		if err != nil {
			return "", nil, err
		}
		w, err := kr.Primary().Wrap(keyID, ck)
		return kr.Primary().ID(), w, err
	}
}

func holder(t *testing.T, program string, kr *keys.Keyring) KEKHolder {
	t.Helper()
	h, err := NewKEKHolder(program, kr.IDs())
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestRewrapRefusedWhileALiveHolderLacksTheKEK: a live gateway that does
// not hold the new KEK blocks the rewrap before anything changes, and the
// refusal names it; a stale row does not block; once every live holder has
// the new KEK, the rewrap runs.
func TestRewrapRefusedWhileALiveHolderLacksTheKEK(t *testing.T) {
	ctx := context.Background()
	db := openTestDB(t)
	old, _ := keys.NewKeyring(testenv.SeededKEK(1))
	both, _ := keys.NewKeyring(testenv.SeededKEK(100), testenv.SeededKEK(1))
	newID := both.Primary().ID()
	publishUnder(t, db, old, "hold", 3)

	oldGateway := holder(t, "gateway", old) // deployed before the rotation
	oldGateway.Host, oldGateway.PID = "gw-host-1", 4242
	updatedWorker := holder(t, "worker", both)
	for _, h := range []KEKHolder{oldGateway, updatedWorker} {
		if err := db.BeatKEKHolder(ctx, h); err != nil {
			t.Fatal(err)
		}
	}
	n, err := db.RewrapKeys(ctx, newID, 2, rewrapWith(both))
	var nh *KEKNotHeldError
	if !errors.As(err, &nh) || !errors.Is(err, ErrKEKNotHeld) || n != 0 || len(nh.Holders) != 1 || nh.Holders[0].Instance != oldGateway.Instance {
		t.Fatalf("rewrap with an old gateway live: n=%d err=%v", n, err)
	}
	for _, want := range []string{newID, "gateway on gw-host-1 pid 4242", "holds " + old.Primary().ID(), "nothing was rewrapped", "KEY_ENCRYPTION_KEYS_RETIRED"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("refusal lacks %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "worker on") {
		t.Errorf("the updated worker is listed:\n%v", err)
	}
	if usage, _ := db.KEKUsage(ctx); usage[old.Primary().ID()] != 3 || len(usage) != 1 {
		t.Fatalf("keys changed by a refused rewrap: %v", usage)
	}

	// The old gateway's row goes stale (it crashed): it no longer blocks.
	if _, err := db.pool.Exec(ctx, `update kek_holders set heartbeat_at = now() - $2::interval where instance_id = $1`,
		oldGateway.Instance, (HolderLiveFor + time.Second).String()); err != nil {
		t.Fatal(err)
	}
	live, err := db.LiveKEKHolders(ctx)
	if err != nil || len(live) != 1 || live[0].Instance != updatedWorker.Instance {
		t.Fatalf("live holders: %v %v", live, err)
	}
	n, err = db.RewrapKeys(ctx, newID, 2, rewrapWith(both))
	if err != nil || n != 3 {
		t.Fatalf("rewrap with only a stale old row: n=%d err=%v", n, err)
	}

	// Every live holder updated: the next rotation's rewrap runs.
	third, _ := keys.NewKeyring(testenv.SeededKEK(7), testenv.SeededKEK(100))
	oldGateway.KEKs = both.IDs() // restarted, but without the third KEK
	if err := db.BeatKEKHolder(ctx, oldGateway); err != nil {
		t.Fatal(err)
	}
	if _, err := db.RewrapKeys(ctx, third.Primary().ID(), 2, rewrapWith(third)); !errors.As(err, &nh) || len(nh.Holders) != 2 {
		t.Fatalf("two holders lack the third KEK: %v", err)
	}
	for _, h := range []*KEKHolder{&oldGateway, &updatedWorker} {
		h.KEKs = append([]string{third.Primary().ID()}, h.KEKs...)
		if err := db.BeatKEKHolder(ctx, *h); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := db.RewrapKeys(ctx, third.Primary().ID(), 2, rewrapWith(third)); err != nil || n != 3 {
		t.Fatalf("every holder updated: n=%d err=%v", n, err)
	}
	if usage, _ := db.KEKUsage(ctx); usage[third.Primary().ID()] != 3 {
		t.Fatalf("usage %v", usage)
	}
}

// TestHeartbeat: the row appears at start with the keyring's ids, its
// heartbeat advances, and a clean stop deletes it.
func TestHeartbeat(t *testing.T) {
	ctx := context.Background()
	db := openTestDB(t)
	kr, _ := keys.NewKeyring(testenv.SeededKEK(2), testenv.SeededKEK(3))
	hb, err := db.StartHeartbeat(ctx, holder(t, "worker", kr), 50*time.Millisecond, testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	live, err := db.LiveKEKHolders(ctx)
	if err != nil || len(live) != 1 || live[0].Program != "worker" || live[0].PrimaryKEK != kr.Primary().ID() ||
		strings.Join(live[0].KEKs, ",") != strings.Join(kr.IDs(), ",") || len(live[0].KEKs) != 2 {
		t.Fatalf("live: %+v %v", live, err)
	}
	first := live[0].HeartbeatAt
	deadline := time.Now().Add(5 * time.Second)
	for {
		live, _ = db.LiveKEKHolders(ctx)
		if len(live) == 1 && live[0].HeartbeatAt.After(first) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("heartbeat did not advance: %+v", live)
		}
		time.Sleep(20 * time.Millisecond)
	}
	hb.Stop(ctx)
	hb.Stop(ctx)
	if live, err := db.LiveKEKHolders(ctx); err != nil || len(live) != 0 {
		t.Fatalf("after stop: %+v %v", live, err)
	}
	if _, err := NewKEKHolder("enqueue", kr.IDs()); err == nil {
		t.Fatal("program enqueue accepted")
	}
}
