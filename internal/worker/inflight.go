package worker

import (
	"context"
	"sync"

	"github.com/hibiken/asynq"
)

// inflight counts this process's running tasks by the queue they came
// from, for the hlsvault_inflight_tasks gauge: asynq's own counts are per
// queue across every worker, not per process.
type inflight struct {
	mu sync.Mutex
	n  map[string]int
}

func (f *inflight) add(ctx context.Context, d int) {
	q, _ := asynq.GetQueueName(ctx)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n == nil {
		f.n = map[string]int{}
	}
	f.n[q] += d
}

// InFlight returns how many tasks this server is running now, by queue;
// a queue with none may be absent.
func (s *Server) InFlight() map[string]int {
	s.busy.mu.Lock()
	defer s.busy.mu.Unlock()
	out := make(map[string]int, len(s.busy.n))
	for q, n := range s.busy.n {
		out[q] = n
	}
	return out
}
