package playlist

import (
	"math"
	"testing"
)

func TestBandwidth(t *testing.T) {
	seg := func(d float64, size int64) Segment { return Segment{URI: "s.ts", Duration: d, Size: size} }
	tests := []struct {
		name          string
		segs          []Segment
		peak, average int64
	}{
		{"none", nil, 0, 0},
		{"one segment", []Segment{seg(4, 1_000_000)}, 2_000_000, 2_000_000},
		{
			// Per segment: 1998001.998, 2997002.997, 1598401.598 bits/s;
			// no two adjacent segments fit in 1.5 * target (6 s).
			"ffmpeg ladder rung",
			[]Segment{seg(4.004, 1_000_000), seg(4.004, 1_500_000), seg(2.002, 400_000)},
			2_997_003, 2_317_683, // 23.2e9 / 10010 ms = 2317682.3
		},
		{
			// The 0.04 s tail alone would claim 20 Mbit/s; RFC 8216 only
			// counts runs of 2 s to 6 s here, so it counts with its
			// neighbour: 8.8e9 / 4040 ms.
			"short tail segment",
			[]Segment{seg(4, 1_000_000), seg(0.04, 100_000)},
			2_178_218, 2_178_218,
		},
		{
			"short segments combine into windows",
			[]Segment{seg(1, 100_000), seg(1, 900_000), seg(4, 1_000_000)},
			// Target 4, windows 2 s..6 s: {1,1} = 8e9/2000 = 4e6 is the peak.
			4_000_000, 2_666_667,
		},
		{"single segment under half a second", []Segment{seg(0.4, 50_000)}, 1_000_000, 1_000_000},
		{"rounded up", []Segment{seg(3, 1)}, 3, 3},
		{"durations as written, in milliseconds", []Segment{seg(4.0004, 1_000_000)}, 2_000_000, 2_000_000},
		{"unusable segments ignored", []Segment{seg(math.NaN(), 9e9), seg(0, 9e9), seg(-1, 9e9), seg(4, 1_000_000)}, 2_000_000, 2_000_000},
		{"negative size counts as 0", []Segment{seg(4, -5), seg(4, 1_000_000)}, 2_000_000, 1_000_000},
		{"saturates", []Segment{seg(4, math.MaxInt64), seg(4, math.MaxInt64)}, math.MaxInt64, math.MaxInt64},
		{"all unusable", []Segment{seg(math.Inf(1), 5)}, 0, 0},
	}
	for _, tc := range tests {
		peak, avg := Bandwidth(tc.segs)
		if peak != tc.peak || avg != tc.average {
			t.Errorf("%s: Bandwidth = %d, %d; want %d, %d", tc.name, peak, avg, tc.peak, tc.average)
		}
		if peak < avg {
			t.Errorf("%s: peak %d below average %d", tc.name, peak, avg)
		}
	}
}

// When every segment lasts at least half the target duration, the RFC's
// window rule reduces to the largest single-segment bit rate.
func TestBandwidthEqualsPerSegmentMaxForRegularSegments(t *testing.T) {
	durations := []float64{4.004, 4.004, 3.337, 4.004, 2.5, 4.004, 2.002}
	segs := make([]Segment, len(durations))
	var want int64
	for i, d := range durations {
		segs[i] = Segment{URI: "s.ts", Duration: d, Size: int64(300_000 + 97_531*i)}
		ms := int64(math.Round(d * 1000))
		rate := (segs[i].Size*8000 + ms - 1) / ms
		want = max(want, rate)
	}
	if peak, _ := Bandwidth(segs); peak != want {
		t.Fatalf("peak = %d, want the per-segment maximum %d", peak, want)
	}
}
