/* trainer_dist.c: one training run over several ranks (expert and data
 * parallelism), through the communicator of core/comm.h.
 *
 * Every rank cuts the same global batch (same loader state) and runs rows
 * [r B/P, (r+1) B/P) of it; the MoE layers route the global batch and send
 * each row to its expert's owner (layer_dist.c). The loss is the global
 * batch's mean; gradients are summed over the ranks (an expert's gradient is
 * non-zero only on its owners), so every rank holds the gradient of the
 * one-process run up to the order of fp32 sums, and takes the same AdamW
 * step with the same global-norm clipping, on the replicated tensors and
 * its own experts only. A rank allocates only its experts' parameters,
 * gradients and moments (trainer_shard, at moe_trainer_create / _resume
 * with moe_train_config.dist); before a checkpoint rank 0 gathers them
 * from their owners and writes the checkpoints, in the one-process format.
 * Not for: MPI itself (src/dist), the step loop (trainer.c).
 */
#include "train/trainer_internal.h"
#include "core/error.h"
#include "layer/layer.h"
#include "model/model.h"
#include "train/adamw_internal.h"
#include "train/state_file.h"
#include "core/bigalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What every rank must agree on before the first step. */
typedef struct dist_fingerprint {
    char version[32];        /* moe_version() */
    char build[32];          /* the compile time of this file */
    int size, expert_parallel;
    uint64_t tok_fp, src_fp, n_tokens, loader;
    int64_t step;
    moe_train_config cfg;    /* compared field by field (state_file.c) */
} dist_fingerprint;

void trainer_shard(const moe_train_config *c, int *lo, int *hi) {
    const int E = c->model.moe.n_experts;
    const int ep = c->dist ? moe_dist_expert_parallel(c->dist) : 1;
    *lo = 0;
    *hi = E;
    /* E % EP != 0 is refused by trainer_set_comm, on every rank at once */
    if (ep > 1 && E % ep == 0) {
        const int er = moe_dist_rank(c->dist) % ep;
        *lo = er * (E / ep);
        *hi = (er + 1) * (E / ep);
    }
}

moe_status trainer_set_comm(moe_trainer *t, moe_comm *comm, int ep, moe_error *err) {
    const moe_train_config *c = &t->cfg;
    const moe_model_config *mc = &c->model;
    const int P = comm->size;
    /* agreement: same build, configuration, data and position */
    dist_fingerprint me, *all = calloc((size_t)P, sizeof *all);
    if (!all) return moe_err(err, MOE_ERR_NOMEM, "distributed: out of memory");
    memset(&me, 0, sizeof me);
    snprintf(me.version, sizeof me.version, "%s", moe_version());
    snprintf(me.build, sizeof me.build, "%s %s", __DATE__, __TIME__);
    me.size = P;
    me.expert_parallel = ep;
    me.tok_fp = t->tok_fp;
    me.src_fp = t->src_fp;
    me.n_tokens = t->n_tokens;
    me.loader = data_loader_state(&t->loader);
    me.step = t->step;
    me.cfg = *c;
    moe_status st = comm->allgather(comm, all, &me, sizeof me, err);
    char diff[256];
    for (int r = 1; r < P && st == MOE_OK; r++) {
        const dist_fingerprint *a = &all[0], *b = &all[r];
        const char *what = NULL;
        diff[0] = '\0';
        if (strcmp(a->version, b->version) || strcmp(a->build, b->build)) {
            what = "build";
            snprintf(diff, sizeof diff, "%s (%s) vs %s (%s)", a->version, a->build, b->version, b->build);
        } else if (a->expert_parallel != b->expert_parallel) {
            what = "--expert-parallel";
            snprintf(diff, sizeof diff, "%d vs %d", a->expert_parallel, b->expert_parallel);
        } else if (state_file_train_config_diff(&a->cfg, &b->cfg, diff, sizeof diff)) {
            what = "configuration";
        } else if (a->cfg.steps != b->cfg.steps || a->cfg.eval_every != b->cfg.eval_every ||
                   a->cfg.eval_batches != b->cfg.eval_batches || a->cfg.save_every != b->cfg.save_every) {
            what = "configuration";
            snprintf(diff, sizeof diff, "steps/eval_every/eval_batches/save_every %lld/%lld/%d/%lld vs %lld/%lld/%d/%lld",
                     (long long)a->cfg.steps, (long long)a->cfg.eval_every, a->cfg.eval_batches,
                     (long long)a->cfg.save_every, (long long)b->cfg.steps, (long long)b->cfg.eval_every,
                     b->cfg.eval_batches, (long long)b->cfg.save_every);
        } else if (a->tok_fp != b->tok_fp || a->src_fp != b->src_fp || a->n_tokens != b->n_tokens) {
            what = "data fingerprint";
            snprintf(diff, sizeof diff, "tokens %llu, source %016llx, tokenizer %016llx vs %llu, %016llx, %016llx",
                     (unsigned long long)a->n_tokens, (unsigned long long)a->src_fp, (unsigned long long)a->tok_fp,
                     (unsigned long long)b->n_tokens, (unsigned long long)b->src_fp, (unsigned long long)b->tok_fp);
        } else if (a->step != b->step || a->loader != b->loader) {
            what = "position";
            snprintf(diff, sizeof diff, "step %lld vs %lld", (long long)a->step, (long long)b->step);
        }
        if (what)
            st = moe_err(err, MOE_ERR_ARG, "distributed: rank %d disagrees with rank 0 on the %s: %s "
                         "(rank 0 vs rank %d)", r, what, diff, r);
    }
    free(all);
    if (st != MOE_OK) return st;
    /* the shapes, once every rank is known to have the same (so that all
       fail together) */
    if (ep < 1 || P % ep)
        return moe_err(err, MOE_ERR_ARG, "distributed: --expert-parallel %d does not divide the %d ranks "
                       "(ranks = expert-parallel x data-parallel)", ep, P);
    if (c->batch % P)
        return moe_err(err, MOE_ERR_ARG, "distributed: --batch %d is not a multiple of the %d ranks "
                       "(each rank runs batch / ranks sequences of the global batch)", c->batch, P);
    int has_moe = 0;
    for (int l = 0; l < mc->n_layers; l++) has_moe |= moe_model_moe_layer(t->model, l) != NULL;
    if (has_moe && mc->moe.n_experts % ep)
        return moe_err(err, MOE_ERR_ARG, "distributed: %d experts cannot be sharded evenly over "
                       "--expert-parallel %d ranks (E %% EP = %d)", mc->moe.n_experts, ep, mc->moe.n_experts % ep);
    /* shard the experts: rank = dp * EP + expert group; the model holds
       that group's weights since its creation */
    const int E = mc->moe.n_experts, er = comm->rank % ep, dp = comm->rank / ep;
    if (has_moe && (t->e_lo != er * (E / ep) || t->e_hi != (er + 1) * (E / ep)))
        return moe_err(err, MOE_ERR_ARG, "distributed: rank %d holds experts %d..%d, but runs experts %d..%d of "
                       "--expert-parallel %d: create or resume the trainer with moe_train_config.dist set to the "
                       "job, so that each rank allocates its own experts", comm->rank, t->e_lo, t->e_hi - 1,
                       er * (E / ep), (er + 1) * (E / ep) - 1, ep);
    for (int l = 0; l < mc->n_layers && st == MOE_OK; l++) {
        moe_layer *L = moe_model_moe_layer(t->model, l);
        if (L) st = layer_set_dist(L, comm, ep, err);
    }
    if (st != MOE_OK) return st;
    if (t->ep_comm.release) return moe_err(err, MOE_ERR_ARG, "distributed: the trainer is attached already");
    st = comm->split(comm, dp, er, &t->ep_comm, err);
    if (st == MOE_OK) st = comm->split(comm, er, dp, &t->dp_comm, err);
    if (st != MOE_OK) return st;
    /* the optimizer updates the replicated tensors and this rank's experts */
    const int n = moe_model_n_tensors(t->model);
    t->per_expert = calloc((size_t)n, sizeof(int64_t));
    int *sh = calloc((size_t)n, sizeof(int));
    if (!t->per_expert || !sh) st = moe_err(err, MOE_ERR_NOMEM, "distributed: out of memory");
    for (int i = 0; i < n && st == MOE_OK; i++) {
        moe_tensor tn;
        moe_model_tensor(t->model, i, &tn, NULL);
        for (int l = 0; l < mc->n_layers; l++) {
            moe_layer *L = moe_model_moe_layer(t->model, l);
            if (!L) continue;
            moe_layer_weights g = moe_layer_grads(L);
            if (tn.grad == g.gate || tn.grad == g.up || tn.grad == g.down) {
                t->per_expert[i] = tn.n / E;
                sh[i] = 1;
            }
        }
    }
    if (st == MOE_OK) st = adamw_set_shard(t->opt, sh, &t->ep_comm, err);
    free(sh);
    /* the all-reduces of the gradients: tensors of one block (when the
       backward finishes them, for the overlap) and one communicator whose
       gradients are contiguous (the model's and each layer's buffers) go
       in one call */
    t->spans = calloc((size_t)n, sizeof *t->spans);
    t->reqs = calloc((size_t)n, sizeof(moe_comm_req));
    if (st == MOE_OK && (!t->spans || !t->reqs)) st = moe_err(err, MOE_ERR_NOMEM, "distributed: out of memory");
    for (int i = 0; i < n && st == MOE_OK; i++) {
        moe_tensor tn;
        moe_model_tensor(t->model, i, &tn, NULL);
        const int ex = t->per_expert[i] != 0;
        if ((ex ? t->dp_comm.size : P) == 1) continue; /* nothing to sum */
        int l = 0, grp;
        if (sscanf(tn.name, "blk.%d.", &l) == 1) grp = l;
        else if (!strcmp(tn.name, "token_embd.weight")) grp = mc->n_layers + 1; /* tied too */
        else grp = mc->n_layers; /* output_norm, output */
        struct grad_span *last = t->n_spans ? &t->spans[t->n_spans - 1] : NULL;
        if (last && last->group == grp && last->experts == ex && last->g + last->n == tn.grad) {
            last->n += (size_t)tn.held_n;
        } else {
            t->spans[t->n_spans++] = (struct grad_span){tn.grad, (size_t)tn.held_n, grp, ex};
        }
    }
    if (st != MOE_OK) return st;
    t->comm = comm;
    t->expert_parallel = ep;
    return MOE_OK;
}

moe_status trainer_dist_loss(moe_trainer *t, float *loss, moe_error *err) {
    moe_model_losses ls = moe_model_get_losses(t->model);
    double v[2] = {(double)*loss * ls.n_targets, (double)ls.n_targets};
    moe_status st = t->comm->allreduce_f64(t->comm, v, 2, err);
    if (st != MOE_OK) return st;
    *loss = v[1] > 0 ? (float)(v[0] / v[1]) : 0.0f;
    model_set_loss_den(t->model, (int)v[1]);
    return MOE_OK;
}

/* Starts (overlap) or runs (blocking) the sum over the ranks of span i's
 * gradients: replicated tensors' over all ranks, expert shards' over the
 * data-parallel replicas holding them. */
static moe_status reduce_span(moe_trainer *t, int i, int start, moe_error *err) {
    const struct grad_span *sp = &t->spans[i];
    moe_comm *c = sp->experts ? &t->dp_comm : t->comm;
    if (!start) return c->allreduce_f32(c, sp->g, sp->n, err);
    /* the step's requests, in start order (finished by sync_grads) */
    return c->iallreduce_f32(c, sp->g, sp->n, &t->reqs[t->n_reqs++], err);
}

/* model.h's grads_ready: the gradients of group l are final, their sums start. */
static moe_status grads_ready(void *user, int l, moe_error *err) {
    moe_trainer *t = user;
    for (int i = 0; i < t->n_spans; i++)
        if (t->spans[i].group == l) {
            moe_status st = reduce_span(t, i, 1, err);
            if (st != MOE_OK) return st;
        }
    return MOE_OK;
}

void trainer_dist_before_backward(moe_trainer *t, int last) {
    t->overlapping = last && t->comm->overlap;
    t->n_reqs = 0;
    model_set_grads_ready(t->model, t->overlapping ? grads_ready : NULL, t);
}

moe_status trainer_dist_sync_grads(moe_trainer *t, moe_error *err) {
    moe_model *m = t->model;
    moe_status st = MOE_OK;
    if (t->overlapping) {
        /* the embedding's sum (its gradient is final only now), then wait
           for every sum the backward started (a request needs no
           communicator to be waited on: the job's counts the time) */
        st = grads_ready(t, moe_model_get_config(m)->n_layers + 1, err);
        if (st == MOE_OK) st = t->comm->waitall(t->comm, t->reqs, t->n_reqs, err);
        model_set_grads_ready(m, NULL, NULL);
        t->overlapping = 0;
        t->n_reqs = 0;
        return st;
    }
    for (int i = 0; i < t->n_spans && st == MOE_OK; i++) st = reduce_span(t, i, 0, err);
    return st;
}

moe_status trainer_dist_gather(moe_trainer *t, float ***whole, moe_error *err) {
    moe_model *m = t->model;
    const int n = moe_model_n_tensors(m);
    *whole = NULL;
    if (t->expert_parallel == 1 || t->dp_comm.rank != 0) return MOE_OK; /* nothing in parts, or another replica */
    float **w = NULL;
    int ok = 1;
    if (t->comm->rank == 0) {
        /* every buffer first, so that out of memory is known before any
           rank enters a gather (and told to them: no hang) */
        w = calloc((size_t)(3 * n), sizeof(float *));
        for (int i = 0; w && i < n && ok; i++) {
            moe_tensor tn;
            moe_model_tensor(m, i, &tn, NULL);
            for (int b = 0; b < 3 && tn.held_n != tn.n && ok; b++)
                ok = (w[b * n + i] = moe_big_zalloc(sizeof(float) * (size_t)tn.n)) != NULL;
        }
        ok = ok && w;
    }
    moe_status st = t->ep_comm.bcast(&t->ep_comm, &ok, sizeof ok, 0, err);
    if (st == MOE_OK && !ok)
        st = moe_err(err, MOE_ERR_NOMEM, "checkpoint: rank 0 has no memory for the whole experts (%s)",
                     "parameters and moments, gathered to be written");
    for (int i = 0; i < n && st == MOE_OK; i++) {
        moe_tensor tn;
        moe_model_tensor(m, i, &tn, NULL);
        if (tn.held_n == tn.n) continue;
        const float *part[3] = {tn.data, moe_adamw_moment(t->opt, i, 0), moe_adamw_moment(t->opt, i, 1)};
        /* the expert groups' parts in rank order of ep_comm (= expert order) */
        for (int b = 0; b < 3 && st == MOE_OK; b++)
            st = t->ep_comm.gather(&t->ep_comm, w ? w[b * n + i] : NULL, part[b], sizeof(float) * (size_t)tn.held_n,
                                   0, err);
    }
    if (st != MOE_OK) { trainer_dist_whole_free(t, w); return st; }
    *whole = w;
    return MOE_OK;
}

void trainer_dist_whole_free(moe_trainer *t, float **whole) {
    if (!whole) return;
    for (int i = 0; i < 3 * moe_model_n_tensors(t->model); i++) free(whole[i]);
    free(whole);
}

void trainer_dist_free(moe_trainer *t) {
    free(t->spans);
    free(t->reqs);
    if (t->ep_comm.release) t->ep_comm.release(&t->ep_comm);
    if (t->dp_comm.release) t->dp_comm.release(&t->dp_comm);
    free(t->per_expert);
}
