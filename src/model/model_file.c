/* model_file.c: the model in GGUF form (the layout is in model_file.h):
 * moe_model_save and moe_model_load, and the parts the training-state file
 * (src/train/state_file.c) shares. One table per configuration struct
 * (io/gguf_fields.h) drives both writing and reading, so a new field is one
 * line. */
#include "model/model_file.h"
#include "text/tokenizer.h"
#include "core/error.h"
#include "io/gguf_fields.h"
#include "quant/quant.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ field tables */

static const gguf_field model_fields[] = {
    GF_I(moe_model_config, vocab_size), GF_I(moe_model_config, d_model), GF_I(moe_model_config, n_layers),
    GF_I(moe_model_config, n_heads), GF_I(moe_model_config, n_kv_heads), GF_I(moe_model_config, head_dim),
    GF_I(moe_model_config, ctx_len), GF_I(moe_model_config, d_ff), GF_F(moe_model_config, rope_theta),
    GF_F(moe_model_config, norm_eps), GF_I(moe_model_config, tie_embeddings), GF_I(moe_model_config, moe_every),
    GF_I(moe_model_config, n_dense_first),
};

static const gguf_field router_fields[] = {
    GF_I(moe_layer_config, d_ff), GF_I(moe_layer_config, n_experts), GF_I(moe_layer_config, top_k),
    GF_I(moe_layer_config, expert), GF_I(moe_layer_config, gate), GF_I(moe_layer_config, select),
    GF_F(moe_layer_config, capacity_factor), GF_I(moe_layer_config, drop_policy), GF_I(moe_layer_config, renormalize),
    GF_F(moe_layer_config, weight_scale), GF_F(moe_layer_config, aux_loss_coef), GF_F(moe_layer_config, z_loss_coef),
    GF_U(moe_layer_config, seed), GF_I(moe_layer_config, max_top_k), GF_F(moe_layer_config, jitter),
    GF_I(moe_layer_config, noisy_gate), GF_F(moe_layer_config, importance_loss_coef),
    GF_F(moe_layer_config, load_loss_coef), GF_I(moe_layer_config, gshard_random_second),
    GF_I(moe_layer_config, balance_top1_only), GF_F(moe_layer_config, top_p), GF_F(moe_layer_config, entropy_loss_coef),
    GF_F(moe_layer_config, ec_capacity), GF_I(moe_layer_config, ec_inference), GF_I(moe_layer_config, n_groups),
    GF_I(moe_layer_config, topk_groups), GF_F(moe_layer_config, bias_update_rate),
    GF_F(moe_layer_config, seq_aux_loss_coef), GF_I(moe_layer_config, seq_len), GF_I(moe_layer_config, shared_d_ff),
    GF_I(moe_layer_config, shared_gate), GF_F(moe_layer_config, relu_l1_coef),
    GF_F(moe_layer_config, relu_target_sparsity), GF_I(moe_layer_config, global_stats),
    GF_I(moe_layer_config, dead_window),
};

/* ------------------------------------------------------------------ model */

static int n_moe_layers(const moe_model_config *c) {
    int n = 0;
    for (int l = 0; l < c->n_layers; l++) n += moe_model_layer_is_moe(c, l);
    return n;
}

#define TRY(x) do { moe_status st_ = (x); if (st_ != MOE_OK) return st_; } while (0)

moe_status model_file_verify_checksum(const gguf_ctx *g, moe_error *err) {
    if (!gguf_find_kv(g, "moe.checksum")) return MOE_OK;
    uint64_t want;
    TRY(gguf_get_u64(g, "moe.checksum", &want, err));
    moe_hash h;
    moe_hash_init(&h);
    for (size_t i = 0; i < gguf_n_tensors(g); i++) {
        const gguf_tensor *t = gguf_tensor_at(g, i);
        moe_hash_update(&h, t->data, t->nbytes);
    }
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
    /* the fuzz build only (make fuzz, tests/fuzz/fuzz_checkpoint.c): a
     * mutated file almost never keeps its checksum, and the metadata and
     * tensors behind this check must be reached too */
    (void)want;
    return MOE_OK;
#else
    if (moe_hash_final(&h) != want)
        return moe_err(err, MOE_ERR_FORMAT, "%s: the tensor data does not match moe.checksum (the file is corrupt)",
                       gguf_name(g));
    return MOE_OK;
#endif
}

/* Why another tool cannot reproduce c's routing: "" when llama.cpp's `llama`
 * architecture computes exactly what the training forward computes in
 * evaluation mode (softmax, top-k, renormalised, scale 1, every block MoE or
 * every block dense), else the first reasons, comma-separated. */
static void foreign_reasons(const moe_model_config *c, char *why, size_t cap) {
    const moe_layer_config *r = &c->moe;
    why[0] = '\0';
    const int n_moe = n_moe_layers(c);
    if (!n_moe) return;
    size_t len = 0;
#define WHY(cond, text) \
    do { if ((cond) && len + 40 < cap) len += (size_t)snprintf(why + len, cap - len, "%s%s", len ? ", " : "", text); } while (0)
    WHY(n_moe != c->n_layers, "dense and MoE blocks mixed");
    WHY(r->select == MOE_SELECT_HASH, "hash routing");
    WHY(r->select == MOE_SELECT_ALL, "ReLU routing");
    WHY(r->select == MOE_SELECT_TOPP, "top-p routing");
    WHY(r->select == MOE_SELECT_EXPERT_CHOICE && r->ec_inference, "expert choice over the batch");
    WHY(r->select != MOE_SELECT_HASH && r->select != MOE_SELECT_ALL && r->gate == MOE_GATE_SIGMOID, "sigmoid gate");
    WHY(r->bias_update_rate > 0.0f, "selection bias");
    WHY(r->n_groups > 0, "expert groups");
    WHY(r->shared_d_ff > 0, r->shared_gate ? "gated shared expert" : "shared expert");
    WHY((r->select == MOE_SELECT_TOPK || (r->select == MOE_SELECT_EXPERT_CHOICE && !r->ec_inference) ||
         r->select == MOE_SELECT_TOPP) && !r->renormalize && !r->noisy_gate, "top-k weights not renormalised");
    WHY(r->weight_scale != 1.0f, "weight scale");
    WHY(r->expert != MOE_EXPERT_SWIGLU, "GELU experts");
#undef WHY
}

const char *model_file_arch(const moe_model_config *c, char *why, size_t cap) {
    foreign_reasons(c, why, cap);
    return why[0] ? MODEL_FILE_ARCH : "llama";
}

/* "<arch>.<suffix>" */
static const char *ak(char *buf, size_t cap, const char *arch, const char *suffix) {
    snprintf(buf, cap, "%s.%s", arch, suffix);
    return buf;
}

/* The keys of the engine's routing for the "moe" architecture (see model_file.h). */
static moe_status add_moe_routing(gguf_writer *w, const moe_model_config *c, moe_error *err) {
    const moe_layer_config *r = &c->moe;
    const char *sel = "top_k";
    switch (r->select) {
    case MOE_SELECT_TOPP: sel = "top_p"; break;
    case MOE_SELECT_HASH: sel = "hash"; break;
    case MOE_SELECT_ALL: sel = "relu"; break;
    case MOE_SELECT_EXPERT_CHOICE: sel = r->ec_inference ? "expert_choice" : "top_k"; break;
    default: break;
    }
    TRY(gguf_writer_set_str(w, "moe.expert_selection", sel, err));
    if (r->select != MOE_SELECT_HASH && r->select != MOE_SELECT_ALL)
        TRY(gguf_writer_set_u32(w, "moe.expert_gating_func", r->gate == MOE_GATE_SIGMOID ? 2 : 1, err));
    TRY(gguf_writer_set_bool(w, "moe.expert_weights_norm", r->renormalize || r->noisy_gate, err));
    TRY(gguf_writer_set_f32(w, "moe.expert_weights_scale", r->weight_scale, err));
    if (r->select == MOE_SELECT_TOPP) TRY(gguf_writer_set_f32(w, "moe.expert_top_p", r->top_p, err));
    if (r->select == MOE_SELECT_EXPERT_CHOICE && r->ec_inference)
        TRY(gguf_writer_set_f32(w, "moe.expert_choice_capacity", r->ec_capacity, err));
    if (r->n_groups > 0) {
        TRY(gguf_writer_set_u32(w, "moe.expert_group_count", (uint32_t)r->n_groups, err));
        TRY(gguf_writer_set_u32(w, "moe.expert_group_used_count", (uint32_t)r->topk_groups, err));
    }
    if (r->shared_d_ff > 0)
        TRY(gguf_writer_set_u32(w, "moe.expert_shared_feed_forward_length", (uint32_t)r->shared_d_ff, err));
    return MOE_OK;
}

moe_status model_file_add(gguf_writer *w, moe_model *m, const bpe_tokenizer *tok, int for_state,
                          float *const *whole, moe_hash *hash, moe_error *err) {
    const moe_model_config *c = moe_model_get_config(m);
    const int hd = c->head_dim ? c->head_dim : c->d_model / c->n_heads;
    const int n_moe = n_moe_layers(c);
    char why[200], k[96];
    const char *an = model_file_arch(c, why, sizeof why);
    TRY(gguf_writer_set_str(w, "general.architecture", an, err));
    TRY(gguf_writer_set_str(w, "general.name", n_moe ? "moe-trained-moe" : "moe-trained-dense", err));
    TRY(gguf_writer_set_u32(w, "general.file_type", 0, err));
    TRY(gguf_writer_set_u32(w, ak(k, sizeof k, an, "context_length"), (uint32_t)c->ctx_len, err));
    TRY(gguf_writer_set_u32(w, ak(k, sizeof k, an, "embedding_length"), (uint32_t)c->d_model, err));
    TRY(gguf_writer_set_u32(w, ak(k, sizeof k, an, "block_count"), (uint32_t)c->n_layers, err));
    /* Mixtral layout: feed_forward_length is the expert width when every
       block is MoE; a mixed model gives the dense width there and the
       expert width in expert_feed_forward_length */
    int ff = (n_moe == c->n_layers) ? c->moe.d_ff : c->d_ff;
    TRY(gguf_writer_set_u32(w, ak(k, sizeof k, an, "feed_forward_length"), (uint32_t)ff, err));
    TRY(gguf_writer_set_u32(w, ak(k, sizeof k, an, "attention.head_count"), (uint32_t)c->n_heads, err));
    TRY(gguf_writer_set_u32(w, ak(k, sizeof k, an, "attention.head_count_kv"), (uint32_t)c->n_kv_heads, err));
    TRY(gguf_writer_set_u32(w, ak(k, sizeof k, an, "attention.key_length"), (uint32_t)hd, err));
    TRY(gguf_writer_set_u32(w, ak(k, sizeof k, an, "attention.value_length"), (uint32_t)hd, err));
    TRY(gguf_writer_set_u32(w, ak(k, sizeof k, an, "rope.dimension_count"), (uint32_t)hd, err));
    TRY(gguf_writer_set_f32(w, ak(k, sizeof k, an, "rope.freq_base"), c->rope_theta, err));
    TRY(gguf_writer_set_f32(w, ak(k, sizeof k, an, "attention.layer_norm_rms_epsilon"), c->norm_eps, err));
    TRY(gguf_writer_set_u32(w, ak(k, sizeof k, an, "vocab_size"), (uint32_t)c->vocab_size, err));
    if (n_moe) {
        TRY(gguf_writer_set_u32(w, ak(k, sizeof k, an, "expert_count"), (uint32_t)c->moe.n_experts, err));
        TRY(gguf_writer_set_u32(w, ak(k, sizeof k, an, "expert_used_count"), (uint32_t)c->moe.top_k, err));
        TRY(gguf_writer_set_u32(w, ak(k, sizeof k, an, "expert_feed_forward_length"), (uint32_t)c->moe.d_ff, err));
    }
    TRY(gguf_writer_set_u32(w, "moe.version", MODEL_FILE_VERSION, err));
    TRY(gguf_fields_put(w, "moe.model.", model_fields, GF_N(model_fields), c, err));
    TRY(gguf_fields_put(w, "moe.router.", router_fields, GF_N(router_fields), &c->moe, err));
    if (strcmp(an, "llama")) {
        if (n_moe) TRY(add_moe_routing(w, c, err));
        uint8_t mask[1024];
        for (int l = 0; l < c->n_layers; l++) mask[l] = (uint8_t)moe_model_layer_is_moe(c, l);
        TRY(gguf_writer_set_arr(w, "moe.layer_is_moe", GGUF_VT_U8, mask, (uint64_t)c->n_layers, err));
    }

    if (tok) {
        bpe_gguf_vocab v;
        TRY(bpe_export_gguf(tok, &v, err));
        moe_status st = gguf_writer_set_str(w, "tokenizer.ggml.model", BPE_GGUF_MODEL, err);
        if (!st) st = gguf_writer_set_str(w, "tokenizer.ggml.pre", MODEL_FILE_PRE, err);
        if (!st) st = gguf_writer_set_str(w, "moe.tokenizer.pre", BPE_GGUF_PRE, err);
        if (!st) st = gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)v.tokens, v.n_tokens, err);
        if (!st) st = gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_VT_I32, v.token_type, v.n_tokens, err);
        if (!st) st = gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", (const char *const *)v.merges, v.n_merges, err);
        if (!st && v.bos_id >= 0) st = gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)v.bos_id, err);
        if (!st && v.eos_id >= 0) st = gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)v.eos_id, err);
        if (!st) st = gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", 0, err);
        bpe_gguf_vocab_free(&v);
        if (st != MOE_OK) return st;
    }

    for (int i = 0; i < moe_model_n_tensors(m); i++) {
        moe_tensor t;
        moe_model_tensor(m, i, &t, NULL);
        /* the noisy gate's noise weights do nothing at inference (H = z):
           only the training state keeps them */
        if (!for_state && strstr(t.name, "ffn_gate_inp_noise")) continue;
        const float *data = whole && whole[i] ? whole[i] : t.data;
        if (data == t.data && t.held_n != t.n)
            return moe_err(err, MOE_ERR_ARG, "saving %s: this process holds %lld of its %lld elements, from %lld on (a rank "
                           "of an expert-parallel run: moe_trainer_save of the attached trainer gathers the whole)", t.name,
                           (long long)t.held_n, (long long)t.n, (long long)t.held_lo);
        int64_t ne[3];
        for (int j = 0; j < t.n_dims; j++) ne[j] = t.shape[t.n_dims - 1 - j];
        TRY(gguf_writer_add_tensor(w, t.name, GGUF_T_F32, (uint32_t)t.n_dims, ne, data,
                                   (size_t)t.n * sizeof(float), err));
        moe_hash_update(hash, data, (size_t)t.n * sizeof(float));
    }
    /* the aux-loss-free selection bias: computation, so the model file has it */
    if (c->moe.bias_update_rate > 0.0f) {
        for (int l = 0; l < c->n_layers; l++) {
            moe_layer *L = moe_model_moe_layer(m, l);
            if (!L) continue;
            const int64_t ne[1] = {c->moe.n_experts};
            char name[48];
            snprintf(name, sizeof name, "blk.%d.exp_probs_b.bias", l);
            TRY(gguf_writer_add_tensor(w, name, GGUF_T_F32, 1, ne, moe_layer_balance_bias(L),
                                       sizeof(float) * (size_t)c->moe.n_experts, err));
            moe_hash_update(hash, moe_layer_balance_bias(L), sizeof(float) * (size_t)c->moe.n_experts);
        }
    }
    return MOE_OK;
}

/* ------------------------------------------------------ versions and keys */

/* moe.* keys other than the moe.model.* / moe.router.* field tables: every
 * key this build writes, reads or knows to be informational. */
static const char *const known_keys[] = {
    "moe.version", "moe.checksum", "moe.layer_is_moe", "moe.tokenizer.pre",
    "moe.expert_selection", "moe.expert_gating_func", "moe.expert_weights_norm", "moe.expert_weights_scale",
    "moe.expert_top_p", "moe.expert_choice_capacity", "moe.expert_group_count", "moe.expert_group_used_count",
    "moe.expert_shared_feed_forward_length",
    /* the hyperparameters of general.architecture = "moe" */
    "moe.context_length", "moe.embedding_length", "moe.block_count", "moe.feed_forward_length",
    "moe.attention.head_count", "moe.attention.head_count_kv", "moe.attention.key_length",
    "moe.attention.value_length", "moe.rope.dimension_count", "moe.rope.freq_base",
    "moe.attention.layer_norm_rms_epsilon", "moe.vocab_size", "moe.expert_count", "moe.expert_used_count",
    "moe.expert_feed_forward_length",
    NULL,
};

static int in_fields(const char *name, const gguf_field *f, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!strcmp(name, f[i].key)) return 1;
    return 0;
}

moe_status model_file_check_keys(const gguf_ctx *g, moe_error *err) {
    const gguf_kv *vk = gguf_find_kv(g, "moe.version");
    if (vk) {
        uint32_t v;
        TRY(gguf_get_u32(g, "moe.version", &v, err));
        if (v > MODEL_FILE_VERSION)
            return moe_err(err, MOE_ERR_UNSUPPORTED, "%s: moe.version = %u: the file is newer than this build, "
                           "which reads moe.version <= %d (update moe)", gguf_name(g), v, MODEL_FILE_VERSION);
    }
    for (size_t i = 0; i < gguf_n_kv(g); i++) {
        const char *key = gguf_kv_at(g, i)->key.s;
        if (strncmp(key, "moe.", 4)) continue;
        int ok = 0;
        for (int j = 0; known_keys[j] && !ok; j++) ok = !strcmp(key, known_keys[j]);
        if (!ok && !strncmp(key, "moe.model.", 10)) ok = in_fields(key + 10, model_fields, GF_N(model_fields));
        if (!ok && !strncmp(key, "moe.router.", 11)) ok = in_fields(key + 11, router_fields, GF_N(router_fields));
        if (!ok && !strncmp(key, "moe.train.", 10)) ok = 1; /* the training state's (state_file.c reads them) */
        if (!ok)
            return moe_err(err, MOE_ERR_UNSUPPORTED, "%s: unknown key '%s' (moe.version %u): a moe.* key this build "
                           "does not know may change the computation, so the file is refused (update moe)",
                           gguf_name(g), key, vk ? (unsigned)vk->v.u : 0u);
    }
    return MOE_OK;
}

/* An optional u32 key: *out unchanged when absent. */
static moe_status opt_u32(const gguf_ctx *g, const char *key, int *out, moe_error *err) {
    if (!gguf_find_kv(g, key)) return MOE_OK;
    uint32_t v;
    TRY(gguf_get_u32(g, key, &v, err));
    if (v > (1u << 30)) return moe_err(err, MOE_ERR_FORMAT, "%s: %s = %u is out of range", gguf_name(g), key, v);
    *out = (int)v;
    return MOE_OK;
}

moe_status model_file_read_config(const gguf_ctx *g, moe_model_config *c, moe_error *err) {
    int max_batch = c->max_batch, n_threads = c->n_threads;
    TRY(model_file_check_keys(g, err));
    moe_model_config_default(c);
    c->max_batch = max_batch;
    c->n_threads = n_threads;
    if (gguf_find_kv(g, "moe.model.d_model")) {
        TRY(gguf_fields_get(g, "moe.model.", model_fields, GF_N(model_fields), c, err));
        TRY(gguf_fields_get(g, "moe.router.", router_fields, GF_N(router_fields), &c->moe, err));
    } else {
        /* a foreign llama / Mixtral file */
        const char *arch;
        TRY(gguf_get_str(g, "general.architecture", &arch, NULL, err));
        if (strcmp(arch, "llama"))
            return moe_err(err, MOE_ERR_UNSUPPORTED, "%s: architecture '%s': the training model reads 'llama' "
                           "(and Mixtral-layout) files; run other architectures with `moe run`", gguf_name(g), arch);
        int v = 0;
        TRY(opt_u32(g, "llama.embedding_length", &c->d_model, err));
        TRY(opt_u32(g, "llama.block_count", &c->n_layers, err));
        TRY(opt_u32(g, "llama.attention.head_count", &c->n_heads, err));
        c->n_kv_heads = c->n_heads;
        TRY(opt_u32(g, "llama.attention.head_count_kv", &c->n_kv_heads, err));
        TRY(opt_u32(g, "llama.context_length", &c->ctx_len, err));
        if (c->ctx_len > 4096) c->ctx_len = 4096;
        TRY(opt_u32(g, "llama.feed_forward_length", &c->d_ff, err));
        if (gguf_find_kv(g, "llama.rope.freq_base")) TRY(gguf_get_f32(g, "llama.rope.freq_base", &c->rope_theta, err));
        if (gguf_find_kv(g, "llama.attention.layer_norm_rms_epsilon"))
            TRY(gguf_get_f32(g, "llama.attention.layer_norm_rms_epsilon", &c->norm_eps, err));
        const gguf_tensor *emb = gguf_find_tensor(g, "token_embd.weight");
        if (!emb || emb->n_dims != 2)
            return moe_err(err, MOE_ERR_FORMAT, "%s: tensor token_embd.weight is missing or not 2-D", gguf_name(g));
        c->vocab_size = (int)emb->ne[1];
        c->tie_embeddings = gguf_find_tensor(g, "output.weight") == NULL;
        TRY(opt_u32(g, "llama.expert_count", &v, err));
        c->moe_every = v > 0;
        if (v > 0) {
            c->moe.n_experts = v;
            TRY(opt_u32(g, "llama.expert_used_count", &c->moe.top_k, err));
            c->moe.d_ff = c->d_ff;
            c->moe.renormalize = 1;
        }
    }
    /* moe.layer_is_moe must agree with the rule of the configuration */
    const gguf_kv *kv = gguf_find_kv(g, "moe.layer_is_moe");
    if (kv) {
        if (kv->type != GGUF_VT_ARR || kv->arr_type != GGUF_VT_U8 || kv->arr_n != (uint64_t)c->n_layers)
            return moe_err(err, MOE_ERR_FORMAT, "%s: moe.layer_is_moe must be a u8 array of %d entries",
                           gguf_name(g), c->n_layers);
        const uint8_t *mask = kv->arr;
        for (int l = 0; l < c->n_layers; l++)
            if (mask[l] != (uint8_t)moe_model_layer_is_moe(c, l))
                return moe_err(err, MOE_ERR_FORMAT, "%s: moe.layer_is_moe[%d] = %d disagrees with moe.model.moe_every "
                               "= %d, n_dense_first = %d", gguf_name(g), l, mask[l], c->moe_every, c->n_dense_first);
    }
    moe_status st = moe_model_config_check(c, err);
    if (st != MOE_OK) {
        char msg[sizeof err->msg];
        snprintf(msg, sizeof msg, "%s", err ? err->msg : "");
        return moe_err(err, MOE_ERR_FORMAT, "%s: %s", gguf_name(g), msg);
    }
    return MOE_OK;
}

moe_status model_file_check_size(const gguf_ctx *g, const moe_model_config *c, moe_error *err) {
    TRY(moe_model_config_check(c, err));
    moe_model_counts k;
    moe_model_count(c, &k);
    uint64_t have = 0;
    for (size_t i = 0; i < gguf_n_tensors(g); i++) {
        const gguf_tensor *t = gguf_tensor_at(g, i);
        if (t->type == GGUF_T_F32 || t->type == GGUF_T_F16 || t->type == GGUF_T_BF16) have += (uint64_t)t->n_elem;
    }
    /* a model file may leave the noise weights out (model_file_load_tensors) */
    int64_t need = k.params;
    if (c->moe.noisy_gate)
        for (int l = 0; l < c->n_layers; l++)
            if (moe_model_layer_is_moe(c, l)) need -= (int64_t)c->moe.n_experts * c->d_model;
    if (need < 0 || (uint64_t)need > have)
        return moe_err(err, MOE_ERR_FORMAT, "%s: the configuration in the file needs %lld weights, but its F32/F16/BF16 "
                       "tensors hold %llu (a size key is wrong)", gguf_name(g), (long long)need,
                       (unsigned long long)have);
    return MOE_OK;
}

moe_status model_file_load_tensors(const gguf_ctx *g, moe_model *m, moe_error *err) {
    char bad[400] = "";
    size_t used = 0;
    int n_bad = 0;
    for (int i = 0; i < moe_model_n_tensors(m); i++) {
        moe_tensor t;
        moe_model_tensor(m, i, &t, NULL);
        const gguf_tensor *gt = gguf_find_tensor(g, t.name);
        if (!gt && strstr(t.name, "ffn_gate_inp_noise")) {
            /* a model file leaves the noise weights out (inference-free): their init, 0 */
            memset(t.data, 0, sizeof(float) * (size_t)t.held_n);
            continue;
        }
        int ok = gt && (int)gt->n_dims == t.n_dims;
        for (int j = 0; ok && j < t.n_dims; j++) ok = gt->ne[j] == t.shape[t.n_dims - 1 - j];
        if (ok && gt->type != GGUF_T_F32 && gt->type != GGUF_T_F16 && gt->type != GGUF_T_BF16) ok = 0;
        if (!ok) {
            n_bad++;
            if (used < sizeof bad - 80)
                used += (size_t)snprintf(bad + used, sizeof bad - used, "%s%s (%s)", n_bad > 1 ? ", " : "", t.name,
                                         !gt ? "missing" : (gt->type > GGUF_T_F16 && gt->type != GGUF_T_BF16)
                                                               ? "not F32/F16/BF16" : "wrong shape");
            continue;
        }
        /* the rows this process holds (all, except a rank's share of the
           stacked experts: whole rows, since an expert is whole rows) */
        int64_t row = gt->ne[0], r0 = t.held_lo / row, r1 = (t.held_lo + t.held_n) / row;
        size_t rb = quant_row_size((quant_type)gt->type, row);
        for (int64_t r = r0; r < r1; r++)
            TRY(quant_dequantize_row((quant_type)gt->type, (const uint8_t *)gt->data + (size_t)r * rb,
                                     t.data + (r - r0) * row, row, err));
    }
    /* the selection bias (aux-loss-free balancing), F32 [E] per MoE block;
       absent only in files from before moe.version 2 (zeros then) */
    const moe_model_config *c = moe_model_get_config(m);
    for (int l = 0; l < c->n_layers && c->moe.bias_update_rate > 0.0f; l++) {
        moe_layer *L = moe_model_moe_layer(m, l);
        if (!L) continue;
        char name[48];
        snprintf(name, sizeof name, "blk.%d.exp_probs_b.bias", l);
        const gguf_tensor *gt = gguf_find_tensor(g, name);
        float *b = moe_layer_balance_bias(L);
        if (!gt) {
            memset(b, 0, sizeof(float) * (size_t)c->moe.n_experts);
            continue;
        }
        if (gt->type != GGUF_T_F32 || gt->n_dims != 1 || gt->n_elem != c->moe.n_experts) {
            n_bad++;
            if (used < sizeof bad - 80)
                used += (size_t)snprintf(bad + used, sizeof bad - used, "%s%s (not F32 [%d])", n_bad > 1 ? ", " : "",
                                         name, c->moe.n_experts);
            continue;
        }
        memcpy(b, gt->data, sizeof(float) * (size_t)c->moe.n_experts);
    }
    if (n_bad)
        return moe_err(err, MOE_ERR_FORMAT, "%s: %d tensor%s missing or unusable: %s", gguf_name(g), n_bad,
                       n_bad > 1 ? "s" : "", bad);
    return MOE_OK;
}

moe_status model_file_read_tokenizer(const gguf_ctx *g, bpe_tokenizer *tok, moe_error *err) {
    const char *model;
    TRY(gguf_get_str(g, "tokenizer.ggml.model", &model, NULL, err));
    if (strcmp(model, BPE_GGUF_MODEL))
        return moe_err(err, MOE_ERR_UNSUPPORTED, "%s: tokenizer.ggml.model = '%s'; the training tokenizer is '%s'",
                       gguf_name(g), model, BPE_GGUF_MODEL);
    uint64_t nt, nm, ntt;
    const void *toks, *merges, *types;
    TRY(gguf_get_arr_of(g, "tokenizer.ggml.tokens", GGUF_VT_STR, &nt, &toks, err));
    TRY(gguf_get_arr_of(g, "tokenizer.ggml.merges", GGUF_VT_STR, &nm, &merges, err));
    TRY(gguf_get_arr_of(g, "tokenizer.ggml.token_type", GGUF_VT_I32, &ntt, &types, err));
    if (ntt != nt)
        return moe_err(err, MOE_ERR_FORMAT, "%s: tokenizer.ggml.token_type has %llu entries, tokens %llu",
                       gguf_name(g), (unsigned long long)ntt, (unsigned long long)nt);
    int32_t bos = -1, eos = -1;
    uint32_t v;
    if (gguf_find_kv(g, "tokenizer.ggml.bos_token_id")) { TRY(gguf_get_u32(g, "tokenizer.ggml.bos_token_id", &v, err)); bos = (int32_t)v; }
    if (gguf_find_kv(g, "tokenizer.ggml.eos_token_id")) { TRY(gguf_get_u32(g, "tokenizer.ggml.eos_token_id", &v, err)); eos = (int32_t)v; }
    const char **ts = malloc(sizeof(char *) * (nt + nm + 1));
    size_t *tl = malloc(sizeof(size_t) * (nt + nm + 1));
    if (!ts || !tl) { free(ts); free(tl); return moe_err(err, MOE_ERR_NOMEM, "tokenizer: out of memory"); }
    const gguf_str *a = toks, *b = merges;
    for (uint64_t i = 0; i < nt; i++) { ts[i] = a[i].s; tl[i] = a[i].n; }
    for (uint64_t i = 0; i < nm; i++) { ts[nt + i] = b[i].s; tl[nt + i] = b[i].n; }
    moe_status st = bpe_import_gguf(tok, ts, tl, types, nt, ts + nt, tl + nt, nm, bos, eos, err);
    free(ts);
    free(tl);
    return st;
}


int model_file_config_diff(const moe_model_config *a, const moe_model_config *b, char *buf, size_t cap) {
    if (gguf_fields_diff("", model_fields, GF_N(model_fields), a, b, buf, cap)) return 1;
    return n_moe_layers(a) &&
           gguf_fields_diff("router.", router_fields, GF_N(router_fields), &a->moe, &b->moe, buf, cap);
}

/* ------------------------------------------------------------- model files */

moe_status moe_model_save(moe_model *m, const moe_tokenizer *tok, const char *path, moe_error *err) {
    return model_file_save(m, tok ? &tok->bpe : NULL, NULL, path, err);
}

moe_status model_file_save(moe_model *m, const bpe_tokenizer *tok, float *const *whole, const char *path,
                           moe_error *err) {
    gguf_writer *w;
    TRY(gguf_writer_create(&w, err));
    moe_hash h;
    moe_hash_init(&h);
    moe_status st = model_file_add(w, m, tok, 0, whole, &h, err);
    if (st == MOE_OK) st = gguf_writer_set_u64(w, "moe.checksum", moe_hash_final(&h), err);
    if (st == MOE_OK) st = gguf_writer_write(w, path, err);
    gguf_writer_free(w);
    return st;
}

moe_status moe_model_load(moe_model **out, moe_tokenizer **tok_out, const char *path, int max_batch, int n_threads,
                          moe_error *err) {
    if (!out || !path) return moe_err(err, MOE_ERR_ARG, "moe_model_load: %s is NULL", out ? "path" : "out");
    *out = NULL;
    if (tok_out) *tok_out = NULL;
    gguf_ctx *g;
    TRY(gguf_open_file(&g, path, err));
    moe_model_config c;
    c.max_batch = max_batch > 0 ? max_batch : 1;
    c.n_threads = n_threads;
    moe_model *m = NULL;
    moe_tokenizer *tok = NULL;
    moe_status st = model_file_verify_checksum(g, err);
    if (st == MOE_OK) st = model_file_read_config(g, &c, err);
    if (st == MOE_OK) st = model_file_check_size(g, &c, err);
    if (st == MOE_OK) st = moe_model_create(&m, &c, err);
    if (st == MOE_OK) st = model_file_load_tensors(g, m, err);
    if (st == MOE_OK && tok_out) {
        tok = calloc(1, sizeof *tok);
        if (!tok) st = moe_err(err, MOE_ERR_NOMEM, "tokenizer: out of memory");
        else st = model_file_read_tokenizer(g, &tok->bpe, err);
        if (st != MOE_OK) { free(tok); tok = NULL; }
    }
    gguf_close(g);
    if (st != MOE_OK) {
        moe_model_free(m);
        return st;
    }
    *out = m;
    if (tok_out) *tok_out = tok;
    return MOE_OK;
}
