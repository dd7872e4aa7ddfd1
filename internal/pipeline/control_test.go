package pipeline

import (
	"context"
	"errors"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/hlsvault/hlsvault/internal/catalog"
	"github.com/hlsvault/hlsvault/internal/deletions"
	"github.com/hlsvault/hlsvault/internal/gc"
	"github.com/hlsvault/hlsvault/internal/storage"
	"github.com/hlsvault/hlsvault/internal/testenv"
	"github.com/hlsvault/hlsvault/jobs"
)

// ctlUntil polls cond (a database or queue state, which has no event to wait
// on) until it holds, failing the test after limit.
func (h *harness) ctlUntil(what string, limit time.Duration, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ctlFinished returns a check of whether a job's finished_at is set, on a
// connection of its own to the harness's catalog.
func ctlFinished(h *harness) func(taskID string) bool {
	h.t.Helper()
	conn, err := pgx.Connect(context.Background(), h.dbURL)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { conn.Close(context.Background()) })
	return func(taskID string) bool {
		h.t.Helper()
		var done bool
		if err := conn.QueryRow(context.Background(), `select finished_at is not null from jobs where task_id = $1`, taskID).Scan(&done); err != nil {
			h.t.Fatal(err)
		}
		return done
	}
}

// ctlPublishOther enqueues a short, different video and waits until it is
// published: the worker (one task at a time) has moved on past whatever
// was before it.
func (h *harness) ctlPublishOther(src string) {
	h.t.Helper()
	video := testenv.Name("other")
	h.upload("uploads/"+video+".mp4", src)
	res, err := h.client.EnqueueTranscode(context.Background(), jobs.TranscodeRequest{VideoID: video, Source: "uploads/" + video + ".mp4", Force: false})
	if err != nil {
		h.t.Fatal(err)
	}
	if j := h.waitJob(res.TaskID); j.State != jobs.Published {
		h.t.Fatalf("other video: %+v", j)
	}
}

func TestCancelQueuedJob(t *testing.T) {
	h := newHarness(t, ctlFS(t))
	ctx := context.Background()
	src := testenv.MakeSource(t, t.TempDir(), testenv.Source{Width: 320, Height: 240, Seconds: 2})
	video := testenv.Name("cq")
	h.upload("uploads/cq.mp4", src)

	if _, err := h.client.Cancel(ctx, video); !errors.Is(err, jobs.ErrNoSuchVideo) || !strings.Contains(err.Error(), "no such video") {
		t.Fatalf("cancel of an unknown video: %v", err)
	}
	res, err := h.client.EnqueueTranscode(ctx, jobs.TranscodeRequest{VideoID: video, Source: "uploads/cq.mp4", Force: false})
	if err != nil {
		t.Fatal(err)
	}
	c, err := h.client.Cancel(ctx, video)
	if err != nil || c.Already || len(c.Jobs) != 1 || c.Jobs[0].Was != "queued" || c.Jobs[0].Task != jobs.TaskRemoved || c.Jobs[0].TaskID != res.TaskID {
		t.Fatalf("cancel: %+v %v", c, err)
	}
	if !strings.Contains(c.Message(), "cancelled job "+res.TaskID+" (was queued); nothing will be published") {
		t.Errorf("message: %s", c.Message())
	}
	if _, err := ctlInspector(h).GetTaskInfo(h.queues.Transcode, res.TaskID); !errors.Is(err, asynq.ErrTaskNotFound) {
		t.Fatalf("task after cancel: %v, want removed", err)
	}
	again, err := h.client.Cancel(ctx, video)
	if err != nil || !again.Already {
		t.Fatalf("second cancel: %+v %v", again, err)
	}

	// It never runs: the worker publishes a later video and has made
	// nothing of this one.
	h.startWorker()
	h.ctlPublishOther(src)
	if n, _ := h.db.VersionStates(ctx, video); len(n) != 0 {
		t.Fatalf("versions of the cancelled video: %v", n)
	}
	if j, _ := h.client.Job(ctx, res.TaskID); j.State != jobs.Cancelled || j.Attempts != 0 {
		t.Fatalf("job: %+v", j)
	}

	// Enqueued again, it runs.
	res2, err := h.client.EnqueueTranscode(ctx, jobs.TranscodeRequest{VideoID: video, Source: "uploads/cq.mp4", Force: false})
	if err != nil || res2.Outcome != jobs.Enqueued {
		t.Fatalf("enqueue after cancel: %+v %v", res2, err)
	}
	if j := h.waitJob(res2.TaskID); j.State != jobs.Published || j.Version != 1 {
		t.Fatalf("job after re-enqueue: %+v", j)
	}
	if _, err := h.client.Cancel(ctx, video); !errors.Is(err, jobs.ErrNothingToCancel) || !strings.Contains(err.Error(), "published") {
		t.Fatalf("cancel of a published video: %v", err)
	}
}

// TestCancelRunningJob cancels a job while ffmpeg encodes it: the worker's
// handler stops promptly, nothing is published, the task is archived (not
// retried), and no version appears later; enqueued again, it publishes.
func TestCancelRunningJob(t *testing.T) {
	h := newHarness(t, ctlFS(t))
	ctx := context.Background()
	dir := t.TempDir()
	long := testenv.MakeSource(t, dir, testenv.Source{Width: 320, Height: 240, Seconds: 120, FPS: 15})
	short := testenv.MakeSource(t, dir, testenv.Source{Width: 320, Height: 240, Seconds: 1})
	video := testenv.Name("cr")
	h.upload("uploads/cr.mp4", long)
	h.startWorker()
	res, err := h.client.EnqueueTranscode(ctx, jobs.TranscodeRequest{VideoID: video, Source: "uploads/cr.mp4", Force: false})
	if err != nil {
		t.Fatal(err)
	}
	// Encoding: ffmpeg has reported progress.
	h.ctlUntil("the job to be encoding", 2*time.Minute, func() bool {
		j, err := h.client.Job(ctx, res.TaskID)
		return err == nil && j.State == jobs.Processing && j.Progress > 0
	})
	finished := ctlFinished(h)
	cancelled := time.Now()
	c, err := h.client.Cancel(ctx, video)
	if err != nil || len(c.Jobs) != 1 || c.Jobs[0].Was != "processing" || c.Jobs[0].Task != jobs.TaskStopped {
		t.Fatalf("cancel: %+v %v", c, err)
	}
	if !strings.Contains(c.Message(), "(was processing); nothing will be published") {
		t.Errorf("message: %s", c.Message())
	}
	// The handler records the end once ffmpeg is gone and its directory
	// removed.
	h.ctlUntil("the cancelled attempt to end", 30*time.Second, func() bool { return finished(res.TaskID) })
	t.Logf("attempt ended %v after the cancel", time.Since(cancelled))
	if ents, _ := os.ReadDir(h.pipe.cfg.TempDir); len(ents) != 0 {
		t.Errorf("job directory left behind: %v", ents)
	}
	info, err := ctlInspector(h).GetTaskInfo(h.queues.Transcode, res.TaskID)
	if err != nil || info.State != asynq.TaskStateArchived {
		t.Fatalf("task: %+v %v, want archived", info, err)
	}

	// Nothing is redone: a later video is published, and this one still
	// has only its attempt's pending debris and no current version.
	h.ctlPublishOther(short)
	if n, _ := h.db.VersionStates(ctx, video); n["pending"] != 1 || len(n) != 1 {
		t.Fatalf("versions: %v, want the cancelled attempt's pending version only", n)
	}
	if _, err := h.db.CurrentVersion(ctx, video); !errors.Is(err, catalog.ErrNotFound) {
		t.Fatalf("current version: %v", err)
	}
	j, _ := h.client.Job(ctx, res.TaskID)
	if j.State != jobs.Cancelled || j.Attempts != 1 {
		t.Fatalf("job: %+v", j)
	}
	if !strings.Contains(h.logs.String(), "job cancelled; nothing published") {
		t.Error("the worker did not log the cancellation")
	}

	// Enqueued again, the archived task's id is freed and the job queued
	// anew (TestCancelQueuedJob follows a re-enqueued job to its publish).
	res2, err := h.client.EnqueueTranscode(ctx, jobs.TranscodeRequest{VideoID: video, Source: "uploads/cr.mp4", Force: false})
	if err != nil || res2.Outcome != jobs.Enqueued {
		t.Fatalf("enqueue after cancel: %+v %v", res2, err)
	}
	info, err = ctlInspector(h).GetTaskInfo(h.queues.Transcode, res2.TaskID)
	if err != nil || (info.State != asynq.TaskStatePending && info.State != asynq.TaskStateActive) {
		t.Fatalf("task after re-enqueue: %+v %v", info, err)
	}
	if _, err := h.client.Cancel(ctx, video); err != nil {
		t.Fatal(err)
	}
}

// TestDeletePublishedVideo deletes a video with two published versions:
// every key is gone at once, gateways are told, a GC pass removes every
// object, and the id cannot be used again.
func TestDeletePublishedVideo(t *testing.T) {
	h := newHarness(t, ctlFS(t), func(c *Config) { c.KeyPeriod = time.Second })
	ctx := context.Background()
	src := testenv.MakeSource(t, t.TempDir(), testenv.Source{Width: 320, Height: 240, Seconds: 2})
	video := testenv.Name("dl")
	h.startWorker()
	var keyIDs []string
	for i, name := range []string{"uploads/dl-a.mp4", "uploads/dl-b.mp4"} {
		h.upload(name, src)
		res, err := h.client.EnqueueTranscode(ctx, jobs.TranscodeRequest{VideoID: video, Source: name, Force: false})
		if err != nil {
			t.Fatal(err)
		}
		if j := h.waitJob(res.TaskID); j.State != jobs.Published || j.Version != i+1 {
			t.Fatalf("job %d: %+v", i, j)
		}
		cur, err := h.db.CurrentVersion(ctx, video)
		if err != nil || len(cur.Keys) < 2 {
			t.Fatalf("version %d keys: %+v %v", i+1, cur.Keys, err)
		}
		keyIDs = append(keyIDs, cur.KeyIDs()...)
	}
	if len(h.objects("hls/"+video+"/")) == 0 {
		t.Fatal("no objects to delete")
	}

	rdb := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(t)})
	t.Cleanup(func() { rdb.Close() })
	sub := rdb.Subscribe(ctx, deletions.Channel)
	t.Cleanup(func() { sub.Close() })
	if _, err := sub.Receive(ctx); err != nil { // the subscription is live
		t.Fatal(err)
	}

	d, err := h.client.Delete(ctx, video)
	if err != nil || d.Already || !slices.Equal(d.Versions, []int{1, 2}) || d.KeysDestroyed != len(keyIDs) || d.NoticeErr != nil {
		t.Fatalf("delete: %+v %v", d, err)
	}
	t.Log(d.Message())
	if !strings.Contains(d.Message(), "deleted video "+video+": ") || !strings.Contains(d.Message(), "keys destroyed in 2 versions") {
		t.Errorf("message: %s", d.Message())
	}
	for _, id := range keyIDs {
		if _, _, _, err := h.db.KeyByID(ctx, id); !errors.Is(err, catalog.ErrNotFound) {
			t.Errorf("key %s after delete: %v", id, err)
		}
	}
	if n, _ := h.db.VersionStates(ctx, video); n["deleted"] != 2 || len(n) != 1 {
		t.Fatalf("versions: %v", n)
	}
	if _, err := h.db.CurrentVersion(ctx, video); !errors.Is(err, catalog.ErrNotFound) {
		t.Fatalf("current version: %v", err)
	}
	got := map[string]bool{}
	for len(got) < 2 {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		msg, err := sub.ReceiveMessage(rctx)
		cancel()
		if err != nil {
			t.Fatalf("deletion notices %v: %v", got, err)
		}
		if strings.HasPrefix(msg.Payload, video+"/") {
			got[msg.Payload] = true
		}
	}
	if !got[deletions.Message(video, 1)] || !got[deletions.Message(video, 2)] {
		t.Errorf("notices: %v", got)
	}

	// One GC pass removes every object, whatever its grace (the keys are
	// already gone; the grace is for retired versions still playing).
	collector, err := gc.New(gc.Config{Grace: time.Hour}, h.db, h.store, nil, h.log)
	if err != nil {
		t.Fatal(err)
	}
	gres, err := collector.RunOnce(ctx)
	if err != nil || gres.Versions != 2 {
		t.Fatalf("gc: %+v %v", gres, err)
	}
	if left := h.objects("hls/" + video + "/"); len(left) != 0 {
		t.Fatalf("%d objects left after GC, e.g. %v", len(left), slices.Collect(maps.Keys(left)))
	}

	if _, err := h.client.EnqueueTranscode(ctx, jobs.TranscodeRequest{VideoID: video, Source: "uploads/dl-a.mp4", Force: true}); !errors.Is(err, jobs.ErrDeleted) ||
		!strings.Contains(err.Error(), "video "+video+" was deleted") || !strings.Contains(err.Error(), "use a new id") {
		t.Fatalf("enqueue after delete: %v", err)
	}
	again, err := h.client.Delete(ctx, video)
	if err != nil || !again.Already || !strings.Contains(again.Message(), "already deleted") {
		t.Fatalf("second delete: %+v %v", again, err)
	}
	if _, err := h.client.Delete(ctx, testenv.Name("nope")); !errors.Is(err, jobs.ErrNoSuchVideo) {
		t.Fatalf("delete of an unknown video: %v", err)
	}
}

// TestDeleteDuringAttempt deletes a video while its job encodes: the
// attempt stops, and once it has, a GC pass removes every object and none
// appears afterwards.
func TestDeleteDuringAttempt(t *testing.T) {
	h := newHarness(t, ctlFS(t))
	ctx := context.Background()
	long := testenv.MakeSource(t, t.TempDir(), testenv.Source{Width: 320, Height: 240, Seconds: 120, FPS: 15})
	video := testenv.Name("dr")
	h.upload("uploads/dr.mp4", long)
	h.startWorker()
	res, err := h.client.EnqueueTranscode(ctx, jobs.TranscodeRequest{VideoID: video, Source: "uploads/dr.mp4", Force: false})
	if err != nil {
		t.Fatal(err)
	}
	h.ctlUntil("a segment to be stored", 2*time.Minute, func() bool { return len(h.objects("hls/"+video+"/")) > 0 })
	finished := ctlFinished(h)
	d, err := h.client.Delete(ctx, video)
	if err != nil || len(d.Jobs) != 1 || d.Jobs[0].Was != "processing" || d.Jobs[0].Task != jobs.TaskStopped {
		t.Fatalf("delete: %+v %v", d, err)
	}
	collector, err := gc.New(gc.Config{Grace: time.Hour}, h.db, h.store, nil, h.log)
	if err != nil {
		t.Fatal(err)
	}
	// That GC never purges the version of an attempt still winding down
	// is checked where it can be without a race: internal/catalog
	// TestDeleteVideo.
	h.ctlUntil("the attempt to end", 30*time.Second, func() bool { return finished(res.TaskID) })
	gres, err := collector.RunOnce(ctx)
	if err != nil || gres.Versions != 1 {
		t.Fatalf("gc: %+v %v", gres, err)
	}
	if left := h.objects("hls/" + video + "/"); len(left) != 0 {
		t.Fatalf("%d objects left after GC", len(left))
	}
	// The worker has moved on (a later video published): still nothing.
	h.ctlPublishOther(testenv.MakeSource(t, t.TempDir(), testenv.Source{Width: 320, Height: 240, Seconds: 1}))
	if left := h.objects("hls/" + video + "/"); len(left) != 0 {
		t.Fatalf("%d objects appeared after GC", len(left))
	}
	if n, _ := h.db.VersionStates(ctx, video); n["deleted"] != 1 || len(n) != 1 {
		t.Fatalf("versions: %v", n)
	}
}

func ctlFS(t *testing.T) storage.Store {
	t.Helper()
	fs, err := storage.NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return fs
}

func ctlInspector(h *harness) *asynq.Inspector {
	i := asynq.NewInspector(h.redis)
	h.t.Cleanup(func() { i.Close() })
	return i
}

// TestOvertakenAttemptLeavesTheJob: an attempt interrupted after a newer
// attempt of its job started (the source enqueued again right after a
// cancel) leaves the job to the newer one instead of requeueing it.
func TestOvertakenAttemptLeavesTheJob(t *testing.T) {
	h := newHarness(t, ctlFS(t))
	long := testenv.MakeSource(t, t.TempDir(), testenv.Source{Width: 320, Height: 240, Seconds: 120, FPS: 15})
	video := testenv.Name("ov")
	h.upload("uploads/ov.mp4", long)
	taskID := jobs.TaskID(video, "uploads/ov.mp4")
	if _, _, err := h.db.UpsertJob(context.Background(), video, "uploads/ov.mp4", taskID); err != nil {
		t.Fatal(err)
	}
	task, err := jobs.NewTranscodeTask(jobs.TranscodePayload{VideoID: video, Source: "uploads/ov.mp4"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.pipe.ProcessTask(ctx, task) }()
	h.ctlUntil("the first attempt to encode", 2*time.Minute, func() bool {
		j, err := h.client.Job(context.Background(), taskID)
		return err == nil && j.Progress > 0
	})
	newer, err := h.db.StartAttempt(context.Background(), taskID)
	if err != nil || newer.Job.Attempts != 2 {
		t.Fatalf("newer attempt: %+v %v", newer, err)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted attempt: %v", err)
	}
	if j, _ := h.client.Job(context.Background(), taskID); j.State != jobs.Processing || j.Attempts != 2 {
		t.Fatalf("job after the old attempt ended: %+v, want the newer attempt's (processing)", j)
	}
}
