/* synth.c: random GGUF models of every supported architecture (see synth.h
 * for the layouts, the scales and the seeding).
 *
 * A spec becomes a plan (a list of tensors with name, type, shape and how to
 * draw them), the plan is checked as a whole, then each tensor is filled row
 * by row in parallel and handed to the GGUF writer with the family's metadata.
 * Not for: reading files or running the model.
 */
#include "tools/synth.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cancel.h"
#include "core/error.h"
#include "core/hash.h"
#include "core/rng.h"
#include "io/gguf.h"
#include "quant/quant.h"
#include "text/bpe.h"

/* ------------------------------------------------------------ families */

typedef enum fam {
    FAM_LLAMA, FAM_MIXTRAL, FAM_QWEN2MOE, FAM_QWEN3MOE, FAM_OLMOE, FAM_DEEPSEEK, FAM_GRANITEMOE,
    FAM_COUNT
} fam;

static const char *const fam_names[FAM_COUNT] = {
    "llama", "mixtral", "qwen2moe", "qwen3moe", "olmoe", "deepseek", "granitemoe"};

/* general.architecture of each family (mixtral is llama with experts). */
static const char *const fam_gguf[FAM_COUNT] = {
    "llama", "llama", "qwen2moe", "qwen3moe", "olmoe", "deepseek", "granitemoe"};

static int fam_of(const char *arch) {
    if (!arch) return -1;
    for (int i = 0; i < FAM_COUNT; i++)
        if (!strcmp(arch, fam_names[i])) return i;
    return -1;
}

/* ------------------------------------------------------------- defaults */

void synth_spec_default(synth_spec *s, const char *arch) {
    int f = fam_of(arch);
    if (f < 0) f = FAM_MIXTRAL;
    memset(s, 0, sizeof *s);
    s->arch = fam_names[f];
    s->n_layers = 2;
    s->d_model = 64;
    s->n_heads = 4;
    s->n_kv_heads = 2;
    s->head_dim = 16;
    s->d_ff = 64;
    s->n_experts = 4;
    s->top_k = 2;
    s->vocab_size = 320;
    s->ctx_len = 256;
    s->rope_base = 10000.0f;
    s->rms_eps = 1e-5f;
    s->wtype = GGUF_T_F32;
    s->seed = 1;
    s->with_tokenizer = 1;
    switch ((fam)f) {
    case FAM_LLAMA:
        s->n_experts = s->top_k = 0;
        s->d_ff = 128;
        break;
    case FAM_MIXTRAL:
        s->rope_base = 1e6f;
        break;
    case FAM_QWEN2MOE:
        s->d_ff_shared = 128;
        s->rope_base = 1e6f;
        s->rms_eps = 1e-6f;
        break;
    case FAM_QWEN3MOE:
        s->head_dim = 32; /* q width 128 != d_model */
        s->d_ff_dense = 128;
        s->rope_base = 1e6f;
        s->rms_eps = 1e-6f;
        s->tied_output = 1;
        break;
    case FAM_OLMOE:
        s->n_kv_heads = 4; /* llama.cpp wants k_norm {d} */
        s->top_k = 3;
        break;
    case FAM_DEEPSEEK:
        s->n_layers = 3;
        s->n_dense_first = 1;
        s->d_ff_dense = 128;
        s->n_shared = 2;
        s->rms_eps = 1e-6f;
        break;
    case FAM_GRANITEMOE:
        s->embedding_scale = 12.0f;
        s->residual_scale = 0.22f;
        s->attention_scale = 0.15f; /* != 1/sqrt(16) */
        s->logit_scale = 8.0f;
        s->tied_output = 1;
        s->rms_eps = 1e-6f;
        break;
    default:
        break;
    }
}

void synth_spec_scale_dims(synth_spec *s, int mult) {
    s->d_model *= mult;
    s->head_dim *= mult;
    s->d_ff *= mult;
    s->d_ff_dense *= mult;
    s->d_ff_shared *= mult;
}

/* ---------------------------------------------------------------- plan */

typedef enum init_kind {
    INIT_NORMAL,  /* N(0, scale^2) */
    INIT_NORM     /* 1 + 0.2 N(0, 1): norm weights */
} init_kind;

typedef struct syn_tensor {
    char name[64];
    uint32_t type;       /* as stored */
    uint32_t draw_type;  /* the values are rounded through this type */
    uint32_t n_dims;
    int64_t ne[3];       /* innermost first */
    init_kind init;
    float scale;
    int big;             /* in wtype (counts for the active-weight tally too) */
    int expert;          /* a stacked expert tensor: ne[2] = E */
    void *data;
    size_t nbytes;
} syn_tensor;

typedef struct plan {
    syn_tensor *t;
    int n, cap;
    int oom;
} plan;

static syn_tensor *plan_add(plan *p, const char *name, int big, init_kind init, float scale,
                            uint32_t n_dims, int64_t ne0, int64_t ne1, int64_t ne2) {
    if (p->n == p->cap) {
        int cap = p->cap ? 2 * p->cap : 64;
        syn_tensor *t = realloc(p->t, (size_t)cap * sizeof *t);
        if (!t) { p->oom = 1; return NULL; }
        p->t = t;
        p->cap = cap;
    }
    syn_tensor *t = &p->t[p->n++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->big = big;
    t->init = init;
    t->scale = scale;
    t->n_dims = n_dims;
    t->ne[0] = ne0;
    t->ne[1] = ne1;
    t->ne[2] = ne2;
    t->expert = n_dims == 3;
    return t;
}

static void plan_free(plan *p) {
    for (int i = 0; i < p->n; i++) free(p->t[i].data);
    free(p->t);
    memset(p, 0, sizeof *p);
}

/* Matrix {in, out} (x stack): N(0, 1/in). */
static void add_mat(plan *p, const char *name, int64_t in, int64_t out, int64_t stack) {
    plan_add(p, name, 1, INIT_NORMAL, (float)(1.0 / sqrt((double)in)), stack ? 3 : 2, in, out,
             stack ? stack : 1);
}
static void add_vec(plan *p, const char *name, int64_t n, init_kind init, float scale) {
    plan_add(p, name, 0, init, scale, 1, n, 1, 1);
}

static void build_plan(plan *p, const synth_spec *s, fam f) {
    const int64_t d = s->d_model, q = (int64_t)s->n_heads * s->head_dim;
    const int64_t kv = (int64_t)s->n_kv_heads * s->head_dim, V = s->vocab_size;
    const int64_t E = s->n_experts, ff = s->d_ff;
    char nm[64];
    plan_add(p, "token_embd.weight", 0, INIT_NORMAL, (float)(1.0 / sqrt((double)d)), 2, d, V, 1);
    add_vec(p, "output_norm.weight", d, INIT_NORM, 0);
    if (!s->tied_output) add_mat(p, "output.weight", d, V, 0);
    for (int l = 0; l < s->n_layers; l++) {
#define NM(suffix) (snprintf(nm, sizeof nm, "blk.%d.%s", l, suffix), nm)
        add_vec(p, NM("attn_norm.weight"), d, INIT_NORM, 0);
        add_mat(p, NM("attn_q.weight"), d, q, 0);
        add_mat(p, NM("attn_k.weight"), d, kv, 0);
        add_mat(p, NM("attn_v.weight"), d, kv, 0);
        add_mat(p, NM("attn_output.weight"), q, d, 0);
        if (f == FAM_QWEN2MOE) {
            add_vec(p, NM("attn_q.bias"), q, INIT_NORMAL, 0.2f);
            add_vec(p, NM("attn_k.bias"), kv, INIT_NORMAL, 0.2f);
            add_vec(p, NM("attn_v.bias"), kv, INIT_NORMAL, 0.2f);
        }
        if (f == FAM_QWEN3MOE) {
            add_vec(p, NM("attn_q_norm.weight"), s->head_dim, INIT_NORM, 0);
            add_vec(p, NM("attn_k_norm.weight"), s->head_dim, INIT_NORM, 0);
        }
        if (f == FAM_OLMOE) {
            add_vec(p, NM("attn_q_norm.weight"), q, INIT_NORM, 0);
            add_vec(p, NM("attn_k_norm.weight"), kv, INIT_NORM, 0);
        }
        add_vec(p, NM("ffn_norm.weight"), d, INIT_NORM, 0);
        int dense = f == FAM_LLAMA || (f == FAM_DEEPSEEK && l < s->n_dense_first);
        if (dense) {
            int64_t fd = f == FAM_DEEPSEEK ? s->d_ff_dense : ff;
            add_mat(p, NM("ffn_gate.weight"), d, fd, 0);
            add_mat(p, NM("ffn_up.weight"), d, fd, 0);
            add_mat(p, NM("ffn_down.weight"), fd, d, 0);
            continue;
        }
        plan_add(p, NM("ffn_gate_inp.weight"), 0, INIT_NORMAL, (float)(2.0 / sqrt((double)d)), 2,
                 d, E, 1);
        add_mat(p, NM("ffn_gate_exps.weight"), d, ff, E);
        add_mat(p, NM("ffn_up_exps.weight"), d, ff, E);
        add_mat(p, NM("ffn_down_exps.weight"), ff, d, E);
        int64_t fs = f == FAM_QWEN2MOE ? s->d_ff_shared
                   : f == FAM_DEEPSEEK ? (int64_t)s->n_shared * ff : 0;
        if (fs) {
            if (f == FAM_QWEN2MOE)
                add_vec(p, NM("ffn_gate_inp_shexp.weight"), d, INIT_NORMAL,
                        (float)(1.0 / sqrt((double)d)));
            add_mat(p, NM("ffn_gate_shexp.weight"), d, fs, 0);
            add_mat(p, NM("ffn_up_shexp.weight"), d, fs, 0);
            add_mat(p, NM("ffn_down_shexp.weight"), fs, d, 0);
        }
#undef NM
    }
}

/* ------------------------------------------------------------ validation */

static moe_status check_spec(const synth_spec *s, fam *f_out, moe_error *err) {
    if (!s) return moe_err(err, MOE_ERR_ARG, "synth: spec is NULL");
    int f = fam_of(s->arch);
    if (f < 0)
        return moe_err(err, MOE_ERR_ARG,
                       "synth: arch \"%s\" unknown, expected llama, mixtral, qwen2moe, qwen3moe, "
                       "olmoe, deepseek or granitemoe", s->arch ? s->arch : "(null)");
    *f_out = (fam)f;
    struct { const char *what; int v, lo; } pos[] = {
        {"n_layers", s->n_layers, 1}, {"d_model", s->d_model, 1}, {"n_heads", s->n_heads, 1},
        {"n_kv_heads", s->n_kv_heads, 1}, {"head_dim", s->head_dim, 2}, {"d_ff", s->d_ff, 1},
        {"vocab_size", s->vocab_size, 1}, {"ctx_len", s->ctx_len, 1}};
    for (size_t i = 0; i < sizeof pos / sizeof pos[0]; i++)
        if (pos[i].v < pos[i].lo)
            return moe_err(err, MOE_ERR_ARG, "synth: %s = %d, expected >= %d", pos[i].what,
                           pos[i].v, pos[i].lo);
    if (s->d_model > (1 << 20) || s->d_ff > (1 << 22) || s->vocab_size > (1 << 24) ||
        s->n_layers > 4096 || s->n_heads > 4096 || s->head_dim > 4096 || s->n_experts > 4096 ||
        s->d_ff_dense > (1 << 22) || s->d_ff_shared > (1 << 22) || s->n_shared > 64)
        return moe_err(err, MOE_ERR_ARG, "synth: a dimension is implausibly large");
    if (s->head_dim % 2)
        return moe_err(err, MOE_ERR_ARG, "synth: head_dim = %d, expected even (RoPE pairs)", s->head_dim);
    if (s->n_heads % s->n_kv_heads)
        return moe_err(err, MOE_ERR_ARG, "synth: n_heads = %d not a multiple of n_kv_heads = %d",
                       s->n_heads, s->n_kv_heads);
    if (f == FAM_LLAMA) {
        if (s->n_experts || s->top_k)
            return moe_err(err, MOE_ERR_ARG, "synth: llama is dense (n_experts = %d, top_k = %d; "
                           "use mixtral for experts)", s->n_experts, s->top_k);
    } else if (s->n_experts < 1 || s->top_k < 1 || s->top_k > s->n_experts) {
        return moe_err(err, MOE_ERR_ARG, "synth: %s needs 1 <= top_k (%d) <= n_experts (%d)",
                       s->arch, s->top_k, s->n_experts);
    }
    if (f == FAM_QWEN2MOE && s->d_ff_shared < 1)
        return moe_err(err, MOE_ERR_ARG, "synth: qwen2moe needs d_ff_shared >= 1 (got %d)", s->d_ff_shared);
    if (f == FAM_DEEPSEEK) {
        if (s->n_shared < 1)
            return moe_err(err, MOE_ERR_ARG, "synth: deepseek needs n_shared >= 1 (got %d)", s->n_shared);
        if (s->n_dense_first < 0 || s->n_dense_first >= s->n_layers)
            return moe_err(err, MOE_ERR_ARG, "synth: n_dense_first = %d, expected 0..n_layers-1 = %d",
                           s->n_dense_first, s->n_layers - 1);
        if (s->n_dense_first > 0 && s->d_ff_dense < 1)
            return moe_err(err, MOE_ERR_ARG, "synth: deepseek with dense layers needs d_ff_dense >= 1");
    }
    if (f == FAM_OLMOE && s->n_kv_heads != s->n_heads)
        return moe_err(err, MOE_ERR_ARG, "synth: olmoe needs n_kv_heads = n_heads (llama.cpp reads "
                       "attn_k_norm as {d}); got %d and %d", s->n_kv_heads, s->n_heads);
    if (f == FAM_GRANITEMOE && !(s->logit_scale > 0 && s->embedding_scale > 0 &&
                                 s->residual_scale > 0 && s->attention_scale > 0))
        return moe_err(err, MOE_ERR_ARG, "synth: granitemoe needs positive embedding, residual, "
                       "attention and logit scales");
    if (!(s->rope_base > 1) || !(s->rms_eps > 0))
        return moe_err(err, MOE_ERR_ARG, "synth: rope_base = %g, rms_eps = %g, expected > 1 and > 0",
                       (double)s->rope_base, (double)s->rms_eps);
    quant_type wt = (quant_type)s->wtype;
    const quant_traits *tr = quant_get_traits(wt);
    if (!tr || wt == QUANT_Q8_1 || wt == QUANT_Q8_K)
        return moe_err(err, MOE_ERR_ARG, "synth: wtype %u is not a weight type (F32, F16, BF16, "
                       "Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K .. Q6_K)", (unsigned)s->wtype);
    if (s->with_tokenizer && s->vocab_size < BPE_N_BYTES + BPE_N_SPECIAL)
        return moe_err(err, MOE_ERR_ARG, "synth: with_tokenizer needs vocab_size >= %d (got %d)",
                       BPE_N_BYTES + BPE_N_SPECIAL, s->vocab_size);
    return MOE_OK;
}

/* Types and sizes of the planned tensors; every big matrix's rows must be
 * whole blocks of wtype. */
static moe_status plan_types(plan *p, const synth_spec *s, moe_error *err) {
    for (int i = 0; i < p->n; i++) {
        syn_tensor *t = &p->t[i];
        t->draw_type = t->big ? s->wtype : GGUF_T_F32;
        t->type = t->big && !s->store_dequantized ? s->wtype : GGUF_T_F32;
        moe_status st = quant_check_row((quant_type)t->draw_type, t->ne[0], t->name, err);
        if (st) return st;
        moe_error e2;
        st = gguf_tensor_nbytes(t->type, t->n_dims, t->ne, &t->nbytes, &e2);
        if (st) return moe_err(err, st, "synth: tensor %s: %s", t->name, e2.msg);
    }
    return MOE_OK;
}

/* -------------------------------------------------------------- filling */

/* Row values: n draws of the tensor's distribution from the row's stream. */
static void draw_row(float *x, int64_t n, const syn_tensor *t, uint64_t seed, int64_t row) {
    moe_rng r;
    moe_rng_seed(&r, seed ^ (moe_fnv1a(MOE_FNV_BASIS, t->name, strlen(t->name)) + 0x9E3779B97F4A7C15ull * (uint64_t)(row + 1)));
    moe_rng_u64(&r);
    for (int64_t i = 0; i < n; i += 2) {
        /* Box-Muller, both outputs */
        double u1 = ((double)(moe_rng_u64(&r) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
        double u2 = (double)(moe_rng_u64(&r) >> 11) * (1.0 / 9007199254740992.0);
        double rad = sqrt(-2.0 * log(u1)), a = 6.283185307179586 * u2;
        double z[2] = {rad * cos(a), rad * sin(a)};
        for (int j = 0; j < 2 && i + j < n; j++)
            x[i + j] = t->init == INIT_NORM ? (float)(1.0 + 0.2 * z[j]) : (float)(t->scale * z[j]);
    }
}

/* Allocates and fills t->data. */
static moe_status fill_tensor(syn_tensor *t, uint64_t seed, moe_error *err) {
    t->data = malloc(t->nbytes ? t->nbytes : 1);
    if (!t->data)
        return moe_err(err, MOE_ERR_NOMEM, "synth: out of memory for %s (%zu bytes)", t->name, t->nbytes);
    const int64_t n = t->ne[0], rows = t->ne[1] * t->ne[2];
    const quant_type dt = (quant_type)t->draw_type, st_t = (quant_type)t->type;
    const size_t out_row = quant_row_size(st_t, n), q_row = quant_row_size(dt, n);
    int failed = 0;
    const int big = (double)n * (double)rows >= (double)(1 << 20); /* threads only pay off here */
#pragma omp parallel if (big)
    {
        float *x = malloc((size_t)n * sizeof *x);
        uint8_t *qbuf = dt != st_t ? malloc(q_row) : NULL;
        if (!x || (dt != st_t && !qbuf)) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(dynamic, 16)
        for (int64_t r = 0; r < rows; r++) {
            if (!x || (dt != st_t && !qbuf)) continue;
            uint8_t *out = (uint8_t *)t->data + (size_t)r * out_row;
            draw_row(x, n, t, seed, r);
            if (dt == st_t) {
                if (quant_quantize_row(dt, x, out, n, NULL)) {
#pragma omp atomic write
                    failed = 2;
                }
            } else { /* store_dequantized: round through dt, store F32 */
                if (quant_quantize_row(dt, x, qbuf, n, NULL) ||
                    quant_dequantize_row(dt, qbuf, (float *)(void *)out, n, NULL)) {
#pragma omp atomic write
                    failed = 2;
                }
            }
        }
        free(x);
        free(qbuf);
    }
    if (failed == 1) return moe_err(err, MOE_ERR_NOMEM, "synth: out of memory for a row of %s", t->name);
    if (failed) return moe_err(err, MOE_ERR_NONFINITE, "synth: quantizing %s to %s failed", t->name,
                               gguf_type_name(t->draw_type));
    return MOE_OK;
}

/* ------------------------------------------------------------ tokenizer */

static const char synth_text[] =
    "The quick brown fox jumps over the lazy dog. A mixture of experts routes each token to "
    "a few of its experts, and the router learns which expert is good at what. When the "
    "model reads a sentence, every word is cut into tokens, the tokens become vectors, and "
    "the vectors pass through attention and the experts, layer after layer, until the last "
    "layer gives the logits of the next token. The router of each layer picks the experts "
    "with the largest scores; the other experts do nothing for that token, which is why a "
    "sparse model is fast. There is more to say about the load of each expert, the capacity "
    "and the tokens that are dropped, but this text only has to teach the tokenizer a few "
    "merges: the, and, of, to, in, is, that, it, for, on, with, as, at, by, this, which.\n";

/* gguf_writer takes NUL-terminated strings; specials and padding are plain text. */
static moe_status add_tokenizer(gguf_writer *w, const synth_spec *s, moe_error *err) {
    bpe_tokenizer tok;
    bpe_gguf_vocab v;
    memset(&v, 0, sizeof v);
    int want = s->vocab_size < 512 ? s->vocab_size : 512; /* merges beyond ~300 need more text */
    moe_status st = bpe_train(&tok, (const uint8_t *)synth_text, sizeof synth_text - 1, want, err);
    if (st) return st;
    st = bpe_export_gguf(&tok, &v, err);
    if (st) goto done;
    size_t n = (size_t)s->vocab_size, have = v.n_tokens;
    char **toks = malloc(n * sizeof *toks);
    int32_t *types = malloc(n * sizeof *types);
    char *pad = malloc(n > have ? (n - have) * 24 : 1);
    if (!toks || !types || !pad) {
        free(toks); free(types); free(pad);
        st = moe_err(err, MOE_ERR_NOMEM, "synth: out of memory for the tokenizer");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        if (i < have) {
            toks[i] = v.tokens[i];
            types[i] = v.token_type[i];
        } else {
            toks[i] = pad + (i - have) * 24;
            snprintf(toks[i], 24, "<|unused_%zu|>", i - have);
            types[i] = BPE_TOKEN_UNUSED;
        }
    }
    if (!st) st = gguf_writer_set_str(w, "tokenizer.ggml.model", BPE_GGUF_MODEL, err);
    if (!st) st = gguf_writer_set_str(w, "tokenizer.ggml.pre", "gpt-2", err); /* the name llama.cpp knows */
    if (!st) st = gguf_writer_set_str(w, "moe.tokenizer.pre", BPE_GGUF_PRE, err); /* moe's exact rules */
    if (!st) st = gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)toks, n, err);
    if (!st) st = gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_VT_I32, types, n, err);
    if (!st) st = gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", (const char *const *)v.merges,
                                          v.n_merges, err);
    if (!st) st = gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)v.bos_id, err);
    if (!st) st = gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)v.eos_id, err);
    if (!st) st = gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", 1, err);
    if (!st) st = gguf_writer_set_bool(w, "tokenizer.ggml.add_eos_token", 0, err);
    free(toks);
    free(types);
    free(pad);
done:
    bpe_gguf_vocab_free(&v);
    bpe_free(&tok);
    return st;
}

/* ------------------------------------------------------------- metadata */

/* llama.cpp's general.file_type (llama_ftype) for the dominant weight type. */
static uint32_t file_type_of(uint32_t wtype) {
    switch (wtype) {
    case GGUF_T_F32: return 0;
    case GGUF_T_F16: return 1;
    case GGUF_T_Q4_0: return 2;
    case GGUF_T_Q4_1: return 3;
    case GGUF_T_Q8_0: return 7;
    case GGUF_T_Q5_0: return 8;
    case GGUF_T_Q5_1: return 9;
    case GGUF_T_Q2_K: return 10;
    case GGUF_T_Q3_K: return 12;  /* Q3_K_M */
    case GGUF_T_Q4_K: return 15;  /* Q4_K_M */
    case GGUF_T_Q5_K: return 17;  /* Q5_K_M */
    case GGUF_T_Q6_K: return 18;
    case GGUF_T_BF16: return 32;
    default: return 0;
    }
}

static moe_status add_metadata(gguf_writer *w, const synth_spec *s, fam f, moe_error *err) {
    const char *P = fam_gguf[f];
    char key[128], name[96];
    moe_status st = MOE_OK;
#define K(suffix) (snprintf(key, sizeof key, "%s.%s", P, suffix), key)
#define U32(k, v) do { if (!st) st = gguf_writer_set_u32(w, k, (uint32_t)(v), err); } while (0)
#define F32(k, v) do { if (!st) st = gguf_writer_set_f32(w, k, (float)(v), err); } while (0)
    snprintf(name, sizeof name, "synth-%s", fam_names[f]);
    if (!st) st = gguf_writer_set_str(w, "general.architecture", P, err);
    if (!st) st = gguf_writer_set_str(w, "general.name", s->name ? s->name : name, err);
    U32("general.file_type", s->store_dequantized ? 0 : file_type_of(s->wtype));
    if (!s->store_dequantized && quant_get_traits((quant_type)s->wtype)->is_quantized)
        U32("general.quantization_version", 2);
    U32(K("context_length"), s->ctx_len);
    U32(K("embedding_length"), s->d_model);
    U32(K("block_count"), s->n_layers);
    U32(K("attention.head_count"), s->n_heads);
    U32(K("attention.head_count_kv"), s->n_kv_heads);
    U32(K("attention.key_length"), s->head_dim);
    U32(K("attention.value_length"), s->head_dim);
    U32(K("rope.dimension_count"), s->head_dim);
    F32(K("rope.freq_base"), s->rope_base);
    F32(K("attention.layer_norm_rms_epsilon"), s->rms_eps);
    U32(K("vocab_size"), s->vocab_size);
    switch (f) {
    case FAM_LLAMA: case FAM_MIXTRAL: case FAM_OLMOE: case FAM_GRANITEMOE:
        U32(K("feed_forward_length"), s->d_ff);
        break;
    case FAM_QWEN2MOE:
        U32(K("feed_forward_length"), s->d_ff_shared);
        U32(K("expert_feed_forward_length"), s->d_ff);
        U32(K("expert_shared_feed_forward_length"), s->d_ff_shared);
        break;
    case FAM_QWEN3MOE:
        U32(K("feed_forward_length"), s->d_ff_dense > 0 ? s->d_ff_dense : s->d_ff);
        U32(K("expert_feed_forward_length"), s->d_ff);
        break;
    case FAM_DEEPSEEK:
        U32(K("feed_forward_length"), s->d_ff_dense > 0 ? s->d_ff_dense : s->d_ff);
        U32(K("expert_feed_forward_length"), s->d_ff);
        U32(K("leading_dense_block_count"), s->n_dense_first);
        U32(K("expert_shared_count"), s->n_shared);
        F32(K("expert_weights_scale"), 1.0);
        break;
    default:
        break;
    }
    if (f != FAM_LLAMA) {
        U32(K("expert_count"), s->n_experts);
        U32(K("expert_used_count"), s->top_k);
    }
    if (f == FAM_GRANITEMOE) {
        F32(K("embedding_scale"), s->embedding_scale);
        F32(K("residual_scale"), s->residual_scale);
        F32(K("attention.scale"), s->attention_scale);
        F32(K("logit_scale"), s->logit_scale);
    }
#undef K
#undef U32
#undef F32
    if (!st && s->with_tokenizer) st = add_tokenizer(w, s, err);
    return st;
}

/* --------------------------------------------------------------- build */

static moe_status make_plan(const synth_spec *s, plan *p, fam *f, moe_error *err) {
    memset(p, 0, sizeof *p);
    moe_status st = check_spec(s, f, err);
    if (st) return st;
    build_plan(p, s, *f);
    if (p->oom) {
        plan_free(p);
        return moe_err(err, MOE_ERR_NOMEM, "synth: out of memory for the tensor list");
    }
    st = plan_types(p, s, err);
    if (st) plan_free(p);
    return st;
}

moe_status synth_count(const synth_spec *s, int64_t *total, int64_t *active, moe_error *err) {
    plan p;
    fam f;
    moe_status st = make_plan(s, &p, &f, err);
    if (st) return st;
    int64_t tot = 0, unused = 0;
    for (int i = 0; i < p.n; i++) {
        const syn_tensor *t = &p.t[i];
        int64_t n = t->ne[0] * t->ne[1] * t->ne[2];
        tot += n;
        if (t->expert) unused += n / t->ne[2] * (t->ne[2] - s->top_k);
    }
    if (total) *total = tot;
    if (active) *active = tot - unused - (int64_t)(s->vocab_size - 1) * s->d_model;
    plan_free(&p);
    return MOE_OK;
}

/* Plans, fills and hands everything to a new writer; the plan owns the data
 * until the caller has written and frees it. */
static moe_status build(const synth_spec *s, plan *p, gguf_writer **wout, moe_error *err) {
    fam f;
    *wout = NULL;
    moe_status st = make_plan(s, p, &f, err);
    if (st) return st;
    gguf_writer *w = NULL;
    st = gguf_writer_create(&w, err);
    if (!st) st = add_metadata(w, s, f, err);
    for (int i = 0; i < p->n && !st; i++) {
        syn_tensor *t = &p->t[i];
        if (s->progress) s->progress(s->progress_user, "generating", i, p->n);
        st = cancel_check(err, "synthesizing a model");
        if (!st) st = fill_tensor(t, s->seed, err);
        if (!st) st = gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data,
                                             t->nbytes, err);
    }
    if (st) {
        gguf_writer_free(w);
        plan_free(p);
        return st;
    }
    *wout = w;
    return MOE_OK;
}

moe_status synth_write(const synth_spec *s, const char *path, moe_error *err) {
    if (!path) return moe_err(err, MOE_ERR_ARG, "synth_write: path is NULL");
    plan p;
    gguf_writer *w;
    moe_status st = build(s, &p, &w, err);
    if (st) return st;
    st = gguf_writer_write(w, path, err);
    gguf_writer_free(w);
    plan_free(&p);
    return st;
}

moe_status synth_write_mem(const synth_spec *s, void **buf, size_t *size, moe_error *err) {
    if (!buf || !size) return moe_err(err, MOE_ERR_ARG, "synth_write_mem: buf or size is NULL");
    *buf = NULL;
    *size = 0;
    plan p;
    gguf_writer *w;
    moe_status st = build(s, &p, &w, err);
    if (st) return st;
    st = gguf_writer_write_mem(w, buf, size, err);
    gguf_writer_free(w);
    plan_free(&p);
    return st;
}

/* ------------------------------------------------------------- rewriting */

moe_status synth_copy_kv(gguf_writer *w, const gguf_kv *kv, moe_error *err) {
    const char *k = kv->key.s;
    switch (kv->type) {
    case GGUF_VT_U8: return gguf_writer_set_u8(w, k, (uint8_t)kv->v.u, err);
    case GGUF_VT_I8: return gguf_writer_set_i8(w, k, (int8_t)kv->v.i, err);
    case GGUF_VT_U16: return gguf_writer_set_u16(w, k, (uint16_t)kv->v.u, err);
    case GGUF_VT_I16: return gguf_writer_set_i16(w, k, (int16_t)kv->v.i, err);
    case GGUF_VT_U32: return gguf_writer_set_u32(w, k, (uint32_t)kv->v.u, err);
    case GGUF_VT_I32: return gguf_writer_set_i32(w, k, (int32_t)kv->v.i, err);
    case GGUF_VT_F32: return gguf_writer_set_f32(w, k, (float)kv->v.f, err);
    case GGUF_VT_BOOL: return gguf_writer_set_bool(w, k, (int)kv->v.u, err);
    case GGUF_VT_U64: return gguf_writer_set_u64(w, k, kv->v.u, err);
    case GGUF_VT_I64: return gguf_writer_set_i64(w, k, kv->v.i, err);
    case GGUF_VT_F64: return gguf_writer_set_f64(w, k, kv->v.f, err);
    case GGUF_VT_STR: return gguf_writer_set_strn(w, k, kv->v.str.s, kv->v.str.n, err);
    case GGUF_VT_ARR:
        if (kv->arr_type != GGUF_VT_STR)
            return gguf_writer_set_arr(w, k, kv->arr_type, kv->arr, kv->arr_n, err);
        {
            const gguf_str *src = kv->arr;
            const char **strs = malloc((kv->arr_n ? kv->arr_n : 1) * sizeof *strs);
            if (!strs) return moe_err(err, MOE_ERR_NOMEM, "synth: out of memory copying key %s", k);
            for (uint64_t i = 0; i < kv->arr_n; i++) strs[i] = src[i].s;
            moe_status st = gguf_writer_set_arr_str(w, k, strs, kv->arr_n, err);
            free(strs);
            return st;
        }
    default:
        return moe_err(err, MOE_ERR_FORMAT, "synth: key %s has value type %u", k, (unsigned)kv->type);
    }
}

moe_status synth_dequantize(const void *buf, size_t size, void **out, size_t *out_size,
                            moe_error *err) {
    if (!out || !out_size) return moe_err(err, MOE_ERR_ARG, "synth_dequantize: out is NULL");
    *out = NULL;
    *out_size = 0;
    gguf_ctx *g = NULL;
    moe_status st = gguf_open_memory(&g, buf, size, "synth_dequantize", err);
    if (st) return st;
    gguf_writer *w = NULL;
    size_t nt = gguf_n_tensors(g);
    float **owned = calloc(nt ? nt : 1, sizeof *owned);
    if (!owned) st = moe_err(err, MOE_ERR_NOMEM, "synth_dequantize: out of memory");
    if (!st) st = gguf_writer_create(&w, err);
    for (size_t i = 0; i < gguf_n_kv(g) && !st; i++) {
        const gguf_kv *kv = gguf_kv_at(g, i);
        if (!strcmp(kv->key.s, "general.file_type")) st = gguf_writer_set_u32(w, kv->key.s, 0, err);
        else if (strcmp(kv->key.s, "general.quantization_version")) st = synth_copy_kv(w, kv, err);
    }
    for (size_t i = 0; i < nt && !st; i++) {
        const gguf_tensor *t = gguf_tensor_at(g, i);
        const void *data = t->data;
        size_t nbytes = t->nbytes;
        uint32_t type = t->type;
        if (type != GGUF_T_F32) {
            if (!quant_get_traits((quant_type)type)) {
                st = moe_err(err, MOE_ERR_UNSUPPORTED, "synth_dequantize: tensor %s has type %s",
                             t->name.s, gguf_type_name(type));
                break;
            }
            owned[i] = malloc((size_t)t->n_elem * sizeof(float));
            if (!owned[i]) {
                st = moe_err(err, MOE_ERR_NOMEM, "synth_dequantize: out of memory for %s", t->name.s);
                break;
            }
            const int64_t rows = t->n_elem / t->ne[0];
            const size_t rb = quant_row_size((quant_type)type, t->ne[0]);
            for (int64_t r = 0; r < rows && !st; r++)
                st = quant_dequantize_row((quant_type)type, (const uint8_t *)t->data + (size_t)r * rb,
                                          owned[i] + (size_t)r * (size_t)t->ne[0], t->ne[0], err);
            data = owned[i];
            nbytes = (size_t)t->n_elem * sizeof(float);
            type = GGUF_T_F32;
        }
        if (!st) st = gguf_writer_add_tensor(w, t->name.s, type, t->n_dims, t->ne, data, nbytes, err);
    }
    if (!st) st = gguf_writer_write_mem(w, out, out_size, err);
    gguf_writer_free(w);
    for (size_t i = 0; owned && i < nt; i++) free(owned[i]);
    free(owned);
    gguf_close(g);
    return st;
}

/* ------------------------------------------------------------ benchmark */

void synth_spec_bench(synth_spec *s, const char *arch) {
    synth_spec_default(s, arch);
    int f = fam_of(s->arch);
    s->d_model = 2048;
    s->n_heads = 16;
    s->n_kv_heads = f == FAM_OLMOE ? 16 : 4;
    s->head_dim = 128;
    s->d_ff = f == FAM_LLAMA ? 5632 : 1024;
    s->vocab_size = 32000;
    s->ctx_len = 4096;
    s->wtype = GGUF_T_Q4_K;
    if (f == FAM_QWEN2MOE) {
        s->n_experts = 16; s->top_k = 4; s->d_ff = 512; s->d_ff_shared = 2048;
    } else if (f == FAM_DEEPSEEK) {
        s->n_experts = 16; s->top_k = 4; s->d_ff = 512; s->n_shared = 2; s->d_ff_dense = 4096;
    } else if (f != FAM_LLAMA) {
        s->n_experts = 8; s->top_k = 2;
    }
    if (f == FAM_QWEN3MOE) s->d_ff_dense = 4096;
    /* layers for ~1e9 weights: the count is affine in n_layers */
    int64_t a = 0, b = 0;
    int l0 = f == FAM_DEEPSEEK ? 2 : 1;
    s->n_layers = l0;
    synth_count(s, &a, NULL, NULL);
    s->n_layers = l0 + 1;
    synth_count(s, &b, NULL, NULL);
    int64_t per = b - a > 0 ? b - a : 1;
    int64_t l = l0 + (1000000000LL - a + per / 2) / per;
    s->n_layers = (int)(l < l0 ? l0 : l);
}
