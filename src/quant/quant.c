/* quant.c: type traits, F32/F16/BF16 and the 32-weight block types (Q4_0,
 * Q4_1, Q5_0, Q5_1, Q8_0, Q8_1), the per-type dispatch and the table of
 * kernel levels (scalar, AVX2, AVX-512 VNNI) chosen at run time. The K types
 * live in quant_k.c, the threaded matrix products in quant_matmul.c.
 *
 * Not for: SIMD code (quant_avx2.c, quant_avx512vnni.c; quant_simd.h says
 * how they are chosen). Everything else here is the scalar reference; the
 * float order of each dequantizer is ggml's (w = q * d, then + m), so results
 * are bit-exact. No global mutable state: the traits and level tables are
 * const.
 */
#include "quant/quant.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/cpu.h"
#include "core/error.h"
#include "quant/quant_simd.h"

/* Keep a*b + c as two rounded operations (ggml's reference order): clang
 * would otherwise fuse them where the target has FMA. GCC in ISO C mode
 * (-std=c11) does not contract. */
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

/* ---------------------------------------------------------------- traits */

static const quant_traits k_traits[QUANT_TYPE_COUNT] = {
    [QUANT_F32] = {"f32", 1, 4, 0, QUANT_F32},
    [QUANT_F16] = {"f16", 1, 2, 0, QUANT_F32},
    [QUANT_Q4_0] = {"q4_0", QUANT_QK, sizeof(quant_block_q4_0), 1, QUANT_Q8_0},
    [QUANT_Q4_1] = {"q4_1", QUANT_QK, sizeof(quant_block_q4_1), 1, QUANT_Q8_1},
    [QUANT_Q5_0] = {"q5_0", QUANT_QK, sizeof(quant_block_q5_0), 1, QUANT_Q8_0},
    [QUANT_Q5_1] = {"q5_1", QUANT_QK, sizeof(quant_block_q5_1), 1, QUANT_Q8_1},
    [QUANT_Q8_0] = {"q8_0", QUANT_QK, sizeof(quant_block_q8_0), 1, QUANT_Q8_0},
    [QUANT_Q8_1] = {"q8_1", QUANT_QK, sizeof(quant_block_q8_1), 1, QUANT_Q8_1},
    [QUANT_Q2_K] = {"q2_K", QUANT_QK_K, sizeof(quant_block_q2_K), 1, QUANT_Q8_K},
    [QUANT_Q3_K] = {"q3_K", QUANT_QK_K, sizeof(quant_block_q3_K), 1, QUANT_Q8_K},
    [QUANT_Q4_K] = {"q4_K", QUANT_QK_K, sizeof(quant_block_q4_K), 1, QUANT_Q8_K},
    [QUANT_Q5_K] = {"q5_K", QUANT_QK_K, sizeof(quant_block_q5_K), 1, QUANT_Q8_K},
    [QUANT_Q6_K] = {"q6_K", QUANT_QK_K, sizeof(quant_block_q6_K), 1, QUANT_Q8_K},
    [QUANT_Q8_K] = {"q8_K", QUANT_QK_K, sizeof(quant_block_q8_K), 1, QUANT_Q8_K},
    [QUANT_BF16] = {"bf16", 1, 2, 0, QUANT_F32},
};

const quant_traits *quant_get_traits(quant_type type) {
    if ((int)type < 0 || (int)type >= QUANT_TYPE_COUNT) return NULL;
    if (!k_traits[type].name) return NULL;
    return &k_traits[type];
}

int quant_type_valid(quant_type type) { return quant_get_traits(type) != NULL; }

size_t quant_row_size(quant_type type, int64_t n) {
    const quant_traits *t = quant_get_traits(type);
    MOE_ASSERT(t && n >= 0 && n % t->block_size == 0);
    return (size_t)(n / t->block_size) * t->block_bytes;
}

moe_status quant_check_row(quant_type type, int64_t n, const char *what,
                           moe_error *err) {
    const quant_traits *t = quant_get_traits(type);
    if (!t)
        return moe_err(err, MOE_ERR_ARG,
                       "%s: unknown quantization type id %d (expected a GGUF "
                       "type: 0-3, 6-15 or 30)", what, (int)type);
    if (n < 0)
        return moe_err(err, MOE_ERR_SHAPE, "%s: row length %lld < 0", what,
                       (long long)n);
    if (n % t->block_size != 0)
        return moe_err(err, MOE_ERR_SHAPE,
                       "%s: row length %lld is not a multiple of the %s block "
                       "size %d", what, (long long)n, t->name, t->block_size);
    return MOE_OK;
}

/* ------------------------------------------------------ 32-weight blocks */

/* Bit e (0..31) of a block's qh field, as bit 4 of the quant. */
static inline int qh_bit4(uint32_t qh, int e) { return (int)((qh >> e) & 1u) << 4; }

static void dequant_q4_0(const quant_block_q4_0 *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, y += QUANT_QK) {
        const float d = quant_fp16_to_fp32(quant_rd16(b[i].d));
        for (int j = 0; j < 16; j++) {
            const int x0 = (b[i].qs[j] & 0x0f) - 8;
            const int x1 = (b[i].qs[j] >> 4) - 8;
            y[j] = (float)x0 * d;
            y[j + 16] = (float)x1 * d;
        }
    }
}

static void dequant_q4_1(const quant_block_q4_1 *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, y += QUANT_QK) {
        const float d = quant_fp16_to_fp32(quant_rd16(b[i].d));
        const float m = quant_fp16_to_fp32(quant_rd16(b[i].m));
        for (int j = 0; j < 16; j++) {
            const int x0 = b[i].qs[j] & 0x0f;
            const int x1 = b[i].qs[j] >> 4;
            y[j] = (float)x0 * d + m;
            y[j + 16] = (float)x1 * d + m;
        }
    }
}

static void dequant_q5_0(const quant_block_q5_0 *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, y += QUANT_QK) {
        const float d = quant_fp16_to_fp32(quant_rd16(b[i].d));
        const uint32_t qh = quant_rd32(b[i].qh);
        for (int j = 0; j < 16; j++) {
            const int x0 = ((b[i].qs[j] & 0x0f) | qh_bit4(qh, j)) - 16;
            const int x1 = ((b[i].qs[j] >> 4) | qh_bit4(qh, j + 16)) - 16;
            y[j] = (float)x0 * d;
            y[j + 16] = (float)x1 * d;
        }
    }
}

static void dequant_q5_1(const quant_block_q5_1 *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, y += QUANT_QK) {
        const float d = quant_fp16_to_fp32(quant_rd16(b[i].d));
        const float m = quant_fp16_to_fp32(quant_rd16(b[i].m));
        const uint32_t qh = quant_rd32(b[i].qh);
        for (int j = 0; j < 16; j++) {
            const int x0 = (b[i].qs[j] & 0x0f) | qh_bit4(qh, j);
            const int x1 = (b[i].qs[j] >> 4) | qh_bit4(qh, j + 16);
            y[j] = (float)x0 * d + m;
            y[j + 16] = (float)x1 * d + m;
        }
    }
}

static void dequant_q8_0(const quant_block_q8_0 *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, y += QUANT_QK) {
        const float d = quant_fp16_to_fp32(quant_rd16(b[i].d));
        for (int j = 0; j < QUANT_QK; j++) y[j] = (float)b[i].qs[j] * d;
    }
}

static void dequant_q8_1(const quant_block_q8_1 *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, y += QUANT_QK) {
        const float d = quant_fp16_to_fp32(quant_rd16(b[i].d));
        for (int j = 0; j < QUANT_QK; j++) y[j] = (float)b[i].qs[j] * d;
    }
}

/* The value of largest magnitude (the first one on ties) and its magnitude. */
static float signed_absmax(const float *x, int n, float *amax_out) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < n; j++) {
        if (amax < fabsf(x[j])) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    }
    *amax_out = amax;
    return max;
}

static void min_max(const float *x, int n, float *mn, float *mx) {
    float lo = x[0], hi = x[0];
    for (int j = 1; j < n; j++) {
        if (x[j] < lo) lo = x[j];
        if (x[j] > hi) hi = x[j];
    }
    *mn = lo;
    *mx = hi;
}

/* (int)v clamped to [0, hi]: v < 0 and NaN give 0 (the cast of such a value,
 * or of one past the target type, would be undefined). Equal to
 * imin(hi, (int8_t)v) for every v in [0, 128), where that is defined. */
static inline int trunc_clamp(float v, int hi) {
    if (!(v >= 0.0f)) return 0;
    if (v >= (float)hi) return hi;
    return (int)v;
}

/* ggml's quantize_row_q4_0_ref: d = max / -8, q = min(15, trunc(x/d + 8.5)). */
static void quant_q4_0(const float *x, quant_block_q4_0 *b, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += QUANT_QK) {
        float amax;
        const float max = signed_absmax(x, QUANT_QK, &amax);
        const float d = max / -8;
        const float id = quant_inv_scale(d);
        quant_wr16(b[i].d, quant_fp32_to_fp16(d));
        for (int j = 0; j < 16; j++) {
            const int q0 = trunc_clamp(x[j] * id + 8.5f, 15);
            const int q1 = trunc_clamp(x[j + 16] * id + 8.5f, 15);
            b[i].qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

/* ggml's quantize_row_q4_1_ref: d = (max - min) / 15, m = min. */
static void quant_q4_1(const float *x, quant_block_q4_1 *b, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += QUANT_QK) {
        float mn, mx;
        min_max(x, QUANT_QK, &mn, &mx);
        const float d = (mx - mn) / 15;
        const float id = quant_inv_scale(d);
        quant_wr16(b[i].d, quant_fp32_to_fp16(d));
        quant_wr16(b[i].m, quant_fp32_to_fp16(mn));
        for (int j = 0; j < 16; j++) {
            const int q0 = trunc_clamp((x[j] - mn) * id + 0.5f, 15);
            const int q1 = trunc_clamp((x[j + 16] - mn) * id + 0.5f, 15);
            b[i].qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

/* ggml's quantize_row_q5_0_ref: d = max / -16, q = min(31, trunc(x/d + 16.5)). */
static void quant_q5_0(const float *x, quant_block_q5_0 *b, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += QUANT_QK) {
        float amax;
        const float max = signed_absmax(x, QUANT_QK, &amax);
        const float d = max / -16;
        const float id = quant_inv_scale(d);
        uint32_t qh = 0;
        quant_wr16(b[i].d, quant_fp32_to_fp16(d));
        for (int j = 0; j < 16; j++) {
            const int q0 = trunc_clamp(x[j] * id + 16.5f, 31);
            const int q1 = trunc_clamp(x[j + 16] * id + 16.5f, 31);
            b[i].qs[j] = (uint8_t)((q0 & 0x0f) | ((q1 & 0x0f) << 4));
            qh |= (uint32_t)(q0 >> 4) << j;
            qh |= (uint32_t)(q1 >> 4) << (j + 16);
        }
        quant_wr32(b[i].qh, qh);
    }
}

/* ggml's quantize_row_q5_1_ref: d = (max - min) / 31, m = min. */
static void quant_q5_1(const float *x, quant_block_q5_1 *b, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += QUANT_QK) {
        float mn, mx;
        min_max(x, QUANT_QK, &mn, &mx);
        const float d = (mx - mn) / 31;
        const float id = quant_inv_scale(d);
        uint32_t qh = 0;
        quant_wr16(b[i].d, quant_fp32_to_fp16(d));
        quant_wr16(b[i].m, quant_fp32_to_fp16(mn));
        for (int j = 0; j < 16; j++) {
            const int q0 = trunc_clamp((x[j] - mn) * id + 0.5f, 31);
            const int q1 = trunc_clamp((x[j + 16] - mn) * id + 0.5f, 31);
            b[i].qs[j] = (uint8_t)((q0 & 0x0f) | ((q1 & 0x0f) << 4));
            qh |= (uint32_t)(q0 >> 4) << j;
            qh |= (uint32_t)(q1 >> 4) << (j + 16);
        }
        quant_wr32(b[i].qh, qh);
    }
}

/* ggml's quantize_row_q8_0_ref: d = amax / 127, q = roundf(x / d). */
static void quant_q8_0(const float *x, quant_block_q8_0 *b, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += QUANT_QK) {
        float amax;
        (void)signed_absmax(x, QUANT_QK, &amax);
        const float d = amax / 127;
        const float id = quant_inv_scale(d);
        quant_wr16(b[i].d, quant_fp32_to_fp16(d));
        for (int j = 0; j < QUANT_QK; j++) b[i].qs[j] = (int8_t)roundf(x[j] * id);
    }
}

/* ggml's quantize_row_q8_1_ref: as Q8_0 plus s = fp16(d * sum(q)). */
static void quant_q8_1(const float *x, quant_block_q8_1 *b, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += QUANT_QK) {
        float amax;
        (void)signed_absmax(x, QUANT_QK, &amax);
        const float d = amax / 127;
        const float id = quant_inv_scale(d);
        int sum = 0;
        quant_wr16(b[i].d, quant_fp32_to_fp16(d));
        for (int j = 0; j < QUANT_QK; j++) {
            b[i].qs[j] = (int8_t)roundf(x[j] * id);
            sum += b[i].qs[j];
        }
        quant_wr16(b[i].s, quant_fp32_to_fp16((float)sum * d));
    }
}

/* Weight blocks times Q8_0 / Q8_1 activation blocks: an exact integer sum per
 * block, scaled once per block (ggml's ggml_vec_dot_*_q8_*_generic). */
static float dot_q4_0(const quant_block_q4_0 *w, const quant_block_q8_0 *a, int64_t nb) {
    float sumf = 0.0f;
    for (int64_t i = 0; i < nb; i++) {
        int sumi = 0;
        for (int j = 0; j < 16; j++) {
            sumi += ((w[i].qs[j] & 0x0f) - 8) * a[i].qs[j];
            sumi += ((w[i].qs[j] >> 4) - 8) * a[i].qs[j + 16];
        }
        sumf += (float)sumi * quant_fp16_to_fp32(quant_rd16(w[i].d)) *
                quant_fp16_to_fp32(quant_rd16(a[i].d));
    }
    return sumf;
}

static float dot_q4_1(const quant_block_q4_1 *w, const quant_block_q8_1 *a, int64_t nb) {
    float sumf = 0.0f;
    for (int64_t i = 0; i < nb; i++) {
        int sumi = 0;
        for (int j = 0; j < 16; j++) {
            sumi += (w[i].qs[j] & 0x0f) * a[i].qs[j];
            sumi += (w[i].qs[j] >> 4) * a[i].qs[j + 16];
        }
        /* sum_j (q_j d + m) a_j d_a = d d_a sum q_j a_j + m * s */
        sumf += (quant_fp16_to_fp32(quant_rd16(w[i].d)) *
                 quant_fp16_to_fp32(quant_rd16(a[i].d))) * (float)sumi +
                quant_fp16_to_fp32(quant_rd16(w[i].m)) *
                quant_fp16_to_fp32(quant_rd16(a[i].s));
    }
    return sumf;
}

static float dot_q5_0(const quant_block_q5_0 *w, const quant_block_q8_0 *a, int64_t nb) {
    float sumf = 0.0f;
    for (int64_t i = 0; i < nb; i++) {
        const uint32_t qh = quant_rd32(w[i].qh);
        int sumi = 0;
        for (int j = 0; j < 16; j++) {
            sumi += (((w[i].qs[j] & 0x0f) | qh_bit4(qh, j)) - 16) * a[i].qs[j];
            sumi += (((w[i].qs[j] >> 4) | qh_bit4(qh, j + 16)) - 16) * a[i].qs[j + 16];
        }
        sumf += (quant_fp16_to_fp32(quant_rd16(w[i].d)) *
                 quant_fp16_to_fp32(quant_rd16(a[i].d))) * (float)sumi;
    }
    return sumf;
}

static float dot_q5_1(const quant_block_q5_1 *w, const quant_block_q8_1 *a, int64_t nb) {
    float sumf = 0.0f;
    for (int64_t i = 0; i < nb; i++) {
        const uint32_t qh = quant_rd32(w[i].qh);
        int sumi = 0;
        for (int j = 0; j < 16; j++) {
            sumi += ((w[i].qs[j] & 0x0f) | qh_bit4(qh, j)) * a[i].qs[j];
            sumi += ((w[i].qs[j] >> 4) | qh_bit4(qh, j + 16)) * a[i].qs[j + 16];
        }
        sumf += (quant_fp16_to_fp32(quant_rd16(w[i].d)) *
                 quant_fp16_to_fp32(quant_rd16(a[i].d))) * (float)sumi +
                quant_fp16_to_fp32(quant_rd16(w[i].m)) *
                quant_fp16_to_fp32(quant_rd16(a[i].s));
    }
    return sumf;
}

static float dot_q8_0(const quant_block_q8_0 *w, const quant_block_q8_0 *a, int64_t nb) {
    float sumf = 0.0f;
    for (int64_t i = 0; i < nb; i++) {
        int sumi = 0;
        for (int j = 0; j < QUANT_QK; j++) sumi += w[i].qs[j] * a[i].qs[j];
        sumf += (float)sumi * (quant_fp16_to_fp32(quant_rd16(w[i].d)) *
                               quant_fp16_to_fp32(quant_rd16(a[i].d)));
    }
    return sumf;
}

/* Q8_1 weights (ggml has no such product; the natural one). */
static float dot_q8_1(const quant_block_q8_1 *w, const quant_block_q8_1 *a, int64_t nb) {
    float sumf = 0.0f;
    for (int64_t i = 0; i < nb; i++) {
        int sumi = 0;
        for (int j = 0; j < QUANT_QK; j++) sumi += w[i].qs[j] * a[i].qs[j];
        sumf += (float)sumi * (quant_fp16_to_fp32(quant_rd16(w[i].d)) *
                               quant_fp16_to_fp32(quant_rd16(a[i].d)));
    }
    return sumf;
}

/* Float weights: a plain sequential float dot. The rows may be unaligned. */
static float dot_f32(const uint8_t *w, const float *a, int64_t n) {
    float s = 0.0f;
    for (int64_t k = 0; k < n; k++) s += quant_bits_to_f32(quant_rd32(w + 4 * k)) * a[k];
    return s;
}

static float dot_f16(const uint8_t *w, const float *a, int64_t n) {
    float s = 0.0f;
    for (int64_t k = 0; k < n; k++) s += quant_fp16_to_fp32(quant_rd16(w + 2 * k)) * a[k];
    return s;
}

static float dot_bf16(const uint8_t *w, const float *a, int64_t n) {
    float s = 0.0f;
    for (int64_t k = 0; k < n; k++) s += quant_bf16_to_fp32(quant_rd16(w + 2 * k)) * a[k];
    return s;
}

/* --------------------------------------------------------------- dispatch */

moe_status quant_dequantize_row(quant_type type, const void *src, float *dst,
                                int64_t n, moe_error *err) {
    moe_status st = quant_check_row(type, n, "quant_dequantize_row", err);
    if (st != MOE_OK) return st;
    const uint8_t *s = (const uint8_t *)src;
    const int64_t nb32 = n / QUANT_QK;
    switch (type) {
    case QUANT_F32:
        for (int64_t k = 0; k < n; k++) dst[k] = quant_bits_to_f32(quant_rd32(s + 4 * k));
        break;
    case QUANT_F16:
        for (int64_t k = 0; k < n; k++) dst[k] = quant_fp16_to_fp32(quant_rd16(s + 2 * k));
        break;
    case QUANT_BF16:
        for (int64_t k = 0; k < n; k++) dst[k] = quant_bf16_to_fp32(quant_rd16(s + 2 * k));
        break;
    case QUANT_Q4_0: dequant_q4_0(src, dst, nb32); break;
    case QUANT_Q4_1: dequant_q4_1(src, dst, nb32); break;
    case QUANT_Q5_0: dequant_q5_0(src, dst, nb32); break;
    case QUANT_Q5_1: dequant_q5_1(src, dst, nb32); break;
    case QUANT_Q8_0: dequant_q8_0(src, dst, nb32); break;
    case QUANT_Q8_1: dequant_q8_1(src, dst, nb32); break;
    case QUANT_Q2_K: quant_dequant_q2_K(src, dst, n); break;
    case QUANT_Q3_K: quant_dequant_q3_K(src, dst, n); break;
    case QUANT_Q4_K: quant_dequant_q4_K(src, dst, n); break;
    case QUANT_Q5_K: quant_dequant_q5_K(src, dst, n); break;
    case QUANT_Q6_K: quant_dequant_q6_K(src, dst, n); break;
    case QUANT_Q8_K: quant_dequant_q8_K(src, dst, n); break;
    default:
        return moe_err(err, MOE_ERR_UNSUPPORTED, "quant_dequantize_row: type %d",
                       (int)type);
    }
    return MOE_OK;
}

/* The quantizer without checks (quant_simd.h). */
void quant_quantize_unchecked(quant_type type, const float *src, void *dst, int64_t n) {
    uint8_t *d = (uint8_t *)dst;
    const int64_t nb32 = n / QUANT_QK;
    switch (type) {
    case QUANT_F32:
        for (int64_t k = 0; k < n; k++) quant_wr32(d + 4 * k, quant_f32_to_bits(src[k]));
        break;
    case QUANT_F16:
        for (int64_t k = 0; k < n; k++) quant_wr16(d + 2 * k, quant_fp32_to_fp16(src[k]));
        break;
    case QUANT_BF16:
        for (int64_t k = 0; k < n; k++) quant_wr16(d + 2 * k, quant_fp32_to_bf16(src[k]));
        break;
    case QUANT_Q4_0: quant_q4_0(src, dst, nb32); break;
    case QUANT_Q4_1: quant_q4_1(src, dst, nb32); break;
    case QUANT_Q5_0: quant_q5_0(src, dst, nb32); break;
    case QUANT_Q5_1: quant_q5_1(src, dst, nb32); break;
    case QUANT_Q8_0: quant_q8_0(src, dst, nb32); break;
    case QUANT_Q8_1: quant_q8_1(src, dst, nb32); break;
    case QUANT_Q2_K: quant_quant_q2_K(src, dst, n); break;
    case QUANT_Q3_K: quant_quant_q3_K(src, dst, n); break;
    case QUANT_Q4_K: quant_quant_q4_K(src, dst, n); break;
    case QUANT_Q5_K: quant_quant_q5_K(src, dst, n); break;
    case QUANT_Q6_K: quant_quant_q6_K(src, dst, n); break;
    case QUANT_Q8_K: quant_quant_q8_K(src, dst, n); break;
    default: MOE_ASSERT(0 && "quant_quantize_unchecked: invalid type");
    }
}

/* Index of the first non-finite value of x[n], or -1. */
static int64_t first_nonfinite(const float *x, int64_t n) {
    for (int64_t k = 0; k < n; k++)
        if (!isfinite(x[k])) return k;
    return -1;
}

moe_status quant_quantize_row(quant_type type, const float *src, void *dst,
                              int64_t n, moe_error *err) {
    moe_status st = quant_check_row(type, n, "quant_quantize_row", err);
    if (st != MOE_OK) return st;
    if (k_traits[type].is_quantized) {
        const int64_t bad = first_nonfinite(src, n);
        if (bad >= 0)
            return moe_err(err, MOE_ERR_NONFINITE,
                           "quant_quantize_row: src[%lld] = %g is not finite "
                           "(%s needs finite input)", (long long)bad,
                           (double)src[bad], k_traits[type].name);
    }
    quant_quantize_unchecked(type, src, dst, n);
    return MOE_OK;
}

/* ------------------------------------------------------- kernel levels */

/* The scalar dots with the quant_dot_fn signature. */
static float sdot_f32(int64_t n, const void *w, const void *a) { return dot_f32(w, a, n); }
static float sdot_f16(int64_t n, const void *w, const void *a) { return dot_f16(w, a, n); }
static float sdot_bf16(int64_t n, const void *w, const void *a) { return dot_bf16(w, a, n); }
static float sdot_q4_0(int64_t n, const void *w, const void *a) { return dot_q4_0(w, a, n / QUANT_QK); }
static float sdot_q4_1(int64_t n, const void *w, const void *a) { return dot_q4_1(w, a, n / QUANT_QK); }
static float sdot_q5_0(int64_t n, const void *w, const void *a) { return dot_q5_0(w, a, n / QUANT_QK); }
static float sdot_q5_1(int64_t n, const void *w, const void *a) { return dot_q5_1(w, a, n / QUANT_QK); }
static float sdot_q8_0(int64_t n, const void *w, const void *a) { return dot_q8_0(w, a, n / QUANT_QK); }
static float sdot_q8_1(int64_t n, const void *w, const void *a) { return dot_q8_1(w, a, n / QUANT_QK); }

/* A level's dot table: the scalar dots except the five it replaces. */
#define DOTS(Q4_0, Q8_0, Q4_K, Q5_K, Q6_K) {                                       \
        [QUANT_F32] = sdot_f32, [QUANT_F16] = sdot_f16, [QUANT_BF16] = sdot_bf16, \
        [QUANT_Q4_0] = Q4_0, [QUANT_Q4_1] = sdot_q4_1, [QUANT_Q5_0] = sdot_q5_0,  \
        [QUANT_Q5_1] = sdot_q5_1, [QUANT_Q8_0] = Q8_0, [QUANT_Q8_1] = sdot_q8_1,  \
        [QUANT_Q2_K] = quant_dot_q2_K, [QUANT_Q3_K] = quant_dot_q3_K,             \
        [QUANT_Q4_K] = Q4_K, [QUANT_Q5_K] = Q5_K, [QUANT_Q6_K] = Q6_K,            \
        [QUANT_Q8_K] = quant_dot_q8_K }

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define QUANT_HAVE_X86 1
#else
#define QUANT_HAVE_X86 0
#endif

static const quant_kernels k_levels[QUANT_LEVEL_COUNT] = {
    [QUANT_LEVEL_SCALAR] = {
        "scalar", DOTS(sdot_q4_0, sdot_q8_0, quant_dot_q4_K, quant_dot_q5_K, quant_dot_q6_K),
        {0}, {0}, NULL, NULL},
#if QUANT_HAVE_X86
    [QUANT_LEVEL_AVX2] = {
        "avx2", DOTS(quant_avx2_dot_q4_0, quant_avx2_dot_q8_0, quant_avx2_dot_q4_K,
                     quant_avx2_dot_q5_K, quant_avx2_dot_q6_K),
        {0},
        {[QUANT_Q4_0] = quant_avx2_gemm_q4_0, [QUANT_Q4_K] = quant_avx2_gemm_q4_K,
         [QUANT_Q6_K] = quant_avx2_gemm_q6_K},
        NULL, NULL},
    [QUANT_LEVEL_AVX512] = {
        "avx512vnni", DOTS(quant_vnni_dot_q4_0, quant_vnni_dot_q8_0, quant_vnni_dot_q4_K,
                           quant_vnni_dot_q5_K, quant_vnni_dot_q6_K),
        {[QUANT_Q8_0] = quant_vnni_rows_q8_0, [QUANT_Q4_K] = quant_vnni_rows_q4_K},
        {[QUANT_F32] = quant_vnni_gemm_f32,
         [QUANT_Q4_0] = quant_vnni_gemm_q4_0, [QUANT_Q8_0] = quant_vnni_gemm_q8_0,
         [QUANT_Q4_K] = quant_vnni_gemm_q4_K, [QUANT_Q5_K] = quant_vnni_gemm_q5_K,
         [QUANT_Q6_K] = quant_vnni_gemm_q6_K},
        quant_vnni_act_q8_0, quant_vnni_act_q8_K},
#endif
};

int quant_level_supported(int level) {
    switch (level) {
    case QUANT_LEVEL_SCALAR: return 1;
#if QUANT_HAVE_X86
    case QUANT_LEVEL_AVX2: return moe_cpu_has(MOE_CPU_AVX2 | MOE_CPU_FMA | MOE_CPU_F16C);
    case QUANT_LEVEL_AVX512: /* the file is built with F, BW, DQ, VL, VNNI, F16C */
        return moe_cpu_has(MOE_CPU_AVX512F | MOE_CPU_AVX512BW | MOE_CPU_AVX512DQ |
                           MOE_CPU_AVX512VL | MOE_CPU_AVX512VNNI | MOE_CPU_F16C);
#endif
    default: return 0;
    }
}

int quant_level_best(void) {
    for (int l = QUANT_LEVEL_COUNT - 1; l > 0; l--)
        if (quant_level_supported(l)) return l;
    return QUANT_LEVEL_SCALAR;
}

const quant_kernels *quant_kernels_of(int level) {
    if (level < 0 || level >= QUANT_LEVEL_COUNT || !k_levels[level].name) return NULL;
    return &k_levels[level];
}

size_t quant_act_side_bytes(quant_type type, int64_t n) {
    const quant_traits *t = quant_get_traits(type);
    if (!t || !t->is_quantized || t->vec_dot_type != QUANT_Q8_0 || n <= 0) return 0;
    return (size_t)(n / QUANT_QK) * 8;
}

void quant_act_side_q8_0(const void *a_row, int64_t n, uint8_t *side) {
    const quant_block_q8_0 *a = a_row;
    const int64_t nb = n / QUANT_QK;
    for (int64_t i = 0; i < nb; i++) {
        int32_t s = 0;
        for (int j = 0; j < QUANT_QK; j++) s += a[i].qs[j];
        const float d = quant_fp16_to_fp32(quant_rd16(a[i].d));
        memcpy(side + 4 * i, &s, 4);
        memcpy(side + 4 * (nb + i), &d, 4);
    }
}

float quant_vec_dot(quant_type type, int64_t n, const void *w_row, const void *act_row) {
    const quant_traits *t = quant_get_traits(type);
    MOE_ASSERT(t != NULL);
    MOE_ASSERT(n >= 0 && n % t->block_size == 0);
    return k_levels[quant_level_best()].dot[type](n, w_row, act_row);
}
