package main

import (
	"os"
	"path/filepath"
	"testing"
)

// TestJobLogTimes reads the ladder ffmpeg's and the job's seconds from a
// worker's JSON log, and refuses a log that has neither (a text log, a
// job that did not finish).
func TestJobLogTimes(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "worker.log")
	lines := `{"time":"2026-12-02T12:45:36.4Z","level":"INFO","msg":"worker started","concurrency":1}
{"time":"2026-12-02T12:45:58.4Z","level":"INFO","msg":"segments uploaded","ffmpeg_seconds":20.953448102,"total_seconds":21.004343685}
{"time":"2026-12-02T12:45:58.6Z","level":"INFO","msg":"storyboard stored","sprites":1,"seconds":0.145124523}
{"time":"2026-12-02T12:45:58.7Z","level":"INFO","msg":"job done","outcome":"published","seconds":21.889023728}
{"time":"2026-12-02T12:45:58.7Z","level":"INFO","msg":"task done","outcome":"ok","seconds":21.889068219}
`
	if err := os.WriteFile(log, []byte(lines), 0o600); err != nil {
		t.Fatal(err)
	}
	ff, job, err := jobLogTimes(log)
	if err != nil || ff != 20.953448102 || job != 21.889023728 {
		t.Fatalf("ffmpeg %v job %v: %v", ff, job, err)
	}
	if err := os.WriteFile(log, []byte("time=2026-12-02T12:45:58Z level=INFO msg=\"job done\" seconds=21.9\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := jobLogTimes(log); err == nil {
		t.Error("a text log: no error")
	}
}
