package backfill

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hlsvault/hlsvault/internal/catalog"
	"github.com/hlsvault/hlsvault/internal/storage"
	"github.com/hlsvault/hlsvault/internal/testenv"
	"github.com/hlsvault/hlsvault/internal/testenv/fixtures"
	"github.com/hlsvault/hlsvault/internal/testenv/gatewayenv"
	"github.com/hlsvault/hlsvault/internal/testenv/hlscheck"
	"github.com/hlsvault/hlsvault/internal/testenv/player"
)

// TestBackfilledTitlesPlay re-encrypts a legacy fMP4 title (AES-128 fMP4:
// an encrypted init section, which Chromium's own HLS cannot play), a
// legacy title with an alternate audio group and one with legacy I-frame
// playlists and a CC1 group, then, through the real gateway: the rewritten
// master, media and I-frame playlists pass third-party strict parsing, and
// all play in hls.js and Shaka Player in headless Chromium; the
// audio-group title lists its English track, which the players switch to.
// hls.js plays the audio-group title because the re-encryption writes the
// CODECS the legacy master lacked (without them it failed with a fatal
// bufferAppendError after a few frames).
func TestBackfilledTitlesPlay(t *testing.T) {
	fs := fixtures.FS(t)
	h := newHarness(t, fs)
	uploadLegacy(t, fs, "legacy/", titleFMP4, titleAudioGroup, titleTrick)
	h.startWorker()
	run := h.start(StartOptions{IDs: []string{titleFMP4, titleAudioGroup, titleTrick}})
	if st := h.waitRun(run.Run.ID, 2*time.Minute, catalog.RunDone); st.Done != 3 {
		t.Fatalf("run: %+v", st)
	}
	gw := gatewayenv.Start(t, h.db, fs, h.keyring, nil)

	t.Run("fmp4", func(t *testing.T) {
		hlscheck.StrictAll(t, hlscheck.Crawl(t, gw.Client, gw.MasterURL(titleFMP4)))
		for p, r := range player.Play(t, gw.MasterURL(titleFMP4), player.Options{}) {
			if r.Width != 320 || r.Height != 240 {
				t.Errorf("%s: video %dx%d, want the legacy 320x240", p, r.Width, r.Height)
			}
		}
	})
	t.Run("audio-group", func(t *testing.T) {
		master := gw.MasterURL(titleAudioGroup)
		pls := hlscheck.Crawl(t, gw.Client, master)
		if len(pls) != 4 {
			t.Errorf("crawled %d playlists, want the master, the video, the audio rendition and the video's I-frames", len(pls))
		}
		hlscheck.StrictAll(t, pls)
		for p, r := range player.Play(t, gw.MasterURL(titleAudioGroup), player.Options{Audio: "en"}) {
			if len(r.AudioTracks) != 1 || r.AudioTracks[0].Lang != "en" {
				t.Errorf("%s: audio tracks %+v, want the legacy English one", p, r.AudioTracks)
			}
		}
	})
	t.Run("trick-play-and-captions", func(t *testing.T) {
		pls := hlscheck.Crawl(t, gw.Client, gw.MasterURL(titleTrick))
		if len(pls) != 5 {
			t.Errorf("crawled %d playlists, want the master, two renditions and their two I-frame playlists", len(pls))
		}
		hlscheck.StrictAll(t, pls)
		for p, r := range player.Play(t, gw.MasterURL(titleTrick), player.Options{}) {
			if r.Width == 0 {
				t.Errorf("%s: no video: %+v", p, r)
			}
		}
	})
}

// makeMultiLanguageTitle writes a legacy title as ffmpeg's HLS muxer makes
// it from a source with two audio languages (an AUDIO group of English and
// French AAC renditions) and, with subs, English subtitles (a SUBTITLES
// group of segmented WebVTT), and stores it under prefix+video+"/".
// Without subs, the master also lists each audio rendition as an
// audio-only variant (as ffmpeg's own agroup output and many legacy masters
// do), see TestBackfilledMultiLanguageTitlePlays.
func makeMultiLanguageTitle(t *testing.T, store storage.Store, prefix, video string, subs bool) {
	t.Helper()
	ffmpeg, _ := testenv.FFmpeg(t)
	dir := t.TempDir()
	srt := filepath.Join(dir, "subs.srt")
	if err := os.WriteFile(srt, []byte("1\n00:00:00,000 --> 00:00:02,900\nHello from the subtitles\n\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	args := []string{"-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=3",
		"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=3",
		"-f", "lavfi", "-i", "sine=frequency=880:sample_rate=48000:duration=3"}
	streams := "a:0,agroup:aud,language:en,name:aud_en,default:yes a:1,agroup:aud,language:fr,name:aud_fr v:0,agroup:aud,name:video"
	maps := []string{"-map", "0:v", "-map", "1:a", "-map", "2:a"}
	if subs {
		args = append(args, "-i", srt)
		maps = append(maps, "-map", "3:s", "-c:s", "webvtt", "-metadata:s:s:0", "language=eng")
		streams = strings.Replace(streams, "name:video", "s:0,sgroup:subs,name:video", 1)
	}
	args = append(append(args, maps...),
		"-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-sc_threshold", "0", "-c:a", "aac", "-b:a", "64k",
		"-f", "hls", "-hls_time", "1", "-hls_playlist_type", "vod", "-var_stream_map", streams,
		"-master_pl_name", "master.m3u8", "-hls_segment_filename", filepath.Join(out, "%v", "seg_%03d.ts"),
		filepath.Join(out, "%v", "index.m3u8"))
	if err := ffmpegRun(ffmpeg, args...); err != nil {
		t.Fatal(err)
	}
	m := filepath.Join(out, "master.m3u8")
	b, err := os.ReadFile(m)
	if err != nil {
		t.Fatal(err)
	}
	if !subs {
		for _, a := range []string{"aud_en", "aud_fr"} {
			b = append(b, "#EXT-X-STREAM-INF:BANDWIDTH=70000,CODECS=\"mp4a.40.2\",AUDIO=\"group_aud\"\n"+a+"/index.m3u8\n"...)
		}
	} else {
		// ffmpeg 5.1 writes no LANGUAGE on a subtitle rendition; the
		// legacy packagers this stands for did.
		b = bytes.Replace(b, []byte(`TYPE=SUBTITLES,GROUP-ID="subs",NAME="subtitle_2",DEFAULT=NO,`),
			[]byte(`TYPE=SUBTITLES,GROUP-ID="subs",NAME="English",DEFAULT=NO,AUTOSELECT=YES,LANGUAGE="en",`), 1)
	}
	if err := os.WriteFile(m, b, 0o644); err != nil {
		t.Fatal(err)
	}
	err = filepath.WalkDir(out, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(out, p)
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return store.Put(context.Background(), prefix+video+"/"+filepath.ToSlash(rel), bytes.NewReader(b), int64(len(b)), storage.PutOptions{})
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestBackfilledMultiLanguageTitlePlays: a legacy title with English and
// French audio and English subtitles, re-encrypted, passes third-party
// strict parsing through the gateway, and hls.js and Shaka Player both list
// the two languages, switch from English to French while playing, and show
// an English cue. The master keeps the audio renditions' LANGUAGE, NAME,
// DEFAULT and AUTOSELECT and gains their CHANNELS.
func TestBackfilledMultiLanguageTitlePlays(t *testing.T) {
	fs := fixtures.FS(t)
	h := newHarness(t, fs)
	const video = "multi-lang"
	makeMultiLanguageTitle(t, fs, "legacy/", video, true)
	h.startWorker()
	run := h.start(StartOptions{IDs: []string{video}})
	if st := h.waitRun(run.Run.ID, 2*time.Minute, catalog.RunDone); st.Done != 1 {
		t.Fatalf("run: %+v", st)
	}
	gw := gatewayenv.Start(t, h.db, fs, h.keyring, nil)
	pls := hlscheck.Crawl(t, gw.Client, gw.MasterURL(video))
	if len(pls) != 6 {
		t.Errorf("crawled %d playlists, want the master, video, en, fr, the subtitles and the video's I-frames", len(pls))
	}
	hlscheck.StrictAll(t, pls)
	cur, err := h.db.CurrentVersion(context.Background(), video)
	if err != nil {
		t.Fatal(err)
	}
	master := string(readObject(t, fs, cur.Master))
	for _, want := range []string{`NAME="audio_0",DEFAULT=YES,LANGUAGE="en",CHANNELS="1",URI=`, `NAME="audio_1",DEFAULT=NO,LANGUAGE="fr",CHANNELS="1",URI=`,
		`TYPE=SUBTITLES,GROUP-ID="subs",NAME="English",DEFAULT=NO,AUTOSELECT=YES,LANGUAGE="en",URI=`, `SUBTITLES="subs"`} {
		if !strings.Contains(master, want) {
			t.Errorf("master lacks %s:\n%s", want, master)
		}
	}
	for p, r := range player.Play(t, gw.MasterURL(video), player.Options{Audio: "fr", Text: "en"}) {
		var langs []string
		for _, a := range r.AudioTracks {
			langs = append(langs, a.Lang)
		}
		if !slices.Contains(langs, "en") || !slices.Contains(langs, "fr") {
			t.Errorf("%s: audio tracks %+v, want en and fr", p, r.AudioTracks)
		}
		if r.ActiveAudio != "fr" {
			t.Errorf("%s: active audio %q after the switch, want fr", p, r.ActiveAudio)
		}
	}
}
