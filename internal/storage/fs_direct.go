package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Direct (O_DIRECT) I/O on FS.
//
// A buffered write copies every byte into the page cache, and fsync then
// writes the dirty pages out; a read-back copies them out again. For a
// large object that is written once and read once (a backfill re-encrypts a
// catalogue that does not fit in memory, and each segment is verified right
// after it is stored) that copying is CPU the work does not need, and the
// pages it fills evict what the gateway serves. With O_DIRECT the device
// reads and writes the process's buffers itself. This is what MinIO does
// for large objects, for the same two reasons.
//
// O_DIRECT needs buffers, offsets and lengths aligned to the device's
// logical block; directAlign (4096) is a multiple of every common one. A
// filesystem that refuses O_DIRECT (EINVAL at open, at fcntl or at the
// first transfer: some tmpfs, overlay or FUSE mounts) is used buffered
// from then on, for the life of the FS, without an error.
//
// Direct I/O changes how bytes travel, not what is durable or visible:
// Put still fsyncs the file and its directory and publishes by hard link,
// and an O_DIRECT read sees what a buffered one would (the kernel writes
// back dirty cached pages of the range before reading around the cache).

// directAlign is the alignment of direct transfers: buffer addresses, file
// offsets and lengths.
const directAlign = 4096

// directMin is the smallest object Put writes with O_DIRECT: a smaller one
// (a playlist, an init section) is written buffered, where a direct write
// would wait for the device for a few KiB. Put decides on its first chunk,
// so whether or not the size was given.
const directMin = 256 << 10

// alignedBufs hands out copyChunk-byte buffers for Put's copy and for
// uncached reads. At most one per Put or open reader is out at a time, so
// their number follows the caller's concurrency; a buffer returned is kept
// for the next caller, never freed, so memory stays at the peak number of
// transfers in flight.
//
// The buffers are carved out of 2 MiB anonymous mappings advised
// MADV_HUGEPAGE, which makes them aligned for O_DIRECT and, where the
// kernel grants transparent huge pages, cheap to pin: a direct transfer
// pins its buffer's pages for the device, one reference per 4 KiB page
// otherwise, and that per-page pinning cost more CPU than the page-cache
// copy it replaced. Without huge pages (or if mmap fails) they are still
// aligned, from the Go heap.
var alignedBufs bufPool

type bufPool struct {
	mu   sync.Mutex
	free []*[]byte
}

// hugeRegion is the size of the mappings bufPool carves buffers from.
const hugeRegion = 2 << 20

func (p *bufPool) Get() any {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.free) == 0 {
		p.grow()
	}
	b := p.free[len(p.free)-1]
	p.free = p.free[:len(p.free)-1]
	return b
}

func (p *bufPool) Put(b any) {
	p.mu.Lock()
	p.free = append(p.free, b.(*[]byte))
	p.mu.Unlock()
}

// grow adds the buffers of one more region (or one heap buffer).
func (p *bufPool) grow() {
	if copyChunk <= hugeRegion {
		if region, err := hugeMapping(); err == nil {
			for off := 0; off+copyChunk <= len(region); off += copyChunk {
				b := region[off : off+copyChunk : off+copyChunk]
				p.free = append(p.free, &b)
			}
			return
		}
	}
	b := alignedBuf(copyChunk)
	p.free = append(p.free, &b)
}

// hugeMapping maps hugeRegion bytes at a multiple of hugeRegion (it maps
// twice that and unmaps what lies outside) and asks for huge pages.
func hugeMapping() ([]byte, error) {
	m, err := unix.Mmap(-1, 0, 2*hugeRegion, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, err
	}
	addr := uintptr(unsafe.Pointer(unsafe.SliceData(m)))
	head := int((hugeRegion - addr%hugeRegion) % hugeRegion)
	region := m[head : head+hugeRegion : head+hugeRegion]
	// Unmap what lies outside the region (raw munmap: unix.Munmap only
	// takes whole mappings it made).
	if head > 0 {
		unix.Syscall(unix.SYS_MUNMAP, addr, uintptr(head), 0)
	}
	if tail := len(m) - head - hugeRegion; tail > 0 {
		unix.Syscall(unix.SYS_MUNMAP, addr+uintptr(head+hugeRegion), uintptr(tail), 0)
	}
	_ = unix.Madvise(region, unix.MADV_HUGEPAGE)
	return region, nil
}

// alignedBuf returns n bytes starting at a multiple of directAlign: it
// allocates one alignment more and slices (the slice keeps the whole
// allocation alive).
func alignedBuf(n int) []byte {
	b := make([]byte, n+directAlign)
	off := 0
	if r := int(uintptr(unsafe.Pointer(unsafe.SliceData(b))) & (directAlign - 1)); r != 0 {
		off = directAlign - r
	}
	return b[off : off+n : off+n]
}

// isAligned reports whether p starts at a multiple of directAlign.
func isAligned(p []byte) bool {
	return uintptr(unsafe.Pointer(unsafe.SliceData(p)))&(directAlign-1) == 0
}

// refusesDirect reports an error meaning "this file cannot do O_DIRECT".
// Misaligned transfers fail with EINVAL too, but this file never makes one.
func refusesDirect(err error) bool {
	return errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP)
}

// setDirect sets or clears O_DIRECT on an open file. It is a variable so
// that tests can play a filesystem that refuses O_DIRECT.
var setDirect = func(f *os.File, on bool) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		var fl int
		if fl, serr = unix.FcntlInt(fd, unix.F_GETFL, 0); serr != nil {
			return
		}
		if on {
			fl |= unix.O_DIRECT
		} else {
			fl &^= unix.O_DIRECT
		}
		_, serr = unix.FcntlInt(fd, unix.F_SETFL, fl)
	}); err != nil {
		return err
	}
	if serr != nil {
		return os.NewSyscallError("fcntl", serr)
	}
	return nil
}

// openDirect opens a file for reading with O_DIRECT; a variable for the
// same reason as setDirect.
var openDirect = func(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDONLY|unix.O_DIRECT, 0)
}

// directWrite is the direct write; a variable for the same reason.
var directWrite = (*os.File).Write

// directOK reports whether this store still tries O_DIRECT.
func (f *FS) directOK() bool { return !f.noDirect.Load() }

// directWriter writes one Put's temporary file: whole aligned blocks with
// O_DIRECT once the object has shown itself large, the rest buffered.
type directWriter struct {
	fs     *FS
	file   *os.File
	direct bool // O_DIRECT is set on file
}

// write writes p, the next chunk: it starts at an aligned address and an
// aligned file offset, and only the last chunk is shorter than copyChunk.
// A first chunk of directMin or more switches O_DIRECT on (if the store
// still tries it); then the whole blocks of each chunk go direct, and a
// tail of less than a block (only ever in the last chunk) buffered.
func (w *directWriter) write(p []byte) error {
	if !w.direct && len(p) >= directMin && w.fs.directOK() {
		if err := setDirect(w.file, true); err != nil {
			if !refusesDirect(err) {
				return err
			}
			w.fs.noDirect.Store(true)
		} else {
			w.direct = true
		}
	}
	if !w.direct {
		_, err := w.file.Write(p)
		return err
	}
	whole := len(p) &^ (directAlign - 1)
	if whole > 0 {
		if n, err := directWrite(w.file, p[:whole]); err != nil {
			if !refusesDirect(err) {
				return err
			}
			// The filesystem took the flag but refuses the transfer
			// (none of it was written): the rest of the object is
			// written buffered.
			w.fs.noDirect.Store(true)
			if err := w.buffered(); err != nil {
				return err
			}
			_, err = w.file.Write(p[n:])
			return err
		}
	}
	if tail := p[whole:]; len(tail) > 0 {
		if err := w.buffered(); err != nil {
			return err
		}
		if _, err := w.file.Write(tail); err != nil {
			return err
		}
	}
	return nil
}

// buffered clears O_DIRECT, for a tail that is not a whole block.
func (w *directWriter) buffered() error {
	if !w.direct {
		return nil
	}
	w.direct = false
	return setDirect(w.file, false)
}

// GetUncached is Get for a reader that reads the object once, from start
// to end, and is not going to read it again soon: it reads the file with
// O_DIRECT, so neither through the page cache nor into it. Verification
// (the read-back of what was just stored, which then comes from the disk,
// not from memory) and a backfill's reads of legacy sources use it; the
// gateway, which serves hot segments many times, keeps using Get.
//
// The reader holds one pooled buffer until Close. On a filesystem that
// refuses O_DIRECT it reads through the page cache, like Get.
func (f *FS) GetUncached(ctx context.Context, name string) (io.ReadCloser, error) {
	return f.getUncached(ctx, name, 0, -1)
}

// GetRangeUncached is GetRange as GetUncached is Get.
func (f *FS) GetRangeUncached(ctx context.Context, name string, offset, length int64) (io.ReadCloser, error) {
	if offset < 0 {
		return nil, fmt.Errorf("storage: get %q: negative offset %d", name, offset)
	}
	return f.getUncached(ctx, name, offset, length)
}

func (f *FS) getUncached(ctx context.Context, name string, offset, length int64) (io.ReadCloser, error) {
	if !f.directOK() {
		return f.GetRange(ctx, name, offset, length)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("storage: get %q: %w", name, err)
	}
	if err := checkName("get", name); err != nil {
		return nil, err
	}
	file, err := openDirect(f.path(name))
	if err != nil {
		if refusesDirect(err) {
			f.noDirect.Store(true)
			return f.GetRange(ctx, name, offset, length)
		}
		if isMissing(err) {
			return nil, fmt.Errorf("storage: get %q: %w", name, ErrNotFound)
		}
		return nil, fmt.Errorf("storage: get %q: %w", name, err)
	}
	fi, err := file.Stat()
	if err != nil {
		file.Close()
		return nil, fmt.Errorf("storage: get %q: %w", name, err)
	}
	if !fi.Mode().IsRegular() {
		file.Close()
		return nil, fmt.Errorf("storage: get %q: %w", name, ErrNotFound)
	}
	n := max(fi.Size()-offset, 0)
	if length >= 0 {
		n = min(n, length)
	}
	if n == 0 {
		file.Close()
		return emptyBody(), nil
	}
	start := offset &^ (directAlign - 1)
	return &uncachedReader{fs: f, file: file, name: name, pos: start, skip: int(offset - start), remain: n, direct: true}, nil
}

// uncachedReader reads [pos+skip, pos+skip+remain) of a file opened with
// O_DIRECT, in aligned chunks from aligned offsets: into the caller's
// buffer when that is aligned itself (no copy at all), otherwise through a
// pooled one.
type uncachedReader struct {
	fs     *FS
	file   *os.File
	name   string
	bp     *[]byte // pooled buffer, taken at the first read that needs it
	data   []byte  // read but not yet returned, within *bp
	pos    int64   // file offset of the next read: aligned while direct
	skip   int     // bytes at pos before the range (offset's misalignment)
	remain int64   // bytes of the range not yet returned
	eof    bool    // the file ended at pos
	direct bool
}

func (r *uncachedReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		if r.remain == 0 || r.eof {
			return 0, io.EOF
		}
		if len(p) == 0 {
			return 0, nil
		}
		// Straight into p when it can take a direct transfer. Read may
		// use all of p as scratch, so reading past the range is fine.
		if r.direct && r.skip == 0 && len(p) >= directAlign && isAligned(p) {
			k, err := r.readAt(p[:len(p)&^(directAlign-1)])
			k = int(min(int64(k), r.remain))
			r.remain -= int64(k)
			if k > 0 {
				return k, nil
			}
			return 0, err
		}
		if r.bp == nil {
			r.bp = alignedBufs.Get().(*[]byte)
		}
		k, err := r.readAt(*r.bp)
		if k <= r.skip {
			// The file ended before the range began: it is shorter than
			// when it was opened, which an object never becomes.
			r.skip, r.remain = 0, 0
			if err == nil {
				err = io.EOF
			}
			return 0, err
		}
		r.data = (*r.bp)[r.skip:k]
		r.skip = 0
		if int64(len(r.data)) > r.remain {
			r.data = r.data[:r.remain]
		}
		if len(r.data) == 0 {
			return 0, err
		}
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	r.remain -= int64(n)
	return n, nil
}

// readAt reads len(p) bytes at pos, or up to the end of the file (then
// setting eof, and returning io.EOF only if it read nothing). A filesystem
// that refuses the first direct read is read buffered from then on.
func (r *uncachedReader) readAt(p []byte) (int, error) {
	k, err := r.file.ReadAt(p, r.pos)
	if err != nil && k == 0 && r.direct && refusesDirect(err) {
		r.fs.noDirect.Store(true)
		r.direct = false
		if serr := setDirect(r.file, false); serr != nil {
			return 0, fmt.Errorf("storage: get %q: %w", r.name, serr)
		}
		k, err = r.file.ReadAt(p, r.pos)
	}
	r.pos += int64(k)
	if err == io.EOF {
		r.eof = true
		if k > 0 {
			err = nil
		}
	}
	if err != nil && err != io.EOF {
		err = fmt.Errorf("storage: get %q: %w", r.name, err)
	}
	return k, err
}

// Close closes the file and returns the buffer to the pool.
func (r *uncachedReader) Close() error {
	if r.bp != nil {
		alignedBufs.Put(r.bp)
		r.bp, r.data = nil, nil
	}
	return r.file.Close()
}
