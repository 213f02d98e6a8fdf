/* attn.h: the inference engine's attention over its KV cache: the cache
 * layout and the kernels that attend a few query rows at once (internal).
 *
 * For: forward.c (which stores K and V and hands out groups of rows to
 * threads) and the kernel test. Not for: training attention (kernels/
 * attention.h, whole sequences with the probabilities kept for backward),
 * sliding windows, ALiBi or quantized caches.
 *
 * Cache of one (layer, kv head), capacity C positions, head size hd:
 *   K transposed in blocks of ATTN_KB positions: kt[ceil(C / KB)][hd][KB],
 *     key j, element c at kt[(j / KB) * hd * KB + c * KB + j % KB]
 *     (a vector of KB lanes holds one element of KB consecutive keys, so
 *     q . k_j for KB keys is hd broadcast-FMAs with no horizontal sums);
 *   V as rows: v[C][hd].
 *
 * One query row q[hd] whose causal window is keys 0 .. np-1:
 *   s_j = (sum_c q_c k_jc) * scale      products summed in c order
 *   e_j = exp(s_j - max_j s_j)          ~2 ulp: exp_vec (fastmath.h), or
 *                                       its polynomial in FMA (AVX-512)
 *   Z   = sum_j e_j                     KB lanes (lane j % KB, blocks in
 *                                       order), then the lanes in an order
 *                                       fixed by the kernel
 *   o_c = (sum_j e_j v_jc) * (1 / Z)    products summed in j order
 * Each output element is this chain of operations whatever the other rows
 * of its group, the group size, the chunk the row came in or the thread
 * that ran it, so a kernel gives bitwise the same row for decode and for any
 * prompt split. Different kernels (portable, AVX2, AVX-512) round
 * differently (FMA or not); the choice depends only on the processor and hd.
 */
#ifndef MOE_KERNELS_ATTN_DECODE_H
#define MOE_KERNELS_ATTN_DECODE_H

#include <stddef.h>

#define ATTN_KB 16  /* key positions per block of the transposed K cache */
#define ATTN_RMAX 8 /* query rows per group at most */

/* Kernel identifiers; append only. */
enum {
    ATTN_KERNEL_PORTABLE = 0, /* plain C, any processor, any hd */
    ATTN_KERNEL_AVX2 = 1,     /* AVX2 + FMA, hd a multiple of 8 (tiles of <= 4 rows) */
    ATTN_KERNEL_AVX512 = 2,   /* AVX-512 F, hd a multiple of 16 */
    ATTN_KERNEL_COUNT
};

/* Up to ATTN_RMAX query rows attending the same kv head. */
typedef struct attn_group {
    int R;                      /* rows, 1 .. ATTN_RMAX */
    const float *q[ATTN_RMAX];  /* [hd] query of each row */
    float *o[ATTN_RMAX];        /* [hd] output of each row */
    int np[ATTN_RMAX];          /* row r attends keys 0 .. np[r] - 1 (np >= 1) */
} attn_group;

/* Attends the rows of g to the cache kt, v of one kv head (layout above),
 * scale applied to the dot products. s: scratch [R][lds] floats with
 * lds >= max np rounded up to a multiple of ATTN_KB. Reads key blocks up to
 * that rounding (lanes past np are computed and ignored). */
typedef void (*attn_kernel_fn)(const attn_group *g, const float *kt, const float *v, int hd,
                               float scale, float *s, size_t lds);

void attn_group_portable(const attn_group *g, const float *kt, const float *v, int hd,
                         float scale, float *s, size_t lds);
void attn_group_avx2(const attn_group *g, const float *kt, const float *v, int hd,
                     float scale, float *s, size_t lds);
void attn_group_avx512(const attn_group *g, const float *kt, const float *v, int hd,
                       float scale, float *s, size_t lds);

/* 1 if `kernel` runs on this processor for head size hd, else 0. */
int attn_kernel_supported(int kernel, int hd);

/* The fastest supported kernel for hd. */
int attn_best_kernel(int hd);

/* "portable", "avx2", "avx512"; "?" for a bad id. */
const char *attn_kernel_name(int kernel);

/* The function of a kernel id (the portable one for a bad or unsupported id). */
attn_kernel_fn attn_kernel_get(int kernel, int hd);

/* Writes key k[hd] at position pos of the transposed cache kt. */
static inline void attn_store_k(float *kt, const float *k, int pos, int hd) {
    float *b = kt + (size_t)(pos / ATTN_KB) * hd * ATTN_KB + pos % ATTN_KB;
    for (int c = 0; c < hd; c++) b[(size_t)c * ATTN_KB] = k[c];
}

/* Floats of the transposed K cache of one kv head for C positions. */
static inline size_t attn_kt_floats(int C, int hd) {
    return (size_t)((C + ATTN_KB - 1) / ATTN_KB) * hd * ATTN_KB;
}

/* In place over s[0 .. np): s_j = exp(s_j - max s) (exp_vec); returns
 * 1 / sum_j s_j, summed in ATTN_KB lanes then a fixed tree (see above). The
 * softmax of the portable and AVX2 kernels (AVX-512 has its own). */
float attn_softmax_row(float *s, int np);

#endif
