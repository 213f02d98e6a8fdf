/* quant_gemm_q4k_avx512vnni.c: the AVX-512 + VNNI multi-row product of Q4_K
 * weights (internal; the contract, quant_gemm_fn, is in quant_simd.h).
 *
 * For: quant_matmul with several activation rows (prefill): the unpacking of
 * a Q4_K panel; the driver, the tiles and the design are in
 * quant_gemm_avx512vnni.h. A file per K-quant type, so that gcc compiles them
 * in parallel, a few seconds each. Not for: the other types
 * (quant_gemm_*_avx512vnni.c), one activation row (quant_avx512vnni.c).
 * Built with the Makefile's *_avx512vnni.c flags.
 */
#include "quant/quant_gemm_avx512vnni.h"

/* ---------------------------------------------------------- Q4_K panels */

AI void pack_q4_K(__m512i *pk, const uint8_t *wb, __m512i idx, __mmask16 k,
                 const uint8_t *const *prow, size_t off) {
    (void)wb;
    (void)idx;
    (void)k;
    const __m512i m4 = _mm512_set1_epi8(0x0f);
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) {
        __m512i v[16]; /* v[q] lane j: dword 16h + q of row j's quants */
        load_t16(v, prow, off + 16 + 64 * h);
#pragma GCC unroll 16
        for (int q = 0; q < 16; q++) {
            const int c = 2 * h + q / 8, t = q % 8; /* bytes 32c + 4t.. */
            pk[16 * c + t] = _mm512_and_si512(v[q], m4);                          /* group 2c */
            pk[16 * c + 8 + t] = _mm512_and_si512(_mm512_srli_epi32(v[q], 4), m4); /* 2c + 1 */
        }
    }
    pack_k4_scales(pk, prow, off);
}

void quant_vnni_gemm_q4_K(float *y, int64_t ldy, const uint8_t *w, size_t w_stride,
                          int64_t ncols, const uint8_t *a, size_t a_stride,
                          const uint8_t *side, size_t side_stride, int64_t M, int64_t n) {
    GEMM_DRIVER(pack_q4_K, TILE_K4, Q4_K_BYTES, K4_VEC, K4_KC, QUANT_QK_K);
}
