// Package backfill re-encrypts the legacy catalogue in the background:
// titles packaged as plain HLS before encryption existed get a fresh key and
// a new version whose every segment is the legacy segment, byte for byte,
// under AES-128-CBC, published through the same atomic path as a new
// transcode. No legacy object is modified or deleted.
//
// An operator starts a run (Client.Start: discovery, then rows in
// backfill_runs and backfill_items); the worker does the rest (Service):
//
//   - backfill:batch re-encrypts a batch of titles, one after another, each
//     on a bounded pool of segment streams, yielding to fresh uploads;
//   - each finishing batch schedules the next ones, keeping at most
//     max-inflight batches outstanding on the background queue;
//   - backfill:tick, a self-rescheduling task, does the same once a minute,
//     re-enqueues batches whose task was lost (a crashed worker, an archived
//     task) and settles items waiting on a re-transcode. Runs therefore
//     survive worker restarts and need nobody attached.
//
// Per title: read the legacy playlists (PlanTitle), make a fresh key, stream
// every segment and init section through AES-128-CBC into the attempt's
// version prefix, read each new object back, decrypt it and compare its
// SHA-256 with the legacy bytes', write the playlists, and only then publish
// (compare-and-swap: never over a fresh upload).
package backfill

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/hibiken/asynq"
)

// Task types.
const (
	TypeBatch = "backfill:batch"
	TypeTick  = "backfill:tick"
)

// BatchPayload is the body of a TypeBatch task.
type BatchPayload struct {
	RunID int64   `json:"run_id"`
	Batch int     `json:"batch"`
	Items []int64 `json:"items"`
}

// TickPayload is the body of a TypeTick task.
type TickPayload struct {
	RunID int64 `json:"run_id"`
}

// batchTaskID is unique per batch: asynq refuses a second task with it
// while the first exists, so a batch re-enqueued by the tick and by the
// scheduler at once runs once.
func batchTaskID(runID int64, batch int) string {
	return fmt.Sprintf("backfill-%d-b%d", runID, batch)
}

// tickTaskID is unique per run and tick slot, so that however many places
// schedule the next tick, one runs per interval.
func tickTaskID(runID int64, at time.Time, every time.Duration) string {
	return fmt.Sprintf("backfill-%d-tick-%d", runID, at.UnixNano()/int64(every))
}

// jobTaskID names the catalog job of one title in one run.
func jobTaskID(runID int64, video string) string {
	return fmt.Sprintf("backfill-%d-%s", runID, video)
}

func newBatchTask(b BatchPayload) (*asynq.Task, error) {
	body, err := json.Marshal(b)
	if err != nil {
		return nil, err
	}
	return asynq.NewTask(TypeBatch, body), nil
}

func newTickTask(runID int64) (*asynq.Task, error) {
	body, err := json.Marshal(TickPayload{RunID: runID})
	if err != nil {
		return nil, err
	}
	return asynq.NewTask(TypeTick, body), nil
}

// RunOptions are a run's options as stored in backfill_runs.options.
type RunOptions struct {
	Prefix string `json:"prefix,omitempty"`
	// IDsFile is where --ids came from ("-": stdin); IDsDigest the SHA-256
	// of the sorted, distinct ids (the ids themselves are the items).
	IDsFile      string `json:"ids_file,omitempty"`
	IDsDigest    string `json:"ids_sha256,omitempty"`
	IDsCount     int    `json:"ids_count,omitempty"`
	FromDB       bool   `json:"from_db,omitempty"`
	LegacyPrefix string `json:"legacy_prefix"`
	Rekey        bool   `json:"rekey,omitempty"`
	// RekeyBefore: versions published before it are re-keyed (the creation
	// of the first re-key run with the same label).
	RekeyBefore    time.Time         `json:"rekey_before,omitzero"`
	Retranscode    bool              `json:"retranscode,omitempty"`
	SourceTemplate string            `json:"source_template,omitempty"`
	KeepLegacy     bool              `json:"keep_legacy,omitempty"`
	Label          string            `json:"label,omitempty"`
	URLMap         map[string]string `json:"url_map,omitempty"`
}
