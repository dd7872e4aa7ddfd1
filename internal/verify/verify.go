// Package verify proves that a video's current version plays: every
// playlist parses, every segment (and every EXT-X-MAP init section) decrypts
// with the stored key of its key period into valid MPEG-TS or fragmented MP4, and ffprobe
// decodes each rendition, alternate audio included, to the expected
// duration, and to the source's duration recorded when the version was
// published (so a title published short of its source is reported).
// Operators run it after every backfill; CI runs it after every job.
package verify

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hlsvault/hlsvault/internal/catalog"
	"github.com/hlsvault/hlsvault/internal/keys"
	"github.com/hlsvault/hlsvault/internal/playlist"
	"github.com/hlsvault/hlsvault/internal/segcrypt"
	"github.com/hlsvault/hlsvault/internal/storage"
	"github.com/hlsvault/hlsvault/internal/transcode"
)

// Report is the outcome of verifying one video.
type Report struct {
	Video      string            `json:"video"`
	Version    int               `json:"version"`
	KeyID      string            `json:"key_id"`  // the first period's
	KeyIDs     []string          `json:"key_ids"` // every period's, in order
	Master     string            `json:"master"`
	Renditions []RenditionReport `json:"renditions"`
	Problems   []string          `json:"problems,omitempty"`
}

// OK reports whether nothing is wrong.
func (r *Report) OK() bool {
	if len(r.Problems) > 0 {
		return false
	}
	for _, rr := range r.Renditions {
		if len(rr.Problems) > 0 {
			return false
		}
	}
	return true
}

// RenditionReport is what was checked for one rendition.
type RenditionReport struct {
	Name             string  `json:"name"`
	Playlist         string  `json:"playlist"`
	Segments         int     `json:"segments"`
	EncryptedBytes   int64   `json:"encrypted_bytes"`
	PlaylistDuration float64 `json:"playlist_duration"`
	DecodedDuration  float64 `json:"decoded_duration"`
	DecodedFrames    int64   `json:"decoded_frames"`
	// Format is "mpegts", "fmp4" or "webvtt"; Stream the kind of stream
	// whose frames were counted ("video" or "audio").
	Format string `json:"format,omitempty"`
	// Cues counts the WebVTT cues of a subtitle rendition (a cue repeated
	// in the segments it spans counts in each).
	Cues   int    `json:"cues,omitempty"`
	Stream string `json:"stream,omitempty"`
	// Codec is ffprobe's name of the decoded stream's codec ("h264",
	// "hevc", "aac"): an HEVC rung reports "hevc".
	Codec    string   `json:"codec,omitempty"`
	Problems []string `json:"problems,omitempty"`
}

// Verifier checks published versions.
type Verifier struct {
	Store   storage.Store
	DB      *catalog.DB
	Keyring *keys.Keyring
	Exec    *transcode.Exec // starts ffprobe (in the decoder sandbox); required
	TempDir string          // default os.TempDir()
}

// Verify checks the current version of videoID. A non-nil error means the
// check could not run; problems found are in the report.
func (v *Verifier) Verify(ctx context.Context, videoID string) (*Report, error) {
	cur, err := v.DB.CurrentVersion(ctx, videoID)
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	if len(cur.Keys) == 0 {
		return nil, fmt.Errorf("verify: %s v%d has no key", videoID, cur.Version)
	}
	rep := &Report{Video: videoID, Version: cur.Version, KeyID: cur.Keys[0].KeyID, KeyIDs: cur.KeyIDs(), Master: cur.Master}
	ks := &versionKeys{wrapped: cur.Keys, used: map[int]bool{}}
	for _, k := range cur.Keys {
		ck, err := v.Keyring.Unwrap(k.KEKID, k.KeyID, k.Wrapped)
		if err != nil {
			return nil, fmt.Errorf("verify: %w", err)
		}
		ks.cks = append(ks.cks, ck)
	}
	data, err := v.get(ctx, cur.Master)
	if err != nil {
		rep.Problems = append(rep.Problems, fmt.Sprintf("master %s: %v", cur.Master, err))
		return rep, nil
	}
	master, err := playlist.ParseMaster(bytes.NewReader(data))
	if err != nil {
		rep.Problems = append(rep.Problems, fmt.Sprintf("master %s: %v", cur.Master, err))
		return rep, nil
	}
	// Alternate audio renditions are EXT-X-MEDIA entries, not variants.
	videoRenditions, audioRenditions := 0, 0
	for _, r := range cur.Renditions {
		switch r.Type {
		case "":
			videoRenditions++
		case catalog.RenditionAudio:
			audioRenditions++
		}
	}
	if len(master.Variants) != videoRenditions {
		rep.Problems = append(rep.Problems, fmt.Sprintf("master lists %d variants, catalog has %d video renditions", len(master.Variants), videoRenditions))
	}
	if n := audioPlaylists(master); n != audioRenditions {
		rep.Problems = append(rep.Problems, fmt.Sprintf("master lists %d audio renditions with a playlist, catalog has %d", n, audioRenditions))
	}
	tmp, err := os.MkdirTemp(v.TempDir, "hlsvault-verify-")
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	defer os.RemoveAll(tmp)
	// Every variant, then every alternate rendition (EXT-X-MEDIA) with a
	// playlist of its own; a playlist listed twice (ffmpeg lists its audio
	// rendition as a variant too) is checked once.
	seen := map[string]bool{}
	check := func(uri string, fps float64) {
		name := path.Join(path.Dir(cur.Master), uri)
		if seen[name] {
			return
		}
		seen[name] = true
		rr := v.rendition(ctx, name, ks, filepath.Join(tmp, strconv.Itoa(len(seen))), fps)
		if len(rr.Problems) == 0 {
			rr.Problems = append(rr.Problems, sourceDurationProblems(rr, cur.Duration)...)
		}
		rep.Renditions = append(rep.Renditions, rr)
	}
	for _, variant := range master.Variants {
		check(variant.URI, variant.FrameRate)
	}
	for _, r := range master.Renditions {
		if r.URI != "" && r.Type != "CLOSED-CAPTIONS" {
			check(r.URI, 0)
		}
	}
	// Trick play: each I-frame segment decrypts and decodes on its own
	// (iframes.go).
	for _, iv := range master.IFrameVariants {
		name := path.Join(path.Dir(cur.Master), iv.URI)
		if seen[name] {
			continue
		}
		seen[name] = true
		rr := v.iframes(ctx, name, ks, filepath.Join(tmp, strconv.Itoa(len(seen))))
		if len(rr.Problems) == 0 {
			rr.Problems = append(rr.Problems, sourceDurationProblems(rr, cur.Duration)...)
		}
		rep.Renditions = append(rep.Renditions, rr)
	}
	if ids := unusedKeys(ks.wrapped, ks.used); len(ids) > 0 {
		rep.Problems = append(rep.Problems, fmt.Sprintf("keys %v of the version are used by no rendition", ids))
	}
	return rep, nil
}

// audioPlaylists counts the master's AUDIO renditions that have their own
// playlist.
func audioPlaylists(m *playlist.ParsedMaster) int {
	n := 0
	for _, r := range m.Renditions {
		if r.Type == "AUDIO" && r.URI != "" {
			n++
		}
	}
	return n
}

// sourceDurationProblems holds a rendition's playlist and decoded
// durations to the source duration recorded at publish (seconds; 0 when
// the version predates the column): comparing the playlist with what it
// decodes to cannot see media that never reached the playlist. The
// tolerance is the pipeline's own (transcode.DurationTolerance), here on
// both sides: a rendition far longer than its source is wrong too.
func sourceDurationProblems(rr RenditionReport, source float64) []string {
	if source <= 0 || rr.Format == "webvtt" {
		return nil
	}
	tol := transcode.DurationTolerance(time.Duration(source * float64(time.Second))).Seconds()
	var problems []string
	for _, d := range []struct {
		what string
		secs float64
	}{{"playlist duration", rr.PlaylistDuration}, {"decoded duration", rr.DecodedDuration}} {
		if math.Abs(d.secs-source) > tol {
			problems = append(problems, fmt.Sprintf("%s %.3fs, but the source lasts %.3fs (recorded at publish; tolerance %.3fs)", d.what, d.secs, source, tol))
		}
	}
	return problems
}

func (v *Verifier) get(ctx context.Context, name string) ([]byte, error) {
	rc, err := v.Store.Get(ctx, name)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// versionKeys are a version's keys, in period order, and the content keys
// they wrap.
type versionKeys struct {
	wrapped []catalog.WrappedKey
	cks     []keys.ContentKey
	// used marks the keys some rendition's segments are under.
	used map[int]bool
}

// unusedKeys names the keys of the version that no rendition uses. Each
// rendition may end before the version's last period (an audio track that
// runs a few milliseconds past the video starts a segment, and so a key
// period, that the video never reaches), so only the version as a whole
// must use every key it publishes.
func unusedKeys(wrapped []catalog.WrappedKey, used map[int]bool) []string {
	var ids []string
	for i, k := range wrapped {
		if !used[i] {
			ids = append(ids, k.KeyID)
		}
	}
	return ids
}

// named returns the index of the key a key URI names: the URI must
// contain exactly one of the version's key ids.
func (ks *versionKeys) named(uri string) (int, error) {
	found := -1
	for i, k := range ks.wrapped {
		if strings.Contains(uri, k.KeyID) {
			if found >= 0 {
				return 0, fmt.Errorf("key URI %q names two keys of the version", uri)
			}
			found = i
		}
	}
	if found < 0 {
		return 0, fmt.Errorf("key URI %q names none of the version's keys", uri)
	}
	return found, nil
}

func (v *Verifier) rendition(ctx context.Context, name string, ks *versionKeys, tmp string, fps float64) RenditionReport {
	rr := RenditionReport{Name: path.Base(path.Dir(name)), Playlist: name}
	fail := func(format string, args ...any) RenditionReport {
		rr.Problems = append(rr.Problems, fmt.Sprintf(format, args...))
		return rr
	}
	data, err := v.get(ctx, name)
	if err != nil {
		return fail("playlist: %v", err)
	}
	m, err := playlist.ParseMedia(bytes.NewReader(data))
	if err != nil {
		return fail("playlist: %v", err)
	}
	if !m.Ended {
		rr.Problems = append(rr.Problems, "playlist has no EXT-X-ENDLIST")
	}
	if len(m.Segments) == 0 {
		return fail("playlist has no segments")
	}
	maps, err := playlist.MapTags(data)
	if err != nil {
		return fail("playlist: %v", err)
	}
	rr.Format = "mpegts"
	switch {
	case len(maps) > 0:
		rr.Format = "fmp4"
	case strings.HasSuffix(strings.ToLower(m.Segments[0].URI), ".vtt") || strings.HasSuffix(strings.ToLower(m.Segments[0].URI), ".webvtt"):
		rr.Format = "webvtt"
	}
	if rr.Format == "fmp4" && maps[0].Segment != 0 {
		return fail("the first segment has no EXT-X-MAP init section")
	}
	// Key periods: each segment must be under the key of the period where
	// it starts (as the playlist's EXTINF values place it), so the
	// playlist's EXT-X-KEY URIs name the version's keys in period order
	// (Verify checks that the renditions together use every key).
	durations := make([]float64, len(m.Segments))
	for i, s := range m.Segments {
		durations[i] = s.Duration
	}
	starts, err := playlist.Starts(durations)
	if err != nil {
		return fail("playlist: %v", err)
	}
	segKey := func(i int) int {
		want := catalog.KeyAt(ks.wrapped, starts[i])
		ks.used[want] = true
		return want
	}

	// Decrypt into one file per init section (one for MPEG-TS): a second
	// init section after a discontinuity starts a new MP4 file.
	var (
		files []string
		out   *os.File
		w     *bufio.Writer
		check formatChecker
	)
	closeFile := func() error {
		if out == nil {
			return nil
		}
		err := errors.Join(w.Flush(), out.Close())
		out = nil
		return err
	}
	defer closeFile()
	openFile := func() error {
		if err := closeFile(); err != nil {
			return err
		}
		f := fmt.Sprintf("%s_%d.%s", tmp, len(files), map[string]string{"mpegts": "ts", "fmp4": "mp4", "webvtt": "vtt"}[rr.Format])
		var err error
		if out, err = os.OpenFile(f, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600); err != nil {
			return err
		}
		w = bufio.NewWriterSize(out, 1<<20)
		files = append(files, f)
		return nil
	}
	if rr.Format != "fmp4" {
		if err := openFile(); err != nil {
			return fail("temp file: %v", err)
		}
	}
	nextMap := 0
	for i, s := range m.Segments {
		if nextMap < len(maps) && maps[nextMap].Segment == i {
			// The last of several EXT-X-MAP tags before one segment wins.
			for nextMap+1 < len(maps) && maps[nextMap+1].Segment == i {
				nextMap++
			}
			mt := maps[nextMap]
			nextMap++
			if err := openFile(); err != nil {
				return fail("temp file: %v", err)
			}
			n, err := v.decryptObject(ctx, name, "init section", mt.Map.URI, mt.Map.ByteRange, mt.Key, ks, segKey(i), w, initChecker())
			rr.EncryptedBytes += n
			if err != nil {
				rr.Problems = append(rr.Problems, fmt.Sprintf("init section of segment %d (%s): %v", i, mt.Map.URI, err))
			}
		}
		rr.Segments++
		rr.PlaylistDuration += s.Duration
		switch rr.Format {
		case "fmp4":
			check = fragmentChecker()
		case "webvtt":
			check = &vttChecker{}
		default:
			check = &tsChecker{}
		}
		n, err := v.decryptObject(ctx, name, "segment", s.URI, s.ByteRange, s.Key, ks, segKey(i), w, check)
		rr.EncryptedBytes += n
		if err != nil {
			rr.Problems = append(rr.Problems, fmt.Sprintf("segment %d (%s): %v", i, s.URI, err))
		} else if vc, ok := check.(*vttChecker); ok {
			rr.Problems = append(rr.Problems, vc.cueProblems(&rr, i, starts[i], starts[len(starts)-1]+m.Segments[len(starts)-1].Duration)...)
		}
	}
	if err := closeFile(); err != nil {
		return fail("temp file: %v", err)
	}
	if len(rr.Problems) > 0 || rr.Format == "webvtt" {
		return rr
	}
	format := "mpegts"
	if rr.Format == "fmp4" {
		format = "mp4"
	}
	for _, f := range files {
		dec, err := probeDecode(ctx, v.Exec, format, f)
		if err != nil {
			return fail("ffprobe: %v", err)
		}
		rr.DecodedDuration += dec.duration
		switch {
		case dec.hasVideo:
			rr.Stream, rr.Codec = "video", dec.videoCodec
			rr.DecodedFrames += dec.videoFrames
		case dec.hasAudio:
			rr.Stream, rr.Codec = "audio", dec.audioCodec
			rr.DecodedFrames += dec.audioFrames
		}
	}
	if tol := math.Max(0.5, 0.02*rr.PlaylistDuration); math.Abs(rr.DecodedDuration-rr.PlaylistDuration) > tol {
		rr.Problems = append(rr.Problems, fmt.Sprintf("decoded duration %.3fs, playlist says %.3fs", rr.DecodedDuration, rr.PlaylistDuration))
	}
	switch {
	case rr.Stream == "":
		rr.Problems = append(rr.Problems, "no video or audio stream decoded")
	case fps > 0 && rr.Stream == "video":
		want := rr.PlaylistDuration * fps
		if math.Abs(float64(rr.DecodedFrames)-want) > math.Max(2, 0.02*want) {
			rr.Problems = append(rr.Problems, fmt.Sprintf("decoded %d frames, expected about %.0f", rr.DecodedFrames, want))
		}
	case rr.DecodedFrames == 0:
		rr.Problems = append(rr.Problems, fmt.Sprintf("no %s frame decoded", rr.Stream))
	}
	return rr
}

// decryptObject checks that an object (segment or init section) names
// the version's key want (its key period's) and decrypts it with that key
// into w.
func (v *Verifier) decryptObject(ctx context.Context, playlistName, what, uri string, br *playlist.ByteRange, key *playlist.Key,
	ks *versionKeys, want int, w io.Writer, check formatChecker) (int64, error) {
	if key == nil || key.Method != "AES-128" {
		return 0, fmt.Errorf("%s is not encrypted with AES-128", what)
	}
	got, err := ks.named(key.URI)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", what, err)
	}
	if got != want {
		return 0, fmt.Errorf("%s names key %s (period %d), not %s of its key period %d", what,
			ks.wrapped[got].KeyID, ks.wrapped[got].Period, ks.wrapped[want].KeyID, ks.wrapped[want].Period)
	}
	ck := ks.cks[want]
	if br != nil {
		return 0, fmt.Errorf("%s is a byte range; whole-object encryption covers one resource", what)
	}
	iv, err := parseIV(key.IV)
	if err != nil {
		return 0, err
	}
	return v.decryptSegment(ctx, path.Join(path.Dir(playlistName), uri), ck, iv, w, check)
}

// decryptSegment streams one object through AES-128-CBC into w and checks
// the plaintext's format as it goes (check).
func (v *Verifier) decryptSegment(ctx context.Context, name string, ck keys.ContentKey, iv []byte, w io.Writer, check formatChecker) (int64, error) {
	rc, err := v.Store.Get(ctx, name)
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	counted := &countingReader{r: rc}
	dec, err := segcrypt.NewDecryptReader(counted, ck.Bytes(), iv)
	if err != nil {
		return 0, err
	}
	if _, err := io.Copy(io.MultiWriter(w, check), dec); err != nil {
		return counted.n, fmt.Errorf("decrypt: %w", err)
	}
	return counted.n, check.err()
}

// formatChecker checks a decrypted object's format as bytes stream
// through it.
type formatChecker interface {
	io.Writer
	err() error
}

func parseIV(s string) ([]byte, error) {
	h, ok := strings.CutPrefix(strings.ToLower(s), "0x")
	if !ok {
		return nil, fmt.Errorf("IV %q has no 0x prefix", s)
	}
	iv, err := hex.DecodeString(h)
	if err != nil || len(iv) != 16 {
		return nil, fmt.Errorf("IV %q is not 16 hex bytes", s)
	}
	return iv, nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// tsChecker checks MPEG-TS packet framing as bytes stream through it.
type tsChecker struct {
	off     int64
	badSync int64 // offset+1 of the first bad sync byte
}

func (t *tsChecker) Write(p []byte) (int, error) {
	for i := range p {
		if (t.off+int64(i))%188 == 0 && p[i] != 0x47 && t.badSync == 0 {
			t.badSync = t.off + int64(i) + 1
		}
	}
	t.off += int64(len(p))
	return len(p), nil
}

func (t *tsChecker) err() error {
	switch {
	case t.off == 0:
		return errors.New("decrypted segment is empty")
	case t.badSync != 0:
		return fmt.Errorf("decrypted bytes are not MPEG-TS: no sync byte at offset %d", t.badSync-1)
	case t.off%188 != 0:
		return fmt.Errorf("decrypted length %d is not a whole number of 188-byte TS packets", t.off)
	}
	return nil
}

// DecodeArgs is ffprobe's argv to decode every video frame of a TS file and
// report the duration and the number of frames decoded.
func DecodeArgs(absPath string) []string {
	return []string{"-hide_banner", "-v", "error", "-protocol_whitelist", "file", "-f", "mpegts",
		"-count_frames", "-select_streams", "v:0",
		"-show_entries", "format=duration:stream=nb_read_frames", "-of", "json", "file:" + absPath}
}

// DecodeAllArgs is ffprobe's argv to decode every frame of every stream of a
// file in the given container ("mpegts", or "mp4" for the mov demuxer) and
// report the duration and each stream's type and frames decoded.
func DecodeAllArgs(format, absPath string) []string {
	return []string{"-hide_banner", "-v", "error", "-protocol_whitelist", "file", "-f", format,
		"-count_frames", "-show_entries", "format=duration,start_time:stream=codec_type,codec_name,nb_read_frames", "-of", "json", "file:" + absPath}
}

type decoded struct {
	duration                 float64
	hasVideo, hasAudio       bool
	videoFrames, audioFrames int64
	videoCodec, audioCodec   string
}

func probeDecode(ctx context.Context, x *transcode.Exec, format, file string) (decoded, error) {
	if x == nil {
		return decoded{}, errors.New("no decoder Exec configured")
	}
	var stderr bytes.Buffer
	cmd, err := x.Command(ctx, transcode.FFprobe, DecodeAllArgs(format, file), []string{file}, nil)
	if err != nil {
		return decoded{}, err
	}
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return decoded{}, fmt.Errorf("%w: %s", err, tail(stderr.String(), 1024))
	}
	return parseDecode(out, format)
}

// parseDecode reads DecodeAllArgs' output. The mov demuxer reports a
// fragmented MP4's duration as its end time; after a discontinuity with a
// new init section the fragments start later, so their start time is
// subtracted.
func parseDecode(out []byte, format string) (decoded, error) {
	var (
		d decoded
		r struct {
			Format struct {
				Duration  string `json:"duration"`
				StartTime string `json:"start_time"`
			} `json:"format"`
			Streams []struct {
				Type   string `json:"codec_type"`
				Codec  string `json:"codec_name"`
				Frames string `json:"nb_read_frames"`
			} `json:"streams"`
		}
	)
	if err := json.Unmarshal(out, &r); err != nil {
		return d, err
	}
	var err error
	if d.duration, err = strconv.ParseFloat(r.Format.Duration, 64); err != nil {
		return d, fmt.Errorf("duration %q", r.Format.Duration)
	}
	if start, err := strconv.ParseFloat(r.Format.StartTime, 64); err == nil && format == "mp4" && start > 0 && start < d.duration {
		d.duration -= start
	}
	for _, s := range r.Streams {
		n, err := strconv.ParseInt(s.Frames, 10, 64)
		if err != nil {
			return d, fmt.Errorf("frames %q", s.Frames)
		}
		switch {
		case s.Type == "video" && !d.hasVideo:
			d.hasVideo, d.videoFrames, d.videoCodec = true, n, s.Codec
		case s.Type == "audio" && !d.hasAudio:
			d.hasAudio, d.audioFrames, d.audioCodec = true, n, s.Codec
		}
	}
	if !d.hasVideo && !d.hasAudio {
		return d, errors.New("no video or audio stream")
	}
	return d, nil
}

// boxChecker checks that a decrypted object starts with one of the
// ISO BMFF boxes it may start with, and that the first box's size is sane.
type boxChecker struct {
	head  []byte
	n     int64
	types []string
	what  string
}

func initChecker() *boxChecker {
	return &boxChecker{types: []string{"ftyp"}, what: "an MP4 init section (ftyp box)"}
}

func fragmentChecker() *boxChecker {
	return &boxChecker{types: []string{"styp", "moof", "sidx", "emsg", "prft", "free"}, what: "an MP4 fragment (styp, sidx or moof box)"}
}

func (b *boxChecker) Write(p []byte) (int, error) {
	if len(b.head) < 8 {
		b.head = append(b.head, p[:min(len(p), 8-len(b.head))]...)
	}
	b.n += int64(len(p))
	return len(p), nil
}

func (b *boxChecker) err() error {
	if b.n == 0 {
		return errors.New("decrypted object is empty")
	}
	if len(b.head) < 8 {
		return fmt.Errorf("decrypted bytes are not %s: only %d bytes", b.what, b.n)
	}
	size := int64(b.head[0])<<24 | int64(b.head[1])<<16 | int64(b.head[2])<<8 | int64(b.head[3])
	typ := string(b.head[4:8])
	if !slices.Contains(b.types, typ) || (size != 1 && (size < 8 || size > b.n)) {
		return fmt.Errorf("decrypted bytes are not %s: first box %q of %d bytes", b.what, typ, size)
	}
	return nil
}

// vttChecker checks that a decrypted subtitle segment is WebVTT.
type vttChecker struct {
	head []byte
	body []byte // the whole segment, up to maxVTTSegment (cueProblems)
	n    int64
}

func (c *vttChecker) Write(p []byte) (int, error) {
	if len(c.head) < 9 {
		c.head = append(c.head, p[:min(len(p), 9-len(c.head))]...)
	}
	if len(c.body)+len(p) <= maxVTTSegment {
		c.body = append(c.body, p...)
	}
	c.n += int64(len(p))
	return len(p), nil
}

func (c *vttChecker) err() error {
	if !bytes.HasPrefix(bytes.TrimPrefix(c.head, []byte("\xef\xbb\xbf")), []byte("WEBVTT")) {
		return errors.New("decrypted bytes are not WebVTT")
	}
	return nil
}

func tail(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		s = "…" + s[len(s)-n:]
	}
	return s
}
