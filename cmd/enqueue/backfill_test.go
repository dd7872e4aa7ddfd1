package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hlsvault/hlsvault/internal/backfill"
	"github.com/hlsvault/hlsvault/internal/testenv"
)

// TestBackfillCommands drives `enqueue backfill` in process, without a
// worker: discovery, dry run, start, a second start, status, pause, resume,
// cancel.
func TestBackfillCommands(t *testing.T) {
	dir := t.TempDir()
	env := map[string]string{
		"DATABASE_URL": testenv.DatabaseURL(t),
		"REDIS_URL":    "redis://" + testenv.RedisAddr(t) + "/0",
		"STORAGE_URL":  "file://" + dir,
		"QUEUE_PREFIX": testenv.Name("q"),
	}
	write := func(name, body string) {
		p := filepath.Join(dir, filepath.FromSlash(name))
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("legacy/t1/index.m3u8", "#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:4,\na.ts\n#EXTINF:4,\nb.ts\n#EXT-X-ENDLIST\n")
	write("legacy/t1/a.ts", strings.Repeat("a", 188))
	write("legacy/t1/b.ts", strings.Repeat("b", 376))
	write("legacy/t2/index.m3u8", "#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:4,\nmissing.ts\n#EXT-X-ENDLIST\n")

	cli := func(args ...string) (string, error) {
		t.Helper()
		var out, errOut bytes.Buffer
		err := run(context.Background(), append([]string{"backfill"}, args...), func(k string) string { return env[k] }, &out, &errOut)
		return out.String() + errOut.String(), err
	}
	out, err := cli("start", "--prefix", "legacy", "--dry-run")
	if err != nil || !strings.Contains(out, "dry run: would work on 1 titles (2 segments, 564 B); 1 broken, 0 skipped") ||
		!strings.Contains(out, "legacy/t2/missing.ts is missing") {
		t.Fatalf("dry run: %v\n%s", err, out)
	}
	out, err = cli("start", "--prefix", "legacy/", "--batch-size", "5")
	if err != nil || !strings.Contains(out, "started backfill run 1: 1 titles to work on (2 segments, 564 B), 1 broken") {
		t.Fatalf("start: %v\n%s", err, out)
	}
	if out, err = cli("start", "--prefix", "legacy", "--batch-size", "5"); err != nil || !strings.Contains(out, "run 1 with the same options is already running") {
		t.Fatalf("second start: %v\n%s", err, out)
	}
	status := func(args ...string) backfill.Status {
		t.Helper()
		out, err := cli(append([]string{"status"}, args...)...)
		var st backfill.Status
		if err != nil || json.Unmarshal([]byte(out), &st) != nil {
			t.Fatalf("status: %v\n%s", err, out)
		}
		return st
	}
	if st := status(); st.Run.ID != 1 || st.Remaining != 1 || st.Failed != 1 || st.Failures[0].Video != "t2" {
		t.Fatalf("status: %+v", st)
	}
	if out, err = cli("items", "1"); err != nil || !strings.Contains(out, "t2     failed") || !strings.Contains(out, "t1     pending") {
		t.Fatalf("items: %v\n%s", err, out)
	}
	if out, err = cli("items", "1", "--state", "failed"); err != nil || strings.Contains(out, "t1") {
		t.Fatalf("items --state failed: %v\n%s", err, out)
	}
	if out, err = cli("pause", "1"); err != nil || !strings.Contains(out, "run 1 paused") {
		t.Fatalf("pause: %v %s", err, out)
	}
	if st := status("1", "--json"); st.Run.State != "paused" {
		t.Fatalf("status after pause: %+v", st)
	}
	if out, err = cli("resume", "1"); err != nil || !strings.Contains(out, "run 1 resumed") {
		t.Fatalf("resume: %v %s", err, out)
	}
	if out, err = cli("cancel", "1"); err != nil || !strings.Contains(out, "cancelled") {
		t.Fatalf("cancel: %v %s", err, out)
	}
	if _, err = cli("retry-failed", "1"); err == nil || !strings.Contains(err.Error(), "cancelled") {
		t.Fatalf("retry-failed of a cancelled run: %v", err)
	}
	// --ids from stdin, validated.
	stdin = strings.NewReader("t1\n../etc\n")
	if _, err = cli("start", "--ids", "-"); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("bad ids: %v", err)
	}
	stdin = strings.NewReader("t1\n")
	if out, err = cli("start", "--ids", "-", "--dry-run"); err != nil || !strings.Contains(out, "would work on 1 titles") {
		t.Fatalf("ids from stdin: %v\n%s", err, out)
	}
	if _, err = cli("start"); err == nil || !strings.Contains(err.Error(), "exactly one of") {
		t.Fatalf("start without candidates: %v", err)
	}
	if line := progressLine(status("1")); !strings.Contains(line, "run 1 cancelled") || !strings.Contains(line, "1 remaining") {
		t.Fatalf("progress line: %s", line)
	}
}
