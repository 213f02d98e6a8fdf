/* quant_k.c: the K types (256-weight super-blocks): Q2_K, Q3_K, Q4_K, Q5_K,
 * Q6_K and the activation type Q8_K. Dequantizers bit-exact with ggml's
 * reference; dot products against Q8_K with integer sums per group; and
 * quantizers of our own that search each group's scale (and min).
 *
 * Not for: the 32-weight types (quant.c), SIMD, importance-weighted
 * quantization (imatrix). The layouts are described in quant.h.
 */
#include "quant/quant.h"
#include "quant/quant_k_lanes.h"

#include <math.h>
#include <stddef.h>
#include <string.h>

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

#define QK QUANT_QK_K

/* Rounds v after clamping it to [lo, hi] (so no overflow, NaN gives lo). */
static inline int round_clamp(float v, int lo, int hi) {
    if (!(v >= (float)lo)) return lo;
    if (v > (float)hi) return hi;
    return quant_nearest_int(v);
}

static inline int16_t rd_i16(const uint8_t *p) { return (int16_t)quant_rd16(p); }

/* Q8_K's fp32 scale. */
static inline float q8k_d(const quant_block_q8_K *b) { return quant_bits_to_f32(quant_rd32(b->d)); }

/* ------------------------------------------------------------ dequantize */

/* The 2-bit field of element e (0..255) in the qs[64] of Q2_K / Q3_K:
 * e = 128h + 32j + l lies in byte 32h + l at bits 2j..2j+1. */
static inline int q2_bits(const uint8_t *qs, int e) {
    const int h = e >> 7, j = (e >> 5) & 3, l = e & 31;
    return (qs[32 * h + l] >> (2 * j)) & 3;
}

/* Q3_K: the high-bit mask bit of element e is bit (e / 32) of hmask[e % 32]. */
static inline int q3_value(const quant_block_q3_K *b, int e) {
    const int hi = (b->hmask[e & 31] >> (e >> 5)) & 1;
    return q2_bits(b->qs, e) - (hi ? 0 : 4);
}

/* Q4_K / Q5_K: the low 4 bits of element e = 64c + 32s + l (s = 0 low nibble,
 * s = 1 high nibble of qs[32c + l]). */
static inline int q4k_bits(const uint8_t *qs, int e) {
    const int c = e >> 6, s = (e >> 5) & 1, l = e & 31;
    return s ? qs[32 * c + l] >> 4 : qs[32 * c + l] & 0xf;
}

/* Q5_K: bit 4 of element e is bit (e / 32) of qh[e % 32]. */
static inline int q5k_value(const quant_block_q5_K *b, int e) {
    return q4k_bits(b->qs, e) | (((b->qh[e & 31] >> (e >> 5)) & 1) << 4);
}

/* Q6_K: element e = 128h + 32k + l: low nibble from ql[64h + l + 32(k&1)]
 * (bits 0-3 for k < 2, bits 4-7 for k >= 2), bits 4-5 from qh[32h + l] at 2k. */
static inline int q6_value(const quant_block_q6_K *b, int e) {
    const int h = e >> 7, k = (e >> 5) & 3, l = e & 31;
    const uint8_t lo = b->ql[64 * h + l + 32 * (k & 1)];
    const int low4 = k < 2 ? (lo & 0xf) : (lo >> 4);
    const int high2 = (b->qh[32 * h + l] >> (2 * k)) & 3;
    return (low4 | (high2 << 4)) - 32;
}

void quant_dequant_q2_K(const void *src, float *y, int64_t n) {
    const quant_block_q2_K *b = src;
    for (int64_t i = 0; i < n / QK; i++, y += QK) {
        const float d = quant_fp16_to_fp32(quant_rd16(b[i].d));
        const float dmin = quant_fp16_to_fp32(quant_rd16(b[i].dmin));
        for (int g = 0; g < 16; g++) {
            const float dl = d * (float)(b[i].scales[g] & 0xf);
            const float ml = dmin * (float)(b[i].scales[g] >> 4);
            for (int e = 16 * g; e < 16 * g + 16; e++)
                y[e] = dl * (float)q2_bits(b[i].qs, e) - ml;
        }
    }
}

void quant_dequant_q3_K(const void *src, float *y, int64_t n) {
    const quant_block_q3_K *b = src;
    for (int64_t i = 0; i < n / QK; i++, y += QK) {
        const float d = quant_fp16_to_fp32(quant_rd16(b[i].d));
        for (int g = 0; g < 16; g++) {
            const float dl = d * (float)(quant_q3k_scale(g, b[i].scales) - 32);
            for (int e = 16 * g; e < 16 * g + 16; e++)
                y[e] = dl * (float)q3_value(&b[i], e);
        }
    }
}

void quant_dequant_q4_K(const void *src, float *y, int64_t n) {
    const quant_block_q4_K *b = src;
    for (int64_t i = 0; i < n / QK; i++, y += QK) {
        const float d = quant_fp16_to_fp32(quant_rd16(b[i].d));
        const float dmin = quant_fp16_to_fp32(quant_rd16(b[i].dmin));
        for (int g = 0; g < 8; g++) {
            uint8_t sc, m;
            quant_k4_scale_min(g, b[i].scales, &sc, &m);
            const float dl = d * (float)sc, ml = dmin * (float)m;
            for (int e = 32 * g; e < 32 * g + 32; e++)
                y[e] = dl * (float)q4k_bits(b[i].qs, e) - ml;
        }
    }
}

void quant_dequant_q5_K(const void *src, float *y, int64_t n) {
    const quant_block_q5_K *b = src;
    for (int64_t i = 0; i < n / QK; i++, y += QK) {
        const float d = quant_fp16_to_fp32(quant_rd16(b[i].d));
        const float dmin = quant_fp16_to_fp32(quant_rd16(b[i].dmin));
        for (int g = 0; g < 8; g++) {
            uint8_t sc, m;
            quant_k4_scale_min(g, b[i].scales, &sc, &m);
            const float dl = d * (float)sc, ml = dmin * (float)m;
            for (int e = 32 * g; e < 32 * g + 32; e++)
                y[e] = dl * (float)q5k_value(&b[i], e) - ml;
        }
    }
}

void quant_dequant_q6_K(const void *src, float *y, int64_t n) {
    const quant_block_q6_K *b = src;
    for (int64_t i = 0; i < n / QK; i++, y += QK) {
        const float d = quant_fp16_to_fp32(quant_rd16(b[i].d));
        for (int e = 0; e < QK; e++)
            y[e] = d * (float)b[i].scales[e / 16] * (float)q6_value(&b[i], e);
    }
}

void quant_dequant_q8_K(const void *src, float *y, int64_t n) {
    const quant_block_q8_K *b = src;
    for (int64_t i = 0; i < n / QK; i++, y += QK) {
        const float d = q8k_d(&b[i]);
        for (int e = 0; e < QK; e++) y[e] = d * (float)b[i].qs[e];
    }
}

/* ------------------------------------------------------------ dot (Q8_K) */

/* Each dot walks the bytes in layout order and sums q * a exactly per group
 * (int), then applies the group scales in int and the block scales in float.
 * gs[g] is the integer sum over group g. */

/* Q2_K / Q3_K low bits: element 128h + 32j + l is (qs[32h + l] >> 2j) & 3. */
static void q2_group_sums(const uint8_t *qs, const uint8_t *hmask, const int8_t *a, int *gs) {
    for (int g = 0; g < 16; g++) gs[g] = 0;
    for (int h = 0; h < 2; h++)
        for (int j = 0; j < 4; j++) {
            const int8_t *ar = a + 128 * h + 32 * j;
            const int bit = 4 * h + j;
            int s0 = 0, s1 = 0;
            for (int l = 0; l < 16; l++) {
                int v0 = (qs[32 * h + l] >> (2 * j)) & 3;
                int v1 = (qs[32 * h + l + 16] >> (2 * j)) & 3;
                if (hmask) {
                    v0 -= ((hmask[l] >> bit) & 1) ? 0 : 4;
                    v1 -= ((hmask[l + 16] >> bit) & 1) ? 0 : 4;
                }
                s0 += v0 * ar[l];
                s1 += v1 * ar[l + 16];
            }
            gs[8 * h + 2 * j] = s0;
            gs[8 * h + 2 * j + 1] = s1;
        }
}

float quant_dot_q2_K(int64_t n, const void *w, const void *act) {
    const quant_block_q2_K *b = w;
    const quant_block_q8_K *a = act;
    float sumf = 0.0f;
    int gs[16];
    for (int64_t i = 0; i < n / QK; i++) {
        q2_group_sums(b[i].qs, NULL, a[i].qs, gs);
        int isum = 0, summ = 0;
        for (int g = 0; g < 16; g++) {
            isum += (b[i].scales[g] & 0xf) * gs[g];
            summ += (b[i].scales[g] >> 4) * rd_i16(a[i].bsums + 2 * g);
        }
        const float da = q8k_d(&a[i]);
        const float dall = da * quant_fp16_to_fp32(quant_rd16(b[i].d));
        const float dmin = da * quant_fp16_to_fp32(quant_rd16(b[i].dmin));
        /* w = dall*sc*q - dmin*m, and the sum of a over a group is its bsum */
        sumf += dall * (float)isum - dmin * (float)summ;
    }
    return sumf;
}

float quant_dot_q3_K(int64_t n, const void *w, const void *act) {
    const quant_block_q3_K *b = w;
    const quant_block_q8_K *a = act;
    float sumf = 0.0f;
    int gs[16];
    for (int64_t i = 0; i < n / QK; i++) {
        q2_group_sums(b[i].qs, b[i].hmask, a[i].qs, gs);
        int isum = 0;
        for (int g = 0; g < 16; g++) isum += (quant_q3k_scale(g, b[i].scales) - 32) * gs[g];
        sumf += (quant_fp16_to_fp32(quant_rd16(b[i].d)) * q8k_d(&a[i])) * (float)isum;
    }
    return sumf;
}

/* Q4_K / Q5_K: chunk c of 64: byte qs[32c + l] holds elements 64c + l (low)
 * and 64c + 32 + l (high); bit 4 of those is bit 2c / 2c+1 of qh[l]. */
static void q4k_group_sums(const uint8_t *qs, const uint8_t *qh, const int8_t *a, int *gs) {
    for (int c = 0; c < 4; c++) {
        const uint8_t *q = qs + 32 * c;
        const int8_t *ar = a + 64 * c;
        int s0 = 0, s1 = 0;
        if (qh) {
            for (int l = 0; l < 32; l++) {
                s0 += ((q[l] & 0xf) | (((qh[l] >> (2 * c)) & 1) << 4)) * ar[l];
                s1 += ((q[l] >> 4) | (((qh[l] >> (2 * c + 1)) & 1) << 4)) * ar[l + 32];
            }
        } else {
            for (int l = 0; l < 32; l++) {
                s0 += (q[l] & 0xf) * ar[l];
                s1 += (q[l] >> 4) * ar[l + 32];
            }
        }
        gs[2 * c] = s0;
        gs[2 * c + 1] = s1;
    }
}

static float dot_k4(int64_t n, const uint8_t *w, size_t bytes, size_t off_qs, ptrdiff_t off_qh,
                    const quant_block_q8_K *a) {
    float sumf = 0.0f;
    int gs[8];
    for (int64_t i = 0; i < n / QK; i++, w += bytes) {
        /* d, dmin, scales[12] lead both Q4_K and Q5_K blocks */
        q4k_group_sums(w + off_qs, off_qh >= 0 ? w + off_qh : NULL, a[i].qs, gs);
        int isum = 0, summ = 0;
        for (int g = 0; g < 8; g++) {
            uint8_t sc, m;
            quant_k4_scale_min(g, w + 4, &sc, &m);
            isum += sc * gs[g];
            summ += m * (rd_i16(a[i].bsums + 4 * g) + rd_i16(a[i].bsums + 4 * g + 2));
        }
        const float da = q8k_d(&a[i]);
        const float d = da * quant_fp16_to_fp32(quant_rd16(w));
        const float dmin = da * quant_fp16_to_fp32(quant_rd16(w + 2));
        sumf += d * (float)isum - dmin * (float)summ;
    }
    return sumf;
}

float quant_dot_q4_K(int64_t n, const void *w, const void *act) {
    return dot_k4(n, w, sizeof(quant_block_q4_K), offsetof(quant_block_q4_K, qs), -1, act);
}

float quant_dot_q5_K(int64_t n, const void *w, const void *act) {
    return dot_k4(n, w, sizeof(quant_block_q5_K), offsetof(quant_block_q5_K, qs),
                  (ptrdiff_t)offsetof(quant_block_q5_K, qh), act);
}

float quant_dot_q6_K(int64_t n, const void *w, const void *act) {
    const quant_block_q6_K *b = w;
    const quant_block_q8_K *a = act;
    float sumf = 0.0f;
    for (int64_t i = 0; i < n / QK; i++) {
        int isum = 0;
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = b[i].ql + 64 * h, *qh = b[i].qh + 32 * h;
            const int8_t *ar = a[i].qs + 128 * h;
            int gs[8] = {0};
            for (int l = 0; l < 32; l++) {
                const int hi = l >> 4;
                gs[0 + hi] += (((ql[l] & 0xf) | ((qh[l] & 3) << 4)) - 32) * ar[l];
                gs[2 + hi] += (((ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4)) - 32) * ar[l + 32];
                gs[4 + hi] += (((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32) * ar[l + 64];
                gs[6 + hi] += (((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32) * ar[l + 96];
            }
            for (int g = 0; g < 8; g++) isum += b[i].scales[8 * h + g] * gs[g];
        }
        sumf += (quant_fp16_to_fp32(quant_rd16(b[i].d)) * q8k_d(&a[i])) * (float)isum;
    }
    return sumf;
}

float quant_dot_q8_K(int64_t n, const void *w, const void *act) {
    const quant_block_q8_K *b = w;
    const quant_block_q8_K *a = act;
    float sumf = 0.0f;
    for (int64_t i = 0; i < n / QK; i++) {
        int isum = 0;
        for (int e = 0; e < QK; e++) isum += b[i].qs[e] * a[i].qs[e];
        sumf += (q8k_d(&b[i]) * q8k_d(&a[i])) * (float)isum;
    }
    return sumf;
}

/* -------------------------------------------------------------- quantize */

/* Q8_K as ggml's quantize_row_q8_K_ref: iscale = -127 / (the value of largest
 * magnitude), q = min(127, nearest(iscale x)), d = 1 / iscale; plus the sums
 * of each 16 quants. An all-zero block, or one whose largest magnitude is
 * below ~3.7e-37 (where -127 / max overflows), gets d = 0 and zero quants
 * and sums. */
void quant_quant_q8_K(const float *x, void *dst, int64_t n) {
    quant_block_q8_K *b = dst;
    for (int64_t i = 0; i < n / QK; i++, x += QK) {
        float amax = 0.0f, max = 0.0f;
        for (int e = 0; e < QK; e++) {
            if (fabsf(x[e]) > amax) {
                amax = fabsf(x[e]);
                max = x[e];
            }
        }
        /* a zero block when max is 0 or so small that -127 / max overflows */
        const float iscale = max != 0.0f ? -127.f / max : 0.0f;
        if (iscale == 0.0f || quant_isinf(iscale)) {
            memset(&b[i], 0, sizeof b[i]);
            continue;
        }
        for (int e = 0; e < QK; e++) {
            const int v = quant_nearest_int(iscale * x[e]);
            b[i].qs[e] = (int8_t)(v < 127 ? v : 127);
        }
        for (int g = 0; g < 16; g++) {
            int s = 0;
            for (int e = 16 * g; e < 16 * g + 16; e++) s += b[i].qs[e];
            quant_wr16(b[i].bsums + 2 * g, (uint16_t)(int16_t)s);
        }
        quant_wr32(b[i].d, quant_f32_to_bits(1.0f / iscale));
    }
}

/* Symmetric fit of one group: x[j] ~ scale * l[j], l in [-nmax, nmax-1],
 * weighted least squares with weights w. Tries scales around -nmax / xmax
 * (xmax the value of largest magnitude, mapped to the side with nmax levels),
 * keeps the one that explains most of sum w x^2, then refines by reassigning
 * each l to the nearest level of the fitted scale. Returns the scale; writes
 * l + nmax to L. */
static float fit_symmetric(int n, int nmax, const float *x, const float *w, int8_t *L) {
    float amax = 0.0f, xmax = 0.0f;
    for (int j = 0; j < n; j++)
        if (fabsf(x[j]) > amax) { amax = fabsf(x[j]); xmax = x[j]; }
    if (amax < 1e-15f) {
        for (int j = 0; j < n; j++) L[j] = (int8_t)nmax;
        return 0.0f;
    }
    float best_scale = 0.0f, best = -1.0f;
    for (int is = -10; is <= 10; is++) {
        const float iscale = -((float)nmax + 0.1f * (float)is) / xmax;
        float sumlx = 0.0f, suml2 = 0.0f;
        for (int j = 0; j < n; j++) {
            const int l = round_clamp(iscale * x[j], -nmax, nmax - 1);
            sumlx += w[j] * x[j] * (float)l;
            suml2 += w[j] * (float)(l * l);
        }
        /* the error at the LS scale is sum w x^2 - sumlx^2 / suml2 */
        if (suml2 > 0.0f && sumlx * sumlx > best * suml2) {
            best = sumlx * sumlx / suml2;
            best_scale = sumlx / suml2;
        }
    }
    for (int it = 0; it < 3 && best_scale != 0.0f; it++) {
        float sumlx = 0.0f, suml2 = 0.0f;
        for (int j = 0; j < n; j++) {
            const int l = round_clamp(x[j] / best_scale, -nmax, nmax - 1);
            sumlx += w[j] * x[j] * (float)l;
            suml2 += w[j] * (float)(l * l);
        }
        if (!(suml2 > 0.0f) || !(sumlx * sumlx > best * suml2)) break;
        best = sumlx * sumlx / suml2;
        best_scale = sumlx / suml2;
    }
    for (int j = 0; j < n; j++) {
        const int l = best_scale != 0.0f ? round_clamp(x[j] / best_scale, -nmax, nmax - 1) : 0;
        L[j] = (int8_t)(l + nmax);
    }
    return best_scale;
}

/* Affine fit of one group: x[j] ~ scale * l[j] - mn, l in [0, nmax], mn >= 0
 * (the offset is <= 0 so that the stored min is non-negative). For a range
 * of steps (max - lo) / (nmax + r), assigns levels from the offset lo = min(x,
 * 0), fits (scale, offset) by weighted least squares, and keeps the pair of
 * least weighted squared error; then two rounds of reassigning the levels to
 * the fitted pair and refitting. Writes l to L, returns the scale, *mn_out the
 * (non-negative) min. */
static float fit_affine(int n, int nmax, const float *x, const float *w, uint8_t *L,
                        float *mn_out) {
    float lo = x[0], hi = x[0], sw = 0.0f, sx = 0.0f;
    for (int j = 0; j < n; j++) {
        if (x[j] < lo) lo = x[j];
        if (x[j] > hi) hi = x[j];
        sw += w[j];
        sx += w[j] * x[j];
    }
    if (lo > 0.0f) lo = 0.0f;
    if (hi == lo) {
        for (int j = 0; j < n; j++) L[j] = 0;
        *mn_out = -lo;
        return 0.0f;
    }
    float best_a = (hi - lo) / (float)nmax, best_b = lo, best_err = 0.0f;
    for (int j = 0; j < n; j++) {
        const float diff = best_a * (float)round_clamp((x[j] - lo) / best_a, 0, nmax) + lo - x[j];
        best_err += w[j] * diff * diff;
    }
    uint8_t la[32];
    for (int step = 0; step <= 24; step++) {
        const float iscale = ((float)nmax - 1.0f + 0.1f * (float)step) / (hi - lo);
        const float off = lo;
        for (int refine = 0; refine < 3; refine++) {
            float sl = 0.0f, sl2 = 0.0f, sxl = 0.0f;
            for (int j = 0; j < n; j++) {
                const int l = refine == 0 ? round_clamp(iscale * (x[j] - off), 0, nmax)
                                          : round_clamp((x[j] - best_b) / best_a, 0, nmax);
                la[j] = (uint8_t)l;
                sl += w[j] * (float)l;
                sl2 += w[j] * (float)(l * l);
                sxl += w[j] * (float)l * x[j];
            }
            const float D = sw * sl2 - sl * sl;
            if (!(D > 0.0f)) break;
            float a = (sw * sxl - sx * sl) / D;
            float b = (sl2 * sx - sl * sxl) / D;
            if (b > 0.0f) { b = 0.0f; a = sxl / sl2; }
            if (!(a > 0.0f)) break;
            float err = 0.0f;
            for (int j = 0; j < n; j++) {
                const float diff = a * (float)la[j] + b - x[j];
                err += w[j] * diff * diff;
            }
            if (!(err < best_err)) break;
            best_err = err;
            best_a = a;
            best_b = b;
        }
    }
    for (int j = 0; j < n; j++) L[j] = (uint8_t)round_clamp((x[j] - best_b) / best_a, 0, nmax);
    *mn_out = -best_b;
    return best_a;
}

/* The fits of ng groups of n (x[n g + j], weights w[n g + j]): fit_affine /
 * fit_symmetric per group (fast = 0: the scalar reference), or 8 groups at
 * once in vector lanes (quant_k_lanes.c, bitwise the same). */
static void fits_affine(const float *x, const float *w, int n, int ng, int nmax, int fast,
                        uint8_t *L, float *sc, float *mn) {
    if (!fast) {
        for (int g = 0; g < ng; g++)
            sc[g] = fit_affine(n, nmax, x + n * g, w + n * g, L + n * g, &mn[g]);
        return;
    }
    float xt[8 * 32], wt[8 * 32];
    for (int g0 = 0; g0 < ng; g0 += 8) {
        for (int g = 0; g < 8; g++)
            for (int j = 0; j < n; j++) {
                xt[8 * j + g] = x[n * (g0 + g) + j];
                wt[8 * j + g] = w[n * (g0 + g) + j];
            }
        quant_k_fit_affine8(n, nmax, xt, wt, L + n * g0, sc + g0, mn + g0);
    }
}

static void fits_symmetric(const float *x, const float *w, int n, int ng, int nmax, int fast,
                           int8_t *L, float *sc) {
    if (!fast) {
        for (int g = 0; g < ng; g++) sc[g] = fit_symmetric(n, nmax, x + n * g, w + n * g, L + n * g);
        return;
    }
    float xt[8 * 32], wt[8 * 32];
    for (int g0 = 0; g0 < ng; g0 += 8) {
        for (int g = 0; g < 8; g++)
            for (int j = 0; j < n; j++) {
                xt[8 * j + g] = x[n * (g0 + g) + j];
                wt[8 * j + g] = w[n * (g0 + g) + j];
            }
        quant_k_fit_symmetric8(n, nmax, xt, wt, L + n * g0, sc + g0);
    }
}

/* min(0, mean of x[n]): the best constant a group with scale 0 can hold. */
static float group_mean_neg(const float *x, int n) {
    float s = 0.0f;
    for (int j = 0; j < n; j++) s += x[j];
    s /= (float)n;
    return s < 0.0f ? s : 0.0f;
}

/* Q4_K / Q5_K scale packing, the inverse of quant_k4_scale_min. */
static void k4_pack(uint8_t *s, int j, int sc, int m) {
    if (j < 4) {
        s[j] = (uint8_t)((s[j] & 0xc0) | sc);
        s[j + 4] = (uint8_t)((s[j + 4] & 0xc0) | m);
    } else {
        s[j + 4] = (uint8_t)((sc & 0xf) | ((m & 0xf) << 4));
        s[j - 4] = (uint8_t)((s[j - 4] & 0x3f) | ((sc >> 4) << 6));
        s[j] = (uint8_t)((s[j] & 0x3f) | ((m >> 4) << 6));
    }
}

/* Shared by Q4_K (nmax 15) and Q5_K (nmax 31): per-group affine fits, 6-bit
 * scales and mins over fp16 super-scales, then the levels reassigned to the
 * stored (rounded) scales. L gets the 256 levels. */
static void quant_k4_block(const float *x, int nmax, int fast, uint8_t *d16, uint8_t *dmin16,
                           uint8_t *scales, uint8_t *L) {
    float sc[8], mn[8], w[256], max_sc = 0.0f, max_mn = 0.0f;
    for (int g = 0; g < 8; g++) {
        const float *xg = x + 32 * g;
        float s2 = 0.0f;
        for (int j = 0; j < 32; j++) s2 += xg[j] * xg[j];
        const float av = sqrtf(s2 / 32);
        for (int j = 0; j < 32; j++) w[32 * g + j] = av + fabsf(xg[j]);
    }
    fits_affine(x, w, 32, 8, nmax, fast, L, sc, mn);
    for (int g = 0; g < 8; g++) {
        if (sc[g] > max_sc) max_sc = sc[g];
        if (mn[g] > max_mn) max_mn = mn[g];
    }
    /* the 6-bit values are fitted to the stored (fp16-rounded) super-scales,
     * which matters when those are subnormal or zero */
    quant_wr16(d16, quant_fp32_to_fp16(max_sc / 63.f));
    quant_wr16(dmin16, quant_fp32_to_fp16(max_mn / 63.f));
    const float d = quant_fp16_to_fp32(quant_rd16(d16));
    const float dmin = quant_fp16_to_fp32(quant_rd16(dmin16));
    memset(scales, 0, 12);
    for (int g = 0; g < 8; g++) {
        const int ls = d > 0.0f ? round_clamp(sc[g] / d, 0, 63) : 0;
        /* a group whose scale rounds to 0 is best the constant -max(0, -mean) */
        const float mg = ls > 0 ? mn[g] : -group_mean_neg(x + 32 * g, 32);
        k4_pack(scales, g, ls, dmin > 0.0f ? round_clamp(mg / dmin, 0, 63) : 0);
    }
    for (int g = 0; g < 8; g++) {
        uint8_t s, m;
        quant_k4_scale_min(g, scales, &s, &m);
        const float dl = d * (float)s, ml = dmin * (float)m;
        for (int j = 32 * g; j < 32 * g + 32; j++)
            L[j] = (uint8_t)(dl > 0.0f ? round_clamp((x[j] + ml) / dl, 0, nmax) : 0);
    }
}

static void quant_q4_K(const float *x, void *dst, int64_t n, int fast) {
    quant_block_q4_K *b = dst;
    uint8_t L[QK];
    for (int64_t i = 0; i < n / QK; i++, x += QK) {
        quant_k4_block(x, 15, fast, b[i].d, b[i].dmin, b[i].scales, L);
        for (int e = 0; e < QK; e++) {
            const int c = e >> 6, s = (e >> 5) & 1, l = e & 31;
            uint8_t *q = &b[i].qs[32 * c + l];
            *q = s ? (uint8_t)((*q & 0x0f) | (L[e] << 4)) : (uint8_t)((*q & 0xf0) | L[e]);
        }
    }
}

static void quant_q5_K(const float *x, void *dst, int64_t n, int fast) {
    quant_block_q5_K *b = dst;
    uint8_t L[QK];
    for (int64_t i = 0; i < n / QK; i++, x += QK) {
        quant_k4_block(x, 31, fast, b[i].d, b[i].dmin, b[i].scales, L);
        memset(b[i].qh, 0, sizeof b[i].qh);
        for (int e = 0; e < QK; e++) {
            const int c = e >> 6, s = (e >> 5) & 1, l = e & 31;
            uint8_t *q = &b[i].qs[32 * c + l];
            const int v = L[e] & 0xf;
            *q = s ? (uint8_t)((*q & 0x0f) | (v << 4)) : (uint8_t)((*q & 0xf0) | v);
            b[i].qh[l] |= (uint8_t)((L[e] >> 4) << (e >> 5));
        }
    }
}

/* Q2_K: 16 groups of 16, levels 0..3, 4-bit scales and mins. */
static void quant_q2_K(const float *x, void *dst, int64_t n, int fast) {
    quant_block_q2_K *b = dst;
    uint8_t L[QK];
    for (int64_t i = 0; i < n / QK; i++, x += QK) {
        float sc[16], mn[16], w[QK], max_sc = 0.0f, max_mn = 0.0f;
        for (int j = 0; j < QK; j++) w[j] = fabsf(x[j]);
        fits_affine(x, w, 16, 16, 3, fast, L, sc, mn);
        for (int g = 0; g < 16; g++) {
            if (sc[g] > max_sc) max_sc = sc[g];
            if (mn[g] > max_mn) max_mn = mn[g];
        }
        quant_wr16(b[i].d, quant_fp32_to_fp16(max_sc / 15.f));
        quant_wr16(b[i].dmin, quant_fp32_to_fp16(max_mn / 15.f));
        const float d = quant_fp16_to_fp32(quant_rd16(b[i].d));
        const float dmin = quant_fp16_to_fp32(quant_rd16(b[i].dmin));
        for (int g = 0; g < 16; g++) {
            const int ls = d > 0.0f ? round_clamp(sc[g] / d, 0, 15) : 0;
            const float mg = ls > 0 ? mn[g] : -group_mean_neg(x + 16 * g, 16);
            b[i].scales[g] = (uint8_t)(ls | ((dmin > 0.0f ? round_clamp(mg / dmin, 0, 15) : 0) << 4));
        }
        for (int g = 0; g < 16; g++) {
            const float dl = d * (float)(b[i].scales[g] & 0xf);
            const float ml = dmin * (float)(b[i].scales[g] >> 4);
            for (int j = 16 * g; j < 16 * g + 16; j++)
                L[j] = (uint8_t)(dl > 0.0f ? round_clamp((x[j] + ml) / dl, 0, 3) : 0);
        }
        memset(b[i].qs, 0, sizeof b[i].qs);
        for (int e = 0; e < QK; e++) {
            const int h = e >> 7, j = (e >> 5) & 3, l = e & 31;
            b[i].qs[32 * h + l] |= (uint8_t)(L[e] << (2 * j));
        }
    }
}

/* Q3_K: 16 groups of 16, levels -4..3, signed 6-bit scales. */
static void quant_q3_K(const float *x, void *dst, int64_t n, int fast) {
    quant_block_q3_K *b = dst;
    int8_t L[QK];
    for (int64_t i = 0; i < n / QK; i++, x += QK) {
        float sc[16], w[QK], amax = 0.0f, max_sc = 0.0f;
        for (int j = 0; j < QK; j++) w[j] = x[j] * x[j];
        fits_symmetric(x, w, 16, 16, 4, fast, L, sc);
        for (int g = 0; g < 16; g++) {
            if (fabsf(sc[g]) > amax) { amax = fabsf(sc[g]); max_sc = sc[g]; }
        }
        /* d = -max_sc / 32 maps the largest scale to -32; the 6-bit values
         * are fitted to the stored (fp16-rounded) d */
        memset(b[i].scales, 0, sizeof b[i].scales);
        quant_wr16(b[i].d, quant_fp32_to_fp16(amax > 0.0f ? max_sc / -32.f : 0.0f));
        const float dd = quant_fp16_to_fp32(quant_rd16(b[i].d));
        for (int g = 0; g < 16; g++) {
            const int l = (dd != 0.0f ? round_clamp(sc[g] / dd, -32, 31) : 0) + 32;
            if (g < 8) b[i].scales[g] = (uint8_t)(l & 0xf);
            else b[i].scales[g - 8] |= (uint8_t)((l & 0xf) << 4);
            b[i].scales[8 + (g & 3)] |= (uint8_t)((l >> 4) << (2 * (g >> 2)));
        }
        for (int g = 0; g < 16; g++) {
            const float dl = dd * (float)(quant_q3k_scale(g, b[i].scales) - 32);
            for (int j = 16 * g; j < 16 * g + 16; j++)
                L[j] = (int8_t)(dl != 0.0f ? round_clamp(x[j] / dl, -4, 3) + 4 : 4);
        }
        memset(b[i].hmask, 0, sizeof b[i].hmask);
        memset(b[i].qs, 0, sizeof b[i].qs);
        for (int e = 0; e < QK; e++) {
            const int h = e >> 7, j = (e >> 5) & 3, l = e & 31;
            const int v = L[e]; /* 0..7 = q3 + 4 */
            if (v > 3) b[i].hmask[l] |= (uint8_t)(1u << (e >> 5));
            b[i].qs[32 * h + l] |= (uint8_t)((v & 3) << (2 * j));
        }
    }
}

/* Q6_K: 16 groups of 16, levels -32..31, signed 8-bit scales. */
static void quant_q6_K(const float *x, void *dst, int64_t n, int fast) {
    quant_block_q6_K *b = dst;
    int8_t L[QK];
    for (int64_t i = 0; i < n / QK; i++, x += QK) {
        float sc[16], w[QK], amax = 0.0f, max_sc = 0.0f;
        for (int j = 0; j < QK; j++) w[j] = x[j] * x[j];
        fits_symmetric(x, w, 16, 16, 32, fast, L, sc);
        for (int g = 0; g < 16; g++) {
            if (fabsf(sc[g]) > amax) { amax = fabsf(sc[g]); max_sc = sc[g]; }
        }
        memset(&b[i], 0, sizeof b[i]);
        if (amax < 1e-15f) continue; /* d = 0: every weight 0 */
        /* d = -max_sc / 128; 8-bit scales fitted to the stored d */
        quant_wr16(b[i].d, quant_fp32_to_fp16(max_sc / -128.f));
        const float d = quant_fp16_to_fp32(quant_rd16(b[i].d));
        for (int g = 0; g < 16; g++)
            b[i].scales[g] = (int8_t)(d != 0.0f ? round_clamp(sc[g] / d, -128, 127) : 0);
        for (int g = 0; g < 16; g++) {
            const float dl = d * (float)b[i].scales[g];
            for (int j = 16 * g; j < 16 * g + 16; j++)
                L[j] = (int8_t)(dl != 0.0f ? round_clamp(x[j] / dl, -32, 31) + 32 : 32);
        }
        for (int e = 0; e < QK; e++) {
            const int h = e >> 7, k = (e >> 5) & 3, l = e & 31;
            const int v = L[e]; /* 0..63 */
            uint8_t *lo = &b[i].ql[64 * h + l + 32 * (k & 1)];
            *lo |= (uint8_t)(k < 2 ? (v & 0xf) : ((v & 0xf) << 4));
            b[i].qh[32 * h + l] |= (uint8_t)((v >> 4) << (2 * k));
        }
    }
}

/* The quantizers (vector-lane fits) and their scalar references. */
#define K_ENTRY(T)                                                                  \
    void quant_quant_##T(const float *x, void *dst, int64_t n) { quant_##T(x, dst, n, 1); } \
    void quant_quant_##T##_ref(const float *x, void *dst, int64_t n) { quant_##T(x, dst, n, 0); }
K_ENTRY(q2_K)
K_ENTRY(q3_K)
K_ENTRY(q4_K)
K_ENTRY(q5_K)
K_ENTRY(q6_K)
