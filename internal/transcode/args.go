package transcode

import (
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	ffmpeg "github.com/u2takey/ffmpeg-go"

	"github.com/hlsvault/hlsvault/internal/layout"
)

// ArgsOptions tunes the encoder; the zero value is the production setting.
type ArgsOptions struct {
	Preset  string // x264 preset; default "veryfast"
	Threads int    // encoder threads per rendition; 0 lets x264 decide
	// MaxPixels caps the decoder's picture size (-max_pixels), so a stream
	// that grows after the probed headers is refused mid-way; default
	// DefaultLimits().MaxPixels.
	MaxPixels int64
}

var x264Presets = []string{"ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow"}

// Args builds ffmpeg's argv (without the program name) for one process that
// writes the whole ladder of plan as MPEG-TS HLS: for each rendition
// <outDir>/<name>/index.m3u8 and <outDir>/<name>/seg_00000.ts, ....
// input and outDir must be absolute. The result is deterministic, so it is
// pinned by golden files.
//
// Choices worth knowing:
//   - fps= before split makes the video constant-rate, so "a keyframe every
//     GOP frames" means the same instants on every rung even for VFR phone
//     footage; -g = -keyint_min = GOP with -sc_threshold 0 and closed GOPs
//     leaves x264 no other keyframes.
//   - -hls_time is the segment duration, lowered to the GOP's duration
//     (floored to the millisecond) when rounding made the GOP shorter, so
//     that the muxer cuts at every keyframe and never skips one.
//   - format=yuv420p: 10-bit and 4:2:2 sources become 8-bit 4:2:0, and High
//     profile everywhere; every HLS client since 2013 decodes it, and Main
//     would only cost quality on the low rungs.
//   - no -fs: it measures the output file's AVIOContext, which the HLS muxer
//     does not have, so it would never trigger; Runner.MaxOutputBytes
//     watches the directory instead.
//   - no -hls_enc: segments are encrypted by the worker, the key never
//     reaches ffmpeg's argv or disk.
//   - plan.Segments fmp4 (see fmp4Args): <name>/init_<name>.mp4 and
//     <name>/seg_00000.m4s instead, and HEVC rungs with libx265.
func Args(plan Plan, input, outDir string, opt ArgsOptions) (args []string, err error) {
	if !filepath.IsAbs(input) {
		return nil, fmt.Errorf("transcode: args: input %q is not absolute", input)
	}
	if !filepath.IsAbs(outDir) {
		return nil, fmt.Errorf("transcode: args: output directory %q is not absolute", outDir)
	}
	// The HLS muxer expands %d-style sequences in file names.
	if strings.Contains(outDir, "%") {
		return nil, fmt.Errorf("transcode: args: output directory %q contains %%", outDir)
	}
	outDir = filepath.Clean(outDir)
	if err := plan.validate(); err != nil {
		return nil, err
	}
	if opt.Preset == "" {
		opt.Preset = "veryfast"
	}
	if !slices.Contains(x264Presets, opt.Preset) {
		return nil, fmt.Errorf("transcode: args: unknown x264 preset %q", opt.Preset)
	}
	if opt.Threads < 0 || opt.Threads > 64 {
		return nil, fmt.Errorf("transcode: args: threads %d out of range 0 to 64", opt.Threads)
	}
	if opt.MaxPixels <= 0 {
		opt.MaxPixels = DefaultLimits().MaxPixels
	}
	opt.MaxPixels = min(opt.MaxPixels, 1<<31-1) // ffmpeg's option is an int

	// ffmpeg-go panics on graph errors; none are expected from a validated
	// plan, but a panic must not take the worker down.
	defer func() {
		if r := recover(); r != nil {
			args, err = nil, fmt.Errorf("transcode: args: ffmpeg-go: %v", r)
		}
	}()

	in := inputStream(plan.Format, input, opt.MaxPixels)
	// Once for the whole ladder, before the split: deinterlace, make the
	// rate constant, map HDR to SDR.
	video := in.Get(strconv.Itoa(plan.VideoIndex))
	if plan.Deinterlace != "" {
		// deint=all: the frames' own interlaced flags are the ones that
		// may lie, so every frame is deinterlaced, in the detected parity.
		video = video.Filter("bwdif", nil, ffmpeg.KwArgs{
			"mode": "send_field", "parity": string(plan.Deinterlace), "deint": "all",
		})
	}
	video = video.Filter("fps", ffmpeg.Args{plan.FrameRate.String()})
	if tm := plan.ToneMap; tm != nil {
		video = toneMapFilters(video, tm)
	}
	split := video.Split()

	out := ffmpeg.KwArgs{
		"format":       "hls",
		"map_metadata": "-1", // source tags (GPS, names) stay private
		"map_chapters": "-1",
		"c:v":          "libx264",
		"preset":       opt.Preset,
		"profile:v":    "high",
		"g":            plan.GOP,
		"keyint_min":   plan.GOP,
		"sc_threshold": 0,
		// No CEA-608/708 captions: x264 would otherwise embed the A53
		// captions a source's H.264 carries, and the master promises
		// CLOSED-CAPTIONS=NONE.
		"a53cc":         0,
		"flags:v":       "+cgop",
		"hls_time":      hlsTime(plan),
		"hls_list_size": 0,
		// temp_file: a segment or playlist appears under its final name
		// only once complete, which is what the watcher relies on.
		"hls_flags":            "temp_file+independent_segments",
		"hls_segment_type":     "mpegts",
		"hls_segment_filename": outDir + "/%v/seg_%05d.ts",
		// Every rung says what it is, so players never guess (x264 would
		// otherwise copy the source's tags, HLG included, onto 8-bit SDR).
		"color_primaries:v": "bt709",
		"color_trc:v":       "bt709",
		"colorspace:v":      "bt709",
		"color_range:v":     "tv",
	}
	if opt.Threads > 0 {
		out["threads"] = opt.Threads
	}
	if plan.HasAudio {
		out["c:a"], out["ac"], out["ar"] = "aac", 2, 48000
	}
	var streams []*ffmpeg.Stream
	var varMap []string
	for k, r := range plan.Renditions {
		var matrix ffmpeg.KwArgs
		if plan.InMatrix != "" {
			// The same swscale pass that resizes converts the matrix.
			matrix = ffmpeg.KwArgs{"in_color_matrix": plan.InMatrix, "out_color_matrix": "bt709"}
		}
		v := split.Get(strconv.Itoa(k)).
			Filter("scale", ffmpeg.Args{strconv.Itoa(r.Width), strconv.Itoa(r.Height)}, matrix).
			Filter("setsar", ffmpeg.Args{"1"}).
			Filter("format", ffmpeg.Args{"yuv420p"})
		streams = append(streams, v)
		sk := strconv.Itoa(k)
		out["b:v:"+sk] = r.VideoBitrate
		out["maxrate:v:"+sk] = r.MaxRate
		out["bufsize:v:"+sk] = r.BufSize
		entry := "v:" + sk
		if plan.HasAudio {
			streams = append(streams, in.Get(strconv.Itoa(plan.AudioIndex)))
			out["b:a:"+sk] = r.AudioBitrate
			entry += ",a:" + sk
		}
		varMap = append(varMap, entry+",name:"+r.Name)
	}
	// Alternate audio: one audio-only variant stream per rendition, after
	// the video ones. Neither agroup nor language goes into the map:
	// ffmpeg's own master playlist is not written (the worker writes the
	// master), and the language tag is the upload's text.
	for k, a := range plan.Audio {
		streams = append(streams, padAudio(in.Get(strconv.Itoa(a.Index)), plan.Duration))
		sk := strconv.Itoa(k)
		out["c:a"], out["ar"] = "aac", 48000
		out["ac:a:"+sk], out["b:a:"+sk] = a.Channels, a.Bitrate
		varMap = append(varMap, "a:"+sk+",name:"+a.Name)
	}
	out["var_stream_map"] = strings.Join(varMap, " ")
	if plan.Segments.FMP4() {
		fmp4Args(plan, outDir, out)
	}

	return hlsOutputArgs(streams, outDir, out), nil
}

// hlsOutputArgs is the argv of one HLS output of streams into outDir
// (a variant stream per %v), with the global options every encode runs
// with: progress on stdout, errors only, the allocation limit.
func hlsOutputArgs(streams []*ffmpeg.Stream, outDir string, out ffmpeg.KwArgs) []string {
	// GlobalArgs first: it builds a new stream and would drop anything set
	// on the old one (see BRIEF). ffmpeg-go emits them after the outputs,
	// which ffmpeg accepts for global options.
	return ffmpeg.Output(streams, outDir+"/%v/index.m3u8", out).
		GlobalArgs(
			"-hide_banner", "-nostdin", "-loglevel", "error",
			"-progress", "pipe:1", "-nostats",
			"-max_alloc", strconv.Itoa(maxAlloc),
			"-y",
		).
		GetArgs()
}

// inputStream is the source as every encode reads it: a file only, its
// probed demuxer forced, probing and picture size bounded.
func inputStream(format, input string, maxPixels int64) *ffmpeg.Stream {
	return ffmpeg.Input("file:"+input, ffmpeg.KwArgs{
		"f":                  format,
		"format_whitelist":   format,
		"protocol_whitelist": "file",
		"probesize":          strconv.Itoa(probeSize),
		"analyzeduration":    strconv.Itoa(analyzeDuration),
		"max_probe_packets":  strconv.Itoa(maxProbePackets),
		"max_pixels":         strconv.FormatInt(maxPixels, 10),
	})
}

// toneMapFilters maps an HDR picture to SDR BT.709 with zscale and
// tonemap (the recipe that works in Debian's ffmpeg 5.1): linearise with
// the source's curve, reference white at 100 nits; convert the primaries
// to BT.709 in 32-bit float RGB; compress the highlights with hable,
// without desaturation (desat=0 keeps bright colours from going grey);
// apply the BT.709 curve and matrix in limited range; back to 8-bit 4:2:0.
// The source's tags are given explicitly, because zscale reads the frames'
// own and those can be missing where the container carries them.
func toneMapFilters(v *ffmpeg.Stream, tm *ToneMap) *ffmpeg.Stream {
	return v.
		Filter("zscale", nil, ffmpeg.KwArgs{
			"tin": tm.Transfer, "pin": tm.Primaries, "min": tm.Matrix, "rin": tm.Range,
			"t": "linear", "npl": "100",
		}).
		Filter("format", ffmpeg.Args{"gbrpf32le"}).
		Filter("zscale", nil, ffmpeg.KwArgs{"p": "bt709"}).
		Filter("tonemap", nil, ffmpeg.KwArgs{"tonemap": "hable", "desat": "0"}).
		Filter("zscale", nil, ffmpeg.KwArgs{"t": "bt709", "m": "bt709", "r": "tv"}).
		Filter("format", ffmpeg.Args{"yuv420p"})
}

func (p Plan) validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("transcode: args: plan: %s", fmt.Sprintf(format, a...))
	}
	switch {
	case !allowedFormat(p.Format):
		return bad("format %q is not allowed", p.Format)
	case p.VideoIndex < 0 || p.AudioIndex < 0:
		return bad("negative stream index")
	case !p.FrameRate.valid() || p.FrameRate.Float64() > 1000:
		return bad("frame rate %s is not valid", p.FrameRate)
	case p.GOP < 1 || p.GOP > 10_000:
		return bad("GOP %d is not valid", p.GOP)
	case p.SegmentDuration < time.Second || p.SegmentDuration > 30*time.Second:
		return bad("segment duration %s is not valid", p.SegmentDuration)
	case len(p.Renditions) == 0 || len(p.Renditions) > maxRungs:
		return bad("%d renditions", len(p.Renditions))
	// Everything below goes into the filter graph: allowlisted only.
	case p.Deinterlace != "" && !p.Deinterlace.Interlaced():
		return bad("deinterlace %q is not a field order", p.Deinterlace)
	case p.ToneMap != nil && !p.ToneMap.valid():
		return bad("tone mapping from %+v is not supported", *p.ToneMap)
	case p.InMatrix != "" && !slices.Contains(swsMatrices, p.InMatrix):
		return bad("colour matrix %q is not supported", p.InMatrix)
	case p.ToneMap != nil && p.InMatrix != "":
		return bad("a tone-mapped picture is BT.709 already; no matrix conversion")
	case p.Segments != "" && p.Segments != SegmentsTS && p.Segments != SegmentsFMP4:
		return bad("segment format %q is not ts or fmp4", p.Segments)
	}
	if len(p.Audio) > 0 && p.HasAudio {
		return bad("muxed audio and an audio group at once")
	}
	if len(p.Audio) > MaxAudioRenditions {
		return bad("%d audio renditions, at most %d", len(p.Audio), MaxAudioRenditions)
	}
	names := map[string]bool{}
	for _, a := range p.Audio {
		if err := a.validate(); err != nil {
			return bad("%v", err)
		}
		if !layout.ValidRendition(a.Name) || len(a.Name) > 16 || strings.Trim(a.Name, "abcdefghijklmnopqrstuvwxyz0123456789") != "" {
			return bad("rendition name %q: want [a-z0-9]+", a.Name)
		}
		if names[a.Name] {
			return bad("rendition name %s appears twice", a.Name)
		}
		names[a.Name] = true
	}
	for _, r := range p.Renditions {
		switch {
		// Stricter than the publishing rule: the name is also ffmpeg's %v
		// in var_stream_map, which has no quoting.
		case !layout.ValidRendition(r.Name) || len(r.Name) > 16 || strings.Trim(r.Name, "abcdefghijklmnopqrstuvwxyz0123456789") != "":
			return bad("rendition name %q: want [a-z0-9]+", r.Name)
		case names[r.Name]:
			return bad("rendition name %s appears twice", r.Name)
		case r.Width < 2 || r.Height < 2 || r.Width%2 != 0 || r.Height%2 != 0 || r.Width > 16384 || r.Height > 16384:
			return bad("rendition %s: size %dx%d is not valid", r.Name, r.Width, r.Height)
		case r.VideoBitrate <= 0 || r.MaxRate < r.VideoBitrate || r.BufSize <= 0:
			return bad("rendition %s: bitrates are not valid", r.Name)
		case p.HasAudio && r.AudioBitrate <= 0:
			return bad("rendition %s: audio bitrate is not valid", r.Name)
		case r.Codec != "" && r.Codec != CodecH264 && r.Codec != CodecHEVC:
			return bad("rendition %s: codec %q is not h264 or hevc", r.Name, r.Codec)
		case r.Codec.HEVC() && !p.Segments.FMP4():
			return bad("rendition %s: HEVC needs fmp4 segments", r.Name)
		}
		names[r.Name] = true
	}
	return nil
}

// hlsTime returns -hls_time in seconds. The muxer cuts at the first
// keyframe at or after n x hls_time; keyframes sit at n x GOP/fps, so
// hls_time must not exceed GOP/fps or a keyframe would be skipped whenever
// round() made the GOP shorter than the segment.
func hlsTime(p Plan) string {
	gopMillis := int64(p.GOP) * 1000 * int64(p.FrameRate.Den) / int64(p.FrameRate.Num)
	ms := min(p.SegmentDuration.Milliseconds(), gopMillis)
	s := strconv.FormatFloat(float64(ms)/1000, 'f', 3, 64)
	return strings.TrimSuffix(strings.TrimRight(s, "0"), ".")
}
