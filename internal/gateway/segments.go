package gateway

import (
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/hlsvault/hlsvault/internal/layout"
	"github.com/hlsvault/hlsvault/internal/storage"
	"github.com/hlsvault/hlsvault/playback"
)

// A segmentSigner turns an object name into a URL that lets anyone holding
// it read that one object, and nothing else, until exp. issued is when the
// URL is made (Azure back-dates its start from it for clock skew).
type segmentSigner interface {
	sign(object string, issued, exp time.Time) (string, error)
	// scheme is "https" when every URL it makes is HTTPS-only.
	secure() bool
}

// azureSigner makes a service SAS for one blob, read-only.
type azureSigner struct{ az *storage.Azure }

func (a azureSigner) sign(object string, issued, exp time.Time) (string, error) {
	return a.az.SignedURL(object, exp.Sub(issued), issued)
}

// secure signs a probe and checks that the SAS allows HTTPS only (Azurite,
// an http endpoint, gets "https,http").
func (a azureSigner) secure() bool {
	u, err := a.az.SignedURL(layout.VersionPrefix("probe", 1)+"probe.ts", time.Minute, time.Now())
	if err != nil {
		return false
	}
	p, err := url.Parse(u)
	return err == nil && p.Scheme == "https" && p.Query().Get("spr") == "https"
}

// fsSigner makes gateway URLs for the filesystem backend:
//
//	{base}/v1/segments/{object}?exp={unix seconds}&sig={mac}
//
// mac is base64url (no padding) of the first 16 bytes of
// HMAC-SHA256(key, "hlsvault/segment-url/v1\n" + object + "\n" + exp). The
// first key signs; every key verifies, so secrets can rotate.
type fsSigner struct {
	base  string
	keys  [][]byte
	https bool
}

const segmentMACLabel = "hlsvault/segment-url/v1\n"

// DeriveSegmentKey derives the segment URL key from a playback token secret,
// with domain separation (HMAC-SHA256 keyed by the secret over a fixed
// label, as HKDF-Expand with one block would), so several gateways sharing
// PLAYBACK_TOKEN_SECRETS verify each other's segment URLs without another
// secret, and a segment signature can never be taken for a token's.
func DeriveSegmentKey(secret []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("hlsvault/segment-url-key/v1"))
	return m.Sum(nil)
}

func segmentMAC(key []byte, object string, exp int64) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(segmentMACLabel))
	m.Write([]byte(object))
	m.Write([]byte{'\n'})
	m.Write(strconv.AppendInt(nil, exp, 10))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:16])
}

func (f *fsSigner) sign(object string, _, exp time.Time) (string, error) {
	if err := storage.ValidateName(object); err != nil {
		return "", err
	}
	e := exp.Unix()
	return f.base + "/v1/segments/" + escapePath(object) + "?exp=" + strconv.FormatInt(e, 10) + "&sig=" + segmentMAC(f.keys[0], object, e), nil
}

func (f *fsSigner) secure() bool { return f.https }

var (
	errURLExpired = errors.New("segment URL expired")
	errURLBad     = errors.New("segment URL signature invalid")
)

// verify checks a segment URL's signature and expiry.
func (f *fsSigner) verify(object, expText, sig string, now time.Time) error {
	exp, err := strconv.ParseInt(expText, 10, 64)
	if err != nil || sig == "" {
		return errURLBad
	}
	ok := false
	for _, k := range f.keys {
		if hmac.Equal([]byte(segmentMAC(k, object, exp)), []byte(sig)) {
			ok = true
		}
	}
	if !ok {
		return errURLBad
	}
	if now.Unix() >= exp {
		return errURLExpired
	}
	return nil
}

// escapePath escapes each segment of an object name for a URL path.
func escapePath(name string) string {
	if !strings.ContainsFunc(name, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '/' || r == '-' || r == '_' || r == '.')
	}) {
		return name
	}
	segs := strings.Split(name, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return strings.Join(segs, "/")
}

// serveSegment serves GET /v1/segments/{object...} for the filesystem
// backend: a signed, expiring URL for one object, with Range support.
func (s *Server) serveSegment(w http.ResponseWriter, r *http.Request) {
	f, ok := s.segments.(*fsSigner)
	if !ok {
		s.fail(w, r, http.StatusNotFound, "not_found", "segments are served by the storage service")
		return
	}
	object := r.PathValue("object")
	q := r.URL.Query()
	switch err := f.verify(object, q.Get("exp"), q.Get("sig"), s.now()); {
	case errors.Is(err, errURLExpired):
		s.fail(w, r, http.StatusForbidden, "url_expired", "this segment URL has expired; reload the playlist")
		return
	case err != nil:
		s.fail(w, r, http.StatusForbidden, "bad_signature", "this segment URL is not valid")
		return
	}
	ctx := r.Context()
	info, err := s.store.Stat(ctx, object)
	if errors.Is(err, storage.ErrNotFound) || errors.Is(err, storage.ErrInvalidName) {
		s.fail(w, r, http.StatusNotFound, "not_found", "no such segment")
		return
	}
	if err != nil {
		s.log.Error("segment stat", "object", object, "err", err)
		s.fail(w, r, http.StatusBadGateway, "storage", "storage is unavailable")
		return
	}
	h := w.Header()
	// The filesystem keeps no content type; the layout names the one we
	// published under.
	ct := cmp.Or(info.ContentType, layout.ContentType(object), "application/octet-stream")
	h.Set("Content-Type", ct)
	// The URL is the credential: no shared cache may keep the response
	// beyond the URL's own life.
	h.Set("Cache-Control", "private, max-age=60")
	rs := &storeReadSeeker{ctx: ctx, store: s.store, name: object, size: info.Size}
	defer rs.Close()
	http.ServeContent(w, r, "", info.ModTime, rs)
}

// storeReadSeeker reads an object through Store.GetRange, opening a ranged
// read at the current offset on the first Read after a Seek, so that
// http.ServeContent's Range handling reads only the bytes it sends.
type storeReadSeeker struct {
	ctx   context.Context
	store storage.Store
	name  string
	size  int64
	pos   int64
	rc    io.ReadCloser
}

func (r *storeReadSeeker) Read(p []byte) (int, error) {
	if r.pos >= r.size {
		return 0, io.EOF
	}
	if r.rc == nil {
		rc, err := r.store.GetRange(r.ctx, r.name, r.pos, -1)
		if err != nil {
			return 0, err
		}
		r.rc = rc
	}
	n, err := r.rc.Read(p)
	r.pos += int64(n)
	return n, err
}

func (r *storeReadSeeker) Seek(offset int64, whence int) (int64, error) {
	var abs int64
	switch whence {
	case io.SeekStart:
		abs = offset
	case io.SeekCurrent:
		abs = r.pos + offset
	case io.SeekEnd:
		abs = r.size + offset
	default:
		return 0, errors.New("seek: bad whence")
	}
	if abs < 0 {
		return 0, errors.New("seek: negative position")
	}
	if abs != r.pos && r.rc != nil {
		r.rc.Close()
		r.rc = nil
	}
	r.pos = abs
	return abs, nil
}

func (r *storeReadSeeker) Close() error {
	if r.rc != nil {
		return r.rc.Close()
	}
	return nil
}

// newSegmentSigner picks the signer for the store.
func newSegmentSigner(store storage.Store, cfg Config) (segmentSigner, error) {
	switch st := store.(type) {
	case *storage.Azure:
		return azureSigner{az: st}, nil
	case *storage.FS:
		var ks [][]byte
		if len(cfg.SegmentSecret) > 0 {
			if len(cfg.SegmentSecret) < playback.MinSecretLen {
				return nil, fmt.Errorf("gateway: SEGMENT_URL_SECRET must be at least %d bytes", playback.MinSecretLen)
			}
			ks = append(ks, DeriveSegmentKey(cfg.SegmentSecret))
		}
		for _, sec := range cfg.Tokens.Secrets() {
			ks = append(ks, DeriveSegmentKey(sec.Secret))
		}
		return &fsSigner{base: strings.TrimRight(cfg.PublicURL, "/"), keys: ks,
			https: strings.HasPrefix(cfg.PublicURL, "https://") || cfg.TLS}, nil
	default:
		return nil, fmt.Errorf("gateway: no segment URL signer for store %s", store)
	}
}
