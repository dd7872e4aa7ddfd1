package backfill

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/hlsvault/hlsvault/internal/storage"
)

func putAll(t *testing.T, s storage.Store, objs map[string]string) {
	t.Helper()
	for name, body := range objs {
		if err := s.Put(context.Background(), name, strings.NewReader(body), int64(len(body)), storage.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}

const mediaHead = "#EXTM3U\n#EXT-X-VERSION:4\n#EXT-X-TARGETDURATION:4\n#EXT-X-PLAYLIST-TYPE:VOD\n"

func TestPlanTitle(t *testing.T) {
	fs, err := storage.NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	putAll(t, fs, map[string]string{
		"l/ok/master.m3u8": "#EXTM3U\n#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"a\",NAME=\"en\",URI=\"audio/en/index.m3u8\"\n" +
			"#EXT-X-MEDIA:TYPE=CLOSED-CAPTIONS,GROUP-ID=\"cc\",NAME=\"cc\",INSTREAM-ID=\"CC1\"\n" +
			"#EXT-X-STREAM-INF:BANDWIDTH=1000,AUDIO=\"a\"\n720p/index.m3u8\n#EXT-X-STREAM-INF:BANDWIDTH=500,AUDIO=\"a\"\n/l/ok/360p.m3u8\n",
		"l/ok/720p/index.m3u8":     mediaHead + "#EXT-X-MAP:URI=\"init.mp4\"\n#EXTINF:4,\na.m4s\n#EXTINF:4,\n#EXT-X-BYTERANGE:3@1\nb.mp4\n#EXT-X-ENDLIST\n",
		"l/ok/720p/init.mp4":       "init",
		"l/ok/720p/a.m4s":          "aaaa",
		"l/ok/720p/b.mp4":          "bbbbb",
		"l/ok/360p.m3u8":           mediaHead + "#EXTINF:4,\nhttps://cdn.example.com/l/ok/s.ts?sig=1\n#EXTINF:4,\n../shared/t.ts\n#EXT-X-ENDLIST\n",
		"l/ok/s.ts":                "ss",
		"l/shared/t.ts":            "ttt",
		"l/ok/audio/en/index.m3u8": mediaHead + "#EXTINF:4,\nx.aac\n#EXT-X-ENDLIST\n",
		"l/ok/audio/en/x.aac":      "x",
	})
	p, err := PlanTitle(context.Background(), fs, Source{Playlist: "l/ok/master.m3u8"})
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Renditions(); !slices.Equal(got, []string{"720p", "360p", "audio_en"}) {
		t.Errorf("renditions %v", got)
	}
	if p.Segments != 5 || p.Objects != 6 || p.Bytes != int64(len("init")+4+3+2+3+1) {
		t.Errorf("plan: %d segments, %d objects, %d bytes", p.Segments, p.Objects, p.Bytes)
	}
	r := p.byLegacy["l/ok/720p/index.m3u8"]
	if r.inits[0].dest != "init_00000.mp4" || r.segments[0].init != 0 || r.segments[1].init != -1 ||
		r.segments[1].obj.dest != "seg_00001.m4s" || r.segments[1].obj.offset != 1 || r.segments[1].obj.length != 3 {
		t.Errorf("720p plan: %+v", r)
	}
	if s := p.byLegacy["l/ok/360p.m3u8"].segments; s[0].obj.src != "l/ok/s.ts" || s[1].obj.src != "l/shared/t.ts" {
		t.Errorf("URIs resolved to %s and %s", s[0].obj.src, s[1].obj.src)
	}
}

func TestPlanBrokenTitles(t *testing.T) {
	fs, err := storage.NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	seg := "#EXTINF:4,\na.ts\n"
	putAll(t, fs, map[string]string{
		"b/empty-playlist/index.m3u8": "",
		"b/garbage/index.m3u8":        "<html>not found</html>",
		"b/live/index.m3u8":           mediaHead + seg, "b/live/a.ts": "a",
		"b/missing/index.m3u8": mediaHead + seg + "#EXT-X-ENDLIST\n",
		"b/zero/index.m3u8":    mediaHead + seg + "#EXT-X-ENDLIST\n", "b/zero/a.ts": "",
		"b/range/index.m3u8": mediaHead + "#EXTINF:4,\n#EXT-X-BYTERANGE:10@5\na.ts\n#EXT-X-ENDLIST\n", "b/range/a.ts": "0123456789",
		"b/enc/index.m3u8": mediaHead + "#EXT-X-KEY:METHOD=SAMPLE-AES,URI=\"k\"\n" + seg + "#EXT-X-ENDLIST\n", "b/enc/a.ts": "a",
		"b/master/master.m3u8":  "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nnope/index.m3u8\n",
		"b/scheme/index.m3u8":   mediaHead + "#EXTINF:4,\nftp://host/a.ts\n#EXT-X-ENDLIST\n",
		"b/late-map/index.m3u8": mediaHead + seg + "#EXT-X-MAP:URI=\"a.ts\"\n" + seg + "#EXT-X-ENDLIST\n", "b/late-map/a.ts": "a",
	})
	for title, want := range map[string]string{
		"b/empty-playlist/index.m3u8": "zero-length",
		"b/garbage/index.m3u8":        "does not start with #EXTM3U",
		"b/live/index.m3u8":           "no EXT-X-ENDLIST",
		"b/missing/index.m3u8":        "object b/missing/a.ts is missing",
		"b/zero/index.m3u8":           "b/zero/a.ts is a zero-length object",
		"b/range/index.m3u8":          "byte range 10@5 reaches past the end",
		"b/master/master.m3u8":        "playlist b/master/nope/index.m3u8 is missing",
		"b/scheme/index.m3u8":         "unsupported scheme",
		"b/late-map/index.m3u8":       "EXT-X-MAP after the first segment",
		"b/none/index.m3u8":           "playlist b/none/index.m3u8 is missing",
	} {
		_, err := PlanTitle(context.Background(), fs, Source{Playlist: title})
		if !IsBroken(err) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want broken with %q", title, err, want)
		}
	}
	if _, err := PlanTitle(context.Background(), fs, Source{Playlist: "b/enc/index.m3u8"}); !errors.Is(err, ErrAlreadyEncrypted) {
		t.Errorf("encrypted title: %v", err)
	}
	// A re-key source must be encrypted under the version's key.
	if _, err := PlanTitle(context.Background(), fs, Source{Playlist: "b/range/index.m3u8", KeyIDs: []string{"k_1"}}); !IsBroken(err) ||
		!strings.Contains(err.Error(), "not encrypted with AES-128") {
		t.Errorf("re-key of a plain title: %v", err)
	}
}

func TestResolve(t *testing.T) {
	pl := &planner{src: Source{URLMap: map[string]string{"https://cdn.example.com/": "legacy/", "https://cdn.example.com/x/": "other/"}}}
	for uri, want := range map[string]string{
		"seg.ts":                               "legacy/v/720p/seg.ts",
		"../audio/a.aac":                       "legacy/v/audio/a.aac",
		"/legacy/v/s.ts":                       "legacy/v/s.ts",
		"https://cdn.example.com/v/s.ts?t=1#f": "legacy/v/s.ts",
		"https://cdn.example.com/x/s%20t.ts":   "other/s t.ts",
		"https://elsewhere.example/p/q.ts":     "p/q.ts",
		"seg%2001.ts":                          "legacy/v/720p/seg 01.ts",
	} {
		got, err := pl.resolve("legacy/v/720p/index.m3u8", uri)
		if err != nil || got != want {
			t.Errorf("resolve(%q) = %q, %v; want %q", uri, got, err, want)
		}
	}
	for _, uri := range []string{"", "../../../..", "data:text/plain,x"} {
		if got, err := pl.resolve("legacy/v/720p/index.m3u8", uri); !IsBroken(err) {
			t.Errorf("resolve(%q) = %q, %v; want broken", uri, got, err)
		}
	}
}

func TestRenditionName(t *testing.T) {
	used := map[string]bool{}
	for _, c := range []struct{ legacy, want string }{
		{"l/v/720p/index.m3u8", "720p"},
		{"l/v/stream_1.m3u8", "stream_1"},
		{"l/v/audio/en/prog_index.m3u8", "audio_en"},
		{"l/v/720p/playlist.m3u8", "720p_2"},
		{"l/v/a b.m3u8", "a_b"},
		{"other/x/index.m3u8", "other_x"},
		{"l/v/index.m3u8", "index"},
	} {
		if got := renditionName("l/v/master.m3u8", c.legacy, false, used); got != c.want {
			t.Errorf("renditionName(%q) = %q, want %q", c.legacy, got, c.want)
		}
	}
	if got := renditionName("l/v/index.m3u8", "l/v/index.m3u8", true, map[string]bool{}); got != "main" {
		t.Errorf("single playlist: %q", got)
	}
}

func TestParseIDs(t *testing.T) {
	got, err := ParseIDs(strings.NewReader("b\n\n# comment\na\n  c  \nb\n"))
	if err != nil || !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Fatalf("ParseIDs = %v, %v", got, err)
	}
	_, err = ParseIDs(strings.NewReader("ok\n../etc\nx y\n"))
	if err == nil || !strings.Contains(err.Error(), "line 2") || !strings.Contains(err.Error(), "line 3") {
		t.Fatalf("invalid ids: %v", err)
	}
}

func TestFingerprint(t *testing.T) {
	a := Fingerprint(RunOptions{Prefix: "legacy/", LegacyPrefix: "legacy"})
	if a != Fingerprint(RunOptions{Prefix: "legacy/", LegacyPrefix: "legacy"}) {
		t.Fatal("fingerprint is not deterministic")
	}
	for _, o := range []RunOptions{{Prefix: "legacy2/", LegacyPrefix: "legacy"}, {Prefix: "legacy/", LegacyPrefix: "legacy", Rekey: true},
		{Prefix: "legacy/", LegacyPrefix: "legacy", Label: "x"}, {Prefix: "legacy/", LegacyPrefix: "legacy", KeepLegacy: true}} {
		if Fingerprint(o) == a {
			t.Errorf("same fingerprint for %+v", o)
		}
	}
	if len(a) != 32 {
		t.Errorf("fingerprint %q", a)
	}
}

// TestPlanTrickPlay: trick play goes to the TS renditions the legacy
// I-frame playlists point into; a missing or broken legacy I-frame playlist
// does not break the title; without any, the pipeline's rule by RESOLUTION
// (up to 720 lines, and the lowest), never an audio-only or fMP4 variant.
func TestPlanTrickPlay(t *testing.T) {
	fs, err := storage.NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	seg := func(r string) string { return mediaHead + "#EXTINF:4,\n" + r + ".ts\n#EXT-X-ENDLIST\n" }
	variants := "#EXT-X-STREAM-INF:BANDWIDTH=9000,RESOLUTION=1920x1080\nhd/index.m3u8\n" +
		"#EXT-X-STREAM-INF:BANDWIDTH=5000,RESOLUTION=1280x720\nmid/index.m3u8\n" +
		"#EXT-X-STREAM-INF:BANDWIDTH=900,RESOLUTION=640x360\nlow/index.m3u8\n" +
		"#EXT-X-STREAM-INF:BANDWIDTH=100,CODECS=\"mp4a.40.2\"\naudio/index.m3u8\n" +
		"#EXT-X-STREAM-INF:BANDWIDTH=800,RESOLUTION=640x360\nfmp4/index.m3u8\n"
	objs := map[string]string{
		"l/rule/master.m3u8": "#EXTM3U\n" + variants,
		"l/legacy/master.m3u8": "#EXTM3U\n" + variants +
			"#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=100,URI=\"hd/iframes.m3u8\"\n" +
			"#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=100,URI=\"gone/iframes.m3u8\"\n" +
			"#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=100,URI=\"bad/iframes.m3u8\"\n",
		"l/legacy/hd/iframes.m3u8":  mediaHead + "#EXT-X-I-FRAMES-ONLY\n#EXTINF:4,\n#EXT-X-BYTERANGE:188@0\nhd.ts\n#EXT-X-ENDLIST\n",
		"l/legacy/bad/iframes.m3u8": "not a playlist",
	}
	for _, title := range []string{"rule", "legacy"} {
		for _, r := range []string{"hd", "mid", "low", "audio"} {
			objs["l/"+title+"/"+r+"/index.m3u8"] = seg(r)
			objs["l/"+title+"/"+r+"/"+r+".ts"] = "ts"
		}
		objs["l/"+title+"/fmp4/index.m3u8"] = mediaHead + "#EXT-X-MAP:URI=\"init.mp4\"\n#EXTINF:4,\na.m4s\n#EXT-X-ENDLIST\n"
		objs["l/"+title+"/fmp4/init.mp4"] = "init"
		objs["l/"+title+"/fmp4/a.m4s"] = "m4s"
	}
	putAll(t, fs, objs)
	for title, want := range map[string][]string{"rule": {"mid", "low"}, "legacy": {"hd"}} {
		p, err := PlanTitle(context.Background(), fs, Source{Playlist: "l/" + title + "/master.m3u8"})
		if err != nil {
			t.Fatalf("%s: %v", title, err)
		}
		var got []string
		for _, r := range p.renditions {
			if p.trick[r] {
				got = append(got, r.name)
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: trick play for %v, want %v", title, got, want)
		}
	}
}
