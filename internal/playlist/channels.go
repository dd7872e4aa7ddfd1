package playlist

import (
	"bytes"
	"fmt"
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

// addChannels writes the CHANNELS attribute grafov v0.12.1 cannot write
// (its Alternative has no such field): the k-th EXT-X-MEDIA line grafov
// wrote is alts[k] (WriteMaster refuses repeats, so grafov skips none);
// the attribute goes before URI, or at the end of a line without one.
func addChannels(b []byte, alts []Alternative) ([]byte, error) {
	any := false
	for _, a := range alts {
		any = any || a.Channels != ""
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
		if a.Channels == "" {
			continue
		}
		attr := []byte(`,CHANNELS="` + a.Channels + `"`)
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
