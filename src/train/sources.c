/* sources.c: data paths to one text (see sources.h for the rules): list,
 * drop second names of one file, read (decompressing), check, join.
 * Not for: tokenizing, caching or batching. Reads with POSIX calls. */
#include "train/sources.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "train/data.h"
#include "train/decompress.h"

/* ------------------------------------------------------------ notes */

void data_sources_free(data_sources *s) {
    if (!s) return;
    for (size_t i = 0; i < s->n; i++) free(s->v[i].path);
    free(s->v);
    free(s->notes);
    memset(s, 0, sizeof *s);
}

/* Appends one line (formatted, control characters escaped by moe_err) to
 * s's notes; past DATA_NOTES_MAX_LINES lines only counts it. Out of memory
 * drops the line (notes are advice, never data). */
__attribute__((format(printf, 2, 3))) static void note(data_sources *s, const char *fmt, ...) {
    if (!s) return;
    s->n_notes++;
    if (s->n_notes > DATA_NOTES_MAX_LINES) return;
    char raw[sizeof ((moe_error *)0)->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof raw, fmt, ap);
    va_end(ap);
    moe_error e;
    moe_err(&e, MOE_OK, "%s", raw); /* escapes names from the file system */
    size_t l = strlen(e.msg);
    if (s->notes_len + l + 2 > s->notes_cap) {
        size_t nc = s->notes_cap ? 2 * s->notes_cap : 1024;
        while (nc < s->notes_len + l + 2) nc *= 2;
        char *p = realloc(s->notes, nc);
        if (!p) return;
        s->notes = p;
        s->notes_cap = nc;
    }
    memcpy(s->notes + s->notes_len, e.msg, l);
    s->notes_len += l;
    s->notes[s->notes_len++] = '\n';
    s->notes[s->notes_len] = '\0';
}

/* ------------------------------------------------------------ listing */

typedef struct fentry {
    char *path;     /* owned */
    uint64_t size;  /* bytes, from stat */
    uint64_t dev, ino;
} fentry;
typedef struct flist {
    fentry *f; /* [n] in reading order */
    size_t n, cap;
} flist;

static void flist_free(flist *l) {
    for (size_t i = 0; i < l->n; i++) free(l->f[i].path);
    free(l->f);
}
static moe_status flist_add(flist *l, const char *path, const struct stat *sb, moe_error *err) {
    if (l->n == l->cap) {
        size_t nc = l->cap ? 2 * l->cap : 64;
        fentry *f = realloc(l->f, nc * sizeof *f);
        if (!f) return moe_err(err, MOE_ERR_NOMEM, "out of memory listing data files");
        l->f = f;
        l->cap = nc;
    }
    char *c = strdup(path);
    if (!c) return moe_err(err, MOE_ERR_NOMEM, "out of memory listing data files");
    l->f[l->n++] = (fentry){c, (uint64_t)sb->st_size, (uint64_t)sb->st_dev, (uint64_t)sb->st_ino};
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
            if (S_ISREG(sb.st_mode) && sb.st_size > 0) st = flist_add(l, child, &sb, err);
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
    if (S_ISREG(sb.st_mode)) return flist_add(l, path, &sb, err);
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

/* Index of an earlier entry for the same file as l->f[i], or -1. A hash
 * table of (dev, ino) keeps this linear in the number of files. */
typedef struct idset {
    size_t *slot; /* [cap] entry index + 1, 0 empty */
    size_t cap;
} idset;
static uint64_t id_hash(const fentry *f) {
    uint64_t h = f->ino * 0x9E3779B97F4A7C15ull ^ (f->dev + 0x632BE59BD9B4E019ull) * 0xBF58476D1CE4E5B9ull;
    return h ^ (h >> 31);
}
static long find_or_add(idset *s, const flist *l, size_t i) {
    const fentry *f = &l->f[i];
    size_t m = s->cap - 1;
    for (size_t j = (size_t)id_hash(f) & m;; j = (j + 1) & m) {
        if (!s->slot[j]) { s->slot[j] = i + 1; return -1; }
        const fentry *g = &l->f[s->slot[j] - 1];
        if (g->dev == f->dev && g->ino == f->ino) return (long)(s->slot[j] - 1);
    }
}

/* ------------------------------------------------------------ reading */

typedef struct textbuf {
    uint8_t *p;
    size_t len, cap;
} textbuf;

static moe_status reserve(textbuf *b, size_t more, moe_error *err) {
    if (b->cap - b->len > more) return MOE_OK; /* room for the NUL too */
    size_t nc = b->cap ? b->cap : 1 << 16;
    while (nc - b->len <= more) {
        if (nc > SIZE_MAX / 2) return moe_err(err, MOE_ERR_NOMEM, "data too large for memory");
        nc *= 2;
    }
    uint8_t *p = realloc(b->p, nc);
    if (!p) return moe_err(err, MOE_ERR_NOMEM, "out of memory for %zu bytes of data", b->len + more);
    b->p = p;
    b->cap = nc;
    return MOE_OK;
}

#define SKIP_HINT "--skip-bad skips such files with a warning"

/* Appends file f's text to b. Returns MOE_OK (read, or skipped with a note
 * when skip_bad: *skipped = 1), or the error of a bad file (skip_bad = 0)
 * or of a failure that is not the file's fault (out of memory, the limit).
 * On skip or failure b->len is back to its value on entry. */
static moe_status read_one(textbuf *b, const fentry *f, int skip_bad, data_sources *src, int *skipped,
                           moe_error *err) {
    const size_t start = b->len;
    const char *path = f->path;
    *skipped = 0;
    moe_error why; /* the reason a file is bad */
    moe_status bad = MOE_OK;
    uint8_t *raw = NULL;
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        bad = moe_err(&why, MOE_ERR_IO, "cannot read data file %s: %s", path, strerror(errno));
        goto judged;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        bad = moe_err(&why, MOE_ERR_IO, "cannot read data file %s: not a regular file", path);
        close(fd);
        goto judged;
    }
    uint64_t size = (uint64_t)sb.st_size, left = DATA_MAX_BYTES - (uint64_t)start;
    if (size > left) {
        close(fd);
        return moe_err(err, MOE_ERR_FORMAT, "data sources total more than the limit of 4 GiB (%llu bytes) at %s",
                       (unsigned long long)DATA_MAX_BYTES, path);
    }
    moe_status st = reserve(b, (size_t)size, err);
    if (st) { close(fd); return st; }
    ssize_t r = data_read_full(fd, b->p + start, (size_t)size);
    int e = errno;
    close(fd);
    if (r < 0) { bad = moe_err(&why, MOE_ERR_IO, "cannot read data file %s: %s", path, strerror(e)); goto judged; }
    if ((uint64_t)r != size) {
        bad = moe_err(&why, MOE_ERR_IO, "data file %s: read %zd of %llu bytes (did it change while reading?)", path,
                      r, (unsigned long long)size);
        goto judged;
    }
    dz_kind k = dz_detect(b->p + start, (size_t)size);
    if (k != DZ_NONE) {
        raw = malloc((size_t)size);
        if (!raw) return moe_err(err, MOE_ERR_NOMEM, "out of memory reading %s", path);
        memcpy(raw, b->p + start, (size_t)size);
        size_t cap = b->cap;
        st = dz_decompress(&b->p, &b->len, &cap, raw, (size_t)size, k, left, path, &why);
        b->cap = cap;
        free(raw);
        if (st == MOE_ERR_NOMEM) { *err = why; return st; }
        if (st) { bad = st; goto judged; } /* damaged, truncated, or past the limit */
        if (src) src->n_compressed++;
        if ((st = reserve(b, 0, err))) { b->len = start; return st; }
    } else {
        b->len = start + (size_t)size;
    }
    size_t m = b->len - start;
    if (m == 0) { /* a compressed empty file */
        note(src, "note: data file %s (%s) holds no text: skipped", path, dz_name(k));
        *skipped = 1;
        b->len = start;
        return MOE_OK;
    }
    const uint8_t *t = b->p + start;
    size_t tail = data_partial_utf8_tail(t, m), bad_off;
    int nul;
    const char *what = k == DZ_NONE ? "" : k == DZ_GZIP ? " (gzip)" : k == DZ_XZ ? " (xz)" : " (zstd)";
    if (!data_check_text(t, m - tail, &bad_off, &nul)) {
        if (nul) bad = moe_err(&why, MOE_ERR_FORMAT, "data file %s%s is binary: NUL byte at offset %zu", path, what,
                               bad_off);
        else bad = moe_err(&why, MOE_ERR_FORMAT, "data file %s%s is not UTF-8 text: invalid byte 0x%02x at offset "
                           "%zu", path, what, t[bad_off], bad_off);
        goto judged;
    }
    if (tail) {
        if (src) src->n_partial_utf8++;
        note(src, "warning: data file %s%s ends in the middle of a UTF-8 character (its last %zu byte%s): read, "
             "bytes kept", path, what, tail, tail > 1 ? "s" : "");
    }
    return MOE_OK;
judged:
    b->len = start;
    if (!skip_bad) {
        /* one line: the reason, then the way out */
        return moe_err(err, bad, "%s; " SKIP_HINT, why.msg);
    }
    if (src) src->n_skipped++;
    note(src, "warning: skipped: %s", why.msg);
    *skipped = 1;
    return MOE_OK;
}

static moe_status add_source(data_sources *s, const char *path, size_t off, size_t len, moe_error *err) {
    if (!s) return MOE_OK;
    if (s->n == s->cap) {
        size_t nc = s->cap ? 2 * s->cap : 16;
        data_source *v = realloc(s->v, nc * sizeof *v);
        if (!v) return moe_err(err, MOE_ERR_NOMEM, "out of memory listing data files");
        s->v = v;
        s->cap = nc;
    }
    char *c = strdup(path);
    if (!c) return moe_err(err, MOE_ERR_NOMEM, "out of memory listing data files");
    s->v[s->n++] = (data_source){c, off, len};
    return MOE_OK;
}

moe_status data_read_sources(uint8_t **text, size_t *n, data_sources *src, const char *const *paths, int n_paths,
                             int skip_bad, moe_error *err) {
    if (!text || !n) return moe_err(err, MOE_ERR_ARG, "data_read_sources: NULL output");
    *text = NULL;
    *n = 0;
    if (src) memset(src, 0, sizeof *src);
    if (n_paths <= 0 || !paths) return moe_err(err, MOE_ERR_ARG, "no data files or folders given");
    flist l = {0};
    idset ids = {0};
    textbuf b = {0};
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
    if (st == MOE_OK && total > DATA_MAX_BYTES)
        st = moe_err(err, MOE_ERR_FORMAT,
                     "data sources total %llu bytes in %zu files, more than the limit of 4 GiB "
                     "(%llu bytes)", (unsigned long long)total, l.n, (unsigned long long)DATA_MAX_BYTES);
    if (st == MOE_OK) {
        ids.cap = 16;
        while (ids.cap < 2 * l.n) ids.cap *= 2;
        ids.slot = calloc(ids.cap, sizeof *ids.slot);
        if (!ids.slot) st = moe_err(err, MOE_ERR_NOMEM, "out of memory listing data files");
    }
    size_t n_read = 0, n_skip = 0;
    const char *first_skip = NULL;
    for (size_t i = 0; st == MOE_OK && i < l.n; i++) {
        long same = find_or_add(&ids, &l, i);
        if (same >= 0) {
            if (src) src->n_same++;
            note(src, "note: %s is the same file as %s (a link): read once", l.f[i].path, l.f[same].path);
            continue;
        }
        size_t at = b.len;
        if (n_read) {
            if ((st = reserve(&b, 2, err))) break;
            b.p[b.len++] = '\n';
            b.p[b.len++] = '\n';
        }
        int skipped;
        st = read_one(&b, &l.f[i], skip_bad, src, &skipped, err);
        if (st) break;
        if (skipped) {
            b.len = at;
            if (!first_skip) first_skip = l.f[i].path;
            n_skip++;
            continue;
        }
        /* the previous file's length takes the separator */
        if (src && src->n) src->v[src->n - 1].len += 2;
        st = add_source(src, l.f[i].path, n_read ? at + 2 : at, b.len - (n_read ? at + 2 : at), err);
        n_read++;
    }
    if (st == MOE_OK && n_read == 0)
        st = moe_err(err, MOE_ERR_FORMAT, "no usable text in the data: all %zu file%s skipped (the first: %s)", n_skip,
                     n_skip == 1 ? " was" : "s were", first_skip ? first_skip : "?");
    if (st == MOE_OK) st = reserve(&b, 0, err);
    flist_free(&l);
    free(ids.slot);
    if (st) {
        free(b.p);
        if (src) {
            /* keep the notes (they explain), drop the table */
            for (size_t i = 0; i < src->n; i++) free(src->v[i].path);
            free(src->v);
            src->v = NULL;
            src->n = src->cap = 0;
        }
        return st;
    }
    if (src && src->n_notes > DATA_NOTES_MAX_LINES) {
        int more = src->n_notes - DATA_NOTES_MAX_LINES;
        src->n_notes = DATA_NOTES_MAX_LINES; /* let the summary line through */
        note(src, "note: %d more note%s like these not shown", more, more == 1 ? "" : "s");
    }
    b.p[b.len] = 0;
    *text = b.p;
    *n = b.len;
    return MOE_OK;
}
