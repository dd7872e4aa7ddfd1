package playlist

import (
	"bytes"
	"strings"
	"testing"
)

func testIFrameVariants() []IFrameVariant {
	return []IFrameVariant{
		{URI: "720p-iframes/index.m3u8", Bandwidth: 402_117, AverageBandwidth: 350_021, Codecs: "avc1.64001f", Width: 1280, Height: 720},
		{URI: "360p-iframes/index.m3u8", Bandwidth: 101_337, AverageBandwidth: 90_000, Codecs: "avc1.4d401e", Width: 640, Height: 360},
	}
}

// TestWriteMasterIFrameGolden: the I-frame variants come after the
// variants as EXT-X-I-FRAME-STREAM-INF with BANDWIDTH, AVERAGE-BANDWIDTH,
// CODECS, RESOLUTION and URI, without PROGRAM-ID or FRAME-RATE; the rest of
// the master is master.golden.m3u8 byte for byte.
func TestWriteMasterIFrameGolden(t *testing.T) {
	m := Master{Variants: SortByBandwidth(testVariants()), Independent: true, Complete: true}
	var plain, buf bytes.Buffer
	if err := WriteMaster(&plain, m); err != nil {
		t.Fatal(err)
	}
	m.IFrameVariants = testIFrameVariants()
	if err := WriteMaster(&buf, m); err != nil {
		t.Fatal(err)
	}
	checkGolden(t, "master_iframes.golden.m3u8", buf.Bytes())
	out := buf.String()
	rest, ok := strings.CutPrefix(out, plain.String())
	if !ok {
		t.Fatalf("the master with I-frame variants does not start with the one without:\n%s", out)
	}
	want := `#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=402117,AVERAGE-BANDWIDTH=350021,CODECS="avc1.64001f",RESOLUTION=1280x720,URI="720p-iframes/index.m3u8"` + "\n" +
		`#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=101337,AVERAGE-BANDWIDTH=90000,CODECS="avc1.4d401e",RESOLUTION=640x360,URI="360p-iframes/index.m3u8"` + "\n"
	if rest != want {
		t.Fatalf("I-frame lines:\n%s\nwant\n%s", rest, want)
	}
	pm, err := ParseMaster(strings.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	if len(pm.Variants) != 4 || len(pm.IFrameVariants) != 2 {
		t.Fatalf("parsed %d variants and %d I-frame variants", len(pm.Variants), len(pm.IFrameVariants))
	}
	if iv := pm.IFrameVariants[0]; iv.URI != "720p-iframes/index.m3u8" || iv.Bandwidth != 402_117 || iv.Width != 1280 || iv.Codecs != "avc1.64001f" {
		t.Fatalf("parsed I-frame variant %+v", iv)
	}
	// The gateway's rewrite finds every URI, the I-frame ones included.
	mt, err := CompileMaster(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if len(mt.URIs) != 6 || mt.URIs[5] != "360p-iframes/index.m3u8" {
		t.Fatalf("CompileMaster URIs %q", mt.URIs)
	}
}

func TestWriteMasterIFrameErrors(t *testing.T) {
	with := func(f func(*IFrameVariant)) []IFrameVariant {
		vs := testIFrameVariants()
		f(&vs[0])
		return vs
	}
	for _, tc := range []struct {
		name string
		ivs  []IFrameVariant
	}{
		{"absolute URI", with(func(v *IFrameVariant) { v.URI = "https://x/i.m3u8" })},
		{"quote in URI", with(func(v *IFrameVariant) { v.URI = `a"b.m3u8` })},
		{"same URI as a variant", with(func(v *IFrameVariant) { v.URI = "720p/index.m3u8" })},
		{"listed twice", with(func(v *IFrameVariant) { v.URI = "360p-iframes/index.m3u8" })},
		{"zero bandwidth", with(func(v *IFrameVariant) { v.Bandwidth = 0 })},
		{"average above peak", with(func(v *IFrameVariant) { v.AverageBandwidth = v.Bandwidth + 1 })},
		{"no average in a complete master", with(func(v *IFrameVariant) { v.AverageBandwidth = 0 })},
		{"no codecs in a complete master", with(func(v *IFrameVariant) { v.Codecs = "" })},
		{"codecs with space", with(func(v *IFrameVariant) { v.Codecs = "avc1 x" })},
		{"half a resolution", with(func(v *IFrameVariant) { v.Height = 0 })},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			err := WriteMaster(&buf, Master{Variants: testVariants(), IFrameVariants: tc.ivs, Complete: true})
			if err == nil || !strings.HasPrefix(err.Error(), "playlist: ") {
				t.Fatalf("err = %v; wrote\n%s", err, buf.String())
			}
			if buf.Len() != 0 {
				t.Error("wrote output despite the error")
			}
		})
	}
}

// TestWriteMediaIFramesOnly: EXT-X-I-FRAMES-ONLY raises EXT-X-VERSION to 4
// (RFC 8216 section 7), every segment keeps its own EXT-X-KEY and IV, and
// the parser reads the tag back.
func TestWriteMediaIFramesOnly(t *testing.T) {
	segs := withKeys(segments(4, 4, 4, 1.5), testKeyURI, testKeyURI, testKeyURI2, testKeyURI2)
	for i := range segs {
		segs[i].Size = 20_000
	}
	got := writeMedia(t, Media{Independent: true, IFramesOnly: true, Segments: segs})
	checkGolden(t, "media_iframes.golden.m3u8", got)
	out := string(got)
	for _, want := range []string{"#EXT-X-VERSION:4\n", "#EXT-X-I-FRAMES-ONLY\n", "#EXT-X-TARGETDURATION:4\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in\n%s", want, out)
		}
	}
	if n := strings.Count(out, "#EXT-X-KEY:"); n != 4 {
		t.Errorf("%d EXT-X-KEY tags, want one per I-frame segment", n)
	}
	pm, err := ParseMedia(strings.NewReader(out))
	if err != nil || !pm.IFramesOnly || len(pm.Segments) != 4 {
		t.Fatalf("ParseMedia: %v, %+v", err, pm)
	}
	// Without the flag: version 3, no tag.
	plain := string(writeMedia(t, Media{Independent: true, Segments: segs}))
	if strings.Contains(plain, "I-FRAMES-ONLY") || !strings.Contains(plain, "#EXT-X-VERSION:3\n") {
		t.Errorf("a normal playlist:\n%s", plain)
	}
	if pm, err := ParseMedia(strings.NewReader(plain)); err != nil || pm.IFramesOnly {
		t.Fatalf("ParseMedia of a normal playlist: %v, IFramesOnly %v", err, pm != nil && pm.IFramesOnly)
	}
	// An fMP4 I-frame playlist (EXT-X-MAP) keeps version 6.
	fm := withKeys(segments(4), testKeyURI)
	fm[0].Init = &Init{URI: "init_00000.mp4", KeyURI: testKeyURI}
	if s := string(writeMedia(t, Media{IFramesOnly: true, Segments: fm})); !strings.Contains(s, "#EXT-X-VERSION:6\n") {
		t.Errorf("fMP4 I-frame playlist:\n%s", s)
	}
}

// TestIFrameBandwidth: the I-frame stream's BANDWIDTH comes from its own
// segments' sizes and durations, as for variants.
func TestIFrameBandwidth(t *testing.T) {
	segs := segments(4, 4, 2)
	segs[0].Size, segs[1].Size, segs[2].Size = 40_000, 60_000, 20_000
	peak, avg := Bandwidth(segs)
	if peak != 120_000 || avg != 96_000 {
		t.Fatalf("Bandwidth = %d, %d; want 120000, 96000", peak, avg)
	}
}
