package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hlsvault/hlsvault/internal/catalog"
	"github.com/hlsvault/hlsvault/internal/keys"
	"github.com/hlsvault/hlsvault/internal/testenv"
	"github.com/hlsvault/hlsvault/playback"
)

const secrets = "k1:cmd-gateway-test-secret-0123456789abcdef"

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func baseEnv(t *testing.T) map[string]string {
	return map[string]string{
		"DATABASE_URL":           testenv.DatabaseURL(t),
		"REDIS_URL":              "redis://" + testenv.RedisAddr(t) + "/0",
		"STORAGE_URL":            "file://" + t.TempDir(),
		"KEY_ENCRYPTION_KEY":     testenv.KEK(t),
		"PLAYBACK_TOKEN_SECRETS": secrets,
		"GATEWAY_ADDR":           freeAddr(t),
		"GATEWAY_METRICS_ADDR":   freeAddr(t),
		"GATEWAY_REDIS_PREFIX":   testenv.Name("gwcmd") + ":",
	}
}

func getenvFrom(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// start runs the gateway until the test ends and waits until it answers.
// freeAddr's ports are free when chosen, but another package's test (they
// run in parallel) may bind one before the gateway does: then the
// gateway is started again on fresh ports (env is updated in place).
func start(t *testing.T, env map[string]string, client *http.Client, scheme string) *testenv.SyncBuffer {
	t.Helper()
	for attempt := 1; ; attempt++ {
		logs, err := startOnce(t, env, client, scheme)
		if err == nil {
			return logs
		}
		if attempt == 3 || !strings.Contains(err.Error(), "address already in use") {
			t.Fatalf("gateway exited: %v\n%s", err, logs)
		}
		t.Logf("gateway exited: %v; again on other ports", err)
		env["GATEWAY_ADDR"] = freeAddr(t)
		if env["GATEWAY_METRICS_ADDR"] != "off" {
			env["GATEWAY_METRICS_ADDR"] = freeAddr(t)
		}
	}
}

// startOnce runs the gateway until the test ends and waits until it
// answers; it returns run's error if the gateway exits before that.
func startOnce(t *testing.T, env map[string]string, client *http.Client, scheme string) (*testenv.SyncBuffer, error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	logs := &testenv.SyncBuffer{}
	done := make(chan error, 1)
	go func() { done <- run(ctx, nil, getenvFrom(env), io.Discard, logs) }()
	exited := false
	t.Cleanup(func() {
		cancel()
		if exited {
			return
		}
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("gateway did not shut down")
		}
		if !strings.Contains(logs.String(), `"msg":"stopped"`) {
			t.Error("no graceful stop logged")
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-done:
			exited = true
			if err == nil {
				err = errors.New("run returned nil")
			}
			return logs, err
		default:
		}
		if resp, err := client.Get(scheme + "://" + env["GATEWAY_ADDR"] + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return logs, nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("gateway did not answer\n%s", logs)
	return nil, nil
}

// migrate applies the catalog's migrations to env's database, as `worker
// migrate` does before a gateway serves.
func migrate(t *testing.T, env map[string]string) {
	t.Helper()
	ctx := context.Background()
	db, err := catalog.Open(ctx, env["DATABASE_URL"], testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
}

func fixture(t *testing.T, env map[string]string, video string) map[string]any {
	t.Helper()
	var out bytes.Buffer
	if err := run(context.Background(), []string{"bench-fixture", "--video", video, "--duration", "1m", "--renditions", "720p,360p"},
		getenvFrom(env), &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	var res map[string]any
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatal(err)
	}
	return res
}

func mint(t *testing.T, env map[string]string, args ...string) string {
	t.Helper()
	var out bytes.Buffer
	if err := run(context.Background(), append([]string{"token"}, args...), getenvFrom(env), &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(out.String())
}

func TestServe(t *testing.T) {
	env := baseEnv(t)
	env["PLAYER_HLSJS"] = filepath.Join(t.TempDir(), "hls.min.js")
	os.WriteFile(env["PLAYER_HLSJS"], []byte("/* hls.js */"), 0o644)
	res := fixture(t, env, "cmdvid")
	if res["version"].(float64) != 1 || res["segments"].(float64) != 15 {
		t.Fatalf("fixture: %v", res)
	}
	logs := start(t, env, http.DefaultClient, "http")
	base := "http://" + env["GATEWAY_ADDR"]

	tok := mint(t, env, "--video", "cmdvid", "--subject", "erin", "--ttl", "10m")
	signer, _ := playback.ParseSecrets(secrets)
	c, err := signer.Verify(tok, time.Now())
	if err != nil || c.Video != "cmdvid" || c.Subject != "erin" || time.Until(c.Expires) > 10*time.Minute || c.Session == "" {
		t.Fatalf("token: %+v %v", c, err)
	}
	master := mint(t, env, "--video", "cmdvid", "--subject", "erin", "--print", "master")
	if !strings.HasPrefix(master, base+"/v1/videos/cmdvid/master.m3u8?token=v1.k1.") {
		t.Fatalf("master URL %s", master)
	}
	get := func(u string) (int, []byte) {
		resp, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	if code, body := get(master); code != 200 || !bytes.Contains(body, []byte("/v1/videos/cmdvid/720p/index.m3u8?v=1&token=")) {
		t.Fatalf("master: %d %s", code, body)
	}
	// A key is served only to a live session: tok's starts at its master.
	if code, _ := get(base + "/v1/videos/cmdvid/master.m3u8?token=" + tok); code != 200 {
		t.Fatalf("master with tok: %d", code)
	}
	if code, body := get(base + "/v1/keys/" + res["key_id"].(string) + "?token=" + tok); code != 200 || len(body) != 16 {
		t.Fatalf("key: %d", code)
	}
	watch := mint(t, env, "--video", "cmdvid", "--subject", "erin", "--print", "watch")
	if code, body := get(watch); code != 200 || !bytes.Contains(body, []byte(`src="/player/hls.min.js"`)) {
		t.Fatalf("watch page: %d %s", code, body)
	}
	if code, _ := get(base + "/player/hls.min.js"); code != 200 {
		t.Errorf("hls.min.js: %d", code)
	}
	code, metrics := get("http://" + env["GATEWAY_METRICS_ADDR"] + "/metrics")
	for _, want := range []string{
		`hlsvault_gateway_requests_total{code="200",route="key"} 1`,
		`hlsvault_gateway_key_deliveries_total 1`,
		`hlsvault_gateway_sessions_total{outcome="admitted"} 2`,
		`hlsvault_gateway_request_duration_seconds_bucket{route="master"`,
	} {
		if code != 200 || !bytes.Contains(metrics, []byte(want)) {
			t.Errorf("metrics lack %s", want)
		}
	}
	// Secrets never reach the logs.
	for _, secret := range []string{strings.TrimPrefix(secrets, "k1:"), testenv.KEK(t), tok} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("logs contain a secret or token")
		}
	}
}

func TestServeTLS(t *testing.T) {
	env := baseEnv(t)
	dir := t.TempDir()
	env["GATEWAY_TLS_CERT"], env["GATEWAY_TLS_KEY"] = selfSigned(t, dir)
	env["GATEWAY_METRICS_ADDR"] = "off"
	res := fixture(t, env, "tlsvid")
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	start(t, env, client, "https")
	tok := mint(t, env, "--video", "tlsvid", "--subject", "frank")
	if resp, err := client.Get("https://" + env["GATEWAY_ADDR"] + "/v1/videos/tlsvid/master.m3u8?token=" + tok); err != nil || resp.StatusCode != 200 {
		t.Fatalf("master over TLS: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	resp, err := client.Get("https://" + env["GATEWAY_ADDR"] + "/v1/keys/" + res["key_id"].(string) + "?token=" + tok)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || len(b) != 16 || resp.TLS == nil {
		t.Fatalf("key over TLS: %d", resp.StatusCode)
	}
	if got := resp.Header.Get("Strict-Transport-Security"); got != "max-age=31536000; includeSubDomains" {
		t.Errorf("TLS (production) without HSTS: %q", got)
	}
	// Plain HTTP to the TLS listener is refused, never answered with a key.
	if resp, err := http.Get("http://" + env["GATEWAY_ADDR"] + "/v1/keys/" + res["key_id"].(string) + "?token=" + tok); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("plain HTTP to the TLS port: %d", resp.StatusCode)
		}
	}
}

func selfSigned(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	return certFile, keyFile
}

func TestRefusesToStart(t *testing.T) {
	env := baseEnv(t)
	cases := map[string]struct {
		change map[string]string
		want   string
	}{
		"no token secret":        {map[string]string{"PLAYBACK_TOKEN_SECRETS": ""}, "PLAYBACK_TOKEN_SECRETS"},
		"short token secret":     {map[string]string{"PLAYBACK_TOKEN_SECRETS": "k1:short"}, "at least 32"},
		"no KEK":                 {map[string]string{"KEY_ENCRYPTION_KEY": ""}, "KEY_ENCRYPTION_KEY"},
		"production without TLS": {map[string]string{"GATEWAY_PRODUCTION": "true"}, "HTTPS"},
		"production, http URL":   {map[string]string{"GATEWAY_PRODUCTION": "true", "GATEWAY_PUBLIC_URL": "http://video.example.com"}, "HTTPS"},
		"cert without key":       {map[string]string{"GATEWAY_TLS_CERT": "/nonexistent"}, "go together"},
		"zero stream limit":      {map[string]string{"MAX_STREAMS_PER_SUBJECT": "0"}, "MAX_STREAMS_PER_SUBJECT"},
		"wildcard origin":        {map[string]string{"ALLOWED_ORIGINS": "*"}, "exact origins"},
	}
	for name, tc := range cases {
		e := map[string]string{}
		for k, v := range env {
			e[k] = v
		}
		for k, v := range tc.change {
			e[k] = v
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := run(ctx, nil, getenvFrom(e), io.Discard, io.Discard)
		cancel()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error mentioning %q", name, err, tc.want)
		}
	}
	// Secrets are never flags.
	if err := run(context.Background(), []string{"--playback-token-secrets", "x"}, getenvFrom(env), io.Discard, io.Discard); err == nil {
		t.Error("a secret flag was accepted")
	}
	if err := run(context.Background(), []string{"token", "--video", "v"}, getenvFrom(env), io.Discard, io.Discard); err == nil {
		t.Error("token without --subject")
	}
	if err := run(context.Background(), []string{"nonsense"}, getenvFrom(env), io.Discard, io.Discard); err == nil {
		t.Error("unknown command accepted")
	}
}

// TestServeRecordsKEKHeartbeat: a serving gateway has a kek_holders row
// with every KEK id of its keyring, removed on a clean shutdown; without
// the table (migrations not applied) it refuses to start.
func TestServeRecordsKEKHeartbeat(t *testing.T) {
	ctx := context.Background()
	env := baseEnv(t)
	if err := run(ctx, nil, getenvFrom(env), io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "worker migrate") {
		t.Fatalf("serve without migrations: %v", err)
	}
	env["KEY_ENCRYPTION_KEYS_RETIRED"] = testenv.SeededKEK(4)
	fixture(t, env, "hbvid") // applies the migrations
	db, err := catalog.Open(ctx, env["DATABASE_URL"], testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // after the gateway's own cleanup stopped it
		if live, err := db.LiveKEKHolders(ctx); err != nil || len(live) != 0 {
			t.Errorf("after shutdown: %+v %v", live, err)
		}
		db.Close()
	})
	start(t, env, http.DefaultClient, "http")
	kr, _ := keys.NewKeyring(env["KEY_ENCRYPTION_KEY"], env["KEY_ENCRYPTION_KEYS_RETIRED"])
	live, err := db.LiveKEKHolders(ctx)
	if err != nil || len(live) != 1 {
		t.Fatalf("live holders: %+v %v", live, err)
	}
	if h := live[0]; h.Program != "gateway" || h.PID != os.Getpid() || h.PrimaryKEK != kr.Primary().ID() ||
		strings.Join(h.KEKs, ",") != strings.Join(kr.IDs(), ",") || len(h.KEKs) != 2 {
		t.Fatalf("row %+v, want the keyring %v", h, kr.IDs())
	}
}
