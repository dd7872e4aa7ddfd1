package config

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
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

type fileConfig struct {
	URL    string `env:"T_URL" envDefault:"postgres://u@h/db" flag:"url" help:"url" file:"true"`
	Secret string `env:"T_SECRET" secret:"true"`
	Plain  string `env:"T_PLAIN" flag:"plain" help:"plain"`
}

func loadFile(t *testing.T, env map[string]string, args ...string) (fileConfig, error) {
	t.Helper()
	var c fileConfig
	s := NewSettings(&c, func(k string) string { return env[k] })
	fs := NewFlagSet("test")
	s.Register(fs)
	if _, err := ParseArgs(fs, args); err != nil {
		return c, err
	}
	p := s.Parse(&c)
	if c.Secret == "" {
		p.Check(false, "T_SECRET", "a secret") // as validation does: after a refused file, said once
	}
	return c, p.Err()
}

func writeSecret(t *testing.T, content string, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // past the umask
		t.Fatal(err)
	}
	return path
}

// TestSecretFiles: NAME_FILE gives a secret's (or a file:"true" setting's)
// value from a file, one trailing newline trimmed; both NAME and NAME_FILE,
// an unreadable file and a file others may read are refused with the path
// and the reason, and the value is never shown.
func TestSecretFiles(t *testing.T) {
	const value = "s3cr3t-value-from-a-file"
	ok := writeSecret(t, value+"\n", 0o600)
	c, err := loadFile(t, map[string]string{"T_SECRET_FILE": ok, "T_URL_FILE": writeSecret(t, "postgres://u:pw@h/db\r\n", 0o400)})
	if err != nil || c.Secret != value || c.URL != "postgres://u:pw@h/db" {
		t.Fatalf("from files: %+v %v", c, err)
	}
	// Only one newline is trimmed; a value's own spaces stay.
	if c, err := loadFile(t, map[string]string{"T_SECRET_FILE": writeSecret(t, " a b ", 0o600)}); err != nil || c.Secret != " a b " {
		t.Fatalf("spaces: %q %v", c.Secret, err)
	}
	// A flag overrides the variable and its file alike.
	if c, err := loadFile(t, map[string]string{"T_SECRET_FILE": ok, "T_URL_FILE": "/nonexistent/url"}, "--url", "postgres://x@y/z"); err != nil || c.URL != "postgres://x@y/z" {
		t.Fatalf("flag over file: %+v %v", c, err)
	}
	// Only settings that accept a file read one.
	if c, err := loadFile(t, map[string]string{"T_SECRET_FILE": ok, "T_PLAIN_FILE": ok}); err != nil || c.Plain != "" {
		t.Fatalf("T_PLAIN_FILE: %+v %v", c, err)
	}

	dir := t.TempDir()
	for name, tc := range map[string]struct {
		env  map[string]string
		want []string
	}{
		"both":      {map[string]string{"T_SECRET": value, "T_SECRET_FILE": ok}, []string{"T_SECRET and T_SECRET_FILE are both set", "give one"}},
		"missing":   {map[string]string{"T_SECRET_FILE": "/nonexistent/kek"}, []string{"T_SECRET_FILE", "/nonexistent/kek", "no such file"}},
		"directory": {map[string]string{"T_SECRET_FILE": dir}, []string{dir, "not a regular file"}},
		"world":     {map[string]string{"T_SECRET_FILE": writeSecret(t, value, 0o644)}, []string{"mode 0644", "chmod 600"}},
		"group":     {map[string]string{"T_SECRET_FILE": writeSecret(t, value, 0o640)}, []string{"mode 0640", "chmod 600"}},
		"empty":     {map[string]string{"T_SECRET_FILE": writeSecret(t, "\n", 0o600)}, []string{"is empty"}},
		"lines":     {map[string]string{"T_SECRET_FILE": writeSecret(t, value+"\n"+value+"\n", 0o600)}, []string{"more than one line"}},
		"url both":  {map[string]string{"T_SECRET_FILE": ok, "T_URL": "postgres://u:" + value + "@h/db", "T_URL_FILE": ok}, []string{"T_URL and T_URL_FILE are both set"}},
		"url world": {map[string]string{"T_SECRET_FILE": ok, "T_URL_FILE": writeSecret(t, "postgres://u:"+value+"@h/db", 0o604)}, []string{"T_URL_FILE", "mode 0604"}},
	} {
		_, err := loadFile(t, tc.env)
		var ce *Error
		if !errors.As(err, &ce) || len(ce.Problems) != 1 {
			t.Errorf("%s: err = %v, want one problem", name, err)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %q lacks %q", name, err, w)
			}
		}
		if strings.Contains(err.Error(), value) {
			t.Errorf("%s: the value is shown: %v", name, err)
		}
	}
	// A value from a file that fails validation is named by its file, hidden.
	var c2 fileConfig
	s := NewSettings(&c2, envs{"T_URL_FILE": ok}.get)
	p := s.Parse(&c2)
	p.Add("T_URL", "a URL")
	if msg := p.Err().Error(); !strings.Contains(msg, "T_URL (from T_URL_FILE=\""+ok+"\", value hidden): want a URL") || strings.Contains(msg, value) {
		t.Fatalf("hidden: %s", msg)
	}
	// Usage says which settings accept a file.
	var b strings.Builder
	fs := NewFlagSet("t")
	s.Register(fs)
	s.PrintFlags(&b, fs)
	if !strings.Contains(b.String(), "NAME_FILE") || !strings.Contains(b.String(), "T_URL, T_SECRET") {
		t.Fatalf("usage:\n%s", b.String())
	}
}

type envs map[string]string

func (e envs) get(k string) string { return e[k] }

func TestDocFileVars(t *testing.T) {
	md := "x\n## Configuration\n| `T_URL` | `x` | or `T_URL_FILE` |\n| `T_PLAIN_FILE` |\n## Other\n`T_SECRET_FILE`\n"
	doc := DocFileVars(md)
	if !doc["T_URL"] || !doc["T_PLAIN"] || doc["T_SECRET"] {
		t.Fatalf("doc = %v", doc)
	}
	diffs := CompareFileDoc(Fields(fileConfig{}), doc)
	if len(diffs) != 2 { // T_SECRET not named; T_PLAIN named but no file
		t.Fatalf("diffs = %q", diffs)
	}
}
