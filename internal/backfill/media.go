package backfill

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"path"
	"strings"
	"sync"

	"github.com/hlsvault/hlsvault/internal/layout"
	"github.com/hlsvault/hlsvault/internal/packager"
	"github.com/hlsvault/hlsvault/internal/playlist"
	"github.com/hlsvault/hlsvault/internal/transcode"
)

// Reading the media while re-encrypting it. Every byte of every segment
// passes through the converter anyway; a tee into transcode's bitstream
// readers (TSInspector, FMP4Inspector) learns, at no extra read, what a
// legacy master often lacks: CODECS, RESOLUTION and FRAME-RATE (from the
// SPS or avcC, ADTS or esds), an audio rendition's CHANNELS, whether every
// segment starts with an IDR (EXT-X-INDEPENDENT-SEGMENTS), whether the
// video carries A/53 closed captions (CLOSED-CAPTIONS), and, for the
// renditions chosen for trick play, each segment's first I-frame, cut and
// stored as its own encrypted segment (see iframes.go).

// mediaFormat is how a rendition's segments are read.
type mediaFormat int

const (
	formatNone mediaFormat = iota // not read (WebVTT, raw audio, an MPEG-TS init section)
	formatTS
	formatFMP4
)

// noVideoExts are segment extensions that cannot hold video: such a
// rendition never stands in the way of EXT-X-INDEPENDENT-SEGMENTS.
var noVideoExts = map[string]bool{".vtt": true, ".webvtt": true, ".aac": true, ".mp3": true, ".ac3": true, ".ec3": true, ".m4a": true, ".cmfa": true}

func formatOf(r *renditionPlan) mediaFormat {
	ext := path.Ext(r.segments[0].obj.dest)
	switch {
	case len(r.inits) > 0 && ext != ".ts":
		return formatFMP4
	case len(r.inits) == 0 && ext == ".ts":
		return formatTS
	}
	return formatNone
}

// renditionMedia gathers what one rendition's segments say. Segments are
// converted concurrently; every field after mu is guarded by it.
type renditionMedia struct {
	r      *renditionPlan
	format mediaFormat
	trick  bool // cut I-frames (TS video renditions chosen for trick play)
	noVid  bool // its segments cannot hold video

	mu        sync.Mutex
	inits     map[*object]*transcode.FMP4Init
	inspected int  // segments read to their end and understood
	failed    bool // a segment or init section could not be read
	allIDR    bool
	captions  bool
	hasVideo  bool
	hasAudio  bool
	video     *transcode.VideoInfo
	audio     *transcode.AudioInfo
	frames    int
	iframes   []playlist.Segment // by segment index; URI "" where none was cut
	iStored   []packager.Stored
	noIFrame  bool // a segment did not start with an IDR: no trick play
}

// mediaPlan is the inspection of one conversion.
type mediaPlan struct {
	byRendition map[*renditionPlan]*renditionMedia
}

// taskMedia is one conversion task's hook: a fresh inspector per attempt
// to store the object, read by done once the object is stored.
type taskMedia struct {
	rm    *renditionMedia
	seg   int     // segment index; -1 for an init section
	init  *object // the init section in effect (fMP4), or the section itself
	cur   interface{ io.Writer }
	start float64
	dur   float64
}

// newMediaPlan attaches an inspector to every task of a rendition whose
// segments can be read, and chooses the trick play renditions.
func newMediaPlan(p *Plan, tt *titleTasks) *mediaPlan {
	mp := &mediaPlan{byRendition: map[*renditionPlan]*renditionMedia{}}
	for _, r := range p.renditions {
		rm := &renditionMedia{r: r, format: formatOf(r), allIDR: true, inits: map[*object]*transcode.FMP4Init{},
			noVid: noVideoExts[path.Ext(r.segments[0].obj.dest)]}
		rm.trick = rm.format == formatTS && p.trick[r]
		if rm.trick {
			rm.iframes = make([]playlist.Segment, len(r.segments))
		}
		mp.byRendition[r] = rm
		if rm.format == formatNone {
			continue
		}
		var cur *object
		for i := range r.segments {
			s := &r.segments[i]
			if s.init >= 0 {
				cur = &r.inits[s.init]
			}
			if in, ok := tt.init[&s.obj]; ok {
				in.media = &taskMedia{rm: rm, seg: -1, init: in.obj}
			}
			t := tt.segment[&s.obj]
			t.media = &taskMedia{rm: rm, seg: i, init: cur, start: t.start, dur: s.duration}
		}
	}
	return mp
}

// phases orders the tasks for storing: init sections first, because an
// fMP4 segment is read with its init section's track description.
func (mp *mediaPlan) phases(tasks []*convTask) [][]*convTask {
	var inits, rest []*convTask
	for _, t := range tasks {
		if t.media != nil && t.media.seg < 0 {
			inits = append(inits, t)
		} else {
			rest = append(rest, t)
		}
	}
	if len(inits) == 0 {
		return [][]*convTask{rest}
	}
	return [][]*convTask{inits, rest}
}

// tee starts an attempt: the plaintext read through the returned reader is
// also inspected.
func (tm *taskMedia) tee(r io.Reader) io.Reader {
	rm := tm.rm
	switch {
	case tm.seg < 0:
		tm.cur = &limitedBuffer{max: 1 << 20}
	case rm.format == formatTS:
		tm.cur = transcode.NewTSInspector(rm.trick)
	default:
		rm.mu.Lock()
		in := rm.inits[tm.init]
		rm.mu.Unlock()
		if in == nil {
			tm.cur = nil // the init section was not understood
			return r
		}
		tm.cur = transcode.NewFMP4Inspector(in)
	}
	return io.TeeReader(r, tm.cur)
}

// done reads what the stored object's inspector saw and, for a trick play
// rendition, stores its I-frame segment.
func (tm *taskMedia) done(ctx context.Context, v *packager.Version) error {
	rm := tm.rm
	if tm.seg < 0 {
		buf, _ := tm.cur.(*limitedBuffer)
		in, err := (*transcode.FMP4Init)(nil), errors.New("init section too large")
		if buf != nil && !buf.over {
			in, err = transcode.ParseFMP4Init(buf.Bytes())
		}
		rm.mu.Lock()
		defer rm.mu.Unlock()
		if err != nil {
			rm.failed = true
			return nil
		}
		rm.inits[tm.init] = in
		return nil
	}
	fin, ok := tm.cur.(interface {
		Finish() (transcode.SegmentInfo, error)
	})
	if !ok {
		rm.mu.Lock()
		rm.failed = true
		rm.mu.Unlock()
		return nil
	}
	info, err := fin.Finish()
	tm.cur = nil
	rm.mu.Lock()
	if err != nil {
		rm.failed = true
	} else {
		rm.inspected++
		rm.hasVideo = rm.hasVideo || info.HasVideo
		rm.hasAudio = rm.hasAudio || info.HasAudio
		if info.HasVideo {
			rm.allIDR = rm.allIDR && info.StartsWithIDR
		}
		rm.captions = rm.captions || info.Captions
		rm.frames += info.VideoFrames
		if rm.video == nil {
			rm.video = info.Video
		}
		if rm.audio == nil {
			rm.audio = info.Audio
		}
	}
	trick := rm.trick && !rm.noIFrame
	if trick && info.IFrame == nil {
		rm.noIFrame = true
		trick = false
	}
	rm.mu.Unlock()
	if !trick {
		return nil
	}
	seg := rm.r.segments[tm.seg].obj.dest
	st, err := v.Put(ctx, packager.Object{Name: layout.IFrameRendition(rm.r.name) + "/" + seg, Body: bytes.NewReader(info.IFrame),
		Size: int64(len(info.IFrame)), Start: tm.start})
	if err != nil {
		return fmt.Errorf("backfill: store the I-frame of %s: %w", rm.r.segments[tm.seg].obj.what, err)
	}
	if err := v.Verify(ctx, st); err != nil {
		return fmt.Errorf("backfill: %w", err)
	}
	rm.mu.Lock()
	rm.iframes[tm.seg] = playlist.Segment{URI: seg, Duration: tm.dur, Size: st.Size, IV: st.IV, KeyURI: st.Key.URI}
	rm.iStored = append(rm.iStored, st)
	rm.mu.Unlock()
	return nil
}

// storedIFrames returns the I-frame segments stored (each verified as it
// was stored), whether or not its playlist is published, for the check of
// the version's listing.
func (mp *mediaPlan) storedIFrames() []*convTask {
	var out []*convTask
	for _, rm := range mp.byRendition {
		for _, st := range rm.iStored {
			out = append(out, &convTask{out: st})
		}
	}
	return out
}

// complete reports whether every segment of the rendition was read and
// understood.
func (rm *renditionMedia) complete() bool {
	return rm.format != formatNone && !rm.failed && rm.inspected == len(rm.r.segments)
}

// independent reports whether the rendition was checked to have every
// segment start with an IDR (or holds no video), and whether it was
// checked at all.
func (rm *renditionMedia) independent() (independent, checked bool) {
	switch {
	case rm.noVid:
		return true, true
	case !rm.complete():
		return false, false
	}
	return !rm.hasVideo || rm.allIDR, true
}

// frameRate is the SPS's frame rate, or else the frames counted over the
// rendition's duration; 0 when unknown.
func (rm *renditionMedia) frameRate(duration float64) float64 {
	if rm.video == nil {
		return 0
	}
	if rm.video.FrameRate > 0 {
		return math.Round(rm.video.FrameRate*1000) / 1000
	}
	if rm.complete() && duration > 0 && rm.frames > 0 {
		return math.Round(float64(rm.frames)/duration*1000) / 1000
	}
	return 0
}

// codecs is the rendition's own streams' CODECS, "" when not known for
// every stream it holds.
func (rm *renditionMedia) codecs() string {
	var parts []string
	if rm.hasVideo {
		if rm.video == nil {
			return ""
		}
		parts = append(parts, rm.video.Codec)
	}
	if rm.hasAudio {
		if rm.audio == nil {
			return ""
		}
		parts = append(parts, rm.audio.Codec)
	}
	return strings.Join(parts, ",")
}

// limitedBuffer keeps up to max bytes, then only notes that there were
// more.
type limitedBuffer struct {
	bytes.Buffer
	max  int
	over bool
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if !b.over && b.Len()+len(p) <= b.max {
		b.Buffer.Write(p)
	} else {
		b.over = true
	}
	return len(p), nil
}
