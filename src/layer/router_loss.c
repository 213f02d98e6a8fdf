/* router_loss.c: the router's auxiliary losses and balance statistics, and
 * the losses' gradients. Each loss is reported times its coefficient.
 *
 *   balance   alpha E sum_i f_i P_i, f_i = routed_i / assignments (or first
 *             choices / T), counted over the global batch with global_stats;
 *             P_i = mean_t pn[t,i]            dpn[t,i] += alpha E f_i / T
 *   z         beta mean_t lse_t^2              (router.c adds its gradient)
 *   importance w_imp CV2(Imp), Imp_e = sum_t w_te (slot weights)
 *             dCV2/dv_e = 2 (v_e - m) / (E (m^2 + eps)) - 2 m V / (E (m^2 + eps)^2)
 *   load      w_load CV2(load), load_e = sum_t Phi(a_te),
 *             a_te = (z_te - thr_te) / sigma_te, thr_te = H_tm, m = the k-th
 *             best expert of token t other than e
 *             da -> dz_te += phi g / sigma, dsigma_te -= phi g a / sigma,
 *                   dH_tm -= phi g / sigma (dz_tm, dsigma_tm += .. n_tm)
 *   entropy   w_H mean_t -sum_e pn log pn      dpn_e += -w_H (log pn_e + 1) / T
 *   sequence  alpha_s mean_seq sum_i f_i P_i, f_i = E/(k L) count_i in the
 *             sequence, P_i = mean over it of pn  dpn += alpha_s f_i / (L n_seq)
 *   l1        lambda mean_t sum_e r_te          (router.c adds lambda / T)
 * Statistics: loads, max-violation, CV, dead and starved experts, active experts/token.
 */
#include "layer/layer.h"

#include <math.h>
#include <string.h>

#define CV_EPS 1e-10

/* CV^2 of v[E] and its gradient (times coef) into g[E]. */
static double cv2(const double *v, int E, float coef, float *g) {
    double m = 0, V = 0;
    for (int e = 0; e < E; e++) m += v[e];
    m /= E;
    for (int e = 0; e < E; e++) V += (v[e] - m) * (v[e] - m);
    V /= E;
    double den = m * m + CV_EPS;
    if (g)
        for (int e = 0; e < E; e++)
            g[e] = (float)(coef * (2.0 * (v[e] - m) / (E * den) - 2.0 * m * V / (E * den * den)));
    return V / den;
}

/* The k + 1 best experts of one token by H (ties to the lower index), so
 * that thr(e) = order[k] if e is among order[0..k), else order[k - 1]. */
static void top_order(int *order, const float *h, int E, int n) {
    for (int j = 0; j < n; j++) {
        int best = -1;
        for (int e = 0; e < E; e++) {
            int taken = 0;
            for (int i = 0; i < j; i++) taken |= order[i] == e;
            if (!taken && (best < 0 || h[e] > h[best])) best = e;
        }
        order[j] = best;
    }
}

/* threshold expert of (t, e) for the load loss: the k-th best other expert */
static int load_thr(const int *order, int k, int e) {
    for (int j = 0; j < k; j++)
        if (order[j] == e) return order[k];  /* e in the top k: the (k+1)-th */
    return order[k - 1];
}

static double phi_cdf(double a) { return 0.5 * erfc(-a / sqrt(2.0)); }
static double phi_pdf(double a) { return exp(-0.5 * a * a) / 2.5066282746310002 /* sqrt(2 pi) */; }

void router_losses(moe_layer *L, int T) {
    const moe_layer_config *c = &L->cfg;
    const int E = c->n_experts, S = L->S;
    moe_route_stats *st = &L->stats;
    int *routed = L->plan.routed;
    const int has_router = c->select != MOE_SELECT_HASH;
    memset(routed, 0, sizeof(int) * (size_t)E);
    int64_t n_assign = 0;
    for (size_t i = 0; i < (size_t)T * S; i++) {
        int e = L->slot_expert[i];
        if (e >= 0) { routed[e]++; n_assign++; }
    }
    /* balance f: this forward, or accumulated over the global batch */
    for (int e = 0; e < E; e++) L->acc_routed[e] += routed[e];
    for (int t = 0; t < T; t++)
        if (L->slot_expert[(size_t)t * S] >= 0) L->acc_first[L->slot_expert[(size_t)t * S]]++;
    L->acc_assign += n_assign;
    L->acc_tokens += T;
    for (int e = 0; e < E; e++) {
        double f;
        if (c->balance_top1_only) {
            int64_t first = 0;
            if (c->global_stats) first = L->acc_first[e];
            else for (int t = 0; t < T; t++) first += L->slot_expert[(size_t)t * S] == e;
            int64_t tok = c->global_stats ? L->acc_tokens : T;
            f = (double)first / (double)tok;
        } else {
            int64_t r = c->global_stats ? L->acc_routed[e] : routed[e];
            int64_t a = c->global_stats ? L->acc_assign : n_assign;
            f = a ? (double)r / (double)a : 0.0;
        }
        L->f[e] = (float)f;
    }
    if (!c->global_stats) {
        memset(L->acc_routed, 0, sizeof(int64_t) * (size_t)E);
        memset(L->acc_first, 0, sizeof(int64_t) * (size_t)E);
        L->acc_assign = 0;
        L->acc_tokens = 0;
    }

    double balance = 0, lse_sq = 0, ent = 0, ent_loss = 0, l1 = 0, imp_loss = 0, load_loss = 0, seq = 0;
    int64_t zeros = 0;
    if (has_router) {
        const float *pn = c->gate == MOE_GATE_SOFTMAX ? L->probs : L->pn;
        for (int e = 0; e < E; e++) {
            double P = 0;
            for (int t = 0; t < T; t++) P += pn[(size_t)t * E + e];
            L->P[e] = (float)(P / T);
            balance += (double)L->f[e] * L->P[e];
        }
        balance *= E;
        for (int t = 0; t < T; t++) {
            lse_sq += (double)L->lse[t] * L->lse[t];
            double h = 0;
            for (int e = 0; e < E; e++) {
                double v = pn[(size_t)t * E + e];
                if (v > 0) h -= v * log(v);
                if (c->gate == MOE_GATE_RELU) {
                    float r = L->probs[(size_t)t * E + e];
                    l1 += r;
                    zeros += r == 0.0f;
                }
            }
            ent += h;
        }
        ent_loss = c->entropy_loss_coef * ent / T;
        l1 = L->l1_coef * l1 / T;
        /* importance */
        if (c->importance_loss_coef > 0.0f) {
            double imp[E];
            memset(imp, 0, sizeof imp);
            for (size_t i = 0; i < (size_t)T * S; i++)
                if (L->slot_expert[i] >= 0) imp[L->slot_expert[i]] += L->slot_weight[i];
            imp_loss = c->importance_loss_coef * cv2(imp, E, c->importance_loss_coef, L->imp_g);
        }
        /* smooth load of the noisy gate (training only) */
        if (c->load_loss_coef > 0.0f && L->train) {
            double load[E];
            int scratch[E];
            memset(load, 0, sizeof load);
            for (int t = 0; t < T; t++) {
                const float *h = L->H + (size_t)t * E;
                top_order(scratch, h, E, L->k + 1);
                for (int e = 0; e < E; e++) {
                    int m = load_thr(scratch, L->k, e);
                    double a = ((double)L->logits[(size_t)t * E + e] - h[m]) / L->sigma[(size_t)t * E + e];
                    load[e] += phi_cdf(a);
                }
            }
            load_loss = c->load_loss_coef * cv2(load, E, c->load_loss_coef, L->load_g);
        }
        /* sequence-wise balance */
        if (c->seq_aux_loss_coef > 0.0f) {
            int Ls = c->seq_len, ns = T / Ls;
            for (int q = 0; q < ns; q++) {
                float *fq = L->seq_f + (size_t)q * E;
                memset(fq, 0, sizeof(float) * (size_t)E);
                for (int t = q * Ls; t < (q + 1) * Ls; t++)
                    for (int j = 0; j < S; j++) {
                        int e = L->slot_expert[(size_t)t * S + j];
                        if (e >= 0) fq[e] += 1.0f;
                    }
                for (int e = 0; e < E; e++) {
                    fq[e] *= (float)E / ((float)L->k * Ls);
                    double P = 0;
                    for (int t = q * Ls; t < (q + 1) * Ls; t++) P += pn[(size_t)t * E + e];
                    seq += fq[e] * P / Ls;
                }
            }
            seq = c->seq_aux_loss_coef * seq / ns;
        }
    }
    st->n_tokens = T;
    st->balance = (float)balance;
    st->aux_loss = (float)(c->aux_loss_coef * balance);
    st->lse_sq = (float)(lse_sq / T);
    st->z_loss = (float)(c->z_loss_coef * lse_sq / T);
    st->entropy = (float)(ent / T);
    st->entropy_loss = (float)ent_loss;
    st->importance_loss = (float)imp_loss;
    st->load_loss = (float)load_loss;
    st->seq_aux_loss = (float)seq;
    st->l1_loss = (float)l1;
    st->l1_coef = L->l1_coef;
    st->sparsity = c->gate == MOE_GATE_RELU ? (float)((double)zeros / ((double)T * E)) : 0.0f;
    st->router_loss = st->aux_loss + st->z_loss + st->entropy_loss + st->importance_loss +
                      st->load_loss + st->seq_aux_loss + st->l1_loss;
    st->assignments = n_assign;

    /* load statistics of this forward */
    double mean = (double)n_assign / E, mx = 0, var = 0;
    int dead = 0, starved = 0, window = c->dead_window > 0 ? c->dead_window : 100;
    for (int e = 0; e < E; e++) {
        starved += n_assign > 0 && (double)routed[e] < MOE_STARVED_SHARE * mean;
        mx = routed[e] > mx ? routed[e] : mx;
        var += (routed[e] - mean) * (routed[e] - mean);
        L->dead_run[e] = routed[e] ? 0 : L->dead_run[e] + 1;
        dead += L->dead_run[e] >= window;
    }
    st->max_violation = mean > 0 ? (float)(mx / mean - 1.0) : 0.0f;
    st->load_cv = mean > 0 ? (float)(sqrt(var / E) / mean) : 0.0f;
    st->dead_experts = dead;
    st->starved_experts = starved;
}

void router_stats_after_plan(moe_layer *L, int T) {
    const int S = L->S;
    moe_route_stats *st = &L->stats;
    memset(L->active_hist, 0, sizeof(int) * (size_t)(S + 1));
    int64_t kept = 0;
    for (int t = 0; t < T; t++) {
        int n = 0;
        for (int j = 0; j < S; j++) n += L->plan.slot_row[(size_t)t * S + j] >= 0;
        L->active_hist[n]++;
        kept += n;
    }
    st->active_hist = L->active_hist;
    st->active_hist_len = S + 1;
    st->active_mean = (float)((double)kept / T);
    st->dropped_fraction = st->assignments ? (float)((double)st->dropped / (double)st->assignments) : 0.0f;
}

void router_losses_backward(moe_layer *L, int T) {
    const moe_layer_config *c = &L->cfg;
    const int E = c->n_experts, S = L->S;
    const float *pn = c->gate == MOE_GATE_SOFTMAX ? L->probs : L->pn;
    /* importance: through the slot weights */
    if (c->importance_loss_coef > 0.0f)
        for (size_t i = 0; i < (size_t)T * S; i++)
            if (L->slot_expert[i] >= 0) L->d_w[i] += L->imp_g[L->slot_expert[i]];
    /* dpn per token into d_logits */
    for (int t = 0; t < T; t++) {
        float *dpn = L->d_logits + (size_t)t * E;
        const float *pt = pn + (size_t)t * E;
        for (int e = 0; e < E; e++) {
            float g = c->aux_loss_coef * E * L->f[e] / T;
            if (c->entropy_loss_coef > 0.0f && pt[e] > 0.0f)
                g += -c->entropy_loss_coef * (logf(pt[e]) + 1.0f) / T;
            dpn[e] = g;
        }
    }
    if (c->seq_aux_loss_coef > 0.0f) {
        int Ls = c->seq_len, ns = T / Ls;
        for (int q = 0; q < ns; q++)
            for (int t = q * Ls; t < (q + 1) * Ls; t++)
                for (int e = 0; e < E; e++)
                    L->d_logits[(size_t)t * E + e] += c->seq_aux_loss_coef * L->seq_f[(size_t)q * E + e] / ((float)Ls * ns);
    }
    /* load loss: dsigma terms into d_zn, dz terms into load_dz */
    if (c->noisy_gate) memset(L->d_zn, 0, sizeof(float) * (size_t)T * E);
    if (c->noisy_gate && c->load_loss_coef > 0.0f && L->train) {
        memset(L->load_dz, 0, sizeof(float) * (size_t)T * E);
        int scratch[E];
        for (int t = 0; t < T; t++) {
            const float *h = L->H + (size_t)t * E;
            top_order(scratch, h, E, L->k + 1);
            for (int e = 0; e < E; e++) {
                size_t i = (size_t)t * E + e;
                int m = load_thr(scratch, L->k, e);
                double sg = L->sigma[i];
                double a = ((double)L->logits[i] - h[m]) / sg;
                double gphi = phi_pdf(a) * L->load_g[e];
                size_t im = (size_t)t * E + m;
                L->load_dz[i] += (float)(gphi / sg);
                L->d_zn[i] += (float)(-gphi * a / sg);
                L->load_dz[im] += (float)(-gphi / sg);
                L->d_zn[im] += (float)(-gphi / sg * L->nz[im]);
            }
        }
    }
}
