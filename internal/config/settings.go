package config

// Strict configuration shared by the programs (worker, enqueue, gateway).
//
// Each program declares ONE Config struct whose tags are its table of
// settings:
//
//	GCGrace time.Duration `env:"GC_GRACE" envDefault:"48h" flag:"gc-grace" help:"…"`
//
// env and envDefault are github.com/caarlos0/env/v11's tags: the library
// parses every field and reports every bad one at once. flag names the
// command-line override (none: the setting is environment-only, as secrets
// are, which also carry secret:"true" so that nothing prints them). A flag is
// registered as a raw string that replaces the environment's value before
// the single parse, so a flag and its variable parse identically, and an
// error names whichever was given: GC_GRACE="1d" or --gc-grace="1d".
//
// A secret (and a setting tagged file:"true", such as DATABASE_URL, whose
// value may hold a password) can instead be read from a file named by
// NAME_FILE: see readSecretFile for what is accepted. Giving both NAME and
// NAME_FILE is refused; a flag, where the setting has one, overrides both.

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"
	"github.com/dustin/go-humanize"
)

// ByteSize is a size in bytes; settings accept units (20GiB, 500MB) or plain
// bytes.
type ByteSize int64

// Interval is a positive duration, or IntervalOff for the word "off".
type Interval time.Duration

// IntervalOff is the value of "off".
const IntervalOff Interval = -1

// Off reports whether the interval is "off".
func (i Interval) Off() bool { return i == IntervalOff }

// String implements fmt.Stringer.
func (i Interval) String() string {
	if i.Off() {
		return "off"
	}
	return time.Duration(i).String()
}

var (
	byteSizeType = reflect.TypeOf(ByteSize(0))
	intervalType = reflect.TypeOf(Interval(0))
	durationType = reflect.TypeOf(time.Duration(0))
)

var funcMap = map[reflect.Type]env.ParserFunc{
	byteSizeType: func(v string) (any, error) {
		n, err := humanize.ParseBytes(v)
		if err != nil {
			return nil, err
		}
		if n > 1<<62 {
			return nil, errors.New("too large")
		}
		return ByteSize(n), nil
	},
	intervalType: func(v string) (any, error) {
		if strings.EqualFold(v, "off") {
			return IntervalOff, nil
		}
		d, err := time.ParseDuration(v)
		if err != nil {
			return nil, err
		}
		if d == 0 {
			return nil, errors.New("0 is refused: write off")
		}
		return Interval(d), nil
	},
}

// Field is one setting, read from a Config struct's tags.
type Field struct {
	Name    string // Go field name
	Env     string // environment variable
	Flag    string // flag name; empty: environment only
	Default string // envDefault
	Help    string
	Secret  bool
	File    bool   // may come from the file named by Env+"_FILE" (every secret, and file:"true")
	Form    string // the accepted form, for error messages
	bool    bool
}

// Fields lists the settings of a Config struct (pointer or value), in
// declaration order.
func Fields(cfg any) []Field {
	t := reflect.TypeOf(cfg)
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var out []Field
	for i := range t.NumField() {
		sf := t.Field(i)
		key, _, _ := strings.Cut(sf.Tag.Get("env"), ",")
		if key == "" || key == "-" {
			continue
		}
		f := Field{
			Name: sf.Name, Env: key, Flag: sf.Tag.Get("flag"), Default: sf.Tag.Get("envDefault"),
			Help: sf.Tag.Get("help"), Secret: sf.Tag.Get("secret") == "true", Form: sf.Tag.Get("form"),
			bool: sf.Type.Kind() == reflect.Bool,
		}
		f.File = f.Secret || sf.Tag.Get("file") == "true"
		if f.Secret && f.Flag != "" {
			panic("config: secret " + key + " must not have a flag")
		}
		if f.Form == "" {
			f.Form = formFor(sf.Type, f.Default)
		}
		out = append(out, f)
	}
	return out
}

func formFor(t reflect.Type, def string) string {
	example := func(fallback string) string {
		if def != "" {
			return def
		}
		return fallback
	}
	switch {
	case t == byteSizeType:
		return "a byte size such as 20GiB, 500MB or 1048576"
	case t == intervalType:
		return "a Go duration such as " + example("15m") + ", or off (0 is refused: write off to disable)"
	case t == durationType:
		return "a Go duration such as " + example("24h")
	}
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int64, reflect.Int32:
		return "an integer such as " + example("1")
	case reflect.Float64, reflect.Float32:
		return "a number such as " + example("1")
	}
	return "a string"
}

// Settings holds the raw values of one program's settings, from the
// environment and the command line, until Parse.
type Settings struct {
	fields  []Field
	byEnv   map[string]*Field
	byName  map[string]*Field
	raw     map[string]string // variable → value given; absent: default
	flagged map[string]bool   // variable → the value came from its flag
	inEnv   map[string]bool   // variable → set in the environment itself
	files   map[string]string // variable → path given in VARIABLE_FILE
	read    map[string]bool   // variable → the value was read from its file
	version bool
}

// NewSettings reads the environment for every setting of cfg. An empty
// variable is unset.
func NewSettings(cfg any, getenv func(string) string) *Settings {
	s := &Settings{fields: Fields(cfg), byEnv: map[string]*Field{}, byName: map[string]*Field{},
		raw: map[string]string{}, flagged: map[string]bool{}, inEnv: map[string]bool{}, files: map[string]string{}, read: map[string]bool{}}
	for i := range s.fields {
		f := &s.fields[i]
		s.byEnv[f.Env], s.byName[f.Name] = f, f
		if v := getenv(f.Env); v != "" {
			s.raw[f.Env], s.inEnv[f.Env] = v, true
		}
		if f.File {
			if p := getenv(f.Env + "_FILE"); p != "" {
				s.files[f.Env] = p
			}
		}
	}
	return s
}

// Fields returns the settings in declaration order.
func (s *Settings) Fields() []Field { return s.fields }

// Value is the raw value given for a variable ("" when unset).
func (s *Settings) Value(envKey string) string { return s.raw[envKey] }

type rawFlag struct {
	s *Settings
	f *Field
}

func (r rawFlag) String() string { return "" }
func (r rawFlag) Set(v string) error {
	r.s.raw[r.f.Env], r.s.flagged[r.f.Env] = v, true
	if v == "" {
		delete(r.s.raw, r.f.Env)
	}
	return nil
}
func (r rawFlag) IsBoolFlag() bool { return r.f.bool }

type versionFlag struct{ b *bool }

func (v versionFlag) String() string   { return "" }
func (v versionFlag) Set(string) error { *v.b = true; return nil }
func (v versionFlag) IsBoolFlag() bool { return true }

// Register adds a flag for every setting that has one, and --version.
func (s *Settings) Register(fs *flag.FlagSet) {
	for i := range s.fields {
		if f := &s.fields[i]; f.Flag != "" {
			fs.Var(rawFlag{s, f}, f.Flag, f.Help)
		}
	}
	fs.Var(versionFlag{&s.version}, "version", "print the version and exit")
}

// VersionRequested reports whether --version was given.
func (s *Settings) VersionRequested() bool { return s.version }

// Name is how a variable's value was given: --flag when it came from the
// command line, else the variable.
func (s *Settings) Name(envKey string) string {
	if f := s.byEnv[envKey]; f != nil && s.flagged[envKey] {
		return "--" + f.Flag
	}
	return envKey
}

// Bad formats one problem: NAME="value": want FORM. Secrets' values are
// never shown.
func (s *Settings) Bad(envKey, form string) string {
	v := s.raw[envKey]
	if s.read[envKey] {
		return fmt.Sprintf("%s (from %s_FILE=%q, value hidden): want %s", envKey, envKey, s.files[envKey], form)
	}
	if f := s.byEnv[envKey]; f != nil && f.Secret {
		if v == "" {
			return fmt.Sprintf("%s is not set: want %s", envKey, form)
		}
		return fmt.Sprintf("%s (value hidden): want %s", envKey, form)
	}
	if v == "" {
		if f := s.byEnv[envKey]; f != nil && f.Default != "" {
			v = f.Default
		}
	}
	return fmt.Sprintf("%s=%q: want %s", s.Name(envKey), RedactURL(v), form)
}

// Parse parses every setting into cfg (a pointer to the struct given to
// NewSettings) with caarlos0/env. It returns the problems found, one per bad
// setting; the fields of bad settings are left zero.
func (s *Settings) Parse(cfg any) *Problems {
	p := &Problems{s: s, bad: map[string]bool{}}
	s.readFiles(p)
	envMap := map[string]string{}
	for k, v := range s.raw {
		envMap[k] = v
	}
	if _, ok := envMap["TMPDIR"]; !ok {
		envMap["TMPDIR"] = os.TempDir() // expands in defaults such as STORAGE_URL's
	}
	err := env.ParseWithOptions(cfg, env.Options{Environment: envMap, FuncMap: funcMap})
	if err == nil {
		return p
	}
	var agg env.AggregateError
	if !errors.As(err, &agg) {
		p.list = append(p.list, err.Error())
		return p
	}
	for _, e := range agg.Errors {
		var pe env.ParseError
		if errors.As(e, &pe) {
			if f := s.byName[pe.Name]; f != nil {
				p.Add(f.Env, f.Form)
				continue
			}
		}
		p.list = append(p.list, e.Error())
	}
	return p
}

// readFiles reads the value of every NAME given as NAME_FILE. A flag
// overrides both; NAME and NAME_FILE together are refused, and so is a file
// that cannot be read or that others may read. A refused setting is marked
// failed, so that validation does not also call it unset.
func (s *Settings) readFiles(p *Problems) {
	for _, f := range s.fields {
		path, ok := s.files[f.Env]
		if !ok || s.flagged[f.Env] {
			continue
		}
		if s.inEnv[f.Env] {
			p.fail(f.Env, fmt.Sprintf("%s and %s_FILE are both set (values hidden): give one of them", f.Env, f.Env))
			continue
		}
		v, err := readSecretFile(path)
		if err != nil {
			p.fail(f.Env, fmt.Sprintf("%s_FILE: %v", f.Env, err))
			continue
		}
		s.raw[f.Env], s.read[f.Env] = v, true
	}
}

// maxSecretFile bounds what readSecretFile reads: a connection string or a
// list of keys is far shorter.
const maxSecretFile = 64 << 10

// readSecretFile returns the contents of a secret's file, without one
// trailing newline. It refuses what is not a regular file, a file that
// group or others may read or write (the decoder, or any other user of the
// machine, could read the secret or replace it: chmod 600), an empty file,
// one larger than 64 KiB and one of several lines. Its errors name the path
// and the reason, never the contents.
func readSecretFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err // *fs.PathError: "open PATH: reason"
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", err
	}
	if !st.Mode().IsRegular() {
		return "", fmt.Errorf("%s is not a regular file", path)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return "", fmt.Errorf("%s has mode %04o: group or others may read or change it; chmod 600 %s", path, perm, path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxSecretFile+1))
	if err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	if len(b) > maxSecretFile {
		return "", fmt.Errorf("%s is larger than %d bytes", path, maxSecretFile)
	}
	v := strings.TrimSuffix(string(b), "\n")
	v = strings.TrimSuffix(v, "\r")
	switch {
	case v == "":
		return "", fmt.Errorf("%s is empty", path)
	case strings.ContainsAny(v, "\r\n"):
		return "", fmt.Errorf("%s holds more than one line: want the value alone, with at most one trailing newline", path)
	}
	return v, nil
}

// Problems collects every bad setting; Err is one error listing them all.
type Problems struct {
	s    *Settings
	list []string
	bad  map[string]bool
}

// Add records that a variable's value is bad, and what is accepted. A
// variable is listed once: after a parse error, checks of its (zero) value
// are skipped.
func (p *Problems) Add(envKey, form string) {
	if p.bad[envKey] {
		return
	}
	p.bad[envKey] = true
	p.list = append(p.list, p.s.Bad(envKey, form))
}

// fail records msg as the problem of envKey.
func (p *Problems) fail(envKey, msg string) {
	if p.bad[envKey] {
		return
	}
	p.bad[envKey] = true
	p.list = append(p.list, msg)
}

// Check adds a problem unless ok.
func (p *Problems) Check(ok bool, envKey, form string) {
	if !ok {
		p.Add(envKey, form)
	}
}

// Failed reports whether envKey already has a problem.
func (p *Problems) Failed(envKey string) bool { return p.bad[envKey] }

// Addf records a problem that is not about one variable's form.
func (p *Problems) Addf(format string, args ...any) {
	p.list = append(p.list, fmt.Sprintf(format, args...))
}

// Err is nil without problems, else an *Error listing them all.
func (p *Problems) Err() error {
	if len(p.list) == 0 {
		return nil
	}
	return &Error{Problems: p.list}
}

// Error is a refused configuration: every problem, one per line.
type Error struct{ Problems []string }

func (e *Error) Error() string {
	if len(e.Problems) == 1 {
		return "bad configuration: " + e.Problems[0]
	}
	return "bad configuration (" + fmt.Sprint(len(e.Problems)) + " problems):\n  " + strings.Join(e.Problems, "\n  ")
}

// UsageError is a command line that does not parse: unknown flag or
// command, stray argument. main exits 2 on it.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// Usagef makes a UsageError.
func Usagef(format string, args ...any) error {
	return &UsageError{Err: fmt.Errorf(format, args...)}
}

// ExitCode is what main exits with after run returned err: 0, 2 for a
// UsageError, else 1.
func ExitCode(err error) int {
	var ue *UsageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ue):
		return 2
	}
	return 1
}

// NewFlagSet is a ContinueOnError flag set that prints nothing itself:
// ParseArgs reports errors and the callers print usage.
func NewFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// ParseArgs parses flags that may come before or after positional
// arguments ("gc --gc-grace 1h", "--gc-grace 1h gc"). It returns
// flag.ErrHelp for -h/--help, and a *UsageError for a bad command line.
func ParseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, &UsageError{Err: err}
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		// After "--" everything is positional.
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// PrintFlags writes the flags of fs: the settings' with their variable and
// default (never a secret's value, URL passwords masked), then the others.
func (s *Settings) PrintFlags(w io.Writer, fs *flag.FlagSet) {
	var lines []string
	fs.VisitAll(func(fl *flag.Flag) {
		var b strings.Builder
		fmt.Fprintf(&b, "  --%s", fl.Name)
		if rf, ok := fl.Value.(rawFlag); ok {
			if !rf.f.bool {
				b.WriteString(" VALUE")
			}
			fmt.Fprintf(&b, "\n      %s (%s", fl.Usage, rf.f.Env)
			if rf.f.Default != "" {
				fmt.Fprintf(&b, "; default %s", RedactURL(rf.f.Default))
			}
			b.WriteString(")")
		} else {
			if bf, ok := fl.Value.(interface{ IsBoolFlag() bool }); !ok || !bf.IsBoolFlag() {
				b.WriteString(" VALUE")
			}
			fmt.Fprintf(&b, "\n      %s", fl.Usage)
			if fl.DefValue != "" && fl.DefValue != "false" && fl.DefValue != "0" && fl.DefValue != "0s" && fl.DefValue != "map[]" {
				fmt.Fprintf(&b, " (default %s)", fl.DefValue)
			}
		}
		lines = append(lines, b.String())
	})
	sort.Strings(lines)
	for _, l := range lines {
		fmt.Fprintln(w, l)
	}
	var envOnly, files []string
	for _, f := range s.fields {
		if f.Flag == "" {
			envOnly = append(envOnly, f.Env)
		}
		if f.File {
			files = append(files, f.Env)
		}
	}
	if len(envOnly) > 0 {
		fmt.Fprintf(w, "environment only (never printed): %s\n", strings.Join(envOnly, ", "))
	}
	if len(files) > 0 {
		fmt.Fprintf(w, "also read from the file named by NAME_FILE (mode 600, one trailing newline trimmed): %s\n", strings.Join(files, ", "))
	}
}
