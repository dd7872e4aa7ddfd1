package layout

import "testing"

func TestNames(t *testing.T) {
	p := VersionPrefix("vid", 3)
	for got, want := range map[string]string{
		p:                            "hls/vid/v3/",
		MasterName(p):                "hls/vid/v3/master.m3u8",
		MediaPlaylistName(p, "720p"): "hls/vid/v3/720p/index.m3u8",
		RenditionDir(p, "720p"):      "hls/vid/v3/720p/",
		SegmentName(7, ".ts"):        "seg_00007.ts",
		InitName(0, ".mp4"):          "init_00000.mp4",
		ContentType("a/SEG.TS"):      "video/mp2t",
		ContentType("index.m3u8"):    "application/vnd.apple.mpegurl",
		ContentType("k.key"):         "",
	} {
		if got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
}

func TestValidRendition(t *testing.T) {
	for name, ok := range map[string]bool{
		"720p": true, "audio_en-2": true, "": false, "a/b": false, "..": false, "a b": false, "é": false,
		string(make([]byte, 65)): false,
	} {
		if ValidRendition(name) != ok {
			t.Errorf("ValidRendition(%q) = %v", name, !ok)
		}
	}
	if name, ok := RenditionFromURI("720p/index.m3u8"); !ok || name != "720p" {
		t.Errorf("RenditionFromURI = %q, %v", name, ok)
	}
	if _, ok := RenditionFromURI("../x/index.m3u8"); ok {
		t.Error("RenditionFromURI accepted ../x")
	}
}

func TestIFrameRendition(t *testing.T) {
	if got := IFrameRendition("720p"); got != "720p-iframes" || !ValidRendition(got) {
		t.Fatalf("IFrameRendition = %q", got)
	}
	for name, want := range map[string]string{"720p-iframes": "720p", "a-b-iframes": "a-b", "-iframes": "", "720p": "", "x/y-iframes": ""} {
		got, ok := IFramesOf(name)
		if got != want || ok != (want != "") {
			t.Errorf("IFramesOf(%q) = %q, %v; want %q", name, got, ok, want)
		}
	}
}
