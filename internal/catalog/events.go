package catalog

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// EventsChannel is the PostgreSQL channel that a transaction recording
// events notifies (migration 008), so the webhook dispatcher is pushed.
const EventsChannel = "hlsvault_events"

// Event is one completion event of the outbox (migration 008): recorded by
// a trigger in the transaction of the change it reports.
type Event struct {
	// ID is the Standard Webhooks message id (msg_…), identical on every
	// delivery attempt and every URL.
	ID      string
	Type    string
	VideoID string // empty for backfill.run.finished
	// Data is the "data" member of the webhook body, a JSON object.
	Data      json.RawMessage
	CreatedAt time.Time
}

// DispatchEvents claims up to limit undispatched events, oldest first, with
// FOR UPDATE SKIP LOCKED (so dispatchers in several workers never take the
// same event), passes them to deliver and, only if deliver succeeds, marks
// them dispatched in the same transaction. A crash after deliver and before
// the commit leaves them undispatched: they are passed again later, so
// deliver must be idempotent (the webhook tasks have deterministic ids).
// It returns how many events were dispatched.
func (db *DB) DispatchEvents(ctx context.Context, limit int, deliver func(context.Context, []Event) error) (int, error) {
	var n int
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `select id, type, coalesce(video_id, ''), data, created_at from events
			where dispatched_at is null order by created_at, id limit $1 for update skip locked`, limit)
		if err != nil {
			return err
		}
		evs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Event, error) {
			var e Event
			err := r.Scan(&e.ID, &e.Type, &e.VideoID, &e.Data, &e.CreatedAt)
			return e, err
		})
		if err != nil || len(evs) == 0 {
			return err
		}
		if err := deliver(ctx, evs); err != nil {
			return err
		}
		ids := make([]string, len(evs))
		for i, e := range evs {
			ids[i] = e.ID
		}
		if _, err := tx.Exec(ctx, `update events set dispatched_at = now() where id = any($1)`, ids); err != nil {
			return err
		}
		n = len(evs)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("catalog: dispatch events: %w", err)
	}
	return n, nil
}

// PruneEvents deletes the events recorded before cutoff (dispatched or
// not: one older than the retention is stale news) and returns how many.
func (db *DB) PruneEvents(ctx context.Context, cutoff time.Time) (int64, error) {
	tag, err := db.pool.Exec(ctx, `delete from events where created_at < $1`, cutoff)
	if err != nil {
		return 0, fmt.Errorf("catalog: prune events: %w", err)
	}
	return tag.RowsAffected(), nil
}

// ListenEvents LISTENs on EventsChannel on a connection of its own, calls
// ready once listening (events recorded before may have been missed: look
// for them then) and notified on every notice, until ctx ends or the
// connection fails (the error; the caller reconnects and polls meanwhile).
func (db *DB) ListenEvents(ctx context.Context, ready, notified func()) error {
	pc, err := db.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("catalog: listen events: %w", err)
	}
	// The session LISTENs: it is never handed back to the pool.
	conn := pc.Hijack()
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "listen "+EventsChannel); err != nil {
		return fmt.Errorf("catalog: listen events: %w", err)
	}
	ready()
	for {
		if _, err := conn.WaitForNotification(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("catalog: listen events: %w", err)
		}
		notified()
	}
}
