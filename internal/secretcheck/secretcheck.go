// Package secretcheck measures whether a configured secret looks like
// random bytes rather than something a person chose: the one measure the
// programs share for "few distinct characters" (keys.ParseKEK counts byte
// values of a KEK with it; playback and the gateway check text secrets with
// Text). It never returns or formats a secret.
package secretcheck

import "fmt"

// Distinct is the number of distinct byte values in b.
func Distinct(b []byte) int {
	var seen [256]bool
	n := 0
	for _, c := range b {
		if !seen[c] {
			seen[c], n = true, n+1
		}
	}
	return n
}

// MinTextDistinct is the fewest distinct characters a text secret (a
// playback token secret, the gateway's admin token) may have. The output of
// `openssl rand -base64 32` (43 characters from 64) has fewer by chance with
// probability 6e-27, that of `openssl rand -hex 32` (64 from 16) with
// probability 1.2e-12; 32 identical letters, or a short word repeated, have
// fewer.
const MinTextDistinct = 10

// Text checks a text secret: at least minLen bytes and MinTextDistinct
// distinct characters. The error says what is wrong, never the value.
func Text(b []byte, minLen int) error {
	if len(b) < minLen {
		return fmt.Errorf("is %d bytes, want at least %d (generate one with `openssl rand -base64 32`)", len(b), minLen)
	}
	if d := Distinct(b); d < MinTextDistinct {
		return fmt.Errorf("has only %d distinct characters, want at least %d: it is not random (generate one with `openssl rand -base64 32`)", d, MinTextDistinct)
	}
	return nil
}
