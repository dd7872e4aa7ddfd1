package gateway

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/hlsvault/hlsvault/internal/catalog"
	"github.com/hlsvault/hlsvault/internal/deletions"
	"github.com/hlsvault/hlsvault/internal/gc"
	"github.com/hlsvault/hlsvault/internal/playlist"
	"github.com/hlsvault/hlsvault/internal/storage"
	"github.com/hlsvault/hlsvault/internal/synthetic"
	"github.com/hlsvault/hlsvault/internal/testenv"
	"github.com/hlsvault/hlsvault/internal/testenv/fixtures"
	"github.com/hlsvault/hlsvault/playback"
)

// stream is one player: its token, its rendition playlist, the key URIs
// of its first and last key periods.
type stream struct {
	tok     string
	media   *playlist.ParsedMedia
	keyURI  string
	lastKey string
	segment []string
}

// TestCapLimitsWatching: with MAX_STREAMS_PER_SUBJECT=N, N+1 streams of
// one subject start; each admitted one fetches master, rendition, its key
// and a segment, then lets go of its session (N-1 release it, the last
// idles past SESSION_TTL). None of them gets the key again, nor the second
// key period's key, nor a further segment, and the refused one never gets
// a key. A new session admitted afterwards does get the second period's
// key (the refusals are the sessions', not the keys'). On the old gateway the
// key endpoint admitted any session under the cap and segment URLs were
// bearer URLs, so every one of them kept watching.
func TestCapLimitsWatching(t *testing.T) {
	const limit = 3
	ttl := 2 * time.Second
	e := newEnv(t, fixtures.FS(t), envOptions{sessions: func(c *SessionsConfig) { c.Limit = limit; c.TTL = ttl }})
	video := testenv.Name("vid")
	fx := e.publishPeriods(video, 40*time.Second, 300, 20*time.Second)
	if len(fx.KeyIDs) != 2 {
		t.Fatalf("key periods: %v, want 2", fx.KeyIDs)
	}
	subject := testenv.Name("sharer")

	var admitted []stream
	var refused string
	for i := 0; i < limit+1; i++ {
		tok := e.token(video, subject, playback.NewSessionID(), time.Hour)
		m := e.get(withToken("/v1/videos/"+video+"/master.m3u8", tok))
		if i == limit {
			if m.code != 429 {
				t.Fatalf("stream %d beyond the cap: master %d %s", i, m.code, m.body)
			}
			refused = tok
			continue
		}
		if m.code != 200 {
			t.Fatalf("stream %d: master %d %s", i, m.code, m.body)
		}
		pm, err := playlist.ParseMaster(bytes.NewReader(m.body))
		if err != nil {
			t.Fatal(err)
		}
		r := e.get(pm.Variants[0].URI)
		if r.code != 200 {
			t.Fatalf("stream %d: rendition %d %s", i, r.code, r.body)
		}
		media, err := playlist.ParseMedia(bytes.NewReader(r.body))
		if err != nil {
			t.Fatal(err)
		}
		s := stream{tok: tok, media: media, keyURI: media.Segments[0].Key.URI, lastKey: media.Segments[len(media.Segments)-1].Key.URI}
		if s.lastKey == s.keyURI || !strings.Contains(s.lastKey, fx.KeyIDs[1]) {
			t.Fatalf("stream %d: last segment's key %s, want the second period's %s", i, s.lastKey, fx.KeyIDs[1])
		}
		for _, sg := range media.Segments {
			s.segment = append(s.segment, sg.URI)
		}
		if k := e.get(s.keyURI); k.code != 200 || len(k.body) != 16 {
			t.Fatalf("stream %d: first key %d %s", i, k.code, k.body)
		}
		if g := e.get(s.segment[0]); g.code != 200 {
			t.Fatalf("stream %d: first segment %d %s", i, g.code, g.body)
		}
		admitted = append(admitted, s)
	}
	// The refused stream has no playlist; with a key URI it learnt
	// elsewhere it still gets nothing.
	if r := e.get(withToken("/v1/keys/"+fx.KeyID, refused)); r.code != 403 || errorCode(r) != "session_ended" {
		t.Errorf("the stream refused by the cap got its key: %d %s", r.code, r.body)
	}

	// All but the last release; the last idles past the session TTL (its
	// segment fetches kept it alive until then).
	for _, s := range admitted[:limit-1] {
		if r := e.do("POST", withToken("/v1/sessions/release", s.tok), nil); r.code != 204 {
			t.Fatalf("release: %d", r.code)
		}
	}
	time.Sleep(ttl + 500*time.Millisecond)

	for i, s := range admitted {
		for _, k := range []string{s.keyURI, s.lastKey} {
			if r := e.get(k); r.code != 403 || errorCode(r) != "session_ended" {
				t.Errorf("stream %d after letting go of its session: key %s: %d %s", i, k, r.code, r.body)
			}
		}
		for _, u := range []string{s.segment[1], s.segment[len(s.segment)-1]} {
			if r := e.get(u); r.code != 403 || errorCode(r) != "session_ended" {
				t.Errorf("stream %d after letting go of its session: segment %d %s", i, r.code, r.body)
			}
		}
	}
	if r := e.get(withToken("/v1/keys/"+fx.KeyIDs[1], refused)); r.code != 403 {
		t.Errorf("the refused stream, later: second period's key %d %s", r.code, r.body)
	}
	fresh := e.token(video, subject, playback.NewSessionID(), time.Hour)
	if m := e.get(withToken("/v1/videos/"+video+"/master.m3u8", fresh)); m.code != 200 {
		t.Fatalf("a new session once the others ended: master %d %s", m.code, m.body)
	}
	if r := e.get(withToken("/v1/keys/"+fx.KeyIDs[1], fresh)); r.code != 200 || len(r.body) != 16 {
		t.Errorf("a live session: second period's key %d %s", r.code, r.body)
	}
}

// TestSegmentFetchKeepsSessionAlive: a player that only fetches segments
// (no heartbeat) keeps its session past SESSION_TTL.
func TestSegmentFetchKeepsSessionAlive(t *testing.T) {
	ttl := 2 * time.Second
	e := newEnv(t, fixtures.FS(t), envOptions{sessions: func(c *SessionsConfig) { c.TTL = ttl; c.LocalConfirm = -1 }})
	video := testenv.Name("vid")
	fx := e.publish(video, 40*time.Second, 300)
	tok := e.token(video, testenv.Name("viewer"), playback.NewSessionID(), time.Hour)
	r := e.get(withToken("/v1/videos/"+video+"/240p/index.m3u8", tok))
	if r.code != 200 {
		t.Fatalf("rendition: %d", r.code)
	}
	media, err := playlist.ParseMedia(bytes.NewReader(r.body))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * ttl)
	for i := 0; time.Now().Before(deadline); i++ {
		if g := e.get(media.Segments[i%len(media.Segments)].URI); g.code != 200 {
			t.Fatalf("segment %d: %d %s", i, g.code, g.body)
		}
		time.Sleep(ttl / 4)
	}
	if k := e.get(withToken("/v1/keys/"+fx.KeyID, tok)); k.code != 200 {
		t.Errorf("key after %v of segment fetches only: %d %s", 2*ttl, k.code, k.body)
	}
}

// TestAzureSegmentsBeyondHorizon: direct SAS URLs cover only the first
// SAS_MAX_LIFETIME of media (the key period); later segments are gateway
// URLs that check the session and redirect to a SAS for that one blob,
// living SAS_MAX_LIFETIME, whose Cache-Control is private and short.
func TestAzureSegmentsBeyondHorizon(t *testing.T) {
	az, err := storage.NewAzure(context.Background(), storage.AzureConfig{
		ConnectionString: testenv.AzuriteConnectionString(t), Container: testenv.Name("gw")})
	if err != nil {
		t.Fatal(err)
	}
	horizon := 10 * time.Second
	e := newEnv(t, az, envOptions{cfg: func(c *Config) { c.SASMaxLifetime = horizon }})
	video := testenv.Name("vid")
	fx := e.publish(video, 20*time.Second, 300)
	tok := e.token(video, testenv.Name("frank"), playback.NewSessionID(), time.Hour)
	r := e.get(withToken("/v1/videos/"+video+"/144p/index.m3u8", tok))
	if r.code != 200 {
		t.Fatalf("rendition: %d %s", r.code, r.body)
	}
	media, err := playlist.ParseMedia(bytes.NewReader(r.body))
	if err != nil {
		t.Fatal(err)
	}
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	var gated []string
	for i, s := range media.Segments {
		end := 4 * (i + 1) // 4 s segments
		direct := !strings.HasPrefix(s.URI, "/v1/segments/")
		if direct != (time.Duration(end)*time.Second <= horizon) {
			t.Errorf("segment %d (ends at %ds): direct SAS %v, want direct only within %v", i, end, direct, horizon)
		}
		if direct {
			if q, _ := url.Parse(s.URI); q.Query().Get("rscc") != "private, max-age=60" {
				t.Errorf("segment %d: SAS Cache-Control override %q", i, q.Query().Get("rscc"))
			}
			continue
		}
		gated = append(gated, s.URI)
		resp, err := noRedirect.Get(e.ts.URL + s.URI)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		loc := resp.Header.Get("Location")
		q, _ := url.Parse(loc)
		se, _ := time.Parse(time.RFC3339, q.Query().Get("se"))
		if resp.StatusCode != 302 || q.Query().Get("sr") != "b" || se.After(time.Now().Add(horizon+time.Second)) ||
			!strings.HasSuffix(q.Path, fmt.Sprintf("/144p/seg_%05d.ts", i)) || resp.Header.Get("Cache-Control") != "private, no-store" {
			t.Fatalf("segment %d through the gateway: %d %v, Location %s", i, resp.StatusCode, resp.Header, loc)
		}
		blob, err := http.Get(loc)
		if err != nil {
			t.Fatal(err)
		}
		blob.Body.Close()
		if blob.StatusCode != 200 || blob.Header.Get("Cache-Control") != "private, max-age=10" {
			t.Errorf("segment %d redirected SAS: %d, Cache-Control %q", i, blob.StatusCode, blob.Header.Get("Cache-Control"))
		}
	}
	if len(gated) == 0 {
		t.Fatal("no segment beyond the SAS horizon")
	}
	_ = fx
	if rr := e.do("POST", withToken("/v1/sessions/release", tok), nil); rr.code != 204 {
		t.Fatalf("release: %d", rr.code)
	}
	if g := e.get(gated[0]); g.code != 403 || errorCode(g) != "session_ended" {
		t.Errorf("a released session's segment beyond the horizon: %d %s", g.code, g.body)
	}
}

// countingCatalog counts the key lookups that reach PostgreSQL.
type countingCatalog struct {
	Catalog
	keyLookups atomic.Int64
}

func (c *countingCatalog) KeyByID(ctx context.Context, keyID string) (string, int, catalog.WrappedKey, error) {
	c.keyLookups.Add(1)
	return c.Catalog.KeyByID(ctx, keyID)
}

// TestUnknownKeysCached: probing key ids costs one catalog query per id,
// not per request.
func TestUnknownKeysCached(t *testing.T) {
	e := newEnv(t, fixtures.FS(t), envOptions{})
	cc := &countingCatalog{Catalog: e.srv.db}
	e.srv.db = cc
	video := testenv.Name("vid")
	e.publish(video, 8*time.Second, 0)
	tok := e.token(video, "prober", playback.NewSessionID(), time.Hour)
	for range 20 {
		if r := e.get(withToken("/v1/keys/k_0123456789abcdef0123456789abcdef", tok)); r.code != 404 {
			t.Fatalf("unknown key: %d", r.code)
		}
	}
	if n := cc.keyLookups.Load(); n != 1 {
		t.Errorf("20 requests for one unknown key id made %d catalog lookups, want 1", n)
	}
}

// TestDestroyedKeyForgotten: a running gateway fetches v1's key; v2 is
// published; GC (with a tiny grace) deletes v1 and destroys its key, and
// tells the gateways; the same gateway refuses v1's key at once, long
// before its cache TTL (an hour here). The old gateway cached keys forever.
func TestDestroyedKeyForgotten(t *testing.T) {
	ctx := context.Background()
	store := fixtures.FS(t)
	e := newEnv(t, store, envOptions{cfg: func(c *Config) { c.KeyCacheTTL = time.Hour }})
	channel := testenv.Name("hlsvault-test:deleted")
	wctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { e.srv.WatchDeletions(wctx, e.rdb, channel); close(done) }()
	t.Cleanup(func() { stop(); <-done })
	waitSubscribed(t, e.rdb, channel)

	video := testenv.Name("vid")
	v1 := e.publish(video, 8*time.Second, 100)
	tok := e.token(video, "grace", playback.NewSessionID(), time.Hour)
	if r := e.get(withToken("/v1/videos/"+video+"/240p/index.m3u8?v=1", tok)); r.code != 200 {
		t.Fatalf("v1 rendition: %d", r.code)
	}
	if r := e.get(withToken("/v1/keys/"+v1.KeyID, tok)); r.code != 200 {
		t.Fatalf("v1 key: %d %s", r.code, r.body)
	}
	v2, err := synthetic.Publish(ctx, e.db, e.store, e.keyring, synthetic.Title{
		Video: video, Duration: 8 * time.Second, Segment: 4 * time.Second, Renditions: []string{"240p"}})
	if err != nil {
		t.Fatal(err)
	}
	if v2.Version == v1.Version {
		t.Fatal("v2 is v1")
	}
	pub, err := deletions.NewPublisher(e.rdb, channel)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond) // v1 retired longer ago than the grace
	col, err := gc.New(gc.Config{Grace: time.Millisecond}, e.db, store, pub, testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	res, err := col.RunOnce(ctx)
	if err != nil || res.Versions < 1 {
		t.Fatalf("gc: %+v %v", res, err)
	}
	// The notice is asynchronous; allow it a moment, far below the TTL.
	deadline := time.Now().Add(2 * time.Second)
	var r response
	for time.Now().Before(deadline) {
		if r = e.get(withToken("/v1/keys/"+v1.KeyID, tok)); r.code == 404 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if r.code != 404 || errorCode(r) != "not_found" {
		t.Fatalf("v1's destroyed key from the running gateway: %d %s, want 404", r.code, r.body)
	}
	if r := e.get(withToken("/v1/videos/"+video+"/240p/index.m3u8?v=1", tok)); r.code != 404 {
		t.Errorf("v1's playlist after deletion: %d", r.code)
	}
	if r := e.get(withToken("/v1/keys/"+v2.KeyID, tok)); r.code != 200 {
		t.Errorf("v2's key: %d %s", r.code, r.body)
	}
}

// waitSubscribed waits until someone listens on channel.
func waitSubscribed(t *testing.T, rdb *redis.Client, channel string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		n, err := rdb.PubSubNumSub(context.Background(), channel).Result()
		if err != nil {
			t.Fatal(err)
		}
		if n[channel] > 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("the gateway did not subscribe to deletion notices")
}
