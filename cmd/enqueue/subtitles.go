package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/hlsvault/hlsvault/internal/storage"
	"github.com/hlsvault/hlsvault/internal/transcode"
	"github.com/hlsvault/hlsvault/jobs"
)

// subtitleFlags is the repeatable --subtitle LANG=PATH flag of transcode:
// PATH is a local file (uploaded first) or an object name in storage.
type subtitleFlags []jobs.Subtitle

func (s *subtitleFlags) String() string {
	var parts []string
	for _, x := range *s {
		parts = append(parts, x.Language+"="+x.Source)
	}
	return strings.Join(parts, ",")
}

func (s *subtitleFlags) Set(v string) error {
	lang, src, ok := strings.Cut(v, "=")
	if !ok || lang == "" || src == "" {
		return fmt.Errorf("want LANG=PATH, e.g. fr=./movie.fr.srt")
	}
	if _, err := transcode.ParseLanguage(lang); err != nil {
		return errors.New(strings.TrimPrefix(err.Error(), "transcode: "))
	}
	if len(*s) >= jobs.MaxSubtitles {
		return fmt.Errorf("at most %d subtitles", jobs.MaxSubtitles)
	}
	*s = append(*s, jobs.Subtitle{Language: lang, Source: src})
	return nil
}

// hasLocal reports whether any subtitle names a local file, which needs
// the storage to upload it.
func (s subtitleFlags) hasLocal() bool {
	for _, x := range s {
		if isLocalFile(x.Source) {
			return true
		}
	}
	return false
}

func isLocalFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

// uploadSubtitles uploads every local sidecar as
// uploads/{video}/subs/{sha256 prefix}.{srt|vtt|ass}, the extension told by
// the content (a file that is not SubRip, WebVTT or ASS text is refused
// here, before anything is queued), and returns the subtitles with their
// object names.
func uploadSubtitles(ctx context.Context, store storage.Store, video string, subs subtitleFlags, stdout io.Writer) ([]jobs.Subtitle, error) {
	out := make([]jobs.Subtitle, 0, len(subs))
	for _, s := range subs {
		if !isLocalFile(s.Source) {
			out = append(out, s)
			continue
		}
		f, err := os.Open(s.Source)
		if err != nil {
			return nil, err
		}
		head, err := io.ReadAll(io.LimitReader(f, transcode.MaxSidecarBytes+1))
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", s.Source, err)
		}
		format, err := transcode.SniffSubtitle(head)
		if err != nil {
			return nil, fmt.Errorf("--subtitle %s=%s: %s", s.Language, s.Source, strings.TrimPrefix(err.Error(), "transcode: invalid input: "))
		}
		name, err := uploadLocalAs(ctx, store, "uploads/"+video+"/subs/", s.Source, transcode.SidecarExt[format])
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(stdout, "uploaded %s to %s\n", s.Source, name)
		s.Source = name
		out = append(out, s)
	}
	return out, nil
}
