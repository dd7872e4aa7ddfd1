package main

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
