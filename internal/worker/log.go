package worker

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/hibiken/asynq"
)

type loggerKey struct{}

// Logger returns the task's logger that Logging put in ctx, or fallback
// outside a task.
func Logger(ctx context.Context, fallback *slog.Logger) *slog.Logger {
	if l, ok := ctx.Value(loggerKey{}).(*slog.Logger); ok {
		return l
	}
	return fallback
}

// Outcomes in the end-of-task log line.
const (
	OutcomeOK        = "ok"
	OutcomeFailed    = "failed"
	OutcomeSkipRetry = "skip_retry" // archived at once, never retried
	// OutcomeCanceled: the task's context was cancelled while it ran, by
	// a shutdown (requeued, no retry spent) or by an operator.
	OutcomeCanceled = "canceled"
)

// Logging is middleware that gives every task a logger with its type, id,
// queue and retry count in the group "asynq" (see Logger), and logs one
// line when the task ends with its outcome and duration (seconds, a
// float). Not "task": the pipeline's own lines carry "task" as the task id
// string, and one attribute name with two types breaks log indexes.
func Logging(log *slog.Logger) asynq.MiddlewareFunc {
	return func(next asynq.Handler) asynq.Handler {
		return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
			id, _ := asynq.GetTaskID(ctx)
			queue, _ := asynq.GetQueueName(ctx)
			retry, _ := asynq.GetRetryCount(ctx)
			l := log.With(slog.Group("asynq", "type", t.Type(), "id", id, "queue", queue, "retry", retry))
			start := time.Now()
			err := next.ProcessTask(context.WithValue(ctx, loggerKey{}, l), t)
			outcome, level := OutcomeOK, slog.LevelInfo
			switch {
			case err == nil:
			case errors.Is(err, context.Canceled) && ctx.Err() != nil:
				outcome = OutcomeCanceled
			case errors.Is(err, asynq.SkipRetry):
				outcome, level = OutcomeSkipRetry, slog.LevelWarn
			default:
				outcome, level = OutcomeFailed, slog.LevelWarn
			}
			attrs := []any{"outcome", outcome, "seconds", time.Since(start).Seconds()}
			if err != nil {
				attrs = append(attrs, "err", err)
			}
			l.Log(ctx, level, "task done", attrs...)
			return err
		})
	}
}
