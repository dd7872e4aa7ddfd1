// Package storyboard writes and reads the WebVTT thumbnail track of a
// title's storyboard: one cue per thumbnail, from its start to the next's
// (the last ends at the title's duration), whose text is a sprite's URI with
// a media fragment naming the tile, "sprite_000.jpg#xywh=160,0,160,90", as
// Mux, PeerTube, video.js and Vidstack read it.
//
// The track is computed from the geometry decided before ffmpeg ran (the
// interval and the tile grid), never read from ffmpeg. It imports nothing of
// this module, so the worker, the gateway and the tests share it.
package storyboard

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Dir is the storyboard's directory under a version prefix, and VTT the
// track's name in it: {prefix}storyboard/storyboard.vtt, beside the
// sprites {prefix}storyboard/sprite_000.jpg, ….
const (
	Dir = "storyboard/"
	VTT = "storyboard.vtt"
)

// Geometry is what the track is computed from.
type Geometry struct {
	Interval   time.Duration
	Duration   time.Duration
	Thumbnails int
	Columns    int
	Rows       int
	TileWidth  int
	TileHeight int
}

// Validate refuses a geometry whose cues could not be written.
func (g Geometry) Validate() error {
	if g.Interval < time.Millisecond || g.Duration <= 0 || g.Thumbnails < 1 || g.Columns < 1 || g.Rows < 1 || g.TileWidth < 1 || g.TileHeight < 1 {
		return fmt.Errorf("storyboard: invalid geometry %+v", g)
	}
	if time.Duration(g.Thumbnails-1)*g.Interval >= g.Duration {
		return fmt.Errorf("storyboard: %d thumbnails every %v start past the duration %v", g.Thumbnails, g.Interval, g.Duration)
	}
	return nil
}

// Sprites is how many sprites the thumbnails fill.
func (g Geometry) Sprites() int {
	per := g.Columns * g.Rows
	return (g.Thumbnails + per - 1) / per
}

// Cue is one thumbnail's cue.
type Cue struct {
	Start, End time.Duration
	Sprite     string // the URI before '#'
	X, Y, W, H int
}

// Cues returns the track's cues; sprite(i) is sprite i's URI.
func Cues(g Geometry, sprite func(int) string) ([]Cue, error) {
	if err := g.Validate(); err != nil {
		return nil, err
	}
	per := g.Columns * g.Rows
	out := make([]Cue, g.Thumbnails)
	for i := range out {
		t := i % per
		end := time.Duration(i+1) * g.Interval
		if i == g.Thumbnails-1 {
			end = g.Duration
		}
		out[i] = Cue{Start: time.Duration(i) * g.Interval, End: end, Sprite: sprite(i / per),
			X: (t % g.Columns) * g.TileWidth, Y: (t / g.Columns) * g.TileHeight, W: g.TileWidth, H: g.TileHeight}
	}
	return out, nil
}

// Write returns the WebVTT track of g.
func Write(g Geometry, sprite func(int) string) ([]byte, error) {
	cues, err := Cues(g, sprite)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	b.Grow(64 * len(cues))
	b.WriteString("WEBVTT\n")
	for _, c := range cues {
		b.WriteByte('\n')
		b.WriteString(Timestamp(c.Start))
		b.WriteString(" --> ")
		b.WriteString(Timestamp(c.End))
		fmt.Fprintf(&b, "\n%s#xywh=%d,%d,%d,%d\n", c.Sprite, c.X, c.Y, c.W, c.H)
	}
	return b.Bytes(), nil
}

// Timestamp formats d as a WebVTT timestamp, hh:mm:ss.ttt (truncated to
// the millisecond).
func Timestamp(d time.Duration) string {
	ms := d.Milliseconds()
	return fmt.Sprintf("%02d:%02d:%02d.%03d", ms/3_600_000, ms/60_000%60, ms/1000%60, ms%1000)
}

// ParseTimestamp reads a WebVTT timestamp, [hh:]mm:ss.ttt.
func ParseTimestamp(s string) (time.Duration, error) {
	bad := fmt.Errorf("storyboard: bad timestamp %q", s)
	main, frac, ok := strings.Cut(s, ".")
	if !ok || len(frac) != 3 {
		return 0, bad
	}
	parts := strings.Split(main, ":")
	if len(parts) < 2 || len(parts) > 3 {
		return 0, bad
	}
	var total int64
	for i, p := range parts {
		n, err := strconv.ParseInt(p, 10, 64)
		if err != nil || n < 0 || (i > 0 || len(parts) == 2) && len(p) != 2 || i > 0 && n > 59 {
			return 0, bad
		}
		total = total*60 + n
	}
	ms, err := strconv.Atoi(frac)
	if err != nil || ms < 0 {
		return 0, bad
	}
	return time.Duration(total)*time.Second + time.Duration(ms)*time.Millisecond, nil
}

// MaxTrackBytes bounds a track read back (1000 thumbnails take ~70 kB).
const MaxTrackBytes = 1 << 20

// Parse reads a thumbnail track as Write writes it (the header, then cues
// of a timing line and one sprite#xywh= line, separated by blank lines).
func Parse(data []byte) ([]Cue, error) {
	if len(data) > MaxTrackBytes {
		return nil, fmt.Errorf("storyboard: track larger than %d bytes", MaxTrackBytes)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	if !sc.Scan() || strings.TrimPrefix(sc.Text(), "\ufeff") != "WEBVTT" {
		return nil, errors.New("storyboard: no WEBVTT header")
	}
	var cues []Cue
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		a, b, ok := strings.Cut(line, " --> ")
		if !ok {
			return nil, fmt.Errorf("storyboard: expected a cue timing line, got %q", line)
		}
		var c Cue
		var err error
		if c.Start, err = ParseTimestamp(a); err != nil {
			return nil, err
		}
		if c.End, err = ParseTimestamp(b); err != nil {
			return nil, err
		}
		if !sc.Scan() {
			return nil, fmt.Errorf("storyboard: cue at %s has no text", a)
		}
		uri, frag, ok := strings.Cut(sc.Text(), "#xywh=")
		if !ok || uri == "" {
			return nil, fmt.Errorf("storyboard: cue text %q has no #xywh=", sc.Text())
		}
		var xywh [4]int
		fs := strings.Split(frag, ",")
		if len(fs) != 4 {
			return nil, fmt.Errorf("storyboard: bad xywh %q", frag)
		}
		for i, f := range fs {
			if xywh[i], err = strconv.Atoi(f); err != nil || xywh[i] < 0 {
				return nil, fmt.Errorf("storyboard: bad xywh %q", frag)
			}
		}
		c.Sprite, c.X, c.Y, c.W, c.H = uri, xywh[0], xywh[1], xywh[2], xywh[3]
		cues = append(cues, c)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("storyboard: %w", err)
	}
	return cues, nil
}

// Rewrite returns data with each cue's sprite URI replaced by uri(name),
// refusing a cue naming a sprite uri does not know (ok false): the gateway
// turns the stored relative names into signed URLs this way.
func Rewrite(data []byte, uri func(sprite string) (string, bool)) ([]byte, error) {
	if len(data) > MaxTrackBytes {
		return nil, fmt.Errorf("storyboard: track larger than %d bytes", MaxTrackBytes)
	}
	var out bytes.Buffer
	out.Grow(len(data) * 3)
	for line := range bytes.Lines(data) {
		name, rest, ok := bytes.Cut(line, []byte("#xywh="))
		if !ok {
			out.Write(line)
			continue
		}
		u, ok := uri(string(name))
		if !ok {
			return nil, fmt.Errorf("storyboard: cue names an unknown sprite %q", name)
		}
		out.WriteString(u)
		out.WriteString("#xywh=")
		out.Write(rest)
	}
	return out.Bytes(), nil
}

// SpriteName is sprite i's name inside Dir, as the storyboard pass writes
// it.
func SpriteName(i int) string { return fmt.Sprintf("sprite_%03d.jpg", i) }

// SpriteIndex is the inverse of SpriteName.
func SpriteIndex(name string) (int, bool) {
	digits, ok1 := strings.CutPrefix(name, "sprite_")
	digits, ok2 := strings.CutSuffix(digits, ".jpg")
	if !ok1 || !ok2 || len(digits) < 3 {
		return 0, false
	}
	n, err := strconv.Atoi(digits)
	if err != nil || n < 0 || SpriteName(n) != name {
		return 0, false
	}
	return n, true
}

// Check holds cues to the track's promises: the first starts at 0, each
// starts where the one before ended and is not empty, the last ends at
// duration (to the millisecond, as timestamps carry it), and every tile is
// inside a spriteWidth x spriteHeight sprite (when given, > 0).
func Check(cues []Cue, duration time.Duration, spriteWidth, spriteHeight int) error {
	if len(cues) == 0 {
		return errors.New("storyboard: no cues")
	}
	var at time.Duration
	for i, c := range cues {
		if c.Start != at || c.End <= c.Start {
			return fmt.Errorf("storyboard: cue %d runs %s to %s, want it to start at %s and not be empty", i, Timestamp(c.Start), Timestamp(c.End), Timestamp(at))
		}
		if c.W < 1 || c.H < 1 || spriteWidth > 0 && (c.X+c.W > spriteWidth || c.Y+c.H > spriteHeight) {
			return fmt.Errorf("storyboard: cue %d tile %d,%d,%d,%d is not inside a %dx%d sprite", i, c.X, c.Y, c.W, c.H, spriteWidth, spriteHeight)
		}
		at = c.End
	}
	if at != duration.Truncate(time.Millisecond) {
		return fmt.Errorf("storyboard: the cues end at %s, not at the duration %s", Timestamp(at), Timestamp(duration))
	}
	return nil
}
