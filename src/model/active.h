/* active.h: the one definition of "parameters active per token" (internal),
 * used by moe_model_count (training: `moe train`'s summary) and by the
 * engine's moe_infer_info.params_active (`moe inspect`, `moe run --stats`),
 * so both report the same number for the same model.
 *
 * Active = every parameter, less the routed experts a token does not use
 * ((E - k) of E in each MoE layer; a fraction for expert choice) and, when
 * the output head is its own matrix, the embedding rows of the other
 * tokens (a token reads one row; a tied head multiplies by all of them). */
#ifndef MOE_MODEL_ACTIVE_H
#define MOE_MODEL_ACTIVE_H

#include <math.h>
#include <stdint.h>

static inline int64_t model_active_params(int64_t total, double unused_expert_params, int64_t embd_rows,
                                          int64_t d_model, int output_tied) {
    double a = (double)total - unused_expert_params;
    if (!output_tied && embd_rows > 0) a -= (double)(embd_rows - 1) * (double)d_model;
    return (int64_t)llround(a);
}

#endif
