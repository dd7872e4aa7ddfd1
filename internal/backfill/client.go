package backfill

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/hibiken/asynq"

	"github.com/hlsvault/hlsvault/internal/catalog"
	"github.com/hlsvault/hlsvault/internal/storage"
	"github.com/hlsvault/hlsvault/jobs"
)

// Client is the operator's side: start, follow and steer runs. It needs no
// key: discovery reads playlists, never segments.
type Client struct {
	db     *catalog.DB
	store  storage.Store
	asynq  *asynq.Client
	queues jobs.Queues
	tick   time.Duration
}

// NewClient builds a Client. Close it when done.
func NewClient(db *catalog.DB, store storage.Store, redis asynq.RedisConnOpt, queues jobs.Queues) *Client {
	if queues == (jobs.Queues{}) {
		queues = jobs.QueueNames("")
	}
	return &Client{db: db, store: store, asynq: asynq.NewClient(redis), queues: queues, tick: time.Minute}
}

// Close releases the Redis connection.
func (c *Client) Close() error { return c.asynq.Close() }

// StartOptions is what `enqueue backfill start` asks for.
type StartOptions struct {
	RunOptions
	// IDs are the titles of --ids (sorted, distinct, valid: ParseIDs).
	IDs         []string
	BatchSize   int // default 10
	MaxInflight int // default 2
	DryRun      bool
	// Each, when set, receives every candidate as discovery finds it (in
	// chunks, in title-directory order) and StartResult.Candidates stays
	// empty: a 100,000-title start then holds one chunk, not the catalogue.
	Each func(Candidate) error
	// Chunk is how many titles are planned and recorded at once (default
	// 1000); an interrupted start resumes after its last recorded chunk.
	Chunk int
}

// StartResult says what Start did.
type StartResult struct {
	Run        *catalog.BackfillRun `json:"run,omitempty"`
	Created    bool                 `json:"created"`
	Existing   bool                 `json:"existing"` // an active run with the same options was returned
	Resumed    bool                 `json:"resumed,omitempty"`
	Candidates []Candidate          `json:"candidates,omitempty"`
	Summary    Summary              `json:"summary"`
	DryRun     bool                 `json:"dry_run,omitempty"`
	// Discovered counts the titles this call planned (a resumed start
	// plans only those after its cursor).
	Discovered int `json:"discovered"`
}

// NothingToDo reports that discovery found no title to work on.
func (r StartResult) NothingToDo() bool {
	return !r.Existing && r.Summary.Titles[ActionConvert]+r.Summary.Titles[ActionRekey]+r.Summary.Titles[ActionRetranscode] == 0
}

// Fingerprint identifies a backfill by what was asked: the same options
// and the same id list give the same fingerprint.
func Fingerprint(o RunOptions) string {
	o.RekeyBefore = time.Time{}
	b, _ := json.Marshal(o) // map keys are sorted: deterministic
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:16])
}

func normalise(o *StartOptions) error {
	n := 0
	for _, set := range []bool{o.Prefix != "", len(o.IDs) > 0 || o.IDsFile != "", o.FromDB} {
		if set {
			n++
		}
	}
	if n != 1 {
		return errors.New("backfill: choose exactly one of --prefix, --ids and --from-db")
	}
	if o.Prefix != "" {
		o.Prefix = strings.TrimSuffix(o.Prefix, "/") + "/"
		if err := storage.ValidateName(o.Prefix + "x"); err != nil {
			return fmt.Errorf("backfill: --prefix: %w", err)
		}
	}
	if o.LegacyPrefix == "" {
		o.LegacyPrefix = "legacy"
	}
	o.LegacyPrefix = strings.TrimSuffix(o.LegacyPrefix, "/")
	if err := storage.ValidateName(o.LegacyPrefix + "/x"); err != nil {
		return fmt.Errorf("backfill: --legacy-prefix: %w", err)
	}
	if len(o.IDs) > 0 {
		h := sha256.New()
		for _, id := range o.IDs {
			h.Write([]byte(id + "\n"))
		}
		o.IDsDigest, o.IDsCount = hex.EncodeToString(h.Sum(nil)), len(o.IDs)
	}
	if o.SourceTemplate != "" && !o.Retranscode {
		return errors.New("backfill: --source-template only applies to --retranscode")
	}
	if o.SourceTemplate != "" && !strings.Contains(o.SourceTemplate, "{video}") {
		return errors.New("backfill: --source-template must contain {video}")
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 10
	}
	if o.MaxInflight <= 0 {
		o.MaxInflight = 2
	}
	if o.BatchSize > 10000 || o.MaxInflight > 1000 {
		return errors.New("backfill: --batch-size is at most 10000 and --max-inflight at most 1000")
	}
	return nil
}

// Start runs discovery and records a run of the titles to work on, then
// wakes the workers. Discovery streams: the run is recorded first, in state
// starting, and its items are added a chunk at a time (one transaction
// each, with the discovery cursor), so memory does not grow with the
// catalogue and an interrupted start resumes after its last chunk when
// started again with the same options (or with Resume). The run becomes
// running once every title is recorded.
//
// It is idempotent: while a run with the same options is running or paused,
// that run is returned (Existing), and while another process is starting
// it, too; once it is done, the titles it converted have keys and are
// skipped, so a second start finds nothing to do and records nothing. A
// start that finds no title to work on records no run. Broken titles are
// recorded as failed items of the run, with their reason, when there is
// something else to do.
func (c *Client) Start(ctx context.Context, o StartOptions) (StartResult, error) {
	if err := normalise(&o); err != nil {
		return StartResult{}, err
	}
	res := StartResult{DryRun: o.DryRun}
	fp := Fingerprint(o.RunOptions)
	if !o.DryRun {
		if r, err := c.db.ActiveBackfillRun(ctx, fp); err == nil && r.State != catalog.RunStarting {
			res.Run, res.Existing = &r, true
			return res, nil
		} else if err != nil && !errors.Is(err, catalog.ErrNotFound) {
			return res, err
		}
	}
	if o.Rekey {
		cutoff, ok, err := c.db.RekeyCutoff(ctx, o.Label)
		if err != nil {
			return res, err
		}
		if !ok {
			cutoff = time.Now()
		}
		o.RekeyBefore = cutoff
	}
	if o.DryRun {
		res.Summary = Summary{Titles: map[string]int{}}
		err := DiscoverEach(ctx, c.store, c.db, o.RunOptions, o.IDs, DiscoverOptions{Chunk: o.Chunk}, func(cands []Candidate, _ string) error {
			return c.take(&res, o.Each, cands)
		})
		return res, err
	}
	release, ok, err := c.db.LockBackfillStart(ctx, fp)
	if err != nil {
		return res, err
	}
	if !ok {
		// Another process is starting this very backfill right now.
		r, err := c.db.ActiveBackfillRun(ctx, fp)
		if err != nil {
			return res, fmt.Errorf("backfill: another start of the same backfill is in progress: %w", err)
		}
		res.Run, res.Existing = &r, true
		return res, nil
	}
	defer release()
	opts, err := json.Marshal(o.RunOptions)
	if err != nil {
		return res, err
	}
	run, created, err := c.db.BeginBackfillRun(ctx, opts, fp, o.BatchSize, o.MaxInflight)
	if err != nil {
		return res, err
	}
	if !created && run.State != catalog.RunStarting {
		res.Run, res.Existing = &run, true
		return res, nil
	}
	if !created {
		// An interrupted start: continue it under the options it recorded
		// (its re-key cutoff included).
		var ro RunOptions
		if err := json.Unmarshal(run.Options, &ro); err != nil {
			return res, fmt.Errorf("backfill: run %d options: %w", run.ID, err)
		}
		o.RunOptions, res.Resumed = ro, true
	}
	return res, c.record(ctx, run, o, &res)
}

// take adds a chunk of candidates to a start's result.
func (c *Client) take(res *StartResult, each func(Candidate) error, cands []Candidate) error {
	res.Discovered += len(cands)
	for _, cd := range cands {
		res.Summary.add(cd)
		if each != nil {
			if err := each(cd); err != nil {
				return err
			}
		} else {
			res.Candidates = append(res.Candidates, cd)
		}
	}
	return nil
}

// record discovers the titles of a starting run after its cursor, records
// them chunk by chunk, and ends the start (see Start). The caller holds the
// start lock.
func (c *Client) record(ctx context.Context, run catalog.BackfillRun, o StartOptions, res *StartResult) error {
	after, err := c.db.DiscoveredThrough(ctx, run.ID)
	if err != nil {
		return err
	}
	res.Summary = Summary{Titles: map[string]int{}}
	notTitles := 0
	err = DiscoverEach(ctx, c.store, c.db, o.RunOptions, o.IDs, DiscoverOptions{After: after, Chunk: o.Chunk},
		func(cands []Candidate, through string) error {
			if err := c.take(res, o.Each, cands); err != nil {
				return err
			}
			items := make([]catalog.NewBackfillItem, 0, len(cands))
			for _, cd := range cands {
				if cd.NotATitle {
					notTitles++
					continue
				}
				items = append(items, newItem(cd))
			}
			return c.db.AddBackfillItems(ctx, run.ID, items, through)
		})
	if err != nil {
		return err
	}
	if res.Resumed {
		// Earlier chunks were recorded by the interrupted start: report
		// the whole run, from what is recorded.
		if res.Summary, err = c.recordedSummary(ctx, run.ID, o.RunOptions, notTitles); err != nil {
			return err
		}
	}
	run, deleted, err := c.db.FinishBackfillStart(ctx, run.ID)
	if err != nil {
		return err
	}
	if deleted {
		return nil // nothing to do: no run recorded
	}
	res.Run, res.Created = &run, !res.Resumed
	res.Existing = false
	return c.Kick(ctx, run.ID)
}

// newItem is a candidate's row in a run.
func newItem(cd Candidate) catalog.NewBackfillItem {
	it := catalog.NewBackfillItem{VideoID: cd.VideoID, Legacy: cd.Legacy, EstBytes: cd.Bytes, EstSegments: cd.Segments}
	switch cd.Action {
	case ActionBroken:
		it.State, it.Error = catalog.ItemFailed, cd.Reason
	case ActionSkip:
		it.State, it.Error = catalog.ItemSkipped, cd.Reason
	}
	return it
}

// recordedSummary is a run's Summary from its recorded items; the titles
// to work on are counted under the run's main action.
func (c *Client) recordedSummary(ctx context.Context, runID int64, o RunOptions, notTitles int) (Summary, error) {
	counts, segs, bytes, err := c.db.BackfillStartSummary(ctx, runID)
	if err != nil {
		return Summary{}, err
	}
	work := ActionConvert
	switch {
	case o.Retranscode:
		work = ActionRetranscode
	case o.Rekey:
		work = ActionRekey
	}
	s := Summary{Titles: map[string]int{}, Segments: segs, Bytes: bytes}
	if n := counts[catalog.ItemPending]; n > 0 {
		s.Titles[work] = n
	}
	if n := counts[catalog.ItemFailed]; n > 0 {
		s.Titles[ActionBroken] = n
	}
	if n := counts[catalog.ItemSkipped] + notTitles; n > 0 {
		s.Titles[ActionSkip] = n
	}
	return s, nil
}

// resumeStart continues the interrupted start of a run (Resume of a run in
// state starting). A run started from --ids did not record its ids (only
// their digest): it is continued by the same `enqueue backfill start`.
func (c *Client) resumeStart(ctx context.Context, run catalog.BackfillRun) (catalog.BackfillRun, error) {
	var ro RunOptions
	if err := json.Unmarshal(run.Options, &ro); err != nil {
		return run, fmt.Errorf("backfill: run %d options: %w", run.ID, err)
	}
	if ro.IDsCount > 0 {
		return run, fmt.Errorf("backfill: run %d was started from --ids %s: run the same `enqueue backfill start --ids` again to continue it",
			run.ID, ro.IDsFile)
	}
	if c.store == nil {
		return run, errors.New("backfill: resuming a start needs the storage")
	}
	release, ok, err := c.db.LockBackfillStart(ctx, run.Fingerprint)
	if err != nil {
		return run, err
	}
	if !ok {
		return run, fmt.Errorf("backfill: run %d is being started by another process", run.ID)
	}
	defer release()
	o := StartOptions{RunOptions: ro, Each: func(Candidate) error { return nil }}
	res := StartResult{Resumed: true}
	if err := c.record(ctx, run, o, &res); err != nil {
		return run, err
	}
	if res.Run == nil {
		return run, fmt.Errorf("backfill: run %d found no title to work on and was removed", run.ID)
	}
	return *res.Run, nil
}

// Kick schedules a tick of the run now, so that a worker picks it up.
func (c *Client) Kick(ctx context.Context, runID int64) error {
	return enqueueTick(ctx, c.asynq, c.queues.Background, runID, 0, c.tick, 5)
}

// Pause stops a running run from starting titles; titles in progress
// finish.
func (c *Client) Pause(ctx context.Context, runID int64) (catalog.BackfillRun, error) {
	return c.db.SetBackfillRunState(ctx, runID, []string{catalog.RunRunning}, catalog.RunPaused)
}

// Resume continues a paused run where it was, or the interrupted start of
// a run left starting.
func (c *Client) Resume(ctx context.Context, runID int64) (catalog.BackfillRun, error) {
	if r, err := c.db.BackfillRunByID(ctx, runID); err != nil {
		return r, err
	} else if r.State == catalog.RunStarting {
		return c.resumeStart(ctx, r)
	}
	r, err := c.db.SetBackfillRunState(ctx, runID, []string{catalog.RunPaused}, catalog.RunRunning)
	if err != nil {
		return r, err
	}
	return r, c.Kick(ctx, runID)
}

// Cancel ends a run for good: no further title starts. Titles already
// converted stay converted.
func (c *Client) Cancel(ctx context.Context, runID int64) (catalog.BackfillRun, error) {
	return c.db.SetBackfillRunState(ctx, runID, []string{catalog.RunStarting, catalog.RunRunning, catalog.RunPaused}, catalog.RunCancelled)
}

// RetryFailed puts the run's failed titles back in the queue (only those),
// reopening a run that was done.
func (c *Client) RetryFailed(ctx context.Context, runID int64) (int, error) {
	n, err := c.db.RetryFailedBackfillItems(ctx, runID)
	if err != nil || n == 0 {
		return n, err
	}
	r, err := c.db.BackfillRunByID(ctx, runID)
	if err != nil {
		return n, err
	}
	if r.State == catalog.RunRunning {
		return n, c.Kick(ctx, runID)
	}
	return n, nil
}

// ItemReport is one title in a status.
type ItemReport struct {
	Video string `json:"video"`
	Error string `json:"error"`
}

// Status is what `enqueue backfill status` prints.
type Status struct {
	Run       catalog.BackfillRun      `json:"run"`
	Progress  catalog.BackfillProgress `json:"progress"`
	Done      int                      `json:"done"`
	Failed    int                      `json:"failed"`
	Skipped   int                      `json:"skipped"`
	Remaining int                      `json:"remaining"`
	// ThroughputMBps is the plaintext re-encrypted per second of busy time
	// (MB = 10^6 bytes); ETASeconds is Estimate's, absent when unknown.
	ThroughputMBps float64      `json:"throughput_mb_s"`
	ETASeconds     *float64     `json:"eta_seconds,omitempty"`
	Failures       []ItemReport `json:"failures,omitempty"`
}

// maxStatusFailures is how many failed titles a status lists (the first
// ones); `enqueue backfill items RUN --state failed` lists them all.
const maxStatusFailures = 50

// Status reports on a run; runID 0 means the latest.
func (c *Client) Status(ctx context.Context, runID int64) (Status, error) {
	var (
		s   Status
		err error
	)
	if runID == 0 {
		s.Run, err = c.db.LatestBackfillRun(ctx)
	} else {
		s.Run, err = c.db.BackfillRunByID(ctx, runID)
	}
	if err != nil {
		return s, err
	}
	if s.Progress, err = c.db.BackfillProgressOf(ctx, s.Run.ID); err != nil {
		return s, err
	}
	p := s.Progress
	s.Done, s.Failed, s.Skipped = p.Counts[catalog.ItemDone], p.Counts[catalog.ItemFailed], p.Counts[catalog.ItemSkipped]
	s.Remaining = p.Counts[catalog.ItemPending] + p.Counts[catalog.ItemQueued] + p.Counts[catalog.ItemRunning]
	est := Estimate(ETAInput{
		Running: s.Run.State == catalog.RunRunning, Remaining: s.Remaining, Worked: p.Worked,
		Busy: time.Duration(p.BusySeconds * float64(time.Second)), BytesDone: p.BytesDone, BytesRemaining: p.BytesRemaining,
	})
	s.ThroughputMBps = est.ThroughputMBps
	if est.Known {
		secs := est.ETA.Seconds()
		s.ETASeconds = &secs
	}
	if s.Failed > 0 {
		failed, err := c.db.BackfillItemsLimit(ctx, s.Run.ID, catalog.ItemFailed, maxStatusFailures)
		if err != nil {
			return s, err
		}
		for _, it := range failed {
			s.Failures = append(s.Failures, ItemReport{Video: it.VideoID, Error: it.Error})
		}
	}
	return s, nil
}

// ETAInput is what a run's remaining time is estimated from.
type ETAInput struct {
	// Running: only a running run has an ETA (a paused one waits for the
	// operator).
	Running bool
	// Remaining counts the titles pending, queued or running.
	Remaining int
	// Worked counts the titles finished after a worker took them up (not
	// discovery's broken or skipped titles, which took no time).
	Worked int
	// Busy is the wall time during which at least one title was being
	// worked on: paused time is not in it.
	Busy time.Duration
	// BytesDone is the plaintext of the titles done; BytesRemaining the
	// estimated plaintext of the titles remaining.
	BytesDone, BytesRemaining int64
}

// ETAEstimate is Estimate's answer.
type ETAEstimate struct {
	ThroughputMBps float64
	ETA            time.Duration
	Known          bool // false: "ETA -"
}

// Estimate extrapolates the rate of this run's finished work over the time
// it took to what remains. The rate is bytes per busy second when both the
// bytes done and the bytes remaining are known (titles differ in size by
// orders of magnitude), else worked titles per busy second. Busy time,
// unlike the time since the first title started, leaves out pauses and
// the time every worker spent on fresh uploads, and counts titles worked
// on in parallel once, so the rate includes the run's parallelism. The ETA
// is unknown while no title has finished, when the run is not running, or
// when nothing remains.
func Estimate(in ETAInput) ETAEstimate {
	var e ETAEstimate
	busy := in.Busy.Seconds()
	if busy <= 0 {
		return e
	}
	e.ThroughputMBps = float64(in.BytesDone) / 1e6 / busy
	if !in.Running || in.Remaining <= 0 {
		return e
	}
	var secs float64
	switch {
	case in.BytesDone > 0 && in.BytesRemaining > 0:
		secs = float64(in.BytesRemaining) * busy / float64(in.BytesDone)
	case in.Worked > 0:
		secs = float64(in.Remaining) * busy / float64(in.Worked)
	default:
		return e
	}
	// A rate so slow that the ETA exceeds a decade (or does not fit a
	// Duration) says nothing an operator can plan with.
	if math.IsNaN(secs) || secs > maxETASeconds {
		return e
	}
	e.ETA, e.Known = time.Duration(secs*float64(time.Second)), true
	return e
}

// maxETASeconds is the longest ETA reported: ten years.
const maxETASeconds = 10 * 365 * 24 * 3600

// ListRuns returns the latest runs, newest first, with their counts.
func (c *Client) ListRuns(ctx context.Context, limit int) ([]catalog.BackfillRunSummary, error) {
	return c.db.ListBackfillRuns(ctx, limit)
}
