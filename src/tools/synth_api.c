/* synth_api.c: the public face of the random-model generator
 * (moe_synth_model in moe_infer.h): turns a small config (arch, weight type
 * by name, preset, a few overridden sizes) into a synth_spec and writes it.
 *
 * For: `moe synth`, the inference benchmarks and users who want a test model
 * through the public API. Not for: the generator itself (synth.c) or any
 * spec field beyond the few a user needs (tests use synth.h directly).
 */
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "core/error.h"
#include "tools/synth.h"
#include "io/gguf.h"
#include "moe_infer.h"

void moe_synth_config_default(moe_synth_config *c) {
    memset(c, 0, sizeof *c);
    c->arch = "mixtral";
    c->wtype = "f32";
    c->seed = 1;
}

/* The GGUF type id of a name ("q4_K", "Q8_0", "f32" ...), or -1. */
static int type_of(const char *name) {
    for (uint32_t t = 0; t < GGUF_T_COUNT; t++)
        if (!strcasecmp(gguf_type_name(t), name)) return (int)t;
    return -1;
}

static const char *const known_arch[] = {"llama",    "mixtral", "qwen2moe",  "qwen3moe",
                                         "olmoe",    "deepseek", "granitemoe"};

/* Fills s from c; the spec's own checks (synth_count) catch the rest. */
static moe_status make_spec(synth_spec *s, const moe_synth_config *c, moe_error *err) {
    const char *arch = c->arch ? c->arch : "mixtral";
    int known = 0;
    for (size_t i = 0; i < sizeof known_arch / sizeof known_arch[0]; i++)
        known |= !strcmp(arch, known_arch[i]);
    if (!known)
        return moe_err(err, MOE_ERR_ARG, "synth: arch \"%s\" unknown, expected llama, mixtral, "
                       "qwen2moe, qwen3moe, olmoe, deepseek or granitemoe", arch);
    const char *wname = c->wtype ? c->wtype : "f32";
    const int wt = type_of(wname);
    if (wt < 0)
        return moe_err(err, MOE_ERR_ARG, "synth: weight type \"%s\" unknown, expected f32, f16, "
                       "bf16, q4_0, q4_1, q5_0, q5_1, q8_0, q2_K, q3_K, q4_K, q5_K or q6_K", wname);
    if (c->d_model < 0 || c->n_layers < 0 || c->n_experts < 0 || c->top_k < 0 || c->d_ff < 0)
        return moe_err(err, MOE_ERR_ARG, "synth: d_model %d, n_layers %d, n_experts %d, top_k %d, "
                       "d_ff %d: expected >= 0 (0: the preset's)", c->d_model, c->n_layers,
                       c->n_experts, c->top_k, c->d_ff);
    if (c->bench) {
        synth_spec_bench(s, arch);
    } else {
        synth_spec_default(s, arch);
        if (gguf_type_block_size((uint32_t)wt) == 256) synth_spec_scale_dims(s, 4);
    }
    s->wtype = (uint32_t)wt;
    if (c->seed) s->seed = c->seed;
    if (c->d_model > 0 && c->d_model != s->d_model) {
        /* keep the head count and the ratio q width : d_model */
        const int64_t hd = (int64_t)s->head_dim * c->d_model;
        if (hd % s->d_model)
            return moe_err(err, MOE_ERR_ARG, "synth: d_model = %d: expected a multiple of %d "
                           "(%d heads)", c->d_model, s->d_model / s->head_dim, s->n_heads);
        s->head_dim = (int)(hd / s->d_model);
        s->d_model = c->d_model;
    }
    if (c->n_layers > 0) s->n_layers = c->n_layers;
    if (s->n_dense_first >= s->n_layers) s->n_dense_first = s->n_layers - 1;
    if (c->n_experts > 0) {
        s->n_experts = c->n_experts;
        if (s->top_k > s->n_experts) s->top_k = s->n_experts;
    }
    if (c->top_k > 0) s->top_k = c->top_k;
    if (c->d_ff > 0) s->d_ff = c->d_ff;
    return MOE_OK;
}

moe_status moe_synth_model(const char *path, const moe_synth_config *c, int64_t *params_total,
                           moe_error *err) {
    if (!path || !c)
        return moe_err(err, MOE_ERR_ARG, "moe_synth_model: %s is NULL", path ? "config" : "path");
    synth_spec s;
    moe_status st = make_spec(&s, c, err);
    int64_t total = 0;
    if (!st) {
        s.progress = c->progress;
        s.progress_user = c->progress_user;
    }
    if (!st) st = synth_count(&s, &total, NULL, err);
    if (!st) st = synth_write(&s, path, err);
    if (!st && params_total) *params_total = total;
    return st;
}
