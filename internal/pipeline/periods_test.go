package pipeline

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"io"
	"math"
	"path"
	"strings"
	"testing"
	"time"

	"github.com/hlsvault/hlsvault/internal/keys"
	"github.com/hlsvault/hlsvault/internal/playlist"
	"github.com/hlsvault/hlsvault/internal/segcrypt"
	"github.com/hlsvault/hlsvault/internal/storage"
	"github.com/hlsvault/hlsvault/internal/testenv"
	"github.com/hlsvault/hlsvault/internal/testenv/decoder"
	"github.com/hlsvault/hlsvault/internal/testenv/hlscheck"
	"github.com/hlsvault/hlsvault/internal/verify"
	"github.com/hlsvault/hlsvault/jobs"
)

// TestKeyPeriods transcodes a 6 s title with KEY_PERIOD=2s (1 s segments):
// the version publishes 3 keys (periods 0, 1, 2 starting at 0, 2 and 4 s),
// each media playlist switches its EXT-X-KEY URI at 2 s and 4 s, verify
// decrypts everything, and every segment decrypts only with its own
// period's key: another period's key fails the padding or the MPEG-TS sync
// check. A playlist naming the wrong period's key fails verify.
func TestKeyPeriods(t *testing.T) {
	fs, err := storage.NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, fs, func(c *Config) { c.KeyPeriod = 2 * time.Second })
	ctx := context.Background()
	src := testenv.MakeSource(t, t.TempDir(), testenv.Source{Width: 320, Height: 240, Seconds: 6, Audio: true})
	h.upload("uploads/p.mp4", src)
	video := testenv.Name("periods")
	res, err := h.client.EnqueueTranscode(ctx, jobs.TranscodeRequest{VideoID: video, Source: "uploads/p.mp4"})
	if err != nil {
		t.Fatal(err)
	}
	h.startWorker()
	if j := h.waitJob(res.TaskID); j.State != jobs.Published {
		t.Fatalf("job: %+v", j)
	}
	cur, err := h.db.CurrentVersion(ctx, video)
	if err != nil {
		t.Fatal(err)
	}
	if len(cur.Keys) != 3 {
		t.Fatalf("keys %+v, want 3 periods", cur.Keys)
	}
	cks := make([]keys.ContentKey, len(cur.Keys))
	for i, k := range cur.Keys {
		if k.Period != i || k.Start != 2*float64(i) {
			t.Errorf("key %d: period %d start %v", i, k.Period, k.Start)
		}
		if cks[i], err = h.keyring.Unwrap(k.KEKID, k.KeyID, k.Wrapped); err != nil {
			t.Fatal(err)
		}
	}

	rep, err := (&verify.Verifier{Store: h.store, DB: h.db, Keyring: h.keyring, Exec: decoder.Exec(t)}).Verify(ctx, video)
	if err != nil || !rep.OK() {
		t.Fatalf("verify: %+v %v", rep, err)
	}
	if len(rep.KeyIDs) != 3 {
		t.Errorf("verify report keys %v", rep.KeyIDs)
	}

	for _, r := range cur.Renditions {
		data := h.objects(r.Playlist)[r.Playlist]
		pm, err := playlist.ParseMedia(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		var (
			start    float64
			switches []float64 // where the key URI changes
			prev     string
		)
		for i, s := range pm.Segments {
			want := cur.Keys[int(math.Floor((start+0.001)/2))]
			if !strings.HasSuffix(s.Key.URI, "/"+want.KeyID) {
				t.Errorf("%s segment %d at %.3f s: key URI %s, want key %s", r.Name, i, start, s.Key.URI, want.KeyID)
			}
			if prev != "" && s.Key.URI != prev {
				switches = append(switches, start)
			}
			prev = s.Key.URI
			// Only its own period's key decrypts it.
			obj := path.Join(path.Dir(r.Playlist), s.URI)
			ct := h.objects(obj)[obj]
			iv, err := parseHexIV(s.Key.IV)
			if err != nil {
				t.Fatal(err)
			}
			for j, ck := range cks {
				ok := decryptsToTS(ct, ck, iv)
				if ok != (cur.Keys[j].KeyID == want.KeyID) {
					t.Errorf("%s segment %d (period %d) decrypts with period %d's key: %v", r.Name, i, want.Period, j, ok)
				}
			}
			start += s.Duration
		}
		if len(switches) != 2 || math.Abs(switches[0]-2) > 0.001 || math.Abs(switches[1]-4) > 0.001 {
			t.Errorf("%s: key URI switches at %v, want at 2 s and 4 s", r.Name, switches)
		}
	}

	// The playlists as published, with their key changes, pass
	// third-party strict parsing.
	hlscheck.StrictAll(t, hlscheck.Stored(t, h.store, "hls/"+video+"/"))

	// A media playlist whose 2 s segment names period 0's key instead is
	// reported by verify.
	r := cur.Renditions[0]
	data := h.objects(r.Playlist)[r.Playlist]
	lines := strings.Split(string(data), "\n")
	replaced := false
	for i, l := range lines {
		if strings.Contains(l, cur.Keys[1].KeyID) && !replaced {
			lines[i] = strings.Replace(l, cur.Keys[1].KeyID, cur.Keys[0].KeyID, 1)
			replaced = true
		}
	}
	tampered := []byte(strings.Join(lines, "\n"))
	if err := h.store.Delete(ctx, r.Playlist); err != nil {
		t.Fatal(err)
	}
	if err := h.store.Put(ctx, r.Playlist, bytes.NewReader(tampered), int64(len(tampered)), storage.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	rep, err = (&verify.Verifier{Store: h.store, DB: h.db, Keyring: h.keyring, Exec: decoder.Exec(t)}).Verify(ctx, video)
	if err != nil || rep.OK() || !strings.Contains(strings.Join(rep.Renditions[0].Problems, "\n")+strings.Join(rep.Renditions[1].Problems, "\n"), "of its key period 1") {
		t.Fatalf("verify of a playlist naming the wrong period's key: %+v %v", rep, err)
	}
}

// decryptsToTS reports whether ct decrypts under ck with valid padding
// into whole MPEG-TS packets.
func decryptsToTS(ct []byte, ck keys.ContentKey, iv []byte) bool {
	dec, err := segcrypt.NewDecryptReader(bytes.NewReader(ct), ck.Bytes(), iv)
	if err != nil {
		return false
	}
	plain, err := io.ReadAll(dec)
	if err != nil || len(plain) == 0 || len(plain)%188 != 0 {
		return false
	}
	for off := 0; off < len(plain); off += 188 {
		if plain[off] != 0x47 {
			return false
		}
	}
	return true
}

func parseHexIV(s string) ([]byte, error) {
	h, ok := strings.CutPrefix(strings.ToLower(s), "0x")
	if !ok || len(h) != 32 {
		return nil, errors.New("bad IV " + s)
	}
	return hex.DecodeString(h)
}
