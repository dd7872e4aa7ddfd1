package jobs

import (
	"errors"
	"strings"
	"testing"

	"github.com/hlsvault/hlsvault/internal/ids"
	"github.com/hlsvault/hlsvault/internal/storage"
)

func TestParseTranscodePayload(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{`{"video_id":"abc","source":"uploads/a.mp4"}`, true},
		{`{"video_id":"../x","source":"uploads/a.mp4"}`, false},
		{`{"video_id":"abc","source":"/etc/passwd"}`, false},
		{`{"video_id":"abc","source":"uploads/../../etc/passwd"}`, false},
		{`{"video_id":"abc"}`, false},
		{`not json`, false},
	} {
		_, err := ParseTranscodePayload([]byte(tc.in))
		if (err == nil) != tc.ok {
			t.Errorf("%s: err = %v, want ok=%v", tc.in, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalidPayload) {
			t.Errorf("%s: err = %v, not ErrInvalidPayload", tc.in, err)
		}
	}
}

func TestTaskIDIsStableAndDistinct(t *testing.T) {
	a, b := TaskID("v", "uploads/a.mp4"), TaskID("v", "uploads/b.mp4")
	if a == b || a != TaskID("v", "uploads/a.mp4") || !strings.HasPrefix(a, "transcode-v-") {
		t.Fatalf("task ids: %q %q", a, b)
	}
}

func TestQueueNames(t *testing.T) {
	q := QueueNames("")
	if q.Transcode != "hls-transcode" || q.Background != "hls-background" {
		t.Fatalf("default queues: %+v", q)
	}
}

func FuzzParseTranscodePayload(f *testing.F) {
	f.Add([]byte(`{"video_id":"abc","source":"uploads/a.mp4"}`))
	f.Add([]byte(`{"video_id":"a/b","source":"x"}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParseTranscodePayload(b)
		if err != nil {
			return
		}
		if ids.ValidateVideoID(p.VideoID) != nil || storage.ValidateName(p.Source) != nil {
			t.Fatalf("accepted invalid payload %+v", p)
		}
	})
}
