package secretcheck

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"os/exec"
	"strings"
	"testing"
)

func TestDistinct(t *testing.T) {
	for s, want := range map[string]int{"": 0, "aaaa": 1, "abab": 2, "password": 7, "\x00\xff\x00": 2} {
		if got := Distinct([]byte(s)); got != want {
			t.Errorf("Distinct(%q) = %d, want %d", s, got, want)
		}
	}
}

func TestText(t *testing.T) {
	for name, s := range map[string]string{
		"32 identical letters": strings.Repeat("a", 32),
		"a word repeated":      strings.Repeat("secret", 8),
		"short":                "k7#Qz!x",
		"9 distinct":           strings.Repeat("abcdefghi", 4),
	} {
		err := Text([]byte(s), 32)
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		if strings.Contains(err.Error(), s) {
			t.Errorf("%s: the value is in the error: %v", name, err)
		}
	}
	if err := Text([]byte(strings.Repeat("a", 31)), 32); err == nil || !strings.Contains(err.Error(), "at least 32") {
		t.Errorf("31 bytes: %v", err)
	}
	if err := Text([]byte(strings.Repeat("a", 32)), 32); err == nil || !strings.Contains(err.Error(), "only 1 distinct") {
		t.Errorf("32 a's: %v", err)
	}
	// What operators are told to run passes: real openssl output, and many
	// crypto/rand samples in the same encodings.
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Fatalf("openssl not found: %v", err)
	}
	for range 20 {
		for _, args := range [][]string{{"rand", "-base64", "32"}, {"rand", "-hex", "32"}} {
			out, err := exec.Command(openssl, args...).Output()
			if err != nil {
				t.Fatal(err)
			}
			if err := Text([]byte(strings.TrimSpace(string(out))), 32); err != nil {
				t.Fatalf("openssl %v: %v", args, err)
			}
		}
	}
	for range 100000 {
		var b [32]byte
		rand.Read(b[:])
		for _, s := range []string{base64.StdEncoding.EncodeToString(b[:]), hex.EncodeToString(b[:])} {
			if err := Text([]byte(s), 32); err != nil {
				t.Fatalf("random %q: %v", s, err)
			}
		}
	}
}
