package gateway

import (
	"context"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hlsvault/hlsvault/internal/testenv"
	"github.com/hlsvault/hlsvault/internal/testenv/fixtures"
	"github.com/hlsvault/hlsvault/playback"
)

var admin = map[string]string{"Authorization": "Bearer gateway-test-admin-token-0123456789abcdef"}

// A token whose expiry is further ahead than MAX_TOKEN_LIFETIME (plus the
// one-minute skew) is refused on every route as invalid, and logged.
func TestTokenBeyondMaxLifetime(t *testing.T) {
	e := newEnv(t, fixtures.FS(t), envOptions{cfg: func(c *Config) { c.MaxTokenLifetime = 24 * time.Hour }})
	video := testenv.Name("vid")
	fx := e.publish(video, 8*time.Second, 0)
	tenYears := e.token(video, "mallory", playback.NewSessionID(), 10*365*24*time.Hour)
	justOver := e.token(video, "mallory", playback.NewSessionID(), 24*time.Hour+playback.ClockSkew+time.Minute)
	withinSkew := e.token(video, "mallory", playback.NewSessionID(), 24*time.Hour+playback.ClockSkew/2)
	for _, p := range []string{"/v1/videos/" + video + "/master.m3u8", "/v1/videos/" + video + "/240p/index.m3u8", "/v1/keys/" + fx.KeyID} {
		for name, tok := range map[string]string{"ten years": tenYears, "lifetime + skew + 1m": justOver} {
			r := e.get(withToken(p, tok))
			if r.code != 401 || errorCode(r) != "invalid_token" || !strings.Contains(r.header.Get("WWW-Authenticate"), "invalid_token") {
				t.Errorf("%s with a %s token: %d %s, want 401 invalid_token", p, name, r.code, r.body)
			}
		}
	}
	if r := e.do("POST", withToken("/v1/sessions/heartbeat", tenYears), nil); r.code != 401 {
		t.Errorf("heartbeat with a ten-year token: %d", r.code)
	}
	if r := e.do("POST", withToken("/v1/sessions/release", tenYears), nil); r.code != 401 {
		t.Errorf("release with a ten-year token: %d", r.code)
	}
	if !strings.Contains(e.logs.String(), "expiry beyond MAX_TOKEN_LIFETIME") || !strings.Contains(e.logs.String(), `"subject":"mallory"`) {
		t.Errorf("refusal not logged:\n%s", e.logs)
	}
	if r := e.get(withToken("/v1/videos/"+video+"/master.m3u8", withinSkew)); r.code != 200 {
		t.Errorf("master with a token within the lifetime plus skew: %d %s", r.code, r.body)
	}
	if r := e.get(withToken("/v1/keys/"+fx.KeyID, withinSkew)); r.code != 200 {
		t.Errorf("a token within the lifetime plus skew: %d %s", r.code, r.body)
	}
	// Sessions that forget an eviction before a token could end are refused.
	short, err := NewSessions(e.rdb, SessionsConfig{Limit: 1, TTL: time.Minute, MaxTokenLifetime: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{Tokens: e.tokens, MaxTokenLifetime: 2 * time.Hour}, e.db, e.store, e.keyring, short, nil, nil); err == nil {
		t.Error("a gateway accepted 2h tokens with sessions that remember evictions for 1h")
	}
}

// An evicted or released session never comes back while a token that can
// carry it is valid: its marker outlives MAX_TOKEN_LIFETIME + skew + TTL.
// The old markers lived MAX_TOKEN_LIFETIME + TTL (eviction) and the
// releasing token's remaining life + TTL (release); the test waits past
// both.
func TestEndedSessionsStayEnded(t *testing.T) {
	const lifetime = 3 * time.Second
	e := newEnv(t, fixtures.FS(t), envOptions{
		cfg:      func(c *Config) { c.MaxTokenLifetime = lifetime },
		sessions: func(c *SessionsConfig) { c.TTL = time.Second; c.MaxTokenLifetime = lifetime },
	})
	video := testenv.Name("vid")
	e.publish(video, 8*time.Second, 0)
	subject := testenv.Name("subject")
	// Sessions start at the master playlist (a key fetch only serves a
	// session that is already live).
	key := "/v1/videos/" + video + "/master.m3u8"

	// Tokens as long as the gateway accepts: the lifetime plus most of the
	// clock-skew allowance (an app server whose clock runs ahead).
	longest := lifetime + playback.ClockSkew/2
	evicted := playback.NewSessionID()
	evictedTok := e.token(video, subject, evicted, longest)
	released := playback.NewSessionID()
	releasing := e.token(video, subject, released, 2*time.Second)
	// The same session, re-minted later with a longer expiry (a token
	// refresh of one playback).
	releasedLater := e.token(video, subject, released, longest)
	for _, tok := range []string{evictedTok, releasing} {
		if r := e.get(withToken(key, tok)); r.code != 200 {
			t.Fatalf("admission: %d %s", r.code, r.body)
		}
	}
	if r := e.do("DELETE", "/v1/sessions/"+evicted+"?subject="+url.QueryEscape(subject), admin); r.code != 204 {
		t.Fatalf("evict: %d %s", r.code, r.body)
	}
	if r := e.do("POST", withToken("/v1/sessions/release", releasing), nil); r.code != 204 {
		t.Fatalf("release: %d", r.code)
	}
	for _, sid := range []string{evicted, released} {
		ttl, err := e.rdb.PTTL(context.Background(), e.sessions.markerKey(subject, sid)).Result()
		if want := lifetime + playback.ClockSkew; err != nil || ttl <= want {
			t.Errorf("marker of %s lives %v (%v), want more than %v", sid, ttl, err, want)
		}
	}
	time.Sleep(lifetime + time.Second + 500*time.Millisecond)
	if r := e.get(withToken(key, evictedTok)); r.code != 403 || errorCode(r) != "session_ended" || !strings.Contains(string(r.body), "stopped") {
		t.Errorf("evicted session after the old marker expiry: %d %s", r.code, r.body)
	}
	if r := e.get(withToken(key, releasedLater)); r.code != 403 || errorCode(r) != "session_ended" {
		t.Errorf("released session, later token, after the old marker expiry: %d %s", r.code, r.body)
	}
	// The subject can still start a new session.
	if r := e.get(withToken(key, e.token(video, subject, playback.NewSessionID(), time.Second*2))); r.code != 200 {
		t.Errorf("new session: %d %s", r.code, r.body)
	}
}

// A session is (subject, session id). Subject B's token carrying A's
// session id is B's own session: it can neither end nor use A's, and A
// keeps playing. The admin eviction names the subject.
func TestSessionsBelongToTheirSubject(t *testing.T) {
	e := newEnv(t, fixtures.FS(t), envOptions{sessions: func(c *SessionsConfig) { c.Limit = 2 }})
	video := testenv.Name("vid")
	e.publish(video, 8*time.Second, 0)
	// Sessions start at the master playlist (a key fetch only serves a
	// session that is already live).
	key := "/v1/videos/" + video + "/master.m3u8"
	ctx := context.Background()
	active := func(t *testing.T, subject string, want int) {
		t.Helper()
		if n, err := e.sessions.Active(ctx, subject); err != nil || n != want {
			t.Errorf("%s has %d live sessions (%v), want %d", subject, n, err, want)
		}
	}
	play := func(t *testing.T, tok string, want int) {
		t.Helper()
		if r := e.get(withToken(key, tok)); r.code != want {
			t.Fatalf("key: %d %s, want %d", r.code, r.body, want)
		}
	}

	t.Run("release by another subject", func(t *testing.T) {
		alice, carol, sid := testenv.Name("alice"), testenv.Name("carol"), playback.NewSessionID()
		a := e.token(video, alice, sid, time.Hour)
		play(t, a, 200)
		// Carol releases "alice's" session id: only her own, never started.
		if r := e.do("POST", withToken("/v1/sessions/release", e.token(video, carol, sid, time.Hour)), nil); r.code != 204 {
			t.Fatalf("carol's release: %d", r.code)
		}
		time.Sleep(1100 * time.Millisecond) // past the local confirmation
		play(t, a, 200)
		active(t, alice, 1)
	})

	t.Run("use by another subject", func(t *testing.T) {
		alice, bob, sid := testenv.Name("alice"), testenv.Name("bob"), playback.NewSessionID()
		a, b := e.token(video, alice, sid, time.Hour), e.token(video, bob, sid, time.Hour)
		play(t, a, 200)
		// Bob's token with alice's session id is bob's own session, under
		// bob's own limit.
		play(t, b, 200)
		active(t, bob, 1)
		active(t, alice, 1)
		time.Sleep(1100 * time.Millisecond)
		play(t, b, 200)
		play(t, a, 200)
		// Bob's release ends bob's session only.
		if r := e.do("POST", withToken("/v1/sessions/release", b), nil); r.code != 204 {
			t.Fatalf("bob's release: %d", r.code)
		}
		play(t, b, 403)
		play(t, a, 200)
		active(t, alice, 1)
	})

	t.Run("local cache per subject", func(t *testing.T) {
		// Right after alice's session was confirmed, bob's token with its
		// id is still held to bob's own (full) limit.
		alice, bob, sid := testenv.Name("alice"), testenv.Name("bob"), playback.NewSessionID()
		for range 2 {
			play(t, e.token(video, bob, playback.NewSessionID(), time.Hour), 200)
		}
		play(t, e.token(video, alice, sid, time.Hour), 200)
		if r := e.get(withToken(key, e.token(video, bob, sid, time.Hour))); r.code != 429 {
			t.Errorf("bob at his limit, with alice's just-confirmed session id: %d %s, want 429", r.code, r.body)
		}
	})

	t.Run("eviction names the subject", func(t *testing.T) {
		alice, bob, sid := testenv.Name("alice"), testenv.Name("bob"), playback.NewSessionID()
		a, b := e.token(video, alice, sid, time.Hour), e.token(video, bob, sid, time.Hour)
		play(t, a, 200)
		if r := e.do("DELETE", "/v1/sessions/"+sid, admin); r.code != 400 || errorCode(r) != "subject_required" {
			t.Errorf("evict without a subject: %d %s", r.code, r.body)
		}
		if r := e.do("DELETE", "/v1/sessions/"+sid+"?subject="+url.QueryEscape(bob), admin); r.code != 404 {
			t.Errorf("evict the session id under a subject that never used it: %d %s", r.code, r.body)
		}
		play(t, a, 200)
		play(t, b, 200)
		if r := e.do("DELETE", "/v1/sessions/"+sid+"?subject="+url.QueryEscape(bob), admin); r.code != 204 {
			t.Fatalf("evict bob's: %d %s", r.code, r.body)
		}
		if r := e.get(withToken(key, b)); r.code != 403 || errorCode(r) != "session_ended" {
			t.Errorf("bob's evicted session: %d %s", r.code, r.body)
		}
		play(t, a, 200)
		active(t, alice, 1)
		if r := e.do("DELETE", "/v1/sessions/"+sid+"?subject="+url.QueryEscape(alice), admin); r.code != 204 {
			t.Fatalf("evict alice's: %d %s", r.code, r.body)
		}
		if r := e.get(withToken(key, a)); r.code != 403 || errorCode(r) != "session_ended" || !strings.Contains(string(r.body), "stopped") {
			t.Errorf("alice's evicted session: %d %s", r.code, r.body)
		}
		// A subject with characters that need escaping.
		odd := "user: 7/ä?&x=%"
		oddTok := e.token(video, odd, sid, time.Hour)
		play(t, oddTok, 200)
		if r := e.do("DELETE", "/v1/sessions/"+sid+"?subject="+url.QueryEscape(odd), admin); r.code != 204 {
			t.Errorf("evict odd subject: %d %s", r.code, r.body)
		}
		play(t, oddTok, 403)
	})
}

// A token remembered as verified is still refused once it has expired: the
// cache skips the MAC and the JSON, never the expiry.
func TestVerifiedTokenExpires(t *testing.T) {
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	e := newEnv(t, fixtures.FS(t), envOptions{cfg: func(c *Config) { c.Now = clock }})
	video := testenv.Name("vid")
	fx := e.publish(video, 8*time.Second, 0)
	tok := e.token(video, "bob", playback.NewSessionID(), 10*time.Minute)
	if r := e.get(withToken("/v1/videos/"+video+"/master.m3u8", tok)); r.code != 200 {
		t.Fatalf("master: %d %s", r.code, r.body)
	}
	for i := 0; i < 2; i++ { // the second one is served from the cache
		if r := e.get(withToken("/v1/keys/"+fx.KeyID, tok)); r.code != 200 {
			t.Fatalf("key %d: %d %s", i, r.code, r.body)
		}
	}
	if _, ok := e.srv.tokens.get(tok); !ok {
		t.Fatal("a verified token was not remembered")
	}
	mu.Lock()
	now = now.Add(11 * time.Minute)
	mu.Unlock()
	if r := e.get(withToken("/v1/keys/"+fx.KeyID, tok)); r.code != 403 || errorCode(r) != "token_expired" {
		t.Errorf("an expired token remembered as verified: %d %s, want 403 token_expired", r.code, r.body)
	}
	// A token that never verified is never remembered.
	if r := e.get(withToken("/v1/keys/"+fx.KeyID, tok+"x")); r.code != 401 {
		t.Errorf("a tampered token: %d", r.code)
	}
	if _, ok := e.srv.tokens.get(tok + "x"); ok {
		t.Error("a token that failed verification was remembered")
	}
}
