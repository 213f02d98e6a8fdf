/* hash.h: the project's hashes (internal): one streaming 64-bit content hash
 * for change detection (moe_hash), one byte-string hash (moe_fnv1a, and
 * moe_hash_bytes for hash tables) and one 64-bit mixer (moe_mix64).
 * For: the token cache's fingerprints and checksum (src/train/data.c) and the
 * moe.checksum of model and state files (src/model/model_file.c): moe_hash,
 * whose values are stored in files, so it never changes; every hash table
 * keyed by bytes (text maps, chunk caches): moe_hash_bytes; seeds derived from
 * names (model and synthetic weights): moe_fnv1a; integer keys: moe_mix64.
 * Not for cryptography.
 *
 * moe_hash:
 * FNV-1a-like over 8-byte little-endian words: h = FNV offset basis; for
 * each word w (the tail zero-padded): h = (h ^ w) * 0x9E3779B97F4A7C15,
 * h ^= h >> 32; at the end h ^= byte count and the splitmix64 finalizer.
 * Each step is a bijection of h, so any change confined to one 8-byte word
 * always changes the hash; the result does not depend on how the bytes were
 * split across moe_hash_update calls, nor on the platform. */
#ifndef MOE_CORE_HASH_H
#define MOE_CORE_HASH_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct moe_hash {
    uint64_t h;      /* running hash */
    uint64_t n;      /* bytes seen */
    uint8_t pend[8]; /* bytes of an unfinished word */
    int np;
} moe_hash;

/* The splitmix64 finalizer: a bijection of 64-bit values that mixes every
 * input bit into every output bit. */
static inline uint64_t moe_mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

#define MOE_FNV_BASIS 0xcbf29ce484222325ull /* FNV-1a offset basis */

/* FNV-1a over p[0, n), starting from h (MOE_FNV_BASIS, or another seed):
 * h = (h ^ byte) * 0x100000001B3 per byte. */
static inline uint64_t moe_fnv1a(uint64_t h, const void *p, size_t n) {
    const uint8_t *s = p;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 0x100000001B3ull;
    return h;
}

/* The hash of a byte string for hash tables (use the low bits): FNV-1a from
 * a basis that depends on n, then moe_mix64. */
static inline uint64_t moe_hash_bytes(const void *p, size_t n) {
    return moe_mix64(moe_fnv1a(MOE_FNV_BASIS ^ (n * 0x9E3779B97F4A7C15ull), p, n));
}

static inline uint64_t moe_hash_le64_(const uint8_t *p) {
    uint64_t w = 0;
    for (int i = 7; i >= 0; i--) w = (w << 8) | p[i];
    return w;
}

static inline uint64_t moe_hash_step_(uint64_t h, uint64_t w) {
    h = (h ^ w) * 0x9E3779B97F4A7C15ull;
    return h ^ (h >> 32);
}

static inline void moe_hash_init(moe_hash *s) {
    s->h = 0xcbf29ce484222325ull;
    s->n = 0;
    s->np = 0;
}

static inline void moe_hash_update(moe_hash *s, const void *data, size_t n) {
    const uint8_t *p = data;
    s->n += n;
    while (s->np && n) {
        s->pend[s->np++] = *p++;
        n--;
        if (s->np == 8) { s->h = moe_hash_step_(s->h, moe_hash_le64_(s->pend)); s->np = 0; }
    }
    uint64_t h = s->h;
    for (; n >= 8; p += 8, n -= 8) h = moe_hash_step_(h, moe_hash_le64_(p));
    s->h = h;
    if (n) { /* np is 0 here and n < 8 */
        memcpy(s->pend, p, n);
        s->np = (int)n;
    }
}

static inline uint64_t moe_hash_final(const moe_hash *s) {
    uint64_t h = s->h;
    if (s->np) {
        uint8_t w[8] = {0};
        memcpy(w, s->pend, (size_t)s->np);
        h = moe_hash_step_(h, moe_hash_le64_(w));
    }
    return moe_mix64(h ^ s->n);
}

#endif
