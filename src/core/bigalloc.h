/* bigalloc.h: zeroed buffers for large arrays (internal), backed by
 * transparent huge pages where the system offers them, and their clearing
 * on several threads.
 *
 * For: parameters, gradients, optimizer moments and activations: arrays of
 * megabytes that are streamed every step. A 2 MiB page needs one TLB entry
 * where 4 KiB pages need 512, and the hardware prefetchers stop at page
 * boundaries; on a machine whose THP mode is "madvise" only an madvise'd
 * buffer gets them. Below 2 MiB, or where madvise is missing or refused, the
 * buffer is an ordinary 64-byte aligned one: the contents are the same.
 * Free with free(). Not for: small or short-lived buffers.
 */
#ifndef MOE_CORE_BIGALLOC_H
#define MOE_CORE_BIGALLOC_H

#include <stddef.h>

/* A zeroed buffer of `bytes` (at least 64), aligned to 64 bytes; from 2 MiB
 * on, aligned to 2 MiB and rounded up to a multiple of it (at most 2 MiB
 * more memory per buffer). NULL when out of memory. */
void *moe_big_zalloc(size_t bytes);

/* p[0 .. n-1] = 0 on n_threads threads (<= 0: the OpenMP default): one core
 * alone does not reach the memory's write bandwidth. */
void moe_big_zero(float *p, size_t n, int n_threads);

#endif
