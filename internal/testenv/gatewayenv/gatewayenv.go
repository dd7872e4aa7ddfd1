// Package gatewayenv starts the real playback gateway (internal/gateway)
// over a test's catalog and store, so that tests outside the gateway
// package (the pipeline's, the backfill's) can check what they published as
// a player receives it: rewritten playlists (hlscheck.Crawl) and playback
// in browsers (player.Play). It is a package of its own because the
// gateway's own tests import testenv and fixtures.
package gatewayenv

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/hlsvault/hlsvault/internal/gateway"
	"github.com/hlsvault/hlsvault/internal/keys"
	"github.com/hlsvault/hlsvault/internal/storage"
	"github.com/hlsvault/hlsvault/internal/testenv"
	"github.com/hlsvault/hlsvault/internal/testenv/player"
	"github.com/hlsvault/hlsvault/playback"
)

// Env is a running gateway.
type Env struct {
	URL    string
	Client *http.Client
	tokens *playback.Signer
	t      testing.TB
}

// Start serves a gateway for db, store and keyring until the test ends,
// with the /watch page the browser players open (Config.PlayerScript is
// hls.min.js). cfg, when not nil, adjusts the configuration.
func Start(t testing.TB, db gateway.Catalog, store storage.Store, keyring *keys.Keyring, cfg func(*gateway.Config)) *Env {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(t)})
	t.Cleanup(func() { rdb.Close() })
	tokens, err := playback.ParseSecrets("t1:gatewayenv-test-secret-0123456789-abcdefghij")
	if err != nil {
		t.Fatal(err)
	}
	sessions, err := gateway.NewSessions(rdb, gateway.SessionsConfig{Prefix: testenv.Name("hlsvault-test:") + ":", Limit: 10, TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	c := gateway.Config{Tokens: tokens, AdminToken: "gatewayenv-admin-token-0123456789abcdef", PlayerScript: player.HLSJS()}
	if cfg != nil {
		cfg(&c)
	}
	srv, err := gateway.New(c, db, store, keyring, sessions, gateway.NewMetrics(prometheus.NewRegistry()), testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	return &Env{URL: ts.URL, Client: ts.Client(), tokens: tokens, t: t}
}

// MasterURL is video's master playlist URL with a fresh token: a new
// subject and session each time, so that calls never meet the stream limit.
func (e *Env) MasterURL(video string) string {
	e.t.Helper()
	tok, err := e.tokens.Mint(playback.Claims{Video: video, Subject: testenv.Name("viewer"), Session: playback.NewSessionID(),
		Expires: time.Now().Add(time.Hour)})
	if err != nil {
		e.t.Fatal(err)
	}
	return playback.MasterURL(e.URL, video, tok)
}
