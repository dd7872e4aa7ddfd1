// Package player plays titles through the gateway in headless Chromium with
// the MSE players viewers use, hls.js and Shaka Player
// (e2e/browser/play.mjs --master, installed by `make deps`), for tests of
// any package that can start a gateway. One Chromium runs every player of
// a call, each in its own page.
//
// Like the rest of testenv, a missing node, Chromium or npm module fails
// the test (never skips it).
package player

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// Options parametrise a run: which players, how far playback must
// advance, and the switches a viewer makes.
type Options struct {
	Players []string // default hlsjs and shaka
	Seconds float64  // currentTime must pass this; default 1.5
	Audio   string   // switch to this audio language once playing ("" none)
	Text    string   // enable this subtitle language and require a shown cue
	// Start, when positive, seeks there once playing; playback must then
	// decode frames and pass Seconds (which should exceed it).
	Start float64
	// Page is the page to open (default the gateway's /watch page of the
	// master's video); its /player/*.js are replaced by the player's.
	Page string
}

// Track is an audio or text track as a player lists it.
type Track struct {
	Lang    string `json:"lang"`
	Name    string `json:"name"`
	Kind    string `json:"kind"`
	Default bool   `json:"default"`
}

// Result is one player's report.
type Result struct {
	OK            bool    `json:"ok"`
	Frames        int     `json:"frames"`
	Dropped       int     `json:"dropped"`
	CurrentTime   float64 `json:"currentTime"`
	Width         int     `json:"width"`
	Height        int     `json:"height"`
	AudioTracks   []Track `json:"audioTracks"`
	TextTracks    []Track `json:"textTracks"`
	ActiveAudio   string  `json:"activeAudio"`
	AudioSwitched bool    `json:"audioSwitched"`
	Cue           struct {
		Shown bool   `json:"shown"`
		Text  string `json:"text"`
		Lang  string `json:"lang"`
	} `json:"cue"`
	Steps    []string `json:"steps"`
	Notices  []string `json:"notices"`
	Problems []string `json:"problems"`
}

// Run plays masterURL (a gateway master URL with its token) in every
// requested player and returns the reports by player, without judging
// them (for tests that expect a failure); err is play.mjs's exit.
func Run(t testing.TB, masterURL string, opts Options) (map[string]Result, error) {
	t.Helper()
	node, script := Deps(t)
	if len(opts.Players) == 0 {
		opts.Players = []string{"hlsjs", "shaka"}
	}
	if opts.Seconds == 0 {
		opts.Seconds = 1.5
	}
	secs, _ := json.Marshal(opts.Seconds)
	args := []string{script, "--master", masterURL, "--players", strings.Join(opts.Players, ","), "--seconds", string(secs)}
	if opts.Start > 0 {
		start, _ := json.Marshal(opts.Start)
		args = append(args, "--start", string(start))
	}
	for flag, v := range map[string]string{"--audio": opts.Audio, "--text": opts.Text, "--page": opts.Page} {
		if v != "" {
			args = append(args, flag, v)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, node, args...).Output()
	var stderr []byte
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		stderr = ee.Stderr
	}
	t.Logf("play.mjs: %s%s", out, stderr)
	var res struct {
		Players map[string]Result `json:"players"`
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if jerr := json.Unmarshal([]byte(lines[len(lines)-1]), &res); jerr != nil {
		t.Fatalf("player: play.mjs: %v, its output: %v", err, jerr)
	}
	return res.Players, err
}

// Play is Run that fails the test unless every player decoded frames,
// advanced past opts.Seconds, made the requested switches and reported no
// error.
func Play(t testing.TB, masterURL string, opts Options) map[string]Result {
	t.Helper()
	res, err := Run(t, masterURL, opts)
	players := opts.Players
	if len(players) == 0 {
		players = []string{"hlsjs", "shaka"}
	}
	seconds := opts.Seconds
	if seconds == 0 {
		seconds = 1.5
	}
	failed := false
	for _, p := range players {
		r, ok := res[p]
		switch {
		case !ok:
			t.Errorf("player: %s: no report", p)
		case !r.OK || r.Frames == 0 || r.CurrentTime < seconds || len(r.Problems) > 0:
			t.Errorf("player: %s did not play: %+v", p, r)
		case opts.Audio != "" && !r.AudioSwitched:
			t.Errorf("player: %s did not switch to audio %s: %+v", p, opts.Audio, r)
		case opts.Text != "" && !r.Cue.Shown:
			t.Errorf("player: %s showed no %s cue: %+v", p, opts.Text, r)
		default:
			continue
		}
		failed = true
	}
	if err != nil && !failed {
		t.Errorf("player: play.mjs: %v, yet every player passed: %+v", err, res)
	}
	return res
}

// Deps returns node and play.mjs, failing the test when Chromium (CHROMIUM,
// default /usr/bin/chromium), node or the npm modules are missing.
func Deps(t testing.TB) (node, script string) {
	t.Helper()
	dir := Dir()
	script = filepath.Join(dir, "play.mjs")
	chromium := os.Getenv("CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	var err error
	if node, err = exec.LookPath("node"); err != nil {
		t.Fatalf("player: node not found (run `make deps`): %v", err)
	}
	if _, err := os.Stat(chromium); err != nil {
		t.Fatalf("player: chromium not found at %s (run `make deps`: apt-get install chromium): %v", chromium, err)
	}
	for _, p := range []string{script, HLSJS(),
		filepath.Join(dir, "node_modules", "shaka-player", "dist", "shaka-player.compiled.js"),
		filepath.Join(dir, "node_modules", "playwright-core", "package.json")} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("player: %s missing (run `make deps`: npm ci --prefix e2e/browser): %v", p, err)
		}
	}
	return node, script
}

// Dir is e2e/browser in this module.
func Dir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..", "e2e", "browser")
}

// HLSJS is hls.min.js, what a gateway's Config.PlayerScript names so that
// it serves the /watch page the players open.
func HLSJS() string {
	return filepath.Join(Dir(), "node_modules", "hls.js", "dist", "hls.min.js")
}
