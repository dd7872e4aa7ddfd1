// Package segcrypt encrypts and decrypts whole HLS media segments with
// AES-128, as RFC 8216 section 4.3.2.4 defines METHOD=AES-128: AES-128-CBC
// over the entire segment, PKCS7 padding, a 16-byte key and a 16-byte IV.
//
// Both directions stream: memory use is a fixed working buffer, whatever the
// segment size, because segments of long titles can be large and many are
// processed at once.
//
// No error produced here ever contains key bytes.
package segcrypt

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"sync"
)

const (
	// KeySize is the AES-128 key length in bytes.
	KeySize = 16
	// BlockSize is the AES block length in bytes, which is also the IV length.
	BlockSize = aes.BlockSize
)

// bufSize is the working buffer. 256 KiB amortises the per-call overhead of
// CryptBlocks and of the source's Read (one read syscall per chunk on a
// file) well enough to stay close to the raw CBC throughput (see
// BenchmarkEncryptReader vs BenchmarkCBCCeiling) while keeping memory per
// concurrent segment small; the buffers are pooled, returned as soon as a
// reader reaches its end or an error. It must be a multiple of BlockSize.
const bufSize = 256 << 10

// bufs recycles working buffers (bufSize+BlockSize bytes): a backfill
// streams thousands of segments, each through an encrypting and a
// decrypting reader.
var bufs = sync.Pool{New: func() any { b := make([]byte, bufSize+BlockSize); return &b }}

func getBuf() []byte { return *(bufs.Get().(*[]byte)) }

// putBuf returns a reader's buffer once nothing refers to it any more.
func putBuf(b *[]byte) {
	if *b != nil {
		bufs.Put(b)
	}
}

var (
	// ErrBadPadding reports a decrypted segment whose PKCS7 padding is
	// invalid: a wrong key or IV, or a damaged segment.
	ErrBadPadding = errors.New("segcrypt: bad padding")
	// ErrBadLength reports a ciphertext that is empty or not a multiple of
	// BlockSize, which AES-128-CBC with PKCS7 can never produce.
	ErrBadLength = errors.New("segcrypt: ciphertext length is not a positive multiple of 16")
)

func newBlock(key, iv []byte) (cipher.Block, error) {
	// Only lengths are reported: the key itself must never reach an error
	// string, since errors end up in logs.
	if len(key) != KeySize {
		return nil, fmt.Errorf("segcrypt: key must be %d bytes, got %d", KeySize, len(key))
	}
	if len(iv) != BlockSize {
		return nil, fmt.Errorf("segcrypt: IV must be %d bytes, got %d", BlockSize, len(iv))
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("segcrypt: cannot create cipher: %w", err)
	}
	return b, nil
}

// EncryptedSize returns the size of the ciphertext of a plainSize-byte
// segment. PKCS7 always adds 1 to 16 bytes, so an exact multiple of 16 grows
// by a whole block. A negative plainSize is invalid and yields -1.
func EncryptedSize(plainSize int64) int64 {
	if plainSize < 0 {
		return -1
	}
	return plainSize + BlockSize - plainSize%BlockSize
}

// NewIV returns a fresh random IV from crypto/rand. Each segment gets its own
// so that identical segment prefixes never produce identical ciphertext.
func NewIV() ([BlockSize]byte, error) {
	var iv [BlockSize]byte
	if _, err := rand.Read(iv[:]); err != nil {
		return iv, fmt.Errorf("segcrypt: cannot read random IV: %w", err)
	}
	return iv, nil
}

// NewEncryptReader returns a reader yielding the AES-128-CBC ciphertext of
// src, PKCS7-padded. The key and IV are copied; src is read to EOF. An error
// from src is returned (wrapped) by Read once the ciphertext produced before
// it has been consumed.
//
// The reader also implements io.WriterTo, so io.Copy writes ciphertext
// straight from its working buffer.
func NewEncryptReader(src io.Reader, key, iv []byte) (io.Reader, error) {
	b, err := newBlock(key, iv)
	if err != nil {
		return nil, err
	}
	return &encryptReader{
		src:  src,
		mode: cipher.NewCBCEncrypter(b, iv),
		// One spare block for the padding of a short final chunk.
		chunks: chunks{buf: getBuf()},
	}, nil
}

type encryptReader struct {
	src  io.Reader
	mode cipher.BlockMode
	// out is ciphertext not yet handed out; err is io.EOF after the padded
	// final block, or a source error.
	chunks
}

// fill encrypts the next chunk into buf. It is only called once out is empty.
func (e *encryptReader) fill() {
	// ReadFull, not Read: CBC needs whole blocks, and a full chunk per
	// CryptBlocks call is what keeps the throughput near the ceiling.
	n, err := io.ReadFull(e.src, e.buf[:bufSize])
	switch err {
	case nil:
		e.mode.CryptBlocks(e.buf[:n], e.buf[:n])
		e.out = e.buf[:n]
	case io.EOF, io.ErrUnexpectedEOF:
		// The end of the segment may fall on a chunk boundary, in which
		// case n is 0 and the output is a padding block alone.
		pad := BlockSize - n%BlockSize
		for i := n; i < n+pad; i++ {
			e.buf[i] = byte(pad)
		}
		n += pad
		e.mode.CryptBlocks(e.buf[:n], e.buf[:n])
		e.out = e.buf[:n]
		e.err = io.EOF
		if w, ok := e.mode.(interface{ wipe() }); ok {
			w.wipe()
		}
	default:
		// Bytes read alongside the error are dropped: the ciphertext of a
		// segment whose source failed is useless anyway.
		e.err = fmt.Errorf("segcrypt: reading plaintext: %w", err)
	}
}

func (e *encryptReader) Read(p []byte) (int, error) { return e.read(p, e.fill) }

// WriteTo writes the whole ciphertext to w without an intermediate copy.
func (e *encryptReader) WriteTo(w io.Writer) (int64, error) { return e.writeTo(w, e.fill) }

// NewDecryptReader returns a reader yielding the plaintext of the
// AES-128-CBC, PKCS7-padded ciphertext read from src.
//
// It holds back the last decrypted block until src reports EOF, then checks
// and strips the padding. A bad padding surfaces as ErrBadPadding and a
// ciphertext that is empty or not a multiple of 16 bytes as ErrBadLength,
// both returned by Read after the plaintext before the bad block. Because
// the output streams, a caller must discard everything it read when Read
// returns any error other than io.EOF.
func NewDecryptReader(src io.Reader, key, iv []byte) (io.Reader, error) {
	b, err := newBlock(key, iv)
	if err != nil {
		return nil, err
	}
	return &decryptReader{
		src:  src,
		mode: newCBCDecrypter(b, key, iv),
		// buf[:BlockSize] carries the held-back block in front of the
		// next chunk so that both can be handed out as one slice.
		chunks: chunks{buf: getBuf()},
	}, nil
}

type decryptReader struct {
	src  io.Reader
	mode cipher.BlockMode
	chunks

	// held is true when next holds the decrypted last block of the
	// previous chunk, not yet released because it may carry the padding.
	held bool
	next [BlockSize]byte
	seen bool // any ciphertext byte read at all
}

func (d *decryptReader) fill() {
	start := BlockSize
	if d.held {
		// out is empty, so buf[:BlockSize] is no longer referenced.
		copy(d.buf[:BlockSize], d.next[:])
		start = 0
	}
	n, err := io.ReadFull(d.src, d.buf[BlockSize:])
	final := false
	switch err {
	case nil:
	case io.EOF, io.ErrUnexpectedEOF:
		final = true
	default:
		d.err = fmt.Errorf("segcrypt: reading ciphertext: %w", err)
		return
	}
	if n%BlockSize != 0 || (final && n == 0 && !d.seen) {
		d.err = ErrBadLength
		return
	}
	d.seen = d.seen || n > 0
	end := BlockSize + n
	d.mode.CryptBlocks(d.buf[BlockSize:end], d.buf[BlockSize:end])
	if !final {
		// n == bufSize here, so there is always a block to hold back.
		copy(d.next[:], d.buf[end-BlockSize:end])
		d.held = true
		d.out = d.buf[start : end-BlockSize]
		return
	}
	plain := d.buf[start:end]
	pad, ok := checkPadding(plain[len(plain)-BlockSize:])
	if !ok {
		d.err = ErrBadPadding
		return
	}
	d.out = plain[:len(plain)-pad]
	d.held = false
	d.err = io.EOF
}

// checkPadding validates PKCS7 padding on the final block without branching
// on the padding bytes, so that timing does not tell how much of it was right.
func checkPadding(last []byte) (int, bool) {
	pad := int(last[BlockSize-1])
	good := subtle.ConstantTimeLessOrEq(1, pad) & subtle.ConstantTimeLessOrEq(pad, BlockSize)
	for i := 0; i < BlockSize; i++ {
		// Byte i belongs to the padding when i >= BlockSize-pad; written
		// as BlockSize-i <= pad so that both operands stay non-negative,
		// as ConstantTimeLessOrEq requires.
		inPad := subtle.ConstantTimeLessOrEq(BlockSize-i, pad)
		match := subtle.ConstantTimeByteEq(last[i], byte(pad))
		good &= match | (inPad ^ 1)
	}
	return pad, good == 1
}

func (d *decryptReader) Read(p []byte) (int, error) { return d.read(p, d.fill) }

// WriteTo writes the whole plaintext to w without an intermediate copy.
func (d *decryptReader) WriteTo(w io.Writer) (int64, error) { return d.writeTo(w, d.fill) }

// chunks is what both readers share: a pooled working buffer, the part of
// it not yet handed out, and a sticky error. fill (the reader's) makes the
// next chunk; it is only called once out is empty and err is nil.
type chunks struct {
	buf []byte
	out []byte // a sub-slice of buf
	err error  // sticky: io.EOF at the end, or the failure
}

func (c *chunks) read(p []byte, fill func()) (int, error) {
	for len(c.out) == 0 {
		if c.err != nil {
			c.release()
			return 0, c.err
		}
		fill()
	}
	n := copy(p, c.out)
	c.out = c.out[n:]
	return n, nil
}

// writeTo drains the reader into w; io.EOF ends it without error, as
// io.WriterTo requires.
func (c *chunks) writeTo(w io.Writer, fill func()) (int64, error) {
	var total int64
	for {
		if len(c.out) > 0 {
			n, err := w.Write(c.out)
			total += int64(n)
			c.out = c.out[n:]
			if err != nil {
				return total, err
			}
			if len(c.out) > 0 {
				return total, io.ErrShortWrite
			}
		}
		if c.err != nil {
			c.release()
			if c.err == io.EOF {
				return total, nil
			}
			return total, c.err
		}
		fill()
	}
}

// release pools the buffer once the reader has handed out everything it
// ever will (its error is sticky, so fill never runs again).
func (c *chunks) release() {
	b := c.buf
	c.buf, c.out = nil, nil
	putBuf(&b)
}
