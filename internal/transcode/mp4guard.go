package transcode

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
)

// mp4ff sizes slices from the entry counts inside boxes (elst, stts, stsz,
// trun, sidx, …) before it reads the entries, so a few bytes claiming
// millions of entries end the process with "runtime: out of memory", which
// recover cannot catch. Before mp4ff sees an init section or a segment,
// guardMP4 checks that boxes tile their parents at every level it
// descends into, and hides every box the readers here do not need by
// renaming it "free" in place (same size, same place: a fragment's data
// offsets, relative to its moof, stay right). mp4ff then decodes only the
// boxes below, whose allocations are bounded by their own bytes, and trun,
// whose sample count is checked against its size.

// mp4Children is where the children of a box the readers need start in
// its payload (0 for plain containers; full-box and sample-entry headers
// first otherwise). A type absent here, and not in mp4Leaves, is hidden.
var mp4Children = map[string]int{
	"moov": 0, "trak": 0, "mdia": 0, "minf": 0, "stbl": 0, "mvex": 0, "moof": 0, "traf": 0,
	"stsd": 8, // version and flags, entry count
	// VisualSampleEntry: 6 reserved, data reference index, 70 bytes of
	// picture fields.
	"avc1": 78, "avc3": 78, "hvc1": 78, "hev1": 78,
	// AudioSampleEntry (version 0, as ISO BMFF writers make it).
	"mp4a": 28,
}

// mp4Leaves are the boxes kept whole: none allocates from a count.
var mp4Leaves = map[string]bool{
	"ftyp": true, "styp": true, "mdat": true, "free": true, "skip": true,
	"mvhd": true, "tkhd": true, "mdhd": true, "hdlr": true, "trex": true, "mehd": true,
	"mfhd": true, "tfhd": true, "tfdt": true, "trun": true,
	"avcC": true, "hvcC": true, "esds": true, "pasp": true, "btrt": true,
}

// mp4Tables are the sample tables kept (mp4ff tells a fragmented file
// by its empty stts, and reads the others beside it): where each one's
// entry count is, where its entries start, and their size, so that the
// count is held to the bytes.
var mp4Tables = map[string]struct{ count, entries, size int }{
	"stts": {4, 8, 8}, "ctts": {4, 8, 8}, "stsc": {4, 8, 12}, "stco": {4, 8, 4}, "co64": {4, 8, 8}, "stss": {4, 8, 4},
	"stsz": {8, 12, 4}, // after the uniform sample size; entries only when it is 0
}

// maxEmptySamples bounds a trun's sample count when its samples take no
// bytes in the box (every field defaulted): a segment of a few seconds
// has a few hundred.
const maxEmptySamples = 1 << 16

// guardMP4 makes b safe for mp4ff to decode, in place, or says why it
// cannot be.
func guardMP4(b []byte) error {
	if err := guardBoxes(b, 0); err != nil {
		return fmt.Errorf("malformed MP4: %w", err)
	}
	return nil
}

// guardBoxes checks that b is exactly a sequence of boxes, descends into
// the ones mp4Children names, and hides the rest of the unknown ones.
func guardBoxes(b []byte, depth int) error {
	if depth > 8 {
		return errors.New("boxes nested too deep")
	}
	for len(b) > 0 {
		if len(b) < 8 {
			return errors.New("truncated box header")
		}
		size, hdr := uint64(binary.BigEndian.Uint32(b)), uint64(8)
		switch size {
		case 0:
			size = uint64(len(b)) // to the end of its parent
		case 1:
			if len(b) < 16 {
				return errors.New("truncated box header")
			}
			size, hdr = binary.BigEndian.Uint64(b[8:]), 16
		}
		if size < hdr || size > uint64(len(b)) {
			return fmt.Errorf("box %q of %d bytes in %d", b[4:8], size, len(b))
		}
		typ, payload := string(b[4:8]), b[hdr:size]
		if skip, ok := mp4Children[typ]; ok {
			if len(payload) < skip {
				return fmt.Errorf("box %q of %d bytes is too short", typ, size)
			}
			if err := guardBoxes(payload[skip:], depth+1); err != nil {
				return err
			}
		} else if t, ok := mp4Tables[typ]; ok {
			if err := checkTable(typ, payload, t.count, t.entries, t.size); err != nil {
				return err
			}
		} else if typ == "trun" {
			if err := checkTrun(payload); err != nil {
				return err
			}
		} else if !mp4Leaves[typ] {
			copy(b[4:8], "free")
		}
		b = b[size:]
	}
	return nil
}

// checkTrun holds a trun's sample count to the bytes its samples take.
func checkTrun(p []byte) error {
	if len(p) < 8 {
		return errors.New("trun too short")
	}
	flags, count := binary.BigEndian.Uint32(p)&0xffffff, uint64(binary.BigEndian.Uint32(p[4:]))
	fixed := 8 + 4*uint64(bits.OnesCount32(flags&0x5)) // data offset, first sample flags
	per := 4 * uint64(bits.OnesCount32(flags&0xf00))   // duration, size, flags, composition offset
	if fixed > uint64(len(p)) || (per > 0 && count > (uint64(len(p))-fixed)/per) || (per == 0 && count > maxEmptySamples) {
		return fmt.Errorf("trun of %d bytes claims %d samples", len(p), count)
	}
	return nil
}

// checkTable holds a sample table's entry count to the bytes after its
// header (stsz with a uniform size lists none; its count is capped).
func checkTable(typ string, p []byte, countAt, entriesAt, size int) error {
	if len(p) < entriesAt {
		return fmt.Errorf("%s too short", typ)
	}
	count := uint64(binary.BigEndian.Uint32(p[countAt:]))
	if typ == "stsz" && binary.BigEndian.Uint32(p[4:]) != 0 {
		if count > maxEmptySamples<<8 {
			return fmt.Errorf("stsz claims %d samples", count)
		}
		return nil
	}
	if count > uint64(len(p)-entriesAt)/uint64(size) {
		return fmt.Errorf("%s of %d bytes claims %d entries", typ, len(p), count)
	}
	return nil
}
