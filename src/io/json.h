/* json.h: a small strict JSON parser (internal).
 *
 * For: the JSON files that come with Hugging Face model folders
 * (config.json, tokenizer.json, tokenizer_config.json, the safetensors header
 * and model.safetensors.index.json): the whole text becomes a read-only tree
 * held in one arena, freed at once.
 * Not for: writing JSON, streaming, or JSON5 / comments / trailing commas.
 *
 * Strict RFC 8259: one value with optional whitespace around it; objects,
 * arrays, strings (escapes \" \\ \/ \b \f \n \r \t \uXXXX, surrogate pairs
 * joined into one code point, lone surrogates rejected; raw control
 * characters and invalid UTF-8 rejected), numbers (-?(0|[1-9][0-9]*)
 * (.[0-9]+)?([eE][+-]?[0-9]+)?, no leading zeros, no NaN/Infinity; an
 * overflow to infinity is rejected), true, false, null. Duplicate keys are
 * kept; json_get returns the first.
 *
 * Limits: nesting depth (json_limits.max_depth, default 512) and input size
 * (max_size, default 1 GiB), checked before anything is allocated for them.
 * Every error names the input (file name or given name), the byte offset,
 * line and column, and what was expected there.
 */
#ifndef MOE_IO_JSON_H
#define MOE_IO_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "moe.h"

typedef enum json_type {
    JSON_NULL = 0,
    JSON_FALSE,
    JSON_TRUE,
    JSON_NUMBER,
    JSON_STRING,
    JSON_ARRAY,
    JSON_OBJECT
} json_type;

typedef struct json_value json_value;
typedef struct json_member json_member;

/* One value. Strings are NUL-terminated UTF-8 (n excludes the NUL; a \u0000
 * escape puts a NUL inside, so use n when that matters). */
struct json_value {
    json_type type;
    union {
        double num;                                   /* JSON_NUMBER */
        struct { const char *s; size_t n; } str;      /* JSON_STRING */
        struct { const json_value *v; size_t n; } arr; /* JSON_ARRAY: [n] */
        struct { const json_member *m; size_t n; } obj; /* JSON_OBJECT: [n], file order */
    } u;
    size_t offset; /* byte offset of the value in the input, for messages */
};

struct json_member {
    const char *key; /* NUL-terminated */
    size_t key_n;
    json_value val;
};

typedef struct json_limits {
    int max_depth;   /* arrays/objects nested deeper fail; <= 0: 512 */
    size_t max_size; /* longer inputs fail; 0: 1 GiB */
} json_limits;

typedef struct json_doc json_doc; /* the tree and its arena */

/* Parses text[0, n) (need not be NUL-terminated). name is used in messages
 * (NULL: "<json>"); limits may be NULL (the defaults). On failure *out is
 * NULL and err says where and why (MOE_ERR_FORMAT; MOE_ERR_NOMEM). */
moe_status json_parse(json_doc **out, const char *text, size_t n, const char *name,
                      const json_limits *limits, moe_error *err);

/* Reads and parses a file (MOE_ERR_IO when it cannot be read). */
moe_status json_parse_file(json_doc **out, const char *path, const json_limits *limits,
                           moe_error *err);

void json_free(json_doc *d); /* NULL is fine */

const json_value *json_root(const json_doc *d);

/* The value of key in object o; NULL when o is NULL, not an object, or has
 * no such key. */
const json_value *json_get(const json_value *o, const char *key);

/* A typed look-up of a member: 1 when present with that type (value in
 * *out), 0 otherwise (absent, null or another type). json_get_int wants an
 * integral number with |x| <= 2^53 (exact in a double). */
int json_get_str(const json_value *o, const char *key, const char **out);
int json_get_num(const json_value *o, const char *key, double *out);
int json_get_int(const json_value *o, const char *key, int64_t *out);
int json_get_bool(const json_value *o, const char *key, int *out);

/* 1 when v is a number with an integral value and |v| <= 2^53 (then *out). */
int json_as_int(const json_value *v, int64_t *out);

/* "null", "false", "true", "number", "string", "array", "object". */
const char *json_type_name(json_type t);

#endif /* MOE_IO_JSON_H */
