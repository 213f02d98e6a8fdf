/* forward.c: the transformer forward of the inference engine over one chunk
 * of tokens with the KV cache (see engine.h for the data flow).
 *
 * For: embedding rows, RMSNorm (fused with the residual add), the attention
 * block (projections, biases, q/k norms, RoPE, the cache, causal grouped-
 * query attention handed to the kernels of attn.h in groups of rows), the
 * layer loop, the output head, and the row loops (infer_for_rows) that
 * split elementwise work across threads for long chunks only: decode runs
 * it on the calling thread, so its parallel regions are the batched products'
 * (q, k, v in one quant_matmul_batch) and attention's over a cache of more
 * than ~32 positions.
 * Not for: the feed-forward blocks (moe_ffn.c) or argument checks
 * (engine.c, which calls infer_forward with valid input).
 *
 * Numerics follow ggml's CPU ops: RMSNorm sums squares in double, then
 * y = (x * (1/sqrtf(mean + eps))) * w; RoPE angles come from a table
 * computed in double; the attention kernels (attn.h) subtract the max and
 * use a vectorised exp. Each output element is computed the same way
 * whatever the batch split and the thread count, so logits do not depend on
 * either.
 */
#include <math.h>
#include <string.h>
#include <time.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "core/error.h"
#include "infer/engine.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* The seconds since t0 added to the products' time (moe_infer_times). */
static void add_mm_time(moe_infer *m, double t0) {
    const double dt = now_s() - t0;
    if (m->in_routed) m->times.expert_mm_s += dt;
    else m->times.other_mm_s += dt;
}

moe_status infer_matmul(moe_infer *m, float *y, const float *x, const arch_mat *w,
                        int64_t i, int64_t M, moe_error *err) {
    const double t0 = now_s();
    const moe_status st = quant_matmul(y, x, w->data + (size_t)i * w->mat_bytes, w->type, M,
                                       w->rows, w->cols, m->n_threads, m->work, m->work_size, err);
    add_mm_time(m, t0);
    return st;
}

quant_mm infer_mm(float *y, const float *x, const arch_mat *w, int64_t i, int64_t M) {
    return (quant_mm){.y = y, .x = x, .w = w->data + (size_t)i * w->mat_bytes, .type = w->type,
                      .M = M, .N = w->rows, .K = w->cols};
}

moe_status infer_matmul_batch(moe_infer *m, const quant_mm *p, int n, moe_error *err) {
    const double t0 = now_s();
    const moe_status st = quant_matmul_batch(p, n, m->n_threads, m->work, m->work_size, err);
    add_mm_time(m, t0);
    return st;
}

/* ------------------------------------------------------------ row loops */

/* Elements a row loop needs before it is split across threads: below, a
 * parallel region costs more than it saves (decode runs every row loop on
 * the calling thread). */
#define ROWS_PAR_MIN 32768

void infer_for_rows(const moe_infer *m, int n, size_t row_len, infer_rows_fn fn, void *ctx) {
    if (m->nt <= 1 || n < 2 || (size_t)n * row_len < ROWS_PAR_MIN) {
        fn(ctx, 0, n);
        return;
    }
    const int nt = m->nt < n ? m->nt : n;
    #pragma omp parallel num_threads(nt)
    {
#ifdef _OPENMP
        const int t = omp_get_thread_num(), T = omp_get_num_threads();
#else
        const int t = 0, T = 1;
#endif
        fn(ctx, (int)((int64_t)n * t / T), (int)((int64_t)n * (t + 1) / T));
    }
}

/* yr[len] = rmsnorm(xr) * w. The squares are summed in double in 8 lanes
 * (i % 8) joined by a fixed tree, so the loop vectorises and the sum
 * depends on len alone. yr may be xr (in place). */
static void rmsnorm_row(float *yr, const float *xr, const float *w, int len, float eps) {
    double acc[8] = {0};
    int i = 0;
    for (; i + 8 <= len; i += 8)
        for (int j = 0; j < 8; j++) acc[j] += (double)xr[i + j] * xr[i + j];
    for (int j = 0; i + j < len; j++) acc[j] += (double)xr[i + j] * xr[i + j];
    const double ss = ((acc[0] + acc[4]) + (acc[2] + acc[6])) +
                      ((acc[1] + acc[5]) + (acc[3] + acc[7]));
    const float mean = (float)(ss / len);
    const float scale = 1.0f / sqrtf(mean + eps);
    #pragma omp simd /* in place: the same index only */
    for (i = 0; i < len; i++) yr[i] = (xr[i] * scale) * w[i];
}

/* Rows r0 .. r1 of: x += scale * y, then (w not NULL) xn = rmsnorm(x) * w;
 * rows of len. */
typedef struct add_norm_ctx {
    float *x;          /* [n, len] residual stream */
    const float *y;    /* [n, len] block output, or NULL: norm only */
    float scale;       /* residual scale */
    float *xn;         /* [n, len] normed rows (may be x) */
    const float *w;    /* [len] norm weight, or NULL: residual only */
    int len;
    float eps;
} add_norm_ctx;

static void add_norm_rows(void *p, int r0, int r1) {
    const add_norm_ctx *c = p;
    for (int r = r0; r < r1; r++) {
        float *x = c->x + (size_t)r * c->len;
        if (c->y) {
            const float *y = c->y + (size_t)r * c->len;
            const float sc = c->scale;
            if (sc == 1.0f) {
                #pragma omp simd /* x and y are different buffers */
                for (int i = 0; i < c->len; i++) x[i] += y[i];
            } else {
                #pragma omp simd
                for (int i = 0; i < c->len; i++) x[i] += sc * y[i];
            }
        }
        if (c->w) rmsnorm_row(c->xn + (size_t)r * c->len, x, c->w, c->len, c->eps);
    }
}

/* xn[n, len] = rmsnorm of each row of x times w[len] (xn may be x). */
static void rmsnorm_rows(const moe_infer *m, float *xn, float *x, const float *w, int n,
                         int len, float eps) {
    add_norm_ctx c = {x, NULL, 1.0f, xn, w, len, eps};
    infer_for_rows(m, n, (size_t)len, add_norm_rows, &c);
}

/* x += scale * y, then (w not NULL) xn = rmsnorm(x) * w, over n rows of len. */
static void add_norm(const moe_infer *m, float *x, const float *y, float scale, float *xn,
                     const float *w, int n, int len, float eps) {
    add_norm_ctx c = {x, y, scale, xn, w, len, eps};
    infer_for_rows(m, n, (size_t)len, add_norm_rows, &c);
}

/* Adds b[len] to each of the n rows of x. */
static void add_bias(float *x, const float *b, int n, int len) {
    if (!b) return;
    for (int r = 0; r < n; r++)
        for (int i = 0; i < len; i++) x[(size_t)r * len + i] += b[i];
}

/* Rotates the first n_rot values of each of the nh heads (of hd) of one
 * row v [nh*hd] at a position with table rows c, s [n_rot/2]: pairs
 * (i, i + n_rot/2) (NeoX) or (2i, 2i + 1). */
static void rope_row(const arch_hparams *hp, float *row, int nh, const float *c,
                     const float *s) {
    const int hd = hp->head_dim, half = hp->n_rot / 2;
    for (int h = 0; h < nh; h++) {
        float *v = row + (size_t)h * hd;
        if (hp->rope_neox) {
            float *a = v, *b = v + half;
            #pragma omp simd /* a, b: the two halves of the head */
            for (int i = 0; i < half; i++) {
                const float x0 = a[i], x1 = b[i];
                a[i] = x0 * c[i] - x1 * s[i];
                b[i] = x0 * s[i] + x1 * c[i];
            }
        } else {
            #pragma omp simd
            for (int i = 0; i < half; i++) {
                const float x0 = v[2 * i], x1 = v[2 * i + 1];
                v[2 * i] = x0 * c[i] - x1 * s[i];
                v[2 * i + 1] = x0 * s[i] + x1 * c[i];
            }
        }
    }
}

/* Attention work (multiply-adds) below which one thread does it all: a
 * parallel region costs microseconds. Decode is bound by reading the cache
 * (16 heads x 128 x 2 x 32 keys = 128 K multiply-adds read 128 KiB of K
 * and V per layer, ~10 us on one core), so threads pay from about there. */
#define ATTN_PAR_MIN 131072.0

/* Runs of rows of one sequence (m->run_i0, consecutive rows at consecutive
 * positions) and their attention tasks: per kv head, ceil(rows G /
 * ATTN_RMAX) groups of query rows (token i, head g G + h) numbered i G + h. */
static void plan_runs(moe_infer *m, int n) {
    const arch_hparams *hp = &m->am->hp;
    const int G = hp->n_heads / hp->n_kv_heads;
    int r = 0;
    for (int i = 0; i < n; i++)
        if (i == 0 || m->row_seq[i] != m->row_seq[i - 1]) m->run_i0[r++] = i;
    m->n_runs = r;
    m->run_i0[r] = n;
    m->run_task0[0] = 0;
    for (int j = 0; j < r; j++) {
        const int rows = m->run_i0[j + 1] - m->run_i0[j];
        m->run_task0[j + 1] = m->run_task0[j] + (rows * G + ATTN_RMAX - 1) / ATTN_RMAX *
                                                hp->n_kv_heads;
    }
}

/* Task t (of m->run_task0[n_runs]): group gi of kv head g of one run, whose
 * rows attend to their sequence's cache rows 0 .. pos. */
static void attn_task(const moe_infer *m, int l, int t, float *s) {
    const arch_hparams *hp = &m->am->hp;
    const int H = hp->n_heads, Hkv = hp->n_kv_heads, hd = hp->head_dim, G = H / Hkv;
    int j = 0;
    while (m->run_task0[j + 1] <= t) j++;
    const int i0 = m->run_i0[j], nr = m->run_i0[j + 1] - i0;
    const int per = (nr * G + ATTN_RMAX - 1) / ATTN_RMAX, tt = t - m->run_task0[j];
    const int g = tt / per, gi = tt % per;
    attn_group grp;
    grp.R = 0;
    for (int r = 0; r < ATTN_RMAX; r++) {
        const int rho = gi * ATTN_RMAX + r;
        if (rho >= nr * G) break;
        const int i = i0 + rho / G, h = g * G + rho % G;
        grp.q[r] = m->q + (size_t)i * H * hd + (size_t)h * hd;
        grp.o[r] = m->ao + (size_t)i * H * hd + (size_t)h * hd;
        grp.np[r] = m->row_pos[i] + 1; /* keys 0 .. pos */
        grp.R++;
    }
    const size_t sq = (size_t)m->row_seq[i0], lg = (size_t)l * Hkv + g;
    m->attn(&grp, m->k_cache + sq * m->k_seq + lg * m->kt_floats,
            m->v_cache + sq * m->v_seq + lg * m->ctx_len * hd, hd, hp->attn_scale, s, m->att_lds);
}

/* ao[n, H*hd]: row i (position row_pos[i]) of head h attends to its
 * sequence's cache rows 0 .. row_pos[i] of its kv head (attn.h); groups of
 * rows are the tasks. */
static void attention(moe_infer *m, int l, int n) {
    const arch_hparams *hp = &m->am->hp;
    const int total = m->run_task0[m->n_runs];
    double work = 0.0;
    for (int i = 0; i < n; i++) work += 2.0 * hp->n_heads * hp->head_dim * (m->row_pos[i] + 1);
    if (m->nt == 1 || total == 1 || work < ATTN_PAR_MIN) {
        for (int t = 0; t < total; t++) attn_task(m, l, t, m->att);
        return;
    }
    const int nt = m->nt < total ? m->nt : total;
    #pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
    for (int t = 0; t < total; t++) {
#ifdef _OPENMP
        const int tid = omp_get_thread_num();
#else
        const int tid = 0;
#endif
        attn_task(m, l, t, m->att + (size_t)tid * ATTN_RMAX * m->att_lds);
    }
}

/* RoPE on rows of q and k, then k, v into layer l's cache (attn.h layout),
 * row i at position pos + i. */
typedef struct qkv_ctx {
    moe_infer *m;
    int l;
} qkv_ctx;

static void rope_store_rows(void *p, int i0, int i1) {
    const qkv_ctx *c = p;
    moe_infer *m = c->m;
    const arch_hparams *hp = &m->am->hp;
    const int H = hp->n_heads, Hkv = hp->n_kv_heads, hd = hp->head_dim, kvw = Hkv * hd;
    const int half = hp->n_rot / 2;
    for (int i = i0; i < i1; i++) {
        const int p_i = m->row_pos[i];
        const size_t sq = (size_t)m->row_seq[i];
        float *k = m->k + (size_t)i * kvw;
        if (hp->use_rope && half > 0) {
            const float *cs = m->rope_cos + (size_t)p_i * half;
            const float *sn = m->rope_sin + (size_t)p_i * half;
            rope_row(hp, m->q + (size_t)i * H * hd, H, cs, sn);
            rope_row(hp, k, Hkv, cs, sn);
        }
        for (int g = 0; g < Hkv; g++) {
            const size_t lg = (size_t)c->l * Hkv + g;
            attn_store_k(m->k_cache + sq * m->k_seq + lg * m->kt_floats, k + (size_t)g * hd,
                         p_i, hd);
            memcpy(m->v_cache + sq * m->v_seq + (lg * m->ctx_len + (size_t)p_i) * hd,
                   m->v + (size_t)i * kvw + (size_t)g * hd, sizeof(float) * (size_t)hd);
        }
    }
}

/* The attention block of layer l: m->y[n, d] = its output (before the
 * residual scale), from m->xn. */
static moe_status attn_block(moe_infer *m, int l, int n, moe_error *err) {
    const arch_hparams *hp = &m->am->hp;
    const arch_layer *ly = &m->am->layers[l];
    const int H = hp->n_heads, Hkv = hp->n_kv_heads, hd = hp->head_dim;
    const int qw = H * hd, kvw = Hkv * hd;
    moe_status st;
    const quant_mm qkv[3] = {infer_mm(m->q, m->xn, &ly->wq, 0, n),
                             infer_mm(m->k, m->xn, &ly->wk, 0, n),
                             infer_mm(m->v, m->xn, &ly->wv, 0, n)};
    if ((st = infer_matmul_batch(m, qkv, 3, err)) != MOE_OK) return st;
    add_bias(m->q, ly->bq, n, qw);
    add_bias(m->k, ly->bk, n, kvw);
    add_bias(m->v, ly->bv, n, kvw);
    if (ly->q_norm) { /* in place is fine: each row is read fully before it is written */
        if (ly->qk_norm_whole) {
            rmsnorm_rows(m, m->q, m->q, ly->q_norm, n, qw, hp->rms_eps);
            rmsnorm_rows(m, m->k, m->k, ly->k_norm, n, kvw, hp->rms_eps);
        } else {
            rmsnorm_rows(m, m->q, m->q, ly->q_norm, n * H, hd, hp->rms_eps);
            rmsnorm_rows(m, m->k, m->k, ly->k_norm, n * Hkv, hd, hp->rms_eps);
        }
    }
    qkv_ctx qc = {m, l};
    infer_for_rows(m, n, (size_t)(H + 2 * Hkv) * hd, rope_store_rows, &qc);
    attention(m, l, n);
    if ((st = infer_matmul(m, m->y, m->ao, &ly->wo, 0, n, err)) != MOE_OK) return st;
    add_bias(m->y, ly->bo, n, hp->d_model);
    return MOE_OK;
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

static moe_status forward(moe_infer *m, const int32_t *tokens, int n, float *logits,
                          int n_out, moe_error *err);

moe_status infer_forward(moe_infer *m, const int32_t *tokens, int n, float *logits,
                         int n_out, moe_error *err) {
    const double t0 = now_s();
    m->in_routed = 0;
    const moe_status st = forward(m, tokens, n, logits, n_out, err);
    m->in_routed = 0;
    m->times.eval_s += now_s() - t0;
    m->times.n_evals++;
    return st;
}

static moe_status forward(moe_infer *m, const int32_t *tokens, int n, float *logits,
                          int n_out, moe_error *err) {
    const arch_hparams *hp = &m->am->hp;
    const int d = hp->d_model;
    const size_t nd = (size_t)n * d;
    moe_status st;
    m->cur_tokens = tokens;
    plan_runs(m, n);

    for (int i = 0; i < n; i++) {
        st = quant_dequantize_row(m->am->token_embd.type,
                                  arch_row(&m->am->token_embd, 0, tokens[i]),
                                  m->x + (size_t)i * d, d, err);
        if (st != MOE_OK) return st;
    }
    if (hp->embd_scale != 1.0f)
        for (size_t i = 0; i < nd; i++) m->x[i] *= hp->embd_scale;

    /* x += y and the next norm in one pass over the rows (add_norm); when
     * every row wants logits (out_rows = 0 .. n-1), the output norm too */
    const int L = hp->n_layers;
    if (!logits) n_out = 0;
    const int all = n_out == n;
    if (L > 0) rmsnorm_rows(m, m->xn, m->x, m->am->layers[0].attn_norm, n, d, hp->rms_eps);
    for (int l = 0; l < L; l++) {
        const arch_layer *ly = &m->am->layers[l];
        if ((st = attn_block(m, l, n, err)) != MOE_OK) return at_layer(st, l, err);
        add_norm(m, m->x, m->y, hp->resid_scale, m->xn, ly->ffn_norm, n, d, hp->rms_eps);
        if ((st = infer_ffn(m, l, m->y, m->xn, n, err)) != MOE_OK) return at_layer(st, l, err);
        const float *next = l + 1 < L ? m->am->layers[l + 1].attn_norm
                            : all ? m->am->output_norm : NULL;
        add_norm(m, m->x, m->y, hp->resid_scale, m->xn, next, n, d, hp->rms_eps);
    }
    if (n_out == 0) return MOE_OK;

    if (L == 0 || !all) /* xn[j, d] = the output norm of row out_rows[j] */
        for (int j = 0; j < n_out; j++)
            rmsnorm_rows(m, m->xn + (size_t)j * d, m->x + (size_t)m->out_rows[j] * d,
                         m->am->output_norm, 1, d, hp->rms_eps);
    if ((st = infer_matmul(m, logits, m->xn, &m->am->output, 0, n_out, err)) != MOE_OK)
        return st;
    if (hp->logit_scale != 1.0f) {
        const float s = 1.0f / hp->logit_scale;
        const size_t nv = (size_t)n_out * hp->vocab_size;
        for (size_t i = 0; i < nv; i++) logits[i] *= s;
    }
    return MOE_OK;
}
