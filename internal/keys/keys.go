// Package keys makes content keys and protects them at rest.
//
// A content key is the 16-byte AES-128 key of one published version of one
// video. It is generated here, lives in the worker's memory while the
// version's segments are encrypted, and is stored only wrapped (envelope
// encryption) under a key-encryption key (KEK) from configuration. The
// package imports nothing that writes to blob storage: keys never reach it.
//
// # Wrapped format (version 1)
//
// A wrapped key is 45 bytes:
//
//	offset  size  field
//	0       1     format version, 0x01
//	1       12    nonce, random (crypto/rand)
//	13      32    AES-256-GCM(KEK, nonce, content key, aad) = 16-byte ciphertext || 16-byte tag
//
// The additional authenticated data is the ASCII string
// "hlsvault/content-key/v1" followed by one NUL byte and the key id, so a
// wrapped key copied onto another key's row fails to unwrap. The KEK id
// stored beside each wrapped key names the KEK that wrapped it; see KEKID.
package keys

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/hlsvault/hlsvault/internal/secretcheck"
)

// Size is the length of a content key in bytes (AES-128).
const Size = 16

// WrappedSize is the length of a wrapped content key in bytes.
const WrappedSize = 1 + 12 + Size + 16

const (
	formatV1 = 0x01
	aadLabel = "hlsvault/content-key/v1\x00"
)

var (
	// ErrUnwrap means a wrapped key could not be opened: wrong KEK, a
	// different key id, or corrupted bytes.
	ErrUnwrap = errors.New("keys: cannot unwrap content key")
	// ErrUnknownKEK means a wrapped key names a KEK that is not configured.
	ErrUnknownKEK = errors.New("keys: unknown key-encryption key")
	// ErrBadKEK means the configured KEK is malformed.
	ErrBadKEK = errors.New("keys: bad key-encryption key")
)

// ContentKey is a 16-byte AES-128 content key. It refuses to print itself:
// every formatting path (fmt verbs, slog, JSON) yields a placeholder, so a
// key cannot leak into a log line or an error message by accident.
type ContentKey struct {
	b [Size]byte
}

// NewContentKey returns a fresh random key from crypto/rand.
func NewContentKey() (ContentKey, error) {
	var k ContentKey
	if _, err := rand.Read(k.b[:]); err != nil {
		return ContentKey{}, fmt.Errorf("keys: generate content key: %w", err)
	}
	return k, nil
}

// ContentKeyFromBytes copies b (exactly Size bytes) into a key. Tests use it
// to inject a known key; the gateway uses it after unwrapping.
func ContentKeyFromBytes(b []byte) (ContentKey, error) {
	var k ContentKey
	if len(b) != Size {
		return k, fmt.Errorf("keys: content key must be %d bytes, got %d", Size, len(b))
	}
	copy(k.b[:], b)
	return k, nil
}

// Bytes returns a copy of the raw key, for the cipher and the gated key
// endpoint only.
func (k ContentKey) Bytes() []byte {
	b := k.b
	return b[:]
}

// IsZero reports whether k is the zero value (never a generated key).
func (k ContentKey) IsZero() bool { return k.b == [Size]byte{} }

const redacted = "[content key redacted]"

// String implements fmt.Stringer without revealing the key.
func (ContentKey) String() string { return redacted }

// GoString implements fmt.GoStringer without revealing the key.
func (ContentKey) GoString() string { return redacted }

// Format implements fmt.Formatter so that %x, %v, %+v and friends never
// print the key bytes.
func (ContentKey) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(redacted)) }

// LogValue implements slog.LogValuer.
func (ContentKey) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalText refuses to encode the key, so it cannot end up in JSON.
func (ContentKey) MarshalText() ([]byte, error) {
	return nil, errors.New("keys: content keys are not serialisable")
}

// NewKeyID returns a random public identifier for a content key, used in
// EXT-X-KEY URIs. It is independent of the key bytes.
func NewKeyID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("keys: generate key id: %w", err)
	}
	return "k_" + hex.EncodeToString(b[:]), nil
}

// ValidKeyID reports whether id has the form NewKeyID produces: "k_" and
// 32 lowercase hex digits. (A loop, not a regexp: the gateway checks every
// key request's id before anything else.)
func ValidKeyID(id string) bool {
	if len(id) != 2+32 || id[:2] != "k_" {
		return false
	}
	for i := 2; i < len(id); i++ {
		if c := id[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// KEK is a key-encryption key: AES-256-GCM.
type KEK struct {
	id   string
	aead cipher.AEAD
}

// MinKEKDistinct is the fewest distinct byte values a KEK's 32 bytes may
// have. 32 random bytes have about 30; fewer than 16 happens by chance with
// probability 3.2e-17 (and all 32 printable ASCII with probability 1.7e-14).
const MinKEKDistinct = 16

// ParseKEK decodes a KEK given as standard base64 of 32 random bytes (what
// `openssl rand -base64 32` prints). It refuses bytes that are not random:
// all printable ASCII (a password, base64 of a phrase) or fewer than
// MinKEKDistinct distinct values. Errors never show the KEK.
func ParseKEK(b64 string) (*KEK, error) {
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(b64))
	if err != nil {
		return nil, fmt.Errorf("%w: not standard base64", ErrBadKEK)
	}
	if len(raw) != 32 {
		return nil, fmt.Errorf("%w: must decode to 32 bytes, got %d", ErrBadKEK, len(raw))
	}
	if allPrintable(raw) {
		return nil, fmt.Errorf("%w: its 32 bytes are all printable ASCII, text rather than random bytes (base64 of a passphrase?); generate one with `openssl rand -base64 32`", ErrBadKEK)
	}
	if d := secretcheck.Distinct(raw); d < MinKEKDistinct {
		return nil, fmt.Errorf("%w: its 32 bytes have only %d distinct values, want at least %d (random bytes have about 30); generate one with `openssl rand -base64 32`", ErrBadKEK, d, MinKEKDistinct)
	}
	block, err := aes.NewCipher(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadKEK, err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadKEK, err)
	}
	return &KEK{id: KEKID(raw), aead: aead}, nil
}

func allPrintable(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c > 0x7e {
			return false
		}
	}
	return true
}

// KEKID derives the public identifier of a KEK: "kek_" and the first 16 hex
// digits of SHA-256("hlsvault-kek-id" || kek). Operators can recompute it from
// the KEK alone, and it reveals nothing about the KEK.
func KEKID(raw []byte) string {
	h := sha256.New()
	h.Write([]byte("hlsvault-kek-id"))
	h.Write(raw)
	return "kek_" + hex.EncodeToString(h.Sum(nil)[:8])
}

// ID returns the KEK's identifier, stored beside every key it wraps.
func (k *KEK) ID() string { return k.id }

// Wrap seals ck under the KEK, bound to keyID. See the package doc for the
// byte layout.
func (k *KEK) Wrap(keyID string, ck ContentKey) ([]byte, error) {
	out := make([]byte, 1+12, WrappedSize)
	out[0] = formatV1
	if _, err := rand.Read(out[1:13]); err != nil {
		return nil, fmt.Errorf("keys: wrap: nonce: %w", err)
	}
	return k.aead.Seal(out, out[1:13], ck.b[:], aad(keyID)), nil
}

// Unwrap opens a key wrapped by Wrap with the same keyID.
func (k *KEK) Unwrap(keyID string, wrapped []byte) (ContentKey, error) {
	var ck ContentKey
	if len(wrapped) != WrappedSize || wrapped[0] != formatV1 {
		return ck, fmt.Errorf("%w: key %s: unexpected length or format", ErrUnwrap, keyID)
	}
	plain, err := k.aead.Open(nil, wrapped[1:13], wrapped[13:], aad(keyID))
	if err != nil {
		return ck, fmt.Errorf("%w: key %s under %s: authentication failed", ErrUnwrap, keyID, k.id)
	}
	copy(ck.b[:], plain)
	clear(plain)
	return ck, nil
}

func aad(keyID string) []byte { return []byte(aadLabel + keyID) }

// Keyring holds the KEK that wraps new keys and the retired KEKs that may
// still have keys wrapped under them, so that a KEK can be rotated without
// downtime: deploy the new KEK as primary with the old one retired, rewrap,
// then drop the old one.
type Keyring struct {
	primary *KEK
	byID    map[string]*KEK
}

// NewKeyring parses the primary KEK and any retired ones (each base64).
func NewKeyring(primary string, retired ...string) (*Keyring, error) {
	if strings.TrimSpace(primary) == "" {
		return nil, fmt.Errorf("%w: KEY_ENCRYPTION_KEY is not set (generate one with `openssl rand -base64 32`)", ErrBadKEK)
	}
	p, err := ParseKEK(primary)
	if err != nil {
		return nil, err
	}
	r := &Keyring{primary: p, byID: map[string]*KEK{p.ID(): p}}
	for i, s := range retired {
		if strings.TrimSpace(s) == "" {
			continue
		}
		k, err := ParseKEK(s)
		if err != nil {
			return nil, fmt.Errorf("retired KEK %d: %w", i+1, err)
		}
		r.byID[k.ID()] = k
	}
	return r, nil
}

// Primary returns the KEK that wraps new keys.
func (r *Keyring) Primary() *KEK { return r.primary }

// IDs lists the ids of every KEK the keyring holds: the primary first,
// then the retired ones in order of id.
func (r *Keyring) IDs() []string {
	out := make([]string, 0, len(r.byID))
	for id := range r.byID {
		if id != r.primary.ID() {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return append([]string{r.primary.ID()}, out...)
}

// Unwrap opens a wrapped key with the KEK named kekID.
func (r *Keyring) Unwrap(kekID, keyID string, wrapped []byte) (ContentKey, error) {
	k, ok := r.byID[kekID]
	if !ok {
		return ContentKey{}, fmt.Errorf("%w: %s (key %s)", ErrUnknownKEK, kekID, keyID)
	}
	return k.Unwrap(keyID, wrapped)
}
