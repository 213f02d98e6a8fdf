/* quantize.c: `moe quantize IN.gguf OUT.gguf --type T`: a GGUF model with its
 * matrices in another weight type (moe_quantize, src/tools/quantize.c; the
 * rule for which tensors change is there and in docs/INFERENCE.md).
 * Only the public API (moe_infer.h).
 */
#include "cli.h"
#include "moe_infer.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void quantize_usage(FILE *f) {
    fprintf(f, "usage: moe quantize IN.gguf OUT.gguf --type T [--dry-run] [--allow-fallback]\n"
               "  T: f32 f16 bf16 q8_0 q4_0 q4_1 q5_0 q5_1 q2_k q3_k q4_k q5_k q6_k\n"
               "  matrices (2+ dims, *.weight) become T; norms, biases, routers (ffn_gate_inp*)\n"
               "  and 1-D tensors are copied unchanged. The output is written atomically.\n"
               "  --type T           required (no default)\n"
               "  --dry-run          print the sizes only (OUT.gguf may be omitted; default off)\n"
               "  --allow-fallback   a matrix whose rows T's blocks do not hold becomes q8_0\n"
               "                     (or f16) instead of an error (default off)\n"
               "  a progress line on stderr when it is a terminal; Ctrl-C stops it, leaving no file\n");
}

typedef struct qprog { double t0, last; } qprog;

static void qprogress(void *user, int64_t done, int64_t total) {
    qprog *p = user;
    const double now = cli_now();
    if (done < total && now - p->last < 0.2) return;
    p->last = now;
    fprintf(stderr, "\rquantizing: %.1f / %.1f M weights (%.0f%%, %.1f M/s)   ", done * 1e-6, total * 1e-6,
            total ? 100.0 * done / total : 100.0, now > p->t0 ? done * 1e-6 / (now - p->t0) : 0.0);
    fflush(stderr);
}

int cmd_quantize(int argc, char **argv, int n_threads) {
    const char *in = NULL, *out = NULL;
    moe_quantize_options o;
    moe_quantize_options_default(&o);
    o.type = NULL;
    o.n_threads = n_threads;
    int bad = 0;
    for (int i = 0; i < argc && !bad; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { quantize_usage(stdout); return 0; }
        if (cli_str_opt("--type", NULL, argc, argv, &i, &o.type, &bad)) continue;
        if (!strcmp(a, "--dry-run")) o.dry_run = 1;
        else if (!strcmp(a, "--allow-fallback")) o.allow_fallback = 1;
        else if (a[0] != '-' && !in) in = a;
        else if (a[0] != '-' && !out) out = a;
        else return cli_unknown("quantize", a);
    }
    if (bad) return 2;
    if (!in || (!out && !o.dry_run) || !o.type)
        return cli_usage_error("quantize", !in ? "needs IN.gguf, OUT.gguf and --type" : !o.type
                               ? "which type? Give --type T, e.g. --type q8_0" : "which output file? Give OUT.gguf");
    qprog p = {cli_now(), 0};
    if (isatty(2) && !o.dry_run) { o.progress = qprogress; o.user = &p; }
    moe_quantize_result r;
    moe_error err;
    moe_status st = moe_quantize(in, out, &o, &r, &err);
    if (o.progress) fprintf(stderr, "\r%*s\r", 70, "");
    if (st == MOE_ERR_CANCELLED) {
        fprintf(stderr, "moe quantize: stopped; %s was not written\n", out ? out : "-");
        return cli_signal_exit() ? cli_signal_exit() : 130;
    }
    if (st != MOE_OK) { fprintf(stderr, "moe quantize: %s\n", cli_msg("quantize", err.msg)); return 1; }
    printf("%s%s -> %s (%s): %d tensors, %d converted%s; %.2f MiB -> %.2f MiB (%.1f%%) in %.2f s\n",
           o.dry_run ? "dry run: " : "", in, out ? out : "-", o.type, r.n_tensors, r.n_quantized,
           r.n_fallback ? " (some as q8_0/f16)" : "", r.bytes_in / 1048576.0, r.bytes_out / 1048576.0,
           r.bytes_in ? 100.0 * r.bytes_out / r.bytes_in : 0.0, r.seconds);
    return 0;
}
