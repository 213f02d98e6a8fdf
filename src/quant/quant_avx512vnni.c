/* quant_avx512vnni.c: the AVX-512 + VNNI kernels of the quantized products
 * for one activation row (internal; the contracts are in quant_simd.h).
 *
 * For: one-row dots for Q4_0 Q8_0 Q4_K Q5_K Q6_K (quant_vec_dot); the decode
 * case of quant_matmul, several weight rows against one activation row, for
 * Q8_0 and Q4_K (bandwidth bound: software prefetch, rows in address order);
 * the Q8_0 / Q8_K activation quantizers.
 * Not for: the multi-row products of prefill (quant_gemm_*avx512vnni.c),
 * threading or argument checks (quant.c), or running on a processor without
 * AVX-512 F/BW/DQ/VL + VNNI: quant.c checks core/cpu.h first.
 * Built with the Makefile's *_avx512vnni.c flags.
 *
 * Exactness (see quant_simd.h): integer sums per block are exact in any
 * order; the float formula of each block is the scalar one, applied in block
 * order, lane by lane. vpdpbusd multiplies unsigned by signed bytes, so signed
 * weights are offset by 128 (w ^ 0x80) and 128 * (sum of the activations) is
 * taken off again; 4-byte partial sums that fit in int16 get their group
 * scale with vpdpwssd against (scale, 0) pairs.
 */
#include "quant/quant_simd.h"

#include <immintrin.h>
#include <string.h>

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

#define AI static inline __attribute__((always_inline))

AI int32_t rd_i32(const uint8_t *p) { int32_t v; memcpy(&v, p, 4); return v; }
AI float rd_f32(const uint8_t *p) { float v; memcpy(&v, p, 4); return v; }
AI float h2f(const uint8_t *p) { uint16_t h; memcpy(&h, p, 2); return _cvtsh_ss(h); }

/* One-row dots read their row in address order: fetch the bytes of the
 * block PF_DOT ahead (the hardware prefetchers stop at page boundaries). */
#define PF_DOT 2048
AI void prefetch_ahead(const uint8_t *p, int bytes) {
    for (int o = 0; o < bytes; o += 64) _mm_prefetch((const char *)p + PF_DOT + o, _MM_HINT_T0);
}

/* Sum of the 16 lanes (an exact integer sum). */
AI int hsum16(__m512i v) {
    __m256i s = _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1));
    __m128i t = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
    t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0x4e));
    t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0xb1));
    return _mm_cvtsi128_si32(t);
}

AI int hsum8(__m256i s) {
    __m128i t = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
    t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0x4e));
    t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0xb1));
    return _mm_cvtsi128_si32(t);
}

/* 8 vectors whose lanes 0-7 / 8-15 are the partial sums of 16 blocks ->
 * one vector of the 16 block sums, block b in lane b, when vector j holds
 * block lo(j) = (j < 4 ? j : j + 4) in lanes 0-7 and block lo(j) + 4 in 8-15. */
AI __m512i reduce_8x2(const __m512i *p) {
    __m512i r[4], s[2];
    for (int i = 0; i < 4; i++)
        r[i] = _mm512_add_epi32(_mm512_unpacklo_epi32(p[2 * i], p[2 * i + 1]),
                                _mm512_unpackhi_epi32(p[2 * i], p[2 * i + 1]));
    for (int i = 0; i < 2; i++)
        s[i] = _mm512_add_epi32(_mm512_unpacklo_epi64(r[2 * i], r[2 * i + 1]),
                                _mm512_unpackhi_epi64(r[2 * i], r[2 * i + 1]));
    /* s[i] 128-bit chunk c: the chunk-c sums of vectors 4i..4i+3 */
    return _mm512_add_epi32(_mm512_shuffle_i32x4(s[0], s[1], 0x88),
                            _mm512_shuffle_i32x4(s[0], s[1], 0xdd));
}

/* ================================================================ Q8_0 */

#define Q8_0_BYTES 34

/* 32 bytes of block b at offset 2 of a stride-34 row, two blocks per vector. */
AI __m512i load2_q8(const uint8_t *p, int64_t b0, int64_t b1) {
    return _mm512_inserti64x4(
        _mm512_castsi256_si512(_mm256_loadu_si256((const void *)(p + b0 * Q8_0_BYTES + 2))),
        _mm256_loadu_si256((const void *)(p + b1 * Q8_0_BYTES + 2)), 1);
}

/* sum w * a over 4-byte groups, w and a signed: (w + 128) a - 128 a. */
AI __m512i dot_s8(__m512i w, __m512i a) {
    const __m512i k80 = _mm512_set1_epi8((char)0x80);
    const __m512i z = _mm512_setzero_si512();
    return _mm512_sub_epi32(_mm512_dpbusd_epi32(z, _mm512_xor_si512(w, k80), a),
                            _mm512_dpbusd_epi32(z, k80, a));
}

float quant_vnni_dot_q8_0(int64_t n, const void *wv, const void *av) {
    const uint8_t *w = wv, *a = av;
    const int64_t nb = n / QUANT_QK;
    float sumf = 0.0f;
    int64_t i = 0;
    for (; i + 16 <= nb; i += 16) {
        __m512i p[8];
        prefetch_ahead(w + i * Q8_0_BYTES, 16 * Q8_0_BYTES);
        for (int j = 0; j < 8; j++) {
            const int64_t lo = i + (j < 4 ? j : j + 4);
            p[j] = dot_s8(load2_q8(w, lo, lo + 4), load2_q8(a, lo, lo + 4));
        }
        const __m512i sumi = reduce_8x2(p);
        /* the block scales: 16 fp16 at stride 34 */
        const __m512i idx = _mm512_mullo_epi32(
            _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
            _mm512_set1_epi32(Q8_0_BYTES));
        const __m512 wd = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(
            _mm512_i32gather_epi32(idx, w + i * Q8_0_BYTES, 1)));
        const __m512 ad = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(
            _mm512_i32gather_epi32(idx, a + i * Q8_0_BYTES, 1)));
        /* (float)sumi * (wd * ad), then added in block order */
        float t[16];
        _mm512_storeu_ps(t, _mm512_mul_ps(_mm512_cvtepi32_ps(sumi), _mm512_mul_ps(wd, ad)));
        for (int j = 0; j < 16; j++) sumf += t[j];
    }
    for (; i < nb; i++) {
        const __m256i wq = _mm256_loadu_si256((const void *)(w + i * Q8_0_BYTES + 2));
        const __m256i aq = _mm256_loadu_si256((const void *)(a + i * Q8_0_BYTES + 2));
        const __m256i k80 = _mm256_set1_epi8((char)0x80), z = _mm256_setzero_si256();
        const __m256i s = _mm256_sub_epi32(_mm256_dpbusd_epi32(z, _mm256_xor_si256(wq, k80), aq),
                                           _mm256_dpbusd_epi32(z, k80, aq));
        const int sumi = hsum8(s);
        sumf += (float)sumi * (h2f(w + i * Q8_0_BYTES) * h2f(a + i * Q8_0_BYTES));
    }
    return sumf;
}

/* ================================================================ Q4_0 */

#define Q4_0_BYTES 18

float quant_vnni_dot_q4_0(int64_t n, const void *wv, const void *av) {
    const uint8_t *w = wv, *a = av;
    const int64_t nb = n / QUANT_QK;
    const __m256i m4 = _mm256_set1_epi8(0x0f), k8 = _mm256_set1_epi8(8);
    const __m256i z = _mm256_setzero_si256();
    float sumf = 0.0f;
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *wb = w + i * Q4_0_BYTES, *ab = a + i * Q8_0_BYTES;
        prefetch_ahead(wb, Q4_0_BYTES);
        const __m128i q = _mm_loadu_si128((const void *)(wb + 2));
        /* elements 0-15: low nibbles, 16-31: high nibbles (unsigned 0..15) */
        const __m256i wq = _mm256_and_si256(
            _mm256_inserti128_si256(_mm256_castsi128_si256(q), _mm_srli_epi16(q, 4), 1), m4);
        const __m256i aq = _mm256_loadu_si256((const void *)(ab + 2));
        /* sum (q - 8) a = sum q a - 8 sum a */
        const __m256i s = _mm256_sub_epi32(_mm256_dpbusd_epi32(z, wq, aq),
                                           _mm256_dpbusd_epi32(z, k8, aq));
        const int sumi = hsum8(s);
        sumf += (float)sumi * h2f(wb) * h2f(ab);
    }
    return sumf;
}

/* ================================================================ Q4_K */

#define Q4_K_BYTES 144
#define Q5_K_BYTES 176
#define Q6_K_BYTES 210
#define Q8_K_BYTES 292

/* The 8 6-bit scales (*sc) and mins (*mn) of a Q4_K/Q5_K block as bytes
 * 0..7 of a 64-bit word (quant_k4_scale_min, four at a time). */
AI void k4_scales(const uint8_t *s, uint64_t *sc, uint64_t *mn) {
    uint32_t u0, u1, u2;
    memcpy(&u0, s, 4);
    memcpy(&u1, s + 4, 4);
    memcpy(&u2, s + 8, 4);
    const uint32_t lo6 = 0x3f3f3f3fu, lo4 = 0x0f0f0f0fu, lo2 = 0x03030303u;
    *sc = (uint64_t)(u0 & lo6) | (uint64_t)((u2 & lo4) | (((u0 >> 6) & lo2) << 4)) << 32;
    *mn = (uint64_t)(u1 & lo6) | (uint64_t)(((u2 >> 4) & lo4) | (((u1 >> 6) & lo2) << 4)) << 32;
}

/* pshufb controls that turn a 64-bit word of 8 scale bytes (repeated in
 * every 64 bits of a vector) into (scale, 0) int16 pairs per lane: ctl[c]
 * gives lanes 0-7 byte 2c and lanes 8-15 byte 2c + 1. */
AI void scale_ctls(__m512i ctl[4]) {
    for (int c = 0; c < 4; c++)
        ctl[c] = _mm512_mask_blend_epi32(0xff00, _mm512_set1_epi32((int)(0x80808000u | (unsigned)(2 * c))),
                                         _mm512_set1_epi32((int)(0x80808000u | (unsigned)(2 * c + 1))));
}

/* The mins as int16 (m0, m0, m1, m1, ..., m7, m7) for vpmaddwd against the
 * 16 int16 bsums of Q8_K (whose pairs 2g, 2g+1 make group g's sum). */
AI __m256i mins_dup(uint64_t mn) {
    const char x = (char)0x80;
    const __m256i ctl = _mm256_setr_epi8(0, x, 0, x, 1, x, 1, x, 2, x, 2, x, 3, x, 3, x,
                                         4, x, 4, x, 5, x, 5, x, 6, x, 6, x, 7, x, 7, x);
    return _mm256_shuffle_epi8(_mm256_set1_epi64x((long long)mn), ctl);
}

/* One Q4_K/Q5_K block's isum (sum over groups of scale * group sum) from its
 * four 64-weight vectors W[c] (groups 2c, 2c+1 in natural element order). */
AI int k4_isum(const __m512i *W, const int8_t *aq, uint64_t sc, const __m512i *ctl) {
    const __m512i z = _mm512_setzero_si512();
    const __m512i scv = _mm512_set1_epi64((long long)sc);
    __m512i p[4];
#pragma GCC unroll 4
    for (int c = 0; c < 4; c++) p[c] = _mm512_dpbusd_epi32(z, W[c], _mm512_loadu_si512(aq + 64 * c));
    /* |p| <= 4 * 31 * 128 fits int16: p * scale with one vpdpwssd */
    __m512i acc0 = _mm512_dpwssd_epi32(z, p[0], _mm512_shuffle_epi8(scv, ctl[0]));
    __m512i acc1 = _mm512_dpwssd_epi32(z, p[1], _mm512_shuffle_epi8(scv, ctl[1]));
    acc0 = _mm512_dpwssd_epi32(acc0, p[2], _mm512_shuffle_epi8(scv, ctl[2]));
    acc1 = _mm512_dpwssd_epi32(acc1, p[3], _mm512_shuffle_epi8(scv, ctl[3]));
    return hsum16(_mm512_add_epi32(acc0, acc1));
}

AI int k4_summ(const uint8_t *bsums, uint64_t mn) {
    const __m256i bs = _mm256_loadu_si256((const void *)bsums);
    return hsum8(_mm256_madd_epi16(bs, mins_dup(mn)));
}

/* One Q4_K / Q5_K super-block's term, as the scalar dot_k4 forms it:
 * d * isum - dmin * summ with d = da * d_w, dmin = da * dmin_w. */
AI float k4_block(const __m512i *W, const uint8_t *wb, const uint8_t *ab, uint64_t sc,
                  uint64_t mn, const __m512i *ctl) {
    const int isum = k4_isum(W, (const int8_t *)(ab + 4), sc, ctl);
    const int summ = k4_summ(ab + 260, mn);
    const float da = rd_f32(ab);
    const float d = da * h2f(wb);
    const float dmin = da * h2f(wb + 2);
    return d * (float)isum - dmin * (float)summ;
}

float quant_vnni_dot_q4_K(int64_t n, const void *wv, const void *av) {
    const uint8_t *w = wv, *a = av;
    const int64_t nb = n / QUANT_QK_K;
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    __m512i ctl[4];
    scale_ctls(ctl);
    float sumf = 0.0f;
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *wb = w + i * Q4_K_BYTES, *ab = a + i * Q8_K_BYTES;
        prefetch_ahead(wb, Q4_K_BYTES);
        uint64_t sc, mn;
        k4_scales(wb + 4, &sc, &mn);
        __m512i W[4];
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            /* bytes of chunks 2h, 2h+1: low nibbles = groups 4h, 4h+2, high
             * nibbles = groups 4h+1, 4h+3 (32 each) */
            const __m512i q = _mm512_loadu_si512(wb + 16 + 64 * h);
            const __m512i lo = _mm512_and_si512(q, m4);
            const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), m4);
            W[2 * h] = _mm512_shuffle_i64x2(lo, hi, 0x44);
            W[2 * h + 1] = _mm512_shuffle_i64x2(lo, hi, 0xee);
        }
        sumf += k4_block(W, wb, ab, sc, mn, ctl);
    }
    return sumf;
}

float quant_vnni_dot_q5_K(int64_t n, const void *wv, const void *av) {
    const uint8_t *w = wv, *a = av;
    const int64_t nb = n / QUANT_QK_K;
    const __m512i m4 = _mm512_set1_epi8(0x0f), one = _mm512_set1_epi8(1);
    __m512i ctl[4];
    scale_ctls(ctl);
    float sumf = 0.0f;
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *wb = w + i * Q5_K_BYTES, *ab = a + i * Q8_K_BYTES;
        prefetch_ahead(wb, Q5_K_BYTES);
        uint64_t sc, mn;
        k4_scales(wb + 4, &sc, &mn);
        /* bit 4 of element 32g + l is bit g of qh[l] */
        const __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256((const void *)(wb + 16)));
        __m512i W[4];
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            const __m512i q = _mm512_loadu_si512(wb + 48 + 64 * h);
            const __m512i lo = _mm512_and_si512(q, m4);
            const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), m4);
#pragma GCC unroll 2
            for (int s = 0; s < 2; s++) {
                const int g = 4 * h + 2 * s; /* groups g (lanes 0-31), g + 1 */
                const __m512i shift = _mm512_set_epi64(g + 1, g + 1, g + 1, g + 1, g, g, g, g);
                const __m512i bit = _mm512_and_si512(_mm512_srlv_epi64(qh, shift), one);
                const __m512i v = s ? _mm512_shuffle_i64x2(lo, hi, 0xee) : _mm512_shuffle_i64x2(lo, hi, 0x44);
                W[2 * h + s] = _mm512_or_si512(v, _mm512_slli_epi64(bit, 4));
            }
        }
        sumf += k4_block(W, wb, ab, sc, mn, ctl);
    }
    return sumf;
}

/* ================================================================ Q6_K */

float quant_vnni_dot_q6_K(int64_t n, const void *wv, const void *av) {
    const uint8_t *w = wv, *a = av;
    const int64_t nb = n / QUANT_QK_K;
    const __m512i m4 = _mm512_set1_epi8(0x0f), m2 = _mm512_set1_epi8(3);
    const __m512i z = _mm512_setzero_si512();
    /* 16-bit lanes 0-15 / 16-31 shifted by s0 / s1 */
    const __m512i sh01 = _mm512_set_epi64(2, 2, 2, 2, 0, 0, 0, 0);
    const __m512i sh23 = _mm512_set_epi64(6, 6, 6, 6, 4, 4, 4, 4);
    float sumf = 0.0f;
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *wb = w + i * Q6_K_BYTES, *ab = a + i * Q8_K_BYTES;
        prefetch_ahead(wb, Q6_K_BYTES);
        const int8_t *aq = (const int8_t *)(ab + 4);
        const __m128i sc8 = _mm_loadu_si128((const void *)(wb + 192));
        const __m256i sc16 = _mm256_cvtepi8_epi16(sc8);
        /* lane l of T: (scale l, 0) as an int16 pair */
        const __m512i T = _mm512_cvtepu16_epi32(sc16);
        __m512i acc = z;
        for (int h = 0; h < 2; h++) {
            const __m512i L = _mm512_loadu_si512(wb + 64 * h);
            const __m512i H = _mm512_broadcast_i64x4(_mm256_loadu_si256((const void *)(wb + 128 + 32 * h)));
            /* elements 128h + 0..63: low nibbles, bits 0-1 / 2-3 of qh;
             * 128h + 64..127: high nibbles, bits 4-5 / 6-7 */
            const __m512i h01 = _mm512_and_si512(_mm512_srlv_epi64(H, sh01), m2);
            const __m512i h23 = _mm512_and_si512(_mm512_srlv_epi64(H, sh23), m2);
            const __m512i q0 = _mm512_or_si512(_mm512_and_si512(L, m4), _mm512_slli_epi64(h01, 4));
            const __m512i q1 = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi64(L, 4), m4),
                                               _mm512_slli_epi64(h23, 4));
            for (int s = 0; s < 2; s++) {
                const int v = 2 * h + s; /* elements 64v..64v+63, groups 4v..4v+3 */
                const __m512i p = _mm512_dpbusd_epi32(z, s ? q1 : q0,
                                                      _mm512_loadu_si512(aq + 64 * v));
                const __m512i idx = _mm512_set_epi32(
                    4 * v + 3, 4 * v + 3, 4 * v + 3, 4 * v + 3, 4 * v + 2, 4 * v + 2, 4 * v + 2, 4 * v + 2,
                    4 * v + 1, 4 * v + 1, 4 * v + 1, 4 * v + 1, 4 * v, 4 * v, 4 * v, 4 * v);
                /* |p| <= 4 * 63 * 128 fits int16 */
                acc = _mm512_dpwssd_epi32(acc, p, _mm512_permutexvar_epi32(idx, T));
            }
        }
        /* sum (q - 32) a sc = sum q a sc - 32 sum sc bsum */
        const __m256i bs = _mm256_loadu_si256((const void *)(ab + 260));
        const int corr = hsum8(_mm256_madd_epi16(bs, sc16));
        const int isum = hsum16(acc) - 32 * corr;
        sumf += (h2f(wb + 208) * rd_f32(ab)) * (float)isum;
    }
    return sumf;
}

/* ========================================== several weight rows, one row */

/* The decode case: out[r] = dot(w + r * w_stride, a) for r < nr, four
 * weight rows at a time against one activation row, so that the activation
 * vectors are shared and the four rows' block formulas run in the lanes of
 * one 128-bit vector (lane r holds row r's running sum, added block after
 * block as the scalar code does). The rows lie one after the other and are
 * read in address order, so each block is prefetched PF_ROWS bytes ahead in
 * that stream (the hardware prefetchers stop at page boundaries). */
#define PF_ROWS 8192

/* acc[4] -> lane r = the sum of the lanes of acc[r]. */
AI __m128i reduce4_16(const __m512i *acc) {
    const __m512i r0 = _mm512_add_epi32(_mm512_unpacklo_epi32(acc[0], acc[1]),
                                        _mm512_unpackhi_epi32(acc[0], acc[1]));
    const __m512i r1 = _mm512_add_epi32(_mm512_unpacklo_epi32(acc[2], acc[3]),
                                        _mm512_unpackhi_epi32(acc[2], acc[3]));
    const __m512i s = _mm512_add_epi32(_mm512_unpacklo_epi64(r0, r1), _mm512_unpackhi_epi64(r0, r1));
    const __m512i t = _mm512_add_epi32(s, _mm512_shuffle_i32x4(s, s, 0x4e));
    return _mm_add_epi32(_mm512_castsi512_si128(t), _mm512_extracti32x4_epi32(t, 1));
}

/* sm[4] -> lane r = the sum of the lanes of sm[r]. */
AI __m128i reduce4_8(const __m256i *sm) {
    const __m256i r0 = _mm256_add_epi32(_mm256_unpacklo_epi32(sm[0], sm[1]),
                                        _mm256_unpackhi_epi32(sm[0], sm[1]));
    const __m256i r1 = _mm256_add_epi32(_mm256_unpacklo_epi32(sm[2], sm[3]),
                                        _mm256_unpackhi_epi32(sm[2], sm[3]));
    const __m256i s = _mm256_add_epi32(_mm256_unpacklo_epi64(r0, r1), _mm256_unpackhi_epi64(r0, r1));
    return _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
}

/* The four rows of a group (the last one repeated when nr runs out) and the
 * gather offsets of their blocks from the first. */
AI __m128i group_rows(const uint8_t *w, size_t w_stride, int64_t r0, int64_t nr,
                      const uint8_t **wr) {
    int64_t off[4];
    for (int j = 0; j < 4; j++) {
        const int64_t r = r0 + j < nr ? r0 + j : nr - 1;
        wr[j] = w + (size_t)r * w_stride;
        off[j] = (r - r0) * (int64_t)w_stride;
    }
    return _mm_setr_epi32((int)off[0], (int)off[1], (int)off[2], (int)off[3]);
}

AI void store_rows(float *out, int64_t r0, int64_t nr, __m128 v) {
    const int cnt = nr - r0 < 4 ? (int)(nr - r0) : 4;
    _mm_mask_storeu_ps(out + r0, (__mmask8)((1u << cnt) - 1u), v);
}

void quant_vnni_rows_q8_0(float *out, const uint8_t *w, size_t w_stride, int64_t nr,
                          const void *av, int64_t n) {
    const uint8_t *a = av;
    const int64_t nb = n / QUANT_QK;
    const __m512i k80 = _mm512_set1_epi8((char)0x80), z = _mm512_setzero_si512();
    /* lanes (0, 8, 1, 9): row 0, 1, 2, 3 after the reduction below */
    const __m512i pick = _mm512_setr_epi32(0, 8, 1, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
    const size_t ahead = PF_ROWS;
    for (int64_t r0 = 0; r0 < nr; r0 += 4) {
        const uint8_t *wr[4];
        const __m128i idx = group_rows(w, w_stride, r0, nr, wr);
        __m128 sumf = _mm_setzero_ps();
        for (int64_t i = 0; i < nb; i++) {
            const uint8_t *ab = a + i * Q8_0_BYTES;
            const size_t o = (size_t)i * Q8_0_BYTES;
#pragma GCC unroll 4
            for (int j = 0; j < 4; j++) _mm_prefetch((const char *)wr[j] + ahead + o, _MM_HINT_T0);
            const __m512i A = _mm512_broadcast_i64x4(_mm256_loadu_si256((const void *)(ab + 2)));
            const __m512i corr = _mm512_dpbusd_epi32(z, k80, A); /* 128 * a, per 4 bytes */
            const __m512i w01 = _mm512_xor_si512(_mm512_inserti64x4(_mm512_castsi256_si512(
                _mm256_loadu_si256((const void *)(wr[0] + o + 2))), _mm256_loadu_si256((const void *)(wr[1] + o + 2)), 1), k80);
            const __m512i w23 = _mm512_xor_si512(_mm512_inserti64x4(_mm512_castsi256_si512(
                _mm256_loadu_si256((const void *)(wr[2] + o + 2))), _mm256_loadu_si256((const void *)(wr[3] + o + 2)), 1), k80);
            const __m512i p01 = _mm512_sub_epi32(_mm512_dpbusd_epi32(z, w01, A), corr);
            const __m512i p23 = _mm512_sub_epi32(_mm512_dpbusd_epi32(z, w23, A), corr);
            /* lanes 0-7 / 8-15 of p01: rows 0 / 1; of p23: rows 2 / 3 */
            const __m512i x = _mm512_add_epi32(_mm512_unpacklo_epi32(p01, p23), _mm512_unpackhi_epi32(p01, p23));
            const __m512i y = _mm512_add_epi32(x, _mm512_shuffle_epi32(x, 0x4e));
            const __m512i t = _mm512_add_epi32(y, _mm512_shuffle_i32x4(y, y, 0xb1));
            const __m128i sumi = _mm512_castsi512_si128(_mm512_permutexvar_epi32(pick, t));
            const __m128 wd = _mm_cvtph_ps(_mm_cvtepi32_epi16(_mm_i32gather_epi32((const int *)(wr[0] + o), idx, 1)));
            /* (float)sumi * (wd * ad), lane by lane */
            const __m128 prod = _mm_mul_ps(wd, _mm_set1_ps(h2f(ab)));
            sumf = _mm_add_ps(sumf, _mm_mul_ps(_mm_cvtepi32_ps(sumi), prod));
        }
        store_rows(out, r0, nr, sumf);
    }
}

void quant_vnni_rows_q4_K(float *out, const uint8_t *w, size_t w_stride, int64_t nr,
                          const void *av, int64_t n) {
    const uint8_t *a = av;
    const int64_t nb = n / QUANT_QK_K;
    const __m512i m4 = _mm512_set1_epi8(0x0f), z = _mm512_setzero_si512();
    /* pshufb controls: (scale, 0) pairs of groups (0, 2), (1, 3), (4, 6), (5, 7)
     * in lanes 0-7 / 8-15, matching the nibble vectors below */
    __m512i ctl[4];
    for (int v = 0; v < 4; v++) {
        const unsigned g = (unsigned)(4 * (v >> 1) + (v & 1));
        ctl[v] = _mm512_mask_blend_epi32(0xff00, _mm512_set1_epi32((int)(0x80808000u | g)),
                                         _mm512_set1_epi32((int)(0x80808000u | (g + 2))));
    }
    const size_t ahead = PF_ROWS;
    for (int64_t r0 = 0; r0 < nr; r0 += 4) {
        const uint8_t *wr[4];
        const __m128i idx = group_rows(w, w_stride, r0, nr, wr);
        __m128 sumf = _mm_setzero_ps();
        for (int64_t i = 0; i < nb; i++) {
            const uint8_t *ab = a + i * Q8_K_BYTES;
            const size_t o = (size_t)i * Q4_K_BYTES;
            /* activations regrouped to match the nibbles: (k 0-31 | 64-95),
             * (32-63 | 96-127), (128-159 | 192-223), (160-191 | 224-255) */
            const __m512i a0 = _mm512_loadu_si512(ab + 4), a1 = _mm512_loadu_si512(ab + 68);
            const __m512i a2 = _mm512_loadu_si512(ab + 132), a3 = _mm512_loadu_si512(ab + 196);
            const __m512i X[4] = {_mm512_shuffle_i64x2(a0, a1, 0x44), _mm512_shuffle_i64x2(a0, a1, 0xee),
                                  _mm512_shuffle_i64x2(a2, a3, 0x44), _mm512_shuffle_i64x2(a2, a3, 0xee)};
            const __m256i bs = _mm256_loadu_si256((const void *)(ab + 260));
            __m512i acc[4];
            __m256i sm[4];
#pragma GCC unroll 4
            for (int j = 0; j < 4; j++) {
                const uint8_t *wb = wr[j] + o;
                _mm_prefetch((const char *)wb + ahead, _MM_HINT_T0);
                _mm_prefetch((const char *)wb + ahead + 64, _MM_HINT_T0);
                _mm_prefetch((const char *)wb + ahead + 128, _MM_HINT_T0);
                uint64_t sc, mn;
                k4_scales(wb + 4, &sc, &mn);
                const __m512i q01 = _mm512_loadu_si512(wb + 16), q23 = _mm512_loadu_si512(wb + 80);
                /* low nibbles of qs[0..63]: groups 0 | 2; high: 1 | 3; then 4 | 6, 5 | 7 */
                const __m512i W0 = _mm512_and_si512(q01, m4);
                const __m512i W1 = _mm512_and_si512(_mm512_srli_epi16(q01, 4), m4);
                const __m512i W2 = _mm512_and_si512(q23, m4);
                const __m512i W3 = _mm512_and_si512(_mm512_srli_epi16(q23, 4), m4);
                const __m512i scv = _mm512_set1_epi64((long long)sc);
                /* |p| <= 4 * 15 * 128 fits int16: times the group scale by vpdpwssd */
                __m512i s0 = _mm512_dpwssd_epi32(z, _mm512_dpbusd_epi32(z, W0, X[0]), _mm512_shuffle_epi8(scv, ctl[0]));
                __m512i s1 = _mm512_dpwssd_epi32(z, _mm512_dpbusd_epi32(z, W1, X[1]), _mm512_shuffle_epi8(scv, ctl[1]));
                s0 = _mm512_dpwssd_epi32(s0, _mm512_dpbusd_epi32(z, W2, X[2]), _mm512_shuffle_epi8(scv, ctl[2]));
                s1 = _mm512_dpwssd_epi32(s1, _mm512_dpbusd_epi32(z, W3, X[3]), _mm512_shuffle_epi8(scv, ctl[3]));
                acc[j] = _mm512_add_epi32(s0, s1);
                sm[j] = _mm256_madd_epi16(bs, mins_dup(mn));
            }
            const __m128i isum = reduce4_16(acc), summ = reduce4_8(sm);
            const __m128i dd = _mm_i32gather_epi32((const int *)(wr[0] + o), idx, 1);
            const __m128 wd = _mm_cvtph_ps(_mm_cvtepi32_epi16(dd));
            const __m128 wm = _mm_cvtph_ps(_mm_cvtepi32_epi16(_mm_srli_epi32(dd, 16)));
            const __m128 da = _mm_set1_ps(rd_f32(ab));
            const __m128 d = _mm_mul_ps(da, wd), dmin = _mm_mul_ps(da, wm);
            sumf = _mm_add_ps(sumf, _mm_sub_ps(_mm_mul_ps(d, _mm_cvtepi32_ps(isum)),
                                               _mm_mul_ps(dmin, _mm_cvtepi32_ps(summ))));
        }
        store_rows(out, r0, nr, sumf);
    }
}

/* ================================================= activation quantizers */

/* 16 vectors -> one vector whose lane j is the sum of the lanes of v[j]. */
AI __m512i reduce_16x16(const __m512i *v) {
    __m512i r[8], s[4], t[2];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++)
        r[i] = _mm512_add_epi32(_mm512_unpacklo_epi32(v[2 * i], v[2 * i + 1]),
                                _mm512_unpackhi_epi32(v[2 * i], v[2 * i + 1]));
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++)
        s[i] = _mm512_add_epi32(_mm512_unpacklo_epi64(r[2 * i], r[2 * i + 1]),
                                _mm512_unpackhi_epi64(r[2 * i], r[2 * i + 1]));
    /* s[i] chunk c: the chunk-c sums of v[4i..4i+3] */
#pragma GCC unroll 2
    for (int i = 0; i < 2; i++)
        t[i] = _mm512_add_epi32(_mm512_shuffle_i32x4(s[2 * i], s[2 * i + 1], 0x88),
                                _mm512_shuffle_i32x4(s[2 * i], s[2 * i + 1], 0xdd));
    /* t[i] chunks: halves of v[8i..8i+3], v[8i..8i+3], v[8i+4..], v[8i+4..] */
    return _mm512_add_epi32(_mm512_shuffle_i32x4(t[0], t[1], 0x88),
                            _mm512_shuffle_i32x4(t[0], t[1], 0xdd));
}

/* quant_quant_q8_K: iscale = -127 / (first value of largest magnitude),
 * q = min(127, nearest(iscale x)) with the 1.5 * 2^23 trick, d = 1 / iscale,
 * sums of each 16 quants; an all-zero block, or one whose largest magnitude
 * is so small that -127 / it overflows, is all zero. */
void quant_vnni_act_q8_K(const float *x, void *dst, int64_t n) {
    uint8_t *out = dst;
    const __m512 magic = _mm512_set1_ps(12582912.f);
    const __m512i mant = _mm512_set1_epi32(0x007fffff), half = _mm512_set1_epi32(0x00400000);
    const __m512i q127 = _mm512_set1_epi32(127);
    for (int64_t b = 0; b < n / QUANT_QK_K; b++, x += QUANT_QK_K, out += Q8_K_BYTES) {
        __m512 v[16];
        __m512 vmax = _mm512_setzero_ps();
#pragma GCC unroll 16
        for (int i = 0; i < 16; i++) {
            v[i] = _mm512_loadu_ps(x + 16 * i);
            vmax = _mm512_max_ps(vmax, _mm512_abs_ps(v[i]));
        }
        const float amax = _mm512_reduce_max_ps(vmax);
        float max = 0.0f;
        for (int i = 0; i < 16 && amax != 0.0f; i++) {
            const __mmask16 m = _mm512_cmp_ps_mask(_mm512_abs_ps(v[i]), _mm512_set1_ps(amax), _CMP_EQ_OQ);
            if (m) { max = x[16 * i + __builtin_ctz(m)]; break; }
        }
        const float iscale = max != 0.0f ? -127.f / max : 0.0f;
        if (iscale == 0.0f || quant_isinf(iscale)) {
            memset(out, 0, Q8_K_BYTES);
            continue;
        }
        const __m512 is = _mm512_set1_ps(iscale);
        __m512i q[16];
#pragma GCC unroll 16
        for (int i = 0; i < 16; i++) {
            const __m512 t = _mm512_add_ps(_mm512_mul_ps(is, v[i]), magic);
            q[i] = _mm512_min_epi32(_mm512_sub_epi32(_mm512_and_si512(_mm512_castps_si512(t), mant), half), q127);
            _mm_storeu_si128((__m128i *)(out + 4 + 16 * i), _mm512_cvtepi32_epi8(q[i]));
        }
        _mm256_storeu_si256((__m256i *)(out + 260), _mm512_cvtepi32_epi16(reduce_16x16(q)));
        const float d = 1.0f / iscale;
        memcpy(out, &d, 4);
    }
}

/* quant_q8_0: d = amax / 127, id = quant_inv_scale(d), q = roundf(x id)
 * (to nearest, ties away from zero: trunc, then one step away when the
 * exact fraction is at least 1/2), fp16 d. */
void quant_vnni_act_q8_0(const float *x, void *dst, int64_t n) {
    uint8_t *out = dst;
    const __m512 halfv = _mm512_set1_ps(0.5f), one = _mm512_set1_ps(1.0f);
    for (int64_t b = 0; b < n / QUANT_QK; b++, x += QUANT_QK, out += Q8_0_BYTES) {
        const __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
        const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
        const float d = amax / 127;
        const float id = quant_inv_scale(d);
        quant_wr16(out, quant_fp32_to_fp16(d));
        const __m512 idv = _mm512_set1_ps(id);
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            const __m512 s = _mm512_mul_ps(h ? v1 : v0, idv);
            const __m512 t = _mm512_roundscale_ps(s, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
            const __mmask16 up = _mm512_cmp_ps_mask(_mm512_abs_ps(_mm512_sub_ps(s, t)), halfv, _CMP_GE_OQ);
            /* one step away from zero: +-1 with the sign of s */
            const __m512 step = _mm512_or_ps(one, _mm512_and_ps(s, _mm512_set1_ps(-0.0f)));
            const __m512 r = _mm512_mask_add_ps(t, up, t, step);
            _mm_storeu_si128((__m128i *)(out + 2 + 16 * h), _mm512_cvtepi32_epi8(_mm512_cvttps_epi32(r)));
        }
    }
}
