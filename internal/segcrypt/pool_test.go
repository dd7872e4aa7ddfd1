package segcrypt

import (
	"bytes"
	"io"
	"testing"
)

// TestPooledBuffersAreNotShared: a reader gives its buffer back at its
// end, and the next reader may get it. The finished reader must go on
// answering io.EOF without touching it, and the new one must produce the
// right bytes, whether drained by Read or by WriteTo.
func TestPooledBuffersAreNotShared(t *testing.T) {
	plain := randomBytes(11, 3*bufSize+77)
	want := refEncrypt(t, plain, testKey, testIV)
	for _, viaWriteTo := range []bool{false, true} {
		var readers []io.Reader
		for range 4 {
			enc, err := NewEncryptReader(bytes.NewReader(plain), testKey, testIV)
			if err != nil {
				t.Fatal(err)
			}
			var got []byte
			if viaWriteTo {
				var b bytes.Buffer
				if _, err := enc.(io.WriterTo).WriteTo(&b); err != nil {
					t.Fatal(err)
				}
				got = b.Bytes()
			} else if got, err = io.ReadAll(enc); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("writeTo=%v: ciphertext differs from the reference", viaWriteTo)
			}
			readers = append(readers, enc)

			dec, err := NewDecryptReader(bytes.NewReader(want), testKey, testIV)
			if err != nil {
				t.Fatal(err)
			}
			back, err := io.ReadAll(dec)
			if err != nil || !bytes.Equal(back, plain) {
				t.Fatalf("writeTo=%v: decrypt: %v", viaWriteTo, err)
			}
			readers = append(readers, dec)
		}
		for i, r := range readers {
			if n, err := r.Read(make([]byte, 64)); n != 0 || err != io.EOF {
				t.Errorf("finished reader %d: Read = %d, %v; want 0, EOF", i, n, err)
			}
		}
	}
}
