package transcode

import (
	"errors"
	"fmt"
	"io"
)

// ErrNoIFrame marks a segment whose first video access unit is not an IDR
// picture (or that has none): our encodes start every segment with one
// (closed GOPs, -sc_threshold 0), so this is a broken invariant, not input
// to work around.
var ErrNoIFrame = errors.New("transcode: no IDR access unit at the start of the segment")

// maxIFrameBytes bounds the first access unit FirstIFrame copies: an IDR
// picture of the largest rung is a few hundred KiB; more is not an I-frame
// segment worth publishing.
const maxIFrameBytes = 16 << 20

// FirstIFrame cuts the first video access unit out of one MPEG-TS segment
// made by the ladder and returns it as a small MPEG-TS of its own: the PAT,
// the PMT rewritten to list the video stream only, and the TS packets of
// the first video PES (ffmpeg's muxer writes one PES per video frame), byte
// for byte. Its timestamps, PCR and continuity counters are the
// segment's own, so the I-frame plays at the segment's time; audio is
// dropped. The cut is in process: no second decode, no process spawned,
// a few hundred microseconds per segment.
//
// It is the payload of one I-frame-only segment (EXT-X-I-FRAMES-ONLY):
// whole, so that it is encrypted on its own like any segment, since a byte
// range into a whole-segment AES-128-CBC ciphertext cannot be decrypted
// alone. It reads the segment only up to the end of that access unit, and fails
// with ErrNoIFrame when it is not an IDR.
func FirstIFrame(r io.Reader) ([]byte, error) {
	var (
		pkt      = make([]byte, 188)
		off      int64
		out      []byte
		pmtPID   = -1
		videoPID = -1
		patDone  bool
		pmtDone  bool
		inPES    bool
		es       []byte // start of the PES payload, enough to see its NAL types
	)
	for ; ; off += 188 {
		if _, err := io.ReadFull(r, pkt); errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		} else if err != nil {
			return nil, fmt.Errorf("transcode: I-frame: %w", err)
		}
		if pkt[0] != 0x47 {
			return nil, fmt.Errorf("transcode: I-frame: lost MPEG-TS sync at byte %d", off)
		}
		pusi := pkt[1]&0x40 != 0
		pid := int(pkt[1]&0x1f)<<8 | int(pkt[2])
		payload := tsPayload(pkt)
		switch {
		case pid == 0 && pusi && !patDone:
			if pmtPID = parsePAT(payload); pmtPID < 0 {
				return nil, errors.New("transcode: I-frame: unreadable PAT")
			}
			patDone = true
			out = append(out, pkt...)
		case pid == pmtPID && pusi && !pmtDone:
			videoPID, _ = parsePMT(payload)
			if videoPID < 0 {
				return nil, errors.New("transcode: I-frame: no H.264 stream in the PMT")
			}
			p, err := videoOnlyPMT(pkt, videoPID)
			if err != nil {
				return nil, err
			}
			pmtDone = true
			out = append(out, p...)
		case pid == videoPID && videoPID >= 0:
			if pusi {
				if inPES {
					return finishIFrame(out, es)
				}
				inPES = true
			}
			if !inPES {
				continue // the tail of a PES begun in an earlier segment
			}
			out = append(out, pkt...)
			if len(es) < 64<<10 && payload != nil {
				es = append(es, payload...)
			}
			if len(out) > maxIFrameBytes {
				return nil, fmt.Errorf("transcode: I-frame: first access unit larger than %d bytes", maxIFrameBytes)
			}
		}
	}
	if !inPES {
		return nil, ErrNoIFrame
	}
	return finishIFrame(out, es) // the segment holds a single frame
}

func finishIFrame(out, es []byte) ([]byte, error) {
	if !hasIDR(pesPayload(es)) {
		return nil, ErrNoIFrame
	}
	return out, nil
}

// tsPayload returns a TS packet's payload, nil when it has none.
func tsPayload(pkt []byte) []byte {
	switch afc := pkt[3] >> 4 & 3; afc {
	case 0, 2:
		return nil
	case 3:
		n := int(pkt[4]) + 1
		if 4+n >= len(pkt) {
			return nil
		}
		return pkt[4+n:]
	}
	return pkt[4:]
}

// hasIDR reports whether an Annex B byte stream holds an IDR slice (NAL
// type 5) before any non-IDR slice (type 1).
func hasIDR(es []byte) bool {
	for i := 0; i+3 < len(es); i++ {
		if es[i] == 0 && es[i+1] == 0 && es[i+2] == 1 {
			switch es[i+3] & 0x1f {
			case 5:
				return true
			case 1:
				return false
			}
		}
	}
	return false
}

// mpegCRC is the CRC-32/MPEG-2 of ISO/IEC 13818-1 Annex A (MSB first, no
// reflection, no final xor).
func mpegCRC(b []byte) uint32 {
	crc := uint32(0xffffffff)
	for _, c := range b {
		crc ^= uint32(c) << 24
		for range 8 {
			if crc&0x80000000 != 0 {
				crc = crc<<1 ^ 0x04c11db7
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

// videoOnlyPMT returns a copy of the single-packet PMT pkt listing only the
// elementary stream videoPID, with its CRC recomputed, so that a player of
// the I-frame segment does not wait for an audio stream it will never get.
func videoOnlyPMT(pkt []byte, videoPID int) ([]byte, error) {
	bad := errors.New("transcode: I-frame: PMT does not fit the form ffmpeg writes")
	p := append([]byte(nil), pkt...)
	start := 4
	if p[3]>>4&3 == 3 {
		start += int(p[4]) + 1
	}
	if start >= len(p) {
		return nil, bad
	}
	s := start + 1 + int(p[start]) // section start, after the pointer field
	if s+12 > len(p) || p[s] != 0x02 {
		return nil, bad
	}
	sectionLen := int(p[s+1]&0x0f)<<8 | int(p[s+2])
	end := s + 3 + sectionLen - 4 // before the CRC
	if end+4 > len(p) {
		return nil, bad // a PMT spread over several packets: not ffmpeg's
	}
	infoLen := int(p[s+10]&0x0f)<<8 | int(p[s+11])
	i := s + 12 + infoLen
	var kept []byte
	for i+5 <= end {
		pid := int(p[i+1]&0x1f)<<8 | int(p[i+2])
		n := 5 + (int(p[i+3]&0x0f)<<8 | int(p[i+4]))
		if i+n > end {
			return nil, bad
		}
		if pid == videoPID {
			kept = append(kept, p[i:i+n]...)
		}
		i += n
	}
	if len(kept) == 0 {
		return nil, bad
	}
	body := append(append([]byte(nil), p[s:s+12+infoLen]...), kept...)
	newLen := len(body) - 3 + 4
	body[1] = body[1]&0xf0 | byte(newLen>>8&0x0f)
	body[2] = byte(newLen)
	crc := mpegCRC(body)
	body = append(body, byte(crc>>24), byte(crc>>16), byte(crc>>8), byte(crc))
	n := copy(p[s:], body)
	for j := s + n; j < len(p); j++ {
		p[j] = 0xff // stuffing after the section
	}
	return p, nil
}
