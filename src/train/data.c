/* data.c: source files to text, the token cache, split and batches (see
 * data.h for the rules and the cache layout).
 * Not for: tokenizing or generating text. Reads with POSIX calls; writes only
 * through core/atomic_file. */
#include "train/data.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/atomic_file.h"
#include "core/hash.h"
#include "core/error.h"

/* ------------------------------------------------------------ fingerprint */

static uint64_t load_le64(const uint8_t *p) {
    uint64_t w = 0;
    for (int i = 7; i >= 0; i--) w = (w << 8) | p[i];
    return w;
}
static void store_le64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static void store_le32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static uint32_t load_le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

uint64_t data_fingerprint(const uint8_t *p, size_t n) {
    moe_hash s;
    moe_hash_init(&s);
    moe_hash_update(&s, p, n);
    return moe_hash_final(&s);
}

/* ------------------------------------------------------------ text check */

int data_check_text(const uint8_t *p, size_t n, size_t *bad_off, int *is_nul) {
    size_t i = 0;
    *is_nul = 0;
    while (i < n) {
        /* fast path: 8 ASCII bytes without a NUL */
        if (i + 8 <= n) {
            uint64_t w = load_le64(p + i);
            if (!(w & 0x8080808080808080ull) &&
                !((w - 0x0101010101010101ull) & ~w & 0x8080808080808080ull)) { i += 8; continue; }
        }
        uint8_t c = p[i];
        if (c == 0) { *bad_off = i; *is_nul = 1; return 0; }
        if (c < 0x80) { i++; continue; }
        int len;
        uint8_t lo = 0x80, hi = 0xBF; /* range of the second byte */
        if (c >= 0xC2 && c <= 0xDF) len = 2;
        else if (c >= 0xE0 && c <= 0xEF) { len = 3; if (c == 0xE0) lo = 0xA0; if (c == 0xED) hi = 0x9F; }
        else if (c >= 0xF0 && c <= 0xF4) { len = 4; if (c == 0xF0) lo = 0x90; if (c == 0xF4) hi = 0x8F; }
        else { *bad_off = i; return 0; }
        if (i + (size_t)len > n) { *bad_off = i; return 0; }
        if (p[i + 1] < lo || p[i + 1] > hi) { *bad_off = i + 1; return 0; }
        for (int k = 2; k < len; k++)
            if (p[i + (size_t)k] < 0x80 || p[i + (size_t)k] > 0xBF) { *bad_off = i + (size_t)k; return 0; }
        i += (size_t)len;
    }
    return 1;
}

/* ------------------------------------------------------------ sources */

typedef struct fentry {
    char *path;    /* owned */
    uint64_t size; /* bytes, from stat */
} fentry;
typedef struct flist {
    fentry *f; /* [n] in reading order */
    size_t n, cap;
} flist;

static void flist_free(flist *l) {
    for (size_t i = 0; i < l->n; i++) free(l->f[i].path);
    free(l->f);
}
static moe_status flist_add(flist *l, const char *path, uint64_t size, moe_error *err) {
    if (l->n == l->cap) {
        size_t nc = l->cap ? 2 * l->cap : 64;
        fentry *f = realloc(l->f, nc * sizeof *f);
        if (!f) return moe_err(err, MOE_ERR_NOMEM, "out of memory listing data files");
        l->f = f;
        l->cap = nc;
    }
    size_t len = strlen(path);
    char *c = malloc(len + 1);
    if (!c) return moe_err(err, MOE_ERR_NOMEM, "out of memory listing data files");
    memcpy(c, path, len + 1);
    l->f[l->n++] = (fentry){c, size};
    return MOE_OK;
}
static int cmp_path(const void *a, const void *b) {
    return strcmp(((const fentry *)a)->path, ((const fentry *)b)->path);
}

/* Adds the non-empty regular files below dir (recursively, hidden names
 * skipped, symbolic links to folders not followed), unsorted. */
static moe_status walk(flist *l, const char *dir, moe_error *err) {
    DIR *d = opendir(dir);
    if (!d) return moe_err(err, MOE_ERR_IO, "cannot open data folder %s: %s", dir, strerror(errno));
    size_t dl = strlen(dir);
    while (dl > 0 && dir[dl - 1] == '/') dl--; /* "d/" -> "d/x", "/" -> "/x" */
    moe_status st = MOE_OK;
    struct dirent *e;
    while (st == MOE_OK && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue; /* ".", "..", hidden */
        size_t nl = strlen(e->d_name);
        char *child = malloc(dl + nl + 2);
        if (!child) { st = moe_err(err, MOE_ERR_NOMEM, "out of memory listing %s", dir); break; }
        memcpy(child, dir, dl);
        child[dl] = '/';
        memcpy(child + dl + 1, e->d_name, nl + 1);
        struct stat sb;
        if (lstat(child, &sb) != 0) {
            st = moe_err(err, MOE_ERR_IO, "cannot read data path %s: %s", child, strerror(errno));
        } else if (S_ISDIR(sb.st_mode)) {
            st = walk(l, child, err);
        } else {
            int link = S_ISLNK(sb.st_mode);
            if (link && stat(child, &sb) != 0) { free(child); continue; } /* dangling */
            if (S_ISREG(sb.st_mode) && sb.st_size > 0) st = flist_add(l, child, (uint64_t)sb.st_size, err);
        }
        free(child);
    }
    closedir(d);
    return st;
}

/* Lists one named path: a file (empty or not), or a folder's files sorted. */
static moe_status list_path(flist *l, const char *path, moe_error *err) {
    struct stat sb;
    if (stat(path, &sb) != 0) {
        if (errno == ENOENT) return moe_err(err, MOE_ERR_IO, "data path %s does not exist", path);
        return moe_err(err, MOE_ERR_IO, "cannot read data path %s: %s", path, strerror(errno));
    }
    if (S_ISREG(sb.st_mode)) return flist_add(l, path, (uint64_t)sb.st_size, err);
    if (!S_ISDIR(sb.st_mode))
        return moe_err(err, MOE_ERR_FORMAT, "data path %s is neither a regular file nor a folder", path);
    size_t first = l->n;
    moe_status st = walk(l, path, err);
    if (st) return st;
    if (l->n == first)
        return moe_err(err, MOE_ERR_FORMAT,
                       "data folder %s has no usable files (hidden and empty files are skipped)", path);
    qsort(l->f + first, l->n - first, sizeof *l->f, cmp_path);
    return MOE_OK;
}

/* Reads exactly n bytes (fewer only at end of file); returns bytes read, or
 * -1 with errno set. */
static ssize_t read_full(int fd, void *buf, size_t n) {
    size_t got = 0;
    while (got < n) {
        size_t want = n - got > ((size_t)1 << 30) ? (size_t)1 << 30 : n - got;
        ssize_t r = read(fd, (char *)buf + got, want);
        if (r < 0) { if (errno == EINTR) continue; return -1; }
        if (r == 0) break;
        got += (size_t)r;
    }
    return (ssize_t)got;
}

static moe_status read_one(uint8_t *dst, const char *path, uint64_t size, moe_error *err) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return moe_err(err, MOE_ERR_IO, "cannot read data file %s: %s", path, strerror(errno));
    ssize_t r = read_full(fd, dst, (size_t)size);
    int e = errno;
    close(fd);
    if (r < 0) return moe_err(err, MOE_ERR_IO, "cannot read data file %s: %s", path, strerror(e));
    if ((uint64_t)r != size)
        return moe_err(err, MOE_ERR_IO, "data file %s: read %zd of %llu bytes (did it change while reading?)",
                       path, r, (unsigned long long)size);
    size_t bad;
    int nul;
    if (!data_check_text(dst, (size_t)size, &bad, &nul)) {
        if (nul) return moe_err(err, MOE_ERR_FORMAT, "data file %s is binary: NUL byte at offset %zu", path, bad);
        return moe_err(err, MOE_ERR_FORMAT, "data file %s is not UTF-8 text: invalid byte 0x%02x at offset %zu",
                       path, dst[bad], bad);
    }
    return MOE_OK;
}

moe_status data_read_sources(uint8_t **text, size_t *n, const char *const *paths, int n_paths,
                             moe_error *err) {
    if (!text || !n) return moe_err(err, MOE_ERR_ARG, "data_read_sources: NULL output");
    *text = NULL;
    *n = 0;
    if (n_paths <= 0 || !paths) return moe_err(err, MOE_ERR_ARG, "no data files or folders given");
    flist l = {0};
    moe_status st = MOE_OK;
    for (int i = 0; i < n_paths && st == MOE_OK; i++) {
        if (!paths[i] || !paths[i][0]) st = moe_err(err, MOE_ERR_ARG, "data path %d is empty", i);
        else st = list_path(&l, paths[i], err);
    }
    uint64_t total = 0;
    for (size_t i = 0; st == MOE_OK && i < l.n; i++) {
        if (l.f[i].size == 0) st = moe_err(err, MOE_ERR_FORMAT, "data file %s is empty", l.f[i].path);
        total += l.f[i].size + (i ? 2 : 0);
    }
    if (st == MOE_OK && (total > DATA_MAX_BYTES || total >= (uint64_t)SIZE_MAX))
        st = moe_err(err, MOE_ERR_FORMAT,
                     "data sources total %llu bytes in %zu files, more than the limit of 4 GiB "
                     "(%llu bytes)", (unsigned long long)total, l.n, (unsigned long long)DATA_MAX_BYTES);
    uint8_t *buf = NULL;
    if (st == MOE_OK) {
        buf = malloc((size_t)total + 1);
        if (!buf) st = moe_err(err, MOE_ERR_NOMEM, "out of memory for %llu bytes of data", (unsigned long long)total);
    }
    size_t at = 0;
    for (size_t i = 0; st == MOE_OK && i < l.n; i++) {
        if (i) { buf[at++] = '\n'; buf[at++] = '\n'; }
        st = read_one(buf + at, l.f[i].path, l.f[i].size, err);
        at += (size_t)l.f[i].size;
    }
    flist_free(&l);
    if (st) { free(buf); return st; }
    buf[at] = 0;
    *text = buf;
    *n = at;
    return MOE_OK;
}

/* ------------------------------------------------------------ token cache */

static void cache_header(uint8_t h[DATA_CACHE_HEADER], uint32_t vocab, uint64_t n, uint64_t tok_fp,
                         uint64_t src_fp) {
    memcpy(h, DATA_CACHE_MAGIC, 8); /* with its NUL */
    store_le32(h + 8, DATA_CACHE_VERSION);
    store_le32(h + 12, vocab);
    store_le64(h + 16, n);
    store_le64(h + 24, tok_fp);
    store_le64(h + 32, src_fp);
}

moe_status data_cache_write(const char *path, const int32_t *tokens, size_t n, uint32_t vocab,
                            uint64_t tok_fp, uint64_t src_fp, moe_error *err) {
    if (!path || !*path) return moe_err(err, MOE_ERR_ARG, "token cache: no path");
    if (!tokens && n) return moe_err(err, MOE_ERR_ARG, "token cache %s: NULL tokens", path);
    if (vocab == 0) return moe_err(err, MOE_ERR_ARG, "token cache %s: vocabulary size 0", path);
    for (size_t i = 0; i < n; i++)
        if (tokens[i] < 0 || (uint32_t)tokens[i] >= vocab)
            return moe_err(err, MOE_ERR_ARG, "token cache %s: token %zu = %d is outside the vocabulary [0, %u)",
                           path, i, tokens[i], vocab);
    uint8_t hdr[DATA_CACHE_HEADER];
    cache_header(hdr, vocab, (uint64_t)n, tok_fp, src_fp);
    moe_hash fs;
    moe_hash_init(&fs);
    moe_hash_update(&fs, hdr, sizeof hdr);
    atomic_file f;
    moe_status st = atomic_file_open(&f, path, err);
    if (st) return st;
    if ((st = atomic_file_write(&f, hdr, sizeof hdr, err))) return st;
    uint8_t buf[4 * 4096];
    for (size_t i = 0; i < n;) {
        size_t m = n - i < 4096 ? n - i : 4096;
        for (size_t j = 0; j < m; j++) store_le32(buf + 4 * j, (uint32_t)tokens[i + j]);
        moe_hash_update(&fs, buf, 4 * m);
        if ((st = atomic_file_write(&f, buf, 4 * m, err))) return st;
        i += m;
    }
    uint8_t sum[8];
    store_le64(sum, moe_hash_final(&fs));
    if ((st = atomic_file_write(&f, sum, 8, err))) return st;
    return atomic_file_commit(&f, err);
}

moe_status data_cache_read(const char *path, int32_t **tokens, size_t *n, uint32_t vocab,
                           uint64_t tok_fp, uint64_t src_fp, moe_error *err) {
    if (!tokens || !n) return moe_err(err, MOE_ERR_ARG, "token cache: NULL output");
    *tokens = NULL;
    *n = 0;
    if (!path || !*path) return moe_err(err, MOE_ERR_ARG, "token cache: no path");
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        if (errno == ENOENT) return moe_err(err, MOE_ERR_IO, "token cache %s does not exist (ENOENT)", path);
        return moe_err(err, MOE_ERR_IO, "cannot read token cache %s: %s", path, strerror(errno));
    }
    moe_status st = MOE_OK;
    int32_t *tok = NULL;
    struct stat sb;
    uint8_t hdr[DATA_CACHE_HEADER], sum[8];
    uint64_t cnt = 0;
    if (fstat(fd, &sb) != 0) {
        st = moe_err(err, MOE_ERR_IO, "cannot read token cache %s: %s", path, strerror(errno));
        goto done;
    }
    if (!S_ISREG(sb.st_mode)) { st = moe_err(err, MOE_ERR_FORMAT, "token cache %s is not a regular file", path); goto done; }
    uint64_t len = (uint64_t)sb.st_size;
    if (len < DATA_CACHE_HEADER + 8) {
        st = moe_err(err, MOE_ERR_FORMAT, "token cache %s is %llu bytes, shorter than its %d-byte header and "
                     "checksum", path, (unsigned long long)len, DATA_CACHE_HEADER + 8);
        goto done;
    }
    if (read_full(fd, hdr, sizeof hdr) != (ssize_t)sizeof hdr) {
        st = moe_err(err, MOE_ERR_IO, "cannot read the header of token cache %s", path);
        goto done;
    }
    if (memcmp(hdr, DATA_CACHE_MAGIC, 8) != 0) {
        st = moe_err(err, MOE_ERR_FORMAT, "%s is not a token cache (magic is not \"%s\")", path, DATA_CACHE_MAGIC);
        goto done;
    }
    uint32_t ver = load_le32(hdr + 8);
    if (ver != DATA_CACHE_VERSION) {
        st = moe_err(err, MOE_ERR_FORMAT, "token cache %s has version %u, expected %u", path, ver, DATA_CACHE_VERSION);
        goto done;
    }
    cnt = load_le64(hdr + 16);
    if (cnt != (len - DATA_CACHE_HEADER - 8) / 4 || (len - DATA_CACHE_HEADER - 8) % 4 != 0 ||
        cnt > SIZE_MAX / 4 - 1) {
        st = moe_err(err, MOE_ERR_FORMAT, "token cache %s: header says %llu tokens, which needs %s bytes, but "
                     "the file has %llu bytes", path, (unsigned long long)cnt,
                     cnt <= (UINT64_MAX - 48) / 4 ? "48 + 4 * n_tokens" : "more than 2^64",
                     (unsigned long long)len);
        goto done;
    }
    tok = malloc(cnt ? (size_t)cnt * 4 : 4);
    if (!tok) { st = moe_err(err, MOE_ERR_NOMEM, "out of memory for %llu cached tokens", (unsigned long long)cnt); goto done; }
    if (read_full(fd, tok, (size_t)cnt * 4) != (ssize_t)(cnt * 4) || read_full(fd, sum, 8) != 8) {
        st = moe_err(err, MOE_ERR_IO, "token cache %s: short read (did it change while reading?)", path);
        goto done;
    }
    moe_hash fs;
    moe_hash_init(&fs);
    moe_hash_update(&fs, hdr, sizeof hdr);
    moe_hash_update(&fs, (const uint8_t *)tok, (size_t)cnt * 4);
    if (moe_hash_final(&fs) != load_le64(sum)) {
        st = moe_err(err, MOE_ERR_FORMAT, "token cache %s is damaged: checksum mismatch", path);
        goto done;
    }
    uint32_t fv = load_le32(hdr + 12);
    uint64_t ft = load_le64(hdr + 24), fsrc = load_le64(hdr + 32);
    if (fv != vocab) {
        st = moe_err(err, MOE_ERR_ARG, "token cache %s is for other data/tokenizer: its vocabulary has %u "
                     "tokens, this tokenizer's %u", path, fv, vocab);
        goto done;
    }
    if (ft != tok_fp || fsrc != src_fp) {
        int tk = ft != tok_fp;
        st = moe_err(err, MOE_ERR_ARG, "token cache %s is for other data/tokenizer: its %s fingerprint is "
                     "%016llx, this run's %016llx", path, tk ? "tokenizer" : "source",
                     (unsigned long long)(tk ? ft : fsrc), (unsigned long long)(tk ? tok_fp : src_fp));
        goto done;
    }
    const uint8_t *b = (const uint8_t *)tok;
    for (size_t i = 0; i < (size_t)cnt; i++) {
        uint32_t v = load_le32(b + 4 * i); /* in place: slot i read before it is written */
        if (v >= vocab) {
            st = moe_err(err, MOE_ERR_FORMAT, "token cache %s: token %zu = %u is outside the vocabulary [0, %u)",
                         path, i, v, vocab);
            goto done;
        }
        tok[i] = (int32_t)v;
    }
done:
    close(fd);
    if (st) { free(tok); return st; }
    *tokens = tok;
    *n = (size_t)cnt;
    return MOE_OK;
}

/* ------------------------------------------------------------ split, batches */

moe_status data_split_tokens(const int32_t *tokens, size_t n, float val_fraction, int T, int B,
                             data_split *train, data_split *val, moe_error *err) {
    if (!train || !val) return moe_err(err, MOE_ERR_ARG, "data_split_tokens: NULL output");
    if (!tokens && n) return moe_err(err, MOE_ERR_ARG, "data_split_tokens: NULL tokens");
    if (T < 1 || B < 1) return moe_err(err, MOE_ERR_ARG, "batch %d x context %d: both must be >= 1", B, T);
    if (!(val_fraction >= 0.0f && val_fraction < 1.0f))
        return moe_err(err, MOE_ERR_ARG, "validation fraction %g is outside [0, 1)", (double)val_fraction);
    size_t n_val = (size_t)((double)n * (double)val_fraction);
    size_t n_train = n - n_val;
    size_t need = (size_t)B * (size_t)T + 1;
    if (n_train < need)
        return moe_err(err, MOE_ERR_SHAPE,
                       "corpus of %zu tokens (%zu for training after %zu for validation) is smaller than one "
                       "batch of %d x %d (+1) tokens: give more text or a smaller --batch/--ctx",
                       n, n_train, n_val, B, T);
    if (val_fraction > 0.0f && n_val < (size_t)T + 1)
        return moe_err(err, MOE_ERR_SHAPE,
                       "validation part of %zu tokens (%g of %zu) is shorter than one window of %d (+1) tokens: "
                       "give more text, a larger validation fraction or a smaller --ctx",
                       n_val, (double)val_fraction, n, T);
    train->tokens = tokens;
    train->n = n_train;
    val->tokens = tokens ? tokens + n_train : NULL;
    val->n = n_val;
    return MOE_OK;
}

void data_loader_init(data_loader *L, data_split s, int B, int T, uint64_t seed) {
    MOE_ASSERT(L && B >= 1 && T >= 1 && s.tokens && s.n >= (size_t)T + 1);
    L->s = s;
    L->B = B;
    L->T = T;
    L->rng = seed;
}

void data_loader_next(data_loader *L, int32_t *x, int32_t *y) {
    size_t T = (size_t)L->T, range = L->s.n - T; /* offsets 0 .. n - T - 1 */
    for (int b = 0; b < L->B; b++) {
        const uint64_t z = moe_mix64(L->rng += 0x9E3779B97F4A7C15ull); /* splitmix64 */
        size_t o = (size_t)(z % range); /* bias < range / 2^64 */
        const int32_t *src = L->s.tokens + o;
        memcpy(x + (size_t)b * T, src, T * sizeof *x);
        memcpy(y + (size_t)b * T, src + 1, T * sizeof *y);
    }
}

uint64_t data_loader_state(const data_loader *L) { return L->rng; }
void data_loader_set_state(data_loader *L, uint64_t state) { L->rng = state; }

int data_val_batches(data_split val, int B, int T) {
    if (B < 1 || T < 1 || val.n < (size_t)T + 1) return 0;
    size_t W = (val.n - 1) / (size_t)T;
    size_t nb = (W + (size_t)B - 1) / (size_t)B;
    return nb > (size_t)INT32_MAX ? INT32_MAX : (int)nb;
}

void data_val_batch(data_split val, int i, int B, int T, int32_t *x, int32_t *y) {
    MOE_ASSERT(i >= 0 && i < data_val_batches(val, B, T));
    size_t W = (val.n - 1) / (size_t)T;
    for (int b = 0; b < B; b++) {
        size_t w = ((size_t)i * (size_t)B + (size_t)b) % W;
        const int32_t *src = val.tokens + w * (size_t)T;
        memcpy(x + (size_t)b * (size_t)T, src, (size_t)T * sizeof *x);
        memcpy(y + (size_t)b * (size_t)T, src + 1, (size_t)T * sizeof *y);
    }
}

double data_unigram_entropy_bits(const int32_t *tokens, size_t n, int vocab) {
    if (vocab < 1 || (!tokens && n)) return NAN;
    uint64_t *cnt = calloc((size_t)vocab, sizeof *cnt);
    if (!cnt) return NAN;
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++)
        if (tokens[i] >= 0 && tokens[i] < vocab) { cnt[tokens[i]]++; total++; }
    double h = NAN;
    if (total) {
        h = 0.0;
        for (int v = 0; v < vocab; v++)
            if (cnt[v]) { double p = (double)cnt[v] / (double)total; h -= p * log2(p); }
    }
    free(cnt);
    return h;
}
