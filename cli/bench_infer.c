/* bench_infer.c: `moe bench bandwidth`, `moe bench decode` and `moe bench
 * prefill`: the inference engine's speed next to what this machine allows,
 * measured in the same run. Decode (batch 1) reads every active weight once
 * per token, so its bound is memory bandwidth: tokens/s x bytes per token
 * against a streaming read of a large buffer. Prefill (one long prompt) is
 * compute-bound: 2 x active weights x tokens / s against the dense fp32
 * GEMM's GFLOP/s. Figures are printed, never asserted.
 *
 * Models: --model FILE, or --gen ARCH:TYPE, which writes the ~1e9-weight
 * benchmark model of moe_synth_model once into build/bench-models/ and
 * re-uses it afterwards. Only the public API (moe.h, moe_infer.h).
 * Not for: the layer and GEMM benchmarks (bench.c), training (bench_train.c).
 */
#include "cli.h"
#include "moe_infer.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#ifdef _OPENMP
#include <omp.h>
#endif

/* ------------------------------------------------------------ bandwidth */

typedef uint64_t v4u64 __attribute__((vector_size(32)));

/* Sum of p[0, n) (n a multiple of 4) with four independent accumulators. */
static uint64_t sum_block(const v4u64 *p, size_t n) {
    v4u64 a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
    for (size_t i = 0; i < n; i += 4) {
        a0 += p[i];
        a1 += p[i + 1];
        a2 += p[i + 2];
        a3 += p[i + 3];
    }
    v4u64 s = a0 + a1 + a2 + a3;
    return s[0] + s[1] + s[2] + s[3];
}

static int threads_of(int nt) {
#ifdef _OPENMP
    return nt > 0 ? nt : omp_get_max_threads();
#else
    (void)nt;
    return 1;
#endif
}

/* Best of iters read rates (GB/s, 1e9 bytes) of a bytes-sized buffer read
 * by nt threads (static row ranges); NAN when out of memory. */
static double read_bandwidth(int nt, size_t bytes, int iters, double *t_best) {
    const size_t block = 2048; /* vectors per block: 64 KiB */
    const size_t n_blocks = bytes / (block * sizeof(v4u64));
    const int T = threads_of(nt);
    if (n_blocks == 0) return NAN;
    v4u64 *buf = aligned_alloc(64, n_blocks * block * sizeof(v4u64));
    if (!buf) return NAN;
    /* first touch by the threads that will read (NUMA placement) */
    #pragma omp parallel for schedule(static) num_threads(T)
    for (size_t b = 0; b < n_blocks; b++)
        for (size_t i = 0; i < block; i++) {
            uint64_t v = (uint64_t)(b * block + i);
            buf[b * block + i] = (v4u64){v, v + 1, v + 2, v + 3};
        }
    double best = 1e30;
    volatile uint64_t sink = 0;
    for (int it = 0; it < iters; it++) {
        uint64_t s = 0;
        double t0 = cli_now();
        #pragma omp parallel for schedule(static) num_threads(T) reduction(+ : s)
        for (size_t b = 0; b < n_blocks; b++) s += sum_block(buf + b * block, block);
        double t = cli_now() - t0;
        sink += s;
        best = t < best ? t : best;
    }
    (void)sink;
    free(buf);
    if (t_best) *t_best = best;
    return (double)(n_blocks * block * sizeof(v4u64)) / best * 1e-9;
}

int bench_bandwidth(int argc, char **argv, int nt) {
    int mb = 1024, iters = 5, bad = 0;
    for (int i = 0; i < argc && !bad; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: moe bench bandwidth [--mb MIB] [--iters N]\n"
                   "  streaming read of a buffer; defaults --mb %d --iters %d\n", mb, iters);
            return 0;
        }
        if (cli_int_opt("--mb", argc, argv, &i, &mb, &bad) ||
            cli_int_opt("--iters", argc, argv, &i, &iters, &bad)) continue;
        return cli_unknown("bench bandwidth", argv[i]);
    }
    if (bad) return 2;
    if (mb < 1 || iters < 1) { fprintf(stderr, "moe bench bandwidth: bad --mb or --iters\n"); return 2; }
    double t;
    double gbs = read_bandwidth(nt, (size_t)mb << 20, iters, &t);
    if (isnan(gbs)) { fprintf(stderr, "moe bench bandwidth: out of memory for %d MiB\n", mb); return 1; }
    printf("bandwidth: streaming read of %d MiB, threads=%d, best of %d: %.2f ms  %.2f GB/s\n", mb,
           threads_of(nt), iters, 1e3 * t, gbs);
    return 0;
}

/* ---------------------------------------------------------------- model */

/* mkdir -p of the directory part of path. 0 on failure. */
static int make_dirs(const char *path) {
    char tmp[512];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST) return 0;
        *p = '/';
    }
    return 1;
}

/* The model file to use: model, or the cached generated one for gen
 * ("ARCH:TYPE"), written first when absent. Returns 0 on failure (printed). */
int bench_model_path(const char *model, const char *gen, char *out, size_t cap) {
    if (model) { snprintf(out, cap, "%s", model); return 1; }
    char arch[64], type[32];
    const char *colon = strchr(gen, ':');
    if (!colon || colon == gen || !colon[1] || (size_t)(colon - gen) >= sizeof arch ||
        strlen(colon + 1) >= sizeof type) {
        fprintf(stderr, "moe bench: --gen wants ARCH:TYPE (e.g. mixtral:q4_K), got '%s'\n", gen);
        return 0;
    }
    memcpy(arch, gen, (size_t)(colon - gen));
    arch[colon - gen] = '\0';
    snprintf(type, sizeof type, "%s", colon + 1);
    snprintf(out, cap, "build/bench-models/%s-%s.gguf", arch, type);
    struct stat sb;
    if (stat(out, &sb) == 0) {
        printf("model: %s (generated earlier; delete it to regenerate)\n", out);
        return 1;
    }
    if (!make_dirs(out)) { fprintf(stderr, "moe bench: cannot create the folder of %s\n", out); return 0; }
    moe_synth_config c;
    moe_synth_config_default(&c);
    c.arch = arch;
    c.wtype = type;
    c.bench = 1;
    printf("model: generating %s (%s, %s, ~1e9 random weights; quantizing may take minutes; "
           "written once)...\n", out, arch, type);
    fflush(stdout);
    moe_error err;
    int64_t n = 0;
    double t0 = cli_now();
    if (moe_synth_model(out, &c, &n, &err) != MOE_OK) {
        fprintf(stderr, "moe bench: %s\n", err.msg);
        return 0;
    }
    printf("model: %lld weights written in %.1f s\n", (long long)n, cli_now() - t0);
    return 1;
}

typedef struct infer_bench_opts {
    const char *model, *gen;
    int tokens;     /* decode: tokens generated; prefill: prompt length */
    int prompt;     /* decode: prompt length */
    int k;          /* experts per token (0: the model's) */
    int iters;
    int bw_mb;      /* bandwidth buffer, MiB */
    int help;       /* --help was printed */
} infer_bench_opts;

static int parse_opts(const char *cmd, int argc, char **argv, infer_bench_opts *o) {
    int bad = 0;
    for (int i = 0; i < argc && !bad; i++) {
        if (cli_int_opt("--tokens", argc, argv, &i, &o->tokens, &bad) ||
            cli_int_opt("-n", argc, argv, &i, &o->tokens, &bad) ||
            cli_int_opt("--prompt", argc, argv, &i, &o->prompt, &bad) ||
            cli_int_opt("--experts-per-token", argc, argv, &i, &o->k, &bad) ||
            cli_int_opt("--iters", argc, argv, &i, &o->iters, &bad) ||
            cli_int_opt("--mb", argc, argv, &i, &o->bw_mb, &bad)) continue;
        if (cli_str_opt("--model", "-m", argc, argv, &i, &o->model, &bad) ||
            cli_str_opt("--gen", NULL, argc, argv, &i, &o->gen, &bad))
            continue;
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: moe bench %s (--model FILE | --gen ARCH:TYPE) [--tokens N] [--prompt P]\n"
                   "                  [--experts-per-token K] [--iters N] [--mb MIB]\n"
                   "  defaults: --gen mixtral:q4_K, --tokens %d, --prompt %d, --experts-per-token %d (the\n"
                   "  model's), --iters %d, --mb %d (the bandwidth buffer)\n",
                   cmd, o->tokens, o->prompt, o->k, o->iters, o->bw_mb);
            o->help = 1;
            return 0;
        }
        char name[32];
        snprintf(name, sizeof name, "bench %s", cmd);
        cli_unknown(name, argv[i]);
        return 0;
    }
    if (bad) return 0;
    if (o->tokens < 1 || o->prompt < 1 || o->k < 0 || o->iters < 1 || o->bw_mb < 1) {
        fprintf(stderr, "moe bench %s: bad option values\n", cmd);
        return 0;
    }
    if (!o->model && !o->gen) o->gen = "mixtral:q4_K";
    return 1;
}

/* Opens the model for ctx tokens; prints its line. NULL on failure. */
static moe_infer *open_model(const char *cmd, const infer_bench_opts *o, int nt, int ctx) {
    char path[512];
    if (!bench_model_path(o->model, o->gen, path, sizeof path)) return NULL;
    moe_infer_options io;
    moe_infer_options_default(&io);
    io.n_threads = nt;
    io.ctx_len = ctx;
    io.experts_per_token = o->k;
    moe_infer *m;
    moe_error err;
    if (moe_infer_open(&m, path, &io, &err) != MOE_OK) {
        fprintf(stderr, "moe bench %s: %s\n", cmd, err.msg);
        return NULL;
    }
    const moe_infer_info *in = moe_infer_get_info(m);
    printf("model: %s  arch %s, %d layers, d %d, %d experts top %d, %.3f B weights (%.3f B active), "
           "%.1f MiB read per token; threads=%d\n", path, in->arch, in->n_layers, in->d_model,
           in->n_experts, in->top_k, in->params_total * 1e-9, in->params_active * 1e-9,
           in->bytes_active / 1048576.0, threads_of(nt));
    return m;
}

/* Deterministic token ids in [0, V). */
static void fill_tokens(int32_t *t, int n, int V, unsigned seed) {
    for (int i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        t[i] = (int32_t)((seed >> 8) % (unsigned)V);
    }
}

static int32_t argmax(const float *x, int n) {
    int32_t b = 0;
    for (int i = 1; i < n; i++) if (x[i] > x[b]) b = i;
    return b;
}

/* ----------------------------------------------------------------- decode */

int bench_decode(int argc, char **argv, int nt) {
    infer_bench_opts o = {.tokens = 32, .prompt = 16, .iters = 3, .bw_mb = 1024};
    if (!parse_opts("decode", argc, argv, &o)) return o.help ? 0 : 2;
    moe_infer *m = open_model("decode", &o, nt, o.prompt + o.tokens + 1);
    if (!m) return 1;
    const moe_infer_info *in = moe_infer_get_info(m);
    const int V = in->vocab_size, P = o.prompt, N = o.tokens;
    int32_t *prompt = malloc(sizeof(int32_t) * (size_t)P);
    float *logits = malloc(sizeof(float) * (size_t)V);
    double *dt = malloc(sizeof(double) * (size_t)N);
    moe_error err;
    int rc = 1;
    if (!prompt || !logits || !dt) { fprintf(stderr, "moe bench decode: out of memory\n"); goto done; }
    fill_tokens(prompt, P, V, 7);
    /* iteration 0 pages the weights in and is not counted unless alone */
    double best = 1e30, best_med = 0;
    for (int it = 0; it <= o.iters; it++) {
        moe_infer_reset(m);
        if (moe_infer_eval(m, prompt, P, 0, logits, 0, &err) != MOE_OK) {
            fprintf(stderr, "moe bench decode: %s\n", err.msg);
            goto done;
        }
        double total = 0;
        for (int i = 0; i < N; i++) {
            int32_t tok = argmax(logits, V);
            double t0 = cli_now();
            if (moe_infer_eval(m, &tok, 1, P + i, logits, 0, &err) != MOE_OK) {
                fprintf(stderr, "moe bench decode: %s\n", err.msg);
                goto done;
            }
            dt[i] = cli_now() - t0;
            total += dt[i];
        }
        if (it == 0 && o.iters > 0) continue;
        if (total < best) {
            best = total;
            for (int i = 1; i < N; i++) /* insertion sort for the median */
                for (int j = i; j > 0 && dt[j] < dt[j - 1]; j--) { double x = dt[j]; dt[j] = dt[j - 1]; dt[j - 1] = x; }
            best_med = dt[N / 2];
        }
    }
    const double tps = N / best, implied = in->bytes_active * tps * 1e-9;
    double tb;
    const double bw = read_bandwidth(nt, (size_t)o.bw_mb << 20, 5, &tb);
    printf("decode: prompt %d, %d tokens (batch 1, greedy), best of %d: %.2f tok/s (%.2f ms/token, "
           "median %.2f ms)\n", P, N, o.iters, tps, 1e3 / tps, 1e3 * best_med);
    printf("  bytes per token %.1f MiB -> implied %.2f GB/s; measured read bandwidth %.2f GB/s "
           "(%d MiB); ratio %.2f\n", in->bytes_active / 1048576.0, implied, bw, o.bw_mb, implied / bw);
    rc = 0;
done:
    free(prompt);
    free(logits);
    free(dt);
    moe_infer_close(m);
    return rc;
}

/* ---------------------------------------------------------------- prefill */

int bench_prefill(int argc, char **argv, int nt) {
    infer_bench_opts o = {.tokens = 512, .prompt = 1, .iters = 2, .bw_mb = 1024};
    if (!parse_opts("prefill", argc, argv, &o)) return o.help ? 0 : 2;
    moe_infer *m = open_model("prefill", &o, nt, o.tokens);
    if (!m) return 1;
    const moe_infer_info *in = moe_infer_get_info(m);
    const int V = in->vocab_size, P = o.tokens;
    int32_t *prompt = malloc(sizeof(int32_t) * (size_t)P);
    float *logits = malloc(sizeof(float) * (size_t)V);
    moe_error err;
    int rc = 1;
    if (!prompt || !logits) { fprintf(stderr, "moe bench prefill: out of memory\n"); goto done; }
    fill_tokens(prompt, P, V, 11);
    /* warm-up: a short prompt pages the weights in */
    const int warm = P < 64 ? P : 64;
    if (moe_infer_eval(m, prompt, warm, 0, logits, 0, &err) != MOE_OK) {
        fprintf(stderr, "moe bench prefill: %s\n", err.msg);
        goto done;
    }
    double best = 1e30;
    for (int it = 0; it < o.iters; it++) {
        moe_infer_reset(m);
        double t0 = cli_now();
        if (moe_infer_eval(m, prompt, P, 0, logits, 0, &err) != MOE_OK) {
            fprintf(stderr, "moe bench prefill: %s\n", err.msg);
            goto done;
        }
        double t = cli_now() - t0;
        best = t < best ? t : best;
    }
    /* the dense reference: a GEMM of the prompt's rows against a d x 4d matrix */
    const int gN = 4 * in->d_model, gK = in->d_model;
    const double tg = bench_time_gemm(nt, P, gN, gK, 3);
    const double g_rate = 2.0 * P * (double)gN * gK / tg * 1e-9;
    const double rate = 2.0 * (double)in->params_active * P / best * 1e-9;
    printf("prefill: %d tokens in one batch, best of %d: %.3f s  %.1f tok/s  %.1f GFLOP/s "
           "(2 x %.3f B active weights x tokens / s, attention not counted)\n", P, o.iters, best,
           P / best, rate, in->params_active * 1e-9);
    printf("  dense fp32 gemm %s %d x %d x %d: %.1f GFLOP/s; ratio %.2f\n", moe_sgemm_kernel_name(), P,
           gN, gK, g_rate, rate / g_rate);
    rc = 0;
done:
    free(prompt);
    free(logits);
    moe_infer_close(m);
    return rc;
}
