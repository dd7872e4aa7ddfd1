package pipeline

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hlsvault/hlsvault/internal/catalog"
	"github.com/hlsvault/hlsvault/internal/storage"
	"github.com/hlsvault/hlsvault/internal/testenv"
	"github.com/hlsvault/hlsvault/jobs"
)

// TestJobStages runs real jobs and records, at each stage change, the
// stage as the catalog holds it (read with its own query, as `enqueue
// status` would): a published job goes through every stage in order and
// keeps publish; a job refused at probe keeps probe.
func TestJobStages(t *testing.T) {
	fs, err := storage.NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, fs)
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, h.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	stageOf := func(jobID int64) string {
		var s *string
		if err := pool.QueryRow(ctx, `select stage from jobs where id = $1`, jobID).Scan(&s); err != nil {
			t.Errorf("read stage: %v", err)
			return "?"
		}
		if s == nil {
			return "<null>"
		}
		return *s
	}
	var (
		mu   sync.Mutex
		seen = map[int64][]string{}
	)
	h.pipe.stageHook = func(jobID int64, stage catalog.JobStage) {
		got := stageOf(jobID)
		if got != string(stage) {
			t.Errorf("job %d: stage %s recorded as %s", jobID, stage, got)
		}
		mu.Lock()
		seen[jobID] = append(seen[jobID], got)
		mu.Unlock()
	}
	src := testenv.MakeSource(t, t.TempDir(), testenv.Source{Width: 320, Height: 240, Seconds: 3, Audio: true})
	h.upload("uploads/stages.mp4", src)
	text := filepath.Join(t.TempDir(), "notes.txt")
	if err := os.WriteFile(text, []byte("this is not a video\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	h.upload("uploads/notes.txt", text)
	h.startWorker()

	for _, tc := range []struct {
		source string
		state  jobs.State
		want   []string
	}{
		{"uploads/stages.mp4", jobs.Published, []string{"download", "probe", "encode", "upload", "publish"}},
		{"uploads/notes.txt", jobs.Failed, []string{"download", "probe"}},
	} {
		video := testenv.Name("stages")
		res, err := h.client.EnqueueTranscode(ctx, jobs.TranscodeRequest{VideoID: video, Source: tc.source})
		if err != nil {
			t.Fatal(err)
		}
		j := h.waitJob(res.TaskID)
		if j.State != tc.state {
			t.Fatalf("%s: job %+v, want %s", tc.source, j, tc.state)
		}
		mu.Lock()
		got := seen[j.ID]
		mu.Unlock()
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: stages %v, want %v", tc.source, got, tc.want)
		}
		// The last stage reached is kept once the job has ended.
		if last := stageOf(j.ID); last != tc.want[len(tc.want)-1] {
			t.Errorf("%s: stage after the job is %s, want %s", tc.source, last, tc.want[len(tc.want)-1])
		}
	}
}
