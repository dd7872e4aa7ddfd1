package playlist

import (
	"strconv"
	"testing"
)

func TestExpandSuffixed(t *testing.T) {
	src := "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:4\n#EXT-X-PLAYLIST-TYPE:VOD\n" +
		"#EXT-X-MAP:URI=\"init.mp4\"\n" +
		"#EXT-X-KEY:METHOD=AES-128,URI=\"k\",IV=0x00000000000000000000000000000001\n" +
		"#EXTINF:4.000,\nseg_0.m4s\n#EXTINF:4.000,\nseg_1.m4s\n#EXT-X-ENDLIST\n"
	m, err := CompileMedia([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	uri := func(i int) string { return "https://cdn.example/r" + strconv.Itoa(i) + "?sig=x" }
	key := func(int) (string, error) { return "/v1/keys/k_1?token=t", nil }
	// Resource 1 (the first segment) is not suffixed.
	got, err := m.ExpandSuffixed(nil, func(i int) (string, bool, error) { return uri(i), i != 1, nil }, "&s=abc", key)
	if err != nil {
		t.Fatal(err)
	}
	want, err := m.Expand(nil, func(i int) (string, error) {
		if i == 1 {
			return uri(i), nil
		}
		return uri(i) + "&s=abc", nil
	}, key)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Errorf("ExpandSuffixed:\n%s\nwant (Expand with each URI concatenated):\n%s", got, want)
	}
	if _, err := m.ExpandSuffixed(nil, func(i int) (string, bool, error) { return uri(i), true, nil }, "&s=\"x", key); err == nil {
		t.Error("a suffix with a quote was accepted")
	}
}
