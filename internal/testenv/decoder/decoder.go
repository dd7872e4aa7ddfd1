// Package decoder gives tests the decoder Exec the worker uses.
package decoder

import (
	"testing"

	"github.com/hlsvault/hlsvault/internal/testenv"
	"github.com/hlsvault/hlsvault/internal/transcode"
)

// Exec returns the test machine's ffmpeg and ffprobe (testenv.FFmpeg) in
// the bwrap sandbox, the worker's default, failing the test when either
// or bubblewrap is missing.
func Exec(t testing.TB) *transcode.Exec {
	t.Helper()
	ff, fp := testenv.FFmpeg(t)
	x, err := transcode.NewExec(transcode.ExecConfig{Sandbox: transcode.SandboxBwrap, FFmpeg: ff, FFprobe: fp})
	if err != nil {
		t.Fatalf("decoder: %v (scripts/deps.sh installs bubblewrap)", err)
	}
	return x
}
