/* moe_infer.h: the public C API of libmoe for running models: GGUF files
 * (ours and real MoE checkpoints: Mixtral, Qwen-MoE, OLMoE, DeepSeek-MoE,
 * Granite-MoE, dense llama), quantized weights, KV cache, tokenizers from the
 * GGUF metadata, sampling, chat templates.
 *
 * What is not here: training (moe.h). Conventions as in moe.h: status codes,
 * messages in a moe_error, no globals, never exits or prints.
 */
#ifndef MOE_INFER_H
#define MOE_INFER_H

#include <stdio.h>

#include "moe.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------ tokenizer */

typedef struct moe_vocab moe_vocab; /* a tokenizer read from GGUF metadata */

/* Reads tokenizer.ggml.* from a GGUF file ("llama" SentencePiece style or
 * "gpt2" byte-level BPE with its .pre pattern). */
moe_status moe_vocab_load(moe_vocab **out, const char *gguf_path, moe_error *err);
void moe_vocab_free(moe_vocab *v);
int moe_vocab_size(const moe_vocab *v);
int moe_vocab_bos(const moe_vocab *v); /* -1 when none */
int moe_vocab_eos(const moe_vocab *v); /* -1 when none */
/* 1 if id ends generation (EOS, <|im_end|>, <|eot_id|>, ...). */
int moe_vocab_is_eog(const moe_vocab *v, int id);
/* Encodes text[0, n). add_bos: prepend BOS when the model asks for it
 * (tokenizer.ggml.add_bos_token, or the family's default). parse_special:
 * text of control tokens ("<|im_start|>", "[INST]") becomes those tokens.
 * Writes at most cap ids, *n_out gets the full count; MOE_ERR_SHAPE when
 * more than cap. */
moe_status moe_vocab_encode(const moe_vocab *v, const char *text, size_t n,
                            int add_bos, int parse_special, int32_t *out,
                            size_t cap, size_t *n_out, moe_error *err);
/* The bytes a token contributes to the output text (SentencePiece's U+2581
 * becomes a space, byte tokens <0xNN> their byte, gpt2's byte map undone;
 * control tokens give "" unless with_special). *len gets the length. */
const char *moe_vocab_piece(const moe_vocab *v, int id, int with_special,
                            char *buf, size_t cap, size_t *len);

/* Chat templates: "chatml", "mistral" ([INST]), "llama3", "deepseek",
 * "granite" ... moe_chat_template_for picks one from the GGUF metadata
 * (tokenizer.chat_template text, else the architecture). */
typedef struct moe_chat_msg {
    const char *role;    /* "system", "user", "assistant" */
    const char *content;
} moe_chat_msg;
const char *moe_chat_template_for(const char *gguf_path); /* never NULL */
/* Renders msgs[0, n) ending with the opening of the assistant's turn when
 * add_assistant. Writes at most cap bytes (NUL-terminated), *len gets the
 * full length; MOE_ERR_SHAPE when it does not fit, MOE_ERR_ARG for an
 * unknown template name. */
moe_status moe_chat_render(const char *tmpl, const moe_chat_msg *msgs, int n,
                           int add_assistant, char *out, size_t cap,
                           size_t *len, moe_error *err);

/* -------------------------------------------------------------- sampler */

typedef struct moe_sampler_config {
    float temperature;    /* 0: greedy (argmax) */
    int top_k;            /* 0: off */
    float top_p;          /* 1: off */
    float min_p;          /* 0: off */
    float repeat_penalty; /* 1: off; divides positive logits of recent tokens,
                             multiplies negative ones (CTRL / llama.cpp) */
    int repeat_last_n;    /* how many recent tokens count (default 64) */
    uint64_t seed;
} moe_sampler_config;

typedef struct moe_sampler moe_sampler;
void moe_sampler_config_default(moe_sampler_config *c); /* temp 0.8, top_k 40, top_p 0.95, min_p 0.05, penalty 1.0 (off), last_n 64, seed 1 */
moe_status moe_sampler_create(moe_sampler **out, const moe_sampler_config *c, int n_vocab, moe_error *err);
void moe_sampler_free(moe_sampler *s);
/* Picks the next token from logits[n_vocab] (the array may be modified);
 * history[0, n_hist) are the tokens so far (for the repetition penalty).
 * Deterministic for a given seed and sequence of calls. */
int moe_sampler_sample(moe_sampler *s, float *logits, const int32_t *history, int n_hist);

/* --------------------------------------------------------------- engine */

typedef struct moe_infer moe_infer; /* a loaded model with its KV cache */

typedef struct moe_infer_options {
    int n_threads;         /* <= 0: the OpenMP default */
    int ctx_len;           /* KV cache length; 0: min(model's, 4096) */
    int experts_per_token; /* 0: the model's k; else overrides it (1..E) */
    int max_batch;         /* tokens per eval call at most (prompt chunk); 0: 512 */
} moe_infer_options;

typedef struct moe_infer_info {
    char arch[32];          /* general.architecture */
    char name[128];         /* general.name or "" (control characters
                               written as \xNN) */
    int n_layers, d_model, n_heads, n_kv_heads, head_dim, vocab_size, ctx_len;
    int n_experts, top_k;   /* 0, 0 for a dense model */
    int n_dense_layers;     /* layers with a dense feed-forward block */
    int64_t params_total;   /* every weight */
    int64_t params_active;  /* weights one token uses: k of the E experts of
                               each MoE layer, and one row of the token
                               embedding (all of it when the output matrix
                               is tied to it) */
    int64_t bytes_total;    /* bytes of all weight tensors in the file */
    int64_t bytes_active;   /* bytes of weights read per generated token */
} moe_infer_info;

void moe_infer_options_default(moe_infer_options *o);
/* Maps the GGUF file and checks every tensor the architecture needs; a
 * missing or misshaped tensor is an error listing all that are missing. */
moe_status moe_infer_open(moe_infer **out, const char *path,
                          const moe_infer_options *opt, moe_error *err);
void moe_infer_close(moe_infer *m);
const moe_infer_info *moe_infer_get_info(const moe_infer *m);
const moe_vocab *moe_infer_vocab(const moe_infer *m);

/* Runs tokens[0, n) at positions pos .. pos+n-1 (the cache must hold
 * positions 0 .. pos-1 from earlier calls), appending to the KV cache. A pos
 * before the end of the cache discards the cached positions pos and later
 * (so a shared prefix is kept and the rest re-evaluated); a pos beyond the
 * cached positions is refused (MOE_ERR_ARG). The
 * n tokens are processed as one batch (each expert's tokens grouped), in
 * chunks of max_batch. logits: NULL, or [n, V] (all_logits = 1) or [V] (the
 * last token's only). Errors: pos + n > ctx_len, a token id out of range. */
moe_status moe_infer_eval(moe_infer *m, const int32_t *tokens, int n, int pos,
                          float *logits, int all_logits, moe_error *err);
/* Empties the KV cache and the expert statistics. */
void moe_infer_reset(moe_infer *m);
moe_status moe_infer_set_top_k(moe_infer *m, int k, moe_error *err);

/* Tokens routed to each expert since the last reset: counts[l * E + e]
 * for MoE layer l (dense layers give zeros). */
const int64_t *moe_infer_expert_counts(const moe_infer *m);

/* ------------------------------------------------------ GGUF listing */

/* Writes a readable listing of a GGUF file to out: the header (version,
 * alignment, sizes), every metadata key with its type and value (strings
 * cut at 80 bytes, arrays summarised as type, count and the first few
 * elements), then the tensor table (name, type, dims innermost first,
 * bytes, offset) and the totals. Control characters of keys, names and
 * strings are written as escapes (\xNN, \n ...), so a file cannot send
 * terminal escape sequences through the listing. Fails, writing nothing, when the file is
 * missing or not a valid GGUF file (the message names it). */
moe_status moe_gguf_dump(const char *path, FILE *out, moe_error *err);

/* ----------------------------------------------------- synthetic models */

/* A random model written as a GGUF file in llama.cpp's layout, with a small
 * byte-level BPE tokenizer, for trying the engine and for the benchmarks
 * without a download. Weights are random (scaled so that every layer's
 * output stays O(1)); the same config and seed give the same weights in
 * every weight type. */
typedef struct moe_synth_config {
    const char *arch;  /* "llama" (dense), "mixtral", "qwen2moe", "qwen3moe",
                          "olmoe", "deepseek", "granitemoe" */
    const char *wtype; /* type of the big matrices (any case): "f32", "f16",
                          "bf16", "q4_0", "q4_1", "q5_0", "q5_1", "q8_0",
                          "q2_K", "q3_K", "q4_K", "q5_K", "q6_K"; NULL: f32 */
    int bench;         /* 0: a tiny model (2 layers, d 64, 4 experts top 2,
                          vocab 320; widths x4 for the K types); 1: the
                          ~1e9-weight benchmark model (d 2048, 8 experts of
                          1024 top 2, vocab 32000, layers for ~1e9) */
    int d_model;       /* 0: the preset's; else heads keep their count and
                          head_dim follows (d_model / n_heads) */
    int n_layers;      /* 0: the preset's */
    int n_experts;     /* 0: the preset's (must stay 0 for llama) */
    int top_k;         /* 0: the preset's (capped at n_experts) */
    int d_ff;          /* expert hidden size (llama: the FFN's); 0: preset */
    uint64_t seed;     /* 0: 1 */
} moe_synth_config;

void moe_synth_config_default(moe_synth_config *c); /* mixtral, f32, tiny, seed 1 */
/* Writes the model to path atomically. *params_total (may be NULL) gets
 * the number of weights. Errors: an unknown arch or type, widths the type's
 * block size does not divide, out of memory, I/O. */
moe_status moe_synth_model(const char *path, const moe_synth_config *c,
                           int64_t *params_total, moe_error *err);

/* ------------------------------------------------------------ convert */

/* Converts a Hugging Face model folder (config.json, safetensors weights,
 * tokenizer.json; model_type llama, mistral, mixtral, qwen2_moe, qwen3_moe,
 * olmoe, deepseek, granitemoe) into a GGUF file that moe_infer_open runs,
 * in llama.cpp's tensor names and keys. type: "f32", "f16", "bf16",
 * "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q2_k", "q3_k", "q4_k", "q5_k",
 * "q6_k" (any case; NULL: "f16") for the matrices; norms, routers and
 * biases stay F32; a matrix whose rows do not fit the type's blocks is
 * written as q8_0 or f16. The file is written atomically (on failure an
 * existing file is untouched). On MOE_OK, err->msg (err may be NULL) holds
 * notes for the user, one per line, or "": type fallbacks, ignored
 * settings, unused tensors. Errors name the file, key or tensor. */
moe_status moe_convert_hf(const char *dir, const char *out_path, const char *type,
                          moe_error *err);

#ifdef __cplusplus
}
#endif
#endif /* MOE_INFER_H */
