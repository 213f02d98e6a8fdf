/* moe.h: the public C API of libmoe, a library for sparse Mixture-of-Experts
 * (MoE) transformer models: build them, train them, save and load them.
 * Running GGUF models (ours and real checkpoints, quantized or not) is in
 * moe_infer.h. What is not here: anything internal. Every name starts with
 * moe_ / MOE_.
 *
 * Contents, in this order:
 *   status       moe_status, moe_status_str, moe_error
 *   dense GEMM   moe_sgemm, moe_sgemm_kernel_name
 *   MoE layer    moe_layer_config (experts, gate, selection, capacity and the
 *                routing family of docs/ROUTING.md), moe_router_names;
 *                moe_layer_*: create, parameters and gradients, forward,
 *                backward, statistics (moe_route_stats), run-time overrides,
 *                balance updates, RNG state, draws, profile, routing decisions
 *   model        moe_model_config, counts and memory; moe_model_*: a
 *                decoder-only transformer with dense or MoE feed-forward
 *                blocks: create, the parameter table (moe_tensor), forward,
 *                logits, losses, backward, gradients, its MoE layers
 *   optimizer    moe_adamw_*: AdamW with gradient clipping; moe_lr_schedule
 *   tokenizer    moe_tokenizer_*: the byte-level BPE moe trains
 *   model files  moe_model_save, moe_model_load (GGUF)
 *   corpus       moe_corpus_*: the built-in text, generated from a seed
 *   trainer      moe_train_config, moe_trainer_*: a run with data, evaluation
 *                and checkpoints that resume exactly
 *
 * Conventions
 * - Matrices are row-major fp32. A shape comment [R, C] means R rows of C.
 * - Errors: every function that can fail returns moe_status and takes a
 *   moe_error *err as its last argument (NULL: no message wanted). On
 *   failure err->msg names the function, field or argument and what was
 *   expected; on success it is "" (or, where said, notes). Handles keep no
 *   message. A create function checks its out pointer (NULL: MOE_ERR_ARG)
 *   and sets *out to NULL on failure. The library never exits or prints.
 * - Configurations: the *_config_check functions bound every field so that
 *   no size or product overflows and no absurd buffer is asked for (e.g.
 *   n_experts <= MOE_MAX_EXPERTS, d_model <= 65536); NaN, Inf and negative
 *   values are refused where they make no sense. The message names the
 *   field and the bound.
 * - Threads: nothing here keeps global state. A handle (moe_layer,
 *   moe_model, moe_adamw, moe_trainer; moe_infer and moe_sampler of
 *   moe_infer.h) is used by one thread at a time: calls on the same handle
 *   must not overlap, even those that only read (stats, logits, routing read
 *   buffers that the next call rewrites). Different handles may be used from
 *   different threads at once; a model's layers (moe_model_moe_layer), its
 *   optimizer and a trainer's model count as part of that model. A
 *   moe_tokenizer (and a moe_vocab) does not change after it is built: its
 *   const functions may run on several threads at once. Each call runs its
 *   own OpenMP team of n_threads (<= 0: the OpenMP default), so concurrent
 *   calls multiply the threads.
 * - Aliasing: an output must not overlap an input unless said. Refused with
 *   MOE_ERR_ARG (real overlap of the address ranges, not only equality):
 *   moe_layer_backward (dx vs dy), moe_tokenizer_encode / _decode (out vs
 *   the input), moe_vocab_encode and moe_infer_eval (moe_infer.h).
 *   Allowed: moe_layer_forward in place (y may be x or overlap it). Not
 *   checked, as they return no status: moe_sgemm (C must not overlap A or
 *   B) and moe_sampler_sample (history must not overlap logits).
 *   moe_model_forward writes only *loss, after its last read of the inputs;
 *   moe_model_backward takes no buffers.
 */
#ifndef MOE_H
#define MOE_H

#include <stddef.h>
#include <stdint.h>

/* MOE_API marks the functions the library exports: libmoe is compiled with
 * -fvisibility=hidden, so every other function stays inside it
 * (scripts/annotate_api.py puts MOE_API on the declarations). */
#ifndef MOE_API
#if defined(__GNUC__) || defined(__clang__)
#define MOE_API __attribute__((visibility("default")))
#else
#define MOE_API
#endif
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------- version */

/* The version of these headers; moe_version() gives the library's. The
 * shared library's soname carries the major number (libmoe.so.0). */
#define MOE_VERSION_MAJOR 0
#define MOE_VERSION_MINOR 1
#define MOE_VERSION_PATCH 0
#define MOE_VERSION_STRING "0.1.0"
#define MOE_VERSION MOE_VERSION_STRING /* the older name */
/* One comparable number: major * 10000 + minor * 100 + patch. */
#define MOE_VERSION_NUMBER \
    (MOE_VERSION_MAJOR * 10000 + MOE_VERSION_MINOR * 100 + MOE_VERSION_PATCH)

/* The version of the library linked in ("0.1.0"), which may differ from the
 * headers' MOE_VERSION_STRING when a newer shared library is loaded. */
MOE_API const char *moe_version(void);
/* The same as one number (MOE_VERSION_NUMBER's form). */
MOE_API int moe_version_number(void);

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
    MOE_ERR_CANCELLED,   /* stopped by moe_cancel (files being written removed) */
    MOE_STATUS_COUNT     /* append new codes above this line */
} moe_status;

/* A short fixed name for a status ("ok", "bad argument", ...). */
MOE_API const char *moe_status_str(moe_status s);

/* The message of a failure: the last argument of every fallible function. */
typedef struct moe_error {
    char msg[512]; /* NUL-terminated; empty when nothing failed; control
                      characters (from names in files) written as \xNN,
                      line ends kept */
} moe_error;

/* ---------------------------------------------------------- cancellation */

/* A request, for the whole process, that long calls stop: file writers
 * (moe_model_save, moe_trainer_save, moe_convert_hf, moe_quantize,
 * moe_synth_model, the token cache), tokenizer training, moe_trainer_create
 * and moe_infer_perplexity return MOE_ERR_CANCELLED at their next check
 * (between chunks, tensors, merges or batches),
 * having removed their temporary files; an existing target file is left
 * as it was. moe_cancel is async-signal-safe (it sets one volatile
 * sig_atomic_t): call it from a SIGINT/SIGTERM handler. The library never
 * installs a handler. The request stays until moe_cancel_clear. (The one
 * exception to "no global state": a signal handler has no handle to
 * reach.) */
MOE_API void moe_cancel(void);
MOE_API void moe_cancel_clear(void);
/* 1 while a request is pending. */
MOE_API int moe_cancel_requested(void);

/* Progress of a long call: `what` names the phase ("training the
 * tokenizer", "tokenizing", "writing"), done of total units. Called on the
 * calling thread, often (the callback throttles its own output); it must
 * not call back into the library on the same handle. */
typedef void (*moe_progress_fn)(void *user, const char *what, int64_t done, int64_t total);

/* ------------------------------------------------------------ dense GEMM */

/* C[M,N] = alpha * op(A)[M,K] op(B)[K,N] + beta * C, row-major.
 * transA = 0: A is [M, K] with row stride lda; 1: A is [K, M] (so op(A) = A^T).
 * transB = 0: B is [K, N] with row stride ldb; 1: B is [N, K].
 * beta == 0 means C is not read (it may hold NaN). Threads: n_threads <= 0
 * uses the OpenMP default. The result does not depend on the thread count.
 * Its packing buffers (about 1.4 MB a thread) are allocated per call:
 * MOE_ERR_NOMEM, with C untouched, when they cannot be. */
MOE_API moe_status moe_sgemm(int n_threads, int transA, int transB, int M, int N, int K,
                             float alpha, const float *A, int lda, const float *B, int ldb,
                             float beta, float *C, int ldc, moe_error *err);

/* A short name of the kernel moe_sgemm chose for this processor
 * ("avx512", "avx2", "scalar"). */
MOE_API const char *moe_sgemm_kernel_name(void);

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

/* Bounds the configuration checks enforce (beyond them, sizes overflow or
 * per-token scratch outgrows a worker thread's stack). */
#define MOE_MAX_EXPERTS 4096          /* n_experts */
#define MOE_MAX_D_MODEL 65536         /* d_model */
#define MOE_MAX_D_FF (1 << 20)        /* d_ff, shared_d_ff, the model's d_ff */
#define MOE_MAX_THREADS 1024          /* n_threads */
#define MOE_MAX_CAPACITY_FACTOR 1e6f  /* capacity_factor, ec_capacity */
#define MOE_MAX_COEF 1e6f             /* |weight_scale|, loss coefficients, rates */
#define MOE_MAX_ACCUM 65536           /* moe_train_config.accum */
#define MOE_MAX_CORPUS_BYTES ((int64_t)1 << 36) /* moe_train_config.corpus_bytes */
#define MOE_STARVED_SHARE 0.25f       /* moe_route_stats.starved_experts: an expert
                                         below a quarter of the uniform load */

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
                                  their sum (Mixtral); 0: raw probabilities
                                  (the noisy gate renormalises either way) */
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
                                  training; weights softmax over the k kept
                                  logits; adds the parameter `noise` [E, d] */
    float importance_loss_coef; /* Shazeer: coef * CV(sum_t w[t, :])^2 */
    float load_loss_coef;      /* Shazeer: coef * CV(smooth load)^2 (noisy gate;
                                  computed in training forwards only) */
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
MOE_API void moe_layer_config_default(moe_layer_config *c, int d_model, int d_ff,
                                      int n_experts, int top_k);

/* Sets the routing fields of *c for a method of docs/ROUTING.md by name:
 * softmax, switch, noisy, gshard, expert-choice, sigmoid, group, shared,
 * top-p, hash, relu. moe_router_names() lists them (NULL-terminated). */
MOE_API moe_status moe_layer_config_router(moe_layer_config *c, const char *name, moe_error *err);
MOE_API const char *const *moe_router_names(void);

/* Checks a configuration without building anything. */
MOE_API moe_status moe_layer_config_check(const moe_layer_config *c, moe_error *err);

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
    int starved_experts;       /* experts whose share of this forward's
                                  assignments is below MOE_STARVED_SHARE of
                                  the uniform share 1/E (experts with none
                                  included, so dead ones count here too) */
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
MOE_API moe_status moe_layer_create(moe_layer **out, const moe_layer_config *cfg,
                                    moe_error *err);
MOE_API void moe_layer_free(moe_layer *L);

MOE_API const moe_layer_config *moe_layer_get_config(const moe_layer *L);

/* Parameters and gradients, owned by the layer. */
MOE_API moe_layer_weights moe_layer_params(moe_layer *L);
MOE_API moe_layer_weights moe_layer_grads(moe_layer *L);
/* Number of floats in all parameters. */
MOE_API size_t moe_layer_param_count(const moe_layer *L);

/* Initialises the parameters from a seed: router and input projections
 * ~ U(-1/sqrt(d), 1/sqrt(d)), down ~ U(-1/sqrt(d_ff), 1/sqrt(d_ff)). */
MOE_API void moe_layer_init_params(moe_layer *L, uint64_t seed);
/* Clears the gradients in memory. */
MOE_API void moe_layer_zero_grads(moe_layer *L);
/* Drops the gradients without touching their memory (PyTorch's
 * zero_grad(set_to_none=True)): the next backward WRITES them instead of
 * adding, which saves a pass over every gradient and the weight-gradient
 * GEMMs' reads of the old values. Until that backward completes, the
 * gradients' values are undefined. */
MOE_API void moe_layer_drop_grads(moe_layer *L);
MOE_API void moe_layer_set_threads(moe_layer *L, int n_threads);

/* y[T, d] = MoE(x[T, d]). Saves what backward needs. `train` is reserved for
 * the gates that behave differently while training (noise, jitter).
 * Fails on T < 1, T > max_tokens, or a non-finite x. In place is allowed:
 * x is copied before y is written, so y may be x or overlap it. */
MOE_API moe_status moe_layer_forward(moe_layer *L, float *y, const float *x, int T,
                                     int train, moe_error *err);

/* Given dy[T, d] for the T of the last forward, writes dx[T, d] and ADDS the
 * parameter gradients into moe_layer_grads(L) (WRITES them after
 * moe_layer_drop_grads). The gradients include those of
 * the auxiliary and z losses (as if each were added to the objective).
 * Not in place: dx overlapping dy is refused (MOE_ERR_ARG), since dy is
 * read again after dx is first written. */
MOE_API moe_status moe_layer_backward(moe_layer *L, float *dx, const float *dy,
                                      moe_error *err);

/* Routing statistics of the last forward. */
MOE_API const moe_route_stats *moe_layer_stats(const moe_layer *L);

/* Token ids for MOE_SELECT_HASH: ids[T] of the next forward (copied). */
MOE_API moe_status moe_layer_set_token_ids(moe_layer *L, const int32_t *ids, int T,
                                           moe_error *err);

/* Run-time overrides (generation): k <= max_top_k (or top_k), and the top-p
 * threshold in (0, 1]. */
MOE_API moe_status moe_layer_set_top_k(moe_layer *L, int k, moe_error *err);
MOE_API moe_status moe_layer_set_top_p(moe_layer *L, float p, moe_error *err);

/* Call after each optimizer step: moves the aux-loss-free selection bias,
 * b_i += gamma sign(mean load - load_i), and the ReLU router's L1
 * coefficient, lambda *= 1.2^sign(target - sparsity), from the loads of the
 * last forward (or of the accumulated batch with global_stats). */
MOE_API void moe_layer_update_balance(moe_layer *L);

/* The state of the layer's random generator (noise, jitter, GShard's policy):
 * save it and set it back to repeat a training forward exactly. */
MOE_API uint64_t moe_layer_rng_state(const moe_layer *L);
MOE_API void moe_layer_set_rng_state(moe_layer *L, uint64_t state);

/* The selection bias [E] of aux-loss-free balancing (read or restore it). */
MOE_API float *moe_layer_balance_bias(moe_layer *L);

/* Starts a new global batch for global_stats (clears accumulated counts). */
MOE_API void moe_layer_reset_stats(moe_layer *L);

/* The random draws of the last training forward, for reproducing it
 * elsewhere (any may be NULL when unused). */
typedef struct moe_layer_draws {
    const float *jitter; /* [T, d] the factors u of x * u */
    const float *noise;  /* [T, E] the N(0,1) draws of the noisy gate */
    const float *second; /* [T] the U(0,1) draws of GShard's random policy */
} moe_layer_draws;
MOE_API moe_layer_draws moe_layer_get_draws(const moe_layer *L);

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

MOE_API const moe_layer_profile *moe_layer_get_profile(const moe_layer *L);

/* Slots per token of this layer's routing decisions: top_k (or max_top_k)
 * for token choice, E for expert choice and ReLU routing. */
MOE_API int moe_layer_slots(const moe_layer *L);

/* The routing decisions of the last forward, each [T, slots] (any may be
 * NULL): expert index of slot j of token t (best first; -1 for an empty slot;
 * slot e is expert e for expert choice and ReLU), its gate weight after
 * renormalisation and scale, and 1 if that assignment was kept, 0 if not. */
MOE_API void moe_layer_routing(const moe_layer *L, int *experts, float *weights,
                               int *kept);


/* Changes the capacity factor of the next forwards (MOE_DROPLESS, or >= 0):
 * e.g. dropless evaluation of a model trained with capacity. Not allowed
 * for expert choice (MOE_ERR_ARG). */
MOE_API moe_status moe_layer_set_capacity_factor(moe_layer *L, float cf, moe_error *err);

/* ----------------------------------------------------------------- model */

/* A decoder-only transformer language model: token embedding; n_layers
 * blocks of (RMSNorm, causal grouped-query attention with RoPE, residual;
 * RMSNorm, MoE or dense SwiGLU feed-forward, residual); final RMSNorm;
 * output head (tied to the embedding or not). MoE and dense models run the
 * same code; layer l is an MoE layer when moe_every > 0, l >= n_dense_first
 * and (l - n_dense_first) % moe_every == 0. RoPE rotates adjacent pairs
 * (x[2i], x[2i+1]) of each head, as GGUF's `llama` architecture does. */
typedef struct moe_model_config {
    int vocab_size;      /* V */
    int d_model;         /* d */
    int n_layers;        /* L */
    int n_heads;         /* H query heads */
    int n_kv_heads;      /* Hkv key/value heads; divides H */
    int head_dim;        /* hd; 0 means d / H */
    int ctx_len;         /* T: the longest sequence */
    int d_ff;            /* hidden width of the dense feed-forward layers */
    float rope_theta;    /* RoPE base (10000) */
    float norm_eps;      /* RMSNorm epsilon (1e-5) */
    int tie_embeddings;  /* 1: the output head is token_embd */
    int moe_every;       /* 0: every layer dense; n: every n-th layer MoE */
    int n_dense_first;   /* the first layers stay dense */
    moe_layer_config moe; /* MoE layers: n_experts, top_k, d_ff (expert
                             width) and the routing; d_model, max_tokens and
                             n_threads are set by the model */
    int max_batch;       /* B: sequences per forward at most */
    int n_threads;       /* <= 0: the OpenMP default */
} moe_model_config;

/* Defaults: V 512, d 128, L 4, H 4, Hkv 4, T 128, d_ff 384, MoE every
 * layer with 8 experts top-2 of width 192 (softmax, renormalised, dropless),
 * rope_theta 10000, eps 1e-5, untied, max_batch 8. */
MOE_API void moe_model_config_default(moe_model_config *c);
MOE_API moe_status moe_model_config_check(const moe_model_config *c, moe_error *err);
/* 1 if layer l of c is an MoE layer. */
MOE_API int moe_model_layer_is_moe(const moe_model_config *c, int l);

/* Parameter and activation bytes a model of this configuration allocates
 * (forward and backward at max_batch x ctx_len). */
MOE_API size_t moe_model_memory_bytes(const moe_model_config *c);
/* MOE_ERR_NOMEM with a message giving both sizes when that is more than
 * 90% of this machine's physical memory. */
MOE_API moe_status moe_model_check_memory(const moe_model_config *c, moe_error *err);

/* Sizes of a configuration. Active parameters count k of E experts and,
 * when the output head is not tied, one row of the embedding (the same
 * rule as moe_infer_info.params_active, so `moe train` and `moe inspect`
 * agree); FLOPs
 * are those of the matrix products and attention (2 per multiply-add) for
 * one token of a full ctx_len sequence; training is 3x the forward. */
typedef struct moe_model_counts {
    int64_t params;        /* every parameter */
    int64_t active_params; /* parameters one token uses */
    int64_t expert_params; /* parameters inside routed experts */
    double fwd_flops;      /* forward FLOPs per token */
    double train_flops;    /* forward + backward FLOPs per token */
} moe_model_counts;
MOE_API void moe_model_count(const moe_model_config *c, moe_model_counts *out);

typedef struct moe_model moe_model;

/* Builds a model with zeroed parameters; fails with a clear message when the
 * configuration is invalid or does not fit in memory. */
MOE_API moe_status moe_model_create(moe_model **out, const moe_model_config *c,
                                    moe_error *err);
MOE_API void moe_model_free(moe_model *m);
MOE_API const moe_model_config *moe_model_get_config(const moe_model *m);
MOE_API void moe_model_set_threads(moe_model *m, int n_threads);

/* Initialises every parameter from a seed: matrices ~ N(0, 0.02), the
 * residual output projections (attn_output, ffn_down) ~ N(0, 0.02/sqrt(2L)),
 * norm weights 1. */
MOE_API void moe_model_init_params(moe_model *m, uint64_t seed);

/* One parameter tensor with its gradient. Names and layouts are those of
 * GGUF's llama / Mixtral tensors (token_embd.weight, blk.N.attn_q.weight,
 * blk.N.ffn_gate_exps.weight, ...); shape is row-major, outermost first
 * (a [rows, cols] matrix; GGUF lists dims the other way round). */
typedef struct moe_tensor {
    char name[64];
    int n_dims;
    int64_t shape[3];
    int64_t n;    /* elements of the whole tensor */
    float *data;  /* owned by the model: elements [held_lo, held_lo + held_n) */
    float *grad;  /* the same elements' gradients */
    int decay;    /* 1: weight decay applies (matrices); 0: norms */
    int64_t held_lo, held_n; /* the elements this process holds: 0 and n,
                                except the stacked expert tensors of a rank of
                                an expert-parallel run (moe_train_config.dist),
                                which hold the rank's experts only */
} moe_tensor;

MOE_API int moe_model_n_tensors(const moe_model *m);
MOE_API moe_status moe_model_tensor(moe_model *m, int i, moe_tensor *out, moe_error *err);
/* Index of the tensor of that name, -1 when none. */
MOE_API int moe_model_find_tensor(const moe_model *m, const char *name);

/* Forward over tokens[B, T] (B <= max_batch, T <= ctx_len). targets[B, T]
 * (NULL: no loss) are the next tokens; a target < 0 is ignored. *loss gets
 * the mean cross-entropy over counted targets (loss may be NULL). train = 1
 * turns on the routers' training behaviour (noise, jitter). */
MOE_API moe_status moe_model_forward(moe_model *m, const int32_t *tokens,
                                     const int32_t *targets, int B, int T, int train,
                                     float *loss, moe_error *err);
/* Logits [B*T, V] of the last forward (valid until the next forward or
 * backward: backward overwrites them). */
MOE_API const float *moe_model_logits(const moe_model *m);

/* The losses of the last forward: the cross-entropy, and the router losses
 * summed over the MoE layers (each already times its coefficient). */
typedef struct moe_model_losses {
    float ce;        /* mean cross-entropy */
    float aux;       /* load-balancing losses */
    float z;         /* router z-losses */
    float router;    /* every router loss (aux, z and the others) */
    int n_targets;   /* targets counted in ce */
} moe_model_losses;
MOE_API moe_model_losses moe_model_get_losses(const moe_model *m);

/* Gradient of ce + router losses of the last forward (which needs targets),
 * ADDED into the parameter gradients (WRITTEN after moe_model_drop_grads,
 * so a micro-batch loop is drop, then forward + backward per micro-batch). */
MOE_API moe_status moe_model_backward(moe_model *m, moe_error *err);
/* Clears every parameter gradient in memory. */
MOE_API void moe_model_zero_grads(moe_model *m);
/* Drops the gradients without touching their memory (PyTorch's
 * zero_grad(set_to_none=True)): the next backward WRITES every gradient
 * instead of adding, which saves a pass over all gradients and the
 * weight-gradient GEMMs' reads of the old values. Until a backward
 * completes, the values are undefined and moe_adamw_step refuses to run
 * (moe_model_grads_ready says 0). */
MOE_API void moe_model_drop_grads(moe_model *m);
/* 1 when the gradients hold values (always, except after
 * moe_model_drop_grads and before the next backward completes). */
MOE_API int moe_model_grads_ready(const moe_model *m);

/* The MoE layer of block l, or NULL for a dense block (statistics,
 * update_balance, routing). */
MOE_API moe_layer *moe_model_moe_layer(moe_model *m, int l);


/* ------------------------------------------------------------- optimizer */

/* AdamW (Loshchilov & Hutter) as PyTorch's torch.optim.AdamW computes it:
 *   p -= lr * weight_decay * p          (tensors with decay = 1 only)
 *   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
 *   p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
 * after clipping the gradients to a global L2 norm of grad_clip (when > 0)
 * the way torch.nn.utils.clip_grad_norm_ does: g *= clip / (norm + 1e-6)
 * when that factor is below 1. */
typedef struct moe_adamw_config {
    float beta1;         /* 0.9 */
    float beta2;         /* 0.95 */
    float eps;           /* 1e-8 */
    float weight_decay;  /* 0.1 */
    float grad_clip;     /* 1.0; 0 turns clipping off */
} moe_adamw_config;

MOE_API void moe_adamw_config_default(moe_adamw_config *c);
/* Checks a configuration: betas in [0, 1), eps finite > 0, weight_decay and
 * grad_clip finite >= 0. */
MOE_API moe_status moe_adamw_config_check(const moe_adamw_config *c, moe_error *err);

typedef struct moe_adamw moe_adamw;

/* Moments (zero) for every tensor of m; the optimizer is tied to m. */
MOE_API moe_status moe_adamw_create(moe_adamw **out, moe_model *m, const moe_adamw_config *c,
                                    moe_error *err);
MOE_API void moe_adamw_free(moe_adamw *o);
/* One update of every parameter of the model from its gradients, at
 * learning rate lr. *grad_norm (may be NULL) gets the norm before clipping.
 * Fails (changing nothing) when a gradient is not finite. */
MOE_API moe_status moe_adamw_step(moe_adamw *o, float lr, float *grad_norm, moe_error *err);
/* Steps taken so far (t of the bias correction); settable for a resume. */
MOE_API int64_t moe_adamw_steps(const moe_adamw *o);
MOE_API void moe_adamw_set_steps(moe_adamw *o, int64_t t);
/* The first and second moments of tensor i (its held_n elements, as its data). */
MOE_API float *moe_adamw_moment(moe_adamw *o, int i, int which /* 0: m, 1: v */);

/* The learning rate of step `step` (0-based) of `total`: linear warmup from
 * lr/warmup to lr over `warmup` steps, then cosine decay to min_lr at the
 * last step. */
MOE_API float moe_lr_schedule(int64_t step, int64_t total, int64_t warmup, float lr, float min_lr);


/* ------------------------------------------------------------- tokenizer */

/* The byte-level BPE tokenizer moe trains (GPT-2 style pre-tokenization on
 * bytes; ids 0..255 are the bytes, then the merges, then <|bos|>, <|eos|>).
 * encode then decode gives back any byte string exactly. */
typedef struct moe_tokenizer moe_tokenizer;

MOE_API moe_status moe_tokenizer_train(moe_tokenizer **out, const char *text, size_t n,
                                       int vocab_size, moe_error *err);
MOE_API void moe_tokenizer_free(moe_tokenizer *t);
MOE_API int moe_tokenizer_n_vocab(const moe_tokenizer *t);
MOE_API int moe_tokenizer_bos(const moe_tokenizer *t);
MOE_API int moe_tokenizer_eos(const moe_tokenizer *t);
/* At most cap ids (cap = n always suffices); *n_out gets the full count. */
MOE_API moe_status moe_tokenizer_encode(const moe_tokenizer *t, const char *text, size_t n,
                                        int32_t *out, size_t cap, size_t *n_out, moe_error *err);
/* Bytes of ids (BOS/EOS give nothing); at most cap bytes, *n_out the full
 * length (no NUL is added). */
MOE_API moe_status moe_tokenizer_decode(const moe_tokenizer *t, const int32_t *ids, size_t n,
                                        char *out, size_t cap, size_t *n_out, moe_error *err);

/* ------------------------------------------------------------ model files */

/* Writes the model and its tokenizer as one GGUF file (atomically): the
 * `llama` architecture's keys and tensor names (Mixtral layout for the MoE
 * layers, qwen2moe names for shared experts), fp32 tensors, the tokenizer
 * as tokenizer.ggml.* (model "gpt2"), and the full configuration under
 * moe.* keys. */
MOE_API moe_status moe_model_save(moe_model *m, const moe_tokenizer *tok, const char *path,
                                  moe_error *err);
/* Reads a model file written by moe_model_save (or an fp32 llama/Mixtral
 * GGUF) into a new model able to run max_batch sequences; *tok gets its
 * tokenizer (tok may be NULL). */
MOE_API moe_status moe_model_load(moe_model **m, moe_tokenizer **tok, const char *path,
                                  int max_batch, int n_threads, moe_error *err);

/* ----------------------------------------------------------------- corpus */

/* The built-in corpus: documents of several clearly different domains,
 * generated from a seed (nothing is downloaded). */
MOE_API int moe_corpus_n_domains(void);
MOE_API const char *moe_corpus_domain_name(int domain);
/* A short opening typical of the domain, for sampling. */
MOE_API const char *moe_corpus_domain_prompt(int domain);
/* About `bytes` bytes of the domain (domain = -1: all domains mixed);
 * *text is malloc'd (free it with free()). */
MOE_API moe_status moe_corpus_text(char **text, size_t *n, int domain, size_t bytes,
                                   uint64_t seed, moe_error *err);

/* ---------------------------------------------------------------- trainer */

typedef struct moe_train_config {
    moe_model_config model;  /* model.vocab_size: the tokenizer's size */
    moe_adamw_config adamw;
    int batch;               /* B sequences of model.ctx_len per micro-batch */
    int accum;               /* micro-batches per optimizer step */
    int64_t steps;           /* optimizer steps in all */
    float lr, min_lr;        /* peak and final learning rate */
    int64_t warmup;          /* warmup steps */
    int64_t eval_every;      /* steps between validation losses (0: never) */
    int eval_batches;        /* validation batches per evaluation (0: all) */
    int64_t save_every;      /* steps between checkpoints (default 100; 0:
                                only at the end) */
    float val_fraction;      /* share of the tokens held out */
    uint64_t seed;           /* initialisation, data order, routing noise */
    int64_t corpus_bytes;    /* size of the built-in corpus when no data */
    int skip_bad;            /* 1: data files that cannot be read, are binary
                                (not UTF-8 text) or damaged (compressed) are
                                skipped with a warning; 0 (default): the
                                first is an error naming it */
    float eval_capacity;     /* capacity factor of validation (MOE_DROPLESS) */
    moe_progress_fn progress; /* moe_trainer_create's tokenizer training and
                                 tokenizing (NULL: none; not saved) */
    void *progress_user;
    struct moe_dist *dist;   /* the distributed job this trainer will join
                                (moe_trainer_attach_dist with the same d), or
                                NULL: moe_trainer_create / _resume then
                                allocate and load only this rank's experts
                                (their parameters, gradients and moments);
                                not saved */
} moe_train_config;

MOE_API void moe_train_config_default(moe_train_config *c);
/* Checks a configuration as moe_trainer_create does before any work
 * (model.max_batch is taken to be batch): the model, the optimizer,
 * accum <= MOE_MAX_ACCUM, corpus_bytes <= MOE_MAX_CORPUS_BYTES, finite
 * rates, and the memory the model needs against this machine's. */
MOE_API moe_status moe_train_config_check(const moe_train_config *c, moe_error *err);

typedef struct moe_trainer moe_trainer;

/* A new run in directory dir (created if missing; refused if it already
 * holds a checkpoint, so good data is never overwritten: resume it instead).
 * data: text files or folders (NULL / 0: the built-in corpus); folders are
 * read recursively, a file reached by several names (links) once,
 * gzip / xz / zstd files decompressed (docs/TRAINING.md). Trains the
 * tokenizer (model.vocab_size 256 or 257: the bytes alone, and the model
 * gets 258 ids with the two special tokens), tokenizes once into
 * dir/tokens.bin (reused when the sources and tokenizer match), holds out
 * the last val_fraction of every block of each source for validation,
 * builds and initialises the model and the optimizer. */
MOE_API moe_status moe_trainer_create(moe_trainer **out, const moe_train_config *c,
                                      const char *const *data, int n_data, const char *dir,
                                      moe_error *err);
/* The configuration saved in dir's checkpoint (to change what may change:
 * steps, eval_every, eval_batches, save_every, threads). */
MOE_API moe_status moe_trainer_read_config(const char *dir, moe_train_config *c, moe_error *err);
/* Continues the run saved in dir exactly. c (NULL: as saved) must equal the
 * saved configuration except in the fields that may change; a difference
 * is an error naming the field and both values. */
MOE_API moe_status moe_trainer_resume(moe_trainer **out, const char *dir,
                                      const moe_train_config *c, moe_error *err);
MOE_API void moe_trainer_free(moe_trainer *t);

typedef struct moe_train_step_info {
    int64_t step;        /* steps done after this one */
    float loss;          /* mean cross-entropy over the step's tokens */
    float aux, z;        /* load-balancing and z losses (summed over layers) */
    float router;        /* every router loss */
    float lr;            /* learning rate used */
    float grad_norm;     /* before clipping */
    double seconds;      /* wall time of the step */
    double tokens;       /* tokens in the step */
} moe_train_step_info;

/* One optimizer step (accum micro-batches). */
MOE_API moe_status moe_trainer_step(moe_trainer *t, moe_train_step_info *info, moe_error *err);
/* Mean validation cross-entropy, dropless routing: every validation window,
 * or eval_batches batches of windows spread evenly over the whole held-out
 * set (the same windows at every call). */
MOE_API moe_status moe_trainer_eval(moe_trainer *t, float *val_loss, moe_error *err);
/* Writes dir/model.gguf and dir/state.gguf (model, optimizer, data and
 * random state), each atomically. */
MOE_API moe_status moe_trainer_save(moe_trainer *t, moe_error *err);

MOE_API int64_t moe_trainer_steps_done(const moe_trainer *t);
/* The length of the learning-rate schedule: warmup, then a cosine from lr
 * to min_lr over the steps the run was created with. A resume keeps it:
 * with a larger steps the rate holds at min_lr after the cosine's end
 * (it never jumps back up); with a smaller one the run stops early. */
MOE_API int64_t moe_trainer_schedule_steps(const moe_trainer *t);
MOE_API const moe_train_config *moe_trainer_config(const moe_trainer *t);
MOE_API moe_model *moe_trainer_model(moe_trainer *t);
MOE_API const moe_tokenizer *moe_trainer_tokenizer(const moe_trainer *t);

typedef struct moe_data_info {
    int64_t train_tokens, val_tokens;
    int64_t text_bytes;
    double unigram_bits;  /* entropy of the token unigram distribution,
                             bits per token (a loss floor for a model that
                             ignores context: unigram_bits * ln 2 nats) */
    int cache_reused;     /* 1 if dir/tokens.bin was reused */
    int64_t n_sources;    /* files read (1 for the built-in corpus) */
    int64_t n_val_sources; /* of them, those validation tokens come from */
    int n_skipped;        /* bad files skipped (skip_bad) */
} moe_data_info;
MOE_API moe_data_info moe_trainer_data_info(const moe_trainer *t);
/* What the user should know about the data of this run, as lines that end
 * in '\n' ("" when none): "warning: ..." for files skipped (skip_bad) or
 * read with an incomplete last UTF-8 character, "note: ..." for a file
 * reached by a second name (read once) and a vocabulary of bytes alone, and
 * one "validation: ..." line saying which sources the held-out tokens come
 * from (a share of every source; docs/TRAINING.md). Valid while t lives. */
MOE_API const char *moe_trainer_data_notes(const moe_trainer *t);

/* How the last moe_trainer_eval routed the held-out tokens, per MoE layer
 * and per source (each --data path; the entries of a single folder; the
 * built-in corpus's domains), counted over kept assignments. Valid until
 * the next evaluation or moe_trainer_free; n_layers is 0 for a dense model,
 * tokens 0 before the first evaluation. */
typedef struct moe_eval_routing {
    int n_layers;                    /* M: the MoE layers */
    const int *layers;               /* [M] their indices in the model */
    int n_experts;                   /* E */
    int n_sources;                   /* S */
    const char *const *source_names; /* [S] */
    const int64_t *source_tokens;    /* [S] held-out tokens of each source */
    const int64_t *counts;           /* [M, S, E] assignments per source and expert */
    const int64_t *load;             /* [M, E] assignments per expert */
    const float *max_violation;      /* [M] max_e load_e / mean load - 1 */
    const int *dead_experts;         /* [M] experts with no held-out token */
    const double *mi_bits;           /* [M] I(source; expert) in bits */
    int64_t tokens;                  /* held-out tokens routed */
} moe_eval_routing;
MOE_API const moe_eval_routing *moe_trainer_eval_routing(const moe_trainer *t);

/* ----------------------------------------------------------------- report */

/* The page of `moe report`: one self-contained XHTML document (inline SVG
 * and CSS, no script or external resource) drawn from dirs[i]/metrics.jsonl
 * of n >= 1 runs: configuration table, loss / validation loss against steps
 * and wall time, lr, gradient norm, aux and z losses, tokens/s (runs
 * overlaid), and per run and MoE layer the expert loads over evaluations,
 * max-violation and dead experts, source x expert heatmaps with
 * I(source; expert). Figure ids: docs/REPORT.md. *html is malloc'd.
 * Errors: a folder without a readable metrics.jsonl (MOE_ERR_IO), one whose
 * lines all fail to parse (MOE_ERR_FORMAT). */
MOE_API moe_status moe_report_render(char **html, size_t *n, const char *const *dirs, int n_dirs,
                                     moe_error *err);
/* The same page written to path atomically. */
MOE_API moe_status moe_report_write(const char *path, const char *const *dirs, int n_dirs,
                                    moe_error *err);

/* ------------------------------------------------------------ distributed */
/* Expert- and data-parallel training over MPI (docs/SCALING.md). A job of
 * P = EP x DP ranks (mpirun -np P): each MoE layer's experts are sharded
 * over EP ranks (E % EP == 0), everything else is replicated; the global
 * batch, its order, the routing (capacity, drops, losses, statistics,
 * balance bias) and the step are those of one process, up to the order of
 * fp32 sums. A build without MPI (moe_dist_available() == 0) has one rank.
 * Every rank calls the same functions in the same order. */
typedef struct moe_dist moe_dist;
/* 1 when this library was built with MPI. */
MOE_API int moe_dist_available(void);
/* Joins the job (MPI_Init, once per process) with expert_parallel ranks per
 * expert group (0: all ranks); expert_parallel must divide the rank count. */
MOE_API moe_status moe_dist_init(moe_dist **out, int expert_parallel, moe_error *err);
/* Leaves it (MPI_Finalize); NULL is allowed. */
MOE_API void moe_dist_free(moe_dist *d);
MOE_API int moe_dist_rank(const moe_dist *d);
MOE_API int moe_dist_size(const moe_dist *d);
MOE_API int moe_dist_expert_parallel(const moe_dist *d);
/* Bytes this rank received through collectives so far (counted at the
 * calls: the rows an all-to-all-v delivered, the nominal share of an
 * all-gather or ring all-reduce), and the wall seconds spent inside them
 * (waiting for the slowest rank included): for benchmarks. */
MOE_API uint64_t moe_dist_bytes_moved(const moe_dist *d);
MOE_API double moe_dist_comm_seconds(const moe_dist *d);
MOE_API moe_status moe_dist_barrier(moe_dist *d, moe_error *err);
/* Seconds the collective now in progress on this rank has been waiting (0:
 * none in progress; always 0 without MPI), and *what (NULL allowed) its
 * name ("all-to-all-v", "all-reduce", "barrier", ...; NULL when none).
 * Safe to call from another thread while the rank's own thread is inside
 * the collective: what a watchdog polls to end a job whose rank or
 * connection is gone (moe train --dist-timeout; the library never ends
 * the process itself). */
MOE_API double moe_dist_stalled(const moe_dist *d, const char **what);
/* 1: a trainer of d starts the all-reduce of each block's gradients as
 * soon as that block's backward is done, and waits for them before the
 * optimizer step (the results are those of 0 up to the order of fp32
 * sums); 0 (the default): every all-reduce after the backward. 1 can hide
 * transfer time on a network; on one machine it measured no faster
 * (docs/SCALING.md). */
MOE_API void moe_dist_set_overlap(moe_dist *d, int on);
/* *value = the largest of every rank's *value (collective): how the ranks
 * agree, e.g. that a signal reached one of them and all stop after the
 * same step. NULL d: *value unchanged. */
MOE_API moe_status moe_dist_max(moe_dist *d, int *value, moe_error *err);
/* Ends every rank of the job with exit code `code` (MPI_Abort): for a
 * program whose rank failed alone while the others wait; the library
 * itself never calls it. */
MOE_API void moe_dist_abort(moe_dist *d, int code);
/* Makes t (created or resumed on every rank from the same options, with
 * moe_train_config.dist = d, so that it holds only this rank's experts)
 * one rank of d before its first step: checks that every rank runs the
 * same build, configuration, data and step (a mismatch is one error, on
 * every rank, naming the rank and what differs), that batch % ranks == 0
 * and n_experts % expert_parallel == 0, and shards the MoE layers. Each rank
 * then runs batch / ranks sequences of the global batch; checkpoints are
 * written by rank 0 alone, in the one-process format, so a run resumes at
 * any rank count. d must outlive t's use. */
MOE_API moe_status moe_trainer_attach_dist(moe_trainer *t, moe_dist *d, moe_error *err);

#ifdef __cplusplus
}
#endif
#endif /* MOE_H */
