package transcode

import (
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hlsvault/hlsvault/internal/testenv"
)

func TestPlanChunks(t *testing.T) {
	fps25 := Rational{Num: 25, Den: 1}
	ntsc := Rational{Num: 30000, Den: 1001}
	for _, tc := range []struct {
		name     string
		plan     Plan
		chunk    time.Duration
		starts   []time.Duration
		segments []int // FirstSegment of each
	}{
		{"10 min in 60 s chunks of 4 s segments", Plan{GOP: 100, FrameRate: fps25, Duration: 10 * time.Minute}, time.Minute,
			[]time.Duration{0, time.Minute, 2 * time.Minute, 3 * time.Minute, 4 * time.Minute, 5 * time.Minute, 6 * time.Minute,
				7 * time.Minute, 8 * time.Minute, 9 * time.Minute},
			[]int{0, 15, 30, 45, 60, 75, 90, 105, 120, 135}},
		{"a short remainder joins the last chunk", Plan{GOP: 100, FrameRate: fps25, Duration: 130 * time.Second}, time.Minute,
			[]time.Duration{0, time.Minute}, []int{0, 15}},
		{"a long remainder is its own chunk", Plan{GOP: 100, FrameRate: fps25, Duration: 150 * time.Second}, time.Minute,
			[]time.Duration{0, time.Minute, 2 * time.Minute}, []int{0, 15, 30}},
		{"rounded to whole segments", Plan{GOP: 100, FrameRate: fps25, Duration: 100 * time.Second}, 30 * time.Second,
			[]time.Duration{0, 32 * time.Second, 64 * time.Second}, []int{0, 8, 16}},
		{"NTSC: starts at whole GOPs", Plan{GOP: 120, FrameRate: ntsc, Duration: 25 * time.Second}, 8 * time.Second,
			[]time.Duration{0, 8008 * time.Millisecond, 16016 * time.Millisecond}, []int{0, 2, 4}},
		{"not worth splitting", Plan{GOP: 100, FrameRate: fps25, Duration: 90 * time.Second}, time.Minute, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cs, err := PlanChunks(tc.plan, tc.chunk)
			if err != nil {
				t.Fatal(err)
			}
			var starts []time.Duration
			var segs []int
			for i, c := range cs {
				starts, segs = append(starts, c.Start.Round(time.Millisecond)), append(segs, c.FirstSegment)
				if c.Index != i || c.Last() != (i == len(cs)-1) {
					t.Errorf("chunk %d: %+v", i, c)
				}
				if !c.Last() && c.Frames%tc.plan.GOP != 0 {
					t.Errorf("chunk %d: %d frames, not whole GOPs", i, c.Frames)
				}
			}
			if !slices.Equal(starts, tc.starts) || !slices.Equal(segs, tc.segments) {
				t.Errorf("starts %v first segments %v, want %v %v", starts, segs, tc.starts, tc.segments)
			}
		})
	}
	if _, err := PlanChunks(Plan{GOP: 100, FrameRate: fps25, Duration: time.Hour}, 0); err == nil {
		t.Error("a zero chunk length was accepted")
	}
}

// firstPTS is the lowest PTS of the first packets of a segment (90 kHz),
// and lastPTS the highest.
func ptsRange(t *testing.T, path string) (first, last int64) {
	t.Helper()
	out := ffprobeOut(t, "-select_streams", "0", "-show_entries", "packet=pts", "-of", "csv=p=0", path)
	first, last = -1, -1
	for _, l := range strings.Fields(out) {
		v, err := strconv.ParseInt(strings.TrimSuffix(l, ","), 10, 64)
		if err != nil {
			t.Fatalf("%s: pts %q", path, l)
		}
		if first < 0 || v < first {
			first = v
		}
		last = max(last, v)
	}
	return first, last
}

// TestChunkedEncodeIsOneTimeline encodes a source in four chunks (with
// x264's B-frames: the default preset) and its audio once, and holds the
// seams to one timeline: segment names and counts continue, every
// segment starts with a keyframe, the PTS runs on across every seam by
// exactly one frame, and audio starts with the video.
func TestChunkedEncodeIsOneTimeline(t *testing.T) {
	src := testenv.MakeSource(t, t.TempDir(), testenv.Source{Width: 320, Height: 240, Seconds: 7, FPS: 25, Audio: true})
	probe, plan, _, _ := prepare(t, src, "240p:300k,144p:150k", time.Second)
	chunks, err := PlanChunks(plan, 2*time.Second)
	if err != nil || len(chunks) != 4 {
		t.Fatalf("chunks %+v %v", chunks, err)
	}
	out := filepath.Join(t.TempDir(), "hls")
	r := Runner{Exec: testExec(t), Input: src, Logger: testenv.Logger(t), Timeout: 30 * time.Second, MaxOutputBytes: 50 << 20, OutDir: out}
	for _, c := range chunks {
		args, err := ChunkArgs(plan, c, src, out, ArgsOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Run(testContext(t), args, nil); err != nil {
			t.Fatalf("chunk %d: %v", c.Index, err)
		}
		// Each run rewrites the playlists: check this chunk's now.
		for _, rr := range plan.Renditions {
			extinf, uris := mediaPlaylist(t, filepath.Join(out, rr.Name, "index.m3u8"))
			want := 2
			if c.Last() {
				want = 1
			}
			if len(uris) != want {
				t.Fatalf("chunk %d %s: segments %v", c.Index, rr.Name, uris)
			}
			for k, u := range uris {
				if wantName := "seg_" + pad5(c.FirstSegment+k) + ".ts"; u != wantName {
					t.Errorf("chunk %d %s: segment %d is %s, want %s", c.Index, rr.Name, k, u, wantName)
				}
				if extinf[k] != "1.000000," {
					t.Errorf("chunk %d %s: %s lasts %s", c.Index, rr.Name, u, extinf[k])
				}
			}
		}
	}
	const frame = 90000 / 25
	base := int64(ChunkTimelineOffset/time.Millisecond*90) + 126000 // the offset and the mpegts muxer's 1.4 s
	for _, rr := range plan.Renditions {
		var prevLast int64 = -1
		for n := range 7 {
			seg := filepath.Join(out, rr.Name, "seg_"+pad5(n)+".ts")
			if !probeSegment(t, seg).firstVideoKey {
				t.Errorf("%s segment %d does not start with a keyframe", rr.Name, n)
			}
			first, last := ptsRange(t, seg)
			if want := base + int64(n)*25*frame; first != want {
				t.Errorf("%s segment %d starts at PTS %d, want %d", rr.Name, n, first, want)
			}
			if prevLast >= 0 && first != prevLast+frame {
				t.Errorf("%s: a gap or overlap before segment %d: %d then %d", rr.Name, n, prevLast, first)
			}
			prevLast = last
		}
	}

	audio := ChunkedAudio(plan, probe)
	if len(audio) != 1 || audio[0].Name != "audio1" || audio[0].Channels != 1 {
		t.Fatalf("audio group %+v", audio)
	}
	args, err := AudioArgs(plan, audio, src, out, ArgsOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Run(testContext(t), args, nil); err != nil {
		t.Fatal(err)
	}
	_, uris := mediaPlaylist(t, filepath.Join(out, "audio1", "index.m3u8"))
	if len(uris) < 7 {
		t.Fatalf("audio segments %v", uris)
	}
	// Shifted by the AAC priming, as an unchunked run's audio: it starts
	// with the video.
	if first, _ := ptsRange(t, filepath.Join(out, "audio1", uris[0])); first != base {
		t.Errorf("audio starts at PTS %d, video at %d", first, base)
	}
}

func pad5(n int) string { return strings.Repeat("0", 5-len(strconv.Itoa(n))) + strconv.Itoa(n) }

func TestChunkArgs(t *testing.T) {
	plan := Plan{Format: formatMOV, GOP: 100, FrameRate: Rational{Num: 25, Den: 1}, SegmentDuration: 4 * time.Second,
		HasAudio: true, Renditions: []Rendition{{Name: "720p", Width: 1280, Height: 720, VideoBitrate: 2800000, MaxRate: 3000000, BufSize: 5600000, AudioBitrate: 128000},
			{Name: "360p", Width: 640, Height: 360, VideoBitrate: 800000, MaxRate: 900000, BufSize: 1600000, AudioBitrate: 96000}}}
	args, err := ChunkArgs(plan, Chunk{Index: 2, Start: 2 * time.Minute, Frames: 1500, FirstSegment: 30}, "/in/source", "/out", ArgsOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Join(args, " ")
	for _, want := range []string{"-ss 120.000000 -i file:/in/source", "-output_ts_offset 130.000000 -start_number 30 -frames:v:0 1500 -frames:v:1 1500 /out/%v/index.m3u8",
		"var_stream_map v:0,name:720p v:1,name:360p"} {
		if !strings.Contains(s, want) {
			t.Errorf("argv lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "c:a") || strings.Contains(s, "a:0") {
		t.Errorf("a chunk encodes audio:\n%s", s)
	}
	last, err := ChunkArgs(plan, Chunk{Index: 3, Start: 3 * time.Minute, FirstSegment: 45}, "/in/source", "/out", ArgsOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if s := strings.Join(last, " "); strings.Contains(s, "-frames:v") {
		t.Errorf("the last chunk is cut:\n%s", s)
	}
	if _, err := AudioArgs(plan, nil, "/in/source", "/out", ArgsOptions{}); err == nil {
		t.Error("audio args without audio renditions")
	}
	// The title's audio is padded to its duration, as alternate audio is
	// in one run: a shorter track must not end before the video.
	plan.Duration = 10 * time.Minute
	audio, err := AudioArgs(plan, []AudioRendition{{Name: "audio1", Index: 1, Channels: 2, Bitrate: 128000}}, "/in/source", "/out", ArgsOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if s := strings.Join(audio, " "); !strings.Contains(s, "apad=whole_dur=600.000") {
		t.Errorf("the title's audio is not padded to 600 s:\n%s", s)
	}
}
