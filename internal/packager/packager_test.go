package packager

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/zeebo/xxh3"

	"github.com/hlsvault/hlsvault/internal/keys"
	"github.com/hlsvault/hlsvault/internal/layout"
	"github.com/hlsvault/hlsvault/internal/playlist"
	"github.com/hlsvault/hlsvault/internal/segcrypt"
	"github.com/hlsvault/hlsvault/internal/storage"
)

func testKeyring(t *testing.T) *keys.Keyring {
	t.Helper()
	raw := make([]byte, 32)
	for i := range raw {
		raw[i] = byte(3*i + 1)
	}
	k, err := keys.NewKeyring(base64.StdEncoding.EncodeToString(raw))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// recordingStore remembers the PutOptions of every object: the filesystem
// keeps none, and the content type and cache header are the packager's to
// set.
type recordingStore struct {
	storage.Store
	mu   sync.Mutex
	opts map[string]storage.PutOptions
}

func (r *recordingStore) Put(ctx context.Context, name string, body io.Reader, size int64, o storage.PutOptions) error {
	r.mu.Lock()
	r.opts[name] = o
	r.mu.Unlock()
	return r.Store.Put(ctx, name, body, size, o)
}

func (r *recordingStore) options(name string) storage.PutOptions {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.opts[name]
}

type setup struct {
	store *recordingStore
	ring  *keys.Keyring
	ck    keys.ContentKey
	p     *Packager
}

func newSetup(t *testing.T, opts Options) *setup {
	t.Helper()
	fs, err := storage.NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ck, _ := keys.ContentKeyFromBytes([]byte("0123456789abcdef"))
	opts.NewKey = func() (keys.ContentKey, error) { return ck, nil }
	opts.NewKeyID = func() (string, error) { return "k_00000000000000000000000000000007", nil }
	opts.NewIV = func(name string) (iv [16]byte, err error) {
		copy(iv[:], name)
		return iv, nil
	}
	ring := testKeyring(t)
	rec := &recordingStore{Store: fs, opts: map[string]storage.PutOptions{}}
	return &setup{store: rec, ring: ring, ck: ck, p: New(rec, ring, opts)}
}

func TestPutVerifyAndPlaylists(t *testing.T) {
	for _, bufferMax := range []int64{-1, 1 << 20} {
		t.Run(fmt.Sprint("buffer ", bufferMax), func(t *testing.T) {
			ctx := context.Background()
			s := newSetup(t, Options{BufferMax: bufferMax})
			v, err := s.p.Begin("hls/vid/v1/", "https://k.example/{key_id}")
			if err != nil {
				t.Fatal(err)
			}
			if ks := v.Keys(); len(ks) != 1 || ks[0].URI != "https://k.example/k_00000000000000000000000000000007" || ks[0].Period != 0 {
				t.Fatalf("keys %+v", ks)
			}
			plain := bytes.Repeat([]byte("segment!"), 1000)
			st, err := v.Put(ctx, Object{Name: "720p/seg_00000.ts", Body: bytes.NewReader(plain), Size: int64(len(plain))})
			if err != nil {
				t.Fatal(err)
			}
			if st.Name != "hls/vid/v1/720p/seg_00000.ts" || st.PlainSize != int64(len(plain)) || st.Sum != xxh3.HashSeed(plain, v.seed) ||
				st.Size != segcrypt.EncryptedSize(int64(len(plain))) || !strings.HasPrefix(string(st.IV[:]), "720p/seg_00000.t") {
				t.Fatalf("stored %+v", st)
			}
			if err := v.Verify(ctx, st); err != nil {
				t.Fatal(err)
			}
			info, err := s.store.Stat(ctx, st.Name)
			if err != nil || info.Size != st.Size {
				t.Fatalf("stat %+v %v", info, err)
			}
			if o := s.store.options(st.Name); o.ContentType != "video/mp2t" || o.CacheControl != layout.Immutable {
				t.Fatalf("segment stored with %+v", o)
			}
			// The object is ciphertext under the version's key.
			rc, _ := s.store.Get(ctx, st.Name)
			dec, _ := segcrypt.NewDecryptReader(rc, s.ck.Bytes(), st.IV[:])
			got, err := io.ReadAll(dec)
			rc.Close()
			if err != nil || !bytes.Equal(got, plain) {
				t.Fatalf("decrypt: %v", err)
			}

			// A re-key: the source is decrypted, re-encrypted under the new key.
			old, _ := keys.ContentKeyFromBytes([]byte("fedcba9876543210"))
			oldIV := [16]byte{9}
			enc, _ := segcrypt.NewEncryptReader(bytes.NewReader(plain), old.Bytes(), oldIV[:])
			ct, _ := io.ReadAll(enc)
			st2, err := v.Put(ctx, Object{Name: "720p/seg_00001.ts", Body: bytes.NewReader(ct), Size: -1, SourceSize: int64(len(ct)),
				SourceKey: &old, SourceIV: &oldIV})
			if err != nil || st2.Sum != xxh3.HashSeed(plain, v.seed) {
				t.Fatalf("re-key: %+v %v", st2, err)
			}
			if err := v.Verify(ctx, st2); err != nil {
				t.Fatal(err)
			}
			// A source under another key is ErrSourceKey.
			wrong, _ := keys.ContentKeyFromBytes([]byte("XXXXXXXXXXXXXXXX"))
			_, err = v.Put(ctx, Object{Name: "720p/seg_00002.ts", Body: bytes.NewReader(ct), Size: -1, SourceSize: int64(len(ct)),
				SourceKey: &wrong, SourceIV: &oldIV})
			if !errors.Is(err, ErrSourceKey) {
				t.Errorf("wrong source key: %v", err)
			}

			name, _, err := v.WriteMedia(ctx, "720p", playlist.Media{Independent: true, Segments: []playlist.Segment{
				{URI: "seg_00000.ts", Duration: 4, Size: st.Size, IV: st.IV, KeyURI: st.Key.URI},
				{URI: "seg_00001.ts", Duration: 2, Size: st2.Size, IV: st2.IV, KeyURI: st2.Key.URI}}})
			if err != nil || name != "hls/vid/v1/720p/index.m3u8" {
				t.Fatalf("media: %s %v", name, err)
			}
			if o := s.store.options(name); o.ContentType != layout.ContentTypePlaylist || o.CacheControl != layout.Immutable {
				t.Fatalf("media playlist stored with %+v", o)
			}
			rc, _ = s.store.Get(ctx, name)
			text, _ := io.ReadAll(rc)
			rc.Close()
			if !bytes.Contains(text, []byte(`URI="https://k.example/k_00000000000000000000000000000007"`)) {
				t.Errorf("media playlist without the version's key URI:\n%s", text)
			}
			if _, _, err := v.WriteMedia(ctx, "../x", playlist.Media{}); !errors.Is(err, ErrInvalidPlaylist) {
				t.Errorf("bad rendition: %v", err)
			}
			if _, _, err := v.WriteMaster(ctx, playlist.Master{}); !errors.Is(err, ErrInvalidPlaylist) {
				t.Errorf("empty master: %v", err)
			}
			master, _, err := v.WriteMaster(ctx, playlist.Master{Variants: []playlist.Variant{{URI: "720p/index.m3u8", Bandwidth: 1000}}})
			if err != nil || master != "hls/vid/v1/master.m3u8" {
				t.Fatalf("master: %s %v", master, err)
			}

			wks, err := v.WrappedKeys()
			if err != nil || len(wks) != 1 {
				t.Fatalf("wrapped: %+v %v", wks, err)
			}
			wk := wks[0]
			if wk.KeyID != st.Key.ID || wk.KEKID != s.ring.Primary().ID() || wk.Period != 0 || wk.Start != 0 {
				t.Fatalf("wrapped: %+v", wk)
			}
			back, err := s.ring.Unwrap(wk.KEKID, wk.KeyID, wk.Wrapped)
			if err != nil || !bytes.Equal(back.Bytes(), s.ck.Bytes()) {
				t.Fatalf("unwrap: %v", err)
			}
		})
	}
}

func TestVerifyCatchesTampering(t *testing.T) {
	ctx := context.Background()
	s := newSetup(t, Options{})
	v, err := s.p.Begin("hls/vid/v2/", "https://k.example/{key_id}")
	if err != nil {
		t.Fatal(err)
	}
	st, err := v.Put(ctx, Object{Name: "a/seg_00000.ts", Body: strings.NewReader("hello"), Size: 5})
	if err != nil {
		t.Fatal(err)
	}
	st.Sum ^= 1
	if err := v.Verify(ctx, st); !errors.Is(err, ErrVerify) {
		t.Errorf("tampered digest: %v", err)
	}
}

func TestPutSizeMismatch(t *testing.T) {
	ctx := context.Background()
	s := newSetup(t, Options{BufferMax: 1 << 20})
	v, _ := s.p.Begin("hls/vid/v3/", "https://k.example/{key_id}")
	// Longer than promised: the buffered path refuses the extra bytes.
	if _, err := v.Put(ctx, Object{Name: "a/seg_00000.ts", Body: strings.NewReader("hello world"), Size: 5}); err == nil {
		t.Error("a body longer than its size was stored")
	}
	// A caller's check sees the plaintext.
	boom := errors.New("boom")
	_, err := v.Put(ctx, Object{Name: "a/seg_00001.ts", Body: strings.NewReader("x"), Size: 1,
		Check: func(io.Reader) io.Reader { return iotestErr{boom} }})
	if !errors.Is(err, boom) {
		t.Errorf("check error: %v", err)
	}
}

func TestBeginRefuses(t *testing.T) {
	s := newSetup(t, Options{})
	if _, err := s.p.Begin("hls/vid/v1", "https://k/{key_id}"); err == nil {
		t.Error("prefix without /")
	}
	if _, err := s.p.Begin("hls/vid/v1/", "https://k/fixed"); err == nil {
		t.Error("template without {key_id}")
	}
}

type iotestErr struct{ err error }

func (e iotestErr) Read([]byte) (int, error) { return 0, e.err }

// TestRetriedStepWritesTheSame: a step that writes the same bytes each
// time it runs (the chunked join) can run again over what it stored: the
// same playlist, or the same subtitle segment through PutOnce, counts as
// stored, with the same IV and digest, and still decrypts; other bytes
// under a taken name are refused. PutOnce's IV differs by name, by
// plaintext and by key, and is not the name-derived test IV.
func TestRetriedStepWritesTheSame(t *testing.T) {
	ctx := context.Background()
	s := newSetup(t, Options{})
	v, err := s.p.Begin("hls/vid/v4/", "https://k.example/{key_id}")
	if err != nil {
		t.Fatal(err)
	}
	doc := []byte("WEBVTT\nX-TIMESTAMP-MAP=MPEGTS:126000,LOCAL:00:00:00.000\n\n00:00:01.000 --> 00:00:02.000\nHello\n")
	st, err := v.PutOnce(ctx, "sub0-en/seg_00000.vtt", doc, 0)
	if err != nil {
		t.Fatal(err)
	}
	again, err := v.PutOnce(ctx, "sub0-en/seg_00000.vtt", doc, 0)
	if err != nil || again != st {
		t.Fatalf("the same segment again: %+v %v, first %+v", again, err, st)
	}
	if st.PlainSize != int64(len(doc)) || st.Size != segcrypt.EncryptedSize(int64(len(doc))) || st.Sum != xxh3.HashSeed(doc, v.seed) {
		t.Fatalf("stored %+v", st)
	}
	if strings.HasPrefix(string(st.IV[:]), "sub0-en") {
		t.Fatal("PutOnce took the drawn IV")
	}
	if err := v.Verify(ctx, st); err != nil {
		t.Fatal(err)
	}
	if o := s.store.options(st.Name); o.ContentType != layout.ContentType(st.Name) || o.CacheControl != layout.Immutable {
		t.Fatalf("stored with %+v", o)
	}
	other, err := v.PutOnce(ctx, "sub0-en/seg_00001.vtt", doc, 0)
	if err != nil || other.IV == st.IV {
		t.Fatalf("another name, the same IV: %+v %v", other, err)
	}
	changed := append(bytes.Clone(doc), '!')
	if _, err := v.PutOnce(ctx, "sub0-en/seg_00000.vtt", changed, 0); !errors.Is(err, storage.ErrExists) {
		t.Fatalf("other bytes under a taken name: %v, want ErrExists", err)
	}
	if iv := syntheticIV([]byte("0123456789abcdeX"), "sub0-en/seg_00000.vtt", doc); iv == st.IV {
		t.Fatal("the IV does not depend on the key")
	}
	if iv := syntheticIV(s.ck.Bytes(), "sub0-en/seg_00000.vtt", changed); iv == st.IV {
		t.Fatal("the IV does not depend on the plaintext")
	}

	m := playlist.Media{Segments: []playlist.Segment{{URI: "seg_00000.vtt", Duration: 4, Size: st.Size, IV: st.IV, KeyURI: st.Key.URI}}}
	name, _, err := v.WriteMedia(ctx, "sub0-en", m)
	if err != nil {
		t.Fatal(err)
	}
	if again, _, err := v.WriteMedia(ctx, "sub0-en", m); err != nil || again != name {
		t.Fatalf("the same playlist again: %s %v", again, err)
	}
	m.Segments[0].Duration = 3
	if _, _, err := v.WriteMedia(ctx, "sub0-en", m); !errors.Is(err, storage.ErrExists) {
		t.Fatalf("another playlist under a taken name: %v, want ErrExists", err)
	}
}
