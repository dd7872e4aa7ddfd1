package pipeline

// Chunked parallel transcoding (CHUNK_SECONDS).
//
// A transcode task whose source is long enough is the coordinator of its
// attempt: it downloads, probes, checks and plans as always, then begins
// the version with every key it will need (packager.BeginWhole), records
// the attempt in PostgreSQL (catalog.BeginChunked: the plan, the keys
// wrapped under the KEK, one row per piece) and enqueues one
// TypeTranscodePiece task per piece on its own queue, with a task id per
// attempt and piece, so that a second enqueue is refused. Pieces 0…n-1 are
// the video chunks (transcode.PlanChunks: whole segments, so every rung's
// boundaries are the unchunked encode's); piece n is the title piece: the
// whole title's audio in one encoder (no AAC priming gap at a seam) and the
// storyboard. A chunked title therefore always has the audio-group shape,
// one audio rendition for a one-track source.
//
// Any worker takes any piece: it resumes the version from the wrapped keys
// (packager.Resume: sealed, it makes no key, so the version has one key
// sequence), encodes its piece, encrypts and stores its segments (and
// I-frames) under the version, and records their durations, sizes and IVs
// in its row. Recording the result and counting the piece done is one
// transaction (catalog.FinishPiece); a delivery that finds every piece
// done enqueues the join (TypeTranscodeJoin, one task id per attempt).
// The join writes every media playlist and the master from the recorded
// segments and publishes in one transaction, as an unchunked attempt does.
//
// Retries are asynq's, per piece: a failed piece is retried alone, its
// objects named after its delivery (seg_00015_r2.ts) since stored objects
// are never overwritten; its last failure fails the job. A piece watches
// its job while it runs (catalog.CheckPiece, every ChunkWatch): once the
// job is cancelled, its video deleted or a newer attempt started, ffmpeg
// is stopped and the task archived; pieces still queued archive
// themselves when they start. Progress is the sum of the pieces'.
//
// Subtitles: the coordinator converts and checks them as always and
// records their cues in the plan; the join cuts them along the joined
// video segments (one WebVTT segment per video segment, their
// X-TIMESTAMP-MAP the first PTS chunk 0 measured) and stores them with
// packager.PutOnce, so that a join redelivered after its worker died
// writes the same bytes it stored before, as it does for the playlists.
//
// Not chunked: sources no longer than 1.5 chunks, and fMP4 jobs.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"golang.org/x/sync/errgroup"

	"github.com/hlsvault/hlsvault/internal/catalog"
	"github.com/hlsvault/hlsvault/internal/layout"
	"github.com/hlsvault/hlsvault/internal/packager"
	"github.com/hlsvault/hlsvault/internal/playlist"
	"github.com/hlsvault/hlsvault/internal/transcode"
	"github.com/hlsvault/hlsvault/jobs"
)

// ChunkWatch is how often a running piece checks that its job still wants
// it (not cancelled, not superseded).
const ChunkWatch = time.Second

// errFannedOut ends a coordinator's run: its pieces carry the attempt on.
var errFannedOut = errors.New("pipeline: attempt fanned out into pieces")

// chunkPlan is what the coordinator records for the pieces (the chunked
// attempt's plan column). No key is in it.
type chunkPlan struct {
	Source  string
	Prefix  string
	Preset  string
	Probe   *transcode.Probe
	Video   transcode.Plan // the ladder without audio
	Audio   []transcode.AudioRendition
	Chunks  []transcode.Chunk
	Trick   map[string]bool // renditions with an I-frame playlist
	Timeout time.Duration   // per piece
	// Subtitles are the job's subtitle tracks, cues on the published
	// timeline, which the join stores.
	Subtitles []chunkSubtitle `json:",omitempty"`
}

// chunkSubtitle is a subtitleTrack as the plan records it.
type chunkSubtitle struct {
	Name     string
	Language string `json:",omitempty"`
	Label    string
	Forced   bool `json:",omitempty"`
	Cues     []transcode.Cue
}

func chunkSubtitles(tracks []subtitleTrack) []chunkSubtitle {
	var out []chunkSubtitle
	for _, t := range tracks {
		out = append(out, chunkSubtitle{Name: t.name, Language: t.language, Label: t.label, Forced: t.forced, Cues: t.cues})
	}
	return out
}

func (cp *chunkPlan) subtitleTracks() []subtitleTrack {
	var out []subtitleTrack
	for _, t := range cp.Subtitles {
		out = append(out, subtitleTrack{name: t.Name, language: t.Language, label: t.Label, forced: t.Forced, cues: t.Cues})
	}
	return out
}

// titlePiece is the piece number of the audio and storyboard.
func (cp *chunkPlan) titlePiece() int { return len(cp.Chunks) }

// pieceResult is what a piece stored, recorded in its row for the join.
type pieceResult struct {
	Renditions []renditionResult  `json:"renditions"`
	Storyboard *catalog.Rendition `json:"storyboard,omitempty"`
}

type renditionResult struct {
	Name     string             `json:"name"`
	Codecs   string             `json:"codecs"`
	Segments []playlist.Segment `json:"segments"`
	IFrames  []playlist.Segment `json:"iframes,omitempty"`
	// FirstPTS is the 90 kHz PTS the piece's first segment starts at, nil
	// when it could not be read: chunk 0's is the title's, which the
	// subtitles' X-TIMESTAMP-MAP names.
	FirstPTS *int64 `json:"first_pts,omitempty"`
}

// chunksFor decides whether an attempt is chunked: the chunks of plan, or
// nil to encode it in one run.
func (p *Pipeline) chunksFor(log *slog.Logger, plan transcode.Plan) ([]transcode.Chunk, error) {
	if p.cfg.Chunk <= 0 || p.cfg.Enqueuer == nil {
		return nil, nil
	}
	chunks, err := transcode.PlanChunks(plan, p.cfg.Chunk)
	if err != nil || chunks == nil {
		return nil, err
	}
	// A piece stores what its run wrote as MPEG-TS segments; fMP4 pieces
	// would also need their init sections joined per key period.
	if plan.Segments.FMP4() {
		log.Info("not chunked: the job's segments are fMP4", "segments", plan.Segments)
		return nil, nil
	}
	return chunks, nil
}

// fanOut is the coordinator's part of a chunked attempt.
func (p *Pipeline) fanOut(ctx context.Context, log *slog.Logger, att catalog.Attempt, payload jobs.TranscodePayload,
	probe *transcode.Probe, plan transcode.Plan, preset string, chunks []transcode.Chunk, subs []subtitleTrack) error {
	cp := chunkPlan{Source: payload.Source, Prefix: att.Prefix, Preset: preset, Probe: probe, Video: plan.VideoOnly(),
		Audio: transcode.ChunkedAudio(plan, probe), Chunks: chunks, Trick: iframeRungs(plan.Renditions), Subtitles: chunkSubtitles(subs)}
	if err := checkIFrameNames(plan.Renditions, cp.Trick); err != nil {
		return badInput(err)
	}
	longest := probe.Duration - chunks[len(chunks)-1].Start
	if len(chunks) > 1 {
		longest = max(longest, chunks[1].Start)
	}
	cp.Timeout = p.cfg.TimeoutBase + time.Duration(p.cfg.TimeoutFactor*float64(max(longest, time.Duration(0))))
	pieces := make([]catalog.Piece, 0, len(chunks)+1)
	for i, c := range chunks {
		end := probe.Duration
		if i+1 < len(chunks) {
			end = chunks[i+1].Start
		}
		pieces = append(pieces, catalog.Piece{Kind: catalog.PieceVideo, Media: max(end-c.Start, 0).Seconds()})
	}
	// The title piece's encode is audio only: cheap next to the video, so
	// it counts for little in the progress.
	pieces = append(pieces, catalog.Piece{Kind: catalog.PieceTitle, Media: 0})

	v, err := p.pkg.BeginWhole(att.Prefix, p.cfg.KeyURITemplate, probe.Duration.Seconds())
	if err != nil {
		return fmt.Errorf("pipeline: %w", err)
	}
	wks, err := v.WrappedKeys()
	if err != nil {
		return fmt.Errorf("pipeline: %w", err)
	}
	b, err := json.Marshal(cp)
	if err != nil {
		return fmt.Errorf("pipeline: chunk plan: %w", err)
	}
	if err := p.db.BeginChunked(ctx, catalog.ChunkedJob{JobID: att.Job.ID, Version: att.Version, Plan: b, Keys: wks,
		Pieces: pieces, Duration: probe.Duration.Seconds()}); err != nil {
		return err
	}
	p.setStage(ctx, log, att.Job.ID, catalog.StageEncode)
	// The title piece first: it spans the whole title (the storyboard
	// decodes all of it), so with fewer workers than pieces it should not
	// be the one left running at the end.
	order := append([]int{cp.titlePiece()}, make([]int, len(chunks))...)
	for i := range chunks {
		order[i+1] = i
	}
	for _, i := range order {
		if err := p.enqueuePiece(ctx, jobs.TypeTranscodePiece, jobs.PiecePayload{JobID: att.Job.ID, Version: att.Version, Piece: i},
			cp.Timeout); err != nil {
			// The retry begins a new attempt; the pieces enqueued so far
			// find theirs gone.
			if derr := p.db.DropChunked(context.WithoutCancel(ctx), att.Job.ID, att.Version); derr != nil {
				log.Error("drop the chunked attempt", "err", derr)
			}
			return err
		}
	}
	log.Info("fanned out", "chunks", len(chunks), "chunk_seconds", p.cfg.Chunk.Seconds(), "audio_renditions", len(cp.Audio),
		"subtitles", len(subs))
	return errFannedOut
}

// enqueuePiece enqueues a piece or join task on the queue of the task
// running now, with its retries; a task id already taken is success (a
// redelivery enqueued it before).
func (p *Pipeline) enqueuePiece(ctx context.Context, typ string, pl jobs.PiecePayload, timeout time.Duration) error {
	b, err := json.Marshal(pl)
	if err != nil {
		return fmt.Errorf("pipeline: piece payload: %w", err)
	}
	opts := []asynq.Option{asynq.TaskID(pl.TaskID()), asynq.Timeout(timeout)}
	if q, ok := asynq.GetQueueName(ctx); ok {
		opts = append(opts, asynq.Queue(q))
	}
	if n, ok := asynq.GetMaxRetry(ctx); ok {
		opts = append(opts, asynq.MaxRetry(n))
	}
	_, err = p.cfg.Enqueuer.EnqueueContext(ctx, asynq.NewTask(typ, b), opts...)
	if err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
		return fmt.Errorf("pipeline: enqueue %s: %w", pl.TaskID(), err)
	}
	return nil
}

// PieceHandlers are the handlers of the chunked transcode's own tasks, to
// register next to the Pipeline itself (TypeTranscode) on every worker.
func (p *Pipeline) PieceHandlers() map[string]asynq.Handler {
	return map[string]asynq.Handler{
		jobs.TypeTranscodePiece: asynq.HandlerFunc(p.ProcessPiece),
		jobs.TypeTranscodeJoin:  asynq.HandlerFunc(p.ProcessJoin),
	}
}

// ProcessPiece is the asynq handler of TypeTranscodePiece.
func (p *Pipeline) ProcessPiece(ctx context.Context, t *asynq.Task) error {
	pl, err := jobs.ParsePiecePayload(t.Payload())
	if err != nil || pl.Piece < 0 {
		return fmt.Errorf("pipeline: refusing piece task: %v: %w", err, asynq.SkipRetry)
	}
	log := p.log.With("job", pl.JobID, "version", pl.Version, "piece", pl.Piece)
	ps, err := p.db.StartPiece(ctx, pl.JobID, pl.Version, pl.Piece)
	if err != nil {
		return p.endPiece(ctx, log, pl, err)
	}
	var result json.RawMessage // nil when an earlier delivery recorded it
	if !ps.Done {
		log = log.With("piece_attempt", ps.Attempt)
		start := time.Now()
		err = p.watched(ctx, pl, func(ctx context.Context) (err error) {
			result, err = p.runPiece(ctx, log, pl, ps.Attempt)
			return err
		})
		if err != nil {
			return p.endPiece(ctx, log, pl, err)
		}
		log.Info("piece stored", "seconds", time.Since(start).Seconds())
	}
	all, err := p.db.FinishPiece(ctx, pl.JobID, pl.Version, pl.Piece, result)
	if err != nil {
		return p.endPiece(ctx, log, pl, err)
	}
	if all {
		join := jobs.PiecePayload{JobID: pl.JobID, Version: pl.Version, Piece: -1}
		if err := p.enqueuePiece(ctx, jobs.TypeTranscodeJoin, join, p.cfg.TimeoutBase); err != nil {
			return p.endPiece(ctx, log, pl, err)
		}
		log.Info("every piece done; join enqueued")
	}
	return nil
}

// watched runs fn with a context cancelled once the job no longer wants
// the piece (its cause: catalog.ErrCancelled, ErrVideoDeleted or
// ErrSuperseded).
func (p *Pipeline) watched(ctx context.Context, pl jobs.PiecePayload, fn func(context.Context) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		tick := time.NewTicker(ChunkWatch)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				err := p.db.CheckPiece(ctx, pl.JobID, pl.Version)
				if errors.Is(err, catalog.ErrCancelled) || errors.Is(err, catalog.ErrVideoDeleted) ||
					errors.Is(err, catalog.ErrSuperseded) || errors.Is(err, catalog.ErrNotFound) {
					cancel(err)
					return
				}
			}
		}
	}()
	err := fn(ctx)
	if cause := context.Cause(ctx); err != nil && cause != nil && !errors.Is(cause, context.Canceled) {
		return fmt.Errorf("%w (%w)", cause, err)
	}
	return err
}

// endPiece turns a piece's or join's error into the task's outcome.
func (p *Pipeline) endPiece(ctx context.Context, log *slog.Logger, pl jobs.PiecePayload, err error) error {
	bg := context.WithoutCancel(ctx)
	drop := func() {
		if derr := p.db.DropChunked(bg, pl.JobID, pl.Version); derr != nil {
			log.Error("drop the chunked attempt", "err", derr)
		}
	}
	switch {
	case errors.Is(err, catalog.ErrCancelled) || errors.Is(err, catalog.ErrVideoDeleted):
		p.metrics.jobs.WithLabelValues("cancelled").Inc()
		log.Info("job cancelled; piece stopped", "err", err)
		if ferr := p.db.FinishCancelled(bg, pl.JobID); ferr != nil {
			log.Error("record the end of a cancelled attempt", "err", ferr)
		}
		drop()
		return fmt.Errorf("pipeline: %s: %w: %w", pl.TaskID(), err, asynq.SkipRetry)
	case errors.Is(err, catalog.ErrSuperseded) || errors.Is(err, catalog.ErrNotFound):
		// A newer attempt of the job (its coordinator ran again), or the
		// job ended: this attempt's rows and keys serve nobody.
		log.Info("the attempt is over; piece dropped", "err", err)
		drop()
		return fmt.Errorf("pipeline: %s: %w: %w", pl.TaskID(), err, asynq.SkipRetry)
	case errors.Is(err, context.Canceled):
		// Shutdown: asynq puts the task back; the job stays processing for
		// the pieces that go on.
		log.Warn("piece interrupted; requeued", "err", err)
		return err
	}
	retried, _ := asynq.GetRetryCount(ctx)
	maxRetry, _ := asynq.GetMaxRetry(ctx)
	final := errors.Is(err, ErrBadInput) || retried >= maxRetry
	msg := "piece failed"
	if pl.Piece < 0 {
		msg = "join failed"
	}
	log.Error(msg, "err", err, "retried", retried, "max_retry", maxRetry, "final", final)
	if !final {
		return err
	}
	p.metrics.jobs.WithLabelValues("failed").Inc()
	if ferr := p.db.FailAttempt(bg, pl.JobID, err.Error(), true); ferr != nil {
		log.Error("record failure", "err", ferr)
	}
	drop()
	return fmt.Errorf("%w: %w", err, asynq.SkipRetry)
}

// loadPiece reads the attempt's plan and resumes its version.
func (p *Pipeline) loadPiece(ctx context.Context, pl jobs.PiecePayload) (*chunkPlan, *packager.Version, error) {
	cj, err := p.db.LoadChunked(ctx, pl.JobID, pl.Version)
	if err != nil {
		return nil, nil, err
	}
	var cp chunkPlan
	if err := json.Unmarshal(cj.Plan, &cp); err != nil {
		return nil, nil, fmt.Errorf("pipeline: chunk plan of job %d v%d: %w", pl.JobID, pl.Version, err)
	}
	if cp.Probe == nil || pl.Piece > cp.titlePiece() {
		return nil, nil, badInput(fmt.Errorf("chunk plan of job %d v%d has no piece %d", pl.JobID, pl.Version, pl.Piece))
	}
	v, err := p.pkg.Resume(cp.Prefix, p.cfg.KeyURITemplate, cj.Keys)
	if err != nil {
		return nil, nil, fmt.Errorf("pipeline: %w", err)
	}
	return &cp, v, nil
}

// runPiece encodes and stores one piece, and returns its result.
func (p *Pipeline) runPiece(ctx context.Context, log *slog.Logger, pl jobs.PiecePayload, attempt int) (json.RawMessage, error) {
	cp, v, err := p.loadPiece(ctx, pl)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(p.cfg.TempDir, "hlsvault-piece-")
	if err != nil {
		return nil, fmt.Errorf("pipeline: cannot create the piece's temp dir in TMPDIR: %w", errors.Unwrap(err))
	}
	defer os.RemoveAll(dir)
	res, err := p.runPieceIn(ctx, log, dir, cp, v, pl, attempt)
	if err != nil {
		return nil, withoutPath(err, dir)
	}
	b, err := json.Marshal(res)
	if err != nil {
		return nil, fmt.Errorf("pipeline: piece result: %w", err)
	}
	return b, nil
}

func (p *Pipeline) runPieceIn(ctx context.Context, log *slog.Logger, dir string, cp *chunkPlan, v *packager.Version,
	pl jobs.PiecePayload, attempt int) (*pieceResult, error) {
	src := filepath.Join(dir, "source")
	if err := p.download(ctx, cp.Source, src); err != nil {
		return nil, err
	}
	out := filepath.Join(dir, "out")
	var (
		args    []string
		outs    []*renditionOutput
		start   float64 // media time of the piece's first segment
		media   = cp.Probe.Duration
		opt     = transcode.ArgsOptions{Preset: cp.Preset, MaxPixels: p.cfg.Limits.MaxPixels}
		res     pieceResult
		isTitle = pl.Piece == cp.titlePiece()
		err     error
	)
	if isTitle {
		if len(cp.Audio) > 0 {
			args, err = transcode.AudioArgs(cp.Video, cp.Audio, src, out, opt)
			outs = audioOutputs(transcode.Plan{Audio: cp.Audio})
		}
	} else {
		c := cp.Chunks[pl.Piece]
		args, err = transcode.ChunkArgs(cp.Video, c, src, out, opt)
		start = c.Start.Seconds()
		if !c.Last() {
			media = cp.Chunks[pl.Piece+1].Start - c.Start
		} else {
			media -= c.Start
		}
		for _, r := range cp.Video.Renditions {
			ro := &renditionOutput{rendition: r}
			if cp.Trick[r.Name] {
				ro.iframes = []playlist.Segment{}
			}
			outs = append(outs, ro)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("pipeline: %w", err)
	}
	if len(args) > 0 {
		runner := transcode.Runner{Exec: p.cfg.Exec, Logger: log, KillGrace: 2 * time.Second, Input: src, OutDir: out,
			MaxOutputBytes: 2*cp.Probe.Size + 1<<30}
		pr := &pieceProgress{p: p, ctx: ctx, pl: pl, log: log}
		started := time.Now()
		if err := runner.Run(ctx, args, pr.report); err != nil {
			if errors.Is(err, transcode.ErrInvalidInput) {
				return nil, badInput(err)
			}
			if ctx.Err() != nil {
				return nil, fmt.Errorf("pipeline: %w", context.Cause(ctx))
			}
			return nil, err
		}
		p.metrics.ffmpegDuration.Observe(time.Since(started).Seconds())
		if err := p.storePiece(ctx, v, out, outs, start, attempt); err != nil {
			return nil, err
		}
		if p.pieceHook != nil {
			if err := p.pieceHook(ctx, pl.Piece, attempt); err != nil {
				return nil, err
			}
		}
		if err := checkPieceOutputs(outs, media, isTitle); err != nil {
			return nil, err
		}
	}
	for _, r := range outs {
		rr := renditionResult{Name: r.rendition.Name, Codecs: r.codecs, Segments: r.segments, IFrames: r.iframes}
		if r.firstPTS >= 0 {
			rr.FirstPTS = &r.firstPTS
		}
		res.Renditions = append(res.Renditions, rr)
	}
	if isTitle {
		sb, err := p.makeStoryboard(ctx, log, dir, src, cp.Probe, v)
		if err != nil {
			return nil, err
		}
		res.Storyboard = sb
	}
	return &res, nil
}

// storePiece encrypts and stores every segment ffmpeg wrote for outs
// (and their I-frames), start being the media time of the first. A
// piece's second delivery names its objects seg_NNNNN_rA.ts: the first
// one's may be stored already, and objects are never overwritten.
func (p *Pipeline) storePiece(ctx context.Context, v *packager.Version, out string, outs []*renditionOutput, start float64, attempt int) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(p.cfg.UploadConcurrency)
	var mu sync.Mutex
	for _, r := range outs {
		dir := filepath.Join(out, r.rendition.Name)
		m, err := readPlaylist(filepath.Join(dir, layout.MediaPlaylist))
		if err != nil {
			return fmt.Errorf("pipeline: read ffmpeg playlist of %s: %w", r.rendition.Name, err)
		}
		if !m.Ended || len(m.Segments) == 0 {
			return fmt.Errorf("pipeline: ffmpeg playlist of %s is not complete", r.rendition.Name)
		}
		r.segments = make([]playlist.Segment, len(m.Segments))
		if r.iframes != nil {
			r.iframes = make([]playlist.Segment, len(m.Segments))
		}
		var startMs int64
		for i, s := range m.Segments {
			if s.URI != filepath.Base(s.URI) || !strings.HasSuffix(s.URI, ".ts") {
				return fmt.Errorf("pipeline: unexpected segment URI %q in ffmpeg playlist", s.URI)
			}
			ms, err := playlist.DurationMillis(s.Duration)
			if err != nil {
				return fmt.Errorf("pipeline: ffmpeg playlist of %s: segment %s: %w", r.rendition.Name, s.URI, err)
			}
			uri := s.URI
			if attempt > 1 {
				uri = strings.TrimSuffix(s.URI, ".ts") + "_r" + strconv.Itoa(attempt) + ".ts"
			}
			j := segmentJob{r: r, index: i, local: filepath.Join(dir, s.URI), uri: uri, duration: s.Duration,
				start: start + float64(startMs)/1000}
			startMs += ms
			g.Go(func() error { return p.uploadSegment(gctx, v, j, &mu) })
		}
	}
	return g.Wait()
}

// checkPieceOutputs holds a piece's renditions to one another and to the
// media the piece should have: the video rungs' segment boundaries must be
// the same (the seams, and hls.js's switching, rely on it).
func checkPieceOutputs(outs []*renditionOutput, media time.Duration, audio bool) error {
	if audio {
		return nil // checked against the video at the join
	}
	durs := func(r *renditionOutput) []float64 {
		out := make([]float64, len(r.segments))
		for i, s := range r.segments {
			out[i] = s.Duration
		}
		return out
	}
	first := durs(outs[0])
	var total float64
	for _, d := range first {
		total += d
	}
	for _, r := range outs[1:] {
		if !slices.Equal(durs(r), first) {
			return fmt.Errorf("pipeline: segment boundaries of %s differ from %s's", r.rendition.Name, outs[0].rendition.Name)
		}
	}
	if got := time.Duration(total * float64(time.Second)); math.Abs((got - media).Seconds()) > 1 {
		return fmt.Errorf("pipeline: the chunk's segments last %v, want %v", got, media)
	}
	return nil
}

// pieceProgress records a piece's progress at most once a second.
type pieceProgress struct {
	p    *Pipeline
	ctx  context.Context
	pl   jobs.PiecePayload
	log  *slog.Logger
	mu   sync.Mutex
	last time.Time
}

func (r *pieceProgress) report(pr transcode.Progress) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if time.Since(r.last) < time.Second {
		return
	}
	r.last = time.Now()
	if err := r.p.db.PieceProgress(r.ctx, r.pl.JobID, r.pl.Version, r.pl.Piece, pr.OutTime.Seconds()); err != nil && r.ctx.Err() == nil {
		r.log.Warn("progress update", "err", err)
	}
}

// ProcessJoin is the asynq handler of TypeTranscodeJoin: playlists from
// the pieces' results, then one Publish.
func (p *Pipeline) ProcessJoin(ctx context.Context, t *asynq.Task) error {
	pl, err := jobs.ParsePiecePayload(t.Payload())
	if err != nil || pl.Piece != -1 {
		return fmt.Errorf("pipeline: refusing join task: %v: %w", err, asynq.SkipRetry)
	}
	log := p.log.With("job", pl.JobID, "version", pl.Version)
	start := time.Now()
	published, err := p.join(ctx, log, pl)
	if err != nil {
		return p.endPiece(ctx, log, pl, err)
	}
	outcome := "published"
	if !published {
		outcome = "superseded"
	}
	p.metrics.jobs.WithLabelValues(outcome).Inc()
	log.Info("chunked job done", "outcome", outcome, "join_seconds", time.Since(start).Seconds())
	if err := p.db.DropChunked(context.WithoutCancel(ctx), pl.JobID, pl.Version); err != nil {
		log.Error("drop the chunked attempt", "err", err)
	}
	return nil
}

func (p *Pipeline) join(ctx context.Context, log *slog.Logger, pl jobs.PiecePayload) (bool, error) {
	if err := p.db.CheckPiece(ctx, pl.JobID, pl.Version); err != nil {
		return false, err
	}
	att, err := p.db.ChunkedAttempt(ctx, pl.JobID, pl.Version)
	if err != nil {
		return false, err
	}
	p.setStage(ctx, log, pl.JobID, catalog.StagePublish)
	cp, v, err := p.loadPiece(ctx, pl)
	if err != nil {
		return false, err
	}
	raw, err := p.db.PieceResults(ctx, pl.JobID, pl.Version)
	if err != nil {
		return false, err
	}
	res, sb, err := joinResults(cp, raw)
	if err != nil {
		return false, err
	}
	if err := checkCoverage(res, cp.Probe.Duration); err != nil {
		return false, err
	}
	subs, err := p.storeSubtitles(ctx, log, v, cp.subtitleTracks(), res.renditions[0])
	if err != nil {
		return false, err
	}
	plan := cp.Video
	plan.Audio = cp.Audio
	return p.publish(ctx, att, v, plan, res, subs, sb, cp.Probe.Duration)
}

// joinResults concatenates the video chunks' segments per rendition, in
// chunk order, and adds the title piece's audio; every video rendition
// must have the same segment boundaries.
func joinResults(cp *chunkPlan, raw []json.RawMessage) (*uploadResult, *catalog.Rendition, error) {
	if len(raw) != cp.titlePiece()+1 {
		return nil, nil, fmt.Errorf("pipeline: join: %d piece results for %d chunks", len(raw), len(cp.Chunks))
	}
	results := make([]pieceResult, len(raw))
	for i, b := range raw {
		if err := json.Unmarshal(b, &results[i]); err != nil {
			return nil, nil, fmt.Errorf("pipeline: join: piece %d: %w", i, err)
		}
	}
	res := &uploadResult{}
	for k, r := range cp.Video.Renditions {
		ro := &renditionOutput{rendition: r, firstPTS: -1}
		if cp.Trick[r.Name] {
			ro.iframes = []playlist.Segment{}
		}
		for i, pr := range results[:len(cp.Chunks)] {
			if k >= len(pr.Renditions) || pr.Renditions[k].Name != r.Name {
				return nil, nil, fmt.Errorf("pipeline: join: chunk %d has no rendition %s", i, r.Name)
			}
			rr := pr.Renditions[k]
			if want := cp.Chunks[i].FirstSegment; len(ro.segments) != want {
				return nil, nil, fmt.Errorf("pipeline: join: %s: chunk %d starts at segment %d, after %d", r.Name, i, want, len(ro.segments))
			}
			if i == 0 {
				ro.codecs = rr.Codecs
				if rr.FirstPTS != nil {
					ro.firstPTS = *rr.FirstPTS
				}
			}
			ro.segments = append(ro.segments, rr.Segments...)
			if ro.iframes != nil {
				ro.iframes = append(ro.iframes, rr.IFrames...)
			}
		}
		if k > 0 {
			a, b := res.renditions[0].segments, ro.segments
			if len(a) != len(b) {
				return nil, nil, fmt.Errorf("pipeline: join: %s has %d segments, %s %d", r.Name, len(b), res.renditions[0].rendition.Name, len(a))
			}
			for i := range a {
				if a[i].Duration != b[i].Duration {
					return nil, nil, fmt.Errorf("pipeline: join: segment %d lasts %v in %s, %v in %s", i, b[i].Duration, r.Name, a[i].Duration, res.renditions[0].rendition.Name)
				}
			}
		}
		res.renditions = append(res.renditions, ro)
	}
	title := results[cp.titlePiece()]
	audio := audioOutputs(transcode.Plan{Audio: cp.Audio})
	for k, ro := range audio {
		if k >= len(title.Renditions) || title.Renditions[k].Name != ro.rendition.Name {
			return nil, nil, fmt.Errorf("pipeline: join: the title piece has no rendition %s", ro.rendition.Name)
		}
		ro.codecs, ro.segments = title.Renditions[k].Codecs, title.Renditions[k].Segments
	}
	res.renditions = append(res.renditions, audio...)
	return res, title.Storyboard, nil
}
