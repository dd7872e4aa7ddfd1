package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/hlsvault/hlsvault/internal/transcode"
)

// analysisStep is one check the worker runs on a source after probing it and
// before ffmpeg starts. Each adds to the job's wall time; the figure that
// matters is their sum against the transcode's.
type analysisStep struct {
	name string
	run  func(ctx context.Context, x *transcode.Exec, src string, p *transcode.Probe) error
}

// analysisSteps are the pre-transcode checks, in the pipeline's order. A new
// check is one more entry here.
var analysisSteps = []analysisStep{
	{"integrity (packets near the declared end)", func(ctx context.Context, x *transcode.Exec, src string, p *transcode.Probe) error {
		_, err := transcode.CheckIntegrity(ctx, x, src, p, transcode.DefaultLimits())
		return err
	}},
	{"interlace check (idet sample)", func(ctx context.Context, x *transcode.Exec, src string, p *transcode.Probe) error {
		_, err := transcode.DetectScan(ctx, x, src, p, transcode.DefaultLimits())
		return err
	}},
}

// runAnalysis is `hlsbench analysis`: the wall time of the pre-transcode
// checks against one bare ffmpeg for the whole ladder, on the same 20 s 1080p
// source as the main benchmark, interleaved, median of -runs.
func runAnalysis(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c Config
	fs := flag.NewFlagSet("hlsbench analysis", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sourceFlags(fs, &c)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("analysis: unexpected argument %q", fs.Arg(0))
	}
	b, err := newBench(c, nil, stdout, stderr)
	if err != nil {
		return err
	}
	src, err := b.source(ctx, "src_1080p", 1920, 1080, c.Seconds)
	if err != nil {
		return err
	}
	probe, plan, err := b.plan(ctx, src)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "source: %dx%d, %v, ladder %s, preset %s, %d cores\n", probe.Video.DisplayWidth, probe.Video.DisplayHeight,
		probe.Duration, names(plan), c.Preset, nproc())

	steps := make([][]float64, len(analysisSteps))
	var total, transcodeWall, ratio []float64
	for i := range c.Runs {
		b.progress("run %d/%d: pre-transcode analysis", i+1, c.Runs)
		var sum float64
		for j, s := range analysisSteps {
			start := time.Now()
			if err := s.run(ctx, b.exec, src, probe); err != nil {
				return fmt.Errorf("%s: %w", s.name, err)
			}
			d := time.Since(start).Seconds()
			steps[j] = append(steps[j], d*1000)
			sum += d
		}
		b.progress("run %d/%d: bare ffmpeg (one process, whole ladder)", i+1, c.Runs)
		w, _, err := b.ffmpeg(ctx, plan, src)
		if err != nil {
			return err
		}
		total, transcodeWall, ratio = append(total, sum*1000), append(transcodeWall, w), append(ratio, 100*sum/w)
	}
	if len(ratio) == 0 {
		return errors.New("analysis: no runs")
	}

	figureHeader(stdout)
	row := func(name string, xs []float64, prec int, target string) { figureRow(stdout, name, xs, prec, target) }
	for j, s := range analysisSteps {
		row(s.name+" (ms)", steps[j], 1, "")
	}
	row("pre-transcode analysis, all checks (ms)", total, 1, "")
	row("bare ffmpeg, whole ladder, wall (s)", transcodeWall, 2, "")
	row("pre-transcode analysis / transcode wall (%)", ratio, 3, "< 3")
	return nil
}
