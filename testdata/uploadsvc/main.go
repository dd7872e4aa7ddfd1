// Command uploadsvc is the upload service's side of hlsvault, from its own
// module: enqueue a video whose upload is already in the worker's storage,
// wait until it is published, and read its status.
//
//	uploadsvc VIDEO_ID SOURCE_OBJECT '{"upload_id":"u-42"}'
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/hlsvault/hlsvault/jobs"
)

func main() {
	if len(os.Args) != 4 {
		log.Fatal("usage: uploadsvc VIDEO_ID SOURCE_OBJECT METADATA_JSON")
	}
	video, source, metadata := os.Args[1], os.Args[2], os.Args[3]
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	// The worker's own settings: its catalog, its queue and its prefix.
	c, err := jobs.Open(ctx, jobs.Options{
		DatabaseURL: os.Getenv("DATABASE_URL"),
		RedisURL:    os.Getenv("REDIS_URL"),
		QueuePrefix: os.Getenv("QUEUE_PREFIX"),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	res, err := c.EnqueueTranscode(ctx, jobs.TranscodeRequest{
		VideoID:  video,
		Source:   source,
		Priority: jobs.PriorityHigh,
		Metadata: json.RawMessage(metadata), // returned in every status and event
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res.Message())

	// Pushed by PostgreSQL NOTIFY: returns as soon as the worker publishes.
	st, err := c.Wait(ctx, video)
	if err != nil {
		log.Fatal(err)
	}
	if st.State != jobs.Published {
		log.Fatalf("video %s: %s: %s", video, st.State, st.Job.Error)
	}

	st, err = c.Status(ctx, video)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("state=%s version=%d master=%s renditions=%d task=%s took=%s\n", st.State, st.Current.Number,
		st.Current.Master, len(st.Current.Renditions), st.Job.TaskID, st.Job.Duration().Round(time.Millisecond))
	fmt.Printf("metadata=%s\n", st.Job.Metadata)
}
