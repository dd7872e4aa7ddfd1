// Package packager is the one place where a content key meets storage: it
// begins a version (a fresh content key, key id and IVs), encrypts and
// stores each of its objects, writes its playlists, and wraps its key for
// the catalog. The transcode pipeline, the backfill's re-encryption and the
// gateway's synthetic fixture all publish through it, so there is one
// encryption loop, one set of content types and cache headers (from
// internal/layout) and one playlist writer.
//
// The content key never leaves a Version: it is used to encrypt, to verify
// and to be wrapped, and it is never returned. What a caller gets back is
// object names, sizes, digests, IVs and the wrapped key.
package packager

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"

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
}

// New returns a Packager writing to store, wrapping keys under keyring's
// primary KEK.
func New(store storage.Store, keyring *keys.Keyring, opts Options) *Packager {
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
	return &Packager{store: store, keyring: keyring, opts: opts, slabs: make(chan *[]byte, opts.Concurrency)}
}

// Version is one version being written: its prefix, its key and what has
// been stored under it.
type Version struct {
	p      *Packager
	prefix string
	key    keys.ContentKey
	keyID  string
	keyURI string
}

// Begin starts a version under prefix (which must end in "/") with a fresh
// content key and key id. keyURITemplate is the EXT-X-KEY URI with
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
	ck, err := p.opts.NewKey()
	if err != nil {
		return nil, fmt.Errorf("packager: content key: %w", err)
	}
	keyID, err := p.opts.NewKeyID()
	if err != nil {
		return nil, fmt.Errorf("packager: key id: %w", err)
	}
	return &Version{p: p, prefix: prefix, key: ck, keyID: keyID,
		keyURI: strings.ReplaceAll(keyURITemplate, "{key_id}", keyID)}, nil
}

// Prefix is where the version's objects go.
func (v *Version) Prefix() string { return v.prefix }

// KeyID is the id of the version's content key.
func (v *Version) KeyID() string { return v.keyID }

// KeyURI is the EXT-X-KEY URI the version's playlists carry.
func (v *Version) KeyURI() string { return v.keyURI }

// WrappedKey wraps the version's key under the primary KEK, as the catalog
// stores it. Publish the version with it only once every object and
// playlist is stored.
func (v *Version) WrappedKey() (catalog.WrappedKey, error) {
	kek := v.p.keyring.Primary()
	wrapped, err := kek.Wrap(v.keyID, v.key)
	if err != nil {
		return catalog.WrappedKey{}, fmt.Errorf("packager: wrap key: %w", err)
	}
	return catalog.WrappedKey{KeyID: v.keyID, KEKID: kek.ID(), Wrapped: wrapped}, nil
}

// Object is one media object (segment or init section) to store.
type Object struct {
	// Name relative to the version prefix, e.g. "720p/seg_00003.ts"; the
	// content type follows its extension.
	Name string
	// Body is read to its end. With SourceKey set it is ciphertext under
	// that key and SourceIV (a re-key), otherwise plaintext.
	Body io.Reader
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
	SHA256    [sha256.Size]byte // of the plaintext
}

// Put encrypts one object under the version's key with a fresh IV and
// stores it, hashing the plaintext on the way. The object is streamed; it
// is buffered (into a pooled buffer) only when small enough for a
// one-request upload, see Options.BufferMax.
func (v *Version) Put(ctx context.Context, o Object) (Stored, error) {
	st := Stored{Name: v.prefix + o.Name}
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
	h := &hashingReader{r: plain, h: sha256.New(), want: o.Size}
	iv, err := v.p.opts.NewIV(o.Name)
	if err != nil {
		return st, fmt.Errorf("packager: put %q: IV: %w", o.Name, err)
	}
	enc, err := segcrypt.NewEncryptReader(h, v.key.Bytes(), iv[:])
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
	st.IV, st.PlainSize, st.Size = iv, h.n, segcrypt.EncryptedSize(h.n)
	copy(st.SHA256[:], h.h.Sum(nil))
	return st, nil
}

// Verify reads a stored object back, decrypts it and compares it with what
// Put read: the proof, before publishing, that every object decrypts to the
// bytes it came from.
func (v *Version) Verify(ctx context.Context, st Stored) error {
	rc, err := v.p.store.Get(ctx, st.Name)
	if err != nil {
		return fmt.Errorf("packager: verify %s: %w", st.Name, err)
	}
	defer rc.Close()
	cr := &countReader{r: rc}
	dec, err := segcrypt.NewDecryptReader(cr, v.key.Bytes(), st.IV[:])
	if err != nil {
		return fmt.Errorf("packager: verify %s: %w", st.Name, err)
	}
	h := sha256.New()
	n, err := io.Copy(h, dec)
	if err != nil {
		return fmt.Errorf("%w: %s does not decrypt: %w", ErrVerify, st.Name, err)
	}
	var sum [sha256.Size]byte
	copy(sum[:], h.Sum(nil))
	if n != st.PlainSize || sum != st.SHA256 || cr.n != st.Size {
		return fmt.Errorf("%w: %s (%d bytes) decrypts to %d bytes with SHA-256 %x; %d bytes with SHA-256 %x were put",
			ErrVerify, st.Name, cr.n, n, sum, st.PlainSize, st.SHA256)
	}
	return nil
}

// WriteMedia writes a rendition's media playlist under the version's key
// URI (m.KeyURI is set here) and returns its object name and size.
func (v *Version) WriteMedia(ctx context.Context, rendition string, m playlist.Media) (string, int64, error) {
	if !layout.ValidRendition(rendition) {
		return "", 0, fmt.Errorf("packager: media playlist: %w: rendition name %q", ErrInvalidPlaylist, rendition)
	}
	m.KeyURI = v.keyURI
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
	if err := v.p.store.Put(ctx, name, bytes.NewReader(b), int64(len(b)),
		storage.PutOptions{ContentType: layout.ContentTypePlaylist, CacheControl: layout.Immutable}); err != nil {
		return fmt.Errorf("packager: put %s: %w", name, err)
	}
	return nil
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
	h    hash.Hash
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
