/* state_file.h: the training-state file's own keys (internal). state.gguf
 * is a model file (src/model/model_file.h) plus moe.train.* (every field of
 * moe_train_config but the model's and the tokenizer's, written here), the
 * step, RNG, data position and the optimizer moments (trainer.c).
 * Not for: the training loop (trainer.c).
 */
#ifndef MOE_TRAIN_STATE_FILE_H
#define MOE_TRAIN_STATE_FILE_H

#include "moe.h"
#include "io/gguf.h"

/* moe.train.* keys of a training configuration (model and tokenizer excluded). */
moe_status state_file_add_train_config(gguf_writer *w, const moe_train_config *c, moe_error *err);
moe_status state_file_read_train_config(const gguf_ctx *g, moe_train_config *c, moe_error *err);

/* The first field where a and b differ among those a resume must keep
 * (everything but steps, eval_every, eval_batches, save_every, threads,
 * max_batch): writes "name: a vs b" into buf and returns 1; 0 if none. */
int state_file_train_config_diff(const moe_train_config *a, const moe_train_config *b, char *buf, size_t cap);

#endif
