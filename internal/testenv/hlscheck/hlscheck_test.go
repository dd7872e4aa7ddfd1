package hlscheck

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
)

// recorder is a testing.TB whose Errorf is recorded instead of failing, so
// that the test can show the check fails on a bad playlist.
type recorder struct {
	testing.TB
	errors []string
}

func (r *recorder) Errorf(format string, args ...any) {
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}

const master = `#EXTM3U
#EXT-X-VERSION:4
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aac",NAME="English",DEFAULT=YES,AUTOSELECT=YES,LANGUAGE="en",URI="audio_en/index.m3u8?token=abc"
#EXT-X-STREAM-INF:BANDWIDTH=300000,CODECS="avc1.42c00d,mp4a.40.2",RESOLUTION=320x240,AUDIO="aac"
240p/index.m3u8?token=abc
#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=50000,CODECS="avc1.42c00d",RESOLUTION=320x240,URI="240p/iframes.m3u8?token=abc"
#EXT-X-IMAGE-STREAM-INF:BANDWIDTH=10000,RESOLUTION=160x90,CODECS="jpeg",URI="thumbs/index.m3u8?token=abc"
`

const media = `#EXTM3U
#EXT-X-VERSION:3
#EXT-X-TARGETDURATION:1
#EXT-X-MEDIA-SEQUENCE:0
#EXT-X-PLAYLIST-TYPE:VOD
#EXT-X-KEY:METHOD=AES-128,URI="/k/1",IV=0x00000000000000000000000000000001
#EXTINF:1.000,
seg_00000.ts
#EXT-X-ENDLIST
`

func TestCheck(t *testing.T) {
	var b Batch
	b.Add("master", []byte(master))
	b.Add("media", []byte(media))
	res := b.Check(t)
	if got := []string{res[0].Kind, res[1].Kind}; !reflect.DeepEqual(got, []string{"master", "media"}) {
		t.Errorf("kinds %v", got)
	}

	// Each a real RFC 8216 violation: the check must fail on it.
	for name, bad := range map[string]string{
		"extinf over target":  strings.Replace(media, "#EXTINF:1.000,", "#EXTINF:3.000,", 1),
		"no bandwidth":        strings.Replace(master, "BANDWIDTH=300000,", "", 1),
		"not a playlist":      "seg_00000.ts\n",
		"key without uri":     strings.Replace(media, `URI="/k/1",`, "", 1),
		"media tag in master": master + "#EXT-X-TARGETDURATION:1\n",
	} {
		r := &recorder{TB: t}
		var b Batch
		b.Add(name, []byte(bad))
		b.Add("good", []byte(media))
		b.Check(r)
		if len(r.errors) != 1 || !strings.Contains(r.errors[0], name) {
			t.Errorf("%s: errors %q, want one naming it", name, r.errors)
		}
		if len(r.errors) == 1 && strings.Contains(r.errors[0], "token=abc") {
			t.Errorf("%s: token printed: %s", name, r.errors[0])
		}
	}
}

func TestPlaylistURIs(t *testing.T) {
	got := playlistURIs([]byte(master))
	want := []string{"audio_en/index.m3u8?token=abc", "240p/index.m3u8?token=abc", "240p/iframes.m3u8?token=abc",
		"thumbs/index.m3u8?token=abc"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestCrawl(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/v/master.m3u8", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, master) })
	for _, p := range []string{"/v/audio_en/index.m3u8", "/v/240p/index.m3u8", "/v/240p/iframes.m3u8", "/v/thumbs/index.m3u8"} {
		mux.HandleFunc(p, func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Query().Get("token") != "abc" {
				http.Error(w, "no token", http.StatusForbidden)
				return
			}
			fmt.Fprint(w, media)
		})
	}
	ts := httptest.NewServer(mux)
	defer ts.Close()
	got := Crawl(t, ts.Client(), ts.URL+"/v/master.m3u8?token=abc")
	if len(got) != 5 {
		t.Fatalf("crawled %d playlists, want 5: %v", len(got), got)
	}
	StrictAll(t, got)
}
