// Package storage keeps the packaged HLS objects (playlists and encrypted
// segments) on a local filesystem or in Azure Blob Storage behind one small
// interface, Store.
//
// The central rule is that a stored object is never overwritten. Published
// versions live under versioned names (hls/{video}/v{N}/…) and the database,
// not the store, decides which version is current; a player or CDN that has
// fetched part of a version must therefore never see that version change
// under it. Put enforces this at the storage layer as well: it refuses an
// existing name (ErrExists) instead of trusting callers to pick fresh names,
// and it publishes an object only once it is complete, so a crash or a
// cancelled context leaves either the whole object or no object at all (at
// most an invisible temporary file or uncommitted blocks).
//
// The package imports nothing else from this module: keys, transcoding and
// handlers depend on it, never the reverse.
package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"path"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Sentinel errors. Every error returned by a Store wraps at most one of them,
// so callers test with errors.Is.
var (
	ErrNotFound    = errors.New("storage: object not found")
	ErrExists      = errors.New("storage: object already exists")
	ErrInvalidName = errors.New("storage: invalid object name")
)

// PutOptions are the HTTP-facing properties of an object. Azure serves them
// back on every GET (including through a SAS URL); FS cannot keep them, see
// FS.
type PutOptions struct {
	ContentType  string
	CacheControl string
}

// ObjectInfo describes a stored object.
type ObjectInfo struct {
	Name         string
	Size         int64
	ModTime      time.Time
	ContentType  string
	CacheControl string
}

// Store is implemented by *FS and *Azure.
type Store interface {
	// Put writes a new object. It never overwrites: if name exists it returns an error wrapping ErrExists.
	// The object becomes visible only once complete (no reader ever sees half an object).
	// size is the exact length when known, or -1; a stream whose length differs from a known size is
	// rejected and nothing is stored.
	Put(ctx context.Context, name string, r io.Reader, size int64, opts PutOptions) error
	// Get opens an object for reading; ErrNotFound if absent.
	Get(ctx context.Context, name string) (io.ReadCloser, error)
	// GetRange reads length bytes from offset (length<0: to the end); ErrNotFound if absent.
	// A range reaching past the end is cut at the end, so an offset at or past the end yields an
	// empty body, as io.SectionReader would.
	GetRange(ctx context.Context, name string, offset, length int64) (io.ReadCloser, error)
	// Stat describes an object; ErrNotFound if absent.
	Stat(ctx context.Context, name string) (ObjectInfo, error)
	// List calls fn for every object whose name starts with prefix, in lexical (byte) name order.
	// Returning an error from fn stops the listing and List returns that error unchanged.
	List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error
	// Delete removes an object; deleting a missing object is not an error.
	Delete(ctx context.Context, name string) error
	// Probe is a cheap check that the store is usable now, for health checks: FS, that its root is a
	// directory it can create files in; Azure, that the container's properties can be read.
	Probe(ctx context.Context) error
	// String describes the store for logs without secrets, e.g. "file:///var/lib/x" or "azblob://container".
	String() string
}

// maxNameLen is Azure's limit on blob names; FS applies it too so that a name
// accepted by one backend is accepted by the other.
const maxNameLen = 1024

// tmpPrefix marks FS files that are still being written. ValidateName
// reserves it so that no object can be mistaken for (or cleaned up as) an
// unfinished write.
const tmpPrefix = ".tmp-"

// ValidateName reports whether name can be used as an object name on every
// backend. The rules make a name map to exactly one path under an FS root
// (no "..", no absolute paths, no empty or "." segments, no backslashes that
// Windows tooling would read as separators) and to a blob name that Azure
// stores verbatim (at most 1024 bytes, valid UTF-8, no control characters, no
// segment ending in '.', which Azure strips). Segments starting with ".tmp-"
// are reserved for FS's in-flight writes. The error wraps ErrInvalidName.
func ValidateName(name string) error {
	if err := validateName(name, maxNameLen); err != nil {
		return fmt.Errorf("%w %q: %s", ErrInvalidName, name, err)
	}
	return nil
}

func validateName(name string, maxLen int) error {
	switch {
	case name == "":
		return errors.New("empty")
	case len(name) > maxLen:
		return fmt.Errorf("longer than %d bytes", maxNameLen)
	case !utf8.ValidString(name):
		return errors.New("not valid UTF-8")
	case strings.HasPrefix(name, "/"):
		return errors.New("leading '/'")
	case strings.HasSuffix(name, "/"):
		return errors.New("trailing '/'")
	}
	for _, c := range name {
		if c == '\\' {
			return errors.New("backslash")
		}
		if unicode.IsControl(c) {
			return fmt.Errorf("control character %U", c)
		}
	}
	for seg := range strings.SplitSeq(name, "/") {
		switch {
		case seg == "":
			return errors.New("empty segment")
		case seg == "." || seg == "..":
			return fmt.Errorf("%q segment", seg)
		case strings.HasSuffix(seg, "."):
			return errors.New("segment ending in '.'")
		case strings.HasPrefix(seg, tmpPrefix):
			return fmt.Errorf("segment starting with reserved %q", tmpPrefix)
		}
	}
	return nil
}

// checkName validates name for operation op, reporting the name once.
func checkName(op, name string) error {
	if err := validateName(name, maxNameLen); err != nil {
		return fmt.Errorf("storage: %s %q: %w: %s", op, name, ErrInvalidName, err)
	}
	return nil
}

// validatePrefix accepts a List prefix when some valid name could start with
// it. Rejecting the others keeps FS from ever resolving a prefix such as
// "../" to a directory outside its root, and makes both backends answer the
// same way.
func validatePrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	// Appending one ordinary character gives the shortest name that has this
	// prefix; a partial last segment such as "seg_0" or "." is fine.
	if len(prefix) > maxNameLen || validateName(prefix+"x", maxNameLen+1) != nil {
		return fmt.Errorf("storage: list %q: %w: no valid name starts with it", prefix, ErrInvalidName)
	}
	return nil
}

// Location is a parsed storage URL: a local directory or an Azure container.
type Location struct {
	Scheme    string // "file" or "azblob"
	Dir       string // file: the absolute directory
	Container string // azblob: the container
}

// ParseURL checks a storage URL without opening anything: "file:///abs/dir"
// or "azblob://container". The error names the accepted forms.
func ParseURL(rawURL string) (Location, error) {
	const forms = `accepted forms are "file:///absolute/dir" and "azblob://container"`
	u, err := url.Parse(rawURL)
	if err != nil {
		// url.Error repeats the input, which is only a location, never a secret.
		return Location{}, fmt.Errorf("storage: open: %w (%s)", err, forms)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return Location{}, fmt.Errorf("storage: open %q: query, fragment and user info are not supported (%s)", rawURL, forms)
	}
	switch u.Scheme {
	case "file":
		// "file://relative/dir" parses with Host "relative"; "file:relative"
		// is opaque. Both would silently depend on the working directory.
		if u.Opaque != "" || (u.Host != "" && u.Host != "localhost") || !path.IsAbs(u.Path) {
			return Location{}, fmt.Errorf("storage: open %q: file URL must hold an absolute path (%s)", rawURL, forms)
		}
		return Location{Scheme: "file", Dir: u.Path}, nil
	case "azblob":
		if u.Opaque != "" || u.Host == "" || (u.Path != "" && u.Path != "/") {
			return Location{}, fmt.Errorf("storage: open %q: azblob URL must name only a container (%s)", rawURL, forms)
		}
		return Location{Scheme: "azblob", Container: u.Host}, nil
	default:
		return Location{}, fmt.Errorf("storage: open %q: unsupported scheme %q (%s)", rawURL, u.Scheme, forms)
	}
}

// Open builds a Store from a URL: "file:///abs/dir" → FS; "azblob://container"
// → Azure using getenv("AZURE_STORAGE_CONNECTION_STRING"). Any other scheme or
// a relative file path is an error naming the accepted forms (see ParseURL).
func Open(ctx context.Context, rawURL string, getenv func(string) string) (Store, error) {
	loc, err := ParseURL(rawURL)
	if err != nil {
		return nil, err
	}
	if loc.Scheme == "file" {
		fs, err := NewFS(loc.Dir)
		if err != nil {
			return nil, err
		}
		return fs, nil
	}
	cs := getenv("AZURE_STORAGE_CONNECTION_STRING")
	if cs == "" {
		return nil, fmt.Errorf("storage: open %q: AZURE_STORAGE_CONNECTION_STRING is not set", rawURL)
	}
	az, err := NewAzure(ctx, AzureConfig{ConnectionString: cs, Container: loc.Container})
	if err != nil {
		return nil, err
	}
	return az, nil
}

// guardedReader is what Put copies from. It stops the copy as soon as ctx is
// done and fails it when the stream's length disagrees with the declared
// size, so that neither a cancelled nor a truncated stream is ever published:
// both backends publish only after a clean EOF.
type guardedReader struct {
	ctx  context.Context
	r    io.Reader
	size int64 // -1: unknown
	n    int64
}

func (g *guardedReader) Read(p []byte) (int, error) {
	if err := g.ctx.Err(); err != nil {
		return 0, err
	}
	if g.size >= 0 {
		// Ask for one byte more than remains, to notice an overlong stream.
		if rem := g.size - g.n + 1; int64(len(p)) > rem {
			p = p[:rem]
		}
	}
	n, err := g.r.Read(p)
	g.n += int64(n)
	if g.size >= 0 {
		if g.n > g.size {
			return n, g.errLong()
		}
		if err == io.EOF && g.n < g.size {
			return n, g.errShort()
		}
	}
	return n, err
}

func (g *guardedReader) errLong() error {
	return fmt.Errorf("stream is longer than the declared size %d", g.size)
}

func (g *guardedReader) errShort() error {
	return fmt.Errorf("stream ended after %d of the declared %d bytes: %w", g.n, g.size, io.ErrUnexpectedEOF)
}

// writeTo is Read's guard for a stream that writes itself (io.WriterTo):
// the stream's own chunks go to w without passing through a copy buffer,
// and the same checks hold: ctx is checked before every write, a write
// that would run past the declared size fails, and so does a stream that
// ends short of it.
func (g *guardedReader) writeTo(w io.Writer, wt io.WriterTo) error {
	if _, err := wt.WriteTo(&guardedWriter{g: g, w: w}); err != nil {
		return err
	}
	if g.size >= 0 && g.n < g.size {
		return g.errShort()
	}
	return nil
}

type guardedWriter struct {
	g *guardedReader
	w io.Writer
}

func (gw *guardedWriter) Write(p []byte) (int, error) {
	g := gw.g
	if err := g.ctx.Err(); err != nil {
		return 0, err
	}
	if g.size >= 0 && g.n+int64(len(p)) > g.size {
		return 0, g.errLong()
	}
	n, err := gw.w.Write(p)
	g.n += int64(n)
	return n, err
}

// readCloser pairs a reader with the Close of what it reads from.
type readCloser struct {
	io.Reader
	io.Closer
}

// emptyBody is returned for ranges that begin at or after the end of an
// object.
func emptyBody() io.ReadCloser { return io.NopCloser(strings.NewReader("")) }
