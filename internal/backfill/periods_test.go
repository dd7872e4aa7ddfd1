package backfill

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hlsvault/hlsvault/internal/catalog"
	"github.com/hlsvault/hlsvault/internal/keys"
	"github.com/hlsvault/hlsvault/internal/playlist"
	"github.com/hlsvault/hlsvault/internal/storage"
	"github.com/hlsvault/hlsvault/internal/testenv/hlscheck"
)

// versionHashes decrypts every object of a version with the key its
// EXT-X-KEY names (one per key period) and lists the distinct plaintext
// digests: an init section is stored once per key period it serves.
func (h *harness) versionHashes(v catalog.Version) []string {
	h.t.Helper()
	cks := map[string]*keys.ContentKey{}
	for _, k := range v.Keys {
		ck, err := h.keyring.Unwrap(k.KEKID, k.KeyID, k.Wrapped)
		if err != nil {
			h.t.Fatal(err)
		}
		cks[k.KeyID] = &ck
	}
	sums := mediaHashesWith(h.t, h.store, v.Master, true, func(k *playlist.Key) *keys.ContentKey {
		for id, ck := range cks {
			if strings.HasSuffix(k.URI, "/"+id) {
				return ck
			}
		}
		return nil
	})
	return slices.Compact(sums)
}

// TestBackfillKeyPeriods: with KEY_PERIOD=1s, re-encrypting 3 s legacy
// titles (1 s segments) gives every version 3 keys; each verifies (every
// segment under its own period's key) and plays the legacy bytes; an fMP4
// init section used across key boundaries is stored once per period, each
// copy restated with EXT-X-MAP after the new EXT-X-KEY. A re-key of such a
// version reads its source under all its keys and again yields periods.
func TestBackfillKeyPeriods(t *testing.T) {
	fs, err := storage.NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, fs, func(c *Config) { c.KeyPeriod = time.Second })
	ctx := context.Background()
	uploadLegacy(t, fs, "legacy/", "kp1="+titleFMP4, "kp2="+titleTSMaster, "kp3="+titleTwoMaps)
	h.startWorker()
	ids := []string{"kp1", "kp2", "kp3"}
	legacy := map[string]string{"kp1": "legacy/kp1/index.m3u8", "kp2": "legacy/kp2/master.m3u8", "kp3": "legacy/kp3/index.m3u8"}
	run := h.start(StartOptions{IDs: ids})
	if st := h.waitRun(run.Run.ID, 2*time.Minute, catalog.RunDone); st.Done != 3 {
		t.Fatalf("run: %+v", st)
	}
	check := func(video string, version int) catalog.Version {
		t.Helper()
		if rep, err := h.verifier().Verify(ctx, video); err != nil || !rep.OK() {
			t.Fatalf("%s: verify: %+v %v", video, rep, err)
		}
		cur, err := h.db.CurrentVersion(ctx, video)
		if err != nil || cur.Version != version {
			t.Fatalf("%s: %+v %v", video, cur, err)
		}
		if len(cur.Keys) != 3 {
			t.Fatalf("%s: %d keys, want 3 (1 s periods of a 3 s title)", video, len(cur.Keys))
		}
		for i, k := range cur.Keys {
			if k.Period != i || k.Start != float64(i) {
				t.Errorf("%s: key %d period %d start %v", video, i, k.Period, k.Start)
			}
		}
		want := slices.Compact(mediaHashes(t, fs, legacy[video], nil))
		if got := h.versionHashes(cur); !slices.Equal(got, want) {
			t.Errorf("%s: decrypted objects differ from the legacy objects:\n got %v\nwant %v", video, got, want)
		}
		return cur
	}
	for _, v := range ids {
		cur := check(v, 1)
		if v == "kp1" {
			// One legacy init section, three periods: three copies, each
			// EXT-X-MAP under its period's key.
			data := readObject(t, fs, cur.Renditions[0].Playlist)
			maps, err := playlist.MapTags(data)
			if err != nil || len(maps) != 3 {
				t.Fatalf("EXT-X-MAP tags %+v %v\n%s", maps, err, data)
			}
			for i, mt := range maps {
				if mt.Segment != i || mt.Key == nil || !strings.HasSuffix(mt.Key.URI, "/"+cur.Keys[i].KeyID) {
					t.Errorf("EXT-X-MAP %d: %+v (key %+v), want at segment %d under key %s", i, mt.Map, mt.Key, i, cur.Keys[i].KeyID)
				}
			}
			if n := bytes.Count(data, []byte("#EXT-X-MAP:")); n != 3 {
				t.Errorf("%d EXT-X-MAP lines", n)
			}
		}
	}
	rk := h.start(StartOptions{IDs: ids, RunOptions: RunOptions{Rekey: true, Label: "periods"}})
	if st := h.waitRun(rk.Run.ID, 2*time.Minute, catalog.RunDone); st.Done != 3 {
		t.Fatalf("re-key run: %+v", st)
	}
	for _, v := range ids {
		check(v, 2)
	}
	// Both versions of each title, with their key periods and restated
	// EXT-X-MAPs, pass third-party strict parsing.
	hlscheck.StrictAll(t, hlscheck.Stored(t, h.store, "hls/"))
	h.checkNoKeyLeak(ids...)
}
