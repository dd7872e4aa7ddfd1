package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hlsvault/hlsvault/internal/storage"
	"github.com/hlsvault/hlsvault/internal/transcode"
)

// runRenditions is `hlsbench renditions`: issue 12's title, a 20 s 1080p
// source with two audio tracks (eng, fra), an embedded mov_text subtitle
// track and a French SubRip sidecar, published by the worker end to end
// with everything on (alternate audio, subtitles, I-frame playlists,
// storyboard), against one bare ffmpeg running the worker's own ladder
// argv for it (the same four video rungs, preset and GOP, and the two
// audio renditions) on local disk. Interleaved, median of -runs:
//
//   - wall: worker enqueue → published / bare ffmpeg (target ≤ 1.15);
//   - CPU: the worker process and every child it waited for, start to
//     exit / bare ffmpeg;
//   - the extra renditions' CPU, each pass measured directly, as the
//     worker runs it: the second audio track's AAC encode (one ffmpeg
//     encoding only that rendition, as the ladder's run does), the
//     subtitle pass (both ffmpeg conversions to WebVTT, then the cues
//     parsed and cut per segment in process), the I-frame cut (in
//     process, over the bare run's segments of the rungs that get trick
//     play) and the storyboard pass (its ffmpeg); as a fraction of the
//     video ladder's CPU, which is bare ffmpeg's minus both audio
//     renditions' encodes.
func runRenditions(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var c Config
	fs := flag.NewFlagSet("hlsbench renditions", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sourceFlags(fs, &c)
	workerFlags(fs, &c, getenv)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("renditions: unexpected argument %q", fs.Arg(0))
	}
	b, err := newBench(c, getenv, stdout, stderr)
	if err != nil {
		return err
	}
	src, side, err := b.renditionsSource(ctx)
	if err != nil {
		return err
	}
	probe, plan, err := b.plan(ctx, src)
	if err != nil {
		return err
	}
	if len(plan.Audio) != 2 || len(probe.Subtitles) != 1 {
		return fmt.Errorf("renditions: source has %d audio renditions and %d subtitle streams, want 2 and 1", len(plan.Audio), len(probe.Subtitles))
	}
	if err := b.setup(ctx); err != nil {
		return err
	}
	defer b.db.Close()
	defer b.client.Close()
	fmt.Fprintf(stdout, "source: %dx%d, %v, ladder %s, subtitles 1 embedded (mov_text) + 1 sidecar (srt), preset %s, %d cores\n",
		probe.Video.DisplayWidth, probe.Video.DisplayHeight, probe.Duration, names(plan), c.Preset, nproc())

	var (
		bareWall, bareCPU, workerWall, workerCPU, wallRatio, cpuRatio []float64
		audio2, subs, iframes, board, videoCPU, extraPct              []float64
		innerFF, innerRatio, outsideFF, pickup                        []float64
	)
	// LOG_LEVEL=info: worker.log keeps the last run's stage timings.
	job := workerJob{src: src, sidecars: []sidecar{{"fr", side}}, env: []string{"STORYBOARD=on", "LOG_LEVEL=info"}}
	for i := range c.Runs {
		b.progress("run %d/%d: bare ffmpeg (the worker's ladder argv), then the I-frame cut of its segments", i+1, c.Runs)
		w, cpu, cut, err := b.bareWithIFrames(ctx, plan, src)
		if err != nil {
			return err
		}
		b.progress("run %d/%d: audio renditions alone, subtitle pass, storyboard pass", i+1, c.Runs)
		var audioCPU []float64
		for _, a := range plan.Audio {
			x, err := b.audioOnly(ctx, plan, a, src)
			if err != nil {
				return err
			}
			audioCPU = append(audioCPU, x)
		}
		s, err := b.subtitlePass(ctx, probe, src, side, plan.Duration)
		if err != nil {
			return err
		}
		sb, err := b.storyboardPass(ctx, probe, src)
		if err != nil {
			return err
		}
		b.progress("run %d/%d: worker end to end, everything on (Azurite)", i+1, c.Runs)
		wr, err := b.worker(ctx, job)
		if err != nil {
			return err
		}
		if i == 0 {
			if err := b.describe(ctx, wr.video); err != nil {
				return err
			}
		}
		ff, jobSecs, err := jobLogTimes(filepath.Join(b.cfg.Dir, "worker.log"))
		if err != nil {
			return err
		}
		innerFF, innerRatio = append(innerFF, ff), append(innerRatio, ff/w)
		outsideFF, pickup = append(outsideFF, jobSecs-ff), append(pickup, wr.wall-jobSecs)
		video := cpu - audioCPU[0] - audioCPU[1]
		extra := audioCPU[1] + s + cut + sb
		bareWall, bareCPU = append(bareWall, w), append(bareCPU, cpu)
		workerWall, workerCPU = append(workerWall, wr.wall), append(workerCPU, wr.cpu)
		wallRatio, cpuRatio = append(wallRatio, wr.wall/w), append(cpuRatio, wr.cpu/cpu)
		audio2, subs, iframes, board = append(audio2, audioCPU[1]), append(subs, s), append(iframes, cut), append(board, sb)
		videoCPU, extraPct = append(videoCPU, video), append(extraPct, 100*extra/video)
	}
	if len(wallRatio) == 0 {
		return errors.New("renditions: no runs")
	}

	figureHeader(stdout)
	figureRow(stdout, "bare ffmpeg, worker's ladder (4 rungs + 2 audio), wall (s)", bareWall, 2, "")
	figureRow(stdout, "worker enqueue→published, everything on, Azurite, wall (s)", workerWall, 2, "")
	figureRow(stdout, "worker end to end / bare ffmpeg, wall", wallRatio, 2, "≤ 1.15")
	figureRow(stdout, "  the job's ladder ffmpeg, wall (s)", innerFF, 2, "")
	figureRow(stdout, "  the job's ladder ffmpeg / bare ffmpeg, wall", innerRatio, 2, "")
	figureRow(stdout, "  the job outside its ladder ffmpeg, wall (s)", outsideFF, 2, "")
	figureRow(stdout, "  enqueue → job start and job done → seen published (s)", pickup, 2, "")
	figureRow(stdout, "bare ffmpeg CPU (user+sys s)", bareCPU, 2, "")
	figureRow(stdout, "worker CPU, process + children (user+sys s)", workerCPU, 2, "")
	figureRow(stdout, "worker CPU / bare ffmpeg CPU", cpuRatio, 2, "")
	figureRow(stdout, "video ladder CPU: bare minus both audio encodes (s)", videoCPU, 2, "")
	figureRow(stdout, "extra: second audio track (fra) AAC encode, CPU (s)", audio2, 3, "")
	figureRow(stdout, "extra: subtitles, 2 conversions + cue cut, CPU (s)", subs, 3, "")
	figureRow(stdout, "extra: I-frame cut, in process, CPU (s)", iframes, 3, "")
	figureRow(stdout, "extra: storyboard pass, CPU (s)", board, 3, "")
	figureRow(stdout, "extra renditions' CPU / video ladder CPU (%)", extraPct, 2, "")
	return nil
}

// renditionsSource generates, once, the 20 s 1080p source with an English
// and a French track and an embedded English mov_text track, and the French
// SubRip sidecar.
func (b *bench) renditionsSource(ctx context.Context) (src, sidecar string, err error) {
	secs := b.cfg.Seconds
	embedded := filepath.Join(b.cfg.Dir, fmt.Sprintf("subs_en_%ds.srt", secs))
	sidecar = filepath.Join(b.cfg.Dir, fmt.Sprintf("subs_fr_%ds.srt", secs))
	if err := os.WriteFile(embedded, benchSRT(secs, "English line"), 0o644); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(sidecar, benchSRT(secs, "Réplique française"), 0o644); err != nil {
		return "", "", err
	}
	src, err = b.generate(ctx, fmt.Sprintf("src_1080p_renditions_%ds.mp4", secs),
		"-f", "lavfi", "-i", fmt.Sprintf("testsrc2=size=1920x1080:rate=30:duration=%d", secs),
		"-f", "lavfi", "-i", fmt.Sprintf("sine=frequency=440:sample_rate=48000:duration=%d", secs),
		"-f", "lavfi", "-i", fmt.Sprintf("sine=frequency=660:sample_rate=48000:duration=%d", secs),
		"-i", embedded,
		"-map", "0:v", "-map", "1:a", "-map", "2:a", "-map", "3:s",
		"-metadata:s:a:0", "language=eng", "-metadata:s:a:1", "language=fra", "-metadata:s:s:0", "language=eng",
		"-disposition:a:0", "default", "-disposition:a:1", "0",
		"-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p", "-c:a", "aac", "-c:s", "mov_text")
	return src, sidecar, err
}

// benchSRT is a SubRip file with a cue every two seconds.
func benchSRT(seconds int, text string) []byte {
	var buf bytes.Buffer
	ts := func(d time.Duration) string {
		return fmt.Sprintf("%02d:%02d:%02d,%03d", int(d.Hours()), int(d.Minutes())%60, int(d.Seconds())%60, d.Milliseconds()%1000)
	}
	for i := 0; 2*i < seconds; i++ {
		start := time.Duration(2*i)*time.Second + 200*time.Millisecond
		fmt.Fprintf(&buf, "%d\n%s --> %s\n%s %d\n\n", i+1, ts(start), ts(start+1500*time.Millisecond), text, i+1)
	}
	return buf.Bytes()
}

// bareWithIFrames runs bare ffmpeg for plan, then cuts the first I-frame
// of every segment of the rungs that get trick play, as the worker does
// before deleting a plain segment. It returns ffmpeg's wall and CPU and
// the cut's CPU (this process's), in seconds.
func (b *bench) bareWithIFrames(ctx context.Context, plan transcode.Plan, src string) (wall, cpu, cut float64, err error) {
	out, err := os.MkdirTemp(b.cfg.Dir, "bare-")
	if err != nil {
		return 0, 0, 0, err
	}
	defer os.RemoveAll(out)
	args, err := transcode.Args(plan, src, out, transcode.ArgsOptions{Preset: b.cfg.Preset})
	if err != nil {
		return 0, 0, 0, err
	}
	if wall, cpu, err = b.runFFmpeg(ctx, args, src, out); err != nil {
		return 0, 0, 0, err
	}
	var segs []string
	for _, r := range trickPlayRungs(plan.Renditions) {
		m, err := filepath.Glob(filepath.Join(out, r, "seg_*.ts"))
		if err != nil {
			return 0, 0, 0, err
		}
		segs = append(segs, m...)
	}
	if len(segs) == 0 {
		return 0, 0, 0, errors.New("renditions: no segments to cut I-frames from")
	}
	before := rusage(syscall.RUSAGE_SELF)
	for _, s := range segs {
		data, err := os.ReadFile(s)
		if err != nil {
			return 0, 0, 0, err
		}
		if _, err := transcode.FirstIFrame(bytes.NewReader(data)); err != nil {
			return 0, 0, 0, fmt.Errorf("renditions: I-frame of %s: %w", s, err)
		}
	}
	return wall, cpu, rusage(syscall.RUSAGE_SELF) - before, nil
}

// trickPlayRungs names the renditions the pipeline gives an I-frame
// playlist (internal/pipeline iframeRungs): those at most 720 lines tall,
// and the lowest.
func trickPlayRungs(rs []transcode.Rendition) []string {
	var out []string
	lowest := 0
	for i, r := range rs {
		if r.Height < rs[lowest].Height {
			lowest = i
		}
	}
	for i, r := range rs {
		if r.Height <= 720 || i == lowest {
			out = append(out, r.Name)
		}
	}
	return out
}

// audioArgs is ffmpeg's argv that encodes only audio rendition a of plan
// the way the ladder's run encodes it (AAC-LC, 48 kHz, its channels and
// bitrate, padded to the source's duration) into HLS segments under out:
// the CPU that rendition adds to the one ffmpeg run, plus one demux of the
// file.
func audioArgs(plan transcode.Plan, a transcode.AudioRendition, src, out string) []string {
	return []string{"-hide_banner", "-nostdin", "-loglevel", "error", "-y",
		"-f", plan.Format, "-i", "file:" + src,
		"-map", "0:" + strconv.Itoa(a.Index),
		"-af", "apad=whole_dur=" + strconv.FormatFloat(plan.Duration.Seconds(), 'f', 3, 64),
		"-c:a", "aac", "-ac", strconv.Itoa(a.Channels), "-ar", "48000", "-b:a", strconv.Itoa(a.Bitrate),
		"-f", "hls", "-hls_time", "4", "-hls_list_size", "0",
		"-hls_segment_filename", out + "/seg_%05d.ts", out + "/index.m3u8"}
}

// audioOnly returns the CPU (s) of encoding audio rendition a alone.
func (b *bench) audioOnly(ctx context.Context, plan transcode.Plan, a transcode.AudioRendition, src string) (float64, error) {
	out, err := os.MkdirTemp(b.cfg.Dir, "audio-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(out)
	_, cpu, err := b.runFFmpeg(ctx, audioArgs(plan, a, src, out), src, out)
	return cpu, err
}

// subtitlePass converts the embedded stream and the sidecar to WebVTT as
// the pipeline does (ffmpeg in the sandbox), then parses the cues and
// cuts them into one WebVTT document per 4 s segment. It returns the CPU
// (s): the conversions' (children) and the parse and cut's (this process).
func (b *bench) subtitlePass(ctx context.Context, probe *transcode.Probe, src, side string, duration time.Duration) (float64, error) {
	dir, err := os.MkdirTemp(b.cfg.Dir, "subs-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	data, err := os.ReadFile(side)
	if err != nil {
		return 0, err
	}
	children, err := childrenCPU()
	if err != nil {
		return 0, err
	}
	self := rusage(syscall.RUSAGE_SELF)
	format, err := transcode.SniffSubtitle(data)
	if err != nil {
		return 0, err
	}
	sideCopy := filepath.Join(dir, "sidecar0")
	if err := os.WriteFile(sideCopy, data, 0o600); err != nil {
		return 0, err
	}
	embedded, sidecar := filepath.Join(dir, "stream0.vtt"), sideCopy+".vtt"
	if err := transcode.ConvertSubtitle(ctx, b.exec, transcode.SubtitleArgs(probe.Format, src, probe.Subtitles[0].Index, embedded),
		src, embedded, transcode.DefaultLimits()); err != nil {
		return 0, err
	}
	if err := transcode.ConvertSubtitle(ctx, b.exec, transcode.SidecarArgs(format, sideCopy, sidecar), sideCopy, sidecar, transcode.DefaultLimits()); err != nil {
		return 0, err
	}
	var starts []time.Duration
	for t := time.Duration(0); t < duration; t += 4 * time.Second {
		starts = append(starts, t)
	}
	for _, vtt := range []string{embedded, sidecar} {
		data, err := os.ReadFile(vtt)
		if err != nil {
			return 0, err
		}
		cues, err := transcode.ParseVTT(data)
		if err != nil {
			return 0, err
		}
		if len(cues) == 0 {
			return 0, fmt.Errorf("renditions: no cues in %s", vtt)
		}
		transcode.SegmentVTT(cues, starts, duration, 126000)
	}
	selfCPU := rusage(syscall.RUSAGE_SELF) - self
	after, err := childrenCPU()
	return after - children + selfCPU, err
}

// storyboardPass runs the storyboard's ffmpeg as the worker does by
// default (STORYBOARD_INTERVAL 5s) and returns its CPU (s).
func (b *bench) storyboardPass(ctx context.Context, probe *transcode.Probe, src string) (float64, error) {
	dir, err := os.MkdirTemp(b.cfg.Dir, "storyboard-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	plan, err := transcode.PlanStoryboard(probe.Video.DisplayWidth, probe.Video.DisplayHeight, probe.Duration, transcode.DefaultStoryboardInterval)
	if err != nil {
		return 0, err
	}
	before, err := childrenCPU()
	if err != nil {
		return 0, err
	}
	if _, err := transcode.MakeStoryboard(ctx, b.exec, src, dir, probe, plan, transcode.DefaultLimits()); err != nil {
		return 0, err
	}
	after, err := childrenCPU()
	return after - before, err
}

// describe prints what the worker published for video, once, so that the
// figures are known to be of the whole title.
func (b *bench) describe(ctx context.Context, video string) error {
	st, err := b.client.Status(ctx, video)
	if err != nil {
		return err
	}
	if st.Current == nil {
		return fmt.Errorf("renditions: %s has no current version", video)
	}
	kinds := map[string]int{}
	for _, r := range st.Current.Renditions {
		kinds[r.Type]++
	}
	store, err := storage.Open(ctx, "azblob://"+b.queue, b.getenv)
	if err != nil {
		return err
	}
	rc, err := store.Get(ctx, st.Current.Master)
	if err != nil {
		return err
	}
	master, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		return err
	}
	n := bytes.Count(master, []byte("#EXT-X-I-FRAME-STREAM-INF:"))
	fmt.Fprintf(b.out, "published: %d video, %d audio, %d subtitle renditions, %d I-frame playlists, storyboard %v\n",
		kinds[""], kinds["audio"], kinds["subtitles"], n, st.Current.Storyboard)
	if kinds["audio"] != 2 || kinds["subtitles"] != 2 || n == 0 || !st.Current.Storyboard {
		return errors.New("renditions: the worker did not publish every extra rendition")
	}
	return nil
}

// jobLogTimes reads a worker's log (JSON, LOG_LEVEL=info) of one job:
// how long its ladder ffmpeg ran ("segments uploaded" ffmpeg_seconds) and
// the whole job ("job done" seconds).
func jobLogTimes(path string) (ffmpeg, job float64, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, err
	}
	for line := range bytes.Lines(data) {
		var e struct {
			Msg           string  `json:"msg"`
			FFmpegSeconds float64 `json:"ffmpeg_seconds"`
			Seconds       float64 `json:"seconds"`
		}
		if json.Unmarshal(line, &e) != nil {
			continue
		}
		switch e.Msg {
		case "segments uploaded":
			ffmpeg = e.FFmpegSeconds
		case "job done":
			job = e.Seconds
		}
	}
	if ffmpeg <= 0 || job <= 0 {
		return 0, 0, fmt.Errorf("renditions: %s names no ffmpeg or job time (LOG_LEVEL=info, JSON)", path)
	}
	return ffmpeg, job, nil
}

// figureHeader and figureRow print the figures table every mode prints.
func figureHeader(w io.Writer) {
	fmt.Fprintf(w, "\n%-58s %-26s %9s %s\n", "figure", "runs", "median", "target")
}

func figureRow(w io.Writer, name string, xs []float64, prec int, target string) {
	var parts []string
	for _, x := range xs {
		parts = append(parts, strconv.FormatFloat(x, 'f', prec, 64))
	}
	fmt.Fprintf(w, "%-58s %-26s %9.*f %s\n", name, strings.Join(parts, " "), prec, median(xs), target)
}
