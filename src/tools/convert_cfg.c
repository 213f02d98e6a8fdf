/* convert_cfg.c: config.json of a Hugging Face folder as the
 * hyperparameters of one of the families convert.c knows (see convert.h).
 *
 * Each key is read with the default of the family's transformers config
 * class when it is absent (JSON null counts as absent); a present key of
 * the wrong type or range is an error naming it. Settings the engine does
 * not implement are MOE_ERR_UNSUPPORTED (dense layers among qwen MoE
 * layers, clip_qkv, partial rotary, rope scaling other than linear /
 * llama3 / dynamic, non-softmax DeepSeek scoring); harmless ones are
 * notes (sliding_window, dynamic rope scaling).
 * Not for: tensors or the tokenizer.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "tools/convert.h"

#define TRY(x) do { moe_status st_ = (x); if (st_ != MOE_OK) return st_; } while (0)

static const struct { const char *model_type; cv_fam f; arch_kind arch; int permute; } k_fams[] = {
    {"llama", CV_LLAMA, ARCH_LLAMA, 1},         {"mistral", CV_LLAMA, ARCH_LLAMA, 1},
    {"mixtral", CV_MIXTRAL, ARCH_LLAMA, 1},     {"qwen2_moe", CV_QWEN2MOE, ARCH_QWEN2MOE, 0},
    {"qwen3_moe", CV_QWEN3MOE, ARCH_QWEN3MOE, 0}, {"olmoe", CV_OLMOE, ARCH_OLMOE, 0},
    {"deepseek", CV_DEEPSEEK, ARCH_DEEPSEEK, 1}, {"granitemoe", CV_GRANITEMOE, ARCH_GRANITEMOE, 1},
};
#define N_FAMS (sizeof k_fams / sizeof k_fams[0])

typedef struct cfg_ctx {
    const json_value *c;
    const char *path;
    moe_error *err;
} cfg_ctx;

#define REQUIRED INT64_MIN

/* JSON null counts as absent. */
static const json_value *cfg_get(const cfg_ctx *c, const char *key) {
    const json_value *v = json_get(c->c, key);
    return v && v->type != JSON_NULL ? v : NULL;
}

static moe_status cfg_int(const cfg_ctx *c, const char *key, int64_t def, int64_t lo, int64_t hi,
                          int64_t *out) {
    const json_value *v = cfg_get(c, key);
    if (!v) {
        if (def == REQUIRED)
            return moe_err(c->err, MOE_ERR_FORMAT, "%s: key \"%s\" is missing", c->path, key);
        *out = def;
        return MOE_OK;
    }
    int64_t x;
    if (!json_as_int(v, &x) || x < lo || x > hi)
        return moe_err(c->err, MOE_ERR_FORMAT, "%s: key \"%s\" must be an integer in %lld..%lld",
                       c->path, key, (long long)lo, (long long)hi);
    *out = x;
    return MOE_OK;
}

static moe_status cfg_num(const cfg_ctx *c, const char *key, double def, double *out) {
    const json_value *v = cfg_get(c, key);
    if (!v) {
        if (isnan(def))
            return moe_err(c->err, MOE_ERR_FORMAT, "%s: key \"%s\" is missing", c->path, key);
        *out = def;
        return MOE_OK;
    }
    if (v->type != JSON_NUMBER || !isfinite(v->u.num))
        return moe_err(c->err, MOE_ERR_FORMAT, "%s: key \"%s\" must be a number", c->path, key);
    *out = v->u.num;
    return MOE_OK;
}

static moe_status cfg_bool(const cfg_ctx *c, const char *key, int def, int *out) {
    const json_value *v = cfg_get(c, key);
    if (!v) { *out = def; return MOE_OK; }
    if (v->type != JSON_TRUE && v->type != JSON_FALSE)
        return moe_err(c->err, MOE_ERR_FORMAT, "%s: key \"%s\" must be true or false", c->path, key);
    *out = v->type == JSON_TRUE;
    return MOE_OK;
}

/* rope_scaling: none, linear, llama3 (rope_freqs) or dynamic (ignored). */
static moe_status read_rope_scaling(const cfg_ctx *c, hf_hp *hp, cv_notes *notes) {
    const json_value *rs = cfg_get(c, "rope_scaling");
    if (!rs) return MOE_OK;
    if (rs->type != JSON_OBJECT)
        return moe_err(c->err, MOE_ERR_FORMAT, "%s: \"rope_scaling\" must be an object or null",
                       c->path);
    const char *type = NULL;
    if (!json_get_str(rs, "rope_type", &type) && !json_get_str(rs, "type", &type))
        return moe_err(c->err, MOE_ERR_FORMAT, "%s: \"rope_scaling\" has no \"rope_type\"", c->path);
    cfg_ctx sc = {rs, c->path, c->err};
    double factor;
    if (!strcmp(type, "default")) return MOE_OK;
    if (!strcmp(type, "dynamic")) {
        cv_note(notes, "rope_scaling \"dynamic\" is ignored (the same as none within the trained "
                "context)");
        return MOE_OK;
    }
    TRY(cfg_num(&sc, "factor", NAN, &factor));
    if (!(factor > 0))
        return moe_err(c->err, MOE_ERR_FORMAT, "%s: rope_scaling.factor = %g (expected > 0)",
                       c->path, factor);
    if (!strcmp(type, "linear")) {
        hp->rope_linear = factor;
        return MOE_OK;
    }
    if (strcmp(type, "llama3"))
        return moe_err(c->err, MOE_ERR_UNSUPPORTED, "%s: rope_scaling type \"%s\" is not "
                       "supported (default, linear, llama3, dynamic)", c->path, type);
    /* llama3: per-frequency divisors, as the Hugging Face model scales inv_freq */
    double lo_f, hi_f, old_ctx;
    TRY(cfg_num(&sc, "low_freq_factor", NAN, &lo_f));
    TRY(cfg_num(&sc, "high_freq_factor", NAN, &hi_f));
    TRY(cfg_num(&sc, "original_max_position_embeddings", NAN, &old_ctx));
    if (!(hi_f > lo_f) || !(old_ctx > 0))
        return moe_err(c->err, MOE_ERR_FORMAT, "%s: rope_scaling llama3 needs high_freq_factor > "
                       "low_freq_factor and original_max_position_embeddings > 0", c->path);
    const int64_t n = hp->hd / 2;
    hp->rope_freqs = malloc(sizeof(float) * (size_t)n);
    if (!hp->rope_freqs) return moe_err(c->err, MOE_ERR_NOMEM, "out of memory");
    const double lo_wl = old_ctx / lo_f, hi_wl = old_ctx / hi_f;
    for (int64_t i = 0; i < n; i++) {
        double freq = pow(hp->theta, -(double)(2 * i) / (double)hp->hd);
        double wl = 2.0 * 3.14159265358979323846 / freq, div;
        if (wl < hi_wl) div = 1.0;
        else if (wl > lo_wl) div = factor;
        else {
            double smooth = (old_ctx / wl - lo_f) / (hi_f - lo_f);
            div = 1.0 / ((1.0 - smooth) / factor + smooth);
        }
        hp->rope_freqs[i] = (float)div;
    }
    return MOE_OK;
}

static moe_status read_config(const cfg_ctx *c, hf_hp *hp, cv_notes *notes) {
    moe_error *err = c->err;
    memset(hp, 0, sizeof *hp);
    const char *mt;
    if (!json_get_str(c->c, "model_type", &mt))
        return moe_err(err, MOE_ERR_FORMAT, "%s: no string \"model_type\"", c->path);
    int fi = -1;
    for (size_t i = 0; i < N_FAMS; i++)
        if (!strcmp(mt, k_fams[i].model_type)) fi = (int)i;
    if (fi < 0)
        return moe_err(err, MOE_ERR_UNSUPPORTED, "%s: model_type \"%s\" is not supported "
                       "(supported: llama, mistral, mixtral, qwen2_moe, qwen3_moe, olmoe, "
                       "deepseek, granitemoe)", c->path, mt);
    hp->f = k_fams[fi].f;
    hp->arch = k_fams[fi].arch;
    hp->permute = k_fams[fi].permute;
    snprintf(hp->model_type, sizeof hp->model_type, "%s", mt);
    const int64_t BIG = (int64_t)1 << 30;
    TRY(cfg_int(c, "num_hidden_layers", REQUIRED, 1, 100000, &hp->L));
    TRY(cfg_int(c, "hidden_size", REQUIRED, 1, 1 << 20, &hp->d));
    TRY(cfg_int(c, "num_attention_heads", REQUIRED, 1, 65536, &hp->H));
    TRY(cfg_int(c, "num_key_value_heads", hp->H, 1, 65536, &hp->Hkv));
    if (hp->H % hp->Hkv)
        return moe_err(err, MOE_ERR_FORMAT, "%s: num_attention_heads = %lld is not a multiple of "
                       "num_key_value_heads = %lld", c->path, (long long)hp->H, (long long)hp->Hkv);
    TRY(cfg_int(c, "head_dim", hp->d / hp->H, 2, 4096, &hp->hd));
    if (hp->hd % 2)
        return moe_err(err, MOE_ERR_FORMAT, "%s: head size %lld is odd", c->path, (long long)hp->hd);
    TRY(cfg_int(c, "max_position_embeddings", 4096, 1, BIG, &hp->ctx));
    /* the defaults of the transformers config classes */
    const int f5 = hp->f == CV_MIXTRAL || hp->f == CV_OLMOE;
    TRY(cfg_num(c, "rms_norm_eps", f5 ? 1e-5 : 1e-6, &hp->eps));
    TRY(cfg_num(c, "rope_theta", hp->f == CV_MIXTRAL ? 1e6 : 10000.0, &hp->theta));
    if (!(hp->theta > 0))
        return moe_err(err, MOE_ERR_FORMAT, "%s: rope_theta = %g (expected > 0)", c->path, hp->theta);
    TRY(cfg_bool(c, "tie_word_embeddings", 0, &hp->tied));
    double prf;
    TRY(cfg_num(c, "partial_rotary_factor", 1.0, &prf));
    if (prf != 1.0)
        return moe_err(err, MOE_ERR_UNSUPPORTED, "%s: partial_rotary_factor = %g is not supported",
                       c->path, prf);
    TRY(cfg_int(c, "intermediate_size", 0, 0, BIG, &hp->ff));
    hp->norm_topk = -1;
    int64_t step;
    const json_value *mlp_only;
    switch (hp->f) {
    case CV_LLAMA:
        if (hp->ff < 1) TRY(cfg_int(c, "intermediate_size", REQUIRED, 1, BIG, &hp->ff));
        if (cfg_get(c, "sliding_window"))
            cv_note(notes, "sliding_window is ignored (full attention over the context)");
        break;
    case CV_MIXTRAL: case CV_GRANITEMOE:
        TRY(cfg_int(c, "intermediate_size", REQUIRED, 1, BIG, &hp->ff_exp));
        TRY(cfg_int(c, "num_local_experts", REQUIRED, 1, 65536, &hp->E));
        if (hp->f == CV_MIXTRAL && cfg_get(c, "sliding_window"))
            cv_note(notes, "sliding_window is ignored (full attention over the context)");
        if (hp->f == CV_GRANITEMOE) {
            TRY(cfg_num(c, "embedding_multiplier", 1.0, &hp->emb_mult));
            TRY(cfg_num(c, "residual_multiplier", 1.0, &hp->res_mult));
            TRY(cfg_num(c, "attention_multiplier", 1.0, &hp->attn_mult));
            TRY(cfg_num(c, "logits_scaling", 1.0, &hp->logit_scale));
            if (hp->logit_scale == 0)
                return moe_err(err, MOE_ERR_FORMAT, "%s: logits_scaling = 0", c->path);
        }
        break;
    case CV_QWEN2MOE: case CV_QWEN3MOE:
        TRY(cfg_int(c, "num_experts", REQUIRED, 1, 65536, &hp->E));
        TRY(cfg_int(c, "moe_intermediate_size", REQUIRED, 1, BIG, &hp->ff_exp));
        if (hp->f == CV_QWEN2MOE)
            TRY(cfg_int(c, "shared_expert_intermediate_size", REQUIRED, 1, BIG, &hp->ff_sh));
        TRY(cfg_int(c, "decoder_sparse_step", 1, 0, BIG, &step));
        mlp_only = cfg_get(c, "mlp_only_layers");
        if (step != 1 || (mlp_only && (mlp_only->type != JSON_ARRAY || mlp_only->u.arr.n)))
            return moe_err(err, MOE_ERR_UNSUPPORTED, "%s: dense layers among the MoE layers "
                           "(decoder_sparse_step = %lld, mlp_only_layers non-empty) are not "
                           "supported by the %s layout", c->path, (long long)step,
                           arch_name(hp->arch));
        TRY(cfg_bool(c, "norm_topk_prob", 0, &hp->norm_topk));
        break;
    case CV_OLMOE:
        TRY(cfg_int(c, "intermediate_size", REQUIRED, 1, BIG, &hp->ff_exp));
        TRY(cfg_int(c, "num_experts", REQUIRED, 1, 65536, &hp->E));
        TRY(cfg_bool(c, "norm_topk_prob", 0, &hp->norm_topk));
        if (cfg_get(c, "clip_qkv"))
            return moe_err(err, MOE_ERR_UNSUPPORTED, "%s: clip_qkv is not supported", c->path);
        break;
    case CV_DEEPSEEK: {
        TRY(cfg_int(c, "intermediate_size", REQUIRED, 1, BIG, &hp->ff));
        TRY(cfg_int(c, "n_routed_experts", REQUIRED, 1, 65536, &hp->E));
        TRY(cfg_int(c, "moe_intermediate_size", REQUIRED, 1, BIG, &hp->ff_exp));
        TRY(cfg_int(c, "n_shared_experts", 0, 0, 65536, &hp->n_shared));
        TRY(cfg_int(c, "first_k_dense_replace", 0, 0, hp->L - 1, &hp->n_dense));
        TRY(cfg_int(c, "moe_layer_freq", 1, 1, BIG, &step));
        if (step != 1)
            return moe_err(err, MOE_ERR_UNSUPPORTED, "%s: moe_layer_freq = %lld is not supported "
                           "(1: every layer after first_k_dense_replace)", c->path, (long long)step);
        const char *sf;
        if (json_get_str(c->c, "scoring_func", &sf) && strcmp(sf, "softmax"))
            return moe_err(err, MOE_ERR_UNSUPPORTED, "%s: scoring_func \"%s\" is not supported "
                           "(softmax)", c->path, sf);
        TRY(cfg_bool(c, "norm_topk_prob", 0, &hp->norm_topk));
        hp->ff_sh = hp->n_shared * hp->ff_exp;
        break;
    }
    }
    if (hp->E) {
        TRY(cfg_int(c, "num_experts_per_tok", REQUIRED, 1, hp->E, &hp->k));
        if (hp->f != CV_DEEPSEEK) hp->n_dense = 0;
    }
    return read_rope_scaling(c, hp, notes);
}

moe_status convert_read_config(const json_value *cfg, const char *path, hf_hp *hp,
                               cv_notes *notes, moe_error *err) {
    memset(hp, 0, sizeof *hp);
    if (!cfg || cfg->type != JSON_OBJECT)
        return moe_err(err, MOE_ERR_FORMAT, "%s: not a JSON object", path);
    cfg_ctx c = {cfg, path, err};
    return read_config(&c, hp, notes);
}
