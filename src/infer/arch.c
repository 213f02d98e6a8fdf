/* arch.c: hyperparameters and tensor tables of the supported architectures
 * (see arch.h for the semantics table).
 *
 * Loading reads every key first (a missing or bad key fails at once, naming
 * it), then walks the tensor table of the architecture and collects every
 * missing or misshaped tensor into one message. Not for: computing anything.
 */
#include "infer/arch.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "model/active.h"
#include "model/model_file.h"

static const char *const k_arch_names[ARCH_COUNT] = {
    [ARCH_LLAMA] = "llama",       [ARCH_QWEN2MOE] = "qwen2moe",
    [ARCH_QWEN3MOE] = "qwen3moe", [ARCH_OLMOE] = "olmoe",
    [ARCH_DEEPSEEK] = "deepseek", [ARCH_GRANITEMOE] = "granitemoe",
    [ARCH_MOE] = "moe",
};

const char *arch_name(arch_kind k) {
    return (unsigned)k < ARCH_COUNT ? k_arch_names[k] : NULL;
}

/* ------------------------------------------------------------ metadata */

/* "arch.suffix" into buf. */
static const char *akey(char *buf, size_t cap, const char *arch, const char *suffix) {
    snprintf(buf, cap, "%s.%s", arch, suffix);
    return buf;
}

/* Optional keys: absent gives the default; present with a bad type or
 * range is an error (the getter's message). */
static moe_status opt_u32(const gguf_ctx *g, const char *key, uint32_t def, uint32_t *out,
                          moe_error *err) {
    if (!gguf_find_kv(g, key)) { *out = def; return MOE_OK; }
    return gguf_get_u32(g, key, out, err);
}
static moe_status opt_f32(const gguf_ctx *g, const char *key, float def, float *out,
                          moe_error *err) {
    if (!gguf_find_kv(g, key)) { *out = def; return MOE_OK; }
    return gguf_get_f32(g, key, out, err);
}
static moe_status opt_bool(const gguf_ctx *g, const char *key, int def, int *out,
                           moe_error *err) {
    if (!gguf_find_kv(g, key)) { *out = def; return MOE_OK; }
    return gguf_get_bool(g, key, out, err);
}

/* Element i of an integer or bool array (the caller checked the type). */
static int64_t arr_int(const gguf_kv *kv, uint64_t i) {
    switch (kv->arr_type) {
    case GGUF_VT_U8: case GGUF_VT_BOOL: return ((const uint8_t *)kv->arr)[i];
    case GGUF_VT_I8: return ((const int8_t *)kv->arr)[i];
    case GGUF_VT_U16: return ((const uint16_t *)kv->arr)[i];
    case GGUF_VT_I16: return ((const int16_t *)kv->arr)[i];
    case GGUF_VT_U32: return ((const uint32_t *)kv->arr)[i];
    case GGUF_VT_I32: return ((const int32_t *)kv->arr)[i];
    case GGUF_VT_U64: return (int64_t)((const uint64_t *)kv->arr)[i];
    case GGUF_VT_I64: return ((const int64_t *)kv->arr)[i];
    default: return -1;
    }
}
static int arr_is_int(const gguf_kv *kv) {
    return kv->type == GGUF_VT_ARR && kv->arr_type != GGUF_VT_F32 &&
           kv->arr_type != GGUF_VT_F64 && kv->arr_type != GGUF_VT_STR &&
           kv->arr_type != GGUF_VT_ARR;
}

/* A per-layer integer that llama.cpp reads "as scalar or array": out[L].
 * Absent: def everywhere (def < 0: a missing-key error). */
static moe_status per_layer(const gguf_ctx *g, const char *key, int L, int def, int *out,
                            moe_error *err) {
    const gguf_kv *kv = gguf_find_kv(g, key);
    if (!kv) {
        if (def < 0)
            return moe_err(err, MOE_ERR_FORMAT, "%s: key '%s' not found", gguf_name(g), key);
        for (int l = 0; l < L; l++) out[l] = def;
        return MOE_OK;
    }
    if (kv->type == GGUF_VT_ARR) {
        if (!arr_is_int(kv) || kv->arr_n != (uint64_t)L)
            return moe_err(err, MOE_ERR_FORMAT, "%s: key '%s' is an array of %llu %s, "
                           "expected one integer or %d integers (one per layer)",
                           gguf_name(g), key, (unsigned long long)kv->arr_n,
                           gguf_vtype_name(kv->arr_type), L);
        for (int l = 0; l < L; l++) {
            int64_t v = arr_int(kv, (uint64_t)l);
            if (v < 0 || v > INT32_MAX)
                return moe_err(err, MOE_ERR_FORMAT, "%s: key '%s'[%d] = %lld out of range",
                               gguf_name(g), key, l, (long long)v);
            out[l] = (int)v;
        }
        return MOE_OK;
    }
    uint32_t v;
    moe_status st = gguf_get_u32(g, key, &v, err);
    if (st) return st;
    if (v > INT32_MAX)
        return moe_err(err, MOE_ERR_FORMAT, "%s: key '%s' = %u out of range", gguf_name(g), key, v);
    for (int l = 0; l < L; l++) out[l] = (int)v;
    return MOE_OK;
}

/* The same value for every layer, or MOE_ERR_UNSUPPORTED. */
static moe_status uniform(const gguf_ctx *g, const char *key, const int *v, int L, int *out,
                          moe_error *err) {
    for (int l = 1; l < L; l++)
        if (v[l] != v[0])
            return moe_err(err, MOE_ERR_UNSUPPORTED, "%s: key '%s' differs between layers "
                           "(%d at layer 0, %d at layer %d): not supported", gguf_name(g), key,
                           v[0], v[l], l);
    *out = L > 0 ? v[0] : 0;
    return MOE_OK;
}

#define TRY(x) do { moe_status st_ = (x); if (st_ != MOE_OK) return st_; } while (0)

/* Hyperparameters; n_ff[l] and moe_flag[l] (1: MoE layer) per layer. */
static moe_status read_hparams(arch_hparams *hp, const gguf_ctx *g, int **n_ff_out,
                               int **moe_out, moe_error *err) {
    const char *fn = gguf_name(g);
    const char *an = k_arch_names[hp->kind];
    char k[160];
    uint32_t u;
    float f;

    TRY(gguf_get_u32(g, akey(k, sizeof k, an, "block_count"), &u, err));
    if (u < 1 || u > 100000)
        return moe_err(err, MOE_ERR_FORMAT, "%s: %s = %u (expected 1..100000)", fn, k, u);
    const int L = (int)u;
    hp->n_layers = L;
    TRY(gguf_get_u32(g, akey(k, sizeof k, an, "embedding_length"), &u, err));
    if (u < 1 || u > (1u << 20))
        return moe_err(err, MOE_ERR_FORMAT, "%s: %s = %u (expected 1..2^20)", fn, k, u);
    hp->d_model = (int)u;
    TRY(opt_u32(g, akey(k, sizeof k, an, "context_length"), 0, &u, err));
    hp->ctx_train = u > (1u << 30) ? (1 << 30) : (int)u;

    int *tmp = malloc(sizeof(int) * (size_t)L);
    int *n_ff = calloc((size_t)L, sizeof(int));
    int *moe = calloc((size_t)L, sizeof(int));
    if (!tmp || !n_ff || !moe) {
        free(tmp); free(n_ff); free(moe);
        return moe_err(err, MOE_ERR_NOMEM, "%s: %d layers of hyperparameters", fn, L);
    }
    *n_ff_out = n_ff;
    *moe_out = moe;
    moe_status st;
#define TRYF(x) do { st = (x); if (st != MOE_OK) { free(tmp); return st; } } while (0)
    TRYF(per_layer(g, akey(k, sizeof k, an, "attention.head_count"), L, -1, tmp, err));
    TRYF(uniform(g, k, tmp, L, &hp->n_heads, err));
    TRYF(per_layer(g, akey(k, sizeof k, an, "attention.head_count_kv"), L, hp->n_heads, tmp, err));
    TRYF(uniform(g, k, tmp, L, &hp->n_kv_heads, err));
    TRYF(per_layer(g, akey(k, sizeof k, an, "feed_forward_length"), L, 0, n_ff, err));
    free(tmp);
#undef TRYF
    if (hp->n_heads < 1 || hp->n_kv_heads < 1 || hp->n_heads % hp->n_kv_heads != 0)
        return moe_err(err, MOE_ERR_FORMAT, "%s: head_count = %d, head_count_kv = %d (expected "
                       ">= 1, head_count a multiple of head_count_kv)", fn, hp->n_heads,
                       hp->n_kv_heads);
    const int hd_def = hp->d_model / hp->n_heads;
    uint32_t hk, hv;
    TRY(opt_u32(g, akey(k, sizeof k, an, "attention.key_length"), (uint32_t)hd_def, &hk, err));
    TRY(opt_u32(g, akey(k, sizeof k, an, "attention.value_length"), (uint32_t)hd_def, &hv, err));
    if (hk != hv)
        return moe_err(err, MOE_ERR_UNSUPPORTED, "%s: attention.key_length = %u differs from "
                       "attention.value_length = %u: not supported", fn, hk, hv);
    if (hk < 1 || hk > 4096)
        return moe_err(err, MOE_ERR_FORMAT, "%s: head size %u (expected 1..4096)", fn, hk);
    hp->head_dim = (int)hk;
    TRY(opt_u32(g, akey(k, sizeof k, an, "rope.dimension_count"), hk, &u, err));
    if (u > hk || u % 2 != 0)
        return moe_err(err, MOE_ERR_FORMAT, "%s: rope.dimension_count = %u (expected even, <= "
                       "head size %u)", fn, u, hk);
    hp->n_rot = (int)u;
    TRY(gguf_get_f32(g, akey(k, sizeof k, an, "attention.layer_norm_rms_epsilon"),
                     &hp->rms_eps, err));
    if (!(hp->rms_eps >= 0.0f))
        return moe_err(err, MOE_ERR_FORMAT, "%s: %s = %g (expected >= 0)", fn, k, hp->rms_eps);
    TRY(opt_f32(g, akey(k, sizeof k, an, "rope.freq_base"), 10000.0f, &hp->rope_base, err));
    if (!(hp->rope_base > 0.0f))
        return moe_err(err, MOE_ERR_FORMAT, "%s: %s = %g (expected > 0)", fn, k, hp->rope_base);

    /* RoPE scaling: none or linear (llama.cpp's default type is linear). */
    const char *rtype = "linear";
    if (gguf_find_kv(g, akey(k, sizeof k, an, "rope.scaling.type")))
        TRY(gguf_get_str(g, k, &rtype, NULL, err));
    float factor = 0.0f;
    if (gguf_find_kv(g, akey(k, sizeof k, an, "rope.scaling.factor")))
        TRY(gguf_get_f32(g, k, &factor, err));
    else
        TRY(opt_f32(g, akey(k, sizeof k, an, "rope.scale_linear"), 0.0f, &factor, err));
    if (strcmp(rtype, "none") == 0) {
        hp->rope_freq_scale = 1.0f;
    } else if (strcmp(rtype, "linear") == 0) {
        hp->rope_freq_scale = factor == 0.0f ? 1.0f : 1.0f / factor;
    } else {
        return moe_err(err, MOE_ERR_UNSUPPORTED, "%s: %s.rope.scaling.type = '%s' is not "
                       "supported (none, linear)", fn, an, rtype);
    }
    if (!(hp->rope_freq_scale > 0.0f))
        return moe_err(err, MOE_ERR_FORMAT, "%s: rope scaling factor %g (expected > 0)", fn, factor);
    hp->use_rope = 1;
    hp->rope_neox = hp->kind == ARCH_QWEN2MOE || hp->kind == ARCH_QWEN3MOE || hp->kind == ARCH_OLMOE;

    TRY(opt_f32(g, akey(k, sizeof k, an, "attention.scale"), 0.0f, &f, err));
    hp->attn_scale = f != 0.0f ? f : 1.0f / sqrtf((float)hp->head_dim);
    hp->embd_scale = hp->resid_scale = hp->logit_scale = 1.0f;
    if (hp->kind == ARCH_GRANITEMOE) {
        TRY(opt_f32(g, akey(k, sizeof k, an, "embedding_scale"), 0.0f, &f, err));
        if (f != 0.0f) hp->embd_scale = f;
        TRY(opt_f32(g, akey(k, sizeof k, an, "residual_scale"), 0.0f, &f, err));
        if (f != 0.0f) hp->resid_scale = f;
        TRY(gguf_get_f32(g, akey(k, sizeof k, an, "logit_scale"), &f, err));
        if (f == 0.0f)
            return moe_err(err, MOE_ERR_FORMAT, "%s: %s = 0 (logits are divided by it)", fn, k);
        hp->logit_scale = f;
        TRY(opt_bool(g, akey(k, sizeof k, an, "rope.scaling.finetuned"), 1, &hp->use_rope, err));
    }

    /* Experts. */
    uint32_t E, K;
    TRY(opt_u32(g, akey(k, sizeof k, an, "expert_count"), 0, &E, err));
    TRY(opt_u32(g, akey(k, sizeof k, an, "expert_used_count"), 0, &K, err));
    if (E > 65536 || (E > 0 && (K < 1 || K > E)) || (E == 0 && K != 0))
        return moe_err(err, MOE_ERR_FORMAT, "%s: %s.expert_count = %u, expert_used_count = %u "
                       "(expected 1 <= used <= count, or both 0)", fn, an, E, K);
    const int need_experts = hp->kind != ARCH_LLAMA && hp->kind != ARCH_GRANITEMOE;
    if (need_experts && E == 0)
        return moe_err(err, MOE_ERR_FORMAT, "%s: %s.expert_count is missing or 0 (the %s "
                       "architecture has experts in every MoE layer)", fn, an, an);
    hp->n_experts = (int)E;
    hp->top_k = (int)K;
    uint32_t ff_exp, ff_sh, n_shared = 0, n_lead = 0;
    TRY(opt_u32(g, akey(k, sizeof k, an, "expert_feed_forward_length"), 0, &ff_exp, err));
    TRY(opt_u32(g, akey(k, sizeof k, an, "expert_shared_feed_forward_length"), 0, &ff_sh, err));
    hp->norm_w = hp->kind == ARCH_LLAMA || hp->kind == ARCH_QWEN3MOE ||
                 hp->kind == ARCH_GRANITEMOE || hp->kind == ARCH_MOE;
    switch (hp->kind) {
    case ARCH_LLAMA: case ARCH_GRANITEMOE: case ARCH_OLMOE: case ARCH_MOE:
        if (hp->kind == ARCH_OLMOE || ff_exp == 0) ff_exp = (uint32_t)n_ff[0];
        break;
    case ARCH_QWEN2MOE: case ARCH_QWEN3MOE:
        if (ff_exp == 0) ff_exp = (uint32_t)n_ff[0] / K;
        if (hp->kind == ARCH_QWEN2MOE && ff_sh == 0) ff_sh = (uint32_t)n_ff[0];
        if (hp->kind == ARCH_QWEN3MOE) ff_sh = 0;
        break;
    case ARCH_DEEPSEEK:
        TRY(gguf_get_u32(g, akey(k, sizeof k, an, "expert_feed_forward_length"), &ff_exp, err));
        TRY(opt_u32(g, akey(k, sizeof k, an, "expert_shared_count"), 0, &n_shared, err));
        TRY(opt_u32(g, akey(k, sizeof k, an, "leading_dense_block_count"), 0, &n_lead, err));
        if (n_shared > 65536 || (uint64_t)n_shared * ff_exp > INT32_MAX)
            return moe_err(err, MOE_ERR_FORMAT, "%s: %s.expert_shared_count = %u too large",
                           fn, an, n_shared);
        ff_sh = n_shared * ff_exp;
        break;
    default: break;
    }
    if (E > 0 && (ff_exp < 1 || ff_exp > INT32_MAX))
        return moe_err(err, MOE_ERR_FORMAT, "%s: expert feed-forward width is 0 (keys "
                       "%s.feed_forward_length / expert_feed_forward_length)", fn, an);
    hp->n_ff_exp = E > 0 ? (int)ff_exp : 0;
    hp->n_ff_shexp = E > 0 && ff_sh <= INT32_MAX ? (int)ff_sh : 0;

    int norm_w = hp->norm_w;
    TRY(opt_bool(g, akey(k, sizeof k, an, "expert_weights_norm"), norm_w, &norm_w, err));
    hp->norm_w = norm_w;
    TRY(opt_f32(g, akey(k, sizeof k, an, "expert_weights_scale"), 0.0f, &hp->w_scale, err));
    TRY(opt_u32(g, akey(k, sizeof k, an, "expert_gating_func"), 1, &u, err));
    if (u != 1 && u != 2)
        return moe_err(err, MOE_ERR_UNSUPPORTED, "%s: %s = %u is not supported (1 softmax, "
                       "2 sigmoid)", fn, k, u);
    hp->gating_sigmoid = u == 2;

    /* expert groups (llama.cpp's deepseek2 keys) */
    uint32_t ng, ngu;
    TRY(opt_u32(g, akey(k, sizeof k, an, "expert_group_count"), 0, &ng, err));
    TRY(opt_u32(g, akey(k, sizeof k, an, "expert_group_used_count"), 0, &ngu, err));
    if (ng > 1 && E > 0) {
        if (E % ng != 0 || ngu < 1 || ngu > ng || (uint64_t)ngu * (E / ng) < K)
            return moe_err(err, MOE_ERR_FORMAT, "%s: %s.expert_group_count = %u, expert_group_used_count = %u "
                           "with %u experts, top-k %u (expected groups that divide the experts and kept groups "
                           "holding at least k experts)", fn, an, ng, ngu, E, K);
        hp->n_groups = (int)ng;
        hp->topk_groups = (int)ngu;
    }
    /* moe's own selections */
    hp->select = ARCH_SEL_TOPK;
    if (hp->kind == ARCH_MOE && gguf_find_kv(g, "moe.expert_selection")) {
        const char *sel;
        TRY(gguf_get_str(g, "moe.expert_selection", &sel, NULL, err));
        static const char *const names[] = {"top_k", "top_p", "hash", "relu", "expert_choice"};
        int found = -1;
        for (int i = 0; i < 5; i++) if (!strcmp(sel, names[i])) found = i;
        if (found < 0)
            return moe_err(err, MOE_ERR_UNSUPPORTED, "%s: moe.expert_selection = '%s' is not supported (top_k, "
                           "top_p, hash, relu, expert_choice)", fn, sel);
        hp->select = (arch_select)found;
    }
    if (hp->select == ARCH_SEL_TOPP) {
        TRY(gguf_get_f32(g, "moe.expert_top_p", &hp->top_p, err));
        if (!(hp->top_p > 0.0f && hp->top_p <= 1.0f))
            return moe_err(err, MOE_ERR_FORMAT, "%s: moe.expert_top_p = %g (expected 0 < p <= 1)", fn,
                           (double)hp->top_p);
    }
    if (hp->select == ARCH_SEL_EC) {
        TRY(gguf_get_f32(g, "moe.expert_choice_capacity", &hp->ec_capacity, err));
        if (!(hp->ec_capacity > 0.0f) || !isfinite(hp->ec_capacity))
            return moe_err(err, MOE_ERR_FORMAT, "%s: moe.expert_choice_capacity = %g (expected > 0)", fn,
                           (double)hp->ec_capacity);
    }

    /* Which layers are MoE. */
    const gguf_kv *lm = gguf_find_kv(g, "moe.layer_is_moe");
    if (lm && (hp->kind == ARCH_LLAMA || hp->kind == ARCH_MOE) && E > 0) {
        if (!arr_is_int(lm) || lm->arr_n != (uint64_t)L)
            return moe_err(err, MOE_ERR_FORMAT, "%s: key 'moe.layer_is_moe' must be an array "
                           "of %d bools or integers (one per layer)", fn, L);
        for (int l = 0; l < L; l++) moe[l] = arr_int(lm, (uint64_t)l) != 0;
    } else {
        for (int l = 0; l < L; l++) moe[l] = E > 0 && (uint32_t)l >= n_lead;
    }
    hp->n_dense_layers = 0;
    hp->n_ff_max = hp->n_ff_exp > hp->n_ff_shexp ? hp->n_ff_exp : hp->n_ff_shexp;
    for (int l = 0; l < L; l++) {
        if (moe[l]) continue;
        hp->n_dense_layers++;
        if (n_ff[l] < 1)
            return moe_err(err, MOE_ERR_FORMAT, "%s: %s.feed_forward_length is missing or 0 "
                           "(layer %d is dense)", fn, an, l);
        if (n_ff[l] > hp->n_ff_max) hp->n_ff_max = n_ff[l];
    }
    return MOE_OK;
}

/* ------------------------------------------------------------- tensors */

/* The tensor walk: collects problems instead of stopping at the first. */
typedef struct tload {
    const gguf_ctx *g;
    arch_model *m;
    char miss[240];     /* names of missing tensors, ", "-separated */
    int n_miss, n_miss_listed;
    char bad[240];      /* misshaped / unsupported type descriptions */
    int n_bad, n_bad_listed;
    int oom;
} tload;

static void list_add(char *buf, size_t cap, int *n, int *listed, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void list_add(char *buf, size_t cap, int *n, int *listed, const char *fmt, ...) {
    char item[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(item, sizeof item, fmt, ap);
    va_end(ap);
    (*n)++;
    size_t len = strlen(buf);
    if (len + strlen(item) + 3 < cap) {
        snprintf(buf + len, cap - len, "%s%s", len ? ", " : "", item);
        (*listed)++;
    }
}

static void dims_str(char *buf, size_t cap, const int64_t *ne, int n) {
    size_t len = 0;
    buf[0] = '\0';
    for (int i = 0; i < n && len + 2 < cap; i++)
        len += (size_t)snprintf(buf + len, cap - len, "%s%lld", i ? ", " : "{", (long long)ne[i]);
    if (len + 2 < cap) snprintf(buf + len, cap - len, "}");
}

/* Finds name with dims want[0..3] (innermost first, trailing 1s). Returns
 * the tensor, or NULL (recorded as missing when required, or misshaped). */
static const gguf_tensor *find_shaped(tload *t, const char *name, int required,
                                      const int64_t want[4], int want_dims) {
    const gguf_tensor *x = gguf_find_tensor(t->g, name);
    if (!x) {
        if (required) list_add(t->miss, sizeof t->miss, &t->n_miss, &t->n_miss_listed, "%s", name);
        return NULL;
    }
    int ok = 1;
    for (int i = 0; i < 4; i++) ok &= x->ne[i] == want[i];
    if (!ok) {
        char a[80], b[80];
        dims_str(a, sizeof a, x->ne, (int)x->n_dims);
        dims_str(b, sizeof b, want, want_dims);
        list_add(t->bad, sizeof t->bad, &t->n_bad, &t->n_bad_listed, "%s is %s, expected %s",
                 name, a, b);
        return NULL;
    }
    if (!quant_type_valid((quant_type)x->type)) {
        list_add(t->bad, sizeof t->bad, &t->n_bad, &t->n_bad_listed, "%s has type %s "
                 "(not supported)", name, gguf_type_name(x->type));
        return NULL;
    }
    return x;
}

/* A matrix [rows, cols], or n_mat of them when n_mat > 0 (3-D). */
static void want_mat(tload *t, arch_mat *out, int required, int64_t n_mat, int64_t rows,
                     int64_t cols, const char *name) {
    const int64_t want[4] = {cols, rows, n_mat > 0 ? n_mat : 1, 1};
    memset(out, 0, sizeof *out);
    const gguf_tensor *x = find_shaped(t, name, required, want, n_mat > 0 ? 3 : 2);
    if (!x) return;
    out->data = (const uint8_t *)x->data;
    out->type = (quant_type)x->type;
    out->rows = rows;
    out->cols = cols;
    out->n_mat = n_mat > 0 ? n_mat : 1;
    out->row_bytes = quant_row_size(out->type, cols);
    out->mat_bytes = out->row_bytes * (size_t)rows;
}

/* A vector [n] as f32: into the mapping when f32 and aligned, else a copy. */
static void want_vec(tload *t, const float **out, int required, int64_t n, const char *name) {
    const int64_t want[4] = {n, 1, 1, 1};
    *out = NULL;
    const gguf_tensor *x = find_shaped(t, name, required, want, 1);
    if (!x) return;
    if (x->type == GGUF_T_F32 && ((uintptr_t)x->data % sizeof(float)) == 0) {
        *out = (const float *)x->data;
        return;
    }
    arch_model *m = t->m;
    if (m->n_owned == m->cap_owned) {
        int cap = m->cap_owned ? 2 * m->cap_owned : 64;
        float **p = realloc(m->owned, sizeof(float *) * (size_t)cap);
        if (!p) { t->oom = 1; return; }
        m->owned = p;
        m->cap_owned = cap;
    }
    float *v = malloc(sizeof(float) * (size_t)n);
    if (!v) { t->oom = 1; return; }
    m->owned[m->n_owned++] = v;
    moe_error e;
    if (quant_dequantize_row((quant_type)x->type, x->data, v, n, &e) != MOE_OK) {
        list_add(t->bad, sizeof t->bad, &t->n_bad, &t->n_bad_listed, "%s: %s", name, e.msg);
        return;
    }
    *out = v;
}

/* Per-layer name "blk.<l>.<suffix>". */
static const char *bname(char *buf, size_t cap, int l, const char *suffix) {
    snprintf(buf, cap, "blk.%d.%s", l, suffix);
    return buf;
}

static void want_layer(tload *t, int l, int n_ff, int is_moe) {
    arch_model *m = t->m;
    const arch_hparams *hp = &m->hp;
    arch_layer *ly = &m->layers[l];
    const int64_t d = hp->d_model, hq = (int64_t)hp->n_heads * hp->head_dim;
    const int64_t hkv = (int64_t)hp->n_kv_heads * hp->head_dim;
    const int64_t E = hp->n_experts, fe = hp->n_ff_exp, fs = hp->n_ff_shexp;
    char nm[128];
#define NM(s) bname(nm, sizeof nm, l, s)
    want_vec(t, &ly->attn_norm, 1, d, NM("attn_norm.weight"));
    want_mat(t, &ly->wq, 1, 0, hq, d, NM("attn_q.weight"));
    want_mat(t, &ly->wk, 1, 0, hkv, d, NM("attn_k.weight"));
    want_mat(t, &ly->wv, 1, 0, hkv, d, NM("attn_v.weight"));
    want_mat(t, &ly->wo, 1, 0, d, hq, NM("attn_output.weight"));
    want_vec(t, &ly->bq, 0, hq, NM("attn_q.bias"));
    want_vec(t, &ly->bk, 0, hkv, NM("attn_k.bias"));
    want_vec(t, &ly->bv, 0, hkv, NM("attn_v.bias"));
    want_vec(t, &ly->bo, 0, d, NM("attn_output.bias"));
    if (hp->kind == ARCH_QWEN3MOE) {
        want_vec(t, &ly->q_norm, 1, hp->head_dim, NM("attn_q_norm.weight"));
        want_vec(t, &ly->k_norm, 1, hp->head_dim, NM("attn_k_norm.weight"));
    } else if (hp->kind == ARCH_OLMOE) {
        ly->qk_norm_whole = 1;
        want_vec(t, &ly->q_norm, 1, hq, NM("attn_q_norm.weight"));
        want_vec(t, &ly->k_norm, 1, hkv, NM("attn_k_norm.weight"));
    }
    want_vec(t, &ly->ffn_norm, 1, d, NM("ffn_norm.weight"));
    ly->is_moe = is_moe;
    if (!is_moe) {
        ly->n_ff = n_ff;
        want_mat(t, &ly->ffn_gate, 1, 0, n_ff, d, NM("ffn_gate.weight"));
        want_mat(t, &ly->ffn_up, 1, 0, n_ff, d, NM("ffn_up.weight"));
        want_mat(t, &ly->ffn_down, 1, 0, d, n_ff, NM("ffn_down.weight"));
        want_vec(t, &ly->ffn_gate_b, 0, n_ff, NM("ffn_gate.bias"));
        want_vec(t, &ly->ffn_up_b, 0, n_ff, NM("ffn_up.bias"));
        want_vec(t, &ly->ffn_down_b, 0, d, NM("ffn_down.bias"));
        return;
    }
    if (hp->select == ARCH_SEL_HASH) memset(&ly->gate_inp, 0, sizeof ly->gate_inp); /* no router */
    else want_mat(t, &ly->gate_inp, 1, 0, E, d, NM("ffn_gate_inp.weight"));
    want_vec(t, &ly->exp_probs_b, 0, E, NM("exp_probs_b.bias"));
    want_mat(t, &ly->gate_exps, 1, E, fe, d, NM("ffn_gate_exps.weight"));
    want_mat(t, &ly->up_exps, 1, E, fe, d, NM("ffn_up_exps.weight"));
    want_mat(t, &ly->down_exps, 1, E, d, fe, NM("ffn_down_exps.weight"));
    if (fs > 0) {
        want_mat(t, &ly->gate_shexp, 1, 0, fs, d, NM("ffn_gate_shexp.weight"));
        want_mat(t, &ly->up_shexp, 1, 0, fs, d, NM("ffn_up_shexp.weight"));
        want_mat(t, &ly->down_shexp, 1, 0, d, fs, NM("ffn_down_shexp.weight"));
        if (hp->kind == ARCH_QWEN2MOE || hp->kind == ARCH_MOE)
            want_vec(t, &ly->gate_inp_shexp, hp->kind == ARCH_QWEN2MOE, d, NM("ffn_gate_inp_shexp.weight"));
    }
#undef NM
}

void arch_free(arch_model *m) {
    if (!m) return;
    for (int i = 0; i < m->n_owned; i++) free(m->owned[i]);
    free(m->owned);
    free(m->layers);
    memset(m, 0, sizeof *m);
}

moe_status arch_load(arch_model *m, const gguf_ctx *g, moe_error *err) {
    memset(m, 0, sizeof *m);
    const char *fn = gguf_name(g);
    const char *an;
    TRY(model_file_check_keys(g, err)); /* moe.version and moe.* keys this build knows */
    TRY(gguf_get_str(g, "general.architecture", &an, NULL, err));
    int kind = -1;
    for (int i = 0; i < ARCH_COUNT; i++)
        if (strcmp(an, k_arch_names[i]) == 0) kind = i;
    if (kind < 0)
        return moe_err(err, MOE_ERR_UNSUPPORTED, "%s: architecture '%s' is not supported "
                       "(supported: llama, qwen2moe, qwen3moe, olmoe, deepseek, granitemoe, moe)",
                       fn, an);
    m->hp.kind = (arch_kind)kind;
    int *n_ff = NULL, *moe = NULL;
    moe_status st = read_hparams(&m->hp, g, &n_ff, &moe, err);
    if (st != MOE_OK) {
        free(n_ff); free(moe);
        memset(m, 0, sizeof *m);
        return st;
    }
    const arch_hparams *hp = &m->hp;
    m->layers = calloc((size_t)hp->n_layers, sizeof(arch_layer));
    if (!m->layers) {
        free(n_ff); free(moe);
        return moe_err(err, MOE_ERR_NOMEM, "%s: %d layers", fn, hp->n_layers);
    }

    tload t;
    memset(&t, 0, sizeof t);
    t.g = g;
    t.m = m;
    const int64_t d = hp->d_model;
    /* The vocabulary size comes from the embedding's outer dimension. */
    const gguf_tensor *te = gguf_find_tensor(g, "token_embd.weight");
    int64_t V = te ? te->ne[1] : 0;
    if (te && (V < 1 || V > INT32_MAX)) V = 0;
    if (te && V > 0) want_mat(&t, &m->token_embd, 1, 0, V, d, "token_embd.weight");
    else list_add(t.miss, sizeof t.miss, &t.n_miss, &t.n_miss_listed, "token_embd.weight");
    m->hp.vocab_size = (int)V;
    want_vec(&t, &m->output_norm, 1, d, "output_norm.weight");
    if (V > 0) want_mat(&t, &m->output, 0, 0, V, d, "output.weight");
    m->output_tied = m->output.data == NULL && gguf_find_tensor(g, "output.weight") == NULL;
    if (m->output_tied) m->output = m->token_embd;
    want_vec(&t, &m->rope_freqs, 0, hp->n_rot / 2, "rope_freqs.weight");
    for (int l = 0; l < hp->n_layers; l++) want_layer(&t, l, n_ff[l], moe[l]);
    free(n_ff);
    free(moe);

    if (t.oom) {
        arch_free(m);
        return moe_err(err, MOE_ERR_NOMEM, "%s: copies of the model's vectors", fn);
    }
    if (t.n_miss || t.n_bad) {
        char part[2][300];
        part[0][0] = part[1][0] = '\0';
        if (t.n_miss)
            snprintf(part[0], sizeof part[0], "%d tensor%s missing: %s%s", t.n_miss,
                     t.n_miss == 1 ? "" : "s", t.miss,
                     t.n_miss > t.n_miss_listed ? " ..." : "");
        if (t.n_bad)
            snprintf(part[1], sizeof part[1], "%d tensor%s misshaped: %s%s", t.n_bad,
                     t.n_bad == 1 ? "" : "s", t.bad, t.n_bad > t.n_bad_listed ? " ..." : "");
        moe_err(err, MOE_ERR_FORMAT, "%s (%s): %s%s%s", fn, an, part[0],
                t.n_miss && t.n_bad ? "; " : "", part[1]);
        arch_free(m);
        return MOE_ERR_FORMAT;
    }
    for (size_t i = 0; i < gguf_n_tensors(g); i++) {
        const gguf_tensor *x = gguf_tensor_at(g, i);
        m->params_total += x->n_elem;
        m->bytes_total += (int64_t)x->nbytes;
    }
    return MOE_OK;
}

void arch_active(const arch_model *m, int k, int64_t *params_active, int64_t *bytes_active) {
    int64_t b = m->bytes_total;
    double unused_p = 0;
    const int64_t E = m->hp.n_experts;
    for (int l = 0; l < m->hp.n_layers; l++) {
        const arch_layer *ly = &m->layers[l];
        if (!ly->is_moe) continue;
        const int64_t unused = E - k;
        const arch_mat *w[3] = {&ly->gate_exps, &ly->up_exps, &ly->down_exps};
        for (int i = 0; i < 3; i++) {
            unused_p += (double)(unused * w[i]->rows * w[i]->cols);
            b -= unused * (int64_t)w[i]->mat_bytes;
        }
    }
    if (!m->output_tied) /* a token reads one row of the embedding */
        b -= (int64_t)(m->token_embd.mat_bytes - m->token_embd.row_bytes);
    *params_active = model_active_params(m->params_total, unused_p, m->token_embd.rows, m->token_embd.cols,
                                         m->output_tied);
    *bytes_active = b;
}

void arch_runs_in(const arch_model *m, char *buf, size_t cap) {
    const arch_hparams *hp = &m->hp;
    if (hp->kind != ARCH_MOE) {
        /* llama.cpp's own architectures, as moe reads them; what llama.cpp's
           version of the architecture does not load (moe.layer_is_moe mixes,
           selection biases outside deepseek2) is named */
        int mixed = hp->n_experts > 0 && hp->n_dense_layers > 0 && hp->kind != ARCH_DEEPSEEK;
        int bias = 0;
        for (int l = 0; l < hp->n_layers; l++) bias |= m->layers[l].exp_probs_b != NULL;
        if (mixed || bias)
            snprintf(buf, cap, "moe only (%s%s%s)", mixed ? "dense and MoE blocks mixed" : "",
                     mixed && bias ? ", " : "", bias ? "selection bias" : "");
        else
            snprintf(buf, cap, "moe, llama.cpp (arch %s)", k_arch_names[hp->kind]);
        return;
    }
    static const char *const sel[] = {"", "top-p routing", "hash routing", "ReLU routing",
                                      "expert choice over the batch"};
    size_t len = 0;
    buf[0] = '\0';
#define WHY(cond, text) \
    do { if ((cond) && len + 2 < cap) len += (size_t)snprintf(buf + len, cap - len, "%s%s", len ? ", " : "moe only (", text); } while (0)
    int bias = 0, gated = 0;
    for (int l = 0; l < hp->n_layers; l++) {
        bias |= m->layers[l].exp_probs_b != NULL;
        gated |= m->layers[l].gate_inp_shexp != NULL;
    }
    WHY(hp->n_experts > 0 && hp->n_dense_layers > 0, "dense and MoE blocks mixed");
    WHY(hp->select != ARCH_SEL_TOPK, sel[hp->select]);
    WHY(hp->gating_sigmoid && hp->select != ARCH_SEL_HASH && hp->select != ARCH_SEL_RELU, "sigmoid gate");
    WHY(bias, "selection bias");
    WHY(hp->n_groups > 0, "expert groups");
    WHY(hp->n_ff_shexp > 0, gated ? "gated shared expert" : "shared expert");
    WHY(!hp->norm_w && (hp->select == ARCH_SEL_TOPK || hp->select == ARCH_SEL_TOPP), "top-k weights not renormalised");
    WHY(hp->w_scale != 0.0f && hp->w_scale != 1.0f, "weight scale");
#undef WHY
    if (len == 0) snprintf(buf, cap, "moe only");
    else if (len + 2 < cap) snprintf(buf + len, cap - len, ")");
}
