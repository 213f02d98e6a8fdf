/* gguf.c: GGUF reading: validate everything, then copy the metadata; type
 * names and sizes; look-ups. See gguf.h for the format.
 *
 * Reading happens in two steps. The parse step walks the file with a bounds-
 * checked cursor, records strings and arrays as pointers into the file and
 * checks every count, type, shape and offset; it allocates only in proportion
 * to bytes it has already walked. The own step then copies keys, names,
 * strings and arrays into one arena (NUL-terminated, aligned, native-endian)
 * and sorts indexes for look-ups, which also finds duplicates.
 * Not for: writing (gguf_write.c), model semantics (see the loaders) or
 * tensor data conversion. */
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

#include "core/error.h"
#include "io/gguf_internal.h"

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
