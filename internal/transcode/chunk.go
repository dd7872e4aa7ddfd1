package transcode

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	ffmpeg "github.com/u2takey/ffmpeg-go"
)

// Chunked transcoding: a long source is encoded as several ffmpeg runs of
// the video ladder, one per chunk of whole segments, which any worker may
// take, plus one run for the whole title's audio. Every run shifts its
// output by ChunkTimelineOffset plus the chunk's start (-output_ts_offset)
// and numbers its segments from the chunk's first (-start_number), so the
// segments of all runs form one timeline: continuous PTS, continuous media
// sequence, segment boundaries where the unchunked encode has them (the GOP
// is fixed, so every chunk boundary is a keyframe on every rung).

// ChunkTimelineOffset is where every chunked title's timeline starts
// (before the mpegts muxer's own 1.4 s). x264's B-frames give the first
// frames of an encode a negative DTS, which ffmpeg shifts away by the
// reorder delay when the output starts at 0 but not when an offset
// already makes it positive: without a common offset the first chunk
// would start two or three frames later than the others' arithmetic says
// and overlap the second. 10 s exceeds any reorder delay.
const ChunkTimelineOffset = 10 * time.Second

// aacPriming is the AAC encoder's priming (1024 samples at 48 kHz): its
// first packet starts that much before 0. An unchunked run shifts its
// audio muxer's timestamps by it (ffmpeg makes them non-negative), so its
// audio starts with its video; the audio run of a chunked transcode is
// shifted the same, explicitly: hls.js takes an audio rendition that starts
// before the video for an overlap (bufferAppendNoProgress).
const aacPriming = 1024 * time.Second / 48000

// Chunk is one stretch of the source that one ffmpeg run encodes.
type Chunk struct {
	Index int
	// Start is where it begins in the source: a whole number of GOPs.
	Start time.Duration
	// Frames is how many output frames it has (a whole number of GOPs);
	// 0 for the last chunk, which runs to the end of the source.
	Frames int
	// FirstSegment is the sequence number of its first segment, which is
	// also its index in the media playlist.
	FirstSegment int
}

// Last reports whether the chunk runs to the end of the source.
func (c Chunk) Last() bool { return c.Frames == 0 }

// PlanChunks splits plan's source into chunks of about chunk of media
// each, rounded to a whole number of segments (GOPs), at least one. A
// source no longer than one and a half chunks gives nil: not worth
// splitting (the last chunk would be a stub). chunk must be positive.
func PlanChunks(plan Plan, chunk time.Duration) ([]Chunk, error) {
	if chunk <= 0 {
		return nil, fmt.Errorf("transcode: chunks: chunk length %v is not positive", chunk)
	}
	if plan.GOP < 1 || !plan.FrameRate.valid() {
		return nil, errors.New("transcode: chunks: the plan has no GOP or frame rate")
	}
	gopSeconds := float64(plan.GOP) * float64(plan.FrameRate.Den) / float64(plan.FrameRate.Num)
	perChunk := max(1, int(chunk.Seconds()/gopSeconds+0.5)) // segments
	chunkSeconds := float64(perChunk) * gopSeconds
	total := plan.Duration.Seconds()
	if total <= 1.5*chunkSeconds {
		return nil, nil
	}
	n := int(total / chunkSeconds)
	// A remainder shorter than half a chunk joins the last chunk.
	if total-float64(n)*chunkSeconds >= chunkSeconds/2 {
		n++
	}
	out := make([]Chunk, n)
	for i := range out {
		frames := perChunk * plan.GOP
		start := i * frames
		out[i] = Chunk{Index: i, Frames: frames, FirstSegment: i * perChunk,
			Start: time.Duration(float64(start) * float64(plan.FrameRate.Den) / float64(plan.FrameRate.Num) * float64(time.Second))}
	}
	out[n-1].Frames = 0
	return out, nil
}

// VideoOnly is the plan of a chunk's run: the video ladder without audio,
// which the audio run encodes once for the whole title.
func (p Plan) VideoOnly() Plan {
	p.HasAudio, p.Audio, p.AudioIgnored = false, nil, 0
	return p
}

// ChunkedAudio returns the audio group a chunked title publishes: the
// plan's own group, or for a source with one audio stream (the muxed
// shape when unchunked) a group of that one stream, since the video
// chunks carry no audio. nil for a source without audio.
func ChunkedAudio(p Plan, probe *Probe) []AudioRendition {
	if len(p.Audio) > 0 || !p.HasAudio || probe == nil || probe.Audio == nil {
		return p.Audio
	}
	return audioRenditions([]AudioStream{*probe.Audio}, p.Renditions[0].AudioBitrate)
}

// secondsArg formats a time for ffmpeg to the microsecond, its own
// resolution (AV_TIME_BASE).
func secondsArg(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', 6, 64)
}

// ChunkArgs is Args for one chunk of a chunked transcode of plan: the
// video ladder only (see Plan.VideoOnly), reading c.Frames frames from
// c.Start, its timestamps shifted to ChunkTimelineOffset + c.Start and its
// segments numbered from c.FirstSegment. The input is cut by frames
// (-frames:v per rung), not by time, so rounding can neither add nor drop
// a frame at a seam.
func ChunkArgs(plan Plan, c Chunk, input, outDir string, opt ArgsOptions) ([]string, error) {
	if c.Start < 0 || c.Frames < 0 || c.FirstSegment < 0 {
		return nil, fmt.Errorf("transcode: chunk args: chunk %+v is not valid", c)
	}
	vp := plan.VideoOnly()
	args, err := Args(vp, input, outDir, opt)
	if err != nil {
		return nil, err
	}
	in := slices.Index(args, "-i")
	out := slices.Index(args, filepath.Clean(outDir)+"/%v/index.m3u8")
	if in < 0 || out < in {
		return nil, errors.New("transcode: chunk args: unexpected argv from Args")
	}
	// Seek to the chunk's first frame; frames decoded before it (from the
	// previous keyframe of the source) are dropped by ffmpeg's accurate
	// seek.
	inOpts := []string{"-ss", secondsArg(c.Start)}
	outOpts := []string{"-output_ts_offset", secondsArg(ChunkTimelineOffset + c.Start), "-start_number", strconv.Itoa(c.FirstSegment)}
	if !c.Last() {
		for k := range vp.Renditions {
			outOpts = append(outOpts, "-frames:v:"+strconv.Itoa(k), strconv.Itoa(c.Frames))
		}
	}
	res := make([]string, 0, len(args)+len(inOpts)+len(outOpts))
	res = append(res, args[:in]...)
	res = append(res, inOpts...)
	res = append(res, args[in:out]...)
	res = append(res, outOpts...)
	res = append(res, args[out:]...)
	return res, nil
}

// AudioArgs builds ffmpeg's argv for the audio run of a chunked
// transcode: every rendition of audio (from ChunkedAudio) as audio-only
// MPEG-TS HLS, <outDir>/<name>/index.m3u8 and seg_00000.ts, …, on the
// chunks' timeline (ChunkTimelineOffset), in segments of plan's duration.
// One encoder for the whole title: no AAC priming gap at any seam.
func AudioArgs(plan Plan, audio []AudioRendition, input, outDir string, opt ArgsOptions) (args []string, err error) {
	if !filepath.IsAbs(input) || !filepath.IsAbs(outDir) || strings.Contains(outDir, "%") {
		return nil, fmt.Errorf("transcode: audio args: input %q and output directory %q must be absolute (and without %%)", input, outDir)
	}
	if len(audio) == 0 || len(audio) > MaxAudioRenditions {
		return nil, fmt.Errorf("transcode: audio args: %d audio renditions", len(audio))
	}
	check := plan.VideoOnly()
	check.Audio = audio
	if err := check.validate(); err != nil {
		return nil, err
	}
	if opt.MaxPixels <= 0 {
		opt.MaxPixels = DefaultLimits().MaxPixels
	}
	outDir = filepath.Clean(outDir)
	defer func() {
		if r := recover(); r != nil {
			args, err = nil, fmt.Errorf("transcode: audio args: ffmpeg-go: %v", r)
		}
	}()
	in := inputStream(plan.Format, input, min(opt.MaxPixels, 1<<31-1))
	out := ffmpeg.KwArgs{
		"format":               "hls",
		"map_metadata":         "-1",
		"map_chapters":         "-1",
		"c:a":                  "aac",
		"ar":                   48000,
		"hls_time":             hlsTime(plan),
		"hls_list_size":        0,
		"hls_flags":            "temp_file+independent_segments",
		"hls_segment_type":     "mpegts",
		"hls_segment_filename": outDir + "/%v/seg_%05d.ts",
		"output_ts_offset":     secondsArg(ChunkTimelineOffset + aacPriming),
	}
	var streams []*ffmpeg.Stream
	var varMap []string
	for k, a := range audio {
		// Padded to the source's duration as in Args: a shorter
		// commentary track must not end before the video.
		streams = append(streams, padAudio(in.Get(strconv.Itoa(a.Index)), plan.Duration))
		sk := strconv.Itoa(k)
		out["ac:a:"+sk], out["b:a:"+sk] = a.Channels, a.Bitrate
		varMap = append(varMap, "a:"+sk+",name:"+a.Name)
	}
	out["var_stream_map"] = strings.Join(varMap, " ")
	return hlsOutputArgs(streams, outDir, out), nil
}
