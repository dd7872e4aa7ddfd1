package backfill

import (
	"testing"
	"time"

	"github.com/hlsvault/hlsvault/internal/pipeline"
	"github.com/hlsvault/hlsvault/internal/testenv/decoder"
	"github.com/hlsvault/hlsvault/internal/transcode"
)

// newTestPipeline builds the transcode handler for --retranscode tests: one
// small rung, ultrafast.
func newTestPipeline(t *testing.T, h *harness) *pipeline.Pipeline {
	t.Helper()
	ladder, err := transcode.ParseLadder("144p:150k:64k")
	if err != nil {
		t.Fatal(err)
	}
	p, err := pipeline.New(pipeline.Config{Exec: decoder.Exec(t), Ladder: ladder, Segment: time.Second, Preset: "ultrafast",
		TempDir: t.TempDir(), KeyURITemplate: keyURITemplate, PollInterval: 50 * time.Millisecond}, h.store, h.db, h.keyring, h.log, nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
