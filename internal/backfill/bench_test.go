package backfill

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"encoding/base64"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/hlsvault/hlsvault/internal/keys"
	"github.com/hlsvault/hlsvault/internal/packager"
	"github.com/hlsvault/hlsvault/internal/storage"
	"github.com/hlsvault/hlsvault/internal/testenv"
)

// Benchmarks for scripts/backfill-bench.sh: re-encryption throughput of a
// generated title from the filesystem to the filesystem and from Azurite
// to Azurite, against the in-process AES-128-CBC ceiling measured in the
// same run. BenchmarkReencrypt reports MB/s (b.SetBytes: legacy bytes re-encrypted per
// second, verification and playlists included) and "cores" (process CPU
// time / wall time during the loop), and the plain Put baseline of the
// Azurite figure.
//
// BACKFILL_BENCH_MB sets the title size (default 64; segments are 2 MiB,
// like 4 s at 4 Mb/s).

const benchSegment = 2 << 20

func benchTitleMB() int {
	if n, err := strconv.Atoi(os.Getenv("BACKFILL_BENCH_MB")); err == nil && n > 0 {
		return n
	}
	return 64
}

// putSyntheticTitle stores a single-playlist TS title of about mb MB of
// random 2 MiB segments under dir and returns its playlist's name and its
// size.
func putSyntheticTitle(tb testing.TB, store storage.Store, dir string, mb int) (string, int64) {
	tb.Helper()
	n := max(mb*1e6/benchSegment, 1)
	return putTitle(tb, store, dir, n, benchSegment), int64(n) * benchSegment
}

// putTitle stores a single-playlist TS title of n random segments of size
// bytes under dir, streaming (no segment is held in memory whole), and
// returns its playlist's name.
func putTitle(tb testing.TB, store storage.Store, dir string, n int, size int64) string {
	tb.Helper()
	ctx := context.Background()
	var pl strings.Builder
	pl.WriteString("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:4\n#EXT-X-PLAYLIST-TYPE:VOD\n")
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range n {
		name := fmt.Sprintf("%sseg_%05d.ts", dir, i)
		if err := store.Put(ctx, name, io.LimitReader(randReader{rng}, size), size, storage.PutOptions{}); err != nil {
			tb.Fatal(err)
		}
		fmt.Fprintf(&pl, "#EXTINF:4.000,\nseg_%05d.ts\n", i)
	}
	pl.WriteString("#EXT-X-ENDLIST\n")
	name := dir + "index.m3u8"
	if err := store.Put(ctx, name, strings.NewReader(pl.String()), int64(pl.Len()), storage.PutOptions{}); err != nil {
		tb.Fatal(err)
	}
	return name
}

type randReader struct{ r *rand.Rand }

func (r randReader) Read(p []byte) (int, error) {
	for i := 0; i+8 <= len(p); i += 8 {
		v := r.r.Uint64()
		for j := range 8 {
			p[i+j] = byte(v >> (8 * j))
		}
	}
	for i := len(p) &^ 7; i < len(p); i++ {
		p[i] = byte(r.r.Uint32())
	}
	return len(p), nil
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func BenchmarkReencrypt(b *testing.B) {
	backends := []struct {
		name string
		new  func(testing.TB) storage.Store
	}{
		{"fs", func(tb testing.TB) storage.Store {
			s, err := storage.NewFS(tb.TempDir())
			if err != nil {
				tb.Fatal(err)
			}
			return s
		}},
		{"azurite", func(tb testing.TB) storage.Store {
			s, err := storage.NewAzure(context.Background(), storage.AzureConfig{
				ConnectionString: testenv.AzuriteConnectionString(tb), Container: testenv.Name("bench")})
			if err != nil {
				tb.Fatal(err)
			}
			return s
		}},
	}
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			ctx := context.Background()
			store := be.new(b)
			top, size := putSyntheticTitle(b, store, "legacy/bench/", benchTitleMB())
			b.Cleanup(func() { removeAll(store, "") }) // Azurite keeps everything in memory
			plan, err := PlanTitle(ctx, store, Source{Playlist: top})
			if err != nil {
				b.Fatal(err)
			}
			pkg := packager.New(store, benchKeyring(b), packager.Options{})
			conv := &Converter{Store: store}
			b.SetBytes(size)
			var cpu, wall time.Duration
			i := 0
			for b.Loop() {
				i++
				v, err := pkg.Begin(fmt.Sprintf("hls/bench/v%d/", i), "https://k.example/{key_id}")
				if err != nil {
					b.Fatal(err)
				}
				cpu0, wall0 := cpuTime(), time.Now()
				if _, err := conv.Convert(ctx, plan, v); err != nil {
					b.Fatal(err)
				}
				cpu, wall = cpu+cpuTime()-cpu0, wall+time.Since(wall0)
				// Untimed: drop the copy, so that the next one writes into
				// page cache the kernel recycles, as a long backfill does,
				// rather than into memory the VM never touched (which
				// costs several times the CPU per page, and varies).
				b.StopTimer()
				removeAll(store, v.Prefix())
				b.StartTimer()
			}
			b.ReportMetric(cpu.Seconds()/wall.Seconds(), "cores")
		})
	}
	// The baseline of the Azurite figure, in the same run against the same
	// Azurite: plain 2 MiB Puts of bytes already in memory, one at a time
	// (what storage's BenchmarkPut measures) and Converter.Concurrency at
	// once (the most the link gives to that many requests).
	for _, par := range []int{1, defaultConcurrency} {
		b.Run(fmt.Sprintf("azurite-put-%d", par), func(b *testing.B) {
			store := backends[1].new(b)
			b.Cleanup(func() { removeAll(store, "") })
			seg := make([]byte, benchSegment)
			randReader{rand.New(rand.NewPCG(5, 6))}.Read(seg)
			n := max(benchTitleMB()*1e6/benchSegment, 1)
			b.SetBytes(int64(n) * benchSegment)
			i := 0
			for b.Loop() {
				i++
				g, gctx := errgroup.WithContext(b.Context())
				g.SetLimit(par)
				for k := range n {
					g.Go(func() error {
						return store.Put(gctx, fmt.Sprintf("put/r%d/seg_%05d.ts", i, k), bytes.NewReader(seg), benchSegment, storage.PutOptions{})
					})
				}
				if err := g.Wait(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func removeAll(store storage.Store, prefix string) {
	ctx := context.Background()
	var names []string
	_ = store.List(ctx, prefix, func(o storage.ObjectInfo) error { names = append(names, o.Name); return nil })
	for _, n := range names {
		_ = store.Delete(ctx, n)
	}
}

// BenchmarkAESCeiling is raw AES-128-CBC encryption on one core over 1 MiB
// buffers: the ceiling the re-encryption throughput is compared with.
func BenchmarkAESCeiling(b *testing.B) {
	buf := make([]byte, 1<<20)
	randReader{rand.New(rand.NewPCG(3, 4))}.Read(buf)
	block, err := aes.NewCipher(make([]byte, 16))
	if err != nil {
		b.Fatal(err)
	}
	iv := make([]byte, 16)
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		cipher.NewCBCEncrypter(block, iv).CryptBlocks(buf, buf)
	}
}

func benchKeyring(b testing.TB) *keys.Keyring {
	raw := make([]byte, 32)
	for i := range raw {
		raw[i] = byte(7*i + 1)
	}
	k, err := keys.NewKeyring(base64.StdEncoding.EncodeToString(raw))
	if err != nil {
		b.Fatal(err)
	}
	return k
}
