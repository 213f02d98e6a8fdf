/* allocs.h: buffers allocated once at create and freed together (internal).
 * For: the layer's and the model's working buffers, sized for the worst case
 * at create so that no pass allocates. Each buffer is 64-byte aligned (AVX-512
 * rows) and zeroed. Not for: anything freed on its own. */
#ifndef MOE_CORE_ALLOCS_H
#define MOE_CORE_ALLOCS_H

#include <stdlib.h>
#include <string.h>

#include "core/bigalloc.h"

typedef struct moe_allocs {
    void **p;  /* [cap] every buffer handed out */
    int n, cap;
} moe_allocs;

/* A zeroed, 64-byte aligned buffer of `bytes` (at least 64), recorded for
 * moe_allocs_free; NULL when out of memory. */
static inline void *moe_allocs_get(moe_allocs *a, size_t bytes) {
    if (a->n == a->cap) {
        int cap = a->cap ? 2 * a->cap : 64;
        void **np = realloc(a->p, sizeof(void *) * (size_t)cap);
        if (!np) return NULL;
        a->p = np;
        a->cap = cap;
    }
    void *q = moe_big_zalloc(bytes);
    if (!q) return NULL;
    a->p[a->n++] = q;
    return q;
}

/* Frees every buffer; the struct is then empty (and may be reused). */
static inline void moe_allocs_free(moe_allocs *a) {
    for (int i = 0; i < a->n; i++) free(a->p[i]);
    free(a->p);
    a->p = NULL;
    a->n = a->cap = 0;
}

#endif
