/* test_train_infer.c: a model trained by moe gives the same logits through
 * the inference engine (GGUF file, KV cache, per-expert batching) as through
 * the training forward pass: relative error <= 1e-5 in fp32. Layouts: all
 * MoE (Mixtral), MoE every other layer with a dense first block and tied
 * embeddings, and dense; after a few AdamW steps so no weight is at init. */
#include "testutil.h"
#include "moe.h"
#include "moe_infer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void one(const char *name, int moe_every, int dense_first, int tie, const moe_tokenizer *tok) {
    moe_model_config c;
    moe_model_config_default(&c);
    c.vocab_size = moe_tokenizer_n_vocab(tok);
    c.d_model = 48;
    c.n_layers = 3;
    c.n_heads = 4;
    c.n_kv_heads = 2;
    c.ctx_len = 40;
    c.d_ff = 80;
    c.moe.n_experts = 4;
    c.moe.top_k = 2;
    c.moe.d_ff = 40;
    c.moe_every = moe_every;
    c.n_dense_first = dense_first;
    c.tie_embeddings = tie;
    c.max_batch = 2;
    c.n_threads = 2;
    moe_model *m = NULL;
    moe_adamw *o = NULL;
    moe_infer *inf = NULL;
    moe_error err;
    char path[128];
    snprintf(path, sizeof path, "/tmp/moe-test-train-infer-%d-%s.gguf", (int)getpid(), name);
    const int T = 40, V = c.vocab_size;
    int32_t x[80], y[80];
    float *lg = malloc(sizeof(float) * (size_t)T * V);
    if (!lg) return;
    moe_adamw_config ac;
    moe_adamw_config_default(&ac);
    if (moe_model_create(&m, &c, &err) || moe_adamw_create(&o, m, &ac, &err)) {
        tu_fail(name, "create: %s", err.msg);
        goto done;
    }
    moe_model_init_params(m, 5);
    unsigned s = 99;
    for (int step = 0; step < 3; step++) {
        for (int i = 0; i < 80; i++) { s = s * 1664525u + 1013904223u; x[i] = (int32_t)((s >> 9) % (unsigned)V); }
        for (int i = 0; i < 80; i++) y[i] = x[(i + 1) % 80];
        float loss;
        moe_model_zero_grads(m);
        if (moe_model_forward(m, x, y, 2, T, 1, &loss) || moe_model_backward(m) || moe_adamw_step(o, 3e-3f, NULL, &err)) {
            tu_fail(name, "training step: %s %s", moe_model_errmsg(m), err.msg);
            goto done;
        }
    }
    if (moe_model_save(m, tok, path, &err) != MOE_OK) { tu_fail(name, "save: %s", err.msg); goto done; }
    moe_infer_options io;
    moe_infer_options_default(&io);
    io.n_threads = 2;
    if (moe_infer_open(&inf, path, &io, &err) != MOE_OK) { tu_fail(name, "moe_infer_open: %s", err.msg); goto done; }
    /* the training forward of one sequence, dropless */
    if (moe_model_forward(m, x, NULL, 1, T, 0, NULL) != MOE_OK) { tu_fail(name, "%s", moe_model_errmsg(m)); goto done; }
    const float *ref = moe_model_logits(m);
    /* the engine: the prompt as one batch, then the same tokens one by one */
    double worst = 0, worst_inc = 0, scale = 0;
    if (moe_infer_eval(inf, x, T, 0, lg, 1, &err) != MOE_OK) { tu_fail(name, "eval: %s", err.msg); goto done; }
    for (size_t i = 0; i < (size_t)T * V; i++) scale = fmax(scale, fabs(ref[i]));
    for (size_t i = 0; i < (size_t)T * V; i++) worst = fmax(worst, fabs(lg[i] - ref[i]));
    moe_infer_reset(inf);
    for (int t = 0; t < T; t++) {
        if (moe_infer_eval(inf, &x[t], 1, t, lg, 0, &err) != MOE_OK) { tu_fail(name, "eval: %s", err.msg); goto done; }
        for (int v = 0; v < V; v++) worst_inc = fmax(worst_inc, fabs(lg[v] - ref[(size_t)t * V + v]));
    }
    worst /= scale;
    worst_inc /= scale;
    if (worst <= 1e-5 && worst_inc <= 1e-5)
        tu_okf("train_infer/%s (max rel err %.2e batch, %.2e token by token; %d tensors)", name, worst, worst_inc,
               moe_model_n_tensors(m));
    else
        tu_fail(name, "inference logits differ from training logits: %.3e (batch), %.3e (token by token), limit 1e-5",
                worst, worst_inc);
done:
    moe_infer_close(inf);
    moe_adamw_free(o);
    moe_model_free(m);
    free(lg);
    unlink(path);
}

int main(void) {
    char *text;
    size_t n;
    moe_error err;
    moe_tokenizer *tok;
    if (moe_corpus_text(&text, &n, -1, 200000, 3, &err) != MOE_OK ||
        moe_tokenizer_train(&tok, text, n, 400, &err) != MOE_OK) {
        tu_fail("train_infer/setup", "%s", err.msg);
        return 1;
    }
    free(text);
    one("mixtral_layout", 1, 0, 0, tok);
    one("mixed_every_other_tied", 2, 1, 1, tok);
    one("dense", 0, 0, 0, tok);
    moe_tokenizer_free(tok);
    return tu_exit_code();
}
