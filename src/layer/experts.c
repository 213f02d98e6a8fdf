/* experts.c: dispatch, the expert networks and combine of the MoE layer,
 * forward and backward, on the expert-major rows that plan.c laid out.
 *
 * Forward, for expert e with rows R_e = [offset[e], offset[e+1]):
 *   Xg[R_e]  = x[token of each row]                      (gather)
 *   SwiGLU:  Hg = Xg Wg_e^T, Hu = Xg Wu_e^T,  A = silu(Hg) * Hu
 *   GELU:    Hu = Xg Wu_e^T,                  A = gelu(Hu)
 *   O[R_e]   = A Wd_e^T                                   [n_e, d]
 *   y[t]     = sum over kept slots j of w_j O[row(t,j)]   (combine)
 * Every GEMM of every expert runs in one grouped call, so threads share the
 * tiles of all experts. Tokens are never run one at a time through an expert.
 *
 * Backward, with dy[T, d]:
 *   dw_j     = <dy_t, O[row]>          (to the router)
 *   dO[row]  = w_j dy_t
 *   dWd_e   += dO^T A,   dA = dO Wd_e   (+= or = : gbeta, layer.h)
 *   dHg, dHu = act'(dA)  (act.h)
 *   dWg_e   += dHg^T Xg, dWu_e += dHu^T Xg,  dXg = dHg Wg_e + dHu Wu_e
 *   dx[t]    = sum over kept slots of dXg[row]             (scatter)
 * Not here: routing or capacity (router.c, plan.c).
 */
#include "layer/layer.h"
#include "kernels/act.h"
#include "kernels/gemm.h"

#include <omp.h>
#include <string.h>

/* out[t] = sum over the kept slots j of token t of (w ? w[t,j] : 1) * rows[row(t,j)]:
 * the combine of forward and the scatter of backward. out [T, d], rows [R, d]. */
/* Only the rows this process ran count (plan row_lo/row_hi: all of them in
 * one process). */
static int row_mine(const moe_plan *pl, const int *slot_expert, int i, int r) {
    int e = slot_expert[i];
    return r >= pl->row_lo[e] && r < pl->row_hi[e];
}

/* out[t - t0] = sum over the kept slots j of token t in [t0, t0 + T) of
 * (w ? w[t,j] : 1) * rows[row(t,j)]: the combine of forward and the scatter
 * of backward. out [T, d], rows [R, d]. mine: only this process's rows. */
static void sum_token_rows(float *out, const float *rows, const float *w, const moe_plan *pl,
                           const int *slot_expert, int t0, int T, int S, int d, int mine, int nt) {
    const int *slot_row = pl->slot_row;
    #pragma omp parallel for num_threads(nt) schedule(static)
    for (int t = t0; t < t0 + T; t++) {
        float *ot = out + (size_t)(t - t0) * d;
        memset(ot, 0, sizeof(float) * (size_t)d);
        for (int j = 0; j < S; j++) {
            int r = slot_row[t * S + j];
            if (r < 0 || (mine && !row_mine(pl, slot_expert, t * S + j, r))) continue;
            float wj = w ? w[t * S + j] : 1.0f;
            const float *src = rows + (size_t)r * d;
            for (int i = 0; i < d; i++) ot[i] += wj * src[i];
        }
    }
}

void experts_forward(moe_layer *L, float *y, const float *x, int T) {
    const moe_plan *pl = &L->plan;
    const int d = L->cfg.d_model, S = L->S, R = pl->n_rows, nt = layer_threads(L);
    double t0 = omp_get_wtime();
    #pragma omp parallel for num_threads(nt) schedule(static)
    for (int r = 0; r < R; r++)
        if (row_mine(pl, L->slot_expert, pl->row_slot[r], r))
            memcpy(L->xg + (size_t)r * d, x + (size_t)(pl->row_slot[r] / S) * d,
                   sizeof(float) * (size_t)d);
    L->prof.fwd_gather = omp_get_wtime() - t0;
    experts_run(L);
    experts_combine(L, y, 0, T, 1);
}

void experts_combine(moe_layer *L, float *y, int t_first, int T, int mine) {
    double t0 = omp_get_wtime();
    /* each token sums its own rows, so no two threads write one row */
    sum_token_rows(y, L->o, L->slot_weight, &L->plan, L->slot_expert, t_first, T, L->S, L->cfg.d_model, mine,
                   layer_threads(L));
    L->prof.fwd_combine = omp_get_wtime() - t0;
}

void experts_run(moe_layer *L) {
    const moe_layer_config *c = &L->cfg;
    const int E = c->n_experts, d = c->d_model, F = c->d_ff, H = L->hid;
    const int swiglu = c->expert == MOE_EXPERT_SWIGLU;
    const moe_plan *pl = &L->plan;
    const int R = pl->n_rows, nt = layer_threads(L);
    gemm_problem *pr = (gemm_problem *)L->problems;
    moe_layer_profile *pf = &L->prof;
    double t0 = omp_get_wtime(), t1;
    /* input projections: h[:, 0:F] = gate part (SwiGLU), h[:, F:2F] = up part */
    int n = 0;
    for (int e = 0; e < E; e++) {
        int m = pl->row_hi[e] - pl->row_lo[e], r0 = pl->row_lo[e];
        if (m == 0) continue;
        const float *xe = L->xg + (size_t)r0 * d;
        float *he = L->h + (size_t)r0 * H;
        if (swiglu)
            pr[n++] = gemm_make(m, F, d, 0, xe, d, 1, L->w.gate + layer_expert_at(L, e, (size_t)F * d), d, he, H, 0.0f);
        pr[n++] = gemm_make(m, F, d, 0, xe, d, 1, L->w.up + layer_expert_at(L, e, (size_t)F * d), d,
                       he + (swiglu ? F : 0), H, 0.0f);
    }
    gemm_grouped(L->gws, nt, pr, n);
    t1 = omp_get_wtime();
    pf->fwd_gemm = t1 - t0;
    t0 = t1;

    #pragma omp parallel for num_threads(nt) schedule(static)
    for (int r = 0; r < R; r++) {
        if (!row_mine(pl, L->slot_expert, pl->row_slot[r], r)) continue;
        const float *hr = L->h + (size_t)r * H;
        float *ar = L->a + (size_t)r * F;
        if (swiglu) act_swiglu_forward(ar, hr, hr + F, (size_t)F);
        else act_gelu_forward(ar, hr, (size_t)F);
    }

    t1 = omp_get_wtime();
    pf->fwd_act = t1 - t0;
    t0 = t1;
    n = 0;
    for (int e = 0; e < E; e++) {
        int m = pl->row_hi[e] - pl->row_lo[e], r0 = pl->row_lo[e];
        if (m == 0) continue;
        pr[n++] = gemm_make(m, d, F, 0, L->a + (size_t)r0 * F, F, 1,
                       L->w.down + layer_expert_at(L, e, (size_t)d * F), F, L->o + (size_t)r0 * d, d, 0.0f);
    }
    gemm_grouped(L->gws, nt, pr, n);
    pf->fwd_gemm += omp_get_wtime() - t0;
}

void experts_backward(moe_layer *L, float *dx, const float *dy, int T, float gbeta) {
    experts_slot_grads(L, dy, 0, T, 1);
    experts_backward_run(L, gbeta);
    experts_scatter(L, dx, 0, T, 1);
}

void experts_scatter(moe_layer *L, float *dx, int t_first, int T, int mine) {
    double t0 = omp_get_wtime();
    /* each token sums its own rows (deterministic, no atomics) */
    sum_token_rows(dx, L->d_xg, NULL, &L->plan, L->slot_expert, t_first, T, L->S, L->cfg.d_model, mine,
                   layer_threads(L));
    L->prof.bwd_scatter = omp_get_wtime() - t0;
}

void experts_slot_grads(moe_layer *L, const float *dy, int t_first, int T, int mine) {
    const int d = L->cfg.d_model, S = L->S, nt = layer_threads(L);
    const moe_plan *pl = &L->plan;
    double t0 = omp_get_wtime();
    /* dw per slot and the weighted output gradient per row */
    #pragma omp parallel for num_threads(nt) schedule(static)
    for (int t = t_first; t < t_first + T; t++) {
        const float *g = dy + (size_t)(t - t_first) * d;
        for (int j = 0; j < S; j++) {
            int i = t * S + j, r = pl->slot_row[i];
            if (r < 0 || (mine && !row_mine(pl, L->slot_expert, i, r))) { L->d_w[i] = 0.0f; continue; }
            const float *orow = L->o + (size_t)r * d;
            float *dor = L->d_o + (size_t)r * d;
            float w = L->slot_weight[i], dot = 0.0f;
            for (int k = 0; k < d; k++) { dot += g[k] * orow[k]; dor[k] = w * g[k]; }
            L->d_w[i] = dot;
        }
    }
    L->prof.bwd_slots = omp_get_wtime() - t0;
}

void experts_backward_run(moe_layer *L, float gbeta) {
    const moe_layer_config *c = &L->cfg;
    const int E = c->n_experts, d = c->d_model, F = c->d_ff, H = L->hid;
    const int swiglu = c->expert == MOE_EXPERT_SWIGLU;
    const moe_plan *pl = &L->plan;
    const int R = pl->n_rows, nt = layer_threads(L);
    gemm_problem *pr = (gemm_problem *)L->problems;
    moe_layer_profile *pf = &L->prof;
    double t0 = omp_get_wtime(), t1;

    int n = 0;
    for (int e = 0; e < E; e++) {
        int m = pl->row_hi[e] - pl->row_lo[e], r0 = pl->row_lo[e];
        /* an expert without rows adds nothing, but when the gradients are
           written its products run with K = 0: the GEMM writes beta C = 0
           (for the experts this process holds: the others have no rows) */
        if (m == 0 && (gbeta != 0.0f || e < L->ex_lo || e >= L->ex_hi)) continue;
        const float *doe = L->d_o + (size_t)r0 * d;
        /* dWd_e[d, F] += dO^T A */
        pr[n++] = gemm_make(d, F, m, 1, doe, d, 0, L->a + (size_t)r0 * F, F,
                       L->g.down + layer_expert_at(L, e, (size_t)d * F), F, gbeta);
        /* dA[m, F] = dO Wd_e */
        pr[n++] = gemm_make(m, F, d, 0, doe, d, 0, L->w.down + layer_expert_at(L, e, (size_t)d * F), F,
                       L->d_a + (size_t)r0 * F, F, 0.0f);
    }
    gemm_grouped(L->gws, nt, pr, n);
    t1 = omp_get_wtime();
    pf->bwd_gemm = t1 - t0;
    t0 = t1;

    #pragma omp parallel for num_threads(nt) schedule(static)
    for (int r = 0; r < R; r++) {
        if (!row_mine(pl, L->slot_expert, pl->row_slot[r], r)) continue;
        const float *hr = L->h + (size_t)r * H;
        const float *dar = L->d_a + (size_t)r * F;
        float *dhr = L->d_h + (size_t)r * H;
        if (swiglu) act_swiglu_backward(dhr, dhr + F, dar, hr, hr + F, (size_t)F);
        else act_gelu_backward(dhr, dar, hr, (size_t)F);
    }

    t1 = omp_get_wtime();
    pf->bwd_act = t1 - t0;
    t0 = t1;
    /* weight gradients and the first half of dXg in one call, then the second
       half (it adds into the same dXg, so it cannot share the call) */
    n = 0;
    for (int e = 0; e < E; e++) {
        int m = pl->row_hi[e] - pl->row_lo[e], r0 = pl->row_lo[e];
        if (m == 0 && (gbeta != 0.0f || e < L->ex_lo || e >= L->ex_hi)) continue; /* as above */
        const float *xe = L->xg + (size_t)r0 * d;
        const float *dhe = L->d_h + (size_t)r0 * H;
        float *dxe = L->d_xg + (size_t)r0 * d;
        if (swiglu) {
            pr[n++] = gemm_make(F, d, m, 1, dhe, H, 0, xe, d, L->g.gate + layer_expert_at(L, e, (size_t)F * d), d, gbeta);
            pr[n++] = gemm_make(F, d, m, 1, dhe + F, H, 0, xe, d, L->g.up + layer_expert_at(L, e, (size_t)F * d), d, gbeta);
            pr[n++] = gemm_make(m, d, F, 0, dhe, H, 0, L->w.gate + layer_expert_at(L, e, (size_t)F * d), d, dxe, d, 0.0f);
        } else {
            pr[n++] = gemm_make(F, d, m, 1, dhe, H, 0, xe, d, L->g.up + layer_expert_at(L, e, (size_t)F * d), d, gbeta);
            pr[n++] = gemm_make(m, d, F, 0, dhe, H, 0, L->w.up + layer_expert_at(L, e, (size_t)F * d), d, dxe, d, 0.0f);
        }
    }
    gemm_grouped(L->gws, nt, pr, n);
    if (swiglu) {
        n = 0;
        for (int e = 0; e < E; e++) {
            int m = pl->row_hi[e] - pl->row_lo[e], r0 = pl->row_lo[e];
            if (m == 0) continue;
            pr[n++] = gemm_make(m, d, F, 0, L->d_h + (size_t)r0 * H + F, H, 0,
                           L->w.up + layer_expert_at(L, e, (size_t)F * d), d, L->d_xg + (size_t)r0 * d, d, 1.0f);
        }
        gemm_grouped(L->gws, nt, pr, n);
    }

    pf->bwd_gemm += omp_get_wtime() - t0;
}
