package catalog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// JobsChannel is the PostgreSQL channel on which every change of a job, of
// a video's current version or of its deletion is announced, with the
// video id as payload (migration 007).
const JobsChannel = "hlsvault_jobs"

// Overview is a video as the upload service's client reports it: its
// latest job, its current version (nil if none) and whether it is deleted.
type Overview struct {
	VideoID   string
	DeletedAt *time.Time
	UpdatedAt time.Time
	Job       Job
	Current   *Version // without keys
}

// VideoOverview reads a video's latest job and current version in one
// snapshot; ErrNotFound if no job was ever recorded for it.
func (db *DB) VideoOverview(ctx context.Context, videoID string) (Overview, error) {
	var o Overview
	err := pgx.BeginTxFunc(ctx, db.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		var (
			version *int
			master  *string
			rend    []byte
			dur     *float64
			pubAt   *time.Time
		)
		err := tx.QueryRow(ctx, `select v.id, v.deleted_at, v.updated_at, ver.version, ver.master, ver.renditions, ver.duration_s, ver.published_at
			from videos v left join versions ver on ver.video_id = v.id and ver.version = v.current_version
			where v.id = $1`, videoID).Scan(&o.VideoID, &o.DeletedAt, &o.UpdatedAt, &version, &master, &rend, &dur, &pubAt)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		if version != nil {
			v := Version{VideoID: videoID, Version: *version, Prefix: VersionPrefix(videoID, *version)}
			if master != nil {
				v.Master = *master
			}
			if dur != nil {
				v.Duration = *dur
			}
			if pubAt != nil {
				v.PublishedAt = *pubAt
			}
			if len(rend) > 0 {
				if err := json.Unmarshal(rend, &v.Renditions); err != nil {
					return fmt.Errorf("renditions: %w", err)
				}
			}
			o.Current = &v
		}
		o.Job, err = scanJob(tx.QueryRow(ctx, `select `+jobColumns+` from jobs where video_id = $1 order by id desc limit 1`, videoID))
		return err
	})
	if err != nil {
		return o, fmt.Errorf("catalog: video %s: %w", videoID, err)
	}
	return o, nil
}

// VideoRow is one line of ListVideos.
type VideoRow struct {
	VideoID   string
	State     string // the latest job's state, or deleted
	Version   int    // current version, 0 if none
	Stage     string
	Progress  float64
	Error     string
	Metadata  json.RawMessage
	UpdatedAt time.Time // the latest change of the video or its latest job
}

// VideoCursor is where a page of ListVideos resumes: after the row with
// this update time and id (the zero value starts at the newest).
type VideoCursor struct {
	UpdatedAt time.Time
	VideoID   string
}

// ListVideos returns at most limit videos, most recently changed first,
// after cursor; state, when set, keeps only videos in it (queued,
// processing, published, failed, cancelled, or deleted).
func (db *DB) ListVideos(ctx context.Context, state string, after VideoCursor, limit int) ([]VideoRow, error) {
	var afterAt *time.Time
	if after.VideoID != "" {
		afterAt = &after.UpdatedAt
	}
	rows, err := db.pool.Query(ctx, `select id, state, coalesce(current_version, 0), stage, progress, error, metadata, updated from (
			select v.id, v.current_version,
				case when v.deleted_at is not null then 'deleted'
					when j.state is not null then j.state
					when v.current_version is not null then 'published'
					else 'queued' end as state,
				coalesce(j.stage, '') as stage, coalesce(j.progress, 0) as progress, coalesce(j.error, '') as error,
				coalesce(j.metadata, '{}'::jsonb) as metadata,
				greatest(v.updated_at, j.updated_at) as updated
			from videos v
			left join lateral (select state, stage, progress, error, metadata, updated_at from jobs
				where video_id = v.id order by id desc limit 1) j on true
		) s
		where ($1 = '' or state = $1)
			and ($2::timestamptz is null or (updated, id) < ($2::timestamptz, $3))
		order by updated desc, id desc
		limit $4`, state, afterAt, after.VideoID, limit)
	if err != nil {
		return nil, fmt.Errorf("catalog: list videos: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (VideoRow, error) {
		var (
			v    VideoRow
			meta []byte
		)
		err := r.Scan(&v.VideoID, &v.State, &v.Version, &v.Stage, &v.Progress, &v.Error, &meta, &v.UpdatedAt)
		v.Metadata = meta
		return v, err
	})
	if err != nil {
		return nil, fmt.Errorf("catalog: list videos: %w", err)
	}
	return out, nil
}

// JobListener is a dedicated connection LISTENing on JobsChannel. It is
// taken out of the pool (a listening session must not be handed to
// another user) and closed by Close.
type JobListener struct {
	conn *pgx.Conn
}

// ListenJobs starts listening on JobsChannel. Every change committed after
// it returns is announced to Next.
func (db *DB) ListenJobs(ctx context.Context) (*JobListener, error) {
	c, err := db.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("catalog: listen: %w", err)
	}
	conn := c.Hijack()
	if _, err := conn.Exec(ctx, "listen "+JobsChannel); err != nil {
		conn.Close(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("catalog: listen: %w", err)
	}
	return &JobListener{conn: conn}, nil
}

// Next blocks until a change is announced and returns its video id.
func (l *JobListener) Next(ctx context.Context) (string, error) {
	n, err := l.conn.WaitForNotification(ctx)
	if err != nil {
		return "", fmt.Errorf("catalog: wait for notification: %w", err)
	}
	return n.Payload, nil
}

// Close ends the listening session.
func (l *JobListener) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return l.conn.Close(ctx)
}

// CheckClientSchema fails unless the schema has what the upload service's
// client reads (migration 007): a missing table or column is PostgreSQL's
// undefined_table or undefined_column error.
func (db *DB) CheckClientSchema(ctx context.Context) error {
	_, err := db.pool.Exec(ctx, `select stage, finished_at, metadata, options from jobs limit 0`)
	if err == nil {
		_, err = db.pool.Exec(ctx, `select deleted_at from videos limit 0`)
	}
	if err != nil {
		return fmt.Errorf("catalog: schema: %w", err)
	}
	return nil
}
