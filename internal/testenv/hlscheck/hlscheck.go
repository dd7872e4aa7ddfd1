// Package hlscheck has every playlist the project publishes checked by
// parsers that share no code with ours (internal/playlist, grafov/m3u8):
// hls-parser in strict mode and video.js's m3u8-parser, whose warnings count
// as failures. They run in node (e2e/validate/validate.mjs, installed by
// `make deps`); one node process checks a whole batch, so a test collects
// its playlists and checks them once.
//
// Like the rest of testenv, a missing node or npm module fails the test
// (never skips it): `make deps` installs them, so their absence is a broken
// environment.
package hlscheck

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/hlsvault/hlsvault/internal/storage"
)

// Batch collects named playlists for one check.
type Batch struct {
	names []string
	texts map[string][]byte
}

// Add queues a playlist; a name given twice keeps the last bytes.
func (b *Batch) Add(name string, playlist []byte) {
	if b.texts == nil {
		b.texts = map[string][]byte{}
	}
	if _, ok := b.texts[name]; !ok {
		b.names = append(b.names, name)
	}
	b.texts[name] = bytes.Clone(playlist)
}

// AddAll queues every playlist of m, in name order.
func (b *Batch) AddAll(m map[string][]byte) {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		b.Add(n, m[n])
	}
}

// Len is the number of playlists queued.
func (b *Batch) Len() int { return len(b.names) }

// Result is one playlist's verdict.
type Result struct {
	Name     string   `json:"name"`
	Kind     string   `json:"kind"` // master, media or unknown
	Problems []string `json:"problems"`
}

// Check runs both parsers over the batch in one node process and reports
// every failing playlist with t.Errorf (the parser's message and the
// playlist). It fails the test when the batch is empty: a test that checked
// nothing was meant to check something. It returns the verdicts (for tests
// that also assert the kinds).
func (b *Batch) Check(t testing.TB) []Result {
	t.Helper()
	if len(b.names) == 0 {
		t.Fatalf("hlscheck: no playlist to check")
	}
	node, script := deps(t)
	type input struct {
		Name string `json:"name"`
		Text string `json:"text"`
	}
	in := make([]input, len(b.names))
	for i, n := range b.names {
		in[i] = input{n, string(b.texts[n])}
	}
	payload, err := json.Marshal(in)
	if err != nil {
		t.Fatalf("hlscheck: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, script, "--json")
	cmd.Stdin = bytes.NewReader(payload)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	var out struct {
		OK      bool     `json:"ok"`
		Results []Result `json:"results"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil || len(out.Results) != len(in) {
		t.Fatalf("hlscheck: validate.mjs: %v (decode: %v)\nstdout: %s\nstderr: %s", runErr, err, stdout.Bytes(), stderr.Bytes())
	}
	for i, r := range out.Results {
		if len(r.Problems) > 0 {
			t.Errorf("hlscheck: %s (%s) fails third-party parsing:\n  %s\n--- playlist ---\n%s", r.Name, r.Kind,
				strings.Join(r.Problems, "\n  "), redact(in[i].Text))
		}
	}
	if out.OK != (runErr == nil) {
		t.Errorf("hlscheck: validate.mjs exit %v disagrees with ok=%v", runErr, out.OK)
	}
	t.Logf("hlscheck: %d playlist(s) checked with hls-parser (strict) and m3u8-parser", len(in))
	return out.Results
}

// Strict checks one playlist (see Batch.Check).
func Strict(t testing.TB, name string, playlist []byte) {
	t.Helper()
	var b Batch
	b.Add(name, playlist)
	b.Check(t)
}

// StrictAll checks every playlist of m in one node process.
func StrictAll(t testing.TB, m map[string][]byte) {
	t.Helper()
	var b Batch
	b.AddAll(m)
	b.Check(t)
}

// Stored returns every playlist (name ending .m3u8) stored under prefix,
// keyed by object name: what a publish made visible.
func Stored(t testing.TB, store storage.Store, prefix string) map[string][]byte {
	t.Helper()
	ctx := context.Background()
	m := map[string][]byte{}
	err := store.List(ctx, prefix, func(o storage.ObjectInfo) error {
		if !strings.HasSuffix(o.Name, ".m3u8") {
			return nil
		}
		rc, err := store.Get(ctx, o.Name)
		if err != nil {
			return err
		}
		defer rc.Close()
		b, err := io.ReadAll(rc)
		if err != nil {
			return err
		}
		m[o.Name] = b
		return nil
	})
	if err != nil {
		t.Fatalf("hlscheck: list %s: %v", prefix, err)
	}
	if len(m) == 0 {
		t.Fatalf("hlscheck: no playlist stored under %s", prefix)
	}
	return m
}

var uriAttr = regexp.MustCompile(`(?:^|,)URI="([^"]*)"`)

// playlistURIs are the URIs a master playlist refers to that may be
// playlists: variant lines, and the URI attribute of EXT-X-MEDIA,
// EXT-X-I-FRAME-STREAM-INF and EXT-X-IMAGE-STREAM-INF (whatever renditions
// a master grows, their playlists are reached the same way).
func playlistURIs(master []byte) []string {
	var uris []string
	for _, line := range strings.Split(string(master), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "":
		case !strings.HasPrefix(line, "#"):
			uris = append(uris, line)
		case strings.HasPrefix(line, "#EXT-X-MEDIA:"), strings.HasPrefix(line, "#EXT-X-I-FRAME-STREAM-INF:"),
			strings.HasPrefix(line, "#EXT-X-IMAGE-STREAM-INF:"):
			if m := uriAttr.FindStringSubmatch(line[strings.IndexByte(line, ':')+1:]); m != nil {
				uris = append(uris, m[1])
			}
		}
	}
	return uris
}

// Crawl fetches a master playlist with c (a gateway URL, token included)
// and every playlist it refers to (variants, renditions, I-frame
// playlists), as a player would, and returns them keyed by a name without
// the query (tokens stay out of test logs). Any status but 200 fails the
// test.
func Crawl(t testing.TB, c *http.Client, masterURL string) map[string][]byte {
	t.Helper()
	get := func(u string) []byte {
		t.Helper()
		resp, err := c.Get(u)
		if err != nil {
			t.Fatalf("hlscheck: GET %s: %v", redact(u), err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("hlscheck: GET %s: %d %v %s", redact(u), resp.StatusCode, err, b)
		}
		return b
	}
	base, err := url.Parse(masterURL)
	if err != nil {
		t.Fatalf("hlscheck: %v", err)
	}
	master := get(masterURL)
	m := map[string][]byte{base.Path: master}
	for _, ref := range playlistURIs(master) {
		u, err := base.Parse(ref)
		if err != nil {
			t.Fatalf("hlscheck: master refers to %q: %v", redact(ref), err)
		}
		if _, seen := m[u.Path]; seen {
			continue
		}
		b := get(u.String())
		if bytes.HasPrefix(b, []byte("#EXTM3U")) || strings.HasSuffix(u.Path, ".m3u8") {
			m[u.Path] = b
		}
	}
	return m
}

var tokenRE = regexp.MustCompile(`(token=|sig=)[^&\s"]+`)

func redact(s string) string { return tokenRE.ReplaceAllString(s, "${1}REDACTED") }

// deps finds node and validate.mjs with its modules, failing the test with
// what to install when one is missing.
func deps(t testing.TB) (node, script string) {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	dir := filepath.Join(filepath.Dir(file), "..", "..", "..", "e2e", "validate")
	script = filepath.Join(dir, "validate.mjs")
	var err error
	if node, err = exec.LookPath("node"); err != nil {
		t.Fatalf("hlscheck: node not found (run `make deps`): %v", err)
	}
	for _, p := range []string{script,
		filepath.Join(dir, "node_modules", "hls-parser", "package.json"),
		filepath.Join(dir, "node_modules", "m3u8-parser", "package.json")} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("hlscheck: %s missing (run `make deps`: npm ci --prefix e2e/validate): %v", p, err)
		}
	}
	return node, script
}

// String describes a batch for logs: its names.
func (b *Batch) String() string { return fmt.Sprint(b.names) }
