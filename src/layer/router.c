/* router.c: the router of the MoE layer: gate, selection, gate weights,
 * auxiliary losses and statistics, forward and backward (fp32 always).
 *
 * Gate (softmax):     p[t,:] = softmax(logits[t,:]),  logits = x Wr^T
 * Selection (top-k):  the k largest p[t,e], best first, ties to lower e
 * Weights:            w_j = s * p_j / (renormalize ? sum_j' p_j' : 1)
 * Balance loss:       alpha * E * sum_i f_i P_i, f_i = routed_i / assignments
 *                     (constant), P_i = mean_t p[t,i]
 * z-loss:             beta * mean_t lse_t^2, lse_t = logsumexp(logits[t,:])
 *
 * Backward (dw[t,j] = dL/dw_j from the experts):
 *   renormalised: dp_j = s (dw_j / Z - sum_i dw_i p_i / Z^2), Z = sum_j p_j
 *   plain:        dp_j = s dw_j
 *   balance:      dp[t,i] += alpha E f_i / T
 *   softmax:      dlogits = p * (dp - <p, dp>)
 *   z-loss:       dlogits += beta (2 lse_t / T) p          (dlse/dlogits = p)
 *   then dWr += dlogits^T x and dx += dlogits Wr.
 * Not here: capacity and dropping (plan.c), the experts (experts.c).
 */
#include "layer/layer.h"
#include "kernels/gemm.h"

#include <math.h>
#include <string.h>

/* Top-k of one row of scores: idx[0..k) best first; ties to the lower index. */
static void topk_row(int *idx, const float *p, int E, int k) {
    for (int j = 0; j < k; j++) {
        int best = -1;
        for (int e = 0; e < E; e++) {
            int taken = 0;
            for (int i = 0; i < j; i++) taken |= (idx[i] == e);
            if (taken) continue;
            if (best < 0 || p[e] > p[best]) best = e;
        }
        idx[j] = best;
    }
}

void router_forward(moe_layer *L, const float *x, int T) {
    const moe_layer_config *c = &L->cfg;
    const int E = c->n_experts, d = c->d_model, k = c->top_k, S = L->S;
    gemm_problem pr = {
        .M = T, .N = E, .K = d, .transA = 0, .transB = 1,
        .A = x, .lda = d, .B = L->w.router, .ldb = d,
        .C = L->logits, .ldc = E, .alpha = 1.0f, .beta = 0.0f,
    };
    gemm_grouped(layer_threads(L), &pr, 1);

    /* Per token: softmax, logsumexp, top-k, weights. The entropy of token t
       goes to ent[t] (d_w is unused until backward) and is summed serially
       below, so totals do not depend on how threads split the tokens. */
    float *ent = L->d_w;
    #pragma omp parallel for num_threads(layer_threads(L)) schedule(static)
    for (int t = 0; t < T; t++) {
        const float *z = L->logits + (size_t)t * E;
        float *p = L->probs + (size_t)t * E;
        float m = z[0];
        for (int e = 1; e < E; e++) m = z[e] > m ? z[e] : m;
        double sum = 0.0;
        for (int e = 0; e < E; e++) { p[e] = expf(z[e] - m); sum += p[e]; }
        float inv = (float)(1.0 / sum);
        double h = 0.0;
        for (int e = 0; e < E; e++) {
            p[e] *= inv;
            if (p[e] > 0.0f) h -= (double)p[e] * log((double)p[e]);
        }
        L->lse[t] = m + (float)log(sum);
        ent[t] = (float)h;

        int *idx = L->slot_expert + (size_t)t * S;
        float *w = L->slot_weight + (size_t)t * S;
        float *sc = L->slot_score + (size_t)t * S;
        topk_row(idx, p, E, k);
        float Z = 0.0f;
        for (int j = 0; j < k; j++) Z += p[idx[j]];
        float norm = c->renormalize ? c->weight_scale / Z : c->weight_scale;
        for (int j = 0; j < k; j++) {
            sc[j] = p[idx[j]];
            w[j] = p[idx[j]] * norm;
        }
    }

    /* batch statistics, summed in a fixed order */
    int *routed = L->plan.routed;
    memset(routed, 0, sizeof(int) * (size_t)E);
    int64_t n_assign = 0;
    for (size_t i = 0; i < (size_t)T * S; i++) {
        int e = L->slot_expert[i];
        if (e >= 0) { routed[e]++; n_assign++; }
    }
    double ent_sum = 0.0, lse_sq = 0.0;
    for (int t = 0; t < T; t++) {
        ent_sum += ent[t];
        lse_sq += (double)L->lse[t] * L->lse[t];
    }
    double balance = 0.0;
    for (int e = 0; e < E; e++) {
        double P = 0.0;
        for (int t = 0; t < T; t++) P += L->probs[(size_t)t * E + e];
        L->P[e] = (float)(P / T);
        L->f[e] = n_assign ? (float)((double)routed[e] / (double)n_assign) : 0.0f;
        balance += (double)L->f[e] * L->P[e];
    }
    balance *= E;
    moe_route_stats *st = &L->stats;
    st->n_tokens = T;
    st->balance = (float)balance;
    st->aux_loss = (float)(c->aux_loss_coef * balance);
    st->lse_sq = (float)(lse_sq / T);
    st->z_loss = (float)(c->z_loss_coef * lse_sq / T);
    st->entropy = (float)(ent_sum / T);
    st->assignments = n_assign;
}

void router_backward(moe_layer *L, float *dx, const float *x, int T) {
    const moe_layer_config *c = &L->cfg;
    const int E = c->n_experts, d = c->d_model, S = L->S;
    const float aux = c->aux_loss_coef, zc = c->z_loss_coef;
    #pragma omp parallel for num_threads(layer_threads(L)) schedule(static)
    for (int t = 0; t < T; t++) {
        const float *p = L->probs + (size_t)t * E;
        const int *idx = L->slot_expert + (size_t)t * S;
        const float *dw = L->d_w + (size_t)t * S;
        float *dz = L->d_logits + (size_t)t * E;   /* holds dp, then dlogits */
        for (int e = 0; e < E; e++) dz[e] = aux * E * L->f[e] / T;
        if (c->renormalize) {
            float Z = 0.0f, dot = 0.0f;
            for (int j = 0; j < S; j++) {
                if (idx[j] < 0) continue;
                Z += p[idx[j]];
                dot += dw[j] * p[idx[j]];
            }
            for (int j = 0; j < S; j++)
                if (idx[j] >= 0)
                    dz[idx[j]] += c->weight_scale * (dw[j] / Z - dot / (Z * Z));
        } else {
            for (int j = 0; j < S; j++)
                if (idx[j] >= 0) dz[idx[j]] += c->weight_scale * dw[j];
        }
        float pd = 0.0f;
        for (int e = 0; e < E; e++) pd += p[e] * dz[e];
        float zg = zc * 2.0f * L->lse[t] / T;
        for (int e = 0; e < E; e++) dz[e] = p[e] * (dz[e] - pd) + zg * p[e];
    }
    gemm_problem pr[2] = {
        { /* dWr[E, d] += dlogits^T x */
          .M = E, .N = d, .K = T, .transA = 1, .transB = 0,
          .A = L->d_logits, .lda = E, .B = x, .ldb = d,
          .C = L->g.router, .ldc = d, .alpha = 1.0f, .beta = 1.0f },
        { /* dx[T, d] += dlogits Wr */
          .M = T, .N = d, .K = E, .transA = 0, .transB = 0,
          .A = L->d_logits, .lda = E, .B = L->w.router, .ldb = d,
          .C = dx, .ldc = d, .alpha = 1.0f, .beta = 1.0f },
    };
    gemm_grouped(layer_threads(L), pr, 2);
}
