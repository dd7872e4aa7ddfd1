//go:build faults

package faults

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hlsvault/hlsvault/internal/testenv"
)

// TestLoad queues 200 small jobs for two worker processes: every one is
// published, exactly once, and none is stuck. hlsbench load does the
// checking (and prints the throughput and queue wait that make bench shows).
func TestLoad(t *testing.T) {
	// A database of its own, as every other test here: DATABASE_URL is the
	// developer's, whose schema may be another branch's.
	cmd := exec.Command(filepath.Join(binDir, "hlsbench"), "load", "-jobs", "200", "-workers", "2",
		"-worker", filepath.Join(binDir, "worker"), "-dir", t.TempDir(), "-database-url", testenv.DatabaseURL(t))
	cmd.Dir = root
	cmd.Env = os.Environ()
	out, err := cmd.CombinedOutput()
	t.Logf("%s", out)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	if !strings.Contains(string(out), "published 200, failed 0, stuck 0, duplicated 0") {
		t.Fatal("not every job was published exactly once")
	}
}
