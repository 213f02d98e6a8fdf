/* bigalloc.c: see bigalloc.h. madvise is outside ISO C and POSIX, hence
 * _DEFAULT_SOURCE here alone. */
#define _DEFAULT_SOURCE
#include "core/bigalloc.h"

#include <stdlib.h>
#include <string.h>
#if defined(__linux__)
#include <sys/mman.h>
#endif
#ifdef _OPENMP
#include <omp.h>
#endif

#define HUGE_PAGE ((size_t)2 << 20)

void *moe_big_zalloc(size_t bytes) {
    size_t b = bytes ? (bytes + 63) & ~(size_t)63 : 64;
    if (b < HUGE_PAGE) {
        void *q = aligned_alloc(64, b);
        if (q) memset(q, 0, b);
        return q;
    }
    b = (b + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1);
    void *q = aligned_alloc(HUGE_PAGE, b);
    if (!q) return NULL;
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    (void)madvise(q, b, MADV_HUGEPAGE); /* advice only: a refusal changes nothing */
#endif
    memset(q, 0, b); /* the first touch: the pages are faulted in here, huge where granted */
    return q;
}

/* Below this many floats one thread clears faster than a region starts. */
#define ZERO_PAR_MIN ((size_t)1 << 18)

void moe_big_zero(float *p, size_t n, int n_threads) {
    int nt = 1;
#ifdef _OPENMP
    nt = n_threads > 0 ? n_threads : omp_get_max_threads();
#else
    (void)n_threads;
#endif
    if (nt <= 1 || n < ZERO_PAR_MIN) {
        memset(p, 0, n * sizeof(float));
        return;
    }
    #pragma omp parallel num_threads(nt)
    {
#ifdef _OPENMP
        const size_t t = (size_t)omp_get_thread_num(), T = (size_t)omp_get_num_threads();
#else
        const size_t t = 0, T = 1;
#endif
        /* contiguous pieces, cut at 16-float (64-byte) boundaries */
        const size_t lo = n / 16 * t / T * 16, hi = t + 1 == T ? n : n / 16 * (t + 1) / T * 16;
        memset(p + lo, 0, (hi - lo) * sizeof(float));
    }
}
