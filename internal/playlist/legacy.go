package playlist

// Reading legacy titles (internal/backfill). Legacy titles come in more
// shapes than our own transcodes: fMP4 with EXT-X-MAP init sections,
// EXT-X-DISCONTINUITY, masters with alternate audio in EXT-X-MEDIA groups,
// variants without CODECS or RESOLUTION. What re-encrypting them writes goes
// through WriteMedia and WriteMaster like everything else.

import (
	"bytes"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/grafov/m3u8"
)

// LegacyMaster is a master playlist as a legacy packager wrote it, with
// what re-encrypting it must carry over.
type LegacyMaster struct {
	Variants []LegacyVariant
	// IFrameVariants are the legacy I-frame playlists: byte ranges into
	// whole segments cannot be carried under whole-segment encryption, so
	// the backfill cuts its own I-frame segments for the renditions they
	// point into.
	IFrameVariants []ParsedVariant
	Media          []LegacyMedia
	Independent    bool
}

// LegacyVariant is an EXT-X-STREAM-INF with its group references.
type LegacyVariant struct {
	ParsedVariant
	Video, Subtitles, ClosedCaptions string
}

// LegacyMedia is an EXT-X-MEDIA tag with every attribute we carry over
// (grafov's decoder drops CHANNELS and INSTREAM-ID; this collector reads
// the tag itself).
type LegacyMedia struct {
	Alternative // URI as written
}

// legacyMediaCollector is renditionCollector keeping every attribute.
type legacyMediaCollector struct{ media []LegacyMedia }

func (c *legacyMediaCollector) TagName() string  { return mediaTagPrefix }
func (c *legacyMediaCollector) SegmentTag() bool { return false }
func (c *legacyMediaCollector) Decode(line string) (m3u8.CustomTag, error) {
	a := m3u8.DecodeAttributeList(line[len(mediaTagPrefix):])
	c.media = append(c.media, LegacyMedia{
		Alternative: Alternative{
			Type: a["TYPE"], GroupID: a["GROUP-ID"], Name: a["NAME"], Language: a["LANGUAGE"], Default: a["DEFAULT"] == "YES",
			Autoselect: a["AUTOSELECT"], Characteristics: a["CHARACTERISTICS"], URI: a["URI"],
			Channels: a["CHANNELS"], InstreamID: a["INSTREAM-ID"], Forced: a["FORCED"] == "YES",
		},
	})
	return rawTag(line), nil
}

// ParseLegacyMaster reads a master playlist like ParseMaster (same checks,
// same grafov decoder) and also returns what WriteMaster needs to
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
// is not the init section's key (see WriteMedia). Call it on a
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
