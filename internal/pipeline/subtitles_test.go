package pipeline

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hlsvault/hlsvault/internal/catalog"
	"github.com/hlsvault/hlsvault/internal/playlist"
	"github.com/hlsvault/hlsvault/internal/segcrypt"
	"github.com/hlsvault/hlsvault/internal/testenv"
	"github.com/hlsvault/hlsvault/internal/testenv/decoder"
	"github.com/hlsvault/hlsvault/internal/testenv/fixtures"
	"github.com/hlsvault/hlsvault/internal/transcode"
	"github.com/hlsvault/hlsvault/internal/verify"
	"github.com/hlsvault/hlsvault/jobs"
)

// decryptObject decrypts a stored segment of the version under the key of
// its period (named by its EXT-X-KEY URI).
func decryptObject(t *testing.T, h *harness, cur catalog.Version, name string, key *playlist.Key) []byte {
	t.Helper()
	if key == nil || key.Method != "AES-128" {
		t.Fatalf("%s: not AES-128: %+v", name, key)
	}
	var found *catalog.WrappedKey
	for i, k := range cur.Keys {
		if strings.Contains(key.URI, k.KeyID) {
			found = &cur.Keys[i]
		}
	}
	if found == nil {
		t.Fatalf("%s: key URI %s names none of the version's keys", name, key.URI)
	}
	ck, err := h.keyring.Unwrap(found.KEKID, found.KeyID, found.Wrapped)
	if err != nil {
		t.Fatal(err)
	}
	iv, err := parseHexIV(key.IV)
	if err != nil {
		t.Fatal(err)
	}
	dec, err := segcrypt.NewDecryptReader(bytes.NewReader(h.objects(name)[name]), ck.Bytes(), iv)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := io.ReadAll(dec)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return plain
}

// vttHeader is what every subtitle segment of cur must start with: the
// X-TIMESTAMP-MAP naming the PTS the first video segment (seg0, under
// key) starts at, measured.
func vttHeader(t *testing.T, h *harness, cur catalog.Version, seg0 string, key *playlist.Key) string {
	t.Helper()
	tsFile := filepath.Join(t.TempDir(), "seg0.ts")
	if err := os.WriteFile(tsFile, decryptObject(t, h, cur, seg0, key), 0o600); err != nil {
		t.Fatal(err)
	}
	pts, err := transcode.FirstPTS(tsFile)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("WEBVTT\nX-TIMESTAMP-MAP=MPEGTS:%d,LOCAL:00:00:00.000\n", pts)
}

// publishSubtitled publishes the generated source with its mov_text
// track and a French sidecar (2 s key periods, 1 s segments) and returns
// the current version.
func publishSubtitled(t *testing.T, h *harness) (string, catalog.Version) {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	src := testenv.MakeSubtitledSource(t, dir, testenv.Source{Width: 320, Height: 240, Seconds: 3, Audio: true})
	side := filepath.Join(dir, "fr.vtt")
	if err := os.WriteFile(side, []byte(testenv.SubtitleVTT), 0o600); err != nil {
		t.Fatal(err)
	}
	video := testenv.Name("subs")
	h.upload("uploads/"+video+".mp4", src)
	h.upload("uploads/"+video+"/subs/fr.vtt", side)
	res, err := h.client.EnqueueTranscode(ctx, jobs.TranscodeRequest{VideoID: video, Source: "uploads/" + video + ".mp4",
		Subtitles: []jobs.Subtitle{{Language: "fre", Source: "uploads/" + video + "/subs/fr.vtt"}}})
	if err != nil {
		t.Fatal(err)
	}
	h.startWorker()
	if j := h.waitJob(res.TaskID); j.State != jobs.Published {
		t.Fatalf("job: %+v", j)
	}
	cur, err := h.db.CurrentVersion(ctx, video)
	if err != nil {
		t.Fatal(err)
	}
	return video, cur
}

func TestSubtitlesPublished(t *testing.T) {
	t.Parallel()
	h := newHarness(t, fixtures.FS(t), func(c *Config) { c.KeyPeriod = 2 * time.Second })
	video, cur := publishSubtitled(t, h)
	ctx := context.Background()

	master := string(h.objects(cur.Master)[cur.Master])
	// The shape; the measured figures are checked by checkSubtitleBandwidth.
	checkGoldenFile(t, "master_subtitles.m3u8.golden", normalise([]byte(master)))
	for _, want := range []string{
		`#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID="subs",NAME="English",DEFAULT=NO,AUTOSELECT=YES,LANGUAGE="en",URI="sub0-en/index.m3u8"`,
		`#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID="subs",NAME="français",DEFAULT=NO,AUTOSELECT=YES,LANGUAGE="fr",URI="sub1-fr/index.m3u8"`,
	} {
		if !strings.Contains(master, want) {
			t.Errorf("master lacks %s:\n%s", want, master)
		}
	}
	if n := strings.Count(master, "#EXT-X-STREAM-INF:"); n != 2 || strings.Count(master, `SUBTITLES="subs"`) != n {
		t.Errorf("every variant must name the subtitle group:\n%s", master)
	}
	if len(cur.Keys) < 2 {
		t.Fatalf("keys %+v: want two key periods", cur.Keys)
	}

	// The timeline the cues must match: the first video segment's PTS.
	var video0 catalog.Rendition
	for _, r := range cur.Renditions {
		if r.Type == "" {
			video0 = r
			break
		}
	}
	vm, err := playlist.ParseMedia(bytes.NewReader(h.objects(video0.Playlist)[video0.Playlist]))
	if err != nil {
		t.Fatal(err)
	}
	header := vttHeader(t, h, cur, path.Join(path.Dir(video0.Playlist), vm.Segments[0].URI), vm.Segments[0].Key)

	wantCues := map[string][]transcode.Cue{
		"sub0-en": {{Start: 500 * time.Millisecond, End: 1500 * time.Millisecond, Text: "Hello from the source"},
			{Start: 1800 * time.Millisecond, End: 2600 * time.Millisecond, Text: "Second source cue"}},
		"sub1-fr": {{Start: 250 * time.Millisecond, End: 1000 * time.Millisecond, Text: "Bonjour du fichier"},
			{Start: 2200 * time.Millisecond, End: 2900 * time.Millisecond, Settings: "line:0", Text: "Deuxième réplique"}},
	}
	subs := 0
	for _, r := range cur.Renditions {
		if r.Type != RenditionSubtitles {
			continue
		}
		subs++
		m, err := playlist.ParseMedia(bytes.NewReader(h.objects(r.Playlist)[r.Playlist]))
		if err != nil {
			t.Fatal(err)
		}
		if len(m.Segments) != len(vm.Segments) {
			t.Errorf("%s: %d segments, the video has %d", r.Name, len(m.Segments), len(vm.Segments))
		}
		seen := map[transcode.Cue]bool{}
		var got []transcode.Cue
		start := 0.0
		for i, s := range m.Segments {
			if s.Duration != vm.Segments[i].Duration {
				t.Errorf("%s segment %d lasts %v, video's %v", r.Name, i, s.Duration, vm.Segments[i].Duration)
			}
			if !strings.HasSuffix(s.URI, ".vtt") {
				t.Errorf("%s segment %s", r.Name, s.URI)
			}
			plain := decryptObject(t, h, cur, path.Join(path.Dir(r.Playlist), s.URI), s.Key)
			if !strings.HasPrefix(string(plain), header) {
				t.Errorf("%s segment %d does not start with %q:\n%s", r.Name, i, header, plain)
			}
			cues, err := transcode.ParseVTT(plain)
			if err != nil {
				t.Fatalf("%s segment %d: %v", r.Name, i, err)
			}
			for _, c := range cues {
				// Every cue of a segment overlaps it.
				if c.End.Seconds() <= start || c.Start.Seconds() >= start+s.Duration {
					t.Errorf("%s segment %d [%.3f, %.3f) holds cue %+v", r.Name, i, start, start+s.Duration, c)
				}
				if !seen[c] {
					seen[c] = true
					got = append(got, c)
				}
			}
			start += s.Duration
		}
		want := wantCues[r.Name]
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s cues:\n%+v\nwant\n%+v", r.Name, got, want)
		}
	}
	if subs != 2 {
		t.Errorf("%d subtitle renditions in the catalog, want 2: %+v", subs, cur.Renditions)
	}
	checkSubtitleBandwidth(t, h, cur)

	rep, err := (&verify.Verifier{Store: h.store, DB: h.db, Keyring: h.keyring, Exec: decoder.Exec(t)}).Verify(ctx, video)
	if err != nil || !rep.OK() {
		t.Fatalf("verify: %+v %v", rep, err)
	}
	vtts := 0
	for _, rr := range rep.Renditions {
		if rr.Format == "webvtt" {
			vtts++
			if rr.Cues < 2 {
				t.Errorf("verify counted %d cues in %s", rr.Cues, rr.Name)
			}
		}
	}
	if vtts != 2 {
		t.Errorf("verify checked %d subtitle renditions, want 2: %+v", vtts, rep)
	}
}

// TestReTranscodeKeepsSidecars: a forced re-transcode that names no
// sidecar publishes its second version with the sidecar of the first
// enqueue (jobs.Client carries it), next to the source's own track.
func TestReTranscodeKeepsSidecars(t *testing.T) {
	t.Parallel()
	h := newHarness(t, fixtures.FS(t))
	video, first := publishSubtitled(t, h)
	ctx := context.Background()
	res, err := h.client.EnqueueTranscode(ctx, jobs.TranscodeRequest{VideoID: video, Source: "uploads/" + video + ".mp4", Force: true})
	if err != nil || res.Outcome != jobs.Enqueued || len(res.CarriedSubtitles) != 1 {
		t.Fatalf("forced: %+v %v", res, err)
	}
	if j := h.waitJob(res.TaskID); j.State != jobs.Published {
		t.Fatalf("job: %+v", j)
	}
	cur, err := h.db.CurrentVersion(ctx, video)
	if err != nil {
		t.Fatal(err)
	}
	subs := func(v catalog.Version) (names []string) {
		for _, r := range v.Renditions {
			if r.Type == RenditionSubtitles {
				names = append(names, r.Name)
			}
		}
		return names
	}
	if cur.Version != first.Version+1 || fmt.Sprint(subs(cur)) != "[sub0-en sub1-fr]" || fmt.Sprint(subs(first)) != fmt.Sprint(subs(cur)) {
		t.Fatalf("version %d subtitles %v, first version %d %v", cur.Version, subs(cur), first.Version, subs(first))
	}
}

// storedBandwidth measures a published media playlist's peak and average
// bit rates from the sizes of the objects it names, as stored.
func storedBandwidth(t *testing.T, h *harness, name string) (peak, avg int64) {
	t.Helper()
	m, err := playlist.ParseMedia(bytes.NewReader(h.objects(name)[name]))
	if err != nil {
		t.Fatal(err)
	}
	segs := make([]playlist.Segment, len(m.Segments))
	for i, s := range m.Segments {
		obj := path.Join(path.Dir(name), s.URI)
		segs[i] = playlist.Segment{URI: s.URI, Duration: s.Duration, Size: int64(len(h.objects(obj)[obj]))}
	}
	return playlist.Bandwidth(segs)
}

// checkSubtitleBandwidth holds every variant's BANDWIDTH and
// AVERAGE-BANDWIDTH to its own media's plus the largest subtitle
// rendition's (RFC 8216 4.3.4.2: what is played together), all measured
// from the stored objects.
func checkSubtitleBandwidth(t *testing.T, h *harness, cur catalog.Version) {
	t.Helper()
	var subPeak, subAvg int64
	for _, r := range cur.Renditions {
		if r.Type == RenditionSubtitles {
			p, a := storedBandwidth(t, h, r.Playlist)
			subPeak, subAvg = max(subPeak, p), max(subAvg, a)
		}
	}
	if subPeak <= 0 || subAvg <= 0 {
		t.Fatalf("subtitle bit rates %d/%d: want measurable", subPeak, subAvg)
	}
	m, err := playlist.ParseMaster(bytes.NewReader(h.objects(cur.Master)[cur.Master]))
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range m.Variants {
		peak, avg := storedBandwidth(t, h, path.Join(path.Dir(cur.Master), v.URI))
		if v.Bandwidth != peak+subPeak || v.AverageBandwidth != avg+subAvg {
			t.Errorf("variant %s: BANDWIDTH %d AVERAGE-BANDWIDTH %d, want %d+%d and %d+%d (its media and the subtitle group's largest)",
				v.URI, v.Bandwidth, v.AverageBandwidth, peak, subPeak, avg, subAvg)
		}
	}
}

// TestSubtitleSidecarNotText: a sidecar that is not subtitle text fails
// the job as bad input, with a reason naming the file, before any encode.
func TestSubtitleSidecarNotText(t *testing.T) {
	t.Parallel()
	h := newHarness(t, fixtures.FS(t))
	ctx := context.Background()
	dir := t.TempDir()
	src := testenv.MakeSource(t, dir, testenv.Source{Width: 320, Height: 240, Seconds: 2})
	video := testenv.Name("badsub")
	h.upload("uploads/"+video+".mp4", src)
	h.upload("uploads/"+video+"/subs/x.srt", src) // a video, named .srt
	res, err := h.client.EnqueueTranscode(ctx, jobs.TranscodeRequest{VideoID: video, Source: "uploads/" + video + ".mp4",
		Subtitles: []jobs.Subtitle{{Language: "en", Source: "uploads/" + video + "/subs/x.srt"}}})
	if err != nil {
		t.Fatal(err)
	}
	h.startWorker()
	j := h.waitJob(res.TaskID)
	if j.State != jobs.Failed || j.Attempts != 1 ||
		!regexp.MustCompile(`bad input: subtitle file 0 \(uploads/.*/subs/x.srt\): .*not UTF-8 text`).MatchString(j.Error) {
		t.Fatalf("job: state %s attempts %d error %q", j.State, j.Attempts, j.Error)
	}
	if strings.Contains(h.logs.String(), "planned ladder") {
		t.Error("the ladder was planned before the sidecar was refused")
	}
	if objs := h.objects("hls/" + video + "/"); len(objs) != 0 {
		t.Errorf("objects stored for a refused job: %d", len(objs))
	}
}
