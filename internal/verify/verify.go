// Package verify proves that a video's current version plays: every
// playlist parses, every segment decrypts with the stored key into valid
// MPEG-TS, and ffprobe decodes each rendition to the expected duration.
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
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/hlsvault/hlsvault/internal/catalog"
	"github.com/hlsvault/hlsvault/internal/keys"
	"github.com/hlsvault/hlsvault/internal/playlist"
	"github.com/hlsvault/hlsvault/internal/segcrypt"
	"github.com/hlsvault/hlsvault/internal/storage"
)

// Report is the outcome of verifying one video.
type Report struct {
	Video      string            `json:"video"`
	Version    int               `json:"version"`
	KeyID      string            `json:"key_id"`
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
	Name             string   `json:"name"`
	Playlist         string   `json:"playlist"`
	Segments         int      `json:"segments"`
	EncryptedBytes   int64    `json:"encrypted_bytes"`
	PlaylistDuration float64  `json:"playlist_duration"`
	DecodedDuration  float64  `json:"decoded_duration"`
	DecodedFrames    int64    `json:"decoded_frames"`
	Problems         []string `json:"problems,omitempty"`
}

// Verifier checks published versions.
type Verifier struct {
	Store   storage.Store
	DB      *catalog.DB
	Keyring *keys.Keyring
	FFprobe string // default "ffprobe"
	TempDir string // default os.TempDir()
}

// Verify checks the current version of videoID. A non-nil error means the
// check could not run; problems found are in the report.
func (v *Verifier) Verify(ctx context.Context, videoID string) (*Report, error) {
	cur, err := v.DB.CurrentVersion(ctx, videoID)
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	rep := &Report{Video: videoID, Version: cur.Version, KeyID: cur.Key.KeyID, Master: cur.Master}
	ck, err := v.Keyring.Unwrap(cur.Key.KEKID, cur.Key.KeyID, cur.Key.Wrapped)
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
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
	if len(master.Variants) != len(cur.Renditions) {
		rep.Problems = append(rep.Problems, fmt.Sprintf("master lists %d variants, catalog has %d renditions", len(master.Variants), len(cur.Renditions)))
	}
	tmp, err := os.MkdirTemp(v.TempDir, "hlsvault-verify-")
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	defer os.RemoveAll(tmp)
	for i, variant := range master.Variants {
		name := path.Join(path.Dir(cur.Master), variant.URI)
		rr := v.rendition(ctx, name, ck, cur.Key.KeyID, filepath.Join(tmp, strconv.Itoa(i)+".ts"), variant.FrameRate)
		rep.Renditions = append(rep.Renditions, rr)
	}
	return rep, nil
}

func (v *Verifier) get(ctx context.Context, name string) ([]byte, error) {
	rc, err := v.Store.Get(ctx, name)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

func (v *Verifier) rendition(ctx context.Context, name string, ck keys.ContentKey, keyID, tmp string, fps float64) RenditionReport {
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
	out, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fail("temp file: %v", err)
	}
	w := bufio.NewWriterSize(out, 1<<20)
	for i, s := range m.Segments {
		rr.Segments++
		rr.PlaylistDuration += s.Duration
		if s.Key == nil || s.Key.Method != "AES-128" {
			rr.Problems = append(rr.Problems, fmt.Sprintf("segment %d is not encrypted with AES-128", i))
			continue
		}
		if !strings.Contains(s.Key.URI, keyID) {
			rr.Problems = append(rr.Problems, fmt.Sprintf("segment %d names key URI %q, not the current key %s", i, s.Key.URI, keyID))
			continue
		}
		iv, err := parseIV(s.Key.IV)
		if err != nil {
			rr.Problems = append(rr.Problems, fmt.Sprintf("segment %d: %v", i, err))
			continue
		}
		n, err := v.decryptSegment(ctx, path.Join(path.Dir(name), s.URI), ck, iv, w)
		rr.EncryptedBytes += n
		if err != nil {
			rr.Problems = append(rr.Problems, fmt.Sprintf("segment %d (%s): %v", i, s.URI, err))
		}
	}
	if err := errors.Join(w.Flush(), out.Close()); err != nil {
		return fail("temp file: %v", err)
	}
	if len(rr.Problems) > 0 {
		return rr
	}
	dur, frames, err := probeDecode(ctx, v.ffprobe(), tmp)
	if err != nil {
		return fail("ffprobe: %v", err)
	}
	rr.DecodedDuration, rr.DecodedFrames = dur, frames
	if tol := math.Max(0.5, 0.02*rr.PlaylistDuration); math.Abs(dur-rr.PlaylistDuration) > tol {
		rr.Problems = append(rr.Problems, fmt.Sprintf("decoded duration %.3fs, playlist says %.3fs", dur, rr.PlaylistDuration))
	}
	if fps > 0 {
		want := rr.PlaylistDuration * fps
		if math.Abs(float64(frames)-want) > math.Max(2, 0.02*want) {
			rr.Problems = append(rr.Problems, fmt.Sprintf("decoded %d frames, expected about %.0f", frames, want))
		}
	} else if frames == 0 {
		rr.Problems = append(rr.Problems, "no video frame decoded")
	}
	return rr
}

// decryptSegment streams one segment through AES-128-CBC into w and checks
// that the plaintext is MPEG-TS (188-byte packets, each starting 0x47).
func (v *Verifier) decryptSegment(ctx context.Context, name string, ck keys.ContentKey, iv []byte, w io.Writer) (int64, error) {
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
	ts := &tsChecker{}
	if _, err := io.Copy(io.MultiWriter(w, ts), dec); err != nil {
		return counted.n, fmt.Errorf("decrypt: %w", err)
	}
	return counted.n, ts.err()
}

func (v *Verifier) ffprobe() string {
	if v.FFprobe == "" {
		return "ffprobe"
	}
	return v.FFprobe
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

func probeDecode(ctx context.Context, ffprobe, file string) (float64, int64, error) {
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, ffprobe, DecodeArgs(file)...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return 0, 0, fmt.Errorf("%w: %s", err, tail(stderr.String(), 1024))
	}
	return parseDecode(out)
}

func parseDecode(out []byte) (float64, int64, error) {
	var r struct {
		Format struct {
			Duration string `json:"duration"`
		} `json:"format"`
		Streams []struct {
			Frames string `json:"nb_read_frames"`
		} `json:"streams"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		return 0, 0, err
	}
	d, err := strconv.ParseFloat(r.Format.Duration, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("duration %q", r.Format.Duration)
	}
	if len(r.Streams) == 0 {
		return d, 0, errors.New("no video stream")
	}
	n, err := strconv.ParseInt(r.Streams[0].Frames, 10, 64)
	if err != nil {
		return d, 0, fmt.Errorf("frames %q", r.Streams[0].Frames)
	}
	return d, n, nil
}

func tail(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		s = "…" + s[len(s)-n:]
	}
	return s
}
