/* safetensors.c: safetensors files and sharded model folders (see
 * safetensors.h for the format and the checks).
 *
 * Each file is mapped, its JSON header parsed (io/json.h) and validated;
 * the tensors of all files are gathered into one array sorted by name.
 * Not for: interpreting the tensors (infer/convert.c).
 */
#include "io/safetensors.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "io/json.h"
#include "quant/quant.h"

#define ST_MAX_HEADER ((uint64_t)100 << 20) /* the format's own limit: 100 MB */

typedef struct st_file {
    char *path;
    const uint8_t *map;
    size_t size;
} st_file;

struct st_model {
    st_file *files;
    size_t n_files;
    st_tensor *t;   /* sorted by name */
    size_t n_t, cap_t;
};

static const char *const dtype_names[ST_DTYPE_COUNT] = {
    "F32", "F16", "BF16", "F64", "I64", "I32", "I16", "I8", "U8", "U16", "U32", "U64", "BOOL",
    "F8_E4M3", "F8_E5M2"};
static const size_t dtype_sizes[ST_DTYPE_COUNT] = {4, 2, 2, 8, 8, 4, 2, 1, 1, 2, 4, 8, 1, 1, 1};

const char *st_dtype_name(st_dtype t) {
    return (unsigned)t < ST_DTYPE_COUNT ? dtype_names[t] : "unknown";
}

void st_close(st_model *m) {
    if (!m) return;
    for (size_t i = 0; i < m->n_files; i++) {
        if (m->files[i].map) munmap((void *)m->files[i].map, m->files[i].size);
        free(m->files[i].path);
    }
    for (size_t i = 0; i < m->n_t; i++) free((char *)m->t[i].name);
    free(m->files);
    free(m->t);
    free(m);
}

size_t st_count(const st_model *m) { return m ? m->n_t : 0; }
const st_tensor *st_at(const st_model *m, size_t i) { return m && i < m->n_t ? &m->t[i] : NULL; }

static int cmp_tensor(const void *a, const void *b) {
    return strcmp(((const st_tensor *)a)->name, ((const st_tensor *)b)->name);
}

const st_tensor *st_find(const st_model *m, const char *name) {
    if (!m || !name) return NULL;
    size_t lo = 0, hi = m->n_t;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(m->t[mid].name, name);
        if (c == 0) return &m->t[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

/* ---------------------------------------------------------------- files */

static moe_status map_file(st_file *f, const char *path, moe_error *err) {
    memset(f, 0, sizeof *f);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return moe_err(err, MOE_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return moe_err(err, MOE_ERR_IO, "%s: not a readable regular file", path);
    }
    if (sb.st_size < 8) {
        close(fd);
        return moe_err(err, MOE_ERR_FORMAT, "%s: %lld bytes, too short for the 8-byte header "
                       "length of a safetensors file", path, (long long)sb.st_size);
    }
    if ((uint64_t)sb.st_size > (uint64_t)SIZE_MAX) {
        close(fd);
        return moe_err(err, MOE_ERR_UNSUPPORTED, "%s: too large to map", path);
    }
    size_t size = (size_t)sb.st_size;
    void *p = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (p == MAP_FAILED)
        return moe_err(err, MOE_ERR_IO, "%s: mmap of %zu bytes failed: %s", path, size, strerror(e));
    f->path = strdup(path);
    if (!f->path) {
        munmap(p, size);
        return moe_err(err, MOE_ERR_NOMEM, "%s: out of memory", path);
    }
    f->map = p;
    f->size = size;
    return MOE_OK;
}

static moe_status add_tensor(st_model *m, const st_tensor *t, moe_error *err) {
    if (m->n_t == m->cap_t) {
        size_t cap = m->cap_t ? 2 * m->cap_t : 256;
        st_tensor *nt = realloc(m->t, cap * sizeof *nt);
        if (!nt) return moe_err(err, MOE_ERR_NOMEM, "safetensors: out of memory");
        m->t = nt;
        m->cap_t = cap;
    }
    m->t[m->n_t] = *t;
    m->t[m->n_t].name = strdup(t->name);
    if (!m->t[m->n_t].name) return moe_err(err, MOE_ERR_NOMEM, "safetensors: out of memory");
    m->n_t++;
    return MOE_OK;
}

typedef struct span { uint64_t b, e; size_t idx; } span;
static int cmp_span(const void *a, const void *b) {
    const span *x = a, *y = b;
    if (x->b != y->b) return x->b < y->b ? -1 : 1;
    return x->e < y->e ? -1 : x->e > y->e;
}

/* One tensor entry of a header. */
static moe_status parse_entry(const st_file *f, const json_member *mb, uint64_t data_len,
                              const uint8_t *data, st_tensor *t, uint64_t *b, uint64_t *e,
                              moe_error *err) {
    const char *path = f->path, *name = mb->key;
    const json_value *v = &mb->val;
    memset(t, 0, sizeof *t);
    t->name = name;
    t->file = f->path;
    if (v->type != JSON_OBJECT)
        return moe_err(err, MOE_ERR_FORMAT, "%s: tensor '%s': header entry is a %s, expected an "
                       "object", path, name, json_type_name(v->type));
    const char *dt;
    if (!json_get_str(v, "dtype", &dt))
        return moe_err(err, MOE_ERR_FORMAT, "%s: tensor '%s': no string \"dtype\"", path, name);
    int k = -1;
    for (int i = 0; i < ST_DTYPE_COUNT; i++)
        if (!strcmp(dt, dtype_names[i])) k = i;
    if (k < 0)
        return moe_err(err, MOE_ERR_UNSUPPORTED, "%s: tensor '%s': unknown dtype \"%s\"", path,
                       name, dt);
    t->dtype = (st_dtype)k;
    const json_value *sh = json_get(v, "shape");
    if (!sh || sh->type != JSON_ARRAY)
        return moe_err(err, MOE_ERR_FORMAT, "%s: tensor '%s': no array \"shape\"", path, name);
    if (sh->u.arr.n > ST_MAX_DIMS)
        return moe_err(err, MOE_ERR_UNSUPPORTED, "%s: tensor '%s': %zu dimensions (at most %d)",
                       path, name, sh->u.arr.n, ST_MAX_DIMS);
    t->n_dims = (int)sh->u.arr.n;
    uint64_t nel = 1;
    for (int i = 0; i < t->n_dims; i++) {
        int64_t d;
        if (!json_as_int(&sh->u.arr.v[i], &d) || d < 0)
            return moe_err(err, MOE_ERR_FORMAT, "%s: tensor '%s': shape[%d] is not an integer "
                           ">= 0", path, name, i);
        t->shape[i] = d;
        if (d && nel > (uint64_t)INT64_MAX / (uint64_t)d)
            return moe_err(err, MOE_ERR_FORMAT, "%s: tensor '%s': element count overflows", path,
                           name);
        nel *= (uint64_t)d;
    }
    t->n_elem = (int64_t)nel;
    const json_value *off = json_get(v, "data_offsets");
    int64_t ob, oe;
    if (!off || off->type != JSON_ARRAY || off->u.arr.n != 2 ||
        !json_as_int(&off->u.arr.v[0], &ob) || !json_as_int(&off->u.arr.v[1], &oe) || ob < 0 ||
        oe < ob)
        return moe_err(err, MOE_ERR_FORMAT, "%s: tensor '%s': \"data_offsets\" must be [begin, "
                       "end] with 0 <= begin <= end", path, name);
    uint64_t want;
    if (nel > UINT64_MAX / dtype_sizes[k] ||
        (want = nel * dtype_sizes[k]) != (uint64_t)(oe - ob))
        return moe_err(err, MOE_ERR_FORMAT, "%s: tensor '%s': data_offsets [%lld, %lld] span "
                       "%lld bytes, but %llu elements of %s take %llu", path, name,
                       (long long)ob, (long long)oe, (long long)(oe - ob),
                       (unsigned long long)nel, dt, (unsigned long long)(nel * dtype_sizes[k]));
    if ((uint64_t)oe > data_len)
        return moe_err(err, MOE_ERR_FORMAT, "%s: tensor '%s': data_offsets end %lld is past the "
                       "end of the data section (%llu bytes; the file is truncated or the "
                       "header lies)", path, name, (long long)oe, (unsigned long long)data_len);
    t->data = data + ob;
    t->nbytes = (size_t)want;
    *b = (uint64_t)ob;
    *e = (uint64_t)oe;
    return MOE_OK;
}

/* Parses the header of the mapped file f and adds its tensors to m. */
static moe_status load_file(st_model *m, const st_file *f, moe_error *err) {
    const char *path = f->path;
    uint64_t hn = 0;
    for (int i = 0; i < 8; i++) hn |= (uint64_t)f->map[i] << (8 * i);
    if (hn > f->size - 8)
        return moe_err(err, MOE_ERR_FORMAT, "%s: header length %llu is past the end of the file "
                       "(%zu bytes; truncated, or not a safetensors file)", path,
                       (unsigned long long)hn, f->size);
    if (hn > ST_MAX_HEADER)
        return moe_err(err, MOE_ERR_FORMAT, "%s: header length %llu is over the 100 MB limit",
                       path, (unsigned long long)hn);
    json_doc *doc = NULL;
    char nm[1100];
    snprintf(nm, sizeof nm, "%s (header)", path);
    moe_status st = json_parse(&doc, (const char *)f->map + 8, (size_t)hn, nm, NULL, err);
    if (st) return st;
    const json_value *root = json_root(doc);
    const uint8_t *data = f->map + 8 + hn;
    const uint64_t data_len = f->size - 8 - hn;
    span *sp = NULL;
    size_t n_sp = 0;
    if (root->type != JSON_OBJECT) {
        st = moe_err(err, MOE_ERR_FORMAT, "%s: the header is a JSON %s, expected an object", path,
                     json_type_name(root->type));
        goto done;
    }
    sp = malloc((root->u.obj.n + 1) * sizeof *sp);
    if (!sp) { st = moe_err(err, MOE_ERR_NOMEM, "%s: out of memory", path); goto done; }
    for (size_t i = 0; i < root->u.obj.n; i++) {
        const json_member *mb = &root->u.obj.m[i];
        if (!strcmp(mb->key, "__metadata__")) {
            if (mb->val.type != JSON_OBJECT) {
                st = moe_err(err, MOE_ERR_FORMAT, "%s: \"__metadata__\" is a %s, expected an "
                             "object", path, json_type_name(mb->val.type));
                goto done;
            }
            continue;
        }
        if (strlen(mb->key) != mb->key_n) {
            st = moe_err(err, MOE_ERR_FORMAT, "%s: a tensor name contains a NUL character", path);
            goto done;
        }
        st_tensor t;
        uint64_t b = 0, e = 0;
        if ((st = parse_entry(f, mb, data_len, data, &t, &b, &e, err))) goto done;
        if ((st = add_tensor(m, &t, err))) goto done;
        sp[n_sp].b = b;
        sp[n_sp].e = e;
        sp[n_sp].idx = m->n_t - 1;
        n_sp++;
    }
    /* Sorted by begin, a non-empty range overlaps an earlier one iff it begins
     * before the furthest end so far; empty tensors hold no bytes and are
     * skipped (not compared with their neighbours only: an empty tensor
     * sorted between two overlapping ones must not hide them). */
    qsort(sp, n_sp, sizeof *sp, cmp_span);
    size_t far = SIZE_MAX; /* the non-empty range with the furthest end so far */
    for (size_t i = 0; i < n_sp; i++) {
        if (sp[i].b == sp[i].e) continue;
        if (far != SIZE_MAX && sp[i].b < sp[far].e) {
            st = moe_err(err, MOE_ERR_FORMAT, "%s: tensors '%s' [%llu, %llu) and '%s' [%llu, %llu) "
                         "overlap (the header lies about data_offsets)", path,
                         m->t[sp[far].idx].name, (unsigned long long)sp[far].b,
                         (unsigned long long)sp[far].e, m->t[sp[i].idx].name,
                         (unsigned long long)sp[i].b, (unsigned long long)sp[i].e);
            goto done;
        }
        if (far == SIZE_MAX || sp[i].e > sp[far].e) far = i;
    }
done:
    free(sp);
    json_free(doc);
    return st;
}

static moe_status add_file(st_model *m, const char *path, moe_error *err) {
    st_file *nf = realloc(m->files, (m->n_files + 1) * sizeof *nf);
    if (!nf) return moe_err(err, MOE_ERR_NOMEM, "%s: out of memory", path);
    m->files = nf;
    moe_status st = map_file(&m->files[m->n_files], path, err);
    if (st) return st;
    m->n_files++;
    return load_file(m, &m->files[m->n_files - 1], err);
}

/* Sorts and rejects a name present twice (in two shards). */
static moe_status finish(st_model *m, moe_error *err) {
    if (m->n_t > 1) /* a header without tensors leaves m->t NULL: qsort(NULL, 0) is undefined */
        qsort(m->t, m->n_t, sizeof *m->t, cmp_tensor);
    for (size_t i = 1; i < m->n_t; i++)
        if (!strcmp(m->t[i].name, m->t[i - 1].name))
            return moe_err(err, MOE_ERR_FORMAT, "tensor '%s' is in %s and in %s", m->t[i].name,
                           m->t[i - 1].file, m->t[i].file);
    return MOE_OK;
}

moe_status st_open_file(st_model **out, const char *path, moe_error *err) {
    *out = NULL;
    st_model *m = calloc(1, sizeof *m);
    if (!m) return moe_err(err, MOE_ERR_NOMEM, "%s: out of memory", path);
    moe_status st = add_file(m, path, err);
    if (!st) st = finish(m, err);
    if (st) { st_close(m); return st; }
    *out = m;
    return MOE_OK;
}

static int file_exists(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* model.safetensors.index.json: its shards, each opened once. */
static moe_status open_index(st_model *m, const char *dir, const char *index, moe_error *err) {
    json_doc *doc = NULL;
    moe_status st = json_parse_file(&doc, index, NULL, err);
    if (st) return st;
    const json_value *wm = json_get(json_root(doc), "weight_map");
    if (!wm || wm->type != JSON_OBJECT || wm->u.obj.n == 0) {
        json_free(doc);
        return moe_err(err, MOE_ERR_FORMAT, "%s: no object \"weight_map\" (tensor -> file)", index);
    }
    char path[4096];
    for (size_t i = 0; i < wm->u.obj.n && !st; i++) {
        const json_member *mb = &wm->u.obj.m[i];
        if (mb->val.type != JSON_STRING || strchr(mb->val.u.str.s, '/') ||
            !strcmp(mb->val.u.str.s, "..") || mb->val.u.str.n == 0) {
            st = moe_err(err, MOE_ERR_FORMAT, "%s: weight_map[\"%s\"] must be a file name in the "
                         "folder", index, mb->key);
            break;
        }
        snprintf(path, sizeof path, "%s/%s", dir, mb->val.u.str.s);
        int seen = 0;
        for (size_t k = 0; k < m->n_files; k++) seen |= !strcmp(m->files[k].path, path);
        if (seen) continue;
        if (!file_exists(path)) {
            st = moe_err(err, MOE_ERR_IO, "%s: shard %s (of tensor '%s') is missing", index, path,
                         mb->key);
            break;
        }
        st = add_file(m, path, err);
    }
    if (!st) st = finish(m, err);
    for (size_t i = 0; i < wm->u.obj.n && !st; i++) {
        const json_member *mb = &wm->u.obj.m[i];
        const st_tensor *t = st_find(m, mb->key);
        snprintf(path, sizeof path, "%s/%s", dir, mb->val.u.str.s);
        if (!t)
            st = moe_err(err, MOE_ERR_FORMAT, "%s: tensor '%s' is listed in shard %s, which does "
                         "not hold it", index, mb->key, path);
        else if (strcmp(t->file, path))
            st = moe_err(err, MOE_ERR_FORMAT, "%s: tensor '%s' is listed in shard %s but is in %s",
                         index, mb->key, path, t->file);
    }
    json_free(doc);
    return st;
}

moe_status st_open_dir(st_model **out, const char *dir, moe_error *err) {
    *out = NULL;
    char path[4096];
    st_model *m = calloc(1, sizeof *m);
    if (!m) return moe_err(err, MOE_ERR_NOMEM, "%s: out of memory", dir);
    moe_status st;
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    if (file_exists(path)) {
        st = open_index(m, dir, path, err);
    } else {
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        if (!file_exists(path)) { /* the only *.safetensors file */
            DIR *dd = opendir(dir);
            int n = 0;
            if (!dd) {
                st_close(m);
                return moe_err(err, MOE_ERR_IO, "%s: cannot open the folder: %s", dir,
                               strerror(errno));
            }
            struct dirent *de;
            while ((de = readdir(dd))) {
                size_t l = strlen(de->d_name);
                if (l > 12 && !strcmp(de->d_name + l - 12, ".safetensors")) {
                    if (n++ == 0) snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
                }
            }
            closedir(dd);
            if (n != 1) {
                st_close(m);
                return moe_err(err, MOE_ERR_IO, "%s: no model.safetensors.index.json or "
                               "model.safetensors, and %d other .safetensors files (expected "
                               "exactly one)", dir, n);
            }
        }
        st = add_file(m, path, err);
        if (!st) st = finish(m, err);
    }
    if (st) { st_close(m); return st; }
    *out = m;
    return MOE_OK;
}

/* ----------------------------------------------------------------- rows */

moe_status st_read_f32(const st_tensor *t, int64_t first, int64_t n, float *dst, moe_error *err) {
    if (first < 0 || n < 0 || first > t->n_elem || n > t->n_elem - first)
        return moe_err(err, MOE_ERR_ARG, "%s: tensor '%s': elements [%lld, %lld) out of its %lld",
                       t->file, t->name, (long long)first, (long long)(first + n),
                       (long long)t->n_elem);
    const uint8_t *p = t->data;
    switch (t->dtype) {
    case ST_F32:
        p += (size_t)first * 4;
        for (int64_t i = 0; i < n; i++) dst[i] = quant_bits_to_f32(quant_rd32(p + 4 * i));
        return MOE_OK;
    case ST_F16:
        p += (size_t)first * 2;
        for (int64_t i = 0; i < n; i++) dst[i] = quant_fp16_to_fp32(quant_rd16(p + 2 * i));
        return MOE_OK;
    case ST_BF16:
        p += (size_t)first * 2;
        for (int64_t i = 0; i < n; i++) dst[i] = quant_bf16_to_fp32(quant_rd16(p + 2 * i));
        return MOE_OK;
    default:
        return moe_err(err, MOE_ERR_UNSUPPORTED, "%s: tensor '%s' has dtype %s (supported: F32, "
                       "F16, BF16)", t->file, t->name, st_dtype_name(t->dtype));
    }
}
