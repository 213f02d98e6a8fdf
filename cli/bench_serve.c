/* bench_serve.c: `moe bench serve`: what batching many sequences buys an
 * MoE model. For S = 1, 2, 4, 8, 16, 32 sequences decoding together (one
 * moe_infer_batch_eval step per token, S rows), the aggregate decode rate,
 * the time of a step (each sequence's latency per token), the distinct
 * experts a step touches per MoE layer and the expert weight bytes it reads
 * (each touched expert's weights once per step, whatever the number of its
 * tokens), and where a step's time goes (moe_infer_get_times: the routed
 * experts' products, the other products, the rest; ms per step, means over
 * the steps whose median is given). A step's time is the median over every
 * step of every run (a loaded machine preempts a process for whole time
 * slices, which would swamp a sum), and each S is measured right after a
 * fresh S = 1 run, the ratios taken against that one (a shared machine's
 * load drifts within minutes). Figures are printed, never asserted.
 *
 * Models: --model FILE or --gen ARCH:TYPE (the ~1e9-weight model of `moe
 * bench decode`, default mixtral:q4_K). Only the public API.
 * Not for: HTTP (the server adds parsing and sampling around the same steps).
 */
#include "cli.h"
#include "moe_infer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef _OPENMP
#include <omp.h>
#endif

/* CPU seconds of the process (all its threads): with one thread, the work
 * of a step whatever the machine's load does to the wall clock. */
static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void sort_d(double *x, int n) {
    for (int i = 1; i < n; i++) /* insertion sort, for medians */
        for (int j = i; j > 0 && x[j] < x[j - 1]; j--) {
            const double t = x[j];
            x[j] = x[j - 1];
            x[j - 1] = t;
        }
}

static int32_t argmax_row(const float *x, int n) {
    int32_t b = 0;
    for (int i = 1; i < n; i++) if (x[i] > x[b]) b = i;
    return b;
}

/* Bytes of one expert (gate, up, down) of one MoE layer: bytes_active at k
 * minus at k - 1, over the MoE layers (the public API has no per-tensor
 * sizes). */
static double expert_bytes(moe_infer *m) {
    const moe_infer_info *in = moe_infer_get_info(m);
    const int k = in->top_k, L = in->n_layers - in->n_dense_layers;
    if (in->n_experts == 0 || k < 2 || L < 1) return 0;
    const double a = (double)in->bytes_active;
    moe_error err;
    if (moe_infer_set_top_k(m, k - 1, &err) != MOE_OK) return 0;
    const double b = (double)moe_infer_get_info(m)->bytes_active;
    moe_infer_set_top_k(m, k, &err);
    return (a - b) / L;
}

typedef struct serve_row {
    int S;
    double tok_s, ms_step, cpu_ms, experts, mib_step;
    double ex_ms, oth_ms, rest_ms; /* mean per step: expert products, other products, the rest */
} serve_row;

/* S sequences: a prompt of P each, then N decode steps of S rows; the
 * best of iters runs. 0 on failure (printed). */
static int run_S(moe_infer_model *mdl, int S, int P, int N, int iters, int nt, double eb,
                 serve_row *row) {
    moe_infer_options io;
    moe_infer_options_default(&io);
    io.n_threads = nt;
    io.ctx_len = P + N + 1;
    io.n_seq = S;
    io.max_batch = S > P ? S : P;
    moe_infer *m;
    moe_error err;
    if (moe_infer_create(&m, mdl, &io, &err) != MOE_OK) {
        fprintf(stderr, "moe bench serve: %s\n", err.msg);
        return 0;
    }
    const moe_infer_info *in = moe_infer_get_info(m);
    const int V = in->vocab_size, E = in->n_experts, L = in->n_layers;
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)(S > P ? S : P));
    int32_t *seq = malloc(sizeof(int32_t) * (size_t)(S > P ? S : P));
    int32_t *pos = malloc(sizeof(int32_t) * (size_t)(S > P ? S : P));
    int8_t *want = malloc((size_t)(S > P ? S : P));
    float *lg = malloc(sizeof(float) * (size_t)S * V);
    int64_t *c0 = malloc(sizeof(int64_t) * (size_t)(L * E + 1));
    double *dts = calloc((size_t)N * (iters + 1), sizeof(double));
    double *cts = calloc((size_t)N * (iters + 1), sizeof(double));
    int ok = 0;
    if (!tok || !seq || !pos || !want || !lg || !c0 || !dts || !cts) {
        fprintf(stderr, "moe bench serve: out of memory\n");
        goto done;
    }
    int n_dt = 0;
    double touched_all = 0, sum_ex = 0, sum_oth = 0, sum_ev = 0;
    int n_sum = 0;
    for (int it = 0; it <= iters; it++) {
        moe_infer_reset(m);
        /* prompts: sequence s gets its own P tokens */
        unsigned sd = 7;
        for (int s = 0; s < S; s++) {
            for (int i = 0; i < P; i++) {
                sd = sd * 1664525u + 1013904223u;
                tok[i] = (int32_t)((sd >> 8) % (unsigned)V);
                seq[i] = s;
                pos[i] = i;
                want[i] = i == P - 1;
            }
            if (moe_infer_batch_eval(m, tok, seq, pos, want, P, lg + (size_t)s * V, &err) != MOE_OK) {
                fprintf(stderr, "moe bench serve: %s\n", err.msg);
                goto done;
            }
        }
        double touched = 0;
        double dt_run[4096], ct_run[4096];
        int n_run = 0;
        for (int step = 0; step < N; step++) {
            for (int s = 0; s < S; s++) {
                tok[s] = argmax_row(lg + (size_t)s * V, V);
                seq[s] = s;
                pos[s] = P + step;
                want[s] = 1;
            }
            if (E > 0) memcpy(c0, moe_infer_expert_counts(m), sizeof(int64_t) * (size_t)L * E);
            moe_infer_times tm0, tm1;
            moe_infer_get_times(m, &tm0);
            const double t0 = cli_now(), c0t = cpu_now();
            if (moe_infer_batch_eval(m, tok, seq, pos, want, S, lg, &err) != MOE_OK) {
                fprintf(stderr, "moe bench serve: %s\n", err.msg);
                goto done;
            }
            if (n_run < 4096) {
                ct_run[n_run] = cpu_now() - c0t;
                dt_run[n_run++] = cli_now() - t0;
            }
            moe_infer_get_times(m, &tm1);
            if (it > 0 || iters == 0) {
                sum_ex += tm1.expert_mm_s - tm0.expert_mm_s;
                sum_oth += tm1.other_mm_s - tm0.other_mm_s;
                sum_ev += tm1.eval_s - tm0.eval_s;
                n_sum++;
            }
            if (E > 0) {
                const int64_t *c = moe_infer_expert_counts(m);
                for (int i = 0; i < L * E; i++) touched += c[i] > c0[i];
            }
        }
        if (it == 0 && iters > 0) continue; /* pages the weights in */
        for (int i = 0; i < n_run; i++) {
            cts[n_dt] = ct_run[i];
            dts[n_dt++] = dt_run[i];
        }
        touched_all += touched;
    }
    sort_d(dts, n_dt);
    sort_d(cts, n_dt);
    const double med = dts[n_dt / 2];
    row->cpu_ms = 1e3 * cts[n_dt / 2];
    const double touched_best = touched_all / (n_dt / N > 0 ? n_dt / N : 1);
    const int L_moe = in->n_layers - in->n_dense_layers;
    row->S = S;
    row->tok_s = S / med;
    row->ms_step = 1e3 * med;
    row->experts = L_moe > 0 ? touched_best / N / L_moe : 0;
    row->mib_step = touched_best / N * eb / 1048576.0;
    if (n_sum > 0) {
        row->ex_ms = 1e3 * sum_ex / n_sum;
        row->oth_ms = 1e3 * sum_oth / n_sum;
        row->rest_ms = 1e3 * (sum_ev - sum_ex - sum_oth) / n_sum;
    }
    ok = 1;
done:
    free(tok); free(seq); free(pos); free(want); free(lg); free(c0); free(dts); free(cts);
    moe_infer_close(m);
    return ok;
}

int bench_serve(int argc, char **argv, int nt) {
    const char *model = NULL, *gen = NULL;
    int P = 16, N = 16, iters = 2, bad = 0, max_s = 32;
    for (int i = 0; i < argc && !bad; i++) {
        if (cli_int_opt("--prompt", argc, argv, &i, &P, &bad) ||
            cli_int_opt("--tokens", argc, argv, &i, &N, &bad) ||
            cli_int_opt("-n", argc, argv, &i, &N, &bad) ||
            cli_int_opt("--iters", argc, argv, &i, &iters, &bad) ||
            cli_int_opt("--max-seqs", argc, argv, &i, &max_s, &bad)) continue;
        if (!strcmp(argv[i], "--model") && i + 1 < argc) model = argv[++i];
        else if (!strcmp(argv[i], "--gen") && i + 1 < argc) gen = argv[++i];
        else {
            fprintf(stderr, "moe bench serve: unknown option '%s'\n(--model FILE | --gen ARCH:TYPE) "
                    "[--prompt P] [--tokens N] [--iters N] [--max-seqs S]\n", argv[i]);
            return 2;
        }
    }
    if (bad || P < 1 || N < 1 || iters < 0 || max_s < 1) {
        fprintf(stderr, "moe bench serve: bad option values\n");
        return 2;
    }
    if (!model && !gen) gen = "mixtral:q4_K";
    char path[512];
    if (!bench_model_path(model, gen, path, sizeof path)) return 1;
    moe_infer_model *mdl;
    moe_error err;
    if (moe_infer_model_open(&mdl, path, &err) != MOE_OK) {
        fprintf(stderr, "moe bench serve: %s\n", err.msg);
        return 1;
    }
    moe_infer_options io;
    moe_infer_options_default(&io);
    io.ctx_len = 8;
    moe_infer *probe;
    if (moe_infer_create(&probe, mdl, &io, &err) != MOE_OK) {
        fprintf(stderr, "moe bench serve: %s\n", err.msg);
        moe_infer_model_close(mdl);
        return 1;
    }
    const moe_infer_info *in = moe_infer_get_info(probe);
    const double eb = expert_bytes(probe);
    const int L_moe = in->n_layers - in->n_dense_layers;
    const double other = in->bytes_active - (double)in->top_k * eb * L_moe;
#ifdef _OPENMP
    const int T = nt > 0 ? nt : omp_get_max_threads();
#else
    const int T = 1;
#endif
    printf("model: %s  arch %s, %d layers, d %d, %d experts top %d, %.3f B weights, %.1f MiB read "
           "per token at batch 1; one expert %.2f MiB per layer, non-expert weights %.1f MiB; "
           "threads=%d\n", path, in->arch, in->n_layers, in->d_model, in->n_experts, in->top_k,
           in->params_total * 1e-9, in->bytes_active / 1048576.0, eb / 1048576.0,
           other / 1048576.0, T);
    printf("serve: prompt %d per sequence, %d decode steps x %d runs, median step; one step = one "
           "batch of S rows (one token per sequence)\n", P, N, iters);
    printf("%4s %11s %11s %8s %10s %10s %11s %9s %14s %16s %10s %10s %10s %10s\n", "S",
           "S=1 tok/s", "agg tok/s", "x S=1", "ms/step", "lat x S=1", "cpu ms/step", "cpu x S",
           "experts/layer", "expert MiB/step", "MiB/token", "expert mm", "other mm", "rest");
    moe_infer_close(probe);
    int rc = 0;
    for (int S = 1; S <= max_s; S *= 2) {
        serve_row base, r;
        if (!run_S(mdl, 1, P, N, iters, nt, eb, &base) ||
            (S > 1 && !run_S(mdl, S, P, N, iters, nt, eb, &r))) {
            rc = 1;
            break;
        }
        if (S == 1) r = base;
        /* cpu x S: the aggregate speed-up the CPU time says (S tokens for
           the CPU time of cpu ms/step, against one token for S=1's) */
        printf("%4d %11.2f %11.2f %8.2f %10.2f %10.2f %11.2f %9.2f %14.2f %16.1f %10.1f %10.2f %10.2f "
               "%10.2f\n", S, base.tok_s, r.tok_s, r.tok_s / base.tok_s, r.ms_step,
               r.ms_step / base.ms_step, r.cpu_ms, S * base.cpu_ms / r.cpu_ms, r.experts,
               r.mib_step, (r.mib_step + other / 1048576.0) / S, r.ex_ms, r.oth_ms, r.rest_ms);
        fflush(stdout);
    }
    moe_infer_model_close(mdl);
    return rc;
}
