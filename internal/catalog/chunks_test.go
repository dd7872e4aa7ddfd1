package catalog

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
)

// TestChunkedCompletionCount: the pieces of a chunked attempt are counted
// done once each, whatever the deliveries, and only the delivery that
// completes the count (or a redelivery after it) sees every piece done;
// progress is the sum of the pieces'; a cancelled job refuses its pieces;
// deleting the video drops the attempt's wrapped keys.
func TestChunkedCompletionCount(t *testing.T) {
	ctx := context.Background()
	db := openTestDB(t)
	if _, _, err := db.UpsertJob(ctx, "ch1", "uploads/long.mp4", "t-ch1"); err != nil {
		t.Fatal(err)
	}
	a, err := db.StartAttempt(ctx, "t-ch1")
	if err != nil {
		t.Fatal(err)
	}
	cj := ChunkedJob{JobID: a.Job.ID, Version: a.Version, Plan: json.RawMessage(`{"x":1}`), Keys: periodKeys(40, 2),
		Pieces: []Piece{{Kind: PieceVideo, Media: 60}, {Kind: PieceVideo, Media: 40}, {Kind: PieceTitle}}, Duration: 100}
	if err := db.BeginChunked(ctx, cj); err != nil {
		t.Fatal(err)
	}
	got, err := db.LoadChunked(ctx, a.Job.ID, a.Version)
	if err != nil || len(got.Keys) != 2 || got.Keys[1].KeyID != cj.Keys[1].KeyID || len(got.Pieces) != 3 || got.Pieces[1].Media != 40 {
		t.Fatalf("load: %+v %v", got, err)
	}
	for piece := range 3 {
		ps, err := db.StartPiece(ctx, a.Job.ID, a.Version, piece)
		if err != nil || ps.Done || ps.Attempt != 1 {
			t.Fatalf("start piece %d: %+v %v", piece, ps, err)
		}
	}
	if err := db.PieceProgress(ctx, a.Job.ID, a.Version, 0, 30); err != nil {
		t.Fatal(err)
	}
	if j, _ := db.JobByTask(ctx, "t-ch1"); j.Progress != 30 {
		t.Errorf("progress %v after 30 s of 100, want 30", j.Progress)
	}
	result := json.RawMessage(`{"renditions":[]}`)
	for _, step := range []struct {
		piece int
		all   bool
	}{{0, false}, {0, false}, {2, false}, {1, true}, {1, true}} {
		all, err := db.FinishPiece(ctx, a.Job.ID, a.Version, step.piece, result)
		if err != nil || all != step.all {
			t.Fatalf("finish piece %d: all %v %v, want %v", step.piece, all, err, step.all)
		}
	}
	if ps, err := db.StartPiece(ctx, a.Job.ID, a.Version, 1); err != nil || !ps.Done || ps.Attempt != 1 {
		t.Errorf("a finished piece delivered again: %+v %v", ps, err)
	}
	if rs, err := db.PieceResults(ctx, a.Job.ID, a.Version); err != nil || len(rs) != 3 {
		t.Errorf("results %v %v", rs, err)
	}

	if _, err := db.CancelJobs(ctx, "ch1"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.StartPiece(ctx, a.Job.ID, a.Version, 0); !errors.Is(err, ErrCancelled) {
		t.Errorf("a piece of a cancelled job started: %v", err)
	}
	if err := db.CheckPiece(ctx, a.Job.ID, a.Version); !errors.Is(err, ErrCancelled) {
		t.Errorf("a piece of a cancelled job goes on: %v", err)
	}
	if _, err := db.DeleteVideo(ctx, "ch1"); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := db.pool.QueryRow(ctx, `select count(*) from chunk_keys where job_id = $1`, a.Job.ID).Scan(&n); err != nil || n != 0 {
		t.Errorf("wrapped chunk keys left after the video was deleted: %d %v", n, err)
	}
	if _, err := db.LoadChunked(ctx, a.Job.ID, a.Version); !errors.Is(err, ErrNotFound) {
		t.Errorf("load after delete: %v", err)
	}
}
