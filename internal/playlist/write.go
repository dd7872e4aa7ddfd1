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

// Segment is one media segment of a playlist we publish.
type Segment struct {
	URI      string  // relative to the playlist, e.g. "seg_00001.ts"
	Duration float64 // seconds, from ffmpeg's playlist
	Size     int64   // bytes as delivered (encrypted size); used for bandwidth
	IV       [16]byte
}

// Media is one rendition's VOD playlist. Every segment has its own random
// IV, so an EXT-X-KEY tag is written before every segment; the key URI is the
// same for all of them.
type Media struct {
	KeyURI   string
	Segments []Segment
}

// Variant is one rendition as listed in the master playlist.
type Variant struct {
	URI              string // relative, e.g. "720p/index.m3u8"
	Bandwidth        int64  // peak segment bit rate, bits/s
	AverageBandwidth int64  // average segment bit rate, bits/s
	Codecs           string // e.g. "avc1.64001f,mp4a.40.2"
	Width, Height    int
	FrameRate        float64 // written with 3 decimals
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

// WriteMedia writes m as a VOD media playlist:
//
//	#EXTM3U
//	#EXT-X-VERSION:3
//	#EXT-X-INDEPENDENT-SEGMENTS
//	#EXT-X-PLAYLIST-TYPE:VOD
//	#EXT-X-MEDIA-SEQUENCE:0
//	#EXT-X-TARGETDURATION:<max over segments of round-half-up(EXTINF), at least 1>
//	#EXT-X-KEY:METHOD=AES-128,URI="<KeyURI>",IV=0x<32 upper-case hex>   (before every segment)
//	#EXTINF:<duration, 3 decimals>,
//	<segment URI>
//	...
//	#EXT-X-ENDLIST
//
// Header tags come in grafov's order; RFC 8216 gives them no order.
// It returns an error for no segments, an empty or unsafe KeyURI, a segment
// URI that is absolute or contains "..", "?", "#", whitespace or control
// characters, or a duration that is NaN, infinite, not positive, rounds to
// 0.000, or is 8192 s or more (see maxSegmentDuration).
func WriteMedia(w io.Writer, m Media) error {
	if len(m.Segments) == 0 {
		return errors.New("playlist: media playlist has no segments")
	}
	if err := checkQuotedValue(m.KeyURI); err != nil {
		return fmt.Errorf("playlist: key URI: %w", err)
	}

	p, err := m3u8.NewMediaPlaylist(0, uint(len(m.Segments))) // sized exactly: grafov never grows a playlist it did not decode
	if err != nil {
		return fmt.Errorf("playlist: %w", err)
	}
	p.SetVersion(protocolVersion)
	p.SetCustomTag(independentSegments{})
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
		err = p.AppendSegment(&m3u8.MediaSegment{
			URI:      s.URI,
			Duration: dur,
			// A Key per segment and none on the playlist: grafov writes a
			// segment's key whenever it differs from the playlist key, so
			// every segment gets exactly one EXT-X-KEY and no header copy
			// duplicates the first.
			Key: &m3u8.Key{
				Method: "AES-128",
				URI:    m.KeyURI,
				IV:     formatIV(s.IV),
			},
		})
		if err != nil {
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

// WriteMaster writes the master playlist:
//
//	#EXTM3U
//	#EXT-X-VERSION:3
//	#EXT-X-INDEPENDENT-SEGMENTS
//	#EXT-X-STREAM-INF:BANDWIDTH=..,AVERAGE-BANDWIDTH=..,CODECS="..",RESOLUTION=WxH,FRAME-RATE=..
//	<variant URI>
//	...
//
// Variants are ordered by Bandwidth, highest first; equal bandwidths keep
// their input order. The caller's slice is not modified. Every attribute is
// required: URI as for segment URIs, 0 < AverageBandwidth <= Bandwidth <=
// 4294967295 (grafov stores uint32), Codecs a non-empty quoted-string value,
// positive Width and Height, and a positive finite FrameRate. Version 3: see
// protocolVersion; since PROGRAM-ID is not written, nothing ties the playlist
// to a version below 6 either.
func WriteMaster(w io.Writer, variants []Variant) error {
	if len(variants) == 0 {
		return errors.New("playlist: master playlist has no variants")
	}
	sorted := slices.Clone(variants)
	slices.SortStableFunc(sorted, func(a, b Variant) int {
		return -compareInt64(a.Bandwidth, b.Bandwidth)
	})

	p := m3u8.NewMasterPlaylist()
	p.SetVersion(protocolVersion)
	p.SetIndependentSegments(true)
	seen := make(map[string]bool, len(sorted))
	for _, v := range sorted {
		if err := checkVariant(v); err != nil {
			return fmt.Errorf("playlist: variant %q: %w", v.URI, err)
		}
		if seen[v.URI] {
			return fmt.Errorf("playlist: variant %q listed twice", v.URI)
		}
		seen[v.URI] = true
		p.Append(v.URI, nil, m3u8.VariantParams{
			Bandwidth:        uint32(v.Bandwidth),
			AverageBandwidth: uint32(v.AverageBandwidth),
			Codecs:           v.Codecs,
			Resolution:       strconv.Itoa(v.Width) + "x" + strconv.Itoa(v.Height),
			FrameRate:        v.FrameRate,
		})
	}
	out, err := dropProgramID(p.Encode().Bytes(), len(sorted))
	if err != nil {
		return err
	}
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

func checkVariant(v Variant) error {
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
