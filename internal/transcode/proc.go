package transcode

import (
	"bytes"
	"errors"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// killGroup signals the whole process group led by pid (started with
// Setpgid), so that anything ffmpeg may have spawned goes with it. A group
// that is already gone is not an error.
func killGroup(pid int, sig syscall.Signal) error {
	if pid <= 0 {
		return nil
	}
	if err := syscall.Kill(-pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	return nil
}

// groupAlive reports whether a live process of the group remains. kill(2)
// also finds zombies, which are dead but may wait forever for a reaper (a
// container's PID 1 need not reap), so a hit is confirmed in /proc.
func groupAlive(pgid int) bool {
	if pgid <= 0 || syscall.Kill(-pgid, 0) != nil {
		return false
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return true
	}
	want := strconv.Itoa(pgid)
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// "pid (comm) state ppid pgrp ...": comm may hold spaces and
		// parentheses, so fields are counted from the last ')'.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) >= 3 && f[2] == want && f[0] != "Z" && f[0] != "X" {
			return true
		}
	}
	return false
}

// tailBuffer keeps the last max bytes written to it: ffmpeg's useful error
// is at the end of stderr, and a hostile file can make it print without end.
type tailBuffer struct {
	mu        sync.Mutex
	max       int
	buf       []byte
	truncated bool
}

func newTail(max int) *tailBuffer { return &tailBuffer{max: max} }

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := len(p)
	if len(p) >= t.max {
		t.buf = append(t.buf[:0], p[len(p)-t.max:]...)
		t.truncated = true
		return n, nil
	}
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.max {
		drop := len(t.buf) - t.max
		t.buf = append(t.buf[:0], t.buf[drop:]...)
		t.truncated = true
	}
	return n, nil
}

// String returns the tail as valid UTF-8 on one line, so it can sit inside
// an error message and a log attribute.
func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := strings.ToValidUTF8(string(t.buf), "")
	s = strings.Join(strings.Fields(s), " ")
	if t.truncated && s != "" {
		s = "..." + s
	}
	if s == "" {
		s = "(no output)"
	}
	return s
}

// capBuffer keeps the first max bytes and then discards, remembering that it
// did. It never fails a write: a failing writer would leave the child
// blocked on a full pipe until its deadline.
type capBuffer struct {
	max      int
	buf      []byte
	overflow bool
}

func (c *capBuffer) Write(p []byte) (int, error) {
	room := c.max - len(c.buf)
	if len(p) > room {
		c.overflow = true
		c.buf = append(c.buf, p[:max(room, 0)]...)
		return len(p), nil
	}
	c.buf = append(c.buf, p...)
	return len(p), nil
}
