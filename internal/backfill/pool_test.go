package backfill

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/hlsvault/hlsvault/internal/catalog"
	"github.com/hlsvault/hlsvault/internal/packager"
	"github.com/hlsvault/hlsvault/internal/storage"
	"github.com/hlsvault/hlsvault/internal/testenv"
)

// gaugeStore counts the Puts in flight under each version prefix
// ("hls/{video}/v{N}/") and in all, and keeps the highest counts seen.
// Each Put of a new version's object is held for hold, so that the pool
// fills up.
type gaugeStore struct {
	storage.Store
	hold time.Duration

	mu                sync.Mutex
	cur, peak         map[string]int
	curTotal, maxSeen int
}

func versionPrefix(name string) (string, bool) {
	parts := strings.SplitN(name, "/", 4)
	if len(parts) < 4 || parts[0] != "hls" {
		return "", false
	}
	return strings.Join(parts[:3], "/") + "/", true
}

func (g *gaugeStore) Put(ctx context.Context, name string, r io.Reader, size int64, opts storage.PutOptions) error {
	prefix, ok := versionPrefix(name)
	if !ok || strings.HasSuffix(name, ".m3u8") {
		return g.Store.Put(ctx, name, r, size, opts)
	}
	g.mu.Lock()
	g.cur[prefix]++
	g.curTotal++
	g.peak[prefix] = max(g.peak[prefix], g.cur[prefix])
	g.maxSeen = max(g.maxSeen, g.curTotal)
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		g.cur[prefix]--
		g.curTotal--
		g.mu.Unlock()
	}()
	select {
	case <-time.After(g.hold):
	case <-ctx.Done():
		return ctx.Err()
	}
	return g.Store.Put(ctx, name, r, size, opts)
}

func newFS(t *testing.T) storage.Store {
	t.Helper()
	fs, err := storage.NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return fs
}

// TestConvertPoolBounds converts three titles at once through one
// Converter: no title has more than Concurrency objects in flight, all of
// them together never more than MaxInFlight, and both bounds are reached
// (the pool does overlap its objects).
func TestConvertPoolBounds(t *testing.T) {
	ctx := context.Background()
	g := &gaugeStore{Store: newFS(t), hold: 30 * time.Millisecond, cur: map[string]int{}, peak: map[string]int{}}
	const perTitle, shared, titles = 3, 5, 3
	conv := &Converter{Store: g, Concurrency: perTitle, MaxInFlight: shared}
	pkg := packager.New(g, benchKeyring(t), packager.Options{})
	var eg errgroup.Group
	for i := range titles {
		top := putTitle(t, g, fmt.Sprintf("legacy/t%d/", i), 12, 4096)
		plan, err := PlanTitle(ctx, g, Source{Playlist: top})
		if err != nil {
			t.Fatal(err)
		}
		v, err := pkg.Begin(fmt.Sprintf("hls/t%d/v1/", i), "https://k.example/{key_id}")
		if err != nil {
			t.Fatal(err)
		}
		eg.Go(func() error {
			res, err := conv.Convert(ctx, plan, v)
			if err == nil && (res.Objects != 12 || res.Verified != 12) {
				err = fmt.Errorf("title %d: %d objects, %d verified", i, res.Objects, res.Verified)
			}
			return err
		})
	}
	if err := eg.Wait(); err != nil {
		t.Fatal(err)
	}
	for i := range titles {
		if p := g.peak[fmt.Sprintf("hls/t%d/v1/", i)]; p != perTitle {
			t.Errorf("title %d: at most %d objects in flight, want the per-title bound %d", i, p, perTitle)
		}
	}
	if g.maxSeen != shared {
		t.Errorf("at most %d objects in flight across titles, want the shared bound %d", g.maxSeen, shared)
	}
}

// failingStore fails the Put of one object, or corrupts what Get reads
// back of it.
type failingStore struct {
	storage.Store
	name    string // the object's name ends with this
	corrupt bool   // corrupt its read-back instead of failing its Put

	mu     sync.Mutex
	after  int // new-version Puts started after the failure
	failed bool
}

var errInjected = errors.New("injected storage failure")

func (f *failingStore) Put(ctx context.Context, name string, r io.Reader, size int64, opts storage.PutOptions) error {
	if _, ok := versionPrefix(name); ok {
		f.mu.Lock()
		if f.failed {
			f.after++
		}
		hit := !f.corrupt && strings.HasSuffix(name, f.name)
		f.failed = f.failed || hit
		f.mu.Unlock()
		if hit {
			return errInjected
		}
	}
	return f.Store.Put(ctx, name, r, size, opts)
}

func (f *failingStore) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	rc, err := f.Store.Get(ctx, name)
	if err != nil || !f.corrupt || !strings.HasPrefix(name, "hls/") || !strings.HasSuffix(name, f.name) {
		return rc, err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return nil, err
	}
	b[len(b)/2] ^= 1
	return io.NopCloser(bytes.NewReader(b)), nil
}

// TestConvertOneFailureFailsTheTitle: one object that cannot be stored,
// or that reads back corrupted, fails the whole title. Nothing is
// published (no playlist is written, the catalog has no version), and once
// the failure is known no more objects are started than were already
// waiting for a slot.
func TestConvertOneFailureFailsTheTitle(t *testing.T) {
	for _, corrupt := range []bool{false, true} {
		t.Run(map[bool]string{false: "put fails", true: "read-back corrupted"}[corrupt], func(t *testing.T) {
			ctx := context.Background()
			f := &failingStore{Store: newFS(t), name: "/seg_00004.ts", corrupt: corrupt}
			const conc = 2
			h := newHarness(t, f, func(c *Config) { c.Concurrency = conc })
			video := testenv.Name("fail")
			top := putTitle(t, f, "legacy/"+video+"/", 40, 8192)
			_, published, err := h.svc.ConvertNow(ctx, video, top)
			switch {
			case published:
				t.Fatal("a title with a failed object was published")
			case !corrupt && !errors.Is(err, errInjected):
				t.Fatalf("err = %v, want the store's error", err)
			case corrupt && !errors.Is(err, packager.ErrVerify):
				t.Fatalf("err = %v, want packager.ErrVerify", err)
			}
			if _, err := h.db.CurrentVersion(ctx, video); !errors.Is(err, catalog.ErrNotFound) {
				t.Fatalf("current version after a failed title: %v", err)
			}
			var playlists []string
			if err := f.List(ctx, "hls/"+video+"/", func(o storage.ObjectInfo) error {
				if strings.HasSuffix(o.Name, ".m3u8") {
					playlists = append(playlists, o.Name)
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if len(playlists) > 0 {
				t.Errorf("playlists written for a failed title: %v", playlists)
			}
			if !corrupt && f.after > conc {
				t.Errorf("%d objects started after the failure, want at most the %d already in flight", f.after, conc)
			}
		})
	}
}
