// Package ids validates the identifiers that come from outside (video ids)
// before they reach a storage path, a queue or a database row.
package ids

import (
	"errors"
	"fmt"
)

// MaxVideoIDLen bounds a video id; a UUID is 36 characters.
const MaxVideoIDLen = 128

// ErrInvalidVideoID is returned for an id that is not 1–128 characters of
// ASCII letters, digits, '-' and '_'.
var ErrInvalidVideoID = errors.New("invalid video id")

// ValidateVideoID accepts letters, digits, '-' and '_' only, so an id can
// never change the meaning of a path ("..", "/"), a URL or a log line.
func ValidateVideoID(id string) error {
	if id == "" {
		return fmt.Errorf("%w: empty (use letters, digits, '-' and '_'; a UUID fits)", ErrInvalidVideoID)
	}
	if len(id) > MaxVideoIDLen {
		return fmt.Errorf("%w: %d characters, at most %d", ErrInvalidVideoID, len(id), MaxVideoIDLen)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
		default:
			return fmt.Errorf("%w: %q has a character other than letters, digits, '-' and '_' at byte %d", ErrInvalidVideoID, id, i)
		}
	}
	return nil
}
