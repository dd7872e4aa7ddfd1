// Package gc removes what no video points to any more: versions retired by a
// newer one once a grace period has passed (players that loaded the old
// playlist keep playing until then), versions that lost a race, and the
// debris of crashed or failed attempts. It never touches a current version.
package gc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/hlsvault/hlsvault/internal/catalog"
	"github.com/hlsvault/hlsvault/internal/storage"
)

// Config tunes a Collector.
type Config struct {
	Grace     time.Duration // default 24h; must exceed the longest job attempt
	Interval  time.Duration // default 15m
	BatchSize int           // versions per pass, default 100
}

// Collector is the garbage collector. Several workers may run one each: an
// advisory lock lets one work at a time.
type Collector struct {
	cfg   Config
	db    *catalog.DB
	store storage.Store
	log   *slog.Logger
}

// New builds a Collector.
func New(cfg Config, db *catalog.DB, store storage.Store, log *slog.Logger) *Collector {
	if cfg.Grace <= 0 {
		cfg.Grace = 24 * time.Hour
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 15 * time.Minute
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 100
	}
	return &Collector{cfg: cfg, db: db, store: store, log: log.With("component", "gc")}
}

// Result counts what one pass did.
type Result struct {
	Versions int // versions whose objects were removed
	Objects  int
	Bytes    int64
}

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

// RunOnce does one pass, unless another collector holds the lock.
func (c *Collector) RunOnce(ctx context.Context) (Result, error) {
	var res Result
	ran, err := c.db.TryLock(ctx, "hlsvault-gc", func(ctx context.Context) error {
		for {
			doomed, err := c.db.ClaimGarbage(ctx, c.cfg.Grace, c.cfg.BatchSize)
			if err != nil {
				return err
			}
			for _, d := range doomed {
				c.log.Info("version doomed", "video", d.VideoID, "version", d.Version, "was", d.Was)
			}
			if len(doomed) < c.cfg.BatchSize {
				break
			}
		}
		// Purge every deleted version with objects left, including those of
		// a pass that crashed half-way.
		for {
			todo, err := c.db.Unpurged(ctx, c.cfg.BatchSize)
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
	})
	if err != nil {
		return res, fmt.Errorf("gc: %w", err)
	}
	if ran && res.Versions > 0 {
		c.log.Info("garbage collected", "versions", res.Versions, "objects", res.Objects, "bytes", res.Bytes)
	}
	return res, nil
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
