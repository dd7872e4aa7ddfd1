package transcode

import "testing"

func TestParseCodecs(t *testing.T) {
	for _, tc := range []struct {
		json, want string
		ok         bool
	}{
		{`{"streams":[{"codec_type":"video","codec_name":"h264","profile":"High","level":31},{"codec_type":"audio","codec_name":"aac","profile":"LC"}]}`, "avc1.64001f,mp4a.40.2", true},
		{`{"streams":[{"codec_type":"video","codec_name":"h264","profile":"Main","level":40}]}`, "avc1.4d0028", true},
		{`{"streams":[{"codec_type":"video","codec_name":"h264","profile":"Constrained Baseline","level":30}]}`, "avc1.42c01e", true},
		{`{"streams":[{"codec_type":"audio","codec_name":"aac","profile":"LC"}]}`, "", false},
		{`{"streams":[{"codec_type":"video","codec_name":"h264","profile":"High 10","level":31}]}`, "", false},
		{`not json`, "", false},
	} {
		got, err := ParseCodecs([]byte(tc.json))
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseCodecs(%s) = %q, %v; want %q ok=%v", tc.json, got, err, tc.want, tc.ok)
		}
	}
}
