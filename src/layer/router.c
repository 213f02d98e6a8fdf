/* router.c: the router of the MoE layer, forward and backward (fp32 always):
 * router input (Switch jitter), logits, the noisy gate, the gate (softmax,
 * sigmoid, ReLU), then the selection (select.c) and the losses and
 * statistics (router_loss.c). docs/ROUTING.md has every method's formula.
 *
 *   xr = x * u (jitter, training)      z = xr Wr^T
 *   noisy: sigma = softplus(xr Wn^T),  H = z + n sigma (training), else H = z
 *   softmax p = softmax(H) | sigmoid q = sigmoid(H) | relu r = relu(H)
 *   pn = normalized scores: p, q / sum q, r / sum r
 *
 * Backward (dw[t,j] = dL/dw_j, plus the loss terms):
 *   weights -> d(scores) (router_token_grad), pn -> scores:
 *     dq_e += (dpn_e - <dpn, pn>) / sum q
 *   gate:   softmax dH = p (dp - <p, dp>); sigmoid dH = dq q (1 - q);
 *           relu dH = dr [H > 0];  z-loss dH += zc 2 lse / T softmax(H)
 *   noisy:  dz = dH (+ load-loss terms), dsigma = dH n (+ ...),
 *           dzn = dsigma sigmoid(zn)
 *   dWr += dz^T xr, dWn += dzn^T xr, dxr = dz Wr + dzn Wn, dx += dxr * u.
 * Not here: capacity and dropping (plan.c), the experts (experts.c).
 */
#include "layer/layer.h"
#include "kernels/gemm.h"

#include <math.h>
#include <string.h>

static float softplusf(float a) { return a > 20.0f ? a : log1pf(expf(a)); }

void router_forward(moe_layer *L, const float *x, int T) {
    const moe_layer_config *c = &L->cfg;
    const int E = c->n_experts, d = c->d_model, nt = layer_threads(L);
    const int train = L->train;
    if (c->select == MOE_SELECT_HASH) {
        select_tokens(L, T);
        router_losses(L, T);
        return;
    }

    /* router input */
    const float *xr = x;
    if (c->jitter > 0.0f && train) {
        for (size_t i = 0; i < (size_t)T * d; i++)
            L->jit[i] = 1.0f + c->jitter * (2.0f * moe_rng_f32(&L->rng) - 1.0f);
        for (size_t i = 0; i < (size_t)T * d; i++) L->xr[i] = x[i] * L->jit[i];
        xr = L->xr;
    }
    gemm_problem pr[2] = {
        { .M = T, .N = E, .K = d, .transA = 0, .transB = 1, .A = xr, .lda = d,
          .B = L->w.router, .ldb = d, .C = c->noisy_gate ? L->logits : L->H, .ldc = E,
          .alpha = 1.0f, .beta = 0.0f },
        { .M = T, .N = E, .K = d, .transA = 0, .transB = 1, .A = xr, .lda = d,
          .B = L->w.noise, .ldb = d, .C = L->zn, .ldc = E, .alpha = 1.0f, .beta = 0.0f },
    };
    gemm_grouped(L->gws, nt, pr, c->noisy_gate ? 2 : 1);
    router_route(L, T);
}

/* Everything after the logits (layer.h): noise, gate, selection, losses. */
void router_route(moe_layer *L, int T) {
    const moe_layer_config *c = &L->cfg;
    const int E = c->n_experts, nt = layer_threads(L);
    const int train = L->train;
    if (c->noisy_gate) {
        size_t n = (size_t)T * E;
        for (size_t i = 0; i < n; i++) L->sigma[i] = softplusf(L->zn[i]);
        if (train) {
            for (size_t i = 0; i < n; i++) L->nz[i] = moe_rng_normal(&L->rng);
            for (size_t i = 0; i < n; i++) L->H[i] = L->logits[i] + L->nz[i] * L->sigma[i];
        } else {
            memcpy(L->H, L->logits, sizeof(float) * n);
        }
    }

    /* gate, per token */
    #pragma omp parallel for num_threads(nt) schedule(static)
    for (int t = 0; t < T; t++) {
        const float *h = L->H + (size_t)t * E;
        float *p = L->probs + (size_t)t * E, *pn = L->pn + (size_t)t * E;
        float m = h[0];
        for (int e = 1; e < E; e++) m = h[e] > m ? h[e] : m;
        double sum = 0.0;
        for (int e = 0; e < E; e++) sum += exp((double)h[e] - m);
        L->lse[t] = m + (float)log(sum);
        if (c->gate == MOE_GATE_SOFTMAX) {
            float inv = (float)(1.0 / sum);
            for (int e = 0; e < E; e++) p[e] = expf(h[e] - m) * inv;
        } else {
            float Q = 0.0f;
            for (int e = 0; e < E; e++) {
                p[e] = c->gate == MOE_GATE_SIGMOID ? 1.0f / (1.0f + expf(-h[e])) : (h[e] > 0.0f ? h[e] : 0.0f);
                Q += p[e];
            }
            float inv = Q > 0.0f ? 1.0f / Q : 0.0f;
            for (int e = 0; e < E; e++) pn[e] = p[e] * inv;
        }
    }
    if (L->ec_now) select_expert_choice(L, T);
    else select_tokens(L, T);
    router_losses(L, T);
}

/* d(weights) and d(pn) of token t -> d(gate scores), into dprob[E].
 * dpn[E] holds the loss gradients with respect to the normalized scores. */
void router_token_grad(moe_layer *L, int t, float *dprob, float *dpn) {
    const moe_layer_config *c = &L->cfg;
    const int E = c->n_experts, S = L->S;
    const float *p = L->probs + (size_t)t * E;
    const int *idx = L->slot_expert + (size_t)t * S;
    const float *dw = L->d_w + (size_t)t * S;
    const float s = c->weight_scale;
    if (L->ec_now || c->gate == MOE_GATE_RELU) {
        /* w = s * score of the slot's expert */
        for (int j = 0; j < S; j++)
            if (idx[j] >= 0) dprob[idx[j]] += s * dw[j];
    } else if (layer_renormalizes(c)) {
        float Z = L->Zsum[t], dot = 0.0f;
        for (int j = 0; j < S; j++)
            if (idx[j] >= 0) dot += dw[j] * p[idx[j]];
        for (int j = 0; j < S; j++)
            if (idx[j] >= 0) dprob[idx[j]] += s * dw[j] / Z;
        /* every expert in Z, including a slot GShard's policy removed */
        for (int j = 0; j < S; j++)
            if (idx[j] >= 0) dprob[idx[j]] -= s * dot / (Z * Z);
        if (L->gs_expert[t] >= 0) dprob[L->gs_expert[t]] -= s * dot / (Z * Z);
    } else {
        for (int j = 0; j < S; j++)
            if (idx[j] >= 0) dprob[idx[j]] += s * dw[j];
    }
    /* normalized scores -> scores */
    if (c->gate == MOE_GATE_SOFTMAX) {
        for (int e = 0; e < E; e++) dprob[e] += dpn[e];
    } else {
        const float *pn = L->pn + (size_t)t * E;
        float Q = 0.0f, dot = 0.0f;
        for (int e = 0; e < E; e++) { Q += p[e]; dot += dpn[e] * pn[e]; }
        if (Q > 0.0f)
            for (int e = 0; e < E; e++) dprob[e] += (dpn[e] - dot) / Q;
    }
}

void router_backward(moe_layer *L, float *dx, const float *x, int T, float gbeta) {
    const moe_layer_config *c = &L->cfg;
    const int E = c->n_experts, d = c->d_model;
    if (c->select == MOE_SELECT_HASH) {
        /* no router, so its gradient is 0: written when the gradients were
           dropped (gbeta 0), else left as it is (adding 0) */
        if (gbeta == 0.0f) memset(L->g.router, 0, sizeof(float) * (size_t)E * (size_t)d);
        return;
    }
    router_backward_dlogits(L, T);
    router_backward_gemms(L, dx, x, 0, T, gbeta);
}

/* dL/dlogits (and dL/dzn) of every token, from d_w and the loss terms.
 * Loss terms: importance into d_w; per-token dpn, L1 and load terms are
 * added inside the token loop of router_losses_backward via d_logits. */
void router_backward_dlogits(moe_layer *L, int T) {
    const moe_layer_config *c = &L->cfg;
    const int E = c->n_experts, nt = layer_threads(L);
    const float zc = c->z_loss_coef;
    router_losses_backward(L, T);   /* fills d_logits with dpn, d_zn with load terms */

    #pragma omp parallel for num_threads(nt) schedule(static)
    for (int t = 0; t < T; t++) {
        const float *p = L->probs + (size_t)t * E, *h = L->H + (size_t)t * E;
        float *dz = L->d_logits + (size_t)t * E; /* in: dpn[t]; out: dH */
        float dprob[E], dpn[E];
        memcpy(dpn, dz, sizeof(float) * (size_t)E);
        memset(dprob, 0, sizeof(float) * (size_t)E);
        if (c->gate == MOE_GATE_RELU)
            for (int e = 0; e < E; e++) dprob[e] += L->l1_coef / T;
        router_token_grad(L, t, dprob, dpn);
        if (c->gate == MOE_GATE_SOFTMAX) {
            float pd = 0.0f;
            for (int e = 0; e < E; e++) pd += p[e] * dprob[e];
            for (int e = 0; e < E; e++) dz[e] = p[e] * (dprob[e] - pd);
        } else if (c->gate == MOE_GATE_SIGMOID) {
            for (int e = 0; e < E; e++) dz[e] = dprob[e] * p[e] * (1.0f - p[e]);
        } else {
            for (int e = 0; e < E; e++) dz[e] = h[e] > 0.0f ? dprob[e] : 0.0f;
        }
        if (zc != 0.0f) {
            float g = zc * 2.0f * L->lse[t] / T;
            for (int e = 0; e < E; e++) dz[e] += g * expf(h[e] - L->lse[t]);
        }
    }
    if (c->noisy_gate) {
        /* dH -> dz (same) and dsigma = dH n (training only) -> dzn */
        size_t n = (size_t)T * E;
        for (size_t i = 0; i < n; i++) {
            float ds = L->d_zn[i] + (L->train ? L->d_logits[i] * L->nz[i] : 0.0f);
            L->d_zn[i] = ds / (1.0f + expf(-L->zn[i]));
        }
        /* the load loss's terms on the clean logits */
        if (c->load_loss_coef > 0.0f && L->train)
            for (size_t i = 0; i < n; i++) L->d_logits[i] += L->load_dz[i];
    }
}

/* The router's products over tokens [t0, t0 + T) of the dlogits of
 * router_backward: dWr (+)= dz^T xr, dWn (+)= dzn^T xr, dx += (dz Wr + dzn Wn)
 * (* u with jitter). x, dx: [T, d], those tokens' rows; L->xr holds their
 * jittered input from row 0, L->jit their factors from row t0. */
void router_backward_gemms(moe_layer *L, float *dx, const float *x, int t0, int T, float gbeta) {
    const moe_layer_config *c = &L->cfg;
    const int E = c->n_experts, d = c->d_model, nt = layer_threads(L);
    const int jit = c->jitter > 0.0f && L->train;
    const float *xr = jit ? L->xr : x;
    float *dxr = jit ? L->d_xr : dx;
    float beta_x = dxr == dx ? 1.0f : 0.0f;
    const float *dz = L->d_logits + (size_t)t0 * E, *dzn = c->noisy_gate ? L->d_zn + (size_t)t0 * E : NULL;
    gemm_problem pr[4];
    int np = 0;
    pr[np++] = (gemm_problem){ .M = E, .N = d, .K = T, .transA = 1, .transB = 0,
        .A = dz, .lda = E, .B = xr, .ldb = d, .C = L->g.router, .ldc = d, .alpha = 1.0f, .beta = gbeta };
    if (c->noisy_gate)
        pr[np++] = (gemm_problem){ .M = E, .N = d, .K = T, .transA = 1, .transB = 0,
            .A = dzn, .lda = E, .B = xr, .ldb = d, .C = L->g.noise, .ldc = d, .alpha = 1.0f, .beta = gbeta };
    pr[np++] = (gemm_problem){ .M = T, .N = d, .K = E, .transA = 0, .transB = 0,
        .A = dz, .lda = E, .B = L->w.router, .ldb = d, .C = dxr, .ldc = d, .alpha = 1.0f, .beta = beta_x };
    gemm_grouped(L->gws, nt, pr, np);
    if (c->noisy_gate) {
        gemm_problem q = { .M = T, .N = d, .K = E, .transA = 0, .transB = 0,
            .A = dzn, .lda = E, .B = L->w.noise, .ldb = d, .C = dxr, .ldc = d, .alpha = 1.0f, .beta = 1.0f };
        gemm_grouped(L->gws, nt, &q, 1);
    }
    if (jit) {
        const float *u = L->jit + (size_t)t0 * d;
        for (size_t i = 0; i < (size_t)T * d; i++) dx[i] += dxr[i] * u[i];
    }
}
