package pipeline

import (
	"bytes"
	"context"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/hlsvault/hlsvault/internal/playlist"
	"github.com/hlsvault/hlsvault/internal/storage"
	"github.com/hlsvault/hlsvault/internal/testenv"
	"github.com/hlsvault/hlsvault/internal/testenv/decoder"
	"github.com/hlsvault/hlsvault/internal/transcode"
	"github.com/hlsvault/hlsvault/internal/verify"
	"github.com/hlsvault/hlsvault/jobs"
)

func TestIFrameRungs(t *testing.T) {
	ladder := []transcode.Rendition{{Name: "1080p", Width: 1920, Height: 1080}, {Name: "720p", Width: 1280, Height: 720},
		{Name: "480p", Width: 854, Height: 480}, {Name: "audio_en"}}
	got := iframeRungs(ladder)
	if len(got) != 2 || !got["720p"] || !got["480p"] {
		t.Fatalf("iframeRungs = %v, want 720p and 480p (no audio rendition)", got)
	}
	// A ladder of tall rungs only: the lowest still gets one.
	if got := iframeRungs([]transcode.Rendition{{Name: "2160p", Width: 3840, Height: 2160}, {Name: "1080p", Width: 1920, Height: 1080}}); len(got) != 1 || !got["1080p"] {
		t.Fatalf("iframeRungs = %v, want 1080p", got)
	}
	if err := checkIFrameNames([]transcode.Rendition{{Name: "a"}, {Name: "a-iframes"}}, map[string]bool{"a": true}); err == nil {
		t.Fatal("a rendition named like another's I-frame rendition was accepted")
	}
	for in, want := range map[string]string{"avc1.64001f,mp4a.40.2": "avc1.64001f", "mp4a.40.2,avc1.4d401e": "avc1.4d401e", "avc1.42c00d": "avc1.42c00d"} {
		if got := videoCodec(in); got != want {
			t.Errorf("videoCodec(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestIFramesVerified: a real job publishes I-frame playlists that verify
// decrypts and decodes (one keyframe per segment, on the timeline); a
// normal segment put in an I-frame segment's place is reported.
func TestIFramesVerified(t *testing.T) {
	root := t.TempDir()
	fs, err := storage.NewFS(root)
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, fs)
	ctx := context.Background()
	src := testenv.MakeSource(t, t.TempDir(), testenv.Source{Width: 320, Height: 240, Seconds: 3, Audio: true})
	h.upload("uploads/trick.mp4", src)
	h.startWorker()
	video := testenv.Name("trick")
	res, err := h.client.EnqueueTranscode(ctx, jobs.TranscodeRequest{VideoID: video, Source: "uploads/trick.mp4"})
	if err != nil {
		t.Fatal(err)
	}
	if j := h.waitJob(res.TaskID); j.State != jobs.Published {
		t.Fatalf("job: %+v", j)
	}
	ver := &verify.Verifier{Store: h.store, DB: h.db, Keyring: h.keyring, Exec: decoder.Exec(t)}
	rep, err := ver.Verify(ctx, video)
	if err != nil || !rep.OK() {
		t.Fatalf("verify: %+v %v", rep, err)
	}
	found := 0
	for _, rr := range rep.Renditions {
		if strings.HasSuffix(rr.Name, "-iframes") {
			found++
			if rr.Segments < 3 || rr.DecodedFrames != int64(rr.Segments) {
				t.Errorf("%s: %d segments, %d frames decoded", rr.Name, rr.Segments, rr.DecodedFrames)
			}
		}
	}
	if found != 2 {
		t.Fatalf("verify checked %d I-frame playlists, want 2: %+v", found, rep.Renditions)
	}

	// Each I-frame stream's BANDWIDTH and AVERAGE-BANDWIDTH are measured
	// from its own encrypted segments.
	prefix := "hls/" + video + "/v1/"
	objs := h.objects(prefix)
	master, err := playlist.ParseMaster(bytes.NewReader(objs[prefix+"master.m3u8"]))
	if err != nil || len(master.IFrameVariants) != 2 {
		t.Fatalf("master: %v, %+v", err, master)
	}
	for _, iv := range master.IFrameVariants {
		m, err := playlist.ParseMedia(bytes.NewReader(objs[prefix+iv.URI]))
		if err != nil {
			t.Fatal(err)
		}
		segs := make([]playlist.Segment, len(m.Segments))
		for i, s := range m.Segments {
			b, ok := objs[prefix+path.Dir(iv.URI)+"/"+s.URI]
			if !ok {
				t.Fatalf("%s: segment %s not stored", iv.URI, s.URI)
			}
			segs[i] = playlist.Segment{Duration: s.Duration, Size: int64(len(b))}
		}
		peak, avg := playlist.Bandwidth(segs)
		if iv.Bandwidth != peak || iv.AverageBandwidth != avg || peak <= 0 {
			t.Errorf("%s: BANDWIDTH %d AVERAGE-BANDWIDTH %d, measured %d and %d", iv.URI, iv.Bandwidth, iv.AverageBandwidth, peak, avg)
		}
	}

	// The status's renditions are the video renditions only.
	if st, err := h.client.Status(ctx, video); err != nil || len(st.Current.Renditions) != 2 {
		t.Fatalf("status: %+v %v", st, err)
	}

	// Put the normal segment 1 (whole GOP) in the I-frame segment's place,
	// with its IV: it decrypts, but is not a single I-frame.
	dir := filepath.Join(root, "hls", video, "v1")
	normal, err := os.ReadFile(filepath.Join(dir, "240p", "seg_00001.ts"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "240p-iframes", "seg_00001.ts"), normal, 0o600); err != nil {
		t.Fatal(err)
	}
	ivOf := func(playlistPath string) string {
		b, err := os.ReadFile(playlistPath)
		if err != nil {
			t.Fatal(err)
		}
		m := regexp.MustCompile(`IV=(0x[0-9A-F]{32})\n#EXTINF:[0-9.]+,\nseg_00001\.ts`).FindSubmatch(b)
		if m == nil {
			t.Fatalf("no IV for seg_00001.ts in %s", b)
		}
		return string(m[1])
	}
	ipl := filepath.Join(dir, "240p-iframes", "index.m3u8")
	b, _ := os.ReadFile(ipl)
	b = []byte(strings.Replace(string(b), ivOf(ipl), ivOf(filepath.Join(dir, "240p", "index.m3u8")), 1))
	if err := os.WriteFile(ipl, b, 0o600); err != nil {
		t.Fatal(err)
	}
	rep, err = ver.Verify(ctx, video)
	if err != nil || rep.OK() || !strings.Contains(strings.Join(problems(rep), "\n"), "not a single I-frame") {
		t.Fatalf("verify of a whole segment as an I-frame: %v %v", problems(rep), err)
	}
}

func problems(r *verify.Report) []string {
	if r == nil {
		return nil
	}
	out := append([]string(nil), r.Problems...)
	for _, rr := range r.Renditions {
		out = append(out, rr.Problems...)
	}
	return out
}
