package segcrypt

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
)

var (
	testKey = mustHex("000102030405060708090a0b0c0d0e0f")
	testIV  = mustHex("f0e0d0c0b0a090807060504030201000")
)

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// refEncrypt is the one-shot reference: PKCS7 by hand, then CBC over the
// whole buffer with crypto/cipher.
func refEncrypt(t testing.TB, plain, key, iv []byte) []byte {
	t.Helper()
	b, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	pad := BlockSize - len(plain)%BlockSize
	buf := make([]byte, len(plain)+pad)
	copy(buf, plain)
	for i := len(plain); i < len(buf); i++ {
		buf[i] = byte(pad)
	}
	cipher.NewCBCEncrypter(b, iv).CryptBlocks(buf, buf)
	return buf
}

// refEncryptRaw encrypts already block-aligned data without padding, to build
// ciphertexts with deliberately wrong padding.
func refEncryptRaw(t testing.TB, data, key, iv []byte) []byte {
	t.Helper()
	b, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]byte, len(data))
	cipher.NewCBCEncrypter(b, iv).CryptBlocks(out, data)
	return out
}

func encrypt(t testing.TB, r io.Reader, key, iv []byte) []byte {
	t.Helper()
	er, err := NewEncryptReader(r, key, iv)
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(er)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func decrypt(t testing.TB, r io.Reader, key, iv []byte) ([]byte, error) {
	t.Helper()
	dr, err := NewDecryptReader(r, key, iv)
	if err != nil {
		t.Fatal(err)
	}
	return io.ReadAll(dr)
}

func randomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

var sizes = []int{0, 1, 15, 16, 17, 31, 32, 33, 4095, 4096, bufSize - 1, bufSize, bufSize + 1, bufSize + 16, 2 * bufSize, 1<<20 + 3}

func TestRoundTripMatchesReference(t *testing.T) {
	for _, n := range sizes {
		plain := randomBytes(uint64(n), n)
		want := refEncrypt(t, plain, testKey, testIV)

		got := encrypt(t, bytes.NewReader(plain), testKey, testIV)
		if !bytes.Equal(got, want) {
			t.Fatalf("size %d: ciphertext differs from the one-shot reference", n)
		}
		if int64(len(got)) != EncryptedSize(int64(n)) {
			t.Fatalf("size %d: got %d ciphertext bytes, EncryptedSize says %d", n, len(got), EncryptedSize(int64(n)))
		}

		back, err := decrypt(t, bytes.NewReader(got), testKey, testIV)
		if err != nil {
			t.Fatalf("size %d: decrypt: %v", n, err)
		}
		if !bytes.Equal(back, plain) {
			t.Fatalf("size %d: round trip differs", n)
		}
	}
}

func TestWriteToMatchesRead(t *testing.T) {
	for _, n := range []int{0, 17, bufSize, 3*bufSize + 5} {
		plain := randomBytes(uint64(n)+7, n)
		want := refEncrypt(t, plain, testKey, testIV)

		er, err := NewEncryptReader(bytes.NewReader(plain), testKey, testIV)
		if err != nil {
			t.Fatal(err)
		}
		var ct bytes.Buffer
		if _, err := io.Copy(&ct, er); err != nil { // uses WriteTo
			t.Fatal(err)
		}
		if !bytes.Equal(ct.Bytes(), want) {
			t.Fatalf("size %d: WriteTo ciphertext differs", n)
		}

		dr, err := NewDecryptReader(bytes.NewReader(want), testKey, testIV)
		if err != nil {
			t.Fatal(err)
		}
		var pt bytes.Buffer
		m, err := io.Copy(&pt, dr)
		if err != nil {
			t.Fatal(err)
		}
		if m != int64(n) || !bytes.Equal(pt.Bytes(), plain) {
			t.Fatalf("size %d: WriteTo plaintext differs", n)
		}
	}
}

func TestOneByteReads(t *testing.T) {
	for _, n := range []int{0, 1, 16, 17, bufSize + 33} {
		plain := randomBytes(uint64(n)+1, n)
		want := refEncrypt(t, plain, testKey, testIV)

		// Source delivering one byte per Read.
		got := encrypt(t, iotest.OneByteReader(bytes.NewReader(plain)), testKey, testIV)
		if !bytes.Equal(got, want) {
			t.Fatalf("size %d: one-byte source gives different ciphertext", n)
		}

		// Consumer reading with a one-byte buffer.
		er, err := NewEncryptReader(bytes.NewReader(plain), testKey, testIV)
		if err != nil {
			t.Fatal(err)
		}
		got, err = io.ReadAll(iotest.OneByteReader(er))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("size %d: one-byte consumer gives different ciphertext", n)
		}

		back, err := decrypt(t, iotest.OneByteReader(bytes.NewReader(want)), testKey, testIV)
		if err != nil || !bytes.Equal(back, plain) {
			t.Fatalf("size %d: one-byte source decrypt: %v", n, err)
		}
		dr, err := NewDecryptReader(bytes.NewReader(want), testKey, testIV)
		if err != nil {
			t.Fatal(err)
		}
		back, err = io.ReadAll(iotest.OneByteReader(dr))
		if err != nil || !bytes.Equal(back, plain) {
			t.Fatalf("size %d: one-byte consumer decrypt: %v", n, err)
		}
	}
}

func TestReadersFollowIOContract(t *testing.T) {
	plain := randomBytes(3, bufSize+100)
	ct := refEncrypt(t, plain, testKey, testIV)

	er, err := NewEncryptReader(bytes.NewReader(plain), testKey, testIV)
	if err != nil {
		t.Fatal(err)
	}
	if err := iotest.TestReader(er, ct); err != nil {
		t.Fatalf("encrypt reader: %v", err)
	}
	dr, err := NewDecryptReader(bytes.NewReader(ct), testKey, testIV)
	if err != nil {
		t.Fatal(err)
	}
	if err := iotest.TestReader(dr, plain); err != nil {
		t.Fatalf("decrypt reader: %v", err)
	}
}

// NIST SP 800-38A, F.2.1 CBC-AES128.Encrypt.
func TestNISTSP80038A(t *testing.T) {
	key := mustHex("2b7e151628aed2a6abf7158809cf4f3c")
	iv := mustHex("000102030405060708090a0b0c0d0e0f")
	plain := mustHex("6bc1bee22e409f96e93d7e117393172a" +
		"ae2d8a571e03ac9c9eb76fac45af8e51" +
		"30c81c46a35ce411e5fbc1191a0a52ef" +
		"f69f2445df4f9b17ad2b417be66c3710")
	want := mustHex("7649abac8119b246cee98e9b12e9197d" +
		"5086cb9b507219ee95db113a917678b2" +
		"73bed6b8e3c1743b7116e69e22229516" +
		"3ff1caa1681fac09120eca307586e1a7")

	got := encrypt(t, bytes.NewReader(plain), key, iv)
	if len(got) != len(plain)+BlockSize {
		t.Fatalf("got %d bytes, want %d (four blocks and a padding block)", len(got), len(plain)+BlockSize)
	}
	if !bytes.Equal(got[:BlockSize], want[:BlockSize]) {
		t.Fatalf("block 1 = %x, want %x", got[:BlockSize], want[:BlockSize])
	}
	if !bytes.Equal(got[:len(want)], want) {
		t.Fatalf("blocks 1-4 = %x, want %x", got[:len(want)], want)
	}
	back, err := decrypt(t, bytes.NewReader(got), key, iv)
	if err != nil || !bytes.Equal(back, plain) {
		t.Fatalf("decrypt of the vector: %v", err)
	}
}

func TestDecryptBadPadding(t *testing.T) {
	blockOf := func(fill byte, last ...byte) []byte {
		b := bytes.Repeat([]byte{fill}, BlockSize)
		copy(b[BlockSize-len(last):], last)
		return b
	}
	cases := map[string][]byte{
		"pad byte zero":          blockOf(0xAA, 0x00),
		"pad byte 17":            blockOf(0xAA, 0x11),
		"pad byte 255":           blockOf(0xAA, 0xFF),
		"inconsistent pad bytes": blockOf(0xAA, 0x03, 0x02, 0x03),
		"pad 16 with one wrong":  append([]byte{0x0F}, bytes.Repeat([]byte{0x10}, 15)...),
	}
	for name, last := range cases {
		for _, prefix := range []int{0, 16, bufSize, bufSize - 16} {
			data := append(randomBytes(uint64(prefix), prefix), last...)
			ct := refEncryptRaw(t, data, testKey, testIV)
			_, err := decrypt(t, bytes.NewReader(ct), testKey, testIV)
			if !errors.Is(err, ErrBadPadding) {
				t.Errorf("%s, %d-byte prefix: err = %v, want ErrBadPadding", name, prefix, err)
			}
		}
	}

	// Tampering with the last ciphertext byte flips the last plaintext byte.
	plain := randomBytes(9, 100)
	ct := refEncrypt(t, plain, testKey, testIV)
	ct[len(ct)-BlockSize-1] ^= 0x01 // previous block: changes pad byte from 12 to 13
	if _, err := decrypt(t, bytes.NewReader(ct), testKey, testIV); !errors.Is(err, ErrBadPadding) {
		t.Fatalf("tampered padding: err = %v, want ErrBadPadding", err)
	}

	// A wrong key almost always yields bad padding; with this fixed key it does.
	ct = refEncrypt(t, plain, testKey, testIV)
	wrong := bytes.Clone(testKey)
	wrong[0] ^= 0xFF
	if _, err := decrypt(t, bytes.NewReader(ct), wrong, testIV); !errors.Is(err, ErrBadPadding) {
		t.Fatalf("wrong key: err = %v, want ErrBadPadding", err)
	}
}

func TestDecryptBadLength(t *testing.T) {
	ct := refEncrypt(t, randomBytes(5, bufSize+40), testKey, testIV)
	for _, n := range []int{0, 1, 15, 17, len(ct) - 1, bufSize + 1, bufSize + 17} {
		_, err := decrypt(t, bytes.NewReader(ct[:n]), testKey, testIV)
		if !errors.Is(err, ErrBadLength) {
			t.Errorf("%d-byte ciphertext: err = %v, want ErrBadLength", n, err)
		}
	}
}

func TestSourceErrorIsReturned(t *testing.T) {
	boom := errors.New("disk on fire")
	src := io.MultiReader(bytes.NewReader(make([]byte, 100)), iotest.ErrReader(boom))
	er, err := NewEncryptReader(src, testKey, testIV)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(er); !errors.Is(err, boom) {
		t.Fatalf("encrypt: err = %v, want wrapped source error", err)
	}
	src = io.MultiReader(bytes.NewReader(make([]byte, 32)), iotest.ErrReader(boom))
	dr, err := NewDecryptReader(src, testKey, testIV)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(dr); !errors.Is(err, boom) {
		t.Fatalf("decrypt: err = %v, want wrapped source error", err)
	}
}

func TestBadKeyAndIVErrorsHideKey(t *testing.T) {
	secret := []byte("SECRETKEYBYTES!") // 15 bytes: invalid
	for _, tc := range []struct{ key, iv []byte }{
		{secret, testIV},
		{testKey, testKey[:15]},
		{append(bytes.Clone(testKey), 's'), testIV},
	} {
		_, err1 := NewEncryptReader(bytes.NewReader(nil), tc.key, tc.iv)
		_, err2 := NewDecryptReader(bytes.NewReader(nil), tc.key, tc.iv)
		for _, err := range []error{err1, err2} {
			if err == nil {
				t.Fatalf("key %d bytes, iv %d bytes: no error", len(tc.key), len(tc.iv))
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "segcrypt: ") {
				t.Errorf("error %q lacks the package prefix", msg)
			}
			if strings.Contains(msg, string(tc.key)) || strings.Contains(msg, hex.EncodeToString(tc.key)) ||
				strings.Contains(msg, "SECRET") {
				t.Errorf("error %q contains key material", msg)
			}
		}
	}
}

func TestEncryptedSize(t *testing.T) {
	for _, tc := range []struct{ in, want int64 }{
		{0, 16}, {1, 16}, {15, 16}, {16, 32}, {17, 32}, {4095, 4096}, {1<<20 + 3, 1<<20 + 16}, {-1, -1},
	} {
		if got := EncryptedSize(tc.in); got != tc.want {
			t.Errorf("EncryptedSize(%d) = %d, want %d", tc.in, got, tc.want)
		}
	}
}

func TestNewIV(t *testing.T) {
	a, err := NewIV()
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewIV()
	if err != nil {
		t.Fatal(err)
	}
	if a == b {
		t.Fatal("two random IVs are equal")
	}
}

// TestOpenSSLInterop checks both directions against the openssl command line
// tool, which is what operators reach for to inspect a segment by hand.
func TestOpenSSLInterop(t *testing.T) {
	bin, err := exec.LookPath("openssl")
	if err != nil {
		t.Fatalf("openssl is required for this test (Debian base tool): %v", err)
	}
	dir := t.TempDir()
	keyHex, ivHex := hex.EncodeToString(testKey), hex.EncodeToString(testIV)
	for _, n := range []int{0, 1, 16, 4095, bufSize + 3} {
		plain := randomBytes(uint64(n)+11, n)
		ptFile := filepath.Join(dir, "pt.bin")
		ctFile := filepath.Join(dir, "ct.bin")

		// Ours → openssl.
		ct := encrypt(t, bytes.NewReader(plain), testKey, testIV)
		if err := os.WriteFile(ctFile, ct, 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(bin, "enc", "-d", "-aes-128-cbc", "-K", keyHex, "-iv", ivHex, "-in", ctFile).Output()
		if err != nil {
			t.Fatalf("size %d: openssl decrypt: %v", n, err)
		}
		if !bytes.Equal(out, plain) {
			t.Fatalf("size %d: openssl decrypts our ciphertext to something else", n)
		}

		// openssl → ours.
		if err := os.WriteFile(ptFile, plain, 0o600); err != nil {
			t.Fatal(err)
		}
		out, err = exec.Command(bin, "enc", "-aes-128-cbc", "-K", keyHex, "-iv", ivHex, "-in", ptFile).Output()
		if err != nil {
			t.Fatalf("size %d: openssl encrypt: %v", n, err)
		}
		if !bytes.Equal(out, ct) {
			t.Fatalf("size %d: openssl ciphertext differs from ours", n)
		}
		back, err := decrypt(t, bytes.NewReader(out), testKey, testIV)
		if err != nil || !bytes.Equal(back, plain) {
			t.Fatalf("size %d: decrypting openssl output: %v", n, err)
		}
	}
}

// chunkReader returns at most size bytes per Read, to vary how the source
// delivers data.
type chunkReader struct {
	r    io.Reader
	size int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(p) > c.size {
		p = p[:c.size]
	}
	return c.r.Read(p)
}

func FuzzRoundTrip(f *testing.F) {
	f.Add([]byte(""), []byte("0123456789abcdef0123456789abcdef"), uint16(1))
	f.Add([]byte("0123456789abcdef"), []byte("k"), uint16(7))
	f.Add(bytes.Repeat([]byte{0x10}, 48), []byte{}, uint16(4096))
	f.Fuzz(func(t *testing.T, plain, keyIV []byte, chunk uint16) {
		// Derive a key and IV of the right length from whatever the fuzzer
		// gives, so that every input exercises the cipher.
		material := make([]byte, KeySize+BlockSize)
		copy(material, keyIV)
		key, iv := material[:KeySize], material[KeySize:]
		size := int(chunk)%(2*bufSize) + 1

		want := refEncrypt(t, plain, key, iv)
		got := encrypt(t, &chunkReader{bytes.NewReader(plain), size}, key, iv)
		if !bytes.Equal(got, want) {
			t.Fatalf("ciphertext differs from reference (plain %d bytes, chunk %d)", len(plain), size)
		}
		back, err := decrypt(t, &chunkReader{bytes.NewReader(got), size}, key, iv)
		if err != nil {
			t.Fatalf("decrypt: %v", err)
		}
		if !bytes.Equal(back, plain) {
			t.Fatal("round trip differs")
		}
		// Arbitrary bytes as ciphertext must give a clean error or a
		// plaintext, never a panic.
		if _, err := decrypt(t, bytes.NewReader(plain), key, iv); err != nil &&
			!errors.Is(err, ErrBadLength) && !errors.Is(err, ErrBadPadding) {
			t.Fatalf("decrypt of arbitrary data: unexpected error %v", err)
		}
	})
}

const benchSize = 4 << 20

func BenchmarkEncryptReader(b *testing.B) {
	plain := randomBytes(1, benchSize)
	b.SetBytes(benchSize)
	b.ReportAllocs()
	for b.Loop() {
		r, err := NewEncryptReader(bytes.NewReader(plain), testKey, testIV)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, r); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCBCCeiling is the raw CBC throughput over the same buffer: the
// ceiling that BenchmarkEncryptReader is measured against.
func BenchmarkCBCCeiling(b *testing.B) {
	buf := randomBytes(1, benchSize)
	block, err := aes.NewCipher(testKey)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(benchSize)
	b.ReportAllocs()
	for b.Loop() {
		cipher.NewCBCEncrypter(block, testIV).CryptBlocks(buf, buf)
	}
}

func BenchmarkDecryptReader(b *testing.B) {
	ct := refEncrypt(b, randomBytes(1, benchSize), testKey, testIV)
	b.SetBytes(int64(len(ct)))
	b.ReportAllocs()
	for b.Loop() {
		r, err := NewDecryptReader(bytes.NewReader(ct), testKey, testIV)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, r); err != nil {
			b.Fatal(err)
		}
	}
}
