package transcode

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
)

// CodecArgs is ffprobe's argv to read the codec, profile and level of every
// stream of one finished MPEG-TS segment.
func CodecArgs(absPath string) []string {
	return []string{"-hide_banner", "-v", "error", "-protocol_whitelist", "file", "-f", "mpegts",
		"-show_entries", "stream=codec_type,codec_name,profile,level", "-of", "json", "file:" + absPath}
}

// ParseCodecs turns CodecArgs' output into an RFC 6381 CODECS value, e.g.
// "avc1.64001f,mp4a.40.2". It reads the profile and level x264 actually
// chose, since the master playlist must not claim less than the stream needs.
func ParseCodecs(out []byte) (string, error) {
	var r struct {
		Streams []struct {
			Type    string `json:"codec_type"`
			Name    string `json:"codec_name"`
			Profile string `json:"profile"`
			Level   int    `json:"level"`
		} `json:"streams"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		return "", fmt.Errorf("transcode: codecs: %w", err)
	}
	var video, audio string
	for _, s := range r.Streams {
		switch {
		case s.Type == "video" && s.Name == "h264" && video == "":
			// profile_idc and constraint flags as in the SPS.
			var idc, flags int
			switch s.Profile {
			case "Constrained Baseline":
				idc, flags = 66, 0xc0
			case "Baseline":
				idc = 66
			case "Main":
				idc = 77
			case "High":
				idc = 100
			default:
				return "", fmt.Errorf("transcode: codecs: unexpected H.264 profile %q", s.Profile)
			}
			if s.Level <= 0 || s.Level > 62 {
				return "", fmt.Errorf("transcode: codecs: unexpected H.264 level %d", s.Level)
			}
			video = fmt.Sprintf("avc1.%02x%02x%02x", idc, flags, s.Level)
		case s.Type == "audio" && s.Name == "aac" && audio == "":
			if s.Profile != "" && s.Profile != "LC" {
				return "", fmt.Errorf("transcode: codecs: unexpected AAC profile %q", s.Profile)
			}
			audio = "mp4a.40.2"
		}
	}
	if video == "" {
		return "", fmt.Errorf("transcode: codecs: no H.264 video stream")
	}
	if audio != "" {
		return video + "," + audio, nil
	}
	return video, nil
}

// ProbeCodecs runs ffprobe on one finished segment and returns its CODECS.
func ProbeCodecs(ctx context.Context, ffprobe, absPath string) (string, error) {
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, ffprobe, CodecArgs(absPath)...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("transcode: ffprobe codecs: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return ParseCodecs(out)
}
