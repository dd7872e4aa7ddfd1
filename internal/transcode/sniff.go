package transcode

import "bytes"

// SniffSize is how many leading bytes Sniff wants: enough for 21 TS packets.
const SniffSize = 4096

const tsPacket = 188

// Sniff identifies the container from the first bytes of a file (SniffSize
// bytes when the file is that long) without running ffmpeg, and returns the
// demuxer to force with -f: "mov", "matroska" or "mpegts". Anything else is an
// error wrapping ErrInvalidInput; text formats that ffmpeg would follow to
// other files (HLS playlists, ffconcat scripts) get a reason of their own.
//
// The decision is ours and not ffmpeg's probe because ffmpeg's probing is what
// the 2016-2017 playlist attacks exploited: a file only reaches a demuxer we
// chose.
func Sniff(header []byte) (format string, err error) {
	if len(header) == 0 {
		return "", invalid("file is empty")
	}
	switch {
	case len(header) >= 8 && isBMFFBox(header[4:8]):
		return formatMOV, nil
	case bytes.HasPrefix(header, []byte{0x1A, 0x45, 0xDF, 0xA3}):
		return formatMatroska, nil
	case isTS(header, 0, tsPacket):
		return formatMPEGTS, nil
	}
	if name := notAllowed(header); name != "" {
		return "", invalid("container %q is not allowed (%s)", name, allowedContainers)
	}
	text := bytes.TrimLeft(bytes.TrimPrefix(header, []byte("\xEF\xBB\xBF")), " \t\r\n")
	switch {
	case bytes.HasPrefix(text, []byte("#EXTM3U")):
		return "", invalid("file looks like an HLS playlist, not a video")
	case bytes.HasPrefix(text, []byte("ffconcat")):
		return "", invalid("file looks like an ffconcat script, not a video")
	}
	return "", invalid("unrecognised container (%s)", allowedContainers)
}

// isBMFFBox accepts "ftyp", which every MP4 and modern QuickTime file starts
// with, and the atoms that old QuickTime files start with instead. The mov
// demuxer is forced either way, so a false positive only moves the rejection
// to ffprobe.
func isBMFFBox(typ []byte) bool {
	switch string(typ) {
	case "ftyp", "moov", "mdat", "wide", "free", "skip", "pnot":
		return true
	}
	return false
}

// isTS reports a sync byte at off and then every size bytes through the
// header. At least one whole packet is required, so a lone 'G' is not TS.
func isTS(h []byte, off, size int) bool {
	if len(h) < off+size {
		return false
	}
	for i := off; i < len(h); i += size {
		if h[i] != 0x47 {
			return false
		}
	}
	return true
}

// notAllowed names containers we recognise but refuse, for a clearer reason.
func notAllowed(h []byte) string {
	has := func(off int, magic string) bool {
		return len(h) >= off+len(magic) && string(h[off:off+len(magic)]) == magic
	}
	switch {
	case has(0, "RIFF") && has(8, "AVI "):
		return "avi"
	case has(0, "RIFF") && has(8, "WAVE"):
		return "wav"
	case has(0, "RIFF"):
		return "riff"
	case isTS(h, 4, tsPacket+4):
		// M2TS/Blu-ray: a 4-byte timestamp before each TS packet.
		return "m2ts"
	case has(0, "FLV"):
		return "flv"
	case has(0, "OggS"):
		return "ogg"
	case has(0, "\x30\x26\xB2\x75\x8E\x66\xCF\x11"):
		return "asf"
	case has(0, "\x00\x00\x01\xBA"):
		return "mpeg-ps"
	case has(0, "ID3"), len(h) >= 2 && h[0] == 0xFF && h[1]&0xE0 == 0xE0 && h[1] != 0xFF:
		return "mp3"
	case has(0, "fLaC"):
		return "flac"
	case has(0, "GIF8"):
		return "gif"
	case has(0, "\x89PNG"):
		return "png"
	case has(0, "\xFF\xD8\xFF"):
		return "jpeg"
	}
	return ""
}
