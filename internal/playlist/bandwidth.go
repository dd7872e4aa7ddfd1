package playlist

import (
	"math"
	"math/bits"
)

// Bandwidth computes the BANDWIDTH and AVERAGE-BANDWIDTH of a rendition from
// its segments, in bits per second rounded up, using the segment bit rates of
// RFC 8216 section 4.1 that section 4.3.4.2 refers to:
//
//   - average: the sum of the sizes in bits divided by the sum of the
//     durations;
//   - peak: the largest bit rate (sum of sizes / sum of durations) of any
//     contiguous run of segments whose total duration is between 0.5 and 1.5
//     times the target duration.
//
// When every segment lasts at least half the target duration, which is what
// ffmpeg produces except for a short last segment, the peak is simply the
// largest Size*8/Duration of any one segment. The window rule matters for a
// short last segment: alone, a 0.04 s tail carrying a keyframe would show a
// bit rate many times the real one and make players avoid the rendition.
//
// Durations are taken as written in the playlist (rounded to milliseconds)
// and the target duration as WriteMedia writes it, so the figures describe
// exactly the published playlist; the arithmetic is exact integer arithmetic.
// If no run qualifies (a single segment shorter than half a second), the
// peak is the average; the peak is never below the average. Segments that
// WriteMedia would reject for their duration are ignored, and a negative
// Size counts as 0. Both results are 0 when no segment is usable.
func Bandwidth(segs []Segment) (peak, average int64) {
	type seg struct{ bytes, ms uint64 }
	usable := make([]seg, 0, len(segs))
	durations := make([]int64, 0, len(segs))
	var totalBytes, totalMS uint64
	for _, s := range segs {
		_, ms, err := extinfDuration(s.Duration)
		if err != nil {
			continue
		}
		size := uint64(max(s.Size, 0))
		usable = append(usable, seg{size, uint64(ms)})
		durations = append(durations, ms)
		totalBytes = saturatingAdd(totalBytes, size)
		totalMS += uint64(ms) // at most 2^20 segments * 8191000 ms in practice; cannot overflow
	}
	if len(usable) == 0 {
		return 0, 0
	}
	average = bitsPerSecond(totalBytes, totalMS)

	// Windows in milliseconds: 0.5*T*1000 and 1.5*T*1000.
	target := uint64(targetDuration(durations))
	lo, hi := target*500, target*1500
	var bestBytes, bestMS uint64 // best rate so far as a fraction; 0/0 = none
	for i := range usable {
		var b, ms uint64
		for j := i; j < len(usable); j++ {
			b = saturatingAdd(b, usable[j].bytes)
			ms += usable[j].ms
			if ms > hi {
				break
			}
			if ms >= lo && (bestMS == 0 || greaterRate(b, ms, bestBytes, bestMS)) {
				bestBytes, bestMS = b, ms
			}
		}
	}
	peak = average
	if bestMS != 0 {
		peak = max(bitsPerSecond(bestBytes, bestMS), average)
	}
	return peak, average
}

// greaterRate reports whether b1/ms1 > b2/ms2, by cross-multiplying in 128
// bits so that no rounding can pick the wrong window.
func greaterRate(b1, ms1, b2, ms2 uint64) bool {
	h1, l1 := bits.Mul64(b1, ms2)
	h2, l2 := bits.Mul64(b2, ms1)
	return h1 > h2 || (h1 == h2 && l1 > l2)
}

// bitsPerSecond returns ceil(bytes*8*1000 / ms), saturating at MaxInt64.
func bitsPerSecond(bytes, ms uint64) int64 {
	hi, lo := bits.Mul64(bytes, 8000)
	if hi >= ms {
		return math.MaxInt64
	}
	q, r := bits.Div64(hi, lo, ms)
	if q >= math.MaxInt64 {
		return math.MaxInt64
	}
	if r != 0 {
		q++
	}
	if q > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(q)
}

func saturatingAdd(a, b uint64) uint64 {
	s, carry := bits.Add64(a, b, 0)
	if carry != 0 {
		return math.MaxUint64
	}
	return s
}
