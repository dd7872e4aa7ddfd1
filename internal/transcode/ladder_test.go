package transcode

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

// synthetic builds the Probe that ParseProbe would return for a source of
// coded size w x h turned by rot degrees.
func synthetic(w, h, rot int, fps Rational, audio bool) *Probe {
	p := &Probe{
		Format: "mov", Duration: 10 * time.Second, Size: 1 << 20,
		Video: VideoStream{Index: 0, Codec: "h264", Width: w, Height: h, Rotation: rot,
			DisplayWidth: w, DisplayHeight: h, FrameRate: fps, PixFmt: "yuv420p", BitDepth: 8},
	}
	if rot == 90 || rot == 270 {
		p.Video.DisplayWidth, p.Video.DisplayHeight = h, w
	}
	if audio {
		p.Audio = &AudioStream{Index: 1, Codec: "aac", Channels: 2, SampleRate: 48000}
	}
	return p
}

// shaped changes the video stream of p.
func shaped(p *Probe, f func(*VideoStream)) *Probe {
	f(&p.Video)
	return p
}

func TestPlanLadderGolden(t *testing.T) {
	fps30 := Rational{30, 1}
	cases := []struct {
		Name  string
		probe *Probe
	}{
		{"3840x2160", synthetic(3840, 2160, 0, Rational{60000, 1001}, true)},
		{"1920x1080", synthetic(1920, 1080, 0, Rational{30000, 1001}, true)},
		{"1280x720", synthetic(1280, 720, 0, Rational{50, 1}, true)},
		{"1080x1920 portrait", synthetic(1080, 1920, 0, fps30, true)},
		{"1920x1080 rotated 90", synthetic(1920, 1080, 90, fps30, true)},
		{"640x360", synthetic(640, 360, 0, Rational{25, 1}, true)},
		{"426x240 tiny", synthetic(426, 240, 0, Rational{24000, 1001}, true)},
		{"853x479 odd", synthetic(853, 479, 0, fps30, true)},
		{"1440x1080 4:3", synthetic(1440, 1080, 0, Rational{25, 1}, true)},
		{"1920x1080 no audio", synthetic(1920, 1080, 0, fps30, false)},
		{"2560x1072 scope", synthetic(2560, 1072, 0, Rational{24, 1}, true)},
		{"1920x1080 120fps", synthetic(1920, 1080, 0, Rational{120, 1}, true)},
		{"1280x720 unknown fps", synthetic(1280, 720, 0, Rational{}, true)},
		{"1920x1080i25 tff", shaped(synthetic(1920, 1080, 0, Rational{25, 1}, true), func(v *VideoStream) { v.FieldOrder, v.Scan = "tt", TopFieldFirst })},
		{"1920x1080i29.97 bff", shaped(synthetic(1920, 1080, 0, Rational{30000, 1001}, true), func(v *VideoStream) { v.Scan = BottomFieldFirst })},
		{"1920x1080 HLG", shaped(synthetic(1920, 1080, 0, Rational{30, 1}, true), func(v *VideoStream) {
			v.Color = Color{Primaries: "bt2020", Transfer: "arib-std-b67", Space: "bt2020nc", Range: "tv"}
		})},
		{"3840x2160 PQ untagged matrix", shaped(synthetic(3840, 2160, 0, Rational{24000, 1001}, true), func(v *VideoStream) { v.Color = Color{Transfer: "smpte2084"} })},
		{"720x576 SAR 64:45 BT.601", shaped(synthetic(720, 576, 0, Rational{25, 1}, true), func(v *VideoStream) {
			v.DisplayWidth, v.SAR = 1024, Rational{64, 45}
			v.Color = Color{Primaries: "bt470bg", Transfer: "bt709", Space: "bt470bg", Range: "tv"}
		})},
		{"1280x720 tagged BT.601", shaped(synthetic(1280, 720, 0, Rational{30, 1}, true), func(v *VideoStream) { v.Color.Space = "smpte170m" })},
		{"640x480 tagged BT.709", shaped(synthetic(640, 480, 0, Rational{30, 1}, true), func(v *VideoStream) { v.Color.Space = "bt709" })},
	}
	type entry struct {
		Name string
		Plan Plan
	}
	var out []entry
	for _, c := range cases {
		plan, err := PlanLadder(c.probe, DefaultLadder(), 4*time.Second)
		if err != nil {
			t.Fatalf("%s: %v", c.Name, err)
		}
		checkPlan(t, c.Name, c.probe, plan)
		out = append(out, entry{c.Name, plan})
	}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "ladder.golden.json", append(b, '\n'))
}

// checkPlan asserts the invariants the golden file could hide in its bulk.
func checkPlan(t *testing.T, name string, p *Probe, plan Plan) {
	t.Helper()
	short := min(p.Video.DisplayWidth, p.Video.DisplayHeight)
	portrait := p.Video.DisplayHeight > p.Video.DisplayWidth
	for i, r := range plan.Renditions {
		rs := min(r.Width, r.Height)
		switch {
		case r.Width%2 != 0 || r.Height%2 != 0:
			t.Errorf("%s: %s: odd size %dx%d", name, r.Name, r.Width, r.Height)
		case rs > short:
			t.Errorf("%s: %s: upscales %d to %d", name, r.Name, short, rs)
		case (r.Height > r.Width) != portrait:
			t.Errorf("%s: %s: orientation lost: %dx%d", name, r.Name, r.Width, r.Height)
		case i > 0 && rs >= min(plan.Renditions[i-1].Width, plan.Renditions[i-1].Height):
			t.Errorf("%s: renditions not highest first", name)
		case r.MaxRate != r.VideoBitrate*107/100 || r.BufSize != r.VideoBitrate*3/2:
			t.Errorf("%s: %s: maxrate/bufsize not derived from %d", name, r.Name, r.VideoBitrate)
		}
		srcAspect := float64(p.Video.DisplayWidth) / float64(p.Video.DisplayHeight)
		if got := float64(r.Width) / float64(r.Height); got/srcAspect > 1.02 || got/srcAspect < 0.98 {
			t.Errorf("%s: %s: aspect %.3f, source %.3f", name, r.Name, got, srcAspect)
		}
	}
	if f := plan.FrameRate.Float64(); f <= 0 || f > 60 {
		t.Errorf("%s: output rate %s", name, plan.FrameRate)
	}
	if plan.HasAudio != (p.Audio != nil) {
		t.Errorf("%s: HasAudio %v", name, plan.HasAudio)
	}
	if (plan.Deinterlace != "") != p.Video.Scan.Interlaced() {
		t.Errorf("%s: deinterlace %q for scan %q", name, plan.Deinterlace, p.Video.Scan)
	}
	if plan.Deinterlace != "" && plan.FrameRate != outputRate(fieldRate(p.Video.FrameRate)) {
		t.Errorf("%s: interlaced output rate %s, want the field rate of %s", name, plan.FrameRate, p.Video.FrameRate)
	}
	if (plan.ToneMap != nil) != p.Video.Color.HDR() || plan.ToneMap != nil && plan.InMatrix != "" {
		t.Errorf("%s: tone map %+v, in matrix %q for colour %+v", name, plan.ToneMap, plan.InMatrix, p.Video.Color)
	}
}

func TestFieldRate(t *testing.T) {
	for _, tc := range []struct{ in, want Rational }{
		{Rational{25, 1}, Rational{50, 1}},
		{Rational{30000, 1001}, Rational{60000, 1001}},
		{Rational{25, 2}, Rational{25, 1}},
		{Rational{}, Rational{}},
	} {
		if got := fieldRate(tc.in); got != tc.want {
			t.Errorf("fieldRate(%s) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

func TestPlanLadderDetails(t *testing.T) {
	t.Run("4:3 gets less, scope gets no more", func(t *testing.T) {
		plan, err := PlanLadder(synthetic(1440, 1080, 0, Rational{25, 1}, true), nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		if r := plan.Renditions[0]; r.Width != 1440 || r.VideoBitrate != 3_750_000 {
			t.Fatalf("4:3 1080p: %+v", r)
		}
		plan, _ = PlanLadder(synthetic(2560, 1072, 0, Rational{24, 1}, true), nil, 0)
		if r := plan.Renditions[0]; r.Height != 720 || r.VideoBitrate != 2_800_000 {
			t.Fatalf("scope: top %+v, want a 720p rung at full rate", r)
		}
	})
	t.Run("all rungs dropped", func(t *testing.T) {
		plan, err := PlanLadder(synthetic(333, 187, 0, Rational{25, 1}, true), nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		want := []Rendition{{Name: "186p", Width: 332, Height: 186, VideoBitrate: 214_000, MaxRate: 228_980, BufSize: 321_000, AudioBitrate: 96_000}}
		if !reflect.DeepEqual(plan.Renditions, want) {
			t.Fatalf("renditions %+v, want %+v", plan.Renditions, want)
		}
	})
	t.Run("GOP and defaults", func(t *testing.T) {
		plan, err := PlanLadder(synthetic(1280, 720, 0, Rational{30000, 1001}, false), nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		if plan.SegmentDuration != 4*time.Second || plan.GOP != 120 || plan.HasAudio {
			t.Fatalf("plan %+v", plan)
		}
	})
	t.Run("errors", func(t *testing.T) {
		if _, err := PlanLadder(nil, nil, 0); err == nil {
			t.Error("nil probe accepted")
		}
		if _, err := PlanLadder(synthetic(640, 360, 0, Rational{25, 1}, true), nil, 500*time.Millisecond); err == nil {
			t.Error("0.5s segments accepted")
		}
		if _, err := PlanLadder(synthetic(640, 360, 0, Rational{25, 1}, true), Ladder{{Name: "x", Height: 7}}, 0); err == nil {
			t.Error("bad ladder accepted")
		}
	})
}

func TestOutputRate(t *testing.T) {
	for _, tc := range []struct{ in, want Rational }{
		{Rational{30000, 1001}, Rational{30000, 1001}},
		{Rational{60000, 1001}, Rational{60000, 1001}},
		{Rational{60, 1}, Rational{60, 1}},
		{Rational{50, 2}, Rational{25, 1}},
		{Rational{120, 1}, Rational{60, 1}},
		{Rational{120000, 1001}, Rational{60000, 1001}},
		{Rational{144, 1}, Rational{36, 1}},
		{Rational{239760, 1000}, Rational{2997, 50}}, // 239.76 -> 119.88 -> 59.94
		{Rational{61, 1}, Rational{61, 2}},
		{Rational{}, Rational{30, 1}},
		{Rational{0, 1}, Rational{30, 1}},
		{Rational{25, 0}, Rational{30, 1}},
		{Rational{-25, 1}, Rational{30, 1}},
		{Rational{1, 2}, Rational{30, 1}},
		{Rational{90000, 1}, Rational{30, 1}},
	} {
		if got := outputRate(tc.in); got != tc.want {
			t.Errorf("outputRate(%s) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

func TestParseLadder(t *testing.T) {
	got, err := ParseLadder(" 360p:800k:96k, 1080p:5000k:128k,720p:2.8M ,480p:1400000:128k")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, DefaultLadder()) {
		t.Fatalf("ParseLadder = %+v\nwant %+v", got, DefaultLadder())
	}
	for _, bad := range []struct{ in, want string }{
		{"", "no rungs"},
		{"720p", "want <height>p:<video bitrate>"},
		{"720p:1M:1k:1k", "want <height>p:<video bitrate>"},
		{"hd:1M", "name must be the height followed by p"},
		{"0720p:1M", "name must be the height followed by p"},
		{"p:1M", "name must be the height followed by p"},
		{"721p:1M", "must be even"},
		{"32p:1M", "must be even, 64 to 4320"},
		{"720p:fast", "is not a bitrate"},
		{"720p:-1k", "is not a bitrate"},
		{"720p:NaNk", "is not a bitrate"},
		{"720p:1k", "out of range"},
		{"720p:1M:1M", "audio bitrate 1000000 out of range"},
		{"720p:1M,720p:2M", "appears twice"},
		{"144p:1M,180p:1M,240p:1M,360p:1M,480p:1M,540p:1M,720p:1M,1080p:1M,1440p:1M", "at most 8"},
	} {
		_, err := ParseLadder(bad.in)
		if err == nil || !strings.Contains(err.Error(), bad.want) || !strings.HasPrefix(err.Error(), "transcode: ladder: ") {
			t.Errorf("ParseLadder(%q) error %v, want %q", bad.in, err, bad.want)
		}
	}
}

func TestRational(t *testing.T) {
	r := Rational{30000, 1001}
	if r.String() != "30000/1001" || r.Float64() < 29.97 || r.Float64() > 29.98 {
		t.Fatalf("%s = %v", r, r.Float64())
	}
	if (Rational{1, 0}).Float64() != 0 {
		t.Fatal("x/0 is not 0")
	}
}
