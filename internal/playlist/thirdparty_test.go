package playlist

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/hlsvault/hlsvault/internal/testenv/hlscheck"
)

// TestGoldensPassThirdPartyParsers: every golden playlist this package's
// writers are pinned to (media, master, backfilled masters and media) passes
// hls-parser in strict mode and m3u8-parser without a warning, so a golden
// regenerated with -update cannot pin a playlist other parsers refuse. The
// inputs (ffmpeg's and legacy playlists) are not ours and are not checked.
func TestGoldensPassThirdPartyParsers(t *testing.T) {
	var files []string
	for _, pattern := range []string{filepath.Join(goldenDir, "*.golden.m3u8"), filepath.Join(backfillGoldenDir, "*.golden")} {
		m, err := filepath.Glob(pattern)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	if len(files) < 8 {
		t.Fatalf("found %d goldens: %v", len(files), files)
	}
	var b hlscheck.Batch
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		b.Add(filepath.Base(f), data)
	}
	b.Check(t)
}
