/* layer.h: the internal state of a MoE layer and the stages that act on it.
 *
 * Data flow of one forward pass (DESIGN.md, "The MoE layer"):
 *   router_forward   x -> logits, scores, per-token slots (expert, weight), losses
 *   plan_build       slots -> per-expert counts, capacity, kept flags, rows
 *   experts_forward  gather rows, one GEMM group per expert, combine into y
 * Backward runs experts_backward (gives dw per slot and dx from the experts),
 * then router_backward (dw, aux and z losses -> dlogits -> dWr, dx).
 *
 * Slots: the router gives each token S slots (S = k for top-k). A slot holds an
 * expert index (-1: empty), a gate weight and a priority score. Every later
 * stage works on slots, so a new gate or selection only changes the router.
 */
#ifndef MOE_LAYER_LAYER_H
#define MOE_LAYER_LAYER_H

#include "moe.h"
#include "core/error.h"

typedef struct moe_plan {
    int capacity;      /* per-expert capacity; -1 when dropless */
    int n_rows;        /* kept assignments = rows of the expert-major buffers */
    int *routed;       /* [E] slots the router gave each expert */
    int *kept;         /* [E] of those, kept after capacity */
    int *offset;       /* [E + 1] first row of each expert */
    int *row_slot;     /* [Tmax * S] slot index t * S + j of each row */
    int *slot_row;     /* [Tmax * S] row of each slot, -1 if empty or dropped */
    int *order;        /* [Tmax * S] scratch for the drop-by-score sort */
    int *fill;         /* [E] scratch: rows filled per expert */
} moe_plan;

struct moe_layer {
    moe_layer_config cfg;
    moe_error err;           /* message of the last failure */
    int S;                   /* slots per token */
    int hid;                 /* rows of h per assignment: 2*d_ff (SwiGLU) or d_ff */

    float *param_buf;        /* all parameters, one allocation */
    float *grad_buf;         /* all gradients, same layout */
    size_t n_params;
    moe_layer_weights w, g;

    /* router state of the last forward */
    int T;                   /* tokens of the last forward; 0 before any */
    int have_forward;        /* backward is allowed */
    float *x_saved;          /* [Tmax, d] copy of the last forward's input */
    float *logits;           /* [Tmax, E] */
    float *probs;            /* [Tmax, E] gate scores */
    float *lse;              /* [Tmax] logsumexp of each row of logits */
    int *slot_expert;        /* [Tmax, S] -1 = empty */
    float *slot_weight;      /* [Tmax, S] final gate weight */
    float *slot_score;       /* [Tmax, S] priority for drop-by-score */
    float *P;                /* [E] mean score per expert (balance loss) */
    float *f;                /* [E] routed fraction per expert (balance loss) */

    moe_plan plan;
    void *problems;          /* [3 E] gemm_problem scratch for grouped calls */

    /* activations saved for backward, rows in expert-major order */
    float *xg;               /* [Rmax, d] gathered inputs */
    float *h;                /* [Rmax, hid] pre-activations: gate | up (SwiGLU) */
    float *a;                /* [Rmax, d_ff] activations */
    float *o;                /* [Rmax, d] expert outputs before the gate weight */

    /* backward scratch */
    float *d_o;              /* [Rmax, d] weighted dy rows */
    float *d_a;              /* [Rmax, d_ff] */
    float *d_h;              /* [Rmax, hid] */
    float *d_xg;             /* [Rmax, d] */
    float *d_w;              /* [Tmax, S] dL/d(slot weight) */
    float *d_logits;         /* [Tmax, E] */

    moe_route_stats stats;
    moe_layer_profile prof;  /* stage timings of the last forward/backward */
};

/* Stages (router.c, plan.c, experts.c). T is the token count of this pass. */
void router_forward(moe_layer *L, const float *x, int T);
void router_backward(moe_layer *L, float *dx, const float *x, int T);
void plan_build(moe_layer *L, int T);
void experts_forward(moe_layer *L, float *y, const float *x, int T);
void experts_backward(moe_layer *L, float *dx, const float *dy, int T);

int layer_threads(const moe_layer *L);

#endif
