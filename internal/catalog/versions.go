package catalog

import (
	"context"
	"fmt"
)

// VersionStates counts a video's versions by state (pending, published,
// superseded, deleted), for operators and tests.
func (db *DB) VersionStates(ctx context.Context, videoID string) (map[string]int, error) {
	rows, err := db.pool.Query(ctx, `select state, count(*) from versions where video_id = $1 group by state`, videoID)
	if err != nil {
		return nil, fmt.Errorf("catalog: versions of %s: %w", videoID, err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var (
			state string
			n     int
		)
		if err := rows.Scan(&state, &n); err != nil {
			return nil, fmt.Errorf("catalog: versions of %s: %w", videoID, err)
		}
		out[state] = n
	}
	return out, rows.Err()
}
