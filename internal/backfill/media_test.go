package backfill

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hlsvault/hlsvault/internal/catalog"
	"github.com/hlsvault/hlsvault/internal/playlist"
	"github.com/hlsvault/hlsvault/internal/storage"
	"github.com/hlsvault/hlsvault/internal/testenv/hlscheck"
	"github.com/hlsvault/hlsvault/internal/transcode"
)

// Legacy titles for what the re-encryption reads from the media (media.go,
// iframes.go, playlists.go).
const (
	// titleTrick is titleTSMaster's media with a master declaring a CC1
	// closed-captions group and legacy byte-range I-frame playlists.
	titleTrick = "ts-trick"
	// titleCaptions is a TS title whose H.264 carries A/53 (GA94) caption
	// SEI, with a master that declares no captions.
	titleCaptions = "ts-captions"
	// titleOpenGOP is one TS file with a single IDR, cut by byte ranges at
	// packet boundaries: its second and third segments start mid-GOP.
	titleOpenGOP = "ts-open-gop"
)

// a53SEI is an H.264 SEI NAL unit (with its start code) holding one
// user_data_registered_itu_t_t35 message: ATSC A/53 cc_data with a
// CEA-608 field 1 pair ("Hi" with odd parity) and a null field 2 pair.
var a53SEI = []byte{0, 0, 0, 1, 0x06, 0x04, 17,
	0xb5, 0x00, 0x31, 'G', 'A', '9', '4', 0x03, 0xc2, 0xff,
	0xfc, 0xc8, 0xe9, 0xfd, 0x80, 0x80, 0xff, 0x80}

// withCaptions inserts a53SEI before every slice of an Annex B stream
// (x264 writes one slice per picture).
func withCaptions(es []byte) []byte {
	var out []byte
	last := 0
	for i := 0; i+3 < len(es); i++ {
		if es[i] != 0 || es[i+1] != 0 || es[i+2] != 1 {
			continue
		}
		if typ := es[i+3] & 0x1f; typ == 1 || typ == 5 {
			start := i
			if start > 0 && es[start-1] == 0 {
				start--
			}
			out = append(out, es[last:start]...)
			out = append(out, a53SEI...)
			last = start
		}
		i += 2
	}
	return append(out, es[last:]...)
}

// generateMediaTitles writes titleTrick (from titleTSMaster, already
// generated under out) and titleCaptions.
func generateMediaTitles(ffmpeg, work, out, src string) error {
	o := func(parts ...string) string { return filepath.Join(append([]string{out}, parts...)...) }
	write := func(name string, b []byte) error {
		if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
			return err
		}
		return os.WriteFile(name, b, 0o644)
	}
	// titleTrick: the same renditions, each with a legacy I-frame
	// playlist of byte ranges into its segments (the first I-frame's
	// packets, as Apple's segmenter writes them), and a CC1 group.
	master, err := os.ReadFile(o(titleTSMaster, "master.m3u8"))
	if err != nil {
		return err
	}
	var iframes []string
	for _, r := range []string{"0", "1"} {
		segs, _ := filepath.Glob(o(titleTSMaster, r, "seg_*.ts"))
		var pl strings.Builder
		pl.WriteString("#EXTM3U\n#EXT-X-VERSION:4\n#EXT-X-TARGETDURATION:1\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-I-FRAMES-ONLY\n")
		for _, f := range append([]string{"index.m3u8"}, relNames(segs)...) {
			b, err := os.ReadFile(o(titleTSMaster, r, f))
			if err != nil {
				return err
			}
			if err := write(o(titleTrick, r, f), b); err != nil {
				return err
			}
			if f == "index.m3u8" {
				continue
			}
			cut, err := transcode.FirstIFrame(bytes.NewReader(b))
			if err != nil {
				return fmt.Errorf("%s/%s: %w", r, f, err)
			}
			fmt.Fprintf(&pl, "#EXTINF:1.000000,\n#EXT-X-BYTERANGE:%d@0\n%s\n", len(cut), f)
		}
		pl.WriteString("#EXT-X-ENDLIST\n")
		if err := write(o(titleTrick, r, "iframes.m3u8"), []byte(pl.String())); err != nil {
			return err
		}
		iframes = append(iframes, fmt.Sprintf("#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=90000,URI=\"%s/iframes.m3u8\"\n", r))
	}
	m := strings.Replace(string(master), "#EXT-X-STREAM-INF:", "#EXT-X-STREAM-INF:CLOSED-CAPTIONS=\"captions\",", -1)
	m = strings.Replace(m, "#EXT-X-VERSION:3\n", "#EXT-X-VERSION:3\n"+
		"#EXT-X-MEDIA:TYPE=CLOSED-CAPTIONS,GROUP-ID=\"captions\",NAME=\"English\",LANGUAGE=\"en\",DEFAULT=YES,AUTOSELECT=YES,INSTREAM-ID=\"CC1\"\n", 1)
	if err := write(o(titleTrick, "master.m3u8"), []byte(m+strings.Join(iframes, ""))); err != nil {
		return err
	}

	// titleCaptions: x264's stream with caption SEI before every slice,
	// muxed with the source's audio.
	raw := filepath.Join(work, "captions.h264")
	if err := ffmpegRun(ffmpeg, "-i", src, "-an", "-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-sc_threshold", "0",
		"-f", "h264", raw); err != nil {
		return err
	}
	es, err := os.ReadFile(raw)
	if err != nil {
		return err
	}
	if err := os.WriteFile(raw, withCaptions(es), 0o644); err != nil {
		return err
	}
	if err := os.MkdirAll(o(titleCaptions, "v"), 0o755); err != nil {
		return err
	}
	if err := ffmpegRun(ffmpeg, "-framerate", "25", "-f", "h264", "-i", raw, "-i", src, "-map", "0:v", "-map", "1:a", "-c", "copy",
		"-f", "hls", "-hls_time", "1", "-hls_playlist_type", "vod", "-master_pl_name", "master.m3u8",
		"-hls_segment_filename", o(titleCaptions, "v", "seg_%03d.ts"), o(titleCaptions, "v", "index.m3u8")); err != nil {
		return err
	}
	// titleOpenGOP: one GOP of 3 s, three byte ranges.
	gop := filepath.Join(work, "gop.ts")
	if err := ffmpegRun(ffmpeg, "-i", src, "-c:v", "libx264", "-preset", "ultrafast", "-g", "250", "-c:a", "copy", "-f", "mpegts", gop); err != nil {
		return err
	}
	b, err := os.ReadFile(gop)
	if err != nil {
		return err
	}
	third := len(b) / 188 / 3 * 188
	if err := write(o(titleOpenGOP, "all.ts"), b); err != nil {
		return err
	}
	if err := write(o(titleOpenGOP, "index.m3u8"), fmt.Appendf(nil, "#EXTM3U\n#EXT-X-VERSION:4\n#EXT-X-TARGETDURATION:1\n#EXT-X-PLAYLIST-TYPE:VOD\n"+
		"#EXTINF:1.0,\n#EXT-X-BYTERANGE:%d@0\nall.ts\n#EXTINF:1.0,\n#EXT-X-BYTERANGE:%d@%d\nall.ts\n#EXTINF:1.0,\n#EXT-X-BYTERANGE:%d@%d\nall.ts\n"+
		"#EXT-X-ENDLIST\n", third, third, third, len(b)-2*third, 2*third)); err != nil {
		return err
	}

	// ffmpeg writes the master beside the media playlist: move it up.
	cm, err := os.ReadFile(o(titleCaptions, "v", "master.m3u8"))
	if err != nil {
		return err
	}
	if err := os.Remove(o(titleCaptions, "v", "master.m3u8")); err != nil {
		return err
	}
	return write(o(titleCaptions, "master.m3u8"), bytes.ReplaceAll(cm, []byte("\nindex.m3u8"), []byte("\nv/index.m3u8")))
}

func relNames(paths []string) []string {
	out := make([]string, len(paths))
	for i, p := range paths {
		out[i] = filepath.Base(p)
	}
	return out
}

// TestBackfillCompletesMasters: the re-encryption keeps what the legacy
// masters say and completes what they lack from the media. A legacy
// title with byte-range I-frame playlists and a CC1 closed-captions group
// keeps both (its I-frame playlists become whole, individually encrypted
// I-frame segments that verify decrypts and decodes one by one); CODECS,
// RESOLUTION and FRAME-RATE are read from the SPS and ADTS (or avcC and
// esds) where the master has none; CHANNELS from ADTS; CLOSED-CAPTIONS is
// NONE when the media was read to carry no captions and a CC1 group when
// it carries A/53 captions; EXT-X-INDEPENDENT-SEGMENTS since every
// segment starts with an IDR. Every published playlist passes the strict
// third-party parsers.
func TestBackfillCompletesMasters(t *testing.T) {
	fs, err := storage.NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, fs)
	titles := []string{titleTSMaster, titleTrick, titleCaptions, titleAudioGroup, titleFMP4, titleOpenGOP}
	uploadLegacy(t, fs, "legacy/", titles...)
	h.startWorker()
	run := h.start(StartOptions{IDs: titles})
	if st := h.waitRun(run.Run.ID, 3*time.Minute, catalog.RunDone); st.Done != len(titles) {
		t.Fatalf("run: %+v", st)
	}
	hlscheck.StrictAll(t, hlscheck.Stored(t, fs, "hls/"))
	masters := map[string]string{}
	defer func() {
		if t.Failed() {
			for v, m := range masters {
				t.Logf("%s:\n%s", v, m)
			}
		}
	}()

	for _, video := range titles {
		top := "legacy/" + video + "/master.m3u8"
		if video == titleFMP4 || video == titleOpenGOP {
			top = "legacy/" + video + "/index.m3u8"
		}
		cur := h.checkConverted(video, top) // verify: every rendition and I-frame playlist decodes
		masters[video] = string(readObject(t, fs, cur.Master))
	}
	stream := regexp.MustCompile(`(?m)^#EXT-X-STREAM-INF:.*$`)
	has := func(video string, want ...string) {
		t.Helper()
		for _, w := range want {
			if !strings.Contains(masters[video], w) {
				t.Errorf("%s: master lacks %q:\n%s", video, w, masters[video])
			}
		}
	}
	every := func(video string, want ...*regexp.Regexp) {
		t.Helper()
		lines := stream.FindAllString(masters[video], -1)
		if len(lines) == 0 {
			t.Errorf("%s: no variants:\n%s", video, masters[video])
		}
		for _, l := range lines {
			if strings.Contains(l, `CODECS="mp4a.40.2"`) {
				continue // an audio-only variant (ffmpeg lists the audio group's rendition as one)
			}
			for _, w := range want {
				if !w.MatchString(l) {
					t.Errorf("%s: variant %q does not match %s", video, l, w)
				}
			}
		}
	}
	codecs := regexp.MustCompile(`CODECS="avc1\.[0-9a-f]{6},mp4a\.40\.2"`)
	size := regexp.MustCompile(`RESOLUTION=(320x240|160x120)`)
	rate := regexp.MustCompile(`FRAME-RATE=25\.000`)
	none := regexp.MustCompile(`CLOSED-CAPTIONS=NONE`)

	// The legacy ffmpeg master has CODECS and RESOLUTION, no FRAME-RATE,
	// no captions declared, no I-frame playlists: all completed.
	every(titleTSMaster, codecs, size, rate, none)
	has(titleTSMaster, "#EXT-X-INDEPENDENT-SEGMENTS", `#EXT-X-I-FRAME-STREAM-INF:`, `RESOLUTION=320x240,URI="0-iframes/index.m3u8"`,
		`URI="1-iframes/index.m3u8"`)

	// Carried: the CC1 group with its attributes, and trick play for both
	// renditions, whose legacy I-frame playlists pointed into them.
	every(titleTrick, codecs, size, rate, regexp.MustCompile(`CLOSED-CAPTIONS="captions"`))
	has(titleTrick, `#EXT-X-MEDIA:TYPE=CLOSED-CAPTIONS,GROUP-ID="captions",NAME="English",DEFAULT=YES,AUTOSELECT=YES,LANGUAGE="en",INSTREAM-ID="CC1"`)
	if n := strings.Count(masters[titleTrick], "#EXT-X-I-FRAME-STREAM-INF:"); n != 2 || strings.Contains(masters[titleTrick], "iframes.m3u8") {
		t.Errorf("%s: %d I-frame variants (want 2 of ours, no legacy byte-range playlist):\n%s", titleTrick, n, masters[titleTrick])
	}
	// verify decrypted each I-frame segment alone and decoded one
	// keyframe from each, at the time its playlist gives.
	rep, err := h.verifier().Verify(context.Background(), titleTrick)
	if err != nil {
		t.Fatal(err)
	}
	decoded := map[string]int64{}
	for _, rr := range rep.Renditions {
		decoded[rr.Name] = rr.DecodedFrames
	}
	if decoded["0-iframes"] != 3 || decoded["1-iframes"] != 3 || !rep.OK() {
		t.Errorf("%s: verify decoded I-frames %v: %+v", titleTrick, decoded, rep)
	}
	pm, err := playlist.ParseMaster(strings.NewReader(masters[titleTrick]))
	if err != nil {
		t.Fatal(err)
	}
	for _, iv := range pm.IFrameVariants {
		b := readObject(t, fs, "hls/"+titleTrick+"/v1/"+iv.URI)
		if m, err := playlist.ParseMedia(bytes.NewReader(b)); err != nil || !m.IFramesOnly || len(m.Segments) != 3 || m.Segments[0].ByteRange != nil {
			t.Errorf("%s: I-frame playlist %s: %v\n%s", titleTrick, iv.URI, err, b)
		}
		if !strings.HasPrefix(iv.Codecs, "avc1.") || iv.Width == 0 {
			t.Errorf("%s: I-frame variant %+v lacks CODECS or RESOLUTION", titleTrick, iv)
		}
	}

	// Captions in the media, none declared: a CC1 group is declared.
	every(titleCaptions, codecs, rate, regexp.MustCompile(`RESOLUTION=320x240`), regexp.MustCompile(`CLOSED-CAPTIONS="cc"`))
	has(titleCaptions, `#EXT-X-MEDIA:TYPE=CLOSED-CAPTIONS,GROUP-ID="cc",NAME="CC1",DEFAULT=NO,AUTOSELECT=YES,INSTREAM-ID="CC1"`)

	// An audio group: the video variant (no CODECS in ffmpeg's master)
	// names its own and the group's codec; the audio rendition its
	// channels (the source's sine is mono).
	every(titleAudioGroup, codecs, rate, none)
	has(titleAudioGroup, `CHANNELS="1"`, `LANGUAGE="en"`)

	// A single fMP4 playlist: the synthesized master reads avcC and esds.
	every(titleFMP4, codecs, regexp.MustCompile(`RESOLUTION=320x240`), rate, none)
	has(titleFMP4, "#EXT-X-INDEPENDENT-SEGMENTS")
	// Segments that do not all start with an IDR: neither
	// EXT-X-INDEPENDENT-SEGMENTS (master or media) nor trick play, though
	// the rest is read as for any title.
	every(titleOpenGOP, codecs, rate, none, regexp.MustCompile(`RESOLUTION=320x240`))
	media := string(readObject(t, fs, "hls/"+titleOpenGOP+"/v1/main/index.m3u8"))
	if strings.Contains(masters[titleOpenGOP]+media, "INDEPENDENT") || strings.Contains(masters[titleOpenGOP], "I-FRAME") {
		t.Errorf("%s: independent or trick play though segments start mid-GOP:\n%s\n%s", titleOpenGOP, masters[titleOpenGOP], media)
	}
	if strings.Contains(masters[titleFMP4], "I-FRAME") {
		t.Errorf("%s: fMP4 has no I-frame cut, yet:\n%s", titleFMP4, masters[titleFMP4])
	}
}
