package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"maps"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hlsvault/hlsvault/internal/config"
	"github.com/hlsvault/hlsvault/internal/pipeline"
	"github.com/hlsvault/hlsvault/internal/storage"
	"github.com/hlsvault/hlsvault/internal/testenv"
	"github.com/hlsvault/hlsvault/internal/testenv/decoder"
	"github.com/hlsvault/hlsvault/internal/testenv/fixtures"
	"github.com/hlsvault/hlsvault/internal/testenv/hlscheck"
	"github.com/hlsvault/hlsvault/internal/testenv/player"
	"github.com/hlsvault/hlsvault/internal/transcode"
	"github.com/hlsvault/hlsvault/internal/worker"
	"github.com/hlsvault/hlsvault/jobs"
	"github.com/hlsvault/hlsvault/playback"
)

// publishReal packages a tiny generated video through the real pipeline
// (ffmpeg, encryption, publish) on the env's database and store, with a
// key period of 1 s (1 s segments): every second of it is under its own
// key, so players must follow the EXT-X-KEY changes.
func (e *env) publishReal(seconds float64, opts ...func(*pipeline.Config)) string {
	e.t.Helper()
	return e.publishRealSource(testenv.Source{Width: 320, Height: 240, Seconds: seconds, Audio: true}, opts...)
}

// publishRealSource is publishReal for a source of any shape (see
// publishTwoAudio).
func (e *env) publishRealSource(source testenv.Source, opts ...func(*pipeline.Config)) string {
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
	src := testenv.MakeSource(t, t.TempDir(), source)
	f, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := e.store.Put(ctx, "uploads/e2e.mp4", f, -1, storage.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	redisOpt := fixtures.Redis(t)
	queues := jobs.QueueNames(testenv.Name("q"))
	client, err := jobs.New(e.db.Pool(), redisOpt, jobs.ClientConfig{Queues: queues, Timeout: 5 * time.Minute, MaxRetry: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	handlers := worker.Handlers{jobs.TypeTranscode: pipe}
	maps.Copy(handlers, pipe.PieceHandlers()) // chunked transcodes, when the options turn them on
	stop := fixtures.Worker(t, worker.Config{Queues: queues}, redisOpt, testenv.Logger(t), handlers)
	defer stop()
	video := testenv.Name("e2e")
	res, err := client.EnqueueTranscode(ctx, jobs.TranscodeRequest{VideoID: video, Source: "uploads/e2e.mp4"})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		j, err := client.Job(ctx, res.TaskID)
		if err != nil {
			t.Fatal(err)
		}
		switch j.State {
		case jobs.Published:
			return video
		case jobs.Failed:
			t.Fatalf("job failed: %s", j.Error)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("job did not finish in 2 minutes")
	return ""
}

// repoRoot is the module root, found from this file's directory.
func repoRoot(t *testing.T) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// browserDeps returns node, the play script and hls.min.js, failing the test
// (never skipping it) with what to install when one is missing.
func browserDeps(t *testing.T) (node, script, hlsjs string) {
	t.Helper()
	root := repoRoot(t)
	script = filepath.Join(root, "e2e", "browser", "play.mjs")
	hlsjs = filepath.Join(root, "e2e", "browser", "node_modules", "hls.js", "dist", "hls.min.js")
	chromium := os.Getenv("CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	var err error
	if node, err = exec.LookPath("node"); err != nil {
		t.Fatalf("node not found (run `make deps`): %v", err)
	}
	if _, err := os.Stat(chromium); err != nil {
		t.Fatalf("chromium not found at %s (run `make deps`: apt-get install chromium): %v", chromium, err)
	}
	for _, p := range []string{hlsjs, filepath.Join(root, "e2e", "browser", "node_modules", "playwright-core", "package.json")} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%s missing (run `make deps`: npm ci --prefix e2e/browser): %v", p, err)
		}
	}
	return node, script, hlsjs
}

// TestPlaybackThroughGateway publishes a real encrypted title and plays it
// through the gateway with ffmpeg, then with hls.js in headless Chromium.
func TestPlaybackThroughGateway(t *testing.T) {
	for name, mk := range fixtures.Stores() {
		t.Run(name, func(t *testing.T) {
			node, script, hlsjs := browserDeps(t)
			e := newEnv(t, mk(t), envOptions{cfg: func(c *Config) { c.PlayerScript = hlsjs }})
			if name == "azurite" {
				// hls.js fetches segments from the blob service with XHR:
				// the service must allow the page's origin.
				cs := testenv.AzuriteConnectionString(t)
				if err := AllowStorageOrigins(context.Background(), cs, []string{e.ts.URL}); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() {
					if err := RemoveStorageOrigins(context.Background(), cs, []string{e.ts.URL}); err != nil {
						t.Error(err)
					}
				})
			}
			video := e.publishReal(3)
			subject := testenv.Name("viewer")

			t.Run("hls-parser", func(t *testing.T) {
				// The real title's master and media playlists as the
				// gateway rewrites them (1 s key periods, signed segment
				// URLs) pass third-party strict parsing.
				tok := e.token(video, testenv.Name("checker"), playback.NewSessionID(), time.Hour)
				hlscheck.StrictAll(t, hlscheck.Crawl(t, e.ts.Client(), playback.MasterURL(e.ts.URL, video, tok)))
			})

			t.Run("ffmpeg", func(t *testing.T) {
				ffmpeg, _ := testenv.FFmpeg(t)
				tok := e.token(video, subject, playback.NewSessionID(), time.Hour)
				master := playback.MasterURL(e.ts.URL, video, tok)
				ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
				defer cancel()
				cmd := exec.CommandContext(ctx, ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error",
					"-protocol_whitelist", "http,https,tcp,tls,crypto,hls", "-i", master,
					"-map", "0:v:0", "-f", "null", "-progress", "pipe:1", "-")
				out, err := cmd.Output()
				var stderr string
				if ee, ok := err.(*exec.ExitError); ok {
					stderr = string(ee.Stderr)
				}
				if err != nil || stderr != "" {
					t.Fatalf("ffmpeg: %v\n%s", err, redactToken(stderr))
				}
				frames := 0
				sc := bufio.NewScanner(strings.NewReader(string(out)))
				for sc.Scan() {
					if v, ok := strings.CutPrefix(sc.Text(), "frame="); ok {
						frames, _ = strconv.Atoi(v)
					}
				}
				// 3 s at 25 fps.
				if frames < 70 {
					t.Fatalf("ffmpeg decoded %d frames through the gateway, want about 75", frames)
				}
				// One key per 1 s period of the 3 s title, each fetched.
				if n := counterValue(e.metrics.keyDeliveries); n < 3 {
					t.Errorf("%v key deliveries counted, want one per key period (3)", n)
				}
			})

			t.Run("hlsjs-chromium", func(t *testing.T) {
				tok := e.token(video, subject, playback.NewSessionID(), time.Hour)
				page := e.ts.URL + "/watch/" + video + "?token=" + url.QueryEscape(tok)
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
				defer cancel()
				cmd := exec.CommandContext(ctx, node, script, page)
				out, err := cmd.CombinedOutput()
				t.Logf("play.mjs: %s", out)
				if err != nil {
					t.Fatalf("browser playback failed: %v", err)
				}
				var res struct {
					OK          bool     `json:"ok"`
					Frames      int      `json:"frames"`
					CurrentTime float64  `json:"currentTime"`
					Problems    []string `json:"problems"`
				}
				lines := strings.Split(strings.TrimSpace(string(out)), "\n")
				if err := json.Unmarshal([]byte(lines[len(lines)-1]), &res); err != nil {
					t.Fatalf("play.mjs output: %v", err)
				}
				if !res.OK || res.Frames == 0 || len(res.Problems) > 0 {
					t.Fatalf("browser: %+v", res)
				}
			})

			t.Run("hlsjs-shaka-chromium", func(t *testing.T) {
				// The test page (not the product page) with each MSE
				// player, both in one Chromium: AES-128 TS with a key per
				// second, at one of the ladder's sizes.
				tok := e.token(video, testenv.Name("mse"), playback.NewSessionID(), time.Hour)
				res := player.Play(t, playback.MasterURL(e.ts.URL, video, tok), player.Options{})
				for p, r := range res {
					if !(r.Width == 320 && r.Height == 240) && !(r.Width == 192 && r.Height == 144) {
						t.Errorf("%s: video %dx%d, want a rung of the ladder (320x240, 192x144)", p, r.Width, r.Height)
					}
					// One audio track (no alternates), no text tracks.
					if len(r.TextTracks) != 0 || len(r.AudioTracks) > 1 {
						t.Errorf("%s: audio %+v text %+v, want the muxed audio only", p, r.AudioTracks, r.TextTracks)
					}
				}
				if name != "fs" {
					return
				}
				// The switch checks can fail: this title has no French
				// audio and no subtitles, and each player says so.
				res, err := player.Run(t, playback.MasterURL(e.ts.URL, video, tok), player.Options{Audio: "fr", Text: "fr", Seconds: 0.5})
				if err == nil {
					t.Fatalf("play.mjs passed a switch to audio and subtitles the title does not have: %+v", res)
				}
				for _, p := range []string{"hlsjs", "shaka"} {
					if r := res[p]; r.OK || !strings.Contains(strings.Join(r.Problems, "\n"), "no audio track in fr") {
						t.Errorf("%s: %+v, want a failure naming the missing audio track", p, r)
					}
				}
			})
		})
	}
}

func redactToken(s string) string {
	if i := strings.Index(s, "token="); i >= 0 {
		return s[:i] + "token=REDACTED"
	}
	return s
}
