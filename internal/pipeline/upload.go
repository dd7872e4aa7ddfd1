package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/hlsvault/hlsvault/internal/catalog"
	"github.com/hlsvault/hlsvault/internal/layout"
	"github.com/hlsvault/hlsvault/internal/packager"
	"github.com/hlsvault/hlsvault/internal/playlist"
	"github.com/hlsvault/hlsvault/internal/transcode"
)

// renditionOutput collects what was uploaded for one rendition.
type renditionOutput struct {
	rendition transcode.Rendition
	segments  []playlist.Segment // by index; URI empty until uploaded
	codecs    string
	iframes   []playlist.Segment        // trick play (iframes.go), by index; nil: none for this rendition
	audio     *transcode.AudioRendition // an alternate audio rendition; nil for video
	firstPTS  int64                     // 90 kHz PTS the first segment starts at (subtitles' X-TIMESTAMP-MAP); -1 unknown
	init      string                    // fMP4: ffmpeg's plain init section (fmp4.go); "" for MPEG-TS
}

type uploadResult struct {
	renditions []*renditionOutput
	ffmpeg     time.Duration
}

// segmentJob is one finished plain segment waiting to be encrypted and
// uploaded.
type segmentJob struct {
	r        *renditionOutput
	index    int
	local    string
	uri      string
	duration float64
	start    float64 // media start, seconds: chooses the key period
}

// transcodeAndUpload runs ffmpeg and, while it runs, uploads every segment
// it finishes. It returns once ffmpeg has exited and every segment is stored.
func (p *Pipeline) transcodeAndUpload(ctx context.Context, log *slog.Logger, att catalog.Attempt,
	plan transcode.Plan, preset, src string, srcSize int64, out string, v *packager.Version) (*uploadResult, error) {
	args, err := transcode.Args(plan, src, out, transcode.ArgsOptions{Preset: preset})
	if err != nil {
		return nil, fmt.Errorf("pipeline: %w", err)
	}
	res := &uploadResult{}
	trick := iframeRungs(plan.Renditions)
	if plan.Segments.FMP4() {
		// Trick play cuts MPEG-TS; fMP4 titles have no I-frame playlists
		// (README, CMAF).
		trick = map[string]bool{}
	}
	if err := checkIFrameNames(plan.Renditions, trick); err != nil {
		return nil, badInput(err)
	}
	for _, r := range plan.Renditions {
		ro := &renditionOutput{rendition: r}
		if trick[r.Name] {
			ro.iframes = []playlist.Segment{}
		}
		res.renditions = append(res.renditions, ro)
	}
	res.renditions = append(res.renditions, audioOutputs(plan)...)

	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(p.cfg.UploadConcurrency)
	var mu sync.Mutex // guards the segments slices

	ffmpegDone := make(chan error, 1)
	// Uploaded segments are deleted, so what is on disk at once is a few
	// segments per rendition: a hostile input that makes ffmpeg write far
	// more than its own size is stopped.
	runner := transcode.Runner{Exec: p.cfg.Exec, Logger: log, KillGrace: 2 * time.Second,
		Input: src, OutDir: out, MaxOutputBytes: 2*srcSize + 1<<30}
	progress := &progressReporter{p: p, ctx: gctx, jobID: att.Job.ID, duration: plan.Duration}
	started := time.Now()
	p.setStage(ctx, log, att.Job.ID, catalog.StageEncode)
	go func() {
		ffmpegDone <- runner.Run(gctx, args, progress.report)
	}()

	queued := make([]int, len(res.renditions))    // segments handed to the pool, per rendition
	startMs := make([]int64, len(res.renditions)) // media start of the next segment, as the playlist will say it
	scan := func(final bool) error {
		for i, r := range res.renditions {
			dir := filepath.Join(out, r.rendition.Name)
			m, err := readPlaylist(filepath.Join(dir, layout.MediaPlaylist))
			if errors.Is(err, os.ErrNotExist) && !final {
				continue
			}
			if err != nil {
				return fmt.Errorf("pipeline: read ffmpeg playlist of %s: %w", r.rendition.Name, err)
			}
			if final && !m.Ended {
				return fmt.Errorf("pipeline: ffmpeg playlist of %s has no EXT-X-ENDLIST", r.rendition.Name)
			}
			if err := noteInit(r, dir, m); err != nil {
				return err
			}
			for ; queued[i] < len(m.Segments); queued[i]++ {
				s := m.Segments[queued[i]]
				if s.URI != path.Base(s.URI) {
					return fmt.Errorf("pipeline: unexpected segment URI %q in ffmpeg playlist", s.URI)
				}
				mu.Lock()
				r.segments = append(r.segments, playlist.Segment{})
				if r.iframes != nil {
					r.iframes = append(r.iframes, playlist.Segment{})
				}
				mu.Unlock()
				ms, err := playlist.DurationMillis(s.Duration)
				if err != nil {
					return fmt.Errorf("pipeline: ffmpeg playlist of %s: segment %s: %w", r.rendition.Name, s.URI, err)
				}
				job := segmentJob{r: r, index: queued[i], local: filepath.Join(dir, s.URI), uri: s.URI, duration: s.Duration,
					start: float64(startMs[i]) / 1000}
				startMs[i] += ms
				g.Go(func() error { return p.uploadSegment(gctx, v, job, &mu) })
			}
		}
		return nil
	}

	tick := time.NewTicker(p.cfg.PollInterval)
	defer tick.Stop()
	var runErr error
wait:
	for {
		select {
		case runErr = <-ffmpegDone:
			break wait
		case <-tick.C:
			if err := scan(false); err != nil {
				runErr = err
				break wait
			}
		}
	}
	res.ffmpeg = time.Since(started)
	p.metrics.ffmpegDuration.Observe(res.ffmpeg.Seconds())
	if runErr == nil {
		// ffmpeg is done; what is left is storing the last segments.
		p.setStage(ctx, log, att.Job.ID, catalog.StageUpload)
		runErr = scan(true)
	}
	if runErr != nil {
		// Cancel the uploads in flight. The group keeps the first error: a
		// failed upload that made ffmpeg stop is the cause, not ffmpeg.
		g.Go(func() error { return runErr })
		err := g.Wait()
		if errors.Is(err, transcode.ErrInvalidInput) {
			return nil, badInput(err)
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("pipeline: %w", context.Cause(ctx))
		}
		return nil, err
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	if err := p.storeInits(ctx, v, res); err != nil {
		return nil, err
	}
	log.Info("segments uploaded", "ffmpeg_seconds", res.ffmpeg.Seconds(), "total_seconds", time.Since(started).Seconds())
	return res, nil
}

// uploadSegment encrypts one plain segment, stores it under the version's
// prefix and deletes the plain file.
func (p *Pipeline) uploadSegment(ctx context.Context, v *packager.Version, j segmentJob, mu *sync.Mutex) error {
	if j.index == 0 && j.r.codecs == "" {
		// The first segment tells the exact profile and level x264 chose,
		// which the master playlist's CODECS must name.
		codecsOf := transcode.SegmentCodecs
		if j.r.audio != nil {
			codecsOf = transcode.SegmentAudioCodecs
		}
		firstPTS := transcode.FirstPTS
		if init := j.r.init; init != "" {
			// fMP4: the sample entries of the init section name them.
			codecsOf = func(string) (string, error) { return transcode.InitCodecs(init) }
			firstPTS = func(seg string) (int64, error) { return transcode.FirstPTSFMP4(init, seg) }
		}
		codecs, err := codecsOf(j.local)
		if err != nil {
			return fmt.Errorf("pipeline: codecs of %s: %w", j.r.rendition.Name, err)
		}
		// Only subtitles need it (storeSubtitles refuses -1).
		pts, err := firstPTS(j.local)
		if err != nil {
			pts = -1
		}
		mu.Lock()
		j.r.codecs, j.r.firstPTS = codecs, pts
		mu.Unlock()
	}
	f, err := os.Open(j.local)
	if err != nil {
		return fmt.Errorf("pipeline: open segment: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("pipeline: open segment: %w", err)
	}
	// A known size lets the packager encrypt into a pooled buffer and
	// store the segment in one request.
	st, err := v.Put(ctx, packager.Object{Name: j.r.rendition.Name + "/" + j.uri, Body: f, Size: fi.Size(), Start: j.start})
	if err != nil {
		return fmt.Errorf("pipeline: upload segment: %w", err)
	}
	p.metrics.uploadedBytes.Add(float64(st.Size))
	mu.Lock()
	j.r.segments[j.index] = playlist.Segment{URI: j.uri, Duration: j.duration, Size: st.Size, IV: st.IV, KeyURI: st.Key.URI}
	mu.Unlock()
	if j.r.iframes != nil {
		if err := p.uploadIFrame(ctx, v, j, mu); err != nil {
			return err
		}
	}
	// The plain segment is not needed any more; do not let it outlive its
	// upload.
	if err := os.Remove(j.local); err != nil {
		return fmt.Errorf("pipeline: remove plain segment: %w", err)
	}
	return nil
}

func readPlaylist(name string) (*playlist.ParsedMedia, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return playlist.ParseMedia(f)
}

// writePlaylists stores each rendition's media playlist and then the master,
// and returns the master's object name and the renditions for the catalog.
func (p *Pipeline) writePlaylists(ctx context.Context, v *packager.Version, plan transcode.Plan,
	res *uploadResult, subs []subtitleOutput) (string, []catalog.Rendition, error) {
	var (
		variants   []playlist.Variant
		renditions []catalog.Rendition
		audio      []writtenAudio
	)
	for _, r := range res.renditions {
		name, size, err := v.WriteMedia(ctx, r.rendition.Name, playlist.Media{Segments: r.segments, Independent: true})
		if err != nil {
			return "", nil, fmt.Errorf("pipeline: %w", err)
		}
		p.metrics.uploadedBytes.Add(float64(size))
		peak, avg := playlist.Bandwidth(r.segments)
		var total float64
		for _, s := range r.segments {
			total += s.Duration
		}
		if r.audio != nil {
			audio = append(audio, writtenAudio{r: r, playlist: name, peak: peak, avg: avg, duration: total})
			continue
		}
		vr := playlist.Variant{
			URI: layout.MediaPlaylistURI(r.rendition.Name), Bandwidth: peak, AverageBandwidth: avg, Codecs: r.codecs,
			Width: r.rendition.Width, Height: r.rendition.Height, FrameRate: plan.FrameRate.Float64(),
		}
		if len(subs) > 0 {
			vr.Subtitles = SubtitleGroup
		}
		variants = append(variants, vr)
		renditions = append(renditions, catalog.Rendition{
			Name: r.rendition.Name, Playlist: name, Width: vr.Width, Height: vr.Height, Bandwidth: peak,
			AverageBandwidth: avg, Codecs: vr.Codecs, FrameRate: vr.FrameRate, Segments: len(r.segments), Duration: total,
		})
	}
	addSubtitleBandwidth(subs, variants, renditions)
	iframes, err := p.writeIFramePlaylists(ctx, v, res)
	if err != nil {
		return "", nil, err
	}
	var alts []playlist.Alternative
	if len(audio) > 0 {
		g := newAudioGroup(audio)
		g.apply(variants, renditions)
		alts, renditions = g.alternatives, append(renditions, g.renditions...)
	}
	for _, s := range subs {
		alts = append(alts, s.alt)
		renditions = append(renditions, s.rendition)
	}
	master, size, err := v.WriteMaster(ctx, playlist.Master{Variants: orderVariants(variants), Alternatives: alts,
		IFrameVariants: iframes, Independent: true, Complete: true})
	if err != nil {
		return "", nil, fmt.Errorf("pipeline: %w", err)
	}
	p.metrics.uploadedBytes.Add(float64(size))
	return master, renditions, nil
}
