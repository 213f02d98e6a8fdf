/* layer.c: the public MoE layer API: configuration checks, allocation of every
 * buffer at create (worst case: dropless, max_tokens tokens), parameters,
 * forward and backward as a sequence of the stages in layer.h.
 * Not here: the arithmetic of any stage (router.c, plan.c, experts.c).
 */
#include "layer/layer.h"
#include "core/rng.h"
#include "kernels/gemm.h"

#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

void moe_layer_config_default(moe_layer_config *c, int d_model, int d_ff,
                              int n_experts, int top_k) {
    memset(c, 0, sizeof *c);
    c->d_model = d_model;
    c->d_ff = d_ff;
    c->n_experts = n_experts;
    c->top_k = top_k;
    c->expert = MOE_EXPERT_SWIGLU;
    c->gate = MOE_GATE_SOFTMAX;
    c->select = MOE_SELECT_TOPK;
    c->capacity_factor = MOE_DROPLESS;
    c->drop_policy = MOE_DROP_POSITION;
    c->renormalize = 1;
    c->weight_scale = 1.0f;
    c->aux_loss_coef = 0.0f;
    c->z_loss_coef = 0.0f;
    c->max_tokens = 4096;
    c->n_threads = 0;
}

moe_status moe_layer_config_check(const moe_layer_config *c, moe_error *err) {
    moe_err_clear(err);
    if (!c) return moe_err(err, MOE_ERR_ARG, "layer config: NULL");
    if (c->d_model < 1) return moe_err(err, MOE_ERR_ARG, "layer config: d_model = %d, expected >= 1", c->d_model);
    if (c->d_ff < 1) return moe_err(err, MOE_ERR_ARG, "layer config: d_ff = %d, expected >= 1", c->d_ff);
    if (c->n_experts < 1) return moe_err(err, MOE_ERR_ARG, "layer config: n_experts = %d, expected >= 1", c->n_experts);
    if (c->top_k < 1 || c->top_k > c->n_experts)
        return moe_err(err, MOE_ERR_ARG, "layer config: top_k = %d, expected 1 <= top_k <= n_experts = %d",
                       c->top_k, c->n_experts);
    if ((unsigned)c->expert >= MOE_EXPERT_COUNT)
        return moe_err(err, MOE_ERR_ARG, "layer config: expert type %d unknown", (int)c->expert);
    if ((unsigned)c->gate >= MOE_GATE_COUNT)
        return moe_err(err, MOE_ERR_ARG, "layer config: gate %d unknown", (int)c->gate);
    if ((unsigned)c->select >= MOE_SELECT_COUNT)
        return moe_err(err, MOE_ERR_ARG, "layer config: selection %d unknown", (int)c->select);
    if ((unsigned)c->drop_policy >= MOE_DROP_COUNT)
        return moe_err(err, MOE_ERR_ARG, "layer config: drop policy %d unknown", (int)c->drop_policy);
    if (!isfinite(c->capacity_factor) || (c->capacity_factor < 0.0f && c->capacity_factor != MOE_DROPLESS))
        return moe_err(err, MOE_ERR_ARG, "layer config: capacity_factor = %g, expected >= 0 or MOE_DROPLESS (-1)",
                       (double)c->capacity_factor);
    if (!isfinite(c->weight_scale))
        return moe_err(err, MOE_ERR_ARG, "layer config: weight_scale = %g, expected a finite number", (double)c->weight_scale);
    if (!isfinite(c->aux_loss_coef) || c->aux_loss_coef < 0.0f)
        return moe_err(err, MOE_ERR_ARG, "layer config: aux_loss_coef = %g, expected finite and >= 0", (double)c->aux_loss_coef);
    if (!isfinite(c->z_loss_coef) || c->z_loss_coef < 0.0f)
        return moe_err(err, MOE_ERR_ARG, "layer config: z_loss_coef = %g, expected finite and >= 0", (double)c->z_loss_coef);
    if (c->max_tokens < 1) return moe_err(err, MOE_ERR_ARG, "layer config: max_tokens = %d, expected >= 1", c->max_tokens);
    /* every row index is an int: T * k rows must fit, and so must row * width */
    int64_t rows = (int64_t)c->max_tokens * c->top_k;
    int64_t widest = (int64_t)2 * c->d_ff > c->d_model ? (int64_t)2 * c->d_ff : c->d_model;
    if (rows > INT32_MAX / 2 || (int64_t)c->n_experts * c->d_model * c->d_ff > INT64_MAX / 16 ||
        rows * widest > ((int64_t)1 << 40))
        return moe_err(err, MOE_ERR_ARG, "layer config: max_tokens = %d with top_k = %d, d_model = %d, d_ff = %d "
                       "needs buffers beyond 4 TiB", c->max_tokens, c->top_k, c->d_model, c->d_ff);
    return MOE_OK;
}

int layer_threads(const moe_layer *L) {
    return L->cfg.n_threads > 0 ? L->cfg.n_threads : omp_get_max_threads();
}

/* Aligned allocation of n floats (or bytes), NULL-safe to free. */
static void *alloc64(size_t bytes) {
    if (bytes == 0) bytes = 64;
    bytes = (bytes + 63) & ~(size_t)63;
    return aligned_alloc(64, bytes);
}

void moe_layer_free(moe_layer *L) {
    if (!L) return;
    void *bufs[] = {
        L->param_buf, L->grad_buf, L->logits, L->probs, L->lse, L->slot_expert,
        L->slot_weight, L->slot_score, L->P, L->f, L->plan.routed, L->plan.kept,
        L->plan.offset, L->plan.row_slot, L->plan.slot_row, L->plan.order,
        L->plan.fill, L->problems, L->xg, L->h, L->a, L->o, L->d_o, L->d_a,
        L->d_h, L->d_xg, L->d_w, L->d_logits, L->x_saved,
    };
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    free(L);
}

static void set_pointers(moe_layer_weights *w, float *base, const moe_layer_config *c) {
    size_t E = (size_t)c->n_experts, d = (size_t)c->d_model, F = (size_t)c->d_ff;
    w->router = base;
    base += E * d;
    if (c->expert == MOE_EXPERT_SWIGLU) { w->gate = base; base += E * F * d; }
    else w->gate = NULL;
    w->up = base;
    base += E * F * d;
    w->down = base;
}

moe_status moe_layer_create(moe_layer **out, const moe_layer_config *cfg, moe_error *err) {
    if (!out) return moe_err(err, MOE_ERR_ARG, "moe_layer_create: out is NULL");
    *out = NULL;
    moe_status st = moe_layer_config_check(cfg, err);
    if (st != MOE_OK) return st;
    moe_layer *L = calloc(1, sizeof *L);
    if (!L) return moe_err(err, MOE_ERR_NOMEM, "moe_layer_create: no memory for the layer");
    L->cfg = *cfg;
    const size_t E = (size_t)cfg->n_experts, d = (size_t)cfg->d_model, F = (size_t)cfg->d_ff;
    const size_t Tm = (size_t)cfg->max_tokens;
    L->S = cfg->top_k;
    L->hid = cfg->expert == MOE_EXPERT_SWIGLU ? 2 * cfg->d_ff : cfg->d_ff;
    const size_t S = (size_t)L->S, H = (size_t)L->hid, R = Tm * S;
    L->n_params = E * d + (cfg->expert == MOE_EXPERT_SWIGLU ? 3 : 2) * E * F * d;

    int ok = 1;
#define ALLOC(ptr, count) do { (ptr) = alloc64(sizeof(*(ptr)) * (count)); ok &= (ptr) != NULL; } while (0)
    ALLOC(L->param_buf, L->n_params);
    ALLOC(L->grad_buf, L->n_params);
    ALLOC(L->logits, Tm * E);
    ALLOC(L->probs, Tm * E);
    ALLOC(L->lse, Tm);
    ALLOC(L->slot_expert, R);
    ALLOC(L->slot_weight, R);
    ALLOC(L->slot_score, R);
    ALLOC(L->P, E);
    ALLOC(L->f, E);
    ALLOC(L->plan.routed, E);
    ALLOC(L->plan.kept, E);
    ALLOC(L->plan.offset, E + 1);
    ALLOC(L->plan.row_slot, R);
    ALLOC(L->plan.slot_row, R);
    ALLOC(L->plan.order, R);
    ALLOC(L->plan.fill, E);
    L->problems = alloc64(sizeof(gemm_problem) * 3 * E);
    ok &= L->problems != NULL;
    ALLOC(L->xg, R * d);
    ALLOC(L->h, R * H);
    ALLOC(L->a, R * F);
    ALLOC(L->o, R * d);
    ALLOC(L->d_o, R * d);
    ALLOC(L->d_a, R * F);
    ALLOC(L->d_h, R * H);
    ALLOC(L->d_xg, R * d);
    ALLOC(L->d_w, R);
    ALLOC(L->d_logits, Tm * E);
    ALLOC(L->x_saved, Tm * d);
#undef ALLOC
    if (!ok) {
        moe_layer_free(L);
        return moe_err(err, MOE_ERR_NOMEM, "moe_layer_create: no memory for buffers of max_tokens = %d "
                       "(d_model = %d, d_ff = %d, E = %d, k = %d)", cfg->max_tokens,
                       cfg->d_model, cfg->d_ff, cfg->n_experts, cfg->top_k);
    }
    memset(L->param_buf, 0, sizeof(float) * L->n_params);
    memset(L->grad_buf, 0, sizeof(float) * L->n_params);
    set_pointers(&L->w, L->param_buf, cfg);
    set_pointers(&L->g, L->grad_buf, cfg);
    L->stats.capacity = -1;
    L->stats.tokens_per_expert = L->plan.routed;
    L->stats.kept_per_expert = L->plan.kept;
    memset(L->plan.routed, 0, sizeof(int) * E);
    memset(L->plan.kept, 0, sizeof(int) * E);
    *out = L;
    moe_err_clear(err);
    return MOE_OK;
}

const moe_layer_config *moe_layer_get_config(const moe_layer *L) { return &L->cfg; }
const char *moe_layer_errmsg(const moe_layer *L) { return L ? L->err.msg : "layer is NULL"; }
moe_layer_weights moe_layer_params(moe_layer *L) { return L->w; }
moe_layer_weights moe_layer_grads(moe_layer *L) { return L->g; }
size_t moe_layer_param_count(const moe_layer *L) { return L->n_params; }
void moe_layer_zero_grads(moe_layer *L) { memset(L->grad_buf, 0, sizeof(float) * L->n_params); }
void moe_layer_set_threads(moe_layer *L, int n_threads) { L->cfg.n_threads = n_threads; }
const moe_route_stats *moe_layer_stats(const moe_layer *L) { return &L->stats; }
const moe_layer_profile *moe_layer_get_profile(const moe_layer *L) { return &L->prof; }

void moe_layer_init_params(moe_layer *L, uint64_t seed) {
    moe_rng r;
    moe_rng_seed(&r, seed);
    const moe_layer_config *c = &L->cfg;
    size_t E = (size_t)c->n_experts, d = (size_t)c->d_model, F = (size_t)c->d_ff;
    float a = 1.0f / sqrtf((float)d), b = 1.0f / sqrtf((float)F);
    for (size_t i = 0; i < E * d; i++) L->w.router[i] = a * (2.0f * moe_rng_f32(&r) - 1.0f);
    if (L->w.gate)
        for (size_t i = 0; i < E * F * d; i++) L->w.gate[i] = a * (2.0f * moe_rng_f32(&r) - 1.0f);
    for (size_t i = 0; i < E * F * d; i++) L->w.up[i] = a * (2.0f * moe_rng_f32(&r) - 1.0f);
    for (size_t i = 0; i < E * d * F; i++) L->w.down[i] = b * (2.0f * moe_rng_f32(&r) - 1.0f);
}

moe_status moe_layer_forward(moe_layer *L, float *y, const float *x, int T, int train) {
    (void)train; /* no gate of this layer behaves differently in training yet */
    moe_err_clear(&L->err);
    L->have_forward = 0;
    if (!y || !x) return moe_err(&L->err, MOE_ERR_ARG, "moe_layer_forward: y or x is NULL");
    if (T < 1 || T > L->cfg.max_tokens)
        return moe_err(&L->err, MOE_ERR_SHAPE, "moe_layer_forward: T = %d tokens, expected 1 <= T <= max_tokens = %d",
                       T, L->cfg.max_tokens);
    const size_t n = (size_t)T * L->cfg.d_model;
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return moe_err(&L->err, MOE_ERR_NONFINITE, "moe_layer_forward: x[%zu, %zu] = %g is not finite",
                           i / (size_t)L->cfg.d_model, i % (size_t)L->cfg.d_model, (double)x[i]);
    L->T = T;
    double t0 = omp_get_wtime();
    router_forward(L, x, T);
    double t1 = omp_get_wtime();
    plan_build(L, T);
    L->prof.fwd_route = t1 - t0;
    L->prof.fwd_plan = omp_get_wtime() - t1;
    experts_forward(L, y, x, T);
    memcpy(L->x_saved, x, sizeof(float) * n);
    L->have_forward = 1;
    return MOE_OK;
}

moe_status moe_layer_backward(moe_layer *L, float *dx, const float *dy) {
    moe_err_clear(&L->err);
    if (!L->have_forward)
        return moe_err(&L->err, MOE_ERR_ARG, "moe_layer_backward: no successful forward pass to differentiate");
    if (!dx || !dy) return moe_err(&L->err, MOE_ERR_ARG, "moe_layer_backward: dx or dy is NULL");
    experts_backward(L, dx, dy, L->T);
    double t0 = omp_get_wtime();
    router_backward(L, dx, L->x_saved, L->T);
    L->prof.bwd_route = omp_get_wtime() - t0;
    return MOE_OK;
}

void moe_layer_routing(const moe_layer *L, int *experts, float *weights, int *kept) {
    size_t n = (size_t)L->T * L->S;
    if (experts) memcpy(experts, L->slot_expert, sizeof(int) * n);
    if (weights) memcpy(weights, L->slot_weight, sizeof(float) * n);
    if (kept)
        for (size_t i = 0; i < n; i++) kept[i] = L->plan.slot_row[i] >= 0;
}
