package catalog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// JobSubtitle is a sidecar subtitle file of a job, as jobs.Subtitle: an
// object in storage with the language and name it is published under.
type JobSubtitle struct {
	Language string `json:"language"`
	Name     string `json:"name,omitempty"`
	Source   string `json:"source"`
}

// CarriedSubtitles returns the sidecar subtitles a request for videoID
// that names none publishes with, so that a re-transcode does not lose
// them:
//
//   - the job taskID's own when it exists (a forced re-run or a retry of
//     the same source keeps what it was enqueued with, none included);
//   - else those of the job that published the current version (a new
//     source for a video keeps the subtitles viewers have now);
//   - else none.
//
// The sidecars are objects in storage (uploads/{video}/subs/…) that the
// worker reads again; nothing is copied here.
func (db *DB) CarriedSubtitles(ctx context.Context, videoID, taskID string) ([]JobSubtitle, error) {
	var raw []byte
	err := db.pool.QueryRow(ctx, `select coalesce(
			(select coalesce(options->'subtitles', '[]'::jsonb) from jobs where task_id = $2),
			(select j.options->'subtitles' from jobs j join videos v on v.id = j.video_id and j.version = v.current_version
				where j.video_id = $1 and j.state = 'published' order by j.id desc limit 1),
			'[]'::jsonb)`, videoID, taskID).Scan(&raw)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("catalog: subtitles of %s: %w", videoID, err)
	}
	var subs []JobSubtitle
	if err := json.Unmarshal(raw, &subs); err != nil {
		return nil, fmt.Errorf("catalog: subtitles of %s: %w", videoID, err)
	}
	if len(subs) == 0 {
		return nil, nil
	}
	return subs, nil
}
