/* gemm.c: blocked, packed, multithreaded fp32 GEMM (gemm.h, gemm_internal.h)
 * and the public moe_sgemm.
 *
 * For: C[M,N] = alpha * op(A)[M,K] op(B)[K,N] + beta * C, row-major, for one
 * problem or a group of independent problems (one per expert) in one
 * parallel region; the scalar reference gemm_ref; choosing the micro-kernel
 * at run time.
 * Not for: the SIMD micro-kernels themselves (gemm_avx512.c, gemm_avx2.c),
 * quantized products.
 *
 * Design (Goto/BLIS):
 * - The output of every problem is cut into tiles of at most MC x NC. A task
 *   is one tile; the tasks of ALL problems form one list that the OpenMP
 *   threads take from dynamically, so many small experts and a few big ones
 *   keep every core busy alike.
 * - One task loops over K in blocks of KC, in order. For each block it packs
 *   op(A)[tile rows, K block] into slivers [KC][MR] and op(B)[K block, tile
 *   columns] into slivers [KC][NR] (the packing absorbs the transposes, so
 *   the micro-kernel has one code path), then runs the MR x NR micro-kernel
 *   over the tile: an A sliver stays in L1 while the B block (KC x NC) is
 *   streamed from L2. The first K block applies beta, later ones add.
 * - Determinism: each output element is owned by one task and so by one
 *   thread, and its value depends only on the kernel and KC (both fixed per
 *   kernel), never on the thread count or on which thread ran the task.
 * - Memory: one aligned packing buffer per thread per call, sized for the
 *   largest tile in the call. If it cannot be allocated that thread computes
 *   its tiles unpacked (slow, same sums in k order, different rounding).
 * - No global mutable state.
 */
#include "kernels/gemm_internal.h"

#include "moe.h"

#include <omp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

/* C[m, n] = alpha * Ap^T Bp + beta * C for one register tile (see
 * gemm_internal.h for the contract). */
typedef void (*gemm_ukernel_fn)(int kc, const float *Ap, const float *Bp,
                                float *C, int ldc, int m, int n, float alpha,
                                float beta);

/* dst[kc][R] from w <= R vectors (see gemm_pack_avx512 in gemm_internal.h). */
typedef void (*gemm_pack_fn)(float *dst, const float *src, ptrdiff_t ld,
                             int kcontig, int w, int kc, int R);

/* A micro-kernel and the blocking that goes with it. */
typedef struct kernel_desc {
    const char *name;   /* "scalar", "avx2", "avx512" */
    gemm_ukernel_fn fn; /* the micro-kernel */
    gemm_pack_fn pack;  /* packs one A or B sliver */
    int mr, nr;         /* register tile [mr, nr] */
    int kc;             /* K block; fixed, since it sets the rounding */
    int mc, nc;         /* task tile [mc, nc]; multiples of mr and nr */
} kernel_desc;

/* ------------------------------------------------------ scalar kernel */

#define SC_MR 4
#define SC_NR 16

/* C[m, n] = alpha * Ap[kc][4]^T Bp[kc][16] + beta * C, portable C. */
static void ukernel_scalar(int kc, const float *Ap, const float *Bp, float *C,
                           int ldc, int m, int n, float alpha, float beta) {
    float acc[SC_MR][SC_NR] = {{0}};
    for (int k = 0; k < kc; k++) {
        const float *a = Ap + (size_t)k * SC_MR;
        const float *b = Bp + (size_t)k * SC_NR;
        for (int i = 0; i < SC_MR; i++)
            for (int j = 0; j < SC_NR; j++) acc[i][j] += a[i] * b[j];
    }
    for (int i = 0; i < m; i++) {
        float *c = C + (ptrdiff_t)i * ldc;
        if (beta != 0.0f) {
            for (int j = 0; j < n; j++) c[j] = alpha * acc[i][j] + beta * c[j];
        } else {
            for (int j = 0; j < n; j++) c[j] = alpha * acc[i][j];
        }
    }
}

static void pack_generic(float *restrict dst, const float *restrict src,
                         ptrdiff_t ld, int kcontig, int w, int kc, int R);

/* ---------------------------------------------------- kernel selection */

#ifndef GEMM_KC
#define GEMM_KC 384
#endif
#ifndef GEMM_MC_ROWS
#define GEMM_MC_ROWS 4096 /* rounded down to a multiple of mr */
#endif
#ifndef GEMM_NC
#define GEMM_NC 768
#endif

static const kernel_desc kernels[GEMM_KERNEL_COUNT] = {
    [GEMM_KERNEL_SCALAR] = {"scalar", ukernel_scalar, pack_generic, SC_MR, SC_NR, 256,
                            (256 / SC_MR) * SC_MR, (256 / SC_NR) * SC_NR},
    [GEMM_KERNEL_AVX2] = {"avx2", gemm_ukernel_avx2, pack_generic, GEMM_AVX2_MR, GEMM_AVX2_NR,
                          GEMM_KC, (GEMM_MC_ROWS / GEMM_AVX2_MR) * GEMM_AVX2_MR,
                          (GEMM_NC / GEMM_AVX2_NR) * GEMM_AVX2_NR},
    [GEMM_KERNEL_AVX512] = {"avx512", gemm_ukernel_avx512, gemm_pack_avx512,
                            GEMM_AVX512_MR,
                            GEMM_AVX512_NR, GEMM_KC,
                            (GEMM_MC_ROWS / GEMM_AVX512_MR) * GEMM_AVX512_MR,
                            (GEMM_NC / GEMM_AVX512_NR) * GEMM_AVX512_NR},
};

int gemm_kernel_supported(int kernel) {
    switch (kernel) {
    case GEMM_KERNEL_SCALAR: return 1;
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    case GEMM_KERNEL_AVX2:
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case GEMM_KERNEL_AVX512: return __builtin_cpu_supports("avx512f");
#endif
    default: return 0;
    }
}

int gemm_best_kernel(void) {
    for (int k = GEMM_KERNEL_COUNT - 1; k > 0; k--)
        if (gemm_kernel_supported(k)) return k;
    return GEMM_KERNEL_SCALAR;
}

const char *gemm_kernel_name(int kernel) {
    if (kernel < 0 || kernel >= GEMM_KERNEL_COUNT) return "?";
    return kernels[kernel].name;
}

/* ------------------------------------------------------------- packing */

static int imin(int a, int b) { return a < b ? a : b; }

/* Portable sliver packing; same contract as gemm_pack_avx512
 * (gemm_internal.h): dst[kc][R] from w <= R vectors, zero past w. */
static void pack_generic(float *restrict dst, const float *restrict src,
                         ptrdiff_t ld, int kcontig, int w, int kc, int R) {
    if (kcontig) { /* vector r, element k at src[r * ld + k] */
        for (int r = 0; r < w; r++) {
            const float *restrict s = src + r * ld;
            for (int k = 0; k < kc; k++) dst[(size_t)k * R + r] = s[k];
        }
        for (int r = w; r < R; r++)
            for (int k = 0; k < kc; k++) dst[(size_t)k * R + r] = 0.0f;
    } else { /* element k of vector r at src[k * ld + r] */
        for (int k = 0; k < kc; k++) {
            const float *restrict s = src + k * ld;
            float *restrict d = dst + (size_t)k * R;
            for (int r = 0; r < w; r++) d[r] = s[r];
            for (int r = w; r < R; r++) d[r] = 0.0f;
        }
    }
}

/* dst: slivers [ceil(mc/mr)][kc][mr] = op(A)[i0 .. i0+mc, p0 .. p0+kc]. */
static void pack_a(const kernel_desc *kd, float *dst, const gemm_problem *p,
                   int i0, int mc, int p0, int kc) {
    const ptrdiff_t lda = p->lda;
    for (int s = 0; s < mc; s += kd->mr) {
        /* transA = 0: A [M, K], op(A)[i, k] = A[i * lda + k]
         * transA = 1: A [K, M], op(A)[i, k] = A[k * lda + i] */
        const float *src = p->transA ? p->A + p0 * lda + (i0 + s)
                                     : p->A + (i0 + s) * lda + p0;
        kd->pack(dst + (size_t)s * kc, src, lda, !p->transA,
                 imin(kd->mr, mc - s), kc, kd->mr);
    }
}

/* dst: slivers [ceil(nc/nr)][kc][nr] = op(B)[p0 .. p0+kc, j0 .. j0+nc]. */
static void pack_b(const kernel_desc *kd, float *dst, const gemm_problem *p,
                   int j0, int nc, int p0, int kc) {
    const ptrdiff_t ldb = p->ldb;
    for (int s = 0; s < nc; s += kd->nr) {
        /* transB = 0: B [K, N], op(B)[k, j] = B[k * ldb + j]
         * transB = 1: B [N, K], op(B)[k, j] = B[j * ldb + k] */
        const float *src = p->transB ? p->B + (j0 + s) * ldb + p0
                                     : p->B + p0 * ldb + (j0 + s);
        kd->pack(dst + (size_t)s * kc, src, ldb, p->transB,
                 imin(kd->nr, nc - s), kc, kd->nr);
    }
}

/* ---------------------------------------------------------------- tiles */

/* C[i0.., j0..][mt, nt] = beta * C (K == 0 or alpha == 0: A, B not read). */
static void scale_tile(const gemm_problem *p, int i0, int mt, int j0, int nt) {
    for (int i = 0; i < mt; i++) {
        float *c = p->C + (ptrdiff_t)(i0 + i) * p->ldc + j0;
        if (p->beta == 0.0f) {
            for (int j = 0; j < nt; j++) c[j] = 0.0f;
        } else if (p->beta != 1.0f) {
            for (int j = 0; j < nt; j++) c[j] *= p->beta;
        }
    }
}

/* The tile without packing, for when the packing buffer could not be had. */
static void tile_unpacked(const gemm_problem *p, int i0, int mt, int j0,
                          int nt) {
    const ptrdiff_t lda = p->lda, ldb = p->ldb;
    for (int i = i0; i < i0 + mt; i++) {
        float *c = p->C + (ptrdiff_t)i * p->ldc;
        for (int j = j0; j < j0 + nt; j++) {
            float acc = 0.0f;
            for (int k = 0; k < p->K; k++) {
                float a = p->transA ? p->A[k * lda + i] : p->A[i * lda + k];
                float b = p->transB ? p->B[j * ldb + k] : p->B[k * ldb + j];
                acc += a * b;
            }
            c[j] = p->beta != 0.0f ? p->alpha * acc + p->beta * c[j]
                                   : p->alpha * acc;
        }
    }
}

/* The K block for a problem: K cut into ceil(K / kd->kc) near-equal blocks
 * (a multiple of 4, at most kd->kc), so that K = 512 with kc = 384 is not
 * 384 + 128. Depends on K alone, so the rounding does too. */
static int block_k(const kernel_desc *kd, int K) {
    const int nb = (K + kd->kc - 1) / kd->kc;
    const int kb = ((K + nb - 1) / nb + 3) / 4 * 4;
    return kb < kd->kc ? kb : kd->kc;
}

/* One task: tile C[i0 .. i0+mt, j0 .. j0+nt] of problem p with kernel kd.
 * buf (64-byte aligned) holds kc * (mr + round_up(nt, nr)) + 16 floats, or
 * is NULL. Per K block: the B block [kc, nt] is packed once and stays in L2;
 * each A sliver [mr, kc] is packed just before its row of micro-tiles and
 * stays in L1 while the B block streams past it. */
static void run_tile(const kernel_desc *kd, const gemm_problem *p, int i0,
                     int mt, int j0, int nt, float *buf) {
    if (p->K == 0 || p->alpha == 0.0f) {
        scale_tile(p, i0, mt, j0, nt);
        return;
    }
    if (!buf) {
        tile_unpacked(p, i0, mt, j0, nt);
        return;
    }
    const int mr = kd->mr, nr = kd->nr;
    const int kb = block_k(kd, p->K);
    for (int p0 = 0; p0 < p->K; p0 += kb) {
        const int kc = imin(kb, p->K - p0);
        const float beta = p0 == 0 ? p->beta : 1.0f;
        float *bpack = buf; /* [nt_pad / nr][kc][nr] */
        float *apack = buf + ((size_t)(nt + nr - 1) / nr * nr * kc + 15) / 16 * 16;
        pack_b(kd, bpack, p, j0, nt, p0, kc);
        for (int ir = 0; ir < mt; ir += mr) {
            const int m = imin(mr, mt - ir);
            pack_a(kd, apack, p, i0 + ir, m, p0, kc); /* [kc][mr] */
            float *c = p->C + (ptrdiff_t)(i0 + ir) * p->ldc + j0;
            for (int jr = 0; jr < nt; jr += nr)
                kd->fn(kc, apack, bpack + (size_t)jr * kc, c + jr, p->ldc, m,
                       imin(nr, nt - jr), p->alpha, beta);
        }
    }
}

static int ceil_div(int a, int b) { return (a + b - 1) / b; }

/* How one problem is cut into tasks: tm x tn tiles of mc x nc (the last row
 * and column of tiles may be smaller). */
typedef struct tile_grid {
    int tm, tn; /* tiles down and across; 0 for an empty C */
    int mc, nc; /* tile size, multiples of mr and nr, at most kd->mc, kd->nc */
} tile_grid;

/* The grid of problem p: as few tiles as the kernel's mc x nc allow, times
 * `split` (more, smaller tiles for load balance), of near-equal sizes.
 * Since mc and nc are multiples of mr and nr, the register tiles always start
 * at multiples of mr, nr from the problem's origin, so the grid changes which
 * thread computes an element, never how. */
static tile_grid grid_of(const kernel_desc *kd, const gemm_problem *p,
                         int split) {
    tile_grid g = {0, 0, 0, 0};
    if (p->M <= 0 || p->N <= 0) return g;
    const int max_tm = ceil_div(p->M, kd->mr), max_tn = ceil_div(p->N, kd->nr);
    const int tm0 = ceil_div(p->M, kd->mc), tn0 = ceil_div(p->N, kd->nc);
    int tm = imin(tm0 * split, max_tm); /* split rows first ... */
    int tn = imin(ceil_div(tm0 * tn0 * split, tm), max_tn); /* ... then columns */
    if (tn < tn0) tn = tn0;
    g.mc = ceil_div(ceil_div(p->M, tm), kd->mr) * kd->mr;
    g.nc = ceil_div(ceil_div(p->N, tn), kd->nr) * kd->nr;
    g.tm = ceil_div(p->M, g.mc);
    g.tn = ceil_div(p->N, g.nc);
    return g;
}

/* Tasks of all problems for a given split. */
static int64_t total_tiles(const kernel_desc *kd, const gemm_problem *p,
                           int count, int split) {
    int64_t total = 0;
    for (int q = 0; q < count; q++) {
        const tile_grid g = grid_of(kd, &p[q], split);
        total += (int64_t)g.tm * g.tn;
    }
    return total;
}

/* The split that keeps n threads busy: the smallest (up to 8) for which
 * whole rounds of tasks fill at least 90% of the thread slots. */
static int choose_split(const kernel_desc *kd, const gemm_problem *p,
                        int count, int nth) {
    if (nth <= 1) return 1;
    for (int split = 1; split <= 8; split++) {
        const int64_t t = total_tiles(kd, p, count, split);
        const int64_t rounds = (t + nth - 1) / nth;
        if (t >= nth && (double)t >= 0.9 * (double)(rounds * nth)) return split;
    }
    return 8;
}

void gemm_grouped_with(int kernel, int n_threads, const gemm_problem *p,
                       int count) {
    if (kernel < 0 || kernel >= GEMM_KERNEL_COUNT ||
        !gemm_kernel_supported(kernel))
        kernel = gemm_best_kernel();
    const kernel_desc *kd = &kernels[kernel];
    if (count <= 0) return;

    int nth = n_threads > 0 ? n_threads : omp_get_max_threads();
    if (nth < 1) nth = 1;
    const int split = choose_split(kd, p, count, nth);

    /* Tasks in all, and the packing buffer the largest tile needs. */
    int64_t total = 0;
    size_t buf_floats = 0;
    for (int q = 0; q < count; q++) {
        const tile_grid g = grid_of(kd, &p[q], split);
        total += (int64_t)g.tm * g.tn;
        if (g.tm == 0 || p[q].K <= 0 || p[q].alpha == 0.0f) continue;
        const size_t kc = (size_t)block_k(kd, p[q].K);
        const size_t need = kc * (size_t)(kd->mr + g.nc) + 16;
        if (need > buf_floats) buf_floats = need;
    }
    if (total == 0) return;
    const size_t buf_bytes = (buf_floats * sizeof(float) + 63) / 64 * 64;
    if ((int64_t)nth > total) nth = (int)total;

#pragma omp parallel num_threads(nth)
    {
        float *buf = buf_bytes ? (float *)aligned_alloc(64, buf_bytes) : NULL;
        int q = 0;        /* problem of the current task ... */
        int64_t base = 0; /* ... the index of its first task ... */
        tile_grid g = grid_of(kd, &p[0], split); /* ... and its grid */
        /* A thread's task indices usually increase, so the problem cursor
         * moves forward; a dynamic schedule may also hand them out of order
         * (OpenMP 5 makes it nonmonotonic), then it restarts. */
#pragma omp for schedule(dynamic, 1)
        for (int64_t t = 0; t < total; t++) {
            if (t < base) {
                q = 0;
                base = 0;
                g = grid_of(kd, &p[0], split);
            }
            while (t >= base + (int64_t)g.tm * g.tn) {
                base += (int64_t)g.tm * g.tn;
                q++;
                g = grid_of(kd, &p[q], split);
            }
            const gemm_problem *pq = &p[q];
            const int64_t local = t - base;
            const int i0 = (int)(local / g.tn) * g.mc;
            const int j0 = (int)(local % g.tn) * g.nc;
            run_tile(kd, pq, i0, imin(g.mc, pq->M - i0), j0,
                     imin(g.nc, pq->N - j0), buf);
        }
        free(buf);
    }
}

void gemm_grouped(int n_threads, const gemm_problem *p, int count) {
    gemm_grouped_with(gemm_best_kernel(), n_threads, p, count);
}

/* The triple loop, summing in double: the reference of the tests. */
void gemm_ref(const gemm_problem *p) {
    const ptrdiff_t lda = p->lda, ldb = p->ldb;
    for (int i = 0; i < p->M; i++) {
        float *c = p->C + (ptrdiff_t)i * p->ldc;
        for (int j = 0; j < p->N; j++) {
            double acc = 0.0;
            for (int k = 0; k < p->K; k++) {
                double a = p->transA ? p->A[k * lda + i] : p->A[i * lda + k];
                double b = p->transB ? p->B[j * ldb + k] : p->B[k * ldb + j];
                acc += a * b;
            }
            double r = (double)p->alpha * acc;
            if (p->beta != 0.0f) r += (double)p->beta * c[j];
            c[j] = (float)r;
        }
    }
}

/* ------------------------------------------------------------- public */

void moe_sgemm(int n_threads, int transA, int transB, int M, int N, int K,
               float alpha, const float *A, int lda, const float *B, int ldb,
               float beta, float *C, int ldc) {
    const gemm_problem p = {
        .M = M, .N = N, .K = K, .transA = transA, .transB = transB,
        .A = A, .lda = lda, .B = B, .ldb = ldb, .C = C, .ldc = ldc,
        .alpha = alpha, .beta = beta,
    };
    gemm_grouped(n_threads, &p, 1);
}

const char *moe_sgemm_kernel_name(void) {
    return gemm_kernel_name(gemm_best_kernel());
}
