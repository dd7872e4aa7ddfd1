package playlist

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// checkChannels accepts an EXT-X-MEDIA CHANNELS value as our transcodes
// write it: a count of audio channels (RFC 8216 section 4.3.4.1.1: the
// first parameter is a decimal integer, further ones are '/'-separated).
func checkChannels(s string) error {
	if s == "" {
		return nil
	}
	for part := range strings.SplitSeq(s, "/") {
		if part == "" || strings.Trim(part, "0123456789-ABCDEFGHIJKLMNOPQRSTUVWXYZ") != "" {
			return fmt.Errorf("CHANNELS %q is not a channel count", s)
		}
	}
	return nil
}

// CheckClosedCaptions accepts a CLOSED-CAPTIONS rendition as WriteMaster
// writes it: no URI (the captions are in the video stream) and an
// INSTREAM-ID of CC1 to CC4 (CEA-608) or SERVICE1 to SERVICE63 (CEA-708),
// RFC 8216 section 4.3.4.1.
func CheckClosedCaptions(r Alternative) error {
	if r.URI != "" {
		return errors.New("a CLOSED-CAPTIONS rendition has no URI")
	}
	if r.Channels != "" || r.Forced {
		return errors.New("CHANNELS or FORCED on a CLOSED-CAPTIONS rendition")
	}
	id := r.InstreamID
	if n, ok := strings.CutPrefix(id, "CC"); ok && len(n) == 1 && n >= "1" && n <= "4" {
		return nil
	}
	if n, ok := strings.CutPrefix(id, "SERVICE"); ok {
		if v, err := strconv.Atoi(n); err == nil && v >= 1 && v <= 63 && strconv.Itoa(v) == n {
			return nil
		}
	}
	return fmt.Errorf("INSTREAM-ID %q is not CC1..CC4 or SERVICE1..SERVICE63", id)
}

// addMediaAttributes writes the EXT-X-MEDIA attributes grafov v0.12.1
// cannot write (its Alternative has no such fields): CHANNELS and
// INSTREAM-ID. The k-th EXT-X-MEDIA line grafov wrote is alts[k]
// (WriteMaster refuses repeats, so grafov skips none); the attributes go
// before URI, or at the end of a line without one.
func addMediaAttributes(b []byte, alts []Alternative) ([]byte, error) {
	any := false
	for _, a := range alts {
		any = any || a.Channels != "" || a.InstreamID != ""
	}
	if !any {
		return b, nil
	}
	lines := bytes.SplitAfter(b, []byte("\n"))
	k := 0
	for i, line := range lines {
		if !bytes.HasPrefix(line, []byte("#EXT-X-MEDIA:")) {
			continue
		}
		if k >= len(alts) {
			return nil, fmt.Errorf("playlist: grafov wrote more EXT-X-MEDIA tags than %d renditions", len(alts))
		}
		a := alts[k]
		k++
		var attr []byte
		if a.Channels != "" {
			attr = append(attr, `,CHANNELS="`+a.Channels+`"`...)
		}
		if a.InstreamID != "" {
			attr = append(attr, `,INSTREAM-ID="`+a.InstreamID+`"`...)
		}
		if len(attr) == 0 {
			continue
		}
		body := bytes.TrimSuffix(line, []byte("\n"))
		at := len(body)
		if a.URI != "" {
			uri := []byte(`,URI="` + a.URI + `"`)
			if !bytes.HasSuffix(body, uri) {
				return nil, fmt.Errorf("playlist: EXT-X-MEDIA %q does not end in its URI", body)
			}
			at -= len(uri)
		}
		out := make([]byte, 0, len(line)+len(attr))
		out = append(out, body[:at]...)
		out = append(out, attr...)
		out = append(out, body[at:]...)
		out = append(out, line[len(body):]...)
		lines[i] = out
	}
	if k != len(alts) {
		return nil, fmt.Errorf("playlist: grafov wrote %d EXT-X-MEDIA tags, want %d", k, len(alts))
	}
	return bytes.Join(lines, nil), nil
}
