/* state_file.c: the training configuration's keys in the training-state
 * file (state_file.h); the model part of that file is model_file.c's. */
#include "train/state_file.h"
#include "core/error.h"
#include "io/gguf_fields.h"
#include "model/model_file.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

static const gguf_field train_fields[] = {
    GF_I(moe_train_config, batch), GF_I(moe_train_config, accum), GF_L(moe_train_config, steps),
    GF_F(moe_train_config, lr), GF_F(moe_train_config, min_lr), GF_L(moe_train_config, warmup),
    GF_L(moe_train_config, eval_every), GF_I(moe_train_config, eval_batches), GF_L(moe_train_config, save_every),
    GF_F(moe_train_config, val_fraction), GF_U(moe_train_config, seed), GF_L(moe_train_config, corpus_bytes),
    GF_F(moe_train_config, eval_capacity),
};

static const gguf_field adamw_fields[] = {
    GF_F(moe_adamw_config, beta1), GF_F(moe_adamw_config, beta2), GF_F(moe_adamw_config, eps),
    GF_F(moe_adamw_config, weight_decay), GF_F(moe_adamw_config, grad_clip),
};

#define TRY(x) do { moe_status st_ = (x); if (st_ != MOE_OK) return st_; } while (0)

moe_status state_file_add_train_config(gguf_writer *w, const moe_train_config *c, moe_error *err) {
    TRY(gguf_fields_put(w, "moe.train.", train_fields, GF_N(train_fields), c, err));
    return gguf_fields_put(w, "moe.train.adamw.", adamw_fields, GF_N(adamw_fields), &c->adamw, err);
}

moe_status state_file_read_train_config(const gguf_ctx *g, moe_train_config *c, moe_error *err) {
    TRY(gguf_fields_get(g, "moe.train.", train_fields, GF_N(train_fields), c, err));
    return gguf_fields_get(g, "moe.train.adamw.", adamw_fields, GF_N(adamw_fields), &c->adamw, err);
}

int state_file_train_config_diff(const moe_train_config *a, const moe_train_config *b, char *buf, size_t cap) {
    if (model_file_config_diff(&a->model, &b->model, buf, cap)) return 1;
    if (gguf_fields_diff("adamw.", adamw_fields, GF_N(adamw_fields), &a->adamw, &b->adamw, buf, cap)) return 1;
    /* the fields a resumed run may change are skipped */
    moe_train_config x = *a, y = *b;
    x.steps = y.steps = 0;
    x.eval_every = y.eval_every = 0;
    x.eval_batches = y.eval_batches = 0;
    x.save_every = y.save_every = 0;
    return gguf_fields_diff("", train_fields, GF_N(train_fields), &x, &y, buf, cap);
}
