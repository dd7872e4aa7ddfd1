package main

import (
	"errors"
	"fmt"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// CPU time of sandboxed processes. The decoder sandbox (bwrap
// --unshare-pid) does not reap the sandbox's pid 1: its monitor learns
// the exit status through a pipe and exits, and the orphan is reaped by
// whoever adopts it. Its CPU time (ffmpeg's) then never reaches the
// monitor's rusage, so cmd.ProcessState reports almost nothing for a
// sandboxed ffmpeg, and a worker's own rusage misses all of it.
// hlsbench therefore makes itself a child subreaper (orphans of its
// descendants are reparented to it, not to the system's init), reaps them
// once the processes it started have ended, and reads the CPU time of
// everything as its RUSAGE_CHILDREN.

// becomeSubreaper makes this process adopt its descendants' orphans.
func becomeSubreaper() error {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("hlsbench: PR_SET_CHILD_SUBREAPER: %w", err)
	}
	return nil
}

// orphanWait bounds how long a sandbox's pid 1 may outlive its monitor.
const orphanWait = 10 * time.Second

// reapOrphans waits for every child left, adopted orphans included. Call
// it only when no exec.Cmd of this process is still to be waited for: it
// reaps any child.
func reapOrphans() error {
	deadline := time.Now().Add(orphanWait)
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		switch {
		case errors.Is(err, syscall.ECHILD):
			return nil
		case errors.Is(err, syscall.EINTR), err == nil && pid > 0:
			continue
		case err != nil:
			return fmt.Errorf("hlsbench: reap: %w", err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("hlsbench: children still running %s after the processes started ended", orphanWait)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// childrenCPU is the user+sys CPU time, in seconds, of every child of
// this process that has been waited for so far, and of their waited-for
// descendants.
func childrenCPU() (float64, error) {
	if err := reapOrphans(); err != nil {
		return 0, err
	}
	return rusage(syscall.RUSAGE_CHILDREN), nil
}

// rusage is the user+sys CPU of who (RUSAGE_SELF or RUSAGE_CHILDREN), in
// seconds.
func rusage(who int) float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(who, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}
