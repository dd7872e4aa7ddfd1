package gateway

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// playOptions parametrise e2e/browser/play.mjs --master: which players,
// how far playback must advance, and the switches a viewer makes.
type playOptions struct {
	Players []string // default hlsjs and shaka
	Seconds float64  // default 1.5
	Audio   string   // switch to this audio language once playing ("" none)
	Text    string   // enable this subtitle language and require a shown cue
}

// playerTrack is an audio or text track as a player lists it.
type playerTrack struct {
	Lang    string `json:"lang"`
	Name    string `json:"name"`
	Kind    string `json:"kind"`
	Default bool   `json:"default"`
}

// playerResult is one player's report from play.mjs.
type playerResult struct {
	OK            bool          `json:"ok"`
	Frames        int           `json:"frames"`
	Dropped       int           `json:"dropped"`
	CurrentTime   float64       `json:"currentTime"`
	Width         int           `json:"width"`
	Height        int           `json:"height"`
	AudioTracks   []playerTrack `json:"audioTracks"`
	TextTracks    []playerTrack `json:"textTracks"`
	ActiveAudio   string        `json:"activeAudio"`
	AudioSwitched bool          `json:"audioSwitched"`
	Cue           struct {
		Shown bool   `json:"shown"`
		Text  string `json:"text"`
	} `json:"cue"`
	Notices  []string `json:"notices"`
	Problems []string `json:"problems"`
}

// playPlayers plays masterURL in every requested MSE player in one
// headless Chromium and fails the test unless each decoded frames, advanced
// past opts.Seconds, made the requested switches and reported no error. It
// returns the reports by player for further assertions (resolution,
// tracks).
func playPlayers(t *testing.T, masterURL string, opts playOptions) map[string]playerResult {
	t.Helper()
	node, script := playerDeps(t)
	if len(opts.Players) == 0 {
		opts.Players = []string{"hlsjs", "shaka"}
	}
	if opts.Seconds == 0 {
		opts.Seconds = 1.5
	}
	args := []string{script, "--master", masterURL, "--players", strings.Join(opts.Players, ","),
		"--seconds", jsonNumber(opts.Seconds)}
	if opts.Audio != "" {
		args = append(args, "--audio", opts.Audio)
	}
	if opts.Text != "" {
		args = append(args, "--text", opts.Text)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, node, args...).Output()
	var stderr []byte
	if ee, ok := err.(*exec.ExitError); ok {
		stderr = ee.Stderr
	}
	t.Logf("play.mjs: %s%s", out, stderr)
	var res struct {
		OK       bool                    `json:"ok"`
		Players  map[string]playerResult `json:"players"`
		Problems []string                `json:"problems"`
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if jerr := json.Unmarshal([]byte(lines[len(lines)-1]), &res); jerr != nil {
		t.Fatalf("play.mjs: %v, output: %v", err, jerr)
	}
	for _, p := range opts.Players {
		r, ok := res.Players[p]
		switch {
		case !ok:
			t.Errorf("%s: no report", p)
		case !r.OK || r.Frames == 0 || r.CurrentTime < opts.Seconds || len(r.Problems) > 0:
			t.Errorf("%s did not play: %+v", p, r)
		case opts.Audio != "" && !r.AudioSwitched:
			t.Errorf("%s did not switch to audio %s: %+v", p, opts.Audio, r)
		case opts.Text != "" && !r.Cue.Shown:
			t.Errorf("%s showed no %s cue: %+v", p, opts.Text, r)
		}
	}
	if err != nil && !t.Failed() {
		t.Errorf("play.mjs: %v, yet every player passed: %+v", err, res)
	}
	return res.Players
}

func jsonNumber(f float64) string {
	b, _ := json.Marshal(f)
	return string(b)
}

// playerDeps returns node and play.mjs, failing the test (never skipping
// it) when Chromium, node or the npm modules (hls.js, Shaka Player,
// playwright-core) are missing.
func playerDeps(t *testing.T) (node, script string) {
	t.Helper()
	node, script, _ = browserDeps(t)
	shaka := filepath.Join(repoRoot(t), "e2e", "browser", "node_modules", "shaka-player", "dist", "shaka-player.compiled.js")
	if _, err := os.Stat(shaka); err != nil {
		t.Fatalf("%s missing (run `make deps`: npm ci --prefix e2e/browser): %v", shaka, err)
	}
	return node, script
}
