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

func TestArgsGolden(t *testing.T) {
	for _, tc := range []struct {
		file  string
		audio bool
	}{
		{"args_audio.golden.txt", true},
		{"args_noaudio.golden.txt", false},
	} {
		t.Run(tc.file, func(t *testing.T) {
			plan := goldenPlan(t, tc.audio)
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
