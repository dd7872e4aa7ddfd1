package backfill

import (
	"testing"
	"time"
)

func TestEstimate(t *testing.T) {
	for _, tc := range []struct {
		name       string
		in         ETAInput
		known      bool
		eta        time.Duration
		throughput float64
	}{
		{"nothing started", ETAInput{Running: true, Remaining: 10}, false, 0, 0},
		{"first title still running", ETAInput{Running: true, Remaining: 10, Busy: 30 * time.Second, BytesRemaining: 1e9}, false, 0, 0},
		{"by bytes", ETAInput{Running: true, Remaining: 3, Worked: 1, Busy: 100 * time.Second, BytesDone: 100e6, BytesRemaining: 300e6},
			true, 300 * time.Second, 1},
		// Two titles of very different sizes remain: the bytes, not the
		// count, decide.
		{"by bytes, not titles", ETAInput{Running: true, Remaining: 2, Worked: 10, Busy: 10 * time.Second, BytesDone: 10e6, BytesRemaining: 50e6},
			true, 50 * time.Second, 1},
		{"by titles when no bytes (re-transcodes)", ETAInput{Running: true, Remaining: 6, Worked: 4, Busy: 40 * time.Second},
			true, 60 * time.Second, 0},
		{"only failures so far", ETAInput{Running: true, Remaining: 5, Worked: 5, Busy: 10 * time.Second, BytesRemaining: 5e6},
			true, 10 * time.Second, 0},
		{"paused", ETAInput{Running: false, Remaining: 3, Worked: 1, Busy: 100 * time.Second, BytesDone: 100e6, BytesRemaining: 300e6},
			false, 0, 1},
		{"hopelessly slow", ETAInput{Running: true, Remaining: 1e6, Worked: 1, Busy: 1e6 * time.Second}, false, 0, 0},
		{"finished", ETAInput{Running: true, Remaining: 0, Worked: 4, Busy: 200 * time.Second, BytesDone: 400e6}, false, 0, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := Estimate(tc.in)
			if e.Known != tc.known || e.ETA.Round(time.Millisecond) != tc.eta || e.ThroughputMBps != tc.throughput {
				t.Errorf("Estimate(%+v) = %+v, want known=%v eta=%v throughput=%v", tc.in, e, tc.known, tc.eta, tc.throughput)
			}
		})
	}
}
