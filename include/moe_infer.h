/* moe_infer.h: the public C API of libmoe for running models: GGUF files
 * (ours and real MoE checkpoints: Mixtral, Qwen-MoE, OLMoE, DeepSeek-MoE,
 * Granite-MoE, dense llama), quantized weights, KV cache, tokenizers from the
 * GGUF metadata, sampling, chat templates.
 *
 * Contents, in this order: tokenizer (moe_vocab_*), chat templates
 * (moe_chat_*), sampler (moe_sampler_*), engine (moe_infer_*), GGUF listing
 * (moe_gguf_dump), synthetic models (moe_synth_*), conversion from Hugging
 * Face (moe_convert_hf).
 *
 * What is not here: training (moe.h). Conventions as in moe.h: status codes,
 * a moe_error *err last in every fallible call, no globals, never exits or
 * prints. Threads: a moe_infer or moe_sampler handle is used by one thread
 * at a time (eval, reset, set_top_k and sample change it); a moe_vocab is
 * read-only once loaded, so moe_vocab_* may run on several threads at once,
 * also on moe_infer_vocab(m) while m is not closed. Aliasing: moe_vocab_encode
 * refuses out overlapping text, moe_infer_eval logits overlapping tokens
 * (MOE_ERR_ARG); moe_sampler_sample's history must not overlap logits.
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
MOE_API moe_status moe_vocab_load(moe_vocab **out, const char *gguf_path, moe_error *err);
MOE_API void moe_vocab_free(moe_vocab *v);
MOE_API int moe_vocab_size(const moe_vocab *v);
MOE_API int moe_vocab_bos(const moe_vocab *v); /* -1 when none */
MOE_API int moe_vocab_eos(const moe_vocab *v); /* -1 when none */
/* 1 if id ends generation (EOS, <|im_end|>, <|eot_id|>, ...). */
MOE_API int moe_vocab_is_eog(const moe_vocab *v, int id);
/* Encodes text[0, n). add_bos: prepend BOS when the model asks for it
 * (tokenizer.ggml.add_bos_token, or the family's default). parse_special:
 * text of control tokens ("<|im_start|>", "[INST]") becomes those tokens.
 * Writes at most cap ids, *n_out gets the full count; MOE_ERR_SHAPE when
 * more than cap. */
MOE_API moe_status moe_vocab_encode(const moe_vocab *v, const char *text, size_t n,
                                    int add_bos, int parse_special, int32_t *out,
                                    size_t cap, size_t *n_out, moe_error *err);
/* The bytes a token contributes to the output text (SentencePiece's U+2581
 * becomes a space, byte tokens <0xNN> their byte, gpt2's byte map undone;
 * control tokens give "" unless with_special). *len gets the length. */
MOE_API const char *moe_vocab_piece(const moe_vocab *v, int id, int with_special,
                                    char *buf, size_t cap, size_t *len);

/* Chat templates: "chatml", "mistral" ([INST]), "llama3", "deepseek",
 * "granite" ... moe_chat_template_for picks one from the GGUF metadata
 * (tokenizer.chat_template text, else the architecture). */
typedef struct moe_chat_msg {
    const char *role;    /* "system", "user", "assistant" */
    const char *content;
} moe_chat_msg;
MOE_API const char *moe_chat_template_for(const char *gguf_path); /* never NULL */
/* Renders msgs[0, n) ending with the opening of the assistant's turn when
 * add_assistant. Writes at most cap bytes (NUL-terminated), *len gets the
 * full length; MOE_ERR_SHAPE when it does not fit, MOE_ERR_ARG for an
 * unknown template name. */
MOE_API moe_status moe_chat_render(const char *tmpl, const moe_chat_msg *msgs, int n,
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
MOE_API void moe_sampler_config_default(moe_sampler_config *c); /* temp 0.8, top_k 40, top_p 0.95, min_p 0.05, penalty 1.0 (off), last_n 64, seed 1 */
MOE_API moe_status moe_sampler_create(moe_sampler **out, const moe_sampler_config *c, int n_vocab, moe_error *err);
MOE_API void moe_sampler_free(moe_sampler *s);
/* Picks the next token from logits[n_vocab] (the array may be modified);
 * history[0, n_hist) are the tokens so far (for the repetition penalty;
 * it must not overlap logits).
 * Deterministic for a given seed and sequence of calls. */
MOE_API int moe_sampler_sample(moe_sampler *s, float *logits, const int32_t *history, int n_hist);

/* --------------------------------------------------------------- engine */

/* Two handles, as llama.h has them: a model (the mapped weights and the
 * vocabulary; read-only, shared by any number of contexts on any threads)
 * and a context (n_seq sequences, each with its KV cache and length, the
 * scratch of one step, the expert counts; one thread at a time).
 * moe_infer_open makes both at once (the context owns its model): the
 * single-stream API below runs sequence 0. */
typedef struct moe_infer moe_infer; /* a context: sequences with their KV caches */
typedef struct moe_infer_model moe_infer_model; /* the weights, read-only */

typedef struct moe_infer_options {
    int n_threads;         /* <= 0: the OpenMP default */
    int ctx_len;           /* KV cache length; 0: min(model's, 4096) */
    int experts_per_token; /* 0: the model's k; else overrides it (1..E) */
    int max_batch;         /* tokens per eval call at most (prompt chunk), rows of a
                              batch step at most; 0: 512 */
    int n_seq;             /* sequences (each a KV cache of ctx_len); 0: 1 */
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
    char runs_in[160];      /* which tools run the file: "moe, llama.cpp (arch
                               llama)", or "moe only (hash routing, ...)" */
    int one_seq_per_step;   /* 1: the routing chooses over a whole evaluated
                               chunk (expert choice at inference), so a token's
                               output depends on the others of its step:
                               moe_infer_batch_eval takes one sequence per step
                               and `moe serve` runs one sequence at a time */
} moe_infer_info;

MOE_API void moe_infer_options_default(moe_infer_options *o);
/* Maps the GGUF file and checks every tensor the architecture needs; a
 * missing or misshaped tensor is an error listing all that are missing. */
MOE_API moe_status moe_infer_open(moe_infer **out, const char *path,
                                  const moe_infer_options *opt, moe_error *err);
MOE_API void moe_infer_close(moe_infer *m);
/* Expert-parallel inference (docs/SCALING.md): m, opened from the same file
 * with the same options on every rank of d (moe_dist_init with
 * expert_parallel = the rank count), becomes one of them: every rank runs
 * the same tokens and sequence calls in the same order, each with
 * n_experts / ranks of every MoE block's experts (only those weights are
 * read, so only they become resident); the blocks' outputs are summed over
 * the ranks, so every rank gets the logits of one process (up to the order
 * of fp32 sums). E % ranks != 0 is an error. */
MOE_API moe_status moe_infer_attach_dist(moe_infer *m, moe_dist *d, moe_error *err);
MOE_API const moe_infer_info *moe_infer_get_info(const moe_infer *m);
MOE_API const moe_vocab *moe_infer_vocab(const moe_infer *m);

/* The model alone (checked as moe_infer_open checks it), for contexts
 * made with moe_infer_create; close it after every context on it. */
MOE_API moe_status moe_infer_model_open(moe_infer_model **out, const char *path,
                                        moe_error *err);
MOE_API void moe_infer_model_close(moe_infer_model *mdl);
MOE_API const moe_vocab *moe_infer_model_vocab(const moe_infer_model *mdl);
/* A context on mdl (which it does not own): opt as for moe_infer_open. */
MOE_API moe_status moe_infer_create(moe_infer **out, moe_infer_model *mdl,
                                    const moe_infer_options *opt, moe_error *err);
MOE_API moe_infer_model *moe_infer_get_model(const moe_infer *m);
MOE_API int moe_infer_n_seq(const moe_infer *m);
MOE_API int moe_infer_max_batch(const moe_infer *m);

/* One step over many sequences of the context: row i is token tokens[i] of
 * sequence seq[i] at position pos[i]. The rows of one sequence are
 * consecutive in the batch at consecutive positions, the first at most the
 * sequence's length (a smaller one discards the cached positions from
 * there, as moe_infer_eval does); prompt chunks (prefill) and single
 * decode tokens mix freely. Every expert's tokens of the whole step are
 * grouped into one product per layer, so its weights are read once per
 * step. Each sequence runs with its own experts per token
 * (moe_infer_seq_set_top_k). want_logits: NULL (none) or [n] flags;
 * logits gets [count of flags, V], the flagged rows in order. The logits
 * of a row equal the single-stream engine's for the same tokens (bitwise;
 * nothing depends on the other rows). Errors (MOE_ERR_ARG, nothing run): n
 * > max_batch, a sequence or token out of range, a position beyond the
 * sequence or ctx_len, a sequence's rows split or not consecutive, several
 * sequences in one step of an expert-choice model. */
MOE_API moe_status moe_infer_batch_eval(moe_infer *m, const int32_t *tokens, const int32_t *seq,
                                        const int32_t *pos, const int8_t *want_logits, int n,
                                        float *logits, moe_error *err);
/* Positions of sequence seq held in its cache (0 for an unknown seq). */
MOE_API int moe_infer_seq_len(const moe_infer *m, int seq);
/* Keeps the first keep positions of sequence seq (0: empties it). */
MOE_API moe_status moe_infer_seq_clear(moe_infer *m, int seq, int keep, moe_error *err);
/* Experts per token of sequence seq from its next step on (1..E; 0: the
 * context's, moe_infer_set_top_k). */
MOE_API moe_status moe_infer_seq_set_top_k(moe_infer *m, int seq, int k, moe_error *err);

/* Runs tokens[0, n) at positions pos .. pos+n-1 (the cache must hold
 * positions 0 .. pos-1 from earlier calls), appending to the KV cache. A pos
 * before the end of the cache discards the cached positions pos and later
 * (so a shared prefix is kept and the rest re-evaluated); a pos beyond the
 * cached positions is refused (MOE_ERR_ARG). The
 * n tokens are processed as one batch (each expert's tokens grouped), in
 * chunks of max_batch. logits: NULL, or [n, V] (all_logits = 1) or [V] (the
 * last token's only). Errors: pos + n > ctx_len, a token id out of range. */
MOE_API moe_status moe_infer_eval(moe_infer *m, const int32_t *tokens, int n, int pos,
                                  float *logits, int all_logits, moe_error *err);
/* Empties the KV cache, the expert statistics and the times. */
MOE_API void moe_infer_reset(moe_infer *m);
MOE_API moe_status moe_infer_set_top_k(moe_infer *m, int k, moe_error *err);

/* Tokens routed to each expert since the last reset: counts[l * E + e]
 * for MoE layer l (dense layers give zeros). */
MOE_API const int64_t *moe_infer_expert_counts(const moe_infer *m);

/* Where the evaluations' time went since the last reset (for benchmarks:
 * `moe bench serve` prints the split of a batch step). Wall-clock seconds. */
typedef struct moe_infer_times {
    double eval_s;      /* inside moe_infer_eval / moe_infer_batch_eval */
    double expert_mm_s; /* of which the routed experts' quantized products */
    double other_mm_s;  /* the other quantized products: attention q k v o, routers,
                           shared experts, dense FFNs, the output head */
    int64_t n_evals;    /* forward passes (chunks of max_batch rows) */
} moe_infer_times;
MOE_API void moe_infer_get_times(const moe_infer *m, moe_infer_times *out);

/* The routing the engine decides, as it decides it: called once per MoE
 * layer per chunk of evaluated tokens (moe_infer_eval cuts its tokens into
 * chunks of max_batch), after the selection and the weights are final (the
 * weights the experts' outputs are multiplied by). The pointers are valid
 * during the call only. `moe route` is built on it. */
typedef struct moe_route_event {
    int layer;            /* the model layer */
    int pos;              /* position of the chunk's first token (rows of one
                             sequence: moe_infer_eval; a batch step of several
                             sequences gives its first row's) */
    int n_tokens;         /* n: tokens in the chunk */
    int stride;           /* entries per token in experts and weights */
    const int *n_experts; /* [n] experts chosen for each token */
    const int *experts;   /* [n, stride] the first n_experts[t] entries: best
                             first for top-k / top-p, in expert order for
                             expert choice and ReLU routing */
    const float *weights; /* [n, stride] their gate weights */
} moe_route_event;
typedef void (*moe_route_fn)(void *user, const moe_route_event *ev);
/* Sets (fn) or removes (fn NULL) the routing hook of m. */
MOE_API void moe_infer_set_route_hook(moe_infer *m, moe_route_fn fn, void *user);

/* The routing of a text, as `moe route --html` draws it: n tokens, M MoE
 * layers, for each (token, layer) up to K experts with their weights. */
typedef struct moe_route_doc {
    const char *title;          /* the model (shown as given) */
    int n_tokens;               /* n */
    const int32_t *ids;         /* [n] token ids */
    const char *const *pieces;  /* [n] each token's bytes as text (any bytes;
                                   invalid UTF-8 is shown as U+FFFD) */
    int n_layers;               /* M */
    const int *layers;          /* [M] model layer of each */
    int n_experts;              /* E */
    int stride;                 /* K */
    const int *n_sel;           /* [n, M] experts chosen */
    const int *experts;         /* [n, M, K] */
    const float *weights;       /* [n, M, K] */
} moe_route_doc;
/* One self-contained XHTML page (no script; CSS only): the text with each
 * token coloured by its top expert (largest weight) in the selected layer
 * (radio buttons, one per layer), the experts and weights of every token
 * and layer on hover, an expert legend and a layers x experts usage
 * heatmap. Ids: route-layers, route-layer-L (the view of model layer L),
 * fig-route-usage. *html is malloc'd. */
MOE_API moe_status moe_route_render_html(char **html, size_t *n, const moe_route_doc *d,
                                         moe_error *err);

/* ----------------------------------------------------------- perplexity */

/* How moe_infer_perplexity cuts a token stream into windows and which
 * positions of each window it scores. Two scorings:
 *   MOE_PPL_SLIDING (default): windows of ctx tokens starting every stride
 *     tokens; every token after the first is scored exactly once, by the
 *     first window whose positions reach it (window k scores targets beyond
 *     those of window k-1: all ctx positions of the first window, the last
 *     stride of the others). stride = ctx (default): consecutive windows
 *     share one token (window k's input is tokens[k ctx, (k+1) ctx), its
 *     targets are shifted by one), which is exactly what the trainer's
 *     validation scores; a smaller stride gives each token more context.
 *   MOE_PPL_LLAMA: llama.cpp's `llama-perplexity`: floor(n / ctx)
 *     non-overlapping chunks of ctx tokens, the first token of each chunk
 *     replaced by BOS when the stream starts with BOS, and only the second
 *     half of each chunk scored (logits at positions ctx/2 .. ctx-2 predict
 *     the tokens after them: ctx - 1 - ctx/2 targets per chunk). */
typedef enum moe_ppl_scoring { MOE_PPL_SLIDING = 0, MOE_PPL_LLAMA = 1 } moe_ppl_scoring;

typedef struct moe_ppl_options {
    int ctx;                 /* window length in tokens; 0: the engine's ctx_len */
    int stride;              /* MOE_PPL_SLIDING: tokens between window starts, 1..ctx; 0: ctx */
    int batch;               /* tokens per moe_infer_eval call (logits [batch, V]); 0: 512 */
    moe_ppl_scoring scoring;
    /* called after each evaluated batch with the targets scored so far and
       the total to score (NULL: none) */
    void (*progress)(void *user, int64_t done, int64_t total);
    void *user;
} moe_ppl_options;

typedef struct moe_ppl_result {
    double nll;              /* sum of -ln p(target) over the scored targets, nats */
    int64_t n_scored;        /* targets scored */
    int64_t n_bytes;         /* bytes of the scored targets' text (moe_vocab_piece, control tokens 0) */
    int64_t n_windows;       /* windows (chunks) evaluated */
} moe_ppl_result;
/* nats per token nll / n_scored; perplexity exp(that); bits per byte
 * nll / ln 2 / n_bytes (independent of the tokenizer). */

MOE_API void moe_ppl_options_default(moe_ppl_options *o); /* sliding, ctx 0, stride 0, batch 0 */
/* Scores tokens[0, n) with the model (the KV cache is reset for each
 * window; the engine's ctx_len must be >= ctx). nll_out: NULL, or [n]
 * doubles: nll_out[t] = -ln p(tokens[t] | the window's tokens before t) for
 * each scored target t, NaN for the others. Log-softmax as llama.cpp
 * computes it (float max, double sum of expf). Errors: fewer than 2 tokens
 * (MOE_PPL_LLAMA: fewer than ctx), ctx < 2 or > ctx_len, a bad stride,
 * an eval failure (the message names the window). */
MOE_API moe_status moe_infer_perplexity(moe_infer *m, const int32_t *tokens, int64_t n,
                                        const moe_ppl_options *o, double *nll_out,
                                        moe_ppl_result *r, moe_error *err);

/* ------------------------------------------------------ GGUF listing */

/* Writes a readable listing of a GGUF file to out: the header (version,
 * alignment, sizes), every metadata key with its type and value (strings
 * cut at 80 bytes, arrays summarised as type, count and the first few
 * elements), then the tensor table (name, type, dims innermost first,
 * bytes, offset) and the totals. Control characters of keys, names and
 * strings are written as escapes (\xNN, \n ...), so a file cannot send
 * terminal escape sequences through the listing. Fails, writing nothing, when the file is
 * missing or not a valid GGUF file (the message names it). */
MOE_API moe_status moe_gguf_dump(const char *path, FILE *out, moe_error *err);

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
    moe_progress_fn progress; /* tensors generated (NULL: none) */
    void *progress_user;
} moe_synth_config;

MOE_API void moe_synth_config_default(moe_synth_config *c); /* mixtral, f32, tiny, seed 1 */
/* Writes the model to path atomically. *params_total (may be NULL) gets
 * the number of weights. Errors: an unknown arch or type, widths the type's
 * block size does not divide, out of memory, I/O. */
MOE_API moe_status moe_synth_model(const char *path, const moe_synth_config *c,
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
MOE_API moe_status moe_convert_hf(const char *dir, const char *out_path, const char *type,
                                  moe_error *err);
/* The same, reporting bytes written of the file's size to fn (may be NULL). */
MOE_API moe_status moe_convert_hf_progress(const char *dir, const char *out_path, const char *type,
                                           moe_progress_fn fn, void *user, moe_error *err);

/* ----------------------------------------------------------- quantize */

/* A GGUF model re-written in another weight type, as llama-quantize does:
 * metadata copied (general.file_type updated), the same tensors in the same
 * order. Converted: tensors of 2+ dimensions named "*.weight" except routers
 * ("ffn_gate_inp*"); everything else (norms, biases, 1-D tensors) is copied
 * unchanged. The output is written atomically (on failure nothing is left
 * at out_path and an existing file is untouched). */
typedef struct moe_quantize_options {
    const char *type;    /* "f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1",
                            "q2_k", "q3_k", "q4_k", "q5_k", "q6_k" (any case) */
    int n_threads;       /* <= 0: the OpenMP default */
    int dry_run;         /* 1: only the sizes (res), no file; out_path may be NULL */
    int allow_fallback;  /* 1: a tensor whose rows the type's blocks do not hold is
                            written as q8_0 (or f16); 0: that is an error */
    void (*progress)(void *user, int64_t done, int64_t total); /* weights converted */
    void *user;
} moe_quantize_options;

typedef struct moe_quantize_result {
    int64_t bytes_in, bytes_out; /* file sizes */
    int n_tensors;               /* tensors in the file */
    int n_quantized;             /* tensors whose type changed */
    int n_fallback;              /* of those, written as q8_0/f16 (allow_fallback) */
    double seconds;
} moe_quantize_result;

MOE_API void moe_quantize_options_default(moe_quantize_options *o); /* q8_0 */
/* Errors: an unknown type (MOE_ERR_ARG), a file that is not GGUF, a row
 * length the type's block size does not divide (MOE_ERR_SHAPE, naming the
 * tensor), NaN/Inf weights, I/O (the output's folder missing ...). */
MOE_API moe_status moe_quantize(const char *in_path, const char *out_path, const moe_quantize_options *o,
                                moe_quantize_result *res, moe_error *err);

/* ------------------------------------------------------------ kernels */

/* The best of `iters` timings (seconds, in *best_s) of one quantized product
 * y[M, N] = x[M, K] w^T with w of `type` ("q4_K", "q8_0", ... any case):
 * the kernels the engine's projections run, at the row counts a batch step
 * gives them (`moe bench qmatmul`). Random data; n_threads <= 0: the OpenMP
 * default. Errors: an unknown type, a K its block size does not divide,
 * sizes < 1, out of memory. */
MOE_API moe_status moe_bench_qmatmul(const char *type, int M, int N, int K, int n_threads, int iters,
                                     double *best_s, moe_error *err);

/* ------------------------------------------------------------- server */

/* The core of `moe serve` (docs/SERVE.md), without HTTP: one model, a batch
 * context of `parallel` sequences and a scheduler thread that runs batch
 * steps over every running request (continuous batching; each step groups
 * all its tokens per expert). The HTTP layer (cli/serve.c, libmicrohttpd)
 * hands it request bodies and writes out what it returns: JSON bodies,
 * server-sent events, OpenAI-shaped errors. Thread-safe: any number of
 * threads may submit, read and release at once. */
typedef struct moe_server moe_server;
typedef struct moe_server_req moe_server_req;

typedef struct moe_server_options {
    int parallel;           /* sequences run together; 0: 4 */
    int ctx_len;            /* tokens per sequence; 0: min(model's, 4096) */
    int n_threads;          /* <= 0: the OpenMP default */
    int max_batch;          /* rows of one batch step at most; 0: 256 */
    int queue_max;          /* requests waiting beyond the free sequences
                               before 503; 0: 64, < 0: none may wait */
    const char *alias;      /* the model's id; NULL: the file's name without .gguf */
} moe_server_options;

typedef enum moe_server_endpoint {
    MOE_SERVER_CHAT = 0,       /* POST /v1/chat/completions */
    MOE_SERVER_COMPLETION = 1  /* POST /v1/completions */
} moe_server_endpoint;

MOE_API moe_status moe_server_open(moe_server **out, const char *model_path,
                                   const moe_server_options *o, moe_error *err);
/* Cancels what still runs, stops the scheduler and frees everything; every
 * request must have been released. */
MOE_API void moe_server_close(moe_server *s);
MOE_API const char *moe_server_model_id(const moe_server *s);
/* Checks and queues a request body. Returns the HTTP status: 200 with *out
 * the request (and *stream 1 for server-sent events), or 400 / 404 / 500 /
 * 503 with *out NULL and *err_json an OpenAI error body (malloc'd; the
 * caller frees it). */
MOE_API int moe_server_submit(moe_server *s, moe_server_endpoint ep, const char *body, size_t n,
                              moe_server_req **out, int *stream, char **err_json);
/* The next bytes of the response of r, waiting up to wait_ms for them:
 * *text (malloc'd, or NULL when nothing new) and *len. A streamed request
 * gives server-sent events as the tokens come, ending with "data: [DONE]";
 * another gives its whole JSON body once done (*status: 200, or the error's
 * status with an error body). Returns 1 when the response is complete
 * (nothing will follow), else 0. */
MOE_API int moe_server_read(moe_server *s, moe_server_req *r, int wait_ms, char **text,
                            size_t *len, int *status);
/* The HTTP side is done with r (it is cancelled when not finished: a client
 * that left frees its sequence at the next step). */
MOE_API void moe_server_release(moe_server *s, moe_server_req *r);
/* GET endpoints: "/v1/models", "/v1/models/ID", "/health", "/metrics".
 * Returns the body (malloc'd), *status (404 for another path) and
 * *content_type. */
MOE_API char *moe_server_get(moe_server *s, const char *path, int *status,
                             const char **content_type);
/* An OpenAI error body {"error": {"message", "type", "param", "code"}}
 * (malloc'd) for a status the HTTP layer decides (404, 405, 413 ...). */
MOE_API char *moe_server_error_json(int status, const char *code, const char *message);
/* Counts an HTTP response in /metrics. */
MOE_API void moe_server_count_status(moe_server *s, int status);
/* Shutdown: refuse new requests (503, /health says so) ... */
MOE_API void moe_server_drain(moe_server *s);
/* ... cancel every request ... */
MOE_API void moe_server_cancel_all(moe_server *s);
/* ... and wait for them: requests running or queued. */
MOE_API int moe_server_busy(moe_server *s);

#ifdef __cplusplus
}
#endif
#endif /* MOE_INFER_H */
