/* heap.h: the project's one binary heap (internal), as a generator of typed
 * functions: MOE_HEAP_DEFINE(name, T, before) defines
 *   static inline void name_push(T *heap, size_t *n, T x);  heap has room for *n + 1
 *   static inline T name_pop(T *heap, size_t *n);           *n > 0
 * over heap[0, *n), where before(const T *a, const T *b) says that a comes
 * out first. Typed functions rather than void pointers and a comparator, so
 * the comparison inlines in the tokenizers' inner loops.
 * For: the merge queues of the tokenizers (text/bpe_merge.c, text/spm.c) and
 * the BPE trainer's pair queue (text/bpe.c). Not for: storage (the caller
 * owns and sizes the array), nor decrease-key (stale entries are pushed again
 * and skipped when popped).
 *
 * Sift-up on push; on pop the last entry sifts down from the root, preferring
 * the left child when neither child comes before the other. Entries that are
 * equal under `before` come out in an order fixed by this algorithm alone. */
#ifndef MOE_CORE_HEAP_H
#define MOE_CORE_HEAP_H

#include <stddef.h>

#define MOE_HEAP_DEFINE(name, T, before)                                      \
    static inline void name##_push(T *heap, size_t *n, T x) {                 \
        size_t i = (*n)++;                                                    \
        while (i > 0) {                                                       \
            size_t up = (i - 1) / 2;                                          \
            if (!before(&x, &heap[up])) break;                                \
            heap[i] = heap[up];                                               \
            i = up;                                                           \
        }                                                                     \
        heap[i] = x;                                                          \
    }                                                                         \
    static inline T name##_pop(T *heap, size_t *n) {                          \
        T top = heap[0], last = heap[--(*n)];                                 \
        size_t i = 0, m = *n;                                                 \
        for (;;) {                                                            \
            size_t c = 2 * i + 1;                                             \
            if (c >= m) break;                                                \
            if (c + 1 < m && before(&heap[c + 1], &heap[c])) c++;             \
            if (!before(&heap[c], &last)) break;                              \
            heap[i] = heap[c];                                                \
            i = c;                                                            \
        }                                                                     \
        if (m) heap[i] = last;                                                \
        return top;                                                           \
    }

#endif
