package catalog

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Cancelled is the state of a job an operator or the upload service
// cancelled: nothing of it is published and its task is not retried. A
// cancelled job whose finished_at is still null has an attempt that may
// still be running (its worker records finished_at once it has stopped).
const Cancelled JobState = "cancelled"

var (
	// ErrCancelled means the job was cancelled: an attempt must not start,
	// and a finished attempt must not publish.
	ErrCancelled = errors.New("catalog: job cancelled")
	// ErrVideoDeleted means the video was deleted: nothing may be made or
	// published for it again, under that id.
	ErrVideoDeleted = errors.New("catalog: video deleted")
	// ErrNotActive means the video has no queued or processing job to
	// cancel.
	ErrNotActive = errors.New("catalog: no active job")
)

// CancelledJob is a job as a cancellation left it, and the state it had.
type CancelledJob struct {
	Job Job
	// Was is the state before: queued or processing (or cancelled, when it
	// was cancelled before and this call changed nothing).
	Was JobState
}

// Cancellation is what CancelJobs did.
type Cancellation struct {
	// Jobs are the jobs cancelled now; when none was active and the latest
	// job was cancelled before, that job (Already).
	Jobs    []CancelledJob
	Already bool
	// Latest is the video's latest transcode job when there was nothing
	// to cancel (ErrNotActive); zero when it never had one.
	Latest Job
}

// CancelJobs cancels every queued or processing transcode job of the video
// (usually one: the latest request), so that none of them publishes. A
// queued job also gets finished_at, since no attempt of it runs; a
// processing job gets it from its worker once the attempt has stopped
// (FinishCancelled). Backfill jobs are left to their run (enqueue backfill
// cancel).
//
// It returns ErrNotFound for an unknown video and ErrNotActive (with the
// latest job's state in the message) when there is nothing to cancel. A
// video whose latest job is already cancelled is not an error: Already is
// set and that job returned, so that cancelling twice is idempotent and the
// caller can finish removing its task.
func (db *DB) CancelJobs(ctx context.Context, videoID string) (Cancellation, error) {
	var c Cancellation
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		var exists bool
		if err := tx.QueryRow(ctx, `select exists (select 1 from videos where id = $1)`, videoID).Scan(&exists); err != nil {
			return err
		}
		if !exists {
			return ErrNotFound
		}
		// Job rows are locked before anything else, in the order Publish
		// and StartAttempt lock them (job, then video).
		rows, err := tx.Query(ctx, `select id, state from jobs
			where video_id = $1 and kind = 'transcode' and state in ('queued', 'processing')
			order by id for update`, videoID)
		if err != nil {
			return err
		}
		was := map[int64]JobState{}
		var order []int64
		for rows.Next() {
			var (
				id    int64
				state JobState
			)
			if err := rows.Scan(&id, &state); err != nil {
				rows.Close()
				return err
			}
			was[id] = state
			order = append(order, id)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if len(order) == 0 {
			latest, err := scanJob(tx.QueryRow(ctx, `select `+jobColumns+` from jobs
				where video_id = $1 and kind = 'transcode' order by id desc limit 1`, videoID))
			switch {
			case errors.Is(err, ErrNotFound):
				return fmt.Errorf("%w: no job was ever enqueued", ErrNotActive)
			case err != nil:
				return err
			case latest.State == Cancelled:
				c = Cancellation{Jobs: []CancelledJob{{Job: latest, Was: Cancelled}}, Already: true}
				return nil
			}
			c.Latest = latest
			return fmt.Errorf("%w: its latest job %s is %s", ErrNotActive, latest.TaskID, latest.State)
		}
		for _, id := range order {
			j, err := scanJob(tx.QueryRow(ctx, `update jobs set state = 'cancelled', updated_at = now(),
				finished_at = case when state = 'queued' then now() end
				where id = $1 returning `+jobColumns, id))
			if err != nil {
				return err
			}
			c.Jobs = append(c.Jobs, CancelledJob{Job: j, Was: was[id]})
		}
		return nil
	})
	if err != nil {
		return Cancellation{Latest: c.Latest}, fmt.Errorf("catalog: cancel jobs of %s: %w", videoID, err)
	}
	return c, nil
}

// FinishCancelled records that no attempt of a cancelled job runs any more
// (its worker stopped it, or its task was removed before it ran): from
// then on garbage collection may purge the objects of its versions.
func (db *DB) FinishCancelled(ctx context.Context, jobID int64) error {
	_, err := db.pool.Exec(ctx, `update jobs set finished_at = coalesce(finished_at, now()), updated_at = now()
		where id = $1 and state = 'cancelled'`, jobID)
	if err != nil {
		return fmt.Errorf("catalog: finish cancelled job %d: %w", jobID, err)
	}
	return nil
}

// JobState returns the current state of a job and how many attempts it
// has started, for a worker deciding what its interrupted attempt means: a
// cancelled job, or one a newer attempt has taken over (the job enqueued
// again after a cancel, a duplicate delivery), is not its to requeue or
// fail.
func (db *DB) JobState(ctx context.Context, jobID int64) (state JobState, attempts int, err error) {
	err = db.pool.QueryRow(ctx, `select state, attempts from jobs where id = $1`, jobID).Scan(&state, &attempts)
	if errors.Is(err, pgx.ErrNoRows) {
		err = ErrNotFound
	}
	if err != nil {
		return "", 0, fmt.Errorf("catalog: state of job %d: %w", jobID, err)
	}
	return state, attempts, nil
}

// VideoDeletedAt reports when the video was deleted (zero: it was not). It
// returns ErrNotFound for a video the catalog never saw.
func (db *DB) VideoDeletedAt(ctx context.Context, videoID string) (time.Time, error) {
	var at *time.Time
	err := db.pool.QueryRow(ctx, `select deleted_at from videos where id = $1`, videoID).Scan(&at)
	if errors.Is(err, pgx.ErrNoRows) {
		err = ErrNotFound
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("catalog: video %s: %w", videoID, err)
	}
	if at == nil {
		return time.Time{}, nil
	}
	return *at, nil
}

// Deletion is what DeleteVideo did.
type Deletion struct {
	Video     string
	DeletedAt time.Time
	// Already is set when the video had been deleted before (the call then
	// finishes whatever a job recorded since left active).
	Already bool
	// Versions are the versions marked deleted now; Keys the ids of the
	// content keys destroyed now.
	Versions []int
	Keys     []string
	// Jobs are the jobs cancelled now (transcode and backfill).
	Jobs []CancelledJob
}

// deleteAttempts bounds how often DeleteVideo retries its transaction
// after PostgreSQL aborted it to break a deadlock (a job recorded and
// started for the video while it was being deleted).
const deleteAttempts = 3

// DeleteVideo deletes a video by crypto-shredding, in one transaction: the
// video gets deleted_at and loses its current version, every active job is
// cancelled, every version not yet deleted is marked deleted and every
// content key of the video is destroyed. From the commit nothing of it
// plays: the gateway finds neither a current version nor a key. Garbage
// collection then removes the objects (Unpurged), once no attempt of the
// video runs. The id stays taken: the upload service uses a new id.
//
// It returns ErrNotFound for an unknown video; deleting twice is not an
// error (Already).
func (db *DB) DeleteVideo(ctx context.Context, videoID string) (Deletion, error) {
	var (
		d   Deletion
		err error
	)
	for range deleteAttempts {
		d, err = db.deleteVideo(ctx, videoID)
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || (pe.Code != "40P01" && pe.Code != "40001") {
			break
		}
	}
	if err != nil {
		return Deletion{}, fmt.Errorf("catalog: delete video %s: %w", videoID, err)
	}
	return d, nil
}

func (db *DB) deleteVideo(ctx context.Context, videoID string) (Deletion, error) {
	d := Deletion{Video: videoID}
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		// Lock order as in Publish and StartAttempt: the active jobs, then
		// the video. With the video locked no job can be recorded for it
		// (the foreign key) until the commit.
		rows, err := tx.Query(ctx, `select id, state from jobs where video_id = $1 and state in ('queued', 'processing')
			order by id for update`, videoID)
		if err != nil {
			return err
		}
		was := map[int64]JobState{}
		for rows.Next() {
			var (
				id    int64
				state JobState
			)
			if err := rows.Scan(&id, &state); err != nil {
				rows.Close()
				return err
			}
			was[id] = state
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		var deletedAt *time.Time
		err = tx.QueryRow(ctx, `select deleted_at from videos where id = $1 for update`, videoID).Scan(&deletedAt)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		d.Already = deletedAt != nil
		// Jobs recorded between the two locks are cancelled too.
		jrows, err := tx.Query(ctx, `update jobs set state = 'cancelled', updated_at = now(),
			finished_at = case when state = 'queued' then now() end
			where video_id = $1 and state in ('queued', 'processing') returning id, finished_at is null`, videoID)
		if err != nil {
			return err
		}
		type cancelled struct {
			id      int64
			running bool
		}
		cs, err := pgx.CollectRows(jrows, func(r pgx.CollectableRow) (cancelled, error) {
			var c cancelled
			return c, r.Scan(&c.id, &c.running)
		})
		if err != nil {
			return err
		}
		for _, c := range cs {
			j, err := scanJob(tx.QueryRow(ctx, `select `+jobColumns+` from jobs where id = $1`, c.id))
			if err != nil {
				return err
			}
			w, ok := was[c.id]
			if !ok {
				w = Queued
				if c.running {
					w = Processing
				}
			}
			d.Jobs = append(d.Jobs, CancelledJob{Job: j, Was: w})
		}
		if err := tx.QueryRow(ctx, `update videos set deleted_at = coalesce(deleted_at, now()), current_version = null, updated_at = now()
			where id = $1 returning deleted_at`, videoID).Scan(&d.DeletedAt); err != nil {
			return err
		}
		vrows, err := tx.Query(ctx, `update versions set state = 'deleted', deleted_at = now(), retired_at = coalesce(retired_at, now())
			where video_id = $1 and state <> 'deleted' returning version`, videoID)
		if err != nil {
			return err
		}
		if d.Versions, err = pgx.CollectRows(vrows, pgx.RowTo[int]); err != nil {
			return err
		}
		slices.Sort(d.Versions)
		krows, err := tx.Query(ctx, `delete from content_keys where video_id = $1 returning key_id`, videoID)
		if err != nil {
			return err
		}
		d.Keys, err = pgx.CollectRows(krows, pgx.RowTo[string])
		return err
	})
	return d, err
}
