/* model_pass.c: the forward and backward passes of the transformer
 * (model.h has the data flow). Not for: building the model (model.c).
 *
 * Linear layers keep PyTorch's weight layout W[out, in]:
 *   forward   y[N, out] = x[N, in] W^T
 *   backward  dx[N, in] (+)= dy[N, out] W,   dW[out, in] += dy^T x
 * Backward adds into every parameter gradient (moe_model_zero_grads clears
 * them), so gradient accumulation over micro-batches is a loop of passes;
 * after moe_model_drop_grads it writes them instead: the weight-gradient
 * GEMMs run with beta = 0 (gbeta) and the few gradients that are sums of
 * scattered terms (norm weights, the embedding) are cleared first. */
#include "model/model.h"
#include "core/bigalloc.h"
#include "core/error.h"
#include "kernels/act.h"
#include "kernels/attention.h"
#include "kernels/gemm.h"
#include "kernels/norm.h"
#include "kernels/rope.h"
#include "kernels/xent.h"

#include <math.h>
#include <string.h>

/* y[N, out] = x[N, in] W[out, in]^T, as a problem for gemm_grouped. */
static gemm_problem linear_fwd_problem(float *y, const float *x, const float *W, int N, int in, int out) {
    return gemm_make(N, out, in, 0, x, in, 1, W, in, y, out, 0.0f);
}

/* y[N, out] = x[N, in] W[out, in]^T */
static void linear_fwd(const gemm_ws *ws, int nt, float *y, const float *x, const float *W, int N, int in, int out) {
    const gemm_problem p = linear_fwd_problem(y, x, W, N, in, out);
    gemm_grouped(ws, nt, &p, 1);
}

/* dx[N, in] = beta dx + dy[N, out] W[out, in];  dW[out, in] = gbeta dW + dy^T x.
 * The two products are independent: one parallel region runs both. */
static void linear_bwd(const gemm_ws *ws, int nt, float *dx, float beta, float *dW, float gbeta, const float *dy,
                       const float *x, const float *W, int N, int in, int out) {
    const gemm_problem p[2] = {
        gemm_make(N, in, out, 0, dy, out, 0, W, in, dx, in, beta),
        gemm_make(out, in, N, 1, dy, out, 0, x, in, dW, in, gbeta),
    };
    gemm_grouped(ws, nt, p, 2);
}

/* y[n] += x[n], in blocks split over the threads. */
static void add_into(int nt, float *y, const float *x, size_t n) {
    const int64_t nb = (int64_t)((n + 4095) / 4096);
    #pragma omp parallel for num_threads(nt) schedule(static) if (nb > 1)
    for (int64_t b = 0; b < nb; b++) {
        const size_t lo = (size_t)b * 4096, hi = lo + 4096 < n ? lo + 4096 : n;
        #pragma omp simd
        for (size_t i = lo; i < hi; i++) y[i] += x[i];
    }
}

moe_status model_forward(moe_model *m, const int32_t *tokens, const int32_t *targets, int B, int T,
                         int train, float *loss, moe_error *err) {
    const moe_model_config *c = &m->cfg;
    if (!tokens) return moe_err(err, MOE_ERR_ARG, "moe_model_forward: tokens is NULL");
    if (B < 1 || B > c->max_batch || T < 1 || T > c->ctx_len)
        return moe_err(err, MOE_ERR_SHAPE, "moe_model_forward: B = %d, T = %d; expected 1..%d sequences of 1..%d tokens",
                       B, T, c->max_batch, c->ctx_len);
    const int N = B * T, d = c->d_model, V = c->vocab_size, H = c->n_heads, Hkv = c->n_kv_heads, hd = m->hd;
    const int qd = H * hd, kvd = Hkv * hd, F = c->d_ff, nt = m->n_threads;
    for (int i = 0; i < N; i++) {
        if (tokens[i] < 0 || tokens[i] >= V)
            return moe_err(err, MOE_ERR_ARG, "moe_model_forward: token %d at row %d is outside 0..%d",
                           tokens[i], i, V - 1);
        if (targets && targets[i] >= V)
            return moe_err(err, MOE_ERR_ARG, "moe_model_forward: target %d at row %d is outside 0..%d",
                           targets[i], i, V - 1);
    }
    m->B = B;
    m->T = T;
    m->have_targets = 0;
    memcpy(m->tokens, tokens, sizeof(int32_t) * (size_t)N);
    for (int i = 0; i < N; i++) m->pos[i] = i % T;

    /* embedding */
    float *x = m->res[0];
    for (int i = 0; i < N; i++) memcpy(x + (size_t)i * d, m->token_embd + (size_t)tokens[i] * d, sizeof(float) * (size_t)d);

    memset(&m->losses, 0, sizeof m->losses);
    for (int l = 0; l < c->n_layers; l++) {
        const model_block *b = &m->blocks[l];
        model_acts *a = &m->acts[l];
        x = m->res[l];
        float *y = m->res[l + 1];
        /* attention */
        rmsnorm_forward(a->n1, a->rstd1, x, b->attn_norm, N, d, c->norm_eps, nt);
        { /* q, k, v in one parallel region */
            const gemm_problem p[3] = {linear_fwd_problem(a->q, a->n1, b->wq, N, d, qd),
                                       linear_fwd_problem(a->k, a->n1, b->wk, N, d, kvd),
                                       linear_fwd_problem(a->v, a->n1, b->wv, N, d, kvd)};
            gemm_grouped(&m->gws, nt, p, 3);
        }
        rope_apply(a->q, N, H, hd, m->pos, m->rope_cos, m->rope_sin, 0, 0, nt);
        rope_apply(a->k, N, Hkv, hd, m->pos, m->rope_cos, m->rope_sin, 0, 0, nt);
        attention_forward(a->ao, a->att, a->q, a->k, a->v, B, T, H, Hkv, hd, nt, &m->gws);
        linear_fwd(&m->gws, nt, a->h, a->ao, b->wo, N, qd, d);
        add_into(nt, a->h, x, (size_t)N * d);
        /* feed-forward */
        rmsnorm_forward(a->n2, a->rstd2, a->h, b->ffn_norm, N, d, c->norm_eps, nt);
        if (b->moe) {
            moe_status st = MOE_OK;
            moe_error le;
            if (c->moe.select == MOE_SELECT_HASH) st = moe_layer_set_token_ids(b->moe, tokens, N, &le);
            if (st == MOE_OK) st = moe_layer_forward(b->moe, y, a->n2, N, train, &le);
            if (st != MOE_OK)
                return moe_err(err, st, "moe_model_forward: layer %d: %s", l, le.msg);
            const moe_route_stats *s = moe_layer_stats(b->moe);
            m->losses.aux += s->aux_loss;
            m->losses.z += s->z_loss;
            m->losses.router += s->router_loss;
        } else {
            const gemm_problem p[2] = {linear_fwd_problem(a->g, a->n2, b->ffn_gate, N, d, F),
                                       linear_fwd_problem(a->u, a->n2, b->ffn_up, N, d, F)};
            gemm_grouped(&m->gws, nt, p, 2);
            act_swiglu_forward(a->a, a->g, a->u, (size_t)N * F);
            linear_fwd(&m->gws, nt, y, a->a, b->ffn_down, N, F, d);
        }
        add_into(nt, y, a->h, (size_t)N * d);
    }
    rmsnorm_forward(m->nf, m->rstdf, m->res[c->n_layers], m->output_norm, N, d, c->norm_eps, nt);
    linear_fwd(&m->gws, nt, m->logits, m->nf, m->output, N, d, V);

    if (targets) {
        memcpy(m->targets, targets, sizeof(int32_t) * (size_t)N);
        int n_valid = 0;
        float ce = xent_forward(m->lse, m->logits, m->targets, N, V, &n_valid, nt);
        m->losses.ce = ce;
        m->losses.n_targets = n_valid;
        m->have_targets = 1;
        if (loss) *loss = ce;
    } else if (loss) {
        *loss = 0.0f;
    }
    return MOE_OK;
}

moe_status model_backward(moe_model *m, moe_error *err) {
    const moe_model_config *c = &m->cfg;
    if (!m->have_targets)
        return moe_err(err, MOE_ERR_ARG, "moe_model_backward: the last forward had no targets (or backward ran already)");
    m->have_targets = 0;
    const int B = m->B, T = m->T, N = B * T, d = c->d_model, V = c->vocab_size, H = c->n_heads,
              Hkv = c->n_kv_heads, hd = m->hd;
    const int qd = H * hd, kvd = Hkv * hd, F = c->d_ff, nt = m->n_threads;
    const size_t Nd = (size_t)N * d;
    const int set = m->grads_dropped;      /* write the gradients, not add */
    const float gb = set ? 0.0f : 1.0f;
    if (set) {
        memset(m->g_output_norm, 0, sizeof(float) * (size_t)d);
        for (int l = 0; l < c->n_layers; l++) {
            memset(m->gblocks[l].attn_norm, 0, sizeof(float) * (size_t)d);
            memset(m->gblocks[l].ffn_norm, 0, sizeof(float) * (size_t)d);
        }
        /* tied: the head's GEMM below writes it whole before the rows add */
        if (!c->tie_embeddings) moe_big_zero(m->g_token_embd, (size_t)V * d, nt);
    }

    /* loss = mean over the valid targets: dlogits = (softmax - onehot) / n */
    const int den = m->loss_den > 0 ? m->loss_den : m->losses.n_targets;
    m->loss_den = 0;
    float scale = den > 0 ? 1.0f / (float)den : 0.0f;
    xent_backward(m->logits, m->logits, m->lse, m->targets, N, V, scale, nt);
    float *dlogits = m->logits;
    /* head: dnf = dlogits Wout; dWout += dlogits^T nf */
    linear_bwd(&m->gws, nt, m->dn, 0.0f, m->g_output, gb, dlogits, m->nf, m->output, N, d, V);
    memset(m->dres, 0, Nd * sizeof(float));
    rmsnorm_backward(m->dres, m->g_output_norm, m->dn, m->res[c->n_layers], m->output_norm, m->rstdf, N, d, nt);
    if (m->grads_ready) {
        moe_status st = m->grads_ready(m->grads_ready_user, c->n_layers, err);
        if (st != MOE_OK) return st;
    }

    for (int l = c->n_layers - 1; l >= 0; l--) {
        const model_block *b = &m->blocks[l];
        model_block *g = &m->gblocks[l];
        model_acts *a = &m->acts[l];
        /* dres = dL/d res[l+1]; the residual passes it to h unchanged */
        memcpy(m->dh, m->dres, Nd * sizeof(float));
        if (b->moe) {
            if (set) moe_layer_drop_grads(b->moe);
            moe_error le;
            moe_status st = moe_layer_backward(b->moe, m->dn, m->dres, &le);
            if (st != MOE_OK)
                return moe_err(err, st, "moe_model_backward: layer %d: %s", l, le.msg);
        } else {
            /* y = a Wd^T, a = silu(g) * u, g = n2 Wg^T, u = n2 Wu^T */
            linear_bwd(&m->gws, nt, m->da, 0.0f, g->ffn_down, gb, m->dres, a->a, b->ffn_down, N, F, d);
            act_swiglu_backward(m->dg, m->du, m->da, a->g, a->u, (size_t)N * F);
            linear_bwd(&m->gws, nt, m->dn, 0.0f, g->ffn_gate, gb, m->dg, a->n2, b->ffn_gate, N, d, F);
            linear_bwd(&m->gws, nt, m->dn, 1.0f, g->ffn_up, gb, m->du, a->n2, b->ffn_up, N, d, F);
        }
        rmsnorm_backward(m->dh, g->ffn_norm, m->dn, a->h, b->ffn_norm, a->rstd2, N, d, nt);
        /* h = x + ao Wo^T: dx starts as dh (residual) */
        memcpy(m->dres, m->dh, Nd * sizeof(float));
        linear_bwd(&m->gws, nt, m->dao, 0.0f, g->wo, gb, m->dh, a->ao, b->wo, N, qd, d);
        int st_threads = nt < m->scratch_threads ? nt : m->scratch_threads;
        attention_backward(m->dq, m->dk, m->dv, m->att_scratch, m->dao, a->att, a->q, a->k, a->v, B, T, H, Hkv,
                           hd, st_threads, &m->gws);
        /* q, k were rotated after the projection: undo the rotation on the
           gradients (R^T = R^-1). The weight gradients need the projection
           input n1 and the unrotated-side gradients. */
        rope_apply(m->dq, N, H, hd, m->pos, m->rope_cos, m->rope_sin, 0, 1, nt);
        rope_apply(m->dk, N, Hkv, hd, m->pos, m->rope_cos, m->rope_sin, 0, 1, nt);
        linear_bwd(&m->gws, nt, m->dn, 0.0f, g->wq, gb, m->dq, a->n1, b->wq, N, d, qd);
        linear_bwd(&m->gws, nt, m->dn, 1.0f, g->wk, gb, m->dk, a->n1, b->wk, N, d, kvd);
        linear_bwd(&m->gws, nt, m->dn, 1.0f, g->wv, gb, m->dv, a->n1, b->wv, N, d, kvd);
        rmsnorm_backward(m->dres, g->attn_norm, m->dn, m->res[l], b->attn_norm, a->rstd1, N, d, nt);
        if (m->grads_ready) {
            moe_status st = m->grads_ready(m->grads_ready_user, l, err);
            if (st != MOE_OK) return st;
        }
    }
    /* embedding: each row's gradient goes to its token, in row order; the
       threads split the columns, so the order per element is the same */
    const int ncb = (d + 63) / 64;
    #pragma omp parallel for num_threads(nt) schedule(static) if (ncb > 1)
    for (int cb = 0; cb < ncb; cb++) {
        const int j0 = cb * 64, j1 = j0 + 64 < d ? j0 + 64 : d;
        for (int i = 0; i < N; i++) {
            float *ge = m->g_token_embd + (size_t)m->tokens[i] * d;
            const float *dr = m->dres + (size_t)i * d;
            for (int j = j0; j < j1; j++) ge[j] += dr[j];
        }
    }
    m->grads_dropped = 0;
    return MOE_OK;
}
