package catalog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Chunked transcoding (migration 010): one attempt of a transcode job
// fanned out into pieces (video chunks and the audio) that any worker may
// take; see ChunkedJob.

// ErrSuperseded reports a piece of an attempt that is no longer its job's
// latest (the job's coordinator ran again and fanned out anew): its work
// belongs to nobody.
var ErrSuperseded = errors.New("catalog: attempt superseded")

// Piece kinds.
const (
	PieceVideo = "video" // one chunk of the video ladder
	PieceTitle = "title" // the whole title's audio, and the storyboard
)

// ChunkedJob is an attempt that fans out into pieces.
type ChunkedJob struct {
	JobID   int64
	Version int
	// Plan is the pipeline's plan of the pieces, opaque to the catalog.
	Plan json.RawMessage
	// Keys are every content key of the version, wrapped, in period order.
	Keys []WrappedKey
	// Pieces are the pieces' kinds and media durations (seconds), by
	// piece number.
	Pieces   []Piece
	Duration float64 // the source's, seconds
}

// Piece is one task of a chunked attempt.
type Piece struct {
	Kind  string
	Media float64 // seconds of media it encodes, for progress
}

// BeginChunked records a chunked attempt of a processing job, with its
// pieces pending.
func (db *DB) BeginChunked(ctx context.Context, c ChunkedJob) error {
	if err := CheckKeys(c.Keys); err != nil {
		return fmt.Errorf("catalog: begin chunked job %d v%d: %w", c.JobID, c.Version, err)
	}
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `insert into chunked_jobs (job_id, version, plan, pieces, duration_s) values ($1, $2, $3, $4, $5)`,
			c.JobID, c.Version, c.Plan, len(c.Pieces), c.Duration); err != nil {
			return err
		}
		for _, k := range c.Keys {
			if _, err := tx.Exec(ctx, `insert into chunk_keys (job_id, version, period, key_id, kek_id, wrapped, starts_at_s)
				values ($1, $2, $3, $4, $5, $6, $7)`, c.JobID, c.Version, k.Period, k.KeyID, k.KEKID, k.Wrapped, k.Start); err != nil {
				return err
			}
		}
		for i, p := range c.Pieces {
			if _, err := tx.Exec(ctx, `insert into chunks (job_id, version, piece, kind, media_s) values ($1, $2, $3, $4, $5)`,
				c.JobID, c.Version, i, p.Kind, p.Media); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("catalog: begin chunked job %d v%d: %w", c.JobID, c.Version, err)
	}
	return nil
}

// LoadChunked returns a chunked attempt (its plan, keys and pieces). It
// returns ErrNotFound once the attempt's rows are gone (published,
// cancelled, failed or its video deleted).
func (db *DB) LoadChunked(ctx context.Context, jobID int64, version int) (ChunkedJob, error) {
	c := ChunkedJob{JobID: jobID, Version: version}
	err := db.pool.QueryRow(ctx, `select plan, duration_s from chunked_jobs where job_id = $1 and version = $2`, jobID, version).
		Scan(&c.Plan, &c.Duration)
	if errors.Is(err, pgx.ErrNoRows) {
		err = ErrNotFound
	}
	if err != nil {
		return c, fmt.Errorf("catalog: chunked job %d v%d: %w", jobID, version, err)
	}
	rows, err := db.pool.Query(ctx, `select key_id, kek_id, wrapped, period, starts_at_s from chunk_keys
		where job_id = $1 and version = $2 order by period`, jobID, version)
	if err != nil {
		return c, fmt.Errorf("catalog: chunked job %d v%d: keys: %w", jobID, version, err)
	}
	c.Keys, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (WrappedKey, error) {
		var k WrappedKey
		return k, r.Scan(&k.KeyID, &k.KEKID, &k.Wrapped, &k.Period, &k.Start)
	})
	if err != nil {
		return c, fmt.Errorf("catalog: chunked job %d v%d: keys: %w", jobID, version, err)
	}
	rows, err = db.pool.Query(ctx, `select kind, media_s from chunks where job_id = $1 and version = $2 order by piece`, jobID, version)
	if err != nil {
		return c, fmt.Errorf("catalog: chunked job %d v%d: pieces: %w", jobID, version, err)
	}
	c.Pieces, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Piece, error) {
		var p Piece
		return p, r.Scan(&p.Kind, &p.Media)
	})
	if err != nil {
		return c, fmt.Errorf("catalog: chunked job %d v%d: pieces: %w", jobID, version, err)
	}
	return c, nil
}

// ChunkedAttempt is the Attempt a chunked attempt's join publishes.
func (db *DB) ChunkedAttempt(ctx context.Context, jobID int64, version int) (Attempt, error) {
	j, err := scanJob(db.pool.QueryRow(ctx, `select `+jobColumns+` from jobs where id = $1`, jobID))
	if errors.Is(err, pgx.ErrNoRows) {
		err = ErrNotFound
	}
	if err != nil {
		return Attempt{}, fmt.Errorf("catalog: chunked attempt %d v%d: %w", jobID, version, err)
	}
	var prefix string
	if err := db.pool.QueryRow(ctx, `select prefix from versions where video_id = $1 and version = $2 and job_id = $3`,
		j.VideoID, version, jobID).Scan(&prefix); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			err = ErrNotFound
		}
		return Attempt{}, fmt.Errorf("catalog: chunked attempt %d v%d: %w", jobID, version, err)
	}
	return Attempt{Job: j, Version: version, Prefix: prefix}, nil
}

// PieceStart is what StartPiece found.
type PieceStart struct {
	// Done: the piece was finished by an earlier delivery.
	Done bool
	// Attempt counts the piece's deliveries, this one included (1 for the
	// first): a re-run names its objects after it, since stored objects
	// are never overwritten.
	Attempt int
}

// StartPiece begins a delivery of one piece. It returns ErrCancelled when
// the job was cancelled (or its video deleted), ErrSuperseded when the
// attempt is not the job's latest or the job is no longer processing
// (failed, published), and ErrNotFound when the attempt's rows are gone.
func (db *DB) StartPiece(ctx context.Context, jobID int64, version, piece int) (PieceStart, error) {
	var ps PieceStart
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		if err := db.holdAttempt(ctx, tx, jobID, version); err != nil {
			return err
		}
		var state string
		err := tx.QueryRow(ctx, `update chunks set attempts = attempts + case when state = 'done' then 0 else 1 end,
			state = case when state = 'done' then state else 'running' end, updated_at = now()
			where job_id = $1 and version = $2 and piece = $3 returning state, attempts`, jobID, version, piece).Scan(&state, &ps.Attempt)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNotFound
		}
		ps.Done = state == "done"
		return err
	})
	if err != nil {
		return PieceStart{}, fmt.Errorf("catalog: start piece %d of job %d v%d: %w", piece, jobID, version, err)
	}
	return ps, nil
}

// CheckPiece reports, as StartPiece does, whether a piece's work still
// matters: nil while its job is processing this attempt.
func (db *DB) CheckPiece(ctx context.Context, jobID int64, version int) error {
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error { return db.holdAttempt(ctx, tx, jobID, version) })
	if err != nil {
		return fmt.Errorf("catalog: piece of job %d v%d: %w", jobID, version, err)
	}
	return nil
}

// holdAttempt checks, in tx, that the job is processing the attempt.
func (db *DB) holdAttempt(ctx context.Context, tx pgx.Tx, jobID int64, version int) error {
	var (
		state   JobState
		latest  int
		deleted bool
	)
	err := tx.QueryRow(ctx, `select j.state, coalesce((select max(v.version) from versions v where v.job_id = j.id), 0),
		vid.deleted_at is not null
		from jobs j join videos vid on vid.id = j.video_id where j.id = $1`, jobID).Scan(&state, &latest, &deleted)
	if errors.Is(err, pgx.ErrNoRows) {
		return ErrNotFound
	}
	switch {
	case err != nil:
		return err
	case deleted:
		return ErrVideoDeleted
	case state == Cancelled:
		return ErrCancelled
	case state != Processing || latest != version:
		return fmt.Errorf("%w: the job is %s at version %d", ErrSuperseded, state, latest)
	}
	return nil
}

// PieceProgress records how much of its media a piece has encoded and sets
// the job's progress to the sum over its pieces (below 100, which means
// published).
func (db *DB) PieceProgress(ctx context.Context, jobID int64, version, piece int, seconds float64) error {
	_, err := db.pool.Exec(ctx, `with p as (
			update chunks set progress_s = least($4, media_s), updated_at = now()
			where job_id = $1 and version = $2 and piece = $3 and state = 'running'
			returning 1)
		update jobs set progress = least(99, round((100 * (
				select coalesce(sum(case when c.piece = $3 then least($4, c.media_s) when c.state = 'done' then c.media_s else c.progress_s end), 0)
				from chunks c where c.job_id = $1 and c.version = $2)
			/ nullif((select sum(media_s) from chunks where job_id = $1 and version = $2), 0))::numeric, 1)),
			updated_at = now()
		where id = $1 and state = 'processing' and exists (select 1 from p)`, jobID, version, piece, seconds)
	if err != nil {
		return fmt.Errorf("catalog: progress of piece %d of job %d v%d: %w", piece, jobID, version, err)
	}
	return nil
}

// FinishPiece records a piece's result, once, and reports whether every
// piece of the attempt is now done: the completion count, kept in the same
// transaction, so that exactly the deliveries that see it complete go on
// to the join (a redelivery of a finished piece sees it too, and the
// join's task id makes the enqueue happen once).
func (db *DB) FinishPiece(ctx context.Context, jobID int64, version, piece int, result json.RawMessage) (bool, error) {
	var all bool
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		var pieces, done int
		if err := tx.QueryRow(ctx, `select pieces, done from chunked_jobs where job_id = $1 and version = $2 for update`,
			jobID, version).Scan(&pieces, &done); err != nil {
			if errors.Is(err, pgx.ErrNoRows) {
				return ErrNotFound
			}
			return err
		}
		if err := db.holdAttempt(ctx, tx, jobID, version); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `update chunks set state = 'done', result = $4, progress_s = media_s, updated_at = now()
			where job_id = $1 and version = $2 and piece = $3 and state <> 'done'`, jobID, version, piece, result)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 1 {
			done++
			if _, err := tx.Exec(ctx, `update chunked_jobs set done = $3 where job_id = $1 and version = $2`, jobID, version, done); err != nil {
				return err
			}
		}
		all = done == pieces
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("catalog: finish piece %d of job %d v%d: %w", piece, jobID, version, err)
	}
	return all, nil
}

// PieceResults returns every piece's result, by piece number; an error
// if one is not done.
func (db *DB) PieceResults(ctx context.Context, jobID int64, version int) ([]json.RawMessage, error) {
	rows, err := db.pool.Query(ctx, `select piece, state, result from chunks where job_id = $1 and version = $2 order by piece`, jobID, version)
	if err != nil {
		return nil, fmt.Errorf("catalog: results of job %d v%d: %w", jobID, version, err)
	}
	var out []json.RawMessage
	for rows.Next() {
		var (
			piece  int
			state  string
			result json.RawMessage
		)
		if err := rows.Scan(&piece, &state, &result); err != nil {
			return nil, fmt.Errorf("catalog: results of job %d v%d: %w", jobID, version, err)
		}
		if state != "done" {
			rows.Close()
			return nil, fmt.Errorf("catalog: results of job %d v%d: piece %d is %s", jobID, version, piece, state)
		}
		out = append(out, result)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("catalog: results of job %d v%d: %w", jobID, version, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("catalog: results of job %d v%d: %w", jobID, version, ErrNotFound)
	}
	return out, nil
}

// DropChunked deletes a chunked attempt's rows, its wrapped keys with
// them: once published they are the version's (content_keys), and an
// attempt that ended without publishing needs them no more.
func (db *DB) DropChunked(ctx context.Context, jobID int64, version int) error {
	if _, err := db.pool.Exec(ctx, `delete from chunked_jobs where job_id = $1 and version = $2`, jobID, version); err != nil {
		return fmt.Errorf("catalog: drop chunked job %d v%d: %w", jobID, version, err)
	}
	return nil
}
