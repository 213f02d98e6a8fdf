/* sort.h: the project's one merge sort (internal): a stable sort of indices
 * by a float score, highest first.
 * For: the MoE layer's drop-by-score (layer/plan.c) and expert-choice routing
 * (layer/select.c), where ties must keep the input (token) order so results
 * do not depend on the sort. Not for: orders where stability does not matter
 * (qsort serves those: the special tokens, hits, file names, GGUF indexes,
 * the sampler's candidates, all with total orders).
 *
 * Bottom-up, O(n log n), no allocation: the caller passes tmp[n]. */
#ifndef MOE_CORE_SORT_H
#define MOE_CORE_SORT_H

#include <stddef.h>
#include <string.h>

/* Sorts idx[0, n) so that score[idx[i] * stride] is non-increasing; equal
 * scores keep their order. tmp has room for n ints. */
static inline void moe_sort_desc_stable(int *idx, int *tmp, int n, const float *score,
                                        size_t stride) {
    for (int width = 1; width < n; width *= 2) {
        for (int lo = 0; lo < n; lo += 2 * width) {
            const int mid = lo + width < n ? lo + width : n;
            const int hi = lo + 2 * width < n ? lo + 2 * width : n;
            int i = lo, j = mid, o = lo;
            while (i < mid && j < hi)
                tmp[o++] = score[(size_t)idx[j] * stride] > score[(size_t)idx[i] * stride]
                               ? idx[j++] : idx[i++];
            while (i < mid) tmp[o++] = idx[i++];
            while (j < hi) tmp[o++] = idx[j++];
        }
        memcpy(idx, tmp, sizeof(int) * (size_t)n);
    }
}

#endif
