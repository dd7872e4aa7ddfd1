package playlist

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/grafov/m3u8"
)

// Limits on what the readers accept. A 2-hour title at 4 s per segment has
// 1800 segments and its playlist, one EXT-X-KEY per segment, is about 200
// KiB; the limits leave two orders of magnitude on top while keeping a
// hostile or corrupt input from exhausting memory.
const (
	// MaxPlaylistBytes is the largest playlist ParseMedia and ParseMaster read.
	MaxPlaylistBytes = 64 << 20
	// MaxSegments is the largest number of segments ParseMedia accepts.
	MaxSegments = 200_000
)

// ByteRange is an EXT-X-BYTERANGE or an EXT-X-MAP BYTERANGE: Length bytes
// starting at Offset. Offset is always resolved, also when the playlist
// left it implicit.
type ByteRange struct {
	Length, Offset int64
}

// Key is an EXT-X-KEY tag's attributes, as written.
type Key struct {
	Method    string
	URI       string
	IV        string
	KeyFormat string
}

// Map is an EXT-X-MAP tag: the media initialization section.
type Map struct {
	URI       string
	ByteRange *ByteRange // nil when absent
}

// ParsedSegment is one media segment read from a media playlist.
type ParsedSegment struct {
	URI           string
	Duration      float64
	ByteRange     *ByteRange // nil when absent
	Discontinuity bool
	// Key is the key in effect for this segment (an EXT-X-KEY applies to
	// every following segment until the next one); nil when unencrypted.
	// Each segment has its own copy.
	Key *Key
	// Map is the EXT-X-MAP in effect for this segment; nil when absent.
	Map *Map
}

// ParsedMedia is a media playlist as read by ParseMedia.
type ParsedMedia struct {
	Segments []ParsedSegment
	// TargetDuration is the EXT-X-TARGETDURATION value as written, 0 when
	// absent.
	TargetDuration int
	// Ended is true when EXT-X-ENDLIST was seen: ffmpeg has finished.
	Ended bool
	// IFramesOnly is true when EXT-X-I-FRAMES-ONLY was seen: a trick play
	// playlist, each segment one I-frame.
	IFramesOnly bool
	// Key summarises the encryption when a single EXT-X-KEY, placed before
	// the first segment, covers the whole playlist (ffmpeg with one key and
	// no per-segment IV). It is then equal to every segment's Key. It is nil
	// when there are several EXT-X-KEY tags (as in our own playlists, one
	// per segment) or none. It is a summary, not an additional tag: a writer
	// must not emit it on top of the segment keys.
	Key *Key
}

// ParsedVariant is one EXT-X-STREAM-INF or EXT-X-I-FRAME-STREAM-INF.
type ParsedVariant struct {
	URI              string // as written
	Bandwidth        int64
	AverageBandwidth int64 // 0 when absent
	Codecs           string
	Width, Height    int     // 0 when RESOLUTION is absent
	FrameRate        float64 // 0 when absent
	Audio            string  // AUDIO group ID, "" when absent
}

// Rendition is one EXT-X-MEDIA tag.
type Rendition struct {
	Type     string // AUDIO, VIDEO, SUBTITLES or CLOSED-CAPTIONS
	GroupID  string
	Name     string
	URI      string // as written; "" when absent
	Language string
	Default  bool
}

// ParsedMaster is a master playlist as read by ParseMaster.
type ParsedMaster struct {
	Variants       []ParsedVariant // EXT-X-STREAM-INF, in playlist order
	IFrameVariants []ParsedVariant // EXT-X-I-FRAME-STREAM-INF, in playlist order
	Renditions     []Rendition     // EXT-X-MEDIA, in playlist order
}

type tagKind int

const (
	anyTag tagKind = iota
	masterTag
	mediaTag
)

// tagKinds lists the tags that can appear in only one kind of playlist
// (RFC 8216 sections 4.3.2 to 4.3.4, plus the later low-latency tags).
var tagKinds = map[string]tagKind{
	"#EXT-X-STREAM-INF":         masterTag,
	"#EXT-X-I-FRAME-STREAM-INF": masterTag,
	"#EXT-X-MEDIA":              masterTag,
	"#EXT-X-SESSION-DATA":       masterTag,
	"#EXT-X-SESSION-KEY":        masterTag,
	"#EXT-X-CONTENT-STEERING":   masterTag,

	"#EXTINF":                       mediaTag,
	"#EXT-X-TARGETDURATION":         mediaTag,
	"#EXT-X-MEDIA-SEQUENCE":         mediaTag,
	"#EXT-X-DISCONTINUITY-SEQUENCE": mediaTag,
	"#EXT-X-ENDLIST":                mediaTag,
	"#EXT-X-PLAYLIST-TYPE":          mediaTag,
	"#EXT-X-I-FRAMES-ONLY":          mediaTag,
	"#EXT-X-BYTERANGE":              mediaTag,
	"#EXT-X-DISCONTINUITY":          mediaTag,
	"#EXT-X-KEY":                    mediaTag,
	"#EXT-X-MAP":                    mediaTag,
	"#EXT-X-PROGRAM-DATE-TIME":      mediaTag,
	"#EXT-X-DATERANGE":              mediaTag,
	"#EXT-X-GAP":                    mediaTag,
	"#EXT-X-BITRATE":                mediaTag,
	"#EXT-X-PART":                   mediaTag,
	"#EXT-X-PART-INF":               mediaTag,
	"#EXT-X-SERVER-CONTROL":         mediaTag,
	"#EXT-X-SKIP":                   mediaTag,
	"#EXT-X-PRELOAD-HINT":           mediaTag,
	"#EXT-X-RENDITION-REPORT":       mediaTag,
}

func kindOf(line string) tagKind {
	if !strings.HasPrefix(line, "#EXT") {
		return anyTag
	}
	name, _, _ := strings.Cut(line, ":")
	return tagKinds[name]
}

// line is one trimmed, non-blank playlist line.
type line struct {
	text       string
	terminated bool // ended with a newline
}

// splitLines checks the #EXTM3U header and returns the non-blank lines,
// trimmed as grafov trims them.
func splitLines(data []byte) ([]line, error) {
	if bytes.HasPrefix(data, []byte("\xef\xbb\xbf")) {
		// RFC 8216 section 4.1: no BOM, and clients should refuse one.
		return nil, errors.New("playlist: starts with a byte order mark")
	}
	var lines []line
	for len(data) > 0 {
		raw, rest, found := bytes.Cut(data, []byte("\n"))
		data = rest
		text := strings.TrimSpace(string(raw))
		if text == "" {
			continue
		}
		lines = append(lines, line{text, found})
	}
	if len(lines) == 0 || lines[0].text != "#EXTM3U" {
		return nil, errors.New("playlist: does not start with #EXTM3U")
	}
	return lines, nil
}

func readAll(r io.Reader) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxPlaylistBytes+1))
	if err != nil {
		return nil, fmt.Errorf("playlist: reading: %w", err)
	}
	if len(data) > MaxPlaylistBytes {
		return nil, fmt.Errorf("playlist: larger than %d bytes", MaxPlaylistBytes)
	}
	return data, nil
}

// Kind tells whether data is a master playlist (true) or a media playlist
// (false), from the tags that only one kind may contain. It returns an error
// when data does not start with #EXTM3U, or has tags of both kinds or of
// neither.
func Kind(data []byte) (isMaster bool, err error) {
	lines, err := splitLines(data)
	if err != nil {
		return false, err
	}
	var master, media bool
	for _, l := range lines {
		switch kindOf(l.text) {
		case masterTag:
			master = true
		case mediaTag:
			media = true
		}
	}
	switch {
	case master && media:
		return false, errors.New("playlist: has both master and media playlist tags")
	case !master && !media:
		return false, errors.New("playlist: has neither master nor media playlist tags")
	}
	return master, nil
}

// recoverDecode turns a panic inside grafov's decoder into an error: its
// decoder indexes and dereferences freely on malformed input, and a playlist
// we read must never take the worker down.
func recoverDecode(err *error) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("playlist: malformed playlist (decoder panic: %v)", r)
	}
}

// noOffset marks an EXT-X-BYTERANGE written without "@offset". grafov parses
// a missing offset as 0, but RFC 8216 section 4.3.2.2 says the range then
// starts right after the previous segment's range; the marker lets us tell
// the two apart after decoding. Explicit negative offsets are refused before
// decoding, so the marker cannot come from the input.
const noOffset = -1

// ParseMedia reads a media playlist, as written by ffmpeg, by WriteMedia or
// by a legacy packager, with grafov's decoder in non-strict mode.
//
// It also reads a playlist that ffmpeg is still writing: without
// EXT-X-ENDLIST, Ended is false, and a last line without a newline is taken
// as possibly cut short and ignored (unless it is EXT-X-ENDLIST, which cannot
// be partial once complete). Tags that wait for a segment not yet written are
// ignored too.
//
// Before grafov sees the input, ParseMedia checks and normalises it, to avoid
// faults in grafov's decoder (see prepareMedia). Any panic in grafov is
// returned as an error.
func ParseMedia(r io.Reader) (pm *ParsedMedia, err error) {
	data, err := readAll(r)
	if err != nil {
		return nil, err
	}
	prep, err := prepareMedia(data)
	if err != nil {
		return nil, err
	}

	defer recoverDecode(&err)
	// grafov's MediaPlaylist decoder appends into a ring buffer of the
	// capacity given here; NewMediaPlaylist(_, 0) panics on the first
	// segment. prepareMedia counted the URI lines, an exact upper bound.
	p, err := m3u8.NewMediaPlaylist(0, uint(max(prep.uris, 1)))
	if err != nil {
		return nil, fmt.Errorf("playlist: %w", err)
	}
	if err := p.DecodeFrom(bytes.NewReader(prep.text), false); err != nil {
		return nil, fmt.Errorf("playlist: decoding media playlist: %w", err)
	}
	segs := p.GetAllSegments()
	if len(segs) != prep.uris {
		return nil, fmt.Errorf("playlist: decoded %d segments from %d URI lines", len(segs), prep.uris)
	}

	pm = &ParsedMedia{
		Segments:       make([]ParsedSegment, 0, len(segs)),
		TargetDuration: prep.target,
		Ended:          p.Closed,
		IFramesOnly:    p.Iframe,
	}
	// grafov attaches an EXT-X-KEY or EXT-X-MAP only to the segment right
	// after it, and also copies the first key to the playlist (p.Key), which
	// is how its encoder ends up writing the first key twice. We ignore
	// p.Key and p.Map and carry each tag forward as RFC 8216 defines.
	var (
		curKey  *Key
		curMap  *Map
		keyTags int
	)
	for i, s := range segs {
		if s == nil {
			return nil, fmt.Errorf("playlist: segment %d missing after decoding", i)
		}
		if s.Key != nil {
			keyTags++
			switch s.Key.Method {
			case "":
				return nil, fmt.Errorf("playlist: segment %d: EXT-X-KEY without METHOD", i)
			case "NONE":
				curKey = nil
			default:
				curKey = &Key{Method: s.Key.Method, URI: s.Key.URI, IV: s.Key.IV, KeyFormat: s.Key.Keyformat}
			}
		}
		if s.Map != nil {
			if s.Map.Limit < 0 || s.Map.Offset < 0 {
				return nil, fmt.Errorf("playlist: segment %d: EXT-X-MAP with a negative BYTERANGE", i)
			}
			curMap = &Map{URI: s.Map.URI}
			if s.Map.Limit > 0 {
				curMap.ByteRange = &ByteRange{Length: s.Map.Limit, Offset: s.Map.Offset}
			}
		}
		ps := ParsedSegment{URI: s.URI, Duration: s.Duration, Discontinuity: s.Discontinuity}
		if curKey != nil {
			k := *curKey
			ps.Key = &k
		}
		if curMap != nil {
			m := *curMap
			if m.ByteRange != nil {
				br := *m.ByteRange
				m.ByteRange = &br
			}
			ps.Map = &m
		}
		if s.Limit > 0 {
			br := &ByteRange{Length: s.Limit, Offset: s.Offset}
			if s.Offset == noOffset {
				if i == 0 || pm.Segments[i-1].ByteRange == nil || pm.Segments[i-1].URI != s.URI {
					return nil, fmt.Errorf("playlist: segment %d: EXT-X-BYTERANGE without offset must follow a range of the same resource", i)
				}
				prev := pm.Segments[i-1].ByteRange
				if prev.Offset > math.MaxInt64-prev.Length {
					return nil, fmt.Errorf("playlist: segment %d: byte range offset overflows", i)
				}
				br.Offset = prev.Offset + prev.Length
			}
			ps.ByteRange = br
		}
		pm.Segments = append(pm.Segments, ps)
	}
	if keyTags == 1 && segs[0].Key != nil && curKey != nil {
		k := *curKey
		pm.Key = &k
	}
	return pm, nil
}

type preparedMedia struct {
	text   []byte // normalised playlist for grafov
	uris   int    // URI lines, i.e. segments
	target int    // EXT-X-TARGETDURATION as written
}

// prepareMedia checks a media playlist and normalises it for grafov's
// decoder, working around these faults of grafov v0.12.1:
//
//   - Its MediaPlaylist decoder treats a blank line as a URI line, and the
//     empty string it reads after the final newline too: pending EXT-X-KEY,
//     EXT-X-MAP, EXT-X-BYTERANGE or EXT-X-DISCONTINUITY tags are then applied
//     to the previous segment (overwriting its key, say), or, before any
//     segment, dereference a nil segment and panic. Blank lines are dropped
//     and the text handed over has no final newline.
//   - A URI line with no EXTINF before it is not a segment for grafov but
//     still receives the pending tags, with the same effects; it is refused.
//   - It rewrites EXT-X-TARGETDURATION to ceil(EXTINF) whenever a segment is
//     longer, e.g. 5 for ffmpeg's "TARGETDURATION:4" with 4.004 s segments;
//     the value as written is read here.
//   - It keeps EXTINF's previous duration when the new one is empty, and
//     takes 0 for a malformed one; both are refused.
//   - It reads a missing EXT-X-BYTERANGE offset as 0; see noOffset.
func prepareMedia(data []byte) (*preparedMedia, error) {
	lines, err := splitLines(data)
	if err != nil {
		return nil, err
	}
	// A playlist being written may end mid-line. Only EXT-X-ENDLIST is
	// certainly complete without its newline; finished playlists written by
	// anyone end with it.
	if last := lines[len(lines)-1]; !last.terminated && last.text != "#EXT-X-ENDLIST" {
		lines = lines[:len(lines)-1]
	}

	prep := &preparedMedia{}
	var (
		out        bytes.Buffer
		pendingInf bool
	)
	for n, l := range lines {
		text := l.text
		lineNo := n + 1
		switch {
		case kindOf(text) == masterTag:
			return nil, fmt.Errorf("playlist: line %d: master playlist tag in a media playlist", lineNo)
		case strings.HasPrefix(text, "#EXTINF:"):
			if pendingInf {
				return nil, fmt.Errorf("playlist: line %d: EXTINF without a URI after the previous one", lineNo)
			}
			d, _, _ := strings.Cut(text[len("#EXTINF:"):], ",")
			v, err := strconv.ParseFloat(strings.TrimSpace(d), 64)
			if err != nil || math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
				return nil, fmt.Errorf("playlist: line %d: bad EXTINF duration %q", lineNo, d)
			}
			pendingInf = true
		case strings.HasPrefix(text, "#EXT-X-TARGETDURATION:"):
			v, err := strconv.ParseFloat(text[len("#EXT-X-TARGETDURATION:"):], 64)
			if err != nil || math.IsNaN(v) || v < 0 || v > 1e6 {
				return nil, fmt.Errorf("playlist: line %d: bad EXT-X-TARGETDURATION", lineNo)
			}
			prep.target = int(math.Ceil(v))
		case strings.HasPrefix(text, "#EXT-X-BYTERANGE:"):
			v := text[len("#EXT-X-BYTERANGE:"):]
			length, offset, hasOffset := strings.Cut(v, "@")
			if !isDecimal(length) || (hasOffset && !isDecimal(offset)) {
				return nil, fmt.Errorf("playlist: line %d: bad EXT-X-BYTERANGE %q", lineNo, v)
			}
			if n, err := strconv.ParseInt(length, 10, 64); err != nil || n == 0 {
				return nil, fmt.Errorf("playlist: line %d: bad EXT-X-BYTERANGE length %q", lineNo, length)
			}
			if hasOffset {
				if _, err := strconv.ParseInt(offset, 10, 64); err != nil {
					return nil, fmt.Errorf("playlist: line %d: bad EXT-X-BYTERANGE offset %q", lineNo, offset)
				}
			} else {
				text += "@" + strconv.Itoa(noOffset)
			}
		case !strings.HasPrefix(text, "#"):
			if !pendingInf {
				return nil, fmt.Errorf("playlist: line %d: URI without EXTINF", lineNo)
			}
			pendingInf = false
			prep.uris++
			if prep.uris > MaxSegments {
				return nil, fmt.Errorf("playlist: more than %d segments", MaxSegments)
			}
		}
		if out.Len() > 0 {
			out.WriteByte('\n')
		}
		out.WriteString(text)
	}
	prep.text = out.Bytes()
	return prep, nil
}

func isDecimal(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// renditionCollector receives every EXT-X-MEDIA line through grafov's
// custom-decoder hook. grafov itself keeps an EXT-X-MEDIA only when a variant
// references its group (attaching it to each such variant, so it appears
// several times); the hook sees each tag once, in order, referenced or not.
type renditionCollector struct {
	renditions []Rendition
}

const mediaTagPrefix = "#EXT-X-MEDIA:"

func (c *renditionCollector) TagName() string  { return mediaTagPrefix }
func (c *renditionCollector) SegmentTag() bool { return false }
func (c *renditionCollector) Decode(line string) (m3u8.CustomTag, error) {
	attrs := m3u8.DecodeAttributeList(line[len(mediaTagPrefix):])
	c.renditions = append(c.renditions, Rendition{
		Type:     attrs["TYPE"],
		GroupID:  attrs["GROUP-ID"],
		Name:     attrs["NAME"],
		URI:      attrs["URI"],
		Language: attrs["LANGUAGE"],
		Default:  attrs["DEFAULT"] == "YES",
	})
	// grafov stores the returned tag and calls TagName on it: never nil.
	return rawTag(line), nil
}

type rawTag string

func (t rawTag) TagName() string       { return mediaTagPrefix }
func (t rawTag) String() string        { return string(t) }
func (t rawTag) Encode() *bytes.Buffer { return bytes.NewBufferString(string(t)) }

// ParseMaster reads a master playlist with grafov's decoder in non-strict
// mode and returns its variants, I-frame variants and renditions, URIs as
// written. It returns an error for a playlist that is not a master playlist,
// a variant without a URI, a BANDWIDTH or AVERAGE-BANDWIDTH that is not a
// decimal integer fitting grafov's uint32, or a malformed RESOLUTION or
// FRAME-RATE (grafov would silently read those as 0 or wrap them).
func ParseMaster(r io.Reader) (pm *ParsedMaster, err error) {
	data, err := readAll(r)
	if err != nil {
		return nil, err
	}
	text, err := prepareMaster(data)
	if err != nil {
		return nil, err
	}

	defer recoverDecode(&err)
	p := m3u8.NewMasterPlaylist()
	collector := &renditionCollector{}
	p.WithCustomDecoders([]m3u8.CustomDecoder{collector})
	if err := p.DecodeFrom(bytes.NewReader(text), false); err != nil {
		return nil, fmt.Errorf("playlist: decoding master playlist: %w", err)
	}

	pm = &ParsedMaster{Renditions: collector.renditions}
	for i, v := range p.Variants {
		if v == nil {
			return nil, fmt.Errorf("playlist: variant %d missing after decoding", i)
		}
		if v.URI == "" {
			return nil, fmt.Errorf("playlist: variant %d has no URI", i)
		}
		pv := ParsedVariant{
			URI:              v.URI,
			Bandwidth:        int64(v.Bandwidth),
			AverageBandwidth: int64(v.AverageBandwidth),
			Codecs:           v.Codecs,
			FrameRate:        v.FrameRate,
			Audio:            v.Audio,
		}
		if v.Resolution != "" {
			pv.Width, pv.Height, err = parseResolution(v.Resolution)
			if err != nil {
				return nil, fmt.Errorf("playlist: variant %q: %w", v.URI, err)
			}
		}
		if v.Iframe {
			pm.IFrameVariants = append(pm.IFrameVariants, pv)
		} else {
			pm.Variants = append(pm.Variants, pv)
		}
	}
	return pm, nil
}

// prepareMaster checks a master playlist and normalises it for grafov's
// decoder: blank lines are dropped and the final newline removed, because
// grafov takes a blank line (and the empty string after the last newline)
// as the URI of a pending EXT-X-STREAM-INF. It also checks the numeric
// attributes grafov would misread.
func prepareMaster(data []byte) ([]byte, error) {
	lines, err := splitLines(data)
	if err != nil {
		return nil, err
	}
	var (
		out        bytes.Buffer
		pendingInf bool
	)
	for n, l := range lines {
		text := l.text
		lineNo := n + 1
		switch {
		case kindOf(text) == mediaTag:
			return nil, fmt.Errorf("playlist: line %d: media playlist tag in a master playlist", lineNo)
		case strings.HasPrefix(text, "#EXT-X-STREAM-INF:"):
			if pendingInf {
				return nil, fmt.Errorf("playlist: line %d: EXT-X-STREAM-INF without a URI after the previous one", lineNo)
			}
			pendingInf = true
			if err := checkStreamInf(text[len("#EXT-X-STREAM-INF:"):]); err != nil {
				return nil, fmt.Errorf("playlist: line %d: %w", lineNo, err)
			}
		case strings.HasPrefix(text, "#EXT-X-I-FRAME-STREAM-INF:"):
			if err := checkStreamInf(text[len("#EXT-X-I-FRAME-STREAM-INF:"):]); err != nil {
				return nil, fmt.Errorf("playlist: line %d: %w", lineNo, err)
			}
		case !strings.HasPrefix(text, "#"):
			if !pendingInf {
				return nil, fmt.Errorf("playlist: line %d: URI without EXT-X-STREAM-INF", lineNo)
			}
			pendingInf = false
		}
		if out.Len() > 0 {
			out.WriteByte('\n')
		}
		out.WriteString(text)
	}
	if pendingInf {
		return nil, errors.New("playlist: EXT-X-STREAM-INF without a URI at the end")
	}
	return out.Bytes(), nil
}

func checkStreamInf(attrList string) error {
	attrs := m3u8.DecodeAttributeList(attrList)
	for _, name := range []string{"BANDWIDTH", "AVERAGE-BANDWIDTH"} {
		v, ok := attrs[name]
		if !ok {
			if name == "BANDWIDTH" {
				return errors.New("BANDWIDTH missing")
			}
			continue
		}
		if !isDecimal(v) {
			return fmt.Errorf("bad %s %q", name, v)
		}
		if _, err := strconv.ParseUint(v, 10, 32); err != nil {
			return fmt.Errorf("%s %q out of range", name, v)
		}
	}
	if v, ok := attrs["FRAME-RATE"]; ok {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < 0 {
			return fmt.Errorf("bad FRAME-RATE %q", v)
		}
	}
	if v, ok := attrs["RESOLUTION"]; ok {
		if _, _, err := parseResolution(v); err != nil {
			return err
		}
	}
	return nil
}

func parseResolution(s string) (w, h int, err error) {
	ws, hs, ok := strings.Cut(s, "x")
	if ok && isDecimal(ws) && isDecimal(hs) {
		w, errW := strconv.Atoi(ws)
		h, errH := strconv.Atoi(hs)
		if errW == nil && errH == nil && w <= math.MaxInt32 && h <= math.MaxInt32 {
			return w, h, nil
		}
	}
	return 0, 0, fmt.Errorf("bad RESOLUTION %q", s)
}
