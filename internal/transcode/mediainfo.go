package transcode

import (
	"bytes"
	"errors"
	"fmt"
)

// Reading what a segment's bitstream says about its media, for titles whose
// playlists do not say it (the backfill's legacy titles): the picture size,
// frame rate and avc1 profile and level from the H.264 SPS, the AAC object
// type and channel count from ADTS, whether the segment starts with an IDR
// picture, and whether it carries ATSC A/53 closed captions (CEA-608/708 in
// SEI user_data_registered_itu_t_t35, "GA94"). The readers are streaming and
// bounded: a TSInspector sees every byte as it goes past once, keeps a few
// KiB per access unit, and never buffers the segment.

// VideoInfo is an H.264 stream as its SPS describes it.
type VideoInfo struct {
	Codec         string // RFC 6381, "avc1.64001f"
	Width, Height int    // displayed size, after the SPS's cropping
	// FrameRate is from the SPS's VUI timing information; 0 when it has
	// none (the caller counts frames instead).
	FrameRate float64
}

// AudioInfo is an AAC stream as its ADTS header or AudioSpecificConfig
// describes it.
type AudioInfo struct {
	Codec    string // RFC 6381, "mp4a.40.2"
	Channels int    // 0 when the configuration does not say (channel_configuration 0)
}

// SegmentInfo is what one segment says about its media.
type SegmentInfo struct {
	Video *VideoInfo // nil: no H.264 stream, or no SPS in the segment
	Audio *AudioInfo // nil: no AAC stream, or no audio in the segment
	// HasVideo and HasAudio say the program lists such a stream.
	HasVideo, HasAudio bool
	// StartsWithIDR: the first video access unit is an IDR picture.
	StartsWithIDR bool
	// VideoFrames counts video access units (PES packets in MPEG-TS).
	VideoFrames int
	// Captions: an A/53 cc_data with valid, non-padding caption data.
	Captions bool
	// IFrame is the first access unit cut out as its own MPEG-TS (see
	// FirstIFrame), when the inspector was asked for it; nil when the
	// segment does not start with an IDR.
	IFrame []byte
}

// maxAUScan bounds the bytes of each access unit kept for NAL scanning: the
// SPS, PPS and SEI come before the first slice, within a few KiB; the
// first access unit keeps more, for a large SPS with scaling lists.
const (
	maxAUScan      = 8 << 10
	maxFirstAUScan = 64 << 10
)

// TSInspector reads one MPEG-TS segment written to it and reports its
// SegmentInfo at Finish. With CutIFrame it also keeps the bytes up to the
// end of the first video access unit and cuts it with FirstIFrame.
type TSInspector struct {
	CutIFrame bool

	partial  []byte // an incomplete TS packet from the last Write
	off      int64
	err      error
	pmtPID   int
	videoPID int
	audioPID int
	pmtSeen  bool
	au       []byte // start of the current video PES
	auCount  int
	audio    []byte // start of the first audio PES
	head     []byte // with CutIFrame: bytes until the second video PES starts
	headDone bool
	info     SegmentInfo
}

// NewTSInspector returns an inspector for one segment.
func NewTSInspector(cutIFrame bool) *TSInspector {
	return &TSInspector{CutIFrame: cutIFrame, pmtPID: -1, videoPID: -1, audioPID: -1}
}

// Write consumes the next bytes of the segment; it never fails (a broken
// stream is reported by Finish), so that it can sit in an io.TeeReader.
func (s *TSInspector) Write(p []byte) (int, error) {
	n := len(p)
	if s.err != nil {
		return n, nil
	}
	if s.CutIFrame && !s.headDone {
		s.head = append(s.head, p...)
		if len(s.head) > maxIFrameBytes+1<<20 {
			s.headDone, s.head = true, nil // FirstIFrame would refuse it anyway
		}
	}
	if len(s.partial) > 0 {
		need := 188 - len(s.partial)
		if len(p) < need {
			s.partial = append(s.partial, p...)
			return n, nil
		}
		s.partial = append(s.partial, p[:need]...)
		s.packet(s.partial)
		s.partial = s.partial[:0]
		p = p[need:]
	}
	for len(p) >= 188 && s.err == nil {
		s.packet(p[:188])
		p = p[188:]
	}
	s.partial = append(s.partial, p...)
	return n, nil
}

func (s *TSInspector) packet(pkt []byte) {
	defer func() { s.off += 188 }()
	if pkt[0] != 0x47 {
		s.err = fmt.Errorf("transcode: inspect: lost MPEG-TS sync at byte %d", s.off)
		return
	}
	pusi := pkt[1]&0x40 != 0
	pid := int(pkt[1]&0x1f)<<8 | int(pkt[2])
	payload := tsPayload(pkt)
	if payload == nil {
		return
	}
	switch {
	case pid == 0 && pusi && s.pmtPID < 0:
		s.pmtPID = parsePAT(payload)
	case pid == s.pmtPID && pusi && !s.pmtSeen:
		s.pmtSeen = true
		s.videoPID, s.audioPID = parsePMT(payload)
		s.info.HasVideo, s.info.HasAudio = s.videoPID >= 0, s.audioPID >= 0
	case pid == s.videoPID && s.videoPID >= 0:
		if pusi {
			s.endAU()
			s.auCount++
			if s.auCount == 2 && s.CutIFrame && !s.headDone {
				// The head ends before this packet: FirstIFrame stops at
				// the second PES start.
				s.headDone = true
			}
			s.au = s.au[:0]
		}
		if s.auCount == 0 {
			return // the tail of a PES begun in an earlier segment
		}
		limit := maxAUScan
		if s.auCount == 1 {
			limit = maxFirstAUScan
		}
		if len(s.au) < limit {
			s.au = append(s.au, payload[:min(len(payload), limit-len(s.au))]...)
		}
	case pid == s.audioPID && s.audioPID >= 0 && s.info.Audio == nil:
		if pusi || len(s.audio) > 0 {
			s.audio = append(s.audio, payload...)
			if a, ok := adtsInfo(pesPayload(s.audio)); ok {
				s.info.Audio = &a
			} else if len(s.audio) > 16<<10 {
				s.audio = nil
				s.audioPID = -1 // not ADTS: name nothing
			}
		}
	}
}

// endAU scans the access unit just completed.
func (s *TSInspector) endAU() {
	if s.auCount == 0 {
		return
	}
	es := pesPayload(s.au)
	s.scanNALs(es, s.auCount == 1)
}

// scanNALs reads an Annex B access unit: its SPS (once), whether it is an
// IDR (the first), and its caption SEI.
func (s *TSInspector) scanNALs(es []byte, first bool) {
	if first {
		s.info.StartsWithIDR = hasIDR(es)
	}
	forEachNAL(es, func(nal []byte) bool {
		switch nal[0] & 0x1f {
		case 7:
			if s.info.Video == nil {
				if v, err := ParseSPS(nal); err == nil {
					s.info.Video = &v
				}
			}
		case 6:
			if !s.info.Captions && seiHasCaptions(nal) {
				s.info.Captions = true
			}
		case 1, 5:
			return false // slices: nothing of interest follows
		}
		return true
	})
}

// Finish reports what the segment held. It fails on a stream that is not
// MPEG-TS, and, with CutIFrame, when the first access unit cannot be cut
// for a reason other than not being an IDR.
func (s *TSInspector) Finish() (SegmentInfo, error) {
	if s.err != nil {
		return SegmentInfo{}, s.err
	}
	if len(s.au) > 0 {
		s.endAU()
		s.au = nil
	}
	info := s.info
	info.VideoFrames = s.auCount
	if s.CutIFrame && s.head != nil && info.StartsWithIDR {
		cut, err := FirstIFrame(bytes.NewReader(s.head))
		if err != nil && !errors.Is(err, ErrNoIFrame) {
			return info, err
		}
		info.IFrame = cut
	}
	s.head = nil
	return info, nil
}

// forEachNAL calls f with each NAL unit (header byte first) of an Annex B
// byte stream, until f returns false. A slice (types 1 and 5) is passed as
// its header byte alone and ends the walk: nothing of interest follows it
// in an access unit, and not scanning its bytes for the next start code
// keeps the tee cheap.
func forEachNAL(es []byte, f func(nal []byte) bool) {
	i := bytes.Index(es, startCode)
	for i >= 0 {
		start := i + 3
		if start >= len(es) {
			return
		}
		if t := es[start] & 0x1f; t == 1 || t == 5 {
			f(es[start : start+1])
			return
		}
		next := bytes.Index(es[start:], startCode)
		end := len(es)
		if next >= 0 {
			end = start + next
		}
		nal := es[start:end]
		for len(nal) > 1 && nal[len(nal)-1] == 0 {
			nal = nal[:len(nal)-1] // the leading zero of a 4-byte start code
		}
		if len(nal) > 0 && !f(nal) || next < 0 {
			return
		}
		i = end
	}
}

var startCode = []byte{0, 0, 1}

// forEachLengthPrefixedNAL is forEachNAL for an ISO BMFF sample: NAL units
// each preceded by its length in size bytes (avcC lengthSizeMinusOne+1).
func forEachLengthPrefixedNAL(sample []byte, size int, f func(nal []byte) bool) {
	for len(sample) >= size {
		n := 0
		for _, b := range sample[:size] {
			n = n<<8 | int(b)
		}
		sample = sample[size:]
		if n <= 0 || n > len(sample) {
			return
		}
		if !f(sample[:n]) {
			return
		}
		sample = sample[n:]
	}
}

// rbsp removes emulation prevention bytes (00 00 03 → 00 00).
func rbsp(nal []byte) []byte {
	out := make([]byte, 0, len(nal))
	zeros := 0
	for _, b := range nal {
		if zeros >= 2 && b == 3 {
			zeros = 0
			continue
		}
		if b == 0 {
			zeros++
		} else {
			zeros = 0
		}
		out = append(out, b)
	}
	return out
}

// bitReader reads the exp-Golomb coded fields of an RBSP.
type bitReader struct {
	b   []byte
	pos int // in bits
	err error
}

var errShortRBSP = errors.New("transcode: SPS ends early")

func (r *bitReader) bit() uint {
	if r.pos >= len(r.b)*8 {
		r.err = errShortRBSP
		return 0
	}
	v := uint(r.b[r.pos/8]>>(7-r.pos%8)) & 1
	r.pos++
	return v
}

func (r *bitReader) bits(n int) uint {
	var v uint
	for range n {
		v = v<<1 | r.bit()
	}
	return v
}

func (r *bitReader) ue() uint {
	zeros := 0
	for r.bit() == 0 {
		if zeros++; zeros > 31 || r.err != nil {
			r.err = errShortRBSP
			return 0
		}
	}
	return 1<<zeros - 1 + r.bits(zeros)
}

func (r *bitReader) se() int {
	v := r.ue()
	if v&1 == 1 {
		return int(v+1) / 2
	}
	return -int(v / 2)
}

// ParseSPS reads an H.264 sequence parameter set NAL unit (header byte
// first, emulation prevention bytes included) far enough for the codec
// string, the cropped picture size and the VUI frame rate (ITU-T H.264
// section 7.3.2.1.1 and Annex E.1.1).
func ParseSPS(nal []byte) (VideoInfo, error) {
	if len(nal) < 4 || nal[0]&0x1f != 7 {
		return VideoInfo{}, errors.New("transcode: not an SPS NAL unit")
	}
	v := VideoInfo{Codec: fmt.Sprintf("avc1.%02x%02x%02x", nal[1], nal[2], nal[3])}
	r := &bitReader{b: rbsp(nal[4:])}
	profile := nal[1]
	r.ue() // seq_parameter_set_id
	chroma := uint(1)
	switch profile {
	case 100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135:
		chroma = r.ue()
		if chroma == 3 {
			r.bit() // separate_colour_plane_flag
		}
		r.ue()            // bit_depth_luma_minus8
		r.ue()            // bit_depth_chroma_minus8
		r.bit()           // qpprime_y_zero_transform_bypass_flag
		if r.bit() == 1 { // seq_scaling_matrix_present_flag
			lists := 8
			if chroma == 3 {
				lists = 12
			}
			for i := range lists {
				if r.bit() == 0 {
					continue
				}
				size := 16
				if i >= 6 {
					size = 64
				}
				last, next := 8, 8
				for range size {
					if next != 0 {
						next = (last + r.se() + 256) % 256
					}
					if next != 0 {
						last = next
					}
				}
			}
		}
	}
	r.ue() // log2_max_frame_num_minus4
	switch r.ue() {
	case 0:
		r.ue() // log2_max_pic_order_cnt_lsb_minus4
	case 1:
		r.bit()
		r.se()
		r.se()
		for n := r.ue(); n > 0 && r.err == nil; n-- {
			r.se()
		}
	}
	r.ue()  // max_num_ref_frames
	r.bit() // gaps_in_frame_num_value_allowed_flag
	mbW := r.ue() + 1
	mbH := r.ue() + 1
	frameMBsOnly := r.bit()
	if frameMBsOnly == 0 {
		r.bit() // mb_adaptive_frame_field_flag
	}
	r.bit() // direct_8x8_inference_flag
	width, height := int(mbW*16), int((2-frameMBsOnly)*mbH*16)
	if r.bit() == 1 { // frame_cropping_flag
		cropX, cropY := uint(1), 2-frameMBsOnly
		switch chroma {
		case 1:
			cropX, cropY = 2, 2*(2-frameMBsOnly)
		case 2:
			cropX = 2
		}
		l, rt, t, b := r.ue(), r.ue(), r.ue(), r.ue()
		width -= int((l + rt) * cropX)
		height -= int((t + b) * cropY)
	}
	if r.err != nil || width <= 0 || height <= 0 || width > 16384 || height > 16384 {
		return VideoInfo{}, fmt.Errorf("transcode: SPS: unreadable picture size")
	}
	v.Width, v.Height = width, height
	if r.bit() == 1 { // vui_parameters_present_flag
		if r.bit() == 1 { // aspect_ratio_info_present_flag
			if r.bits(8) == 255 {
				r.bits(32) // sar_width, sar_height
			}
		}
		if r.bit() == 1 { // overscan_info_present_flag
			r.bit()
		}
		if r.bit() == 1 { // video_signal_type_present_flag
			r.bits(4)
			if r.bit() == 1 {
				r.bits(24)
			}
		}
		if r.bit() == 1 { // chroma_loc_info_present_flag
			r.ue()
			r.ue()
		}
		if r.bit() == 1 { // timing_info_present_flag
			units, scale := r.bits(32), r.bits(32)
			if r.err == nil && units > 0 && scale > 0 {
				// Two ticks per frame (field-based timing, Annex E).
				v.FrameRate = float64(scale) / float64(2*units)
			}
		}
	}
	return v, nil
}

// adtsInfo reads the first ADTS header of an AAC stream.
func adtsInfo(es []byte) (AudioInfo, bool) {
	codec, ok := adtsCodec(es)
	if !ok || len(es) < 4 {
		return AudioInfo{}, false
	}
	return AudioInfo{Codec: codec, Channels: int(es[2]&1)<<2 | int(es[3]>>6)}, true
}

// seiHasCaptions reports whether an SEI NAL unit holds an ATSC A/53
// cc_data (ITU-T T.35 country 0xB5, provider 0x0031, "GA94", type 3) with
// at least one valid caption triple that is not padding: a CEA-608 pair
// whose bytes are not both null once the parity bit is dropped, or a
// CEA-708 DTVCC packet byte pair.
func seiHasCaptions(nal []byte) bool {
	b := rbsp(nal[1:])
	for len(b) > 2 {
		var typ, size int
		var ok bool
		if typ, b, ok = seiNumber(b); !ok {
			return false
		}
		if size, b, ok = seiNumber(b); !ok || size > len(b) {
			return false
		}
		if typ == 4 && ccDataHasCaptions(b[:size]) {
			return true
		}
		b = b[size:]
		if len(b) == 1 && b[0] == 0x80 { // rbsp_trailing_bits
			break
		}
	}
	return false
}

// seiNumber reads an SEI payloadType or payloadSize: 0xFF bytes each
// adding 255, then the last byte (H.264 section 7.3.2.3.1).
func seiNumber(b []byte) (int, []byte, bool) {
	n := 0
	for len(b) > 0 && b[0] == 0xff {
		n += 255
		b = b[1:]
	}
	if len(b) == 0 {
		return 0, nil, false
	}
	return n + int(b[0]), b[1:], true
}

func ccDataHasCaptions(p []byte) bool {
	// country, provider (2), "GA94", user_data_type_code 3, flags+count, em_data
	if len(p) < 10 || p[0] != 0xb5 || p[1] != 0x00 || p[2] != 0x31 || string(p[3:7]) != "GA94" || p[7] != 0x03 {
		return false
	}
	if p[8]&0x40 == 0 { // process_cc_data_flag
		return false
	}
	count := int(p[8] & 0x1f)
	cc := p[10:]
	for i := 0; i < count && 3*i+2 < len(cc); i++ {
		flags, d1, d2 := cc[3*i], cc[3*i+1], cc[3*i+2]
		if flags&0x04 == 0 { // cc_valid
			continue
		}
		switch flags & 0x03 {
		case 0, 1:
			if d1&0x7f != 0 || d2&0x7f != 0 {
				return true
			}
		default: // a CEA-708 DTVCC byte pair
			if d1 != 0 || d2 != 0 {
				return true
			}
		}
	}
	return false
}
