/* moe.h: the public C API of libmoe, a library for sparse Mixture-of-Experts
 * (MoE) transformer models.
 *
 * What is here: status codes, the dense fp32 matrix product, and the MoE layer
 * (router, capacity plan, dispatch, experts, combine; forward and backward).
 * What is not here: anything internal. Every name starts with moe_ / MOE_.
 *
 * Conventions
 * - Matrices are row-major fp32. A shape comment [R, C] means R rows of C.
 * - Functions that can fail return moe_status. The message naming what was
 *   wrong is in the moe_error passed in, or in moe_layer_errmsg(layer).
 *   The library never exits and never prints.
 * - Nothing here keeps global state; thread counts are passed in.
 */
#ifndef MOE_H
#define MOE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MOE_VERSION "0.1.0"

/* ---------------------------------------------------------------- status */

typedef enum moe_status {
    MOE_OK = 0,
    MOE_ERR_ARG,         /* a bad argument or configuration value */
    MOE_ERR_SHAPE,       /* sizes that do not agree with each other */
    MOE_ERR_NONFINITE,   /* NaN or Inf in an input */
    MOE_ERR_NOMEM,       /* an allocation failed */
    MOE_ERR_IO,          /* a read or write failed */
    MOE_ERR_FORMAT,      /* a file that is not what it claims to be */
    MOE_ERR_UNSUPPORTED, /* valid, but not implemented here */
    MOE_STATUS_COUNT     /* append new codes above this line */
} moe_status;

/* A short fixed name for a status ("ok", "bad argument", ...). */
const char *moe_status_str(moe_status s);

/* Where functions without a handle put the message of a failure. */
typedef struct moe_error {
    char msg[512]; /* NUL-terminated; empty when nothing failed */
} moe_error;

/* ------------------------------------------------------------ dense GEMM */

/* C[M,N] = alpha * op(A)[M,K] op(B)[K,N] + beta * C, row-major.
 * transA = 0: A is [M, K] with row stride lda; 1: A is [K, M] (so op(A) = A^T).
 * transB = 0: B is [K, N] with row stride ldb; 1: B is [N, K].
 * beta == 0 means C is not read (it may hold NaN). Threads: n_threads <= 0
 * uses the OpenMP default. The result does not depend on the thread count. */
void moe_sgemm(int n_threads, int transA, int transB, int M, int N, int K,
               float alpha, const float *A, int lda, const float *B, int ldb,
               float beta, float *C, int ldc);

/* A short name of the kernel moe_sgemm chose for this processor
 * ("avx512", "avx2", "scalar"). */
const char *moe_sgemm_kernel_name(void);

/* ------------------------------------------------------------- MoE layer */

/* The expert network. Both are bias-free, like the experts of Mixtral, Qwen-MoE,
 * DeepSeek-MoE and Switch/T5. */
typedef enum moe_expert_type {
    MOE_EXPERT_SWIGLU = 0, /* down(silu(gate x) * up x)           */
    MOE_EXPERT_GELU,       /* down(gelu(up x)), tanh approximation */
    MOE_EXPERT_COUNT
} moe_expert_type;

/* The gate turns router logits into scores. */
typedef enum moe_gate {
    MOE_GATE_SOFTMAX = 0, /* p = softmax(logits) over all E experts */
    MOE_GATE_COUNT
} moe_gate;

/* The selection picks the experts of each token from the scores. */
typedef enum moe_select {
    MOE_SELECT_TOPK = 0, /* the k highest scores; ties go to the lower index */
    MOE_SELECT_COUNT
} moe_select;

/* Which assignments an expert over capacity keeps. */
typedef enum moe_drop_policy {
    MOE_DROP_POSITION = 0, /* first choices of all tokens before second
                              choices, each in token order (GShard) */
    MOE_DROP_SCORE,        /* highest router score p[t,e] first, ties to the
                              lower token index (batch-prioritized routing) */
    MOE_DROP_COUNT
} moe_drop_policy;

/* capacity_factor value meaning "never drop". */
#define MOE_DROPLESS (-1.0f)

typedef struct moe_layer_config {
    int d_model;               /* d: width of the token vectors */
    int d_ff;                  /* expert hidden width */
    int n_experts;             /* E >= 1 */
    int top_k;                 /* k, 1 <= k <= E */
    moe_expert_type expert;    /* default MOE_EXPERT_SWIGLU */
    moe_gate gate;             /* default MOE_GATE_SOFTMAX */
    moe_select select;         /* default MOE_SELECT_TOPK */
    float capacity_factor;     /* capacity = ceil(cf * T * k / E) per expert;
                                  MOE_DROPLESS (default) never drops; 0 drops all */
    moe_drop_policy drop_policy; /* default MOE_DROP_POSITION */
    int renormalize;           /* 1: the k selected weights are divided by
                                  their sum (Mixtral); 0: raw probabilities */
    float weight_scale;        /* multiplies every gate weight (default 1) */
    float aux_loss_coef;       /* alpha of the Switch load-balancing loss
                                  alpha * E * sum_i f_i P_i (default 0) */
    float z_loss_coef;         /* coefficient of the router z-loss
                                  mean_t logsumexp(logits_t)^2 (default 0) */
    int max_tokens;            /* T that forward may be given, at most;
                                  every buffer is sized for it at create */
    int n_threads;             /* <= 0: the OpenMP default */
} moe_layer_config;

/* Fills *c with the defaults above for the given sizes (max_tokens = 4096). */
void moe_layer_config_default(moe_layer_config *c, int d_model, int d_ff,
                              int n_experts, int top_k);

/* Checks a configuration without building anything. */
moe_status moe_layer_config_check(const moe_layer_config *c, moe_error *err);

/* Pointers to the parameters (or to their gradients) of a layer. Experts are
 * stacked, so expert e of `up` starts at up + e * d_ff * d. The layouts are
 * those of GGUF's Mixtral tensors and PyTorch's nn.Linear (weight [out, in]). */
typedef struct moe_layer_weights {
    float *router; /* [E, d]        logits = x router^T            */
    float *gate;   /* [E, d_ff, d]  SwiGLU gate projection; NULL for GELU */
    float *up;     /* [E, d_ff, d]  up projection                  */
    float *down;   /* [E, d, d_ff]  down projection                */
} moe_layer_weights;

/* What the router did in the last forward pass. Array pointers stay valid
 * until the next forward or until the layer is freed. */
typedef struct moe_route_stats {
    int n_tokens;              /* T of the last forward */
    int capacity;              /* per-expert capacity; -1 when dropless */
    float aux_loss;            /* aux_loss_coef * E * sum_i f_i P_i */
    float z_loss;              /* z_loss_coef * mean_t lse_t^2 */
    float balance;             /* E * sum_i f_i P_i without the coefficient
                                  (1 when perfectly balanced) */
    float lse_sq;              /* mean_t lse_t^2 without the coefficient */
    float entropy;             /* mean over tokens of the router entropy, nats */
    int64_t assignments;       /* T * k */
    int64_t dropped;           /* assignments over capacity */
    const int *tokens_per_expert; /* [E] assignments the router chose */
    const int *kept_per_expert;   /* [E] assignments kept after capacity */
} moe_route_stats;

typedef struct moe_layer moe_layer;

/* Builds a layer with its own zeroed parameters and gradients.
 * On failure *out is NULL and err (if not NULL) says why. */
moe_status moe_layer_create(moe_layer **out, const moe_layer_config *cfg,
                            moe_error *err);
void moe_layer_free(moe_layer *L);

const moe_layer_config *moe_layer_get_config(const moe_layer *L);
/* The message of the last failure of a call on L ("" when none). */
const char *moe_layer_errmsg(const moe_layer *L);

/* Parameters and gradients, owned by the layer. */
moe_layer_weights moe_layer_params(moe_layer *L);
moe_layer_weights moe_layer_grads(moe_layer *L);
/* Number of floats in all parameters. */
size_t moe_layer_param_count(const moe_layer *L);

/* Initialises the parameters from a seed: router and input projections
 * ~ U(-1/sqrt(d), 1/sqrt(d)), down ~ U(-1/sqrt(d_ff), 1/sqrt(d_ff)). */
void moe_layer_init_params(moe_layer *L, uint64_t seed);
void moe_layer_zero_grads(moe_layer *L);
void moe_layer_set_threads(moe_layer *L, int n_threads);

/* y[T, d] = MoE(x[T, d]). Saves what backward needs. `train` is reserved for
 * the gates that behave differently while training (noise, jitter).
 * Fails on T < 1, T > max_tokens, or a non-finite x. */
moe_status moe_layer_forward(moe_layer *L, float *y, const float *x, int T,
                             int train);

/* Given dy[T, d] for the T of the last forward, writes dx[T, d] and ADDS the
 * parameter gradients into moe_layer_grads(L). The gradients include those of
 * the auxiliary and z losses (as if each were added to the objective). */
moe_status moe_layer_backward(moe_layer *L, float *dx, const float *dy);

/* Routing statistics of the last forward. */
const moe_route_stats *moe_layer_stats(const moe_layer *L);

/* Where the time of the last forward and backward went, in seconds, stage by
 * stage (wall clock, measured around each stage). */
typedef struct moe_layer_profile {
    double fwd_route;   /* router GEMM, gate, selection, losses, statistics */
    double fwd_plan;    /* histogram, capacity, row layout */
    double fwd_gather;  /* copy of each kept assignment's token into its row */
    double fwd_gemm;    /* the expert GEMMs */
    double fwd_act;     /* SwiGLU / GELU */
    double fwd_combine; /* weighted scatter-add into y */
    double bwd_slots;   /* dw per slot and the weighted dy rows */
    double bwd_gemm;    /* the expert GEMMs of backward */
    double bwd_act;     /* activation derivatives */
    double bwd_scatter; /* sum of each token's rows into dx */
    double bwd_route;   /* router backward: dlogits, dWr, dx */
} moe_layer_profile;

const moe_layer_profile *moe_layer_get_profile(const moe_layer *L);

/* The routing decisions of the last forward, each [T, k] (any may be NULL):
 * expert index of slot j of token t (best first), its gate weight after
 * renormalisation and scale, and 1 if that assignment was kept, 0 if dropped. */
void moe_layer_routing(const moe_layer *L, int *experts, float *weights,
                       int *kept);

#ifdef __cplusplus
}
#endif
#endif /* MOE_H */
