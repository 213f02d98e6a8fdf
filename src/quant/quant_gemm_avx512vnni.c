/* quant_gemm_avx512vnni.c: the AVX-512 + VNNI multi-row quantized products
 * (internal; the contract, quant_gemm_fn, is in quant_simd.h).
 *
 * For: quant_matmul with several activation rows (prefill), Q4_0 Q8_0 Q4_K
 * Q5_K Q6_K: each weight block is unpacked once for all activation rows.
 * Not for: one activation row (quant_avx512vnni.c), threading (quant.c), or
 * running on a processor without AVX-512 F/BW/DQ/VL + VNNI. Built with the
 * Makefile's *_avx512vnni.c flags.
 *
 * Design: the weight rows are cut in panels of 16 (one per int32 lane); a
 * panel's blocks are unpacked (gathers) into [4-weight group][16 lanes][4
 * bytes] vectors of unsigned quants plus per-lane scales, a few blocks at a
 * time so that they stay in L1/L2; then MR = 8 activation rows at a time run
 * over them: vpdpbusd of the lane's 4 quants with the row's 4 activations
 * (an embedded broadcast) into that row's accumulator. Lane j of row m's
 * accumulators belongs to output (m, j) alone, and every lane applies the
 * scalar reference's integer sums and float formula in block order, so each
 * output is bitwise quant_vec_dot's, wherever the panel and tile cuts fall.
 */
#include "quant/quant_simd.h"

#include <immintrin.h>
#include <string.h>

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

#define AI static inline __attribute__((always_inline))

#define Q4_0_BYTES 18
#define Q8_0_BYTES 34
#define Q4_K_BYTES 144
#define Q5_K_BYTES 176
#define Q6_K_BYTES 210
#define Q8_K_BYTES 292

AI int32_t rd_i32(const uint8_t *p) { int32_t v; memcpy(&v, p, 4); return v; }
AI float rd_f32(const uint8_t *p) { float v; memcpy(&v, p, 4); return v; }

#define NP 16       /* weight rows per panel: one per lane */
#define MR 8        /* activation rows per register tile */

/* Lane j's byte offset j * stride (the gather index of a panel). */
AI __m512i lane_offsets(size_t stride) {
    return _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                              _mm512_set1_epi32((int)stride));
}

AI __m512i gat(__m512i idx, __mmask16 k, const uint8_t *p) {
    return _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), k, idx, p, 1);
}

/* Lanes' fp16 in the low (hi = 0) or high 16 bits of each dword -> fp32. */
AI __m512 half_lanes(__m512i v, int hi) {
    return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(hi ? _mm512_srli_epi32(v, 16) : v));
}

AI __m512i bc(const uint8_t *p) { return _mm512_set1_epi32(rd_i32(p)); }

/* The driver shared by the types: panels of NP rows, the K range cut in
 * chunks of KC blocks whose unpacked panel (VEC vectors per block) stays in
 * L1/L2, activation rows MR at a time; the running sums live in y between
 * chunks (stored and reloaded unchanged). PACK(pk, wb, idx, mask) unpacks
 * one block of the panel; TILE(mr, pk, nblk, rows, b0, side rows, acc) runs
 * mr rows over nblk blocks. */
#define GEMM_DRIVER(PACK, TILE, WBYTES, VEC, KC, QKB)                                   \
    do {                                                                                \
        const int64_t nb = n / (QKB);                                                   \
        __m512i pk[(KC) * (VEC)] __attribute__((aligned(64)));                          \
        const __m512i idx = lane_offsets(w_stride);                                     \
        for (int64_t j0 = 0; j0 < ncols; j0 += NP) {                                    \
            const int nc = ncols - j0 < NP ? (int)(ncols - j0) : NP;                    \
            const __mmask16 k = (__mmask16)(nc == NP ? 0xffffu : (1u << nc) - 1u);      \
            const uint8_t *wp = w + (size_t)j0 * w_stride;                              \
            for (int64_t b0 = 0; b0 < nb; b0 += (KC)) {                                 \
                const int nblk = nb - b0 < (KC) ? (int)(nb - b0) : (KC);                \
                for (int b = 0; b < nblk; b++)                                          \
                    PACK(pk + b * (VEC), wp + (size_t)(b0 + b) * (WBYTES), idx, k);      \
                for (int64_t m0 = 0; m0 < M; m0 += MR) {                                \
                    const int mr = M - m0 < MR ? (int)(M - m0) : MR;                    \
                    __m512 acc[MR];                                                     \
                    const uint8_t *rows[MR], *srows[MR];                                \
                    for (int r = 0; r < mr; r++) {                                      \
                        float *yr = y + (m0 + r) * ldy + j0;                            \
                        acc[r] = b0 == 0 ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(k, yr); \
                        rows[r] = a + (size_t)(m0 + r) * a_stride;                      \
                        srows[r] = side ? side + (size_t)(m0 + r) * side_stride : NULL; \
                    }                                                                   \
                    TILE(mr, pk, nblk, rows, srows, b0, nb, acc);                       \
                    for (int r = 0; r < mr; r++)                                        \
                        _mm512_mask_storeu_ps(y + (m0 + r) * ldy + j0, k, acc[r]);      \
                }                                                                       \
            }                                                                           \
        }                                                                               \
    } while (0)

/* Dispatches a runtime row count to the always-inline tile with a constant
 * one, so that its loops over rows unroll into registers. */
#define TILE_SWITCH(FN, mr, ...)                   \
    switch (mr) {                                  \
    case 1: FN(1, __VA_ARGS__); break;             \
    case 2: FN(2, __VA_ARGS__); break;             \
    case 3: FN(3, __VA_ARGS__); break;             \
    case 4: FN(4, __VA_ARGS__); break;             \
    case 5: FN(5, __VA_ARGS__); break;             \
    case 6: FN(6, __VA_ARGS__); break;             \
    case 7: FN(7, __VA_ARGS__); break;             \
    default: FN(8, __VA_ARGS__); break;            \
    }

/* ---------------------------------------------------------- Q8_0 panels */

#define Q8_0_VEC 9 /* 8 kquads (w ^ 0x80) + the scales */
#define Q8_0_KC 32

AI void pack_q8_0(__m512i *pk, const uint8_t *wb, __m512i idx, __mmask16 k) {
    const __m512i k80 = _mm512_set1_epi8((char)0x80);
#pragma GCC unroll 16
    for (int t = 0; t < 8; t++) pk[t] = _mm512_xor_si512(gat(idx, k, wb + 2 + 4 * t), k80);
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

AI void pack_q4_0(__m512i *pk, const uint8_t *wb, __m512i idx, __mmask16 k) {
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

/* ------------------------------------------------------ Q4_K/Q5_K panels */

#define K4_VEC 82 /* 64 kquads, 8 scales, 8 (min, min) pairs, d, dmin */
#define K4_KC 4

/* Scales and mins of a Q4_K/Q5_K panel block into pk[64..81]. */
AI void pack_k4_scales(__m512i *pk, const uint8_t *wb, __m512i idx, __mmask16 k) {
    const __m512i u0 = gat(idx, k, wb + 4), u1 = gat(idx, k, wb + 8), u2 = gat(idx, k, wb + 12);
    const __m512i lo6 = _mm512_set1_epi32(0x3f3f3f3f), lo4 = _mm512_set1_epi32(0x0f0f0f0f);
    const __m512i lo2 = _mm512_set1_epi32(0x03030303), ff = _mm512_set1_epi32(0xff);
    const __m512i sc03 = _mm512_and_si512(u0, lo6), mn03 = _mm512_and_si512(u1, lo6);
    const __m512i sc47 = _mm512_or_si512(_mm512_and_si512(u2, lo4),
        _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(u0, 6), lo2), 4));
    const __m512i mn47 = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(u2, 4), lo4),
        _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(u1, 6), lo2), 4));
#pragma GCC unroll 16
    for (int g = 0; g < 8; g++) {
        const __m512i s = g < 4 ? sc03 : sc47, m = g < 4 ? mn03 : mn47;
        const int sh = 8 * (g & 3);
        pk[64 + g] = _mm512_and_si512(_mm512_srli_epi32(s, sh), ff);
        const __m512i mv = _mm512_and_si512(_mm512_srli_epi32(m, sh), ff);
        pk[72 + g] = _mm512_or_si512(mv, _mm512_slli_epi32(mv, 16));
    }
    const __m512i dd = gat(idx, k, wb);
    pk[80] = _mm512_castps_si512(half_lanes(dd, 0));
    pk[81] = _mm512_castps_si512(half_lanes(dd, 1));
}

AI void pack_q4_K(__m512i *pk, const uint8_t *wb, __m512i idx, __mmask16 k) {
    const __m512i m4 = _mm512_set1_epi8(0x0f);
#pragma GCC unroll 16
    for (int c = 0; c < 4; c++)
#pragma GCC unroll 16
        for (int t = 0; t < 8; t++) {
            const __m512i g = gat(idx, k, wb + 16 + 32 * c + 4 * t);
            pk[16 * c + t] = _mm512_and_si512(g, m4);                          /* group 2c */
            pk[16 * c + 8 + t] = _mm512_and_si512(_mm512_srli_epi32(g, 4), m4); /* 2c + 1 */
        }
    pack_k4_scales(pk, wb, idx, k);
}

AI void pack_q5_K(__m512i *pk, const uint8_t *wb, __m512i idx, __mmask16 k) {
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
    pack_k4_scales(pk, wb, idx, k);
}

/* The K-quant tiles' two integer passes over one super-block, for mr
 * activation rows (row r's Q8_K block at rows[r] + off):
 * is[r] = sum over G groups of scale_g * (sum of T dword dot products of the
 * group's unpacked weights p[T g + t] with its quants), scales at sc[g];
 * bs[r] = sum of the 8 pair-of-bsum dot products with bw[0..7]. Exact in
 * int32, so the order of the sums does not matter. */
AI void k_isums(const int mr, const __m512i *p, const int G, const int T, const __m512i *sc,
                const __m512i *bw, const uint8_t *const *rows, size_t off, __m512i *is,
                __m512i *bs) {
#pragma GCC unroll 16
    for (int r = 0; r < mr; r++) is[r] = _mm512_setzero_si512();
#pragma GCC unroll 16
    for (int g = 0; g < G; g++) {
        __m512i s[MR];
#pragma GCC unroll 16
        for (int r = 0; r < mr; r++) s[r] = _mm512_setzero_si512();
#pragma GCC unroll 16
        for (int t = 0; t < T; t++) {
            const __m512i wv = p[T * g + t];
#pragma GCC unroll 16
            for (int r = 0; r < mr; r++)
                s[r] = _mm512_dpbusd_epi32(s[r], wv, bc(rows[r] + off + 4 + 4 * T * g + 4 * t));
        }
#pragma GCC unroll 16
        for (int r = 0; r < mr; r++)
            is[r] = _mm512_add_epi32(is[r], _mm512_mullo_epi32(s[r], sc[g]));
    }
#pragma GCC unroll 16
    for (int r = 0; r < mr; r++) bs[r] = _mm512_setzero_si512();
#pragma GCC unroll 16
    for (int i = 0; i < 8; i++)
#pragma GCC unroll 16
        for (int r = 0; r < mr; r++)
            bs[r] = _mm512_dpwssd_epi32(bs[r], bw[i], bc(rows[r] + off + 260 + 4 * i));
}

AI void tile_k4(const int mr, const __m512i *pk, int nblk, const uint8_t *const *rows,
                const uint8_t *const *srows, int64_t b0, int64_t nb, __m512 *acc) {
    (void)srows;
    (void)nb;
    for (int b = 0; b < nblk; b++) {
        const __m512i *p = pk + b * K4_VEC;
        const size_t off = (size_t)(b0 + b) * Q8_K_BYTES;
        __m512i is[MR], sm[MR];
        k_isums(mr, p, 8, 8, p + 64, p + 72, rows, off, is, sm);
        const __m512 wd = _mm512_castsi512_ps(p[80]), wm = _mm512_castsi512_ps(p[81]);
#pragma GCC unroll 16
        for (int r = 0; r < mr; r++) {
            const __m512 da = _mm512_set1_ps(rd_f32(rows[r] + off));
            const __m512 d = _mm512_mul_ps(da, wd), dmin = _mm512_mul_ps(da, wm);
            const __m512 t = _mm512_sub_ps(_mm512_mul_ps(d, _mm512_cvtepi32_ps(is[r])),
                                           _mm512_mul_ps(dmin, _mm512_cvtepi32_ps(sm[r])));
            acc[r] = _mm512_add_ps(acc[r], t);
        }
    }
}
#define TILE_K4(mr, ...) TILE_SWITCH(tile_k4, mr, __VA_ARGS__)

void quant_vnni_gemm_q4_K(float *y, int64_t ldy, const uint8_t *w, size_t w_stride,
                          int64_t ncols, const uint8_t *a, size_t a_stride,
                          const uint8_t *side, size_t side_stride, int64_t M, int64_t n) {
    GEMM_DRIVER(pack_q4_K, TILE_K4, Q4_K_BYTES, K4_VEC, K4_KC, QUANT_QK_K);
}

void quant_vnni_gemm_q5_K(float *y, int64_t ldy, const uint8_t *w, size_t w_stride,
                          int64_t ncols, const uint8_t *a, size_t a_stride,
                          const uint8_t *side, size_t side_stride, int64_t M, int64_t n) {
    GEMM_DRIVER(pack_q5_K, TILE_K4, Q5_K_BYTES, K4_VEC, K4_KC, QUANT_QK_K);
}

/* ---------------------------------------------------------- Q6_K panels */

#define Q6_VEC 89 /* 64 kquads, 16 scales, 8 scale pairs, d */
#define Q6_KC 4

AI void pack_q6_K(__m512i *pk, const uint8_t *wb, __m512i idx, __mmask16 k) {
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
