package pipeline

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hlsvault/hlsvault/internal/keys"
	"github.com/hlsvault/hlsvault/internal/playlist"
	"github.com/hlsvault/hlsvault/internal/storage"
	"github.com/hlsvault/hlsvault/internal/testenv"
	"github.com/hlsvault/hlsvault/internal/testenv/decoder"
	"github.com/hlsvault/hlsvault/internal/testenv/hlscheck"
	"github.com/hlsvault/hlsvault/internal/transcode"
	"github.com/hlsvault/hlsvault/internal/verify"
	"github.com/hlsvault/hlsvault/jobs"
)

// fmp4Ladder is the test ladder with an HEVC rung beside the H.264 ones.
const fmp4Ladder = "240p:300k:64k,144p:150k:64k,144p:120k:64k:hevc"

// TestFMP4HEVCLadder publishes an fMP4 H.264 + HEVC ladder, chosen per job
// on a worker whose default is MPEG-TS, with a key period of 2 s so that
// each rendition has an init section per period (two): the playlists are pinned
// byte for byte (deterministic keys and IVs), pass the strict parsers, and
// verify decrypts and decodes every rendition, the HEVC one as HEVC.
func TestFMP4HEVCLadder(t *testing.T) {
	fs, err := storage.NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, fs, func(c *Config) { c.KeyPeriod = 2 * time.Second })
	n := 0
	h.pipe.newKey = func() (keys.ContentKey, error) {
		n++
		return keys.ContentKeyFromBytes([]byte(fmt.Sprintf("0123456789abcde%d", n%10)))
	}
	ids := 0
	h.pipe.newKeyID = func() (string, error) {
		ids++
		return fmt.Sprintf("k_%032d", ids), nil
	}
	h.pipe.newIV = func(name string) (iv [16]byte, err error) {
		rendition, file, _ := strings.Cut(name, "/")
		var i int
		if _, err := fmt.Sscanf(file, "seg_%05d.m4s", &i); err != nil {
			if _, err := fmt.Sscanf(file, "init_%05d.mp4", &i); err != nil {
				return iv, err
			}
			iv[14] = 0xff
		}
		copy(iv[:], rendition)
		iv[15] = byte(i)
		return iv, nil
	}
	src := testenv.MakeSource(t, t.TempDir(), testenv.Source{Width: 320, Height: 240, Seconds: 3, Audio: true, FPS: 25})
	h.upload("uploads/fmp4.mp4", src)
	h.startWorker()
	ctx := context.Background()
	res, err := h.client.EnqueueTranscode(ctx, jobs.TranscodeRequest{VideoID: "fmp4", Source: "uploads/fmp4.mp4",
		Ladder: fmp4Ladder, Segments: "fmp4"})
	if err != nil {
		t.Fatal(err)
	}
	if j := h.waitJob(res.TaskID); j.State != jobs.Published || j.Options.Segments != "fmp4" {
		t.Fatalf("job: %+v", j)
	}
	objs := h.objects("hls/fmp4/v1/")
	var names []string
	for name := range objs {
		names = append(names, strings.TrimPrefix(name, "hls/fmp4/v1/"))
	}
	slices.Sort(names)
	// Two key periods (0-2 s, 2-3 s): two init sections per rendition; no
	// I-frame playlists for fMP4.
	for _, r := range []string{"240p", "144p", "144phevc"} {
		for _, want := range []string{r + "/index.m3u8", r + "/init_00000.mp4", r + "/init_00001.mp4", r + "/seg_00000.m4s", r + "/seg_00002.m4s"} {
			if _, ok := objs["hls/fmp4/v1/"+want]; !ok {
				t.Errorf("no object %s in %v", want, names)
			}
		}
	}
	for _, name := range names {
		if strings.Contains(name, "-iframes") || strings.HasSuffix(name, ".ts") || strings.Contains(name, "init_00002") {
			t.Errorf("unexpected object %s", name)
		}
	}
	for _, name := range []string{"master.m3u8", "240p/index.m3u8", "144phevc/index.m3u8"} {
		checkGoldenFile(t, "fmp4_"+strings.ReplaceAll(name, "/", "_")+".golden", normalise(objs["hls/fmp4/v1/"+name]))
	}
	// The init section is encrypted: no ftyp in the clear.
	if bytes.Contains(objs["hls/fmp4/v1/144phevc/init_00000.mp4"], []byte("ftyp")) {
		t.Error("init section stored in the clear")
	}
	hlscheck.StrictAll(t, hlscheck.Stored(t, h.store, "hls/fmp4/v1/"))

	rep, err := (&verify.Verifier{Store: h.store, DB: h.db, Keyring: h.keyring, Exec: decoder.Exec(t)}).Verify(ctx, "fmp4")
	if err != nil || !rep.OK() {
		t.Fatalf("verify: %+v %v", rep, err)
	}
	codecs := map[string]string{}
	for _, r := range rep.Renditions {
		if r.Format != "fmp4" {
			t.Errorf("rendition %s format %q", r.Name, r.Format)
		}
		codecs[r.Name] = r.Codec
	}
	if want := map[string]string{"240p": "h264", "144p": "h264", "144phevc": "hevc"}; fmt.Sprint(codecs) != fmt.Sprint(want) {
		t.Errorf("verify decoded %v, want %v", codecs, want)
	}
	if len(rep.KeyIDs) != 2 {
		t.Errorf("key ids %v, want two periods", rep.KeyIDs)
	}
}

// TestHEVCNeedsFMP4: a ladder with HEVC rungs in MPEG-TS is refused: at
// enqueue when the job asks for ts, as bad input when the worker's default
// is ts, and at New for the worker's own ladder.
func TestHEVCNeedsFMP4(t *testing.T) {
	fs, err := storage.NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, fs)
	ctx := context.Background()
	_, err = h.client.EnqueueTranscode(ctx, jobs.TranscodeRequest{VideoID: "hevcts", Source: "uploads/x.mp4", Ladder: fmp4Ladder, Segments: "ts"})
	if !errors.Is(err, jobs.ErrInvalidPayload) || !strings.Contains(err.Error(), "need fmp4") {
		t.Errorf("HEVC with ts: %v", err)
	}
	if _, err = h.client.EnqueueTranscode(ctx, jobs.TranscodeRequest{VideoID: "hevcts", Source: "uploads/x.mp4", Segments: "mp4"}); !errors.Is(err, jobs.ErrInvalidPayload) {
		t.Errorf("segments mp4: %v", err)
	}
	h.upload("uploads/x.mp4", testenv.MakeSource(t, t.TempDir(), testenv.Source{Width: 320, Height: 240, Seconds: 1}))
	h.startWorker()
	res, err := h.client.EnqueueTranscode(ctx, jobs.TranscodeRequest{VideoID: "hevcts", Source: "uploads/x.mp4", Ladder: fmp4Ladder})
	if err != nil {
		t.Fatal(err)
	}
	if j := h.waitJob(res.TaskID); j.State != jobs.Failed || !strings.Contains(j.Error, "bad input") || !strings.Contains(j.Error, "need fmp4") || j.Attempts != 1 {
		t.Errorf("job: %+v", j)
	}
	l, _ := transcode.ParseLadder(fmp4Ladder)
	cfg := h.pipe.cfg
	cfg.Ladder, cfg.Segments = l, transcode.SegmentsTS
	if _, err := New(cfg, fs, h.db, h.keyring, h.log, nil); err == nil {
		t.Error("New accepted HEVC rungs with ts")
	}
}

func TestOrderVariants(t *testing.T) {
	vs := []playlist.Variant{
		{URI: "a", Bandwidth: 100, Codecs: "avc1.64000d"},
		{URI: "b", Bandwidth: 900, Codecs: "hvc1.1.6.L90.90,mp4a.40.2"},
		{URI: "c", Bandwidth: 500, Codecs: "avc1.64001f,mp4a.40.2"},
		{URI: "d", Bandwidth: 300, Codecs: "hvc1.1.6.L60.90"},
	}
	var got []string
	for _, v := range orderVariants(vs) {
		got = append(got, v.URI)
	}
	if want := []string{"c", "a", "b", "d"}; !slices.Equal(got, want) {
		t.Errorf("order %v, want %v", got, want)
	}
}

// TestFMP4TwoAudio: alternate audio renditions in fMP4 are audio-only
// fragments with init sections of their own, named mp4a from their esds,
// and every rendition verifies.
func TestFMP4TwoAudio(t *testing.T) {
	fs, err := storage.NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, fs, func(c *Config) { c.Segments = transcode.SegmentsFMP4 })
	ctx := context.Background()
	src := testenv.MakeSource(t, t.TempDir(), testenv.Source{Width: 320, Height: 240, Seconds: 2,
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
	objs := h.objects("hls/" + video + "/v1/")
	master := string(objs["hls/"+video+"/v1/master.m3u8"])
	if !strings.Contains(master, `CODECS="avc1.`) || !strings.Contains(master, `,mp4a.40.2"`) || !strings.Contains(master, `AUDIO="aud"`) {
		t.Errorf("master:\n%s", master)
	}
	for _, name := range []string{"audio1/init_00000.mp4", "audio2/init_00000.mp4", "audio1/seg_00000.m4s"} {
		if _, ok := objs["hls/"+video+"/v1/"+name]; !ok {
			t.Errorf("no object %s", name)
		}
	}
	hlscheck.StrictAll(t, hlscheck.Stored(t, h.store, "hls/"+video+"/v1/"))
	rep, err := (&verify.Verifier{Store: h.store, DB: h.db, Keyring: h.keyring, Exec: decoder.Exec(t)}).Verify(ctx, video)
	if err != nil || !rep.OK() {
		t.Fatalf("verify: %+v %v", rep, err)
	}
	streams := map[string]string{}
	for _, r := range rep.Renditions {
		streams[r.Name] = r.Stream + "/" + r.Codec
	}
	if streams["audio1"] != "audio/aac" || streams["240p"] != "video/h264" {
		t.Errorf("verify: %v", streams)
	}
}
