package playlist

// Playlists for re-encrypted legacy titles (internal/backfill). Legacy
// titles come in more shapes than our own transcodes: fMP4 with EXT-X-MAP
// init sections, EXT-X-DISCONTINUITY, masters with alternate audio in
// EXT-X-MEDIA groups, variants without CODECS or RESOLUTION. WriteMedia and
// WriteMaster pin our transcode output and refuse these, so the writers here
// express them, still through grafov, with the same validation and the same
// workarounds.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"unicode"

	"github.com/grafov/m3u8"
)

// EncryptedInit is an EXT-X-MAP media initialization section stored as its
// own object, encrypted whole under its own IV.
type EncryptedInit struct {
	URI string // relative to the playlist, e.g. "init_00000.mp4"
	IV  [16]byte
}

// EncryptedSegment is one segment of a re-encrypted playlist.
type EncryptedSegment struct {
	URI           string  // relative, e.g. "seg_00000.ts"
	Duration      float64 // seconds, as the legacy playlist said
	Size          int64   // encrypted size, for the bandwidth figures
	IV            [16]byte
	Discontinuity bool // EXT-X-DISCONTINUITY before this segment
	// Init starts applying at this segment: set on the first segment and
	// wherever the legacy playlist had an EXT-X-MAP. nil: the previous one
	// still applies.
	Init *EncryptedInit
}

// EncryptedMedia is a VOD media playlist whose segments, and init
// sections, are each encrypted with AES-128 under their own IV.
type EncryptedMedia struct {
	KeyURI   string
	Segments []EncryptedSegment
	// Independent writes EXT-X-INDEPENDENT-SEGMENTS; only true when the
	// source playlist said so (a legacy packager's segments may not start
	// with a keyframe).
	Independent bool
}

// versionMap is the EXT-X-VERSION of a playlist with EXT-X-MAP: RFC 8216
// section 7 requires 6 for EXT-X-MAP in a playlist without
// EXT-X-I-FRAMES-ONLY.
const versionMap = 6

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

// WriteEncryptedMedia writes m as a VOD media playlist:
//
//	#EXTM3U
//	#EXT-X-VERSION:3                (6 when there is an EXT-X-MAP)
//	#EXT-X-INDEPENDENT-SEGMENTS     (when m.Independent)
//	#EXT-X-PLAYLIST-TYPE:VOD
//	#EXT-X-MEDIA-SEQUENCE:0
//	#EXT-X-TARGETDURATION:<as WriteMedia>
//	#EXT-X-KEY:METHOD=AES-128,URI="<KeyURI>",IV=0x<init IV>    (segments that start an init section)
//	#EXT-X-DISCONTINUITY                                         (where the legacy playlist had one)
//	#EXT-X-MAP:URI="<init URI>"
//	#EXT-X-KEY:METHOD=AES-128,URI="<KeyURI>",IV=0x<segment IV>
//	#EXTINF:<duration, 3 decimals>,
//	<segment URI>
//	...
//	#EXT-X-ENDLIST
//
// A segment without Init has a single EXT-X-KEY (its own IV) before its
// optional EXT-X-DISCONTINUITY. The checks are WriteMedia's, applied to init
// URIs too; a playlist whose segments use an init section must give the
// first segment one.
func WriteEncryptedMedia(w io.Writer, m EncryptedMedia) error {
	if len(m.Segments) == 0 {
		return errors.New("playlist: media playlist has no segments")
	}
	if err := checkQuotedValue(m.KeyURI); err != nil {
		return fmt.Errorf("playlist: key URI: %w", err)
	}
	p, err := m3u8.NewMediaPlaylist(0, uint(len(m.Segments))) // sized exactly, see WriteMedia
	if err != nil {
		return fmt.Errorf("playlist: %w", err)
	}
	version := uint8(protocolVersion)
	hasInit := false
	for _, s := range m.Segments {
		if s.Init != nil {
			hasInit = true
		}
	}
	if hasInit {
		if m.Segments[0].Init == nil {
			return errors.New("playlist: the first segment has no init section while later ones do")
		}
		version = versionMap
	}
	p.SetVersion(version)
	if m.Independent {
		p.SetCustomTag(independentSegments{})
	}
	p.MediaType = m3u8.VOD
	p.Closed = true

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
		seg := &m3u8.MediaSegment{
			URI:           s.URI,
			Duration:      dur,
			Discontinuity: s.Discontinuity,
			Key:           &m3u8.Key{Method: "AES-128", URI: m.KeyURI, IV: formatIV(s.IV)},
		}
		if s.Init != nil {
			if err := checkRelativeURI(s.Init.URI); err != nil {
				return fmt.Errorf("playlist: segment %d init URI %q: %w", i, s.Init.URI, err)
			}
			seg.Key.IV = formatIV(s.Init.IV)
			seg.Map = &m3u8.Map{URI: s.Init.URI}
			seg.Custom = map[string]m3u8.CustomTag{"#EXT-X-KEY": segmentKeyTag{keyLine(m.KeyURI, s.IV)}}
		}
		if err := p.AppendSegment(seg); err != nil {
			return fmt.Errorf("playlist: segment %d: %w", i, err)
		}
	}
	p.TargetDuration = float64(targetDuration(durations))
	if _, err := w.Write(p.Encode().Bytes()); err != nil {
		return fmt.Errorf("playlist: writing media playlist: %w", err)
	}
	return nil
}

// MasterVariant is one EXT-X-STREAM-INF of a re-encrypted title. Only
// Bandwidth is required; the other attributes are written when set.
type MasterVariant struct {
	URI              string
	Bandwidth        int64
	AverageBandwidth int64
	Codecs           string
	Width, Height    int
	FrameRate        float64
	// Group ids of the EXT-X-MEDIA renditions this variant plays with.
	Audio, Video, Subtitles string
}

// MasterMedia is one EXT-X-MEDIA rendition (TYPE AUDIO, VIDEO or
// SUBTITLES) of a re-encrypted title.
type MasterMedia struct {
	Type            string
	GroupID         string
	Name            string
	Language        string
	Default         bool
	Autoselect      string // "YES", "NO" or ""
	Characteristics string
	URI             string // relative; "" for a rendition carried in the variant's stream
}

// EncryptedMaster is the master playlist of a re-encrypted title.
type EncryptedMaster struct {
	Variants    []MasterVariant // in the legacy order: players start with the first
	Media       []MasterMedia
	Independent bool // EXT-X-INDEPENDENT-SEGMENTS, when the legacy master had it
}

// WriteEncryptedMaster writes a master playlist: EXT-X-VERSION 3 (4 with
// EXT-X-MEDIA renditions: grafov raises it, which RFC 8216 section 7
// allows), the EXT-X-MEDIA renditions first (in order), then the variants in their given
// order. URIs must be plain relative references, as for WriteMaster; each
// group a variant names must exist with the matching TYPE; a rendition's
// TYPE, GROUP-ID and NAME are required, and TYPE, GROUP-ID, NAME and
// LANGUAGE together must be unique (grafov writes one tag per combination).
func WriteEncryptedMaster(w io.Writer, m EncryptedMaster) error {
	if len(m.Variants) == 0 {
		return errors.New("playlist: master playlist has no variants")
	}
	groups := map[string]string{} // group id → type
	seen := map[string]bool{}
	alts := make([]*m3u8.Alternative, 0, len(m.Media))
	for i, r := range m.Media {
		switch r.Type {
		case "AUDIO", "VIDEO", "SUBTITLES":
		default:
			return fmt.Errorf("playlist: rendition %d: TYPE %q is not AUDIO, VIDEO or SUBTITLES", i, r.Type)
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
		alts = append(alts, &m3u8.Alternative{
			Type: r.Type, GroupId: r.GroupID, Name: r.Name, Language: r.Language, Default: r.Default,
			Autoselect: r.Autoselect, Characteristics: r.Characteristics, URI: r.URI,
		})
	}

	p := m3u8.NewMasterPlaylist()
	p.SetVersion(protocolVersion)
	p.SetIndependentSegments(m.Independent)
	uris := map[string]bool{}
	for i, v := range m.Variants {
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
		for typ, g := range map[string]string{"AUDIO": v.Audio, "VIDEO": v.Video, "SUBTITLES": v.Subtitles} {
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
	out, err := dropProgramID(p.Encode().Bytes(), len(m.Variants))
	if err != nil {
		return err
	}
	if _, err := w.Write(out); err != nil {
		return fmt.Errorf("playlist: writing master playlist: %w", err)
	}
	return nil
}

// LegacyMaster is a master playlist as a legacy packager wrote it, with
// what re-encrypting it must carry over.
type LegacyMaster struct {
	Variants       []LegacyVariant
	IFrameVariants []ParsedVariant // listed for information; not carried over
	Media          []LegacyMedia
	Independent    bool
}

// LegacyVariant is an EXT-X-STREAM-INF with its group references.
type LegacyVariant struct {
	ParsedVariant
	Video, Subtitles, ClosedCaptions string
}

// LegacyMedia is an EXT-X-MEDIA tag with every attribute we carry over.
type LegacyMedia struct {
	MasterMedia // URI as written
	InstreamID  string
}

// legacyMediaCollector is renditionCollector keeping every attribute.
type legacyMediaCollector struct{ media []LegacyMedia }

func (c *legacyMediaCollector) TagName() string  { return mediaTagPrefix }
func (c *legacyMediaCollector) SegmentTag() bool { return false }
func (c *legacyMediaCollector) Decode(line string) (m3u8.CustomTag, error) {
	a := m3u8.DecodeAttributeList(line[len(mediaTagPrefix):])
	c.media = append(c.media, LegacyMedia{
		MasterMedia: MasterMedia{
			Type: a["TYPE"], GroupID: a["GROUP-ID"], Name: a["NAME"], Language: a["LANGUAGE"], Default: a["DEFAULT"] == "YES",
			Autoselect: a["AUTOSELECT"], Characteristics: a["CHARACTERISTICS"], URI: a["URI"],
		},
		InstreamID: a["INSTREAM-ID"],
	})
	return rawTag(line), nil
}

// ParseLegacyMaster reads a master playlist like ParseMaster (same checks,
// same grafov decoder) and also returns what WriteEncryptedMaster needs to
// rewrite it: every EXT-X-MEDIA attribute it can carry, the VIDEO,
// SUBTITLES and CLOSED-CAPTIONS group references and
// EXT-X-INDEPENDENT-SEGMENTS.
func ParseLegacyMaster(r io.Reader) (lm *LegacyMaster, err error) {
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
	collector := &legacyMediaCollector{}
	p.WithCustomDecoders([]m3u8.CustomDecoder{collector})
	if err := p.DecodeFrom(bytes.NewReader(text), false); err != nil {
		return nil, fmt.Errorf("playlist: decoding master playlist: %w", err)
	}
	lm = &LegacyMaster{Media: collector.media, Independent: p.IndependentSegments()}
	for i, v := range p.Variants {
		if v == nil {
			return nil, fmt.Errorf("playlist: variant %d missing after decoding", i)
		}
		if v.URI == "" {
			return nil, fmt.Errorf("playlist: variant %d has no URI", i)
		}
		pv := ParsedVariant{
			URI: v.URI, Bandwidth: int64(v.Bandwidth), AverageBandwidth: int64(v.AverageBandwidth),
			Codecs: v.Codecs, FrameRate: v.FrameRate, Audio: v.Audio,
		}
		if v.Resolution != "" {
			if pv.Width, pv.Height, err = parseResolution(v.Resolution); err != nil {
				return nil, fmt.Errorf("playlist: variant %q: %w", v.URI, err)
			}
		}
		if v.Iframe {
			lm.IFrameVariants = append(lm.IFrameVariants, pv)
			continue
		}
		lm.Variants = append(lm.Variants, LegacyVariant{ParsedVariant: pv, Video: v.Video, Subtitles: v.Subtitles, ClosedCaptions: v.Captions})
	}
	return lm, nil
}

// MapTag is one EXT-X-MAP of a media playlist with the EXT-X-KEY in effect
// where it appears, which is the key its init section is encrypted with.
type MapTag struct {
	// Segment is the index of the first segment the map applies to.
	Segment int
	Map     Map
	Key     *Key // nil when unencrypted (no key, or METHOD=NONE)
}

// MapTags lists the EXT-X-MAP tags of a media playlist, in order, each with
// the key in effect at it. ParseMedia gives each segment the key in effect
// at the segment, which for a segment that starts an encrypted init section
// is not the init section's key (see WriteEncryptedMedia). Call it on a
// playlist ParseMedia accepted.
func MapTags(data []byte) ([]MapTag, error) {
	lines, err := splitLines(data)
	if err != nil {
		return nil, err
	}
	var (
		out  []MapTag
		key  *Key
		segs int
	)
	for _, l := range lines {
		text := l.text
		switch {
		case strings.HasPrefix(text, "#EXT-X-KEY:"):
			a := m3u8.DecodeAttributeList(text[len("#EXT-X-KEY:"):])
			if a["METHOD"] == "NONE" {
				key = nil
				continue
			}
			key = &Key{Method: a["METHOD"], URI: a["URI"], IV: a["IV"], KeyFormat: a["KEYFORMAT"]}
		case strings.HasPrefix(text, "#EXT-X-MAP:"):
			a := m3u8.DecodeAttributeList(text[len("#EXT-X-MAP:"):])
			mt := MapTag{Segment: segs, Map: Map{URI: a["URI"]}}
			if br, ok := a["BYTERANGE"]; ok {
				length, offset, _ := strings.Cut(br, "@")
				n, err1 := strconv.ParseInt(length, 10, 64)
				o, err2 := strconv.ParseInt(offset, 10, 64)
				if err1 != nil || err2 != nil || n <= 0 || o < 0 {
					return nil, fmt.Errorf("playlist: bad EXT-X-MAP BYTERANGE %q", br)
				}
				mt.Map.ByteRange = &ByteRange{Length: n, Offset: o}
			}
			if key != nil {
				k := *key
				mt.Key = &k
			}
			out = append(out, mt)
		case !strings.HasPrefix(text, "#"):
			segs++
		}
	}
	return out, nil
}

// HasIndependentSegments reports whether a playlist carries
// EXT-X-INDEPENDENT-SEGMENTS (grafov drops it from media playlists).
func HasIndependentSegments(data []byte) bool {
	lines, err := splitLines(data)
	if err != nil {
		return false
	}
	for _, l := range lines {
		if l.text == "#EXT-X-INDEPENDENT-SEGMENTS" {
			return true
		}
	}
	return false
}
