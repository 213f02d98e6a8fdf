/* norm.c: RMSNorm forward and backward (see norm.h for the math).
 *
 * For: the row kernels and their thread split. Not for: other norms.
 * Row reductions use 16 fixed partial sums (lane j takes the elements
 * i = j mod 16), so the compiler can vectorise them without reassociating and
 * the result does not depend on alignment or threads.
 */
#include "kernels/norm.h"

#include <math.h>
#include <omp.h>
#include <stddef.h>

#define LANES 16

/* sum_i a[i] * b[i] with LANES partial sums, folded pairwise. */
static float dot_lanes(const float *restrict a, const float *restrict b, int n) {
    float acc[LANES] = {0};
    int i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int j = 0; j < LANES; j++) acc[j] += a[i + j] * b[i + j];
    for (int j = 0; i < n; i++, j++) acc[j] += a[i] * b[i];
    for (int w = LANES / 2; w >= 1; w /= 2)
        for (int j = 0; j < w; j++) acc[j] += acc[j + w];
    return acc[0];
}

static int threads_of(int n_threads) {
    return n_threads > 0 ? n_threads : omp_get_max_threads();
}

void rmsnorm_forward(float *y, float *rstd, const float *x, const float *w,
                     int T, int d, float eps, int n_threads) {
    // y [T, d], rstd [T], x [T, d], w [d]
    const int nt = threads_of(n_threads);
    #pragma omp parallel for num_threads(nt) schedule(static)
    for (int t = 0; t < T; t++) {
        const float *restrict xr = x + (size_t)t * d;
        float *restrict yr = y + (size_t)t * d;
        const float ms = dot_lanes(xr, xr, d) / (float)d;
        const float r = 1.0f / sqrtf(ms + eps);
        rstd[t] = r;
        #pragma omp simd
        for (int i = 0; i < d; i++) yr[i] = xr[i] * r * w[i];
    }
}

/* Columns per dw task: each dw[i] is owned by one task, which sums its rows
 * in order; the split only decides who computes a column, never how. */
#define DW_COLS 64

void rmsnorm_backward(float *dx, float *dw, const float *dy, const float *x,
                      const float *w, const float *rstd, int T, int d,
                      int n_threads) {
    // dx [T, d] (+=), dw [d] (+=), dy [T, d], x [T, d], w [d], rstd [T]
    const int nt = threads_of(n_threads);
    const int n_col_tasks = (d + DW_COLS - 1) / DW_COLS;
    #pragma omp parallel num_threads(nt)
    {
        /* dx, by rows: dx_i += r (w_i dy_i - x_i r^2 c), c = <dy w, x> / d */
        #pragma omp for schedule(static)
        for (int t = 0; t < T; t++) {
            const float *restrict xr = x + (size_t)t * d;
            const float *restrict gr = dy + (size_t)t * d;
            float *restrict dxr = dx + (size_t)t * d;
            const float r = rstd[t];
            float acc[LANES] = {0};
            int i = 0;
            for (; i + LANES <= d; i += LANES)
                for (int j = 0; j < LANES; j++)
                    acc[j] += gr[i + j] * w[i + j] * xr[i + j];
            for (int j = 0; i < d; i++, j++) acc[j] += gr[i] * w[i] * xr[i];
            for (int s = LANES / 2; s >= 1; s /= 2)
                for (int j = 0; j < s; j++) acc[j] += acc[j + s];
            const float k = r * r * (acc[0] / (float)d);
            #pragma omp simd
            for (i = 0; i < d; i++) dxr[i] += r * (w[i] * gr[i] - xr[i] * k);
        }
        /* dw, by column blocks: dw_i += sum_t dy[t,i] x[t,i] r[t], t in order */
        #pragma omp for schedule(static)
        for (int c = 0; c < n_col_tasks; c++) {
            const int i0 = c * DW_COLS;
            const int n = d - i0 < DW_COLS ? d - i0 : DW_COLS;
            float acc[DW_COLS];
            for (int i = 0; i < n; i++) acc[i] = 0.0f;
            for (int t = 0; t < T; t++) {
                const float *restrict xr = x + (size_t)t * d + i0;
                const float *restrict gr = dy + (size_t)t * d + i0;
                const float r = rstd[t];
                #pragma omp simd
                for (int i = 0; i < n; i++) acc[i] += gr[i] * xr[i] * r;
            }
            for (int i = 0; i < n; i++) dw[i0 + i] += acc[i];
        }
    }
}
