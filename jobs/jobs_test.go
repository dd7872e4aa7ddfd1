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
		{`{"video_id":"abc","source":"a.mp4","ladder":"720p:2800k,360p:800k:96k","preset":"slow","priority":"low","metadata":{"k":[1,2]}}`, true},
		{`{"video_id":"abc","source":"a.mp4","ladder":"720:2800k"}`, false},
		{`{"video_id":"abc","source":"a.mp4","preset":"quick"}`, false},
		{`{"video_id":"abc","source":"a.mp4","priority":"urgent"}`, false},
		{`{"video_id":"abc","source":"a.mp4","metadata":[1]}`, false},
		{`{"video_id":"abc","source":"a.mp4","metadata":"s"}`, false},
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
	if q.TranscodeHigh != "hls-transcode-high" || q.Transcode != "hls-transcode" || q.TranscodeLow != "hls-transcode-low" ||
		q.Background != "hls-background" {
		t.Fatalf("default queues: %+v", q)
	}
	for p, want := range map[Priority]string{PriorityHigh: q.TranscodeHigh, "": q.Transcode, PriorityNormal: q.Transcode, PriorityLow: q.TranscodeLow} {
		if got := q.ForPriority(p); got != want {
			t.Errorf("priority %q: queue %s, want %s", p, got, want)
		}
	}
}

func FuzzParseTranscodePayload(f *testing.F) {
	f.Add([]byte(`{"video_id":"abc","source":"uploads/a.mp4"}`))
	f.Add([]byte(`{"video_id":"a/b","source":"x"}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"video_id":"a","source":"b","ladder":"240p:300k","metadata":{"x":1}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParseTranscodePayload(b)
		if err != nil {
			return
		}
		if ids.ValidateVideoID(p.VideoID) != nil || storage.ValidateName(p.Source) != nil {
			t.Fatalf("accepted invalid payload %+v", p)
		}
		if m, err := normalizeMetadata(p.Metadata); err != nil || (m != nil && (m[0] != '{' || len(m) > MaxMetadataBytes)) {
			t.Fatalf("accepted metadata %q", p.Metadata)
		}
	})
}
