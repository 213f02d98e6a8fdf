/* quant_simd.h: the SIMD kernels of the quantized products and how quant.c
 * chooses them at run time (internal to src/quant and its tests).
 *
 * For: one const table of kernels per instruction-set level (scalar, AVX2,
 * AVX-512 with VNNI), the function that says which levels this processor
 * runs, and the contracts every kernel keeps, so that tests/test_quant_simd.c
 * can call each level directly and compare it with the scalar reference.
 * Not for: callers outside src/quant (they use quant_vec_dot and
 * quant_matmul, which pick the best level themselves), the scalar reference
 * itself (quant.c, quant_k.c).
 *
 * Exactness. A block's product is an integer sum (exact in any order) and
 * then a fixed float formula applied block after block (sumf += ...). Every
 * kernel here computes the same integer sums and applies the same float
 * operations in the same order (no FMA contraction), lane by lane when it
 * works on several outputs at once. So each output is bitwise equal to
 * quant_vec_dot's scalar reference for any input bytes (all quants, -128
 * activations, zero, huge and subnormal fp16 scales), whatever the tile it
 * falls in and the thread that computes it. (NaN scales give NaN either way,
 * not necessarily with the same payload.)
 */
#ifndef MOE_QUANT_QUANT_SIMD_H
#define MOE_QUANT_QUANT_SIMD_H

#include <stddef.h>
#include <stdint.h>

#include "quant/quant.h"

/* Levels, slowest first; append only. */
enum {
    QUANT_LEVEL_SCALAR = 0,  /* portable C: the reference */
    QUANT_LEVEL_AVX2 = 1,    /* AVX2 + FMA + F16C (quant_avx2.c) */
    QUANT_LEVEL_AVX512 = 2,  /* AVX-512 F/BW/DQ/VL + VNNI + F16C
                                (quant_avx512vnni.c, quant_gemm_*avx512vnni.c) */
    QUANT_LEVEL_COUNT
};

/* One weight row of n weights (w) times one activation row (a, already in
 * the type's vec_dot_type): the quant_vec_dot contract. */
typedef float (*quant_dot_fn)(int64_t n, const void *w, const void *a);

/* Several weight rows times one activation row (the decode case):
 *   out[r] = dot(w + r * w_stride, a)   for r < nr (any nr >= 1),
 * each bitwise equal to the type's quant_dot_fn. */
typedef void (*quant_rows_fn)(float *out, const uint8_t *w, size_t w_stride, int64_t nr,
                              const void *a, int64_t n);

/* Products of many rows at once, for quant_matmul with M > 1:
 *   y[m * ldy + j] = dot(w + j * w_stride, a + m * a_stride)
 * for m < M, j < ncols (any ncols >= 1, M >= 1), each value bitwise equal to
 * the type's quant_dot_fn. n = K weights per row; for F32 weights a is x
 * itself (floats, a_stride = 4 K). side: per activation row
 * (stride side_stride) the data quant_act_side_q8_0 computes, for the types whose
 * activations are Q8_0 (unused otherwise). Each kernel decodes a weight block
 * once for several activation rows. */
typedef void (*quant_gemm_fn)(float *y, int64_t ldy, const uint8_t *w, size_t w_stride,
                              int64_t ncols, const uint8_t *a, size_t a_stride,
                              const uint8_t *side, size_t side_stride, int64_t M,
                              int64_t n);

/* Activation quantizer: quantize_row of the vec_dot type (bitwise equal to
 * the scalar one), n a multiple of the block size, x finite. */
typedef void (*quant_act_fn)(const float *x, void *dst, int64_t n);

typedef struct quant_kernels {
    const char *name;                      /* "scalar", "avx2", "avx512vnni" */
    quant_dot_fn dot[QUANT_TYPE_COUNT];    /* every valid type (scalar where the
                                              level has no kernel of its own) */
    quant_rows_fn rows[QUANT_TYPE_COUNT];  /* NULL: one dot per output */
    quant_gemm_fn gemm[QUANT_TYPE_COUNT];  /* NULL: rows or dots */
    quant_act_fn act_q8_0;                 /* NULL: the scalar quantizer */
    quant_act_fn act_q8_K;
} quant_kernels;

/* 1 if `level` can run on this processor (0 for bad ids). */
int quant_level_supported(int level);

/* The fastest supported level. */
int quant_level_best(void);

/* The scalar quantizer of `type` without checks: n a multiple of the block
 * size, src finite for the block types (quant_quantize_row checks both). */
void quant_quantize_unchecked(quant_type type, const float *src, void *dst, int64_t n);

/* The kernels of a level; NULL for a bad id or a level this build lacks
 * (non-x86). The table of a level the processor lacks exists but must not
 * be called. */
const quant_kernels *quant_kernels_of(int level);

/* Side data of one Q8_0 activation row of n values (n / 32 blocks):
 * side[0..nb) int32 sums of each block's 32 quants, then nb floats: each
 * block's fp16 scale as fp32: quant_act_side_bytes(type, n) bytes, 0 for
 * types whose activations are not Q8_0. */
size_t quant_act_side_bytes(quant_type type, int64_t n);
void quant_act_side_q8_0(const void *a_row, int64_t n, uint8_t *side);

/* ------------------------------------------------- the levels' kernels */

/* quant_avx2.c */
float quant_avx2_dot_q4_0(int64_t n, const void *w, const void *a);
float quant_avx2_dot_q8_0(int64_t n, const void *w, const void *a);
float quant_avx2_dot_q4_K(int64_t n, const void *w, const void *a);
float quant_avx2_dot_q5_K(int64_t n, const void *w, const void *a);
float quant_avx2_dot_q6_K(int64_t n, const void *w, const void *a);
void quant_avx2_gemm_q4_0(float *y, int64_t ldy, const uint8_t *w, size_t w_stride,
                          int64_t ncols, const uint8_t *a, size_t a_stride,
                          const uint8_t *side, size_t side_stride, int64_t M, int64_t n);
void quant_avx2_gemm_q4_K(float *y, int64_t ldy, const uint8_t *w, size_t w_stride,
                          int64_t ncols, const uint8_t *a, size_t a_stride,
                          const uint8_t *side, size_t side_stride, int64_t M, int64_t n);
void quant_avx2_gemm_q6_K(float *y, int64_t ldy, const uint8_t *w, size_t w_stride,
                          int64_t ncols, const uint8_t *a, size_t a_stride,
                          const uint8_t *side, size_t side_stride, int64_t M, int64_t n);

/* quant_avx512vnni.c (rows, dots, quantizers); gemm: quant_gemm_avx512vnni.c
 * (Q8_0, Q4_0, F32), quant_gemm_q4k, q5k, q6k_avx512vnni.c */
float quant_vnni_dot_q4_0(int64_t n, const void *w, const void *a);
float quant_vnni_dot_q8_0(int64_t n, const void *w, const void *a);
float quant_vnni_dot_q4_K(int64_t n, const void *w, const void *a);
float quant_vnni_dot_q5_K(int64_t n, const void *w, const void *a);
float quant_vnni_dot_q6_K(int64_t n, const void *w, const void *a);
void quant_vnni_rows_q8_0(float *out, const uint8_t *w, size_t w_stride, int64_t nr,
                          const void *a, int64_t n);
void quant_vnni_rows_q4_K(float *out, const uint8_t *w, size_t w_stride, int64_t nr,
                          const void *a, int64_t n);
void quant_vnni_gemm_q8_0(float *y, int64_t ldy, const uint8_t *w, size_t w_stride,
                          int64_t ncols, const uint8_t *a, size_t a_stride,
                          const uint8_t *side, size_t side_stride, int64_t M, int64_t n);
void quant_vnni_gemm_q4_0(float *y, int64_t ldy, const uint8_t *w, size_t w_stride,
                          int64_t ncols, const uint8_t *a, size_t a_stride,
                          const uint8_t *side, size_t side_stride, int64_t M, int64_t n);
void quant_vnni_gemm_q4_K(float *y, int64_t ldy, const uint8_t *w, size_t w_stride,
                          int64_t ncols, const uint8_t *a, size_t a_stride,
                          const uint8_t *side, size_t side_stride, int64_t M, int64_t n);
void quant_vnni_gemm_q5_K(float *y, int64_t ldy, const uint8_t *w, size_t w_stride,
                          int64_t ncols, const uint8_t *a, size_t a_stride,
                          const uint8_t *side, size_t side_stride, int64_t M, int64_t n);
void quant_vnni_gemm_q6_K(float *y, int64_t ldy, const uint8_t *w, size_t w_stride,
                          int64_t ncols, const uint8_t *a, size_t a_stride,
                          const uint8_t *side, size_t side_stride, int64_t M, int64_t n);
void quant_vnni_gemm_f32(float *y, int64_t ldy, const uint8_t *w, size_t w_stride,
                         int64_t ncols, const uint8_t *a, size_t a_stride,
                         const uint8_t *side, size_t side_stride, int64_t M, int64_t n);
void quant_vnni_act_q8_0(const float *x, void *dst, int64_t n);
void quant_vnni_act_q8_K(const float *x, void *dst, int64_t n);

#endif
