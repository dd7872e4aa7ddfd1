package main

import (
	"log/slog"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hlsvault/hlsvault/internal/catalog"
	"github.com/hlsvault/hlsvault/internal/opsmetrics"
	"github.com/hlsvault/hlsvault/internal/worker"
	"github.com/hlsvault/hlsvault/jobs"
)

// servedQueues lists every queue this worker serves, for the queue-depth
// and in-flight metrics: a queue added to the worker must be added here.
func servedQueues(q jobs.Queues) []string {
	return []string{q.Transcode, q.Background}
}

// registerOpsMetrics registers the collector of what an operator alerts on
// (queue depth, in-flight tasks, backfill progress; internal/opsmetrics)
// and returns the function that releases its Redis connection.
func registerOpsMetrics(reg prometheus.Registerer, redisOpt asynq.RedisConnOpt, db *catalog.DB, srv *worker.Server,
	queues jobs.Queues, log *slog.Logger) func() {
	insp := asynq.NewInspector(redisOpt)
	reg.MustRegister(opsmetrics.New(opsmetrics.Config{
		Queues: servedQueues(queues), Inspector: insp, InFlight: srv.InFlight, Backfill: db, Log: log,
	}))
	return func() { _ = insp.Close() }
}
