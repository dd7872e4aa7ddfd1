package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hlsvault/hlsvault/internal/testenv"
	"github.com/hlsvault/hlsvault/internal/testenv/decoder"
	"github.com/hlsvault/hlsvault/internal/transcode"
)

// TestSandboxedCPU: an ffmpeg in the bwrap sandbox burns CPU that its
// own ProcessState does not show (the sandbox's pid 1 is never reaped by
// bwrap); runFFmpeg reports it, as the same encode outside the sandbox
// costs, within a wide margin (a shared machine).
func TestSandboxedCPU(t *testing.T) {
	dir := t.TempDir()
	src := testenv.MakeSource(t, dir, testenv.Source{Width: 320, Height: 240, Seconds: 2})
	if err := becomeSubreaper(); err != nil {
		t.Fatal(err)
	}
	args := []string{"-hide_banner", "-nostdin", "-loglevel", "error", "-i", "file:" + src,
		"-vf", "scale=640:480", "-c:v", "libx264", "-preset", "medium", "-f", "null", "-"}
	sandboxed := &bench{exec: decoder.Exec(t)}
	ff, fp := testenv.FFmpeg(t)
	plain, err := transcode.NewExec(transcode.ExecConfig{Sandbox: transcode.SandboxNone, FFmpeg: ff, FFprobe: fp})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// What the sandbox hides from the process's own rusage.
	cmd, err := sandboxed.exec.Command(ctx, transcode.FFmpeg, args, []string{src}, []string{dir})
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	own := (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds()

	_, inSandbox, err := sandboxed.runFFmpeg(ctx, args, src, dir)
	if err != nil {
		t.Fatal(err)
	}
	_, outside, err := (&bench{exec: plain}).runFFmpeg(ctx, args, src, dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("CPU: sandboxed ffmpeg's own rusage %.3fs, runFFmpeg %.3fs in the sandbox, %.3fs outside", own, inSandbox, outside)
	if outside < 0.2 || inSandbox < outside/2 || inSandbox > outside*2 {
		t.Errorf("runFFmpeg CPU %.3fs in the sandbox, %.3fs outside: want them alike", inSandbox, outside)
	}
	if own > outside/2 {
		t.Logf("this bwrap reaps its pid 1 (own rusage %.3fs): the orphan path is not exercised", own)
	}
}

// TestBenchSRT: the generated sidecar is SubRip to the pipeline's sniffer,
// and ffmpeg converts it to one WebVTT cue every two seconds.
func TestBenchSRT(t *testing.T) {
	data := benchSRT(20, "Réplique")
	if f, err := transcode.SniffSubtitle(data); err != nil || f != transcode.SubtitleSRT {
		t.Fatalf("sniffed %q, %v", f, err)
	}
	dir := t.TempDir()
	in, out := filepath.Join(dir, "s.srt"), filepath.Join(dir, "s.vtt")
	if err := os.WriteFile(in, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := transcode.ConvertSubtitle(context.Background(), decoder.Exec(t), transcode.SidecarArgs(transcode.SubtitleSRT, in, out), in, out, transcode.DefaultLimits()); err != nil {
		t.Fatal(err)
	}
	vtt, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	cues, err := transcode.ParseVTT(vtt)
	if err != nil || len(cues) != 10 || cues[9].Start != 18200*time.Millisecond || cues[9].End != 19700*time.Millisecond || !strings.HasPrefix(cues[9].Text, "Réplique 10") {
		t.Fatalf("cues %+v %v", cues, err)
	}
}

// TestTrickPlayRungs: the default ladder's rungs at most 720 lines tall,
// as the pipeline chooses them; a ladder of tall rungs keeps its lowest.
func TestTrickPlayRungs(t *testing.T) {
	rs := []transcode.Rendition{{Name: "1080p", Height: 1080}, {Name: "720p", Height: 720}, {Name: "480p", Height: 480}, {Name: "360p", Height: 360}}
	if got := strings.Join(trickPlayRungs(rs), ","); got != "720p,480p,360p" {
		t.Errorf("got %s", got)
	}
	if got := strings.Join(trickPlayRungs(rs[:1]), ","); got != "1080p" {
		t.Errorf("1080p only: got %s", got)
	}
}
