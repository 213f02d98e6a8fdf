/* gguf_fields.c: configuration structs as GGUF keys (gguf_fields.h). */
#include "io/gguf_fields.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

moe_status gguf_fields_put(gguf_writer *w, const char *prefix, const gguf_field *f, int n,
                           const void *base, moe_error *err) {
    char key[128];
    for (int i = 0; i < n; i++) {
        const char *p = (const char *)base + f[i].off;
        snprintf(key, sizeof key, "%s%s", prefix, f[i].key);
        moe_status st;
        switch (f[i].type) {
        case 'i': st = gguf_writer_set_i32(w, key, *(const int *)p, err); break;
        case 'f': st = gguf_writer_set_f32(w, key, *(const float *)p, err); break;
        case 'u': st = gguf_writer_set_u64(w, key, *(const uint64_t *)p, err); break;
        default: st = gguf_writer_set_i64(w, key, *(const int64_t *)p, err); break;
        }
        if (st != MOE_OK) return st;
    }
    return MOE_OK;
}

moe_status gguf_fields_get(const gguf_ctx *g, const char *prefix, const gguf_field *f, int n, void *base,
                           moe_error *err) {
    char key[128];
    for (int i = 0; i < n; i++) {
        char *p = (char *)base + f[i].off;
        snprintf(key, sizeof key, "%s%s", prefix, f[i].key);
        moe_status st;
        switch (f[i].type) {
        case 'i': { int32_t v; st = gguf_get_i32(g, key, &v, err); if (!st) *(int *)p = v; break; }
        case 'f': st = gguf_get_f32(g, key, (float *)p, err); break;
        case 'u': st = gguf_get_u64(g, key, (uint64_t *)p, err); break;
        default: st = gguf_get_i64(g, key, (int64_t *)p, err); break;
        }
        if (st != MOE_OK) return st;
    }
    return MOE_OK;
}

int gguf_fields_diff(const char *prefix, const gguf_field *f, int n, const void *a, const void *b, char *buf,
                     size_t cap) {
    for (int i = 0; i < n; i++) {
        const char *pa = (const char *)a + f[i].off, *pb = (const char *)b + f[i].off;
        switch (f[i].type) {
        case 'i':
            if (*(const int *)pa != *(const int *)pb) {
                snprintf(buf, cap, "%s%s: %d vs %d", prefix, f[i].key, *(const int *)pa, *(const int *)pb);
                return 1;
            }
            break;
        case 'f':
            if (memcmp(pa, pb, sizeof(float))) {
                snprintf(buf, cap, "%s%s: %g vs %g", prefix, f[i].key, (double)*(const float *)pa,
                         (double)*(const float *)pb);
                return 1;
            }
            break;
        case 'u':
            if (*(const uint64_t *)pa != *(const uint64_t *)pb) {
                snprintf(buf, cap, "%s%s: %llu vs %llu", prefix, f[i].key,
                         (unsigned long long)*(const uint64_t *)pa, (unsigned long long)*(const uint64_t *)pb);
                return 1;
            }
            break;
        default:
            if (*(const int64_t *)pa != *(const int64_t *)pb) {
                snprintf(buf, cap, "%s%s: %lld vs %lld", prefix, f[i].key, (long long)*(const int64_t *)pa,
                         (long long)*(const int64_t *)pb);
                return 1;
            }
        }
    }
    return 0;
}

