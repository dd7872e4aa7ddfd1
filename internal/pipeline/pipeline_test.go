package pipeline

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/hlsvault/hlsvault/internal/catalog"
	"github.com/hlsvault/hlsvault/internal/keys"
	"github.com/hlsvault/hlsvault/internal/storage"
	"github.com/hlsvault/hlsvault/internal/testenv"
	"github.com/hlsvault/hlsvault/internal/testenv/decoder"
	"github.com/hlsvault/hlsvault/internal/testenv/fixtures"
	"github.com/hlsvault/hlsvault/internal/testenv/hlscheck"
	"github.com/hlsvault/hlsvault/internal/transcode"
	"github.com/hlsvault/hlsvault/internal/verify"
	"github.com/hlsvault/hlsvault/internal/worker"
	"github.com/hlsvault/hlsvault/jobs"
)

var update = flag.Bool("update", false, "rewrite golden files")

// harness is a worker and an upload service on real services: PostgreSQL,
// Redis, ffmpeg and the given store.
type harness struct {
	t       *testing.T
	store   storage.Store
	db      *catalog.DB
	dbURL   string // the catalog's database, for tests that inspect its rows
	keyring *keys.Keyring
	pipe    *Pipeline
	client  *jobs.Client
	queues  jobs.Queues
	redis   asynq.RedisConnOpt
	log     *slog.Logger
	logs    *bytes.Buffer
}

func newHarness(t *testing.T, store storage.Store, opts ...func(*Config)) *harness {
	t.Helper()
	db, dbURL := fixtures.CatalogURL(t)
	keyring := fixtures.Keyring(t)
	ladder, err := transcode.ParseLadder("240p:300k:64k,144p:150k:64k")
	if err != nil {
		t.Fatal(err)
	}
	logs := &bytes.Buffer{}
	log := slog.New(slog.NewTextHandler(io.MultiWriter(logs, testenv.TestWriter{T: t}), &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg := Config{
		Exec: decoder.Exec(t), Ladder: ladder, Segment: time.Second, Preset: "ultrafast",
		TempDir: t.TempDir(), KeyURITemplate: "https://video.example.com/v1/keys/{key_id}", PollInterval: 50 * time.Millisecond,
	}
	for _, o := range opts {
		o(&cfg)
	}
	pipe, err := New(cfg, store, db, keyring, log, nil)
	if err != nil {
		t.Fatal(err)
	}
	redis := fixtures.Redis(t)
	queues := jobs.QueueNames(testenv.Name("q"))
	client, err := jobs.New(db.Pool(), redis, jobs.ClientConfig{Queues: queues, Timeout: 5 * time.Minute, MaxRetry: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	return &harness{t: t, store: store, db: db, dbURL: dbURL, keyring: keyring, pipe: pipe, client: client, queues: queues, redis: redis, logs: logs, log: log}
}

// startWorker runs the production worker for the harness's queues until
// the test ends.
func (h *harness) startWorker() {
	h.t.Helper()
	fixtures.Worker(h.t, worker.Config{Queues: h.queues, RetryDelay: func(int) time.Duration { return time.Second }},
		h.redis, h.log, worker.Handlers{jobs.TypeTranscode: h.pipe})
}

func (h *harness) upload(name, path string) {
	h.t.Helper()
	f, err := os.Open(path)
	if err != nil {
		h.t.Fatal(err)
	}
	defer f.Close()
	if err := h.store.Put(context.Background(), name, f, -1, storage.PutOptions{}); err != nil {
		h.t.Fatal(err)
	}
}

// waitJob waits until the job ends and returns it.
func (h *harness) waitJob(taskID string) jobs.Job {
	h.t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		j, err := h.client.Job(context.Background(), taskID)
		// A task enqueued straight through asynq has no job row until a
		// worker starts it.
		if errors.Is(err, jobs.ErrNotFound) {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		if err != nil {
			h.t.Fatal(err)
		}
		if j.State == jobs.Published || j.State == jobs.Failed {
			return j
		}
		time.Sleep(100 * time.Millisecond)
	}
	h.t.Fatalf("job %s did not finish", taskID)
	return jobs.Job{}
}

func (h *harness) objects(prefix string) map[string][]byte {
	h.t.Helper()
	ctx := context.Background()
	out := map[string][]byte{}
	err := h.store.List(ctx, prefix, func(o storage.ObjectInfo) error {
		rc, err := h.store.Get(ctx, o.Name)
		if err != nil {
			return err
		}
		defer rc.Close()
		b, err := io.ReadAll(rc)
		out[o.Name] = b
		return err
	})
	if err != nil {
		h.t.Fatal(err)
	}
	return out
}

func TestEndToEnd(t *testing.T) {
	for name, mk := range fixtures.Stores() {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, mk(t))
			ctx := context.Background()
			src := testenv.MakeSource(t, t.TempDir(), testenv.Source{Width: 320, Height: 240, Seconds: 3, Audio: true})
			h.upload("uploads/a.mp4", src)
			video := testenv.Name("vid")

			res, err := h.client.EnqueueTranscode(ctx, jobs.TranscodeRequest{VideoID: video, Source: "uploads/a.mp4"})
			if err != nil || res.Outcome != jobs.Enqueued {
				t.Fatalf("enqueue: %+v %v", res, err)
			}
			again, err := h.client.EnqueueTranscode(ctx, jobs.TranscodeRequest{VideoID: video, Source: "uploads/a.mp4"})
			if err != nil || again.Outcome != jobs.AlreadyQueued {
				t.Fatalf("second enqueue while queued: %+v %v", again, err)
			}
			h.startWorker()
			j := h.waitJob(res.TaskID)
			if j.State != jobs.Published || j.Version != 1 {
				t.Fatalf("job: %+v", j)
			}
			st, err := h.client.Status(ctx, video)
			if err != nil || st.State != jobs.Published || st.Current == nil || st.Current.Number != 1 || st.Current.Master != "hls/"+video+"/v1/master.m3u8" ||
				len(st.Current.Renditions) != 2 || st.Job.Progress != 100 || st.Job.FinishedAt == nil || st.Job.StartedAt == nil || st.Job.Duration() <= 0 {
				t.Fatalf("status: %+v %v", st, err)
			}
			ver := &verify.Verifier{Store: h.store, DB: h.db, Keyring: h.keyring, Exec: decoder.Exec(t)}
			rep, err := ver.Verify(ctx, video)
			if err != nil || !rep.OK() {
				t.Fatalf("verify: %+v %v", rep, err)
			}

			// The key is nowhere but in the database, wrapped. Without a
			// key period, the version has one key.
			cur, _ := h.db.CurrentVersion(ctx, video)
			if len(cur.Keys) != 1 || cur.Keys[0].Period != 0 {
				t.Fatalf("KeyPeriod 0: keys %+v, want one", cur.Keys)
			}
			ck, err := h.keyring.Unwrap(cur.Keys[0].KEKID, cur.Keys[0].KeyID, cur.Keys[0].Wrapped)
			if err != nil {
				t.Fatal(err)
			}
			objs := h.objects("")
			for name, b := range objs {
				if bytes.Contains(b, ck.Bytes()) {
					t.Errorf("object %s contains the content key", name)
				}
				if !strings.HasPrefix(name, "uploads/") && !strings.HasPrefix(name, "hls/"+video+"/v1/") {
					t.Errorf("unexpected object %s", name)
				}
			}
			if bytes.Contains(h.logs.Bytes(), ck.Bytes()) || strings.Contains(h.logs.String(), strings.ToLower(hexOf(ck.Bytes()))) {
				t.Error("logs contain the content key")
			}

			// The same source again is a no-op; a new source is a new version,
			// and the old one stays in storage.
			same, err := h.client.EnqueueTranscode(ctx, jobs.TranscodeRequest{VideoID: video, Source: "uploads/a.mp4"})
			if err != nil || same.Outcome != jobs.AlreadyPublished {
				t.Fatalf("enqueue of a published source: %+v %v", same, err)
			}
			h.upload("uploads/b.mp4", src)
			res2, err := h.client.EnqueueTranscode(ctx, jobs.TranscodeRequest{VideoID: video, Source: "uploads/b.mp4"})
			if err != nil || res2.Outcome != jobs.Enqueued {
				t.Fatalf("enqueue of a new source: %+v %v", res2, err)
			}
			if j := h.waitJob(res2.TaskID); j.State != jobs.Published || j.Version != 2 {
				t.Fatalf("second job: %+v", j)
			}
			if _, err := h.store.Stat(ctx, "hls/"+video+"/v1/master.m3u8"); err != nil {
				t.Fatalf("previous version removed: %v", err)
			}
			if rep, err := ver.Verify(ctx, video); err != nil || !rep.OK() || rep.Version != 2 {
				t.Fatalf("verify v2: %+v %v", rep, err)
			}
			// Both versions' playlists, in each store, pass third-party
			// strict parsing.
			hlscheck.StrictAll(t, hlscheck.Stored(t, h.store, "hls/"+video+"/"))
		})
	}
}

func hexOf(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}

func TestBadInputFailsWithoutOutput(t *testing.T) {
	fs, err := storage.NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, fs)
	ctx := context.Background()
	dir := t.TempDir()
	text := filepath.Join(dir, "notes.txt")
	os.WriteFile(text, []byte("this is not a video\n"), 0o644)
	h.upload("uploads/notes.txt", text)
	h.startWorker()
	for _, tc := range []struct {
		source, reason string
		attempts       int
	}{
		{"uploads/notes.txt", "invalid input", 1},
		// A missing source is retried (storage misconfiguration and
		// eventual consistency look the same), then bad input.
		{"uploads/missing.mp4", "bad input: source object \"uploads/missing.mp4\" not found in storage (3 attempts)", DefaultSourceAttempts},
	} {
		video := testenv.Name("bad")
		res, err := h.client.EnqueueTranscode(ctx, jobs.TranscodeRequest{VideoID: video, Source: tc.source})
		if err != nil {
			t.Fatal(err)
		}
		j := h.waitJob(res.TaskID)
		if j.State != jobs.Failed || !strings.Contains(j.Error, tc.reason) || j.Attempts != tc.attempts {
			t.Errorf("%s: job %+v, want failed after %d attempts with %q", tc.source, j, tc.attempts, tc.reason)
		}
		if objs := h.objects("hls/" + video + "/"); len(objs) != 0 {
			t.Errorf("%s: objects left: %v", tc.source, objs)
		}
		if _, err := h.db.CurrentVersion(ctx, video); !errors.Is(err, catalog.ErrNotFound) {
			t.Errorf("%s: a version was published: %v", tc.source, err)
		}
	}
	if _, err := h.client.EnqueueTranscode(ctx, jobs.TranscodeRequest{VideoID: "../etc", Source: "uploads/x.mp4"}); !errors.Is(err, jobs.ErrInvalidPayload) {
		t.Errorf("bad video id: %v", err)
	}
}

// TestMissingSourceAppearsLater: a source object that is not there on the
// first attempt (an upload not yet visible) is an ordinary, retried
// failure, and the job publishes once the object appears.
func TestMissingSourceAppearsLater(t *testing.T) {
	fs, err := storage.NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, fs)
	ctx := context.Background()
	h.startWorker()
	video := testenv.Name("late")
	res, err := h.client.EnqueueTranscode(ctx, jobs.TranscodeRequest{VideoID: video, Source: "uploads/late.mp4"})
	if err != nil {
		t.Fatal(err)
	}
	// The first attempt's failure is recorded, the job queued again.
	deadline := time.Now().Add(time.Minute)
	for {
		j, err := h.client.Job(ctx, res.TaskID)
		if err != nil {
			t.Fatal(err)
		}
		if j.Attempts == 1 && j.State == jobs.Queued && strings.Contains(j.Error, "not found") {
			if !strings.Contains(j.Error, "attempt 1 of 3 before it fails as bad input") || strings.Contains(j.Error, "bad input:") {
				t.Fatalf("first attempt's error: %q", j.Error)
			}
			break
		}
		if j.State == jobs.Failed || time.Now().After(deadline) {
			t.Fatalf("after the first attempt: %+v", j)
		}
		time.Sleep(20 * time.Millisecond)
	}
	h.upload("uploads/late.mp4", testenv.MakeSource(t, t.TempDir(), testenv.Source{Width: 320, Height: 240, Seconds: 2, Audio: true}))
	if j := h.waitJob(res.TaskID); j.State != jobs.Published || j.Attempts != 2 {
		t.Fatalf("job: %+v, want published on the second attempt", j)
	}
}

// TestGoldenPlaylists pins the playlists a job publishes, byte for byte,
// from a deterministic source, key, key id and IVs.
func TestGoldenPlaylists(t *testing.T) {
	fs, err := storage.NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, fs)
	ck, _ := keys.ContentKeyFromBytes([]byte("0123456789abcdef"))
	h.pipe.newKey = func() (keys.ContentKey, error) { return ck, nil }
	h.pipe.newKeyID = func() (string, error) { return "k_00000000000000000000000000000001", nil }
	h.pipe.newIV = func(name string) (iv [16]byte, err error) {
		rendition, file, _ := strings.Cut(name, "/")
		var segment int
		if _, err := fmt.Sscanf(file, "seg_%05d.ts", &segment); err != nil {
			return iv, err
		}
		copy(iv[:], rendition)
		iv[15] = byte(segment)
		return iv, nil
	}
	src := testenv.MakeSource(t, t.TempDir(), testenv.Source{Width: 320, Height: 240, Seconds: 3, Audio: true, FPS: 25})
	h.upload("uploads/golden.mp4", src)
	h.startWorker()
	res, err := h.client.EnqueueTranscode(context.Background(), jobs.TranscodeRequest{VideoID: "golden", Source: "uploads/golden.mp4"})
	if err != nil {
		t.Fatal(err)
	}
	if j := h.waitJob(res.TaskID); j.State != jobs.Published {
		t.Fatalf("job: %+v", j)
	}
	for _, name := range []string{"master.m3u8", "240p/index.m3u8", "144p/index.m3u8", "240p-iframes/index.m3u8", "144p-iframes/index.m3u8"} {
		b := h.objects("hls/golden/v1/" + name)["hls/golden/v1/"+name]
		golden := filepath.Join("..", "..", "testdata", "pipeline", strings.ReplaceAll(name, "/", "_")+".golden")
		got := normalise(b)
		if *update {
			os.MkdirAll(filepath.Dir(golden), 0o755)
			if err := os.WriteFile(golden, got, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatalf("%v (run go test -update)", err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from %s:\n--- got\n%s\n--- want\n%s", name, golden, got, want)
		}
	}
	// Every playlist the version published, as stored (not normalised),
	// passes third-party strict parsing.
	hlscheck.StrictAll(t, hlscheck.Stored(t, h.store, "hls/golden/v1/"))
}

// Bit rates depend on the exact bytes x264 writes, which vary with its
// version and thread count; they are normalised so the goldens pin the
// structure (measured from segments is tested by the playlist package).
var bandwidthRE = regexp.MustCompile(`(AVERAGE-BANDWIDTH|BANDWIDTH)=\d+`)

func normalise(b []byte) []byte {
	return bandwidthRE.ReplaceAll(b, []byte("$1=<measured>"))
}

// TestDuplicateDelivery runs the same job twice at once, as a lease expiry
// can make asynq do: exactly one version is published, and it verifies.
func TestDuplicateDelivery(t *testing.T) {
	fs, err := storage.NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, fs)
	ctx := context.Background()
	src := testenv.MakeSource(t, t.TempDir(), testenv.Source{Width: 320, Height: 240, Seconds: 2})
	h.upload("uploads/dup.mp4", src)
	if _, _, err := h.db.UpsertJob(ctx, "dup", "uploads/dup.mp4", jobs.TaskID("dup", "uploads/dup.mp4")); err != nil {
		t.Fatal(err)
	}
	task, err := jobs.NewTranscodeTask(jobs.TranscodePayload{VideoID: "dup", Source: "uploads/dup.mp4"})
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 2)
	for range 2 {
		go func() { errs <- h.pipe.ProcessTask(ctx, task) }()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatalf("delivery: %v", err)
		}
	}
	states, err := h.db.VersionStates(ctx, "dup")
	if err != nil {
		t.Fatal(err)
	}
	if states["published"] != 1 || states["superseded"] != 1 {
		t.Fatalf("versions by state %v, want exactly 1 published and 1 superseded", states)
	}
	rep, err := (&verify.Verifier{Store: h.store, DB: h.db, Keyring: h.keyring, Exec: decoder.Exec(t)}).Verify(ctx, "dup")
	if err != nil || !rep.OK() {
		t.Fatalf("verify: %+v %v", rep, err)
	}
	// A third, late delivery finds the job published and does nothing.
	if err := h.pipe.ProcessTask(ctx, task); err != nil {
		t.Fatal(err)
	}
	cur, _ := h.db.CurrentVersion(ctx, "dup")
	if cur.Version != rep.Version {
		t.Fatalf("late delivery changed the current version: v%d → v%d", rep.Version, cur.Version)
	}
}

// TestSecretsStayInMemory looks for the content key everywhere it must not
// be: the argv of every process while ffmpeg runs, the logs, the catalog's
// job record, every stored object and anything left in the temp directory.
func TestSecretsStayInMemory(t *testing.T) {
	fs, err := storage.NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, fs)
	raw := []byte("K3Y!secret-bytes")
	ck, _ := keys.ContentKeyFromBytes(raw)
	h.pipe.newKey = func() (keys.ContentKey, error) { return ck, nil }
	forms := [][]byte{raw, []byte(hexOf(raw)), []byte(strings.ToUpper(hexOf(raw))),
		[]byte(base64.StdEncoding.EncodeToString(raw)), []byte(base64.RawURLEncoding.EncodeToString(raw))}
	leaks := func(b []byte) bool {
		for _, f := range forms {
			if bytes.Contains(b, f) {
				return true
			}
		}
		return false
	}

	src := testenv.MakeSource(t, t.TempDir(), testenv.Source{Width: 320, Height: 240, Seconds: 4, Audio: true})
	h.upload("uploads/secret.mp4", src)
	stop := make(chan struct{})
	scanned := make(chan [2]int)
	go func() {
		var sawFFmpeg, leaked int
		for {
			select {
			case <-stop:
				scanned <- [2]int{sawFFmpeg, leaked}
				return
			default:
			}
			procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
			for _, p := range procs {
				b, err := os.ReadFile(p)
				if err != nil {
					continue
				}
				if bytes.Contains(b, []byte("hlsvault-job-")) {
					sawFFmpeg++
				}
				if leaks(b) {
					leaked++
				}
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	h.startWorker()
	res, err := h.client.EnqueueTranscode(context.Background(), jobs.TranscodeRequest{VideoID: "secret", Source: "uploads/secret.mp4"})
	if err != nil {
		t.Fatal(err)
	}
	j := h.waitJob(res.TaskID)
	close(stop)
	got := <-scanned
	if j.State != jobs.Published {
		t.Fatalf("job: %+v", j)
	}
	if got[0] == 0 {
		t.Fatal("never saw the job's ffmpeg in /proc: the argv scan proved nothing")
	}
	if got[1] != 0 {
		t.Errorf("the key appeared in a process's arguments %d times", got[1])
	}
	if leaks(h.logs.Bytes()) || leaks([]byte(j.Error)) {
		t.Error("the key appeared in the logs or the job record")
	}
	for name, b := range h.objects("") {
		if leaks(b) {
			t.Errorf("stored object %s contains the key", name)
		}
	}
	var left []string
	filepath.WalkDir(h.pipe.cfg.TempDir, func(path string, d os.DirEntry, err error) error {
		if err == nil && path != h.pipe.cfg.TempDir {
			left = append(left, path)
			if b, err := os.ReadFile(path); err == nil && leaks(b) {
				t.Errorf("leftover file %s contains the key", path)
			}
		}
		return nil
	})
	if len(left) != 0 {
		t.Errorf("files left in the temp dir: %v", left)
	}
	// The only copy at rest is wrapped, and useless without the KEK.
	cur, _ := h.db.CurrentVersion(context.Background(), "secret")
	if leaks(cur.Keys[0].Wrapped) {
		t.Error("the wrapped key contains the key")
	}
	other, _ := keys.NewKeyring(testenv.SeededKEK(98))
	if _, err := other.Unwrap(other.Primary().ID(), cur.Keys[0].KeyID, cur.Keys[0].Wrapped); err == nil {
		t.Error("another KEK unwrapped the key")
	}
}
