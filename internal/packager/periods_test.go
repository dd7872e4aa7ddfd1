package packager

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/hlsvault/hlsvault/internal/keys"
	"github.com/hlsvault/hlsvault/internal/playlist"
	"github.com/hlsvault/hlsvault/internal/segcrypt"
	"github.com/hlsvault/hlsvault/internal/storage"
)

func randomKeyring(t *testing.T) *keys.Keyring {
	t.Helper()
	raw := make([]byte, 32)
	_, _ = rand.Read(raw)
	k, err := keys.NewKeyring(base64.StdEncoding.EncodeToString(raw))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestPeriodOf(t *testing.T) {
	fs, _ := storage.NewFS(t.TempDir())
	p := New(fs, randomKeyring(t), Options{KeyPeriod: 2 * time.Second})
	for _, tc := range []struct {
		start float64
		want  int
	}{{0, 0}, {1.999, 1}, {1.998, 0}, {2, 1}, {3.9, 1}, {4, 2}, {5.5, 2}, {600.0005, 300}} {
		if got, err := p.PeriodOf(tc.start); err != nil || got != tc.want {
			t.Errorf("PeriodOf(%v) = %d, %v; want %d", tc.start, got, err, tc.want)
		}
	}
	for _, bad := range []float64{-1, 1e300} {
		if _, err := p.PeriodOf(bad); err == nil {
			t.Errorf("PeriodOf(%v) accepted", bad)
		}
	}
	one := New(fs, randomKeyring(t), Options{})
	if n, err := one.PeriodOf(7200); err != nil || n != 0 {
		t.Errorf("no periods: PeriodOf(7200) = %d, %v", n, err)
	}
}

// TestKeyPeriods: objects of each period are encrypted under their own
// fresh key; only that key decrypts them; the playlist names each period's
// key URI where it starts; WrappedKeys lists them in period order.
func TestKeyPeriods(t *testing.T) {
	ctx := context.Background()
	fs, err := storage.NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ring := randomKeyring(t)
	p := New(fs, ring, Options{KeyPeriod: 2 * time.Second})
	v, err := p.Begin("hls/vid/v1/", "https://k.example/{key_id}")
	if err != nil {
		t.Fatal(err)
	}
	// 1.5 s segments: starts 0, 1.5, 3, 4.5 → periods 0, 0, 1, 2.
	var (
		segs   []playlist.Segment
		stored []Stored
		plain  [][]byte
	)
	for i := range 4 {
		body := bytes.Repeat([]byte{0x47}, 188*3) // TS sync bytes
		copy(body[1:], fmt.Sprintf("segment %d", i))
		st, err := v.Put(ctx, Object{Name: fmt.Sprintf("a/seg_%05d.ts", i), Body: bytes.NewReader(body), Size: int64(len(body)), Start: 1.5 * float64(i)})
		if err != nil {
			t.Fatal(err)
		}
		if err := v.Verify(ctx, st); err != nil {
			t.Fatal(err)
		}
		stored, plain = append(stored, st), append(plain, body)
		segs = append(segs, playlist.Segment{URI: fmt.Sprintf("seg_%05d.ts", i), Duration: 1.5, Size: st.Size, IV: st.IV, KeyURI: st.Key.URI})
	}
	wantPeriods := []int{0, 0, 1, 2}
	for i, st := range stored {
		if st.Key.Period != wantPeriods[i] {
			t.Errorf("segment %d in period %d, want %d", i, st.Key.Period, wantPeriods[i])
		}
	}
	wks, err := v.WrappedKeys()
	if err != nil || len(wks) != 3 {
		t.Fatalf("wrapped keys %+v %v", wks, err)
	}
	cks := map[string]keys.ContentKey{}
	for i, wk := range wks {
		if wk.Period != i || wk.Start != 2*float64(i) {
			t.Errorf("key %d: period %d start %v", i, wk.Period, wk.Start)
		}
		ck, err := ring.Unwrap(wk.KEKID, wk.KeyID, wk.Wrapped)
		if err != nil {
			t.Fatal(err)
		}
		for id, other := range cks {
			if bytes.Equal(other.Bytes(), ck.Bytes()) {
				t.Fatalf("key %s repeats key %s", wk.KeyID, id)
			}
		}
		cks[wk.KeyID] = ck
	}
	// Each segment decrypts with its own period's key only.
	for i, st := range stored {
		for id, ck := range cks {
			rc, err := fs.Get(ctx, st.Name)
			if err != nil {
				t.Fatal(err)
			}
			dec, _ := segcrypt.NewDecryptReader(rc, ck.Bytes(), st.IV[:])
			got, err := io.ReadAll(dec)
			rc.Close()
			ok := err == nil && bytes.Equal(got, plain[i])
			if ok != (id == st.Key.ID) {
				t.Errorf("segment %d (key %s) decrypts with key %s: %v", i, st.Key.ID, id, ok)
			}
		}
	}

	name, _, err := v.WriteMedia(ctx, "a", playlist.Media{Independent: true, Segments: segs})
	if err != nil {
		t.Fatal(err)
	}
	rc, _ := fs.Get(ctx, name)
	text, _ := io.ReadAll(rc)
	rc.Close()
	pm, err := playlist.ParseMedia(bytes.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range pm.Segments {
		if want := wks[wantPeriods[i]].KeyID; !strings.HasSuffix(s.Key.URI, want) {
			t.Errorf("segment %d key URI %s, want key %s", i, s.Key.URI, want)
		}
	}

	// A segment naming another period's key is refused.
	bad := append([]playlist.Segment(nil), segs...)
	bad[2].KeyURI = segs[0].KeyURI
	if _, _, err := v.WriteMedia(ctx, "b", playlist.Media{Segments: bad}); err == nil {
		t.Error("a segment under the wrong period's key was written")
	}
	// An init section stored in period 0 may not serve period 1.
	withInit := append([]playlist.Segment(nil), segs...)
	withInit[0].Init = &playlist.Init{URI: "init_00000.mp4", KeyURI: segs[0].KeyURI}
	if _, _, err := v.WriteMedia(ctx, "c", playlist.Media{Segments: withInit}); err == nil || !strings.Contains(err.Error(), "init section") {
		t.Errorf("an init section used across a key boundary: %v", err)
	}
	// Verify refuses a Stored that names a key not of this version.
	st := stored[0]
	st.Key.ID = "k_ffffffffffffffffffffffffffffffff"
	if err := v.Verify(ctx, st); err == nil || errors.Is(err, ErrVerify) {
		t.Errorf("verify with a foreign key id: %v", err)
	}
}

// TestNoKeyPeriodOneKey: KeyPeriod 0 keeps one key for any length.
func TestNoKeyPeriodOneKey(t *testing.T) {
	ctx := context.Background()
	fs, _ := storage.NewFS(t.TempDir())
	v, err := New(fs, randomKeyring(t), Options{}).Begin("hls/vid/v1/", "https://k.example/{key_id}")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := v.Put(ctx, Object{Name: fmt.Sprintf("a/seg_%05d.ts", i), Body: strings.NewReader("x"), Size: 1, Start: 3600 * float64(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if ks := v.Keys(); len(ks) != 1 {
		t.Fatalf("keys %+v", ks)
	}
}
