package keys

import (
	"bytes"
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
