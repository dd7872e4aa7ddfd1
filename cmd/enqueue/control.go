package main

import (
	"context"
	"fmt"
	"io"

	"github.com/hlsvault/hlsvault/internal/catalog"
)

// Usage of the operator's controls (commands table in main.go).
const (
	cancelUsage = "enqueue cancel --video ID [flags]\n" +
		"  Cancel the video's queued or processing job: nothing more is published, a running ffmpeg is stopped,\n" +
		"  the task is removed (or archived) and not retried. The current version, if any, stays."
	deleteUsage = "enqueue delete --video ID [flags]\n" +
		"  Delete the video by crypto-shredding: every content key of every version is destroyed at once, so nothing\n" +
		"  plays from that moment; its objects are removed by the next GC pass. The id cannot be used again."
)

// isControl reports whether sub is one of the commands runControl runs.
func isControl(sub string) bool { return sub == "cancel" || sub == "delete" }

// runControl runs `enqueue cancel` or `enqueue delete` and prints what was
// done.
func runControl(ctx context.Context, sub string, c Config, db *catalog.DB, stdout io.Writer) error {
	if err := db.Migrate(ctx); err != nil {
		return err
	}
	client, err := newClient(c, db)
	if err != nil {
		return err
	}
	defer client.Close()
	if sub == "cancel" {
		res, err := client.Cancel(ctx, c.Video)
		if res.Jobs != nil {
			fmt.Fprintln(stdout, res.Message())
		}
		return err
	}
	res, err := client.Delete(ctx, c.Video)
	if !res.DeletedAt.IsZero() { // committed, even if stopping a task failed
		fmt.Fprintln(stdout, res.Message())
	}
	return err
}
