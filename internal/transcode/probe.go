package transcode

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Probe is what the worker needs to know about a source.
type Probe struct {
	// Format is the demuxer to force with -f: "mov" (the
	// mov,mp4,m4a,3gp,3g2,mj2 family), "matroska" (also webm) or "mpegts".
	Format   string
	Duration time.Duration
	Size     int64
	Video    VideoStream
	Audio    *AudioStream // nil when the source has no usable audio
	// Audios are all the usable audio streams in source order (Audio is
	// the first); two or more become an alternate audio group.
	Audios []AudioStream `json:",omitempty"`
	// Subtitles are the text subtitle streams (see subtitles.go);
	// IgnoredSubtitles the bitmap ones, which are not published.
	Subtitles        []SubtitleStream
	IgnoredSubtitles []IgnoredSubtitle
}

// VideoStream describes the source's video stream (never cover art).
type VideoStream struct {
	Index         int // absolute stream index in the input
	Codec         string
	Width, Height int // coded size
	// Rotation is the clockwise rotation ffmpeg's autorotate applies: 0, 90,
	// 180 or 270, from the display matrix side data or the legacy rotate tag.
	Rotation int
	// DisplayWidth and DisplayHeight are the size after rotation and sample
	// aspect ratio correction: what a viewer sees, and what the ladder keeps.
	DisplayWidth, DisplayHeight int
	FrameRate                   Rational // avg_frame_rate, else r_frame_rate; zero when unknown
	PixFmt                      string
	BitDepth                    int // 0 when unknown
	// SAR is the sample (pixel) aspect ratio; zero when square or unknown.
	// Every output is square (setsar=1), at the display size above.
	SAR Rational
	// FieldOrder is ffprobe's field_order flag: "progressive", "tt", "bb",
	// "tb", "bt", or "" when unknown. It can lie; see DetectScan.
	FieldOrder string
	// Scan is the decision the deinterlacer follows: from FieldOrder after
	// ParseProbe, from the content once the caller sets it from DetectScan.
	Scan Scan
	// Color is the source's colour description ("" fields unspecified).
	Color Color
}

// AudioStream describes the first usable audio stream.
type AudioStream struct {
	Index      int // absolute stream index in the input
	Codec      string
	Channels   int
	SampleRate int
	Language   string `json:",omitempty"` // the stream's language tag as found ("eng"); see NormalizeLanguage
	Default    bool   `json:",omitempty"` // the default disposition is set
}

// maxProbeOutput bounds ffprobe's JSON: thousands of streams or megabytes of
// tags are an attack on the worker's memory, not a video.
const maxProbeOutput = 4 << 20

// minSide rejects pictures too small to be a programme (tracking pixels,
// broken headers); x264 itself wants at least a macroblock or two.
const minSide = 16

// ProbeArgs returns ffprobe's argv (without the program name) for a file
// whose container Sniff identified. absPath must be absolute; it is passed as
// a file: URL so that no other protocol can be reached, and the demuxer is
// forced so that ffprobe never guesses.
func ProbeArgs(format, absPath string) []string {
	return append(hardenedProbe(format),
		"-show_format", "-show_streams",
		"-of", "json",
		"file:"+absPath,
	)
}

// hardenedProbe is how every ffprobe run on an upload starts: only the file
// protocol, only the sniffed demuxer (forced, so ffprobe never guesses), and
// bounded allocation and probing. Every ffprobe argv builds on it, so the
// defences cannot drift apart.
func hardenedProbe(format string) []string {
	return []string{
		"-hide_banner", "-v", "error",
		"-max_alloc", strconv.Itoa(maxAlloc),
		"-protocol_whitelist", "file",
		"-format_whitelist", format,
		"-f", format,
		"-probesize", strconv.Itoa(probeSize),
		"-analyzeduration", strconv.Itoa(analyzeDuration),
		"-max_probe_packets", strconv.Itoa(maxProbePackets),
	}
}

// ffprobe's JSON, only the fields we read. Numbers that ffprobe prints as
// strings stay strings here and are parsed leniently below.
type ffprobeJSON struct {
	Streams []ffStream `json:"streams"`
	Format  *struct {
		FormatName string `json:"format_name"`
		Duration   string `json:"duration"`
	} `json:"format"`
}

type ffStream struct {
	Index             int               `json:"index"`
	CodecName         string            `json:"codec_name"`
	CodecType         string            `json:"codec_type"`
	Width             int               `json:"width"`
	Height            int               `json:"height"`
	SampleAspectRatio string            `json:"sample_aspect_ratio"`
	PixFmt            string            `json:"pix_fmt"`
	FieldOrder        string            `json:"field_order"`
	ColorRange        string            `json:"color_range"`
	ColorSpace        string            `json:"color_space"`
	ColorTransfer     string            `json:"color_transfer"`
	ColorPrimaries    string            `json:"color_primaries"`
	BitsPerRawSample  string            `json:"bits_per_raw_sample"`
	RFrameRate        string            `json:"r_frame_rate"`
	AvgFrameRate      string            `json:"avg_frame_rate"`
	Duration          string            `json:"duration"`
	SampleRate        string            `json:"sample_rate"`
	Channels          int               `json:"channels"`
	Disposition       map[string]int    `json:"disposition"`
	Tags              map[string]string `json:"tags"`
	SideDataList      []struct {
		SideDataType string   `json:"side_data_type"`
		Rotation     *float64 `json:"rotation"`
	} `json:"side_data_list"`
}

// ParseProbe validates ffprobe's JSON output (from ProbeArgs) against the
// limits and returns the Probe. sniffed is Sniff's verdict and size the file
// size. Bad input yields an error wrapping ErrInvalidInput; JSON that does not
// decode is reported without it, since that is ffprobe misbehaving rather
// than the upload.
func ParseProbe(data []byte, sniffed string, size int64, lim Limits) (*Probe, error) {
	lim = lim.withDefaults()
	if !allowedFormat(sniffed) {
		return nil, invalid("container %q is not allowed (%s)", sniffed, allowedContainers)
	}
	if size <= 0 {
		return nil, invalid("file is empty")
	}
	if size > lim.MaxBytes {
		return nil, invalid("file is %d bytes, the limit is %d", size, lim.MaxBytes)
	}
	var out ffprobeJSON
	if err := json.Unmarshal(data, &out); err != nil {
		return nil, fmt.Errorf("transcode: decode ffprobe output: %w", err)
	}
	if out.Format == nil {
		return nil, invalid("ffprobe found no container")
	}
	if !containsName(out.Format.FormatName, sniffed) {
		return nil, invalid("ffprobe reports container %q, expected %q", out.Format.FormatName, sniffed)
	}

	p := &Probe{Format: sniffed, Size: size}
	vs, err := pickVideo(out.Streams)
	if err != nil {
		return nil, err
	}
	if p.Video, err = videoStream(vs, lim); err != nil {
		return nil, err
	}
	for i := range out.Streams {
		if a, ok := audioStream(&out.Streams[i]); ok {
			if p.Audio == nil {
				p.Audio = a
			}
			p.Audios = append(p.Audios, *a)
		}
	}

	p.Subtitles, p.IgnoredSubtitles = subtitleStreams(out.Streams)

	// The container's duration first: stream durations are often missing
	// (Matroska) or shorter than the file (audio priming in TS).
	secs, ok := parseSeconds(out.Format.Duration)
	if !ok {
		secs, ok = parseSeconds(vs.Duration)
	}
	switch {
	case !ok:
		return nil, invalid("duration is unknown")
	case secs > lim.MaxDuration.Seconds():
		return nil, invalid("duration %.3fs exceeds the limit of %s", secs, lim.MaxDuration)
	}
	p.Duration = time.Duration(math.Round(secs * float64(time.Second)))
	if p.Duration < lim.MinDuration {
		return nil, invalid("duration %s is shorter than the minimum of %s", p.Duration, lim.MinDuration)
	}
	return p, nil
}

// containsName reports whether ffprobe's comma-separated format_name (e.g.
// "mov,mp4,m4a,3gp,3g2,mj2") contains name.
func containsName(list, name string) bool {
	for n := range strings.SplitSeq(list, ",") {
		if n == name {
			return true
		}
	}
	return false
}

// pickVideo returns the first real video stream: attached pictures (cover
// art) and timed thumbnails are stills, not the programme.
func pickVideo(streams []ffStream) (*ffStream, error) {
	var audio, stills bool
	for i := range streams {
		s := &streams[i]
		switch s.CodecType {
		case "audio":
			audio = true
		case "video":
			if s.Disposition["attached_pic"] != 0 || s.Disposition["timed_thumbnails"] != 0 {
				stills = true
				continue
			}
			return s, nil
		}
	}
	switch {
	case audio && stills:
		return nil, invalid("audio only: the file has cover art but no video stream")
	case audio:
		return nil, invalid("audio only: the file has no video stream")
	case stills:
		return nil, invalid("the file has only still pictures, no video stream")
	}
	return nil, invalid("the file has no video stream")
}

func videoStream(s *ffStream, lim Limits) (VideoStream, error) {
	v := VideoStream{Index: s.Index, Codec: s.CodecName, Width: s.Width, Height: s.Height, PixFmt: s.PixFmt}
	if v.Codec == "" || v.Codec == "none" {
		return v, invalid("video codec is not recognised")
	}
	if v.Width <= 0 || v.Height <= 0 {
		return v, invalid("video size %dx%d is not valid", v.Width, v.Height)
	}
	if err := checkSize("video", v.Width, v.Height, lim); err != nil {
		return v, err
	}

	v.Rotation = rotation(s)
	// Sample aspect ratio widens or narrows the picture before rotation;
	// ffmpeg's convention is to keep the height and correct the width.
	dw, dh := float64(v.Width), float64(v.Height)
	if sar, ok := parseSAR(s.SampleAspectRatio); ok {
		dw = dw * float64(sar.Num) / float64(sar.Den)
		v.SAR = sar
	}
	if dw > float64(math.MaxInt32) {
		return v, invalid("display size is not valid (sample aspect ratio %s)", s.SampleAspectRatio)
	}
	v.DisplayWidth, v.DisplayHeight = max(1, int(math.Round(dw))), int(dh)
	if v.Rotation == 90 || v.Rotation == 270 {
		v.DisplayWidth, v.DisplayHeight = v.DisplayHeight, v.DisplayWidth
	}
	if err := checkSize("display", v.DisplayWidth, v.DisplayHeight, lim); err != nil {
		return v, err
	}
	if min(v.DisplayWidth, v.DisplayHeight) < minSide {
		return v, invalid("display size %dx%d is below the minimum of %d pixels per side", v.DisplayWidth, v.DisplayHeight, minSide)
	}

	if r, ok := parseRational(s.AvgFrameRate); ok {
		v.FrameRate = r
	} else if r, ok := parseRational(s.RFrameRate); ok {
		v.FrameRate = r
	}
	v.BitDepth = bitDepth(s)
	v.FieldOrder = known(s.FieldOrder, knownFieldOrders)
	v.Scan = scanFromFlag(v.FieldOrder)
	v.Color = parseColor(s)
	return v, nil
}

// checkSize applies the limits to the long and the short side, so a portrait
// source is judged like the same picture in landscape.
func checkSize(what string, w, h int, lim Limits) error {
	long, short := max(w, h), min(w, h)
	limLong, limShort := max(lim.MaxWidth, lim.MaxHeight), min(lim.MaxWidth, lim.MaxHeight)
	if long > limLong || short > limShort {
		return invalid("%s size %dx%d exceeds the limit of %dx%d", what, w, h, limLong, limShort)
	}
	if int64(w)*int64(h) > lim.MaxPixels {
		return invalid("%s size %dx%d exceeds the limit of %d pixels", what, w, h, lim.MaxPixels)
	}
	return nil
}

// parseSAR accepts ffprobe's "num:den"; "0:1" (unknown) and "1:1" mean square.
func parseSAR(s string) (Rational, bool) {
	n, d, ok := strings.Cut(s, ":")
	if !ok {
		return Rational{}, false
	}
	r, ok := parseRational(n + "/" + d)
	if !ok || r == (Rational{1, 1}) {
		return Rational{}, false
	}
	return r, true
}

// rotation mirrors ffmpeg's get_rotation: ffprobe reports the display
// matrix's counterclockwise angle, autorotate turns the picture back by its
// negation, and angles that are not within a degree of a right angle are
// left alone (ffmpeg only warns about them).
func rotation(s *ffStream) int {
	theta, found := 0.0, false
	for _, sd := range s.SideDataList {
		if sd.SideDataType == "Display Matrix" && sd.Rotation != nil {
			theta, found = -*sd.Rotation, true
			break
		}
	}
	if !found {
		t, err := strconv.ParseFloat(strings.TrimSpace(s.Tags["rotate"]), 64)
		if err != nil {
			return 0
		}
		theta = t // the legacy tag is already clockwise
	}
	if math.IsNaN(theta) || math.IsInf(theta, 0) {
		return 0
	}
	theta = math.Round(theta)
	theta -= 360 * math.Floor(theta/360+0.9/360)
	for _, right := range []float64{0, 90, 180, 270, 360} {
		if math.Abs(theta-right) < 1 {
			return int(right) % 360
		}
	}
	return 0
}

func bitDepth(s *ffStream) int {
	if n, err := strconv.Atoi(s.BitsPerRawSample); err == nil && n > 0 && n <= 32 {
		return n
	}
	if s.PixFmt == "" {
		return 0
	}
	// yuv420p10le, p010le, gray12be...: the digits before the endianness.
	f := strings.TrimSuffix(strings.TrimSuffix(s.PixFmt, "le"), "be")
	i := len(f)
	for i > 0 && f[i-1] >= '0' && f[i-1] <= '9' {
		i--
	}
	if n, err := strconv.Atoi(f[i:]); err == nil && n > 8 && n <= 16 && i > 0 && f[i-1] == 'p' {
		return n
	}
	return 8
}

// audioStream accepts an audio stream ffmpeg can decode into something; an
// audio stream with no codec, channels or rate is skipped rather than failing
// the whole upload on a broken secondary track.
func audioStream(s *ffStream) (*AudioStream, bool) {
	if s.CodecType != "audio" || s.CodecName == "" || s.CodecName == "none" || s.Channels <= 0 {
		return nil, false
	}
	rate, err := strconv.Atoi(s.SampleRate)
	if err != nil || rate <= 0 {
		return nil, false
	}
	return &AudioStream{Index: s.Index, Codec: s.CodecName, Channels: s.Channels, SampleRate: rate,
		Language: s.Tags["language"], Default: s.Disposition["default"] != 0}, true
}

// parseSeconds parses ffprobe's "12.345000"; "N/A", empty, non-finite and
// non-positive values are unknown.
func parseSeconds(s string) (float64, bool) {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f <= 0 {
		return 0, false
	}
	return f, true
}

// ProbeFile probes the file at path (which must be absolute) with ffprobe:
// it checks the size, sniffs the container, runs ffprobe with the demuxer
// forced and a ProbeTimeout deadline, and validates the result with
// ParseProbe. ffprobe refusing the file is bad input; a timeout is not, since
// a loaded machine is as likely a cause as a hostile file.
func ProbeFile(ctx context.Context, x *Exec, path string, lim Limits) (*Probe, error) {
	lim = lim.withDefaults()
	if x == nil {
		return nil, errNoExec
	}
	if !filepath.IsAbs(path) {
		return nil, fmt.Errorf("transcode: probe: path %q is not absolute", path)
	}
	// Stat before opening: opening a FIFO would block.
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("transcode: probe: %w", err)
	}
	switch {
	case !fi.Mode().IsRegular():
		return nil, invalid("not a regular file")
	case fi.Size() == 0:
		return nil, invalid("file is empty")
	case fi.Size() > lim.MaxBytes:
		return nil, invalid("file is %d bytes, the limit is %d", fi.Size(), lim.MaxBytes)
	}
	header, err := readHeader(path)
	if err != nil {
		return nil, err
	}
	format, err := Sniff(header)
	if err != nil {
		return nil, err
	}

	pctx, cancel := context.WithTimeout(ctx, lim.ProbeTimeout)
	defer cancel()
	cmd, err := x.Command(pctx, FFprobe, ProbeArgs(format, path), []string{path}, nil)
	if err != nil {
		return nil, err
	}
	stdout := &capBuffer{max: maxProbeOutput}
	stderr := newTail(2 << 10)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	err = runGroup(cmd)
	if err != nil {
		switch {
		case ctx.Err() != nil:
			return nil, fmt.Errorf("transcode: ffprobe: %w", ctx.Err())
		case pctx.Err() != nil:
			return nil, fmt.Errorf("transcode: ffprobe: no answer within %s: %w", lim.ProbeTimeout, pctx.Err())
		}
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) {
			return nil, invalid("ffprobe cannot read the file: %v: %s", err, stderr.String())
		}
		return nil, fmt.Errorf("transcode: ffprobe: %w", err)
	}
	if stdout.overflow {
		return nil, invalid("ffprobe's description of the file exceeds %d bytes", maxProbeOutput)
	}
	p, err := ParseProbe(stdout.buf, format, fi.Size(), lim)
	if err != nil && errors.Is(err, ErrInvalidInput) {
		// The decoder often says what the headers claimed (a picture size
		// it refused) where the probe only shows the result (0x0).
		if m := refusedSize.FindString(stderr.String()); m != "" {
			return nil, fmt.Errorf("%w (the decoder reports: %s)", err, m)
		}
	}
	return p, err
}

var refusedSize = regexp.MustCompile(`Picture size \d+x\d+ is invalid`)

func readHeader(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("transcode: probe: %w", err)
	}
	defer f.Close()
	buf := make([]byte, SniffSize)
	n, err := io.ReadFull(f, buf)
	if err != nil && err != io.ErrUnexpectedEOF {
		return nil, fmt.Errorf("transcode: probe: read header: %w", err)
	}
	return buf[:n], nil
}
