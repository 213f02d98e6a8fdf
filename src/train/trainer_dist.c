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
 * its own experts only (adamw_set_shard); before a checkpoint the experts'
 * parameters and moments are gathered (broadcast from their owners). Rank 0 writes the
 * checkpoints, in the one-process format.
 * Not for: MPI itself (src/dist), the step loop (trainer.c).
 */
#include "train/trainer_internal.h"
#include "core/error.h"
#include "layer/layer.h"
#include "model/model.h"
#include "train/adamw_internal.h"
#include "train/state_file.h"

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
    /* shard the experts: rank = dp * EP + expert group */
    for (int l = 0; l < mc->n_layers && st == MOE_OK; l++) {
        moe_layer *L = moe_model_moe_layer(t->model, l);
        if (L) st = layer_set_dist(L, comm, ep, err);
    }
    if (st != MOE_OK) return st;
    const int er = comm->rank % ep, dp = comm->rank / ep, E = mc->moe.n_experts;
    if (t->ep_comm.release) return moe_err(err, MOE_ERR_ARG, "distributed: the trainer is attached already");
    st = comm->split(comm, dp, er, &t->ep_comm, err);
    if (st == MOE_OK) st = comm->split(comm, er, dp, &t->dp_comm, err);
    if (st != MOE_OK) return st;
    /* the optimizer updates the replicated tensors and this rank's experts */
    const int n = moe_model_n_tensors(t->model);
    t->per_expert = calloc((size_t)n, sizeof(int64_t));
    int64_t *lo = calloc((size_t)n, sizeof(int64_t)), *hi = calloc((size_t)n, sizeof(int64_t));
    int *sh = calloc((size_t)n, sizeof(int));
    if (!t->per_expert || !lo || !hi || !sh) st = moe_err(err, MOE_ERR_NOMEM, "distributed: out of memory");
    t->e_lo = er * (E / ep);
    t->e_hi = (er + 1) * (E / ep);
    for (int i = 0; i < n && st == MOE_OK; i++) {
        moe_tensor tn;
        moe_model_tensor(t->model, i, &tn, NULL);
        lo[i] = 0;
        hi[i] = tn.n;
        for (int l = 0; l < mc->n_layers; l++) {
            moe_layer *L = moe_model_moe_layer(t->model, l);
            if (!L) continue;
            moe_layer_weights g = moe_layer_grads(L);
            if (tn.grad == g.gate || tn.grad == g.up || tn.grad == g.down) {
                t->per_expert[i] = tn.n / E;
                lo[i] = t->e_lo * t->per_expert[i];
                hi[i] = t->e_hi * t->per_expert[i];
                sh[i] = 1;
            }
        }
    }
    if (st == MOE_OK) st = adamw_set_shard(t->opt, lo, hi, sh, &t->ep_comm, err);
    free(lo);
    free(hi);
    free(sh);
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

moe_status trainer_dist_sync_grads(moe_trainer *t, moe_error *err) {
    moe_model *m = t->model;
    const int n = moe_model_n_tensors(m);
    for (int i = 0; i < n; i++) {
        moe_tensor tn;
        moe_model_tensor(m, i, &tn, NULL);
        moe_status st = MOE_OK;
        if (t->per_expert[i]) {
            /* an expert's gradient stays with its owners: summed over the
               replicas' shares of its rows when there are several */
            if (t->dp_comm.size > 1)
                st = t->dp_comm.allreduce_f32(&t->dp_comm, tn.grad + t->e_lo * t->per_expert[i],
                                              (size_t)((t->e_hi - t->e_lo) * t->per_expert[i]), err);
        } else {
            st = t->comm->allreduce_f32(t->comm, tn.grad, (size_t)tn.n, err);
        }
        if (st != MOE_OK) return st;
    }
    return MOE_OK;
}

moe_status trainer_dist_gather(moe_trainer *t, moe_error *err) {
    moe_model *m = t->model;
    const int n = moe_model_n_tensors(m), ep = t->expert_parallel;
    const int64_t ne = t->e_hi - t->e_lo;
    for (int i = 0; i < n; i++) {
        if (!t->per_expert[i] || ep == 1) continue;
        moe_tensor tn;
        moe_model_tensor(m, i, &tn, NULL);
        float *bufs[3] = {tn.data, moe_adamw_moment(t->opt, i, 0), moe_adamw_moment(t->opt, i, 1)};
        const size_t span = (size_t)(ne * t->per_expert[i]);
        for (int b = 0; b < 3; b++)
            for (int g = 0; g < ep; g++) {
                moe_status st = t->ep_comm.bcast(&t->ep_comm, bufs[b] + (size_t)g * span, sizeof(float) * span, g, err);
                if (st != MOE_OK) return st;
            }
    }
    return MOE_OK;
}

void trainer_dist_free(moe_trainer *t) {
    if (t->ep_comm.release) t->ep_comm.release(&t->ep_comm);
    if (t->dp_comm.release) t->dp_comm.release(&t->dp_comm);
    free(t->per_expert);
}
