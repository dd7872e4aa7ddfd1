package transcode

import (
	"encoding/binary"
	"fmt"
	"io"
	"math/bits"
	"os"
	"strconv"
	"strings"
)

// An fMP4 init section is a few hundred bytes to a few kB; anything larger
// is not one of ours.
const maxInitSize = 1 << 20

// InitCodecs returns the RFC 6381 CODECS value of an fMP4 init section
// (ffmpeg's init_<name>.mp4), e.g. "hvc1.1.6.L90.B0,mp4a.40.2": the tracks'
// sample entries in track order, named from their decoder configuration
// records, as SegmentCodecs names a TS segment's from its SPS and ADTS
// header. Video first, then audio, as the TS reader writes them.
//
// The boxes are read here rather than with an MP4 library: the one the
// field uses (github.com/Eyevinn/mp4ff) is not served by the module proxy
// this project builds from, and the path is short and fixed
// (moov/trak/mdia/minf/stbl/stsd, then avcC, hvcC or esds), every length
// checked against its parent.
func InitCodecs(path string) (string, error) {
	b, err := readSmall(path)
	if err != nil {
		return "", err
	}
	return CodecsFromInit(b)
}

func readSmall(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errCodecs, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxInitSize+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errCodecs, err)
	}
	if len(b) > maxInitSize {
		return nil, fmt.Errorf("%w: init section larger than %d bytes", errCodecs, maxInitSize)
	}
	return b, nil
}

// CodecsFromInit names the codecs of an fMP4 init section's bytes (see
// InitCodecs).
func CodecsFromInit(b []byte) (string, error) {
	moov, ok := child(b, "moov")
	if !ok {
		return "", fmt.Errorf("%w: init section has no moov box", errCodecs)
	}
	var video, audio []string
	for _, trak := range children(moov, "trak") {
		stsd, ok := boxPath(trak, "mdia", "minf", "stbl", "stsd")
		if !ok || len(stsd) < 8 {
			return "", fmt.Errorf("%w: track without a sample description", errCodecs)
		}
		entries := boxes(stsd[8:]) // version, flags, entry count
		if len(entries) == 0 {
			return "", fmt.Errorf("%w: empty sample description", errCodecs)
		}
		e := entries[0]
		switch e.typ {
		case "avc1", "avc3", "hvc1", "hev1":
			c, err := videoCodec(e)
			if err != nil {
				return "", err
			}
			video = append(video, c)
		case "mp4a":
			c, err := audioCodec(e)
			if err != nil {
				return "", err
			}
			audio = append(audio, c)
		default:
			return "", fmt.Errorf("%w: sample entry %q is not H.264, HEVC or AAC", errCodecs, e.typ)
		}
	}
	all := append(video, audio...)
	if len(all) == 0 {
		return "", fmt.Errorf("%w: init section has no track", errCodecs)
	}
	return strings.Join(all, ","), nil
}

// box is one ISO BMFF box: its type and its payload.
type box struct {
	typ  string
	body []byte
}

// boxes splits b into boxes; a box whose size overruns b ends the list.
func boxes(b []byte) []box {
	var out []box
	for len(b) >= 8 {
		size := uint64(binary.BigEndian.Uint32(b))
		typ, hdr := string(b[4:8]), uint64(8)
		switch size {
		case 0:
			size = uint64(len(b))
		case 1:
			if len(b) < 16 {
				return out
			}
			size, hdr = binary.BigEndian.Uint64(b[8:]), 16
		}
		if size < hdr || size > uint64(len(b)) {
			return out
		}
		out = append(out, box{typ: typ, body: b[hdr:size]})
		b = b[size:]
	}
	return out
}

func children(b []byte, typ string) [][]byte {
	var out [][]byte
	for _, x := range boxes(b) {
		if x.typ == typ {
			out = append(out, x.body)
		}
	}
	return out
}

func child(b []byte, typ string) ([]byte, bool) {
	c := children(b, typ)
	if len(c) == 0 {
		return nil, false
	}
	return c[0], true
}

func boxPath(b []byte, types ...string) ([]byte, bool) {
	for _, t := range types {
		var ok bool
		if b, ok = child(b, t); !ok {
			return nil, false
		}
	}
	return b, true
}

// Sample entry headers before their child boxes (ISO/IEC 14496-12 12.1.3,
// 12.2.3): 8 bytes of SampleEntry, then 70 of VisualSampleEntry or 20 of
// AudioSampleEntry (version 0).
const (
	visualEntryHeader = 8 + 70
	audioEntryHeader  = 8 + 20
)

func videoCodec(e box) (string, error) {
	if len(e.body) < visualEntryHeader {
		return "", fmt.Errorf("%w: short %s sample entry", errCodecs, e.typ)
	}
	kids := e.body[visualEntryHeader:]
	switch e.typ {
	case "avc1", "avc3":
		c, ok := child(kids, "avcC")
		if !ok || len(c) < 4 {
			return "", fmt.Errorf("%w: %s without avcC", errCodecs, e.typ)
		}
		// AVCDecoderConfigurationRecord: version, profile, compatibility, level.
		return fmt.Sprintf("%s.%02x%02x%02x", e.typ, c[1], c[2], c[3]), nil
	default:
		c, ok := child(kids, "hvcC")
		if !ok {
			return "", fmt.Errorf("%w: %s without hvcC", errCodecs, e.typ)
		}
		return hevcCodec(e.typ, c)
	}
}

// hevcCodec names an HEVCDecoderConfigurationRecord as ISO/IEC 14496-15
// Annex E.3 says: <entry>.<profile space letter><profile idc>.<profile
// compatibility flags, bit-reversed, hex without leading zeros>.<L or H
// tier><level idc>.<constraint bytes in hex, dot-separated, trailing zero
// bytes left out>. x265's Main at level 3 is "hvc1.1.6.L90.B0". At least
// the first constraint byte is written, as ffmpeg and Apple's tools do.
func hevcCodec(entry string, c []byte) (string, error) {
	if len(c) < 13 || c[0] != 1 {
		return "", fmt.Errorf("%w: hvcC is not a version 1 record", errCodecs)
	}
	space := []string{"", "A", "B", "C"}[c[1]>>6]
	tier := "L"
	if c[1]&0x20 != 0 {
		tier = "H"
	}
	profile := c[1] & 0x1f
	compat := bits.Reverse32(binary.BigEndian.Uint32(c[2:6]))
	constraints := c[6:12]
	n := len(constraints)
	for n > 1 && constraints[n-1] == 0 {
		n--
	}
	parts := []string{entry, space + strconv.Itoa(int(profile)), strconv.FormatUint(uint64(compat), 16),
		tier + strconv.Itoa(int(c[12]))}
	for _, x := range constraints[:n] {
		parts = append(parts, strings.ToUpper(strconv.FormatUint(uint64(x), 16)))
	}
	return strings.Join(parts, "."), nil
}

// audioCodec names an mp4a entry from its esds: mp4a.40.<audio object
// type> for MPEG-4 audio (objectTypeIndication 0x40).
func audioCodec(e box) (string, error) {
	if len(e.body) < audioEntryHeader {
		return "", fmt.Errorf("%w: short mp4a sample entry", errCodecs)
	}
	esds, ok := child(e.body[audioEntryHeader:], "esds")
	if !ok || len(esds) < 4 {
		return "", fmt.Errorf("%w: mp4a without esds", errCodecs)
	}
	// ES_Descriptor (tag 3) holds DecoderConfigDescriptor (tag 4) holds
	// DecoderSpecificInfo (tag 5), the AudioSpecificConfig.
	es, ok := descriptor(esds[4:], 3)
	if !ok || len(es) < 3 {
		return "", fmt.Errorf("%w: esds without ES descriptor", errCodecs)
	}
	flags := es[2]
	es = es[3:]
	if flags&0x80 != 0 { // streamDependenceFlag
		es = es[min(2, len(es)):]
	}
	if flags&0x40 != 0 && len(es) > 0 { // URL_Flag
		es = es[min(1+int(es[0]), len(es)):]
	}
	if flags&0x20 != 0 { // OCRstreamFlag
		es = es[min(2, len(es)):]
	}
	dc, ok := descriptor(es, 4)
	if !ok || len(dc) < 13 {
		return "", fmt.Errorf("%w: esds without decoder config", errCodecs)
	}
	if dc[0] != 0x40 {
		return "", fmt.Errorf("%w: mp4a object type 0x%02x is not MPEG-4 audio", errCodecs, dc[0])
	}
	asc, ok := descriptor(dc[13:], 5)
	if !ok || len(asc) < 1 {
		return "", fmt.Errorf("%w: esds without AudioSpecificConfig", errCodecs)
	}
	aot := int(asc[0] >> 3)
	if aot == 31 && len(asc) >= 2 {
		aot = 32 + int(asc[0]&7)<<3 | int(asc[1]>>5)
	}
	return "mp4a.40." + strconv.Itoa(aot), nil
}

// descriptor returns the payload of the first MPEG-4 descriptor of b when
// it has the given tag (ISO/IEC 14496-1 8.3.3: sizes of up to four bytes
// of 7 bits).
func descriptor(b []byte, tag byte) ([]byte, bool) {
	if len(b) < 2 || b[0] != tag {
		return nil, false
	}
	size, i := 0, 1
	for ; i < len(b) && i <= 4; i++ {
		size = size<<7 | int(b[i]&0x7f)
		if b[i]&0x80 == 0 {
			i++
			break
		}
	}
	if i+size > len(b) {
		return nil, false
	}
	return b[i : i+size], true
}

// FirstPTSFMP4 returns the 90 kHz time at which an fMP4 rendition's first
// fragment starts, the MPEGTS value of its subtitles' X-TIMESTAMP-MAP:
// the lowest baseMediaDecodeTime (tfdt) over the fragment's tracks, each in
// its track's timescale (mdhd of the init section). hls.js takes the start
// of an fMP4 timeline from the same tfdt values; ffmpeg's fMP4 timelines
// start at 0, where the mpegts muxer adds 1.4 s.
func FirstPTSFMP4(initPath, segmentPath string) (int64, error) {
	ib, err := readSmall(initPath)
	if err != nil {
		return 0, err
	}
	f, err := os.Open(segmentPath)
	if err != nil {
		return 0, fmt.Errorf("transcode: first PTS: %w", err)
	}
	defer f.Close()
	sb, err := io.ReadAll(io.LimitReader(f, 64<<20))
	if err != nil {
		return 0, fmt.Errorf("transcode: first PTS: %w", err)
	}
	return firstPTSFMP4(ib, sb)
}

func firstPTSFMP4(initSection, segment []byte) (int64, error) {
	moov, ok := child(initSection, "moov")
	if !ok {
		return 0, fmt.Errorf("transcode: first PTS: init section has no moov box")
	}
	scales := map[uint32]uint32{} // track id → timescale
	for _, trak := range children(moov, "trak") {
		tkhd, ok1 := child(trak, "tkhd")
		mdhd, ok2 := boxPath(trak, "mdia", "mdhd")
		if !ok1 || !ok2 || len(tkhd) < 24 || len(mdhd) < 24 {
			return 0, fmt.Errorf("transcode: first PTS: track without tkhd or mdhd")
		}
		id, scale := fullBoxField(tkhd, 12, 20), fullBoxField(mdhd, 12, 20)
		if scale == 0 {
			return 0, fmt.Errorf("transcode: first PTS: track %d has timescale 0", id)
		}
		scales[id] = scale
	}
	moof, ok := child(segment, "moof")
	if !ok {
		return 0, fmt.Errorf("transcode: first PTS: segment has no moof box")
	}
	best := int64(-1)
	for _, traf := range children(moof, "traf") {
		tfhd, ok1 := child(traf, "tfhd")
		tfdt, ok2 := child(traf, "tfdt")
		if !ok1 || !ok2 || len(tfhd) < 8 || len(tfdt) < 8 {
			return 0, fmt.Errorf("transcode: first PTS: fragment track without tfhd or tfdt")
		}
		scale, ok := scales[binary.BigEndian.Uint32(tfhd[4:])]
		if !ok {
			return 0, fmt.Errorf("transcode: first PTS: fragment of a track the init section lacks")
		}
		var t uint64
		if tfdt[0] == 1 {
			if len(tfdt) < 12 {
				return 0, fmt.Errorf("transcode: first PTS: short tfdt")
			}
			t = binary.BigEndian.Uint64(tfdt[4:])
		} else {
			t = uint64(binary.BigEndian.Uint32(tfdt[4:]))
		}
		if t > 1<<40 {
			return 0, fmt.Errorf("transcode: first PTS: decode time %d out of range", t)
		}
		pts := int64(t * 90000 / uint64(scale))
		if best < 0 || pts < best {
			best = pts
		}
	}
	if best < 0 {
		return 0, fmt.Errorf("transcode: first PTS: fragment has no track")
	}
	return best, nil
}

// fullBoxField reads the 32-bit field of a tkhd or mdhd at offset v0 in a
// version 0 box or v1 in a version 1 box (whose times are 64-bit).
func fullBoxField(b []byte, v0, v1 int) uint32 {
	off := v0
	if b[0] == 1 {
		off = v1
	}
	if off+4 > len(b) {
		return 0
	}
	return binary.BigEndian.Uint32(b[off:])
}
