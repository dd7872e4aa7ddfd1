package packager

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/hlsvault/hlsvault/internal/storage"
)

// TestResume: BeginWhole makes every period's key at once; a version
// resumed elsewhere from its wrapped keys encrypts each period under the
// same key (what one piece stores, another's key decrypts), verifies what
// it stored, and, sealed, refuses media beyond its periods rather than make
// a key the others do not have.
func TestResume(t *testing.T) {
	ctx := context.Background()
	fs, err := storage.NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	kr := randomKeyring(t)
	p := New(fs, kr, Options{KeyPeriod: 10 * time.Second})
	const tmpl = "https://k.example/{key_id}"
	v, err := p.BeginWhole("hls/r/v1/", tmpl, 25)
	if err != nil {
		t.Fatal(err)
	}
	wks, err := v.WrappedKeys()
	if err != nil || len(wks) != 3 {
		t.Fatalf("BeginWhole for 25 s of 10 s periods: %d keys, %v", len(wks), err)
	}
	other := New(fs, kr, Options{KeyPeriod: 10 * time.Second})
	r, err := other.Resume("hls/r/v1/", tmpl, wks)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := r.Keys(), v.Keys(); len(got) != len(want) || got[2] != want[2] {
		t.Fatalf("resumed keys %+v, began %+v", got, want)
	}
	plain := bytes.Repeat([]byte{0x47}, 188*3)
	st, err := r.Put(ctx, Object{Name: "90p/seg_00005.ts", Body: bytes.NewReader(plain), Size: int64(len(plain)), Start: 20})
	if err != nil {
		t.Fatal(err)
	}
	if st.Key != v.Keys()[2] {
		t.Errorf("stored under %+v, want period 2's key %+v", st.Key, v.Keys()[2])
	}
	// The digest that Verify checks is the putting version's own (a seed
	// that never leaves it): the resumed version proves its objects.
	if err := r.Verify(ctx, st); err != nil {
		t.Errorf("the resumed version cannot verify what it stored: %v", err)
	}
	rc, err := fs.Get(ctx, st.Name)
	if err != nil {
		t.Fatal(err)
	}
	ct, _ := io.ReadAll(rc)
	rc.Close()
	if bytes.Contains(ct, plain[:188]) {
		t.Error("stored in the clear")
	}
	_, err = r.Put(ctx, Object{Name: "90p/seg_00008.ts", Body: bytes.NewReader(plain), Size: int64(len(plain)), Start: 31})
	if err == nil || !strings.Contains(err.Error(), "no key for") {
		t.Errorf("a sealed version put media of a new period: %v", err)
	}
	if _, err := other.Resume("hls/r/v1/", tmpl, nil); err == nil {
		t.Error("resumed without keys")
	}
	wks[1].Wrapped[0] ^= 1
	if _, err := other.Resume("hls/r/v1/", tmpl, wks); err == nil {
		t.Error("resumed from a damaged wrapped key")
	}
}
