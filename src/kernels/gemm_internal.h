/* gemm_internal.h: what gemm.c, its SIMD micro-kernel files and the GEMM test
 * share (internal).
 *
 * For: choosing a micro-kernel explicitly (so the test can run every kernel the
 * processor supports against gemm_ref) and the micro-kernel contract.
 * Not for: callers of the library; they use gemm_grouped (gemm.h) or
 * moe_sgemm (moe.h), which pick the best kernel themselves.
 */
#ifndef MOE_KERNELS_GEMM_INTERNAL_H
#define MOE_KERNELS_GEMM_INTERNAL_H

#include "kernels/gemm.h"

#include <stddef.h>

/* Kernel identifiers; append only. */
enum {
    GEMM_KERNEL_SCALAR = 0, /* portable C, any processor */
    GEMM_KERNEL_AVX2 = 1,   /* AVX2 + FMA, 6x16 register tile */
    GEMM_KERNEL_AVX512 = 2, /* AVX-512 F/BW/DQ/VL, 14x32 register tile */
    GEMM_KERNEL_COUNT
};

/* The fastest kernel this processor (and its operating system) supports. */
int gemm_best_kernel(void);

/* 1 if `kernel` can run on this processor, else 0 (also 0 for bad ids). */
int gemm_kernel_supported(int kernel);

/* "scalar", "avx2", "avx512"; "?" for a bad id. */
const char *gemm_kernel_name(int kernel);

/* gemm_grouped with a given kernel. An unsupported or bad id falls back to
 * the best supported kernel (so it never runs an instruction the processor
 * lacks). Results are bitwise identical for every n_threads, for one kernel;
 * different kernels round differently. */
moe_status gemm_grouped_with(const gemm_ws *ws, int kernel, int n_threads,
                             const gemm_problem *p, int count);

/* Micro-kernel contract (all three kernels):
 *   C[m, n] (row stride ldc) = alpha * Ap^T Bp + beta * C   on the valid part
 * where Ap is one packed A sliver [kc][MR] (MR rows of op(A), k-major) and Bp
 * one packed B sliver [kc][NR] (NR columns of op(B), k-major, 64-byte
 * aligned), both zero-padded past m rows / n columns. 1 <= m <= MR,
 * 1 <= n <= NR, kc >= 1. beta == 0 never reads C. Only C[0..m)[0..n) is
 * written. Each output element is its products summed in k order, then
 * fma(beta, C, alpha * sum) (the scalar kernel: alpha * sum + beta * C as the
 * compiler rounds it); partial tiles round exactly like full ones, so the
 * value of an element does not depend on where tiles are cut. */
#define GEMM_AVX512_MR 14
#define GEMM_AVX512_NR 32
#define GEMM_AVX2_MR 6
#define GEMM_AVX2_NR 16

void gemm_ukernel_avx512(int kc, const float *Ap, const float *Bp, float *C,
                         int ldc, int m, int n, float alpha, float beta);
void gemm_ukernel_avx2(int kc, const float *Ap, const float *Bp, float *C,
                       int ldc, int m, int n, float alpha, float beta);

/* Packing: w vectors of length kc into ceil(w / R) slivers dst[.][kc][R]
 * (R = MR or NR), the last one zero-padded past w; sliver q starts at
 * dst + q * kc * R, dst is 64-byte aligned. kcontig = 1: vector r, element k
 * is src[r * ld + k] (a transpose: op(A) rows of A [M,K], op(B) columns of
 * B [N,K]); kcontig = 0: it is src[k * ld + r] (a copy, done row by row of k
 * so the source is read in long runs). R <= 32. */
void gemm_pack_avx512(float *dst, const float *src, ptrdiff_t ld, int kcontig,
                      int w, int kc, int R);

#endif
