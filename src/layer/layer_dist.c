/* layer_dist.c: the MoE layer under expert parallelism (layer.h, layer_dist).
 *
 * P ranks each hold T rows of the global batch of N = P T rows (rank order);
 * rank r runs expert group r % EP (E / EP experts), share r / EP of their rows.
 * Forward:
 *   z[T, E] = x Wr^T locally; all-gather -> the global batch's logits
 *   route, plan the global batch exactly as one process (same noise draws,
 *   capacity, drops, losses, statistics and balance bias on every rank)
 *   rows: each kept assignment (token t, expert e) is a row of the global
 *   expert-major plan; its token's rank sends x[t] to the row's owner
 *   (all-to-all-v, per-rank row counts known from the plan: no count
 *   exchange needed), the owner runs its grouped GEMMs, and sends the output
 *   rows back (all-to-all-v); each rank combines its own tokens.
 * Backward, in reverse: dw and the weighted dy rows where the token lives;
 *   d_o rows to the owners; expert GEMMs (weight gradients stay there);
 *   dx rows back; scatter; all-gather dw (small) so that every rank has the
 *   global dlogits (the balance losses' gradients need global statistics);
 *   the router's products on the own tokens (its gradient is then summed
 *   over the ranks with the other replicated ones, trainer_dist.c).
 * Bytes received per rank and layer (b = 4, k kept rows per token, d model
 * width, a fraction (P - 1) / P of rows leave their rank on average: a row's
 * owner is one of the P ranks, expert group x share of the rows):
 *   forward  (P - 1) T E b  +  2 k T d b (P - 1) / P
 *   backward (P - 1) T S b  +  2 k T d b (P - 1) / P
 * Not here: the arithmetic of any stage (router.c, plan.c, experts.c).
 */
#include "layer/layer.h"
#include "kernels/gemm.h"

#include <limits.h>
#include <omp.h>
#include <string.h>

moe_status layer_set_dist(moe_layer *L, moe_comm *comm, int ep, moe_error *err) {
    const moe_layer_config *c = &L->cfg;
    const int E = c->n_experts;
    if (!comm || ep < 1 || comm->size % ep || E % ep)
        return moe_err(err, MOE_ERR_ARG, "layer_set_dist: %d experts over %d of %d ranks", E, ep,
                       comm ? comm->size : 0);
    const size_t R = (size_t)c->max_tokens * (size_t)L->S, P = (size_t)comm->size;
    if (R * (size_t)c->d_model > (size_t)INT_MAX)
        return moe_err(err, MOE_ERR_ARG, "layer_set_dist: %zu rows of %d exceed one all-to-all's INT_MAX floats",
                       R, c->d_model);
    layer_dist *ds = &L->dist;
    if (!ds->sbuf) {
        int ok = 1;
#define GET(p, n) do { (p) = moe_allocs_get(&L->mem, sizeof(*(p)) * (n)); ok &= (p) != NULL; } while (0)
        GET(ds->sbuf, R * (size_t)c->d_model);
        GET(ds->rbuf, R * (size_t)c->d_model);
        GET(ds->row_owner, R);
        GET(ds->send_rows, R);
        GET(ds->recv_rows, R);
        GET(ds->n_send, P);
        GET(ds->n_recv, P);
        GET(ds->cnt, 4 * P);
        GET(ds->dsp, 4 * P);
#undef GET
        if (!ok) return moe_err(err, MOE_ERR_NOMEM, "layer_set_dist: no memory for the exchange buffers");
    }
    const int er = comm->rank % ep, Ee = E / ep;
    if (L->ex_lo != er * Ee || L->ex_hi != (er + 1) * Ee)
        return moe_err(err, MOE_ERR_ARG, "layer_set_dist: the layer holds experts %d..%d, but rank %d of "
                       "expert-parallel %d runs experts %d..%d (create it with those: layer_create_with)",
                       L->ex_lo, L->ex_hi - 1, comm->rank, ep, er * Ee, (er + 1) * Ee - 1);
    ds->comm = comm;
    ds->ep = ep;
    ds->e_lo = er * Ee;
    ds->e_hi = (er + 1) * Ee;
    ds->part = comm->rank / ep;
    ds->n_parts = comm->size / ep;
    return MOE_OK;
}

/* Who sends which rows where, from the global plan: row_owner, send_rows
 * (this rank's tokens' rows, grouped by owner, row order within), recv_rows
 * (this rank's rows, grouped by the token's rank), counts and offsets in
 * floats of d per row (cnt/dsp [0, P): send, [P, 2P): receive). */
static void exchange_lists(moe_layer *L, int T) {
    layer_dist *ds = &L->dist;
    const moe_plan *pl = &L->plan;
    const int E = L->cfg.n_experts, S = L->S, d = L->cfg.d_model, R = pl->n_rows;
    const int P = ds->comm->size, me = ds->comm->rank, Ee = E / ds->ep, np = ds->n_parts;
    for (int e = 0; e < E; e++) {
        const int lo = pl->offset[e], n = pl->kept[e], er = e / Ee;
        for (int p = 0; p < np; p++) {
            int a = lo + (int)((int64_t)n * p / np), b = lo + (int)((int64_t)n * (p + 1) / np);
            for (int r = a; r < b; r++) ds->row_owner[r] = p * ds->ep + er;
        }
    }
    memset(ds->n_send, 0, sizeof(int) * (size_t)P);
    memset(ds->n_recv, 0, sizeof(int) * (size_t)P);
    for (int r = 0; r < R; r++) {
        const int h = pl->row_slot[r] / S / T, o = ds->row_owner[r];
        if (h == me) ds->n_send[o]++;
        if (o == me) ds->n_recv[h]++;
    }
    int *sfill = ds->cnt + 2 * P, *rfill = ds->cnt + 3 * P; /* scratch */
    int so = 0, ro = 0;
    for (int p = 0; p < P; p++) {
        sfill[p] = so; rfill[p] = ro;
        ds->cnt[p] = ds->n_send[p] * d; ds->dsp[p] = so * d;
        ds->cnt[P + p] = ds->n_recv[p] * d; ds->dsp[P + p] = ro * d;
        so += ds->n_send[p];
        ro += ds->n_recv[p];
    }
    for (int r = 0; r < R; r++) {
        const int h = pl->row_slot[r] / S / T, o = ds->row_owner[r];
        if (h == me) ds->send_rows[sfill[o]++] = r;
        if (o == me) ds->recv_rows[rfill[h]++] = r;
    }
}

/* Rows src[list_a[i]] travel to dst[list_b[i]] of the other side:
 * forward = from the tokens' ranks to the owners (send_rows -> recv_rows),
 * else back. */
static moe_status move_rows(moe_layer *L, float *dst, const float *src, int forward, moe_error *err) {
    layer_dist *ds = &L->dist;
    const int P = ds->comm->size, d = L->cfg.d_model, nt = layer_threads(L);
    const int *out_rows = forward ? ds->send_rows : ds->recv_rows;
    const int *in_rows = forward ? ds->recv_rows : ds->send_rows;
    const int *cs = forward ? ds->cnt : ds->cnt + P, *ds_ = forward ? ds->dsp : ds->dsp + P;
    const int *cr = forward ? ds->cnt + P : ds->cnt, *dr = forward ? ds->dsp + P : ds->dsp;
    int n_out = 0, n_in = 0;
    for (int p = 0; p < P; p++) { n_out += cs[p] / (d ? d : 1); n_in += cr[p] / (d ? d : 1); }
    #pragma omp parallel for num_threads(nt) schedule(static)
    for (int i = 0; i < n_out; i++)
        memcpy(ds->sbuf + (size_t)i * d, src + (size_t)out_rows[i] * d, sizeof(float) * (size_t)d);
    moe_status st = ds->comm->alltoallv_f32(ds->comm, ds->sbuf, cs, ds_, ds->rbuf, cr, dr, err);
    if (st != MOE_OK) return st;
    #pragma omp parallel for num_threads(nt) schedule(static)
    for (int i = 0; i < n_in; i++)
        memcpy(dst + (size_t)in_rows[i] * d, ds->rbuf + (size_t)i * d, sizeof(float) * (size_t)d);
    return MOE_OK;
}

moe_status layer_forward_dist(moe_layer *L, float *y, const float *x, int T, moe_error *err) {
    const moe_layer_config *c = &L->cfg;
    layer_dist *ds = &L->dist;
    moe_comm *cm = ds->comm;
    const int d = c->d_model, E = c->n_experts, P = cm->size, nt = layer_threads(L);
    const int Tg = T * P, off = cm->rank * T;
    if (Tg > c->max_tokens)
        return moe_err(err, MOE_ERR_SHAPE, "moe_layer_forward: %d ranks x %d tokens exceed max_tokens = %d",
                       P, T, c->max_tokens);
    const size_t nl = (size_t)T * d;
    moe_status st = MOE_OK;
    memcpy(L->x_saved, x, sizeof(float) * nl);   /* this rank's rows only */
    ds->T_local = T;
    L->T = Tg;
    double t0 = omp_get_wtime();
    if (c->select == MOE_SELECT_HASH) {
        memcpy(ds->sbuf, L->token_ids, sizeof(int32_t) * (size_t)T);
        st = cm->allgather(cm, L->token_ids, ds->sbuf, sizeof(int32_t) * (size_t)T, err);
        if (st != MOE_OK) return st;
        L->T_ids = Tg;
        select_tokens(L, Tg);
        router_losses(L, Tg);
    } else {
        const float *xr = L->x_saved;
        if (c->jitter > 0.0f && L->train) {
            /* the global batch's draws in order (as one process), this rank's applied */
            for (size_t i = 0; i < (size_t)Tg * d; i++)
                L->jit[i] = 1.0f + c->jitter * (2.0f * moe_rng_f32(&L->rng) - 1.0f);
            for (size_t i = 0; i < nl; i++) L->xr[i] = L->x_saved[i] * L->jit[(size_t)off * d + i];
            xr = L->xr;
        }
        float *zl = ds->sbuf, *znl = ds->sbuf + (size_t)T * E;
        gemm_problem pr[2] = {
            gemm_make(T, E, d, 0, xr, d, 1, L->w.router, d, zl, E, 0.0f),
            gemm_make(T, E, d, 0, xr, d, 1, L->w.noise, d, znl, E, 0.0f),
        };
        gemm_grouped(L->gws, nt, pr, c->noisy_gate ? 2 : 1);
        st = cm->allgather(cm, c->noisy_gate ? L->logits : L->H, zl, sizeof(float) * (size_t)T * E, err);
        if (st == MOE_OK && c->noisy_gate)
            st = cm->allgather(cm, L->zn, znl, sizeof(float) * (size_t)T * E, err);
        if (st != MOE_OK) return st;
        router_route(L, Tg);
    }
    double t1 = omp_get_wtime();
    plan_build(L, Tg);
    router_stats_after_plan(L, Tg);
    exchange_lists(L, T);
    L->prof.fwd_route = t1 - t0;
    L->prof.fwd_plan = omp_get_wtime() - t1;
    t0 = omp_get_wtime();
    /* x rows to the experts' owners */
    {
        /* the rows to send are x[token - off]: stage them as xg rows of the
           global plan on the sending side, then move */
        const int S = L->S;
        int n_out = 0;
        for (int p = 0; p < P; p++) n_out += ds->n_send[p];
        for (int i = 0; i < n_out; i++) {
            const int r = ds->send_rows[i];
            memcpy(L->o + (size_t)r * d, L->x_saved + (size_t)(L->plan.row_slot[r] / S - off) * d,
                   sizeof(float) * (size_t)d);
        }
    }
    st = move_rows(L, L->xg, L->o, 1, err);
    if (st != MOE_OK) return st;
    L->prof.fwd_gather = omp_get_wtime() - t0;
    experts_run(L);
    t0 = omp_get_wtime();
    st = move_rows(L, L->o, L->o, 0, err);     /* outputs back to the tokens' ranks */
    if (st != MOE_OK) return st;
    experts_combine(L, y, off, T, 0);
    L->prof.fwd_combine = omp_get_wtime() - t0;
    if (L->Fs) shared_forward(L, y, L->x_saved, T);
    L->have_ids = 0;
    L->have_forward = 1;
    return MOE_OK;
}

moe_status layer_backward_dist(moe_layer *L, float *dx, const float *dy, float gbeta, moe_error *err) {
    const moe_layer_config *c = &L->cfg;
    layer_dist *ds = &L->dist;
    moe_comm *cm = ds->comm;
    const int d = c->d_model, T = ds->T_local, Tg = L->T, S = L->S, off = cm->rank * T;
    experts_slot_grads(L, dy, off, T, 0);
    moe_status st = move_rows(L, L->d_o, L->d_o, 1, err);  /* weighted dy rows to the owners */
    if (st != MOE_OK) return st;
    experts_backward_run(L, gbeta);
    st = move_rows(L, L->d_xg, L->d_xg, 0, err);           /* dx rows back */
    if (st != MOE_OK) return st;
    experts_scatter(L, dx, off, T, 0);
    /* every rank needs the global batch's dw for the router's dlogits */
    memcpy(ds->sbuf, L->d_w + (size_t)off * S, sizeof(float) * (size_t)T * S);
    st = cm->allgather(cm, L->d_w, ds->sbuf, sizeof(float) * (size_t)T * S, err);
    if (st != MOE_OK) return st;
    if (L->Fs) shared_backward(L, dx, dy, L->x_saved, T, gbeta);
    double t0 = omp_get_wtime();
    if (c->select == MOE_SELECT_HASH) {
        if (gbeta == 0.0f) memset(L->g.router, 0, sizeof(float) * (size_t)c->n_experts * (size_t)d);
    } else {
        router_backward_dlogits(L, Tg);
        router_backward_gemms(L, dx, L->x_saved, off, T, gbeta);
    }
    L->prof.bwd_route = omp_get_wtime() - t0;
    return MOE_OK;
}
