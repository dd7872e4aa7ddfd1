package jobs_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/hlsvault/hlsvault/jobs"
)

// The examples run against the real services and a real worker (see
// TestMain): uploads/example.mp4 is already in the worker's storage.

// Open connects from the worker's own settings; a misconfiguration (a bad
// URL, a service down, a database the worker has not migrated) is an
// error here, not at the first request.
func ExampleOpen() {
	ctx := context.Background()
	c, err := jobs.Open(ctx, jobs.Options{
		DatabaseURL: os.Getenv("DATABASE_URL"),
		RedisURL:    os.Getenv("REDIS_URL"),
		QueuePrefix: os.Getenv("QUEUE_PREFIX"),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	fmt.Println("connected")

	_, err = jobs.Open(ctx, jobs.Options{DatabaseURL: os.Getenv("DATABASE_URL"), RedisURL: "redis://127.0.0.1:1/0"})
	fmt.Println(err != nil)
	// Output:
	// connected
	// true
}

// EnqueueTranscode is idempotent: the same request again is a no-op that
// says so.
func ExampleClient_EnqueueTranscode() {
	ctx := context.Background()
	c, err := jobs.Open(ctx, jobs.Options{DatabaseURL: os.Getenv("DATABASE_URL"), RedisURL: os.Getenv("REDIS_URL"),
		QueuePrefix: os.Getenv("QUEUE_PREFIX")})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	req := jobs.TranscodeRequest{
		VideoID:  "example-enqueue",
		Source:   "uploads/example.mp4",
		Priority: jobs.PriorityHigh,
		Metadata: json.RawMessage(`{"upload_id": "u-1"}`),
	}
	res, err := c.EnqueueTranscode(ctx, req)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res.Outcome, res.TaskID)
	if _, err := c.Wait(ctx, req.VideoID); err != nil {
		log.Fatal(err)
	}
	again, err := c.EnqueueTranscode(ctx, req)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(again.Outcome)
	// Output:
	// enqueued transcode-example-enqueue-e7683e63125b68b5
	// already-published
}

// Wait returns when the job is published (or failed, cancelled, or the
// video deleted). It is pushed by the catalog, so it returns as soon as
// the worker publishes.
func ExampleClient_Wait() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := jobs.Open(ctx, jobs.Options{DatabaseURL: os.Getenv("DATABASE_URL"), RedisURL: os.Getenv("REDIS_URL"),
		QueuePrefix: os.Getenv("QUEUE_PREFIX")})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	if _, err := c.EnqueueTranscode(ctx, jobs.TranscodeRequest{VideoID: "example-wait", Source: "uploads/example.mp4"}); err != nil {
		log.Fatal(err)
	}
	st, err := c.Wait(ctx, "example-wait")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(st.State, st.Current.Number, st.Current.Master)
	// Output:
	// published 1 hls/example-wait/v1/master.m3u8
}

// Status reads a video's state, its latest job (with the caller's
// metadata and the job's options) and the version viewers get.
func ExampleClient_Status() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := jobs.Open(ctx, jobs.Options{DatabaseURL: os.Getenv("DATABASE_URL"), RedisURL: os.Getenv("REDIS_URL"),
		QueuePrefix: os.Getenv("QUEUE_PREFIX")})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	_, err = c.EnqueueTranscode(ctx, jobs.TranscodeRequest{VideoID: "example-status", Source: "uploads/example.mp4",
		Ladder: "120p:100k:48k", Preset: "superfast", Metadata: json.RawMessage(`{"title": "Example"}`)})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := c.Wait(ctx, "example-status"); err != nil {
		log.Fatal(err)
	}
	st, err := c.Status(ctx, "example-status")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(st.State, st.Job.Attempts, string(st.Job.Metadata), st.Job.Options.Ladder, st.Job.Options.Preset)
	for _, r := range st.Current.Renditions {
		fmt.Println(r.Name, r.Height)
	}
	fmt.Println(st.Job.FinishedAt.After(*st.Job.StartedAt))
	// Output:
	// published 1 {"title": "Example"} 120p:100k:48k superfast
	// 120p 120
	// true
}
