package backfill

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/hlsvault/hlsvault/internal/keys"
	"github.com/hlsvault/hlsvault/internal/playlist"
	"github.com/hlsvault/hlsvault/internal/segcrypt"
	"github.com/hlsvault/hlsvault/internal/storage"
	"github.com/hlsvault/hlsvault/internal/testenv"
)

// The legacy catalogue the tests convert, generated once per test binary
// with ffmpeg from one 3 s 320x240 source (keyframe every second). Each
// directory is one title, laid out as a legacy packager left it.
const (
	titleTSMaster      = "ts-master"      // TS, master with 2 renditions (var_stream_map)
	titleFMP4          = "fmp4-single"    // fMP4, single media playlist with EXT-X-MAP
	titleTSByteRange   = "ts-byterange"   // TS, single file, EXT-X-BYTERANGE
	titleFMP4ByteRange = "fmp4-byterange" // fMP4, single file, BYTERANGE and EXT-X-MAP BYTERANGE
	titleAudioGroup    = "audio-group"    // master with an alternate audio EXT-X-MEDIA group
	titleDiscontinuity = "discontinuity"  // TS, EXT-X-DISCONTINUITY, absolute paths and URLs
	titleTwoMaps       = "fmp4-two-maps"  // fMP4, a discontinuity with a second EXT-X-MAP
	titleMissing       = "broken-missing" // a segment is missing
	titleEmpty         = "broken-empty"   // a segment is a zero-length object
	titleEncrypted     = "encrypted"      // already has an EXT-X-KEY: skipped
)

// convertible lists the titles a backfill converts.
var convertible = []string{titleTSMaster, titleFMP4, titleTSByteRange, titleFMP4ByteRange, titleAudioGroup, titleDiscontinuity, titleTwoMaps,
	titleTrick, titleCaptions, titleOpenGOP}

// urlMap maps the absolute URLs of titleDiscontinuity's third segment.
var urlMap = map[string]string{"https://media.example.com/catalogue/": "legacy/"}

var (
	legacyOnce sync.Once
	legacyDir  string
	legacyErr  error
	tempRoot   string
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "hlsvault-backfill-test-")
	if err != nil {
		panic(err)
	}
	tempRoot = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func ffmpegRun(ffmpeg string, args ...string) error {
	cmd := exec.Command(ffmpeg, append([]string{"-hide_banner", "-nostdin", "-loglevel", "error", "-y"}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("ffmpeg %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

// legacyCatalogue returns the directory holding the generated titles.
func legacyCatalogue(t testing.TB) string {
	t.Helper()
	ffmpeg, _ := testenv.FFmpeg(t)
	legacyOnce.Do(func() {
		legacyDir = filepath.Join(tempRoot, "legacy")
		legacyErr = generateLegacy(ffmpeg, filepath.Join(tempRoot, "work"), legacyDir)
	})
	if legacyErr != nil {
		t.Fatal(legacyErr)
	}
	return legacyDir
}

func generateLegacy(ffmpeg, work, out string) error {
	for _, d := range []string{work, out} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	src := filepath.Join(work, "src.mp4")
	if err := ffmpegRun(ffmpeg, "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=3",
		"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=3",
		"-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", "25", "-keyint_min", "25", "-sc_threshold", "0",
		"-c:a", "aac", "-b:a", "64k", src); err != nil {
		return err
	}
	hls := []string{"-f", "hls", "-hls_time", "1", "-hls_playlist_type", "vod"}
	o := func(parts ...string) string { return filepath.Join(append([]string{out}, parts...)...) }
	for _, d := range []string{titleTSMaster, titleFMP4, titleTSByteRange, titleFMP4ByteRange, titleAudioGroup} {
		if err := os.MkdirAll(o(d), 0o755); err != nil {
			return err
		}
	}
	steps := [][]string{
		append(append([]string{"-i", src, "-filter_complex", "[0:v]split=2[a][b];[b]scale=160:120[b2]",
			"-map", "[a]", "-map", "0:a", "-map", "[b2]", "-map", "0:a",
			"-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-sc_threshold", "0", "-c:a", "copy"}, hls...),
			"-var_stream_map", "v:0,a:0 v:1,a:1", "-master_pl_name", "master.m3u8",
			"-hls_segment_filename", o(titleTSMaster, "%v", "seg_%03d.ts"), o(titleTSMaster, "%v", "index.m3u8")),
		append(append([]string{"-i", src, "-c", "copy"}, hls...), "-hls_segment_type", "fmp4", "-hls_fmp4_init_filename", "init.mp4",
			"-hls_segment_filename", o(titleFMP4, "seg_%03d.m4s"), o(titleFMP4, "index.m3u8")),
		append(append([]string{"-i", src, "-c", "copy"}, hls...), "-hls_flags", "single_file", o(titleTSByteRange, "index.m3u8")),
		append(append([]string{"-i", src, "-c", "copy"}, hls...), "-hls_segment_type", "fmp4", "-hls_flags", "single_file",
			o(titleFMP4ByteRange, "index.m3u8")),
		append(append([]string{"-i", src, "-map", "0:v", "-map", "0:a", "-c", "copy"}, hls...),
			"-var_stream_map", "a:0,agroup:aud,language:en,name:audio v:0,agroup:aud,name:video", "-master_pl_name", "master.m3u8",
			"-hls_segment_filename", o(titleAudioGroup, "%v", "seg_%03d.ts"), o(titleAudioGroup, "%v", "index.m3u8")),
		append(append([]string{"-i", src, "-c", "copy"}, hls...),
			"-hls_segment_filename", filepath.Join(work, "plain", "seg_%03d.ts"), filepath.Join(work, "plain", "index.m3u8")),
	}
	if err := os.MkdirAll(filepath.Join(work, "plain"), 0o755); err != nil {
		return err
	}
	for _, args := range steps {
		if err := ffmpegRun(ffmpeg, args...); err != nil {
			return err
		}
	}
	if err := generateMediaTitles(ffmpeg, work, out, src); err != nil {
		return err
	}
	plain := func(n int) []byte {
		b, _ := os.ReadFile(filepath.Join(work, "plain", fmt.Sprintf("seg_%03d.ts", n)))
		return b
	}
	plainPlaylist, err := os.ReadFile(filepath.Join(work, "plain", "index.m3u8"))
	if err != nil {
		return err
	}
	write := func(name string, b []byte) error {
		if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
			return err
		}
		return os.WriteFile(name, b, 0o644)
	}
	var errs []error
	// A discontinuity, and URIs in every absolute form.
	errs = append(errs,
		write(o(titleDiscontinuity, "a", "seg_000.ts"), plain(0)),
		write(o(titleDiscontinuity, "a", "seg_001.ts"), plain(1)),
		write(o(titleDiscontinuity, "a", "seg_002.ts"), plain(2)),
		write(o(titleDiscontinuity, "index.m3u8"), []byte("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n#EXT-X-PLAYLIST-TYPE:VOD\n"+
			"#EXTINF:1.000000,\n/legacy/discontinuity/a/seg_000.ts\n"+
			"#EXTINF:1.000000,\nhttps://cdn.example.com/legacy/discontinuity/a/seg_001.ts?token=abc\n"+
			"#EXT-X-DISCONTINUITY\n#EXTINF:1.000000,\nhttps://media.example.com/catalogue/discontinuity/a/seg_002.ts\n#EXT-X-ENDLIST\n")))
	// fMP4 with the init section restated after a discontinuity.
	for _, f := range []string{"init.mp4", "seg_000.m4s", "seg_001.m4s", "seg_002.m4s"} {
		b, err := os.ReadFile(o(titleFMP4, f))
		errs = append(errs, err, write(o(titleTwoMaps, f), b))
	}
	errs = append(errs, write(o(titleTwoMaps, "index.m3u8"), []byte("#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:1\n"+
		"#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-MAP:URI=\"init.mp4\"\n#EXTINF:1.000000,\nseg_000.m4s\n#EXTINF:1.000000,\nseg_001.m4s\n"+
		"#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI=\"init.mp4\"\n#EXTINF:1.000000,\nseg_002.m4s\n#EXT-X-ENDLIST\n")))
	// Broken titles, and one that is encrypted already.
	for _, d := range []string{titleMissing, titleEmpty, titleEncrypted} {
		errs = append(errs, write(o(d, "seg_000.ts"), plain(0)), write(o(d, "seg_002.ts"), plain(2)))
	}
	errs = append(errs,
		write(o(titleMissing, "index.m3u8"), plainPlaylist),
		write(o(titleEmpty, "index.m3u8"), plainPlaylist),
		write(o(titleEmpty, "seg_001.ts"), nil),
		write(o(titleEncrypted, "seg_001.ts"), plain(1)),
		write(o(titleEncrypted, "index.m3u8"), bytes.Replace(plainPlaylist, []byte("#EXTINF"),
			[]byte("#EXT-X-KEY:METHOD=AES-128,URI=\"https://keys.example.com/k\"\n#EXTINF"), 1)),
		// Not titles: an object directly under the prefix, and a directory
		// that is not a valid video id.
		write(filepath.Join(out, "README.txt"), []byte("legacy catalogue\n")),
		write(filepath.Join(out, "bad.id", "index.m3u8"), plainPlaylist),
	)
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// uploadLegacy copies the generated titles (all of them, or only the
// given ones, under new names when given as "video=title") into store under
// prefix.
func uploadLegacy(t testing.TB, store storage.Store, prefix string, only ...string) {
	t.Helper()
	root := legacyCatalogue(t)
	rename := map[string][]string{} // title dir → video ids
	for _, o := range only {
		video, title, ok := strings.Cut(o, "=")
		if !ok {
			title = video
		}
		rename[title] = append(rename[title], video)
	}
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		put := func(name string, b []byte) error {
			return store.Put(context.Background(), prefix+name, bytes.NewReader(b), int64(len(b)), storage.PutOptions{})
		}
		if len(only) == 0 {
			return put(rel, b)
		}
		title, rest, ok := strings.Cut(rel, "/")
		if !ok {
			return nil
		}
		for _, video := range rename[title] {
			// Absolute URIs name the title's directory.
			c := bytes.ReplaceAll(b, []byte("/"+title+"/"), []byte("/"+video+"/"))
			if err := put(video+"/"+rest, c); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// snapshot hashes every object under prefix.
func snapshot(t testing.TB, store storage.Store, prefix string) map[string]string {
	t.Helper()
	ctx := context.Background()
	out := map[string]string{}
	err := store.List(ctx, prefix, func(o storage.ObjectInfo) error {
		rc, err := store.Get(ctx, o.Name)
		if err != nil {
			return err
		}
		defer rc.Close()
		h := sha256.New()
		n, err := io.Copy(h, rc)
		out[o.Name] = fmt.Sprintf("%d:%x", n, h.Sum(nil))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// mediaHashes lists the SHA-256 of every segment and init section a title
// plays, sorted: read straight from the playlists (resolved here, not by the
// package under test), decrypted when a key is given.
func mediaHashes(t testing.TB, store storage.Store, top string, ck *keys.ContentKey) []string {
	t.Helper()
	return mediaHashesWith(t, store, top, ck != nil, func(*playlist.Key) *keys.ContentKey { return ck })
}

// mediaHashesWith is mediaHashes with the key of each object chosen by its
// EXT-X-KEY (encrypted: every object must have one).
func mediaHashesWith(t testing.TB, store storage.Store, top string, encrypted bool, keyOf func(*playlist.Key) *keys.ContentKey) []string {
	t.Helper()
	ctx := context.Background()
	get := func(name string, br *playlist.ByteRange) []byte {
		t.Helper()
		var (
			rc  io.ReadCloser
			err error
		)
		if br == nil {
			rc, err = store.Get(ctx, name)
		} else {
			rc, err = store.GetRange(ctx, name, br.Offset, br.Length)
		}
		if err != nil {
			t.Fatalf("read %s: %v", name, err)
		}
		defer rc.Close()
		b, err := io.ReadAll(rc)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	resolve := func(base, uri string) string {
		u, err := url.Parse(uri)
		if err != nil {
			t.Fatal(err)
		}
		for from, to := range urlMap {
			if strings.HasPrefix(uri, from) {
				return path.Join(to, strings.TrimPrefix(u.String(), from))
			}
		}
		if u.IsAbs() || strings.HasPrefix(u.Path, "/") {
			return strings.TrimPrefix(u.Path, "/")
		}
		return path.Join(path.Dir(base), u.Path)
	}
	plain := func(b []byte, k *playlist.Key) []byte {
		t.Helper()
		if !encrypted {
			if k != nil {
				t.Fatalf("unexpected key %+v", k)
			}
			return b
		}
		if k == nil || k.Method != "AES-128" {
			t.Fatalf("object not encrypted: %+v", k)
		}
		ck := keyOf(k)
		if ck == nil {
			t.Fatalf("no key for %+v", k)
		}
		iv, err := hex.DecodeString(strings.TrimPrefix(k.IV, "0x"))
		if err != nil || len(iv) != 16 {
			t.Fatalf("IV %q", k.IV)
		}
		dec, err := segcrypt.NewDecryptReader(bytes.NewReader(b), ck.Bytes(), iv)
		if err != nil {
			t.Fatal(err)
		}
		out, err := io.ReadAll(dec)
		if err != nil {
			t.Fatalf("decrypt: %v", err)
		}
		return out
	}
	var media []string
	data := get(top, nil)
	if isMaster, err := playlist.Kind(data); err != nil {
		t.Fatal(err)
	} else if isMaster {
		m, err := playlist.ParseMaster(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range m.Variants {
			media = append(media, resolve(top, v.URI))
		}
		for _, r := range m.Renditions {
			if r.URI != "" {
				media = append(media, resolve(top, r.URI))
			}
		}
	} else {
		media = []string{top}
	}
	slices.Sort(media)
	media = slices.Compact(media)
	var sums []string
	for _, name := range media {
		data := get(name, nil)
		m, err := playlist.ParseMedia(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		maps, err := playlist.MapTags(data)
		if err != nil {
			t.Fatal(err)
		}
		for _, mt := range maps {
			sums = append(sums, fmt.Sprintf("%x", sha256.Sum256(plain(get(resolve(name, mt.Map.URI), mt.Map.ByteRange), mt.Key))))
		}
		for _, s := range m.Segments {
			sums = append(sums, fmt.Sprintf("%x", sha256.Sum256(plain(get(resolve(name, s.URI), s.ByteRange), s.Key))))
		}
	}
	slices.Sort(sums)
	return sums
}
