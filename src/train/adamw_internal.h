/* adamw_internal.h: the optimizer on a shard of the model (internal), for
 * expert parallelism (trainer_dist.c). Not for: the update rule (adamw.c). */
#ifndef MOE_TRAIN_ADAMW_INTERNAL_H
#define MOE_TRAIN_ADAMW_INTERNAL_H

#include "moe.h"
#include "core/comm.h"

/* The optimizer runs on the elements the model holds (moe_tensor.held_n:
 * a rank's share of the stacked experts, the rest whole). From now on the
 * squared gradients of tensors with sharded[i] = 1 are summed over
 * norm_comm's ranks (each of the whole tensor's elements held by exactly
 * one of them), the others' counted once (replicated), for the global norm
 * that clipping uses. */
moe_status adamw_set_shard(moe_adamw *o, const int *sharded, moe_comm *norm_comm, moe_error *err);

#endif
