package pipeline

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/hlsvault/hlsvault/internal/catalog"
	"github.com/hlsvault/hlsvault/internal/keys"
	"github.com/hlsvault/hlsvault/internal/playlist"
	"github.com/hlsvault/hlsvault/internal/segcrypt"
	"github.com/hlsvault/hlsvault/internal/testenv"
	"github.com/hlsvault/hlsvault/internal/testenv/decoder"
	"github.com/hlsvault/hlsvault/internal/testenv/fixtures"
	"github.com/hlsvault/hlsvault/internal/testenv/hlscheck"
	"github.com/hlsvault/hlsvault/internal/transcode"
	"github.com/hlsvault/hlsvault/internal/verify"
	"github.com/hlsvault/hlsvault/internal/worker"
	"github.com/hlsvault/hlsvault/jobs"
)

// withChunks turns chunking on: chunk of media per chunk, 4 s segments, a
// two-rung ladder that fits a 160x90 source.
func withChunks(t *testing.T, chunk time.Duration) func(*Config) {
	return func(c *Config) {
		ladder, err := transcode.ParseLadder("90p:120k:64k,72p:80k:48k")
		if err != nil {
			t.Fatal(err)
		}
		cl := asynq.NewClient(fixtures.Redis(t))
		t.Cleanup(func() { cl.Close() })
		c.Ladder, c.Segment, c.Chunk, c.Enqueuer = ladder, 4*time.Second, chunk, cl
	}
}

// chunkWorker runs one more worker process's worth of pipeline (its own
// Pipeline and asynq server, logging as name) on the harness's queues.
func (h *harness) chunkWorker(name string, logs io.Writer) (stop func()) {
	h.t.Helper()
	log := slog.New(slog.NewTextHandler(io.MultiWriter(logs, testenv.TestWriter{T: h.t}), nil)).With("worker", name)
	p, err := New(h.pipe.cfg, h.store, h.db, h.keyring, log, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	p.pieceHook, p.publishHook = h.pipe.pieceHook, h.pipe.publishHook
	hs := worker.Handlers{jobs.TypeTranscode: p}
	maps.Copy(hs, p.PieceHandlers())
	return fixtures.Worker(h.t, worker.Config{Queues: h.queues, RetryDelay: func(int) time.Duration { return time.Second }},
		h.redis, log, hs)
}

// waitEnd waits until the job is published, failed or cancelled.
func (h *harness) waitEnd(taskID string, limit time.Duration) jobs.Job {
	h.t.Helper()
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		j, err := h.client.Job(context.Background(), taskID)
		if err != nil {
			h.t.Fatal(err)
		}
		if j.State == jobs.Published || j.State == jobs.Failed || j.State == jobs.Cancelled {
			return j
		}
		time.Sleep(200 * time.Millisecond)
	}
	h.t.Fatalf("job %s did not end in %v", taskID, limit)
	return jobs.Job{}
}

// decryptRendition decrypts every segment of one media playlist of cur,
// each with its own period's key, into one MPEG-TS file.
func (h *harness) decryptRendition(t *testing.T, cur catalog.Version, name string) (string, *playlist.ParsedMedia) {
	t.Helper()
	byURI := map[string]keys.ContentKey{}
	for _, k := range cur.Keys {
		ck, err := h.keyring.Unwrap(k.KEKID, k.KeyID, k.Wrapped)
		if err != nil {
			t.Fatal(err)
		}
		byURI[strings.ReplaceAll(h.pipe.cfg.KeyURITemplate, "{key_id}", k.KeyID)] = ck
	}
	objs := h.objects(name)
	m, err := playlist.ParseMedia(bytes.NewReader(objs[name]))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	var ts bytes.Buffer
	for _, s := range m.Segments {
		seg := path.Join(path.Dir(name), s.URI)
		iv, err := hex.DecodeString(strings.TrimPrefix(strings.ToLower(s.Key.IV), "0x"))
		if err != nil {
			t.Fatal(err)
		}
		ck, ok := byURI[s.Key.URI]
		if !ok {
			t.Fatalf("%s: key %s is not the version's", seg, s.Key.URI)
		}
		dec, err := segcrypt.NewDecryptReader(bytes.NewReader(h.objects(seg)[seg]), ck.Bytes(), iv)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(&ts, dec); err != nil {
			t.Fatalf("%s: %v", seg, err)
		}
	}
	p := filepath.Join(t.TempDir(), path.Base(path.Dir(name))+".ts")
	if err := os.WriteFile(p, ts.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return p, m
}

// packetPTS lists the PTS of every packet of a file's first stream, in
// presentation order.
func packetPTS(t *testing.T, file string) []int64 {
	t.Helper()
	_, ffprobe := testenv.FFmpeg(t)
	out, err := exec.Command(ffprobe, "-v", "error", "-select_streams", "0", "-show_entries", "packet=pts", "-of", "csv=p=0", file).Output()
	if err != nil {
		t.Fatalf("ffprobe %s: %v", file, err)
	}
	var pts []int64
	for _, l := range strings.Fields(string(out)) {
		v, err := strconv.ParseInt(strings.TrimSuffix(l, ","), 10, 64)
		if err != nil {
			t.Fatalf("pts %q", l)
		}
		pts = append(pts, v)
	}
	slices.Sort(pts)
	return pts
}

// TestChunkedTwoWorkers is issue 13's done-when, in process: a 10-minute
// source, CHUNK_SECONDS=60 (10 chunks and the title piece), two worker
// processes' worth of pipelines and asynq servers sharing the job through
// Redis and PostgreSQL. Both take pieces; nothing is done twice; the
// version verifies; every rendition has the unchunked plan's 150 segments
// of 4 s, numbered and sequenced continuously with no discontinuity; the
// video PTS advances by exactly one frame across every seam and the
// audio, encoded once, without a gap; the key periods (140 s, across
// chunk boundaries) form one key sequence; the progress events sum the
// pieces'.
func TestChunkedTwoWorkers(t *testing.T) {
	h := newHarness(t, fixtures.FS(t), withChunks(t, time.Minute), func(c *Config) { c.KeyPeriod = 140 * time.Second })
	ctx := context.Background()
	src := testenv.MakeSource(t, t.TempDir(), testenv.Source{Width: 160, Height: 90, Seconds: 600, FPS: 25, Audio: true})
	h.upload("uploads/long.mp4", src)
	video := testenv.Name("chunked")
	var logsA, logsB testenv.SyncBuffer
	h.chunkWorker("A", &logsA)
	h.chunkWorker("B", &logsB)
	res, err := h.client.EnqueueTranscode(ctx, jobs.TranscodeRequest{VideoID: video, Source: "uploads/long.mp4"})
	if err != nil {
		t.Fatal(err)
	}
	j := h.waitEnd(res.TaskID, 8*time.Minute)
	if j.State != jobs.Published || j.Attempts != 1 {
		t.Fatalf("job %+v", j)
	}
	all := logsA.String() + logsB.String()
	if !strings.Contains(all, "fanned out") {
		t.Fatal("the job was not chunked")
	}
	// Every piece stored once (no duplicate work), and both workers did
	// some (scale-out).
	for piece := range 11 {
		re := regexp.MustCompile(fmt.Sprintf(`msg="piece stored" worker=[AB] job=\d+ version=1 piece=%d piece_attempt=1 `, piece))
		if n := len(re.FindAllString(all, -1)); n != 1 {
			t.Errorf("piece %d stored %d times", piece, n)
		}
	}
	if strings.Contains(all, "piece_attempt=2") {
		t.Error("a piece was run twice")
	}
	if a, b := strings.Count(logsA.String(), "piece stored"), strings.Count(logsB.String(), "piece stored"); a == 0 || b == 0 {
		t.Errorf("pieces stored by worker A: %d, by B: %d; want both", a, b)
	}

	ver := &verify.Verifier{Store: h.store, DB: h.db, Keyring: h.keyring, Exec: decoder.Exec(t)}
	rep, err := ver.Verify(ctx, video)
	if err != nil || !rep.OK() {
		t.Fatalf("verify: %+v %v", rep, err)
	}
	hlscheck.StrictAll(t, hlscheck.Stored(t, h.store, "hls/"+video+"/"))
	cur, err := h.db.CurrentVersion(ctx, video)
	if err != nil {
		t.Fatal(err)
	}
	if len(cur.Keys) != 5 {
		t.Errorf("keys %+v, want 5 periods of 140 s", cur.Keys)
	}
	var videoPTS [][]int64
	for _, r := range cur.Renditions {
		if r.Type == catalog.RenditionStoryboard {
			continue
		}
		file, m := h.decryptRendition(t, cur, r.Playlist)
		if r.Type == catalog.RenditionAudio {
			if r.Segments < 149 || r.Segments > 151 {
				t.Errorf("%s: %d audio segments", r.Name, r.Segments)
			}
		} else if len(m.Segments) != 150 {
			t.Errorf("%s: %d segments, want 150", r.Name, len(m.Segments))
		}
		for i, s := range m.Segments {
			if want := fmt.Sprintf("seg_%05d.ts", i); s.URI != want || s.Discontinuity {
				t.Errorf("%s: segment %d is %s (discontinuity %v), want %s", r.Name, i, s.URI, s.Discontinuity, want)
			}
			if r.Type != catalog.RenditionAudio && s.Duration != 4 {
				t.Errorf("%s: segment %d lasts %v", r.Name, i, s.Duration)
			}
		}
		pts := packetPTS(t, file)
		step := int64(90000 / 25)
		if r.Type == catalog.RenditionAudio {
			step = 1920 // 1024 samples at 48 kHz
		}
		for i := 1; i < len(pts); i++ {
			if pts[i]-pts[i-1] != step {
				t.Errorf("%s: PTS jumps from %d to %d (at %.3f s)", r.Name, pts[i-1], pts[i], float64(pts[i])/90000)
				break
			}
		}
		if r.Type == catalog.RenditionAudio {
			if pts[0] != videoPTS[0][0] {
				t.Errorf("audio starts at %d, video at %d", pts[0], videoPTS[0][0])
			}
		} else {
			if len(pts) != 15000 {
				t.Errorf("%s: %d frames, want 15000", r.Name, len(pts))
			}
			videoPTS = append(videoPTS, pts)
		}
	}
	if len(videoPTS) != 2 {
		t.Fatalf("%d video renditions", len(videoPTS))
	}
	var leftover int
	if err := h.db.Pool().QueryRow(ctx, `select count(*) from chunked_jobs where job_id = $1`, j.ID).Scan(&leftover); err != nil || leftover != 0 {
		t.Errorf("chunk rows left after publish: %d %v", leftover, err)
	}
}

// TestChunkRetriedAlone: a piece that fails after storing its segments is
// retried alone (asynq's retry), its second delivery storing under new
// names (objects are never overwritten), and the job publishes a version
// that verifies; no other piece runs twice.
func TestChunkRetriedAlone(t *testing.T) {
	h := newHarness(t, fixtures.FS(t), withChunks(t, 8*time.Second))
	h.pipe.pieceHook = func(_ context.Context, piece, attempt int) error {
		if piece == 2 && attempt == 1 {
			return errors.New("injected failure after the segments were stored")
		}
		return nil
	}
	ctx := context.Background()
	src := testenv.MakeSource(t, t.TempDir(), testenv.Source{Width: 160, Height: 90, Seconds: 40, Audio: true})
	h.upload("uploads/retry.mp4", src)
	video := testenv.Name("retry")
	var logs testenv.SyncBuffer
	h.chunkWorker("A", &logs)
	res, err := h.client.EnqueueTranscode(ctx, jobs.TranscodeRequest{VideoID: video, Source: "uploads/retry.mp4"})
	if err != nil {
		t.Fatal(err)
	}
	if j := h.waitEnd(res.TaskID, 3*time.Minute); j.State != jobs.Published {
		t.Fatalf("job %+v", j)
	}
	out := logs.String()
	retried := regexp.MustCompile(`piece=(\d+) piece_attempt=([2-9])`).FindAllStringSubmatch(out, -1)
	if len(retried) == 0 {
		t.Errorf("piece 2 was not retried:\n%s", out)
	}
	for _, m := range retried {
		if m[1] != "2" || m[2] != "2" {
			t.Errorf("piece %s ran an attempt %s; want only piece 2's second:\n%s", m[1], m[2], out)
			break
		}
	}
	ver := &verify.Verifier{Store: h.store, DB: h.db, Keyring: h.keyring, Exec: decoder.Exec(t)}
	if rep, err := ver.Verify(ctx, video); err != nil || !rep.OK() {
		t.Fatalf("verify: %+v %v", rep, err)
	}
	cur, err := h.db.CurrentVersion(ctx, video)
	if err != nil {
		t.Fatal(err)
	}
	name := cur.Prefix + "90p/index.m3u8"
	m, err := playlist.ParseMedia(bytes.NewReader(h.objects(name)[name]))
	if err != nil || len(m.Segments) != 10 {
		t.Fatalf("%s: %+v %v", name, m, err)
	}
	for i, s := range m.Segments {
		want := fmt.Sprintf("seg_%05d.ts", i)
		if i/2 == 2 { // chunk 2: segments 4 and 5, stored by the retry
			want = fmt.Sprintf("seg_%05d_r2.ts", i)
		}
		if s.URI != want {
			t.Errorf("segment %d is %s, want %s", i, s.URI, want)
		}
	}
}

// TestChunkedCancel: cancelling a chunked job stops its running piece
// (which watches the job) and the queued ones (archived when they start,
// never run), publishes nothing and drops the attempt's rows, its wrapped
// keys with them.
func TestChunkedCancel(t *testing.T) {
	h := newHarness(t, fixtures.FS(t), withChunks(t, 8*time.Second))
	running := make(chan struct{}, 1)
	h.pipe.pieceHook = func(ctx context.Context, piece, _ int) error {
		if piece != 1 {
			return nil
		}
		running <- struct{}{}
		<-ctx.Done() // a long encode
		return fmt.Errorf("pipeline: %w", context.Cause(ctx))
	}
	ctx := context.Background()
	src := testenv.MakeSource(t, t.TempDir(), testenv.Source{Width: 160, Height: 90, Seconds: 40, Audio: true})
	h.upload("uploads/cancel.mp4", src)
	video := testenv.Name("cancel")
	var logs testenv.SyncBuffer
	h.chunkWorker("A", &logs)
	res, err := h.client.EnqueueTranscode(ctx, jobs.TranscodeRequest{VideoID: video, Source: "uploads/cancel.mp4"})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-running:
	case <-time.After(2 * time.Minute):
		t.Fatal("piece 1 did not start")
	}
	if _, err := h.client.Cancel(ctx, video); err != nil {
		t.Fatal(err)
	}
	if j := h.waitEnd(res.TaskID, time.Minute); j.State != jobs.Cancelled {
		t.Fatalf("job %+v", j)
	}
	insp := asynq.NewInspector(h.redis)
	defer insp.Close()
	deadline := time.Now().Add(time.Minute)
	for {
		qi, err := insp.GetQueueInfo(h.queues.Transcode)
		if err != nil {
			t.Fatal(err)
		}
		if qi.Pending == 0 && qi.Active == 0 && qi.Retry == 0 && qi.Scheduled == 0 {
			// The title piece (5) and chunk 0 ran first; chunk 1 was
			// stopped, 2 to 4 never ran: all four archived.
			if qi.Archived != 4 {
				t.Errorf("%d tasks archived, want pieces 1 to 4", qi.Archived)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pieces still queued or running: %+v", qi)
		}
		time.Sleep(200 * time.Millisecond)
	}
	out := logs.String()
	if !strings.Contains(out, `msg="job cancelled; piece stopped" worker=A job=`) || !strings.Contains(out, "piece=1 piece_attempt=1 err=") {
		t.Errorf("the running piece was not stopped:\n%s", out)
	}
	for piece := 2; piece <= 4; piece++ {
		if strings.Contains(out, fmt.Sprintf("piece=%d piece_attempt=", piece)) {
			t.Errorf("piece %d ran after the cancel", piece)
		}
	}
	if _, err := h.db.CurrentVersion(ctx, video); !errors.Is(err, catalog.ErrNotFound) {
		t.Errorf("current version after a cancel: %v", err)
	}
	var rows int
	if err := h.db.Pool().QueryRow(ctx, `select count(*) from chunk_keys`).Scan(&rows); err != nil || rows != 0 {
		t.Errorf("chunk keys left after the cancel: %d %v", rows, err)
	}
}

// TestChunksFor: what is split and what stays on the one-run path.
func TestChunksFor(t *testing.T) {
	long := transcode.Plan{GOP: 100, FrameRate: transcode.Rational{Num: 25, Den: 1}, Duration: 10 * time.Minute}
	fmp4 := long
	fmp4.Segments = transcode.SegmentsFMP4
	p := &Pipeline{cfg: Config{Chunk: time.Minute, Enqueuer: &asynq.Client{}}}
	log := slog.New(slog.DiscardHandler)
	for _, tc := range []struct {
		name string
		plan transcode.Plan
		want int
	}{
		{"a long TS job", long, 10},
		{"a long fMP4 job", fmp4, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := p.chunksFor(log, tc.plan)
			if err != nil || len(got) != tc.want {
				t.Fatalf("chunksFor = %d chunks, %v; want %d", len(got), err, tc.want)
			}
		})
	}
	off := &Pipeline{cfg: Config{Enqueuer: &asynq.Client{}}}
	if got, err := off.chunksFor(log, long); err != nil || got != nil {
		t.Fatalf("CHUNK_SECONDS=0: chunksFor = %v, %v; want none", got, err)
	}
}

// TestChunkedSubtitles: a chunked job with an embedded (mov_text) track
// and a sidecar is published with both subtitle renditions: one WebVTT
// segment per video segment, every one naming the PTS the title's first
// video segment starts at (chunk 0's, measured), a cue spanning a chunk
// seam written on both sides of it. The join's first delivery dies after
// it stored the subtitle segments and every playlist; its retry writes
// the same bytes over them (nothing refused, nothing overwritten) and
// publishes, in the job's one attempt.
func TestChunkedSubtitles(t *testing.T) {
	h := newHarness(t, fixtures.FS(t), withChunks(t, 8*time.Second))
	var joins atomic.Int32
	h.pipe.publishHook = func(context.Context) error {
		if joins.Add(1) == 1 {
			return errors.New("injected: the join's worker died before it published")
		}
		return nil
	}
	ctx := context.Background()
	dir := t.TempDir()
	src := testenv.MakeSubtitledSource(t, dir, testenv.Source{Width: 160, Height: 90, Seconds: 40, Audio: true})
	side := filepath.Join(dir, "fr.vtt")
	const sidecar = "WEBVTT\n\n00:00:01.000 --> 00:00:02.000\nAvant la couture\n\n" +
		"00:00:07.500 --> 00:00:08.500\nÀ cheval sur la couture\n\n00:00:35.000 --> 00:00:36.000\nLa fin\n"
	if err := os.WriteFile(side, []byte(sidecar), 0o600); err != nil {
		t.Fatal(err)
	}
	video := testenv.Name("chunksubs")
	h.upload("uploads/"+video+".mp4", src)
	h.upload("uploads/"+video+"/fr.vtt", side)
	var logs testenv.SyncBuffer
	h.chunkWorker("A", &logs)
	res, err := h.client.EnqueueTranscode(ctx, jobs.TranscodeRequest{VideoID: video, Source: "uploads/" + video + ".mp4",
		Subtitles: []jobs.Subtitle{{Language: "fre", Source: "uploads/" + video + "/fr.vtt"}}})
	if err != nil {
		t.Fatal(err)
	}
	j := h.waitEnd(res.TaskID, 3*time.Minute)
	if j.State != jobs.Published || j.Attempts != 1 {
		t.Fatalf("job %+v\n%s", j, logs.String())
	}
	out := logs.String()
	if !strings.Contains(out, "fanned out") || !strings.Contains(out, "subtitles=2") {
		t.Fatalf("not chunked with its two subtitle tracks:\n%s", out)
	}
	if n := joins.Load(); n != 2 {
		t.Fatalf("the join ran %d times, want the failed one and its retry", n)
	}
	ver := &verify.Verifier{Store: h.store, DB: h.db, Keyring: h.keyring, Exec: decoder.Exec(t)}
	if rep, err := ver.Verify(ctx, video); err != nil || !rep.OK() {
		t.Fatalf("verify: %+v %v", rep, err)
	}
	hlscheck.StrictAll(t, hlscheck.Stored(t, h.store, "hls/"+video+"/"))
	cur, err := h.db.CurrentVersion(ctx, video)
	if err != nil {
		t.Fatal(err)
	}
	var vm *playlist.ParsedMedia
	var seg0 string
	subs := map[string]catalog.Rendition{}
	for _, r := range cur.Renditions {
		switch {
		case r.Type == RenditionSubtitles:
			subs[r.Name] = r
		case r.Type == "" && vm == nil:
			if vm, err = playlist.ParseMedia(bytes.NewReader(h.objects(r.Playlist)[r.Playlist])); err != nil {
				t.Fatal(err)
			}
			seg0 = path.Join(path.Dir(r.Playlist), vm.Segments[0].URI)
		}
	}
	if len(subs) != 2 || vm == nil || len(vm.Segments) != 10 {
		t.Fatalf("renditions %+v", cur.Renditions)
	}
	header := vttHeader(t, h, cur, seg0, vm.Segments[0].Key)
	fr, ok := subs["sub1-fr"]
	if !ok {
		t.Fatalf("no French rendition: %+v", subs)
	}
	for _, r := range subs {
		m, err := playlist.ParseMedia(bytes.NewReader(h.objects(r.Playlist)[r.Playlist]))
		if err != nil || len(m.Segments) != len(vm.Segments) {
			t.Fatalf("%s: %d segments, %v; want the video's %d", r.Name, len(m.Segments), err, len(vm.Segments))
		}
		for i, s := range m.Segments {
			if s.Duration != vm.Segments[i].Duration || s.Key == nil || s.Key.URI != vm.Segments[i].Key.URI {
				t.Errorf("%s: segment %d (%v s, key %+v) is not video segment %d (%v s, key %+v)", r.Name, i, s.Duration, s.Key,
					i, vm.Segments[i].Duration, vm.Segments[i].Key)
			}
			doc := string(decryptObject(t, h, cur, path.Join(path.Dir(r.Playlist), s.URI), s.Key))
			if !strings.HasPrefix(doc, header) {
				t.Errorf("%s segment %d does not start with %q:\n%s", r.Name, i, header, doc)
			}
			if r.Name == fr.Name {
				// Segments 1 and 2 meet at 8 s, the seam of chunks 0 and 1.
				if seam := strings.Contains(doc, "À cheval sur la couture"); seam != (i == 1 || i == 2) {
					t.Errorf("segment %d: the cue across the seam is there: %v\n%s", i, seam, doc)
				}
				if last := strings.Contains(doc, "00:00:35.000 --> 00:00:36.000\nLa fin"); last != (i == 8) {
					t.Errorf("segment %d: the last cue is there: %v\n%s", i, last, doc)
				}
			}
		}
	}
}
