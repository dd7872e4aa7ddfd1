package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/sas"

	"github.com/hlsvault/hlsvault/internal/testenv"
)

// azuriteConfig returns a config for a fresh container on Azurite and
// deletes that container when the test ends.
func azuriteConfig(t testing.TB) AzureConfig {
	t.Helper()
	cfg := AzureConfig{ConnectionString: testenv.AzuriteConnectionString(t), Container: testenv.Name("test")}
	t.Cleanup(func() {
		svc, err := azblob.NewClientFromConnectionString(cfg.ConnectionString, nil)
		if err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, err = svc.DeleteContainer(ctx, cfg.Container, nil)
		if err != nil && !bloberror.HasCode(err, bloberror.ContainerNotFound) {
			t.Logf("delete container %s: %v", cfg.Container, err)
		}
	})
	return cfg
}

func newTestAzure(t testing.TB) *Azure {
	t.Helper()
	a, err := NewAzure(context.Background(), azuriteConfig(t))
	if err != nil {
		t.Fatalf("NewAzure: %v", err)
	}
	return a
}

// accountKey is the key inside the Azurite connection string.
func accountKey(t testing.TB, cs string) string {
	t.Helper()
	for part := range strings.SplitSeq(cs, ";") {
		if k, ok := strings.CutPrefix(part, "AccountKey="); ok {
			return k
		}
	}
	t.Fatal("connection string has no AccountKey")
	return ""
}

func TestAzure(t *testing.T) {
	testStore(t, newTestAzure(t))
}

// TestAzureListPages runs the List contract with pages of 7 blobs, so that
// every listing of more than a handful of objects crosses page boundaries.
func TestAzureListPages(t *testing.T) {
	cfg := azuriteConfig(t)
	cfg.ListPageSize = 7
	a, err := NewAzure(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	testList(t, a)
	cfg.ListPageSize = 5001
	if _, err := NewAzure(context.Background(), cfg); err == nil {
		t.Error("a list page size of 5001 was accepted")
	}
}

func TestAzureContainer(t *testing.T) {
	cfg := azuriteConfig(t)
	var logs bytes.Buffer
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	for i := range 2 { // the second finds the container in place
		a, err := NewAzure(t.Context(), cfg)
		if err != nil {
			t.Fatalf("NewAzure #%d: %v", i+1, err)
		}
		if got, want := a.String(), "azblob://"+cfg.Container; got != want {
			t.Errorf("String() = %q, want %q", got, want)
		}
	}
	if !strings.Contains(logs.String(), "created container") {
		t.Errorf("no log of the container's creation: %q", logs.String())
	}
	if strings.Contains(logs.String(), accountKey(t, cfg.ConnectionString)) {
		t.Errorf("logs hold the account key: %q", logs.String())
	}
}

func TestAzureSecrets(t *testing.T) {
	cfg := azuriteConfig(t)
	key := accountKey(t, cfg.ConnectionString)
	a, err := NewAzure(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if s := a.String(); strings.Contains(s, "AccountKey") || strings.Contains(s, key) || strings.Contains(s, "devstoreaccount1") {
		t.Errorf("String() = %q reveals the account", s)
	}
	_, err = a.Get(t.Context(), "no/such.ts")
	if err == nil || strings.Contains(err.Error(), key) {
		t.Errorf("Get error %v", err)
	}

	bad := []struct {
		name, cs, want string
	}{
		{"development shortcut", "UseDevelopmentStorage=true", "devstoreaccount1"},
		{"empty", "", "empty"},
		{"malformed", "AccountName=x;garbage;AccountKey=" + key, "malformed"},
		{"bad key", "AccountName=x;AccountKey=not*base64*" + key[:20] + ";BlobEndpoint=http://127.0.0.1:10000/x", "base64"},
		{"no credential", "AccountName=x;BlobEndpoint=http://127.0.0.1:10000/x", "neither"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewAzure(t.Context(), AzureConfig{ConnectionString: tc.cs, Container: cfg.Container})
			if err == nil {
				t.Fatal("NewAzure succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
			if strings.Contains(err.Error(), key[:20]) {
				t.Errorf("error %q quotes the key", err)
			}
		})
	}
}

func TestAzureTransport(t *testing.T) {
	for _, conc := range []int{1, 32, 200} {
		tr := newHTTPClient(conc).Transport.(*http.Transport)
		if tr.MaxIdleConnsPerHost != conc || tr.MaxIdleConns < conc {
			t.Errorf("concurrency %d: MaxIdleConnsPerHost %d, MaxIdleConns %d", conc, tr.MaxIdleConnsPerHost, tr.MaxIdleConns)
		}
	}
}

func TestAzureSignedURL(t *testing.T) {
	a := newTestAzure(t)
	names := []string{"hls/vid/v1/seg_00001.ts", "hls/vid/v1/seg_00002.ts", "hls/vid é/v1/a+b c.ts"}
	for _, n := range names {
		mustPut(t, a, n, []byte("body of "+n), PutOptions{ContentType: "video/mp2t", CacheControl: "public, max-age=31536000, immutable"})
	}
	get := func(t *testing.T, u string) (*http.Response, []byte) {
		t.Helper()
		resp, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	now := time.Now()

	t.Run("reads its blob", func(t *testing.T) {
		for _, n := range names {
			u, err := a.SignedURL(n, 10*time.Minute, now)
			if err != nil {
				t.Fatal(err)
			}
			resp, body := get(t, u)
			if resp.StatusCode != http.StatusOK || string(body) != "body of "+n {
				t.Fatalf("GET %s: %d %q", n, resp.StatusCode, body)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "video/mp2t" {
				t.Errorf("Content-Type %q", ct)
			}
			// The SAS overrides the blob's year-long public Cache-Control
			// (rscc), so a CDN cannot keep the segment past the SAS.
			if cc := resp.Header.Get("Cache-Control"); cc != "private, max-age=60" {
				t.Errorf("Cache-Control %q, want the SAS's private, max-age=60", cc)
			}
		}
		short, err := a.SignedURL(names[0], 20*time.Second, now)
		if err != nil {
			t.Fatal(err)
		}
		if resp, _ := get(t, short); resp.StatusCode != http.StatusOK || resp.Header.Get("Cache-Control") != "private, max-age=20" {
			t.Errorf("a 20 s SAS: %d, Cache-Control %q, want private, max-age=20", resp.StatusCode, resp.Header.Get("Cache-Control"))
		}
	})

	u, err := a.SignedURL(names[0], 10*time.Minute, now)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("query", func(t *testing.T) {
		q, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		v := q.Query()
		if v.Get("sp") != "r" || v.Get("sr") != "b" || v.Get("spr") != "https,http" {
			t.Errorf("SAS sp=%q sr=%q spr=%q, want r, b, https,http (Azurite is http)", v.Get("sp"), v.Get("sr"), v.Get("spr"))
		}
		st, _ := time.Parse(time.RFC3339, v.Get("st"))
		se, _ := time.Parse(time.RFC3339, v.Get("se"))
		if d := now.Sub(st); d < 5*time.Minute-time.Second || d > 5*time.Minute+time.Second {
			t.Errorf("start %v is not now-5m", st)
		}
		if d := se.Sub(now); d < 10*time.Minute-time.Second || d > 10*time.Minute+time.Second {
			t.Errorf("expiry %v is not now+10m", se)
		}
	})
	t.Run("not another blob", func(t *testing.T) {
		other := strings.Replace(u, "seg_00001.ts", "seg_00002.ts", 1)
		if resp, _ := get(t, other); resp.StatusCode != http.StatusForbidden {
			t.Errorf("GET of another blob with the same signature: %d, want 403", resp.StatusCode)
		}
	})
	t.Run("read only", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPut, u, strings.NewReader("overwrite"))
		req.Header.Set("x-ms-blob-type", "BlockBlob")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("PUT with a read SAS: %d, want 403", resp.StatusCode)
		}
	})
	t.Run("expires", func(t *testing.T) {
		old, err := a.SignedURL(names[0], time.Minute, now.Add(-time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		if resp, _ := get(t, old); resp.StatusCode != http.StatusForbidden {
			t.Errorf("GET with an expired SAS: %d, want 403", resp.StatusCode)
		}
	})
	t.Run("errors", func(t *testing.T) {
		if _, err := a.SignedURL(names[0], 0, now); err == nil {
			t.Error("ttl 0 accepted")
		}
		if _, err := a.SignedURL("../x", time.Minute, now); !errors.Is(err, ErrInvalidName) {
			t.Errorf("invalid name: %v", err)
		}
		noKey := &Azure{container: "c", containerURL: "https://acct.blob.core.windows.net/c"}
		if _, err := noKey.SignedURL("a.ts", time.Minute, now); err == nil {
			t.Error("signed without an account key")
		}
	})
	t.Run("https endpoint", func(t *testing.T) {
		prod := &Azure{container: "c", containerURL: "https://acct.blob.core.windows.net/c", cred: a.cred}
		u, err := prod.SignedURL("hls/a b.ts", time.Minute, now)
		if err != nil {
			t.Fatal(err)
		}
		p, _ := url.Parse(u)
		if p.Query().Get("spr") != "https" || p.Path != "/c/hls/a b.ts" {
			t.Errorf("SignedURL = %s, want https only and path /c/hls/a b.ts", u)
		}
	})
}

// TestAzureIgnoresUncommittedBlocks checks that blocks staged by an
// abandoned streamed Put neither count as an object nor block a later Put.
func TestAzureIgnoresUncommittedBlocks(t *testing.T) {
	a := newTestAzure(t)
	name := "abandoned/seg.ts"
	ctx, cancel := context.WithCancel(t.Context())
	data := payload(6<<20, 5)
	err := a.Put(ctx, name, &cancelAfter{r: bytes.NewReader(data), n: 5 << 20, cancel: cancel}, -1, PutOptions{})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Put: %v", err)
	}
	pager := a.cc.NewListBlobsFlatPager(&container.ListBlobsFlatOptions{
		Include: container.ListBlobsInclude{UncommittedBlobs: true},
	})
	var uncommitted int
	for pager.More() {
		page, err := pager.NextPage(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		uncommitted += len(page.Segment.BlobItems)
	}
	t.Logf("uncommitted blobs listed: %d", uncommitted)
	if _, err := a.Stat(t.Context(), name); !errors.Is(err, ErrNotFound) {
		t.Errorf("Stat: %v, want ErrNotFound", err)
	}
	mustPut(t, a, name, []byte("fresh"), PutOptions{})
	if got := mustGet(t, a, name); string(got) != "fresh" {
		t.Errorf("Get = %q", got)
	}
}

// loseResponse performs requests but reports a network error instead of the
// first response that match selects, as when a connection drops after the
// service has acted.
type loseResponse struct {
	inner *http.Client
	match func(*http.Request) bool
	lost  atomic.Bool
}

func (l *loseResponse) Do(req *http.Request) (*http.Response, error) {
	resp, err := l.inner.Do(req)
	if err == nil && l.match(req) && l.lost.CompareAndSwap(false, true) {
		resp.Body.Close()
		return nil, errors.New("connection reset by peer (injected)")
	}
	return resp, err
}

// TestAzureLostResponse checks that a Put whose successful request is
// retried by the SDK (and then meets If-None-Match) reports success, not
// ErrExists, while a Put by someone else still gets ErrExists.
func TestAzureLostResponse(t *testing.T) {
	tests := []struct {
		name   string
		comp   string // the request whose response is lost
		reader func([]byte) io.Reader
		n      int
	}{
		{"put blob", "", seeker, 1000},
		{"put block list", "blocklist", nonSeeker, 5 << 20},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := azuriteConfig(t)
			tr := &loseResponse{inner: newHTTPClient(4), match: func(r *http.Request) bool {
				return r.Method == http.MethodPut && strings.HasSuffix(r.URL.Path, "/seg.ts") && r.URL.Query().Get("comp") == tc.comp
			}}
			a, err := newAzure(t.Context(), cfg, azcore.ClientOptions{
				Transport: tr,
				Retry:     policy.RetryOptions{RetryDelay: 10 * time.Millisecond},
			})
			if err != nil {
				t.Fatal(err)
			}
			data := payload(tc.n, 77)
			if err := a.Put(t.Context(), "lost/seg.ts", tc.reader(data), -1, PutOptions{}); err != nil {
				t.Fatalf("Put: %v", err)
			}
			if !tr.lost.Load() {
				t.Fatal("no response was lost: the test did not test anything")
			}
			if got := mustGet(t, a, "lost/seg.ts"); !bytes.Equal(got, data) {
				t.Error("object differs from what was put")
			}
			if err := a.Put(t.Context(), "lost/seg.ts", tc.reader(data), -1, PutOptions{}); !errors.Is(err, ErrExists) {
				t.Errorf("second Put: %v, want ErrExists", err)
			}
		})
	}
}

func TestRedact(t *testing.T) {
	err := fmt.Errorf("wrapped: %w", &url.Error{Op: "Put", URL: "https://acct.blob.core.windows.net/c/a.ts?sv=2024&sig=SECRET", Err: errors.New("dial failed")})
	r := redact(err)
	if msg := r.Error(); strings.Contains(msg, "SECRET") || !strings.Contains(msg, "/c/a.ts") {
		t.Errorf("redact: %q", msg)
	}
	var ue *url.Error
	if !errors.As(r, &ue) || strings.Contains(ue.URL, "SECRET") {
		t.Errorf("redact: url.Error lost or unredacted: %v", ue)
	}
}

// TestAzureSASConnectionString checks that a SAS connection string works and
// that its signature stays out of errors, also when the network fails.
func TestAzureSASConnectionString(t *testing.T) {
	cfg := azuriteConfig(t)
	a, err := NewAzure(t.Context(), cfg) // creates the container with the key
	if err != nil {
		t.Fatal(err)
	}
	cred := a.cred
	qp, err := sas.AccountSignatureValues{
		Protocol:      sas.ProtocolHTTPSandHTTP,
		ExpiryTime:    time.Now().Add(time.Hour).UTC(),
		Permissions:   (&sas.AccountPermissions{Read: true, Write: true, Create: true, List: true, Delete: true}).String(),
		ResourceTypes: (&sas.AccountResourceTypes{Container: true, Object: true}).String(),
	}.SignWithSharedKey(cred)
	if err != nil {
		t.Fatal(err)
	}
	sig := qp.Signature()
	endpoint := "http://127.0.0.1:10000/devstoreaccount1"
	sasCS := "BlobEndpoint=" + endpoint + ";SharedAccessSignature=" + qp.Encode()

	s, err := NewAzure(t.Context(), AzureConfig{ConnectionString: sasCS, Container: cfg.Container})
	if err != nil {
		t.Fatalf("NewAzure with SAS: %v", err)
	}
	mustPut(t, s, "sas/a.ts", []byte("via sas"), PutOptions{})
	if got := mustGet(t, s, "sas/a.ts"); string(got) != "via sas" {
		t.Errorf("Get = %q", got)
	}
	if _, err := s.SignedURL("sas/a.ts", time.Minute, time.Now()); err == nil {
		t.Error("SignedURL without an account key succeeded")
	}
	if strings.Contains(s.String(), sig) {
		t.Errorf("String() = %q holds the signature", s.String())
	}
	if _, err := s.Stat(t.Context(), "sas/missing.ts"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Stat(missing) = %v", err)
	}

	// Nothing listens on port 1: net/http's error quotes the request URL,
	// query included.
	dead := strings.Replace(sasCS, "127.0.0.1:10000", "127.0.0.1:1", 1)
	_, err = newAzure(t.Context(), AzureConfig{ConnectionString: dead, Container: cfg.Container}, azcore.ClientOptions{
		Transport: newHTTPClient(1),
		Retry:     policy.RetryOptions{MaxRetries: -1},
	})
	var ue *url.Error
	if !errors.As(err, &ue) {
		t.Fatalf("NewAzure against a closed port: %v, want a *url.Error inside", err)
	}
	if strings.Contains(err.Error(), sig) || strings.Contains(err.Error(), url.QueryEscape(sig)) {
		t.Errorf("error holds the SAS signature: %v", err)
	}
}

// TestAzureProbe: the probe passes on a container in place and fails,
// naming the container, once it is deleted.
func TestAzureProbe(t *testing.T) {
	cfg := azuriteConfig(t)
	a, err := NewAzure(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Probe(t.Context()); err != nil {
		t.Fatalf("probe: %v", err)
	}
	if _, err := a.cc.Delete(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	err = a.Probe(t.Context())
	if err == nil || !strings.Contains(err.Error(), "azblob://"+cfg.Container) {
		t.Fatalf("probe of a deleted container: %v", err)
	}
	if strings.Contains(err.Error(), accountKey(t, cfg.ConnectionString)) {
		t.Errorf("the probe's error holds the account key: %v", err)
	}
}
