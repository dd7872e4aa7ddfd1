package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"net/url"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hlsvault/hlsvault/internal/storage"
	"github.com/hlsvault/hlsvault/internal/testenv"
	"github.com/hlsvault/hlsvault/playback"
)

// publishTwoAudio publishes, through the real pipeline, a 3 s title with
// an English and a French audio track (French the default): its master
// has an AUDIO group "aud" with renditions audio1 (en) and audio2 (fr).
// A fixture for player tests that switch the audio language.
func (e *env) publishTwoAudio() string {
	e.t.Helper()
	return e.publishRealSource(testenv.Source{Width: 320, Height: 240, Seconds: 3,
		AudioTracks: []string{"eng", "fra"}, DefaultAudio: 1})
}

var mediaURIRE = regexp.MustCompile(`(?m)^#EXT-X-MEDIA:TYPE=AUDIO,.*LANGUAGE="(\w+)".*,URI="([^"]+)"$`)

// TestAlternateAudioThroughGateway: the gateway rewrites the EXT-X-MEDIA
// URIs of a real two-language title like its variant URIs, and serves the
// audio playlists behind the same gate as the video ones; ffmpeg decodes
// each language through it.
func TestAlternateAudioThroughGateway(t *testing.T) {
	fs, err := storage.NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	node, script, hlsjs := browserDeps(t)
	e := newEnv(t, fs, envOptions{cfg: func(c *Config) { c.PlayerScript = hlsjs }})
	video := e.publishTwoAudio()
	tok := e.token(video, testenv.Name("viewer"), playback.NewSessionID(), time.Hour)

	r := e.get(withToken("/v1/videos/"+video+"/master.m3u8", tok))
	if r.code != 200 {
		t.Fatalf("master: %d %s", r.code, r.body)
	}
	master := string(r.body)
	media := mediaURIRE.FindAllStringSubmatch(master, -1)
	// The default (French, the source's second track) first.
	if len(media) != 2 || media[0][1] != "fr" || media[1][1] != "en" {
		t.Fatalf("audio renditions in the rewritten master:\n%s", master)
	}
	variant := regexp.MustCompile(`(?m)^\S+/240p/index\.m3u8\S*$`).FindString(master)
	if variant == "" {
		t.Fatalf("no rewritten 240p variant in\n%s", master)
	}
	for _, m := range media {
		name := map[string]string{"en": "audio1", "fr": "audio2"}[m[1]]
		// Exactly the variant URI's shape: the gateway's rendition URL
		// pinned to the version, with the player's token.
		if want := strings.Replace(variant, "/240p/", "/"+name+"/", 1); m[2] != want {
			t.Errorf("EXT-X-MEDIA URI %q, want %q", m[2], want)
		}
	}
	if !strings.Contains(master, "CLOSED-CAPTIONS=NONE") || strings.Contains(master, `URI="audio`) {
		t.Errorf("master as served:\n%s", master)
	}

	// The audio playlist: behind the gate, rewritten like a video one.
	if r := e.get("/v1/videos/" + video + "/audio2/index.m3u8?v=1"); r.code != 401 {
		t.Errorf("audio playlist without a token: %d", r.code)
	}
	other := e.token(testenv.Name("other"), "someone", playback.NewSessionID(), time.Hour)
	if r := e.get(withToken("/v1/videos/"+video+"/audio2/index.m3u8?v=1", other)); r.code != 403 {
		t.Errorf("audio playlist with another video's token: %d", r.code)
	}
	r = e.get(media[0][2])
	if r.code != 200 {
		t.Fatalf("audio playlist: %d %s", r.code, r.body)
	}
	pl := string(r.body)
	if !strings.Contains(pl, `#EXT-X-KEY:METHOD=AES-128,URI="/v1/keys/`) || strings.Contains(pl, "\nseg_") {
		t.Fatalf("audio playlist as served:\n%s", pl)
	}

	// hls.js plays the title (its default audio rendition alongside the
	// video) in headless Chromium.
	page := e.ts.URL + "/watch/" + video + "?token=" + url.QueryEscape(e.token(video, testenv.Name("viewer"), playback.NewSessionID(), time.Hour))
	bctx, bcancel := context.WithTimeout(context.Background(), 2*time.Minute)
	b, err := exec.CommandContext(bctx, node, script, page).CombinedOutput()
	bcancel()
	t.Logf("play.mjs: %s", b)
	var played struct {
		Frames      int      `json:"frames"`
		CurrentTime float64  `json:"currentTime"`
		Problems    []string `json:"problems"`
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if jerr := json.Unmarshal([]byte(lines[len(lines)-1]), &played); jerr != nil || played.Frames == 0 || played.CurrentTime < 1.5 {
		t.Fatalf("browser playback of the two-audio title: %+v %v %v", played, err, jerr)
	}
	// hls.js 1.7 warns (non-fatal) that the first fragment of an alternate
	// audio track did not grow the buffer: its first AAC frame (encoder
	// priming) starts 21 ms before the video and is trimmed. Anything
	// else is a failure.
	for _, p := range played.Problems {
		if p != `hls.js error: {"type":"mediaError","details":"bufferAppendNoProgress","fatal":false,"code":null}` {
			t.Errorf("browser: %s", p)
		}
	}

	// Each language decodes through the gateway (keys, segments).
	ffmpeg, _ := testenv.FFmpeg(t)
	for _, m := range media {
		uri := m[2]
		if strings.HasPrefix(uri, "/") {
			uri = e.ts.URL + uri // the gateway's BASE_URL is empty here
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		cmd := exec.CommandContext(ctx, ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error",
			"-protocol_whitelist", "http,https,tcp,tls,crypto,hls", "-i", uri,
			"-map", "0:a:0", "-f", "null", "-progress", "pipe:1", "-")
		out, err := cmd.Output()
		cancel()
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		if err != nil || stderr != "" {
			t.Fatalf("ffmpeg %s: %v\n%s", m[1], err, redactToken(stderr))
		}
		var us int64
		sc := bufio.NewScanner(strings.NewReader(string(out)))
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "out_time_us="); ok {
				us, _ = strconv.ParseInt(v, 10, 64)
			}
		}
		if us < 2_800_000 {
			t.Errorf("%s decoded to %d µs through the gateway, want about 3 s", m[1], us)
		}
	}
}
