// Package transcode turns one local upload into a plain (unencrypted) MPEG-TS
// HLS ladder: it probes the file, plans the renditions, builds ffmpeg's argv
// and runs a single ffmpeg process for the whole ladder.
//
// It deliberately knows nothing of keys, storage, queues or databases: the
// pipeline watches the output directory and encrypts and uploads each segment
// once ffmpeg lists it in its rendition's playlist.
//
// Untrusted input is handled in layers, because ffmpeg's own checks against
// playlist and concat tricks have been bypassed before: Sniff accepts only an
// allowlist of containers from their magic bytes, ffprobe and ffmpeg are run
// with argv only (never a shell), the demuxer is forced with -f, the input is
// a file: URL with -protocol_whitelist file and -format_whitelist, and sizes,
// pixels, single allocations and wall-clock time are capped.
package transcode

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ErrInvalidInput marks bad input: retrying will not help. Every bad-input
// error wraps it and carries a reason a user can act on.
var ErrInvalidInput = errors.New("transcode: invalid input")

// invalid builds a bad-input error; its message reads
// "transcode: invalid input: <reason>".
func invalid(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidInput, fmt.Sprintf(format, a...))
}

// Limits bounds what the worker accepts. A zero field takes its default, so
// callers can override only what they care about.
type Limits struct {
	MaxBytes    int64         // file size; default 20 GiB
	MaxDuration time.Duration // default 6h
	// MaxWidth and MaxHeight bound the long and the short side of the
	// picture (coded and displayed), whatever its orientation, so a portrait
	// phone video is held to the same limits as its landscape twin.
	// Default 7680x4320.
	MaxWidth, MaxHeight int
	MaxPixels           int64         // width*height; default 7680*4320
	MinDuration         time.Duration // default 0.5s
	ProbeTimeout        time.Duration // default 30s
}

// DefaultLimits returns the limits used for zero fields.
func DefaultLimits() Limits {
	return Limits{
		MaxBytes:     20 << 30,
		MaxDuration:  6 * time.Hour,
		MaxWidth:     7680,
		MaxHeight:    4320,
		MaxPixels:    7680 * 4320,
		MinDuration:  500 * time.Millisecond,
		ProbeTimeout: 30 * time.Second,
	}
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.MaxBytes <= 0 {
		l.MaxBytes = d.MaxBytes
	}
	if l.MaxDuration <= 0 {
		l.MaxDuration = d.MaxDuration
	}
	if l.MaxWidth <= 0 {
		l.MaxWidth = d.MaxWidth
	}
	if l.MaxHeight <= 0 {
		l.MaxHeight = d.MaxHeight
	}
	if l.MaxPixels <= 0 {
		l.MaxPixels = d.MaxPixels
	}
	if l.MinDuration <= 0 {
		l.MinDuration = d.MinDuration
	}
	if l.ProbeTimeout <= 0 {
		l.ProbeTimeout = d.ProbeTimeout
	}
	return l
}

// Rational is an exact rate such as 30000/1001, kept exact because GOP and
// segment arithmetic on NTSC rates drifts when done in floating point.
type Rational struct{ Num, Den int }

// Float64 returns Num/Den, or 0 when the rational is undefined.
func (r Rational) Float64() float64 {
	if r.Den == 0 {
		return 0
	}
	return float64(r.Num) / float64(r.Den)
}

// String formats the rational the way ffmpeg writes and reads it: "30000/1001".
func (r Rational) String() string {
	return strconv.Itoa(r.Num) + "/" + strconv.Itoa(r.Den)
}

// valid reports whether r is a positive, finite rate.
func (r Rational) valid() bool { return r.Num > 0 && r.Den > 0 }

// parseRational parses ffprobe's "num/den" (or a bare integer) and reduces it.
func parseRational(s string) (Rational, bool) {
	n, d, found := strings.Cut(strings.TrimSpace(s), "/")
	if !found {
		d = "1"
	}
	num, err1 := strconv.Atoi(n)
	den, err2 := strconv.Atoi(d)
	if err1 != nil || err2 != nil {
		return Rational{}, false
	}
	r := Rational{num, den}.reduce()
	return r, r.valid()
}

func (r Rational) reduce() Rational {
	if r.Num <= 0 || r.Den <= 0 {
		return r
	}
	g := gcd(r.Num, r.Den)
	return Rational{r.Num / g, r.Den / g}
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// Allowed demuxers, as passed to -f. The sniffer maps magic bytes onto these.
const (
	formatMOV      = "mov"
	formatMatroska = "matroska"
	formatMPEGTS   = "mpegts"
)

const allowedContainers = "allowed: mp4/mov, matroska/webm, mpegts"

func allowedFormat(f string) bool {
	return f == formatMOV || f == formatMatroska || f == formatMPEGTS
}

// Caps shared by ffprobe and ffmpeg, so that both see the same streams: a
// stream found by ffprobe but missed by ffmpeg's shorter probing would make
// -map fail.
const (
	// probeSize and analyzeDuration double ffmpeg's defaults (5 MB, 5 s):
	// enough for transport streams whose audio starts late, still bounded.
	probeSize       = 10_000_000
	analyzeDuration = 10_000_000 // microseconds
	maxProbePackets = 2500       // ffmpeg's default, made explicit
	// maxAlloc caps any single allocation. Legitimate sources stay far
	// below it (a 16-bit 8K plane is 66 MB; the sample tables of a 6 h
	// 60 fps mp4 are a few tens of MB), while a header claiming billions
	// of entries fails fast instead of exhausting memory.
	maxAlloc = 256 << 20
)
