/* gguf_internal.h: what the GGUF reader (gguf.c) and writer (gguf_write.c)
 * share: little-endian loads and stores, overflow-checked size arithmetic and
 * array growth (internal to src/io/gguf*.c).
 * Not for: anything outside those two files (the API is gguf.h) or the
 * format itself (described in gguf.h). All helpers are small and static
 * inline, so each file gets its own copy. */
#ifndef MOE_IO_GGUF_INTERNAL_H
#define MOE_IO_GGUF_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Overflow-checked arithmetic: return 1 on overflow. */
static inline int mul_u64(uint64_t a, uint64_t b, uint64_t *r) {
    if (a != 0 && b > UINT64_MAX / a) return 1;
    *r = a * b;
    return 0;
}
static inline int add_u64(uint64_t a, uint64_t b, uint64_t *r) {
    if (b > UINT64_MAX - a) return 1;
    *r = a + b;
    return 0;
}
/* x rounded up to a multiple of a (a power of two); 1 on overflow. */
static inline int align_up(uint64_t x, uint64_t a, uint64_t *r) {
    if (add_u64(x, a - 1, r)) return 1;
    *r &= ~(a - 1);
    return 0;
}

/* Little-endian loads and stores, independent of the host. */
static inline uint16_t ld16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t ld32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static inline uint64_t ld64(const uint8_t *p) { return (uint64_t)ld32(p) | ((uint64_t)ld32(p + 4) << 32); }
static inline void st16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static inline void st32(uint8_t *p, uint32_t v) { st16(p, (uint16_t)v); st16(p + 2, (uint16_t)(v >> 16)); }
static inline void st64(uint8_t *p, uint64_t v) { st32(p, (uint32_t)v); st32(p + 4, (uint32_t)(v >> 32)); }

/* Grows an array of structs to hold one more; cap never exceeds max.
 * New elements are zeroed; returns 1 on out of memory. */
static inline int grow(void **arr, size_t *cap, size_t n, size_t max, size_t elem) {
    if (n < *cap) return 0;
    size_t c = *cap ? *cap * 2 : 64;
    if (c > max) c = max;
    void *p = realloc(*arr, c * elem);
    if (!p) return 1;
    memset((char *)p + *cap * elem, 0, (c - *cap) * elem);
    *arr = p;
    *cap = c;
    return 0;
}

#endif /* MOE_IO_GGUF_INTERNAL_H */
