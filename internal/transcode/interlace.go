package transcode

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"time"
)

// Scan is how the source's pictures are scanned: what the deinterlacer is
// told, never the raw flag.
type Scan string

// The scans the worker tells apart.
const (
	Progressive      Scan = "progressive"
	TopFieldFirst    Scan = "tff"
	BottomFieldFirst Scan = "bff"
)

// Interlaced reports whether the pictures are pairs of fields.
func (s Scan) Interlaced() bool { return s == TopFieldFirst || s == BottomFieldFirst }

// scanFromFlag maps ffprobe's field_order onto a Scan. The two letters are
// the coded and the displayed first field: "tb" is top coded first, bottom
// displayed first, so the deinterlacer wants bottom field first.
func scanFromFlag(fieldOrder string) Scan {
	switch fieldOrder {
	case "tt", "bt":
		return TopFieldFirst
	case "bb", "tb":
		return BottomFieldFirst
	}
	return Progressive
}

var knownFieldOrders = []string{"progressive", "tt", "bb", "tb", "bt"}

// The content check: idet over a short sample of decoded frames.
const (
	// idetFrames is the sample: enough frames for idet's multi-frame
	// classifier (it looks at neighbours, so its first frames are
	// undetermined) to settle on a few seconds of motion, and cheap: about
	// half a second for 1080p on two cores.
	idetFrames = 60
	// idetMinDecided is the least number of frames the multi-frame
	// classifier must have decided (TFF + BFF + progressive) for the
	// content to overrule the flag: still pictures, black and fades leave
	// most frames undetermined, and then the flag is all there is.
	idetMinDecided = 10
	// idetWidth caps the sample's width. Only the width is scaled down:
	// scaling vertically would blend the two fields, which is exactly what
	// idet measures.
	idetWidth = 640
	// idetFilter is idet with a stricter interlace threshold than its
	// default. idet calls a frame TFF (or BFF) when re-pairing its fields
	// with the previous frame's combs intl_thres times more (or less) than
	// with the next frame's, before it looks at the progressive test at
	// all; at the default 1.04 uneven motion alone passes that, and
	// progressive testsrc2 reads 51 of 60 frames interlaced at 320x240
	// (48 at 720x576, 39 at 1280x720). Measured on woven testsrc2 fields
	// at 96x64 to 1920x1080 and on the same sizes progressive: at 1.2
	// every progressive clip reads progressive and every woven one
	// interlaced (96x64 on half its frames); at 1.5 woven 1080i falls to
	// undetermined.
	idetFilter = "idet=intl_thres=1.2"
	// Sources of at least idetSeekFrom start the sample at a tenth of
	// their duration, at most idetMaxStart in: past the black, the logo
	// and the fade-in a programme often begins with, which tell nothing
	// about fields. Shorter ones start at 0: an input seek lands on a
	// keyframe, and in a short clip there may be none after the point.
	idetSeekFrom = 10 * time.Second
	idetMaxStart = 60 * time.Second
)

// IdetCounts are idet's multi-frame detection counts for the sample.
type IdetCounts struct {
	TFF, BFF, Progressive, Undetermined int
}

// Decided is the number of frames idet classified.
func (c IdetCounts) Decided() int { return c.TFF + c.BFF + c.Progressive }

// ScanReport is DetectScan's result: the flag, what the content showed and
// the decision.
type ScanReport struct {
	Flag    Scan       // from ffprobe's field_order
	Counts  IdetCounts // idet on the sample
	Scan    Scan       // the decision; what the deinterlacer is told
	Content bool       // the decision comes from the content, not the flag
}

// DecideScan decides the scan from the flag and idet's counts. The content
// wins when idet decided at least idetMinDecided frames: the content is
// interlaced when at least a quarter of them are interlaced (TFF + BFF), in
// the parity of the majority (ties go to top field first, the HD and
// broadcast default). A quarter, not a half: interlaced frames with little
// motion look progressive to idet (both fields show the same picture), so
// a talking head in 1080i scores well below half; progressive material
// almost never scores an interlaced frame. Too few decided frames leave the
// flag's verdict.
func DecideScan(flag Scan, c IdetCounts) ScanReport {
	r := ScanReport{Flag: flag, Counts: c, Scan: flag}
	if c.Decided() < idetMinDecided {
		return r
	}
	r.Content = true
	inter := c.TFF + c.BFF
	switch {
	case 4*inter < c.Decided():
		r.Scan = Progressive
	case c.BFF > c.TFF:
		r.Scan = BottomFieldFirst
	default:
		r.Scan = TopFieldFirst
	}
	return r
}

// IdetArgs returns ffmpeg's argv (without the program name) that runs idet
// over a sample of the video of p, a file at absPath (absolute), with the
// same defences as the probe: file: input, the probed demuxer forced and
// whitelisted, only the file protocol, capped probing, pixels and
// allocations, no audio, subtitles or data, and nothing written (the null
// muxer). idet prints its counts at info level when it is torn down, so the
// log level is info and -nostats keeps progress lines out.
func IdetArgs(p *Probe, absPath string) []string {
	var start time.Duration
	if p.Duration >= idetSeekFrom {
		start = min(p.Duration/10, idetMaxStart).Truncate(time.Millisecond)
	}
	vf := idetFilter
	if w := p.Video.Width; w > idetWidth {
		vf = fmt.Sprintf("scale=%d:%d:flags=fast_bilinear,%s", idetWidth, p.Video.Height, idetFilter)
	}
	return []string{
		"-hide_banner", "-nostdin", "-nostats", "-loglevel", "info",
		"-max_alloc", strconv.Itoa(maxAlloc),
		"-protocol_whitelist", "file",
		"-format_whitelist", p.Format,
		"-f", p.Format,
		"-probesize", strconv.Itoa(probeSize),
		"-analyzeduration", strconv.Itoa(analyzeDuration),
		"-max_probe_packets", strconv.Itoa(maxProbePackets),
		"-max_pixels", strconv.FormatInt(DefaultLimits().MaxPixels, 10),
		// autorotate would transpose a rotated picture, turning its lines
		// into columns before idet sees them.
		"-noautorotate",
		// Start at the keyframe before the point instead of decoding up
		// to it and dropping those frames: any 60 frames will do, and it
		// halves the check's cost (0.65 s to 0.45 s at 1080p).
		"-noaccurate_seek",
		"-ss", strconv.FormatFloat(start.Seconds(), 'f', 3, 64),
		"-i", "file:" + absPath,
		"-map", "0:" + strconv.Itoa(p.Video.Index),
		"-an", "-sn", "-dn",
		"-vf", vf,
		"-frames:v", strconv.Itoa(idetFrames),
		"-f", "null", "-",
	}
}

var idetMulti = regexp.MustCompile(`Multi frame detection: TFF:\s*(\d+)\s+BFF:\s*(\d+)\s+Progressive:\s*(\d+)\s+Undetermined:\s*(\d+)`)

// ParseIdet reads the last multi-frame summary idet printed in stderr.
func ParseIdet(stderr string) (IdetCounts, error) {
	all := idetMulti.FindAllStringSubmatch(stderr, -1)
	if len(all) == 0 {
		return IdetCounts{}, errors.New("transcode: idet: no multi-frame summary in ffmpeg's output")
	}
	m := all[len(all)-1]
	var n [4]int
	for i := range n {
		v, err := strconv.Atoi(m[i+1])
		if err != nil || v < 0 {
			return IdetCounts{}, fmt.Errorf("transcode: idet: count %q is not a number", m[i+1])
		}
		n[i] = v
	}
	return IdetCounts{TFF: n[0], BFF: n[1], Progressive: n[2], Undetermined: n[3]}, nil
}

// DetectScan measures whether the video of p (the probe of the file at
// path, which must be absolute) is interlaced: the field_order flag lies
// in both directions (progressive-flagged broadcast captures, interlaced
// flags on progressive camera files), so idet looks at a sample of the
// decoded pictures and DecideScan weighs both. It runs under lim's
// ProbeTimeout. An error means the content could not be measured; the
// caller may fall back to the flag (p.Video.Scan).
func DetectScan(ctx context.Context, x *Exec, path string, p *Probe, lim Limits) (ScanReport, error) {
	lim = lim.withDefaults()
	flag := scanFromFlag(p.Video.FieldOrder)
	if x == nil {
		return ScanReport{Flag: flag, Scan: flag}, errNoExec
	}
	if !filepath.IsAbs(path) {
		return ScanReport{Flag: flag, Scan: flag}, fmt.Errorf("transcode: idet: path %q is not absolute", path)
	}
	if !allowedFormat(p.Format) {
		return ScanReport{Flag: flag, Scan: flag}, fmt.Errorf("transcode: idet: container %q is not allowed", p.Format)
	}
	ictx, cancel := context.WithTimeout(ctx, lim.ProbeTimeout)
	defer cancel()
	cmd, err := x.Command(ictx, FFmpeg, IdetArgs(p, path), []string{path}, nil)
	if err != nil {
		return ScanReport{Flag: flag, Scan: flag}, err
	}
	// The summary comes last; the input description before it can be
	// long (tags), so only a tail is kept.
	stderr := newTail(16 << 10)
	cmd.Stderr = stderr
	err = runGroup(cmd)
	if err != nil {
		switch {
		case ctx.Err() != nil:
			return ScanReport{Flag: flag, Scan: flag}, fmt.Errorf("transcode: idet: %w", ctx.Err())
		case ictx.Err() != nil:
			return ScanReport{Flag: flag, Scan: flag}, fmt.Errorf("transcode: idet: no answer within %s: %w", lim.ProbeTimeout, ictx.Err())
		}
		return ScanReport{Flag: flag, Scan: flag}, fmt.Errorf("transcode: idet: %w: %s", err, stderr.String())
	}
	counts, err := ParseIdet(stderr.String())
	if err != nil {
		return ScanReport{Flag: flag, Scan: flag}, err
	}
	return DecideScan(flag, counts), nil
}
