package playlist

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The golden-file idiom of go/printer: go test ./internal/playlist -update
// rewrites the files; review the diff before committing it.
var update = flag.Bool("update", false, "rewrite golden files")

const (
	goldenDir  = "../../testdata/playlist"
	testKeyURI = "https://video.example.com/v1/keys/k_0123456789abcdef"
)

// fixedIV is bytes 0..15, each incremented by n: deterministic and distinct
// per segment.
func fixedIV(n int) [16]byte {
	var iv [16]byte
	for i := range iv {
		iv[i] = byte(i + n)
	}
	return iv
}

func segments(durations ...float64) []Segment {
	segs := make([]Segment, len(durations))
	for i, d := range durations {
		segs[i] = Segment{
			URI:      fmt.Sprintf("seg_%05d.ts", i+1),
			Duration: d,
			Size:     int64(d * 1_000_000),
			IV:       fixedIV(i),
		}
	}
	return segs
}

const testKeyURI2 = "https://video.example.com/v1/keys/k_fedcba9876543210"

// withKeys gives segment i the key URI uris[i].
func withKeys(segs []Segment, uris ...string) []Segment {
	for i := range segs {
		segs[i].KeyURI = uris[i]
	}
	return segs
}

// TestWriteMediaKeyPerSegment: each segment's EXT-X-KEY names its own key
// URI, so the URI changes exactly at a key period boundary, and the parser
// reads each segment's key back.
func TestWriteMediaKeyPerSegment(t *testing.T) {
	segs := withKeys(segments(4, 4, 4, 2.5), testKeyURI, testKeyURI, testKeyURI2, testKeyURI2)
	out := writeMedia(t, Media{Segments: segs})
	pm, err := ParseMedia(bytes.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range pm.Segments {
		if s.Key == nil || s.Key.URI != segs[i].KeyURI || s.Key.IV != formatIV(segs[i].IV) {
			t.Errorf("segment %d key %+v, want %s", i, s.Key, segs[i].KeyURI)
		}
	}
	// A segment with no key URI of its own and none on the playlist.
	segs[1].KeyURI = ""
	if err := WriteMedia(io.Discard, Media{Segments: segs}); err == nil {
		t.Error("a segment without a key URI was written")
	}
	segs[1].KeyURI = `https://x/"k`
	if err := WriteMedia(io.Discard, Media{Segments: segs}); err == nil {
		t.Error("a segment key URI with a quote was written")
	}
}

func TestStarts(t *testing.T) {
	// Durations summed as written (milliseconds): 3.9996 is written 4.000.
	got, err := Starts([]float64{3.9996, 4.0004, 2})
	if err != nil || len(got) != 3 || got[0] != 0 || got[1] != 4 || got[2] != 8 {
		t.Fatalf("Starts = %v, %v", got, err)
	}
	if _, err := Starts([]float64{1, 0}); err == nil {
		t.Error("a zero duration was accepted")
	}
}

func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join(goldenDir, name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

func writeMedia(t *testing.T, m Media) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := WriteMedia(&buf, m); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestWriteMediaGolden(t *testing.T) {
	tests := []struct {
		golden string
		media  Media
	}{
		{"media_720p.golden.m3u8", Media{KeyURI: testKeyURI, Independent: true, Segments: segments(4.004, 4.004, 3.98, 4.004, 4.004, 0.04)}},
		{"media_single_segment.golden.m3u8", Media{KeyURI: testKeyURI, Independent: true, Segments: segments(2.5)}},
		// 9.5 s rounds half up to 10; 4.4 s alone would give 4, where
		// grafov's ceil would give 5.
		{"media_target_rounding.golden.m3u8", Media{KeyURI: testKeyURI, Independent: true, Segments: segments(4.4, 9.5, 8.5, 1.2)}},
		{"media_target_round_down.golden.m3u8", Media{KeyURI: testKeyURI, Independent: true, Segments: segments(4.4, 4.2, 3.1)}},
		// Two key periods of 8 s: the third segment starts the second.
		{"media_two_periods.golden.m3u8", Media{Independent: true, Segments: withKeys(segments(4, 4, 4, 2.5), testKeyURI, testKeyURI, testKeyURI2, testKeyURI2)}},
		// An init section re-emitted at the boundary under the new key.
		{"media_two_periods_map.golden.m3u8", Media{Independent: true, Segments: func() []Segment {
			segs := withKeys(segments(4, 4, 4), testKeyURI, testKeyURI, testKeyURI2)
			segs[0].URI, segs[1].URI, segs[2].URI = "seg_00000.m4s", "seg_00001.m4s", "seg_00002.m4s"
			segs[0].Init = &Init{URI: "init_00000.mp4", IV: fixedIV(100), KeyURI: testKeyURI}
			segs[2].Init = &Init{URI: "init_00001.mp4", IV: fixedIV(101), KeyURI: testKeyURI2}
			return segs
		}()}},
	}
	for _, tc := range tests {
		t.Run(tc.golden, func(t *testing.T) {
			got := writeMedia(t, tc.media)
			checkGolden(t, tc.golden, got)
			// Deterministic: a second run gives the same bytes.
			if again := writeMedia(t, tc.media); !bytes.Equal(again, got) {
				t.Fatal("two runs gave different output")
			}
		})
	}
}

func TestWriteMediaStructure(t *testing.T) {
	segs := segments(4.004, 4.004, 3.98, 0.04)
	out := string(writeMedia(t, Media{KeyURI: testKeyURI, Independent: true, Segments: segs}))
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")

	header := []string{
		"#EXTM3U",
		"#EXT-X-VERSION:3",
		"#EXT-X-INDEPENDENT-SEGMENTS",
		"#EXT-X-PLAYLIST-TYPE:VOD",
		"#EXT-X-MEDIA-SEQUENCE:0",
		"#EXT-X-TARGETDURATION:4",
	}
	for i, want := range header {
		if lines[i] != want {
			t.Fatalf("line %d = %q, want %q", i+1, lines[i], want)
		}
	}
	body := lines[len(header):]
	if len(body) != 3*len(segs)+1 {
		t.Fatalf("got %d body lines, want %d", len(body), 3*len(segs)+1)
	}
	for i, s := range segs {
		key := fmt.Sprintf(`#EXT-X-KEY:METHOD=AES-128,URI="%s",IV=0x%X`, testKeyURI, s.IV[:])
		if body[3*i] != key {
			t.Errorf("segment %d key line = %q, want %q", i, body[3*i], key)
		}
		if !strings.HasPrefix(body[3*i+1], "#EXTINF:") || body[3*i+2] != s.URI {
			t.Errorf("segment %d: %q %q", i, body[3*i+1], body[3*i+2])
		}
	}
	if body[len(body)-1] != "#EXT-X-ENDLIST" {
		t.Errorf("last line = %q", body[len(body)-1])
	}
	if n := strings.Count(out, "#EXT-X-KEY:"); n != len(segs) {
		t.Errorf("%d EXT-X-KEY tags for %d segments", n, len(segs))
	}
	if !strings.Contains(out, "IV=0x00010203040506070809") {
		t.Error("IV not written with its 0x prefix")
	}
}

// grafov formats EXTINF through float32; these values must still come out
// exact, rounded to 3 decimals from the float64 value.
func TestWriteMediaEXTINFExact(t *testing.T) {
	tests := []struct {
		in   float64
		want string
	}{
		{4.004, "4.004"},
		{3.98, "3.980"},
		{0.04, "0.040"},
		{2.002, "2.002"},
		{10.01, "10.010"},
		{0.001, "0.001"},
		{4.0004999, "4.000"},
		{4.0005, "4.000"}, // the float64 is just below 4.0005; float32 alone says 4.001
		{4.00051, "4.001"},
		{6.006006, "6.006"},
		{59.94, "59.940"},
		{1001.0 / 30000 * 120, "4.004"},
		{8191.999, "8191.999"},
	}
	for _, tc := range tests {
		out := string(writeMedia(t, Media{KeyURI: testKeyURI, Independent: true, Segments: segments(tc.in)}))
		if !strings.Contains(out, "\n#EXTINF:"+tc.want+",\n") {
			t.Errorf("duration %v: want EXTINF:%s in\n%s", tc.in, tc.want, out)
		}
	}
}

func TestTargetDuration(t *testing.T) {
	tests := []struct {
		durations []float64
		want      int
	}{
		{[]float64{4}, 4},
		{[]float64{4.004}, 4},   // grafov: 5
		{[]float64{4.4999}, 5},  // written as 4.500, which rounds to 5
		{[]float64{4.49949}, 4}, // written as 4.499
		{[]float64{4.5}, 5},
		{[]float64{8.5}, 9}, // half up, not half even
		{[]float64{9.5}, 10},
		{[]float64{0.04}, 1}, // never 0
		{[]float64{2, 6.2, 3}, 6},
	}
	for _, tc := range tests {
		out := string(writeMedia(t, Media{KeyURI: testKeyURI, Independent: true, Segments: segments(tc.durations...)}))
		want := fmt.Sprintf("\n#EXT-X-TARGETDURATION:%d\n", tc.want)
		if !strings.Contains(out, want) {
			t.Errorf("%v: want %q in\n%s", tc.durations, want, out)
		}
	}
}

func TestWriteMediaErrors(t *testing.T) {
	ok := segments(4)[0]
	with := func(f func(*Segment)) []Segment {
		s := ok
		f(&s)
		return []Segment{s}
	}
	tests := []struct {
		name string
		m    Media
	}{
		{"no segments", Media{KeyURI: testKeyURI}},
		{"empty key URI", Media{Segments: []Segment{ok}}},
		{"key URI with quote", Media{KeyURI: `https://x/"k`, Segments: []Segment{ok}}},
		{"key URI with newline", Media{KeyURI: "https://x/k\n#EXT-X-ENDLIST", Segments: []Segment{ok}}},
		{"empty URI", Media{KeyURI: testKeyURI, Independent: true, Segments: with(func(s *Segment) { s.URI = "" })}},
		{"absolute URL", Media{KeyURI: testKeyURI, Independent: true, Segments: with(func(s *Segment) { s.URI = "https://cdn.example.com/a.ts" })}},
		{"scheme-relative", Media{KeyURI: testKeyURI, Independent: true, Segments: with(func(s *Segment) { s.URI = "//cdn.example.com/a.ts" })}},
		{"absolute path", Media{KeyURI: testKeyURI, Independent: true, Segments: with(func(s *Segment) { s.URI = "/hls/a.ts" })}},
		{"scheme only", Media{KeyURI: testKeyURI, Independent: true, Segments: with(func(s *Segment) { s.URI = "file:a.ts" })}},
		{"dot dot", Media{KeyURI: testKeyURI, Independent: true, Segments: with(func(s *Segment) { s.URI = "../other/a.ts" })}},
		{"dot dot inside", Media{KeyURI: testKeyURI, Independent: true, Segments: with(func(s *Segment) { s.URI = "a/../../b.ts" })}},
		{"query", Media{KeyURI: testKeyURI, Independent: true, Segments: with(func(s *Segment) { s.URI = "a.ts?sig=1" })}},
		{"fragment", Media{KeyURI: testKeyURI, Independent: true, Segments: with(func(s *Segment) { s.URI = "a.ts#t=1" })}},
		{"space", Media{KeyURI: testKeyURI, Independent: true, Segments: with(func(s *Segment) { s.URI = "a b.ts" })}},
		{"newline injection", Media{KeyURI: testKeyURI, Independent: true, Segments: with(func(s *Segment) { s.URI = "a.ts\n#EXT-X-ENDLIST" })}},
		{"control character", Media{KeyURI: testKeyURI, Independent: true, Segments: with(func(s *Segment) { s.URI = "a\x00.ts" })}},
		{"backslash", Media{KeyURI: testKeyURI, Independent: true, Segments: with(func(s *Segment) { s.URI = `a\b.ts` })}},
		{"invalid UTF-8", Media{KeyURI: testKeyURI, Independent: true, Segments: with(func(s *Segment) { s.URI = "a\xff.ts" })}},
		{"zero duration", Media{KeyURI: testKeyURI, Independent: true, Segments: with(func(s *Segment) { s.Duration = 0 })}},
		{"negative duration", Media{KeyURI: testKeyURI, Independent: true, Segments: with(func(s *Segment) { s.Duration = -4 })}},
		{"NaN duration", Media{KeyURI: testKeyURI, Independent: true, Segments: with(func(s *Segment) { s.Duration = math.NaN() })}},
		{"infinite duration", Media{KeyURI: testKeyURI, Independent: true, Segments: with(func(s *Segment) { s.Duration = math.Inf(1) })}},
		{"duration rounding to 0", Media{KeyURI: testKeyURI, Independent: true, Segments: with(func(s *Segment) { s.Duration = 0.0004 })}},
		{"absurd duration", Media{KeyURI: testKeyURI, Independent: true, Segments: with(func(s *Segment) { s.Duration = 1e6 })}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			err := WriteMedia(&buf, tc.m)
			if err == nil {
				t.Fatalf("no error; wrote\n%s", buf.String())
			}
			if !strings.HasPrefix(err.Error(), "playlist: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
			if buf.Len() != 0 {
				t.Error("wrote output despite the error")
			}
		})
	}
}

func TestWriteMediaAcceptsSubdirectories(t *testing.T) {
	segs := segments(4)
	segs[0].URI = "720p/seg_00001.ts"
	writeMedia(t, Media{KeyURI: "keys/k.bin", Segments: segs})
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestWriteErrorsAreWrapped(t *testing.T) {
	err := WriteMedia(failWriter{}, Media{KeyURI: testKeyURI, Independent: true, Segments: segments(4)})
	if err == nil || !strings.Contains(err.Error(), "disk full") || !strings.HasPrefix(err.Error(), "playlist: ") {
		t.Errorf("WriteMedia: %v", err)
	}
	err = WriteMaster(failWriter{}, Master{Variants: testVariants(), Independent: true, Complete: true})
	if err == nil || !strings.Contains(err.Error(), "disk full") || !strings.HasPrefix(err.Error(), "playlist: ") {
		t.Errorf("WriteMaster: %v", err)
	}
}

func testVariants() []Variant {
	return []Variant{
		{URI: "360p/index.m3u8", Bandwidth: 1_105_236, AverageBandwidth: 902_114, Codecs: "avc1.4d401e,mp4a.40.2", Width: 640, Height: 360, FrameRate: 29.97},
		{URI: "1080p/index.m3u8", Bandwidth: 6_401_774, AverageBandwidth: 5_120_000, Codecs: "avc1.640028,mp4a.40.2", Width: 1920, Height: 1080, FrameRate: 29.97},
		{URI: "720p/index.m3u8", Bandwidth: 3_210_002, AverageBandwidth: 2_800_500, Codecs: "avc1.64001f,mp4a.40.2", Width: 1280, Height: 720, FrameRate: 29.97},
		{URI: "540p/index.m3u8", Bandwidth: 1_105_236, AverageBandwidth: 1_000_000, Codecs: "avc1.64001f,mp4a.40.2", Width: 960, Height: 540, FrameRate: 23.976},
	}
}

func TestWriteMasterGolden(t *testing.T) {
	variants := testVariants()
	orig := append([]Variant(nil), variants...)
	var buf bytes.Buffer
	if err := WriteMaster(&buf, Master{Variants: SortByBandwidth(variants), Independent: true, Complete: true}); err != nil {
		t.Fatal(err)
	}
	checkGolden(t, "master.golden.m3u8", buf.Bytes())
	for i := range variants {
		if variants[i] != orig[i] {
			t.Fatal("SortByBandwidth reordered the caller's slice")
		}
	}
	out := buf.String()
	if strings.Contains(out, "PROGRAM-ID") {
		t.Error("PROGRAM-ID written")
	}
	// Descending bandwidth; the two 1105236 variants keep their input order.
	order := []string{"1080p/index.m3u8", "720p/index.m3u8", "360p/index.m3u8", "540p/index.m3u8"}
	last := -1
	for _, uri := range order {
		i := strings.Index(out, "\n"+uri+"\n")
		if i < last {
			t.Fatalf("variant %s out of order in\n%s", uri, out)
		}
		last = i
	}
	want := "#EXT-X-STREAM-INF:BANDWIDTH=6401774,AVERAGE-BANDWIDTH=5120000,CODECS=\"avc1.640028,mp4a.40.2\",RESOLUTION=1920x1080,CLOSED-CAPTIONS=NONE,FRAME-RATE=29.970\n1080p/index.m3u8\n"
	if !strings.Contains(out, want) {
		t.Errorf("missing %q in\n%s", want, out)
	}
}

func TestWriteMasterErrors(t *testing.T) {
	with := func(f func(*Variant)) []Variant {
		vs := testVariants()
		f(&vs[1])
		return vs
	}
	tests := []struct {
		name     string
		variants []Variant
	}{
		{"no variants", nil},
		{"absolute URI", with(func(v *Variant) { v.URI = "https://x/720p.m3u8" })},
		{"dot dot URI", with(func(v *Variant) { v.URI = "../720p.m3u8" })},
		{"empty URI", with(func(v *Variant) { v.URI = "" })},
		{"duplicate URI", with(func(v *Variant) { v.URI = "360p/index.m3u8" })},
		{"zero bandwidth", with(func(v *Variant) { v.Bandwidth = 0 })},
		{"negative bandwidth", with(func(v *Variant) { v.Bandwidth = -1 })},
		{"bandwidth above uint32", with(func(v *Variant) { v.Bandwidth = 1 << 32; v.AverageBandwidth = 1 })},
		{"zero average", with(func(v *Variant) { v.AverageBandwidth = 0 })},
		{"average above peak", with(func(v *Variant) { v.AverageBandwidth = v.Bandwidth + 1 })},
		{"empty codecs", with(func(v *Variant) { v.Codecs = "" })},
		{"codecs with quote", with(func(v *Variant) { v.Codecs = `avc1",x` })},
		{"codecs with space", with(func(v *Variant) { v.Codecs = "avc1.64001f, mp4a.40.2" })},
		{"zero width", with(func(v *Variant) { v.Width = 0 })},
		{"negative height", with(func(v *Variant) { v.Height = -720 })},
		{"zero frame rate", with(func(v *Variant) { v.FrameRate = 0 })},
		{"tiny frame rate", with(func(v *Variant) { v.FrameRate = 0.0001 })},
		{"NaN frame rate", with(func(v *Variant) { v.FrameRate = math.NaN() })},
		{"infinite frame rate", with(func(v *Variant) { v.FrameRate = math.Inf(1) })},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			err := WriteMaster(&buf, Master{Variants: tc.variants, Independent: true, Complete: true})
			if err == nil {
				t.Fatalf("no error; wrote\n%s", buf.String())
			}
			if !strings.HasPrefix(err.Error(), "playlist: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
			if buf.Len() != 0 {
				t.Error("wrote output despite the error")
			}
		})
	}
}
