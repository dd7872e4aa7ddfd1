package transcode

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/Eyevinn/mp4ff/hevc"
	"github.com/hlsvault/hlsvault/internal/testenv"
)

func TestParseSegmentFormat(t *testing.T) {
	for in, want := range map[string]SegmentFormat{"ts": SegmentsTS, "fmp4": SegmentsFMP4} {
		if got, err := ParseSegmentFormat(in); err != nil || got != want {
			t.Errorf("ParseSegmentFormat(%q) = %q, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "TS", "fMP4", "mp4", "cmaf", " ts"} {
		if _, err := ParseSegmentFormat(bad); err == nil {
			t.Errorf("ParseSegmentFormat(%q) accepted", bad)
		}
	}
}

func TestParseLadderHEVC(t *testing.T) {
	l, err := ParseLadder("720p:2800k:128k,360p:800k,720p:1600k:128k:hevc,360p:500k:hevc,480p:1M:96k:h264")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range l {
		got = append(got, r.Name+"/"+string(r.Codec))
	}
	want := []string{"720p/", "720phevc/hevc", "480p/", "360p/", "360phevc/hevc"}
	if !slices.Equal(got, want) {
		t.Fatalf("rungs %v, want %v", got, want)
	}
	if l[1].VideoBitrate != 1_600_000 || l[1].AudioBitrate != 128_000 || l[4].AudioBitrate != defaultAudio {
		t.Errorf("bitrates %+v", l)
	}
	if !l.HasHEVC() || l.CheckSegments(SegmentsFMP4) != nil {
		t.Errorf("HEVC ladder not accepted with fmp4")
	}
	for _, f := range []SegmentFormat{"", SegmentsTS} {
		if err := l.CheckSegments(f); err == nil || !strings.Contains(err.Error(), "need fmp4") {
			t.Errorf("CheckSegments(%q) = %v, want a refusal", f, err)
		}
	}
	for bad, msg := range map[string]string{
		"720p:1M:hevc":                      "H.264 rung",
		"720p:1M,720p:2M":                   "appears twice",
		"720p:1M,1p:1M":                     "must be even",
		"720p:1M:128k:av1":                  "audio bitrate",
		"720p:1M:hevc:128k":                 "want <height>p",
		"720p:1M,720p:1M:hevc,720p:2M:hevc": "appears twice",
	} {
		if _, err := ParseLadder(bad); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("ParseLadder(%q) = %v, want %q", bad, err, msg)
		}
	}
}

func TestPlanLadderHEVC(t *testing.T) {
	l, err := ParseLadder("1080p:5M,720p:2800k,720p:1600k:hevc,360p:800k:hevc")
	if err != nil {
		t.Fatal(err)
	}
	// A 480p source: 1080p and 720p of both codecs are dropped, so the
	// H.264 fallback at the source's size leads, the HEVC 360p stays.
	p := synthetic(854, 480, 0, Rational{25, 1}, true)
	plan, err := PlanLadder(p, l, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range plan.Renditions {
		got = append(got, r.Name+"/"+string(r.Codec))
	}
	if want := []string{"480p/", "360phevc/hevc"}; !slices.Equal(got, want) {
		t.Fatalf("renditions %v, want %v", got, want)
	}
	if _, err := Args(plan, "/in.mp4", "/out", ArgsOptions{}); err == nil || !strings.Contains(err.Error(), "HEVC needs fmp4") {
		t.Fatalf("Args with HEVC in TS: %v", err)
	}
}

func TestArgsFMP4Golden(t *testing.T) {
	l, err := ParseLadder("1080p:5000k:128k,720p:2800k:128k,720p:1600k:128k:hevc")
	if err != nil {
		t.Fatal(err)
	}
	plan, err := PlanLadder(synthetic(1920, 1080, 0, Rational{30000, 1001}, true), l, 4*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	plan.Segments = SegmentsFMP4
	args, err := Args(plan, "/in/source.mp4", "/out/job", ArgsOptions{})
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "args_fmp4_hevc.golden.txt", []byte(strings.Join(args, "\n")+"\n"))
	joined := strings.Join(args, " ")
	for _, want := range []string{"-hls_segment_type fmp4", "-hls_fmp4_init_filename init_%v.mp4", "/out/job/%v/seg_%05d.m4s",
		"-c:v libx264", "-c:v:2 libx265", "-tag:v:2 hvc1", "-profile:v:2 main", "keyint=120:min-keyint=120:scenecut=0:open-gop=0"} {
		if !strings.Contains(joined, want) {
			t.Errorf("argv lacks %q", want)
		}
	}
	// Only the HEVC stream gets x265: per-stream options name index 2.
	if strings.Contains(joined, "-c:v:0") || strings.Contains(joined, "-c:v:1") {
		t.Errorf("H.264 streams given a codec of their own: %s", joined)
	}
	// The TS argv of the same ladder without HEVC is what it always was.
	plan.Segments = ""
	plan.Renditions = plan.Renditions[:2]
	ts, err := Args(plan, "/in/source.mp4", "/out/job", ArgsOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if j := strings.Join(ts, " "); strings.Contains(j, "fmp4") || !strings.Contains(j, "seg_%05d.ts") {
		t.Errorf("TS argv changed: %s", j)
	}
}

// TestTranscodeFMP4HEVC runs ffmpeg on an H.264 + HEVC fMP4 ladder and
// reads back what it wrote: the init sections' CODECS, the first PTS, and
// ffprobe's view of the HEVC rung (hvc1, Main, keyframes at the segment
// starts).
func TestTranscodeFMP4HEVC(t *testing.T) {
	src := testenv.MakeSource(t, t.TempDir(), testenv.Source{Width: 320, Height: 180, Seconds: 2, FPS: 25, Audio: true})
	probe, err := ProbeFile(testContext(t), testExec(t), src, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	l, err := ParseLadder("180p:300k:64k,180p:200k:64k:hevc")
	if err != nil {
		t.Fatal(err)
	}
	plan, err := PlanLadder(probe, l, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	plan.Segments = SegmentsFMP4
	out := filepath.Join(t.TempDir(), "hls")
	args, err := Args(plan, src, out, ArgsOptions{Preset: "ultrafast"})
	if err != nil {
		t.Fatal(err)
	}
	r := Runner{Exec: testExec(t), Input: src, Logger: testenv.Logger(t), Timeout: 60 * time.Second, OutDir: out}
	if err := r.Run(testContext(t), args, nil); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, codecs string }{
		// ultrafast leaves x264 no High feature: Constrained Baseline.
		{"180p", "avc1.42c00c,mp4a.40.2"},
		// Main, level 2, progressive and frame-only constraint flags.
		{"180phevc", "hvc1.1.6.L60.90,mp4a.40.2"},
	} {
		dir := filepath.Join(out, tc.name)
		extinf, uris := mediaPlaylist(t, filepath.Join(dir, "index.m3u8"))
		if len(extinf) != 2 || uris[0] != "seg_00000.m4s" {
			t.Fatalf("%s: segments %v %v", tc.name, extinf, uris)
		}
		init := filepath.Join(dir, "init_"+tc.name+".mp4")
		got, err := InitCodecs(init)
		if err != nil || got != tc.codecs {
			t.Errorf("%s: InitCodecs = %q, %v; want %q", tc.name, got, err, tc.codecs)
		}
		pts, err := FirstPTSFMP4(init, filepath.Join(dir, uris[0]))
		if err != nil || pts != 0 {
			t.Errorf("%s: FirstPTSFMP4 = %d, %v; want 0 (ffmpeg's fMP4 timeline starts at 0)", tc.name, pts, err)
		}
		// Each fragment decodes after its init section on its own, from a keyframe.
		for _, u := range uris {
			joined := filepath.Join(t.TempDir(), "joined.mp4")
			a, _ := os.ReadFile(init)
			b, _ := os.ReadFile(filepath.Join(dir, u))
			if err := os.WriteFile(joined, append(a, b...), 0o600); err != nil {
				t.Fatal(err)
			}
			var pr struct {
				Packets []struct {
					Type  string `json:"codec_type"`
					Flags string `json:"flags"`
				} `json:"packets"`
			}
			if err := json.Unmarshal([]byte(ffprobeOut(t, "-show_entries", "packet=codec_type,flags", "-of", "json", joined)), &pr); err != nil {
				t.Fatal(err)
			}
			for _, p := range pr.Packets {
				if p.Type == "video" {
					if !strings.HasPrefix(p.Flags, "K") {
						t.Errorf("%s %s starts with a non-key frame (%s)", tc.name, u, p.Flags)
					}
					break
				}
			}
		}
		info := ffprobeOut(t, "-select_streams", "v:0", "-show_entries", "stream=codec_name,codec_tag_string", "-of", "csv=p=0", init)
		wantInfo := map[string]string{"180p": "h264,avc1", "180phevc": "hevc,hvc1"}[tc.name]
		if strings.TrimSpace(info) != wantInfo {
			t.Errorf("%s: ffprobe says %q, want %q", tc.name, strings.TrimSpace(info), wantInfo)
		}
	}
}

func TestCodecsFromInitRefuses(t *testing.T) {
	for name, b := range map[string][]byte{
		"empty":     nil,
		"no moov":   {0, 0, 0, 8, 'f', 't', 'y', 'p'},
		"overrun":   {0, 0, 0, 99, 'm', 'o', 'o', 'v'},
		"no tracks": {0, 0, 0, 8, 'm', 'o', 'o', 'v'},
	} {
		if c, err := CodecsFromInit(b); err == nil {
			t.Errorf("%s: CodecsFromInit = %q", name, c)
		}
	}
}

// TestHEVCCodecString names hvcC records (the 13 bytes up to the level,
// completed to a version 1 record without parameter sets) as mp4ff decodes
// them.
func TestHEVCCodecString(t *testing.T) {
	for _, tc := range []struct {
		rec  []byte
		want string
	}{
		// Main, level 3.1, progressive source flag only: Apple's example form.
		{[]byte{1, 0x01, 0x60, 0, 0, 0, 0xb0, 0, 0, 0, 0, 0, 93}, "hvc1.1.6.L93.B0"},
		// Main 10, high tier, level 5.1, two constraint bytes.
		{[]byte{1, 0x22, 0x20, 0, 0, 0, 0x90, 0x08, 0, 0, 0, 0, 153}, "hvc1.2.4.H153.90.8"},
		// No constraint flags: the first byte is still written.
		{[]byte{1, 0x01, 0x60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 90}, "hvc1.1.6.L90.0"},
	} {
		// min spatial segmentation, parallelism, chroma, bit depths, frame
		// rate, 4-byte NAL lengths (0x0f), no arrays.
		rec, err := hevc.DecodeHEVCDecConfRec(append(tc.rec, 0xf0, 0, 0xfc, 0xfd, 0xf8, 0xf8, 0, 0, 0x0f, 0))
		if err != nil {
			t.Fatalf("% x: %v", tc.rec, err)
		}
		if got := hevcCodec("hvc1", &rec); got != tc.want {
			t.Errorf("hevcCodec(% x) = %q; want %q", tc.rec, got, tc.want)
		}
	}
}

// TestHEVCCodecMatchesMp4ff: the name read from the seed's hvcC record is
// the one mp4ff's hevc.CodecString writes from the SPS inside it (which
// spells the compatibility hex in capitals; hex is case-blind).
func TestHEVCCodecMatchesMp4ff(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "init_seed_hevc.mp4"))
	if err != nil {
		t.Fatal(err)
	}
	init, err := decodeInit(b)
	if err != nil {
		t.Fatal(err)
	}
	for _, trak := range init.Moov.Traks {
		hx := trak.Mdia.Minf.Stbl.Stsd.HvcX
		if hx == nil {
			continue
		}
		spss := hx.HvcC.GetNalusForType(hevc.NALU_SPS)
		if len(spss) == 0 {
			t.Fatal("hvcC without an SPS")
		}
		sps, err := hevc.ParseSPSNALUnit(spss[0])
		if err != nil {
			t.Fatal(err)
		}
		got, want := hevcCodec(hx.Type(), &hx.HvcC.DecConfRec), hevc.CodecString(hx.Type(), sps)
		if got != "hvc1.1.6.L30.90" || !strings.EqualFold(got, want) {
			t.Errorf("record says %q, mp4ff from the SPS %q", got, want)
		}
		return
	}
	t.Fatal("seed has no HEVC track")
}

// TestCodecsFromInitSeeds: ffmpeg's own init sections (160x90 and 320x180:
// x264 ultrafast, Constrained Baseline level 1.3, and x265 Main level 1,
// each with AAC-LC) are named from their records.
func TestCodecsFromInitSeeds(t *testing.T) {
	for name, want := range map[string]string{"init_seed_avc.mp4": "avc1.42c00d,mp4a.40.2", "init_seed_hevc.mp4": "hvc1.1.6.L30.90,mp4a.40.2"} {
		got, err := InitCodecs(filepath.Join("testdata", name))
		if err != nil || got != want {
			t.Errorf("%s: %q, %v; want %q", name, got, err, want)
		}
	}
}
