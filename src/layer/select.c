/* select.c: the selections of the router: which experts each token gets
 * (slots) and with which gate weights.
 *
 * Token choice (S slots per token, empty slots hold expert -1):
 *   TOPK  the k highest selection scores (p, or q + bias for the sigmoid
 *         gate), ties to the lower index; optionally only inside the best
 *         topk_groups of n_groups groups (a group's score: the sum of its two
 *         best scores); GShard's random policy may then empty slot 1.
 *   TOPP  sort p descending; take experts until their sum reaches top_p or k
 *         are taken.
 *   HASH  e_j = (splitmix64(id) + j) mod E, w_j = s / k.
 *   ALL   (ReLU) slot e holds expert e when r_te > 0.
 * Expert choice: expert e takes the ceil(c T / E) tokens of highest p[:, e];
 * slot e of token t holds e when it was taken.
 * Weights: softmax/sigmoid token choice w_j = s g_j / (renorm ? sum_j g_j : 1);
 * expert choice and ReLU w = s * score.
 * Not here: gates (router.c), capacity (plan.c).
 */
#include "layer/layer.h"

#include <math.h>
#include <string.h>

#include "core/hash.h"
#include "core/sort.h"
#include "layer/route_rules.h"


/* the k best of sc[E] among allowed experts, best first, ties to lower e */
static int topk_masked(int *idx, const float *sc, const unsigned char *allow, int E, int k) {
    int n = 0;
    for (int j = 0; j < k; j++) {
        int best = -1;
        for (int e = 0; e < E; e++) {
            if (allow && !allow[e]) continue;
            int taken = 0;
            for (int i = 0; i < n; i++) taken |= idx[i] == e;
            if (taken) continue;
            if (best < 0 || sc[e] > sc[best]) best = e;
        }
        if (best < 0) break;
        idx[n++] = best;
    }
    return n;
}

void select_tokens(moe_layer *L, int T) {
    const moe_layer_config *c = &L->cfg;
    const int E = c->n_experts, S = L->S, k = L->k, nt = layer_threads(L);
    const float s = c->weight_scale;
    if (c->select == MOE_SELECT_TOPK && c->gshard_random_second && L->train)
        for (int t = 0; t < T; t++) L->second_u[t] = moe_rng_f32(&L->rng);
    #pragma omp parallel for num_threads(nt) schedule(static)
    for (int t = 0; t < T; t++) {
        int *idx = L->slot_expert + (size_t)t * S;
        float *w = L->slot_weight + (size_t)t * S;
        float *sc = L->slot_score + (size_t)t * S;
        const float *p = L->probs + (size_t)t * E;
        for (int j = 0; j < S; j++) { idx[j] = -1; w[j] = 0.0f; sc[j] = 0.0f; }
        L->gs_expert[t] = -1;
        L->Zsum[t] = 1.0f;
        if (c->select == MOE_SELECT_HASH) {
            int e0 = route_hash_first(L->token_ids[t], E);
            for (int j = 0; j < k; j++) { idx[j] = (e0 + j) % E; w[j] = s / k; sc[j] = 1.0f; }
            continue;
        }
        if (c->select == MOE_SELECT_ALL) {
            for (int e = 0; e < E; e++)
                if (p[e] > 0.0f) { idx[e] = e; w[e] = s * p[e]; sc[e] = p[e]; }
            continue;
        }
        int n;
        if (c->select == MOE_SELECT_TOPP) {
            n = topk_masked(idx, p, NULL, E, k);    /* sorted descending */
            float cum = 0.0f;
            int m = 0;
            while (m < n) { cum += p[idx[m]]; m++; if (cum >= L->top_p) break; }
            for (int j = m; j < S; j++) idx[j] = -1;
            n = m;
        } else {
            const float *sel = p;
            if (c->bias_update_rate > 0.0f) {
                float *b = L->selsc + (size_t)t * E;
                for (int e = 0; e < E; e++) b[e] = p[e] + L->bias[e];
                sel = b;
            }
            unsigned char allow[E];
            if (c->n_groups > 0) route_group_mask(allow, sel, E, c->n_groups, c->topk_groups);
            n = topk_masked(idx, sel, c->n_groups > 0 ? allow : NULL, E, k);
        }
        float Z = 0.0f;
        for (int j = 0; j < n; j++) Z += p[idx[j]];
        const int renorm = layer_renormalizes(c);
        L->Zsum[t] = renorm ? Z : 1.0f;
        float norm = renorm ? s / Z : s;
        for (int j = 0; j < n; j++) { sc[j] = p[idx[j]]; w[j] = p[idx[j]] * norm; }
        if (c->select == MOE_SELECT_TOPK && c->gshard_random_second && L->train && n == 2) {
            float w1 = p[idx[1]] / (p[idx[0]] + p[idx[1]]);
            if (!(L->second_u[t] < 2.0f * w1)) {
                L->gs_expert[t] = idx[1];
                idx[1] = -1;
                w[1] = 0.0f;
                sc[1] = 0.0f;
            }
        }
    }
}

void select_expert_choice(moe_layer *L, int T) {
    const moe_layer_config *c = &L->cfg;
    const int E = c->n_experts, S = L->S, nt = layer_threads(L);
    double want = ceil((double)c->ec_capacity * T / E);
    const int C = want > T ? T : (int)want;
    for (size_t i = 0; i < (size_t)T * S; i++) {
        L->slot_expert[i] = -1;
        L->slot_weight[i] = 0.0f;
        L->slot_score[i] = 0.0f;
    }
    for (int t = 0; t < T; t++) { L->gs_expert[t] = -1; L->Zsum[t] = 1.0f; }
    /* expert e ranks the tokens by p[:, e] (descending, ties to lower t):
       a selection of C from T by repeated partial passes would be O(C T);
       instead sort indices (stable merge sort) per expert */
    #pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
    for (int e = 0; e < E; e++) {
        int *a = L->plan.order + (size_t)e * T;      /* [T] scratch per expert */
        int *tmp = L->plan.row_slot + (size_t)e * T;
        for (int t = 0; t < T; t++) a[t] = t;
        moe_sort_desc_stable(a, tmp, T, L->probs + e, (size_t)E);
        for (int r = 0; r < C; r++) {
            int t = a[r];
            size_t i = (size_t)t * S + e;
            float p = L->probs[(size_t)t * E + e];
            L->slot_expert[i] = e;
            L->slot_weight[i] = c->weight_scale * p;
            L->slot_score[i] = p;
        }
    }
}
