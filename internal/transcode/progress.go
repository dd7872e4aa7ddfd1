package transcode

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
)

// Progress is one block of ffmpeg's -progress output.
type Progress struct {
	OutTime time.Duration // media time written so far; never negative
	Frame   int64         // video frames encoded (first output stream)
	Speed   float64       // multiple of real time; 0 while unknown
	Done    bool          // the block ended with progress=end
}

// maxProgressLine bounds a line; ffmpeg's are under 100 bytes.
const maxProgressLine = 64 << 10

// ParseProgress reads ffmpeg's -progress key=value lines and calls fn once
// per block (each block ends with progress=continue or progress=end). Values
// that are N/A or malformed leave the previous block's value in place, so a
// consumer sees a steady OutTime even while ffmpeg has nothing to report. A
// trailing block without its progress= line is not reported.
func ParseProgress(r io.Reader, fn func(Progress)) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxProgressLine)
	var cur Progress
	haveUS := false // out_time_us wins over its aliases within a block
	for sc.Scan() {
		key, val, ok := strings.Cut(strings.TrimRight(sc.Text(), "\r"), "=")
		if !ok {
			continue
		}
		val = strings.TrimSpace(val)
		// Keys as ffmpeg writes them, exactly: a line that only looks like
		// "progress =" must not end a block (FuzzParseProgress found one).
		switch key {
		case "out_time_us":
			if d, ok := parseMicros(val); ok {
				cur.OutTime, haveUS = d, true
			}
		case "out_time_ms": // microseconds too, despite the name
			if d, ok := parseMicros(val); ok && !haveUS {
				cur.OutTime = d
			}
		case "out_time":
			if d, ok := parseClock(val); ok && !haveUS {
				cur.OutTime = d
			}
		case "frame":
			if n, err := strconv.ParseInt(val, 10, 64); err == nil && n >= 0 {
				cur.Frame = n
			}
		case "speed":
			f, err := strconv.ParseFloat(strings.TrimSuffix(val, "x"), 64)
			if err == nil && !math.IsNaN(f) && !math.IsInf(f, 0) && f >= 0 {
				cur.Speed = f
			}
		case "progress":
			cur.Done = val == "end"
			if fn != nil {
				fn(cur)
			}
			cur.Done, haveUS = false, false
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("transcode: progress: %w", err)
	}
	return nil
}

// parseMicros parses a microsecond count; negative values (audio priming
// before the first frame) count as zero.
func parseMicros(s string) (time.Duration, bool) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n > math.MaxInt64/int64(time.Microsecond) {
		return 0, false
	}
	return time.Duration(max(n, 0)) * time.Microsecond, true
}

// parseClock parses "HH:MM:SS.micros", possibly negative.
func parseClock(s string) (time.Duration, bool) {
	if strings.HasPrefix(s, "-") {
		return 0, true
	}
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return 0, false
	}
	h, err1 := strconv.ParseUint(parts[0], 10, 32)
	m, err2 := strconv.ParseUint(parts[1], 10, 8)
	sec, err3 := strconv.ParseFloat(parts[2], 64)
	if err1 != nil || err2 != nil || err3 != nil || m >= 60 || !(sec >= 0 && sec < 60) || h > 1_000_000 {
		return 0, false
	}
	d := time.Duration(h)*time.Hour + time.Duration(m)*time.Minute + time.Duration(sec*float64(time.Second))
	return d, true
}
