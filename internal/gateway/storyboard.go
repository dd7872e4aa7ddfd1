package gateway

import (
	"errors"
	"math"
	"net/http"
	"path"
	"strconv"
	"time"

	"github.com/hlsvault/hlsvault/internal/catalog"
	"github.com/hlsvault/hlsvault/internal/ids"
	"github.com/hlsvault/hlsvault/internal/storage"
	"github.com/hlsvault/hlsvault/internal/storyboard"
)

// serveStoryboard serves GET /v1/videos/{video}/storyboard.vtt (?v= a
// version, default the current one): the version's WebVTT thumbnail track
// with each sprite's name replaced by a signed, session-bound gateway URL
// (/v1/segments/…, as segments have), so that sprites are fetched only by
// the player the token admitted, for as long as its session lives. HLS has
// no tag for a storyboard: the master playlist does not name it, and
// players are given this URL beside the master's (as Mux does).
//
// The sprite URLs expire SegmentURLTTL plus the title's duration after
// they are issued (a scrub may ask for any sprite at any time of the
// viewing), and every fetch checks the session. They are always gateway
// URLs, on Azure too (a redirect to a short SAS): a few requests per
// viewing, never worth an unrevocable direct SAS.
func (s *Server) serveStoryboard(w http.ResponseWriter, r *http.Request) {
	video := r.PathValue("video")
	if ids.ValidateVideoID(video) != nil {
		s.fail(w, r, http.StatusNotFound, "not_found", "no such video")
		return
	}
	a, ok := s.authorize(w, r, video)
	if !ok || !s.admit(w, r, a, true) {
		return
	}
	ctx := r.Context()
	var (
		v   catalog.Version
		err error
	)
	if vs := r.URL.Query().Get("v"); vs != "" {
		n, perr := strconv.Atoi(vs)
		if perr != nil || n < 1 {
			s.fail(w, r, http.StatusNotFound, "not_found", "no such version")
			return
		}
		v, err = s.db.VersionWithKey(ctx, video, n)
	} else {
		v, err = s.db.CurrentVersion(ctx, video)
	}
	if errors.Is(err, catalog.ErrNotFound) {
		s.fail(w, r, http.StatusNotFound, "not_found", "no published version of this video")
		return
	}
	if err != nil {
		s.internal(w, r, "version", err)
		return
	}
	sb, ok := v.Storyboard()
	if !ok {
		s.fail(w, r, http.StatusNotFound, "not_found", "this version has no storyboard")
		return
	}
	data, err := s.readObject(ctx, sb.Playlist)
	if errors.Is(err, storage.ErrNotFound) {
		s.fail(w, r, http.StatusNotFound, "not_found", "this version has no storyboard")
		return
	}
	if err != nil {
		s.internal(w, r, "storyboard track", err)
		return
	}
	g := int64(s.urlGranularity() / time.Second)
	issued := s.now().Unix() / g * g
	exp := time.Unix(issued+int64(s.cfg.SegmentURLTTL/time.Second)+int64(math.Ceil(sb.Duration)), 0)
	sess := s.urls.sessionSuffix(a.claims.Subject, a.claims.Session, a.claims.Expires)
	dir := path.Dir(sb.Playlist) + "/"
	out, err := storyboard.Rewrite(data, func(name string) (string, bool) {
		if i, ok := storyboard.SpriteIndex(name); !ok || i >= sb.Segments {
			return "", false
		}
		u, err := s.urls.sign(dir+name, exp)
		return u + sess, err == nil
	})
	if err != nil {
		s.internal(w, r, "storyboard rewrite", err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/vtt; charset=utf-8")
	// The body carries short-lived, session-bound URLs.
	h.Set("Cache-Control", "private, no-store")
	h.Set("Content-Length", strconv.Itoa(len(out)))
	_, _ = w.Write(out)
}
