package verify

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path"
	"strconv"

	"github.com/hlsvault/hlsvault/internal/catalog"
	"github.com/hlsvault/hlsvault/internal/playlist"
	"github.com/hlsvault/hlsvault/internal/transcode"
)

// iframeTimelineTolerance bounds how far an I-frame's presentation time may
// be from where the playlist places it (the sum of the EXTINF values
// before it, each rounded to the millisecond), relative to the first.
const iframeTimelineTolerance = 0.05

// iframes checks an I-frame-only playlist (trick play): EXT-X-I-FRAMES-ONLY,
// every segment under its key period's key, and every decrypted segment is
// exactly a PAT, a PMT and one video access unit that is an IDR picture
// (transcode.FirstIFrame cuts it back to itself), so that a player can
// fetch and decrypt each one alone. Then ffprobe decodes them all, once,
// concatenated: one keyframe per segment, each at the time the playlist
// gives it.
func (v *Verifier) iframes(ctx context.Context, name string, ks *versionKeys, tmp string) RenditionReport {
	rr := RenditionReport{Name: path.Base(path.Dir(name)), Playlist: name, Format: "mpegts", Stream: "video"}
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
	if !m.IFramesOnly {
		rr.Problems = append(rr.Problems, "an I-frame variant's playlist without EXT-X-I-FRAMES-ONLY")
	}
	if !m.Ended {
		rr.Problems = append(rr.Problems, "playlist has no EXT-X-ENDLIST")
	}
	if len(m.Segments) == 0 {
		return fail("playlist has no segments")
	}
	durations := make([]float64, len(m.Segments))
	for i, s := range m.Segments {
		durations[i] = s.Duration
	}
	starts, err := playlist.Starts(durations)
	if err != nil {
		return fail("playlist: %v", err)
	}
	file := tmp + "_iframes.ts"
	f, err := os.OpenFile(file, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fail("temp file: %v", err)
	}
	w := bufio.NewWriter(f)
	for i, s := range m.Segments {
		rr.Segments++
		rr.PlaylistDuration += s.Duration
		var plain bytes.Buffer
		n, err := v.decryptObject(ctx, name, "I-frame segment", s.URI, s.ByteRange, s.Key, ks, catalog.KeyAt(ks.wrapped, starts[i]), &plain, &tsChecker{})
		rr.EncryptedBytes += n
		if err != nil {
			rr.Problems = append(rr.Problems, fmt.Sprintf("segment %d (%s): %v", i, s.URI, err))
			continue
		}
		cut, err := transcode.FirstIFrame(bytes.NewReader(plain.Bytes()))
		switch {
		case err != nil:
			rr.Problems = append(rr.Problems, fmt.Sprintf("segment %d (%s): %v", i, s.URI, err))
		case len(cut) != plain.Len():
			rr.Problems = append(rr.Problems, fmt.Sprintf("segment %d (%s): %d bytes after its first access unit: not a single I-frame", i, s.URI, plain.Len()-len(cut)))
		}
		_, _ = w.Write(plain.Bytes())
	}
	if err := errors.Join(w.Flush(), f.Close()); err != nil {
		return fail("temp file: %v", err)
	}
	if len(rr.Problems) > 0 {
		return rr
	}
	frames, err := probeFrames(ctx, v.Exec, file)
	if err != nil {
		return fail("ffprobe: %v", err)
	}
	rr.DecodedFrames = int64(len(frames))
	if len(frames) != len(m.Segments) {
		return fail("decoded %d video frames from %d I-frame segments", len(frames), len(m.Segments))
	}
	rr.DecodedDuration = frames[len(frames)-1].pts - frames[0].pts + durations[len(durations)-1]
	for i, fr := range frames {
		if !fr.key {
			rr.Problems = append(rr.Problems, fmt.Sprintf("segment %d (%s) decodes to a frame that is not a keyframe", i, m.Segments[i].URI))
		}
		if d := fr.pts - frames[0].pts - starts[i]; math.Abs(d) > iframeTimelineTolerance {
			rr.Problems = append(rr.Problems, fmt.Sprintf("segment %d (%s): I-frame at %.3fs of the timeline, the playlist says %.3fs",
				i, m.Segments[i].URI, fr.pts-frames[0].pts, starts[i]))
		}
	}
	return rr
}

// FramesArgs is ffprobe's argv to list every decoded video frame of a TS
// file with its presentation time and keyframe flag.
func FramesArgs(absPath string) []string {
	return []string{"-hide_banner", "-v", "error", "-protocol_whitelist", "file", "-f", "mpegts",
		"-select_streams", "v:0", "-show_entries", "frame=pts_time,key_frame", "-of", "json", "file:" + absPath}
}

type frameInfo struct {
	pts float64
	key bool
}

func probeFrames(ctx context.Context, x *transcode.Exec, file string) ([]frameInfo, error) {
	if x == nil {
		return nil, errors.New("no decoder Exec configured")
	}
	var stderr bytes.Buffer
	cmd, err := x.Command(ctx, transcode.FFprobe, FramesArgs(file), []string{file}, nil)
	if err != nil {
		return nil, err
	}
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%w: %s", err, tail(stderr.String(), 1024))
	}
	return parseFrames(out)
}

func parseFrames(out []byte) ([]frameInfo, error) {
	var r struct {
		Frames []struct {
			PTS string `json:"pts_time"`
			Key int    `json:"key_frame"`
		} `json:"frames"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		return nil, err
	}
	fs := make([]frameInfo, len(r.Frames))
	for i, f := range r.Frames {
		pts, err := strconv.ParseFloat(f.PTS, 64)
		if err != nil {
			return nil, fmt.Errorf("frame %d: pts_time %q", i, f.PTS)
		}
		fs[i] = frameInfo{pts: pts, key: f.Key == 1}
	}
	return fs, nil
}
