package pipeline

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/hlsvault/hlsvault/internal/catalog"
	"github.com/hlsvault/hlsvault/internal/packager"
	"github.com/hlsvault/hlsvault/internal/storyboard"
	"github.com/hlsvault/hlsvault/internal/transcode"
)

// StoryboardConfig turns the thumbnail storyboard on and sets its
// interval (see transcode.StoryboardInterval for how long titles stretch
// it).
type StoryboardConfig struct {
	Enabled bool
	// Interval between thumbnails; 0: transcode.DefaultStoryboardInterval.
	Interval time.Duration
}

// makeStoryboard runs the storyboard pass over the source, stores its
// sprites and WebVTT track under the version prefix and returns the
// rendition that records it, or nil when the storyboard is off or failed.
//
// A failure is tolerated with a log line: the storyboard is a scrubbing
// preview, and a title that plays is worth more than one refused for its
// thumbnails; the version is then published without one (its status says
// so) and objects the pass stored are never referenced, so never served,
// and go with the version. Only the attempt's own end (cancelled, out of
// time) is returned.
func (p *Pipeline) makeStoryboard(ctx context.Context, log *slog.Logger, dir, src string, probe *transcode.Probe, v *packager.Version) (*catalog.Rendition, error) {
	if !p.cfg.Storyboard.Enabled {
		return nil, nil
	}
	start := time.Now()
	r, err := p.storyboard(ctx, dir, src, probe, v)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("pipeline: storyboard: %w", context.Cause(ctx))
		}
		log.Warn("storyboard failed; publishing without one", "err", withoutPath(err, dir))
		return nil, nil
	}
	log.Info("storyboard stored", "sprites", r.Segments, "seconds", time.Since(start).Seconds())
	return r, nil
}

func (p *Pipeline) storyboard(ctx context.Context, dir, src string, probe *transcode.Probe, v *packager.Version) (*catalog.Rendition, error) {
	plan, err := transcode.PlanStoryboard(probe.Video.DisplayWidth, probe.Video.DisplayHeight, probe.Duration, p.cfg.Storyboard.Interval)
	if err != nil {
		return nil, err
	}
	out := filepath.Join(dir, "storyboard")
	if err := os.Mkdir(out, 0o700); err != nil {
		return nil, fmt.Errorf("pipeline: storyboard: %w", err)
	}
	sprites, err := transcode.MakeStoryboard(ctx, p.cfg.Exec, src, out, probe, plan, p.cfg.Limits)
	if err == nil && p.storyboardHook != nil {
		err = p.storyboardHook(out)
	}
	if err != nil {
		return nil, err
	}
	track, err := storyboard.Write(storyboard.Geometry{Interval: plan.Interval, Duration: plan.Duration, Thumbnails: plan.Thumbnails,
		Columns: plan.Columns, Rows: plan.Rows, TileWidth: plan.TileWidth, TileHeight: plan.TileHeight}, storyboard.SpriteName)
	if err != nil {
		return nil, err
	}
	for i, path := range sprites {
		if err := p.putSprite(ctx, v, i, path); err != nil {
			return nil, err
		}
	}
	name, size, err := v.WriteStoryboardTrack(ctx, track, len(sprites), plan.Duration)
	if err != nil {
		return nil, err
	}
	p.metrics.uploadedBytes.Add(float64(size))
	return &catalog.Rendition{Name: catalog.RenditionStoryboard, Type: catalog.RenditionStoryboard, Playlist: name,
		Width: plan.TileWidth, Height: plan.TileHeight, Segments: len(sprites), Duration: plan.Duration.Seconds()}, nil
}

func (p *Pipeline) putSprite(ctx context.Context, v *packager.Version, i int, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("pipeline: storyboard: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("pipeline: storyboard: %w", err)
	}
	if _, err := v.PutStoryboardSprite(ctx, i, f, fi.Size()); err != nil {
		return fmt.Errorf("pipeline: storyboard: %w", err)
	}
	p.metrics.uploadedBytes.Add(float64(fi.Size()))
	return nil
}
