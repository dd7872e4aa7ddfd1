package transcode

import (
	"bytes"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Seed corpora live in testdata/fuzz/<FuzzName>; the fixtures below are
// added as well so that every new fixture also seeds the fuzzer.

func FuzzParseProbe(f *testing.F) {
	fixtures, _ := filepath.Glob(filepath.Join(goldenDir, "probe", "*.json"))
	for _, path := range fixtures {
		b, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		for _, format := range []string{"mov", "matroska", "mpegts"} {
			f.Add(b, format, int64(len(b)))
		}
	}
	f.Fuzz(func(t *testing.T, data []byte, sniffed string, size int64) {
		lim := DefaultLimits()
		p, err := ParseProbe(data, sniffed, size, lim)
		if err != nil {
			if p != nil {
				t.Fatalf("probe %+v with error %v", p, err)
			}
			if !strings.HasPrefix(err.Error(), "transcode: ") {
				t.Fatalf("error without prefix: %v", err)
			}
			return
		}
		v := p.Video
		switch {
		case p.Format != sniffed || !allowedFormat(p.Format):
			t.Fatalf("format %q from sniffed %q", p.Format, sniffed)
		case p.Duration < lim.MinDuration || p.Duration > lim.MaxDuration:
			t.Fatalf("duration %s outside the limits", p.Duration)
		case p.Size != size || size <= 0 || size > lim.MaxBytes:
			t.Fatalf("size %d", p.Size)
		case v.Codec == "" || v.Width <= 0 || v.Height <= 0:
			t.Fatalf("video %+v", v)
		case v.Rotation%90 != 0 || v.Rotation < 0 || v.Rotation >= 360:
			t.Fatalf("rotation %d", v.Rotation)
		case checkSize("display", v.DisplayWidth, v.DisplayHeight, lim) != nil || min(v.DisplayWidth, v.DisplayHeight) < minSide:
			t.Fatalf("display %dx%d", v.DisplayWidth, v.DisplayHeight)
		case p.Audio != nil && (p.Audio.Channels <= 0 || p.Audio.SampleRate <= 0):
			t.Fatalf("audio %+v", p.Audio)
		}
		// Whatever ParseProbe accepts must plan and build an argv.
		plan, err := PlanLadder(p, DefaultLadder(), 4*time.Second)
		if err != nil {
			t.Fatalf("accepted probe %+v video %+v does not plan: %v", p, v, err)
		}
		if _, err := Args(plan, "/in/x", "/out", ArgsOptions{}); err != nil {
			t.Fatalf("plan %+v does not build: %v", plan, err)
		}
	})
}

func FuzzParseProgress(f *testing.F) {
	if b, err := os.ReadFile(filepath.Join(goldenDir, "progress.txt")); err == nil {
		f.Add(b)
	}
	f.Add([]byte("out_time_us=N/A\nout_time=-577014:32:22.775808\nspeed=N/A\nprogress=continue\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		n := 0
		err := ParseProgress(bytes.NewReader(data), func(p Progress) {
			n++
			if p.OutTime < 0 || p.Frame < 0 || p.Speed < 0 || math.IsNaN(p.Speed) || math.IsInf(p.Speed, 0) {
				t.Fatalf("progress %+v", p)
			}
		})
		if blocks := bytes.Count(data, []byte("progress=")); n > blocks {
			t.Fatalf("%d callbacks for %d progress lines", n, blocks)
		}
		if err != nil && !strings.HasPrefix(err.Error(), "transcode: progress: ") {
			t.Fatalf("error %v", err)
		}
	})
}

func FuzzSniff(f *testing.F) {
	for _, s := range []string{"#EXTM3U\n", "ffconcat version 1.0\n", "", "hello", "\x1A\x45\xDF\xA3",
		"\x00\x00\x00\x20ftypisom", "RIFF\x00\x00\x00\x00AVI LIST"} {
		f.Add([]byte(s))
	}
	f.Add(tsGarbage(3))
	f.Fuzz(func(t *testing.T, header []byte) {
		format, err := Sniff(header)
		if err != nil {
			if format != "" || !errors.Is(err, ErrInvalidInput) {
				t.Fatalf("Sniff = %q, %v", format, err)
			}
			return
		}
		if !allowedFormat(format) {
			t.Fatalf("Sniff = %q", format)
		}
		if bytes.HasPrefix(header, []byte("#EXTM3U")) || bytes.HasPrefix(header, []byte("ffconcat")) {
			t.Fatalf("text script accepted as %s", format)
		}
	})
}
