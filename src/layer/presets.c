/* presets.c: named routing methods, so a user (and `moe bench layer
 * --router NAME`) can select a method of docs/ROUTING.md by its name. Each
 * preset only sets the routing fields; sizes, k and E stay the caller's,
 * except where the method fixes them (Switch: k = 1, GShard: k = 2). */
#include "layer/layer.h"

#include <string.h>

static const char *const names[] = {
    "softmax", "switch", "noisy", "gshard", "expert-choice", "sigmoid", "group",
    "shared", "top-p", "hash", "relu", NULL,
};

const char *const *moe_router_names(void) { return names; }

moe_status moe_layer_config_router(moe_layer_config *c, const char *name, moe_error *err) {
    if (!c || !name) return moe_err(err, MOE_ERR_ARG, "moe_layer_config_router: NULL argument");
    if (!strcmp(name, "softmax")) {          /* Mixtral: softmax top-k, renormalised */
        c->gate = MOE_GATE_SOFTMAX; c->select = MOE_SELECT_TOPK; c->renormalize = 1;
        if (c->aux_loss_coef == 0.0f) c->aux_loss_coef = 0.01f;
    } else if (!strcmp(name, "switch")) {    /* Switch: top-1, capacity 1.25, jitter */
        c->gate = MOE_GATE_SOFTMAX; c->select = MOE_SELECT_TOPK; c->top_k = 1; c->renormalize = 0;
        c->capacity_factor = 1.25f; c->jitter = 0.01f; c->aux_loss_coef = 0.01f;
        if (c->max_top_k && c->max_top_k < 1) c->max_top_k = 0;
    } else if (!strcmp(name, "noisy")) {     /* Shazeer 2017 */
        c->gate = MOE_GATE_SOFTMAX; c->select = MOE_SELECT_TOPK; c->renormalize = 1; c->noisy_gate = 1;
        c->importance_loss_coef = 0.1f; c->load_loss_coef = c->top_k < c->n_experts ? 0.1f : 0.0f;
    } else if (!strcmp(name, "gshard")) {    /* GShard top-2 */
        c->gate = MOE_GATE_SOFTMAX; c->select = MOE_SELECT_TOPK; c->top_k = 2; c->renormalize = 1;
        c->gshard_random_second = 1; c->balance_top1_only = 1; c->aux_loss_coef = 0.01f;
        c->capacity_factor = 2.0f;
    } else if (!strcmp(name, "expert-choice")) {
        c->gate = MOE_GATE_SOFTMAX; c->select = MOE_SELECT_EXPERT_CHOICE; c->ec_capacity = (float)c->top_k;
        c->capacity_factor = MOE_DROPLESS; c->ec_inference = 0;
    } else if (!strcmp(name, "sigmoid")) {   /* DeepSeek-V3, aux-loss-free */
        c->gate = MOE_GATE_SIGMOID; c->select = MOE_SELECT_TOPK; c->renormalize = 1;
        c->bias_update_rate = 0.01f; c->aux_loss_coef = 0.0f; /* docs/TRAINING.md: why not 0.001 */
    } else if (!strcmp(name, "group")) {     /* DeepSeek-V3 group-limited */
        c->gate = MOE_GATE_SIGMOID; c->select = MOE_SELECT_TOPK; c->renormalize = 1;
        c->bias_update_rate = 0.01f;
        c->n_groups = c->n_experts % 4 == 0 ? 4 : 1;
        c->topk_groups = c->n_groups > 1 ? 2 : 1;
    } else if (!strcmp(name, "shared")) {    /* Qwen-MoE: top-k plus a gated shared expert */
        c->gate = MOE_GATE_SOFTMAX; c->select = MOE_SELECT_TOPK;
        c->shared_d_ff = c->d_ff; c->shared_gate = 1;
    } else if (!strcmp(name, "top-p")) {     /* Huang et al. 2024 */
        c->gate = MOE_GATE_SOFTMAX; c->select = MOE_SELECT_TOPP; c->top_p = 0.4f; c->renormalize = 1;
        c->entropy_loss_coef = 0.0001f;
    } else if (!strcmp(name, "hash")) {      /* Roller et al. 2021 */
        c->select = MOE_SELECT_HASH; c->aux_loss_coef = 0.0f; c->z_loss_coef = 0.0f;
    } else if (!strcmp(name, "relu")) {      /* ReMoE */
        c->gate = MOE_GATE_RELU; c->select = MOE_SELECT_ALL; c->relu_l1_coef = 1e-3f;
        c->relu_target_sparsity = 1.0f - (float)c->top_k / (float)c->n_experts;
        c->aux_loss_coef = 0.0f;
    } else {
        return moe_err(err, MOE_ERR_ARG, "unknown router '%s' (softmax, switch, noisy, gshard, expert-choice, "
                       "sigmoid, group, shared, top-p, hash, relu)", name);
    }
    return MOE_OK;
}
