/* test_shard.c: a model holding a part of its experts (model_create with
 * [ex_lo, ex_hi): what a rank of an expert-parallel run allocates), without
 * MPI. Checks:
 *   shard/table      the stacked expert tensors say which elements are held
 *                    (held_lo, held_n), every other tensor is whole
 *   shard/init       moe_model_init_params gives the held elements the
 *                    values of the whole model's (bitwise)
 *   shard/memory     the layers' parameter buffers hold 1/2 of the experts
 *   shard/refuse     a forward of the part alone and a save of it are
 *                    errors that say why (no silent wrong result)
 *   shard/optimizer  AdamW's moments are the held size and a step changes
 *                    only held elements, equal to the whole model's step
 *                    on those elements
 * The trajectories under MPI are tests/test_dist.py's.
 */
#include "moe.h"
#include "layer/layer.h"
#include "model/model.h"
#include "testutil.h"

#include <stdio.h>
#include <string.h>

static void tiny(moe_model_config *c) {
    moe_model_config_default(c);
    c->vocab_size = 23;
    c->d_model = 16;
    c->n_heads = 2;
    c->n_kv_heads = 1;
    c->n_layers = 2;
    c->ctx_len = 5;
    c->max_batch = 2;
    c->d_ff = 20;
    c->n_threads = 1;
    c->moe.n_experts = 4;
    c->moe.top_k = 2;
    c->moe.d_ff = 12;
}

int main(void) {
    moe_model_config c;
    tiny(&c);
    moe_error err;
    moe_model *whole = NULL, *part = NULL;
    if (moe_model_create(&whole, &c, &err) != MOE_OK || model_create(&part, &c, 2, 4, &err) != MOE_OK) {
        tu_fail("shard/create", "%s", err.msg);
        return tu_exit_code();
    }
    moe_model_init_params(whole, 7);
    moe_model_init_params(part, 7);
    const int n = moe_model_n_tensors(whole);
    int table_ok = n == moe_model_n_tensors(part), init_ok = 1, n_exp = 0;
    char why[600] = "";
    for (int i = 0; i < n && table_ok; i++) {
        moe_tensor a, b;
        moe_model_tensor(whole, i, &a, NULL);
        moe_model_tensor(part, i, &b, NULL);
        const int exps = strstr(a.name, "_exps.") != NULL;
        n_exp += exps;
        const int64_t per = a.n / 4;
        if (a.held_lo != 0 || a.held_n != a.n || b.n != a.n ||
            b.held_lo != (exps ? 2 * per : 0) || b.held_n != (exps ? 2 * per : a.n)) {
            table_ok = 0;
            snprintf(why, sizeof why, "%s: whole held %lld+%lld, part %lld+%lld of %lld", a.name,
                     (long long)a.held_lo, (long long)a.held_n, (long long)b.held_lo, (long long)b.held_n,
                     (long long)a.n);
        }
        if (table_ok && memcmp(a.data + b.held_lo, b.data, sizeof(float) * (size_t)b.held_n)) {
            init_ok = 0;
            snprintf(why, sizeof why, "%s: the held values differ from the whole model's", a.name);
        }
    }
    if (table_ok && n_exp == 3 * c.n_layers) tu_ok("shard/table");
    else tu_fail("shard/table", "%s (%d expert tensors)", why, n_exp);
    if (init_ok) tu_ok("shard/init");
    else tu_fail("shard/init", "%s", why);

    /* the layers' own buffers: the experts' share of them halves */
    moe_layer *la = moe_model_moe_layer(whole, 0), *lb = moe_model_moe_layer(part, 0);
    const size_t exp_floats = (size_t)3 * 4 * 12 * 16;
    if (la && lb && moe_layer_param_count(la) - moe_layer_param_count(lb) == exp_floats / 2)
        tu_ok("shard/memory");
    else
        tu_fail("shard/memory", "layer parameters %zu whole, %zu part; expected %zu fewer", la ? moe_layer_param_count(la) : 0,
                lb ? moe_layer_param_count(lb) : 0, exp_floats / 2);

    /* the part alone cannot run or be saved */
    int32_t tok[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, tgt[10] = {2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
    float loss;
    moe_error e1, e2;
    moe_status s1 = moe_model_forward(part, tok, tgt, 2, 5, 1, &loss, &e1);
    moe_status s2 = moe_model_save(part, NULL, "/nonexistent-dir/x.gguf", &e2);
    if (s1 != MOE_OK && strstr(e1.msg, "holds experts") && s2 != MOE_OK && strstr(e2.msg, "holds"))
        tu_ok("shard/refuse");
    else
        tu_fail("shard/refuse", "forward %d '%s', save %d '%s'", s1, s1 ? e1.msg : "", s2, s2 ? e2.msg : "");

    /* AdamW on the held elements: the whole model's step on them (the
       gradients set by hand: the part has no backward of its own) */
    moe_adamw_config ac;
    moe_adamw_config_default(&ac);
    ac.grad_clip = 0.0f; /* the norm of the part is not the whole's without its comm */
    moe_adamw *oa = NULL, *ob = NULL;
    int opt_ok = moe_adamw_create(&oa, whole, &ac, &err) == MOE_OK && moe_adamw_create(&ob, part, &ac, &err) == MOE_OK;
    if (opt_ok) {
        moe_model_zero_grads(whole);
        moe_model_zero_grads(part);
        tu_rng r = {11};
        for (int i = 0; i < n; i++) {
            moe_tensor a, b;
            moe_model_tensor(whole, i, &a, NULL);
            moe_model_tensor(part, i, &b, NULL);
            tu_fill(&r, a.grad, (size_t)a.n, 0.1f);
            memcpy(b.grad, a.grad + b.held_lo, sizeof(float) * (size_t)b.held_n);
        }
        opt_ok = moe_adamw_step(oa, 1e-2f, NULL, &err) == MOE_OK && moe_adamw_step(ob, 1e-2f, NULL, &err) == MOE_OK;
        for (int i = 0; i < n && opt_ok; i++) {
            moe_tensor a, b;
            moe_model_tensor(whole, i, &a, NULL);
            moe_model_tensor(part, i, &b, NULL);
            if (memcmp(a.data + b.held_lo, b.data, sizeof(float) * (size_t)b.held_n) ||
                memcmp(moe_adamw_moment(oa, i, 1) + b.held_lo, moe_adamw_moment(ob, i, 1),
                       sizeof(float) * (size_t)b.held_n)) {
                opt_ok = 0;
                snprintf(why, sizeof why, "%s: the step differs from the whole model's", a.name);
            }
        }
    } else {
        snprintf(why, sizeof why, "%s", err.msg);
    }
    if (opt_ok) tu_ok("shard/optimizer");
    else tu_fail("shard/optimizer", "%s", why);
    moe_adamw_free(oa);
    moe_adamw_free(ob);
    moe_model_free(whole);
    moe_model_free(part);
    return tu_exit_code();
}
