package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"golang.org/x/sync/errgroup"
	"golang.org/x/text/language"
	"golang.org/x/text/language/display"

	"github.com/hlsvault/hlsvault/internal/catalog"
	"github.com/hlsvault/hlsvault/internal/layout"
	"github.com/hlsvault/hlsvault/internal/packager"
	"github.com/hlsvault/hlsvault/internal/playlist"
	"github.com/hlsvault/hlsvault/internal/storage"
	"github.com/hlsvault/hlsvault/internal/transcode"
	"github.com/hlsvault/hlsvault/jobs"
)

// SubtitleGroup is the GROUP-ID of the subtitle renditions, which every
// video variant names in SUBTITLES.
const SubtitleGroup = "subs"

// RenditionSubtitles is catalog.Rendition.Type of a subtitle rendition.
const RenditionSubtitles = "subtitles"

// subtitleTrack is one subtitle rendition to publish: its cues, already on
// the published timeline.
type subtitleTrack struct {
	name     string // rendition name, e.g. "sub0-en"
	language string // BCP 47, "" unknown
	label    string // NAME
	forced   bool
	cues     []transcode.Cue
}

// prepareSubtitles converts the source's text subtitle streams and the
// job's sidecar files to cues, before the ladder runs: a sidecar that is
// not subtitle text fails the job at once, without an encode. Bitmap
// streams are logged and left out.
func (p *Pipeline) prepareSubtitles(ctx context.Context, log *slog.Logger, dir, src string, probe *transcode.Probe, payload jobs.TranscodePayload) ([]subtitleTrack, error) {
	for _, s := range probe.IgnoredSubtitles {
		log.Info("bitmap subtitle stream ignored (not text; only text subtitles become WebVTT)", "stream", s.Index, "codec", s.Codec)
	}
	if len(probe.Subtitles) == 0 && len(payload.Subtitles) == 0 {
		return nil, nil
	}
	sdir := filepath.Join(dir, "subs")
	if err := os.Mkdir(sdir, 0o700); err != nil {
		return nil, fmt.Errorf("pipeline: %w", err)
	}
	var tracks []subtitleTrack
	labels := map[string]int{}
	add := func(lang, label string, forced bool, vtt string) error {
		data, err := os.ReadFile(vtt)
		if err != nil {
			return fmt.Errorf("pipeline: %w", err)
		}
		cues, err := transcode.ParseVTT(data)
		if err != nil {
			return err
		}
		i := len(tracks)
		name := "sub" + strconv.Itoa(i)
		if lang != "" {
			name += "-" + lang
		}
		if !layout.ValidRendition(name) {
			name = "sub" + strconv.Itoa(i)
		}
		label = subtitleLabel(label, lang, i)
		if labels[label]++; labels[label] > 1 {
			label += " (" + strconv.Itoa(labels[label]) + ")"
		}
		tracks = append(tracks, subtitleTrack{name: name, language: lang, label: label, forced: forced, cues: cues})
		return nil
	}
	for i, s := range probe.Subtitles {
		if len(tracks) >= jobs.MaxSubtitles {
			log.Warn("subtitle stream ignored: too many subtitle tracks", "stream", s.Index, "limit", jobs.MaxSubtitles)
			continue
		}
		out := filepath.Join(sdir, "stream"+strconv.Itoa(i)+".vtt")
		if err := transcode.ConvertSubtitle(ctx, p.cfg.Exec, transcode.SubtitleArgs(probe.Format, src, s.Index, out), src, out, p.cfg.Limits); err != nil {
			return nil, subtitleErr(fmt.Sprintf("subtitle stream %d (%s)", s.Index, s.Codec), err)
		}
		if err := add(s.Language, s.Title, s.Forced, out); err != nil {
			return nil, subtitleErr(fmt.Sprintf("subtitle stream %d (%s)", s.Index, s.Codec), err)
		}
	}
	for i, s := range payload.Subtitles {
		what := fmt.Sprintf("subtitle file %d (%s)", i, s.Source)
		if len(tracks) >= jobs.MaxSubtitles {
			return nil, badInput(fmt.Errorf("%s: more than %d subtitle tracks with the source's own", what, jobs.MaxSubtitles))
		}
		lang, err := transcode.ParseLanguage(s.Language)
		if err != nil {
			return nil, badInput(fmt.Errorf("%s: %w", what, err))
		}
		in := filepath.Join(sdir, "sidecar"+strconv.Itoa(i))
		format, err := p.downloadSidecar(ctx, s.Source, in)
		if err != nil {
			return nil, subtitleErr(what, err)
		}
		out := in
		// WebVTT is read as it is, in process (ffmpeg's round trip
		// drops cue settings such as line:0); SubRip and ASS are
		// converted by ffmpeg in the sandbox.
		if format != transcode.SubtitleWebVTT {
			out = in + ".vtt"
			if err := transcode.ConvertSubtitle(ctx, p.cfg.Exec, transcode.SidecarArgs(format, in, out), in, out, p.cfg.Limits); err != nil {
				return nil, subtitleErr(what, err)
			}
		}
		if err := add(lang, s.Name, false, out); err != nil {
			return nil, subtitleErr(what, err)
		}
	}
	for _, t := range tracks {
		log.Info("subtitles prepared", "rendition", t.name, "language", t.language, "name", t.label, "cues", len(t.cues))
	}
	return tracks, nil
}

// subtitleErr makes a bad subtitle input a bad job, with what it was.
func subtitleErr(what string, err error) error {
	if errors.Is(err, transcode.ErrInvalidInput) || errors.Is(err, ErrBadInput) {
		return badInput(fmt.Errorf("%s: %w", what, err))
	}
	return fmt.Errorf("pipeline: %s: %w", what, err)
}

// subtitleLabel is the NAME players list: the caller's or the stream's
// title, else the language's name in that language ("English",
// "français"), else "Subtitles N".
func subtitleLabel(label, lang string, i int) string {
	if label = strings.TrimSpace(label); label != "" {
		return label
	}
	if lang != "" {
		if tag, err := language.Parse(lang); err == nil {
			if n := display.Self.Name(tag); n != "" && !strings.ContainsAny(n, "\"\r\n") {
				return n
			}
		}
		return lang
	}
	return "Subtitles " + strconv.Itoa(i+1)
}

// downloadSidecar copies a sidecar object into path (at most
// transcode.MaxSidecarBytes) and names its format from the content. A
// missing object is retried like a missing source, then bad input.
func (p *Pipeline) downloadSidecar(ctx context.Context, name, path string) (string, error) {
	rc, err := p.store.Get(ctx, name)
	if errors.Is(err, storage.ErrNotFound) {
		retried, _ := asynq.GetRetryCount(ctx)
		maxRetry, ok := asynq.GetMaxRetry(ctx)
		if attempt := retried + 1; attempt < p.cfg.SourceAttempts && (!ok || retried < maxRetry) {
			return "", fmt.Errorf("pipeline: object not found in storage (attempt %d of %d before it fails as bad input)", attempt, p.cfg.SourceAttempts)
		}
		return "", badInput(errors.New("object not found in storage"))
	}
	if err != nil {
		return "", fmt.Errorf("pipeline: download: %w", err)
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, transcode.MaxSidecarBytes+1))
	if err != nil {
		return "", fmt.Errorf("pipeline: download: %w", err)
	}
	format, err := transcode.SniffSubtitle(data)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return "", fmt.Errorf("pipeline: %w", err)
	}
	p.metrics.downloadedBytes.Add(float64(len(data)))
	return format, nil
}

// subtitleOutput is a stored subtitle rendition.
type subtitleOutput struct {
	alt       playlist.Alternative
	rendition catalog.Rendition
}

// storeSubtitles cuts every track into one WebVTT segment per video
// segment (same starts and durations as the first video rendition, so the
// key periods and the timeline line up), encrypts and stores them through
// the packager like every segment, and writes each track's media playlist.
// The segments are made the same, byte for byte, each time (PutOnce), so
// the chunked join may run this again after a crash.
// mpegts is the PTS the video segments start at (measured), named by each
// segment's X-TIMESTAMP-MAP.
func (p *Pipeline) storeSubtitles(ctx context.Context, log *slog.Logger, v *packager.Version, tracks []subtitleTrack, video *renditionOutput) ([]subtitleOutput, error) {
	if len(tracks) == 0 {
		return nil, nil
	}
	if video.firstPTS < 0 {
		return nil, fmt.Errorf("pipeline: subtitles: the first PTS of %s's first segment cannot be read, so no X-TIMESTAMP-MAP can be written", video.rendition.Name)
	}
	durations := make([]float64, len(video.segments))
	for i, s := range video.segments {
		durations[i] = s.Duration
	}
	startSecs, err := playlist.Starts(durations)
	if err != nil {
		return nil, fmt.Errorf("pipeline: subtitles: %w", err)
	}
	starts := make([]time.Duration, len(startSecs))
	for i, s := range startSecs {
		starts[i] = time.Duration(s * float64(time.Second)).Round(time.Millisecond)
	}
	var total float64
	for _, d := range durations {
		total += d
	}
	end := time.Duration(total * float64(time.Second)).Round(time.Millisecond)

	outs := make([]subtitleOutput, len(tracks))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(p.cfg.UploadConcurrency)
	var mu sync.Mutex
	segs := make([][]playlist.Segment, len(tracks))
	for ti, t := range tracks {
		docs := transcode.SegmentVTT(t.cues, starts, end, video.firstPTS)
		segs[ti] = make([]playlist.Segment, len(docs))
		for i, doc := range docs {
			uri := layout.SegmentName(i, ".vtt")
			g.Go(func() error {
				st, err := v.PutOnce(gctx, t.name+"/"+uri, doc, startSecs[i])
				if err != nil {
					return fmt.Errorf("pipeline: upload subtitle segment: %w", err)
				}
				p.metrics.uploadedBytes.Add(float64(st.Size))
				mu.Lock()
				segs[ti][i] = playlist.Segment{URI: uri, Duration: durations[i], Size: st.Size, IV: st.IV, KeyURI: st.Key.URI}
				mu.Unlock()
				return nil
			})
		}
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	log.Info("subtitle segments stored", "tracks", len(tracks), "segments", len(starts), "x_timestamp_map_mpegts", video.firstPTS)
	for ti, t := range tracks {
		name, size, err := v.WriteMedia(ctx, t.name, playlist.Media{Segments: segs[ti]})
		if err != nil {
			return nil, fmt.Errorf("pipeline: %w", err)
		}
		p.metrics.uploadedBytes.Add(float64(size))
		peak, avg := playlist.Bandwidth(segs[ti])
		outs[ti] = subtitleOutput{
			alt: playlist.Alternative{Type: "SUBTITLES", GroupID: SubtitleGroup, Name: t.label, Language: t.language,
				Autoselect: "YES", Forced: t.forced, URI: layout.MediaPlaylistURI(t.name)},
			rendition: catalog.Rendition{Type: RenditionSubtitles, Name: t.name, Playlist: name, Bandwidth: peak, AverageBandwidth: avg,
				Segments: len(segs[ti]), Duration: total},
		}
	}
	return outs, nil
}

// addSubtitleBandwidth adds the subtitle group's largest peak and average
// (its renditions' measured segment bit rates) to every video variant's
// BANDWIDTH and AVERAGE-BANDWIDTH, and to their catalog rows, index for
// index: RFC 8216 section 4.3.4.2 counts every rendition that would be
// played together, and a player showing subtitles fetches one subtitle
// rendition alongside the variant. Small (WebVTT, about a kbit/s) but
// measured, so the figure is what is published, as for the audio group.
func addSubtitleBandwidth(subs []subtitleOutput, variants []playlist.Variant, renditions []catalog.Rendition) {
	var peak, avg int64
	for _, s := range subs {
		peak, avg = max(peak, s.rendition.Bandwidth), max(avg, s.rendition.AverageBandwidth)
	}
	for i := range variants {
		variants[i].Bandwidth += peak
		variants[i].AverageBandwidth += avg
		renditions[i].Bandwidth, renditions[i].AverageBandwidth = variants[i].Bandwidth, variants[i].AverageBandwidth
	}
}

// jobSubtitles are a payload's sidecars as the job row keeps them, for a
// task enqueued without the jobs client.
func jobSubtitles(subs []jobs.Subtitle) []catalog.JobSubtitle {
	var out []catalog.JobSubtitle
	for _, s := range subs {
		out = append(out, catalog.JobSubtitle(s))
	}
	return out
}
