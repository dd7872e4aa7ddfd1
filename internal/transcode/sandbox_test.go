package transcode

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hlsvault/hlsvault/internal/testenv"
)

func TestBwrapArgs(t *testing.T) {
	system := []Mount{{Kind: "ro-bind", Src: "/usr", Dst: "/usr"}, {Kind: "symlink", Src: "usr/lib", Dst: "/lib"}}
	got := BwrapArgs(system, []string{"/tmp/job/source"}, []string{"/tmp/job/out"}, "/usr/bin/ffmpeg", []string{"-i", "/tmp/job/source"})
	want := []string{
		"--unshare-user", "--uid", "65534", "--gid", "65534",
		"--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
		"--die-with-parent", "--new-session", "--cap-drop", "ALL",
		"--ro-bind", "/usr", "/usr", "--symlink", "usr/lib", "/lib",
		"--proc", "/proc", "--dev", "/dev",
		"--bind", "/tmp/job/out", "/tmp/job/out",
		"--ro-bind", "/tmp/job/source", "/tmp/job/source",
		"--remount-ro", "/", "--clearenv", "--setenv", "PATH", "/usr/local/bin:/usr/bin:/bin", "--setenv", "LANG", "C",
		"--chdir", "/", "--", "/usr/bin/ffmpeg", "-i", "/tmp/job/source",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("BwrapArgs:\n got %q\nwant %q", got, want)
	}
	// Nothing of the host is shown that is not listed.
	for i, a := range got {
		if a == "--bind" && got[i+1] != "/tmp/job/out" {
			t.Errorf("writable bind %q", got[i+1])
		}
	}
}

func TestSystemView(t *testing.T) {
	dir := t.TempDir()
	wrapper := filepath.Join(dir, "ffmpeg")
	if err := os.WriteFile(wrapper, []byte("#!/bin/sh\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	ms := systemView(wrapper, "/usr/bin/ffprobe")
	var dsts []string
	for _, m := range ms {
		dsts = append(dsts, m.Dst)
		switch m.Dst {
		case "/root", "/home", "/work", "/run", "/var", "/tmp", "/etc", "/":
			t.Errorf("system view shows %s: %+v", m.Dst, m)
		}
	}
	if !slices.Contains(dsts, "/usr") || !slices.Contains(dsts, wrapper) {
		t.Fatalf("system view %v: want /usr and the wrapper", dsts)
	}
	if slices.Contains(dsts, "/usr/bin/ffprobe") {
		t.Errorf("a binary under /usr is bound on its own: %v", dsts)
	}
}

func TestNewExecRefuses(t *testing.T) {
	ff, fp := testenv.FFmpeg(t)
	if _, err := NewExec(ExecConfig{Sandbox: "firejail", FFmpeg: ff, FFprobe: fp}); err == nil || !strings.Contains(err.Error(), "bwrap or none") {
		t.Errorf("unknown mode: %v", err)
	}
	if _, err := NewExec(ExecConfig{FFmpeg: ff, FFprobe: fp, Bwrap: "/nonexistent/bwrap"}); err == nil || !strings.Contains(err.Error(), "DECODER_SANDBOX=none") {
		t.Errorf("missing bwrap: %v", err)
	}
	// A bwrap that cannot run the decoder stops the worker at Check.
	x, err := NewExec(ExecConfig{FFmpeg: ff, FFprobe: fp, Bwrap: "/bin/false"})
	if err != nil {
		t.Fatal(err)
	}
	if err := x.Check(testContext(t)); err == nil || !strings.Contains(err.Error(), "DECODER_SANDBOX=none") {
		t.Errorf("Check with a failing bwrap: %v", err)
	}
	if err := testExec(t).Check(testContext(t)); err != nil {
		t.Errorf("Check: %v", err)
	}
}

// TestSandboxView runs a fake ffmpeg in the sandbox that reports what it
// sees: its uid, its environment, its parent's and every visible
// /proc/*/environ, a secret file next to it, and whether it can write
// outside its output directory.
func TestSandboxView(t *testing.T) {
	ff, fp := testenv.FFmpeg(t)
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte("s3cr3t-file-content"), 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "job", "out")
	src := filepath.Join(dir, "job", "source")
	if err := os.MkdirAll(out, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(src, []byte("input"), 0o600); err != nil {
		t.Fatal(err)
	}
	wrapper := filepath.Join(dir, "bin", "ffmpeg")
	script := fmt.Sprintf(`#!/bin/sh
echo "uid=$(id -u)"
env | sort | sed 's/^/env:/'
for f in /proc/[0-9]*/environ; do tr '\0' '\n' < "$f" 2>/dev/null | sed "s|^|proc:|"; done
cat %[1]q 2>/dev/null && echo "read:secret"
cat %[2]q >/dev/null 2>&1 && echo "read:source"
echo x > %[2]q 2>/dev/null && echo "wrote:source"
echo x > %[3]q/made 2>/dev/null && echo "wrote:out"
echo x > /tmp/hlsvault-sandbox-probe 2>/dev/null && echo "wrote:tmp"
for d in /root /home /work /run /var; do [ -e "$d" ] && echo "sees:$d"; done
true
`, secret, src, out)
	if err := os.MkdirAll(filepath.Dir(wrapper), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(wrapper, []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}
	x, err := NewExec(ExecConfig{FFmpeg: wrapper, FFprobe: fp})
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("HLSVAULT_SANDBOX_MARKER", "marker-in-parent-env")
	cmd, err := x.Command(testContext(t), FFmpeg, nil, []string{src}, []string{out})
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("%v: %s", err, stderr.Bytes())
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	t.Logf("sandbox view:\n%s", b)
	for _, want := range []string{"uid=65534", "env:LANG=C", "env:PATH=/usr/local/bin:/usr/bin:/bin", "read:source", "wrote:out"} {
		if !slices.Contains(lines, want) {
			t.Errorf("missing %q", want)
		}
	}
	for _, l := range lines {
		k, v, _ := strings.Cut(l, ":")
		switch k {
		case "env", "proc":
			name, _, _ := strings.Cut(v, "=")
			if name != "PATH" && name != "LANG" && name != "PWD" && name != "SHLVL" && name != "_" && name != "OLDPWD" {
				t.Errorf("variable beyond the allowlist: %s", l)
			}
		case "read", "wrote", "sees":
			if v != "source" && v != "out" {
				t.Errorf("sandbox escape: %s", l)
			}
		}
	}
	if got, _ := os.ReadFile(src); string(got) != "input" {
		t.Errorf("source rewritten: %q", got)
	}
	// ffmpeg runs in it too.
	x, err = NewExec(ExecConfig{FFmpeg: ff, FFprobe: fp})
	if err != nil {
		t.Fatal(err)
	}
	if err := x.Check(testContext(t)); err != nil {
		t.Fatal(err)
	}
}

// TestUnsandboxedEnv: without the sandbox the decoder still gets only the
// allowlisted environment.
func TestUnsandboxedEnv(t *testing.T) {
	_, fp := testenv.FFmpeg(t)
	wrapper := filepath.Join(t.TempDir(), "ffmpeg")
	if err := os.WriteFile(wrapper, []byte("#!/bin/sh\nenv\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	x, err := NewExec(ExecConfig{Sandbox: SandboxNone, FFmpeg: wrapper, FFprobe: fp})
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("HLSVAULT_SANDBOX_MARKER", "marker-in-parent-env")
	cmd, err := x.Command(testContext(t), FFmpeg, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "marker-in-parent-env") || !strings.Contains(string(b), "LANG=C") {
		t.Fatalf("environment of the unsandboxed decoder:\n%s", b)
	}
}
