package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/hlsvault/hlsvault/internal/config"
	"github.com/hlsvault/hlsvault/internal/testenv"
)

func offlineEnv(t *testing.T) map[string]string {
	return map[string]string{
		"DATABASE_URL":       "postgres://postgres:topsecretpw@127.0.0.1:1/none?sslmode=disable&connect_timeout=1",
		"REDIS_URL":          "redis://:redispw@127.0.0.1:1/0",
		"STORAGE_URL":        "file://" + t.TempDir(),
		"KEY_ENCRYPTION_KEY": base64.StdEncoding.EncodeToString(make([]byte, 32)),
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

func runWith(env map[string]string, args ...string) (string, error) {
	var out bytes.Buffer
	err := run(context.Background(), args, func(k string) string { return env[k] }, &out, &out)
	return out.String(), err
}

// TestConfigBadValues: each variable's bad values refuse to start, before
// connecting, with the variable, the value and the accepted form; several
// at once are listed in one error.
func TestConfigBadValues(t *testing.T) {
	base := offlineEnv(t)
	cases := []struct {
		key, value, form string
		args             []string
	}{
		{"REDIS_URL", "localhost:6379", "redis://", nil},
		{"DATABASE_URL", "postgres://h:port/db", "PostgreSQL URL", nil},
		{"STORAGE_URL", "file://relative", "file:///absolute/dir or azblob://container", nil},
		{"FFPROBE", "/nonexistent/ffprobe", "an ffprobe executable", []string{"verify", "--video", "v"}},
		{"DECODER_SANDBOX", "firejail", "bwrap (ffprobe in a bubblewrap sandbox) or none", []string{"verify", "--video", "v"}},
		{"QUEUE_PREFIX", "a b", "without spaces", nil},
	}
	covered := map[string]bool{}
	for _, tc := range cases {
		covered[tc.key] = true
		args := tc.args
		if args == nil {
			args = []string{"status", "--video", "v"}
		}
		for _, a := range [][]string{args, {"backfill", "status"}} {
			if (tc.key == "FFPROBE" || tc.key == "DECODER_SANDBOX") && a[0] == "backfill" {
				continue
			}
			_, err := runWith(with(base, tc.key, tc.value), a...)
			var ce *config.Error
			if !errors.As(err, &ce) {
				t.Errorf("%s=%q %q: err = %v, want a configuration error", tc.key, tc.value, a, err)
				continue
			}
			for _, want := range []string{tc.key + "=", `"` + tc.value + `"`, tc.form} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("%s=%q: message %q lacks %q", tc.key, tc.value, err, want)
				}
			}
		}
	}
	for _, f := range config.Fields(Config{}) {
		if !covered[f.Env] && !f.Secret {
			t.Errorf("%s has no bad-value case", f.Env)
		}
	}
	// Secrets, where needed.
	if _, err := runWith(with(base, "KEY_ENCRYPTION_KEY", "c2hvcnQ="), "verify", "--video", "v"); err == nil || !strings.Contains(err.Error(), "KEY_ENCRYPTION_KEY") || strings.Contains(err.Error(), "c2hvcnQ=") {
		t.Errorf("verify with a short KEK: %v", err)
	}
	if _, err := runWith(with(base, "STORAGE_URL", "azblob://c"), "backfill", "start", "--prefix", "legacy/"); err == nil || !strings.Contains(err.Error(), "AZURE_STORAGE_CONNECTION_STRING") {
		t.Errorf("azblob without connection string: %v", err)
	}
	// Several at once, and flags named as flags.
	_, err := runWith(with(base, "REDIS_URL", "nope", "QUEUE_PREFIX", "a:b"), "transcode", "--video", "bad id", "--database-url", "mysql://x:y", "--max-retry", "-1")
	var ce *config.Error
	if !errors.As(err, &ce) || len(ce.Problems) != 6 || !strings.Contains(err.Error(), `--database-url="mysql://x:y"`) {
		t.Fatalf("err = %v, want 6 problems (REDIS_URL, QUEUE_PREFIX, --database-url, --video, --source, --max-retry)", err)
	}
	_, err = runWith(base, "backfill", "start", "--prefix", "p/", "--batch-size", "0", "--max-inflight", "0")
	if !errors.As(err, &ce) || len(ce.Problems) != 2 {
		t.Fatalf("backfill ranges: %v", err)
	}
}

// TestHelp: every help spelling prints usage, exits 0 and connects to
// nothing, even with bad values in the environment.
func TestHelp(t *testing.T) {
	env := with(offlineEnv(t), "STORAGE_URL", "bogus://x", "REDIS_URL", "nope")
	for args, want := range map[string]string{
		"--help": "enqueue transcode", "-h": "enqueue backfill", "help": "enqueue verify",
		"help transcode": "usage: enqueue transcode", "transcode --help": "--wait-timeout", "status -h": "usage: enqueue status",
		"verify --help": "usage: enqueue verify", "help backfill": "enqueue backfill start", "backfill --help": "enqueue backfill items",
		"backfill help": "enqueue backfill pause", "backfill start --help": "--batch-size", "backfill help start": "--max-inflight",
		"help backfill start": "--dry-run", "backfill status -h": "--watch", "backfill items --help": "--state", "backfill pause --help": "pause",
	} {
		out, err := runWith(env, strings.Fields(args)...)
		if err != nil || !strings.Contains(out, want) {
			t.Errorf("enqueue %s: %v\n%s", args, err, out)
		}
		if strings.Contains(out, "topsecretpw") || strings.Contains(out, "redispw") {
			t.Errorf("enqueue %s printed a password:\n%s", args, out)
		}
	}
	for _, args := range [][]string{{"--bogus"}, {"transcode", "--bogus"}, {"status", "--video", "v", "extra"}, {"nonsense"}, {"help", "nonsense"},
		{"backfill", "nonsense"}, {"backfill", "pause"}, {"backfill", "pause", "x"}, {"backfill", "start", "extra"}, {}} {
		if _, err := runWith(env, args...); config.ExitCode(err) != 2 {
			t.Errorf("%q: %v, want a usage error (exit 2)", args, err)
		}
	}
}

// TestREADMEConfigTable: enqueue's settings are documented, with the same
// defaults, in README.md's main table.
func TestREADMEConfigTable(t *testing.T) {
	md, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	tables, err := config.DocTables(string(md))
	if err != nil || len(tables) < 1 {
		t.Fatalf("tables: %v", err)
	}
	for _, d := range config.CompareDoc(config.Fields(Config{}), nil, tables[0]) {
		t.Error(d)
	}
	// Which settings accept NAME_FILE is said in the tables.
	for _, d := range config.CompareFileDoc(config.Fields(Config{}), config.DocFileVars(string(md))) {
		t.Error(d)
	}
}

// TestVersion: a binary built with go build prints the git revision.
func TestVersion(t *testing.T) {
	if out := testenv.BuildAndVersion(t, "enqueue"); !strings.Contains(out, "github.com/hlsvault/hlsvault") {
		t.Fatalf("--version: %s", out)
	}
}
