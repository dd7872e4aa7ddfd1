package transcode

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
)

// errCodecs marks a segment whose codecs cannot be named.
var errCodecs = errors.New("transcode: codecs")

// SegmentCodecs returns the RFC 6381 CODECS value of one finished MPEG-TS
// segment, e.g. "avc1.64001f,mp4a.40.2", read from the bytes x264 and the
// AAC encoder actually wrote: the H.264 profile, constraint flags and level
// of the first SPS, and the AAC object type of the first ADTS header. The
// master playlist must not claim less than the stream needs, and reading
// the bitstream in process costs nothing, where an ffprobe per rendition
// would take CPU from the ffmpeg that is still encoding.
func SegmentCodecs(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("%w: %w", errCodecs, err)
	}
	defer f.Close()
	return CodecsFromTS(bufio.NewReaderSize(f, 64<<10))
}

// Stream types of ISO/IEC 13818-1 Table 2-34 that the ladder produces.
const (
	streamTypeAAC  = 0x0f
	streamTypeH264 = 0x1b
)

// CodecsFromTS demultiplexes an MPEG-TS stream just far enough to name its
// codecs (see SegmentCodecs). It reads at most the first 4 MiB.
func CodecsFromTS(r io.Reader) (string, error) {
	r = io.LimitReader(r, 4<<20)
	var (
		pkt       [188]byte
		pmtPID    = -1
		videoPID  = -1
		audioPID  = -1
		video     string
		audio     string
		hasAudio  bool
		videoData []byte // payload of the first video PES, enough for its SPS
		audioData []byte
	)
	for {
		if _, err := io.ReadFull(r, pkt[:]); err != nil {
			break
		}
		if pkt[0] != 0x47 {
			return "", fmt.Errorf("%w: lost MPEG-TS sync", errCodecs)
		}
		pusi := pkt[1]&0x40 != 0
		pid := int(pkt[1]&0x1f)<<8 | int(pkt[2])
		payload := tsPayload(pkt[:])
		if payload == nil {
			continue
		}
		switch {
		case pid == 0 && pusi && pmtPID < 0:
			pmtPID = parsePAT(payload)
		case pid == pmtPID && pusi && videoPID < 0:
			videoPID, audioPID = parsePMT(payload)
			hasAudio = audioPID >= 0
		case pid == videoPID && video == "":
			if pusi || len(videoData) > 0 {
				videoData = append(videoData, payload...)
				if v, ok := spsCodec(pesPayload(videoData)); ok {
					video = v
				} else if len(videoData) > 64<<10 {
					return "", fmt.Errorf("%w: no H.264 SPS in the first video access unit", errCodecs)
				}
			}
		case pid == audioPID && audio == "":
			if pusi || len(audioData) > 0 {
				audioData = append(audioData, payload...)
				if a, ok := adtsCodec(pesPayload(audioData)); ok {
					audio = a
				} else if len(audioData) > 16<<10 {
					return "", fmt.Errorf("%w: no AAC ADTS header in the first audio PES", errCodecs)
				}
			}
		}
		if video != "" && (audio != "" || (videoPID >= 0 && !hasAudio)) {
			break
		}
	}
	switch {
	case videoPID < 0:
		return "", fmt.Errorf("%w: no H.264 stream in the program map", errCodecs)
	case video == "":
		return "", fmt.Errorf("%w: no H.264 SPS found", errCodecs)
	case hasAudio && audio == "":
		// The program has an AAC stream but this segment carries no audio
		// (a source whose audio starts late). The ladder's encoder is
		// ffmpeg's AAC-LC, so the stream type is enough.
		return video + ",mp4a.40.2", nil
	case audio != "":
		return video + "," + audio, nil
	}
	return video, nil
}

// psiSection skips the pointer field of a PSI payload.
func psiSection(p []byte) []byte {
	if len(p) == 0 || int(p[0])+1 > len(p) {
		return nil
	}
	return p[int(p[0])+1:]
}

func parsePAT(p []byte) int {
	s := psiSection(p)
	if len(s) < 8 || s[0] != 0x00 {
		return -1
	}
	end := min(3+(int(s[1]&0x0f)<<8|int(s[2])), len(s)) - 4 // before the CRC
	for i := 8; i+4 <= end; i += 4 {
		program := int(s[i])<<8 | int(s[i+1])
		if program != 0 {
			return int(s[i+2]&0x1f)<<8 | int(s[i+3])
		}
	}
	return -1
}

func parsePMT(p []byte) (video, audio int) {
	video, audio = -1, -1
	s := psiSection(p)
	if len(s) < 12 || s[0] != 0x02 {
		return
	}
	end := min(3+(int(s[1]&0x0f)<<8|int(s[2])), len(s)) - 4
	i := 12 + (int(s[10]&0x0f)<<8 | int(s[11]))
	for i+5 <= end {
		typ := s[i]
		pid := int(s[i+1]&0x1f)<<8 | int(s[i+2])
		switch {
		case typ == streamTypeH264 && video < 0:
			video = pid
		case typ == streamTypeAAC && audio < 0:
			audio = pid
		}
		i += 5 + (int(s[i+3]&0x0f)<<8 | int(s[i+4]))
	}
	return
}

// pesPayload skips a PES header.
func pesPayload(p []byte) []byte {
	if len(p) < 9 || p[0] != 0 || p[1] != 0 || p[2] != 1 {
		return nil
	}
	n := 9 + int(p[8])
	if n > len(p) {
		return nil
	}
	return p[n:]
}

// spsCodec finds the first sequence parameter set in an Annex B byte stream
// and names it "avc1.PPCCLL".
func spsCodec(es []byte) (string, bool) {
	for i := 0; i+6 < len(es); i++ {
		if es[i] == 0 && es[i+1] == 0 && es[i+2] == 1 && es[i+3]&0x1f == 7 {
			return fmt.Sprintf("avc1.%02x%02x%02x", es[i+4], es[i+5], es[i+6]), true
		}
	}
	return "", false
}

// adtsCodec reads the audio object type of the first ADTS header.
func adtsCodec(es []byte) (string, bool) {
	if len(es) < 3 || es[0] != 0xff || es[1]&0xf6 != 0xf0 {
		return "", false
	}
	objectType := int(es[2]>>6) + 1
	return fmt.Sprintf("mp4a.40.%d", objectType), true
}
