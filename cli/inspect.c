/* inspect.c: `moe inspect MODEL.gguf` (what a GGUF file holds: metadata,
 * tensors, and what the engine makes of it: architecture, sizes, weights
 * and bytes per generated token) and `moe synth OUT.gguf` (a random model
 * of any supported architecture and weight type, to try things on).
 * Only the public API (moe_infer.h).
 *
 * Not for: running a model (run.c) or benchmarks (cli/bench_infer.c).
 */
#include "cli.h"
#include "moe_infer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void inspect_usage(FILE *f) {
    fprintf(f, "usage: moe inspect MODEL.gguf [--experts-per-token K]   (or -m MODEL.gguf)\n"
               "  --experts-per-token K  count K routed experts per token (default 0: the model's k)\n"
               "  prints the GGUF metadata and tensor table, then the model as the engine sees it:\n"
               "  architecture, sizes, weights in all and per token, bytes read per generated token\n");
}

/* "164.7 K", "1.02 B" ... into buf[32]. */
static const char *human(char *buf, int64_t n) {
    const double x = (double)n;
    if (x >= 1e9) snprintf(buf, 32, "%.2f B", x * 1e-9);
    else if (x >= 1e6) snprintf(buf, 32, "%.1f M", x * 1e-6);
    else snprintf(buf, 32, "%.1f K", x * 1e-3);
    return buf;
}

int cmd_inspect(int argc, char **argv, int n_threads) {
    const char *path = NULL;
    int bad = 0, k = 0;
    for (int i = 0; i < argc && !bad; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) { inspect_usage(stdout); return 0; }
        if (cli_int_opt("--experts-per-token", argc, argv, &i, &k, &bad)) continue;
        if (cli_str_opt("-m", "--model", argc, argv, &i, &path, &bad)) continue;
        if (argv[i][0] != '-' && !path) path = argv[i];
        else return cli_unknown("inspect", argv[i]);
    }
    if (bad) return 2;
    if (!path) return cli_usage_error("inspect", "which model? Give MODEL.gguf");
    if (k < 0) return cli_usage_error("inspect", "--experts-per-token must be >= 0");

    moe_error err;
    if (moe_gguf_dump(path, stdout, &err) != MOE_OK) {
        fprintf(stderr, "moe inspect: %s\n", cli_msg("inspect", err.msg));
        return 1;
    }
    moe_infer_options o;
    moe_infer_options_default(&o);
    o.n_threads = n_threads;
    o.ctx_len = 8;   /* the cache is not used here */
    o.max_batch = 1;
    o.experts_per_token = k;
    moe_infer *m;
    fflush(stdout);
    if (moe_infer_open(&m, path, &o, &err) != MOE_OK) {
        fprintf(stderr, "moe inspect: the engine cannot run this file: %s\n", err.msg);
        return 1;
    }
    const moe_infer_info *in = moe_infer_get_info(m);
    struct stat sb;
    const double fsize = stat(path, &sb) == 0 ? (double)sb.st_size : 0.0;
    printf("model (as the engine reads it):\n");
    printf("  architecture     %s%s%s%s\n", in->arch, in->name[0] ? " (" : "", in->name,
           in->name[0] ? ")" : "");
    printf("  runs in          %s\n", in->runs_in);
    printf("  layers           %d (%d with a dense feed-forward block)\n", in->n_layers,
           in->n_dense_layers);
    printf("  d_model          %d\n", in->d_model);
    printf("  heads            %d query, %d key/value, head_dim %d\n", in->n_heads, in->n_kv_heads,
           in->head_dim);
    printf("  vocabulary       %d%s\n", in->vocab_size, moe_infer_vocab(m) ? "" : " (no tokenizer)");
    if (in->n_experts > 0) printf("  experts          %d, top-k %d\n", in->n_experts, in->top_k);
    else printf("  experts          none (dense)\n");
    char a[32], b[32];
    printf("  params total     %lld (%s)\n", (long long)in->params_total, human(a, in->params_total));
    printf("  params active    %lld (%s, %.1f%% of all) per token\n", (long long)in->params_active,
           human(b, in->params_active), 100.0 * in->params_active / (double)in->params_total);
    printf("  weight bytes     %lld (%.1f MiB)\n", (long long)in->bytes_total, in->bytes_total / 1048576.0);
    printf("  bytes per token  %lld (%.1f MiB read per generated token)\n", (long long)in->bytes_active,
           in->bytes_active / 1048576.0);
    printf("  file size        %.0f (%.1f MiB)\n", fsize, fsize / 1048576.0);
    moe_infer_close(m);
    return 0;
}

static void synth_usage(FILE *f) {
    fprintf(f, "usage: moe synth OUT.gguf [--arch A] [--type T] [--bench] [--d D] [--layers L]\n"
               "                 [--experts E] [--k K] [--dff F] [--seed S]\n"
               "  writes a model with random weights and a small byte-level BPE tokenizer\n"
               "  --d, --layers, --experts, --k, --dff: default 0, the preset's (below); --seed S (default 1; -1: random, printed)\n"
               "  Ctrl-C stops it and leaves no file\n"
               "  A: llama (dense), mixtral (default), qwen2moe, qwen3moe, olmoe, deepseek, granitemoe\n"
               "  T: f32 (default), f16, bf16, q4_0, q4_1, q5_0, q5_1, q8_0, q2_K, q3_K, q4_K, q5_K, q6_K\n"
               "  --bench: the ~1e9-weight benchmark model (d 2048, 8 experts of 1024, top 2) instead\n"
               "  of the tiny one (2 layers, d 64, 4 experts, top 2; widths x4 for the K types)\n");
}

int cmd_synth(int argc, char **argv, int n_threads) {
    (void)n_threads;
    moe_synth_config c;
    moe_synth_config_default(&c);
    const char *path = NULL;
    int bad = 0;
    int64_t seed = 1;
    for (int i = 0; i < argc && !bad; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { synth_usage(stdout); return 0; }
        if (cli_int_opt("--d", argc, argv, &i, &c.d_model, &bad) ||
            cli_int_opt("--layers", argc, argv, &i, &c.n_layers, &bad) ||
            cli_int_opt("--experts", argc, argv, &i, &c.n_experts, &bad) ||
            cli_int_opt("--k", argc, argv, &i, &c.top_k, &bad) ||
            cli_int_opt("--dff", argc, argv, &i, &c.d_ff, &bad) ||
            cli_seed_opt("--seed", argc, argv, &i, &seed, &bad))
            continue;
        if (cli_str_opt("--arch", NULL, argc, argv, &i, &c.arch, &bad) ||
            cli_str_opt("--type", NULL, argc, argv, &i, &c.wtype, &bad))
            continue;
        if (!strcmp(a, "--bench")) c.bench = 1;
        else if (a[0] != '-' && !path) path = a;
        else return cli_unknown("synth", a);
    }
    if (bad) return 2;
    if (!path) return cli_usage_error("synth", "which output file? Give OUT.gguf");
    if (seed == 0) return cli_usage_error("synth", "--seed must be >= 1 (or -1: a random one)");
    c.seed = cli_seed_resolve(seed);
    if (c.seed == 0) c.seed = 1;
    moe_error err;
    int64_t n = 0;
    double t0 = cli_now();
    cli_progress pr;
    cli_progress_init(&pr, "synth");
    c.progress = cli_progress_cb;
    c.progress_user = &pr;
    moe_status st = moe_synth_model(path, &c, &n, &err);
    cli_progress_end(&pr);
    if (st == MOE_ERR_CANCELLED) {
        fprintf(stderr, "moe synth: stopped; %s was not written\n", path);
        return cli_signal_exit() ? cli_signal_exit() : 130;
    }
    if (st != MOE_OK) {
        fprintf(stderr, "moe synth: %s\n", cli_msg("synth", err.msg));
        return 1;
    }
    struct stat sb;
    printf("wrote %s: %s, %s, %lld weights, %.1f MiB, in %.1f s\n", path, c.arch, c.wtype,
           (long long)n, stat(path, &sb) == 0 ? sb.st_size / 1048576.0 : 0.0, cli_now() - t0);
    return 0;
}
