/* moe_ffn.c: the feed-forward blocks of the inference engine: dense SwiGLU,
 * and the MoE block (router, top-k, experts grouped over the batch, shared
 * expert), as llama.cpp's build_ffn / build_moe_ffn compute them.
 *
 * For: y[n, d] from the normed rows xn[n, d] of one layer. Not for: the
 * training MoE layer (src/layer/, with capacity, losses and backward).
 *
 * MoE, per token t (router in fp32 whatever the router weight's type):
 *   p = softmax(xn_t Wr^T) over all E (or sigmoid, each alone)
 *   S = the k largest of p (+ selection bias), ties to the lower index, only
 *       among the kept expert groups when there are groups; top-p: the
 *       prefix of S (best first) whose sum reaches top_p
 *   (moe's own selections, arch.h: hash S = (h(id) + j) mod E, w = 1/k;
 *   ReLU S = {e : z_e > 0}, w = z_e; expert choice over the chunk, w = p_e;
 *   none renormalised; a token may get no expert: y_t = 0 + shared)
 *   w_e = p_e for e in S; w /= max(sum(w), 2^-14) when renormalised; w *= scale when
 *         scale is neither 0 nor 1
 *   y_t = sum_{e in S} w_e down_e(silu(gate_e xn_t) * up_e xn_t)
 *         (+ shared(xn_t), times sigmoid(xn_t . g) when gated)
 * The batch is grouped per expert: each expert gathers its tokens' rows and
 * runs its three products over them at once (one weight pass per chunk), then
 * scatters w_e * out back. Each token's contributions are added in expert
 * order, so the result does not depend on how the tokens were batched.
 * Experts go in waves that fit the scratch (all of them at the model's
 * top_k): one gather, one activation and one scatter per wave, each split
 * across threads by rows (tokens for the scatter) when the chunk is long,
 * and the wave's gate and up products in one quant_matmul_batch, its down
 * products in another (one parallel region each).
 */
#include <math.h>
#include <string.h>

#include "core/error.h"
#include "infer/engine.h"
#include "kernels/fastmath.h"
#include "layer/route_rules.h"

/* Rows of the SwiGLU activation: g = silu(g + bg) * (u + bu) in place. */
typedef struct act_ctx {
    float *g;          /* [n, ff] gate products, then the activation */
    float *u;          /* [n, ff] up products */
    const float *bg, *bu; /* [ff] biases or NULL */
    int64_t ff;
} act_ctx;

/* silu(g) u = g sigmoid(g) u, the sigmoid by exp_vec (vectorised, ~2 ulp of
 * expf): the formula of the training kernel act_swiglu_forward. */
static void act_rows(void *p, int r0, int r1) {
    const act_ctx *c = p;
    for (int r = r0; r < r1; r++) {
        float *g = c->g + (size_t)r * c->ff, *u = c->u + (size_t)r * c->ff;
        if (c->bg) for (int64_t i = 0; i < c->ff; i++) g[i] += c->bg[i];
        if (c->bu) for (int64_t i = 0; i < c->ff; i++) u[i] += c->bu[i];
        #pragma omp simd
        for (int64_t i = 0; i < c->ff; i++) {
            const float s = 1.0f / (1.0f + exp_vec(-g[i]));
            g[i] = g[i] * s * u[i];
        }
    }
}

/* out[n, d] = down(silu(gate xn + bg) * (up xn + bu)) + bd. */
static moe_status swiglu(moe_infer *m, float *out, const float *xn, int n,
                         const arch_mat *gate, const arch_mat *up, const arch_mat *down,
                         int64_t e, const float *bg, const float *bu, const float *bd,
                         moe_error *err) {
    const int64_t ff = gate->rows, d = down->rows;
    moe_status st;
    const quant_mm gu[2] = {infer_mm(m->hg, xn, gate, e, n), infer_mm(m->hu, xn, up, e, n)};
    if ((st = infer_matmul_batch(m, gu, 2, err)) != MOE_OK) return st;
    act_ctx c = {m->hg, m->hu, bg, bu, ff};
    infer_for_rows(m, n, (size_t)ff, act_rows, &c);
    if ((st = infer_matmul(m, out, m->hg, down, e, n, err)) != MOE_OK) return st;
    if (bd)
        for (int r = 0; r < n; r++)
            for (int64_t i = 0; i < d; i++) out[(size_t)r * d + i] += bd[i];
    return MOE_OK;
}

/* Gather of a wave: xg[r] = xn[row[r]] for its rows. */
typedef struct gather_ctx {
    float *xg;         /* [rows, d] */
    const float *xn;   /* [n, d] */
    const int *row;    /* [rows] token of each slot */
    int d;
} gather_ctx;

static void gather_rows(void *p, int r0, int r1) {
    const gather_ctx *c = p;
    for (int r = r0; r < r1; r++)
        memcpy(c->xg + (size_t)r * c->d, c->xn + (size_t)c->row[r] * c->d,
               sizeof(float) * (size_t)c->d);
}

/* Scatter of a wave (slots s0 .. s1), by token so that no two threads write
 * one row: y_t (+)= w_s yo[s - s0] over the token's slots in the wave, in
 * expert order; the token's first slot starts the sum from 0. */
typedef struct scatter_ctx {
    float *y;          /* [n, d] */
    const float *yo;   /* [s1 - s0, d] expert outputs of the wave */
    const int *tslot;  /* [n, stride] each token's slots, ascending (= expert order) */
    const int *nslot;  /* [n] how many */
    const float *w;    /* weight of each slot */
    int stride, s0, s1, d;
} scatter_ctx;

static void scatter_rows(void *p, int t0, int t1) {
    const scatter_ctx *c = p;
    for (int t = t0; t < t1; t++) {
        float *yt = c->y + (size_t)t * c->d;
        for (int j = 0; j < c->nslot[t]; j++) {
            const int sl = c->tslot[(size_t)t * c->stride + j];
            if (sl < c->s0 || sl >= c->s1) continue;
            const float *yr = c->yo + (size_t)(sl - c->s0) * c->d;
            const float w = c->w[sl];
            if (j == 0) {
                #pragma omp simd /* y and yo are different buffers */
                for (int i = 0; i < c->d; i++) yt[i] = 0.0f + w * yr[i];
            } else {
                #pragma omp simd
                for (int i = 0; i < c->d; i++) yt[i] += w * yr[i];
            }
        }
    }
}

/* y_t += gate_t yo_t for the shared expert (gate 1, or sigmoid(xn_t . g)). */
typedef struct shared_ctx {
    float *y;
    const float *yo, *xn;
    const float *g;    /* [d] gate weight or NULL */
    int d;
} shared_ctx;

static void shared_rows(void *p, int t0, int t1) {
    const shared_ctx *c = p;
    for (int t = t0; t < t1; t++) {
        float gate = 1.0f;
        if (c->g) {
            const float *xt = c->xn + (size_t)t * c->d;
            float z = 0.0f;
            for (int i = 0; i < c->d; i++) z += c->g[i] * xt[i];
            gate = 1.0f / (1.0f + expf(-z));
        }
        float *yt = c->y + (size_t)t * c->d;
        const float *yr = c->yo + (size_t)t * c->d;
        #pragma omp simd
        for (int i = 0; i < c->d; i++) yt[i] += yr[i] * gate;
    }
}

/* Router: per token t, m->n_sel[t] experts in m->sel[t, :] with weights
 * m->sel_w[t, :] (stride E), from m->r_logits [n, E] (the token ids for
 * hash routing); counts. */
static void route(moe_infer *m, int l, int n) {
    const arch_hparams *hp = &m->am->hp;
    const arch_layer *ly = &m->am->layers[l];
    const int E = hp->n_experts;
    int64_t *cnt = m->counts + (size_t)l * E;
    const int scale = hp->w_scale != 0.0f && hp->w_scale != 1.0f;
    if (hp->select == ARCH_SEL_EC) for (int t = 0; t < n; t++) m->n_sel[t] = 0;
    for (int t = 0; t < n; t++) {
        const int k = m->row_k[t];
        float *p = m->r_logits + (size_t)t * E;
        int *sel = m->sel + (size_t)t * E;
        float *w = m->sel_w + (size_t)t * E;
        if (hp->select == ARCH_SEL_HASH) {
            const int e0 = route_hash_first(m->cur_tokens[t], E);
            for (int j = 0; j < k; j++) { sel[j] = (e0 + j) % E; w[j] = 1.0f / (float)k; }
            m->n_sel[t] = k;
            continue;
        }
        if (hp->select == ARCH_SEL_RELU) {
            int c = 0;
            for (int e = 0; e < E; e++)
                if (p[e] > 0.0f) { sel[c] = e; w[c] = p[e]; c++; }
            m->n_sel[t] = c;
            continue;
        }
        if (hp->gating_sigmoid) {
            #pragma omp simd
            for (int e = 0; e < E; e++) p[e] = 1.0f / (1.0f + exp_vec(-p[e]));
        } else {
            float mx = -INFINITY;
            for (int e = 0; e < E; e++) if (p[e] > mx) mx = p[e];
            #pragma omp simd
            for (int e = 0; e < E; e++) p[e] = exp_vec(p[e] - mx);
            double sum = 0.0;
            for (int e = 0; e < E; e++) sum += p[e];
            const float inv = (float)(1.0 / sum);
            for (int e = 0; e < E; e++) p[e] *= inv;
        }
        if (hp->select == ARCH_SEL_EC) continue; /* after every token's scores */
        /* selection scores: p (+ bias), then the kept groups */
        float *sc = p;
        if (ly->exp_probs_b) {
            sc = m->sel_sc;
            for (int e = 0; e < E; e++) sc[e] = p[e] + ly->exp_probs_b[e];
        }
        /* picked[e]: 1 taken or outside the kept groups */
        unsigned char *picked = m->picked;
        memset(picked, 0, (size_t)E);
        if (hp->n_groups > 0) {
            route_group_mask(picked, sc, E, hp->n_groups, hp->topk_groups);
            for (int e = 0; e < E; e++) picked[e] = !picked[e];
        }
        /* k passes of argmax over the open experts, best first; '>' keeps the lower index on ties */
        int c = 0;
        for (int j = 0; j < k; j++) {
            int best = -1;
            for (int e = 0; e < E; e++) {
                if (picked[e]) continue;
                if (best < 0 || sc[e] > sc[best]) best = e;
            }
            if (best < 0) break;
            picked[best] = 1;
            sel[c] = best;
            w[c] = p[best];
            c++;
        }
        if (hp->select == ARCH_SEL_TOPP) { /* the prefix whose sum reaches top_p */
            float cum = 0.0f;
            int j = 0;
            while (j < c) { cum += w[j]; j++; if (cum >= hp->top_p) break; }
            c = j;
        }
        m->n_sel[t] = c;
        if (hp->norm_w) {
            float sum = 0.0f;
            for (int j = 0; j < c; j++) sum += w[j];
            sum = fmaxf(sum, 6.103515625e-5f); /* llama.cpp's clamp: the smallest f16 normal */
            for (int j = 0; j < c; j++) w[j] /= sum;
        }
    }
    if (hp->select == ARCH_SEL_EC) {
        /* expert e takes the C tokens of the chunk with the largest p[:, e]
           (ties to the lower token), w = p; in expert order per token */
        const double want = ceil((double)hp->ec_capacity * n / E);
        const int C = want > n ? n : (int)want;
        unsigned char *taken = m->ec_taken;
        for (int e = 0; e < E; e++) {
            memset(taken, 0, (size_t)n);
            for (int r = 0; r < C; r++) {
                int best = -1;
                for (int t = 0; t < n; t++)
                    if (!taken[t] && (best < 0 || m->r_logits[(size_t)t * E + e] >
                                                  m->r_logits[(size_t)best * E + e])) best = t;
                taken[best] = 1;
                const int j = m->n_sel[best]++;
                m->sel[(size_t)best * E + j] = e;
                m->sel_w[(size_t)best * E + j] = m->r_logits[(size_t)best * E + e];
            }
        }
    }
    for (int t = 0; t < n; t++) {
        float *w = m->sel_w + (size_t)t * E;
        if (scale) for (int j = 0; j < m->n_sel[t]; j++) w[j] *= hp->w_scale;
        for (int j = 0; j < m->n_sel[t]; j++) cnt[m->sel[(size_t)t * E + j]]++;
    }
    if (m->route_hook) {
        const moe_route_event ev = {l, n > 0 ? m->row_pos[0] : 0, n, E, m->n_sel, m->sel, m->sel_w};
        m->route_hook(m->route_user, &ev);
    }
}

static moe_status moe_block(moe_infer *m, int l, float *y, const float *xn, int n,
                            moe_error *err) {
    const arch_hparams *hp = &m->am->hp;
    const arch_layer *ly = &m->am->layers[l];
    const int E = hp->n_experts, d = hp->d_model;
    moe_status st;
    if (hp->select != ARCH_SEL_HASH &&
        (st = infer_matmul(m, m->r_logits, xn, &ly->gate_inp, 0, n, err)) != MOE_OK) return st;
    route(m, l, n);

    /* Group the assignments by expert (token order inside each); under
       expert parallelism only this rank's experts [e_lo, e_hi). */
    const int lo = m->ep ? m->e_lo : 0, hi = m->ep ? m->e_hi : E;
    memset(m->e_count, 0, sizeof(int) * (size_t)E);
    for (int t = 0; t < n; t++)
        for (int j = 0; j < m->n_sel[t]; j++) {
            const int e = m->sel[(size_t)t * E + j];
            if (e >= lo && e < hi) m->e_count[e]++;
        }
    m->e_off[0] = 0;
    for (int e = 0; e < E; e++) m->e_off[e + 1] = m->e_off[e] + m->e_count[e];
    memset(m->e_count, 0, sizeof(int) * (size_t)E);
    for (int t = 0; t < n; t++)
        for (int j = 0; j < m->n_sel[t]; j++) {
            const int e = m->sel[(size_t)t * E + j];
            if (e < lo || e >= hi) continue;
            const int slot = m->e_off[e] + m->e_count[e]++;
            m->e_row[slot] = t;
            m->e_w[slot] = m->sel_w[(size_t)t * E + j];
        }

    /* Each token's slots in expert order (stride E); a token without
       experts (ReLU, expert choice; or none here) gets y = 0 from the
       routed part. */
    for (int t = 0; t < n; t++) m->t_fill[t] = 0;
    for (int sl = 0; sl < m->e_off[E]; sl++) {
        const int t = m->e_row[sl];
        m->t_slot[(size_t)t * E + m->t_fill[t]++] = sl;
    }
    for (int t = 0; t < n; t++)
        if (m->t_fill[t] == 0) memset(y + (size_t)t * d, 0, sizeof(float) * (size_t)d);

    /* Waves: runs of experts whose rows fit the scratch (m->moe_rows, all of
     * them at the top_k the model was opened with), each with one gather,
     * one activation and one scatter over its rows. */
    const int64_t ff = ly->gate_exps.rows;
    for (int e0 = 0, e1; e0 < E; e0 = e1) {
        e1 = e0 + 1;
        while (e1 < E && m->e_off[e1 + 1] - m->e_off[e0] <= m->moe_rows) e1++;
        const int s0 = m->e_off[e0], s1 = m->e_off[e1];
        if (s1 == s0) continue;
        gather_ctx gc = {m->xg, xn, m->e_row + s0, d};
        infer_for_rows(m, s1 - s0, (size_t)d, gather_rows, &gc);
        /* the wave's gate and up products in one batch (an expert's two
         * share its quantized rows), then its down products in another */
        int np = 0;
        for (int e = e0; e < e1; e++) {
            const int c = m->e_count[e], r = m->e_off[e] - s0;
            if (c == 0) continue;
            const float *xe = m->xg + (size_t)r * d;
            m->mm[np++] = infer_mm(m->hg + (size_t)r * ff, xe, &ly->gate_exps, e, c);
            m->mm[np++] = infer_mm(m->hu + (size_t)r * ff, xe, &ly->up_exps, e, c);
        }
        m->in_routed = 1;
        st = infer_matmul_batch(m, m->mm, np, err);
        m->in_routed = 0;
        if (st != MOE_OK) return st;
        act_ctx ac = {m->hg, m->hu, NULL, NULL, ff};
        infer_for_rows(m, s1 - s0, (size_t)ff, act_rows, &ac);
        np = 0;
        for (int e = e0; e < e1; e++) {
            const int c = m->e_count[e], r = m->e_off[e] - s0;
            if (c == 0) continue;
            m->mm[np++] = infer_mm(m->yo + (size_t)r * d, m->hg + (size_t)r * ff, &ly->down_exps,
                                   e, c);
        }
        m->in_routed = 1;
        st = infer_matmul_batch(m, m->mm, np, err);
        m->in_routed = 0;
        if (st != MOE_OK) return st;
        scatter_ctx sc = {y, m->yo, m->t_slot, m->t_fill, m->e_w, E, s0, s1, d};
        infer_for_rows(m, n, (size_t)d, scatter_rows, &sc);
    }

    if (ly->gate_shexp.data && (!m->ep || m->ep->rank == 0)) { /* once, on rank 0 */
        st = swiglu(m, m->yo, xn, n, &ly->gate_shexp, &ly->up_shexp, &ly->down_shexp, 0,
                    NULL, NULL, NULL, err);
        if (st != MOE_OK) return st;
        shared_ctx shc = {y, m->yo, xn, ly->gate_inp_shexp, d};
        infer_for_rows(m, n, (size_t)d, shared_rows, &shc);
    }
    /* expert parallelism: every rank holds the same tokens; the sum of the
       ranks' parts is the block's output (a token's k = 2 expert rows add
       in the same order as in one process) */
    if (m->ep) return m->ep->allreduce_f32(m->ep, y, (size_t)n * d, err);
    return MOE_OK;
}

moe_status infer_ffn(moe_infer *m, int l, float *y, const float *xn, int n, moe_error *err) {
    const arch_layer *ly = &m->am->layers[l];
    if (ly->is_moe) return moe_block(m, l, y, xn, n, err);
    return swiglu(m, y, xn, n, &ly->ffn_gate, &ly->ffn_up, &ly->ffn_down, 0, ly->ffn_gate_b,
                  ly->ffn_up_b, ly->ffn_down_b, err);
}
