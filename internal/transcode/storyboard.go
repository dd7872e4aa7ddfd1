package transcode

import (
	"context"
	"errors"
	"fmt"
	"image"
	_ "image/jpeg" // sprite sizes are read back with image.DecodeConfig
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// A storyboard is a title's scrubbing preview: small frames, one every
// Interval, packed into sprite JPEGs of Columns x Rows tiles, and a WebVTT
// track (written by the caller, see internal/storyboard) whose cues point at
// a tile of a sprite with #xywh=. It is made by a second, cheap ffmpeg pass
// over the source that decodes keyframes only (-skip_frame nokey): each
// thumbnail is a keyframe of the source from within its cue's interval, or,
// when the source has none there, the last keyframe before, so it is off by
// at most one source GOP (1 to 2 s for cameras, phones and most web
// encodes), which a 160-pixel preview hides, and the pass
// costs a fraction of a decode of every frame (measured: 0.27 s of CPU against
// 3.8 s for a 20 s 1080p30 source with 2 s GOPs).

// Storyboard defaults and bounds.
const (
	// StoryboardTileWidth is each thumbnail's width in pixels; the height
	// follows the display aspect ratio (even, at least 2).
	StoryboardTileWidth = 160
	// StoryboardColumns and StoryboardMaxRows shape a sprite: 10 x 10
	// thumbnails per JPEG at most, as Mux and PeerTube publish.
	StoryboardColumns = 10
	StoryboardMaxRows = 10
	// StoryboardMaxThumbnails bounds the thumbnails of a title: the
	// interval grows with the duration so that a 2-hour title has at most
	// 1000 (10 sprites).
	StoryboardMaxThumbnails = 1000
	// DefaultStoryboardInterval is the interval of titles short enough.
	DefaultStoryboardInterval = 5 * time.Second
	// MinStoryboardInterval bounds STORYBOARD_INTERVAL from below.
	MinStoryboardInterval = 100 * time.Millisecond
	// storyboardQuality is the JPEG qscale (2 best, 31 worst): 5 keeps
	// text in a 160-pixel frame readable at about 2 to 4 kB per frame.
	storyboardQuality = 5
)

// StoryboardPlan is the geometry of a title's storyboard, decided before
// ffmpeg runs so that the WebVTT track is ours, not ffmpeg's.
type StoryboardPlan struct {
	Interval   time.Duration // between thumbnails, a whole number of milliseconds
	Duration   time.Duration // the title's; the last cue ends there
	Thumbnails int           // ceil(Duration / Interval)
	Columns    int           // tiles per sprite row
	Rows       int           // tile rows per sprite
	TileWidth  int
	TileHeight int
	Sprites    int // ceil(Thumbnails / (Columns x Rows))
}

// SpriteWidth and SpriteHeight are each sprite's pixel size: the tile
// filter always writes a whole grid (a last partial sprite is padded).
func (s StoryboardPlan) SpriteWidth() int  { return s.Columns * s.TileWidth }
func (s StoryboardPlan) SpriteHeight() int { return s.Rows * s.TileHeight }

// StoryboardInterval is the interval rule: base (the configured
// interval), or longer when the title would otherwise have more than
// StoryboardMaxThumbnails thumbnails: ceil(duration / 1000) rounded up to
// a whole second (a 2 h title: 8 s, 900 thumbnails).
func StoryboardInterval(duration, base time.Duration) time.Duration {
	if base <= 0 {
		base = DefaultStoryboardInterval
	}
	base = base.Truncate(time.Millisecond)
	if int64(math.Ceil(float64(duration)/float64(base))) <= StoryboardMaxThumbnails {
		return base
	}
	secs := math.Ceil(duration.Seconds() / StoryboardMaxThumbnails)
	return max(base, time.Duration(secs)*time.Second)
}

// PlanStoryboard decides the storyboard of a source of the given display
// size and duration, with base as the configured interval.
func PlanStoryboard(displayWidth, displayHeight int, duration, base time.Duration) (StoryboardPlan, error) {
	if displayWidth <= 0 || displayHeight <= 0 {
		return StoryboardPlan{}, fmt.Errorf("transcode: storyboard: display size %dx%d", displayWidth, displayHeight)
	}
	if duration <= 0 {
		return StoryboardPlan{}, fmt.Errorf("transcode: storyboard: duration %v", duration)
	}
	if base != 0 && base < MinStoryboardInterval {
		return StoryboardPlan{}, fmt.Errorf("transcode: storyboard: interval %v is below %v", base, MinStoryboardInterval)
	}
	iv := StoryboardInterval(duration, base)
	n := int(math.Ceil(float64(duration) / float64(iv)))
	th := 2 * int(math.Round(float64(StoryboardTileWidth)*float64(displayHeight)/float64(displayWidth)/2))
	th = min(max(th, 2), 4*StoryboardTileWidth) // a 1:4 strip at most
	rows := min(StoryboardMaxRows, (n+StoryboardColumns-1)/StoryboardColumns)
	per := StoryboardColumns * rows
	return StoryboardPlan{Interval: iv, Duration: duration, Thumbnails: n, Columns: StoryboardColumns, Rows: rows,
		TileWidth: StoryboardTileWidth, TileHeight: th, Sprites: (n + per - 1) / per}, nil
}

// SpriteName is sprite i's file and object name inside the storyboard
// directory.
func SpriteName(i int) string { return fmt.Sprintf("sprite_%03d.jpg", i) }

// spritePattern is the image2 muxer's pattern for SpriteName.
const spritePattern = "sprite_%03d.jpg"

// StoryboardArgs returns ffmpeg's argv (without the program name) that
// writes the sprites of plan for the video of p, a file at absPath, into
// outDir as sprite_000.jpg, sprite_001.jpg, …, hardened like the other
// decoder runs (file: input, the probed demuxer forced and whitelisted,
// only the file protocol, capped probing, pixels and allocations, no audio,
// subtitles or data, no metadata). Only keyframes are decoded. fps picks
// one frame per interval (round=down: a frame counts for the interval it
// falls in; eof_action=pass: the last interval gets its frame too),
// scale makes the tile (square pixels), tile packs the grid; -frames:v
// stops after the last sprite the plan counts.
func StoryboardArgs(p *Probe, plan StoryboardPlan, absPath, outDir string) ([]string, error) {
	switch {
	case !filepath.IsAbs(absPath):
		return nil, fmt.Errorf("transcode: storyboard: input %q is not absolute", absPath)
	case !filepath.IsAbs(outDir) || strings.Contains(outDir, "%"):
		return nil, fmt.Errorf("transcode: storyboard: output directory %q is not absolute or contains %%", outDir)
	case !allowedFormat(p.Format):
		return nil, fmt.Errorf("transcode: storyboard: container %q is not allowed", p.Format)
	case plan.Interval < time.Millisecond || plan.Sprites < 1 || plan.TileWidth < 2 || plan.TileHeight < 2 || plan.Rows < 1 || plan.Columns < 1:
		return nil, fmt.Errorf("transcode: storyboard: invalid plan %+v", plan)
	}
	vf := fmt.Sprintf("fps=fps=1000/%d:round=down:eof_action=pass,scale=%d:%d:flags=bilinear,setsar=1,tile=%dx%d",
		plan.Interval.Milliseconds(), plan.TileWidth, plan.TileHeight, plan.Columns, plan.Rows)
	return []string{
		"-hide_banner", "-nostdin", "-nostats", "-loglevel", "error",
		"-max_alloc", strconv.Itoa(maxAlloc),
		"-protocol_whitelist", "file",
		"-format_whitelist", p.Format,
		"-f", p.Format,
		"-probesize", strconv.Itoa(probeSize),
		"-analyzeduration", strconv.Itoa(analyzeDuration),
		"-max_probe_packets", strconv.Itoa(maxProbePackets),
		"-max_pixels", strconv.FormatInt(DefaultLimits().MaxPixels, 10),
		"-skip_frame", "nokey",
		"-i", "file:" + absPath,
		"-map", "0:" + strconv.Itoa(p.Video.Index),
		"-an", "-sn", "-dn",
		"-map_metadata", "-1",
		"-vf", vf,
		"-frames:v", strconv.Itoa(plan.Sprites),
		"-c:v", "mjpeg", "-q:v", strconv.Itoa(storyboardQuality),
		"-f", "image2", "-start_number", "0",
		filepath.Clean(outDir) + "/" + spritePattern,
	}, nil
}

// ErrStoryboard marks a storyboard pass whose output is not what the plan
// said (missing sprites, a wrong size).
var ErrStoryboard = errors.New("storyboard output does not match its plan")

// MakeStoryboard runs StoryboardArgs in the decoder sandbox (reading only
// path, writing only outDir, which must exist) under lim's ProbeTimeout
// plus a tenth of the duration, and checks that every sprite the plan
// counts is a JPEG of the plan's size. It returns the sprites' paths.
func MakeStoryboard(ctx context.Context, x *Exec, path, outDir string, p *Probe, plan StoryboardPlan, lim Limits) ([]string, error) {
	if x == nil {
		return nil, errNoExec
	}
	args, err := StoryboardArgs(p, plan, path, outDir)
	if err != nil {
		return nil, err
	}
	lim = lim.withDefaults()
	sctx, cancel := context.WithTimeout(ctx, lim.ProbeTimeout+plan.Duration/10)
	defer cancel()
	cmd, err := x.Command(sctx, FFmpeg, args, []string{path}, []string{outDir})
	if err != nil {
		return nil, err
	}
	stderr := newTail(8 << 10)
	cmd.Stderr = stderr
	if err := runGroup(cmd); err != nil {
		switch {
		case ctx.Err() != nil:
			return nil, fmt.Errorf("transcode: storyboard: %w", ctx.Err())
		case sctx.Err() != nil:
			return nil, fmt.Errorf("transcode: storyboard: not done within its deadline: %w", sctx.Err())
		}
		return nil, fmt.Errorf("transcode: storyboard: %w: %s", err, stderr.String())
	}
	return CheckSprites(outDir, plan)
}

// CheckSprites holds what the storyboard pass wrote in dir to plan: the
// sprites SpriteName(0) … SpriteName(plan.Sprites-1), each a JPEG of
// SpriteWidth x SpriteHeight, and nothing else.
func CheckSprites(dir string, plan StoryboardPlan) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("transcode: storyboard: %w", err)
	}
	if len(ents) != plan.Sprites {
		return nil, fmt.Errorf("transcode: %w: %d files for %d sprites", ErrStoryboard, len(ents), plan.Sprites)
	}
	out := make([]string, plan.Sprites)
	for i := range out {
		out[i] = filepath.Join(dir, SpriteName(i))
		f, err := os.Open(out[i])
		if err != nil {
			return nil, fmt.Errorf("transcode: %w: %w", ErrStoryboard, err)
		}
		cfg, format, err := image.DecodeConfig(f)
		f.Close()
		if err != nil || format != "jpeg" || cfg.Width != plan.SpriteWidth() || cfg.Height != plan.SpriteHeight() {
			return nil, fmt.Errorf("transcode: %w: %s is %s %dx%d (%v), not a %dx%d JPEG", ErrStoryboard, SpriteName(i),
				format, cfg.Width, cfg.Height, err, plan.SpriteWidth(), plan.SpriteHeight())
		}
	}
	return out, nil
}
