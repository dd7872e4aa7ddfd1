package segcrypt

import (
	"crypto/cipher"
	"unsafe"
)

// cbcDecrypter is AES-128-CBC decryption eight blocks at a time.
//
// crypto/cipher's CBC decrypter runs AES on one block per call through
// cipher.Block and XORs each block separately: on amd64 it decrypts at
// about 1.4 GB/s against 9 GB/s for its own eight-way CTR kernel, and
// verifying a backfill decrypts every byte it wrote. Decryption is
// parallel in CBC (plaintext block i needs only ciphertext blocks i and
// i-1), so the kernel in cbc_amd64.s interleaves eight blocks. No Go module
// served here offers it (golang-fips/openssl and go-encryptions/cbc are
// not served, and the kernel offers no AF_ALG on these machines), so it is
// written here; TestCBCDecrypterMatchesStdlib and FuzzCBCDecrypter hold it
// to crypto/cipher byte for byte. Encryption is serial within a segment,
// so its kernel (cbcEncrypt4, see Lanes) interleaves four segments instead.
//
// Only decryption runs here, and only to read back what was written or
// to serve a test: a fault in it makes verification fail, it never makes
// a published segment wrong.
type cbcDecrypter struct {
	dk [176]byte // round keys of the equivalent inverse cipher
	iv [BlockSize]byte
}

// newCBCDecrypter returns the eight-way decrypter where the CPU has one,
// and crypto/cipher's elsewhere. key is KeySize bytes, iv BlockSize.
func newCBCDecrypter(b cipher.Block, key, iv []byte) cipher.BlockMode {
	if !haveCBCKernel {
		return cipher.NewCBCDecrypter(b, iv)
	}
	d := &cbcDecrypter{}
	expandDecKey128(&key[0], &d.dk)
	copy(d.iv[:], iv)
	return d
}

func (d *cbcDecrypter) BlockSize() int { return BlockSize }

// CryptBlocks decrypts src into dst, which must be the same slice or not
// overlap it, as cipher.BlockMode requires.
func (d *cbcDecrypter) CryptBlocks(dst, src []byte) {
	if dst = blocksOut(dst, src); dst == nil {
		return
	}
	cbcDecrypt128(&d.dk, &d.iv, &dst[0], &src[0], len(src)/BlockSize)
}

// blocksOut holds a CryptBlocks call to cipher.BlockMode's rules (whole
// blocks, dst at least as long as src, the same slice or no overlap),
// panicking as crypto/cipher does, and returns dst cut to src's length,
// nil when there is nothing to do.
func blocksOut(dst, src []byte) []byte {
	if len(src)%BlockSize != 0 {
		panic("segcrypt: input not full blocks")
	}
	if len(dst) < len(src) {
		panic("segcrypt: output smaller than input")
	}
	if len(src) == 0 {
		return nil
	}
	dst = dst[:len(src)]
	if inexactOverlap(dst, src) {
		panic("segcrypt: invalid buffer overlap")
	}
	return dst
}

// inexactOverlap reports whether x and y share memory at different
// offsets (crypto/internal/alias's rule, which cannot be imported).
func inexactOverlap(x, y []byte) bool {
	if len(x) == 0 || len(y) == 0 || &x[0] == &y[0] {
		return false
	}
	xs, ys := uintptr(unsafe.Pointer(&x[0])), uintptr(unsafe.Pointer(&y[0]))
	return xs <= ys+uintptr(len(y)-1) && ys <= xs+uintptr(len(x)-1)
}
