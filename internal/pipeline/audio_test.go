package pipeline

import (
	"bytes"
	"context"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/hlsvault/hlsvault/internal/catalog"
	"github.com/hlsvault/hlsvault/internal/storage"
	"github.com/hlsvault/hlsvault/internal/testenv"
	"github.com/hlsvault/hlsvault/internal/testenv/decoder"
	"github.com/hlsvault/hlsvault/internal/verify"
	"github.com/hlsvault/hlsvault/jobs"
)

// TestTwoAudioLanguages publishes a source with an English and a French
// track (French the default) through a real worker: the master has one
// AUDIO group with both, every variant plays with it and declares no
// closed captions, and each audio rendition decrypts and decodes to the
// source's duration.
func TestTwoAudioLanguages(t *testing.T) {
	fs, err := storage.NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, fs)
	ctx := context.Background()
	src := testenv.MakeSource(t, t.TempDir(), testenv.Source{Width: 320, Height: 240, Seconds: 3,
		AudioTracks: []string{"eng", "fra"}, DefaultAudio: 1})
	h.upload("uploads/two.mp4", src)
	h.startWorker()
	video := testenv.Name("aud")
	res, err := h.client.EnqueueTranscode(ctx, jobs.TranscodeRequest{VideoID: video, Source: "uploads/two.mp4"})
	if err != nil {
		t.Fatal(err)
	}
	if j := h.waitJob(res.TaskID); j.State != jobs.Published {
		t.Fatalf("job: %+v", j)
	}
	master := string(h.objects("hls/" + video + "/v1/master.m3u8")["hls/"+video+"/v1/master.m3u8"])
	checkGoldenFile(t, "master_two_audio.m3u8.golden", normalise([]byte(master)))
	for _, want := range []string{
		`#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aud",NAME="English",DEFAULT=NO,AUTOSELECT=YES,LANGUAGE="en",CHANNELS="1",URI="audio1/index.m3u8"` + "\n",
		`#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aud",NAME="Français",DEFAULT=YES,AUTOSELECT=YES,LANGUAGE="fr",CHANNELS="1",URI="audio2/index.m3u8"` + "\n",
	} {
		if !strings.Contains(master, want) {
			t.Errorf("master lacks %q", want)
		}
	}
	variants := regexp.MustCompile(`(?m)^#EXT-X-STREAM-INF:(.*)$`).FindAllStringSubmatch(master, -1)
	if len(variants) != 2 {
		t.Fatalf("%d variants", len(variants))
	}
	for _, v := range variants {
		for _, want := range []string{`AUDIO="aud"`, "CLOSED-CAPTIONS=NONE", `,mp4a.40.2"`} {
			if !strings.Contains(v[1], want) {
				t.Errorf("variant %s lacks %s", v[1], want)
			}
		}
	}

	// The video renditions carry no audio of their own; the catalog names
	// the audio ones.
	cur, err := h.db.CurrentVersion(ctx, video)
	if err != nil {
		t.Fatal(err)
	}
	var audio []catalog.Rendition
	for _, r := range cur.Renditions {
		if r.Type == catalog.RenditionAudio {
			audio = append(audio, r)
		} else if strings.Contains(r.Codecs, "mp4a") == false {
			t.Errorf("video rendition %s: codecs %q name no audio", r.Name, r.Codecs)
		}
	}
	// The default first, as in the master.
	if len(audio) != 2 || audio[0].Language != "fr" || audio[1].Language != "en" || !audio[0].Default || audio[1].Default ||
		audio[0].Name != "audio2" || audio[1].Channels != 1 || audio[1].Codecs != "mp4a.40.2" || audio[1].Group != "aud" || audio[1].Label != "English" {
		t.Fatalf("audio renditions in the catalog: %+v", audio)
	}
	st, err := h.client.Status(ctx, video)
	if err != nil || len(st.Current.Renditions) != 4 || st.Current.Renditions[2].Language != "fr" || st.Current.Renditions[2].Type != "audio" {
		t.Fatalf("status: %+v %v", st.Current, err)
	}

	ver := &verify.Verifier{Store: h.store, DB: h.db, Keyring: h.keyring, Exec: decoder.Exec(t)}
	rep, err := ver.Verify(ctx, video)
	if err != nil || !rep.OK() {
		t.Fatalf("verify: %+v %v", rep, err)
	}
	streams := map[string]string{}
	for _, rr := range rep.Renditions {
		streams[rr.Name] = rr.Stream
		if rr.Stream == "audio" && math.Abs(rr.DecodedDuration-3) > 0.2 {
			t.Errorf("audio rendition %s decodes to %.3fs, want 3s", rr.Name, rr.DecodedDuration)
		}
	}
	// The video rungs, their trick play renditions and both languages.
	if streams["audio1"] != "audio" || streams["audio2"] != "audio" || streams["240p"] != "video" || streams["240p-iframes"] != "video" || len(streams) != 6 {
		t.Fatalf("verified renditions: %v", streams)
	}
}

// checkGoldenFile compares got with testdata/pipeline/name (written with
// -update).
func checkGoldenFile(t *testing.T, name string, got []byte) {
	t.Helper()
	golden := filepath.Join("..", "..", "testdata", "pipeline", name)
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs:\n--- got\n%s\n--- want\n%s", golden, got, want)
	}
}
