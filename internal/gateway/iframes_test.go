package gateway

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"io"
	"math"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hlsvault/hlsvault/internal/playlist"
	"github.com/hlsvault/hlsvault/internal/segcrypt"
	"github.com/hlsvault/hlsvault/internal/testenv"
	"github.com/hlsvault/hlsvault/internal/testenv/fixtures"
	"github.com/hlsvault/hlsvault/playback"
)

// TestIFramePlaylistsThroughGateway publishes a real title (1 s segments,
// a key per 1 s period) and plays its trick play renditions as a player
// would, only through the gateway: the master's EXT-X-I-FRAME-STREAM-INF
// URIs are rewritten to the gateway, each I-frame playlist is gated like a
// rendition and names the gateway's key endpoint, and every I-frame segment
// decrypts alone, with the key fetched from there and its own IV, to an
// MPEG-TS that ffprobe decodes to exactly one keyframe, presented at the
// time of the normal rendition's segment of the same index.
func TestIFramePlaylistsThroughGateway(t *testing.T) {
	for name, mk := range fixtures.Stores() {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, mk(t), envOptions{})
			video := e.publishReal(3)
			tok := e.token(video, testenv.Name("viewer"), playback.NewSessionID(), time.Hour)
			base, err := url.Parse(playback.MasterURL(e.ts.URL, video, tok))
			if err != nil {
				t.Fatal(err)
			}
			r := e.get(base.String())
			if r.code != 200 {
				t.Fatalf("master: %d %s", r.code, r.body)
			}
			master, err := playlist.ParseMaster(bytes.NewReader(r.body))
			if err != nil {
				t.Fatal(err)
			}
			if len(master.IFrameVariants) != 2 {
				t.Fatalf("%d I-frame variants in\n%s", len(master.IFrameVariants), r.body)
			}
			dir := t.TempDir()
			keyCache := map[string][]byte{}
			for _, iv := range master.IFrameVariants {
				iv.URI = resolve(t, base, iv.URI)
				if !strings.HasPrefix(iv.URI, e.ts.URL+"/v1/videos/"+video+"/") || !strings.Contains(iv.URI, "-iframes/index.m3u8?") {
					t.Fatalf("I-frame variant URI %q not rewritten to the gateway", iv.URI)
				}
				if iv.Codecs == "" || strings.Contains(iv.Codecs, "mp4a") || iv.Width == 0 || iv.Bandwidth <= 0 {
					t.Fatalf("I-frame variant %+v", iv)
				}
				// Gated like a rendition: without the token, refused.
				u, _ := url.Parse(iv.URI)
				bare := *u
				bare.RawQuery = ""
				if r := e.get(bare.String()); r.code != 401 {
					t.Fatalf("I-frame playlist without a token: %d", r.code)
				}
				iframes := e.fetchMedia(t, iv.URI)
				if !iframes.IFramesOnly {
					t.Fatalf("%s: no EXT-X-I-FRAMES-ONLY", iv.URI)
				}
				// The normal rendition it was cut from.
				normal := e.fetchMedia(t, strings.Replace(iv.URI, "-iframes/index.m3u8", "/index.m3u8", 1))
				if len(iframes.Segments) != len(normal.Segments) || len(iframes.Segments) < 3 {
					t.Fatalf("%d I-frame segments, %d segments", len(iframes.Segments), len(normal.Segments))
				}
				keysSeen := map[string]bool{}
				for i, s := range iframes.Segments {
					if s.Duration != normal.Segments[i].Duration {
						t.Errorf("I-frame segment %d lasts %v, its segment %v", i, s.Duration, normal.Segments[i].Duration)
					}
					if s.ByteRange != nil {
						t.Fatalf("I-frame segment %d is a byte range", i)
					}
					keysSeen[s.Key.URI] = true
					f := filepath.Join(dir, strconv.Itoa(i)+"-"+filepath.Base(filepath.Dir(u.Path))+".ts")
					e.decryptTo(t, s, keyCache, f)
					got := probeFrames(t, f)
					if len(got) != 1 || got[0].Key != 1 {
						t.Fatalf("I-frame segment %d (%s) decodes to %+v, want one keyframe", i, s.URI, got)
					}
					nf := f + ".normal.ts"
					e.decryptTo(t, normal.Segments[i], keyCache, nf)
					want := probeFrames(t, nf)
					if len(want) == 0 || math.Abs(want[0].pts()-got[0].pts()) > 0.001 || want[0].Key != 1 {
						t.Fatalf("I-frame segment %d at %v, its segment starts with %+v", i, got[0].PTS, want)
					}
				}
				// One key per 1 s period: the I-frame segments follow the
				// key changes like their segments.
				if len(keysSeen) < 3 {
					t.Errorf("I-frame segments name %d keys, want one per period", len(keysSeen))
				}
			}
		})
	}
}

// fetchMedia gets a media playlist through the gateway, with its segment
// and key URIs resolved against the playlist's URL as a player would.
func (e *env) fetchMedia(t *testing.T, uri string) *playlist.ParsedMedia {
	t.Helper()
	r := e.get(uri)
	if r.code != 200 {
		t.Fatalf("%s: %d %s", redactToken(uri), r.code, r.body)
	}
	m, err := playlist.ParseMedia(bytes.NewReader(r.body))
	if err != nil {
		t.Fatal(err)
	}
	base, err := url.Parse(uri)
	if err != nil {
		t.Fatal(err)
	}
	for i := range m.Segments {
		s := &m.Segments[i]
		s.URI = resolve(t, base, s.URI)
		if s.Key != nil {
			k := *s.Key
			k.URI = resolve(t, base, k.URI)
			s.Key = &k
		}
	}
	return m
}

func resolve(t *testing.T, base *url.URL, ref string) string {
	t.Helper()
	u, err := url.Parse(ref)
	if err != nil {
		t.Fatal(err)
	}
	return base.ResolveReference(u).String()
}

// decryptTo fetches a segment and its key through the URIs the gateway
// wrote and writes the plaintext to file.
func (e *env) decryptTo(t *testing.T, s playlist.ParsedSegment, keyCache map[string][]byte, file string) {
	t.Helper()
	if s.Key == nil || s.Key.Method != "AES-128" || !strings.HasPrefix(s.Key.URI, e.ts.URL+"/v1/keys/") {
		t.Fatalf("segment %s key %+v", s.URI, s.Key)
	}
	key, ok := keyCache[s.Key.URI]
	if !ok {
		r := e.get(s.Key.URI)
		if r.code != 200 || len(r.body) != 16 {
			t.Fatalf("key: %d, %d bytes", r.code, len(r.body))
		}
		key, keyCache[s.Key.URI] = r.body, r.body
	}
	iv, err := hex.DecodeString(strings.TrimPrefix(s.Key.IV, "0x"))
	if err != nil {
		t.Fatal(err)
	}
	r := e.get(s.URI)
	if r.code != 200 {
		t.Fatalf("segment %s: %d", redactToken(s.URI), r.code)
	}
	dec, err := segcrypt.NewDecryptReader(bytes.NewReader(r.body), key, iv)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := io.ReadAll(dec)
	if err != nil {
		t.Fatalf("segment %s does not decrypt: %v", s.URI, err)
	}
	if err := os.WriteFile(file, plain, 0o600); err != nil {
		t.Fatal(err)
	}
}

type probedFrame struct {
	PTS string `json:"pts_time"`
	Key int    `json:"key_frame"`
}

func (f probedFrame) pts() float64 {
	v, _ := strconv.ParseFloat(f.PTS, 64)
	return v
}

// probeFrames decodes every video frame of a TS file (tests only).
func probeFrames(t *testing.T, file string) []probedFrame {
	t.Helper()
	_, fp := testenv.FFmpeg(t)
	out, err := exec.Command(fp, "-hide_banner", "-v", "error", "-select_streams", "v:0",
		"-show_entries", "frame=pts_time,key_frame", "-of", "json", file).Output()
	if err != nil {
		t.Fatalf("ffprobe %s: %v", file, err)
	}
	var r struct {
		Frames []probedFrame `json:"frames"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatal(err)
	}
	return r.Frames
}
