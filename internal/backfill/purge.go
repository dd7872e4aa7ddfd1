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

// PurgeLegacyLoop runs PurgeLegacy every interval until ctx is done.
func PurgeLegacyLoop(ctx context.Context, db *catalog.DB, store storage.Store, grace, interval time.Duration, log *slog.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		for {
			res, err := PurgeLegacy(ctx, db, store, grace, 100, log)
			if err != nil {
				if ctx.Err() == nil && log != nil {
					log.Error("legacy purge", "err", err)
				}
				break
			}
			if res.Titles < 100 {
				break
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
