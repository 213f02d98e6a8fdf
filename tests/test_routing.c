/* test_routing.c: finite-difference gradient checks of every differentiable
 * routing method (docs/ROUTING.md) on the optimized layer, checks of the
 * methods' defining properties (expert choice balances exactly, the balance
 * bias moves, hash routing is fixed, top-p reaches p, group limits hold), the
 * run-time overrides, and the configuration errors of the routing family.
 * The PyTorch parity of the same methods is tests/test_routing_torch.py. */
#include "testutil.h"
#include "moe.h"

#include <string.h>

/* the message of the last failed layer or model call */
static moe_error lerr;

typedef struct rcase {
    const char *name;
    moe_layer_config c;
    int T, train;
} rcase;

static moe_layer_config base(int d, int F, int E, int k) {
    moe_layer_config c;
    moe_layer_config_default(&c, d, F, E, k);
    c.max_tokens = 64;
    c.n_threads = 1;
    c.seed = 17;
    return c;
}

/* L = sum(y * g) + router_loss; the RNG state is reset so every evaluation
 * sees the same noise, jitter and GShard draws. */
static double objective(moe_layer *L, const float *x, const float *g, float *y, int T, int d,
                        int train, uint64_t rng, const int32_t *ids, int *ex, int *kept) {
    moe_layer_set_rng_state(L, rng);
    if (ids) moe_layer_set_token_ids(L, ids, T, &lerr);
    if (moe_layer_forward(L, y, x, T, train, &lerr) != MOE_OK) return NAN;
    double s = 0;
    for (size_t i = 0; i < (size_t)T * d; i++) s += (double)y[i] * g[i];
    moe_layer_routing(L, ex, NULL, kept);
    return s + moe_layer_stats(L)->router_loss;
}

static void fd_case(const rcase *rc) {
    char name[160];
    snprintf(name, sizeof name, "routing/fd/%s", rc->name);
    moe_layer *L;
    moe_error err;
    if (moe_layer_create(&L, &rc->c, &err) != MOE_OK) { tu_fail(name, "create: %s", err.msg); return; }
    const int T = rc->T, d = rc->c.d_model, S = moe_layer_slots(L);
    size_t Td = (size_t)T * d, P = moe_layer_param_count(L);
    float *x = malloc(sizeof(float) * Td), *y = malloc(sizeof(float) * Td), *g = malloc(sizeof(float) * Td);
    float *dx = malloc(sizeof(float) * Td), *an = malloc(sizeof(float) * P);
    int *ex0 = malloc(sizeof(int) * T * S), *k0 = malloc(sizeof(int) * T * S);
    int *ex1 = malloc(sizeof(int) * T * S), *k1 = malloc(sizeof(int) * T * S);
    int32_t ids[64];
    for (int t = 0; t < T; t++) ids[t] = t * 31 + 7;
    const int32_t *idp = rc->c.select == MOE_SELECT_HASH ? ids : NULL;
    moe_layer_init_params(L, 5);
    moe_layer_weights w = moe_layer_params(L);
    tu_rng r = { 21 };
    if (w.noise) tu_fill(&r, w.noise, (size_t)rc->c.n_experts * d, 0.3f);
    for (int i = 0; i < rc->c.n_experts * d; i++) w.router[i] *= 2.0f;
    tu_fill(&r, x, Td, 1.0f);
    tu_fill(&r, g, Td, 1.0f);
    /* a non-zero balance bias, as after some training */
    if (rc->c.bias_update_rate > 0) {
        float *b = moe_layer_balance_bias(L);
        for (int e = 0; e < rc->c.n_experts; e++) b[e] = 0.05f * (float)((e * 7) % 5 - 2);
    }
    uint64_t rng = 99;
    moe_layer_zero_grads(L);
    objective(L, x, g, y, T, d, rc->train, rng, idp, ex0, k0);
    if (moe_layer_backward(L, dx, g, &lerr) != MOE_OK) { tu_fail(name, "backward: %s", lerr.msg); goto done; }
    memcpy(an, moe_layer_grads(L).router, sizeof(float) * P);
    float *params = moe_layer_params(L).router;
    const float eps = 1e-2f;
    int skipped = 0, checked = 0, failed_before = tu_failed_;
    double worst = 0, sp = 0, sx = 0;
    for (size_t i = 0; i < P; i++) sp = fabs(an[i]) > sp ? fabs(an[i]) : sp;
    for (size_t i = 0; i < Td; i++) sx = fabs(dx[i]) > sx ? fabs(dx[i]) : sx;
    for (size_t i = 0; i < P + Td; i++) {
        float *v = i < P ? &params[i] : &x[i - P];
        float keep = *v;
        *v = keep + eps;
        double lp = objective(L, x, g, y, T, d, rc->train, rng, idp, ex1, k1);
        int same = !memcmp(ex0, ex1, sizeof(int) * T * S) && !memcmp(k0, k1, sizeof(int) * T * S);
        *v = keep - eps;
        double lm = objective(L, x, g, y, T, d, rc->train, rng, idp, ex1, k1);
        same &= !memcmp(ex0, ex1, sizeof(int) * T * S) && !memcmp(k0, k1, sizeof(int) * T * S);
        *v = keep;
        if (!same) { skipped++; continue; }
        double fd = (lp - lm) / (2.0 * eps), a = i < P ? an[i] : dx[i - P];
        double e = fabs(fd - a) / ((i < P ? sp : sx) + 1e-6);
        checked++;
        worst = e > worst ? e : worst;
        if (e > 3e-3) {
            tu_fail(name, "%s[%zu]: analytic %.7g, finite difference %.7g (normalized error %.3g)",
                    i < P ? "param" : "x", i < P ? i : i - P, a, fd, e);
            break;
        }
    }
    if (skipped > (int)(P + Td) / 5) tu_fail(name, "%d of %zu coordinates change routing under eps", skipped, P + Td);
    if (tu_failed_ == failed_before) {
        char msg[300];
        snprintf(msg, sizeof msg, "%s (%d coordinates, %d on kinks skipped, worst %.2g)", name, checked, skipped, worst);
        tu_ok(msg);
    }
done:
    free(x); free(y); free(g); free(dx); free(an); free(ex0); free(k0); free(ex1); free(k1);
    moe_layer_free(L);
}

static void fd_all(void) {
    rcase cs[20];
    int n = 0;
    moe_layer_config c;
    c = base(8, 12, 4, 2); c.jitter = 0.1f; c.aux_loss_coef = 0.1f; c.z_loss_coef = 0.05f;
    cs[n++] = (rcase){ "switch_jitter_top1", c, 10, 1 }; cs[n - 1].c.top_k = 1; cs[n - 1].c.capacity_factor = 1.25f;
    c = base(8, 12, 4, 2); c.noisy_gate = 1; c.importance_loss_coef = 0.5f; c.load_loss_coef = 0.5f;
    cs[n++] = (rcase){ "noisy_topk_train", c, 10, 1 };
    cs[n++] = (rcase){ "noisy_topk_inference", c, 10, 0 }; cs[n - 1].c.load_loss_coef = 0.0f;
    c = base(8, 12, 4, 2); c.gshard_random_second = 1; c.balance_top1_only = 1; c.aux_loss_coef = 0.1f;
    c.capacity_factor = 1.0f;
    cs[n++] = (rcase){ "gshard_top2", c, 10, 1 };
    c = base(8, 12, 4, 2); c.select = MOE_SELECT_EXPERT_CHOICE; c.ec_capacity = 1.5f; c.z_loss_coef = 0.05f;
    cs[n++] = (rcase){ "expert_choice", c, 10, 1 };
    c = base(8, 12, 4, 2); c.gate = MOE_GATE_SIGMOID; c.bias_update_rate = 0.01f; c.seq_aux_loss_coef = 0.2f;
    c.seq_len = 5; c.aux_loss_coef = 0.1f;
    cs[n++] = (rcase){ "sigmoid_bias_seqloss", c, 10, 1 };
    c = base(8, 12, 8, 2); c.n_groups = 4; c.topk_groups = 2; c.aux_loss_coef = 0.1f;
    cs[n++] = (rcase){ "group_limited_softmax", c, 8, 1 };
    c = base(8, 12, 8, 2); c.gate = MOE_GATE_SIGMOID; c.n_groups = 4; c.topk_groups = 2; c.renormalize = 1;
    c.weight_scale = 2.5f;
    cs[n++] = (rcase){ "group_limited_sigmoid", c, 8, 1 };
    c = base(8, 12, 4, 2); c.shared_d_ff = 10; c.shared_gate = 1;
    cs[n++] = (rcase){ "shared_gated", c, 8, 1 };
    c = base(8, 12, 4, 1); c.shared_d_ff = 6; c.expert = MOE_EXPERT_GELU;
    cs[n++] = (rcase){ "shared_gelu_ungated", c, 8, 1 };
    c = base(8, 12, 4, 3); c.select = MOE_SELECT_TOPP; c.top_p = 0.6f; c.entropy_loss_coef = 0.1f;
    cs[n++] = (rcase){ "top_p_entropy", c, 10, 1 };
    c = base(8, 12, 4, 2); c.select = MOE_SELECT_HASH;
    cs[n++] = (rcase){ "hash", c, 8, 1 };
    c = base(8, 12, 4, 2); c.gate = MOE_GATE_RELU; c.select = MOE_SELECT_ALL; c.relu_l1_coef = 0.3f;
    cs[n++] = (rcase){ "relu_l1", c, 8, 1 };
    c = base(8, 4, 16, 6); c.aux_loss_coef = 0.1f;
    cs[n++] = (rcase){ "fine_grained", c, 6, 1 };
    for (int i = 0; i < n; i++) fd_case(&cs[i]);
}

/* runs one forward on random data; returns the layer (caller frees) */
static moe_layer *run(moe_layer_config c, int T, int train, float *y, uint64_t seed, const int32_t *ids) {
    moe_layer *L;
    moe_error err;
    if (moe_layer_create(&L, &c, &err) != MOE_OK) { printf("# create: %s\n", err.msg); return NULL; }
    moe_layer_init_params(L, seed);
    float *x = malloc(sizeof(float) * (size_t)T * c.d_model);
    tu_rng r = { seed };
    tu_fill(&r, x, (size_t)T * c.d_model, 1.0f);
    if (ids) moe_layer_set_token_ids(L, ids, T, &lerr);
    if (moe_layer_forward(L, y, x, T, train, &lerr) != MOE_OK) printf("# forward: %s\n", lerr.msg);
    free(x);
    return L;
}

static void properties(void) {
    float y[64 * 16];
    moe_layer_config c;
    /* expert choice: every expert gets exactly ceil(c T / E) tokens */
    c = base(16, 8, 4, 2); c.select = MOE_SELECT_EXPERT_CHOICE; c.ec_capacity = 2.0f;
    moe_layer *L = run(c, 30, 1, y, 3, NULL);
    const moe_route_stats *st = moe_layer_stats(L);
    int okc = 1;
    for (int e = 0; e < 4; e++) okc &= st->tokens_per_expert[e] == 15;
    if (!okc || st->max_violation != 0.0f) tu_fail("routing/expert_choice_balanced", "loads not all 15");
    else tu_ok("routing/expert_choice_balanced");
    moe_layer_free(L);
    /* expert choice at inference, token-choice mode: k experts per token */
    c.ec_inference = 0;
    L = run(c, 30, 0, y, 3, NULL);
    if (moe_layer_stats(L)->active_mean != 2.0f) tu_fail("routing/expert_choice_inference_topk", "active %g", moe_layer_stats(L)->active_mean);
    else tu_ok("routing/expert_choice_inference_topk");
    moe_layer_free(L);

    /* aux-loss-free bias: moves by gamma sign(mean - load) */
    c = base(16, 8, 4, 1); c.gate = MOE_GATE_SIGMOID; c.bias_update_rate = 0.5f;
    L = run(c, 40, 1, y, 4, NULL);
    st = moe_layer_stats(L);
    int routed[4];
    memcpy(routed, st->tokens_per_expert, sizeof routed);
    moe_layer_update_balance(L);
    const float *b = moe_layer_balance_bias(L);
    int okb = 1;
    for (int e = 0; e < 4; e++) {
        float want = routed[e] < 10 ? 0.5f : routed[e] > 10 ? -0.5f : 0.0f;
        okb &= b[e] == want;
    }
    if (!okb) tu_fail("routing/bias_update", "bias %g %g %g %g for loads %d %d %d %d", b[0], b[1], b[2], b[3],
                      routed[0], routed[1], routed[2], routed[3]);
    else tu_ok("routing/bias_update");
    moe_layer_free(L);
    /* many small updates balance the load */
    c.bias_update_rate = 0.01f;
    L = run(c, 40, 1, y, 4, NULL);
    float *x = malloc(sizeof(float) * 40 * 16);
    tu_rng r = { 4 };
    tu_fill(&r, x, 40 * 16, 1.0f);
    double mv0 = moe_layer_stats(L)->max_violation;
    for (int i = 0; i < 200; i++) { moe_layer_forward(L, y, x, 40, 1, &lerr); moe_layer_update_balance(L); }
    moe_layer_forward(L, y, x, 40, 1, &lerr);
    double mv1 = moe_layer_stats(L)->max_violation;
    if (!(mv1 < mv0 && mv1 <= 0.3)) tu_fail("routing/bias_balances", "max-violation %.2f -> %.2f", mv0, mv1);
    else { char m[120]; snprintf(m, sizeof m, "routing/bias_balances (max-violation %.2f -> %.2f)", mv0, mv1); tu_ok(m); }
    moe_layer_free(L);

    /* hash: fixed by the id, independent of x */
    c = base(16, 8, 8, 2); c.select = MOE_SELECT_HASH;
    int32_t ids[20];
    for (int t = 0; t < 20; t++) ids[t] = t % 5;
    L = run(c, 20, 1, y, 5, ids);
    int ex[40];
    moe_layer_routing(L, ex, NULL, NULL);
    int okh = 1;
    for (int t = 5; t < 20; t++) okh &= ex[2 * t] == ex[2 * (t % 5)] && ex[2 * t + 1] == (ex[2 * t] + 1) % 8;
    if (!okh) tu_fail("routing/hash_fixed", "same ids routed differently");
    else tu_ok("routing/hash_fixed");
    if (moe_layer_forward(L, y, y, 20, 1, &lerr) == MOE_OK) tu_fail("routing/hash_needs_ids", "forward without ids accepted");
    else tu_ok("routing/hash_needs_ids");
    moe_layer_free(L);

    /* group-limited: the chosen experts lie in at most topk_groups groups */
    c = base(16, 8, 16, 4); c.n_groups = 4; c.topk_groups = 2;
    L = run(c, 32, 1, y, 6, NULL);
    int eg[128], okg = 1;
    moe_layer_routing(L, eg, NULL, NULL);
    for (int t = 0; t < 32; t++) {
        int used[4] = {0}, n = 0;
        for (int j = 0; j < 4; j++) used[eg[t * 4 + j] / 4] = 1;
        for (int q = 0; q < 4; q++) n += used[q];
        okg &= n <= 2;
    }
    if (!okg) tu_fail("routing/group_limit", "a token used more than 2 groups");
    else tu_ok("routing/group_limit");
    moe_layer_free(L);

    /* top-p: selected mass reaches p unless capped; override of p and k */
    c = base(16, 8, 8, 4); c.select = MOE_SELECT_TOPP; c.top_p = 0.5f; c.max_top_k = 6;
    L = run(c, 32, 1, y, 7, NULL);
    double a1 = moe_layer_stats(L)->active_mean;
    moe_layer_set_top_p(L, 0.9f, &lerr);
    float *x2 = malloc(sizeof(float) * 32 * 16);
    tu_rng r2 = { 7 };
    tu_fill(&r2, x2, 32 * 16, 1.0f);
    moe_layer_forward(L, y, x2, 32, 1, &lerr);
    double a2 = moe_layer_stats(L)->active_mean;
    moe_layer_set_top_k(L, 6, &lerr);
    moe_layer_forward(L, y, x2, 32, 1, &lerr);
    double a3 = moe_layer_stats(L)->active_mean;
    if (!(a1 < a2 && a2 <= 4.0 && a3 >= a2 && moe_layer_set_top_k(L, 7, &lerr) != MOE_OK && moe_layer_set_top_p(L, 0.0f, &lerr) != MOE_OK))
        tu_fail("routing/top_p_overrides", "active experts %.2f (p 0.5), %.2f (p 0.9), %.2f (k 6)", a1, a2, a3);
    else { char m[160]; snprintf(m, sizeof m, "routing/top_p_overrides (active %.2f at p=0.5, %.2f at p=0.9, %.2f at k=6)", a1, a2, a3); tu_ok(m); }
    moe_layer_free(L);
    free(x2);

    /* ReLU: lambda rises while sparsity is below target */
    c = base(16, 8, 8, 2); c.gate = MOE_GATE_RELU; c.select = MOE_SELECT_ALL; c.relu_l1_coef = 0.01f;
    c.relu_target_sparsity = 0.9f;
    L = run(c, 32, 1, y, 8, NULL);
    float sp = moe_layer_stats(L)->sparsity;
    moe_layer_update_balance(L);
    if (!(sp < 0.9f && fabsf(moe_layer_stats(L)->l1_coef - 0.012f) < 1e-6f))
        tu_fail("routing/relu_lambda", "sparsity %.2f lambda %g", sp, moe_layer_stats(L)->l1_coef);
    else tu_ok("routing/relu_lambda");
    moe_layer_free(L);

    /* global statistics: f accumulates over forwards until reset */
    c = base(16, 8, 4, 1); c.global_stats = 1; c.aux_loss_coef = 1.0f;
    L = run(c, 16, 1, y, 9, NULL);
    float b1 = moe_layer_stats(L)->balance;
    moe_layer_forward(L, y, x, 16, 1, &lerr);   /* other tokens */
    float b2 = moe_layer_stats(L)->balance;
    moe_layer_reset_stats(L);
    moe_layer_forward(L, y, x, 16, 1, &lerr);
    float b3 = moe_layer_stats(L)->balance;
    if (b2 == b3 || b1 == b2) tu_fail("routing/global_stats", "balance %g %g %g", b1, b2, b3);
    else tu_ok("routing/global_stats");
    moe_layer_free(L);
    free(x);
}

static void expect_bad(const char *name, moe_layer_config c) {
    moe_layer *L;
    moe_error err;
    if (moe_layer_create(&L, &c, &err) == MOE_OK) { tu_fail(name, "accepted"); moe_layer_free(L); }
    else { char m[700]; snprintf(m, sizeof m, "%s (\"%s\")", name, err.msg); tu_ok(m); }
}

static void errors(void) {
    moe_layer_config c;
    c = base(8, 8, 4, 2); c.select = MOE_SELECT_EXPERT_CHOICE; c.ec_capacity = 0.0f;
    expect_bad("routing/error/ec_zero_capacity", c);
    c = base(8, 8, 6, 2); c.n_groups = 4; c.topk_groups = 2;
    expect_bad("routing/error/groups_not_dividing", c);
    c = base(8, 8, 4, 2); c.select = MOE_SELECT_TOPP; c.top_p = 0.0f;
    expect_bad("routing/error/top_p_zero", c);
    c.top_p = 1.5f;
    expect_bad("routing/error/top_p_above_one", c);
    c = base(8, 8, 4, 2); c.select = MOE_SELECT_HASH; c.aux_loss_coef = 0.01f;
    expect_bad("routing/error/hash_with_router_loss", c);
    c = base(8, 8, 4, 2); c.gate = MOE_GATE_RELU;
    expect_bad("routing/error/relu_without_select_all", c);
    c = base(8, 8, 4, 4); c.noisy_gate = 1; c.load_loss_coef = 0.1f;
    expect_bad("routing/error/load_loss_k_eq_E", c);
    c = base(8, 8, 4, 3); c.gshard_random_second = 1;
    expect_bad("routing/error/gshard_k3", c);
    c = base(8, 8, 4, 2); c.seq_aux_loss_coef = 0.1f;
    expect_bad("routing/error/seq_loss_without_len", c);
    c = base(8, 8, 4, 2); c.max_top_k = 5;
    expect_bad("routing/error/max_top_k_above_E", c);
    moe_error err;
    c = base(8, 8, 4, 2);
    if (moe_layer_config_router(&c, "nonsense", &err) == MOE_OK) tu_fail("routing/error/unknown_preset", "accepted");
    else tu_ok("routing/error/unknown_preset");
    for (const char *const *nm = moe_router_names(); *nm; nm++) {
        c = base(8, 8, 8, 2);
        char name[80];
        snprintf(name, sizeof name, "routing/preset/%s", *nm);
        moe_layer *L;
        if (moe_layer_config_router(&c, *nm, &err) != MOE_OK || moe_layer_create(&L, &c, &err) != MOE_OK)
            tu_fail(name, "%s", err.msg);
        else { tu_ok(name); moe_layer_free(L); }
    }
}

int main(void) {
    fd_all();
    properties();
    errors();
    return tu_exit_code();
}
