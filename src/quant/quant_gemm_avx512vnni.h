/* quant_gemm_avx512vnni.h: what the AVX-512 + VNNI multi-row quantized
 * products share: helpers, the panel driver and the K-quant tiles (internal;
 * the contract, quant_gemm_fn, is in quant_simd.h).
 *
 * For: quant_gemm_avx512vnni.c (Q8_0, Q4_0, F32) and one file per K-quant
 * type, quant_gemm_q4k, q5k, q6k_avx512vnni.c. Each tile is unrolled for 8
 * row counts and inlined into its type's driver: a few seconds of gcc per
 * K-quant type, so they live in files that compile in parallel (all in one
 * file took two minutes of one core: docs/BENCHMARKS.md, "Build time").
 * Not for: a file built without the Makefile's *_avx512vnni.c flags.
 *
 * Design: the weight rows are cut in panels of 16 (one per int32 lane); a
 * panel's blocks are unpacked (Q8_0, Q4_K, Q5_K scales: loads and
 * in-register dword transposes; the other types: gathers) into [4-weight
 * group][16 lanes][4 bytes] vectors of unsigned quants plus per-lane
 * scales, a few blocks at a
 * time so that they stay in L1/L2; then MR = 8 activation rows at a time run
 * over them: vpdpbusd of the lane's 4 quants with the row's 4 activations
 * (an embedded broadcast) into that row's accumulator. Lane j of row m's
 * accumulators belongs to output (m, j) alone, and every lane applies the
 * scalar reference's integer sums and float formula in block order, so each
 * output is bitwise quant_vec_dot's, wherever the panel and tile cuts fall.
 */
#ifndef MOE_QUANT_QUANT_GEMM_AVX512VNNI_H
#define MOE_QUANT_QUANT_GEMM_AVX512VNNI_H

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

/* The rows of a panel without gathers (a 16-lane gather costs ~15 cycles on
 * some cores, and a panel's unpacking is paid once for all its activation
 * rows: at the 2-8 rows of an expert in a batch step it was most of the
 * product). rows[j] = the address of the panel's row j (the last real row
 * repeated past nc: those lanes are computed and never stored). */
AI void panel_rows(const uint8_t **rows, const uint8_t *wp, size_t w_stride, int nc) {
#pragma GCC unroll 16
    for (int j = 0; j < NP; j++) rows[j] = wp + (size_t)(j < nc ? j : nc - 1) * w_stride;
}

/* The panel PF_PANELS ahead (NP w_stride contiguous bytes) is fetched into
 * L2 while this one is computed, part i of nparts with block i: a panel's
 * 16 rows are 16 streams, more than the hardware prefetchers follow, and
 * from memory (a model larger than the caches) the products waited on
 * every line (`moe bench qmatmul --n 32768`, 4 rows: 5.5 ms without, 4.5 ms
 * with, 3.5 ms for the same work in cache). */
#define PF_PANELS 2
AI void prefetch_part(const uint8_t *p, size_t bytes, int64_t i, int64_t nparts) {
    const size_t part = (bytes + (size_t)nparts - 1) / (size_t)nparts;
    for (size_t o = part * (size_t)i; o < part * (size_t)(i + 1); o += 64)
        _mm_prefetch((const char *)p + o, _MM_HINT_T1);
}

/* In place: r[q] lane j = (before) r[j] lane q, a 16 x 16 dword transpose
 * (64 shuffles). */
AI void transpose16(__m512i *r) {
    __m512i t[16], u[16];
#pragma GCC unroll 16
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
    }
    /* u[4i + s] chunk c: dword 4c + s of rows 4i..4i+3 */
#pragma GCC unroll 16
    for (int i = 0; i < 4; i++) {
        u[4 * i] = _mm512_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
        u[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
        u[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
        u[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
    }
    /* dword 4c + s of all rows: chunk c of u[s], u[4 + s], u[8 + s], u[12 + s] */
#pragma GCC unroll 16
    for (int s = 0; s < 4; s++) {
        const __m512i ab01 = _mm512_shuffle_i32x4(u[s], u[4 + s], 0x44);
        const __m512i cd01 = _mm512_shuffle_i32x4(u[8 + s], u[12 + s], 0x44);
        const __m512i ab23 = _mm512_shuffle_i32x4(u[s], u[4 + s], 0xee);
        const __m512i cd23 = _mm512_shuffle_i32x4(u[8 + s], u[12 + s], 0xee);
        r[s] = _mm512_shuffle_i32x4(ab01, cd01, 0x88);
        r[4 + s] = _mm512_shuffle_i32x4(ab01, cd01, 0xdd);
        r[8 + s] = _mm512_shuffle_i32x4(ab23, cd23, 0x88);
        r[12 + s] = _mm512_shuffle_i32x4(ab23, cd23, 0xdd);
    }
}

/* v[q] lane j = dword q of the 64 bytes at rows[j] + off (q < 16). */
AI void load_t16(__m512i *v, const uint8_t *const *rows, size_t off) {
#pragma GCC unroll 16
    for (int j = 0; j < NP; j++) v[j] = _mm512_loadu_si512(rows[j] + off);
    transpose16(v);
}

/* v[q] lane j = dword q of the 32 bytes at rows[j] + off (q < 8): rows j and
 * j + 8 share a vector, then an 8 x 8 transpose in each half. */
AI void load_t8(__m512i *v, const uint8_t *const *rows, size_t off) {
    __m512i r[8], t[8], u[8];
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++)
        r[j] = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const void *)(rows[j] + off))),
                                  _mm256_loadu_si256((const void *)(rows[j + 8] + off)), 1);
#pragma GCC unroll 8
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
    }
    /* u[4i + s] chunk c: dword 4 (c & 1) + s of rows 4i..4i+3 (+ 8 if c >= 2) */
#pragma GCC unroll 8
    for (int i = 0; i < 2; i++) {
        u[4 * i] = _mm512_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
        u[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
        u[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
        u[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
    }
    const __m512i lo = _mm512_setr_epi64(0, 1, 8, 9, 4, 5, 12, 13);
    const __m512i hi = _mm512_setr_epi64(2, 3, 10, 11, 6, 7, 14, 15);
#pragma GCC unroll 8
    for (int s = 0; s < 4; s++) {
        v[s] = _mm512_permutex2var_epi64(u[s], lo, u[4 + s]);
        v[4 + s] = _mm512_permutex2var_epi64(u[s], hi, u[4 + s]);
    }
}

/* The driver shared by the types: panels of NP rows, the K range cut in
 * chunks of KC blocks whose unpacked panel (VEC vectors per block) stays in
 * L1/L2, activation rows MR at a time; the running sums live in y between
 * chunks (stored and reloaded unchanged). PACK(pk, wb, idx, mask, prow,
 * off) unpacks one block of the panel: lane j's block at wb + j w_stride
 * (gathers: idx, mask) = prow[j] + off (loads); TILE(mr, pk, nblk, rows, b0,
 * side rows, acc) runs mr rows over nblk blocks. */
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
                const uint8_t *prow[NP];                                                \
                panel_rows(prow, wp, w_stride, nc);                                     \
                for (int b = 0; b < nblk; b++) {                                        \
                    PACK(pk + b * (VEC), wp + (size_t)(b0 + b) * (WBYTES), idx, k,       \
                         prow, (size_t)(b0 + b) * (WBYTES));                            \
                    if (j0 + PF_PANELS * NP < ncols)                                    \
                        prefetch_part(wp + PF_PANELS * NP * w_stride, NP * w_stride, b0 + b, nb); \
                }                                                                       \
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

/* ------------------------------------------------------- K-quant tiles */

/* The K-quant tiles' (tile_k4 below, tile_q6_K) two integer passes over one
 * super-block, for mr activation rows (row r's Q8_K block at rows[r] + off):
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

/* Q4_K and Q5_K: the same scales, mins and tile (their quants differ) */

#define K4_VEC 82 /* 64 kquads, 8 scales, 8 (min, min) pairs, d, dmin */
#define K4_KC 4

/* v[q] lane j = dword q of the 16 bytes at rows[j] + off (q < 4): vector i
 * holds rows i, 4 + i, 8 + i, 12 + i, then a 4 x 4 transpose in each
 * 128-bit chunk. */
AI void load_t4(__m512i *v, const uint8_t *const *rows, size_t off) {
    __m512i r[4];
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        r[i] = _mm512_castsi128_si512(_mm_loadu_si128((const void *)(rows[i] + off)));
        r[i] = _mm512_inserti32x4(r[i], _mm_loadu_si128((const void *)(rows[4 + i] + off)), 1);
        r[i] = _mm512_inserti32x4(r[i], _mm_loadu_si128((const void *)(rows[8 + i] + off)), 2);
        r[i] = _mm512_inserti32x4(r[i], _mm_loadu_si128((const void *)(rows[12 + i] + off)), 3);
    }
    const __m512i t0 = _mm512_unpacklo_epi32(r[0], r[1]), t1 = _mm512_unpackhi_epi32(r[0], r[1]);
    const __m512i t2 = _mm512_unpacklo_epi32(r[2], r[3]), t3 = _mm512_unpackhi_epi32(r[2], r[3]);
    v[0] = _mm512_unpacklo_epi64(t0, t2);
    v[1] = _mm512_unpackhi_epi64(t0, t2);
    v[2] = _mm512_unpacklo_epi64(t1, t3);
    v[3] = _mm512_unpackhi_epi64(t1, t3);
}

/* Scales and mins of a Q4_K/Q5_K panel block into pk[64..81] (the block's
 * first 16 bytes: d, dmin, 12 bytes of 6-bit scales and mins). */
AI void pack_k4_scales(__m512i *pk, const uint8_t *const *prow, size_t off) {
    __m512i h[4];
    load_t4(h, prow, off);
    const __m512i u0 = h[1], u1 = h[2], u2 = h[3];
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
    const __m512i dd = h[0];
    pk[80] = _mm512_castps_si512(half_lanes(dd, 0));
    pk[81] = _mm512_castps_si512(half_lanes(dd, 1));
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

#endif
