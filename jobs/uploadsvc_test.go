package jobs_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/hlsvault/hlsvault/internal/testenv"
)

// TestExternalModule builds testdata/uploadsvc, a separate module that
// imports this one through a replace directive, as the upload service
// would, and runs it against the real services and a real worker: it
// enqueues a video whose source is already in storage, waits for it, and
// prints its status. If jobs named an internal type in what the program
// uses, the build would fail ("use of internal package … not allowed").
func TestExternalModule(t *testing.T) {
	dir := t.TempDir()
	src := testenv.MakeSource(t, dir, testenv.Source{Width: 160, Height: 120, Seconds: 1, Audio: true})
	video := testenv.Name("ext")
	source := "uploads/" + video + ".mp4"
	if err := putFile(context.Background(), shared.store, source, src); err != nil {
		t.Fatal(err)
	}

	bin := filepath.Join(dir, "uploadsvc")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Dir = filepath.Join("..", "testdata", "uploadsvc")
	// Its own go.mod and go.sum, never a workspace or -mod=mod: what the
	// upload service's engineer would build.
	build.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly -buildvcs=false")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the external module: %v\n%s", err, out)
	}

	metadata := `{"upload_id":"u-42","tags":["a","b"],"n":3}`
	run := exec.Command(bin, video, source, metadata)
	run.Env = append(os.Environ(), "DATABASE_URL="+shared.dbURL, "REDIS_URL="+shared.redisURL, "QUEUE_PREFIX="+shared.prefix)
	var stdout, stderr bytes.Buffer
	run.Stdout, run.Stderr = &stdout, &stderr
	if err := run.Run(); err != nil {
		t.Fatalf("uploadsvc: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	out := stdout.String()
	t.Logf("uploadsvc printed:\n%s", out)
	if !strings.Contains(out, "enqueued video "+video+" from "+source) {
		t.Errorf("no enqueue line:\n%s", out)
	}
	want := regexp.MustCompile(`(?m)^state=published version=1 master=hls/` + regexp.QuoteMeta(video) + `/v1/master.m3u8 renditions=1 task=transcode-` +
		regexp.QuoteMeta(video) + `-[0-9a-f]{16} took=\S+$`)
	if !want.MatchString(out) {
		t.Errorf("status line: want %s in\n%s", want, out)
	}
	m := regexp.MustCompile(`(?m)^metadata=(.*)$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no metadata line:\n%s", out)
	}
	var got, sent any
	json.Unmarshal([]byte(metadata), &sent)
	if err := json.Unmarshal([]byte(m[1]), &got); err != nil || !jsonEqual(got, sent) {
		t.Errorf("metadata came back as %s (%v), sent %s", m[1], err, metadata)
	}
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}

// TestREADMESnippetIsTheProgram: the README's "The upload service does the
// same from Go" block is testdata/uploadsvc/main.go, word for word, so the
// snippet a reader copies is the one TestExternalModule builds and runs.
func TestREADMESnippetIsTheProgram(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	program, err := os.ReadFile(filepath.Join("..", "testdata", "uploadsvc", "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	const intro = "The upload service does the same from Go"
	_, after, ok := strings.Cut(string(readme), intro)
	if !ok {
		t.Fatalf("README.md has no %q", intro)
	}
	_, block, ok := strings.Cut(after, "```go\n")
	if !ok {
		t.Fatalf("no ```go block after %q", intro)
	}
	block, _, ok = strings.Cut(block, "\n```")
	if !ok {
		t.Fatal("the ```go block is not closed")
	}
	norm := func(s string) string {
		lines := strings.Split(strings.TrimSpace(strings.ReplaceAll(s, "\r\n", "\n")), "\n")
		for i, l := range lines {
			lines[i] = strings.TrimRight(l, " \t")
		}
		return strings.Join(lines, "\n")
	}
	if norm(block) != norm(string(program)) {
		t.Errorf("README.md's snippet after %q differs from testdata/uploadsvc/main.go; paste the file into the README", intro)
	}
}
