package transcode

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hlsvault/hlsvault/internal/testenv"
)

// TestTranscodeAlternateAudio runs the real ffmpeg on a source with a 5.1
// English track and a mono French default track: one process writes the
// video rungs without audio and one AAC rendition per track, the 5.1 one
// downmixed to stereo and the mono one kept mono, each as long as the
// source.
func TestTranscodeAlternateAudio(t *testing.T) {
	ffmpeg, _ := testenv.FFmpeg(t)
	src := filepath.Join(t.TempDir(), "two.mp4")
	cmd := exec.Command(ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
		"-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=2",
		"-f", "lavfi", "-i", "aevalsrc=sin(440*2*PI*t)|sin(550*2*PI*t)|sin(660*2*PI*t)|0|sin(770*2*PI*t)|sin(880*2*PI*t):c=5.1:s=48000:d=2",
		"-f", "lavfi", "-i", "sine=frequency=330:sample_rate=44100:duration=2",
		"-map", "0:v", "-map", "1:a", "-map", "2:a", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
		"-c:a", "aac", "-metadata:s:a:0", "language=eng", "-metadata:s:a:1", "language=fre",
		"-disposition:a:0", "0", "-disposition:a:1", "default", src)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make source: %v\n%s", err, b)
	}
	probe, plan, args, out := prepare(t, src, "240p:300k,144p:150k", time.Second)
	if len(probe.Audios) != 2 || len(plan.Audio) != 2 || plan.HasAudio {
		t.Fatalf("probe audio %+v, plan audio %+v (muxed %v)", probe.Audios, plan.Audio, plan.HasAudio)
	}
	if a := plan.Audio; a[0].Language != "en" || a[0].Channels != 2 || a[0].Default || a[1].Language != "fr" || a[1].Channels != 1 || !a[1].Default {
		t.Fatalf("audio plan %+v", a)
	}
	r := Runner{Exec: testExec(t), Input: src, Logger: testenv.Logger(t), Timeout: 30 * time.Second, MaxOutputBytes: 50 << 20, OutDir: out}
	if err := r.Run(testContext(t), args, nil); err != nil {
		t.Fatal(err)
	}
	checkOutput(t, plan, out, 2) // video rungs: no audio (HasAudio is false)
	codecs, err := SegmentCodecs(filepath.Join(out, "240p", "seg_00000.ts"))
	if err != nil || strings.Contains(codecs, "mp4a") {
		t.Errorf("video segment codecs %q, %v", codecs, err)
	}
	for _, a := range plan.Audio {
		dir := filepath.Join(out, a.Name)
		extinf, uris := mediaPlaylist(t, filepath.Join(dir, "index.m3u8"))
		if len(uris) == 0 {
			t.Fatalf("%s: no segments", a.Name)
		}
		if c, err := SegmentAudioCodecs(filepath.Join(dir, uris[0])); err != nil || c != "mp4a.40.2" {
			t.Errorf("%s: codecs %q, %v", a.Name, c, err)
		}
		var total float64
		for _, u := range uris {
			var res struct {
				Streams []struct {
					CodecType  string `json:"codec_type"`
					CodecName  string `json:"codec_name"`
					Channels   int    `json:"channels"`
					SampleRate string `json:"sample_rate"`
				} `json:"streams"`
			}
			if err := json.Unmarshal([]byte(ffprobeOut(t, "-show_entries", "stream=codec_type,codec_name,channels,sample_rate",
				"-of", "json", filepath.Join(dir, u))), &res); err != nil {
				t.Fatal(err)
			}
			if len(res.Streams) != 1 || res.Streams[0].CodecType != "audio" || res.Streams[0].CodecName != "aac" ||
				res.Streams[0].Channels != a.Channels || res.Streams[0].SampleRate != "48000" {
				t.Fatalf("%s/%s: streams %+v, want one AAC stream of %d channels at 48 kHz", a.Name, u, res.Streams, a.Channels)
			}
		}
		for _, e := range extinf {
			d, err := strconv.ParseFloat(strings.TrimSuffix(e, ","), 64)
			if err != nil {
				t.Fatalf("%s: EXTINF %q", a.Name, e)
			}
			total += d
		}
		if total < 1.9 || total > 2.2 {
			t.Errorf("%s lasts %.3fs, want about 2s", a.Name, total)
		}
	}
}
