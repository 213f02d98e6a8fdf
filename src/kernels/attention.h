/* attention.h: causal multi-head attention with grouped-query heads, forward
 * and backward, for training (internal).
 *
 * For: B sequences of T tokens at once, token-major rows as the projections
 * produce them; the softmax probabilities are kept for the backward pass.
 * Not for: inference with a KV cache (one query row against a long cache),
 * sliding windows, ALiBi or attention sinks, or quantized K/V.
 *
 * Shapes: q [B*T, H*hd]; k, v [B*T, Hkv*hd]; out [B*T, H*hd]; row b*T + t
 * holds token t of sequence b, head h in columns [h*hd, (h+1)*hd). Query
 * head h reads kv head h / G, G = H / Hkv (H must be a multiple of Hkv).
 *   S_h = scale Q_h K_kv^T   [T, T], scale = 1/sqrt(hd), causal: j <= i
 *   P_h = softmax_rows(S_h)  (max subtracted; att keeps it, 0 above the diagonal)
 *   O_h = P_h V_kv           [T, hd]
 *
 * Backward (dO given; per head, then summed over the heads of a group):
 *   dP_h  = dO_h V_kv^T
 *   dS_ij = P_ij (dP_ij - sum_l P_il dP_il)      (softmax Jacobian, per row)
 *   dQ_h  = scale dS_h K_kv
 *   dK_kv = scale sum_{h in group} dS_h^T Q_h
 *   dV_kv = sum_{h in group} P_h^T dO_h
 *
 * How: each product runs as GEMMs (gemm_grouped) on row blocks of RB = 64
 * query rows, a block [r0, r1) using only keys [0, r1) (and for the
 * transposed products, key block [c0, c1) using only queries [c0, T)), so the
 * masked half is mostly skipped. FLOPs with nb = ceil(T / RB) blocks:
 *   forward  2 products: 2 * 2 B H T^2 hd (1 + 1/nb) / 2 = 2 B H T^2 hd (1 + 1/nb)
 *   backward 4 products: 4 B H T^2 hd (1 + 1/nb)
 * (the exactly causal count replaces (1 + 1/nb) by (1 + 1/T)); plus O(B H T^2)
 * for the softmax and its Jacobian. At B=8, H=8, T=256, hd=64: 0.67 GFLOP
 * forward, 1.34 GFLOP backward.
 *
 * Threads: n_threads <= 0 uses the OpenMP default. ws: the GEMM's packing
 * buffers (gemm.h; NULL: allocated per product, for tests). Every output element is
 * computed the same way for any thread count (the GEMMs are deterministic per
 * element, softmax rows are independent, and the sum over the heads of a group
 * runs head by head in a fixed order), so results are bitwise independent of
 * n_threads.
 */
#ifndef MOE_KERNELS_ATTENTION_H
#define MOE_KERNELS_ATTENTION_H

#include <stddef.h>

#include "kernels/gemm.h"

/* out [B*T, H*hd], att [B, H, T, T] (row i: P over columns 0..i, 0 after);
 * q [B*T, H*hd], k, v [B*T, Hkv*hd]. */
void attention_forward(float *out, float *att, const float *q, const float *k,
                       const float *v, int B, int T, int H, int Hkv, int hd,
                       int n_threads, const gemm_ws *ws);

/* WRITES (overwrites) dq [B*T, H*hd] and dk, dv [B*T, Hkv*hd] from
 * dout [B*T, H*hd] and the forward's att, q, k, v. scratch holds
 * attention_scratch_floats(...) floats (dP, then dS, [B, H, T, T]). */
void attention_backward(float *dq, float *dk, float *dv, float *scratch,
                        const float *dout, const float *att, const float *q,
                        const float *k, const float *v, int B, int T, int H,
                        int Hkv, int hd, int n_threads, const gemm_ws *ws);

/* Floats of scratch attention_backward needs: B * H * T * T. */
size_t attention_scratch_floats(int B, int T, int H, int Hkv, int hd,
                                int n_threads);

#endif
