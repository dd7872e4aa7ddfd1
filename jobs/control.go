package jobs

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/hlsvault/hlsvault/internal/catalog"
	"github.com/hlsvault/hlsvault/internal/deletions"
	"github.com/hlsvault/hlsvault/internal/ids"
)

var (
	// ErrNothingToCancel means the video has no queued or processing job:
	// it is published, failed, or never had one.
	ErrNothingToCancel = errors.New("jobs: nothing to cancel")
	// ErrDeleted means the video was deleted: its id cannot be used again.
	ErrDeleted = errors.New("jobs: video deleted")
	// ErrNoSuchVideo means nothing was ever enqueued for the video.
	ErrNoSuchVideo = errors.New("jobs: no such video")
)

// controlError reads as its message and unwraps to a sentinel, so that a
// person gets one clear sentence and a program errors.Is.
type controlError struct {
	msg string
	err error
}

func (e *controlError) Error() string { return e.msg }
func (e *controlError) Unwrap() error { return e.err }

func errorf(sentinel error, format string, args ...any) error {
	return &controlError{msg: "jobs: " + fmt.Sprintf(format, args...), err: sentinel}
}

// TaskOutcome says what a cancellation did to a job's asynq task.
type TaskOutcome string

// Task outcomes of Cancel and Delete.
const (
	// TaskRemoved: the task was waiting (pending, scheduled or retry) and
	// was deleted from the queue; it never runs.
	TaskRemoved TaskOutcome = "removed"
	// TaskStopped: the task was running; its worker's handler context was
	// cancelled (ffmpeg is stopped) and the task archived, not retried.
	TaskStopped TaskOutcome = "stopped"
	// TaskStopRequested: the task was running and the stop signal was
	// sent, but it had not left its worker when Cancel stopped waiting
	// (a worker that died keeps its task until asynq's lease expires).
	// Nothing is published either way: the job is cancelled in the
	// catalog, and a later delivery of the task is archived at once.
	TaskStopRequested TaskOutcome = "stop-requested"
	// TaskGone: no such task in the queues (it finished, or was enqueued
	// around this client); nothing to remove.
	TaskGone TaskOutcome = "gone"
)

// CancelledJob is one job a Cancel or Delete cancelled.
type CancelledJob struct {
	TaskID string
	Source string
	// Was is the job's state before: queued, processing, or cancelled
	// when it had been cancelled before.
	Was  string
	Task TaskOutcome
}

// CancelResult reports what Cancel did.
type CancelResult struct {
	Video string
	Jobs  []CancelledJob
	// Already is set when the video's latest job had been cancelled
	// before; Cancel then only finished removing its task.
	Already bool
}

// Message is a sentence for a person.
func (r CancelResult) Message() string {
	var parts []string
	for _, j := range r.Jobs {
		if r.Already {
			parts = append(parts, fmt.Sprintf("job %s was already cancelled; nothing will be published", j.TaskID))
			continue
		}
		s := fmt.Sprintf("cancelled job %s (was %s); nothing will be published", j.TaskID, j.Was)
		parts = append(parts, s+taskNote(j.Task))
	}
	return strings.Join(parts, "\n")
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func taskNote(o TaskOutcome) string {
	switch o {
	case TaskRemoved:
		return "; its task was removed from the queue"
	case TaskStopped:
		return "; its worker stopped ffmpeg and the task is archived, not retried"
	case TaskStopRequested:
		return "; its worker was told to stop (the task is archived when it lets go)"
	}
	return ""
}

// Cancel cancels the video's queued or processing transcode job (every
// one, if several sources are in flight), so that nothing more is
// published for it. The catalog records the cancellation first, in one
// transaction, so that from then on no attempt starts and none publishes
// (catalog.Publish refuses a cancelled job); then the task is removed from
// the queue, or, when it runs, its worker is told to stop
// (inspector.CancelProcessing: the handler's context is cancelled, ffmpeg
// killed) and the task archived. The video keeps its current version.
//
// A video with no active job returns ErrNothingToCancel; cancelling twice
// is not an error (Already). Enqueueing the same source again afterwards
// starts the job over.
func (c *Client) Cancel(ctx context.Context, videoID string) (CancelResult, error) {
	res := CancelResult{Video: videoID}
	if err := ids.ValidateVideoID(videoID); err != nil {
		return res, fmt.Errorf("jobs: cancel: %w", err)
	}
	cn, err := c.db.CancelJobs(ctx, videoID)
	switch {
	case errors.Is(err, catalog.ErrNotFound):
		return res, errorf(ErrNoSuchVideo, "cancel: video %s: no such video (nothing was ever enqueued for it)", videoID)
	case errors.Is(err, catalog.ErrNotActive) && cn.Latest.TaskID == "":
		return res, errorf(ErrNothingToCancel, "cancel: video %s has no queued or processing job to cancel (none was ever enqueued)", videoID)
	case errors.Is(err, catalog.ErrNotActive):
		return res, errorf(ErrNothingToCancel, "cancel: video %s has no queued or processing job to cancel (its latest job, %s, is %s)",
			videoID, cn.Latest.TaskID, cn.Latest.State)
	case err != nil:
		return res, fmt.Errorf("jobs: cancel %s: %w", videoID, err)
	}
	res.Already = cn.Already
	res.Jobs, err = c.stopTasks(ctx, cn.Jobs)
	if err != nil {
		return res, fmt.Errorf("jobs: cancel %s: cancelled in the catalog (nothing will be published), but: %w", videoID, err)
	}
	return res, nil
}

// DeleteResult reports what Delete did.
type DeleteResult struct {
	Video     string
	DeletedAt time.Time
	// Already is set when the video had been deleted before.
	Already bool
	// Versions are the versions deleted now, KeysDestroyed the number of
	// their content keys destroyed.
	Versions      []int
	KeysDestroyed int
	// Jobs are the jobs cancelled by the deletion.
	Jobs []CancelledJob
	// NoticeErr is set when the deletion notices did not reach Redis:
	// running gateways then drop their cached keys only when their cache
	// entries expire (KEY_CACHE_TTL). The deletion itself is complete.
	NoticeErr error
}

// Message is a sentence for a person.
func (r DeleteResult) Message() string {
	var b strings.Builder
	if r.Already && len(r.Versions) == 0 && len(r.Jobs) == 0 {
		fmt.Fprintf(&b, "video %s was already deleted (at %s); nothing to do", r.Video, r.DeletedAt.UTC().Format(time.RFC3339))
	} else {
		fmt.Fprintf(&b, "deleted video %s: %s destroyed in %s; objects are removed by the next GC pass",
			r.Video, plural(r.KeysDestroyed, "key"), plural(len(r.Versions), "version"))
	}
	for _, j := range r.Jobs {
		fmt.Fprintf(&b, "\ncancelled job %s (was %s)%s", j.TaskID, j.Was, taskNote(j.Task))
	}
	if r.NoticeErr != nil {
		fmt.Fprintf(&b, "\nwarning: gateways were not told (%v); they drop cached keys when their cache entries expire", r.NoticeErr)
	}
	return b.String()
}

// Delete deletes a video by crypto-shredding. One catalog transaction
// marks the video deleted, takes away its current version, cancels its
// active jobs, marks every version deleted and destroys every content key
// of every version: from the commit nothing of it plays, and its segments
// in storage (and in any cache) are noise without the keys. Then running
// gateways are told to forget cached keys (package deletions), the jobs'
// tasks are removed or stopped as Cancel does, and garbage collection
// removes the objects on its next pass, once no attempt of the video can
// still write. The video id stays taken: enqueueing it again returns
// ErrDeleted.
//
// Deleting twice is not an error (Already); an unknown video returns
// ErrNoSuchVideo.
func (c *Client) Delete(ctx context.Context, videoID string) (DeleteResult, error) {
	res := DeleteResult{Video: videoID}
	if err := ids.ValidateVideoID(videoID); err != nil {
		return res, fmt.Errorf("jobs: delete: %w", err)
	}
	d, err := c.db.DeleteVideo(ctx, videoID)
	if errors.Is(err, catalog.ErrNotFound) {
		return res, errorf(ErrNoSuchVideo, "delete: video %s: no such video (nothing was ever enqueued for it)", videoID)
	}
	if err != nil {
		return res, fmt.Errorf("jobs: delete %s: %w", videoID, err)
	}
	res.DeletedAt, res.Already, res.Versions, res.KeysDestroyed = d.DeletedAt, d.Already, d.Versions, len(d.Keys)
	// Committed: the keys are gone from the catalog whatever happens next.
	res.NoticeErr = c.noticeDeleted(context.WithoutCancel(ctx), videoID, d.Versions)
	res.Jobs, err = c.stopTasks(ctx, d.Jobs)
	if err != nil {
		return res, fmt.Errorf("jobs: delete %s: deleted (keys destroyed), but: %w", videoID, err)
	}
	return res, nil
}

// refuseDeleted returns ErrDeleted for a deleted video: its id cannot be
// used again (its history stays, with its keys destroyed).
func (c *Client) refuseDeleted(ctx context.Context, videoID string) error {
	at, err := c.db.VideoDeletedAt(ctx, videoID)
	switch {
	case errors.Is(err, catalog.ErrNotFound):
		return nil
	case err != nil:
		return fmt.Errorf("jobs: enqueue %s: %w", videoID, err)
	case !at.IsZero():
		return errorf(ErrDeleted, "video %s was deleted (at %s); use a new id", videoID, at.UTC().Format(time.RFC3339))
	}
	return nil
}

// noticeDeleted publishes one deletion notice per version, as the garbage
// collector does, on a connection of its own (deletions are rare).
func (c *Client) noticeDeleted(ctx context.Context, videoID string, versions []int) error {
	if len(versions) == 0 || c.redis == nil {
		return nil
	}
	rdb, ok := c.redis.MakeRedisClient().(redis.UniversalClient)
	if !ok {
		return errors.New("jobs: deletion notices: the Redis options make no go-redis client")
	}
	defer rdb.Close()
	pub, err := deletions.NewPublisher(rdb, deletions.Channel)
	if err != nil {
		return err
	}
	var errs []error
	for _, v := range versions {
		errs = append(errs, pub.VersionDeleted(ctx, videoID, v))
	}
	return errors.Join(errs...)
}

// Cancellation waits: how long Cancel waits for a running task to leave
// its worker after the stop signal, and how often it looks.
const (
	stopWait = 10 * time.Second
	stopPoll = 50 * time.Millisecond
)

func (c *Client) stopTasks(ctx context.Context, cancelled []catalog.CancelledJob) ([]CancelledJob, error) {
	out := make([]CancelledJob, 0, len(cancelled))
	var errs []error
	for _, cj := range cancelled {
		j := CancelledJob{TaskID: cj.Job.TaskID, Source: cj.Job.Source, Was: string(cj.Was), Task: TaskGone}
		var err error
		// Only a transcode task is the job's own: a backfill job runs
		// inside its run's batch task, which must not be stopped.
		if strings.HasPrefix(cj.Job.TaskID, "transcode-") {
			j.Task, err = c.stopTask(ctx, cj.Job.TaskID)
		}
		out = append(out, j)
		if err != nil {
			errs = append(errs, fmt.Errorf("task %s: %w", cj.Job.TaskID, err))
		}
	}
	return out, errors.Join(errs...)
}

// cancelQueues are where a transcode task of this client can be: its own
// queue and, for the default naming, the background queue of the same
// prefix (backfill re-transcodes enqueue there). Only this deployment's
// queues: another deployment sharing the Redis may hold a task of the
// same id (the id is derived from video and source) for its own catalog.
func (c *Client) cancelQueues() []string {
	return append(c.cfg.taskQueues(), c.cfg.Queues.Background)
}

// stopTask removes a waiting task or stops a running one.
func (c *Client) stopTask(ctx context.Context, taskID string) (TaskOutcome, error) {
	for _, q := range c.cancelQueues() {
		info, err := c.inspector.GetTaskInfo(q, taskID)
		if errors.Is(err, asynq.ErrTaskNotFound) || errors.Is(err, asynq.ErrQueueNotFound) {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("inspect: %w", err)
		}
		switch info.State {
		case asynq.TaskStateActive:
			return c.stopActive(ctx, q, taskID)
		case asynq.TaskStateArchived, asynq.TaskStateCompleted:
			return TaskGone, nil
		}
		err = c.inspector.DeleteTask(q, taskID)
		if err == nil {
			return TaskRemoved, nil
		}
		if errors.Is(err, asynq.ErrTaskNotFound) {
			return TaskGone, nil
		}
		// A worker took it between the look and the delete.
		if info, ierr := c.inspector.GetTaskInfo(q, taskID); ierr == nil && info.State == asynq.TaskStateActive {
			return c.stopActive(ctx, q, taskID)
		}
		return "", fmt.Errorf("remove from queue %s: %w", q, err)
	}
	return TaskGone, nil
}

// stopActive cancels a running task's handler and archives the task once
// its worker lets go of it. asynq itself would retry it: a handler whose
// context is cancelled is a failure to asynq, whatever the handler
// returns. Archiving is what keeps asynqmon's view honest; the work is
// never redone either way (the job is cancelled in the catalog, and a
// delivery of it is archived at once by the worker).
func (c *Client) stopActive(ctx context.Context, queue, taskID string) (TaskOutcome, error) {
	if err := c.inspector.CancelProcessing(taskID); err != nil {
		return "", fmt.Errorf("stop the running task: %w", err)
	}
	deadline := time.NewTimer(stopWait)
	defer deadline.Stop()
	tick := time.NewTicker(stopPoll)
	defer tick.Stop()
	for {
		info, err := c.inspector.GetTaskInfo(queue, taskID)
		switch {
		case errors.Is(err, asynq.ErrTaskNotFound):
			return TaskStopped, nil
		case err != nil:
			return "", fmt.Errorf("inspect: %w", err)
		case info.State == asynq.TaskStateArchived || info.State == asynq.TaskStateCompleted:
			return TaskStopped, nil
		case info.State != asynq.TaskStateActive:
			// Back in a queue for a retry: archive it. Should a worker take it
			// first, that delivery archives itself.
			if err := c.inspector.ArchiveTask(queue, taskID); err != nil && !errors.Is(err, asynq.ErrTaskNotFound) {
				if info, ierr := c.inspector.GetTaskInfo(queue, taskID); ierr != nil || info.State != asynq.TaskStateActive {
					return "", fmt.Errorf("archive: %w", err)
				}
			}
			return TaskStopped, nil
		}
		select {
		case <-ctx.Done():
			return TaskStopRequested, nil
		case <-deadline.C:
			return TaskStopRequested, nil
		case <-tick.C:
		}
	}
}
