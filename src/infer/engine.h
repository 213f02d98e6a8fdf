/* engine.h: the struct behind moe_infer and the pieces of its forward pass
 * (internal).
 *
 * For: sharing the loaded model, the KV cache and the scratch buffers
 * between engine.c (open, close, eval, the API), forward.c (embedding,
 * attention, the layer loop, the output head) and moe_ffn.c (dense and MoE
 * feed-forward blocks). Not for: file semantics (arch.h) or the tokenizer.
 *
 * Data flow of one chunk of n <= max_batch tokens at positions pos..pos+n-1:
 *   x = token_embd[tokens] * embd_scale                          [n, d]
 *   block l: xn = rmsnorm(x) * attn_norm
 *            q, k, v = xn Wq^T (+bq), ...; q/k norms; rope(q), rope(k)
 *            k, v -> cache[l][pos .. pos+n-1]
 *            ao = causal attention of q against cache[l][0 .. pos+i]  [n, H*hd]
 *            x += resid_scale * (ao Wo^T (+bo))
 *            xn = rmsnorm(x) * ffn_norm
 *            x += resid_scale * ffn(xn)   (dense SwiGLU, or MoE + shared expert)
 *   logits = (rmsnorm(x) * output_norm) Wout^T / logit_scale     [rows, V]
 * Every matrix product is quant_matmul on the weights' own rows; nothing is
 * allocated while evaluating.
 */
#ifndef MOE_INFER_ENGINE_H
#define MOE_INFER_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "core/comm.h"
#include "infer/arch.h"
#include "kernels/attn_decode.h"
#include "core/autothreads.h"
#include "io/gguf.h"
#include "moe_infer.h"

/* The read-only half: the mapped weights and the vocabulary, shared by any
 * number of contexts (moe_infer) on any threads; nothing in it changes after
 * moe_infer_model_open. */
struct moe_infer_model {
    gguf_ctx *g;               /* the mapped file (owns the weights) */
    moe_vocab *vocab;          /* NULL when the file has no tokenizer */
    arch_model am;
    char path[256];            /* for messages */
};

/* A context: n_seq sequences (a KV cache and a length each), the scratch of
 * one step and the expert counts. One thread at a time. */
struct moe_infer {
    moe_infer_model *mdl;      /* the weights */
    int owns_mdl;              /* moe_infer_open: closed with the context */
    const arch_model *am;      /* &mdl->am */
    moe_infer_info info;
    int n_threads;             /* the count the kernels are given now (<= 0: OpenMP default) */
    int nt;                    /* resolved thread count of this call (<= nt_max) */
    int nt_max;                /* resolved count of the options (scratch slots) */
    int auto_threads;          /* 1: no count was given; decode chooses (autothreads.h) */
    autothreads at;            /* that choice */
    int ctx_len, max_batch, top_k;
    int n_seq;                 /* sequences (KV caches) */
    int *seq_len;              /* [n_seq] cache positions 0 .. seq_len-1 are valid */
    int *seq_k;                /* [n_seq] experts per token of the sequence; 0: top_k */

    /* KV cache per (sequence, layer, kv head), as attn.h lays it out; 64-byte aligned */
    float *k_cache;            /* [S, L, Hkv, kt_floats] K transposed in blocks of ATTN_KB */
    float *v_cache;            /* [S, L, Hkv, ctx_len, hd] */
    size_t kt_floats;          /* attn_kt_floats(ctx_len, hd) */
    size_t k_seq, v_seq;       /* floats of one sequence's K, V caches */

    /* the rows of the step being evaluated (see infer_forward) */
    int *row_seq, *row_pos;    /* [B] sequence and position of each row */
    int *row_k;                /* [B] experts per token of each row */
    int *run_i0, *run_task0;   /* [B + 1] runs of rows of one sequence: first row, first
                                  attention task (run n_runs: the totals) */
    int n_runs;
    int *out_rows;             /* [B] rows whose logits are wanted */
    attn_kernel_fn attn;       /* the attention kernel (attn_best_kernel) */
    float *rope_cos, *rope_sin;/* [ctx_len, n_rot/2] */
    int64_t *counts;           /* [L, E] tokens routed per expert */
    moe_infer_times times;     /* moe_infer_get_times */
    int in_routed;             /* 1 while the routed experts' products run */
    moe_comm *ep;              /* expert parallelism (infer_set_dist): every rank runs
                                  the same tokens, the experts [e_lo, e_hi) only, and
                                  the MoE blocks' outputs are summed over the ranks;
                                  NULL: one process */
    int e_lo, e_hi;

    /* scratch for max_batch = B rows */
    float *x, *xn, *y;         /* [B, d] residual, normed, block output */
    float *q, *ao;             /* [B, H*hd] */
    float *k, *v;              /* [B, Hkv*hd] */
    float *att;                /* [nt, ATTN_RMAX, att_lds] attention scores per thread */
    size_t att_lds;            /* ctx_len rounded up to ATTN_KB */
    float *r_logits;           /* [B, E] router logits, then probabilities */
    int *sel;                  /* [B, E] selected experts per token */
    float *sel_w;              /* [B, E] their weights */
    unsigned char *picked;     /* [E] top-k marks of one token */
    float *sel_sc;             /* [E] selection scores of one token (with the bias) */
    int *n_sel;                /* [B] experts of each token (k; 0..E for ReLU, expert choice) */
    unsigned char *ec_taken;   /* [B] expert choice: tokens one expert took */
    const int32_t *cur_tokens; /* [n] the chunk's token ids (hash routing) */
    int *e_count, *e_off;      /* [E], [E+1] assignments per expert */
    int *e_row;                /* [B*E] token of each assignment, expert-major */
    float *e_w;                /* [B*E] its weight */
    int *t_slot;               /* [B, E] each token's assignments in expert order */
    int *t_fill;               /* [B] */
    int moe_rows;              /* R = B * max(1, top_k at open): rows of one wave */
    float *xg;                 /* [R, d] gathered rows of a wave of experts */
    float *hg, *hu;            /* [R, ff_max] gate and up activations */
    float *yo;                 /* [R, d] expert (or the shared expert's) outputs */
    quant_mm *mm;              /* [2 E + 3] the products of one batched call */
    void *work;                /* quant_matmul(_batch) work space */
    size_t work_size;
    moe_route_fn route_hook;   /* moe_infer_set_route_hook (route_hook.c), or NULL */
    void *route_user;
};

/* y[M, rows] = x[M, cols] w_i^T for matrix i of the stack w. */
moe_status infer_matmul(moe_infer *m, float *y, const float *x, const arch_mat *w,
                        int64_t i, int64_t M, moe_error *err);

/* The product y[M, rows] = x[M, cols] w_i^T as one entry of a batch. */
quant_mm infer_mm(float *y, const float *x, const arch_mat *w, int64_t i, int64_t M);

/* The n products p in one parallel region (quant_matmul_batch): at decode a
 * layer's products pay one fork and join per batch, not one each. */
moe_status infer_matmul_batch(moe_infer *m, const quant_mm *p, int n, moe_error *err);

/* Row loops: fn(ctx, r0, r1) over row ranges covering [0, n), rows of
 * row_len floats; on the calling thread when the work is small or there is
 * one thread, else split evenly across m->nt threads. Each row must be
 * computed alone, so the split cannot change results. */
typedef void (*infer_rows_fn)(void *ctx, int r0, int r1);
void infer_for_rows(const moe_infer *m, int n, size_t row_len, infer_rows_fn fn, void *ctx);

/* One step of n <= max_batch rows, checked by the caller: row i is token
 * tokens[i] of sequence m->row_seq[i] at position m->row_pos[i] with
 * m->row_k[i] experts; the rows of one sequence are consecutive, at
 * consecutive positions, and the runs m->run_* describe them. logits: NULL
 * or [n_out, V], the rows m->out_rows[0, n_out) (ascending). */
moe_status infer_forward(moe_infer *m, const int32_t *tokens, int n, float *logits,
                         int n_out, moe_error *err);

/* y[n, d] = the feed-forward block of layer l on xn[n, d] (dense or MoE with
 * its shared expert); counts the routed tokens. */
moe_status infer_ffn(moe_infer *m, int l, float *y, const float *xn, int n,
                     moe_error *err);

/* Makes m one of comm->size ranks that run the same tokens, each with
 * n_experts / size of every MoE block's experts (only their weight pages
 * are read, so only they become resident). */
moe_status infer_set_dist(moe_infer *m, moe_comm *comm, moe_error *err);

#endif
