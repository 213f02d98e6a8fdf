/* plan.c: the dispatch plan of the MoE layer: how many slots each expert got,
 * the capacity rule, which assignments are kept, and where each kept
 * assignment lives in the expert-major row buffers.
 *
 * capacity = ceil(cf * T * k / E), k the current top_k (nominal, even where
 * top-p, GShard's random policy or ReLU routing leave slots empty);
 * cf = MOE_DROPLESS keeps everything. Over capacity, an expert keeps
 *   by position: slot j = 0 of every token first, then j = 1, ..., each in
 *                token order (GShard's priority of first choices);
 *   by score:    the highest router score first, ties to the lower token.
 * Rows of expert e are [offset[e], offset[e+1]); within an expert, rows follow
 * token order, so the gather and the combine walk memory forward.
 * Not here: the routing itself (router.c) or any arithmetic on rows.
 */
#include "layer/layer.h"

#include <math.h>
#include <string.h>

#include "core/sort.h"

void plan_build(moe_layer *L, int T) {
    const moe_layer_config *c = &L->cfg;
    const int E = c->n_experts, S = L->S;
    const int n_slots = T * S;
    moe_plan *pl = &L->plan;
    const int *ex = L->slot_expert;
    int *slot_row = pl->slot_row;

    /* routed[] was counted by the router; decide kept flags into slot_row
       (1 kept, -1 dropped or empty) */
    int cap = -1;
    if (c->capacity_factor != MOE_DROPLESS) {
        /* the nominal T * k, whatever empty slots top-p, GShard's random
           policy or ReLU routing left */
        double a = (double)T * L->k;
        double want = ceil((double)c->capacity_factor * a / E);
        cap = want > a ? (int)a : (int)want; /* no expert can take more than T * k */
    }
    pl->capacity = cap;
    memset(pl->kept, 0, sizeof(int) * (size_t)E);
    if (cap < 0) {
        for (int i = 0; i < n_slots; i++) {
            slot_row[i] = ex[i] >= 0 ? 1 : -1;
            if (ex[i] >= 0) pl->kept[ex[i]]++;
        }
    } else if (c->drop_policy == MOE_DROP_POSITION) {
        for (int j = 0; j < S; j++)
            for (int t = 0; t < T; t++) {
                int i = t * S + j, e = ex[i];
                if (e >= 0 && pl->kept[e] < cap) { slot_row[i] = 1; pl->kept[e]++; }
                else slot_row[i] = -1;
            }
    } else { /* MOE_DROP_SCORE */
        /* bucket slots by expert in token order, then sort each bucket */
        int *start = pl->offset;                 /* [E + 1] as scratch */
        start[0] = 0;
        for (int e = 0; e < E; e++) start[e + 1] = start[e] + pl->routed[e];
        memcpy(pl->fill, start, sizeof(int) * (size_t)E);
        for (int i = 0; i < n_slots; i++) {
            slot_row[i] = -1;
            if (ex[i] >= 0) pl->order[pl->fill[ex[i]]++] = i;
        }
        for (int e = 0; e < E; e++) {
            int *b = pl->order + start[e], n = pl->routed[e];
            moe_sort_desc_stable(b, pl->row_slot, n, L->slot_score, 1); /* ties: token order */
            int keep = n < cap ? n : cap;
            for (int r = 0; r < keep; r++) slot_row[b[r]] = 1;
            pl->kept[e] = keep;
        }
    }

    /* offsets over kept rows, then rows in token order within each expert */
    pl->offset[0] = 0;
    for (int e = 0; e < E; e++) pl->offset[e + 1] = pl->offset[e] + pl->kept[e];
    pl->n_rows = pl->offset[E];
    memcpy(pl->fill, pl->offset, sizeof(int) * (size_t)E);
    for (int i = 0; i < n_slots; i++) {
        if (slot_row[i] < 0) continue;
        int r = pl->fill[ex[i]]++;
        slot_row[i] = r;
        pl->row_slot[r] = i;
    }

    /* the rows this process runs: all, or under expert parallelism its
       experts' (its share of each when experts are replicated) */
    const layer_dist *ds = &L->dist;
    for (int e = 0; e < E; e++) {
        int lo = pl->offset[e], n = pl->kept[e];
        if (!ds->comm) { pl->row_lo[e] = lo; pl->row_hi[e] = lo + n; }
        else if (e < ds->e_lo || e >= ds->e_hi) { pl->row_lo[e] = pl->row_hi[e] = lo; }
        else {
            pl->row_lo[e] = lo + (int)((int64_t)n * ds->part / ds->n_parts);
            pl->row_hi[e] = lo + (int)((int64_t)n * (ds->part + 1) / ds->n_parts);
        }
    }

    moe_route_stats *st = &L->stats;
    st->capacity = cap;
    st->dropped = st->assignments - pl->n_rows;
    st->tokens_per_expert = pl->routed;
    st->kept_per_expert = pl->kept;
}
