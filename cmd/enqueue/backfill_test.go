package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hlsvault/hlsvault/internal/backfill"
	"github.com/hlsvault/hlsvault/internal/catalog"
	"github.com/hlsvault/hlsvault/internal/config"
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
	var listed []catalog.BackfillItem
	if out, err = cli("items", "1", "--json"); err != nil || json.Unmarshal([]byte(out), &listed) != nil ||
		len(listed) != 2 || listed[0].VideoID != "t1" || listed[1].VideoID != "t2" || listed[1].Error == "" {
		t.Fatalf("items --json: %v %+v\n%s", err, listed, out)
	}
	if out, err = cli("items", "1", "--json", "--state", "done"); err != nil || strings.TrimSpace(out) != "[]" {
		t.Fatalf("items --json of none: %v\n%s", err, out)
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
	if line := progressLine(status("1")); !strings.Contains(line, "run 1 cancelled") || !strings.Contains(line, "1 remaining") ||
		!strings.HasSuffix(line, "ETA -") {
		t.Fatalf("progress line: %s", line)
	}
	// --watch of a run that ended with a failed title exits non-zero and
	// says how to see it; plain status only reports.
	if out, err = cli("status", "1", "--watch"); err == nil ||
		!strings.Contains(err.Error(), "run 1 was cancelled with 1 failed title; list them with: enqueue backfill items 1 --state failed") {
		t.Fatalf("watch of a cancelled run with a failure: %v\n%s", err, out)
	}

	// list: the runs, newest first, with their counts.
	if out, err = cli("list"); err != nil || !regexp.MustCompile(`(?m)^RUN\s+STATE\s+CREATED\s+FINISHED\s+DONE\s+FAILED\s+SKIPPED\s+TOTAL$`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^1\s+cancelled\s+\d{4}-\d\d-\d\dT\S+Z\s+\d{4}-\d\d-\d\dT\S+Z\s+0\s+1\s+0\s+2$`).MatchString(out) {
		t.Fatalf("list: %v\n%s", err, out)
	}
	out, err = cli("list", "--json", "--limit", "1")
	var runs []catalog.BackfillRunSummary
	if err != nil || json.Unmarshal([]byte(out), &runs) != nil || len(runs) != 1 || runs[0].ID != 1 || runs[0].State != "cancelled" ||
		runs[0].Done != 0 || runs[0].Failed != 1 || runs[0].Total != 2 || runs[0].FinishedAt == nil {
		t.Fatalf("list --json: %v\n%s", err, out)
	}
	if _, err = cli("list", "--limit", "0"); err == nil || !strings.Contains(err.Error(), "--limit=0") {
		t.Fatalf("list --limit 0: %v", err)
	}
}

// TestBackfillWatchExitStatus follows runs with --watch while they finish
// (their titles are driven through the catalog, as a worker would): a run
// that ends with a failed title exits non-zero, naming how many and how to
// list them; a run that converts everything exits 0.
func TestBackfillWatchExitStatus(t *testing.T) {
	dir := t.TempDir()
	dbURL := testenv.DatabaseURL(t)
	env := map[string]string{
		"DATABASE_URL": dbURL,
		"REDIS_URL":    "redis://" + testenv.RedisAddr(t) + "/0",
		"STORAGE_URL":  "file://" + dir,
		"QUEUE_PREFIX": testenv.Name("q"),
	}
	for _, title := range []string{"bad/w1", "bad/w2", "good/w3"} {
		p := filepath.Join(dir, "legacy", title)
		os.MkdirAll(p, 0o755)
		os.WriteFile(filepath.Join(p, "index.m3u8"), []byte("#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:4,\na.ts\n#EXT-X-ENDLIST\n"), 0o644)
		os.WriteFile(filepath.Join(p, "a.ts"), bytes.Repeat([]byte{0x47}, 188), 0o644)
	}
	cli := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := run(context.Background(), append([]string{"backfill"}, args...), func(k string) string { return env[k] }, &out, &out)
		return out.String(), err
	}
	ctx := context.Background()
	db, err := catalog.Open(ctx, dbURL, testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()

	for _, tc := range []struct {
		prefix string
		run    int64
		fail   map[string]bool
		want   string // in the error; "" for none
	}{
		{"legacy/bad", 1, map[string]bool{"w2": true}, "run 1 finished with 1 failed title; list them with: enqueue backfill items 1 --state failed"},
		{"legacy/good", 2, nil, ""},
	} {
		if out, err := cli("start", "--prefix", tc.prefix); err != nil || !strings.Contains(out, fmt.Sprintf("started backfill run %d", tc.run)) {
			t.Fatalf("start %s: %v\n%s", tc.prefix, err, out)
		}
		type result struct {
			out string
			err error
		}
		done := make(chan result, 1)
		go func() {
			out, err := cli("status", fmt.Sprint(tc.run), "--watch", "--interval", "20ms")
			done <- result{out, err}
		}()
		// The titles end as a worker would end them, then the driver's
		// step finds nothing left and marks the run done.
		_, batches, err := db.ScheduleBackfillBatches(ctx, tc.run)
		if err != nil || len(batches) != 1 {
			t.Fatalf("schedule: %+v %v", batches, err)
		}
		items, err := db.BackfillItems(ctx, tc.run, "")
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range items {
			if _, err := db.ClaimBackfillItem(ctx, tc.run, batches[0].Batch, it.ID, 3); err != nil {
				t.Fatal(err)
			}
			o := catalog.BackfillOutcome{State: catalog.ItemDone, Bytes: 188, Segments: 1}
			if tc.fail[it.VideoID] {
				o = catalog.BackfillOutcome{State: catalog.ItemFailed, Error: "segment a.ts changed"}
			}
			if err := db.FinishBackfillItem(ctx, it.ID, o); err != nil {
				t.Fatal(err)
			}
		}
		if r, _, err := db.ScheduleBackfillBatches(ctx, tc.run); err != nil || r.State != catalog.RunDone {
			t.Fatalf("run after its titles: %+v %v", r, err)
		}
		res := <-done
		switch {
		case tc.want == "" && res.err != nil:
			t.Errorf("watch of run %d: %v\n%s", tc.run, res.err, res.out)
		case tc.want != "" && (res.err == nil || !strings.Contains(res.err.Error(), tc.want) || config.ExitCode(res.err) != 1):
			t.Errorf("watch of run %d: %v, want %q (exit 1)\n%s", tc.run, res.err, tc.want, res.out)
		}
		// The last JSON line is the finished run.
		lines := strings.Split(strings.TrimSpace(res.out), "\n")
		var st backfill.Status
		if err := json.Unmarshal([]byte(lines[len(lines)-1]), &st); err != nil || st.Run.State != catalog.RunDone || st.ETASeconds != nil {
			t.Errorf("last watch line: %v %s", err, lines[len(lines)-1])
		}
	}
}

func TestFormatETA(t *testing.T) {
	for d, want := range map[time.Duration]string{
		1500 * time.Millisecond:                       "2s",
		4*time.Minute + 10*time.Second:                "4m10s",
		2*time.Hour + 23*time.Minute + 29*time.Second: "2h23m",
		50 * time.Hour:                                "50h0m",
	} {
		if got := formatETA(d); got != want {
			t.Errorf("formatETA(%v) = %q, want %q", d, got, want)
		}
	}
}
