/* gguf_write.c: GGUF writing: collect metadata and tensors, then write a
 * version 3 file in one pass, to memory or atomically to a file (gguf.h).
 *
 * Values are encoded when they are set (little-endian, as they will appear
 * in the file), so writing only lays out the header, the tensor infos, and
 * the data, each tensor padded to the alignment ("general.alignment" when
 * set, else GGUF_DEFAULT_ALIGNMENT).
 * Not for: reading or validating files (gguf.c); tensor data conversion or
 * model semantics (the writers of models build on this). */
#include "io/gguf.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/atomic_file.h"
#include "core/error.h"
#include "io/gguf_internal.h"

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
    size_t n = gguf_vtype_size(t);
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
    size_t es = gguf_vtype_size(elem);
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
