// Package pipeline is where transcoding, keys, playlists and storage meet:
// the asynq handler that turns one uploaded source into one published,
// encrypted HLS version.
//
// One job, in order: download the source into a private temp directory,
// probe it, check that its media reaches its declared duration (a cut
// upload is refused, never published short), plan the ladder, begin a
// version in the packager (a fresh content key), run one ffmpeg for the
// whole ladder, and, while ffmpeg is
// still encoding, hand each finished segment to the packager, which
// encrypts it in process (AES-128-CBC, a random IV per segment) and stores
// it under the attempt's own version prefix. Then write the playlists, and
// publish the version and its wrapped key in one database transaction. The
// plain segments are deleted as soon as they are stored, and the key exists
// only inside the packager's Version and, wrapped, in PostgreSQL.
//
// With Config.Chunk set, a long source is instead encoded in pieces that
// any worker takes and joined into one version (chunks.go).
package pipeline

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/hibiken/asynq"

	"github.com/hlsvault/hlsvault/internal/catalog"
	"github.com/hlsvault/hlsvault/internal/keys"
	"github.com/hlsvault/hlsvault/internal/packager"
	"github.com/hlsvault/hlsvault/internal/storage"
	"github.com/hlsvault/hlsvault/internal/transcode"
	"github.com/hlsvault/hlsvault/jobs"
)

// ErrBadInput marks a job that can never succeed: it is failed at once with
// its reason and not retried.
var ErrBadInput = errors.New("bad input")

// Config tunes the pipeline. Zero values take the defaults noted.
type Config struct {
	// Exec starts every ffmpeg and ffprobe of a job, in the decoder
	// sandbox (required).
	Exec    *transcode.Exec
	Ladder  transcode.Ladder // default transcode.DefaultLadder()
	Segment time.Duration    // target segment duration, default 4s
	Limits  transcode.Limits // default transcode.DefaultLimits()
	Preset  string           // x264 preset, default "veryfast"
	TempDir string           // default os.TempDir()
	// KeyURITemplate is the EXT-X-KEY URI with {key_id} in it, e.g.
	// "https://video.example.com/v1/keys/{key_id}".
	KeyURITemplate string
	// UploadConcurrency bounds parallel segment uploads, default 16.
	UploadConcurrency int
	// The deadline of one attempt is TimeoutBase + TimeoutFactor × the
	// source's duration (defaults 2m and 4).
	TimeoutBase   time.Duration
	TimeoutFactor float64
	// PollInterval is how often ffmpeg's playlists are read for finished
	// segments, default 250ms.
	PollInterval time.Duration
	// KeyPeriod is how much media one content key encrypts (KEY_PERIOD):
	// a version gets a new key every KeyPeriod of media; 0, one key per
	// version. Negative is refused.
	KeyPeriod time.Duration
	// SourceAttempts is how many attempts find the source object missing
	// before the job fails as bad input (default 3): a misconfigured or
	// not yet consistent store looks the same as a wrong name, so the
	// first misses are ordinary, retried failures.
	SourceAttempts int
	// Storyboard is the thumbnail storyboard's setting (off when zero).
	Storyboard StoryboardConfig
	// Segments is the segment container (SEGMENT_FORMAT), default
	// MPEG-TS; a job's own (jobs.TranscodeRequest.Segments) wins. A
	// Ladder with HEVC rungs needs fMP4 (New refuses it otherwise).
	Segments transcode.SegmentFormat
	// Chunk is how much media one chunk of a chunked transcode encodes
	// (CHUNK_SECONDS, see chunks.go); 0 disables chunking. Enqueuer
	// enqueues the pieces (required for chunking).
	Chunk    time.Duration
	Enqueuer *asynq.Client
}

// DefaultSourceAttempts is Config.SourceAttempts' default.
const DefaultSourceAttempts = 3

func (c *Config) setDefaults() {
	if len(c.Ladder) == 0 {
		c.Ladder = transcode.DefaultLadder()
	}
	if c.Segment <= 0 {
		c.Segment = 4 * time.Second
	}
	if c.Limits == (transcode.Limits{}) {
		c.Limits = transcode.DefaultLimits()
	}
	if c.Preset == "" {
		c.Preset = "veryfast"
	}
	if c.TempDir == "" {
		c.TempDir = os.TempDir()
	}
	if c.UploadConcurrency <= 0 {
		c.UploadConcurrency = 16
	}
	if c.TimeoutBase <= 0 {
		c.TimeoutBase = 2 * time.Minute
	}
	if c.TimeoutFactor <= 0 {
		c.TimeoutFactor = 4
	}
	if c.PollInterval <= 0 {
		c.PollInterval = 250 * time.Millisecond
	}
	if c.SourceAttempts <= 0 {
		c.SourceAttempts = DefaultSourceAttempts
	}
}

// Pipeline handles TypeTranscode tasks.
type Pipeline struct {
	cfg     Config
	store   storage.Store
	db      *catalog.DB
	log     *slog.Logger
	metrics *Metrics
	pkg     *packager.Packager

	// Injected in tests for deterministic output; read on every use.
	newKey   func() (keys.ContentKey, error)
	newKeyID func() (string, error)
	newIV    func(name string) ([16]byte, error) // name relative to the version prefix
	// stageHook, if set, is called after each stage is recorded (tests).
	stageHook func(jobID int64, stage catalog.JobStage)
	// storyboardHook, if set, runs on the storyboard's sprite directory
	// once ffmpeg made it; an error fails the pass (tests).
	storyboardHook func(dir string) error
	// pieceHook, if set, runs after a chunk piece stored its segments; an
	// error fails the piece (tests).
	pieceHook func(ctx context.Context, piece, attempt int) error
	// publishHook, if set, runs once the playlists are written, before
	// the publishing transaction; an error fails the attempt or the join
	// (tests).
	publishHook func(ctx context.Context) error
}

// New builds a Pipeline. The keyring's primary KEK wraps new keys.
func New(cfg Config, store storage.Store, db *catalog.DB, keyring *keys.Keyring, log *slog.Logger, m *Metrics) (*Pipeline, error) {
	cfg.setDefaults()
	if !strings.Contains(cfg.KeyURITemplate, "{key_id}") {
		return nil, fmt.Errorf("pipeline: KEY_URI_TEMPLATE %q has no {key_id}", cfg.KeyURITemplate)
	}
	if keyring == nil {
		return nil, errors.New("pipeline: no key-encryption key configured")
	}
	if cfg.KeyPeriod < 0 {
		return nil, fmt.Errorf("pipeline: negative key period %v", cfg.KeyPeriod)
	}
	if cfg.Exec == nil {
		return nil, errors.New("pipeline: no decoder Exec configured")
	}
	if err := cfg.Ladder.CheckSegments(cfg.Segments); err != nil {
		return nil, fmt.Errorf("pipeline: %w", err)
	}
	if m == nil {
		m = NewMetrics(nil)
	}
	p := &Pipeline{cfg: cfg, store: store, db: db, log: log, metrics: m,
		newKey: keys.NewContentKey, newKeyID: keys.NewKeyID, newIV: packager.RandomIV}
	p.pkg = packager.New(store, keyring, packager.Options{
		Concurrency: cfg.UploadConcurrency,
		KeyPeriod:   cfg.KeyPeriod,
		NewKey:      func() (keys.ContentKey, error) { return p.newKey() },
		NewKeyID:    func() (string, error) { return p.newKeyID() },
		NewIV:       func(name string) ([16]byte, error) { return p.newIV(name) },
	})
	return p, nil
}

// ProcessTask implements asynq.Handler for TypeTranscode.
func (p *Pipeline) ProcessTask(ctx context.Context, t *asynq.Task) error {
	start := time.Now()
	payload, err := jobs.ParseTranscodePayload(t.Payload())
	if err != nil {
		p.metrics.jobs.WithLabelValues("failed").Inc()
		p.log.Error("refusing task", "err", err)
		return fmt.Errorf("%w: %w", err, asynq.SkipRetry)
	}
	// The job is named by its content, as jobs.Client names the task, so a
	// task enqueued some other way still maps to one job.
	taskID := jobs.TaskID(payload.VideoID, payload.Source)
	log := p.log.With("task", taskID, "video", payload.VideoID)

	att, err := p.db.StartAttempt(ctx, taskID)
	if errors.Is(err, catalog.ErrNotFound) {
		// Enqueued without the jobs client (e.g. straight through asynq):
		// record the job now.
		req := catalog.JobRequest{Metadata: payload.Metadata, Options: catalog.JobOptions{
			Ladder: payload.Ladder, Preset: payload.Preset, Priority: string(payload.Priority), Segments: payload.Segments,
			Subtitles: jobSubtitles(payload.Subtitles)}}
		if _, _, err = p.db.UpsertJobWith(ctx, payload.VideoID, payload.Source, taskID, req); err == nil {
			att, err = p.db.StartAttempt(ctx, taskID)
		}
	}
	if errors.Is(err, catalog.ErrAlreadyPublished) {
		log.Info("job already published; duplicate delivery ignored", "version", att.Job.Version)
		return nil
	}
	if errors.Is(err, catalog.ErrCancelled) || errors.Is(err, catalog.ErrVideoDeleted) {
		// Archived, never retried: the job was cancelled (or its video
		// deleted) before this delivery started.
		p.metrics.jobs.WithLabelValues("cancelled").Inc()
		log.Info("job cancelled; nothing to do", "err", err)
		return fmt.Errorf("pipeline: %s: %w: %w", taskID, err, asynq.SkipRetry)
	}
	if err != nil {
		return err
	}
	log = log.With("version", att.Version, "attempt", att.Job.Attempts)
	log.Info("job started", "source", payload.Source)

	published, err := p.run(ctx, log, att, payload)
	if errors.Is(err, errFannedOut) {
		log.Info("job fanned out into pieces", "seconds", time.Since(start).Seconds())
		return nil
	}
	elapsed := time.Since(start)
	p.metrics.jobDuration.Observe(elapsed.Seconds())
	bg := context.WithoutCancel(ctx)
	cancelled, overtaken := false, false
	if err != nil {
		// However the attempt ended (its context cancelled by
		// inspector.CancelProcessing, ffmpeg killed, Publish refused), a job
		// cancelled in the catalog is not a failure and not requeued; and a
		// job a newer attempt has started since (enqueued again right after
		// a cancel, a duplicate delivery) belongs to that attempt.
		state, attempts, serr := p.db.JobState(bg, att.Job.ID)
		if serr != nil {
			log.Error("read job state", "err", serr)
		}
		cancelled = state == catalog.Cancelled || errors.Is(err, catalog.ErrCancelled) || errors.Is(err, catalog.ErrVideoDeleted)
		overtaken = serr == nil && attempts != att.Job.Attempts
	}
	switch {
	case err == nil:
		outcome := "published"
		if !published {
			outcome = "superseded"
		}
		p.metrics.jobs.WithLabelValues(outcome).Inc()
		log.Info("job done", "outcome", outcome, "seconds", elapsed.Seconds())
		return nil
	case overtaken:
		p.metrics.jobs.WithLabelValues("superseded").Inc()
		log.Warn("attempt ended after a newer attempt of the job started; the job is left to it", "err", err)
		return err
	case cancelled:
		// Every write of the attempt has stopped: garbage collection may now
		// purge its version.
		p.metrics.jobs.WithLabelValues("cancelled").Inc()
		log.Info("job cancelled; nothing published", "seconds", elapsed.Seconds(), "err", err)
		if ferr := p.db.FinishCancelled(bg, att.Job.ID); ferr != nil {
			log.Error("record the end of a cancelled attempt", "err", ferr)
		}
		return fmt.Errorf("pipeline: %s cancelled: %w", taskID, asynq.SkipRetry)
	case errors.Is(err, context.Canceled):
		// Shutdown or cancellation: the task goes back to the queue; the
		// job is queued again, not failed.
		p.metrics.jobs.WithLabelValues("requeued").Inc()
		log.Warn("job interrupted; requeued", "err", err)
		if rerr := p.db.Requeue(bg, att.Job.ID); rerr != nil {
			log.Error("requeue", "err", rerr)
		}
		return err
	case errors.Is(err, ErrBadInput):
		p.metrics.jobs.WithLabelValues("failed").Inc()
		log.Warn("job failed: bad input", "err", err)
		if ferr := p.db.FailAttempt(bg, att.Job.ID, err.Error(), true); ferr != nil {
			log.Error("record failure", "err", ferr)
		}
		return fmt.Errorf("%w: %w", err, asynq.SkipRetry)
	default:
		retried, _ := asynq.GetRetryCount(ctx)
		maxRetry, _ := asynq.GetMaxRetry(ctx)
		final := retried >= maxRetry
		outcome := "retry"
		if final {
			outcome = "failed"
		}
		p.metrics.jobs.WithLabelValues(outcome).Inc()
		log.Error("job attempt failed", "err", err, "retried", retried, "max_retry", maxRetry, "final", final)
		if ferr := p.db.FailAttempt(bg, att.Job.ID, err.Error(), final); ferr != nil {
			log.Error("record failure", "err", ferr)
		}
		return err
	}
}

func badInput(err error) error {
	if errors.Is(err, ErrBadInput) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrBadInput, err)
}

// jobDirToken stands for the job's temp directory in errors that leave
// the handler (jobs.error, asynq, logs): a local path tells the creator of
// a video nothing, and an attacker where the worker keeps its files.
const jobDirToken = "<job>"

// pathFreeError is an error whose message names no local path; it still
// unwraps to the original, so errors.Is sees ErrBadInput, a cancellation
// or asynq.SkipRetry as before.
type pathFreeError struct {
	msg string
	err error
}

func (e *pathFreeError) Error() string { return e.msg }
func (e *pathFreeError) Unwrap() error { return e.err }

// withoutPath replaces dir (and so every path under it) with jobDirToken
// in err's message.
func withoutPath(err error, dir string) error {
	if err == nil || dir == "" || !strings.Contains(err.Error(), dir) {
		return err
	}
	return &pathFreeError{msg: strings.ReplaceAll(err.Error(), dir, jobDirToken), err: err}
}

// run does one attempt. It reports whether the version became current.
// Its error names no path of the job's temp directory.
func (p *Pipeline) run(ctx context.Context, log *slog.Logger, att catalog.Attempt, payload jobs.TranscodePayload) (bool, error) {
	dir, err := os.MkdirTemp(p.cfg.TempDir, "hlsvault-job-")
	if err != nil {
		log.Error("cannot create the job's temp dir", "err", err)
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the reason, without TMPDIR's path
		}
		return false, fmt.Errorf("pipeline: cannot create the job's temp dir in TMPDIR: %w", err)
	}
	defer os.RemoveAll(dir)
	published, err := p.runIn(ctx, log, dir, att, payload)
	return published, withoutPath(err, dir)
}

// runIn does the attempt in the private directory dir (0700): the source
// is dir/source (0600), ffmpeg's output dir/out.
func (p *Pipeline) runIn(ctx context.Context, log *slog.Logger, dir string, att catalog.Attempt, payload jobs.TranscodePayload) (bool, error) {
	src := filepath.Join(dir, "source")
	p.setStage(ctx, log, att.Job.ID, catalog.StageDownload)
	if err := p.download(ctx, payload.Source, src); err != nil {
		return false, err
	}
	p.setStage(ctx, log, att.Job.ID, catalog.StageProbe)
	probe, err := transcode.ProbeFile(ctx, p.cfg.Exec, src, p.cfg.Limits)
	if err != nil {
		if errors.Is(err, transcode.ErrInvalidInput) {
			return false, badInput(err)
		}
		return false, err
	}
	// The container's declared duration is not proof that the media is
	// there: an upload cut short keeps a fast-start MP4's moov intact.
	integrity, err := transcode.CheckIntegrity(ctx, p.cfg.Exec, src, probe, p.cfg.Limits)
	if err != nil {
		if errors.Is(err, transcode.ErrInvalidInput) {
			return false, badInput(err)
		}
		return false, err
	}
	log.Debug("source integrity", "declared_seconds", integrity.Declared.Seconds(), "video_end_seconds", integrity.VideoEnd.Seconds(),
		"audio_end_seconds", integrity.AudioEnd.Seconds(), "packets", integrity.Packets)
	if err := p.detectScan(ctx, log, src, probe); err != nil {
		return false, err
	}
	subs, err := p.prepareSubtitles(ctx, log, dir, src, probe, payload)
	if err != nil {
		return false, err
	}
	// The job's own ladder and preset (jobs.TranscodeRequest) override the
	// worker's.
	ladder, preset := p.cfg.Ladder, cmp.Or(payload.Preset, p.cfg.Preset)
	if payload.Ladder != "" {
		if ladder, err = transcode.ParseLadder(payload.Ladder); err != nil {
			return false, badInput(err)
		}
	}
	plan, err := transcode.PlanLadder(probe, ladder, p.cfg.Segment)
	if err != nil {
		return false, badInput(err)
	}
	if plan.Segments, err = p.segmentFormat(payload, ladder); err != nil {
		return false, badInput(err)
	}
	log.Info("planned ladder", "preset", preset, "duration_seconds", probe.Duration.Seconds(), "renditions", len(plan.Renditions), "audio", plan.HasAudio,
		"deinterlace", plan.Deinterlace, "tonemap", plan.ToneMap != nil, "fps", plan.FrameRate.String(), "audio_renditions", len(plan.Audio),
		"segments", plan.Segments)
	if plan.AudioIgnored > 0 {
		log.Warn("audio streams over the limit are ignored", "ignored", plan.AudioIgnored, "limit", transcode.MaxAudioRenditions)
	}

	if chunks, err := p.chunksFor(log, plan); err != nil || chunks != nil {
		if err != nil {
			return false, badInput(err)
		}
		return false, p.fanOut(ctx, log, att, payload, probe, plan, preset, chunks, subs)
	}

	timeout := p.cfg.TimeoutBase + time.Duration(p.cfg.TimeoutFactor*float64(probe.Duration))
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	v, err := p.pkg.Begin(att.Prefix, p.cfg.KeyURITemplate)
	if err != nil {
		return false, fmt.Errorf("pipeline: %w", err)
	}
	out := filepath.Join(dir, "out")
	if err := os.Mkdir(out, 0o700); err != nil {
		return false, fmt.Errorf("pipeline: %w", err)
	}
	res, err := p.transcodeAndUpload(ctx, log, att, plan, preset, src, probe.Size, out, v)
	if err != nil {
		return false, err
	}
	if err := checkCoverage(res, probe.Duration); err != nil {
		return false, err
	}
	sb, err := p.makeStoryboard(ctx, log, dir, src, probe, v)
	if err != nil {
		return false, err
	}
	subOut, err := p.storeSubtitles(ctx, log, v, subs, res.renditions[0])
	if err != nil {
		return false, err
	}
	p.setStage(ctx, log, att.Job.ID, catalog.StagePublish)
	return p.publish(ctx, att, v, plan, res, subOut, sb, probe.Duration)
}

// checkCoverage holds what ffmpeg made to the source's duration before any
// playlist exists, or the creator's video would be published short.
func checkCoverage(res *uploadResult, duration time.Duration) error {
	for _, r := range res.renditions {
		var total float64
		for _, s := range r.segments {
			total += s.Duration
		}
		got := time.Duration(total * float64(time.Second))
		if err := transcode.CheckOutputDuration(r.rendition.Name, got, duration); err != nil {
			return badInput(err)
		}
	}
	return nil
}

// publish writes the version's playlists and publishes it, with its
// wrapped keys and the storyboard sb (if any), in one transaction: the
// one-run and the chunked path's last step.
func (p *Pipeline) publish(ctx context.Context, att catalog.Attempt, v *packager.Version, plan transcode.Plan,
	res *uploadResult, subs []subtitleOutput, sb *catalog.Rendition, duration time.Duration) (bool, error) {
	master, renditions, err := p.writePlaylists(ctx, v, plan, res, subs)
	if err != nil {
		return false, err
	}
	if sb != nil {
		renditions = append(renditions, *sb)
	}
	if p.publishHook != nil {
		if err := p.publishHook(ctx); err != nil {
			return false, err
		}
	}
	wks, err := v.WrappedKeys()
	if err != nil {
		return false, fmt.Errorf("pipeline: %w", err)
	}
	return p.db.Publish(ctx, catalog.PublishParams{
		Attempt: att, Master: master, Renditions: renditions, Duration: duration.Seconds(), Keys: wks,
	})
}

// setStage records the attempt's stage. A failure to record it is logged,
// not fatal: the stage informs the operator, and a catalog that cannot be
// written fails the attempt at publish anyway.
func (p *Pipeline) setStage(ctx context.Context, log *slog.Logger, jobID int64, stage catalog.JobStage) {
	if err := p.db.SetStage(ctx, jobID, stage); err != nil && ctx.Err() == nil {
		log.Warn("stage update", "stage", stage, "err", err)
	}
	if p.stageHook != nil {
		p.stageHook(jobID, stage)
	}
}

// detectScan sets probe.Video.Scan from the content (idet), since the
// field order flag can lie. When the content cannot be measured (a
// timeout, a decoder error that the transcode will then report) the flag's
// verdict stands: the check refines the plan, it does not gate the job.
func (p *Pipeline) detectScan(ctx context.Context, log *slog.Logger, src string, probe *transcode.Probe) error {
	r, err := transcode.DetectScan(ctx, p.cfg.Exec, src, probe, p.cfg.Limits)
	if err != nil {
		if ctx.Err() != nil {
			return err
		}
		log.Warn("interlace check failed; following the field order flag", "flag", r.Flag, "err", withoutPath(err, filepath.Dir(src)))
		return nil
	}
	probe.Video.Scan = r.Scan
	log.Info("interlace check", "flag", r.Flag, "scan", r.Scan, "from_content", r.Content,
		"tff", r.Counts.TFF, "bff", r.Counts.BFF, "progressive", r.Counts.Progressive, "undetermined", r.Counts.Undetermined)
	return nil
}

// download copies the source object into path, refusing more than the size
// limit.
func (p *Pipeline) download(ctx context.Context, name, path string) error {
	rc, err := p.store.Get(ctx, name)
	if errors.Is(err, storage.ErrNotFound) {
		// Retried (an ordinary error) until the SourceAttempts-th attempt
		// or the task's last one, then bad input.
		retried, _ := asynq.GetRetryCount(ctx)
		maxRetry, ok := asynq.GetMaxRetry(ctx)
		attempt := retried + 1
		if attempt < p.cfg.SourceAttempts && (!ok || retried < maxRetry) {
			// No store location: the error reaches the job's creator.
			return fmt.Errorf("pipeline: source object %q not found in storage (attempt %d of %d before it fails as bad input)",
				name, attempt, p.cfg.SourceAttempts)
		}
		return badInput(fmt.Errorf("source object %q not found in storage (%d attempts)", name, attempt))
	}
	if err != nil {
		return fmt.Errorf("pipeline: download source: %w", err)
	}
	defer rc.Close()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("pipeline: download source: %w", err)
	}
	n, err := io.Copy(f, io.LimitReader(rc, p.cfg.Limits.MaxBytes+1))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("pipeline: download source: %w", err)
	}
	if n > p.cfg.Limits.MaxBytes {
		return badInput(fmt.Errorf("source is larger than the %d-byte limit", p.cfg.Limits.MaxBytes))
	}
	p.metrics.downloadedBytes.Add(float64(n))
	return nil
}

// progressReporter writes progress to the catalog at most once a second.
type progressReporter struct {
	p        *Pipeline
	ctx      context.Context
	jobID    int64
	duration time.Duration
	mu       sync.Mutex
	last     time.Time
	lastPct  float64
}

func (r *progressReporter) report(pr transcode.Progress) {
	if r.duration <= 0 {
		return
	}
	pct := 100 * float64(pr.OutTime) / float64(r.duration)
	pct = min(max(pct, 0), 99) // 100 means published
	r.mu.Lock()
	defer r.mu.Unlock()
	if time.Since(r.last) < time.Second || pct-r.lastPct < 0.5 {
		return
	}
	r.last, r.lastPct = time.Now(), pct
	if err := r.p.db.SetProgress(r.ctx, r.jobID, float64(int(pct*10))/10); err != nil && r.ctx.Err() == nil {
		r.p.log.Warn("progress update", "err", err)
	}
}
