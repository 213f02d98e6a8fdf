/* test_api.c: the rules of the public API that moe.h states: every fallible
 * call reports through its moe_error (also when err is NULL), create
 * functions check their out pointer, outputs that overlap inputs are refused
 * (or, for moe_layer_forward, computed in place exactly), and configuration
 * values at the extremes (0, -1, INT_MAX, 1 << 30, NaN, Inf, 1e30 ...) in
 * every field of the layer, model, train and AdamW configurations are either
 * refused with a message naming the field or built sanely (never a crash, an
 * overflow or an absurd allocation; cheap enough for `make sanitize`). Also:
 * dropped gradients of a hash-routed layer. Not here: the arithmetic of the
 * layer or model (test_layer.c, test_model.c). */
#include "testutil.h"
#include "moe.h"
#include "moe_infer.h"

#include <limits.h>
#include <stddef.h>
#include <string.h>

/* ------------------------------------------------------------ aliasing */

static void small_layer_cfg(moe_layer_config *c) {
    moe_layer_config_default(c, 8, 12, 4, 2);
    c->max_tokens = 6;
    c->noisy_gate = 1;             /* noise gradients */
    c->shared_d_ff = 6;            /* shared expert ... */
    c->shared_gate = 1;            /* ... with its gate */
    c->aux_loss_coef = 0.01f;
    c->z_loss_coef = 0.001f;
    c->load_loss_coef = 0.01f;
    c->seed = 5;
}

/* Forward (+ backward) once out of place and once in place (y = x) on two
 * equal layers: every output and gradient must agree bit for bit. */
static void test_forward_in_place(void) {
    const char *name = "api/layer_forward_in_place";
    moe_layer_config c;
    small_layer_cfg(&c);
    moe_layer *A = NULL, *B = NULL;
    moe_error err;
    if (moe_layer_create(&A, &c, &err) != MOE_OK || moe_layer_create(&B, &c, &err) != MOE_OK) {
        tu_fail(name, "create: %s", err.msg);
        moe_layer_free(A);
        return;
    }
    const int T = 6, d = 8;
    float x[6 * 8], y[6 * 8], buf[6 * 8], dy[6 * 8], dxa[6 * 8], dxb[6 * 8];
    tu_rng r = { 11 };
    tu_fill(&r, x, (size_t)T * d, 1.0f);
    tu_fill(&r, dy, (size_t)T * d, 1.0f);
    memcpy(buf, x, sizeof x);
    moe_layer_init_params(A, 3);
    moe_layer_init_params(B, 3);
    /* non-zero noise weights so that their gradient depends on x */
    moe_layer_weights wa = moe_layer_params(A), wb = moe_layer_params(B);
    for (int i = 0; i < 4 * d; i++) wa.noise[i] = wb.noise[i] = 0.1f * (float)((i % 5) - 2);
    moe_status s1 = moe_layer_forward(A, y, x, T, 1, &err);
    moe_status s2 = s1 == MOE_OK ? moe_layer_forward(B, buf, buf, T, 1, &err) : s1;
    if (s1 == MOE_OK && s2 == MOE_OK) s1 = moe_layer_backward(A, dxa, dy, &err);
    if (s1 == MOE_OK && s2 == MOE_OK) s2 = moe_layer_backward(B, dxb, dy, &err);
    if (s1 != MOE_OK || s2 != MOE_OK) { tu_fail(name, "%s", err.msg); goto done; }
    if (memcmp(y, buf, sizeof y)) { tu_fail(name, "y differs in place"); goto done; }
    if (memcmp(dxa, dxb, sizeof dxa)) { tu_fail(name, "dx differs after an in-place forward"); goto done; }
    moe_layer_weights ga = moe_layer_grads(A), gb = moe_layer_grads(B);
    const struct { const char *n; const float *a, *b; size_t k; } g[] = {
        {"router", ga.router, gb.router, 4 * 8}, {"noise", ga.noise, gb.noise, 4 * 8},
        {"up", ga.up, gb.up, 4 * 12 * 8}, {"shared_up", ga.shared_up, gb.shared_up, 6 * 8},
        {"shared_router", ga.shared_router, gb.shared_router, 8},
    };
    for (size_t i = 0; i < sizeof g / sizeof g[0]; i++)
        if (memcmp(g[i].a, g[i].b, g[i].k * sizeof(float))) {
            tu_fail(name, "gradient of %s differs after an in-place forward", g[i].n);
            goto done;
        }
    tu_ok(name);
done:
    moe_layer_free(A);
    moe_layer_free(B);
}

/* dx overlapping dy (equal, or shifted by one float) is refused; adjacent
 * buffers in one allocation are not. */
static void test_backward_overlap(void) {
    moe_layer_config c;
    small_layer_cfg(&c);
    moe_layer *L = NULL;
    moe_error err;
    if (moe_layer_create(&L, &c, &err) != MOE_OK) { tu_fail("api/layer_backward_overlap", "%s", err.msg); return; }
    moe_layer_init_params(L, 1);
    const int T = 4, d = 8, n = T * d;
    float x[4 * 8], y[4 * 8], big[3 * 4 * 8];
    tu_rng r = { 2 };
    tu_fill(&r, x, (size_t)n, 1.0f);
    tu_fill(&r, big, sizeof big / sizeof big[0], 1.0f);
    const struct { const char *name; float *dx; const float *dy; moe_status want; } cases[] = {
        {"api/layer_backward_overlap/equal", big, big, MOE_ERR_ARG},
        {"api/layer_backward_overlap/shifted", big + 1, big, MOE_ERR_ARG},
        {"api/layer_backward_overlap/shifted_back", big, big + n - 1, MOE_ERR_ARG},
        {"api/layer_backward_overlap/adjacent", big + n, big, MOE_OK},
        {"api/layer_backward_overlap/adjacent_before", big, big + n, MOE_OK},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (moe_layer_forward(L, y, x, T, 1, &err) != MOE_OK) { tu_fail(cases[i].name, "forward: %s", err.msg); continue; }
        moe_status st = moe_layer_backward(L, cases[i].dx, cases[i].dy, &err);
        if (st != cases[i].want)
            tu_fail(cases[i].name, "status %s, expected %s (%s)", moe_status_str(st), moe_status_str(cases[i].want), err.msg);
        else if (st != MOE_OK && !strstr(err.msg, "overlap"))
            tu_fail(cases[i].name, "message \"%s\" does not say overlap", err.msg);
        else tu_ok(cases[i].name);
    }
    moe_layer_free(L);
}

static void test_tokenizer_overlap(void) {
    const char *name = "api/tokenizer_overlap";
    static const char text[] = "the cat sat on the mat; the cat ate the rat. ";
    moe_tokenizer *tok = NULL;
    moe_error err;
    if (moe_tokenizer_train(&tok, text, sizeof text - 1, 270, &err) != MOE_OK) { tu_fail(name, "train: %s", err.msg); return; }
    union { char c[256]; int32_t i[64]; } u;
    memcpy(u.c, text, sizeof text);
    size_t n = 0;
    moe_status st = moe_tokenizer_encode(tok, u.c, sizeof text - 1, u.i, 64, &n, &err);
    int32_t ids[64];
    moe_status st2 = moe_tokenizer_encode(tok, text, sizeof text - 1, ids, 64, &n, &err);
    moe_status st3 = st2 == MOE_OK ? moe_tokenizer_decode(tok, ids, n, (char *)ids + 4, 200, &n, NULL) : st2;
    if (st != MOE_ERR_ARG || st2 != MOE_OK || st3 != MOE_ERR_ARG)
        tu_fail(name, "encode in place: %s, encode: %s, decode over ids: %s", moe_status_str(st),
                moe_status_str(st2), moe_status_str(st3));
    else tu_ok(name);
    moe_tokenizer_free(tok);
}

/* ------------------------------------------------- the error convention */

static void expect(const char *name, moe_status st, moe_status want, const moe_error *e, const char *needle) {
    if (st != want) tu_fail(name, "status %s, expected %s (%s)", moe_status_str(st), moe_status_str(want), e ? e->msg : "");
    else if (e && needle && !strstr(e->msg, needle)) tu_fail(name, "message \"%s\" does not name %s", e->msg, needle);
    else tu_ok(name);
}

static void test_null_out(void) {
    moe_error err;
    moe_layer_config lc;
    moe_layer_config_default(&lc, 8, 8, 4, 2);
    moe_model_config mc;
    moe_model_config_default(&mc);
    moe_adamw_config ac;
    moe_adamw_config_default(&ac);
    moe_train_config tc;
    moe_train_config_default(&tc);
    moe_sampler_config sc;
    moe_sampler_config_default(&sc);
    expect("api/null_out/layer", moe_layer_create(NULL, &lc, &err), MOE_ERR_ARG, &err, "out");
    expect("api/null_out/model", moe_model_create(NULL, &mc, &err), MOE_ERR_ARG, &err, "out");
    expect("api/null_out/adamw", moe_adamw_create(NULL, NULL, &ac, &err), MOE_ERR_ARG, &err, "out");
    expect("api/null_out/tokenizer", moe_tokenizer_train(NULL, "ab", 2, 260, &err), MOE_ERR_ARG, &err, "out");
    expect("api/null_out/model_load", moe_model_load(NULL, NULL, "x.gguf", 1, 1, &err), MOE_ERR_ARG, &err, "out");
    expect("api/null_out/trainer", moe_trainer_create(NULL, &tc, NULL, 0, "x", &err), MOE_ERR_ARG, &err, "out");
    expect("api/null_out/resume", moe_trainer_resume(NULL, "x", NULL, &err), MOE_ERR_ARG, &err, "out");
    expect("api/null_out/corpus", moe_corpus_text(NULL, NULL, 0, 10, 1, &err), MOE_ERR_ARG, &err, "text");
    expect("api/null_out/sampler", moe_sampler_create(NULL, &sc, 10, &err), MOE_ERR_ARG, &err, "out");
    expect("api/null_out/vocab", moe_vocab_load(NULL, "x.gguf", &err), MOE_ERR_ARG, &err, "out");
    expect("api/null_out/infer", moe_infer_open(NULL, "x.gguf", NULL, &err), MOE_ERR_ARG, &err, "out");
    /* a NULL err is allowed everywhere */
    expect("api/null_err/layer", moe_layer_create(NULL, &lc, NULL), MOE_ERR_ARG, NULL, NULL);
    expect("api/null_err/forward", moe_layer_forward(NULL, NULL, NULL, 1, 0, NULL), MOE_ERR_ARG, NULL, NULL);
    expect("api/null_err/model_backward", moe_model_backward(NULL, NULL), MOE_ERR_ARG, NULL, NULL);
    /* a message of an earlier failure does not survive a success */
    moe_layer *L = NULL;
    float x[8] = {0}, y[8];
    moe_status st = moe_layer_create(&L, &lc, &err);
    if (st == MOE_OK) st = moe_layer_forward(L, y, x, 0, 0, &err) == MOE_ERR_SHAPE ? MOE_OK : MOE_ERR_ARG;
    if (st == MOE_OK) st = moe_layer_forward(L, y, x, 1, 0, &err);
    if (st != MOE_OK || err.msg[0]) tu_fail("api/err_cleared_on_success", "status %s, message \"%s\"", moe_status_str(st), err.msg);
    else tu_ok("api/err_cleared_on_success");
    moe_layer_free(L);
}

/* --------------------------------------------- configuration extremes */

typedef enum { F_INT, F_FLOAT, F_I64, F_U64 } ftype;
typedef struct field { const char *name; size_t off; ftype t; } field;

#define FI(s, f) {#f, offsetof(s, f), F_INT}
#define FF(s, f) {#f, offsetof(s, f), F_FLOAT}
#define FL(s, f) {#f, offsetof(s, f), F_I64}
#define FU(s, f) {#f, offsetof(s, f), F_U64}

static const field k_layer_fields[] = {
    FI(moe_layer_config, d_model), FI(moe_layer_config, d_ff), FI(moe_layer_config, n_experts),
    FI(moe_layer_config, top_k), FI(moe_layer_config, expert), FI(moe_layer_config, gate),
    FI(moe_layer_config, select), FF(moe_layer_config, capacity_factor), FI(moe_layer_config, drop_policy),
    FI(moe_layer_config, renormalize), FF(moe_layer_config, weight_scale), FF(moe_layer_config, aux_loss_coef),
    FF(moe_layer_config, z_loss_coef), FI(moe_layer_config, max_tokens), FI(moe_layer_config, n_threads),
    FU(moe_layer_config, seed), FI(moe_layer_config, max_top_k), FF(moe_layer_config, jitter),
    FI(moe_layer_config, noisy_gate), FF(moe_layer_config, importance_loss_coef),
    FF(moe_layer_config, load_loss_coef), FI(moe_layer_config, gshard_random_second),
    FI(moe_layer_config, balance_top1_only), FF(moe_layer_config, top_p), FF(moe_layer_config, entropy_loss_coef),
    FF(moe_layer_config, ec_capacity), FI(moe_layer_config, ec_inference), FI(moe_layer_config, n_groups),
    FI(moe_layer_config, topk_groups), FF(moe_layer_config, bias_update_rate),
    FF(moe_layer_config, seq_aux_loss_coef), FI(moe_layer_config, seq_len), FI(moe_layer_config, shared_d_ff),
    FI(moe_layer_config, shared_gate), FF(moe_layer_config, relu_l1_coef),
    FF(moe_layer_config, relu_target_sparsity), FI(moe_layer_config, global_stats),
    FI(moe_layer_config, dead_window),
};
static const field k_model_fields[] = {
    FI(moe_model_config, vocab_size), FI(moe_model_config, d_model), FI(moe_model_config, n_layers),
    FI(moe_model_config, n_heads), FI(moe_model_config, n_kv_heads), FI(moe_model_config, head_dim),
    FI(moe_model_config, ctx_len), FI(moe_model_config, d_ff), FF(moe_model_config, rope_theta),
    FF(moe_model_config, norm_eps), FI(moe_model_config, tie_embeddings), FI(moe_model_config, moe_every),
    FI(moe_model_config, n_dense_first), FI(moe_model_config, max_batch), FI(moe_model_config, n_threads),
};
static const field k_train_fields[] = {
    FI(moe_train_config, batch), FI(moe_train_config, accum), FL(moe_train_config, steps),
    FF(moe_train_config, lr), FF(moe_train_config, min_lr), FL(moe_train_config, warmup),
    FL(moe_train_config, eval_every), FI(moe_train_config, eval_batches), FL(moe_train_config, save_every),
    FF(moe_train_config, val_fraction), FU(moe_train_config, seed), FL(moe_train_config, corpus_bytes),
    FF(moe_train_config, eval_capacity),
};
static const field k_adamw_fields[] = {
    FF(moe_adamw_config, beta1), FF(moe_adamw_config, beta2), FF(moe_adamw_config, eps),
    FF(moe_adamw_config, weight_decay), FF(moe_adamw_config, grad_clip),
};

static const int64_t k_ints[] = {0, -1, 1, 2, 3, INT_MAX, INT_MIN, 1 << 30, 1 << 20, 65537, 4097, 1025};
static const int64_t k_i64[] = {0, -1, 1, INT64_MAX, INT64_MIN, (int64_t)1 << 40};
static const float k_floats[] = {0.0f, -1.0f, 0.5f, 1.0f, 2.0f, NAN, INFINITY, -INFINITY, 1e30f, -1e30f, 1e-30f, 3e38f};
static const uint64_t k_u64[] = {0, UINT64_MAX};

/* Sets field f of the struct at base to value number i; 0 past the end. */
static int set_value(void *base, const field *f, int i, char *desc, size_t cap) {
    char *p = (char *)base + f->off;
    switch (f->t) {
    case F_INT:
        if (i >= (int)(sizeof k_ints / sizeof k_ints[0])) return 0;
        *(int *)p = (int)k_ints[i];
        snprintf(desc, cap, "%s = %d", f->name, (int)k_ints[i]);
        return 1;
    case F_I64:
        if (i >= (int)(sizeof k_i64 / sizeof k_i64[0])) return 0;
        *(int64_t *)p = k_i64[i];
        snprintf(desc, cap, "%s = %lld", f->name, (long long)k_i64[i]);
        return 1;
    case F_FLOAT:
        if (i >= (int)(sizeof k_floats / sizeof k_floats[0])) return 0;
        *(float *)p = k_floats[i];
        snprintf(desc, cap, "%s = %g", f->name, (double)k_floats[i]);
        return 1;
    case F_U64:
        if (i >= (int)(sizeof k_u64 / sizeof k_u64[0])) return 0;
        *(uint64_t *)p = k_u64[i];
        snprintf(desc, cap, "%s = %llu", f->name, (unsigned long long)k_u64[i]);
        return 1;
    }
    return 0;
}

/* A refusal must name the field (or, for a combination, the other field it
 * clashes with: then the message names some field of the table). */
static int names_a_field(const char *msg, const field *f, const field *tab, size_t n) {
    if (strstr(msg, f->name)) return 1;
    for (size_t i = 0; i < n; i++)
        if (strstr(msg, tab[i].name)) return 1;
    return 0;
}

/* A rough upper bound of the bytes a layer of c allocates. */
static double layer_bytes(const moe_layer_config *c) {
    double E = c->n_experts, d = c->d_model, F = c->d_ff, Fs = c->shared_d_ff, T = c->max_tokens;
    double S = c->max_top_k > c->top_k ? c->max_top_k : c->top_k;
    if (c->select == MOE_SELECT_EXPERT_CHOICE || c->select == MOE_SELECT_ALL) S = E;
    double params = E * (2 * d + 3 * F * d) + 3 * Fs * d + d;
    return 4.0 * (2 * params + T * S * (6 * d + 8 * F + 8) + T * E * 16 + T * (6 * d + 8 * Fs));
}

/* Builds the layer and runs a forward and backward pass on T tokens. */
static moe_status run_layer(const moe_layer_config *c, moe_error *err) {
    moe_layer *L = NULL;
    moe_status st = moe_layer_create(&L, c, err);
    if (st != MOE_OK) return st;
    const int T = c->seq_aux_loss_coef > 0 && c->seq_len <= c->max_tokens ? c->seq_len
                  : c->max_tokens < 4 ? c->max_tokens : 4;
    const size_t n = (size_t)T * c->d_model;
    float *x = calloc(n, sizeof(float)), *y = calloc(n, sizeof(float)), *dx = calloc(n, sizeof(float));
    int32_t ids[4] = {1, 2, 3, 4};
    if (!x || !y || !dx) { st = MOE_ERR_NOMEM; goto done; }
    tu_rng r = { 9 };
    tu_fill(&r, x, n, 1.0f);
    moe_layer_init_params(L, 1);
    if (c->select == MOE_SELECT_HASH) st = moe_layer_set_token_ids(L, ids, T, err);
    if (st == MOE_OK) st = moe_layer_forward(L, y, x, T, 1, err);
    if (st == MOE_OK) st = moe_layer_backward(L, dx, x, err);
    if (st == MOE_OK) moe_layer_update_balance(L);
done:
    free(x); free(y); free(dx);
    moe_layer_free(L);
    return st;
}

static void tiny_layer(moe_layer_config *c) {
    moe_layer_config_default(c, 8, 8, 4, 2);
    c->max_tokens = 8;
    c->n_threads = 1;
}

static void tiny_model(moe_model_config *c) {
    moe_model_config_default(c);
    c->vocab_size = 32; c->d_model = 8; c->n_layers = 2; c->n_heads = 2; c->n_kv_heads = 2;
    c->ctx_len = 4; c->d_ff = 16; c->max_batch = 2; c->n_threads = 1;
    moe_layer_config_default(&c->moe, 8, 8, 4, 2);
}

static const double k_build_limit = 64.0 * 1024 * 1024; /* bytes: build only below this */
static const double k_sane_limit = 4.0 * 1024 * 1024 * 1024; /* accepted => at most this much */

static void test_layer_extremes(void) {
    const char *name = "api/config_extremes/layer";
    int refused = 0, built = 0, bad = 0;
    const size_t nf = sizeof k_layer_fields / sizeof k_layer_fields[0];
    for (size_t f = 0; f < nf; f++) {
        char desc[128];
        for (int i = 0;; i++) {
            moe_layer_config c;
            tiny_layer(&c);
            if (!set_value(&c, &k_layer_fields[f], i, desc, sizeof desc)) break;
            moe_error err;
            moe_status st = moe_layer_config_check(&c, &err);
            if (st != MOE_OK) {
                refused++;
                if (!names_a_field(err.msg, &k_layer_fields[f], k_layer_fields, nf)) {
                    tu_fail(name, "%s: message \"%s\" names no field", desc, err.msg);
                    bad++;
                }
                continue;
            }
            double bytes = layer_bytes(&c);
            if (bytes > k_sane_limit) { tu_fail(name, "%s accepted, needing %.3g bytes", desc, bytes); bad++; continue; }
            if (bytes > k_build_limit) continue;
            st = run_layer(&c, &err);
            if (st != MOE_OK) { tu_fail(name, "%s: accepted by the check, then %s", desc, err.msg); bad++; }
            else built++;
        }
    }
    if (!bad) tu_okf("%s (%d refused, %d built and run)", name, refused, built);
}

static void test_model_extremes(void) {
    const char *name = "api/config_extremes/model";
    int refused = 0, built = 0, bad = 0;
    const size_t nm = sizeof k_model_fields / sizeof k_model_fields[0];
    const size_t nl = sizeof k_layer_fields / sizeof k_layer_fields[0];
    for (size_t f = 0; f < nm + nl; f++) {
        const field *fd = f < nm ? &k_model_fields[f] : &k_layer_fields[f - nm];
        char desc[128];
        for (int i = 0;; i++) {
            moe_model_config c;
            tiny_model(&c);
            if (!set_value(f < nm ? (void *)&c : (void *)&c.moe, fd, i, desc, sizeof desc)) break;
            moe_error err;
            moe_status st = moe_model_config_check(&c, &err);
            if (st != MOE_OK) {
                refused++;
                if (!names_a_field(err.msg, fd, f < nm ? k_model_fields : k_layer_fields, f < nm ? nm : nl) &&
                    !names_a_field(err.msg, fd, k_model_fields, nm)) {
                    tu_fail(name, "%s: message \"%s\" names no field", desc, err.msg);
                    bad++;
                }
                continue;
            }
            double bytes = (double)moe_model_memory_bytes(&c);
            if (bytes > k_build_limit) continue; /* moe_model_check_memory's business */
            moe_model *m = NULL;
            st = moe_model_create(&m, &c, &err);
            if (st == MOE_OK) {
                int32_t tok[8], tgt[8];
                for (int t = 0; t < 8; t++) { tok[t] = (t + 1) % c.vocab_size; tgt[t] = (t + 2) % c.vocab_size; }
                int T = c.ctx_len < 4 ? c.ctx_len : 4;
                moe_model_init_params(m, 1);
                float loss;
                st = moe_model_forward(m, tok, tgt, 1, T, 1, &loss, &err);
                if (st == MOE_OK) st = moe_model_backward(m, &err);
                if (st == MOE_OK) {
                    moe_adamw_config ac;
                    moe_adamw_config_default(&ac);
                    moe_adamw *o = NULL;
                    st = moe_adamw_create(&o, m, &ac, &err);
                    if (st == MOE_OK) st = moe_adamw_step(o, 1e-3f, NULL, &err);
                    moe_adamw_free(o);
                }
            }
            moe_model_free(m);
            /* hash routing needs ids the model passes; a failure must be an error, never a crash */
            if (st != MOE_OK && st != MOE_ERR_NOMEM) { tu_fail(name, "%s: accepted, then %s", desc, err.msg); bad++; }
            else built++;
        }
    }
    if (!bad) tu_okf("%s (%d refused, %d built, run and stepped)", name, refused, built);
}

static void test_train_extremes(void) {
    const char *name = "api/config_extremes/train";
    int refused = 0, accepted = 0, bad = 0;
    const size_t nt = sizeof k_train_fields / sizeof k_train_fields[0];
    const size_t na = sizeof k_adamw_fields / sizeof k_adamw_fields[0];
    for (size_t f = 0; f < nt + na; f++) {
        const field *fd = f < nt ? &k_train_fields[f] : &k_adamw_fields[f - nt];
        char desc[128];
        for (int i = 0;; i++) {
            moe_train_config c;
            moe_train_config_default(&c);
            tiny_model(&c.model);
            c.batch = 2;
            if (!set_value(f < nt ? (void *)&c : (void *)&c.adamw, fd, i, desc, sizeof desc)) break;
            moe_error err;
            moe_status st = moe_train_config_check(&c, &err);
            if (st == MOE_OK) { accepted++; continue; }
            refused++;
            int named = f < nt ? names_a_field(err.msg, fd, k_train_fields, nt)
                               : (strstr(err.msg, fd->name) || (strstr(fd->name, "beta") && strstr(err.msg, "betas")));
            if (!named) { tu_fail(name, "%s: message \"%s\" names no field", desc, err.msg); bad++; }
            /* the trainer refuses it the same way, before touching the disk */
            moe_trainer *t = NULL;
            moe_error err2;
            moe_status st2 = moe_trainer_create(&t, &c, NULL, 0, "/nonexistent-dir/run", &err2);
            if (st2 != st || strcmp(err.msg, err2.msg) || t) {
                tu_fail(name, "%s: moe_trainer_create says %s \"%s\", the check %s \"%s\"", desc,
                        moe_status_str(st2), err2.msg, moe_status_str(st), err.msg);
                bad++;
                moe_trainer_free(t);
            }
            if (f >= nt) { /* and moe_adamw_create refuses the optimizer's values */
                moe_status st3 = moe_adamw_config_check(&c.adamw, &err2);
                if (st3 != MOE_ERR_ARG) { tu_fail(name, "%s: moe_adamw_config_check accepted it", desc); bad++; }
            }
        }
    }
    if (!bad) tu_okf("%s (%d refused, %d accepted)", name, refused, accepted);
}

/* --------------------------------------------- dropped gradients, hash */

/* Hash routing has no router gradient: after drop_grads the backward must
 * still write it (zeros), not leave whatever was in memory. */
static void test_hash_drop_grads(void) {
    const char *name = "api/hash_drop_grads_router";
    moe_layer_config c;
    moe_layer_config_default(&c, 8, 8, 4, 2);
    moe_error err;
    moe_status st = moe_layer_config_router(&c, "hash", &err);
    c.max_tokens = 4;
    moe_layer *L = NULL;
    if (st == MOE_OK) st = moe_layer_create(&L, &c, &err);
    if (st != MOE_OK) { tu_fail(name, "%s", err.msg); return; }
    moe_layer_init_params(L, 2);
    float x[4 * 8], y[4 * 8], dx[4 * 8];
    int32_t ids[4] = {7, 8, 9, 10};
    tu_rng r = { 4 };
    tu_fill(&r, x, 32, 1.0f);
    moe_layer_weights g = moe_layer_grads(L);
    for (int i = 0; i < 4 * 8; i++) g.router[i] = NAN;
    moe_layer_drop_grads(L);
    st = moe_layer_set_token_ids(L, ids, 4, &err);
    if (st == MOE_OK) st = moe_layer_forward(L, y, x, 4, 1, &err);
    if (st == MOE_OK) st = moe_layer_backward(L, dx, x, &err);
    if (st != MOE_OK) { tu_fail(name, "%s", err.msg); moe_layer_free(L); return; }
    int worst = -1;
    for (int i = 0; i < 4 * 8; i++) if (g.router[i] != 0.0f) { worst = i; break; }
    if (worst >= 0) tu_fail(name, "router gradient [%d] = %g after drop + backward, expected 0", worst, (double)g.router[worst]);
    else tu_ok(name);
    moe_layer_free(L);
}

int main(void) {
    test_forward_in_place();
    test_backward_overlap();
    test_tokenizer_overlap();
    test_null_out();
    test_layer_extremes();
    test_model_extremes();
    test_train_extremes();
    test_hash_drop_grads();
    return tu_exit_code();
}
