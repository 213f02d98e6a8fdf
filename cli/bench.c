/* bench.c: `moe bench layer` and `moe bench gemm`: speed figures printed,
 * never asserted. The layer bench times forward and forward+backward of one
 * MoE layer and, in the same run, a dense GEMM with the same FLOPs, and
 * prints their ratio and where the layer's time went (moe_layer_profile).
 * Uses only the public API. */
#include "cli.h"
#include "moe.h"
#include "moe_infer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static float *rand_buf(size_t n, unsigned seed) {
    float *p = malloc(sizeof(float) * n);
    if (!p) return NULL;
    unsigned s = seed;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        p[i] = (float)((s >> 8) & 0xFFFF) / 32768.0f - 1.0f;
    }
    return p;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Best of `iters` timings of a dense NT GEMM C[M,N] = A[M,K] B[N,K]^T. */
double bench_time_gemm(int nt, int M, int N, int K, int iters) {
    float *A = rand_buf((size_t)M * K, 1), *B = rand_buf((size_t)N * K, 2);
    float *C = malloc(sizeof(float) * (size_t)M * N);
    if (!A || !B || !C) { free(A); free(B); free(C); return NAN; }
    if (moe_sgemm(nt, 0, 1, M, N, K, 1.0f, A, K, B, K, 0.0f, C, N, NULL) != MOE_OK) { /* warm up */
        free(A); free(B); free(C);
        return NAN;
    }
    double best = 1e30;
    for (int i = 0; i < iters; i++) {
        double t0 = cli_now();
        moe_sgemm(nt, 0, 1, M, N, K, 1.0f, A, K, B, K, 0.0f, C, N, NULL);
        double t = cli_now() - t0;
        best = t < best ? t : best;
    }
    free(A); free(B); free(C);
    return best;
}

static int bench_gemm(int argc, char **argv, int nt) {
    int M = 8192, N = 4224, K = 512, iters = 5, bad = 0;
    for (int i = 0; i < argc && !bad; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: moe bench gemm [--m M] [--n N] [--k K] [--iters N]\n"
                   "  fp32 C[M,N] = A[M,K] B[N,K]^T, best of N; defaults --m %d --n %d --k %d --iters %d\n",
                   M, N, K, iters);
            return 0;
        }
        if (cli_int_opt("--m", argc, argv, &i, &M, &bad) || cli_int_opt("--n", argc, argv, &i, &N, &bad) ||
            cli_int_opt("--k", argc, argv, &i, &K, &bad) || cli_int_opt("--iters", argc, argv, &i, &iters, &bad)) continue;
        return cli_unknown("bench gemm", argv[i]);
    }
    if (bad) return 2;
    if (M < 1 || N < 1 || K < 1 || iters < 1) { fprintf(stderr, "moe bench gemm: bad sizes\n"); return 2; }
    double t = bench_time_gemm(nt, M, N, K, iters);
    printf("gemm %s  M=%d N=%d K=%d (C = A B^T)  threads=%d  best of %d: %.2f ms  %.1f GFLOP/s\n",
           moe_sgemm_kernel_name(), M, N, K, nt, iters, 1e3 * t, 2.0 * M * N * K / t * 1e-9);
    return 0;
}

static int bench_layer(int argc, char **argv, int nt) {
    int T = 4096, d = 512, F = 1408, E = 8, k = 2, iters = 5, bad = 0, gelu = 0;
    float cf = MOE_DROPLESS;
    const char *router = "softmax";
    for (int i = 0; i < argc && !bad; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: moe bench layer [options]: one MoE layer's forward and forward+backward GFLOP/s\n"
                   "  --router NAME (default %s)  --tokens T (%d)  --d D (%d)  --dff F (%d)  --experts E (%d)\n"
                   "  --k K (%d)  --capacity CF (-1: dropless, the default)  --gelu (default SwiGLU)  --iters N (%d)\n",
                   router, T, d, F, E, k, iters);
            return 0;
        }
        if (cli_str_opt("--router", NULL, argc, argv, &i, &router, &bad)) continue;
        if (cli_int_opt("--tokens", argc, argv, &i, &T, &bad) || cli_int_opt("--d", argc, argv, &i, &d, &bad) ||
            cli_int_opt("--dff", argc, argv, &i, &F, &bad) || cli_int_opt("--experts", argc, argv, &i, &E, &bad) ||
            cli_int_opt("--k", argc, argv, &i, &k, &bad) || cli_int_opt("--iters", argc, argv, &i, &iters, &bad) ||
            cli_float_opt("--capacity", argc, argv, &i, &cf, &bad)) continue;
        if (!strcmp(argv[i], "--gelu")) { gelu = 1; continue; }
        return cli_unknown("bench layer", argv[i]);
    }
    if (bad) return 2;
    if (iters < 1) return cli_usage_error("bench layer", "--iters must be >= 1");
    moe_layer_config c;
    moe_layer_config_default(&c, d, F, E, k);
    c.max_tokens = T;
    c.n_threads = nt;
    c.capacity_factor = cf;
    c.expert = gelu ? MOE_EXPERT_GELU : MOE_EXPERT_SWIGLU;
    c.aux_loss_coef = 0.01f;
    c.z_loss_coef = 0.001f;
    moe_layer *L;
    moe_error err;
    if (moe_layer_config_router(&c, router, &err) != MOE_OK) { fprintf(stderr, "moe bench layer: %s\n", err.msg); return 2; }
    if (c.select == MOE_SELECT_HASH) c.z_loss_coef = 0.0f;
    if (moe_layer_create(&L, &c, &err) != MOE_OK) { fprintf(stderr, "moe bench layer: %s\n", err.msg); return 1; }
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)T);
    if (!ids) return 1;
    for (int t = 0; t < T; t++) ids[t] = (int32_t)((t * 7919u) % 32000u);
    moe_layer_init_params(L, 1);
    size_t n = (size_t)T * d;
    float *x = rand_buf(n, 3), *y = malloc(sizeof(float) * n), *dy = rand_buf(n, 4), *dx = malloc(sizeof(float) * n);
    double *tf = malloc(sizeof(double) * iters), *tb = malloc(sizeof(double) * iters);
    moe_layer_profile *pf = calloc((size_t)iters, sizeof *pf);
    if (!x || !y || !dy || !dx || !tf || !tb || !pf) { fprintf(stderr, "moe bench layer: out of memory\n"); return 1; }

    /* warm up, then time forward alone and forward+backward */
    if (c.select == MOE_SELECT_HASH) moe_layer_set_token_ids(L, ids, T, NULL);
    if (moe_layer_forward(L, y, x, T, 1, &err) != MOE_OK || moe_layer_backward(L, dx, dy, &err) != MOE_OK) {
        fprintf(stderr, "moe bench layer: %s\n", err.msg);
        return 1;
    }
    for (int i = 0; i < iters; i++) {
        if (c.select == MOE_SELECT_HASH) moe_layer_set_token_ids(L, ids, T, NULL);
        double t0 = cli_now();
        moe_layer_forward(L, y, x, T, 1, NULL);
        double t1 = cli_now();
        moe_layer_drop_grads(L); /* a training step writes the gradients */
        moe_layer_backward(L, dx, dy, NULL);
        double t2 = cli_now();
        moe_layer_update_balance(L);
        tf[i] = t1 - t0;
        tb[i] = t2 - t0;
        pf[i] = *moe_layer_get_profile(L);
    }
    const moe_route_stats *st = moe_layer_stats(L);
    double rows = (double)(st->assignments - st->dropped);
    int nproj = gelu ? 2 : 3;
    double f_exp = 2.0 * rows * nproj * (double)d * F;   /* expert GEMMs, forward */
    f_exp += 2.0 * T * nproj * (double)d * c.shared_d_ff;  /* shared expert */
    double f_route = 2.0 * T * (double)d * E * (c.noisy_gate ? 2 : 1) * (c.select != MOE_SELECT_HASH);
    double f_fwd = f_exp + f_route, f_all = 3.0 * f_exp + 3.0 * f_route;
    int best_f = 0, best_b = 0;
    for (int i = 1; i < iters; i++) { if (tf[i] < tf[best_f]) best_f = i; if (tb[i] < tb[best_b]) best_b = i; }
    double med_f, med_b;
    qsort(tf, (size_t)iters, sizeof(double), cmp_double);
    qsort(tb, (size_t)iters, sizeof(double), cmp_double);
    med_f = tf[iters / 2];
    med_b = tb[iters / 2];

    /* dense GEMM of the same FLOPs as the expert forward: [rows, d] x [d, nproj*F]
       (+ the shared expert's T rows) */
    int grow = (int)(rows + (double)T * c.shared_d_ff / F);
    double tg = bench_time_gemm(nt, grow, nproj * F, d, iters);
    double g_rate = f_exp / tg * 1e-9;

    printf("moe bench layer: router=%s T=%d d=%d d_ff=%d E=%d k=%d %s capacity=%s threads=%d gemm=%s iters=%d\n",
           router, T, d, F, E, c.top_k, gelu ? "gelu" : "swiglu",
           c.capacity_factor == MOE_DROPLESS ? "dropless" : "cf", nt, moe_sgemm_kernel_name(), iters);
    printf("  rows (kept assignments) %.0f, dropped %lld, active experts/token %.2f, max-violation %.2f, "
           "router loss %.4f\n", rows, (long long)st->dropped, st->active_mean, st->max_violation, st->router_loss);
    printf("  dense gemm  %5d x %5d x %5d     %8.2f ms  %7.1f GFLOP/s\n", grow, nproj * F, d, 1e3 * tg, g_rate);
    printf("  forward                          %8.2f ms  %7.1f GFLOP/s  (median %.2f ms)  = %.2f x dense\n",
           1e3 * tf[0], f_fwd / tf[0] * 1e-9, 1e3 * med_f, f_fwd / tf[0] * 1e-9 / g_rate);
    printf("  forward+backward                 %8.2f ms  %7.1f GFLOP/s  (median %.2f ms)  = %.2f x dense\n",
           1e3 * tb[0], f_all / tb[0] * 1e-9, 1e3 * med_b, f_all / tb[0] * 1e-9 / g_rate);
    moe_layer_profile *p = &pf[best_b];
    double fw = p->fwd_route + p->fwd_plan + p->fwd_gather + p->fwd_gemm + p->fwd_act + p->fwd_combine;
    double bw = p->bwd_slots + p->bwd_gemm + p->bwd_act + p->bwd_scatter + p->bwd_route;
    printf("  forward stages (ms):  route %.2f  plan %.2f  gather %.2f  gemm %.2f  act %.2f  combine %.2f  (gemm %.0f%%)\n",
           1e3 * p->fwd_route, 1e3 * p->fwd_plan, 1e3 * p->fwd_gather, 1e3 * p->fwd_gemm, 1e3 * p->fwd_act,
           1e3 * p->fwd_combine, 100 * p->fwd_gemm / fw);
    printf("  backward stages (ms): slots %.2f  gemm %.2f  act %.2f  scatter %.2f  route %.2f  (gemm %.0f%%)\n",
           1e3 * p->bwd_slots, 1e3 * p->bwd_gemm, 1e3 * p->bwd_act, 1e3 * p->bwd_scatter, 1e3 * p->bwd_route,
           100 * p->bwd_gemm / bw);
    free(x); free(y); free(dy); free(dx); free(tf); free(tb); free(pf); free(ids);
    moe_layer_free(L);
    return 0;
}

/* The quantized products the engine runs, at the row counts of batch steps:
 * y[M, N] = x[M, K] w^T for M = 1, 2, 4, 8, 16 (and --m), the expert shape
 * of the ~1e9 model by default (an expert of a 16-sequence step gets about
 * 4 rows). */
static int bench_qmatmul(int argc, char **argv, int nt) {
    int N = 1024, K = 2048, iters = 50, bad = 0, M1 = 0;
    const char *type = "q4_K";
    for (int i = 0; i < argc && !bad; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: moe bench qmatmul [--type T] [--n N] [--k K] [--m M] [--iters N]\n"
                   "  y[M,N] = x[M,K] w^T, w quantized to T, for M = 1..17 (or only --m M), best of N;\n"
                   "  defaults --type %s --n %d --k %d --iters %d (an expert's gate of the bench model)\n",
                   type, N, K, iters);
            return 0;
        }
        if (cli_int_opt("--m", argc, argv, &i, &M1, &bad) || cli_int_opt("--n", argc, argv, &i, &N, &bad) ||
            cli_int_opt("--k", argc, argv, &i, &K, &bad) || cli_int_opt("--iters", argc, argv, &i, &iters, &bad)) continue;
        if (!strcmp(argv[i], "--type") && i + 1 < argc) { type = argv[++i]; continue; }
        return cli_unknown("bench qmatmul", argv[i]);
    }
    if (bad) return 2;
    printf("qmatmul %s  N=%d K=%d  threads=%d  best of %d\n%4s %10s %10s %10s %10s\n", type, N, K, nt,
           iters, "M", "us", "us/row", "x M=1", "GMAC/s");
    double t1 = 0;
    for (int M = M1 > 0 ? M1 : 1; M <= (M1 > 0 ? M1 : 17); M++) {
        double t;
        moe_error err;
        if (moe_bench_qmatmul(type, M, N, K, nt, iters, &t, &err) != MOE_OK) {
            fprintf(stderr, "moe bench qmatmul: %s\n", err.msg);
            return 1;
        }
        if (M == 1) t1 = t;
        char ratio[32] = "-";
        if (t1 > 0) snprintf(ratio, sizeof ratio, "%.2f", t / t1);
        printf("%4d %10.1f %10.2f %10s %10.1f\n", M, 1e6 * t, 1e6 * t / M, ratio,
               (double)M * N * K / t * 1e-9);
        fflush(stdout);
    }
    return 0;
}

int cmd_bench(int argc, char **argv, int n_threads) {
    if (argc < 1) { fprintf(stderr, "moe bench: which? layer | gemm | qmatmul | train | dist | decode | prefill | bandwidth | contention | serve\n"); return 2; }
    if (!strcmp(argv[0], "-h") || !strcmp(argv[0], "--help")) {
        printf("usage: moe bench layer | gemm | qmatmul | train | dist | decode | prefill | bandwidth | contention | serve [options]\n"
               "  moe bench NAME --help lists the options of each, with their defaults\n");
        return 0;
    }
    if (!strcmp(argv[0], "layer")) return bench_layer(argc - 1, argv + 1, n_threads);
    if (!strcmp(argv[0], "gemm")) return bench_gemm(argc - 1, argv + 1, n_threads);
    if (!strcmp(argv[0], "qmatmul")) return bench_qmatmul(argc - 1, argv + 1, n_threads);
    if (!strcmp(argv[0], "train")) return bench_train(argc - 1, argv + 1, n_threads);
    if (!strcmp(argv[0], "dist")) return bench_dist(argc - 1, argv + 1, n_threads);
    if (!strcmp(argv[0], "decode")) return bench_decode(argc - 1, argv + 1, n_threads);
    if (!strcmp(argv[0], "prefill")) return bench_prefill(argc - 1, argv + 1, n_threads);
    if (!strcmp(argv[0], "bandwidth")) return bench_bandwidth(argc - 1, argv + 1, n_threads);
    if (!strcmp(argv[0], "contention")) return bench_contention(argc - 1, argv + 1, n_threads);
    if (!strcmp(argv[0], "serve")) return bench_serve(argc - 1, argv + 1, n_threads);
    fprintf(stderr, "moe bench: unknown benchmark '%s' (layer | gemm | qmatmul | train | dist | decode | prefill | "
            "bandwidth | contention | serve)\n", argv[0]);
    return 2;
}
