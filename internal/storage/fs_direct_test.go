package storage

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Sizes around the alignment, the direct threshold and the chunk.
var directSizes = []int{0, 1, directAlign - 1, directAlign, directAlign + 1,
	directMin - 1, directMin, directMin + 1, copyChunk - 1, copyChunk, copyChunk + 1,
	3*copyChunk + 17}

// stingyReader hands out at most n bytes a Read, as an encrypting reader
// does, so that Put has to fill its chunks.
type stingyReader struct {
	r io.Reader
	n int
}

func (s stingyReader) Read(p []byte) (int, error) { return s.r.Read(p[:min(len(p), s.n)]) }

// residentPages counts the pages of the file in the page cache.
func residentPages(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	if fi.Size() == 0 {
		return 0
	}
	m, err := unix.Mmap(int(f.Fd()), 0, int(fi.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	vec := make([]byte, (len(m)+os.Getpagesize()-1)/os.Getpagesize())
	if _, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0]))); e != 0 {
		t.Fatal(e)
	}
	n := 0
	for _, v := range vec {
		n += int(v & 1)
	}
	return n
}

// onTmpfs reports a store whose pages are its storage: every page is
// always resident there.
func onTmpfs(f *FS) bool {
	var st unix.Statfs_t
	return unix.Statfs(f.dir, &st) == nil && st.Type == unix.TMPFS_MAGIC
}

func TestFSDirectPut(t *testing.T) {
	f := newTestFS(t)
	for _, size := range directSizes {
		for _, known := range []bool{true, false} {
			name := fmt.Sprintf("d/%d-%v", size, known)
			t.Run(name, func(t *testing.T) {
				data := payload(size, uint64(size))
				n := int64(size)
				if !known {
					n = -1
				}
				if err := f.Put(t.Context(), name, stingyReader{bytes.NewReader(data), 7001}, n, PutOptions{}); err != nil {
					t.Fatal(err)
				}
				fi, err := os.Stat(f.path(name))
				if err != nil || fi.Mode().Perm() != objectPerm {
					t.Fatalf("published file: %v %v", fi, err)
				}
				rc, err := f.GetUncached(t.Context(), name)
				if got := readAll(t, rc, err); !bytes.Equal(got, data) {
					t.Fatalf("GetUncached: %d bytes, want %d (content differs)", len(got), len(data))
				}
				// Written direct and read back direct, a large object
				// leaves at most the page of its buffered tail cached.
				if size >= directMin && !onTmpfs(f) {
					if n := residentPages(t, f.path(name)); n > 1 {
						t.Errorf("%d pages of the object are in the page cache, want at most 1", n)
					}
				}
				if got := mustGet(t, f, name); !bytes.Equal(got, data) {
					t.Fatalf("Get: %d bytes, want %d (content differs)", len(got), len(data))
				}
			})
		}
	}
	if f.noDirect.Load() && !onTmpfs(f) {
		t.Error("the store gave up O_DIRECT")
	}
}

func TestFSUncachedRange(t *testing.T) {
	f := newTestFS(t)
	const size = 3*copyChunk + 17
	data := payload(size, 3)
	mustPut(t, f, "r/obj", data, PutOptions{})
	offsets := []int64{0, 1, directAlign - 1, directAlign, directAlign + 1, copyChunk - 1, copyChunk, size - 1, size, size + 5}
	lengths := []int64{-1, 0, 1, directAlign, copyChunk + 3, 1 << 40}
	aligned := alignedBuf(64 << 10)
	for _, off := range offsets {
		for _, length := range lengths {
			want := data[min(off, size):]
			if length >= 0 {
				want = want[:min(int64(len(want)), length)]
			}
			rc, err := f.GetRangeUncached(t.Context(), "r/obj", off, length)
			if got := readAll(t, rc, err); !bytes.Equal(got, want) {
				t.Errorf("GetRangeUncached(%d, %d): %d bytes, want %d (or content differs)", off, length, len(got), len(want))
			}
			// An aligned buffer takes the transfer itself.
			rc, err = f.GetRangeUncached(t.Context(), "r/obj", off, length)
			if err != nil {
				t.Fatal(err)
			}
			var got []byte
			for {
				n, err := rc.Read(aligned)
				got = append(got, aligned[:n]...)
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			rc.Close()
			if !bytes.Equal(got, want) {
				t.Errorf("GetRangeUncached(%d, %d) into an aligned buffer: %d bytes, want %d (or content differs)", off, length, len(got), len(want))
			}
		}
	}
	if _, err := f.GetRangeUncached(t.Context(), "r/obj", -1, 1); err == nil {
		t.Error("negative offset accepted")
	}
	if _, err := f.GetUncached(t.Context(), "r/missing"); !isNotFound(err) {
		t.Errorf("missing object: %v", err)
	}
	if _, err := f.GetUncached(t.Context(), "r"); !isNotFound(err) {
		t.Errorf("directory: %v", err)
	}
}

func isNotFound(err error) bool { return errors.Is(err, ErrNotFound) }

// TestFSDirectRefused plays a filesystem that refuses O_DIRECT at each
// step: the store falls back to buffered I/O, once, without an error.
func TestFSDirectRefused(t *testing.T) {
	realSet, realOpen, realWrite := setDirect, openDirect, directWrite
	t.Cleanup(func() { setDirect, openDirect, directWrite = realSet, realOpen, realWrite })
	data := payload(2*copyChunk+5, 9)
	for _, step := range []string{"fcntl", "write", "open"} {
		t.Run(step, func(t *testing.T) {
			setDirect, openDirect, directWrite = realSet, realOpen, realWrite
			calls := 0
			switch step {
			case "fcntl":
				setDirect = func(f *os.File, on bool) error {
					if on {
						calls++
						return os.NewSyscallError("fcntl", unix.EINVAL)
					}
					return realSet(f, on)
				}
			case "write":
				directWrite = func(f *os.File, p []byte) (int, error) {
					calls++
					return 0, &os.PathError{Op: "write", Path: f.Name(), Err: unix.EINVAL}
				}
			case "open":
				openDirect = func(string) (*os.File, error) {
					calls++
					return nil, &os.PathError{Op: "open", Err: unix.EINVAL}
				}
			}
			f := newTestFS(t)
			for i := range 3 {
				name := fmt.Sprintf("x/%d", i)
				mustPut(t, f, name, data, PutOptions{})
				rc, err := f.GetUncached(t.Context(), name)
				if got := readAll(t, rc, err); !bytes.Equal(got, data) {
					t.Fatalf("GetUncached after refusal: %d bytes, want %d", len(got), len(data))
				}
				if got := mustGet(t, f, name); !bytes.Equal(got, data) {
					t.Fatalf("Get after refusal: %d bytes, want %d", len(got), len(data))
				}
			}
			if !f.noDirect.Load() {
				t.Error("the store still tries O_DIRECT")
			}
			if calls != 1 {
				t.Errorf("O_DIRECT refused %d times, want once (then not tried again)", calls)
			}
		})
	}
}
