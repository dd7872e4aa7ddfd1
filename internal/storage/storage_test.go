package storage

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// testStore is the conformance suite every backend must pass. Each subtest
// works under its own name prefix, so one store serves them all.
func testStore(t *testing.T, s Store) {
	t.Run("RoundTrip", func(t *testing.T) { testRoundTrip(t, s) })
	t.Run("NeverOverwrites", func(t *testing.T) { testNeverOverwrites(t, s) })
	t.Run("ConcurrentPuts", func(t *testing.T) { testConcurrentPuts(t, s) })
	t.Run("NotFound", func(t *testing.T) { testNotFound(t, s) })
	t.Run("GetRange", func(t *testing.T) { testGetRange(t, s) })
	t.Run("Stat", func(t *testing.T) { testStat(t, s) })
	t.Run("List", func(t *testing.T) { testList(t, s) })
	t.Run("Delete", func(t *testing.T) { testDelete(t, s) })
	t.Run("FailedPutLeavesNothing", func(t *testing.T) { testFailedPut(t, s) })
	t.Run("InvalidNames", func(t *testing.T) { testInvalidNames(t, s) })
}

// payload returns n reproducible, non-repeating bytes.
func payload(n int, seed uint64) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// onlyReader hides every method but Read, so Put cannot seek.
type onlyReader struct{ r io.Reader }

func (o onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }

func mustPut(t *testing.T, s Store, name string, data []byte, opts PutOptions) {
	t.Helper()
	if err := s.Put(t.Context(), name, bytes.NewReader(data), int64(len(data)), opts); err != nil {
		t.Fatalf("Put(%q): %v", name, err)
	}
}

func readAll(t *testing.T, rc io.ReadCloser, err error) []byte {
	t.Helper()
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return b
}

func mustGet(t *testing.T, s Store, name string) []byte {
	t.Helper()
	rc, err := s.Get(t.Context(), name)
	return readAll(t, rc, err)
}

func testRoundTrip(t *testing.T, s Store) {
	const MiB = 1 << 20
	tests := []struct {
		name   string
		n      int
		reader func([]byte) io.Reader
		size   func([]byte) int64
	}{
		{"empty", 0, seeker, known},
		{"small known size", 1000, seeker, known},
		{"small unknown size", 1000, seeker, unknown},
		{"seeker not at start", 4096, func(b []byte) io.Reader {
			// Only what follows the current position is the object.
			r := bytes.NewReader(append(payload(100, 99), b...))
			r.Seek(100, io.SeekStart)
			return r
		}, known},
		{"streamed known size", 5*MiB + 123, nonSeeker, known},
		{"streamed known size beyond one request", maxBufferedPut + 123, nonSeeker, known},
		{"streamed unknown size", 5*MiB + 123, nonSeeker, unknown},
		{"streamed exactly one block", streamBlockSize, nonSeeker, unknown},
		{"streamed small", 1000, nonSeeker, unknown},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			data := payload(tc.n, uint64(i))
			name := fmt.Sprintf("roundtrip/%02d/seg.ts", i)
			if err := s.Put(t.Context(), name, tc.reader(data), tc.size(data), PutOptions{}); err != nil {
				t.Fatalf("Put: %v", err)
			}
			if got := mustGet(t, s, name); !bytes.Equal(got, data) {
				t.Fatalf("Get returned %d bytes, want the %d put", len(got), len(data))
			}
			info, err := s.Stat(t.Context(), name)
			if err != nil {
				t.Fatalf("Stat: %v", err)
			}
			if info.Size != int64(tc.n) || info.Name != name {
				t.Errorf("Stat = %+v, want name %q size %d", info, name, tc.n)
			}
			if age := time.Since(info.ModTime); age < -time.Minute || age > time.Hour {
				t.Errorf("Stat ModTime = %v, not recent", info.ModTime)
			}
		})
	}
}

func seeker(b []byte) io.Reader    { return bytes.NewReader(b) }
func nonSeeker(b []byte) io.Reader { return onlyReader{bytes.NewReader(b)} }
func known(b []byte) int64         { return int64(len(b)) }
func unknown([]byte) int64         { return -1 }

func testNeverOverwrites(t *testing.T, s Store) {
	first := payload(3000, 1)
	tests := []struct {
		name   string
		second io.Reader
		size   int64
	}{
		{"single request", bytes.NewReader(payload(10, 2)), 10},
		{"streamed blocks", onlyReader{bytes.NewReader(payload(5<<20, 3))}, -1},
		{"same bytes", bytes.NewReader(first), int64(len(first))},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			name := fmt.Sprintf("overwrite/%d/index.m3u8", i)
			mustPut(t, s, name, first, PutOptions{})
			err := s.Put(t.Context(), name, tc.second, tc.size, PutOptions{})
			if !errors.Is(err, ErrExists) {
				t.Fatalf("second Put: err = %v, want ErrExists", err)
			}
			if !strings.Contains(err.Error(), name) {
				t.Errorf("error %q does not name the object", err)
			}
			if got := mustGet(t, s, name); !bytes.Equal(got, first) {
				t.Fatalf("object changed after a refused Put: %d bytes, want the original %d", len(got), len(first))
			}
		})
	}
}

// testConcurrentPuts races writers on one name: exactly one must win and the
// object must hold exactly the winner's bytes.
func testConcurrentPuts(t *testing.T, s Store) {
	const writers = 8
	name := "race/seg.ts"
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		winner = -1
		exists int
	)
	for i := range writers {
		wg.Go(func() {
			err := s.Put(t.Context(), name, bytes.NewReader(payload(64<<10, uint64(100+i))), 64<<10, PutOptions{})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				if winner >= 0 {
					t.Errorf("writers %d and %d both succeeded", winner, i)
				}
				winner = i
			case errors.Is(err, ErrExists):
				exists++
			default:
				t.Errorf("writer %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	if winner < 0 || exists != writers-1 {
		t.Fatalf("winner %d, %d ErrExists; want one winner and %d ErrExists", winner, exists, writers-1)
	}
	if got := mustGet(t, s, name); !bytes.Equal(got, payload(64<<10, uint64(100+winner))) {
		t.Fatal("object does not hold the winner's bytes")
	}
}

func testNotFound(t *testing.T, s Store) {
	ctx := t.Context()
	name := "missing/nothing.ts"
	mustPut(t, s, "missing/file", []byte("x"), PutOptions{})
	ops := []struct {
		op   string
		call func(name string) error
	}{
		{"Get", func(n string) error { _, err := s.Get(ctx, n); return err }},
		{"GetRange", func(n string) error { _, err := s.GetRange(ctx, n, 1, 2); return err }},
		{"GetRange empty", func(n string) error { _, err := s.GetRange(ctx, n, 0, 0); return err }},
		{"Stat", func(n string) error { _, err := s.Stat(ctx, n); return err }},
	}
	for _, o := range ops {
		// "missing/file/x" has an object as a prefix: a file on FS.
		for _, n := range []string{name, "missing/file/x", "missing"} {
			if err := o.call(n); !errors.Is(err, ErrNotFound) {
				t.Errorf("%s(%q): err = %v, want ErrNotFound", o.op, n, err)
			} else if !strings.Contains(err.Error(), fmt.Sprintf("%q", n)) {
				t.Errorf("%s(%q): error %q does not name the object", o.op, n, err)
			}
		}
	}
}

func testGetRange(t *testing.T, s Store) {
	data := payload(1000, 7)
	name := "range/seg.ts"
	mustPut(t, s, name, data, PutOptions{})
	mustPut(t, s, "range/empty.ts", nil, PutOptions{})
	tests := []struct {
		offset, length int64
		want           []byte
	}{
		{0, -1, data},
		{0, 10, data[:10]},
		{100, 50, data[100:150]},
		{990, -1, data[990:]},
		{990, 100, data[990:]}, // cut at the end
		{999, 1, data[999:]},
		{1000, -1, nil}, // at the end: empty
		{1000, 5, nil},
		{5000, 5, nil}, // past the end: empty
		{3, 0, nil},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%d+%d", tc.offset, tc.length), func(t *testing.T) {
			rc, err := s.GetRange(t.Context(), name, tc.offset, tc.length)
			if got := readAll(t, rc, err); !bytes.Equal(got, tc.want) {
				t.Errorf("got %d bytes, want %d", len(got), len(tc.want))
			}
		})
	}
	t.Run("empty object", func(t *testing.T) {
		for _, r := range [][2]int64{{0, -1}, {0, 10}, {1, 1}} {
			rc, err := s.GetRange(t.Context(), "range/empty.ts", r[0], r[1])
			if got := readAll(t, rc, err); len(got) != 0 {
				t.Errorf("GetRange(%d, %d) = %d bytes, want none", r[0], r[1], len(got))
			}
		}
	})
	t.Run("negative offset", func(t *testing.T) {
		if _, err := s.GetRange(t.Context(), name, -1, 5); err == nil {
			t.Error("GetRange(-1, 5) succeeded")
		}
	})
}

func testStat(t *testing.T, s Store) {
	_, isAzure := s.(*Azure)
	// Azure keeps what the caller says; FS keeps neither property (the
	// layout names the content type of what we publish).
	tests := []struct {
		name string
		opts PutOptions
	}{
		{"stat/master.m3u8", PutOptions{ContentType: "application/vnd.apple.mpegurl"}},
		{"stat/v0/seg_00001.ts", PutOptions{ContentType: "video/mp2t"}},
		{"stat/v0/seg_1.m4s", PutOptions{ContentType: "video/mp4", CacheControl: "public, max-age=31536000, immutable"}},
		{"stat/v0/index.m3u8", PutOptions{ContentType: "application/vnd.apple.mpegurl", CacheControl: "public, max-age=2"}},
		{"stat/custom.ts", PutOptions{ContentType: "application/octet-stream"}},
	}
	for _, tc := range tests {
		mustPut(t, s, tc.name, []byte(tc.name), tc.opts)
		info, err := s.Stat(t.Context(), tc.name)
		if err != nil {
			t.Fatalf("Stat(%q): %v", tc.name, err)
		}
		want := ObjectInfo{Name: tc.name, Size: int64(len(tc.name)), ModTime: info.ModTime}
		if isAzure {
			want.ContentType, want.CacheControl = tc.opts.ContentType, tc.opts.CacheControl
		}
		if info != want {
			t.Errorf("Stat(%q) = %+v, want %+v", tc.name, info, want)
		}
	}
}

func testList(t *testing.T, s Store) {
	// '-' and '.' sort before '/', so a walk that visits directory "a"
	// before file "a-b" would be out of order.
	names := []string{
		"list/p/a/c", "list/p/a-b", "list/p/a.x", "list/p/a/b", "list/p/b",
		"list/p/a/b2/z", "list/pa", "list/q/x", "list/p/B",
	}
	for i, n := range names {
		mustPut(t, s, n, payload(i+1, 0), PutOptions{})
	}
	collect := func(prefix string) []ObjectInfo {
		t.Helper()
		var got []ObjectInfo
		if err := s.List(t.Context(), prefix, func(o ObjectInfo) error { got = append(got, o); return nil }); err != nil {
			t.Fatalf("List(%q): %v", prefix, err)
		}
		return got
	}
	tests := []struct {
		prefix string
		want   []string
	}{
		{"list/p/", []string{"list/p/B", "list/p/a-b", "list/p/a.x", "list/p/a/b", "list/p/a/b2/z", "list/p/a/c", "list/p/b"}},
		{"list/p/a", []string{"list/p/a-b", "list/p/a.x", "list/p/a/b", "list/p/a/b2/z", "list/p/a/c"}},
		{"list/p/a/b", []string{"list/p/a/b", "list/p/a/b2/z"}},
		{"list/p", []string{"list/p/B", "list/p/a-b", "list/p/a.x", "list/p/a/b", "list/p/a/b2/z", "list/p/a/c", "list/p/b", "list/pa"}},
		{"list/q/x", []string{"list/q/x"}},
		{"list/nothing/", nil},
		{"list/p/b/", nil}, // an object is not a directory
		{"list/p/.", nil},
	}
	for _, tc := range tests {
		t.Run(tc.prefix, func(t *testing.T) {
			var got []string
			for _, o := range collect(tc.prefix) {
				got = append(got, o.Name)
				if want := int64(slices.Index(names, o.Name) + 1); o.Size != want {
					t.Errorf("%s: size %d, want %d", o.Name, o.Size, want)
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("List(%q) = %q, want %q", tc.prefix, got, tc.want)
			}
		})
	}
	t.Run("everything", func(t *testing.T) {
		var got []string
		for _, o := range collect("") {
			got = append(got, o.Name)
		}
		if !slices.IsSorted(got) {
			t.Errorf("List(\"\") is not sorted: %q", got)
		}
		for _, n := range names {
			if !slices.Contains(got, n) {
				t.Errorf("List(\"\") lacks %q", n)
			}
		}
	})
	t.Run("stops early", func(t *testing.T) {
		stop := errors.New("enough")
		var got []string
		err := s.List(t.Context(), "list/p/", func(o ObjectInfo) error {
			got = append(got, o.Name)
			if len(got) == 2 {
				return stop
			}
			return nil
		})
		if err != stop {
			t.Errorf("List returned %v, want the callback's error unchanged", err)
		}
		if want := []string{"list/p/B", "list/p/a-b"}; !slices.Equal(got, want) {
			t.Errorf("visited %q, want %q", got, want)
		}
	})
	t.Run("a catalogue", func(t *testing.T) {
		// Many titles of a few objects each, the shape the backfill's
		// discovery streams through: complete, in order, across pages
		// (a backend under test may use small pages, see TestAzureListPages).
		var want []string
		for i := range 60 {
			for _, f := range []string{"index.m3u8", "seg_00000.ts", "seg_00001.ts"} {
				n := fmt.Sprintf("list/cat/t%03d/%s", i, f)
				mustPut(t, s, n, payload(3, uint64(i)), PutOptions{})
				want = append(want, n)
			}
		}
		slices.Sort(want)
		var got []string
		for _, o := range collect("list/cat/") {
			got = append(got, o.Name)
		}
		if !slices.Equal(got, want) {
			t.Errorf("List(list/cat/): %d names, want %d in order; first differences: %q", len(got), len(want), firstDiff(got, want))
		}
	})
	t.Run("invalid prefix", func(t *testing.T) {
		for _, p := range []string{"../", "/list", "list//", "list/./", "a\\b"} {
			err := s.List(t.Context(), p, func(ObjectInfo) error { t.Errorf("List(%q) called fn", p); return nil })
			if !errors.Is(err, ErrInvalidName) {
				t.Errorf("List(%q): err = %v, want ErrInvalidName", p, err)
			}
		}
	})
}

// firstDiff returns the first pair of names where got and want differ.
func firstDiff(got, want []string) []string {
	for i := range max(len(got), len(want)) {
		var g, w string
		if i < len(got) {
			g = got[i]
		}
		if i < len(want) {
			w = want[i]
		}
		if g != w {
			return []string{g, w}
		}
	}
	return nil
}

func testDelete(t *testing.T, s Store) {
	ctx := t.Context()
	name := "delete/v1/seg.ts"
	mustPut(t, s, name, []byte("gone soon"), PutOptions{})
	mustPut(t, s, "delete/v1/keep.ts", []byte("stays"), PutOptions{})
	for i := range 2 {
		if err := s.Delete(ctx, name); err != nil {
			t.Fatalf("Delete #%d: %v", i+1, err)
		}
	}
	if _, err := s.Stat(ctx, name); !errors.Is(err, ErrNotFound) {
		t.Errorf("Stat after Delete: err = %v, want ErrNotFound", err)
	}
	if got := mustGet(t, s, "delete/v1/keep.ts"); string(got) != "stays" {
		t.Errorf("neighbour = %q", got)
	}
	for _, n := range []string{"delete/never/was.ts", "delete/v1/keep.ts/x", "delete"} {
		if err := s.Delete(ctx, n); err != nil {
			t.Errorf("Delete(%q) of a missing object: %v", n, err)
		}
	}
	// The name is free again: deletion is how old versions are collected,
	// and a later Put of the same name is a new object.
	mustPut(t, s, name, []byte("again"), PutOptions{})
	if got := mustGet(t, s, name); string(got) != "again" {
		t.Errorf("after re-Put: %q", got)
	}
	// Deleting the last object of a directory must not disturb a later Put
	// below the same prefix.
	if err := s.Delete(ctx, "delete/v1/keep.ts"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, name); err != nil {
		t.Fatal(err)
	}
	mustPut(t, s, "delete/v1/new.ts", []byte("new"), PutOptions{})
}

// cancelAfter cancels its context once n bytes have been read, then keeps
// serving data as a slow producer would.
type cancelAfter struct {
	r      io.Reader
	n      int
	cancel context.CancelFunc
}

func (c *cancelAfter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if c.n -= n; c.n <= 0 {
		c.cancel()
	}
	return n, err
}

type seekingCancelAfter struct {
	cancelAfter
	s io.Seeker
}

func (c *seekingCancelAfter) Seek(off int64, whence int) (int64, error) { return c.s.Seek(off, whence) }

// errAfter fails after n bytes, as a broken source (ffmpeg output, network)
// would.
type errAfter struct {
	r io.Reader
	n int
}

var errBroken = errors.New("source broke")

func (e *errAfter) Read(p []byte) (int, error) {
	if e.n <= 0 {
		return 0, errBroken
	}
	p = p[:min(len(p), e.n)]
	n, err := e.r.Read(p)
	e.n -= n
	return n, err
}

// writerToStream is a stream that also writes itself in 256 KiB chunks,
// as segcrypt's readers do: it cancels once cancelAt bytes are out (if
// cancel is set), and ends with err instead of io.EOF (if set).
type writerToStream struct {
	data     []byte
	off      int
	cancelAt int
	cancel   context.CancelFunc
	err      error
}

func (w *writerToStream) Read(p []byte) (int, error) {
	if w.off == len(w.data) {
		return 0, cmp.Or(w.err, io.EOF)
	}
	n := copy(p, w.data[w.off:])
	w.off += n
	if w.cancel != nil && w.off >= w.cancelAt {
		w.cancel()
	}
	return n, nil
}

func (w *writerToStream) WriteTo(dst io.Writer) (int64, error) {
	var total int64
	for w.off < len(w.data) {
		chunk := w.data[w.off:min(len(w.data), w.off+256<<10)]
		n, err := dst.Write(chunk)
		w.off += n
		total += int64(n)
		if err != nil {
			return total, err
		}
		if w.cancel != nil && w.off >= w.cancelAt {
			w.cancel()
		}
	}
	return total, w.err
}

func testFailedPut(t *testing.T, s Store) {
	const size = 3 << 20
	data := payload(size, 11)
	tests := []struct {
		name    string
		put     func(ctx context.Context, cancel context.CancelFunc, name string) error
		wantErr error
	}{
		{"cancelled while streaming", func(ctx context.Context, cancel context.CancelFunc, name string) error {
			return s.Put(ctx, name, &cancelAfter{r: bytes.NewReader(data), n: size / 2, cancel: cancel}, -1, PutOptions{})
		}, context.Canceled},
		{"cancelled while sending one request", func(ctx context.Context, cancel context.CancelFunc, name string) error {
			br := bytes.NewReader(data)
			return s.Put(ctx, name, &seekingCancelAfter{cancelAfter{r: br, n: size / 2, cancel: cancel}, br}, size, PutOptions{})
		}, context.Canceled},
		{"cancelled before", func(ctx context.Context, cancel context.CancelFunc, name string) error {
			cancel()
			return s.Put(ctx, name, bytes.NewReader(data), size, PutOptions{})
		}, context.Canceled},
		{"source error", func(ctx context.Context, _ context.CancelFunc, name string) error {
			return s.Put(ctx, name, &errAfter{r: bytes.NewReader(data), n: size / 2}, -1, PutOptions{})
		}, errBroken},
		{"shorter than size", func(ctx context.Context, _ context.CancelFunc, name string) error {
			return s.Put(ctx, name, onlyReader{bytes.NewReader(data)}, size+1, PutOptions{})
		}, io.ErrUnexpectedEOF},
		{"longer than size", func(ctx context.Context, _ context.CancelFunc, name string) error {
			return s.Put(ctx, name, onlyReader{bytes.NewReader(data)}, size-1, PutOptions{})
		}, nil},
		{"seeker longer than size", func(ctx context.Context, _ context.CancelFunc, name string) error {
			return s.Put(ctx, name, bytes.NewReader(data), 10, PutOptions{})
		}, nil},
		// Streams that write themselves (as an encrypting reader does),
		// which the filesystem asks to.
		{"writer-to cancelled while streaming", func(ctx context.Context, cancel context.CancelFunc, name string) error {
			return s.Put(ctx, name, &writerToStream{data: data, cancelAt: size / 2, cancel: cancel}, size, PutOptions{})
		}, context.Canceled},
		{"writer-to source error", func(ctx context.Context, _ context.CancelFunc, name string) error {
			return s.Put(ctx, name, &writerToStream{data: data[:size/2], err: errBroken}, size, PutOptions{})
		}, errBroken},
		{"writer-to shorter than size", func(ctx context.Context, _ context.CancelFunc, name string) error {
			return s.Put(ctx, name, &writerToStream{data: data}, size+1, PutOptions{})
		}, io.ErrUnexpectedEOF},
		{"writer-to longer than size", func(ctx context.Context, _ context.CancelFunc, name string) error {
			return s.Put(ctx, name, &writerToStream{data: data}, size-1, PutOptions{})
		}, nil},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			name := fmt.Sprintf("failed/%d/seg.ts", i)
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			err := tc.put(ctx, cancel, name)
			if err == nil {
				t.Fatal("Put succeeded")
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("Put: err = %v, want %v", err, tc.wantErr)
			}
			if errors.Is(err, ErrExists) || errors.Is(err, ErrNotFound) {
				t.Errorf("Put: err = %v wraps a sentinel", err)
			}
			if _, err := s.Stat(t.Context(), name); !errors.Is(err, ErrNotFound) {
				t.Errorf("Stat after failed Put: err = %v, want ErrNotFound", err)
			}
			s.List(t.Context(), "failed/", func(o ObjectInfo) error {
				t.Errorf("List shows %q after a failed Put", o.Name)
				return nil
			})
			if f, ok := s.(*FS); ok {
				assertNoTemp(t, f)
			}
			// The name is still free.
			mustPut(t, s, name, []byte("ok"), PutOptions{})
			if err := s.Delete(t.Context(), name); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func assertNoTemp(t *testing.T, f *FS) {
	t.Helper()
	filepath.WalkDir(f.dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), tmpPrefix) {
			t.Errorf("temporary file left behind: %s", p)
		}
		return nil
	})
}

func testInvalidNames(t *testing.T, s Store) {
	ctx := t.Context()
	for _, name := range []string{"", "../escape", "a//b", "/abs", "a/./b", "a/"} {
		errs := map[string]error{
			"Put":    s.Put(ctx, name, strings.NewReader("x"), 1, PutOptions{}),
			"Delete": s.Delete(ctx, name),
		}
		_, errs["Get"] = s.Get(ctx, name)
		_, errs["GetRange"] = s.GetRange(ctx, name, 0, 1)
		_, errs["Stat"] = s.Stat(ctx, name)
		for op, err := range errs {
			if !errors.Is(err, ErrInvalidName) {
				t.Errorf("%s(%q): err = %v, want ErrInvalidName", op, name, err)
			}
		}
	}
}

func TestValidateName(t *testing.T) {
	long := strings.Repeat("a/", 511) + "ab" // 1024 bytes
	tests := []struct {
		name string
		ok   bool
	}{
		{"hls/abc/v1/master.m3u8", true},
		{"hls/abc/v1/720p/seg_00001.ts", true},
		{"a", true},
		{".hidden", true},
		{"a/..b/c", true},
		{"vidéo/ü.ts", true},
		{"with space/a+b=c.ts", true},
		{long, true},
		{long + "c", false},
		{"", false},
		{"/abs", false},
		{"dir/", false},
		{"../x", false},
		{"a/../x", false},
		{"..", false},
		{".", false},
		{"a/./b", false},
		{"./a", false},
		{"a//b", false},
		{"a\\b", false},
		{"a\x00b", false},
		{"a\nb", false},
		{"a\tb", false},
		{"a\x7fb", false},
		{"a\u0085b", false}, // C1 control
		{"\xff\xfe", false},
		{"a./b", false}, // Azure strips trailing dots
		{"a/b.", false},
		{"a/.tmp-123", false}, // reserved for FS's unfinished writes
		{".tmp-x/y", false},
		{"a/.tmp", true},
	}
	for _, tc := range tests {
		err := ValidateName(tc.name)
		if tc.ok && err != nil {
			t.Errorf("ValidateName(%q) = %v, want nil", tc.name, err)
		}
		if !tc.ok && !errors.Is(err, ErrInvalidName) {
			t.Errorf("ValidateName(%q) = %v, want ErrInvalidName", tc.name, err)
		}
	}
}

func TestOpen(t *testing.T) {
	dir := t.TempDir()
	azure := azuriteConfig(t)
	tests := []struct {
		url     string
		env     string
		want    string // String() of the store, or "" for an error
		wantErr string
	}{
		{url: "file://" + dir, want: "file://" + dir},
		{url: "file://" + dir + "/sub", want: "file://" + dir + "/sub"},
		{url: "file://localhost" + dir, want: "file://" + dir},
		{url: "file://relative/dir", wantErr: "absolute path"},
		{url: "file:relative", wantErr: "absolute path"},
		{url: "file:", wantErr: "absolute path"},
		{url: "azblob://" + azure.Container, env: azure.ConnectionString, want: "azblob://" + azure.Container},
		{url: "azblob://" + azure.Container, wantErr: "AZURE_STORAGE_CONNECTION_STRING"},
		{url: "azblob://", env: azure.ConnectionString, wantErr: "container"},
		{url: "azblob://c/path", env: azure.ConnectionString, wantErr: "only a container"},
		{url: "azblob://Bad_Name", env: azure.ConnectionString, wantErr: "lowercase"},
		{url: "azblob://" + azure.Container, env: "UseDevelopmentStorage=true", wantErr: "devstoreaccount1"},
		{url: "s3://bucket", wantErr: `unsupported scheme "s3"`},
		{url: "/var/lib/x", wantErr: `unsupported scheme ""`},
		{url: "", wantErr: "accepted forms"},
		{url: "file://" + dir + "?mode=x", wantErr: "query"},
	}
	for _, tc := range tests {
		t.Run(tc.url, func(t *testing.T) {
			getenv := func(k string) string {
				if k == "AZURE_STORAGE_CONNECTION_STRING" {
					return tc.env
				}
				return ""
			}
			s, err := Open(t.Context(), tc.url, getenv)
			if tc.wantErr != "" {
				if err == nil {
					t.Fatalf("Open succeeded: %v", s)
				}
				if !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("error %q does not mention %q", err, tc.wantErr)
				}
				if strings.HasPrefix(tc.url, "s3:") {
					for _, form := range []string{"file:///", "azblob://"} {
						if !strings.Contains(err.Error(), form) {
							t.Errorf("error %q does not name the accepted form %s", err, form)
						}
					}
				}
				if strings.Contains(err.Error(), accountKey(t, azure.ConnectionString)) {
					t.Errorf("error %q leaks the connection string", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if got := s.String(); got != tc.want {
				t.Errorf("String() = %q, want %q", got, tc.want)
			}
		})
	}
}
