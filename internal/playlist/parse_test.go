package playlist

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func readFixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(goldenDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func parseMedia(t *testing.T, data []byte) *ParsedMedia {
	t.Helper()
	pm, err := ParseMedia(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("ParseMedia: %v\n%s", err, data)
	}
	return pm
}

func TestRoundTripWriteParseMedia(t *testing.T) {
	segs := segments(4.004, 4.004, 3.98, 4.004, 0.04)
	out := writeMedia(t, Media{KeyURI: testKeyURI, Independent: true, Segments: segs})
	pm := parseMedia(t, out)

	if !pm.Ended {
		t.Error("Ended = false for a VOD playlist")
	}
	if pm.TargetDuration != 4 {
		t.Errorf("TargetDuration = %d, want 4", pm.TargetDuration)
	}
	if pm.Key != nil {
		t.Errorf("playlist-level Key = %+v; per-segment keys must not be summarised", pm.Key)
	}
	if len(pm.Segments) != len(segs) {
		t.Fatalf("got %d segments, want %d", len(pm.Segments), len(segs))
	}
	for i, s := range segs {
		p := pm.Segments[i]
		if p.URI != s.URI || p.Duration != s.Duration {
			t.Errorf("segment %d = %s %v, want %s %v", i, p.URI, p.Duration, s.URI, s.Duration)
		}
		if p.Key == nil || p.Key.Method != "AES-128" || p.Key.URI != testKeyURI {
			t.Fatalf("segment %d key = %+v", i, p.Key)
		}
		iv, err := hex.DecodeString(strings.TrimPrefix(p.Key.IV, "0x"))
		if err != nil || !bytes.Equal(iv, s.IV[:]) {
			t.Errorf("segment %d IV = %s, want %x", i, p.Key.IV, s.IV)
		}
		if p.ByteRange != nil || p.Map != nil || p.Discontinuity {
			t.Errorf("segment %d has unexpected attributes: %+v", i, p)
		}
	}
	// Each key tag is distinct, so exactly one key per segment and no
	// header copy: the key pointers are not shared either.
	if pm.Segments[0].Key == pm.Segments[1].Key {
		t.Error("segments share a Key pointer")
	}
}

func TestRoundTripLargePlaylist(t *testing.T) {
	const n = 100_000
	segs := make([]Segment, n)
	for i := range segs {
		segs[i] = Segment{URI: fmt.Sprintf("seg_%06d.ts", i), Duration: 4.004, IV: fixedIV(i)}
	}
	out := writeMedia(t, Media{KeyURI: testKeyURI, Independent: true, Segments: segs})
	pm := parseMedia(t, out)
	if len(pm.Segments) != n {
		t.Fatalf("got %d segments, want %d", len(pm.Segments), n)
	}
	last := pm.Segments[n-1]
	if last.URI != segs[n-1].URI || last.Key == nil || last.Key.IV != formatIV(segs[n-1].IV) {
		t.Fatalf("last segment = %+v", last)
	}
}

func TestParseFFmpegInProgress(t *testing.T) {
	data := readFixture(t, "ffmpeg_in_progress.m3u8")
	pm := parseMedia(t, data)
	want := &ParsedMedia{
		Segments: []ParsedSegment{
			{URI: "720p_00000.ts", Duration: 4},
			{URI: "720p_00001.ts", Duration: 4},
			{URI: "720p_00002.ts", Duration: 4.004},
		},
		TargetDuration: 4, // as written, although grafov turns it into 5
		Ended:          false,
	}
	if !reflect.DeepEqual(pm, want) {
		t.Fatalf("got %+v\nwant %+v", pm, want)
	}

	// ffmpeg caught mid-write: the unterminated last line may be a partial
	// URI and is ignored; so are tags waiting for the next segment.
	for _, tail := range []string{
		"#EXTINF:4.000000,\n720p_000",
		"#EXTINF:4.0",
		"#EXTINF:4.000000,\n",
		"#EXT-X-DISCONTINUITY\n#EXT-X-KEY:METHOD=AES-128,URI=\"k\"\n#EXTINF:4.000000,\n",
		"#EXT-X-BYTERANGE:100@0\n",
		"#EXT-X-MAP:URI=\"init.mp4\"\n",
		"#EXT-X-END",
	} {
		pm := parseMedia(t, append(bytes.Clone(data), tail...))
		if !reflect.DeepEqual(pm, want) {
			t.Errorf("with tail %q: got %+v", tail, pm)
		}
	}

	// A finished playlist whose ENDLIST lacks a newline is still ended.
	pm = parseMedia(t, append(bytes.Clone(data), "#EXT-X-ENDLIST"...))
	if !pm.Ended || len(pm.Segments) != 3 {
		t.Errorf("unterminated ENDLIST: %+v", pm)
	}

	// Just created: header only, or nothing after #EXTM3U yet.
	for _, early := range []string{"#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:4\n", "#EXTM3U\n", "#EXTM3U"} {
		pm := parseMedia(t, []byte(early))
		if len(pm.Segments) != 0 || pm.Ended {
			t.Errorf("%q: %+v", early, pm)
		}
	}
}

func TestParseFFmpegSingleKey(t *testing.T) {
	pm := parseMedia(t, readFixture(t, "ffmpeg_single_key.m3u8"))
	wantKey := &Key{Method: "AES-128", URI: "enc.key", IV: "0x00000000000000000000000000000000"}
	if !reflect.DeepEqual(pm.Key, wantKey) {
		t.Errorf("Key = %+v, want %+v", pm.Key, wantKey)
	}
	if len(pm.Segments) != 3 || !pm.Ended {
		t.Fatalf("got %+v", pm)
	}
	for i, s := range pm.Segments {
		if !reflect.DeepEqual(s.Key, wantKey) {
			t.Errorf("segment %d key = %+v, want the single key carried forward", i, s.Key)
		}
	}
	if pm.Segments[2].Duration != 1.52 {
		t.Errorf("last duration = %v", pm.Segments[2].Duration)
	}
}

func TestParseLegacyByteRangeMapDiscontinuity(t *testing.T) {
	pm := parseMedia(t, readFixture(t, "legacy_byterange_map.m3u8"))
	initMap := &Map{URI: "init.mp4", ByteRange: &ByteRange{Length: 720, Offset: 0}}
	init2 := &Map{URI: "init2.mp4"}
	legacyKey := &Key{Method: "AES-128", URI: "https://legacy.example.com/keys/42", IV: "0x0123456789ABCDEF0123456789ABCDEF"}
	want := &ParsedMedia{
		Segments: []ParsedSegment{
			{URI: "main.mp4", Duration: 6, ByteRange: &ByteRange{Length: 100000, Offset: 720}, Map: initMap},
			// No offset: continues right after the previous range.
			{URI: "main.mp4", Duration: 6, ByteRange: &ByteRange{Length: 120000, Offset: 100720}, Map: initMap},
			{URI: "other.mp4", Duration: 5.5, ByteRange: &ByteRange{Length: 90000, Offset: 0}, Discontinuity: true, Key: legacyKey, Map: init2},
			// METHOD=NONE ends encryption; the map carries on.
			{URI: "tail.ts", Duration: 2, Map: init2},
		},
		TargetDuration: 6,
		Ended:          true,
	}
	if !reflect.DeepEqual(pm, want) {
		t.Fatalf("got  %s\nwant %s", dump(pm), dump(want))
	}
}

func dump(pm *ParsedMedia) string {
	var b strings.Builder
	fmt.Fprintf(&b, "target=%d ended=%v key=%+v\n", pm.TargetDuration, pm.Ended, pm.Key)
	for _, s := range pm.Segments {
		fmt.Fprintf(&b, "  %s %v disc=%v br=%+v key=%+v map=%+v", s.URI, s.Duration, s.Discontinuity, s.ByteRange, s.Key, s.Map)
		if s.Map != nil {
			fmt.Fprintf(&b, " mapbr=%+v", s.Map.ByteRange)
		}
		b.WriteByte('\n')
	}
	return b.String()
}

func TestParseMediaCRLF(t *testing.T) {
	data := bytes.ReplaceAll(readFixture(t, "legacy_byterange_map.m3u8"), []byte("\n"), []byte("\r\n"))
	pm := parseMedia(t, data)
	if len(pm.Segments) != 4 || pm.Segments[1].ByteRange.Offset != 100720 || !pm.Ended {
		t.Fatalf("got %s", dump(pm))
	}
}

func TestParseMediaErrors(t *testing.T) {
	tests := map[string]string{
		"empty":                     "",
		"no header":                 "#EXTINF:4,\na.ts\n",
		"BOM":                       "\xef\xbb\xbf#EXTM3U\n#EXTINF:4,\na.ts\n",
		"master playlist":           string(readFixture(t, "master_audio_groups.m3u8")),
		"URI without EXTINF":        "#EXTM3U\na.ts\n",
		"key then URI, no EXTINF":   "#EXTM3U\n#EXT-X-KEY:METHOD=AES-128,URI=\"k\"\na.ts\n#EXTINF:4,\nb.ts\n",
		"two EXTINF":                "#EXTM3U\n#EXTINF:4,\n#EXTINF:4,\na.ts\n",
		"empty EXTINF duration":     "#EXTM3U\n#EXTINF:4,\na.ts\n#EXTINF:,\nb.ts\n",
		"bad EXTINF duration":       "#EXTM3U\n#EXTINF:four,\na.ts\n",
		"negative EXTINF":           "#EXTM3U\n#EXTINF:-4,\na.ts\n",
		"NaN EXTINF":                "#EXTM3U\n#EXTINF:NaN,\na.ts\n",
		"bad target duration":       "#EXTM3U\n#EXT-X-TARGETDURATION:x\n",
		"bad byterange":             "#EXTM3U\n#EXTINF:4,\n#EXT-X-BYTERANGE:1x@0\na.ts\n",
		"zero byterange":            "#EXTM3U\n#EXTINF:4,\n#EXT-X-BYTERANGE:0@0\na.ts\n",
		"negative byterange offset": "#EXTM3U\n#EXTINF:4,\n#EXT-X-BYTERANGE:10@-1\na.ts\n",
		"implicit offset first":     "#EXTM3U\n#EXTINF:4,\n#EXT-X-BYTERANGE:10\na.ts\n",
		"implicit offset other URI": "#EXTM3U\n#EXTINF:4,\n#EXT-X-BYTERANGE:10@0\na.ts\n#EXTINF:4,\n#EXT-X-BYTERANGE:10\nb.ts\n",
		"implicit offset no range":  "#EXTM3U\n#EXTINF:4,\na.ts\n#EXTINF:4,\n#EXT-X-BYTERANGE:10\na.ts\n",
		"key without method":        "#EXTM3U\n#EXT-X-KEY:URI=\"k\"\n#EXTINF:4,\na.ts\n",
		"negative map range":        "#EXTM3U\n#EXT-X-MAP:URI=\"i.mp4\",BYTERANGE=\"-5@0\"\n#EXTINF:4,\na.ts\n",
	}
	for name, in := range tests {
		t.Run(name, func(t *testing.T) {
			pm, err := ParseMedia(strings.NewReader(in))
			if err == nil {
				t.Fatalf("no error; got %s", dump(pm))
			}
			if !strings.HasPrefix(err.Error(), "playlist: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
		})
	}
}

func TestParseMediaTooLarge(t *testing.T) {
	line := []byte("#EXT-X-PADDING-TAG-IGNORED-BY-EVERYONE\n")
	big := append([]byte("#EXTM3U\n"), bytes.Repeat(line, MaxPlaylistBytes/len(line)+1)...)
	if _, err := ParseMedia(bytes.NewReader(big)); err == nil {
		t.Fatal("no error for an oversized playlist")
	}
	if _, err := ParseMaster(bytes.NewReader(big)); err == nil {
		t.Fatal("no error for an oversized master playlist")
	}

	many := append([]byte("#EXTM3U\n"), bytes.Repeat([]byte("#EXTINF:1,\na.ts\n"), MaxSegments+1)...)
	if _, err := ParseMedia(bytes.NewReader(many)); err == nil {
		t.Fatal("no error for too many segments")
	}
}

func TestRecoverDecode(t *testing.T) {
	f := func() (err error) {
		defer recoverDecode(&err)
		var m map[string]int
		m["boom"] = 1 // the kind of fault grafov has on malformed input
		return nil
	}
	if err := f(); err == nil || !strings.HasPrefix(err.Error(), "playlist: ") {
		t.Fatalf("err = %v", err)
	}
}

func TestParseMasterAudioGroups(t *testing.T) {
	for _, crlf := range []bool{false, true} {
		data := readFixture(t, "master_audio_groups.m3u8")
		if crlf {
			data = bytes.ReplaceAll(data, []byte("\n"), []byte("\r\n"))
		}
		pm, err := ParseMaster(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		want := &ParsedMaster{
			Variants: []ParsedVariant{
				{URI: "720p/index.m3u8", Bandwidth: 2800000, AverageBandwidth: 2400000, Codecs: "avc1.64001f,mp4a.40.2", Width: 1280, Height: 720, FrameRate: 29.97, Audio: "aac"},
				{URI: "360p/index.m3u8", Bandwidth: 1200000, Codecs: "avc1.4d401e,mp4a.40.2", Width: 640, Height: 360, Audio: "aac"},
			},
			IFrameVariants: []ParsedVariant{
				{URI: "720p/iframes.m3u8", Bandwidth: 150000, Codecs: "avc1.64001f", Width: 1280, Height: 720},
			},
			Renditions: []Rendition{
				{Type: "AUDIO", GroupID: "aac", Name: "English", URI: "audio/en/index.m3u8", Language: "en", Default: true},
				{Type: "AUDIO", GroupID: "aac", Name: "Deutsch", URI: "audio/de/index.m3u8", Language: "de"},
				// Referenced by no variant: grafov alone would drop it.
				{Type: "SUBTITLES", GroupID: "subs", Name: "English", URI: "subs/en/index.m3u8", Language: "en"},
			},
		}
		if !reflect.DeepEqual(pm, want) {
			t.Fatalf("crlf=%v:\ngot  %+v\nwant %+v", crlf, pm, want)
		}
	}
}

func TestRoundTripWriteParseMaster(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteMaster(&buf, Master{Variants: SortByBandwidth(testVariants()), Independent: true, Complete: true}); err != nil {
		t.Fatal(err)
	}
	pm, err := ParseMaster(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if len(pm.Variants) != 4 || len(pm.Renditions) != 0 || len(pm.IFrameVariants) != 0 {
		t.Fatalf("got %+v", pm)
	}
	byURI := map[string]Variant{}
	for _, v := range testVariants() {
		byURI[v.URI] = v
	}
	for _, p := range pm.Variants {
		v := byURI[p.URI]
		if p.Bandwidth != v.Bandwidth || p.AverageBandwidth != v.AverageBandwidth || p.Codecs != v.Codecs ||
			p.Width != v.Width || p.Height != v.Height || p.FrameRate != v.FrameRate {
			t.Errorf("variant %s: got %+v, want %+v", p.URI, p, v)
		}
	}
}

func TestParseMasterFFmpeg(t *testing.T) {
	// ffmpeg 5.1's master: nominal BANDWIDTH, no AVERAGE-BANDWIDTH or FRAME-RATE.
	in := "#EXTM3U\n#EXT-X-VERSION:3\n" +
		"#EXT-X-STREAM-INF:BANDWIDTH=2305600,RESOLUTION=1280x720,CODECS=\"avc1.64001f,mp4a.40.2\"\n720p/index.m3u8\n\n" +
		"#EXT-X-STREAM-INF:BANDWIDTH=1140800,RESOLUTION=640x360,CODECS=\"avc1.64001e,mp4a.40.2\"\n360p/index.m3u8\n\n"
	pm, err := ParseMaster(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []ParsedVariant{
		{URI: "720p/index.m3u8", Bandwidth: 2305600, Codecs: "avc1.64001f,mp4a.40.2", Width: 1280, Height: 720},
		{URI: "360p/index.m3u8", Bandwidth: 1140800, Codecs: "avc1.64001e,mp4a.40.2", Width: 640, Height: 360},
	}
	if !reflect.DeepEqual(pm.Variants, want) {
		t.Fatalf("got %+v", pm.Variants)
	}
}

func TestParseMasterErrors(t *testing.T) {
	const inf = "#EXT-X-STREAM-INF:BANDWIDTH=1000,RESOLUTION=640x360\n"
	tests := map[string]string{
		"empty":                   "",
		"no header":               inf + "a.m3u8\n",
		"media playlist":          string(readFixture(t, "ffmpeg_in_progress.m3u8")),
		"stream-inf without URI":  "#EXTM3U\n" + inf,
		"blank then end":          "#EXTM3U\n" + inf + "\n\n",
		"two stream-inf":          "#EXTM3U\n" + inf + inf + "a.m3u8\n",
		"URI without stream-inf":  "#EXTM3U\na.m3u8\n",
		"missing bandwidth":       "#EXTM3U\n#EXT-X-STREAM-INF:RESOLUTION=640x360\na.m3u8\n",
		"bad bandwidth":           "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=fast\na.m3u8\n",
		"negative bandwidth":      "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=-1\na.m3u8\n",
		"bandwidth beyond uint32": "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=4294967296\na.m3u8\n",
		"bad average":             "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1,AVERAGE-BANDWIDTH=x\na.m3u8\n",
		"bad resolution":          "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1,RESOLUTION=640*360\na.m3u8\n",
		"bad frame rate":          "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1,FRAME-RATE=fast\na.m3u8\n",
		"iframe without URI":      "#EXTM3U\n#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=1\n",
	}
	for name, in := range tests {
		t.Run(name, func(t *testing.T) {
			pm, err := ParseMaster(strings.NewReader(in))
			if err == nil {
				t.Fatalf("no error; got %+v", pm)
			}
			if !strings.HasPrefix(err.Error(), "playlist: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
		})
	}
}

func TestKind(t *testing.T) {
	var master, media bytes.Buffer
	if err := WriteMaster(&master, Master{Variants: SortByBandwidth(testVariants()), Independent: true, Complete: true}); err != nil {
		t.Fatal(err)
	}
	if err := WriteMedia(&media, Media{KeyURI: testKeyURI, Independent: true, Segments: segments(4)}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		data       []byte
		wantMaster bool
		wantErr    bool
	}{
		{"our master", master.Bytes(), true, false},
		{"our media", media.Bytes(), false, false},
		{"master with groups", readFixture(t, "master_audio_groups.m3u8"), true, false},
		{"ffmpeg in progress", readFixture(t, "ffmpeg_in_progress.m3u8"), false, false},
		{"legacy", readFixture(t, "legacy_byterange_map.m3u8"), false, false},
		{"media sequence is not EXT-X-MEDIA", []byte("#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:0\n"), false, false},
		{"empty", nil, false, true},
		{"no header", []byte("#EXTINF:4,\na.ts\n"), false, true},
		{"header only", []byte("#EXTM3U\n#EXT-X-VERSION:3\n"), false, true},
		{"both kinds", []byte("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\na.m3u8\n#EXTINF:4,\na.ts\n"), false, true},
		{"not a playlist", []byte("<html>"), false, true},
	}
	for _, tc := range tests {
		isMaster, err := Kind(tc.data)
		if (err != nil) != tc.wantErr {
			t.Errorf("%s: err = %v, want error %v", tc.name, err, tc.wantErr)
			continue
		}
		if err != nil && !strings.HasPrefix(err.Error(), "playlist: ") {
			t.Errorf("%s: error %q lacks the package prefix", tc.name, err)
		}
		if err == nil && isMaster != tc.wantMaster {
			t.Errorf("%s: isMaster = %v, want %v", tc.name, isMaster, tc.wantMaster)
		}
	}
}
