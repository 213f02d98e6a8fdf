/* test_infer.c: the inference engine (moe_infer_* of moe_infer.h) against a
 * scalar reference.
 *
 * Small random models of every supported architecture are written with the
 * GGUF writer (a minimal model builder here; h7's synth.c is separate), run
 * by the engine, and compared with a straightforward forward in double
 * precision (full recompute, no cache) written below from the semantics
 * table of src/infer/arch.h. Also: the KV cache (one batch vs token by token
 * vs chunks), quantized weights (Q8_0, Q4_K) against the same forward on
 * their dequantized values, the top-k override, expert counts, info sizes,
 * and the error paths (missing / misshaped tensors, unknown architecture,
 * bad eval arguments).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/gguf.h"
#include "moe_infer.h"
#include "quant/quant.h"
#include "testutil.h"

static char tmpdir[256];

/* ------------------------------------------------------------ the spec */

typedef struct spec {
    const char *arch;
    int V, d, L, H, Hkv, hd, ff, E, k, ctx;
    int ff_exp;        /* expert width; written as expert_feed_forward_length when != ff */
    int ff_sh;         /* shared expert width (0: none) */
    int sh_gated;      /* qwen2moe's sigmoid gate on the shared expert */
    int n_shared;      /* deepseek: expert_shared_count (ff_sh = n_shared * ff_exp) */
    int n_lead;        /* deepseek: leading dense blocks */
    unsigned moe_mask; /* llama: moe.layer_is_moe bits when use_mask */
    int use_mask;
    int qk_norm;       /* 0, 1 per head [hd], 2 whole row */
    int neox, norm_w, write_norm_key, sigmoid;
    float w_scale;     /* expert_weights_scale key (0: not written) */
    int biases, tied, hd_key;
    float embd_scale, resid_scale, logit_scale, attn_scale; /* granite; 0: unset */
    quant_type wt, rt; /* type of the big matrices, of the router */
    int vocab_tokens;  /* > 0: write a SentencePiece tokenizer of that many tokens */
    int emulate;       /* reference: round activations through the type the
                          engine quantizes them to before each product */
} spec;

static spec base_spec(const char *arch) {
    spec s;
    memset(&s, 0, sizeof s);
    s.arch = arch;
    s.V = 48; s.d = 32; s.L = 2; s.H = 4; s.Hkv = 2; s.hd = 8; s.ff = 24; s.ctx = 32;
    s.wt = QUANT_F32; s.rt = QUANT_F32;
    return s;
}

static int layer_is_moe(const spec *s, int l) {
    if (s->E == 0) return 0;
    if (s->use_mask) return (s->moe_mask >> l) & 1;
    return l >= s->n_lead;
}

/* ----------------------------------------------------- the model builder */

typedef struct tens {
    char name[64];
    int nd;
    int64_t ne[3];
    float *f;      /* the values the file holds (dequantized) */
    void *q;       /* the bytes written */
    size_t qb;
    quant_type t;
} tens;

typedef struct model {
    tens t[160];
    int n;
} model;

static void model_free(model *M) {
    for (int i = 0; i < M->n; i++) { free(M->t[i].f); free(M->t[i].q); }
    M->n = 0;
}

/* A tensor of dims {ne0, ne1, ne2} (innermost first) with values
 * offset + scale * U(-1, 1), stored as type t (quantized rows of ne0). */
static void add_t(model *M, tu_rng *r, const char *name, int nd, int64_t ne0, int64_t ne1,
                  int64_t ne2, quant_type t, float scale, float offset) {
    tens *x = &M->t[M->n++];
    snprintf(x->name, sizeof x->name, "%s", name);
    x->nd = nd;
    x->ne[0] = ne0; x->ne[1] = ne1; x->ne[2] = ne2;
    x->t = t;
    const int64_t rows = ne1 * ne2, n = ne0 * rows;
    x->f = malloc(sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i++) x->f[i] = offset + scale * tu_uniform(r);
    x->qb = quant_row_size(t, ne0) * (size_t)rows;
    x->q = malloc(x->qb);
    const size_t rb = quant_row_size(t, ne0);
    moe_error e;
    for (int64_t i = 0; i < rows; i++) {
        quant_quantize_row(t, x->f + i * ne0, (uint8_t *)x->q + i * rb, ne0, &e);
        quant_dequantize_row(t, (uint8_t *)x->q + i * rb, x->f + i * ne0, ne0, &e);
    }
}

static const float *W(const model *M, const char *name) {
    for (int i = 0; i < M->n; i++)
        if (strcmp(M->t[i].name, name) == 0) return M->t[i].f;
    return NULL;
}
static const float *WL(const model *M, int l, const char *suffix) {
    char nm[96];
    snprintf(nm, sizeof nm, "blk.%d.%s", l, suffix);
    return W(M, nm);
}

static void build(model *M, const spec *s, uint64_t seed) {
    tu_rng r = {seed};
    const int d = s->d, qw = s->H * s->hd, kvw = s->Hkv * s->hd;
    char nm[96];
    M->n = 0;
#define T2(name, a, b, t, sc) add_t(M, &r, name, 2, a, b, 1, t, sc, 0.0f)
#define VEC(name, n, sc, off) add_t(M, &r, name, 1, n, 1, 1, QUANT_F32, sc, off)
#define BL(suffix) (snprintf(nm, sizeof nm, "blk.%d.%s", l, suffix), nm)
    T2("token_embd.weight", d, s->V, s->wt, 1.0f);
    VEC("output_norm.weight", d, 0.2f, 1.0f);
    if (!s->tied) T2("output.weight", d, s->V, s->wt, sqrtf(3.0f / d));
    for (int l = 0; l < s->L; l++) {
        VEC(BL("attn_norm.weight"), d, 0.2f, 1.0f);
        T2(BL("attn_q.weight"), d, qw, s->wt, sqrtf(3.0f / d));
        T2(BL("attn_k.weight"), d, kvw, s->wt, sqrtf(3.0f / d));
        T2(BL("attn_v.weight"), d, kvw, s->wt, sqrtf(3.0f / d));
        T2(BL("attn_output.weight"), qw, d, s->wt, sqrtf(3.0f / qw));
        if (s->biases) {
            VEC(BL("attn_q.bias"), qw, 0.3f, 0.0f);
            VEC(BL("attn_k.bias"), kvw, 0.3f, 0.0f);
            VEC(BL("attn_v.bias"), kvw, 0.3f, 0.0f);
            VEC(BL("attn_output.bias"), d, 0.3f, 0.0f);
        }
        if (s->qk_norm) {
            VEC(BL("attn_q_norm.weight"), s->qk_norm == 1 ? s->hd : qw, 0.2f, 1.0f);
            VEC(BL("attn_k_norm.weight"), s->qk_norm == 1 ? s->hd : kvw, 0.2f, 1.0f);
        }
        VEC(BL("ffn_norm.weight"), d, 0.2f, 1.0f);
        if (!layer_is_moe(s, l)) {
            T2(BL("ffn_gate.weight"), d, s->ff, s->wt, sqrtf(3.0f / d));
            T2(BL("ffn_up.weight"), d, s->ff, s->wt, sqrtf(3.0f / d));
            T2(BL("ffn_down.weight"), s->ff, d, s->wt, sqrtf(3.0f / s->ff));
            continue;
        }
        const int fe = s->ff_exp;
        T2(BL("ffn_gate_inp.weight"), d, s->E, s->rt, 3.0f / sqrtf((float)d));
        add_t(M, &r, BL("ffn_gate_exps.weight"), 3, d, fe, s->E, s->wt, sqrtf(3.0f / d), 0);
        add_t(M, &r, BL("ffn_up_exps.weight"), 3, d, fe, s->E, s->wt, sqrtf(3.0f / d), 0);
        add_t(M, &r, BL("ffn_down_exps.weight"), 3, fe, d, s->E, s->wt, sqrtf(3.0f / fe), 0);
        if (s->ff_sh) {
            T2(BL("ffn_gate_shexp.weight"), d, s->ff_sh, s->wt, sqrtf(3.0f / d));
            T2(BL("ffn_up_shexp.weight"), d, s->ff_sh, s->wt, sqrtf(3.0f / d));
            T2(BL("ffn_down_shexp.weight"), s->ff_sh, d, s->wt, sqrtf(3.0f / s->ff_sh));
            if (s->sh_gated) VEC(BL("ffn_gate_inp_shexp.weight"), d, 1.0f, 0.0f);
        }
    }
#undef T2
#undef VEC
#undef BL
}

/* Writes M as a GGUF file of spec s; skip / reshape one tensor on request. */
static int write_model(const model *M, const spec *s, const char *path, const char *skip1,
                       const char *skip2, const char *bad_shape) {
    gguf_writer *w;
    moe_error e;
    char k[128];
    if (gguf_writer_create(&w, &e)) return 0;
    const char *a = s->arch;
#define KEY(suffix) (snprintf(k, sizeof k, "%s.%s", a, suffix), k)
    gguf_writer_set_str(w, "general.architecture", a, &e);
    gguf_writer_set_str(w, "general.name", "tiny test", &e);
    gguf_writer_set_u32(w, KEY("block_count"), (uint32_t)s->L, &e);
    gguf_writer_set_u32(w, KEY("context_length"), (uint32_t)s->ctx, &e);
    gguf_writer_set_u32(w, KEY("embedding_length"), (uint32_t)s->d, &e);
    gguf_writer_set_u32(w, KEY("feed_forward_length"), (uint32_t)s->ff, &e);
    gguf_writer_set_u32(w, KEY("attention.head_count"), (uint32_t)s->H, &e);
    gguf_writer_set_u32(w, KEY("attention.head_count_kv"), (uint32_t)s->Hkv, &e);
    gguf_writer_set_f32(w, KEY("attention.layer_norm_rms_epsilon"), 1e-5f, &e);
    gguf_writer_set_f32(w, KEY("rope.freq_base"), 10000.0f, &e);
    gguf_writer_set_u32(w, KEY("rope.dimension_count"), (uint32_t)s->hd, &e);
    if (s->hd_key) {
        gguf_writer_set_u32(w, KEY("attention.key_length"), (uint32_t)s->hd, &e);
        gguf_writer_set_u32(w, KEY("attention.value_length"), (uint32_t)s->hd, &e);
    }
    if (s->E) {
        gguf_writer_set_u32(w, KEY("expert_count"), (uint32_t)s->E, &e);
        gguf_writer_set_u32(w, KEY("expert_used_count"), (uint32_t)s->k, &e);
        if (s->ff_exp != s->ff)
            gguf_writer_set_u32(w, KEY("expert_feed_forward_length"), (uint32_t)s->ff_exp, &e);
        if (s->n_shared) gguf_writer_set_u32(w, KEY("expert_shared_count"), (uint32_t)s->n_shared, &e);
        else if (s->ff_sh)
            gguf_writer_set_u32(w, KEY("expert_shared_feed_forward_length"), (uint32_t)s->ff_sh, &e);
        if (s->n_lead) gguf_writer_set_u32(w, KEY("leading_dense_block_count"), (uint32_t)s->n_lead, &e);
        if (s->w_scale != 0.0f) gguf_writer_set_f32(w, KEY("expert_weights_scale"), s->w_scale, &e);
        if (s->write_norm_key) gguf_writer_set_bool(w, KEY("expert_weights_norm"), s->norm_w, &e);
        if (s->sigmoid) gguf_writer_set_u32(w, KEY("expert_gating_func"), 2, &e);
    }
    if (s->use_mask) {
        uint8_t f[32];
        for (int l = 0; l < s->L; l++) f[l] = (uint8_t)((s->moe_mask >> l) & 1);
        gguf_writer_set_arr(w, "moe.layer_is_moe", GGUF_VT_BOOL, f, (uint64_t)s->L, &e);
    }
    if (s->embd_scale) gguf_writer_set_f32(w, KEY("embedding_scale"), s->embd_scale, &e);
    if (s->resid_scale) gguf_writer_set_f32(w, KEY("residual_scale"), s->resid_scale, &e);
    if (s->logit_scale) gguf_writer_set_f32(w, KEY("logit_scale"), s->logit_scale, &e);
    if (s->attn_scale) gguf_writer_set_f32(w, KEY("attention.scale"), s->attn_scale, &e);
#undef KEY
    if (s->vocab_tokens > 0) {
        const int n = s->vocab_tokens;
        char **toks = malloc(sizeof(char *) * n);
        float *scores = malloc(sizeof(float) * n);
        int32_t *types = malloc(sizeof(int32_t) * n);
        for (int i = 0; i < n; i++) {
            toks[i] = malloc(16);
            if (i < 3) snprintf(toks[i], 16, "%s", i == 0 ? "<unk>" : i == 1 ? "<s>" : "</s>");
            else snprintf(toks[i], 16, "t%c%c", 'a' + i % 26, 'a' + i / 26);
            scores[i] = -(float)i;
            types[i] = i == 0 ? 2 : i < 3 ? 3 : 1;
        }
        gguf_writer_set_str(w, "tokenizer.ggml.model", "llama", &e);
        gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)toks, (uint64_t)n, &e);
        gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_VT_F32, scores, (uint64_t)n, &e);
        gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_VT_I32, types, (uint64_t)n, &e);
        gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1, &e);
        gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 2, &e);
        for (int i = 0; i < n; i++) free(toks[i]);
        free(toks); free(scores); free(types);
    }
    int ok = 1;
    for (int i = 0; i < M->n; i++) {
        const tens *x = &M->t[i];
        if ((skip1 && !strcmp(x->name, skip1)) || (skip2 && !strcmp(x->name, skip2))) continue;
        int64_t ne[3] = {x->ne[0], x->ne[1], x->ne[2]};
        size_t qb = x->qb;
        if (bad_shape && !strcmp(x->name, bad_shape)) { ne[1] /= 2; qb /= 2; }
        ok &= gguf_writer_add_tensor(w, x->name, x->t, (uint32_t)x->nd, ne, x->q, qb, &e) == MOE_OK;
    }
    ok &= gguf_writer_write(w, path, &e) == MOE_OK;
    if (!ok) printf("# write_model: %s\n", e.msg);
    gguf_writer_free(w);
    return ok;
}

/* ------------------------------------------------- the scalar reference */

static void ref_rms(double *y, const double *x, const float *w, int n) {
    double ss = 0;
    for (int i = 0; i < n; i++) ss += x[i] * x[i];
    const double sc = 1.0 / sqrt(ss / n + 1e-5);
    for (int i = 0; i < n; i++) y[i] = x[i] * sc * w[i];
}
/* y[rows] = W[rows, cols] x (+ b). act: when quantized, x is first rounded
 * through the activation type of that weight type (as quant_matmul does). */
static void ref_mv(double *y, const float *Wm, const double *x, int rows, int cols, const float *b,
                   quant_type act) {
    double *xq = malloc(sizeof(double) * cols);
    for (int c = 0; c < cols; c++) xq[c] = x[c];
    const quant_traits *tr = quant_get_traits(act);
    if (tr && tr->is_quantized) {
        float *f = malloc(sizeof(float) * cols);
        void *q = malloc(quant_row_size(tr->vec_dot_type, cols));
        moe_error e;
        for (int c = 0; c < cols; c++) f[c] = (float)x[c];
        quant_quantize_row(tr->vec_dot_type, f, q, cols, &e);
        quant_dequantize_row(tr->vec_dot_type, q, f, cols, &e);
        for (int c = 0; c < cols; c++) xq[c] = f[c];
        free(f); free(q);
    }
    for (int r = 0; r < rows; r++) {
        double s = b ? b[r] : 0.0;
        for (int c = 0; c < cols; c++) s += (double)Wm[(size_t)r * cols + c] * xq[c];
        y[r] = s;
    }
    free(xq);
}
static double ref_silu(double x) { return x / (1.0 + exp(-x)); }
/* y[d] += scale * down(silu(gate x) * up x) for matrices of width ff. */
static void ref_swiglu(double *y, const double *x, const float *g, const float *u, const float *dn,
                       int d, int ff, double scale, quant_type act) {
    double *a = malloc(sizeof(double) * ff), *b = malloc(sizeof(double) * ff);
    double *o = malloc(sizeof(double) * d);
    ref_mv(a, g, x, ff, d, NULL, act);
    ref_mv(b, u, x, ff, d, NULL, act);
    for (int i = 0; i < ff; i++) a[i] = ref_silu(a[i]) * b[i];
    ref_mv(o, dn, a, d, ff, NULL, act);
    for (int i = 0; i < d; i++) y[i] += scale * o[i];
    free(a); free(b); free(o);
}
static void ref_rope(double *v, int hd, int pos, int neox) {
    for (int i = 0; i < hd / 2; i++) {
        const double th = pos * pow(10000.0, -2.0 * i / hd);
        const int a = neox ? i : 2 * i, b = neox ? i + hd / 2 : 2 * i + 1;
        const double x0 = v[a], x1 = v[b];
        v[a] = x0 * cos(th) - x1 * sin(th);
        v[b] = x0 * sin(th) + x1 * cos(th);
    }
}

/* out[T, V]: the logits of every position, with k experts per token. */
static void ref_forward(const model *M, const spec *s, const int32_t *tok, int T, int k,
                        double *out) {
    const int d = s->d, H = s->H, Hkv = s->Hkv, hd = s->hd, qw = H * hd, kvw = Hkv * hd;
    double *x = calloc((size_t)T * d, sizeof(double)), *xn = malloc(sizeof(double) * d);
    double *q = malloc(sizeof(double) * (size_t)T * qw), *kk = malloc(sizeof(double) * (size_t)T * kvw);
    double *vv = malloc(sizeof(double) * (size_t)T * kvw), *o = malloc(sizeof(double) * qw);
    double *tmp = malloc(sizeof(double) * d), *p = malloc(sizeof(double) * (T + s->E + 1));
    const double rs = s->resid_scale ? s->resid_scale : 1.0;
    const quant_type act = s->emulate ? s->wt : QUANT_F32, ract = s->emulate ? s->rt : QUANT_F32;
    const float *emb = W(M, "token_embd.weight");
    for (int t = 0; t < T; t++)
        for (int i = 0; i < d; i++)
            x[t * d + i] = emb[(size_t)tok[t] * d + i] * (s->embd_scale ? s->embd_scale : 1.0);
    for (int l = 0; l < s->L; l++) {
        for (int t = 0; t < T; t++) {
            ref_rms(xn, x + t * d, WL(M, l, "attn_norm.weight"), d);
            ref_mv(q + t * qw, WL(M, l, "attn_q.weight"), xn, qw, d, WL(M, l, "attn_q.bias"), act);
            ref_mv(kk + t * kvw, WL(M, l, "attn_k.weight"), xn, kvw, d, WL(M, l, "attn_k.bias"), act);
            ref_mv(vv + t * kvw, WL(M, l, "attn_v.weight"), xn, kvw, d, WL(M, l, "attn_v.bias"), act);
            if (s->qk_norm == 1) {
                for (int h = 0; h < H; h++)
                    ref_rms(q + t * qw + h * hd, q + t * qw + h * hd, WL(M, l, "attn_q_norm.weight"), hd);
                for (int h = 0; h < Hkv; h++)
                    ref_rms(kk + t * kvw + h * hd, kk + t * kvw + h * hd, WL(M, l, "attn_k_norm.weight"), hd);
            } else if (s->qk_norm == 2) {
                ref_rms(q + t * qw, q + t * qw, WL(M, l, "attn_q_norm.weight"), qw);
                ref_rms(kk + t * kvw, kk + t * kvw, WL(M, l, "attn_k_norm.weight"), kvw);
            }
            for (int h = 0; h < H; h++) ref_rope(q + t * qw + h * hd, hd, t, s->neox);
            for (int h = 0; h < Hkv; h++) ref_rope(kk + t * kvw + h * hd, hd, t, s->neox);
        }
        const double scale = s->attn_scale ? s->attn_scale : 1.0 / sqrt((double)hd);
        double *xa = malloc(sizeof(double) * (size_t)T * d);
        for (int t = 0; t < T; t++) {
            for (int h = 0; h < H; h++) {
                const int g = h / (H / Hkv);
                double mx = -1e300, sum = 0;
                for (int j = 0; j <= t; j++) {
                    double dot = 0;
                    for (int c = 0; c < hd; c++) dot += q[t * qw + h * hd + c] * kk[j * kvw + g * hd + c];
                    p[j] = dot * scale;
                    if (p[j] > mx) mx = p[j];
                }
                for (int j = 0; j <= t; j++) { p[j] = exp(p[j] - mx); sum += p[j]; }
                for (int c = 0; c < hd; c++) {
                    double acc = 0;
                    for (int j = 0; j <= t; j++) acc += p[j] / sum * vv[j * kvw + g * hd + c];
                    o[h * hd + c] = acc;
                }
            }
            ref_mv(xa + t * d, WL(M, l, "attn_output.weight"), o, d, qw, WL(M, l, "attn_output.bias"), act);
        }
        for (int i = 0; i < T * d; i++) x[i] += rs * xa[i];
        free(xa);
        for (int t = 0; t < T; t++) {
            double *xt = x + t * d;
            ref_rms(xn, xt, WL(M, l, "ffn_norm.weight"), d);
            for (int i = 0; i < d; i++) tmp[i] = 0;
            if (!layer_is_moe(s, l)) {
                ref_swiglu(tmp, xn, WL(M, l, "ffn_gate.weight"), WL(M, l, "ffn_up.weight"),
                           WL(M, l, "ffn_down.weight"), d, s->ff, 1.0, act);
            } else {
                const int E = s->E, fe = s->ff_exp;
                ref_mv(p, WL(M, l, "ffn_gate_inp.weight"), xn, E, d, NULL, ract);
                double mx = -1e300, sum = 0;
                for (int e = 0; e < E; e++) if (p[e] > mx) mx = p[e];
                for (int e = 0; e < E; e++) {
                    p[e] = s->sigmoid ? 1.0 / (1.0 + exp(-p[e])) : exp(p[e] - mx);
                    sum += p[e];
                }
                if (!s->sigmoid) for (int e = 0; e < E; e++) p[e] /= sum;
                int sel[64], used[64] = {0};
                double wsum = 0, wt[64];
                for (int j = 0; j < k; j++) {
                    int b = -1;
                    for (int e = 0; e < E; e++)
                        if (!used[e] && (b < 0 || p[e] > p[b])) b = e;
                    used[b] = 1; sel[j] = b; wt[j] = p[b]; wsum += p[b];
                }
                for (int j = 0; j < k; j++) {
                    double wj = s->norm_w ? wt[j] / wsum : wt[j];
                    if (s->w_scale != 0.0f && s->w_scale != 1.0f) wj *= s->w_scale;
                    const size_t eg = (size_t)sel[j] * fe * d;
                    ref_swiglu(tmp, xn, WL(M, l, "ffn_gate_exps.weight") + eg,
                               WL(M, l, "ffn_up_exps.weight") + eg,
                               WL(M, l, "ffn_down_exps.weight") + eg, d, fe, wj, act);
                }
                if (s->ff_sh) {
                    double gs = 1.0;
                    if (s->sh_gated) {
                        const float *gi = WL(M, l, "ffn_gate_inp_shexp.weight");
                        double z = 0;
                        for (int i = 0; i < d; i++) z += gi[i] * xn[i];
                        gs = 1.0 / (1.0 + exp(-z));
                    }
                    ref_swiglu(tmp, xn, WL(M, l, "ffn_gate_shexp.weight"), WL(M, l, "ffn_up_shexp.weight"),
                               WL(M, l, "ffn_down_shexp.weight"), d, s->ff_sh, gs, act);
                }
            }
            for (int i = 0; i < d; i++) xt[i] += rs * tmp[i];
        }
    }
    const float *ow = s->tied ? emb : W(M, "output.weight");
    for (int t = 0; t < T; t++) {
        ref_rms(xn, x + t * d, W(M, "output_norm.weight"), d);
        ref_mv(out + (size_t)t * s->V, ow, xn, s->V, d, NULL, act);
        if (s->logit_scale)
            for (int v = 0; v < s->V; v++) out[(size_t)t * s->V + v] /= s->logit_scale;
    }
    free(x); free(xn); free(q); free(kk); free(vv); free(o); free(tmp); free(p);
}

/* --------------------------------------------------------------- checks */

static void tokens_for(const spec *s, int32_t *tok, int T) {
    for (int t = 0; t < T; t++) tok[t] = (int32_t)((t * 7 + 3) % s->V);
}

static double rel_err_d(const float *a, const double *b, size_t n, size_t *worst) {
    float *bf = malloc(sizeof(float) * n);
    for (size_t i = 0; i < n; i++) bf[i] = (float)b[i];
    double e = tu_rel_err(a, bf, n, worst);
    free(bf);
    return e;
}

/* Opens path; NULL on failure (a FAIL line names the test). */
static moe_infer *open_or_fail(const char *name, const char *path, const moe_infer_options *o) {
    moe_infer *m = NULL;
    moe_error e;
    moe_status st = moe_infer_open(&m, path, o, &e);
    if (st != MOE_OK) { tu_fail(name, "open: %s", e.msg); return NULL; }
    return m;
}

/* Engine logits [T, V] of tok, evaluated in chunks of the given sizes
 * (NULL: one call). */
static int run_eval(moe_infer *m, const int32_t *tok, int T, const int *chunks, float *out,
                    moe_error *e) {
    const int V = moe_infer_get_info(m)->vocab_size;
    int pos = 0, c = 0;
    while (pos < T) {
        int n = chunks ? chunks[c++] : T;
        if (pos + n > T) n = T - pos;
        if (moe_infer_eval(m, tok + pos, n, pos, out + (size_t)pos * V, 1, e) != MOE_OK) return 0;
        pos += n;
    }
    return 1;
}

/* The reference check of one spec: every position's logits in one call, and
 * the last position's alone. */
static void check_ref(const char *name, const spec *s, double tol, uint64_t seed) {
    model M;
    char path[300];
    snprintf(path, sizeof path, "%s/%s.gguf", tmpdir, name);
    build(&M, s, seed);
    if (!write_model(&M, s, path, NULL, NULL, NULL)) { tu_fail(name, "could not write"); model_free(&M); return; }
    moe_infer_options o;
    moe_infer_options_default(&o);
    o.n_threads = 2;
    moe_infer *m = open_or_fail(name, path, &o);
    if (!m) { model_free(&M); return; }
    enum { T = 9 };
    int32_t tok[T];
    tokens_for(s, tok, T);
    float *got = malloc(sizeof(float) * T * s->V), *last = malloc(sizeof(float) * s->V);
    double *want = malloc(sizeof(double) * T * s->V);
    moe_error e;
    ref_forward(&M, s, tok, T, s->k, want);
    size_t w = 0;
    if (!run_eval(m, tok, T, NULL, got, &e)) {
        tu_fail(name, "eval: %s", e.msg);
    } else {
        double err = rel_err_d(got, want, (size_t)T * s->V, &w);
        moe_infer_reset(m);
        moe_status st = moe_infer_eval(m, tok, T, 0, last, 0, &e);
        double err_last = st == MOE_OK ? tu_rel_err(last, got + (size_t)(T - 1) * s->V, s->V, NULL) : 1.0;
        if (!(err <= tol)) tu_fail(name, "logits rel err %.3g > %.1g at [%zu, %zu]: %g vs %g", err,
                                   tol, w / s->V, w % s->V, got[w], want[w]);
        else if (err_last != 0.0) tu_fail(name, "last-only logits differ (%g)", err_last);
        else tu_ok(name);
    }
    free(got); free(last); free(want);
    moe_infer_close(m);
    model_free(&M);
}

static spec mixtral_spec(void) {
    spec s = base_spec("llama");
    s.E = 4; s.k = 2; s.ff_exp = s.ff; s.norm_w = 1; s.tied = 1;
    return s;
}

static void test_architectures(void) {
    spec s = base_spec("llama");
    s.biases = 1; s.L = 3;
    check_ref("ref_llama_dense", &s, 1e-4, 11);

    s = mixtral_spec();
    check_ref("ref_mixtral", &s, 1e-4, 12);

    s = mixtral_spec(); /* our trainer's mixed layout, routing keys overridden */
    s.L = 3; s.use_mask = 1; s.moe_mask = 5; s.ff = 40; s.ff_exp = 16; s.tied = 0;
    s.sigmoid = 1; s.norm_w = 0; s.write_norm_key = 1; s.w_scale = 2.5f; s.rt = QUANT_F16;
    check_ref("ref_llama_mixed_layers", &s, 1e-4, 13);

    s = base_spec("qwen2moe");
    s.E = 6; s.k = 2; s.ff = 40; s.ff_exp = 16; s.ff_sh = 24; s.sh_gated = 1; s.neox = 1;
    s.biases = 1;
    check_ref("ref_qwen2moe", &s, 1e-4, 14);

    s = base_spec("qwen3moe");
    s.E = 8; s.k = 3; s.ff = 40; s.ff_exp = 16; s.neox = 1; s.norm_w = 1; s.qk_norm = 1;
    s.hd = 16; s.hd_key = 1; s.tied = 1;
    check_ref("ref_qwen3moe", &s, 1e-4, 15);

    s = base_spec("olmoe");
    s.E = 4; s.k = 2; s.ff_exp = s.ff; s.neox = 1; s.qk_norm = 2;
    check_ref("ref_olmoe", &s, 1e-4, 16);

    s = base_spec("deepseek");
    s.L = 3; s.E = 4; s.k = 2; s.ff = 40; s.ff_exp = 16; s.n_shared = 2; s.ff_sh = 32;
    s.n_lead = 1; s.w_scale = 1.0f;
    check_ref("ref_deepseek", &s, 1e-4, 17);

    s = base_spec("granitemoe");
    s.E = 4; s.k = 2; s.ff_exp = s.ff; s.norm_w = 1; s.tied = 1;
    s.embd_scale = 2.0f; s.resid_scale = 0.5f; s.logit_scale = 4.0f; s.attn_scale = 0.2f;
    check_ref("ref_granitemoe", &s, 1e-4, 18);
}

/* One batch vs token by token vs chunks vs a small max_batch. */
static void test_kv_cache(void) {
    const char *name = "kv_cache_consistency";
    spec s = base_spec("deepseek");
    s.L = 3; s.E = 4; s.k = 2; s.ff = 40; s.ff_exp = 16; s.n_shared = 1; s.ff_sh = 16; s.n_lead = 1;
    model M;
    char path[300];
    snprintf(path, sizeof path, "%s/kv.gguf", tmpdir);
    build(&M, &s, 21);
    write_model(&M, &s, path, NULL, NULL, NULL);
    moe_infer_options o;
    moe_infer_options_default(&o);
    moe_infer *a = open_or_fail(name, path, &o);
    o.max_batch = 2;
    o.n_threads = 3;
    moe_infer *b = open_or_fail(name, path, &o);
    enum { T = 13 };
    int32_t tok[T];
    tokens_for(&s, tok, T);
    const int ones[T] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, mixed[] = {3, 1, 4, 5};
    float *r[4];
    for (int i = 0; i < 4; i++) r[i] = malloc(sizeof(float) * T * s.V);
    moe_error e;
    int ok = a && b && run_eval(a, tok, T, NULL, r[0], &e);
    moe_infer_reset(a);
    ok = ok && run_eval(a, tok, T, ones, r[1], &e);
    moe_infer_reset(a);
    ok = ok && run_eval(a, tok, T, mixed, r[2], &e);
    ok = ok && run_eval(b, tok, T, NULL, r[3], &e);
    if (!ok) {
        tu_fail(name, "eval: %s", a && b ? e.msg : "open failed");
    } else {
        double worst = 0;
        size_t w = 0;
        int which = 0;
        for (int i = 1; i < 4; i++) {
            size_t wi;
            double er = tu_rel_err(r[i], r[0], (size_t)T * s.V, &wi);
            if (er > worst) { worst = er; w = wi; which = i; }
        }
        if (!(worst <= 1e-5)) tu_fail(name, "split %d differs: rel err %.3g at %zu: %g vs %g",
                                      which, worst, w, r[which][w], r[0][w]);
        else tu_ok(name);
    }
    /* Regenerating from an earlier position overwrites the cache. */
    const char *n2 = "kv_cache_rewind";
    if (ok) {
        float *l2 = malloc(sizeof(float) * s.V);
        int32_t other = (tok[6] + 1) % s.V;
        ok = moe_infer_eval(a, &other, 1, 6, l2, 0, &e) == MOE_OK &&
             moe_infer_eval(a, tok + 6, 1, 6, l2, 0, &e) == MOE_OK;
        double er = ok ? tu_rel_err(l2, r[0] + 6 * s.V, s.V, NULL) : 1;
        if (!ok) tu_fail(n2, "%s", e.msg);
        else if (!(er <= 1e-5)) tu_fail(n2, "rel err %.3g", er);
        else tu_ok(n2);
        free(l2);
    }
    for (int i = 0; i < 4; i++) free(r[i]);
    moe_infer_close(a);
    moe_infer_close(b);
    model_free(&M);
}

/* Quantized big matrices (token_embd, attention, experts, output; router
 * f32): against the fp64 forward of the dequantized weights (loose: the
 * engine also quantizes activations, as ggml does), and against the same
 * forward rounding activations the way quant_matmul does (tight). */
static void check_quant(const char *name, quant_type wt, double tol_plain, double tol_emul) {
    spec s = mixtral_spec();
    s.d = 256; s.H = 4; s.Hkv = 2; s.hd = 64; s.ff = s.ff_exp = 256; s.V = 64; s.tied = 0;
    s.wt = wt;
    model M;
    char path[300];
    snprintf(path, sizeof path, "%s/%s.gguf", tmpdir, name);
    build(&M, &s, 31);
    write_model(&M, &s, path, NULL, NULL, NULL);
    moe_infer *m = open_or_fail(name, path, NULL);
    if (!m) { model_free(&M); return; }
    enum { T = 6 };
    int32_t tok[T];
    tokens_for(&s, tok, T);
    float *got = malloc(sizeof(float) * T * s.V);
    double *plain = malloc(sizeof(double) * T * s.V), *emul = malloc(sizeof(double) * T * s.V);
    moe_error e;
    ref_forward(&M, &s, tok, T, s.k, plain);
    s.emulate = 1;
    ref_forward(&M, &s, tok, T, s.k, emul);
    size_t w1, w2;
    if (!run_eval(m, tok, T, NULL, got, &e)) tu_fail(name, "eval: %s", e.msg);
    else {
        const double e1 = rel_err_d(got, plain, (size_t)T * s.V, &w1);
        const double e2 = rel_err_d(got, emul, (size_t)T * s.V, &w2);
        printf("# %s: rel err vs the dequantized fp64 forward %.3g, vs that forward with "
               "activations rounded as the engine does %.3g\n", name, e1, e2);
        const moe_infer_info *in = moe_infer_get_info(m);
        int64_t total = 0, bytes = 0, eb = 0;
        for (int i = 0; i < M.n; i++) {
            total += M.t[i].ne[0] * M.t[i].ne[1] * M.t[i].ne[2];
            bytes += (int64_t)M.t[i].qb;
            if (strstr(M.t[i].name, "_exps")) eb += (int64_t)M.t[i].qb;
        }
        const int64_t pact = total - (int64_t)s.L * (s.E - s.k) * 3 * s.ff_exp * s.d -
                             (int64_t)(s.V - 1) * s.d;
        const int64_t rowb = (int64_t)quant_row_size(wt, s.d);
        const int64_t bact = bytes - eb / s.E * (s.E - s.k) - (s.V - 1) * rowb;
        if (in->params_total != total || in->params_active != pact || in->bytes_total != bytes ||
            in->bytes_active != bact)
            tu_fail(name, "info (untied): params %lld/%lld (want %lld/%lld), bytes %lld/%lld "
                    "(want %lld/%lld)", (long long)in->params_total, (long long)in->params_active,
                    (long long)total, (long long)pact, (long long)in->bytes_total,
                    (long long)in->bytes_active, (long long)bytes, (long long)bact);
        else if (!(e1 <= tol_plain)) tu_fail(name, "rel err %.3g > %.3g at %zu: %g vs %g", e1,
                                        tol_plain, w1, got[w1], plain[w1]);
        else if (!(e2 <= tol_emul)) tu_fail(name, "emulated: rel err %.3g > %.3g at %zu: %g vs %g",
                                            e2, tol_emul, w2, got[w2], emul[w2]);
        else tu_ok(name);
    }
    free(got); free(plain); free(emul);
    moe_infer_close(m);
    model_free(&M);
}

static void test_routing_and_info(void) {
    spec s = mixtral_spec();
    s.L = 3; s.use_mask = 1; s.moe_mask = 6; s.ff = 40; s.ff_exp = 16; s.E = 5; s.k = 2;
    model M;
    char path[300];
    snprintf(path, sizeof path, "%s/route.gguf", tmpdir);
    build(&M, &s, 41);
    write_model(&M, &s, path, NULL, NULL, NULL);
    moe_infer *m = open_or_fail("routing_open", path, NULL);
    if (!m) { model_free(&M); return; }
    enum { T = 8 };
    int32_t tok[T];
    tokens_for(&s, tok, T);
    float *a = malloc(sizeof(float) * T * s.V), *b = malloc(sizeof(float) * T * s.V);
    double *want = malloc(sizeof(double) * T * s.V);
    moe_error e;
    int ok = run_eval(m, tok, T, NULL, a, &e);

    /* expert counts: n_tokens * k per MoE layer, 0 for the dense one */
    const int64_t *c = moe_infer_expert_counts(m);
    const char *why = NULL;
    for (int l = 0; l < s.L && !why; l++) {
        int64_t sum = 0;
        for (int x = 0; x < s.E; x++) sum += c[l * s.E + x];
        if (sum != (layer_is_moe(&s, l) ? T * s.k : 0)) why = "wrong sum";
    }
    if (!ok || why) tu_fail("expert_counts", "%s", ok ? why : e.msg);
    else tu_ok("expert_counts");

    /* set_top_k(1): different logits, equal to the reference with k = 1 */
    moe_status bad0 = moe_infer_set_top_k(m, 0, &e), bad1 = moe_infer_set_top_k(m, s.E + 1, &e);
    moe_infer_reset(m);
    ok = ok && moe_infer_set_top_k(m, 1, &e) == MOE_OK && run_eval(m, tok, T, NULL, b, &e);
    ref_forward(&M, &s, tok, T, 1, want);
    size_t w = 0;
    double diff = ok ? tu_rel_err(b, a, (size_t)T * s.V, NULL) : 0;
    double err = ok ? rel_err_d(b, want, (size_t)T * s.V, &w) : 1;
    int64_t sum1 = 0;
    for (int x = 0; x < s.E; x++) sum1 += c[1 * s.E + x];
    if (!ok) tu_fail("set_top_k", "%s", e.msg);
    else if (bad0 != MOE_ERR_ARG || bad1 != MOE_ERR_ARG) tu_fail("set_top_k", "k = 0 or E+1 accepted");
    else if (!(diff > 1e-3)) tu_fail("set_top_k", "k = 1 gives the same logits (diff %.3g)", diff);
    else if (!(err <= 1e-4)) tu_fail("set_top_k", "k = 1 vs reference rel err %.3g", err);
    else if (sum1 != T || moe_infer_get_info(m)->top_k != 1) tu_fail("set_top_k", "counts %lld", (long long)sum1);
    else tu_ok("set_top_k");

    /* the same through the option */
    moe_infer_options o;
    moe_infer_options_default(&o);
    o.experts_per_token = 1;
    moe_infer *m1 = open_or_fail("experts_per_token_option", path, &o);
    if (m1) {
        float *b1 = malloc(sizeof(float) * T * s.V);
        if (!run_eval(m1, tok, T, NULL, b1, &e)) tu_fail("experts_per_token_option", "%s", e.msg);
        else if (tu_rel_err(b1, b, (size_t)T * s.V, NULL) != 0) tu_fail("experts_per_token_option", "differs");
        else tu_ok("experts_per_token_option");
        free(b1);
        moe_infer_close(m1);
    }

    /* info */
    moe_infer_set_top_k(m, 2, &e);
    const moe_infer_info *in = moe_infer_get_info(m);
    int64_t total = 0, bytes = 0;
    for (int i = 0; i < M.n; i++) {
        total += M.t[i].ne[0] * M.t[i].ne[1] * M.t[i].ne[2];
        bytes += (int64_t)M.t[i].qb;
    }
    const int64_t per_expert = 3LL * s.ff_exp * s.d, n_moe = 2;
    const int64_t act = total - n_moe * (s.E - s.k) * per_expert;
    const int64_t bact = bytes - n_moe * (s.E - s.k) * per_expert * 4; /* tied: whole table read */
    if (strcmp(in->arch, "llama") || strcmp(in->name, "tiny test") || in->n_layers != s.L ||
        in->d_model != s.d || in->n_heads != s.H || in->n_kv_heads != s.Hkv || in->head_dim != s.hd ||
        in->vocab_size != s.V || in->ctx_len != s.ctx || in->n_experts != s.E || in->top_k != 2 ||
        in->n_dense_layers != 1)
        tu_fail("info", "fields: arch %s name %s L %d d %d ctx %d E %d k %d dense %d", in->arch,
                in->name, in->n_layers, in->d_model, in->ctx_len, in->n_experts, in->top_k,
                in->n_dense_layers);
    else if (in->params_total != total || in->params_active != act || in->bytes_total != bytes ||
             in->bytes_active != bact)
        tu_fail("info", "params %lld/%lld (want %lld/%lld), bytes %lld/%lld (want %lld/%lld)",
                (long long)in->params_total, (long long)in->params_active, (long long)total,
                (long long)act, (long long)in->bytes_total, (long long)in->bytes_active,
                (long long)bytes, (long long)bact);
    else tu_ok("info");
    if (moe_infer_vocab(m) != NULL) tu_fail("no_tokenizer_vocab_null", "vocab not NULL");
    else tu_ok("no_tokenizer_vocab_null");

    /* eval errors */
    moe_infer_reset(m);
    int32_t badtok = s.V;
    moe_status e1 = moe_infer_eval(m, tok, 4, s.ctx - 3, NULL, 0, &e);      /* pos > filled */
    moe_status e2 = moe_infer_eval(m, &badtok, 1, 0, NULL, 0, &e);
    char msg2[512];
    memcpy(msg2, e.msg, sizeof msg2);
    int32_t *many = calloc((size_t)s.ctx + 1, sizeof(int32_t));
    moe_status e3 = moe_infer_eval(m, many, s.ctx + 1, 0, NULL, 0, &e);
    char msg3[512];
    memcpy(msg3, e.msg, sizeof msg3);
    moe_status e4 = moe_infer_eval(m, many, s.ctx, 0, NULL, 0, &e);
    moe_status e5 = moe_infer_eval(m, many, 1, s.ctx, NULL, 0, &e);        /* pos + n > ctx */
    if (e1 != MOE_ERR_ARG || e2 != MOE_ERR_ARG || e3 != MOE_ERR_ARG || e4 != MOE_OK || e5 != MOE_ERR_ARG)
        tu_fail("eval_errors", "statuses %d %d %d %d %d", e1, e2, e3, e4, e5);
    else if (!strstr(msg2, "tokens[0]") || !strstr(msg3, "ctx_len"))
        tu_fail("eval_errors", "messages: '%s' / '%s'", msg2, msg3);
    else tu_ok("eval_errors");
    free(many);
    free(a); free(b); free(want);
    moe_infer_close(m);
    model_free(&M);
}

static void test_load_errors(void) {
    spec s = mixtral_spec();
    model M;
    char path[300];
    moe_error e;
    moe_infer *m = NULL;
    build(&M, &s, 51);
    snprintf(path, sizeof path, "%s/missing.gguf", tmpdir);
    write_model(&M, &s, path, "blk.0.attn_q.weight", "blk.1.ffn_up_exps.weight", "blk.1.attn_k.weight");
    moe_status st = moe_infer_open(&m, path, NULL, &e);
    if (st != MOE_ERR_FORMAT || m) tu_fail("missing_tensors", "status %d", st);
    else if (!strstr(e.msg, "blk.0.attn_q.weight") || !strstr(e.msg, "blk.1.ffn_up_exps.weight") ||
             !strstr(e.msg, "2 tensors missing") || !strstr(e.msg, "blk.1.attn_k.weight is {32, 8}, expected {32, 16}"))
        tu_fail("missing_tensors", "message: %s", e.msg);
    else tu_ok("missing_tensors");
    printf("# %s\n", e.msg);

    s.arch = "gpt9";
    snprintf(path, sizeof path, "%s/gpt9.gguf", tmpdir);
    write_model(&M, &s, path, NULL, NULL, NULL);
    st = moe_infer_open(&m, path, NULL, &e);
    if (st != MOE_ERR_UNSUPPORTED || m || !strstr(e.msg, "gpt9")) tu_fail("unknown_architecture", "%d: %s", st, e.msg);
    else tu_ok("unknown_architecture");

    st = moe_infer_open(&m, "/nonexistent/x.gguf", NULL, &e);
    if (st == MOE_OK || m) tu_fail("missing_file", "opened");
    else tu_ok("missing_file");

    s = mixtral_spec();
    snprintf(path, sizeof path, "%s/opt.gguf", tmpdir);
    write_model(&M, &s, path, NULL, NULL, NULL);
    moe_infer_options o;
    moe_infer_options_default(&o);
    o.experts_per_token = 5;
    st = moe_infer_open(&m, path, &o, &e);
    if (st != MOE_ERR_ARG || m) tu_fail("bad_options", "experts_per_token 5 of 4: %d", st);
    else tu_ok("bad_options");

    /* a tokenizer in the file: loaded; its size must match the embedding */
    s = mixtral_spec();
    s.vocab_tokens = s.V;
    snprintf(path, sizeof path, "%s/vocab.gguf", tmpdir);
    write_model(&M, &s, path, NULL, NULL, NULL);
    st = moe_infer_open(&m, path, NULL, &e);
    if (st != MOE_OK) tu_fail("tokenizer_loaded", "%s", e.msg);
    else if (!moe_infer_vocab(m) || moe_vocab_size(moe_infer_vocab(m)) != s.V ||
             moe_vocab_eos(moe_infer_vocab(m)) != 2)
        tu_fail("tokenizer_loaded", "vocab %p", (const void *)moe_infer_vocab(m));
    else tu_ok("tokenizer_loaded");
    moe_infer_close(m);
    m = NULL;
    s.vocab_tokens = s.V - 1;
    write_model(&M, &s, path, NULL, NULL, NULL);
    st = moe_infer_open(&m, path, NULL, &e);
    if (st != MOE_ERR_FORMAT || m || !strstr(e.msg, "47 tokens"))
        tu_fail("tokenizer_size_mismatch", "%d: %s", st, e.msg);
    else tu_ok("tokenizer_size_mismatch");
    model_free(&M);
}

static void cleanup(void) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) printf("# could not remove %s\n", tmpdir);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/test_infer_XXXXXX");
    if (!mkdtemp(tmpdir)) { tu_fail("setup", "mkdtemp"); return 1; }
    test_architectures();
    test_kv_cache();
    check_quant("quant_q8_0", QUANT_Q8_0, 5e-2, 1e-3);
    check_quant("quant_q4_K", QUANT_Q4_K, 5e-2, 1e-3);
    test_routing_and_info();
    test_load_errors();
    cleanup();
    return tu_exit_code();
}
