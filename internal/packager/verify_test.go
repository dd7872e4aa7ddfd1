package packager

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/hlsvault/hlsvault/internal/storage"
)

// damagingStore hands Verify a read-back changed by damage: what a store
// that corrupted, truncated or lost part of an object would return.
type damagingStore struct {
	storage.Store
	damage func([]byte) []byte
}

func (d *damagingStore) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	rc, err := d.Store.Get(ctx, name)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return nil, err
	}
	return io.NopCloser(bytes.NewReader(d.damage(b))), nil
}

// TestVerifyDetectsCorruptedReadBack puts an object intact, then reads it
// back damaged in each way a store could: Verify must refuse every one
// with ErrVerify, and accept the undamaged read-back.
func TestVerifyDetectsCorruptedReadBack(t *testing.T) {
	plain := bytes.Repeat([]byte("0123456789abcdef-segment-"), 20000) // 500 kB: several working buffers
	cases := []struct {
		name   string
		damage func([]byte) []byte
	}{
		{"one bit in the middle", func(b []byte) []byte { b[len(b)/2] ^= 0x10; return b }},
		{"one bit in the first block", func(b []byte) []byte { b[3] ^= 1; return b }},
		{"the last block", func(b []byte) []byte { b[len(b)-1] ^= 0x80; return b }},
		{"a block short", func(b []byte) []byte { return b[:len(b)-16] }},
		{"a block long", func(b []byte) []byte { return append(b, b[len(b)-16:]...) }},
		{"two blocks swapped", func(b []byte) []byte {
			var tmp [16]byte
			copy(tmp[:], b[1024:1040])
			copy(b[1024:1040], b[2048:2064])
			copy(b[2048:2064], tmp[:])
			return b
		}},
		{"not a whole block", func(b []byte) []byte { return b[:len(b)-5] }},
		{"empty", func([]byte) []byte { return nil }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			s := newSetup(t, Options{})
			v, err := s.p.Begin("hls/vid/v1/", "https://k.example/{key_id}")
			if err != nil {
				t.Fatal(err)
			}
			st, err := v.Put(ctx, Object{Name: "720p/seg_00000.ts", Body: bytes.NewReader(plain), Size: int64(len(plain))})
			if err != nil {
				t.Fatal(err)
			}
			if err := v.Verify(ctx, st); err != nil {
				t.Fatalf("intact read-back: %v", err)
			}
			s.p.store = &damagingStore{Store: s.store, damage: c.damage}
			err = v.Verify(ctx, st)
			if !errors.Is(err, ErrVerify) {
				t.Fatalf("damaged read-back (%s): %v, want ErrVerify", c.name, err)
			}
			if !strings.Contains(err.Error(), st.Name) {
				t.Errorf("error does not name the object: %v", err)
			}
		})
	}
}
