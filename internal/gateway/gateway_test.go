package gateway

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/redis/go-redis/v9"

	"github.com/hlsvault/hlsvault/internal/catalog"
	"github.com/hlsvault/hlsvault/internal/keys"
	"github.com/hlsvault/hlsvault/internal/playlist"
	"github.com/hlsvault/hlsvault/internal/storage"
	"github.com/hlsvault/hlsvault/internal/synthetic"
	"github.com/hlsvault/hlsvault/internal/testenv"
	"github.com/hlsvault/hlsvault/internal/testenv/fixtures"
	"github.com/hlsvault/hlsvault/internal/testenv/hlscheck"
	"github.com/hlsvault/hlsvault/playback"
)

const testSecret = "gateway-test-secret-0123456789-abcdefghij"

// env is a gateway on real PostgreSQL and Redis with the given store.
type env struct {
	t        *testing.T
	db       *catalog.DB
	store    storage.Store
	keyring  *keys.Keyring
	rdb      *redis.Client
	tokens   *playback.Signer
	srv      *Server
	ts       *httptest.Server
	logs     *testenv.SyncBuffer
	metrics  *Metrics
	sessions *Sessions
}

type envOptions struct {
	cfg      func(*Config)
	sessions func(*SessionsConfig)
}

func newEnv(t *testing.T, store storage.Store, opt envOptions) *env {
	t.Helper()
	db, keyring := fixtures.Catalog(t), fixtures.Keyring(t)
	rdb := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(t)})
	t.Cleanup(func() { rdb.Close() })
	tokens, err := playback.ParseSecrets("t1:" + testSecret)
	if err != nil {
		t.Fatal(err)
	}
	scfg := SessionsConfig{Prefix: testenv.Name("hlsvault-test:") + ":", Limit: 3, TTL: time.Minute}
	if opt.sessions != nil {
		opt.sessions(&scfg)
	}
	sessions, err := NewSessions(rdb, scfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Tokens: tokens, AdminToken: "gateway-test-admin-token-0123456789abcdef"}
	if opt.cfg != nil {
		opt.cfg(&cfg)
	}
	logs := &testenv.SyncBuffer{}
	m := NewMetrics(prometheus.NewRegistry())
	srv, err := New(cfg, db, store, keyring, sessions, m, slog.New(slog.NewJSONHandler(io.MultiWriter(logs, testenv.TestWriter{T: t}), nil)))
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	return &env{t: t, db: db, store: store, keyring: keyring, rdb: rdb, tokens: tokens, srv: srv, ts: ts, logs: logs, metrics: m, sessions: sessions}
}

func (e *env) token(video, subject, session string, ttl time.Duration) string {
	e.t.Helper()
	tok, err := e.tokens.Mint(playback.Claims{Video: video, Subject: subject, Session: session, Expires: time.Now().Add(ttl)})
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

func (e *env) publish(video string, d time.Duration, segBytes int) synthetic.Result {
	e.t.Helper()
	return e.publishPeriods(video, d, segBytes, 0)
}

// publishPeriods publishes a synthetic title under one key per keyPeriod
// of media (0: one key).
func (e *env) publishPeriods(video string, d time.Duration, segBytes int, keyPeriod time.Duration) synthetic.Result {
	e.t.Helper()
	res, err := synthetic.Publish(context.Background(), e.db, e.store, e.keyring, synthetic.Title{
		Video: video, Duration: d, Segment: 4 * time.Second, Renditions: []string{"240p", "144p"}, SegmentBytes: segBytes,
		KeyPeriod: keyPeriod})
	if err != nil {
		e.t.Fatal(err)
	}
	return res
}

type response struct {
	code   int
	header http.Header
	body   []byte
}

func (e *env) do(method, rawURL string, hdr map[string]string) response {
	e.t.Helper()
	if strings.HasPrefix(rawURL, "/") {
		rawURL = e.ts.URL + rawURL
	}
	req, err := http.NewRequest(method, rawURL, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return response{resp.StatusCode, resp.Header, b}
}

func (e *env) get(path string) response { return e.do("GET", path, nil) }

func withToken(path, tok string) string {
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	return path + sep + "token=" + url.QueryEscape(tok)
}

func errorCode(r response) string {
	var body apiError
	_ = json.Unmarshal(r.body, &body)
	return body.Error
}

var ivRE = regexp.MustCompile(`IV=0x[0-9A-F]{32}`)

func TestPlaylistsKeysAndSegments(t *testing.T) {
	store := fixtures.FS(t)
	e := newEnv(t, store, envOptions{})
	video := testenv.Name("vid")
	fx := e.publish(video, 20*time.Second, 1000)
	tok := e.token(video, "alice", playback.NewSessionID(), time.Hour)

	// Master: every rendition URI points back at the gateway, pinned to the
	// version, carrying the token.
	r := e.get(withToken("/v1/videos/"+video+"/master.m3u8", tok))
	if r.code != 200 || r.header.Get("Content-Type") != "application/vnd.apple.mpegurl" || r.header.Get("Cache-Control") != "private, no-store" {
		t.Fatalf("master: %d %v %s", r.code, r.header, r.body)
	}
	pm, err := playlist.ParseMaster(bytes.NewReader(r.body))
	if err != nil || len(pm.Variants) != 2 {
		t.Fatalf("master: %v\n%s", err, r.body)
	}
	for _, v := range pm.Variants {
		name := strings.Split(v.URI, "/")[4]
		if want := "/v1/videos/" + video + "/" + name + "/index.m3u8?v=" + strconv.Itoa(fx.Version) + "&token=" + tok; v.URI != want {
			t.Errorf("variant URI %q, want %q", v.URI, want)
		}
	}

	// Rendition, as the player follows the master.
	stored := e.object(catalog.VersionPrefix(video, fx.Version) + "240p/index.m3u8")
	r = e.get(pm.Variants[0].URI)
	if r.code != 200 || r.header.Get("Cache-Control") != "private, no-store" {
		t.Fatalf("rendition: %d %s", r.code, r.body)
	}
	media, err := playlist.ParseMedia(bytes.NewReader(r.body))
	if err != nil || !media.Ended || len(media.Segments) != fx.Segments {
		t.Fatalf("rendition: %v %+v", err, media)
	}
	if got, want := ivRE.FindAllString(string(r.body), -1), ivRE.FindAllString(string(stored), -1); strings.Join(got, ",") != strings.Join(want, ",") || len(got) != fx.Segments {
		t.Errorf("IVs changed:\n%v\n%v", got, want)
	}
	wantKey := "/v1/keys/" + fx.KeyID + "?token=" + tok
	for i, s := range media.Segments {
		if s.Key == nil || s.Key.URI != wantKey {
			t.Fatalf("segment %d key %+v, want %s", i, s.Key, wantKey)
		}
		u, err := url.Parse(s.URI)
		if err != nil || u.Path != fmt.Sprintf("/v1/segments/hls/%s/v%d/240p/seg_%05d.ts", video, fx.Version, i) ||
			u.Query().Get("exp") == "" || u.Query().Get("sig") == "" || u.Query().Has("token") {
			t.Fatalf("segment %d URI %q", i, s.URI)
		}
		// Expiry: TTL (10m default) beyond the segment's end in linear playback.
		exp, _ := strconv.ParseInt(u.Query().Get("exp"), 10, 64)
		limit := time.Now().Add(10*time.Minute + time.Duration(4*(i+1))*time.Second).Unix()
		if exp > limit+1 || exp < limit-70 {
			t.Errorf("segment %d expires at %d, want about %d", i, exp, limit)
		}
	}
	// The rendition without a version pin serves the current version.
	if r2 := e.get(withToken("/v1/videos/"+video+"/240p/index.m3u8", tok)); r2.code != 200 || !bytes.Equal(r2.body, r.body) {
		t.Errorf("unpinned rendition: %d", r2.code)
	}

	// A segment, whole and by range.
	segURL := media.Segments[1].URI
	want := e.object(fmt.Sprintf("hls/%s/v%d/240p/seg_00001.ts", video, fx.Version))
	if s := e.get(segURL); s.code != 200 || !bytes.Equal(s.body, want) || s.header.Get("Content-Type") != "video/mp2t" {
		t.Errorf("segment: %d %s", s.code, s.header)
	}
	if s := e.do("GET", segURL, map[string]string{"Range": "bytes=100-299"}); s.code != 206 || !bytes.Equal(s.body, want[100:300]) ||
		s.header.Get("Content-Range") != fmt.Sprintf("bytes 100-299/%d", len(want)) {
		t.Errorf("range: %d %s", s.code, s.header)
	}
	if s := e.do("GET", segURL, map[string]string{"Range": "bytes=-10"}); s.code != 206 || !bytes.Equal(s.body, want[len(want)-10:]) {
		t.Errorf("suffix range: %d", s.code)
	}

	// The key.
	k := e.get(wantKey)
	ck := e.contentKey(video)
	if k.code != 200 || !bytes.Equal(k.body, ck.Bytes()) || k.header.Get("Content-Type") != "application/octet-stream" ||
		k.header.Get("Cache-Control") != "private, no-store" {
		t.Fatalf("key: %d %v", k.code, k.header)
	}
	if n := counterValue(e.metrics.keyDeliveries); n != 1 {
		t.Errorf("key deliveries %v", n)
	}
	logs := e.logs.String()
	if !strings.Contains(logs, `"msg":"key delivered"`) || !strings.Contains(logs, `"subject":"alice"`) {
		t.Errorf("key delivery not logged")
	}
	if strings.Contains(logs, hex.EncodeToString(ck.Bytes())) || strings.Contains(logs, base64.StdEncoding.EncodeToString(ck.Bytes())) ||
		strings.Contains(logs, string(ck.Bytes())) {
		t.Error("the key is in the logs")
	}
	// No response names the storage root.
	root := strings.TrimPrefix(store.String(), "file://")
	for _, b := range [][]byte{r.body} {
		if bytes.Contains(b, []byte(root)) || bytes.Contains(b, []byte("file:")) {
			t.Error("a playlist names the storage directory")
		}
	}
	// Metrics by route and status.
	if n := counterValue(e.metrics.requests.WithLabelValues("rendition", "200")); n != 2 {
		t.Errorf("rendition 200s: %v", n)
	}

	// The rewritten master and every playlist it leads to, as a player
	// fetches them, pass third-party strict parsing (last: it adds to the
	// request counts above).
	hlscheck.StrictAll(t, hlscheck.Crawl(t, e.ts.Client(), e.ts.URL+withToken("/v1/videos/"+video+"/master.m3u8", tok)))
}

func (e *env) object(name string) []byte {
	e.t.Helper()
	rc, err := e.store.Get(context.Background(), name)
	if err != nil {
		e.t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		e.t.Fatal(err)
	}
	return b
}

func (e *env) contentKey(video string) keys.ContentKey {
	e.t.Helper()
	v, err := e.db.CurrentVersion(context.Background(), video)
	if err != nil {
		e.t.Fatal(err)
	}
	ck, err := e.keyring.Unwrap(v.Keys[0].KEKID, v.Keys[0].KeyID, v.Keys[0].Wrapped)
	if err != nil {
		e.t.Fatal(err)
	}
	return ck
}

func TestAuthorization(t *testing.T) {
	e := newEnv(t, fixtures.FS(t), envOptions{})
	video, other := testenv.Name("vid"), testenv.Name("vid")
	fx := e.publish(video, 8*time.Second, 0)
	fxOther := e.publish(other, 8*time.Second, 0)
	good := e.token(video, "bob", playback.NewSessionID(), time.Hour)
	expired := e.token(video, "bob", playback.NewSessionID(), -time.Minute)
	otherVideo := e.token(other, "bob", playback.NewSessionID(), time.Hour)
	foreign, _ := playback.ParseSecrets("t1:foreign-secret-not-the-gateways-0123456789")
	forged, _ := foreign.Mint(playback.Claims{Video: video, Subject: "bob", Session: "s1", Expires: time.Now().Add(time.Hour)})
	parts := strings.Split(good, ".")
	tamperedPayload := base64.RawURLEncoding.EncodeToString([]byte(`{"vid":"` + video + `","sub":"mallory","sid":"s2","exp":4000000000}`))
	tampered := parts[0] + "." + parts[1] + "." + tamperedPayload + "." + parts[3]

	// The good token's session is admitted by its first playlist request;
	// a key request alone never admits one.
	if r := e.get(withToken("/v1/videos/"+video+"/master.m3u8", good)); r.code != 200 {
		t.Fatalf("master: %d %s", r.code, r.body)
	}
	paths := map[string]string{
		"master":    "/v1/videos/" + video + "/master.m3u8",
		"rendition": "/v1/videos/" + video + "/240p/index.m3u8",
		"key":       "/v1/keys/" + fx.KeyID,
	}
	for route, p := range paths {
		for _, tc := range []struct {
			name, tok string
			code      int
			err       string
		}{
			{"none", "", 401, "unauthorized"},
			{"garbage", "garbage", 401, "invalid_token"},
			{"tampered", tampered, 401, "invalid_token"},
			{"wrong secret", forged, 401, "invalid_token"},
			{"expired", expired, 403, "token_expired"},
			{"other video", otherVideo, 403, "wrong_video"},
			{"good", good, 200, ""},
		} {
			path := p
			if tc.tok != "" {
				path = withToken(p, tc.tok)
			}
			code, errc := tc.code, tc.err
			if route == "key" && tc.name == "other video" {
				// Not this token's key: the same 404 as an unknown key.
				code, errc = 404, "not_found"
			}
			r := e.get(path)
			if r.code != code || (errc != "" && errorCode(r) != errc) {
				t.Errorf("%s with %s token: %d %s, want %d %s", route, tc.name, r.code, r.body, code, errc)
			}
			if tc.code != 200 && r.header.Get("Cache-Control") != "no-store" {
				t.Errorf("%s %s: error response cacheable", route, tc.name)
			}
		}
	}
	// The other video's key with this video's token, an unknown key and a
	// malformed id get the same answer: the endpoint is no oracle of which
	// key ids exist.
	other404 := e.get(withToken("/v1/keys/"+fxOther.KeyID, good))
	unknown404 := e.get(withToken("/v1/keys/k_0123456789abcdef0123456789abcdef", good))
	malformed404 := e.get(withToken("/v1/keys/not-a-key", good))
	for name, r := range map[string]response{"other video's key": other404, "unknown key": unknown404, "malformed key id": malformed404} {
		if r.code != 404 || !bytes.Equal(r.body, unknown404.body) || r.header.Get("Content-Type") != unknown404.header.Get("Content-Type") {
			t.Errorf("%s: %d %s, want the unknown key's 404 %s", name, r.code, r.body, unknown404.body)
		}
	}
	missing := testenv.Name("nothing")
	if r := e.get(withToken("/v1/videos/"+missing+"/master.m3u8", e.token(missing, "bob", "s", time.Hour))); r.code != 404 {
		t.Errorf("unknown video: %d", r.code)
	}
	if r := e.get(withToken("/v1/videos/"+video+"/999p/index.m3u8", good)); r.code != 404 {
		t.Errorf("unknown rendition: %d", r.code)
	}
	// A version number that is not a published version of this video.
	if r := e.get(withToken("/v1/videos/"+video+"/240p/index.m3u8?v=7", good)); r.code != 404 {
		t.Errorf("unknown version: %d", r.code)
	}

	// Header and cookie tokens work, and are not copied into URIs.
	for name, hdr := range map[string]map[string]string{
		"bearer": {"Authorization": "Bearer " + good},
		"cookie": {"Cookie": playback.CookieName + "=" + good},
	} {
		r := e.do("GET", paths["rendition"], hdr)
		if r.code != 200 || bytes.Contains(r.body, []byte("token=")) || !bytes.Contains(r.body, []byte(`URI="/v1/keys/`+fx.KeyID+`"`)) {
			t.Errorf("%s: %d\n%.400s", name, r.code, r.body)
		}
		if k := e.do("GET", paths["key"], hdr); k.code != 200 || len(k.body) != 16 {
			t.Errorf("%s key: %d", name, k.code)
		}
	}
}

// segmentURL is a gateway segment URL for object until exp, bound to the
// session of tok, as a playlist request writes it.
func (e *env) segmentURL(object string, exp time.Time, tok string) string {
	e.t.Helper()
	c, err := e.tokens.Verify(tok, time.Now())
	if err != nil {
		e.t.Fatal(err)
	}
	u, err := e.srv.urls.sign(object, exp)
	if err != nil {
		e.t.Fatal(err)
	}
	return u + e.srv.urls.sessionSuffix(c.Subject, c.Session, c.Expires)
}

func TestSegmentURLs(t *testing.T) {
	e := newEnv(t, fixtures.FS(t), envOptions{})
	video := testenv.Name("vid")
	fx := e.publish(video, 8*time.Second, 500)
	obj := fmt.Sprintf("hls/%s/v%d/240p/seg_00000.ts", video, fx.Version)
	subject := testenv.Name("erin")
	tok := e.token(video, subject, playback.NewSessionID(), time.Hour)
	if r := e.get(withToken("/v1/videos/"+video+"/master.m3u8", tok)); r.code != 200 {
		t.Fatalf("master: %d", r.code)
	}
	now := time.Now()
	fresh := e.ts.URL + e.segmentURL(obj, now.Add(time.Minute), tok)
	if r := e.get(fresh); r.code != 200 || !bytes.Equal(r.body, e.object(obj)) {
		t.Fatalf("fresh URL: %d %s", r.code, r.body)
	}
	stale := e.ts.URL + e.segmentURL(obj, now.Add(-time.Second), tok)
	if r := e.get(stale); r.code != 403 || errorCode(r) != "url_expired" {
		t.Errorf("expired URL: %d %s", r.code, r.body)
	}
	u, _ := url.Parse(fresh)
	q := u.Query()
	other := strings.Replace(fresh, "seg_00000.ts", "seg_00001.ts", 1)
	later := strings.Replace(fresh, "exp="+q.Get("exp"), "exp="+strconv.FormatInt(now.Add(time.Hour).Unix(), 10), 1)
	sess := strings.Split(q.Get("s"), ".")
	mallory := base64.RawURLEncoding.EncodeToString([]byte("mallory"))
	for name, bad := range map[string]string{
		"other object":       other,
		"extended expiry":    later,
		"no signature":       strings.Split(fresh, "&sig=")[0],
		"no session":         strings.Split(fresh, "&s=")[0],
		"another subject":    strings.Replace(fresh, "s="+sess[0]+".", "s="+mallory+".", 1),
		"another session":    strings.Replace(fresh, "."+sess[1]+".", ".other-session.", 1),
		"later token expiry": strings.Replace(fresh, "."+sess[2]+".", "."+strconv.FormatInt(now.Add(48*time.Hour).Unix(), 10)+".", 1),
	} {
		if r := e.get(bad); r.code != 403 || errorCode(r) != "bad_signature" {
			t.Errorf("%s: %d %s", name, r.code, r.body)
		}
	}
	// A URL signed for a name that does not exist is a 404, not a leak.
	ghost := e.ts.URL + e.segmentURL("hls/"+video+"/v1/240p/seg_09999.ts", now.Add(time.Minute), tok)
	if r := e.get(ghost); r.code != 404 {
		t.Errorf("missing object: %d", r.code)
	}
	// A session that was never admitted, and one that has been released,
	// get no segment.
	stranger := e.token(video, subject, playback.NewSessionID(), time.Hour)
	if r := e.get(e.ts.URL + e.segmentURL(obj, now.Add(time.Minute), stranger)); r.code != 403 || errorCode(r) != "session_ended" {
		t.Errorf("a session never admitted: %d %s", r.code, r.body)
	}
	if r := e.do("POST", withToken("/v1/sessions/release", tok), nil); r.code != 204 {
		t.Fatalf("release: %d", r.code)
	}
	if r := e.get(fresh); r.code != 403 || errorCode(r) != "session_ended" {
		t.Errorf("released session's segment: %d %s", r.code, r.body)
	}
	// An expired token's session part is refused even with a fresh URL.
	u2, _ := e.srv.urls.sign(obj, now.Add(time.Minute))
	expired := u2 + e.srv.urls.sessionSuffix(subject, "sess-expired", now.Add(-time.Second))
	if r := e.get(e.ts.URL + expired); r.code != 403 || errorCode(r) != "token_expired" {
		t.Errorf("expired token's session: %d %s", r.code, r.body)
	}
}

func TestCORS(t *testing.T) {
	e := newEnv(t, fixtures.FS(t), envOptions{cfg: func(c *Config) { c.AllowedOrigins = []string{"https://app.example.com"} }})
	video := testenv.Name("vid")
	fx := e.publish(video, 8*time.Second, 0)
	tok := e.token(video, "carol", playback.NewSessionID(), time.Hour)
	if r := e.get(withToken("/v1/videos/"+video+"/master.m3u8", tok)); r.code != 200 {
		t.Fatalf("master: %d", r.code)
	}
	r := e.do("GET", withToken("/v1/keys/"+fx.KeyID, tok), map[string]string{"Origin": "https://app.example.com"})
	if r.code != 200 || r.header.Get("Access-Control-Allow-Origin") != "https://app.example.com" || r.header.Get("Access-Control-Allow-Credentials") != "true" {
		t.Errorf("allowed origin: %d %v", r.code, r.header)
	}
	r = e.do("GET", withToken("/v1/keys/"+fx.KeyID, tok), map[string]string{"Origin": "https://evil.example"})
	if r.header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("other origin allowed: %v", r.header)
	}
	r = e.do("OPTIONS", "/v1/keys/"+fx.KeyID, map[string]string{"Origin": "https://app.example.com", "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "authorization"})
	if r.code != 204 || !strings.Contains(r.header.Get("Access-Control-Allow-Headers"), "Authorization") {
		t.Errorf("preflight: %d %v", r.code, r.header)
	}
	r = e.do("OPTIONS", "/v1/keys/"+fx.KeyID, map[string]string{"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"})
	if r.code != 403 {
		t.Errorf("preflight from another origin: %d", r.code)
	}
}

func TestStreamLimit(t *testing.T) {
	const limit = 3
	e := newEnv(t, fixtures.FS(t), envOptions{sessions: func(c *SessionsConfig) { c.Limit = limit; c.TTL = 2 * time.Second }})
	video := testenv.Name("vid")
	fx := e.publish(video, 8*time.Second, 0)
	subject := testenv.Name("subject")

	// 100 parallel session starts: exactly the limit get in.
	toks := make([]string, 100)
	for i := range toks {
		toks[i] = e.token(video, subject, playback.NewSessionID(), time.Hour)
	}
	codes := make([]response, len(toks))
	var wg sync.WaitGroup
	for i := range toks {
		wg.Go(func() { codes[i] = e.get(withToken("/v1/videos/"+video+"/master.m3u8", toks[i])) })
	}
	wg.Wait()
	var admitted []string
	refused := 0
	for i, r := range codes {
		switch r.code {
		case 200:
			admitted = append(admitted, toks[i])
		case 429:
			refused++
			if errorCode(r) != "stream_limit" || !strings.Contains(string(r.body), "3 devices") || r.header.Get("Retry-After") == "" {
				t.Errorf("429 body %s", r.body)
			}
		default:
			t.Errorf("start %d: %d %s", i, r.code, r.body)
		}
	}
	if len(admitted) != limit || refused != 100-limit {
		t.Fatalf("admitted %d, refused %d; want %d and %d", len(admitted), refused, limit, 100-limit)
	}
	if n, err := e.sessions.Active(context.Background(), subject); err != nil || n != limit {
		t.Fatalf("active sessions %d %v", n, err)
	}
	if n := counterValue(e.metrics.sessions.WithLabelValues("refused")); n != 100-limit {
		t.Errorf("refusals counted %v", n)
	}

	// Seeks and bitrate switches of an admitted session are not new sessions.
	a := admitted[0]
	for _, p := range []string{"/v1/videos/" + video + "/240p/index.m3u8", "/v1/videos/" + video + "/144p/index.m3u8", "/v1/keys/" + fx.KeyID, "/v1/videos/" + video + "/master.m3u8"} {
		if r := e.get(withToken(p, a)); r.code != 200 {
			t.Errorf("admitted session %s: %d %s", p, r.code, r.body)
		}
	}

	// Release frees the place at once; the released session has lost access.
	if r := e.do("POST", withToken("/v1/sessions/release", a), nil); r.code != 204 {
		t.Fatalf("release: %d", r.code)
	}
	if r := e.get(withToken("/v1/keys/"+fx.KeyID, a)); r.code != 403 || errorCode(r) != "session_ended" {
		t.Errorf("released session's key: %d %s", r.code, r.body)
	}
	newcomer := e.token(video, subject, playback.NewSessionID(), time.Hour)
	if r := e.get(withToken("/v1/keys/"+fx.KeyID, newcomer)); r.code != 403 || errorCode(r) != "session_ended" {
		t.Errorf("a key before any playlist (no session admitted): %d %s", r.code, r.body)
	}
	if r := e.get(withToken("/v1/videos/"+video+"/master.m3u8", newcomer)); r.code != 200 {
		t.Errorf("after a release, a new session: %d %s", r.code, r.body)
	}
	if r := e.get(withToken("/v1/keys/"+fx.KeyID, newcomer)); r.code != 200 {
		t.Errorf("after a release, the new session's key: %d %s", r.code, r.body)
	}

	// Eviction by an operator.
	claims, _ := e.tokens.Verify(admitted[1], time.Now())
	evictURL := "/v1/sessions/" + claims.Session + "?subject=" + url.QueryEscape(subject)
	if r := e.do("DELETE", evictURL, nil); r.code != 401 {
		t.Errorf("evict without admin token: %d", r.code)
	}
	if r := e.do("DELETE", evictURL, map[string]string{"Authorization": "Bearer gateway-test-admin-token-0123456789abcdef"}); r.code != 204 {
		t.Errorf("evict: %d %s", r.code, r.body)
	}
	if r := e.get(withToken("/v1/videos/"+video+"/240p/index.m3u8", admitted[1])); r.code != 403 || !strings.Contains(string(r.body), "stopped") {
		t.Errorf("evicted session's playlist: %d %s", r.code, r.body)
	}

	// A session without requests for the TTL is released; it lost access,
	// and its place went to a newcomer. A heartbeat keeps the other alive.
	keep := admitted[2]
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if r := e.do("POST", withToken("/v1/sessions/heartbeat", keep), nil); r.code != 204 {
			t.Fatalf("heartbeat: %d %s", r.code, r.body)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if r := e.get(withToken("/v1/keys/"+fx.KeyID, newcomer)); r.code != 403 || !strings.Contains(string(r.body), "ended") {
		t.Errorf("expired session's key: %d %s", r.code, r.body)
	}
	if r := e.get(withToken("/v1/keys/"+fx.KeyID, keep)); r.code != 200 {
		t.Errorf("kept-alive session: %d %s", r.code, r.body)
	}
	late := e.token(video, subject, playback.NewSessionID(), time.Hour)
	if r := e.get(withToken("/v1/videos/"+video+"/master.m3u8", late)); r.code != 200 {
		t.Errorf("after expiry, a new session: %d %s", r.code, r.body)
	}
	// A heartbeat never admits a session that was not admitted.
	if r := e.do("POST", withToken("/v1/sessions/heartbeat", e.token(video, subject, playback.NewSessionID(), time.Hour)), nil); r.code != 403 {
		t.Errorf("heartbeat of an unknown session: %d", r.code)
	}
}

func TestAzureSignedURLs(t *testing.T) {
	az, err := storage.NewAzure(context.Background(), storage.AzureConfig{
		ConnectionString: testenv.AzuriteConnectionString(t), Container: testenv.Name("gw")})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, az, envOptions{cfg: func(c *Config) { c.SegmentURLTTL = 5 * time.Minute }})
	video := testenv.Name("vid")
	fx := e.publish(video, 12*time.Second, 300)
	tok := e.token(video, "dave", playback.NewSessionID(), time.Hour)
	r := e.get(withToken("/v1/videos/"+video+"/144p/index.m3u8", tok))
	if r.code != 200 {
		t.Fatalf("rendition: %d %s", r.code, r.body)
	}
	media, err := playlist.ParseMedia(bytes.NewReader(r.body))
	if err != nil {
		t.Fatal(err)
	}
	account := "devstoreaccount1"
	cs := testenv.AzuriteConnectionString(t)
	blobHost := regexp.MustCompile(`BlobEndpoint=https?://([^/;]+)`).FindStringSubmatch(cs)[1]
	accountKey := regexp.MustCompile(`AccountKey=([^;]+)`).FindStringSubmatch(cs)[1]
	if bytes.Contains(r.body, []byte(accountKey)) || bytes.Contains(r.body, []byte("sr=c")) {
		t.Fatal("a playlist carries the account key or a container SAS")
	}
	// With absolute SAS segment URLs, the rewritten playlists pass
	// third-party strict parsing.
	hlscheck.StrictAll(t, hlscheck.Crawl(t, e.ts.Client(), e.ts.URL+withToken("/v1/videos/"+video+"/master.m3u8", tok)))
	for i, s := range media.Segments {
		u, err := url.Parse(s.URI)
		if err != nil {
			t.Fatal(err)
		}
		q := u.Query()
		if u.Host != blobHost || !strings.HasPrefix(u.Path, "/"+account+"/") || !strings.HasSuffix(u.Path, fmt.Sprintf("/144p/seg_%05d.ts", i)) ||
			q.Get("sr") != "b" || q.Get("sp") != "r" || q.Get("sig") == "" {
			t.Fatalf("segment %d: %s", i, s.URI)
		}
		st, _ := time.Parse(time.RFC3339, q.Get("st"))
		se, _ := time.Parse(time.RFC3339, q.Get("se"))
		if time.Since(st) < 4*time.Minute || se.After(time.Now().Add(5*time.Minute+time.Duration(4*(i+1))*time.Second+time.Second)) {
			t.Errorf("segment %d: start %v (want back-dated), expiry %v", i, st, se)
		}
	}
	// The SAS reads its blob, and no other.
	first := media.Segments[0].URI
	resp, err := http.Get(first)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Equal(b, e.object(fmt.Sprintf("hls/%s/v%d/144p/seg_00000.ts", video, fx.Version))) {
		t.Fatalf("SAS GET: %d", resp.StatusCode)
	}
	moved := strings.Replace(first, "seg_00000.ts", "seg_00001.ts", 1)
	if resp, err := http.Get(moved); err != nil || resp.StatusCode != 403 {
		t.Errorf("SAS on another blob: %v %v", resp.StatusCode, err)
	} else {
		resp.Body.Close()
	}
	// Production refuses a store that would sign plain-HTTP URLs.
	if _, err := New(Config{Tokens: e.tokens, Production: true}, e.db, az, e.keyring, e.sessions, nil, nil); err == nil || !strings.Contains(err.Error(), "HTTPS") {
		t.Errorf("production with an http blob endpoint: %v", err)
	}
}

func counterValue(c prometheus.Collector) float64 {
	ch := make(chan prometheus.Metric, 1)
	c.Collect(ch)
	var m dto.Metric
	if err := (<-ch).Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}
