/* arch.h: what a GGUF model file means, per architecture (internal).
 *
 * For: reading the hyperparameters of a model from its GGUF metadata keys and
 * finding every weight tensor the architecture needs, checked for presence,
 * shape and type, as llama.cpp loads the same files: `llama` (dense, and
 * Mixtral = llama with experts; plus our `moe.layer_is_moe` mixed layouts),
 * `qwen2moe`, `qwen3moe`, `olmoe`, `deepseek` (v1 DeepSeek-MoE) and
 * `granitemoe`. Weights stay in the mapping (arch_mat points into it); only
 * the 1-D tensors (norms, biases) that are not f32 get an f32 copy.
 * Not for: running anything (forward.c, moe_ffn.c) or owning the file
 * (engine.c).
 *
 * Semantics per architecture (from llama.cpp's loader and graph code):
 *   arch        rope     expert weights   q/k norm          shared expert
 *   llama       pairs    renormalised     -                 if {arch}.expert_shared_feed_forward_length
 *   qwen2moe    neox     raw softmax      -                 always, sigmoid-gated (ffn_gate_inp_shexp)
 *   qwen3moe    neox     renormalised     per head [hd]     -
 *   olmoe       neox     raw softmax      whole row [H*hd]  -
 *   deepseek    pairs    raw softmax      -                 expert_shared_count x expert width, ungated
 *   granitemoe  pairs    renormalised     -                 if expert_shared_feed_forward_length
 *   moe         pairs    expert_weights_norm -              if expert_shared_feed_forward_length,
 *                                                              gated when ffn_gate_inp_shexp is there
 * "pairs" rotates (x[2i], x[2i+1]), "neox" (x[i], x[i + n_rot/2]). Every
 * architecture: softmax over all E router logits (or sigmoid when
 * {arch}.expert_gating_func = 2), top k (ties to the lower index), weights
 * gathered from the probabilities, renormalised per the table unless
 * {arch}.expert_weights_norm says otherwise, times {arch}.expert_weights_scale
 * when that is neither 0 nor 1. Optional everywhere: q/k/v/output biases,
 * an untied output head (absent: token_embd), rope_freqs.weight, a selection
 * bias blk.N.exp_probs_b.bias, expert groups (expert_group_count: E/G
 * experts each, a group scored by the sum of its two best selection scores,
 * the best expert_group_used_count groups kept, as llama.cpp's deepseek2).
 * "moe" (written by `moe train` only when llama.cpp's llama would compute
 * something else; src/model/model_file.h) adds moe.expert_selection
 * (top_k, top_p, hash, relu, expert_choice), moe.expert_top_p,
 * moe.expert_choice_capacity, moe.layer_is_moe; hash routing has no router
 * tensor and weights 1/k; ReLU and expert choice weigh by the score alone
 * (no renormalisation), times the scale. Granite: inputs times embedding_scale, each
 * branch times residual_scale before its residual add, logits divided by
 * logit_scale, attention scale from attention.scale.
 */
#ifndef MOE_INFER_ARCH_H
#define MOE_INFER_ARCH_H

#include <stddef.h>
#include <stdint.h>

#include "io/gguf.h"
#include "moe.h"
#include "quant/quant.h"

typedef enum arch_kind {
    ARCH_LLAMA = 0,
    ARCH_QWEN2MOE,
    ARCH_QWEN3MOE,
    ARCH_OLMOE,
    ARCH_DEEPSEEK,
    ARCH_GRANITEMOE,
    ARCH_MOE,          /* "moe": models from `moe train` whose routing no other tool has */
    ARCH_COUNT
} arch_kind;

/* A weight matrix [rows, cols] (GGUF dims {cols, rows}), or n_mat of them
 * stacked (GGUF {cols, rows, n_mat}: the experts), inside the mapping.
 * data == NULL: the tensor is absent (an optional one). */
typedef struct arch_mat {
    const uint8_t *data;
    quant_type type;
    int64_t rows, cols;
    int64_t n_mat;     /* 1, or E */
    size_t row_bytes;  /* quant_row_size(type, cols) */
    size_t mat_bytes;  /* rows * row_bytes: one matrix of the stack */
} arch_mat;

/* One block. Vectors are f32 (into the mapping or an owned copy); NULL when
 * an optional one is absent. */
typedef struct arch_layer {
    const float *attn_norm;          /* [d] */
    arch_mat wq, wk, wv, wo;         /* [H*hd, d], [Hkv*hd, d] x2, [d, H*hd] */
    const float *bq, *bk, *bv, *bo;  /* [H*hd], [Hkv*hd] x2, [d] */
    const float *q_norm, *k_norm;    /* [hd] per head, or [H*hd] / [Hkv*hd] */
    int qk_norm_whole;               /* 1: q/k norms over the whole row (olmoe) */
    const float *ffn_norm;           /* [d] */
    int is_moe;
    /* dense feed-forward (is_moe == 0) */
    int n_ff;                        /* its width */
    arch_mat ffn_gate, ffn_up, ffn_down;  /* [ff, d], [ff, d], [d, ff] */
    const float *ffn_gate_b, *ffn_up_b, *ffn_down_b; /* [ff], [ff], [d] */
    /* MoE (is_moe == 1) */
    arch_mat gate_inp;               /* [E, d] router */
    const float *exp_probs_b;        /* [E] selection bias (optional) */
    arch_mat gate_exps, up_exps;     /* E x [ff_exp, d] */
    arch_mat down_exps;              /* E x [d, ff_exp] */
    arch_mat gate_shexp, up_shexp;   /* [ff_sh, d]; data NULL: no shared expert */
    arch_mat down_shexp;             /* [d, ff_sh] */
    const float *gate_inp_shexp;     /* [d] sigmoid gate of the shared expert (qwen2moe) */
} arch_layer;

/* How a MoE block picks its experts (moe.expert_selection; every other
 * architecture is ARCH_SEL_TOPK). */
typedef enum arch_select {
    ARCH_SEL_TOPK = 0,   /* the k best of score (+ bias), inside the kept groups */
    ARCH_SEL_TOPP,       /* by score descending until the sum reaches top_p, at most k */
    ARCH_SEL_HASH,       /* e_j = (splitmix64(token id) + j) mod E, w = 1/k; no router */
    ARCH_SEL_RELU,       /* every expert with w = relu(z) > 0 */
    ARCH_SEL_EC,         /* expert choice over the evaluated chunk */
} arch_select;

typedef struct arch_hparams {
    arch_kind kind;
    int n_layers, d_model, n_heads, n_kv_heads, head_dim, n_rot;
    int vocab_size, ctx_train;       /* ctx_train: 0 when the file does not say */
    float rms_eps;
    int rope_neox;                   /* 1: half-split pairs */
    int use_rope;                    /* 0 only for granite with rope.scaling.finetuned = false */
    float rope_base, rope_freq_scale;
    float attn_scale;                /* q.k multiplier: 1/sqrt(hd) unless attention.scale */
    float embd_scale, resid_scale, logit_scale; /* 1 when unused */
    int n_experts, top_k;            /* 0, 0: dense */
    int n_ff_exp, n_ff_shexp;        /* expert width; shared width (0: none) */
    int n_ff_max;                    /* widest feed-forward of any kind */
    int n_dense_layers;
    int gating_sigmoid;              /* 0: softmax */
    int norm_w;                      /* renormalise the k weights */
    float w_scale;                   /* applied when != 0 and != 1 */
    arch_select select;
    float top_p;                     /* ARCH_SEL_TOPP */
    float ec_capacity;               /* ARCH_SEL_EC: each expert takes min(n, ceil(c n / E)) */
    int n_groups, topk_groups;       /* expert groups (0: none) */
} arch_hparams;

typedef struct arch_model {
    arch_hparams hp;
    arch_mat token_embd;             /* [V, d] */
    arch_mat output;                 /* [V, d]; == token_embd when tied */
    int output_tied;
    const float *output_norm;        /* [d] */
    const float *rope_freqs;         /* [n_rot/2] frequency divisors, or NULL */
    arch_layer *layers;              /* [n_layers] */
    float **owned;                   /* f32 copies of non-f32 vectors */
    int n_owned, cap_owned;
    int64_t params_total, bytes_total; /* every tensor of the file */
} arch_model;

/* "llama" ... "granitemoe", "moe"; NULL outside the enum. */
const char *arch_name(arch_kind k);

/* Which tools run the file: "moe, llama.cpp (arch llama)" or "moe only
 * (hash routing, ...)" into buf. */
void arch_runs_in(const arch_model *m, char *buf, size_t cap);

/* Reads the hyperparameters and finds every tensor of the file's
 * architecture. A missing key or an unsupported value: MOE_ERR_FORMAT /
 * MOE_ERR_UNSUPPORTED naming the key. Missing or misshaped tensors: one
 * MOE_ERR_FORMAT listing them all (names; found vs expected dims). An unknown
 * general.architecture: MOE_ERR_UNSUPPORTED listing the supported ones. On
 * failure *m holds nothing to free (arch_free is still safe). */
moe_status arch_load(arch_model *m, const gguf_ctx *g, moe_error *err);
void arch_free(arch_model *m);

/* Weights one token uses and bytes read per generated token, with k experts
 * per token: every tensor except the unused E-k experts of each MoE layer and
 * the embedding table beyond one row (unless the output head is tied to it,
 * which reads the whole table). */
void arch_active(const arch_model *m, int k, int64_t *params_active,
                 int64_t *bytes_active);

/* Row r of matrix i of a stack. */
static inline const uint8_t *arch_row(const arch_mat *w, int64_t i, int64_t r) {
    return w->data + (size_t)i * w->mat_bytes + (size_t)r * w->row_bytes;
}

#endif
