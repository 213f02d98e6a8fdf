/* test_gemm.c: the fp32 GEMM kernels against the reference triple loop.
 *
 * For: every micro-kernel this processor supports (scalar, avx2, avx512; the
 * others print SKIPPED), run through gemm_grouped_with and compared with
 * gemm_ref (which sums in double) by normalized error <= 1e-5: many shapes,
 * all four transpose combinations, alpha/beta variants, beta = 0 over a C of
 * NaN, padded leading dimensions (the padding holds NaN in A and B and a
 * sentinel in C that must survive), K = 0, M = 0, N = 0, grouped calls with
 * mixed sizes, and bitwise identical results for 1, 2, 3, 4 threads. Also the
 * public moe_sgemm and moe_sgemm_kernel_name.
 * Not for: speed (see docs/BENCHMARKS.md) or the MoE layer.
 */
#include "kernels/gemm_internal.h"
#include "moe.h"
#include "testutil.h"

#include <string.h>

#define TOL 1e-5
#define SENTINEL 12345.0f

/* One problem with its own storage. Padding past the logical columns of A
 * and B is NaN (it must never be read); C's padding is SENTINEL. */
typedef struct owned {
    gemm_problem p;
    float *a, *b, *c, *cref;
    size_t na, nb, nc;
} owned;

static void owned_make(owned *o, tu_rng *rng, int transA, int transB, int M,
                       int N, int K, int pad, float alpha, float beta,
                       int nan_c) {
    memset(o, 0, sizeof *o);
    gemm_problem *p = &o->p;
    p->M = M; p->N = N; p->K = K;
    p->transA = transA; p->transB = transB;
    p->alpha = alpha; p->beta = beta;
    const int ar = transA ? K : M, ac = transA ? M : K; /* A stored [ar, ac] */
    const int br = transB ? N : K, bc = transB ? K : N; /* B stored [br, bc] */
    p->lda = ac + pad; p->ldb = bc + pad; p->ldc = N + pad;
    if (p->lda < 1) p->lda = 1;
    if (p->ldb < 1) p->ldb = 1;
    if (p->ldc < 1) p->ldc = 1;
    o->na = (size_t)ar * p->lda; o->nb = (size_t)br * p->ldb;
    o->nc = (size_t)M * p->ldc;
    o->a = malloc((o->na + 1) * sizeof(float));
    o->b = malloc((o->nb + 1) * sizeof(float));
    o->c = malloc((o->nc + 1) * sizeof(float));
    o->cref = malloc((o->nc + 1) * sizeof(float));
    if (!o->a || !o->b || !o->c || !o->cref) {
        fprintf(stderr, "test_gemm: out of memory\n");
        exit(2);
    }
    for (int r = 0; r < ar; r++)
        for (int c = 0; c < p->lda; c++)
            o->a[(size_t)r * p->lda + c] = c < ac ? tu_uniform(rng) : NAN;
    for (int r = 0; r < br; r++)
        for (int c = 0; c < p->ldb; c++)
            o->b[(size_t)r * p->ldb + c] = c < bc ? tu_uniform(rng) : NAN;
    for (int r = 0; r < M; r++)
        for (int c = 0; c < p->ldc; c++)
            o->c[(size_t)r * p->ldc + c] =
                c >= N ? SENTINEL : nan_c ? NAN : tu_uniform(rng);
    memcpy(o->cref, o->c, o->nc * sizeof(float));
    p->A = o->a; p->B = o->b; p->C = o->c;
}

static void owned_free(owned *o) {
    free(o->a); free(o->b); free(o->c); free(o->cref);
}

/* Restores C to what it was before the call (from cref before the ref ran). */
static void owned_reset_c(owned *o, const float *c0) {
    memcpy(o->c, c0, o->nc * sizeof(float));
}

/* Compares o->c with o->cref (the reference must have run on cref). Returns
 * 1 on success, else prints FAIL with the worst element and returns 0. */
static int compare(const char *name, const owned *o) {
    const gemm_problem *p = &o->p;
    const size_t n = (size_t)p->M * p->N;
    float *got = malloc((n + 1) * sizeof(float));
    float *want = malloc((n + 1) * sizeof(float));
    if (!got || !want) {
        fprintf(stderr, "test_gemm: out of memory\n");
        exit(2);
    }
    for (int i = 0; i < p->M; i++) {
        memcpy(got + (size_t)i * p->N, o->c + (size_t)i * p->ldc, (size_t)p->N * sizeof(float));
        memcpy(want + (size_t)i * p->N, o->cref + (size_t)i * p->ldc, (size_t)p->N * sizeof(float));
        for (int j = p->N; j < p->ldc; j++) {
            if (o->c[(size_t)i * p->ldc + j] != SENTINEL) {
                tu_fail(name, "padding of C overwritten at row %d col %d: %g", i, j,
                        (double)o->c[(size_t)i * p->ldc + j]);
                free(got); free(want);
                return 0;
            }
        }
    }
    int ok = 1;
    if (n > 0) {
        size_t w = 0;
        const double err = tu_rel_err(got, want, n, &w);
        if (!(err <= TOL)) {
            tu_fail(name, "normalized error %.3g > %.0e at [%zu, %zu]: got %.9g, want %.9g",
                    err, TOL, w / (size_t)p->N, w % (size_t)p->N, (double)got[w],
                    (double)want[w]);
            ok = 0;
        }
    }
    free(got); free(want);
    return ok;
}

static const char *trans_name(int tA, int tB) {
    static const char *names[4] = {"NN", "NT", "TN", "TT"};
    return names[tA * 2 + tB];
}

/* One problem with one kernel against gemm_ref. */
static void check_one(int kernel, tu_rng *rng, int tA, int tB, int M, int N,
                      int K, int pad, float alpha, float beta, int nan_c,
                      int n_threads) {
    char name[200];
    snprintf(name, sizeof name, "gemm %s %s %dx%dx%d pad=%d alpha=%g beta=%g%s threads=%d",
             gemm_kernel_name(kernel), trans_name(tA, tB), M, N, K, pad,
             (double)alpha, (double)beta, nan_c ? " C=NaN" : "", n_threads);
    owned o;
    owned_make(&o, rng, tA, tB, M, N, K, pad, alpha, beta, nan_c);
    gemm_problem ref = o.p;
    ref.C = o.cref;
    gemm_ref(&ref);
    gemm_grouped_with(NULL, kernel, n_threads, &o.p, 1);
    if (compare(name, &o)) tu_ok(name);
    owned_free(&o);
}

/* Shapes x transposes x alpha/beta, for one kernel. */
static void check_kernel(int kernel, tu_rng *rng) {
    static const int shapes[][3] = {
        {1, 1, 1}, {7, 13, 5}, {33, 65, 129}, {97, 101, 103}, {14, 32, 256},
        {15, 33, 257}, {131, 257, 263}, {29, 47, 600}, {100, 1408, 512},
        {520, 530, 31},
    };
    const int nshapes = (int)(sizeof shapes / sizeof shapes[0]);
    for (int s = 0; s < nshapes; s++)
        for (int t = 0; t < 4; t++)
            check_one(kernel, rng, t >> 1, t & 1, shapes[s][0], shapes[s][1],
                      shapes[s][2], 0, 1.0f, 0.0f, 0, 2);
    /* a big expert shape, forward style (NT), default thread count */
    check_one(kernel, rng, 0, 1, 1024, 512, 1408, 0, 1.0f, 0.0f, 0, 0);
    /* alpha / beta, beta = 0 over NaN, padded leading dimensions */
    for (int t = 0; t < 4; t++) {
        check_one(kernel, rng, t >> 1, t & 1, 37, 71, 300, 0, 0.5f, 0.0f, 1, 2);
        check_one(kernel, rng, t >> 1, t & 1, 37, 71, 300, 0, 1.0f, 1.0f, 0, 2);
        check_one(kernel, rng, t >> 1, t & 1, 37, 71, 300, 0, -1.5f, 0.25f, 0, 3);
        check_one(kernel, rng, t >> 1, t & 1, 45, 66, 77, 5, 2.0f, -1.0f, 0, 2);
        check_one(kernel, rng, t >> 1, t & 1, 45, 66, 77, 3, 1.0f, 0.0f, 1, 1);
    }
    /* empty dimensions: K = 0 scales C by beta (0: C = 0 even over NaN) */
    check_one(kernel, rng, 0, 1, 9, 17, 0, 0, 1.0f, 0.0f, 1, 2);
    check_one(kernel, rng, 1, 0, 9, 17, 0, 2, 1.0f, 0.5f, 0, 2);
    check_one(kernel, rng, 0, 0, 9, 17, 11, 0, 0.0f, 2.0f, 0, 2);
    check_one(kernel, rng, 0, 0, 0, 17, 11, 0, 1.0f, 0.0f, 0, 2);
    check_one(kernel, rng, 1, 1, 9, 0, 11, 0, 1.0f, 0.0f, 0, 2);
}

/* A group of mixed problems (sizes, transposes, alpha/beta), like the
 * experts of an MoE layer; returns how many. */
#define NGROUP 12
static int make_group(owned *g, tu_rng *rng) {
    static const int ms[NGROUP] = {0, 1, 5, 100, 300, 17, 64, 0, 700, 3, 250, 1};
    for (int e = 0; e < NGROUP; e++) {
        const int t = e % 4;
        const float beta = e % 3 == 0 ? 0.0f : 0.5f;
        owned_make(&g[e], rng, t >> 1, t & 1, ms[e], 160 + 7 * (e % 3),
                   96 + 200 * (e % 2), e % 5 == 0 ? 3 : 0, 1.0f + 0.25f * (float)e,
                   beta, beta == 0.0f);
    }
    return NGROUP;
}

static void check_grouped(int kernel, tu_rng *rng) {
    owned g[NGROUP];
    gemm_problem p[NGROUP];
    const int n = make_group(g, rng);
    for (int e = 0; e < n; e++) {
        p[e] = g[e].p;
        gemm_problem ref = g[e].p;
        ref.C = g[e].cref;
        gemm_ref(&ref);
    }
    gemm_grouped_with(NULL, kernel, 2, p, n);
    int ok = 1;
    for (int e = 0; e < n && ok; e++) {
        char name[120];
        snprintf(name, sizeof name, "gemm %s grouped problem %d (%dx%dx%d)",
                 gemm_kernel_name(kernel), e, g[e].p.M, g[e].p.N, g[e].p.K);
        ok = compare(name, &g[e]);
    }
    char name[80];
    snprintf(name, sizeof name, "gemm %s grouped %d mixed problems",
             gemm_kernel_name(kernel), n);
    if (ok) tu_ok(name);
    for (int e = 0; e < n; e++) owned_free(&g[e]);
}

/* The same grouped call with 1, 2, 3, 4 and the default number of threads
 * must give bitwise identical C. */
static void check_threads(int kernel, tu_rng *rng) {
    owned g[NGROUP + 1];
    gemm_problem p[NGROUP + 1];
    int n = make_group(g, rng);
    owned_make(&g[n++], rng, 0, 1, 900, 700, 600, 0, 1.0f, 0.0f, 1);
    float *c0[NGROUP + 1], *c1[NGROUP + 1];
    for (int e = 0; e < n; e++) {
        p[e] = g[e].p;
        c0[e] = malloc((g[e].nc + 1) * sizeof(float));
        c1[e] = malloc((g[e].nc + 1) * sizeof(float));
        memcpy(c0[e], g[e].c, g[e].nc * sizeof(float));
    }
    static const int threads[] = {1, 2, 3, 4, 0};
    char name[80];
    snprintf(name, sizeof name, "gemm %s threads 1,2,3,4,default bitwise equal",
             gemm_kernel_name(kernel));
    int ok = 1;
    for (int ti = 0; ti < 5 && ok; ti++) {
        for (int e = 0; e < n; e++) owned_reset_c(&g[e], c0[e]);
        gemm_grouped_with(NULL, kernel, threads[ti], p, n);
        for (int e = 0; e < n && ok; e++) {
            if (ti == 0) {
                memcpy(c1[e], g[e].c, g[e].nc * sizeof(float));
                continue;
            }
            for (size_t i = 0; i < g[e].nc; i++) {
                if (memcmp(&c1[e][i], &g[e].c[i], sizeof(float)) != 0) {
                    tu_fail(name, "problem %d element %zu: %d threads %.9g, 1 thread %.9g",
                            e, i, threads[ti], (double)g[e].c[i], (double)c1[e][i]);
                    ok = 0;
                    break;
                }
            }
        }
    }
    if (ok) tu_ok(name);
    for (int e = 0; e < n; e++) {
        free(c0[e]); free(c1[e]);
        owned_free(&g[e]);
    }
}

/* The public entry point: one problem, the best kernel. */
static void check_public(tu_rng *rng) {
    const char *kn = moe_sgemm_kernel_name();
    if (!kn || strcmp(kn, gemm_kernel_name(gemm_best_kernel())) != 0)
        tu_fail("moe_sgemm_kernel_name", "got \"%s\", best kernel is \"%s\"",
                kn ? kn : "(null)", gemm_kernel_name(gemm_best_kernel()));
    else
        tu_ok("moe_sgemm_kernel_name");
    for (int t = 0; t < 4; t++) {
        owned o;
        owned_make(&o, rng, t >> 1, t & 1, 123, 77, 301, 2, 0.75f, 0.5f, 0);
        gemm_problem ref = o.p;
        ref.C = o.cref;
        gemm_ref(&ref);
        const gemm_problem *p = &o.p;
        moe_error e;
        moe_status st = moe_sgemm(0, p->transA, p->transB, p->M, p->N, p->K, p->alpha, p->A,
                                  p->lda, p->B, p->ldb, p->beta, p->C, p->ldc, &e);
        char name[80];
        snprintf(name, sizeof name, "moe_sgemm %s 123x77x301 (%s)",
                 trans_name(t >> 1, t & 1), kn);
        if (st != MOE_OK) tu_fail(name, "status %d: %s", (int)st, e.msg);
        else if (compare(name, &o)) tu_ok(name);
        owned_free(&o);
    }
}

int main(void) {
    tu_rng rng = {0x5eed};
    for (int k = 0; k < GEMM_KERNEL_COUNT; k++) {
        char name[64];
        snprintf(name, sizeof name, "gemm %s", gemm_kernel_name(k));
        if (!gemm_kernel_supported(k)) {
            tu_skip(name, "this processor does not support the kernel");
            continue;
        }
        check_kernel(k, &rng);
        check_grouped(k, &rng);
        check_threads(k, &rng);
    }
    check_public(&rng);
    return tu_exit_code();
}
