/* quant_gemm_q6k_avx512vnni.c: the AVX-512 + VNNI multi-row product of Q6_K
 * weights (internal; the contract, quant_gemm_fn, is in quant_simd.h).
 *
 * For: quant_matmul with several activation rows (prefill): the unpacking of
 * a Q6_K panel; the driver, the tiles and the design are in
 * quant_gemm_avx512vnni.h. A file per K-quant type, so that gcc compiles them
 * in parallel, a few seconds each. Not for: the other types
 * (quant_gemm_*_avx512vnni.c), one activation row (quant_avx512vnni.c).
 * Built with the Makefile's *_avx512vnni.c flags.
 */
#include "quant/quant_gemm_avx512vnni.h"

/* ---------------------------------------------------------- Q6_K panels */

#define Q6_VEC 89 /* 64 kquads, 16 scales, 8 scale pairs, d */
#define Q6_KC 4

AI void pack_q6_K(__m512i *pk, const uint8_t *wb, __m512i idx, __mmask16 k,
                 const uint8_t *const *prow, size_t off) {
    (void)prow;
    (void)off;
    const __m512i m4 = _mm512_set1_epi8(0x0f), m2 = _mm512_set1_epi8(3);
#pragma GCC unroll 16
    for (int h = 0; h < 2; h++)
#pragma GCC unroll 16
        for (int t = 0; t < 8; t++) {
            const __m512i gh = gat(idx, k, wb + 128 + 32 * h + 4 * t);
#pragma GCC unroll 16
            for (int kk = 0; kk < 2; kk++) {
                const __m512i gl = gat(idx, k, wb + 64 * h + 32 * kk + 4 * t);
#pragma GCC unroll 16
                for (int s = 0; s < 2; s++) { /* k = kk + 2s: low / high nibble */
                    const int kq = kk + 2 * s;
                    const __m512i lo = s ? _mm512_and_si512(_mm512_srli_epi32(gl, 4), m4)
                                         : _mm512_and_si512(gl, m4);
                    const __m512i hi = _mm512_and_si512(_mm512_srli_epi32(gh, 2 * kq), m2);
                    /* elements 128h + 32kq + 4t.. : kquad 32h + 8kq + t */
                    pk[32 * h + 8 * kq + t] = _mm512_or_si512(lo, _mm512_slli_epi32(hi, 4));
                }
            }
        }
#pragma GCC unroll 16
    for (int i = 0; i < 4; i++) {
        const __m512i s4 = gat(idx, k, wb + 192 + 4 * i); /* scales 4i..4i+3 (int8) */
        __m512i sv[4];
#pragma GCC unroll 16
        for (int j = 0; j < 4; j++) {
            sv[j] = _mm512_srai_epi32(_mm512_slli_epi32(s4, 24 - 8 * j), 24);
            pk[64 + 4 * i + j] = sv[j];
        }
        const __m512i lo16 = _mm512_set1_epi32(0xffff);
        pk[80 + 2 * i] = _mm512_or_si512(_mm512_and_si512(sv[0], lo16), _mm512_slli_epi32(sv[1], 16));
        pk[81 + 2 * i] = _mm512_or_si512(_mm512_and_si512(sv[2], lo16), _mm512_slli_epi32(sv[3], 16));
    }
    pk[88] = _mm512_castps_si512(half_lanes(gat(idx, k, wb + 206), 1));
}

AI void tile_q6_K(const int mr, const __m512i *pk, int nblk, const uint8_t *const *rows,
                  const uint8_t *const *srows, int64_t b0, int64_t nb, __m512 *acc) {
    (void)srows;
    (void)nb;
    for (int b = 0; b < nblk; b++) {
        const __m512i *p = pk + b * Q6_VEC;
        const size_t off = (size_t)(b0 + b) * Q8_K_BYTES;
        __m512i is[MR], cr[MR];
        k_isums(mr, p, 16, 4, p + 64, p + 80, rows, off, is, cr);
        const __m512 wd = _mm512_castsi512_ps(p[88]);
#pragma GCC unroll 16
        for (int r = 0; r < mr; r++) {
            const __m512i isum = _mm512_sub_epi32(is[r], _mm512_slli_epi32(cr[r], 5));
            const __m512 d = _mm512_mul_ps(wd, _mm512_set1_ps(rd_f32(rows[r] + off)));
            acc[r] = _mm512_add_ps(acc[r], _mm512_mul_ps(d, _mm512_cvtepi32_ps(isum)));
        }
    }
}
#define TILE_Q6_K(mr, ...) TILE_SWITCH(tile_q6_K, mr, __VA_ARGS__)

void quant_vnni_gemm_q6_K(float *y, int64_t ldy, const uint8_t *w, size_t w_stride,
                          int64_t ncols, const uint8_t *a, size_t a_stride,
                          const uint8_t *side, size_t side_stride, int64_t M, int64_t n) {
    GEMM_DRIVER(pack_q6_K, TILE_Q6_K, Q6_K_BYTES, Q6_VEC, Q6_KC, QUANT_QK_K);
}
