/* convert.c: Hugging Face folders to GGUF (see convert.h for the mapping,
 * the types and the streaming).
 *
 * Three steps: read config.json into the hyperparameters of one of the
 * supported families (hf_hp, convert_cfg.c); plan every output tensor with
 * its HF sources (checking that each exists with the shape the config
 * implies, and collecting every problem into one message); then stream the
 * file: the metadata encoded by the GGUF writer, the tensor infos, and each
 * tensor converted row by row, and open the result as the engine would.
 * Not for: config.json (convert_cfg.c), the tokenizer (convert_tok.c),
 * running anything.
 */
#include "tools/convert.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "core/atomic_file.h"
#include "core/error.h"
#include "infer/arch.h"
#include "text/vocab.h"
#include "io/safetensors.h"
#include "moe_infer.h"
#include "quant/quant.h"

#define TRY(x) do { moe_status st_ = (x); if (st_ != MOE_OK) return st_; } while (0)

void cv_note(cv_notes *n, const char *fmt, ...) {
    if (!n || n->len + 2 >= sizeof n->text) return;
    va_list ap;
    va_start(ap, fmt);
    if (n->len) n->text[n->len++] = '\n';
    int k = vsnprintf(n->text + n->len, sizeof n->text - n->len, fmt, ap);
    va_end(ap);
    if (k > 0) n->len += (size_t)k < sizeof n->text - n->len ? (size_t)k : sizeof n->text - n->len - 1;
}

/* ---------------------------------------------------------------- types */

static const struct { const char *name; uint32_t id, file_type; } k_types[] = {
    {"f32", GGUF_T_F32, 0},    {"f16", GGUF_T_F16, 1},    {"bf16", GGUF_T_BF16, 32},
    {"q8_0", GGUF_T_Q8_0, 7},  {"q4_0", GGUF_T_Q4_0, 2},  {"q4_1", GGUF_T_Q4_1, 3},
    {"q5_0", GGUF_T_Q5_0, 8},  {"q5_1", GGUF_T_Q5_1, 9},  {"q2_k", GGUF_T_Q2_K, 10},
    {"q3_k", GGUF_T_Q3_K, 12}, {"q4_k", GGUF_T_Q4_K, 15}, {"q5_k", GGUF_T_Q5_K, 17},
    {"q6_k", GGUF_T_Q6_K, 18},
};
#define N_TYPES (sizeof k_types / sizeof k_types[0])

int convert_type_id(const char *name) {
    if (!name) return -1;
    for (size_t i = 0; i < N_TYPES; i++) {
        const char *a = k_types[i].name, *b = name;
        while (*a && *b && (*a == (*b >= 'A' && *b <= 'Z' ? *b + 32 : *b))) { a++; b++; }
        if (!*a && !*b) return (int)k_types[i].id;
    }
    return -1;
}

static uint32_t file_type_of(uint32_t id) {
    for (size_t i = 0; i < N_TYPES; i++)
        if (k_types[i].id == id) return k_types[i].file_type;
    return 0;
}

/* ----------------------------------------------------------------- plan */

/* Where the rows of one matrix of an output tensor come from: row r is
 * element row (row0 + perm(r)) of src seen as [rows, cols]. */
typedef struct cv_src {
    const st_tensor *t;
    int64_t row0;
} cv_src;

typedef struct cv_tensor {
    char name[64];
    uint32_t type;      /* written */
    uint32_t n_dims;
    int64_t ne[3];      /* GGUF dims, innermost first */
    int64_t rows, cols, n_mat;
    int64_t perm_hd;    /* 0, or the head size: rows in adjacent-pair order */
    cv_src *src;        /* [n_mat]; NULL for generated data */
    const float *gen;   /* [rows * cols] generated values (F32), or NULL */
    size_t row_bytes, nbytes;
    uint64_t offset;
} cv_tensor;

typedef struct plan {
    const st_model *sm;
    uint8_t *used;      /* [st_count] source tensors used */
    cv_tensor *t;
    size_t n, cap;
    uint32_t wtype;
    /* problems */
    char miss[300];
    int n_miss;
    char bad[400];
    int n_bad;
    int oom;
    /* fallbacks */
    int n_fb;
    char fb_example[96];
    uint32_t fb_types;  /* bit set of the types fallen back to */
} plan;

static void plan_free(plan *p) {
    for (size_t i = 0; i < p->n; i++) free(p->t[i].src);
    free(p->t);
    free(p->used);
}

static void list_add(char *buf, size_t cap, int *n, const char *item) {
    (*n)++;
    size_t len = strlen(buf);
    if (len + strlen(item) + 6 < cap) snprintf(buf + len, cap - len, "%s%s", len ? ", " : "", item);
    else if (!strstr(buf, "...") && len + 5 < cap) snprintf(buf + len, cap - len, ", ...");
}

static void shape_str(char *b, size_t cap, const int64_t *s, int n) {
    size_t l = (size_t)snprintf(b, cap, "[");
    for (int i = 0; i < n && l < cap; i++)
        l += (size_t)snprintf(b + l, cap - l, "%s%lld", i ? ", " : "", (long long)s[i]);
    if (l < cap) snprintf(b + l, cap - l, "]");
}

/* The HF tensor `name` with shape want[0, nd) (outermost first), or NULL
 * (recorded as a problem when required or misshaped). */
static const st_tensor *need(plan *p, int required, const char *name, int nd, int64_t s0,
                             int64_t s1, int64_t s2) {
    const st_tensor *t = st_find(p->sm, name);
    if (!t) {
        if (required) list_add(p->miss, sizeof p->miss, &p->n_miss, name);
        return NULL;
    }
    const int64_t want[3] = {s0, s1, s2};
    int ok = t->n_dims == nd;
    for (int i = 0; ok && i < nd; i++) ok = t->shape[i] == want[i];
    /* a [1, n] vector (qwen2's shared_expert_gate) may be written [n] */
    if (!ok && nd == 2 && s0 == 1 && t->n_dims == 1 && t->shape[0] == s1) ok = 1;
    char item[300];
    if (!ok) {
        char a[96], b[96];
        shape_str(a, sizeof a, t->shape, t->n_dims);
        shape_str(b, sizeof b, want, nd);
        snprintf(item, sizeof item, "%s is %s, expected %s", name, a, b);
        list_add(p->bad, sizeof p->bad, &p->n_bad, item);
        return NULL;
    }
    if (t->dtype != ST_F32 && t->dtype != ST_F16 && t->dtype != ST_BF16) {
        snprintf(item, sizeof item, "%s has dtype %s (supported: F32, F16, BF16)", name,
                 st_dtype_name(t->dtype));
        list_add(p->bad, sizeof p->bad, &p->n_bad, item);
        return NULL;
    }
    p->used[t - st_at(p->sm, 0)] = 1;
    return t;
}

/* A new output tensor of n_mat matrices [rows, cols] (n_mat 0: one 2-D
 * matrix; rows 0: a vector of cols). big: in the chosen type. */
static cv_tensor *add(plan *p, const char *name, int big, int64_t n_mat, int64_t rows,
                      int64_t cols) {
    if (p->n == p->cap) {
        size_t cap = p->cap ? 2 * p->cap : 64;
        cv_tensor *nt = realloc(p->t, cap * sizeof *nt);
        if (!nt) { p->oom = 1; return NULL; }
        p->t = nt;
        p->cap = cap;
    }
    cv_tensor *t = &p->t[p->n];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->n_mat = n_mat > 0 ? n_mat : 1;
    t->rows = rows > 0 ? rows : 1;
    t->cols = cols;
    t->n_dims = n_mat > 0 ? 3 : rows > 0 ? 2 : 1;
    t->ne[0] = cols;
    t->ne[1] = t->rows;
    t->ne[2] = t->n_mat;
    uint32_t ty = GGUF_T_F32;
    if (big) {
        ty = p->wtype;
        int64_t bs = gguf_type_block_size(ty);
        if (cols % bs) {
            ty = cols % 32 == 0 ? GGUF_T_Q8_0 : GGUF_T_F16;
            if (p->n_fb++ == 0)
                snprintf(p->fb_example, sizeof p->fb_example, "%s, rows of %lld", name,
                         (long long)cols);
            p->fb_types |= 1u << (ty == GGUF_T_Q8_0);
        }
    }
    t->type = ty;
    t->row_bytes = quant_row_size((quant_type)ty, cols);
    t->nbytes = t->row_bytes * (size_t)t->rows * (size_t)t->n_mat;
    t->src = calloc((size_t)t->n_mat, sizeof *t->src);
    if (!t->src) { p->oom = 1; return NULL; }
    p->n++;
    return t;
}

/* One-source tensors: a matrix [rows, cols] (perm_hd: Q/K permutation) or
 * a vector [n]. */
static void add_mat(plan *p, const char *name, const st_tensor *s, int64_t rows, int64_t cols,
                    int64_t perm_hd) {
    if (!s) return;
    cv_tensor *t = add(p, name, 1, 0, rows, cols);
    if (!t) return;
    t->src[0].t = s;
    t->perm_hd = perm_hd;
}
static void add_vec(plan *p, const char *name, const st_tensor *s, int64_t n, int64_t perm_hd) {
    if (!s) return;
    cv_tensor *t = add(p, name, 0, 0, 0, n);
    if (!t) return;
    t->src[0].t = s;
    if (perm_hd) { /* permute the elements: n rows of one (the same bytes) */
        t->perm_hd = perm_hd;
        t->rows = n;
        t->cols = 1;
        t->row_bytes = quant_row_size((quant_type)t->type, 1);
    }
}

/* Stacked experts from one HF tensor per expert: fmt has %lld (layer) and
 * %lld (expert). */
static void add_exps(plan *p, const char *name, const hf_hp *hp, int64_t l, const char *fmt,
                     int64_t rows, int64_t cols) {
    cv_src *tmp = calloc((size_t)hp->E, sizeof *tmp);
    if (!tmp) { p->oom = 1; return; }
    int all = 1;
    char hn[256];
    for (int64_t e = 0; e < hp->E; e++) {
        snprintf(hn, sizeof hn, fmt, (long long)l, (long long)e);
        tmp[e].t = need(p, 1, hn, 2, rows, cols, 0);
        all &= tmp[e].t != NULL;
    }
    cv_tensor *t = all ? add(p, name, 1, hp->E, rows, cols) : NULL;
    if (t) memcpy(t->src, tmp, sizeof *tmp * (size_t)hp->E);
    free(tmp);
}

/* Granite: experts packed in one [E, R, cols] tensor; rows [r0, r0 + rows)
 * of each expert. */
static void add_packed(plan *p, const char *name, const st_tensor *s, int64_t E, int64_t R,
                       int64_t r0, int64_t rows, int64_t cols) {
    if (!s) return;
    cv_tensor *t = add(p, name, 1, E, rows, cols);
    if (!t) return;
    for (int64_t e = 0; e < E; e++) {
        t->src[e].t = s;
        t->src[e].row0 = e * R + r0;
    }
}

static void plan_layer(plan *p, const hf_hp *hp, int64_t l) {
    char hn[256], gn[64];
    const int64_t d = hp->d, q = hp->H * hp->hd, kv = hp->Hkv * hp->hd;
    const int64_t ph = hp->permute ? hp->hd : 0;
#define HN(s) (snprintf(hn, sizeof hn, "model.layers.%lld.%s", (long long)l, s), hn)
#define GN(s) (snprintf(gn, sizeof gn, "blk.%lld.%s", (long long)l, s), gn)
    add_vec(p, GN("attn_norm.weight"), need(p, 1, HN("input_layernorm.weight"), 1, d, 0, 0), d, 0);
    add_mat(p, GN("attn_q.weight"), need(p, 1, HN("self_attn.q_proj.weight"), 2, q, d, 0), q, d, ph);
    add_mat(p, GN("attn_k.weight"), need(p, 1, HN("self_attn.k_proj.weight"), 2, kv, d, 0), kv, d, ph);
    add_mat(p, GN("attn_v.weight"), need(p, 1, HN("self_attn.v_proj.weight"), 2, kv, d, 0), kv, d, 0);
    add_mat(p, GN("attn_output.weight"), need(p, 1, HN("self_attn.o_proj.weight"), 2, d, q, 0), d, q, 0);
    add_vec(p, GN("attn_q.bias"), need(p, 0, HN("self_attn.q_proj.bias"), 1, q, 0, 0), q, ph);
    add_vec(p, GN("attn_k.bias"), need(p, 0, HN("self_attn.k_proj.bias"), 1, kv, 0, 0), kv, ph);
    add_vec(p, GN("attn_v.bias"), need(p, 0, HN("self_attn.v_proj.bias"), 1, kv, 0, 0), kv, 0);
    add_vec(p, GN("attn_output.bias"), need(p, 0, HN("self_attn.o_proj.bias"), 1, d, 0, 0), d, 0);
    if (hp->f == CV_QWEN3MOE || hp->f == CV_OLMOE) {
        int64_t nq = hp->f == CV_OLMOE ? q : hp->hd, nk = hp->f == CV_OLMOE ? kv : hp->hd;
        add_vec(p, GN("attn_q_norm.weight"), need(p, 1, HN("self_attn.q_norm.weight"), 1, nq, 0, 0), nq, 0);
        add_vec(p, GN("attn_k_norm.weight"), need(p, 1, HN("self_attn.k_norm.weight"), 1, nk, 0, 0), nk, 0);
    }
    add_vec(p, GN("ffn_norm.weight"), need(p, 1, HN("post_attention_layernorm.weight"), 1, d, 0, 0), d, 0);

    const int is_moe = hp->E > 0 && l >= hp->n_dense;
    if (!is_moe) {
        const int64_t f = hp->ff;
        add_mat(p, GN("ffn_gate.weight"), need(p, 1, HN("mlp.gate_proj.weight"), 2, f, d, 0), f, d, 0);
        add_mat(p, GN("ffn_up.weight"), need(p, 1, HN("mlp.up_proj.weight"), 2, f, d, 0), f, d, 0);
        add_mat(p, GN("ffn_down.weight"), need(p, 1, HN("mlp.down_proj.weight"), 2, d, f, 0), d, f, 0);
        add_vec(p, GN("ffn_gate.bias"), need(p, 0, HN("mlp.gate_proj.bias"), 1, f, 0, 0), f, 0);
        add_vec(p, GN("ffn_up.bias"), need(p, 0, HN("mlp.up_proj.bias"), 1, f, 0, 0), f, 0);
        add_vec(p, GN("ffn_down.bias"), need(p, 0, HN("mlp.down_proj.bias"), 1, d, 0, 0), d, 0);
        return;
    }
    const int64_t E = hp->E, fe = hp->ff_exp;
    /* the router: a matrix [E, d] kept in F32 */
    const char *rname = hp->f == CV_MIXTRAL ? "block_sparse_moe.gate.weight"
                      : hp->f == CV_GRANITEMOE ? "block_sparse_moe.router.layer.weight"
                      : "mlp.gate.weight";
    const st_tensor *r = need(p, 1, HN(rname), 2, E, d, 0);
    if (r) {
        cv_tensor *t = add(p, GN("ffn_gate_inp.weight"), 0, 0, E, d);
        if (t) t->src[0].t = r;
    }
    char fmt[160];
    if (hp->f == CV_GRANITEMOE) {
        const st_tensor *in = need(p, 1, HN("block_sparse_moe.input_linear.weight"), 3, E, 2 * fe, d);
        const st_tensor *out = need(p, 1, HN("block_sparse_moe.output_linear.weight"), 3, E, d, fe);
        add_packed(p, GN("ffn_gate_exps.weight"), in, E, 2 * fe, 0, fe, d);
        add_packed(p, GN("ffn_up_exps.weight"), in, E, 2 * fe, fe, fe, d);
        add_packed(p, GN("ffn_down_exps.weight"), out, E, d, 0, d, fe);
        return;
    }
    static const char *const hf_mix[3] = {"w1", "w3", "w2"};
    static const char *const hf_std[3] = {"gate_proj", "up_proj", "down_proj"};
    static const char *const gg[3] = {"ffn_gate_exps.weight", "ffn_up_exps.weight",
                                      "ffn_down_exps.weight"};
    for (int i = 0; i < 3; i++) {
        if (hp->f == CV_MIXTRAL)
            snprintf(fmt, sizeof fmt, "model.layers.%%lld.block_sparse_moe.experts.%%lld.%s.weight",
                     hf_mix[i]);
        else
            snprintf(fmt, sizeof fmt, "model.layers.%%lld.mlp.experts.%%lld.%s.weight", hf_std[i]);
        add_exps(p, GN(gg[i]), hp, l, fmt, i < 2 ? fe : d, i < 2 ? d : fe);
    }
    if (hp->ff_sh > 0) {
        const int64_t fs = hp->ff_sh;
        const char *sh = hp->f == CV_QWEN2MOE ? "mlp.shared_expert" : "mlp.shared_experts";
        char s2[96];
        snprintf(s2, sizeof s2, "%s.gate_proj.weight", sh);
        add_mat(p, GN("ffn_gate_shexp.weight"), need(p, 1, HN(s2), 2, fs, d, 0), fs, d, 0);
        snprintf(s2, sizeof s2, "%s.up_proj.weight", sh);
        add_mat(p, GN("ffn_up_shexp.weight"), need(p, 1, HN(s2), 2, fs, d, 0), fs, d, 0);
        snprintf(s2, sizeof s2, "%s.down_proj.weight", sh);
        add_mat(p, GN("ffn_down_shexp.weight"), need(p, 1, HN(s2), 2, d, fs, 0), d, fs, 0);
        if (hp->f == CV_QWEN2MOE)
            add_vec(p, GN("ffn_gate_inp_shexp.weight"),
                    need(p, 1, HN("mlp.shared_expert_gate.weight"), 2, 1, d, 0), d, 0);
    }
#undef HN
#undef GN
}

/* The config.json key of the expert count of a family. */
static const char *expert_count_key(int f) {
    switch (f) {
    case CV_MIXTRAL: case CV_GRANITEMOE: return "num_local_experts";
    case CV_DEEPSEEK: return "n_routed_experts";
    default: return "num_experts";
    }
}

static moe_status build_plan(plan *p, hf_hp *hp, const char *dir, moe_error *err) {
    const st_tensor *emb = st_find(p->sm, "model.embed_tokens.weight");
    if (!emb || emb->n_dims != 2 || emb->shape[1] != hp->d || emb->shape[0] < 1 ||
        emb->shape[0] > INT32_MAX)
        return moe_err(err, MOE_ERR_FORMAT, "%s: model.embed_tokens.weight is %s (expected "
                       "[vocab, %lld])", dir, emb ? "misshaped" : "missing", (long long)hp->d);
    hp->V = emb->shape[0];
    const int64_t V = hp->V, d = hp->d;
    /* Sizes against the tensors present before any per-layer, per-expert
     * look-up: every layer needs its own tensors (at least 4: norms and
     * attention), every MoE layer 3 per expert (granite: its 2 packed ones).
     * Without this a 300-byte config.json (100000 layers of 65536 experts)
     * costs ~2e10 name look-ups before failing. */
    const uint64_t have = st_count(p->sm);
    const uint64_t L = (uint64_t)hp->L, L_moe = hp->E > 0 ? L - (uint64_t)hp->n_dense : 0;
    const uint64_t per_expert = hp->f == CV_GRANITEMOE ? 0 : 3;
    if (4 * L > have)
        return moe_err(err, MOE_ERR_FORMAT, "%s/config.json: num_hidden_layers = %lld, but the "
                       "safetensors hold %llu tensors in all (each layer needs at least 4)", dir,
                       (long long)hp->L, (unsigned long long)have);
    if (L_moe * per_expert * (uint64_t)hp->E > have)
        return moe_err(err, MOE_ERR_FORMAT, "%s/config.json: %llu MoE layers of %lld experts (%s) "
                       "need %llu expert tensors, but the safetensors hold %llu tensors in all",
                       dir, (unsigned long long)L_moe, (long long)hp->E, expert_count_key(hp->f),
                       (unsigned long long)(L_moe * per_expert * (uint64_t)hp->E),
                       (unsigned long long)have);
    add_mat(p, "token_embd.weight", need(p, 1, "model.embed_tokens.weight", 2, V, d, 0), V, d, 0);
    if (hp->rope_freqs) {
        cv_tensor *t = add(p, "rope_freqs.weight", 0, 0, 0, hp->hd / 2);
        if (t) t->gen = hp->rope_freqs;
    }
    for (int64_t l = 0; l < hp->L; l++) plan_layer(p, hp, l);
    add_vec(p, "output_norm.weight", need(p, 1, "model.norm.weight", 1, d, 0, 0), d, 0);
    const st_tensor *head = st_find(p->sm, "lm_head.weight");
    if (!hp->tied || !head) /* HF ignores lm_head when tied */
        add_mat(p, "output.weight", need(p, !hp->tied, "lm_head.weight", 2, V, d, 0), V, d, 0);
    if (head) p->used[head - st_at(p->sm, 0)] = 1;
    if (p->oom) return moe_err(err, MOE_ERR_NOMEM, "%s: out of memory for the tensor plan", dir);
    if (p->n_miss || p->n_bad) {
        char a[360] = "", b[460] = "";
        if (p->n_miss)
            snprintf(a, sizeof a, "%d tensor%s missing: %s", p->n_miss, p->n_miss == 1 ? "" : "s",
                     p->miss);
        if (p->n_bad)
            snprintf(b, sizeof b, "%s%d tensor%s unusable: %s", p->n_miss ? "; " : "", p->n_bad,
                     p->n_bad == 1 ? "" : "s", p->bad);
        return moe_err(err, MOE_ERR_FORMAT, "%s (%s): %s%s", dir, hp->model_type, a, b);
    }
    return MOE_OK;
}

/* ------------------------------------------------------------- metadata */

static moe_status add_metadata(gguf_writer *w, const hf_hp *hp, const char *name,
                               uint32_t wtype, moe_error *err) {
    const char *P = arch_name(hp->arch);
    char key[128];
    moe_status st = MOE_OK;
#define K(s) (snprintf(key, sizeof key, "%s.%s", P, s), key)
#define U32(k, v) do { if (!st) st = gguf_writer_set_u32(w, k, (uint32_t)(v), err); } while (0)
#define F32(k, v) do { if (!st) st = gguf_writer_set_f32(w, k, (float)(v), err); } while (0)
#define BOOL(k, v) do { if (!st) st = gguf_writer_set_bool(w, k, v, err); } while (0)
    if (!st) st = gguf_writer_set_str(w, "general.architecture", P, err);
    if (!st) st = gguf_writer_set_str(w, "general.name", name, err);
    U32("general.file_type", file_type_of(wtype));
    if (quant_get_traits((quant_type)wtype)->is_quantized) U32("general.quantization_version", 2);
    U32(K("context_length"), hp->ctx);
    U32(K("embedding_length"), hp->d);
    U32(K("block_count"), hp->L);
    U32(K("attention.head_count"), hp->H);
    U32(K("attention.head_count_kv"), hp->Hkv);
    U32(K("attention.key_length"), hp->hd);
    U32(K("attention.value_length"), hp->hd);
    U32(K("rope.dimension_count"), hp->hd);
    F32(K("rope.freq_base"), hp->theta);
    F32(K("attention.layer_norm_rms_epsilon"), hp->eps);
    U32(K("vocab_size"), hp->V);
    if (hp->rope_linear > 0) {
        if (!st) st = gguf_writer_set_str(w, K("rope.scaling.type"), "linear", err);
        F32(K("rope.scaling.factor"), hp->rope_linear);
    }
    switch (hp->f) {
    case CV_LLAMA: U32(K("feed_forward_length"), hp->ff); break;
    case CV_MIXTRAL: case CV_OLMOE: case CV_GRANITEMOE:
        U32(K("feed_forward_length"), hp->ff_exp);
        break;
    case CV_QWEN2MOE:
        U32(K("feed_forward_length"), hp->ff > 0 ? hp->ff : hp->ff_sh);
        U32(K("expert_feed_forward_length"), hp->ff_exp);
        U32(K("expert_shared_feed_forward_length"), hp->ff_sh);
        break;
    case CV_QWEN3MOE:
        U32(K("feed_forward_length"), hp->ff > 0 ? hp->ff : hp->ff_exp);
        U32(K("expert_feed_forward_length"), hp->ff_exp);
        break;
    case CV_DEEPSEEK:
        U32(K("feed_forward_length"), hp->ff);
        U32(K("expert_feed_forward_length"), hp->ff_exp);
        U32(K("leading_dense_block_count"), hp->n_dense);
        U32(K("expert_shared_count"), hp->n_shared);
        F32(K("expert_weights_scale"), 1.0);
        break;
    }
    if (hp->E) {
        U32(K("expert_count"), hp->E);
        U32(K("expert_used_count"), hp->k);
    }
    if (hp->norm_topk >= 0) BOOL(K("expert_weights_norm"), hp->norm_topk);
    if (hp->f == CV_GRANITEMOE) {
        F32(K("embedding_scale"), hp->emb_mult);
        F32(K("residual_scale"), hp->res_mult);
        F32(K("attention.scale"), hp->attn_mult);
        F32(K("logit_scale"), hp->logit_scale);
    }
#undef K
#undef U32
#undef F32
#undef BOOL
    return st;
}

/* Bytes of one metadata entry as the writer encodes it. */
static uint64_t kv_bytes(const gguf_kv *kv) {
    uint64_t n = 8 + kv->key.n + 4;
    if (kv->type == GGUF_VT_STR) return n + 8 + kv->v.str.n;
    if (kv->type != GGUF_VT_ARR) return n + gguf_vtype_size(kv->type);
    n += 12;
    if (kv->arr_type != GGUF_VT_STR) return n + kv->arr_n * gguf_vtype_size(kv->arr_type);
    const gguf_str *s = kv->arr;
    for (uint64_t i = 0; i < kv->arr_n; i++) n += 8 + s[i].n;
    return n;
}

/* ---------------------------------------------------------------- write */

static void le32(uint8_t *b, uint32_t v) { for (int i = 0; i < 4; i++) b[i] = (uint8_t)(v >> (8 * i)); }
static void le64(uint8_t *b, uint64_t v) { for (int i = 0; i < 8; i++) b[i] = (uint8_t)(v >> (8 * i)); }

static moe_status put32(atomic_file *f, uint32_t v, moe_error *err) {
    uint8_t b[4];
    le32(b, v);
    return atomic_file_write(f, b, 4, err);
}
static moe_status put64(atomic_file *f, uint64_t v, moe_error *err) {
    uint8_t b[8];
    le64(b, v);
    return atomic_file_write(f, b, 8, err);
}
static moe_status pad_to(atomic_file *f, uint64_t align, moe_error *err) {
    static const uint8_t zeros[64];
    uint64_t n = (align - f->written % align) % align;
    return n ? atomic_file_write(f, zeros, (size_t)n, err) : MOE_OK;
}

/* Source row of output row r of a permuted matrix: within each head of hd
 * rows, row 2i + c comes from row c*hd/2 + i. */
static int64_t src_row(const cv_tensor *t, int64_t r) {
    if (!t->perm_hd) return r;
    const int64_t hd = t->perm_hd, h = r / hd, j = r % hd;
    return h * hd + (j % 2) * (hd / 2) + j / 2;
}

/* Rows [r0, r1) of tensor t (flattened over its matrices) into out. */
static moe_status fill_rows(const cv_tensor *t, int64_t r0, int64_t r1, uint8_t *out, int nt,
                            moe_error *err) {
    if (t->gen) {
        memcpy(out, t->gen + r0 * t->cols, (size_t)(r1 - r0) * t->row_bytes);
        return MOE_OK;
    }
    const int64_t cols = t->cols;
    int failed = 0;
    int64_t bad_row = -1;
    moe_error e1;
    e1.msg[0] = '\0';
#pragma omp parallel num_threads(nt > 0 ? nt : 1) if (r1 - r0 > 1)
    {
        float *x = malloc(sizeof(float) * (size_t)cols);
        moe_error e;
#pragma omp for schedule(dynamic, 4)
        for (int64_t i = r0; i < r1; i++) {
            int bad = 0;
            if (!x) bad = 1;
            else {
                const int64_t m = i / t->rows, r = i % t->rows;
                const cv_src *s = &t->src[m];
                bad = st_read_f32(s->t, (s->row0 + src_row(t, r)) * cols, cols, x, &e) ||
                      quant_quantize_row((quant_type)t->type, x,
                                         out + (size_t)(i - r0) * t->row_bytes, cols, &e);
            }
            if (bad) {
#pragma omp critical /* unnamed: a named one is a global symbol of libmoe */
                if (!failed || i < bad_row) {
                    failed = 1;
                    bad_row = i;
                    snprintf(e1.msg, sizeof e1.msg, "%s", x ? e.msg : "out of memory");
                }
            }
        }
        free(x);
    }
    if (failed)
        return moe_err(err, MOE_ERR_FORMAT, "%s (row %lld of matrix %lld, from %s): %s", t->name,
                       (long long)(bad_row % t->rows), (long long)(bad_row / t->rows),
                       t->src ? t->src[bad_row / t->rows].t->name : "?", e1.msg);
    return MOE_OK;
}

static moe_status write_file(const char *out_path, const gguf_writer *meta, plan *p, int nt,
                             const convert_opts *o, moe_error *err) {
    void *img = NULL;
    size_t img_n = 0;
    gguf_ctx *g = NULL;
    moe_status st = gguf_writer_write_mem(meta, &img, &img_n, err);
    if (!st) st = gguf_open_memory(&g, img, img_n, "metadata", err);
    if (st) { free(img); return st; }
    uint64_t kvn = 0;
    for (size_t i = 0; i < gguf_n_kv(g); i++) kvn += kv_bytes(gguf_kv_at(g, i));
    const uint64_t n_kv = gguf_n_kv(g);
    gguf_close(g);
    MOE_ASSERT(24 + kvn <= img_n);
    const uint64_t align = GGUF_DEFAULT_ALIGNMENT;
    uint64_t off = 0;
    for (size_t i = 0; i < p->n; i++) {
        p->t[i].offset = off;
        off = (off + p->t[i].nbytes + align - 1) / align * align;
    }
    atomic_file f;
    if ((st = atomic_file_open(&f, out_path, err))) { free(img); return st; }
    uint8_t hdr[24];
    memcpy(hdr, "GGUF", 4);
    le32(hdr + 4, 3);
    le64(hdr + 8, p->n);
    le64(hdr + 16, n_kv);
    st = atomic_file_write(&f, hdr, 24, err);
    if (!st) st = atomic_file_write(&f, (const uint8_t *)img + 24, (size_t)kvn, err);
    free(img);
    for (size_t i = 0; i < p->n && !st; i++) {
        const cv_tensor *t = &p->t[i];
        size_t nl = strlen(t->name);
        if (!st) st = put64(&f, nl, err);
        if (!st) st = atomic_file_write(&f, t->name, nl, err);
        if (!st) st = put32(&f, t->n_dims, err);
        for (uint32_t k = 0; k < t->n_dims && !st; k++) st = put64(&f, (uint64_t)t->ne[k], err);
        if (!st) st = put32(&f, t->type, err);
        if (!st) st = put64(&f, t->offset, err);
    }
    if (!st) st = pad_to(&f, align, err);
    if (st) return st; /* the atomic file aborted itself */
    /* the data, in chunks of about 32 MiB */
    size_t cap = 0;
    for (size_t i = 0; i < p->n; i++)
        if (p->t[i].row_bytes > cap) cap = p->t[i].row_bytes;
    if (cap < ((size_t)32 << 20)) cap = (size_t)32 << 20;
    uint8_t *buf = malloc(cap);
    if (!buf) {
        atomic_file_abort(&f);
        return moe_err(err, MOE_ERR_NOMEM, "%s: out of memory for a %zu-byte buffer", out_path, cap);
    }
    const uint64_t data0 = f.written;
    for (size_t i = 0; i < p->n && !st; i++) {
        const cv_tensor *t = &p->t[i];
        MOE_ASSERT(f.written - data0 == t->offset);
        const int64_t total = t->rows * t->n_mat;
        const int64_t per = (int64_t)(cap / t->row_bytes);
        for (int64_t r0 = 0; r0 < total && !st; r0 += per) {
            const int64_t r1 = r0 + per < total ? r0 + per : total;
            st = fill_rows(t, r0, r1, buf, nt, err);
            if (st) atomic_file_abort(&f);
            else st = atomic_file_write(&f, buf, (size_t)(r1 - r0) * t->row_bytes, err);
            if (!st && o && o->progress) o->progress(o->progress_user, "writing", (int64_t)(f.written - data0),
                                                     (int64_t)off);
        }
        if (!st) st = pad_to(&f, align, err);
    }
    free(buf);
    if (st) return st;
    return atomic_file_commit(&f, err);
}

/* Opens the result as the engine does (tensors, hyperparameters, tokenizer). */
static moe_status verify(const char *path, moe_error *err) {
    gguf_ctx *g = NULL;
    moe_status st = gguf_open_file(&g, path, err);
    if (st) return st;
    arch_model am;
    st = arch_load(&am, g, err);
    if (!st) {
        moe_vocab *v = NULL;
        st = vocab_from_gguf(&v, g, err);
        if (!st && moe_vocab_size(v) != am.hp.vocab_size)
            st = moe_err(err, MOE_ERR_FORMAT, "%s: %d tokens but %d embedding rows", path,
                         moe_vocab_size(v), am.hp.vocab_size);
        moe_vocab_free(v);
        arch_free(&am);
    }
    gguf_close(g);
    return st;
}

/* ------------------------------------------------------------------ API */

static void model_name(char *out, size_t cap, const json_value *cfg, const char *dir) {
    const char *s = NULL;
    if (!json_get_str(cfg, "_name_or_path", &s) || !*s) s = dir;
    size_t n = strlen(s);
    while (n > 1 && s[n - 1] == '/') n--;
    size_t b = n;
    while (b > 0 && s[b - 1] != '/') b--;
    snprintf(out, cap, "%.*s", (int)(n - b), s + b);
    if (!*out) snprintf(out, cap, "model");
}

moe_status convert_hf(const char *dir, const char *out_path, const convert_opts *o,
                      cv_notes *notes, moe_error *err) {
    if (!dir || !out_path) return moe_err(err, MOE_ERR_ARG, "convert: dir or out_path is NULL");
    const char *tname = o && o->type ? o->type : "f16";
    int wt = convert_type_id(tname);
    if (wt < 0)
        return moe_err(err, MOE_ERR_ARG, "convert: unknown type \"%s\" (f32, f16, bf16, q8_0, "
                       "q4_0, q4_1, q5_0, q5_1, q2_k, q3_k, q4_k, q5_k, q6_k)", tname);
    int nt = o && o->n_threads > 0 ? o->n_threads : 0;
    if (nt <= 0) {
#ifdef _OPENMP
        nt = omp_get_max_threads();
#else
        nt = 1;
#endif
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    json_doc *cdoc = NULL;
    st_model *sm = NULL;
    gguf_writer *w = NULL;
    plan p;
    memset(&p, 0, sizeof p);
    hf_hp hp;
    memset(&hp, 0, sizeof hp);
    moe_status st = json_parse_file(&cdoc, path, NULL, err);
    if (st) goto done;
    const json_value *cfg = json_root(cdoc);
    if ((st = convert_read_config(cfg, path, &hp, notes, err))) goto done;
    if ((st = st_open_dir(&sm, dir, err))) goto done;
    p.sm = sm;
    p.wtype = (uint32_t)wt;
    p.used = calloc(st_count(sm) + 1, 1);
    if (!p.used) { st = moe_err(err, MOE_ERR_NOMEM, "out of memory"); goto done; }
    if ((st = build_plan(&p, &hp, dir, err))) goto done;
    if (p.n_fb)
        cv_note(notes, "%d matri%s with rows not a multiple of the %s block of %lld written as "
                "%s (e.g. %s)", p.n_fb, p.n_fb == 1 ? "x" : "ces", tname,
                (long long)gguf_type_block_size((uint32_t)wt),
                p.fb_types == 3 ? "q8_0 or f16" : p.fb_types == 2 ? "q8_0" : "f16", p.fb_example);
    size_t n_unused = 0;
    const char *ex = NULL;
    for (size_t i = 0; i < st_count(sm); i++)
        if (!p.used[i] && !strstr(st_at(sm, i)->name, "rotary_emb.inv_freq")) {
            if (!n_unused++) ex = st_at(sm, i)->name;
        }
    if (n_unused)
        cv_note(notes, "%zu tensor%s of the folder not used (e.g. %s)", n_unused,
                n_unused == 1 ? "" : "s", ex);
    char name[128];
    model_name(name, sizeof name, cfg, dir);
    if ((st = gguf_writer_create(&w, err))) goto done;
    if ((st = add_metadata(w, &hp, name, (uint32_t)wt, err))) goto done;
    if ((st = convert_tokenizer(w, dir, cfg, hp.V, o ? o->pre : NULL, notes, err))) goto done;
    if ((st = write_file(out_path, w, &p, nt, o, err))) goto done;
    if ((st = verify(out_path, err))) {
        unlink(out_path);
        char m[sizeof err->msg];
        snprintf(m, sizeof m, "%s", err ? err->msg : "");
        st = moe_err(err, st, "convert: the written file does not load (removed): %s", m);
    }
done:
    gguf_writer_free(w);
    plan_free(&p);
    st_close(sm);
    json_free(cdoc);
    free(hp.rope_freqs);
    return st;
}

moe_status moe_convert_hf(const char *dir, const char *out_path, const char *type,
                          moe_error *err) {
    return moe_convert_hf_progress(dir, out_path, type, NULL, NULL, err);
}

moe_status moe_convert_hf_progress(const char *dir, const char *out_path, const char *type,
                                   moe_progress_fn fn, void *user, moe_error *err) {
    convert_opts o = {type, NULL, 0, fn, user};
    cv_notes notes;
    notes.len = 0;
    notes.text[0] = '\0';
    moe_status st = convert_hf(dir, out_path, &o, &notes, err);
    if (st == MOE_OK && err) /* the notes (tensor names: escaped), cut to the message size */
        moe_escape_ctrl(err->msg, sizeof err->msg, notes.text, notes.len, 1);
    return st;
}
