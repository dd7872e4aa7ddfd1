package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hlsvault/hlsvault/internal/catalog"
	"github.com/hlsvault/hlsvault/internal/config"
	"github.com/hlsvault/hlsvault/internal/testenv"
	"github.com/hlsvault/hlsvault/internal/testenv/fixtures"
	"github.com/hlsvault/hlsvault/jobs"
)

// onlineEnv is enqueue's environment on a fresh catalog and its own
// queues; no worker runs: the tests play its part through the catalog.
func onlineEnv(t *testing.T) (map[string]string, *catalog.DB) {
	db, url := fixtures.CatalogURL(t)
	return map[string]string{
		"DATABASE_URL": url,
		"REDIS_URL":    "redis://" + testenv.RedisAddr(t) + "/0",
		"STORAGE_URL":  "file://" + t.TempDir(),
		"QUEUE_PREFIX": testenv.Name("q"),
	}, db
}

func publishAttempt(t *testing.T, db *catalog.DB, a catalog.Attempt) {
	t.Helper()
	ok, err := db.Publish(context.Background(), catalog.PublishParams{
		Attempt: a, Master: a.Prefix + "master.m3u8", Duration: 2,
		Renditions: []catalog.Rendition{{Name: "240p", Playlist: a.Prefix + "240p/index.m3u8", Width: 426, Height: 240}},
		Keys:       []catalog.WrappedKey{{KeyID: fmt.Sprintf("k_%032x", a.Job.ID), KEKID: "kek_test", Wrapped: make([]byte, 45)}},
	})
	if err != nil || !ok {
		t.Fatalf("publish: %v %v", ok, err)
	}
}

// TestTranscodeOptionsStatusList: the per-job flags reach the job, status
// prints the public status with its task id, times and duration, and list
// shows videos as a table or JSON, filtered and paged.
func TestTranscodeOptionsStatusList(t *testing.T) {
	env, db := onlineEnv(t)
	ctx := context.Background()
	out, err := runWith(env, "transcode", "--video", "o1", "--source", "uploads/o1.mp4", "--priority", "high", "--preset", "faster",
		"--ladder", "240p:300k", "--metadata", `{"upload_id":"u-1"}`)
	if err != nil || !strings.Contains(out, "enqueued video o1") {
		t.Fatalf("transcode: %v\n%s", err, out)
	}
	if out, err = runWith(env, "transcode", "--video", "o2", "--source", "uploads/o2.mp4"); err != nil {
		t.Fatalf("transcode o2: %v\n%s", err, out)
	}
	taskID := jobs.TaskID("o1", "uploads/o1.mp4")
	att, err := db.StartAttempt(ctx, taskID)
	if err != nil {
		t.Fatal(err)
	}
	publishAttempt(t, db, att)

	out, err = runWith(env, "status", "--video", "o1")
	var st struct {
		jobs.Status
		DurationSeconds *float64 `json:"duration_seconds"`
	}
	if err != nil || json.Unmarshal([]byte(out), &st) != nil {
		t.Fatalf("status: %v\n%s", err, out)
	}
	j := st.Job
	if st.State != jobs.Published || j == nil || j.TaskID != taskID || j.StartedAt == nil || j.FinishedAt == nil || j.CreatedAt.IsZero() ||
		st.DurationSeconds == nil || *st.DurationSeconds != j.Duration().Round(time.Millisecond).Seconds() ||
		j.Options != (jobs.JobOptions{Ladder: "240p:300k", Preset: "faster", Priority: jobs.PriorityHigh}) || !sameJSON(j.Metadata, `{"upload_id":"u-1"}`) ||
		st.Current == nil || st.Current.Number != 1 {
		t.Fatalf("status:\n%s", out)
	}
	for _, key := range []string{`"task_id"`, `"created_at"`, `"started_at"`, `"finished_at"`, `"duration_seconds"`} {
		if !strings.Contains(out, key) {
			t.Errorf("status lacks %s:\n%s", key, out)
		}
	}

	out, err = runWith(env, "list")
	if err != nil || !strings.Contains(out, "VIDEO") || strings.Index(out, "o1") > strings.Index(out, "o2") ||
		!regexpMatch(`(?m)^o1\s+published\s+1\s+-\s+100\.0%\s+\d{4}-`, out) || !regexpMatch(`(?m)^o2\s+queued\s+-\s+-\s+0\.0%`, out) {
		t.Fatalf("list: %v\n%s", err, out)
	}
	out, err = runWith(env, "list", "--state", "queued", "--json")
	var page jobs.Page
	if err != nil || json.Unmarshal([]byte(out), &page) != nil || len(page.Videos) != 1 || page.Videos[0].VideoID != "o2" || page.Next != "" {
		t.Fatalf("list --state queued --json: %v\n%s", err, out)
	}
	out, err = runWith(env, "list", "--limit", "1")
	_, next, ok := strings.Cut(out, "more: enqueue list --after ")
	if err != nil || !ok || !strings.Contains(out, "o1") {
		t.Fatalf("list --limit 1: %v\n%s", err, out)
	}
	if out, err = runWith(env, "list", "--limit", "1", "--after", strings.TrimSpace(next)); err != nil || !strings.Contains(out, "o2") || strings.Contains(out, "o1") {
		t.Fatalf("second page: %v\n%s", err, out)
	}
	if out, err = runWith(env, "list", "--state", "deleted", "--json"); err != nil || !strings.Contains(out, `"videos": []`) {
		t.Fatalf("no deleted videos: %v\n%s", err, out)
	}

	// Bad options are refused before anything is enqueued, named by flag.
	_, err = runWith(env, "transcode", "--video", "o3", "--source", "uploads/o3.mp4", "--priority", "urgent", "--metadata", "[1]",
		"--preset", "speedy", "--ladder", "big", "--segments", "mp4")
	var ce *config.Error
	if !errors.As(err, &ce) || len(ce.Problems) != 5 {
		t.Fatalf("bad options: %v", err)
	}
	for _, f := range []string{`--priority="urgent"`, `--metadata="[1]"`, `--preset="speedy"`, `--ladder="big"`, `--segments="mp4"`} {
		if !strings.Contains(err.Error(), f) {
			t.Errorf("bad options: %v lacks %s", err, f)
		}
	}
	if _, err := runWith(env, "list", "--state", "lost", "--limit", "0"); !errors.As(err, &ce) || len(ce.Problems) != 2 {
		t.Errorf("bad list flags: %v", err)
	}
	if out, err := runWith(env, "status", "--video", "o3"); err == nil || !strings.Contains(err.Error(), "no job was ever enqueued") {
		t.Errorf("status of a refused video: %v\n%s", err, out)
	}
}

// TestWaitShowsStageElapsedETA: --wait prints a line per change as the
// catalog announces it: the stage, the elapsed time, "ETA -" before any
// progress and an estimate after; then the published version. Each change
// is made when the line of the one before has been read.
func TestWaitShowsStageElapsedETA(t *testing.T) {
	env, db := onlineEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := run(ctx, []string{"transcode", "--video", "w1", "--source", "uploads/w1.mp4", "--wait"},
			func(k string) string { return env[k] }, pw, io.Discard)
		pw.CloseWithError(io.EOF)
		done <- err
	}()
	taskID := jobs.TaskID("w1", "uploads/w1.mp4")
	var (
		lines []string
		att   catalog.Attempt
		err   error
	)
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		line := sc.Text()
		lines = append(lines, line)
		switch {
		case strings.HasPrefix(line, "queued"):
			if att, err = db.StartAttempt(ctx, taskID); err != nil {
				t.Fatal(err)
			}
		case strings.HasPrefix(line, "processing") && strings.Contains(line, " 0.0%"):
			// What the worker records while it encodes (the stage is the
			// pipeline's to set; here it is written directly).
			if _, err := db.Pool().Exec(ctx, `update jobs set stage = 'encode', progress = 40 where id = $1`, att.Job.ID); err != nil {
				t.Fatal(err)
			}
		case strings.HasPrefix(line, "processing"):
			publishAttempt(t, db, att)
		}
	}
	if err := <-done; err != nil {
		t.Fatalf("--wait: %v\n%s", err, strings.Join(lines, "\n"))
	}
	out := strings.Join(lines, "\n")
	for _, re := range []string{
		`(?m)^enqueued video w1`,
		`(?m)^queued\s+-\s+0\.0%  elapsed \d+s  ETA -$`,
		`(?m)^processing -\s+0\.0%  elapsed \d+s  ETA -$`,
		`(?m)^processing encode\s+40\.0%  elapsed \d+s  ETA \d+s$`,
		`(?m)^published\s+-\s+100\.0%  elapsed \d+s  ETA -$`,
		`(?m)^published video w1 version 1$`,
	} {
		if !regexpMatch(re, out) {
			t.Errorf("--wait output lacks %s:\n%s", re, out)
		}
	}
}

func TestJobLine(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	started := t0.Add(-30 * time.Second)
	for _, tc := range []struct {
		job  jobs.Job
		want string
	}{
		{jobs.Job{State: jobs.Queued, EnqueuedAt: t0.Add(-5 * time.Second)}, "queued     -          0.0%  elapsed 5s  ETA -"},
		{jobs.Job{State: jobs.Processing, Stage: jobs.StageDownload, StartedAt: &started}, "processing download   0.0%  elapsed 30s  ETA -"},
		{jobs.Job{State: jobs.Processing, Stage: jobs.StageEncode, StartedAt: &started, Progress: 25}, "processing encode    25.0%  elapsed 30s  ETA 1m30s"},
		{jobs.Job{State: jobs.Queued, StartedAt: &started, Progress: 0, Error: "timeout"}, "queued     -          0.0%  elapsed 30s  ETA -  (retrying after: timeout)"},
	} {
		st := jobs.Status{State: tc.job.State, Job: &tc.job}
		if got := jobLine(st, t0); got != tc.want {
			t.Errorf("jobLine:\n got %q\nwant %q", got, tc.want)
		}
	}
	if got := fmtDuration(2*time.Hour + 3*time.Minute + 4*time.Second); got != "2h03m04s" {
		t.Errorf("fmtDuration: %s", got)
	}
}

func regexpMatch(re, s string) bool { return regexp.MustCompile(re).MatchString(s) }

func sameJSON(a json.RawMessage, b string) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return false
	}
	p, _ := json.Marshal(x)
	q, _ := json.Marshal(y)
	return string(p) == string(q)
}
