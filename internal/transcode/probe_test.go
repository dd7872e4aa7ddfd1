package transcode

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hlsvault/hlsvault/internal/testenv"
)

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(goldenDir, "probe", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseProbe(t *testing.T) {
	v320 := VideoStream{Index: 0, Codec: "h264", Width: 320, Height: 240, DisplayWidth: 320, DisplayHeight: 240,
		FrameRate: Rational{25, 1}, PixFmt: "yuv420p", BitDepth: 8, FieldOrder: "progressive", Scan: Progressive}
	mono := &AudioStream{Index: 1, Codec: "aac", Channels: 1, SampleRate: 48000}
	with := func(v VideoStream, f func(*VideoStream)) VideoStream { f(&v); return v }

	tests := []struct {
		name    string // defaults to the fixture and sniffed format
		fixture string
		sniffed string
		lim     Limits
		want    *Probe
		wantErr string // substring; bad input unless it starts with "transcode: decode"
	}{
		{fixture: "mp4_h264_aac.json", sniffed: "mov",
			want: &Probe{Format: "mov", Duration: 2 * time.Second, Video: v320, Audio: mono}},
		{fixture: "mkv_h264_aac.json", sniffed: "matroska",
			want: &Probe{Format: "matroska", Duration: 2021 * time.Millisecond, Video: v320, Audio: mono}},
		{fixture: "ts_h264_aac.json", sniffed: "mpegts",
			want: &Probe{Format: "mpegts", Duration: 2021333 * time.Microsecond, Video: v320, Audio: mono}},
		{fixture: "mp4_rotate90.json", sniffed: "mov",
			// ffprobe reports +90 (counterclockwise); autorotate turns it
			// 270 clockwise. Either way the picture is portrait.
			want: &Probe{Format: "mov", Duration: 2 * time.Second, Audio: mono,
				Video: with(v320, func(v *VideoStream) { v.Rotation, v.DisplayWidth, v.DisplayHeight = 270, 240, 320 })}},
		{fixture: "edited_legacy_rotate_tag.json", sniffed: "mov",
			want: &Probe{Format: "mov", Duration: 2 * time.Second, Audio: mono,
				Video: with(v320, func(v *VideoStream) { v.Rotation, v.DisplayWidth, v.DisplayHeight = 270, 240, 320 })}},
		{fixture: "mp4_video_and_cover_art.json", sniffed: "mov",
			want: &Probe{Format: "mov", Duration: 2 * time.Second, Video: v320, Audio: mono}},
		{fixture: "edited_mp4_cover_art_first.json", sniffed: "mov",
			want: &Probe{Format: "mov", Duration: 2 * time.Second,
				Video: with(v320, func(v *VideoStream) { v.Index = 1 }),
				Audio: &AudioStream{Index: 2, Codec: "aac", Channels: 1, SampleRate: 48000}}},
		{fixture: "mkv_h264_10bit.json", sniffed: "matroska",
			want: &Probe{Format: "matroska", Duration: 1001 * time.Millisecond,
				Video: with(v320, func(v *VideoStream) {
					v.FrameRate, v.PixFmt, v.BitDepth, v.Color.Range = Rational{30000, 1001}, "yuv420p10le", 10, "tv"
				})}},
		{fixture: "mp4_anamorphic.json", sniffed: "mov",
			want: &Probe{Format: "mov", Duration: time.Second,
				Video: with(v320, func(v *VideoStream) { v.DisplayWidth, v.SAR = 341, Rational{16, 15} })}}, // 320 x 16/15
		// Colour and field order, as the ladder and the argv use them.
		{fixture: "ts_h264_tff.json", sniffed: "mpegts",
			want: &Probe{Format: "mpegts", Duration: time.Second,
				Video: with(v320, func(v *VideoStream) { v.FieldOrder, v.Scan = "tt", TopFieldFirst })}},
		{fixture: "mov_hevc_hlg.json", sniffed: "mov",
			want: &Probe{Format: "mov", Duration: time.Second,
				Video: with(v320, func(v *VideoStream) {
					v.Codec, v.PixFmt, v.BitDepth = "hevc", "yuv420p10le", 10
					v.Color = Color{Primaries: "bt2020", Transfer: "arib-std-b67", Space: "bt2020nc", Range: "tv"}
				})}},
		{fixture: "mkv_hevc_pq.json", sniffed: "matroska",
			want: &Probe{Format: "matroska", Duration: time.Second,
				Video: with(v320, func(v *VideoStream) {
					v.Codec, v.PixFmt, v.BitDepth = "hevc", "yuv420p10le", 10
					v.Color = Color{Primaries: "bt2020", Transfer: "smpte2084", Space: "bt2020nc", Range: "tv"}
				})}},
		{fixture: "mp4_pal_anamorphic_bt601.json", sniffed: "mov",
			want: &Probe{Format: "mov", Duration: time.Second,
				Video: with(v320, func(v *VideoStream) {
					v.Width, v.Height, v.DisplayWidth, v.DisplayHeight, v.SAR = 720, 576, 1024, 576, Rational{64, 45}
					v.Color = Color{Primaries: "bt470bg", Transfer: "bt709", Space: "bt470bg", Range: "tv"}
				})}},
		{fixture: "edited_hostile_colour_tags.json", sniffed: "mov",
			want: &Probe{Format: "mov", Duration: time.Second,
				Video: with(v320, func(v *VideoStream) { v.FieldOrder, v.Scan = "", Progressive })}},
		{fixture: "edited_unknown_frame_rate.json", sniffed: "mov",
			want: &Probe{Format: "mov", Duration: 2 * time.Second, Audio: mono,
				Video: with(v320, func(v *VideoStream) { v.FrameRate = Rational{} })}},
		{fixture: "edited_ts_format_duration_na.json", sniffed: "mpegts",
			want: &Probe{Format: "mpegts", Duration: 2 * time.Second, Video: v320, Audio: mono}},

		{fixture: "m4a_audio_only.json", sniffed: "mov", wantErr: "invalid input: audio only: the file has no video stream"},
		{fixture: "m4a_cover_art.json", sniffed: "mov", wantErr: "invalid input: audio only: the file has cover art but no video stream"},
		{fixture: "edited_huge_100000x100000.json", sniffed: "mov", wantErr: "video size 100000x100000 exceeds the limit of 7680x4320"},
		{fixture: "edited_ts_duration_na.json", sniffed: "mpegts", wantErr: "duration is unknown"},
		{fixture: "edited_format_mismatch.json", sniffed: "mov", wantErr: `ffprobe reports container "avi", expected "mov"`},
		{fixture: "mkv_h264_aac.json", sniffed: "mov", wantErr: `ffprobe reports container "matroska,webm", expected "mov"`},
		{fixture: "mp4_h264_aac.json", sniffed: "avi", wantErr: `container "avi" is not allowed`},
		{fixture: "mp4_h264_aac.json", sniffed: "mov", name: "max duration", lim: Limits{MaxDuration: time.Second}, wantErr: "duration 2.000s exceeds the limit of 1s"},
		{fixture: "mp4_h264_aac.json", sniffed: "mov", name: "min duration", lim: Limits{MinDuration: 3 * time.Second}, wantErr: "shorter than the minimum of 3s"},
		{fixture: "mp4_h264_aac.json", sniffed: "mov", name: "max bytes", lim: Limits{MaxBytes: 1000}, wantErr: "file is 193338 bytes, the limit is 1000"},
		{fixture: "mp4_h264_aac.json", sniffed: "mov", name: "max size", lim: Limits{MaxWidth: 300, MaxHeight: 300}, wantErr: "exceeds the limit of 300x300"},
		{fixture: "mp4_h264_aac.json", sniffed: "mov", name: "max pixels", lim: Limits{MaxPixels: 320*240 - 1}, wantErr: "exceeds the limit of 76799 pixels"},
		// A portrait picture is held to the same limits as landscape.
		{fixture: "mp4_rotate90.json", sniffed: "mov", name: "portrait within landscape limits", lim: Limits{MaxWidth: 320, MaxHeight: 240},
			want: &Probe{Format: "mov", Duration: 2 * time.Second, Audio: mono,
				Video: with(v320, func(v *VideoStream) { v.Rotation, v.DisplayWidth, v.DisplayHeight = 270, 240, 320 })}},
	}
	for _, tc := range tests {
		name := tc.name
		if name == "" {
			name = strings.TrimSuffix(tc.fixture, ".json") + "/" + tc.sniffed
		}
		t.Run(name, func(t *testing.T) {
			data := readFixture(t, tc.fixture)
			const size = 193338
			got, err := ParseProbe(data, tc.sniffed, size, tc.lim)
			if tc.wantErr != "" {
				if err == nil {
					t.Fatalf("ParseProbe = %+v, want error %q", got, tc.wantErr)
				}
				if !errors.Is(err, ErrInvalidInput) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %q: want ErrInvalidInput mentioning %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.want.Size = size
			if a := tc.want.Audio; a != nil && got.Audio != nil {
				// Every fixture's audio is its only one; its tags are
				// TestParseProbeAudios' business.
				w := *a
				w.Language, w.Default = got.Audio.Language, got.Audio.Default
				tc.want.Audio, tc.want.Audios = &w, []AudioStream{w}
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("ParseProbe\n got %+v video %+v audio %+v\nwant %+v video %+v audio %+v",
					got, got.Video, got.Audio, tc.want, tc.want.Video, tc.want.Audio)
			}
		})
	}

	t.Run("not json", func(t *testing.T) {
		_, err := ParseProbe([]byte("{"), "mov", 10, Limits{})
		if err == nil || errors.Is(err, ErrInvalidInput) || !strings.HasPrefix(err.Error(), "transcode: decode ffprobe output") {
			t.Fatalf("error %v: want a decode error that is not bad input", err)
		}
	})
	t.Run("empty file", func(t *testing.T) {
		_, err := ParseProbe(readFixture(t, "mp4_h264_aac.json"), "mov", 0, Limits{})
		if !errors.Is(err, ErrInvalidInput) {
			t.Fatalf("error %v: want bad input", err)
		}
	})
}

func TestRotationNormalisation(t *testing.T) {
	f := func(x float64) *float64 { return &x }
	for _, tc := range []struct {
		side *float64
		tag  string
		want int
	}{
		{nil, "", 0}, {f(90), "", 270}, {f(-90), "", 90}, {f(180), "", 180}, {f(-180), "", 180},
		{f(270), "", 90}, {f(-270), "", 270}, {f(89.6), "", 270}, {f(45), "", 0}, {f(0), "90", 0},
		{nil, "90", 90}, {nil, "-90", 270}, {nil, "450", 90}, {nil, "junk", 0}, {nil, "359.7", 0},
	} {
		s := ffStream{Tags: map[string]string{"rotate": tc.tag}}
		if tc.side != nil {
			s.SideDataList = append(s.SideDataList, struct {
				SideDataType string   `json:"side_data_type"`
				Rotation     *float64 `json:"rotation"`
			}{"Display Matrix", tc.side})
		}
		if got := rotation(&s); got != tc.want {
			t.Errorf("rotation(side %v, tag %q) = %d, want %d", tc.side, tc.tag, got, tc.want)
		}
	}
}

func TestProbeArgs(t *testing.T) {
	got := ProbeArgs("matroska", "/in/a b.mkv")
	want := []string{
		"-hide_banner", "-v", "error",
		"-max_alloc", "268435456",
		"-protocol_whitelist", "file",
		"-format_whitelist", "matroska",
		"-f", "matroska",
		"-probesize", "10000000",
		"-analyzeduration", "10000000",
		"-max_probe_packets", "2500",
		"-show_format", "-show_streams",
		"-of", "json",
		"file:/in/a b.mkv",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("ProbeArgs =\n%q\nwant\n%q", got, want)
	}
}

func TestProbeFile(t *testing.T) {
	dir := t.TempDir()
	ctx := testContext(t)
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}

	t.Run("mkv", func(t *testing.T) {
		src := testenv.MakeSource(t, dir, testenv.Source{Width: 160, Height: 120, Seconds: 1, FPS: 10, Audio: true, Ext: "mkv"})
		p, err := ProbeFile(ctx, testExec(t), src, Limits{})
		if err != nil {
			t.Fatal(err)
		}
		if p.Format != "matroska" || p.Video.Width != 160 || p.Video.Height != 120 || p.Audio == nil || p.Audio.SampleRate != 48000 {
			t.Fatalf("probe %+v video %+v audio %+v", p, p.Video, p.Audio)
		}
		if p.Duration < 900*time.Millisecond || p.Duration > 1100*time.Millisecond {
			t.Fatalf("duration %s, want about 1s", p.Duration)
		}
	})

	badInput := []struct {
		name, path, want string
	}{
		{"playlist", write("list.mp4", []byte("#EXTM3U\n#EXTINF:1,\nfile:///etc/passwd\n")), "looks like an HLS playlist"},
		{"empty", write("empty.mp4", nil), "file is empty"},
		// Sniffs as MPEG-TS but holds nothing ffprobe can read.
		{"garbage ts", write("garbage.ts", tsGarbage(3)), ""},
		{"truncated mp4", write("trunc.mp4", []byte("\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2")), "ffprobe cannot read the file"},
		{"directory", dir, "not a regular file"},
	}
	for _, tc := range badInput {
		t.Run(tc.name, func(t *testing.T) {
			p, err := ProbeFile(ctx, testExec(t), tc.path, Limits{})
			if !errors.Is(err, ErrInvalidInput) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ProbeFile = %+v, %v; want bad input mentioning %q", p, err, tc.want)
			}
			t.Log(err)
		})
	}

	t.Run("too big", func(t *testing.T) {
		src := write("big.mp4", make([]byte, 2000))
		_, err := ProbeFile(ctx, testExec(t), src, Limits{MaxBytes: 1000})
		if !errors.Is(err, ErrInvalidInput) || !strings.Contains(err.Error(), "file is 2000 bytes, the limit is 1000") {
			t.Fatalf("error %v", err)
		}
	})
	t.Run("relative path", func(t *testing.T) {
		_, err := ProbeFile(ctx, testExec(t), "a.mp4", Limits{})
		if err == nil || errors.Is(err, ErrInvalidInput) {
			t.Fatalf("error %v: want a programming error", err)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		src := write("c.ts", tsGarbage(3)) // sniffs fine, so ffprobe is reached
		_, err := ProbeFile(cctx, testExec(t), src, Limits{})
		if !errors.Is(err, context.Canceled) || errors.Is(err, ErrInvalidInput) {
			t.Fatalf("error %v: want context.Canceled", err)
		}
	})
}

// tsGarbage returns n TS packets of 0xFF: sync bytes right, content none.
func tsGarbage(n int) []byte {
	b := make([]byte, 0, n*tsPacket)
	for range n {
		b = append(b, 0x47)
		b = append(b, bytes.Repeat([]byte{0xFF}, tsPacket-1)...)
	}
	return b
}
