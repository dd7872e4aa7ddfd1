package playlist

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func addFixtureSeeds(f *testing.F) {
	paths, err := filepath.Glob(filepath.Join(goldenDir, "*.m3u8"))
	if err != nil {
		f.Fatal(err)
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

// FuzzParseMedia checks that no input makes ParseMedia panic (grafov's
// decoder does on some), and that what it accepts is self-consistent.
func FuzzParseMedia(f *testing.F) {
	addFixtureSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		pm, err := ParseMedia(bytes.NewReader(data))
		if err != nil {
			return
		}
		for i, s := range pm.Segments {
			if s.ByteRange != nil && (s.ByteRange.Length <= 0 || s.ByteRange.Offset < 0) {
				t.Fatalf("segment %d: bad byte range %+v", i, s.ByteRange)
			}
			if s.Duration < 0 {
				t.Fatalf("segment %d: negative duration", i)
			}
		}
		if pm.Key != nil && (len(pm.Segments) == 0 || *pm.Segments[0].Key != *pm.Key) {
			t.Fatalf("playlist key %+v without matching segment key", pm.Key)
		}
		// ParseMedia ignores an unterminated last line (ffmpeg may be
		// mid-write) while Kind looks at everything, so compare only
		// complete inputs.
		if bytes.HasSuffix(data, []byte("\n")) {
			if isMaster, err := Kind(data); err == nil && isMaster {
				t.Fatal("ParseMedia accepted what Kind calls a master playlist")
			}
		}
	})
}

// FuzzParseMaster checks that no input makes ParseMaster panic.
func FuzzParseMaster(f *testing.F) {
	addFixtureSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		pm, err := ParseMaster(bytes.NewReader(data))
		if err != nil {
			return
		}
		for _, v := range pm.Variants {
			if v.URI == "" || v.Bandwidth < 0 || v.Width < 0 || v.Height < 0 {
				t.Fatalf("bad variant %+v", v)
			}
		}
		if isMaster, err := Kind(data); err == nil && !isMaster {
			t.Fatal("ParseMaster accepted what Kind calls a media playlist")
		}
	})
}
