package backfill

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hlsvault/hlsvault/internal/catalog"
	"github.com/hlsvault/hlsvault/internal/storage"
)

// TestBackfillSkipsDeletedVideo: a title whose video was deleted (enqueue
// delete) is skipped with the reason, never converted and never retried;
// the run finishes and the other title is converted.
func TestBackfillSkipsDeletedVideo(t *testing.T) {
	fs, err := storage.NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, fs)
	ctx := context.Background()
	uploadLegacy(t, fs, "legacy/", "dk1="+titleFMP4, "dk2="+titleFMP4)
	if _, _, err := h.db.UpsertJob(ctx, "dk2", "uploads/dk2.mp4", "transcode-dk2-x"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.db.DeleteVideo(ctx, "dk2"); err != nil {
		t.Fatal(err)
	}
	res := h.start(StartOptions{IDs: []string{"dk1", "dk2"}})
	h.startWorker()
	st := h.waitRun(res.Run.ID, 2*time.Minute, catalog.RunDone)
	if st.Done != 1 || st.Failed != 0 {
		t.Fatalf("status: %+v", st)
	}
	skipped, err := h.db.BackfillItems(ctx, res.Run.ID, catalog.ItemSkipped)
	if err != nil || len(skipped) != 1 || skipped[0].VideoID != "dk2" || !strings.Contains(skipped[0].Error, "deleted") || skipped[0].Attempts > 1 {
		t.Fatalf("skipped items: %+v %v", skipped, err)
	}
	if _, err := h.db.CurrentVersion(ctx, "dk2"); !errors.Is(err, catalog.ErrNotFound) {
		t.Fatalf("deleted video got a version: %v", err)
	}
	if n, _ := h.db.VersionStates(ctx, "dk2"); len(n) != 0 {
		t.Fatalf("deleted video's versions: %v", n)
	}
	h.checkConverted("dk1", "legacy/dk1/index.m3u8")
}
