/* act.h: elementwise activations of the expert networks, forward and backward
 * (internal). For: SwiGLU and GELU on [rows, n] buffers. Not for: softmax
 * (see the router). Each function handles rows [r0, r1) so a caller's thread
 * loop decides the split. */
#ifndef MOE_KERNELS_ACT_H
#define MOE_KERNELS_ACT_H

#include <stddef.h>

/* a[i] = silu(g[i]) * u[i], i in [0, n); silu(z) = z * sigmoid(z). */
void act_swiglu_forward(float *a, const float *g, const float *u, size_t n);

/* Given da = dL/da for a = silu(g) * u:
 *   dg = da * u * silu'(g),  silu'(g) = s(g) (1 + g (1 - s(g)))
 *   du = da * silu(g) */
void act_swiglu_backward(float *dg, float *du, const float *da, const float *g,
                         const float *u, size_t n);

/* a[i] = gelu(h[i]) with the tanh approximation
 *   gelu(h) = 0.5 h (1 + tanh(c (h + 0.044715 h^3))), c = sqrt(2/pi). */
void act_gelu_forward(float *a, const float *h, size_t n);

/* dh = da * gelu'(h):
 *   gelu'(h) = 0.5 (1 + th) + 0.5 h (1 - th^2) c (1 + 3 * 0.044715 h^2) */
void act_gelu_backward(float *dh, const float *da, const float *h, size_t n);

#endif
