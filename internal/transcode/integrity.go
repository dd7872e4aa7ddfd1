package transcode

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// A source can declare more than it holds: a fast-start MP4 cut short keeps
// its moov, so ffprobe reports the full declared duration, and ffmpeg then
// encodes whatever little is really there. The integrity check reads the
// packets near the declared end (demuxing only, no decoding) and refuses a
// source whose media stops well before it.

// Tolerances for the gap between the declared duration and where the media
// in the file ends. Honest sources fall short of their declared duration too:
// audio a little longer than video, an encoder dropping the frames of a last
// partial GOP, audio priming and edit lists. These end within a second or a
// few per cent; an upload cut short in transit loses far more, and a
// creator's title published a second short is a smaller harm than one
// refused for no visible reason.
const (
	// MissingTailSeconds is the gap always tolerated, whatever the length.
	MissingTailSeconds = 1.0
	// MissingTailFraction is the gap tolerated as a share of the declared
	// duration, for long sources whose streams drift further apart.
	MissingTailFraction = 0.03
)

// integrityMargin is read before the earliest acceptable end, so that the
// packets which prove the media reaches it are inside the interval read
// even when the streams' first timestamps differ slightly.
const integrityMargin = time.Second

// DurationTolerance returns how much shorter than declared the media may
// end (or a rendition may last) before it counts as truncated.
func DurationTolerance(declared time.Duration) time.Duration {
	return max(secondsDuration(MissingTailSeconds), time.Duration(MissingTailFraction*float64(declared)))
}

// Integrity is where the media in a source really ends, against what its
// container declares. Ends are measured from the container's start time.
type Integrity struct {
	Declared time.Duration // the container's duration (Probe.Duration)
	VideoEnd time.Duration // end of the last whole video packet
	AudioEnd time.Duration // end of the last whole audio packet; 0 without audio
	// From is where reading began (0: the whole file was read).
	From time.Duration
	// Packets counts the whole packets of the video and audio streams read.
	Packets int
	// VideoFrames counts the whole video packets read (one frame each);
	// DeclaredFrames is the video stream's nb_frames from the container's
	// index, 0 when it has none (Matroska, MPEG-TS). Compared only when the
	// whole file was read (From 0).
	VideoFrames, DeclaredFrames int64
}

// End is where the media ends: the later of video and audio.
func (in Integrity) End() time.Duration { return max(in.VideoEnd, in.AudioEnd) }

// IntegrityArgs returns ffprobe's argv (without the program name) to list
// every packet from from seconds past the container's start to the end of
// the file, hardened like ProbeArgs (file: input, forced demuxer, protocol
// and format whitelists, allocation and probing limits). It demuxes and does
// not decode: the cost is reading the tail of the file. from <= 0 reads the
// whole file.
func IntegrityArgs(format, absPath string, from time.Duration) []string {
	args := hardenedProbe(format)
	if from > 0 {
		// "+T%": T after the start time, up to the end of the file.
		// ffprobe seeks to the keyframe at or before it.
		args = append(args, "-read_intervals", "+"+strconv.FormatFloat(from.Seconds(), 'f', 3, 64)+"%")
	}
	return append(args,
		"-show_entries", "packet=stream_index,pts_time,dts_time,duration_time,size,pos:stream=index,nb_frames:format=start_time",
		"-of", "compact=p=1:nk=0",
		"file:"+absPath,
	)
}

// integrityFrom is where CheckIntegrity starts reading for a declared
// duration: enough before the earliest acceptable end that a whole source
// proves itself with the packets of its last second or two.
func integrityFrom(declared time.Duration) time.Duration {
	return max(0, declared-DurationTolerance(declared)-integrityMargin)
}

// CheckTruncation is the decision: the source is truncated when its media
// ends more than DurationTolerance before the declared duration. The error
// wraps ErrInvalidInput and tells the creator what to do.
func CheckTruncation(in Integrity) error {
	if in.Declared-in.End() <= DurationTolerance(in.Declared) {
		return nil
	}
	media := "video ends at " + seconds(in.VideoEnd)
	if in.From == 0 && in.DeclaredFrames > 0 && in.VideoFrames < in.DeclaredFrames {
		media += fmt.Sprintf(" (%d of %d frames)", in.VideoFrames, in.DeclaredFrames)
	}
	if in.AudioEnd > 0 {
		media += ", audio at " + seconds(in.AudioEnd)
	}
	return invalid("source is truncated: the container declares %s, decodable %s; upload it again", seconds(in.Declared), media)
}

// CheckOutputDuration compares the duration of one transcoded rendition
// (the sum of its segments) with the source's declared duration: a
// rendition that ends well short means media was lost between the source
// and the output (a corrupt stretch the decoder dropped, a cut the
// integrity check missed), so the version must not be published. A longer
// rendition is not refused here: nothing of the creator's is lost.
func CheckOutputDuration(rendition string, got, declared time.Duration) error {
	if declared-got <= DurationTolerance(declared) {
		return nil
	}
	return invalid("source is truncated or corrupt: rendition %s lasts %s, the container declares %s; upload it again",
		rendition, seconds(got), seconds(declared))
}

// seconds formats a duration the way the reasons print it: "4.0 s",
// "0.12 s" (two decimals below 10 s, where a frame matters).
func seconds(d time.Duration) string {
	s := d.Seconds()
	if s < 10 {
		return strconv.FormatFloat(s, 'f', 2, 64) + " s"
	}
	return strconv.FormatFloat(s, 'f', 1, 64) + " s"
}

func secondsDuration(s float64) time.Duration {
	return time.Duration(math.Round(s * float64(time.Second)))
}

// CheckIntegrity reads the packets near the declared end of the source at
// path (absolute, already probed into p) and returns where its media ends.
// A source that ends well before its declared duration yields an error
// wrapping ErrInvalidInput (CheckTruncation); so does ffprobe refusing the
// file. A timeout is not bad input, as in ProbeFile.
func CheckIntegrity(ctx context.Context, x *Exec, path string, p *Probe, lim Limits) (Integrity, error) {
	lim = lim.withDefaults()
	in := Integrity{Declared: p.Duration, From: integrityFrom(p.Duration)}
	if x == nil {
		return in, errNoExec
	}
	if !filepath.IsAbs(path) {
		return in, fmt.Errorf("transcode: integrity: path %q is not absolute", path)
	}
	if !allowedFormat(p.Format) {
		return in, invalid("container %q is not allowed (%s)", p.Format, allowedContainers)
	}
	if err := readPackets(ctx, x, path, p, &in, lim); err != nil {
		return in, err
	}
	err := CheckTruncation(in)
	if err == nil || in.From == 0 || in.End() >= in.From {
		return in, err
	}
	// Nothing was read past the seek point: the data stops before it, and
	// the figures say nothing of where. Read the file from its start to
	// tell the creator; this pass costs what the file holds, and only a
	// file being refused pays it.
	whole := Integrity{Declared: in.Declared}
	switch rerr := readPackets(ctx, x, path, p, &whole, lim); {
	case rerr == nil:
		return whole, CheckTruncation(whole)
	case ctx.Err() != nil:
		return in, rerr
	}
	return in, invalid("source is truncated: the container declares %s, decodable media ends before %s; upload it again",
		seconds(in.Declared), seconds(in.From))
}

// readPackets runs IntegrityArgs from in.From and fills in the ends.
func readPackets(ctx context.Context, x *Exec, path string, p *Probe, in *Integrity, lim Limits) error {
	audio := -1
	if p.Audio != nil {
		audio = p.Audio.Index
	}
	scan := &packetScanner{video: p.Video.Index, audio: audio, size: p.Size}

	pctx, cancel := context.WithTimeout(ctx, lim.ProbeTimeout)
	defer cancel()
	cmd, err := x.Command(pctx, FFprobe, IntegrityArgs(p.Format, path, in.From), []string{path}, nil)
	if err != nil {
		return err
	}
	stderr := newTail(2 << 10)
	cmd.Stdout, cmd.Stderr = scan, stderr
	err = runGroup(cmd)
	if err != nil {
		switch {
		case ctx.Err() != nil:
			return fmt.Errorf("transcode: integrity: %w", ctx.Err())
		case pctx.Err() != nil:
			return fmt.Errorf("transcode: integrity: no answer within %s: %w", lim.ProbeTimeout, pctx.Err())
		}
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) {
			return invalid("ffprobe cannot read the file's packets: %v: %s", err, stderr.String())
		}
		return fmt.Errorf("transcode: integrity: %w", err)
	}
	scan.flush()
	in.VideoEnd, in.AudioEnd, in.Packets = scan.ends()
	in.VideoFrames, in.DeclaredFrames = scan.videoPackets, scan.declaredFrames
	return nil
}

// packetScanner parses IntegrityArgs' output as ffprobe writes it, one
// line at a time, keeping only the latest end per stream: reading a whole
// hostile file must not cost memory in proportion to its packets.
type packetScanner struct {
	video, audio int   // stream indexes; -1 for none
	size         int64 // file size: a packet reaching past it is partial
	line         []byte
	long         bool // the current line overflowed and is skipped
	start        float64
	videoEnd     float64
	audioEnd     float64
	packets      int
	// videoPackets counts the video stream's whole packets; declaredFrames
	// is its nb_frames.
	videoPackets, declaredFrames int64
}

// maxIntegrityLine bounds one line: a packet line is under 200 bytes.
const maxIntegrityLine = 4 << 10

func (s *packetScanner) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			s.add(p)
			break
		}
		s.add(p[:i])
		s.flush()
		p = p[i+1:]
	}
	return n, nil
}

func (s *packetScanner) add(b []byte) {
	if len(s.line)+len(b) > maxIntegrityLine {
		s.long = true
		return
	}
	s.line = append(s.line, b...)
}

// flush parses the line collected so far.
func (s *packetScanner) flush() {
	line, long := string(s.line), s.long
	s.line, s.long = s.line[:0], false
	if long {
		return
	}
	section, rest, _ := strings.Cut(line, "|")
	fields := map[string]string{}
	for kv := range strings.SplitSeq(rest, "|") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			fields[k] = v
		}
	}
	switch section {
	case "format":
		if f, err := strconv.ParseFloat(fields["start_time"], 64); err == nil && !math.IsNaN(f) && !math.IsInf(f, 0) {
			s.start = f
		}
	case "packet":
		s.packet(fields)
	case "stream":
		if idx, err := strconv.Atoi(fields["index"]); err == nil && idx == s.video {
			if n, err := strconv.ParseInt(fields["nb_frames"], 10, 64); err == nil && n > 0 {
				s.declaredFrames = n
			}
		}
	}
}

func (s *packetScanner) packet(f map[string]string) {
	idx, err := strconv.Atoi(f["stream_index"])
	if err != nil || (idx != s.video && idx != s.audio) {
		return
	}
	// A packet whose bytes reach past the end of the file was cut in the
	// middle: the demuxer returns what there is, the decoder cannot use it.
	if pos, err1 := strconv.ParseInt(f["pos"], 10, 64); err1 == nil {
		if size, err2 := strconv.ParseInt(f["size"], 10, 64); err2 == nil && s.size > 0 && pos+size > s.size {
			return
		}
	}
	t, ok := finite(f["pts_time"])
	if !ok {
		if t, ok = finite(f["dts_time"]); !ok {
			return
		}
	}
	if d, ok := finite(f["duration_time"]); ok && d > 0 {
		t += d
	}
	s.packets++
	if idx == s.video {
		s.videoPackets++
		s.videoEnd = max(s.videoEnd, t)
	} else {
		s.audioEnd = max(s.audioEnd, t)
	}
}

// ends returns the streams' ends relative to the container's start time,
// which is printed after the packets.
func (s *packetScanner) ends() (video, audio time.Duration, packets int) {
	rel := func(end float64) time.Duration {
		if end <= 0 {
			return 0
		}
		return max(0, secondsDuration(end-s.start))
	}
	return rel(s.videoEnd), rel(s.audioEnd), s.packets
}

func finite(s string) (float64, bool) {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, false
	}
	return f, true
}
