//go:build amd64 && !purego

package segcrypt

import "golang.org/x/sys/cpu"

//go:noescape
func expandDecKey128(key *byte, dk *[176]byte)

//go:noescape
func cbcDecrypt128(dk *[176]byte, iv *[16]byte, dst, src *byte, blocks int)

//go:noescape
func expandEncKey128(key *byte, rk *[176]byte)

//go:noescape
func cbcEncrypt4(a *laneArgs, blocks int)

// haveCBCKernel: the eight-block decryption and the four-lane encryption
// need AES-NI (and SSE2, which every amd64 has).
var haveCBCKernel = cpu.X86.HasAES
