// Package deletions carries "this version was deleted and its keys
// destroyed" from the process that deleted it (the garbage collector, in a
// worker) to every running gateway, over Redis pub/sub, so that a gateway
// drops its cached copy of the version's keys at once instead of serving a
// shredded key until its cache entry expires.
//
// A message is "{video}/{version}" on Channel. Pub/sub delivers only to
// gateways subscribed at that moment: a gateway that was not (restarting,
// Redis unreachable) relies on its cache TTL, and drops its whole cache
// when it subscribes again (gateway.Server.WatchDeletions).
package deletions

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/hlsvault/hlsvault/internal/ids"
)

// Channel is the Redis pub/sub channel of deletion notices.
const Channel = "hlsvault:versions:deleted"

// Publisher publishes deletion notices; gc.Notifier.
type Publisher struct {
	rdb     redis.UniversalClient
	channel string
}

// NewPublisher publishes on channel (Channel, or another for tests).
func NewPublisher(rdb redis.UniversalClient, channel string) (*Publisher, error) {
	if rdb == nil || channel == "" {
		return nil, errors.New("deletions: a Redis client and a channel are required")
	}
	return &Publisher{rdb: rdb, channel: channel}, nil
}

// VersionDeleted tells every subscribed gateway that the version is gone.
func (p *Publisher) VersionDeleted(ctx context.Context, video string, version int) error {
	if err := p.rdb.Publish(ctx, p.channel, Message(video, version)).Err(); err != nil {
		return fmt.Errorf("deletions: publish %s v%d: %w", video, version, err)
	}
	return nil
}

// Message is the notice of one deleted version.
func Message(video string, version int) string {
	return video + "/" + strconv.Itoa(version)
}

// Parse reads a notice.
func Parse(msg string) (video string, version int, err error) {
	video, v, ok := strings.Cut(msg, "/")
	n, convErr := strconv.Atoi(v)
	if !ok || convErr != nil || n < 1 || ids.ValidateVideoID(video) != nil {
		return "", 0, fmt.Errorf("deletions: bad notice %q: want video/version", msg)
	}
	return video, n, nil
}
