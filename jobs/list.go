package jobs

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/hlsvault/hlsvault/internal/catalog"
)

// ListOptions select a page of List.
type ListOptions struct {
	// State keeps only videos in this state (empty: all).
	State State
	// Limit is the page size (default 50, at most 1000).
	Limit int
	// After is the previous page's Next: the page resumes after it.
	After string
}

// VideoSummary is one video in a List.
type VideoSummary struct {
	VideoID string `json:"video_id"`
	State   State  `json:"state"`
	// Version is the current version (0: none yet, or deleted).
	Version   int             `json:"version"`
	Stage     Stage           `json:"stage,omitempty"`
	Progress  float64         `json:"progress"`
	Error     string          `json:"error,omitempty"`
	Metadata  json.RawMessage `json:"metadata"`
	UpdatedAt time.Time       `json:"updated_at"`
}

// Page is one page of List, most recently changed first.
type Page struct {
	Videos []VideoSummary `json:"videos"`
	// Next, when not empty, is the ListOptions.After of the next page.
	Next string `json:"next,omitempty"`
}

// List returns videos with their state, current version and last change,
// newest first, a page at a time (keyset pagination: a page is stable
// while videos change, each video appears once per pass unless it changes
// during it).
func (c *Client) List(ctx context.Context, o ListOptions) (Page, error) {
	switch o.State {
	case "", Queued, Processing, Published, Failed, Cancelled, Deleted:
	default:
		return Page{}, fmt.Errorf("%w: state %q: want queued, processing, published, failed, cancelled or deleted", ErrInvalidPayload, o.State)
	}
	if o.Limit <= 0 {
		o.Limit = 50
	}
	o.Limit = min(o.Limit, 1000)
	after, err := parseCursor(o.After)
	if err != nil {
		return Page{}, err
	}
	rows, err := c.db.ListVideos(ctx, string(o.State), after, o.Limit)
	if err != nil {
		return Page{}, fmt.Errorf("jobs: list: %w", c.dbErr(err))
	}
	p := Page{Videos: make([]VideoSummary, len(rows))}
	for i, r := range rows {
		p.Videos[i] = VideoSummary{VideoID: r.VideoID, State: State(r.State), Version: r.Version, Stage: Stage(r.Stage),
			Progress: r.Progress, Error: r.Error, Metadata: r.Metadata, UpdatedAt: r.UpdatedAt}
	}
	if len(rows) == o.Limit {
		last := rows[len(rows)-1]
		p.Next = strconv.FormatInt(last.UpdatedAt.UnixMicro(), 10) + "." + last.VideoID
	}
	return p, nil
}

// parseCursor reads a Page.Next: the microsecond time and id of the last
// row (PostgreSQL keeps microseconds, so the cursor is exact).
func parseCursor(s string) (catalog.VideoCursor, error) {
	if s == "" {
		return catalog.VideoCursor{}, nil
	}
	us, id, ok := strings.Cut(s, ".")
	n, err := strconv.ParseInt(us, 10, 64)
	if !ok || err != nil || id == "" {
		return catalog.VideoCursor{}, fmt.Errorf("%w: list cursor %q is not a Page.Next", ErrInvalidPayload, s)
	}
	return catalog.VideoCursor{UpdatedAt: time.UnixMicro(n), VideoID: id}, nil
}
