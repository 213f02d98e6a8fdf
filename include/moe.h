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
    MOE_GATE_SIGMOID,     /* q = sigmoid(logits), each expert alone (DeepSeek-V3) */
    MOE_GATE_RELU,        /* w = relu(logits) (ReMoE); with MOE_SELECT_ALL */
    MOE_GATE_COUNT
} moe_gate;

/* The selection picks the experts of each token from the scores. */
typedef enum moe_select {
    MOE_SELECT_TOPK = 0,      /* the k highest scores; ties go to the lower index */
    MOE_SELECT_TOPP,          /* smallest set reaching top_p, at most top_k */
    MOE_SELECT_EXPERT_CHOICE, /* each expert takes its best ceil(c T / E) tokens */
    MOE_SELECT_HASH,          /* fixed hash of the token id; no router */
    MOE_SELECT_ALL,           /* every expert with a non-zero gate (ReLU) */
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

    /* The routing family (docs/ROUTING.md). Zero turns each option off. */
    uint64_t seed;             /* RNG of noise, jitter, GShard's random policy */
    int max_top_k;             /* largest k moe_layer_set_top_k may set
                                  (0: top_k); sizes the buffers */
    float jitter;              /* Switch: router input x * U(1-j, 1+j), training */
    int noisy_gate;            /* Shazeer: logits += N(0,1) softplus(x Wn^T) in
                                  training; adds the parameter `noise` [E, d] */
    float importance_loss_coef; /* Shazeer: coef * CV(sum_t w[t, :])^2 */
    float load_loss_coef;      /* Shazeer: coef * CV(smooth load)^2 (noisy gate) */
    int gshard_random_second;  /* GShard: slot 1 kept with prob min(1, 2 w_1)
                                  while training (top_k = 2) */
    int balance_top1_only;     /* balance loss counts first choices only (GShard) */
    float top_p;               /* MOE_SELECT_TOPP threshold, in (0, 1] */
    float entropy_loss_coef;   /* coef * mean_t H(p_t) (top-p's regulariser) */
    float ec_capacity;         /* expert choice: c, tokens per expert ceil(c T / E) */
    int ec_inference;          /* expert choice when not training: 0 token-choice
                                  top-k with the same router, 1 expert choice */
    int n_groups;              /* group-limited routing: E / n_groups per group */
    int topk_groups;           /* groups kept per token */
    float bias_update_rate;    /* aux-loss-free balancing: gamma > 0 enables the
                                  selection bias (moe_layer_update_balance) */
    float seq_aux_loss_coef;   /* DeepSeek-V3 sequence-wise balance loss */
    int seq_len;               /* tokens per sequence for it (T a multiple) */
    int shared_d_ff;           /* hidden width of the shared expert(s); 0 none */
    int shared_gate;           /* Qwen-MoE: shared output * sigmoid(x . w_sg) */
    float relu_l1_coef;        /* ReMoE: initial L1 coefficient lambda */
    float relu_target_sparsity; /* ReMoE: target fraction of zero gates */
    int global_stats;          /* balance f_i from counts accumulated over
                                  forwards until moe_layer_reset_stats */
    int dead_window;           /* forwards without tokens that make an expert
                                  dead in the statistics (0: 100) */
} moe_layer_config;

/* Fills *c with the defaults above for the given sizes (max_tokens = 4096). */
void moe_layer_config_default(moe_layer_config *c, int d_model, int d_ff,
                              int n_experts, int top_k);

/* Sets the routing fields of *c for a method of docs/ROUTING.md by name:
 * softmax, switch, noisy, gshard, expert-choice, sigmoid, group, shared,
 * top-p, hash, relu. moe_router_names() lists them (NULL-terminated). */
moe_status moe_layer_config_router(moe_layer_config *c, const char *name, moe_error *err);
const char *const *moe_router_names(void);

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
    float *noise;  /* [E, d]        noisy gate: std = softplus(x noise^T); or NULL */
    float *shared_gate;   /* [Fs, d] shared expert (SwiGLU), or NULL */
    float *shared_up;     /* [Fs, d] shared expert, or NULL */
    float *shared_down;   /* [d, Fs] shared expert, or NULL */
    float *shared_router; /* [d]     shared expert gate sigmoid(x . w), or NULL */
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
    /* balance and sparsity */
    float max_violation;       /* max_i routed_i / mean_i routed_i - 1 */
    float load_cv;             /* coefficient of variation of routed_i */
    int dead_experts;          /* experts without tokens for dead_window forwards */
    float dropped_fraction;    /* dropped / assignments */
    float active_mean;         /* mean experts per token (kept assignments / T) */
    const int *active_hist;    /* [slots + 1] tokens with 0, 1, ... kept experts */
    int active_hist_len;       /* slots + 1 */
    /* the other router losses (each already times its coefficient) */
    float importance_loss;     /* noisy top-k: importance CV^2 */
    float load_loss;           /* noisy top-k: smooth load CV^2 */
    float entropy_loss;        /* top-p: entropy regulariser */
    float seq_aux_loss;        /* DeepSeek-V3 sequence-wise balance */
    float l1_loss;             /* ReLU routing: lambda * mean_t sum_e w */
    float l1_coef;             /* ReLU routing: the current lambda */
    float sparsity;            /* ReLU routing: fraction of zero gates */
    float router_loss;         /* the sum of every loss above and aux, z */
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

/* Token ids for MOE_SELECT_HASH: ids[T] of the next forward (copied). */
moe_status moe_layer_set_token_ids(moe_layer *L, const int32_t *ids, int T);

/* Run-time overrides (generation): k <= max_top_k (or top_k), and the top-p
 * threshold in (0, 1]. */
moe_status moe_layer_set_top_k(moe_layer *L, int k);
moe_status moe_layer_set_top_p(moe_layer *L, float p);

/* Call after each optimizer step: moves the aux-loss-free selection bias,
 * b_i += gamma sign(mean load - load_i), and the ReLU router's L1
 * coefficient, lambda *= 1.2^sign(target - sparsity), from the loads of the
 * last forward (or of the accumulated batch with global_stats). */
void moe_layer_update_balance(moe_layer *L);

/* The state of the layer's random generator (noise, jitter, GShard's policy):
 * save it and set it back to repeat a training forward exactly. */
uint64_t moe_layer_rng_state(const moe_layer *L);
void moe_layer_set_rng_state(moe_layer *L, uint64_t state);

/* The selection bias [E] of aux-loss-free balancing (read or restore it). */
float *moe_layer_balance_bias(moe_layer *L);

/* Starts a new global batch for global_stats (clears accumulated counts). */
void moe_layer_reset_stats(moe_layer *L);

/* The random draws of the last training forward, for reproducing it
 * elsewhere (any may be NULL when unused). */
typedef struct moe_layer_draws {
    const float *jitter; /* [T, d] the factors u of x * u */
    const float *noise;  /* [T, E] the N(0,1) draws of the noisy gate */
    const float *second; /* [T] the U(0,1) draws of GShard's random policy */
} moe_layer_draws;
moe_layer_draws moe_layer_get_draws(const moe_layer *L);

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

/* Slots per token of this layer's routing decisions: top_k (or max_top_k)
 * for token choice, E for expert choice and ReLU routing. */
int moe_layer_slots(const moe_layer *L);

/* The routing decisions of the last forward, each [T, slots] (any may be
 * NULL): expert index of slot j of token t (best first; -1 for an empty slot;
 * slot e is expert e for expert choice and ReLU), its gate weight after
 * renormalisation and scale, and 1 if that assignment was kept, 0 if not. */
void moe_layer_routing(const moe_layer *L, int *experts, float *weights,
                       int *kept);

#ifdef __cplusplus
}
#endif
#endif /* MOE_H */
