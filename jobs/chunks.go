package jobs

import (
	"encoding/json"
	"fmt"
)

// Chunked transcoding: a TypeTranscode task for a long source fans out
// into one TypeTranscodePiece task per chunk of video and one for the
// whole title's audio, on its own queue, and the piece that completes the
// attempt enqueues its TypeTranscodeJoin. These tasks are the worker's
// own: an upload service enqueues TypeTranscode only.
const (
	// TypeTranscodePiece encodes, encrypts and stores one piece.
	TypeTranscodePiece = "hls:transcode-piece"
	// TypeTranscodeJoin writes the playlists of a chunked attempt and
	// publishes it.
	TypeTranscodeJoin = "hls:transcode-join"
)

// PiecePayload names a piece of a chunked attempt (TypeTranscodePiece),
// or with Piece -1 the attempt itself (TypeTranscodeJoin). It carries
// nothing else: plan and keys are read from PostgreSQL, so no key is
// ever in Redis.
type PiecePayload struct {
	JobID   int64 `json:"job_id"`
	Version int   `json:"version"`
	Piece   int   `json:"piece"`
}

// ParsePiecePayload decodes and checks a piece or join payload.
func ParsePiecePayload(b []byte) (PiecePayload, error) {
	var p PiecePayload
	if err := json.Unmarshal(b, &p); err != nil {
		return p, fmt.Errorf("jobs: piece payload: %w", err)
	}
	if p.JobID <= 0 || p.Version <= 0 || p.Piece < -1 {
		return p, fmt.Errorf("jobs: piece payload %+v is not valid", p)
	}
	return p, nil
}

// TaskID is the asynq task id of the piece (or join): one per attempt and
// piece, so that a second enqueue of the same piece is refused.
func (p PiecePayload) TaskID() string {
	if p.Piece < 0 {
		return fmt.Sprintf("join-%d-v%d", p.JobID, p.Version)
	}
	return fmt.Sprintf("piece-%d-v%d-%d", p.JobID, p.Version, p.Piece)
}
