// Package playlist writes every HLS playlist the project publishes, and reads
// the playlists that ffmpeg, our own writer or a legacy packager produced.
//
// Writing goes through github.com/grafov/m3u8 so that the format logic lives
// in one well-known library, but grafov v0.12.1 has faults that would break
// players or our byte-for-byte golden tests. Each is worked around here; the
// comment at each workaround says which fault and why. Output is
// deterministic: the same input always gives the same bytes.
package playlist

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/grafov/m3u8"
)

// Segment is one media segment of a playlist we publish. Every segment is
// encrypted whole with AES-128 under its own IV.
type Segment struct {
	URI      string  // relative to the playlist, e.g. "seg_00001.ts"
	Duration float64 // seconds
	Size     int64   // bytes as delivered (encrypted size); used for bandwidth
	IV       [16]byte
	// Discontinuity writes EXT-X-DISCONTINUITY before the segment.
	Discontinuity bool
	// Init starts applying at this segment (EXT-X-MAP); nil: the previous
	// one, if any, still applies. A playlist with init sections must give
	// its first segment one.
	Init *Init
	// ByteRange, when set, makes the segment a sub-range of its URI
	// (EXT-X-BYTERANGE). RFC 8216 treats each range as its own encrypted
	// segment, so the range must have been encrypted on its own.
	ByteRange *ByteRange
	// KeyURI is the EXT-X-KEY URI of the key that encrypted the segment
	// (its key period's); "" means Media.KeyURI.
	KeyURI string
}

// Init is an EXT-X-MAP media initialization section stored as its own
// object, encrypted whole under its own IV.
type Init struct {
	URI string // relative to the playlist, e.g. "init_00000.mp4"
	IV  [16]byte
	// KeyURI is the EXT-X-KEY URI of the key that encrypted the section;
	// "" means the key of the segment it starts at. RFC 8216 section
	// 4.3.2.5: the EXT-X-KEY in effect at the EXT-X-MAP decrypts it.
	KeyURI string
}

// Media is one rendition's VOD playlist. Every segment has its own IV, so
// an EXT-X-KEY tag is written before every segment; its URI is the
// segment's KeyURI (the key of its key period), or KeyURI for segments that
// name none, so the URI changes where a new key period starts.
type Media struct {
	KeyURI   string
	Segments []Segment
	// Independent writes EXT-X-INDEPENDENT-SEGMENTS: true for our own
	// transcodes (every segment starts with a keyframe), only when the
	// source said so for a legacy title.
	Independent bool
	// IFramesOnly writes EXT-X-I-FRAMES-ONLY (and EXT-X-VERSION 4 at
	// least): each segment is one I-frame and its EXTINF the time until
	// the next one (trick play).
	IFramesOnly bool
}

// Variant is one EXT-X-STREAM-INF of a master playlist. Only URI and
// Bandwidth are always required; Master.Complete requires the rest.
type Variant struct {
	URI              string // relative, e.g. "720p/index.m3u8"
	Bandwidth        int64  // peak segment bit rate, bits/s
	AverageBandwidth int64  // average segment bit rate, bits/s; 0: not written
	Codecs           string // e.g. "avc1.64001f,mp4a.40.2"
	Width, Height    int
	FrameRate        float64 // written with 3 decimals
	// Group ids of the alternative renditions this variant plays with.
	Audio, Video, Subtitles string
	// ClosedCaptions is the CLOSED-CAPTIONS attribute: a CLOSED-CAPTIONS
	// group id, "NONE" (the media carries none), or "" for none written
	// (unknown; Master.Complete writes NONE).
	ClosedCaptions string
}

// Alternative is one EXT-X-MEDIA rendition (TYPE AUDIO, VIDEO, SUBTITLES
// or CLOSED-CAPTIONS) of a master playlist.
type Alternative struct {
	Type            string
	GroupID         string
	Name            string
	Language        string
	Default         bool
	Autoselect      string // "YES", "NO" or ""
	Characteristics string
	// Channels is the CHANNELS attribute of an AUDIO rendition ("2");
	// "" writes none.
	Channels string
	URI      string // relative; "" for a rendition carried in the variant's stream
	// Forced writes FORCED=YES (SUBTITLES only): the rendition carries
	// only forced narrative (signs, foreign dialogue).
	Forced bool
	// InstreamID is the INSTREAM-ID of a CLOSED-CAPTIONS rendition ("CC1"),
	// which has no URI: the captions travel in the video stream.
	InstreamID string
}

// IFrameVariant is one EXT-X-I-FRAME-STREAM-INF of a master playlist: an
// I-frame-only media playlist of one video rendition, for trick play.
// Codecs names the video only (RFC 8216 section 4.3.4.3).
type IFrameVariant struct {
	URI              string // relative, e.g. "720p-iframes/index.m3u8"
	Bandwidth        int64  // peak I-frame segment bit rate, bits/s
	AverageBandwidth int64  // 0: not written
	Codecs           string
	Width, Height    int
}

// Master is a master playlist.
type Master struct {
	Variants []Variant // written in this order: players start with the first
	// IFrameVariants are written after the variants, in this order.
	IFrameVariants []IFrameVariant
	Alternatives   []Alternative
	// Independent writes EXT-X-INDEPENDENT-SEGMENTS.
	Independent bool
	// Complete is what our own transcodes promise: every variant carries
	// AVERAGE-BANDWIDTH, CODECS, RESOLUTION and FRAME-RATE, and the writer
	// refuses one that does not rather than publish a master a player
	// must guess at.
	Complete bool
}

// SortByBandwidth returns the variants ordered by Bandwidth, highest first
// (equal bandwidths keep their order), without modifying vs: the order our
// own transcodes publish, so that players start high.
func SortByBandwidth(vs []Variant) []Variant {
	sorted := slices.Clone(vs)
	slices.SortStableFunc(sorted, func(a, b Variant) int {
		return -compareInt64(a.Bandwidth, b.Bandwidth)
	})
	return sorted
}

// protocolVersion is the EXT-X-VERSION of everything we write. RFC 8216
// section 7: the IV attribute needs 2 and floating-point EXTINF needs 3;
// nothing else we write has a requirement (AVERAGE-BANDWIDTH, FRAME-RATE and
// EXT-X-INDEPENDENT-SEGMENTS are not listed there). Staying at 3 keeps the
// oldest players, and matches what ffmpeg writes.
const protocolVersion = 3

// maxSegmentDuration bounds EXTINF values (exclusive). grafov formats EXTINF
// through float32 (strconv.FormatFloat(d, 'f', 3, 32)); below 2^13 s a
// float32 is within 0.00025 of any millisecond value, so pre-rounding to
// milliseconds makes its output exact. Longer "segments" are nonsense for
// HLS anyway.
const maxSegmentDuration = 8192

// independentSegments is written through grafov's custom-tag hook:
// MediaPlaylist has no field for EXT-X-INDEPENDENT-SEGMENTS (grafov drops
// it), and custom tags are written right after EXT-X-VERSION. With a single
// custom tag, grafov's map iteration cannot reorder anything.
type independentSegments struct{}

func (independentSegments) TagName() string { return "#EXT-X-INDEPENDENT-SEGMENTS" }
func (independentSegments) String() string  { return "#EXT-X-INDEPENDENT-SEGMENTS" }
func (t independentSegments) Encode() *bytes.Buffer {
	return bytes.NewBufferString(t.String())
}

// versionMap is the EXT-X-VERSION of a playlist with EXT-X-MAP: RFC 8216
// section 7 requires 6 for EXT-X-MAP in a playlist without
// EXT-X-I-FRAMES-ONLY.
const versionMap = 6

// versionIFramesOnly is the EXT-X-VERSION EXT-X-I-FRAMES-ONLY needs (RFC
// 8216 section 7).
const versionIFramesOnly = 4

// versionByteRange is the EXT-X-VERSION EXT-X-BYTERANGE needs (RFC 8216
// section 7).
const versionByteRange = 4

// segmentKeyTag is an EXT-X-KEY written through grafov's custom segment tag
// hook. grafov writes a segment's tags in a fixed order (KEY, DISCONTINUITY,
// MAP, …, custom tags, EXTINF) and one Key per segment; a segment that
// starts a new init section needs two: the init section's IV must be in
// effect at the EXT-X-MAP (RFC 8216 section 4.3.2.5 requires an explicit IV
// for an encrypted EXT-X-MAP), and the segment's own IV after it.
type segmentKeyTag struct{ line string }

func (t segmentKeyTag) TagName() string       { return "#EXT-X-KEY" }
func (t segmentKeyTag) String() string        { return t.line }
func (t segmentKeyTag) Encode() *bytes.Buffer { return bytes.NewBufferString(t.line) }

func keyLine(uri string, iv [16]byte) string {
	return `#EXT-X-KEY:METHOD=AES-128,URI="` + uri + `",IV=` + formatIV(iv)
}

// WriteMedia writes m as a VOD media playlist:
//
//	#EXTM3U
//	#EXT-X-VERSION:3                (4 with EXT-X-BYTERANGE or EXT-X-I-FRAMES-ONLY, 6 with EXT-X-MAP)
//	#EXT-X-INDEPENDENT-SEGMENTS     (when m.Independent)
//	#EXT-X-PLAYLIST-TYPE:VOD
//	#EXT-X-MEDIA-SEQUENCE:0
//	#EXT-X-TARGETDURATION:<max over segments of round-half-up(EXTINF), at least 1>
//	#EXT-X-I-FRAMES-ONLY            (when m.IFramesOnly)
//	#EXT-X-KEY:METHOD=AES-128,URI="<init key URI>",IV=0x<init IV>    (segments that start an init section)
//	#EXT-X-DISCONTINUITY                                         (when asked)
//	#EXT-X-MAP:URI="<init URI>"                                  (segments that start an init section)
//	#EXT-X-KEY:METHOD=AES-128,URI="<segment key URI>",IV=0x<32 upper-case hex>   (before every segment)
//	#EXT-X-BYTERANGE:<length>@<offset>                           (when set)
//	#EXTINF:<duration, 3 decimals>,
//	<segment URI>
//	...
//	#EXT-X-ENDLIST
//
// A segment without Init has a single EXT-X-KEY (its own IV) before its
// optional EXT-X-DISCONTINUITY. Header tags come in grafov's order; RFC
// 8216 gives them no order. It returns an error for no segments, a segment
// or init section without a key URI (its own, or m.KeyURI), an unsafe key
// URI, a segment or init URI that is absolute or contains
// "..", "?", "#", whitespace or control characters, a duration that is NaN,
// infinite, not positive, rounds to 0.000, or is 8192 s or more (see
// maxSegmentDuration), a byte range that is empty or negative, or init
// sections that do not start at the first segment.
func WriteMedia(w io.Writer, m Media) error {
	if len(m.Segments) == 0 {
		return errors.New("playlist: media playlist has no segments")
	}
	if m.KeyURI != "" {
		if err := checkQuotedValue(m.KeyURI); err != nil {
			return fmt.Errorf("playlist: key URI: %w", err)
		}
	}
	p, err := m3u8.NewMediaPlaylist(0, uint(len(m.Segments))) // sized exactly: grafov never grows a playlist it did not decode
	if err != nil {
		return fmt.Errorf("playlist: %w", err)
	}
	version := uint8(protocolVersion)
	hasInit := false
	for _, s := range m.Segments {
		if s.Init != nil {
			hasInit = true
		}
		if s.ByteRange != nil {
			version = max(version, versionByteRange)
		}
	}
	if hasInit {
		if m.Segments[0].Init == nil {
			return errors.New("playlist: the first segment has no init section while later ones do")
		}
		version = versionMap
	}
	if m.IFramesOnly {
		version = max(version, versionIFramesOnly)
		p.Iframe = true
	}
	p.SetVersion(version)
	if m.Independent {
		p.SetCustomTag(independentSegments{})
	}
	p.MediaType = m3u8.VOD
	p.Closed = true // EXT-X-ENDLIST

	durations := make([]int64, len(m.Segments))
	for i, s := range m.Segments {
		if err := checkRelativeURI(s.URI); err != nil {
			return fmt.Errorf("playlist: segment %d URI %q: %w", i, s.URI, err)
		}
		dur, ms, err := extinfDuration(s.Duration)
		if err != nil {
			return fmt.Errorf("playlist: segment %d (%s): %w", i, s.URI, err)
		}
		durations[i] = ms
		keyURI := m.KeyURI
		if s.KeyURI != "" {
			keyURI = s.KeyURI
		}
		if err := checkQuotedValue(keyURI); err != nil {
			return fmt.Errorf("playlist: segment %d (%s) key URI: %w", i, s.URI, err)
		}
		seg := &m3u8.MediaSegment{
			URI:           s.URI,
			Duration:      dur,
			Discontinuity: s.Discontinuity,
			// A Key per segment and none on the playlist: grafov writes a
			// segment's key whenever it differs from the playlist key, so
			// every segment gets exactly one EXT-X-KEY and no header copy
			// duplicates the first.
			Key: &m3u8.Key{Method: "AES-128", URI: keyURI, IV: formatIV(s.IV)},
		}
		if br := s.ByteRange; br != nil {
			if br.Length <= 0 || br.Offset < 0 {
				return fmt.Errorf("playlist: segment %d (%s): byte range %d@%d", i, s.URI, br.Length, br.Offset)
			}
			seg.Limit, seg.Offset = br.Length, br.Offset
		}
		if s.Init != nil {
			if err := checkRelativeURI(s.Init.URI); err != nil {
				return fmt.Errorf("playlist: segment %d init URI %q: %w", i, s.Init.URI, err)
			}
			initKey := keyURI
			if s.Init.KeyURI != "" {
				initKey = s.Init.KeyURI
				if err := checkQuotedValue(initKey); err != nil {
					return fmt.Errorf("playlist: segment %d init key URI: %w", i, err)
				}
			}
			seg.Key = &m3u8.Key{Method: "AES-128", URI: initKey, IV: formatIV(s.Init.IV)}
			seg.Map = &m3u8.Map{URI: s.Init.URI}
			seg.Custom = map[string]m3u8.CustomTag{"#EXT-X-KEY": segmentKeyTag{keyLine(keyURI, s.IV)}}
		}
		if err := p.AppendSegment(seg); err != nil {
			return fmt.Errorf("playlist: segment %d: %w", i, err)
		}
	}
	// grafov computes TARGETDURATION as ceil(max duration), so a 4.004 s
	// segment would give 5. RFC 8216 section 4.3.3.1 only requires each
	// EXTINF rounded to the nearest integer to be <= the target, and players
	// size buffers and reload timers from it, so we set the smallest valid
	// value; being integral, grafov's ceil leaves it unchanged.
	p.TargetDuration = float64(targetDuration(durations))

	if _, err := w.Write(p.Encode().Bytes()); err != nil {
		return fmt.Errorf("playlist: writing media playlist: %w", err)
	}
	return nil
}

// formatIV writes the IV as RFC 8216's hexadecimal-sequence: grafov writes
// the IV attribute verbatim, so the 0x prefix is ours to add. Section 4.2
// lists the digits as [0..9] and [A..F], hence upper case.
func formatIV(iv [16]byte) string {
	return fmt.Sprintf("0x%X", iv[:])
}

// extinfDuration returns the duration rounded to the milliseconds that are
// written, as a float64 and as an integer count of milliseconds.
func extinfDuration(d float64) (float64, int64, error) {
	if math.IsNaN(d) || math.IsInf(d, 0) || d <= 0 {
		return 0, 0, fmt.Errorf("duration %v is not a positive number", d)
	}
	if d >= maxSegmentDuration {
		return 0, 0, fmt.Errorf("duration %v is not below %d s", d, maxSegmentDuration)
	}
	// Round in decimal, once, with FormatFloat: math.Round(d*1000) can round
	// twice (the product is itself rounded) and disagree with the text.
	text := strconv.FormatFloat(d, 'f', 3, 64)
	ms, err := strconv.ParseInt(strings.Replace(text, ".", "", 1), 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("duration %v: %w", d, err)
	}
	if ms <= 0 {
		return 0, 0, fmt.Errorf("duration %v rounds to 0.000", d)
	}
	rounded, err := strconv.ParseFloat(text, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("duration %v: %w", d, err)
	}
	// Belt and braces for the float32 formatting in grafov's writer: the
	// bound above guarantees this, the check keeps it true if it changes.
	if got := strconv.FormatFloat(rounded, 'f', 3, 32); got != text {
		return 0, 0, fmt.Errorf("duration %v would be written as %s instead of %s", d, got, text)
	}
	return rounded, ms, nil
}

// Starts returns the media start time (seconds) of each of segments of the
// given durations, as players compute it from the EXTINF values WriteMedia
// writes: the sum of the earlier durations rounded to milliseconds, summed
// exactly. Key periods are chosen from these starts, so that a writer, a
// verifier and the gateway reading the playlist back agree on them. It
// fails on a duration WriteMedia refuses.
func Starts(durations []float64) ([]float64, error) {
	out := make([]float64, len(durations))
	var ms int64
	for i, d := range durations {
		out[i] = float64(ms) / 1000
		_, n, err := extinfDuration(d)
		if err != nil {
			return nil, fmt.Errorf("playlist: segment %d: %w", i, err)
		}
		ms += n
	}
	return out, nil
}

// DurationMillis is d as WriteMedia writes it in EXTINF, in milliseconds
// (see Starts).
func DurationMillis(d float64) (int64, error) {
	_, ms, err := extinfDuration(d)
	return ms, err
}

// roundHalfUpSeconds rounds a millisecond count to whole seconds, halves up.
func roundHalfUpSeconds(ms int64) int {
	return int((ms + 500) / 1000)
}

// targetDuration is the EXT-X-TARGETDURATION WriteMedia writes for these
// millisecond durations (EXTINF as written, so that the rounding the RFC
// applies to EXTINF is the one checked here). It is at least 1: a zero
// target is meaningless to players, and 1 still bounds any sub-half-second
// segment.
func targetDuration(ms []int64) int {
	t := 1
	for _, m := range ms {
		t = max(t, roundHalfUpSeconds(m))
	}
	return t
}

// checkRelativeURI accepts only plain relative references below the
// playlist: the URI lines we write are later rewritten by the gateway into
// signed URLs, and anything that could escape the version's folder, carry its
// own query or fragment, or split the line must be refused here.
func checkRelativeURI(s string) error {
	if s == "" {
		return errors.New("empty")
	}
	if !utf8.ValidString(s) {
		return errors.New("not valid UTF-8")
	}
	for _, r := range s {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return errors.New("contains whitespace or control characters")
		}
	}
	switch {
	case strings.Contains(s, ".."):
		return errors.New(`contains ".."`)
	case strings.ContainsAny(s, "?#"):
		return errors.New(`contains "?" or "#"`)
	case strings.HasPrefix(s, "/") || strings.HasPrefix(s, `\`):
		return errors.New("is absolute")
	case strings.Contains(s, `\`):
		return errors.New(`contains "\"`)
	}
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("not a URI reference: %w", err)
	}
	if u.IsAbs() || u.Host != "" || u.Opaque != "" {
		return errors.New("is absolute")
	}
	return nil
}

// checkQuotedValue accepts a value for a quoted-string attribute: RFC 8216
// section 4.2 forbids '"', CR and LF inside, and control characters would
// break the line; grafov writes the value verbatim between quotes.
func checkQuotedValue(s string) error {
	if s == "" {
		return errors.New("empty")
	}
	if !utf8.ValidString(s) {
		return errors.New("not valid UTF-8")
	}
	for _, r := range s {
		if r == '"' || unicode.IsControl(r) {
			return errors.New(`contains '"' or control characters`)
		}
	}
	return nil
}

// WriteMaster writes a master playlist: EXT-X-VERSION 3 (4 with
// EXT-X-MEDIA renditions: grafov raises it, which RFC 8216 section 7
// allows), the EXT-X-MEDIA renditions first (in order), then the variants
// in their given order (see SortByBandwidth):
//
//	#EXTM3U
//	#EXT-X-VERSION:3
//	#EXT-X-INDEPENDENT-SEGMENTS     (when m.Independent)
//	#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="..",NAME="..",...
//	#EXT-X-STREAM-INF:BANDWIDTH=..,AVERAGE-BANDWIDTH=..,CODECS="..",RESOLUTION=WxH,FRAME-RATE=..,AUDIO=".."
//	<variant URI>
//	...
//	#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=..,AVERAGE-BANDWIDTH=..,CODECS="..",RESOLUTION=WxH,URI=".."
//	...                             (m.IFrameVariants, see appendIFrameVariants)
//
// URIs must be plain relative references, as for segment URIs; 0 <
// Bandwidth <= 4294967295 (grafov stores uint32) and 0 <= AverageBandwidth
// <= Bandwidth; each group a variant names must exist with the matching
// TYPE; a rendition's TYPE, GROUP-ID and NAME are required, and TYPE,
// GROUP-ID, NAME and LANGUAGE together must be unique (grafov writes one tag
// per combination). With m.Complete every variant also needs a positive
// AverageBandwidth, a non-empty Codecs, positive Width and Height and a
// positive finite FrameRate, and is written with CLOSED-CAPTIONS=NONE (the
// encode guarantees there are none). An AUDIO rendition's Channels is
// written as CHANNELS, before its URI. Since PROGRAM-ID is not written, nothing ties
// the playlist to a version below 6.
func WriteMaster(w io.Writer, m Master) error {
	if len(m.Variants) == 0 {
		return errors.New("playlist: master playlist has no variants")
	}
	groups := map[string]string{} // group id → type
	seen := map[string]bool{}
	alts := make([]*m3u8.Alternative, 0, len(m.Alternatives))
	for i, r := range m.Alternatives {
		switch r.Type {
		case "AUDIO", "VIDEO", "SUBTITLES":
			if r.InstreamID != "" {
				return fmt.Errorf("playlist: rendition %d: INSTREAM-ID on a %s rendition", i, r.Type)
			}
		case "CLOSED-CAPTIONS":
			if err := CheckClosedCaptions(r); err != nil {
				return fmt.Errorf("playlist: rendition %d: %w", i, err)
			}
		default:
			return fmt.Errorf("playlist: rendition %d: TYPE %q is not AUDIO, VIDEO, SUBTITLES or CLOSED-CAPTIONS", i, r.Type)
		}
		for name, v := range map[string]string{"GROUP-ID": r.GroupID, "NAME": r.Name} {
			if err := checkQuotedValue(v); err != nil {
				return fmt.Errorf("playlist: rendition %d %s: %w", i, name, err)
			}
		}
		for name, v := range map[string]string{"LANGUAGE": r.Language, "CHARACTERISTICS": r.Characteristics} {
			if v == "" {
				continue
			}
			if err := checkQuotedValue(v); err != nil {
				return fmt.Errorf("playlist: rendition %d %s: %w", i, name, err)
			}
		}
		if err := checkChannels(r.Channels); err != nil {
			return fmt.Errorf("playlist: rendition %d: %w", i, err)
		}
		switch r.Autoselect {
		case "", "YES", "NO":
		default:
			return fmt.Errorf("playlist: rendition %d: AUTOSELECT %q", i, r.Autoselect)
		}
		if r.URI != "" {
			if err := checkRelativeURI(r.URI); err != nil {
				return fmt.Errorf("playlist: rendition %d URI %q: %w", i, r.URI, err)
			}
		}
		if t, ok := groups[r.GroupID]; ok && t != r.Type {
			return fmt.Errorf("playlist: group %q holds both %s and %s renditions", r.GroupID, t, r.Type)
		}
		groups[r.GroupID] = r.Type
		k := r.Type + "\x00" + r.GroupID + "\x00" + r.Name + "\x00" + r.Language
		if seen[k] {
			return fmt.Errorf("playlist: rendition %d repeats TYPE, GROUP-ID, NAME and LANGUAGE of an earlier one", i)
		}
		seen[k] = true
		if r.Forced && r.Type != "SUBTITLES" {
			return fmt.Errorf("playlist: rendition %d: FORCED on a %s rendition", i, r.Type)
		}
		alt := &m3u8.Alternative{
			Type: r.Type, GroupId: r.GroupID, Name: r.Name, Language: r.Language, Default: r.Default,
			Autoselect: r.Autoselect, Characteristics: r.Characteristics, URI: r.URI,
		}
		if r.Forced {
			alt.Forced = "YES" // grafov quotes it; unquoted below
		}
		alts = append(alts, alt)
	}

	p := m3u8.NewMasterPlaylist()
	p.SetVersion(protocolVersion)
	p.SetIndependentSegments(m.Independent)
	uris := map[string]bool{}
	for i, v := range m.Variants {
		if m.Complete {
			if err := checkCompleteVariant(v); err != nil {
				return fmt.Errorf("playlist: variant %q: %w", v.URI, err)
			}
		}
		if err := checkRelativeURI(v.URI); err != nil {
			return fmt.Errorf("playlist: variant %d URI %q: %w", i, v.URI, err)
		}
		if uris[v.URI] {
			return fmt.Errorf("playlist: variant %q listed twice", v.URI)
		}
		uris[v.URI] = true
		if v.Bandwidth <= 0 || v.Bandwidth > math.MaxUint32 {
			return fmt.Errorf("playlist: variant %q: bandwidth %d out of range", v.URI, v.Bandwidth)
		}
		if v.AverageBandwidth < 0 || v.AverageBandwidth > v.Bandwidth {
			return fmt.Errorf("playlist: variant %q: average bandwidth %d out of range 0..%d", v.URI, v.AverageBandwidth, v.Bandwidth)
		}
		if v.Codecs != "" {
			if err := checkQuotedValue(v.Codecs); err != nil || strings.ContainsFunc(v.Codecs, unicode.IsSpace) {
				return fmt.Errorf("playlist: variant %q: bad CODECS %q", v.URI, v.Codecs)
			}
		}
		if (v.Width == 0) != (v.Height == 0) || v.Width < 0 || v.Height < 0 {
			return fmt.Errorf("playlist: variant %q: resolution %dx%d", v.URI, v.Width, v.Height)
		}
		if math.IsNaN(v.FrameRate) || math.IsInf(v.FrameRate, 0) || v.FrameRate < 0 {
			return fmt.Errorf("playlist: variant %q: frame rate %v", v.URI, v.FrameRate)
		}
		cc := v.ClosedCaptions
		if cc == "NONE" {
			cc = ""
		}
		for typ, g := range map[string]string{"AUDIO": v.Audio, "VIDEO": v.Video, "SUBTITLES": v.Subtitles, "CLOSED-CAPTIONS": cc} {
			if g != "" && groups[g] != typ {
				return fmt.Errorf("playlist: variant %q names %s group %q, which has no %s rendition", v.URI, typ, g, typ)
			}
		}
		params := m3u8.VariantParams{
			Bandwidth:        uint32(v.Bandwidth),
			AverageBandwidth: uint32(v.AverageBandwidth),
			Codecs:           v.Codecs,
			FrameRate:        v.FrameRate,
			Audio:            v.Audio,
			Video:            v.Video,
			Subtitles:        v.Subtitles,
		}
		switch {
		case v.ClosedCaptions != "":
			params.Captions = v.ClosedCaptions
		case m.Complete:
			// Our own encodes never carry CEA-608/708 (x264 runs with
			// -a53cc 0), so they say so.
			params.Captions = "NONE"
		}
		if v.Width > 0 {
			params.Resolution = strconv.Itoa(v.Width) + "x" + strconv.Itoa(v.Height)
		}
		if i == 0 {
			// grafov writes a variant's alternatives just before it, once
			// each: hanging them all on the first puts them all on top.
			params.Alternatives = alts
		}
		p.Append(v.URI, nil, params)
	}
	if err := appendIFrameVariants(p, m, uris); err != nil {
		return err
	}
	out, err := dropProgramID(p.Encode().Bytes(), len(m.Variants))
	if err == nil {
		out, err = dropIFrameProgramID(out, len(m.IFrameVariants))
	}
	if err != nil {
		return err
	}
	if out, err = addMediaAttributes(out, m.Alternatives); err != nil {
		return err
	}
	// FORCED is an enumerated string (RFC 8216 4.3.4.1): no quotes. No
	// quoted value can hold a quote, so only the attribute matches.
	out = bytes.ReplaceAll(out, []byte(`,FORCED="YES"`), []byte(`,FORCED=YES`))
	if _, err := w.Write(out); err != nil {
		return fmt.Errorf("playlist: writing master playlist: %w", err)
	}
	return nil
}

func compareInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// checkCompleteVariant holds a variant to what Master.Complete promises.
func checkCompleteVariant(v Variant) error {
	if err := checkRelativeURI(v.URI); err != nil {
		return fmt.Errorf("URI: %w", err)
	}
	if v.Bandwidth <= 0 || v.Bandwidth > math.MaxUint32 {
		return fmt.Errorf("bandwidth %d out of range 1..%d", v.Bandwidth, uint32(math.MaxUint32))
	}
	if v.AverageBandwidth <= 0 || v.AverageBandwidth > v.Bandwidth {
		return fmt.Errorf("average bandwidth %d out of range 1..%d (the peak)", v.AverageBandwidth, v.Bandwidth)
	}
	if err := checkQuotedValue(v.Codecs); err != nil {
		return fmt.Errorf("codecs: %w", err)
	}
	if strings.ContainsFunc(v.Codecs, unicode.IsSpace) {
		return errors.New("codecs: contains whitespace")
	}
	if v.Width <= 0 || v.Height <= 0 {
		return fmt.Errorf("resolution %dx%d is not positive", v.Width, v.Height)
	}
	if math.IsNaN(v.FrameRate) || math.IsInf(v.FrameRate, 0) || v.FrameRate <= 0 ||
		strconv.FormatFloat(v.FrameRate, 'f', 3, 64) == "0.000" {
		return fmt.Errorf("frame rate %v is not a positive number", v.FrameRate)
	}
	return nil
}

// dropProgramID removes the PROGRAM-ID attribute that grafov always writes
// on EXT-X-STREAM-INF (there is no option to omit it). RFC 8216 removed it
// (section 7: not to be used with protocol version 6 or later) and strict
// validators flag it. The edit is anchored to the start of the tag so that
// nothing else can match, and every variant must have been rewritten.
func dropProgramID(b []byte, variants int) ([]byte, error) {
	const (
		from = "\n#EXT-X-STREAM-INF:PROGRAM-ID=0,"
		to   = "\n#EXT-X-STREAM-INF:"
	)
	if n := bytes.Count(b, []byte(from)); n != variants {
		return nil, fmt.Errorf("playlist: grafov wrote %d EXT-X-STREAM-INF tags in the expected form, want %d", n, variants)
	}
	return bytes.ReplaceAll(b, []byte(from), []byte(to)), nil
}
