package jobs_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hlsvault/hlsvault/internal/catalog"
	"github.com/hlsvault/hlsvault/internal/testenv"
	"github.com/hlsvault/hlsvault/internal/testenv/fixtures"
	"github.com/hlsvault/hlsvault/jobs"
)

// env is a client on a fresh catalog and its own queues, with no worker:
// the tests play the worker's part through the catalog.
type env struct {
	db     *catalog.DB
	url    string
	client *jobs.Client
	queues jobs.Queues
	insp   *asynq.Inspector
}

func newEnv(t *testing.T, cfg jobs.ClientConfig) *env {
	t.Helper()
	db, url := fixtures.CatalogURL(t)
	cfg.Queues = jobs.QueueNames(testenv.Name("jc"))
	c, err := jobs.New(db.Pool(), fixtures.Redis(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	insp := asynq.NewInspector(fixtures.Redis(t))
	t.Cleanup(func() { insp.Close() })
	return &env{db: db, url: url, client: c, queues: cfg.Queues, insp: insp}
}

// publish plays the worker publishing attempt a.
func (e *env) publish(t *testing.T, a catalog.Attempt) {
	t.Helper()
	ok, err := e.db.Publish(context.Background(), catalog.PublishParams{
		Attempt: a, Master: a.Prefix + "master.m3u8", Duration: 2,
		Renditions: []catalog.Rendition{{Name: "240p", Playlist: a.Prefix + "240p/index.m3u8", Width: 426, Height: 240}},
		Keys:       []catalog.WrappedKey{{KeyID: fmt.Sprintf("k_%016x%016x", a.Job.ID, a.Version), KEKID: "kek_test", Wrapped: make([]byte, 45)}},
	})
	if err != nil || !ok {
		t.Fatalf("publish: %v %v", ok, err)
	}
}

// TestWaitIsPushed: Watch sees each change the worker makes (processing,
// progress, published) as it is committed, with a fallback read far beyond
// the test's deadline, so only the notifications can wake it. Each change
// is made from the callback of the one before: no sleep, no race.
func TestWaitIsPushed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jobs.ClientConfig{WaitFallback: time.Hour})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := e.client.EnqueueTranscode(ctx, jobs.TranscodeRequest{VideoID: "w1", Source: "uploads/w1.mp4",
		Metadata: json.RawMessage(`{"k": "v"}`)})
	if err != nil {
		t.Fatal(err)
	}
	// Another video's changes wake the listener but must not end the wait.
	if _, err := e.client.EnqueueTranscode(ctx, jobs.TranscodeRequest{VideoID: "other", Source: "uploads/o.mp4"}); err != nil {
		t.Fatal(err)
	}
	var (
		seen []string
		att  catalog.Attempt
	)
	st, err := e.client.Watch(ctx, "w1", func(st jobs.Status) {
		seen = append(seen, fmt.Sprintf("%s %.0f", st.State, st.Job.Progress))
		switch {
		case st.State == jobs.Queued:
			if _, err := e.db.StartAttempt(ctx, jobs.TaskID("other", "uploads/o.mp4")); err != nil {
				t.Errorf("start other: %v", err)
			}
			if att, err = e.db.StartAttempt(ctx, res.TaskID); err != nil {
				t.Errorf("start: %v", err)
			}
		case st.State == jobs.Processing && st.Job.Progress == 0:
			if err := e.db.SetProgress(ctx, att.Job.ID, 50); err != nil {
				t.Error(err)
			}
		case st.State == jobs.Processing:
			e.publish(t, att)
		}
	})
	if err != nil {
		t.Fatalf("watch: %v (seen %v)", err, seen)
	}
	if want := []string{"queued 0", "processing 0", "processing 50", "published 100"}; strings.Join(seen, ",") != strings.Join(want, ",") {
		t.Errorf("seen %v, want %v", seen, want)
	}
	if st.State != jobs.Published || st.Current == nil || st.Current.Number != 1 || st.Current.Master != "hls/w1/v1/master.m3u8" ||
		len(st.Current.Renditions) != 1 || st.Job.FinishedAt == nil || st.Job.StartedAt == nil || string(st.Job.Metadata) != `{"k": "v"}` {
		t.Fatalf("final status: %+v job %+v", st, st.Job)
	}
	// A final state returns at once.
	if st, err := e.client.Wait(ctx, "w1"); err != nil || st.State != jobs.Published {
		t.Fatalf("wait on a published video: %+v %v", st, err)
	}
}

// TestWaitEndsOnFailureAndDeletion: a final failure and a deletion end a
// wait; a failed attempt that will be retried does not.
func TestWaitEndsOnFailureAndDeletion(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jobs.ClientConfig{WaitFallback: time.Hour})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := e.client.EnqueueTranscode(ctx, jobs.TranscodeRequest{VideoID: "f1", Source: "uploads/f1.mp4"})
	if err != nil {
		t.Fatal(err)
	}
	var att catalog.Attempt
	retried := false
	st, err := e.client.Watch(ctx, "f1", func(st jobs.Status) {
		switch {
		case st.State == jobs.Queued && !retried:
			att, err = e.db.StartAttempt(ctx, res.TaskID)
			if err == nil {
				err = e.db.FailAttempt(ctx, att.Job.ID, "transient", false)
			}
			if err != nil {
				t.Error(err)
			}
			retried = true
		case st.State == jobs.Queued:
			if st.Job.Error != "transient" {
				t.Errorf("retrying job: %+v", st.Job)
			}
			if err := e.db.FailAttempt(ctx, att.Job.ID, "bad input: not a video", true); err != nil {
				t.Error(err)
			}
		}
	})
	if err != nil || st.State != jobs.Failed || st.Job.Error != "bad input: not a video" || st.Job.FinishedAt == nil {
		t.Fatalf("failed: %+v %v", st, err)
	}

	if _, err := e.client.EnqueueTranscode(ctx, jobs.TranscodeRequest{VideoID: "d1", Source: "uploads/d1.mp4"}); err != nil {
		t.Fatal(err)
	}
	pool := e.db.Pool()
	st, err = e.client.Watch(ctx, "d1", func(st jobs.Status) {
		if st.State == jobs.Queued {
			// What the control helper's delete does to the row.
			if _, err := pool.Exec(ctx, `update videos set deleted_at = now() where id = 'd1'`); err != nil {
				t.Error(err)
			}
		}
	})
	if err != nil || st.State != jobs.Deleted || st.Current != nil {
		t.Fatalf("deleted: %+v %v", st, err)
	}
}

func TestWaitUnknownVideo(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jobs.ClientConfig{})
	if _, err := e.client.Wait(context.Background(), "never"); !errors.Is(err, jobs.ErrNotFound) {
		t.Fatalf("wait for a video never enqueued: %v", err)
	}
	if _, err := e.client.Status(context.Background(), "never"); !errors.Is(err, jobs.ErrNotFound) {
		t.Fatalf("status of a video never enqueued: %v", err)
	}
}

// TestEnqueueRefusesBadOptions: each bad option is refused before
// anything is recorded or queued.
func TestEnqueueRefusesBadOptions(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jobs.ClientConfig{})
	ok := jobs.TranscodeRequest{VideoID: "v", Source: "uploads/v.mp4"}
	for name, mod := range map[string]func(*jobs.TranscodeRequest){
		"ladder":         func(r *jobs.TranscodeRequest) { r.Ladder = "720:2800k" },
		"preset":         func(r *jobs.TranscodeRequest) { r.Preset = "speedy" },
		"priority":       func(r *jobs.TranscodeRequest) { r.Priority = "urgent" },
		"metadata json":  func(r *jobs.TranscodeRequest) { r.Metadata = json.RawMessage(`{"a":`) },
		"metadata array": func(r *jobs.TranscodeRequest) { r.Metadata = json.RawMessage(`["a"]`) },
		"metadata null":  func(r *jobs.TranscodeRequest) { r.Metadata = json.RawMessage(`null`) },
		"metadata size": func(r *jobs.TranscodeRequest) {
			r.Metadata = json.RawMessage(`{"a":"` + strings.Repeat("x", jobs.MaxMetadataBytes) + `"}`)
		},
		"video": func(r *jobs.TranscodeRequest) { r.VideoID = "../x" },
	} {
		r := ok
		mod(&r)
		if _, err := e.client.EnqueueTranscode(context.Background(), r); !errors.Is(err, jobs.ErrInvalidPayload) {
			t.Errorf("%s: err = %v, want ErrInvalidPayload", name, err)
		}
	}
	if _, err := e.client.Status(context.Background(), "v"); !errors.Is(err, jobs.ErrNotFound) {
		t.Errorf("a refused request left a job: %v", err)
	}
	// 4 KiB exactly, once compacted, is accepted.
	r := ok
	r.Metadata = json.RawMessage(`{ "a" : "` + strings.Repeat("x", jobs.MaxMetadataBytes-8) + `" }`)
	if _, err := e.client.EnqueueTranscode(context.Background(), r); err != nil {
		t.Errorf("4 KiB of metadata: %v", err)
	}
}

// TestEnqueueOptions: the options reach the task's queue and payload and
// are stored with the job; a forced re-enqueue replaces them.
func TestEnqueueOptions(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jobs.ClientConfig{})
	ctx := context.Background()
	for _, tc := range []struct {
		video    string
		priority jobs.Priority
		queue    string
	}{
		{"p-high", jobs.PriorityHigh, e.queues.TranscodeHigh},
		{"p-normal", "", e.queues.Transcode},
		{"p-low", jobs.PriorityLow, e.queues.TranscodeLow},
	} {
		res, err := e.client.EnqueueTranscode(ctx, jobs.TranscodeRequest{VideoID: tc.video, Source: "uploads/a.mp4",
			Ladder: "480p:1400k, 240p:300k:64k", Preset: "faster", Priority: tc.priority, Metadata: json.RawMessage(`{"n": 1}`)})
		if err != nil || res.Outcome != jobs.Enqueued {
			t.Fatalf("%s: %+v %v", tc.video, res, err)
		}
		info, err := e.insp.GetTaskInfo(tc.queue, res.TaskID)
		if err != nil {
			t.Fatalf("%s: not in %s: %v", tc.video, tc.queue, err)
		}
		p, err := jobs.ParseTranscodePayload(info.Payload)
		want := jobs.TranscodePayload{VideoID: tc.video, Source: "uploads/a.mp4", Ladder: "480p:1400k, 240p:300k:64k", Preset: "faster",
			Priority: jobs.Priority(strings.TrimPrefix(tc.video, "p-")), Metadata: json.RawMessage(`{"n":1}`)}
		if err != nil || fmt.Sprint(p) != fmt.Sprint(want) {
			t.Errorf("%s: payload %+v %v, want %+v", tc.video, p, err, want)
		}
		if o := res.Job.Options; o.Ladder != want.Ladder || o.Preset != "faster" || o.Priority != want.Priority {
			t.Errorf("%s: stored options %+v", tc.video, o)
		}
		again, err := e.client.EnqueueTranscode(ctx, jobs.TranscodeRequest{VideoID: tc.video, Source: "uploads/a.mp4", Priority: jobs.PriorityLow})
		if err != nil || again.Outcome != jobs.AlreadyQueued {
			t.Errorf("%s: second enqueue: %+v %v", tc.video, again, err)
		}
	}
	// Published, then forced with other options: a new run with those.
	res, _ := e.client.EnqueueTranscode(ctx, jobs.TranscodeRequest{VideoID: "p-high", Source: "uploads/a.mp4"})
	att, err := e.db.StartAttempt(ctx, res.TaskID)
	if err != nil {
		t.Fatal(err)
	}
	e.publish(t, att)
	// What the worker's completion does to the task.
	if err := e.insp.DeleteTask(e.queues.TranscodeHigh, res.TaskID); err != nil {
		t.Fatal(err)
	}
	res, err = e.client.EnqueueTranscode(ctx, jobs.TranscodeRequest{VideoID: "p-high", Source: "uploads/a.mp4", Force: true,
		Priority: jobs.PriorityLow, Metadata: json.RawMessage(`{"n": 2}`)})
	if err != nil || res.Outcome != jobs.Enqueued || res.Job.Options.Priority != jobs.PriorityLow || res.Job.Options.Ladder != "" ||
		string(res.Job.Metadata) != `{"n": 2}` || res.Job.State != jobs.Queued || res.Job.FinishedAt != nil {
		t.Fatalf("forced: %+v %v", res, err)
	}
	if _, err := e.insp.GetTaskInfo(e.queues.TranscodeLow, res.TaskID); err != nil {
		t.Fatalf("forced task not in the low queue: %v", err)
	}
}

// TestList: newest change first, filtered by state, paged without gaps
// or repeats.
func TestList(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jobs.ClientConfig{})
	ctx := context.Background()
	var want []string
	for i := range 7 {
		v := fmt.Sprintf("l%d", i)
		res, err := e.client.EnqueueTranscode(ctx, jobs.TranscodeRequest{VideoID: v, Source: "uploads/" + v + ".mp4"})
		if err != nil {
			t.Fatal(err)
		}
		if i%3 == 0 {
			att, err := e.db.StartAttempt(ctx, res.TaskID)
			if err != nil {
				t.Fatal(err)
			}
			e.publish(t, att)
		}
		want = append([]string{v}, want...)
	}
	if _, err := e.db.Pool().Exec(ctx, `update videos set deleted_at = now(), current_version = null, updated_at = now() where id = 'l3'`); err != nil {
		t.Fatal(err)
	}
	want = append([]string{"l3"}, removed(want, "l3")...)

	var got []string
	after := ""
	for pages := 0; ; pages++ {
		p, err := e.client.List(ctx, jobs.ListOptions{Limit: 3, After: after})
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range p.Videos {
			got = append(got, v.VideoID)
		}
		if p.Next == "" {
			if pages != 2 {
				t.Errorf("%d pages of 3 for 7 videos", pages+1)
			}
			break
		}
		after = p.Next
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("listed %v, want %v", got, want)
	}
	p, err := e.client.List(ctx, jobs.ListOptions{State: jobs.Published})
	if err != nil || len(p.Videos) != 2 || p.Videos[0].VideoID != "l6" || p.Videos[1].VideoID != "l0" || p.Videos[0].Version != 1 || p.Next != "" {
		t.Fatalf("published: %+v %v", p, err)
	}
	p, err = e.client.List(ctx, jobs.ListOptions{State: jobs.Deleted})
	if err != nil || len(p.Videos) != 1 || p.Videos[0].VideoID != "l3" || p.Videos[0].Version != 0 {
		t.Fatalf("deleted: %+v %v", p, err)
	}
	if _, err := e.client.List(ctx, jobs.ListOptions{State: "lost"}); !errors.Is(err, jobs.ErrInvalidPayload) {
		t.Errorf("bad state: %v", err)
	}
	if _, err := e.client.List(ctx, jobs.ListOptions{After: "garbage"}); !errors.Is(err, jobs.ErrInvalidPayload) {
		t.Errorf("bad cursor: %v", err)
	}
}

func removed(s []string, x string) []string {
	var out []string
	for _, v := range s {
		if v != x {
			out = append(out, v)
		}
	}
	return out
}

// TestOpenErrors: every misconfiguration is an error from Open that says
// what is wrong.
func TestOpenErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, dbURL := fixtures.CatalogURL(t)
	redisURL := "redis://" + testenv.RedisAddr(t) + "/0"
	unmigrated := testenv.DatabaseURL(t)
	for name, tc := range map[string]struct {
		o    jobs.Options
		want string
		is   error
	}{
		"no urls":          {jobs.Options{}, "DatabaseURL and RedisURL are both required", nil},
		"bad redis url":    {jobs.Options{DatabaseURL: dbURL, RedisURL: "localhost:6379"}, "RedisURL", nil},
		"redis down":       {jobs.Options{DatabaseURL: dbURL, RedisURL: "redis://127.0.0.1:1/0"}, "Redis unreachable", nil},
		"bad database url": {jobs.Options{DatabaseURL: "postgres://h:port/db", RedisURL: redisURL}, "DATABASE_URL", nil},
		"database down": {jobs.Options{DatabaseURL: "postgres://postgres@127.0.0.1:1/x?sslmode=disable&connect_timeout=2", RedisURL: redisURL},
			"connect", nil},
		"not migrated": {jobs.Options{DatabaseURL: unmigrated, RedisURL: redisURL}, "run worker migrate", jobs.ErrSchema},
	} {
		c, err := jobs.Open(ctx, tc.o)
		if err == nil {
			c.Close()
			t.Errorf("%s: Open succeeded", name)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) || (tc.is != nil && !errors.Is(err, tc.is)) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
	}
	c, err := jobs.Open(ctx, jobs.Options{DatabaseURL: dbURL, RedisURL: redisURL})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}

// TestNewLeavesTheCallersPool: Close of a client made by New leaves the
// caller's pool usable; the schema check names the migration.
func TestNewLeavesTheCallersPool(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, dbURL := fixtures.CatalogURL(t)
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	c, err := jobs.New(pool, fixtures.Redis(t), jobs.ClientConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Check(ctx); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if err := pool.Ping(ctx); err != nil {
		t.Fatalf("the caller's pool after Close: %v", err)
	}
	if _, err := jobs.New(nil, fixtures.Redis(t), jobs.ClientConfig{}); err == nil {
		t.Error("New accepted a nil pool")
	}

	bare, err := pgxpool.New(ctx, testenv.DatabaseURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer bare.Close()
	c, err = jobs.New(bare, fixtures.Redis(t), jobs.ClientConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Check(ctx); !errors.Is(err, jobs.ErrSchema) {
		t.Errorf("check of an unmigrated database: %v", err)
	}
	if _, err := c.Status(ctx, "v"); !errors.Is(err, jobs.ErrSchema) {
		t.Errorf("status on an unmigrated database: %v", err)
	}
}

// TestReTranscodeCarriesSubtitles: a re-transcode that names no sidecar
// subtitles publishes the earlier job's, forced on the same source or
// from a new source (the current version's); DropSubtitles publishes
// none, and what a job publishes with is in its status.
func TestReTranscodeCarriesSubtitles(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jobs.ClientConfig{})
	ctx := context.Background()
	subs := []jobs.Subtitle{{Language: "en", Source: "uploads/c/subs/1.srt"}, {Language: "fr", Name: "Français", Source: "uploads/c/subs/2.vtt"}}
	// enqueue asks for source, checks what the task carries, and plays
	// the worker publishing it.
	enqueue := func(r jobs.TranscodeRequest, want []jobs.Subtitle, carried bool) jobs.EnqueueResult {
		t.Helper()
		r.VideoID = "c"
		res, err := e.client.EnqueueTranscode(ctx, r)
		if err != nil || res.Outcome != jobs.Enqueued {
			t.Fatalf("%s: %+v %v", r.Source, res, err)
		}
		info, err := e.insp.GetTaskInfo(e.queues.Transcode, res.TaskID)
		if err != nil {
			t.Fatal(err)
		}
		p, err := jobs.ParseTranscodePayload(info.Payload)
		if err != nil || fmt.Sprint(p.Subtitles) != fmt.Sprint(want) || fmt.Sprint(res.Job.Subtitles) != fmt.Sprint(want) {
			t.Fatalf("%s: payload subtitles %+v, job's %+v (%v), want %+v", r.Source, p.Subtitles, res.Job.Subtitles, err, want)
		}
		if got := len(res.CarriedSubtitles) > 0; got != carried || (carried && !strings.Contains(res.Message(), "sidecar subtitle")) {
			t.Errorf("%s: carried %+v, message %q", r.Source, res.CarriedSubtitles, res.Message())
		}
		st, err := e.client.Status(ctx, "c")
		if err != nil || fmt.Sprint(st.Job.Subtitles) != fmt.Sprint(want) {
			t.Errorf("%s: status options %+v %v", r.Source, st.Job, err)
		}
		att, err := e.db.StartAttempt(ctx, res.TaskID)
		if err != nil {
			t.Fatal(err)
		}
		e.publish(t, att)
		if err := e.insp.DeleteTask(e.queues.Transcode, res.TaskID); err != nil {
			t.Fatal(err)
		}
		return res
	}
	enqueue(jobs.TranscodeRequest{Source: "uploads/c/a.mp4", Subtitles: subs}, subs, false)
	enqueue(jobs.TranscodeRequest{Source: "uploads/c/a.mp4", Force: true}, subs, true)
	enqueue(jobs.TranscodeRequest{Source: "uploads/c/b.mp4"}, subs, true)
	// New sidecars replace the old ones.
	one := subs[1:]
	enqueue(jobs.TranscodeRequest{Source: "uploads/c/b.mp4", Force: true, Subtitles: one}, one, false)
	enqueue(jobs.TranscodeRequest{Source: "uploads/c/d.mp4"}, one, true)
	enqueue(jobs.TranscodeRequest{Source: "uploads/c/e.mp4", DropSubtitles: true}, nil, false)
	// The current version has none now: nothing to carry.
	enqueue(jobs.TranscodeRequest{Source: "uploads/c/f.mp4"}, nil, false)
	// A no-op carries nothing.
	if res, err := e.client.EnqueueTranscode(ctx, jobs.TranscodeRequest{VideoID: "c", Source: "uploads/c/a.mp4"}); err != nil ||
		res.Outcome != jobs.AlreadyPublished || res.CarriedSubtitles != nil {
		t.Errorf("already published: %+v %v", res, err)
	}
	if _, err := e.client.EnqueueTranscode(ctx, jobs.TranscodeRequest{VideoID: "c", Source: "uploads/c/g.mp4", Subtitles: subs,
		DropSubtitles: true}); !errors.Is(err, jobs.ErrInvalidPayload) {
		t.Errorf("subtitles given and dropped: %v", err)
	}
}
