package storage

import (
	"bytes"
	"fmt"
	"testing"
)

// BenchmarkPut measures publishing one 2 MiB segment, the typical size of a
// 4 s HLS segment at 4 Mb/s.
func BenchmarkPut(b *testing.B) {
	const size = 2 << 20
	data := payload(size, 42)
	backends := []struct {
		name string
		new  func(testing.TB) Store
	}{
		{"fs", func(tb testing.TB) Store { return newTestFS(tb) }},
		{"azure", func(tb testing.TB) Store { return newTestAzure(tb) }},
	}
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			s := be.new(b)
			b.SetBytes(size)
			i := 0
			for b.Loop() {
				name := fmt.Sprintf("bench/v1/seg_%06d.ts", i)
				i++
				if err := s.Put(b.Context(), name, bytes.NewReader(data), size, PutOptions{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
