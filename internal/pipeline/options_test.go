package pipeline

import (
	"context"
	"encoding/json"
	"regexp"
	"testing"

	"github.com/hibiken/asynq"

	"github.com/hlsvault/hlsvault/internal/storage"
	"github.com/hlsvault/hlsvault/internal/testenv"
	"github.com/hlsvault/hlsvault/internal/testenv/hlscheck"
	"github.com/hlsvault/hlsvault/jobs"
)

// TestJobOptions: a job's own ladder and preset replace the worker's for
// that job only, and a task enqueued straight through asynq (no client)
// records the options and metadata of its payload.
func TestJobOptions(t *testing.T) {
	fs, err := storage.NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, fs) // worker: 240p and 144p, ultrafast
	ctx := context.Background()
	src := testenv.MakeSource(t, t.TempDir(), testenv.Source{Width: 320, Height: 240, Seconds: 1, Audio: true})
	h.upload("uploads/o.mp4", src)
	own, err := h.client.EnqueueTranscode(ctx, jobs.TranscodeRequest{VideoID: "own", Source: "uploads/o.mp4",
		Ladder: "180p:200k:48k", Preset: "superfast"})
	if err != nil {
		t.Fatal(err)
	}
	def, err := h.client.EnqueueTranscode(ctx, jobs.TranscodeRequest{VideoID: "default", Source: "uploads/o.mp4"})
	if err != nil {
		t.Fatal(err)
	}
	task, err := jobs.NewTranscodeTask(jobs.TranscodePayload{VideoID: "direct", Source: "uploads/o.mp4", Ladder: "144p:150k",
		Priority: jobs.PriorityLow, Metadata: json.RawMessage(`{"via":"asynq"}`)})
	if err != nil {
		t.Fatal(err)
	}
	ac := asynq.NewClient(h.redis)
	defer ac.Close()
	if _, err := ac.Enqueue(task, asynq.Queue(h.queues.TranscodeLow), asynq.TaskID(jobs.TaskID("direct", "uploads/o.mp4"))); err != nil {
		t.Fatal(err)
	}
	h.startWorker()
	for _, id := range []string{own.TaskID, def.TaskID, jobs.TaskID("direct", "uploads/o.mp4")} {
		if j := h.waitJob(id); j.State != jobs.Published {
			t.Fatalf("job %s: %+v", id, j)
		}
	}
	// The three ladders' playlists pass third-party strict parsing.
	hlscheck.StrictAll(t, hlscheck.Stored(t, h.store, "hls/"))
	names := func(video string) []string {
		st, err := h.client.Status(ctx, video)
		if err != nil || st.Current == nil {
			t.Fatalf("status %s: %+v %v", video, st, err)
		}
		var out []string
		for _, r := range st.Current.Renditions {
			out = append(out, r.Name)
		}
		return out
	}
	if got := names("own"); len(got) != 1 || got[0] != "180p" {
		t.Errorf("own ladder: renditions %v, want [180p]", got)
	}
	if got := names("default"); len(got) != 2 || got[0] != "240p" || got[1] != "144p" {
		t.Errorf("worker's ladder: renditions %v, want [240p 144p]", got)
	}
	if got := names("direct"); len(got) != 1 || got[0] != "144p" {
		t.Errorf("direct task's ladder: renditions %v, want [144p]", got)
	}
	logs := h.logs.String()
	for task, preset := range map[string]string{own.TaskID: "superfast", def.TaskID: "ultrafast"} {
		if !regexp.MustCompile(`msg="planned ladder" task=` + task + `\b.* preset=` + preset + `\b`).MatchString(logs) {
			t.Errorf("task %s was not planned with preset %s", task, preset)
		}
	}
	st, err := h.client.Status(ctx, "direct")
	if err != nil || string(st.Job.Metadata) != `{"via": "asynq"}` || st.Job.Options.Ladder != "144p:150k" || st.Job.Options.Priority != jobs.PriorityLow {
		t.Errorf("direct task's job: %+v %v", st.Job, err)
	}
}
