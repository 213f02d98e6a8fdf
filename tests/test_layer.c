/* test_layer.c: the MoE layer against its scalar reference (tests/layer_ref.h)
 * at 1, 2, 3 and 4 threads, finite-difference gradient checks of every
 * parameter and of the input, determinism, and the errors of bad input.
 * The PyTorch reference is tests/test_layer_torch.py. */
#include "layer_ref.h"
#include "testutil.h"

#include <string.h>

/* the message of the last failed layer or model call */
static moe_error lerr;

typedef struct cfgcase {
    const char *name;
    int d, F, E, k, T;
    moe_expert_type expert;
    float cf;
    moe_drop_policy drop;
    int renorm;
    float scale, aux, z;
    int biased; /* router pushed towards expert 0 */
} cfgcase;

static void make_cfg(moe_layer_config *c, const cfgcase *cc) {
    moe_layer_config_default(c, cc->d, cc->F, cc->E, cc->k);
    c->expert = cc->expert;
    c->capacity_factor = cc->cf;
    c->drop_policy = cc->drop;
    c->renormalize = cc->renorm;
    c->weight_scale = cc->scale;
    c->aux_loss_coef = cc->aux;
    c->z_loss_coef = cc->z;
    c->max_tokens = cc->T;
}

static void fill_case(moe_layer *L, const cfgcase *cc, float *x, uint64_t seed) {
    tu_rng r = { seed };
    moe_layer_init_params(L, seed * 7 + 1);
    moe_layer_weights w = moe_layer_params(L);
    tu_fill(&r, x, (size_t)cc->T * cc->d, 1.0f);
    if (cc->biased) {
        /* every token shares direction u; router row 0 points along it */
        for (int t = 0; t < cc->T; t++) for (int i = 0; i < cc->d; i++) x[t * cc->d + i] += (i % 2 ? 1.5f : -1.5f);
        for (int i = 0; i < cc->d; i++) w.router[i] = (i % 2 ? 1.0f : -1.0f);
    }
    /* larger router weights make the routing decisive */
    for (int i = 0; i < cc->E * cc->d; i++) w.router[i] *= 2.0f;
}

static double max_abs_d(const double *a, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fabs(a[i]) > m ? fabs(a[i]) : m;
    return m;
}

/* normalized error of fp32 a against double ref */
static double cmp(const char *name, const char *tensor, const float *a, const double *ref,
                  size_t n, double tol) {
    /* A tensor whose exact value is 0 (the router of renormalised top-1
       without auxiliary losses) holds fp32 rounding noise: floor the scale. */
    double scale = max_abs_d(ref, n), worst = 0;
    size_t wi = 0;
    if (scale < 1e-2) scale = 1e-2;
    for (size_t i = 0; i < n; i++) {
        double e = fabs(a[i] - ref[i]);
        if (!(e <= worst)) { worst = e; wi = i; }
    }
    double rel = worst / scale;
    if (!(rel <= tol)) {
        tu_fail(name, "%s[%zu] = %.8g, reference %.8g (normalized error %.3g > %.1g)",
                tensor, wi, a[wi], ref[wi], rel, tol);
    }
    return rel;
}

static const cfgcase cases[] = {
    /* name               d   F  E  k   T  expert              cf     drop              rn scale aux  z    biased */
    { "top1",            16, 24, 4, 1, 32, MOE_EXPERT_SWIGLU, -1.0f, MOE_DROP_POSITION, 1, 1.0f, 0.0f, 0.0f, 0 },
    /* the Switch form of --k 1: gate = the raw probability, so the router
       learns from the output alone (no auxiliary losses here) */
    { "top1_switch",     16, 24, 4, 1, 32, MOE_EXPERT_SWIGLU, -1.0f, MOE_DROP_POSITION, 0, 1.0f, 0.0f, 0.0f, 0 },
    { "top2_renorm",     16, 24, 6, 2, 32, MOE_EXPERT_SWIGLU, -1.0f, MOE_DROP_POSITION, 1, 1.0f, 0.1f, 0.05f, 0 },
    { "top2_raw",        16, 24, 6, 2, 32, MOE_EXPERT_SWIGLU, -1.0f, MOE_DROP_POSITION, 0, 1.0f, 0.1f, 0.05f, 0 },
    { "topE",            12, 20, 4, 4, 16, MOE_EXPERT_SWIGLU, -1.0f, MOE_DROP_POSITION, 1, 1.0f, 0.1f, 0.05f, 0 },
    { "cf0.5_position",  16, 24, 4, 2, 40, MOE_EXPERT_SWIGLU, 0.5f, MOE_DROP_POSITION, 1, 1.0f, 0.1f, 0.05f, 0 },
    { "cf0.5_score",     16, 24, 4, 2, 40, MOE_EXPERT_SWIGLU, 0.5f, MOE_DROP_SCORE,    0, 1.0f, 0.1f, 0.05f, 0 },
    { "cf1.25_top1",     16, 24, 4, 1, 40, MOE_EXPERT_SWIGLU, 1.25f, MOE_DROP_SCORE,   1, 1.0f, 0.1f, 0.05f, 0 },
    { "biased",          16, 24, 4, 2, 40, MOE_EXPERT_SWIGLU, 1.0f, MOE_DROP_POSITION, 1, 1.0f, 0.1f, 0.05f, 1 },
    { "all_dropped",     16, 24, 4, 2, 12, MOE_EXPERT_SWIGLU, 0.0f, MOE_DROP_POSITION, 1, 1.0f, 0.1f, 0.05f, 0 },
    { "gelu_scale",      13, 19, 5, 3, 21, MOE_EXPERT_GELU,   -1.0f, MOE_DROP_POSITION, 1, 2.5f, 0.1f, 0.05f, 0 },
    { "T1",              16, 24, 4, 2,  1, MOE_EXPERT_SWIGLU, -1.0f, MOE_DROP_POSITION, 1, 1.0f, 0.1f, 0.05f, 0 },
    { "E1",              16, 24, 1, 1, 16, MOE_EXPERT_SWIGLU, -1.0f, MOE_DROP_POSITION, 1, 1.0f, 0.0f, 0.0f, 0 },
    { "wide",            64, 96, 8, 2, 300, MOE_EXPERT_SWIGLU, 1.0f, MOE_DROP_SCORE,   1, 1.0f, 0.01f, 0.001f, 0 },
};
#define N_CASES (int)(sizeof cases / sizeof cases[0])

/* Optimized layer vs the scalar reference, at 1..4 threads. */
static void test_vs_ref(const cfgcase *cc) {
    char name[128];
    moe_layer_config c;
    make_cfg(&c, cc);
    moe_layer *L;
    moe_error err;
    snprintf(name, sizeof name, "layer/ref/%s", cc->name);
    if (moe_layer_create(&L, &c, &err) != MOE_OK) { tu_fail(name, "create: %s", err.msg); return; }
    size_t Td = (size_t)cc->T * cc->d, P = moe_layer_param_count(L);
    float *x = malloc(sizeof(float) * Td), *y = malloc(sizeof(float) * Td);
    float *dy = malloc(sizeof(float) * Td), *dx = malloc(sizeof(float) * Td);
    float *y1 = malloc(sizeof(float) * Td), *g1 = malloc(sizeof(float) * P);
    int *ex = malloc(sizeof(int) * cc->T * cc->k), *kept = malloc(sizeof(int) * cc->T * cc->k);
    float *wt = malloc(sizeof(float) * cc->T * cc->k);
    fill_case(L, cc, x, 1234);
    tu_rng r = { 99 };
    tu_fill(&r, dy, Td, 1.0f);
    ref_out ro;
    ref_out_alloc(&ro, &c, cc->T);
    moe_layer_weights w = moe_layer_params(L);
    ref_layer(&ro, &c, &w, x, dy, cc->T);
    int failed_before = tu_failed_;
    double worst = 0;
    for (int nt = 1; nt <= 4; nt++) {
        moe_layer_set_threads(L, nt);
        moe_layer_zero_grads(L);
        if (moe_layer_forward(L, y, x, cc->T, 1, &lerr) != MOE_OK) { tu_fail(name, "forward: %s", lerr.msg); break; }
        if (moe_layer_backward(L, dx, dy, &lerr) != MOE_OK) { tu_fail(name, "backward: %s", lerr.msg); break; }
        const moe_route_stats *st = moe_layer_stats(L);
        moe_layer_routing(L, ex, wt, kept);
        for (int i = 0; i < cc->T * cc->k; i++)
            if (ex[i] != ro.expert[i] || kept[i] != ro.kept[i]) {
                tu_fail(name, "slot %d: expert %d kept %d, reference expert %d kept %d",
                        i, ex[i], kept[i], ro.expert[i], ro.kept[i]);
                break;
            }
        for (int e = 0; e < cc->E; e++)
            if (st->tokens_per_expert[e] != ro.routed[e] || st->kept_per_expert[e] != ro.keptc[e])
                tu_fail(name, "expert %d: routed %d kept %d, reference %d %d", e,
                        st->tokens_per_expert[e], st->kept_per_expert[e], ro.routed[e], ro.keptc[e]);
        if (st->capacity != ro.capacity || st->dropped != ro.dropped)
            tu_fail(name, "capacity %d dropped %lld, reference %d %ld", st->capacity,
                    (long long)st->dropped, ro.capacity, ro.dropped);
        double lossc[3] = { st->aux_loss, st->z_loss, st->entropy }, lossr[3] = { ro.aux, ro.z, ro.entropy };
        for (int i = 0; i < 3; i++)
            if (fabs(lossc[i] - lossr[i]) > 1e-5 * (1 + fabs(lossr[i])))
                tu_fail(name, "loss %d (aux, z, entropy) = %.8g, reference %.8g", i, lossc[i], lossr[i]);
        moe_layer_weights gg = moe_layer_grads(L);
        size_t E = cc->E, d = cc->d, F = cc->F;
        double e1 = cmp(name, "weight", wt, ro.weight, (size_t)cc->T * cc->k, 1e-5);
        double e2 = cmp(name, "y", y, ro.y, Td, 1e-5);
        double e3 = cmp(name, "dx", dx, ro.dx, Td, 1e-5);
        double e4 = cmp(name, "d_router", gg.router, ro.dWr, E * d, 1e-5);
        double e5 = gg.gate ? cmp(name, "d_gate", gg.gate, ro.dWg, E * F * d, 1e-5) : 0;
        double e6 = cmp(name, "d_up", gg.up, ro.dWu, E * F * d, 1e-5);
        double e7 = cmp(name, "d_down", gg.down, ro.dWd, E * d * F, 1e-5);
        double es[] = { e1, e2, e3, e4, e5, e6, e7 };
        for (int i = 0; i < 7; i++) worst = es[i] > worst ? es[i] : worst;
        /* the result must not depend on the thread count */
        if (nt == 1) { memcpy(y1, y, sizeof(float) * Td); memcpy(g1, gg.router, sizeof(float) * P); }
        else if (memcmp(y1, y, sizeof(float) * Td) || memcmp(g1, gg.router, sizeof(float) * P))
            tu_fail(name, "threads %d differ bitwise from 1 thread", nt);
        if (tu_failed_ != failed_before) break;
    }
    if (cc->biased) {
        const moe_route_stats *st = moe_layer_stats(L);
        double share = (double)st->tokens_per_expert[0] / cc->T;
        if (share <= 0.8) tu_fail(name, "biased router: expert 0 got only %.0f%% of tokens", 100 * share);
    }
    if (tu_failed_ == failed_before) {
        char msg[200];
        snprintf(msg, sizeof msg, "%s (threads 1-4, worst normalized error %.2g)", name, worst);
        tu_ok(msg);
    }
    ref_out_free(&ro);
    free(x); free(y); free(dy); free(dx); free(y1); free(g1); free(ex); free(kept); free(wt);
    moe_layer_free(L);
}

/* L = sum(y * g) + aux + z, in double from the layer's fp32 outputs. */
static double objective(moe_layer *L, const float *x, const float *g, float *y, int T, int d,
                        int *ex, int *kept) {
    if (moe_layer_forward(L, y, x, T, 1, &lerr) != MOE_OK) return NAN;
    double s = 0;
    for (size_t i = 0; i < (size_t)T * d; i++) s += (double)y[i] * g[i];
    const moe_route_stats *st = moe_layer_stats(L);
    moe_layer_routing(L, ex, NULL, kept);
    return s + st->aux_loss + st->z_loss;
}

/* Central differences on every input and parameter entry. Coordinates whose
 * perturbation changes a routing decision sit on a kink and are skipped. */
static void test_fd(const cfgcase *cc_in) {
    cfgcase small = *cc_in;          /* few tokens keep the O(P^2) loop fast */
    if (small.T > 10) small.T = 10;
    const cfgcase *cc = &small;
    char name[128];
    snprintf(name, sizeof name, "layer/fd/%s", cc->name);
    moe_layer_config c;
    make_cfg(&c, cc);
    c.n_threads = 1;
    moe_layer *L;
    moe_error err;
    if (moe_layer_create(&L, &c, &err) != MOE_OK) { tu_fail(name, "create: %s", err.msg); return; }
    int T = cc->T, d = cc->d, Sk = T * cc->k;
    size_t Td = (size_t)T * d, P = moe_layer_param_count(L);
    float *x = malloc(sizeof(float) * Td), *y = malloc(sizeof(float) * Td);
    float *g = malloc(sizeof(float) * Td), *dx = malloc(sizeof(float) * Td);
    float *an = malloc(sizeof(float) * P);
    int *ex0 = malloc(sizeof(int) * Sk), *k0 = malloc(sizeof(int) * Sk);
    int *ex1 = malloc(sizeof(int) * Sk), *k1 = malloc(sizeof(int) * Sk);
    int failed_before = tu_failed_;
    fill_case(L, cc, x, 77);
    tu_rng r = { 5 };
    tu_fill(&r, g, Td, 1.0f);
    moe_layer_zero_grads(L);
    objective(L, x, g, y, T, d, ex0, k0);
    moe_layer_backward(L, dx, g, &lerr);
    memcpy(an, moe_layer_grads(L).router, sizeof(float) * P);
    float *params = moe_layer_params(L).router;
    const float eps = 1e-2f;
    int skipped = 0, checked = 0;
    double worst = 0, scale_p = 0, scale_x = 0;
    for (size_t i = 0; i < P; i++) scale_p = fabs(an[i]) > scale_p ? fabs(an[i]) : scale_p;
    for (size_t i = 0; i < Td; i++) scale_x = fabs(dx[i]) > scale_x ? fabs(dx[i]) : scale_x;
    for (size_t i = 0; i < P + Td; i++) {
        float *v = i < P ? &params[i] : &x[i - P];
        float keep = *v;
        *v = keep + eps;
        double lp = objective(L, x, g, y, T, d, ex1, k1);
        int same = !memcmp(ex0, ex1, sizeof(int) * Sk) && !memcmp(k0, k1, sizeof(int) * Sk);
        *v = keep - eps;
        double lm = objective(L, x, g, y, T, d, ex1, k1);
        same &= !memcmp(ex0, ex1, sizeof(int) * Sk) && !memcmp(k0, k1, sizeof(int) * Sk);
        *v = keep;
        if (!same) { skipped++; continue; }
        double fd = (lp - lm) / (2.0 * eps);
        double a = i < P ? an[i] : dx[i - P];
        double e = fabs(fd - a) / ((i < P ? scale_p : scale_x) + 1e-6);
        checked++;
        if (e > worst) worst = e;
        if (e > 2e-3) {
            tu_fail(name, "%s[%zu]: analytic %.7g, finite difference %.7g (normalized error %.3g)",
                    i < P ? "param" : "x", i < P ? i : i - P, a, fd, e);
            break;
        }
    }
    if (skipped > (int)(P + Td) / 10) tu_fail(name, "%d of %zu coordinates change routing under eps", skipped, P + Td);
    if (checked && tu_failed_ == failed_before) {
        char msg[300];
        snprintf(msg, sizeof msg, "%s (%d coordinates, %d on routing kinks skipped, worst %.2g)",
                 name, checked, skipped, worst);
        tu_ok(msg);
    }
    free(x); free(y); free(g); free(dx); free(an); free(ex0); free(k0); free(ex1); free(k1);
    moe_layer_free(L);
}

static void expect_create_error(const char *name, moe_layer_config c) {
    moe_layer *L = (moe_layer *)1;
    moe_error err;
    moe_status s = moe_layer_create(&L, &c, &err);
    if (s == MOE_OK || L != NULL || err.msg[0] == 0) { tu_fail(name, "accepted (status %d)", s); moe_layer_free(s == MOE_OK ? L : NULL); }
    else { char m[700]; snprintf(m, sizeof m, "%s (\"%s\")", name, err.msg); tu_ok(m); }
}

static void test_errors(void) {
    moe_layer_config c;
    moe_layer_config_default(&c, 8, 12, 4, 5);
    expect_create_error("layer/error/k_gt_E", c);
    moe_layer_config_default(&c, 8, 12, 0, 1);
    expect_create_error("layer/error/E0", c);
    moe_layer_config_default(&c, 8, 12, 4, 2);
    c.capacity_factor = -0.5f;
    expect_create_error("layer/error/negative_cf", c);
    c.capacity_factor = NAN;
    expect_create_error("layer/error/nan_cf", c);
    moe_layer_config_default(&c, 0, 12, 4, 2);
    expect_create_error("layer/error/d0", c);
    moe_layer_config_default(&c, 8, 12, 4, 2);
    c.expert = (moe_expert_type)7;
    expect_create_error("layer/error/expert_type", c);
    moe_layer_config_default(&c, 8, 12, 4, 2);
    c.max_tokens = 1 << 30;
    c.d_ff = 1 << 20;
    expect_create_error("layer/error/too_big", c);

    moe_layer_config_default(&c, 8, 12, 4, 2);
    c.max_tokens = 4;
    moe_layer *L;
    moe_error err;
    if (moe_layer_create(&L, &c, &err) != MOE_OK) { tu_fail("layer/error/forward", "create: %s", err.msg); return; }
    float x[5 * 8] = {0}, y[5 * 8], dx[5 * 8];
    if (moe_layer_backward(L, dx, y, &lerr) == MOE_OK) tu_fail("layer/error/backward_first", "accepted");
    else tu_ok("layer/error/backward_first");
    if (moe_layer_forward(L, y, x, 5, 0, &lerr) == MOE_OK || !lerr.msg[0]) tu_fail("layer/error/T_too_big", "accepted");
    else tu_ok("layer/error/T_too_big");
    if (moe_layer_forward(L, y, x, 0, 0, &lerr) == MOE_OK) tu_fail("layer/error/T0", "accepted");
    else tu_ok("layer/error/T0");
    x[9] = NAN;
    if (moe_layer_forward(L, y, x, 2, 0, &lerr) != MOE_ERR_NONFINITE || !lerr.msg[0]) tu_fail("layer/error/nan_input", "accepted");
    else tu_ok("layer/error/nan_input");
    x[9] = INFINITY;
    if (moe_layer_forward(L, y, x, 2, 0, &lerr) != MOE_ERR_NONFINITE) tu_fail("layer/error/inf_input", "accepted");
    else tu_ok("layer/error/inf_input");
    moe_layer_free(L);
}

/* E = 1, k = 1, renormalised: the layer is exactly a dense SwiGLU FFN. */
static void test_dense_equivalence(void) {
    moe_layer_config c;
    moe_layer_config_default(&c, 16, 24, 1, 1);
    c.max_tokens = 10;
    moe_layer *L;
    moe_error err;
    if (moe_layer_create(&L, &c, &err) != MOE_OK) { tu_fail("layer/E1_is_dense", "%s", err.msg); return; }
    moe_layer_init_params(L, 3);
    moe_layer_weights w = moe_layer_params(L);
    float x[160], y[160];
    tu_rng r = { 11 };
    tu_fill(&r, x, 160, 1.0f);
    moe_layer_forward(L, y, x, 10, 0, &lerr);
    double worst = 0;
    for (int t = 0; t < 10; t++)
        for (int q = 0; q < 16; q++) {
            double s = 0;
            for (int f = 0; f < 24; f++) {
                double gg = 0, uu = 0;
                for (int i = 0; i < 16; i++) { gg += w.gate[f * 16 + i] * x[t * 16 + i]; uu += w.up[f * 16 + i] * x[t * 16 + i]; }
                s += w.down[q * 24 + f] * (gg / (1 + exp(-gg)) * uu);
            }
            double e = fabs(s - y[t * 16 + q]);
            worst = e > worst ? e : worst;
        }
    if (worst > 1e-5) tu_fail("layer/E1_is_dense", "max |y - dense| = %g", worst);
    else tu_ok("layer/E1_is_dense");
    moe_layer_free(L);
}

int main(void) {
    for (int i = 0; i < N_CASES; i++) test_vs_ref(&cases[i]);
    for (int i = 0; i < N_CASES; i++)
        if (strcmp(cases[i].name, "wide")) test_fd(&cases[i]);
    test_dense_equivalence();
    test_errors();
    return tu_exit_code();
}
