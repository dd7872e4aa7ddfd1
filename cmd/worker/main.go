// Command worker consumes packaging jobs: it turns uploaded videos into
// AES-128 encrypted HLS, stores segments and playlists in blob storage and
// the wrapped keys in PostgreSQL.
//
//	worker            run the worker (default)
//	worker migrate    apply the database migrations and exit
//	worker gc         one garbage-collection pass, then exit
//	worker rewrap-keys  wrap every content key under the primary KEK
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
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/hlsvault/hlsvault/internal/backfill"
	"github.com/hlsvault/hlsvault/internal/catalog"
	"github.com/hlsvault/hlsvault/internal/config"
	"github.com/hlsvault/hlsvault/internal/gc"
	"github.com/hlsvault/hlsvault/internal/pipeline"
	"github.com/hlsvault/hlsvault/internal/storage"
	"github.com/hlsvault/hlsvault/internal/transcode"
	"github.com/hlsvault/hlsvault/internal/worker"
	"github.com/hlsvault/hlsvault/jobs"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		os.Exit(1)
	}
}

// Config is the worker's configuration: flags, defaulting from the
// environment.
type Config struct {
	RedisURL          string
	DatabaseURL       string
	StorageURL        string
	KEK               string
	RetiredKEKs       string
	KeyURITemplate    string
	Ladder            string
	SegmentSeconds    float64
	Preset            string
	Concurrency       int
	UploadConcurrency int
	MetricsAddr       string
	ShutdownTimeout   time.Duration
	TempDir           string
	FFmpeg, FFprobe   string
	MaxSourceBytes    int64
	MaxSourceDuration time.Duration
	LogLevel          string
	QueuePrefix       string
	GCGrace           time.Duration
	GCInterval        time.Duration
}

func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (Config, []string, error) {
	var c Config
	env := func(k, def string) string { return config.Getenv(getenv, k, def) }
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.RedisURL, "redis-url", env("REDIS_URL", config.DefaultRedisURL), "Redis URL (REDIS_URL)")
	fs.StringVar(&c.DatabaseURL, "database-url", env("DATABASE_URL", config.DefaultDatabaseURL), "PostgreSQL URL (DATABASE_URL)")
	fs.StringVar(&c.StorageURL, "storage-url", env("STORAGE_URL", config.DefaultStorageURL()), "file:///dir or azblob://container (STORAGE_URL)")
	c.KEK = getenv("KEY_ENCRYPTION_KEY") // never a flag: it would show in argv
	c.RetiredKEKs = getenv("KEY_ENCRYPTION_KEYS_RETIRED")
	fs.StringVar(&c.KeyURITemplate, "key-uri-template", env("KEY_URI_TEMPLATE", config.DefaultKeyURITemplate), "EXT-X-KEY URI with {key_id} (KEY_URI_TEMPLATE)")
	fs.StringVar(&c.Ladder, "ladder", env("LADDER", ""), "ABR ladder, e.g. 1080p:5000k,720p:2800k (LADDER; default 1080p/720p/480p/360p)")
	seg, _ := strconv.ParseFloat(env("SEGMENT_SECONDS", "4"), 64)
	fs.Float64Var(&c.SegmentSeconds, "segment-seconds", seg, "target segment duration (SEGMENT_SECONDS)")
	fs.StringVar(&c.Preset, "preset", env("X264_PRESET", "veryfast"), "x264 preset (X264_PRESET)")
	conc, _ := strconv.Atoi(env("WORKER_CONCURRENCY", "1"))
	fs.IntVar(&c.Concurrency, "concurrency", conc, "jobs at once; ffmpeg uses every core, so 1 per machine (WORKER_CONCURRENCY)")
	up, _ := strconv.Atoi(env("UPLOAD_CONCURRENCY", "8"))
	fs.IntVar(&c.UploadConcurrency, "upload-concurrency", up, "parallel segment uploads per job (UPLOAD_CONCURRENCY)")
	fs.StringVar(&c.MetricsAddr, "metrics-addr", env("METRICS_ADDR", "127.0.0.1:9464"), "address of /metrics and /healthz; off disables (METRICS_ADDR)")
	sd, _ := time.ParseDuration(env("SHUTDOWN_TIMEOUT", "20s"))
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", sd, "how long a shutdown waits for jobs to stop and clean up (SHUTDOWN_TIMEOUT)")
	fs.StringVar(&c.TempDir, "temp-dir", env("TMPDIR", os.TempDir()), "private work directories go here (TMPDIR)")
	fs.StringVar(&c.FFmpeg, "ffmpeg", env("FFMPEG", "ffmpeg"), "ffmpeg binary (FFMPEG)")
	fs.StringVar(&c.FFprobe, "ffprobe", env("FFPROBE", "ffprobe"), "ffprobe binary (FFPROBE)")
	lim := transcode.DefaultLimits()
	mb, _ := strconv.ParseInt(env("MAX_SOURCE_BYTES", strconv.FormatInt(lim.MaxBytes, 10)), 10, 64)
	fs.Int64Var(&c.MaxSourceBytes, "max-source-bytes", mb, "largest accepted source (MAX_SOURCE_BYTES)")
	md, _ := time.ParseDuration(env("MAX_SOURCE_DURATION", lim.MaxDuration.String()))
	fs.DurationVar(&c.MaxSourceDuration, "max-source-duration", md, "longest accepted source (MAX_SOURCE_DURATION)")
	fs.StringVar(&c.QueuePrefix, "queue-prefix", env("QUEUE_PREFIX", jobs.DefaultQueuePrefix), "queue names are PREFIX-transcode and PREFIX-background (QUEUE_PREFIX)")
	grace, _ := time.ParseDuration(env("GC_GRACE", "24h"))
	fs.DurationVar(&c.GCGrace, "gc-grace", grace, "a retired version stays playable this long before it is removed; must exceed the longest job (GC_GRACE)")
	every, _ := time.ParseDuration(env("GC_INTERVAL", "15m"))
	fs.DurationVar(&c.GCInterval, "gc-interval", every, "how often the garbage collector runs; 0 disables it in the worker (GC_INTERVAL)")
	fs.StringVar(&c.LogLevel, "log-level", env("LOG_LEVEL", "info"), "debug, info, warn or error (LOG_LEVEL)")
	if err := fs.Parse(args); err != nil {
		return c, nil, err
	}
	return c, fs.Args(), nil
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, rest, err := parseConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		return fmt.Errorf("LOG_LEVEL: %w", err)
	}
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level}))

	cmd := "run"
	if len(rest) > 0 {
		cmd = rest[0]
	}
	switch cmd {
	case "run":
		return runWorker(ctx, cfg, getenv, log)
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
	case "rewrap-keys":
		return runRewrap(ctx, cfg, log, stdout)
	default:
		return fmt.Errorf("unknown command %q (want run, migrate, gc or rewrap-keys)", cmd)
	}
}

func runWorker(ctx context.Context, cfg Config, getenv func(string) string, log *slog.Logger) error {
	// Refuse to start without a KEK before touching anything else.
	keyring, err := config.Keyring(cfg.KEK, cfg.RetiredKEKs)
	if err != nil {
		return err
	}
	ladder := transcode.DefaultLadder()
	if cfg.Ladder != "" {
		if ladder, err = transcode.ParseLadder(cfg.Ladder); err != nil {
			return fmt.Errorf("LADDER: %w", err)
		}
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
	store, err := storage.Open(ctx, cfg.StorageURL, getenv)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	lim := transcode.DefaultLimits()
	lim.MaxBytes, lim.MaxDuration = cfg.MaxSourceBytes, cfg.MaxSourceDuration
	pipe, err := pipeline.New(pipeline.Config{
		FFmpeg: cfg.FFmpeg, FFprobe: cfg.FFprobe, Ladder: ladder,
		Segment: time.Duration(cfg.SegmentSeconds * float64(time.Second)), Limits: lim, Preset: cfg.Preset,
		TempDir: cfg.TempDir, KeyURITemplate: cfg.KeyURITemplate, UploadConcurrency: cfg.UploadConcurrency,
	}, store, db, keyring, log, pipeline.NewMetrics(reg))
	if err != nil {
		return err
	}
	bf, err := backfill.New(backfill.Config{
		Queues: jobs.QueueNames(cfg.QueuePrefix), KeyURITemplate: cfg.KeyURITemplate, Concurrency: cfg.UploadConcurrency,
	}, store, db, keyring, redisOpt, log)
	if err != nil {
		return err
	}
	defer bf.Close()

	queues := jobs.QueueNames(cfg.QueuePrefix)
	srv, err := worker.New(worker.Config{Concurrency: cfg.Concurrency, Queues: queues, ShutdownTimeout: cfg.ShutdownTimeout},
		redisOpt, log, worker.Handlers{
			jobs.TypeTranscode: pipe,
			// Backfill batches and ticks (low-priority queue).
			backfill.TypeBatch: asynq.HandlerFunc(bf.HandleBatch),
			backfill.TypeTick:  asynq.HandlerFunc(bf.HandleTick),
		})
	if err != nil {
		return err
	}

	if cfg.MetricsAddr != "" && cfg.MetricsAddr != "off" {
		stopHTTP, err := serveMetrics(cfg.MetricsAddr, reg, db, redisOpt, log)
		if err != nil {
			return err
		}
		defer stopHTTP()
	}
	if cfg.GCInterval > 0 {
		collector, err := gc.New(gc.Config{Grace: cfg.GCGrace, Interval: cfg.GCInterval,
			Legacy: backfill.NewPurger(db, store, log)}, db, store, log)
		if err != nil {
			return err
		}
		var gcDone sync.WaitGroup
		gcDone.Go(func() { collector.Run(ctx) })
		defer gcDone.Wait()
	}
	// Handlers run under ctx, so a SIGTERM stops ffmpeg at once.
	if err := srv.Start(ctx); err != nil {
		return err
	}
	if err := bf.Recover(ctx); err != nil {
		log.Warn("backfill: resume running runs", "err", err)
	}
	log.Info("worker started", "storage", store.String(), "queues", []string{queues.Transcode, queues.Background},
		"concurrency", cfg.Concurrency, "kek", keyring.Primary().ID())
	<-ctx.Done()
	srv.Shutdown()
	return nil
}

func runGC(ctx context.Context, cfg Config, getenv func(string) string, log *slog.Logger, stdout io.Writer) error {
	db, err := openCatalog(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer db.Close()
	store, err := storage.Open(ctx, cfg.StorageURL, getenv)
	if err != nil {
		return err
	}
	collector, err := gc.New(gc.Config{Grace: cfg.GCGrace, Legacy: backfill.NewPurger(db, store, log)}, db, store, log)
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
	keyring, err := config.Keyring(cfg.KEK, cfg.RetiredKEKs)
	if err != nil {
		return err
	}
	db, err := openCatalog(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer db.Close()
	primary := keyring.Primary()
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
	fmt.Fprintf(stdout, "rewrapped %d keys under %s; keys by KEK: %v\n", n, primary.ID(), usage)
	return nil
}

// openCatalog connects to PostgreSQL and applies the embedded migrations
// (safe when several workers start at once).
func openCatalog(ctx context.Context, cfg Config, log *slog.Logger) (*catalog.DB, error) {
	db, err := catalog.Open(ctx, cfg.DatabaseURL, log)
	if err != nil {
		return nil, err
	}
	if err := db.Migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

func serveMetrics(addr string, reg *prometheus.Registry, db *catalog.DB, redisOpt asynq.RedisConnOpt, log *slog.Logger) (func(), error) {
	insp := asynq.NewInspector(redisOpt)
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
		defer cancel()
		var problems []string
		if err := db.Ping(ctx); err != nil {
			problems = append(problems, "postgres: "+err.Error())
		}
		if _, err := insp.Queues(); err != nil {
			problems = append(problems, "redis: "+err.Error())
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
