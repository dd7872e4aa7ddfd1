package jobs

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/hlsvault/hlsvault/internal/catalog"
	"github.com/hlsvault/hlsvault/internal/ids"
)

// State is where a video (or its latest job) is, as the upload service
// sees it.
type State string

// States. Published, Failed, Cancelled and Deleted are final: Wait
// returns on them.
const (
	Queued     State = "queued"
	Processing State = "processing"
	Published  State = "published"
	Failed     State = "failed"
	Cancelled  State = "cancelled"
	Deleted    State = "deleted" // the video was deleted; it no longer plays
)

// Final says whether a job in state s will not change by itself.
func (s State) Final() bool {
	return s == Published || s == Failed || s == Cancelled || s == Deleted
}

// Stage is what a processing job is doing.
type Stage string

// Stages, in order.
const (
	StageDownload Stage = "download"
	StageProbe    Stage = "probe"
	StageEncode   Stage = "encode"
	StageUpload   Stage = "upload"
	StagePublish  Stage = "publish"
)

// JobOptions are a job's overrides of the worker's settings.
type JobOptions struct {
	Ladder   string   `json:"ladder,omitempty"`
	Preset   string   `json:"preset,omitempty"`
	Priority Priority `json:"priority,omitempty"`
	Segments string   `json:"segments,omitempty"`
}

// Job is one request to package a video from a source.
type Job struct {
	ID       int64   `json:"id"`
	VideoID  string  `json:"video_id"`
	TaskID   string  `json:"task_id"`
	Source   string  `json:"source"`
	State    State   `json:"state"`
	Stage    Stage   `json:"stage,omitempty"`
	Progress float64 `json:"progress"` // percent of the encode
	// Error is why the last attempt failed (while queued: why it is
	// being retried).
	Error    string `json:"error,omitempty"`
	Attempts int    `json:"attempts"`
	// Version is the version the job published (0 until then).
	Version  int             `json:"version,omitempty"`
	Metadata json.RawMessage `json:"metadata"`
	Options  JobOptions      `json:"options"`
	// Subtitles are the sidecar subtitle files the job publishes: the
	// request's, or those it carried (EnqueueResult.CarriedSubtitles).
	Subtitles []Subtitle `json:"subtitles,omitempty"`
	// CreatedAt is when the job was first requested, EnqueuedAt when it
	// was last enqueued, StartedAt when its first attempt began,
	// FinishedAt when its last attempt ended.
	CreatedAt  time.Time  `json:"created_at"`
	EnqueuedAt time.Time  `json:"enqueued_at"`
	StartedAt  *time.Time `json:"started_at,omitempty"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
	UpdatedAt  time.Time  `json:"updated_at"`
}

// Duration is how long the job has run: from its first attempt's start to
// its end, or to now while it is not finished; 0 before it starts.
func (j Job) Duration() time.Duration {
	if j.StartedAt == nil {
		return 0
	}
	end := time.Now()
	if j.FinishedAt != nil {
		end = *j.FinishedAt
	}
	return max(end.Sub(*j.StartedAt), 0)
}

// Rendition is one published rendition of a version.
type Rendition struct {
	Name             string  `json:"name"`
	Playlist         string  `json:"playlist"` // object name of its media playlist
	Width            int     `json:"width"`
	Height           int     `json:"height"`
	Bandwidth        int64   `json:"bandwidth"`
	AverageBandwidth int64   `json:"average_bandwidth"`
	Codecs           string  `json:"codecs"`
	FrameRate        float64 `json:"frame_rate"`
	Segments         int     `json:"segments"`
	Duration         float64 `json:"duration"` // seconds
	// An alternate audio rendition (EXT-X-MEDIA TYPE=AUDIO of a source
	// with several audio tracks) has Type "audio", its GROUP-ID, BCP 47
	// language ("" when unknown), NAME, channel count and whether it is
	// the DEFAULT; a video rendition has Type "", a WebVTT subtitle
	// rendition "subtitles" (with its language and label). The thumbnail
	// storyboard has Type "storyboard": then Playlist is its WebVTT
	// track's object name, Width and Height one thumbnail's size, Segments
	// the number of sprite images (played through the gateway's
	// /v1/videos/{video}/storyboard.vtt).
	Type     string `json:"type,omitempty"`
	Group    string `json:"group,omitempty"`
	Language string `json:"language,omitempty"`
	Label    string `json:"label,omitempty"`
	Channels int    `json:"channels,omitempty"`
	Default  bool   `json:"default,omitempty"`
}

// Version is the published version a video plays.
type Version struct {
	Number int `json:"number"`
	// Master is the object name of the master playlist, e.g.
	// "hls/3f2b6c1e/v1/master.m3u8".
	Master      string      `json:"master"`
	Renditions  []Rendition `json:"renditions"`
	Duration    float64     `json:"duration"` // seconds
	PublishedAt time.Time   `json:"published_at"`
	// Storyboard says whether the version has a thumbnail storyboard (a
	// rendition of Kind "storyboard", served at the gateway's
	// /v1/videos/{video}/storyboard.vtt).
	Storyboard bool `json:"storyboard"`
}

// Status is a video's state, its latest job and the version it plays.
type Status struct {
	VideoID string `json:"video_id"`
	// State is the latest job's state, or Deleted.
	State State `json:"state"`
	Job   *Job  `json:"job,omitempty"`
	// Current is the version viewers get; nil before the first publish
	// and after a delete.
	Current *Version `json:"current,omitempty"`
}

func publicJob(j catalog.Job) Job {
	meta := j.Metadata
	if len(meta) == 0 {
		meta = json.RawMessage("{}")
	}
	return Job{ID: j.ID, VideoID: j.VideoID, TaskID: j.TaskID, Source: j.Source, State: State(j.State), Stage: Stage(j.Stage),
		Progress: j.Progress, Error: j.Error, Attempts: j.Attempts, Version: j.Version, Metadata: meta,
		Options: JobOptions{Ladder: j.Options.Ladder, Preset: j.Options.Preset, Priority: Priority(j.Options.Priority),
			Segments: j.Options.Segments},
		Subtitles: publicSubtitles(j.Options.Subtitles),
		CreatedAt: j.CreatedAt, EnqueuedAt: j.EnqueuedAt, StartedAt: j.StartedAt, FinishedAt: j.FinishedAt, UpdatedAt: j.UpdatedAt}
}

func publicStatus(o catalog.Overview) Status {
	j := publicJob(o.Job)
	s := Status{VideoID: o.VideoID, State: j.State, Job: &j}
	if o.DeletedAt != nil {
		s.State = Deleted
	}
	if v := o.Current; v != nil && o.DeletedAt == nil {
		pv := &Version{Number: v.Version, Master: v.Master, Duration: v.Duration, PublishedAt: v.PublishedAt,
			Renditions: make([]Rendition, len(v.Renditions))}
		for i, r := range v.Renditions {
			pv.Renditions[i] = Rendition(r)
			pv.Storyboard = pv.Storyboard || r.Type == catalog.RenditionStoryboard
		}
		s.Current = pv
	}
	return s
}

// Status reports a video's state, its latest job and its current version.
// It wraps ErrNotFound if no job was ever enqueued for the video.
func (c *Client) Status(ctx context.Context, videoID string) (Status, error) {
	if err := ids.ValidateVideoID(videoID); err != nil {
		return Status{}, fmt.Errorf("%w: %w", ErrInvalidPayload, err)
	}
	o, err := c.db.VideoOverview(ctx, videoID)
	if err != nil {
		return Status{VideoID: videoID}, fmt.Errorf("jobs: status: %w", c.dbErr(err))
	}
	return publicStatus(o), nil
}

// Job returns the job recorded under taskID, for following one request.
func (c *Client) Job(ctx context.Context, taskID string) (Job, error) {
	j, err := c.db.JobByTask(ctx, taskID)
	if err != nil {
		return Job{}, fmt.Errorf("jobs: %w", c.dbErr(err))
	}
	return publicJob(j), nil
}
