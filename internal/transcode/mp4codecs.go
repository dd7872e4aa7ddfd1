package transcode

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"os"
	"strconv"
	"strings"

	"github.com/Eyevinn/mp4ff/hevc"
	"github.com/Eyevinn/mp4ff/mp4"
)

// An fMP4 init section is a few hundred bytes to a few kB (a moov without
// samples); anything larger is not one of ours.
const maxInitSize = 1 << 20

// InitCodecs returns the RFC 6381 CODECS value of an fMP4 init section
// (ffmpeg's init_<name>.mp4), e.g. "hvc1.1.6.L90.B0,mp4a.40.2": the tracks'
// sample entries in track order, named from their decoder configuration
// records, as SegmentCodecs names a TS segment's from its SPS and ADTS
// header. Video first, then audio, as the TS reader writes them.
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
	return b, nil
}

// CodecsFromInit names the codecs of an fMP4 init section's bytes (see
// InitCodecs); a track that is not H.264, HEVC or AAC is refused, since
// the CODECS value would be wrong without it.
func CodecsFromInit(b []byte) (string, error) {
	init, err := decodeInit(b)
	if err != nil {
		return "", fmt.Errorf("%w: %w", errCodecs, err)
	}
	var video, audio []string
	for _, trak := range init.Moov.Traks {
		c, isVideo, err := trackCodec(trak)
		if err != nil {
			return "", fmt.Errorf("%w: %w", errCodecs, err)
		}
		if isVideo {
			video = append(video, c)
		} else {
			audio = append(audio, c)
		}
	}
	all := append(video, audio...)
	if len(all) == 0 {
		return "", fmt.Errorf("%w: init section has no track", errCodecs)
	}
	return strings.Join(all, ","), nil
}

// errOtherEntry marks a track whose sample entry is none of the ones
// trackCodec names (a reader of media may pass over it; CODECS may not).
var errOtherEntry = errors.New("sample entry is not H.264, HEVC or AAC")

// decodeInit decodes an init section with mp4ff once it is known to be
// small and its top-level boxes to tile it (see decodeMP4).
func decodeInit(b []byte) (*mp4.InitSegment, error) {
	if len(b) > maxInitSize {
		return nil, fmt.Errorf("init section of %d bytes is larger than %d", len(b), maxInitSize)
	}
	f, err := decodeMP4(bytes.Clone(b)) // the caller's bytes stay as they are
	if err != nil {
		return nil, fmt.Errorf("init section: %w", err)
	}
	if f.Init == nil || f.Init.Moov == nil {
		return nil, errors.New("init section has no moov box")
	}
	return f.Init, nil
}

// decodeMP4 decodes an init section or a media segment with mp4ff, once
// guardMP4 has made b safe for it (in place: b is changed), and turns a
// decoder panic into an error.
func decodeMP4(b []byte) (f *mp4.File, err error) {
	defer recoverMP4(&err)
	if err := guardMP4(b); err != nil {
		return nil, err
	}
	return mp4.DecodeFile(bytes.NewReader(b))
}

// trackCodec is the one place an fMP4 track's RFC 6381 codec is named, for
// the pipeline's CODECS and backfill's media reading alike: avc1/avc3 from
// avcC (profile, compatibility, level), hvc1/hev1 from hvcC (hevcCodec),
// mp4a.40.<audio object type> from esds. isVideo tells which list it joins.
func trackCodec(trak *mp4.TrakBox) (codec string, isVideo bool, err error) {
	if trak.Mdia == nil || trak.Mdia.Minf == nil || trak.Mdia.Minf.Stbl == nil || trak.Mdia.Minf.Stbl.Stsd == nil {
		return "", false, fmt.Errorf("track without a sample description: %w", errOtherEntry)
	}
	stsd := trak.Mdia.Minf.Stbl.Stsd
	switch {
	case stsd.AvcX != nil:
		if stsd.AvcX.AvcC == nil {
			return "", true, fmt.Errorf("%s without avcC", stsd.AvcX.Type())
		}
		r := stsd.AvcX.AvcC.DecConfRec
		return fmt.Sprintf("%s.%02x%02x%02x", stsd.AvcX.Type(), r.AVCProfileIndication, r.ProfileCompatibility, r.AVCLevelIndication), true, nil
	case stsd.HvcX != nil:
		if stsd.HvcX.HvcC == nil {
			return "", true, fmt.Errorf("%s without hvcC", stsd.HvcX.Type())
		}
		return hevcCodec(stsd.HvcX.Type(), &stsd.HvcX.HvcC.DecConfRec), true, nil
	case stsd.Mp4a != nil:
		c, err := aacCodec(stsd.Mp4a)
		return c, false, err
	}
	return "", false, errOtherEntry
}

// hevcCodec names an HEVCDecoderConfigurationRecord as ISO/IEC 14496-15
// Annex E.3 says: <entry>.<profile space letter><profile idc>.<profile
// compatibility flags, bit-reversed, hex without leading zeros>.<L or H
// tier><level idc>.<constraint bytes in hex, dot-separated, trailing zero
// bytes left out>. x265's Main at level 3 is "hvc1.1.6.L90.B0". At least
// the first constraint byte is written, as ffmpeg and Apple's tools do.
// mp4ff's hevc.CodecString writes the same from the SPS (with the
// compatibility hex in capitals; TestHEVCCodecMatchesMp4ff); the record is
// read here because it is what the sample entry carries, and the
// compatibility hex stays lower-case as the project's CODECS always were.
func hevcCodec(entry string, r *hevc.DecConfRec) string {
	space := []string{"", "A", "B", "C"}[r.GeneralProfileSpace&3]
	tier := "L"
	if r.GeneralTierFlag {
		tier = "H"
	}
	compat := bits.Reverse32(r.GeneralProfileCompatibilityFlags)
	var constraints [6]byte // 48 bits, first byte highest
	for i := range constraints {
		constraints[i] = byte(r.GeneralConstraintIndicatorFlags >> (40 - 8*i))
	}
	n := len(constraints)
	for n > 1 && constraints[n-1] == 0 {
		n--
	}
	parts := []string{entry, space + strconv.Itoa(int(r.GeneralProfileIDC)), strconv.FormatUint(uint64(compat), 16),
		tier + strconv.Itoa(int(r.GeneralLevelIDC))}
	for _, x := range constraints[:n] {
		parts = append(parts, strings.ToUpper(strconv.FormatUint(uint64(x), 16)))
	}
	return strings.Join(parts, ".")
}

// aacCodec names an mp4a entry from its esds: mp4a.40.<audio object type>
// for MPEG-4 audio (objectTypeIndication 0x40), the type read from the
// AudioSpecificConfig's first bits (ISO/IEC 14496-3 1.6.2.1, with the
// escape for types from 32), so that any MPEG-4 audio is named, not only
// the types aac.DecodeAudioSpecificConfig decodes.
func aacCodec(e *mp4.AudioSampleEntryBox) (string, error) {
	if e.Esds == nil {
		return "", errors.New("mp4a without esds")
	}
	dc := e.Esds.DecConfigDescriptor
	if dc.ObjectType != 0x40 {
		return "", fmt.Errorf("mp4a object type 0x%02x is not MPEG-4 audio", dc.ObjectType)
	}
	if dc.DecSpecificInfo == nil || len(dc.DecSpecificInfo.DecConfig) == 0 {
		return "", errors.New("esds without an AudioSpecificConfig")
	}
	asc := dc.DecSpecificInfo.DecConfig
	aot := int(asc[0] >> 3)
	if aot == 31 && len(asc) >= 2 {
		aot = 32 + int(asc[0]&7)<<3 | int(asc[1]>>5)
	}
	return "mp4a.40." + strconv.Itoa(aot), nil
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

func firstPTSFMP4(initSection, segment []byte) (pts int64, err error) {
	defer recoverMP4(&err)
	init, err := decodeInit(initSection)
	if err != nil {
		return 0, fmt.Errorf("transcode: first PTS: %w", err)
	}
	scales := map[uint32]uint32{} // track id → timescale
	for _, trak := range init.Moov.Traks {
		if trak.Tkhd == nil || trak.Mdia == nil || trak.Mdia.Mdhd == nil {
			return 0, errors.New("transcode: first PTS: track without tkhd or mdhd")
		}
		id, scale := trak.Tkhd.TrackID, trak.Mdia.Mdhd.Timescale
		if scale == 0 {
			return 0, fmt.Errorf("transcode: first PTS: track %d has timescale 0", id)
		}
		scales[id] = scale
	}
	f, err := decodeMP4(segment)
	if err != nil {
		return 0, fmt.Errorf("transcode: first PTS: segment: %w", err)
	}
	if len(f.Segments) == 0 || len(f.Segments[0].Fragments) == 0 || f.Segments[0].Fragments[0].Moof == nil {
		return 0, errors.New("transcode: first PTS: segment has no moof box")
	}
	best := int64(-1)
	for _, traf := range f.Segments[0].Fragments[0].Moof.Trafs {
		if traf.Tfhd == nil || traf.Tfdt == nil {
			return 0, errors.New("transcode: first PTS: fragment track without tfhd or tfdt")
		}
		scale, ok := scales[traf.Tfhd.TrackID]
		if !ok {
			return 0, errors.New("transcode: first PTS: fragment of a track the init section lacks")
		}
		t := traf.Tfdt.BaseMediaDecodeTime()
		if t > 1<<40 {
			return 0, fmt.Errorf("transcode: first PTS: decode time %d out of range", t)
		}
		pts := int64(t * 90000 / uint64(scale))
		if best < 0 || pts < best {
			best = pts
		}
	}
	if best < 0 {
		return 0, errors.New("transcode: first PTS: fragment has no track")
	}
	return best, nil
}
