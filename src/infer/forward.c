/* forward.c: the transformer forward of the inference engine over one chunk
 * of tokens with the KV cache (see engine.h for the data flow).
 *
 * For: embedding rows, RMSNorm, the attention block (projections, biases,
 * q/k norms, RoPE, the cache, causal grouped-query attention), the layer
 * loop and the output head. Not for: the feed-forward blocks (moe_ffn.c) or
 * argument checks (engine.c, which calls infer_forward with valid input).
 *
 * Numerics follow ggml's CPU ops: RMSNorm sums squares in double, then
 * y = (x * (1/sqrtf(mean + eps))) * w; softmax subtracts the max, sums the
 * exponentials in double; RoPE angles come from a table computed in double.
 * Each output element is computed the same way whatever the batch split and
 * the thread count, so logits do not depend on either.
 */
#include <math.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "core/error.h"
#include "infer/engine.h"

moe_status infer_matmul(moe_infer *m, float *y, const float *x, const arch_mat *w,
                        int64_t i, int64_t M, moe_error *err) {
    return quant_matmul(y, x, w->data + (size_t)i * w->mat_bytes, w->type, M, w->rows,
                        w->cols, m->n_threads, m->work, m->work_size, err);
}

/* y[n, len] = rmsnorm of each row of x (rows of stride len) times w[len]. */
static void rmsnorm_rows(float *y, const float *x, const float *w, int n, int len, float eps) {
    for (int r = 0; r < n; r++) {
        const float *xr = x + (size_t)r * len;
        float *yr = y + (size_t)r * len;
        double ss = 0.0;
        for (int i = 0; i < len; i++) ss += (double)xr[i] * xr[i];
        const float mean = (float)(ss / len);
        const float scale = 1.0f / sqrtf(mean + eps);
        for (int i = 0; i < len; i++) yr[i] = (xr[i] * scale) * w[i];
    }
}

/* Adds b[len] to each of the n rows of x. */
static void add_bias(float *x, const float *b, int n, int len) {
    if (!b) return;
    for (int r = 0; r < n; r++)
        for (int i = 0; i < len; i++) x[(size_t)r * len + i] += b[i];
}

/* Rotates the first n_rot values of each of the nh heads (of hd) of the n
 * rows of x [n, nh*hd], row r at position pos + r. */
static void rope_rows(const moe_infer *m, float *x, int n, int nh, int pos) {
    const arch_hparams *hp = &m->am.hp;
    const int hd = hp->head_dim, half = hp->n_rot / 2;
    for (int r = 0; r < n; r++) {
        const float *c = m->rope_cos + (size_t)(pos + r) * half;
        const float *s = m->rope_sin + (size_t)(pos + r) * half;
        for (int h = 0; h < nh; h++) {
            float *v = x + (size_t)r * nh * hd + (size_t)h * hd;
            for (int i = 0; i < half; i++) {
                const int a = hp->rope_neox ? i : 2 * i;
                const int b = hp->rope_neox ? i + half : 2 * i + 1;
                const float x0 = v[a], x1 = v[b];
                v[a] = x0 * c[i] - x1 * s[i];
                v[b] = x0 * s[i] + x1 * c[i];
            }
        }
    }
}

/* ao[n, H*hd]: row i (position pos + i) of head h attends to cache rows
 * 0 .. pos + i of its kv head. */
static void attention(moe_infer *m, int l, int n, int pos) {
    const arch_hparams *hp = &m->am.hp;
    const int H = hp->n_heads, hd = hp->head_dim, G = H / hp->n_kv_heads;
    const int kvw = hp->n_kv_heads * hd;
    const float *kc = m->k_cache + (size_t)l * m->ctx_len * kvw;
    const float *vc = m->v_cache + (size_t)l * m->ctx_len * kvw;
    const float scale = hp->attn_scale;
    const int total = n * H;
    #pragma omp parallel for num_threads(m->nt) schedule(dynamic, 1)
    for (int task = 0; task < total; task++) {
#ifdef _OPENMP
        const int tid = omp_get_thread_num();
#else
        const int tid = 0;
#endif
        const int i = task / H, h = task % H, g = h / G;
        const int np = pos + i + 1; /* keys 0 .. pos + i */
        const float *qv = m->q + (size_t)i * H * hd + (size_t)h * hd;
        float *s = m->att + (size_t)tid * m->ctx_len;
        float mx = -INFINITY;
        for (int j = 0; j < np; j++) {
            const float *kv = kc + (size_t)j * kvw + (size_t)g * hd;
            float dot = 0.0f;
            for (int c = 0; c < hd; c++) dot += qv[c] * kv[c];
            s[j] = dot * scale;
            if (s[j] > mx) mx = s[j];
        }
        double sum = 0.0;
        for (int j = 0; j < np; j++) {
            s[j] = expf(s[j] - mx);
            sum += s[j];
        }
        const float inv = (float)(1.0 / sum);
        float *o = m->ao + (size_t)i * H * hd + (size_t)h * hd;
        for (int c = 0; c < hd; c++) o[c] = 0.0f;
        for (int j = 0; j < np; j++) {
            const float p = s[j] * inv;
            const float *vv = vc + (size_t)j * kvw + (size_t)g * hd;
            for (int c = 0; c < hd; c++) o[c] += p * vv[c];
        }
    }
}

/* The attention block of layer l: m->y[n, d] = its output (before the
 * residual scale), from m->xn. */
static moe_status attn_block(moe_infer *m, int l, int n, int pos, moe_error *err) {
    const arch_hparams *hp = &m->am.hp;
    const arch_layer *ly = &m->am.layers[l];
    const int H = hp->n_heads, Hkv = hp->n_kv_heads, hd = hp->head_dim;
    const int qw = H * hd, kvw = Hkv * hd;
    moe_status st;
    if ((st = infer_matmul(m, m->q, m->xn, &ly->wq, 0, n, err)) != MOE_OK) return st;
    if ((st = infer_matmul(m, m->k, m->xn, &ly->wk, 0, n, err)) != MOE_OK) return st;
    if ((st = infer_matmul(m, m->v, m->xn, &ly->wv, 0, n, err)) != MOE_OK) return st;
    add_bias(m->q, ly->bq, n, qw);
    add_bias(m->k, ly->bk, n, kvw);
    add_bias(m->v, ly->bv, n, kvw);
    if (ly->q_norm) { /* in place is fine: each row is read fully before it is written */
        if (ly->qk_norm_whole) {
            rmsnorm_rows(m->q, m->q, ly->q_norm, n, qw, hp->rms_eps);
            rmsnorm_rows(m->k, m->k, ly->k_norm, n, kvw, hp->rms_eps);
        } else {
            rmsnorm_rows(m->q, m->q, ly->q_norm, n * H, hd, hp->rms_eps);
            rmsnorm_rows(m->k, m->k, ly->k_norm, n * Hkv, hd, hp->rms_eps);
        }
    }
    if (hp->use_rope && hp->n_rot > 0) {
        rope_rows(m, m->q, n, H, pos);
        rope_rows(m, m->k, n, Hkv, pos);
    }
    float *kc = m->k_cache + ((size_t)l * m->ctx_len + (size_t)pos) * kvw;
    float *vc = m->v_cache + ((size_t)l * m->ctx_len + (size_t)pos) * kvw;
    memcpy(kc, m->k, sizeof(float) * (size_t)n * kvw);
    memcpy(vc, m->v, sizeof(float) * (size_t)n * kvw);
    attention(m, l, n, pos);
    if ((st = infer_matmul(m, m->y, m->ao, &ly->wo, 0, n, err)) != MOE_OK) return st;
    add_bias(m->y, ly->bo, n, hp->d_model);
    return MOE_OK;
}

/* x += scale * y over n rows of d. */
static void residual(float *x, const float *y, float scale, size_t nd) {
    if (scale == 1.0f)
        for (size_t i = 0; i < nd; i++) x[i] += y[i];
    else
        for (size_t i = 0; i < nd; i++) x[i] += scale * y[i];
}

/* Prefixes the failure message with the layer it happened in. */
static moe_status at_layer(moe_status st, int l, moe_error *err) {
    if (err) {
        char tmp[sizeof err->msg];
        memcpy(tmp, err->msg, sizeof tmp);
        moe_err(err, st, "layer %d: %.480s", l, tmp);
    }
    return st;
}

moe_status infer_forward(moe_infer *m, const int32_t *tokens, int n, int pos,
                         float *logits, int all_logits, moe_error *err) {
    const arch_hparams *hp = &m->am.hp;
    const int d = hp->d_model;
    const size_t nd = (size_t)n * d;
    moe_status st;

    for (int i = 0; i < n; i++) {
        st = quant_dequantize_row(m->am.token_embd.type,
                                  arch_row(&m->am.token_embd, 0, tokens[i]),
                                  m->x + (size_t)i * d, d, err);
        if (st != MOE_OK) return st;
    }
    if (hp->embd_scale != 1.0f)
        for (size_t i = 0; i < nd; i++) m->x[i] *= hp->embd_scale;

    for (int l = 0; l < hp->n_layers; l++) {
        const arch_layer *ly = &m->am.layers[l];
        rmsnorm_rows(m->xn, m->x, ly->attn_norm, n, d, hp->rms_eps);
        if ((st = attn_block(m, l, n, pos, err)) != MOE_OK) return at_layer(st, l, err);
        residual(m->x, m->y, hp->resid_scale, nd);
        rmsnorm_rows(m->xn, m->x, ly->ffn_norm, n, d, hp->rms_eps);
        if ((st = infer_ffn(m, l, m->y, m->xn, n, err)) != MOE_OK) return at_layer(st, l, err);
        residual(m->x, m->y, hp->resid_scale, nd);
    }
    if (!logits) return MOE_OK;

    const int r0 = all_logits ? 0 : n - 1, rows = n - r0;
    rmsnorm_rows(m->xn, m->x + (size_t)r0 * d, m->am.output_norm, rows, d, hp->rms_eps);
    if ((st = infer_matmul(m, logits, m->xn, &m->am.output, 0, rows, err)) != MOE_OK)
        return st;
    if (hp->logit_scale != 1.0f) {
        const float s = 1.0f / hp->logit_scale;
        const size_t nv = (size_t)rows * hp->vocab_size;
        for (size_t i = 0; i < nv; i++) logits[i] *= s;
    }
    return MOE_OK;
}
