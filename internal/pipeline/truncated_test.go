package pipeline

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/hlsvault/hlsvault/internal/catalog"
	"github.com/hlsvault/hlsvault/internal/storage"
	"github.com/hlsvault/hlsvault/internal/testenv"
	"github.com/hlsvault/hlsvault/internal/testenv/decoder"
	"github.com/hlsvault/hlsvault/internal/verify"
	"github.com/hlsvault/hlsvault/jobs"
)

// TestTruncatedSources is issue 9's first finding: a fast-start MP4 cut
// short keeps its moov, probes with its full declared duration, and was
// published as a title of one frame. Cut sources must fail once as bad input
// with a reason the creator can act on, and leave no object and no key;
// sources that merely end a little early (audio longer than video, a last
// GOP cut part-way) must still publish, and verify against the recorded
// source duration.
func TestTruncatedSources(t *testing.T) {
	fs, err := storage.NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, fs)
	dir := t.TempDir()
	ctx := context.Background()

	fastStart := filepath.Join(dir, "faststart.mp4")
	ffmpegMake(t, "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=4", "-f", "lavfi", "-i", "sine=duration=4",
		"-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-movflags", "+faststart", fastStart)
	whole, err := os.ReadFile(fastStart)
	if err != nil {
		t.Fatal(err)
	}
	cut := func(name string, n int) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, whole[:n], 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	audioLonger := filepath.Join(dir, "audio-longer.mp4")
	ffmpegMake(t, "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=4", "-f", "lavfi", "-i", "sine=duration=4.5",
		"-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-movflags", "+faststart", audioLonger)
	// A commentary track that stops 2.5 s before the film: a real file's
	// shape, not a cut upload. Its cut copy must still be refused.
	shortSecond := filepath.Join(dir, "short-second-audio.mp4")
	ffmpegMake(t, "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=4", "-f", "lavfi", "-i", "sine=duration=4",
		"-f", "lavfi", "-i", "sine=frequency=660:duration=1.5", "-map", "0:v", "-map", "1:a", "-map", "2:a",
		"-metadata:s:a:0", "language=eng", "-metadata:s:a:1", "language=fra",
		"-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-movflags", "+faststart", shortSecond)
	twoAudio, err := os.ReadFile(shortSecond)
	if err != nil {
		t.Fatal(err)
	}
	partialGOP := filepath.Join(dir, "partial-gop.mp4")
	// Keyframes every 2 s, 4.6 s long: the last GOP is 0.6 s.
	ffmpegMake(t, "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=4.6",
		"-c:v", "libx264", "-preset", "ultrafast", "-g", "50", "-keyint_min", "50", "-sc_threshold", "0", partialGOP)

	refused := []struct{ name, path, reason string }{
		{"fast-start mp4 cut to 20 KB", cut("cut20k.mp4", 20_000), "source is truncated: the container declares 4.00 s, decodable video ends at 0."},
		{"fast-start mp4 cut to 60 %", cut("cut60.mp4", len(whole)*60/100), "source is truncated: the container declares 4.00 s, decodable video ends at 2."},
		{"two audio tracks, cut to 60 %", func() string {
			p := filepath.Join(dir, "cut60-two-audio.mp4")
			if err := os.WriteFile(p, twoAudio[:len(twoAudio)*60/100], 0o600); err != nil {
				t.Fatal(err)
			}
			return p
		}(), "source is truncated: the container declares 4.00 s, decodable video ends at 2."},
	}
	published := []struct{ name, path string }{
		{"whole fast-start mp4", fastStart},
		{"audio 0.5 s longer than video", audioLonger},
		{"last GOP partial", partialGOP},
		// Padded with silence to the video's length: verify holds every
		// audio rendition to the source's duration.
		{"second audio track 2.5 s shorter", shortSecond},
		// Without the last 15 % of its bytes: the one GOP cut part-way,
		// the media ending about 0.6 s early. Within the tolerance.
		{"last GOP cut part-way", cut("cut85.mp4", len(whole)*85/100)},
	}

	h.startWorker()
	enqueue := func(t *testing.T, path string) (string, jobs.Job) {
		t.Helper()
		video := testenv.Name("trunc")
		h.upload("uploads/"+video+".mp4", path)
		res, err := h.client.EnqueueTranscode(ctx, jobs.TranscodeRequest{VideoID: video, Source: "uploads/" + video + ".mp4"})
		if err != nil {
			t.Fatal(err)
		}
		return video, h.waitJob(res.TaskID)
	}
	conn, err := pgx.Connect(ctx, h.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })

	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			video, j := enqueue(t, tc.path)
			if j.State != jobs.Failed || j.Attempts != 1 || !strings.Contains(j.Error, tc.reason) || !strings.Contains(j.Error, "upload it again") {
				t.Errorf("job %+v: want failed after one attempt with %q in the reason", j, tc.reason)
			}
			if objs := h.objects("hls/" + video + "/"); len(objs) != 0 {
				t.Errorf("objects stored: %d", len(objs))
			}
			if _, err := h.db.CurrentVersion(ctx, video); !errors.Is(err, catalog.ErrNotFound) {
				t.Errorf("a version was published: %v", err)
			}
			var n int
			if err := conn.QueryRow(ctx, `select count(*) from content_keys where video_id = $1`, video).Scan(&n); err != nil || n != 0 {
				t.Errorf("content keys stored: %d (%v)", n, err)
			}
		})
	}
	ver := &verify.Verifier{Store: h.store, DB: h.db, Keyring: h.keyring, Exec: decoder.Exec(t)}
	for _, tc := range published {
		t.Run(tc.name, func(t *testing.T) {
			video, j := enqueue(t, tc.path)
			if j.State != jobs.Published {
				t.Fatalf("job: %+v", j)
			}
			rep, err := ver.Verify(ctx, video)
			if err != nil || !rep.OK() {
				t.Fatalf("verify: %+v %v", rep, err)
			}
			if tc.path != fastStart {
				return
			}
			// The recorded source duration is what verify holds every
			// rendition to: a catalog that says 3 s more must be reported.
			if _, err := conn.Exec(ctx, `update versions set duration_s = duration_s + 3 where video_id = $1`, video); err != nil {
				t.Fatal(err)
			}
			rep, err = ver.Verify(ctx, video)
			if err != nil || rep.OK() {
				t.Fatalf("verify with a wrong source duration: %+v %v", rep, err)
			}
			for _, rr := range rep.Renditions {
				if !strings.Contains(strings.Join(rr.Problems, "; "), "the source lasts 7.000s") {
					t.Errorf("rendition %s: problems %q, want the source duration named", rr.Name, rr.Problems)
				}
			}
		})
	}
}
