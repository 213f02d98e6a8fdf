/* gemm.h: fp32 matrix products for the library (internal).
 *
 * For: the dense GEMM behind moe_sgemm and the grouped GEMM the MoE layer uses
 * to run every expert on its own contiguous rows in one parallel region.
 * Not for: quantized products (see the inference kernels).
 *
 * All matrices are row-major. One problem computes
 *   C[M,N] = alpha * op(A)[M,K] op(B)[K,N] + beta * C
 * with op(A) = A ([M,K], stride lda) or A^T (A stored [K,M]) and likewise B.
 * beta == 0 never reads C. Each output tile is computed by one thread with a
 * fixed summation order, so results do not depend on the thread count.
 */
#ifndef MOE_KERNELS_GEMM_H
#define MOE_KERNELS_GEMM_H

#include <stddef.h>

#include "core/error.h"

typedef struct gemm_problem {
    int M, N, K;        /* op(A) is [M, K], op(B) is [K, N], C is [M, N] */
    int transA, transB; /* 0: as stored; 1: transposed */
    const float *A;     /* [M, K] or [K, M] */
    int lda;
    const float *B;     /* [K, N] or [N, K] */
    int ldb;
    float *C;           /* [M, N] */
    int ldc;
    float alpha, beta;
} gemm_problem;

/* A problem C = op(A) op(B) + beta C (alpha = 1), in operand order. */
static inline gemm_problem gemm_make(int M, int N, int K, int transA, const float *A, int lda,
                                     int transB, const float *B, int ldb, float *C, int ldc,
                                     float beta) {
    gemm_problem p = { .M = M, .N = N, .K = K, .transA = transA, .transB = transB, .A = A,
                       .lda = lda, .B = B, .ldb = ldb, .C = C, .ldc = ldc, .alpha = 1.0f,
                       .beta = beta };
    return p;
}

/* The GEMM's packing buffers: one per thread, each sized once for the
 * largest tile of any kernel (about 1.4 MB), so that a product allocates
 * nothing. Owned by whoever runs the products (the layer, the model). */
typedef struct gemm_ws {
    float *buf;    /* [n_threads * gemm_ws_thread_floats()], 64-byte aligned */
    int n_threads; /* threads it serves; a product asking for more uses these */
} gemm_ws;

/* Buffers for n_threads threads (<= 0: the OpenMP default). MOE_ERR_NOMEM
 * when they cannot be had (ws zeroed). */
moe_status gemm_ws_init(gemm_ws *ws, int n_threads, moe_error *err);
void gemm_ws_free(gemm_ws *ws); /* zeroes ws; safe on a zeroed one */

/* Floats of one thread's packing buffer. */
size_t gemm_ws_thread_floats(void);

/* Runs `count` independent problems (for example one per expert) with
 * n_threads threads (<= 0: OpenMP default; at most ws->n_threads, which
 * changes no result), sharing the threads over the tiles of all problems so
 * that small problems still keep every core busy. Problems with M, N or
 * K == 0 are allowed (K == 0 scales C by beta). ws NULL: buffers are
 * allocated for this call (tests, one-off products), and MOE_ERR_NOMEM is
 * returned, with nothing computed, when they cannot be; with a workspace it
 * never fails. */
moe_status gemm_grouped(const gemm_ws *ws, int n_threads, const gemm_problem *p, int count);

/* The plain triple loop, the reference the tests compare against. */
void gemm_ref(const gemm_problem *p);

#endif
