/* gemm.c: blocked, packed, multithreaded fp32 GEMM (gemm.h, gemm_internal.h)
 * and the public moe_sgemm.
 *
 * For: C[M,N] = alpha * op(A)[M,K] op(B)[K,N] + beta * C, row-major, for one
 * problem or a group of independent problems (one per expert) in one
 * parallel region; the reference gemm_ref; the portable scalar micro-kernel
 * and packing; choosing the micro-kernel at run time.
 * Not for: the SIMD micro-kernels and packing (gemm_avx512.c, gemm_avx2.c),
 * quantized products.
 *
 * Design (Goto/BLIS, adapted to many independent problems):
 * - Tasks. The C of every problem is cut into tiles of at most MC x NC
 *   (4088 x 576 for avx512) of near-equal sizes; the tiles of ALL problems
 *   form one task list that the OpenMP threads take from dynamically, so one
 *   big problem, a few big experts or many small ones keep every core busy
 *   alike. When there are too few tasks to fill the threads evenly, the tiles
 *   are split further (choose_split).
 * - One task loops over K in blocks of about KC (512), in order. Per block it
 *   packs op(B)[K block, tile columns] into slivers [kc][NR] (the B block,
 *   ~1.2 MB, stays in L2), then packs op(A)[rows, K block] 8 slivers [kc][MR]
 *   at a time and runs the MR x NR micro-kernel: one A sliver (~28 KB) stays
 *   in L1 while the B block streams past it. The packing absorbs transA and
 *   transB, so the micro-kernel has one code path. The first K block applies
 *   beta (beta == 0: C is not read), later blocks add.
 * - Determinism. Each output element belongs to one tile, so one thread; its
 *   value is the same chain of micro-kernel calls (K blocks in order, k in
 *   order inside a block) whatever the tile grid, because tiles are
 *   multiples of MR x NR and the K blocks depend on K alone. So results are
 *   bitwise identical for any thread count (for one kernel).
 * - Memory. One 64-byte-aligned packing buffer per thread, in a workspace
 *   (gemm_ws) sized once by its owner for the largest tile of any kernel
 *   (about 1.4 MB): a product allocates nothing, and a failed allocation is
 *   an error at creation, never another way of computing. No global mutable
 *   state.
 */
#include "kernels/gemm_internal.h"

#include "core/cpu.h"

#include "moe.h"

#include <omp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

static int imin(int a, int b) { return a < b ? a : b; }
static int ceil_div(int a, int b) { return (a + b - 1) / b; }

/* ------------------------------------------------- portable micro-kernel */

#define SC_MR 4
#define SC_NR 16

/* C[m, n] = alpha * Ap[kc][4]^T Bp[kc][16] + beta * C in plain C (see the
 * contract in gemm_internal.h; rounding as the compiler contracts it). */
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

/* Portable packing; same contract as gemm_pack_avx512 (gemm_internal.h):
 * slivers dst[ceil(w / R)][kc][R] from w vectors, zero past w. */
static void pack_generic(float *restrict dst, const float *restrict src,
                         ptrdiff_t ld, int kcontig, int w, int kc, int R) {
    const int wpad = ceil_div(w, R) * R;
    for (int r = 0; r < wpad; r++) {
        float *restrict d = dst + (size_t)(r / R) * kc * R + r % R;
        if (r >= w) {
            for (int k = 0; k < kc; k++) d[(size_t)k * R] = 0.0f;
        } else if (kcontig) { /* vector r, element k at src[r * ld + k] */
            const float *restrict s = src + r * ld;
            for (int k = 0; k < kc; k++) d[(size_t)k * R] = s[k];
        } else { /* element k of vector r at src[k * ld + r] */
            for (int k = 0; k < kc; k++) d[(size_t)k * R] = src[k * ld + r];
        }
    }
}

/* ---------------------------------------------------- kernel selection */

/* The register tile: C[m, n] = alpha * Ap^T Bp + beta * C (gemm_internal.h). */
typedef void (*gemm_ukernel_fn)(int kc, const float *Ap, const float *Bp,
                                float *C, int ldc, int m, int n, float alpha,
                                float beta);

/* Packing of slivers (see gemm_pack_avx512 in gemm_internal.h). */
typedef void (*gemm_pack_fn)(float *dst, const float *src, ptrdiff_t ld,
                             int kcontig, int w, int kc, int R);

/* A micro-kernel and the blocking that goes with it. */
typedef struct kernel_desc {
    const char *name;   /* "scalar", "avx2", "avx512" */
    gemm_ukernel_fn fn; /* the micro-kernel */
    gemm_pack_fn pack;  /* packs A and B slivers */
    int mr, nr;         /* register tile [mr, nr] */
    int kc;             /* largest K block; fixed, since it sets the rounding */
    int mc, nc;         /* largest task tile [mc, nc]; multiples of mr, nr */
} kernel_desc;

/* Blocking (tuned on a Sapphire Rapids core: 48 KB L1d, 2 MB L2). KC sets
 * the rounding, so it is a constant of the build. */
#define GEMM_KC 512     /* A sliver 14 x 512 floats = 28 KB, in L1 */
#define GEMM_MC 4096    /* rows per task tile, rounded down to mr */
#define GEMM_NC 576     /* B block 512 x 576 floats = 1.2 MB, in L2 */
#define GEMM_A_PANEL 8  /* A slivers packed at a time */
#define ROUND_DOWN(x, m) ((x) / (m) * (m))

static const kernel_desc kernels[GEMM_KERNEL_COUNT] = {
    [GEMM_KERNEL_SCALAR] = {"scalar", ukernel_scalar, pack_generic, SC_MR,
                            SC_NR, 256, 256, 256},
    [GEMM_KERNEL_AVX2] = {"avx2", gemm_ukernel_avx2, pack_generic,
                          GEMM_AVX2_MR, GEMM_AVX2_NR, GEMM_KC,
                          ROUND_DOWN(GEMM_MC, GEMM_AVX2_MR),
                          ROUND_DOWN(GEMM_NC, GEMM_AVX2_NR)},
    [GEMM_KERNEL_AVX512] = {"avx512", gemm_ukernel_avx512, gemm_pack_avx512,
                            GEMM_AVX512_MR, GEMM_AVX512_NR, GEMM_KC,
                            ROUND_DOWN(GEMM_MC, GEMM_AVX512_MR),
                            ROUND_DOWN(GEMM_NC, GEMM_AVX512_NR)},
};

int gemm_kernel_supported(int kernel) {
    switch (kernel) {
    case GEMM_KERNEL_SCALAR: return 1;
    case GEMM_KERNEL_AVX2: return moe_cpu_has(MOE_CPU_AVX2 | MOE_CPU_FMA);
    case GEMM_KERNEL_AVX512: /* the file is built with F, BW, DQ, VL */
        return moe_cpu_has(MOE_CPU_AVX512F | MOE_CPU_AVX512BW | MOE_CPU_AVX512DQ |
                           MOE_CPU_AVX512VL);
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

/* dst: slivers [ceil(mc/mr)][kc][mr] = op(A)[i0 .. i0+mc, p0 .. p0+kc].
 * transA = 0: A [M, K], op(A)[i, k] = A[i * lda + k] (a transpose);
 * transA = 1: A [K, M], op(A)[i, k] = A[k * lda + i] (a copy). */
static void pack_a(const kernel_desc *kd, float *dst, const gemm_problem *p,
                   int i0, int mc, int p0, int kc) {
    const ptrdiff_t lda = p->lda;
    const float *src = p->transA ? p->A + p0 * lda + i0 : p->A + i0 * lda + p0;
    kd->pack(dst, src, lda, !p->transA, mc, kc, kd->mr);
}

/* dst: slivers [ceil(nc/nr)][kc][nr] = op(B)[p0 .. p0+kc, j0 .. j0+nc].
 * transB = 0: B [K, N], op(B)[k, j] = B[k * ldb + j] (a copy);
 * transB = 1: B [N, K], op(B)[k, j] = B[j * ldb + k] (a transpose). */
static void pack_b(const kernel_desc *kd, float *dst, const gemm_problem *p,
                   int j0, int nc, int p0, int kc) {
    const ptrdiff_t ldb = p->ldb;
    const float *src = p->transB ? p->B + j0 * ldb + p0 : p->B + p0 * ldb + j0;
    kd->pack(dst, src, ldb, p->transB, nc, kc, kd->nr);
}

/* ---------------------------------------------------------------- tiles */

/* C[i0.., j0..][mt, nt] = beta * C (K <= 0 or alpha == 0: A, B not read;
 * beta == 0 writes zeros without reading C). */
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

/* The K block for a problem: K cut into ceil(K / kd->kc) near-equal blocks
 * (a multiple of 4, at most kd->kc), so that K = 600 is 300 + 300, not
 * 512 + 88. Depends on K alone, so the rounding does too. */
static int block_k(const kernel_desc *kd, int K) {
    const int nb = (K + kd->kc - 1) / kd->kc;
    const int kb = ((K + nb - 1) / nb + 3) / 4 * 4;
    return kb < kd->kc ? kb : kd->kc;
}

/* One task: tile C[i0 .. i0+mt, j0 .. j0+nt] of problem p with kernel kd.
 * buf (64-byte aligned) holds kc * (GEMM_A_PANEL * mr + round_up(nt, nr))
 * + 16 floats. Per K block: the B block [kc, nt] is packed once
 * and stays in L2; A is packed GEMM_A_PANEL slivers [mr, kc] at a time just
 * before use, and each sliver stays in L1 while the B block streams past. */
static void run_tile(const kernel_desc *kd, const gemm_problem *p, int i0,
                     int mt, int j0, int nt, float *buf) {
    if (p->K <= 0 || p->alpha == 0.0f) {
        scale_tile(p, i0, mt, j0, nt);
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
        for (int ip = 0; ip < mt; ip += GEMM_A_PANEL * mr) {
            const int mp = imin(GEMM_A_PANEL * mr, mt - ip);
            pack_a(kd, apack, p, i0 + ip, mp, p0, kc); /* [mp_pad / mr][kc][mr] */
            for (int ir = 0; ir < mp; ir += mr) {
                const float *a = apack + (size_t)ir * kc;
                float *c = p->C + (ptrdiff_t)(i0 + ip + ir) * p->ldc + j0;
                const int m = imin(mr, mp - ir);
                for (int jr = 0; jr < nt; jr += nr)
                    kd->fn(kc, a, bpack + (size_t)jr * kc, c + jr, p->ldc, m,
                           imin(nr, nt - jr), p->alpha, beta);
            }
        }
    }
}

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

/* Floats of kernel kd's packing buffer for a tile: kc * (GEMM_A_PANEL * mr +
 * nc) + 16 (run_tile's layout), rounded up to 64 bytes. */
static size_t buf_floats_of(const kernel_desc *kd, int kc, int nc) {
    return ((size_t)kc * (size_t)(GEMM_A_PANEL * kd->mr + nc) + 16 + 15) / 16 * 16;
}

size_t gemm_ws_thread_floats(void) {
    size_t most = 0;
    for (int k = 0; k < GEMM_KERNEL_COUNT; k++) {
        const size_t f = buf_floats_of(&kernels[k], kernels[k].kc, kernels[k].nc);
        if (f > most) most = f;
    }
    return most;
}

moe_status gemm_ws_init(gemm_ws *ws, int n_threads, moe_error *err) {
    const int nth = n_threads > 0 ? n_threads : omp_get_max_threads();
    const size_t bytes = (size_t)(nth > 0 ? nth : 1) * gemm_ws_thread_floats() * sizeof(float);
    ws->buf = aligned_alloc(64, bytes);
    ws->n_threads = ws->buf ? (nth > 0 ? nth : 1) : 0;
    if (!ws->buf)
        return moe_err(err, MOE_ERR_NOMEM, "gemm_ws_init: %zu bytes of packing buffers for %d threads",
                       bytes, nth);
    return MOE_OK;
}

void gemm_ws_free(gemm_ws *ws) {
    if (!ws) return;
    free(ws->buf);
    ws->buf = NULL;
    ws->n_threads = 0;
}

moe_status gemm_grouped_with(const gemm_ws *ws, int kernel, int n_threads,
                             const gemm_problem *p, int count) {
    if (kernel < 0 || kernel >= GEMM_KERNEL_COUNT ||
        !gemm_kernel_supported(kernel))
        kernel = gemm_best_kernel();
    const kernel_desc *kd = &kernels[kernel];
    if (count <= 0) return MOE_OK;

    int nth = n_threads > 0 ? n_threads : omp_get_max_threads();
    if (nth < 1) nth = 1;
    const int split = choose_split(kd, p, count, nth);

    /* Tasks in all; the buffers are only needed when some tile multiplies. */
    int64_t total = 0;
    int packs = 0;
    for (int q = 0; q < count; q++) {
        const tile_grid g = grid_of(kd, &p[q], split);
        total += (int64_t)g.tm * g.tn;
        if (g.tm > 0 && p[q].K > 0 && p[q].alpha != 0.0f) packs = 1;
    }
    if (total == 0) return MOE_OK;
    if ((int64_t)nth > total) nth = (int)total;
    gemm_ws own = {NULL, 0};
    if (packs && !ws) {
        if (gemm_ws_init(&own, nth, NULL) != MOE_OK) return MOE_ERR_NOMEM;
        ws = &own;
    }
    /* the results do not depend on the thread count, so fewer threads than
       asked (a workspace made for fewer) change nothing but the time */
    if (packs && nth > ws->n_threads) nth = ws->n_threads;
    const size_t stride = gemm_ws_thread_floats();

#pragma omp parallel num_threads(nth)
    {
        float *buf = packs ? ws->buf + (size_t)omp_get_thread_num() * stride : NULL;
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
    }
    gemm_ws_free(&own);
    return MOE_OK;
}

moe_status gemm_grouped(const gemm_ws *ws, int n_threads, const gemm_problem *p, int count) {
    return gemm_grouped_with(ws, gemm_best_kernel(), n_threads, p, count);
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

moe_status moe_sgemm(int n_threads, int transA, int transB, int M, int N, int K,
                     float alpha, const float *A, int lda, const float *B, int ldb,
                     float beta, float *C, int ldc, moe_error *err) {
    const gemm_problem p = {
        .M = M, .N = N, .K = K, .transA = transA, .transB = transB,
        .A = A, .lda = lda, .B = B, .ldb = ldb, .C = C, .ldc = ldc,
        .alpha = alpha, .beta = beta,
    };
    moe_status st = gemm_grouped(NULL, n_threads, &p, 1);
    if (st != MOE_OK)
        return moe_err(err, st, "moe_sgemm: the packing buffers (about 1.4 MB a thread) could not be allocated");
    moe_err_clear(err);
    return MOE_OK;
}

const char *moe_sgemm_kernel_name(void) {
    return gemm_kernel_name(gemm_best_kernel());
}
