/* quant.h: quantized weight formats (internal), block-compatible with GGUF/ggml.
 *
 * For: the types a GGUF checkpoint stores its weights in (F32, F16, BF16, the
 * 32-weight blocks Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q8_1, the 256-weight super-blocks
 * Q2_K Q3_K Q4_K Q5_K Q6_K Q8_K): software fp16/bf16 conversion, dequantizing
 * a row bit-exactly as ggml's reference does, a reference quantizer per type,
 * dot products of a quantized weight row with an activation row quantized to
 * the matching activation type, and a threaded matrix product over them.
 * The scalar code (quant.c, quant_k.c) is the reference; quant_vec_dot and
 * quant_matmul run the fastest SIMD level this processor has (quant_simd.h),
 * whose results are bitwise equal to it.
 * Not for: the IQ types, or reading GGUF files.
 *
 * Byte layout. Every block is read as bytes: multi-byte fields (fp16 scales,
 * the 32-bit high-bit masks of Q5_0/Q5_1, the fp32 scale and int16 sums of
 * Q8_K) are little-endian and have no alignment requirement, so a row may start
 * at any address. Within a block, "element e" is e-th weight of the block.
 *
 *   Q4_0  d:f16 qs[16]             e<16: lo nibble of qs[e]; e>=16: hi nibble of
 *                                  qs[e-16]. w = (q - 8) * d
 *   Q4_1  d:f16 m:f16 qs[16]       as Q4_0, w = q * d + m
 *   Q5_0  d:f16 qh[4] qs[16]       as Q4_0 plus bit e of qh (LE u32) as bit 4;
 *                                  w = (q - 16) * d
 *   Q5_1  d:f16 m:f16 qh[4] qs[16] as Q5_0, w = q * d + m
 *   Q8_0  d:f16 qs[32] (int8)      w = q * d
 *   Q8_1  d:f16 s:f16 qs[32]       w = q * d; s = fp16(d * sum(q))
 *   Q2_K  scales[16] qs[64] d dmin 16 groups of 16; group g has scale
 *                                  scales[g] & 15 and min scales[g] >> 4;
 *                                  e = 128h + 32j + l: q = (qs[32h+l] >> 2j) & 3;
 *                                  w = d*sc*q - dmin*m
 *   Q3_K  hmask[32] qs[64] scales[12] d
 *                                  low 2 bits as Q2_K, bit 2 = bit (4h+j) of
 *                                  hmask[l]; q3 = low2 - (bit ? 0 : 4);
 *                                  16 signed 6-bit scales (see quant_q3k_scale);
 *                                  w = d*(sc-32)*q3
 *   Q4_K  d dmin scales[12] qs[128] 8 groups of 32 with 6-bit scale and min
 *                                  (quant_k4_scale_min); e = 64c + l (l<32): lo
 *                                  nibble of qs[32c+l], e = 64c+32+l: hi nibble;
 *                                  w = d*sc*q - dmin*m
 *   Q5_K  d dmin scales[12] qh[32] qs[128]
 *                                  as Q4_K plus bit 4 = bit (e/32) of qh[e%32]
 *   Q6_K  ql[128] qh[64] scales[16] (int8) d
 *                                  e = 128h + 32k + l: low 4 bits from ql[64h +
 *                                  l + 32(k&1)] (lo nibble for k<2, hi for k>=2),
 *                                  high 2 bits (qh[32h+l] >> 2k) & 3; q - 32;
 *                                  w = d*scales[e/16]*q
 *   Q8_K  d:f32 qs[256] bsums[16]:i16 (sum of each 16 qs)   w = d*q
 */
#ifndef MOE_QUANT_QUANT_H
#define MOE_QUANT_QUANT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "moe.h"

/* Type ids, equal to GGUF's (ggml_type). Ids not listed (4, 5, 16..29) are
 * the removed and IQ types: every function here rejects them. */
typedef enum quant_type {
    QUANT_F32 = 0,
    QUANT_F16 = 1,
    QUANT_Q4_0 = 2,
    QUANT_Q4_1 = 3,
    QUANT_Q5_0 = 6,
    QUANT_Q5_1 = 7,
    QUANT_Q8_0 = 8,
    QUANT_Q8_1 = 9,
    QUANT_Q2_K = 10,
    QUANT_Q3_K = 11,
    QUANT_Q4_K = 12,
    QUANT_Q5_K = 13,
    QUANT_Q6_K = 14,
    QUANT_Q8_K = 15,
    QUANT_BF16 = 30,
    QUANT_TYPE_COUNT = 31 /* one past the largest id */
} quant_type;

#define QUANT_QK 32   /* weights per block of the Q*_0 / Q*_1 types */
#define QUANT_QK_K 256 /* weights per super-block of the K types */

/* ------------------------------------------------------------ block structs */

typedef struct { uint8_t d[2]; uint8_t qs[16]; } quant_block_q4_0;
typedef struct { uint8_t d[2]; uint8_t m[2]; uint8_t qs[16]; } quant_block_q4_1;
typedef struct { uint8_t d[2]; uint8_t qh[4]; uint8_t qs[16]; } quant_block_q5_0;
typedef struct { uint8_t d[2]; uint8_t m[2]; uint8_t qh[4]; uint8_t qs[16]; } quant_block_q5_1;
typedef struct { uint8_t d[2]; int8_t qs[32]; } quant_block_q8_0;
typedef struct { uint8_t d[2]; uint8_t s[2]; int8_t qs[32]; } quant_block_q8_1;
typedef struct {
    uint8_t scales[16]; /* lo nibble: scale, hi nibble: min, per 16 weights */
    uint8_t qs[64];     /* 2-bit quants */
    uint8_t d[2];       /* f16 super-scale of the scales */
    uint8_t dmin[2];    /* f16 super-scale of the mins */
} quant_block_q2_K;
typedef struct {
    uint8_t hmask[32];  /* bit 2 of each quant */
    uint8_t qs[64];     /* bits 0-1 */
    uint8_t scales[12]; /* 16 6-bit scales, offset by 32 */
    uint8_t d[2];       /* f16 super-scale */
} quant_block_q3_K;
typedef struct {
    uint8_t d[2];       /* f16 super-scale of the scales */
    uint8_t dmin[2];    /* f16 super-scale of the mins */
    uint8_t scales[12]; /* 8 6-bit scales and 8 6-bit mins */
    uint8_t qs[128];    /* 4-bit quants */
} quant_block_q4_K;
typedef struct {
    uint8_t d[2];
    uint8_t dmin[2];
    uint8_t scales[12];
    uint8_t qh[32];     /* bit 4 of each quant */
    uint8_t qs[128];    /* bits 0-3 */
} quant_block_q5_K;
typedef struct {
    uint8_t ql[128];    /* bits 0-3 */
    uint8_t qh[64];     /* bits 4-5 */
    int8_t scales[16];  /* 8-bit scale per 16 weights */
    uint8_t d[2];       /* f16 super-scale */
} quant_block_q6_K;
typedef struct {
    uint8_t d[4];       /* f32 scale, little-endian */
    int8_t qs[256];
    uint8_t bsums[32];  /* 16 int16, little-endian: sum of qs per 16 */
} quant_block_q8_K;

_Static_assert(sizeof(quant_block_q4_0) == 18, "q4_0 block size");
_Static_assert(sizeof(quant_block_q4_1) == 20, "q4_1 block size");
_Static_assert(sizeof(quant_block_q5_0) == 22, "q5_0 block size");
_Static_assert(sizeof(quant_block_q5_1) == 24, "q5_1 block size");
_Static_assert(sizeof(quant_block_q8_0) == 34, "q8_0 block size");
_Static_assert(sizeof(quant_block_q8_1) == 36, "q8_1 block size");
_Static_assert(sizeof(quant_block_q2_K) == 84, "q2_K block size");
_Static_assert(sizeof(quant_block_q3_K) == 110, "q3_K block size");
_Static_assert(sizeof(quant_block_q4_K) == 144, "q4_K block size");
_Static_assert(sizeof(quant_block_q5_K) == 176, "q5_K block size");
_Static_assert(sizeof(quant_block_q6_K) == 210, "q6_K block size");
_Static_assert(sizeof(quant_block_q8_K) == 292, "q8_K block size");

/* ---------------------------------------------------------------- traits */

typedef struct quant_traits {
    const char *name;       /* ggml's name: "f32", "q4_0", "q4_K", ... */
    int block_size;         /* weights per block (1 for F32/F16/BF16) */
    size_t block_bytes;     /* bytes per block */
    int is_quantized;       /* 1 for the block types, 0 for F32/F16/BF16 */
    quant_type vec_dot_type; /* what quant_vec_dot wants the activations in:
                                Q8_0, Q8_1 or Q8_K; F32 for float weights */
} quant_traits;

/* The traits of a type, or NULL for an unknown id. */
const quant_traits *quant_get_traits(quant_type type);

/* 1 if `type` is one of the ids above. */
int quant_type_valid(quant_type type);

/* Bytes of a row of n weights (n must be a multiple of the block size). */
size_t quant_row_size(quant_type type, int64_t n);

/* MOE_OK if type is known and n >= 0 is a multiple of its block size; else
 * MOE_ERR_ARG / MOE_ERR_SHAPE with a message naming `what`. */
moe_status quant_check_row(quant_type type, int64_t n, const char *what,
                           moe_error *err);

/* ----------------------------------------------------------- conversions */

/* Little-endian field access. */
static inline uint16_t quant_rd16(const uint8_t *p) {
    return (uint16_t)(p[0] | (p[1] << 8));
}
static inline void quant_wr16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)(v & 0xff);
    p[1] = (uint8_t)(v >> 8);
}
static inline uint32_t quant_rd32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}
static inline void quant_wr32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v & 0xff);
    p[1] = (uint8_t)((v >> 8) & 0xff);
    p[2] = (uint8_t)((v >> 16) & 0xff);
    p[3] = (uint8_t)(v >> 24);
}
static inline float quant_bits_to_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static inline uint32_t quant_f32_to_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

/* IEEE binary16 -> binary32, exact (subnormals, Inf, NaN payload kept). */
static inline float quant_fp16_to_fp32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    uint32_t bits;
    if (exp == 0x1f) {            /* Inf / NaN */
        bits = sign | 0x7f800000u | (mant << 13);
    } else if (exp != 0) {        /* normal */
        bits = sign | ((exp + 112u) << 23) | (mant << 13);
    } else if (mant == 0) {       /* +-0 */
        bits = sign;
    } else {                      /* subnormal: mant * 2^-24, normalize */
        uint32_t e = 113;         /* biased f32 exponent of 2^-14 */
        while (!(mant & 0x400u)) { mant <<= 1; e--; }
        bits = sign | (e << 23) | ((mant & 0x3ffu) << 13);
    }
    return quant_bits_to_f32(bits);
}

/* binary32 -> binary16, round to nearest even; overflow gives Inf, NaN stays
 * NaN (quiet, top payload bits kept), tiny values become subnormals or 0. */
static inline uint16_t quant_fp32_to_fp16(float f) {
    uint32_t x = quant_f32_to_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    x &= 0x7fffffffu;
    if (x >= 0x7f800000u) /* Inf or NaN */
        return (uint16_t)(sign | (x > 0x7f800000u ? 0x7e00u | ((x >> 13) & 0x3ffu) : 0x7c00u));
    if (x >= 0x47800000u) /* >= 65536: Inf */
        return (uint16_t)(sign | 0x7c00u);
    if (x >= 0x38800000u) { /* normal f16 range (>= 2^-14) */
        uint32_t h = (((x >> 23) - 112u) << 10) | ((x >> 13) & 0x3ffu);
        uint32_t rem = x & 0x1fffu;
        if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++; /* may carry to Inf */
        return (uint16_t)(sign | h);
    }
    if (x < 0x33000000u) /* < 2^-25: rounds to 0 (2^-25 itself ties to 0 below) */
        return sign;
    { /* subnormal: value = m * 2^(e-150) = (m >> (126-e)) units of 2^-24 */
        uint32_t e = x >> 23, m = (x & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126u - e; /* 14..24 */
        uint32_t q = m >> shift, rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1u);
        if (rem > half || (rem == half && (q & 1u))) q++;
        return (uint16_t)(sign | q);
    }
}

/* bfloat16 -> binary32 (exact). */
static inline float quant_bf16_to_fp32(uint16_t h) {
    return quant_bits_to_f32((uint32_t)h << 16);
}

/* binary32 -> bfloat16, round to nearest even; NaN stays a quiet NaN. */
static inline uint16_t quant_fp32_to_bf16(float f) {
    uint32_t x = quant_f32_to_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40u);
    return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

/* ggml's rounding helper: nearest integer, ties to even, for |f| < 2^22
 * (the float addition of 1.5 * 2^23 leaves the integer in the mantissa). */
static inline int quant_nearest_int(float f) {
    float v = f + 12582912.f;
    int32_t i;
    memcpy(&i, &v, sizeof i);
    return (i & 0x007fffff) - 0x00400000;
}

/* 1 / d for a block scale d, or 0 when d is 0 or so small (|d| < 1/FLT_MAX:
 * a block whose largest magnitude is below ~1e-37) that 1 / d overflows.
 * Such a block's stored (fp16) scale is 0 anyway, so its quants get the zero
 * level, as an all-zero block's do, and x / d never reaches a float-to-int
 * cast as an infinity or a NaN (undefined behaviour). The scalar quantizers
 * and the SIMD activation quantizers share it, so they stay bitwise equal. */
static inline int quant_isinf(float f) { return (quant_f32_to_bits(f) & 0x7fffffffu) == 0x7f800000u; }
static inline float quant_inv_scale(float d) {
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    return quant_isinf(id) ? 0.0f : id;
}

/* The 6-bit scale and min of group j (0..7) of a Q4_K / Q5_K block:
 * j < 4: low 6 bits of s[j] and s[j+4]; j >= 4: low nibble / high nibble of
 * s[j+4] plus the top 2 bits of s[j-4] / s[j] as bits 4-5. */
static inline void quant_k4_scale_min(int j, const uint8_t *s, uint8_t *sc, uint8_t *m) {
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (uint8_t)((s[j + 4] & 0xf) | ((s[j - 4] >> 6) << 4));
        *m = (uint8_t)((s[j + 4] >> 4) | ((s[j] >> 6) << 4));
    }
}

/* The 6-bit scale (0..63, stored offset by 32) of group j (0..15) of a Q3_K
 * block: low 4 bits in nibble (j/8) of s[j%8], high 2 bits at bit 2*(j/4) of
 * s[8 + j%4]. */
static inline int quant_q3k_scale(int j, const uint8_t *s) {
    int lo = j < 8 ? (s[j] & 0xf) : (s[j - 8] >> 4);
    int hi = (s[8 + (j & 3)] >> (2 * (j >> 2))) & 3;
    return lo | (hi << 4);
}

/* ------------------------------------------------------------------- rows */

/* dst[n] = the weights of the row src (n weights of `type`), bit-exact with
 * ggml's dequantize_row_* (same formula, same float operation order).
 * Fails on an unknown type or an n that is not a multiple of the block size. */
moe_status quant_dequantize_row(quant_type type, const void *src, float *dst,
                                int64_t n, moe_error *err);

/* dst = src[n] quantized to `type` (quant_row_size(type, n) bytes).
 * Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q8_1 Q8_K follow ggml's reference quantizers; the
 * other K types use a scale/min search of their own (not bit-identical to
 * ggml's output). Block types fail with MOE_ERR_NONFINITE on NaN/Inf input. */
moe_status quant_quantize_row(quant_type type, const float *src, void *dst,
                              int64_t n, moe_error *err);

/* ------------------------------------------------------------ products */

/* Dot product of a weight row of `type` (n weights) with an activation row
 * already quantized to quant_get_traits(type)->vec_dot_type (a const float *
 * for F32/F16/BF16 weights). Integer sums inside each block, as ggml does,
 * then the block's float formula, block after block; the SIMD kernels give
 * the scalar reference's bits.
 * Programmer errors only: type must be valid and n a multiple of its block
 * size (checked with MOE_ASSERT). */
float quant_vec_dot(quant_type type, int64_t n, const void *w_row,
                    const void *act_row);

/* Bytes of work space quant_matmul needs for M activation rows of K (the
 * quantized rows, plus per-block sums and scales for Q8_0 activations). */
size_t quant_matmul_work_size(quant_type type, int64_t M, int64_t K);

/* y[M, N] = x[M, K] w^T, w[N, K] stored as N rows of `type`:
 *   y[m, n] = quant_vec_dot(type, K, row n of w, row m of x quantized once).
 * work: quant_matmul_work_size(type, M, K) bytes (any alignment), or NULL to
 * allocate it here. Threads: one OpenMP region; each thread quantizes a
 * share of the rows of x, then takes a contiguous range of the rows of w (and
 * of x too when w has few rows); n_threads <= 0 uses the OpenMP default. Each
 * output is one kernel evaluation equal to quant_vec_dot, so the result does
 * not depend on the thread count.
 * Fails on an unknown type, K not a multiple of the block size, negative
 * sizes, a too small work space, or a non-finite x. */
moe_status quant_matmul(float *y, const float *x, const void *w, quant_type type,
                        int64_t M, int64_t N, int64_t K, int n_threads,
                        void *work, size_t work_size, moe_error *err);

/* One product of a batch: y[M, N] = x[M, K] w^T, as quant_matmul's
 * arguments. */
typedef struct quant_mm {
    float *y;
    const float *x;
    const void *w;
    quant_type type;
    int64_t M, N, K;
} quant_mm;

/* Bytes of work space quant_matmul_batch needs: the bookkeeping of a batch
 * of more than 16 products (quant_matmul_batch_index_size), then the
 * quantized rows of each distinct activation (products with the same x, M,
 * K and activation type share them). */
size_t quant_matmul_batch_work_size(const quant_mm *p, int n);

/* Bytes of the bookkeeping of a batch of n products held in its work space:
 * 0 up to 16 products (they use the stack), a multiple of 64 beyond. A
 * caller that sizes its work space once (the engine) adds this for its
 * largest batch to the largest sum of activation rows. */
size_t quant_matmul_batch_index_size(int n);

/* The n products p[0 .. n-1], each exactly as quant_matmul computes it
 * (bitwise), in one OpenMP region: the threads quantize the distinct
 * activations, meet once, then run the products one after the other with
 * no barrier between them, each split across all threads. No y may overlap
 * any x or another y. work: quant_matmul_batch_work_size bytes, or NULL for
 * a one-off call (then allocated and freed here); with work, nothing is
 * allocated.
 * Fails as quant_matmul does, naming the product ("product i"); on a failure
 * the outputs are unspecified. */
moe_status quant_matmul_batch(const quant_mm *p, int n, int n_threads, void *work,
                              size_t work_size, moe_error *err);

/* ------------------------------------- per-type kernels (src/quant only) */

/* K-quant kernels in quant_k.c; n is a multiple of QUANT_QK_K. */
void quant_dequant_q2_K(const void *src, float *dst, int64_t n);
void quant_dequant_q3_K(const void *src, float *dst, int64_t n);
void quant_dequant_q4_K(const void *src, float *dst, int64_t n);
void quant_dequant_q5_K(const void *src, float *dst, int64_t n);
void quant_dequant_q6_K(const void *src, float *dst, int64_t n);
void quant_dequant_q8_K(const void *src, float *dst, int64_t n);
void quant_quant_q2_K(const float *src, void *dst, int64_t n);
void quant_quant_q3_K(const float *src, void *dst, int64_t n);
void quant_quant_q4_K(const float *src, void *dst, int64_t n);
void quant_quant_q5_K(const float *src, void *dst, int64_t n);
void quant_quant_q6_K(const float *src, void *dst, int64_t n);
void quant_quant_q8_K(const float *src, void *dst, int64_t n);
/* The K quantizers above with the scalar group fits: the reference the
 * vector-lane fits (quant_k_lanes.c) equal bit for bit. */
void quant_quant_q2_K_ref(const float *src, void *dst, int64_t n);
void quant_quant_q3_K_ref(const float *src, void *dst, int64_t n);
void quant_quant_q4_K_ref(const float *src, void *dst, int64_t n);
void quant_quant_q5_K_ref(const float *src, void *dst, int64_t n);
void quant_quant_q6_K_ref(const float *src, void *dst, int64_t n);
float quant_dot_q2_K(int64_t n, const void *w, const void *a);
float quant_dot_q3_K(int64_t n, const void *w, const void *a);
float quant_dot_q4_K(int64_t n, const void *w, const void *a);
float quant_dot_q5_K(int64_t n, const void *w, const void *a);
float quant_dot_q6_K(int64_t n, const void *w, const void *a);
float quant_dot_q8_K(int64_t n, const void *w, const void *a);

#endif
