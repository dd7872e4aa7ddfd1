package transcode

import (
	"bufio"
	"fmt"
	"io"
	"os"
)

// SegmentAudioCodecs returns the RFC 6381 CODECS value of one finished
// audio-only MPEG-TS segment of an alternate audio rendition, e.g.
// "mp4a.40.2", read from the first ADTS header like SegmentCodecs.
func SegmentAudioCodecs(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("%w: %w", errCodecs, err)
	}
	defer f.Close()
	return AudioCodecsFromTS(bufio.NewReaderSize(f, 64<<10))
}

// AudioCodecsFromTS names the AAC stream of an MPEG-TS stream that has no
// video (see SegmentAudioCodecs). It reads at most the first 4 MiB.
func AudioCodecsFromTS(r io.Reader) (string, error) {
	r = io.LimitReader(r, 4<<20)
	var (
		pkt      [188]byte
		pmtPID   = -1
		audioPID = -1
		data     []byte
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
		case pid == pmtPID && pusi && audioPID < 0:
			_, audioPID = parsePMT(payload)
			if audioPID < 0 {
				return "", fmt.Errorf("%w: no AAC stream in the program map", errCodecs)
			}
		case pid == audioPID && audioPID >= 0:
			if pusi || len(data) > 0 {
				data = append(data, payload...)
				if a, ok := adtsCodec(pesPayload(data)); ok {
					return a, nil
				}
				if len(data) > 16<<10 {
					return "", fmt.Errorf("%w: no AAC ADTS header in the first audio PES", errCodecs)
				}
			}
		}
	}
	return "", fmt.Errorf("%w: no AAC stream found", errCodecs)
}
