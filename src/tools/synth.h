/* synth.h: random models of every supported architecture, written as GGUF
 * files in llama.cpp's layout (internal).
 *
 * For: tests and benchmarks of the inference engine without downloading a
 * checkpoint: a tiny model of each family (a few hundred kB, every tensor and
 * metadata key that family's GGUF files carry) or a ~1B-parameter one, its big
 * matrices in any weight type, random weights with scales that keep every
 * layer's output O(1), optionally a byte-level "gpt2" tokenizer so the CLI can
 * run on it. The same spec and seed give the same weights whatever the weight
 * type, so a Q4_K file and an F32 file of the same model differ only by the
 * rounding of the weights (store_dequantized, or synth_dequantize of the
 * quantized file, gives exactly that F32 twin).
 * Not for: real training, reading GGUF (src/io/gguf.h), running models.
 *
 * Families (P. = the general.architecture prefix; dims innermost first;
 * d = d_model, hd = head_dim, q = n_heads*hd, kv = n_kv_heads*hd, f = d_ff,
 * E = n_experts). Rope and expert weighting as llama.cpp applies them
 * (build_moe_ffn's norm_w; each matches the Hugging Face model):
 *
 *  family      general.arch  rope  expert weights
 *  llama       llama         NORM  - (dense)
 *  mixtral     llama         NORM  softmax over E, top k, renormalised to sum 1
 *  qwen2moe    qwen2moe      NEOX  softmax, top k, not renormalised
 *  qwen3moe    qwen3moe      NEOX  softmax, top k, renormalised
 *  olmoe       olmoe         NEOX  softmax, top k, not renormalised
 *  deepseek    deepseek      NORM  softmax, top k, not renormalised (expert_weights_scale
 *                                  = 1 is written; llama.cpp does not apply it to v1)
 *  granitemoe  granitemoe    NORM  softmax, top k, renormalised (HF: softmax of the
 *                                  top-k logits, the same)
 * An expert (and a shared expert, a dense FFN) is down(silu(gate x) * up x).
 *
 * Per family, beyond the common tensors and keys below:
 *  llama:      blk.L.ffn_{gate,up} {d,f}, ffn_down {f,d}; P.feed_forward_length = f
 *  mixtral:    blk.L.ffn_gate_inp {d,E} (router), ffn_{gate,up}_exps {d,f,E},
 *              ffn_down_exps {f,d,E}; P.feed_forward_length = f (the expert width)
 *  qwen2moe:   experts as mixtral; attn_q.bias {q}, attn_k.bias {kv}, attn_v.bias {kv};
 *              a shared expert ffn_{gate,up}_shexp {d,fs}, ffn_down_shexp {fs,d}, added
 *              times sigmoid(ffn_gate_inp_shexp . x) with ffn_gate_inp_shexp {d} (a
 *              vector); P.expert_feed_forward_length = f,
 *              P.expert_shared_feed_forward_length = P.feed_forward_length = fs
 *  qwen3moe:   experts; attn_q_norm, attn_k_norm {hd}: RMSNorm of each head of q and k
 *              before RoPE; P.expert_feed_forward_length = f, P.attention.key_length =
 *              value_length = hd (q may differ from d); output tied by default
 *  olmoe:      experts; attn_q_norm {q}, attn_k_norm {kv}: RMSNorm over the whole q / k
 *              projection before the head split (llama.cpp reads both as {d}, so
 *              n_kv_heads = n_heads and q = d); P.feed_forward_length = f
 *  deepseek:   layers L < n_dense_first dense (ffn_{gate,up} {d,fd}, ffn_down {fd,d}),
 *              the others experts plus n_shared always-on shared experts fused into one
 *              ffn_{gate,up}_shexp {d, n_shared*f}, ffn_down_shexp {n_shared*f, d}, no
 *              gate; P.leading_dense_block_count, P.feed_forward_length = fd,
 *              P.expert_feed_forward_length = f, P.expert_shared_count,
 *              P.expert_weights_scale
 *  granitemoe: experts; P.embedding_scale (x = embd * s), P.residual_scale (x += s *
 *              attn and x += s * ffn), P.attention.scale (replaces 1/sqrt(hd)),
 *              P.logit_scale (logits = out / s); P.feed_forward_length = f; output
 *              tied by default
 *
 * Every architecture: token_embd {d,V} F32, output_norm {d}, output {d,V}
 * (absent when tied_output: the embedding is reused), per layer attn_norm {d},
 * attn_q {d,q}, attn_k {d,kv}, attn_v {d,kv}, attn_output {q,d}, ffn_norm
 * {d}; RMSNorm x / sqrt(mean(x^2) + eps) * w with eps =
 * P.attention.layer_norm_rms_epsilon; attention softmax(q k^T * scale +
 * causal mask) v with scale 1/sqrt(hd) (granitemoe: attention.scale), GQA
 * query head h reading kv head h / (n_heads / n_kv_heads). Keys also written:
 * P.context_length, P.embedding_length, P.block_count, P.attention.head_count,
 * P.attention.head_count_kv, P.rope.dimension_count = hd, P.rope.freq_base,
 * P.vocab_size, P.expert_count, P.expert_used_count (MoE), general.name,
 * general.file_type, general.quantization_version (quantized files).
 *
 * RoPE with theta_i = pos * base^(-2i/hd), i < hd/2: NORM rotates the
 * adjacent pairs (x[2i], x[2i+1]); NEOX rotates (x[i], x[i + hd/2]). The NORM
 * families' GGUF converters permute the rows of attn_q/attn_k of each head
 * (Hugging Face row c*hd/2 + i becomes GGUF row 2i + c) so that NORM on GGUF
 * weights equals Hugging Face's rotate_half on its own weights; random
 * weights need no permutation, but a reference that uses rotate_half must
 * undo it.
 *
 * Types: norms, biases, routers (ffn_gate_inp, ffn_gate_inp_shexp) and the
 * token embedding are F32; every other matrix (attention, experts, shared
 * experts, dense FFN, output) is in wtype, whose block size must divide its
 * input width (32: d, q, f, fs, fd for Q4_0..Q8_0; 256 for the K types).
 *
 * Weights: matrices N(0, 1/fan_in) (fan_in = ne[0]; so q, k, v, expert
 * outputs and logits are O(1)), routers N(0, 4/d) (router logits of std 2,
 * so top-k choices have clear margins), norm weights 1 + 0.2 N(0,1), biases
 * 0.2 N(0,1), the embedding N(0, 1/d). Row r of tensor t is drawn from its
 * own stream seeded by (seed, t's name, r), so values do not depend on the
 * type, the thread count or the other tensors.
 *
 * Tokenizer (with_tokenizer): tokenizer.ggml.model = "gpt2", .pre = "gpt-2"
 * (the name llama.cpp knows) and moe.tokenizer.pre = "gpt2" (moe's rules), the 256
 * byte tokens, merges learned by bpe_train on a fixed built-in English text,
 * <|bos|> and <|eos|> (control), then "<|unused_N|>" tokens (type 5) up to
 * vocab_size; bos/eos ids and add_bos_token = true. Needs vocab_size >= 258.
 *
 * Memory: the writer takes pointers, so the whole file is held once in
 * memory (1x the file size) while it is written; a row in float per thread
 * besides.
 */
#ifndef MOE_TOOLS_SYNTH_H
#define MOE_TOOLS_SYNTH_H

#include <stddef.h>
#include <stdint.h>

#include "io/gguf.h"
#include "moe.h"

typedef struct synth_spec {
    const char *arch;      /* "llama" (dense), "mixtral", "qwen2moe", "qwen3moe",
                              "olmoe", "deepseek", "granitemoe" */
    const char *name;      /* general.name; NULL: "synth-<arch>" */
    int n_layers;
    int d_model;
    int n_heads;
    int n_kv_heads;        /* divides n_heads */
    int head_dim;          /* even; q width = n_heads * head_dim */
    int d_ff;              /* expert hidden size (llama: the dense FFN's) */
    int d_ff_dense;        /* deepseek: leading dense layers' hidden size;
                              qwen3moe: written as feed_forward_length only */
    int n_experts;         /* 0 for llama */
    int top_k;             /* experts per token, 1..n_experts */
    int d_ff_shared;       /* qwen2moe: shared expert hidden size */
    int n_shared;          /* deepseek: expert_shared_count (>= 1) */
    int n_dense_first;     /* deepseek: leading_dense_block_count (< n_layers) */
    int vocab_size;
    int ctx_len;           /* P.context_length */
    int tied_output;       /* 1: no output.weight (the embedding is reused) */
    float rope_base;
    float rms_eps;
    float embedding_scale; /* granitemoe only */
    float residual_scale;  /* granitemoe only */
    float attention_scale; /* granitemoe only */
    float logit_scale;     /* granitemoe only */
    uint32_t wtype;        /* GGUF type of the big matrices: F32, F16, BF16,
                              Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K .. Q6_K */
    int store_dequantized; /* 1: round the big matrices through wtype but
                              store the dequantized values as F32 */
    uint64_t seed;
    int with_tokenizer;
    moe_progress_fn progress; /* tensors filled of all (NULL: none) */
    void *progress_user;
} synth_spec;

/* A tiny model of arch (NULL or unknown: "mixtral"): 2 layers (deepseek 3,
 * the first dense), d 64, 4 heads of 16, 2 kv heads (olmoe 4), 4 experts,
 * top 2, d_ff 64, vocab 320, ctx 256, F32, seed 1, with tokenizer; family
 * values for the rest (qwen3moe heads of 32, granitemoe scales, ...). Every
 * width is a multiple of 64, so the Q*_0/Q*_1 types fit as they are and
 * synth_spec_scale_dims(s, 4) makes them multiples of 256 for the K types. */
void synth_spec_default(synth_spec *s, const char *arch);

/* Multiplies every width (d_model, head_dim, d_ff, d_ff_dense, d_ff_shared)
 * by mult: synth_spec_scale_dims(s, 4) makes the default K-quant ready
 * (d 256, d_ff 256, heads of 64). */
void synth_spec_scale_dims(synth_spec *s, int mult);

/* A benchmark-sized model of arch, ~1e9 weights: d 2048, 16 heads of 128,
 * 4 kv heads (olmoe 16), 8 experts of 1024 top 2 (qwen2moe: 16 of 512 top 4
 * plus a shared 2048; deepseek: 16 of 512 top 4, 2 shared, first layer dense
 * 4096; llama: dense 5632), vocab 32000, ctx 4096, Q4_K; n_layers chosen for
 * ~1e9 weights in all. */
void synth_spec_bench(synth_spec *s, const char *arch);

/* Weights in the file (every element of every tensor) and weights one token
 * reads (total minus the embedding rows but one and minus the E - k
 * unselected experts of each MoE layer). Either pointer may be NULL.
 * Fails like synth_write on an invalid spec. */
moe_status synth_count(const synth_spec *s, int64_t *total, int64_t *active,
                       moe_error *err);

/* Writes the model to path (atomically). Errors: an invalid spec
 * (MOE_ERR_ARG / MOE_ERR_SHAPE naming the field or tensor), out of memory,
 * I/O. */
moe_status synth_write(const synth_spec *s, const char *path, moe_error *err);

/* The same file image in a new malloc'd buffer (*buf, freed by the caller). */
moe_status synth_write_mem(const synth_spec *s, void **buf, size_t *size,
                           moe_error *err);

/* ------------------------------------------- rewriting existing images */

/* The image buf[0, size) with every tensor whose type is not F32 (F16, BF16,
 * the block types) stored as its dequantized F32 values, keys and order
 * unchanged except general.file_type = 0 and no quantization_version: the
 * F32 twin that the quantized-type tests run the engine on. *out is a new
 * malloc'd buffer. Errors: an invalid image (the reader's message), a type
 * without a dequantizer (the IQ types), out of memory. */
moe_status synth_dequantize(const void *buf, size_t size, void **out, size_t *out_size,
                            moe_error *err);

/* Copies one metadata entry of a read file into a writer (any value type;
 * string arrays must not hold NUL bytes). For building variants of a file. */
moe_status synth_copy_kv(gguf_writer *w, const gguf_kv *kv, moe_error *err);

#endif /* MOE_TOOLS_SYNTH_H */
