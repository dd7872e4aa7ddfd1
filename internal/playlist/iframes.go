package playlist

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode"

	"github.com/grafov/m3u8"
)

// appendIFrameVariants checks m.IFrameVariants and appends them to p after
// its variants, as EXT-X-I-FRAME-STREAM-INF tags (grafov writes one such tag,
// with the URI attribute, per appended Iframe variant). uris holds the
// variants' URIs: an I-frame playlist is never also a variant.
//
// The attributes follow RFC 8216 section 4.3.4.3: BANDWIDTH (required),
// AVERAGE-BANDWIDTH, CODECS, RESOLUTION and URI; FRAME-RATE is not
// allowed there. With m.Complete every I-frame variant needs a positive
// AverageBandwidth, Codecs and a resolution, as for variants.
func appendIFrameVariants(p *m3u8.MasterPlaylist, m Master, uris map[string]bool) error {
	for i, v := range m.IFrameVariants {
		if err := checkRelativeURI(v.URI); err != nil {
			return fmt.Errorf("playlist: I-frame variant %d URI %q: %w", i, v.URI, err)
		}
		if err := checkQuotedValue(v.URI); err != nil {
			return fmt.Errorf("playlist: I-frame variant %d URI %q: %w", i, v.URI, err)
		}
		if uris[v.URI] {
			return fmt.Errorf("playlist: I-frame variant %q listed twice", v.URI)
		}
		uris[v.URI] = true
		if v.Bandwidth <= 0 || v.Bandwidth > math.MaxUint32 {
			return fmt.Errorf("playlist: I-frame variant %q: bandwidth %d out of range", v.URI, v.Bandwidth)
		}
		if v.AverageBandwidth < 0 || v.AverageBandwidth > v.Bandwidth {
			return fmt.Errorf("playlist: I-frame variant %q: average bandwidth %d out of range 0..%d", v.URI, v.AverageBandwidth, v.Bandwidth)
		}
		if v.Codecs != "" {
			if err := checkQuotedValue(v.Codecs); err != nil || strings.ContainsFunc(v.Codecs, unicode.IsSpace) {
				return fmt.Errorf("playlist: I-frame variant %q: bad CODECS %q", v.URI, v.Codecs)
			}
		}
		if (v.Width == 0) != (v.Height == 0) || v.Width < 0 || v.Height < 0 {
			return fmt.Errorf("playlist: I-frame variant %q: resolution %dx%d", v.URI, v.Width, v.Height)
		}
		if m.Complete && (v.AverageBandwidth <= 0 || v.Codecs == "" || v.Width <= 0) {
			return fmt.Errorf("playlist: I-frame variant %q: a complete master needs AVERAGE-BANDWIDTH, CODECS and RESOLUTION", v.URI)
		}
		params := m3u8.VariantParams{
			Iframe:           true,
			Bandwidth:        uint32(v.Bandwidth),
			AverageBandwidth: uint32(v.AverageBandwidth),
			Codecs:           v.Codecs,
		}
		if v.Width > 0 {
			params.Resolution = strconv.Itoa(v.Width) + "x" + strconv.Itoa(v.Height)
		}
		p.Append(v.URI, nil, params)
	}
	return nil
}

// dropIFrameProgramID is dropProgramID for EXT-X-I-FRAME-STREAM-INF, which
// grafov writes with PROGRAM-ID=0 too (RFC 8216 never allowed PROGRAM-ID on
// it).
func dropIFrameProgramID(b []byte, n int) ([]byte, error) {
	const (
		from = "\n#EXT-X-I-FRAME-STREAM-INF:PROGRAM-ID=0,"
		to   = "\n#EXT-X-I-FRAME-STREAM-INF:"
	)
	if got := bytes.Count(b, []byte(from)); got != n {
		return nil, fmt.Errorf("playlist: grafov wrote %d EXT-X-I-FRAME-STREAM-INF tags in the expected form, want %d", got, n)
	}
	if n == 0 && bytes.Contains(b, []byte("#EXT-X-I-FRAME-STREAM-INF")) {
		return nil, errors.New("playlist: unexpected EXT-X-I-FRAME-STREAM-INF")
	}
	return bytes.ReplaceAll(b, []byte(from), []byte(to)), nil
}
