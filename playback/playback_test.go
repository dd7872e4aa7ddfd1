package playback

import (
	"encoding/base64"
	"errors"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	secretA = "a-secret-that-is-at-least-32-bytes-long!"
	secretB = "another-secret-of-32-bytes-or-more-......"
)

func claims(exp time.Time) Claims {
	return Claims{Video: "vid-1", Subject: "user 42", Session: NewSessionID(), Expires: exp}
}

func TestMintVerify(t *testing.T) {
	s, err := ParseSecrets("k2:" + secretB + ", k1:" + secretA)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_700_000_000, 0)
	c := claims(now.Add(time.Hour))
	tok, err := s.Mint(c)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tok, "v1.k2.") || strings.Count(tok, ".") != 3 {
		t.Fatalf("token %q: want v1.k2.<payload>.<mac>", tok)
	}
	got, err := s.Verify(tok, now)
	if err != nil || got != c {
		t.Fatalf("verify: %+v %v, want %+v", got, err, c)
	}
	// Expired: the claims come back with ErrExpired.
	if got, err := s.Verify(tok, c.Expires); !errors.Is(err, ErrExpired) || got.Video != c.Video {
		t.Fatalf("at expiry: %+v %v", got, err)
	}
	// Rotation: a gateway that knows only the old secret rejects the new
	// kid; one that knows both accepts tokens of either.
	old, _ := ParseSecrets("k1:" + secretA)
	if _, err := old.Verify(tok, now); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("unknown kid: %v", err)
	}
	oldTok, _ := old.Mint(c)
	if _, err := s.Verify(oldTok, now); err != nil {
		t.Fatalf("token of the second secret: %v", err)
	}
	// Same kid, other secret: signature error.
	other, _ := ParseSecrets("k2:" + secretA)
	if _, err := other.Verify(tok, now); !errors.Is(err, ErrSignature) {
		t.Fatalf("other secret: %v", err)
	}
}

func TestTampered(t *testing.T) {
	s, _ := ParseSecrets("k1:" + secretA)
	now := time.Unix(1_700_000_000, 0)
	tok, _ := s.Mint(claims(now.Add(time.Hour)))
	parts := strings.Split(tok, ".")
	otherVideo := base64.RawURLEncoding.EncodeToString([]byte(`{"vid":"vid-2","sub":"user 42","sid":"x","exp":1800000000}`))
	cases := map[string]string{
		"empty":           "",
		"garbage":         "not-a-token",
		"version":         "v2." + strings.Join(parts[1:], "."),
		"payload":         parts[0] + "." + parts[1] + "." + otherVideo + "." + parts[3],
		"mac flipped":     tok[:len(tok)-2] + flip(tok[len(tok)-2]) + tok[len(tok)-1:],
		"mac truncated":   tok[:len(tok)-4],
		"mac extended":    tok + "AA",
		"extra part":      tok + ".x",
		"kid swapped":     parts[0] + ".k2." + parts[2] + "." + parts[3],
		"huge":            strings.Repeat("A", MaxTokenLen+1),
		"payload not b64": parts[0] + "." + parts[1] + ".!!!." + parts[3],
	}
	for name, bad := range cases {
		if _, err := s.Verify(bad, now); err == nil || errors.Is(err, ErrExpired) {
			t.Errorf("%s: verify %q: %v, want a 401-class error", name, bad, err)
		}
	}
}

func flip(c byte) string {
	if c == 'A' {
		return "B"
	}
	return "A"
}

// TestWeakSecretsRefused: a token secret of few distinct characters is
// refused without showing it; what operators are told to generate passes.
func TestWeakSecretsRefused(t *testing.T) {
	for _, weak := range []string{strings.Repeat("a", 32), strings.Repeat("ab", 20), strings.Repeat("12345678", 5)} {
		_, err := ParseSecrets("k1:" + secretA + ",k2:" + weak)
		if err == nil || !strings.Contains(err.Error(), `secret "k2" has only`) || !strings.Contains(err.Error(), "distinct characters") {
			t.Errorf("%q: %v", weak, err)
		}
		if err != nil && strings.Contains(err.Error(), weak) {
			t.Errorf("the secret is in the error: %v", err)
		}
	}
	for range 10 {
		out, err := exec.Command("openssl", "rand", "-base64", "32").Output()
		if err != nil {
			t.Fatalf("openssl: %v", err)
		}
		if _, err := ParseSecrets("k1:" + strings.TrimSpace(string(out))); err != nil {
			t.Fatalf("openssl rand -base64 32: %v", err)
		}
	}
}

func TestValidation(t *testing.T) {
	if _, err := ParseSecrets(""); err == nil {
		t.Error("no secrets accepted")
	}
	if _, err := ParseSecrets("k1:short"); err == nil {
		t.Error("short secret accepted")
	}
	if _, err := ParseSecrets("k1:" + secretA + ",k1:" + secretB); err == nil {
		t.Error("duplicate kid accepted")
	}
	if _, err := ParseSecrets("bad kid:" + secretA); err == nil {
		t.Error("bad kid accepted")
	}
	if _, err := ParseSecrets(secretA); err == nil {
		t.Error("secret without kid accepted")
	}
	s, _ := ParseSecrets("k1:" + secretA)
	exp := time.Now().Add(time.Hour)
	for _, c := range []Claims{
		{Video: "../x", Subject: "s", Session: "a", Expires: exp},
		{Video: "v", Subject: "", Session: "a", Expires: exp},
		{Video: "v", Subject: "a\nb", Session: "a", Expires: exp},
		{Video: "v", Subject: "s", Session: "a/b", Expires: exp},
		{Video: "v", Subject: "s", Session: "a"},
	} {
		if _, err := s.Mint(c); err == nil {
			t.Errorf("minted %+v", c)
		}
	}
}

// The MAC's 32 bytes take 43 base64 characters, whose last one carries 2
// unused bits: four strings decode to the same MAC. Only the canonical one
// (unused bits zero) verifies, and so does no padded, line-broken or
// otherwise re-spelled token, even one whose payload spelling was signed.
func TestCanonicalEncodingOnly(t *testing.T) {
	s, _ := ParseSecrets("k1:" + secretA)
	now := time.Unix(1_700_000_000, 0)
	tok, _ := s.Mint(claims(now.Add(time.Hour)))
	if _, err := s.Verify(tok, now); err != nil {
		t.Fatal(err)
	}
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := strings.IndexByte(alphabet, tok[len(tok)-1])
	if last&3 != 0 {
		t.Fatalf("minted MAC %q is not canonical", tok[len(tok)-1:])
	}
	accepted := 0
	for low := range 4 {
		variant := tok[:len(tok)-1] + string(alphabet[last|low])
		mac, err := base64.RawURLEncoding.DecodeString(variant[strings.LastIndexByte(variant, '.')+1:])
		want, _ := base64.RawURLEncoding.DecodeString(tok[strings.LastIndexByte(tok, '.')+1:])
		if err != nil || string(mac) != string(want) {
			t.Fatalf("variant %d does not decode (leniently) to the same MAC: %v", low, err)
		}
		_, err = s.Verify(variant, now)
		switch {
		case low == 0 && err != nil:
			t.Errorf("canonical token refused: %v", err)
		case low != 0 && err == nil:
			t.Errorf("variant %d of the MAC (%q) accepted", low, variant[len(variant)-1:])
		case low != 0 && !errors.Is(err, ErrSignature):
			t.Errorf("variant %d: %v, want ErrSignature", low, err)
		}
		if err == nil {
			accepted++
		}
	}
	if accepted != 1 {
		t.Errorf("%d spellings of one MAC accepted, want 1", accepted)
	}

	// Re-spellings of the whole token: padding, line breaks, spaces.
	parts := strings.Split(tok, ".")
	for name, bad := range map[string]string{
		"mac padded":        tok + "=",
		"mac with newline":  tok[:len(tok)-5] + "\n" + tok[len(tok)-5:],
		"mac with CR LF":    tok[:len(tok)-5] + "\r\n" + tok[len(tok)-5:],
		"payload with CRLF": parts[0] + "." + parts[1] + "." + parts[2][:4] + "\r\n" + parts[2][4:] + "." + parts[3],
		"trailing newline":  tok + "\n",
		"leading space":     " " + tok,
		"standard alphabet": strings.NewReplacer("-", "+", "_", "/").Replace(tok),
	} {
		if bad == tok {
			continue // the token happened to have no '-' or '_'
		}
		if _, err := s.Verify(bad, now); err == nil {
			t.Errorf("%s: accepted %q", name, bad)
		}
	}

	// A payload spelled non-canonically and signed as such (the MAC covers
	// the text): still refused, so the payload has one spelling too.
	body := []byte(`{"vid":"vid-1","sub":"u","sid":"s1","exp":1700003600}`)
	enc := b64.EncodeToString(body)
	idx := strings.IndexByte(alphabet, enc[len(enc)-1])
	if len(body)%3 == 0 {
		t.Fatal("pick a payload whose length leaves unused bits")
	}
	for low := 1; low < 1<<(6-2*(len(body)%3)) && low < 64; low++ {
		if idx|low == idx {
			continue
		}
		odd := enc[:len(enc)-1] + string(alphabet[idx|low])
		signed := "v1.k1." + odd
		mac := s.mac(s.byKID["k1"], signed)
		forged := signed + "." + b64.EncodeToString(mac[:])
		if _, err := s.Verify(forged, now); !errors.Is(err, ErrMalformed) {
			t.Errorf("signed non-canonical payload %q: %v, want ErrMalformed", odd[len(odd)-2:], err)
		}
	}
	for name, p := range map[string]string{"padded payload": enc + "==", "payload with newline": enc[:3] + "\n" + enc[3:]} {
		signed := "v1.k1." + p
		mac := s.mac(s.byKID["k1"], signed)
		if _, err := s.Verify(signed+"."+b64.EncodeToString(mac[:]), now); !errors.Is(err, ErrMalformed) {
			t.Errorf("signed %s: %v, want ErrMalformed", name, err)
		}
	}
}

// A Signer with a maximum lifetime neither mints nor accepts a token that
// expires further ahead than that (plus ClockSkew when verifying).
func TestMaxLifetime(t *testing.T) {
	unbounded, _ := ParseSecrets("k1:" + secretA)
	s := unbounded.WithMaxLifetime(24 * time.Hour)
	if s.MaxLifetime() != 24*time.Hour || unbounded.MaxLifetime() != 0 {
		t.Fatalf("lifetimes %v %v", s.MaxLifetime(), unbounded.MaxLifetime())
	}
	now := time.Now()
	tenYears, err := unbounded.Mint(claims(now.Add(10 * 365 * 24 * time.Hour)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := unbounded.Verify(tenYears, now); err != nil {
		t.Fatalf("without a bound: %v", err)
	}
	if c, err := s.Verify(tenYears, now); !errors.Is(err, ErrLifetime) || c.Subject != "user 42" {
		t.Errorf("ten-year token: %+v %v, want ErrLifetime with the claims", c, err)
	}
	if _, err := s.Mint(claims(now.Add(10 * 365 * 24 * time.Hour))); err == nil {
		t.Error("minted a ten-year token under a 24h bound")
	}
	if _, err := s.Mint(claims(now.Add(24*time.Hour + time.Minute))); err == nil {
		t.Error("minted a token one minute beyond the bound")
	}
	ok, err := s.Mint(claims(now.Add(24 * time.Hour)))
	if err != nil {
		t.Fatalf("a token of exactly the bound: %v", err)
	}
	if _, err := s.Verify(ok, now); err != nil {
		t.Errorf("token of the maximum lifetime: %v", err)
	}
	// The verifier's clock may be behind the minter's by up to ClockSkew.
	if _, err := s.Verify(ok, now.Add(-ClockSkew+time.Second)); err != nil {
		t.Errorf("verifier %v behind: %v", ClockSkew-time.Second, err)
	}
	if _, err := s.Verify(ok, now.Add(-ClockSkew-2*time.Second)); !errors.Is(err, ErrLifetime) {
		t.Errorf("verifier more than the skew behind: %v", err)
	}
	// Expiry is still checked first: an expired token says so.
	old, _ := unbounded.Mint(claims(now.Add(-time.Minute)))
	if _, err := s.Verify(old, now); !errors.Is(err, ErrExpired) {
		t.Errorf("expired: %v", err)
	}
	if s.WithMaxLifetime(0).MaxLifetime() != 0 {
		t.Error("WithMaxLifetime(0) keeps a bound")
	}
}

func TestConcurrentVerify(t *testing.T) {
	s, _ := ParseSecrets("k1:" + secretA)
	now := time.Now()
	tok, _ := s.Mint(claims(now.Add(time.Hour)))
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 200 {
				if _, err := s.Verify(tok, now); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestMasterURL(t *testing.T) {
	got := MasterURL("https://video.example.com/", "abc", "v1.k.p.m")
	if want := "https://video.example.com/v1/videos/abc/master.m3u8?token=v1.k.p.m"; got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
}

func BenchmarkVerify(b *testing.B) {
	s, _ := ParseSecrets("k1:" + secretA)
	now := time.Now()
	tok, _ := s.Mint(claims(now.Add(time.Hour)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Verify(tok, now); err != nil {
			b.Fatal(err)
		}
	}
}
