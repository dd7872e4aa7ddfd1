package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hlsvault/hlsvault/internal/config"
	"github.com/hlsvault/hlsvault/internal/testenv"
)

// offlineEnv is a valid configuration that points at nothing reachable.
func offlineEnv(t *testing.T) map[string]string {
	return map[string]string{
		"DATABASE_URL":           "postgres://postgres:topsecretpw@127.0.0.1:1/none?sslmode=disable&connect_timeout=1",
		"REDIS_URL":              "redis://:redispw@127.0.0.1:1/0",
		"STORAGE_URL":            "file://" + t.TempDir(),
		"KEY_ENCRYPTION_KEY":     testenv.SeededKEK(0),
		"PLAYBACK_TOKEN_SECRETS": secrets,
		"GATEWAY_ADDR":           "127.0.0.1:1",
		"GATEWAY_METRICS_ADDR":   "off",
	}
}

func with(e map[string]string, kv ...string) map[string]string {
	out := map[string]string{}
	for k, v := range e {
		out[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

// TestConfigBadValues: each variable's bad values refuse to start with a
// message naming the variable, the value and the accepted form; several
// bad values are all listed in one error.
func TestConfigBadValues(t *testing.T) {
	base := offlineEnv(t)
	cases := []struct{ key, value, form string }{
		{"GATEWAY_ADDR", "8080", "host:port"},
		{"GATEWAY_ADDR", "off", "host:port"},
		{"GATEWAY_PUBLIC_URL", "video.example.com", "an absolute http(s) URL"},
		{"GATEWAY_METRICS_ADDR", "localhost", "host:port (port 0-65535), or off"},
		{"REDIS_URL", "127.0.0.1:6379", "redis://"},
		{"DATABASE_URL", "postgres://h:port/db", "PostgreSQL URL"},
		{"STORAGE_URL", "s3://bucket", "file:///absolute/dir or azblob://container"},
		{"KEY_URI_TEMPLATE", "https://x.example/keys", "{key_id}"},
		{"MAX_STREAMS_PER_SUBJECT", "three", "an integer"},
		{"MAX_STREAMS_PER_SUBJECT", "0", "from 1 to 1000"},
		{"SESSION_TTL", "120", "a Go duration such as 2m"},
		{"SESSION_TTL", "0s", "a positive Go duration"},
		{"SEGMENT_URL_TTL", "10", "a Go duration such as 10m"},
		{"SEGMENT_URL_TTL", "-1m", "a positive Go duration"},
		{"ALLOWED_ORIGINS", "*", "exact origins"},
		{"ALLOWED_ORIGINS", "https://app.example.com/path", "exact origins"},
		{"GATEWAY_TLS_CERT", "/nonexistent/cert.pem", "a readable file"},
		{"GATEWAY_TLS_KEY", "/nonexistent/key.pem", "a readable file"},
		{"GATEWAY_PRODUCTION", "yes", "true or false"},
		{"MAX_TOKEN_LIFETIME", "1d", "a Go duration such as 24h"},
		{"MAX_TOKEN_LIFETIME", "0s", "a positive Go duration"},
		{"PLAYLIST_CACHE_BYTES", "lots", "a byte size such as 20GiB, 500MB or 1048576"},
		{"PLAYLIST_CACHE_BYTES", "0", "a positive byte size"},
		{"PLAYER_HLSJS", "/nonexistent/hls.min.js", "a readable file"},
		{"GATEWAY_REDIS_PREFIX", "", ""}, // empty = default: accepted (see below)
		{"SHUTDOWN_TIMEOUT", "20", "a Go duration such as 20s"},
		{"LOG_LEVEL", "verbose", "debug, info, warn or error"},
		{"PLAYBACK_TOKEN_KEY_ID", "k:1", "a key id without"},
		{"SAS_MAX_LIFETIME", "5", "a Go duration such as 5m"},
		{"SAS_MAX_LIFETIME", "2s", "at least 10s"},
		{"KEY_CACHE_TTL", "60", "a Go duration such as 60s"},
		{"KEY_CACHE_TTL", "2h", "at most 1h"},
	}
	covered := map[string]bool{}
	for _, tc := range cases {
		covered[tc.key] = true
		err := run(context.Background(), nil, getenvFrom(with(base, tc.key, tc.value)), &bytes.Buffer{}, &bytes.Buffer{})
		if tc.value == "" {
			if !strings.Contains(err.Error(), "connect") && !strings.Contains(err.Error(), "redis") {
				t.Errorf("%s empty: %v, want the default (then a connection failure)", tc.key, err)
			}
			continue
		}
		var ce *config.Error
		if !errors.As(err, &ce) {
			t.Errorf("%s=%q: err = %v, want a configuration error", tc.key, tc.value, err)
			continue
		}
		for _, want := range []string{tc.key + "=", `"` + tc.value + `"`, tc.form} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%s=%q: message %q lacks %q", tc.key, tc.value, err, want)
			}
		}
	}
	for _, f := range config.Fields(Config{}) {
		if !covered[f.Env] && !f.Secret {
			t.Errorf("%s has no bad-value case", f.Env)
		}
	}
	// Secrets: checked for the commands that need them, never printed.
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{nil, with(base, "PLAYBACK_TOKEN_SECRETS", "k1:short-secret"), "PLAYBACK_TOKEN_SECRETS"},
		{nil, with(base, "KEY_ENCRYPTION_KEY", "c2hvcnQ="), "KEY_ENCRYPTION_KEY"},
		{[]string{"token", "--video", "v", "--subject", "s"}, with(base, "PLAYBACK_TOKEN_SECRETS", ""), "PLAYBACK_TOKEN_SECRETS"},
		{[]string{"bench-fixture", "--video", "v"}, with(base, "KEY_ENCRYPTION_KEY", ""), "KEY_ENCRYPTION_KEY"},
		{[]string{"storage-cors", "--origins", "https://a.example"}, base, "AZURE_STORAGE_CONNECTION_STRING"},
		{nil, with(base, "STORAGE_URL", "azblob://c"), "AZURE_STORAGE_CONNECTION_STRING"},
		{nil, with(base, "GATEWAY_TLS_CERT", os.Args[0]), "go together"},
	} {
		err := run(context.Background(), tc.args, getenvFrom(tc.env), &bytes.Buffer{}, &bytes.Buffer{})
		var ce *config.Error
		if !errors.As(err, &ce) || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "short-secret") {
			t.Errorf("%q: %v, want a configuration error about %s", tc.args, err, tc.want)
		}
	}
	// The token command needs no KEK.
	var out bytes.Buffer
	if err := run(context.Background(), []string{"token", "--video", "v", "--subject", "s"}, getenvFrom(with(base, "KEY_ENCRYPTION_KEY", "")), &out, &out); err != nil {
		t.Errorf("token without KEK: %v", err)
	}

	// Several at once: one error, every one listed; flags named as flags.
	bad := with(base, "GATEWAY_PRODUCTION", "yes", "SESSION_TTL", "2", "PLAYLIST_CACHE_BYTES", "64 megs", "MAX_STREAMS_PER_SUBJECT", "0")
	err := run(context.Background(), []string{"--max-token-lifetime=1d"}, getenvFrom(bad), &bytes.Buffer{}, &bytes.Buffer{})
	var ce *config.Error
	if !errors.As(err, &ce) || len(ce.Problems) != 5 || !strings.Contains(err.Error(), `--max-token-lifetime="1d"`) || config.ExitCode(err) != 1 {
		t.Fatalf("err = %v, want 5 problems", err)
	}
	// Units and bool flags.
	c, _ := parseForTest(t, []string{"--production", "--playlist-cache-bytes", "128MiB", "--public-url", "https://v.example.com"}, base)
	if !c.Production || c.PlaylistCacheBytes != 128<<20 {
		t.Errorf("flags: %+v", c)
	}
	c, _ = parseForTest(t, nil, map[string]string{})
	if c.PlaylistCacheBytes != 64<<20 || c.MaxStreams != 3 || c.SessionTTL != 2*time.Minute || c.DatabaseURL != config.DefaultDatabaseURL || c.StorageURL != config.DefaultStorageURL() {
		t.Errorf("defaults: %+v", c)
	}
}

// parseForTest parses like run, without validating secrets.
func parseForTest(t *testing.T, args []string, env map[string]string) (Config, error) {
	var c Config
	s := config.NewSettings(&c, getenvFrom(env))
	fs := config.NewFlagSet("gateway")
	s.Register(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	p := s.Parse(&c)
	c.validate("help", p)
	return c, p.Err()
}

// TestHelp: usage on stdout, exit 0, nothing connected to, even with bad
// values in the environment; no secret printed.
func TestHelp(t *testing.T) {
	env := with(offlineEnv(t), "STORAGE_URL", "bogus://x", "SESSION_TTL", "2", "PLAYBACK_TOKEN_SECRETS", "")
	for args, want := range map[string]string{
		"-h": "gateway token", "--help": "gateway storage-cors", "help": "gateway bench-fixture", "serve --help": "usage: gateway [serve]",
		"help token": "usage: gateway token", "token --help": "usage: gateway token", "token -h": "--ttl",
		"bench-fixture --help": "usage: gateway bench-fixture", "help storage-cors": "usage: gateway storage-cors", "storage-cors -help": "--origins",
	} {
		var out, errOut bytes.Buffer
		err := run(context.Background(), strings.Fields(args), getenvFrom(env), &out, &errOut)
		if err != nil || !strings.Contains(out.String(), want) || !strings.Contains(out.String(), "--redis-url") {
			t.Errorf("gateway %s: %v\n%s", args, err, out.String())
		}
		if s := out.String() + errOut.String(); strings.Contains(s, "topsecretpw") || strings.Contains(s, "redispw") || strings.Contains(s, secrets) {
			t.Errorf("gateway %s printed a secret:\n%s", args, s)
		}
	}
	for _, args := range [][]string{{"--bogus"}, {"token", "--bogus"}, {"serve", "extra"}, {"nonsense"}, {"help", "nonsense"}, {"--playback-token-secrets", "x"}} {
		if err := run(context.Background(), args, getenvFrom(env), &bytes.Buffer{}, &bytes.Buffer{}); config.ExitCode(err) != 2 {
			t.Errorf("%q: %v, want a usage error (exit 2)", args, err)
		}
	}
}

// TestREADMEConfigTable: README.md's tables and the Config tags agree.
func TestREADMEConfigTable(t *testing.T) {
	md, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	tables, err := config.DocTables(string(md))
	if err != nil || len(tables) < 2 {
		t.Fatalf("tables: %v (%d)", err, len(tables))
	}
	for _, d := range config.CompareDoc(config.Fields(Config{}), tables[1], tables[0]) {
		t.Error(d)
	}
	// Which settings accept NAME_FILE is said in the tables.
	for _, d := range config.CompareFileDoc(config.Fields(Config{}), config.DocFileVars(string(md))) {
		t.Error(d)
	}
}

// TestVersion: a binary built with go build prints the git revision.
func TestVersion(t *testing.T) {
	if out := testenv.BuildAndVersion(t, "gateway"); !strings.Contains(out, "github.com/hlsvault/hlsvault") {
		t.Fatalf("--version: %s", out)
	}
}

// TestWeakSecretsRefused: weak token secrets, admin tokens, segment
// secrets and KEKs refuse to start, naming the variable and the reason,
// never the value.
func TestWeakSecretsRefused(t *testing.T) {
	base := offlineEnv(t)
	password := "cGFzc3dvcmRwYXNzd29yZHBhc3N3b3JkcGFzc3dvcmQ=" // base64 of passwordpasswordpasswordpassword
	for _, tc := range []struct {
		key, value, want string
	}{
		{"PLAYBACK_TOKEN_SECRETS", "k1:" + strings.Repeat("a", 32), "only 1 distinct characters"},
		{"GATEWAY_ADMIN_TOKEN", strings.Repeat("a", 32), "GATEWAY_ADMIN_TOKEN (value hidden) has only 1 distinct characters"},
		{"GATEWAY_ADMIN_TOKEN", "admin-secret", "GATEWAY_ADMIN_TOKEN (value hidden) is 12 bytes, want at least 32"},
		{"SEGMENT_URL_SECRET", strings.Repeat("xy", 20), "SEGMENT_URL_SECRET (value hidden) has only 2 distinct"},
		{"KEY_ENCRYPTION_KEY", password, "printable ASCII"},
		{"KEY_ENCRYPTION_KEYS_RETIRED", password, "printable ASCII"},
	} {
		err := run(context.Background(), nil, getenvFrom(with(base, tc.key, tc.value)), &bytes.Buffer{}, &bytes.Buffer{})
		var ce *config.Error
		if !errors.As(err, &ce) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want a configuration error saying %q", tc.key, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), strings.TrimPrefix(tc.value, "k1:")) {
			t.Errorf("%s: the value is shown: %v", tc.key, err)
		}
	}
	// Real generated secrets pass.
	gen := func() string {
		out, err := exec.Command("openssl", "rand", "-base64", "32").Output()
		if err != nil {
			t.Fatalf("openssl: %v", err)
		}
		return strings.TrimSpace(string(out))
	}
	good := with(base, "PLAYBACK_TOKEN_SECRETS", "k1:"+gen(), "GATEWAY_ADMIN_TOKEN", gen(), "SEGMENT_URL_SECRET", gen(), "KEY_ENCRYPTION_KEY", gen())
	s := config.NewSettings(&Config{}, getenvFrom(good))
	var c Config
	p := s.Parse(&c)
	c.validate("serve", p)
	if err := p.Err(); err != nil {
		t.Fatalf("generated secrets: %v", err)
	}
}

// TestSecretsFromFiles: every secret of the gateway may come from
// NAME_FILE (a 0600 file); the token command mints with a secret read from
// one; a group-readable file is refused with chmod 600.
func TestSecretsFromFiles(t *testing.T) {
	dir := t.TempDir()
	file := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content+"\n"), mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, mode)
		return p
	}
	env := with(offlineEnv(t), "PLAYBACK_TOKEN_SECRETS", "", "KEY_ENCRYPTION_KEY", "", "DATABASE_URL", "")
	env["PLAYBACK_TOKEN_SECRETS_FILE"] = file("tokens", secrets, 0o600)
	env["KEY_ENCRYPTION_KEY_FILE"] = file("kek", testenv.SeededKEK(3), 0o400)
	env["GATEWAY_ADMIN_TOKEN_FILE"] = file("admin", "admin-token-from-a-file-0123456789abcdef", 0o600)
	env["DATABASE_URL_FILE"] = file("db", "postgres://postgres:filepw@127.0.0.1:1/none?sslmode=disable", 0o600)
	var c Config
	p := config.NewSettings(&c, getenvFrom(env)).Parse(&c)
	c.validate("serve", p)
	if err := p.Err(); err != nil || c.TokenSecrets != secrets || c.AdminToken != "admin-token-from-a-file-0123456789abcdef" ||
		c.keyring == nil || !strings.Contains(c.DatabaseURL, ":filepw@") {
		t.Fatalf("from files: %v", err)
	}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"token", "--video", "v", "--subject", "s"}, getenvFrom(env), &out, &out); err != nil || !strings.HasPrefix(out.String(), "v1.k1.") {
		t.Fatalf("token with PLAYBACK_TOKEN_SECRETS_FILE: %v %s", err, out.String())
	}
	os.Chmod(env["KEY_ENCRYPTION_KEY_FILE"], 0o440)
	err := run(context.Background(), nil, getenvFrom(env), &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "KEY_ENCRYPTION_KEY_FILE: "+env["KEY_ENCRYPTION_KEY_FILE"]+" has mode 0440") ||
		!strings.Contains(err.Error(), "chmod 600") || strings.Contains(err.Error(), "KEY_ENCRYPTION_KEYS_RETIRED") {
		t.Fatalf("group-readable KEK file: %v", err)
	}
	env["KEY_ENCRYPTION_KEY"] = testenv.SeededKEK(3)
	if err := run(context.Background(), nil, getenvFrom(env), &bytes.Buffer{}, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "KEY_ENCRYPTION_KEY and KEY_ENCRYPTION_KEY_FILE are both set") {
		t.Fatalf("both: %v", err)
	}
}
