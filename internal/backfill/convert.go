package backfill

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/hlsvault/hlsvault/internal/catalog"
	"github.com/hlsvault/hlsvault/internal/keys"
	"github.com/hlsvault/hlsvault/internal/layout"
	"github.com/hlsvault/hlsvault/internal/playlist"
	"github.com/hlsvault/hlsvault/internal/segcrypt"
	"github.com/hlsvault/hlsvault/internal/storage"
)

// Converter re-encrypts titles: it streams every segment and init section
// of a Plan through AES-128-CBC into a version prefix, proves that each new
// object decrypts to the bytes it came from, and writes the playlists. It
// never writes outside the prefix it is given and never modifies or deletes
// a source object.
type Converter struct {
	Store storage.Store
	// Concurrency bounds the objects in flight for one title (default 8).
	// Memory is a few working buffers per object in flight, whatever the
	// title's length.
	Concurrency int
	// BufferMax: an object whose ciphertext is at most this size is
	// encrypted into a pooled buffer before it is stored, as the pipeline
	// does with its segments, so that the store gets a body it can send in
	// one request and resend on a transient error (Azure: one Put Blob
	// instead of staged blocks). Larger objects stream. 0 means 8 MiB, except
	// on the filesystem store, which streams into its temporary file anyway;
	// negative means never. Either way memory is bounded by Concurrency,
	// never by the title's length.
	BufferMax int64

	// newIV is injected by tests for deterministic playlists.
	newIV func() ([16]byte, error)

	slabsOnce sync.Once
	slabs     chan *[]byte
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
	// storage; TotalTime adds verification and the playlists.
	EncryptTime, TotalTime time.Duration
}

// stored is what one object became.
type stored struct {
	iv    [16]byte
	sum   [sha256.Size]byte // of the plaintext
	plain int64
	enc   int64
}

type convTask struct {
	obj  *object
	dest string // full object name
	out  stored
}

func (c *Converter) concurrency() int {
	if c.Concurrency <= 0 {
		return 8
	}
	return c.Concurrency
}

func (c *Converter) iv() ([16]byte, error) {
	if c.newIV != nil {
		return c.newIV()
	}
	return segcrypt.NewIV()
}

// Convert re-encrypts the plan's objects under ck into prefix (which must
// end in "/"), verifies them, and writes the media playlists and the master
// with keyURI. Nothing is published: the caller does that once Convert has
// returned without error.
func (c *Converter) Convert(ctx context.Context, p *Plan, prefix string, ck keys.ContentKey, keyURI string) (*Result, error) {
	if !strings.HasSuffix(prefix, "/") {
		return nil, fmt.Errorf("backfill: prefix %q does not end in /", prefix)
	}
	start := time.Now()
	tasks, byObj := p.tasks(prefix)
	if err := c.encryptAll(ctx, p.Source, tasks, ck); err != nil {
		return nil, err
	}
	encrypted := time.Since(start)
	verified, err := c.verifyAll(ctx, prefix, tasks, ck)
	if err != nil {
		return nil, err
	}

	res := &Result{Segments: p.Segments, Objects: len(tasks), Verified: verified}
	for _, t := range tasks {
		res.PlainBytes += t.out.plain
		res.EncryptedBytes += t.out.enc
	}
	if err := c.writePlaylists(ctx, p, prefix, keyURI, byObj, res); err != nil {
		return nil, err
	}
	res.EncryptTime, res.TotalTime = encrypted, time.Since(start)
	return res, nil
}

// tasks lists the objects to write under prefix: each rendition's init
// sections, then its segments.
func (p *Plan) tasks(prefix string) ([]*convTask, map[*object]*convTask) {
	var tasks []*convTask
	byObj := map[*object]*convTask{}
	for _, r := range p.renditions {
		for i := range r.inits {
			t := &convTask{obj: &r.inits[i], dest: prefix + r.name + "/" + r.inits[i].dest}
			tasks, byObj[t.obj] = append(tasks, t), t
		}
		for i := range r.segments {
			t := &convTask{obj: &r.segments[i].obj, dest: prefix + r.name + "/" + r.segments[i].obj.dest}
			tasks, byObj[t.obj] = append(tasks, t), t
		}
	}
	return tasks, byObj
}

// encryptAll streams every object through AES-128-CBC into storage, on a
// bounded pool.
func (c *Converter) encryptAll(ctx context.Context, src Source, tasks []*convTask, ck keys.ContentKey) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(c.concurrency())
	for _, t := range tasks {
		g.Go(func() error { return c.put(gctx, src, t, ck) })
	}
	return g.Wait()
}

// verifyAll proves that every new object decrypts to its source's bytes
// and that the prefix holds exactly these objects, at these sizes. It
// returns how many objects were verified.
func (c *Converter) verifyAll(ctx context.Context, prefix string, tasks []*convTask, ck keys.ContentKey) (int, error) {
	var verified atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(c.concurrency())
	for _, t := range tasks {
		g.Go(func() error {
			if err := c.verify(gctx, t, ck); err != nil {
				return err
			}
			verified.Add(1)
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return 0, err
	}
	want := make(map[string]int64, len(tasks))
	for _, t := range tasks {
		want[t.dest] = t.out.enc
	}
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
	return int(verified.Load()), nil
}

// put streams one source object (or range) through AES-128-CBC into dest,
// hashing the plaintext on the way.
func (c *Converter) put(ctx context.Context, src Source, t *convTask, ck keys.ContentKey) error {
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
	var plain io.Reader = rc
	if o.srcIV != nil {
		if src.Key == nil {
			return fmt.Errorf("backfill: %s is encrypted but the plan has no key", o.what)
		}
		if plain, err = segcrypt.NewDecryptReader(rc, src.Key.Bytes(), o.srcIV[:]); err != nil {
			return fmt.Errorf("backfill: %w", err)
		}
	}
	h := &hashingReader{r: plain, want: o.size, what: o.what, src: o.src}
	h.h = sha256.New()
	iv, err := c.iv()
	if err != nil {
		return err
	}
	enc, err := segcrypt.NewEncryptReader(h, ck.Bytes(), iv[:])
	if err != nil {
		return fmt.Errorf("backfill: %w", err)
	}
	size := int64(-1)
	if o.size >= 0 {
		size = segcrypt.EncryptedSize(o.size)
	}
	body := enc
	// Bound of the ciphertext: exact, or for a re-key at most the old
	// ciphertext's size (the plaintext is shorter than it).
	bound := size
	if bound < 0 {
		bound = o.srcSize
	}
	if bound <= c.bufferMax() {
		slab := c.getSlab()
		defer c.putSlab(slab)
		if int64(cap(*slab)) < bound {
			*slab = make([]byte, (bound+1<<16-1)&^(1<<16-1)) // whole 64 KiB, so that slabs get reused
		}
		n, err := readAllInto(enc, (*slab)[:bound])
		if err != nil {
			return c.putError(o, t, err)
		}
		body, size = bytes.NewReader((*slab)[:n]), int64(n)
	}
	err = c.Store.Put(ctx, t.dest, body, size, storage.PutOptions{
		ContentType: layout.ContentType(t.dest), CacheControl: layout.Immutable})
	if err != nil {
		return c.putError(o, t, err)
	}
	if !h.eof {
		return fmt.Errorf("backfill: store %s: the source was not read to its end", t.dest)
	}
	t.out = stored{iv: iv, plain: h.n, enc: segcrypt.EncryptedSize(h.n)}
	copy(t.out.sum[:], h.h.Sum(nil))
	return nil
}

// getSlab returns a buffer for one object. The buffers are kept between
// objects and titles (at most Concurrency of them per Converter), so they
// are allocated once rather than after every garbage collection, as a
// sync.Pool's would be.
func (c *Converter) getSlab() *[]byte {
	c.slabsOnce.Do(func() { c.slabs = make(chan *[]byte, c.concurrency()) })
	select {
	case b := <-c.slabs:
		return b
	default:
		return new([]byte)
	}
}

func (c *Converter) putSlab(b *[]byte) {
	select {
	case c.slabs <- b:
	default:
	}
}

func (c *Converter) bufferMax() int64 {
	switch {
	case c.BufferMax < 0:
		return -1
	case c.BufferMax > 0:
		return c.BufferMax
	}
	if _, ok := c.Store.(*storage.FS); ok {
		return -1
	}
	return 8 << 20
}

// readAllInto reads r to its end into b, which must be large enough.
func readAllInto(r io.Reader, b []byte) (int, error) {
	n, err := io.ReadFull(r, b)
	switch err {
	case io.EOF, io.ErrUnexpectedEOF:
		return n, nil
	case nil:
		var one [1]byte
		for {
			m, err := r.Read(one[:])
			switch {
			case m > 0:
				return n, errors.New("the ciphertext is longer than expected")
			case err == io.EOF:
				return n, nil
			case err != nil:
				return n, err
			}
		}
	}
	return n, err
}

// putError classifies a failure to read, encrypt or store one object.
func (c *Converter) putError(o *object, t *convTask, err error) error {
	var b *BrokenError
	if errors.As(err, &b) {
		return b
	}
	if errors.Is(err, segcrypt.ErrBadPadding) || errors.Is(err, segcrypt.ErrBadLength) {
		return broken("%s: %s does not decrypt with the version's key: %v", o.what, o.src, err)
	}
	return fmt.Errorf("backfill: store %s: %w", t.dest, err)
}

// verify reads dest back, decrypts it and compares it with what was read
// from the source.
func (c *Converter) verify(ctx context.Context, t *convTask, ck keys.ContentKey) error {
	rc, err := c.Store.Get(ctx, t.dest)
	if err != nil {
		return fmt.Errorf("backfill: verify %s: %w", t.dest, err)
	}
	defer rc.Close()
	cr := &countReader{r: rc}
	dec, err := segcrypt.NewDecryptReader(cr, ck.Bytes(), t.out.iv[:])
	if err != nil {
		return fmt.Errorf("backfill: verify: %w", err)
	}
	h := sha256.New()
	n, err := io.Copy(h, dec)
	if err != nil {
		return fmt.Errorf("backfill: verification failed: %s does not decrypt: %w", t.dest, err)
	}
	var sum [sha256.Size]byte
	copy(sum[:], h.Sum(nil))
	if n != t.out.plain || sum != t.out.sum || cr.n != t.out.enc {
		return fmt.Errorf("backfill: verification failed: %s (%d bytes) decrypts to %d bytes with SHA-256 %x; %s had %d bytes with SHA-256 %x",
			t.dest, cr.n, n, sum, t.obj.src, t.out.plain, t.out.sum)
	}
	return nil
}

// writePlaylists writes each rendition's media playlist, then the master.
func (c *Converter) writePlaylists(ctx context.Context, p *Plan, prefix, keyURI string, byObj map[*object]*convTask, res *Result) error {
	type measured struct{ peak, avg int64 }
	bw := map[*renditionPlan]measured{}
	totals := map[*renditionPlan]float64{}
	for _, r := range p.renditions {
		m := playlist.Media{KeyURI: keyURI, Independent: r.independent}
		var segs []playlist.Segment
		for i := range r.segments {
			s := &r.segments[i]
			out := byObj[&s.obj].out
			es := playlist.Segment{URI: s.obj.dest, Duration: s.duration, Size: out.enc, IV: out.iv, Discontinuity: s.discontinuity}
			if s.init >= 0 {
				in := &r.inits[s.init]
				es.Init = &playlist.Init{URI: in.dest, IV: byObj[in].out.iv}
			}
			m.Segments = append(m.Segments, es)
			segs = append(segs, playlist.Segment{URI: s.obj.dest, Duration: s.duration, Size: out.enc})
			totals[r] += s.duration
		}
		var buf bytes.Buffer
		if err := playlist.WriteMedia(&buf, m); err != nil {
			return broken("media playlist %s cannot be rewritten: %v", r.legacy, err)
		}
		// What players will read back must list every segment.
		back, err := playlist.ParseMedia(bytes.NewReader(buf.Bytes()))
		if err != nil || len(back.Segments) != len(r.segments) || !back.Ended {
			return fmt.Errorf("backfill: the new playlist of %s does not read back (%v)", r.name, err)
		}
		if err := c.putBytes(ctx, layout.MediaPlaylistName(prefix, r.name), buf.Bytes()); err != nil {
			return err
		}
		peak, avg := playlist.Bandwidth(segs)
		bw[r] = measured{peak, avg}
	}

	var master playlist.Master
	if p.master == nil {
		r := p.renditions[0]
		master.Variants = []playlist.Variant{{URI: layout.MediaPlaylistURI(r.name), Bandwidth: max(bw[r].peak, 1), AverageBandwidth: bw[r].avg}}
		res.Renditions = append(res.Renditions, catalog.Rendition{Name: r.name, Playlist: layout.MediaPlaylistName(prefix, r.name),
			Bandwidth: bw[r].peak, AverageBandwidth: bw[r].avg, Segments: len(r.segments), Duration: totals[r]})
		res.Duration = totals[r]
	} else {
		pl := &planner{store: c.Store, src: p.Source}
		lm := p.master
		master.Independent = lm.Independent
		groups := map[string][]*renditionPlan{} // group id → renditions with a URI
		written := map[string]bool{}
		for _, lmed := range lm.Media {
			if lmed.Type == "CLOSED-CAPTIONS" {
				continue // grafov cannot write INSTREAM-ID; see the README
			}
			mm := lmed.Alternative
			if mm.URI != "" {
				name, err := pl.resolve(p.Source.Playlist, mm.URI)
				if err != nil {
					return err
				}
				r := p.byLegacy[name]
				mm.URI = layout.MediaPlaylistURI(r.name)
				groups[mm.GroupID] = append(groups[mm.GroupID], r)
			}
			written[mm.GroupID] = true
			master.Alternatives = append(master.Alternatives, mm)
		}
		for _, v := range lm.Variants {
			name, err := pl.resolve(p.Source.Playlist, v.URI)
			if err != nil {
				return err
			}
			r := p.byLegacy[name]
			m := bw[r]
			// A variant plays its alternate audio alongside: count the
			// heaviest rendition of its group.
			var extra measured
			for _, a := range groups[v.Audio] {
				if a != r {
					extra.peak, extra.avg = max(extra.peak, bw[a].peak), max(extra.avg, bw[a].avg)
				}
			}
			peak := max(v.Bandwidth, m.peak+extra.peak, 1)
			mv := playlist.Variant{
				URI: layout.MediaPlaylistURI(r.name), Bandwidth: peak, AverageBandwidth: min(m.avg+extra.avg, peak),
				Codecs: v.Codecs, Width: v.Width, Height: v.Height, FrameRate: v.FrameRate,
			}
			if written[v.Audio] {
				mv.Audio = v.Audio
			}
			if written[v.Video] {
				mv.Video = v.Video
			}
			if written[v.Subtitles] {
				mv.Subtitles = v.Subtitles
			}
			master.Variants = append(master.Variants, mv)
			res.Renditions = append(res.Renditions, catalog.Rendition{Name: r.name, Playlist: layout.MediaPlaylistName(prefix, r.name),
				Width: v.Width, Height: v.Height, Bandwidth: mv.Bandwidth, AverageBandwidth: mv.AverageBandwidth, Codecs: v.Codecs,
				FrameRate: v.FrameRate, Segments: len(r.segments), Duration: totals[r]})
			res.Duration = max(res.Duration, totals[r])
		}
	}
	var buf bytes.Buffer
	if err := playlist.WriteMaster(&buf, master); err != nil {
		return broken("master playlist %s cannot be rewritten: %v", p.Source.Playlist, err)
	}
	res.Master = layout.MasterName(prefix)
	return c.putBytes(ctx, res.Master, buf.Bytes())
}

func (c *Converter) putBytes(ctx context.Context, name string, b []byte) error {
	if err := c.Store.Put(ctx, name, bytes.NewReader(b), int64(len(b)),
		storage.PutOptions{ContentType: layout.ContentTypePlaylist, CacheControl: layout.Immutable}); err != nil {
		return fmt.Errorf("backfill: store %s: %w", name, err)
	}
	return nil
}

// hashingReader hashes what it reads and checks the length: a source that
// ends early or runs long is a broken title, never a short segment.
type hashingReader struct {
	r    io.Reader
	h    hash.Hash
	n    int64
	want int64 // -1: unknown
	eof  bool
	what string
	src  string
}

func (h *hashingReader) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	h.n += int64(n)
	h.h.Write(p[:n])
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
		h.eof = true
	}
	return n, err
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
