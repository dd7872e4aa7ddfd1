package segcrypt

import (
	"crypto/cipher"
	"io"
	"runtime"
	"sync"
)

// Lanes encrypts the chunks of concurrent encrypting readers together, four
// CBC chains at a time on one core.
//
// CBC encryption is serial within a segment: each block needs the
// ciphertext of the one before it, so a single chain runs at the latency of
// the AES instruction (crypto/cipher: about 0.9 GB/s per core here), while
// the AES unit could take a new block every cycle or two. Segments are
// independent chains, though, and a backfill encrypts sixteen of them at
// once. This is the technique of Intel's multi-buffer crypto: readers that
// use the same Lanes hand it their next chunk, and whichever reader finds
// no encryption running takes up to three waiting chunks beside its own and
// encrypts the four chains interleaved (cbcEncrypt4). Nobody waits for a
// batch to fill: the reader running a batch yields once so that readers
// ready to run can join, then starts with whatever has arrived; a reader
// alone is encrypted at once (the empty lanes are nearly free, see
// cbcEncrypt4), so a lone stream loses nothing. One batch runs at a time,
// about 3.6 GB/s on one core here: more than the backfill's two cores
// feed it.
//
// The ciphertext is crypto/cipher's, byte for byte (TestLanesMatchStdlib,
// FuzzCBCEncrypt4). Without AES-NI, or built with -tags purego, a Lanes
// hands out crypto/cipher's encrypter and combines nothing.
//
// A Lanes is safe for concurrent use; its zero value is not usable, call
// NewLanes.
type Lanes struct {
	mu    sync.Mutex
	busy  bool       // a reader is encrypting a batch
	queue []*laneJob // chunks waiting for the next batch, oldest first

	// Owned by the reader that set busy.
	args    laneArgs
	scratch []byte // what an empty lane encrypts, in place
	dummyRK [176]byte
	dummyIV [BlockSize]byte
}

// lanesWidth is how many chains cbcEncrypt4 interleaves.
const lanesWidth = 4

// laneArgs is cbcEncrypt4's argument; the assembly knows its layout.
type laneArgs struct {
	rk   [lanesWidth]*[176]byte
	iv   [lanesWidth]*[BlockSize]byte
	data [lanesWidth]*byte
}

// laneJob is one reader's chunk while it waits for, or is in, a batch.
type laneJob struct {
	rk   *[176]byte
	iv   *[BlockSize]byte
	buf  []byte // whole blocks, encrypted in place
	wake chan bool
}

// NewLanes returns a Lanes ready for use.
func NewLanes() *Lanes {
	return &Lanes{scratch: make([]byte, bufSize)}
}

// NewEncryptReader is the package's NewEncryptReader, its chunks encrypted
// through l alongside the other readers' chunks.
func (l *Lanes) NewEncryptReader(src io.Reader, key, iv []byte) (io.Reader, error) {
	b, err := newBlock(key, iv)
	if err != nil {
		return nil, err
	}
	var mode cipher.BlockMode
	if l == nil || !haveCBCKernel {
		mode = cipher.NewCBCEncrypter(b, iv)
	} else {
		e := &laneEncrypter{l: l}
		expandEncKey128(&key[0], &e.rk)
		copy(e.iv[:], iv)
		e.job = laneJob{rk: &e.rk, iv: &e.iv, wake: make(chan bool, 1)}
		mode = e
	}
	return &encryptReader{src: src, mode: mode, chunks: chunks{buf: getBuf()}}, nil
}

// laneEncrypter is one reader's chain: a cipher.BlockMode whose blocks go
// through the reader's Lanes.
type laneEncrypter struct {
	l   *Lanes
	rk  [176]byte
	iv  [BlockSize]byte
	job laneJob
}

func (e *laneEncrypter) BlockSize() int { return BlockSize }

// wipe clears the round keys once the reader has encrypted its last block,
// rather than leaving them in the heap until the collector reuses it.
func (e *laneEncrypter) wipe() { clear(e.rk[:]) }

// CryptBlocks encrypts src into dst, which must be the same slice or not
// overlap it, as cipher.BlockMode requires.
func (e *laneEncrypter) CryptBlocks(dst, src []byte) {
	if dst = blocksOut(dst, src); dst == nil {
		return
	}
	if &dst[0] != &src[0] {
		copy(dst, src)
	}
	e.job.buf = dst
	e.l.encrypt(&e.job)
	e.job.buf = nil
}

// encrypt returns once j.buf is encrypted: by this goroutine, as the one
// running a batch, or by another that took j into its batch.
func (l *Lanes) encrypt(j *laneJob) {
	l.mu.Lock()
	if l.busy {
		l.queue = append(l.queue, j)
		l.mu.Unlock()
		if <-j.wake {
			return
		}
		// Handed the batch: j is first in it and busy stays set.
		l.mu.Lock()
	}
	l.busy = true
	if len(l.queue) < lanesWidth-1 {
		// Let readers that are ready to run reach their next chunk and
		// join: measured on BenchmarkReencrypt/fs, without this yield a
		// third of the chunks ran alone, with it nearly all run four at
		// a time (MB per CPU-second: 345 without, 385 with, 265 with
		// crypto/cipher). A reader alone pays one Gosched per chunk.
		l.mu.Unlock()
		runtime.Gosched()
		l.mu.Lock()
	}
	var batch [lanesWidth]*laneJob
	batch[0] = j
	n := 1
	for n < lanesWidth && len(l.queue) > 0 {
		batch[n] = l.queue[0]
		l.queue[0] = nil
		l.queue = l.queue[1:]
		n++
	}
	l.mu.Unlock()

	l.run(batch[:n])

	l.mu.Lock()
	var next *laneJob
	if len(l.queue) > 0 {
		// The next waiter runs the next batch, so that this reader gets
		// on with its own stream.
		next = l.queue[0]
		l.queue[0] = nil
		l.queue = l.queue[1:]
	} else {
		l.busy = false
		l.queue = l.queue[:0]
	}
	l.mu.Unlock()
	for _, o := range batch[1:n] {
		o.wake <- true
	}
	if next != nil {
		next.wake <- false
	}
}

// run encrypts the batch's chunks, whose lengths differ: each pass takes the
// blocks that every chunk still has, and a finished chunk's lane encrypts
// scratch from then on.
func (l *Lanes) run(batch []*laneJob) {
	var done [lanesWidth]int // bytes encrypted per lane
	for {
		step := len(l.scratch)
		live := 0
		for i, j := range batch {
			if left := len(j.buf) - done[i]; left > 0 {
				step = min(step, left)
				live++
			}
		}
		if live == 0 {
			break
		}
		for i := range lanesWidth {
			if i < len(batch) && done[i] < len(batch[i].buf) {
				j := batch[i]
				l.args.rk[i], l.args.iv[i], l.args.data[i] = j.rk, j.iv, &j.buf[done[i]]
				done[i] += step
			} else {
				l.args.rk[i], l.args.iv[i], l.args.data[i] = &l.dummyRK, &l.dummyIV, &l.scratch[0]
			}
		}
		cbcEncrypt4(&l.args, step/BlockSize)
	}
	// Hold on to no reader's buffer or keys between batches.
	l.args = laneArgs{}
}
