/* fuzz_train.h: the tiny training run behind fuzz_checkpoint's inputs,
 * shared by the harness (which needs the run's tokens.bin) and the seed
 * generator (which writes its state.gguf and model.gguf). */
#ifndef MOE_FUZZ_TRAIN_H
#define MOE_FUZZ_TRAIN_H

#include "moe.h"

/* A model of a few thousand weights on 16 KB of the built-in corpus. */
static inline void fz_train_config(moe_train_config *c) {
    moe_train_config_default(c);
    c->model.vocab_size = 270;
    c->model.d_model = 8;
    c->model.n_layers = 2;
    c->model.n_heads = 2;
    c->model.n_kv_heads = 1;
    c->model.ctx_len = 8;
    c->model.d_ff = 8;
    c->model.n_dense_first = 1;
    c->model.moe.n_experts = 3;
    c->model.moe.top_k = 2;
    c->model.moe.d_ff = 4;
    c->model.moe.jitter = 0.01f;
    c->model.moe.bias_update_rate = 0.001f;
    c->model.n_threads = 1;
    c->batch = 2;
    c->model.max_batch = 2;
    c->steps = 2;
    c->warmup = 1;
    c->eval_every = 0;
    c->eval_batches = 1;
    c->corpus_bytes = 16384;
}

/* Trains 1 step in dir and saves: dir/state.gguf, model.gguf, tokens.bin. */
static inline moe_status fz_train_run(const char *dir, moe_error *err) {
    moe_train_config c;
    fz_train_config(&c);
    moe_trainer *t = NULL;
    moe_status st = moe_trainer_create(&t, &c, NULL, 0, dir, err);
    moe_train_step_info info;
    if (st == MOE_OK) st = moe_trainer_step(t, &info, err);
    if (st == MOE_OK) st = moe_trainer_save(t, err);
    moe_trainer_free(t);
    return st;
}

#endif
