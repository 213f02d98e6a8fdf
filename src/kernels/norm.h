/* norm.h: RMSNorm forward and backward for the transformer (internal).
 *
 * For: y = x / rms(x) * w on the rows of an activation [T, d], and its
 * gradients, as the model's pre-attention, pre-FFN and final norms use it.
 * Not for: LayerNorm (mean subtraction, bias) or quantized inference paths.
 *
 * Threads: n_threads <= 0 uses the OpenMP default. Rows are independent, so
 * y, rstd and dx are computed the same way whatever the thread count; dw is
 * summed over rows in row order by the thread that owns its columns, so it is
 * bitwise independent of n_threads too.
 */
#ifndef MOE_KERNELS_NORM_H
#define MOE_KERNELS_NORM_H

/* Forward.
 *   x    [T, d]   input rows
 *   w    [d]      gain
 *   y    [T, d]   y[t,i] = x[t,i] * rstd[t] * w[i]   (y must not alias x)
 *   rstd [T]      rstd[t] = 1 / sqrt(mean_i x[t,i]^2 + eps), kept for backward */
void rmsnorm_forward(float *y, float *rstd, const float *x, const float *w,
                     int T, int d, float eps, int n_threads);

/* Backward. ADDS into dx [T, d] and dw [d] (residual streams and shared
 * weights rely on accumulation); dy [T, d], x, w, rstd as in the forward.
 *
 * Derivation, one row, r = rstd = (m + eps)^(-1/2), m = (1/d) sum_j x_j^2:
 *   y_j = w_j x_j r,   dr/dx_i = -(1/2) (m + eps)^(-3/2) (2 x_i / d) = -r^3 x_i / d
 *   dx_i = sum_j dy_j dy_j/dx_i = w_i dy_i r + (sum_j dy_j w_j x_j) dr/dx_i
 *        = r (w_i dy_i - x_i r^2 c),   c = (1/d) sum_j dy_j w_j x_j
 *   dw_i = sum_t dy[t,i] x[t,i] r[t] */
void rmsnorm_backward(float *dx, float *dw, const float *dy, const float *x,
                      const float *w, const float *rstd, int T, int d,
                      int n_threads);

#endif
