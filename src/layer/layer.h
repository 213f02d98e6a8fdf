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
#include "core/allocs.h"
#include "core/comm.h"
#include "core/error.h"
#include "core/rng.h"
#include "kernels/gemm.h"

/* Expert parallelism (layer_dist.c): P ranks each hold T rows of the
 * global batch (the ranks' tokens in rank order). The router's logits are
 * all-gathered, so every rank routes and plans the global batch exactly as
 * one process would (capacity, drops, losses, statistics, balance bias);
 * each assignment's row travels by all-to-all-v to the rank that owns its
 * expert (its share of the rows when experts are replicated over DP
 * groups), the owner runs its grouped GEMMs, and the outputs travel back to
 * be combined where their token lives. Backward runs the same in reverse. */
typedef struct layer_dist {
    moe_comm *comm;      /* every rank of the job; NULL: one process */
    int ep;              /* expert-parallel ranks: rank = part * ep + expert group */
    int e_lo, e_hi;      /* this rank's experts [e_lo, e_hi) */
    int part, n_parts;   /* its share of each own expert's rows: part of n_parts */
    int T_local;         /* this rank's tokens in the last forward */
    float *sbuf, *rbuf;  /* [Tmax * S, d] rows to send, rows received */
    int *row_owner;      /* [Tmax * S] rank that runs each row */
    int *send_rows;      /* [Tmax * S] rows of this rank's tokens, by owner, in row order */
    int *recv_rows;      /* [Tmax * S] rows this rank runs, by home rank, in row order */
    int *n_send, *n_recv;/* [P] rows per rank */
    int *cnt, *dsp;      /* [4 P] float counts and displacements: send, recv */
} layer_dist;

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
    int *row_lo, *row_hi; /* [E] the rows of each expert this process runs:
                             [offset[e], offset[e+1]) in one process */
} moe_plan;

struct moe_layer {
    moe_layer_config cfg;
    int S;                   /* slots per token */
    int hid;                 /* rows of h per assignment: 2*d_ff (SwiGLU) or d_ff */

    float *param_buf;        /* all parameters held, one allocation */
    float *grad_buf;         /* all gradients held, same layout */
    size_t n_params;         /* floats held (the stacked experts: ex_hi - ex_lo of them) */
    int ex_lo, ex_hi;        /* the experts whose weights w.gate/up/down (and g.*)
                                hold, from expert ex_lo on: [0, E), except on a
                                rank of an expert-parallel run (layer_create_with) */
    moe_layer_weights w, g;
    int grads_dropped;       /* moe_layer_drop_grads: the next backward writes
                                the gradients (gbeta 0) instead of adding */

    /* routing options in force (set_top_k / set_top_p change them) */
    int k;                   /* experts per token now */
    float top_p;             /* top-p threshold now */
    int train;               /* the last forward's train flag */
    int ec_now;              /* the last forward used expert choice */
    moe_rng rng;             /* noise, jitter, GShard draws */
    float *bias;             /* [E] aux-loss-free selection bias */
    float l1_coef;           /* ReLU routing: current lambda */
    int64_t *acc_routed;     /* [E] routed counts since reset (global_stats) */
    int64_t acc_assign;      /* assignments since reset */
    int64_t *acc_first;      /* [E] first choices since reset */
    int64_t acc_tokens;      /* tokens since reset */
    int *dead_run;           /* [E] consecutive forwards without tokens */
    int *active_hist;        /* [S + 1] */
    int32_t *token_ids;      /* [Tmax] for hash routing */
    int have_ids;            /* token ids were set for the next forward */
    int T_ids;               /* how many */

    /* router state of the last forward */
    int T;                   /* tokens of the last forward; 0 before any */
    int have_forward;        /* backward is allowed */
    float *x_saved;          /* [Tmax, d] copy of the last forward's input */
    float *xr;               /* [Tmax, d] jittered router input (jitter only) */
    float *jit;              /* [Tmax, d] jitter factors u */
    float *logits;           /* [Tmax, E] clean logits z = xr Wr^T */
    float *H;                /* [Tmax, E] gate input: z + n sigma (noisy) or = logits */
    float *zn;               /* [Tmax, E] noise logits xr Wn^T (noisy only) */
    float *sigma;            /* [Tmax, E] softplus(zn) */
    float *nz;               /* [Tmax, E] N(0,1) draws */
    float *second_u;         /* [Tmax] GShard draws */
    int *gs_expert;          /* [Tmax] expert of slot 1 removed by GShard's policy */
    float *probs;            /* [Tmax, E] gate scores: p, q or r */
    float *pn;               /* [Tmax, E] normalized scores (= probs for softmax) */
    float *selsc;            /* [Tmax, E] selection scores scratch */
    float *Zsum;             /* [Tmax] denominator of the renormalisation */
    float *lse;              /* [Tmax] logsumexp of each row of logits */
    int *slot_expert;        /* [Tmax, S] -1 = empty */
    float *slot_weight;      /* [Tmax, S] final gate weight */
    float *slot_score;       /* [Tmax, S] priority for drop-by-score */
    float *P;                /* [E] mean score per expert (balance loss) */
    float *f;                /* [E] routed fraction per expert (balance loss) */

    moe_plan plan;
    layer_dist dist;         /* expert parallelism; dist.comm NULL: none */
    void *problems;          /* [3 E] gemm_problem scratch for grouped calls */
    gemm_ws own_ws;          /* the GEMM's packing buffers, when the layer owns them */
    const gemm_ws *gws;      /* the buffers its products use: &own_ws or its model's */

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
    float *d_logits;         /* [Tmax, E] dL/dz (clean logits) */
    float *d_zn;             /* [Tmax, E] dL/dzn (noisy only) */
    float *d_xr;             /* [Tmax, d] router input gradient (jitter only) */
    float *load_dz;          /* [Tmax, E] load-loss gradient on the clean logits */
    float *imp_g;            /* [E] dL/dImportance_e */
    float *load_g;           /* [E] dL/dload_e */
    float *seq_f;            /* [n_seq, E] per-sequence f_i of the sequence loss */

    /* shared expert (shared_d_ff > 0), all T rows */
    int Fs, Hs;              /* its hidden width and h row width */
    float *sh_h, *sh_a, *sh_o, *sh_g;     /* [Tmax, Hs], [Tmax, Fs], [Tmax, d], [Tmax] */
    float *d_sh_o, *d_sh_a, *d_sh_h, *sh_dl; /* backward scratch */

    moe_route_stats stats;
    moe_layer_profile prof;  /* stage timings of the last forward/backward */
    moe_allocs mem;          /* every buffer above, freed by moe_layer_free */
};

/* Stages (router.c, select.c, router_loss.c, plan.c, experts.c, shared.c).
 * T is the token count of this pass. */
void router_forward(moe_layer *L, const float *x, int T);
void select_tokens(moe_layer *L, int T);      /* token choice: slots per token */
void select_expert_choice(moe_layer *L, int T);
void router_losses(moe_layer *L, int T);      /* losses and balance statistics */
void router_losses_backward(moe_layer *L, int T); /* adds loss gradients to d_w */
void router_token_grad(moe_layer *L, int t, float *dprob, float *dpn);
void router_stats_after_plan(moe_layer *L, int T);
void shared_forward(moe_layer *L, float *y, const float *x, int T);
/* The backward stages that produce weight gradients take gbeta: 1 adds into
 * them, 0 writes them (after moe_layer_drop_grads): their GEMMs run with
 * beta = gbeta, so they never read the old gradient; the one gradient that
 * is a scattered sum (the shared expert's gate vector) is cleared first.
 * With hash selection the router has no gradient: g.router stays as created
 * (zero). */
void shared_backward(moe_layer *L, float *dx, const float *dy, const float *x, int T, float gbeta);
void router_backward(moe_layer *L, float *dx, const float *x, int T, float gbeta);
/* router_forward in two parts: the logits (and noise logits) of x, then
 * router_route on L->logits / L->H (and L->zn) of T tokens */
void router_route(moe_layer *L, int T);
/* router_backward in two parts: the dlogits of all T tokens, then the
 * products over tokens [t0, t0 + T) (router.c) */
void router_backward_dlogits(moe_layer *L, int T);
void router_backward_gemms(moe_layer *L, float *dx, const float *x, int t0, int T, float gbeta);
void plan_build(moe_layer *L, int T);
void experts_forward(moe_layer *L, float *y, const float *x, int T);
void experts_backward(moe_layer *L, float *dx, const float *dy, int T, float gbeta);
/* The parts of experts_forward / experts_backward (experts.c), for the
 * expert-parallel layer whose rows travel between gather and GEMMs:
 *   experts_run          GEMMs and activation on this process's rows of xg -> o
 *   experts_combine      y[t - t_first] for tokens [t_first, t_first + T) from o
 *   experts_slot_grads   d_w and d_o rows of those tokens from dy[T, d]
 *   experts_backward_run GEMMs on this process's rows of d_o -> weight grads, d_xg
 *   experts_scatter      dx[t - t_first] from d_xg
 * mine: only rows of this process's experts count (1 in one process; 0 for
 * the rows a rank received back from the experts' owners). */
void experts_run(moe_layer *L);
void experts_combine(moe_layer *L, float *y, int t_first, int T, int mine);
void experts_slot_grads(moe_layer *L, const float *dy, int t_first, int T, int mine);
void experts_backward_run(moe_layer *L, float gbeta);
void experts_scatter(moe_layer *L, float *dx, int t_first, int T, int mine);

int layer_threads(const moe_layer *L);

/* Where expert e's slice of a stacked expert tensor (w.gate, g.down ...)
 * begins, for `per` floats per expert; e must be held (ex_lo <= e < ex_hi). */
static inline size_t layer_expert_at(const moe_layer *L, int e, size_t per) {
    return (size_t)(e - L->ex_lo) * per;
}
/* 1 when the layer holds every expert (a run of one process). */
static inline int layer_holds_all(const moe_layer *L) {
    return L->ex_lo == 0 && L->ex_hi == L->cfg.n_experts;
}

/* layer_dist.c: expert parallelism. layer_set_dist makes this layer one of
 * comm->size ranks, its experts sharded over ep of them (rank r runs
 * expert group r % ep, share r / ep of its rows; the layer must hold
 * exactly those experts, layer_create_with); buffers for the global
 * batch of max_tokens rows;
 * the dist forward/backward take the rank's own T rows. */
moe_status layer_set_dist(moe_layer *L, moe_comm *comm, int ep, moe_error *err);
moe_status layer_forward_dist(moe_layer *L, float *y, const float *x, int T, moe_error *err);
moe_status layer_backward_dist(moe_layer *L, float *dx, const float *dy, float gbeta, moe_error *err);

/* 1 when the selected weights are divided by their sum: renormalize, or the
 * noisy gate, whose weights are by definition (Shazeer et al. 2017,
 * G = softmax(KeepTopK(H, k))) a softmax over the kept logits alone. */
static inline int layer_renormalizes(const moe_layer_config *c) { return c->renormalize || c->noisy_gate; }

/* moe_layer_create with the GEMM's packing buffers borrowed from ws (which
 * must outlive the layer), or owned when ws is NULL (sized for the layer's
 * threads, or the OpenMP default when more), holding the weights of
 * experts [ex_lo, ex_hi) only (0 and E: all; a rank of an expert-parallel
 * run holds its own, and can run only under layer_set_dist). */
moe_status layer_create_with(moe_layer **out, const moe_layer_config *cfg, const gemm_ws *ws, int ex_lo,
                             int ex_hi, moe_error *err);

#endif
