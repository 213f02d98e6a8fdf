/* model_file.h: the model's GGUF form (internal), written by moe_model_save
 * and the trainer, read by moe_model_load and the trainer's resume.
 *
 * The rule: a model file says everything inference needs, in llama.cpp's
 * keys and tensor names wherever they express the method, and
 * general.architecture = "llama" only when llama.cpp's llama computes exactly
 * what the training forward computes in evaluation mode (softmax, top-k,
 * renormalised, weight scale 1, every block MoE or every block dense, no
 * bias, groups or shared expert). Any other model is "moe" (MODEL_FILE_ARCH),
 * so no other tool loads it and silently computes something else.
 *
 * A model file holds:
 *   general.architecture ("llama" or "moe"), general.name, general.file_type = 0
 *   {arch}.* hyperparameters (context_length, embedding_length, block_count,
 *     feed_forward_length, attention.head_count[_kv], attention.key_length,
 *     attention.value_length, rope.dimension_count, rope.freq_base,
 *     attention.layer_norm_rms_epsilon, vocab_size, expert_count,
 *     expert_used_count, expert_feed_forward_length)
 *   "moe" only: moe.expert_selection (top_k, top_p, hash, relu,
 *     expert_choice), moe.expert_gating_func (1 softmax, 2 sigmoid),
 *     moe.expert_weights_norm, moe.expert_weights_scale, moe.expert_top_p,
 *     moe.expert_choice_capacity, moe.expert_group_count,
 *     moe.expert_group_used_count, moe.expert_shared_feed_forward_length,
 *     moe.layer_is_moe (u8 per block)
 *   moe.version = MODEL_FILE_VERSION
 *   moe.model.* and moe.router.*: every field of moe_model_config and of its
 *     moe_layer_config, so the file rebuilds the model exactly
 *   tokenizer.ggml.* (model "gpt2", pre "gpt-2": tokens, token_type, merges,
 *     bos, eos) and moe.tokenizer.pre = "gpt2" (moe's own splitting rules)
 *   moe.checksum: moe_hash of every tensor's bytes in file order
 *   every tensor of the model's table in F32, GGUF dims reversed from the
 *     table's row-major shape; token_embd only when tied (no output.weight);
 *     no ffn_gate_inp_noise (training only); blk.N.exp_probs_b.bias [E]
 *     when the selection bias is on
 * The training-state file (src/train/state_file.h) is the same plus
 * moe.train.* and the optimizer moments.
 * Not for: the inference engine's reading of GGUF files (src/infer/arch.c).
 */
#ifndef MOE_MODEL_MODEL_FILE_H
#define MOE_MODEL_MODEL_FILE_H

#include "moe.h"
#include "core/hash.h"
#include "io/gguf.h"
#include "text/bpe.h"

#define MODEL_FILE_VERSION 2     /* moe.version written; readers refuse newer files */
#define MODEL_FILE_ARCH "moe"    /* general.architecture of models no other tool runs */
#define MODEL_FILE_PRE "gpt-2"   /* tokenizer.ggml.pre written: the name llama.cpp knows */

/* Adds the model's keys, its tokenizer and its tensors (pointers into the
 * model: write before changing it). for_state: 1 adds every parameter (the
 * training state), 0 only what inference reads (the model file: no noise
 * weights of the noisy gate). whole[i] (whole or whole[i] NULL: the model's
 * own) is tensor i in full where the model holds a part of it (moe.h,
 * moe_tensor.held_n: a rank of an expert-parallel run, whose checkpoint is
 * gathered); a part without its whole is an error. */
moe_status model_file_add(gguf_writer *w, moe_model *m, const bpe_tokenizer *tok, int for_state,
                          float *const *whole, moe_hash *hash, moe_error *err);
/* model.gguf of m (moe_model_save) with the whole tensors as above. */
moe_status model_file_save(moe_model *m, const bpe_tokenizer *tok, float *const *whole, const char *path,
                           moe_error *err);

/* The general.architecture a model file of c gets: "llama" when llama.cpp's
 * llama computes exactly the training forward's evaluation, else
 * MODEL_FILE_ARCH with the reasons in why ("" for llama). */
const char *model_file_arch(const moe_model_config *c, char *why, size_t cap);

/* moe.version no newer than MODEL_FILE_VERSION, and no moe.* key outside
 * the known ones (an unknown key may change the computation): else
 * MOE_ERR_UNSUPPORTED naming the key or both versions. Read by the trainer
 * (model_file_read_config) and the engine (arch_load). */
moe_status model_file_check_keys(const gguf_ctx *g, moe_error *err);

/* Writers feed every tensor's bytes, in the order they add them, to a
 * moe_hash (src/core/hash.h) and store the result as moe.checksum; readers
 * check it with model_file_verify_checksum, so a flipped bit in a weight is
 * an error, not a silently different model. */
moe_status model_file_verify_checksum(const gguf_ctx *g, moe_error *err);
/* Reads the configuration (moe.* keys, else the llama.* keys of a foreign
 * file). max_batch and n_threads are left as they were in *c. */
moe_status model_file_read_config(const gguf_ctx *g, moe_model_config *c, moe_error *err);
/* Before a model of configuration c is created for the file: the weights c
 * needs (moe_model_count) must not exceed the elements of the file's float
 * tensors, so metadata (which no checksum covers) cannot make the reader
 * allocate far more than the file holds. */
moe_status model_file_check_size(const gguf_ctx *g, const moe_model_config *c, moe_error *err);
/* Copies every tensor of m from the file (the elements m holds of it), F32, F16 or BF16, checking
 * shapes; the error lists every missing or misshaped tensor. */
moe_status model_file_load_tensors(const gguf_ctx *g, moe_model *m, moe_error *err);
/* The tokenizer of the file (model "gpt2" as moe writes it). */
moe_status model_file_read_tokenizer(const gguf_ctx *g, bpe_tokenizer *tok, moe_error *err);

/* The first field of the model or (for a model with MoE blocks) router
 * configuration where a and b differ: "name: a vs b" into buf, returns 1;
 * 0 if none. */
int model_file_config_diff(const moe_model_config *a, const moe_model_config *b, char *buf, size_t cap);

#endif
