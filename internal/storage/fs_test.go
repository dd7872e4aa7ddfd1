package storage

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

func newTestFS(t testing.TB) *FS {
	t.Helper()
	f, err := NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestFS(t *testing.T) {
	testStore(t, newTestFS(t))
}

func TestFSLayout(t *testing.T) {
	f := newTestFS(t)
	mustPut(t, f, "hls/v1/seg.ts", []byte("seg"), PutOptions{})

	fi, err := os.Stat(filepath.Join(f.dir, "hls", "v1", "seg.ts"))
	if err != nil {
		t.Fatalf("object is not at dir/name: %v", err)
	}
	// Private to the storing user, whatever the umask.
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("object mode %v, want 0600", perm)
	}
	fresh, err := NewFS(filepath.Join(t.TempDir(), "store"))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{fresh.dir, filepath.Join(f.dir, "hls"), filepath.Join(f.dir, "hls", "v1")} {
		if di, err := os.Stat(d); err != nil || di.Mode().Perm() != 0o700 {
			t.Errorf("directory %s: %v %v, want mode 0700", d, di, err)
		}
	}
	if want := "file://" + f.dir; f.String() != want {
		t.Errorf("String() = %q, want %q", f.String(), want)
	}

	t.Run("temporary files are invisible", func(t *testing.T) {
		stale := filepath.Join(f.dir, "hls", "v1", tmpPrefix+"123")
		if err := os.WriteFile(stale, []byte("half"), 0o600); err != nil {
			t.Fatal(err)
		}
		defer os.Remove(stale)
		var got []string
		f.List(t.Context(), "", func(o ObjectInfo) error { got = append(got, o.Name); return nil })
		if !slices.Equal(got, []string{"hls/v1/seg.ts"}) {
			t.Errorf("List = %q", got)
		}
		if _, err := f.Stat(t.Context(), "hls/v1/"+tmpPrefix+"123"); !errors.Is(err, ErrInvalidName) {
			t.Errorf("Stat(temporary file): err = %v, want ErrInvalidName", err)
		}
	})

	t.Run("object below an object", func(t *testing.T) {
		err := f.Put(t.Context(), "hls/v1/seg.ts/x", strings.NewReader("x"), 1, PutOptions{})
		if err == nil || errors.Is(err, ErrExists) {
			t.Errorf("Put below an object: err = %v, want a plain error", err)
		}
		assertNoTemp(t, f)
	})

	t.Run("name of a directory", func(t *testing.T) {
		err := f.Put(t.Context(), "hls/v1", strings.NewReader("x"), 1, PutOptions{})
		if err == nil || errors.Is(err, ErrExists) {
			t.Errorf("Put over a directory: err = %v, want a plain error", err)
		}
		if err := f.Delete(t.Context(), "hls/v1"); err != nil {
			t.Errorf("Delete(directory) = %v, want nil (not an object)", err)
		}
		if got := mustGet(t, f, "hls/v1/seg.ts"); string(got) != "seg" {
			t.Errorf("directory content changed: %q", got)
		}
	})

	t.Run("delete prunes empty directories", func(t *testing.T) {
		mustPut(t, f, "gc/v1/a/b/c.ts", []byte("x"), PutOptions{})
		if err := f.Delete(t.Context(), "gc/v1/a/b/c.ts"); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(f.dir, "gc")); !os.IsNotExist(err) {
			t.Errorf("empty directories remain: %v", err)
		}
		if _, err := os.Stat(f.dir); err != nil {
			t.Errorf("root removed: %v", err)
		}
	})
}

func TestNewFS(t *testing.T) {
	t.Run("creates the directory", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "a", "b")
		if _, err := NewFS(dir); err != nil {
			t.Fatal(err)
		}
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			t.Fatalf("directory not created: %v", err)
		}
	})
	t.Run("relative becomes absolute", func(t *testing.T) {
		t.Chdir(t.TempDir())
		f, err := NewFS("store")
		if err != nil {
			t.Fatal(err)
		}
		if !filepath.IsAbs(f.dir) {
			t.Errorf("dir %q is relative", f.dir)
		}
	})
	t.Run("not a directory", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "file")
		os.WriteFile(file, nil, 0o644)
		if _, err := NewFS(file); err == nil {
			t.Error("NewFS on a file succeeded")
		}
		if _, err := NewFS(""); err == nil {
			t.Error(`NewFS("") succeeded`)
		}
	})
}

// TestFSProbe: a usable root passes and leaves nothing behind; a root that
// is gone, or that is a file (which fails for root too, unlike a
// read-only directory), fails.
func TestFSProbe(t *testing.T) {
	f := newTestFS(t)
	if err := f.Probe(t.Context()); err != nil {
		t.Fatalf("probe: %v", err)
	}
	if left, _ := os.ReadDir(f.dir); len(left) != 0 {
		t.Errorf("probe left %v", left)
	}
	if err := os.Remove(f.dir); err != nil {
		t.Fatal(err)
	}
	if err := f.Probe(t.Context()); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("probe of a removed root: %v", err)
	}
	if err := os.WriteFile(f.dir, []byte("not a directory"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := f.Probe(t.Context()); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("probe of a root that is a file: %v", err)
	}
}

// TestFSPreallocated covers Puts large enough to be preallocated: the
// object has exactly its bytes and no blocks past them, and a stream that
// ends early or runs long still publishes nothing.
func TestFSPreallocated(t *testing.T) {
	f := newTestFS(t)
	for _, n := range []int{copyChunk, copyChunk + 1, 2<<20 + 16, 5<<20 + 4095} {
		name := fmt.Sprintf("p/%d", n)
		data := payload(n, uint64(n))
		if err := f.Put(t.Context(), name, onlyReader{bytes.NewReader(data)}, int64(n), PutOptions{}); err != nil {
			t.Fatal(err)
		}
		if got := mustGet(t, f, name); !bytes.Equal(got, data) {
			t.Fatalf("%s: got %d bytes, want %d (or content differs)", name, len(got), n)
		}
		var st syscall.Stat_t
		if err := syscall.Stat(f.path(name), &st); err != nil {
			t.Fatal(err)
		}
		if st.Size != int64(n) || st.Blocks*512 > int64(n)+64<<10 {
			t.Errorf("%s: size %d with %d bytes of blocks, want %d with no more than what holds it", name, st.Size, st.Blocks*512, n)
		}
	}
	data := payload(3<<20, 5)
	for _, c := range []struct {
		what string
		body []byte
	}{{"short", data[:len(data)-1]}, {"long", append(slices.Clip(data), 0)}} {
		err := f.Put(t.Context(), "p/"+c.what, onlyReader{bytes.NewReader(c.body)}, int64(len(data)), PutOptions{})
		if err == nil {
			t.Errorf("%s stream: Put succeeded", c.what)
		}
		if _, err := f.Stat(t.Context(), "p/"+c.what); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s stream: Stat = %v, want ErrNotFound", c.what, err)
		}
	}
	assertNoTemp(t, f)
}
