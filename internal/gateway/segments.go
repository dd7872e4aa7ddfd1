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

// azureSecure signs a probe and checks that the SAS allows HTTPS only
// (Azurite, an http endpoint, gets "https,http").
func azureSecure(az *storage.Azure) bool {
	u, err := az.SignedURL(layout.VersionPrefix("probe", 1)+"probe.ts", time.Minute, time.Now())
	if err != nil {
		return false
	}
	p, err := url.Parse(u)
	return err == nil && p.Scheme == "https" && p.Query().Get("spr") == "https"
}

// urlSigner makes and checks the gateway's own segment URLs, which every
// filesystem segment and the Azure segments beyond the SAS horizon (see
// Server.mediaURLs) use:
//
//	{base}/v1/segments/{object}?exp={unix seconds}&sig={mac}&s={session}
//
// mac is base64url (no padding) of the first 16 bytes of
// HMAC-SHA256(key, "hlsvault/segment-url/v1\n" + object + "\n" + exp): one
// per object and time bucket, shared by every player. session names the
// playback session the playlist was issued to:
//
//	base64url(subject) "." session id "." token expiry (unix s) "." tag
//
// tag is the first 16 bytes of HMAC-SHA256(key, "hlsvault/segment-session/v1\n"
// + subject + "\n" + session + "\n" + expiry), one per playlist request.
// The two MACs are separate so that a 2-hour playlist costs one HMAC per
// request, not 1800: moving a session part onto another URL the gateway
// signed gives nothing that the session's token did not already give. The
// gateway checks that the session is live before serving (or redirecting
// to) the segment, so a released, evicted or idle session gets no further
// segment. The first key signs; every key verifies, so secrets can rotate.
type urlSigner struct {
	base  string
	keys  [][]byte
	https bool
}

const (
	segmentMACLabel     = "hlsvault/segment-url/v1\n"
	segmentSessionLabel = "hlsvault/segment-session/v1\n"
	// sessionParam is the query parameter of the session part.
	sessionParam = "s"
)

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

func sessionTag(key []byte, subject, session, texp string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(segmentSessionLabel))
	m.Write([]byte(subject))
	m.Write([]byte{'\n'})
	m.Write([]byte(session))
	m.Write([]byte{'\n'})
	m.Write([]byte(texp))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:16])
}

// sign returns the URL of object until exp, without its session part.
func (f *urlSigner) sign(object string, exp time.Time) (string, error) {
	if err := storage.ValidateName(object); err != nil {
		return "", err
	}
	e := exp.Unix()
	return f.base + "/v1/segments/" + escapePath(object) + "?exp=" + strconv.FormatInt(e, 10) + "&sig=" + segmentMAC(f.keys[0], object, e), nil
}

// sessionSuffix is the query suffix that binds a URL made by sign to a
// playback session.
func (f *urlSigner) sessionSuffix(subject, session string, tokenExpires time.Time) string {
	texp := strconv.FormatInt(tokenExpires.Unix(), 10)
	return "&" + sessionParam + "=" + base64.RawURLEncoding.EncodeToString([]byte(subject)) + "." + session + "." + texp + "." +
		sessionTag(f.keys[0], subject, session, texp)
}

var (
	errURLExpired   = errors.New("segment URL expired")
	errURLBad       = errors.New("segment URL signature invalid")
	errTokenExpired = errors.New("the playback token of the segment URL's session expired")
)

// verify checks a segment URL's signature and expiry.
func (f *urlSigner) verify(object, expText, sig string, now time.Time) error {
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

// verifySession checks a session part and returns the session it names.
func (f *urlSigner) verifySession(param string, now time.Time) (subject, session string, tokenExpires time.Time, err error) {
	parts := strings.Split(param, ".")
	if len(parts) != 4 {
		return "", "", time.Time{}, errURLBad
	}
	sub, err := base64.RawURLEncoding.Strict().DecodeString(parts[0])
	if err != nil || len(sub) == 0 {
		return "", "", time.Time{}, errURLBad
	}
	texp, err := strconv.ParseInt(parts[2], 10, 64)
	if err != nil {
		return "", "", time.Time{}, errURLBad
	}
	ok := false
	for _, k := range f.keys {
		if hmac.Equal([]byte(sessionTag(k, string(sub), parts[1], parts[2])), []byte(parts[3])) {
			ok = true
		}
	}
	if !ok {
		return "", "", time.Time{}, errURLBad
	}
	if now.Unix() >= texp {
		return "", "", time.Time{}, errTokenExpired
	}
	return string(sub), parts[1], time.Unix(texp, 0), nil
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

// serveSegment serves GET /v1/segments/{object...}: a signed, expiring URL
// for one object, bound to a playback session that must still be live (a
// segment fetch keeps it alive, as a heartbeat does). The filesystem
// backend's object is served here, with Range support; an Azure object is
// a 302 to a fresh SAS for that one blob, living SAS_MAX_LIFETIME.
func (s *Server) serveSegment(w http.ResponseWriter, r *http.Request) {
	object := r.PathValue("object")
	q := r.URL.Query()
	now := s.now()
	err := s.urls.verify(object, q.Get("exp"), q.Get("sig"), now)
	var (
		subject, session string
		texp             time.Time
	)
	if err == nil {
		subject, session, texp, err = s.urls.verifySession(q.Get(sessionParam), now)
	}
	switch {
	case errors.Is(err, errURLExpired):
		s.fail(w, r, http.StatusForbidden, "url_expired", "this segment URL has expired; reload the playlist")
		return
	case errors.Is(err, errTokenExpired):
		s.fail(w, r, http.StatusForbidden, "token_expired", "this playback link has expired; reload the page")
		return
	case err != nil:
		s.fail(w, r, http.StatusForbidden, "bad_signature", "this segment URL is not valid")
		return
	}
	if !s.admitSession(w, r, "", subject, session, texp, false) {
		return
	}
	if s.az != nil {
		u, err := s.az.SignedURL(object, s.cfg.SASMaxLifetime, now)
		if err != nil {
			s.internal(w, r, "sign segment URL", err)
			return
		}
		w.Header().Set("Cache-Control", "private, no-store")
		http.Redirect(w, r, u, http.StatusFound)
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

// newURLSigner builds the gateway's segment URL signer, and says whether
// every segment URL the store's playlists would carry is HTTPS-only.
func newURLSigner(store storage.Store, cfg Config) (*urlSigner, *storage.Azure, bool, error) {
	var ks [][]byte
	if len(cfg.SegmentSecret) > 0 {
		if len(cfg.SegmentSecret) < playback.MinSecretLen {
			return nil, nil, false, fmt.Errorf("gateway: SEGMENT_URL_SECRET must be at least %d bytes", playback.MinSecretLen)
		}
		ks = append(ks, DeriveSegmentKey(cfg.SegmentSecret))
	}
	for _, sec := range cfg.Tokens.Secrets() {
		ks = append(ks, DeriveSegmentKey(sec.Secret))
	}
	u := &urlSigner{base: strings.TrimRight(cfg.PublicURL, "/"), keys: ks,
		https: strings.HasPrefix(cfg.PublicURL, "https://") || cfg.TLS}
	switch st := store.(type) {
	case *storage.Azure:
		return u, st, u.https && azureSecure(st), nil
	case *storage.FS:
		return u, nil, u.https, nil
	default:
		return nil, nil, false, fmt.Errorf("gateway: no segment URL signer for store %s", store)
	}
}
