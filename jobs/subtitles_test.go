package jobs

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestSubtitlesInPayload(t *testing.T) {
	for _, tc := range []struct {
		subs string
		ok   bool
	}{
		{`[{"language":"fra","name":"Français","source":"uploads/abc/subs/1.srt"}]`, true},
		{`[{"language":"pt-BR","source":"uploads/abc/subs/2.vtt"},{"language":"en","source":"uploads/abc/subs/3.vtt"}]`, true},
		{`[{"source":"uploads/abc/subs/1.srt"}]`, false},
		{`[{"language":"english!","source":"uploads/abc/subs/1.srt"}]`, false},
		{`[{"language":"en","source":"../etc/passwd"}]`, false},
		{`[{"language":"en","source":""}]`, false},
		{`[{"language":"en","name":"a\"b","source":"uploads/x.srt"}]`, false},
		{`[{"language":"en","name":"` + strings.Repeat("n", 65) + `","source":"uploads/x.srt"}]`, false},
	} {
		in := `{"video_id":"abc","source":"uploads/a.mp4","subtitles":` + tc.subs + `}`
		p, err := ParseTranscodePayload([]byte(in))
		if (err == nil) != tc.ok {
			t.Errorf("%s: err = %v, want ok=%v", tc.subs, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalidPayload) {
			t.Errorf("%s: err = %v, not ErrInvalidPayload", tc.subs, err)
		}
		if err == nil && len(p.Subtitles) == 0 {
			t.Errorf("%s: subtitles lost", tc.subs)
		}
	}
	many := make([]string, MaxSubtitles+1)
	for i := range many {
		many[i] = fmt.Sprintf(`{"language":"en","source":"uploads/s%d.vtt"}`, i)
	}
	if _, err := ParseTranscodePayload([]byte(`{"video_id":"abc","source":"uploads/a.mp4","subtitles":[` + strings.Join(many, ",") + `]}`)); !errors.Is(err, ErrInvalidPayload) {
		t.Errorf("%d subtitles: %v", len(many), err)
	}
}
