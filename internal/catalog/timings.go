package catalog

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// JobTiming is when a job was enqueued, began and last changed.
type JobTiming struct {
	VideoID    string
	State      JobState
	Attempts   int
	EnqueuedAt time.Time
	StartedAt  *time.Time
	UpdatedAt  time.Time
}

// QueueWait is how long the job waited before its first attempt began.
func (t JobTiming) QueueWait() time.Duration {
	if t.StartedAt == nil {
		return 0
	}
	return t.StartedAt.Sub(t.EnqueuedAt)
}

// JobTimings returns the timings of the jobs of videos whose id starts with
// prefix, for load measurements.
func (db *DB) JobTimings(ctx context.Context, videoPrefix string) ([]JobTiming, error) {
	rows, err := db.pool.Query(ctx, `select video_id, state, attempts, enqueued_at, started_at, updated_at
		from jobs where starts_with(video_id, $1) order by id`, videoPrefix)
	if err != nil {
		return nil, fmt.Errorf("catalog: job timings: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (JobTiming, error) {
		var t JobTiming
		return t, r.Scan(&t.VideoID, &t.State, &t.Attempts, &t.EnqueuedAt, &t.StartedAt, &t.UpdatedAt)
	})
	if err != nil {
		return nil, fmt.Errorf("catalog: job timings: %w", err)
	}
	return out, nil
}
