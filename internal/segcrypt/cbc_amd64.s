//go:build amd64 && !purego

#include "textflag.h"

// CLEAR8 zeroes X0-X7, so that no key material or plaintext stays in
// registers after a call.
#define CLEAR8 \
	PXOR X0, X0; \
	PXOR X1, X1; \
	PXOR X2, X2; \
	PXOR X3, X3; \
	PXOR X4, X4; \
	PXOR X5, X5; \
	PXOR X6, X6; \
	PXOR X7, X7

// One step of the AES-128 key schedule (FIPS 197 5.2): next is prev with
// each word XORed into the ones after it, then XORed with RotWord(SubWord)
// of prev's last word and the round constant, which AESKEYGENASSIST
// computes.
#define EXPAND(rcon, prev, next) \
	AESKEYGENASSIST $rcon, prev, X14; \
	PSHUFD $0xff, X14, X14; \
	MOVO prev, next; \
	MOVO prev, X15; \
	PSLLO $4, X15; \
	PXOR X15, next; \
	PSLLO $4, X15; \
	PXOR X15, next; \
	PSLLO $4, X15; \
	PXOR X15, next; \
	PXOR X14, next

// SCHEDULE loads the key at AX and leaves the eleven round keys in X0-X10.
#define SCHEDULE \
	MOVOU (AX), X0; \
	EXPAND(0x01, X0, X1); \
	EXPAND(0x02, X1, X2); \
	EXPAND(0x04, X2, X3); \
	EXPAND(0x08, X3, X4); \
	EXPAND(0x10, X4, X5); \
	EXPAND(0x20, X5, X6); \
	EXPAND(0x40, X6, X7); \
	EXPAND(0x80, X7, X8); \
	EXPAND(0x1b, X8, X9); \
	EXPAND(0x36, X9, X10)

// func expandDecKey128(key *byte, dk *[176]byte)
//
// dk receives the round keys of the equivalent inverse cipher (FIPS 197
// 5.3.5): the encryption round keys in reverse order, InvMixColumns applied
// to all but the first and the last.
TEXT ·expandDecKey128(SB), NOSPLIT, $0-16
	MOVQ key+0(FP), AX
	MOVQ dk+8(FP), DI
	SCHEDULE
	MOVOU X10, 0(DI)
	AESIMC X9, X11
	MOVOU X11, 16(DI)
	AESIMC X8, X11
	MOVOU X11, 32(DI)
	AESIMC X7, X11
	MOVOU X11, 48(DI)
	AESIMC X6, X11
	MOVOU X11, 64(DI)
	AESIMC X5, X11
	MOVOU X11, 80(DI)
	AESIMC X4, X11
	MOVOU X11, 96(DI)
	AESIMC X3, X11
	MOVOU X11, 112(DI)
	AESIMC X2, X11
	MOVOU X11, 128(DI)
	AESIMC X1, X11
	MOVOU X11, 144(DI)
	MOVOU X0, 160(DI)
	// Leave no key material in registers.
	CLEAR8
	PXOR X8, X8
	PXOR X9, X9
	PXOR X10, X10
	PXOR X11, X11
	PXOR X14, X14
	PXOR X15, X15
	RET

// One round on eight blocks at once, so that the AES unit works on eight
// independent blocks rather than waiting out each instruction's latency.
#define ROUND8(off) \
	MOVOU off(AX), X9; \
	AESDEC X9, X0; \
	AESDEC X9, X1; \
	AESDEC X9, X2; \
	AESDEC X9, X3; \
	AESDEC X9, X4; \
	AESDEC X9, X5; \
	AESDEC X9, X6; \
	AESDEC X9, X7

#define ROUND1(off) \
	MOVOU off(AX), X9; \
	AESDEC X9, X0

// func cbcDecrypt128(dk *[176]byte, iv *[16]byte, dst, src *byte, blocks int)
//
// Plaintext block i is D(C[i]) XOR C[i-1] (C[-1] is the IV): every
// ciphertext block is known up front, so eight are decrypted together. All
// of a group's ciphertext is read before its plaintext is written, which
// makes dst == src safe. iv receives the last ciphertext block.
TEXT ·cbcDecrypt128(SB), NOSPLIT, $0-40
	MOVQ dk+0(FP), AX
	MOVQ iv+8(FP), BX
	MOVQ dst+16(FP), DI
	MOVQ src+24(FP), SI
	MOVQ blocks+32(FP), CX
	MOVOU (BX), X8

loop8:
	CMPQ CX, $8
	JB tail
	MOVOU 0(SI), X0
	MOVOU 16(SI), X1
	MOVOU 32(SI), X2
	MOVOU 48(SI), X3
	MOVOU 64(SI), X4
	MOVOU 80(SI), X5
	MOVOU 96(SI), X6
	MOVOU 112(SI), X7
	MOVOU 0(AX), X9
	PXOR X9, X0
	PXOR X9, X1
	PXOR X9, X2
	PXOR X9, X3
	PXOR X9, X4
	PXOR X9, X5
	PXOR X9, X6
	PXOR X9, X7
	ROUND8(16)
	ROUND8(32)
	ROUND8(48)
	ROUND8(64)
	ROUND8(80)
	ROUND8(96)
	ROUND8(112)
	ROUND8(128)
	ROUND8(144)
	MOVOU 160(AX), X9
	AESDECLAST X9, X0
	AESDECLAST X9, X1
	AESDECLAST X9, X2
	AESDECLAST X9, X3
	AESDECLAST X9, X4
	AESDECLAST X9, X5
	AESDECLAST X9, X6
	AESDECLAST X9, X7
	PXOR X8, X0
	MOVOU 0(SI), X10
	PXOR X10, X1
	MOVOU 16(SI), X10
	PXOR X10, X2
	MOVOU 32(SI), X10
	PXOR X10, X3
	MOVOU 48(SI), X10
	PXOR X10, X4
	MOVOU 64(SI), X10
	PXOR X10, X5
	MOVOU 80(SI), X10
	PXOR X10, X6
	MOVOU 96(SI), X10
	PXOR X10, X7
	MOVOU 112(SI), X8
	MOVOU X0, 0(DI)
	MOVOU X1, 16(DI)
	MOVOU X2, 32(DI)
	MOVOU X3, 48(DI)
	MOVOU X4, 64(DI)
	MOVOU X5, 80(DI)
	MOVOU X6, 96(DI)
	MOVOU X7, 112(DI)
	ADDQ $128, SI
	ADDQ $128, DI
	SUBQ $8, CX
	JMP loop8

tail:
	TESTQ CX, CX
	JZ done
	MOVOU (SI), X0
	MOVO X0, X10
	MOVOU 0(AX), X9
	PXOR X9, X0
	ROUND1(16)
	ROUND1(32)
	ROUND1(48)
	ROUND1(64)
	ROUND1(80)
	ROUND1(96)
	ROUND1(112)
	ROUND1(128)
	ROUND1(144)
	MOVOU 160(AX), X9
	AESDECLAST X9, X0
	PXOR X8, X0
	MOVO X10, X8
	MOVOU X0, (DI)
	ADDQ $16, SI
	ADDQ $16, DI
	DECQ CX
	JMP tail

done:
	MOVOU X8, (BX)
	// Leave no round key or plaintext in registers.
	CLEAR8
	PXOR X9, X9
	RET

// func expandEncKey128(key *byte, rk *[176]byte)
//
// rk receives the eleven AES-128 encryption round keys (FIPS 197 5.2).
TEXT ·expandEncKey128(SB), NOSPLIT, $0-16
	MOVQ key+0(FP), AX
	MOVQ rk+8(FP), DI
	SCHEDULE
	MOVOU X0, 0(DI)
	MOVOU X1, 16(DI)
	MOVOU X2, 32(DI)
	MOVOU X3, 48(DI)
	MOVOU X4, 64(DI)
	MOVOU X5, 80(DI)
	MOVOU X6, 96(DI)
	MOVOU X7, 112(DI)
	MOVOU X8, 128(DI)
	MOVOU X9, 144(DI)
	MOVOU X10, 160(DI)
	CLEAR8
	PXOR X8, X8
	PXOR X9, X9
	PXOR X10, X10
	PXOR X14, X14
	PXOR X15, X15
	RET

// One round on the four lanes, each under its own round key (AX, BX, DX,
// R8). The keys go through registers because a legacy-SSE memory operand
// must be 16-byte aligned and Go's allocator does not promise that.
#define EROUND4(off) \
	MOVOU off(AX), X4; \
	MOVOU off(BX), X5; \
	MOVOU off(DX), X6; \
	MOVOU off(R8), X7; \
	AESENC X4, X0; \
	AESENC X5, X1; \
	AESENC X6, X2; \
	AESENC X7, X3

// func cbcEncrypt4(a *laneArgs, blocks int)
//
// Encrypts, in place, the next blocks blocks of four independent CBC
// chains: lane i is a.data[i] under the round keys a.rk[i], chained from
// a.iv[i], which receives the lane's last ciphertext block. Within a chain
// every block needs the one before it, so one chain leaves the AES unit
// waiting out each instruction's latency; four chains fill those gaps, and
// a lane without work (a dummy, see Lanes) costs next to nothing.
//
// laneArgs is {rk [4]*[176]byte; iv [4]*[16]byte; data [4]*byte}.
TEXT ·cbcEncrypt4(SB), NOSPLIT, $0-16
	MOVQ a+0(FP), R11
	MOVQ blocks+8(FP), CX
	SHLQ $4, CX
	MOVQ 0(R11), AX
	MOVQ 8(R11), BX
	MOVQ 16(R11), DX
	MOVQ 24(R11), R8
	MOVQ 32(R11), R9
	MOVOU (R9), X0
	MOVQ 40(R11), R9
	MOVOU (R9), X1
	MOVQ 48(R11), R9
	MOVOU (R9), X2
	MOVQ 56(R11), R9
	MOVOU (R9), X3
	MOVQ 64(R11), SI
	MOVQ 72(R11), DI
	MOVQ 80(R11), R9
	MOVQ 88(R11), R10
	XORQ R12, R12

eloop:
	CMPQ R12, CX
	JAE edone
	// X = previous ciphertext XOR plaintext XOR round key 0.
	MOVOU (SI)(R12*1), X4
	MOVOU (DI)(R12*1), X5
	MOVOU (R9)(R12*1), X6
	MOVOU (R10)(R12*1), X7
	PXOR X4, X0
	PXOR X5, X1
	PXOR X6, X2
	PXOR X7, X3
	MOVOU 0(AX), X4
	MOVOU 0(BX), X5
	MOVOU 0(DX), X6
	MOVOU 0(R8), X7
	PXOR X4, X0
	PXOR X5, X1
	PXOR X6, X2
	PXOR X7, X3
	EROUND4(16)
	EROUND4(32)
	EROUND4(48)
	EROUND4(64)
	EROUND4(80)
	EROUND4(96)
	EROUND4(112)
	EROUND4(128)
	EROUND4(144)
	MOVOU 160(AX), X4
	MOVOU 160(BX), X5
	MOVOU 160(DX), X6
	MOVOU 160(R8), X7
	AESENCLAST X4, X0
	AESENCLAST X5, X1
	AESENCLAST X6, X2
	AESENCLAST X7, X3
	MOVOU X0, (SI)(R12*1)
	MOVOU X1, (DI)(R12*1)
	MOVOU X2, (R9)(R12*1)
	MOVOU X3, (R10)(R12*1)
	ADDQ $16, R12
	JMP eloop

edone:
	MOVQ 32(R11), R9
	MOVOU X0, (R9)
	MOVQ 40(R11), R9
	MOVOU X1, (R9)
	MOVQ 48(R11), R9
	MOVOU X2, (R9)
	MOVQ 56(R11), R9
	MOVOU X3, (R9)
	// Leave no round key or plaintext in registers.
	CLEAR8
	RET
