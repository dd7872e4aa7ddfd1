// Package gc removes what no video points to any more: versions retired by a
// newer one once a grace period has passed (players that loaded the old
// playlist keep playing until then), versions that lost a race, and the
// debris of crashed or failed attempts. It never touches a current version.
package gc

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/hlsvault/hlsvault/internal/catalog"
	"github.com/hlsvault/hlsvault/internal/storage"
)

// Defaults for Config fields left zero.
const (
	GraceDefault     = 24 * time.Hour
	IntervalDefault  = 15 * time.Minute
	TimeoutDefault   = time.Hour
	BatchSizeDefault = 100
)

// lockKey is the advisory lock that lets one collector among many workers
// work at a time, on versions and legacy objects alike.
const lockKey = "hlsvault-gc"

// Config tunes a Collector.
type Config struct {
	Grace     time.Duration // must exceed the longest job attempt
	Interval  time.Duration // between passes of Run
	Timeout   time.Duration // of one pass
	BatchSize int           // versions or legacy titles per query
	// Legacy, when set, is the second step of every pass: the legacy
	// objects of re-encrypted titles, under the same lock and grace.
	Legacy LegacyPurger
}

// LegacyPurger removes the legacy objects of at most limit titles
// re-encrypted more than grace ago (backfill.Purger). It is declared here so
// that gc needs nothing of backfill.
type LegacyPurger interface {
	PurgeLegacy(ctx context.Context, grace time.Duration, limit int) (titles, objects int, err error)
}

// Notifier tells the running gateways that a version was deleted and its
// keys destroyed, so that they stop serving their cached copy of the keys
// at once (deletions.Publisher, on Redis). It is declared here so that gc
// needs nothing of Redis.
type Notifier interface {
	VersionDeleted(ctx context.Context, video string, version int) error
}

// Collector is the garbage collector. Several workers may run one each: an
// advisory lock lets one work at a time.
type Collector struct {
	cfg    Config
	db     *catalog.DB
	store  storage.Store
	notify Notifier
	log    *slog.Logger
}

// New builds a Collector. notify is told of every version deleted, after
// the transaction that deleted it and its keys has committed; nil tells
// nobody (then gateways drop a destroyed key only when their cache entry
// expires).
func New(cfg Config, db *catalog.DB, store storage.Store, notify Notifier, log *slog.Logger) (*Collector, error) {
	cfg.Grace = cmp.Or(cfg.Grace, GraceDefault)
	cfg.Interval = cmp.Or(cfg.Interval, IntervalDefault)
	cfg.Timeout = cmp.Or(cfg.Timeout, TimeoutDefault)
	cfg.BatchSize = cmp.Or(cfg.BatchSize, BatchSizeDefault)
	switch {
	case cfg.Grace < 0:
		return nil, fmt.Errorf("gc: grace %v is negative", cfg.Grace)
	case cfg.Interval < 0:
		return nil, fmt.Errorf("gc: interval %v is negative", cfg.Interval)
	case cfg.Timeout < 0:
		return nil, fmt.Errorf("gc: timeout %v is negative", cfg.Timeout)
	case cfg.BatchSize < 0:
		return nil, fmt.Errorf("gc: batch size %d is negative", cfg.BatchSize)
	}
	return &Collector{cfg: cfg, db: db, store: store, notify: notify, log: log.With("component", "gc")}, nil
}

// Result counts what one pass did.
type Result struct {
	// Ran is false when another collector held the lock and this pass did
	// nothing.
	Ran      bool
	Versions int // versions whose objects were removed
	Objects  int
	Bytes    int64
	// LegacyTitles counts the re-encrypted titles whose legacy objects
	// (LegacyObjects of them) were removed.
	LegacyTitles  int
	LegacyObjects int
}

func (r Result) did() bool { return r.Versions > 0 || r.LegacyTitles > 0 }

// Run collects every Interval until ctx is done.
func (c *Collector) Run(ctx context.Context) {
	t := time.NewTicker(c.cfg.Interval)
	defer t.Stop()
	for {
		if _, err := c.RunOnce(ctx); err != nil && ctx.Err() == nil {
			c.log.Error("garbage collection failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// RunOnce does one pass, unless another collector holds the lock: retired
// versions first, then the legacy step.
func (c *Collector) RunOnce(ctx context.Context) (Result, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	var res Result
	ran, err := c.db.TryLock(ctx, lockKey, func(ctx context.Context) error {
		if err := c.versions(ctx, &res); err != nil {
			return err
		}
		return c.legacy(ctx, &res)
	})
	res.Ran = ran
	if err != nil {
		return res, fmt.Errorf("gc: %w", err)
	}
	if res.did() {
		c.log.Info("garbage collected", "versions", res.Versions, "objects", res.Objects, "bytes", res.Bytes,
			"legacy_titles", res.LegacyTitles, "legacy_objects", res.LegacyObjects)
	}
	return res, nil
}

func (c *Collector) versions(ctx context.Context, res *Result) error {
	for {
		doomed, err := c.db.ClaimGarbage(ctx, c.cfg.Grace, c.cfg.BatchSize)
		if err != nil {
			return err
		}
		for _, d := range doomed {
			c.log.Info("version doomed", "video", d.VideoID, "version", d.Version, "was", d.Was)
			// Committed: the keys are gone from the catalog. A notice that
			// does not get through leaves the gateways' cache TTL as the
			// bound, so it does not fail the pass.
			if c.notify != nil {
				if err := c.notify.VersionDeleted(ctx, d.VideoID, d.Version); err != nil {
					c.log.Warn("deletion notice not sent; gateways drop the key when their cache entry expires",
						"video", d.VideoID, "version", d.Version, "err", err)
				}
			}
		}
		if len(doomed) < c.cfg.BatchSize {
			break
		}
	}
	// Purge every deleted version with objects left, including those of a
	// pass that crashed half-way and those of a deleted video (see
	// catalog.DeleteVideo), once no attempt can still write to them.
	for {
		todo, err := c.db.Unpurged(ctx, c.cfg.Grace, c.cfg.BatchSize)
		if err != nil {
			return err
		}
		for _, d := range todo {
			n, b, err := c.purge(ctx, d.Prefix)
			res.Objects += n
			res.Bytes += b
			if err != nil {
				return err
			}
			if err := c.db.MarkPurged(ctx, d.VideoID, d.Version); err != nil {
				return err
			}
			res.Versions++
		}
		if len(todo) < c.cfg.BatchSize {
			return nil
		}
	}
}

func (c *Collector) legacy(ctx context.Context, res *Result) error {
	if c.cfg.Legacy == nil {
		return nil
	}
	for {
		titles, objects, err := c.cfg.Legacy.PurgeLegacy(ctx, c.cfg.Grace, c.cfg.BatchSize)
		res.LegacyTitles += titles
		res.LegacyObjects += objects
		if err != nil {
			return fmt.Errorf("legacy purge: %w", err)
		}
		if titles < c.cfg.BatchSize {
			return nil
		}
	}
}

func (c *Collector) purge(ctx context.Context, prefix string) (int, int64, error) {
	if prefix == "" || prefix[len(prefix)-1] != '/' {
		return 0, 0, errors.New("refusing to purge a prefix without a trailing slash: " + prefix)
	}
	var (
		names []string
		bytes int64
	)
	err := c.store.List(ctx, prefix, func(o storage.ObjectInfo) error {
		names = append(names, o.Name)
		bytes += o.Size
		return nil
	})
	if err != nil {
		return 0, 0, err
	}
	for i, n := range names {
		if err := c.store.Delete(ctx, n); err != nil {
			return i, bytes, err
		}
	}
	return len(names), bytes, nil
}
