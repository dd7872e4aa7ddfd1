package gateway

import (
	"context"
	"errors"
	"io"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hlsvault/hlsvault/internal/storage"
	"github.com/hlsvault/hlsvault/internal/testenv"
	"github.com/hlsvault/hlsvault/internal/testenv/fixtures"
)

// gatedStore holds every Get of a playlist until released, failing it if
// the context it was given ends first, as a real backend would.
type gatedStore struct {
	storage.Store
	mu      sync.Mutex
	gate    chan struct{}
	started chan struct{}
}

func (g *gatedStore) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	g.mu.Lock()
	gate := g.gate
	g.mu.Unlock()
	if gate != nil && strings.HasSuffix(name, ".m3u8") {
		select {
		case g.started <- struct{}{}:
		default:
		}
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return g.Store.Get(ctx, name)
}

// TestColdLoadOutlivesFirstCaller: the shared load of a playlist must not
// run under the context of whichever player asked first.
func TestColdLoadOutlivesFirstCaller(t *testing.T) {
	fs := fixtures.FS(t)
	e := newEnv(t, fs, envOptions{})
	// Only reads go through the gate; the segment signer wants the
	// concrete backend.
	store := &gatedStore{Store: fs, started: make(chan struct{}, 1)}
	e.srv.store = store
	video := testenv.Name("vid")
	fx := e.publish(video, 12*time.Second, 0)
	v, err := e.db.CurrentVersion(context.Background(), video)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		load func(ctx context.Context) error
	}{
		{"master", func(ctx context.Context) error { _, err := e.srv.masterEntry(ctx, v); return err }},
		{"media", func(ctx context.Context) error {
			_, err := e.srv.mediaEntry(ctx, video, fx.Version, "240p", nil)
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store.mu.Lock()
			store.gate = make(chan struct{})
			gate := store.gate
			store.mu.Unlock()
			first, cancel := context.WithCancel(context.Background())
			firstErr := make(chan error, 1)
			go func() { firstErr <- tc.load(first) }()
			<-store.started // the first caller's load is reading storage
			misses := counterValue(e.srv.cacheMiss.(prometheus.Counter))
			second := make(chan error, 1)
			go func() { second <- tc.load(context.Background()) }()
			// Cancel only once the second caller has joined the load: else
			// it would start a load of its own and prove nothing.
			for counterValue(e.srv.cacheMiss.(prometheus.Counter)) == misses {
				time.Sleep(time.Millisecond)
			}
			time.Sleep(20 * time.Millisecond)
			cancel() // the first player goes away mid-load
			if err := <-firstErr; !errors.Is(err, context.Canceled) {
				t.Errorf("first caller: %v, want context.Canceled", err)
			}
			close(gate)
			select {
			case err := <-second:
				if err != nil {
					t.Fatalf("second caller failed with the first one: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("second caller still waiting")
			}
		})
	}
	if _, ok := e.srv.media.get(video + "/" + strconv.Itoa(fx.Version) + "/240p"); !ok {
		t.Error("media playlist not cached after the load")
	}
}
