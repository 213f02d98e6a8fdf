/* testutil.h: the small test framework of the C tests.
 *
 * Each test binary runs named checks. A check prints one line:
 *   "ok <name>", "FAIL <name>: <why>" or "SKIPPED <name>: <why>".
 * tests/run.sh counts these lines over all binaries and prints the closing
 * "N passed, N failed[, N skipped]". A binary exits non-zero if any check failed.
 */
#ifndef MOE_TESTUTIL_H
#define MOE_TESTUTIL_H

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static int tu_failed_ = 0;

static inline void tu_ok(const char *name) { printf("ok %s\n", name); fflush(stdout); }
/* ok with a formatted name and figures: "ok NAME (worst 1e-7)". */
static inline void tu_okf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf("ok ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    fflush(stdout);
}
static inline void tu_fail(const char *name, const char *fmt, ...) {
    va_list ap;
    printf("FAIL %s: ", name);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
    tu_failed_ = 1;
}
static inline void tu_skip(const char *name, const char *why) {
    printf("SKIPPED %s: %s\n", name, why);
    fflush(stdout);
}
static inline int tu_exit_code(void) { return tu_failed_ ? 1 : 0; }

/* Deterministic test data: splitmix64 -> uniform floats in [-1, 1). */
typedef struct tu_rng { uint64_t s; } tu_rng;
static inline uint64_t tu_next(tu_rng *r) {
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static inline float tu_uniform(tu_rng *r) {
    return (float)((tu_next(r) >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}
static inline void tu_fill(tu_rng *r, float *x, size_t n, float scale) {
    for (size_t i = 0; i < n; i++) x[i] = scale * tu_uniform(r);
}

/* Largest |a-b| / max(|b|_inf, tiny) over n values: a normalized error that
 * does not blow up on single values near zero. *worst gets the index. */
static inline double tu_rel_err(const float *a, const float *b, size_t n, size_t *worst) {
    double scale = 0, m = 0;
    size_t w = 0;
    for (size_t i = 0; i < n; i++) if (fabs(b[i]) > scale) scale = fabs(b[i]);
    if (scale < 1e-30) scale = 1e-30;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - (double)b[i]);
        if (!(e <= m)) { m = e; w = i; }  /* NaN counts as worst */
    }
    if (worst) *worst = w;
    return m / scale;
}

#endif
