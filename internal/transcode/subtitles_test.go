package transcode

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hlsvault/hlsvault/internal/testenv"
)

func TestParseLanguage(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{"eng": "en", "fre": "fr", "fra": "fr", "ger": "de", "en": "en", "pt-br": "pt-BR",
		"und": "", "": "", " spa ": "es", "zho": "zh"} {
		got, err := ParseLanguage(in)
		if err != nil || got != want {
			t.Errorf("ParseLanguage(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"english!", "e", `en"x`, strings.Repeat("a", 40)} {
		if got, err := ParseLanguage(bad); err == nil {
			t.Errorf("ParseLanguage(%q) = %q, want an error", bad, got)
		}
	}
}

func TestSniffSubtitle(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		testenv.SubtitleSRT:                  SubtitleSRT,
		"\ufeff" + testenv.SubtitleSRT:       SubtitleSRT,
		testenv.SubtitleVTT:                  SubtitleWebVTT,
		"WEBVTT - title\n\n":                 SubtitleWebVTT,
		"[Script Info]\r\nTitle: x\r\n":      SubtitleASS,
		"1\r\n00:00:01.000 --> 00:00:02,000": SubtitleSRT,
	} {
		if got, err := SniffSubtitle([]byte(in)); err != nil || got != want {
			t.Errorf("SniffSubtitle(%.20q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "\x00\x00\x00\x18ftypmp42", "hello world\n", "WEBVTTX\n", "1\nnot a timing\n", "\xff\xfe1\x00"} {
		if got, err := SniffSubtitle([]byte(bad)); !errors.Is(err, ErrInvalidInput) {
			t.Errorf("SniffSubtitle(%q) = %q, %v; want bad input", bad, got, err)
		}
	}
	if _, err := SniffSubtitle(make([]byte, MaxSidecarBytes+1)); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("oversized sidecar: %v", err)
	}
}

func TestParseProbeSubtitles(t *testing.T) {
	t.Parallel()
	js := `{"format":{"format_name":"matroska,webm","duration":"4.0"},"streams":[
	{"index":0,"codec_type":"video","codec_name":"h264","width":320,"height":240,"avg_frame_rate":"25/1","pix_fmt":"yuv420p"},
	{"index":1,"codec_type":"subtitle","codec_name":"hdmv_pgs_subtitle","tags":{"language":"eng"}},
	{"index":2,"codec_type":"subtitle","codec_name":"subrip","tags":{"language":"fre","title":"Français"},"disposition":{"forced":1}},
	{"index":3,"codec_type":"subtitle","codec_name":"dvb_subtitle"},
	{"index":4,"codec_type":"subtitle","codec_name":"ass","tags":{"language":"und","title":"bad\"title"}}]}`
	p, err := ParseProbe([]byte(js), "matroska", 1000, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	want := []SubtitleStream{{Index: 2, Codec: "subrip", Language: "fr", Title: "Français", Forced: true}, {Index: 4, Codec: "ass"}}
	if len(p.Subtitles) != 2 || p.Subtitles[0] != want[0] || p.Subtitles[1] != want[1] {
		t.Errorf("Subtitles = %+v, want %+v", p.Subtitles, want)
	}
	if len(p.IgnoredSubtitles) != 2 || p.IgnoredSubtitles[0].Codec != "hdmv_pgs_subtitle" || p.IgnoredSubtitles[1].Index != 3 {
		t.Errorf("IgnoredSubtitles = %+v", p.IgnoredSubtitles)
	}
}

func TestParseVTT(t *testing.T) {
	t.Parallel()
	cues, err := ParseVTT([]byte("WEBVTT\r\n\r\nNOTE hi\r\n\r\nid1\r\n00:00.500 --> 00:01.500 align:start\r\nA\r\nB\r\n\r\n01:00:02.000 --> 01:00:04.250\r\nC\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []Cue{{500 * time.Millisecond, 1500 * time.Millisecond, "align:start", "A\nB"},
		{time.Hour + 2*time.Second, time.Hour + 4250*time.Millisecond, "", "C"}}
	if len(cues) != 2 || cues[0] != want[0] || cues[1] != want[1] {
		t.Errorf("cues = %+v, want %+v", cues, want)
	}
	for _, bad := range []string{"hello", "WEBVTT\n\n00:02.000 --> 00:01.000\nx\n", "WEBVTT\n\n00:61.000 --> 00:62.000\nx\n"} {
		if _, err := ParseVTT([]byte(bad)); !errors.Is(err, ErrInvalidInput) {
			t.Errorf("ParseVTT(%q): %v, want bad input", bad, err)
		}
	}
}

func TestSegmentVTT(t *testing.T) {
	t.Parallel()
	cues := []Cue{{500 * time.Millisecond, 1500 * time.Millisecond, "", "one"},
		{1800 * time.Millisecond, 2600 * time.Millisecond, "line:0", "two\n\nthree --> four"}}
	got := SegmentVTT(cues, []time.Duration{0, 2 * time.Second, 4 * time.Second}, 5*time.Second, 126000)
	want := []string{
		"WEBVTT\nX-TIMESTAMP-MAP=MPEGTS:126000,LOCAL:00:00:00.000\n\n00:00:00.500 --> 00:00:01.500\none\n\n00:00:01.800 --> 00:00:02.600 line:0\ntwo\nthree -> four\n",
		"WEBVTT\nX-TIMESTAMP-MAP=MPEGTS:126000,LOCAL:00:00:00.000\n\n00:00:01.800 --> 00:00:02.600 line:0\ntwo\nthree -> four\n",
		"WEBVTT\nX-TIMESTAMP-MAP=MPEGTS:126000,LOCAL:00:00:00.000\n",
	}
	if len(got) != len(want) {
		t.Fatalf("%d segments, want %d", len(got), len(want))
	}
	for i := range want {
		if string(got[i]) != want[i] {
			t.Errorf("segment %d:\n%s\nwant\n%s", i, got[i], want[i])
		}
		if _, err := ParseVTT(got[i]); err != nil {
			t.Errorf("segment %d does not parse back: %v", i, err)
		}
	}
}

func TestSubtitleArgsGolden(t *testing.T) {
	t.Parallel()
	args := SubtitleArgs("mov", "/job/source", 2, "/job/subs/0.vtt")
	args = append(append(args, "--"), SidecarArgs(SubtitleSRT, "/job/subs/side0", "/job/subs/1.vtt")...)
	golden(t, "subtitle_args.golden.txt", []byte(strings.Join(args, "\n")+"\n"))
}

// TestSubtitlesFromARealSource converts the mov_text track of a generated
// source and a sidecar through the sandbox, and measures the PTS at which
// ffmpeg's mpegts muxer starts an HLS segment.
func TestSubtitlesFromARealSource(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	src := testenv.MakeSubtitledSource(t, dir, testenv.Source{Width: 160, Height: 120, Seconds: 3, Audio: true})
	x := testExec(t)
	ctx := context.Background()
	p, err := ProbeFile(ctx, x, src, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Subtitles) != 1 || p.Subtitles[0].Codec != "mov_text" || p.Subtitles[0].Language != "en" || p.Subtitles[0].Title != "English" {
		t.Fatalf("Subtitles = %+v", p.Subtitles)
	}
	out := filepath.Join(dir, "out.vtt")
	if err := ConvertSubtitle(ctx, x, SubtitleArgs(p.Format, src, p.Subtitles[0].Index, out), src, out, Limits{}); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	cues, err := ParseVTT(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(cues) != 2 || cues[0].Text != "Hello from the source" || cues[0].Start != 500*time.Millisecond || cues[1].End != 2600*time.Millisecond {
		t.Errorf("cues = %+v", cues)
	}

	side := filepath.Join(dir, "side")
	if err := os.WriteFile(side, []byte("this is not a subtitle"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A sidecar claimed to be SubRip that is not: ffmpeg's refusal is bad input.
	if err := ConvertSubtitle(ctx, x, SidecarArgs(SubtitleSRT, side, out), side, out, Limits{}); !errors.Is(err, ErrInvalidInput) && err != nil {
		t.Errorf("convert junk: %v", err)
	}

	// The PTS of the first packet of an HLS segment as the ladder writes it.
	ff, _ := testenv.FFmpeg(t)
	hls := filepath.Join(dir, "hls")
	if err := os.Mkdir(hls, 0o700); err != nil {
		t.Fatal(err)
	}
	if b, err := exec.Command(ff, "-hide_banner", "-loglevel", "error", "-i", src, "-map", "0:v", "-map", "0:a", "-c:v", "libx264",
		"-preset", "ultrafast", "-c:a", "aac", "-f", "hls", "-hls_time", "2", "-hls_segment_filename", filepath.Join(hls, "seg_%05d.ts"),
		filepath.Join(hls, "index.m3u8")).CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	pts, err := FirstPTS(filepath.Join(hls, "seg_00000.ts"))
	if err != nil {
		t.Fatal(err)
	}
	if pts != 126000 {
		t.Errorf("first PTS = %d, want ffmpeg's 126000 (1.4 s)", pts)
	}
	if _, err := FirstPTS(out); err == nil {
		t.Error("FirstPTS of a WebVTT file: no error")
	}
}

// TestSidecarsConvert: SubRip and ASS sidecars become WebVTT through the
// sandboxed ffmpeg, as sniffed.
func TestSidecarsConvert(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	x := testExec(t)
	ass := "[Script Info]\nScriptType: v4.00+\n\n[V4+ Styles]\n" +
		"Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, Bold, Italic, Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, Outline, Shadow, Alignment, MarginL, MarginR, MarginV, Encoding\n" +
		"Style: Default,Arial,20,&H00FFFFFF,&H000000FF,&H00000000,&H00000000,0,0,0,0,100,100,0,0,1,1,0,2,10,10,10,1\n\n" +
		"[Events]\nFormat: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text\n" +
		"Dialogue: 0,0:00:01.00,0:00:02.50,Default,,0,0,0,,Hallo {\\i1}Welt{\\i0}\n"
	for name, tc := range map[string]struct {
		body, format, text string
		start              time.Duration
	}{
		"srt": {testenv.SubtitleSRT, SubtitleSRT, "Hello from the source", 500 * time.Millisecond},
		"ass": {ass, SubtitleASS, "Hallo <i>Welt</i>", time.Second},
	} {
		in := filepath.Join(dir, name)
		if err := os.WriteFile(in, []byte(tc.body), 0o600); err != nil {
			t.Fatal(err)
		}
		format, err := SniffSubtitle([]byte(tc.body))
		if err != nil || format != tc.format {
			t.Fatalf("%s: sniffed %q %v", name, format, err)
		}
		out := in + ".vtt"
		if err := ConvertSubtitle(context.Background(), x, SidecarArgs(format, in, out), in, out, Limits{}); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		data, _ := os.ReadFile(out)
		cues, err := ParseVTT(data)
		if err != nil || len(cues) == 0 || cues[0].Text != tc.text || cues[0].Start != tc.start {
			t.Errorf("%s: cues %+v %v\n%s", name, cues, err, data)
		}
	}
}
