package backfill

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"
	"sync"

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
// have a key are skipped (unless re-keyed).
func Discover(ctx context.Context, store storage.Store, db *catalog.DB, opts RunOptions, videoIDs []string) ([]Candidate, error) {
	var titles []*title
	var err error
	switch {
	case opts.Prefix != "":
		titles, err = scanPrefix(ctx, store, opts.Prefix)
	case opts.FromDB:
		videoIDs, err = db.KnownVideos(ctx, opts.Rekey)
		if err == nil {
			titles, err = listTitles(ctx, store, opts.LegacyPrefix, videoIDs)
		}
	default:
		titles, err = listTitles(ctx, store, opts.LegacyPrefix, videoIDs)
	}
	if err != nil {
		return nil, err
	}
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
	g.SetLimit(8)
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
	slices.SortFunc(out, func(a, b Candidate) int { return strings.Compare(a.VideoID, b.VideoID) })
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

// scanPrefix lists a prefix once and groups its objects by title.
func scanPrefix(ctx context.Context, store storage.Store, prefix string) ([]*title, error) {
	prefix = strings.TrimSuffix(prefix, "/") + "/"
	byVideo := map[string]*title{}
	var order []*title
	err := store.List(ctx, prefix, func(o storage.ObjectInfo) error {
		rest := o.Name[len(prefix):]
		video, _, ok := strings.Cut(rest, "/")
		if !ok {
			return nil // an object directly under the prefix belongs to no title
		}
		t := byVideo[video]
		if t == nil {
			t = &title{video: video, dir: prefix + video + "/"}
			if err := ids.ValidateVideoID(video); err != nil {
				t.invalid = fmt.Sprintf("directory %s is not a valid video id: %v", t.dir, err)
			}
			byVideo[video] = t
			order = append(order, t)
		}
		if strings.EqualFold(path.Ext(o.Name), ".m3u8") {
			t.playlists = append(t.playlists, o.Name)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("backfill: scan %s: %w", prefix, err)
	}
	return order, nil
}

// listTitles lists {legacyPrefix}/{video}/ for each video.
func listTitles(ctx context.Context, store storage.Store, legacyPrefix string, videoIDs []string) ([]*title, error) {
	out := make([]*title, len(videoIDs))
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for i, v := range videoIDs {
		g.Go(func() error {
			t := &title{video: v, dir: strings.TrimSuffix(legacyPrefix, "/") + "/" + v + "/"}
			err := store.List(gctx, t.dir, func(o storage.ObjectInfo) error {
				if strings.EqualFold(path.Ext(o.Name), ".m3u8") {
					t.playlists = append(t.playlists, o.Name)
				}
				return nil
			})
			mu.Lock()
			out[i] = t
			mu.Unlock()
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, fmt.Errorf("backfill: list legacy titles: %w", err)
	}
	return out, nil
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
		s.Titles[c.Action]++
		if c.Converts() {
			s.Segments += c.Segments
			s.Bytes += c.Bytes
		}
	}
	return s
}
