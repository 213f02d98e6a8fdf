/* convert.h: Hugging Face model folders to GGUF files (internal).
 *
 * For: `moe convert DIR OUT.gguf --type T` and moe_convert_hf: a folder with
 * config.json, the weights as safetensors (one file or shards with
 * model.safetensors.index.json) and tokenizer.json (plus
 * tokenizer_config.json, chat_template.jinja when present) becomes one GGUF
 * file in llama.cpp's layout for the architecture, which the engine
 * (moe_infer_open) runs:
 *
 *   config.json model_type          GGUF arch    Q/K rows permuted
 *   llama, mistral (dense)          llama        yes
 *   mixtral                         llama (+ experts) yes
 *   qwen2_moe                       qwen2moe     no
 *   qwen3_moe                       qwen3moe     no
 *   olmoe                           olmoe        no
 *   deepseek (DeepSeek-MoE v1)      deepseek     yes
 *   granitemoe                      granitemoe   yes
 *
 * The permutation: HF rotates the halves of each head (x[i], x[i + hd/2]);
 * the GGUF `llama`, `deepseek` and `granitemoe` layouts rotate adjacent pairs,
 * so row c*hd/2 + i of each head of q_proj / k_proj (and their biases)
 * becomes row 2i + c (llama.cpp's convert script does the same).
 * Experts (one HF tensor per expert, or granite's packed [E, 2f, d]
 * input_linear) are stacked into ffn_{gate,up,down}_exps {cols, rows, E}.
 *
 * Types: every matrix (attention, experts, shared experts, dense FFN,
 * token_embd, output) in the chosen type, quantized row by row as it is
 * written; norms, routers (ffn_gate_inp, ffn_gate_inp_shexp), biases and
 * rope_freqs in F32. A matrix whose row length is not a multiple of the
 * type's block (32; 256 for the K types) is written as q8_0 (length a
 * multiple of 32) or f16, and the conversion says so in its notes.
 *
 * The output is streamed: the header first (the metadata encoded by the
 * GGUF writer), then each tensor in chunks of rows, quantized by all
 * threads, through an atomic file; memory stays at a few chunks whatever
 * the model size. The written file is then opened with the engine's loader
 * (infer/arch.h) as a check.
 *
 * Files: convert.c (plan, streaming, API), convert_cfg.c (config.json),
 * convert_tok.c (the tokenizer).
 *
 * Not for: PyTorch .bin checkpoints, GPTQ/AWQ/FP8 weights, other
 * architectures (an unknown model_type is MOE_ERR_UNSUPPORTED listing the
 * supported ones).
 */
#ifndef MOE_TOOLS_CONVERT_H
#define MOE_TOOLS_CONVERT_H

#include <stddef.h>
#include <stdint.h>

#include "infer/arch.h"
#include "io/gguf.h"
#include "io/json.h"
#include "moe.h"

/* Notes collected while converting (type fallbacks, ignored settings,
 * unused tensors), newline-separated. */
typedef struct cv_notes {
    char text[2048];
    size_t len;
} cv_notes;

void cv_note(cv_notes *n, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ------------------------------------------------------------- config */

/* The families (model_type values) the converter knows. */
typedef enum cv_fam {
    CV_LLAMA, CV_MIXTRAL, CV_QWEN2MOE, CV_QWEN3MOE, CV_OLMOE, CV_DEEPSEEK, CV_GRANITEMOE
} cv_fam;

/* The hyperparameters the conversion needs. */
typedef struct hf_hp {
    cv_fam f;
    arch_kind arch;
    int permute;                 /* Q/K rows to adjacent-pair order */
    char model_type[32];
    int64_t L, d, H, Hkv, hd, V, ctx;
    int64_t ff;                  /* dense FFN width (intermediate_size) */
    int64_t E, k, ff_exp, ff_sh; /* experts; expert width; shared width (0: none) */
    int64_t n_shared, n_dense;   /* deepseek */
    double eps, theta;
    int tied;                    /* config's tie_word_embeddings */
    int norm_topk;               /* -1: the family has no such setting */
    double emb_mult, res_mult, attn_mult, logit_scale; /* granite */
    double rope_linear;          /* 0: none */
    float *rope_freqs;           /* [hd/2] llama3 divisors, or NULL (owned) */
} hf_hp;

/* convert_cfg.c: reads config.json (cfg, parsed from path) into *hp;
 * hp->V is left 0 (the embedding's rows decide it). Errors name the key;
 * an unknown model_type is MOE_ERR_UNSUPPORTED listing the supported ones.
 * hp->rope_freqs, when set, is owned by the caller (free). */
moe_status convert_read_config(const json_value *cfg, const char *path, hf_hp *hp,
                               cv_notes *notes, moe_error *err);

/* ---------------------------------------------------------------- API */

typedef struct convert_opts {
    const char *type; /* "f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1",
                         "q2_k", "q3_k", "q4_k", "q5_k", "q6_k" (any case); NULL: "f16" */
    const char *pre;  /* tokenizer.ggml.pre to write instead of the detected one; NULL: detect */
    int n_threads;    /* <= 0: the OpenMP default */
    moe_progress_fn progress; /* bytes written of the file's size (NULL: none) */
    void *progress_user;
} convert_opts;

/* Converts the folder dir to out_path. notes (may be NULL) gets what the
 * user should know. Errors name the file, key or tensor: no config.json /
 * tokenizer.json (MOE_ERR_IO), an unknown model_type or an unsupported
 * setting (MOE_ERR_UNSUPPORTED), missing or misshaped tensors (one
 * MOE_ERR_FORMAT listing them), a broken safetensors file or JSON file (the
 * reader's message), an unknown type name (MOE_ERR_ARG). On failure no file
 * is left at out_path (an existing one is untouched). */
moe_status convert_hf(const char *dir, const char *out_path, const convert_opts *o,
                      cv_notes *notes, moe_error *err);

/* GGUF type id of a type name (as convert_opts.type); -1 if unknown. */
int convert_type_id(const char *name);

/* convert_tok.c: adds the tokenizer.ggml.* keys (and tokenizer.chat_template)
 * read from dir's tokenizer.json, tokenizer_config.json and config (the
 * parsed config.json) to w. The token list is padded with unused
 * "[PAD<i>]" tokens to n_vocab (the embedding's rows); more tokens than
 * that is an error. Byte-level BPE becomes "gpt2" with the .pre name of its
 * pre-tokenizer (pre_override when not NULL); a BPE with byte_fallback or a
 * Metaspace pre-tokenizer (SentencePiece converted) becomes "llama" with
 * scores from the merge ranks. */
moe_status convert_tokenizer(gguf_writer *w, const char *dir, const json_value *config,
                             int64_t n_vocab, const char *pre_override, cv_notes *notes,
                             moe_error *err);

#endif /* MOE_TOOLS_CONVERT_H */
