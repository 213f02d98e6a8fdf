/* bigalloc.c: see bigalloc.h. madvise is outside ISO C and POSIX, hence
 * _DEFAULT_SOURCE here alone. */
#define _DEFAULT_SOURCE
#include "core/bigalloc.h"

#include <stdlib.h>
#include <string.h>
#if defined(__linux__)
#include <sys/mman.h>
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
