package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// BuildAndVersion builds ./cmd/name of this checkout with go build
// -buildvcs=true into t.TempDir(), runs its --version and fails the test
// unless the output names the git revision (HEAD). It returns the output.
// The go command finds no VCS in a git worktree (.git is a file there), so
// in one the binary is built from a clone of HEAD instead.
func BuildAndVersion(t *testing.T, name string) string {
	t.Helper()
	head, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatalf("testenv: the tests run in a git checkout (git rev-parse HEAD): %v", err)
	}
	rev := strings.TrimSpace(string(head))
	top, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		t.Fatal(err)
	}
	src := strings.TrimSpace(string(top))
	if st, err := os.Stat(filepath.Join(src, ".git")); err == nil && !st.IsDir() {
		clone := filepath.Join(t.TempDir(), "src")
		if out, err := exec.Command("git", "clone", "-q", "--no-hardlinks", src, clone).CombinedOutput(); err != nil {
			t.Fatalf("git clone: %v\n%s", err, out)
		}
		src = clone
	}
	bin := filepath.Join(t.TempDir(), name)
	cmd := exec.Command("go", "build", "-buildvcs=true", "-o", bin, "./cmd/"+name)
	cmd.Dir = src
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "revision "+rev) {
		t.Fatalf("%s --version: %v\n%s\nwant revision %s", name, err, out, rev)
	}
	return string(out)
}
