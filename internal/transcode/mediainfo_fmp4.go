package transcode

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/Eyevinn/mp4ff/aac"
	"github.com/Eyevinn/mp4ff/mp4"
)

// FMP4Init is what an fMP4 init section (ftyp+moov) says about its media:
// the H.264 track from its avcC (the SPS inside it gives size and frame
// rate), the AAC track from its esds AudioSpecificConfig.
type FMP4Init struct {
	Video *VideoInfo
	Audio *AudioInfo

	videoTrex     *mp4.TrexBox
	videoTrackID  uint32
	nalLengthSize int
}

// ParseFMP4Init reads an fMP4 init section with github.com/Eyevinn/mp4ff,
// naming its tracks with trackCodec as CODECS does: the first H.264 track
// (its SPS gives size and frame rate; the inspector reads H.264 NAL units)
// and the first AAC track. Other tracks are passed over.
func ParseFMP4Init(b []byte) (out *FMP4Init, err error) {
	defer recoverMP4(&err)
	init, err := decodeInit(b)
	if err != nil {
		return nil, fmt.Errorf("transcode: %w", err)
	}
	out = &FMP4Init{}
	for _, trak := range init.Moov.Traks {
		codec, isVideo, err := trackCodec(trak)
		if errors.Is(err, errOtherEntry) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("transcode: init section: %w", err)
		}
		stsd := trak.Mdia.Minf.Stbl.Stsd
		switch {
		case isVideo && stsd.AvcX != nil && out.Video == nil:
			rec := stsd.AvcX.AvcC.DecConfRec
			if len(rec.SPSnalus) == 0 {
				return nil, errors.New("transcode: init section: avcC without an SPS")
			}
			v, err := ParseSPS(rec.SPSnalus[0])
			if err != nil {
				return nil, fmt.Errorf("transcode: init section: %w", err)
			}
			v.Codec = codec
			out.Video = &v
			out.videoTrackID = trak.Tkhd.TrackID
			out.nalLengthSize = 4 // mp4ff decodes only avcC with 4-byte NAL lengths
			if init.Moov.Mvex != nil {
				out.videoTrex, _ = init.Moov.Mvex.GetTrex(out.videoTrackID)
			}
		case !isVideo && out.Audio == nil:
			dsi := stsd.Mp4a.Esds.DecConfigDescriptor.DecSpecificInfo
			asc, err := aac.DecodeAudioSpecificConfig(bytes.NewReader(dsi.DecConfig))
			if err != nil {
				return nil, fmt.Errorf("transcode: init section: %w", err)
			}
			out.Audio = &AudioInfo{Codec: codec, Channels: int(asc.ChannelConfiguration)}
		}
	}
	return out, nil
}

// maxFMP4SegmentBytes bounds the fMP4 segment an FMP4Inspector keeps to
// read its samples (mp4ff decodes a whole fragment); a longer segment is
// reported as not inspected.
const maxFMP4SegmentBytes = 16 << 20

// FMP4Inspector reads one fMP4 media segment (moof+mdat) written to it and
// reports, at Finish, its video samples: whether the first is an IDR
// picture, how many there are and whether any carries A/53 captions.
type FMP4Inspector struct {
	init *FMP4Init
	buf  bytes.Buffer
	over bool
}

// NewFMP4Inspector returns an inspector for one segment of the stream init
// describes.
func NewFMP4Inspector(init *FMP4Init) *FMP4Inspector { return &FMP4Inspector{init: init} }

// Write keeps the segment; it never fails.
func (s *FMP4Inspector) Write(p []byte) (int, error) {
	if !s.over {
		if s.buf.Len()+len(p) > maxFMP4SegmentBytes {
			s.over = true
			s.buf = bytes.Buffer{}
		} else {
			s.buf.Write(p)
		}
	}
	return len(p), nil
}

// ErrNotInspected marks a segment too large to inspect.
var ErrNotInspected = errors.New("transcode: segment too large to inspect")

// Finish decodes the segment's fragments.
func (s *FMP4Inspector) Finish() (info SegmentInfo, err error) {
	defer recoverMP4(&err)
	if s.init.Video != nil {
		v := *s.init.Video
		info.Video, info.HasVideo = &v, true
	}
	if s.init.Audio != nil {
		a := *s.init.Audio
		info.Audio, info.HasAudio = &a, true
	}
	if s.over {
		return info, ErrNotInspected
	}
	defer func() { s.buf = bytes.Buffer{} }()
	if s.init.Video == nil {
		return info, nil
	}
	f, err := decodeMP4(s.buf.Bytes())
	if err != nil {
		return info, fmt.Errorf("transcode: fMP4 segment: %w", err)
	}
	trex := s.init.videoTrex
	if trex == nil {
		trex = &mp4.TrexBox{TrackID: s.init.videoTrackID}
	}
	for _, seg := range f.Segments {
		for _, frag := range seg.Fragments {
			samples, err := frag.GetFullSamples(trex)
			if err != nil {
				return info, fmt.Errorf("transcode: fMP4 segment: %w", err)
			}
			for _, sm := range samples {
				info.VideoFrames++
				first := info.VideoFrames == 1
				forEachLengthPrefixedNAL(sm.Data, s.init.nalLengthSize, func(nal []byte) bool {
					switch nal[0] & 0x1f {
					case 6:
						if !info.Captions && seiHasCaptions(nal) {
							info.Captions = true
						}
					case 5:
						if first {
							info.StartsWithIDR = true
						}
						return false
					case 1:
						return false
					}
					return true
				})
			}
		}
	}
	return info, nil
}

// recoverMP4 turns a panic inside mp4ff's decoder into an error: it
// indexes freely on malformed boxes, and a legacy segment must never take
// the worker down.
func recoverMP4(err *error) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("transcode: malformed MP4 (decoder panic: %v)", r)
	}
}
