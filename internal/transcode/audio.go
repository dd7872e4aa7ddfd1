package transcode

import (
	"fmt"
	"strconv"
	"time"

	ffmpeg "github.com/u2takey/ffmpeg-go"

	"golang.org/x/text/cases"
	"golang.org/x/text/language"
	"golang.org/x/text/language/display"
)

// Alternate audio: a source with two or more usable audio streams gets one
// audio-only AAC rendition per stream (up to MaxAudioRenditions), played
// alongside video renditions that carry no audio; the master lists them in
// one EXT-X-MEDIA TYPE=AUDIO group. A source with one audio stream keeps
// the muxed shape (audio inside every video rendition): simplest for
// players, and nothing to choose between.
const (
	// MaxAudioRenditions bounds the audio group: a source with more audio
	// streams has the rest ignored (the pipeline logs how many).
	MaxAudioRenditions = 8
	// AudioGroup is the GROUP-ID of the audio renditions in the master.
	AudioGroup = "aud"
	// maxAudioChannels: every audio rendition is mono or stereo (AAC-LC,
	// 48 kHz); a surround stream is downmixed to stereo, a mono one stays
	// mono, so CHANNELS says what was produced.
	maxAudioChannels = 2
)

// AudioRendition is one audio-only output of the ffmpeg run.
type AudioRendition struct {
	// Name is the output subdirectory and rendition name: "audio1",
	// "audio2", … in source order ([a-z0-9]+, like the video rungs).
	Name     string
	Index    int // absolute input stream index
	Channels int // output channels, 1 or 2
	Bitrate  int // bits/s
	// Language is the stream's language tag normalised to BCP 47 ("eng"
	// and "en" give "en", "fre" and "fra" give "fr"); "" when the tag is
	// missing, "und" or not a language. It never reaches ffmpeg's argv.
	Language string `json:",omitempty"`
	// Label is the rendition's NAME: the language's name in that
	// language ("English", "Français"), else "Audio N"; unique in the
	// group.
	Label string
	// Default marks the rendition players pick first: the source's
	// default-disposition stream, else the first.
	Default bool `json:",omitempty"`
}

// NormalizeLanguage is ParseLanguage for a stream's own tag, where a tag
// that is not well-formed is as good as none: it returns "" then (and for
// missing, "und", "mul" and "zxx").
func NormalizeLanguage(tag string) string {
	l, err := ParseLanguage(tag)
	if err != nil {
		return ""
	}
	return l
}

// languageLabel is the language's own name for itself, capitalised as a
// title in that language ("Français"); "" when x/text has none.
func languageLabel(bcp47 string) string {
	if bcp47 == "" {
		return ""
	}
	t, err := language.Parse(bcp47)
	if err != nil {
		return ""
	}
	name := display.Self.Name(t)
	if name == "" {
		return ""
	}
	return cases.Title(t).String(name)
}

// planAudio returns the audio group for the probe's audio streams, and how
// many streams were left out over MaxAudioRenditions. Fewer than two
// usable streams give no group (the muxed shape). bitrate is the
// stereo rate (the ladder's highest rung's audio rate); mono gets half,
// at least minAudioRate.
func planAudio(streams []AudioStream, bitrate int) (group []AudioRendition, ignored int) {
	if len(streams) < 2 {
		return nil, 0
	}
	if len(streams) > MaxAudioRenditions {
		ignored = len(streams) - MaxAudioRenditions
		streams = streams[:MaxAudioRenditions]
	}
	return audioRenditions(streams, bitrate), ignored
}

// audioRenditions names, labels and rates one audio rendition per stream
// (at most MaxAudioRenditions of them), the first default-disposition one
// (else the first) the group's default.
func audioRenditions(streams []AudioStream, bitrate int) (group []AudioRendition) {
	def := 0
	for i, s := range streams {
		if s.Default {
			def = i
			break
		}
	}
	labels := map[string]int{}
	for i, s := range streams {
		a := AudioRendition{
			Name:     "audio" + strconv.Itoa(i+1),
			Index:    s.Index,
			Channels: min(max(s.Channels, 1), maxAudioChannels),
			Bitrate:  bitrate,
			Language: NormalizeLanguage(s.Language),
			Default:  i == def,
		}
		if a.Channels == 1 {
			a.Bitrate = max(minAudioRate, bitrate/2)
		}
		a.Label = languageLabel(a.Language)
		if a.Label == "" {
			a.Label = "Audio " + strconv.Itoa(i+1)
		}
		// Two tracks in one language (a commentary): players list NAME,
		// so it must tell them apart.
		labels[a.Label]++
		if n := labels[a.Label]; n > 1 {
			a.Label += " " + strconv.Itoa(n)
		}
		group = append(group, a)
	}
	return group
}

func (a AudioRendition) validate() error {
	switch {
	case a.Index < 0:
		return fmt.Errorf("audio rendition %s: negative stream index", a.Name)
	case a.Channels < 1 || a.Channels > maxAudioChannels:
		return fmt.Errorf("audio rendition %s: %d channels", a.Name, a.Channels)
	case a.Bitrate < minAudioRate || a.Bitrate > maxAudioRate:
		return fmt.Errorf("audio rendition %s: bitrate %d out of range", a.Name, a.Bitrate)
	}
	return nil
}

// padAudio pads an alternate audio stream with silence to at least the
// source's duration (apad whole_dur; a longer track is left as it is).
// Real files often carry a commentary or second language that stops
// before the film: published as it is, its rendition would end early,
// and a player that switched to it stalls where it ends, its audio
// buffer empty while the video goes on (MSE plays only what every
// source buffer holds). Padded, every audio rendition's segments line up
// with the video's, and the output duration check holds for each. This
// hides nothing cut short: an upload cut in transit loses its video too,
// which the integrity check and the video renditions' duration check
// refuse.
func padAudio(s *ffmpeg.Stream, duration time.Duration) *ffmpeg.Stream {
	if duration <= 0 {
		return s
	}
	return s.Filter("apad", nil, ffmpeg.KwArgs{"whole_dur": strconv.FormatFloat(duration.Seconds(), 'f', 3, 64)})
}
