package transcode

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func goldenPlan(t *testing.T, audio bool) Plan {
	t.Helper()
	p := synthetic(1920, 1080, 0, Rational{30000, 1001}, audio)
	plan, err := PlanLadder(p, DefaultLadder(), 4*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return plan
}

// shapedPlan plans the default ladder for a 1080p source changed by shape.
func shapedPlan(t *testing.T, shape func(*Probe)) Plan {
	t.Helper()
	p := synthetic(1920, 1080, 0, Rational{30000, 1001}, true)
	shape(p)
	plan, err := PlanLadder(p, DefaultLadder(), 4*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return plan
}

func TestArgsGolden(t *testing.T) {
	for _, tc := range []struct {
		file  string
		audio bool
		shape func(*Probe) // nil: the progressive SDR 1080p source
	}{
		{file: "args_audio.golden.txt", audio: true},
		{file: "args_noaudio.golden.txt", audio: false},
		// 1080i25, top field first: bwdif to 50 fps before the split.
		{file: "args_interlaced_tff.golden.txt", audio: true, shape: func(p *Probe) {
			p.Video.FrameRate, p.Video.FieldOrder, p.Video.Scan = Rational{25, 1}, "tt", TopFieldFirst
		}},
		// A phone's HLG: tone-mapped to BT.709 before the split.
		{file: "args_hdr_hlg.golden.txt", audio: true, shape: func(p *Probe) {
			p.Video.Codec, p.Video.PixFmt, p.Video.BitDepth = "hevc", "yuv420p10le", 10
			p.Video.Color = Color{Primaries: "bt2020", Transfer: "arib-std-b67", Space: "bt2020nc", Range: "tv"}
		}},
		// Two audio languages (and a 5.1 third track, downmixed): an
		// audio-only AAC variant stream per track after the video ones.
		{file: "args_two_audio.golden.txt", audio: true, shape: func(p *Probe) {
			p.Audios = []AudioStream{
				{Index: 1, Codec: "aac", Channels: 2, SampleRate: 48000, Language: "eng"},
				{Index: 2, Codec: "ac3", Channels: 6, SampleRate: 48000, Language: "fre", Default: true},
				{Index: 3, Codec: "aac", Channels: 1, SampleRate: 44100},
			}
		}},
		// A PAL DVD: anamorphic 720x576 BT.601, square BT.709 rungs.
		{file: "args_sd_bt601.golden.txt", audio: true, shape: func(p *Probe) {
			p.Video.Width, p.Video.Height, p.Video.DisplayWidth, p.Video.DisplayHeight = 720, 576, 1024, 576
			p.Video.SAR, p.Video.FrameRate = Rational{64, 45}, Rational{25, 1}
			p.Video.Color = Color{Primaries: "bt470bg", Transfer: "bt709", Space: "bt470bg", Range: "tv"}
		}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			plan := goldenPlan(t, tc.audio)
			if tc.shape != nil {
				plan = shapedPlan(t, tc.shape)
			}
			args, err := Args(plan, "/in/source.mp4", "/out/job", ArgsOptions{})
			if err != nil {
				t.Fatal(err)
			}
			// ffmpeg-go sorts map keys; make sure nothing else is random.
			for range 5 {
				again, _ := Args(plan, "/in/source.mp4", "/out/job", ArgsOptions{})
				if !slices.Equal(args, again) {
					t.Fatalf("Args is not deterministic:\n%q\n%q", args, again)
				}
			}
			golden(t, tc.file, []byte(strings.Join(args, "\n")+"\n"))

			joined := strings.Join(args, " ")
			for _, forbidden := range []string{"hls_enc", "hls_key_info_file", "-fs ", `"`, "'", "http", "concat"} {
				if strings.Contains(joined, forbidden) {
					t.Errorf("argv contains %q", forbidden)
				}
			}
			if got := strings.Contains(joined, "a:0"); got != tc.audio {
				t.Errorf("audio in var_stream_map = %v, want %v", got, tc.audio)
			}
			// Every output is tagged BT.709 and square, whatever the source.
			for _, want := range []string{"-color_primaries:v bt709", "-color_trc:v bt709", "-colorspace:v bt709", "-color_range:v tv"} {
				if !strings.Contains(joined, want) {
					t.Errorf("argv lacks %q", want)
				}
			}
			graph := args[slices.Index(args, "-filter_complex")+1]
			if n := strings.Count(graph, "setsar=1"); n != len(plan.Renditions) {
				t.Errorf("setsar=1 on %d of %d rungs", n, len(plan.Renditions))
			}
			// Whatever runs once runs before the split.
			before, _, _ := strings.Cut(graph, "split=")
			if got := strings.Contains(before, "bwdif=deint=all:mode=send_field:parity=tff"); got != (plan.Deinterlace == TopFieldFirst) {
				t.Errorf("bwdif before the split: %v, deinterlace %q:\n%s", got, plan.Deinterlace, graph)
			}
			if got := strings.Contains(before, "tonemap=desat=0:tonemap=hable"); got != (plan.ToneMap != nil) {
				t.Errorf("tonemap before the split: %v, tone map %+v", got, plan.ToneMap)
			}
			if got := strings.Count(graph, "in_color_matrix=bt601:out_color_matrix=bt709"); got != len(plan.Renditions) && plan.InMatrix != "" || got != 0 && plan.InMatrix == "" {
				t.Errorf("matrix conversion on %d rungs, in matrix %q", got, plan.InMatrix)
			}
		})
	}
}

func TestArgsOptions(t *testing.T) {
	plan := goldenPlan(t, true)
	args, err := Args(plan, "/in/a.mkv", "/out/j/", ArgsOptions{Preset: "ultrafast", Threads: 2, MaxPixels: 1 << 40})
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(args, " ")
	for _, want := range []string{"-preset ultrafast", "-threads 2", "-max_pixels 2147483647", "/out/j/%v/index.m3u8"} {
		if !strings.Contains(joined, want) {
			t.Errorf("argv lacks %q:\n%s", want, joined)
		}
	}

	bad := []struct {
		name        string
		plan        func(*Plan)
		in, out     string
		opt         ArgsOptions
		wantMessage string
	}{
		{name: "relative input", in: "in.mp4", out: "/out", wantMessage: "not absolute"},
		{name: "relative output", in: "/in.mp4", out: "out", wantMessage: "not absolute"},
		{name: "percent in output", in: "/in.mp4", out: "/out/%d", wantMessage: "contains %"},
		{name: "preset", in: "/in.mp4", out: "/out", opt: ArgsOptions{Preset: "ludicrous"}, wantMessage: "unknown x264 preset"},
		{name: "threads", in: "/in.mp4", out: "/out", opt: ArgsOptions{Threads: -1}, wantMessage: "threads"},
		{name: "format", in: "/in.mp4", out: "/out", plan: func(p *Plan) { p.Format = "hls" }, wantMessage: "not allowed"},
		{name: "rate", in: "/in.mp4", out: "/out", plan: func(p *Plan) { p.FrameRate = Rational{} }, wantMessage: "frame rate"},
		{name: "no renditions", in: "/in.mp4", out: "/out", plan: func(p *Plan) { p.Renditions = nil }, wantMessage: "0 renditions"},
		{name: "name", in: "/in.mp4", out: "/out", plan: func(p *Plan) { p.Renditions[0].Name = "a b,c" }, wantMessage: "want [a-z0-9]+"},
		{name: "odd", in: "/in.mp4", out: "/out", plan: func(p *Plan) { p.Renditions[0].Width = 1919 }, wantMessage: "not valid"},
		{name: "parity", in: "/in.mp4", out: "/out", plan: func(p *Plan) { p.Deinterlace = "auto:deint=0" }, wantMessage: "not a field order"},
		{name: "progressive is no parity", in: "/in.mp4", out: "/out", plan: func(p *Plan) { p.Deinterlace = Progressive }, wantMessage: "not a field order"},
		{name: "tone map", in: "/in.mp4", out: "/out", plan: func(p *Plan) {
			p.ToneMap = &ToneMap{Transfer: "smpte2084", Primaries: "bt2020", Matrix: "bt2020nc", Range: "tv[x]"}
		}, wantMessage: "tone mapping"},
		{name: "sdr tone map", in: "/in.mp4", out: "/out", plan: func(p *Plan) {
			p.ToneMap = &ToneMap{Transfer: "bt709", Primaries: "bt709", Matrix: "bt709", Range: "tv"}
		}, wantMessage: "tone mapping"},
		{name: "matrix", in: "/in.mp4", out: "/out", plan: func(p *Plan) { p.InMatrix = "bt601,movie" }, wantMessage: "colour matrix"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			p := goldenPlan(t, true)
			if tc.plan != nil {
				tc.plan(&p)
			}
			_, err := Args(p, tc.in, tc.out, tc.opt)
			if err == nil || !strings.Contains(err.Error(), tc.wantMessage) || !strings.HasPrefix(err.Error(), "transcode: args: ") {
				t.Fatalf("error %v, want %q", err, tc.wantMessage)
			}
		})
	}
}

func TestHLSTime(t *testing.T) {
	for _, tc := range []struct {
		rate Rational
		seg  time.Duration
		want string
	}{
		{Rational{25, 1}, 4 * time.Second, "4"},
		{Rational{30000, 1001}, 4 * time.Second, "4"}, // GOP 120 = 4.004s: longer, fine
		{Rational{24000, 1001}, 2 * time.Second, "2"}, // GOP 48 = 2.002s
		{Rational{62, 5}, time.Second, "0.967"},       // 12.4 fps: GOP 12 = 0.9677s
		{Rational{74, 5}, 3 * time.Second, "2.972"},   // 14.8 fps: GOP 44 = 2.97297s
	} {
		p := Plan{FrameRate: tc.rate, SegmentDuration: tc.seg}
		p.GOP = int(tc.rate.Float64()*tc.seg.Seconds() + 0.5)
		if got := hlsTime(p); got != tc.want {
			t.Errorf("hlsTime(%s, %s, GOP %d) = %s, want %s", tc.rate, tc.seg, p.GOP, got, tc.want)
		}
	}
}
