// Package gateway is the playback gateway: the HTTP service players talk to.
//
// It never hands out a storage credential that covers more than one object
// or outlives its TTL. Playlists are proxied and rewritten:
//
//   - GET /v1/videos/{video}/master.m3u8: the current version's master, each
//     rendition URI pointing back at the gateway (pinned to that version);
//   - GET /v1/videos/{video}/{rendition}/index.m3u8: the media playlist, each
//     segment URI replaced by a short-lived read-only URL for that one object
//     (an Azure service SAS for one blob, or a gateway-signed URL that
//     /v1/segments/ serves for the filesystem backend), each EXT-X-KEY URI by
//     the gateway's key endpoint, every IV kept;
//   - GET /v1/keys/{key_id}: the 16 key bytes, only for a token of the video
//     that owns the key, never cached by anyone.
//
// Every request carries a playback token (package playback) in the "token"
// query parameter, an "Authorization: Bearer" header or a cookie; a token
// that came in the query is carried into every gateway URI written, so that
// players that cannot add headers (Safari's native player) work. Sessions
// are counted per subject in Redis (see Sessions).
package gateway

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"path"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/hlsvault/hlsvault/internal/catalog"
	"github.com/hlsvault/hlsvault/internal/ids"
	"github.com/hlsvault/hlsvault/internal/keys"
	"github.com/hlsvault/hlsvault/internal/layout"
	"github.com/hlsvault/hlsvault/internal/playlist"
	"github.com/hlsvault/hlsvault/internal/storage"
	"github.com/hlsvault/hlsvault/playback"
)

// Catalog is what the gateway reads from PostgreSQL; *catalog.DB has it.
type Catalog interface {
	CurrentVersion(ctx context.Context, videoID string) (catalog.Version, error)
	KeyByID(ctx context.Context, keyID string) (videoID string, version int, k catalog.WrappedKey, err error)
	// VersionWithKey returns a published (or once published) version with
	// its key; catalog.ErrNotFound when the video never published it.
	VersionWithKey(ctx context.Context, videoID string, version int) (catalog.Version, error)
}

// Config configures a Server. Zero values take the defaults noted.
type Config struct {
	// PublicURL is the gateway's URL as players reach it, e.g.
	// "https://video.example.com". Empty: URIs are written root-relative
	// ("/v1/keys/…"), which players resolve against the playlist's URL.
	PublicURL string
	// Tokens verifies playback tokens. Required.
	Tokens *playback.Signer
	// SegmentSecret, when set, signs filesystem segment URLs; otherwise the
	// key is derived from the token secrets (DeriveSegmentKey).
	SegmentSecret []byte
	// SegmentURLTTL is the life of a segment URL beyond the moment linear
	// playback from the playlist request would reach the segment (default
	// 10m). See Server.mediaURLs.
	SegmentURLTTL time.Duration
	// AllowedOrigins may call the gateway from a browser (CORS, with
	// credentials). Exact origins such as "https://app.example.com".
	AllowedOrigins []string
	// Production requires HTTPS-only segment URLs.
	Production bool
	// TLS says the gateway itself serves HTTPS.
	TLS bool
	// AdminToken authorizes DELETE /v1/sessions/{session}?subject=…;
	// empty disables it.
	AdminToken string
	// MaxTokenLifetime is the longest TTL the app server mints (default
	// 24h): a token expiring more than this (plus playback.ClockSkew) after
	// now is refused (401 invalid_token; playback.ErrLifetime in the log).
	// The Sessions must remember ended sessions at least this long.
	MaxTokenLifetime time.Duration
	// PlaylistCacheBytes bounds the compiled playlists kept (default 64 MiB).
	PlaylistCacheBytes int64
	// PlayerScript is the path of hls.js (hls.min.js); when set, the
	// gateway serves a player page at /watch/{video}?token=….
	PlayerScript string
	// KeyCacheTTL is how long a wrapped key or a compiled playlist is kept
	// without asking the catalog again (default 60s): the bound on how
	// long a gateway that missed a deletion notice (Forget) still serves a
	// destroyed key.
	KeyCacheTTL time.Duration
	// SASMaxLifetime bounds Azure SAS URLs when the key period is not known
	// (a version with one key; default 5m): a playlist's direct SAS URLs
	// cover at most this much media beyond SegmentURLTTL, and a SAS the
	// gateway redirects to lives this long.
	SASMaxLifetime time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Unknown key ids are remembered this long, at most this many, so that a
// scanner trying key ids does not cost a catalog query each.
const (
	unknownKeyTTL  = 10 * time.Second
	unknownKeysMax = 10_000
)

// Server is the gateway's HTTP handler.
type Server struct {
	cfg      Config
	base     string
	db       Catalog
	store    storage.Store
	keyring  *keys.Keyring
	sessions *Sessions
	urls     *urlSigner
	az       *storage.Azure // nil: the filesystem backend, served here
	metrics  *Metrics
	log      *slog.Logger
	now      func() time.Time
	origins  map[string]bool

	media   *lru[*mediaEntry]
	masters *lru[*masterEntry]
	keys    *lru[keyEntry]
	unknown *lru[struct{}]        // key ids the catalog does not have
	tokens  *lru[playback.Claims] // tokens that verified, by their exact text
	sf      singleflight.Group

	sessOutcome [4]interface{ Inc() }
	cacheHit    interface{ Inc() }
	cacheMiss   interface{ Inc() }
	handler     http.Handler
}

// New builds the gateway.
func New(cfg Config, db Catalog, store storage.Store, keyring *keys.Keyring, sessions *Sessions, m *Metrics, log *slog.Logger) (*Server, error) {
	if cfg.Tokens == nil {
		return nil, errors.New("gateway: no playback token secret (PLAYBACK_TOKEN_SECRETS)")
	}
	if keyring == nil {
		return nil, errors.New("gateway: no key-encryption key (KEY_ENCRYPTION_KEY)")
	}
	if sessions == nil {
		return nil, errors.New("gateway: no session store")
	}
	if cfg.SegmentURLTTL <= 0 {
		cfg.SegmentURLTTL = 10 * time.Minute
	}
	if cfg.SegmentURLTTL < 10*time.Second {
		return nil, fmt.Errorf("gateway: SEGMENT_URL_TTL %v is shorter than 10s", cfg.SegmentURLTTL)
	}
	if cfg.MaxTokenLifetime <= 0 {
		cfg.MaxTokenLifetime = 24 * time.Hour
	}
	if sessions.MaxTokenLifetime() < cfg.MaxTokenLifetime {
		return nil, fmt.Errorf("gateway: sessions remember an ended session for a token lifetime of %v, shorter than MAX_TOKEN_LIFETIME %v", sessions.MaxTokenLifetime(), cfg.MaxTokenLifetime)
	}
	cfg.Tokens = cfg.Tokens.WithMaxLifetime(cfg.MaxTokenLifetime)
	if cfg.PlaylistCacheBytes <= 0 {
		cfg.PlaylistCacheBytes = 64 << 20
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.KeyCacheTTL <= 0 {
		cfg.KeyCacheTTL = time.Minute
	}
	if cfg.SASMaxLifetime <= 0 {
		cfg.SASMaxLifetime = 5 * time.Minute
	}
	if cfg.SASMaxLifetime < 10*time.Second {
		return nil, fmt.Errorf("gateway: SAS_MAX_LIFETIME %v is shorter than 10s", cfg.SASMaxLifetime)
	}
	if m == nil {
		m = NewMetrics(nil)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	base := strings.TrimRight(cfg.PublicURL, "/")
	if cfg.Production && base != "" && !strings.HasPrefix(base, "https://") {
		return nil, fmt.Errorf("gateway: GATEWAY_PUBLIC_URL %q must be https:// in production", cfg.PublicURL)
	}
	urls, az, secure, err := newURLSigner(store, cfg)
	if err != nil {
		return nil, err
	}
	if cfg.Production && !secure {
		return nil, fmt.Errorf("gateway: production needs HTTPS-only segment URLs, but %s would sign plain-HTTP ones (an http:// blob endpoint, or no TLS and no https:// GATEWAY_PUBLIC_URL)", store)
	}
	s := &Server{
		cfg: cfg, base: base, db: db, store: store, keyring: keyring, sessions: sessions, urls: urls, az: az,
		metrics: m, log: log, now: cfg.Now, origins: map[string]bool{},
		media:   newLRU[*mediaEntry](cfg.PlaylistCacheBytes, cfg.KeyCacheTTL, cfg.Now),
		masters: newLRU[*masterEntry](cfg.PlaylistCacheBytes/8, cfg.KeyCacheTTL, cfg.Now),
		keys:    newLRU[keyEntry](100_000, cfg.KeyCacheTTL, cfg.Now),
		unknown: newLRU[struct{}](unknownKeysMax, unknownKeyTTL, cfg.Now),
		tokens:  newLRU[playback.Claims](verifiedTokensMax, 0, cfg.Now),
	}
	for _, o := range cfg.AllowedOrigins {
		if o = strings.TrimRight(strings.TrimSpace(o), "/"); o != "" {
			if o == "*" {
				return nil, errors.New("gateway: ALLOWED_ORIGINS cannot be '*': credentials are allowed, so list exact origins")
			}
			s.origins[o] = true
		}
	}
	for o := Admitted; o <= Ended; o++ {
		s.sessOutcome[o] = m.sessions.WithLabelValues(o.String())
	}
	s.cacheHit, s.cacheMiss = m.cache.WithLabelValues("hit"), m.cache.WithLabelValues("miss")
	s.handler = s.routes()
	return s, nil
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	s.handle(mux, "GET /v1/videos/{video}/master.m3u8", "master", s.serveMaster)
	s.handle(mux, "GET /v1/videos/{video}/{rendition}/index.m3u8", "rendition", s.serveRendition)
	s.handle(mux, "GET /v1/videos/{video}/storyboard.vtt", "storyboard", s.serveStoryboard)
	s.handle(mux, "GET /v1/keys/{key_id}", "key", s.serveKey)
	s.handle(mux, "GET /v1/segments/{object...}", "segment", s.serveSegment)
	s.handle(mux, "POST /v1/sessions/heartbeat", "heartbeat", s.serveHeartbeat)
	s.handle(mux, "POST /v1/sessions/release", "release", s.serveRelease)
	s.handle(mux, "DELETE /v1/sessions/{session}", "evict", s.serveEvict) // ?subject=…
	s.handle(mux, "OPTIONS /", "preflight", s.servePreflight)
	if s.cfg.PlayerScript != "" {
		s.handle(mux, "GET /watch/{video}", "player", s.servePlayerPage)
		s.handle(mux, "GET /player/{file}", "player", s.servePlayerAsset)
	}
	s.handle(mux, "/", "other", func(w http.ResponseWriter, r *http.Request) {
		s.fail(w, r, http.StatusNotFound, "not_found", "no such route")
	})
	return mux
}

// statusWriter records the status code for metrics.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

var codeText = func() map[int]string {
	m := map[int]string{}
	for c := 100; c < 600; c++ {
		m[c] = strconv.Itoa(c)
	}
	return m
}()

func (s *Server) handle(mux *http.ServeMux, pattern, route string, h http.HandlerFunc) {
	lat := s.metrics.latency.WithLabelValues(route)
	var counters sync.Map // code → counter
	mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		s.cors(sw, r)
		h(sw, r)
		c, ok := counters.Load(sw.code)
		if !ok {
			c, _ = counters.LoadOrStore(sw.code, s.metrics.requests.WithLabelValues(route, codeText[sw.code]))
		}
		c.(interface{ Inc() }).Inc()
		lat.Observe(time.Since(start).Seconds())
	})
}

// cors answers allowed origins with credentials; others get no CORS
// headers, so browsers keep the response from their scripts.
func (s *Server) cors(w http.ResponseWriter, r *http.Request) {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return
	}
	h := w.Header()
	h.Add("Vary", "Origin")
	if !s.origins[origin] {
		return
	}
	h.Set("Access-Control-Allow-Origin", origin)
	h.Set("Access-Control-Allow-Credentials", "true")
	h.Set("Access-Control-Expose-Headers", "Content-Length, Content-Range, Retry-After")
}

func (s *Server) servePreflight(w http.ResponseWriter, r *http.Request) {
	if !s.origins[r.Header.Get("Origin")] || r.Header.Get("Access-Control-Request-Method") == "" {
		s.fail(w, r, http.StatusForbidden, "cors", "origin not allowed")
		return
	}
	h := w.Header()
	h.Set("Access-Control-Allow-Methods", "GET, HEAD, POST, DELETE")
	h.Set("Access-Control-Allow-Headers", "Authorization, Range")
	h.Set("Access-Control-Max-Age", "600")
	w.WriteHeader(http.StatusNoContent)
}

// apiError is the JSON body of every error response.
type apiError struct {
	Error   string `json:"error"`
	Message string `json:"message"`
}

func (s *Server) fail(w http.ResponseWriter, _ *http.Request, code int, errCode, msg string) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	b, _ := json.Marshal(apiError{Error: errCode, Message: msg})
	_, _ = w.Write(append(b, '\n'))
}

// auth is an authenticated request.
type auth struct {
	claims  playback.Claims
	token   string
	inQuery bool
}

func tokenFrom(r *http.Request) (string, bool) {
	if r.URL.RawQuery != "" {
		if t := r.URL.Query().Get(playback.TokenParam); t != "" {
			return t, true
		}
	}
	if h := r.Header.Get("Authorization"); h != "" {
		if t, ok := strings.CutPrefix(h, "Bearer "); ok {
			return strings.TrimSpace(t), false
		}
	}
	if c, err := r.Cookie(playback.CookieName); err == nil && c.Value != "" {
		return c.Value, false
	}
	return "", false
}

// authenticate checks the token: none or not ours is 401, ours but expired
// is 403.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request) (auth, bool) {
	tok, inQuery := tokenFrom(r)
	if tok == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="hlsvault"`)
		s.fail(w, r, http.StatusUnauthorized, "unauthorized", "a playback token is required")
		return auth{}, false
	}
	c, err := s.verify(tok)
	switch {
	case errors.Is(err, playback.ErrExpired):
		s.fail(w, r, http.StatusForbidden, "token_expired", "this playback link has expired; reload the page")
		return auth{}, false
	case errors.Is(err, playback.ErrLifetime):
		// A good signature on an expiry the app server must never mint:
		// a misconfigured app server, or a leaked token secret.
		s.log.Warn("token refused: expiry beyond MAX_TOKEN_LIFETIME", "err", err, "video", c.Video, "subject", c.Subject,
			"session", c.Session, "expires", c.Expires.UTC().Format(time.RFC3339), "max_token_lifetime", s.cfg.MaxTokenLifetime.String())
		fallthrough
	case err != nil:
		w.Header().Set("WWW-Authenticate", `Bearer realm="hlsvault", error="invalid_token"`)
		s.fail(w, r, http.StatusUnauthorized, "invalid_token", "the playback token is not valid")
		return auth{}, false
	}
	return auth{claims: c, token: tok, inQuery: inQuery}, true
}

// verifiedTokensMax bounds the tokens remembered as verified (about 300
// bytes each).
const verifiedTokensMax = 50_000

// verify is Tokens.Verify for a token seen before, without its MAC and JSON
// again: a player sends the same token with every playlist, key and
// heartbeat for hours, and verifying is most of a key request's work. Only
// tokens that verified are remembered, by their exact text (the same bytes
// verify the same way under the same secrets, which never change in a
// running gateway); the expiry is still checked on every use, and an
// expired one goes back through Verify for its ErrExpired. The lifetime
// bound needs no second look: a token's remaining lifetime only shrinks.
func (s *Server) verify(tok string) (playback.Claims, error) {
	now := s.now()
	if c, ok := s.tokens.get(tok); ok && now.Before(c.Expires) {
		return c, nil
	}
	c, err := s.cfg.Tokens.Verify(tok, now)
	if err == nil {
		s.tokens.add(tok, c, 1)
	}
	return c, err
}

// authorize authenticates and checks the token is for video.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request, video string) (auth, bool) {
	a, ok := s.authenticate(w, r)
	if !ok {
		return a, false
	}
	if a.claims.Video != video {
		s.fail(w, r, http.StatusForbidden, "wrong_video", "the playback token is for another video")
		return a, false
	}
	return a, true
}

// admit applies the stream limit; see Sessions.
func (s *Server) admit(w http.ResponseWriter, r *http.Request, a auth, admit bool) bool {
	return s.admitSession(w, r, a.claims.Video, a.claims.Subject, a.claims.Session, a.claims.Expires, admit)
}

// admitSession applies the stream limit to a session: with admit true it
// may start one under the limit, with admit false it only refreshes a live
// one. It answers the request when it refuses.
func (s *Server) admitSession(w http.ResponseWriter, r *http.Request, video, subject, session string, expires time.Time, admit bool) bool {
	d, err := s.sessions.Admit(r.Context(), subject, session, expires, admit)
	if err != nil {
		s.log.Error("session store", "err", err)
		s.fail(w, r, http.StatusServiceUnavailable, "unavailable", "playback is temporarily unavailable; try again")
		return false
	}
	s.sessOutcome[d.Outcome].Inc()
	switch d.Outcome {
	case Admitted:
		s.log.Info("session admitted", "video", video, "subject", subject, "session", session, "active", d.Active)
	case Refused:
		s.log.Info("session refused: stream limit", "video", video, "subject", subject, "session", session, "active", d.Active)
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(s.sessions.TTL().Seconds()))))
		s.fail(w, r, http.StatusTooManyRequests, "stream_limit",
			fmt.Sprintf("This account is already watching on %d devices, the most allowed at once. Stop playback on another device, then try again.", s.sessions.Limit()))
		return false
	case Ended:
		msg := "this playback session has ended; reload the page to start again"
		if d.Reason == EndEvicted {
			msg = "this playback session was stopped from another device or by support; reload the page to start again"
		}
		s.fail(w, r, http.StatusForbidden, "session_ended", msg)
		return false
	}
	return true
}

// tokenQuery is what every gateway URI written for this request carries.
func (a auth) tokenQuery() string {
	if !a.inQuery {
		return ""
	}
	// A verified token is base64url and dots only: nothing to escape.
	return playback.TokenParam + "=" + a.token
}

func playlistHeaders(w http.ResponseWriter, size int) {
	h := w.Header()
	h.Set("Content-Type", layout.ContentTypePlaylist)
	// The body carries the player's token and short-lived URLs.
	h.Set("Cache-Control", layout.Private)
	h.Set("Content-Length", strconv.Itoa(size))
}

// --- master ---------------------------------------------------------------

type masterEntry struct {
	tmpl  *playlist.MasterTemplate
	names []string // rendition of each URI
}

func (s *Server) serveMaster(w http.ResponseWriter, r *http.Request) {
	video := r.PathValue("video")
	if ids.ValidateVideoID(video) != nil {
		s.fail(w, r, http.StatusNotFound, "not_found", "no such video")
		return
	}
	a, ok := s.authorize(w, r, video)
	if !ok || !s.admit(w, r, a, true) {
		return
	}
	ctx := r.Context()
	v, err := s.db.CurrentVersion(ctx, video)
	if errors.Is(err, catalog.ErrNotFound) {
		s.fail(w, r, http.StatusNotFound, "not_found", "no published version of this video")
		return
	}
	if err != nil {
		s.internal(w, r, "current version", err)
		return
	}
	me, err := s.masterEntry(ctx, v)
	if err != nil {
		s.internal(w, r, "master playlist", err)
		return
	}
	q := a.tokenQuery()
	prefix := s.base + "/v1/videos/" + video + "/"
	suffix := "/index.m3u8?v=" + strconv.Itoa(v.Version)
	if q != "" {
		suffix += "&" + q
	}
	out, err := me.tmpl.Expand(make([]byte, 0, 1024), func(i int) (string, error) {
		return prefix + me.names[i] + suffix, nil
	})
	if err != nil {
		s.internal(w, r, "master rewrite", err)
		return
	}
	playlistHeaders(w, len(out))
	_, _ = w.Write(out)
}

func (s *Server) masterEntry(ctx context.Context, v catalog.Version) (*masterEntry, error) {
	key := v.VideoID + "/" + strconv.Itoa(v.Version)
	if e, ok := s.masters.get(key); ok {
		s.cacheHit.Inc()
		return e, nil
	}
	s.cacheMiss.Inc()
	res, err := s.load(ctx, "m/"+key, func(ctx context.Context) (any, error) {
		data, err := s.readObject(ctx, v.Master)
		if err != nil {
			return nil, err
		}
		tmpl, err := playlist.CompileMaster(data)
		if err != nil {
			return nil, err
		}
		known := map[string]bool{}
		for _, r := range v.Renditions {
			known[r.Name] = true
		}
		e := &masterEntry{tmpl: tmpl}
		for _, u := range tmpl.URIs {
			name, ok := layout.RenditionFromURI(u)
			if of, trick := layout.IFramesOf(name); ok && trick && known[of] {
				// A published rendition's I-frame playlist (trick play):
				// served, gated and rewritten like the rendition.
				known[name] = true
			}
			if !ok || !known[name] {
				return nil, fmt.Errorf("master %s: URI %q is not a published rendition's index.m3u8", v.Master, u)
			}
			e.names = append(e.names, name)
		}
		s.masters.add(key, e, int64(len(data)))
		return e, nil
	})
	if err != nil {
		return nil, err
	}
	return res.(*masterEntry), nil
}

func (s *Server) readObject(ctx context.Context, name string) ([]byte, error) {
	rc, err := s.store.Get(ctx, name)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, playlist.MaxPlaylistBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > playlist.MaxPlaylistBytes {
		return nil, fmt.Errorf("%s: larger than %d bytes", name, playlist.MaxPlaylistBytes)
	}
	return data, nil
}

func constantTimeEqual(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// --- rendition ------------------------------------------------------------

// mediaEntry is a compiled rendition playlist of one version.
type mediaEntry struct {
	tmpl    *playlist.MediaTemplate
	objects []string // storage object of each resource
	// keyIDs is the catalog key id each of tmpl.KeyURIs names (a version
	// has one key per key period).
	keyIDs []string
	// Per resource (index into tmpl.Resources and objects): the index in
	// period order of the version's key that encrypts it, and the media
	// time (seconds) where that key period ends (the next key's start, or
	// the end of the playlist for the last), e.g. to bound a segment URL's
	// lifetime by its key period.
	period    []int
	periodEnd []float64
	// keyPeriod is the media time under the first content key (0: one key
	// for the version): the horizon of direct Azure SAS URLs (sasHorizon).
	keyPeriod time.Duration
	mu        sync.Mutex
	signed    atomic.Pointer[signedSet]
}

// signedSet is the segment URLs of an entry for one issue time.
type signedSet struct {
	issued int64 // Unix seconds
	urls   []string
	gated  []bool // urls[i] is a gateway URL: the request's session part follows it
	total  int    // sum of len(urls)
	nGated int
}

func (s *Server) serveRendition(w http.ResponseWriter, r *http.Request) {
	video, rendition := r.PathValue("video"), r.PathValue("rendition")
	if ids.ValidateVideoID(video) != nil || !layout.ValidRendition(rendition) {
		s.fail(w, r, http.StatusNotFound, "not_found", "no such rendition")
		return
	}
	a, ok := s.authorize(w, r, video)
	if !ok || !s.admit(w, r, a, true) {
		return
	}
	ctx := r.Context()
	var (
		version int
		vkeys   []catalog.WrappedKey // known only when read from the current version
	)
	if vs := r.URL.Query().Get("v"); vs != "" {
		n, err := strconv.Atoi(vs)
		if err != nil || n < 1 {
			s.fail(w, r, http.StatusNotFound, "not_found", "no such version")
			return
		}
		version = n
	} else {
		v, err := s.db.CurrentVersion(ctx, video)
		if errors.Is(err, catalog.ErrNotFound) {
			s.fail(w, r, http.StatusNotFound, "not_found", "no published version of this video")
			return
		}
		if err != nil {
			s.internal(w, r, "current version", err)
			return
		}
		version, vkeys = v.Version, v.Keys
	}
	e, err := s.mediaEntry(ctx, video, version, rendition, vkeys)
	if errors.Is(err, errNoSuchPlaylist) {
		s.fail(w, r, http.StatusNotFound, "not_found", "no such rendition")
		return
	}
	if err != nil {
		s.internal(w, r, "media playlist", err)
		return
	}
	set, err := s.mediaURLs(e)
	if err != nil {
		s.internal(w, r, "sign segment URLs", err)
		return
	}
	keyURIs := make([]string, len(e.keyIDs))
	q := a.tokenQuery()
	for i, id := range e.keyIDs {
		keyURIs[i] = s.base + "/v1/keys/" + id
		if q != "" {
			keyURIs[i] += "?" + q
		}
	}
	var sess string
	if set.nGated > 0 {
		sess = s.urls.sessionSuffix(a.claims.Subject, a.claims.Session, a.claims.Expires)
	}
	size := e.tmpl.LiteralLen() + set.total + set.nGated*len(sess) + e.tmpl.KeyHoles()*len(keyURIs[0]) // key ids have one length
	out, err := e.tmpl.ExpandSuffixed(make([]byte, 0, size),
		func(i int) (string, bool, error) { return set.urls[i], set.gated[i], nil }, sess,
		func(i int) (string, error) { return keyURIs[i], nil })
	if err != nil {
		s.internal(w, r, "media rewrite", err)
		return
	}
	playlistHeaders(w, len(out))
	_, _ = w.Write(out)
}

var errNoSuchPlaylist = errors.New("gateway: no such playlist")

// loadTimeout bounds a shared cold load (storage read and compile).
const loadTimeout = 30 * time.Second

// load runs fn once for every concurrent caller of key. fn runs detached
// from the caller that happened to start it, under its own deadline: one
// player disconnecting must not fail the others waiting on the same load.
// A caller whose own context ends stops waiting; the load goes on for the
// rest (and fills the cache).
func (s *Server) load(ctx context.Context, key string, fn func(context.Context) (any, error)) (any, error) {
	ch := s.sf.DoChan(key, func() (any, error) {
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), loadTimeout)
		defer cancel()
		return fn(lctx)
	})
	select {
	case r := <-ch:
		return r.Val, r.Err
	case <-ctx.Done():
		return nil, fmt.Errorf("gateway: load %s: %w", key, context.Cause(ctx))
	}
}

// mediaEntry returns the compiled playlist of (video, version, rendition).
// A cached one costs nothing. Otherwise the version's keys come from the
// catalog (given as vkeys when the current version was just read, else one
// catalog read, which also proves that the version requested by number was
// published for this video), and the playlist is read from storage; its
// key URIs are holes the gateway fills with its own key URI of the key each
// names.
func (s *Server) mediaEntry(ctx context.Context, video string, version int, rendition string, vkeys []catalog.WrappedKey) (*mediaEntry, error) {
	key := video + "/" + strconv.Itoa(version) + "/" + rendition
	if e, ok := s.media.get(key); ok {
		s.cacheHit.Inc()
		return e, nil
	}
	s.cacheMiss.Inc()
	res, err := s.load(ctx, "r/"+key, func(ctx context.Context) (any, error) {
		vkeys := vkeys
		if len(vkeys) == 0 {
			v, err := s.db.VersionWithKey(ctx, video, version)
			if errors.Is(err, catalog.ErrNotFound) {
				// Not a published version of this video (pending or
				// never published).
				return nil, errNoSuchPlaylist
			}
			if err != nil {
				return nil, err
			}
			vkeys = v.Keys
		}
		prefix := layout.VersionPrefix(video, version)
		name := layout.MediaPlaylistName(prefix, rendition)
		data, err := s.readObject(ctx, name)
		if errors.Is(err, storage.ErrNotFound) {
			return nil, errNoSuchPlaylist
		}
		if err != nil {
			return nil, err
		}
		tmpl, err := playlist.CompileMedia(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		if !tmpl.Media.Ended {
			return nil, fmt.Errorf("%s: not a finished VOD playlist (no EXT-X-ENDLIST)", name)
		}
		// Every segment must be under AES-128 and one of the version's
		// keys (one per key period): each stored key URI must name one.
		if len(tmpl.KeyURIs) == 0 {
			return nil, fmt.Errorf("%s: not encrypted", name)
		}
		for _, sg := range tmpl.Media.Segments {
			if sg.Key == nil || sg.Key.Method != "AES-128" {
				return nil, fmt.Errorf("%s: a segment is not encrypted with AES-128", name)
			}
		}
		e, err := newMediaEntry(tmpl, vkeys)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		dir := layout.RenditionDir(prefix, rendition)
		for _, res := range tmpl.Resources {
			obj, err := resolveObject(dir, prefix, res.URI)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			e.objects = append(e.objects, obj)
		}
		s.media.add(key, e, int64(len(data))*2)
		return e, nil
	})
	if err != nil {
		return nil, err
	}
	return res.(*mediaEntry), nil
}

// newMediaEntry maps each distinct key URI of tmpl to the key of vkeys (in
// period order) whose id it contains, refusing a URI that names none or
// several, and records each resource's key period and its end.
func newMediaEntry(tmpl *playlist.MediaTemplate, vkeys []catalog.WrappedKey) (*mediaEntry, error) {
	e := &mediaEntry{tmpl: tmpl}
	keyPeriod := make([]int, len(tmpl.KeyURIs)) // index into vkeys of each key URI
	for i, uri := range tmpl.KeyURIs {
		found := -1
		for j, k := range vkeys {
			if strings.Contains(uri, k.KeyID) {
				if found >= 0 {
					return nil, fmt.Errorf("key URI %q names two keys of the version", uri)
				}
				found = j
			}
		}
		if found < 0 {
			return nil, fmt.Errorf("key URI %q names none of the version's keys", uri)
		}
		keyPeriod[i] = found
		e.keyIDs = append(e.keyIDs, vkeys[found].KeyID)
	}
	if len(vkeys) > 1 {
		e.keyPeriod = time.Duration(vkeys[1].Start * float64(time.Second))
	}
	var total float64
	for _, sg := range tmpl.Media.Segments {
		total += sg.Duration
	}
	for _, res := range tmpl.Resources {
		if res.Key < 0 {
			return nil, fmt.Errorf("resource %q is not under a key", res.URI)
		}
		p := keyPeriod[res.Key]
		end := total
		if p+1 < len(vkeys) {
			end = vkeys[p+1].Start
		}
		e.period, e.periodEnd = append(e.period, p), append(e.periodEnd, end)
	}
	return e, nil
}

// resolveObject maps a segment URI of a playlist stored under dir to its
// object name, which must stay under the version's prefix.
func resolveObject(dir, prefix, uri string) (string, error) {
	if uri == "" || strings.ContainsAny(uri, "?#\\") || strings.Contains(uri, "://") || strings.HasPrefix(uri, "/") {
		return "", fmt.Errorf("segment URI %q is not a plain relative reference", uri)
	}
	obj := path.Clean(dir + uri)
	if !strings.HasPrefix(obj, prefix) {
		return "", fmt.Errorf("segment URI %q leaves the version's folder", uri)
	}
	if err := storage.ValidateName(obj); err != nil {
		return "", err
	}
	return obj, nil
}

// urlGranularity is how often a rendition's segment URLs are re-signed.
func (s *Server) urlGranularity() time.Duration {
	return min(max(s.cfg.SegmentURLTTL/10, time.Second), time.Minute)
}

// sasHorizon is how far into the media direct Azure SAS URLs reach: the
// key period, or SASMaxLifetime for a version with one key.
func (s *Server) sasHorizon(e *mediaEntry) time.Duration {
	if e.keyPeriod > 0 {
		return e.keyPeriod
	}
	return s.cfg.SASMaxLifetime
}

// mediaURLs returns the entry's signed segment URLs. Segment i of a VOD
// playlist is needed when linear playback reaches it, so its URL expires at
// issued + SegmentURLTTL + the segment's end time: a 2-hour title plays
// through from one playlist fetch, while each URL lives no longer than that
// bound. The URLs are issued at the start of a time bucket (a tenth of the
// TTL, between 1 s and 1 min) and shared by every request in the bucket, so
// signing 1800 segments happens once per bucket, not per request; a URL
// therefore lives between TTL − bucket and TTL beyond its segment's end.
//
// A URL must not let a session that has ended watch on: gateway URLs
// (every filesystem segment) check the session at each fetch, through the
// session part the request appends (urlSigner). An Azure segment is a
// direct SAS, which nobody can revoke, only while its expiry stays within
// issued + SegmentURLTTL + sasHorizon (the segments of the first key
// period); later segments get a gateway URL that checks the session and
// redirects to a SAS living SASMaxLifetime.
func (s *Server) mediaURLs(e *mediaEntry) (*signedSet, error) {
	g := int64(s.urlGranularity() / time.Second)
	issued := s.now().Unix() / g * g
	if set := e.signed.Load(); set != nil && set.issued == issued {
		return set, nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if set := e.signed.Load(); set != nil && set.issued == issued {
		return set, nil
	}
	it := time.Unix(issued, 0)
	ttl := int64(s.cfg.SegmentURLTTL / time.Second)
	horizon := int64(s.sasHorizon(e) / time.Second)
	set := &signedSet{issued: issued, urls: make([]string, len(e.objects)), gated: make([]bool, len(e.objects))}
	for i, obj := range e.objects {
		end := int64(math.Ceil(e.tmpl.Resources[i].Start + e.tmpl.Resources[i].Duration))
		exp := time.Unix(issued+ttl+end, 0)
		var (
			u   string
			err error
		)
		if s.az != nil && end <= horizon {
			u, err = s.az.SignedURL(obj, exp.Sub(it), it)
		} else {
			u, err = s.urls.sign(obj, exp)
			set.gated[i] = true
			set.nGated++
		}
		if err != nil {
			return nil, err
		}
		set.urls[i] = u
		set.total += len(u)
	}
	e.signed.Store(set)
	return set, nil
}

// --- keys -----------------------------------------------------------------

type keyEntry struct {
	video   string
	version int
	wrapped catalog.WrappedKey
}

// lookupKey returns a wrapped key and its owner. Found keys are cached
// (wrapped: the raw key is unwrapped per request and never kept) for
// KeyCacheTTL or until Forget; unknown ids are remembered for
// unknownKeyTTL.
func (s *Server) lookupKey(ctx context.Context, keyID string) (string, int, catalog.WrappedKey, error) {
	if e, ok := s.keys.get(keyID); ok {
		return e.video, e.version, e.wrapped, nil
	}
	if _, ok := s.unknown.get(keyID); ok {
		return "", 0, catalog.WrappedKey{}, fmt.Errorf("gateway: key %s: %w", keyID, catalog.ErrNotFound)
	}
	video, version, wk, err := s.db.KeyByID(ctx, keyID)
	if errors.Is(err, catalog.ErrNotFound) {
		s.unknown.add(keyID, struct{}{}, 1)
	}
	if err != nil {
		return "", 0, wk, err
	}
	s.keys.add(keyID, keyEntry{video: video, version: version, wrapped: wk}, 1)
	return video, version, wk, nil
}

// Forget drops what this gateway keeps of a version (its keys, its compiled
// playlists) once the version has been deleted and its keys destroyed:
// the next request asks the catalog, which no longer has them. See
// WatchDeletions.
func (s *Server) Forget(video string, version int) {
	prefix := video + "/" + strconv.Itoa(version)
	n := s.keys.removeIf(func(_ string, e keyEntry) bool { return e.video == video && e.version == version })
	n += s.masters.removeIf(func(k string, _ *masterEntry) bool { return k == prefix })
	n += s.media.removeIf(func(k string, _ *mediaEntry) bool { return strings.HasPrefix(k, prefix+"/") })
	if n > 0 {
		s.log.Info("deleted version forgotten", "video", video, "version", version, "entries", n)
	}
}

// forgetAll drops every cached key and playlist: deletion notices may have
// been missed.
func (s *Server) forgetAll() {
	s.keys.removeIf(func(string, keyEntry) bool { return true })
	s.masters.removeIf(func(string, *masterEntry) bool { return true })
	s.media.removeIf(func(string, *mediaEntry) bool { return true })
}

// serveKey answers GET /v1/keys/{key_id}. The key goes only to a token of
// the video that owns it, of a session that is live (admitted before by a
// playlist request, not released, evicted or idle): a session that has
// ended gets no further key, so it can watch at most the rest of the key
// period it holds. Another video's key and an unknown one get the same 404,
// so the endpoint tells nobody which key ids exist.
func (s *Server) serveKey(w http.ResponseWriter, r *http.Request) {
	keyID := r.PathValue("key_id")
	a, ok := s.authenticate(w, r)
	if !ok {
		return
	}
	if !keys.ValidKeyID(keyID) {
		s.noSuchKey(w, r)
		return
	}
	video, version, wk, err := s.lookupKey(r.Context(), keyID)
	if errors.Is(err, catalog.ErrNotFound) {
		s.noSuchKey(w, r)
		return
	}
	if err != nil {
		s.internal(w, r, "key lookup", err)
		return
	}
	if a.claims.Video != video {
		s.noSuchKey(w, r)
		return
	}
	if !s.admit(w, r, a, false) {
		return
	}
	ck, err := s.keyring.Unwrap(wk.KEKID, wk.KeyID, wk.Wrapped)
	if err != nil {
		s.internal(w, r, "unwrap key", err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Cache-Control", layout.Private)
	h.Set("Pragma", "no-cache")
	h.Set("Content-Length", strconv.Itoa(keys.Size))
	s.metrics.keyDeliveries.Inc()
	s.log.Info("key delivered", "video", video, "version", version, "key_id", keyID,
		"subject", a.claims.Subject, "session", a.claims.Session)
	b := ck.Bytes()
	_, _ = w.Write(b)
	clear(b)
}

// noSuchKey is the one answer for a key this token may not have: unknown,
// destroyed, or another video's.
func (s *Server) noSuchKey(w http.ResponseWriter, r *http.Request) {
	s.fail(w, r, http.StatusNotFound, "not_found", "no such key")
}

// --- sessions -------------------------------------------------------------

func (s *Server) serveHeartbeat(w http.ResponseWriter, r *http.Request) {
	a, ok := s.authenticate(w, r)
	if !ok || !s.admit(w, r, a, false) {
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) serveRelease(w http.ResponseWriter, r *http.Request) {
	a, ok := s.authenticate(w, r)
	if !ok {
		return
	}
	live, err := s.sessions.Release(r.Context(), a.claims.Subject, a.claims.Session)
	if err != nil {
		s.log.Error("session store", "err", err)
		s.fail(w, r, http.StatusServiceUnavailable, "unavailable", "try again")
		return
	}
	if live {
		s.log.Info("session released", "video", a.claims.Video, "subject", a.claims.Subject, "session", a.claims.Session)
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) serveEvict(w http.ResponseWriter, r *http.Request) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if s.cfg.AdminToken == "" || !ok || !constantTimeEqual(tok, s.cfg.AdminToken) {
		s.fail(w, r, http.StatusUnauthorized, "unauthorized", "an admin token is required")
		return
	}
	// A session is (subject, session id): the eviction names both, so it
	// ends exactly one subject's session.
	session, subject := r.PathValue("session"), r.URL.Query().Get("subject")
	if subject == "" {
		s.fail(w, r, http.StatusBadRequest, "subject_required", "name the session's subject: DELETE /v1/sessions/{session}?subject=…")
		return
	}
	if (playback.Claims{Video: "v", Subject: subject, Session: session, Expires: time.Unix(1, 0)}).Validate() != nil {
		s.fail(w, r, http.StatusNotFound, "not_found", "no such live session")
		return
	}
	err := s.sessions.Evict(r.Context(), subject, session)
	if errors.Is(err, ErrUnknownSession) {
		s.fail(w, r, http.StatusNotFound, "not_found", "no such live session")
		return
	}
	if err != nil {
		s.log.Error("session store", "err", err)
		s.fail(w, r, http.StatusServiceUnavailable, "unavailable", "try again")
		return
	}
	s.log.Info("session evicted", "subject", subject, "session", session)
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) internal(w http.ResponseWriter, r *http.Request, what string, err error) {
	s.log.Error(what, "path", r.URL.Path, "err", err)
	s.fail(w, r, http.StatusInternalServerError, "internal", "internal error")
}
