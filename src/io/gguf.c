/* gguf.c: GGUF reading (validate everything, then copy the metadata) and
 * writing (version 3, atomically). See gguf.h for the format.
 *
 * Reading happens in two steps. The parse step walks the file with a bounds-
 * checked cursor, records strings and arrays as pointers into the file and
 * checks every count, type, shape and offset; it allocates only in proportion
 * to bytes it has already walked. The own step then copies keys, names,
 * strings and arrays into one arena (NUL-terminated, aligned, native-endian)
 * and sorts indexes for look-ups, which also finds duplicates.
 * Not for: model semantics (see the loaders) or tensor data conversion. */
#include "io/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/atomic_file.h"
#include "core/error.h"

/* ----------------------------------------------------------------- types */

static const char *const vtype_names[GGUF_VT_COUNT] = {
    "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool",
    "string", "array", "u64", "i64", "f64",
};
static const unsigned char vtype_sizes[GGUF_VT_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

const char *gguf_vtype_name(uint32_t t) { return t < GGUF_VT_COUNT ? vtype_names[t] : "unknown"; }
size_t gguf_vtype_size(uint32_t t) { return t < GGUF_VT_COUNT ? vtype_sizes[t] : 0; }

/* Block sizes and bytes per block, from the block structs of ggml-common.h. */
static const struct {
    const char *name;
    int64_t block;    /* weights per block; 0: unknown id */
    size_t bytes;     /* bytes per block */
} type_info[GGUF_T_COUNT] = {
    [GGUF_T_F32] = {"f32", 1, 4},         [GGUF_T_F16] = {"f16", 1, 2},
    [GGUF_T_Q4_0] = {"q4_0", 32, 18},     [GGUF_T_Q4_1] = {"q4_1", 32, 20},
    [GGUF_T_Q5_0] = {"q5_0", 32, 22},     [GGUF_T_Q5_1] = {"q5_1", 32, 24},
    [GGUF_T_Q8_0] = {"q8_0", 32, 34},     [GGUF_T_Q8_1] = {"q8_1", 32, 36},
    [GGUF_T_Q2_K] = {"q2_K", 256, 84},    [GGUF_T_Q3_K] = {"q3_K", 256, 110},
    [GGUF_T_Q4_K] = {"q4_K", 256, 144},   [GGUF_T_Q5_K] = {"q5_K", 256, 176},
    [GGUF_T_Q6_K] = {"q6_K", 256, 210},   [GGUF_T_Q8_K] = {"q8_K", 256, 292},
    [GGUF_T_IQ2_XXS] = {"iq2_xxs", 256, 66}, [GGUF_T_IQ2_XS] = {"iq2_xs", 256, 74},
    [GGUF_T_IQ3_XXS] = {"iq3_xxs", 256, 98}, [GGUF_T_IQ1_S] = {"iq1_s", 256, 50},
    [GGUF_T_IQ4_NL] = {"iq4_nl", 32, 18},    [GGUF_T_IQ3_S] = {"iq3_s", 256, 110},
    [GGUF_T_IQ2_S] = {"iq2_s", 256, 82},     [GGUF_T_IQ4_XS] = {"iq4_xs", 256, 136},
    [GGUF_T_I8] = {"i8", 1, 1},           [GGUF_T_I16] = {"i16", 1, 2},
    [GGUF_T_I32] = {"i32", 1, 4},         [GGUF_T_I64] = {"i64", 1, 8},
    [GGUF_T_F64] = {"f64", 1, 8},         [GGUF_T_IQ1_M] = {"iq1_m", 256, 56},
    [GGUF_T_BF16] = {"bf16", 1, 2},
};

static int type_known(uint32_t t) { return t < GGUF_T_COUNT && type_info[t].block > 0; }

const char *gguf_type_name(uint32_t t) { return type_known(t) ? type_info[t].name : "unknown"; }
int64_t gguf_type_block_size(uint32_t t) { return type_known(t) ? type_info[t].block : 0; }
size_t gguf_type_block_bytes(uint32_t t) { return type_known(t) ? type_info[t].bytes : 0; }

/* Overflow-checked arithmetic: return 1 on overflow. */
static int mul_u64(uint64_t a, uint64_t b, uint64_t *r) {
    if (a != 0 && b > UINT64_MAX / a) return 1;
    *r = a * b;
    return 0;
}
static int add_u64(uint64_t a, uint64_t b, uint64_t *r) {
    if (b > UINT64_MAX - a) return 1;
    *r = a + b;
    return 0;
}
/* x rounded up to a multiple of a (a power of two); 1 on overflow. */
static int align_up(uint64_t x, uint64_t a, uint64_t *r) {
    if (add_u64(x, a - 1, r)) return 1;
    *r &= ~(a - 1);
    return 0;
}

moe_status gguf_tensor_nbytes(uint32_t type, uint32_t n_dims, const int64_t *ne,
                              size_t *nbytes, moe_error *err) {
    if (!type_known(type))
        return moe_err(err, MOE_ERR_FORMAT, "type %u is unknown (expected one of the ggml "
                       "types 0..3, 6..30)", type);
    if (n_dims < 1 || n_dims > GGUF_MAX_DIMS)
        return moe_err(err, MOE_ERR_FORMAT, "n_dims = %u, expected 1..%d", n_dims, GGUF_MAX_DIMS);
    uint64_t n = 1;
    for (uint32_t d = 0; d < n_dims; d++) {
        if (ne[d] < 1)
            return moe_err(err, MOE_ERR_FORMAT, "dims[%u] = %lld, expected >= 1", d,
                           (long long)ne[d]);
        if (mul_u64(n, (uint64_t)ne[d], &n) || n > (uint64_t)INT64_MAX)
            return moe_err(err, MOE_ERR_FORMAT, "element count overflows int64 at dims[%u] = %lld",
                           d, (long long)ne[d]);
    }
    int64_t bs = type_info[type].block;
    if (ne[0] % bs != 0)
        return moe_err(err, MOE_ERR_FORMAT, "dims[0] = %lld is not a multiple of the %s block "
                       "size %lld", (long long)ne[0], type_info[type].name, (long long)bs);
    uint64_t bytes;
    if (mul_u64(n / (uint64_t)bs, type_info[type].bytes, &bytes) || bytes > (uint64_t)SIZE_MAX
        || bytes > (uint64_t)INT64_MAX)
        return moe_err(err, MOE_ERR_FORMAT, "byte size of %llu %s elements overflows",
                       (unsigned long long)n, type_info[type].name);
    *nbytes = (size_t)bytes;
    return MOE_OK;
}

/* Little-endian loads and stores, independent of the host. */
static uint16_t ld16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint32_t ld32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static uint64_t ld64(const uint8_t *p) { return (uint64_t)ld32(p) | ((uint64_t)ld32(p + 4) << 32); }
static void st16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void st32(uint8_t *p, uint32_t v) { st16(p, (uint16_t)v); st16(p + 2, (uint16_t)(v >> 16)); }
static void st64(uint8_t *p, uint64_t v) { st32(p, (uint32_t)v); st32(p + 4, (uint32_t)(v >> 32)); }

/* ------------------------------------------------------------- context */

struct gguf_ctx {
    char *name;             /* for messages (owned) */
    const uint8_t *base;    /* [size] the file image */
    size_t size;
    int mapped;             /* 1: base is our mmap */
    uint32_t version, alignment;
    size_t n_kv, cap_kv;
    gguf_kv *kv;            /* [n_kv] */
    size_t n_tensors, cap_tensors;
    gguf_tensor *tensors;   /* [n_tensors] */
    size_t data_offset;     /* start of the data section (may equal size) */
    size_t data_size;       /* bytes from data_offset to the end of the file */
    const gguf_kv **kv_sorted;         /* [n_kv] by key */
    const gguf_tensor **tensor_sorted; /* [n_tensors] by name */
    char *arena;            /* owned copies of strings and arrays */
};

/* The parse cursor, and where it is for messages. */
typedef struct parser {
    gguf_ctx *g;
    size_t pos;
    moe_error *err;
    char where[160]; /* "key 'x'", "tensor 'y'", ... or "" */
} parser;

static moe_status fail(parser *ps, moe_status s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static moe_status fail(parser *ps, moe_status s, const char *fmt, ...) {
    char detail[320];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    if (ps->where[0])
        return moe_err(ps->err, s, "%s: %s: %s", ps->g->name, ps->where, detail);
    return moe_err(ps->err, s, "%s: %s", ps->g->name, detail);
}

/* Sets ps->where to "<what> '<s>'", with s cut to 64 bytes and anything
 * unprintable shown as '?'. */
static void set_where(parser *ps, const char *what, const char *s, size_t n) {
    char clean[72];
    size_t m = n < 64 ? n : 64, j = 0;
    for (size_t i = 0; i < m; i++) {
        unsigned char c = (unsigned char)s[i];
        clean[j++] = (c >= 32 && c < 127) ? (char)c : '?';
    }
    if (m < n) { clean[j++] = '.'; clean[j++] = '.'; clean[j++] = '.'; }
    clean[j] = '\0';
    snprintf(ps->where, sizeof ps->where, "%s '%s'", what, clean);
}

static size_t left(const parser *ps) { return ps->g->size - ps->pos; }

static moe_status need(parser *ps, size_t n, const char *field) {
    if (n <= left(ps)) return MOE_OK;
    return fail(ps, MOE_ERR_FORMAT, "%s: file ends at byte %zu, expected %zu more bytes at "
                "offset %zu", field, ps->g->size, n, ps->pos);
}

static moe_status rd_u32(parser *ps, uint32_t *v, const char *field) {
    moe_status s = need(ps, 4, field);
    if (s) return s;
    *v = ld32(ps->g->base + ps->pos);
    ps->pos += 4;
    return MOE_OK;
}

static moe_status rd_u64(parser *ps, uint64_t *v, const char *field) {
    moe_status s = need(ps, 8, field);
    if (s) return s;
    *v = ld64(ps->g->base + ps->pos);
    ps->pos += 8;
    return MOE_OK;
}

/* A string as a pointer into the file (copied later). */
static moe_status rd_str(parser *ps, gguf_str *out, const char *field) {
    uint64_t n;
    moe_status s = rd_u64(ps, &n, field);
    if (s) return s;
    if (n > left(ps))
        return fail(ps, MOE_ERR_FORMAT, "%s: string length %llu exceeds the %zu bytes left "
                    "in the file at offset %zu", field, (unsigned long long)n, left(ps), ps->pos);
    out->s = (const char *)ps->g->base + ps->pos;
    out->n = (size_t)n;
    ps->pos += (size_t)n;
    return MOE_OK;
}

/* Reads one value of type t into kv (scalars decoded, strings and arrays as
 * pointers into the file). */
static moe_status rd_value(parser *ps, gguf_kv *kv, uint32_t t) {
    const uint8_t *p = ps->g->base + ps->pos;
    moe_status s;
    if (t >= GGUF_VT_COUNT)
        return fail(ps, MOE_ERR_FORMAT, "value type %u is unknown, expected 0..12", t);
    kv->type = (gguf_vtype)t;
    if (t == GGUF_VT_STR) return rd_str(ps, &kv->v.str, "string value");
    if (t != GGUF_VT_ARR) {
        size_t es = vtype_sizes[t];
        if ((s = need(ps, es, vtype_names[t]))) return s;
        switch ((gguf_vtype)t) {
        case GGUF_VT_U8: kv->v.u = p[0]; break;
        case GGUF_VT_I8: kv->v.i = (int8_t)p[0]; break;
        case GGUF_VT_U16: kv->v.u = ld16(p); break;
        case GGUF_VT_I16: kv->v.i = (int16_t)ld16(p); break;
        case GGUF_VT_U32: kv->v.u = ld32(p); break;
        case GGUF_VT_I32: kv->v.i = (int32_t)ld32(p); break;
        case GGUF_VT_U64: kv->v.u = ld64(p); break;
        case GGUF_VT_I64: kv->v.i = (int64_t)ld64(p); break;
        case GGUF_VT_F32: { uint32_t b = ld32(p); float f; memcpy(&f, &b, 4); kv->v.f = f; break; }
        case GGUF_VT_F64: { uint64_t b = ld64(p); memcpy(&kv->v.f, &b, 8); break; }
        case GGUF_VT_BOOL:
            if (p[0] > 1) return fail(ps, MOE_ERR_FORMAT, "bool value is %u, expected 0 or 1", p[0]);
            kv->v.u = p[0];
            break;
        default: break;
        }
        ps->pos += es;
        return MOE_OK;
    }
    /* array */
    uint32_t et;
    uint64_t n;
    if ((s = rd_u32(ps, &et, "array element type"))) return s;
    if (et == GGUF_VT_ARR)
        return fail(ps, MOE_ERR_UNSUPPORTED, "nested arrays (array of array) are not supported");
    if (et >= GGUF_VT_COUNT)
        return fail(ps, MOE_ERR_FORMAT, "array element type %u is unknown, expected 0..12", et);
    if ((s = rd_u64(ps, &n, "array length"))) return s;
    kv->arr_type = (gguf_vtype)et;
    kv->arr_n = n;
    kv->arr = ps->g->base + ps->pos;
    if (et != GGUF_VT_STR) {
        size_t es = vtype_sizes[et];
        if (n > left(ps) / es)
            return fail(ps, MOE_ERR_FORMAT, "array of %llu %s needs %llu x %zu bytes, but only %zu "
                        "are left in the file at offset %zu", (unsigned long long)n,
                        vtype_names[et], (unsigned long long)n, es, left(ps), ps->pos);
        if (et == GGUF_VT_BOOL)
            for (uint64_t i = 0; i < n; i++)
                if (ps->g->base[ps->pos + i] > 1)
                    return fail(ps, MOE_ERR_FORMAT, "bool array element %llu is %u, expected 0 "
                                "or 1", (unsigned long long)i, ps->g->base[ps->pos + i]);
        ps->pos += (size_t)n * es;
        return MOE_OK;
    }
    if (n > left(ps) / 8)
        return fail(ps, MOE_ERR_FORMAT, "array of %llu strings needs at least 8 bytes each, but "
                    "only %zu are left in the file at offset %zu", (unsigned long long)n, left(ps),
                    ps->pos);
    for (uint64_t i = 0; i < n; i++) {
        gguf_str tmp;
        char field[48];
        snprintf(field, sizeof field, "string array element %llu", (unsigned long long)i);
        if ((s = rd_str(ps, &tmp, field))) return s;
    }
    return MOE_OK;
}

/* Grows an array of structs to hold one more; cap never exceeds max. */
static int grow(void **arr, size_t *cap, size_t n, size_t max, size_t elem) {
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

static int str_cmp(const gguf_str *a, const char *b, size_t bn) {
    size_t m = a->n < bn ? a->n : bn;
    int c = memcmp(a->s, b, m);
    if (c) return c;
    return a->n < bn ? -1 : a->n > bn;
}
static int kv_cmp(const void *x, const void *y) {
    const gguf_kv *a = *(const gguf_kv *const *)x, *b = *(const gguf_kv *const *)y;
    return str_cmp(&a->key, b->key.s, b->key.n);
}
static int tensor_cmp(const void *x, const void *y) {
    const gguf_tensor *a = *(const gguf_tensor *const *)x, *b = *(const gguf_tensor *const *)y;
    return str_cmp(&a->name, b->name.s, b->name.n);
}

static moe_status parse(parser *ps) {
    gguf_ctx *g = ps->g;
    moe_status s;
    ps->where[0] = '\0';

    /* header */
    if (g->size < 4)
        return fail(ps, MOE_ERR_FORMAT, "file is %zu bytes, too short for the 4-byte magic "
                    "'GGUF'", g->size);
    if (memcmp(g->base, "GGUF", 4) != 0) {
        const uint8_t *m = g->base;
        return fail(ps, MOE_ERR_FORMAT, "magic is %02x %02x %02x %02x, expected 47 47 55 46 "
                    "('GGUF'): not a GGUF file", m[0], m[1], m[2], m[3]);
    }
    ps->pos = 4;
    if ((s = rd_u32(ps, &g->version, "header version"))) return s;
    if (g->version == 1)
        return fail(ps, MOE_ERR_UNSUPPORTED, "version 1 (the 2023 draft with 32-bit lengths) is "
                    "not supported, expected 2 or 3");
    if (g->version != 2 && g->version != 3) {
        uint32_t v = g->version;
        uint32_t sw = (v >> 24) | ((v >> 8) & 0xff00) | ((v << 8) & 0xff0000) | (v << 24);
        return fail(ps, MOE_ERR_FORMAT, "unknown version %u, expected 2 or 3%s", v,
                    (sw == 2 || sw == 3) ? " (a big-endian file? only little-endian is read)" : "");
    }
    uint64_t n_tensors, n_kv;
    if ((s = rd_u64(ps, &n_tensors, "header tensor count"))) return s;
    if ((s = rd_u64(ps, &n_kv, "header metadata count"))) return s;
    /* the smallest entry: an empty key, a type and a one-byte value (13 bytes);
       the smallest tensor info: an empty name, n_dims, one dim, type, offset */
    if (n_kv > left(ps) / 13)
        return fail(ps, MOE_ERR_FORMAT, "metadata count %llu cannot fit: the %zu bytes after the "
                    "header hold at most %zu entries of >= 13 bytes", (unsigned long long)n_kv,
                    left(ps), left(ps) / 13);
    if (n_tensors > left(ps) / 32)
        return fail(ps, MOE_ERR_FORMAT, "tensor count %llu cannot fit: the %zu bytes after the "
                    "header hold at most %zu tensor infos of >= 32 bytes",
                    (unsigned long long)n_tensors, left(ps), left(ps) / 32);

    /* metadata */
    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    for (uint64_t i = 0; i < n_kv; i++) {
        snprintf(ps->where, sizeof ps->where, "metadata entry %llu of %llu",
                 (unsigned long long)i, (unsigned long long)n_kv);
        if (grow((void **)&g->kv, &g->cap_kv, g->n_kv, (size_t)n_kv, sizeof *g->kv))
            return fail(ps, MOE_ERR_NOMEM, "out of memory");
        gguf_kv *kv = &g->kv[g->n_kv];
        if ((s = rd_str(ps, &kv->key, "key"))) return s;
        g->n_kv++;
        set_where(ps, "key", kv->key.s, kv->key.n);
        uint32_t t;
        if ((s = rd_u32(ps, &t, "value type"))) return s;
        if ((s = rd_value(ps, kv, t))) return s;
        if (kv->key.n == 17 && memcmp(kv->key.s, "general.alignment", 17) == 0) {
            if (kv->type != GGUF_VT_U32)
                return fail(ps, MOE_ERR_FORMAT, "type %s, expected u32", gguf_vtype_name(t));
            uint64_t a = kv->v.u;
            if (a == 0 || (a & (a - 1)) != 0)
                return fail(ps, MOE_ERR_FORMAT, "alignment %llu, expected a non-zero power of two",
                            (unsigned long long)a);
            g->alignment = (uint32_t)a;
        }
    }

    /* tensor infos */
    for (uint64_t i = 0; i < n_tensors; i++) {
        snprintf(ps->where, sizeof ps->where, "tensor info %llu of %llu",
                 (unsigned long long)i, (unsigned long long)n_tensors);
        if (grow((void **)&g->tensors, &g->cap_tensors, g->n_tensors, (size_t)n_tensors,
                 sizeof *g->tensors))
            return fail(ps, MOE_ERR_NOMEM, "out of memory");
        gguf_tensor *t = &g->tensors[g->n_tensors];
        if ((s = rd_str(ps, &t->name, "name"))) return s;
        g->n_tensors++;
        set_where(ps, "tensor", t->name.s, t->name.n);
        if ((s = rd_u32(ps, &t->n_dims, "n_dims"))) return s;
        if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS)
            return fail(ps, MOE_ERR_FORMAT, "n_dims = %u, expected 1..%d", t->n_dims,
                        GGUF_MAX_DIMS);
        for (int d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = 1;
        for (uint32_t d = 0; d < t->n_dims; d++) {
            uint64_t v;
            if ((s = rd_u64(ps, &v, "dims"))) return s;
            if (v == 0 || v > (uint64_t)INT64_MAX)
                return fail(ps, MOE_ERR_FORMAT, "dims[%u] = %llu, expected 1..2^63-1", d,
                            (unsigned long long)v);
            t->ne[d] = (int64_t)v;
        }
        uint32_t type;
        if ((s = rd_u32(ps, &type, "type"))) return s;
        if ((s = rd_u64(ps, &t->offset, "offset"))) return s;
        moe_error e;
        if (gguf_tensor_nbytes(type, t->n_dims, t->ne, &t->nbytes, &e) != MOE_OK)
            return fail(ps, type_known(type) ? MOE_ERR_FORMAT : MOE_ERR_UNSUPPORTED, "%s", e.msg);
        t->type = (gguf_ttype)type;
        t->n_elem = 1;
        for (int d = 0; d < GGUF_MAX_DIMS; d++) t->n_elem *= t->ne[d];
    }

    /* data section */
    ps->where[0] = '\0';
    uint64_t data_off;
    if (align_up(ps->pos, g->alignment, &data_off))
        return fail(ps, MOE_ERR_FORMAT, "data section offset overflows");
    g->data_offset = data_off <= g->size ? (size_t)data_off : g->size;
    g->data_size = g->size - g->data_offset;
    for (size_t i = 0; i < g->n_tensors; i++) {
        gguf_tensor *t = &g->tensors[i];
        set_where(ps, "tensor", t->name.s, t->name.n);
        uint64_t end;
        if (t->offset % g->alignment != 0)
            return fail(ps, MOE_ERR_FORMAT, "offset %llu is not a multiple of the alignment %u",
                        (unsigned long long)t->offset, g->alignment);
        if (data_off > g->size || add_u64(t->offset, t->nbytes, &end) || end > g->data_size)
            return fail(ps, MOE_ERR_FORMAT, "offset %llu + size %zu exceeds the data section of "
                        "%zu bytes (it starts at byte %llu of a %zu-byte file)",
                        (unsigned long long)t->offset, t->nbytes,
                        data_off > g->size ? (size_t)0 : g->data_size,
                        (unsigned long long)data_off, g->size);
        t->data = g->base + g->data_offset + t->offset;
    }
    return MOE_OK;
}

/* Copies every string and array into one arena, then sorts the indexes and
 * rejects duplicates. */
static moe_status own(parser *ps) {
    gguf_ctx *g = ps->g;
    ps->where[0] = '\0';
    /* sizes: arrays first (8-aligned), then strings (+1 for the NUL) */
    uint64_t arrays = 0, strings = 0;
    for (size_t i = 0; i < g->n_kv; i++) {
        const gguf_kv *kv = &g->kv[i];
        strings += kv->key.n + 1;
        if (kv->type == GGUF_VT_STR) strings += kv->v.str.n + 1;
        if (kv->type != GGUF_VT_ARR) continue;
        size_t es = kv->arr_type == GGUF_VT_STR ? sizeof(gguf_str) : vtype_sizes[kv->arr_type];
        arrays += (kv->arr_n * es + 7) & ~(uint64_t)7; /* bounded by the file size */
        if (kv->arr_type == GGUF_VT_STR) {
            const uint8_t *p = kv->arr;
            for (uint64_t j = 0; j < kv->arr_n; j++) {
                uint64_t n = ld64(p);
                strings += n + 1;
                p += 8 + n;
            }
        }
    }
    for (size_t i = 0; i < g->n_tensors; i++) strings += g->tensors[i].name.n + 1;
    uint64_t total = arrays + strings;
    if (total > SIZE_MAX || !(g->arena = malloc(total ? (size_t)total : 1)))
        return fail(ps, MOE_ERR_NOMEM, "out of memory copying %llu bytes of metadata",
                    (unsigned long long)total);
    char *a = g->arena, *sp = g->arena + arrays;

#define COPY_STR(str)                                   \
    do {                                                \
        memcpy(sp, (str).s, (str).n);                   \
        sp[(str).n] = '\0';                             \
        (str).s = sp;                                   \
        sp += (str).n + 1;                              \
    } while (0)

    for (size_t i = 0; i < g->n_kv; i++) {
        gguf_kv *kv = &g->kv[i];
        COPY_STR(kv->key);
        if (kv->type == GGUF_VT_STR) COPY_STR(kv->v.str);
        if (kv->type != GGUF_VT_ARR) continue;
        const uint8_t *p = kv->arr;
        uint64_t n = kv->arr_n;
        if (n == 0) {
            kv->arr = NULL;
            continue;
        }
        void *dst = a;
        switch (kv->arr_type) {
        case GGUF_VT_U8: case GGUF_VT_I8: case GGUF_VT_BOOL:
            memcpy(dst, p, (size_t)n);
            break;
        case GGUF_VT_U16: case GGUF_VT_I16:
            for (uint64_t j = 0; j < n; j++) ((uint16_t *)dst)[j] = ld16(p + 2 * j);
            break;
        case GGUF_VT_U32: case GGUF_VT_I32: case GGUF_VT_F32:
            for (uint64_t j = 0; j < n; j++) ((uint32_t *)dst)[j] = ld32(p + 4 * j);
            break;
        case GGUF_VT_U64: case GGUF_VT_I64: case GGUF_VT_F64:
            for (uint64_t j = 0; j < n; j++) ((uint64_t *)dst)[j] = ld64(p + 8 * j);
            break;
        case GGUF_VT_STR: {
            gguf_str *tab = dst;
            for (uint64_t j = 0; j < n; j++) {
                tab[j].n = (size_t)ld64(p);
                tab[j].s = (const char *)p + 8;
                p += 8 + tab[j].n;
                COPY_STR(tab[j]);
            }
            break;
        }
        default: break;
        }
        size_t es = kv->arr_type == GGUF_VT_STR ? sizeof(gguf_str) : vtype_sizes[kv->arr_type];
        a += ((size_t)n * es + 7) & ~(size_t)7;
        kv->arr = dst;
    }
    for (size_t i = 0; i < g->n_tensors; i++) COPY_STR(g->tensors[i].name);
#undef COPY_STR

    /* indexes; adjacent equal names after sorting are duplicates */
    g->kv_sorted = malloc((g->n_kv ? g->n_kv : 1) * sizeof *g->kv_sorted);
    g->tensor_sorted = malloc((g->n_tensors ? g->n_tensors : 1) * sizeof *g->tensor_sorted);
    if (!g->kv_sorted || !g->tensor_sorted) return fail(ps, MOE_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < g->n_kv; i++) g->kv_sorted[i] = &g->kv[i];
    for (size_t i = 0; i < g->n_tensors; i++) g->tensor_sorted[i] = &g->tensors[i];
    if (g->n_kv > 1) qsort(g->kv_sorted, g->n_kv, sizeof *g->kv_sorted, kv_cmp);
    if (g->n_tensors > 1)
        qsort(g->tensor_sorted, g->n_tensors, sizeof *g->tensor_sorted, tensor_cmp);
    for (size_t i = 1; i < g->n_kv; i++)
        if (kv_cmp(&g->kv_sorted[i - 1], &g->kv_sorted[i]) == 0) {
            const gguf_kv *x = g->kv_sorted[i - 1], *y = g->kv_sorted[i];
            set_where(ps, "key", x->key.s, x->key.n);
            return fail(ps, MOE_ERR_FORMAT, "duplicate key (entries %zu and %zu), expected "
                        "unique keys", (size_t)(x - g->kv), (size_t)(y - g->kv));
        }
    for (size_t i = 1; i < g->n_tensors; i++)
        if (tensor_cmp(&g->tensor_sorted[i - 1], &g->tensor_sorted[i]) == 0) {
            const gguf_tensor *x = g->tensor_sorted[i - 1], *y = g->tensor_sorted[i];
            set_where(ps, "tensor", x->name.s, x->name.n);
            return fail(ps, MOE_ERR_FORMAT, "duplicate tensor name (tensors %zu and %zu), "
                        "expected unique names", (size_t)(x - g->tensors),
                        (size_t)(y - g->tensors));
        }
    return MOE_OK;
}

static moe_status open_common(gguf_ctx **out, gguf_ctx *g, moe_error *err) {
    parser ps = {.g = g, .pos = 0, .err = err};
    moe_status s = parse(&ps);
    if (!s) s = own(&ps);
    if (s) {
        gguf_close(g);
        return s;
    }
    *out = g;
    return MOE_OK;
}

static gguf_ctx *ctx_new(const char *name) {
    gguf_ctx *g = calloc(1, sizeof *g);
    if (!g) return NULL;
    size_t n = strlen(name);
    g->name = malloc(n + 1);
    if (!g->name) {
        free(g);
        return NULL;
    }
    memcpy(g->name, name, n + 1);
    return g;
}

moe_status gguf_open_memory(gguf_ctx **out, const void *buf, size_t size, const char *name,
                            moe_error *err) {
    if (!out) return moe_err(err, MOE_ERR_ARG, "gguf_open_memory: out is NULL");
    *out = NULL;
    if (!name) name = "<memory>";
    if (!buf && size) return moe_err(err, MOE_ERR_ARG, "%s: buffer is NULL", name);
    gguf_ctx *g = ctx_new(name);
    if (!g) return moe_err(err, MOE_ERR_NOMEM, "%s: out of memory", name);
    static const uint8_t empty[1] = {0};
    g->base = buf ? buf : empty;
    g->size = size;
    return open_common(out, g, err);
}

moe_status gguf_open_file(gguf_ctx **out, const char *path, moe_error *err) {
    if (!out) return moe_err(err, MOE_ERR_ARG, "gguf_open_file: out is NULL");
    *out = NULL;
    if (!path) return moe_err(err, MOE_ERR_ARG, "gguf_open_file: path is NULL");
    int fd = open(path, O_RDONLY);
    if (fd < 0) return moe_err(err, MOE_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return moe_err(err, MOE_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return moe_err(err, MOE_ERR_IO, "%s: not a regular file", path);
    }
    if (st.st_size < 24) {
        close(fd);
        return moe_err(err, MOE_ERR_FORMAT, "%s: file is %lld bytes, too short for the 24-byte "
                       "GGUF header", path, (long long)st.st_size);
    }
    if ((uint64_t)st.st_size > (uint64_t)SIZE_MAX) {
        close(fd);
        return moe_err(err, MOE_ERR_UNSUPPORTED, "%s: file of %lld bytes cannot be mapped",
                       path, (long long)st.st_size);
    }
    size_t size = (size_t)st.st_size;
    void *m = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (m == MAP_FAILED)
        return moe_err(err, MOE_ERR_IO, "%s: mmap of %zu bytes failed: %s", path, size, strerror(e));
    gguf_ctx *g = ctx_new(path);
    if (!g) {
        munmap(m, size);
        return moe_err(err, MOE_ERR_NOMEM, "%s: out of memory", path);
    }
    g->base = m;
    g->size = size;
    g->mapped = 1;
    return open_common(out, g, err);
}

void gguf_close(gguf_ctx *g) {
    if (!g) return;
    if (g->mapped) munmap((void *)g->base, g->size);
    free(g->kv);
    free(g->tensors);
    free(g->kv_sorted);
    free(g->tensor_sorted);
    free(g->arena);
    free(g->name);
    free(g);
}

const char *gguf_name(const gguf_ctx *g) { return g->name; }
uint32_t gguf_version(const gguf_ctx *g) { return g->version; }
uint32_t gguf_alignment(const gguf_ctx *g) { return g->alignment; }
size_t gguf_file_size(const gguf_ctx *g) { return g->size; }
size_t gguf_data_offset(const gguf_ctx *g) { return g->data_offset; }
size_t gguf_n_kv(const gguf_ctx *g) { return g->n_kv; }
size_t gguf_n_tensors(const gguf_ctx *g) { return g->n_tensors; }
const gguf_kv *gguf_kv_at(const gguf_ctx *g, size_t i) { return i < g->n_kv ? &g->kv[i] : NULL; }
const gguf_tensor *gguf_tensor_at(const gguf_ctx *g, size_t i) {
    return i < g->n_tensors ? &g->tensors[i] : NULL;
}

/* ------------------------------------------------------------ look-ups */

const gguf_kv *gguf_find_kv(const gguf_ctx *g, const char *key) {
    if (!g || !key) return NULL;
    size_t n = strlen(key), lo = 0, hi = g->n_kv;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = str_cmp(&g->kv_sorted[mid]->key, key, n);
        if (c == 0) return g->kv_sorted[mid];
        if (c < 0) lo = mid + 1; else hi = mid;
    }
    return NULL;
}

const gguf_tensor *gguf_find_tensor(const gguf_ctx *g, const char *name) {
    if (!g || !name) return NULL;
    size_t n = strlen(name), lo = 0, hi = g->n_tensors;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = str_cmp(&g->tensor_sorted[mid]->name, name, n);
        if (c == 0) return g->tensor_sorted[mid];
        if (c < 0) lo = mid + 1; else hi = mid;
    }
    return NULL;
}

moe_status gguf_get_tensor(const gguf_ctx *g, const char *name, const gguf_tensor **t,
                           moe_error *err) {
    *t = gguf_find_tensor(g, name);
    if (!*t) return moe_err(err, MOE_ERR_FORMAT, "%s: tensor '%s' not found", g->name, name);
    return MOE_OK;
}

static moe_status find_typed(const gguf_ctx *g, const char *key, const gguf_kv **kv,
                             moe_error *err) {
    *kv = gguf_find_kv(g, key);
    if (!*kv) return moe_err(err, MOE_ERR_FORMAT, "%s: key '%s' not found", g->name, key);
    return MOE_OK;
}

static int is_unsigned(gguf_vtype t) {
    return t == GGUF_VT_U8 || t == GGUF_VT_U16 || t == GGUF_VT_U32 || t == GGUF_VT_U64;
}
static int is_signed(gguf_vtype t) {
    return t == GGUF_VT_I8 || t == GGUF_VT_I16 || t == GGUF_VT_I32 || t == GGUF_VT_I64;
}

/* An integer value of any integer type, checked against [lo, hi]. */
static moe_status get_int(const gguf_ctx *g, const char *key, int64_t lo, uint64_t hi,
                          const char *want, int *neg, uint64_t *mag, moe_error *err) {
    const gguf_kv *kv;
    moe_status s = find_typed(g, key, &kv, err);
    if (s) return s;
    if (is_unsigned(kv->type)) {
        *neg = 0;
        *mag = kv->v.u;
        if (kv->v.u > hi)
            return moe_err(err, MOE_ERR_FORMAT, "%s: key '%s' = %llu is out of range for %s",
                           g->name, key, (unsigned long long)kv->v.u, want);
        return MOE_OK;
    }
    if (is_signed(kv->type)) {
        int64_t v = kv->v.i;
        if (v < lo || (v > 0 && (uint64_t)v > hi))
            return moe_err(err, MOE_ERR_FORMAT, "%s: key '%s' = %lld is out of range for %s",
                           g->name, key, (long long)v, want);
        *neg = v < 0;
        *mag = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
        return MOE_OK;
    }
    return moe_err(err, MOE_ERR_FORMAT, "%s: key '%s' has type %s, expected an integer (%s)",
                   g->name, key, gguf_vtype_name(kv->type), want);
}

moe_status gguf_get_u32(const gguf_ctx *g, const char *key, uint32_t *out, moe_error *err) {
    int neg; uint64_t m;
    moe_status s = get_int(g, key, 0, UINT32_MAX, "u32", &neg, &m, err);
    if (!s) *out = (uint32_t)m;
    return s;
}
moe_status gguf_get_i32(const gguf_ctx *g, const char *key, int32_t *out, moe_error *err) {
    int neg; uint64_t m;
    moe_status s = get_int(g, key, INT32_MIN, INT32_MAX, "i32", &neg, &m, err);
    if (!s) *out = neg ? (int32_t)(-(int64_t)m) : (int32_t)m;
    return s;
}
moe_status gguf_get_u64(const gguf_ctx *g, const char *key, uint64_t *out, moe_error *err) {
    int neg; uint64_t m;
    moe_status s = get_int(g, key, 0, UINT64_MAX, "u64", &neg, &m, err);
    if (!s) *out = m;
    return s;
}
moe_status gguf_get_i64(const gguf_ctx *g, const char *key, int64_t *out, moe_error *err) {
    int neg; uint64_t m;
    moe_status s = get_int(g, key, INT64_MIN, INT64_MAX, "i64", &neg, &m, err);
    /* m <= 2^63; the negation goes through unsigned to stay defined at INT64_MIN */
    if (!s) *out = neg ? (int64_t)(0 - m) : (int64_t)m;
    return s;
}

moe_status gguf_get_f64(const gguf_ctx *g, const char *key, double *out, moe_error *err) {
    const gguf_kv *kv;
    moe_status s = find_typed(g, key, &kv, err);
    if (s) return s;
    if (kv->type != GGUF_VT_F32 && kv->type != GGUF_VT_F64)
        return moe_err(err, MOE_ERR_FORMAT, "%s: key '%s' has type %s, expected f32 or f64",
                       g->name, key, gguf_vtype_name(kv->type));
    *out = kv->v.f;
    return MOE_OK;
}
moe_status gguf_get_f32(const gguf_ctx *g, const char *key, float *out, moe_error *err) {
    double d;
    moe_status s = gguf_get_f64(g, key, &d, err);
    if (!s) *out = (float)d;
    return s;
}

moe_status gguf_get_bool(const gguf_ctx *g, const char *key, int *out, moe_error *err) {
    const gguf_kv *kv;
    moe_status s = find_typed(g, key, &kv, err);
    if (s) return s;
    if (kv->type != GGUF_VT_BOOL)
        return moe_err(err, MOE_ERR_FORMAT, "%s: key '%s' has type %s, expected bool", g->name,
                       key, gguf_vtype_name(kv->type));
    *out = (int)kv->v.u;
    return MOE_OK;
}

moe_status gguf_get_str(const gguf_ctx *g, const char *key, const char **str, size_t *n,
                        moe_error *err) {
    const gguf_kv *kv;
    moe_status s = find_typed(g, key, &kv, err);
    if (s) return s;
    if (kv->type != GGUF_VT_STR)
        return moe_err(err, MOE_ERR_FORMAT, "%s: key '%s' has type %s, expected string",
                       g->name, key, gguf_vtype_name(kv->type));
    *str = kv->v.str.s;
    if (n) *n = kv->v.str.n;
    return MOE_OK;
}

moe_status gguf_get_arr(const gguf_ctx *g, const char *key, gguf_vtype *elem_type, uint64_t *n,
                        const void **data, moe_error *err) {
    const gguf_kv *kv;
    moe_status s = find_typed(g, key, &kv, err);
    if (s) return s;
    if (kv->type != GGUF_VT_ARR)
        return moe_err(err, MOE_ERR_FORMAT, "%s: key '%s' has type %s, expected array",
                       g->name, key, gguf_vtype_name(kv->type));
    if (elem_type) *elem_type = kv->arr_type;
    *n = kv->arr_n;
    *data = kv->arr;
    return MOE_OK;
}

moe_status gguf_get_arr_of(const gguf_ctx *g, const char *key, gguf_vtype want, uint64_t *n,
                           const void **data, moe_error *err) {
    gguf_vtype t = GGUF_VT_COUNT;
    moe_status s = gguf_get_arr(g, key, &t, n, data, err);
    if (s) return s;
    if (t != want)
        return moe_err(err, MOE_ERR_FORMAT, "%s: key '%s' is an array of %s, expected an array "
                       "of %s", g->name, key, gguf_vtype_name(t), gguf_vtype_name(want));
    return MOE_OK;
}

/* -------------------------------------------------------------- writer */

typedef struct wkv {
    char *key;          /* owned, NUL-terminated */
    size_t key_n;
    uint32_t type;
    uint8_t *payload;   /* the encoded value after the type field (owned) */
    size_t payload_n;
} wkv;

typedef struct wtensor {
    char *name;         /* owned */
    size_t name_n;
    uint32_t type, n_dims;
    int64_t ne[GGUF_MAX_DIMS];
    const void *data;   /* [nbytes] borrowed */
    size_t nbytes;
} wtensor;

struct gguf_writer {
    wkv *kv;
    size_t n_kv, cap_kv;
    wtensor *t;
    size_t n_t, cap_t;
    uint32_t alignment;
};

moe_status gguf_writer_create(gguf_writer **out, moe_error *err) {
    *out = calloc(1, sizeof **out);
    if (!*out) return moe_err(err, MOE_ERR_NOMEM, "gguf writer: out of memory");
    (*out)->alignment = GGUF_DEFAULT_ALIGNMENT;
    return MOE_OK;
}

void gguf_writer_free(gguf_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n_kv; i++) {
        free(w->kv[i].key);
        free(w->kv[i].payload);
    }
    for (size_t i = 0; i < w->n_t; i++) free(w->t[i].name);
    free(w->kv);
    free(w->t);
    free(w);
}

static char *dup_str(const char *s, size_t n) {
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

/* Adds key with an encoded payload that the writer takes over (freed on
 * failure). */
static moe_status add_kv(gguf_writer *w, const char *key, uint32_t type, uint8_t *payload,
                         size_t payload_n, moe_error *err) {
    moe_status s = MOE_OK;
    if (!key) {
        s = moe_err(err, MOE_ERR_ARG, "gguf writer: key is NULL");
        goto fail;
    }
    if (!payload) {
        s = moe_err(err, MOE_ERR_NOMEM, "gguf writer: key '%s': out of memory", key);
        goto fail;
    }
    size_t kn = strlen(key);
    for (size_t i = 0; i < w->n_kv; i++)
        if (w->kv[i].key_n == kn && memcmp(w->kv[i].key, key, kn) == 0) {
            s = moe_err(err, MOE_ERR_ARG, "gguf writer: duplicate key '%s'", key);
            goto fail;
        }
    if (strcmp(key, "general.alignment") == 0) {
        uint32_t a = type == GGUF_VT_U32 ? ld32(payload) : 0;
        if (type != GGUF_VT_U32 || a == 0 || (a & (a - 1)) != 0) {
            s = moe_err(err, MOE_ERR_ARG, "gguf writer: general.alignment must be a u32 power "
                        "of two (got type %s, value %u)", gguf_vtype_name(type), a);
            goto fail;
        }
    }
    if (grow((void **)&w->kv, &w->cap_kv, w->n_kv, SIZE_MAX / sizeof *w->kv, sizeof *w->kv)) {
        s = moe_err(err, MOE_ERR_NOMEM, "gguf writer: out of memory");
        goto fail;
    }
    wkv *kv = &w->kv[w->n_kv];
    if (!(kv->key = dup_str(key, kn))) {
        s = moe_err(err, MOE_ERR_NOMEM, "gguf writer: out of memory");
        goto fail;
    }
    kv->key_n = kn;
    kv->type = type;
    kv->payload = payload;
    kv->payload_n = payload_n;
    w->n_kv++;
    if (type == GGUF_VT_U32 && strcmp(key, "general.alignment") == 0) w->alignment = ld32(payload);
    return MOE_OK;
fail:
    free(payload);
    return s;
}

static moe_status set_scalar(gguf_writer *w, const char *key, gguf_vtype t, uint64_t bits,
                             moe_error *err) {
    size_t n = vtype_sizes[t];
    uint8_t *p = malloc(n);
    if (p) {
        if (n == 1) p[0] = (uint8_t)bits;
        else if (n == 2) st16(p, (uint16_t)bits);
        else if (n == 4) st32(p, (uint32_t)bits);
        else st64(p, bits);
    }
    return add_kv(w, key, t, p, n, err);
}

moe_status gguf_writer_set_u8(gguf_writer *w, const char *key, uint8_t v, moe_error *err) {
    return set_scalar(w, key, GGUF_VT_U8, v, err);
}
moe_status gguf_writer_set_i8(gguf_writer *w, const char *key, int8_t v, moe_error *err) {
    return set_scalar(w, key, GGUF_VT_I8, (uint8_t)v, err);
}
moe_status gguf_writer_set_u16(gguf_writer *w, const char *key, uint16_t v, moe_error *err) {
    return set_scalar(w, key, GGUF_VT_U16, v, err);
}
moe_status gguf_writer_set_i16(gguf_writer *w, const char *key, int16_t v, moe_error *err) {
    return set_scalar(w, key, GGUF_VT_I16, (uint16_t)v, err);
}
moe_status gguf_writer_set_u32(gguf_writer *w, const char *key, uint32_t v, moe_error *err) {
    return set_scalar(w, key, GGUF_VT_U32, v, err);
}
moe_status gguf_writer_set_i32(gguf_writer *w, const char *key, int32_t v, moe_error *err) {
    return set_scalar(w, key, GGUF_VT_I32, (uint32_t)v, err);
}
moe_status gguf_writer_set_f32(gguf_writer *w, const char *key, float v, moe_error *err) {
    uint32_t b;
    memcpy(&b, &v, 4);
    return set_scalar(w, key, GGUF_VT_F32, b, err);
}
moe_status gguf_writer_set_bool(gguf_writer *w, const char *key, int v, moe_error *err) {
    return set_scalar(w, key, GGUF_VT_BOOL, v ? 1 : 0, err);
}
moe_status gguf_writer_set_u64(gguf_writer *w, const char *key, uint64_t v, moe_error *err) {
    return set_scalar(w, key, GGUF_VT_U64, v, err);
}
moe_status gguf_writer_set_i64(gguf_writer *w, const char *key, int64_t v, moe_error *err) {
    return set_scalar(w, key, GGUF_VT_I64, (uint64_t)v, err);
}
moe_status gguf_writer_set_f64(gguf_writer *w, const char *key, double v, moe_error *err) {
    uint64_t b;
    memcpy(&b, &v, 8);
    return set_scalar(w, key, GGUF_VT_F64, b, err);
}

moe_status gguf_writer_set_strn(gguf_writer *w, const char *key, const char *s, size_t n,
                                moe_error *err) {
    if (!s && n) return moe_err(err, MOE_ERR_ARG, "gguf writer: key '%s': string is NULL",
                                key ? key : "(null)");
    uint8_t *p = malloc(8 + n);
    if (p) {
        st64(p, n);
        if (n) memcpy(p + 8, s, n);
    }
    return add_kv(w, key, GGUF_VT_STR, p, 8 + n, err);
}
moe_status gguf_writer_set_str(gguf_writer *w, const char *key, const char *s, moe_error *err) {
    if (!s) return moe_err(err, MOE_ERR_ARG, "gguf writer: key '%s': string is NULL",
                           key ? key : "(null)");
    return gguf_writer_set_strn(w, key, s, strlen(s), err);
}

moe_status gguf_writer_set_arr(gguf_writer *w, const char *key, gguf_vtype elem,
                               const void *data, uint64_t n, moe_error *err) {
    const char *k = key ? key : "(null)";
    if ((uint32_t)elem >= GGUF_VT_COUNT || elem == GGUF_VT_STR || elem == GGUF_VT_ARR)
        return moe_err(err, MOE_ERR_ARG, "gguf writer: key '%s': array element type %s is not "
                       "a fixed-size type (use gguf_writer_set_arr_str for strings)", k,
                       gguf_vtype_name(elem));
    if (!data && n) return moe_err(err, MOE_ERR_ARG, "gguf writer: key '%s': data is NULL", k);
    size_t es = vtype_sizes[elem];
    if (n > (SIZE_MAX - 12) / es)
        return moe_err(err, MOE_ERR_ARG, "gguf writer: key '%s': array of %llu is too large", k,
                       (unsigned long long)n);
    const uint8_t *src = data;
    if (elem == GGUF_VT_BOOL)
        for (uint64_t i = 0; i < n; i++)
            if (src[i] > 1)
                return moe_err(err, MOE_ERR_ARG, "gguf writer: key '%s': bool element %llu is "
                               "%u, expected 0 or 1", k, (unsigned long long)i, src[i]);
    size_t bytes = 12 + (size_t)n * es;
    uint8_t *p = malloc(bytes);
    if (p) {
        st32(p, elem);
        st64(p + 4, n);
        uint8_t *d = p + 12;
        for (uint64_t i = 0; i < n; i++) {
            if (es == 1) d[i] = src[i];
            else if (es == 2) { uint16_t v; memcpy(&v, src + 2 * i, 2); st16(d + 2 * i, v); }
            else if (es == 4) { uint32_t v; memcpy(&v, src + 4 * i, 4); st32(d + 4 * i, v); }
            else { uint64_t v; memcpy(&v, src + 8 * i, 8); st64(d + 8 * i, v); }
        }
    }
    return add_kv(w, key, GGUF_VT_ARR, p, bytes, err);
}

moe_status gguf_writer_set_arr_str(gguf_writer *w, const char *key, const char *const *strs,
                                   uint64_t n, moe_error *err) {
    const char *k = key ? key : "(null)";
    if (!strs && n) return moe_err(err, MOE_ERR_ARG, "gguf writer: key '%s': strs is NULL", k);
    uint64_t bytes = 12;
    for (uint64_t i = 0; i < n; i++) {
        if (!strs[i])
            return moe_err(err, MOE_ERR_ARG, "gguf writer: key '%s': string %llu is NULL", k,
                           (unsigned long long)i);
        if (add_u64(bytes, 8 + (uint64_t)strlen(strs[i]), &bytes) || bytes > SIZE_MAX)
            return moe_err(err, MOE_ERR_ARG, "gguf writer: key '%s': array too large", k);
    }
    uint8_t *p = malloc((size_t)bytes);
    if (p) {
        st32(p, GGUF_VT_STR);
        st64(p + 4, n);
        uint8_t *d = p + 12;
        for (uint64_t i = 0; i < n; i++) {
            size_t len = strlen(strs[i]);
            st64(d, len);
            memcpy(d + 8, strs[i], len);
            d += 8 + len;
        }
    }
    return add_kv(w, key, GGUF_VT_ARR, p, (size_t)bytes, err);
}

moe_status gguf_writer_add_tensor(gguf_writer *w, const char *name, uint32_t type,
                                  uint32_t n_dims, const int64_t *ne, const void *data,
                                  size_t nbytes, moe_error *err) {
    if (!name) return moe_err(err, MOE_ERR_ARG, "gguf writer: tensor name is NULL");
    if (!ne) return moe_err(err, MOE_ERR_ARG, "gguf writer: tensor '%s': ne is NULL", name);
    moe_error e;
    size_t want;
    if (gguf_tensor_nbytes(type, n_dims, ne, &want, &e) != MOE_OK)
        return moe_err(err, MOE_ERR_ARG, "gguf writer: tensor '%s': %s", name, e.msg);
    if (nbytes != want)
        return moe_err(err, MOE_ERR_ARG, "gguf writer: tensor '%s': nbytes = %zu, but a %s "
                       "tensor of this shape takes %zu bytes", name, nbytes,
                       gguf_type_name(type), want);
    if (!data) return moe_err(err, MOE_ERR_ARG, "gguf writer: tensor '%s': data is NULL", name);
    size_t nn = strlen(name);
    for (size_t i = 0; i < w->n_t; i++)
        if (w->t[i].name_n == nn && memcmp(w->t[i].name, name, nn) == 0)
            return moe_err(err, MOE_ERR_ARG, "gguf writer: duplicate tensor '%s'", name);
    if (grow((void **)&w->t, &w->cap_t, w->n_t, SIZE_MAX / sizeof *w->t, sizeof *w->t))
        return moe_err(err, MOE_ERR_NOMEM, "gguf writer: out of memory");
    wtensor *t = &w->t[w->n_t];
    if (!(t->name = dup_str(name, nn)))
        return moe_err(err, MOE_ERR_NOMEM, "gguf writer: out of memory");
    t->name_n = nn;
    t->type = type;
    t->n_dims = n_dims;
    for (int d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = d < (int)n_dims ? ne[d] : 1;
    t->data = data;
    t->nbytes = nbytes;
    w->n_t++;
    return MOE_OK;
}

/* Bytes up to the data section (unpadded) and of the data section; 1 on
 * overflow. */
static int writer_layout(const gguf_writer *w, uint64_t *head, uint64_t *data) {
    uint64_t h = 24, d = 0;
    for (size_t i = 0; i < w->n_kv; i++)
        if (add_u64(h, 12 + (uint64_t)w->kv[i].key_n + w->kv[i].payload_n, &h)) return 1;
    for (size_t i = 0; i < w->n_t; i++) {
        if (add_u64(h, 8 + (uint64_t)w->t[i].name_n + 4 + 8ull * w->t[i].n_dims + 4 + 8, &h))
            return 1;
        if (add_u64(d, w->t[i].nbytes, &d) || align_up(d, w->alignment, &d)) return 1;
    }
    *head = h;
    *data = d;
    return 0;
}

size_t gguf_writer_size(const gguf_writer *w) {
    uint64_t h, d, total;
    if (writer_layout(w, &h, &d) || align_up(h, w->alignment, &h) || add_u64(h, d, &total)
        || total > SIZE_MAX)
        return SIZE_MAX;
    return (size_t)total;
}

/* Where the bytes go: an atomic file or a memory buffer of known size. */
typedef struct sink {
    atomic_file *af;
    uint8_t *mem;
    size_t pos;
    moe_error *err;
    moe_status st;
} sink;

static void put(sink *s, const void *p, size_t n) {
    if (s->st || n == 0) return;
    if (s->af) s->st = atomic_file_write(s->af, p, n, s->err);
    else memcpy(s->mem + s->pos, p, n);
    s->pos += n;
}
static void put32(sink *s, uint32_t v) { uint8_t b[4]; st32(b, v); put(s, b, 4); }
static void put64(sink *s, uint64_t v) { uint8_t b[8]; st64(b, v); put(s, b, 8); }
static void pad(sink *s, uint32_t alignment) {
    static const uint8_t zeros[4096];
    size_t n = (alignment - s->pos % alignment) % alignment;
    while (n > 0 && !s->st) {
        size_t k = n < sizeof zeros ? n : sizeof zeros;
        put(s, zeros, k);
        n -= k;
    }
}

static void emit(const gguf_writer *w, sink *s) {
    put(s, "GGUF", 4);
    put32(s, 3);
    put64(s, w->n_t);
    put64(s, w->n_kv);
    for (size_t i = 0; i < w->n_kv; i++) {
        put64(s, w->kv[i].key_n);
        put(s, w->kv[i].key, w->kv[i].key_n);
        put32(s, w->kv[i].type);
        put(s, w->kv[i].payload, w->kv[i].payload_n);
    }
    uint64_t off = 0;
    for (size_t i = 0; i < w->n_t; i++) {
        const wtensor *t = &w->t[i];
        put64(s, t->name_n);
        put(s, t->name, t->name_n);
        put32(s, t->n_dims);
        for (uint32_t d = 0; d < t->n_dims; d++) put64(s, (uint64_t)t->ne[d]);
        put32(s, t->type);
        put64(s, off);
        off = (off + t->nbytes + w->alignment - 1) & ~(uint64_t)(w->alignment - 1);
    }
    pad(s, w->alignment);
    for (size_t i = 0; i < w->n_t; i++) {
        put(s, w->t[i].data, w->t[i].nbytes);
        pad(s, w->alignment);
    }
}

moe_status gguf_writer_write_mem(const gguf_writer *w, void **buf, size_t *size, moe_error *err) {
    *buf = NULL;
    *size = 0;
    size_t total = gguf_writer_size(w);
    if (total == SIZE_MAX) return moe_err(err, MOE_ERR_ARG, "gguf writer: file size overflows");
    sink s = {.mem = malloc(total), .err = err};
    if (!s.mem) return moe_err(err, MOE_ERR_NOMEM, "gguf writer: out of memory for %zu bytes",
                               total);
    emit(w, &s);
    MOE_ASSERT(s.pos == total);
    *buf = s.mem;
    *size = total;
    return MOE_OK;
}

moe_status gguf_writer_write(const gguf_writer *w, const char *path, moe_error *err) {
    if (gguf_writer_size(w) == SIZE_MAX)
        return moe_err(err, MOE_ERR_ARG, "%s: gguf file size overflows", path ? path : "(null)");
    atomic_file f;
    moe_status st = atomic_file_open(&f, path, err);
    if (st) return st;
    sink s = {.af = &f, .err = err};
    emit(w, &s);
    if (s.st) return s.st; /* the atomic file aborted itself */
    return atomic_file_commit(&f, err);
}
