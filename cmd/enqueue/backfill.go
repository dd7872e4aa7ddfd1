package main

// enqueue backfill: start, follow and steer background re-encryption runs
// of the legacy catalogue (internal/backfill).

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hlsvault/hlsvault/internal/backfill"
	"github.com/hlsvault/hlsvault/internal/catalog"
	"github.com/hlsvault/hlsvault/internal/config"
	"github.com/hlsvault/hlsvault/internal/storage"
	"github.com/hlsvault/hlsvault/jobs"
)

const backfillUsage = `usage:
  enqueue backfill start (--prefix P | --ids FILE|- | --from-db) [--legacy-prefix legacy]
                         [--batch-size 10] [--max-inflight 2] [--dry-run] [--json]
                         [--rekey [--label L]] [--retranscode [--source-template 'uploads/{video}.mp4']]
                         [--keep-legacy] [--url-map https://cdn.example.com/=legacy/ ...]
  enqueue backfill list [--limit 20] [--json]
  enqueue backfill status [RUN] [--watch] [--json]
  enqueue backfill items RUN [--state done|failed|skipped|pending|queued|running] [--json]
  enqueue backfill pause|resume|cancel|retry-failed RUN`

// stdin is where --ids - reads from.
var stdin io.Reader = os.Stdin

// urlMapFlag collects --url-map FROM=TO.
type urlMapFlag map[string]string

func (m urlMapFlag) String() string { return fmt.Sprint(map[string]string(m)) }
func (m urlMapFlag) Set(v string) error {
	from, to, ok := strings.Cut(v, "=")
	if !ok || from == "" || !strings.Contains(from, "://") {
		return errors.New("want ABSOLUTE-URL-PREFIX=OBJECT-PREFIX, e.g. https://cdn.example.com/=legacy/")
	}
	m[from] = to
	return nil
}

func runBackfill(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return config.Usagef("%s", backfillUsage)
	}
	sub := args[0]
	helpOnly := false
	switch sub {
	case "-h", "-help", "--help":
		printUsage(stdout, backfillUsage, nil, nil)
		return nil
	case "help": // enqueue backfill help [SUB]
		if len(args) == 1 {
			printUsage(stdout, backfillUsage, nil, nil)
			return nil
		}
		sub, args, helpOnly = args[1], args[1:], true
	}
	var cfg Config
	s := config.NewSettings(&cfg, getenv)
	fs := config.NewFlagSet("enqueue backfill " + sub)
	s.Register(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	var (
		o       backfill.StartOptions
		idsFile string
		urlMap  = urlMapFlag{}
		watch   bool
		every   time.Duration
		state   string
		limit   int
	)
	switch sub {
	case "start":
		fs.StringVar(&o.Prefix, "prefix", "", "scan this storage prefix: one title per {prefix}/{video}/")
		fs.StringVar(&idsFile, "ids", "", "file with one video id per line, or - for stdin")
		fs.BoolVar(&o.FromDB, "from-db", false, "the videos the catalog knows that have no key")
		fs.StringVar(&o.LegacyPrefix, "legacy-prefix", "legacy", "where --ids and --from-db titles are: {legacy-prefix}/{video}/")
		fs.IntVar(&o.BatchSize, "batch-size", 10, "titles per batch task")
		fs.IntVar(&o.MaxInflight, "max-inflight", 2, "batches outstanding at once")
		fs.BoolVar(&o.DryRun, "dry-run", false, "print what would be done (titles, renditions, segments, bytes) and record nothing")
		fs.BoolVar(&o.Rekey, "rekey", false, "give titles that already have a key a fresh key in a new version")
		fs.StringVar(&o.Label, "label", "", "names a re-key: the same --rekey --label started again does nothing; a new label re-keys again")
		fs.BoolVar(&o.Retranscode, "retranscode", false, "run the full transcode pipeline on each title's source instead")
		fs.StringVar(&o.SourceTemplate, "source-template", "", "with --retranscode: the source object, {video} replaced (default: the video's last transcode source)")
		fs.BoolVar(&o.KeepLegacy, "keep-legacy", false, "never let garbage collection remove these titles' legacy objects")
		fs.Var(urlMap, "url-map", "map absolute legacy URLs to objects: URL-PREFIX=OBJECT-PREFIX (repeatable)")
	case "status":
		fs.BoolVar(&watch, "watch", false, "follow the run until it ends")
		fs.DurationVar(&every, "interval", time.Second, "refresh interval of --watch")
	case "items":
		fs.StringVar(&state, "state", "", "only the titles in this state")
	case "list":
		fs.IntVar(&limit, "limit", 20, "the latest N runs")
	case "pause", "resume", "cancel", "retry-failed":
	default:
		return config.Usagef("unknown backfill command %q\n%s", sub, backfillUsage)
	}
	if helpOnly {
		printUsage(stdout, backfillUsage, s, fs)
		return nil
	}
	pos, err := config.ParseArgs(fs, args[1:])
	if errors.Is(err, flag.ErrHelp) {
		printUsage(stdout, backfillUsage, s, fs)
		return nil
	}
	if err != nil {
		return config.Usagef("%v\n%s", err, backfillUsage)
	}
	if s.VersionRequested() {
		fmt.Fprintln(stdout, config.Version("enqueue"))
		return nil
	}
	var runID int64
	switch {
	case (sub == "start" || sub == "list") && len(pos) > 0:
		return config.Usagef("unexpected argument %q\n%s", pos[0], backfillUsage)
	case sub == "start" || sub == "list":
	case len(pos) > 1:
		return config.Usagef("unexpected argument %q\n%s", pos[1], backfillUsage)
	case len(pos) == 1:
		if runID, err = strconv.ParseInt(strings.TrimPrefix(pos[0], "#"), 10, 64); err != nil || runID <= 0 {
			return config.Usagef("RUN must be a run id, got %q", pos[0])
		}
	case sub != "status":
		return config.Usagef("%s needs a RUN id\n%s", sub, backfillUsage)
	}
	p := s.Parse(&cfg)
	cfg.validate(p, sub == "start", false)
	if sub == "start" {
		if o.BatchSize < 1 {
			p.Addf("--batch-size=%d: want an integer ≥ 1", o.BatchSize)
		}
		if o.MaxInflight < 1 {
			p.Addf("--max-inflight=%d: want an integer ≥ 1", o.MaxInflight)
		}
	}
	if sub == "list" && (limit < 1 || limit > 10000) {
		p.Addf("--limit=%d: want an integer from 1 to 10000", limit)
	}
	if sub == "status" && every <= 0 {
		p.Addf("--interval=%v: want a positive Go duration such as 1s", every)
	}
	if err := p.Err(); err != nil {
		return err
	}
	databaseURL, storageURL := &cfg.DatabaseURL, &cfg.StorageURL
	redisURL, queuePrefix := &cfg.RedisURL, &cfg.QueuePrefix

	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	db, err := catalog.Open(ctx, *databaseURL, log)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := db.Migrate(ctx); err != nil {
		return err
	}
	redisOpt, err := config.RedisOpt(*redisURL)
	if err != nil {
		return err
	}
	var store storage.Store
	if sub == "start" || sub == "resume" { // resume may continue an interrupted start
		if store, err = storage.Open(ctx, *storageURL, config.WithValues(getenv, "AZURE_STORAGE_CONNECTION_STRING", cfg.AzureConnection)); err != nil {
			return err
		}
	}
	c := backfill.NewClient(db, store, redisOpt, jobs.QueueNames(*queuePrefix))
	defer c.Close()

	switch sub {
	case "start":
		if idsFile != "" {
			r := stdin
			if idsFile != "-" {
				f, err := os.Open(idsFile)
				if err != nil {
					return err
				}
				defer f.Close()
				r = f
			}
			if o.IDs, err = backfill.ParseIDs(r); err != nil {
				return fmt.Errorf("--ids %s: %w", idsFile, err)
			}
			if len(o.IDs) == 0 {
				return fmt.Errorf("--ids %s: no video id", idsFile)
			}
			o.IDsFile = idsFile
		}
		if len(urlMap) > 0 {
			o.URLMap = urlMap
		}
		return backfillStart(ctx, c, o, *asJSON, stdout)
	case "list":
		runs, err := c.ListRuns(ctx, limit)
		if err != nil {
			return err
		}
		return backfillList(runs, *asJSON, stdout)
	case "status":
		return backfillStatus(ctx, c, runID, watch, every, *asJSON || !isTerminal(stdout), stdout)
	case "items":
		if _, err := db.BackfillRunByID(ctx, runID); err != nil {
			return err
		}
		return backfillItems(ctx, db, runID, state, *asJSON, stdout)
	case "pause":
		r, err := c.Pause(ctx, runID)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "run %d paused: titles in progress finish, no new title starts (resume with: enqueue backfill resume %d)\n", r.ID, r.ID)
	case "resume":
		r, err := c.Resume(ctx, runID)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "run %d resumed\n", r.ID)
	case "cancel":
		r, err := c.Cancel(ctx, runID)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "run %d cancelled: titles already converted stay converted\n", r.ID)
	case "retry-failed":
		n, err := c.RetryFailed(ctx, runID)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "run %d: %d failed titles queued again\n", runID, n)
	}
	return nil
}

// maxBrokenListed bounds the broken titles a "nothing to do" start lists.
const maxBrokenListed = 100

// backfillStart prints as discovery goes: a dry run's table a chunk of
// lines at a time, so that a 100,000-title catalogue is never held (JSON
// holds the candidates of a dry run only).
func backfillStart(ctx context.Context, c *backfill.Client, o backfill.StartOptions, asJSON bool, stdout io.Writer) error {
	var (
		tw         *tabwriter.Writer
		lines      int
		broken     []backfill.Candidate
		moreBroken int
	)
	switch {
	case asJSON && o.DryRun:
		// Start collects the candidates into the result.
	case asJSON:
		o.Each = func(backfill.Candidate) error { return nil }
	case o.DryRun:
		tw = tabwriter.NewWriter(stdout, 2, 8, 2, ' ', 0)
		fmt.Fprintln(tw, "ACTION\tVIDEO\tPLAYLIST\tRENDITIONS\tSEGMENTS\tBYTES\tREASON")
		o.Each = func(cd backfill.Candidate) error {
			where := cd.Legacy
			if cd.Source != "" {
				where = cd.Source
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%s\n", cd.Action, cd.VideoID, where, len(cd.Renditions), cd.Segments, cd.Bytes, cd.Reason)
			if lines++; lines%1000 == 0 {
				return tw.Flush()
			}
			return nil
		}
	default:
		o.Each = func(cd backfill.Candidate) error {
			if cd.Action == backfill.ActionBroken {
				if len(broken) < maxBrokenListed {
					broken = append(broken, cd)
				} else {
					moreBroken++
				}
			}
			return nil
		}
	}
	res, err := c.Start(ctx, o)
	if tw != nil {
		tw.Flush()
	}
	if err != nil {
		return err
	}
	if asJSON {
		return printJSON(stdout, res)
	}
	if res.Existing && res.Run != nil {
		what := "already " + res.Run.State
		if res.Run.State == catalog.RunStarting {
			what = "being started by another enqueue"
		}
		fmt.Fprintf(stdout, "run %d with the same options is %s; nothing started (follow it with: enqueue backfill status %d --watch)\n",
			res.Run.ID, what, res.Run.ID)
		return nil
	}
	s := res.Summary
	work := s.Titles[backfill.ActionConvert] + s.Titles[backfill.ActionRekey] + s.Titles[backfill.ActionRetranscode]
	if o.DryRun {
		fmt.Fprintf(stdout, "dry run: would work on %d titles (%d segments, %s); %d broken, %d skipped; nothing recorded\n",
			work, s.Segments, humanBytes(s.Bytes), s.Titles[backfill.ActionBroken], s.Titles[backfill.ActionSkip])
		return nil
	}
	if res.NothingToDo() {
		fmt.Fprintf(stdout, "nothing to do: %d titles found, none to convert (%d skipped, %d broken); no run recorded\n",
			res.Discovered, s.Titles[backfill.ActionSkip], s.Titles[backfill.ActionBroken])
		for _, cd := range broken {
			fmt.Fprintf(stdout, "  broken %s: %s\n", cd.VideoID, cd.Reason)
		}
		if moreBroken > 0 {
			fmt.Fprintf(stdout, "  … and %d more broken titles\n", moreBroken)
		}
		return nil
	}
	verb := "started"
	if res.Resumed {
		verb = "resumed the interrupted start of"
	}
	fmt.Fprintf(stdout, "%s backfill run %d: %d titles to work on (%d segments, %s), %d broken (recorded as failed), %d skipped\n",
		verb, res.Run.ID, work, s.Segments, humanBytes(s.Bytes), s.Titles[backfill.ActionBroken], s.Titles[backfill.ActionSkip])
	fmt.Fprintf(stdout, "follow it with: enqueue backfill status %d --watch\n", res.Run.ID)
	return nil
}

func backfillStatus(ctx context.Context, c *backfill.Client, runID int64, watch bool, every time.Duration, asJSON bool, stdout io.Writer) error {
	if every <= 0 {
		every = time.Second
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		st, err := c.Status(ctx, runID)
		if errors.Is(err, catalog.ErrNotFound) {
			if runID == 0 {
				return errors.New("no backfill run was ever started")
			}
			return fmt.Errorf("no backfill run %d", runID)
		}
		if err != nil {
			return err
		}
		runID = st.Run.ID
		finished := st.Run.State == catalog.RunDone || st.Run.State == catalog.RunCancelled
		switch {
		case asJSON && watch:
			if err := json.NewEncoder(stdout).Encode(st); err != nil {
				return err
			}
		case asJSON:
			return printJSON(stdout, st)
		case watch:
			fmt.Fprintf(stdout, "\r\033[K%s", progressLine(st))
		default:
			fmt.Fprintln(stdout, progressLine(st))
		}
		if !watch || finished {
			if !asJSON {
				if watch {
					fmt.Fprintln(stdout)
				}
				for _, f := range st.Failures {
					fmt.Fprintf(stdout, "  failed %s: %s\n", f.Video, f.Error)
				}
			}
			if watch && st.Failed > 0 {
				// A script that waits on --watch learns that the run
				// did not convert everything.
				return fmt.Errorf("run %d %s with %d failed %s; list them with: enqueue backfill items %d --state failed",
					st.Run.ID, finishedVerb(st.Run.State), st.Failed, plural(st.Failed, "title", "titles"), st.Run.ID)
			}
			return nil
		}
		select {
		case <-ctx.Done():
			if !asJSON {
				fmt.Fprintln(stdout)
			}
			return nil
		case <-tick.C:
		}
	}
}

func finishedVerb(state string) string {
	if state == catalog.RunCancelled {
		return "was cancelled"
	}
	return "finished"
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// backfillList prints the runs, newest first: a table, or JSON.
func backfillList(runs []catalog.BackfillRunSummary, asJSON bool, stdout io.Writer) error {
	if asJSON {
		if runs == nil {
			runs = []catalog.BackfillRunSummary{}
		}
		return printJSON(stdout, runs)
	}
	if len(runs) == 0 {
		fmt.Fprintln(stdout, "no backfill run was ever started")
		return nil
	}
	stamp := func(t *time.Time) string {
		if t == nil {
			return "-"
		}
		return t.UTC().Format(time.RFC3339)
	}
	tw := tabwriter.NewWriter(stdout, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "RUN\tSTATE\tCREATED\tFINISHED\tDONE\tFAILED\tSKIPPED\tTOTAL")
	for _, r := range runs {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%d\t%d\t%d\n", r.ID, r.State, stamp(&r.CreatedAt), stamp(r.FinishedAt),
			r.Done, r.Failed, r.Skipped, r.Total)
	}
	return tw.Flush()
}

// progressLine is the one-line bar: state, bar, done, failed, remaining,
// throughput and ETA.
func progressLine(st backfill.Status) string {
	const width = 24
	total := st.Progress.Total
	finished := st.Done + st.Failed + st.Skipped
	filled := 0
	if total > 0 {
		filled = width * finished / total
	}
	bar := strings.Repeat("#", filled) + strings.Repeat("-", width-filled)
	eta := "-"
	if st.ETASeconds != nil {
		eta = formatETA(time.Duration(*st.ETASeconds * float64(time.Second)))
	}
	return fmt.Sprintf("run %d %-9s [%s] %d/%d done  %d failed  %d skipped  %d remaining  %.1f MB/s  ETA %s",
		st.Run.ID, st.Run.State, bar, st.Done, total, st.Failed, st.Skipped, st.Remaining, st.ThroughputMBps, eta)
}

// formatETA rounds an ETA to what is worth reading: seconds under an
// hour ("4m10s"), hours and minutes above ("2h23m").
func formatETA(d time.Duration) string {
	if d < time.Hour {
		return d.Round(time.Second).String()
	}
	return strings.TrimSuffix(d.Round(time.Minute).String(), "0s")
}

func humanBytes(n int64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.2f GB", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.1f kB", float64(n)/1e3)
	}
	return fmt.Sprintf("%d B", n)
}

// itemsPage is how many items `backfill items` reads and prints at a time.
const itemsPage = 1000

// backfillItems prints a run's items as they are read, a page at a time,
// so that listing a 100,000-title run holds one page in memory: a JSON
// array written element by element, one id per line for done items (to
// pipe into enqueue verify), else a table whose columns are aligned
// within each page.
func backfillItems(ctx context.Context, db *catalog.DB, runID int64, state string, asJSON bool, stdout io.Writer) error {
	n := 0
	switch {
	case asJSON:
		err := db.EachBackfillItem(ctx, runID, state, itemsPage, func(it catalog.BackfillItem) error {
			b, err := json.MarshalIndent(it, "  ", "  ")
			if err != nil {
				return err
			}
			sep := ",\n  "
			if n == 0 {
				sep = "[\n  "
			}
			n++
			_, err = fmt.Fprintf(stdout, "%s%s", sep, b)
			return err
		})
		if err != nil {
			return err
		}
		if n == 0 {
			_, err = fmt.Fprintln(stdout, "[]")
		} else {
			_, err = fmt.Fprintln(stdout, "\n]")
		}
		return err
	case state == catalog.ItemDone:
		return db.EachBackfillItem(ctx, runID, state, itemsPage, func(it catalog.BackfillItem) error {
			_, err := fmt.Fprintln(stdout, it.VideoID)
			return err
		})
	}
	tw := tabwriter.NewWriter(stdout, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "VIDEO\tSTATE\tVERSION\tATTEMPTS\tBYTES\tERROR")
	err := db.EachBackfillItem(ctx, runID, state, itemsPage, func(it catalog.BackfillItem) error {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%s\n", it.VideoID, it.State, it.Version, it.Attempts, it.Bytes, it.Error)
		if n++; n%itemsPage == 0 {
			return tw.Flush()
		}
		return nil
	})
	if err != nil {
		return err
	}
	return tw.Flush()
}
