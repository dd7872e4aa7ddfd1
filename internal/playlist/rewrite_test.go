package playlist

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func publishedMedia(t testing.TB, n int) []byte {
	t.Helper()
	m := Media{KeyURI: "http://127.0.0.1:8080/v1/keys/k_00000000000000000000000000000001", Independent: true}
	for i := range n {
		var iv [16]byte
		iv[0], iv[15] = 0xAB, byte(i)
		m.Segments = append(m.Segments, Segment{URI: fmt.Sprintf("seg_%05d.ts", i), Duration: 4.004, IV: iv})
	}
	var buf bytes.Buffer
	if err := WriteMedia(&buf, m); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestRewriteMediaKeepsEverythingButURIs(t *testing.T) {
	in := publishedMedia(t, 3)
	out, err := RewriteMedia(in,
		func(uri string) (string, error) { return "https://cdn.example/x/" + uri + "?se=1&sig=a%2Fb", nil },
		func(uri string) (string, error) { return "/v1/keys/k_1?token=v1.k.p.m", nil })
	if err != nil {
		t.Fatal(err)
	}
	want := strings.ReplaceAll(string(in), "http://127.0.0.1:8080/v1/keys/k_00000000000000000000000000000001", "/v1/keys/k_1?token=v1.k.p.m")
	for i := range 3 {
		u := fmt.Sprintf("seg_%05d.ts", i)
		want = strings.Replace(want, "\n"+u+"\n", "\nhttps://cdn.example/x/"+u+"?se=1&sig=a%2Fb\n", 1)
	}
	if string(out) != want {
		t.Fatalf("got\n%s\nwant\n%s", out, want)
	}
	// Every IV survives, and the output parses to the same segments.
	pm, err := ParseMedia(bytes.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	orig, _ := ParseMedia(bytes.NewReader(in))
	for i, s := range pm.Segments {
		if s.Key == nil || s.Key.IV != orig.Segments[i].Key.IV || s.Duration != orig.Segments[i].Duration || !strings.HasPrefix(s.URI, "https://cdn.example/x/") {
			t.Errorf("segment %d: %+v (key %+v)", i, s, s.Key)
		}
	}
	if strings.Count(string(out), "#EXT-X-KEY:") != 3 || strings.Count(string(out), "IV=0xAB") != 3 {
		t.Errorf("keys or IVs lost:\n%s", out)
	}
}

func TestCompileMediaTemplate(t *testing.T) {
	in := publishedMedia(t, 5)
	m, err := CompileMedia(in)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Resources) != 5 || len(m.KeyURIs) != 1 || m.KeyHoles() != 5 {
		t.Fatalf("resources %d, keys %d, key holes %d", len(m.Resources), len(m.KeyURIs), m.KeyHoles())
	}
	if r := m.Resources[3]; r.URI != "seg_00003.ts" || r.Start < 12.011 || r.Start > 12.013 || r.Duration != 4.004 {
		t.Errorf("resource 3: %+v", r)
	}
	out, err := m.Expand(nil, func(i int) (string, error) { return m.Resources[i].URI, nil }, func(i int) (string, error) { return m.KeyURIs[i], nil })
	if err != nil || !bytes.Equal(out, in) {
		t.Fatalf("identity expand differs: %v\n%s", err, out)
	}
	ks, ss := "KEY", "SEG"
	out, _ = m.Expand(nil, func(int) (string, error) { return ss, nil }, func(int) (string, error) { return ks, nil })
	if len(out) != m.LiteralLen()+5*len(ss)+5*len(ks) {
		t.Errorf("LiteralLen %d does not size the output (%d)", m.LiteralLen(), len(out))
	}
	// Errors from the callbacks stop the expansion.
	boom := errors.New("boom")
	if _, err := m.Expand(nil, func(int) (string, error) { return "", boom }, func(int) (string, error) { return ks, nil }); !errors.Is(err, boom) {
		t.Errorf("callback error: %v", err)
	}
}

func TestRewriteMediaVariants(t *testing.T) {
	seg := func(uri string) (string, error) { return "S(" + uri + ")", nil }
	key := func(uri string) (string, error) { return "K(" + uri + ")", nil }
	cases := []struct {
		name, in, want string
	}{
		{
			name: "ffmpeg style: one key, CRLF, blank lines, map",
			in:   "#EXTM3U\r\n#EXT-X-VERSION:7\r\n#EXT-X-TARGETDURATION:4\r\n\r\n#EXT-X-MAP:URI=\"init.mp4\"\r\n#EXT-X-KEY:METHOD=AES-128,URI=\"key.bin\",IV=0x01\r\n#EXTINF:4.0,\r\n  a.m4s  \r\n#EXTINF:4.0,\r\nb.m4s\r\n#EXT-X-ENDLIST",
			want: "#EXTM3U\r\n#EXT-X-VERSION:7\r\n#EXT-X-TARGETDURATION:4\r\n\r\n#EXT-X-MAP:URI=\"S(init.mp4)\"\r\n#EXT-X-KEY:METHOD=AES-128,URI=\"K(key.bin)\",IV=0x01\r\n#EXTINF:4.0,\r\n  S(a.m4s)  \r\n#EXTINF:4.0,\r\nS(b.m4s)\r\n#EXT-X-ENDLIST",
		},
		{
			name: "key NONE and unknown tags kept",
			in:   "#EXTM3U\n#EXT-X-TARGETDURATION:4\n#X-CUSTOM:FOO=\"bar\"\n#EXT-X-KEY:METHOD=NONE\n#EXTINF:4,\na.ts\n#EXT-X-KEY:IV=0x02,URI=\"k2\",METHOD=AES-128\n#EXTINF:4,\nb.ts\n#EXT-X-ENDLIST\n",
			want: "#EXTM3U\n#EXT-X-TARGETDURATION:4\n#X-CUSTOM:FOO=\"bar\"\n#EXT-X-KEY:METHOD=NONE\n#EXTINF:4,\nS(a.ts)\n#EXT-X-KEY:IV=0x02,URI=\"K(k2)\",METHOD=AES-128\n#EXTINF:4,\nS(b.ts)\n#EXT-X-ENDLIST\n",
		},
		{
			name: "URI text inside another quoted attribute",
			in:   "#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXT-X-KEY:METHOD=AES-128,KEYFORMAT=\"a,URI=x\",URI=\"real\"\n#EXTINF:4,\na.ts\n#EXT-X-ENDLIST\n",
			want: "#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXT-X-KEY:METHOD=AES-128,KEYFORMAT=\"a,URI=x\",URI=\"K(real)\"\n#EXTINF:4,\nS(a.ts)\n#EXT-X-ENDLIST\n",
		},
	}
	for _, tc := range cases {
		out, err := RewriteMedia([]byte(tc.in), seg, key)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if string(out) != tc.want {
			t.Errorf("%s:\ngot  %q\nwant %q", tc.name, out, tc.want)
		}
	}
}

func TestRewriteMediaRefuses(t *testing.T) {
	ok := func(uri string) (string, error) { return "x", nil }
	for name, in := range map[string]string{
		"not a playlist":      "hello",
		"cut short":           "#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:4,\na.ts\n#EXTINF:4,\nb.t",
		"part":                "#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXT-X-PART:DURATION=1,URI=\"p.ts\"\n#EXTINF:4,\na.ts\n#EXT-X-ENDLIST\n",
		"preload hint":        "#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:4,\na.ts\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"p.ts\"\n",
		"unquoted key uri":    "#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXT-X-KEY:METHOD=AES-128,URI=k\n#EXTINF:4,\na.ts\n#EXT-X-ENDLIST\n",
		"daterange x-uri":     "#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXT-X-DATERANGE:ID=\"a\",X-AD-URI=\"http://x\"\n#EXTINF:4,\na.ts\n#EXT-X-ENDLIST\n",
		"master":              "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\na.m3u8\n",
		"unterminated quotes": "#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXT-X-KEY:METHOD=AES-128,URI=\"k\n#EXTINF:4,\na.ts\n#EXT-X-ENDLIST\n",
	} {
		if out, err := RewriteMedia([]byte(in), ok, ok); err == nil {
			t.Errorf("%s: rewrote to %q", name, out)
		}
	}
	in := publishedMedia(t, 1)
	for _, bad := range []string{"a\"b", "a\nb", ""} {
		if _, err := RewriteMedia(in, ok, func(string) (string, error) { return bad, nil }); err == nil {
			t.Errorf("key replacement %q accepted", bad)
		}
	}
	for _, bad := range []string{"a\nb", "#EXT-X-ENDLIST", " a", ""} {
		if _, err := RewriteMedia(in, func(string) (string, error) { return bad, nil }, ok); err == nil {
			t.Errorf("segment replacement %q accepted", bad)
		}
	}
}

func TestRewriteMaster(t *testing.T) {
	var buf bytes.Buffer
	err := WriteMaster(&buf, Master{Independent: true, Complete: true, Variants: []Variant{
		{URI: "240p/index.m3u8", Bandwidth: 400000, AverageBandwidth: 300000, Codecs: "avc1.42c00d,mp4a.40.2", Width: 320, Height: 240, FrameRate: 25},
		{URI: "144p/index.m3u8", Bandwidth: 200000, AverageBandwidth: 150000, Codecs: "avc1.42c00b,mp4a.40.2", Width: 192, Height: 144, FrameRate: 25},
	}})
	if err != nil {
		t.Fatal(err)
	}
	out, err := RewriteMaster(buf.Bytes(), func(uri string) (string, error) {
		return "/v1/videos/v/" + uri + "?v=1&token=t", nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := strings.NewReplacer("\n240p/index.m3u8", "\n/v1/videos/v/240p/index.m3u8?v=1&token=t",
		"\n144p/index.m3u8", "\n/v1/videos/v/144p/index.m3u8?v=1&token=t").Replace(buf.String())
	if string(out) != want {
		t.Fatalf("got\n%s\nwant\n%s", out, want)
	}

	alt := "#EXTM3U\n#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"a\",NAME=\"en\",URI=\"audio/en.m3u8\"\n#EXT-X-MEDIA:TYPE=CLOSED-CAPTIONS,GROUP-ID=\"cc\",NAME=\"cc\",INSTREAM-ID=\"CC1\"\n" +
		"#EXT-X-STREAM-INF:BANDWIDTH=1000,AUDIO=\"a\"\nv/index.m3u8\n#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=100,URI=\"v/iframes.m3u8\"\n"
	out, err = RewriteMaster([]byte(alt), func(uri string) (string, error) { return "<" + uri + ">", nil })
	if err != nil {
		t.Fatal(err)
	}
	if want := strings.NewReplacer("\"audio/en.m3u8\"", "\"<audio/en.m3u8>\"", "\nv/index.m3u8", "\n<v/index.m3u8>", "\"v/iframes.m3u8\"", "\"<v/iframes.m3u8>\"").Replace(alt); string(out) != want {
		t.Fatalf("got\n%s\nwant\n%s", out, want)
	}

	for name, in := range map[string]string{
		"session key":  "#EXTM3U\n#EXT-X-SESSION-KEY:METHOD=AES-128,URI=\"k\"\n#EXT-X-STREAM-INF:BANDWIDTH=1\na.m3u8\n",
		"session data": "#EXTM3U\n#EXT-X-SESSION-DATA:DATA-ID=\"x\",URI=\"d.json\"\n#EXT-X-STREAM-INF:BANDWIDTH=1\na.m3u8\n",
		"steering":     "#EXTM3U\n#EXT-X-CONTENT-STEERING:SERVER-URI=\"s\"\n#EXT-X-STREAM-INF:BANDWIDTH=1\na.m3u8\n",
		"media":        "#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:4,\na.ts\n",
	} {
		if out, err := RewriteMaster([]byte(in), func(string) (string, error) { return "x", nil }); err == nil {
			t.Errorf("%s: rewrote to %q", name, out)
		}
	}
}

// A 2-hour title: 1800 segments of 4 s. The gateway expands such a template
// on every rendition request.
func BenchmarkExpandMedia2h(b *testing.B) {
	m, err := CompileMedia(publishedMedia(b, 1800))
	if err != nil {
		b.Fatal(err)
	}
	seg := make([]string, len(m.Resources))
	for i := range seg {
		seg[i] = fmt.Sprintf("/v1/segments/hls/v/v1/720p/seg_%05d.ts?exp=1700000000&sig=0123456789abcdefghijkl", i)
	}
	key := "/v1/keys/k_00000000000000000000000000000001?token=v1.k1.eyJ2aWQiOiJ2Iiwic3ViIjoidSIsInNpZCI6InMiLCJleHAiOjE3MDAwMDAwMDB9.0123456789abcdefghijklmnopqrstuvwxyzABCDEFG"
	b.ReportAllocs()
	var dst []byte
	for b.Loop() {
		dst, _ = m.Expand(dst[:0], func(i int) (string, error) { return seg[i], nil }, func(int) (string, error) { return key, nil })
	}
	b.SetBytes(int64(len(dst)))
}
