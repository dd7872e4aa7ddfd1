package backfill

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"strings"
	"time"

	"github.com/hlsvault/hlsvault/internal/catalog"
	"github.com/hlsvault/hlsvault/internal/storage"
)

// PurgeResult counts what PurgeLegacy removed.
type PurgeResult struct {
	Titles  int
	Objects int
	Kept    int // objects outside the title's directory, left alone
}

// PurgeLegacy is the legacy part of the grace-period garbage collection:
// for at most limit titles re-encrypted more than grace ago whose new
// version is still current (or replaced by a newer one) and that no run
// with --keep-legacy listed, it removes the legacy objects the title's
// playlists reference, and the playlists. Only objects inside the title's
// own legacy directory are removed: a segment that a playlist references
// elsewhere may be shared with another title. Nothing else ever deletes a
// legacy object.
func PurgeLegacy(ctx context.Context, db *catalog.DB, store storage.Store, grace time.Duration, limit int, log *slog.Logger) (PurgeResult, error) {
	var res PurgeResult
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if limit <= 0 {
		limit = 100
	}
	titles, err := db.LegacyGarbage(ctx, time.Now().Add(-grace), limit)
	if err != nil {
		return res, err
	}
	for _, t := range titles {
		var opts RunOptions
		_ = json.Unmarshal(t.Options, &opts)
		p, err := PlanTitle(ctx, store, Source{Playlist: t.Legacy, URLMap: opts.URLMap})
		switch {
		case IsBroken(err) || errors.Is(err, ErrAlreadyEncrypted):
			// Changed since (or partly removed already): remove only what
			// can still be read, which is at least the top playlist.
			log.Warn("legacy title no longer plans; removing its playlist only", "video", t.VideoID, "reason", err)
			p = &Plan{}
		case err != nil:
			return res, err
		}
		dir := path.Dir(t.Legacy) + "/"
		names := []string{t.Legacy}
		for _, r := range p.renditions {
			names = append(names, r.legacy)
			for _, s := range r.segments {
				names = append(names, s.obj.src)
			}
			for _, o := range r.inits {
				names = append(names, o.src)
			}
		}
		seen := map[string]bool{}
		n := 0
		for _, name := range names {
			if seen[name] {
				continue
			}
			seen[name] = true
			if !strings.HasPrefix(name, dir) {
				res.Kept++
				continue
			}
			if err := store.Delete(ctx, name); err != nil {
				return res, fmt.Errorf("backfill: purge legacy %s: %w", name, err)
			}
			n++
		}
		if err := db.MarkLegacyPurged(ctx, t.ItemID); err != nil {
			return res, err
		}
		res.Titles++
		res.Objects += n
		log.Info("legacy objects removed", "video", t.VideoID, "legacy", t.Legacy, "objects", n, "converted", t.Finished, "version", t.Version)
	}
	return res, nil
}

// Purger is PurgeLegacy as the legacy step of the garbage collector
// (gc.LegacyPurger), which runs it under the collector's lock.
type Purger struct {
	db    *catalog.DB
	store storage.Store
	log   *slog.Logger
}

// NewPurger builds a Purger.
func NewPurger(db *catalog.DB, store storage.Store, log *slog.Logger) *Purger {
	return &Purger{db: db, store: store, log: log}
}

// PurgeLegacy runs PurgeLegacy for at most limit titles.
func (p *Purger) PurgeLegacy(ctx context.Context, grace time.Duration, limit int) (titles, objects int, err error) {
	res, err := PurgeLegacy(ctx, p.db, p.store, grace, limit, p.log)
	return res.Titles, res.Objects, err
}
