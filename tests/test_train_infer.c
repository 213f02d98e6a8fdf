/* test_train_infer.c: a model trained by moe gives the same logits through
 * the inference engine (the saved model.gguf alone: GGUF file, KV cache,
 * per-expert batching) as through the training forward pass in evaluation
 * mode (no noise or jitter, dropless, as the trainer's validation runs it):
 * relative error <= 1e-5 in fp32, for the prompt as one batch and token by
 * token. Every router preset and option of docs/ROUTING.md, after 3 AdamW
 * steps so no weight is at init; the file's architecture ("llama" only when
 * llama.cpp computes the same thing, else "moe"); moe_model_load reads the
 * file back to the same logits. Expert choice with ec_inference = 1 routes
 * over the evaluated batch (not causal): compared for the whole prompt only,
 * and served (moe_server, 2 sequences) one sequence per step, each
 * request's greedy text the same as alone.
 * Then files with a newer moe.version or an unknown moe.* key are refused by
 * the engine and by moe_model_load, naming the version or the key. */
#include "testutil.h"
#include "moe.h"
#include "moe_infer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* the message of the last failed layer or model call */
static moe_error lerr;

typedef struct tcase {
    const char *name;
    const char *router;   /* preset, NULL: the default configuration */
    int moe_every, dense_first, tie;
    int E, k;
    int ec_inference;     /* expert choice: 1 routes over the batch at inference */
    int shared_ungated;   /* shared preset without its gate */
    int set_bias;         /* random selection bias after training */
    const char *arch;     /* the general.architecture expected */
    float top_p;          /* top-p threshold (0: the preset's) */
    float scale;          /* weight_scale (0: 1) */
} tcase;

static double g_worst = 0.0;
static const char *g_worst_name = "";

/* The logits of the training forward (eval) vs the engine's, relative to the
 * largest reference logit; batch: prompt at once, else token by token. */
static int compare(const char *name, moe_infer *inf, const int32_t *x, int T, int V, const float *ref, int batch,
                   float *lg, double *out) {
    moe_error err;
    double worst = 0, scale = 0;
    for (size_t i = 0; i < (size_t)T * V; i++) scale = fmax(scale, fabs(ref[i]));
    moe_infer_reset(inf);
    if (batch) {
        if (moe_infer_eval(inf, x, T, 0, lg, 1, &err) != MOE_OK) { tu_fail(name, "eval: %s", err.msg); return 1; }
        for (size_t i = 0; i < (size_t)T * V; i++) worst = fmax(worst, fabs(lg[i] - ref[i]));
    } else {
        for (int t = 0; t < T; t++) {
            if (moe_infer_eval(inf, &x[t], 1, t, lg, 0, &err) != MOE_OK) { tu_fail(name, "eval: %s", err.msg); return 1; }
            for (int v = 0; v < V; v++) worst = fmax(worst, fabs(lg[v] - ref[(size_t)t * V + v]));
        }
    }
    *out = worst / scale;
    return 0;
}

/* The whole response of r (its JSON body), malloc'd, and its status. */
static char *collect(moe_server *sv, moe_server_req *r, int *status) {
    char *all = NULL;
    size_t n_all = 0;
    for (int tries = 0; tries < 6000; tries++) { /* 60 s at most */
        char *t = NULL;
        size_t len = 0;
        const int done = moe_server_read(sv, r, 100, &t, &len, status);
        if (t) {
            char *p = realloc(all, n_all + len + 1);
            if (p) {
                memcpy(p + n_all, t, len);
                n_all += len;
                p[n_all] = 0;
                all = p;
            }
            free(t);
        }
        if (done) break;
        const struct timespec ten_ms = {0, 10000000L}; /* a whole body does not wait */
        nanosleep(&ten_ms, NULL);
    }
    moe_server_release(sv, r);
    return all;
}

/* The choices of a completion body (its id and time differ between runs). */
static const char *choices_of(const char *body) {
    const char *c = body ? strstr(body, "\"choices\"") : NULL;
    return c ? c : "";
}

/* An expert-choice model served with 2 sequences: its routing over a step
 * would mix two requests, so the scheduler runs one sequence per step and
 * each request's greedy text equals what it gets alone. */
static void ec_serve(const char *name, const char *path) {
    char tn[96];
    snprintf(tn, sizeof tn, "train_infer/%s_serve_one_seq_per_step", name);
    moe_server_options so = {0};
    so.parallel = 2;
    so.ctx_len = 32;
    so.n_threads = 2;
    moe_server *sv = NULL;
    moe_error err;
    if (moe_server_open(&sv, path, &so, &err) != MOE_OK) { tu_fail(tn, "open: %s", err.msg); return; }
    static const char *const body[2] = {
        "{\"prompt\": \"the cat sat\", \"max_tokens\": 6, \"temperature\": 0, \"ignore_eos\": true}",
        "{\"prompt\": \"a dog ran far away\", \"max_tokens\": 6, \"temperature\": 0, \"ignore_eos\": true}"};
    char *both[2] = {NULL, NULL}, *alone[2] = {NULL, NULL};
    int st[4] = {0, 0, 0, 0}, bad = 0;
    moe_server_req *r[2] = {NULL, NULL};
    for (int i = 0; i < 2; i++) {
        int stream = 0;
        char *ej = NULL;
        if (moe_server_submit(sv, MOE_SERVER_COMPLETION, body[i], strlen(body[i]), &r[i], &stream,
                              &ej) != 200) {
            tu_fail(tn, "submit: %s", ej ? ej : "?");
            bad = 1;
        }
        free(ej);
    }
    for (int i = 0; i < 2; i++) if (r[i]) both[i] = collect(sv, r[i], &st[i]);
    for (int i = 0; i < 2 && !bad; i++) {
        int stream = 0;
        char *ej = NULL;
        moe_server_req *q = NULL;
        if (moe_server_submit(sv, MOE_SERVER_COMPLETION, body[i], strlen(body[i]), &q, &stream, &ej) == 200)
            alone[i] = collect(sv, q, &st[2 + i]);
        free(ej);
    }
    if (!bad) {
        if (st[0] != 200 || st[1] != 200 || st[2] != 200 || st[3] != 200)
            tu_fail(tn, "statuses %d %d (together), %d %d (alone): %.200s", st[0], st[1], st[2], st[3],
                    both[0] ? both[0] : "");
        else if (!*choices_of(both[0]) || !*choices_of(both[1]) ||
                 strcmp(choices_of(both[0]), choices_of(alone[0])) ||
                 strcmp(choices_of(both[1]), choices_of(alone[1])))
            tu_fail(tn, "together %.200s / %.200s, alone %.200s / %.200s", choices_of(both[0]),
                    choices_of(both[1]), choices_of(alone[0]), choices_of(alone[1]));
        else
            tu_ok(tn);
    }
    for (int i = 0; i < 2; i++) { free(both[i]); free(alone[i]); }
    moe_server_close(sv);
}

static void one(const tcase *tc, const moe_tokenizer *tok) {
    const char *name = tc->name;
    moe_model_config c;
    moe_model_config_default(&c);
    c.vocab_size = moe_tokenizer_n_vocab(tok);
    c.d_model = 48;
    c.n_layers = 3;
    c.n_heads = 4;
    c.n_kv_heads = 2;
    c.ctx_len = 40;
    c.d_ff = 80;
    c.moe.n_experts = tc->E;
    c.moe.top_k = tc->k;
    c.moe.d_ff = 40;
    c.moe_every = tc->moe_every;
    c.n_dense_first = tc->dense_first;
    c.tie_embeddings = tc->tie;
    c.max_batch = 2;
    c.n_threads = 2;
    moe_error err;
    if (tc->router && moe_layer_config_router(&c.moe, tc->router, &err) != MOE_OK) {
        tu_fail(name, "router: %s", err.msg);
        return;
    }
    if (tc->router && !strcmp(tc->router, "expert-choice")) c.moe.ec_inference = tc->ec_inference;
    if (tc->shared_ungated) c.moe.shared_gate = 0;
    if (tc->top_p > 0.0f) c.moe.top_p = tc->top_p;
    if (tc->scale > 0.0f) c.moe.weight_scale = tc->scale;
    moe_model *m = NULL, *m2 = NULL;
    moe_adamw *o = NULL;
    moe_infer *inf = NULL;
    char path[128];
    snprintf(path, sizeof path, "/tmp/moe-test-train-infer-%d-%s.gguf", (int)getpid(), name);
    const int T = 40, V = c.vocab_size;
    int32_t x[80], y[80];
    float *lg = malloc(sizeof(float) * (size_t)T * V), *ref = malloc(sizeof(float) * (size_t)T * V);
    if (!lg || !ref) { free(lg); free(ref); return; }
    moe_adamw_config ac;
    moe_adamw_config_default(&ac);
    if (moe_model_create(&m, &c, &err) || moe_adamw_create(&o, m, &ac, &err)) {
        tu_fail(name, "create: %s", err.msg);
        goto done;
    }
    moe_model_init_params(m, 5);
    unsigned s = 99;
    for (int step = 0; step < 3; step++) {
        for (int i = 0; i < 80; i++) { s = s * 1664525u + 1013904223u; x[i] = (int32_t)((s >> 9) % (unsigned)V); }
        for (int i = 0; i < 80; i++) y[i] = x[(i + 1) % 80];
        float loss;
        moe_model_zero_grads(m);
        if (moe_model_forward(m, x, y, 2, T, 1, &loss, &lerr) || moe_model_backward(m, &lerr) || moe_adamw_step(o, 3e-3f, NULL, &err)) {
            tu_fail(name, "training step: %s %s", lerr.msg, err.msg);
            goto done;
        }
        for (int l = 0; l < c.n_layers; l++)
            if (moe_model_moe_layer(m, l)) moe_layer_update_balance(moe_model_moe_layer(m, l));
    }
    /* evaluation as the trainer's validation: dropless (expert choice has its own capacity) */
    for (int l = 0; l < c.n_layers; l++) {
        moe_layer *L = moe_model_moe_layer(m, l);
        if (!L) continue;
        if (c.moe.select != MOE_SELECT_EXPERT_CHOICE) moe_layer_set_capacity_factor(L, MOE_DROPLESS, &lerr);
        if (tc->set_bias) {
            float *b = moe_layer_balance_bias(L);
            for (int e = 0; e < c.moe.n_experts; e++) b[e] = 0.15f * (float)((e * 7 + l * 3) % 5 - 2);
        }
    }
    if (moe_model_save(m, tok, path, &err) != MOE_OK) { tu_fail(name, "save: %s", err.msg); goto done; }
    moe_infer_options io;
    moe_infer_options_default(&io);
    io.n_threads = 2;
    if (moe_infer_open(&inf, path, &io, &err) != MOE_OK) { tu_fail(name, "moe_infer_open: %s", err.msg); goto done; }
    const moe_infer_info *info = moe_infer_get_info(inf);
    if (strcmp(info->arch, tc->arch)) {
        tu_fail(name, "general.architecture = '%s', expected '%s'", info->arch, tc->arch);
        goto done;
    }
    if (!strcmp(tc->arch, "llama") ? strncmp(info->runs_in, "moe, llama.cpp", 14) : strncmp(info->runs_in, "moe only", 8)) {
        tu_fail(name, "runs in: '%s' for arch %s", info->runs_in, tc->arch);
        goto done;
    }
    /* the training forward of one sequence */
    if (moe_model_forward(m, x, NULL, 1, T, 0, NULL, &lerr) != MOE_OK) { tu_fail(name, "%s", lerr.msg); goto done; }
    memcpy(ref, moe_model_logits(m), sizeof(float) * (size_t)T * V);
    const int causal = !(c.moe.select == MOE_SELECT_EXPERT_CHOICE && c.moe.ec_inference);
    double worst = 0, worst_inc = 0;
    if (compare(name, inf, x, T, V, ref, 1, lg, &worst)) goto done;
    if (causal && compare(name, inf, x, T, V, ref, 0, lg, &worst_inc)) goto done;
    /* the training side reads the file back */
    double worst_load = 0;
    if (moe_model_load(&m2, NULL, path, 1, 2, &err) != MOE_OK) { tu_fail(name, "moe_model_load: %s", err.msg); goto done; }
    for (int l = 0; l < c.n_layers; l++) {
        moe_layer *L = moe_model_moe_layer(m2, l);
        if (L && c.moe.select != MOE_SELECT_EXPERT_CHOICE) moe_layer_set_capacity_factor(L, MOE_DROPLESS, &lerr);
    }
    if (moe_model_forward(m2, x, NULL, 1, T, 0, NULL, &lerr) != MOE_OK) { tu_fail(name, "%s", lerr.msg); goto done; }
    const float *r2 = moe_model_logits(m2);
    for (size_t i = 0; i < (size_t)T * V; i++) worst_load = fmax(worst_load, fabs(r2[i] - ref[i]));
    if (!causal) {
        if (!info->one_seq_per_step) tu_fail(name, "moe_infer_info.one_seq_per_step = 0 for expert choice");
        ec_serve(name, path);
    }
    double w = fmax(worst, worst_inc);
    if (w > g_worst) { g_worst = w; g_worst_name = name; }
    if (worst <= 1e-5 && worst_inc <= 1e-5 && worst_load == 0.0)
        tu_okf("train_infer/%s (arch %s; runs in: %s; max rel err %.2e batch, %s%.2e token by token)", name,
               info->arch, info->runs_in, worst, causal ? "" : "not causal: n/a ", worst_inc);
    else
        tu_fail(name, "inference logits differ from training logits: %.3e (batch), %.3e (token by token), limit 1e-5; "
                "moe_model_load: %.3e (expected 0)", worst, worst_inc, worst_load);
done:
    moe_infer_close(inf);
    moe_adamw_free(o);
    moe_model_free(m);
    moe_model_free(m2);
    free(lg);
    free(ref);
    unlink(path);
}

/* ------------------------------------------------------ refused files */

/* Replaces the first occurrence of from (n bytes) with to in the file. */
static int patch_file(const char *src, const char *dst, const void *from, const void *to, size_t n) {
    FILE *f = fopen(src, "rb");
    if (!f) return 1;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)sz);
    int ok = b && fread(b, 1, (size_t)sz, f) == (size_t)sz;
    fclose(f);
    int found = 0;
    for (long i = 0; ok && i + (long)n <= sz && !found; i++)
        if (!memcmp(b + i, from, n)) { memcpy(b + i, to, n); found = 1; }
    if (found && (f = fopen(dst, "wb"))) {
        found = fwrite(b, 1, (size_t)sz, f) == (size_t)sz;
        fclose(f);
    } else {
        found = 0;
    }
    free(b);
    return !found;
}

/* Both readers refuse path with a message holding want1 and want2. */
static void expect_refused(const char *name, const char *path, const char *want1, const char *want2) {
    moe_error err;
    moe_infer *inf = NULL;
    moe_infer_options io;
    moe_infer_options_default(&io);
    io.n_threads = 1;
    if (moe_infer_open(&inf, path, &io, &err) == MOE_OK) {
        moe_infer_close(inf);
        tu_fail(name, "moe_infer_open accepted the file");
        return;
    }
    if (!strstr(err.msg, want1) || !strstr(err.msg, want2)) {
        tu_fail(name, "moe_infer_open: '%s' does not name '%s' and '%s'", err.msg, want1, want2);
        return;
    }
    char msg1[sizeof err.msg];
    snprintf(msg1, sizeof msg1, "%s", err.msg);
    moe_model *m = NULL;
    if (moe_model_load(&m, NULL, path, 1, 1, &err) == MOE_OK) {
        moe_model_free(m);
        tu_fail(name, "moe_model_load accepted the file");
        return;
    }
    if (!strstr(err.msg, want1) || !strstr(err.msg, want2)) {
        tu_fail(name, "moe_model_load: '%s' does not name '%s' and '%s'", err.msg, want1, want2);
        return;
    }
    tu_okf("train_infer/%s (engine: %s)", name, msg1);
}

static void refused(const moe_tokenizer *tok) {
    moe_model_config c;
    moe_model_config_default(&c);
    c.vocab_size = moe_tokenizer_n_vocab(tok);
    c.d_model = 16; c.n_layers = 1; c.n_heads = 2; c.n_kv_heads = 2; c.ctx_len = 8; c.d_ff = 16;
    c.moe.n_experts = 4; c.moe.top_k = 2; c.moe.d_ff = 8; c.moe_every = 1;
    c.max_batch = 1; c.n_threads = 1;
    moe_error err;
    moe_model *m = NULL;
    char path[128], bad[128];
    snprintf(path, sizeof path, "/tmp/moe-test-refused-%d.gguf", (int)getpid());
    snprintf(bad, sizeof bad, "/tmp/moe-test-refused-%d-bad.gguf", (int)getpid());
    if (moe_layer_config_router(&c.moe, "top-p", &err) || moe_model_create(&m, &c, &err)) {
        tu_fail("train_infer/refused", "%s", err.msg);
        return;
    }
    moe_model_init_params(m, 1);
    if (moe_model_save(m, tok, path, &err) != MOE_OK) { tu_fail("train_infer/refused", "save: %s", err.msg); goto done; }
    /* moe.version: u64 length 11, the key, u32 type 4 (u32), u32 value 2 -> 3 */
    unsigned char from[27], to[27];
    const uint64_t kl = 11;
    const uint32_t ty = 4, v2 = 2, v3 = 3;
    memcpy(from, &kl, 8); memcpy(from + 8, "moe.version", 11); memcpy(from + 19, &ty, 4); memcpy(from + 23, &v2, 4);
    memcpy(to, from, 27); memcpy(to + 23, &v3, 4);
    if (patch_file(path, bad, from, to, sizeof from)) tu_fail("train_infer/newer_version", "cannot patch %s", path);
    else expect_refused("newer_version", bad, "moe.version = 3", "<= 2");
    /* an unknown key that would change the routing */
    if (patch_file(path, bad, "moe.expert_top_p", "moe.expert_top_q", 16))
        tu_fail("train_infer/unknown_key", "cannot patch %s", path);
    else expect_refused("unknown_key", bad, "unknown key 'moe.expert_top_q'", "moe.version 2");
    if (patch_file(path, bad, "moe.router.top_p", "moe.router.top_q", 16))
        tu_fail("train_infer/unknown_router_key", "cannot patch %s", path);
    else expect_refused("unknown_router_key", bad, "unknown key 'moe.router.top_q'", "refused");
done:
    moe_model_free(m);
    unlink(path);
    unlink(bad);
}

int main(void) {
    char *text;
    size_t n;
    moe_error err;
    moe_tokenizer *tok;
    if (moe_corpus_text(&text, &n, -1, 200000, 3, &err) != MOE_OK ||
        moe_tokenizer_train(&tok, text, n, 400, &err) != MOE_OK) {
        tu_fail("train_infer/setup", "%s", err.msg);
        return 1;
    }
    free(text);
    static const tcase cases[] = {
        /* name                  router           every dense1 tie E  k  ec sh_ung bias arch [top_p scale] */
        {"mixtral_layout",       NULL,            1, 0, 0, 4, 2, 0, 0, 0, "llama", 0.0f, 0.0f},
        {"softmax_tied",         "softmax",       1, 0, 1, 4, 2, 0, 0, 0, "llama", 0.0f, 0.0f},
        {"switch",               "switch",        1, 0, 0, 4, 1, 0, 0, 0, "moe", 0.0f, 0.0f},
        {"noisy",                "noisy",         1, 0, 0, 4, 2, 0, 0, 0, "llama", 0.0f, 0.0f},
        {"gshard",               "gshard",        1, 0, 0, 4, 2, 0, 0, 0, "llama", 0.0f, 0.0f},
        {"expert_choice_causal", "expert-choice", 1, 0, 0, 4, 2, 0, 0, 0, "llama", 0.0f, 0.0f},
        {"expert_choice_batch",  "expert-choice", 1, 0, 0, 4, 2, 1, 0, 0, "moe", 0.0f, 0.0f},
        {"sigmoid_bias",         "sigmoid",       1, 0, 0, 4, 2, 0, 0, 1, "moe", 0.0f, 2.5f},
        {"group",                "group",         1, 0, 0, 8, 2, 0, 0, 1, "moe", 0.0f, 0.0f},
        {"shared_gated",         "shared",        1, 0, 0, 4, 2, 0, 0, 0, "moe", 0.0f, 0.0f},
        {"shared_ungated",       "shared",        1, 0, 1, 4, 2, 0, 1, 0, "moe", 0.0f, 0.0f},
        {"top_p",                "top-p",         1, 0, 0, 4, 3, 0, 0, 0, "moe", 0.27f, 0.0f},
        {"hash",                 "hash",          1, 0, 0, 4, 2, 0, 0, 0, "moe", 0.0f, 0.0f},
        {"relu",                 "relu",          1, 0, 0, 4, 2, 0, 0, 0, "moe", 0.0f, 0.0f},
        {"mixed_every_other_tied", NULL,          2, 1, 1, 4, 2, 0, 0, 0, "moe", 0.0f, 0.0f},
        {"leading_dense",        "sigmoid",       1, 1, 0, 4, 2, 0, 0, 1, "moe", 0.0f, 0.0f},
        {"dense",                NULL,            0, 0, 0, 4, 2, 0, 0, 0, "llama", 0.0f, 0.0f},
        {"dense_tied",           NULL,            0, 0, 1, 4, 2, 0, 0, 0, "llama", 0.0f, 0.0f},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) one(&cases[i], tok);
    printf("train_infer: worst relative logit difference %.2e (%s)\n", g_worst, g_worst_name);
    refused(tok);
    moe_tokenizer_free(tok);
    return tu_exit_code();
}
