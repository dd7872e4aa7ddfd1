package playlist

import (
	"bytes"
	"strings"
	"testing"
)

// TestWriteMasterClosedCaptions: a CLOSED-CAPTIONS group is written with
// its INSTREAM-ID (which grafov cannot write) and no URI, a variant names
// it or NONE, and what is written reads back through ParseLegacyMaster
// (the backfill's reader) with every attribute, CHANNELS included.
func TestWriteMasterClosedCaptions(t *testing.T) {
	m := Master{
		Alternatives: []Alternative{
			{Type: "AUDIO", GroupID: "aud", Name: "English", Language: "en", Default: true, Channels: "6", URI: "audio/index.m3u8"},
			{Type: "CLOSED-CAPTIONS", GroupID: "cc", Name: "English", Language: "en", Default: true, Autoselect: "YES", InstreamID: "CC1"},
			{Type: "CLOSED-CAPTIONS", GroupID: "cc", Name: "Service 2", InstreamID: "SERVICE2"},
		},
		Variants: []Variant{
			{URI: "a/index.m3u8", Bandwidth: 500000, Audio: "aud", ClosedCaptions: "cc"},
			{URI: "b/index.m3u8", Bandwidth: 300000, Audio: "aud", ClosedCaptions: "NONE"},
			{URI: "c/index.m3u8", Bandwidth: 100000},
		},
	}
	var buf bytes.Buffer
	if err := WriteMaster(&buf, m); err != nil {
		t.Fatal(err)
	}
	want := `#EXTM3U
#EXT-X-VERSION:4
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aud",NAME="English",DEFAULT=YES,LANGUAGE="en",CHANNELS="6",URI="audio/index.m3u8"
#EXT-X-MEDIA:TYPE=CLOSED-CAPTIONS,GROUP-ID="cc",NAME="English",DEFAULT=YES,AUTOSELECT=YES,LANGUAGE="en",INSTREAM-ID="CC1"
#EXT-X-MEDIA:TYPE=CLOSED-CAPTIONS,GROUP-ID="cc",NAME="Service 2",DEFAULT=NO,INSTREAM-ID="SERVICE2"
#EXT-X-STREAM-INF:BANDWIDTH=500000,AUDIO="aud",CLOSED-CAPTIONS="cc"
a/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=300000,AUDIO="aud",CLOSED-CAPTIONS=NONE
b/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=100000
c/index.m3u8
`
	if got := buf.String(); got != want {
		t.Fatalf("master:\n%s\nwant:\n%s", got, want)
	}
	lm, err := ParseLegacyMaster(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	var back []Alternative
	for _, lmed := range lm.Media {
		back = append(back, lmed.Alternative)
	}
	if len(back) != 3 || back[0] != m.Alternatives[0] || back[1] != m.Alternatives[1] || back[2] != m.Alternatives[2] {
		t.Errorf("read back %+v\nwant %+v", back, m.Alternatives)
	}
	if lm.Variants[0].ClosedCaptions != "cc" || lm.Variants[1].ClosedCaptions != "NONE" {
		t.Errorf("variants read back %+v", lm.Variants)
	}
	if tmpl, err := CompileMaster(buf.Bytes()); err != nil || len(tmpl.URIs) != 4 {
		t.Errorf("template: %v %v", tmpl, err)
	}

	for name, edit := range map[string]func(*Master){
		"INSTREAM-ID CC5":        func(m *Master) { m.Alternatives[1].InstreamID = "CC5" },
		"INSTREAM-ID SERVICE64":  func(m *Master) { m.Alternatives[1].InstreamID = "SERVICE64" },
		"INSTREAM-ID SERVICE01":  func(m *Master) { m.Alternatives[1].InstreamID = "SERVICE01" },
		"no INSTREAM-ID":         func(m *Master) { m.Alternatives[1].InstreamID = "" },
		"a URI":                  func(m *Master) { m.Alternatives[1].URI = "cc/index.m3u8" },
		"INSTREAM-ID on audio":   func(m *Master) { m.Alternatives[0].InstreamID = "CC1" },
		"an unknown group":       func(m *Master) { m.Variants[0].ClosedCaptions = "subs" },
		"an audio group as CC":   func(m *Master) { m.Variants[0].ClosedCaptions = "aud" },
		"CHANNELS on captions":   func(m *Master) { m.Alternatives[1].Channels = "2" },
		"a quote in the group":   func(m *Master) { m.Variants[0].ClosedCaptions = `c"c` },
		"captions as audio type": func(m *Master) { m.Variants[0].Audio = "cc" },
	} {
		bad := m
		bad.Alternatives = append([]Alternative(nil), m.Alternatives...)
		bad.Variants = append([]Variant(nil), m.Variants...)
		edit(&bad)
		if err := WriteMaster(&bytes.Buffer{}, bad); err == nil {
			t.Errorf("%s: accepted", name)
		} else if !strings.HasPrefix(err.Error(), "playlist: ") {
			t.Errorf("%s: error %q without the package prefix", name, err)
		}
	}
}
