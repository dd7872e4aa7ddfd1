package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// FS stores objects as files under a root directory: object "a/b.ts" is
// file dir/a/b.ts. It is the embedded default and what tests and single-host
// deployments use.
//
// FS keeps no per-object metadata: PutOptions are ignored and Stat reports
// neither ContentType nor CacheControl. Whatever serves these files over
// HTTP sets both itself (the gateway takes the type from internal/layout,
// which storage may not import).
//
// Publishing relies on hard links (os.Link), so dir must be on a filesystem
// that supports them; that is what makes "never overwrite" atomic without a
// lock. Because an object is a file, "a" and "a/b" cannot both exist on FS,
// while Azure allows it.
//
// Objects are private to the storing user: files 0600 in directories 0700
// (an uploaded source, stored by enqueue, is a creator's unpublished video).
// Whatever reads them (the worker, the gateway serving filesystem
// segments) runs as that user.
type FS struct {
	dir string
}

// Modes of what FS creates.
const (
	objectPerm = 0o600
	dirPerm    = 0o700
)

var _ Store = (*FS)(nil)

// NewFS returns an FS rooted at dir, creating it (0o700) if missing. A
// relative dir is made absolute now, so that a later chdir cannot move the
// store.
func NewFS(dir string) (*FS, error) {
	if dir == "" {
		return nil, errors.New("storage: new fs: empty directory")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("storage: new fs %q: %w", dir, err)
	}
	if err := os.MkdirAll(abs, dirPerm); err != nil {
		return nil, fmt.Errorf("storage: new fs: %w", err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("storage: new fs: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("storage: new fs %q: not a directory", abs)
	}
	return &FS{dir: abs}, nil
}

// String returns the root as a file URL.
func (f *FS) String() string {
	return (&url.URL{Scheme: "file", Path: filepath.ToSlash(f.dir)}).String()
}

// Probe checks that the root is still a directory in which FS can create
// (and remove) a file: a root removed, replaced or made read-only, or a
// full disk, fails it, as it would fail every Put.
func (f *FS) Probe(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("storage: probe %s: %w", f, err)
	}
	fi, err := os.Stat(f.dir)
	if err != nil {
		return fmt.Errorf("storage: probe: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("storage: probe %s: the root is not a directory", f)
	}
	tmp, err := os.CreateTemp(f.dir, tmpPrefix+"probe-*")
	if err != nil {
		return fmt.Errorf("storage: probe: %w", err)
	}
	name := tmp.Name()
	err = tmp.Close()
	if rerr := os.Remove(name); err == nil {
		err = rerr
	}
	if err != nil {
		return fmt.Errorf("storage: probe: %w", err)
	}
	return nil
}

// path maps a name that passed validation to its file. ValidateName has
// already excluded "..", absolute and empty segments, so the result is always
// inside f.dir.
func (f *FS) path(name string) string {
	return filepath.Join(f.dir, filepath.FromSlash(name))
}

// isMissing reports errors meaning "no such object": ENOTDIR arises when a
// prefix of the name is an object (file) rather than a directory.
func isMissing(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}

// Put writes r to a temporary file beside the final one, syncs it and then
// hard-links it into place. The link fails if the name exists, which makes
// the no-overwrite check and the publication one atomic step; readers only
// ever see the link, so never half an object.
func (f *FS) Put(ctx context.Context, name string, r io.Reader, size int64, _ PutOptions) (err error) {
	if err := checkName("put", name); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			err = fmt.Errorf("storage: put %q: %w", name, err)
		}
	}()
	if err := ctx.Err(); err != nil {
		return err
	}
	final := f.path(name)
	// Fail before reading a byte in the common conflict case; the link below
	// remains the check that counts.
	if fi, err := os.Lstat(final); err == nil {
		if fi.IsDir() {
			return errIsDir
		}
		return ErrExists
	}
	dir := filepath.Dir(final)
	tmp, err := createTemp(dir)
	if err != nil {
		return err
	}
	tmpName := tmp.Name()
	defer func() {
		if tmp != nil {
			tmp.Close()
		}
		// A no-op once the object is published.
		os.Remove(tmpName)
	}()

	if size < 0 {
		size = -1
	}
	if size >= copyChunk {
		preallocate(tmp, size)
	}
	if err := copyInto(tmp, &guardedReader{ctx: ctx, r: r, size: size}); err != nil {
		return err
	}
	// CreateTemp makes the file 0o600 already; the mode is set anyway, so
	// that what is published never depends on CreateTemp or the umask.
	if err := tmp.Chmod(objectPerm); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	err = tmp.Close()
	tmp = nil
	if err != nil {
		return err
	}
	// Last chance to honour cancellation: after the link the object exists.
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := os.Link(tmpName, final); err != nil {
		if errors.Is(err, fs.ErrExist) {
			if fi, serr := os.Lstat(final); serr == nil && fi.IsDir() {
				return errIsDir
			}
			return ErrExists
		}
		return err
	}
	// The object is published. Drop the temporary name, then make the
	// directory durable before the caller commits the version that refers to
	// the object.
	// A leftover temporary name would be harmless: List skips it.
	_ = os.Remove(tmpName)
	return syncDir(dir)
}

// copyChunk is what FS.Put hands write(2) at a time: io.Copy's 32 KiB
// (os.File.ReadFrom falls back to it for a reader that is not a file)
// costs eight times the syscalls, and each copies into the page cache
// anyway.
const copyChunk = 256 << 10

var copyBufs = sync.Pool{New: func() any { b := make([]byte, copyChunk); return &b }}

// copyInto copies g's stream to f. A stream that writes itself
// (io.WriterTo) does, so that an encrypting reader's 256 KiB chunks go
// from its buffer to the file without a copy in between (+3% MB per
// CPU-second re-encrypting, BenchmarkReencrypt/fs); a file does not, since os.File's WriteTo to anything
// but a file or socket falls back to io.Copy's 32 KiB reads.
func copyInto(f *os.File, g *guardedReader) error {
	if wt, ok := g.r.(io.WriterTo); ok {
		if _, isFile := g.r.(*os.File); !isFile {
			return g.writeTo(f, wt)
		}
	}
	return copyChunks(f, g)
}

// copyChunks copies r to f in whole chunks (a reader handing out less at
// a time, like an encrypting one, is read until a chunk is full). Only
// io.EOF ends it: any other error, io.ErrUnexpectedEOF included, fails it.
func copyChunks(f *os.File, r io.Reader) error {
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	for {
		n := 0
		var err error
		for n < len(buf) && err == nil {
			var k int
			k, err = r.Read(buf[n:])
			n += k
		}
		if n > 0 {
			if _, werr := f.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// preallocate gives a temporary file of known size its blocks up front
// (fallocate, keeping the size at 0 until the writes extend it). On ext4,
// with delayed allocation, every buffered write otherwise reserves space,
// inserts extent-status entries and charges quota block by block (4 KiB),
// and the fsync then allocates: for 2 MiB segments that bookkeeping was
// about 40% of the write(2) time in the backfill benchmark. Into an
// allocated (unwritten) extent the writes only fill the page cache, and
// the fsync converts the extent once it is on disk, as ext4 does on its
// own for delayed allocations (dioread_nolock). It is only a hint: a
// filesystem without fallocate, or one that is full, leaves the writes to
// allocate or to fail as before.
func preallocate(f *os.File, size int64) {
	_ = unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_KEEP_SIZE, 0, size)
}

// errIsDir is returned by FS.Put for a name that is already the prefix of
// other objects: FS cannot hold both, unlike Azure.
var errIsDir = errors.New("name is a directory holding other objects")

// createTemp creates the temporary file for a Put in dir. A concurrent
// Delete may remove dir once it is empty, between MkdirAll and CreateTemp, so
// a vanished directory is recreated a few times before giving up.
func createTemp(dir string) (*os.File, error) {
	var err error
	for range 3 {
		if err = os.MkdirAll(dir, dirPerm); err != nil {
			if errors.Is(err, syscall.ENOTDIR) || errors.Is(err, fs.ErrExist) {
				return nil, fmt.Errorf("a prefix of the name is an object: %w", err)
			}
			return nil, err
		}
		var tmp *os.File
		tmp, err = os.CreateTemp(dir, tmpPrefix+"*")
		if err == nil {
			return tmp, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	}
	return nil, err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// open opens a regular file for name. Directories are not objects: they are
// only the prefixes of objects' names.
func (f *FS) open(op, name string) (*os.File, fs.FileInfo, error) {
	if err := checkName(op, name); err != nil {
		return nil, nil, err
	}
	file, err := os.Open(f.path(name))
	if err != nil {
		if isMissing(err) {
			return nil, nil, fmt.Errorf("storage: %s %q: %w", op, name, ErrNotFound)
		}
		return nil, nil, fmt.Errorf("storage: %s %q: %w", op, name, err)
	}
	fi, err := file.Stat()
	if err != nil {
		file.Close()
		return nil, nil, fmt.Errorf("storage: %s %q: %w", op, name, err)
	}
	if !fi.Mode().IsRegular() {
		file.Close()
		return nil, nil, fmt.Errorf("storage: %s %q: %w", op, name, ErrNotFound)
	}
	return file, fi, nil
}

// Get opens the object's file. The context is only checked up front: reads
// from a local file do not block long enough to need cancelling.
func (f *FS) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("storage: get %q: %w", name, err)
	}
	file, _, err := f.open("get", name)
	if err != nil {
		return nil, err
	}
	return file, nil
}

// GetRange reads part of the object's file.
func (f *FS) GetRange(ctx context.Context, name string, offset, length int64) (io.ReadCloser, error) {
	if offset < 0 {
		return nil, fmt.Errorf("storage: get %q: negative offset %d", name, offset)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("storage: get %q: %w", name, err)
	}
	file, fi, err := f.open("get", name)
	if err != nil {
		return nil, err
	}
	n := max(fi.Size()-offset, 0)
	if length >= 0 {
		n = min(n, length)
	}
	return readCloser{io.NewSectionReader(file, offset, n), file}, nil
}

// Stat describes the object's file.
func (f *FS) Stat(ctx context.Context, name string) (ObjectInfo, error) {
	if err := ctx.Err(); err != nil {
		return ObjectInfo{}, fmt.Errorf("storage: stat %q: %w", name, err)
	}
	if err := checkName("stat", name); err != nil {
		return ObjectInfo{}, err
	}
	fi, err := os.Stat(f.path(name))
	if err != nil {
		if isMissing(err) {
			return ObjectInfo{}, fmt.Errorf("storage: stat %q: %w", name, ErrNotFound)
		}
		return ObjectInfo{}, fmt.Errorf("storage: stat %q: %w", name, err)
	}
	if !fi.Mode().IsRegular() {
		return ObjectInfo{}, fmt.Errorf("storage: stat %q: %w", name, ErrNotFound)
	}
	return fileInfo(name, fi), nil
}

func fileInfo(name string, fi fs.FileInfo) ObjectInfo {
	return ObjectInfo{
		Name:    name,
		Size:    fi.Size(),
		ModTime: fi.ModTime(),
	}
}

// List walks the tree below the deepest directory the prefix names
// completely. It visits each directory's entries sorted as if every
// directory name ended in '/', which makes the depth-first order equal to the
// lexical order of full names ("a-b" < "a/b" because '-' < '/') without
// collecting the whole listing first.
func (f *FS) List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	if err := validatePrefix(prefix); err != nil {
		return err
	}
	base := ""
	if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
		base = prefix[:i+1]
	}
	err := f.walk(ctx, base, prefix, fn)
	var stop fnError
	if errors.As(err, &stop) {
		return stop.err
	}
	if err != nil {
		return fmt.Errorf("storage: list %q: %w", prefix, err)
	}
	return nil
}

// fnError carries the callback's error out of the walk untouched.
type fnError struct{ err error }

func (e fnError) Error() string { return e.err.Error() }

// walk lists directory rel ("" or ending in '/'). It keeps one string per
// entry of the directory (its name, with '/' appended for a directory: the
// sort key), not the entries themselves, since a legacy catalogue's top
// directory may hold 100,000 titles; a file's size is read when it is
// visited.
func (f *FS) walk(ctx context.Context, rel, prefix string, fn func(ObjectInfo) error) error {
	keys, err := f.dirKeys(rel)
	if err != nil {
		// The prefix names no directory, or a concurrent Delete pruned it.
		if isMissing(err) {
			return nil
		}
		return err
	}
	slices.Sort(keys)
	for _, key := range keys {
		if err := ctx.Err(); err != nil {
			return err
		}
		name := rel + key
		if strings.HasSuffix(key, "/") {
			// Descend only where names can still match the prefix.
			if strings.HasPrefix(name, prefix) || strings.HasPrefix(prefix, name) {
				if err := f.walk(ctx, name, prefix, fn); err != nil {
					return err
				}
			}
			continue
		}
		if !strings.HasPrefix(name, prefix) || validateName(name, maxNameLen) != nil {
			continue
		}
		fi, err := os.Lstat(f.path(name))
		if err != nil {
			if isMissing(err) {
				continue // deleted since it was listed
			}
			return err
		}
		// Temporary files, symlinks and files that no valid name could
		// address are not objects.
		if !fi.Mode().IsRegular() {
			continue
		}
		if err := fn(fileInfo(name, fi)); err != nil {
			return fnError{err}
		}
	}
	return nil
}

// dirKeys reads directory rel in batches and returns its entries' sort
// keys: a directory's name ends in '/', so that sorting the keys sorts
// full names lexically ("a-b" < "a/b" because '-' < '/').
func (f *FS) dirKeys(rel string) ([]string, error) {
	d, err := os.Open(filepath.Join(f.dir, filepath.FromSlash(rel)))
	if err != nil {
		return nil, err
	}
	defer d.Close()
	var keys []string
	for {
		batch, err := d.ReadDir(1024)
		for _, e := range batch {
			if e.IsDir() {
				keys = append(keys, e.Name()+"/")
			} else if e.Type().IsRegular() {
				keys = append(keys, e.Name())
			}
		}
		if err == io.EOF {
			return keys, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// Delete removes the object's file, then any directories this left empty, so
// that deleting old versions does not leave a skeleton of empty directories.
func (f *FS) Delete(ctx context.Context, name string) error {
	if err := checkName("delete", name); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("storage: delete %q: %w", name, err)
	}
	p := f.path(name)
	fi, err := os.Lstat(p)
	if err != nil {
		if isMissing(err) {
			return nil
		}
		return fmt.Errorf("storage: delete %q: %w", name, err)
	}
	if fi.IsDir() {
		return nil // a prefix of other objects, not an object
	}
	if err := os.Remove(p); err != nil && !isMissing(err) {
		return fmt.Errorf("storage: delete %q: %w", name, err)
	}
	// os.Remove refuses non-empty directories, so pruning cannot take away
	// another object; a Put racing with it recreates the directory.
	for d := filepath.Dir(p); d != f.dir && strings.HasPrefix(d, f.dir); d = filepath.Dir(d) {
		if os.Remove(d) != nil {
			break
		}
	}
	return nil
}
