package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/hlsvault/hlsvault/internal/config"
	"github.com/hlsvault/hlsvault/jobs"
)

const listUsage = "enqueue list [--state S] [--json] [--limit N] [--after CURSOR] [flags]\n" +
	"  List videos, most recently changed first: state, current version, stage, progress, last change.\n" +
	"  A full page ends with the --after value of the next one."

func registerList(fs *flag.FlagSet, c *Config) {
	fs.StringVar(&c.State, "state", "", "only videos in this state: queued, processing, published, failed, cancelled or deleted")
	fs.BoolVar(&c.JSON, "json", false, "print the page as JSON")
	fs.IntVar(&c.Limit, "limit", 50, "videos per page (at most 1000)")
	fs.StringVar(&c.After, "after", "", "resume after this cursor (the previous page's next)")
}

func (c *Config) validateList(p *config.Problems) {
	switch jobs.State(c.State) {
	case "", jobs.Queued, jobs.Processing, jobs.Published, jobs.Failed, jobs.Cancelled, jobs.Deleted:
	default:
		p.Addf("--state=%q: want queued, processing, published, failed, cancelled or deleted", c.State)
	}
	if c.Limit < 1 || c.Limit > 1000 {
		p.Addf("--limit=%d: want 1 to 1000", c.Limit)
	}
}

// runList prints one page of videos, as a table or JSON.
func runList(ctx context.Context, c Config, client *jobs.Client, stdout io.Writer) error {
	page, err := client.List(ctx, jobs.ListOptions{State: jobs.State(c.State), Limit: c.Limit, After: c.After})
	if err != nil {
		return err
	}
	if c.JSON {
		if page.Videos == nil {
			page.Videos = []jobs.VideoSummary{}
		}
		return printJSON(stdout, page)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VIDEO\tSTATE\tVERSION\tSTAGE\tPROGRESS\tUPDATED")
	for _, v := range page.Videos {
		version, stage := "-", "-"
		if v.Version > 0 {
			version = fmt.Sprint(v.Version)
		}
		if v.Stage != "" && v.State == jobs.Processing {
			stage = string(v.Stage)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.1f%%\t%s\n", v.VideoID, v.State, version, stage, v.Progress, v.UpdatedAt.UTC().Format(time.RFC3339))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if page.Next != "" {
		fmt.Fprintf(stdout, "more: enqueue list --after %s\n", page.Next)
	}
	return nil
}
