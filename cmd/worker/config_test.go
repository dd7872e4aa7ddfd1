package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hlsvault/hlsvault/internal/config"
	"github.com/hlsvault/hlsvault/internal/testenv"
	"github.com/hlsvault/hlsvault/internal/transcode"
)

// offlineEnv is a valid configuration that points at nothing reachable.
func offlineEnv(t *testing.T) envMap {
	return envMap{
		"DATABASE_URL":       "postgres://postgres:topsecretpw@127.0.0.1:1/none?sslmode=disable&connect_timeout=1",
		"REDIS_URL":          "redis://:redispw@127.0.0.1:1/0",
		"STORAGE_URL":        "file://" + t.TempDir(),
		"KEY_ENCRYPTION_KEY": testenv.SeededKEK(0),
	}
}

func with(e envMap, kv ...string) envMap {
	out := envMap{}
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
		{"REDIS_URL", "http://127.0.0.1:6379", "redis://"},
		{"DATABASE_URL", "postgres://h:port/db", "PostgreSQL URL"},
		{"STORAGE_URL", "s3://bucket", "file:///absolute/dir or azblob://container"},
		{"STORAGE_URL", "file://relative/dir", "file:///absolute/dir"},
		{"KEY_URI_TEMPLATE", "https://video.example.com/keys/", "{key_id}"},
		{"KEY_URI_TEMPLATE", "keys/{key_id}", "absolute http(s) URL or a path starting with /"},
		{"LADDER", "1080p:fast", "name:video bitrate"},
		{"SEGMENT_SECONDS", "four", "a number such as 4"},
		{"SEGMENT_SECONDS", "0", "from 1 to 30"},
		{"SEGMENT_SECONDS", "60", "from 1 to 30"},
		{"KEY_PERIOD", "5", "a Go duration"},
		{"KEY_PERIOD", "-5m", "at least 1s"},
		{"KEY_PERIOD", "500ms", "at least 1s"},
		{"X264_PRESET", "warpspeed", "ultrafast"},
		{"WORKER_CONCURRENCY", "two", "an integer"},
		{"WORKER_CONCURRENCY", "0", "from 1 to 256"},
		{"UPLOAD_CONCURRENCY", "-1", "from 1 to 256"},
		{"UPLOAD_CONCURRENCY", "100000", "from 1 to 256"},
		{"MAX_SOURCE_BYTES", "20 gigs", "a byte size such as 20GiB, 500MB or 1048576"},
		{"MAX_SOURCE_BYTES", "0", "a positive byte size"},
		{"MAX_SOURCE_DURATION", "6", "a Go duration such as 6h"},
		{"MAX_SOURCE_DURATION", "-1h", "a positive Go duration"},
		{"METRICS_ADDR", "9464", "host:port"},
		{"METRICS_ADDR", "localhost:http", "host:port"},
		{"SHUTDOWN_TIMEOUT", "20", "a Go duration such as 20s"},
		{"SHUTDOWN_TIMEOUT", "0s", "a positive Go duration"},
		{"TMPDIR", "relative/tmp", "an absolute directory"},
		{"LOG_LEVEL", "loud", "debug, info, warn or error"},
		{"QUEUE_PREFIX", "a b", "without spaces"},
		{"GC_GRACE", "1d", "a Go duration such as 48h"},
		{"GC_GRACE", "24", "a Go duration such as 48h"},
		{"GC_GRACE", "0s", "a positive Go duration"},
		{"GC_GRACE", "24h", "at least 24h2m0s, the longest possible job"},
		{"GC_INTERVAL", "15", "a Go duration such as 15m, or off"},
		{"GC_INTERVAL", "0", "write off"},
		{"GC_ALLOW_SHORT_GRACE", "yes", "true or false"},
		{"FFMPEG", "/nonexistent/ffmpeg", "an ffmpeg executable"},
		{"FFPROBE", "no-such-ffprobe", "an ffprobe executable"},
		{"DECODER_SANDBOX", "firejail", "bwrap (ffmpeg and ffprobe in a bubblewrap sandbox) or none"},
		{"WEBHOOK_URLS", "ftp://hooks.example/x", "http:// or https:// URLs"},
		{"WEBHOOK_CONCURRENCY", "0", "from 1 to 64"},
		{"WORKER_ID", "worker 3", "without spaces or control characters"},
		{"SOURCE_NOT_FOUND_ATTEMPTS", "0", "from 1 to 100"},
		{"SOURCE_NOT_FOUND_ATTEMPTS", "three", "an integer"},
		{"STORYBOARD", "yes", "on or off"},
		{"SEGMENT_FORMAT", "FMP4", "ts or fmp4"},
		{"SEGMENT_FORMAT", "cmaf", "ts or fmp4"},
		{"LADDER", "720p:1M,720p:500k:hevc", "need SEGMENT_FORMAT=fmp4"},
		{"CHUNK_SECONDS", "1m", "an integer"},
		{"CHUNK_SECONDS", "2", "0 (no chunking) or whole seconds from SEGMENT_SECONDS"},
		{"CHUNK_SECONDS", "-60", "0 (no chunking) or whole seconds from SEGMENT_SECONDS"},
		{"STORYBOARD_INTERVAL", "10ms", "from 100ms to 10m"},
		{"STORYBOARD_INTERVAL", "5", "a Go duration"},
	}
	for _, tc := range cases {
		_, _, _, err := parseConfig([]string{"run"}, with(base, tc.key, tc.value).get, &bytes.Buffer{})
		var ce *config.Error
		if !errors.As(err, &ce) {
			t.Errorf("%s=%q: err = %v, want a configuration error", tc.key, tc.value, err)
			continue
		}
		msg := err.Error()
		for _, want := range []string{tc.key + "=", `"` + tc.value + `"`, tc.form} {
			if !strings.Contains(msg, want) {
				t.Errorf("%s=%q: message %q lacks %q", tc.key, tc.value, msg, want)
			}
		}
		if config.ExitCode(err) != 1 {
			t.Errorf("%s: exit code %d, want 1", tc.key, config.ExitCode(err))
		}
	}
	// Every variable of the table is covered (secrets by TestSecrets).
	covered := map[string]bool{}
	for _, tc := range cases {
		covered[tc.key] = true
	}
	for _, f := range config.Fields(Config{}) {
		if !covered[f.Env] && !f.Secret {
			t.Errorf("%s has no bad-value case", f.Env)
		}
	}

	// The values, all at once: one error lists them all.
	bad := with(base, "GC_GRACE", "1d", "SHUTDOWN_TIMEOUT", "20", "WORKER_CONCURRENCY", "two", "GC_INTERVAL", "0",
		"MAX_SOURCE_BYTES", "20 GiBs", "X264_PRESET", "warpspeed", "FFMPEG", "/nonexistent/ffmpeg" /* not checked by gc */)
	err := run(context.Background(), []string{"gc"}, bad.get, &bytes.Buffer{}, &bytes.Buffer{})
	var ce *config.Error
	if !errors.As(err, &ce) || len(ce.Problems) != 6 {
		t.Fatalf("err = %v, want 6 problems", err)
	}
	for _, k := range []string{`GC_GRACE="1d"`, `SHUTDOWN_TIMEOUT="20"`, `WORKER_CONCURRENCY="two"`, `GC_INTERVAL="0"`, `MAX_SOURCE_BYTES="20 GiBs"`, `X264_PRESET="warpspeed"`} {
		if !strings.Contains(err.Error(), k) {
			t.Errorf("%s missing from %v", k, err)
		}
	}
	// A bad value from a flag is named as the flag.
	_, _, _, err = parseConfig([]string{"gc", "--gc-grace=1d"}, base.get, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), `--gc-grace="1d": want a Go duration such as 48h`) {
		t.Errorf("flag: %v", err)
	}
}

func TestSecrets(t *testing.T) {
	base := offlineEnv(t)
	for _, tc := range []struct {
		cmd    string
		env    envMap
		refuse bool
	}{
		{"run", with(base, "KEY_ENCRYPTION_KEY", ""), true},
		{"run", with(base, "KEY_ENCRYPTION_KEY", "c2hvcnQ="), true},
		{"rewrap-keys", with(base, "KEY_ENCRYPTION_KEYS_RETIRED", "not-base64!"), true},
		{"gc", with(base, "KEY_ENCRYPTION_KEY", ""), false},      // gc needs no KEK
		{"migrate", with(base, "KEY_ENCRYPTION_KEY", ""), false}, // nor migrate
		{"gc", with(base, "STORAGE_URL", "azblob://c", "AZURE_STORAGE_CONNECTION_STRING", ""), true},
	} {
		_, _, _, err := parseConfig([]string{tc.cmd}, tc.env.get, &bytes.Buffer{})
		if (err != nil) != tc.refuse {
			t.Errorf("%s %v: err = %v, refuse %v", tc.cmd, tc.env, err, tc.refuse)
		}
		if err != nil && strings.Contains(err.Error(), "c2hvcnQ=") {
			t.Errorf("a secret was printed: %v", err)
		}
	}
	// base64 of passwordpasswordpasswordpassword: refused, not shown.
	weak := "cGFzc3dvcmRwYXNzd29yZHBhc3N3b3JkcGFzc3dvcmQ="
	for _, k := range []string{"KEY_ENCRYPTION_KEY", "KEY_ENCRYPTION_KEYS_RETIRED"} {
		_, _, _, err := parseConfig([]string{"rewrap-keys"}, with(base, k, weak).get, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), "printable ASCII") || strings.Contains(err.Error(), weak) {
			t.Errorf("weak %s: %v", k, err)
		}
	}
	// The KEK and the connection string from 0600 files.
	dir := t.TempDir()
	kekFile, csFile := filepath.Join(dir, "kek"), filepath.Join(dir, "cs")
	os.WriteFile(kekFile, []byte(testenv.SeededKEK(5)+"\n"), 0o600)
	os.WriteFile(csFile, []byte("AccountName=x;AccountKey=eA==\n"), 0o600)
	fromFiles := with(base, "KEY_ENCRYPTION_KEY", "", "KEY_ENCRYPTION_KEY_FILE", kekFile, "AZURE_STORAGE_CONNECTION_STRING_FILE", csFile)
	c, _, _, err := parseConfig([]string{"rewrap-keys"}, fromFiles.get, &bytes.Buffer{})
	if err != nil || c.keyring == nil || c.AzureConnection != "AccountName=x;AccountKey=eA==" {
		t.Fatalf("from files: %v", err)
	}
	os.Chmod(kekFile, 0o644)
	if _, _, _, err := parseConfig([]string{"rewrap-keys"}, fromFiles.get, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("world-readable KEK file: %v", err)
	}
	if err := run(context.Background(), []string{"--key-encryption-key", testenv.SeededKEK(0)}, base.get, &bytes.Buffer{}, &bytes.Buffer{}); config.ExitCode(err) != 2 {
		t.Errorf("a secret as a flag: %v", err)
	}
}

func TestDefaults(t *testing.T) {
	c, cmd, help, err := parseConfig(nil, envMap{"KEY_ENCRYPTION_KEY": testenv.SeededKEK(0)}.get, &bytes.Buffer{})
	if err != nil || cmd != "run" || help {
		t.Fatal(cmd, help, err)
	}
	lim := transcode.DefaultLimits()
	if c.GCGrace != 48*time.Hour || time.Duration(c.GCInterval) != 15*time.Minute || int64(c.MaxSourceBytes) != lim.MaxBytes ||
		c.MaxSourceDuration != lim.MaxDuration || !reflect.DeepEqual(c.ladder, transcode.DefaultLadder()) ||
		c.DatabaseURL != config.DefaultDatabaseURL || c.RedisURL != config.DefaultRedisURL ||
		c.KeyURITemplate != config.DefaultKeyURITemplate || c.StorageURL != config.DefaultStorageURL() || c.SegmentSeconds != 4 || c.KeyPeriod != 5*time.Minute {
		t.Fatalf("defaults: %+v", c)
	}
	if longestJob(c.MaxSourceDuration) != 24*time.Hour+2*time.Minute || c.GCGrace <= longestJob(c.MaxSourceDuration) {
		t.Fatalf("longest job %v, grace %v", longestJob(c.MaxSourceDuration), c.GCGrace)
	}
	if strings.Contains(config.DefaultDatabaseURL, ":postgres@") {
		t.Fatal("the default DATABASE_URL holds a password")
	}
}

// TestKeyPeriodSetting: KEY_PERIOD=0 means one key per version, and the
// flag overrides the variable.
func TestKeyPeriodSetting(t *testing.T) {
	env := offlineEnv(t)
	if c, _, _, err := parseConfig(nil, with(env, "KEY_PERIOD", "0").get, &bytes.Buffer{}); err != nil || c.KeyPeriod != 0 {
		t.Errorf("KEY_PERIOD=0: %v %v", c.KeyPeriod, err)
	}
	if c, _, _, err := parseConfig([]string{"--key-period", "2s"}, with(env, "KEY_PERIOD", "10m").get, &bytes.Buffer{}); err != nil || c.KeyPeriod != 2*time.Second {
		t.Errorf("--key-period 2s: %v %v", c.KeyPeriod, err)
	}
}

// TestSegmentFormatSetting: MPEG-TS by default; fmp4 with HEVC rungs
// parses, from the variable or the flag.
func TestSegmentFormatSetting(t *testing.T) {
	env := offlineEnv(t)
	if c, _, _, err := parseConfig(nil, env.get, &bytes.Buffer{}); err != nil || c.segments != transcode.SegmentsTS {
		t.Errorf("default: %q %v", c.segments, err)
	}
	hevc := with(env, "LADDER", "720p:2M,720p:1M:128k:hevc")
	if c, _, _, err := parseConfig([]string{"--segment-format", "fmp4"}, hevc.get, &bytes.Buffer{}); err != nil ||
		c.segments != transcode.SegmentsFMP4 || !c.ladder.HasHEVC() {
		t.Errorf("--segment-format fmp4 with HEVC: %q %v", c.segments, err)
	}
}

// TestSubcommandFlags: flags before or after the subcommand are honoured.
func TestSubcommandFlags(t *testing.T) {
	env := offlineEnv(t)
	for _, args := range [][]string{{"gc", "--gc-grace", "30h"}, {"--gc-grace", "30h", "gc"}, {"--gc-grace=30h", "gc"}} {
		c, cmd, _, err := parseConfig(args, env.get, &bytes.Buffer{})
		if err != nil || cmd != "gc" || c.GCGrace != 30*time.Hour {
			t.Errorf("%q: cmd %s grace %v err %v", args, cmd, c.GCGrace, err)
		}
	}
	if _, _, _, err := parseConfig([]string{"gc", "--gc-grace", "1h"}, env.get, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "--allow-short-gc-grace") {
		t.Errorf("short grace: %v", err)
	}
	for _, args := range [][]string{{"gc", "--gc-grace", "1h", "--allow-short-gc-grace"}, {"--allow-short-gc-grace=true", "gc", "--gc-grace", "1h"}} {
		if c, _, _, err := parseConfig(args, env.get, &bytes.Buffer{}); err != nil || c.GCGrace != time.Hour {
			t.Errorf("%q: %v %v", args, c.GCGrace, err)
		}
	}
	if c, _, _, err := parseConfig([]string{"gc"}, with(env, "GC_GRACE", "1h", "GC_ALLOW_SHORT_GRACE", "true").get, &bytes.Buffer{}); err != nil || c.GCGrace != time.Hour {
		t.Errorf("GC_ALLOW_SHORT_GRACE: %v %v", c.GCGrace, err)
	}
	if c, _, _, err := parseConfig([]string{"--gc-interval", "off"}, env.get, &bytes.Buffer{}); err != nil || !c.GCInterval.Off() {
		t.Errorf("off: %v %v", c.GCInterval, err)
	}
	if c, _, _, err := parseConfig(nil, with(env, "MAX_SOURCE_BYTES", "500MB").get, &bytes.Buffer{}); err != nil || c.MaxSourceBytes != 500_000_000 {
		t.Errorf("500MB: %v %v", c.MaxSourceBytes, err)
	}
}

// TestHelp: usage on stdout, exit 0, nothing connected to (unreachable
// PostgreSQL and Redis, bogus storage, bad values in the environment), no
// password printed.
func TestHelp(t *testing.T) {
	storeDir := t.TempDir()
	victim := filepath.Join(storeDir, "videos", "v", "1", "master.m3u8")
	os.MkdirAll(filepath.Dir(victim), 0o755)
	os.WriteFile(victim, []byte("#EXTM3U\n"), 0o644)
	env := with(offlineEnv(t), "STORAGE_URL", "file://"+storeDir, "GC_GRACE", "0s", "GC_ALLOW_SHORT_GRACE", "true", "WORKER_CONCURRENCY", "two")
	bogus := with(env, "STORAGE_URL", "bogus://nowhere")
	cases := map[string]string{ // args → text the usage must contain
		"-h": "rewrap-keys", "--help": "rewrap-keys", "help": "rewrap-keys", "-help": "migrate",
		"help gc": "usage: worker gc", "gc --help": "usage: worker gc", "gc -h": "usage: worker gc", "--help gc": "usage: worker gc",
		"migrate --help": "usage: worker migrate", "help rewrap-keys": "usage: worker rewrap-keys", "rewrap-keys -h": "usage: worker rewrap-keys",
		"run --help": "usage: worker [run]", "gc --gc-grace 1h --help": "usage: worker gc",
	}
	for args, want := range cases {
		for _, e := range []envMap{env, bogus} {
			var out, errOut bytes.Buffer
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err := run(ctx, strings.Fields(args), e.get, &out, &errOut)
			cancel()
			if err != nil || !strings.Contains(out.String(), want) || !strings.Contains(out.String(), "--gc-grace") {
				t.Errorf("worker %s: err %v, stdout:\n%s", args, err, out.String())
			}
			if args == "help" && !(strings.Contains(out.String(), "migrate") && strings.Contains(out.String(), "gc") && strings.Contains(out.String(), "rewrap-keys")) {
				t.Errorf("worker help does not list the commands:\n%s", out.String())
			}
			if s := out.String() + errOut.String(); strings.Contains(s, "topsecretpw") || strings.Contains(s, "redispw") || strings.Contains(s, testenv.SeededKEK(0)) {
				t.Errorf("worker %s printed a secret:\n%s", args, s)
			}
		}
	}
	if _, err := os.Stat(victim); err != nil {
		t.Fatalf("gc --help deleted something: %v", err)
	}
	// The default DATABASE_URL shown has no password; a given one is never shown.
	var out bytes.Buffer
	run(context.Background(), []string{"--help"}, env.get, &out, &out)
	if !strings.Contains(out.String(), "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable") {
		t.Errorf("usage lacks the password-less default:\n%s", out.String())
	}
}

// TestUsageErrors: unknown flags, commands and stray arguments exit 2,
// before anything connects.
func TestUsageErrors(t *testing.T) {
	env := offlineEnv(t)
	for _, args := range [][]string{{"--bogus"}, {"gc", "--bogus"}, {"gc", "extra"}, {"nonsense"}, {"help", "nonsense"}, {"migrate", "now"}, {"--gc-grace"}} {
		err := run(context.Background(), args, env.get, &bytes.Buffer{}, &bytes.Buffer{})
		var ue *config.UsageError
		if !errors.As(err, &ue) || config.ExitCode(err) != 2 {
			t.Errorf("%q: err = %v, want a usage error (exit 2)", args, err)
		}
	}
	// The binary maps them to exit codes.
	for args, code := range map[string]int{"--bogus": 2, "gc extra": 2, "gc": 1, "--help": 0, "--version": 0} {
		cmd := exec.Command(binary(t, "worker"), strings.Fields(args)...)
		cmd.Env = with(env, "GC_GRACE", "1d").list()
		out, err := cmd.CombinedOutput()
		got := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			got = ee.ExitCode()
		}
		if got != code {
			t.Errorf("worker %s: exit %d, want %d\n%s", args, got, code, out)
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
	for _, d := range config.CompareDoc(config.Fields(Config{}), tables[0]) {
		t.Error(d)
	}
	// Which settings accept NAME_FILE is said in the tables.
	for _, d := range config.CompareFileDoc(config.Fields(Config{}), config.DocFileVars(string(md))) {
		t.Error(d)
	}
}

// TestVersion: a binary built with go build prints the git revision.
func TestVersion(t *testing.T) {
	out := testenv.BuildAndVersion(t, "worker")
	if !strings.Contains(out, "github.com/hlsvault/hlsvault") {
		t.Fatalf("--version: %s", out)
	}
	var b bytes.Buffer
	if err := run(context.Background(), []string{"gc", "--version"}, offlineEnv(t).get, &b, &b); err != nil || !strings.Contains(b.String(), "worker") {
		t.Fatalf("gc --version: %v %s", err, b.String())
	}
}
