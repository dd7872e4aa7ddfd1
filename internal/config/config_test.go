package config

import (
	"errors"
	"flag"
	"strings"
	"testing"
	"time"
)

type testConfig struct {
	Grace    time.Duration `env:"T_GRACE" envDefault:"48h" flag:"grace" help:"grace"`
	Every    Interval      `env:"T_EVERY" envDefault:"15m" flag:"every" help:"interval"`
	Size     ByteSize      `env:"T_SIZE" envDefault:"20GiB" flag:"size" help:"size"`
	N        int           `env:"T_N" envDefault:"1" flag:"n" help:"n"`
	On       bool          `env:"T_ON" envDefault:"false" flag:"on" help:"on"`
	URL      string        `env:"T_URL" envDefault:"postgres://u@h/db" flag:"url" help:"url"`
	Secret   string        `env:"T_SECRET" secret:"true"`
	Untagged string
}

func load(t *testing.T, env map[string]string, args ...string) (testConfig, []string, error) {
	t.Helper()
	var c testConfig
	s := NewSettings(&c, func(k string) string { return env[k] })
	fs := NewFlagSet("test")
	s.Register(fs)
	pos, err := ParseArgs(fs, args)
	if err != nil {
		return c, pos, err
	}
	return c, pos, s.Parse(&c).Err()
}

func TestDefaultsAndUnits(t *testing.T) {
	c, _, err := load(t, map[string]string{"T_GRACE": "" /* empty = unset */, "T_SIZE": "500MB"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Grace != 48*time.Hour || c.Every != Interval(15*time.Minute) || c.Size != 500_000_000 || c.N != 1 || c.On {
		t.Fatalf("got %+v", c)
	}
	for in, want := range map[string]ByteSize{"20GiB": 20 << 30, "1048576": 1 << 20, "64MiB": 64 << 20, "1kB": 1000} {
		if c, _, err := load(t, map[string]string{"T_SIZE": in}); err != nil || c.Size != want {
			t.Errorf("T_SIZE=%s: %v, %v; want %d", in, c.Size, err, want)
		}
	}
	if c, _, err := load(t, map[string]string{"T_EVERY": "off"}); err != nil || !c.Every.Off() {
		t.Errorf("off: %v %v", c.Every, err)
	}
}

func TestEveryBadValueInOneError(t *testing.T) {
	env := map[string]string{"T_GRACE": "1d", "T_EVERY": "0", "T_SIZE": "20 gigs", "T_N": "two", "T_ON": "yes"}
	_, _, err := load(t, env)
	var ce *Error
	if !errors.As(err, &ce) || len(ce.Problems) != 5 {
		t.Fatalf("err = %v, want 5 problems in one *Error", err)
	}
	msg := err.Error()
	for _, want := range []string{
		`T_GRACE="1d": want a Go duration such as 48h`,
		`T_EVERY="0": want a Go duration such as 15m, or off (0 is refused: write off to disable)`,
		`T_SIZE="20 gigs": want a byte size such as 20GiB`,
		`T_N="two": want an integer`,
		`T_ON="yes": want true or false`,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
}

func TestFlagsOverrideAndAreNamed(t *testing.T) {
	c, pos, err := load(t, map[string]string{"T_GRACE": "1h"}, "cmd", "--grace", "2h", "--on", "arg")
	if err != nil || c.Grace != 2*time.Hour || !c.On || strings.Join(pos, " ") != "cmd arg" {
		t.Fatalf("c=%+v pos=%q err=%v", c, pos, err)
	}
	_, _, err = load(t, nil, "--grace=1d")
	if err == nil || !strings.Contains(err.Error(), `--grace="1d": want a Go duration`) {
		t.Fatalf("err = %v, want it to name the flag", err)
	}
	if _, _, err := load(t, nil, "--secret", "x"); ExitCode(err) != 2 {
		t.Fatalf("a secret flag: %v (exit %d), want a usage error", err, ExitCode(err))
	}
	if _, _, err := load(t, nil, "--help"); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("--help: %v", err)
	}
	if _, pos, err := load(t, nil, "--", "--grace"); err != nil || len(pos) != 1 || pos[0] != "--grace" {
		t.Fatalf("after --: %q %v", pos, err)
	}
}

func TestSecretsAndPasswordsNeverPrinted(t *testing.T) {
	var c testConfig
	s := NewSettings(&c, func(k string) string {
		return map[string]string{"T_SECRET": "hunter2-secret", "T_URL": "postgres://u:hunter2@h:bad/db"}[k]
	})
	p := s.Parse(&c)
	p.Add("T_SECRET", "a secret")
	p.Add("T_URL", "a URL")
	if msg := p.Err().Error(); strings.Contains(msg, "hunter2") || !strings.Contains(msg, "postgres://u:xxxxx@h:bad/db") {
		t.Fatalf("message leaks or does not mask: %s", msg)
	}
	var b strings.Builder
	fs := NewFlagSet("t")
	s.Register(fs)
	s.PrintFlags(&b, fs)
	if strings.Contains(b.String(), "hunter2") || strings.Contains(b.String(), "--secret") || !strings.Contains(b.String(), "T_SECRET") {
		t.Fatalf("usage:\n%s", b.String())
	}
	for in, want := range map[string]string{
		"postgres://postgres:pw@127.0.0.1:5432/x": "postgres://postgres:xxxxx@127.0.0.1:5432/x",
		"redis://:pw@h:6379/0":                    "redis://:xxxxx@h:6379/0",
		"host=h password=pw user=u":               "host=h password=xxxxx user=u",
		"postgres://postgres@h/db":                "postgres://postgres@h/db",
	} {
		if got := RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestValidators(t *testing.T) {
	for s, ok := range map[string]bool{"127.0.0.1:0": true, ":8080": true, "[::1]:9": true, "off": true, "localhost": false, "h:99999": false, "h:x": false} {
		if ValidAddr(s, true) != ok {
			t.Errorf("ValidAddr(%q) = %v", s, !ok)
		}
	}
	for s, ok := range map[string]bool{"/v1/keys/{key_id}": true, "https://x.example/k/{key_id}": true, "http://x/{key_id}": true,
		"https://x.example/k": false, "ftp://x/{key_id}": false, "keys/{key_id}": false, "//x/{key_id}": false} {
		if ValidKeyURITemplate(s) != ok {
			t.Errorf("ValidKeyURITemplate(%q) = %v", s, !ok)
		}
	}
	for s, ok := range map[string]bool{"file:///tmp/x": true, "azblob://c": true, "file://rel/x": false, "s3://b": false, "": false} {
		if ValidStorageURL(s) != ok {
			t.Errorf("ValidStorageURL(%q) = %v", s, !ok)
		}
	}
	if !ValidDatabaseURL(DefaultDatabaseURL) || ValidDatabaseURL("postgres://h:port/db") || !ValidRedisURL(DefaultRedisURL) || ValidRedisURL("http://x") {
		t.Error("URL validators")
	}
	if !ValidPreset("veryfast") || ValidPreset("warpspeed") || !ValidLogLevel("warn") || ValidLogLevel("loud") {
		t.Error("preset/log level validators")
	}
}

func TestDocTables(t *testing.T) {
	md := "x\n## Configuration\n\n| variable | default | meaning |\n| --- | --- | --- |\n" +
		"| `A` | `1` | a |\n| `B`, `C` | empty, `k1` | b |\n| `D` | none: refuses | d |\n\ntext\n\n" +
		"| variable | default | meaning |\n| --- | --- | --- |\n| `E` | `x,y` | e |\n## Next\n| `Z` | `z` | z |\n"
	tables, err := DocTables(md)
	if err != nil || len(tables) != 2 {
		t.Fatalf("%v %v", tables, err)
	}
	if tables[0]["A"] != "1" || tables[0]["B"] != "" || tables[0]["C"] != "k1" || tables[0]["D"] != "" || tables[1]["E"] != "x,y" || tables[1]["Z"] != "" {
		t.Fatalf("tables = %v", tables)
	}
	diffs := CompareDoc([]Field{{Env: "A", Default: "2"}, {Env: "E", Default: "x,y"}, {Env: "Q"}}, tables[0], tables[1])
	if len(diffs) != 5 { // A's default; Q missing; B, C, D not settings
		t.Fatalf("diffs = %q", diffs)
	}
}
