package backfill

import (
	"context"
	"errors"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hlsvault/hlsvault/internal/catalog"
	"github.com/hlsvault/hlsvault/internal/storage"
)

// TestWorkerGCGraceTyposKeepLegacy is the operator's mistake that once
// removed the legacy catalogue: `GC_GRACE=1d worker gc` parsed as a grace of
// zero. A re-encrypted catalogue whose legacy objects are old enough to be
// purged by a short grace is run through the real worker binary with each
// mistyped grace; every run must refuse to start, name GC_GRACE, and leave
// every legacy object in place. The last run, with a short grace given on
// purpose, proves the objects were purgeable all along.
func TestWorkerGCGraceTyposKeepLegacy(t *testing.T) {
	dir := t.TempDir()
	fs, err := storage.NewFS(dir)
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, fs)
	ctx := context.Background()
	uploadLegacy(t, fs, "legacy/", "p1="+titleTSMaster, "p2="+titleDiscontinuity)
	h.startWorker()
	run := h.start(StartOptions{IDs: []string{"p1", "p2"}, RunOptions: RunOptions{URLMap: urlMap}})
	h.waitRun(run.Run.ID, time.Minute, catalog.RunDone)
	// Converted a month ago: any grace under that would purge them.
	conn, err := pgx.Connect(ctx, h.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if tag, err := conn.Exec(ctx, `update backfill_items set finished_at = now() - interval '30 days' where state = 'done'`); err != nil || tag.RowsAffected() != 2 {
		t.Fatalf("age the conversions: %v (%v)", err, tag)
	}
	before := snapshot(t, fs, "legacy/")

	bin := filepath.Join(t.TempDir(), "worker")
	build := exec.Command("go", "build", "-o", bin, "./cmd/worker")
	build.Dir = moduleRoot(t)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	worker := func(grace string, args ...string) (string, error) {
		cmd := exec.Command(bin, append([]string{"gc"}, args...)...)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "TMPDIR=" + t.TempDir(),
			"DATABASE_URL=" + h.dbURL, "STORAGE_URL=file://" + dir, "LOG_LEVEL=warn"}
		if grace != "" {
			cmd.Env = append(cmd.Env, "GC_GRACE="+grace)
		}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	for _, grace := range []string{"1d", "1", "0s", "-1h"} {
		out, err := worker(grace)
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(out, `GC_GRACE="`+grace+`"`) {
			t.Errorf("GC_GRACE=%s: want a refusal naming GC_GRACE, exit 1; got %v\n%s", grace, err, out)
		}
		if after := snapshot(t, fs, "legacy/"); !maps.Equal(before, after) {
			t.Fatalf("GC_GRACE=%s removed legacy objects", grace)
		}
	}
	// A short grace without the override is refused too.
	if out, err := worker("", "--gc-grace", "1h"); err == nil || !strings.Contains(out, "--allow-short-gc-grace") {
		t.Errorf("--gc-grace 1h without the override: %v\n%s", err, out)
	}
	if after := snapshot(t, fs, "legacy/"); !maps.Equal(before, after) {
		t.Fatal("a refused short grace removed legacy objects")
	}
	out, err := worker("", "--gc-grace", "1h", "--allow-short-gc-grace")
	if err != nil || !strings.Contains(out, "removed the legacy objects of 2 re-encrypted titles") {
		t.Fatalf("worker gc --gc-grace 1h --allow-short-gc-grace: %v\n%s", err, out)
	}
	if after := snapshot(t, fs, "legacy/"); len(after) >= len(before) {
		t.Fatalf("the positive control removed nothing: %d legacy objects before, %d after", len(before), len(after))
	}
}

// moduleRoot is the directory of go.mod, for building the programs.
func moduleRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil || strings.TrimSpace(string(out)) == "" {
		t.Fatalf("go env GOMOD: %v", err)
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}
