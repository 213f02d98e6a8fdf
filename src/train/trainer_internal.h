/* trainer_internal.h: the struct behind moe_trainer (internal), shared by
 * trainer.c (the run, checkpoints) and trainer_dist.c (the same run over
 * several ranks). Not for: anything outside src/train and src/dist. */
#ifndef MOE_TRAIN_TRAINER_INTERNAL_H
#define MOE_TRAIN_TRAINER_INTERNAL_H

#include "moe.h"
#include "core/autothreads.h"
#include "core/comm.h"
#include "train/data.h"
#include "train/src_routing.h"

struct moe_trainer {
    moe_train_config cfg;
    char *dir;
    moe_tokenizer *tok;
    moe_model *model;
    moe_adamw *opt;
    int32_t *tokens;        /* [n_tokens] the whole tokenized corpus: training
                               parts, then validation parts (data_split_sources) */
    size_t n_tokens;
    char *notes;            /* lines for the user (data_notes), or NULL */
    data_split train, val;
    data_loader loader;
    int32_t *x, *y;         /* [batch, ctx] */
    int64_t step;
    int64_t schedule_steps; /* length of the learning-rate cosine: the
                               steps of the run's creation, kept on resume */
    uint64_t tok_fp, src_fp;
    moe_data_info info;
    autothreads at;         /* the step's thread count when none was given */
    int at_ready;
    moe_comm *comm;         /* distributed run (trainer_dist.c); NULL: one process */
    int expert_parallel;    /* EP: ranks the experts are sharded over */
    moe_comm ep_comm;       /* the ranks of this rank's data-parallel replica (one per expert group) */
    moe_comm dp_comm;       /* the ranks that hold this rank's experts (one per replica) */
    int64_t *per_expert;    /* [n_tensors] elements per expert of a stacked expert tensor, else 0 */
    int e_lo, e_hi;         /* the experts whose weights, gradients and moments
                               this process holds (trainer_shard): all in one
                               process, a rank's own in an expert-parallel run */
    struct grad_span {      /* gradients summed by one all-reduce: tensors of
                               one group, contiguous in memory, one communicator */
        float *g;           /* [n] */
        size_t n;
        int group;          /* when the backward finishes them: block l,
                               n_layers (the head), n_layers + 1 (after the
                               backward: the embedding) */
        int experts;        /* 1: expert shards (summed over dp_comm), 0:
                               replicated (over comm) */
    } *spans;               /* [n_spans], in the tensor table's order */
    int n_spans;
    moe_comm_req *reqs;     /* [n_spans] all-reduces in flight (overlap) */
    int n_reqs;
    int overlapping;        /* this backward starts each block's all-reduce */
    src_map srcmap;         /* the source of each token, in tokens' order (src_routing.h) */
    src_routing srcroute;   /* held-out routing per source, of the last eval */
};

/* trainer_dist.c */
/* The experts [*lo, *hi) a trainer of configuration c allocates: those of
 * its rank when c->dist is set (expert group rank % EP), else all. */
void trainer_shard(const moe_train_config *c, int *lo, int *hi);
/* Makes t one rank of comm (comm->size ranks, experts sharded over
 * expert_parallel of them): checks the shapes, that every rank runs the
 * same build, configuration, data and step (one clear error otherwise, on
 * every rank), and shards the MoE layers. */
moe_status trainer_set_comm(moe_trainer *t, moe_comm *comm, int expert_parallel, moe_error *err);
/* After a forward on this rank's share: *loss becomes the global batch's
 * mean, and the next backward divides by the global count of targets. */
moe_status trainer_dist_loss(moe_trainer *t, float *loss, moe_error *err);
/* Before the step's last backward: with overlap (the communicator's
 * overlap flag), the backward starts the all-reduce of each block's
 * gradients as soon as that block is done (model.h, grads_ready). */
void trainer_dist_before_backward(moe_trainer *t, int last);
/* Sums the gradients over the ranks: the replicated tensors' over all, the
 * own experts' over the ranks that hold them (data parallelism); what the
 * backward started is finished, the rest done now. */
moe_status trainer_dist_sync_grads(moe_trainer *t, moe_error *err);
/* Before a checkpoint (every rank calls it): rank 0 gets the whole of each
 * tensor the ranks hold in parts (the stacked experts), gathered from the
 * experts' owners in data-parallel replica 0, so that it writes the
 * one-process files. *whole = [3 n_tensors]: parameters, first moments,
 * second moments of tensor i at i, n + i, 2 n + i; NULL entries (and NULL
 * *whole on the other ranks, or with nothing sharded): the held tensor is
 * whole. Free with trainer_dist_whole_free. */
moe_status trainer_dist_gather(moe_trainer *t, float ***whole, moe_error *err);
void trainer_dist_whole_free(moe_trainer *t, float **whole);
/* Frees the sub-communicators (before the job's communicator ends). */
void trainer_dist_free(moe_trainer *t);

#endif
