package backfill

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"time"

	"github.com/hlsvault/hlsvault/internal/catalog"
	"github.com/hlsvault/hlsvault/internal/layout"
	"github.com/hlsvault/hlsvault/internal/packager"
	"github.com/hlsvault/hlsvault/internal/playlist"
	"github.com/hlsvault/hlsvault/internal/storage"
)

// Converter re-encrypts titles: it streams every segment and init section
// of a Plan through the packager into the version being written, proves
// that each new object decrypts to the bytes it came from, and writes the
// playlists. It never writes outside the version's prefix and never
// modifies or deletes a source object.
type Converter struct {
	// Store holds the sources; the new objects go where the Version puts
	// them.
	Store storage.Store
	// Concurrency bounds the objects in flight for one title (default 16).
	// Memory is a few working buffers per object in flight, whatever the
	// title's length.
	Concurrency int
	// MaxInFlight bounds the objects in flight across every title being
	// converted at once through this Converter (default 2 × Concurrency).
	MaxInFlight int

	slots slots
}

// Result is what a conversion stored.
type Result struct {
	Master     string // object name of the new master playlist
	Renditions []catalog.Rendition
	Duration   float64
	// PlainBytes were re-encrypted into EncryptedBytes; every one of the
	// Objects (segments and init sections, Segments of them media
	// segments) was read back, decrypted and matched its source's SHA-256.
	PlainBytes     int64
	EncryptedBytes int64
	Segments       int
	Objects        int
	Verified       int
	// EncryptTime is the time to stream every object through AES into
	// storage and verify it (the two overlap); TotalTime adds the listing
	// check and the playlists.
	EncryptTime, TotalTime time.Duration
}

type convTask struct {
	obj   *object
	name  string  // relative to the version prefix
	start float64 // media start of the segment (for an init section, of the one it starts at)
	out   packager.Stored
	media *taskMedia // reads the plaintext on its way (media.go); nil: not read
}

// titleTasks are the objects a conversion writes, and for each segment its
// task and the init section task that starts at it (if any).
type titleTasks struct {
	all     []*convTask
	segment map[*object]*convTask
	init    map[*object]*convTask // segment → init section starting there
}

func (c *Converter) concurrency() int {
	if c.Concurrency <= 0 {
		return defaultConcurrency
	}
	return c.Concurrency
}

// Convert re-encrypts the plan's objects into v, verifies them, and writes
// the media playlists and the master. Nothing is published: the caller
// does that, with v's wrapped keys, once Convert has returned without
// error.
func (c *Converter) Convert(ctx context.Context, p *Plan, v *packager.Version) (*Result, error) {
	start := time.Now()
	tt, err := p.tasks(v.PeriodOf)
	if err != nil {
		return nil, err
	}
	tasks := tt.all
	// Init sections before the segments read with them (media.go), each
	// object verified as soon as it is stored.
	mp := newMediaPlan(p, tt)
	for _, phase := range mp.phases(tasks) {
		if err := c.copyAll(ctx, v, p.Source, phase); err != nil {
			return nil, err
		}
	}
	encrypted := time.Since(start)
	verified, err := c.checkListing(ctx, v, append(slices.Clip(tasks), mp.storedIFrames()...))
	if err != nil {
		return nil, err
	}

	res := &Result{Segments: p.Segments, Objects: len(tasks), Verified: verified}
	for _, t := range tasks {
		res.PlainBytes += t.out.PlainSize
		res.EncryptedBytes += t.out.Size
	}
	if err := c.writePlaylists(ctx, p, v, tt, mp, res); err != nil {
		return nil, err
	}
	res.EncryptTime, res.TotalTime = encrypted, time.Since(start)
	return res, nil
}

// tasks lists the objects to write, rendition by rendition, in playlist
// order, each with its media start (as the new playlist's EXTINF values
// will place it; periodOf gives its key period). An init section is
// written once per key period it serves: where a segment starts a new key
// period while the previous init section still applies, a copy of that
// section under the new period's key starts at the segment (a new
// EXT-X-MAP after the new EXT-X-KEY), because RFC 8216 section 4.3.2.5
// decrypts an init section with the key in effect at its EXT-X-MAP, and
// one section under one key must not serve two periods. Init sections are
// numbered in order of appearance.
func (p *Plan) tasks(periodOf func(start float64) (int, error)) (*titleTasks, error) {
	tt := &titleTasks{segment: map[*object]*convTask{}, init: map[*object]*convTask{}}
	for _, r := range p.renditions {
		durations := make([]float64, len(r.segments))
		for i, s := range r.segments {
			durations[i] = s.duration
		}
		starts, err := playlist.Starts(durations)
		if err != nil {
			return nil, broken("media playlist %s cannot be rewritten: %v", r.legacy, err)
		}
		var (
			cur       *object // the init section in effect
			curPeriod int
			inits     int
		)
		for i := range r.segments {
			s := &r.segments[i]
			period, err := periodOf(starts[i])
			if err != nil {
				return nil, fmt.Errorf("backfill: %w", err)
			}
			if s.init >= 0 {
				cur = &r.inits[s.init]
			}
			if cur != nil && (s.init >= 0 || period != curPeriod) {
				t := &convTask{obj: cur, name: r.name + "/" + layout.InitName(inits, path.Ext(cur.dest)), start: starts[i]}
				tt.all, tt.init[&s.obj] = append(tt.all, t), t
				curPeriod = period
				inits++
			}
			t := &convTask{obj: &s.obj, name: r.name + "/" + s.obj.dest, start: starts[i]}
			tt.all, tt.segment[&s.obj] = append(tt.all, t), t
		}
	}
	return tt, nil
}

// checkListing proves that the prefix holds exactly the objects copyAll
// stored and verified, at their sizes. It returns how many objects were
// verified.
func (c *Converter) checkListing(ctx context.Context, v *packager.Version, tasks []*convTask) (int, error) {
	want := make(map[string]int64, len(tasks))
	for _, t := range tasks {
		want[t.out.Name] = t.out.Size
	}
	prefix := v.Prefix()
	n := 0
	if err := c.Store.List(ctx, prefix, func(o storage.ObjectInfo) error {
		n++
		if size, ok := want[o.Name]; !ok || size != o.Size {
			return fmt.Errorf("backfill: verification failed: unexpected object %s (%d bytes) under %s", o.Name, o.Size, prefix)
		}
		return nil
	}); err != nil {
		return 0, err
	}
	if n != len(tasks) {
		return 0, fmt.Errorf("backfill: verification failed: %d objects under %s, expected %d", n, prefix, len(tasks))
	}
	return len(tasks), nil
}

// put streams one source object (or range) into the version; the packager
// decrypts a re-key's source, hashes the plaintext and encrypts it.
func (c *Converter) put(ctx context.Context, v *packager.Version, src Source, t *convTask) error {
	o := t.obj
	var (
		rc  io.ReadCloser
		err error
	)
	if o.length < 0 {
		rc, err = c.Store.Get(ctx, o.src)
	} else {
		rc, err = c.Store.GetRange(ctx, o.src, o.offset, o.length)
	}
	if errors.Is(err, storage.ErrNotFound) {
		return broken("%s: object %s is missing", o.what, o.src)
	}
	if err != nil {
		return fmt.Errorf("backfill: read %s: %w", o.src, err)
	}
	defer rc.Close()
	obj := packager.Object{Name: t.name, Body: rc, Size: o.size, SourceSize: o.srcSize, Start: t.start,
		Check: func(plain io.Reader) io.Reader {
			var r io.Reader = &lengthChecker{r: plain, want: o.size, what: o.what, src: o.src}
			if t.media != nil {
				r = t.media.tee(r)
			}
			return r
		}}
	if o.srcIV != nil {
		k, ok := src.Keys[o.srcKey]
		if !ok {
			return fmt.Errorf("backfill: %s is encrypted but the plan has no key %s", o.what, o.srcKey)
		}
		obj.SourceKey, obj.SourceIV = &k, o.srcIV
	}
	st, err := v.Put(ctx, obj)
	if err != nil {
		return c.putError(o, t, err)
	}
	t.out = st
	if t.media != nil {
		return t.media.done(ctx, v)
	}
	return nil
}

// putError classifies a failure to read, encrypt or store one object.
func (c *Converter) putError(o *object, t *convTask, err error) error {
	var b *BrokenError
	if errors.As(err, &b) {
		return b
	}
	if errors.Is(err, packager.ErrSourceKey) {
		return broken("%s: %s does not decrypt with the version's key: %v", o.what, o.src, err)
	}
	return fmt.Errorf("backfill: store %s: %w", t.name, err)
}

// lengthChecker checks the plaintext's length: a source that ends early or
// runs long is a broken title, never a short segment.
type lengthChecker struct {
	r    io.Reader
	n    int64
	want int64 // -1: unknown
	what string
	src  string
}

func (h *lengthChecker) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	h.n += int64(n)
	if h.want >= 0 && h.n > h.want {
		return n, broken("%s: object %s is longer than the %d bytes expected", h.what, h.src, h.want)
	}
	if err == io.EOF {
		if h.want >= 0 && h.n != h.want {
			return n, broken("%s: object %s ended after %d of %d bytes", h.what, h.src, h.n, h.want)
		}
		if h.n == 0 {
			return n, broken("%s: object %s is a zero-length object", h.what, h.src)
		}
	}
	return n, err
}
