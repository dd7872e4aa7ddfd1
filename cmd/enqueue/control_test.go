package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hlsvault/hlsvault/internal/catalog"
	"github.com/hlsvault/hlsvault/internal/config"
	"github.com/hlsvault/hlsvault/internal/testenv"
	"github.com/hlsvault/hlsvault/jobs"
)

// TestCancelAndDeleteCommands drives `enqueue cancel` and `enqueue delete`
// in process, without a worker: a queued job is cancelled (its task
// removed), a published video deleted (its keys destroyed), and the
// answers to doing either twice, to an unknown video and to enqueueing a
// deleted one.
func TestCancelAndDeleteCommands(t *testing.T) {
	ctx := context.Background()
	dbURL := testenv.DatabaseURL(t)
	env := map[string]string{
		"DATABASE_URL": dbURL,
		"REDIS_URL":    "redis://" + testenv.RedisAddr(t) + "/0",
		"STORAGE_URL":  "file://" + t.TempDir(),
		"QUEUE_PREFIX": testenv.Name("q"),
	}
	cli := func(args ...string) (string, error) {
		t.Helper()
		var out, errOut bytes.Buffer
		err := run(ctx, args, func(k string) string { return env[k] }, &out, &errOut)
		return out.String() + errOut.String(), err
	}
	queued := testenv.Name("cq")
	if out, err := cli("transcode", "--video", queued, "--source", "uploads/a.mp4"); err != nil {
		t.Fatalf("transcode: %v\n%s", err, out)
	}
	task := jobs.TaskID(queued, "uploads/a.mp4")
	out, err := cli("cancel", "--video", queued)
	if err != nil || !strings.Contains(out, "cancelled job "+task+" (was queued); nothing will be published; its task was removed from the queue") {
		t.Fatalf("cancel: %v\n%s", err, out)
	}
	if out, err = cli("cancel", "--video", queued); err != nil || !strings.Contains(out, "job "+task+" was already cancelled") {
		t.Fatalf("second cancel: %v\n%s", err, out)
	}
	// A --wait on a job that gets cancelled ends with an error saying so.
	waited := testenv.Name("cw")
	if out, err := cli("transcode", "--video", waited, "--source", "uploads/w.mp4"); err != nil {
		t.Fatalf("transcode: %v\n%s", err, out)
	}
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := run(ctx, []string{"transcode", "--video", waited, "--source", "uploads/w.mp4", "--wait", "--wait-timeout", "1m"},
			func(k string) string { return env[k] }, pw, io.Discard)
		pw.Close()
		done <- err
	}()
	lines := bufio.NewScanner(pr)
	for lines.Scan() && !strings.HasPrefix(lines.Text(), "queued") { // until it waits
	}
	if out, err := cli("cancel", "--video", waited); err != nil {
		t.Fatalf("cancel: %v\n%s", err, out)
	}
	go io.Copy(io.Discard, pr)
	if err := <-done; err == nil || !strings.Contains(err.Error(), "cancelled") {
		t.Fatalf("transcode --wait of a cancelled job: %v", err)
	}

	if out, err = cli("cancel", "--video", "nosuch"); err == nil || config.ExitCode(err) != 1 || !strings.Contains(err.Error(), "video nosuch: no such video") {
		t.Fatalf("cancel of an unknown video: %v\n%s", err, out)
	}

	// A published video with two key periods.
	db, err := catalog.Open(ctx, dbURL, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	video := testenv.Name("dv")
	if _, _, err := db.UpsertJob(ctx, video, "uploads/d.mp4", jobs.TaskID(video, "uploads/d.mp4")); err != nil {
		t.Fatal(err)
	}
	a, err := db.StartAttempt(ctx, jobs.TaskID(video, "uploads/d.mp4"))
	if err != nil {
		t.Fatal(err)
	}
	ks := []catalog.WrappedKey{
		{KeyID: fmt.Sprintf("k_%032x", 1), KEKID: "kek_x", Wrapped: make([]byte, 45)},
		{KeyID: fmt.Sprintf("k_%032x", 2), KEKID: "kek_x", Wrapped: make([]byte, 45), Period: 1, Start: 60},
	}
	if ok, err := db.Publish(ctx, catalog.PublishParams{Attempt: a, Master: a.Prefix + "master.m3u8", Keys: ks}); err != nil || !ok {
		t.Fatalf("publish: %v %v", ok, err)
	}
	if out, err = cli("cancel", "--video", video); err == nil || !strings.Contains(err.Error(), "has no queued or processing job to cancel") ||
		!strings.Contains(err.Error(), "published") {
		t.Fatalf("cancel of a published video: %v\n%s", err, out)
	}
	out, err = cli("delete", "--video", video)
	if err != nil || !strings.Contains(out, "deleted video "+video+": 2 keys destroyed in 1 version; objects are removed by the next GC pass") {
		t.Fatalf("delete: %v\n%s", err, out)
	}
	for _, k := range ks {
		if _, _, _, err := db.KeyByID(ctx, k.KeyID); err == nil {
			t.Errorf("key %s survived the delete", k.KeyID)
		}
	}
	if out, err = cli("delete", "--video", video); err != nil || !strings.Contains(out, "video "+video+" was already deleted") {
		t.Fatalf("second delete: %v\n%s", err, out)
	}
	if out, err = cli("transcode", "--video", video, "--source", "uploads/e.mp4"); err == nil ||
		!strings.Contains(err.Error(), "video "+video+" was deleted") || !strings.Contains(err.Error(), "use a new id") {
		t.Fatalf("transcode of a deleted video: %v\n%s", err, out)
	}
	// A local file for a deleted video is refused before it is uploaded.
	local := filepath.Join(t.TempDir(), "clip.mp4")
	if err := os.WriteFile(local, []byte("not uploaded"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err = cli("transcode", "--video", video, "--source", local); err == nil || !strings.Contains(err.Error(), "nothing was uploaded") {
		t.Fatalf("transcode of a local file for a deleted video: %v\n%s", err, out)
	}
	if uploads, _ := filepath.Glob(filepath.Join(strings.TrimPrefix(env["STORAGE_URL"], "file://"), "uploads", video, "*")); len(uploads) != 0 {
		t.Errorf("uploaded for a deleted video: %v", uploads)
	}
	if out, err = cli("delete", "--video", "nosuch"); err == nil || !strings.Contains(err.Error(), "video nosuch: no such video") {
		t.Fatalf("delete of an unknown video: %v\n%s", err, out)
	}
	if _, err = cli("delete"); err == nil || !strings.Contains(err.Error(), "--video") {
		t.Fatalf("delete without --video: %v", err)
	}
	for args, want := range map[string]string{"help cancel": "usage: enqueue cancel", "delete --help": "crypto-shredding", "help": "enqueue delete --video ID"} {
		if out, err := cli(strings.Fields(args)...); err != nil || !strings.Contains(out, want) {
			t.Errorf("enqueue %s: %v\n%s", args, err, out)
		}
	}
}
