/* layer_dist.c: the MoE layer under expert parallelism (layer.h, layer_dist).
 *
 * P ranks each hold T rows of the global batch of P T rows (rank order).
 * Forward:
 *   xg[P T, d]  = all-gather(x)                       every rank, same bytes
 *   route, plan on xg exactly as one process (same router, same draws,
 *   same capacity and drops, same losses and statistics on every rank)
 *   y_part[P T, d] = combine over this rank's rows (its experts, its share)
 *   y[T, d]     = reduce-scatter(y_part)  (+ shared expert on the own rows)
 * Backward:
 *   dyg = all-gather(dy); expert backward over the own rows gives dx_part,
 *   dw (zero elsewhere) and the own experts' weight gradients;
 *   dw = all-reduce(dw) (each entry comes from exactly one rank: exact);
 *   dx = reduce-scatter(dx_part) + shared expert + the router's dx of the
 *   own rows (the router's backward runs on the global batch on every rank,
 *   so its weight gradient is already the global one: not all-reduced).
 * Bytes received per rank and layer, b = 4 bytes, N = P T rows:
 *   forward  (P-1) T d b (all-gather) + (P-1) T d b (reduce-scatter)
 *   backward (P-1) T d b + N S b (all-reduce of dw) + (P-1) T d b
 * Not here: the arithmetic of any stage (router.c, plan.c, experts.c).
 */
#include "layer/layer.h"

#include <omp.h>
#include <string.h>

moe_status layer_set_dist(moe_layer *L, moe_comm *comm, int e_lo, int e_hi, int part, int n_parts,
                          moe_error *err) {
    const moe_layer_config *c = &L->cfg;
    if (!comm || e_lo < 0 || e_hi > c->n_experts || e_lo >= e_hi || n_parts < 1 || part < 0 || part >= n_parts)
        return moe_err(err, MOE_ERR_ARG, "layer_set_dist: experts [%d, %d) of %d, part %d of %d", e_lo, e_hi,
                       c->n_experts, part, n_parts);
    const size_t n = (size_t)c->max_tokens * (size_t)c->d_model;
    layer_dist *ds = &L->dist;
    if (!ds->gy) {
        ds->gy = moe_allocs_get(&L->mem, sizeof(float) * n);
        ds->gdx = moe_allocs_get(&L->mem, sizeof(float) * n);
        ds->rdx = moe_allocs_get(&L->mem, sizeof(float) * n);
        if (!ds->gy || !ds->gdx || !ds->rdx)
            return moe_err(err, MOE_ERR_NOMEM, "layer_set_dist: no memory for 3 x %d x %d floats",
                           c->max_tokens, c->d_model);
    }
    ds->comm = comm;
    ds->e_lo = e_lo;
    ds->e_hi = e_hi;
    ds->part = part;
    ds->n_parts = n_parts;
    return MOE_OK;
}

moe_status layer_forward_dist(moe_layer *L, float *y, const float *x, int T, moe_error *err) {
    const moe_layer_config *c = &L->cfg;
    layer_dist *ds = &L->dist;
    moe_comm *cm = ds->comm;
    const int d = c->d_model, P = cm->size;
    const int Tg = T * P;
    if (Tg > c->max_tokens)
        return moe_err(err, MOE_ERR_SHAPE, "moe_layer_forward: %d ranks x %d tokens exceed max_tokens = %d",
                       P, T, c->max_tokens);
    const size_t nl = (size_t)T * d;
    moe_status st = cm->allgather(cm, L->x_saved, x, sizeof(float) * nl, err);
    if (st != MOE_OK) return st;
    if (c->select == MOE_SELECT_HASH) {
        memcpy(ds->gy, L->token_ids, sizeof(int32_t) * (size_t)T);
        st = cm->allgather(cm, L->token_ids, ds->gy, sizeof(int32_t) * (size_t)T, err);
        if (st != MOE_OK) return st;
        L->T_ids = Tg;
    }
    ds->T_local = T;
    L->T = Tg;
    double t0 = omp_get_wtime();
    router_forward(L, L->x_saved, Tg);
    double t1 = omp_get_wtime();
    plan_build(L, Tg);
    router_stats_after_plan(L, Tg);
    L->prof.fwd_route = t1 - t0;
    L->prof.fwd_plan = omp_get_wtime() - t1;
    experts_forward(L, ds->gy, L->x_saved, Tg);
    st = cm->reduce_scatter_f32(cm, y, ds->gy, nl, err);
    if (st != MOE_OK) return st;
    if (L->Fs) shared_forward(L, y, L->x_saved + (size_t)cm->rank * nl, T);
    L->have_ids = 0;
    L->have_forward = 1;
    return MOE_OK;
}

moe_status layer_backward_dist(moe_layer *L, float *dx, const float *dy, float gbeta, moe_error *err) {
    const moe_layer_config *c = &L->cfg;
    layer_dist *ds = &L->dist;
    moe_comm *cm = ds->comm;
    const int d = c->d_model, T = ds->T_local, Tg = L->T;
    const size_t nl = (size_t)T * d, off = (size_t)cm->rank * nl;
    moe_status st = cm->allgather(cm, ds->gy, dy, sizeof(float) * nl, err);
    if (st != MOE_OK) return st;
    experts_backward(L, ds->gdx, ds->gy, Tg, gbeta);
    st = cm->allreduce_f32(cm, L->d_w, (size_t)Tg * L->S, err);
    if (st != MOE_OK) return st;
    st = cm->reduce_scatter_f32(cm, dx, ds->gdx, nl, err);
    if (st != MOE_OK) return st;
    if (L->Fs) shared_backward(L, dx, dy, L->x_saved + off, T, gbeta);
    double t0 = omp_get_wtime();
    memset(ds->rdx, 0, sizeof(float) * (size_t)Tg * d);
    router_backward(L, ds->rdx, L->x_saved, Tg, gbeta);
    const float *r = ds->rdx + off;
    for (size_t i = 0; i < nl; i++) dx[i] += r[i];
    L->prof.bwd_route = omp_get_wtime() - t0;
    return MOE_OK;
}
