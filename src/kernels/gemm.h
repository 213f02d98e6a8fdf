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

/* Runs `count` independent problems (for example one per expert) with
 * n_threads threads (<= 0: OpenMP default), sharing the threads over the tiles
 * of all problems so that small problems still keep every core busy.
 * Problems with M, N or K == 0 are allowed (K == 0 scales C by beta). */
void gemm_grouped(int n_threads, const gemm_problem *p, int count);

/* The plain triple loop, the reference the tests compare against. */
void gemm_ref(const gemm_problem *p);

#endif
