package transcode

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/text/language"
)

// SubtitleStream is a text subtitle stream of the source that becomes a
// WebVTT rendition.
type SubtitleStream struct {
	Index    int    // absolute stream index in the input
	Codec    string // subrip, mov_text, ass, ssa, webvtt, text
	Language string // BCP 47 ("en", "pt-BR"); "" when the tag is missing or und
	Title    string // the stream's title tag, "" when none
	Forced   bool   // disposition forced
}

// IgnoredSubtitle is a subtitle stream that is not published: bitmap
// subtitles (PGS, DVB, VobSub) cannot become WebVTT without OCR.
type IgnoredSubtitle struct {
	Index int
	Codec string
}

// textSubtitleCodecs are the decoders whose output ffmpeg's webvtt encoder
// takes: text in, text out, no picture decoded.
var textSubtitleCodecs = map[string]bool{
	"subrip": true, "srt": true, "mov_text": true, "ass": true, "ssa": true, "webvtt": true, "text": true,
}

// subtitleStreams splits ffprobe's subtitle streams into the text ones we
// publish and the rest.
func subtitleStreams(streams []ffStream) (text []SubtitleStream, ignored []IgnoredSubtitle) {
	for _, s := range streams {
		if s.CodecType != "subtitle" {
			continue
		}
		if !textSubtitleCodecs[s.CodecName] {
			ignored = append(ignored, IgnoredSubtitle{Index: s.Index, Codec: s.CodecName})
			continue
		}
		lang := NormalizeLanguage(s.Tags["language"])
		title := strings.TrimSpace(s.Tags["title"])
		if title == "" {
			title = strings.TrimSpace(s.Tags["handler_name"]) // mp4 muxers name the track here
			if title == "SubtitleHandler" {
				title = "" // ffmpeg's own default says nothing
			}
		}
		if !utf8.ValidString(title) || len(title) > 64 || strings.ContainsAny(title, "\"\r\n") {
			title = ""
		}
		text = append(text, SubtitleStream{Index: s.Index, Codec: s.CodecName, Language: lang, Title: title,
			Forced: s.Disposition["forced"] == 1})
	}
	return text, ignored
}

// ParseLanguage turns a language tag as containers and callers write
// it (ISO 639-2 "eng" or "fre", ISO 639-1 "en", BCP 47 "pt-BR") into its
// canonical BCP 47 form with the shortest language subtag ("en", "fr",
// "pt-BR"), which is what HLS's LANGUAGE attribute wants (RFC 8216
// 4.3.4.1 refers to RFC 5646). "" and "und" give "" without error: the
// language is unknown, not wrong.
func ParseLanguage(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" || strings.EqualFold(s, "und") {
		return "", nil
	}
	if len(s) > 35 {
		return "", fmt.Errorf("transcode: language tag %q is too long", s)
	}
	tag, err := language.Parse(s)
	if err != nil {
		return "", fmt.Errorf("transcode: language tag %q: %w", s, err)
	}
	switch out := tag.String(); out {
	case "und", "mul", "zxx": // says nothing about the language
		return "", nil
	default:
		return out, nil
	}
}

// Sidecar subtitle formats, as ffmpeg's demuxers name them.
const (
	SubtitleSRT    = "srt"
	SubtitleWebVTT = "webvtt"
	SubtitleASS    = "ass"
)

// SidecarExt is the object extension of each sidecar format.
var SidecarExt = map[string]string{SubtitleSRT: ".srt", SubtitleWebVTT: ".vtt", SubtitleASS: ".ass"}

// MaxSidecarBytes bounds a sidecar subtitle file: hours of dialogue are a
// few hundred kilobytes.
const MaxSidecarBytes = 4 << 20

var srtTiming = regexp.MustCompile(`^\d{1,3}:\d{2}:\d{2}[,.]\d{1,3}\s*-->\s*\d{1,3}:\d{2}:\d{2}[,.]\d{1,3}`)

// SniffSubtitle names the format of a sidecar subtitle file from its
// content (never its name): WebVTT, SubRip or ASS/SSA, valid UTF-8 text
// without NUL bytes. Anything else is bad input.
func SniffSubtitle(data []byte) (string, error) {
	if len(data) == 0 {
		return "", invalid("subtitle file is empty")
	}
	if len(data) > MaxSidecarBytes {
		return "", invalid("subtitle file is %d bytes, the limit is %d", len(data), MaxSidecarBytes)
	}
	if bytes.IndexByte(data, 0) >= 0 || !utf8.Valid(data) {
		return "", invalid("subtitle file is not UTF-8 text (SubRip, WebVTT or ASS expected)")
	}
	text := strings.TrimPrefix(string(data), "\ufeff")
	text = strings.TrimLeft(text, " \t\r\n")
	first, _, _ := strings.Cut(text, "\n")
	first = strings.TrimRight(first, "\r")
	switch {
	case first == "WEBVTT" || strings.HasPrefix(first, "WEBVTT ") || strings.HasPrefix(first, "WEBVTT\t"):
		return SubtitleWebVTT, nil
	case strings.EqualFold(first, "[Script Info]"):
		return SubtitleASS, nil
	}
	// SubRip: a cue number, then a timing line.
	lines := strings.SplitN(text, "\n", 3)
	if len(lines) >= 2 {
		if _, err := strconv.Atoi(strings.TrimSpace(lines[0])); err == nil && srtTiming.MatchString(strings.TrimSpace(lines[1])) {
			return SubtitleSRT, nil
		}
	}
	return "", invalid("subtitle file is not SubRip, WebVTT or ASS text")
}

// hardenedInput is the input half of every ffmpeg argv on an upload: the
// file protocol only, the demuxer forced and whitelisted, bounded probing
// and allocation.
func hardenedInput(format, absPath string) []string {
	return []string{
		"-max_alloc", strconv.Itoa(maxAlloc),
		"-protocol_whitelist", "file",
		"-format_whitelist", format,
		"-f", format,
		"-probesize", strconv.Itoa(probeSize),
		"-analyzeduration", strconv.Itoa(analyzeDuration),
		"-max_probe_packets", strconv.Itoa(maxProbePackets),
		"-i", "file:" + absPath,
	}
}

// SubtitleArgs is ffmpeg's argv (without the program name) that converts
// subtitle stream index of the source (whose container was probed as
// format) into one WebVTT file at out. No picture or sound is decoded: only
// the subtitle stream is mapped. Its timestamps come out on the same
// timeline as the ladder's (both runs start the output at the input's start
// time, without -copyts).
func SubtitleArgs(format, absPath string, index int, out string) []string {
	args := []string{"-hide_banner", "-nostdin", "-nostats", "-loglevel", "error"}
	args = append(args, hardenedInput(format, absPath)...)
	return append(args,
		"-map", "0:"+strconv.Itoa(index),
		"-c:s", "webvtt",
		"-f", "webvtt", "-y", "file:"+out,
	)
}

// SidecarArgs is ffmpeg's argv that converts a sidecar subtitle file in
// format (SniffSubtitle's verdict) into one WebVTT file at out.
func SidecarArgs(format, absPath, out string) []string {
	args := []string{"-hide_banner", "-nostdin", "-nostats", "-loglevel", "error"}
	args = append(args, hardenedInput(format, absPath)...)
	return append(args,
		"-map", "0:s:0",
		"-c:s", "webvtt",
		"-f", "webvtt", "-y", "file:"+out,
	)
}

// ConvertSubtitle runs args (SubtitleArgs or SidecarArgs) in the decoder
// sandbox, reading in and writing out (both absolute), under lim's
// ProbeTimeout: a text-only pass is fast or broken. A failure to read the
// input is bad input.
func ConvertSubtitle(ctx context.Context, x *Exec, args []string, in, out string, lim Limits) error {
	lim = lim.withDefaults()
	if x == nil {
		return errNoExec
	}
	if !filepath.IsAbs(in) || !filepath.IsAbs(out) {
		return fmt.Errorf("transcode: subtitles: paths %q, %q are not absolute", in, out)
	}
	cctx, cancel := context.WithTimeout(ctx, lim.ProbeTimeout)
	defer cancel()
	cmd, err := x.Command(cctx, FFmpeg, args, []string{in}, []string{filepath.Dir(out)})
	if err != nil {
		return err
	}
	stderr := newTail(2 << 10)
	cmd.Stderr = stderr
	if err := runGroup(cmd); err != nil {
		switch {
		case ctx.Err() != nil:
			return fmt.Errorf("transcode: subtitles: %w", ctx.Err())
		case cctx.Err() != nil:
			return fmt.Errorf("transcode: subtitles: no answer within %s: %w", lim.ProbeTimeout, cctx.Err())
		}
		return invalid("subtitles cannot be converted to WebVTT: %v: %s", err, stderr.String())
	}
	fi, err := os.Stat(out)
	if err != nil {
		return fmt.Errorf("transcode: subtitles: %w", err)
	}
	if fi.Size() > 4*MaxSidecarBytes {
		return invalid("subtitles converted to %d bytes of WebVTT, more than %d", fi.Size(), 4*MaxSidecarBytes)
	}
	return nil
}

// Cue is one WebVTT cue, times on the published timeline.
type Cue struct {
	Start, End time.Duration
	Settings   string // cue settings after the timing ("line:0 align:start"), "" when none
	Text       string // one or more lines, no blank line
}

var vttTiming = regexp.MustCompile(`^((?:\d+:)?\d{2}:\d{2}\.\d{3})\s+-->\s+((?:\d+:)?\d{2}:\d{2}\.\d{3})(?:\s+(.*))?$`)

// ParseVTT reads the cues of a WebVTT file (what ffmpeg's webvtt muxer
// writes: the header, then cues, each with an optional identifier). NOTE,
// STYLE and REGION blocks are dropped; cues with an end before their start
// are bad input.
func ParseVTT(data []byte) ([]Cue, error) {
	text := strings.ReplaceAll(strings.TrimPrefix(string(data), "\ufeff"), "\r\n", "\n")
	if !strings.HasPrefix(text, "WEBVTT") {
		return nil, invalid("not WebVTT: no WEBVTT header")
	}
	var cues []Cue
	for _, block := range strings.Split(text, "\n\n")[1:] {
		lines := strings.Split(strings.Trim(block, "\n"), "\n")
		if len(lines) == 0 || lines[0] == "" {
			continue
		}
		if !strings.Contains(lines[0], "-->") {
			if len(lines) < 2 || !strings.Contains(lines[1], "-->") {
				continue // NOTE, STYLE, REGION or junk
			}
			lines = lines[1:] // a cue identifier
		}
		m := vttTiming.FindStringSubmatch(strings.TrimSpace(lines[0]))
		if m == nil {
			return nil, invalid("WebVTT cue timing %q", lines[0])
		}
		start, err1 := parseVTTTime(m[1])
		end, err2 := parseVTTTime(m[2])
		if err := errors.Join(err1, err2); err != nil {
			return nil, err
		}
		if end < start {
			return nil, invalid("WebVTT cue ends (%s) before it starts (%s)", m[2], m[1])
		}
		cues = append(cues, Cue{Start: start, End: end, Settings: strings.TrimSpace(m[3]), Text: strings.Join(lines[1:], "\n")})
	}
	return cues, nil
}

func parseVTTTime(s string) (time.Duration, error) {
	parts := strings.Split(s, ":")
	var h, m int
	var err error
	if len(parts) == 3 {
		if h, err = strconv.Atoi(parts[0]); err != nil {
			return 0, invalid("WebVTT time %q", s)
		}
		parts = parts[1:]
	}
	if m, err = strconv.Atoi(parts[0]); err != nil || m > 59 {
		return 0, invalid("WebVTT time %q", s)
	}
	secs, ms, _ := strings.Cut(parts[1], ".")
	sec, err1 := strconv.Atoi(secs)
	milli, err2 := strconv.Atoi(ms)
	if err1 != nil || err2 != nil || sec > 59 {
		return 0, invalid("WebVTT time %q", s)
	}
	return time.Duration(h)*time.Hour + time.Duration(m)*time.Minute + time.Duration(sec)*time.Second +
		time.Duration(milli)*time.Millisecond, nil
}

// FormatVTTTime writes t as WebVTT's hh:mm:ss.ttt.
func FormatVTTTime(t time.Duration) string {
	if t < 0 {
		t = 0
	}
	ms := t.Milliseconds()
	return fmt.Sprintf("%02d:%02d:%02d.%03d", ms/3_600_000, ms/60_000%60, ms/1000%60, ms%1000)
}

// SegmentVTT cuts cues into one WebVTT document per segment of the video
// timeline: starts are the segments' start times and total the end of the
// last, so subtitle segment i spans exactly video segment i. A cue that
// spans a boundary is written in every segment it overlaps (as Apple's
// segmenter does; players drop the repeat). Each document starts with
// X-TIMESTAMP-MAP=MPEGTS:mpegts,LOCAL:00:00:00.000: mpegts is the 90 kHz
// PTS at which the video segments' timeline starts (time 0 of the cues),
// so hls.js and Safari place cues where the video says, not mpegts/90000
// seconds early.
func SegmentVTT(cues []Cue, starts []time.Duration, total time.Duration, mpegts int64) [][]byte {
	out := make([][]byte, len(starts))
	for i, s := range starts {
		end := total
		if i+1 < len(starts) {
			end = starts[i+1]
		}
		var b bytes.Buffer
		fmt.Fprintf(&b, "WEBVTT\nX-TIMESTAMP-MAP=MPEGTS:%d,LOCAL:00:00:00.000\n", mpegts)
		for _, c := range cues {
			if c.Start >= end || c.End <= s || (c.End == c.Start && c.Start < s) {
				continue
			}
			fmt.Fprintf(&b, "\n%s --> %s", FormatVTTTime(c.Start), FormatVTTTime(c.End))
			if c.Settings != "" {
				b.WriteString(" " + c.Settings)
			}
			b.WriteString("\n")
			for _, l := range strings.Split(c.Text, "\n") {
				if strings.TrimSpace(l) == "" {
					continue // a blank line would end the cue
				}
				b.WriteString(strings.ReplaceAll(l, "-->", "->") + "\n")
			}
		}
		out[i] = b.Bytes()
	}
	return out
}

// FirstPTS returns the lowest first presentation timestamp (90 kHz) of the
// audio and video elementary streams in the MPEG-TS segment at path: the
// PTS that hls.js takes as the start of the timeline (its initPTS) and
// that a subtitle's X-TIMESTAMP-MAP must name. ffmpeg's mpegts muxer
// starts at 1.4 s (126000) unless told otherwise; this reads what was
// written instead of assuming it.
func FirstPTS(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("transcode: first PTS: %w", err)
	}
	defer f.Close()
	buf := make([]byte, 188*4096) // the first 770 kB hold the first PES of every stream
	n, _ := f.Read(buf)
	buf = buf[:n-n%188]
	seen := map[int]bool{}
	best := int64(-1)
	for off := 0; off+188 <= len(buf); off += 188 {
		p := buf[off : off+188]
		if p[0] != 0x47 || p[1]&0x40 == 0 { // sync byte, payload unit start
			continue
		}
		pid := int(p[1]&0x1f)<<8 | int(p[2])
		if seen[pid] {
			continue
		}
		pay := 4
		switch (p[3] >> 4) & 3 {
		case 2: // adaptation field only
			continue
		case 3:
			pay += 1 + int(p[4])
		}
		if pay+14 > len(p) {
			continue
		}
		h := p[pay:]
		if h[0] != 0 || h[1] != 0 || h[2] != 1 {
			continue // PSI, not PES
		}
		sid := h[3]
		if !(sid >= 0xc0 && sid <= 0xef) {
			continue // not audio or video
		}
		seen[pid] = true
		if h[7]&0x80 == 0 {
			continue
		}
		pts := int64(h[9]>>1&0x07)<<30 | int64(h[10])<<22 | int64(h[11]>>1)<<15 | int64(h[12])<<7 | int64(h[13]>>1)
		if best < 0 || pts < best {
			best = pts
		}
	}
	if best < 0 {
		return 0, errors.New("transcode: first PTS: no audio or video PES with a PTS at the start of the segment")
	}
	return best, nil
}
