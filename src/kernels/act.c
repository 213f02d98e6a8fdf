/* act.c: SwiGLU and GELU elementwise kernels (see act.h). Written as plain
 * loops the compiler vectorises: the sigmoid of SwiGLU uses exp_vec
 * (fastmath.h, within about 2 ulp of expf), so the loops become AVX-512 /
 * AVX2 code; GELU's tanhf stays libm's. */
#include "kernels/act.h"
#include "kernels/fastmath.h"

#include <math.h>

void act_swiglu_forward(float *a, const float *g, const float *u, size_t n) {
    #pragma omp simd
    for (size_t i = 0; i < n; i++) {
        float s = 1.0f / (1.0f + exp_vec(-g[i]));
        a[i] = g[i] * s * u[i];
    }
}

void act_swiglu_backward(float *dg, float *du, const float *da, const float *g,
                         const float *u, size_t n) {
    #pragma omp simd
    for (size_t i = 0; i < n; i++) {
        float s = 1.0f / (1.0f + exp_vec(-g[i]));
        float silu = g[i] * s;
        dg[i] = da[i] * u[i] * (s * (1.0f + g[i] * (1.0f - s)));
        du[i] = da[i] * silu;
    }
}

#define GELU_C 0.7978845608028654f /* sqrt(2/pi) */

void act_gelu_forward(float *a, const float *h, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float x = h[i];
        float th = tanhf(GELU_C * (x + 0.044715f * x * x * x));
        a[i] = 0.5f * x * (1.0f + th);
    }
}

void act_gelu_backward(float *dh, const float *da, const float *h, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float x = h[i];
        float th = tanhf(GELU_C * (x + 0.044715f * x * x * x));
        float d = 0.5f * (1.0f + th) +
                  0.5f * x * (1.0f - th * th) * GELU_C * (1.0f + 3.0f * 0.044715f * x * x);
        dh[i] = da[i] * d;
    }
}
