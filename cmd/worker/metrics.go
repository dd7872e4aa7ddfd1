package main

import (
	"log/slog"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hlsvault/hlsvault/internal/catalog"
	"github.com/hlsvault/hlsvault/internal/opsmetrics"
	"github.com/hlsvault/hlsvault/internal/webhooks"
	"github.com/hlsvault/hlsvault/internal/worker"
	"github.com/hlsvault/hlsvault/jobs"
)

// servedQueues lists every queue this worker serves, for the queue-depth
// and in-flight metrics: a queue added to the worker must be added here.
// The webhooks queue is served by startWebhooks' own server, so its
// in-flight count stays 0; its depth is what an operator watches.
func servedQueues(q jobs.Queues, prefix string) []string {
	return []string{q.TranscodeHigh, q.Transcode, q.TranscodeLow, q.Background, webhooks.QueueName(prefix)}
}

// registerOpsMetrics registers the collector of what an operator alerts on
// (queue depth, in-flight tasks, backfill progress; internal/opsmetrics)
// and returns the function that releases its Redis connection.
func registerOpsMetrics(reg prometheus.Registerer, redisOpt asynq.RedisConnOpt, db *catalog.DB, srv *worker.Server,
	queues jobs.Queues, prefix string, log *slog.Logger) func() {
	insp := asynq.NewInspector(redisOpt)
	reg.MustRegister(opsmetrics.New(opsmetrics.Config{
		Queues: servedQueues(queues, prefix), Inspector: insp, InFlight: srv.InFlight, Backfill: db, Log: log,
	}))
	return func() { _ = insp.Close() }
}
