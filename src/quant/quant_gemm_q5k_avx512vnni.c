/* quant_gemm_q5k_avx512vnni.c: the AVX-512 + VNNI multi-row product of Q5_K
 * weights (internal; the contract, quant_gemm_fn, is in quant_simd.h).
 *
 * For: quant_matmul with several activation rows (prefill): the unpacking of
 * a Q5_K panel; the driver, the tiles and the design are in
 * quant_gemm_avx512vnni.h. A file per K-quant type, so that gcc compiles them
 * in parallel, a few seconds each. Not for: the other types
 * (quant_gemm_*_avx512vnni.c), one activation row (quant_avx512vnni.c).
 * Built with the Makefile's *_avx512vnni.c flags.
 */
#include "quant/quant_gemm_avx512vnni.h"

/* ---------------------------------------------------------- Q5_K panels */

AI void pack_q5_K(__m512i *pk, const uint8_t *wb, __m512i idx, __mmask16 k,
                 const uint8_t *const *prow, size_t off) {
    const __m512i m4 = _mm512_set1_epi8(0x0f), one = _mm512_set1_epi8(1);
#pragma GCC unroll 16
    for (int t = 0; t < 8; t++) {
        const __m512i h = gat(idx, k, wb + 16 + 4 * t); /* qh bytes 4t.. : bit g = group g */
#pragma GCC unroll 16
        for (int c = 0; c < 4; c++) {
            const __m512i g = gat(idx, k, wb + 48 + 32 * c + 4 * t);
            const __m512i b0 = _mm512_and_si512(_mm512_srli_epi32(h, 2 * c), one);
            const __m512i b1 = _mm512_and_si512(_mm512_srli_epi32(h, 2 * c + 1), one);
            pk[16 * c + t] = _mm512_or_si512(_mm512_and_si512(g, m4), _mm512_slli_epi32(b0, 4));
            pk[16 * c + 8 + t] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(g, 4), m4),
                                                 _mm512_slli_epi32(b1, 4));
        }
    }
    pack_k4_scales(pk, prow, off);
}

void quant_vnni_gemm_q5_K(float *y, int64_t ldy, const uint8_t *w, size_t w_stride,
                          int64_t ncols, const uint8_t *a, size_t a_stride,
                          const uint8_t *side, size_t side_stride, int64_t M, int64_t n) {
    GEMM_DRIVER(pack_q5_K, TILE_K4, Q5_K_BYTES, K4_VEC, K4_KC, QUANT_QK_K);
}
