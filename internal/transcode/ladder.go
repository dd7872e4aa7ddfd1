package transcode

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hlsvault/hlsvault/internal/layout"
)

// Rung is one step of the configured ABR ladder.
type Rung struct {
	Name string // "1080p"
	// Height is the target short side in pixels, so a portrait 1080x1920
	// output belongs to the "1080p" rung.
	Height       int
	VideoBitrate int // bits/s for a 16:9 picture of that short side
	AudioBitrate int // bits/s
	// Codec is the rung's encoder; "" is H.264. An HEVC rung is an extra
	// variant beside the H.264 ones, named "<height>phevc".
	Codec VideoCodec `json:",omitempty"`
}

// Ladder is the configured set of rungs.
type Ladder []Rung

// Ladder bounds, for configuration errors and for ffmpeg-go, whose filter
// labels sort as strings.
const (
	maxRungs       = 8
	minRungHeight  = 64
	maxRungHeight  = 4320
	minVideoRate   = 50_000
	maxVideoRate   = 200_000_000
	minAudioRate   = 16_000
	maxAudioRate   = 512_000
	defaultAudio   = 128_000
	defaultSegment = 4 * time.Second
	// minScaledRate keeps a strongly letterboxed or tiny picture from being
	// starved: below it x264 spends more on headers than on the picture.
	minScaledRate = 64_000
)

// DefaultLadder returns the ladder used when none is configured.
func DefaultLadder() Ladder {
	return Ladder{
		{Name: "1080p", Height: 1080, VideoBitrate: 5_000_000, AudioBitrate: 128_000},
		{Name: "720p", Height: 720, VideoBitrate: 2_800_000, AudioBitrate: 128_000},
		{Name: "480p", Height: 480, VideoBitrate: 1_400_000, AudioBitrate: 128_000},
		{Name: "360p", Height: 360, VideoBitrate: 800_000, AudioBitrate: 96_000},
	}
}

// ParseLadder parses the LADDER setting: comma-separated rungs
// "<height>p:<video bitrate>[:<audio bitrate>][:hevc]", e.g.
// "1080p:5000k:128k,720p:2800k,360p:800k:96k,720p:1600k:128k:hevc".
// Bitrates take a k or M suffix (or none, for bits/s); the audio bitrate
// defaults to 128k. The rung's name is its first field, so names are
// [0-9]+p, and "<height>phevc" for an HEVC rung (":hevc", which needs fMP4
// segments; ":h264" may be written too). A ladder with HEVC rungs must have
// an H.264 one, so that every player finds a variant it decodes. The result
// is sorted highest first, H.264 before HEVC at one height.
func ParseLadder(s string) (Ladder, error) {
	var l Ladder
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		fields := strings.Split(part, ":")
		var codec VideoCodec
		if n := len(fields); n > 2 {
			switch c := VideoCodec(fields[n-1]); c {
			case CodecH264, CodecHEVC:
				codec, fields = c, fields[:n-1]
			}
		}
		if len(fields) < 2 || len(fields) > 3 {
			return nil, fmt.Errorf("transcode: ladder: rung %q: want <height>p:<video bitrate>[:<audio bitrate>][:hevc]", part)
		}
		r := Rung{Name: fields[0], AudioBitrate: defaultAudio}
		digits, ok := strings.CutSuffix(r.Name, "p")
		h, err := strconv.Atoi(digits)
		if !ok || err != nil || digits == "" || digits[0] < '1' || digits[0] > '9' {
			return nil, fmt.Errorf("transcode: ladder: rung %q: name must be the height followed by p, like 720p", part)
		}
		r.Height = h
		if r.VideoBitrate, err = parseBitrate(fields[1]); err != nil {
			return nil, fmt.Errorf("transcode: ladder: rung %q: video bitrate: %w", part, err)
		}
		if len(fields) == 3 {
			if r.AudioBitrate, err = parseBitrate(fields[2]); err != nil {
				return nil, fmt.Errorf("transcode: ladder: rung %q: audio bitrate: %w", part, err)
			}
		}
		if codec.HEVC() {
			r.Name, r.Codec = r.Name+hevcSuffix, CodecHEVC
		}
		l = append(l, r)
	}
	if err := l.validate(); err != nil {
		return nil, err
	}
	return l.sorted(), nil
}

// parseBitrate parses "5000k", "5M", "2.5M" or "800000" into bits/s.
func parseBitrate(s string) (int, error) {
	mult := 1.0
	switch {
	case strings.HasSuffix(s, "k"), strings.HasSuffix(s, "K"):
		mult, s = 1e3, s[:len(s)-1]
	case strings.HasSuffix(s, "M"), strings.HasSuffix(s, "m"):
		mult, s = 1e6, s[:len(s)-1]
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f <= 0 || f*mult > math.MaxInt32 {
		return 0, fmt.Errorf("%q is not a bitrate", s)
	}
	return int(math.Round(f * mult)), nil
}

func (l Ladder) validate() error {
	if len(l) == 0 {
		return errors.New("transcode: ladder: no rungs")
	}
	if len(l) > maxRungs {
		return fmt.Errorf("transcode: ladder: %d rungs, at most %d", len(l), maxRungs)
	}
	names, heights := map[string]bool{}, map[string]bool{}
	h264 := false
	for _, r := range l {
		height := string(r.Codec) + strconv.Itoa(r.Height)
		h264 = h264 || !r.Codec.HEVC()
		switch {
		// Stricter than layout's rule: the name becomes ffmpeg's %v in
		// var_stream_map, which has no quoting.
		case !layout.ValidRendition(r.Name) || strings.Trim(r.Name, "abcdefghijklmnopqrstuvwxyz0123456789") != "":
			return fmt.Errorf("transcode: ladder: rung name %q: want [a-z0-9]+", r.Name)
		case len(r.Name) > 16:
			return fmt.Errorf("transcode: ladder: rung name %q is too long", r.Name)
		case r.Height < minRungHeight || r.Height > maxRungHeight || r.Height%2 != 0:
			return fmt.Errorf("transcode: ladder: rung %s: height %d must be even, %d to %d", r.Name, r.Height, minRungHeight, maxRungHeight)
		case r.VideoBitrate < minVideoRate || r.VideoBitrate > maxVideoRate:
			return fmt.Errorf("transcode: ladder: rung %s: video bitrate %d out of range %d to %d", r.Name, r.VideoBitrate, minVideoRate, maxVideoRate)
		case r.AudioBitrate < minAudioRate || r.AudioBitrate > maxAudioRate:
			return fmt.Errorf("transcode: ladder: rung %s: audio bitrate %d out of range %d to %d", r.Name, r.AudioBitrate, minAudioRate, maxAudioRate)
		case names[r.Name]:
			return fmt.Errorf("transcode: ladder: rung name %s appears twice", r.Name)
		case heights[height]:
			return fmt.Errorf("transcode: ladder: height %d appears twice", r.Height)
		case r.Codec != "" && r.Codec != CodecH264 && r.Codec != CodecHEVC:
			return fmt.Errorf("transcode: ladder: rung %s: codec %q is not h264 or hevc", r.Name, r.Codec)
		}
		names[r.Name], heights[height] = true, true
	}
	if !h264 {
		return errors.New("transcode: ladder: HEVC rungs only; add an H.264 rung, which every player decodes")
	}
	return nil
}

func (l Ladder) sorted() Ladder {
	s := slices.Clone(l)
	slices.SortStableFunc(s, func(a, b Rung) int {
		if a.Height != b.Height {
			return b.Height - a.Height
		}
		return strings.Compare(string(a.Codec.orH264()), string(b.Codec.orH264()))
	})
	return s
}

// Rendition is one output of the ffmpeg run.
type Rendition struct {
	Name          string // the rung's name; also the output subdirectory
	Width, Height int    // even, display orientation
	VideoBitrate  int    // bits/s
	// MaxRate is 1.07 x VideoBitrate and BufSize 1.5 x VideoBitrate: a
	// capped-VBR budget tight enough that the nominal HLS BANDWIDTH holds
	// for every segment, with a buffer loose enough for x264 to spend bits
	// on hard scenes.
	MaxRate, BufSize int
	AudioBitrate     int // bits/s; 0 when the source has no audio
	// Codec is the rendition's encoder; "" is H.264.
	Codec VideoCodec `json:",omitempty"`
}

// Plan is everything Args needs for one ffmpeg run.
type Plan struct {
	Format     string      // demuxer forced with -f (Probe.Format)
	VideoIndex int         // absolute input stream index of the video
	AudioIndex int         // absolute input stream index of the audio, when HasAudio
	Renditions []Rendition // highest first
	// FrameRate is the output rate: the source's, halved until it is at
	// most 60, or 30 when the source's is unknown or absurd.
	FrameRate Rational
	// GOP is frames per segment, round(fps x SegmentDuration): every rung
	// has a keyframe exactly every GOP frames and nowhere else, so segment
	// boundaries line up across the ladder.
	GOP             int
	SegmentDuration time.Duration
	HasAudio        bool
	Duration        time.Duration // source duration, for progress
	// Deinterlace is the field order bwdif deinterlaces from (TopFieldFirst
	// or BottomFieldFirst), once, before the split; empty for progressive
	// sources. bwdif sends one frame per field, so FrameRate is then the
	// field rate (1080i50 gives 50 fps) and the GOP counts those frames.
	Deinterlace Scan `json:",omitempty"`
	// ToneMap, for an HDR (PQ or HLG) source, maps it to SDR BT.709 once,
	// before the split; nil for SDR.
	ToneMap *ToneMap `json:",omitempty"`
	// Audio, for a source with two or more usable audio streams, are the
	// alternate audio renditions (see planAudio); the video renditions
	// then carry no audio and HasAudio is false. Empty: the muxed shape.
	Audio []AudioRendition `json:",omitempty"`
	// AudioIgnored counts the audio streams beyond MaxAudioRenditions.
	AudioIgnored int `json:",omitempty"`
	// InMatrix is swscale's in_color_matrix for an SDR source whose YCbCr
	// matrix is not BT.709 ("bt601" for SD); each rung's scale converts it
	// to BT.709, which every output is tagged as. Empty: already BT.709.
	InMatrix string `json:",omitempty"`
	// Segments is the segment container; "" is MPEG-TS. Args refuses HEVC
	// renditions without fMP4.
	Segments SegmentFormat `json:",omitempty"`
}

// PlanLadder fits ladder to the source described by p:
//
//   - never upscale: a rung whose short side exceeds the source's is
//     dropped; if all are, one rendition at the source's own size (rounded
//     down to even) named after its short side ("240p"), with the lowest
//     rung's bitrates;
//   - keep the display aspect ratio, in display orientation (a rotated phone
//     video gives portrait renditions): long side = the source's long side
//     scaled to the rung's short side, rounded to even;
//   - scale the video bitrate by the rendition's pixel count relative to
//     the rung's nominal 16:9 picture, never above the rung's bitrate (a 4:3
//     1440x1080 gets 3/4 of the 1080p rate, a 2.39:1 picture the full rate)
//     and never below 64 kbit/s, rounded to kbit/s.
//
// An empty ladder means DefaultLadder; a zero segment means 4s.
func PlanLadder(p *Probe, ladder Ladder, segment time.Duration) (Plan, error) {
	if p == nil {
		return Plan{}, errors.New("transcode: plan: no probe")
	}
	if len(ladder) == 0 {
		ladder = DefaultLadder()
	}
	if err := ladder.validate(); err != nil {
		return Plan{}, err
	}
	if segment == 0 {
		segment = defaultSegment
	}
	if segment < time.Second || segment > 30*time.Second {
		return Plan{}, fmt.Errorf("transcode: plan: segment duration %s out of range 1s to 30s", segment)
	}
	dw, dh := p.Video.DisplayWidth, p.Video.DisplayHeight
	if dw < 2 || dh < 2 {
		return Plan{}, invalid("display size %dx%d is too small", dw, dh)
	}
	if !allowedFormat(p.Format) {
		return Plan{}, invalid("container %q is not allowed (%s)", p.Format, allowedContainers)
	}

	plan := Plan{
		Format:          p.Format,
		VideoIndex:      p.Video.Index,
		FrameRate:       outputRate(p.Video.FrameRate),
		SegmentDuration: segment,
		HasAudio:        p.Audio != nil,
		Duration:        p.Duration,
		ToneMap:         toneMapFor(p.Video.Color),
	}
	if p.Video.Scan.Interlaced() {
		// Field rate: every field is its own instant (1080i50 films 50
		// moments a second), so keeping them all keeps motion smooth where
		// one frame per pair would judder; outputRate still caps at 60.
		plan.Deinterlace = p.Video.Scan
		plan.FrameRate = outputRate(fieldRate(p.Video.FrameRate))
	}
	if plan.ToneMap == nil {
		// The tone-mapping chain writes BT.709 itself.
		plan.InMatrix = inMatrix(p.Video.Color, p.Video.Width, p.Video.Height)
	}
	if p.Audio != nil {
		plan.AudioIndex = p.Audio.Index
	}
	plan.GOP = max(1, int(math.Round(plan.FrameRate.Float64()*segment.Seconds())))

	short, long := min(dw, dh), max(dw, dh)
	size := func(target int) (w, h int) {
		l := max(2, roundEven(float64(long)*float64(target)/float64(short)))
		if dw >= dh {
			return l, target
		}
		return target, l
	}
	sorted := ladder.sorted()
	for _, r := range sorted {
		if r.Height > short {
			continue
		}
		w, h := size(r.Height)
		ren := rendition(r.Name, w, h, r.Height, r.VideoBitrate, r.AudioBitrate)
		ren.Codec = r.Codec
		plan.Renditions = append(plan.Renditions, ren)
	}
	if !slices.ContainsFunc(plan.Renditions, func(r Rendition) bool { return !r.Codec.HEVC() }) {
		// The fallback is H.264, which every player decodes; HEVC rungs
		// that fit the source stay beside it.
		h264 := slices.DeleteFunc(slices.Clone(sorted), func(r Rung) bool { return r.Codec.HEVC() })
		base := h264[len(h264)-1]
		w, h := dw&^1, dh&^1
		s := min(w, h)
		plan.Renditions = append([]Rendition{rendition(fmt.Sprintf("%dp", s), w, h, base.Height, base.VideoBitrate, base.AudioBitrate)}, plan.Renditions...)
	}
	rate := 0
	for _, r := range sorted {
		rate = max(rate, r.AudioBitrate)
	}
	if group, ignored := planAudio(p.Audios, rate); len(group) > 0 {
		plan.Audio, plan.AudioIgnored = group, ignored
		plan.HasAudio, plan.AudioIndex = false, 0
	}
	if !plan.HasAudio {
		// Zero, so that bandwidth sums in the master playlist stay honest.
		for i := range plan.Renditions {
			plan.Renditions[i].AudioBitrate = 0
		}
	}
	return plan, nil
}

func rendition(name string, w, h, nominalShort, videoRate, audioRate int) Rendition {
	nominal := float64(nominalShort) * float64(roundEven(float64(nominalShort)*16/9))
	scaled := float64(videoRate) * math.Min(1, float64(w)*float64(h)/nominal)
	rate := int(math.Round(scaled/1000)) * 1000
	rate = min(videoRate, max(rate, minScaledRate))
	return Rendition{
		Name: name, Width: w, Height: h,
		VideoBitrate: rate,
		MaxRate:      rate * 107 / 100,
		BufSize:      rate * 3 / 2,
		AudioBitrate: audioRate,
	}
}

// fieldRate doubles a frame rate into the rate of its fields; an unknown
// rate stays unknown (outputRate makes it 30).
func fieldRate(r Rational) Rational {
	if !r.valid() {
		return r
	}
	if r.Den%2 == 0 {
		return Rational{r.Num, r.Den / 2}.reduce()
	}
	return Rational{2 * r.Num, r.Den}.reduce()
}

// roundEven rounds to the nearest even integer: yuv420p needs even sides.
func roundEven(x float64) int { return 2 * int(math.Round(x/2)) }

// outputRate halves rates above 60 fps, so that frames are dropped evenly
// (120 -> 60, 144 -> 72 -> 36), and falls back to 30 for unknown rates and
// the nonsense some containers report (1000 fps timebases, 0/0).
func outputRate(r Rational) Rational {
	r = r.reduce()
	f := r.Float64()
	if !r.valid() || f < 1 || f > 1000 {
		return Rational{30, 1}
	}
	for r.Float64() > 60 {
		if r.Num%2 == 0 {
			r.Num /= 2
		} else {
			r.Den *= 2
		}
		r = r.reduce()
	}
	return r
}
