package transcode

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestScanFromFlag(t *testing.T) {
	for flag, want := range map[string]Scan{
		"progressive": Progressive, "": Progressive, "unknown": Progressive,
		"tt": TopFieldFirst, "bt": TopFieldFirst, // bt: bottom coded first, top shown first
		"bb": BottomFieldFirst, "tb": BottomFieldFirst,
	} {
		if got := scanFromFlag(flag); got != want {
			t.Errorf("scanFromFlag(%q) = %s, want %s", flag, got, want)
		}
	}
}

func TestDecideScan(t *testing.T) {
	for _, tc := range []struct {
		name    string
		flag    Scan
		c       IdetCounts
		want    Scan
		content bool
	}{
		{"progressive, agreed", Progressive, IdetCounts{Progressive: 59, Undetermined: 2}, Progressive, true},
		{"1080i50 as the issue measured", TopFieldFirst, IdetCounts{TFF: 99}, TopFieldFirst, true},
		{"flag says progressive, content is TFF", Progressive, IdetCounts{TFF: 55, Progressive: 3, Undetermined: 3}, TopFieldFirst, true},
		{"flag says TFF, content is progressive", TopFieldFirst, IdetCounts{Progressive: 58, Undetermined: 3}, Progressive, true},
		{"flag says TFF, content is BFF", TopFieldFirst, IdetCounts{BFF: 40, TFF: 2, Progressive: 10}, BottomFieldFirst, true},
		{"talking head: a quarter interlaced is enough", Progressive, IdetCounts{TFF: 15, Progressive: 45}, TopFieldFirst, true},
		{"just under a quarter stays progressive", Progressive, IdetCounts{TFF: 14, Progressive: 46}, Progressive, true},
		{"tie goes to TFF", Progressive, IdetCounts{TFF: 10, BFF: 10}, TopFieldFirst, true},
		{"a still picture: the flag stands", TopFieldFirst, IdetCounts{Progressive: 5, Undetermined: 55}, TopFieldFirst, false},
		{"nothing decided, progressive flag", Progressive, IdetCounts{Undetermined: 61}, Progressive, false},
	} {
		r := DecideScan(tc.flag, tc.c)
		if r.Scan != tc.want || r.Content != tc.content || r.Flag != tc.flag || r.Counts != tc.c {
			t.Errorf("%s: DecideScan(%s, %+v) = %+v, want %s (content %v)", tc.name, tc.flag, tc.c, r, tc.want, tc.content)
		}
	}
}

func TestParseIdet(t *testing.T) {
	// Real stderr of ffmpeg 5.1 (trimmed), joined as tailBuffer joins it.
	out := `Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'file:/src/tff.mp4': Duration: 00:00:01.00 ` +
		`[Parsed_idet_0 @ 0x55b1956796c0] Repeated Fields: Neither: 25 Top: 0 Bottom: 0 ` +
		`[Parsed_idet_0 @ 0x55b1956796c0] Single frame detection: TFF: 23 BFF: 0 Progressive: 1 Undetermined: 1 ` +
		`[Parsed_idet_0 @ 0x55b1956796c0] Multi frame detection: TFF:    25 BFF:     0 Progressive:     0 Undetermined:     0 ` +
		`video:13kB audio:0kB subtitle:0kB other streams:0kB global headers:0kB muxing overhead: unknown`
	got, err := ParseIdet(out)
	if err != nil || got != (IdetCounts{TFF: 25}) {
		t.Fatalf("ParseIdet = %+v, %v", got, err)
	}
	// A title or tag that imitates the summary comes before the real one.
	fake := "title: Multi frame detection: TFF: 0 BFF: 0 Progressive: 99 Undetermined: 0 " + out
	if got, _ := ParseIdet(fake); got != (IdetCounts{TFF: 25}) {
		t.Fatalf("ParseIdet took a fake summary: %+v", got)
	}
	for _, bad := range []string{"", "Multi frame detection: TFF: x", "Multi frame detection: TFF: 99999999999999999999 BFF: 0 Progressive: 0 Undetermined: 0"} {
		if _, err := ParseIdet(bad); err == nil || !strings.HasPrefix(err.Error(), "transcode: idet: ") {
			t.Errorf("ParseIdet(%q) error %v", bad, err)
		}
	}
}

func TestIdetArgs(t *testing.T) {
	p := synthetic(1920, 1080, 0, Rational{25, 1}, true)
	p.Duration = 20 * time.Second
	got := IdetArgs(p, "/in/a b.mp4")
	want := []string{
		"-hide_banner", "-nostdin", "-nostats", "-loglevel", "info",
		"-max_alloc", "268435456",
		"-protocol_whitelist", "file",
		"-format_whitelist", "mov",
		"-f", "mov",
		"-probesize", "10000000",
		"-analyzeduration", "10000000",
		"-max_probe_packets", "2500",
		"-max_pixels", "33177600",
		"-noautorotate",
		"-noaccurate_seek",
		"-ss", "2.000",
		"-i", "file:/in/a b.mp4",
		"-map", "0:0",
		"-an", "-sn", "-dn",
		"-vf", "scale=640:1080:flags=fast_bilinear,idet=intl_thres=1.2",
		"-frames:v", "60",
		"-f", "null", "-",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("IdetArgs =\n%q\nwant\n%q", got, want)
	}
	// Small pictures are not scaled; long ones start at most a minute in,
	// short ones at the start.
	small := synthetic(320, 240, 0, Rational{25, 1}, false)
	small.Duration = 3 * time.Hour
	got = IdetArgs(small, "/in/x.mp4")
	if i := slices.Index(got, "-vf"); got[i+1] != "idet=intl_thres=1.2" {
		t.Errorf("small source filter %q", got[i+1])
	}
	if i := slices.Index(got, "-ss"); got[i+1] != "60.000" {
		t.Errorf("long source starts at %s", got[i+1])
	}
	small.Duration = 9 * time.Second
	if got := IdetArgs(small, "/in/x.mp4"); got[slices.Index(got, "-ss")+1] != "0.000" {
		t.Errorf("short source starts at %s", got[slices.Index(got, "-ss")+1])
	}
}

// TestDetectScan runs idet for real on tiny clips: woven fields flagged
// interlaced, the same fields flagged progressive (the lying flag), and a
// progressive clip flagged interlaced.
func TestDetectScan(t *testing.T) {
	x := testExec(t)
	dir := t.TempDir()
	ctx := testContext(t)
	weave := "testsrc2=size=320x240:rate=50:duration=1,tinterlace=mode=interleave_top"
	cases := []struct {
		name     string
		src      []string // ffmpeg arguments before the output
		flag     Scan
		want     Scan
		fromFlag bool
	}{
		{"tff.mp4", []string{"-f", "lavfi", "-i", weave + ",setfield=tff", "-flags", "+ildct+ilme", "-x264opts", "tff=1"}, TopFieldFirst, TopFieldFirst, false},
		{"lie.mp4", []string{"-f", "lavfi", "-i", weave + ",setfield=prog"}, Progressive, TopFieldFirst, false},
		{"bff.mp4", []string{"-f", "lavfi", "-i", "testsrc2=size=320x240:rate=50:duration=1,tinterlace=mode=interleave_bottom,setfield=bff",
			"-flags", "+ildct+ilme", "-x264opts", "bff=1"}, BottomFieldFirst, BottomFieldFirst, false},
		// testsrc2's sharp lines fool idet's default threshold; not ours.
		{"progressive.mp4", []string{"-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=2"}, Progressive, Progressive, false},
		{"prog-flagged-tff.mp4", []string{"-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=1,setfield=tff", "-flags", "+ildct+ilme", "-x264opts", "tff=1"},
			TopFieldFirst, Progressive, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, tc.name)
			ffmpegRun(t, append(append(tc.src, "-c:v", "libx264", "-preset", "ultrafast", "-r", "25"), path)...)
			p, err := ProbeFile(ctx, x, path, Limits{})
			if err != nil {
				t.Fatal(err)
			}
			if p.Video.Scan != tc.flag {
				t.Fatalf("flag reads %s (field_order %q), want %s", p.Video.Scan, p.Video.FieldOrder, tc.flag)
			}
			r, err := DetectScan(ctx, x, path, p, Limits{})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%+v", r)
			if r.Scan != tc.want || r.Content == tc.fromFlag {
				t.Fatalf("DetectScan = %+v, want %s", r, tc.want)
			}
		})
	}

	t.Run("errors", func(t *testing.T) {
		p := synthetic(320, 240, 0, Rational{25, 1}, false)
		p.Video.FieldOrder, p.Video.Scan = "tt", TopFieldFirst
		garbage := filepath.Join(dir, "garbage.mp4")
		ffmpegRun(t, "-f", "lavfi", "-i", "sine=duration=1", garbage) // no video stream 0:0 to decode
		r, err := DetectScan(ctx, x, garbage, p, Limits{})
		if err == nil || !strings.HasPrefix(err.Error(), "transcode: idet: ") || r.Scan != TopFieldFirst {
			t.Fatalf("DetectScan = %+v, %v: want an error and the flag's verdict", r, err)
		}
		if _, err := DetectScan(ctx, x, "rel.mp4", p, Limits{}); err == nil {
			t.Fatal("relative path accepted")
		}
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := DetectScan(cctx, x, garbage, p, Limits{}); !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled: %v", err)
		}
	})
}
