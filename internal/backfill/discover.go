package backfill

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"

	"golang.org/x/sync/errgroup"

	"github.com/hlsvault/hlsvault/internal/catalog"
	"github.com/hlsvault/hlsvault/internal/ids"
	"github.com/hlsvault/hlsvault/internal/playlist"
	"github.com/hlsvault/hlsvault/internal/storage"
)

// Candidate actions.
const (
	ActionConvert     = "convert"     // re-encrypt the legacy title
	ActionRekey       = "rekey"       // re-encrypt the current version under a fresh key
	ActionRetranscode = "retranscode" // run the transcode pipeline on the source
	ActionSkip        = "skip"        // nothing to do (has a key, already encrypted)
	ActionBroken      = "broken"      // cannot be converted as it is
)

// Candidate is one title found by discovery, with what a run would do.
type Candidate struct {
	VideoID    string   `json:"video"`
	Legacy     string   `json:"legacy,omitempty"` // playlist (legacy, or the current version's master for a re-key)
	Action     string   `json:"action"`
	Reason     string   `json:"reason,omitempty"`
	Renditions []string `json:"renditions,omitempty"`
	Segments   int      `json:"segments"`
	Bytes      int64    `json:"bytes"`
	Current    int      `json:"current_version,omitempty"`
	Source     string   `json:"source,omitempty"` // --retranscode
	// NotATitle marks a directory whose name is not a video id: reported
	// by discovery, never made an item of a run.
	NotATitle bool `json:"-"`
}

// Converts reports whether a run would work on the candidate.
func (c Candidate) Converts() bool {
	switch c.Action {
	case ActionConvert, ActionRekey, ActionRetranscode:
		return true
	}
	return false
}

// title is a video and the playlists found in its legacy directory.
type title struct {
	video     string
	dir       string
	playlists []string
	invalid   string // reason the id was refused
}

// Discover finds the candidates of a run: the titles under opts.Prefix
// ({prefix}{video}/…), the given ids, or the videos the catalog knows
// without a key (opts.FromDB); ids and catalog titles are looked for under
// {opts.LegacyPrefix}/{video}/. Each title is planned as the worker would
// (playlists read, objects sized up, nothing else read), so broken titles
// are reported with their reason and titles that are already encrypted or
// have a key are skipped (unless re-keyed). The candidates are sorted by
// video id. It holds them all: a large catalogue goes through DiscoverEach.
func Discover(ctx context.Context, store storage.Store, db *catalog.DB, opts RunOptions, videoIDs []string) ([]Candidate, error) {
	var out []Candidate
	err := DiscoverEach(ctx, store, db, opts, videoIDs, DiscoverOptions{}, func(cands []Candidate, _ string) error {
		out = append(out, cands...)
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b Candidate) int { return strings.Compare(a.VideoID, b.VideoID) })
	return out, nil
}

// DiscoverOptions tune DiscoverEach.
type DiscoverOptions struct {
	// After skips every title whose directory ({prefix}{video}/) is at or
	// before it in byte order: the cursor of a resumed start.
	After string
	// Chunk is how many titles are planned and handed over at once
	// (default 1000): what discovery holds in memory.
	Chunk int
	// Parallel bounds the titles planned at once (default 8).
	Parallel int
}

// DiscoverEach is Discover for a catalogue of any size: it lists storage
// as a stream and hands the candidates over in chunks, in byte order of
// their title directory, each with the directory of its last title
// (through, the cursor to resume after). It holds one chunk at a time; a
// prefix listing is never collected (a title's objects are contiguous in
// a lexical listing, so a title is complete when the next one begins).
// An --ids or --from-db list is held, as ids only.
func DiscoverEach(ctx context.Context, store storage.Store, db *catalog.DB, opts RunOptions, videoIDs []string,
	do DiscoverOptions, fn func(cands []Candidate, through string) error) error {
	do.Chunk = cmp.Or(max(do.Chunk, 0), 1000)
	do.Parallel = cmp.Or(max(do.Parallel, 0), 8)
	chunk := make([]*title, 0, do.Chunk)
	flush := func() error {
		if len(chunk) == 0 {
			return nil
		}
		cands, err := planChunk(ctx, store, db, opts, chunk, do.Parallel)
		if err != nil {
			return err
		}
		through := chunk[len(chunk)-1].dir
		chunk = chunk[:0]
		return fn(cands, through)
	}
	add := func(t *title) error {
		if do.After != "" && t.dir <= do.After {
			return nil
		}
		chunk = append(chunk, t)
		if len(chunk) == do.Chunk {
			return flush()
		}
		return nil
	}
	var err error
	switch {
	case opts.Prefix != "":
		err = scanPrefix(ctx, store, opts.Prefix, do.After, add)
	case opts.FromDB:
		if videoIDs, err = db.KnownVideos(ctx, opts.Rekey); err == nil {
			err = eachListedTitle(ctx, store, opts.LegacyPrefix, videoIDs, do, add)
		}
	default:
		err = eachListedTitle(ctx, store, opts.LegacyPrefix, videoIDs, do, add)
	}
	if err != nil {
		return err
	}
	return flush()
}

// planChunk plans a chunk of titles, keeping their order.
func planChunk(ctx context.Context, store storage.Store, db *catalog.DB, opts RunOptions, titles []*title, parallel int) ([]Candidate, error) {
	var valid []string
	for _, t := range titles {
		if t.invalid == "" {
			valid = append(valid, t.video)
		}
	}
	current, err := db.CurrentVersions(ctx, valid)
	if err != nil {
		return nil, err
	}
	out := make([]Candidate, len(titles))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(parallel)
	for i, t := range titles {
		g.Go(func() error {
			c, err := candidate(gctx, store, db, opts, t, current)
			out[i] = c
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return out, nil
}

func candidate(ctx context.Context, store storage.Store, db *catalog.DB, opts RunOptions, t *title,
	current map[string]catalog.CurrentInfo) (Candidate, error) {
	c := Candidate{VideoID: t.video}
	if t.invalid != "" {
		c.Action, c.Reason, c.NotATitle = ActionSkip, t.invalid, true
		return c, nil
	}
	cur, keyed := current[t.video]
	c.Current = cur.Version
	rekey := keyed && opts.Rekey && cur.PublishedAt.Before(opts.RekeyBefore)
	if keyed && !rekey {
		c.Action, c.Reason = ActionSkip, fmt.Sprintf("already has a key (version %d)", cur.Version)
		if opts.Rekey {
			c.Reason += ", published after the first re-key run with this label"
		}
		return c, nil
	}
	if opts.Retranscode {
		src, err := SourceOf(ctx, db, opts.SourceTemplate, t.video)
		if err != nil {
			c.Action, c.Reason = ActionBroken, err.Error()
			return c, nil
		}
		c.Source = src
		fi, err := store.Stat(ctx, src)
		if errors.Is(err, storage.ErrNotFound) {
			c.Action, c.Reason = ActionBroken, fmt.Sprintf("source %s is not in storage", src)
			return c, nil
		}
		if err != nil {
			return c, err
		}
		c.Action, c.Bytes = ActionRetranscode, fi.Size
		return c, nil
	}
	var src Source
	if rekey {
		v, err := db.VersionWithKey(ctx, t.video, cur.Version)
		if err != nil {
			return c, err
		}
		src = Source{Playlist: v.Master, KeyIDs: v.KeyIDs(), URLMap: opts.URLMap}
		c.Action = ActionRekey
	} else {
		pl, reason, err := choosePlaylist(ctx, store, t)
		if err != nil {
			return c, err
		}
		if reason != "" {
			c.Action, c.Reason = ActionBroken, reason
			return c, nil
		}
		src = Source{Playlist: pl, URLMap: opts.URLMap}
		c.Action = ActionConvert
	}
	c.Legacy = src.Playlist
	p, err := PlanTitle(ctx, store, src)
	switch {
	case errors.Is(err, ErrAlreadyEncrypted):
		c.Action, c.Reason = ActionSkip, err.Error()
		return c, nil
	case IsBroken(err):
		c.Action, c.Reason = ActionBroken, err.Error()
		return c, nil
	case err != nil:
		return c, err
	}
	c.Renditions, c.Segments, c.Bytes = p.Renditions(), p.Segments, p.Bytes
	return c, nil
}

// choosePlaylist picks a title's top playlist: master.m3u8, else its only
// playlist, else the only one of several that is a master playlist. A
// reason is returned when there is none to pick.
func choosePlaylist(ctx context.Context, store storage.Store, t *title) (string, string, error) {
	switch len(t.playlists) {
	case 0:
		return "", fmt.Sprintf("no playlist under %s", t.dir), nil
	case 1:
		return t.playlists[0], "", nil
	}
	if m := t.dir + "master.m3u8"; slices.Contains(t.playlists, m) {
		return m, "", nil
	}
	var masters []string
	for _, name := range t.playlists {
		rc, err := store.Get(ctx, name)
		if errors.Is(err, storage.ErrNotFound) {
			continue
		}
		if err != nil {
			return "", "", err
		}
		data, err := io.ReadAll(io.LimitReader(rc, playlist.MaxPlaylistBytes))
		rc.Close()
		if err != nil {
			return "", "", err
		}
		if isMaster, err := playlist.Kind(data); err == nil && isMaster {
			masters = append(masters, name)
		}
	}
	if len(masters) == 1 {
		return masters[0], "", nil
	}
	return "", fmt.Sprintf("%d playlists under %s and no single master among them (name it master.m3u8)", len(t.playlists), t.dir), nil
}

// scanPrefix lists a prefix once, as a stream, and hands each title to
// add once its last object has gone by. Titles at or before after are
// passed over without being collected.
func scanPrefix(ctx context.Context, store storage.Store, prefix, after string, add func(*title) error) error {
	prefix = strings.TrimSuffix(prefix, "/") + "/"
	var cur *title
	err := store.List(ctx, prefix, func(o storage.ObjectInfo) error {
		rest := o.Name[len(prefix):]
		video, _, ok := strings.Cut(rest, "/")
		if !ok {
			return nil // an object directly under the prefix belongs to no title
		}
		if cur == nil || cur.video != video {
			if cur != nil {
				if err := add(cur); err != nil {
					return err
				}
			}
			cur = &title{video: video, dir: prefix + video + "/"}
			if err := ids.ValidateVideoID(video); err != nil {
				cur.invalid = fmt.Sprintf("directory %s is not a valid video id: %v", cur.dir, err)
			}
		}
		if strings.EqualFold(path.Ext(o.Name), ".m3u8") && (after == "" || cur.dir > after) {
			cur.playlists = append(cur.playlists, o.Name)
		}
		return nil
	})
	if err == nil && cur != nil {
		err = add(cur)
	}
	if err != nil {
		return fmt.Errorf("backfill: scan %s: %w", prefix, err)
	}
	return nil
}

// eachListedTitle lists {legacyPrefix}/{video}/ for each video, in byte
// order of those directories, a chunk at a time, and hands the titles to
// add in that order.
func eachListedTitle(ctx context.Context, store storage.Store, legacyPrefix string, videoIDs []string, do DiscoverOptions,
	add func(*title) error) error {
	base := strings.TrimSuffix(legacyPrefix, "/") + "/"
	titles := make([]*title, 0, len(videoIDs))
	for _, v := range videoIDs {
		if t := (&title{video: v, dir: base + v + "/"}); do.After == "" || t.dir > do.After {
			titles = append(titles, t)
		}
	}
	// "a-b/" sorts before "a/": the directories' order, not the ids'.
	slices.SortFunc(titles, func(a, b *title) int { return strings.Compare(a.dir, b.dir) })
	for part := range slices.Chunk(titles, do.Chunk) {
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(do.Parallel)
		for _, t := range part {
			g.Go(func() error {
				return store.List(gctx, t.dir, func(o storage.ObjectInfo) error {
					if strings.EqualFold(path.Ext(o.Name), ".m3u8") {
						t.playlists = append(t.playlists, o.Name)
					}
					return nil
				})
			})
		}
		if err := g.Wait(); err != nil {
			return fmt.Errorf("backfill: list legacy titles: %w", err)
		}
		for _, t := range part {
			if err := add(t); err != nil {
				return err
			}
		}
	}
	return nil
}

// ParseIDs reads one video id per line (blank lines and lines starting
// with '#' are ignored) and returns them sorted and distinct. Every invalid
// id is reported, with its line.
func ParseIDs(r io.Reader) ([]string, error) {
	data, err := io.ReadAll(io.LimitReader(r, 256<<20))
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var (
		out  []string
		errs []error
	)
	for n, line := range bytes.Split(data, []byte("\n")) {
		id := strings.TrimSpace(string(line))
		if id == "" || strings.HasPrefix(id, "#") {
			continue
		}
		if err := ids.ValidateVideoID(id); err != nil {
			errs = append(errs, fmt.Errorf("line %d: %w", n+1, err))
			continue
		}
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	slices.Sort(out)
	return out, nil
}

// Summary totals candidates by action.
type Summary struct {
	Titles   map[string]int `json:"titles"`
	Segments int            `json:"segments"`
	Bytes    int64          `json:"bytes"`
}

// Summarise totals what a run would convert.
func Summarise(cands []Candidate) Summary {
	s := Summary{Titles: map[string]int{}}
	for _, c := range cands {
		s.add(c)
	}
	return s
}

func (s *Summary) add(c Candidate) {
	s.Titles[c.Action]++
	if c.Converts() {
		s.Segments += c.Segments
		s.Bytes += c.Bytes
	}
}
