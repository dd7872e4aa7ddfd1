package jobs

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/hlsvault/hlsvault/internal/catalog"
	"github.com/hlsvault/hlsvault/internal/storage"
	"github.com/hlsvault/hlsvault/internal/transcode"
)

// MaxSubtitles bounds the sidecar subtitles of one job: each becomes a
// rendition of the master playlist.
const MaxSubtitles = 16

// Subtitle is a sidecar subtitle file (SubRip, WebVTT or ASS, told by its
// content) published as a WebVTT rendition with the video.
type Subtitle struct {
	// Language is a BCP 47 or ISO 639 tag ("en", "fra", "pt-BR"); it is
	// published normalised ("fr").
	Language string `json:"language"`
	// Name is what players list; empty takes the language's tag.
	Name string `json:"name,omitempty"`
	// Source is the object name of the file in the worker's storage,
	// e.g. "uploads/3f2b6c1e/subs/9a0c….srt".
	Source string `json:"source"`
}

// validateSubtitles checks what a player will see (language, name) and
// where the worker will read (the object name) before anything is queued.
func validateSubtitles(subs []Subtitle) error {
	if len(subs) > MaxSubtitles {
		return fmt.Errorf("%w: %d subtitles, at most %d", ErrInvalidPayload, len(subs), MaxSubtitles)
	}
	for i, s := range subs {
		if strings.TrimSpace(s.Language) == "" {
			return fmt.Errorf("%w: subtitle %d: no language", ErrInvalidPayload, i)
		}
		if _, err := transcode.ParseLanguage(s.Language); err != nil {
			return fmt.Errorf("%w: subtitle %d: %w", ErrInvalidPayload, i, err)
		}
		if len(s.Name) > 64 || !utf8.ValidString(s.Name) || strings.ContainsAny(s.Name, "\"\r\n") {
			return fmt.Errorf("%w: subtitle %d: name %q: at most 64 bytes of UTF-8 without quotes or line breaks", ErrInvalidPayload, i, s.Name)
		}
		if err := storage.ValidateName(s.Source); err != nil {
			return fmt.Errorf("%w: subtitle %d: source %q: %w", ErrInvalidPayload, i, s.Source, err)
		}
	}
	return nil
}

// catalogSubtitles and publicSubtitles convert between the request's
// sidecars and the job row's (catalog.JobOptions.Subtitles).
func catalogSubtitles(subs []Subtitle) []catalog.JobSubtitle {
	var out []catalog.JobSubtitle
	for _, s := range subs {
		out = append(out, catalog.JobSubtitle(s))
	}
	return out
}

func publicSubtitles(subs []catalog.JobSubtitle) []Subtitle {
	var out []Subtitle
	for _, s := range subs {
		out = append(out, Subtitle(s))
	}
	return out
}
