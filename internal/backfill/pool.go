package backfill

import (
	"context"
	"fmt"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/hlsvault/hlsvault/internal/packager"
)

// Defaults of Converter's bounds.
const (
	defaultConcurrency = 16
	// Titles converted at once (several batches in one worker) share
	// this many objects in flight, the per-title bound times two: enough
	// to keep the link busy while one title waits on its slowest object,
	// few enough that the buffers stay a few MiB.
	defaultSharedFactor = 2
)

// slots is the bound shared by every title a Converter converts at once: a
// counting semaphore, taken once per object in flight.
type slots struct {
	once sync.Once
	ch   chan struct{}
}

func (s *slots) get(n int) chan struct{} {
	s.once.Do(func() { s.ch = make(chan struct{}, n) })
	return s.ch
}

func (c *Converter) shared() chan struct{} {
	n := c.MaxInFlight
	if n <= 0 {
		n = defaultSharedFactor * c.concurrency()
	}
	return c.slots.get(n)
}

// copyAll streams every object through the packager into storage and
// reads each back and verifies it as soon as it is stored, on a pool of at
// most Concurrency objects for this title and MaxInFlight across the
// titles this Converter converts at once. Each object in flight holds a
// few working buffers (and, on Azure, its ciphertext when it is small
// enough for one request), whatever the title's length: reads, encryption,
// writes and read-backs of different objects overlap. The first failure
// cancels the others and is returned; the caller then publishes nothing.
func (c *Converter) copyAll(ctx context.Context, v *packager.Version, src Source, tasks []*convTask) error {
	sem := c.shared()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(c.concurrency())
	for _, t := range tasks {
		if gctx.Err() != nil {
			break // a failure: start nothing more
		}
		g.Go(func() error {
			select {
			case sem <- struct{}{}:
			case <-gctx.Done():
				return gctx.Err()
			}
			defer func() { <-sem }()
			if err := c.put(gctx, v, src, t); err != nil {
				return err
			}
			if err := v.Verify(gctx, t.out); err != nil {
				return fmt.Errorf("backfill: %w", err)
			}
			return nil
		})
	}
	return g.Wait()
}
