package transcode

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func collect(t *testing.T, in string) ([]Progress, error) {
	t.Helper()
	var got []Progress
	err := ParseProgress(strings.NewReader(in), func(p Progress) { got = append(got, p) })
	return got, err
}

func TestParseProgressCaptured(t *testing.T) {
	// Captured from ffmpeg 5.1 writing a two-rung ladder of a 6 s clip.
	b, err := os.ReadFile(filepath.Join(goldenDir, "progress.txt"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := collect(t, string(b))
	if err != nil {
		t.Fatal(err)
	}
	want := []Progress{
		{OutTime: 85333 * time.Microsecond, Frame: 1, Speed: 3.26},
		{OutTime: 2773333 * time.Microsecond, Frame: 68, Speed: 5.24},
		{OutTime: 6016000 * time.Microsecond, Frame: 150, Speed: 5.28, Done: true},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
}

func TestParseProgressEdges(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []Progress
	}{
		{
			name: "N/A at start keeps zero, later N/A keeps the last value",
			in: "frame=0\nout_time_us=N/A\nout_time_ms=N/A\nout_time=N/A\nspeed=N/A\nprogress=continue\n" +
				"frame=10\nout_time_us=400000\nspeed=2.0x\nprogress=continue\n" +
				"frame=12\nout_time_us=N/A\nout_time=N/A\nspeed=N/A\nprogress=end\n",
			want: []Progress{
				{},
				{OutTime: 400 * time.Millisecond, Frame: 10, Speed: 2},
				{OutTime: 400 * time.Millisecond, Frame: 12, Speed: 2, Done: true},
			},
		},
		{
			name: "negative times are zero",
			in:   "out_time_us=-21333\nout_time=-00:00:00.021333\nprogress=continue\nout_time=-577014:32:22.775808\nprogress=continue\n",
			want: []Progress{{}, {}},
		},
		{
			name: "aliases when out_time_us is missing, CRLF",
			in:   "out_time_ms=1500000\r\nprogress=continue\r\nout_time=01:02:03.500000\r\nprogress=end\r\n",
			want: []Progress{
				{OutTime: 1500 * time.Millisecond},
				{OutTime: time.Hour + 2*time.Minute + 3500*time.Millisecond, Done: true},
			},
		},
		{
			name: "truncated block is not reported",
			in:   "frame=1\nprogress=continue\nframe=2\nout_time_us=80000\n",
			want: []Progress{{Frame: 1}},
		},
		{
			name: "junk is ignored",
			in:   "garbage\n=\nframe=-4\nframe=x\nspeed=-1x\nspeed=Infx\nout_time_us=99999999999999999999\nprogress=continue\n",
			want: []Progress{{}},
		},
		{name: "empty", in: "", want: nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := collect(t, tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}

	t.Run("overlong line", func(t *testing.T) {
		in := "frame=1\nprogress=continue\n" + strings.Repeat("x", maxProgressLine+1) + "\n"
		got, err := collect(t, in)
		if err == nil || !strings.HasPrefix(err.Error(), "transcode: progress: ") || len(got) != 1 {
			t.Fatalf("got %+v, %v", got, err)
		}
	})
	t.Run("nil callback", func(t *testing.T) {
		if err := ParseProgress(bytes.NewReader([]byte("progress=end\n")), nil); err != nil {
			t.Fatal(err)
		}
	})
}
