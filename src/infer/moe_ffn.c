/* moe_ffn.c: the feed-forward blocks of the inference engine: dense SwiGLU,
 * and the MoE block (router, top-k, experts grouped over the batch, shared
 * expert), as llama.cpp's build_ffn / build_moe_ffn compute them.
 *
 * For: y[n, d] from the normed rows xn[n, d] of one layer. Not for: the
 * training MoE layer (src/layer/, with capacity, losses and backward).
 *
 * MoE, per token t (router in fp32 whatever the router weight's type):
 *   p = softmax(xn_t Wr^T) over all E (or sigmoid, each alone)
 *   S = the k largest of p (+ selection bias), ties to the lower index
 *   w_e = p_e for e in S; w /= max(sum(w), 2^-14) when renormalised; w *= scale when
 *         scale is neither 0 nor 1
 *   y_t = sum_{e in S} w_e down_e(silu(gate_e xn_t) * up_e xn_t)
 *         (+ shared(xn_t), times sigmoid(xn_t . g) when gated)
 * The batch is grouped per expert: each expert gathers its tokens' rows and
 * runs its three products over them at once (one weight pass per chunk), then
 * scatters w_e * out back. Each token's contributions are added in expert
 * order, so the result does not depend on how the tokens were batched.
 */
#include <math.h>
#include <string.h>

#include "core/error.h"
#include "infer/engine.h"

static inline float silu(float x) { return x / (1.0f + expf(-x)); }

/* out[n, d] = down(silu(gate xn + bg) * (up xn + bu)) + bd. */
static moe_status swiglu(moe_infer *m, float *out, const float *xn, int n,
                         const arch_mat *gate, const arch_mat *up, const arch_mat *down,
                         int64_t e, const float *bg, const float *bu, const float *bd,
                         moe_error *err) {
    const int64_t ff = gate->rows, d = down->rows;
    moe_status st;
    if ((st = infer_matmul(m, m->hg, xn, gate, e, n, err)) != MOE_OK) return st;
    if ((st = infer_matmul(m, m->hu, xn, up, e, n, err)) != MOE_OK) return st;
    for (int r = 0; r < n; r++) {
        float *g = m->hg + (size_t)r * ff;
        const float *u = m->hu + (size_t)r * ff;
        for (int64_t i = 0; i < ff; i++) {
            const float gi = bg ? g[i] + bg[i] : g[i];
            const float ui = bu ? u[i] + bu[i] : u[i];
            g[i] = silu(gi) * ui;
        }
    }
    if ((st = infer_matmul(m, out, m->hg, down, e, n, err)) != MOE_OK) return st;
    if (bd)
        for (int r = 0; r < n; r++)
            for (int64_t i = 0; i < d; i++) out[(size_t)r * d + i] += bd[i];
    return MOE_OK;
}

/* Router: m->sel / m->sel_w [n, k] from m->r_logits [n, E]; counts. */
static void route(moe_infer *m, int l, int n) {
    const arch_hparams *hp = &m->am.hp;
    const arch_layer *ly = &m->am.layers[l];
    const int E = hp->n_experts, k = m->top_k;
    int64_t *cnt = m->counts + (size_t)l * E;
    for (int t = 0; t < n; t++) {
        float *p = m->r_logits + (size_t)t * E;
        if (hp->gating_sigmoid) {
            for (int e = 0; e < E; e++) p[e] = 1.0f / (1.0f + expf(-p[e]));
        } else {
            float mx = -INFINITY;
            for (int e = 0; e < E; e++) if (p[e] > mx) mx = p[e];
            double sum = 0.0;
            for (int e = 0; e < E; e++) { p[e] = expf(p[e] - mx); sum += p[e]; }
            const float inv = (float)(1.0 / sum);
            for (int e = 0; e < E; e++) p[e] *= inv;
        }
        int *sel = m->sel + (size_t)t * E;
        float *w = m->sel_w + (size_t)t * E;
        /* k passes of argmax over the unpicked experts; '>' keeps the lower index on ties */
        unsigned char *picked = m->picked;
        memset(picked, 0, (size_t)E);
        for (int j = 0; j < k; j++) {
            int best = -1;
            float bv = 0.0f;
            for (int e = 0; e < E; e++) {
                if (picked[e]) continue;
                const float v = ly->exp_probs_b ? p[e] + ly->exp_probs_b[e] : p[e];
                if (best < 0 || v > bv) { best = e; bv = v; }
            }
            picked[best] = 1;
            sel[j] = best;
            w[j] = p[best];
        }
        if (hp->norm_w) {
            float sum = 0.0f;
            for (int j = 0; j < k; j++) sum += w[j];
            sum = fmaxf(sum, 6.103515625e-5f); /* llama.cpp's clamp: the smallest f16 normal */
            for (int j = 0; j < k; j++) w[j] /= sum;
        }
        if (hp->w_scale != 0.0f && hp->w_scale != 1.0f)
            for (int j = 0; j < k; j++) w[j] *= hp->w_scale;
        for (int j = 0; j < k; j++) cnt[sel[j]]++;
    }
}

static moe_status moe_block(moe_infer *m, int l, float *y, const float *xn, int n,
                            moe_error *err) {
    const arch_hparams *hp = &m->am.hp;
    const arch_layer *ly = &m->am.layers[l];
    const int E = hp->n_experts, k = m->top_k, d = hp->d_model;
    moe_status st;
    if ((st = infer_matmul(m, m->r_logits, xn, &ly->gate_inp, 0, n, err)) != MOE_OK) return st;
    route(m, l, n);

    /* Group the n*k assignments by expert (token order inside each). */
    memset(m->e_count, 0, sizeof(int) * (size_t)E);
    for (int t = 0; t < n; t++)
        for (int j = 0; j < k; j++) m->e_count[m->sel[(size_t)t * E + j]]++;
    m->e_off[0] = 0;
    for (int e = 0; e < E; e++) m->e_off[e + 1] = m->e_off[e] + m->e_count[e];
    memset(m->e_count, 0, sizeof(int) * (size_t)E);
    for (int t = 0; t < n; t++)
        for (int j = 0; j < k; j++) {
            const int e = m->sel[(size_t)t * E + j];
            const int slot = m->e_off[e] + m->e_count[e]++;
            m->e_row[slot] = t;
            m->e_w[slot] = m->sel_w[(size_t)t * E + j];
        }

    memset(y, 0, sizeof(float) * (size_t)n * d);
    for (int e = 0; e < E; e++) {
        const int c = m->e_count[e], off = m->e_off[e];
        if (c == 0) continue;
        for (int r = 0; r < c; r++)
            memcpy(m->xg + (size_t)r * d, xn + (size_t)m->e_row[off + r] * d,
                   sizeof(float) * (size_t)d);
        st = swiglu(m, m->yo, m->xg, c, &ly->gate_exps, &ly->up_exps, &ly->down_exps, e,
                    NULL, NULL, NULL, err);
        if (st != MOE_OK) return st;
        for (int r = 0; r < c; r++) {
            float *yt = y + (size_t)m->e_row[off + r] * d;
            const float *yr = m->yo + (size_t)r * d;
            const float w = m->e_w[off + r];
            for (int i = 0; i < d; i++) yt[i] += w * yr[i];
        }
    }

    if (ly->gate_shexp.data) {
        st = swiglu(m, m->yo, xn, n, &ly->gate_shexp, &ly->up_shexp, &ly->down_shexp, 0,
                    NULL, NULL, NULL, err);
        if (st != MOE_OK) return st;
        for (int t = 0; t < n; t++) {
            float gate = 1.0f;
            if (ly->gate_inp_shexp) {
                const float *xt = xn + (size_t)t * d;
                float z = 0.0f;
                for (int i = 0; i < d; i++) z += ly->gate_inp_shexp[i] * xt[i];
                gate = 1.0f / (1.0f + expf(-z));
            }
            float *yt = y + (size_t)t * d;
            const float *yr = m->yo + (size_t)t * d;
            for (int i = 0; i < d; i++) yt[i] += yr[i] * gate;
        }
    }
    return MOE_OK;
}

moe_status infer_ffn(moe_infer *m, int l, float *y, const float *xn, int n, moe_error *err) {
    const arch_layer *ly = &m->am.layers[l];
    if (ly->is_moe) return moe_block(m, l, y, xn, n, err);
    return swiglu(m, y, xn, n, &ly->ffn_gate, &ly->ffn_up, &ly->ffn_down, 0, ly->ffn_gate_b,
                  ly->ffn_up_b, ly->ffn_down_b, err);
}
