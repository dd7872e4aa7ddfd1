package playlist

// Rewriting playlists for the playback gateway.
//
// The gateway serves our published playlists with every URI replaced: segment
// URIs by short-lived signed URLs, key URIs by its own key endpoint with the
// player's token, variant URIs by its own rendition URLs. Those URIs are
// absolute or carry a query, which WriteMedia and WriteMaster rightly refuse
// (they only write the relative URIs we publish), and re-encoding through
// grafov would also bring back its faults (a duplicated first EXT-X-KEY,
// float32 EXTINF, a dropped EXT-X-INDEPENDENT-SEGMENTS). So the rewrite is
// line-based, on bytes that ParseMedia or ParseMaster has accepted first:
//
//   - every URI line and every URI="…" attribute of EXT-X-KEY and EXT-X-MAP
//     (media), or of EXT-X-STREAM-INF's URI line, EXT-X-I-FRAME-STREAM-INF
//     and EXT-X-MEDIA (master) is a hole; everything else, IVs and unknown
//     tags included, is copied byte for byte, so nothing can be lost;
//   - the holes found must agree with what the parser read (same count, same
//     URIs in the same order), or the rewrite fails;
//   - a tag that carries a URI this code does not rewrite (EXT-X-PART,
//     EXT-X-PRELOAD-HINT, EXT-X-RENDITION-REPORT, EXT-X-SESSION-KEY,
//     EXT-X-SESSION-DATA, EXT-X-CONTENT-STEERING…) fails the rewrite rather
//     than leaking an unrewritten URI;
//   - replacement URIs are checked: a quoted one may not contain '"', CR or
//     LF, a line one may not contain CR or LF or start with '#'.
//
// A template (CompileMedia, CompileMaster) does the parsing once; Expand then
// only concatenates, which keeps a rendition request for a 2-hour title (1800
// segments) cheap enough to do per request with per-request tokens.

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
)

// holeKind says what a hole in a template stands for.
type holeKind uint8

const (
	holeSegment holeKind = iota // a URI line of a media playlist: index into Resources
	holeMap                     // EXT-X-MAP URI: index into Resources
	holeKey                     // EXT-X-KEY URI: index into KeyURIs
	holeVariant                 // any URI of a master playlist: index into URIs
)

type hole struct {
	start, end int // byte span of the URI in text
	kind       holeKind
	index      int
}

// template is text with holes, in order and non-overlapping.
type template struct {
	text  string
	holes []hole
}

// literalLen is the size of what Expand copies unchanged.
func (t *template) literalLen() int {
	n := len(t.text)
	for _, h := range t.holes {
		n -= h.end - h.start
	}
	return n
}

func (t *template) expand(dst []byte, fill func(h hole) (string, error)) ([]byte, error) {
	pos := 0
	for _, h := range t.holes {
		dst = append(dst, t.text[pos:h.start]...)
		s, err := fill(h)
		if err != nil {
			return nil, err
		}
		dst = append(dst, s...)
		pos = h.end
	}
	return append(dst, t.text[pos:]...), nil
}

// Resource is a media resource a media playlist refers to: a segment or an
// EXT-X-MAP initialization section.
type Resource struct {
	URI string // as written in the playlist
	// Start is the playback time, in seconds from the start of the playlist,
	// at which the resource is first needed (the sum of the EXTINF durations
	// before its segment).
	Start float64
	// Duration is the segment's EXTINF; 0 for an EXT-X-MAP.
	Duration float64
	Map      bool
	// Key is the index into KeyURIs of the EXT-X-KEY in effect at the
	// resource (for an EXT-X-MAP, at its tag), -1 if none.
	Key int
}

// MediaTemplate is a media playlist compiled for fast rewriting. It is
// immutable and safe for concurrent use.
type MediaTemplate struct {
	t template
	// Resources are the segments and EXT-X-MAP sections, in playlist order,
	// each distinct EXT-X-MAP once.
	Resources []Resource
	// KeyURIs are the distinct EXT-X-KEY URIs, in order of appearance.
	KeyURIs []string
	// Media is the playlist as ParseMedia read it.
	Media *ParsedMedia
}

// LiteralLen is the number of bytes Expand copies unchanged; with the
// lengths of the replacement URIs it sizes the output exactly.
func (m *MediaTemplate) LiteralLen() int { return m.t.literalLen() }

// KeyHoles is how many EXT-X-KEY URIs the playlist holds (one per segment in
// ours), for sizing output.
func (m *MediaTemplate) KeyHoles() int {
	n := 0
	for _, h := range m.t.holes {
		if h.kind == holeKey {
			n++
		}
	}
	return n
}

// rewrittenMediaTags are the media playlist tags whose URI the rewrite
// handles. Any other tag with a URI attribute is refused.
var rewrittenMediaTags = map[string]holeKind{
	"#EXT-X-KEY": holeKey,
	"#EXT-X-MAP": holeMap,
}

// CompileMedia parses data with ParseMedia and splits it at every URI. It
// refuses a playlist ParseMedia refuses, one whose last line is cut short
// (ParseMedia would ignore it; a rewrite must not copy it), and one with a
// URI-bearing tag it cannot rewrite.
func CompileMedia(data []byte) (*MediaTemplate, error) {
	pm, err := ParseMedia(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	m := &MediaTemplate{Media: pm, t: template{text: string(data)}}
	text := m.t.text
	keyIndex := map[string]int{}
	mapIndex := map[string]int{}
	var (
		seg    int
		start  float64
		curKey = -1 // index into KeyURIs of the EXT-X-KEY in effect
	)
	for off := 0; off < len(text); {
		end := strings.IndexByte(text[off:], '\n')
		if end < 0 {
			end = len(text)
		} else {
			end += off
		}
		lineStart := off
		raw := text[off:end]
		off = end + 1
		trimmed := strings.TrimSpace(raw)
		if trimmed == "" {
			continue
		}
		if end == len(text) && trimmed != "#EXT-X-ENDLIST" {
			return nil, errors.New("playlist: rewrite: the last line has no newline and may be cut short")
		}
		lead := strings.Index(raw, trimmed)
		if !strings.HasPrefix(trimmed, "#") {
			// A URI line: a segment.
			if seg >= len(pm.Segments) || pm.Segments[seg].URI != trimmed {
				return nil, fmt.Errorf("playlist: rewrite: URI line %q does not match the parsed segment %d", trimmed, seg)
			}
			s := pm.Segments[seg]
			m.t.holes = append(m.t.holes, hole{start: lineStart + lead, end: lineStart + lead + len(trimmed), kind: holeSegment, index: len(m.Resources)})
			m.Resources = append(m.Resources, Resource{URI: trimmed, Start: start, Duration: s.Duration, Key: curKey})
			start += s.Duration
			seg++
			continue
		}
		name, attrs, hasAttrs := strings.Cut(trimmed, ":")
		kind, rewritten := rewrittenMediaTags[name]
		if !hasAttrs {
			continue
		}
		span, ok, err := uriAttr(attrs)
		if err != nil {
			return nil, fmt.Errorf("playlist: rewrite: %s: %w", name, err)
		}
		if !ok {
			if name == "#EXT-X-KEY" {
				curKey = -1 // METHOD=NONE
			}
			continue
		}
		if !rewritten {
			return nil, fmt.Errorf("playlist: rewrite: %s carries a URI the gateway cannot rewrite", name)
		}
		base := lineStart + lead + len(name) + 1
		uri := attrs[span[0]:span[1]]
		h := hole{start: base + span[0], end: base + span[1], kind: kind}
		switch kind {
		case holeKey:
			i, seen := keyIndex[uri]
			if !seen {
				i = len(m.KeyURIs)
				keyIndex[uri] = i
				m.KeyURIs = append(m.KeyURIs, uri)
			}
			h.index = i
			curKey = i
		case holeMap:
			i, seen := mapIndex[uri]
			if !seen {
				i = len(m.Resources)
				mapIndex[uri] = i
				m.Resources = append(m.Resources, Resource{URI: uri, Start: start, Map: true, Key: curKey})
			}
			h.index = i
		}
		m.t.holes = append(m.t.holes, h)
	}
	if seg != len(pm.Segments) {
		return nil, fmt.Errorf("playlist: rewrite: found %d URI lines, the parser read %d segments", seg, len(pm.Segments))
	}
	// Cross-check keys and maps against the parser's view.
	for i, s := range pm.Segments {
		if s.Key != nil && s.Key.URI != "" {
			if _, ok := keyIndex[s.Key.URI]; !ok {
				return nil, fmt.Errorf("playlist: rewrite: segment %d key URI not found in the text", i)
			}
		}
		if s.Map != nil && s.Map.URI != "" {
			if _, ok := mapIndex[s.Map.URI]; !ok {
				return nil, fmt.Errorf("playlist: rewrite: segment %d map URI not found in the text", i)
			}
		}
	}
	return m, nil
}

// Expand writes the playlist with every URI replaced and appends it to
// dst. resource gets the index into Resources of a segment or EXT-X-MAP
// URI, key the index into KeyURIs. Replacement URIs are checked (see the
// comment at the top of this file).
func (m *MediaTemplate) Expand(dst []byte, resource func(i int) (string, error), key func(i int) (string, error)) ([]byte, error) {
	return m.t.expand(dst, func(h hole) (string, error) {
		switch h.kind {
		case holeKey:
			s, err := key(h.index)
			if err != nil {
				return "", err
			}
			return s, checkQuoted(s)
		case holeMap:
			s, err := resource(h.index)
			if err != nil {
				return "", err
			}
			return s, checkQuoted(s)
		default:
			s, err := resource(h.index)
			if err != nil {
				return "", err
			}
			return s, checkLineURI(s)
		}
	})
}

// RewriteMedia rewrites a media playlist: segment is called for every
// segment URI and EXT-X-MAP URI, key for every EXT-X-KEY URI (once per
// distinct URI), each with the URI as written. Everything else, the IV of
// every EXT-X-KEY included, is kept byte for byte.
func RewriteMedia(data []byte, segment func(uri string) (string, error), key func(uri string) (string, error)) ([]byte, error) {
	m, err := CompileMedia(data)
	if err != nil {
		return nil, err
	}
	keys := make([]string, len(m.KeyURIs))
	for i, u := range m.KeyURIs {
		if keys[i], err = key(u); err != nil {
			return nil, err
		}
	}
	return m.Expand(make([]byte, 0, len(data)*2), func(i int) (string, error) {
		return segment(m.Resources[i].URI)
	}, func(i int) (string, error) { return keys[i], nil })
}

// MasterTemplate is a master playlist compiled for fast rewriting.
type MasterTemplate struct {
	t template
	// URIs are the URIs of the playlist in order: variant URI lines and the
	// URI attributes of EXT-X-I-FRAME-STREAM-INF and EXT-X-MEDIA.
	URIs   []string
	Master *ParsedMaster
}

var rewrittenMasterTags = map[string]bool{
	"#EXT-X-I-FRAME-STREAM-INF": true,
	"#EXT-X-MEDIA":              true,
}

// CompileMaster parses data with ParseMaster and splits it at every URI.
func CompileMaster(data []byte) (*MasterTemplate, error) {
	pm, err := ParseMaster(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	mt := &MasterTemplate{Master: pm, t: template{text: string(data)}}
	text := mt.t.text
	var lines, attrURIs []string
	for off := 0; off < len(text); {
		end := strings.IndexByte(text[off:], '\n')
		if end < 0 {
			end = len(text)
		} else {
			end += off
		}
		lineStart := off
		raw := text[off:end]
		off = end + 1
		trimmed := strings.TrimSpace(raw)
		if trimmed == "" {
			continue
		}
		lead := strings.Index(raw, trimmed)
		if !strings.HasPrefix(trimmed, "#") {
			mt.t.holes = append(mt.t.holes, hole{start: lineStart + lead, end: lineStart + lead + len(trimmed), kind: holeVariant, index: len(mt.URIs)})
			mt.URIs = append(mt.URIs, trimmed)
			lines = append(lines, trimmed)
			continue
		}
		name, attrs, hasAttrs := strings.Cut(trimmed, ":")
		if !hasAttrs {
			continue
		}
		span, ok, err := uriAttr(attrs)
		if err != nil {
			return nil, fmt.Errorf("playlist: rewrite: %s: %w", name, err)
		}
		if !ok {
			continue
		}
		if !rewrittenMasterTags[name] {
			return nil, fmt.Errorf("playlist: rewrite: %s carries a URI the gateway cannot rewrite", name)
		}
		base := lineStart + lead + len(name) + 1
		uri := attrs[span[0]:span[1]]
		mt.t.holes = append(mt.t.holes, hole{start: base + span[0], end: base + span[1], kind: holeVariant, index: len(mt.URIs)})
		mt.URIs = append(mt.URIs, uri)
		attrURIs = append(attrURIs, uri)
	}
	// Cross-check with the parser: every variant's URI in order, and every
	// I-frame variant's and rendition's URI among the attributes.
	if len(lines) != len(pm.Variants) {
		return nil, fmt.Errorf("playlist: rewrite: found %d URI lines, the parser read %d variants", len(lines), len(pm.Variants))
	}
	for i, v := range pm.Variants {
		if v.URI != lines[i] {
			return nil, fmt.Errorf("playlist: rewrite: variant %d URI %q, the parser read %q", i, lines[i], v.URI)
		}
	}
	want := len(pm.IFrameVariants)
	for _, r := range pm.Renditions {
		if r.URI != "" {
			want++
		}
	}
	if want != len(attrURIs) {
		return nil, fmt.Errorf("playlist: rewrite: found %d URI attributes, the parser read %d", len(attrURIs), want)
	}
	return mt, nil
}

// Expand writes the master playlist with URI i replaced by uri(i).
func (mt *MasterTemplate) Expand(dst []byte, uri func(i int) (string, error)) ([]byte, error) {
	return mt.t.expand(dst, func(h hole) (string, error) {
		s, err := uri(h.index)
		if err != nil {
			return "", err
		}
		// Line URIs and quoted ones share the master's holes; the stricter
		// rule of the two applies to both.
		if err := checkQuoted(s); err != nil {
			return "", err
		}
		return s, checkLineURI(s)
	})
}

// RewriteMaster rewrites every URI of a master playlist (variant URI lines,
// EXT-X-I-FRAME-STREAM-INF and EXT-X-MEDIA URI attributes) with uri, keeping
// everything else byte for byte.
func RewriteMaster(data []byte, uri func(string) (string, error)) ([]byte, error) {
	mt, err := CompileMaster(data)
	if err != nil {
		return nil, err
	}
	return mt.Expand(make([]byte, 0, len(data)*2), func(i int) (string, error) { return uri(mt.URIs[i]) })
}

// uriAttr finds the URI attribute of an attribute list and returns the span
// of its quoted value (without the quotes). It walks the list attribute by
// attribute, so "URI" inside another attribute's quoted value, or an
// attribute whose name merely ends in URI, cannot match. Besides "URI", the
// URI-valued attributes other tags use ("SERVER-URI") are reported too, so
// that the caller refuses them.
func uriAttr(list string) (span [2]int, found bool, err error) {
	i := 0
	for i < len(list) {
		eq := strings.IndexByte(list[i:], '=')
		if eq < 0 {
			return span, found, nil
		}
		name := strings.TrimSpace(list[i : i+eq])
		i += eq + 1
		var vs, ve int
		if i < len(list) && list[i] == '"' {
			close := strings.IndexByte(list[i+1:], '"')
			if close < 0 {
				return span, false, errors.New("unterminated quoted string")
			}
			vs, ve = i+1, i+1+close
			i = ve + 1
		} else {
			comma := strings.IndexByte(list[i:], ',')
			if comma < 0 {
				comma = len(list) - i
			}
			vs, ve = i, i+comma
			i = ve
		}
		if name == "URI" || strings.HasSuffix(name, "-URI") {
			if found {
				return span, false, errors.New("more than one URI attribute")
			}
			if list[vs-1] != '"' {
				return span, false, fmt.Errorf("%s is not a quoted string", name)
			}
			span, found = [2]int{vs, ve}, true
			if name != "URI" {
				return span, true, nil // refused by the caller
			}
		}
		// Skip to after the next comma.
		if i < len(list) {
			if list[i] != ',' {
				comma := strings.IndexByte(list[i:], ',')
				if comma < 0 {
					return span, found, nil
				}
				i += comma
			}
			i++
		}
	}
	return span, found, nil
}

func checkQuoted(s string) error {
	if s == "" || strings.ContainsAny(s, "\"\r\n") {
		return fmt.Errorf("playlist: rewrite: replacement URI %q is empty or contains '\"', CR or LF", s)
	}
	return nil
}

func checkLineURI(s string) error {
	if s == "" || strings.ContainsAny(s, "\r\n") || strings.HasPrefix(s, "#") || strings.TrimSpace(s) != s {
		return fmt.Errorf("playlist: rewrite: replacement URI %q is empty, starts with '#' or contains whitespace at its ends, CR or LF", s)
	}
	return nil
}
