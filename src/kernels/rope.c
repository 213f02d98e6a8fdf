/* rope.c: rotary position embedding tables and rotation (see rope.h).
 *
 * For: the table and the in-place rotation of [T, heads * head_dim] rows,
 * threaded over rows. Not for: scaled RoPE variants.
 */
#include "kernels/rope.h"

#include "core/error.h"

#include <math.h>
#include <omp.h>
#include <stddef.h>

void rope_table(float *cos_t, float *sin_t, int max_pos, int head_dim,
                float theta) {
    // cos_t, sin_t [max_pos, head_dim/2]
    MOE_ASSERT(head_dim > 0 && head_dim % 2 == 0);
    const int half = head_dim / 2;
    for (int i = 0; i < half; i++) {
        const double freq = pow((double)theta, -2.0 * i / (double)head_dim);
        for (int p = 0; p < max_pos; p++) {
            const double a = (double)p * freq;
            cos_t[(size_t)p * half + i] = (float)cos(a);
            sin_t[(size_t)p * half + i] = (float)sin(a);
        }
    }
}

void rope_apply(float *x, int T, int n_heads, int head_dim, const int32_t *pos,
                const float *cos_t, const float *sin_t, int neox, int inverse,
                int n_threads) {
    // x [T, n_heads * head_dim], pos [T], cos_t, sin_t [max_pos, head_dim/2]
    MOE_ASSERT(head_dim > 0 && head_dim % 2 == 0);
    const int half = head_dim / 2;
    const float sgn = inverse ? -1.0f : 1.0f;
    const int nt = n_threads > 0 ? n_threads : omp_get_max_threads();
    #pragma omp parallel for num_threads(nt) schedule(static)
    for (int t = 0; t < T; t++) {
        MOE_ASSERT(pos[t] >= 0);
        const float *restrict c = cos_t + (size_t)pos[t] * half;
        const float *restrict s = sin_t + (size_t)pos[t] * half;
        for (int h = 0; h < n_heads; h++) {
            float *restrict xh = x + ((size_t)t * n_heads + h) * head_dim;
            if (neox) {
                float *restrict lo = xh, *restrict hi = xh + half;
                #pragma omp simd
                for (int i = 0; i < half; i++) {
                    const float a = lo[i], b = hi[i], sn = sgn * s[i];
                    lo[i] = a * c[i] - b * sn;
                    hi[i] = a * sn + b * c[i];
                }
            } else {
                #pragma omp simd
                for (int i = 0; i < half; i++) {
                    const float a = xh[2 * i], b = xh[2 * i + 1], sn = sgn * s[i];
                    xh[2 * i] = a * c[i] - b * sn;
                    xh[2 * i + 1] = a * sn + b * c[i];
                }
            }
        }
    }
}
