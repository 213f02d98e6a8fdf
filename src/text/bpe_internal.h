/* bpe_internal.h: what the BPE trainer/encoder (bpe.c) and the GGUF-form
 * export/import (bpe_export.c) share: the vocabulary limit, the hashes, and
 * building the merge map (internal to src/text/bpe*.c).
 * Not for: anything outside those two files (the API is bpe.h). */
#ifndef MOE_TEXT_BPE_INTERNAL_H
#define MOE_TEXT_BPE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "text/bpe.h"

#define BPE_MAX_VOCAB (1 << 24)
#define MAP_EMPTY UINT64_MAX

static inline uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static inline uint64_t pair_key(int32_t a, int32_t b) {
    return ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
}

/* A hash of a byte string, 8 bytes at a time. */
static inline uint64_t hash_bytes(const uint8_t *p, size_t n) {
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (n * 0xC2B2AE3D27D4EB4Full);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ mix64(w)) * 0x9FB21C651E98DF25ull;
        p += 8;
        n -= 8;
    }
    uint64_t w = 0;
    for (size_t i = 0; i < n; i++) w |= (uint64_t)p[i] << (8 * i);
    return mix64(h ^ w);
}

/* Builds the pair -> rank map (tok->map_key, map_rank, map_cap) from
 * tok->merges[0, n_merges). Returns 0 on out of memory, or -1 - r if merge r
 * repeats the pair of an earlier merge; 1 on success. (bpe.c) */
int bpe_build_map(bpe_tokenizer *tok);

#endif /* MOE_TEXT_BPE_INTERNAL_H */
