package segcrypt

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"math/rand/v2"
	"testing"
)

// decryptBoth decrypts src with crypto/cipher and with newCBCDecrypter,
// the latter in place and split at cut (so the IV carries across calls).
func decryptBoth(t testing.TB, key, iv, src []byte, cut int) (want, got []byte) {
	b, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	want = make([]byte, len(src))
	cipher.NewCBCDecrypter(b, iv).CryptBlocks(want, src)
	got = append([]byte(nil), src...)
	d := newCBCDecrypter(b, key, iv)
	d.CryptBlocks(got[:cut], got[:cut])
	d.CryptBlocks(got[cut:], got[cut:])
	return want, got
}

// TestCBCDecrypterMatchesStdlib holds the eight-block kernel to
// crypto/cipher for every length up to 40 blocks (each way of splitting
// into groups of eight and a tail), split at every block, in place and
// into another buffer, under random keys and IVs.
func TestCBCDecrypterMatchesStdlib(t *testing.T) {
	if !haveCBCKernel {
		t.Log("no AES-NI: newCBCDecrypter is crypto/cipher's, compared with itself")
	}
	r := rand.New(rand.NewPCG(1, 2))
	fill := func(b []byte) {
		for i := range b {
			b[i] = byte(r.Uint32())
		}
	}
	key, iv := make([]byte, KeySize), make([]byte, BlockSize)
	for blocks := 0; blocks <= 40; blocks++ {
		src := make([]byte, blocks*BlockSize)
		for cut := 0; cut <= blocks; cut++ {
			fill(key)
			fill(iv)
			fill(src)
			want, got := decryptBoth(t, key, iv, src, cut*BlockSize)
			if !bytes.Equal(got, want) {
				t.Fatalf("%d blocks split at %d: differs from crypto/cipher", blocks, cut)
			}
		}
		// Into a separate buffer, whole.
		b, _ := aes.NewCipher(key)
		want := make([]byte, len(src))
		cipher.NewCBCDecrypter(b, iv).CryptBlocks(want, src)
		got := make([]byte, len(src))
		newCBCDecrypter(b, key, iv).CryptBlocks(got, src)
		if !bytes.Equal(got, want) {
			t.Fatalf("%d blocks into another buffer: differs from crypto/cipher", blocks)
		}
	}
}

// TestCBCDecrypterKnownAnswer: NIST SP 800-38A F.2.2 (CBC-AES128.Decrypt),
// the four blocks padded out to twelve with their own re-encryption so that
// the eight-block path runs too.
func TestCBCDecrypterKnownAnswer(t *testing.T) {
	key := mustHex("2b7e151628aed2a6abf7158809cf4f3c")
	iv := mustHex("000102030405060708090a0b0c0d0e0f")
	cipherText := mustHex("7649abac8119b246cee98e9b12e9197d5086cb9b507219ee95db113a917678b2" +
		"73bed6b8e3c1743b7116e69e222295163ff1caa1681fac09120eca307586e1a7")
	plain := mustHex("6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51" +
		"30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710")
	b, _ := aes.NewCipher(key)
	got := append([]byte(nil), cipherText...)
	newCBCDecrypter(b, key, iv).CryptBlocks(got, got)
	if !bytes.Equal(got, plain) {
		t.Fatalf("SP 800-38A F.2.2: got %x", got)
	}
	long := bytes.Repeat(plain, 3)
	enc := make([]byte, len(long))
	cipher.NewCBCEncrypter(b, iv).CryptBlocks(enc, long)
	if !bytes.Equal(enc[:len(cipherText)], cipherText) {
		t.Fatal("the stdlib disagrees with SP 800-38A")
	}
	newCBCDecrypter(b, key, iv).CryptBlocks(enc, enc)
	if !bytes.Equal(enc, long) {
		t.Fatal("twelve blocks: decryption does not give the plaintext back")
	}
}

// TestBlockModesRefuseBadBuffers: the eight-block decrypter and the
// Lanes encrypter panic on what crypto/cipher's modes panic on.
func TestBlockModesRefuseBadBuffers(t *testing.T) {
	key, iv := make([]byte, KeySize), make([]byte, BlockSize)
	b, _ := aes.NewCipher(key)
	modes := map[string]func() cipher.BlockMode{
		"decrypter": func() cipher.BlockMode { return newCBCDecrypter(b, key, iv) },
		"lanes": func() cipher.BlockMode {
			r, err := NewLanes().NewEncryptReader(bytes.NewReader(nil), key, iv)
			if err != nil {
				t.Fatal(err)
			}
			return r.(*encryptReader).mode
		},
	}
	for mode, newMode := range modes {
		for name, f := range map[string]func(cipher.BlockMode){
			"partial block":   func(d cipher.BlockMode) { d.CryptBlocks(make([]byte, 17), make([]byte, 17)) },
			"short output":    func(d cipher.BlockMode) { d.CryptBlocks(make([]byte, 16), make([]byte, 32)) },
			"inexact overlap": func(d cipher.BlockMode) { buf := make([]byte, 64); d.CryptBlocks(buf[16:48], buf[:32]) },
		} {
			func() {
				defer func() {
					if recover() == nil {
						t.Errorf("%s, %s: no panic", mode, name)
					}
				}()
				f(newMode())
			}()
		}
	}
}

// FuzzCBCDecrypter: any key, IV, ciphertext and split decrypts as
// crypto/cipher decrypts it.
func FuzzCBCDecrypter(f *testing.F) {
	f.Add(make([]byte, KeySize), make([]byte, BlockSize), make([]byte, 9*BlockSize), uint16(3))
	f.Fuzz(func(t *testing.T, key, iv, src []byte, cut uint16) {
		if len(key) != KeySize || len(iv) != BlockSize {
			return
		}
		src = src[:len(src)/BlockSize*BlockSize]
		at := 0
		if n := len(src) / BlockSize; n > 0 {
			at = int(cut) % (n + 1) * BlockSize
		}
		want, got := decryptBoth(t, key, iv, src, at)
		if !bytes.Equal(got, want) {
			t.Fatalf("%d bytes split at %d: differs from crypto/cipher", len(src), at)
		}
	})
}

// BenchmarkCBCDecrypt compares the eight-block kernel with crypto/cipher's
// decrypter on 256 KiB, the readers' chunk.
func BenchmarkCBCDecrypt(b *testing.B) {
	key, iv := make([]byte, KeySize), make([]byte, BlockSize)
	blk, _ := aes.NewCipher(key)
	buf := make([]byte, bufSize)
	for name, d := range map[string]cipher.BlockMode{
		"stdlib": cipher.NewCBCDecrypter(blk, iv),
		"kernel": newCBCDecrypter(blk, key, iv),
	} {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(buf)))
			for b.Loop() {
				d.CryptBlocks(buf, buf)
			}
		})
	}
}
