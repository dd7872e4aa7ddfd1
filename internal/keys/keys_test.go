package keys

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/hlsvault/hlsvault/internal/testenv"
)

func testKEK(t *testing.T, seed byte) (string, *KEK) {
	t.Helper()
	s := testenv.SeededKEK(seed)
	k, err := ParseKEK(s)
	if err != nil {
		t.Fatal(err)
	}
	return s, k
}

func TestWrapRoundTrip(t *testing.T) {
	_, kek := testKEK(t, 1)
	ck, err := NewContentKey()
	if err != nil {
		t.Fatal(err)
	}
	id, _ := NewKeyID()
	w, err := kek.Wrap(id, ck)
	if err != nil {
		t.Fatal(err)
	}
	if len(w) != WrappedSize || w[0] != 1 {
		t.Fatalf("wrapped: len %d, version %d", len(w), w[0])
	}
	if bytes.Contains(w, ck.Bytes()) {
		t.Fatal("wrapped key contains the plain key")
	}
	got, err := kek.Unwrap(id, w)
	if err != nil {
		t.Fatal(err)
	}
	if got != ck {
		t.Fatal("unwrap returned a different key")
	}
}

func TestUnwrapRefusesMisuse(t *testing.T) {
	_, kek := testKEK(t, 1)
	_, other := testKEK(t, 7)
	ck, _ := NewContentKey()
	w, _ := kek.Wrap("k_a", ck)

	flipped := bytes.Clone(w)
	flipped[20] ^= 1
	for name, f := range map[string]func() error{
		"other KEK":    func() error { _, err := other.Unwrap("k_a", w); return err },
		"other key id": func() error { _, err := kek.Unwrap("k_b", w); return err },
		"flipped bit":  func() error { _, err := kek.Unwrap("k_a", flipped); return err },
		"truncated":    func() error { _, err := kek.Unwrap("k_a", w[:30]); return err },
	} {
		if err := f(); !errors.Is(err, ErrUnwrap) {
			t.Errorf("%s: err = %v, want ErrUnwrap", name, err)
		}
	}
}

func TestWrappedFormatIsDocumented(t *testing.T) {
	// Recovery by hand, exactly as the README describes it: AES-256-GCM
	// with nonce = bytes 1..12, ciphertext||tag = bytes 13..44 and
	// AAD = "hlsvault/content-key/v1\x00" + key id.
	raw := make([]byte, 32)
	for i := range raw {
		raw[i] = byte(i * 3)
	}
	kek, err := ParseKEK(base64.StdEncoding.EncodeToString(raw))
	if err != nil {
		t.Fatal(err)
	}
	ck, _ := ContentKeyFromBytes([]byte("0123456789abcdef"))
	w, _ := kek.Wrap("k_x", ck)
	plain, err := kek.aead.Open(nil, w[1:13], w[13:], []byte("hlsvault/content-key/v1\x00k_x"))
	if err != nil || string(plain) != "0123456789abcdef" {
		t.Fatalf("manual unwrap: %q, %v", plain, err)
	}
}

func TestContentKeyNeverPrints(t *testing.T) {
	ck, _ := ContentKeyFromBytes([]byte("SECRETSECRET1234"))
	var logs bytes.Buffer
	slog.New(slog.NewTextHandler(&logs, nil)).Info("x", "key", ck)
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("x", "key", ck)
	outs := []string{
		fmt.Sprint(ck), fmt.Sprintf("%v %+v %#v %x %X %s %q %d", ck, ck, ck, ck, ck, ck, ck, ck),
		fmt.Sprintf("%v", struct{ K ContentKey }{ck}), fmt.Sprintf("%+v", &ck), logs.String(),
		fmt.Errorf("wrap: %v", ck).Error(),
	}
	if b, err := json.Marshal(struct{ K ContentKey }{ck}); err == nil {
		outs = append(outs, string(b))
	}
	for _, o := range outs {
		if strings.Contains(o, "SECRET") || strings.Contains(strings.ToLower(o), "5345435245") {
			t.Errorf("key leaked: %s", o)
		}
	}
}

func TestParseKEK(t *testing.T) {
	good, _ := testKEK(t, 9)
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{good, true},
		{" " + good + "\n", true},
		{"", false},
		{"not base64!", false},
		{base64.StdEncoding.EncodeToString(make([]byte, 16)), false},
		{base64.StdEncoding.EncodeToString(make([]byte, 32)), false},
	} {
		_, err := ParseKEK(tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("ParseKEK(%q) err = %v, want ok=%v", tc.in, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrBadKEK) {
			t.Errorf("ParseKEK(%q) err = %v, want ErrBadKEK", tc.in, err)
		}
	}
}

// TestParseKEKRefusesWeakKEKs: a KEK whose 32 bytes are text, or have few
// distinct values, is refused with the reason and without the value;
// random 32-byte KEKs pass.
func TestParseKEKRefusesWeakKEKs(t *testing.T) {
	printable := make([]byte, 32)
	for i := range printable {
		printable[i] = byte(0x21 + i*2) // 32 distinct values, all printable
	}
	few := make([]byte, 32)
	for i := range few {
		few[i] = byte(0x80 + i%15) // 15 distinct values, none printable
	}
	for name, tc := range map[string]struct {
		raw  []byte
		want string
	}{
		"base64 of a password": {[]byte("passwordpasswordpasswordpassword"), "printable ASCII"},
		"printable bytes":      {printable, "printable ASCII"},
		"few distinct":         {few, "only 15 distinct values, want at least 16"},
		"one value":            {bytes.Repeat([]byte{0xff}, 32), "only 1 distinct"},
	} {
		in := base64.StdEncoding.EncodeToString(tc.raw)
		_, err := ParseKEK(in)
		if !errors.Is(err, ErrBadKEK) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "openssl rand -base64 32") {
			t.Errorf("%s: err = %v, want ErrBadKEK saying %q", name, err, tc.want)
		}
		if err != nil && (strings.Contains(err.Error(), in) || strings.Contains(err.Error(), "passwordpassword")) {
			t.Errorf("%s: the KEK is in the error: %v", name, err)
		}
		if _, err := NewKeyring(testenv.SeededKEK(0), in); !errors.Is(err, ErrBadKEK) {
			t.Errorf("%s as a retired KEK: %v", name, err)
		}
	}
	edge := make([]byte, 32)
	for i := range edge {
		edge[i] = byte(0x80 + i%16) // exactly 16 distinct values: accepted
	}
	if _, err := ParseKEK(base64.StdEncoding.EncodeToString(edge)); err != nil {
		t.Errorf("16 distinct values: %v", err)
	}
	for range 100000 {
		raw := make([]byte, 32)
		rand.Read(raw)
		if _, err := ParseKEK(base64.StdEncoding.EncodeToString(raw)); err != nil {
			t.Fatalf("random KEK refused: %v", err)
		}
	}
}

func TestKeyringRotation(t *testing.T) {
	oldS, oldK := testKEK(t, 1)
	newS, newK := testKEK(t, 50)
	ck, _ := NewContentKey()
	w, _ := oldK.Wrap("k_r", ck)

	if _, err := NewKeyring(""); !errors.Is(err, ErrBadKEK) {
		t.Fatalf("empty primary: %v", err)
	}
	r, err := NewKeyring(newS, oldS)
	if err != nil {
		t.Fatal(err)
	}
	if r.Primary().ID() != newK.ID() {
		t.Fatal("primary is not the new KEK")
	}
	got, err := r.Unwrap(oldK.ID(), "k_r", w)
	if err != nil || got != ck {
		t.Fatalf("unwrap under retired KEK: %v", err)
	}
	only, _ := NewKeyring(newS)
	if _, err := only.Unwrap(oldK.ID(), "k_r", w); !errors.Is(err, ErrUnknownKEK) {
		t.Fatalf("err = %v, want ErrUnknownKEK", err)
	}
}

func TestKeyIDs(t *testing.T) {
	a, _ := NewKeyID()
	b, _ := NewKeyID()
	if a == b || !ValidKeyID(a) || ValidKeyID("k_../etc") || ValidKeyID("") {
		t.Fatalf("key ids: %q %q", a, b)
	}
}
