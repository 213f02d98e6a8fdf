/* qmatmul_bench.c: the time of one quantized product y[M, N] = x[M, K] w^T
 * (moe_bench_qmatmul, `moe bench qmatmul`): the kernels the engine's
 * projections run, measured alone at the row counts a batch step gives them
 * (an expert of a 16-sequence step gets about 4 rows).
 *
 * For: benchmarks (figures printed by the CLI, never asserted). Random
 * weights quantized once, random activations; the best of `iters` calls of
 * quant_matmul with a preallocated work space, weights warm in the cache
 * when they fit. Not for: correctness (tests/test_quant_batch.c).
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "core/error.h"
#include "moe_infer.h"
#include "quant/quant.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static float *rand_floats(size_t n, uint32_t seed) {
    float *p = malloc(sizeof(float) * (n ? n : 1));
    if (!p) return NULL;
    uint32_t s = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        p[i] = (float)((s >> 8) & 0xFFFF) / 32768.0f - 1.0f;
    }
    return p;
}

/* The type named (any case), or -1. */
static int type_of(const char *name) {
    for (int t = 0; t < QUANT_TYPE_COUNT; t++) {
        const quant_traits *tr = quant_get_traits((quant_type)t);
        if (tr && tr->name && !strcasecmp(tr->name, name)) return t;
    }
    return -1;
}

moe_status moe_bench_qmatmul(const char *type, int M, int N, int K, int n_threads, int iters,
                             double *best_s, moe_error *err) {
    const int t = type ? type_of(type) : -1;
    if (t < 0) return moe_err(err, MOE_ERR_ARG, "moe_bench_qmatmul: unknown type '%s'", type ? type : "(null)");
    if (M < 1 || N < 1 || K < 1 || iters < 1 || !best_s)
        return moe_err(err, MOE_ERR_ARG, "moe_bench_qmatmul: M %d, N %d, K %d, iters %d (expected >= 1)",
                       M, N, K, iters);
    moe_status st = quant_check_row((quant_type)t, K, "moe_bench_qmatmul: K", err);
    if (st != MOE_OK) return st;
    const size_t row = quant_row_size((quant_type)t, K);
    float *wf = rand_floats((size_t)K, 1), *x = rand_floats((size_t)M * K, 2);
    float *y = malloc(sizeof(float) * (size_t)M * N);
    uint8_t *w = malloc(row * (size_t)N);
    const size_t ws = quant_matmul_work_size((quant_type)t, M, K);
    void *work = malloc(ws ? ws : 1);
    if (!wf || !x || !y || !w || !work) {
        st = moe_err(err, MOE_ERR_NOMEM, "moe_bench_qmatmul: out of memory for %d x %d", N, K);
        goto done;
    }
    for (int n = 0; n < N && st == MOE_OK; n++) {
        for (int k = 0; k < K; k++) wf[k] = wf[k] * 0.75f + 0.25f * (float)((n * 7 + k * 13) % 17 - 8) / 8;
        st = quant_quantize_row((quant_type)t, wf, w + row * (size_t)n, K, err);
    }
    if (st != MOE_OK) goto done;
    st = quant_matmul(y, x, w, (quant_type)t, M, N, K, n_threads, work, ws, err); /* warm up */
    double best = 1e30;
    for (int i = 0; i < iters && st == MOE_OK; i++) {
        const double t0 = now_s();
        st = quant_matmul(y, x, w, (quant_type)t, M, N, K, n_threads, work, ws, err);
        const double dt = now_s() - t0;
        if (dt < best) best = dt;
    }
    if (st == MOE_OK) *best_s = best;
done:
    free(wf); free(x); free(y); free(w); free(work);
    return st;
}
