package transcode

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// mp4box builds one ISO BMFF box.
func mp4box(typ string, payload ...[]byte) []byte {
	p := bytes.Join(payload, nil)
	b := binary.BigEndian.AppendUint32(nil, uint32(8+len(p)))
	return append(append(b, typ...), p...)
}

// TestGuardMP4OOMInput: a 1,346-byte init section whose edts/elst claims
// about 33 million entries (found by fuzzing mp4ff) used to end the
// process with "runtime: out of memory"; the elst is now hidden from
// mp4ff, which reads the rest.
func TestGuardMP4OOMInput(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "init_oom_elst.mp4"))
	if err != nil {
		t.Fatal(err)
	}
	orig := bytes.Clone(b)
	_, _ = ParseFMP4Init(b) // returning at all is the test
	if !bytes.Equal(b, orig) {
		t.Error("ParseFMP4Init changed its caller's bytes")
	}
}

func TestGuardMP4(t *testing.T) {
	trun := func(flags, count uint32, samples int) []byte {
		p := binary.BigEndian.AppendUint32(nil, flags)
		p = binary.BigEndian.AppendUint32(p, count)
		return mp4box("trun", p, make([]byte, samples))
	}
	for _, tc := range []struct {
		name string
		in   []byte
		err  string // "" for accepted
		want []string
	}{
		{"unneeded boxes hidden in place", mp4box("moov", mp4box("trak", mp4box("edts", mp4box("elst", make([]byte, 8))), mp4box("udta"))),
			"", []string{"moov", "trak", "free", "free"}},
		{"a trun whose samples fit", mp4box("moof", mp4box("traf", trun(0x300, 2, 16))), "", []string{"moof", "traf", "trun"}},
		{"a trun claiming more samples than it holds", mp4box("moof", mp4box("traf", trun(0x300, 3, 16))), "claims 3 samples", nil},
		{"a trun of empty samples within bounds", mp4box("moof", mp4box("traf", trun(0, 300, 0))), "", []string{"moof", "traf", "trun"}},
		{"a trun of a million empty samples", mp4box("moof", mp4box("traf", trun(0, 1<<20, 0))), "claims 1048576 samples", nil},
		{"a child running past its parent", append(mp4box("moov", mp4box("trak")), 0)[:17], "box", nil},
		{"a stsd too short for its header", mp4box("moov", mp4box("stsd", []byte{0, 0, 0})), "too short", nil},
		{"a sample table within bounds", mp4box("moov", mp4box("stts", make([]byte, 4), []byte{0, 0, 0, 1}, make([]byte, 8))), "", []string{"moov", "stts"}},
		{"a sample table claiming more entries than it holds", mp4box("moov", mp4box("stco", make([]byte, 4), []byte{0, 0, 1, 0}, make([]byte, 8))), "claims 256 entries", nil},
		{"a sidx at the top (count-sized) hidden", mp4box("sidx", make([]byte, 24)), "", []string{"free"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := bytes.Clone(tc.in)
			err := guardMP4(b)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("guardMP4 = %v, want an error with %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(b) != len(tc.in) {
				t.Fatalf("%d bytes became %d", len(tc.in), len(b))
			}
			var got []string
			var walk func([]byte)
			walk = func(p []byte) {
				for len(p) >= 8 {
					size := int(binary.BigEndian.Uint32(p))
					got = append(got, string(p[4:8]))
					if _, ok := mp4Children[string(p[4:8])]; ok {
						walk(p[8+mp4Children[string(p[4:8])] : size])
					}
					p = p[size:]
				}
			}
			walk(b)
			if strings.Join(got, " ") != strings.Join(tc.want, " ") {
				t.Errorf("boxes %v, want %v", got, tc.want)
			}
		})
	}
}
