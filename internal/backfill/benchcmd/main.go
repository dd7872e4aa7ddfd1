// Command benchcmd measures the backfill figures that a go test benchmark
// cannot, in one run on this machine (medians; compare only figures from
// the same run):
//
//	re-encrypting a legacy title / re-transcoding it through the pipeline
//	  (the same 1080p source, packaged as plain HLS with the same ladder)
//	peak RSS of a process re-encrypting a short and a long title
//	  (must not grow with the title's length: everything streams)
//
// It needs PostgreSQL, Redis, ffmpeg and, for the Azurite RSS figure,
// AZURE_STORAGE_CONNECTION_STRING. scripts/backfill-bench.sh runs it with
// the go test benchmarks (throughput against the AES ceiling).
//
//	benchcmd [-dir .cache/bench-backfill] [-runs 3] [-transcode-runs 2] [-fs-mb 64,640] [-azure-mb 32,320]
//	benchcmd convert -store URL -playlist NAME -prefix PREFIX    (the child whose RSS is measured)
//	benchcmd catalogue [-titles 20000] [-workers 2] …             (a large catalogue: see catalogue.go)
package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/hibiken/asynq"

	"github.com/hlsvault/hlsvault/internal/backfill"
	"github.com/hlsvault/hlsvault/internal/catalog"
	"github.com/hlsvault/hlsvault/internal/config"
	"github.com/hlsvault/hlsvault/internal/keys"
	"github.com/hlsvault/hlsvault/internal/packager"
	"github.com/hlsvault/hlsvault/internal/pipeline"
	"github.com/hlsvault/hlsvault/internal/storage"
	"github.com/hlsvault/hlsvault/internal/transcode"
	"github.com/hlsvault/hlsvault/internal/worker"
	"github.com/hlsvault/hlsvault/jobs"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	if len(os.Args) > 1 && os.Args[1] == "convert" {
		err = convertChild(ctx, os.Args[2:], os.Stdout)
	} else if len(os.Args) > 1 && os.Args[1] == "catalogue" { // catalogue.go
		err = catalogueMain(ctx, os.Args[2:], os.Stdout, os.Stderr)
	} else {
		err = run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchcmd:", err)
		os.Exit(1)
	}
}

type cfg struct {
	dir           string
	source        string
	runs          int
	transcodeRuns int
	fsMB          string
	azureMB       string
	rssRuns       int
	preset        string
	databaseURL   string
	redisURL      string
	sandbox       string
	exec          *transcode.Exec // every ffprobe and ffmpeg on the source
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c cfg
	fs := flag.NewFlagSet("benchcmd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.dir, "dir", ".cache/bench-backfill", "work directory (the source and the legacy title are kept between runs)")
	fs.StringVar(&c.source, "source", ".cache/bench/src_1080p_20s.mp4", "1080p source (generated like cmd/hlsbench's when missing)")
	fs.IntVar(&c.runs, "runs", 3, "re-encryptions per figure")
	fs.IntVar(&c.transcodeRuns, "transcode-runs", 2, "re-transcodes per figure (each runs the whole ladder through ffmpeg); 0 skips the ratio")
	fs.StringVar(&c.fsMB, "fs-mb", "64,640", "sizes in MB of the synthetic titles for the RSS figure, filesystem (short first, then 10× longer)")
	fs.StringVar(&c.azureMB, "azure-mb", "32,320", "the same on Azurite (Azurite keeps what it is given until the container is deleted: keep these small)")
	fs.IntVar(&c.rssRuns, "rss-runs", 3, "child processes per RSS figure (median)")
	fs.StringVar(&c.preset, "preset", "veryfast", "x264 preset of the re-transcode and of the legacy packaging")
	fs.StringVar(&c.sandbox, "decoder-sandbox", transcode.SandboxBwrap, "decoder sandbox, as the worker's DECODER_SANDBOX (bwrap or none)")
	fs.StringVar(&c.databaseURL, "database-url", config.Getenv(os.Getenv, "DATABASE_URL", config.DefaultDatabaseURL), "PostgreSQL")
	fs.StringVar(&c.redisURL, "redis-url", config.Getenv(os.Getenv, "REDIS_URL", config.DefaultRedisURL), "Redis")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := os.MkdirAll(c.dir, 0o755); err != nil {
		return err
	}
	var err error
	if c.exec, err = transcode.NewExec(transcode.ExecConfig{Sandbox: c.sandbox}); err != nil {
		return err
	}
	if c.dir, err = filepath.Abs(c.dir); err != nil {
		return err
	}
	if c.source, err = filepath.Abs(c.source); err != nil {
		return err
	}
	progress := func(format string, a ...any) { fmt.Fprintf(stderr, "  "+format+"\n", a...) }

	var enc, tc []float64
	if c.runs > 0 && c.transcodeRuns > 0 {
		// Only the ratio needs the 1080p source (ffmpeg makes it once).
		if err := ensureSource(ctx, c.source, progress); err != nil {
			return err
		}
		if enc, tc, err = ratio(ctx, c, progress); err != nil {
			return err
		}
	}
	rss, err := rssFigures(ctx, c, progress)
	if err != nil {
		return err
	}

	fmt.Fprintf(stdout, "\n%-60s %-28s %10s  %s\n", "figure", "runs", "median", "target")
	row := func(name string, xs []float64, format, target string) {
		var parts []string
		for _, x := range xs {
			parts = append(parts, strconv.FormatFloat(x, 'f', 3, 64))
		}
		fmt.Fprintf(stdout, "%-60s %-28s %10s  %s\n", name, strings.Join(parts, " "), fmt.Sprintf(format, median(xs)), target)
	}
	if len(enc) > 0 {
		row("re-encrypt the legacy title, end to end (s)", enc, "%.3f", "")
		row("re-transcode it through the pipeline, end to end (s)", tc, "%.2f", "")
		row("re-encrypt / re-transcode", []float64{median(enc) / median(tc)}, "%.4f", "≤ 0.02")
	}
	for _, r := range rss {
		fmt.Fprintf(stdout, "%-60s %-28s %10s  %s\n", r.name, "", fmt.Sprintf("%.1f MiB", r.mib), r.note)
	}
	return nil
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// ensureSource generates the 1080p source as cmd/hlsbench does, when it
// is not there yet.
func ensureSource(ctx context.Context, path string, progress func(string, ...any)) error {
	if st, err := os.Stat(path); err == nil && st.Size() > 0 {
		return nil
	}
	progress("generating %s", path)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp.mp4"
	cmd := exec.CommandContext(ctx, "ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
		"-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=30:duration=20",
		"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=20",
		"-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p", "-c:a", "aac", tmp)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("generate source: %v: %s", err, out)
	}
	return os.Rename(tmp, path)
}

func randID(prefix string) string {
	var b [5]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// legacyTitle packages the source as plain HLS with the pipeline's ladder
// (what a packager without encryption produced) and a master playlist,
// once, under dir.
func legacyTitle(ctx context.Context, c cfg, progress func(string, ...any)) (string, error) {
	out := filepath.Join(c.dir, "legacy-1080p-"+c.preset)
	if _, err := os.Stat(filepath.Join(out, "master.m3u8")); err == nil {
		return out, nil
	}
	probe, err := transcode.ProbeFile(ctx, c.exec, c.source, transcode.DefaultLimits())
	if err != nil {
		return "", err
	}
	plan, err := transcode.PlanLadder(probe, transcode.DefaultLadder(), 4*time.Second)
	if err != nil {
		return "", err
	}
	tmp := out + ".tmp"
	os.RemoveAll(tmp)
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return "", err
	}
	args, err := transcode.Args(plan, c.source, tmp, transcode.ArgsOptions{Preset: c.preset})
	if err != nil {
		return "", err
	}
	progress("packaging the legacy title (plain HLS, %d renditions)", len(plan.Renditions))
	cmd, err := c.exec.Command(ctx, transcode.FFmpeg, args, []string{c.source}, []string{tmp})
	if err != nil {
		return "", err
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("ffmpeg: %v: %s", err, out)
	}
	var m strings.Builder
	m.WriteString("#EXTM3U\n#EXT-X-VERSION:3\n")
	for _, r := range plan.Renditions {
		fmt.Fprintf(&m, "#EXT-X-STREAM-INF:BANDWIDTH=%d,RESOLUTION=%dx%d\n%s/index.m3u8\n", r.VideoBitrate+r.AudioBitrate, r.Width, r.Height, r.Name)
	}
	if err := os.WriteFile(filepath.Join(tmp, "master.m3u8"), []byte(m.String()), 0o644); err != nil {
		return "", err
	}
	return out, os.Rename(tmp, out)
}

// upload copies a directory tree into store under prefix.
func upload(ctx context.Context, store storage.Store, dir, prefix string) (int64, error) {
	var total int64
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		st, _ := f.Stat()
		total += st.Size()
		return store.Put(ctx, prefix+filepath.ToSlash(rel), f, st.Size(), storage.PutOptions{})
	})
	return total, err
}

// ratio times re-encrypting the legacy title and re-transcoding its
// source, both end to end in this process on a filesystem store: a backfill
// job (plan, re-encrypt, verify, publish) against a pipeline job (download,
// probe, one ffmpeg for the ladder, encrypt, upload, publish).
func ratio(ctx context.Context, c cfg, progress func(string, ...any)) (enc, tc []float64, err error) {
	legacyDir, err := legacyTitle(ctx, c, progress)
	if err != nil {
		return nil, nil, err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	db, err := catalog.Open(ctx, c.databaseURL, log)
	if err != nil {
		return nil, nil, err
	}
	defer db.Close()
	if err := db.Migrate(ctx); err != nil {
		return nil, nil, err
	}
	storeDir, err := os.MkdirTemp(c.dir, "store-")
	if err != nil {
		return nil, nil, err
	}
	defer os.RemoveAll(storeDir)
	store, err := storage.NewFS(storeDir)
	if err != nil {
		return nil, nil, err
	}
	kek := make([]byte, 32)
	_, _ = rand.Read(kek)
	keyring, err := keys.NewKeyring(base64.StdEncoding.EncodeToString(kek))
	if err != nil {
		return nil, nil, err
	}
	redisOpt, err := config.RedisOpt(c.redisURL)
	if err != nil {
		return nil, nil, err
	}
	queues := jobs.QueueNames(randID("bfbench"))
	const keyURI = "https://video.example.com/v1/keys/{key_id}"
	svc, err := backfill.New(backfill.Config{Queues: queues, KeyURITemplate: keyURI}, store, db, keyring, redisOpt, log)
	if err != nil {
		return nil, nil, err
	}
	defer svc.Close()

	for i := range c.runs {
		video := randID("bfbench-")
		bytes, err := upload(ctx, store, legacyDir, "legacy/"+video+"/")
		if err != nil {
			return nil, nil, err
		}
		start := time.Now()
		res, published, err := svc.ConvertNow(ctx, video, "legacy/"+video+"/master.m3u8")
		if err != nil {
			return nil, nil, err
		}
		if !published {
			return nil, nil, errors.New("re-encrypted version not published")
		}
		secs := time.Since(start).Seconds()
		progress("re-encrypt %d/%d: %.3f s for %d objects, %.1f MB (legacy title %.1f MB)", i+1, c.runs, secs, res.Objects,
			float64(res.PlainBytes)/1e6, float64(bytes)/1e6)
		enc = append(enc, secs)
	}

	pipe, err := pipeline.New(pipeline.Config{Exec: c.exec, Preset: c.preset, TempDir: c.dir, KeyURITemplate: keyURI}, store, db, keyring, log, nil)
	if err != nil {
		return nil, nil, err
	}
	// The worker's own server, so that the transcode figure includes its
	// scheduling as production runs it.
	srv, err := worker.New(worker.Config{Queues: queues, LogLevel: asynq.ErrorLevel}, redisOpt, log,
		worker.Handlers{jobs.TypeTranscode: pipe})
	if err != nil {
		return nil, nil, err
	}
	if err := srv.Start(ctx); err != nil {
		return nil, nil, err
	}
	defer srv.Shutdown()
	client, err := jobs.New(db.Pool(), redisOpt, jobs.ClientConfig{Queues: queues})
	if err != nil {
		return nil, nil, err
	}
	defer client.Close()
	f, err := os.Open(c.source)
	if err != nil {
		return nil, nil, err
	}
	st, _ := f.Stat()
	err = store.Put(ctx, "uploads/bench.mp4", f, st.Size(), storage.PutOptions{})
	f.Close()
	if err != nil {
		return nil, nil, err
	}
	for i := range c.transcodeRuns {
		video := randID("bfbench-tc-")
		start := time.Now()
		r, err := client.EnqueueTranscode(ctx, jobs.TranscodeRequest{VideoID: video, Source: "uploads/bench.mp4"})
		if err != nil {
			return nil, nil, err
		}
		for {
			j, err := client.Job(ctx, r.TaskID)
			if err != nil {
				return nil, nil, err
			}
			if j.State == jobs.Published {
				break
			}
			if j.State == jobs.Failed {
				return nil, nil, fmt.Errorf("re-transcode failed: %s", j.Error)
			}
			select {
			case <-ctx.Done():
				return nil, nil, ctx.Err()
			case <-time.After(20 * time.Millisecond):
			}
		}
		secs := time.Since(start).Seconds()
		progress("re-transcode %d/%d: %.2f s", i+1, c.transcodeRuns, secs)
		tc = append(tc, secs)
	}
	return enc, tc, nil
}

type rssRow struct {
	name string
	mib  float64
	note string
}

// rssFigures re-encrypts a short and a long synthetic title in child
// processes and reads their peak RSS.
func rssFigures(ctx context.Context, c cfg, progress func(string, ...any)) ([]rssRow, error) {
	var rows []rssRow
	type backend struct {
		name, url string
		sizes     []int
		store     storage.Store
		cleanup   func()
	}
	sizes := func(list string) ([]int, error) {
		var out []int
		for _, f := range strings.Split(list, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n <= 0 {
				return nil, fmt.Errorf("bad size %q in %q", f, list)
			}
			out = append(out, n)
		}
		return out, nil
	}
	fsSizes, err := sizes(c.fsMB)
	if err != nil {
		return nil, err
	}
	azSizes, err := sizes(c.azureMB)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(c.dir, "rss-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	fsStore, err := storage.NewFS(dir)
	if err != nil {
		return nil, err
	}
	backends := []backend{{name: "filesystem", url: "file://" + dir, sizes: fsSizes, store: fsStore}}
	if cs := os.Getenv("AZURE_STORAGE_CONNECTION_STRING"); cs != "" {
		container := randID("bfrss")
		az, err := storage.NewAzure(ctx, storage.AzureConfig{ConnectionString: cs, Container: container})
		if err != nil {
			return nil, err
		}
		backends = append(backends, backend{name: "Azurite", url: "azblob://" + container, sizes: azSizes, store: az,
			cleanup: func() {
				if c, err := azblob.NewClientFromConnectionString(cs, nil); err == nil {
					_, _ = c.DeleteContainer(context.WithoutCancel(ctx), container, nil)
				}
			}})
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	for _, be := range backends {
		var short float64
		for k, mb := range be.sizes {
			title := fmt.Sprintf("legacy/t%d/", mb)
			progress("RSS: %s, %d MB title", be.name, mb)
			if err := putSynthetic(ctx, be.store, title, mb); err != nil {
				return nil, err
			}
			var mibs, rates []float64
			for i := range max(c.rssRuns, 1) {
				cmd := exec.CommandContext(ctx, self, "convert", "-store", be.url, "-playlist", title+"index.m3u8",
					"-prefix", fmt.Sprintf("hls/t%d/v%d/", mb, i+1))
				cmd.Env = os.Environ()
				cmd.Stderr = os.Stderr
				out, err := cmd.Output()
				if err != nil {
					return nil, fmt.Errorf("convert child: %w", err)
				}
				var kb, bytes int64
				var secs float64
				if _, err := fmt.Sscanf(string(out), "vmhwm_kb %d bytes %d seconds %g", &kb, &bytes, &secs); err != nil {
					return nil, fmt.Errorf("convert child said %q: %w", out, err)
				}
				mibs, rates = append(mibs, float64(kb)/1024), append(rates, float64(bytes)/1e6/secs)
				if be.cleanup != nil {
					removePrefix(ctx, be.store, fmt.Sprintf("hls/t%d/", mb))
				}
			}
			if be.cleanup != nil {
				removePrefix(ctx, be.store, title)
			}
			mib := median(mibs)
			note := fmt.Sprintf("(%.0f MB/s)", median(rates))
			if k == 0 {
				short = mib
			} else {
				note = fmt.Sprintf("(%.0f MB/s; / first size %.2f: must not grow with length)", median(rates), mib/short)
			}
			rows = append(rows, rssRow{name: fmt.Sprintf("peak RSS re-encrypting a %d MB title, %s (median of %d)", mb, be.name, max(c.rssRuns, 1)),
				mib: mib, note: note})
		}
		if be.cleanup != nil {
			be.cleanup()
		}
	}
	return rows, nil
}

func removePrefix(ctx context.Context, store storage.Store, prefix string) {
	var names []string
	_ = store.List(ctx, prefix, func(o storage.ObjectInfo) error { names = append(names, o.Name); return nil })
	for _, n := range names {
		_ = store.Delete(ctx, n)
	}
}

// putSynthetic stores a TS-like title of about mb MB of random 2 MiB
// segments, streaming them.
func putSynthetic(ctx context.Context, store storage.Store, dir string, mb int) error {
	const seg = 2 << 20
	n := max(mb*1e6/seg, 1)
	var pl strings.Builder
	pl.WriteString("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:4\n#EXT-X-PLAYLIST-TYPE:VOD\n")
	rng := mrand.New(mrand.NewPCG(uint64(mb), 7))
	for i := range n {
		r := io.LimitReader(readerFunc(func(p []byte) (int, error) {
			for j := range p {
				p[j] = byte(rng.Uint32())
			}
			return len(p), nil
		}), seg)
		if err := store.Put(ctx, fmt.Sprintf("%sseg_%05d.ts", dir, i), r, seg, storage.PutOptions{}); err != nil {
			return err
		}
		fmt.Fprintf(&pl, "#EXTINF:4.000,\nseg_%05d.ts\n", i)
	}
	pl.WriteString("#EXT-X-ENDLIST\n")
	return store.Put(ctx, dir+"index.m3u8", strings.NewReader(pl.String()), int64(pl.Len()), storage.PutOptions{})
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

// convertChild re-encrypts one title and prints its own peak RSS.
func convertChild(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("benchcmd convert", flag.ContinueOnError)
	storeURL := fs.String("store", "", "store URL")
	playlist := fs.String("playlist", "", "legacy playlist")
	prefix := fs.String("prefix", "", "version prefix to write")
	if err := fs.Parse(args); err != nil {
		return err
	}
	store, err := storage.Open(ctx, *storeURL, os.Getenv)
	if err != nil {
		return err
	}
	plan, err := backfill.PlanTitle(ctx, store, backfill.Source{Playlist: *playlist})
	if err != nil {
		return err
	}
	keyring, err := throwawayKeyring()
	if err != nil {
		return err
	}
	v, err := packager.New(store, keyring, packager.Options{}).Begin(*prefix, "https://k.example/{key_id}")
	if err != nil {
		return err
	}
	start := time.Now()
	res, err := (&backfill.Converter{Store: store}).Convert(ctx, plan, v)
	if err != nil {
		return err
	}
	secs := time.Since(start).Seconds()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			_, err := fmt.Fprintf(stdout, "vmhwm_kb %d bytes %d seconds %g\n", kb, res.PlainBytes, secs)
			return err
		}
	}
	return errors.New("no VmHWM in /proc/self/status")
}

// throwawayKeyring wraps the benchmark's keys under a random KEK: nothing
// is published, so no one needs to unwrap them.
func throwawayKeyring() (*keys.Keyring, error) {
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return nil, err
	}
	return keys.NewKeyring(base64.StdEncoding.EncodeToString(raw))
}
