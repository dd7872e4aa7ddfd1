// Package jobs is what an upload service imports to have a video packaged:
// the task types and payloads the worker consumes, and a Client that
// enqueues a job and reads its status.
//
//	c := jobs.NewClient(redisOpt, db, jobs.ClientConfig{})
//	res, err := c.EnqueueTranscode(ctx, "3f2b6c1e-…", "uploads/3f2b6c1e.mp4", false)
//
// Enqueuing is idempotent: the task id is derived from the video and the
// source, so the same request while it is queued or running is a no-op that
// says so, and a request for a source that is already published is one too
// (unless forced). A new source for a published video makes a new version.
package jobs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/hibiken/asynq"

	"github.com/hlsvault/hlsvault/internal/catalog"
	"github.com/hlsvault/hlsvault/internal/ids"
	"github.com/hlsvault/hlsvault/internal/storage"
)

// TypeTranscode packages one source video into encrypted HLS.
const TypeTranscode = "hls:transcode"

// DefaultQueuePrefix names the default queues, "hls-transcode" and
// "hls-background".
const DefaultQueuePrefix = "hls"

// Queues are the names of the two queues. Fresh uploads go to Transcode,
// which the worker serves strictly ahead of Background (re-encryption of
// legacy titles).
type Queues struct {
	Transcode  string
	Background string
}

// QueueNames derives the queue names from a prefix (QUEUE_PREFIX), so that
// several deployments, or tests, can share one Redis.
func QueueNames(prefix string) Queues {
	if prefix == "" {
		prefix = DefaultQueuePrefix
	}
	return Queues{Transcode: prefix + "-transcode", Background: prefix + "-background"}
}

// ErrInvalidPayload marks a task whose payload can never succeed.
var ErrInvalidPayload = errors.New("jobs: invalid payload")

// TranscodePayload is the body of a TypeTranscode task.
type TranscodePayload struct {
	VideoID string `json:"video_id"`
	// Source is the object name of the uploaded video in the configured
	// storage, e.g. "uploads/3f2b6c1e.mp4".
	Source string `json:"source"`
}

// Validate checks the payload before it reaches a path or a query.
func (p TranscodePayload) Validate() error {
	if err := ids.ValidateVideoID(p.VideoID); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidPayload, err)
	}
	if err := storage.ValidateName(p.Source); err != nil {
		return fmt.Errorf("%w: source %q: %w", ErrInvalidPayload, p.Source, err)
	}
	return nil
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
	Queue string // default QueueNames("").Transcode
	// Timeout is asynq's hard limit for one attempt; the worker applies a
	// tighter deadline scaled to the source's duration once it has probed
	// it. Without it asynq would silently kill a task after 30 minutes.
	Timeout  time.Duration // default 12h
	MaxRetry int           // default 5
}

// Client enqueues jobs and reads their status.
type Client struct {
	cfg       ClientConfig
	asynq     *asynq.Client
	inspector *asynq.Inspector
	db        *catalog.DB
	redis     asynq.RedisConnOpt // Delete's deletion notices (control.go)
}

// NewClient builds a Client on a Redis connection and the catalog. Close it
// when done.
func NewClient(redis asynq.RedisConnOpt, db *catalog.DB, cfg ClientConfig) *Client {
	if cfg.Queue == "" {
		cfg.Queue = QueueNames("").Transcode
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 12 * time.Hour
	}
	if cfg.MaxRetry <= 0 {
		cfg.MaxRetry = 5
	}
	return &Client{cfg: cfg, asynq: asynq.NewClient(redis), inspector: asynq.NewInspector(redis), db: db, redis: redis}
}

// Close releases the Redis connections.
func (c *Client) Close() error {
	return errors.Join(c.asynq.Close(), c.inspector.Close())
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
	Outcome Outcome
	TaskID  string
	Job     catalog.Job
}

// Message is a sentence for a person.
func (r EnqueueResult) Message() string {
	switch r.Outcome {
	case AlreadyQueued:
		return fmt.Sprintf("video %s from %s is already %s (task %s); nothing to do", r.Job.VideoID, r.Job.Source, r.Job.State, r.TaskID)
	case AlreadyPublished:
		return fmt.Sprintf("video %s from %s is already published as version %d; nothing to do (use --force to package it again)", r.Job.VideoID, r.Job.Source, r.Job.Version)
	default:
		return fmt.Sprintf("enqueued video %s from %s (task %s)", r.Job.VideoID, r.Job.Source, r.TaskID)
	}
}

// EnqueueTranscode asks for videoID to be packaged from source. See the
// package doc for when it is a no-op; force packages a published source
// again, as a new version.
func (c *Client) EnqueueTranscode(ctx context.Context, videoID, source string, force bool) (EnqueueResult, error) {
	p := TranscodePayload{VideoID: videoID, Source: source}
	if err := p.Validate(); err != nil {
		return EnqueueResult{}, err
	}
	if err := c.refuseDeleted(ctx, videoID); err != nil {
		return EnqueueResult{}, err
	}
	taskID := TaskID(videoID, source)
	res := EnqueueResult{TaskID: taskID}
	job, created, err := c.db.UpsertJob(ctx, videoID, source, taskID)
	if err != nil {
		return res, fmt.Errorf("jobs: enqueue %s: %w", videoID, err)
	}
	res.Job = job
	if !created {
		if job.State == catalog.Published && !force {
			res.Outcome = AlreadyPublished
			return res, nil
		}
		info, err := c.inspector.GetTaskInfo(c.cfg.Queue, taskID)
		switch {
		case err == nil && info.State != asynq.TaskStateArchived && info.State != asynq.TaskStateCompleted:
			res.Outcome = AlreadyQueued
			return res, nil
		case err == nil:
			// A finished task keeps its id while retained; free it.
			if err := c.inspector.DeleteTask(c.cfg.Queue, taskID); err != nil && !errors.Is(err, asynq.ErrTaskNotFound) {
				return res, fmt.Errorf("jobs: enqueue %s: free task id: %w", videoID, err)
			}
		case !errors.Is(err, asynq.ErrTaskNotFound) && !errors.Is(err, asynq.ErrQueueNotFound):
			return res, fmt.Errorf("jobs: enqueue %s: inspect task: %w", videoID, err)
		}
		if err := c.db.ResetJob(ctx, taskID); err != nil {
			return res, fmt.Errorf("jobs: enqueue %s: %w", videoID, err)
		}
	}
	task, err := NewTranscodeTask(p)
	if err != nil {
		return res, err
	}
	_, err = c.asynq.EnqueueContext(ctx, task, asynq.TaskID(taskID), asynq.Queue(c.cfg.Queue),
		asynq.MaxRetry(c.cfg.MaxRetry), asynq.Timeout(c.cfg.Timeout))
	if errors.Is(err, asynq.ErrTaskIDConflict) {
		res.Outcome = AlreadyQueued
		return res, nil
	}
	if err != nil {
		if created {
			_ = c.db.DeleteQueuedJob(context.WithoutCancel(ctx), taskID)
		}
		return res, fmt.Errorf("jobs: enqueue %s: %w", videoID, err)
	}
	if res.Job, err = c.db.JobByTask(ctx, taskID); err != nil {
		return res, fmt.Errorf("jobs: enqueue %s: %w", videoID, err)
	}
	res.Outcome = Enqueued
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

// Status reports the latest job of a video and its current version.
func (c *Client) Status(ctx context.Context, videoID string) (catalog.Status, error) {
	if err := ids.ValidateVideoID(videoID); err != nil {
		return catalog.Status{}, err
	}
	return c.db.VideoStatus(ctx, videoID)
}

// Job returns the job recorded under taskID, for following one request.
func (c *Client) Job(ctx context.Context, taskID string) (catalog.Job, error) {
	return c.db.JobByTask(ctx, taskID)
}
