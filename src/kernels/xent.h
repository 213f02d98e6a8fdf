/* xent.h: softmax cross-entropy over the vocabulary, forward and backward
 * (internal).
 *
 * For: the language-model loss on logits [N, V] with integer targets, rows
 * with a negative target ignored (padding, prompt tokens). Not for: label
 * smoothing, z-loss on the output logits, or sampling.
 *
 * Per valid row n with target y:  loss_n = lse_n - logits[n, y],
 *   lse_n = log sum_j exp(logits[n, j])   (computed as m + log sum exp(l - m),
 *   m the row max, so large logits do not overflow).
 * Backward: d loss_n / d logits[n, j] = softmax_j - [j == y]
 *   = exp(logits[n, j] - lse_n) - [j == y].
 * Threads: n_threads <= 0 uses the OpenMP default; rows are independent and
 * the mean is summed in row order, so results are bitwise independent of the
 * thread count.
 */
#ifndef MOE_KERNELS_XENT_H
#define MOE_KERNELS_XENT_H

#include <stdint.h>

/* logits [N, V], targets [N] (< 0: ignored; >= V: MOE_ASSERT), lse [N]
 * written for every row (ignored ones too). Returns the mean of loss_n over
 * the valid rows (0 when there are none); *n_valid gets their count. */
float xent_forward(float *lse, const float *logits, const int32_t *targets,
                   int N, int V, int *n_valid, int n_threads);

/* dlogits [N, V] = scale * (softmax(logits) - onehot(target)) on valid rows,
 * 0 on ignored rows; lse from xent_forward. dlogits may alias logits (in
 * place). For the gradient of the mean loss, scale = 1 / n_valid. */
void xent_backward(float *dlogits, const float *logits, const float *lse,
                   const int32_t *targets, int N, int V, float scale,
                   int n_threads);

#endif
