package playlist

import (
	"fmt"
	"strings"
)

// ExpandSuffixed is Expand for URIs signed once and shared by many
// requests plus a per-request part: resource returns a resource's URI and
// whether suffix follows it, and suffix is appended in place, without a
// string built per resource (a 2-hour title has 1800 segments).
func (m *MediaTemplate) ExpandSuffixed(dst []byte, resource func(i int) (uri string, suffixed bool, err error), suffix string, key func(i int) (string, error)) ([]byte, error) {
	if strings.ContainsAny(suffix, "\"\r\n\t ") {
		return nil, fmt.Errorf("playlist: rewrite: URI suffix %q contains '\"', whitespace, CR or LF", suffix)
	}
	pos := 0
	for _, h := range m.t.holes {
		dst = append(dst, m.t.text[pos:h.start]...)
		pos = h.end
		if h.kind == holeKey {
			s, err := key(h.index)
			if err == nil {
				err = checkQuoted(s)
			}
			if err != nil {
				return nil, err
			}
			dst = append(dst, s...)
			continue
		}
		s, suffixed, err := resource(h.index)
		if err == nil {
			if h.kind == holeMap {
				err = checkQuoted(s)
			} else {
				err = checkLineURI(s)
			}
		}
		if err != nil {
			return nil, err
		}
		dst = append(dst, s...)
		if suffixed {
			dst = append(dst, suffix...)
		}
	}
	return append(dst, m.t.text[pos:]...), nil
}
