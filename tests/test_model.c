/* test_model.c: the transformer language model (moe_model_*), the AdamW
 * optimizer and the learning-rate schedule, in C:
 *   - central finite differences of the whole objective (ce + router losses)
 *     against moe_model_backward for sampled entries of every tensor;
 *   - bitwise identical logits and gradients at 1, 2 and 3 threads;
 *   - the errors of bad input (forward, backward, configuration, a model too
 *     large for the machine) with their messages;
 *   - moe_model_count against the tensor table; moe_lr_schedule's shape;
 *   - AdamW: decay on decay tensors only, a non-finite gradient changes nothing;
 *   - moe_model_drop_grads: the next backward writes what zero + add gives.
 * Not for: agreement with an independent reference (test_model_torch.py). */
#include "moe.h"
#include "testutil.h"

#include <math.h>
#include <string.h>
#include <sys/resource.h>

/* the message of the last failed layer or model call */
static moe_error lerr;

/* ------------------------------------------------------------ helpers */

/* The tiny model of the finite-difference check: layer 0 MoE, layer 1
 * dense, grouped-query attention (H = 2 query heads on one kv head). */
static void tiny_config(moe_model_config *c) {
    moe_model_config_default(c);
    c->vocab_size = 23;
    c->d_model = 16;
    c->n_heads = 2;
    c->n_kv_heads = 1;
    c->n_layers = 2;
    c->ctx_len = 5;
    c->max_batch = 2;
    c->d_ff = 20;
    c->moe_every = 2;
    c->n_dense_first = 0;
    c->n_threads = 1;
    c->moe.n_experts = 4;
    c->moe.top_k = 2;
    c->moe.d_ff = 12;
    c->moe.renormalize = 1;
    c->moe.aux_loss_coef = 0.1f;  /* large enough to show in the gradients */
    c->moe.z_loss_coef = 0.01f;
}

static moe_model *create_or_fail(const char *name, const moe_model_config *c) {
    moe_model *m = NULL;
    moe_error err;
    moe_status st = moe_model_create(&m, c, &err);
    if (st != MOE_OK) {
        tu_fail(name, "moe_model_create: %s (%s)", moe_status_str(st), err.msg);
        return NULL;
    }
    return m;
}

static void fill_tokens(tu_rng *r, int32_t *tok, int32_t *tgt, int n, int V) {
    for (int i = 0; i < n; i++) {
        tok[i] = (int32_t)(tu_next(r) % (uint64_t)V);
        tgt[i] = (int32_t)(tu_next(r) % (uint64_t)V);
    }
    if (tgt) tgt[0] = -1; /* one ignored target */
}

/* The objective whose gradient backward computes: ce + router losses. */
static double objective(moe_model *m, const int32_t *tok, const int32_t *tgt, int B, int T) {
    float loss;
    if (moe_model_forward(m, tok, tgt, B, T, 1, &loss, &lerr) != MOE_OK) return NAN;
    moe_model_losses l = moe_model_get_losses(m);
    return (double)l.ce + (double)l.router;
}

/* The routing of every MoE layer of the last forward into ex (N * k per
 * MoE layer, layers in order). */
static void get_routing(moe_model *m, int *ex, int N) {
    const moe_model_config *c = moe_model_get_config(m);
    for (int l = 0; l < c->n_layers; l++) {
        moe_layer *L = moe_model_moe_layer(m, l);
        if (!L) continue;
        int S = moe_layer_slots(L);
        moe_layer_routing(L, ex, NULL, NULL);
        ex += (size_t)N * S;
    }
}

static int routing_size(moe_model *m, int N) {
    const moe_model_config *c = moe_model_get_config(m);
    int n = 0;
    for (int l = 0; l < c->n_layers; l++)
        if (moe_model_moe_layer(m, l)) n += N * moe_layer_slots(moe_model_moe_layer(m, l));
    return n > 0 ? n : 1;
}

/* ------------------------------------------------- finite differences */

/* Entries of one tensor checked: its largest |gradient| and FD_SAMPLES
 * random others. Step h = FD_REL * max(|p|, rms of the tensor), rounded down
 * to a power of two: relative to the parameter's own scale. The fourth-order
 * stencil
 *   f' = (8 (f(p+h) - f(p-h)) - (f(p+2h) - f(p-2h))) / (12 h) + O(h^4)
 * lets h be large enough for the rounding of the fp32 loss (~1e-7 relative,
 * which dominates: the error falls from 2e-2 at FD_REL 0.005 to 1e-3 at 0.1)
 * to stay small next to the difference. Error of an entry: |fd - g| / max|g|
 * over the tensor. A missing z-loss gradient shows as 5e-2. */
#define FD_SAMPLES 6
#ifndef FD_REL /* -DFD_REL=... to study the error against the step */
#define FD_REL 0.1
#endif
#define FD_TOL 1e-2

static void test_fd(void) {
    const char *name = "model/fd";
    moe_model_config c;
    tiny_config(&c);
    moe_model *m = create_or_fail(name, &c);
    if (!m) return;
    moe_model_init_params(m, 3);
    const int B = 2, T = 5, N = B * T;
    int32_t tok[10], tgt[10];
    tu_rng r = { 11 };
    fill_tokens(&r, tok, tgt, N, c.vocab_size);
    /* Matrices ~ N(0, 0.02) give gradients of a few 1e-3 that the fp32 loss
       resolves poorly; scale every matrix up (and keep norms near 1 but not
       equal) so that each path carries a visible gradient. */
    int nt = moe_model_n_tensors(m);
    for (int i = 0; i < nt; i++) {
        moe_tensor t;
        moe_model_tensor(m, i, &t, &lerr);
        for (int64_t j = 0; j < t.n; j++)
            t.data[j] = t.n_dims == 1 ? 1.0f + 0.3f * tu_uniform(&r) : 5.0f * t.data[j];
    }
    moe_model_zero_grads(m);
    double f0 = objective(m, tok, tgt, B, T);
    int nr = routing_size(m, N);
    int *ex0 = malloc(sizeof(int) * (size_t)nr), *ex1 = malloc(sizeof(int) * (size_t)nr);
    get_routing(m, ex0, N);
    if (!(f0 == f0) || moe_model_backward(m, &lerr) != MOE_OK) {
        tu_fail(name, "forward/backward of the tiny model failed: %s", lerr.msg);
        free(ex0); free(ex1); moe_model_free(m);
        return;
    }
    double worst_all = 0;
    char worst_name[64] = "";
    int checked_all = 0, skipped_all = 0;
    for (int i = 0; i < nt; i++) {
        moe_tensor t;
        moe_model_tensor(m, i, &t, &lerr);
        char tn[160];
        snprintf(tn, sizeof tn, "model/fd/%s", t.name);
        /* the gradient is read before any perturbation (forwards leave it) */
        float *g = malloc(sizeof(float) * (size_t)t.n);
        memcpy(g, t.grad, sizeof(float) * (size_t)t.n);
        double gmax = 0, rms = 0;
        int64_t imax = 0;
        for (int64_t j = 0; j < t.n; j++) {
            if (fabs(g[j]) > gmax) { gmax = fabs(g[j]); imax = j; }
            rms += (double)t.data[j] * t.data[j];
        }
        rms = sqrt(rms / (double)t.n);
        if (gmax == 0) {
            tu_fail(tn, "the gradient is zero everywhere: nothing reaches this tensor");
            free(g);
            continue;
        }
        int checked = 0, skipped = 0;
        double worst = 0;
        int64_t worst_j = 0;
        double worst_fd = 0;
        for (int s = 0; s <= FD_SAMPLES; s++) {
            int64_t j = s == 0 ? imax : (int64_t)(tu_next(&r) % (uint64_t)t.n);
            float keep = t.data[j];
            /* a power of two: p +- h and p +- 2h are (nearly always) exact */
            double h = exp2(floor(log2(FD_REL * fmax(fabs(keep), rms))));
            double f[4];
            const double off[4] = { 1, -1, 2, -2 };
            int same = 1;
            for (int q = 0; q < 4; q++) {
                t.data[j] = (float)(keep + off[q] * h);
                f[q] = objective(m, tok, tgt, B, T);
                get_routing(m, ex1, N);
                same &= !memcmp(ex0, ex1, sizeof(int) * (size_t)nr);
            }
            t.data[j] = keep;
            if (!(isfinite(f[0]) && isfinite(f[1]) && isfinite(f[2]) && isfinite(f[3]))) {
                worst = INFINITY;
                worst_j = j;
                worst_fd = NAN;
                break;
            }
            if (!same) { skipped++; continue; }
            double fd = (8.0 * (f[0] - f[1]) - (f[2] - f[3])) / (12.0 * h);
            double e = fabs(fd - g[j]) / gmax;
            checked++;
            if (e > worst) { worst = e; worst_j = j; worst_fd = fd; }
        }
        checked_all += checked;
        skipped_all += skipped;
        if (worst > worst_all) {
            worst_all = worst;
            snprintf(worst_name, sizeof worst_name, "%s", t.name);
        }
        if (worst > FD_TOL) {
            tu_fail(tn, "entry %lld: analytic %.7g, finite difference %.7g, normalized error %.3g > %g "
                    "(max|g| %.3g)", (long long)worst_j, (double)g[worst_j], worst_fd, worst, FD_TOL, gmax);
        } else if (checked == 0) {
            tu_fail(tn, "every sampled entry (%d) changes a routing decision", skipped);
        } else {
            char msg[300];
            snprintf(msg, sizeof msg, "%s max_err=%.1e (%d entries, %d on routing kinks skipped, max|g| %.2g)",
                     tn, worst, checked, skipped, gmax);
            tu_ok(msg);
        }
        free(g);
    }
    char msg[300];
    snprintf(msg, sizeof msg, "model/fd/all worst=%.2e at %s (%d entries, %d on routing kinks skipped)",
             worst_all, worst_name, checked_all, skipped_all);
    if (skipped_all > checked_all / 4) tu_fail("model/fd/all", "%d of %d entries skipped on routing kinks",
                                               skipped_all, checked_all + skipped_all);
    else tu_ok(msg);
    free(ex0);
    free(ex1);
    moe_model_free(m);
}

/* ------------------------------------------------------------ threads */

/* Logits and every gradient bitwise equal at 1, 2 and 3 threads, on a model
 * large enough for the GEMMs and attention to split their rows. */
static void test_threads(void) {
    const char *name = "model/threads";
    moe_model_config c;
    tiny_config(&c);
    c.vocab_size = 97;
    c.d_model = 64;
    c.n_heads = 4;
    c.n_kv_heads = 2;
    c.ctx_len = 16;
    c.max_batch = 3;
    c.d_ff = 96;
    c.moe.d_ff = 48;
    c.n_threads = 3; /* the most threads used below: scratch is sized at create */
    moe_model *m = create_or_fail(name, &c);
    if (!m) return;
    moe_model_init_params(m, 5);
    const int B = 3, T = 16, N = B * T;
    int32_t tok[48], tgt[48];
    tu_rng r = { 23 };
    fill_tokens(&r, tok, tgt, N, c.vocab_size);
    size_t ng = 0;
    int nt = moe_model_n_tensors(m);
    for (int i = 0; i < nt; i++) {
        moe_tensor t;
        moe_model_tensor(m, i, &t, &lerr);
        ng += (size_t)t.n;
    }
    float *logits[3] = { NULL, NULL, NULL }, *grads[3] = { NULL, NULL, NULL };
    float loss[3];
    moe_model_losses L[3];
    int ok = 1;
    for (int k = 0; k < 3; k++) {
        logits[k] = malloc(sizeof(float) * (size_t)N * c.vocab_size);
        grads[k] = malloc(sizeof(float) * ng);
        moe_model_set_threads(m, k + 1);
        moe_model_zero_grads(m);
        if (moe_model_forward(m, tok, tgt, B, T, 1, &loss[k], &lerr) != MOE_OK || (
                memcpy(logits[k], moe_model_logits(m), sizeof(float) * (size_t)N * c.vocab_size),
                L[k] = moe_model_get_losses(m), moe_model_backward(m, &lerr)) != MOE_OK) {
            tu_fail(name, "%d threads: %s", k + 1, lerr.msg);
            ok = 0;
            break;
        }
        size_t o = 0;
        for (int i = 0; i < nt; i++) {
            moe_tensor t;
            moe_model_tensor(m, i, &t, &lerr);
            memcpy(grads[k] + o, t.grad, sizeof(float) * (size_t)t.n);
            o += (size_t)t.n;
        }
    }
    for (int k = 1; k < 3 && ok; k++) {
        char nm[64];
        snprintf(nm, sizeof nm, "model/threads/%d_vs_1", k + 1);
        size_t bad = (size_t)-1;
        for (size_t i = 0; i < (size_t)N * c.vocab_size && bad == (size_t)-1; i++)
            if (memcmp(&logits[k][i], &logits[0][i], sizeof(float))) bad = i;
        if (bad != (size_t)-1) {
            tu_fail(nm, "logits[%zu]: %.9g at %d threads, %.9g at 1", bad, (double)logits[k][bad], k + 1,
                    (double)logits[0][bad]);
            continue;
        }
        if (memcmp(&loss[k], &loss[0], sizeof(float)) || memcmp(&L[k], &L[0], sizeof L[0])) {
            tu_fail(nm, "losses differ: ce %.9g aux %.9g z %.9g at %d threads, ce %.9g aux %.9g z %.9g at 1",
                    (double)L[k].ce, (double)L[k].aux, (double)L[k].z, k + 1, (double)L[0].ce,
                    (double)L[0].aux, (double)L[0].z);
            continue;
        }
        size_t o = 0;
        for (int i = 0; i < nt && bad == (size_t)-1; i++) {
            moe_tensor t;
            moe_model_tensor(m, i, &t, &lerr);
            for (int64_t j = 0; j < t.n; j++)
                if (memcmp(&grads[k][o + j], &grads[0][o + j], sizeof(float))) {
                    bad = o + (size_t)j;
                    tu_fail(nm, "gradient of %s[%lld]: %.9g at %d threads, %.9g at 1", t.name, (long long)j,
                            (double)grads[k][bad], k + 1, (double)grads[0][bad]);
                    break;
                }
            o += (size_t)t.n;
        }
        if (bad == (size_t)-1) {
            char msg[160];
            snprintf(msg, sizeof msg, "%s (logits, losses and %zu gradient values bitwise equal)", nm, ng);
            tu_ok(msg);
        }
    }
    for (int k = 0; k < 3; k++) {
        free(logits[k]);
        free(grads[k]);
    }
    moe_model_free(m);
}

/* ------------------------------------------------------------- errors */

/* st must be `want` and the model's message must contain `needle`. */
static void expect_status(const char *name, moe_status st, moe_status want, const char *msg,
                          const char *needle) {
    if (st != want)
        tu_fail(name, "status %s, expected %s (message \"%s\")", moe_status_str(st), moe_status_str(want), msg);
    else if (!msg || !strstr(msg, needle))
        tu_fail(name, "message \"%s\" does not mention \"%s\"", msg ? msg : "(null)", needle);
    else {
        char line[700];
        snprintf(line, sizeof line, "%s (%s)", name, msg);
        tu_ok(line);
    }
}

static void test_forward_errors(void) {
    moe_model_config c;
    tiny_config(&c);
    moe_model *m = create_or_fail("model/errors", &c);
    if (!m) return;
    moe_model_init_params(m, 1);
    int32_t tok[12], tgt[12];
    tu_rng r = { 3 };
    fill_tokens(&r, tok, tgt, 12, c.vocab_size);
    float loss = 0;

    /* backward before any forward with targets */
    expect_status("model/errors/backward_first", moe_model_backward(m, &lerr), MOE_ERR_ARG, lerr.msg,
                  "targets");
    int32_t keep = tok[3];
    tok[3] = c.vocab_size;
    expect_status("model/errors/token_ge_V", moe_model_forward(m, tok, tgt, 2, 5, 1, &loss, &lerr), MOE_ERR_ARG,
                  lerr.msg, "token 23");
    tok[3] = -1;
    expect_status("model/errors/token_negative", moe_model_forward(m, tok, tgt, 2, 5, 1, &loss, &lerr), MOE_ERR_ARG,
                  lerr.msg, "token -1");
    tok[3] = keep;
    keep = tgt[4];
    tgt[4] = c.vocab_size + 5;
    expect_status("model/errors/target_ge_V", moe_model_forward(m, tok, tgt, 2, 5, 1, &loss, &lerr), MOE_ERR_ARG,
                  lerr.msg, "target 28");
    tgt[4] = keep;
    expect_status("model/errors/B_gt_max_batch", moe_model_forward(m, tok, tgt, 3, 4, 1, &loss, &lerr),
                  MOE_ERR_SHAPE, lerr.msg, "B = 3");
    expect_status("model/errors/T_gt_ctx_len", moe_model_forward(m, tok, tgt, 1, 6, 1, &loss, &lerr), MOE_ERR_SHAPE,
                  lerr.msg, "T = 6");
    expect_status("model/errors/B_zero", moe_model_forward(m, tok, tgt, 0, 5, 1, &loss, &lerr), MOE_ERR_SHAPE,
                  lerr.msg, "B = 0");
    expect_status("model/errors/tokens_null", moe_model_forward(m, NULL, tgt, 1, 5, 1, &loss, &lerr), MOE_ERR_ARG,
                  lerr.msg, "tokens");

    /* a forward without targets has no loss to differentiate */
    moe_status st = moe_model_forward(m, tok, NULL, 2, 5, 0, &loss, &lerr);
    if (st != MOE_OK || loss != 0.0f) tu_fail("model/errors/no_targets", "forward: %s, loss %g", lerr.msg, (double)loss);
    expect_status("model/errors/backward_without_targets", moe_model_backward(m, &lerr), MOE_ERR_ARG,
                  lerr.msg, "targets");
    /* after the failures, a good pass works and a second backward is refused */
    st = moe_model_forward(m, tok, tgt, 2, 5, 1, &loss, &lerr);
    moe_status st2 = st == MOE_OK ? moe_model_backward(m, &lerr) : st;
    if (st != MOE_OK || st2 != MOE_OK || !(loss > 0) || lerr.msg[0])
        tu_fail("model/errors/recover", "forward %s, backward %s, loss %g, message \"%s\"", moe_status_str(st),
                moe_status_str(st2), (double)loss, lerr.msg);
    else
        tu_ok("model/errors/recover");
    expect_status("model/errors/backward_twice", moe_model_backward(m, &lerr), MOE_ERR_ARG, lerr.msg,
                  "backward");
    /* every target ignored: ce 0 over 0 targets, and zero ce gradients */
    int32_t none[10];
    for (int i = 0; i < 10; i++) none[i] = -1;
    st = moe_model_forward(m, tok, none, 2, 5, 1, &loss, &lerr);
    moe_model_losses L = moe_model_get_losses(m);
    if (st != MOE_OK || loss != 0.0f || L.n_targets != 0 || !(L.ce == 0.0f))
        tu_fail("model/errors/all_ignored", "status %s, loss %g, n_targets %d", moe_status_str(st), (double)loss,
                L.n_targets);
    else
        tu_ok("model/errors/all_ignored");
    moe_model_free(m);
}

static void expect_check(const char *name, const moe_model_config *c, const char *needle) {
    moe_error err;
    err.msg[0] = 0;
    moe_status st = moe_model_config_check(c, &err);
    expect_status(name, st, MOE_ERR_ARG, err.msg, needle);
    /* create refuses it as well, leaving *out NULL */
    moe_model *m = (moe_model *)&err;
    st = moe_model_create(&m, c, &err);
    if (st == MOE_OK || m != NULL) {
        tu_fail(name, "moe_model_create accepted what the check rejects");
        if (st == MOE_OK) moe_model_free(m);
    }
}

static void test_config_check(void) {
    moe_model_config c0, c;
    tiny_config(&c0);
    moe_error err;
    moe_status st = moe_model_config_check(&c0, &err);
    if (st != MOE_OK) tu_fail("model/config/tiny_ok", "%s", err.msg);
    else tu_ok("model/config/tiny_ok");
    moe_model_config_default(&c);
    st = moe_model_config_check(&c, &err);
    if (st != MOE_OK) tu_fail("model/config/default_ok", "%s", err.msg);
    else tu_ok("model/config/default_ok");

    c = c0; c.n_heads = 4; c.n_kv_heads = 3;
    expect_check("model/config/heads_not_multiple", &c, "n_kv_heads");
    c = c0; c.head_dim = 7;
    expect_check("model/config/odd_head_dim", &c, "head_dim");
    c = c0; c.d_model = 18; c.n_heads = 4; c.n_kv_heads = 2;  /* hd = 18/4 not whole */
    expect_check("model/config/d_not_multiple_of_heads", &c, "n_heads");
    c = c0; c.d_model = 6; c.n_heads = 2; c.n_kv_heads = 1;   /* hd = 3, odd */
    expect_check("model/config/odd_derived_head_dim", &c, "head_dim");
    c = c0; c.vocab_size = 1;
    expect_check("model/config/vocab_size", &c, "vocab_size");
    c = c0; c.n_layers = 0;
    expect_check("model/config/n_layers", &c, "n_layers");
    c = c0; c.n_kv_heads = 0;
    expect_check("model/config/n_kv_heads_zero", &c, "n_kv_heads");
    c = c0; c.ctx_len = 0;
    expect_check("model/config/ctx_len", &c, "ctx_len");
    c = c0; c.max_batch = 0;
    expect_check("model/config/max_batch", &c, "max_batch");
    c = c0; c.rope_theta = 0.0f;
    expect_check("model/config/rope_theta", &c, "rope_theta");
    c = c0; c.norm_eps = NAN;
    expect_check("model/config/norm_eps", &c, "norm_eps");
    c = c0; c.d_ff = 0;                                       /* layer 1 is dense */
    expect_check("model/config/d_ff_dense", &c, "d_ff");
    c = c0; c.moe.top_k = 5;                                  /* k > E */
    expect_check("model/config/moe_top_k", &c, "top_k");
    c = c0; c.moe_every = -1;
    expect_check("model/config/moe_every", &c, "moe_every");
    /* boundary: no dense layer, so d_ff is not used and may be 0 */
    c = c0; c.moe_every = 1; c.d_ff = 0;
    st = moe_model_config_check(&c, &err);
    if (st != MOE_OK) tu_fail("model/config/all_moe_d_ff_0", "rejected: %s", err.msg);
    else tu_ok("model/config/all_moe_d_ff_0");
    /* boundary: a dense model does not check its (unused) MoE settings */
    c = c0; c.moe_every = 0; c.moe.top_k = 99;
    st = moe_model_config_check(&c, &err);
    if (st != MOE_OK) tu_fail("model/config/dense_ignores_moe", "rejected: %s", err.msg);
    else tu_ok("model/config/dense_ignores_moe");
}

/* An absurd configuration fails up front with MOE_ERR_NOMEM and a size in
 * GiB, before allocating anything (the peak resident size stays put). */
static void test_too_big(void) {
    const char *name = "model/create_too_big";
    moe_model_config c;
    moe_model_config_default(&c);
    c.d_model = 65536;
    c.n_layers = 1024;
    c.n_heads = 64;
    c.n_kv_heads = 64;
    c.moe.d_ff = 65536;
    struct rusage ru0, ru1;
    getrusage(RUSAGE_SELF, &ru0);
    moe_model *m = (moe_model *)&c;
    moe_error err;
    err.msg[0] = 0;
    moe_status st = moe_model_create(&m, &c, &err);
    getrusage(RUSAGE_SELF, &ru1);
    long grew_kib = ru1.ru_maxrss - ru0.ru_maxrss;
    if (st != MOE_ERR_NOMEM)
        tu_fail(name, "status %s, expected %s (%s)", moe_status_str(st), moe_status_str(MOE_ERR_NOMEM), err.msg);
    else if (m != NULL)
        tu_fail(name, "*out is not NULL after a failure");
    else if (!strstr(err.msg, "GiB"))
        tu_fail(name, "message \"%s\" does not give the size in GiB", err.msg);
    else if (grew_kib > 64 * 1024)
        tu_fail(name, "the peak resident size grew by %ld KiB: it allocated before refusing", grew_kib);
    else {
        char line[700];
        snprintf(line, sizeof line, "%s (%s)", name, err.msg);
        tu_ok(line);
    }
    if (st == MOE_OK) moe_model_free(m);
    double gib = (double)moe_model_memory_bytes(&c) / 1073741824.0;
    if (!(gib > 1e5)) tu_fail("model/memory_bytes_huge", "moe_model_memory_bytes says %.3g GiB", gib);
    else tu_ok("model/memory_bytes_huge");
}

/* -------------------------------------------------------------- counts */

static void check_counts(const char *name, const moe_model_config *c, int expect_active_lt) {
    moe_model *m = create_or_fail(name, c);
    if (!m) return;
    moe_model_counts k;
    moe_model_count(c, &k);
    int64_t sum = 0, experts = 0;
    for (int i = 0; i < moe_model_n_tensors(m); i++) {
        moe_tensor t;
        moe_model_tensor(m, i, &t, &lerr);
        sum += t.n;
        if (strstr(t.name, "_exps.")) experts += t.n;
        if (t.n != t.shape[0] * t.shape[1] * t.shape[2])
            tu_fail(name, "%s: n %lld is not the product of its shape", t.name, (long long)t.n);
    }
    if (k.params != sum)
        tu_fail(name, "params %lld, the tensor table sums to %lld", (long long)k.params, (long long)sum);
    else if (k.expert_params != experts)
        tu_fail(name, "expert_params %lld, the *_exps tensors sum to %lld", (long long)k.expert_params,
                (long long)experts);
    else if (expect_active_lt ? !(k.active_params < k.params)
                              : k.active_params != k.params - (c->tie_embeddings ? 0 : (int64_t)(c->vocab_size - 1) * c->d_model))
        tu_fail(name, "active_params %lld, params %lld: expected %s", (long long)k.active_params,
                (long long)k.params, expect_active_lt ? "fewer" : "equal, less the other embedding rows when untied");
    else if (!(k.fwd_flops > 0) || k.train_flops != 3.0 * k.fwd_flops)
        tu_fail(name, "flops: forward %g, train %g (expected 3x)", k.fwd_flops, k.train_flops);
    else {
        char line[200];
        snprintf(line, sizeof line, "%s (params %lld, active %lld, experts %lld)", name, (long long)k.params,
                 (long long)k.active_params, (long long)k.expert_params);
        tu_ok(line);
    }
    moe_model_free(m);
}

static void test_counts(void) {
    moe_model_config c;
    tiny_config(&c);
    check_counts("model/count/moe_dense", &c, 1);
    c.tie_embeddings = 1;
    check_counts("model/count/tied", &c, 1);
    tiny_config(&c);
    c.moe.top_k = c.moe.n_experts;   /* every expert active */
    check_counts("model/count/k_eq_E", &c, 0);
    tiny_config(&c);
    c.moe_every = 0;
    check_counts("model/count/dense", &c, 0);
    tiny_config(&c);
    c.moe_every = 1;
    c.head_dim = 6;                  /* H * hd != d */
    check_counts("model/count/head_dim", &c, 1);
    /* active = params - (1 - k/E) * expert params - the other embedding
       rows (untied), for plain top-k: the rule of src/model/active.h */
    tiny_config(&c);
    moe_model_counts k;
    moe_model_count(&c, &k);
    double want = (double)k.params - (1.0 - (double)c.moe.top_k / c.moe.n_experts) * (double)k.expert_params -
                  (c.tie_embeddings ? 0.0 : (double)(c.vocab_size - 1) * c.d_model);
    if (fabs((double)k.active_params - want) > 1.0)
        tu_fail("model/count/active_share", "active_params %lld, expected %.0f", (long long)k.active_params, want);
    else
        tu_ok("model/count/active_share");
}

/* ------------------------------------------------------------ schedule */

static void test_schedule(void) {
    const char *name = "model/lr_schedule";
    const int64_t total = 100, warmup = 10;
    const float lr = 1e-3f, mn = 1e-4f;
    char why[200] = "";
    float prev = 0;
    for (int64_t s = 0; s < total && !why[0]; s++) {
        float v = moe_lr_schedule(s, total, warmup, lr, mn);
        if (s < warmup) {
            float want = lr * (float)(s + 1) / (float)warmup;   /* linear, reaching lr at warmup - 1 */
            if (fabsf(v - want) > 1e-6f * lr) snprintf(why, sizeof why, "warmup step %lld: %g, expected %g", (long long)s, (double)v, (double)want);
        } else {
            double p = (double)(s - warmup) / (double)(total - warmup - 1);
            double want = mn + 0.5 * (lr - mn) * (1 + cos(3.14159265358979323846 * p));
            if (fabs(v - want) > 1e-6 * lr) snprintf(why, sizeof why, "step %lld: %g, expected %g", (long long)s, (double)v, want);
            if (s > warmup && v > prev) snprintf(why, sizeof why, "step %lld: %g rises after %g", (long long)s, (double)v, (double)prev);
        }
        if (!(v >= mn * 0.999f && v <= lr * 1.001f) && !why[0])
            snprintf(why, sizeof why, "step %lld: %g outside [min_lr, lr]", (long long)s, (double)v);
        prev = v;
    }
    float first = moe_lr_schedule(0, total, warmup, lr, mn), top = moe_lr_schedule(warmup, total, warmup, lr, mn);
    float last = moe_lr_schedule(total - 1, total, warmup, lr, mn);
    float after = moe_lr_schedule(total + 5, total, warmup, lr, mn);
    float nowarm = moe_lr_schedule(0, total, 0, lr, mn);
    if (!why[0] && fabsf(first - lr / warmup) > 1e-9f) snprintf(why, sizeof why, "step 0: %g, expected lr/warmup", (double)first);
    if (!why[0] && top != lr) snprintf(why, sizeof why, "first step after warmup: %g, expected lr", (double)top);
    if (!why[0] && fabsf(last - mn) > 1e-7f * lr) snprintf(why, sizeof why, "last step: %g, expected min_lr %g", (double)last, (double)mn);
    if (!why[0] && fabsf(after - mn) > 1e-7f * lr) snprintf(why, sizeof why, "past the end: %g, expected min_lr", (double)after);
    if (!why[0] && nowarm != lr) snprintf(why, sizeof why, "no warmup, step 0: %g, expected lr", (double)nowarm);
    if (why[0]) tu_fail(name, "%s", why);
    else tu_ok(name);
}

/* -------------------------------------------------------------- AdamW */

/* Snapshot of every parameter value (n floats). */
static float *snapshot(moe_model *m, size_t *n_out, int grads) {
    size_t n = 0;
    for (int i = 0; i < moe_model_n_tensors(m); i++) {
        moe_tensor t;
        moe_model_tensor(m, i, &t, &lerr);
        n += (size_t)t.n;
    }
    float *s = malloc(sizeof(float) * (n ? n : 1)), *p = s;
    for (int i = 0; i < moe_model_n_tensors(m); i++) {
        moe_tensor t;
        moe_model_tensor(m, i, &t, &lerr);
        memcpy(p, grads ? t.grad : t.data, sizeof(float) * (size_t)t.n);
        p += t.n;
    }
    *n_out = n;
    return s;
}

/* AdamW over m with config oc, or NULL after reporting the failure and
 * freeing m. */
static moe_adamw *adamw_or_fail(const char *name, moe_model *m, const moe_adamw_config *oc) {
    moe_adamw *o = NULL;
    moe_error err;
    if (moe_adamw_create(&o, m, oc, &err) != MOE_OK) {
        tu_fail(name, "moe_adamw_create: %s", err.msg);
        moe_model_free(m);
        return NULL;
    }
    return o;
}

static void test_adamw(void) {
    const char *name = "model/adamw";
    moe_model_config c;
    tiny_config(&c);
    moe_model *m = create_or_fail(name, &c);
    if (!m) return;
    moe_model_init_params(m, 9);
    moe_adamw_config oc;
    moe_adamw_config_default(&oc);
    moe_adamw *o = adamw_or_fail(name, m, &oc);
    if (!o) return;
    moe_error err;
    /* zero gradients: decay tensors shrink by exactly (1 - lr wd), the
       others (norms) do not move; m / (sqrt(v) + eps) is 0 */
    moe_model_zero_grads(m);
    size_t n;
    float *p0 = snapshot(m, &n, 0);
    const float lr = 0.01f;
    float gn = -1;
    moe_status st = moe_adamw_step(o, lr, &gn, &err);
    {
        char why[300] = "";
        size_t off = 0;
        for (int i = 0; i < moe_model_n_tensors(m) && !why[0]; i++) {
            moe_tensor t;
            moe_model_tensor(m, i, &t, &lerr);
            float f = t.decay ? 1.0f - lr * oc.weight_decay : 1.0f;
            for (int64_t j = 0; j < t.n; j++) {
                float want = p0[off + j] * f;
                if (fabsf(t.data[j] - want) > 1e-7f * fabsf(want) + 1e-12f) {
                    snprintf(why, sizeof why, "%s[%lld]: %.9g, expected %.9g (decay %d)", t.name, (long long)j,
                             (double)t.data[j], (double)want, t.decay);
                    break;
                }
            }
            if (!t.decay && !strstr(t.name, "norm")) snprintf(why, sizeof why, "%s has decay 0", t.name);
            if (t.decay && t.n_dims < 2) snprintf(why, sizeof why, "%s (%d-D) has decay 1", t.name, t.n_dims);
            off += (size_t)t.n;
        }
        if (st != MOE_OK) tu_fail("model/adamw/decay_only", "step: %s", err.msg);
        else if (gn != 0.0f) tu_fail("model/adamw/decay_only", "grad norm %g of zero gradients", (double)gn);
        else if (why[0]) tu_fail("model/adamw/decay_only", "%s", why);
        else tu_ok("model/adamw/decay_only");
    }
    free(p0);

    /* a non-finite gradient: MOE_ERR_NONFINITE, parameters, moments and the
       step count unchanged */
    int32_t tok[10], tgt[10];
    tu_rng r = { 31 };
    fill_tokens(&r, tok, tgt, 10, c.vocab_size);
    const float bad_vals[2] = { NAN, INFINITY };
    const char *bad_names[2] = { "model/adamw/nan_grad", "model/adamw/inf_grad" };
    for (int b = 0; b < 2; b++) {
        moe_model_zero_grads(m);
        float loss;
        if (moe_model_forward(m, tok, tgt, 2, 5, 1, &loss, &lerr) != MOE_OK || moe_model_backward(m, &lerr) != MOE_OK) {
            tu_fail(bad_names[b], "forward/backward: %s", lerr.msg);
            continue;
        }
        int ti = moe_model_find_tensor(m, "blk.1.ffn_up.weight");
        moe_tensor t;
        if (ti < 0 || moe_model_tensor(m, ti, &t, &lerr) != MOE_OK) {
            tu_fail(bad_names[b], "no tensor blk.1.ffn_up.weight");
            continue;
        }
        t.grad[7] = bad_vals[b];
        size_t np;
        float *before = snapshot(m, &np, 0);
        float *m1 = malloc(sizeof(float) * (size_t)t.n), *v1 = malloc(sizeof(float) * (size_t)t.n);
        memcpy(m1, moe_adamw_moment(o, ti, 0), sizeof(float) * (size_t)t.n);
        memcpy(v1, moe_adamw_moment(o, ti, 1), sizeof(float) * (size_t)t.n);
        int64_t steps = moe_adamw_steps(o);
        err.msg[0] = 0;
        st = moe_adamw_step(o, 1e-3f, &gn, &err);
        float *after = snapshot(m, &np, 0);
        int same = !memcmp(before, after, sizeof(float) * np);
        int same_m = !memcmp(m1, moe_adamw_moment(o, ti, 0), sizeof(float) * (size_t)t.n) &&
                     !memcmp(v1, moe_adamw_moment(o, ti, 1), sizeof(float) * (size_t)t.n);
        if (st != MOE_ERR_NONFINITE)
            tu_fail(bad_names[b], "status %s, expected %s", moe_status_str(st), moe_status_str(MOE_ERR_NONFINITE));
        else if (!err.msg[0])
            tu_fail(bad_names[b], "no message");
        else if (!same || !same_m || moe_adamw_steps(o) != steps)
            tu_fail(bad_names[b], "the step changed %s%s%s", same ? "" : "parameters ", same_m ? "" : "moments ",
                    moe_adamw_steps(o) != steps ? "the step count" : "");
        else {
            char line[700];
            snprintf(line, sizeof line, "%s (%s)", bad_names[b], err.msg);
            tu_ok(line);
        }
        free(before); free(after); free(m1); free(v1);
    }
    /* the same gradients made finite again: the step goes through */
    {
        int ti = moe_model_find_tensor(m, "blk.1.ffn_up.weight");
        moe_tensor t;
        moe_model_tensor(m, ti, &t, &lerr);
        t.grad[7] = 0.0f;
        int64_t steps = moe_adamw_steps(o);
        st = moe_adamw_step(o, 1e-3f, &gn, &err);
        if (st != MOE_OK || moe_adamw_steps(o) != steps + 1 || !(gn > 0))
            tu_fail("model/adamw/finite_again", "status %s, steps %lld -> %lld, norm %g (%s)", moe_status_str(st),
                    (long long)steps, (long long)moe_adamw_steps(o), (double)gn, err.msg);
        else
            tu_ok("model/adamw/finite_again");
    }
    moe_adamw_free(o);
    moe_model_free(m);
}


/* ------------------------------------------------------ dropped gradients */

/* Index of the first gradient that differs from ref (-0 equals +0: a write
 * of x and an addition of x to a cleared 0 differ only there), or -1. */
static long grads_differ(moe_model *m, const float *ref) {
    size_t o = 0;
    for (int i = 0; i < moe_model_n_tensors(m); i++) {
        moe_tensor t;
        moe_model_tensor(m, i, &t, &lerr);
        for (int64_t j = 0; j < t.n; j++, o++)
            if (!(t.grad[j] == ref[o])) return (long)o;
    }
    return -1;
}

/* moe_model_drop_grads: the next backward writes every gradient (whatever
 * the memory held: NaN here) and later ones add, giving what zero_grads and
 * adding give; AdamW refuses the dropped gradients and changes nothing.
 * Configurations: 8 experts top-1 on 6 tokens (experts without rows), a
 * shared gated expert and a noisy gate (their gradient paths), tied and
 * untied embeddings, 1 and 2 threads. */
static void test_drop_grads(void) {
    for (int v = 0; v < 4; v++) {
        char name[64];
        snprintf(name, sizeof name, "model/drop_grads/%s_%s_%dt", v & 1 ? "tied" : "untied",
                 v & 2 ? "shared_noisy" : "plain", 1 + (v >> 1));
        moe_model_config c;
        tiny_config(&c);
        c.tie_embeddings = v & 1;
        c.n_threads = 1 + (v >> 1);
        c.ctx_len = 3;
        c.moe.n_experts = 8;
        c.moe.top_k = 1;
        if (v & 2) {
            c.moe.shared_d_ff = 8;
            c.moe.shared_gate = 1;
            c.moe.noisy_gate = 1;
        }
        moe_model *m = create_or_fail(name, &c);
        if (!m) continue;
        moe_model_init_params(m, 11);
        moe_adamw_config oc;
        moe_adamw_config_default(&oc);
        moe_adamw *o = adamw_or_fail(name, m, &oc);
        if (!o) continue;
        moe_error err;
        const int B = 2, T = 3, N = B * T;
        int32_t tok[2][6], tgt[2][6];
        tu_rng r = { 31 + (uint64_t)v };
        fill_tokens(&r, tok[0], tgt[0], N, c.vocab_size);
        fill_tokens(&r, tok[1], tgt[1], N, c.vocab_size);
        float loss;
        size_t n = 0;
        float *ref[2] = { NULL, NULL };
        int ok = 1;
        /* reference: cleared, then one and two micro-batches added; the
           noisy gate's draws restart from the same state for both runs */
        moe_layer *ml = moe_model_moe_layer(m, 0);
        const uint64_t rng0 = moe_layer_rng_state(ml);
        moe_model_zero_grads(m);
        for (int a = 0; a < 2 && ok; a++) {
            ok = moe_model_forward(m, tok[a], tgt[a], B, T, 1, &loss, &lerr) == MOE_OK &&
                 moe_model_backward(m, &lerr) == MOE_OK;
            if (ok) ref[a] = snapshot(m, &n, 1);
        }
        int empty = 0; /* experts without rows in the first micro-batch */
        if (ok) {
            moe_layer_set_rng_state(ml, rng0);
            moe_model_forward(m, tok[0], tgt[0], B, T, 1, &loss, &lerr);
            const moe_route_stats *st = moe_layer_stats(moe_model_moe_layer(m, 0));
            for (int e = 0; e < c.moe.n_experts; e++) empty += st->kept_per_expert[e] == 0;
            moe_model_backward(m, &lerr);
        }
        moe_layer_set_rng_state(ml, rng0);
        /* poison every gradient, drop them: AdamW must refuse */
        for (int i = 0; ok && i < moe_model_n_tensors(m); i++) {
            moe_tensor t;
            moe_model_tensor(m, i, &t, &lerr);
            for (int64_t j = 0; j < t.n; j++) t.grad[j] = NAN;
        }
        moe_model_drop_grads(m);
        size_t np;
        float *before = snapshot(m, &np, 0), *after = NULL;
        moe_status st = moe_adamw_step(o, 1e-3f, NULL, &err);
        after = snapshot(m, &np, 0);
        if (!ok) tu_fail(name, "reference pass: %s", lerr.msg);
        else if (moe_model_grads_ready(m))
            tu_fail(name, "moe_model_grads_ready is 1 right after moe_model_drop_grads");
        else if (st != MOE_ERR_ARG || !strstr(err.msg, "dropped"))
            tu_fail(name, "AdamW on dropped gradients: %s (%s), expected MOE_ERR_ARG naming them",
                    moe_status_str(st), st == MOE_OK ? "" : err.msg);
        else if (memcmp(before, after, sizeof(float) * np))
            tu_fail(name, "AdamW refused the dropped gradients but changed the parameters");
        else if (empty == 0)
            tu_fail(name, "every expert got rows: the test needs an expert without any");
        else {
            for (int a = 0; a < 2 && ok; a++) {
                if (moe_model_forward(m, tok[a], tgt[a], B, T, 1, &loss, &lerr) != MOE_OK ||
                    moe_model_backward(m, &lerr) != MOE_OK) {
                    tu_fail(name, "micro-batch %d: %s", a, lerr.msg);
                    ok = 0;
                    break;
                }
                long bad = grads_differ(m, ref[a]);
                if (bad >= 0) {
                    tu_fail(name, "after %d micro-batch(es): gradient %ld differs from zero_grads + add",
                            a + 1, bad);
                    ok = 0;
                } else if (!moe_model_grads_ready(m)) {
                    tu_fail(name, "moe_model_grads_ready is 0 after a backward");
                    ok = 0;
                }
            }
            if (ok) tu_okf("%s (%d of %d experts without rows; 2 micro-batches)", name, empty, c.moe.n_experts);
        }
        free(before);
        free(after);
        free(ref[0]);
        free(ref[1]);
        moe_adamw_free(o);
        moe_model_free(m);
    }
}

int main(void) {
    test_fd();
    test_threads();
    test_forward_errors();
    test_config_check();
    test_too_big();
    test_counts();
    test_schedule();
    test_adamw();
    test_drop_grads();
    return tu_exit_code();
}
