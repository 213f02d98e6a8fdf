/* bpe_internal.h: what the BPE trainer/encoder (bpe.c) and the GGUF-form
 * export/import (bpe_export.c) share: the vocabulary limit, the pair key, and
 * building the merge map (internal to src/text/bpe*.c).
 * Not for: anything outside those two files (the API is bpe.h). */
#ifndef MOE_TEXT_BPE_INTERNAL_H
#define MOE_TEXT_BPE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/hash.h"
#include "text/bpe.h"

#define BPE_MAX_VOCAB (1 << 24)

static inline uint64_t pair_key(int32_t a, int32_t b) {
    return ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
}

/* Builds the pair -> rank map (tok->pairs) from
 * tok->merges[0, n_merges). Returns 0 on out of memory, or -1 - r if merge r
 * repeats the pair of an earlier merge; 1 on success. (bpe.c) */
int bpe_build_map(bpe_tokenizer *tok);

#endif /* MOE_TEXT_BPE_INTERNAL_H */
