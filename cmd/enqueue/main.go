// Command enqueue asks the workers to package videos and reports on them.
//
//	enqueue transcode --video ID --source SRC [--wait] [--force]
//	enqueue status --video ID
//	enqueue verify --video ID
//	enqueue backfill start|status|items|pause|resume|cancel|retry-failed …
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
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/hlsvault/hlsvault/internal/catalog"
	"github.com/hlsvault/hlsvault/internal/config"
	"github.com/hlsvault/hlsvault/internal/ids"
	"github.com/hlsvault/hlsvault/internal/storage"
	"github.com/hlsvault/hlsvault/internal/verify"
	"github.com/hlsvault/hlsvault/jobs"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "enqueue:", err)
		os.Exit(1)
	}
}

const usage = `usage:
  enqueue transcode --video ID --source SRC [--wait] [--force]
  enqueue status --video ID
  enqueue verify --video ID
  enqueue backfill start|status|items|pause|resume|cancel|retry-failed …`

// Config is what every subcommand needs, from flags defaulting to the
// environment.
type Config struct {
	RedisURL    string
	DatabaseURL string
	StorageURL  string
	FFprobe     string
	QueuePrefix string
	Video       string
	Source      string
	Wait        bool
	Force       bool
	WaitTimeout time.Duration
	Poll        time.Duration
	MaxRetry    int
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New(usage)
	}
	sub := args[0]
	if sub == "backfill" {
		return runBackfill(ctx, args[1:], getenv, stdout, stderr)
	}
	var c Config
	env := func(k, def string) string { return config.Getenv(getenv, k, def) }
	fs := flag.NewFlagSet("enqueue "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.RedisURL, "redis-url", env("REDIS_URL", config.DefaultRedisURL), "Redis URL (REDIS_URL)")
	fs.StringVar(&c.DatabaseURL, "database-url", env("DATABASE_URL", config.DefaultDatabaseURL), "PostgreSQL URL (DATABASE_URL)")
	fs.StringVar(&c.StorageURL, "storage-url", env("STORAGE_URL", config.DefaultStorageURL()), "file:///dir or azblob://container (STORAGE_URL)")
	fs.StringVar(&c.FFprobe, "ffprobe", env("FFPROBE", "ffprobe"), "ffprobe binary (FFPROBE)")
	fs.StringVar(&c.QueuePrefix, "queue-prefix", env("QUEUE_PREFIX", jobs.DefaultQueuePrefix), "queue names are PREFIX-transcode and PREFIX-background (QUEUE_PREFIX)")
	fs.StringVar(&c.Video, "video", "", "video id: letters, digits, '-' and '_'")
	switch sub {
	case "transcode":
		fs.StringVar(&c.Source, "source", "", "object name in storage, or a local file to upload first")
		fs.BoolVar(&c.Wait, "wait", false, "show progress and wait until the job is published or failed")
		fs.BoolVar(&c.Force, "force", false, "package the source again even if it is already published")
		fs.DurationVar(&c.WaitTimeout, "wait-timeout", 0, "give up waiting after this long (0: never)")
		fs.IntVar(&c.MaxRetry, "max-retry", 5, "retries of a transient failure before the job is failed")
	case "status", "verify":
	default:
		return fmt.Errorf("unknown command %q\n%s", sub, usage)
	}
	c.Poll = 500 * time.Millisecond
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if err := ids.ValidateVideoID(c.Video); err != nil {
		return fmt.Errorf("--video: %w", err)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	db, err := catalog.Open(ctx, c.DatabaseURL, log)
	if err != nil {
		return err
	}
	defer db.Close()

	switch sub {
	case "status":
		st, err := db.VideoStatus(ctx, c.Video)
		if errors.Is(err, catalog.ErrNotFound) {
			return fmt.Errorf("video %s: no job was ever enqueued", c.Video)
		}
		if err != nil {
			return err
		}
		return printJSON(stdout, st)
	case "verify":
		return runVerify(ctx, c, getenv, db, stdout)
	}
	return runTranscode(ctx, c, getenv, db, stdout, stderr)
}

func runTranscode(ctx context.Context, c Config, getenv func(string) string, db *catalog.DB, stdout, stderr io.Writer) error {
	if c.Source == "" {
		return errors.New("--source is required")
	}
	if err := db.Migrate(ctx); err != nil {
		return err
	}
	source := c.Source
	if st, err := os.Stat(c.Source); err == nil && st.Mode().IsRegular() {
		store, err := storage.Open(ctx, c.StorageURL, getenv)
		if err != nil {
			return err
		}
		if source, err = uploadLocal(ctx, store, c.Video, c.Source); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "uploaded %s to %s\n", c.Source, source)
	}
	redisOpt, err := config.RedisOpt(c.RedisURL)
	if err != nil {
		return err
	}
	client := jobs.NewClient(redisOpt, db, jobs.ClientConfig{Queue: jobs.QueueNames(c.QueuePrefix).Transcode, MaxRetry: c.MaxRetry})
	defer client.Close()
	res, err := client.EnqueueTranscode(ctx, c.Video, source, c.Force)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, res.Message())
	if !c.Wait {
		return nil
	}
	return wait(ctx, c, client, res.TaskID, stdout)
}

// uploadLocal stores a local file as uploads/{video}/{sha256 prefix}{ext}.
// Naming it by content makes a repeated upload of the same file the same
// source, hence the same job.
func uploadLocal(ctx context.Context, store storage.Store, video, path string) (string, error) {
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
	ext := strings.ToLower(filepath.Ext(path))
	if len(ext) > 8 || strings.ContainsAny(ext, "/\\ ") {
		ext = ""
	}
	name := "uploads/" + video + "/" + hex.EncodeToString(h.Sum(nil)[:16]) + ext
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", err
	}
	err = store.Put(ctx, name, f, size, storage.PutOptions{ContentType: "application/octet-stream", CacheControl: "private"})
	if err != nil && !errors.Is(err, storage.ErrExists) {
		return "", err
	}
	return name, nil
}

// wait follows one job until it is published or failed.
func wait(ctx context.Context, c Config, client *jobs.Client, taskID string, stdout io.Writer) error {
	if c.WaitTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.WaitTimeout)
		defer cancel()
	}
	tty := isTerminal(stdout)
	var last string
	tick := time.NewTicker(c.Poll)
	defer tick.Stop()
	for {
		j, err := client.Job(ctx, taskID)
		if err != nil {
			return err
		}
		line := fmt.Sprintf("%-10s %5.1f%%", j.State, j.Progress)
		if j.State == catalog.Queued && j.Error != "" {
			line += "  (retrying after: " + j.Error + ")"
		}
		if line != last {
			if tty {
				fmt.Fprintf(stdout, "\r\033[K%s", line)
			} else {
				fmt.Fprintln(stdout, line)
			}
			last = line
		}
		switch j.State {
		case catalog.Published:
			if tty {
				fmt.Fprintln(stdout)
			}
			fmt.Fprintf(stdout, "published video %s version %d\n", j.VideoID, j.Version)
			return nil
		case catalog.Failed:
			if tty {
				fmt.Fprintln(stdout)
			}
			return fmt.Errorf("job failed: %s", j.Error)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("stopped waiting (%s is %s): %w", j.VideoID, j.State, ctx.Err())
		case <-tick.C:
		}
	}
}

func runVerify(ctx context.Context, c Config, getenv func(string) string, db *catalog.DB, stdout io.Writer) error {
	keyring, err := config.Keyring(getenv("KEY_ENCRYPTION_KEY"), getenv("KEY_ENCRYPTION_KEYS_RETIRED"))
	if err != nil {
		return err
	}
	store, err := storage.Open(ctx, c.StorageURL, getenv)
	if err != nil {
		return err
	}
	v := &verify.Verifier{Store: store, DB: db, Keyring: keyring, FFprobe: c.FFprobe}
	rep, err := v.Verify(ctx, c.Video)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "video %s version %d (key %s)\n", rep.Video, rep.Version, rep.KeyID)
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
