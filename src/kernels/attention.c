/* attention.c: causal grouped-query attention for training (see attention.h
 * for the math, the blocking and the FLOP count).
 *
 * For: building the GEMM problems of the four kinds of product per
 * (sequence, head, row block), the row-wise softmax and its Jacobian.
 * Not for: the KV-cache decode path of inference.
 *
 * The GEMM problems go to gemm_grouped in batches kept on the stack (no
 * allocation); a batch is flushed before any problem that reads what an
 * earlier one writes.
 */
#include "kernels/attention.h"

#include "core/error.h"
#include "kernels/gemm.h"

#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>

#include "kernels/fastmath.h"

#define RB 64     /* query rows (and key columns) per GEMM block */
#define BATCH 512 /* GEMM problems per gemm_grouped call at most */
#define LANES 16  /* partial sums of the row reductions */

static int imin(int a, int b) { return a < b ? a : b; }

/* A list of independent GEMM problems run together. */
typedef struct batch {
    gemm_problem p[BATCH];
    int n;  /* problems queued */
    int nt; /* threads */
    const gemm_ws *ws; /* packing buffers */
} batch;

static void batch_flush(batch *b) {
    if (b->n > 0) gemm_grouped(b->ws, b->nt, b->p, b->n);
    b->n = 0;
}

static void batch_add(batch *b, gemm_problem p) {
    if (b->n == BATCH) batch_flush(b);
    b->p[b->n++] = p;
}

static gemm_problem gemm_scaled(gemm_problem p, float alpha) {
    p.alpha = alpha;
    return p;
}

/* Softmax of row i over columns [0, i] in place; zero columns (i, n). */
static void softmax_causal_row(float *restrict s, int i, int n) {
    const int len = i + 1;
    float mx[LANES];
    for (int j = 0; j < LANES; j++) mx[j] = -INFINITY;
    int c = 0;
    for (; c + LANES <= len; c += LANES)
        for (int j = 0; j < LANES; j++) mx[j] = s[c + j] > mx[j] ? s[c + j] : mx[j];
    for (int j = 0; c < len; c++, j++) mx[j] = s[c] > mx[j] ? s[c] : mx[j];
    float m = mx[0];
    for (int j = 1; j < LANES; j++) m = mx[j] > m ? mx[j] : m;

    #pragma omp simd
    for (int j = 0; j < len; j++) s[j] = exp_vec(s[j] - m);
    float acc[LANES] = {0};
    c = 0;
    for (; c + LANES <= len; c += LANES)
        for (int j = 0; j < LANES; j++) acc[j] += s[c + j];
    for (int j = 0; c < len; c++, j++) acc[j] += s[c];
    for (int w = LANES / 2; w >= 1; w /= 2)
        for (int j = 0; j < w; j++) acc[j] += acc[j + w];
    const float inv = 1.0f / acc[0];
    #pragma omp simd
    for (int j = 0; j < len; j++) s[j] *= inv;
    for (int j = len; j < n; j++) s[j] = 0.0f;
}

/* In place, dP -> dS on row i: dS_j = P_j (dP_j - <P, dP>) for j <= i, 0 on
 * (i, n). */
static void softmax_grad_row(float *restrict ds, const float *restrict p, int i, int n) {
    const int len = i + 1;
    float acc[LANES] = {0};
    int c = 0;
    for (; c + LANES <= len; c += LANES)
        for (int j = 0; j < LANES; j++) acc[j] += p[c + j] * ds[c + j];
    for (int j = 0; c < len; c++, j++) acc[j] += p[c] * ds[c];
    for (int w = LANES / 2; w >= 1; w /= 2)
        for (int j = 0; j < w; j++) acc[j] += acc[j + w];
    const float dot = acc[0];
    #pragma omp simd
    for (int j = 0; j < len; j++) ds[j] = p[j] * (ds[j] - dot);
    for (int j = len; j < n; j++) ds[j] = 0.0f;
}

size_t attention_scratch_floats(int B, int T, int H, int Hkv, int hd, int n_threads) {
    (void)Hkv; (void)hd; (void)n_threads;
    return (size_t)B * H * T * T;
}

void attention_forward(float *out, float *att, const float *q, const float *k,
                       const float *v, int B, int T, int H, int Hkv, int hd,
                       int n_threads, const gemm_ws *ws) {
    // out [B*T, H*hd], att [B, H, T, T], q [B*T, H*hd], k, v [B*T, Hkv*hd]
    MOE_ASSERT(B >= 0 && T >= 0 && hd > 0 && Hkv > 0 && H % Hkv == 0);
    const int G = H / Hkv, ldq = H * hd, ldk = Hkv * hd;
    const int nt = n_threads > 0 ? n_threads : omp_get_max_threads();
    const float scale = 1.0f / sqrtf((float)hd);
    batch bt;
    bt.n = 0;
    bt.nt = nt;
    bt.ws = ws;

    /* S = scale Q K^T, rows [r0, r1) against keys [0, r1). */
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int r0 = 0; r0 < T; r0 += RB) {
                const int r1 = imin(T, r0 + RB);
                const float *qb = q + ((size_t)b * T + r0) * ldq + (size_t)h * hd;
                const float *kb = k + (size_t)b * T * ldk + (size_t)(h / G) * hd;
                float *sb = att + (((size_t)b * H + h) * T + r0) * T;
                batch_add(&bt, gemm_scaled(gemm_make(r1 - r0, r1, hd, 0, qb, ldq, 1, kb, ldk,
                                                     sb, T, 0.0f), scale));
            }
    batch_flush(&bt);

    /* P = softmax over j <= i; 0 above the diagonal. */
    const int64_t rows = (int64_t)B * H * T;
    #pragma omp parallel for num_threads(nt) schedule(static, 8)
    for (int64_t r = 0; r < rows; r++)
        softmax_causal_row(att + (size_t)r * T, (int)(r % T), T);

    /* O = P V, rows [r0, r1) over keys [0, r1). */
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int r0 = 0; r0 < T; r0 += RB) {
                const int r1 = imin(T, r0 + RB);
                const float *pb = att + (((size_t)b * H + h) * T + r0) * T;
                const float *vb = v + (size_t)b * T * ldk + (size_t)(h / G) * hd;
                float *ob = out + ((size_t)b * T + r0) * ldq + (size_t)h * hd;
                batch_add(&bt, gemm_make(r1 - r0, hd, r1, 0, pb, T, 0, vb, ldk, ob, ldq, 0.0f));
            }
    batch_flush(&bt);
}

void attention_backward(float *dq, float *dk, float *dv, float *scratch,
                        const float *dout, const float *att, const float *q,
                        const float *k, const float *v, int B, int T, int H,
                        int Hkv, int hd, int n_threads, const gemm_ws *ws) {
    // dq [B*T, H*hd], dk, dv [B*T, Hkv*hd], scratch [B, H, T, T],
    // dout [B*T, H*hd], att [B, H, T, T], q [B*T, H*hd], k, v [B*T, Hkv*hd]
    MOE_ASSERT(B >= 0 && T >= 0 && hd > 0 && Hkv > 0 && H % Hkv == 0);
    const int G = H / Hkv, ldq = H * hd, ldk = Hkv * hd;
    const int nt = n_threads > 0 ? n_threads : omp_get_max_threads();
    const float scale = 1.0f / sqrtf((float)hd);
    float *ds = scratch; /* [B, H, T, T]: dP, then dS in place */
    batch bt;
    bt.n = 0;
    bt.nt = nt;
    bt.ws = ws;

    /* dP = dO V^T, rows [r0, r1) against keys [0, r1). */
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int r0 = 0; r0 < T; r0 += RB) {
                const int r1 = imin(T, r0 + RB);
                const float *gb = dout + ((size_t)b * T + r0) * ldq + (size_t)h * hd;
                const float *vb = v + (size_t)b * T * ldk + (size_t)(h / G) * hd;
                float *db = ds + (((size_t)b * H + h) * T + r0) * T;
                batch_add(&bt, gemm_make(r1 - r0, r1, hd, 0, gb, ldq, 1, vb, ldk, db, T, 0.0f));
            }
    batch_flush(&bt);

    /* dS = P (dP - rowsum(P dP)); zero up to the end of the row's block,
     * which is all the later products read. */
    const int64_t rows = (int64_t)B * H * T;
    #pragma omp parallel for num_threads(nt) schedule(static, 8)
    for (int64_t r = 0; r < rows; r++) {
        const int i = (int)(r % T);
        softmax_grad_row(ds + (size_t)r * T, att + (size_t)r * T, i, imin(T, (i / RB + 1) * RB));
    }

    /* dQ = scale dS K (rows [r0, r1), keys [0, r1)), together with the first
     * head of each group's dK, dV; then the other heads of the group add in,
     * one gemm_grouped call per head, in order. Key block [c0, c1) reads
     * queries [c0, T) (dS and P are 0 above the diagonal). */
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int r0 = 0; r0 < T; r0 += RB) {
                const int r1 = imin(T, r0 + RB);
                const float *db = ds + (((size_t)b * H + h) * T + r0) * T;
                const float *kb = k + (size_t)b * T * ldk + (size_t)(h / G) * hd;
                float *qb = dq + ((size_t)b * T + r0) * ldq + (size_t)h * hd;
                batch_add(&bt, gemm_scaled(gemm_make(r1 - r0, hd, r1, 0, db, T, 0, kb, ldk,
                                                     qb, ldq, 0.0f), scale));
            }
    for (int j = 0; j < G; j++) {
        const float beta = j == 0 ? 0.0f : 1.0f;
        for (int b = 0; b < B; b++)
            for (int kv = 0; kv < Hkv; kv++)
                for (int c0 = 0; c0 < T; c0 += RB) {
                    const int c1 = imin(T, c0 + RB), h = kv * G + j;
                    const size_t blk = (((size_t)b * H + h) * T + c0) * T + c0;
                    const size_t kvo = ((size_t)b * T + c0) * ldk + (size_t)kv * hd;
                    const size_t qo = ((size_t)b * T + c0) * ldq + (size_t)h * hd;
                    /* dV[c0:c1] (+)= P[c0:T, c0:c1]^T dO[c0:T] */
                    batch_add(&bt, gemm_make(c1 - c0, hd, T - c0, 1, att + blk, T, 0, dout + qo,
                                             ldq, dv + kvo, ldk, beta));
                    /* dK[c0:c1] (+)= scale dS[c0:T, c0:c1]^T Q[c0:T] */
                    batch_add(&bt, gemm_scaled(gemm_make(c1 - c0, hd, T - c0, 1, ds + blk, T, 0,
                                                         q + qo, ldq, dk + kvo, ldk, beta),
                                               scale));
                }
        batch_flush(&bt);
    }
}
