// Package packager is the one place where a content key meets storage: it
// begins a version (fresh content keys, key ids and IVs), encrypts and
// stores each of its objects, writes its playlists, and wraps its keys for
// the catalog. The transcode pipeline, the backfill's re-encryption and the
// gateway's synthetic fixture all publish through it, so there is one
// encryption loop, one set of content types and cache headers (from
// internal/layout) and one playlist writer.
//
// Key periods: a version is encrypted under a sequence of content keys, one
// per Options.KeyPeriod of media time (0: one key for the whole version).
// An object belongs to period floor(start / KeyPeriod), start being the
// media time where its segment starts; each period has its own random key
// and key id, created when its first object is put, so a leaked key exposes
// one period of the title, not all of it. Media playlists name each
// segment's key (a new EXT-X-KEY URI at each boundary), and an init section
// is stored once per period it is used in, under that period's key.
//
// The content keys never leave a Version: they are used to encrypt, to
// verify and to be wrapped, and they are never returned. What a caller gets
// back is object names, sizes, digests, IVs, key ids and the wrapped keys.
package packager

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/zeebo/xxh3"

	"github.com/hlsvault/hlsvault/internal/catalog"
	"github.com/hlsvault/hlsvault/internal/keys"
	"github.com/hlsvault/hlsvault/internal/layout"
	"github.com/hlsvault/hlsvault/internal/playlist"
	"github.com/hlsvault/hlsvault/internal/segcrypt"
	"github.com/hlsvault/hlsvault/internal/storage"
)

var (
	// ErrSourceKey reports a source object that does not decrypt with the
	// key it was said to be under (a re-key of a damaged title).
	ErrSourceKey = errors.New("packager: the source does not decrypt with its key")
	// ErrInvalidPlaylist reports a playlist the writer refuses: the input,
	// not storage, is at fault, and a retry cannot help.
	ErrInvalidPlaylist = errors.New("packager: invalid playlist")
	// ErrVerify reports an object that does not read back as it was put.
	ErrVerify = errors.New("packager: verification failed")
)

// Options tune a Packager. Zero values take the defaults noted.
type Options struct {
	// Concurrency is how many objects the caller puts at once (default 8);
	// at most that many buffers are kept between objects.
	Concurrency int
	// BufferMax: an object whose ciphertext is at most this size is
	// encrypted into a pooled buffer before it is stored, so that the store
	// gets a body it can send in one request and resend on a transient error
	// (Azure: one Put Blob instead of staged blocks). Larger objects stream.
	// 0 means 8 MiB, except on the filesystem store, which streams into its
	// temporary file anyway; negative means never.
	BufferMax int64

	// Sources of randomness; tests inject deterministic ones. Defaults:
	// keys.NewContentKey, keys.NewKeyID and RandomIV.
	NewKey   func() (keys.ContentKey, error)
	NewKeyID func() (string, error)
	// NewIV gives the IV of one object, by its name relative to the
	// version prefix ("720p/seg_00003.ts").
	NewIV func(name string) ([16]byte, error)

	// KeyPeriod is how much media time one content key encrypts (see the
	// package comment); 0 means one key per version. New refuses a
	// negative one.
	KeyPeriod time.Duration
}

// RandomIV is the default Options.NewIV: a fresh random IV per object.
func RandomIV(string) ([16]byte, error) { return segcrypt.NewIV() }

// Packager writes encrypted versions into one store. It is safe for
// concurrent use; each Version is one attempt's worth of objects.
type Packager struct {
	store   storage.Store
	keyring *keys.Keyring
	opts    Options
	slabs   chan *[]byte
	// lanes encrypts the objects being put at once together, four CBC
	// chains per core (see segcrypt.Lanes): the ciphertext is the same,
	// the CPU per byte is a fraction.
	lanes *segcrypt.Lanes
}

// New returns a Packager writing to store, wrapping keys under keyring's
// primary KEK. It panics on a negative Options.KeyPeriod, which
// configuration refuses before (a programming error).
func New(store storage.Store, keyring *keys.Keyring, opts Options) *Packager {
	if opts.KeyPeriod < 0 {
		panic(fmt.Sprintf("packager: negative key period %v", opts.KeyPeriod))
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = 8
	}
	if opts.BufferMax == 0 {
		opts.BufferMax = 8 << 20
		if _, ok := store.(*storage.FS); ok {
			opts.BufferMax = -1
		}
	}
	if opts.NewKey == nil {
		opts.NewKey = keys.NewContentKey
	}
	if opts.NewKeyID == nil {
		opts.NewKeyID = keys.NewKeyID
	}
	if opts.NewIV == nil {
		opts.NewIV = RandomIV
	}
	return &Packager{store: store, keyring: keyring, opts: opts,
		slabs: make(chan *[]byte, opts.Concurrency), lanes: segcrypt.NewLanes()}
}

// KeyPeriod is the media time each content key encrypts; 0: one key.
func (p *Packager) KeyPeriod() time.Duration { return p.opts.KeyPeriod }

// PeriodOf returns the key period of media starting at start seconds:
// floor(start / KeyPeriod), 0 without periods. A start within
// catalog.PeriodEpsilon before a boundary counts as after it (segment
// starts are sums of rounded durations).
func (p *Packager) PeriodOf(start float64) (int, error) {
	if math.IsNaN(start) || math.IsInf(start, 0) || start < 0 {
		return 0, fmt.Errorf("packager: media start %v is not a time", start)
	}
	if p.opts.KeyPeriod == 0 {
		return 0, nil
	}
	n := math.Floor((start + catalog.PeriodEpsilon) / p.opts.KeyPeriod.Seconds())
	if n > math.MaxInt32 {
		return 0, fmt.Errorf("packager: media start %v s is beyond the last key period", start)
	}
	return int(n), nil
}

// Key is what a caller may know of one of a version's content keys.
type Key struct {
	Period int     // 0-based key period
	Start  float64 // media time (seconds) where the period starts
	ID     string  // key id
	URI    string  // the EXT-X-KEY URI naming it
}

type periodKey struct {
	Key
	ck keys.ContentKey
}

// Version is one version being written: its prefix, its keys (one per key
// period that has media) and what has been stored under it.
type Version struct {
	p      *Packager
	prefix string
	tmpl   string // key URI template
	// seed keys the digests of the version's plaintexts (Stored.Sum):
	// random, and never leaving the process, so a digest says nothing of
	// the plaintext outside it.
	seed uint64
	mu   sync.Mutex
	keys map[int]*periodKey
	byID map[string]*periodKey
	// sealed: every key was made up front (Resume); no new ones.
	sealed bool
}

// newSeed is a version's digest seed, from crypto/rand.
func newSeed() uint64 {
	var b [8]byte
	rand.Read(b[:]) // never fails (crypto/rand)
	return binary.LittleEndian.Uint64(b[:])
}

// Begin starts a version under prefix (which must end in "/") with a fresh
// content key and key id for its first period (the others are made as
// their first object is put). keyURITemplate is the EXT-X-KEY URI with
// {key_id} in it.
func (p *Packager) Begin(prefix, keyURITemplate string) (*Version, error) {
	if !strings.HasSuffix(prefix, "/") {
		return nil, fmt.Errorf("packager: prefix %q does not end in /", prefix)
	}
	if !strings.Contains(keyURITemplate, "{key_id}") {
		return nil, fmt.Errorf("packager: key URI template %q has no {key_id}", keyURITemplate)
	}
	if p.keyring == nil {
		return nil, errors.New("packager: no key-encryption key configured")
	}
	v := &Version{p: p, prefix: prefix, tmpl: keyURITemplate, seed: newSeed(), keys: map[int]*periodKey{}, byID: map[string]*periodKey{}}
	if _, err := v.KeyAt(0); err != nil {
		return nil, err
	}
	return v, nil
}

// Prefix is where the version's objects go.
func (v *Version) Prefix() string { return v.prefix }

// PeriodOf is the packager's PeriodOf: the key period of media starting
// at start.
func (v *Version) PeriodOf(start float64) (int, error) { return v.p.PeriodOf(start) }

// KeyAt returns the key of the period holding media time start, making the
// period's key (fresh content key and key id) if it has none yet.
func (v *Version) KeyAt(start float64) (Key, error) {
	k, err := v.keyAt(start)
	if err != nil {
		return Key{}, err
	}
	return k.Key, nil
}

func (v *Version) keyAt(start float64) (*periodKey, error) {
	n, err := v.p.PeriodOf(start)
	if err != nil {
		return nil, err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if k, ok := v.keys[n]; ok {
		return k, nil
	}
	if v.sealed {
		return nil, fmt.Errorf("packager: media at %v s is in key period %d, which the resumed version has no key for", start, n)
	}
	ck, err := v.p.opts.NewKey()
	if err != nil {
		return nil, fmt.Errorf("packager: content key: %w", err)
	}
	id, err := v.p.opts.NewKeyID()
	if err != nil {
		return nil, fmt.Errorf("packager: key id: %w", err)
	}
	if _, dup := v.byID[id]; dup {
		return nil, fmt.Errorf("packager: key id %s drawn twice", id)
	}
	k := &periodKey{ck: ck, Key: Key{Period: n, Start: float64(n) * v.p.opts.KeyPeriod.Seconds(), ID: id,
		URI: strings.ReplaceAll(v.tmpl, "{key_id}", id)}}
	v.keys[n], v.byID[id] = k, k
	return k, nil
}

// Keys returns the version's keys so far, in period order.
func (v *Version) Keys() []Key {
	v.mu.Lock()
	defer v.mu.Unlock()
	out := make([]Key, 0, len(v.keys))
	for _, k := range v.keys {
		out = append(out, k.Key)
	}
	slices.SortFunc(out, func(a, b Key) int { return a.Period - b.Period })
	return out
}

// WrappedKeys wraps every key of the version under the primary KEK, in
// period order, as the catalog stores them. Publish the version with them
// only once every object and playlist is stored.
func (v *Version) WrappedKeys() ([]catalog.WrappedKey, error) {
	kek := v.p.keyring.Primary()
	var out []catalog.WrappedKey
	for _, k := range v.Keys() {
		v.mu.Lock()
		ck := v.keys[k.Period].ck
		v.mu.Unlock()
		wrapped, err := kek.Wrap(k.ID, ck)
		if err != nil {
			return nil, fmt.Errorf("packager: wrap key %s: %w", k.ID, err)
		}
		out = append(out, catalog.WrappedKey{KeyID: k.ID, KEKID: kek.ID(), Wrapped: wrapped, Period: k.Period, Start: k.Start})
	}
	return out, nil
}

func (v *Version) byKeyID(id string) (*periodKey, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	k, ok := v.byID[id]
	return k, ok
}

// Object is one media object (segment or init section) to store.
type Object struct {
	// Name relative to the version prefix, e.g. "720p/seg_00003.ts"; the
	// content type follows its extension.
	Name string
	// Body is read to its end. With SourceKey set it is ciphertext under
	// that key and SourceIV (a re-key), otherwise plaintext.
	Body io.Reader
	// Start is the media time (seconds) where the object's segment starts,
	// for an init section that of the segment it appears at: it chooses
	// the key period, hence the key.
	Start float64
	// Size is the plaintext length, or -1 when unknown.
	Size int64
	// SourceSize bounds the ciphertext when Size is unknown (a re-key: the
	// old ciphertext is at least as long as the new); 0 when not known.
	SourceSize int64
	SourceKey  *keys.ContentKey
	SourceIV   *[16]byte
	// Check, when set, wraps the plaintext before it is hashed and
	// encrypted: the caller's proof that the source has the length it
	// promised. Its errors are returned wrapped.
	Check func(plain io.Reader) io.Reader
}

// Stored is what one object became.
type Stored struct {
	Name      string // full object name
	IV        [16]byte
	Size      int64 // stored (encrypted) bytes
	PlainSize int64
	// Sum is the plaintext's 64-bit digest (XXH3) under the version's
	// random seed, taken while it was encrypted: what Verify holds the
	// decrypted read-back to. Not SHA-256: the digest only has to catch a
	// read-back that differs from what was put (a damaged or truncated
	// object, a wrong key or IV), for which a seeded 64-bit digest misses
	// one change in 2^64, and SHA-256 twice per object cost more CPU than
	// the encryption itself (see the README's Backfill figures). Not
	// hash/maphash either, whose streaming Write hashes 128 bytes per call
	// (about 10 GB/s here, as much CPU as the four-lane encryption); XXH3
	// (github.com/zeebo/xxh3, AVX2/AVX-512) takes 256 KiB chunks at about
	// 48 GB/s. It is never stored.
	Sum uint64
	// Key is the key that encrypted it (its period's); a playlist names
	// Key.URI at the object.
	Key Key
}

// Put encrypts one object under the key of its period (o.Start) with a
// fresh IV and stores it, taking the plaintext's digest (Stored.Sum) in the
// same pass, chunk by chunk as it is encrypted. The object is streamed; it
// is buffered (into a pooled buffer) only when small enough for a
// one-request upload, see Options.BufferMax. Put and Verify are safe to
// call from many goroutines at once, for different objects.
func (v *Version) Put(ctx context.Context, o Object) (Stored, error) {
	st := Stored{Name: v.prefix + o.Name}
	key, err := v.keyAt(o.Start)
	if err != nil {
		return st, fmt.Errorf("packager: put %q: %w", o.Name, err)
	}
	st.Key = key.Key
	plain := o.Body
	if o.SourceKey != nil {
		if o.SourceIV == nil {
			return st, fmt.Errorf("packager: put %q: a source key without its IV", o.Name)
		}
		dec, err := segcrypt.NewDecryptReader(o.Body, o.SourceKey.Bytes(), o.SourceIV[:])
		if err != nil {
			return st, fmt.Errorf("packager: put %q: %w", o.Name, err)
		}
		plain = &sourceKeyErrors{r: dec}
	}
	if o.Check != nil {
		plain = o.Check(plain)
	}
	h := &hashingReader{r: plain, want: o.Size}
	h.h.ResetSeed(v.seed)
	iv, err := v.p.opts.NewIV(o.Name)
	if err != nil {
		return st, fmt.Errorf("packager: put %q: IV: %w", o.Name, err)
	}
	enc, err := v.p.lanes.NewEncryptReader(h, key.ck.Bytes(), iv[:])
	if err != nil {
		return st, fmt.Errorf("packager: put %q: %w", o.Name, err)
	}
	size := int64(-1)
	if o.Size >= 0 {
		size = segcrypt.EncryptedSize(o.Size)
	}
	bound := size
	if bound < 0 && o.SourceSize > 0 {
		bound = o.SourceSize
	}
	body := enc
	if bound >= 0 && bound <= v.p.opts.BufferMax {
		slab := v.p.getSlab()
		defer v.p.putSlab(slab)
		if int64(cap(*slab)) < bound {
			*slab = make([]byte, (bound+1<<16-1)&^(1<<16-1)) // whole 64 KiB, so that slabs get reused
		}
		n, err := readAllInto(enc, (*slab)[:bound])
		if err != nil {
			return st, fmt.Errorf("packager: put %q: %w", o.Name, err)
		}
		body, size = bytes.NewReader((*slab)[:n]), int64(n)
	}
	err = v.p.store.Put(ctx, st.Name, body, size,
		storage.PutOptions{ContentType: layout.ContentType(st.Name), CacheControl: layout.Immutable})
	if err != nil {
		return st, fmt.Errorf("packager: put %q: %w", o.Name, err)
	}
	if !h.eof {
		return st, fmt.Errorf("packager: put %q: the source was not read to its end", o.Name)
	}
	st.IV, st.PlainSize, st.Size, st.Sum = iv, h.n, segcrypt.EncryptedSize(h.n), h.h.Sum64()
	return st, nil
}

// Verify reads a stored object back once, decrypts it once and holds the
// plaintext's length and digest to what Put read: the proof, before
// publishing, that every object decrypts to the bytes it came from. It
// streams (one working buffer), so it may run beside the Puts of other
// objects.
func (v *Version) Verify(ctx context.Context, st Stored) error {
	key, ok := v.byKeyID(st.Key.ID)
	if !ok {
		return fmt.Errorf("packager: verify %s: key %q is not one of the version's", st.Name, st.Key.ID)
	}
	rc, err := v.p.store.Get(ctx, st.Name)
	if err != nil {
		return fmt.Errorf("packager: verify %s: %w", st.Name, err)
	}
	defer rc.Close()
	cr := &countReader{r: rc}
	dec, err := segcrypt.NewDecryptReader(cr, key.ck.Bytes(), st.IV[:])
	if err != nil {
		return fmt.Errorf("packager: verify %s: %w", st.Name, err)
	}
	var h xxh3.Hasher
	h.ResetSeed(v.seed)
	n, err := io.Copy(&h, dec)
	if err != nil {
		return fmt.Errorf("%w: %s does not decrypt: %w", ErrVerify, st.Name, err)
	}
	if sum := h.Sum64(); n != st.PlainSize || sum != st.Sum || cr.n != st.Size {
		return fmt.Errorf("%w: %s (%d bytes) decrypts to %d bytes with digest %016x; %d bytes with digest %016x were put",
			ErrVerify, st.Name, cr.n, n, sum, st.PlainSize, st.Sum)
	}
	return nil
}

// WriteMedia writes a rendition's media playlist and returns its object
// name and size. Every segment and init section names the URI of the key
// that encrypted it (Stored.Key.URI), and that must be the key of the
// period where it plays: the segment's start is the sum of the durations
// before it, and an init section is used only within the period it was
// stored for (a new period needs its own copy and EXT-X-MAP).
func (v *Version) WriteMedia(ctx context.Context, rendition string, m playlist.Media) (string, int64, error) {
	if !layout.ValidRendition(rendition) {
		return "", 0, fmt.Errorf("packager: media playlist: %w: rendition name %q", ErrInvalidPlaylist, rendition)
	}
	if err := v.checkKeys(m); err != nil {
		return "", 0, fmt.Errorf("packager: media playlist %s: %w", rendition, err)
	}
	m.KeyURI = ""
	var buf bytes.Buffer
	if err := playlist.WriteMedia(&buf, m); err != nil {
		return "", 0, fmt.Errorf("packager: media playlist %s: %w: %w", rendition, ErrInvalidPlaylist, err)
	}
	// What players will read back must list every segment.
	back, err := playlist.ParseMedia(bytes.NewReader(buf.Bytes()))
	if err != nil || len(back.Segments) != len(m.Segments) || !back.Ended {
		return "", 0, fmt.Errorf("packager: media playlist %s does not read back (%v)", rendition, err)
	}
	name := layout.MediaPlaylistName(v.prefix, rendition)
	return name, int64(buf.Len()), v.putPlaylist(ctx, name, buf.Bytes())
}

// checkKeys holds each segment and init section of m to its period's key.
func (v *Version) checkKeys(m playlist.Media) error {
	durations := make([]float64, len(m.Segments))
	for i, s := range m.Segments {
		durations[i] = s.Duration
	}
	starts, err := playlist.Starts(durations)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidPlaylist, err)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	var initKey string
	for i, s := range m.Segments {
		start := starts[i]
		n, err := v.p.PeriodOf(start)
		if err != nil {
			return err
		}
		k, ok := v.keys[n]
		if !ok || s.KeyURI != k.URI {
			return fmt.Errorf("segment %d (%s) at %.3f s names key URI %q, not that of key period %d", i, s.URI, start, s.KeyURI, n)
		}
		if s.Init != nil {
			if initKey = s.Init.KeyURI; initKey == "" {
				return fmt.Errorf("segment %d (%s): its init section names no key URI", i, s.URI)
			}
		}
		if initKey != "" && initKey != k.URI {
			return fmt.Errorf("segment %d (%s) in key period %d would use an init section stored under another period's key %q", i, s.URI, n, initKey)
		}
	}
	return nil
}

// WriteMaster writes the version's master playlist and returns its object
// name and size.
func (v *Version) WriteMaster(ctx context.Context, m playlist.Master) (string, int64, error) {
	var buf bytes.Buffer
	if err := playlist.WriteMaster(&buf, m); err != nil {
		return "", 0, fmt.Errorf("packager: master playlist: %w: %w", ErrInvalidPlaylist, err)
	}
	name := layout.MasterName(v.prefix)
	return name, int64(buf.Len()), v.putPlaylist(ctx, name, buf.Bytes())
}

func (v *Version) putPlaylist(ctx context.Context, name string, b []byte) error {
	if err := v.putSame(ctx, name, b, storage.PutOptions{ContentType: layout.ContentTypePlaylist, CacheControl: layout.Immutable}); err != nil {
		return fmt.Errorf("packager: put %s: %w", name, err)
	}
	return nil
}

// putSame stores b under name, or finds it stored already with exactly
// these bytes. That is what makes a step that writes the same bytes each
// time it runs safe to retry (the chunked join, which writes a version's
// playlists after its pieces stored the segments, and is redelivered if
// its worker dies): nothing is overwritten, and a name holding other bytes
// is still refused (ErrExists).
func (v *Version) putSame(ctx context.Context, name string, b []byte, opts storage.PutOptions) error {
	err := v.p.store.Put(ctx, name, bytes.NewReader(b), int64(len(b)), opts)
	if !errors.Is(err, storage.ErrExists) {
		return err
	}
	rc, gerr := v.p.store.Get(ctx, name)
	if gerr != nil {
		return fmt.Errorf("%w (reading it back: %w)", err, gerr)
	}
	defer rc.Close()
	have, gerr := io.ReadAll(io.LimitReader(rc, int64(len(b))+1))
	if gerr != nil {
		return fmt.Errorf("%w (reading it back: %w)", err, gerr)
	}
	if !bytes.Equal(have, b) {
		return fmt.Errorf("%w, with other bytes", err)
	}
	return nil
}

// PutOnce encrypts and stores a small object (a subtitle segment) that the
// step making it builds the same, byte for byte, every time it runs. Its
// IV is not drawn but derived from its key, name and plaintext
// (HMAC-SHA256 under a key derived from the content key: unpredictable
// without it, as CBC needs), so its ciphertext is the same each time too,
// and an object already stored under the name with exactly those bytes
// counts as stored (see putSame). Two different plaintexts never share an
// IV under one key unless HMAC-SHA256 collides.
func (v *Version) PutOnce(ctx context.Context, name string, plain []byte, start float64) (Stored, error) {
	st := Stored{Name: v.prefix + name, PlainSize: int64(len(plain))}
	key, err := v.keyAt(start)
	if err != nil {
		return st, fmt.Errorf("packager: put %q: %w", name, err)
	}
	st.Key = key.Key
	st.IV = syntheticIV(key.ck.Bytes(), name, plain)
	enc, err := segcrypt.NewEncryptReader(bytes.NewReader(plain), key.ck.Bytes(), st.IV[:])
	if err != nil {
		return st, fmt.Errorf("packager: put %q: %w", name, err)
	}
	ct, err := io.ReadAll(enc)
	if err != nil {
		return st, fmt.Errorf("packager: put %q: %w", name, err)
	}
	st.Size = int64(len(ct))
	st.Sum = xxh3.HashSeed(plain, v.seed)
	if err := v.putSame(ctx, st.Name, ct, storage.PutOptions{ContentType: layout.ContentType(st.Name), CacheControl: layout.Immutable}); err != nil {
		return st, fmt.Errorf("packager: put %q: %w", name, err)
	}
	return st, nil
}

// syntheticIV is PutOnce's IV: HMAC-SHA256(K_iv, name, 0, plain) cut to a
// block, where K_iv = HMAC-SHA256(key, "hlsvault synthetic IV"), so the
// content key itself keys only AES.
func syntheticIV(key []byte, name string, plain []byte) [segcrypt.BlockSize]byte {
	kdf := hmac.New(sha256.New, key)
	kdf.Write([]byte("hlsvault synthetic IV"))
	ivKey := kdf.Sum(nil)
	m := hmac.New(sha256.New, ivKey)
	clear(ivKey)
	m.Write([]byte(name))
	m.Write([]byte{0})
	m.Write(plain)
	var iv [segcrypt.BlockSize]byte
	copy(iv[:], m.Sum(nil))
	return iv
}

// getSlab returns a buffer for one object. The buffers are kept between
// objects and versions (at most Concurrency of them), so they are
// allocated once rather than after every garbage collection, as a
// sync.Pool's would be.
func (p *Packager) getSlab() *[]byte {
	select {
	case b := <-p.slabs:
		return b
	default:
		return new([]byte)
	}
}

func (p *Packager) putSlab(b *[]byte) {
	select {
	case p.slabs <- b:
	default:
	}
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

// hashingReader hashes what it reads, holds it to the promised length and
// notes the end.
type hashingReader struct {
	r    io.Reader
	h    xxh3.Hasher
	n    int64
	want int64 // -1: unknown
	eof  bool
}

func (h *hashingReader) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	h.n += int64(n)
	h.h.Write(p[:n])
	if h.want >= 0 && h.n > h.want {
		return n, fmt.Errorf("the plaintext is longer than the %d bytes promised", h.want)
	}
	if err == io.EOF {
		if h.want >= 0 && h.n != h.want {
			return n, fmt.Errorf("the plaintext ended after %d of the %d bytes promised", h.n, h.want)
		}
		h.eof = true
	}
	return n, err
}

// sourceKeyErrors marks decryption failures of a re-key's source as
// ErrSourceKey, so that callers can tell a damaged title from an outage.
type sourceKeyErrors struct{ r io.Reader }

func (s *sourceKeyErrors) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if errors.Is(err, segcrypt.ErrBadPadding) || errors.Is(err, segcrypt.ErrBadLength) {
		err = fmt.Errorf("%w: %w", ErrSourceKey, err)
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
