package playlist

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const backfillGoldenDir = "../../testdata/backfill"

func checkBackfillGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join(backfillGoldenDir, name)
	if *update {
		if err := os.MkdirAll(backfillGoldenDir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

func writeLegacyShapes(t *testing.T, m Media) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := WriteMedia(&buf, m); err != nil {
		t.Fatalf("WriteMedia: %v", err)
	}
	return buf.Bytes()
}

// fmp4Media is a re-encrypted fMP4 title whose legacy playlist had a
// discontinuity with a second init section.
func fmp4Media() Media {
	return Media{
		KeyURI: testKeyURI,
		Segments: []Segment{
			{URI: "seg_00000.m4s", Duration: 6, Size: 100016, IV: fixedIV(1), Init: &Init{URI: "init_00000.mp4", IV: fixedIV(100)}},
			{URI: "seg_00001.m4s", Duration: 6, Size: 120016, IV: fixedIV(2)},
			{URI: "seg_00002.m4s", Duration: 5.5, Size: 90016, IV: fixedIV(3), Discontinuity: true,
				Init: &Init{URI: "init_00001.mp4", IV: fixedIV(101)}},
			{URI: "seg_00003.m4s", Duration: 2.0026, Size: 30016, IV: fixedIV(4)},
		},
	}
}

func TestWriteMediaLegacyShapesGolden(t *testing.T) {
	checkBackfillGolden(t, "media_fmp4_discontinuity.m3u8.golden", writeLegacyShapes(t, fmp4Media()))
	ts := Media{KeyURI: testKeyURI, Independent: true, Segments: []Segment{
		{URI: "seg_00000.ts", Duration: 1, IV: fixedIV(1)},
		{URI: "seg_00001.ts", Duration: 1.002667, IV: fixedIV(2), Discontinuity: true},
		{URI: "seg_00002.ts", Duration: 0.021333, IV: fixedIV(3)},
	}}
	checkBackfillGolden(t, "media_ts_discontinuity.m3u8.golden", writeLegacyShapes(t, ts))
}

func TestMediaWithInitRoundTrip(t *testing.T) {
	m := fmp4Media()
	out := writeLegacyShapes(t, m)
	pm := parseMedia(t, out)
	if !pm.Ended || len(pm.Segments) != len(m.Segments) {
		t.Fatalf("parsed %+v", pm)
	}
	for i, s := range m.Segments {
		p := pm.Segments[i]
		if p.URI != s.URI || p.Discontinuity != s.Discontinuity || p.Key == nil || p.Key.IV != formatIV(s.IV) || p.Key.URI != testKeyURI {
			t.Errorf("segment %d = %+v (key %+v), want %+v", i, p, p.Key, s)
		}
		if p.Map == nil {
			t.Errorf("segment %d has no init section", i)
		}
	}
	if pm.Segments[1].Map.URI != "init_00000.mp4" || pm.Segments[3].Map.URI != "init_00001.mp4" {
		t.Errorf("init sections carried wrongly: %+v %+v", pm.Segments[1].Map, pm.Segments[3].Map)
	}
	tags, err := MapTags(out)
	if err != nil {
		t.Fatal(err)
	}
	want := []MapTag{
		{Segment: 0, Map: Map{URI: "init_00000.mp4"}, Key: &Key{Method: "AES-128", URI: testKeyURI, IV: formatIV(fixedIV(100))}},
		{Segment: 2, Map: Map{URI: "init_00001.mp4"}, Key: &Key{Method: "AES-128", URI: testKeyURI, IV: formatIV(fixedIV(101))}},
	}
	if !reflect.DeepEqual(tags, want) {
		t.Fatalf("MapTags = %+v, want %+v", tags, want)
	}
	// Each EXT-X-KEY precedes the EXT-X-MAP it applies to.
	text := string(out)
	if strings.Index(text, formatIV(fixedIV(100))) > strings.Index(text, "#EXT-X-MAP") {
		t.Error("the init section's key does not precede its EXT-X-MAP")
	}
	if !strings.Contains(text, "#EXT-X-VERSION:6\n") {
		t.Error("EXT-X-MAP needs EXT-X-VERSION 6")
	}
	if HasIndependentSegments(out) {
		t.Error("EXT-X-INDEPENDENT-SEGMENTS written without being asked")
	}
}

func TestWriteMediaRefusesLegacyShapes(t *testing.T) {
	for name, m := range map[string]Media{
		"no segments":       {KeyURI: testKeyURI},
		"no key URI":        {Segments: []Segment{{URI: "a.ts", Duration: 1}}},
		"absolute URI":      {KeyURI: testKeyURI, Segments: []Segment{{URI: "/a.ts", Duration: 1}}},
		"escaping init":     {KeyURI: testKeyURI, Segments: []Segment{{URI: "a.ts", Duration: 1, Init: &Init{URI: "../i.mp4"}}}},
		"zero duration":     {KeyURI: testKeyURI, Segments: []Segment{{URI: "a.ts", Duration: 0}}},
		"init not on first": {KeyURI: testKeyURI, Segments: []Segment{{URI: "a.ts", Duration: 1}, {URI: "b.ts", Duration: 1, Init: &Init{URI: "i.mp4"}}}},
	} {
		if err := WriteMedia(&bytes.Buffer{}, m); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestLegacyMasterRoundTrip(t *testing.T) {
	lm, err := ParseLegacyMaster(bytes.NewReader(readFixture(t, "master_audio_groups.m3u8")))
	if err != nil {
		t.Fatal(err)
	}
	if !lm.Independent || len(lm.Variants) != 2 || len(lm.IFrameVariants) != 1 || len(lm.Media) != 3 {
		t.Fatalf("parsed %+v", lm)
	}
	if lm.Media[0].Autoselect != "YES" || lm.Media[0].URI != "audio/en/index.m3u8" || lm.Variants[1].Audio != "aac" {
		t.Fatalf("parsed %+v", lm)
	}
	// Rewrite with new URIs, as a backfill does.
	m := Master{Independent: lm.Independent}
	for i, r := range lm.Media {
		r.URI = []string{"audio_en/index.m3u8", "audio_de/index.m3u8", "subs_en/index.m3u8"}[i]
		m.Alternatives = append(m.Alternatives, r.Alternative)
	}
	m.Variants = []Variant{
		{URI: "720p/index.m3u8", Bandwidth: 2800000, AverageBandwidth: 2400000, Codecs: "avc1.64001f,mp4a.40.2",
			Width: 1280, Height: 720, FrameRate: 29.97, Audio: "aac", Subtitles: "subs"},
		{URI: "360p/index.m3u8", Bandwidth: 1200000, Codecs: "avc1.4d401e,mp4a.40.2", Width: 640, Height: 360, Audio: "aac"},
		{URI: "audio_en/index.m3u8", Bandwidth: 70000, Codecs: "mp4a.40.2", Audio: "aac"},
	}
	var buf bytes.Buffer
	if err := WriteMaster(&buf, m); err != nil {
		t.Fatal(err)
	}
	checkBackfillGolden(t, "master_audio_groups.m3u8.golden", buf.Bytes())
	back, err := ParseLegacyMaster(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if len(back.Variants) != 3 || back.Variants[0].URI != "720p/index.m3u8" || len(back.Media) != 3 || !reflect.DeepEqual(back.Media[1].Alternative, m.Alternatives[1]) {
		t.Fatalf("round trip: %+v", back)
	}
	if pm, err := ParseMaster(bytes.NewReader(buf.Bytes())); err != nil || len(pm.Variants) != 3 || len(pm.Renditions) != 3 {
		t.Fatalf("ParseMaster of the written master: %+v %v", pm, err)
	}
}

func TestWriteMasterRefuses(t *testing.T) {
	v := Variant{URI: "a/index.m3u8", Bandwidth: 1000}
	audio := Alternative{Type: "AUDIO", GroupID: "aud", Name: "en", URI: "en/index.m3u8"}
	for name, m := range map[string]Master{
		"no variants":       {},
		"no bandwidth":      {Variants: []Variant{{URI: "a/index.m3u8"}}},
		"avg above peak":    {Variants: []Variant{{URI: "a.m3u8", Bandwidth: 1, AverageBandwidth: 2}}},
		"unknown group":     {Variants: []Variant{{URI: "a.m3u8", Bandwidth: 1, Audio: "aud"}}},
		"group of the type": {Variants: []Variant{{URI: "a.m3u8", Bandwidth: 1, Subtitles: "aud"}}, Alternatives: []Alternative{audio}},
		"duplicate":         {Variants: []Variant{v}, Alternatives: []Alternative{audio, audio}},
		"closed captions":   {Variants: []Variant{v}, Alternatives: []Alternative{{Type: "CLOSED-CAPTIONS", GroupID: "cc", Name: "cc"}}},
		"quote in name":     {Variants: []Variant{v}, Alternatives: []Alternative{{Type: "AUDIO", GroupID: "a", Name: `x"y`}}},
		"same URI twice":    {Variants: []Variant{v, v}},
		"half resolution":   {Variants: []Variant{{URI: "a.m3u8", Bandwidth: 1, Width: 2}}},
	} {
		if err := WriteMaster(&bytes.Buffer{}, m); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestMapTagsLegacy(t *testing.T) {
	tags, err := MapTags(readFixture(t, "legacy_byterange_map.m3u8"))
	if err != nil {
		t.Fatal(err)
	}
	want := []MapTag{
		{Segment: 0, Map: Map{URI: "init.mp4", ByteRange: &ByteRange{Length: 720, Offset: 0}}},
		{Segment: 2, Map: Map{URI: "init2.mp4"}},
	}
	if !reflect.DeepEqual(tags, want) {
		t.Fatalf("MapTags = %+v, want %+v", tags, want)
	}
}

func TestWriteMediaByteRange(t *testing.T) {
	m := Media{KeyURI: testKeyURI, Segments: []Segment{
		{URI: "all.ts", Duration: 4, IV: fixedIV(1), ByteRange: &ByteRange{Length: 1000, Offset: 0}},
		{URI: "all.ts", Duration: 4, IV: fixedIV(2), ByteRange: &ByteRange{Length: 2000, Offset: 1000}},
	}}
	out := writeLegacyShapes(t, m)
	if !strings.Contains(string(out), "#EXT-X-VERSION:4\n") || !strings.Contains(string(out), "#EXT-X-BYTERANGE:2000@1000\n") {
		t.Fatalf("byte ranges not written as EXT-X-BYTERANGE (version 4):\n%s", out)
	}
	back, err := ParseMedia(bytes.NewReader(out))
	if err != nil || len(back.Segments) != 2 || back.Segments[1].ByteRange == nil || *back.Segments[1].ByteRange != (ByteRange{2000, 1000}) {
		t.Fatalf("read back: %+v %v", back, err)
	}
	m.Segments[0].ByteRange = &ByteRange{Length: 0}
	if err := WriteMedia(&bytes.Buffer{}, m); err == nil {
		t.Error("empty byte range accepted")
	}
}
