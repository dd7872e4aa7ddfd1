package catalog

// Backfill runs: the re-encryption of the legacy catalogue, title by title,
// in the background. A run is a row in backfill_runs with its options; each
// candidate title is a row in backfill_items. Items move
//
//	pending → queued (in batch B, a backfill:batch task) → running → done | failed | skipped
//
// and a failed item goes back to pending with retry-failed. Each title that
// is re-encrypted is also an ordinary job (kind 'backfill') with attempts and
// versions, so `enqueue status` and `enqueue verify` see it like any other.

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Backfill run states.
const (
	RunStarting  = "starting" // discovery is recording the items; no worker touches it
	RunRunning   = "running"
	RunPaused    = "paused"
	RunCancelled = "cancelled"
	RunDone      = "done"
)

// Backfill item states.
const (
	ItemPending = "pending"
	ItemQueued  = "queued"
	ItemRunning = "running"
	ItemDone    = "done"
	ItemFailed  = "failed"
	ItemSkipped = "skipped"
)

var (
	// ErrHasKey means the title already has a current version with a key
	// and the run does not re-key it.
	ErrHasKey = errors.New("catalog: title already has a key")
	// ErrRunNotRunning means the run is paused, cancelled or done: no item
	// of it may start.
	ErrRunNotRunning = errors.New("catalog: backfill run is not running")
	// ErrItemNotClaimable means the item is not (or no longer) part of the
	// batch that tried to claim it: done already, or released by a pause.
	ErrItemNotClaimable = errors.New("catalog: backfill item is not in this batch")
	// ErrBadTransition means a run cannot go to the requested state.
	ErrBadTransition = errors.New("catalog: backfill run cannot change to that state")
)

// BackfillRun is one backfill run.
type BackfillRun struct {
	ID          int64           `json:"id"`
	State       string          `json:"state"`
	Options     json.RawMessage `json:"options"`
	BatchSize   int             `json:"batch_size"`
	MaxInflight int             `json:"max_inflight"`
	Fingerprint string          `json:"fingerprint"`
	CreatedAt   time.Time       `json:"created_at"`
	UpdatedAt   time.Time       `json:"updated_at"`
	FinishedAt  *time.Time      `json:"finished_at,omitempty"`
}

const runColumns = `id, state, options, batch_size, max_inflight, fingerprint, created_at, updated_at, finished_at`

func scanRun(row pgx.Row) (BackfillRun, error) {
	var r BackfillRun
	err := row.Scan(&r.ID, &r.State, &r.Options, &r.BatchSize, &r.MaxInflight, &r.Fingerprint, &r.CreatedAt, &r.UpdatedAt, &r.FinishedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return r, ErrNotFound
	}
	return r, err
}

// NewBackfillItem is a candidate found by discovery. State is pending, or
// failed/skipped with the reason in Error when discovery already knows.
type NewBackfillItem struct {
	VideoID     string
	Legacy      string
	State       string
	Error       string
	EstBytes    int64
	EstSegments int
}

// CreateBackfillRun records a run and its items, in state running, in one
// transaction. If a starting, running or paused run with the same
// fingerprint exists, it is returned instead and created is false: starting
// the same backfill twice starts it once. A large catalogue is recorded in
// chunks instead: BeginBackfillRun, AddBackfillItems, FinishBackfillStart.
func (db *DB) CreateBackfillRun(ctx context.Context, options json.RawMessage, fingerprint string, batchSize, maxInflight int,
	items []NewBackfillItem) (run BackfillRun, created bool, err error) {
	err = pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		run, created, err = beginRun(ctx, tx, options, fingerprint, batchSize, maxInflight)
		if err != nil || !created {
			return err
		}
		if err := insertItems(ctx, tx, run.ID, items); err != nil {
			return err
		}
		run, err = scanRun(tx.QueryRow(ctx, `update backfill_runs set state = 'running', updated_at = now()
			where id = $1 returning `+runColumns, run.ID))
		return err
	})
	if err != nil {
		return BackfillRun{}, false, fmt.Errorf("catalog: create backfill run: %w", err)
	}
	return run, created, nil
}

// BeginBackfillRun records a run in state starting, with no items yet. If a
// starting, running or paused run with the same fingerprint exists, it is
// returned instead and created is false; a starting one is an interrupted
// start (or one still in progress, see LockBackfillStart) to continue.
func (db *DB) BeginBackfillRun(ctx context.Context, options json.RawMessage, fingerprint string, batchSize, maxInflight int) (run BackfillRun, created bool, err error) {
	err = pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		run, created, err = beginRun(ctx, tx, options, fingerprint, batchSize, maxInflight)
		return err
	})
	if err != nil {
		return BackfillRun{}, false, fmt.Errorf("catalog: begin backfill run: %w", err)
	}
	return run, created, nil
}

func beginRun(ctx context.Context, tx pgx.Tx, options json.RawMessage, fingerprint string, batchSize, maxInflight int) (BackfillRun, bool, error) {
	// Serialise starts of the same fingerprint; the partial unique index
	// is the backstop.
	if _, err := tx.Exec(ctx, `select pg_advisory_xact_lock(hashtext('hlsvault-backfill-start'), hashtext($1))`, fingerprint); err != nil {
		return BackfillRun{}, false, err
	}
	r, err := scanRun(tx.QueryRow(ctx, `select `+runColumns+` from backfill_runs
		where fingerprint = $1 and state in ('starting', 'running', 'paused') order by id limit 1`, fingerprint))
	if err == nil {
		return r, false, nil
	}
	if !errors.Is(err, ErrNotFound) {
		return r, false, err
	}
	r, err = scanRun(tx.QueryRow(ctx, `insert into backfill_runs (state, options, batch_size, max_inflight, fingerprint)
		values ('starting', $1, $2, $3, $4) returning `+runColumns, options, batchSize, maxInflight, fingerprint))
	return r, err == nil, err
}

// insertItems adds items to a run with one multi-row statement; an item
// already recorded for the same video is left as it is, so that a resumed
// start may offer a chunk again.
func insertItems(ctx context.Context, tx pgx.Tx, runID int64, items []NewBackfillItem) error {
	if len(items) == 0 {
		return nil
	}
	n := len(items)
	var (
		videos, legacies, states = make([]string, n), make([]string, n), make([]string, n)
		msgs                     = make([]*string, n)
		estBytes                 = make([]int64, n)
		estSegs                  = make([]int32, n)
	)
	for i, it := range items {
		videos[i], legacies[i], states[i] = it.VideoID, it.Legacy, cmp.Or(it.State, ItemPending)
		if it.Error != "" {
			msgs[i] = &it.Error
		}
		estBytes[i], estSegs[i] = it.EstBytes, int32(it.EstSegments)
	}
	_, err := tx.Exec(ctx, `insert into backfill_items (run_id, video_id, legacy, state, error, est_bytes, est_segments, finished_at)
		select $1, v, l, s, e, b, g, case when s = 'pending' then null else now() end
		from unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::int[]) as t(v, l, s, e, b, g)
		on conflict (run_id, video_id) do nothing`, runID, videos, legacies, states, msgs, estBytes, estSegs)
	return err
}

// AddBackfillItems records one chunk of a starting run's items and moves
// its discovery cursor to through, the directory of the chunk's last title,
// in one transaction: a start interrupted after it resumes after through
// (and one interrupted before offers the chunk again, which changes
// nothing). It returns ErrBadTransition when the run is no longer starting
// (cancelled meanwhile).
func (db *DB) AddBackfillItems(ctx context.Context, runID int64, items []NewBackfillItem, through string) error {
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		var state string
		if err := tx.QueryRow(ctx, `select state from backfill_runs where id = $1 for update`, runID).Scan(&state); err != nil {
			return err
		}
		if state != RunStarting {
			return fmt.Errorf("run %d is %s: %w", runID, state, ErrBadTransition)
		}
		if err := insertItems(ctx, tx, runID, items); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `update backfill_runs set discovered_through = $2, updated_at = now()
			where id = $1 and (discovered_through is null or discovered_through < $2)`, runID, through)
		return err
	})
	if err != nil {
		return fmt.Errorf("catalog: add items to backfill run %d: %w", runID, err)
	}
	return nil
}

// DiscoveredThrough returns a starting run's discovery cursor ("" before
// its first chunk).
func (db *DB) DiscoveredThrough(ctx context.Context, runID int64) (string, error) {
	var s *string
	if err := db.pool.QueryRow(ctx, `select discovered_through from backfill_runs where id = $1`, runID).Scan(&s); err != nil {
		return "", fmt.Errorf("catalog: backfill run %d: %w", runID, err)
	}
	if s == nil {
		return "", nil
	}
	return *s, nil
}

// FinishBackfillStart ends the start of a run once every chunk is
// recorded: the run becomes running, or, when none of its items is pending
// (every title skipped or broken), it is deleted with its items and
// deleted is true, so that a start with nothing to do records nothing. A
// run that is no longer starting is returned as it is.
func (db *DB) FinishBackfillStart(ctx context.Context, runID int64) (run BackfillRun, deleted bool, err error) {
	err = pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		run, err = scanRun(tx.QueryRow(ctx, `select `+runColumns+` from backfill_runs where id = $1 for update`, runID))
		if err != nil || run.State != RunStarting {
			return err
		}
		var pending bool
		if err := tx.QueryRow(ctx, `select exists (select 1 from backfill_items where run_id = $1 and state = 'pending')`,
			runID).Scan(&pending); err != nil {
			return err
		}
		if !pending {
			if _, err := tx.Exec(ctx, `delete from backfill_items where run_id = $1`, runID); err != nil {
				return err
			}
			_, err = tx.Exec(ctx, `delete from backfill_runs where id = $1`, runID)
			deleted = true
			return err
		}
		run, err = scanRun(tx.QueryRow(ctx, `update backfill_runs set state = 'running', updated_at = now()
			where id = $1 returning `+runColumns, runID))
		return err
	})
	if err != nil {
		return run, false, fmt.Errorf("catalog: finish start of backfill run %d: %w", runID, err)
	}
	return run, deleted, nil
}

// LockBackfillStart takes a session advisory lock for the start of the
// backfill with this fingerprint, on a connection it keeps until release is
// called, so that a second `enqueue backfill start` can tell a start in
// progress (ok false) from an interrupted one, whose process and therefore
// lock are gone.
func (db *DB) LockBackfillStart(ctx context.Context, fingerprint string) (release func(), ok bool, err error) {
	conn, err := db.pool.Acquire(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("catalog: lock backfill start: %w", err)
	}
	if err := conn.QueryRow(ctx, `select pg_try_advisory_lock(hashtext('hlsvault-backfill-starting'), hashtext($1))`,
		fingerprint).Scan(&ok); err != nil || !ok {
		conn.Release()
		if err != nil {
			return nil, false, fmt.Errorf("catalog: lock backfill start: %w", err)
		}
		return nil, false, nil
	}
	return func() {
		// A session lock outlives Release: unlock first, and if that
		// fails, close the connection so the lock cannot leak.
		_, err := conn.Exec(context.WithoutCancel(ctx), `select pg_advisory_unlock(hashtext('hlsvault-backfill-starting'), hashtext($1))`, fingerprint)
		if err != nil {
			conn.Conn().Close(context.WithoutCancel(ctx))
		}
		conn.Release()
	}, true, nil
}

// BackfillStartSummary totals a run's recorded items by state, with the
// estimated segments and bytes of those left to work on: what a start
// reports, a resumed one included.
func (db *DB) BackfillStartSummary(ctx context.Context, runID int64) (counts map[string]int, segments int, bytes int64, err error) {
	counts = map[string]int{}
	rows, err := db.pool.Query(ctx, `select state, count(*)::int, coalesce(sum(est_segments), 0)::int, coalesce(sum(est_bytes), 0)::bigint
		from backfill_items where run_id = $1 group by state`, runID)
	if err != nil {
		return nil, 0, 0, fmt.Errorf("catalog: summary of run %d: %w", runID, err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			s    string
			n, g int
			b    int64
		)
		if err := rows.Scan(&s, &n, &g, &b); err != nil {
			return nil, 0, 0, fmt.Errorf("catalog: summary of run %d: %w", runID, err)
		}
		counts[s] = n
		if s != ItemFailed && s != ItemSkipped {
			segments += g
			bytes += b
		}
	}
	if err := rows.Err(); err != nil {
		return nil, 0, 0, fmt.Errorf("catalog: summary of run %d: %w", runID, err)
	}
	return counts, segments, bytes, nil
}

// BackfillRunByID returns one run.
func (db *DB) BackfillRunByID(ctx context.Context, id int64) (BackfillRun, error) {
	r, err := scanRun(db.pool.QueryRow(ctx, `select `+runColumns+` from backfill_runs where id = $1`, id))
	if err != nil {
		return r, fmt.Errorf("catalog: backfill run %d: %w", id, err)
	}
	return r, nil
}

// ActiveBackfillRun returns the starting, running or paused run with this
// fingerprint, or ErrNotFound.
func (db *DB) ActiveBackfillRun(ctx context.Context, fingerprint string) (BackfillRun, error) {
	r, err := scanRun(db.pool.QueryRow(ctx, `select `+runColumns+` from backfill_runs
		where fingerprint = $1 and state in ('starting', 'running', 'paused') order by id limit 1`, fingerprint))
	if errors.Is(err, ErrNotFound) {
		return r, err
	}
	if err != nil {
		return r, fmt.Errorf("catalog: active backfill run: %w", err)
	}
	return r, nil
}

// LatestBackfillRun returns the most recently created run.
func (db *DB) LatestBackfillRun(ctx context.Context) (BackfillRun, error) {
	r, err := scanRun(db.pool.QueryRow(ctx, `select `+runColumns+` from backfill_runs order by id desc limit 1`))
	if err != nil {
		return r, fmt.Errorf("catalog: latest backfill run: %w", err)
	}
	return r, nil
}

// RunningBackfillRuns returns the runs in state running, oldest first.
func (db *DB) RunningBackfillRuns(ctx context.Context) ([]BackfillRun, error) {
	rows, err := db.pool.Query(ctx, `select `+runColumns+` from backfill_runs where state = 'running' order by id`)
	if err != nil {
		return nil, fmt.Errorf("catalog: running backfill runs: %w", err)
	}
	runs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (BackfillRun, error) { return scanRun(row) })
	if err != nil {
		return nil, fmt.Errorf("catalog: running backfill runs: %w", err)
	}
	return runs, nil
}

// SetBackfillRunState moves a run from one of the states in from to to. It
// returns ErrBadTransition (and the run as it is) when the run is in none of
// them.
func (db *DB) SetBackfillRunState(ctx context.Context, id int64, from []string, to string) (BackfillRun, error) {
	r, err := scanRun(db.pool.QueryRow(ctx, `update backfill_runs set state = $3, updated_at = now(),
			finished_at = case when $3 in ('cancelled', 'done') then now() else null end
		where id = $1 and state = any($2) returning `+runColumns, id, from, to))
	if errors.Is(err, ErrNotFound) {
		cur, err := db.BackfillRunByID(ctx, id)
		if err != nil {
			return cur, err
		}
		return cur, fmt.Errorf("catalog: backfill run %d is %s: %w", id, cur.State, ErrBadTransition)
	}
	if err != nil {
		return r, fmt.Errorf("catalog: backfill run %d: %w", id, err)
	}
	return r, nil
}

// RetryFailedBackfillItems puts the run's failed items back to pending and
// the run back to running (a done run included). Nothing else changes: done
// and skipped items stay as they are. It returns how many were re-queued.
func (db *DB) RetryFailedBackfillItems(ctx context.Context, runID int64) (int, error) {
	var n int
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		r, err := scanRun(tx.QueryRow(ctx, `select `+runColumns+` from backfill_runs where id = $1 for update`, runID))
		if err != nil {
			return err
		}
		if r.State == RunCancelled {
			return fmt.Errorf("run %d is cancelled (start a new run): %w", runID, ErrBadTransition)
		}
		tag, err := tx.Exec(ctx, `update backfill_items set state = 'pending', batch = null, attempts = 0, queued_at = null,
				started_at = null, finished_at = null, updated_at = now()
			where run_id = $1 and state = 'failed'`, runID)
		if err != nil {
			return err
		}
		n = int(tag.RowsAffected())
		if n > 0 && r.State == RunDone {
			_, err = tx.Exec(ctx, `update backfill_runs set state = 'running', finished_at = null, updated_at = now() where id = $1`, runID)
		}
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("catalog: retry failed items of run %d: %w", runID, err)
	}
	return n, nil
}

// BackfillBatch is a batch of items handed to one backfill:batch task.
type BackfillBatch struct {
	RunID int64
	Batch int
	Items []int64
}

// ScheduleBackfillBatches is the driver's step. Under the run's row lock it
// first settles items waiting on a re-transcode job, marks the run done when
// nothing is left, and then, while fewer than max_inflight batches are
// outstanding, moves up to batch_size pending items into a new batch. The
// caller enqueues a task for each returned batch; one it fails to enqueue is
// found again by OutstandingBackfillBatches. Nothing is scheduled unless the
// run is running. The run is returned as it is after the step.
func (db *DB) ScheduleBackfillBatches(ctx context.Context, runID int64) (BackfillRun, []BackfillBatch, error) {
	var (
		run     BackfillRun
		batches []BackfillBatch
	)
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		var err error
		run, err = scanRun(tx.QueryRow(ctx, `select `+runColumns+` from backfill_runs where id = $1 for update`, runID))
		if err != nil {
			return err
		}
		if err := settleRetranscodes(ctx, tx, runID); err != nil {
			return err
		}
		if run.State != RunRunning {
			return nil
		}
		// Neither question counts the run's pending items: on a 100,000-title
		// run every finishing batch asks them, and an index probe
		// (backfill_items_run_state_idx) and the outstanding batches
		// (backfill_items_run_batch_idx, a few batches' items) stay cheap.
		var (
			pending     bool
			outstanding int
		)
		if err := tx.QueryRow(ctx, `select exists (select 1 from backfill_items where run_id = $1 and state = 'pending'),
				(select count(distinct batch) from backfill_items where run_id = $1 and state in ('queued', 'running'))`,
			runID).Scan(&pending, &outstanding); err != nil {
			return err
		}
		if !pending && outstanding == 0 {
			run, err = scanRun(tx.QueryRow(ctx, `update backfill_runs set state = 'done', finished_at = now(), updated_at = now()
				where id = $1 returning `+runColumns, runID))
			return err
		}
		var next int
		if err := tx.QueryRow(ctx, `select next_batch from backfill_runs where id = $1`, runID).Scan(&next); err != nil {
			return err
		}
		for free := run.MaxInflight - outstanding; free > 0 && pending; free-- {
			rows, err := tx.Query(ctx, `update backfill_items set state = 'queued', batch = $2, queued_at = now(), updated_at = now()
				where id in (select id from backfill_items where run_id = $1 and state = 'pending' order by id limit $3)
				returning id`, runID, next, run.BatchSize)
			if err != nil {
				return err
			}
			ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
			if err != nil {
				return err
			}
			if len(ids) == 0 {
				break
			}
			batches = append(batches, BackfillBatch{RunID: runID, Batch: next, Items: ids})
			pending = len(ids) == run.BatchSize
			next++
		}
		_, err = tx.Exec(ctx, `update backfill_runs set next_batch = $2 where id = $1`, runID, next)
		return err
	})
	if err != nil {
		return run, nil, fmt.Errorf("catalog: schedule backfill run %d: %w", runID, err)
	}
	return run, batches, nil
}

// settleRetranscodes finishes the items whose re-transcode job has ended
// (a cancelled one is skipped, not failed: retry-failed must not bring it
// back).
func settleRetranscodes(ctx context.Context, tx pgx.Tx, runID int64) error {
	_, err := tx.Exec(ctx, `update backfill_items i set
			state = case j.state when 'published' then 'done' when 'cancelled' then 'skipped' else 'failed' end,
			version = j.version,
			error = case j.state when 'published' then null
				when 'cancelled' then 'cancelled: the re-transcode job was cancelled or the video deleted'
				else 're-transcode failed: ' || coalesce(j.error, 'unknown error') end,
			finished_at = now(), updated_at = now()
		from jobs j
		where i.run_id = $1 and i.state = 'running' and i.job_id = j.id and j.kind = 'transcode'
			and j.state in ('published', 'failed', 'cancelled')`, runID)
	return err
}

// OutstandingBackfillBatches lists the batches of a run that still have
// items waiting for their task (queued, or running in a task that may have
// died). Items waiting on a re-transcode job are not listed: the transcode
// job, not the batch, carries them.
func (db *DB) OutstandingBackfillBatches(ctx context.Context, runID int64) ([]BackfillBatch, error) {
	rows, err := db.pool.Query(ctx, `select i.batch, array_agg(i.id order by i.id) from backfill_items i
			left join jobs j on j.id = i.job_id
		where i.run_id = $1 and (i.state = 'queued' or (i.state = 'running' and coalesce(j.kind, '') <> 'transcode'))
		group by i.batch order by i.batch`, runID)
	if err != nil {
		return nil, fmt.Errorf("catalog: outstanding batches of run %d: %w", runID, err)
	}
	batches, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (BackfillBatch, error) {
		b := BackfillBatch{RunID: runID}
		err := row.Scan(&b.Batch, &b.Items)
		return b, err
	})
	if err != nil {
		return nil, fmt.Errorf("catalog: outstanding batches of run %d: %w", runID, err)
	}
	return batches, nil
}

// BackfillItem is one title of a run.
type BackfillItem struct {
	ID          int64      `json:"id"`
	RunID       int64      `json:"run_id"`
	VideoID     string     `json:"video"`
	Legacy      string     `json:"legacy,omitempty"`
	State       string     `json:"state"`
	Error       string     `json:"error,omitempty"`
	Batch       int        `json:"batch,omitempty"`
	Attempts    int        `json:"attempts"`
	JobID       int64      `json:"job_id,omitempty"`
	Version     int        `json:"version,omitempty"`
	EstBytes    int64      `json:"est_bytes"`
	EstSegments int        `json:"est_segments"`
	Bytes       int64      `json:"bytes"`
	Segments    int        `json:"segments"`
	StartedAt   *time.Time `json:"started_at,omitempty"`
	FinishedAt  *time.Time `json:"finished_at,omitempty"`
}

const itemColumns = `id, run_id, video_id, legacy, state, coalesce(error, ''), coalesce(batch, 0), attempts, coalesce(job_id, 0),
	coalesce(version, 0), est_bytes, est_segments, bytes, segments, started_at, finished_at`

func scanItem(row pgx.Row) (BackfillItem, error) {
	var it BackfillItem
	err := row.Scan(&it.ID, &it.RunID, &it.VideoID, &it.Legacy, &it.State, &it.Error, &it.Batch, &it.Attempts, &it.JobID,
		&it.Version, &it.EstBytes, &it.EstSegments, &it.Bytes, &it.Segments, &it.StartedAt, &it.FinishedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return it, ErrNotFound
	}
	return it, err
}

// BackfillItems returns a run's items, optionally only those in state.
func (db *DB) BackfillItems(ctx context.Context, runID int64, state string) ([]BackfillItem, error) {
	return db.BackfillItemsLimit(ctx, runID, state, 0)
}

// BackfillItemsLimit is BackfillItems for at most limit items (0: all), in
// id order: status shows the first failures of a large run, not all.
func (db *DB) BackfillItemsLimit(ctx context.Context, runID int64, state string, limit int) ([]BackfillItem, error) {
	var lim *int
	if limit > 0 {
		lim = &limit
	}
	rows, err := db.pool.Query(ctx, `select `+itemColumns+` from backfill_items where run_id = $1 and ($2 = '' or state = $2) order by id limit $3`,
		runID, state, lim)
	if err != nil {
		return nil, fmt.Errorf("catalog: items of run %d: %w", runID, err)
	}
	items, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (BackfillItem, error) { return scanItem(row) })
	if err != nil {
		return nil, fmt.Errorf("catalog: items of run %d: %w", runID, err)
	}
	return items, nil
}

// EachBackfillItem calls fn for every item of a run (optionally only those
// in state), in id order, reading page items at a time (keyset pages: a
// run of 100,000 titles is never in memory at once, and no page costs
// more than the first). An error from fn stops it and is returned.
func (db *DB) EachBackfillItem(ctx context.Context, runID int64, state string, page int, fn func(BackfillItem) error) error {
	if page <= 0 {
		page = 1000
	}
	var after int64
	for {
		rows, err := db.pool.Query(ctx, `select `+itemColumns+` from backfill_items
			where run_id = $1 and ($2 = '' or state = $2) and id > $3 order by id limit $4`, runID, state, after, page)
		if err != nil {
			return fmt.Errorf("catalog: items of run %d: %w", runID, err)
		}
		items, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (BackfillItem, error) { return scanItem(row) })
		if err != nil {
			return fmt.Errorf("catalog: items of run %d: %w", runID, err)
		}
		for _, it := range items {
			if err := fn(it); err != nil {
				return err
			}
		}
		if len(items) < page {
			return nil
		}
		after = items[len(items)-1].ID
	}
}

// ClaimBackfillItem marks an item of the given batch running and counts the
// attempt. It returns ErrRunNotRunning if the run is paused, cancelled or
// done, ErrItemNotClaimable if the item is no longer in this batch, and an
// item already failed (with the reason) once it has used maxAttempts.
func (db *DB) ClaimBackfillItem(ctx context.Context, runID int64, batch int, itemID int64, maxAttempts int) (BackfillItem, error) {
	var it BackfillItem
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		var state string
		if err := tx.QueryRow(ctx, `select state from backfill_runs where id = $1 for share`, runID).Scan(&state); err != nil {
			if errors.Is(err, pgx.ErrNoRows) {
				return ErrNotFound
			}
			return err
		}
		if state != RunRunning {
			return ErrRunNotRunning
		}
		var err error
		it, err = scanItem(tx.QueryRow(ctx, `update backfill_items set state = 'running', attempts = attempts + 1,
				started_at = coalesce(started_at, now()), updated_at = now()
			where id = $1 and run_id = $2 and batch = $3 and state in ('queued', 'running')
			returning `+itemColumns, itemID, runID, batch))
		if errors.Is(err, ErrNotFound) {
			return ErrItemNotClaimable
		}
		if err != nil {
			return err
		}
		if it.Attempts > maxAttempts {
			msg := fmt.Sprintf("gave up after %d attempts", maxAttempts)
			if it.Error != "" {
				msg += "; last error: " + it.Error
			}
			it, err = scanItem(tx.QueryRow(ctx, `update backfill_items set state = 'failed', error = $2, finished_at = now(), updated_at = now()
				where id = $1 returning `+itemColumns, itemID, msg))
		}
		return err
	})
	if err != nil {
		if errors.Is(err, ErrRunNotRunning) || errors.Is(err, ErrItemNotClaimable) {
			return it, err
		}
		return it, fmt.Errorf("catalog: claim backfill item %d: %w", itemID, err)
	}
	return it, nil
}

// BackfillOutcome is how one item ended.
type BackfillOutcome struct {
	State    string // done, failed or skipped
	Error    string
	JobID    int64
	Version  int
	Bytes    int64
	Segments int
}

// FinishBackfillItem records an item's outcome. Only a running item is
// changed.
func (db *DB) FinishBackfillItem(ctx context.Context, itemID int64, o BackfillOutcome) error {
	var msg *string
	if o.Error != "" {
		msg = &o.Error
	}
	_, err := db.pool.Exec(ctx, `update backfill_items set state = $2, error = $3, job_id = coalesce(nullif($4, 0), job_id),
			version = nullif($5, 0), bytes = $6, segments = $7, finished_at = now(), updated_at = now()
		where id = $1 and state = 'running'`, itemID, o.State, msg, o.JobID, o.Version, o.Bytes, o.Segments)
	if err != nil {
		return fmt.Errorf("catalog: finish backfill item %d: %w", itemID, err)
	}
	return nil
}

// WaitBackfillItem records that a running item now waits on job jobID (a
// re-transcode); the driver finishes it when the job ends.
func (db *DB) WaitBackfillItem(ctx context.Context, itemID, jobID int64) error {
	_, err := db.pool.Exec(ctx, `update backfill_items set job_id = $2, updated_at = now() where id = $1 and state = 'running'`, itemID, jobID)
	if err != nil {
		return fmt.Errorf("catalog: backfill item %d: %w", itemID, err)
	}
	return nil
}

// RequeueBackfillItem puts a running item back to queued in its batch, for
// the batch's next delivery. With countAttempt false (an interrupted
// attempt: shutdown) the attempt is not counted. reason, if any, is kept as
// the last error.
func (db *DB) RequeueBackfillItem(ctx context.Context, itemID int64, reason string, countAttempt bool) error {
	dec := 0
	if !countAttempt {
		dec = 1
	}
	_, err := db.pool.Exec(ctx, `update backfill_items set state = 'queued', attempts = greatest(attempts - $3, 0),
			error = coalesce(nullif($2, ''), error), updated_at = now()
		where id = $1 and state = 'running'`, itemID, reason, dec)
	if err != nil {
		return fmt.Errorf("catalog: requeue backfill item %d: %w", itemID, err)
	}
	return nil
}

// ReleaseBackfillBatch returns a batch's queued items to pending, so that a
// paused run resumes them in new batches and a yielding batch gives them
// back. It returns how many were released.
func (db *DB) ReleaseBackfillBatch(ctx context.Context, runID int64, batch int) (int, error) {
	tag, err := db.pool.Exec(ctx, `update backfill_items set state = 'pending', batch = null, queued_at = null, updated_at = now()
		where run_id = $1 and batch = $2 and state = 'queued'`, runID, batch)
	if err != nil {
		return 0, fmt.Errorf("catalog: release batch %d of run %d: %w", batch, runID, err)
	}
	return int(tag.RowsAffected()), nil
}

// BackfillProgress summarises a run for `enqueue backfill status`.
type BackfillProgress struct {
	Counts         map[string]int `json:"counts"`
	Total          int            `json:"total"`
	BytesDone      int64          `json:"bytes_done"`
	SegmentsDone   int64          `json:"segments_done"`
	BytesRemaining int64          `json:"bytes_remaining"`
	FirstStarted   *time.Time     `json:"first_started,omitempty"`
	LastFinished   *time.Time     `json:"last_finished,omitempty"`
	// Worked counts the titles a worker took up and finished (done,
	// failed or skipped after starting), not those discovery recorded as
	// broken or skipped without work: the titles a rate may be made of.
	Worked int `json:"worked"`
	// BusySeconds is the wall time during which at least one title of the
	// run was being worked on (the union of the titles' started..finished
	// intervals, a running title up to now): time spent paused, or with
	// every worker on fresh uploads, is not in it, and titles worked on in
	// parallel count once.
	BusySeconds float64 `json:"busy_seconds"`
}

// BackfillProgressOf counts a run's items by state and sums their bytes.
func (db *DB) BackfillProgressOf(ctx context.Context, runID int64) (BackfillProgress, error) {
	p := BackfillProgress{Counts: map[string]int{}}
	for _, s := range BackfillItemStates() {
		p.Counts[s] = 0
	}
	rows, err := db.pool.Query(ctx, `select state, count(*) from backfill_items where run_id = $1 group by state`, runID)
	if err != nil {
		return p, fmt.Errorf("catalog: progress of run %d: %w", runID, err)
	}
	for rows.Next() {
		var (
			s string
			n int
		)
		if err := rows.Scan(&s, &n); err != nil {
			rows.Close()
			return p, fmt.Errorf("catalog: progress of run %d: %w", runID, err)
		}
		p.Counts[s] = n
		p.Total += n
	}
	if err := rows.Err(); err != nil {
		return p, fmt.Errorf("catalog: progress of run %d: %w", runID, err)
	}
	err = db.pool.QueryRow(ctx, `select coalesce(sum(bytes) filter (where state = 'done'), 0),
			coalesce(sum(segments) filter (where state = 'done'), 0),
			coalesce(sum(est_bytes) filter (where state in ('pending', 'queued', 'running')), 0),
			min(started_at), max(finished_at) filter (where state = 'done')
		from backfill_items where run_id = $1`, runID).Scan(&p.BytesDone, &p.SegmentsDone, &p.BytesRemaining, &p.FirstStarted, &p.LastFinished)
	if err != nil {
		return p, fmt.Errorf("catalog: progress of run %d: %w", runID, err)
	}
	if err := db.pool.QueryRow(ctx, busyQuery, runID).Scan(&p.Worked, &p.BusySeconds); err != nil {
		return p, fmt.Errorf("catalog: progress of run %d: busy time: %w", runID, err)
	}
	return p, nil
}

// busyQuery merges the worked intervals of a run's titles into islands
// (a gaps-and-islands pass: an interval that starts after every earlier
// one has ended begins a new island) and sums the islands' lengths. It
// also counts the titles finished after being worked on.
const busyQuery = `with iv as (
		select started_at s, greatest(coalesce(finished_at, now()), started_at) e, state <> 'running' finished
		from backfill_items
		where run_id = $1 and started_at is not null
			and (state = 'running' or (state in ('done', 'failed', 'skipped') and finished_at is not null))
	), ordered as (
		select s, e, max(e) over (order by s, e rows between unbounded preceding and 1 preceding) prev from iv
	), grouped as (
		select s, e, sum(case when prev is null or s > prev then 1 else 0 end) over (order by s, e rows unbounded preceding) island
		from ordered
	), islands as (
		select min(s) s, max(e) e from grouped group by island
	)
	select (select count(*) from iv where finished)::int,
		coalesce((select sum(extract(epoch from e - s)) from islands), 0)::float8`

// BackfillRunSummary is one line of `enqueue backfill list`.
type BackfillRunSummary struct {
	BackfillRun
	Done    int `json:"done"`
	Failed  int `json:"failed"`
	Skipped int `json:"skipped"`
	Total   int `json:"total"`
}

// ListBackfillRuns returns the latest runs, newest first, at most limit,
// with their titles counted by outcome.
func (db *DB) ListBackfillRuns(ctx context.Context, limit int) ([]BackfillRunSummary, error) {
	rows, err := db.pool.Query(ctx, `select r.id, r.state, r.options, r.batch_size, r.max_inflight, r.fingerprint,
			r.created_at, r.updated_at, r.finished_at, c.done, c.failed, c.skipped, c.total
		from (select * from backfill_runs order by id desc limit $1) r
		cross join lateral (select count(*) filter (where state = 'done')::int done,
				count(*) filter (where state = 'failed')::int failed,
				count(*) filter (where state = 'skipped')::int skipped, count(*)::int total
			from backfill_items where run_id = r.id) c
		order by r.id desc`, limit)
	if err != nil {
		return nil, fmt.Errorf("catalog: list backfill runs: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (BackfillRunSummary, error) {
		var s BackfillRunSummary
		r := &s.BackfillRun
		err := row.Scan(&r.ID, &r.State, &r.Options, &r.BatchSize, &r.MaxInflight, &r.Fingerprint, &r.CreatedAt, &r.UpdatedAt,
			&r.FinishedAt, &s.Done, &s.Failed, &s.Skipped, &s.Total)
		return s, err
	})
	if err != nil {
		return nil, fmt.Errorf("catalog: list backfill runs: %w", err)
	}
	return out, nil
}

// BackfillProgressByRun counts the items of every running run by state,
// for the worker's metrics; every item state is present for each run.
func (db *DB) BackfillProgressByRun(ctx context.Context) (map[int64]map[string]int, error) {
	rows, err := db.pool.Query(ctx, `select r.id, i.state, count(i.id)::int from backfill_runs r
			left join backfill_items i on i.run_id = r.id
		where r.state = 'running' group by r.id, i.state`)
	if err != nil {
		return nil, fmt.Errorf("catalog: backfill progress: %w", err)
	}
	defer rows.Close()
	out := map[int64]map[string]int{}
	for rows.Next() {
		var (
			id    int64
			state *string
			n     int
		)
		if err := rows.Scan(&id, &state, &n); err != nil {
			return nil, fmt.Errorf("catalog: backfill progress: %w", err)
		}
		m := out[id]
		if m == nil {
			m = map[string]int{}
			for _, s := range BackfillItemStates() {
				m[s] = 0
			}
			out[id] = m
		}
		if state != nil {
			m[*state] = n
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("catalog: backfill progress: %w", err)
	}
	return out, nil
}

// BackfillItemStates lists every item state, in the order an item goes
// through them.
func BackfillItemStates() []string {
	return []string{ItemPending, ItemQueued, ItemRunning, ItemDone, ItemFailed, ItemSkipped}
}

// BackfillStart is what PrepareBackfillJob found.
type BackfillStart struct {
	Job Job
	// Expected is the video's current version when the attempt starts, 0
	// if it has none: the attempt may publish only over this version.
	Expected int
}

// PrepareBackfillJob records the backfill job of one title under taskID
// (kind 'backfill', source the legacy playlist or the version re-keyed) and
// pins the version the next attempt expects to replace. A title whose
// current version was published before rekeyBefore is re-keyed; any other
// title with a current version returns ErrHasKey (and rekeyBefore zero means
// no re-keying at all). A job already published returns ErrAlreadyPublished
// with the job. Call StartAttempt next.
func (db *DB) PrepareBackfillJob(ctx context.Context, videoID, source, taskID string, rekeyBefore time.Time) (BackfillStart, error) {
	var st BackfillStart
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `insert into videos (id) values ($1) on conflict do nothing`, videoID); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `insert into jobs (video_id, task_id, source, state, kind) values ($1, $2, $3, 'queued', 'backfill')
			on conflict (task_id) do nothing`, videoID, taskID, source); err != nil {
			return err
		}
		j, err := scanJob(tx.QueryRow(ctx, `select `+jobColumns+` from jobs where task_id = $1 for update`, taskID))
		if err != nil {
			return err
		}
		st.Job = j
		if j.State == Published {
			return ErrAlreadyPublished
		}
		var (
			current   int
			published *time.Time
		)
		if err := tx.QueryRow(ctx, `select coalesce(v.current_version, 0), ver.published_at from videos v
				left join versions ver on ver.video_id = v.id and ver.version = v.current_version
			where v.id = $1 for update of v`, videoID).Scan(&current, &published); err != nil {
			return err
		}
		st.Expected = current
		if current > 0 && (rekeyBefore.IsZero() || published == nil || !published.Before(rekeyBefore)) {
			return fmt.Errorf("%w (version %d)", ErrHasKey, current)
		}
		_, err = tx.Exec(ctx, `update jobs set expected_version = $2, source = $3, updated_at = now() where id = $1`, j.ID, current, source)
		return err
	})
	if errors.Is(err, ErrAlreadyPublished) || errors.Is(err, ErrHasKey) {
		return st, err
	}
	if err != nil {
		return st, fmt.Errorf("catalog: prepare backfill job %s: %w", taskID, err)
	}
	return st, nil
}

// VersionWithKey returns one version of a video (published, or once
// published, and not deleted) with its wrapped key: the version a re-key
// reads.
func (db *DB) VersionWithKey(ctx context.Context, videoID string, version int) (Version, error) {
	var (
		v    Version
		rend []byte
		vk   versionKeys
	)
	err := db.pool.QueryRow(ctx, `select ver.video_id, ver.version, ver.prefix, ver.master, ver.renditions, coalesce(ver.duration_s, 0), ver.published_at,
			`+versionKeysColumns+`
		from versions ver
		`+versionKeysJoin+`
		where ver.video_id = $1 and ver.version = $2 and ver.state <> 'deleted'`, videoID, version).Scan(append([]any{&v.VideoID, &v.Version, &v.Prefix, &v.Master, &rend, &v.Duration,
		&v.PublishedAt}, vk.dest()...)...)
	v.Keys = vk.keys()
	if errors.Is(err, pgx.ErrNoRows) {
		return v, fmt.Errorf("catalog: version %d of %s: %w", version, videoID, ErrNotFound)
	}
	if err != nil {
		return v, fmt.Errorf("catalog: version %d of %s: %w", version, videoID, err)
	}
	if err := json.Unmarshal(rend, &v.Renditions); err != nil {
		return v, fmt.Errorf("catalog: version %d of %s: renditions: %w", version, videoID, err)
	}
	return v, nil
}

// CurrentInfo is a video's current version number and when it was published.
type CurrentInfo struct {
	Version     int
	PublishedAt time.Time
}

// CurrentVersions returns the current version of each of the videos that
// has one; videos without one, or unknown, are absent from the map.
func (db *DB) CurrentVersions(ctx context.Context, videoIDs []string) (map[string]CurrentInfo, error) {
	out := map[string]CurrentInfo{}
	rows, err := db.pool.Query(ctx, `select v.id, v.current_version, coalesce(ver.published_at, v.updated_at) from videos v
			join versions ver on ver.video_id = v.id and ver.version = v.current_version
		where v.id = any($1)`, videoIDs)
	if err != nil {
		return nil, fmt.Errorf("catalog: current versions: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			id string
			ci CurrentInfo
		)
		if err := rows.Scan(&id, &ci.Version, &ci.PublishedAt); err != nil {
			return nil, fmt.Errorf("catalog: current versions: %w", err)
		}
		out[id] = ci
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("catalog: current versions: %w", err)
	}
	return out, nil
}

// KnownVideos lists the videos the catalog knows, for --from-db discovery:
// those without a current version (legacy titles, unless a transcode of
// them is queued or running), and with withCurrent also those that have one.
func (db *DB) KnownVideos(ctx context.Context, withCurrent bool) ([]string, error) {
	rows, err := db.pool.Query(ctx, `select v.id from videos v
		where (v.current_version is null and not exists (
				select 1 from jobs j where j.video_id = v.id and j.kind = 'transcode' and j.state in ('queued', 'processing')))
			or ($1 and v.current_version is not null)
		order by v.id`, withCurrent)
	if err != nil {
		return nil, fmt.Errorf("catalog: known videos: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("catalog: known videos: %w", err)
	}
	return ids, nil
}

// RekeyCutoff returns the creation time of the first re-key run with this
// label: versions published since then are already re-keyed (or fresh), so
// a re-key run with the same label leaves them alone. ok is false when no
// such run exists.
func (db *DB) RekeyCutoff(ctx context.Context, label string) (cutoff time.Time, ok bool, err error) {
	var t *time.Time
	err = db.pool.QueryRow(ctx, `select min(created_at) from backfill_runs
		where (options->>'rekey')::boolean and coalesce(options->>'label', '') = $1`, label).Scan(&t)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("catalog: re-key cutoff: %w", err)
	}
	if t == nil {
		return time.Time{}, false, nil
	}
	return *t, true, nil
}

// LegacyLocation is the legacy playlist of a title converted by a backfill.
type LegacyLocation struct {
	ItemID   int64
	VideoID  string
	Legacy   string
	RunID    int64
	Options  json.RawMessage // the run's options (url_map)
	Version  int
	Finished time.Time
}

// LegacyGarbage lists, at most limit, the legacy titles whose objects the
// grace-period garbage collection may remove: re-encrypted from their
// legacy playlist (not re-keys, not re-transcodes) more than the grace
// period ago (finished before cutoff), still current or replaced by a newer
// version, not purged yet, and listed by no run with keep_legacy. Nothing
// here deletes.
func (db *DB) LegacyGarbage(ctx context.Context, cutoff time.Time, limit int) ([]LegacyLocation, error) {
	rows, err := db.pool.Query(ctx, `select i.id, i.video_id, i.legacy, i.run_id, r.options, i.version, i.finished_at from backfill_items i
			join backfill_runs r on r.id = i.run_id
			join jobs j on j.id = i.job_id and j.kind = 'backfill' and coalesce(j.expected_version, 0) = 0
			join videos v on v.id = i.video_id
		where i.state = 'done' and i.legacy <> '' and i.legacy_purged_at is null and i.version is not null
			and i.finished_at < $1
			and v.current_version >= i.version
			and not exists (select 1 from backfill_items k join backfill_runs kr on kr.id = k.run_id
				where k.video_id = i.video_id and coalesce((kr.options->>'keep_legacy')::boolean, false))
		order by i.finished_at limit $2`, cutoff, limit)
	if err != nil {
		return nil, fmt.Errorf("catalog: legacy garbage: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (LegacyLocation, error) {
		var l LegacyLocation
		err := row.Scan(&l.ItemID, &l.VideoID, &l.Legacy, &l.RunID, &l.Options, &l.Version, &l.Finished)
		return l, err
	})
	if err != nil {
		return nil, fmt.Errorf("catalog: legacy garbage: %w", err)
	}
	return out, nil
}

// MarkLegacyPurged records that a title's legacy objects were removed;
// every item of the same legacy playlist counts as purged.
func (db *DB) MarkLegacyPurged(ctx context.Context, itemID int64) error {
	_, err := db.pool.Exec(ctx, `update backfill_items set legacy_purged_at = now(), updated_at = now()
		where legacy_purged_at is null and (video_id, legacy) = (select video_id, legacy from backfill_items where id = $1)`, itemID)
	if err != nil {
		return fmt.Errorf("catalog: mark legacy of item %d purged: %w", itemID, err)
	}
	return nil
}

// LastTranscodeSource returns the source of the video's latest transcode
// job, for --retranscode without a source template.
func (db *DB) LastTranscodeSource(ctx context.Context, videoID string) (string, error) {
	var src string
	err := db.pool.QueryRow(ctx, `select source from jobs where video_id = $1 and kind = 'transcode' order by id desc limit 1`,
		videoID).Scan(&src)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", ErrNotFound
	}
	if err != nil {
		return "", fmt.Errorf("catalog: source of %s: %w", videoID, err)
	}
	return src, nil
}
