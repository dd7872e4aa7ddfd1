package catalog

import (
	"context"
	"fmt"
)

// JobStage is the step of an attempt a processing job is in (jobs.stage,
// migration 007), so that `enqueue status` and --wait can say where a job
// is, and where a failed one stopped.
type JobStage string

// Job stages, in the order an attempt goes through them.
const (
	// StageDownload: the source is being copied from storage.
	StageDownload JobStage = "download"
	// StageProbe: ffprobe, the integrity and interlace checks, the plan.
	StageProbe JobStage = "probe"
	// StageEncode: ffmpeg runs; finished segments are uploaded meanwhile.
	StageEncode JobStage = "encode"
	// StageUpload: ffmpeg has exited; the remaining segments are stored.
	StageUpload JobStage = "upload"
	// StagePublish: playlists are written and the version published.
	StagePublish JobStage = "publish"
)

// SetStage records the stage a processing job is in. A job that is no
// longer processing (cancelled, failed, requeued by a shutdown) is left as
// it is: the stage is only ever that of the running attempt. The stage is
// kept when the attempt ends, so a failed job shows the last stage it
// reached; the next attempt overwrites it at its first stage.
func (db *DB) SetStage(ctx context.Context, jobID int64, stage JobStage) error {
	_, err := db.pool.Exec(ctx, `update jobs set stage = $2, updated_at = now() where id = $1 and state = 'processing'`, jobID, string(stage))
	if err != nil {
		return fmt.Errorf("catalog: stage of job %d: %w", jobID, err)
	}
	return nil
}
