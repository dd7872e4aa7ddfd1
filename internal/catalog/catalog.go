// Package catalog is the system of record in PostgreSQL: videos, their
// versions, the wrapped content keys and the jobs that produce them.
//
// Publishing is one transaction: the wrapped key is inserted, the version is
// marked published and the video's current version is switched together, only
// after every object of the version is in storage. A version that loses a race
// (a duplicate delivery of the same job, or an older job finishing after a
// newer one) is recorded as superseded and never becomes current.
package catalog

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/tern/v2/migrate"

	"github.com/hlsvault/hlsvault/internal/layout"
)

//go:embed migrations/*.sql
var migrations embed.FS

var (
	// ErrNotFound means no such video, job, version or key.
	ErrNotFound = errors.New("catalog: not found")
	// ErrVersionGone means an attempt's version was claimed by garbage
	// collection before it could be published; the attempt must start over.
	ErrVersionGone = errors.New("catalog: version gone")
	// ErrAlreadyPublished means the job finished before; a second delivery
	// has nothing to do.
	ErrAlreadyPublished = errors.New("catalog: job already published")
)

// JobState is the state of a job as the upload service sees it.
type JobState string

// Job states.
const (
	Queued     JobState = "queued"
	Processing JobState = "processing"
	Published  JobState = "published"
	Failed     JobState = "failed"
)

// DB is the catalog on a pgx pool.
type DB struct {
	pool     *pgxpool.Pool
	log      *slog.Logger
	borrowed bool // the pool is the caller's: Close leaves it open
}

// Open connects to PostgreSQL and checks the connection.
func Open(ctx context.Context, url string, log *slog.Logger) (*DB, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("catalog: parse DATABASE_URL: %w", err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("catalog: connect: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("catalog: connect %s@%s/%s: %w", cfg.ConnConfig.User, cfg.ConnConfig.Host, cfg.ConnConfig.Database, err)
	}
	return &DB{pool: pool, log: log}, nil
}

// New is a DB on a pool the caller owns (an upload service's own pgxpool):
// Close then leaves the pool open, since the caller may still use it.
func New(pool *pgxpool.Pool, log *slog.Logger) *DB {
	return &DB{pool: pool, log: log, borrowed: true}
}

// Pool is the DB's pool, for a client built on the same connections.
func (db *DB) Pool() *pgxpool.Pool { return db.pool }

// Close releases the pool, unless it was the caller's (New).
func (db *DB) Close() {
	if !db.borrowed {
		db.pool.Close()
	}
}

// Ping checks the database is reachable, for health checks.
func (db *DB) Ping(ctx context.Context) error { return db.pool.Ping(ctx) }

// Migrate applies the embedded migrations. tern holds a PostgreSQL advisory
// lock while it migrates, so several workers starting at once are safe.
func (db *DB) Migrate(ctx context.Context) error {
	conn, err := db.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("catalog: migrate: %w", err)
	}
	defer conn.Release()
	m, err := migrate.NewMigrator(ctx, conn.Conn(), "hlsvault_schema_version")
	if err != nil {
		return fmt.Errorf("catalog: migrate: %w", err)
	}
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return fmt.Errorf("catalog: migrate: %w", err)
	}
	if err := m.LoadMigrations(sub); err != nil {
		return fmt.Errorf("catalog: migrate: load: %w", err)
	}
	if err := m.Migrate(ctx); err != nil {
		return fmt.Errorf("catalog: migrate: %w", err)
	}
	return nil
}

// Job is one request to package a video from a source.
type Job struct {
	ID        int64
	VideoID   string
	TaskID    string
	Source    string
	State     JobState
	Progress  float64
	Error     string
	Version   int
	Attempts  int
	CreatedAt time.Time
	UpdatedAt time.Time
	// Stage is where a processing job is (download, probe, encode, upload,
	// publish); empty before its first stage.
	Stage string
	// EnqueuedAt is when the job was last enqueued; StartedAt when its
	// first attempt began; FinishedAt when its last attempt ended
	// (published, failed or cancelled), nil while it may still run.
	EnqueuedAt time.Time
	StartedAt  *time.Time
	FinishedAt *time.Time
	// Metadata is the caller's JSON object, returned as given ({} if none).
	Metadata json.RawMessage
	// Options are the job's overrides of the worker's settings.
	Options JobOptions
}

// JobOptions are a job's overrides of the worker's settings, stored in
// jobs.options; empty fields take the worker's.
type JobOptions struct {
	Ladder   string `json:"ladder,omitempty"`   // a LADDER value
	Preset   string `json:"preset,omitempty"`   // an x264 preset
	Priority string `json:"priority,omitempty"` // high, normal or low
	Segments string `json:"segments,omitempty"` // ts or fmp4
	// Subtitles are the job's sidecar subtitle files, kept so that a
	// re-transcode given none carries them (see CarriedSubtitles).
	Subtitles []JobSubtitle `json:"subtitles,omitempty"`
}

const jobColumns = `id, video_id, task_id, source, state, progress, coalesce(error, ''), coalesce(version, 0), attempts, created_at, updated_at,
	coalesce(stage, ''), enqueued_at, started_at, finished_at, metadata, options`

func scanJob(row pgx.Row) (Job, error) {
	var (
		j    Job
		meta []byte
		opts []byte
	)
	err := row.Scan(&j.ID, &j.VideoID, &j.TaskID, &j.Source, &j.State, &j.Progress, &j.Error, &j.Version, &j.Attempts, &j.CreatedAt, &j.UpdatedAt,
		&j.Stage, &j.EnqueuedAt, &j.StartedAt, &j.FinishedAt, &meta, &opts)
	if err == nil {
		j.Metadata = json.RawMessage(meta)
		if len(opts) > 0 {
			err = json.Unmarshal(opts, &j.Options)
		}
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return j, ErrNotFound
	}
	return j, err
}

// JobRequest is what a caller asks of a job besides its video and source:
// its metadata (a JSON object; nil is {}) and its options.
type JobRequest struct {
	Metadata json.RawMessage
	Options  JobOptions
}

func (r JobRequest) values() ([]byte, []byte, error) {
	meta := []byte(r.Metadata)
	if len(meta) == 0 {
		meta = []byte("{}")
	}
	opts, err := json.Marshal(r.Options)
	return meta, opts, err
}

// UpsertJob records a request for (video, source) under taskID. It returns
// the job and whether it was created now. An existing job is returned as it
// is; the caller decides whether to re-queue it (ResetJob).
func (db *DB) UpsertJob(ctx context.Context, videoID, source, taskID string) (Job, bool, error) {
	return db.UpsertJobWith(ctx, videoID, source, taskID, JobRequest{})
}

// UpsertJobWith is UpsertJob for a job with metadata and options; an
// existing job keeps its own until ResetJobWith.
func (db *DB) UpsertJobWith(ctx context.Context, videoID, source, taskID string, req JobRequest) (Job, bool, error) {
	var (
		j       Job
		created bool
	)
	meta, opts, err := req.values()
	if err != nil {
		return Job{}, false, fmt.Errorf("catalog: upsert job %s: %w", taskID, err)
	}
	err = pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `insert into videos (id) values ($1) on conflict do nothing`, videoID); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `insert into jobs (video_id, task_id, source, state, metadata, options) values ($1, $2, $3, 'queued', $4, $5)
			on conflict (task_id) do nothing`, videoID, taskID, source, meta, opts)
		if err != nil {
			return err
		}
		created = tag.RowsAffected() == 1
		j, err = scanJob(tx.QueryRow(ctx, `select `+jobColumns+` from jobs where task_id = $1`, taskID))
		return err
	})
	if err != nil {
		return Job{}, false, fmt.Errorf("catalog: upsert job %s: %w", taskID, err)
	}
	return j, created, nil
}

// ResetJob puts a finished or abandoned job back to queued.
func (db *DB) ResetJob(ctx context.Context, taskID string) error {
	_, err := db.pool.Exec(ctx, `update jobs set state = 'queued', progress = 0, error = null,
		enqueued_at = now(), started_at = null, finished_at = null, stage = null, updated_at = now() where task_id = $1`, taskID)
	if err != nil {
		return fmt.Errorf("catalog: reset job %s: %w", taskID, err)
	}
	return nil
}

// ResetJobWith is ResetJob that also replaces the job's metadata and
// options with those of the new request.
func (db *DB) ResetJobWith(ctx context.Context, taskID string, req JobRequest) error {
	meta, opts, err := req.values()
	if err != nil {
		return fmt.Errorf("catalog: reset job %s: %w", taskID, err)
	}
	_, err = db.pool.Exec(ctx, `update jobs set state = 'queued', progress = 0, error = null,
		enqueued_at = now(), started_at = null, finished_at = null, stage = null, metadata = $2, options = $3, updated_at = now()
		where task_id = $1`, taskID, meta, opts)
	if err != nil {
		return fmt.Errorf("catalog: reset job %s: %w", taskID, err)
	}
	return nil
}

// DeleteQueuedJob removes a job that never reached the queue.
func (db *DB) DeleteQueuedJob(ctx context.Context, taskID string) error {
	_, err := db.pool.Exec(ctx, `delete from jobs where task_id = $1 and state = 'queued' and attempts = 0`, taskID)
	if err != nil {
		return fmt.Errorf("catalog: delete job %s: %w", taskID, err)
	}
	return nil
}

// JobByTask returns the job recorded under taskID.
func (db *DB) JobByTask(ctx context.Context, taskID string) (Job, error) {
	j, err := scanJob(db.pool.QueryRow(ctx, `select `+jobColumns+` from jobs where task_id = $1`, taskID))
	if err != nil {
		return j, fmt.Errorf("catalog: job %s: %w", taskID, err)
	}
	return j, nil
}

// Attempt is one run of a job: it owns a fresh version number and writes
// only under that version's prefix.
type Attempt struct {
	Job     Job
	Version int
	Prefix  string
}

// VersionPrefix is where the objects of one version live. Versions are never
// overwritten, so the path includes the number.
func VersionPrefix(videoID string, version int) string {
	return layout.VersionPrefix(videoID, version)
}

// StartAttempt marks the job processing and allocates the next version number
// of its video. It returns ErrAlreadyPublished if the job is done,
// ErrCancelled if it was cancelled, and ErrVideoDeleted (and cancels the
// job) if its video was deleted.
func (db *DB) StartAttempt(ctx context.Context, taskID string) (Attempt, error) {
	var (
		a       Attempt
		refused error // committed, then returned
	)
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		j, err := scanJob(tx.QueryRow(ctx, `select `+jobColumns+` from jobs where task_id = $1 for update`, taskID))
		if err != nil {
			return err
		}
		if j.State == Published {
			a.Job = j
			return ErrAlreadyPublished
		}
		if j.State == Cancelled {
			a.Job = j
			return ErrCancelled
		}
		// The video row serialises version allocation between attempts.
		var deleted bool
		if err := tx.QueryRow(ctx, `select deleted_at is not null from videos where id = $1 for update`, j.VideoID).Scan(&deleted); err != nil {
			return err
		}
		if deleted {
			// Recorded after its video was deleted: nothing is made of it.
			a.Job = j
			refused = ErrVideoDeleted
			_, err := tx.Exec(ctx, `update jobs set state = 'cancelled', finished_at = now(), updated_at = now() where id = $1`, j.ID)
			return err
		}
		var n int
		if err := tx.QueryRow(ctx, `select coalesce(max(version), 0) + 1 from versions where video_id = $1`, j.VideoID).Scan(&n); err != nil {
			return err
		}
		prefix := VersionPrefix(j.VideoID, n)
		if _, err := tx.Exec(ctx, `insert into versions (video_id, version, job_id, state, prefix) values ($1, $2, $3, 'pending', $4)`,
			j.VideoID, n, j.ID, prefix); err != nil {
			return err
		}
		j, err = scanJob(tx.QueryRow(ctx, `update jobs set state = 'processing', attempts = attempts + 1, progress = 0, error = null,
			started_at = coalesce(started_at, now()), updated_at = now()
			where id = $1 returning `+jobColumns, j.ID))
		if err != nil {
			return err
		}
		a = Attempt{Job: j, Version: n, Prefix: prefix}
		return nil
	})
	if errors.Is(err, ErrAlreadyPublished) || errors.Is(err, ErrCancelled) {
		return a, err
	}
	if err == nil && refused != nil {
		return a, fmt.Errorf("catalog: start attempt %s: %w", taskID, refused)
	}
	if err != nil {
		return Attempt{}, fmt.Errorf("catalog: start attempt %s: %w", taskID, err)
	}
	return a, nil
}

// SetProgress records the percentage done of a processing job.
func (db *DB) SetProgress(ctx context.Context, jobID int64, percent float64) error {
	_, err := db.pool.Exec(ctx, `update jobs set progress = $2, updated_at = now() where id = $1 and state = 'processing'`, jobID, percent)
	if err != nil {
		return fmt.Errorf("catalog: progress of job %d: %w", jobID, err)
	}
	return nil
}

// FailAttempt records why an attempt failed. With final the job is failed;
// otherwise it is queued again for a retry and the reason is kept.
func (db *DB) FailAttempt(ctx context.Context, jobID int64, reason string, final bool) error {
	state := Queued
	if final {
		state = Failed
	}
	_, err := db.pool.Exec(ctx, `update jobs set state = $2, error = $3, updated_at = now(),
		finished_at = case when $4::boolean then now() end
		where id = $1 and state not in ('published', 'cancelled')`,
		jobID, state, reason, final)
	if err != nil {
		return fmt.Errorf("catalog: fail job %d: %w", jobID, err)
	}
	return nil
}

// Requeue puts a processing job back to queued without recording a failure,
// for a graceful shutdown.
func (db *DB) Requeue(ctx context.Context, jobID int64) error {
	_, err := db.pool.Exec(ctx, `update jobs set state = 'queued', updated_at = now() where id = $1 and state = 'processing'`, jobID)
	if err != nil {
		return fmt.Errorf("catalog: requeue job %d: %w", jobID, err)
	}
	return nil
}

// Rendition describes one published rendition of a version.
type Rendition struct {
	Name             string  `json:"name"`
	Playlist         string  `json:"playlist"`
	Width            int     `json:"width"`
	Height           int     `json:"height"`
	Bandwidth        int64   `json:"bandwidth"`
	AverageBandwidth int64   `json:"average_bandwidth"`
	Codecs           string  `json:"codecs"`
	FrameRate        float64 `json:"frame_rate"`
	Segments         int     `json:"segments"`
	Duration         float64 `json:"duration"`
	// Type is "" for a video variant of the master (every version
	// published before alternate audio has only those), RenditionAudio for
	// an alternate audio rendition (an EXT-X-MEDIA TYPE=AUDIO, not a
	// variant: Width, Height and FrameRate are then 0), "subtitles" for
	// a WebVTT subtitle rendition (EXT-X-MEDIA TYPE=SUBTITLES), and
	// RenditionStoryboard for the thumbnail storyboard (storyboard.go).
	Type     string `json:"type,omitempty"`
	Group    string `json:"group,omitempty"`    // GROUP-ID
	Language string `json:"language,omitempty"` // BCP 47; "" when unknown
	Label    string `json:"label,omitempty"`    // NAME
	Channels int    `json:"channels,omitempty"`
	Default  bool   `json:"default,omitempty"`
}

// RenditionAudio is Rendition.Type of an alternate audio rendition.
const RenditionAudio = "audio"

// WrappedKey is a content key as stored: wrapped under the KEK kekID. A
// version has one key per key period of its media: Period is its 0-based
// index (floor(start / KEY_PERIOD); a version made with KEY_PERIOD=0 has
// period 0 only) and Start the media time in seconds where it begins.
type WrappedKey struct {
	KeyID   string
	KEKID   string
	Wrapped []byte
	Period  int
	Start   float64
}

// CheckKeys holds a version's keys to what Publish stores: at least one,
// in strictly increasing period order with non-decreasing non-negative
// starts, period 0 (if present) starting at 0, and distinct key ids.
func CheckKeys(ks []WrappedKey) error {
	if len(ks) == 0 {
		return errors.New("a version needs at least one key")
	}
	ids := map[string]bool{}
	for i, k := range ks {
		switch {
		case k.Period < 0 || k.Start < 0 || math.IsNaN(k.Start) || math.IsInf(k.Start, 0):
			return fmt.Errorf("key %d: period %d starting at %v", i, k.Period, k.Start)
		case k.Period == 0 && k.Start != 0:
			return fmt.Errorf("key %d: period 0 starts at %v, not 0", i, k.Start)
		case i > 0 && (k.Period <= ks[i-1].Period || k.Start < ks[i-1].Start):
			return fmt.Errorf("key %d: period %d at %v s does not follow period %d at %v s", i, k.Period, k.Start, ks[i-1].Period, ks[i-1].Start)
		case ids[k.KeyID]:
			return fmt.Errorf("key %d: key id %s repeated", i, k.KeyID)
		}
		ids[k.KeyID] = true
	}
	return nil
}

// KeyAt returns the index in ks (in period order) of the key that applies
// at media time t: the last one starting at or before it, allowing
// PeriodEpsilon for the rounding of summed segment durations.
func KeyAt(ks []WrappedKey, t float64) int {
	i := 0
	for j, k := range ks {
		if k.Start <= t+PeriodEpsilon {
			i = j
		}
	}
	return i
}

// PeriodEpsilon is how far before a period's start (seconds) a segment may
// start and still count as in it: segment start times are sums of rounded
// durations (ffmpeg's 6 decimals, EXTINF's 3).
const PeriodEpsilon = 0.001

// PublishParams is everything that becomes visible together.
type PublishParams struct {
	Attempt    Attempt
	Master     string
	Renditions []Rendition
	Duration   float64
	// Keys are every key of the version, in period order (see CheckKeys).
	Keys []WrappedKey
}

// Publish makes the attempt's version current, with its key, in one
// transaction. It returns false (and records the version as superseded)
// when the version must not become current:
//
//   - for any job: the job was already published by another delivery;
//   - for a transcode job: the video's current content comes from a newer
//     transcode job. A version made by a backfill counts as the transcode
//     job whose version it re-encrypted, and a re-encrypted legacy title as
//     no job at all, so backfill versions never block a transcode;
//   - for a backfill job: the video's current version is no longer the one
//     the attempt expected when it started (jobs.expected_version: 0 for a
//     title that had none, N when re-keying version N). This
//     compare-and-swap means a backfill never replaces a fresh upload.
//
// It returns ErrCancelled, and publishes nothing, when the attempt's job
// was cancelled, and ErrVideoDeleted when its video was deleted.
func (db *DB) Publish(ctx context.Context, p PublishParams) (bool, error) {
	a := p.Attempt
	if err := CheckKeys(p.Keys); err != nil {
		return false, fmt.Errorf("catalog: publish %s v%d: %w", a.Job.VideoID, a.Version, err)
	}
	var published bool
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		var (
			state    JobState
			kind     string
			expected int
		)
		if err := tx.QueryRow(ctx, `select state, kind, coalesce(expected_version, 0) from jobs where id = $1 for update`,
			a.Job.ID).Scan(&state, &kind, &expected); err != nil {
			return err
		}
		if state == Cancelled {
			// The job row is locked: a cancellation commits before this
			// check or waits for this transaction.
			return fmt.Errorf("%w: nothing is published", ErrCancelled)
		}
		var current int
		var currentLineage int64
		err := tx.QueryRow(ctx, `select coalesce(v.current_version, 0), coalesce(ver.lineage_job, 0) from videos v
			left join versions ver on ver.video_id = v.id and ver.version = v.current_version
			where v.id = $1 for update of v`, a.Job.VideoID).Scan(&current, &currentLineage)
		if err != nil {
			return err
		}
		var deleted bool
		if err := tx.QueryRow(ctx, `select deleted_at is not null from videos where id = $1`, a.Job.VideoID).Scan(&deleted); err != nil {
			return err
		}
		if deleted {
			return fmt.Errorf("%w: nothing is published", ErrVideoDeleted)
		}
		renditions, err := json.Marshal(p.Renditions)
		if err != nil {
			return err
		}
		var (
			supersede bool
			lineage   *int64
		)
		switch kind {
		case "backfill":
			supersede = state == Published || current != expected
			if !supersede && expected > 0 {
				if err := tx.QueryRow(ctx, `select lineage_job from versions where video_id = $1 and version = $2`,
					a.Job.VideoID, expected).Scan(&lineage); err != nil {
					return err
				}
			}
		default:
			supersede = state == Published || currentLineage > a.Job.ID
			id := a.Job.ID
			lineage = &id
		}
		if supersede {
			_, err := tx.Exec(ctx, `update versions set state = 'superseded', master = $3, renditions = $4, duration_s = $5
				where video_id = $1 and version = $2 and state = 'pending'`, a.Job.VideoID, a.Version, p.Master, renditions, p.Duration)
			return err
		}
		// Only a pending version can be published: one the garbage
		// collector claimed (an attempt it judged dead) stays deleted.
		tag, err := tx.Exec(ctx, `update versions set state = 'published', master = $3, renditions = $4, duration_s = $5, published_at = now(),
			lineage_job = $6
			where video_id = $1 and version = $2 and state = 'pending'`, a.Job.VideoID, a.Version, p.Master, renditions, p.Duration, lineage)
		if err != nil {
			return err
		}
		if tag.RowsAffected() != 1 {
			return fmt.Errorf("%w: version %d is no longer pending", ErrVersionGone, a.Version)
		}
		for _, k := range p.Keys {
			if _, err := tx.Exec(ctx, `insert into content_keys (key_id, video_id, version, kek_id, wrapped, period, starts_at_s)
				values ($1, $2, $3, $4, $5, $6, $7)`,
				k.KeyID, a.Job.VideoID, a.Version, k.KEKID, k.Wrapped, k.Period, k.Start); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, `update versions set retired_at = now()
			where video_id = $1 and version = (select current_version from videos where id = $1)`, a.Job.VideoID); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `update videos set current_version = $2, updated_at = now() where id = $1`, a.Job.VideoID, a.Version); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `update jobs set state = 'published', progress = 100, error = null, version = $2, finished_at = now(), updated_at = now() where id = $1`,
			a.Job.ID, a.Version); err != nil {
			return err
		}
		published = true
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("catalog: publish %s v%d: %w", a.Job.VideoID, a.Version, err)
	}
	return published, nil
}

// Version is a published version of a video.
type Version struct {
	VideoID     string
	Version     int
	Prefix      string
	Master      string
	Renditions  []Rendition
	Duration    float64
	PublishedAt time.Time
	// Keys are the version's content keys in period order.
	Keys []WrappedKey
}

// KeyIDs returns the ids of the version's keys in period order.
func (v Version) KeyIDs() []string {
	out := make([]string, len(v.Keys))
	for i, k := range v.Keys {
		out[i] = k.KeyID
	}
	return out
}

// versionKeysColumns selects a version's keys as arrays in period order,
// from a lateral join named k (see scanVersionKeys): one query still reads
// a version with all its keys.
const versionKeysColumns = `k.key_ids, k.kek_ids, k.wrapped, k.periods, k.starts`

const versionKeysJoin = `join lateral (select array_agg(key_id order by period) key_ids, array_agg(kek_id order by period) kek_ids,
			array_agg(wrapped order by period) wrapped, array_agg(period order by period) periods,
			array_agg(starts_at_s order by period) starts
		from content_keys where video_id = ver.video_id and version = ver.version having count(*) > 0) k on true`

type versionKeys struct {
	ids, keks []string
	wrapped   [][]byte
	periods   []int32
	starts    []float64
}

func (vk *versionKeys) dest() []any {
	return []any{&vk.ids, &vk.keks, &vk.wrapped, &vk.periods, &vk.starts}
}

func (vk *versionKeys) keys() []WrappedKey {
	out := make([]WrappedKey, len(vk.ids))
	for i := range vk.ids {
		out[i] = WrappedKey{KeyID: vk.ids[i], KEKID: vk.keks[i], Wrapped: vk.wrapped[i], Period: int(vk.periods[i]), Start: vk.starts[i]}
	}
	return out
}

// CurrentVersion returns the video's current version with its wrapped key.
func (db *DB) CurrentVersion(ctx context.Context, videoID string) (Version, error) {
	var (
		v    Version
		rend []byte
		vk   versionKeys
	)
	err := db.pool.QueryRow(ctx, `select ver.video_id, ver.version, ver.prefix, ver.master, ver.renditions, coalesce(ver.duration_s, 0), ver.published_at,
			`+versionKeysColumns+`
		from videos v
		join versions ver on ver.video_id = v.id and ver.version = v.current_version
		`+versionKeysJoin+`
		where v.id = $1`, videoID).Scan(append([]any{&v.VideoID, &v.Version, &v.Prefix, &v.Master, &rend, &v.Duration, &v.PublishedAt},
		vk.dest()...)...)
	v.Keys = vk.keys()
	if errors.Is(err, pgx.ErrNoRows) {
		return v, fmt.Errorf("catalog: current version of %s: %w", videoID, ErrNotFound)
	}
	if err != nil {
		return v, fmt.Errorf("catalog: current version of %s: %w", videoID, err)
	}
	if err := json.Unmarshal(rend, &v.Renditions); err != nil {
		return v, fmt.Errorf("catalog: current version of %s: renditions: %w", videoID, err)
	}
	return v, nil
}

// Status is what `enqueue status` prints.
type Status struct {
	Video      string      `json:"video"`
	State      JobState    `json:"state"`
	Version    int         `json:"version,omitempty"`
	Master     string      `json:"master,omitempty"`
	Renditions []Rendition `json:"renditions,omitempty"`
	Progress   float64     `json:"progress"`
	Error      string      `json:"error,omitempty"`
	Source     string      `json:"source,omitempty"`
	Attempts   int         `json:"attempts"`
	UpdatedAt  time.Time   `json:"updated_at"`
}

// VideoStatus reports the latest job of a video and its current version.
func (db *DB) VideoStatus(ctx context.Context, videoID string) (Status, error) {
	s := Status{Video: videoID}
	j, err := scanJob(db.pool.QueryRow(ctx, `select `+jobColumns+` from jobs where video_id = $1 order by id desc limit 1`, videoID))
	if err != nil {
		return s, fmt.Errorf("catalog: status of %s: %w", videoID, err)
	}
	s.State, s.Progress, s.Error, s.Source, s.Attempts, s.UpdatedAt = j.State, j.Progress, j.Error, j.Source, j.Attempts, j.UpdatedAt
	v, err := db.CurrentVersion(ctx, videoID)
	switch {
	case err == nil:
		s.Version, s.Master, s.Renditions = v.Version, v.Master, v.Renditions
	case !errors.Is(err, ErrNotFound):
		return s, err
	}
	return s, nil
}

// KeyByID returns a wrapped key and the video and version it belongs to;
// ErrNotFound for a key of a deleted version (GC destroys those keys in the
// transaction that deletes the version; this holds even if a row
// survived).
func (db *DB) KeyByID(ctx context.Context, keyID string) (videoID string, version int, k WrappedKey, err error) {
	err = db.pool.QueryRow(ctx, `select k.video_id, k.version, k.key_id, k.kek_id, k.wrapped
		from content_keys k
		join versions v on v.video_id = k.video_id and v.version = k.version
		where k.key_id = $1 and v.state <> 'deleted'`, keyID).
		Scan(&videoID, &version, &k.KeyID, &k.KEKID, &k.Wrapped)
	if errors.Is(err, pgx.ErrNoRows) {
		err = ErrNotFound
	}
	if err != nil {
		return "", 0, k, fmt.Errorf("catalog: key %s: %w", keyID, err)
	}
	return videoID, version, k, nil
}
