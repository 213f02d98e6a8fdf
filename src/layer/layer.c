/* layer.c: the public MoE layer API: configuration checks, allocation of every
 * buffer at create (worst case: dropless, max_tokens tokens), parameters,
 * forward and backward as a sequence of the stages in layer.h.
 * Not here: the arithmetic of any stage (router.c, plan.c, experts.c).
 */
#include "layer/layer.h"
#include "core/bigalloc.h"
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
    c->top_p = 1.0f;
    c->ec_capacity = 1.0f;
}

#define NONNEG(field) \
    if (!isfinite(c->field) || c->field < 0.0f || c->field > MOE_MAX_COEF) \
        return moe_err(err, MOE_ERR_ARG, "layer config: " #field " = %g, expected 0..%g", (double)c->field, \
                       (double)MOE_MAX_COEF)

/* The routing family's options and which combinations make sense. */
static moe_status check_routing(const moe_layer_config *c, moe_error *err) {
    const int E = c->n_experts;
    NONNEG(jitter);
    NONNEG(importance_loss_coef);
    NONNEG(load_loss_coef);
    NONNEG(entropy_loss_coef);
    NONNEG(ec_capacity);
    NONNEG(bias_update_rate);
    NONNEG(seq_aux_loss_coef);
    NONNEG(relu_l1_coef);
    NONNEG(relu_target_sparsity);
    if (!isfinite(c->top_p)) return moe_err(err, MOE_ERR_ARG, "layer config: top_p = %g, expected finite", (double)c->top_p);
    if (c->ec_capacity > MOE_MAX_CAPACITY_FACTOR)
        return moe_err(err, MOE_ERR_ARG, "layer config: ec_capacity = %g, expected at most %g", (double)c->ec_capacity,
                       (double)MOE_MAX_CAPACITY_FACTOR);
    if (c->jitter >= 1.0f) return moe_err(err, MOE_ERR_ARG, "layer config: jitter = %g, expected < 1", (double)c->jitter);
    if (c->max_top_k < 0 || c->max_top_k > E || (c->max_top_k && c->max_top_k < c->top_k))
        return moe_err(err, MOE_ERR_ARG, "layer config: max_top_k = %d, expected 0 or top_k = %d <= max_top_k <= E = %d",
                       c->max_top_k, c->top_k, E);
    if ((c->gate == MOE_GATE_RELU) != (c->select == MOE_SELECT_ALL))
        return moe_err(err, MOE_ERR_ARG, "layer config: the ReLU gate goes with MOE_SELECT_ALL and only with it");
    if (c->relu_target_sparsity >= 1.0f)
        return moe_err(err, MOE_ERR_ARG, "layer config: relu_target_sparsity = %g, expected in [0, 1)", (double)c->relu_target_sparsity);
    if (c->select == MOE_SELECT_TOPP && !(c->top_p > 0.0f && c->top_p <= 1.0f))
        return moe_err(err, MOE_ERR_ARG, "layer config: top_p = %g, expected 0 < top_p <= 1", (double)c->top_p);
    if (c->select == MOE_SELECT_EXPERT_CHOICE) {
        if (!(c->ec_capacity > 0.0f))
            return moe_err(err, MOE_ERR_ARG, "layer config: expert choice needs ec_capacity > 0 (got %g)", (double)c->ec_capacity);
        if (c->capacity_factor != MOE_DROPLESS)
            return moe_err(err, MOE_ERR_ARG, "layer config: expert choice sets its own capacity (ec_capacity); capacity_factor must be MOE_DROPLESS");
        if (c->gate != MOE_GATE_SOFTMAX)
            return moe_err(err, MOE_ERR_ARG, "layer config: expert choice uses the softmax gate");
    }
    if (c->select == MOE_SELECT_HASH &&
        (c->aux_loss_coef > 0 || c->z_loss_coef > 0 || c->entropy_loss_coef > 0 || c->importance_loss_coef > 0 ||
         c->load_loss_coef > 0 || c->seq_aux_loss_coef > 0 || c->noisy_gate || c->jitter > 0 || c->bias_update_rate > 0))
        return moe_err(err, MOE_ERR_ARG, "layer config: hash routing has no router: router losses, noise, jitter and bias must be 0");
    if (c->noisy_gate && c->gate != MOE_GATE_SOFTMAX)
        return moe_err(err, MOE_ERR_ARG, "layer config: the noisy gate is a softmax gate");
    if (c->load_loss_coef > 0 && (!c->noisy_gate || c->top_k >= E))
        return moe_err(err, MOE_ERR_ARG, "layer config: load_loss_coef needs noisy_gate = 1 and top_k < E (k = %d, E = %d)", c->top_k, E);
    if (c->gshard_random_second && (c->top_k != 2 || c->select != MOE_SELECT_TOPK))
        return moe_err(err, MOE_ERR_ARG, "layer config: gshard_random_second needs top-k selection with top_k = 2 (got %d)", c->top_k);
    if (c->n_groups) {
        if (c->n_groups < 0 || E % c->n_groups)
            return moe_err(err, MOE_ERR_ARG, "layer config: n_groups = %d does not divide n_experts = %d", c->n_groups, E);
        if (c->topk_groups < 1 || c->topk_groups > c->n_groups)
            return moe_err(err, MOE_ERR_ARG, "layer config: topk_groups = %d, expected 1..n_groups = %d", c->topk_groups, c->n_groups);
        int maxk = c->max_top_k ? c->max_top_k : c->top_k;
        if (maxk > c->topk_groups * (E / c->n_groups))
            return moe_err(err, MOE_ERR_ARG, "layer config: top_k = %d exceeds the %d experts of %d kept groups",
                           maxk, c->topk_groups * (E / c->n_groups), c->topk_groups);
        if (c->select != MOE_SELECT_TOPK)
            return moe_err(err, MOE_ERR_ARG, "layer config: group-limited routing applies to top-k selection");
    }
    if (c->bias_update_rate > 0 && c->select != MOE_SELECT_TOPK)
        return moe_err(err, MOE_ERR_ARG, "layer config: the balance bias applies to top-k selection");
    if (c->seq_len < 0 || (c->seq_aux_loss_coef > 0 && c->seq_len < 1))
        return moe_err(err, MOE_ERR_ARG, "layer config: seq_aux_loss_coef needs seq_len >= 1 (got %d)", c->seq_len);
    if (c->shared_d_ff < 0 || c->shared_d_ff > MOE_MAX_D_FF)
        return moe_err(err, MOE_ERR_ARG, "layer config: shared_d_ff = %d, expected 0..%d", c->shared_d_ff, MOE_MAX_D_FF);
    if (c->shared_gate && !c->shared_d_ff)
        return moe_err(err, MOE_ERR_ARG, "layer config: shared_gate needs a shared expert (shared_d_ff > 0)");
    if (c->dead_window < 0) return moe_err(err, MOE_ERR_ARG, "layer config: dead_window = %d, expected >= 0", c->dead_window);
    return MOE_OK;
}

moe_status moe_layer_config_check(const moe_layer_config *c, moe_error *err) {
    moe_status st;
    moe_err_clear(err);
    if (!c) return moe_err(err, MOE_ERR_ARG, "layer config: NULL");
    /* bounds: products of sizes stay far inside int64 and size_t, and the
       per-token scratch arrays sized by E on worker stacks stay small */
    if (c->d_model < 1 || c->d_model > MOE_MAX_D_MODEL)
        return moe_err(err, MOE_ERR_ARG, "layer config: d_model = %d, expected 1..%d", c->d_model, MOE_MAX_D_MODEL);
    if (c->d_ff < 1 || c->d_ff > MOE_MAX_D_FF)
        return moe_err(err, MOE_ERR_ARG, "layer config: d_ff = %d, expected 1..%d", c->d_ff, MOE_MAX_D_FF);
    if (c->n_experts < 1 || c->n_experts > MOE_MAX_EXPERTS)
        return moe_err(err, MOE_ERR_ARG, "layer config: n_experts = %d, expected 1..%d (MOE_MAX_EXPERTS)",
                       c->n_experts, MOE_MAX_EXPERTS);
    if (c->top_k < 1 || c->top_k > c->n_experts)
        return moe_err(err, MOE_ERR_ARG, "layer config: top_k = %d, expected 1 <= top_k <= n_experts = %d",
                       c->top_k, c->n_experts);
    if ((unsigned)c->expert >= MOE_EXPERT_COUNT)
        return moe_err(err, MOE_ERR_ARG, "layer config: expert %d unknown", (int)c->expert);
    if ((unsigned)c->gate >= MOE_GATE_COUNT)
        return moe_err(err, MOE_ERR_ARG, "layer config: gate %d unknown", (int)c->gate);
    if ((unsigned)c->select >= MOE_SELECT_COUNT)
        return moe_err(err, MOE_ERR_ARG, "layer config: select %d unknown", (int)c->select);
    if ((unsigned)c->drop_policy >= MOE_DROP_COUNT)
        return moe_err(err, MOE_ERR_ARG, "layer config: drop_policy %d unknown", (int)c->drop_policy);
    if (!isfinite(c->capacity_factor) || (c->capacity_factor < 0.0f && c->capacity_factor != MOE_DROPLESS) ||
        c->capacity_factor > MOE_MAX_CAPACITY_FACTOR)
        return moe_err(err, MOE_ERR_ARG, "layer config: capacity_factor = %g, expected 0..%g or MOE_DROPLESS (-1)",
                       (double)c->capacity_factor, (double)MOE_MAX_CAPACITY_FACTOR);
    if (!(fabsf(c->weight_scale) <= MOE_MAX_COEF))
        return moe_err(err, MOE_ERR_ARG, "layer config: weight_scale = %g, expected -%g..%g", (double)c->weight_scale,
                       (double)MOE_MAX_COEF, (double)MOE_MAX_COEF);
    NONNEG(aux_loss_coef);
    NONNEG(z_loss_coef);
    if (c->max_tokens < 1) return moe_err(err, MOE_ERR_ARG, "layer config: max_tokens = %d, expected >= 1", c->max_tokens);
    if (c->n_threads > MOE_MAX_THREADS)
        return moe_err(err, MOE_ERR_ARG, "layer config: n_threads = %d, expected at most %d (<= 0: the OpenMP default)",
                       c->n_threads, MOE_MAX_THREADS);
    st = check_routing(c, err);
    if (st != MOE_OK) return st;
    /* every row index is an int: T * slots rows must fit, and so must row * width */
    int64_t slots = c->max_top_k > c->top_k ? c->max_top_k : c->top_k;
    if (c->select == MOE_SELECT_EXPERT_CHOICE || c->select == MOE_SELECT_ALL) slots = c->n_experts;
    int64_t rows = (int64_t)c->max_tokens * slots;
    int64_t widest = (int64_t)2 * c->d_ff > c->d_model ? (int64_t)2 * c->d_ff : c->d_model;
    if ((int64_t)2 * c->shared_d_ff > widest) widest = (int64_t)2 * c->shared_d_ff;
    if (rows > INT32_MAX / 2 || rows * widest > ((int64_t)1 << 40))
        return moe_err(err, MOE_ERR_ARG, "layer config: max_tokens = %d with %lld slots per token, d_model = %d, "
                       "d_ff = %d, shared_d_ff = %d needs buffers beyond 4 TiB", c->max_tokens, (long long)slots,
                       c->d_model, c->d_ff, c->shared_d_ff);
    return MOE_OK;
}

int layer_threads(const moe_layer *L) {
    int n = L->cfg.n_threads > 0 ? L->cfg.n_threads : omp_get_max_threads();
    return n < MOE_MAX_THREADS ? n : MOE_MAX_THREADS;
}

void moe_layer_free(moe_layer *L) {
    if (!L) return;
    moe_allocs_free(&L->mem);
    gemm_ws_free(&L->own_ws);
    free(L);
}

/* Parameter layout: router, gate, up, down, noise, shared gate/up/down, shared router;
 * the stacked experts (gate, up, down) of Eh held experts.
 * Returns the number of floats; base NULL only sizes (every pointer NULL: the
 * offsets are counted in an integer, never added to a null pointer). */
static size_t set_pointers(moe_layer_weights *w, float *base, const moe_layer_config *c, int Eh) {
    size_t E = (size_t)c->n_experts, d = (size_t)c->d_model, F = (size_t)c->d_ff, Fs = (size_t)c->shared_d_ff;
    const size_t Ex = (size_t)Eh;
    int swiglu = c->expert == MOE_EXPERT_SWIGLU;
    size_t off = 0;
#define TAKE(field, n, cond) do { if (cond) { w->field = base ? base + off : NULL; off += (n); } else w->field = NULL; } while (0)
    TAKE(router, E * d, 1);
    TAKE(gate, Ex * F * d, swiglu);
    TAKE(up, Ex * F * d, 1);
    TAKE(down, Ex * d * F, 1);
    TAKE(noise, E * d, c->noisy_gate);
    TAKE(shared_gate, Fs * d, Fs && swiglu);
    TAKE(shared_up, Fs * d, Fs);
    TAKE(shared_down, d * Fs, Fs);
    TAKE(shared_router, d, c->shared_gate);
#undef TAKE
    return off;
}

/* Slots per token: E for expert choice and ReLU routing, else the largest k. */
static int slots_for(const moe_layer_config *c) {
    if (c->select == MOE_SELECT_EXPERT_CHOICE || c->select == MOE_SELECT_ALL) return c->n_experts;
    return c->max_top_k > c->top_k ? c->max_top_k : c->top_k;
}

moe_status moe_layer_create(moe_layer **out, const moe_layer_config *cfg, moe_error *err) {
    return layer_create_with(out, cfg, NULL, 0, cfg ? cfg->n_experts : 0, err);
}

moe_status layer_create_with(moe_layer **out, const moe_layer_config *cfg, const gemm_ws *ws, int ex_lo,
                             int ex_hi, moe_error *err) {
    if (!out) return moe_err(err, MOE_ERR_ARG, "moe_layer_create: out is NULL");
    *out = NULL;
    moe_status st = moe_layer_config_check(cfg, err);
    if (st != MOE_OK) return st;
    if (ex_lo < 0 || ex_hi > cfg->n_experts || ex_lo >= ex_hi)
        return moe_err(err, MOE_ERR_ARG, "moe_layer_create: experts [%d, %d) held of %d", ex_lo, ex_hi,
                       cfg->n_experts);
    moe_layer *L = calloc(1, sizeof *L);
    if (!L) return moe_err(err, MOE_ERR_NOMEM, "moe_layer_create: no memory for the layer");
    L->cfg = *cfg;
    const size_t E = (size_t)cfg->n_experts, d = (size_t)cfg->d_model, F = (size_t)cfg->d_ff;
    const size_t Tm = (size_t)cfg->max_tokens;
    L->S = slots_for(cfg);
    L->k = cfg->top_k;
    L->top_p = cfg->top_p;
    L->l1_coef = cfg->relu_l1_coef;
    moe_rng_seed(&L->rng, cfg->seed);
    L->hid = cfg->expert == MOE_EXPERT_SWIGLU ? 2 * cfg->d_ff : cfg->d_ff;
    L->Fs = cfg->shared_d_ff;
    L->Hs = cfg->expert == MOE_EXPERT_SWIGLU ? 2 * L->Fs : L->Fs;
    const size_t S = (size_t)L->S, H = (size_t)L->hid, R = Tm * S;
    const size_t Fs = (size_t)L->Fs, Hs = (size_t)L->Hs;
    L->ex_lo = ex_lo;
    L->ex_hi = ex_hi;
    moe_layer_weights none;
    L->n_params = set_pointers(&none, NULL, cfg, ex_hi - ex_lo);
    const size_t n_seq = cfg->seq_len > 0 ? Tm / (size_t)cfg->seq_len + 1 : 1;

    int ok = 1;
    /* every buffer is recorded in L->mem, which moe_layer_free releases */
#define ALLOC(ptr, count) do { (ptr) = moe_allocs_get(&L->mem, sizeof(*(ptr)) * (count)); ok &= (ptr) != NULL; } while (0)
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
    ALLOC(L->plan.row_lo, E);
    ALLOC(L->plan.row_hi, E);
    L->problems = moe_allocs_get(&L->mem, sizeof(gemm_problem) * 3 * E); /* void * in layer.h */
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
    ALLOC(L->bias, E);
    ALLOC(L->acc_routed, E);
    ALLOC(L->acc_first, E);
    ALLOC(L->dead_run, E);
    ALLOC(L->active_hist, S + 1);
    ALLOC(L->token_ids, Tm);
    ALLOC(L->H, Tm * E);
    ALLOC(L->second_u, Tm);
    ALLOC(L->gs_expert, Tm);
    ALLOC(L->pn, Tm * E);
    ALLOC(L->selsc, Tm * E);
    ALLOC(L->Zsum, Tm);
    ALLOC(L->imp_g, E);
    ALLOC(L->load_g, E);
    ALLOC(L->seq_f, n_seq * E);
    if (cfg->jitter > 0.0f) { ALLOC(L->xr, Tm * d); ALLOC(L->jit, Tm * d); ALLOC(L->d_xr, Tm * d); }
    if (cfg->noisy_gate) {
        ALLOC(L->zn, Tm * E); ALLOC(L->sigma, Tm * E); ALLOC(L->nz, Tm * E);
        ALLOC(L->d_zn, Tm * E); ALLOC(L->load_dz, Tm * E);
    }
    if (Fs) {
        ALLOC(L->sh_h, Tm * Hs); ALLOC(L->sh_a, Tm * Fs); ALLOC(L->sh_o, Tm * d); ALLOC(L->sh_g, Tm);
        ALLOC(L->d_sh_o, Tm * d); ALLOC(L->d_sh_a, Tm * Fs); ALLOC(L->d_sh_h, Tm * Hs); ALLOC(L->sh_dl, Tm);
    }
#undef ALLOC
    if (!ok) {
        moe_layer_free(L);
        return moe_err(err, MOE_ERR_NOMEM, "moe_layer_create: no memory for buffers of max_tokens = %d "
                       "(d_model = %d, d_ff = %d, E = %d, k = %d)", cfg->max_tokens,
                       cfg->d_model, cfg->d_ff, cfg->n_experts, cfg->top_k);
    }
    memset(L->param_buf, 0, sizeof(float) * L->n_params);
    memset(L->grad_buf, 0, sizeof(float) * L->n_params);
    set_pointers(&L->w, L->param_buf, cfg, ex_hi - ex_lo);
    set_pointers(&L->g, L->grad_buf, cfg, ex_hi - ex_lo);
    if (ws) {
        L->gws = ws;
    } else {
        const int nt = layer_threads(L), dflt = omp_get_max_threads();
        st = gemm_ws_init(&L->own_ws, nt > dflt ? nt : dflt, err);
        if (st != MOE_OK) { moe_layer_free(L); return st; }
        L->gws = &L->own_ws;
    }
    L->stats.capacity = -1;
    L->stats.tokens_per_expert = L->plan.routed;
    L->stats.kept_per_expert = L->plan.kept;
    L->stats.active_hist = L->active_hist;
    L->stats.active_hist_len = L->S + 1;
    memset(L->plan.routed, 0, sizeof(int) * E);
    memset(L->plan.kept, 0, sizeof(int) * E);
    memset(L->bias, 0, sizeof(float) * E);
    memset(L->acc_routed, 0, sizeof(int64_t) * E);
    memset(L->acc_first, 0, sizeof(int64_t) * E);
    memset(L->dead_run, 0, sizeof(int) * E);
    memset(L->active_hist, 0, sizeof(int) * (S + 1));
    *out = L;
    moe_err_clear(err);
    return MOE_OK;
}

const moe_layer_config *moe_layer_get_config(const moe_layer *L) { return &L->cfg; }
moe_layer_weights moe_layer_params(moe_layer *L) { return L->w; }
moe_layer_weights moe_layer_grads(moe_layer *L) { return L->g; }
size_t moe_layer_param_count(const moe_layer *L) { return L->n_params; }
void moe_layer_zero_grads(moe_layer *L) {
    moe_big_zero(L->grad_buf, L->n_params, L->cfg.n_threads);
    L->grads_dropped = 0;
}
void moe_layer_drop_grads(moe_layer *L) { L->grads_dropped = 1; }
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
    /* the stacked experts: every expert's draws in order, the held ones kept */
    const size_t lo = (size_t)L->ex_lo * F * d, nh = (size_t)(L->ex_hi - L->ex_lo) * F * d;
    for (size_t i = 0; L->w.gate && i < E * F * d; i++) {
        float v = a * (2.0f * moe_rng_f32(&r) - 1.0f);
        if (i - lo < nh) L->w.gate[i - lo] = v;
    }
    for (size_t i = 0; i < E * F * d; i++) {
        float v = a * (2.0f * moe_rng_f32(&r) - 1.0f);
        if (i - lo < nh) L->w.up[i - lo] = v;
    }
    for (size_t i = 0; i < E * d * F; i++) {
        float v = b * (2.0f * moe_rng_f32(&r) - 1.0f);
        if (i - lo < nh) L->w.down[i - lo] = v;
    }
    /* the noisy gate starts at zero weights (sigma = softplus(0)), as in Shazeer et al. */
    if (L->w.noise) for (size_t i = 0; i < E * d; i++) L->w.noise[i] = 0.0f;
    size_t Fs = (size_t)L->Fs;
    float bs = Fs ? 1.0f / sqrtf((float)Fs) : 0.0f;
    if (L->w.shared_gate) for (size_t i = 0; i < Fs * d; i++) L->w.shared_gate[i] = a * (2.0f * moe_rng_f32(&r) - 1.0f);
    if (L->w.shared_up) for (size_t i = 0; i < Fs * d; i++) L->w.shared_up[i] = a * (2.0f * moe_rng_f32(&r) - 1.0f);
    if (L->w.shared_down) for (size_t i = 0; i < Fs * d; i++) L->w.shared_down[i] = bs * (2.0f * moe_rng_f32(&r) - 1.0f);
    if (L->w.shared_router) for (size_t i = 0; i < d; i++) L->w.shared_router[i] = a * (2.0f * moe_rng_f32(&r) - 1.0f);
}

moe_status moe_layer_forward(moe_layer *L, float *y, const float *x, int T, int train, moe_error *err) {
    moe_err_clear(err);
    if (!L) return moe_err(err, MOE_ERR_ARG, "moe_layer_forward: layer is NULL");
    L->have_forward = 0;
    if (!y || !x) return moe_err(err, MOE_ERR_ARG, "moe_layer_forward: y or x is NULL");
    if (T < 1 || T > L->cfg.max_tokens)
        return moe_err(err, MOE_ERR_SHAPE, "moe_layer_forward: T = %d tokens, expected 1 <= T <= max_tokens = %d",
                       T, L->cfg.max_tokens);
    const size_t n = (size_t)T * L->cfg.d_model;
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return moe_err(err, MOE_ERR_NONFINITE, "moe_layer_forward: x[%zu, %zu] = %g is not finite",
                           i / (size_t)L->cfg.d_model, i % (size_t)L->cfg.d_model, (double)x[i]);
    const moe_layer_config *c = &L->cfg;
    if (c->select == MOE_SELECT_HASH && !L->have_ids)
        return moe_err(err, MOE_ERR_ARG, "moe_layer_forward: hash routing needs token ids "
                       "(moe_layer_set_token_ids before each forward)");
    if (c->select == MOE_SELECT_HASH && L->T_ids != T)
        return moe_err(err, MOE_ERR_SHAPE, "moe_layer_forward: %d token ids were set for %d tokens", L->T_ids, T);
    if (c->seq_aux_loss_coef > 0.0f && T % c->seq_len)
        return moe_err(err, MOE_ERR_SHAPE, "moe_layer_forward: T = %d is not a multiple of seq_len = %d", T, c->seq_len);
    L->train = train ? 1 : 0;
    L->ec_now = c->select == MOE_SELECT_EXPERT_CHOICE && (train || c->ec_inference);
    if (L->dist.comm) return layer_forward_dist(L, y, x, T, err);
    if (!layer_holds_all(L))
        return moe_err(err, MOE_ERR_ARG, "moe_layer_forward: this layer holds experts %d..%d of %d only (a rank "
                       "of an expert-parallel run): it runs only as one of the job's ranks", L->ex_lo, L->ex_hi - 1,
                       L->cfg.n_experts);
    /* every stage reads the copy, never x: y may be x, or overlap it */
    memcpy(L->x_saved, x, sizeof(float) * n);
    x = L->x_saved;
    L->T = T;
    double t0 = omp_get_wtime();
    router_forward(L, x, T);
    double t1 = omp_get_wtime();
    plan_build(L, T);
    router_stats_after_plan(L, T);
    L->prof.fwd_route = t1 - t0;
    L->prof.fwd_plan = omp_get_wtime() - t1;
    experts_forward(L, y, x, T);
    if (L->Fs) shared_forward(L, y, x, T);
    L->have_ids = 0;
    L->have_forward = 1;
    return MOE_OK;
}

moe_status moe_layer_backward(moe_layer *L, float *dx, const float *dy, moe_error *err) {
    moe_err_clear(err);
    if (!L) return moe_err(err, MOE_ERR_ARG, "moe_layer_backward: layer is NULL");
    if (!L->have_forward)
        return moe_err(err, MOE_ERR_ARG, "moe_layer_backward: no successful forward pass to differentiate");
    if (!dx || !dy) return moe_err(err, MOE_ERR_ARG, "moe_layer_backward: dx or dy is NULL");
    /* dy is read again after dx is first written (shared expert, router) */
    const size_t nb = sizeof(float) * (size_t)L->T * (size_t)L->cfg.d_model;
    if (moe_overlap(dx, nb, dy, nb))
        return moe_err(err, MOE_ERR_ARG, "moe_layer_backward: dx and dy overlap (%d x %d floats each); "
                       "give dx its own buffer", L->T, L->cfg.d_model);
    /* 1: add into the gradients; 0: write them (moe_layer_drop_grads) */
    const float gbeta = L->grads_dropped ? 0.0f : 1.0f;
    if (L->dist.comm) {
        moe_status st = layer_backward_dist(L, dx, dy, gbeta, err);
        L->grads_dropped = 0;
        return st;
    }
    experts_backward(L, dx, dy, L->T, gbeta);
    if (L->Fs) shared_backward(L, dx, dy, L->x_saved, L->T, gbeta);
    double t0 = omp_get_wtime();
    router_backward(L, dx, L->x_saved, L->T, gbeta);
    L->prof.bwd_route = omp_get_wtime() - t0;
    L->grads_dropped = 0;
    return MOE_OK;
}

int moe_layer_slots(const moe_layer *L) { return L->S; }

moe_status moe_layer_set_token_ids(moe_layer *L, const int32_t *ids, int T, moe_error *err) {
    moe_err_clear(err);
    if (!L) return moe_err(err, MOE_ERR_ARG, "moe_layer_set_token_ids: layer is NULL");
    if (!ids || T < 1 || T > L->cfg.max_tokens)
        return moe_err(err, MOE_ERR_ARG, "moe_layer_set_token_ids: %d ids, expected 1..max_tokens = %d",
                       T, L->cfg.max_tokens);
    memcpy(L->token_ids, ids, sizeof(int32_t) * (size_t)T);
    L->T_ids = T;
    L->have_ids = 1;
    return MOE_OK;
}

moe_status moe_layer_set_top_k(moe_layer *L, int k, moe_error *err) {
    moe_err_clear(err);
    if (!L) return moe_err(err, MOE_ERR_ARG, "moe_layer_set_top_k: layer is NULL");
    const moe_layer_config *c = &L->cfg;
    int maxk = c->max_top_k ? c->max_top_k : c->top_k;
    if (c->select == MOE_SELECT_EXPERT_CHOICE || c->select == MOE_SELECT_ALL) maxk = c->n_experts;
    if (k < 1 || k > maxk)
        return moe_err(err, MOE_ERR_ARG, "moe_layer_set_top_k: k = %d, expected 1..%d (max_top_k)", k, maxk);
    if (c->n_groups && k > c->topk_groups * (c->n_experts / c->n_groups))
        return moe_err(err, MOE_ERR_ARG, "moe_layer_set_top_k: k = %d exceeds the experts of the kept groups", k);
    if (c->gshard_random_second && k != 2)
        return moe_err(err, MOE_ERR_ARG, "moe_layer_set_top_k: GShard's random policy needs k = 2");
    if (c->load_loss_coef > 0 && k >= c->n_experts)
        return moe_err(err, MOE_ERR_ARG, "moe_layer_set_top_k: the load loss needs k < E");
    L->k = k;
    return MOE_OK;
}

moe_status moe_layer_set_capacity_factor(moe_layer *L, float cf, moe_error *err) {
    moe_err_clear(err);
    if (!L) return moe_err(err, MOE_ERR_ARG, "moe_layer_set_capacity_factor: layer is NULL");
    if (L->cfg.select == MOE_SELECT_EXPERT_CHOICE)
        return moe_err(err, MOE_ERR_ARG, "moe_layer_set_capacity_factor: expert choice sets its own capacity (ec_capacity)");
    if (!isfinite(cf) || (cf < 0.0f && cf != MOE_DROPLESS) || cf > MOE_MAX_CAPACITY_FACTOR)
        return moe_err(err, MOE_ERR_ARG, "moe_layer_set_capacity_factor: cf = %g, expected 0..%g or MOE_DROPLESS (-1)",
                       (double)cf, (double)MOE_MAX_CAPACITY_FACTOR);
    L->cfg.capacity_factor = cf; /* buffers are sized for dropless already */
    return MOE_OK;
}

moe_status moe_layer_set_top_p(moe_layer *L, float p, moe_error *err) {
    moe_err_clear(err);
    if (!L) return moe_err(err, MOE_ERR_ARG, "moe_layer_set_top_p: layer is NULL");
    if (!(p > 0.0f && p <= 1.0f))
        return moe_err(err, MOE_ERR_ARG, "moe_layer_set_top_p: p = %g, expected 0 < p <= 1", (double)p);
    L->top_p = p;
    return MOE_OK;
}

void moe_layer_update_balance(moe_layer *L) {
    const moe_layer_config *c = &L->cfg;
    const int E = c->n_experts;
    if (c->bias_update_rate > 0.0f) {
        double mean = 0;
        for (int e = 0; e < E; e++)
            mean += c->global_stats ? (double)L->acc_routed[e] : (double)L->plan.routed[e];
        mean /= E;
        for (int e = 0; e < E; e++) {
            double load = c->global_stats ? (double)L->acc_routed[e] : (double)L->plan.routed[e];
            float sg = mean > load ? 1.0f : (mean < load ? -1.0f : 0.0f);
            L->bias[e] += c->bias_update_rate * sg;
        }
    }
    if (c->gate == MOE_GATE_RELU) {
        float sp = L->stats.sparsity, tgt = c->relu_target_sparsity;
        if (tgt > sp) L->l1_coef *= 1.2f;
        else if (tgt < sp) L->l1_coef /= 1.2f;
        L->stats.l1_coef = L->l1_coef;
    }
}

float *moe_layer_balance_bias(moe_layer *L) { return L->bias; }
uint64_t moe_layer_rng_state(const moe_layer *L) { return L->rng.s; }
void moe_layer_set_rng_state(moe_layer *L, uint64_t state) { L->rng.s = state; }

void moe_layer_reset_stats(moe_layer *L) {
    size_t E = (size_t)L->cfg.n_experts;
    memset(L->acc_routed, 0, sizeof(int64_t) * E);
    memset(L->acc_first, 0, sizeof(int64_t) * E);
    L->acc_assign = 0;
    L->acc_tokens = 0;
}

moe_layer_draws moe_layer_get_draws(const moe_layer *L) {
    moe_layer_draws dr = { NULL, NULL, NULL };
    if (!L->train) return dr;
    if (L->cfg.jitter > 0.0f) dr.jitter = L->jit;
    if (L->cfg.noisy_gate) dr.noise = L->nz;
    if (L->cfg.gshard_random_second) dr.second = L->second_u;
    return dr;
}

void moe_layer_routing(const moe_layer *L, int *experts, float *weights, int *kept) {
    size_t n = (size_t)L->T * L->S;
    if (experts) memcpy(experts, L->slot_expert, sizeof(int) * n);
    if (weights) memcpy(weights, L->slot_weight, sizeof(float) * n);
    if (kept)
        for (size_t i = 0; i < n; i++) kept[i] = L->plan.slot_row[i] >= 0;
}
