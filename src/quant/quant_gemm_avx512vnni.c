/* quant_gemm_avx512vnni.c: the AVX-512 + VNNI multi-row products of Q8_0,
 * Q4_0 and F32 weights (internal; the contract, quant_gemm_fn, is in
 * quant_simd.h).
 *
 * For: quant_matmul with several activation rows (prefill): each weight block
 * is unpacked once for all activation rows; the design and the driver are in
 * quant_gemm_avx512vnni.h. Not for: the K-quants (quant_gemm_q4k, q5k,
 * q6k_avx512vnni.c), one activation row (quant_avx512vnni.c), threading
 * (quant.c), or running on a processor without AVX-512 F/BW/DQ/VL + VNNI.
 * Built with the Makefile's *_avx512vnni.c flags.
 */
#include "quant/quant_gemm_avx512vnni.h"

/* ---------------------------------------------------------- Q8_0 panels */

#define Q8_0_VEC 9 /* 8 kquads (w ^ 0x80) + the scales */
#define Q8_0_KC 32

AI void pack_q8_0(__m512i *pk, const uint8_t *wb, __m512i idx, __mmask16 k,
                 const uint8_t *const *prow, size_t off) {
    const __m512i k80 = _mm512_set1_epi8((char)0x80);
    load_t8(pk, prow, off + 2); /* the 8 kquads of the 16 rows, transposed */
#pragma GCC unroll 16
    for (int t = 0; t < 8; t++) pk[t] = _mm512_xor_si512(pk[t], k80);
    pk[8] = _mm512_castps_si512(half_lanes(gat(idx, k, wb), 0));
}

/* The tile of the types whose activations are Q8_0 (side row: int32 sum of
 * each activation block, then its scale as fp32): the weights were packed as
 * unsigned bytes q + off, so sumi = sum (q + off) a - off * asum, then the
 * float term in the scalar dot's order: (sumi * wd) * ad when wd_first
 * (dot_q4_0), else sumi * (wd * ad) (dot_q8_0). off and wd_first are
 * constants of each caller, folded by the inlining. */
AI void tile_q8act(const int mr, const int off, const int wd_first, const __m512i *pk, int nblk,
                   const uint8_t *const *rows, const uint8_t *const *srows, int64_t b0, int64_t nb,
                   __m512 *acc) {
    for (int b = 0; b < nblk; b++) {
        const __m512i *p = pk + b * Q8_0_VEC;
        const int64_t blk = b0 + b;
        __m512i s[MR];
#pragma GCC unroll 16
        for (int r = 0; r < mr; r++) s[r] = _mm512_setzero_si512();
#pragma GCC unroll 16
        for (int t = 0; t < 8; t++)
#pragma GCC unroll 16
            for (int r = 0; r < mr; r++)
                s[r] = _mm512_dpbusd_epi32(s[r], p[t], bc(rows[r] + blk * Q8_0_BYTES + 2 + 4 * t));
        const __m512 wd = _mm512_castsi512_ps(p[8]);
#pragma GCC unroll 16
        for (int r = 0; r < mr; r++) {
            const int32_t asum = rd_i32(srows[r] + 4 * blk);
            const __m512 ad = _mm512_set1_ps(rd_f32(srows[r] + 4 * (nb + blk)));
            const __m512 sumf = _mm512_cvtepi32_ps(_mm512_sub_epi32(s[r], _mm512_set1_epi32(asum * off)));
            const __m512 term = wd_first ? _mm512_mul_ps(_mm512_mul_ps(sumf, wd), ad)
                                         : _mm512_mul_ps(sumf, _mm512_mul_ps(wd, ad));
            acc[r] = _mm512_add_ps(acc[r], term);
        }
    }
}

/* Q8_0: q + 128 (the packing flips the sign bit) */
AI void tile_q8_0(const int mr, const __m512i *pk, int nblk, const uint8_t *const *rows,
                  const uint8_t *const *srows, int64_t b0, int64_t nb, __m512 *acc) {
    tile_q8act(mr, 128, 0, pk, nblk, rows, srows, b0, nb, acc);
}
#define TILE_Q8_0(mr, ...) TILE_SWITCH(tile_q8_0, mr, __VA_ARGS__)

void quant_vnni_gemm_q8_0(float *y, int64_t ldy, const uint8_t *w, size_t w_stride,
                          int64_t ncols, const uint8_t *a, size_t a_stride,
                          const uint8_t *side, size_t side_stride, int64_t M, int64_t n) {
    GEMM_DRIVER(pack_q8_0, TILE_Q8_0, Q8_0_BYTES, Q8_0_VEC, Q8_0_KC, QUANT_QK);
}

/* ---------------------------------------------------------- Q4_0 panels */

AI void pack_q4_0(__m512i *pk, const uint8_t *wb, __m512i idx, __mmask16 k,
                 const uint8_t *const *prow, size_t off) {
    (void)prow;
    (void)off;
    const __m512i m4 = _mm512_set1_epi8(0x0f);
#pragma GCC unroll 16
    for (int t = 0; t < 4; t++) {
        const __m512i g = gat(idx, k, wb + 2 + 4 * t);
        pk[t] = _mm512_and_si512(g, m4);                          /* elements 4t.. */
        pk[t + 4] = _mm512_and_si512(_mm512_srli_epi32(g, 4), m4); /* 16 + 4t.. */
    }
    pk[8] = _mm512_castps_si512(half_lanes(gat(idx, k, wb), 0));
}

/* Q4_0: sum (q - 8) a = sum q a - 8 asum; float as dot_q4_0: sumi * wd * ad */
AI void tile_q4_0(const int mr, const __m512i *pk, int nblk, const uint8_t *const *rows,
                  const uint8_t *const *srows, int64_t b0, int64_t nb, __m512 *acc) {
    tile_q8act(mr, 8, 1, pk, nblk, rows, srows, b0, nb, acc);
}
#define TILE_Q4_0(mr, ...) TILE_SWITCH(tile_q4_0, mr, __VA_ARGS__)

void quant_vnni_gemm_q4_0(float *y, int64_t ldy, const uint8_t *w, size_t w_stride,
                          int64_t ncols, const uint8_t *a, size_t a_stride,
                          const uint8_t *side, size_t side_stride, int64_t M, int64_t n) {
    GEMM_DRIVER(pack_q4_0, TILE_Q4_0, Q4_0_BYTES, Q8_0_VEC, Q8_0_KC, QUANT_QK);
}

/* ---------------------------------------------------- F32 weights panels */

/* Float weights (the routers): y = w[j][0] x[m][0] + w[j][1] x[m][1] + ...
 * summed in k order, a product then a sum per step as dot_f32 does, one
 * (row, weight row) pair per lane. The panel is transposed by gathers into
 * [k][16 lanes], F32_KC values of k at a time; a = x (floats), no side. */
#define F32_KC 256

AI void tile_f32(const int mr, const __m512 *pk, int kc, const uint8_t *const *rows, int64_t k0,
                 __m512 *acc) {
    for (int k = 0; k < kc; k++) {
        const __m512 wv = pk[k];
#pragma GCC unroll 16
        for (int r = 0; r < mr; r++)
            acc[r] = _mm512_add_ps(acc[r], _mm512_mul_ps(wv, _mm512_set1_ps(rd_f32(rows[r] + 4 * (k0 + k)))));
    }
}

void quant_vnni_gemm_f32(float *y, int64_t ldy, const uint8_t *w, size_t w_stride,
                         int64_t ncols, const uint8_t *a, size_t a_stride,
                         const uint8_t *side, size_t side_stride, int64_t M, int64_t n) {
    (void)side;
    (void)side_stride;
    __m512 pk[F32_KC] __attribute__((aligned(64)));
    const __m512i idx = lane_offsets(w_stride);
    for (int64_t j0 = 0; j0 < ncols; j0 += NP) {
        const int nc = ncols - j0 < NP ? (int)(ncols - j0) : NP;
        const __mmask16 k = (__mmask16)(nc == NP ? 0xffffu : (1u << nc) - 1u);
        const uint8_t *wp = w + (size_t)j0 * w_stride;
        for (int64_t k0 = 0; k0 < n; k0 += F32_KC) {
            const int kc = n - k0 < F32_KC ? (int)(n - k0) : F32_KC;
            for (int i = 0; i < kc; i++)
                pk[i] = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), k, idx, wp + 4 * (k0 + i), 1);
            for (int64_t m0 = 0; m0 < M; m0 += MR) {
                const int mr = M - m0 < MR ? (int)(M - m0) : MR;
                __m512 acc[MR];
                const uint8_t *rows[MR];
                for (int r = 0; r < mr; r++) {
                    acc[r] = k0 == 0 ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(k, y + (m0 + r) * ldy + j0);
                    rows[r] = a + (size_t)(m0 + r) * a_stride;
                }
                TILE_SWITCH(tile_f32, mr, pk, kc, rows, k0, acc);
                for (int r = 0; r < mr; r++) _mm512_mask_storeu_ps(y + (m0 + r) * ldy + j0, k, acc[r]);
            }
        }
    }
}
