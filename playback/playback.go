// Package playback mints and checks the signed tokens that let a player
// fetch one video's playlists and key from the playback gateway
// (cmd/gateway). The app server imports it to hand a player a URL:
//
//	signer, _ := playback.ParseSecrets(os.Getenv("PLAYBACK_TOKEN_SECRETS"))
//	tok, _ := signer.Mint(playback.Claims{
//		Video: videoID, Subject: accountID, Session: playback.NewSessionID(),
//		Expires: time.Now().Add(4 * time.Hour),
//	})
//	url := playback.MasterURL("https://video.example.com", videoID, tok)
//
// Mint a new session id for every playback: the gateway counts concurrent
// sessions per subject, and a seek or a bitrate switch stays the same session
// because it reuses the token.
//
// # Token format (version 1)
//
//	v1.<kid>.<payload>.<mac>
//
// kid names the secret that signed the token (letters, digits, '-' and '_',
// at most 32), so secrets can rotate: the gateway accepts every configured
// secret and the first one mints. payload is base64url (no padding) of a JSON
// object {"vid": video, "sub": subject, "sid": session id, "exp": expiry in
// Unix seconds}. mac is base64url (no padding) of
// HMAC-SHA256(secret, "hlsvault-playback-v1." + kid + "." + payload), all 32
// bytes. Every part is URL-safe, so a token goes into a query string as it
// is. A token is not bound to the client's IP address: players move between
// networks in the middle of a stream.
//
// Verify reads one spelling of a token only: payload and MAC must be the
// canonical unpadded base64url of their bytes (no '=', no line breaks, the
// unused low bits of the last character zero), so a token cannot be made
// into other strings that verify. A Signer given a maximum lifetime
// (WithMaxLifetime) refuses to mint, and to accept, a token whose expiry is
// further ahead than that lifetime (plus ClockSkew when verifying).
package playback

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/hlsvault/hlsvault/internal/secretcheck"
)

const (
	version   = "v1"
	macLabel  = "hlsvault-playback-v1."
	macSize   = sha256.Size
	maxKIDLen = 32
	// MinSecretLen is the shortest secret accepted, in bytes.
	MinSecretLen = 32
	// MaxTokenLen bounds what Verify reads, so a hostile header cannot make
	// it decode megabytes.
	MaxTokenLen = 2048
	// MaxSubjectLen and MaxSessionLen bound the claims.
	MaxSubjectLen = 256
	MaxSessionLen = 128
	// ClockSkew is how far beyond now + the maximum lifetime a token's
	// expiry may be and still verify: the clock of the app server that
	// minted it may run ahead of the verifier's.
	ClockSkew = time.Minute
)

// b64 is the one spelling of payload and MAC: unpadded base64url with the
// unused trailing bits zero. (Strict still skips '\r' and '\n'; Verify
// refuses every byte outside the alphabet before decoding.)
var b64 = base64.RawURLEncoding.Strict()

// Errors returned by Verify. ErrMalformed, ErrUnknownKey and ErrSignature
// mean the token is not ours (HTTP 401); ErrExpired means it was ours (403).
// ErrLifetime means the signature is good but the expiry is further ahead
// than the Signer's maximum lifetime allows: a misconfigured app server or a
// leaked secret, refused like a token that is not ours (401) and worth a log
// line.
var (
	ErrMalformed  = errors.New("playback: malformed token")
	ErrUnknownKey = errors.New("playback: token signed with an unknown key id")
	ErrSignature  = errors.New("playback: bad token signature")
	ErrExpired    = errors.New("playback: token expired")
	ErrLifetime   = errors.New("playback: token expiry beyond the maximum token lifetime")
)

// Claims are what a token says: this subject (an account) may play this
// video in this playback session until Expires.
type Claims struct {
	Video   string
	Subject string
	Session string
	Expires time.Time
}

type payload struct {
	Video   string `json:"vid"`
	Subject string `json:"sub"`
	Session string `json:"sid"`
	Expires int64  `json:"exp"`
}

// Validate checks the claims before they are signed.
func (c Claims) Validate() error {
	switch {
	case !validID(c.Video, 128):
		return fmt.Errorf("playback: video id %q: want 1-128 letters, digits, '-' or '_'", c.Video)
	case c.Subject == "" || len(c.Subject) > MaxSubjectLen:
		return fmt.Errorf("playback: subject must be 1-%d bytes", MaxSubjectLen)
	case strings.ContainsFunc(c.Subject, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return errors.New("playback: subject contains control characters")
	case !validID(c.Session, MaxSessionLen):
		return fmt.Errorf("playback: session id %q: want 1-%d letters, digits, '-' or '_'", c.Session, MaxSessionLen)
	case c.Expires.IsZero():
		return errors.New("playback: no expiry")
	}
	return nil
}

func validID(s string, maxLen int) bool {
	if s == "" || len(s) > maxLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// NewSessionID returns a random session id (32 hex digits). Mint one per
// playback.
func NewSessionID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("playback: crypto/rand failed: " + err.Error())
	}
	return hex.EncodeToString(b[:])
}

// Secret is one signing secret and its key id.
type Secret struct {
	KeyID  string
	Secret []byte
}

// Signer mints tokens with its first secret and verifies tokens signed by
// any of its secrets. It is safe for concurrent use.
type Signer struct {
	secrets     []Secret
	byKID       map[string]*macPool
	maxLifetime time.Duration // 0: no bound
}

// macPool recycles HMAC states: a fresh hmac.New costs two SHA-256 block
// computations, which matter at ten thousand key requests a second.
type macPool struct {
	secret []byte
	pool   sync.Pool
}

func (p *macPool) get() hash.Hash {
	if h, ok := p.pool.Get().(hash.Hash); ok {
		h.Reset()
		return h
	}
	return hmac.New(sha256.New, p.secret)
}

func (p *macPool) put(h hash.Hash) { p.pool.Put(h) }

// NewSigner builds a Signer; secrets[0] mints. Key ids must be distinct,
// 1-32 letters, digits, '-' or '_', and every secret at least MinSecretLen
// bytes with at least 10 distinct characters (secretcheck.MinTextDistinct:
// 32 identical letters are refused, `openssl rand -base64 32` passes).
func NewSigner(secrets ...Secret) (*Signer, error) {
	if len(secrets) == 0 {
		return nil, errors.New("playback: no token secret configured (PLAYBACK_TOKEN_SECRETS)")
	}
	s := &Signer{byKID: make(map[string]*macPool, len(secrets))}
	for _, sec := range secrets {
		if !validID(sec.KeyID, maxKIDLen) {
			return nil, fmt.Errorf("playback: key id %q: want 1-%d letters, digits, '-' or '_'", sec.KeyID, maxKIDLen)
		}
		if err := secretcheck.Text(sec.Secret, MinSecretLen); err != nil {
			return nil, fmt.Errorf("playback: secret %q %v", sec.KeyID, err)
		}
		if _, dup := s.byKID[sec.KeyID]; dup {
			return nil, fmt.Errorf("playback: key id %q listed twice", sec.KeyID)
		}
		cp := Secret{KeyID: sec.KeyID, Secret: append([]byte(nil), sec.Secret...)}
		s.secrets = append(s.secrets, cp)
		s.byKID[cp.KeyID] = &macPool{secret: cp.Secret}
	}
	return s, nil
}

// ParseSecrets reads PLAYBACK_TOKEN_SECRETS: "kid1:secret1,kid2:secret2",
// the first one minting. A secret is used as its bytes (any text of at least
// MinSecretLen bytes, such as the output of `openssl rand -base64 32`).
func ParseSecrets(s string) (*Signer, error) {
	var secrets []Secret
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		kid, sec, ok := strings.Cut(part, ":")
		if !ok {
			return nil, errors.New("playback: PLAYBACK_TOKEN_SECRETS: want kid:secret pairs separated by commas")
		}
		secrets = append(secrets, Secret{KeyID: strings.TrimSpace(kid), Secret: []byte(strings.TrimSpace(sec))})
	}
	return NewSigner(secrets...)
}

// Secrets returns the configured secrets, minting one first. The gateway
// derives its segment URL key from them.
func (s *Signer) Secrets() []Secret {
	out := make([]Secret, len(s.secrets))
	copy(out, s.secrets)
	return out
}

// WithMaxLifetime returns a Signer with the same secrets that refuses to
// mint a token expiring more than d after now, and to verify one expiring
// more than d + ClockSkew after the verifier's now (ErrLifetime). d <= 0
// removes the bound. The receiver is not changed.
func (s *Signer) WithMaxLifetime(d time.Duration) *Signer {
	cp := *s
	cp.maxLifetime = max(d, 0)
	return &cp
}

// MaxLifetime is the bound set by WithMaxLifetime (0: none).
func (s *Signer) MaxLifetime() time.Duration { return s.maxLifetime }

// MintingKeyID is the key id new tokens carry.
func (s *Signer) MintingKeyID() string { return s.secrets[0].KeyID }

// Mint signs c with the first secret.
func (s *Signer) Mint(c Claims) (string, error) {
	if err := c.Validate(); err != nil {
		return "", err
	}
	if s.maxLifetime > 0 && c.Expires.After(time.Now().Add(s.maxLifetime)) {
		return "", fmt.Errorf("playback: expiry %s is more than the maximum token lifetime (%v) ahead", c.Expires.UTC().Format(time.RFC3339), s.maxLifetime)
	}
	body, err := json.Marshal(payload{Video: c.Video, Subject: c.Subject, Session: c.Session, Expires: c.Expires.Unix()})
	if err != nil {
		return "", fmt.Errorf("playback: %w", err)
	}
	kid := s.secrets[0].KeyID
	signed := version + "." + kid + "." + b64.EncodeToString(body)
	mac := s.mac(s.byKID[kid], signed)
	return signed + "." + b64.EncodeToString(mac[:]), nil
}

func (s *Signer) mac(p *macPool, signed string) [macSize]byte {
	h := p.get()
	h.Write([]byte(macLabel))
	// The MAC covers kid and payload (signed minus its "v1." prefix).
	h.Write([]byte(signed[len(version)+1:]))
	var out [macSize]byte
	h.Sum(out[:0])
	p.put(h)
	return out
}

// Verify checks the token's signature and expiry at now and returns its
// claims. An expired token with a good signature returns its claims with
// ErrExpired, so the caller can tell "yours, but too old" (403) from "not
// ours" (401). A token whose expiry is beyond the maximum lifetime (see
// WithMaxLifetime) returns its claims with ErrLifetime, for the log only.
func (s *Signer) Verify(token string, now time.Time) (Claims, error) {
	if len(token) > MaxTokenLen || !tokenAlphabet(token) {
		return Claims{}, ErrMalformed
	}
	ver, rest, ok1 := strings.Cut(token, ".")
	kid, rest, ok2 := strings.Cut(rest, ".")
	body, macText, ok3 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || !ok3 || ver != version || body == "" || strings.Contains(macText, ".") {
		return Claims{}, ErrMalformed
	}
	p, ok := s.byKID[kid]
	if !ok {
		return Claims{}, ErrUnknownKey
	}
	var got [macSize]byte
	if len(macText) != b64.EncodedLen(macSize) {
		return Claims{}, ErrSignature
	}
	if n, err := b64.Decode(got[:], []byte(macText)); err != nil || n != macSize {
		return Claims{}, ErrSignature
	}
	want := s.mac(p, token[:len(token)-len(macText)-1])
	if !hmac.Equal(got[:], want[:]) {
		return Claims{}, ErrSignature
	}
	raw, err := b64.DecodeString(body)
	if err != nil {
		return Claims{}, ErrMalformed
	}
	var pl payload
	if err := json.Unmarshal(raw, &pl); err != nil {
		return Claims{}, ErrMalformed
	}
	c := Claims{Video: pl.Video, Subject: pl.Subject, Session: pl.Session, Expires: time.Unix(pl.Expires, 0)}
	if c.Validate() != nil {
		return Claims{}, ErrMalformed
	}
	if !now.Before(c.Expires) {
		return c, ErrExpired
	}
	if s.maxLifetime > 0 && c.Expires.Sub(now) > s.maxLifetime+ClockSkew {
		return c, ErrLifetime
	}
	return c, nil
}

// tokenAlphabet reports whether t has only the bytes of a token: base64url
// letters and dots (so no '=', '\r' or '\n', which the decoder would
// skip or accept).
func tokenAlphabet(t string) bool {
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// TokenParam is the query parameter that carries a token. The gateway also
// reads "Authorization: Bearer <token>" and the cookie CookieName.
const TokenParam = "token"

// CookieName is the cookie the gateway reads a token from.
const CookieName = "hlsvault_playback"

// MasterURL is the gateway URL of a video's master playlist with the token
// in its query. base is the gateway's public URL, e.g.
// "https://video.example.com".
func MasterURL(base, video, token string) string {
	return strings.TrimRight(base, "/") + "/v1/videos/" + url.PathEscape(video) + "/master.m3u8?" + TokenParam + "=" + url.QueryEscape(token)
}
