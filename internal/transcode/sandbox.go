package transcode

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Program names for Command.
const (
	FFmpeg  = "ffmpeg"
	FFprobe = "ffprobe"
)

// Decoder sandbox modes (DECODER_SANDBOX).
const (
	// SandboxBwrap runs every ffmpeg and ffprobe under bubblewrap: its own
	// pid, network, IPC and UTS namespaces, an unprivileged uid in its own
	// user namespace, no capabilities, a read-only view of the system
	// files the decoder needs and write access to its output directory
	// only. The worker's environment, /proc and files are out of reach.
	SandboxBwrap = "bwrap"
	// SandboxNone runs the decoder as a plain child: it gets only the
	// allowlisted environment, but shares the worker's /proc (and so can
	// read /proc/<worker>/environ when it runs as the same user).
	SandboxNone = "none"
)

// decoderEnv is the whole environment of a decoder, in both modes. Nothing
// of the worker's environment is passed on.
var decoderEnv = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C"}

// DecoderEnv returns the environment every decoder process gets.
func DecoderEnv() []string { return append([]string(nil), decoderEnv...) }

// nobody is the uid and gid the decoder runs as inside its user namespace.
const nobody = "65534"

// systemDirs are the directories of the host that the sandbox shows,
// read-only, when they exist: the programs and libraries. /etc is not
// shown, only the files of it listed in systemFiles.
var systemDirs = []string{"/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"}

// systemFiles are the pieces of /etc the dynamic loader and libraries
// read: the loader cache, Debian's alternatives (libblas.so.3 is one) and
// fontconfig.
var systemFiles = []string{"/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/alternatives", "/etc/fonts"}

// Mount is one piece of the host shown in the sandbox.
type Mount struct {
	// Kind is "ro-bind" (Src shown read-only at Dst), "bind" (read-write)
	// or "symlink" (Dst is a symlink to Src, as /lib → usr/lib on a
	// merged-/usr system).
	Kind     string
	Src, Dst string
}

// Exec is the one place that starts ffmpeg and ffprobe. Every decoder run
// (probe, integrity, interlace check, transcode, verify) builds its command
// with Command, which applies the sandbox mode and the allowlisted
// environment. The zero value is not usable: use NewExec.
type Exec struct {
	mode    string
	bwrap   string // absolute path to bwrap, in SandboxBwrap mode
	ffmpeg  string // absolute paths; empty when not found
	ffprobe string
	missing map[string]error // why a program was not found
	system  []Mount          // the host's system files, as shown in the sandbox
}

// ExecConfig configures NewExec.
type ExecConfig struct {
	Sandbox string // SandboxBwrap (default) or SandboxNone
	FFmpeg  string // a name on PATH or a path; default "ffmpeg"
	FFprobe string // default "ffprobe"
	Bwrap   string // default "bwrap"
}

// NewExec resolves the binaries and the system view. It does not run
// anything: Check does. A decoder that is not found is an error when it is
// used (Command, Check), so a tool that runs only ffprobe needs no ffmpeg.
func NewExec(c ExecConfig) (*Exec, error) {
	if c.Sandbox == "" {
		c.Sandbox = SandboxBwrap
	}
	if c.Sandbox != SandboxBwrap && c.Sandbox != SandboxNone {
		return nil, fmt.Errorf("transcode: decoder sandbox %q: want %s or %s", c.Sandbox, SandboxBwrap, SandboxNone)
	}
	x := &Exec{mode: c.Sandbox, missing: map[string]error{}}
	var err error
	if x.ffmpeg, err = resolve(c.FFmpeg, FFmpeg); err != nil {
		x.missing[FFmpeg] = err
	}
	if x.ffprobe, err = resolve(c.FFprobe, FFprobe); err != nil {
		x.missing[FFprobe] = err
	}
	if x.mode == SandboxBwrap {
		if x.bwrap, err = resolve(c.Bwrap, "bwrap"); err != nil {
			return nil, fmt.Errorf("%w (install the bubblewrap package, or set DECODER_SANDBOX=none to run the decoder unsandboxed)", err)
		}
		var bins []string
		for _, b := range []string{x.ffmpeg, x.ffprobe} {
			if b != "" {
				bins = append(bins, b)
			}
		}
		x.system = systemView(bins...)
	}
	return x, nil
}

// resolve finds a program and makes its path absolute, so that the sandbox
// can show that very file.
func resolve(name, def string) (string, error) {
	if name == "" {
		name = def
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("transcode: %s: %w", def, err)
	}
	if p, err = filepath.Abs(p); err != nil {
		return "", fmt.Errorf("transcode: %s: %w", def, err)
	}
	return p, nil
}

// Mode is SandboxBwrap or SandboxNone.
func (x *Exec) Mode() string { return x.mode }

// FFmpeg and FFprobe are the resolved binaries.
func (x *Exec) FFmpeg() string  { return x.ffmpeg }
func (x *Exec) FFprobe() string { return x.ffprobe }

// systemView lists what of the host the sandbox shows: the system
// directories (a symlink such as /lib → usr/lib stays a symlink), the
// loader's files in /etc, and each binary that lives outside them (a
// wrapper script, a static build in /opt), with its resolved target.
func systemView(binaries ...string) []Mount {
	var ms []Mount
	for _, d := range systemDirs {
		fi, err := os.Lstat(d)
		switch {
		case err != nil:
			continue
		case fi.Mode()&os.ModeSymlink != 0:
			if t, err := os.Readlink(d); err == nil {
				ms = append(ms, Mount{Kind: "symlink", Src: t, Dst: d})
			}
		case fi.IsDir():
			ms = append(ms, Mount{Kind: "ro-bind", Src: d, Dst: d})
		}
	}
	for _, f := range systemFiles {
		if _, err := os.Stat(f); err == nil {
			ms = append(ms, Mount{Kind: "ro-bind", Src: f, Dst: f})
		}
	}
	for _, b := range binaries {
		for _, p := range []string{b, evalSymlinks(b)} {
			if p != "" && !underAny(p, ms) {
				ms = append(ms, Mount{Kind: "ro-bind", Src: p, Dst: p})
			}
		}
	}
	return ms
}

func evalSymlinks(p string) string {
	r, err := filepath.EvalSymlinks(p)
	if err != nil {
		return ""
	}
	return r
}

// underAny reports whether p is already shown by a bind of ms.
func underAny(p string, ms []Mount) bool {
	for _, m := range ms {
		if m.Kind != "symlink" && (p == m.Dst || strings.HasPrefix(p, m.Dst+"/")) {
			return true
		}
	}
	return false
}

// BwrapArgs is bwrap's argv (without the program name) to run prog with
// args in the sandbox: the namespaces and the uid, the system view
// (read-only), a fresh /proc and /dev, read (read-only) and write
// (read-write) paths of the job, a read-only root, the allowlisted environment, and then the
// command after "--".
func BwrapArgs(system []Mount, read, write []string, prog string, args []string) []string {
	a := []string{
		"--unshare-user", "--uid", nobody, "--gid", nobody,
		"--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
		"--die-with-parent", "--new-session", "--cap-drop", "ALL",
	}
	for _, m := range system {
		a = append(a, "--"+m.Kind, m.Src, m.Dst)
	}
	a = append(a, "--proc", "/proc", "--dev", "/dev")
	// Writable directories first, so that a read-only input inside one
	// (the source in the job directory) is mounted over it.
	for _, w := range write {
		a = append(a, "--bind", w, w)
	}
	for _, r := range read {
		a = append(a, "--ro-bind", r, r)
	}
	// The sandbox's own root (a tmpfs holding the mount points) is made
	// read-only too: the output directory is the one place to write.
	a = append(a, "--remount-ro", "/", "--clearenv")
	for _, kv := range decoderEnv {
		k, v, _ := strings.Cut(kv, "=")
		a = append(a, "--setenv", k, v)
	}
	a = append(a, "--chdir", "/", "--", prog)
	return append(a, args...)
}

// Command returns the command that runs prog (FFmpeg or FFprobe) with args.
// read are the files or directories it reads (the input), write the
// directories it writes to; all absolute. In SandboxBwrap mode nothing else
// of the host's files is visible but the system view. The command has the
// allowlisted environment (the bwrap process too: the sandbox's pid 1 is
// its copy, and /proc/1/environ is visible inside), its own process group,
// and is SIGKILLed if the worker's thread dies (Pdeathsig). Cancelling ctx
// SIGKILLs the whole group and stops waiting for its pipes after a second
// (the runner overrides that with a graceful SIGTERM); run it with
// runGroup. The caller sets the output streams.
func (x *Exec) Command(ctx context.Context, prog string, args, read, write []string) (*exec.Cmd, error) {
	var bin string
	switch prog {
	case FFmpeg:
		bin = x.ffmpeg
	case FFprobe:
		bin = x.ffprobe
	default:
		return nil, fmt.Errorf("transcode: unknown decoder %q", prog)
	}
	if err := x.missing[prog]; err != nil {
		return nil, err
	}
	for _, p := range append(append([]string(nil), read...), write...) {
		if !filepath.IsAbs(p) {
			return nil, fmt.Errorf("transcode: %s: path %q is not absolute", prog, p)
		}
	}
	var cmd *exec.Cmd
	if x.mode == SandboxBwrap {
		cmd = exec.CommandContext(ctx, x.bwrap, BwrapArgs(x.system, read, write, bin, args)...)
	} else {
		cmd = exec.CommandContext(ctx, bin, args...)
	}
	cmd.Env = DecoderEnv()
	cmd.Dir = "/"
	// Pdeathsig is tied to the starting OS thread; Go only retires threads
	// of goroutines that exit while locked to them, which we never do.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return killGroup(cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	return cmd, nil
}

// runGroup runs cmd to its end, then kills what is left of its process
// group: nothing a decoder started may outlive the call.
func runGroup(cmd *exec.Cmd) error {
	err := cmd.Run()
	if cmd.Process != nil {
		_ = killGroup(cmd.Process.Pid, syscall.SIGKILL)
	}
	return err
}

// Check runs "-version" of each of progs (default: ffmpeg and ffprobe)
// the way every job will, so that a sandbox that cannot start (no user
// namespaces for this user, a seccomp profile refusing them, a library
// outside the system view) stops the worker at start rather than failing
// every job.
func (x *Exec) Check(ctx context.Context, progs ...string) error {
	if len(progs) == 0 {
		progs = []string{FFmpeg, FFprobe}
	}
	for _, prog := range progs {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		cmd, err := x.Command(cctx, prog, []string{"-hide_banner", "-version"}, nil, nil)
		if err != nil {
			cancel()
			return err
		}
		out := newTail(1 << 10)
		cmd.Stdout, cmd.Stderr = out, out
		err = cmd.Run()
		cancel()
		if err != nil {
			hint := ""
			if x.mode == SandboxBwrap {
				hint = " (the decoder sandbox does not work for this user here; fix it, or set DECODER_SANDBOX=none to run the decoder unsandboxed, with weaker isolation)"
			}
			return fmt.Errorf("transcode: %s -version in decoder sandbox %q: %w: %s%s", prog, x.mode, err, out.String(), hint)
		}
	}
	return nil
}

// errNoExec is returned by the decoder functions when given no Exec.
var errNoExec = errors.New("transcode: no decoder Exec")
