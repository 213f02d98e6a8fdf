/* model.h: the decoder-only MoE transformer of moe.h (internal).
 *
 * For: the struct behind moe_model, its parameter table and its saved
 * activations, shared by model.c (create, tensors, init), model_config.c
 * (defaults, checks, sizes) and model_pass.c (forward, backward).
 * Not for: training loops, optimizers, files (src/train/).
 *
 * Data flow of one forward over N = B*T token rows (every buffer is sized
 * for max_batch * ctx_len rows at create; nothing is allocated in a pass):
 *   res[0] = token_embd[tokens]                                  [N, d]
 *   block l:  n1 = rmsnorm(res[l]) * attn_norm                   [N, d]
 *             q,k,v = n1 Wq^T, n1 Wk^T, n1 Wv^T, rope(q), rope(k)
 *             ao = causal_attention(q, k, v)                      [N, H*hd]
 *             h = res[l] + ao Wo^T                                [N, d]
 *             n2 = rmsnorm(h) * ffn_norm
 *             res[l+1] = h + ffn(n2)   (MoE layer or dense SwiGLU)
 *   nf = rmsnorm(res[L]) * output_norm; logits = nf Wout^T      [N, V]
 */
#ifndef MOE_MODEL_MODEL_H
#define MOE_MODEL_MODEL_H

#include "moe.h"
#include "core/allocs.h"
#include "kernels/gemm.h"

#define MODEL_MAX_TENSORS_PER_LAYER 16

/* The parameters of one block (pointers into the model's buffer, or into
 * the MoE layer's own buffer for the experts and router). */
typedef struct model_block {
    float *attn_norm;  /* [d] */
    float *wq;         /* [H*hd, d] */
    float *wk;         /* [Hkv*hd, d] */
    float *wv;         /* [Hkv*hd, d] */
    float *wo;         /* [d, H*hd] */
    float *ffn_norm;   /* [d] */
    float *ffn_gate;   /* [d_ff, d]  dense blocks only */
    float *ffn_up;     /* [d_ff, d]  dense blocks only */
    float *ffn_down;   /* [d, d_ff]  dense blocks only */
    moe_layer *moe;    /* MoE blocks: the layer (owns its parameters) */
} model_block;

/* Saved activations of one block for backward. */
typedef struct model_acts {
    float *n1;    /* [N, d] normed input of attention */
    float *rstd1; /* [N] */
    float *q;     /* [N, H*hd] after RoPE */
    float *k;     /* [N, Hkv*hd] after RoPE */
    float *v;     /* [N, Hkv*hd] */
    float *att;   /* [B, H, T, T] softmax probabilities */
    float *ao;    /* [N, H*hd] attention output before Wo */
    float *h;     /* [N, d] residual after attention */
    float *n2;    /* [N, d] normed input of the feed-forward */
    float *rstd2; /* [N] */
    float *g;     /* [N, d_ff] dense: gate pre-activation */
    float *u;     /* [N, d_ff] dense: up */
    float *a;     /* [N, d_ff] dense: silu(g) * u */
} model_acts;

struct moe_model {
    moe_model_config cfg;
    int hd;                   /* head_dim resolved */
    int n_threads;
    gemm_ws gws;              /* the GEMM's packing buffers, shared with the MoE layers */

    /* parameters (non-expert) and their gradients: one allocation each */
    float *params, *grads;
    size_t n_params;
    float *token_embd;        /* [V, d] */
    float *output_norm;       /* [d] */
    float *output;            /* [V, d]; == token_embd when tied */
    float *g_token_embd, *g_output_norm, *g_output;
    model_block *blocks, *gblocks; /* [L] parameters and gradients */

    moe_tensor *tensors;      /* the table of every parameter */
    int n_tensors;

    /* activations */
    int maxN;                 /* max_batch * ctx_len */
    int B, T;                 /* of the last forward */
    int have_targets;         /* the last forward computed a loss */
    int32_t *tokens;          /* [maxN] of the last forward */
    int32_t *targets;         /* [maxN] */
    int32_t *pos;             /* [maxN] position of each row */
    float *rope_cos, *rope_sin; /* [ctx_len, hd/2] */
    float **res;              /* [L+1] residual streams [N, d] */
    model_acts *acts;         /* [L] */
    float *nf, *rstdf;        /* [N, d], [N] final norm */
    float *logits;            /* [N, V] */
    float *lse;               /* [N] */
    /* backward scratch */
    float *dres, *dh, *dn;    /* [N, d] */
    float *dq, *dk, *dv, *dao;/* [N, H*hd] / [N, Hkv*hd] */
    float *dg, *du, *da;      /* [N, d_ff] dense */
    float *att_scratch;       /* sized for scratch_threads threads */
    int scratch_threads;
    moe_model_losses losses;
    int grads_dropped;        /* moe_model_drop_grads: the next backward writes */
    int loss_den;             /* > 0: the next backward divides the loss by this
                                 count of targets (the global batch's, under data
                                 parallelism) instead of the last forward's */

    /* called by the backward after the head's gradients (l = n_layers) and
       after each block l's (they are then final for this backward): a
       distributed trainer starts their all-reduce there (trainer_dist.c);
       NULL: none. An error ends the backward. */
    moe_status (*grads_ready)(void *user, int l, moe_error *err);
    void *grads_ready_user;
    int ex_lo, ex_hi;         /* the experts whose stacked weights this process
                                 holds: [0, E) except on a rank of an
                                 expert-parallel run (model_create) */
    moe_allocs mem;           /* every allocation, freed together */
};

/* Sets the backward's hook (model.grads_ready; fn NULL: none). */
static inline void model_set_grads_ready(moe_model *m, moe_status (*fn)(void *, int, moe_error *), void *user) {
    m->grads_ready = fn;
    m->grads_ready_user = user;
}

/* moe_model_create holding, in every MoE block, the stacked weights
 * (parameters and gradients) of experts [ex_lo, ex_hi) only: the tensor
 * table's held_lo / held_n say which elements (moe.h). 0 and E: all. */
moe_status model_create(moe_model **out, const moe_model_config *cfg, int ex_lo, int ex_hi, moe_error *err);

/* model_pass.c */
moe_status model_forward(moe_model *m, const int32_t *tokens, const int32_t *targets,
                         int B, int T, int train, float *loss, moe_error *err);
moe_status model_backward(moe_model *m, moe_error *err);

/* The count of targets the next backward's mean divides by (0: the last
 * forward's own): each rank of a data-parallel job holds a share of the
 * batch, and its gradients are summed over the ranks. */
static inline void model_set_loss_den(moe_model *m, int n) { m->loss_den = n; }

#endif
