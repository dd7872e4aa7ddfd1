package segcrypt

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"testing"
)

// stdlibCBC is the reference: crypto/cipher's CBC encryption of src.
func stdlibCBC(t testing.TB, key, iv, src []byte) []byte {
	b, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]byte, len(src))
	cipher.NewCBCEncrypter(b, iv).CryptBlocks(out, src)
	return out
}

// encrypt4 runs the kernel on four lanes of the given lengths (in blocks,
// equal-length prefixes of data) for blocks blocks, then the rest lane by
// lane, as Lanes.run would, and returns each lane's ciphertext.
func encrypt4(keys, ivs [lanesWidth][]byte, data [lanesWidth][]byte, blocks int) [lanesWidth][]byte {
	var rk [lanesWidth][176]byte
	var iv [lanesWidth][BlockSize]byte
	var out [lanesWidth][]byte
	var a laneArgs
	for i := range lanesWidth {
		expandEncKey128(&keys[i][0], &rk[i])
		copy(iv[i][:], ivs[i])
		out[i] = append([]byte(nil), data[i]...)
		a.rk[i], a.iv[i], a.data[i] = &rk[i], &iv[i], &out[i][0]
	}
	cbcEncrypt4(&a, blocks)
	// The rest of each lane, with the other three on a scratch lane: the
	// chain state must have carried over through iv.
	scratch := make([]byte, 64*BlockSize)
	var zrk [176]byte
	var ziv [BlockSize]byte
	for i := range lanesWidth {
		rest := len(out[i])/BlockSize - blocks
		for rest > 0 {
			step := min(rest, 64)
			var b laneArgs
			for k := range lanesWidth {
				b.rk[k], b.iv[k], b.data[k] = &zrk, &ziv, &scratch[0]
			}
			off := len(out[i]) - rest*BlockSize
			b.rk[i], b.iv[i], b.data[i] = &rk[i], &iv[i], &out[i][off]
			cbcEncrypt4(&b, step)
			rest -= step
		}
	}
	return out
}

// TestCBCEncrypt4MatchesStdlib holds the four-lane kernel to crypto/cipher:
// four different keys, IVs and lengths, split at every block.
func TestCBCEncrypt4MatchesStdlib(t *testing.T) {
	if !haveCBCKernel {
		t.Skip("no AES-NI kernel on this build (purego or not amd64): Lanes uses crypto/cipher, see TestLanesMatchStdlib")
	}
	r := rand.New(rand.NewPCG(3, 4))
	fill := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		return b
	}
	for blocks := 1; blocks <= 20; blocks++ {
		for cut := 0; cut <= blocks; cut++ {
			var keys, ivs, data [lanesWidth][]byte
			for i := range lanesWidth {
				keys[i], ivs[i], data[i] = fill(KeySize), fill(BlockSize), fill((blocks+i)*BlockSize)
			}
			got := encrypt4(keys, ivs, data, cut)
			for i := range lanesWidth {
				if want := stdlibCBC(t, keys[i], ivs[i], data[i]); !bytes.Equal(got[i], want) {
					t.Fatalf("lane %d of %d blocks, split at %d: differs from crypto/cipher", i, blocks+i, cut)
				}
			}
		}
	}
}

// TestCBCEncrypt4KnownAnswer: NIST SP 800-38A F.2.1 (CBC-AES128.Encrypt)
// in every lane, the other lanes' keys differing.
func TestCBCEncrypt4KnownAnswer(t *testing.T) {
	if !haveCBCKernel {
		t.Skip("no AES-NI kernel on this build (purego or not amd64)")
	}
	key := mustHex("2b7e151628aed2a6abf7158809cf4f3c")
	iv := mustHex("000102030405060708090a0b0c0d0e0f")
	plain := mustHex("6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51" +
		"30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710")
	want := mustHex("7649abac8119b246cee98e9b12e9197d5086cb9b507219ee95db113a917678b2" +
		"73bed6b8e3c1743b7116e69e222295163ff1caa1681fac09120eca307586e1a7")
	for lane := range lanesWidth {
		var keys, ivs, data [lanesWidth][]byte
		for i := range lanesWidth {
			keys[i], ivs[i], data[i] = bytes.Repeat([]byte{byte(i + 1)}, KeySize), iv, plain
		}
		keys[lane] = key
		if got := encrypt4(keys, ivs, data, 4); !bytes.Equal(got[lane], want) {
			t.Fatalf("lane %d: got %x", lane, got[lane])
		}
	}
}

// FuzzCBCEncrypt4: any four keys and IVs, data and split encrypt as
// crypto/cipher encrypts them.
func FuzzCBCEncrypt4(f *testing.F) {
	f.Add(make([]byte, 4*KeySize), make([]byte, 4*BlockSize), make([]byte, 9*BlockSize), uint16(3))
	f.Fuzz(func(t *testing.T, key, iv, src []byte, cut uint16) {
		if !haveCBCKernel || len(key) != 4*KeySize || len(iv) != 4*BlockSize {
			return
		}
		n := len(src) / BlockSize
		if n == 0 {
			return
		}
		var keys, ivs, data [lanesWidth][]byte
		for i := range lanesWidth {
			keys[i], ivs[i] = key[i*KeySize:(i+1)*KeySize], iv[i*BlockSize:(i+1)*BlockSize]
			// Lanes of different lengths: lane i drops its first i blocks
			// where there are enough.
			data[i] = src[min(i, n-1)*BlockSize : n*BlockSize]
		}
		shortest := n - min(lanesWidth-1, n-1)
		at := int(cut) % (shortest + 1)
		got := encrypt4(keys, ivs, data, at)
		for i := range lanesWidth {
			if want := stdlibCBC(t, keys[i], ivs[i], data[i]); !bytes.Equal(got[i], want) {
				t.Fatalf("lane %d of %d bytes split at block %d: differs from crypto/cipher", i, len(data[i]), at)
			}
		}
	})
}

// TestLanesMatchStdlib runs many encrypting readers at once through one
// Lanes, so that batches form with chunks of different lengths and keys,
// and holds each ciphertext, padding included, to crypto/cipher's.
func TestLanesMatchStdlib(t *testing.T) {
	l := NewLanes()
	sizes := []int{0, 1, 15, 16, 17, 4095, bufSize - 1, bufSize, bufSize + 1, 3*bufSize + 100, 2 << 20}
	const rounds = 3
	var wg sync.WaitGroup
	errs := make(chan error, len(sizes)*rounds*2)
	for g := range 2 * len(sizes) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 9))
			for k := range rounds {
				size := sizes[(g+k)%len(sizes)]
				key, iv, plain := make([]byte, KeySize), make([]byte, BlockSize), make([]byte, size)
				for _, b := range [][]byte{key, iv, plain} {
					for i := range b {
						b[i] = byte(r.Uint32())
					}
				}
				enc, err := l.NewEncryptReader(bytes.NewReader(plain), key, iv)
				if err != nil {
					errs <- err
					return
				}
				// Alternate WriteTo and small Reads, as the two ways out.
				var got []byte
				if k%2 == 0 {
					var buf bytes.Buffer
					_, err = io.Copy(&buf, enc)
					got = buf.Bytes()
				} else {
					got, err = io.ReadAll(io.LimitReader(enc, 1<<40))
				}
				if err != nil {
					errs <- err
					return
				}
				padded := append(plain, bytes.Repeat([]byte{byte(BlockSize - size%BlockSize)}, BlockSize-size%BlockSize)...)
				if want := stdlibCBC(t, key, iv, padded); !bytes.Equal(got, want) {
					errs <- fmt.Errorf("reader %d, %d bytes: differs from crypto/cipher", g, size)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestLanesWipeKeys: a reader's round keys are cleared once it has handed
// out its last block.
func TestLanesWipeKeys(t *testing.T) {
	if !haveCBCKernel {
		t.Skip("no AES-NI kernel on this build: crypto/cipher holds the keys")
	}
	key := bytes.Repeat([]byte{0xa5}, KeySize)
	r, err := NewLanes().NewEncryptReader(bytes.NewReader(make([]byte, 100)), key, make([]byte, BlockSize))
	if err != nil {
		t.Fatal(err)
	}
	e := r.(*encryptReader).mode.(*laneEncrypter)
	if e.rk == ([176]byte{}) {
		t.Fatal("no round keys before the end")
	}
	if _, err := io.Copy(io.Discard, r); err != nil {
		t.Fatal(err)
	}
	if e.rk != ([176]byte{}) {
		t.Fatal("round keys left in memory after the last block")
	}
}

// BenchmarkLanes compares encrypting readers through one Lanes with the
// package's crypto/cipher readers, for 1, 4 and 16 segments of 2 MiB in
// flight at once (a backfill keeps UPLOAD_CONCURRENCY in flight).
func BenchmarkLanes(b *testing.B) {
	const seg = 2 << 20
	plain := make([]byte, seg)
	key, iv := make([]byte, KeySize), make([]byte, BlockSize)
	for _, streams := range []int{1, 4, 16} {
		for _, name := range []string{"stdlib", "lanes"} {
			b.Run(fmt.Sprintf("%s/streams=%d", name, streams), func(b *testing.B) {
				l := NewLanes()
				newReader := NewEncryptReader
				if name == "lanes" {
					newReader = l.NewEncryptReader
				}
				b.SetBytes(seg * int64(streams))
				for b.Loop() {
					var wg sync.WaitGroup
					for range streams {
						wg.Add(1)
						go func() {
							defer wg.Done()
							r, _ := newReader(bytes.NewReader(plain), key, iv)
							io.Copy(io.Discard, r)
						}()
					}
					wg.Wait()
				}
			})
		}
	}
}

// BenchmarkCBCEncrypt4 is the kernel alone: four 256 KiB chunks (the
// readers' chunk) per call, all lanes busy; bytes count all four lanes.
func BenchmarkCBCEncrypt4(b *testing.B) {
	if !haveCBCKernel {
		b.Skip("no AES-NI kernel on this build")
	}
	var rk [lanesWidth][176]byte
	var iv [lanesWidth][BlockSize]byte
	var a laneArgs
	for i := range lanesWidth {
		expandEncKey128(&make([]byte, KeySize)[0], &rk[i])
		a.rk[i], a.iv[i], a.data[i] = &rk[i], &iv[i], &make([]byte, bufSize)[0]
	}
	b.SetBytes(lanesWidth * bufSize)
	for b.Loop() {
		cbcEncrypt4(&a, bufSize/BlockSize)
	}
}
