/* quant_avx2.c: the AVX2 kernels of the quantized products (internal; the
 * contracts are in quant_simd.h).
 *
 * For: one-row dots for Q4_0 Q8_0 Q4_K Q5_K Q6_K and multi-row products
 * (prefill) for Q4_0 Q4_K Q6_K, on processors with AVX2 but not AVX-512 VNNI.
 * Not for: threading (quant.c), or running on a processor without AVX2 + FMA
 * + F16C: quant.c checks core/cpu.h first. Built with the
 * Makefile's *_avx2.c flags.
 *
 * Exactness (see quant_simd.h): the integer sums use vpmaddubsw (unsigned
 * weights 0..63 times signed activations: a pair is at most 2 * 63 * 128 <
 * 2^15, so it never saturates) and vpmaddwd; Q8_0's signed weights are
 * widened to int16 instead (a sign trick would fail on -128). The float
 * formula of each block is the scalar one, in block order.
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

AI float rd_f32(const uint8_t *p) { float v; memcpy(&v, p, 4); return v; }
AI float h2f(const uint8_t *p) { uint16_t h; memcpy(&h, p, 2); return _cvtsh_ss(h); }

/* One-row dots read their row in address order: fetch the bytes of the
 * block PF_DOT ahead (the hardware prefetchers stop at page boundaries). */
#define PF_DOT 2048
AI void prefetch_ahead(const uint8_t *p, int bytes) {
    for (int o = 0; o < bytes; o += 64) _mm_prefetch((const char *)p + PF_DOT + o, _MM_HINT_T0);
}
AI __m256i ld(const void *p) { return _mm256_loadu_si256((const __m256i *)p); }

AI int hsum8(__m256i s) {
    __m128i t = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
    t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0x4e));
    t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0xb1));
    return _mm_cvtsi128_si32(t);
}

float quant_avx2_dot_q8_0(int64_t n, const void *wv, const void *av) {
    const uint8_t *w = wv, *a = av;
    const int64_t nb = n / QUANT_QK;
    float sumf = 0.0f;
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *wb = w + i * Q8_0_BYTES, *ab = a + i * Q8_0_BYTES;
        prefetch_ahead(wb, Q8_0_BYTES);
        const __m256i wq = ld(wb + 2), aq = ld(ab + 2);
        const __m256i lo = _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm256_castsi256_si128(wq)),
                                             _mm256_cvtepi8_epi16(_mm256_castsi256_si128(aq)));
        const __m256i hi = _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm256_extracti128_si256(wq, 1)),
                                             _mm256_cvtepi8_epi16(_mm256_extracti128_si256(aq, 1)));
        const int sumi = hsum8(_mm256_add_epi32(lo, hi));
        sumf += (float)sumi * (h2f(wb) * h2f(ab));
    }
    return sumf;
}

float quant_avx2_dot_q4_0(int64_t n, const void *wv, const void *av) {
    const uint8_t *w = wv, *a = av;
    const int64_t nb = n / QUANT_QK;
    const __m256i m4 = _mm256_set1_epi8(0x0f), k8 = _mm256_set1_epi8(8);
    const __m256i ones = _mm256_set1_epi16(1);
    float sumf = 0.0f;
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *wb = w + i * Q4_0_BYTES, *ab = a + i * Q8_0_BYTES;
        prefetch_ahead(wb, Q4_0_BYTES);
        const __m128i q = _mm_loadu_si128((const __m128i *)(wb + 2));
        const __m256i wq = _mm256_and_si256(
            _mm256_inserti128_si256(_mm256_castsi128_si256(q), _mm_srli_epi16(q, 4), 1), m4);
        const __m256i aq = ld(ab + 2);
        /* pairs of q a - 8 a: |.| <= 2 * 8 * 128, exact in int16 */
        const __m256i p = _mm256_sub_epi16(_mm256_maddubs_epi16(wq, aq), _mm256_maddubs_epi16(k8, aq));
        const int sumi = hsum8(_mm256_madd_epi16(p, ones));
        sumf += (float)sumi * h2f(wb) * h2f(ab);
    }
    return sumf;
}

/* ---------------------------------------------------------------- K types */

/* Scales and mins of a Q4_K/Q5_K block as bytes 0..7 of two words. */
AI void k4_scales(const uint8_t *s, uint64_t *sc, uint64_t *mn) {
    uint32_t u0, u1, u2;
    memcpy(&u0, s, 4);
    memcpy(&u1, s + 4, 4);
    memcpy(&u2, s + 8, 4);
    const uint32_t lo6 = 0x3f3f3f3fu, lo4 = 0x0f0f0f0fu, lo2 = 0x03030303u;
    *sc = (uint64_t)(u0 & lo6) | (uint64_t)((u2 & lo4) | (((u0 >> 6) & lo2) << 4)) << 32;
    *mn = (uint64_t)(u1 & lo6) | (uint64_t)(((u2 >> 4) & lo4) | (((u1 >> 6) & lo2) << 4)) << 32;
}

/* int16 (m0, m0, m1, m1, ..., m7, m7) against the 16 bsums of Q8_K. */
AI __m256i mins_dup(uint64_t mn) {
    const char x = (char)0x80;
    const __m256i ctl = _mm256_setr_epi8(0, x, 0, x, 1, x, 1, x, 2, x, 2, x, 3, x, 3, x,
                                         4, x, 4, x, 5, x, 5, x, 6, x, 6, x, 7, x, 7, x);
    return _mm256_shuffle_epi8(_mm256_set1_epi64x((long long)mn), ctl);
}

/* One Q4_K / Q5_K block added to sumf; LOAD_GROUP(g) gives the 32 unsigned
 * quants of group g (elements 32g..32g+31). */
#define K4_BLOCK(WB, AB, LOAD_GROUP)                                                     \
    do {                                                                                 \
        uint64_t sc, mn;                                                                 \
        k4_scales((WB) + 4, &sc, &mn);                                                   \
        const int8_t *aq = (const int8_t *)((AB) + 4);                                   \
        __m256i acc = _mm256_setzero_si256();                                            \
        for (int g = 0; g < 8; g++) {                                                    \
            const __m256i q = LOAD_GROUP(g);                                             \
            const __m256i p = _mm256_maddubs_epi16(q, ld(aq + 32 * g));                  \
            const __m256i s = _mm256_set1_epi16((short)((sc >> (8 * g)) & 0xff));       \
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p, s));                        \
        }                                                                                \
        const int isum = hsum8(acc);                                                     \
        const int summ = hsum8(_mm256_madd_epi16(ld((AB) + 260), mins_dup(mn)));         \
        const float da = rd_f32(AB);                                                     \
        const float d = da * h2f(WB);                                                    \
        const float dmin = da * h2f((WB) + 2);                                           \
        sumf += d * (float)isum - dmin * (float)summ;                                    \
    } while (0)

float quant_avx2_dot_q4_K(int64_t n, const void *wv, const void *av) {
    const uint8_t *w = wv, *a = av;
    const int64_t nb = n / QUANT_QK_K;
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    float sumf = 0.0f;
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *wb = w + i * Q4_K_BYTES, *ab = a + i * Q8_K_BYTES;
        prefetch_ahead(wb, Q4_K_BYTES);
        /* group 2c: low nibbles of qs[32c..], 2c + 1: high nibbles */
#define Q4K_GROUP(g) (((g) & 1) ? _mm256_and_si256(_mm256_srli_epi16(ld(wb + 16 + 32 * ((g) >> 1)), 4), m4) \
                                : _mm256_and_si256(ld(wb + 16 + 32 * ((g) >> 1)), m4))
        K4_BLOCK(wb, ab, Q4K_GROUP);
#undef Q4K_GROUP
    }
    return sumf;
}

float quant_avx2_dot_q5_K(int64_t n, const void *wv, const void *av) {
    const uint8_t *w = wv, *a = av;
    const int64_t nb = n / QUANT_QK_K;
    const __m256i m4 = _mm256_set1_epi8(0x0f), one = _mm256_set1_epi8(1);
    float sumf = 0.0f;
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *wb = w + i * Q5_K_BYTES, *ab = a + i * Q8_K_BYTES;
        prefetch_ahead(wb, Q5_K_BYTES);
        const __m256i qh = ld(wb + 16);
        /* bit 4 of element 32g + l is bit g of qh[l] */
#define Q5K_GROUP(g) _mm256_or_si256(                                                      \
            ((g) & 1) ? _mm256_and_si256(_mm256_srli_epi16(ld(wb + 48 + 32 * ((g) >> 1)), 4), m4) \
                      : _mm256_and_si256(ld(wb + 48 + 32 * ((g) >> 1)), m4),              \
            _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, (g)), one), 4))
        K4_BLOCK(wb, ab, Q5K_GROUP);
#undef Q5K_GROUP
    }
    return sumf;
}

float quant_avx2_dot_q6_K(int64_t n, const void *wv, const void *av) {
    const uint8_t *w = wv, *a = av;
    const int64_t nb = n / QUANT_QK_K;
    const __m256i m4 = _mm256_set1_epi8(0x0f), m2 = _mm256_set1_epi8(3);
    /* int16 lanes 0-7: local scale 2k, lanes 8-15: 2k + 1 */
    __m256i ctl[4];
    for (int k = 0; k < 4; k++) {
        const char a0 = (char)(4 * k), a1 = (char)(4 * k + 1), b0 = (char)(4 * k + 2), b1 = (char)(4 * k + 3);
        ctl[k] = _mm256_setr_epi8(a0, a1, a0, a1, a0, a1, a0, a1, a0, a1, a0, a1, a0, a1, a0, a1,
                                  b0, b1, b0, b1, b0, b1, b0, b1, b0, b1, b0, b1, b0, b1, b0, b1);
    }
    float sumf = 0.0f;
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *wb = w + i * Q6_K_BYTES, *ab = a + i * Q8_K_BYTES;
        prefetch_ahead(wb, Q6_K_BYTES);
        const int8_t *aq = (const int8_t *)(ab + 4);
        const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(wb + 192)));
        __m256i acc = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++) {
            const __m256i scb = _mm256_broadcastsi128_si256(
                h ? _mm256_extracti128_si256(sc16, 1) : _mm256_castsi256_si128(sc16));
            const __m256i H = ld(wb + 128 + 32 * h);
            for (int k = 0; k < 4; k++) {
                /* elements 128h + 32k + l: nibble (k >= 2: high) of ql[64h + 32(k&1) + l],
                 * bits 2k, 2k+1 of qh[32h + l]; groups 8h + 2k, 8h + 2k + 1 */
                const __m256i L = ld(wb + 64 * h + 32 * (k & 1));
                const __m256i lo = k >= 2 ? _mm256_and_si256(_mm256_srli_epi16(L, 4), m4)
                                          : _mm256_and_si256(L, m4);
                const __m256i hb = _mm256_and_si256(_mm256_srli_epi16(H, 2 * k), m2);
                const __m256i q = _mm256_or_si256(lo, _mm256_slli_epi16(hb, 4));
                const __m256i p = _mm256_maddubs_epi16(q, ld(aq + 128 * h + 32 * k));
                acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p, _mm256_shuffle_epi8(scb, ctl[k])));
            }
        }
        /* sum (q - 32) a sc = sum q a sc - 32 sum sc bsum */
        const int corr = hsum8(_mm256_madd_epi16(ld(ab + 260), sc16));
        const int isum = hsum8(acc) - 32 * corr;
        sumf += (h2f(wb + 208) * rd_f32(ab)) * (float)isum;
    }
    return sumf;
}

/* ====================================================== multi-row products */

/* As in quant_avx512vnni.c, with 8 weight rows per panel (one per int32
 * lane of a ymm) and 4 activation rows per register tile. A lane's 4-byte
 * group times a broadcast activation group is vpmaddubsw (two pairs, each
 * at most 2 * 63 * 128) then vpmaddwd against (scale, scale), which also
 * applies the group scale. Only the types with unsigned quants of at most 6
 * bits (Q4_0, Q4_K, Q6_K): Q8_0's signed bytes would saturate vpmaddubsw. */

#define NP 8
#define MR 4

AI int32_t rd_i32(const uint8_t *p) { int32_t v; memcpy(&v, p, 4); return v; }
AI __m256i bc(const uint8_t *p) { return _mm256_set1_epi32(rd_i32(p)); }

AI __m256i gat(__m256i idx, __m256i mask, const uint8_t *p) {
    return _mm256_mask_i32gather_epi32(_mm256_setzero_si256(), (const int *)p, idx, mask, 1);
}

/* The fp16 in the low 16 bits of each lane -> 8 floats. */
AI __m256 half8(__m256i v) {
    v = _mm256_and_si256(v, _mm256_set1_epi32(0xffff));
    v = _mm256_permute4x64_epi64(_mm256_packus_epi32(v, v), 0x08);
    return _mm256_cvtph_ps(_mm256_castsi256_si128(v));
}

/* (v, v) int16 pairs from small non-negative or sign-extended int32 lanes. */
AI __m256i pair16(__m256i v) {
    return _mm256_or_si256(_mm256_and_si256(v, _mm256_set1_epi32(0xffff)), _mm256_slli_epi32(v, 16));
}

/* Q4_K panels are unpacked by loads and in-register transposes rather than
 * gathers (an 8-lane gather costs ~10 cycles on some cores, and a panel is
 * unpacked once for all its activation rows: at the few rows of an expert
 * in a batch step it was most of the product). rows[j]: the address of the
 * panel's row j, the last real row repeated past nc (lanes computed and
 * never stored). */
AI void panel_rows(const uint8_t **rows, const uint8_t *wp, size_t w_stride, int nc) {
#pragma GCC unroll 8
    for (int j = 0; j < NP; j++) rows[j] = wp + (size_t)(j < nc ? j : nc - 1) * w_stride;
}

/* v[q] lane j = dword q of the 32 bytes at rows[j] + off (q < 8): an 8 x 8
 * transpose (24 shuffles). */
AI void load_t8(__m256i *v, const uint8_t *const *rows, size_t off) {
    __m256i r[8], t[8], u[8];
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++) r[j] = _mm256_loadu_si256((const void *)(rows[j] + off));
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm256_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
    }
    /* u[4i + s] 128-bit half c: dword 4c + s of rows 4i..4i+3 */
#pragma GCC unroll 2
    for (int i = 0; i < 2; i++) {
        u[4 * i] = _mm256_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
        u[4 * i + 1] = _mm256_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
        u[4 * i + 2] = _mm256_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
        u[4 * i + 3] = _mm256_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
    }
#pragma GCC unroll 4
    for (int s = 0; s < 4; s++) {
        v[s] = _mm256_permute2x128_si256(u[s], u[4 + s], 0x20);
        v[4 + s] = _mm256_permute2x128_si256(u[s], u[4 + s], 0x31);
    }
}

/* v[q] lane j = dword q of the 16 bytes at rows[j] + off (q < 4): rows i
 * and 4 + i share a vector, then a 4 x 4 transpose in each half. */
AI void load_t4(__m256i *v, const uint8_t *const *rows, size_t off) {
    __m256i r[4];
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++)
        r[i] = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const void *)(rows[i] + off))),
                                       _mm_loadu_si128((const void *)(rows[4 + i] + off)), 1);
    const __m256i t0 = _mm256_unpacklo_epi32(r[0], r[1]), t1 = _mm256_unpackhi_epi32(r[0], r[1]);
    const __m256i t2 = _mm256_unpacklo_epi32(r[2], r[3]), t3 = _mm256_unpackhi_epi32(r[2], r[3]);
    v[0] = _mm256_unpacklo_epi64(t0, t2);
    v[1] = _mm256_unpackhi_epi64(t0, t2);
    v[2] = _mm256_unpacklo_epi64(t1, t3);
    v[3] = _mm256_unpackhi_epi64(t1, t3);
}

/* The panel PF_PANELS ahead (NP w_stride contiguous bytes) is fetched into
 * L2 while this one is computed, part i of nparts with block i: a panel's
 * rows are more streams than the hardware prefetchers follow (as in
 * quant_gemm_avx512vnni.h). */
#define PF_PANELS 4
AI void prefetch_part(const uint8_t *p, size_t bytes, int64_t i, int64_t nparts) {
    const size_t part = (bytes + (size_t)nparts - 1) / (size_t)nparts;
    for (size_t o = part * (size_t)i; o < part * (size_t)(i + 1); o += 64)
        _mm_prefetch((const char *)p + o, _MM_HINT_T1);
}

#define GEMM_DRIVER(PACK, TILE, WBYTES, VEC, KC, QKB)                                   \
    do {                                                                                \
        const int64_t nb = n / (QKB);                                                   \
        __m256i pk[(KC) * (VEC)] __attribute__((aligned(32)));                          \
        const __m256i idx = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), \
                                               _mm256_set1_epi32((int)w_stride));       \
        for (int64_t j0 = 0; j0 < ncols; j0 += NP) {                                    \
            const int nc = ncols - j0 < NP ? (int)(ncols - j0) : NP;                    \
            const __m256i k = _mm256_cmpgt_epi32(_mm256_set1_epi32(nc),                 \
                                                 _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)); \
            const uint8_t *wp = w + (size_t)j0 * w_stride;                              \
            const uint8_t *prow[NP];                                                    \
            panel_rows(prow, wp, w_stride, nc);                                         \
            for (int64_t b0 = 0; b0 < nb; b0 += (KC)) {                                 \
                const int nblk = nb - b0 < (KC) ? (int)(nb - b0) : (KC);                \
                for (int b = 0; b < nblk; b++) {                                        \
                    PACK(pk + b * (VEC), wp + (size_t)(b0 + b) * (WBYTES), idx, k,       \
                         prow, (size_t)(b0 + b) * (WBYTES));                            \
                    if (j0 + PF_PANELS * NP < ncols)                                    \
                        prefetch_part(wp + PF_PANELS * NP * w_stride, NP * w_stride, b0 + b, nb); \
                }                                                                       \
                for (int64_t m0 = 0; m0 < M; m0 += MR) {                                \
                    const int mr = M - m0 < MR ? (int)(M - m0) : MR;                    \
                    __m256 acc[MR];                                                     \
                    const uint8_t *rows[MR], *srows[MR];                                \
                    for (int r = 0; r < mr; r++) {                                      \
                        float *yr = y + (m0 + r) * ldy + j0;                            \
                        acc[r] = b0 == 0 ? _mm256_setzero_ps() : _mm256_maskload_ps(yr, k); \
                        rows[r] = a + (size_t)(m0 + r) * a_stride;                      \
                        srows[r] = side ? side + (size_t)(m0 + r) * side_stride : NULL; \
                    }                                                                   \
                    switch (mr) {                                                       \
                    case 1: TILE(1, pk, nblk, rows, srows, b0, nb, acc); break;         \
                    case 2: TILE(2, pk, nblk, rows, srows, b0, nb, acc); break;         \
                    case 3: TILE(3, pk, nblk, rows, srows, b0, nb, acc); break;         \
                    default: TILE(4, pk, nblk, rows, srows, b0, nb, acc); break;        \
                    }                                                                   \
                    for (int r = 0; r < mr; r++)                                        \
                        _mm256_maskstore_ps(y + (m0 + r) * ldy + j0, k, acc[r]);        \
                }                                                                       \
            }                                                                           \
        }                                                                               \
    } while (0)

/* ---------------------------------------------------------- Q4_0 panels */

#define Q4_0_VEC 9
#define Q4_0_KC 32

AI void pack_q4_0(__m256i *pk, const uint8_t *wb, __m256i idx, __m256i k,
                 const uint8_t *const *prow, size_t off) {
    (void)prow;
    (void)off;
    const __m256i m4 = _mm256_set1_epi8(0x0f);
#pragma GCC unroll 4
    for (int t = 0; t < 4; t++) {
        const __m256i g = gat(idx, k, wb + 2 + 4 * t);
        pk[t] = _mm256_and_si256(g, m4);                          /* elements 4t.. */
        pk[t + 4] = _mm256_and_si256(_mm256_srli_epi32(g, 4), m4); /* 16 + 4t.. */
    }
    pk[8] = _mm256_castps_si256(half8(gat(idx, k, wb)));
}

/* side row: int32 block sums of the activations, then their fp32 scales */
AI void tile_q4_0(const int mr, const __m256i *pk, int nblk, const uint8_t *const *rows,
                  const uint8_t *const *srows, int64_t b0, int64_t nb, __m256 *acc) {
    const __m256i ones = _mm256_set1_epi16(1);
    for (int b = 0; b < nblk; b++) {
        const __m256i *p = pk + b * Q4_0_VEC;
        const int64_t blk = b0 + b;
        __m256i s[MR];
#pragma GCC unroll 4
        for (int r = 0; r < mr; r++) s[r] = _mm256_setzero_si256();
#pragma GCC unroll 8
        for (int t = 0; t < 8; t++)
#pragma GCC unroll 4
            for (int r = 0; r < mr; r++)
                s[r] = _mm256_add_epi32(s[r], _mm256_madd_epi16(_mm256_maddubs_epi16(p[t],
                    bc(rows[r] + blk * Q8_0_BYTES + 2 + 4 * t)), ones));
        const __m256 wd = _mm256_castsi256_ps(p[8]);
#pragma GCC unroll 4
        for (int r = 0; r < mr; r++) {
            const int32_t asum = rd_i32(srows[r] + 4 * blk);
            const float ad = rd_f32(srows[r] + 4 * (nb + blk));
            const __m256i sumi = _mm256_sub_epi32(s[r], _mm256_set1_epi32(asum * 8));
            acc[r] = _mm256_add_ps(acc[r], _mm256_mul_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(sumi), wd),
                                                         _mm256_set1_ps(ad)));
        }
    }
}

void quant_avx2_gemm_q4_0(float *y, int64_t ldy, const uint8_t *w, size_t w_stride,
                          int64_t ncols, const uint8_t *a, size_t a_stride,
                          const uint8_t *side, size_t side_stride, int64_t M, int64_t n) {
    GEMM_DRIVER(pack_q4_0, tile_q4_0, Q4_0_BYTES, Q4_0_VEC, Q4_0_KC, QUANT_QK);
}

/* ---------------------------------------------------------- Q4_K panels */

#define K4_VEC 82 /* 64 kquads, 8 (scale, scale), 8 (min, min), d, dmin */
#define K4_KC 8

AI void pack_q4_K(__m256i *pk, const uint8_t *wb, __m256i idx, __m256i k,
                 const uint8_t *const *prow, size_t off) {
    (void)wb;
    (void)idx;
    (void)k;
    const __m256i m4 = _mm256_set1_epi8(0x0f);
#pragma GCC unroll 4
    for (int c = 0; c < 4; c++) {
        __m256i v[8]; /* v[t] lane j: dword 8c + t of row j's quants */
        load_t8(v, prow, off + 16 + 32 * c);
#pragma GCC unroll 8
        for (int t = 0; t < 8; t++) {
            pk[16 * c + t] = _mm256_and_si256(v[t], m4);
            pk[16 * c + 8 + t] = _mm256_and_si256(_mm256_srli_epi32(v[t], 4), m4);
        }
    }
    __m256i h[4]; /* d and dmin, then the 12 bytes of scales and mins */
    load_t4(h, prow, off);
    const __m256i u0 = h[1], u1 = h[2], u2 = h[3];
    const __m256i lo6 = _mm256_set1_epi32(0x3f3f3f3f), lo4 = _mm256_set1_epi32(0x0f0f0f0f);
    const __m256i lo2 = _mm256_set1_epi32(0x03030303), ff = _mm256_set1_epi32(0xff);
    const __m256i sc03 = _mm256_and_si256(u0, lo6), mn03 = _mm256_and_si256(u1, lo6);
    const __m256i sc47 = _mm256_or_si256(_mm256_and_si256(u2, lo4),
        _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(u0, 6), lo2), 4));
    const __m256i mn47 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(u2, 4), lo4),
        _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(u1, 6), lo2), 4));
#pragma GCC unroll 8
    for (int g = 0; g < 8; g++) {
        const int sh = 8 * (g & 3);
        pk[64 + g] = pair16(_mm256_and_si256(_mm256_srli_epi32(g < 4 ? sc03 : sc47, sh), ff));
        pk[72 + g] = pair16(_mm256_and_si256(_mm256_srli_epi32(g < 4 ? mn03 : mn47, sh), ff));
    }
    const __m256i dd = h[0];
    pk[80] = _mm256_castps_si256(half8(dd));
    pk[81] = _mm256_castps_si256(half8(_mm256_srli_epi32(dd, 16)));
}

/* The K-quant tiles' two integer passes over one super-block, for mr
 * activation rows (row r's Q8_K block at rows[r] + off): is[r] = sum over G
 * groups of T maddubs products of the unpacked weights p[T g + t] with the
 * quants, weighted by the group's scale sc[g]; bs[r] = the 8 pair-of-bsum
 * products with bw[0..7]. Exact in int32 (order-free). */
AI void k_isums(const int mr, const __m256i *p, const int G, const int T, const __m256i *sc,
                const __m256i *bw, const uint8_t *const *rows, size_t off, __m256i *is,
                __m256i *bs) {
#pragma GCC unroll 4
    for (int r = 0; r < mr; r++) is[r] = bs[r] = _mm256_setzero_si256();
#pragma GCC unroll 16
    for (int g = 0; g < G; g++)
#pragma GCC unroll 8
        for (int t = 0; t < T; t++)
#pragma GCC unroll 4
            for (int r = 0; r < mr; r++)
                is[r] = _mm256_add_epi32(is[r], _mm256_madd_epi16(_mm256_maddubs_epi16(p[T * g + t],
                    bc(rows[r] + off + 4 + 4 * T * g + 4 * t)), sc[g]));
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++)
#pragma GCC unroll 4
        for (int r = 0; r < mr; r++)
            bs[r] = _mm256_add_epi32(bs[r], _mm256_madd_epi16(bw[i], bc(rows[r] + off + 260 + 4 * i)));
}

AI void tile_q4_K(const int mr, const __m256i *pk, int nblk, const uint8_t *const *rows,
                  const uint8_t *const *srows, int64_t b0, int64_t nb, __m256 *acc) {
    (void)srows;
    (void)nb;
    for (int b = 0; b < nblk; b++) {
        const __m256i *p = pk + b * K4_VEC;
        const size_t off = (size_t)(b0 + b) * Q8_K_BYTES;
        __m256i is[MR], sm[MR];
        k_isums(mr, p, 8, 8, p + 64, p + 72, rows, off, is, sm);
        const __m256 wd = _mm256_castsi256_ps(p[80]), wm = _mm256_castsi256_ps(p[81]);
#pragma GCC unroll 4
        for (int r = 0; r < mr; r++) {
            const __m256 da = _mm256_set1_ps(rd_f32(rows[r] + off));
            const __m256 d = _mm256_mul_ps(da, wd), dmin = _mm256_mul_ps(da, wm);
            acc[r] = _mm256_add_ps(acc[r], _mm256_sub_ps(_mm256_mul_ps(d, _mm256_cvtepi32_ps(is[r])),
                                                         _mm256_mul_ps(dmin, _mm256_cvtepi32_ps(sm[r]))));
        }
    }
}

void quant_avx2_gemm_q4_K(float *y, int64_t ldy, const uint8_t *w, size_t w_stride,
                          int64_t ncols, const uint8_t *a, size_t a_stride,
                          const uint8_t *side, size_t side_stride, int64_t M, int64_t n) {
    GEMM_DRIVER(pack_q4_K, tile_q4_K, Q4_K_BYTES, K4_VEC, K4_KC, QUANT_QK_K);
}

/* ---------------------------------------------------------- Q6_K panels */

#define Q6_VEC 89 /* 64 kquads, 16 (scale, scale), 8 scale pairs, d */
#define Q6_KC 8

AI void pack_q6_K(__m256i *pk, const uint8_t *wb, __m256i idx, __m256i k,
                 const uint8_t *const *prow, size_t off) {
    (void)prow;
    (void)off;
    const __m256i m4 = _mm256_set1_epi8(0x0f), m2 = _mm256_set1_epi8(3);
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++)
#pragma GCC unroll 8
        for (int t = 0; t < 8; t++) {
            const __m256i gh = gat(idx, k, wb + 128 + 32 * h + 4 * t);
#pragma GCC unroll 2
            for (int kk = 0; kk < 2; kk++) {
                const __m256i gl = gat(idx, k, wb + 64 * h + 32 * kk + 4 * t);
#pragma GCC unroll 2
                for (int s = 0; s < 2; s++) {
                    const int kq = kk + 2 * s;
                    const __m256i lo = s ? _mm256_and_si256(_mm256_srli_epi32(gl, 4), m4)
                                         : _mm256_and_si256(gl, m4);
                    const __m256i hi = _mm256_and_si256(_mm256_srli_epi32(gh, 2 * kq), m2);
                    pk[32 * h + 8 * kq + t] = _mm256_or_si256(lo, _mm256_slli_epi32(hi, 4));
                }
            }
        }
    const __m256i lo16 = _mm256_set1_epi32(0xffff);
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        const __m256i s4 = gat(idx, k, wb + 192 + 4 * i);
        __m256i sv[4];
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
            sv[j] = _mm256_srai_epi32(_mm256_slli_epi32(s4, 24 - 8 * j), 24);
            pk[64 + 4 * i + j] = pair16(sv[j]);
        }
        pk[80 + 2 * i] = _mm256_or_si256(_mm256_and_si256(sv[0], lo16), _mm256_slli_epi32(sv[1], 16));
        pk[81 + 2 * i] = _mm256_or_si256(_mm256_and_si256(sv[2], lo16), _mm256_slli_epi32(sv[3], 16));
    }
    pk[88] = _mm256_castps_si256(half8(_mm256_srli_epi32(gat(idx, k, wb + 206), 16)));
}

AI void tile_q6_K(const int mr, const __m256i *pk, int nblk, const uint8_t *const *rows,
                  const uint8_t *const *srows, int64_t b0, int64_t nb, __m256 *acc) {
    (void)srows;
    (void)nb;
    for (int b = 0; b < nblk; b++) {
        const __m256i *p = pk + b * Q6_VEC;
        const size_t off = (size_t)(b0 + b) * Q8_K_BYTES;
        __m256i is[MR], cr[MR];
        k_isums(mr, p, 16, 4, p + 64, p + 80, rows, off, is, cr);
        const __m256 wd = _mm256_castsi256_ps(p[88]);
#pragma GCC unroll 4
        for (int r = 0; r < mr; r++) {
            const __m256i isum = _mm256_sub_epi32(is[r], _mm256_slli_epi32(cr[r], 5));
            const __m256 d = _mm256_mul_ps(wd, _mm256_set1_ps(rd_f32(rows[r] + off)));
            acc[r] = _mm256_add_ps(acc[r], _mm256_mul_ps(d, _mm256_cvtepi32_ps(isum)));
        }
    }
}

void quant_avx2_gemm_q6_K(float *y, int64_t ldy, const uint8_t *w, size_t w_stride,
                          int64_t ncols, const uint8_t *a, size_t a_stride,
                          const uint8_t *side, size_t side_stride, int64_t M, int64_t n) {
    GEMM_DRIVER(pack_q6_K, tile_q6_K, Q6_K_BYTES, Q6_VEC, Q6_KC, QUANT_QK_K);
}
