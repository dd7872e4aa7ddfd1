package playlist

import (
	"bytes"
	"strings"
	"testing"
)

func TestWriteMasterAudioGroup(t *testing.T) {
	m := Master{
		Alternatives: []Alternative{
			{Type: "AUDIO", GroupID: "aud", Name: "English", Language: "en", Default: true, Autoselect: "YES", Channels: "2", URI: "audio1/index.m3u8"},
			{Type: "AUDIO", GroupID: "aud", Name: "Français", Language: "fr", Autoselect: "YES", Channels: "1", URI: "audio2/index.m3u8"},
		},
		Variants: []Variant{
			{URI: "240p/index.m3u8", Bandwidth: 500000, AverageBandwidth: 400000, Codecs: "avc1.64000d,mp4a.40.2", Width: 320, Height: 240, FrameRate: 25, Audio: "aud"},
			{URI: "144p/index.m3u8", Bandwidth: 250000, AverageBandwidth: 200000, Codecs: "avc1.64000b,mp4a.40.2", Width: 192, Height: 144, FrameRate: 25, Audio: "aud"},
		},
		Independent: true, Complete: true,
	}
	var buf bytes.Buffer
	if err := WriteMaster(&buf, m); err != nil {
		t.Fatal(err)
	}
	want := `#EXTM3U
#EXT-X-VERSION:4
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aud",NAME="English",DEFAULT=YES,AUTOSELECT=YES,LANGUAGE="en",CHANNELS="2",URI="audio1/index.m3u8"
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aud",NAME="Français",DEFAULT=NO,AUTOSELECT=YES,LANGUAGE="fr",CHANNELS="1",URI="audio2/index.m3u8"
#EXT-X-STREAM-INF:BANDWIDTH=500000,AVERAGE-BANDWIDTH=400000,CODECS="avc1.64000d,mp4a.40.2",RESOLUTION=320x240,AUDIO="aud",CLOSED-CAPTIONS=NONE,FRAME-RATE=25.000
240p/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=250000,AVERAGE-BANDWIDTH=200000,CODECS="avc1.64000b,mp4a.40.2",RESOLUTION=192x144,AUDIO="aud",CLOSED-CAPTIONS=NONE,FRAME-RATE=25.000
144p/index.m3u8
`
	if got := buf.String(); got != want {
		t.Fatalf("master:\n%s\nwant:\n%s", got, want)
	}
	// What we write reads back: the parser and the gateway's template see
	// the same renditions.
	pm, err := ParseMaster(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if len(pm.Renditions) != 2 || pm.Renditions[1].URI != "audio2/index.m3u8" || pm.Renditions[1].Language != "fr" {
		t.Fatalf("parsed renditions %+v", pm.Renditions)
	}
	tmpl, err := CompileMaster(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if len(tmpl.URIs) != 4 {
		t.Fatalf("template URIs %q", tmpl.URIs)
	}

	// A master that is not Complete (a legacy title's) promises nothing
	// about captions.
	m.Complete = false
	buf.Reset()
	if err := WriteMaster(&buf, m); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(buf.String(), "CLOSED-CAPTIONS") {
		t.Errorf("CLOSED-CAPTIONS on a master that is not Complete:\n%s", buf.String())
	}

	for _, bad := range []string{"2\"", "two", "2/", "\n"} {
		m.Alternatives[0].Channels = bad
		if err := WriteMaster(&bytes.Buffer{}, m); err == nil {
			t.Errorf("CHANNELS %q accepted", bad)
		}
	}
}
