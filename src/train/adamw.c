/* adamw.c: the AdamW optimizer with global-norm gradient clipping, and the
 * warmup + cosine learning-rate schedule (formulas in moe.h).
 * Not for: the training loop (trainer.c). Results do not depend on the
 * thread count: the norm is summed over fixed blocks in a fixed order.
 * Work is cut into blocks of NORM_BLOCK elements of every tensor (a model
 * with 64 experts per layer has hundreds of small tensors); the norm and the
 * update each run as one parallel loop over all blocks. */
#include "moe.h"
#include "core/bigalloc.h"
#include "core/error.h"
#include "train/adamw_internal.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#define NORM_BLOCK 65536 /* elements per partial sum of the gradient norm */

struct moe_adamw {
    moe_model *model;
    moe_adamw_config cfg;
    int n_tensors;
    float **m, **v;     /* [n_tensors] moments, each of the elements the model holds */
    double *partial;    /* per-block partial sums of squares */
    size_t n_blocks;
    struct adamw_block { int tensor; int64_t lo, hi; } *blocks; /* [n_blocks] */
    int *sharded;       /* [n_tensors] or NULL: 1 where this rank holds a shard
                           whose norm is summed over norm_comm (adamw_set_shard) */
    moe_comm *norm_comm;
    moe_tensor *tensors; /* [n_tensors] the model's table, read once */
    int64_t t;          /* steps taken */
};

static moe_status build_blocks(moe_adamw *o);

void moe_adamw_config_default(moe_adamw_config *c) {
    c->beta1 = 0.9f;
    c->beta2 = 0.95f;
    c->eps = 1e-8f;
    c->weight_decay = 0.1f;
    c->grad_clip = 1.0f;
}

void moe_adamw_free(moe_adamw *o) {
    if (!o) return;
    for (int i = 0; i < o->n_tensors; i++) {
        if (o->m) free(o->m[i]);
        if (o->v) free(o->v[i]);
    }
    free(o->m);
    free(o->v);
    free(o->partial);
    free(o->blocks);
    free(o->sharded);
    free(o->tensors);
    free(o);
}

moe_status moe_adamw_config_check(const moe_adamw_config *c, moe_error *err) {
    moe_err_clear(err);
    if (!c) return moe_err(err, MOE_ERR_ARG, "adamw config: NULL");
    if (!(c->beta1 >= 0 && c->beta1 < 1) || !(c->beta2 >= 0 && c->beta2 < 1))
        return moe_err(err, MOE_ERR_ARG, "adamw: betas (%g, %g) must lie in [0, 1)", (double)c->beta1, (double)c->beta2);
    if (!(c->eps > 0) || !isfinite(c->eps) || !(c->weight_decay >= 0) || !(c->grad_clip >= 0) ||
        !isfinite(c->weight_decay) || !isfinite(c->grad_clip))
        return moe_err(err, MOE_ERR_ARG, "adamw: eps = %g must be finite and > 0, weight_decay = %g and grad_clip = %g "
                       "finite and >= 0", (double)c->eps, (double)c->weight_decay, (double)c->grad_clip);
    return MOE_OK;
}

moe_status moe_adamw_create(moe_adamw **out, moe_model *model, const moe_adamw_config *c, moe_error *err) {
    if (!out || !model || !c)
        return moe_err(err, MOE_ERR_ARG, "moe_adamw_create: %s is NULL", !out ? "out" : !model ? "model" : "config");
    *out = NULL;
    moe_status cst = moe_adamw_config_check(c, err);
    if (cst != MOE_OK) return cst;
    moe_adamw *o = calloc(1, sizeof *o);
    if (!o) return moe_err(err, MOE_ERR_NOMEM, "adamw: out of memory");
    o->model = model;
    o->cfg = *c;
    o->n_tensors = moe_model_n_tensors(model);
    o->m = calloc((size_t)o->n_tensors, sizeof(float *));
    o->v = calloc((size_t)o->n_tensors, sizeof(float *));
    o->tensors = calloc((size_t)o->n_tensors + 1, sizeof(moe_tensor));
    if (!o->m || !o->v || !o->tensors) goto nomem;
    for (int i = 0; i < o->n_tensors; i++) {
        moe_tensor *t = &o->tensors[i];
        moe_model_tensor(model, i, t, NULL);
        o->m[i] = moe_big_zalloc((size_t)t->held_n * sizeof(float));
        o->v[i] = moe_big_zalloc((size_t)t->held_n * sizeof(float));
        if (!o->m[i] || !o->v[i]) goto nomem;
    }
    if (build_blocks(o) != MOE_OK) goto nomem;
    *out = o;
    return MOE_OK;
nomem:
    moe_adamw_free(o);
    return moe_err(err, MOE_ERR_NOMEM, "adamw: out of memory for the moments");
}

int64_t moe_adamw_steps(const moe_adamw *o) { return o->t; }
void moe_adamw_set_steps(moe_adamw *o, int64_t t) { o->t = t; }

float *moe_adamw_moment(moe_adamw *o, int i, int which) {
    if (i < 0 || i >= o->n_tensors) return NULL;
    return which ? o->v[i] : o->m[i];
}

/* The global L2 norm of every gradient, in double, summed block by block. */
static double grad_norm(moe_adamw *o, int nt) {
    const int64_t nb = (int64_t)o->n_blocks;
    #pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t b = 0; b < nb; b++) {
        const struct adamw_block *k = &o->blocks[b];
        const float *g = o->tensors[k->tensor].grad;
        /* 8 double lanes so the loop vectorises; fixed order, so the norm
         * does not depend on the thread count */
        double s[8] = {0};
        int64_t j = k->lo;
        for (; j + 8 <= k->hi; j += 8)
            for (int l = 0; l < 8; l++) s[l] += (double)g[j + l] * g[j + l];
        for (; j < k->hi; j++) s[0] += (double)g[j] * g[j];
        o->partial[b] = ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));
    }
    double s = 0, sh = 0;
    for (size_t b = 0; b < o->n_blocks; b++) {
        if (o->sharded && o->sharded[o->blocks[b].tensor]) sh += o->partial[b];
        else s += o->partial[b];
    }
    if (o->sharded) {
        moe_error e;
        if (o->norm_comm->allreduce_f64(o->norm_comm, &sh, 1, &e) != MOE_OK) return NAN;
        s += sh;
    }
    return sqrt(s);
}

/* The blocks of NORM_BLOCK elements over the held elements of every
 * tensor (offsets into data, grad and the moments). */
static moe_status build_blocks(moe_adamw *o) {
    size_t n = 0;
    for (int i = 0; i < o->n_tensors; i++)
        n += (size_t)((o->tensors[i].held_n + NORM_BLOCK - 1) / NORM_BLOCK);
    double *partial = calloc(n ? n : 1, sizeof(double));
    struct adamw_block *blocks = calloc(n ? n : 1, sizeof *blocks);
    if (!partial || !blocks) { free(partial); free(blocks); return MOE_ERR_NOMEM; }
    size_t nb = 0;
    for (int i = 0; i < o->n_tensors; i++) {
        const int64_t b = o->tensors[i].held_n;
        for (int64_t x = 0; x < b; x += NORM_BLOCK, nb++) {
            blocks[nb].tensor = i;
            blocks[nb].lo = x;
            blocks[nb].hi = x + NORM_BLOCK < b ? x + NORM_BLOCK : b;
        }
    }
    free(o->partial);
    free(o->blocks);
    o->partial = partial;
    o->blocks = blocks;
    o->n_blocks = n;
    return MOE_OK;
}

moe_status adamw_set_shard(moe_adamw *o, const int *sharded, moe_comm *norm_comm, moe_error *err) {
    int *sh = malloc(sizeof(int) * (size_t)(o->n_tensors ? o->n_tensors : 1));
    if (!sh) return moe_err(err, MOE_ERR_NOMEM, "adamw_set_shard: out of memory");
    memcpy(sh, sharded, sizeof(int) * (size_t)o->n_tensors);
    free(o->sharded);
    o->sharded = sh;
    o->norm_comm = norm_comm;
    return MOE_OK;
}

moe_status moe_adamw_step(moe_adamw *o, float lr, float *norm_out, moe_error *err) {
    const moe_adamw_config *c = &o->cfg;
    if (!moe_model_grads_ready(o->model))
        return moe_err(err, MOE_ERR_ARG, "adamw: the gradients were dropped (moe_model_drop_grads) and no "
                       "backward has completed since; the parameters were not changed");
    /* the model's thread count (<= 0: the OpenMP default) */
    const int cnt = moe_model_get_config(o->model)->n_threads;
    const int nt = cnt > 0 ? cnt : omp_get_max_threads();
    double norm = grad_norm(o, nt);
    if (norm_out) *norm_out = (float)norm;
    if (!isfinite(norm))
        return moe_err(err, MOE_ERR_NONFINITE, "adamw: the gradient norm is %g (a NaN or Inf gradient); "
                       "the parameters were not changed: lower the learning rate", norm);
    if (!isfinite(lr) || lr < 0)
        return moe_err(err, MOE_ERR_ARG, "adamw: learning rate %g", (double)lr);
    float clip = 1.0f;
    if (c->grad_clip > 0) {
        double f = (double)c->grad_clip / (norm + 1e-6);
        if (f < 1.0) clip = (float)f;
    }
    o->t++;
    const float b1 = c->beta1, b2 = c->beta2, eps = c->eps;
    const float bc1 = (float)(1.0 - pow((double)b1, (double)o->t));
    const float bc2 = (float)(1.0 - pow((double)b2, (double)o->t));
    const float step = lr / bc1, bc2_sqrt = sqrtf(bc2);
    const float wd = lr * c->weight_decay;
    const int64_t nb = (int64_t)o->n_blocks;
    #pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t b = 0; b < nb; b++) {
        const struct adamw_block *k = &o->blocks[b];
        const moe_tensor *t = &o->tensors[k->tensor];
        float *p = t->data, *g = t->grad, *m = o->m[k->tensor], *v = o->v[k->tensor];
        const float decay = t->decay ? 1.0f - wd : 1.0f;
        #pragma omp simd
        for (int64_t j = k->lo; j < k->hi; j++) {
            float gj = g[j] * clip;
            float mj = b1 * m[j] + (1.0f - b1) * gj;
            float vj = b2 * v[j] + (1.0f - b2) * gj * gj;
            m[j] = mj;
            v[j] = vj;
            p[j] = p[j] * decay - step * mj / (sqrtf(vj) / bc2_sqrt + eps);
        }
    }
    return MOE_OK;
}

float moe_lr_schedule(int64_t step, int64_t total, int64_t warmup, float lr, float min_lr) {
    if (warmup > 0 && step < warmup) return lr * (float)(step + 1) / (float)warmup;
    int64_t span = total - warmup - 1;
    if (span <= 0) return lr;
    double p = (double)(step - warmup) / (double)span;
    if (p > 1) p = 1;
    return min_lr + 0.5f * (lr - min_lr) * (float)(1.0 + cos(3.14159265358979323846 * p));
}
