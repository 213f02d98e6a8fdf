/* model_config.c: the model configuration: defaults, validation, parameter
 * and FLOP counts, and the memory a model of a configuration needs.
 * Not for: building the model (model.c). */
#include "model/model.h"
#include "model/active.h"
#include "core/error.h"

#include <math.h>
#include <stdint.h>

void moe_model_config_default(moe_model_config *c) {
    moe_layer_config_default(&c->moe, 128, 192, 8, 2);
    c->moe.renormalize = 1;
    c->vocab_size = 512;
    c->d_model = 128;
    c->n_layers = 4;
    c->n_heads = 4;
    c->n_kv_heads = 4;
    c->head_dim = 0;
    c->ctx_len = 128;
    c->d_ff = 384;
    c->rope_theta = 10000.0f;
    c->norm_eps = 1e-5f;
    c->tie_embeddings = 0;
    c->moe_every = 1;
    c->n_dense_first = 0;
    c->max_batch = 8;
    c->n_threads = 0;
}

int moe_model_layer_is_moe(const moe_model_config *c, int l) {
    return c->moe_every > 0 && l >= c->n_dense_first && (l - c->n_dense_first) % c->moe_every == 0;
}

static int any_moe(const moe_model_config *c) {
    for (int l = 0; l < c->n_layers; l++)
        if (moe_model_layer_is_moe(c, l)) return 1;
    return 0;
}

#define POS(field, lo, hi)                                                              \
    if (c->field < (lo) || c->field > (hi))                                             \
        return moe_err(err, MOE_ERR_ARG, "model config: " #field " = %d, expected %d..%d", \
                       c->field, (int)(lo), (int)(hi));

moe_status moe_model_config_check(const moe_model_config *c, moe_error *err) {
    if (!c) return moe_err(err, MOE_ERR_ARG, "model config: NULL");
    POS(vocab_size, 2, 1 << 24);
    POS(d_model, 1, MOE_MAX_D_MODEL);
    POS(n_layers, 1, 1024);
    POS(n_heads, 1, 1024);
    POS(n_kv_heads, 1, 1024);
    POS(head_dim, 0, 4096);
    POS(ctx_len, 1, 1 << 20);
    POS(max_batch, 1, 1 << 20);
    POS(moe_every, 0, 1024);
    POS(n_dense_first, 0, 1024);
    if (c->n_heads % c->n_kv_heads)
        return moe_err(err, MOE_ERR_ARG, "model config: n_heads = %d is not a multiple of n_kv_heads = %d",
                       c->n_heads, c->n_kv_heads);
    int hd = c->head_dim ? c->head_dim : c->d_model / c->n_heads;
    if (!c->head_dim && c->d_model % c->n_heads)
        return moe_err(err, MOE_ERR_ARG, "model config: d_model = %d is not a multiple of n_heads = %d (or set head_dim)",
                       c->d_model, c->n_heads);
    if (hd % 2)
        return moe_err(err, MOE_ERR_ARG, "model config: head_dim = %d must be even for RoPE", hd);
    if (!(c->rope_theta > 0.0f) || !isfinite(c->rope_theta))
        return moe_err(err, MOE_ERR_ARG, "model config: rope_theta = %g, expected > 0", (double)c->rope_theta);
    if (!(c->norm_eps > 0.0f) || !isfinite(c->norm_eps))
        return moe_err(err, MOE_ERR_ARG, "model config: norm_eps = %g, expected > 0", (double)c->norm_eps);
    int dense = 0;
    for (int l = 0; l < c->n_layers; l++) dense |= !moe_model_layer_is_moe(c, l);
    if (c->d_ff < dense || c->d_ff > MOE_MAX_D_FF)
        return moe_err(err, MOE_ERR_ARG, "model config: d_ff = %d, expected %d..%d%s", c->d_ff, dense, MOE_MAX_D_FF,
                       dense ? " for the dense layers" : "");
    if (c->n_threads > MOE_MAX_THREADS)
        return moe_err(err, MOE_ERR_ARG, "model config: n_threads = %d, expected at most %d (<= 0: the OpenMP default)",
                       c->n_threads, MOE_MAX_THREADS);
    if ((int64_t)c->max_batch * c->ctx_len > INT32_MAX / 4)
        return moe_err(err, MOE_ERR_ARG, "model config: max_batch x ctx_len = %lld tokens is too many",
                       (long long)c->max_batch * c->ctx_len);
    if (any_moe(c)) {
        moe_layer_config lc = c->moe;
        lc.d_model = c->d_model;
        lc.max_tokens = c->max_batch * c->ctx_len;
        lc.n_threads = c->n_threads;
        moe_status st = moe_layer_config_check(&lc, err);
        if (st != MOE_OK) return st;
    }
    return MOE_OK;
}

/* Parameters of the routed experts of one MoE layer, of the rest of that
 * layer (router, noise, shared expert), and the active share of experts. */
static void moe_layer_sizes(const moe_model_config *c, int64_t *experts, int64_t *other,
                            double *active_frac) {
    const moe_layer_config *m = &c->moe;
    int64_t d = c->d_model, E = m->n_experts, F = m->d_ff;
    int mats = m->expert == MOE_EXPERT_SWIGLU ? 3 : 2;
    *experts = E * mats * F * d;
    *other = m->select == MOE_SELECT_HASH ? 0 : E * d; /* router (hash routing has none) */
    if (m->noisy_gate) *other += E * d;
    if (m->shared_d_ff > 0) *other += 3 * (int64_t)m->shared_d_ff * d + (m->shared_gate ? d : 0);
    double k = m->top_k;
    if (m->select == MOE_SELECT_ALL) k = E;           /* an upper bound */
    if (m->select == MOE_SELECT_EXPERT_CHOICE) k = m->ec_capacity;
    *active_frac = k / (double)E;
}

void moe_model_count(const moe_model_config *c, moe_model_counts *out) {
    const int64_t d = c->d_model, V = c->vocab_size, H = c->n_heads, Hkv = c->n_kv_heads;
    const int64_t hd = c->head_dim ? c->head_dim : d / (H ? H : 1);
    int64_t total = V * d + d + (c->tie_embeddings ? 0 : V * d);
    double unused = 0; /* routed expert parameters a token does not use */
    double mm = (double)V * d;          /* multiply-adds per token: output head */
    int64_t expert_total = 0;
    for (int l = 0; l < c->n_layers; l++) {
        int64_t attn = 2 * d + d * H * hd * 2 + d * Hkv * hd * 2;
        total += attn;
        mm += (double)(attn - 2 * d);
        /* attention scores and weighted values over the causal prefix:
           on average (T + 1) / 2 keys per query */
        mm += 2.0 * (double)H * hd * (c->ctx_len + 1) / 2.0;
        if (moe_model_layer_is_moe(c, l)) {
            int64_t ex, other;
            double frac;
            moe_layer_sizes(c, &ex, &other, &frac);
            total += ex + other;
            expert_total += ex;
            unused += (double)ex * (1.0 - frac);
            mm += (double)ex * frac + (double)other;
        } else {
            int64_t f = 3 * (int64_t)c->d_ff * d;
            total += f;
            mm += (double)f;
        }
    }
    out->params = total;
    out->active_params = model_active_params(total, unused, V, d, c->tie_embeddings);
    out->expert_params = expert_total;
    out->fwd_flops = 2.0 * mm;
    out->train_flops = 6.0 * mm;
}

size_t moe_model_memory_bytes(const moe_model_config *c) {
    moe_model_counts k;
    moe_model_count(c, &k);
    const double N = (double)c->max_batch * c->ctx_len, d = c->d_model;
    const double H = c->n_heads, Hkv = c->n_kv_heads;
    const double hd = c->head_dim ? c->head_dim : d / H;
    double floats = 2.0 * (double)k.params;           /* parameters + gradients */
    double per_block = N * (5 * d + 2 + 2 * H * hd + 2 * Hkv * hd) + (double)c->max_batch * H * c->ctx_len * c->ctx_len;
    for (int l = 0; l < c->n_layers; l++) {
        floats += per_block;
        if (moe_model_layer_is_moe(c, l)) {
            /* the layer's own buffers: about rows x (2 d + 4 d_ff) forward
               and as much again for backward, rows = N * slots */
            double rows = N * (c->moe.max_top_k > c->moe.top_k ? c->moe.max_top_k : c->moe.top_k);
            if (c->moe.select == MOE_SELECT_ALL || c->moe.select == MOE_SELECT_EXPERT_CHOICE)
                rows = N * c->moe.n_experts;
            floats += 2.0 * rows * (2 * d + 4.0 * c->moe.d_ff) + N * c->moe.n_experts * 4;
            if (c->moe.shared_d_ff > 0) floats += 6.0 * N * c->moe.shared_d_ff;
        } else {
            floats += 3.0 * N * c->d_ff;
        }
    }
    floats += N * d * (double)(c->n_layers + 1);      /* residual streams */
    floats += N * (2.0 * c->vocab_size + 4 * d + 3 * H * hd) + 6.0 * N * c->d_ff;
    double bytes = floats * 4.0;
    return bytes > (double)SIZE_MAX / 2 ? SIZE_MAX / 2 : (size_t)bytes;
}
