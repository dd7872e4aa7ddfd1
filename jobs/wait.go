package jobs

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// Wait blocks until the video's latest job is published, failed or
// cancelled, or the video is deleted, and returns that status. It is
// pushed, not polled: it LISTENs for the catalog's notifications (one
// dedicated PostgreSQL connection while it waits) and reads the status
// again only when the video changed. A job that is being retried (queued
// with an error) is not final: Wait goes on.
func (c *Client) Wait(ctx context.Context, videoID string) (Status, error) {
	return c.Watch(ctx, videoID, nil)
}

// Watch is Wait calling fn with the first status and then with every
// status that differs from the one before (state, stage, progress, …), for
// a progress display. fn runs on Watch's goroutine; a slow fn delays the
// next read, never loses the last change.
func (c *Client) Watch(ctx context.Context, videoID string, fn func(Status)) (Status, error) {
	// LISTEN first, then read: a change committed in between is both in
	// the read and notified, never lost.
	l, err := c.db.ListenJobs(ctx)
	if err != nil {
		return Status{VideoID: videoID}, fmt.Errorf("jobs: wait for %s: %w", videoID, c.dbErr(err))
	}
	ctx, cancel := context.WithCancel(ctx)
	changed := make(chan struct{}, 1)
	done := make(chan error, 1)
	go func() {
		for {
			id, err := l.Next(ctx)
			if err != nil {
				done <- err
				return
			}
			if id == videoID {
				select {
				case changed <- struct{}{}:
				default: // a read is already due
				}
			}
		}
	}()
	defer func() {
		cancel()
		<-done
		l.Close()
	}()

	var last []byte
	fallback := time.NewTimer(c.cfg.WaitFallback)
	defer fallback.Stop()
	for {
		st, err := c.Status(ctx, videoID)
		if err != nil {
			return st, fmt.Errorf("jobs: wait for %s: %w", videoID, err)
		}
		if b, _ := json.Marshal(st); !bytes.Equal(b, last) {
			last = b
			if fn != nil {
				fn(st)
			}
		}
		if st.State.Final() {
			return st, nil
		}
		select {
		case <-ctx.Done():
			return st, fmt.Errorf("jobs: wait for %s (%s): %w", videoID, st.State, context.Cause(ctx))
		case err := <-done:
			done <- err // for the deferred receive
			return st, fmt.Errorf("jobs: wait for %s: lost the notification connection: %w", videoID, c.dbErr(err))
		case <-changed:
		case <-fallback.C:
		}
		fallback.Reset(c.cfg.WaitFallback)
	}
}
