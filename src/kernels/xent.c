/* xent.c: softmax cross-entropy kernels (see xent.h for the math).
 *
 * For: the per-row log-sum-exp, the mean loss and the logits gradient,
 * threaded over rows. Not for: the output projection (a GEMM) or sampling.
 * Row sums use 16 fixed partial sums so that they vectorise without
 * depending on alignment or threads; exp is a vectorisable polynomial.
 */
#include "kernels/xent.h"

#include "core/error.h"

#include <math.h>
#include <omp.h>
#include <stddef.h>
#include <string.h>

#include "kernels/fastmath.h"

#define LANES 16

/* log sum_j exp(l[j]) of one row, stably. */
static float row_lse(const float *restrict l, int V) {
    float mx[LANES];
    for (int j = 0; j < LANES; j++) mx[j] = -INFINITY;
    int i = 0;
    for (; i + LANES <= V; i += LANES)
        for (int j = 0; j < LANES; j++) mx[j] = l[i + j] > mx[j] ? l[i + j] : mx[j];
    for (int j = 0; i < V; i++, j++) mx[j] = l[i] > mx[j] ? l[i] : mx[j];
    float m = mx[0];
    for (int j = 1; j < LANES; j++) m = mx[j] > m ? mx[j] : m;
    if (!(m > -INFINITY)) return m; /* every logit -inf (or NaN): nothing to normalise */

    float acc[LANES] = {0};
    i = 0;
    for (; i + LANES <= V; i += LANES)
        for (int j = 0; j < LANES; j++) acc[j] += exp_vec(l[i + j] - m);
    for (int j = 0; i < V; i++, j++) acc[j] += exp_vec(l[i] - m);
    for (int w = LANES / 2; w >= 1; w /= 2)
        for (int j = 0; j < w; j++) acc[j] += acc[j + w];
    return m + logf(acc[0]);
}

float xent_forward(float *lse, const float *logits, const int32_t *targets,
                   int N, int V, int *n_valid, int n_threads) {
    // lse [N], logits [N, V], targets [N]
    const int nt = n_threads > 0 ? n_threads : omp_get_max_threads();
    #pragma omp parallel for num_threads(nt) schedule(static)
    for (int n = 0; n < N; n++) lse[n] = row_lse(logits + (size_t)n * V, V);

    /* The mean, in row order (O(N), serial so it never depends on threads). */
    double sum = 0.0;
    int valid = 0;
    for (int n = 0; n < N; n++) {
        const int32_t y = targets[n];
        if (y < 0) continue;
        MOE_ASSERT(y < V);
        sum += (double)lse[n] - (double)logits[(size_t)n * V + y];
        valid++;
    }
    if (n_valid) *n_valid = valid;
    return valid ? (float)(sum / valid) : 0.0f;
}

void xent_backward(float *dlogits, const float *logits, const float *lse,
                   const int32_t *targets, int N, int V, float scale,
                   int n_threads) {
    // dlogits [N, V] (may alias logits), logits [N, V], lse [N], targets [N]
    const int nt = n_threads > 0 ? n_threads : omp_get_max_threads();
    #pragma omp parallel for num_threads(nt) schedule(static)
    for (int n = 0; n < N; n++) {
        /* No restrict: d and l may be the same row; each element is read
         * before it is written, and the target's logit is read first. */
        float *d = dlogits + (size_t)n * V;
        const float *l = logits + (size_t)n * V;
        const int32_t y = targets[n];
        if (y < 0) {
            for (int j = 0; j < V; j++) d[j] = 0.0f;
            continue;
        }
        MOE_ASSERT(y < V);
        const float m = lse[n];
        const float ly = l[y];
        #pragma omp simd
        for (int j = 0; j < V; j++) d[j] = scale * exp_vec(l[j] - m);
        d[y] = scale * (exp_vec(ly - m) - 1.0f);
    }
}
