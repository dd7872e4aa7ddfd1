package gateway

import (
	"context"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/hlsvault/hlsvault/internal/deletions"
	"github.com/hlsvault/hlsvault/internal/testenv"
	"github.com/hlsvault/hlsvault/internal/testenv/fixtures"
	"github.com/hlsvault/hlsvault/jobs"
	"github.com/hlsvault/hlsvault/playback"
)

// TestDeletedVideoStopsPlaying: from jobs.Client.Delete on, a running
// gateway that had the video's key and playlists cached serves none of
// them (the deletion notice, not the cache TTL, ends them).
func TestDeletedVideoStopsPlaying(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, fixtures.FS(t), envOptions{cfg: func(c *Config) { c.KeyCacheTTL = time.Hour }})
	wctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { e.srv.WatchDeletions(wctx, e.rdb, deletions.Channel); close(done) }()
	t.Cleanup(func() { stop(); <-done })
	waitSubscribed(t, e.rdb, deletions.Channel)

	video := testenv.Name("del")
	v := e.publish(video, 8*time.Second, 100)
	tok := e.token(video, "viewer", playback.NewSessionID(), time.Hour)
	paths := []string{"/v1/videos/" + video + "/master.m3u8", "/v1/videos/" + video + "/240p/index.m3u8?v=1", "/v1/keys/" + v.KeyID}
	for _, p := range paths {
		if r := e.get(withToken(p, tok)); r.code != 200 {
			t.Fatalf("%s before delete: %d %s", p, r.code, r.body)
		}
	}
	client, err := jobs.New(e.db.Pool(), asynq.RedisClientOpt{Addr: testenv.RedisAddr(t)}, jobs.ClientConfig{Queues: jobs.QueueNames(testenv.Name("q"))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	res, err := client.Delete(ctx, video)
	if err != nil || res.KeysDestroyed != 1 || res.NoticeErr != nil {
		t.Fatalf("delete: %+v %v", res, err)
	}
	// The notice is asynchronous; allow it a moment, far below the TTL.
	deadline := time.Now().Add(2 * time.Second)
	for _, p := range paths {
		var r response
		for {
			if r = e.get(withToken(p, tok)); r.code == 404 || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if r.code != 404 {
			t.Errorf("%s after delete: %d %s, want 404", p, r.code, r.body)
		}
	}
}
