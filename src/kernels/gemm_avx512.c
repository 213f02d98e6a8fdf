/* gemm_avx512.c: the AVX-512 fp32 GEMM micro-kernel and packing (internal).
 *
 * For: one 14x32 register tile C[14, 32] = alpha * Ap[kc][14]^T Bp[kc][32]
 * + beta * C over packed slivers, with 28 zmm accumulators (14 rows x 2
 * vectors of 16 columns); each k step = 2 vector loads of B + 14 broadcasts
 * of A + 28 FMAs. Tiles of at most 7 rows run a half-height loop. And the
 * packing of A and B slivers for it (copies, and 16x16 in-register
 * transposes for the transposed operands).
 * Not for: blocking or threading (gemm.c), nor for being called on a
 * processor without AVX-512 F/BW/DQ/VL: gemm.c checks core/cpu.h
 * first. This file is compiled with -mavx512f -mavx512bw -mavx512dq
 * -mavx512vl (Makefile rule for *_avx512.c).
 * The contracts (shapes, padding, alignment, rounding) are in gemm_internal.h.
 */
#include "kernels/gemm_internal.h"

#include <immintrin.h>
#include <stddef.h>

#define MR GEMM_AVX512_MR
#define NR GEMM_AVX512_NR

/* The k loop is written in assembly: compilers do not reliably keep 28
 * accumulators + 2 B vectors + 2 broadcasts in the 32 zmm registers without
 * spilling. Accumulator of row i, columns 16h..16h+15: zmm(2i+h); B row:
 * zmm28, zmm29; A broadcasts alternate zmm30, zmm31. ROW(k, 4i, r, 2i, 2i+1)
 * is row i of step k (A at k*56 + 4i bytes, B at k*128 bytes). */
#define ROW(k, i4, r, c0, c1) \
    "vbroadcastss " #k "*56+" #i4 "(%[a]), %%zmm" #r "\n\t" \
    "vfmadd231ps %%zmm28, %%zmm" #r ", %%zmm" #c0 "\n\t" \
    "vfmadd231ps %%zmm29, %%zmm" #r ", %%zmm" #c1 "\n\t"
#define STEP(k) \
    "vmovaps " #k "*128(%[b]), %%zmm28\n\t" \
    "vmovaps " #k "*128+64(%[b]), %%zmm29\n\t" \
    ROW(k, 0, 30, 0, 1) ROW(k, 4, 31, 2, 3) ROW(k, 8, 30, 4, 5) \
    ROW(k, 12, 31, 6, 7) ROW(k, 16, 30, 8, 9) ROW(k, 20, 31, 10, 11) \
    ROW(k, 24, 30, 12, 13) ROW(k, 28, 31, 14, 15) ROW(k, 32, 30, 16, 17) \
    ROW(k, 36, 31, 18, 19) ROW(k, 40, 30, 20, 21) ROW(k, 44, 31, 22, 23) \
    ROW(k, 48, 30, 24, 25) ROW(k, 52, 31, 26, 27)
/* B is streamed from L2: fetch the two lines of step k + 8 ahead. */
#define PREFETCH_B(k) \
    "prefetcht0 " #k "*128+1024(%[b])\n\t" \
    "prefetcht0 " #k "*128+1088(%[b])\n\t"
/* Rows 0..6 only, for tiles of m <= 7 rows (half the work). */
#define STEP7(k) \
    "vmovaps " #k "*128(%[b]), %%zmm28\n\t" \
    "vmovaps " #k "*128+64(%[b]), %%zmm29\n\t" \
    ROW(k, 0, 30, 0, 1) ROW(k, 4, 31, 2, 3) ROW(k, 8, 30, 4, 5) \
    ROW(k, 12, 31, 6, 7) ROW(k, 16, 30, 8, 9) ROW(k, 20, 31, 10, 11) \
    ROW(k, 24, 30, 12, 13)
#define ZERO(r) "vpxord %%zmm" #r ", %%zmm" #r ", %%zmm" #r "\n\t"
#define SAVE(r) "vmovaps %%zmm" #r ", " #r "*64(%[acc])\n\t"
#define ALL28(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) \
    X(11) X(12) X(13) X(14) X(15) X(16) X(17) X(18) X(19) X(20) X(21) X(22) \
    X(23) X(24) X(25) X(26) X(27)
#define ALL14(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) \
    X(11) X(12) X(13)
/* The k loop over 4 steps at a time, then one at a time; S is STEP or STEP7,
 * ALL is ALL28 or ALL14 (the accumulators that S uses). */
#define K_LOOP(S, ALL) \
        ALL(ZERO) \
        "test %[n4], %[n4]\n\t" \
        "jz 2f\n\t" \
        "1:\n\t" \
        PREFETCH_B(0) S(0) \
        PREFETCH_B(1) S(1) \
        PREFETCH_B(2) S(2) \
        PREFETCH_B(3) S(3) \
        "add $224, %[a]\n\t" \
        "add $512, %[b]\n\t" \
        "dec %[n4]\n\t" \
        "jnz 1b\n\t" \
        "2:\n\t" \
        "test %[n1], %[n1]\n\t" \
        "jz 4f\n\t" \
        "3:\n\t" \
        S(0) \
        "add $56, %[a]\n\t" \
        "add $128, %[b]\n\t" \
        "dec %[n1]\n\t" \
        "jnz 3b\n\t" \
        "4:\n\t" \
        ALL(SAVE)
#define K_LOOP_OPERANDS \
        : [a] "+r"(a), [b] "+r"(b), [n4] "+r"(n4), [n1] "+r"(n1) \
        : [acc] "r"(acc) \
        : "cc", "memory", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", \
          "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", \
          "xmm14", "xmm15", "xmm16", "xmm17", "xmm18", "xmm19", "xmm20", \
          "xmm21", "xmm22", "xmm23", "xmm24", "xmm25", "xmm26", "xmm27", \
          "xmm28", "xmm29", "xmm30", "xmm31"

/* Row i of the tile: C[i, 0..n) = alpha * acc + beta * C (masked columns). */
#define STORE_ROW(i) do { \
        if ((i) < m) { \
            float *cr = C + (ptrdiff_t)(i) * ldc; \
            __m512 r0 = _mm512_mul_ps(va, _mm512_load_ps(acc + (i) * NR)); \
            __m512 r1 = _mm512_mul_ps(va, _mm512_load_ps(acc + (i) * NR + 16)); \
            if (beta != 0.0f) { \
                r0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(k0, cr), r0); \
                if (n > 16) \
                    r1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(k1, cr + 16), r1); \
            } \
            _mm512_mask_storeu_ps(cr, k0, r0); \
            if (n > 16) _mm512_mask_storeu_ps(cr + 16, k1, r1); \
        } \
    } while (0)

/* C[m, n] = alpha * Ap[kc][14]^T Bp[kc][32] + beta * C (see gemm_internal.h). */
void gemm_ukernel_avx512(int kc, const float *Ap, const float *Bp, float *C,
                         int ldc, int m, int n, float alpha, float beta) {
    float acc[MR * NR] __attribute__((aligned(64))); /* [14][32] sums */
    const float *a = Ap, *b = Bp;
    long n4 = kc / 4, n1 = kc % 4;

    /* The C tile is touched only after the k loop: ask for it now. */
    for (int i = 0; i < m; i++) {
        _mm_prefetch((const char *)(C + (ptrdiff_t)i * ldc), _MM_HINT_T0);
        _mm_prefetch((const char *)(C + (ptrdiff_t)i * ldc + 16), _MM_HINT_T0);
    }

    if (m > 7)
        __asm__ volatile(K_LOOP(STEP, ALL28) K_LOOP_OPERANDS);
    else
        __asm__ volatile(K_LOOP(STEP7, ALL14) K_LOOP_OPERANDS);

    const __mmask16 k0 = n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1u);
    const __mmask16 k1 = n >= 32 ? (__mmask16)0xFFFF
                       : n > 16 ? (__mmask16)((1u << (n - 16)) - 1u) : (__mmask16)0;
    const __m512 va = _mm512_set1_ps(alpha);
    const __m512 vb = _mm512_set1_ps(beta);
    STORE_ROW(0); STORE_ROW(1); STORE_ROW(2); STORE_ROW(3); STORE_ROW(4);
    STORE_ROW(5); STORE_ROW(6); STORE_ROW(7); STORE_ROW(8); STORE_ROW(9);
    STORE_ROW(10); STORE_ROW(11); STORE_ROW(12); STORE_ROW(13);
}

/* ------------------------------------------------------------- packing */

/* A 16x16 transpose in registers: rows r0a, r0b, r1a, ... (rows 0..15) ->
 * unpack pairs (t) -> 4x4 blocks per 128-bit lane (u) -> lanes gathered (o).
 * Written out in full: compilers otherwise keep the arrays in memory. */
#define UNPACK2(i) \
    t##i##a = _mm512_unpacklo_ps(r##i##a, r##i##b); \
    t##i##b = _mm512_unpackhi_ps(r##i##a, r##i##b);
/* group g = rows 4g..4g+3 = pairs 2g, 2g+1; u[g][c], lane L: column 4L+c */
#define SHUF4(g, p, q) \
    u##g##0 = _mm512_shuffle_ps(t##p##a, t##q##a, 0x44); \
    u##g##1 = _mm512_shuffle_ps(t##p##a, t##q##a, 0xEE); \
    u##g##2 = _mm512_shuffle_ps(t##p##b, t##q##b, 0x44); \
    u##g##3 = _mm512_shuffle_ps(t##p##b, t##q##b, 0xEE);
/* the four 128-bit lanes of column c gathered from u[0..3][c]; output
 * column j (= value k + j of the 16 vectors) is o<j> for j < 4, then
 * o<c>4, o<c>8, o<c>12 for j = 4 + c, 8 + c, 12 + c */
#define LANES(c) do { \
        const __m512 v0 = _mm512_shuffle_f32x4(u0##c, u1##c, 0x88); \
        const __m512 v1 = _mm512_shuffle_f32x4(u0##c, u1##c, 0xDD); \
        const __m512 v2 = _mm512_shuffle_f32x4(u2##c, u3##c, 0x88); \
        const __m512 v3 = _mm512_shuffle_f32x4(u2##c, u3##c, 0xDD); \
        o##c = _mm512_shuffle_f32x4(v0, v2, 0x88); \
        o##c##4 = _mm512_shuffle_f32x4(v1, v3, 0x88); \
        o##c##8 = _mm512_shuffle_f32x4(v0, v2, 0xDD); \
        o##c##12 = _mm512_shuffle_f32x4(v1, v3, 0xDD); \
    } while (0)

/* A 16 x kn block (kn <= 16) of a transpose: reads 16 vectors of kn floats
 * (vector i at src + i * ld; vectors >= nv read as zero without touching
 * memory) and writes value j of all 16 to d + j * R (lanes in smask). */
static inline __attribute__((always_inline)) void
transpose_block(float *d, ptrdiff_t R, __mmask16 smask, const float *src,
                ptrdiff_t ld, int nv, int kn) {
    const __mmask16 kmask = kn >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << kn) - 1u);
#define LD(i) (_mm512_maskz_loadu_ps((i) < nv ? kmask : (__mmask16)0, \
                                     src + ((i) < nv ? (i) : 0) * ld))
#define ST(j, v) do { if ((j) < kn) _mm512_mask_storeu_ps(d + (j) * R, smask, (v)); } while (0)
    __m512 r0a = LD(0), r0b = LD(1), r1a = LD(2), r1b = LD(3);
    __m512 r2a = LD(4), r2b = LD(5), r3a = LD(6), r3b = LD(7);
    __m512 r4a = LD(8), r4b = LD(9), r5a = LD(10), r5b = LD(11);
    __m512 r6a = LD(12), r6b = LD(13), r7a = LD(14), r7b = LD(15);
    __m512 t0a, t0b, t1a, t1b, t2a, t2b, t3a, t3b;
    __m512 t4a, t4b, t5a, t5b, t6a, t6b, t7a, t7b;
    UNPACK2(0) UNPACK2(1) UNPACK2(2) UNPACK2(3)
    UNPACK2(4) UNPACK2(5) UNPACK2(6) UNPACK2(7)
    __m512 u00, u01, u02, u03, u10, u11, u12, u13;
    __m512 u20, u21, u22, u23, u30, u31, u32, u33;
    SHUF4(0, 0, 1) SHUF4(1, 2, 3) SHUF4(2, 4, 5) SHUF4(3, 6, 7)
    __m512 o0, o1, o2, o3, o04, o14, o24, o34;
    __m512 o08, o18, o28, o38, o012, o112, o212, o312;
    LANES(0); LANES(1); LANES(2); LANES(3);
    /* in address order: o0..o3 are j = 0..3, oc4 j = 4 + c, ... */
    ST(0, o0); ST(1, o1); ST(2, o2); ST(3, o3);
    ST(4, o04); ST(5, o14); ST(6, o24); ST(7, o34);
    ST(8, o08); ST(9, o18); ST(10, o28); ST(11, o38);
    ST(12, o012); ST(13, o112); ST(14, o212); ST(15, o312);
#undef LD
#undef ST
}

static inline __mmask16 first_lanes(int n) { /* lanes 0 .. n-1, n in 0..16+ */
    return n >= 16 ? (__mmask16)0xFFFF : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1u);
}

/* Slivers dst[ceil(w / R)][kc][R] from w vectors (see gemm_internal.h). */
void gemm_pack_avx512(float *dst, const float *src, ptrdiff_t ld, int kcontig,
                      int w, int kc, int R) {
    const __mmask16 s0 = first_lanes(R), s1 = first_lanes(R - 16);
    if (!kcontig) { /* a copy, row by row of k across all slivers */
        for (int k = 0; k < kc; k++) {
            const float *s = src + (ptrdiff_t)k * ld;
            float *d = dst + (size_t)k * R;
            for (int r = 0; r < w; r += R, d += (size_t)kc * R) {
                _mm512_mask_storeu_ps(d, s0, _mm512_maskz_loadu_ps(first_lanes(w - r), s + r));
                if (R > 16)
                    _mm512_mask_storeu_ps(d + 16, s1, w - r > 16
                        ? _mm512_maskz_loadu_ps(first_lanes(w - r - 16), s + r + 16)
                        : _mm512_setzero_ps());
            }
        }
        return;
    }
    /* A transpose, in blocks of 16 vectors by 16 values of k. */
    for (int q = 0; q < w; q += R) {
        float *dq = dst + (size_t)q * kc;
        for (int r0 = 0; r0 < R; r0 += 16) {
            const __mmask16 smask = first_lanes(R - r0);
            const int nv = w - q - r0; /* vectors of this block that exist */
            if (nv <= 0) { /* padding only */
                for (int k = 0; k < kc; k++)
                    _mm512_mask_storeu_ps(dq + (size_t)k * R + r0, smask, _mm512_setzero_ps());
                continue;
            }
            const float *s = src + (ptrdiff_t)(q + r0) * ld;
            int k = 0;
            /* constant nv in the common cases, so the loads are unconditional */
            if (nv >= 16) {
                for (; k + 16 <= kc; k += 16)
                    transpose_block(dq + (size_t)k * R + r0, R, smask, s + k, ld, 16, 16);
            } else if (nv == 14) {
                for (; k + 16 <= kc; k += 16)
                    transpose_block(dq + (size_t)k * R + r0, R, smask, s + k, ld, 14, 16);
            } else {
                for (; k + 16 <= kc; k += 16)
                    transpose_block(dq + (size_t)k * R + r0, R, smask, s + k, ld, nv, 16);
            }
            if (k < kc) /* the last kc % 16 values of k */
                transpose_block(dq + (size_t)k * R + r0, R, smask, s + k, ld, nv, kc - k);
        }
    }
}
