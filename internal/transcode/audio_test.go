package transcode

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestNormalizeLanguage(t *testing.T) {
	for in, want := range map[string]string{
		"eng": "en", "fra": "fr", "fre": "fr", "ger": "de", "deu": "de", "en": "en", "EN": "en", "pt-BR": "pt-BR",
		"und": "", "": "", " ": "", "mul": "", "zxx": "", "xx": "", "e\"n": "", "spa": "es",
	} {
		if got := NormalizeLanguage(in); got != want {
			t.Errorf("NormalizeLanguage(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestPlanAudioGroup(t *testing.T) {
	p := synthetic(1280, 720, 0, Rational{25, 1}, true)
	p.Audios = []AudioStream{
		{Index: 1, Channels: 2, Language: "eng"},
		{Index: 2, Channels: 6, Language: "fra", Default: true},
		{Index: 3, Channels: 1, Language: "und"},
		{Index: 4, Channels: 2, Language: "eng"},
	}
	plan, err := PlanLadder(p, DefaultLadder(), 4*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	want := []AudioRendition{
		{Name: "audio1", Index: 1, Channels: 2, Bitrate: 128000, Language: "en", Label: "English"},
		{Name: "audio2", Index: 2, Channels: 2, Bitrate: 128000, Language: "fr", Label: "Français", Default: true},
		{Name: "audio3", Index: 3, Channels: 1, Bitrate: 64000, Label: "Audio 3"},
		{Name: "audio4", Index: 4, Channels: 2, Bitrate: 128000, Language: "en", Label: "English 2"},
	}
	if len(plan.Audio) != len(want) {
		t.Fatalf("audio group %+v", plan.Audio)
	}
	for i := range want {
		if plan.Audio[i] != want[i] {
			t.Errorf("audio %d = %+v, want %+v", i, plan.Audio[i], want[i])
		}
	}
	if plan.HasAudio {
		t.Error("the video renditions of a plan with an audio group carry audio")
	}
	for _, r := range plan.Renditions {
		if r.AudioBitrate != 0 {
			t.Errorf("rendition %s: audio bitrate %d in a video-only rendition", r.Name, r.AudioBitrate)
		}
	}

	// One track: the muxed shape, as before.
	p.Audios = p.Audios[:1]
	if plan, err = PlanLadder(p, DefaultLadder(), 4*time.Second); err != nil {
		t.Fatal(err)
	}
	if len(plan.Audio) != 0 || !plan.HasAudio {
		t.Fatalf("one audio track: group %+v, muxed %v", plan.Audio, plan.HasAudio)
	}

	// Over the limit: the first eight, the rest counted; no default tag:
	// the first is the default.
	p.Audios = nil
	for i := range MaxAudioRenditions + 3 {
		p.Audios = append(p.Audios, AudioStream{Index: i + 1, Channels: 2})
	}
	if plan, err = PlanLadder(p, DefaultLadder(), 4*time.Second); err != nil {
		t.Fatal(err)
	}
	if len(plan.Audio) != MaxAudioRenditions || plan.AudioIgnored != 3 || !plan.Audio[0].Default || plan.Audio[1].Default {
		t.Fatalf("audio group of %d, ignored %d: %+v", len(plan.Audio), plan.AudioIgnored, plan.Audio)
	}
	for i, a := range plan.Audio {
		if a.Label != "Audio "+strconv.Itoa(i+1) {
			t.Errorf("audio %d label %q", i, a.Label)
		}
	}
	args, err := Args(plan, "/in/a.mp4", "/out", ArgsOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The worker writes the master: ffmpeg's is never asked for, and the
	// upload's language tags never reach the argv.
	joined := strings.Join(args, " ")
	for _, forbidden := range []string{"master_pl_name", "agroup", "language"} {
		if strings.Contains(joined, forbidden) {
			t.Errorf("argv contains %q", forbidden)
		}
	}
	// A name clash between an audio and a video rendition is refused.
	plan.Audio[0].Name = plan.Renditions[0].Name
	if _, err := Args(plan, "/in/a.mp4", "/out", ArgsOptions{}); err == nil {
		t.Fatal("Args accepted an audio rendition named like a video one")
	}
}
