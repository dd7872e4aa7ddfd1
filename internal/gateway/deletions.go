package gateway

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/hlsvault/hlsvault/internal/deletions"
)

// WatchDeletions subscribes to deletion notices (package deletions) on
// channel and forgets each deleted version at once (Forget), until ctx is
// done. It reconnects on its own. While it is not subscribed, notices are
// lost and the cache TTL (KeyCacheTTL) is the bound; so each time it
// (re)subscribes it drops every cached key and playlist.
func (s *Server) WatchDeletions(ctx context.Context, rdb redis.UniversalClient, channel string) {
	const maxBackoff = 5 * time.Second
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		ps := rdb.Subscribe(ctx, channel)
		if _, err := ps.Receive(ctx); err != nil {
			_ = ps.Close()
			if ctx.Err() != nil {
				return
			}
			s.log.Warn("deletion notices: cannot subscribe; cached keys expire after the cache TTL", "err", err, "retry_in", backoff.String())
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, maxBackoff)
			continue
		}
		backoff = 100 * time.Millisecond
		// A read on the subscription does not end with ctx: closing does.
		stopClose := context.AfterFunc(ctx, func() { _ = ps.Close() })
		s.forgetAll()
		s.log.Debug("deletion notices: subscribed", "channel", channel)
		for {
			msg, err := ps.ReceiveMessage(ctx)
			if err != nil {
				if ctx.Err() == nil {
					s.log.Warn("deletion notices: subscription lost; resubscribing", "err", err)
				}
				break
			}
			video, version, err := deletions.Parse(msg.Payload)
			if err != nil {
				s.log.Warn("deletion notices: ignored", "err", err)
				continue
			}
			s.Forget(video, version)
		}
		stopClose()
		_ = ps.Close()
	}
}
