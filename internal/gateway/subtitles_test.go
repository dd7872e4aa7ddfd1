package gateway

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"io"
	"math"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hlsvault/hlsvault/internal/config"
	"github.com/hlsvault/hlsvault/internal/pipeline"
	"github.com/hlsvault/hlsvault/internal/playlist"
	"github.com/hlsvault/hlsvault/internal/segcrypt"
	"github.com/hlsvault/hlsvault/internal/storage"
	"github.com/hlsvault/hlsvault/internal/testenv"
	"github.com/hlsvault/hlsvault/internal/testenv/decoder"
	"github.com/hlsvault/hlsvault/internal/testenv/fixtures"
	"github.com/hlsvault/hlsvault/internal/transcode"
	"github.com/hlsvault/hlsvault/internal/worker"
	"github.com/hlsvault/hlsvault/jobs"
	"github.com/hlsvault/hlsvault/playback"
)

// publishSubtitled packages testenv.MakeSubtitledSource (an English
// mov_text track) with a French WebVTT sidecar through the real pipeline,
// 1 s segments and 1 s key periods, and returns the video id: a subtitled
// title for player checks.
func (e *env) publishSubtitled(seconds float64) string {
	e.t.Helper()
	return e.publishSubtitledSource(testenv.Source{Width: 320, Height: 240, Seconds: seconds, Audio: true})
}

// publishSubtitledSource is publishSubtitled for a source of any shape
// (several audio tracks, say), with the pipeline's config adjusted by opts.
func (e *env) publishSubtitledSource(source testenv.Source, opts ...func(*pipeline.Config)) string {
	t := e.t
	t.Helper()
	ctx := context.Background()
	ladder, err := transcode.ParseLadder("240p:300k:64k,144p:150k:64k")
	if err != nil {
		t.Fatal(err)
	}
	cfg := pipeline.Config{
		Exec: decoder.Exec(t), Ladder: ladder, Segment: time.Second, Preset: "ultrafast",
		TempDir: t.TempDir(), KeyURITemplate: config.DefaultKeyURITemplate, PollInterval: 50 * time.Millisecond,
		KeyPeriod: time.Second,
	}
	for _, o := range opts {
		o(&cfg)
	}
	pipe, err := pipeline.New(cfg, e.store, e.db, e.keyring, testenv.Logger(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	video := testenv.Name("subs")
	src := testenv.MakeSubtitledSource(t, dir, source)
	side := filepath.Join(dir, "fr.vtt")
	if err := os.WriteFile(side, []byte(testenv.SubtitleVTT), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, p := range map[string]string{"uploads/" + video + ".mp4": src, "uploads/" + video + "/subs/fr.vtt": side} {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		err = e.store.Put(ctx, name, f, -1, storage.PutOptions{})
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	redisOpt := fixtures.Redis(t)
	queues := jobs.QueueNames(testenv.Name("q"))
	client, err := jobs.New(e.db.Pool(), redisOpt, jobs.ClientConfig{Queues: queues, Timeout: 5 * time.Minute, MaxRetry: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	stop := fixtures.Worker(t, worker.Config{Queues: queues}, redisOpt, testenv.Logger(t), worker.Handlers{jobs.TypeTranscode: pipe})
	defer stop()
	res, err := client.EnqueueTranscode(ctx, jobs.TranscodeRequest{VideoID: video, Source: "uploads/" + video + ".mp4",
		Subtitles: []jobs.Subtitle{{Language: "fr", Name: "Français", Source: "uploads/" + video + "/subs/fr.vtt"}}})
	if err != nil {
		t.Fatal(err)
	}
	st, err := client.Wait(ctx, video)
	if err != nil || st.State != jobs.Published {
		t.Fatalf("job: %+v %v", st, err)
	}
	_ = res
	return video
}

// TestSubtitlesThroughGateway: the master's EXT-X-MEDIA URIs point back
// at the gateway like the variants', and the subtitle playlist and its
// segments are served under the same gate (token, session, signed URLs,
// the key endpoint).
func TestSubtitlesThroughGateway(t *testing.T) {
	e := newEnv(t, fixtures.FS(t), envOptions{})
	video := e.publishSubtitled(3)
	tok := e.token(video, "alice", playback.NewSessionID(), time.Hour)

	r := e.get(withToken("/v1/videos/"+video+"/master.m3u8", tok))
	if r.code != 200 {
		t.Fatalf("master: %d %s", r.code, r.body)
	}
	pm, err := playlist.ParseMaster(bytes.NewReader(r.body))
	if err != nil {
		t.Fatal(err)
	}
	var subs []playlist.Rendition
	for _, rd := range pm.Renditions {
		if rd.Type == "SUBTITLES" {
			subs = append(subs, rd)
		}
	}
	if len(subs) != 2 {
		t.Fatalf("master through the gateway has %d subtitle renditions:\n%s", len(subs), r.body)
	}
	if n := strings.Count(string(r.body), `SUBTITLES="subs"`); n != len(pm.Variants) {
		t.Errorf("%d of %d variants name the subtitle group:\n%s", n, len(pm.Variants), r.body)
	}
	fr := subs[1]
	if fr.Language != "fr" || fr.Name != "Français" {
		t.Errorf("sidecar rendition %+v", fr)
	}
	prefix := "/v1/videos/" + video + "/sub1-fr/index.m3u8?v="
	if !strings.HasPrefix(fr.URI, prefix) || !strings.Contains(fr.URI, "token=") {
		t.Fatalf("subtitle URI %q, want the gateway's %s…&token=…", fr.URI, prefix)
	}

	// The gate: no token, no playlist.
	if r := e.get(strings.Split(fr.URI, "&token=")[0]); r.code != 401 {
		t.Errorf("subtitle playlist without a token: %d", r.code)
	}
	r = e.get(fr.URI)
	if r.code != 200 || r.header.Get("Cache-Control") != "private, no-store" {
		t.Fatalf("subtitle playlist: %d %s", r.code, r.body)
	}
	media, err := playlist.ParseMedia(bytes.NewReader(r.body))
	if err != nil || len(media.Segments) != 3 {
		t.Fatalf("subtitle playlist: %v\n%s", err, r.body)
	}
	var cues []transcode.Cue
	for i, s := range media.Segments {
		if s.Key == nil || s.Key.Method != "AES-128" || !strings.HasPrefix(s.Key.URI, "/v1/keys/") {
			t.Fatalf("segment %d key %+v", i, s.Key)
		}
		seg := e.get(s.URI)
		if seg.code != 200 || seg.header.Get("Content-Type") != "text/vtt" {
			t.Fatalf("segment %d: %d %v", i, seg.code, seg.header)
		}
		k := e.get(s.Key.URI)
		if k.code != 200 || len(k.body) != 16 {
			t.Fatalf("key of segment %d: %d", i, k.code)
		}
		iv, err := hex.DecodeString(strings.TrimPrefix(strings.ToLower(s.Key.IV), "0x"))
		if err != nil {
			t.Fatal(err)
		}
		dec, err := segcrypt.NewDecryptReader(bytes.NewReader(seg.body), k.body, iv)
		if err != nil {
			t.Fatal(err)
		}
		plain, err := io.ReadAll(dec)
		if err != nil {
			t.Fatalf("segment %d: %v", i, err)
		}
		if !strings.HasPrefix(string(plain), "WEBVTT\nX-TIMESTAMP-MAP=MPEGTS:") {
			t.Errorf("segment %d:\n%s", i, plain)
		}
		c, err := transcode.ParseVTT(plain)
		if err != nil {
			t.Fatal(err)
		}
		cues = append(cues, c...)
	}
	if len(cues) != 2 || cues[0].Text != "Bonjour du fichier" || cues[1].Start != 2200*time.Millisecond {
		t.Errorf("cues through the gateway: %+v", cues)
	}
}

// TestSubtitleCuesInHlsJS plays a subtitled title through the gateway in
// hls.js (headless Chromium) and reads the cues of each subtitle track as
// hls.js placed them: at the source's times, so the X-TIMESTAMP-MAP
// matches the video's PTS (a map at MPEGTS:0 would put them 1.4 s early),
// and decrypted from AES-128 segments.
func TestSubtitleCuesInHlsJS(t *testing.T) {
	node, _, hlsjs := browserDeps(t)
	e := newEnv(t, fixtures.FS(t), envOptions{cfg: func(c *Config) { c.PlayerScript = hlsjs }})
	video := e.publishSubtitled(4)
	tok := e.token(video, "viewer", playback.NewSessionID(), time.Hour)
	res := hlsjsCues(t, node, e.ts.URL+"/watch/"+video+"?token="+url.QueryEscape(tok))
	want := map[string][]transcode.Cue{
		"en": {{Start: 500 * time.Millisecond, End: 1500 * time.Millisecond, Text: "Hello from the source"},
			{Start: 1800 * time.Millisecond, End: 2600 * time.Millisecond, Text: "Second source cue"}},
		"fr": {{Start: 250 * time.Millisecond, End: time.Second, Text: "Bonjour du fichier"},
			{Start: 2200 * time.Millisecond, End: 2900 * time.Millisecond, Text: "Deuxième réplique"}},
	}
	if len(res.Tracks) != 2 {
		t.Fatalf("hls.js shows %d subtitle tracks, want 2", len(res.Tracks))
	}
	for _, tr := range res.Tracks {
		w := want[tr.Lang]
		if len(tr.Cues) != len(w) {
			t.Errorf("%s (%s): cues %v, want %+v", tr.Label, tr.Lang, tr.Cues, w)
			continue
		}
		for i, c := range tr.Cues {
			start, _ := c[0].(float64)
			end, _ := c[1].(float64)
			text, _ := c[2].(string)
			if math.Abs(start-w[i].Start.Seconds()) > 0.05 || math.Abs(end-w[i].End.Seconds()) > 0.05 || text != w[i].Text {
				t.Errorf("%s cue %d: %v, want %+v", tr.Lang, i, c, w[i])
			}
		}
	}
}

// cueReport is what e2e/browser/cues.mjs prints: the cues hls.js holds for
// each subtitle track, as [start, end, text].
type cueReport struct {
	Tracks []struct {
		Label, Lang string
		Cues        [][]any
	}
}

// hlsjsCues opens the gateway's /watch page (hls.js) at page with
// cues.mjs and returns the cues it reports.
func hlsjsCues(t *testing.T, node, page string) cueReport {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, node, filepath.Join(repoRoot(t), "e2e", "browser", "cues.mjs"), page).CombinedOutput()
	t.Logf("cues.mjs: %s", out)
	if err != nil {
		t.Fatalf("cues.mjs: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	var res cueReport
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &res); err != nil {
		t.Fatal(err)
	}
	return res
}
