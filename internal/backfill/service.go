package backfill

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/hibiken/asynq"

	"github.com/hlsvault/hlsvault/internal/catalog"
	"github.com/hlsvault/hlsvault/internal/keys"
	"github.com/hlsvault/hlsvault/internal/packager"
	"github.com/hlsvault/hlsvault/internal/storage"
	"github.com/hlsvault/hlsvault/jobs"
)

// Config tunes the worker side. Zero values take the defaults noted.
type Config struct {
	// Queues: batches and ticks go to Queues.Background; a batch yields
	// while Queues.Transcode has fresh uploads waiting. Default
	// jobs.QueueNames("").
	Queues jobs.Queues
	// KeyURITemplate is the EXT-X-KEY URI with {key_id}, as for the
	// pipeline.
	KeyURITemplate string
	// Concurrency bounds the segment streams of one title (default 16).
	Concurrency int
	// TickInterval is how often a running run is checked on (default 1m).
	TickInterval time.Duration
	// BatchTimeout is asynq's hard limit for one batch task (default 2h);
	// TitleTimeout bounds one title inside it (default 30m).
	BatchTimeout time.Duration
	TitleTimeout time.Duration
	// MaxRetry is asynq's retry count for batch and tick tasks (default 5).
	MaxRetry int
	// MaxAttempts bounds the attempts of one title before it is failed
	// (default 3). Broken titles fail at once.
	MaxAttempts int
	// NoYield disables the check for waiting fresh uploads between titles.
	NoYield bool
	// KeyPeriod is KEY_PERIOD, as for the pipeline: re-encrypted titles get
	// a new key every KeyPeriod of media; 0, one key per version.
	KeyPeriod time.Duration
}

func (c *Config) setDefaults() {
	if c.Queues == (jobs.Queues{}) {
		c.Queues = jobs.QueueNames("")
	}
	if c.Concurrency <= 0 {
		c.Concurrency = defaultConcurrency
	}
	if c.TickInterval <= 0 {
		c.TickInterval = time.Minute
	}
	if c.BatchTimeout <= 0 {
		c.BatchTimeout = 2 * time.Hour
	}
	if c.TitleTimeout <= 0 {
		c.TitleTimeout = 30 * time.Minute
	}
	if c.MaxRetry <= 0 {
		c.MaxRetry = 5
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 3
	}
}

// Service handles the backfill tasks in the worker.
type Service struct {
	cfg       Config
	store     storage.Store
	db        *catalog.DB
	keyring   *keys.Keyring
	log       *slog.Logger
	conv      *Converter
	pkg       *packager.Packager
	client    *asynq.Client
	inspector *asynq.Inspector
	jobs      *jobs.Client // re-transcodes, on the background queue

	// Injected in tests.
	newKey   func() (keys.ContentKey, error)
	newKeyID func() (string, error)
}

// New builds the Service. The keyring's primary KEK wraps new keys; its
// retired KEKs may still unwrap the keys of versions being re-keyed. Close
// it when done.
func New(cfg Config, store storage.Store, db *catalog.DB, keyring *keys.Keyring, redis asynq.RedisConnOpt, log *slog.Logger) (*Service, error) {
	cfg.setDefaults()
	if !strings.Contains(cfg.KeyURITemplate, "{key_id}") {
		return nil, fmt.Errorf("backfill: KEY_URI_TEMPLATE %q has no {key_id}", cfg.KeyURITemplate)
	}
	if keyring == nil {
		return nil, errors.New("backfill: no key-encryption key configured")
	}
	if cfg.KeyPeriod < 0 {
		return nil, fmt.Errorf("backfill: negative key period %v", cfg.KeyPeriod)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "backfill")
	jc, err := jobs.New(db.Pool(), redis, jobs.ClientConfig{Queues: cfg.Queues, Queue: cfg.Queues.Background, Log: log})
	if err != nil {
		return nil, fmt.Errorf("backfill: %w", err)
	}
	s := &Service{
		cfg: cfg, store: store, db: db, keyring: keyring, log: log,
		conv:      &Converter{Store: store, Concurrency: cfg.Concurrency},
		client:    asynq.NewClient(redis),
		inspector: asynq.NewInspector(redis),
		jobs:      jc,
		newKey:    keys.NewContentKey, newKeyID: keys.NewKeyID,
	}
	s.pkg = packager.New(store, keyring, packager.Options{
		Concurrency: cfg.Concurrency,
		KeyPeriod:   cfg.KeyPeriod,
		NewKey:      func() (keys.ContentKey, error) { return s.newKey() },
		NewKeyID:    func() (string, error) { return s.newKeyID() },
	})
	return s, nil
}

// Close releases the Redis connections.
func (s *Service) Close() error {
	return errors.Join(s.client.Close(), s.inspector.Close(), s.jobs.Close())
}

// Register adds the backfill handlers to mux.
func (s *Service) Register(mux *asynq.ServeMux) {
	mux.HandleFunc(TypeBatch, s.HandleBatch)
	mux.HandleFunc(TypeTick, s.HandleTick)
}

// Recover schedules a tick for every running run, so that runs continue
// even if their tick chain was lost with Redis' data. The worker calls it
// once at start.
func (s *Service) Recover(ctx context.Context) error {
	runs, err := s.db.RunningBackfillRuns(ctx)
	if err != nil {
		return err
	}
	for _, r := range runs {
		if err := s.scheduleTick(ctx, r.ID, 0); err != nil {
			return err
		}
	}
	if len(runs) > 0 {
		s.log.Info("backfill runs resumed", "runs", len(runs))
	}
	return nil
}

// scheduleTick enqueues the run's tick in delay. A tick already scheduled
// for that slot makes this a no-op.
func (s *Service) scheduleTick(ctx context.Context, runID int64, delay time.Duration) error {
	return enqueueTick(ctx, s.client, s.cfg.Queues.Background, runID, delay, s.cfg.TickInterval, s.cfg.MaxRetry)
}

func enqueueTick(ctx context.Context, c *asynq.Client, queue string, runID int64, delay, every time.Duration, maxRetry int) error {
	t, err := newTickTask(runID)
	if err != nil {
		return err
	}
	_, err = c.EnqueueContext(ctx, t, asynq.Queue(queue), asynq.TaskID(tickTaskID(runID, time.Now().Add(delay), every)),
		asynq.ProcessIn(delay), asynq.Timeout(max(every, time.Minute)), asynq.MaxRetry(maxRetry))
	if err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
		return fmt.Errorf("backfill: schedule tick of run %d: %w", runID, err)
	}
	return nil
}

// HandleTick drives a run: it schedules batches, recovers lost ones and
// reschedules itself while the run is running.
func (s *Service) HandleTick(ctx context.Context, t *asynq.Task) error {
	var p TickPayload
	if err := json.Unmarshal(t.Payload(), &p); err != nil || p.RunID <= 0 {
		return fmt.Errorf("backfill: bad tick payload: %v: %w", err, asynq.SkipRetry)
	}
	run, err := s.pump(ctx, p.RunID)
	if errors.Is(err, catalog.ErrNotFound) {
		return fmt.Errorf("backfill: tick: %w: %w", err, asynq.SkipRetry)
	}
	if err != nil {
		return err
	}
	if run.State != catalog.RunRunning {
		return nil // paused, cancelled or done: resume and retry-failed schedule a new tick
	}
	if err := s.recoverBatches(ctx, run.ID); err != nil {
		return err
	}
	return s.scheduleTick(ctx, run.ID, s.cfg.TickInterval)
}

// pump schedules the next batches of a run and enqueues them.
func (s *Service) pump(ctx context.Context, runID int64) (catalog.BackfillRun, error) {
	before, err := s.db.BackfillRunByID(ctx, runID)
	if err != nil {
		return before, err
	}
	run, batches, err := s.db.ScheduleBackfillBatches(ctx, runID)
	if err != nil {
		return run, err
	}
	for _, b := range batches {
		if err := s.enqueueBatch(ctx, b); err != nil {
			// The tick finds the batch again.
			s.log.Warn("enqueue batch", "run", runID, "batch", b.Batch, "err", err)
		}
	}
	if before.State == catalog.RunRunning && run.State == catalog.RunDone {
		p, _ := s.db.BackfillProgressOf(ctx, runID)
		s.log.Info("backfill run done", "run", runID, "done", p.Counts[catalog.ItemDone],
			"failed", p.Counts[catalog.ItemFailed], "skipped", p.Counts[catalog.ItemSkipped], "bytes", p.BytesDone)
	}
	return run, nil
}

func (s *Service) enqueueBatch(ctx context.Context, b catalog.BackfillBatch) error {
	t, err := newBatchTask(BatchPayload{RunID: b.RunID, Batch: b.Batch, Items: b.Items})
	if err != nil {
		return err
	}
	_, err = s.client.EnqueueContext(ctx, t, asynq.Queue(s.cfg.Queues.Background), asynq.TaskID(batchTaskID(b.RunID, b.Batch)),
		asynq.Timeout(s.cfg.BatchTimeout), asynq.MaxRetry(s.cfg.MaxRetry))
	if err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
		return err
	}
	return nil
}

// recoverBatches re-enqueues the outstanding batches whose task is gone:
// deleted with Redis' data, archived after its retries, or completed by a
// worker that could not record the items' outcome.
func (s *Service) recoverBatches(ctx context.Context, runID int64) error {
	batches, err := s.db.OutstandingBackfillBatches(ctx, runID)
	if err != nil {
		return err
	}
	for _, b := range batches {
		id := batchTaskID(runID, b.Batch)
		info, err := s.inspector.GetTaskInfo(s.cfg.Queues.Background, id)
		switch {
		case err == nil && info.State != asynq.TaskStateArchived && info.State != asynq.TaskStateCompleted:
			continue // pending, scheduled, retrying or running
		case err == nil:
			if err := s.inspector.DeleteTask(s.cfg.Queues.Background, id); err != nil && !errors.Is(err, asynq.ErrTaskNotFound) {
				return fmt.Errorf("backfill: free task id %s: %w", id, err)
			}
		case !errors.Is(err, asynq.ErrTaskNotFound) && !errors.Is(err, asynq.ErrQueueNotFound):
			return fmt.Errorf("backfill: inspect %s: %w", id, err)
		}
		s.log.Warn("re-enqueuing a lost batch", "run", runID, "batch", b.Batch, "items", len(b.Items))
		if err := s.enqueueBatch(ctx, b); err != nil {
			return fmt.Errorf("backfill: re-enqueue batch %d of run %d: %w", b.Batch, runID, err)
		}
	}
	return nil
}

// errRetryItems makes asynq retry a batch whose items hit transient errors.
var errRetryItems = errors.New("backfill: some titles hit transient errors and will be retried")

// HandleBatch converts the titles of one batch, one after another.
func (s *Service) HandleBatch(ctx context.Context, t *asynq.Task) error {
	var p BatchPayload
	if err := json.Unmarshal(t.Payload(), &p); err != nil || p.RunID <= 0 {
		return fmt.Errorf("backfill: bad batch payload: %v: %w", err, asynq.SkipRetry)
	}
	log := s.log.With("run", p.RunID, "batch", p.Batch)
	run, err := s.db.BackfillRunByID(ctx, p.RunID)
	if errors.Is(err, catalog.ErrNotFound) {
		return fmt.Errorf("backfill: %w: %w", err, asynq.SkipRetry)
	}
	if err != nil {
		return err
	}
	var opts RunOptions
	if err := json.Unmarshal(run.Options, &opts); err != nil {
		return fmt.Errorf("backfill: run %d options: %w: %w", run.ID, err, asynq.SkipRetry)
	}
	retry := 0
	var stopErr error
	for _, id := range p.Items {
		if ctx.Err() != nil {
			stopErr = ctx.Err()
			break
		}
		if s.freshUploadsWaiting() {
			n, err := s.db.ReleaseBackfillBatch(ctx, p.RunID, p.Batch)
			if err != nil {
				return err
			}
			log.Info("yielding to fresh uploads", "released", n)
			break
		}
		it, err := s.db.ClaimBackfillItem(ctx, p.RunID, p.Batch, id, s.cfg.MaxAttempts)
		switch {
		case errors.Is(err, catalog.ErrRunNotRunning):
			n, err := s.db.ReleaseBackfillBatch(ctx, p.RunID, p.Batch)
			if err != nil {
				return err
			}
			log.Info("run is not running; batch released", "released", n)
			return nil
		case errors.Is(err, catalog.ErrItemNotClaimable):
			continue
		case err != nil:
			return err
		}
		if it.State != catalog.ItemRunning {
			log.Warn("title failed", "video", it.VideoID, "reason", it.Error)
			continue
		}
		again, err := s.processItem(ctx, log.With("video", it.VideoID), run, opts, it)
		if err != nil {
			stopErr = err
			break
		}
		if again {
			retry++
		}
	}
	bg := context.WithoutCancel(ctx)
	if stopErr == nil {
		if _, err := s.pump(ctx, p.RunID); err != nil {
			log.Warn("schedule next batches", "err", err)
		}
		if err := s.scheduleTick(bg, p.RunID, s.cfg.TickInterval); err != nil {
			log.Warn("schedule tick", "err", err)
		}
	}
	if stopErr != nil {
		return stopErr
	}
	if retry > 0 {
		return fmt.Errorf("%w (%d)", errRetryItems, retry)
	}
	return nil
}

// freshUploadsWaiting reports whether fresh uploads wait on a transcode
// queue (any priority), in which case a batch hands its remaining titles back.
func (s *Service) freshUploadsWaiting() bool {
	if s.cfg.NoYield {
		return false
	}
	for _, name := range []string{s.cfg.Queues.TranscodeHigh, s.cfg.Queues.Transcode, s.cfg.Queues.TranscodeLow} {
		if q, err := s.inspector.GetQueueInfo(name); err == nil && q.Pending > 0 {
			return true
		}
	}
	return false
}

// processItem converts one claimed title. It returns again=true when the
// title hit a transient error and waits for the batch's retry, and an error
// only when the batch must stop (its context is done).
func (s *Service) processItem(parent context.Context, log *slog.Logger, run catalog.BackfillRun, opts RunOptions,
	it catalog.BackfillItem) (again bool, err error) {
	ctx, cancel := context.WithTimeout(parent, s.cfg.TitleTimeout)
	defer cancel()
	bg := context.WithoutCancel(parent)
	finish := func(o catalog.BackfillOutcome) {
		if err := s.db.FinishBackfillItem(bg, it.ID, o); err != nil {
			log.Error("record title outcome", "err", err)
		}
	}
	if opts.Retranscode {
		return s.retranscode(ctx, parent, log, opts, it, finish)
	}

	taskID := jobTaskID(run.ID, it.VideoID)
	st, err := s.db.PrepareBackfillJob(ctx, it.VideoID, it.Legacy, taskID, opts.RekeyBefore)
	var att catalog.Attempt
	if err == nil {
		att, err = s.db.StartAttempt(ctx, taskID)
	}
	switch {
	case errors.Is(err, catalog.ErrAlreadyPublished):
		j := st.Job
		if att.Job.ID != 0 {
			j = att.Job
		}
		log.Info("title already converted by this run", "version", j.Version)
		finish(catalog.BackfillOutcome{State: catalog.ItemDone, JobID: j.ID, Version: j.Version})
		return false, nil
	case errors.Is(err, catalog.ErrVideoDeleted) || errors.Is(err, catalog.ErrCancelled):
		skipDeleted(log, st.Job.ID, err, finish)
		return false, nil
	case errors.Is(err, catalog.ErrHasKey):
		log.Info("title skipped: it has a key", "reason", err)
		// PrepareBackfillJob reports the current version in st.Expected.
		finish(catalog.BackfillOutcome{State: catalog.ItemSkipped,
			Error: fmt.Sprintf("already has a key: title already has a key (version %d)", st.Expected)})
		return false, nil
	case err != nil:
		return s.transient(parent, log, it, 0, err)
	}
	log = log.With("version", att.Version, "attempt", att.Job.Attempts)
	start := time.Now()
	res, published, err := s.convert(ctx, log, att, st, it, opts)
	switch {
	case err == nil && published:
		secs := time.Since(start).Seconds()
		log.Info("title re-encrypted and published", "segments", res.Segments, "objects", res.Objects, "bytes", res.PlainBytes,
			"encrypt_seconds", res.EncryptTime.Seconds(), "seconds", secs, "mb_per_s", float64(res.PlainBytes)/1e6/max(secs, 1e-9))
		finish(catalog.BackfillOutcome{State: catalog.ItemDone, JobID: att.Job.ID, Version: att.Version,
			Bytes: res.PlainBytes, Segments: res.Segments})
		return false, nil
	case err == nil:
		log.Info("title superseded: the video changed while it was converted")
		finish(catalog.BackfillOutcome{State: catalog.ItemSkipped, JobID: att.Job.ID,
			Error: "superseded: the video got a new version while it was re-encrypted"})
		return false, nil
	case errors.Is(err, catalog.ErrVideoDeleted) || errors.Is(err, catalog.ErrCancelled):
		skipDeleted(log, att.Job.ID, err, finish)
		return false, nil
	case errors.Is(err, ErrAlreadyEncrypted):
		log.Info("title skipped", "reason", err)
		if ferr := s.db.FailAttempt(bg, att.Job.ID, err.Error(), true); ferr != nil {
			log.Error("record failure", "err", ferr)
		}
		finish(catalog.BackfillOutcome{State: catalog.ItemSkipped, JobID: att.Job.ID, Error: err.Error()})
		return false, nil
	case IsBroken(err):
		log.Warn("title is broken", "reason", err)
		if ferr := s.db.FailAttempt(bg, att.Job.ID, err.Error(), true); ferr != nil {
			log.Error("record failure", "err", ferr)
		}
		finish(catalog.BackfillOutcome{State: catalog.ItemFailed, JobID: att.Job.ID, Error: err.Error()})
		return false, nil
	default:
		return s.transient(parent, log, it, att.Job.ID, err)
	}
}

// skipDeleted finishes a title whose video was deleted (enqueue delete) or
// whose job was cancelled: nothing may be published for it, and no retry
// changes that.
func skipDeleted(log *slog.Logger, jobID int64, err error, finish func(catalog.BackfillOutcome)) {
	log.Info("title skipped: its video was deleted or its job cancelled", "reason", err)
	finish(catalog.BackfillOutcome{State: catalog.ItemSkipped, JobID: jobID,
		Error: "deleted: the video was deleted or its job cancelled; nothing is published"})
}

// ConvertNow re-encrypts one legacy title synchronously, outside any run,
// through the same steps as a batch: a backfill job, an attempt with its
// own version, the conversion and its verification, the compare-and-swap
// publish. It reports whether the version became current. For tools and
// benchmarks; operators use runs.
func (s *Service) ConvertNow(ctx context.Context, videoID, legacy string) (*Result, bool, error) {
	taskID := fmt.Sprintf("backfill-now-%s-%d", videoID, time.Now().UnixNano())
	st, err := s.db.PrepareBackfillJob(ctx, videoID, legacy, taskID, time.Time{})
	if err != nil {
		return nil, false, err
	}
	att, err := s.db.StartAttempt(ctx, taskID)
	if err != nil {
		return nil, false, err
	}
	res, published, err := s.convert(ctx, s.log.With("video", videoID, "version", att.Version), att, st,
		catalog.BackfillItem{VideoID: videoID, Legacy: legacy}, RunOptions{})
	if err != nil {
		if ferr := s.db.FailAttempt(context.WithoutCancel(ctx), att.Job.ID, err.Error(), true); ferr != nil {
			s.log.Error("record failure", "err", ferr)
		}
		return nil, false, err
	}
	return res, published, nil
}

// transient records an error that a later attempt may not meet. An
// interruption (shutdown) puts the title back without counting the attempt
// and stops the batch.
func (s *Service) transient(parent context.Context, log *slog.Logger, it catalog.BackfillItem, jobID int64, err error) (bool, error) {
	bg := context.WithoutCancel(parent)
	if parent.Err() != nil {
		log.Warn("title interrupted; requeued", "err", err)
		if jobID != 0 {
			if rerr := s.db.Requeue(bg, jobID); rerr != nil {
				log.Error("requeue job", "err", rerr)
			}
		}
		if rerr := s.db.RequeueBackfillItem(bg, it.ID, "", false); rerr != nil {
			log.Error("requeue title", "err", rerr)
		}
		return false, parent.Err()
	}
	log.Warn("title attempt failed; will retry", "err", err, "attempt", it.Attempts, "max_attempts", s.cfg.MaxAttempts)
	if jobID != 0 {
		if ferr := s.db.FailAttempt(bg, jobID, err.Error(), false); ferr != nil {
			log.Error("record failure", "err", ferr)
		}
	}
	if rerr := s.db.RequeueBackfillItem(bg, it.ID, err.Error(), true); rerr != nil {
		log.Error("requeue title", "err", rerr)
	}
	return true, nil
}

// convert re-encrypts one title under a fresh key into the attempt's prefix
// and publishes it. It reports whether the version became current.
func (s *Service) convert(ctx context.Context, log *slog.Logger, att catalog.Attempt, st catalog.BackfillStart,
	it catalog.BackfillItem, opts RunOptions) (*Result, bool, error) {
	src := Source{Playlist: it.Legacy, URLMap: opts.URLMap}
	if st.Expected > 0 {
		// Re-key: the source is the current version, under its own key.
		v, err := s.db.VersionWithKey(ctx, it.VideoID, st.Expected)
		if err != nil {
			return nil, false, err
		}
		src = Source{Playlist: v.Master, KeyIDs: v.KeyIDs(), Keys: map[string]keys.ContentKey{}, URLMap: opts.URLMap}
		for _, k := range v.Keys {
			old, err := s.keyring.Unwrap(k.KEKID, k.KeyID, k.Wrapped)
			if err != nil {
				return nil, false, err
			}
			src.Keys[k.KeyID] = old
		}
	} else if it.Legacy == "" {
		return nil, false, broken("no legacy playlist was found for this title")
	}
	plan, err := PlanTitle(ctx, s.store, src)
	if err != nil {
		return nil, false, err
	}
	log.Info("title planned", "source", src.Playlist, "renditions", plan.Renditions(), "segments", plan.Segments, "bytes", plan.Bytes)
	v, err := s.pkg.Begin(att.Prefix, s.cfg.KeyURITemplate)
	if err != nil {
		return nil, false, fmt.Errorf("backfill: %w", err)
	}
	res, err := s.conv.Convert(ctx, plan, v)
	if err != nil {
		return nil, false, err
	}
	wks, err := v.WrappedKeys()
	if err != nil {
		return nil, false, fmt.Errorf("backfill: %w", err)
	}
	published, err := s.db.Publish(ctx, catalog.PublishParams{
		Attempt: att, Master: res.Master, Renditions: res.Renditions, Duration: res.Duration, Keys: wks,
	})
	if err != nil {
		return nil, false, err
	}
	return res, published, nil
}

// retranscode hands a title to the transcode pipeline, on the background
// queue; the driver marks it done when that job publishes.
func (s *Service) retranscode(ctx, parent context.Context, log *slog.Logger, opts RunOptions, it catalog.BackfillItem,
	finish func(catalog.BackfillOutcome)) (bool, error) {
	cur, err := s.db.CurrentVersions(ctx, []string{it.VideoID})
	if err != nil {
		return s.transient(parent, log, it, 0, err)
	}
	if c, ok := cur[it.VideoID]; ok && (opts.RekeyBefore.IsZero() || !c.PublishedAt.Before(opts.RekeyBefore)) {
		finish(catalog.BackfillOutcome{State: catalog.ItemSkipped, Error: fmt.Sprintf("already has a key (version %d)", c.Version)})
		return false, nil
	}
	source, err := SourceOf(ctx, s.db, opts.SourceTemplate, it.VideoID)
	if err != nil {
		finish(catalog.BackfillOutcome{State: catalog.ItemFailed, Error: err.Error()})
		return false, nil
	}
	if _, err := s.store.Stat(ctx, source); errors.Is(err, storage.ErrNotFound) {
		finish(catalog.BackfillOutcome{State: catalog.ItemFailed, Error: fmt.Sprintf("source %s is not in storage", source)})
		return false, nil
	} else if err != nil {
		return s.transient(parent, log, it, 0, err)
	}
	res, err := s.jobs.EnqueueTranscode(ctx, jobs.TranscodeRequest{VideoID: it.VideoID, Source: source, Force: true})
	if errors.Is(err, jobs.ErrDeleted) {
		skipDeleted(log, 0, err, finish)
		return false, nil
	}
	if err != nil {
		return s.transient(parent, log, it, 0, err)
	}
	log.Info("re-transcode enqueued", "source", source, "task", res.TaskID, "outcome", res.Outcome)
	if err := s.db.WaitBackfillItem(context.WithoutCancel(parent), it.ID, res.Job.ID); err != nil {
		return s.transient(parent, log, it, 0, err)
	}
	return false, nil
}

// SourceOf locates a title's source for --retranscode: the template with
// {video} replaced, or else the source of the video's latest transcode job.
func SourceOf(ctx context.Context, db *catalog.DB, template, video string) (string, error) {
	if template != "" {
		name := strings.ReplaceAll(template, "{video}", video)
		if err := storage.ValidateName(name); err != nil {
			return "", fmt.Errorf("source template gives %w", err)
		}
		return name, nil
	}
	src, err := db.LastTranscodeSource(ctx, video)
	if errors.Is(err, catalog.ErrNotFound) {
		return "", errors.New("no source known for this title (give --source-template)")
	}
	return src, err
}
