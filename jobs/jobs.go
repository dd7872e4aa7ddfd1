// Package jobs is what an upload service imports to have a video packaged:
// the task types and payloads the worker consumes, and a Client that
// enqueues a job, waits for it and reads its status. It names no internal
// type, so another module can use it:
//
//	c, err := jobs.Open(ctx, jobs.Options{DatabaseURL: dbURL, RedisURL: redisURL})
//	res, err := c.EnqueueTranscode(ctx, jobs.TranscodeRequest{VideoID: "3f2b6c1e", Source: "uploads/3f2b6c1e.mp4"})
//	st, err := c.Wait(ctx, "3f2b6c1e") // pushed by PostgreSQL NOTIFY, not polled
//
// Enqueuing is idempotent: the task id is derived from the video and the
// source, so the same request while it is queued or running is a no-op that
// says so, and a request for a source that is already published is one too
// (unless forced). A new source for a published video makes a new version.
package jobs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hlsvault/hlsvault/internal/catalog"
	"github.com/hlsvault/hlsvault/internal/config"
	"github.com/hlsvault/hlsvault/internal/ids"
	"github.com/hlsvault/hlsvault/internal/storage"
	"github.com/hlsvault/hlsvault/internal/transcode"
)

// TypeTranscode packages one source video into encrypted HLS.
const TypeTranscode = "hls:transcode"

// DefaultQueuePrefix names the default queues: "hls-transcode-high",
// "hls-transcode", "hls-transcode-low" and "hls-background".
const DefaultQueuePrefix = "hls"

// Queues are the names of the worker's queues, served in strict order:
// fresh uploads by priority (TranscodeHigh, Transcode, TranscodeLow), then
// Background (re-encryption of legacy titles). Strict means a lower queue
// waits while a higher one has work.
type Queues struct {
	TranscodeHigh string
	Transcode     string // normal priority
	TranscodeLow  string
	Background    string
}

// QueueNames derives the queue names from a prefix (QUEUE_PREFIX), so that
// several deployments, or tests, can share one Redis.
func QueueNames(prefix string) Queues {
	if prefix == "" {
		prefix = DefaultQueuePrefix
	}
	return Queues{TranscodeHigh: prefix + "-transcode-high", Transcode: prefix + "-transcode",
		TranscodeLow: prefix + "-transcode-low", Background: prefix + "-background"}
}

// ForPriority is the transcode queue of a priority (high, normal or low;
// empty is normal).
func (q Queues) ForPriority(p Priority) string {
	switch p {
	case PriorityHigh:
		return q.TranscodeHigh
	case PriorityLow:
		return q.TranscodeLow
	default:
		return q.Transcode
	}
}

// Priority orders fresh uploads: every high job is served before any
// normal one, every normal before any low one.
type Priority string

// Priorities of a TranscodeRequest.
const (
	PriorityHigh   Priority = "high"
	PriorityNormal Priority = "normal"
	PriorityLow    Priority = "low"
)

// MaxMetadataBytes bounds a job's metadata (compacted JSON): it travels in
// every status, task and event.
const MaxMetadataBytes = 4096

// ErrInvalidPayload marks a task whose payload can never succeed.
var ErrInvalidPayload = errors.New("jobs: invalid payload")

// TranscodePayload is the body of a TypeTranscode task.
type TranscodePayload struct {
	VideoID string `json:"video_id"`
	// Source is the object name of the uploaded video in the configured
	// storage, e.g. "uploads/3f2b6c1e.mp4".
	Source string `json:"source"`
	// Ladder and Preset override the worker's LADDER and X264_PRESET for
	// this job; empty takes the worker's.
	Ladder string `json:"ladder,omitempty"`
	Preset string `json:"preset,omitempty"`
	// Segments overrides the worker's SEGMENT_FORMAT: "ts" or "fmp4".
	Segments string `json:"segments,omitempty"`
	// Priority is the queue the task was sent to (high, normal or low).
	Priority Priority `json:"priority,omitempty"`
	// Metadata is the caller's JSON object (at most MaxMetadataBytes),
	// recorded with the job when the task was enqueued without a Client.
	Metadata json.RawMessage `json:"metadata,omitempty"`
	// Subtitles are sidecar subtitle files published with the video.
	Subtitles []Subtitle `json:"subtitles,omitempty"`
}

// Validate checks the payload before it reaches a path or a query.
func (p TranscodePayload) Validate() error {
	if err := ids.ValidateVideoID(p.VideoID); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidPayload, err)
	}
	if err := storage.ValidateName(p.Source); err != nil {
		return fmt.Errorf("%w: source %q: %w", ErrInvalidPayload, p.Source, err)
	}
	if p.Ladder != "" {
		if _, err := transcode.ParseLadder(p.Ladder); err != nil {
			return fmt.Errorf("%w: ladder %q: %w", ErrInvalidPayload, p.Ladder, err)
		}
	}
	if p.Segments != "" {
		f, err := transcode.ParseSegmentFormat(p.Segments)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidPayload, err)
		}
		// A ladder with HEVC and ts asked for is refused here; with no
		// format given, the worker's SEGMENT_FORMAT decides at run time.
		if l, err := transcode.ParseLadder(p.Ladder); p.Ladder != "" && err == nil {
			if err := l.CheckSegments(f); err != nil {
				return fmt.Errorf("%w: %w", ErrInvalidPayload, err)
			}
		}
	}
	if p.Preset != "" && !config.ValidPreset(p.Preset) {
		return fmt.Errorf("%w: preset %q: want one of %s", ErrInvalidPayload, p.Preset, strings.Join(config.X264Presets, ", "))
	}
	switch p.Priority {
	case "", PriorityHigh, PriorityNormal, PriorityLow:
	default:
		return fmt.Errorf("%w: priority %q: want high, normal or low", ErrInvalidPayload, p.Priority)
	}
	if _, err := normalizeMetadata(p.Metadata); err != nil {
		return err
	}
	return validateSubtitles(p.Subtitles)
}

// normalizeMetadata checks that b is empty or a JSON object of at most
// MaxMetadataBytes once compacted, and returns it compacted (nil if empty).
func normalizeMetadata(b json.RawMessage) (json.RawMessage, error) {
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, nil
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		return nil, fmt.Errorf("%w: metadata is not JSON: %w", ErrInvalidPayload, err)
	}
	if buf.Len() == 0 || buf.Bytes()[0] != '{' {
		return nil, fmt.Errorf("%w: metadata must be a JSON object", ErrInvalidPayload)
	}
	if buf.Len() > MaxMetadataBytes {
		return nil, fmt.Errorf("%w: metadata is %d bytes, more than %d", ErrInvalidPayload, buf.Len(), MaxMetadataBytes)
	}
	return buf.Bytes(), nil
}

// ParseTranscodePayload decodes and validates a task payload.
func ParseTranscodePayload(b []byte) (TranscodePayload, error) {
	var p TranscodePayload
	if err := json.Unmarshal(b, &p); err != nil {
		return p, fmt.Errorf("%w: %w", ErrInvalidPayload, err)
	}
	return p, p.Validate()
}

// TaskID is the deterministic task id of (video, source): asynq refuses a
// second task with the same id, which makes enqueueing idempotent.
func TaskID(videoID, source string) string {
	h := sha256.Sum256([]byte(source))
	return "transcode-" + videoID + "-" + hex.EncodeToString(h[:8])
}

// ClientConfig tunes the tasks a Client enqueues.
type ClientConfig struct {
	// Queues are where transcode tasks go, by priority (default
	// QueueNames("")).
	Queues Queues
	// Queue, when set, receives every task whatever its priority: the
	// backfill sends its re-transcodes to Queues.Background.
	Queue string
	// Timeout is asynq's hard limit for one attempt; the worker applies a
	// tighter deadline scaled to the source's duration once it has probed
	// it. Without it asynq would silently kill a task after 30 minutes.
	Timeout  time.Duration // default 12h
	MaxRetry int           // default 5
	// WaitFallback is how often Wait and Watch read the status even
	// without a notification (default 30 s): a safety net only, since
	// every change is pushed.
	WaitFallback time.Duration
	// Log receives the client's own warnings (default: discarded).
	Log *slog.Logger
}

func (c ClientConfig) withDefaults() ClientConfig {
	if c.Queues == (Queues{}) {
		c.Queues = QueueNames("")
	}
	if c.Timeout <= 0 {
		c.Timeout = 12 * time.Hour
	}
	if c.MaxRetry <= 0 {
		c.MaxRetry = 5
	}
	if c.WaitFallback <= 0 {
		c.WaitFallback = 30 * time.Second
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return c
}

// queueFor is the queue of a task of priority p.
func (c ClientConfig) queueFor(p Priority) string {
	if c.Queue != "" {
		return c.Queue
	}
	return c.Queues.ForPriority(p)
}

// taskQueues are every queue a task of this client may be in.
func (c ClientConfig) taskQueues() []string {
	if c.Queue != "" {
		return []string{c.Queue}
	}
	return []string{c.Queues.TranscodeHigh, c.Queues.Transcode, c.Queues.TranscodeLow}
}

// Client enqueues jobs, waits for them and reads their status. It is safe
// for concurrent use.
type Client struct {
	cfg       ClientConfig
	asynq     *asynq.Client
	inspector *asynq.Inspector
	db        *catalog.DB
	redis     asynq.RedisConnOpt // Delete's deletion notices (control.go)
}

// Options are the settings of Open.
type Options struct {
	// DatabaseURL is the catalog's PostgreSQL (the worker's DATABASE_URL),
	// e.g. postgres://hlsvault@db:5432/hlsvault.
	DatabaseURL string
	// RedisURL is the queue's Redis (the worker's REDIS_URL), e.g.
	// redis://redis:6379/0.
	RedisURL string
	// QueuePrefix is the worker's QUEUE_PREFIX (default "hls").
	QueuePrefix string
	// Timeout, MaxRetry, WaitFallback and Log: see ClientConfig.
	Timeout      time.Duration
	MaxRetry     int
	WaitFallback time.Duration
	Log          *slog.Logger
}

// ErrSchema means the catalog's database has no hlsvault schema, or an
// older one than this client reads: the worker has not migrated it yet.
var ErrSchema = errors.New("jobs: the catalog schema is missing or older than this client (run worker migrate)")

// ErrNotFound means no job was ever enqueued for the video (or the task).
var ErrNotFound = errors.New("jobs: not found")

// Open connects to the catalog and the queue from URLs and checks both
// (and the schema), so that a misconfiguration shows at start-up. The
// Client owns its connections: Close releases them.
func Open(ctx context.Context, o Options) (*Client, error) {
	if o.DatabaseURL == "" || o.RedisURL == "" {
		return nil, errors.New("jobs: open: DatabaseURL and RedisURL are both required")
	}
	redis, err := asynq.ParseRedisURI(o.RedisURL)
	if err != nil {
		return nil, fmt.Errorf("jobs: open: RedisURL %s: %w", config.RedactURL(o.RedisURL), err)
	}
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	db, err := catalog.Open(ctx, o.DatabaseURL, log)
	if err != nil {
		return nil, fmt.Errorf("jobs: open: %w", err)
	}
	c := newClient(db, redis, ClientConfig{Queues: QueueNames(o.QueuePrefix), Timeout: o.Timeout, MaxRetry: o.MaxRetry,
		WaitFallback: o.WaitFallback, Log: log})
	if err := c.Check(ctx); err != nil {
		c.Close()
		return nil, fmt.Errorf("jobs: open: %w", err)
	}
	return c, nil
}

// New builds a Client on the caller's own pool and Redis options (for
// example asynq.RedisClientOpt{Addr: "redis:6379"}). Nothing connects
// yet; call Check to find a misconfiguration early. Close leaves the pool
// open: it is the caller's.
func New(pool *pgxpool.Pool, redis asynq.RedisConnOpt, cfg ClientConfig) (*Client, error) {
	if pool == nil {
		return nil, errors.New("jobs: new client: no PostgreSQL pool")
	}
	if redis == nil {
		return nil, errors.New("jobs: new client: no Redis options")
	}
	cfg = cfg.withDefaults()
	return newClient(catalog.New(pool, cfg.Log), redis, cfg), nil
}

func newClient(db *catalog.DB, redis asynq.RedisConnOpt, cfg ClientConfig) *Client {
	cfg = cfg.withDefaults()
	return &Client{cfg: cfg, asynq: asynq.NewClient(redis), inspector: asynq.NewInspector(redis), db: db, redis: redis}
}

// Check verifies that PostgreSQL and Redis answer and that the catalog's
// schema is migrated.
func (c *Client) Check(ctx context.Context) error {
	if err := c.db.Ping(ctx); err != nil {
		return fmt.Errorf("jobs: PostgreSQL unreachable: %w", err)
	}
	if err := c.db.CheckClientSchema(ctx); err != nil {
		return c.dbErr(err)
	}
	if err := c.asynq.Ping(); err != nil {
		return fmt.Errorf("jobs: Redis unreachable: %w", err)
	}
	return nil
}

// dbErr turns a missing table or column into ErrSchema.
func (c *Client) dbErr(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && (pe.Code == "42P01" || pe.Code == "42703" || pe.Code == "42883") {
		return fmt.Errorf("%w: %w", ErrSchema, err)
	}
	if errors.Is(err, catalog.ErrNotFound) {
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	return err
}

// Close releases the Redis connections, and the PostgreSQL pool if Open
// made it.
func (c *Client) Close() error {
	err := errors.Join(c.asynq.Close(), c.inspector.Close())
	c.db.Close()
	return err
}

// Outcome says what EnqueueTranscode did.
type Outcome string

// Outcomes of EnqueueTranscode.
const (
	Enqueued         Outcome = "enqueued"
	AlreadyQueued    Outcome = "already-queued"
	AlreadyPublished Outcome = "already-published"
)

// EnqueueResult reports the job and what was done.
type EnqueueResult struct {
	Outcome Outcome `json:"outcome"`
	TaskID  string  `json:"task_id"`
	Job     Job     `json:"job"`
	// CarriedSubtitles are the earlier job's sidecars that a request
	// naming none publishes with (see EnqueueTranscode).
	CarriedSubtitles []Subtitle `json:"carried_subtitles,omitempty"`
}

// Message is a sentence for a person.
func (r EnqueueResult) Message() string {
	switch r.Outcome {
	case AlreadyQueued:
		return fmt.Sprintf("video %s from %s is already %s (task %s); nothing to do", r.Job.VideoID, r.Job.Source, r.Job.State, r.TaskID)
	case AlreadyPublished:
		return fmt.Sprintf("video %s from %s is already published as version %d; nothing to do (use --force to package it again)", r.Job.VideoID, r.Job.Source, r.Job.Version)
	default:
		if n := len(r.CarriedSubtitles); n > 0 {
			return fmt.Sprintf("enqueued video %s from %s (task %s), with the %d sidecar subtitle file(s) of the earlier job", r.Job.VideoID, r.Job.Source, r.TaskID, n)
		}
		return fmt.Sprintf("enqueued video %s from %s (task %s)", r.Job.VideoID, r.Job.Source, r.TaskID)
	}
}

// TranscodeRequest asks for a video to be packaged from a source.
type TranscodeRequest struct {
	VideoID string
	// Source is the object name of the upload in the worker's storage.
	Source string
	// Force packages a source that is already published again, as a new
	// version.
	Force bool
	// Ladder overrides the worker's LADDER for this job, e.g.
	// "720p:2800k,360p:800k:96k"; empty takes the worker's.
	Ladder string
	// Preset overrides the worker's X264_PRESET (ultrafast … veryslow).
	Preset string
	// Segments overrides the worker's SEGMENT_FORMAT: "ts" (MPEG-TS) or
	// "fmp4" (fragmented MP4, which HEVC rungs need); empty takes the
	// worker's.
	Segments string
	// Priority is high, normal (the default) or low.
	Priority Priority
	// Metadata is the caller's own JSON object (at most MaxMetadataBytes),
	// returned in every status and event, e.g. {"upload_id":"u-42"}.
	Metadata json.RawMessage
	// Subtitles are sidecar subtitle files (at most MaxSubtitles) to
	// publish as WebVTT renditions. None carries the earlier job's (see
	// EnqueueTranscode), unless DropSubtitles.
	Subtitles []Subtitle
	// DropSubtitles publishes without sidecar subtitles when Subtitles is
	// empty, instead of carrying the earlier job's.
	DropSubtitles bool
}

// EnqueueTranscode asks for r.VideoID to be packaged from r.Source. See
// the package doc for when it is a no-op (then the job keeps the options
// and metadata it was enqueued with). A bad request wraps
// ErrInvalidPayload.
//
// A request without Subtitles (and without DropSubtitles) carries the
// sidecars of the earlier job (catalog.CarriedSubtitles): the same
// source's job when it is run again (Force, or after a failure), else the
// job that published the current version. A re-transcode then publishes
// the subtitles viewers had; the result's CarriedSubtitles names them.
func (c *Client) EnqueueTranscode(ctx context.Context, r TranscodeRequest) (EnqueueResult, error) {
	if r.Priority == "" {
		r.Priority = PriorityNormal
	}
	p := TranscodePayload{VideoID: r.VideoID, Source: r.Source, Ladder: strings.TrimSpace(r.Ladder), Preset: r.Preset,
		Segments: r.Segments, Priority: r.Priority, Metadata: r.Metadata, Subtitles: r.Subtitles}
	if err := p.Validate(); err != nil {
		return EnqueueResult{}, err
	}
	if err := c.refuseDeleted(ctx, r.VideoID); err != nil {
		return EnqueueResult{}, err
	}
	if r.DropSubtitles && len(r.Subtitles) > 0 {
		return EnqueueResult{}, fmt.Errorf("%w: subtitles given and dropped", ErrInvalidPayload)
	}
	taskID := TaskID(r.VideoID, r.Source)
	res := EnqueueResult{TaskID: taskID}
	var carried []Subtitle // reported only when enqueued now
	if len(p.Subtitles) == 0 && !r.DropSubtitles {
		prev, err := c.db.CarriedSubtitles(ctx, r.VideoID, taskID)
		if err != nil {
			return res, fmt.Errorf("jobs: enqueue %s: %w", r.VideoID, c.dbErr(err))
		}
		p.Subtitles = publicSubtitles(prev)
		// Checked again: they were valid when stored, under rules that
		// may since have tightened.
		if err := validateSubtitles(p.Subtitles); err != nil {
			return res, fmt.Errorf("jobs: enqueue %s: carried subtitles: %w", r.VideoID, err)
		}
		carried = p.Subtitles
	}
	p.Metadata, _ = normalizeMetadata(p.Metadata)
	req := catalog.JobRequest{Metadata: p.Metadata,
		Options: catalog.JobOptions{Ladder: p.Ladder, Preset: p.Preset, Priority: string(p.Priority), Segments: p.Segments,
			Subtitles: catalogSubtitles(p.Subtitles)}}
	job, created, err := c.db.UpsertJobWith(ctx, r.VideoID, r.Source, taskID, req)
	if err != nil {
		return res, fmt.Errorf("jobs: enqueue %s: %w", r.VideoID, c.dbErr(err))
	}
	res.Job = publicJob(job)
	if !created {
		if job.State == catalog.Published && !r.Force {
			res.Outcome = AlreadyPublished
			return res, nil
		}
		for _, q := range c.cfg.taskQueues() {
			info, err := c.inspector.GetTaskInfo(q, taskID)
			switch {
			case err == nil && info.State != asynq.TaskStateArchived && info.State != asynq.TaskStateCompleted:
				res.Outcome = AlreadyQueued
				return res, nil
			case err == nil:
				// A finished task keeps its id while retained; free it.
				if err := c.inspector.DeleteTask(q, taskID); err != nil && !errors.Is(err, asynq.ErrTaskNotFound) {
					return res, fmt.Errorf("jobs: enqueue %s: free task id: %w", r.VideoID, err)
				}
			case !errors.Is(err, asynq.ErrTaskNotFound) && !errors.Is(err, asynq.ErrQueueNotFound):
				return res, fmt.Errorf("jobs: enqueue %s: inspect task: %w", r.VideoID, err)
			}
		}
		if err := c.db.ResetJobWith(ctx, taskID, req); err != nil {
			return res, fmt.Errorf("jobs: enqueue %s: %w", r.VideoID, c.dbErr(err))
		}
	}
	task, err := NewTranscodeTask(p)
	if err != nil {
		return res, err
	}
	_, err = c.asynq.EnqueueContext(ctx, task, asynq.TaskID(taskID), asynq.Queue(c.cfg.queueFor(p.Priority)),
		asynq.MaxRetry(c.cfg.MaxRetry), asynq.Timeout(c.cfg.Timeout))
	if errors.Is(err, asynq.ErrTaskIDConflict) {
		res.Outcome = AlreadyQueued
		return res, nil
	}
	if err != nil {
		if created {
			_ = c.db.DeleteQueuedJob(context.WithoutCancel(ctx), taskID)
		}
		return res, fmt.Errorf("jobs: enqueue %s: %w", r.VideoID, err)
	}
	if job, err = c.db.JobByTask(ctx, taskID); err != nil {
		return res, fmt.Errorf("jobs: enqueue %s: %w", r.VideoID, c.dbErr(err))
	}
	res.Job = publicJob(job)
	res.Outcome, res.CarriedSubtitles = Enqueued, carried
	return res, nil
}

// NewTranscodeTask builds the asynq task for p.
func NewTranscodeTask(p TranscodePayload) (*asynq.Task, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	b, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("jobs: encode payload: %w", err)
	}
	return asynq.NewTask(TypeTranscode, b), nil
}
