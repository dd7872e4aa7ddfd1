package transcode

import (
	"cmp"
	"fmt"
	"strconv"
)

// SegmentFormat is the container of the segments ffmpeg writes: MPEG-TS
// (the default, every HLS client) or fragmented MP4 (CMAF: an init section
// and .m4s fragments, needed for HEVC).
type SegmentFormat string

// The segment formats; the zero value means SegmentsTS.
const (
	SegmentsTS   SegmentFormat = "ts"
	SegmentsFMP4 SegmentFormat = "fmp4"
)

// ParseSegmentFormat parses the SEGMENT_FORMAT setting and the per-job
// option: "ts" or "fmp4"; nothing else, not even a different case.
func ParseSegmentFormat(s string) (SegmentFormat, error) {
	switch f := SegmentFormat(s); f {
	case SegmentsTS, SegmentsFMP4:
		return f, nil
	}
	return "", fmt.Errorf("transcode: segment format %q: want ts or fmp4", s)
}

// FMP4 reports whether f is fragmented MP4.
func (f SegmentFormat) FMP4() bool { return f == SegmentsFMP4 }

// SegmentExt is the extension, with its dot, of the segments ffmpeg writes
// in format f.
func (f SegmentFormat) SegmentExt() string {
	if f.FMP4() {
		return ".m4s"
	}
	return ".ts"
}

// InitExt is the extension of an fMP4 init section.
const InitExt = ".mp4"

// VideoCodec is the encoder of a rung.
type VideoCodec string

// The video codecs of a ladder. The zero value means CodecH264.
const (
	CodecH264 VideoCodec = "h264"
	// CodecHEVC is x265 tagged hvc1 (parameter sets in the init section's
	// hvcC only), which Apple requires, in fMP4 only: RFC 8216bis and
	// Apple's HLS authoring rules allow HEVC in fMP4, not in MPEG-TS.
	CodecHEVC VideoCodec = "hevc"
)

// HEVC reports whether c is HEVC.
func (c VideoCodec) HEVC() bool { return c == CodecHEVC }

// hevcSuffix ends the name of an HEVC rung: "720p" and "720phevc" are
// the H.264 and HEVC rungs of one height. Names stay [a-z0-9]+ (they are
// ffmpeg's %v, unquoted), so no separator.
const hevcSuffix = "hevc"

// HasHEVC reports whether the ladder has an HEVC rung.
func (l Ladder) HasHEVC() bool {
	for _, r := range l {
		if r.Codec.HEVC() {
			return true
		}
	}
	return false
}

// CheckSegments refuses a ladder that segment format f cannot carry: HEVC
// rungs need fMP4.
func (l Ladder) CheckSegments(f SegmentFormat) error {
	if l.HasHEVC() && !f.FMP4() {
		return fmt.Errorf("transcode: ladder has HEVC rungs, which need fmp4 segments (SEGMENT_FORMAT=fmp4), not %s", cmp.Or(string(f), "ts"))
	}
	return nil
}

// x265Params are libx265's settings for a rung with a keyframe every gop
// frames and nowhere else (the x264 flags -g, -keyint_min, -sc_threshold
// and +cgop say the same to x264): fixed closed GOPs, so segments line up
// with the H.264 rungs'. log-level=error keeps x265's banner off stderr,
// whose tail is the error message.
func x265Params(gop int) string {
	g := strconv.Itoa(gop)
	return "log-level=error:keyint=" + g + ":min-keyint=" + g + ":scenecut=0:open-gop=0"
}

func (c VideoCodec) orH264() VideoCodec { return VideoCodec(cmp.Or(string(c), string(CodecH264))) }

// fmp4Args turns the MPEG-TS output options of Args into fragmented MP4
// ones, and gives HEVC renditions their encoder. ffmpeg 5.1 writes one init
// section per variant stream, named after it (init_%v.mp4 expands like the
// segment names); its playlists name it in EXT-X-MAP, which is where the
// pipeline finds it. ffmpeg cannot encrypt fMP4 ("Encrypted fmp4 not yet
// supported") and is not asked to: the worker encrypts the init section
// and every fragment, as it does TS segments.
//
// Per-stream options (c:v:N, …) follow the plain ones in ffmpeg-go's sorted
// order, and ffmpeg lets the last matching specifier win, so an HEVC
// rendition overrides the ladder's libx264 defaults. -tag:v hvc1 makes the
// sample entry hvc1 (parameter sets in hvcC only), which Apple's players
// require; -g and -keyint_min reach x265 too, the rest of the fixed-GOP
// rule goes in x265-params.
func fmp4Args(plan Plan, outDir string, out map[string]any) {
	out["hls_segment_type"] = "fmp4"
	out["hls_fmp4_init_filename"] = "init_%v" + InitExt
	out["hls_segment_filename"] = outDir + "/%v/seg_%05d" + SegmentsFMP4.SegmentExt()
	for k, r := range plan.Renditions {
		if !r.Codec.HEVC() {
			continue
		}
		sk := strconv.Itoa(k)
		out["c:v:"+sk] = "libx265"
		out["profile:v:"+sk] = "main"
		out["tag:v:"+sk] = "hvc1"
		out["x265-params:v:"+sk] = x265Params(plan.GOP)
	}
}
