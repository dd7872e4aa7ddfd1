//go:build faults

package faults

import (
	"fmt"
	"maps"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hlsvault/hlsvault/internal/testenv"
)

// TestChunkedSurvivesAKilledWorker: two real worker processes share a
// chunked job (CHUNK_SECONDS=10: six chunks and the title piece); the
// first is SIGKILLed while ffmpeg encodes a chunk of video. The other
// takes every piece that is left, and, once asynq's lease on the dead
// worker's piece expires, that piece's second delivery (its objects under
// _r2 names): the crashed chunk is retried alone, no other piece runs
// twice, and the job publishes one version that verifies.
func TestChunkedSurvivesAKilledWorker(t *testing.T) {
	redis := startRedis(t)
	e, store := newFSEnv(t, redis.port)
	e["CHUNK_SECONDS"] = "10"
	src := testenv.MakeSource(t, t.TempDir(), testenv.Source{Width: 320, Height: 180, Seconds: 60, Audio: true})
	putFile(t, store, "uploads/chunked.mp4", src)

	// Each worker its own TMPDIR, to tell whose ffmpeg is running.
	e1, e2 := maps.Clone(e), maps.Clone(e)
	e1["TMPDIR"], e2["TMPDIR"] = t.TempDir(), t.TempDir()
	w1 := startWorker(t, e1)
	waitFor(t, "worker 1 to start", 30*time.Second, func() bool { return strings.Contains(w1.logs(), "worker started") })
	if out, err := enqueue(t, e, "transcode", "--video", "chunked", "--source", "uploads/chunked.mp4"); err != nil {
		t.Fatalf("enqueue: %v\n%s", err, out)
	}
	// The title piece (6: the audio and the storyboard) is enqueued
	// first; once it is stored, the next piece worker 1 runs is a chunk
	// of video.
	waitFor(t, "worker 1 to encode a chunk", 2*time.Minute, func() bool {
		pieces, _ := filepath.Glob(filepath.Join(e1["TMPDIR"], "hlsvault-piece-*"))
		return len(pieces) > 0 && ffmpegs(e1["TMPDIR"]) > 0 && strings.Contains(w1.logs(), `"piece":6,"piece_attempt":1,"seconds"`)
	})
	w1.kill()
	w2 := startWorker(t, e2)
	time.Sleep(time.Second)
	if n := ffmpegs(e1["TMPDIR"]); n != 0 {
		t.Errorf("%d ffmpeg processes outlived the killed worker", n)
	}
	finish(t, e, "chunked", w2)

	all := w1.logs() + w2.logs()
	retried := regexp.MustCompile(`"msg":"piece stored".*"piece":(\d+),"piece_attempt":2,`).FindAllStringSubmatch(w2.logs(), -1)
	if len(retried) != 1 {
		t.Fatalf("pieces stored by a second delivery: %v, want the killed one alone\nworker 1:\n%s\nworker 2:\n%s", retried, w1.logs(), w2.logs())
	}
	for piece := range 7 {
		n := len(regexp.MustCompile(fmt.Sprintf(`"msg":"piece stored".*"piece":%d,"piece_attempt":\d,`, piece)).FindAllString(all, -1))
		if n != 1 {
			t.Errorf("piece %d stored %d times, want once", piece, n)
		}
	}
	if strings.Contains(all, `"piece_attempt":3`) {
		t.Error("a piece ran a third time")
	}
	t.Logf("piece %s was running when worker 1 was killed; worker 2 stored it again", retried[0][1])
}
