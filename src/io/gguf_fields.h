/* gguf_fields.h: configuration structs as GGUF keys, driven by one table
 * per struct (internal). A table lists each field's key suffix, type and
 * offset; the same table writes the keys, reads them back and compares two
 * structs, so a new configuration field is one line.
 * Not for: which keys a file holds (model_file.c, state_file.c).
 */
#ifndef MOE_IO_GGUF_FIELDS_H
#define MOE_IO_GGUF_FIELDS_H

#include <stddef.h>

#include "io/gguf.h"

typedef struct gguf_field {
    const char *key; /* after the prefix */
    char type;       /* 'i' int (and enums), 'f' float, 'u' uint64, 'l' int64 */
    size_t off;      /* offset in the struct */
} gguf_field;

#define GF_I(s, f) {#f, 'i', offsetof(s, f)}
#define GF_F(s, f) {#f, 'f', offsetof(s, f)}
#define GF_U(s, f) {#f, 'u', offsetof(s, f)}
#define GF_L(s, f) {#f, 'l', offsetof(s, f)}
#define GF_N(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* Writes prefix + key = value for the n fields of base. */
moe_status gguf_fields_put(gguf_writer *w, const char *prefix, const gguf_field *f, int n, const void *base,
                           moe_error *err);
/* Reads them into base; a missing key or one of another type is an error. */
moe_status gguf_fields_get(const gguf_ctx *g, const char *prefix, const gguf_field *f, int n, void *base,
                           moe_error *err);
/* 1 and "prefix key: a vs b" in buf for the first field where a and b
 * differ (floats bitwise); 0 if none. */
int gguf_fields_diff(const char *prefix, const gguf_field *f, int n, const void *a, const void *b, char *buf,
                     size_t cap);

#endif
