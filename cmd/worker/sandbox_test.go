package main

import (
	"encoding/base64"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hlsvault/hlsvault/internal/testenv"
)

// leakWrapper writes a shell script to stand in for real (ffmpeg or
// ffprobe): it looks for each of secrets in its own environment, its
// parent's /proc/PID/environ, every /proc/*/environ it can read and the
// secret files, prints "LEAK: …" and exits 1 on the first one found, and
// else execs real. The worker's start check ("-hide_banner -version")
// goes straight to real. The secrets are in the script itself, which the sandbox
// shows to the decoder anyway.
func leakWrapper(t *testing.T, dir, name, real string, secrets, files []string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("#!/bin/sh\n")
	b.WriteString("scan() { # $1: where; the content on stdin\n\tdata=$(tr '\\0' '\\n')\n")
	for i, s := range secrets {
		fmt.Fprintf(&b, "\tcase \"$data\" in *'%s'*) echo \"LEAK: secret %d in $1\" >&2; return 1;; esac\n", s, i)
	}
	b.WriteString("\treturn 0\n}\n")
	// The worker's start check (-version) passes through, so that the
	// hunt runs in the job's probes and transcode.
	fmt.Fprintf(&b, "if [ \"$2\" = -version ]; then exec '%s' \"$@\"; fi\n", real)
	b.WriteString("env | scan 'its own environment' || exit 1\n")
	b.WriteString("if [ -r /proc/$PPID/environ ]; then scan \"its parent's /proc/$PPID/environ\" < /proc/$PPID/environ || exit 1; fi\n")
	b.WriteString("for f in /proc/[0-9]*/environ; do if [ -r \"$f\" ]; then scan \"$f\" < \"$f\" || exit 1; fi; done\n")
	for _, f := range files {
		fmt.Fprintf(&b, "if [ -r '%[1]s' ]; then echo 'LEAK: secret file %[1]s is readable' >&2; exit 1; fi\n", f)
	}
	fmt.Fprintf(&b, "exec '%s' \"$@\"\n", real)
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(b.String()), 0o700); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestDecoderSandboxKeepsSecrets runs the worker binary with every secret
// in its environment (a real process: /proc/PID/environ shows what it was
// started with) and a wrapper in place of ffmpeg and ffprobe that hunts for
// them. In the bwrap sandbox the job publishes: no decoder run found a
// secret. With DECODER_SANDBOX=none the same wrapper finds the KEK in its
// parent's /proc/PID/environ and fails the job, so the check is not
// vacuous (and that mode is indeed the weaker one).
//
// The same run checks the files: everything under the job's directory is
// 0600 in 0700 directories while the job runs, and the uploaded source and
// the published objects are 0600 in the store.
func TestDecoderSandboxKeepsSecrets(t *testing.T) {
	env := envMap(testEnv(t))
	ffmpeg, ffprobe := testenv.FFmpeg(t)
	marker := func(what string) string { return "s3cret-" + what + "-" + testenv.Name("m") }
	kek := env["KEY_ENCRYPTION_KEY"]
	accountKey := base64.StdEncoding.EncodeToString([]byte(marker("account-key")))
	dbPassword := marker("dbpass")
	tokenSecret := marker("token-secret-0123456789abcdef0123456789")
	fileSecret := marker("kek-file")
	env["AZURE_STORAGE_CONNECTION_STRING"] = "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=" + accountKey +
		";BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;"
	u, err := url.Parse(env["DATABASE_URL"])
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(u.User.Username(), dbPassword) // local PostgreSQL trusts loopback: the password is not checked
	env["DATABASE_URL"] = u.String()
	env["PLAYBACK_TOKEN_SECRETS"] = "k1:" + tokenSecret
	secrets := t.TempDir()
	kekFile := filepath.Join(secrets, "kek")
	if err := os.WriteFile(kekFile, []byte(fileSecret), 0o600); err != nil {
		t.Fatal(err)
	}

	bin := t.TempDir()
	all := []string{kek, accountKey, dbPassword, tokenSecret, fileSecret}
	env["FFMPEG"] = leakWrapper(t, bin, "ffmpeg", ffmpeg, all, []string{kekFile})
	env["FFPROBE"] = leakWrapper(t, bin, "ffprobe", ffprobe, all, []string{kekFile})
	src := testenv.MakeSource(t, t.TempDir(), testenv.Source{Width: 320, Height: 240, Seconds: 2, Audio: true})

	t.Run("bwrap", func(t *testing.T) {
		env := with(env, "DECODER_SANDBOX", "bwrap")
		stop, logs := startWorker(t, env)
		modes := watchModes(env["TMPDIR"])
		out, err := runEnqueue(t, env, "transcode", "--video", "sandboxed", "--source", src, "--wait", "--wait-timeout", "90s")
		seen := modes()
		stop()
		if err != nil || !strings.Contains(out, "published video sandboxed version 1") {
			t.Fatalf("enqueue --wait: %v\n%s\nworker log:\n%s", err, out, logs.String())
		}
		if strings.Contains(logs.String(), "LEAK") {
			t.Fatalf("worker log:\n%s", logs.String())
		}
		checkJobModes(t, seen)
		checkStoreModes(t, strings.TrimPrefix(env["STORAGE_URL"], "file://"))
	})
	t.Run("none", func(t *testing.T) {
		env := with(env, "DECODER_SANDBOX", "none")
		stop, logs := startWorker(t, env)
		out, err := runEnqueue(t, env, "transcode", "--video", "unsandboxed", "--source", src, "--wait", "--wait-timeout", "90s")
		stop()
		if err == nil || !strings.Contains(out, "LEAK: secret 0 in its parent's /proc/") {
			t.Fatalf("the wrapper did not find the KEK in its parent's /proc/PID/environ without the sandbox: %v\n%s\nworker log:\n%s", err, out, logs.String())
		}
		if !strings.Contains(logs.String(), "isolation is weaker") {
			t.Errorf("no warning that the decoder is unsandboxed:\n%s", logs.String())
		}
	})
}

// TestWorkerRefusesBrokenSandbox: with DECODER_SANDBOX=bwrap and no
// bubblewrap on PATH (or one that cannot run the decoder), the worker
// refuses to start and says how to proceed.
func TestWorkerRefusesBrokenSandbox(t *testing.T) {
	env := envMap(testEnv(t))
	ffmpeg, ffprobe := testenv.FFmpeg(t)
	env["FFMPEG"], env["FFPROBE"] = ffmpeg, ffprobe
	empty := t.TempDir()
	env["PATH"] = empty // no bwrap
	cmd := exec.Command(binary(t, "worker"))
	cmd.Env = env.list()
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "bwrap") || !strings.Contains(string(out), "DECODER_SANDBOX=none") {
		t.Fatalf("worker without bwrap: %v\n%s", err, out)
	}
	// A bwrap that runs nothing.
	if err := os.Symlink("/bin/false", filepath.Join(empty, "bwrap")); err != nil {
		t.Fatal(err)
	}
	cmd = exec.Command(binary(t, "worker"))
	cmd.Env = env.list()
	out, err = cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "-version in decoder sandbox \"bwrap\"") || !strings.Contains(string(out), "DECODER_SANDBOX=none") {
		t.Fatalf("worker with a broken bwrap: %v\n%s", err, out)
	}
}

// startWorker starts the worker binary; stop sends SIGTERM and waits.
func startWorker(t *testing.T, env envMap) (stop func(), logs *testenv.SyncBuffer) {
	t.Helper()
	cmd := exec.Command(binary(t, "worker"))
	cmd.Env = env.list()
	logs = &testenv.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cmd.Process.Signal(syscall.SIGTERM)
			cmd.Wait()
		})
	}
	t.Cleanup(stop)
	return stop, logs
}

// watchModes records, until the returned function is called, the mode of
// every file and directory that appears under the job directories in dir.
func watchModes(dir string) func() map[string]fs.FileMode {
	seen := map[string]fs.FileMode{}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for {
			jobs, _ := filepath.Glob(filepath.Join(dir, "hlsvault-job-*"))
			for _, j := range jobs {
				_ = filepath.WalkDir(j, func(p string, d fs.DirEntry, err error) error {
					if err != nil {
						return nil
					}
					if fi, err := d.Info(); err == nil {
						rel, _ := filepath.Rel(j, p)
						seen[rel] = fi.Mode()
					}
					return nil
				})
			}
			select {
			case <-done:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	return func() map[string]fs.FileMode {
		close(done)
		<-finished
		return seen
	}
}

func checkJobModes(t *testing.T, seen map[string]fs.FileMode) {
	t.Helper()
	var files int
	for name, m := range seen {
		switch {
		case m.IsDir() && m.Perm() != 0o700:
			t.Errorf("job dir entry %s is %v, want a 0700 directory", name, m)
		case m.IsRegular() && m.Perm() != 0o600:
			t.Errorf("job file %s is %v, want 0600", name, m)
		case m.IsRegular():
			files++
		}
	}
	if _, ok := seen["source"]; !ok || files < 2 {
		t.Errorf("saw %d files in the job directory (%v): want the source and ffmpeg's output", files, seen)
	}
}

func checkStoreModes(t *testing.T, root string) {
	t.Helper()
	var n int
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case p == root:
		case d.IsDir() && fi.Mode().Perm() != 0o700:
			t.Errorf("store directory %s is %v, want 0700", p, fi.Mode().Perm())
		case !d.IsDir() && fi.Mode().Perm() != 0o600:
			t.Errorf("stored object %s is %v, want 0600", p, fi.Mode().Perm())
		case !d.IsDir():
			n++
		}
		return nil
	})
	if err != nil || n == 0 {
		t.Fatalf("store %s: %v, %d objects", root, err, n)
	}
}
