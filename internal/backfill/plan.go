package backfill

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"path"
	"strings"

	"github.com/hlsvault/hlsvault/internal/keys"
	"github.com/hlsvault/hlsvault/internal/layout"
	"github.com/hlsvault/hlsvault/internal/playlist"
	"github.com/hlsvault/hlsvault/internal/storage"
)

// BrokenError marks a title that cannot be converted as it is: a missing or
// zero-length object, an unparseable playlist, a byte range past the end of
// its object. The item fails at once with the reason; retrying does not
// help until someone repairs the title.
type BrokenError struct{ Reason string }

func (e *BrokenError) Error() string { return e.Reason }

func broken(format string, args ...any) error {
	return &BrokenError{Reason: fmt.Sprintf(format, args...)}
}

// IsBroken reports whether err says the title itself is broken.
func IsBroken(err error) bool {
	var b *BrokenError
	return errors.As(err, &b)
}

// ErrAlreadyEncrypted means a legacy playlist carries an EXT-X-KEY: the
// title is not a legacy plain title and is skipped.
var ErrAlreadyEncrypted = errors.New("already encrypted (the playlist has an EXT-X-KEY)")

// Source is where a title's playlists are and how its segments are
// protected today.
type Source struct {
	// Playlist is the object name of the master playlist, or of the single
	// media playlist of a title without a master.
	Playlist string
	// KeyIDs, when set, says the segments are encrypted now (a re-key of
	// one of our versions, one key per key period): every EXT-X-KEY must
	// name one of them, and Keys, the keys themselves by id, decrypt each
	// segment with the IV of its EXT-X-KEY. Planning needs only KeyIDs;
	// converting needs Keys.
	KeyIDs []string
	Keys   map[string]keys.ContentKey
	// URLMap maps absolute legacy URLs to object names: a URI starting
	// with a key (the longest that matches) has it replaced by the value.
	// Other absolute URLs map to their path.
	URLMap map[string]string
}

// object is one stored resource to re-encrypt: a whole object, a byte
// range of one, and where it goes.
type object struct {
	src    string
	offset int64
	length int64 // -1: the whole object
	// size is the plaintext length, -1 when unknown until decrypted (a
	// re-key: the padding is only seen at the end).
	size    int64
	srcSize int64     // bytes read from the source: the range, or the whole object
	srcIV   *[16]byte // set when the source is encrypted
	srcKey  string    // with srcIV: the id of the source key
	dest    string    // relative to the rendition's directory
	what    string    // for messages: "segment 3 of 720p", "init section 0 of 720p"
}

type segmentPlan struct {
	obj           object
	duration      float64
	discontinuity bool
	init          int // index into renditionPlan.inits starting at this segment, or -1
}

type renditionPlan struct {
	name        string // directory under the version prefix
	legacy      string // legacy media playlist object
	independent bool
	segments    []segmentPlan
	inits       []object
}

// Plan is what re-encrypting one title involves, read from its playlists
// and a listing of its objects; no segment has been read yet.
type Plan struct {
	Source Source
	// master is nil for a title with a single media playlist.
	master     *playlist.LegacyMaster
	renditions []*renditionPlan
	byLegacy   map[string]*renditionPlan
	// trick are the renditions given an I-frame playlist (iframes.go).
	trick map[*renditionPlan]bool
	// Bytes is the plaintext size of what is re-encrypted (for a re-key,
	// the encrypted size, a close upper bound); Segments counts media
	// segments, Objects segments and init sections.
	Bytes    int64
	Segments int
	Objects  int
}

// Renditions lists the renditions' names, as in the new version.
func (p *Plan) Renditions() []string {
	var out []string
	for _, r := range p.renditions {
		out = append(out, r.name)
	}
	return out
}

// planner reads one title's playlists.
type planner struct {
	store storage.Store
	src   Source
	// sizes of the objects under the top playlist's directory, listed once.
	sizes map[string]int64
}

// PlanTitle reads a title's playlists and sizes up its objects. Errors that
// describe the title are BrokenError (or ErrAlreadyEncrypted); others are
// transient (storage unavailable).
func PlanTitle(ctx context.Context, store storage.Store, src Source) (*Plan, error) {
	pl := &planner{store: store, src: src}
	return pl.plan(ctx)
}

func (pl *planner) plan(ctx context.Context) (*Plan, error) {
	if err := storage.ValidateName(pl.src.Playlist); err != nil {
		return nil, broken("playlist name %q is not valid", pl.src.Playlist)
	}
	data, err := pl.readPlaylist(ctx, pl.src.Playlist)
	if err != nil {
		return nil, err
	}
	isMaster, err := playlist.Kind(data)
	if err != nil {
		return nil, broken("playlist %s: %v", pl.src.Playlist, err)
	}
	p := &Plan{Source: pl.src, byLegacy: map[string]*renditionPlan{}}
	names := map[string]bool{}
	add := func(legacy string, single bool) (*renditionPlan, error) {
		if r, ok := p.byLegacy[legacy]; ok {
			return r, nil
		}
		name := renditionName(pl.src.Playlist, legacy, single, names)
		r, err := pl.media(ctx, legacy, name)
		if err != nil {
			return nil, err
		}
		p.byLegacy[legacy] = r
		p.renditions = append(p.renditions, r)
		return r, nil
	}
	if !isMaster {
		if _, err := add(pl.src.Playlist, true); err != nil {
			return nil, err
		}
	} else {
		lm, err := playlist.ParseLegacyMaster(bytes.NewReader(data))
		if err != nil {
			return nil, broken("master playlist %s: %v", pl.src.Playlist, err)
		}
		if len(lm.Variants) == 0 {
			return nil, broken("master playlist %s has no variants", pl.src.Playlist)
		}
		p.master = lm
		for _, v := range lm.Variants {
			name, err := pl.resolve(pl.src.Playlist, v.URI)
			if err != nil {
				return nil, err
			}
			if _, err := add(name, false); err != nil {
				return nil, err
			}
		}
		for _, m := range lm.Media {
			if m.URI == "" || m.Type == "CLOSED-CAPTIONS" {
				continue
			}
			name, err := pl.resolve(pl.src.Playlist, m.URI)
			if err != nil {
				return nil, err
			}
			if _, err := add(name, false); err != nil {
				return nil, err
			}
		}
	}
	if err := pl.chooseTrickPlay(ctx, p); err != nil {
		return nil, err
	}
	for _, r := range p.renditions {
		p.Segments += len(r.segments)
		p.Objects += len(r.segments) + len(r.inits)
		for _, s := range r.segments {
			p.Bytes += s.obj.srcSize
		}
		for _, o := range r.inits {
			p.Bytes += o.srcSize
		}
	}
	return p, nil
}

// readPlaylist reads a playlist object, bounded like the playlist parsers.
func (pl *planner) readPlaylist(ctx context.Context, name string) ([]byte, error) {
	rc, err := pl.store.Get(ctx, name)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, broken("playlist %s is missing", name)
	}
	if err != nil {
		return nil, fmt.Errorf("backfill: read %s: %w", name, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, playlist.MaxPlaylistBytes+1))
	if err != nil {
		return nil, fmt.Errorf("backfill: read %s: %w", name, err)
	}
	if len(data) > playlist.MaxPlaylistBytes {
		return nil, broken("playlist %s is larger than %d bytes", name, playlist.MaxPlaylistBytes)
	}
	if len(data) == 0 {
		return nil, broken("playlist %s is a zero-length object", name)
	}
	return data, nil
}

// genericStems are playlist names that say nothing about the rendition.
var genericStems = map[string]bool{"index": true, "playlist": true, "prog_index": true, "master": true, "media": true,
	"chunklist": true, "stream": true, "main": true}

// renditionName derives a short, safe, unique directory name for a
// rendition from its legacy playlist's name relative to the title: e.g.
// "720p/index.m3u8" → "720p", "stream_1.m3u8" → "stream_1",
// "audio/en/index.m3u8" → "audio_en"; a title's single playlist is "main".
func renditionName(top, legacy string, single bool, used map[string]bool) string {
	base := "main"
	if !single {
		rel := legacy
		if dir := path.Dir(top) + "/"; strings.HasPrefix(legacy, dir) {
			rel = legacy[len(dir):]
		}
		rel = strings.TrimSuffix(rel, path.Ext(rel))
		parts := strings.Split(rel, "/")
		if len(parts) > 1 && genericStems[strings.ToLower(parts[len(parts)-1])] {
			parts = parts[:len(parts)-1]
		}
		var b strings.Builder
		for _, c := range strings.Join(parts, "_") {
			switch {
			case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
				b.WriteRune(c)
			default:
				b.WriteByte('_')
			}
		}
		if s := strings.Trim(b.String(), "_"); layout.ValidRendition(s) {
			base = s
		} else {
			base = "r"
		}
	}
	name := base
	for i := 2; used[name]; i++ {
		name = fmt.Sprintf("%s_%d", base, i)
	}
	used[name] = true
	return name
}

// resolve turns a URI of a playlist stored at base into an object name:
// relative references against base's directory, absolute paths from the
// store's root, absolute URLs through URLMap or else by their path. Query
// and fragment are dropped (signed legacy URLs carry tokens there).
func (pl *planner) resolve(base, uri string) (string, error) {
	u, err := url.Parse(uri)
	if err != nil || uri == "" {
		return "", broken("playlist %s: URI %q does not parse", base, uri)
	}
	var name string
	switch {
	case u.IsAbs() || u.Host != "":
		best := ""
		for from := range pl.src.URLMap {
			if strings.HasPrefix(uri, from) && len(from) > len(best) {
				best = from
			}
		}
		if best != "" {
			rest, _, _ := strings.Cut(uri[len(best):], "?")
			rest, _, _ = strings.Cut(rest, "#")
			p, err := url.PathUnescape(rest)
			if err != nil {
				return "", broken("playlist %s: URI %q does not parse", base, uri)
			}
			name = path.Join(pl.src.URLMap[best], p)
		}
		if name == "" {
			if u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "" {
				return "", broken("playlist %s: URI %q has an unsupported scheme", base, uri)
			}
			name = strings.TrimPrefix(path.Clean("/"+u.Path), "/")
		}
	case strings.HasPrefix(u.Path, "/"):
		name = strings.TrimPrefix(path.Clean(u.Path), "/")
	default:
		name = path.Join(path.Dir(base), u.Path)
	}
	if err := storage.ValidateName(name); err != nil {
		return "", broken("playlist %s: URI %q names no valid object", base, uri)
	}
	return name, nil
}

// size returns an object's size, from one listing of the title's directory
// or, for objects elsewhere, a Stat.
func (pl *planner) size(ctx context.Context, name string) (int64, error) {
	if pl.sizes == nil {
		pl.sizes = map[string]int64{}
		dir := path.Dir(pl.src.Playlist) + "/"
		if dir == "./" {
			dir = ""
		}
		if err := pl.store.List(ctx, dir, func(o storage.ObjectInfo) error {
			pl.sizes[o.Name] = o.Size
			return nil
		}); err != nil {
			pl.sizes = nil
			return 0, fmt.Errorf("backfill: list %s: %w", dir, err)
		}
	}
	if n, ok := pl.sizes[name]; ok {
		return n, nil
	}
	fi, err := pl.store.Stat(ctx, name)
	if errors.Is(err, storage.ErrNotFound) {
		return -1, nil
	}
	if err != nil {
		return 0, fmt.Errorf("backfill: stat %s: %w", name, err)
	}
	pl.sizes[name] = fi.Size
	return fi.Size, nil
}

// media plans one media playlist.
func (pl *planner) media(ctx context.Context, legacy, name string) (*renditionPlan, error) {
	data, err := pl.readPlaylist(ctx, legacy)
	if err != nil {
		return nil, err
	}
	m, err := playlist.ParseMedia(bytes.NewReader(data))
	if err != nil {
		return nil, broken("media playlist %s: %v", legacy, err)
	}
	if !m.Ended {
		return nil, broken("media playlist %s has no EXT-X-ENDLIST (not a VOD playlist)", legacy)
	}
	if len(m.Segments) == 0 {
		return nil, broken("media playlist %s has no segments", legacy)
	}
	tags, err := playlist.MapTags(data)
	if err != nil {
		return nil, broken("media playlist %s: %v", legacy, err)
	}
	r := &renditionPlan{name: name, legacy: legacy, independent: playlist.HasIndependentSegments(data)}
	segExt, initExt := extensions(m, legacy)

	// Init sections: one object per EXT-X-MAP tag (the last, when several
	// precede the same segment).
	startsAt := map[int]int{}
	for _, t := range tags {
		if t.Segment >= len(m.Segments) {
			continue // a trailing EXT-X-MAP with no segment after it
		}
		what := fmt.Sprintf("init section of segment %d of %s", t.Segment, legacy)
		o, err := pl.object(ctx, legacy, t.Map.URI, t.Map.ByteRange, t.Key, what)
		if err != nil {
			return nil, err
		}
		o.dest = layout.InitName(len(r.inits), initExt)
		if i, ok := startsAt[t.Segment]; ok {
			r.inits[i] = o
			continue
		}
		startsAt[t.Segment] = len(r.inits)
		r.inits = append(r.inits, o)
	}
	if len(r.inits) > 0 {
		if _, ok := startsAt[0]; !ok {
			return nil, broken("media playlist %s: EXT-X-MAP after the first segment", legacy)
		}
	}
	for i, s := range m.Segments {
		what := fmt.Sprintf("segment %d of %s", i, legacy)
		o, err := pl.object(ctx, legacy, s.URI, s.ByteRange, s.Key, what)
		if err != nil {
			return nil, err
		}
		o.dest = layout.SegmentName(i, segExt)
		init := -1
		if k, ok := startsAt[i]; ok {
			init = k
		}
		r.segments = append(r.segments, segmentPlan{obj: o, duration: s.Duration, discontinuity: s.Discontinuity, init: init})
	}
	return r, nil
}

// object plans one segment or init section.
func (pl *planner) object(ctx context.Context, playlistName, uri string, br *playlist.ByteRange, key *playlist.Key, what string) (object, error) {
	o := object{length: -1, what: what}
	var err error
	if o.src, err = pl.resolve(playlistName, uri); err != nil {
		return o, err
	}
	if len(pl.src.KeyIDs) == 0 {
		if key != nil {
			return o, fmt.Errorf("%w: %s has METHOD=%s", ErrAlreadyEncrypted, what, key.Method)
		}
	} else {
		if key == nil || key.Method != "AES-128" {
			return o, broken("%s is not encrypted with AES-128", what)
		}
		for _, id := range pl.src.KeyIDs {
			if strings.Contains(key.URI, id) {
				if o.srcKey != "" {
					return o, broken("%s names key URI %q, which names two of the version's keys", what, key.URI)
				}
				o.srcKey = id
			}
		}
		if o.srcKey == "" {
			return o, broken("%s names key URI %q, none of the version's keys %v", what, key.URI, pl.src.KeyIDs)
		}
		iv, err := parseIV(key.IV)
		if err != nil {
			return o, broken("%s: %v", what, err)
		}
		o.srcIV = &iv
	}
	size, err := pl.size(ctx, o.src)
	if err != nil {
		return o, err
	}
	switch {
	case size < 0:
		return o, broken("%s: object %s is missing", what, o.src)
	case size == 0:
		return o, broken("%s: object %s is a zero-length object", what, o.src)
	}
	o.size, o.srcSize = size, size
	if br != nil {
		if br.Length <= 0 || br.Offset < 0 || br.Offset > size-br.Length {
			return o, broken("%s: byte range %d@%d reaches past the end of %s (%d bytes)", what, br.Length, br.Offset, o.src, size)
		}
		o.offset, o.length, o.size, o.srcSize = br.Offset, br.Length, br.Length, br.Length
	}
	if o.srcIV != nil {
		if br != nil {
			return o, broken("%s: an encrypted byte range cannot be re-keyed", what)
		}
		if size%16 != 0 {
			return o, broken("%s: object %s is %d bytes, not a whole number of AES blocks", what, o.src, size)
		}
		o.size = -1 // known once decrypted
	}
	return o, nil
}

// segmentExts are the extensions a new segment may keep.
var segmentExts = map[string]bool{".ts": true, ".m4s": true, ".mp4": true, ".m4a": true, ".m4v": true, ".aac": true,
	".mp3": true, ".ac3": true, ".ec3": true, ".vtt": true, ".webvtt": true, ".cmfv": true, ".cmfa": true}

// extensions chooses the extensions of the new segments and init sections
// from the legacy names: fMP4 segments are ".m4s" and init sections ".mp4"
// even when the legacy title kept both in one ".mp4" file.
func extensions(m *playlist.ParsedMedia, legacy string) (seg, init string) {
	u, _ := url.Parse(m.Segments[0].URI)
	seg = ".ts"
	if u != nil {
		if e := strings.ToLower(path.Ext(u.Path)); segmentExts[e] {
			seg = e
		}
	}
	init = ".mp4"
	if m.Segments[0].Map != nil && (seg == ".mp4" || seg == ".m4v") {
		seg = ".m4s"
	}
	if seg == ".ts" {
		init = ".ts" // an MPEG-TS init section (rare, but legal)
	}
	if seg == ".m4a" || seg == ".cmfa" {
		init = ".m4a"
	}
	return seg, init
}

func parseIV(s string) ([16]byte, error) {
	var iv [16]byte
	h, ok := strings.CutPrefix(strings.ToLower(s), "0x")
	if !ok || len(h) != 32 {
		return iv, fmt.Errorf("IV %q is not 0x and 32 hex digits", s)
	}
	for i := range 16 {
		hi, ok1 := unhex(h[2*i])
		lo, ok2 := unhex(h[2*i+1])
		if !ok1 || !ok2 {
			return iv, fmt.Errorf("IV %q is not hexadecimal", s)
		}
		iv[i] = hi<<4 | lo
	}
	return iv, nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}
