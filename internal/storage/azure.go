package storage

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blockblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/sas"
)

// AzureConfig configures an Azure Blob store.
type AzureConfig struct {
	// ConnectionString is a full connection string (AccountName, AccountKey,
	// BlobEndpoint…), or one carrying a SharedAccessSignature, in which case
	// SignedURL is unavailable. The SDK refuses "UseDevelopmentStorage=true";
	// spell out Azurite's devstoreaccount1 string instead.
	ConnectionString string
	// Container holds every object; it is created if missing.
	Container string
	// Concurrency is how many transfers the caller runs in parallel (32 when
	// zero). The HTTP transport keeps that many idle connections per host:
	// with Go's default of 2 (the SDK's: 10), parallel segment uploads would
	// keep opening and closing connections.
	Concurrency int
	// ListPageSize is how many blobs one List request returns (the
	// service's maximum, 5000, when zero): List holds one page at a time.
	ListPageSize int
	// Logger is optional.
	Logger *slog.Logger
}

const (
	defaultConcurrency = 32
	// maxSinglePut bounds what goes up in one Put Blob request; beyond it,
	// or when the length is unknown, Put stages blocks and commits them.
	maxSinglePut = 256 << 20
	// Blocks for streamed uploads. Segments are a few MiB and the caller
	// uploads many in parallel, so each stream keeps its buffers small:
	// streamBlockSize × streamConcurrency bytes at most.
	streamBlockSize   = 2 << 20
	streamConcurrency = 4
	// putIDKey names the metadata entry that lets Put recognise its own
	// write when the SDK retried a request whose first attempt had in fact
	// succeeded and the retry hit If-None-Match.
	putIDKey = "putid"
)

// Azure stores objects as block blobs in one container. Put relies on the
// service's If-None-Match: * condition, so "never overwrite" holds even
// between several workers.
type Azure struct {
	cc        *container.Client
	container string
	// containerURL has no query string, so it carries no SAS.
	containerURL string
	// cred signs SignedURL; nil when the connection string has no account key.
	cred     *azblob.SharedKeyCredential
	log      *slog.Logger
	pageSize int32 // List; 0: the service's default
}

var _ Store = (*Azure)(nil)

// NewAzure connects to the blob service and creates the container if missing.
func NewAzure(ctx context.Context, cfg AzureConfig) (*Azure, error) {
	conc := cfg.Concurrency
	if conc <= 0 {
		conc = defaultConcurrency
	}
	return newAzure(ctx, cfg, azcore.ClientOptions{Transport: newHTTPClient(conc)})
}

// newAzure lets tests put a faulty transport under the SDK and shorten its
// retries.
func newAzure(ctx context.Context, cfg AzureConfig, opts azcore.ClientOptions) (*Azure, error) {
	if err := validateContainer(cfg.Container); err != nil {
		return nil, fmt.Errorf("storage: new azure: container %q: %w", cfg.Container, err)
	}
	// Errors below never quote the connection string: it holds the key.
	settings, err := parseConnectionString(cfg.ConnectionString)
	if err != nil {
		return nil, fmt.Errorf("storage: new azure: %w", err)
	}
	var cred *azblob.SharedKeyCredential
	if settings["AccountName"] != "" && settings["AccountKey"] != "" {
		cred, err = azblob.NewSharedKeyCredential(settings["AccountName"], settings["AccountKey"])
		if err != nil {
			return nil, errors.New("storage: new azure: connection string: AccountKey is not valid base64")
		}
	}

	client, err := azblob.NewClientFromConnectionString(cfg.ConnectionString, &azblob.ClientOptions{
		ClientOptions: opts,
	})
	if err != nil {
		// The SDK's parse errors describe the problem without echoing the
		// input; a URL error would quote a SAS.
		return nil, fmt.Errorf("storage: new azure: %w", redact(err))
	}
	cc := client.ServiceClient().NewContainerClient(cfg.Container)
	cu, err := url.Parse(cc.URL())
	if err != nil {
		return nil, errors.New("storage: new azure: the container URL does not parse")
	}
	cu.RawQuery = ""

	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.ListPageSize < 0 || cfg.ListPageSize > 5000 {
		return nil, fmt.Errorf("storage: new azure: list page size %d is not between 1 and 5000", cfg.ListPageSize)
	}
	a := &Azure{cc: cc, container: cfg.Container, containerURL: cu.String(), cred: cred, pageSize: int32(cfg.ListPageSize)}
	a.log = log.With(slog.Group("storage", slog.String("store", a.String())))

	if _, err := cc.Create(ctx, nil); err != nil {
		if !bloberror.HasCode(err, bloberror.ContainerAlreadyExists) {
			return nil, fmt.Errorf("storage: new azure: create container %q: %w", cfg.Container, redact(err))
		}
	} else {
		a.log.Info("created container")
	}
	return a, nil
}

// Probe reads the container's properties: one small request that fails
// when the account is unreachable, the credentials are refused or the
// container is gone.
func (a *Azure) Probe(ctx context.Context) error {
	if _, err := a.cc.GetProperties(ctx, nil); err != nil {
		return fmt.Errorf("storage: probe %s: %w", a, redact(err))
	}
	return nil
}

// newHTTPClient keeps as many idle connections per host as transfers may
// run at once, so that a pool of conc uploads reuses its connections.
func newHTTPClient(conc int) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = conc
	t.MaxIdleConns = max(t.MaxIdleConns, conc)
	t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	return &http.Client{Transport: t}
}

// parseConnectionString splits the "Key=Value;…" form. The SDK parses it
// too, but does not expose the account key that SignedURL needs, and its
// message for UseDevelopmentStorage=true does not say what to do instead.
func parseConnectionString(cs string) (map[string]string, error) {
	if strings.TrimSpace(cs) == "" {
		return nil, errors.New("empty connection string")
	}
	m := map[string]string{}
	for part := range strings.SplitSeq(strings.TrimRight(cs, ";"), ";") {
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			return nil, errors.New("malformed connection string: want Key=Value pairs separated by ';'")
		}
		m[strings.TrimSpace(k)] = v
	}
	if strings.EqualFold(m["UseDevelopmentStorage"], "true") {
		return nil, errors.New("the Azure SDK does not accept UseDevelopmentStorage=true: " +
			"use the full Azurite string, DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;" +
			"AccountKey=<the well-known Azurite key>;BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;")
	}
	if m["AccountKey"] == "" && m["SharedAccessSignature"] == "" {
		return nil, errors.New("connection string has neither AccountKey nor SharedAccessSignature")
	}
	return m, nil
}

// validateContainer applies Azure's container naming rules, so that a typo
// in a URL fails with a clear message rather than a 400 from the service.
func validateContainer(name string) error {
	if len(name) < 3 || len(name) > 63 {
		return errors.New("must be 3 to 63 characters long")
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case c == '-' && i > 0 && i < len(name)-1 && name[i-1] != '-':
		default:
			return errors.New("must be lowercase letters, digits and single inner hyphens")
		}
	}
	return nil
}

// String returns "azblob://container"; the account and its key stay out of
// logs.
func (a *Azure) String() string { return "azblob://" + a.container }

// blobURL is the container URL plus the name, escaped segment by segment so
// that signed URLs keep readable slashes.
func (a *Azure) blobURL(name string) string {
	segs := strings.Split(name, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return a.containerURL + "/" + strings.Join(segs, "/")
}

// Put uploads with If-None-Match: *, so the service itself refuses a second
// write of the same name, between workers too. A body of known length up to
// 256 MiB goes up in one Put Blob request (a stream that ends within its
// first block counts: it is buffered); anything else is staged in blocks and
// committed at the end. Both are atomic on the service side: an interrupted
// upload leaves no blob, only uncommitted blocks that the service discards
// after a week. As with any remote write, a cancellation that arrives while
// the final request is in flight may come too late to stop it.
func (a *Azure) Put(ctx context.Context, name string, r io.Reader, size int64, opts PutOptions) error {
	if err := checkName("put", name); err != nil {
		return err
	}
	if size < 0 {
		size = -1
	}
	ct := opts.ContentType
	req := putRequest{
		headers: &blob.HTTPHeaders{},
		putID:   newPutID(),
		cond:    &blob.AccessConditions{ModifiedAccessConditions: &blob.ModifiedAccessConditions{IfNoneMatch: to.Ptr(azcore.ETagAny)}},
	}
	if ct != "" {
		req.headers.BlobContentType = &ct
	}
	if opts.CacheControl != "" {
		req.headers.BlobCacheControl = &opts.CacheControl
	}
	req.meta = map[string]*string{putIDKey: &req.putID}
	bb := a.cc.NewBlockBlobClient(name)

	body, n, err := seekable(ctx, r, size)
	if err != nil {
		return fmt.Errorf("storage: put %q: %w", name, err)
	}
	var stream io.Reader
	if body == nil && size > 0 && size <= maxBufferedPut {
		// A segment of known length is read whole and sent in one Put Blob
		// request: staging it in 2 MiB blocks would cost a Put Block per
		// block and a Put Block List (three requests for a 2 MiB segment
		// once AES padding adds its 16 bytes), and the service's work per
		// request, not per byte, is what bounds a backfill on Azurite.
		bufp := getPutBuffer(int(size))
		defer putBuffers.Put(bufp)
		g := &guardedReader{ctx: ctx, r: r, size: size}
		if _, err := io.ReadFull(g, (*bufp)[:size]); err != nil {
			return fmt.Errorf("storage: put %q: %w", name, err)
		}
		// The stream must end at the declared length: guardedReader fails
		// one that runs on.
		if _, err := io.ReadFull(g, make([]byte, 1)); err != io.EOF {
			return fmt.Errorf("storage: put %q: %w", name, err)
		}
		body, n = &window{ctx: ctx, rs: bytes.NewReader((*bufp)[:size]), size: size}, size
	}
	if body == nil {
		// Read the first block: a short stream then becomes a seekable body,
		// which the SDK can resend on a transient error and which can be
		// committed another way if the name turns out to be held by
		// uncommitted blocks (below).
		bufp := blockPool.Get().(*[]byte)
		defer blockPool.Put(bufp)
		g := &guardedReader{ctx: ctx, r: r, size: size}
		k, err := io.ReadFull(g, *bufp)
		switch err {
		case nil:
			stream = io.MultiReader(bytes.NewReader(*bufp), g)
		case io.EOF, io.ErrUnexpectedEOF:
			body, n = &window{ctx: ctx, rs: bytes.NewReader((*bufp)[:k]), size: int64(k)}, int64(k)
		default:
			return fmt.Errorf("storage: put %q: %w", name, err)
		}
	} else if n > maxSinglePut {
		stream, body = &guardedReader{ctx: ctx, r: body, size: n}, nil
	}

	if body != nil {
		_, err = bb.Upload(ctx, streaming.NopCloser(body), &blockblob.UploadOptions{
			HTTPHeaders: req.headers, Metadata: req.meta, AccessConditions: req.cond,
		})
	} else {
		_, err = bb.UploadStream(ctx, stream, &blockblob.UploadStreamOptions{
			BlockSize: streamBlockSize, Concurrency: streamConcurrency,
			HTTPHeaders: req.headers, Metadata: req.meta, AccessConditions: req.cond,
		})
	}
	if err == nil {
		return nil
	}
	if !isExists(err) {
		return a.wrap("put", name, err)
	}

	// The service says the name is taken. Find out by whom.
	props, perr := bb.GetProperties(ctx, nil)
	switch {
	case perr == nil && ownedBy(props.Metadata, req.putID):
		// The response to a request that succeeded was lost and the SDK's
		// retry met our own blob.
		a.log.Warn("put: a retried request found its own blob", slog.String("name", name))
		return nil
	case body != nil && bloberror.HasCode(perr, bloberror.BlobNotFound):
		// Only uncommitted blocks hold the name, left by an interrupted
		// streamed Put. Azure ignores them for If-None-Match; Azurite's Put
		// Blob does not, but its Put Block List does. Commit the body as a
		// single block instead.
		if _, err := body.Seek(0, io.SeekStart); err != nil {
			return fmt.Errorf("storage: put %q: %w", name, err)
		}
		err := commitOne(ctx, bb, body, req)
		if err == nil {
			return nil
		}
		if !isExists(err) {
			return a.wrap("put", name, err)
		}
	}
	return fmt.Errorf("storage: put %q: %w", name, ErrExists)
}

// putRequest holds what every upload request of one Put carries.
type putRequest struct {
	headers *blob.HTTPHeaders
	meta    map[string]*string
	cond    *blob.AccessConditions
	putID   string
}

// maxBufferedPut is the longest stream of known length that Put reads whole
// and sends in one request: the same memory a streamed Put may hold
// (streamBlockSize × streamConcurrency).
const maxBufferedPut = streamBlockSize * streamConcurrency

// putBuffers recycles whole-object buffers of up to maxBufferedPut bytes.
var putBuffers = sync.Pool{New: func() any { return new([]byte) }}

// getPutBuffer returns a pooled buffer of at least n bytes, grown in whole
// MiB so that segments of similar lengths share buffers.
func getPutBuffer(n int) *[]byte {
	bp := putBuffers.Get().(*[]byte)
	if cap(*bp) < n {
		*bp = make([]byte, (n+1<<20-1)&^(1<<20-1))
	}
	*bp = (*bp)[:cap(*bp)]
	return bp
}

// blockPool recycles the first-block buffers of streamed Puts, which the
// worker runs many of in parallel.
var blockPool = sync.Pool{New: func() any { b := make([]byte, streamBlockSize); return &b }}

// commitOne stages body as one block and commits it with the Put's
// condition. The block ID has the length the SDK uses for streamed uploads:
// the service rejects IDs of a different length than the blob's existing
// uncommitted blocks.
func commitOne(ctx context.Context, bb *blockblob.Client, body io.ReadSeeker, req putRequest) error {
	var raw [64]byte
	_, _ = rand.Read(raw[:])
	id := base64.StdEncoding.EncodeToString(raw[:])
	if _, err := bb.StageBlock(ctx, id, streaming.NopCloser(body), nil); err != nil {
		return err
	}
	_, err := bb.CommitBlockList(ctx, []string{id}, &blockblob.CommitBlockListOptions{
		HTTPHeaders: req.headers, Metadata: req.meta, AccessConditions: req.cond,
	})
	return err
}

func newPutID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// ownedBy reports whether blob metadata carries putID. The service returns
// metadata names in whatever case the HTTP stack gives them.
func ownedBy(meta map[string]*string, putID string) bool {
	for k, v := range meta {
		if strings.EqualFold(k, putIDKey) && v != nil && *v == putID {
			return true
		}
	}
	return false
}

func isExists(err error) bool {
	// With If-None-Match: * the service answers 409 BlobAlreadyExists. A 412
	// ConditionNotMet can only concern that same condition, the one Put sets.
	return bloberror.HasCode(err, bloberror.BlobAlreadyExists, bloberror.ConditionNotMet)
}

// seekable returns r as an upload body of n bytes when r can seek. The SDK
// sends a seekable body from offset 0 to the end and rewinds to 0 on retries,
// so the body is a window starting at r's current position; a reader that
// only pretends to seek (a pipe in an *os.File) falls back to streaming.
func seekable(ctx context.Context, r io.Reader, size int64) (body io.ReadSeeker, n int64, err error) {
	rs, ok := r.(io.ReadSeeker)
	if !ok {
		return nil, 0, nil
	}
	cur, err := rs.Seek(0, io.SeekCurrent)
	if err != nil {
		return nil, 0, nil
	}
	end, err := rs.Seek(0, io.SeekEnd)
	if err != nil {
		return nil, 0, nil
	}
	if _, err := rs.Seek(cur, io.SeekStart); err != nil {
		return nil, 0, err
	}
	n = end - cur
	if size >= 0 && n != size {
		return nil, 0, fmt.Errorf("reader holds %d bytes, declared size is %d", n, size)
	}
	return &window{ctx: ctx, rs: rs, base: cur, size: n}, n, nil
}

// window is the part of a ReadSeeker from base to base+size, seen as a whole
// stream. It stops yielding bytes once ctx is done: the transport may still
// be sending when cancellation arrives, and a body that was read to the end
// could be committed by the service after Put has reported failure.
type window struct {
	ctx        context.Context
	rs         io.ReadSeeker
	base, size int64
	pos        int64
}

func (w *window) Read(p []byte) (int, error) {
	if err := w.ctx.Err(); err != nil {
		return 0, err
	}
	if w.pos >= w.size {
		return 0, io.EOF
	}
	if rem := w.size - w.pos; int64(len(p)) > rem {
		p = p[:rem]
	}
	n, err := w.rs.Read(p)
	w.pos += int64(n)
	if err == io.EOF && w.pos < w.size {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

func (w *window) Seek(offset int64, whence int) (int64, error) {
	var abs int64
	switch whence {
	case io.SeekStart:
		abs = offset
	case io.SeekCurrent:
		abs = w.pos + offset
	case io.SeekEnd:
		abs = w.size + offset
	default:
		return 0, errors.New("window: invalid whence")
	}
	if abs < 0 || abs > w.size {
		return 0, errors.New("window: seek out of range")
	}
	if _, err := w.rs.Seek(w.base+abs, io.SeekStart); err != nil {
		return 0, err
	}
	w.pos = abs
	return abs, nil
}

// Get downloads the whole blob.
func (a *Azure) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	return a.GetRange(ctx, name, 0, -1)
}

// GetRange downloads part of the blob. The body resumes after a broken
// connection (the retry reader re-requests the rest of the range, pinned to
// the blob's ETag).
func (a *Azure) GetRange(ctx context.Context, name string, offset, length int64) (io.ReadCloser, error) {
	if err := checkName("get", name); err != nil {
		return nil, err
	}
	if offset < 0 {
		return nil, fmt.Errorf("storage: get %q: negative offset %d", name, offset)
	}
	if length == 0 {
		// HTTPRange treats Count 0 as "to the end"; still report a missing blob.
		if _, err := a.cc.NewBlobClient(name).GetProperties(ctx, nil); err != nil {
			return nil, a.wrap("get", name, err)
		}
		return emptyBody(), nil
	}
	rng := blob.HTTPRange{Offset: offset}
	if length > 0 {
		rng.Count = length
	}
	resp, err := a.cc.NewBlobClient(name).DownloadStream(ctx, &blob.DownloadStreamOptions{Range: rng})
	if err != nil {
		// 416: the blob exists and the range starts at or after its end.
		if bloberror.HasCode(err, bloberror.InvalidRange) {
			return emptyBody(), nil
		}
		return nil, a.wrap("get", name, err)
	}
	return resp.NewRetryReader(ctx, &blob.RetryReaderOptions{MaxRetries: 3, EarlyCloseAsError: true}), nil
}

// Stat reads the blob's properties.
func (a *Azure) Stat(ctx context.Context, name string) (ObjectInfo, error) {
	if err := checkName("stat", name); err != nil {
		return ObjectInfo{}, err
	}
	p, err := a.cc.NewBlobClient(name).GetProperties(ctx, nil)
	if err != nil {
		return ObjectInfo{}, a.wrap("stat", name, err)
	}
	return ObjectInfo{
		Name:         name,
		Size:         deref(p.ContentLength),
		ModTime:      deref(p.LastModified),
		ContentType:  deref(p.ContentType),
		CacheControl: deref(p.CacheControl),
	}, nil
}

// List pages through the flat listing, which the service returns in lexical
// order, one page (ListPageSize blobs) in memory at a time: a 100,000-title
// catalogue streams through fn, and a callback that stops early fetches no
// further page.
func (a *Azure) List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	if err := validatePrefix(prefix); err != nil {
		return err
	}
	opts := &container.ListBlobsFlatOptions{}
	if a.pageSize > 0 {
		opts.MaxResults = &a.pageSize
	}
	if prefix != "" {
		opts.Prefix = &prefix
	}
	pager := a.cc.NewListBlobsFlatPager(opts)
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return a.wrap("list", prefix, err)
		}
		for _, it := range page.Segment.BlobItems {
			if it.Name == nil {
				continue
			}
			info := ObjectInfo{Name: *it.Name}
			if p := it.Properties; p != nil {
				info.Size = deref(p.ContentLength)
				info.ModTime = deref(p.LastModified)
				info.ContentType = deref(p.ContentType)
				info.CacheControl = deref(p.CacheControl)
			}
			if err := fn(info); err != nil {
				return err
			}
		}
	}
	return nil
}

// Delete deletes the blob; a missing blob is not an error, so that garbage
// collection of old versions can be re-run after a partial failure.
func (a *Azure) Delete(ctx context.Context, name string) error {
	if err := checkName("delete", name); err != nil {
		return err
	}
	_, err := a.cc.NewBlobClient(name).Delete(ctx, nil)
	if err != nil && !bloberror.HasCode(err, bloberror.BlobNotFound) {
		return a.wrap("delete", name, err)
	}
	return nil
}

// SignedURL returns a URL that lets anyone holding it read this one blob,
// and only it, until now+ttl. It is a service SAS signed with the account
// key: user-delegation SAS needs Azure AD and does not work on Azurite. The
// start time is back-dated 5 minutes because the service rejects a SAS that
// starts in its future, and clocks drift. The URL is HTTPS-only unless the
// endpoint itself is plain HTTP (Azurite).
//
// The SAS also overrides the response's Cache-Control (the rscc parameter,
// part of the signature) with SASCacheControl(ttl): the blob's own header
// is "public, max-age=31536000, immutable", and a CDN in front of the
// storage account would otherwise keep the segment for a year, long after
// the SAS expired.
func (a *Azure) SignedURL(name string, ttl time.Duration, now time.Time) (string, error) {
	if err := checkName("sign", name); err != nil {
		return "", err
	}
	if ttl <= 0 {
		return "", fmt.Errorf("storage: sign %q: ttl %v is not positive", name, ttl)
	}
	if a.cred == nil {
		return "", fmt.Errorf("storage: sign %q: the connection string has no account key", name)
	}
	proto := sas.ProtocolHTTPS
	if strings.HasPrefix(a.containerURL, "http://") {
		proto = sas.ProtocolHTTPSandHTTP
	}
	qp, err := sas.BlobSignatureValues{
		Protocol:      proto,
		StartTime:     now.Add(-5 * time.Minute).UTC(),
		ExpiryTime:    now.Add(ttl).UTC(),
		Permissions:   (&sas.BlobPermissions{Read: true}).String(),
		ContainerName: a.container,
		BlobName:      name,
		CacheControl:  SASCacheControl(ttl),
	}.SignWithSharedKey(a.cred)
	if err != nil {
		return "", fmt.Errorf("storage: sign %q: %w", name, err)
	}
	return a.blobURL(name) + "?" + qp.Encode(), nil
}

// SASCacheControl is the Cache-Control a SAS of this lifetime makes the
// service answer with: private (no shared cache may keep it) and fresh for
// at most a minute, never beyond the SAS's own life.
func SASCacheControl(ttl time.Duration) string {
	return "private, max-age=" + strconv.FormatInt(int64(max(min(ttl, time.Minute), 0)/time.Second), 10)
}

// wrap maps service errors to the package's sentinels and adds the
// operation and name.
func (a *Azure) wrap(op, name string, err error) error {
	var re *azcore.ResponseError
	switch {
	case bloberror.HasCode(err, bloberror.BlobNotFound),
		errors.As(err, &re) && re.StatusCode == http.StatusNotFound && re.ErrorCode == "":
		// A HEAD response has no body; its code is in a header the SDK may
		// not have found. ContainerNotFound is left alone: it is a broken
		// deployment, not a missing object.
		return fmt.Errorf("storage: %s %q: %w", op, name, ErrNotFound)
	}
	return fmt.Errorf("storage: %s %q: %w", op, name, redact(err))
}

// redact hides the query of URLs quoted by transport errors: with a SAS
// connection string it holds the signature. Wrappers may already have copied
// the URL into their message, so the message is rewritten as a whole.
func redact(err error) error {
	var ue *url.Error
	if !errors.As(err, &ue) {
		return err
	}
	u, perr := url.Parse(ue.URL)
	if perr != nil || u.RawQuery == "" {
		return err
	}
	q := u.RawQuery
	u.RawQuery = "REDACTED"
	ue.URL = u.String()
	return redactedError{msg: strings.ReplaceAll(err.Error(), q, "REDACTED"), err: err}
}

type redactedError struct {
	msg string
	err error
}

func (e redactedError) Error() string { return e.msg }
func (e redactedError) Unwrap() error { return e.err }

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
