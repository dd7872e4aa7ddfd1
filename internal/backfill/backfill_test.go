package backfill

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"maps"
	"os"
	"slices"
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
	"github.com/hlsvault/hlsvault/internal/verify"
	"github.com/hlsvault/hlsvault/internal/worker"
	"github.com/hlsvault/hlsvault/jobs"
)

const keyURITemplate = "https://video.example.com/v1/keys/{key_id}"

// harness is a worker (asynq server with the backfill handlers) and an
// operator (Client) on real services: PostgreSQL, Redis and the store.
type harness struct {
	t       *testing.T
	store   storage.Store
	db      *catalog.DB
	dbURL   string // db's database, for programs run against it
	keyring *keys.Keyring
	svc     *Service
	client  *Client
	redis   asynq.RedisClientOpt
	queues  jobs.Queues
	logs    *testenv.SyncBuffer
	log     *slog.Logger
	extra   map[string]asynq.Handler // more handlers for the server (the pipeline)
}

func newHarness(t *testing.T, store storage.Store, opts ...func(*Config)) *harness {
	t.Helper()
	db, dbURL := fixtures.CatalogURL(t)
	keyring := fixtures.Keyring(t)
	logs := &testenv.SyncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	t.Cleanup(func() {
		if t.Failed() || testing.Verbose() && os.Getenv("BACKFILL_TEST_LOGS") != "" {
			t.Log("logs:\n" + logs.String())
		}
	})
	redis := fixtures.Redis(t)
	queues := jobs.QueueNames(testenv.Name("bf"))
	cfg := Config{Queues: queues, KeyURITemplate: keyURITemplate, TickInterval: time.Second, MaxAttempts: 3}
	for _, o := range opts {
		o(&cfg)
	}
	svc, err := New(cfg, store, db, keyring, redis, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close() })
	client := NewClient(db, store, redis, queues)
	client.tick = time.Second
	t.Cleanup(func() { client.Close() })
	return &harness{t: t, store: store, db: db, dbURL: dbURL, keyring: keyring, svc: svc, client: client, redis: redis, queues: queues,
		logs: logs, log: log, extra: map[string]asynq.Handler{}}
}

// startWorker runs the production worker with the backfill handlers (and
// h.extra). stop shuts it down as a SIGTERM would.
func (h *harness) startWorker() (stop func()) {
	h.t.Helper()
	handlers := worker.Handlers{TypeBatch: asynq.HandlerFunc(h.svc.HandleBatch), TypeTick: asynq.HandlerFunc(h.svc.HandleTick)}
	maps.Copy(handlers, h.extra)
	return fixtures.Worker(h.t, worker.Config{Queues: h.queues}, h.redis, h.log, handlers)
}

// waitRun waits until the run reaches one of the states.
func (h *harness) waitRun(runID int64, timeout time.Duration, states ...string) Status {
	h.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		st, err := h.client.Status(context.Background(), runID)
		if err != nil {
			h.t.Fatal(err)
		}
		if slices.Contains(states, st.Run.State) {
			return st
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("run %d is %s after %v, want %v: %+v", runID, st.Run.State, timeout, states, st.Progress)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (h *harness) start(o StartOptions) StartResult {
	h.t.Helper()
	res, err := h.client.Start(context.Background(), o)
	if err != nil {
		h.t.Fatalf("start: %v", err)
	}
	return res
}

func (h *harness) verifier() *verify.Verifier {
	return &verify.Verifier{Store: h.store, DB: h.db, Keyring: h.keyring, Exec: decoder.Exec(h.t), TempDir: h.t.TempDir()}
}

// checkConverted asserts that video's current version verifies and plays
// exactly the legacy bytes of legacy (its top playlist).
func (h *harness) checkConverted(video, legacy string) catalog.Version {
	h.t.Helper()
	ctx := context.Background()
	rep, err := h.verifier().Verify(ctx, video)
	if err != nil {
		h.t.Fatalf("%s: verify: %v", video, err)
	}
	if !rep.OK() {
		h.t.Errorf("%s: verify: %+v", video, rep)
	}
	cur, err := h.db.CurrentVersion(ctx, video)
	if err != nil {
		h.t.Fatal(err)
	}
	ck, err := h.keyring.Unwrap(cur.Keys[0].KEKID, cur.Keys[0].KeyID, cur.Keys[0].Wrapped)
	if err != nil {
		h.t.Fatal(err)
	}
	got := mediaHashes(h.t, h.store, cur.Master, &ck)
	want := mediaHashes(h.t, h.store, legacy, nil)
	if !slices.Equal(got, want) {
		h.t.Errorf("%s: decrypted objects differ from the legacy objects:\n got %v\nwant %v", video, got, want)
	}
	return cur
}

// checkNoKeyLeak asserts that no stored object and no log line contains
// any content key.
func (h *harness) checkNoKeyLeak(videos ...string) {
	h.t.Helper()
	ctx := context.Background()
	var secrets [][]byte
	for _, v := range videos {
		cur, err := h.db.CurrentVersion(ctx, v)
		if err != nil {
			continue
		}
		ck, err := h.keyring.Unwrap(cur.Keys[0].KEKID, cur.Keys[0].KeyID, cur.Keys[0].Wrapped)
		if err != nil {
			h.t.Fatal(err)
		}
		secrets = append(secrets, ck.Bytes())
	}
	logs := h.logs.String()
	for _, s := range secrets {
		if strings.Contains(strings.ToLower(logs), hex.EncodeToString(s)) || strings.Contains(logs, string(s)) {
			h.t.Error("logs contain a content key")
		}
	}
	err := h.store.List(ctx, "", func(o storage.ObjectInfo) error {
		rc, err := h.store.Get(ctx, o.Name)
		if err != nil {
			return err
		}
		defer rc.Close()
		b, err := io.ReadAll(rc)
		for _, s := range secrets {
			if bytes.Contains(b, s) || bytes.Contains(bytes.ToLower(b), []byte(hex.EncodeToString(s))) {
				h.t.Errorf("object %s contains a content key", o.Name)
			}
		}
		return err
	})
	if err != nil {
		h.t.Fatal(err)
	}
}

// TestBackfillCatalogue is the operator's story on both backends: a
// catalogue of legacy titles is converted in the background; every
// converted title verifies and decrypts to the legacy bytes; broken titles
// are reported with their reason; no legacy object changes; a second start
// does nothing.
func TestBackfillCatalogue(t *testing.T) {
	for name, mk := range fixtures.Stores() {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, mk(t))
			ctx := context.Background()
			uploadLegacy(t, h.store, "legacy/")
			before := snapshot(t, h.store, "legacy/")

			// Dry run: what would be done, and nothing recorded.
			dry := h.start(StartOptions{RunOptions: RunOptions{Prefix: "legacy", URLMap: urlMap}, DryRun: true})
			if dry.Run != nil || dry.Summary.Titles[ActionConvert] != len(convertible) || dry.Summary.Titles[ActionBroken] != 2 {
				t.Fatalf("dry run: %+v", dry.Summary)
			}
			for _, c := range dry.Candidates {
				if c.VideoID == titleTSMaster && (len(c.Renditions) != 2 || c.Segments != 6 || c.Bytes == 0) {
					t.Errorf("dry run of %s: %+v", c.VideoID, c)
				}
			}
			if _, err := h.db.LatestBackfillRun(ctx); !errors.Is(err, catalog.ErrNotFound) {
				t.Fatalf("a dry run recorded a run: %v", err)
			}

			res := h.start(StartOptions{RunOptions: RunOptions{Prefix: "legacy/", URLMap: urlMap}, BatchSize: 3, MaxInflight: 2})
			if !res.Created || res.Run == nil {
				t.Fatalf("start: %+v", res)
			}
			// Started again while it runs: the same run.
			again := h.start(StartOptions{RunOptions: RunOptions{Prefix: "legacy/", URLMap: urlMap}, BatchSize: 3, MaxInflight: 2})
			if !again.Existing || again.Run.ID != res.Run.ID {
				t.Fatalf("second start while running: %+v", again)
			}

			h.startWorker()
			st := h.waitRun(res.Run.ID, 3*time.Minute, catalog.RunDone)
			if st.Done != len(convertible) || st.Failed != 2 || st.Remaining != 0 {
				t.Fatalf("status: %+v", st)
			}
			reasons := map[string]string{}
			for _, f := range st.Failures {
				reasons[f.Video] = f.Error
			}
			if !strings.Contains(reasons[titleMissing], "missing") || !strings.Contains(reasons[titleEmpty], "zero-length") {
				t.Errorf("failure reasons: %v", reasons)
			}
			skipped, _ := h.db.BackfillItems(ctx, res.Run.ID, catalog.ItemSkipped)
			if len(skipped) != 1 || skipped[0].VideoID != titleEncrypted || !strings.Contains(skipped[0].Error, "EXT-X-KEY") {
				t.Errorf("skipped: %+v", skipped)
			}
			if st.ThroughputMBps <= 0 || st.Progress.BytesDone == 0 {
				t.Errorf("no throughput: %+v", st)
			}

			for _, video := range convertible {
				legacy := "legacy/" + video + "/index.m3u8"
				if video == titleTSMaster || video == titleAudioGroup || video == titleTrick || video == titleCaptions {
					legacy = "legacy/" + video + "/master.m3u8"
				}
				cur := h.checkConverted(video, legacy)
				if cur.Version != 1 || !strings.HasPrefix(cur.Master, "hls/"+video+"/v1/") {
					t.Errorf("%s: current %+v", video, cur)
				}
				if video == titleAudioGroup {
					// The alternate audio rendition is a catalog row too:
					// the gateway serves only the renditions listed there.
					var audio []catalog.Rendition
					for _, r := range cur.Renditions {
						if r.Type == catalog.RenditionAudio {
							audio = append(audio, r)
						}
					}
					if len(audio) != 1 || audio[0].Group != "group_aud" || audio[0].Language != "en" || audio[0].Segments == 0 {
						t.Errorf("%s: audio renditions %+v", video, audio)
					}
				}
				vs, err := h.db.VideoStatus(ctx, video)
				if err != nil || vs.State != catalog.Published || vs.Version != 1 {
					t.Errorf("%s: status %+v %v", video, vs, err)
				}
			}
			// Every playlist the backfill published (TS and fMP4 titles,
			// masters with audio groups, discontinuities, byte ranges)
			// passes third-party strict parsing.
			hlscheck.StrictAll(t, hlscheck.Stored(t, h.store, "hls/"))
			if after := snapshot(t, h.store, "legacy/"); !maps.Equal(before, after) {
				t.Errorf("legacy objects changed:\nbefore %v\nafter  %v", before, after)
			}
			h.checkNoKeyLeak(convertible...)

			// The same backfill again: nothing to do, nothing recorded.
			second := h.start(StartOptions{RunOptions: RunOptions{Prefix: "legacy/", URLMap: urlMap}, BatchSize: 3, MaxInflight: 2})
			if !second.NothingToDo() || second.Run != nil || second.Summary.Titles[ActionSkip] < len(convertible) {
				t.Fatalf("second start: %+v", second)
			}
			if latest, _ := h.db.LatestBackfillRun(ctx); latest.ID != res.Run.ID {
				t.Errorf("second start recorded run %d", latest.ID)
			}
			for _, video := range convertible {
				if cur, _ := h.db.CurrentVersion(ctx, video); cur.Version != 1 {
					t.Errorf("%s changed on the second start: v%d", video, cur.Version)
				}
			}
		})
	}
}

// slowStore delays every write, so that a title takes long enough to be
// caught in progress.
type slowStore struct {
	storage.Store
	delay time.Duration
}

func (s slowStore) Put(ctx context.Context, name string, r io.Reader, size int64, opts storage.PutOptions) error {
	select {
	case <-time.After(s.delay):
	case <-ctx.Done():
		return ctx.Err()
	}
	return s.Store.Put(ctx, name, r, size, opts)
}

func (h *harness) counts(runID int64) map[string]int {
	h.t.Helper()
	p, err := h.db.BackfillProgressOf(context.Background(), runID)
	if err != nil {
		h.t.Fatal(err)
	}
	return p.Counts
}

func (h *harness) waitDone(runID int64, n int) {
	h.t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for h.counts(runID)[catalog.ItemDone] < n {
		if time.Now().After(deadline) {
			h.t.Fatalf("fewer than %d titles done: %v", n, h.counts(runID))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestBackfillPauseRestartRetry steers a run as an operator would: pause
// stops new titles, resume continues, a worker restart mid-run loses
// nothing, and retry-failed re-queues the failed titles only.
func TestBackfillPauseRestartRetry(t *testing.T) {
	fs, err := storage.NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, slowStore{Store: fs, delay: 150 * time.Millisecond})
	ctx := context.Background()
	uploadLegacy(t, fs, "legacy/", "v1="+titleTSByteRange, "v2="+titleFMP4, "v3="+titleTSMaster, "v4="+titleAudioGroup,
		"late="+titleFMP4, "gone="+titleMissing)
	ids := []string{"gone", "late", "v1", "v2", "v3", "v4"}
	res := h.start(StartOptions{IDs: ids, BatchSize: 1, MaxInflight: 1})
	if !res.Created || res.Summary.Titles[ActionConvert] != 5 || res.Summary.Titles[ActionBroken] != 1 {
		t.Fatalf("start: %+v", res.Summary)
	}
	run := res.Run.ID
	// A segment disappears after discovery: the worker finds out.
	lost := readObject(t, fs, "legacy/late/seg_001.m4s")
	if err := fs.Delete(ctx, "legacy/late/seg_001.m4s"); err != nil {
		t.Fatal(err)
	}

	stop := h.startWorker()
	h.waitDone(run, 1)
	if _, err := h.client.Pause(ctx, run); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond) // the title in progress finishes
	paused := h.counts(run)
	time.Sleep(2500 * time.Millisecond) // two ticks: nothing new starts
	if c := h.counts(run); !maps.Equal(c, paused) || c[catalog.ItemRunning] != 0 || c[catalog.ItemQueued] != 0 || c[catalog.ItemPending] == 0 {
		t.Fatalf("paused run moved: %v then %v", paused, c)
	}
	if _, err := h.client.Pause(ctx, run); !errors.Is(err, catalog.ErrBadTransition) {
		t.Fatalf("pause of a paused run: %v", err)
	}

	if _, err := h.client.Resume(ctx, run); err != nil {
		t.Fatal(err)
	}
	h.waitDone(run, paused[catalog.ItemDone]+1)
	// Stop the worker mid-run, as a deployment would, and start a new one.
	stop()
	if st := h.waitRun(run, time.Second, catalog.RunRunning); st.Remaining == 0 {
		t.Fatalf("run finished before the restart: %+v", st)
	}
	h.startWorker()
	st := h.waitRun(run, 2*time.Minute, catalog.RunDone)
	if st.Done != 4 || st.Failed != 2 {
		t.Fatalf("after restart: %+v", st)
	}
	reasons := map[string]string{}
	for _, f := range st.Failures {
		reasons[f.Video] = f.Error
	}
	if !strings.Contains(reasons["late"], "legacy/late/seg_001.m4s is missing") || !strings.Contains(reasons["gone"], "missing") {
		t.Fatalf("failures: %v", reasons)
	}
	js, _ := h.db.VideoStatus(ctx, "late")
	if js.State != catalog.Failed || !strings.Contains(js.Error, "missing") {
		t.Errorf("job of the broken title: %+v", js)
	}
	doneBefore, _ := h.db.BackfillItems(ctx, run, catalog.ItemDone)

	// The segment is found again; retry-failed re-queues the two failed
	// titles and only them.
	if err := fs.Put(ctx, "legacy/late/seg_001.m4s", bytes.NewReader(lost), int64(len(lost)), storage.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	n, err := h.client.RetryFailed(ctx, run)
	if err != nil || n != 2 {
		t.Fatalf("retry-failed: %d %v", n, err)
	}
	st = h.waitRun(run, 2*time.Minute, catalog.RunDone)
	if st.Done != 5 || st.Failed != 1 || st.Failures[0].Video != "gone" {
		t.Fatalf("after retry-failed: %+v", st)
	}
	doneAfter, _ := h.db.BackfillItems(ctx, run, catalog.ItemDone)
	for _, b := range doneBefore {
		i := slices.IndexFunc(doneAfter, func(a catalog.BackfillItem) bool { return a.ID == b.ID })
		if i < 0 || doneAfter[i].Version != b.Version || doneAfter[i].Attempts != b.Attempts || !doneAfter[i].FinishedAt.Equal(*b.FinishedAt) {
			t.Errorf("retry-failed touched a done title: %+v → %+v", b, doneAfter)
		}
	}
	for video, title := range map[string]string{"v1": titleTSByteRange, "v2": titleFMP4, "v3": titleTSMaster, "v4": titleAudioGroup, "late": titleFMP4} {
		top := "legacy/" + video + "/index.m3u8"
		if title == titleTSMaster || title == titleAudioGroup {
			top = "legacy/" + video + "/master.m3u8"
		}
		h.checkConverted(video, top)
	}
}

func readObject(t testing.TB, store storage.Store, name string) []byte {
	t.Helper()
	rc, err := store.Get(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestBackfillRekey: --rekey gives titles that have a key a fresh key in a
// new version; the old version keeps its key and objects for players still
// on it; the same re-key started again does nothing.
func TestBackfillRekey(t *testing.T) {
	fs, err := storage.NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, fs)
	ctx := context.Background()
	uploadLegacy(t, fs, "legacy/", "rk1="+titleFMP4ByteRange, "rk2="+titleTSMaster, "rk3="+titleTwoMaps)
	h.startWorker()
	ids := []string{"rk1", "rk2", "rk3"}
	first := h.start(StartOptions{IDs: ids})
	h.waitRun(first.Run.ID, 2*time.Minute, catalog.RunDone)
	old := map[string]catalog.Version{}
	for _, v := range ids {
		old[v], _ = h.db.CurrentVersion(ctx, v)
	}
	// Without --rekey, titles with a key are skipped.
	if res := h.start(StartOptions{IDs: ids}); !res.NothingToDo() || res.Summary.Titles[ActionSkip] != 3 {
		t.Fatalf("start without --rekey: %+v", res.Summary)
	}

	legacy := snapshot(t, fs, "legacy/")
	v1 := snapshot(t, fs, "hls/")
	rk := h.start(StartOptions{IDs: ids, RunOptions: RunOptions{Rekey: true, Label: "leak-1"}})
	if !rk.Created || rk.Summary.Titles[ActionRekey] != 3 {
		t.Fatalf("rekey start: %+v", rk.Summary)
	}
	st := h.waitRun(rk.Run.ID, 2*time.Minute, catalog.RunDone)
	if st.Done != 3 {
		t.Fatalf("rekey run: %+v", st)
	}
	for _, v := range ids {
		if rep, err := h.verifier().Verify(ctx, v); err != nil || !rep.OK() {
			t.Errorf("%s: verify after re-key: %+v %v", v, rep, err)
		}
		cur, _ := h.db.CurrentVersion(ctx, v)
		if cur.Version != 2 || cur.Keys[0].KeyID == old[v].Keys[0].KeyID {
			t.Errorf("%s: after re-key %+v, before %+v", v, cur, old[v])
		}
		// The old version and its key remain.
		if _, ver, _, err := h.db.KeyByID(ctx, old[v].Keys[0].KeyID); err != nil || ver != 1 {
			t.Errorf("%s: old key: v%d %v", v, ver, err)
		}
		oldKey, err := h.keyring.Unwrap(old[v].Keys[0].KEKID, old[v].Keys[0].KeyID, old[v].Keys[0].Wrapped)
		if err != nil {
			t.Fatal(err)
		}
		newKey, _ := h.keyring.Unwrap(cur.Keys[0].KEKID, cur.Keys[0].KeyID, cur.Keys[0].Wrapped)
		if bytes.Equal(oldKey.Bytes(), newKey.Bytes()) {
			t.Errorf("%s: the new key is the old key", v)
		}
		if !slices.Equal(mediaHashes(t, fs, old[v].Master, &oldKey), mediaHashes(t, fs, cur.Master, &newKey)) {
			t.Errorf("%s: old and new versions play different bytes", v)
		}
	}
	for name, sum := range v1 {
		if after := snapshot(t, fs, name)[name]; after != sum {
			t.Errorf("old version object %s changed", name)
		}
	}
	if after := snapshot(t, fs, "legacy/"); !maps.Equal(legacy, after) {
		t.Error("legacy objects changed")
	}
	// The same re-key again: nothing to do. Another label re-keys again.
	if res := h.start(StartOptions{IDs: ids, RunOptions: RunOptions{Rekey: true, Label: "leak-1"}}); !res.NothingToDo() {
		t.Fatalf("second re-key start: %+v", res.Summary)
	}
	again := h.start(StartOptions{IDs: []string{"rk1"}, RunOptions: RunOptions{Rekey: true, Label: "leak-2"}})
	h.waitRun(again.Run.ID, time.Minute, catalog.RunDone)
	if cur, _ := h.db.CurrentVersion(ctx, "rk1"); cur.Version != 3 {
		t.Errorf("re-key with a new label: v%d", cur.Version)
	}
	h.checkNoKeyLeak(ids...)
}

// TestBackfillRetranscode: --retranscode runs the transcode pipeline, on the
// background queue, for titles whose source is in storage.
func TestBackfillRetranscode(t *testing.T) {
	fs, err := storage.NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, fs)
	ctx := context.Background()
	pipe := newTestPipeline(t, h)
	h.extra[jobs.TypeTranscode] = pipe
	uploadLegacy(t, fs, "legacy/", "rt1="+titleFMP4, "rt2="+titleFMP4)
	source := testenv.MakeSource(t, t.TempDir(), testenv.Source{Width: 320, Height: 240, Seconds: 2, Audio: true})
	b, err := os.ReadFile(source)
	if err != nil {
		t.Fatal(err)
	}
	if err := fs.Put(ctx, "uploads/rt1.mp4", bytes.NewReader(b), int64(len(b)), storage.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	res := h.start(StartOptions{IDs: []string{"rt1", "rt2"}, RunOptions: RunOptions{Retranscode: true, SourceTemplate: "uploads/{video}.mp4"}})
	if res.Summary.Titles[ActionRetranscode] != 1 || res.Summary.Titles[ActionBroken] != 1 {
		t.Fatalf("start: %+v", res.Candidates)
	}
	h.startWorker()
	st := h.waitRun(res.Run.ID, 3*time.Minute, catalog.RunDone)
	if st.Done != 1 || st.Failed != 1 || !strings.Contains(st.Failures[0].Error, "uploads/rt2.mp4 is not in storage") {
		t.Fatalf("status: %+v", st)
	}
	vs, err := h.db.VideoStatus(ctx, "rt1")
	if err != nil || vs.State != catalog.Published || vs.Source != "uploads/rt1.mp4" || vs.Version != 1 {
		t.Fatalf("rt1: %+v %v", vs, err)
	}
	done, _ := h.db.BackfillItems(ctx, res.Run.ID, catalog.ItemDone)
	if len(done) != 1 || done[0].Version != 1 {
		t.Fatalf("done items: %+v", done)
	}
	if rep, err := h.verifier().Verify(ctx, "rt1"); err != nil || !rep.OK() {
		t.Fatalf("verify: %+v %v", rep, err)
	}
}

// TestBatchYieldsToFreshUploads: a batch hands its titles back while fresh
// uploads wait.
func TestBatchYieldsToFreshUploads(t *testing.T) {
	fs, err := storage.NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, fs)
	ctx := context.Background()
	uploadLegacy(t, fs, "legacy/", "y1="+titleFMP4, "y2="+titleFMP4)
	res := h.start(StartOptions{IDs: []string{"y1", "y2"}, BatchSize: 2, MaxInflight: 1})
	if _, err := h.svc.pump(ctx, res.Run.ID); err != nil {
		t.Fatal(err)
	}
	// A fresh upload waits on a transcode queue, even the low-priority one.
	if _, err := h.svc.client.Enqueue(asynq.NewTask(jobs.TypeTranscode, []byte(`{}`)), asynq.Queue(h.queues.TranscodeLow)); err != nil {
		t.Fatal(err)
	}
	task, _ := newBatchTask(BatchPayload{RunID: res.Run.ID, Batch: 1, Items: []int64{1, 2}})
	if err := h.svc.HandleBatch(ctx, task); err != nil {
		t.Fatal(err)
	}
	if c := h.counts(res.Run.ID); c[catalog.ItemDone] != 0 || c[catalog.ItemQueued] != 2 && c[catalog.ItemPending] != 2 {
		t.Fatalf("batch did not yield: %v", c)
	}
	if !strings.Contains(h.logs.String(), "yielding to fresh uploads") {
		t.Error("no yield logged")
	}
}

// TestPurgeLegacy: legacy objects go only through the grace-period
// collection, once the converted version is in place, and never for titles
// started with --keep-legacy.
func TestPurgeLegacy(t *testing.T) {
	fs, err := storage.NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, fs)
	ctx := context.Background()
	uploadLegacy(t, fs, "legacy/", "p1="+titleTSMaster, "p2="+titleDiscontinuity, "k1="+titleFMP4, "gone="+titleMissing)
	extra := []byte("a thumbnail nobody references")
	fs.Put(ctx, "legacy/p1/thumb.jpg", bytes.NewReader(extra), int64(len(extra)), storage.PutOptions{})
	h.startWorker()
	a := h.start(StartOptions{IDs: []string{"p1", "p2", "gone"}, RunOptions: RunOptions{URLMap: urlMap}})
	b := h.start(StartOptions{IDs: []string{"k1"}, RunOptions: RunOptions{KeepLegacy: true}})
	h.waitRun(a.Run.ID, time.Minute, catalog.RunDone)
	h.waitRun(b.Run.ID, time.Minute, catalog.RunDone)
	before := snapshot(t, fs, "legacy/")

	if res, err := PurgeLegacy(ctx, h.db, fs, time.Hour, 10, h.log); err != nil || res.Titles != 0 {
		t.Fatalf("purge within the grace period: %+v %v", res, err)
	}
	if after := snapshot(t, fs, "legacy/"); !maps.Equal(before, after) {
		t.Fatal("legacy objects removed within the grace period")
	}
	res, err := PurgeLegacy(ctx, h.db, fs, 0, 10, h.log)
	if err != nil || res.Titles != 2 {
		t.Fatalf("purge: %+v %v", res, err)
	}
	after := snapshot(t, fs, "legacy/")
	for name := range before {
		_, kept := after[name]
		switch {
		case strings.HasPrefix(name, "legacy/p1/") && name != "legacy/p1/thumb.jpg", strings.HasPrefix(name, "legacy/p2/"):
			if kept {
				t.Errorf("%s not purged", name)
			}
		default:
			if !kept || after[name] != before[name] {
				t.Errorf("%s purged or changed", name)
			}
		}
	}
	for _, v := range []string{"p1", "p2", "k1"} {
		if rep, err := h.verifier().Verify(ctx, v); err != nil || !rep.OK() {
			t.Errorf("%s after the purge: %+v %v", v, rep, err)
		}
	}
	if res, err := PurgeLegacy(ctx, h.db, fs, 0, 10, h.log); err != nil || res.Titles != 0 {
		t.Fatalf("second purge: %+v %v", res, err)
	}
}
