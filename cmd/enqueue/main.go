// Command enqueue asks the workers to package videos and reports on them.
//
//	enqueue transcode --video ID --source SRC [--wait] [--force] [--ladder L] [--preset P] [--priority high|normal|low] [--metadata JSON]
//	enqueue status --video ID
//	enqueue list [--state S] [--json] [--limit N] [--after CURSOR]
//	enqueue verify --video ID
//	enqueue cancel --video ID
//	enqueue delete --video ID
//	enqueue backfill start|list|status|items|pause|resume|cancel|retry-failed …
//
// SRC is an object name in the configured storage (uploads/abc.mp4) or a
// local file, which is uploaded to storage first under a name derived from
// its content, so enqueuing the same file twice is still one job.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/hlsvault/hlsvault/internal/catalog"
	"github.com/hlsvault/hlsvault/internal/config"
	"github.com/hlsvault/hlsvault/internal/ids"
	"github.com/hlsvault/hlsvault/internal/keys"
	"github.com/hlsvault/hlsvault/internal/storage"
	"github.com/hlsvault/hlsvault/internal/transcode"
	"github.com/hlsvault/hlsvault/internal/verify"
	"github.com/hlsvault/hlsvault/jobs"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "enqueue:", err)
		os.Exit(config.ExitCode(err)) // 2: bad command line; 1: anything else
	}
}

const usage = `usage:
  enqueue transcode --video ID --source SRC [--wait] [--force] [--ladder L] [--preset P] [--priority P] [--metadata JSON]
  enqueue status --video ID
  enqueue list [--state S] [--json] [--limit N] [--after CURSOR]
  enqueue verify --video ID
  enqueue cancel --video ID
  enqueue delete --video ID
  enqueue backfill start|list|status|items|pause|resume|cancel|retry-failed …
  enqueue help [command]`

// commands are enqueue's subcommands and their usage.
var commands = map[string]string{
	"transcode": "enqueue transcode --video ID --source SRC [--wait] [--force] [flags]\n  Ask the workers to package SRC (an object in storage, or a local file uploaded first) as video ID.",
	"status":    "enqueue status --video ID [flags]\n  Print the video's state, latest job (task id, stage, created/started/finished times, duration) and current version as JSON.",
	"list":      listUsage,
	"verify":    "enqueue verify --video ID [flags]\n  Decrypt and decode every segment of the published version (needs KEY_ENCRYPTION_KEY).",
	"backfill":  backfillUsage,
	"cancel":    cancelUsage,
	"delete":    deleteUsage,
}

// Config is what every subcommand needs. Its env-tagged fields are the ONE
// table of enqueue's settings (README.md is checked against it), from the
// environment, overridden by flags; the others are the subcommands' flags.
type Config struct {
	RedisURL        string `env:"REDIS_URL" envDefault:"redis://127.0.0.1:6379/0" flag:"redis-url" help:"Redis URL" file:"true"`
	DatabaseURL     string `env:"DATABASE_URL" envDefault:"postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable" flag:"database-url" help:"PostgreSQL URL" file:"true"`
	StorageURL      string `env:"STORAGE_URL,expand" envDefault:"file://$TMPDIR/hlsvault/storage" flag:"storage-url" help:"file:///abs/dir or azblob://container"`
	FFprobe         string `env:"FFPROBE" envDefault:"ffprobe" flag:"ffprobe" help:"ffprobe binary"`
	DecoderSandbox  string `env:"DECODER_SANDBOX" envDefault:"bwrap" flag:"decoder-sandbox" help:"how verify runs ffprobe: bwrap (bubblewrap sandbox) or none (weaker isolation)"`
	QueuePrefix     string `env:"QUEUE_PREFIX" envDefault:"hls" flag:"queue-prefix" help:"queue names are PREFIX-transcode-high, PREFIX-transcode, PREFIX-transcode-low and PREFIX-background"`
	AzureConnection string `env:"AZURE_STORAGE_CONNECTION_STRING" secret:"true"`
	KEK             string `env:"KEY_ENCRYPTION_KEY" secret:"true"`
	RetiredKEKs     string `env:"KEY_ENCRYPTION_KEYS_RETIRED" secret:"true"`

	Video       string
	Source      string
	Wait        bool
	Force       bool
	NoSubtitles bool
	WaitTimeout time.Duration
	MaxRetry    int
	// Per-job options of transcode (jobs.TranscodeRequest).
	Ladder   string
	Preset   string
	Segments string
	Priority string
	Metadata string
	// Subtitles are transcode's --subtitle LANG=PATH sidecars.
	Subtitles subtitleFlags
	// list's flags.
	State string
	JSON  bool
	Limit int
	After string

	keyring *keys.Keyring // parsed KEK variables (verify)
}

// validate checks the settings for subcommand sub (needStorage: it opens
// the storage; needKEK: it unwraps keys) and adds every problem to p.
func (c *Config) validate(p *config.Problems, needStorage, needKEK bool) {
	p.Check(config.ValidRedisURL(c.RedisURL), "REDIS_URL", config.FormRedisURL)
	p.Check(config.ValidDatabaseURL(c.DatabaseURL), "DATABASE_URL", config.FormDatabaseURL)
	p.Check(config.ValidStorageURL(c.StorageURL), "STORAGE_URL", config.FormStorageURL)
	if needKEK { // verify: runs ffprobe
		_, err := exec.LookPath(c.FFprobe)
		p.Check(err == nil, "FFPROBE", "an ffprobe executable: a name on PATH or a path")
		p.Check(c.DecoderSandbox == transcode.SandboxBwrap || c.DecoderSandbox == transcode.SandboxNone, "DECODER_SANDBOX",
			"bwrap (ffprobe in a bubblewrap sandbox) or none (no sandbox: weaker isolation)")
	}
	p.Check(c.QueuePrefix != "" && !strings.ContainsAny(c.QueuePrefix, " \t\n:"), "QUEUE_PREFIX", "a name without spaces or colons such as hls")
	if needStorage && strings.HasPrefix(c.StorageURL, "azblob:") {
		p.Check(c.AzureConnection != "", "AZURE_STORAGE_CONNECTION_STRING", "the storage account's connection string (azblob:// storage)")
	}
	if needKEK {
		c.keyring = config.CheckKeyring(p, c.KEK, c.RetiredKEKs)
	}
}

func printUsage(w io.Writer, head string, s *config.Settings, fs *flag.FlagSet) {
	if !strings.HasPrefix(head, "usage:") {
		head = "usage: " + head
	}
	fmt.Fprintf(w, "%s\n\nflags (each setting's flag overrides the environment variable named in its help):\n", head)
	if fs != nil {
		s.PrintFlags(w, fs)
	}
}

// topLevel handles enqueue's own help and --version; done is true when it
// printed something.
func topLevel(args []string, getenv func(string) string, stdout io.Writer) (done bool, err error) {
	var c Config
	s := config.NewSettings(&c, getenv)
	fs := config.NewFlagSet("enqueue")
	s.Register(fs)
	switch args[0] {
	case "-h", "-help", "--help":
		printUsage(stdout, usage, s, fs)
		return true, nil
	case "-version", "--version":
		fmt.Fprintln(stdout, config.Version("enqueue"))
		return true, nil
	case "help":
		if len(args) == 1 {
			printUsage(stdout, usage, s, fs)
			return true, nil
		}
		u, ok := commands[args[1]]
		if !ok {
			return true, config.Usagef("help: unknown command %q\n%s", args[1], usage)
		}
		if len(args) > 2 && args[1] == "backfill" {
			return false, nil // enqueue help backfill start: runBackfill answers
		}
		printUsage(stdout, u, s, fs)
		return true, nil
	}
	return false, nil
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return config.Usagef("%s", usage)
	}
	if done, err := topLevel(args, getenv, stdout); done || err != nil {
		return err
	}
	if args[0] == "help" { // help backfill SUB
		return runBackfill(ctx, append([]string{"help"}, args[2:]...), getenv, stdout, stderr)
	}
	sub := args[0]
	if sub == "backfill" {
		return runBackfill(ctx, args[1:], getenv, stdout, stderr)
	}
	var c Config
	s := config.NewSettings(&c, getenv)
	fs := config.NewFlagSet("enqueue " + sub)
	s.Register(fs)
	fs.StringVar(&c.Video, "video", "", "video id: letters, digits, '-' and '_'")
	switch sub {
	case "transcode":
		fs.StringVar(&c.Source, "source", "", "object name in storage, or a local file to upload first")
		fs.BoolVar(&c.Wait, "wait", false, "show progress and wait until the job is published or failed")
		fs.BoolVar(&c.Force, "force", false, "package the source again even if it is already published")
		fs.DurationVar(&c.WaitTimeout, "wait-timeout", 0, "give up waiting after this long (0: never)")
		fs.IntVar(&c.MaxRetry, "max-retry", 5, "retries of a transient failure before the job is failed")
		fs.StringVar(&c.Ladder, "ladder", "", "this job's ladder instead of the worker's LADDER, e.g. 720p:2800k,360p:800k:96k")
		fs.StringVar(&c.Preset, "preset", "", "this job's x264 preset instead of the worker's X264_PRESET")
		fs.StringVar(&c.Segments, "segments", "", "this job's segment format instead of the worker's SEGMENT_FORMAT: ts or fmp4 (HEVC rungs need fmp4)")
		fs.StringVar(&c.Priority, "priority", "normal", "queue priority: high, normal or low")
		fs.StringVar(&c.Metadata, "metadata", "", `your JSON object, returned in every status and event (at most 4 KiB), e.g. '{"upload":"u-42"}'`)
		fs.BoolVar(&c.NoSubtitles, "no-subtitles", false, "publish without sidecar subtitles (without --subtitle, a re-transcode carries the earlier job's)")
		fs.Var(&c.Subtitles, "subtitle", "LANG=PATH: a sidecar subtitle file (SubRip, WebVTT or ASS; a local file is uploaded first) published as a WebVTT rendition; repeatable")
	case "list":
		registerList(fs, &c)
	case "status", "verify", "cancel", "delete":
	default:
		return config.Usagef("unknown command %q\n%s", sub, usage)
	}
	pos, err := config.ParseArgs(fs, args[1:])
	if errors.Is(err, flag.ErrHelp) {
		printUsage(stdout, commands[sub], s, fs)
		return nil
	}
	if err != nil {
		return config.Usagef("%v (see enqueue help %s)", err, sub)
	}
	if s.VersionRequested() {
		fmt.Fprintln(stdout, config.Version("enqueue"))
		return nil
	}
	if len(pos) > 0 {
		return config.Usagef("%s: unexpected argument %q (see enqueue help %s)", sub, pos[0], sub)
	}
	p := s.Parse(&c)
	local := false
	if st, err := os.Stat(c.Source); sub == "transcode" && err == nil && st.Mode().IsRegular() {
		local = true // uploaded to storage first
	}
	local = local || c.Subtitles.hasLocal()
	c.validate(p, sub == "verify" || local, sub == "verify")
	if sub == "list" {
		c.validateList(p)
	} else if err := ids.ValidateVideoID(c.Video); err != nil {
		p.Addf("--video=%q: %v", c.Video, err)
	}
	if sub == "transcode" {
		if c.Source == "" {
			p.Addf("--source is required: an object name in storage or a local file")
		}
		if c.WaitTimeout < 0 {
			p.Addf("--wait-timeout=%v: want a positive Go duration such as 30m, or 0 for never", c.WaitTimeout)
		}
		if c.MaxRetry < 0 {
			p.Addf("--max-retry=%d: want an integer ≥ 0", c.MaxRetry)
		}
		// Each option as the client will check it, named by its flag.
		for _, o := range []struct {
			flag, value string
			p           jobs.TranscodePayload
		}{
			{"ladder", c.Ladder, jobs.TranscodePayload{Ladder: c.Ladder}},
			{"preset", c.Preset, jobs.TranscodePayload{Preset: c.Preset}},
			{"segments", c.Segments, jobs.TranscodePayload{Segments: c.Segments}},
			{"priority", c.Priority, jobs.TranscodePayload{Priority: jobs.Priority(c.Priority)}},
			{"metadata", c.Metadata, jobs.TranscodePayload{Metadata: json.RawMessage(c.Metadata)}},
		} {
			one := o.p
			one.VideoID, one.Source = "v", "s"
			if err := one.Validate(); err != nil {
				p.Addf("--%s=%q: %v", o.flag, o.value, strings.TrimPrefix(err.Error(), jobs.ErrInvalidPayload.Error()+": "))
			}
		}
	}
	if err := p.Err(); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	db, err := catalog.Open(ctx, c.DatabaseURL, log)
	if err != nil {
		return err
	}
	defer db.Close()

	switch sub {
	case "status", "list":
		client, err := newClient(c, db)
		if err != nil {
			return err
		}
		defer client.Close()
		if sub == "list" {
			return runList(ctx, c, client, stdout)
		}
		st, err := client.Status(ctx, c.Video)
		if errors.Is(err, jobs.ErrNotFound) {
			return fmt.Errorf("video %s: no job was ever enqueued", c.Video)
		}
		if err != nil {
			return err
		}
		return printJSON(stdout, statusView(st))
	case "verify":
		return runVerify(ctx, c, getenv, db, stdout)
	}
	if isControl(sub) {
		return runControl(ctx, sub, c, db, stdout)
	}
	return runTranscode(ctx, c, getenv, db, stdout, stderr)
}

// newClient is the upload service's client on enqueue's catalog
// connection.
func newClient(c Config, db *catalog.DB) (*jobs.Client, error) {
	redisOpt, err := config.RedisOpt(c.RedisURL)
	if err != nil {
		return nil, err
	}
	return jobs.New(db.Pool(), redisOpt, jobs.ClientConfig{Queues: jobs.QueueNames(c.QueuePrefix), MaxRetry: c.MaxRetry})
}

// statusJSON is what status prints: the client's Status with the job's
// duration, which is a method there.
type statusJSON struct {
	jobs.Status
	DurationSeconds float64 `json:"duration_seconds"`
}

func statusView(st jobs.Status) statusJSON {
	v := statusJSON{Status: st}
	if st.Job != nil {
		v.DurationSeconds = st.Job.Duration().Round(time.Millisecond).Seconds()
	}
	return v
}

func runTranscode(ctx context.Context, c Config, getenv func(string) string, db *catalog.DB, stdout, stderr io.Writer) error {
	if err := db.Migrate(ctx); err != nil {
		return err
	}
	source := c.Source
	subs := []jobs.Subtitle(c.Subtitles)
	if isLocalFile(c.Source) || c.Subtitles.hasLocal() {
		// Refused before the upload, so that a deleted video's id leaves
		// no new object behind (EnqueueTranscode refuses it too).
		if at, err := db.VideoDeletedAt(ctx, c.Video); err == nil && !at.IsZero() {
			return fmt.Errorf("video %s was deleted (at %s); use a new id (nothing was uploaded)", c.Video, at.UTC().Format(time.RFC3339))
		} else if err != nil && !errors.Is(err, catalog.ErrNotFound) {
			return err
		}
		store, err := storage.Open(ctx, c.StorageURL, config.WithValues(getenv, "AZURE_STORAGE_CONNECTION_STRING", c.AzureConnection))
		if err != nil {
			return err
		}
		if isLocalFile(c.Source) {
			if source, err = uploadLocal(ctx, store, c.Video, c.Source); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "uploaded %s to %s\n", c.Source, source)
		}
		if subs, err = uploadSubtitles(ctx, store, c.Video, c.Subtitles, stdout); err != nil {
			return err
		}
	}
	client, err := newClient(c, db)
	if err != nil {
		return err
	}
	defer client.Close()
	res, err := client.EnqueueTranscode(ctx, jobs.TranscodeRequest{VideoID: c.Video, Source: source, Force: c.Force,
		Ladder: c.Ladder, Preset: c.Preset, Segments: c.Segments, Priority: jobs.Priority(c.Priority), Metadata: json.RawMessage(c.Metadata), Subtitles: subs,
		DropSubtitles: c.NoSubtitles})
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, res.Message())
	if !c.Wait {
		return nil
	}
	return wait(ctx, c, client, stdout)
}

// uploadLocal stores a local file as uploads/{video}/{sha256 prefix}{ext}.
// Naming it by content makes a repeated upload of the same file the same
// source, hence the same job.
func uploadLocal(ctx context.Context, store storage.Store, video, path string) (string, error) {
	ext := strings.ToLower(filepath.Ext(path))
	if len(ext) > 8 || strings.ContainsAny(ext, "/\\ ") {
		ext = ""
	}
	return uploadLocalAs(ctx, store, "uploads/"+video+"/", path, ext)
}

// uploadLocalAs stores a local file as dir + {sha256 prefix} + ext.
func uploadLocalAs(ctx context.Context, store storage.Store, dir, path, ext string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	size, err := io.Copy(h, f)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	name := dir + hex.EncodeToString(h.Sum(nil)[:16]) + ext
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", err
	}
	err = store.Put(ctx, name, f, size, storage.PutOptions{ContentType: "application/octet-stream", CacheControl: "private"})
	if err != nil && !errors.Is(err, storage.ErrExists) {
		return "", err
	}
	return name, nil
}

// wait follows the video's job until it is published, failed or
// cancelled (or the video deleted): a line per change, pushed by the
// catalog (jobs.Client.Watch), with the stage, the time since the job
// started and an ETA from its progress.
func wait(ctx context.Context, c Config, client *jobs.Client, stdout io.Writer) error {
	if c.WaitTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.WaitTimeout)
		defer cancel()
	}
	tty := isTerminal(stdout)
	var last string
	st, err := client.Watch(ctx, c.Video, func(st jobs.Status) {
		line := jobLine(st, time.Now())
		if line == last {
			return
		}
		last = line
		if tty {
			fmt.Fprintf(stdout, "\r\033[K%s", line)
		} else {
			fmt.Fprintln(stdout, line)
		}
	})
	if tty && last != "" {
		fmt.Fprintln(stdout)
	}
	if err != nil {
		return fmt.Errorf("stopped waiting (%s is %s): %w", c.Video, st.State, err)
	}
	switch st.State {
	case jobs.Published:
		fmt.Fprintf(stdout, "published video %s version %d\n", st.VideoID, st.Job.Version)
		return nil
	case jobs.Failed:
		return fmt.Errorf("job failed: %s", st.Job.Error)
	case jobs.Cancelled:
		return fmt.Errorf("job cancelled: video %s was not published", st.VideoID)
	default:
		return fmt.Errorf("video %s was deleted", st.VideoID)
	}
}

// jobLine is one line of --wait: state, stage, progress, time since
// the job started (since it was enqueued before that) and the ETA, the
// remaining share of the progress at the rate so far ("ETA -" before any
// progress).
func jobLine(st jobs.Status, now time.Time) string {
	j := st.Job
	if j == nil {
		return string(st.State)
	}
	stage := string(j.Stage)
	if stage == "" || j.State != jobs.Processing {
		stage = "-"
	}
	var elapsed time.Duration
	eta := "-"
	if j.StartedAt != nil {
		elapsed = now.Sub(*j.StartedAt)
		if j.Progress > 0 && j.Progress < 100 && j.State == jobs.Processing {
			eta = fmtDuration(time.Duration(float64(elapsed) * (100 - j.Progress) / j.Progress))
		}
	} else {
		elapsed = now.Sub(j.EnqueuedAt)
	}
	line := fmt.Sprintf("%-10s %-8s %5.1f%%  elapsed %s  ETA %s", st.State, stage, j.Progress, fmtDuration(elapsed), eta)
	if j.State == jobs.Queued && j.Error != "" {
		line += "  (retrying after: " + j.Error + ")"
	}
	return line
}

// fmtDuration rounds to the second: 1m05s, 42s.
func fmtDuration(d time.Duration) string {
	d = max(d, 0).Round(time.Second)
	if d < time.Minute {
		return fmt.Sprintf("%ds", int(d.Seconds()))
	}
	if d < time.Hour {
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	}
	return fmt.Sprintf("%dh%02dm%02ds", int(d.Hours()), int(d.Minutes())%60, int(d.Seconds())%60)
}

func runVerify(ctx context.Context, c Config, getenv func(string) string, db *catalog.DB, stdout io.Writer) error {
	keyring := c.keyring
	store, err := storage.Open(ctx, c.StorageURL, config.WithValues(getenv, "AZURE_STORAGE_CONNECTION_STRING", c.AzureConnection))
	if err != nil {
		return err
	}
	// verify holds the KEK and decodes what it decrypts: ffprobe runs in
	// the same sandbox as the worker's.
	x, err := transcode.NewExec(transcode.ExecConfig{Sandbox: c.DecoderSandbox, FFprobe: c.FFprobe})
	if err != nil {
		return err
	}
	if err := x.Check(ctx, transcode.FFprobe); err != nil {
		return err
	}
	v := &verify.Verifier{Store: store, DB: db, Keyring: keyring, Exec: x}
	rep, err := v.Verify(ctx, c.Video)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "video %s version %d (%d key periods: %s)\n", rep.Video, rep.Version, len(rep.KeyIDs), strings.Join(rep.KeyIDs, " "))
	for _, p := range rep.Problems {
		fmt.Fprintf(stdout, "  PROBLEM %s\n", p)
	}
	for _, r := range rep.Renditions {
		status := "ok"
		if len(r.Problems) > 0 {
			status = "FAILED"
		}
		fmt.Fprintf(stdout, "  %-8s %-6s %3d segments  %9d bytes  playlist %.3fs  decoded %.3fs, %d frames\n",
			r.Name, status, r.Segments, r.EncryptedBytes, r.PlaylistDuration, r.DecodedDuration, r.DecodedFrames)
		for _, p := range r.Problems {
			fmt.Fprintf(stdout, "    PROBLEM %s\n", p)
		}
	}
	if !rep.OK() {
		return fmt.Errorf("verify: video %s version %d has problems", rep.Video, rep.Version)
	}
	fmt.Fprintln(stdout, "verified: every segment decrypts to MPEG-TS or fragmented MP4 and every rendition decodes")
	return nil
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
