package verify

import (
	"bytes"
	"encoding/binary"
	"slices"
	"strings"
	"testing"

	"github.com/hlsvault/hlsvault/internal/catalog"
)

func box(typ string, size int) []byte {
	b := make([]byte, size)
	binary.BigEndian.PutUint32(b, uint32(size))
	copy(b[4:], typ)
	return b
}

func TestBoxCheckers(t *testing.T) {
	for _, c := range []struct {
		check   *boxChecker
		data    []byte
		wantErr string
	}{
		{initChecker(), append(box("ftyp", 24), box("moov", 100)...), ""},
		{initChecker(), box("moov", 100), `first box "moov"`},
		{initChecker(), nil, "empty"},
		{initChecker(), []byte("ftyp"), "only 4 bytes"},
		{fragmentChecker(), append(box("styp", 24), box("moof", 100)...), ""},
		{fragmentChecker(), box("moof", 100), ""},
		{fragmentChecker(), box("moof", 1<<20)[:100], "of 1048576 bytes"},
		{fragmentChecker(), bytes.Repeat([]byte{0x47}, 188), "not an MP4 fragment"},
	} {
		// Written in small pieces, as io.Copy may.
		for i := 0; i < len(c.data); i += 3 {
			c.check.Write(c.data[i:min(i+3, len(c.data))])
		}
		err := c.check.err()
		if (err == nil) != (c.wantErr == "") || err != nil && !strings.Contains(err.Error(), c.wantErr) {
			t.Errorf("%s on %d bytes: %v, want %q", c.check.what, len(c.data), err, c.wantErr)
		}
	}
}

func TestVTTChecker(t *testing.T) {
	for data, ok := range map[string]bool{"WEBVTT\n\n00:00.000 --> 00:01.000\nhi\n": true, "\xef\xbb\xbfWEBVTT\n": true, "<tt>": false, "": false} {
		c := &vttChecker{}
		c.Write([]byte(data))
		if (c.err() == nil) != ok {
			t.Errorf("%q: %v", data, c.err())
		}
	}
}

func TestParseDecode(t *testing.T) {
	ts := `{"streams":[{"codec_type":"video","codec_name":"hevc","nb_read_frames":"75"},{"codec_type":"audio","codec_name":"aac","nb_read_frames":"142"}],
		"format":{"duration":"3.000000","start_time":"1.400000"}}`
	d, err := parseDecode([]byte(ts), "mpegts")
	if err != nil || d.duration != 3 || !d.hasVideo || d.videoFrames != 75 || d.audioFrames != 142 || d.videoCodec != "hevc" || d.audioCodec != "aac" {
		t.Fatalf("mpegts: %+v %v", d, err)
	}
	// The mov demuxer reports a fragmented file's end time: fragments that
	// start at 2.02 s and end at 3.03 s last 1.01 s.
	mp4 := `{"streams":[{"codec_type":"audio","nb_read_frames":"47"}],"format":{"duration":"3.026984","start_time":"2.021016"}}`
	d, err = parseDecode([]byte(mp4), "mp4")
	if err != nil || d.duration < 1.0 || d.duration > 1.01 || d.hasVideo || !d.hasAudio || d.audioFrames != 47 {
		t.Fatalf("mp4: %+v %v", d, err)
	}
	if _, err := parseDecode([]byte(`{"streams":[{"codec_type":"data","nb_read_frames":"1"}],"format":{"duration":"1"}}`), "mpegts"); err == nil {
		t.Error("no audio or video stream accepted")
	}
}

// TestSourceDurationProblems: a rendition is held to the source duration
// recorded at publish, within the pipeline's tolerance, by its playlist and
// by what it decodes to.
func TestSourceDurationProblems(t *testing.T) {
	for _, c := range []struct {
		name             string
		playlist, decode float64
		source           float64
		want             []string // substrings, one per problem
	}{
		{"agrees", 4, 4.02, 4, nil},
		{"within a second", 3.1, 3.1, 4, nil},
		{"not recorded", 0.04, 0.04, 0, nil},
		{"published as one frame of a 4 s source", 0.04, 0.04, 4,
			[]string{"playlist duration 0.040s, but the source lasts 4.000s", "decoded duration 0.040s, but the source lasts 4.000s"}},
		{"playlist right, decode short", 4, 2, 4, []string{"decoded duration 2.000s, but the source lasts 4.000s"}},
		{"far longer than the source", 9, 9, 4, []string{"playlist duration 9.000s", "decoded duration 9.000s"}},
		{"an hour, 100 s short (under 3 %)", 3500, 3500, 3600, nil},
	} {
		got := sourceDurationProblems(RenditionReport{Format: "mpegts", PlaylistDuration: c.playlist, DecodedDuration: c.decode}, c.source)
		if len(got) != len(c.want) {
			t.Errorf("%s: %q, want %d problems", c.name, got, len(c.want))
			continue
		}
		for i := range got {
			if !strings.Contains(got[i], c.want[i]) {
				t.Errorf("%s: %q, want %q", c.name, got[i], c.want[i])
			}
		}
	}
}

// TestUnusedKeys: a rendition may stop short of the last key period, but a
// key that no rendition uses is reported.
func TestUnusedKeys(t *testing.T) {
	wrapped := []catalog.WrappedKey{{KeyID: "k0"}, {KeyID: "k1"}, {KeyID: "k2"}}
	for _, tc := range []struct {
		used map[int]bool
		want []string
	}{
		{map[int]bool{0: true, 1: true, 2: true}, nil},
		{map[int]bool{0: true, 2: true}, []string{"k1"}},
		{map[int]bool{}, []string{"k0", "k1", "k2"}},
	} {
		if got := unusedKeys(wrapped, tc.used); !slices.Equal(got, tc.want) {
			t.Errorf("used %v: unused %v, want %v", tc.used, got, tc.want)
		}
	}
}
