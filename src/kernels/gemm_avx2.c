/* gemm_avx2.c: the AVX2 + FMA fp32 GEMM micro-kernel (internal).
 *
 * For: one 6x16 register tile C[6, 16] = alpha * Ap[kc][6]^T Bp[kc][16]
 * + beta * C over packed slivers, 12 ymm accumulators (6 rows x 2 vectors of
 * 8 columns); each k step = 2 vector loads of B + 6 broadcasts of A + 12 FMAs.
 * Not for: packing (the portable packing in gemm.c serves this kernel),
 * blocking or threading (gemm.c), nor for being called on a
 * processor without AVX2 and FMA: gemm.c checks core/cpu.h first.
 * This file is compiled with -mavx2 -mfma (Makefile rule for *_avx2.c).
 * The contract (shapes, padding, rounding) is in gemm_internal.h.
 */
#include "kernels/gemm_internal.h"

#include <immintrin.h>
#include <stddef.h>

#define MR GEMM_AVX2_MR
#define NR GEMM_AVX2_NR

#define ACC_DECL(i) __m256 c##i##0 = _mm256_setzero_ps(), c##i##1 = _mm256_setzero_ps();
#define ACC_FMA(i, off) do { \
        __m256 a_ = _mm256_broadcast_ss(a + (off) * MR + (i)); \
        c##i##0 = _mm256_fmadd_ps(a_, b0, c##i##0); \
        c##i##1 = _mm256_fmadd_ps(a_, b1, c##i##1); \
    } while (0)
#define STEP(off) do { \
        __m256 b0 = _mm256_load_ps(b + (off) * NR); \
        __m256 b1 = _mm256_load_ps(b + (off) * NR + 8); \
        ACC_FMA(0, off); ACC_FMA(1, off); ACC_FMA(2, off); \
        ACC_FMA(3, off); ACC_FMA(4, off); ACC_FMA(5, off); \
    } while (0)

/* Row i of the tile: C[i, 0..n) = alpha * acc + beta * C (masked columns). */
#define STORE_ROW(i) do { \
        if ((i) < m) { \
            float *cr = C + (ptrdiff_t)(i) * ldc; \
            __m256 r0 = _mm256_mul_ps(va, c##i##0); \
            __m256 r1 = _mm256_mul_ps(va, c##i##1); \
            if (full) { \
                if (beta != 0.0f) { \
                    r0 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(cr), r0); \
                    r1 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(cr + 8), r1); \
                } \
                _mm256_storeu_ps(cr, r0); \
                _mm256_storeu_ps(cr + 8, r1); \
            } else { \
                if (beta != 0.0f) { \
                    r0 = _mm256_fmadd_ps(vb, _mm256_maskload_ps(cr, m0), r0); \
                    if (n > 8) \
                        r1 = _mm256_fmadd_ps(vb, _mm256_maskload_ps(cr + 8, m1), r1); \
                } \
                _mm256_maskstore_ps(cr, m0, r0); \
                if (n > 8) _mm256_maskstore_ps(cr + 8, m1, r1); \
            } \
        } \
    } while (0)

/* C[m, n] = alpha * Ap[kc][6]^T Bp[kc][16] + beta * C (see gemm_internal.h). */
void gemm_ukernel_avx2(int kc, const float *Ap, const float *Bp, float *C,
                       int ldc, int m, int n, float alpha, float beta) {
    const float *a = Ap;
    const float *b = (const float *)__builtin_assume_aligned(Bp, 64);
    ACC_DECL(0) ACC_DECL(1) ACC_DECL(2) ACC_DECL(3) ACC_DECL(4) ACC_DECL(5)

    for (int i = 0; i < m; i++)
        _mm_prefetch((const char *)(C + (ptrdiff_t)i * ldc), _MM_HINT_T0);

    int k = 0;
    for (; k + 4 <= kc; k += 4) {
        _mm_prefetch((const char *)(b + 8 * NR), _MM_HINT_T0);
        _mm_prefetch((const char *)(b + 10 * NR), _MM_HINT_T0);
        STEP(0);
        STEP(1);
        STEP(2);
        STEP(3);
        a += 4 * MR;
        b += 4 * NR;
    }
    for (; k < kc; k++) {
        STEP(0);
        a += MR;
        b += NR;
    }

    /* Column masks for a partial tile: lane j is on when j < n. */
    const int full = n == NR;
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(n), lanes);
    const __m256i m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(n - 8), lanes);
    const __m256 va = _mm256_set1_ps(alpha);
    const __m256 vb = _mm256_set1_ps(beta);
    STORE_ROW(0); STORE_ROW(1); STORE_ROW(2);
    STORE_ROW(3); STORE_ROW(4); STORE_ROW(5);
}
