package webhooks

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/hlsvault/hlsvault/internal/catalog"
	"github.com/hlsvault/hlsvault/internal/testenv"
	"github.com/hlsvault/hlsvault/internal/testenv/fixtures"
	"github.com/hlsvault/hlsvault/internal/worker"
	"github.com/hlsvault/hlsvault/jobs"
)

// request is one request a receiver accepted as authentic.
type request struct {
	ID, Timestamp, Signature string
	Header                   http.Header
	Body                     []byte
	Status                   int
}

// receiver is a real local HTTP endpoint that verifies every request with
// the Standard Webhooks Go library (whsec_ secret, as a receiver is
// configured), answers 503 to the first failFirst attempts of each id, then
// 200.
type receiver struct {
	t         *testing.T
	wh        *standardwebhooks.Webhook
	failFirst int
	hang      func(r request) bool // hang (then 503) until the request's context ends or release
	release   chan struct{}
	unhang    func() // closes release, once

	mu        sync.Mutex
	attempts  map[string][]request
	delivered chan request
	srv       *httptest.Server
}

func newReceiver(t *testing.T, secret string, failFirst int) *receiver {
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	rc := &receiver{t: t, wh: wh, failFirst: failFirst, attempts: map[string][]request{}, delivered: make(chan request, 100),
		release: make(chan struct{})}
	rc.srv = httptest.NewServer(http.HandlerFunc(rc.serve))
	t.Cleanup(rc.srv.Close)
	rc.unhang = sync.OnceFunc(func() { close(rc.release) })
	t.Cleanup(rc.unhang) // before Close, which waits for hung requests
	return rc
}

func (rc *receiver) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		rc.t.Errorf("receiver: read: %v", err)
		return
	}
	if err := rc.wh.Verify(body, r.Header); err != nil || r.Method != http.MethodPost {
		rc.t.Errorf("receiver: %s request does not verify: %v", r.Method, err)
		http.Error(w, "bad signature", http.StatusBadRequest)
		return
	}
	req := request{ID: r.Header.Get("webhook-id"), Timestamp: r.Header.Get("webhook-timestamp"),
		Signature: r.Header.Get("webhook-signature"), Header: r.Header.Clone(), Body: body, Status: http.StatusOK}
	if rc.hang != nil && rc.hang(req) {
		select {
		case <-r.Context().Done():
		case <-rc.release:
		}
		http.Error(w, "hung", http.StatusServiceUnavailable)
		return
	}
	rc.mu.Lock()
	if len(rc.attempts[req.ID]) < rc.failFirst {
		req.Status = http.StatusServiceUnavailable
	}
	rc.attempts[req.ID] = append(rc.attempts[req.ID], req)
	rc.mu.Unlock()
	if req.Status != http.StatusOK {
		http.Error(w, "down for now", req.Status)
		return
	}
	w.WriteHeader(http.StatusNoContent)
	rc.delivered <- req
}

// wait returns the next n delivered requests.
func (rc *receiver) wait(ctx context.Context, n int) []request {
	rc.t.Helper()
	var out []request
	for len(out) < n {
		select {
		case r := <-rc.delivered:
			out = append(out, r)
		case <-ctx.Done():
			rc.t.Fatalf("receiver %s: %d of %d deliveries", rc.srv.URL, len(out), n)
		}
	}
	return out
}

func (rc *receiver) attemptsOf(id string) []request {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]request(nil), rc.attempts[id]...)
}

func newSecret(t *testing.T) (string, []byte) {
	t.Helper()
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	s := "whsec_" + base64.StdEncoding.EncodeToString(b)
	key, err := ParseSecret(s)
	if err != nil {
		t.Fatal(err)
	}
	return s, key
}

type env struct {
	db     *catalog.DB
	pool   *pgxpool.Pool
	redis  asynq.RedisClientOpt
	queue  string
	prefix string
	reg    *prometheus.Registry
	m      *Metrics
	tweak  func(*Config) // applied by service
}

func newEnv(t *testing.T) *env {
	t.Helper()
	db, url := fixtures.CatalogURL(t)
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	e := &env{db: db, pool: pool, redis: fixtures.Redis(t), prefix: testenv.Name("whk"), reg: prometheus.NewRegistry()}
	e.queue = QueueName(e.prefix)
	e.m = NewMetrics(e.reg)
	t.Cleanup(func() {
		insp := asynq.NewInspector(e.redis)
		defer insp.Close()
		_ = insp.DeleteQueue(e.queue, true)
	})
	return e
}

// service builds a Service for tests: fast retries, and no poll (only the
// LISTEN push can wake the dispatcher, so a test fails if it does not).
func (e *env) service(t *testing.T, secret []byte, urls ...string) *Service {
	t.Helper()
	cfg := Config{Queue: e.queue, URLs: urls, Secret: secret, PollInterval: time.Hour,
		RetryDelay: func(int) time.Duration { return 10 * time.Millisecond }, DelayedTaskCheckInterval: 50 * time.Millisecond,
		TaskCheckInterval: 20 * time.Millisecond, TaskRetention: 10 * time.Minute}
	if e.tweak != nil {
		e.tweak(&cfg)
	}
	s, err := New(cfg, e.db, e.redis, e.m, testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	return s
}

// publishJob runs a job to published through the catalog, with the
// caller's metadata and progress on the way (what the pipeline does).
func (e *env) publishJob(t *testing.T, video, task, metadata string) catalog.Attempt {
	t.Helper()
	ctx := context.Background()
	if _, _, err := e.db.UpsertJob(ctx, video, "uploads/"+video+".mp4", task); err != nil {
		t.Fatal(err)
	}
	if _, err := e.pool.Exec(ctx, `update jobs set metadata = $2 where task_id = $1`, task, metadata); err != nil {
		t.Fatal(err)
	}
	a, err := e.db.StartAttempt(ctx, task)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.db.SetProgress(ctx, a.Job.ID, 30); err != nil {
		t.Fatal(err)
	}
	ok, err := e.db.Publish(ctx, catalog.PublishParams{Attempt: a, Master: a.Prefix + "master.m3u8", Duration: 2,
		Renditions: []catalog.Rendition{{Name: "240p", Playlist: a.Prefix + "240p/index.m3u8", Width: 426, Height: 240}},
		Keys:       []catalog.WrappedKey{{KeyID: "k_" + strings.Repeat("ab", 16), KEKID: "kek_test", Wrapped: make([]byte, 45)}}})
	if err != nil || !ok {
		t.Fatalf("publish: %v %v", ok, err)
	}
	return a
}

func (e *env) failJob(t *testing.T, video, task, reason string) {
	t.Helper()
	ctx := context.Background()
	if _, _, err := e.db.UpsertJob(ctx, video, "uploads/"+video+".mp4", task); err != nil {
		t.Fatal(err)
	}
	a, err := e.db.StartAttempt(ctx, task)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.db.FailAttempt(ctx, a.Job.ID, reason, true); err != nil {
		t.Fatal(err)
	}
}

type body struct {
	Type      string `json:"type"`
	Timestamp string `json:"timestamp"`
	Data      struct {
		VideoID  string         `json:"video_id"`
		TaskID   string         `json:"task_id"`
		Version  int            `json:"version"`
		Master   string         `json:"master"`
		Error    string         `json:"error"`
		Progress float64        `json:"progress"`
		Metadata map[string]any `json:"metadata"`
	} `json:"data"`
}

// TestDelivery: events of real catalog changes reach two receivers, one
// down for its first two attempts; each event arrives exactly once per
// webhook-id at each, signed (verified by the library), with the same id
// on every retry and the caller's metadata.
func TestDelivery(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	e := newEnv(t)
	whsec, key := newSecret(t)
	flaky, steady := newReceiver(t, whsec, 2), newReceiver(t, whsec, 0)
	s := e.service(t, key, flaky.srv.URL+"/hooks?token=abc", steady.srv.URL)
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}

	a := e.publishJob(t, "vid1", "task-1", `{"upload_id": "u-77", "user": 5}`)
	e.failJob(t, "vid2", "task-2", "bad input: no video stream")

	got := map[string]map[string]request{}
	for name, rc := range map[string]*receiver{"flaky": flaky, "steady": steady} {
		got[name] = map[string]request{}
		for _, r := range rc.wait(ctx, 3) {
			if _, dup := got[name][r.ID]; dup {
				t.Errorf("%s: %s delivered twice", name, r.ID)
			}
			got[name][r.ID] = r
		}
	}
	s.Shutdown() // waits for running handlers: the counters are final

	byType := map[string]body{}
	for id, r := range got["flaky"] {
		if _, ok := got["steady"][id]; !ok {
			t.Errorf("%s reached only one receiver", id)
		}
		if string(got["steady"][id].Body) != string(r.Body) {
			t.Errorf("%s: bodies differ between receivers", id)
		}
		// Two 503s then the success, all under the same id and body.
		att := flaky.attemptsOf(id)
		if len(att) != 3 || att[0].Status != 503 || att[1].Status != 503 || att[2].Status != 200 {
			t.Errorf("%s: attempts %d", id, len(att))
		}
		for _, x := range att {
			if x.ID != id || string(x.Body) != string(r.Body) {
				t.Errorf("%s: a retry changed id or body", id)
			}
		}
		if n := len(steady.attemptsOf(id)); n != 1 {
			t.Errorf("%s: steady receiver got %d attempts", id, n)
		}
		var b body
		if err := json.Unmarshal(r.Body, &b); err != nil {
			t.Fatal(err)
		}
		if _, err := time.Parse(time.RFC3339, b.Timestamp); err != nil {
			t.Errorf("timestamp %q: %v", b.Timestamp, err)
		}
		if !strings.HasPrefix(id, "msg_") || !strings.HasPrefix(r.Signature, "v1,") {
			t.Errorf("headers: id %q signature %q", id, r.Signature)
		}
		byType[b.Type] = b
		t.Logf("delivered: POST /hooks webhook-id: %s webhook-timestamp: %s webhook-signature: %s\n%s", r.ID, r.Timestamp, r.Signature, r.Body)
	}
	pub, ok := byType["video.published"]
	if !ok || pub.Data.VideoID != "vid1" || pub.Data.TaskID != "task-1" || pub.Data.Version != a.Version ||
		pub.Data.Master != a.Prefix+"master.m3u8" || pub.Data.Metadata["upload_id"] != "u-77" || pub.Data.Metadata["user"] != float64(5) {
		t.Errorf("published: %+v", pub)
	}
	if p := byType["video.progress"]; p.Data.Progress != 25 || p.Data.Metadata["upload_id"] != "u-77" {
		t.Errorf("progress: %+v", p)
	}
	if f := byType["video.failed"]; f.Data.Error != "bad input: no video stream" || f.Data.TaskID != "task-2" {
		t.Errorf("failed: %+v", f)
	}
	for outcome, want := range map[string]float64{OutcomeDelivered: 6, OutcomeRetry: 6, OutcomeFailed: 0} {
		if n := testutil.ToFloat64(e.m.Deliveries.WithLabelValues(outcome)); n != want {
			t.Errorf("deliveries{outcome=%q} = %v, want %v", outcome, n, want)
		}
	}
	// Nothing is left to retry.
	insp := asynq.NewInspector(e.redis)
	defer insp.Close()
	qi, err := insp.GetQueueInfo(e.queue)
	if err != nil || qi.Completed != 6 || qi.Pending+qi.Retry+qi.Scheduled+qi.Active+qi.Archived != 0 {
		t.Errorf("queue: %+v %v", qi, err)
	}
}

// TestGiveUp: a receiver that never answers 2xx gets the first attempt and
// MaxRetry retries, then the task is archived and counted as failed.
func TestGiveUp(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	e := newEnv(t)
	whsec, key := newSecret(t)
	down := newReceiver(t, whsec, 1000)
	s := e.service(t, key, down.srv.URL)
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	e.failJob(t, "vid1", "task-1", "boom")
	insp := asynq.NewInspector(e.redis)
	defer insp.Close()
	for {
		qi, err := insp.GetQueueInfo(e.queue)
		if err == nil && qi.Archived == 1 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("never archived: %+v %v", qi, err)
		case <-time.After(50 * time.Millisecond): // no event for "archived": poll the queue
		}
	}
	s.Shutdown()
	var ids []string
	down.mu.Lock()
	for id, att := range down.attempts {
		ids = append(ids, id)
		if len(att) != 1+MaxRetry {
			t.Errorf("%s: %d attempts, want %d", id, len(att), 1+MaxRetry)
		}
	}
	down.mu.Unlock()
	if len(ids) != 1 {
		t.Fatalf("ids %v", ids)
	}
	if n := testutil.ToFloat64(e.m.Deliveries.WithLabelValues(OutcomeFailed)); n != 1 {
		t.Errorf("failed = %v", n)
	}
	if n := testutil.ToFloat64(e.m.Deliveries.WithLabelValues(OutcomeRetry)); n != MaxRetry {
		t.Errorf("retry = %v", n)
	}
}

// TestCrashBetweenEnqueueAndCommit: a dispatch that enqueued its tasks but
// never marked the events dispatched (a crash before the commit) is
// repeated; the repeat's enqueue conflicts on the task id, both while the
// first task is pending and after it was delivered, so the receiver gets
// each event once.
func TestCrashBetweenEnqueueAndCommit(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	e := newEnv(t)
	whsec, key := newSecret(t)
	rc := newReceiver(t, whsec, 0)
	s := e.service(t, key, rc.srv.URL)
	s.client = asynq.NewClient(e.redis) // dispatch by hand first, no server yet
	crashed := false
	s.afterEnqueue = func() error {
		if !crashed {
			crashed = true
			return errors.New("simulated crash before commit")
		}
		return nil
	}
	e.failJob(t, "vid1", "task-1", "boom")

	if _, err := s.dispatch(ctx); err == nil {
		t.Fatal("the simulated crash did not fail the dispatch")
	}
	undispatched := func() int {
		var n int
		if err := e.pool.QueryRow(ctx, `select count(*) from events where dispatched_at is null`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := undispatched(); n != 1 {
		t.Fatalf("after the crash %d undispatched events, want 1", n)
	}
	if n, err := s.dispatch(ctx); err != nil || n != 1 || undispatched() != 0 {
		t.Fatalf("repeated dispatch: %d %v", n, err)
	}
	insp := asynq.NewInspector(e.redis)
	defer insp.Close()
	if qi, err := insp.GetQueueInfo(e.queue); err != nil || qi.Pending != 1 {
		t.Fatalf("after two dispatches: %+v %v (want one pending task)", qi, err)
	}
	_ = s.client.Close()

	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	first := rc.wait(ctx, 1)[0]
	s.Shutdown() // no loop dispatches behind the test's back
	// The same crash after the delivery: the retained task still holds
	// its id.
	if _, err := e.pool.Exec(ctx, `update events set dispatched_at = null`); err != nil {
		t.Fatal(err)
	}
	s.client = asynq.NewClient(e.redis)
	defer s.client.Close()
	if n, err := s.dispatch(ctx); err != nil || n != 1 {
		t.Fatalf("dispatch after delivery: %d %v", n, err)
	}
	if qi, err := insp.GetQueueInfo(e.queue); err != nil || qi.Completed != 1 || qi.Pending+qi.Retry+qi.Active != 0 {
		t.Fatalf("after the third dispatch: %+v %v (want only the completed task)", qi, err)
	}
	if att := rc.attemptsOf(first.ID); len(att) != 1 {
		t.Fatalf("%d deliveries of %s", len(att), first.ID)
	}
}

// TestNoURLs: without URLs events are recorded and marked dispatched,
// nothing is queued.
func TestNoURLs(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e := newEnv(t)
	s := e.service(t, nil)
	e.failJob(t, "vid1", "task-1", "boom")
	if n, err := s.dispatch(ctx); err != nil || n != 1 {
		t.Fatalf("dispatch: %d %v", n, err)
	}
	var n int
	if err := e.pool.QueryRow(ctx, `select count(*) from events where dispatched_at is null`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("undispatched %d %v", n, err)
	}
}

func TestParseSecret(t *testing.T) {
	good, _ := newSecret(t)
	if _, err := ParseSecret(good); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{
		"",
		strings.TrimPrefix(good, "whsec_"),
		"whsec_not base64!",
		"whsec_" + base64.StdEncoding.EncodeToString(make([]byte, 16)),
		"whsec_" + base64.StdEncoding.EncodeToString(make([]byte, 65)),
		"whsec_" + base64.StdEncoding.EncodeToString([]byte(strings.Repeat("secret", 5))),
	} {
		_, err := ParseSecret(bad)
		if err == nil {
			t.Errorf("ParseSecret(%q) accepted", bad)
			continue
		}
		if bad != "" && strings.Contains(err.Error(), strings.TrimPrefix(bad, "whsec_")) {
			t.Errorf("error repeats the secret: %v", err)
		}
	}
}

func TestParseURLs(t *testing.T) {
	got, err := ParseURLs(" https://a.example/hook?t=1 , http://127.0.0.1:8080/x,")
	if err != nil || len(got) != 2 || got[0] != "https://a.example/hook?t=1" {
		t.Fatalf("%q %v", got, err)
	}
	if got, err := ParseURLs(""); err != nil || len(got) != 0 {
		t.Fatalf("empty: %q %v", got, err)
	}
	for _, bad := range []string{"ftp://a/x", "a.example/hook", "https:///x", "https://a/x#f", "https://a/x,https://a/x", "http://[::1"} {
		if _, err := ParseURLs(bad); err == nil {
			t.Errorf("ParseURLs(%q) accepted", bad)
		}
	}
	_, err = ParseURLs("ftp://user:pw@a/x?token=sekrit")
	if err == nil || strings.Contains(err.Error(), "sekrit") || strings.Contains(err.Error(), "pw") {
		t.Errorf("error shows the token: %v", err)
	}
}

func TestRetryDelay(t *testing.T) {
	var total time.Duration
	for n := range MaxRetry {
		total += RetryDelay(n)
	}
	if RetryDelay(0) != 5*time.Second || RetryDelay(MaxRetry-1) != 10*time.Hour || total < 24*time.Hour {
		t.Fatalf("schedule: first %v last %v total %v", RetryDelay(0), RetryDelay(MaxRetry-1), total)
	}
}

// TestSeparateFromTranscoding: deliveries run in a server of their own. A
// receiver that hangs does not delay a transcode, and a transcode that holds
// the worker's only slot does not delay a delivery.
func TestSeparateFromTranscoding(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	e := newEnv(t)
	e.tweak = func(c *Config) { c.Concurrency, c.RequestTimeout = 2, time.Minute }
	whsec, key := newSecret(t)
	rc := newReceiver(t, whsec, 0)
	hung := make(chan string, 1)
	var hangOnce sync.Once
	rc.hang = func(r request) (h bool) {
		hangOnce.Do(func() { h = true; hung <- r.ID })
		return h
	}
	s := e.service(t, key, rc.srv.URL)
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	transcoded := make(chan string, 1)
	fixtures.Worker(t, worker.Config{Queues: jobs.QueueNames(e.prefix), Concurrency: 1}, e.redis, testenv.Logger(t),
		worker.Handlers{jobs.TypeTranscode: asynq.HandlerFunc(func(ctx context.Context, _ *asynq.Task) error {
			// Holding the only transcode slot, make an event and wait for
			// its delivery.
			e.failJob(t, "vid2", "task-2", "second")
			transcoded <- rc.wait(ctx, 1)[0].ID
			return nil
		})})
	// Queue tasks are removed with the webhooks queue's; the transcode
	// queue is the test's own too.
	t.Cleanup(func() {
		insp := asynq.NewInspector(e.redis)
		defer insp.Close()
		_ = insp.DeleteQueue(jobs.QueueNames(e.prefix).Transcode, true)
	})

	e.failJob(t, "vid1", "task-1", "first")
	var hungID string
	select {
	case hungID = <-hung:
	case <-ctx.Done():
		t.Fatal("the receiver never got the first event")
	}
	cl := asynq.NewClient(e.redis)
	defer cl.Close()
	if _, err := cl.EnqueueContext(ctx, asynq.NewTask(jobs.TypeTranscode, []byte(`{}`)), asynq.Queue(jobs.QueueNames(e.prefix).Transcode)); err != nil {
		t.Fatal(err)
	}
	select {
	case id := <-transcoded:
		if id == hungID {
			t.Fatalf("the hung event %s was delivered", id)
		}
	case <-ctx.Done():
		t.Fatal("the transcode (or its delivery) waited for the hung receiver")
	}
	if att := rc.attemptsOf(hungID); len(att) != 0 {
		t.Fatalf("the hung request finished: %d", len(att))
	}
	rc.unhang() // before the service's shutdown waits for the hung delivery
	s.Shutdown()
}

// TestNodeVerifier: a delivered request also verifies with the
// standardwebhooks npm package (e2e/webhooks, installed by `make deps`), an
// implementation nobody here wrote, in another language; a tampered body
// does not.
func TestNodeVerifier(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node not found (run `make deps`): %v", err)
	}
	script, err := filepath.Abs(filepath.Join("..", "..", "e2e", "webhooks", "verify.mjs"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(script), "node_modules", "standardwebhooks", "package.json")); err != nil {
		t.Fatalf("standardwebhooks missing (run `make deps`: npm ci --prefix e2e/webhooks): %v", err)
	}
	e := newEnv(t)
	whsec, key := newSecret(t)
	rc := newReceiver(t, whsec, 0)
	s := e.service(t, key, rc.srv.URL)
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	e.publishJob(t, "vid1", "task-1", `{"upload_id": "u-1"}`)
	for _, r := range rc.wait(ctx, 2) {
		for _, tc := range []struct {
			body string
			ok   bool
		}{{string(r.Body), true}, {strings.Replace(string(r.Body), "u-1", "u-2", 1), false}} {
			in, err := json.Marshal(map[string]any{"secret": whsec, "body": tc.body, "headers": map[string]string{
				"webhook-id": r.ID, "webhook-timestamp": r.Timestamp, "webhook-signature": r.Signature}})
			if err != nil {
				t.Fatal(err)
			}
			cmd := exec.CommandContext(ctx, node, script)
			cmd.Stdin = bytes.NewReader(in)
			out, err := cmd.CombinedOutput()
			if (err == nil) != tc.ok {
				t.Errorf("node verify (want ok %v): %v\n%s", tc.ok, err, out)
			}
			if tc.ok && !strings.HasPrefix(string(out), "verified video.") {
				t.Errorf("node verify: %s", out)
			}
		}
	}
}

// TestPushed: with the poll an hour away, a new event is dispatched
// because its transaction notified the listener. The loop drains once at
// start and once when the listener is ready; the third drain can only
// come from the NOTIFY.
func TestPushed(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e := newEnv(t)
	whsec, key := newSecret(t)
	rc := newReceiver(t, whsec, 0)
	s := e.service(t, key, rc.srv.URL)
	drains := make(chan struct{}, 10)
	s.drained = func() { drains <- struct{}{} }
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		select {
		case <-drains:
		case <-ctx.Done():
			t.Fatal("no drain at start")
		}
	}
	e.failJob(t, "vid1", "task-1", "boom")
	select {
	case <-drains:
	case <-ctx.Done():
		t.Fatal("the event's NOTIFY woke no dispatch")
	}
	rc.wait(ctx, 1)
}
