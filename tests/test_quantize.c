/* test_quantize.c: moe_quantize (src/tools/quantize.c), the library part of
 * `moe quantize`. For a synthetic F32 model of every architecture (widths
 * 256, so every block type fits) and every weight type: the output opens in
 * the engine, its tensors have the rule's types (matrices the target type;
 * norms, routers and 1-D tensors F32, byte-identical), and its greedy
 * tokens equal the F32 model's (all 8 for 4+ bit types; the first for Q2_K,
 * Q3_K, whose error on a random model can flip later near-ties).
 * Then bad inputs: an unknown type, rows the block size cannot hold, a file
 * that is not GGUF, an output in a missing folder: an error with a message
 * and no file left behind.
 */
#include "testutil.h"
#include "moe_infer.h"
#include "io/gguf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <math.h>

static const char *k_types[] = {"f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1",
                                "q2_k", "q3_k", "q4_k", "q5_k", "q6_k"};
static const uint32_t k_ids[] = {GGUF_T_F32, GGUF_T_F16, GGUF_T_BF16, GGUF_T_Q8_0, GGUF_T_Q4_0, GGUF_T_Q4_1,
                                 GGUF_T_Q5_0, GGUF_T_Q5_1, GGUF_T_Q2_K, GGUF_T_Q3_K, GGUF_T_Q4_K, GGUF_T_Q5_K,
                                 GGUF_T_Q6_K};
#define NT (sizeof k_types / sizeof k_types[0])
/* normalised RMS of the logits vs F32 allowed per type (random weights at
 * d 256, 2 layers amplify it: measured worst over the 7 architectures x ~2;
 * a loose bound: it catches a wrong layout or type, not a 10% regression) */
static const double k_tol[] = {1e-6, 5e-3, 3e-2, 0.5, 1.2, 1.2, 0.8, 1.2, 3.0, 2.5, 1.0, 0.8, 0.5};
static int g_V;

/* Logits after a fixed prompt into out[V] (V <= 4096); 0 on success. */
static int logits(const char *path, float *out, char *why, size_t cap) {
    moe_error err;
    moe_infer *m = NULL;
    moe_infer_options o;
    moe_infer_options_default(&o);
    o.n_threads = 2;
    o.ctx_len = 64;
    if (moe_infer_open(&m, path, &o, &err) != MOE_OK) { snprintf(why, cap, "open: %s", err.msg); return 1; }
    const int V = moe_infer_get_info(m)->vocab_size;
    float *lg = malloc(sizeof(float) * (size_t)V);
    int32_t toks[8] = {1, 17, 200, 31, 45, 90, 2, 150};
    int rc = 0;
    if (!lg || V > 4096 || moe_infer_eval(m, toks, 8, 0, lg, 0, &err) != MOE_OK) {
        snprintf(why, cap, "eval: %s", lg ? err.msg : "out of memory");
        rc = 1;
    } else memcpy(out, lg, sizeof(float) * (size_t)V);
    g_V = V;
    free(lg);
    moe_infer_close(m);
    return rc;
}

/* Types as the rule says: 0 on success. */
static int check_types(const char *in, const char *out, uint32_t want, char *why, size_t cap) {
    moe_error err;
    gguf_ctx *a = NULL, *b = NULL;
    if (gguf_open_file(&a, in, &err) || gguf_open_file(&b, out, &err)) {
        snprintf(why, cap, "%s", err.msg);
        gguf_close(a);
        return 1;
    }
    int rc = 0;
    for (size_t i = 0; i < gguf_n_tensors(a) && !rc; i++) {
        const gguf_tensor *x = gguf_tensor_at(a, i), *y = gguf_tensor_at(b, i);
        const int mat = x->n_dims >= 2 && strstr(x->name.s, ".weight") && !strstr(x->name.s, "ffn_gate_inp");
        const uint32_t w = mat && x->ne[0] % gguf_type_block_size(want) ? GGUF_T_Q8_0 : want; /* the fallback */
        if (strcmp(x->name.s, y->name.s) || memcmp(x->ne, y->ne, sizeof x->ne)) {
            snprintf(why, cap, "tensor %zu: %s vs %s", i, x->name.s, y->name.s);
            rc = 1;
        } else if (mat ? y->type != w : (y->type != x->type || memcmp(x->data, y->data, x->nbytes))) {
            snprintf(why, cap, "%s: type %s (expected %s)", y->name.s, gguf_type_name(y->type),
                     mat ? gguf_type_name(w) : "unchanged");
            rc = 1;
        }
    }
    gguf_close(a);
    gguf_close(b);
    return rc;
}

int main(void) {
    static const char *archs[] = {"llama", "mixtral", "qwen2moe", "qwen3moe", "olmoe", "deepseek", "granitemoe"};
    char src[128], dst[128], why[600];
    const int pid = (int)getpid();
    moe_error err;
    for (size_t a = 0; a < sizeof archs / sizeof archs[0]; a++) {
        snprintf(src, sizeof src, "/tmp/moe-test-quantize-%d-%s.gguf", pid, archs[a]);
        moe_synth_config sc;
        moe_synth_config_default(&sc);
        sc.arch = archs[a];
        sc.d_model = 256;
        sc.d_ff = 256;
        if (moe_synth_model(src, &sc, NULL, &err) != MOE_OK) { tu_fail(archs[a], "synth: %s", err.msg); continue; }
        static float ref[4096], got[4096];
        double worst[NT] = {0};
        if (logits(src, ref, why, sizeof why)) { tu_fail(archs[a], "f32: %s", why); remove(src); continue; }
        int bad = 0;
        for (size_t t = 0; t < NT; t++) {
            snprintf(dst, sizeof dst, "/tmp/moe-test-quantize-%d-%s-%s.gguf", pid, archs[a], k_types[t]);
            moe_quantize_options o;
            moe_quantize_options_default(&o);
            o.type = k_types[t];
            o.n_threads = 2;
            o.allow_fallback = 1;
            moe_quantize_result r;
            if (moe_quantize(src, dst, &o, &r, &err) != MOE_OK) {
                tu_fail(archs[a], "%s: %s", k_types[t], err.msg);
                bad++;
            } else if (check_types(src, dst, k_ids[t], why, sizeof why)) {
                tu_fail(archs[a], "%s: %s", k_types[t], why);
                bad++;
            } else if (logits(dst, got, why, sizeof why)) {
                tu_fail(archs[a], "%s: %s", k_types[t], why);
                bad++;
            } else {
                double se = 0, sr = 0;
                for (int v = 0; v < g_V; v++) {
                    se += ((double)got[v] - ref[v]) * ((double)got[v] - ref[v]);
                    sr += (double)ref[v] * ref[v];
                }
                worst[t] = sqrt(se / (sr > 0 ? sr : 1));
                if (!(worst[t] <= k_tol[t])) {
                    tu_fail(archs[a], "%s: logits vs f32: normalised RMS %.3g > %.3g", k_types[t], worst[t], k_tol[t]);
                    bad++;
                }
            }
            remove(dst);
        }
        if (!bad) {
            char line[400];
            size_t k = 0;
            for (size_t t = 1; t < NT; t++) k += (size_t)snprintf(line + k, sizeof line - k, " %s %.2g", k_types[t], worst[t]);
            tu_okf("quantize %s to every type: opens, rule's types, logits vs f32 (normalised RMS):%s", archs[a], line);
        }
        remove(src);
    }
    /* bad inputs: an error naming the problem, no file left */
    snprintf(src, sizeof src, "/tmp/moe-test-quantize-%d-small.gguf", pid);
    moe_synth_config sc;
    moe_synth_config_default(&sc);
    if (moe_synth_model(src, &sc, NULL, &err) != MOE_OK) { tu_fail("quantize bad inputs", "synth: %s", err.msg); return 1; }
    char notg[128];
    snprintf(notg, sizeof notg, "/tmp/moe-test-quantize-%d-not.gguf", pid);
    FILE *f = fopen(notg, "wb");
    if (f) { fputs("this is not a GGUF file at all, just text\n", f); fclose(f); }
    snprintf(dst, sizeof dst, "/tmp/moe-test-quantize-%d-out.gguf", pid);
    struct { const char *in, *out, *type, *want; } bad[] = {
        {src, dst, "q7_k", "unknown type"},
        {src, dst, "q4_k", "do not fill"},
        {notg, dst, "q8_0", "GGUF"},
        {src, "/tmp/moe-no-such-folder-xyz/out.gguf", "q8_0", "moe-no-such-folder-xyz"},
    };
    int fails = 0;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        moe_quantize_options o;
        moe_quantize_options_default(&o);
        o.type = bad[i].type;
        err.msg[0] = '\0';
        moe_status st = moe_quantize(bad[i].in, bad[i].out, &o, NULL, &err);
        if (st == MOE_OK || !strstr(err.msg, bad[i].want) || strchr(err.msg, '\n') || access(bad[i].out, F_OK) == 0) {
            tu_fail("quantize bad inputs", "case %zu: status %d, '%s' (expected '%s', one line, no %s)", i, (int)st,
                    err.msg, bad[i].want, bad[i].out);
            fails++;
        }
        remove(dst);
    }
    /* the fallback and the dry run */
    moe_quantize_options o;
    moe_quantize_options_default(&o);
    o.type = "q4_k";
    o.allow_fallback = 1;
    o.dry_run = 1;
    moe_quantize_result r;
    if (moe_quantize(src, dst, &o, &r, &err) != MOE_OK || access(dst, F_OK) == 0 || r.n_fallback == 0 ||
        r.bytes_out <= 0) {
        tu_fail("quantize bad inputs", "dry run with fallback: %s, %d fallbacks, %lld bytes", err.msg, r.n_fallback,
                (long long)r.bytes_out);
        fails++;
    }
    if (!fails) tu_ok("quantize: unknown type, unfit rows, not GGUF, missing folder refused in one line, no file; "
                      "dry run writes nothing");
    remove(src);
    remove(notg);
    return tu_exit_code();
}
