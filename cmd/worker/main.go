// Command worker consumes packaging jobs: it turns uploaded videos into
// AES-128 encrypted HLS, stores segments and playlists in blob storage and
// the wrapped keys in PostgreSQL.
//
//	worker            run the worker (default)
//	worker migrate    apply the database migrations and exit
//	worker gc         one garbage-collection pass, then exit
//	worker rewrap-keys  wrap every content key under the primary KEK
//	worker help [cmd]   usage (also -h, --help); worker --version
//
// Flags may come before or after the command. The configuration (Config)
// is parsed and validated before anything connects: a bad value exits 1
// listing every problem, a bad command line exits 2.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"

	"github.com/hlsvault/hlsvault/internal/backfill"
	"github.com/hlsvault/hlsvault/internal/catalog"
	"github.com/hlsvault/hlsvault/internal/config"
	"github.com/hlsvault/hlsvault/internal/deletions"
	"github.com/hlsvault/hlsvault/internal/gc"
	"github.com/hlsvault/hlsvault/internal/keys"
	"github.com/hlsvault/hlsvault/internal/pipeline"
	"github.com/hlsvault/hlsvault/internal/storage"
	"github.com/hlsvault/hlsvault/internal/transcode"
	"github.com/hlsvault/hlsvault/internal/worker"
	"github.com/hlsvault/hlsvault/jobs"
)

func main() {
	// Everything the worker writes (the job's source and ffmpeg's
	// segments, file:// objects) is private to its user.
	syscall.Umask(0o077)
	// The first SIGTERM (or ^C) stops the worker: ctx. SIGTSTP drains it
	// (asynq's convention; caught, so it never suspends the process), and
	// while it drains a second SIGTERM cancels the running jobs: kill.
	terms := make(chan os.Signal, 2)
	signal.Notify(terms, os.Interrupt, syscall.SIGTERM)
	ctx, stop := context.WithCancel(context.Background())
	kill, killNow := context.WithCancel(context.Background())
	go func() {
		<-terms
		stop()
		<-terms
		killNow()
	}()
	drain, stopDrain := signal.NotifyContext(context.Background(), syscall.SIGTSTP)
	defer stopDrain()
	if err := runWith(ctx, signals{drain: drain, kill: kill}, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		os.Exit(config.ExitCode(err)) // 2: bad command line; 1: anything else
	}
}

// Pipeline timeouts: one attempt of a job may run TimeoutBase +
// TimeoutFactor × the source's duration, so the longest possible job is
// that for MAX_SOURCE_DURATION. GC_GRACE must exceed it.
const (
	jobTimeoutBase   = 2 * time.Minute
	jobTimeoutFactor = 4
)

// longestJob is the per-attempt deadline of a source of duration d.
func longestJob(d time.Duration) time.Duration {
	return jobTimeoutBase + time.Duration(jobTimeoutFactor*float64(d))
}

// Config is the worker's configuration, and its tags are the ONE table of
// its settings: the environment variable, its default, the flag that
// overrides it (none for secrets) and its help. README.md's tables are
// checked against it (TestREADMEConfigTable).
type Config struct {
	RedisURL          string          `env:"REDIS_URL" envDefault:"redis://127.0.0.1:6379/0" flag:"redis-url" help:"Redis URL" file:"true"`
	DatabaseURL       string          `env:"DATABASE_URL" envDefault:"postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable" flag:"database-url" help:"PostgreSQL URL" file:"true"`
	StorageURL        string          `env:"STORAGE_URL,expand" envDefault:"file://$TMPDIR/hlsvault/storage" flag:"storage-url" help:"file:///abs/dir or azblob://container"`
	AzureConnection   string          `env:"AZURE_STORAGE_CONNECTION_STRING" secret:"true"`
	KEK               string          `env:"KEY_ENCRYPTION_KEY" secret:"true"`
	RetiredKEKs       string          `env:"KEY_ENCRYPTION_KEYS_RETIRED" secret:"true"`
	KeyURITemplate    string          `env:"KEY_URI_TEMPLATE" envDefault:"http://127.0.0.1:8080/v1/keys/{key_id}" flag:"key-uri-template" help:"EXT-X-KEY URI with {key_id}"`
	Ladder            string          `env:"LADDER" envDefault:"1080p:5000k:128k,720p:2800k:128k,480p:1400k:128k,360p:800k:96k" flag:"ladder" help:"ABR ladder: name:video bitrate[:audio bitrate],…"`
	SegmentFormat     string          `env:"SEGMENT_FORMAT" envDefault:"ts" flag:"segment-format" help:"segment container: ts (MPEG-TS) or fmp4 (fragmented MP4, needed by HEVC rungs)"`
	SegmentSeconds    float64         `env:"SEGMENT_SECONDS" envDefault:"4" flag:"segment-seconds" help:"target segment duration in seconds (1-30)"`
	KeyPeriod         time.Duration   `env:"KEY_PERIOD" envDefault:"5m" flag:"key-period" help:"media time one content key encrypts; 0: one key per version"`
	ChunkSeconds      int             `env:"CHUNK_SECONDS" envDefault:"0" flag:"chunk-seconds" help:"media per chunk of a chunked parallel transcode, in whole seconds; 0 disables"`
	Preset            string          `env:"X264_PRESET" envDefault:"veryfast" flag:"preset" help:"x264 preset (ultrafast … placebo)"`
	Concurrency       int             `env:"WORKER_CONCURRENCY" envDefault:"1" flag:"concurrency" help:"jobs at once; ffmpeg uses every core, so 1 per machine"`
	UploadConcurrency int             `env:"UPLOAD_CONCURRENCY" envDefault:"16" flag:"upload-concurrency" help:"parallel segment uploads per job (1-256)"`
	MaxSourceBytes    config.ByteSize `env:"MAX_SOURCE_BYTES" envDefault:"20GiB" flag:"max-source-bytes" help:"largest accepted source, e.g. 20GiB, 500MB or plain bytes"`
	MaxSourceDuration time.Duration   `env:"MAX_SOURCE_DURATION" envDefault:"6h" flag:"max-source-duration" help:"longest accepted source"`
	MetricsAddr       string          `env:"METRICS_ADDR" envDefault:"127.0.0.1:9464" flag:"metrics-addr" help:"address of /metrics and /healthz; off disables"`
	ShutdownTimeout   time.Duration   `env:"SHUTDOWN_TIMEOUT" envDefault:"20s" flag:"shutdown-timeout" help:"how long a shutdown waits for jobs to stop and clean up"`
	TempDir           string          `env:"TMPDIR" envDefault:"/tmp" flag:"temp-dir" help:"private work directories go here (absolute path)"`
	FFmpeg            string          `env:"FFMPEG" envDefault:"ffmpeg" flag:"ffmpeg" help:"ffmpeg binary"`
	FFprobe           string          `env:"FFPROBE" envDefault:"ffprobe" flag:"ffprobe" help:"ffprobe binary"`
	DecoderSandbox    string          `env:"DECODER_SANDBOX" envDefault:"bwrap" flag:"decoder-sandbox" help:"how ffmpeg and ffprobe run: bwrap (bubblewrap sandbox) or none (weaker isolation)"`
	LogLevel          string          `env:"LOG_LEVEL" envDefault:"info" flag:"log-level" help:"debug, info, warn or error"`
	QueuePrefix       string          `env:"QUEUE_PREFIX" envDefault:"hls" flag:"queue-prefix" help:"queue names are PREFIX-transcode-high, PREFIX-transcode, PREFIX-transcode-low and PREFIX-background"`
	GCGrace           time.Duration   `env:"GC_GRACE" envDefault:"48h" flag:"gc-grace" help:"a retired version stays playable this long before it is removed; must exceed the longest job"`
	WorkerID          string          `env:"WORKER_ID" flag:"worker-id" help:"the worker attribute of every log line (default hostname:pid)"`
	SourceAttempts    int             `env:"SOURCE_NOT_FOUND_ATTEMPTS" envDefault:"3" flag:"source-not-found-attempts" help:"attempts that find the source object missing before the job fails as bad input (1-100)"`
	GCInterval        config.Interval `env:"GC_INTERVAL" envDefault:"15m" flag:"gc-interval" help:"how often the garbage collector runs; off disables it in the worker"`
	AllowShortGrace   bool            `env:"GC_ALLOW_SHORT_GRACE" envDefault:"false" flag:"allow-short-gc-grace" help:"accept a GC_GRACE shorter than the longest possible job (tests only)"`

	// Thumbnail storyboard (internal/pipeline/storyboard.go).
	Storyboard         string        `env:"STORYBOARD" envDefault:"on" flag:"storyboard" help:"on: publish a thumbnail storyboard (sprites + WebVTT) with every transcode; off: none"`
	StoryboardInterval time.Duration `env:"STORYBOARD_INTERVAL" envDefault:"5s" flag:"storyboard-interval" help:"time between storyboard thumbnails (100ms-10m); longer titles stretch it to at most 1000 thumbnails"`

	// Completion events as Standard Webhooks (cmd/worker/webhooks.go).
	WebhookURLs        string `env:"WEBHOOK_URLS" flag:"webhook-urls" file:"true" help:"comma-separated http(s) URLs that receive every event as a signed webhook; empty: none"`
	WebhookSecret      string `env:"WEBHOOK_SECRET" secret:"true"`
	WebhookConcurrency int    `env:"WEBHOOK_CONCURRENCY" envDefault:"4" flag:"webhook-concurrency" help:"webhook deliveries at once (1-64), never taking a transcode slot"`

	ladder   transcode.Ladder        // parsed LADDER
	segments transcode.SegmentFormat // parsed SEGMENT_FORMAT
	keyring  *keys.Keyring           // parsed KEK variables (run, rewrap-keys)

	webhooks webhookSettings // parsed WEBHOOK_* variables (run)
}

// validate checks ranges and forms, for the subcommand cmd, and adds every
// problem to p.
func (c *Config) validate(cmd string, p *config.Problems) {
	p.Check(config.ValidRedisURL(c.RedisURL), "REDIS_URL", config.FormRedisURL)
	p.Check(config.ValidDatabaseURL(c.DatabaseURL), "DATABASE_URL", config.FormDatabaseURL)
	p.Check(config.ValidStorageURL(c.StorageURL), "STORAGE_URL", config.FormStorageURL)
	p.Check(config.ValidKeyURITemplate(c.KeyURITemplate), "KEY_URI_TEMPLATE", config.FormKeyURI)
	var err error
	if c.ladder, err = transcode.ParseLadder(c.Ladder); err != nil {
		p.Add("LADDER", "rungs as name:video bitrate[:audio bitrate], e.g. 720p:2800k:128k,360p:800k ("+err.Error()+")")
	}
	if c.segments, err = transcode.ParseSegmentFormat(c.SegmentFormat); err != nil {
		p.Add("SEGMENT_FORMAT", "ts or fmp4")
	} else if err := c.ladder.CheckSegments(c.segments); c.ladder != nil && err != nil {
		p.Add("LADDER", "HEVC rungs (:hevc) need SEGMENT_FORMAT=fmp4")
	}
	p.Check(c.SegmentSeconds >= 1 && c.SegmentSeconds <= 30, "SEGMENT_SECONDS", "a number of seconds from 1 to 30")
	p.Check(c.KeyPeriod == 0 || c.KeyPeriod >= time.Second, "KEY_PERIOD", "a Go duration of at least 1s such as 5m, or 0 for one key per version")
	p.Check(c.ChunkSeconds == 0 || (float64(c.ChunkSeconds) >= c.SegmentSeconds && c.ChunkSeconds <= 6*3600), "CHUNK_SECONDS",
		"0 (no chunking) or whole seconds from SEGMENT_SECONDS to 21600 such as 60")
	p.Check(config.ValidPreset(c.Preset), "X264_PRESET", config.FormPreset)
	p.Check(c.Storyboard == "on" || c.Storyboard == "off", "STORYBOARD", "on or off")
	p.Check(c.StoryboardInterval >= transcode.MinStoryboardInterval && c.StoryboardInterval <= 10*time.Minute, "STORYBOARD_INTERVAL",
		"a Go duration from 100ms to 10m such as 5s")
	p.Check(c.Concurrency >= 1 && c.Concurrency <= 256, "WORKER_CONCURRENCY", "an integer from 1 to 256")
	p.Check(c.UploadConcurrency >= 1 && c.UploadConcurrency <= 256, "UPLOAD_CONCURRENCY", "an integer from 1 to 256")
	p.Check(c.MaxSourceBytes > 0, "MAX_SOURCE_BYTES", "a positive byte size such as 20GiB, 500MB or 1048576")
	p.Check(c.MaxSourceDuration > 0, "MAX_SOURCE_DURATION", "a positive Go duration such as 6h")
	p.Check(config.ValidAddr(c.MetricsAddr, true), "METRICS_ADDR", config.FormAddr)
	p.Check(c.ShutdownTimeout > 0, "SHUTDOWN_TIMEOUT", "a positive Go duration such as 20s")
	p.Check(filepath.IsAbs(c.TempDir), "TMPDIR", "an absolute directory such as /tmp")
	if cmd == "run" {
		_, err := exec.LookPath(c.FFmpeg)
		p.Check(err == nil, "FFMPEG", "an ffmpeg executable: a name on PATH or a path")
		_, err = exec.LookPath(c.FFprobe)
		p.Check(err == nil, "FFPROBE", "an ffprobe executable: a name on PATH or a path")
		p.Check(c.DecoderSandbox == transcode.SandboxBwrap || c.DecoderSandbox == transcode.SandboxNone, "DECODER_SANDBOX",
			"bwrap (ffmpeg and ffprobe in a bubblewrap sandbox) or none (no sandbox: weaker isolation)")
	}
	p.Check(config.ValidLogLevel(c.LogLevel), "LOG_LEVEL", config.FormLogLevel)
	p.Check(len(c.WorkerID) <= 200 && !strings.ContainsFunc(c.WorkerID, func(r rune) bool { return r <= ' ' || r == 0x7f }),
		"WORKER_ID", "at most 200 characters without spaces or control characters, such as worker-3, or empty for hostname:pid")
	p.Check(c.SourceAttempts >= 1 && c.SourceAttempts <= 100, "SOURCE_NOT_FOUND_ATTEMPTS", "an integer from 1 to 100")
	p.Check(c.QueuePrefix != "" && !strings.ContainsAny(c.QueuePrefix, " \t\n:"), "QUEUE_PREFIX", "a name without spaces or colons such as hls")
	p.Check(c.GCInterval != 0, "GC_INTERVAL", "a Go duration such as 15m, or off")
	if !p.Failed("GC_GRACE") && !p.Failed("MAX_SOURCE_DURATION") {
		longest := longestJob(c.MaxSourceDuration)
		switch {
		case c.GCGrace <= 0:
			p.Add("GC_GRACE", "a positive Go duration such as 48h")
		case c.GCGrace < longest && !c.AllowShortGrace:
			p.Add("GC_GRACE", fmt.Sprintf("at least %v, the longest possible job (2m + 4 × MAX_SOURCE_DURATION %v), such as 48h; "+
				"a shorter grace may delete what a running job still publishes: override with --allow-short-gc-grace or GC_ALLOW_SHORT_GRACE=true",
				longest, c.MaxSourceDuration))
		}
	}
	if (cmd == "run" || cmd == "gc") && strings.HasPrefix(c.StorageURL, "azblob:") {
		p.Check(c.AzureConnection != "", "AZURE_STORAGE_CONNECTION_STRING", "the storage account's connection string (azblob:// storage)")
	}
	if cmd == "run" || cmd == "rewrap-keys" {
		c.keyring = config.CheckKeyring(p, c.KEK, c.RetiredKEKs)
	}
	if cmd == "run" {
		c.validateWebhooks(p)
	}
}

// commands are the worker's subcommands and their usage.
var commands = map[string]string{
	"run":         "worker [run] [flags]\n  Run the worker: consume jobs until SIGTERM (the default command).\n  SIGTSTP drains it: no new jobs, the running ones finish; a SIGTERM then exits once they have.",
	"migrate":     "worker migrate [flags]\n  Apply the database migrations and exit.",
	"gc":          "worker gc [flags]\n  One garbage-collection pass: remove versions retired and legacy objects re-encrypted more than GC_GRACE ago, then exit.",
	"rewrap-keys": "worker rewrap-keys [flags]\n  Wrap every content key under the primary KEK (KEY_ENCRYPTION_KEY), after a rotation.\n  Refused, before anything changes, while a live worker or gateway (kek_holders heartbeat) does not hold that KEK.",
}

const usageHead = `usage: worker [command] [flags]

commands:
  run          run the worker (default)
  migrate      apply the database migrations and exit
  gc           one garbage-collection pass, then exit
  rewrap-keys  wrap every content key under the primary KEK
  help [cmd]   print this help, or a command's

Flags may come before or after the command; each flag overrides the
environment variable named in its help.
`

func printUsage(w io.Writer, cmd string, s *config.Settings, fs *flag.FlagSet) {
	if u, ok := commands[cmd]; ok && cmd != "" {
		fmt.Fprintf(w, "usage: %s\n\nflags:\n", u)
	} else {
		fmt.Fprint(w, usageHead, "\nflags:\n")
	}
	s.PrintFlags(w, fs)
}

// parseConfig parses the command line and the environment into a Config,
// validated for its subcommand. help is true when usage or the version was
// printed (nothing else must run).
func parseConfig(args []string, getenv func(string) string, stdout io.Writer) (cfg Config, cmd string, help bool, err error) {
	s := config.NewSettings(&cfg, getenv)
	fs := config.NewFlagSet("worker")
	s.Register(fs)
	pos, err := config.ParseArgs(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		cmd := ""
		if len(pos) == 0 {
			for _, a := range args {
				if _, ok := commands[a]; ok {
					cmd = a
					break
				}
			}
		}
		printUsage(stdout, cmd, s, fs)
		return cfg, "", true, nil
	}
	if err != nil {
		return cfg, "", false, config.Usagef("%v (see worker --help)", err)
	}
	if s.VersionRequested() {
		fmt.Fprintln(stdout, config.Version("worker"))
		return cfg, "", true, nil
	}
	cmd = "run"
	if len(pos) > 0 {
		cmd = pos[0]
	}
	if cmd == "help" {
		if len(pos) > 2 {
			return cfg, "", false, config.Usagef("help: unexpected argument %q (see worker --help)", pos[2])
		}
		topic := ""
		if len(pos) == 2 {
			if topic = pos[1]; commands[topic] == "" {
				return cfg, "", false, config.Usagef("help: unknown command %q (want run, migrate, gc or rewrap-keys)", topic)
			}
		}
		printUsage(stdout, topic, s, fs)
		return cfg, "", true, nil
	}
	if _, ok := commands[cmd]; !ok {
		return cfg, "", false, config.Usagef("unknown command %q (want run, migrate, gc or rewrap-keys; see worker --help)", cmd)
	}
	if len(pos) > 1 {
		return cfg, "", false, config.Usagef("%s: unexpected argument %q (see worker help %s)", cmd, pos[1], cmd)
	}
	p := s.Parse(&cfg)
	cfg.validate(cmd, p)
	return cfg, cmd, false, p.Err()
}

// signals are the operator's controls besides the stop (run's ctx, the
// first SIGTERM): drain is done at SIGTSTP, kill at a second SIGTERM. main
// builds them from the process's signals; a nil one never happens.
type signals struct {
	drain, kill context.Context
}

func (s signals) orNever() signals {
	if s.drain == nil {
		s.drain = context.Background()
	}
	if s.kill == nil {
		s.kill = context.Background()
	}
	return s
}

// run runs the command in args until ctx is done (SIGTERM), without drain
// signals.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	return runWith(ctx, signals{}, args, getenv, stdout, stderr)
}

func runWith(ctx context.Context, sig signals, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, cmd, help, err := parseConfig(args, getenv, stdout)
	if err != nil || help {
		return err
	}
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: config.LogLevel(cfg.LogLevel)})).
		With("worker", workerID(cfg.WorkerID))

	switch cmd {
	case "run":
		return runWorker(ctx, sig.orNever(), cfg, getenv, log)
	case "migrate":
		db, err := openCatalog(ctx, cfg, log)
		if err != nil {
			return err
		}
		defer db.Close()
		fmt.Fprintln(stdout, "migrations applied")
		return nil
	case "gc":
		return runGC(ctx, cfg, getenv, log, stdout)
	default: // "rewrap-keys"
		return runRewrap(ctx, cfg, log, stdout)
	}
}

// workerID is the worker attribute of every log line: WORKER_ID, or
// hostname:pid.
func workerID(id string) string {
	if id != "" {
		return id
	}
	host, err := os.Hostname()
	if err != nil {
		host = "unknown-host"
	}
	return fmt.Sprintf("%s:%d", host, os.Getpid())
}

// checkRedis refuses to start the worker while Redis is unreachable:
// asynq itself would start anyway and only log dequeue errors.
func checkRedis(ctx context.Context, redisURL string) error {
	opt, err := redis.ParseURL(redisURL)
	if err != nil {
		return fmt.Errorf("REDIS_URL: %w", err)
	}
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := rdb.Ping(ctx).Err(); err != nil {
		// The address, never the URL: it may hold a password.
		return fmt.Errorf("redis at %s (REDIS_URL) is unreachable: %w", opt.Addr, err)
	}
	return nil
}

// decoder builds the one Exec that starts every ffmpeg and ffprobe, and
// checks once that it can run them: a sandbox that does not work here (no
// bubblewrap, no user namespaces for this user) stops the worker.
func decoder(ctx context.Context, cfg Config, log *slog.Logger) (*transcode.Exec, error) {
	x, err := transcode.NewExec(transcode.ExecConfig{Sandbox: cfg.DecoderSandbox, FFmpeg: cfg.FFmpeg, FFprobe: cfg.FFprobe})
	if err != nil {
		return nil, err
	}
	if err := x.Check(ctx); err != nil {
		return nil, err
	}
	if x.Mode() == transcode.SandboxNone {
		log.Warn("DECODER_SANDBOX=none: ffmpeg and ffprobe run unsandboxed; they get only PATH and LANG, but share the worker's "+
			"user, files and /proc, so a decoder exploit can read the worker's environment (its secrets): isolation is weaker",
			"uid", os.Getuid())
	} else {
		log.Info("decoder sandbox ready", "sandbox", x.Mode(), "ffmpeg", x.FFmpeg(), "ffprobe", x.FFprobe())
	}
	return x, nil
}

func runWorker(ctx context.Context, sig signals, cfg Config, getenv func(string) string, log *slog.Logger) error {
	keyring, ladder := cfg.keyring, cfg.ladder
	dec, err := decoder(ctx, cfg, log)
	if err != nil {
		return err
	}
	redisOpt, err := config.RedisOpt(cfg.RedisURL)
	if err != nil {
		return err
	}
	db, err := openCatalog(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := checkRedis(ctx, cfg.RedisURL); err != nil {
		return err
	}
	// The KEKs this worker holds, for rewrap-keys' check; the row is
	// deleted again on shutdown (deferred before db.Close runs).
	holder, err := catalog.NewKEKHolder("worker", keyring.IDs())
	if err != nil {
		return err
	}
	beat, err := db.StartHeartbeat(ctx, holder, catalog.HeartbeatInterval, log)
	if err != nil {
		return err
	}
	defer beat.Stop(ctx)
	store, err := storage.Open(ctx, cfg.StorageURL, config.WithValues(getenv, "AZURE_STORAGE_CONNECTION_STRING", cfg.AzureConnection))
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	lim := transcode.DefaultLimits()
	lim.MaxBytes, lim.MaxDuration = int64(cfg.MaxSourceBytes), cfg.MaxSourceDuration
	// The pipeline enqueues the pieces of chunked transcodes.
	enq := asynq.NewClient(redisOpt)
	defer enq.Close()
	pipe, err := pipeline.New(pipeline.Config{
		Exec: dec, Ladder: ladder, Segments: cfg.segments,
		Segment: time.Duration(cfg.SegmentSeconds * float64(time.Second)), Limits: lim, Preset: cfg.Preset,
		TempDir: cfg.TempDir, KeyURITemplate: cfg.KeyURITemplate, UploadConcurrency: cfg.UploadConcurrency,
		TimeoutBase: jobTimeoutBase, TimeoutFactor: jobTimeoutFactor, KeyPeriod: cfg.KeyPeriod,
		SourceAttempts: cfg.SourceAttempts,
		Storyboard:     pipeline.StoryboardConfig{Enabled: cfg.Storyboard == "on", Interval: cfg.StoryboardInterval},
		Chunk:          time.Duration(cfg.ChunkSeconds) * time.Second, Enqueuer: enq,
	}, store, db, keyring, log, pipeline.NewMetrics(reg))
	if err != nil {
		return err
	}
	bf, err := backfill.New(backfill.Config{
		Queues: jobs.QueueNames(cfg.QueuePrefix), KeyURITemplate: cfg.KeyURITemplate, Concurrency: cfg.UploadConcurrency,
		KeyPeriod: cfg.KeyPeriod,
	}, store, db, keyring, redisOpt, log)
	if err != nil {
		return err
	}
	defer bf.Close()

	queues := jobs.QueueNames(cfg.QueuePrefix)
	srv, err := worker.New(worker.Config{Concurrency: cfg.Concurrency, Queues: queues, ShutdownTimeout: cfg.ShutdownTimeout},
		redisOpt, log, worker.Handlers{
			jobs.TypeTranscode: pipe,
			// Chunked transcodes' pieces and joins (any worker takes any).
			jobs.TypeTranscodePiece: asynq.HandlerFunc(pipe.ProcessPiece),
			jobs.TypeTranscodeJoin:  asynq.HandlerFunc(pipe.ProcessJoin),
			// Backfill batches and ticks (low-priority queue).
			backfill.TypeBatch: asynq.HandlerFunc(bf.HandleBatch),
			backfill.TypeTick:  asynq.HandlerFunc(bf.HandleTick),
		})
	if err != nil {
		return err
	}

	// Every task server of this process: a drain stops them all, a
	// shutdown stops them all, /healthz reports their drain. (Webhook
	// deliveries have their own asynq server, startWebhooks: short
	// requests retried for a day, they go on while the worker drains and
	// stop at its exit.)
	servers := []*worker.Server{srv}
	defer registerOpsMetrics(reg, redisOpt, db, srv, queues, cfg.QueuePrefix, log)()

	if cfg.MetricsAddr != "off" {
		stopHTTP, err := serveMetrics(cfg.MetricsAddr, reg, health{db: db, store: store, servers: servers}, redisOpt, log)
		if err != nil {
			return err
		}
		defer stopHTTP()
	}
	stopPeriodic := func() {} // stops the garbage collector's passes
	if !cfg.GCInterval.Off() {
		notify, closeNotify, err := deletionNotifier(cfg)
		if err != nil {
			return err
		}
		defer closeNotify()
		collector, err := gc.New(gc.Config{Grace: cfg.GCGrace, Interval: time.Duration(cfg.GCInterval),
			Legacy: backfill.NewPurger(db, store, log)}, db, store, notify, log)
		if err != nil {
			return err
		}
		gcCtx, cancelGC := context.WithCancel(ctx)
		var gcDone sync.WaitGroup
		gcDone.Go(func() { collector.Run(gcCtx) })
		stopPeriodic = func() { cancelGC(); gcDone.Wait() }
		defer stopPeriodic()
	}
	stopWebhooks, err := startWebhooks(ctx, cfg, db, redisOpt, reg, log)
	if err != nil {
		return err
	}
	defer stopWebhooks()
	// Handlers run under a context that no signal cancels: srv.Shutdown
	// cancels it at a SIGTERM (ffmpeg stops at once), a drain does not.
	if err := srv.Start(context.WithoutCancel(ctx)); err != nil {
		return err
	}
	if err := bf.Recover(ctx); err != nil {
		log.Warn("backfill: resume running runs", "err", err)
	}
	log.Info("worker started", "storage", store.String(), "queues", []string{queues.TranscodeHigh, queues.Transcode, queues.TranscodeLow, queues.Background},
		"concurrency", cfg.Concurrency, "kek", keyring.Primary().ID())
	serve(ctx, sig, log, stopPeriodic, servers...)
	return nil
}

// serve waits until the worker should exit, then shuts the servers down.
// A SIGTERM (ctx) without a drain cancels the running tasks: they go back
// to the queue without a spent retry. A drain (SIGTSTP) stops taking tasks
// and the periodic work (garbage collection; backfill ticks are tasks),
// lets the running tasks finish, and the worker exits at SIGTERM once they
// have; a second SIGTERM while they still run cancels them as above.
func serve(ctx context.Context, sig signals, log *slog.Logger, stopPeriodic func(), servers ...*worker.Server) {
	defer func() {
		for _, s := range servers {
			s.Shutdown()
		}
	}()
	select {
	case <-ctx.Done():
	case <-sig.drain.Done():
	}
	if sig.drain.Err() == nil {
		return // SIGTERM without a drain
	}
	stopPeriodic()
	drained := make(chan struct{})
	go func() {
		var wg sync.WaitGroup
		for _, s := range servers {
			wg.Go(func() { _ = s.Drain(sig.kill) })
		}
		wg.Wait()
		close(drained)
	}()
	select {
	case <-drained:
	case <-ctx.Done():
		select {
		case <-drained:
		default:
			log.Info(fmt.Sprintf("SIGTERM while draining: exiting once %d tasks finish (SIGTERM again cancels them)", running(servers)),
				"running", running(servers))
		}
	}
	<-drained // every task finished, or a second SIGTERM
	<-ctx.Done()
}

func running(servers []*worker.Server) int {
	n := 0
	for _, s := range servers {
		n += s.Running()
	}
	return n
}

// deletionNotifier publishes the garbage collector's deletion notices on
// REDIS_URL, for the gateways (package deletions).
func deletionNotifier(cfg Config) (*deletions.Publisher, func(), error) {
	opt, err := redis.ParseURL(cfg.RedisURL)
	if err != nil {
		return nil, nil, fmt.Errorf("REDIS_URL: %w", err)
	}
	rdb := redis.NewClient(opt)
	p, err := deletions.NewPublisher(rdb, deletions.Channel)
	if err != nil {
		rdb.Close()
		return nil, nil, err
	}
	return p, func() { rdb.Close() }, nil
}

func runGC(ctx context.Context, cfg Config, getenv func(string) string, log *slog.Logger, stdout io.Writer) error {
	db, err := openCatalog(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer db.Close()
	store, err := storage.Open(ctx, cfg.StorageURL, config.WithValues(getenv, "AZURE_STORAGE_CONNECTION_STRING", cfg.AzureConnection))
	if err != nil {
		return err
	}
	notify, closeNotify, err := deletionNotifier(cfg)
	if err != nil {
		return err
	}
	defer closeNotify()
	collector, err := gc.New(gc.Config{Grace: cfg.GCGrace, Legacy: backfill.NewPurger(db, store, log)}, db, store, notify, log)
	if err != nil {
		return err
	}
	res, err := collector.RunOnce(ctx)
	if err != nil {
		return err
	}
	if !res.Ran {
		fmt.Fprintln(stdout, "another worker is collecting garbage; nothing done")
		return nil
	}
	fmt.Fprintf(stdout, "removed %d versions (%d objects, %d bytes) older than %v\n", res.Versions, res.Objects, res.Bytes, cfg.GCGrace)
	fmt.Fprintf(stdout, "removed the legacy objects of %d re-encrypted titles (%d objects) older than %v\n", res.LegacyTitles, res.LegacyObjects, cfg.GCGrace)
	return nil
}

// runRewrap rotates the KEK: KEY_ENCRYPTION_KEY is the new KEK and
// KEY_ENCRYPTION_KEYS_RETIRED holds the old ones until this has run.
func runRewrap(ctx context.Context, cfg Config, log *slog.Logger, stdout io.Writer) error {
	keyring := cfg.keyring
	db, err := openCatalog(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer db.Close()
	primary := keyring.Primary()
	live, err := db.LiveKEKHolders(ctx)
	if err != nil {
		return err
	}
	// Refused inside RewrapKeys, before anything changes, when a live worker
	// or gateway lacks the new KEK. A live worker whose primary is another
	// KEK still wraps its new keys under that one: say so.
	for _, h := range live {
		if h.Program == "worker" && h.PrimaryKEK != primary.ID() && h.Holds(primary.ID()) {
			fmt.Fprintf(stdout, "note: %s still wraps new keys under %s; after switching it, run rewrap-keys again\n", h, h.PrimaryKEK)
		}
	}
	n, err := db.RewrapKeys(ctx, primary.ID(), 500, func(kekID, keyID string, wrapped []byte) (string, []byte, error) {
		ck, err := keyring.Unwrap(kekID, keyID, wrapped)
		if err != nil {
			return "", nil, err
		}
		w, err := primary.Wrap(keyID, ck)
		return primary.ID(), w, err
	})
	if err != nil {
		return err
	}
	usage, err := db.KEKUsage(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "checked %d live workers and gateways: all hold %s\n", len(live), primary.ID())
	fmt.Fprintf(stdout, "rewrapped %d keys under %s; keys by KEK: %v\n", n, primary.ID(), usage)
	return nil
}

// openCatalog connects to PostgreSQL and applies the embedded migrations
// (safe when several workers start at once).
func openCatalog(ctx context.Context, cfg Config, log *slog.Logger) (*catalog.DB, error) {
	db, err := catalog.Open(ctx, cfg.DatabaseURL, log)
	if err != nil {
		return nil, fmt.Errorf("postgresql at %s (DATABASE_URL) is unreachable: %w", dbAddr(cfg.DatabaseURL), err)
	}
	if err := db.Migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// health is what /healthz checks.
type health struct {
	db      *catalog.DB
	store   storage.Store
	servers []*worker.Server
}

// dbAddr is DATABASE_URL's host:port, for messages (never the URL: it may
// hold a password).
func dbAddr(databaseURL string) string {
	c, err := pgconn.ParseConfig(databaseURL)
	if err != nil {
		return "an unparsable address"
	}
	return net.JoinHostPort(c.Host, strconv.Itoa(int(c.Port)))
}

// serveMetrics serves /metrics and /healthz. /healthz answers 200 "ok", or
// 503 with one line per problem: "draining: N tasks running" (or
// "drained") once SIGTSTP was received, so that an orchestrator or a
// monitor sees the worker is leaving, then each unreachable dependency
// (postgres, redis, storage) with its error.
func serveMetrics(addr string, reg *prometheus.Registry, h health, redisOpt asynq.RedisConnOpt, log *slog.Logger) (func(), error) {
	insp := asynq.NewInspector(redisOpt)
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
		defer cancel()
		var problems []string
		if len(h.servers) > 0 && h.servers[0].Draining() {
			if n := running(h.servers); n > 0 {
				problems = append(problems, fmt.Sprintf("draining: %d tasks running", n))
			} else {
				problems = append(problems, "drained")
			}
		}
		if err := h.db.Ping(ctx); err != nil {
			problems = append(problems, "postgres: "+err.Error())
		}
		if _, err := insp.Queues(); err != nil {
			problems = append(problems, "redis: "+err.Error())
		}
		if err := h.store.Probe(ctx); err != nil {
			problems = append(problems, "storage: "+err.Error())
		}
		if len(problems) > 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			for _, p := range problems {
				fmt.Fprintln(w, p)
			}
			return
		}
		fmt.Fprintln(w, "ok")
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: listen %s: %w", addr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server", "err", err)
		}
	}()
	log.Info("metrics listening", "addr", ln.Addr().String())
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		_ = insp.Close()
	}, nil
}
