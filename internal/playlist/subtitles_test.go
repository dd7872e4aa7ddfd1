package playlist

import (
	"bytes"
	"strings"
	"testing"
)

// TestWriteMasterSubtitles pins the subtitle group as the pipeline writes
// it: FORCED unquoted (grafov quotes it), every variant naming the group,
// and the master reading back with both renditions.
func TestWriteMasterSubtitles(t *testing.T) {
	t.Parallel()
	vs := testVariants()[:1]
	vs[0].Subtitles = "subs"
	m := Master{Variants: vs, Independent: true, Complete: true, Alternatives: []Alternative{
		{Type: "SUBTITLES", GroupID: "subs", Name: "English", Language: "en", Autoselect: "YES", URI: "sub0-en/index.m3u8"},
		{Type: "SUBTITLES", GroupID: "subs", Name: "Français (forced)", Language: "fr", Autoselect: "YES", Forced: true, URI: "sub1-fr/index.m3u8"},
	}}
	var buf bytes.Buffer
	if err := WriteMaster(&buf, m); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{
		`#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID="subs",NAME="English",DEFAULT=NO,AUTOSELECT=YES,LANGUAGE="en",URI="sub0-en/index.m3u8"` + "\n",
		`#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID="subs",NAME="Français (forced)",DEFAULT=NO,AUTOSELECT=YES,LANGUAGE="fr",FORCED=YES,URI="sub1-fr/index.m3u8"` + "\n",
		`SUBTITLES="subs"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in\n%s", want, out)
		}
	}
	pm, err := ParseMaster(strings.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	if len(pm.Renditions) != 2 || pm.Renditions[1].URI != "sub1-fr/index.m3u8" {
		t.Errorf("read back %+v", pm.Renditions)
	}
	m.Alternatives[0].Type, m.Alternatives[0].Forced = "AUDIO", true
	if err := WriteMaster(&buf, m); err == nil {
		t.Error("FORCED on an AUDIO rendition written")
	}
}
