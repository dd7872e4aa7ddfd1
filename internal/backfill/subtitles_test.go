package backfill

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/hlsvault/hlsvault/internal/catalog"
	"github.com/hlsvault/hlsvault/internal/layout"
	"github.com/hlsvault/hlsvault/internal/playlist"
	"github.com/hlsvault/hlsvault/internal/storage"
	"github.com/hlsvault/hlsvault/internal/testenv"
	"github.com/hlsvault/hlsvault/jobs"
)

// TestRekeySubtitledTitle: a re-key of a title published with a subtitle
// rendition keeps the subtitle group and its trick play, and the catalog lists the subtitle
// rendition, so the gateway (which serves only catalogued renditions)
// can serve the new master's EXT-X-MEDIA URI; the new version verifies.
func TestRekeySubtitledTitle(t *testing.T) {
	fs, err := storage.NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, fs)
	ctx := context.Background()
	src := testenv.MakeSubtitledSource(t, t.TempDir(), testenv.Source{Width: 160, Height: 120, Seconds: 2, Audio: true})
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := fs.Put(ctx, "uploads/st1.mp4", bytes.NewReader(b), int64(len(b)), storage.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(jobs.TranscodePayload{VideoID: "st1", Source: "uploads/st1.mp4"})
	if err := newTestPipeline(t, h).ProcessTask(ctx, asynq.NewTask(jobs.TypeTranscode, payload)); err != nil {
		t.Fatal(err)
	}
	h.startWorker()
	rk := h.start(StartOptions{IDs: []string{"st1"}, RunOptions: RunOptions{Rekey: true, Label: "subs"}})
	if st := h.waitRun(rk.Run.ID, 2*time.Minute, catalog.RunDone); st.Done != 1 {
		t.Fatalf("rekey run: %+v", st)
	}
	cur, err := h.db.CurrentVersion(ctx, "st1")
	if err != nil || cur.Version != 2 {
		t.Fatalf("after re-key: %+v %v", cur, err)
	}
	if rep, err := h.verifier().Verify(ctx, "st1"); err != nil || !rep.OK() {
		t.Fatalf("verify after re-key: %+v %v", rep, err)
	}
	master := readObject(t, fs, cur.Master)
	pm, err := playlist.ParseMaster(bytes.NewReader(master))
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]string{}
	for _, r := range cur.Renditions {
		known[r.Name] = r.Type
	}
	subs := 0
	for _, r := range pm.Renditions {
		if r.Type != "SUBTITLES" {
			continue
		}
		subs++
		name, ok := layout.RenditionFromURI(r.URI)
		if !ok || known[name] != "subtitles" || r.Language != "en" {
			t.Errorf("subtitle rendition %+v: catalog has %q for it (%+v)", r, known[name], cur.Renditions)
		}
	}
	if subs != 1 || !strings.Contains(string(master), `SUBTITLES="subs"`) {
		t.Errorf("re-keyed master lost the subtitle group:\n%s", master)
	}
	// Trick play and the captions statement survive the re-key too: the
	// I-frames are cut again from the decrypted segments.
	for _, want := range []string{"#EXT-X-I-FRAME-STREAM-INF:", "CLOSED-CAPTIONS=NONE", "#EXT-X-INDEPENDENT-SEGMENTS", "FRAME-RATE="} {
		if !strings.Contains(string(master), want) {
			t.Errorf("re-keyed master lacks %s:\n%s", want, master)
		}
	}
}
