//go:build !amd64 || purego

package segcrypt

const haveCBCKernel = false

func expandDecKey128(*byte, *[176]byte) { panic("segcrypt: no CBC kernel") }

func cbcDecrypt128(*[176]byte, *[16]byte, *byte, *byte, int) { panic("segcrypt: no CBC kernel") }

func expandEncKey128(*byte, *[176]byte) { panic("segcrypt: no CBC kernel") }

func cbcEncrypt4(*laneArgs, int) { panic("segcrypt: no CBC kernel") }
