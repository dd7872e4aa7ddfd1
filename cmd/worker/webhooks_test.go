package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/hlsvault/hlsvault/internal/testenv"
)

// TestWebhookConfig: WEBHOOK_SECRET is a secret (hidden, from a file too)
// in the whsec_ form, required with WEBHOOK_URLS.
func TestWebhookConfig(t *testing.T) {
	base := offlineEnv(t)
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	good := "whsec_" + base64.StdEncoding.EncodeToString(key)
	weak := "whsec_" + base64.StdEncoding.EncodeToString([]byte(strings.Repeat("hunter2!", 4)))
	const urls = "https://hooks.example/a?token=t0k, http://127.0.0.1:9/b"
	for _, tc := range []struct {
		name   string
		env    envMap
		refuse string
	}{
		{"no webhooks", base, ""},
		{"urls and secret", with(base, "WEBHOOK_URLS", urls, "WEBHOOK_SECRET", good), ""},
		{"secret alone", with(base, "WEBHOOK_SECRET", good), ""},
		{"urls without secret", with(base, "WEBHOOK_URLS", urls), "WEBHOOK_SECRET is not set"},
		{"no whsec_ prefix", with(base, "WEBHOOK_URLS", urls, "WEBHOOK_SECRET", strings.TrimPrefix(good, "whsec_")), "does not start with whsec_"},
		{"short", with(base, "WEBHOOK_SECRET", "whsec_"+base64.StdEncoding.EncodeToString(key[:16])), "16 bytes"},
		{"not random", with(base, "WEBHOOK_SECRET", weak), "not random"},
		{"twice", with(base, "WEBHOOK_URLS", "http://a/x,http://a/x", "WEBHOOK_SECRET", good), "given twice"},
	} {
		c, _, _, err := parseConfig([]string{"run"}, tc.env.get, &bytes.Buffer{})
		switch {
		case tc.refuse == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.refuse != "" && (err == nil || !strings.Contains(err.Error(), tc.refuse)):
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.refuse)
		}
		if err != nil {
			for _, s := range []string{good, weak, strings.TrimPrefix(good, "whsec_")} {
				if strings.Contains(err.Error(), s) {
					t.Errorf("%s: the secret was printed: %v", tc.name, err)
				}
			}
		}
		if tc.name == "urls and secret" && (len(c.webhooks.urls) != 2 || !bytes.Equal(c.webhooks.secret, key) || c.WebhookConcurrency != 4) {
			t.Errorf("parsed: %+v", c.webhooks)
		}
	}
	// From a 0600 file, as every secret.
	f := filepath.Join(t.TempDir(), "whsec")
	if err := os.WriteFile(f, []byte(good+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, _, _, err := parseConfig([]string{"run"}, with(base, "WEBHOOK_URLS", urls, "WEBHOOK_SECRET_FILE", f).get, &bytes.Buffer{})
	if err != nil || !bytes.Equal(c.webhooks.secret, key) {
		t.Fatalf("from a file: %v", err)
	}
	// Not a flag.
	if _, _, _, err := parseConfig([]string{"run", "--webhook-secret", good}, base.get, &bytes.Buffer{}); err == nil {
		t.Fatal("a secret as a flag was accepted")
	}
}

// TestWorkerWebhooks: the worker as deployed (run, WEBHOOK_URLS and
// WEBHOOK_SECRET) delivers video.published for a real transcode, signed so
// that the Standard Webhooks library verifies it, and counts it; neither
// the secret nor the URL's token reaches its log.
func TestWorkerWebhooks(t *testing.T) {
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	secret := "whsec_" + base64.StdEncoding.EncodeToString(key)
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	type delivery struct {
		Type string `json:"type"`
		Data struct {
			VideoID  string          `json:"video_id"`
			TaskID   string          `json:"task_id"`
			Version  int             `json:"version"`
			Master   string          `json:"master"`
			Metadata json.RawMessage `json:"metadata"`
		} `json:"data"`
	}
	published := make(chan delivery, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := wh.Verify(body, r.Header); err != nil || r.URL.Query().Get("token") != "t0psecret" {
			t.Errorf("receiver: %v (%s)", err, r.URL)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var d delivery
		if err := json.Unmarshal(body, &d); err != nil {
			t.Errorf("receiver: %v", err)
		}
		if d.Type == "video.published" {
			published <- d
		}
	}))
	defer srv.Close()

	env := envMap(testEnv(t))
	env["WEBHOOK_URLS"] = srv.URL + "/hook?token=t0psecret"
	env["WEBHOOK_SECRET"] = secret
	ctx, cancel := context.WithCancel(context.Background())
	var stderr testenv.SyncBuffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, nil, env.get, io.Discard, &stderr) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("worker: %v", err)
		}
		for _, s := range []string{secret, strings.TrimPrefix(secret, "whsec_"), "t0psecret"} {
			if strings.Contains(stderr.String(), s) {
				t.Errorf("the worker log holds a secret:\n%s", stderr.String())
			}
		}
	}()

	src := testenv.MakeSource(t, t.TempDir(), testenv.Source{Width: 320, Height: 240, Seconds: 1, Audio: true})
	if out, err := runEnqueue(t, env, "transcode", "--video", "hook-1", "--source", src, "--wait",
		"--metadata", `{"upload_id":"u-9","user":7}`); err != nil {
		t.Fatalf("enqueue --wait: %v\n%s\nworker log:\n%s", err, out, stderr.String())
	}
	select {
	case d := <-published:
		if d.Data.VideoID != "hook-1" || d.Data.Version != 1 || d.Data.Master != "hls/hook-1/v1/master.m3u8" || d.Data.TaskID == "" {
			t.Errorf("video.published: %+v", d)
		}
		// The caller's metadata, given at enqueue, comes back in the event.
		var md map[string]any
		if err := json.Unmarshal(d.Data.Metadata, &md); err != nil || md["upload_id"] != "u-9" || md["user"] != float64(7) {
			t.Errorf("video.published metadata %s (%v), want the enqueued object", d.Data.Metadata, err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("no video.published webhook\nworker log:\n%s", stderr.String())
	}
	resp, err := http.Get("http://" + metricsAddr(t, stderr.String()) + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`hlsvault_webhook_deliveries_total{outcome="failed"} 0`, `hlsvault_webhook_deliveries_total{outcome="retry"} 0`,
		`hlsvault_webhook_deliveries_total{outcome="delivered"}`} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}
