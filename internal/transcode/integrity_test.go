package transcode

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hlsvault/hlsvault/internal/testenv"
)

func TestDurationTolerance(t *testing.T) {
	for declared, want := range map[time.Duration]time.Duration{
		time.Second:      time.Second, // the floor
		4 * time.Second:  time.Second,
		20 * time.Second: time.Second,
		time.Minute:      1800 * time.Millisecond, // 3 %
		time.Hour:        108 * time.Second,
	} {
		if got := DurationTolerance(declared); got != want {
			t.Errorf("DurationTolerance(%s) = %s, want %s", declared, got, want)
		}
	}
}

// TestCheckTruncation holds the decision on both sides of the tolerance.
func TestCheckTruncation(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name string
		in   Integrity
		want string // substring of the bad-input reason; "" accepts
	}{
		{"whole", Integrity{Declared: 4 * time.Second, VideoEnd: 4 * time.Second, AudioEnd: 4 * time.Second}, ""},
		{"video ends 1 s early, no audio", Integrity{Declared: 4 * time.Second, VideoEnd: 3 * time.Second}, ""},
		{"video ends 1.01 s early, no audio", Integrity{Declared: 4 * time.Second, VideoEnd: 2990 * ms},
			"source is truncated: the container declares 4.00 s, decodable video ends at 2.99 s; upload it again"},
		{"audio 0.5 s longer than video", Integrity{Declared: 4500 * ms, VideoEnd: 4 * time.Second, AudioEnd: 4500 * ms}, ""},
		{"audio 3 s longer than video: media reaches the end", Integrity{Declared: 20 * time.Second, VideoEnd: 17 * time.Second, AudioEnd: 20 * time.Second}, ""},
		{"one frame of four seconds", Integrity{Declared: 4 * time.Second, VideoEnd: 40 * ms, AudioEnd: 93 * ms},
			"declares 4.00 s, decodable video ends at 0.04 s, audio at 0.09 s"},
		{"an hour missing its last 100 s (under 3 %)", Integrity{Declared: time.Hour, VideoEnd: time.Hour - 100*time.Second}, ""},
		{"an hour missing its last 110 s", Integrity{Declared: time.Hour, VideoEnd: time.Hour - 110*time.Second},
			"declares 3600.0 s, decodable video ends at 3490.0 s"},
		{"nothing readable", Integrity{Declared: 4 * time.Second}, "decodable video ends at 0.00 s"},
		{"whole file read, frames declared", Integrity{Declared: 4 * time.Second, VideoEnd: 120 * ms, VideoFrames: 3, DeclaredFrames: 100},
			"decodable video ends at 0.12 s (3 of 100 frames); upload"},
		{"tail read: frames not compared", Integrity{Declared: 4 * time.Second, From: 2 * time.Second, VideoEnd: 2500 * ms, VideoFrames: 13, DeclaredFrames: 100},
			"decodable video ends at 2.50 s; upload"},
		{"longer than declared", Integrity{Declared: 4 * time.Second, VideoEnd: 6 * time.Second}, ""},
	}
	for _, tc := range tests {
		err := CheckTruncation(tc.in)
		if tc.want == "" {
			if err != nil {
				t.Errorf("%s: %v, want accepted", tc.name, err)
			}
			continue
		}
		if !errors.Is(err, ErrInvalidInput) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want bad input with %q", tc.name, err, tc.want)
		}
	}
}

func TestCheckOutputDuration(t *testing.T) {
	if err := CheckOutputDuration("720p", 3100*time.Millisecond, 4*time.Second); err != nil {
		t.Errorf("0.9 s short: %v", err)
	}
	if err := CheckOutputDuration("720p", 5*time.Second, 4*time.Second); err != nil {
		t.Errorf("longer: %v", err)
	}
	err := CheckOutputDuration("720p", 40*time.Millisecond, 4*time.Second)
	if want := "rendition 720p lasts 0.04 s, the container declares 4.00 s"; !errors.Is(err, ErrInvalidInput) || !strings.Contains(err.Error(), want) {
		t.Errorf("one frame: %v, want %q", err, want)
	}
}

func TestIntegrityArgs(t *testing.T) {
	head := []string{"-hide_banner", "-v", "error", "-max_alloc", "268435456", "-protocol_whitelist", "file",
		"-format_whitelist", "mov", "-f", "mov", "-probesize", "10000000", "-analyzeduration", "10000000",
		"-max_probe_packets", "2500"}
	tail := []string{"-show_entries", "packet=stream_index,pts_time,dts_time,duration_time,size,pos:stream=index,nb_frames:format=start_time",
		"-of", "compact=p=1:nk=0", "file:/tmp/job/source"}
	for _, tc := range []struct {
		from time.Duration
		mid  []string
	}{
		{0, nil},
		{-time.Second, nil},
		{18500 * time.Millisecond, []string{"-read_intervals", "+18.500%"}},
		{1234567 * time.Microsecond, []string{"-read_intervals", "+1.235%"}},
	} {
		want := slices.Concat(head, tc.mid, tail)
		if got := IntegrityArgs("mov", "/tmp/job/source", tc.from); !slices.Equal(got, want) {
			t.Errorf("from %s:\n got %q\nwant %q", tc.from, got, want)
		}
	}
	// Reading starts a second before the earliest acceptable end.
	for d, want := range map[time.Duration]time.Duration{0: 0, time.Second: 0, 2 * time.Second: 0,
		4 * time.Second: 2 * time.Second, 20 * time.Second: 18 * time.Second, time.Hour: time.Hour - 109*time.Second} {
		if got := integrityFrom(d); got != want {
			t.Errorf("integrityFrom(%s) = %s, want %s", d, got, want)
		}
	}
}

func TestPacketScanner(t *testing.T) {
	// ffprobe's compact output, with the side data lines it adds to TS
	// packets, a packet without pts, one cut by the end of the file, a
	// subtitle stream, and the format's start time last.
	out := "packet|stream_index=0|pts_time=1.400000|dts_time=1.320000|duration_time=0.040000|size=100|pos=564|side_data|\n\n" +
		"packet|stream_index=1|pts_time=2.900000|dts_time=2.900000|duration_time=0.021333|size=50|pos=1000\n" +
		"packet|stream_index=0|pts_time=N/A|dts_time=4.320000|duration_time=0.040000|size=100|pos=2000\n" +
		"packet|stream_index=2|pts_time=9.000000|dts_time=9.000000|duration_time=1|size=10|pos=2100\n" +
		"packet|stream_index=1|pts_time=4.379000|dts_time=4.379000|duration_time=0.021000|size=50|pos=2200\n" +
		"packet|stream_index=0|pts_time=4.400000|dts_time=4.360000|duration_time=0.040000|size=900|pos=2300\n" +
		strings.Repeat("x", 2*maxIntegrityLine) + "\n" +
		"stream|index=0|nb_frames=110\nstream|index=1|nb_frames=N/A\n" +
		"format|start_time=1.400000\n"
	s := &packetScanner{video: 0, audio: 1, size: 3000}
	// In uneven pieces, as a pipe delivers them.
	for i := 0; i < len(out); i += 7 {
		s.Write([]byte(out[i:min(i+7, len(out))]))
	}
	s.flush()
	video, audio, packets := s.ends()
	if video != 2960*time.Millisecond || audio != 3*time.Second || packets != 4 {
		t.Errorf("ends: video %s, audio %s, %d packets; want 2.96s, 3s, 4", video, audio, packets)
	}
	if s.videoPackets != 2 || s.declaredFrames != 110 {
		t.Errorf("video: %d packets of %d declared; want 2 of 110", s.videoPackets, s.declaredFrames)
	}
}

// TestCheckIntegrity runs the check with the real ffprobe on a fast-start
// MP4, whole and cut at several points, and on Matroska and MPEG-TS.
func TestCheckIntegrity(t *testing.T) {
	dir := t.TempDir()
	ctx := testContext(t)
	src := testenv.MakeSource(t, dir, testenv.Source{Width: 160, Height: 120, Seconds: 4, Audio: true,
		Extra: []string{"-movflags", "+faststart"}})
	whole, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	cut := func(name string, n int) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, whole[:n], 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	mkv := testenv.MakeSource(t, dir, testenv.Source{Width: 160, Height: 120, Seconds: 4, Audio: true, Ext: "mkv"})
	mkvBytes, _ := os.ReadFile(mkv)
	ts := testenv.MakeSource(t, dir, testenv.Source{Width: 160, Height: 120, Seconds: 4, Audio: true, Ext: "ts"})
	// 30 s cut to its first tenth: seeking near the declared end finds no
	// packet at all, so the check reads from the start to say where the
	// media really ends (not "0.00 s").
	long := testenv.MakeSource(t, dir, testenv.Source{Width: 64, Height: 48, Seconds: 30, FPS: 10,
		Extra: []string{"-movflags", "+faststart"}})
	longBytes, _ := os.ReadFile(long)

	tests := []struct {
		name, path string
		want       string // "" accepts
	}{
		{"whole fast-start mp4", src, ""},
		{"fast-start mp4 cut to 20 KB", cut("cut20k.mp4", 20<<10), " of 100 frames), audio at 0."},
		{"fast-start mp4 cut to 60 %", cut("cut60.mp4", len(whole)*60/100), "source is truncated"},
		{"fast-start mp4 missing its last 15 % (about 0.6 s)", cut("cut85.mp4", len(whole)*85/100), ""},
		{"whole matroska", mkv, ""},
		{"matroska cut to 50 %", func() string {
			p := filepath.Join(dir, "cut.mkv")
			os.WriteFile(p, mkvBytes[:len(mkvBytes)/2], 0o600)
			return p
		}(), "source is truncated"},
		{"mpeg-ts (duration measured, never declared)", ts, ""},
		{"30 s fast-start mp4 cut to 10 %", func() string {
			p := filepath.Join(dir, "long10.mp4")
			os.WriteFile(p, longBytes[:len(longBytes)/10], 0o600)
			return p
		}(), "declares 30.0 s, decodable video ends at "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := ProbeFile(ctx, testExec(t), tc.path, Limits{})
			if err != nil {
				t.Fatalf("probe: %v", err)
			}
			in, err := CheckIntegrity(ctx, testExec(t), tc.path, p, Limits{})
			t.Logf("%+v", in)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("CheckIntegrity: %v", err)
				}
				if in.Packets == 0 || in.From == 0 && p.Duration > 3*time.Second {
					t.Errorf("read %d packets from %s: the tail was not read", in.Packets, in.From)
				}
				return
			}
			if !errors.Is(err, ErrInvalidInput) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("CheckIntegrity: %v, want bad input with %q", err, tc.want)
			}
			if in.VideoEnd <= 0 || in.Packets == 0 {
				t.Errorf("where the media ends is not known: %+v", in)
			}
		})
	}
	t.Run("relative path", func(t *testing.T) {
		if _, err := CheckIntegrity(ctx, testExec(t), "a.mp4", &Probe{Format: "mov", Duration: time.Second}, Limits{}); err == nil {
			t.Error("accepted")
		}
	})
}
