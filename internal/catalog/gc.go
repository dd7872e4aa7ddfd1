package catalog

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Doomed is a version whose objects are to be removed from storage.
type Doomed struct {
	VideoID string
	Version int
	Prefix  string
	Was     string // the state it had: published (retired), superseded or pending
}

// ClaimGarbage marks as deleted, and destroys the keys of, at most limit
// versions that no video points to any more and that are older than grace:
// versions retired by a newer one, versions that lost a race, and the
// debris of attempts that crashed or failed. A pending version whose job is
// still processing it is never claimed. The caller then removes the
// objects of every version returned by Unpurged.
//
// Marking first means that the version can never be published afterwards:
// Publish only publishes a pending version.
func (db *DB) ClaimGarbage(ctx context.Context, grace time.Duration, limit int) ([]Doomed, error) {
	var out []Doomed
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `
			with doomed as (
				select v.video_id, v.version, v.state
				from versions v
				join videos vid on vid.id = v.video_id
				where v.state in ('published', 'superseded', 'pending')
				  and v.version is distinct from vid.current_version
				  and case v.state
					when 'published'  then v.retired_at < now() - $1::interval
					when 'superseded' then v.created_at < now() - $1::interval
					else v.created_at < now() - $1::interval and not exists (
						select 1 from jobs j
						where j.id = v.job_id and j.state = 'processing'
						  and v.version = (select max(v2.version) from versions v2 where v2.job_id = j.id))
				  end
				order by v.created_at
				limit $2
				for update of v skip locked
			)
			update versions v set state = 'deleted', deleted_at = now()
			from doomed d
			where v.video_id = d.video_id and v.version = d.version
			returning v.video_id, v.version, v.prefix, d.state`, grace, limit)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Doomed, error) {
			var d Doomed
			return d, r.Scan(&d.VideoID, &d.Version, &d.Prefix, &d.Was)
		})
		if err != nil {
			return err
		}
		for _, d := range out {
			// Crypto-shredding: without its key a version's segments are
			// noise, even if removing an object later fails.
			if _, err := tx.Exec(ctx, `delete from content_keys where video_id = $1 and version = $2`, d.VideoID, d.Version); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("catalog: claim garbage: %w", err)
	}
	return out, nil
}

// Unpurged returns deleted versions whose objects may still be in storage
// and that no attempt may still write to: a version of a job that is
// processing, or cancelled with its attempt not yet stopped (finished_at
// null, see FinishCancelled), waits until the attempt has ended, so that
// no object lands after the purge. A worker that died mid-attempt never
// records the end: such a version is purged anyway once it has been
// deleted for longer than stale (the longest an attempt can run, the GC
// grace).
func (db *DB) Unpurged(ctx context.Context, stale time.Duration, limit int) ([]Doomed, error) {
	rows, err := db.pool.Query(ctx, `select v.video_id, v.version, v.prefix from versions v
		where v.state = 'deleted' and v.purged_at is null
		  and (v.deleted_at < now() - $2::interval or not exists (
			select 1 from jobs j
			where j.id = v.job_id
			  and (j.state = 'processing' or (j.state = 'cancelled' and j.finished_at is null))
			  and v.version = (select max(v2.version) from versions v2 where v2.job_id = j.id)))
		order by v.deleted_at limit $1`, limit, stale)
	if err != nil {
		return nil, fmt.Errorf("catalog: unpurged versions: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Doomed, error) {
		d := Doomed{Was: "deleted"}
		return d, r.Scan(&d.VideoID, &d.Version, &d.Prefix)
	})
	if err != nil {
		return nil, fmt.Errorf("catalog: unpurged versions: %w", err)
	}
	return out, nil
}

// MarkPurged records that a deleted version has no object left.
func (db *DB) MarkPurged(ctx context.Context, videoID string, version int) error {
	_, err := db.pool.Exec(ctx, `update versions set purged_at = now() where video_id = $1 and version = $2 and state = 'deleted'`,
		videoID, version)
	if err != nil {
		return fmt.Errorf("catalog: mark %s v%d purged: %w", videoID, version, err)
	}
	return nil
}

// TryLock runs fn while holding the session advisory lock key, if no other
// session holds it; it reports whether fn ran. Only one garbage collector
// among many workers works at a time.
func (db *DB) TryLock(ctx context.Context, key string, fn func(context.Context) error) (bool, error) {
	conn, err := db.pool.Acquire(ctx)
	if err != nil {
		return false, fmt.Errorf("catalog: lock %s: %w", key, err)
	}
	// A session lock outlives Release: destroy the connection instead of
	// returning it to the pool with the lock held.
	defer func() { conn.Conn().Close(context.Background()); conn.Release() }()
	var ok bool
	if err := conn.QueryRow(ctx, `select pg_try_advisory_lock(hashtext($1))`, key).Scan(&ok); err != nil {
		return false, fmt.Errorf("catalog: lock %s: %w", key, err)
	}
	if !ok {
		return false, nil
	}
	return true, fn(ctx)
}
