/* data.c: the UTF-8 check, the token cache, split and batches (see data.h
 * for the rules and the cache layout; sources.c reads the files).
 * Not for: tokenizing or generating text. Reads with POSIX calls; writes only
 * through core/atomic_file. */
#include "train/data.h"

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

size_t data_partial_utf8_tail(const uint8_t *p, size_t n) {
    for (size_t k = 1; k <= 3 && k <= n; k++) {
        uint8_t c = p[n - k];
        if (c >= 0x80 && c <= 0xBF) continue; /* a continuation byte: look further back */
        size_t len;
        uint8_t lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF) len = 2;
        else if (c >= 0xE0 && c <= 0xEF) { len = 3; if (c == 0xE0) lo = 0xA0; if (c == 0xED) hi = 0x9F; }
        else if (c >= 0xF0 && c <= 0xF4) { len = 4; if (c == 0xF0) lo = 0x90; if (c == 0xF4) hi = 0x8F; }
        else return 0; /* ASCII or a byte that starts nothing */
        if (len <= k) return 0; /* complete (or too long): not a cut character */
        if (k >= 2 && (p[n - k + 1] < lo || p[n - k + 1] > hi)) return 0;
        return k; /* bytes 3.. of the cut sequence were checked as continuations above */
    }
    return 0;
}

/* ------------------------------------------------------------ token cache */

ssize_t data_read_full(int fd, void *buf, size_t n) {
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

static void cache_header(uint8_t h[DATA_CACHE_HEADER], uint32_t vocab, uint64_t n, uint64_t tok_fp,
                         uint64_t src_fp, uint64_t n_src) {
    memcpy(h, DATA_CACHE_MAGIC, 8); /* with its NUL */
    store_le32(h + 8, DATA_CACHE_VERSION);
    store_le32(h + 12, vocab);
    store_le64(h + 16, n);
    store_le64(h + 24, tok_fp);
    store_le64(h + 32, src_fp);
    store_le64(h + 40, n_src);
}

moe_status data_cache_write(const char *path, const int32_t *tokens, size_t n, const uint64_t *src_tokens,
                            size_t n_src, uint32_t vocab, uint64_t tok_fp, uint64_t src_fp, moe_error *err) {
    if (!path || !*path) return moe_err(err, MOE_ERR_ARG, "token cache: no path");
    if (!tokens && n) return moe_err(err, MOE_ERR_ARG, "token cache %s: NULL tokens", path);
    if (vocab == 0) return moe_err(err, MOE_ERR_ARG, "token cache %s: vocabulary size 0", path);
    if (n_src < 1 || !src_tokens) return moe_err(err, MOE_ERR_ARG, "token cache %s: no source table", path);
    uint64_t sum = 0;
    for (size_t s = 0; s < n_src; s++) sum += src_tokens[s];
    if (sum != (uint64_t)n)
        return moe_err(err, MOE_ERR_ARG, "token cache %s: the sources' token counts add up to %llu, not %zu", path,
                       (unsigned long long)sum, n);
    for (size_t i = 0; i < n; i++)
        if (tokens[i] < 0 || (uint32_t)tokens[i] >= vocab)
            return moe_err(err, MOE_ERR_ARG, "token cache %s: token %zu = %d is outside the vocabulary [0, %u)",
                           path, i, tokens[i], vocab);
    uint8_t hdr[DATA_CACHE_HEADER];
    cache_header(hdr, vocab, (uint64_t)n, tok_fp, src_fp, (uint64_t)n_src);
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
    for (size_t s = 0; s < n_src;) {
        size_t m = n_src - s < 2048 ? n_src - s : 2048;
        for (size_t j = 0; j < m; j++) store_le64(buf + 8 * j, src_tokens[s + j]);
        moe_hash_update(&fs, buf, 8 * m);
        if ((st = atomic_file_write(&f, buf, 8 * m, err))) return st;
        s += m;
    }
    uint8_t sumb[8];
    store_le64(sumb, moe_hash_final(&fs));
    if ((st = atomic_file_write(&f, sumb, 8, err))) return st;
    return atomic_file_commit(&f, err);
}

moe_status data_cache_read(const char *path, int32_t **tokens, size_t *n, uint64_t **src_tokens, size_t *n_src,
                           uint32_t vocab, uint64_t tok_fp, uint64_t src_fp, moe_error *err) {
    if (!tokens || !n || !src_tokens || !n_src) return moe_err(err, MOE_ERR_ARG, "token cache: NULL output");
    *tokens = NULL;
    *n = 0;
    *src_tokens = NULL;
    *n_src = 0;
    if (!path || !*path) return moe_err(err, MOE_ERR_ARG, "token cache: no path");
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        if (errno == ENOENT) return moe_err(err, MOE_ERR_IO, "token cache %s does not exist (ENOENT)", path);
        return moe_err(err, MOE_ERR_IO, "cannot read token cache %s: %s", path, strerror(errno));
    }
    moe_status st = MOE_OK;
    int32_t *tok = NULL;
    uint64_t *cnts = NULL;
    struct stat sb;
    uint8_t hdr[DATA_CACHE_HEADER], sum[8];
    uint64_t cnt = 0, ns = 0;
    size_t hl = DATA_CACHE_HEADER_V1; /* version 1: no source table */
    if (fstat(fd, &sb) != 0) {
        st = moe_err(err, MOE_ERR_IO, "cannot read token cache %s: %s", path, strerror(errno));
        goto done;
    }
    if (!S_ISREG(sb.st_mode)) { st = moe_err(err, MOE_ERR_FORMAT, "token cache %s is not a regular file", path); goto done; }
    uint64_t len = (uint64_t)sb.st_size;
    if (len < DATA_CACHE_HEADER_V1 + 8) {
        st = moe_err(err, MOE_ERR_FORMAT, "token cache %s is %llu bytes, shorter than its header and "
                     "checksum", path, (unsigned long long)len);
        goto done;
    }
    if (data_read_full(fd, hdr, DATA_CACHE_HEADER_V1) != (ssize_t)DATA_CACHE_HEADER_V1) {
        st = moe_err(err, MOE_ERR_IO, "cannot read the header of token cache %s", path);
        goto done;
    }
    if (memcmp(hdr, DATA_CACHE_MAGIC, 8) != 0) {
        st = moe_err(err, MOE_ERR_FORMAT, "%s is not a token cache (magic is not \"%s\")", path, DATA_CACHE_MAGIC);
        goto done;
    }
    uint32_t ver = load_le32(hdr + 8);
    if (ver != DATA_CACHE_VERSION && ver != 1) {
        st = moe_err(err, MOE_ERR_FORMAT, "token cache %s has version %u, expected 1 or %u", path, ver,
                     DATA_CACHE_VERSION);
        goto done;
    }
    cnt = load_le64(hdr + 16);
    if (ver >= 2) {
        hl = DATA_CACHE_HEADER;
        if (len < hl + 8 || data_read_full(fd, hdr + DATA_CACHE_HEADER_V1, hl - DATA_CACHE_HEADER_V1) !=
                                (ssize_t)(hl - DATA_CACHE_HEADER_V1)) {
            st = moe_err(err, MOE_ERR_FORMAT, "token cache %s is %llu bytes, shorter than its header and checksum",
                         path, (unsigned long long)len);
            goto done;
        }
        ns = load_le64(hdr + 40);
        if (ns < 1 || ns > (len - hl - 8) / 8) {
            st = moe_err(err, MOE_ERR_FORMAT, "token cache %s: header says %llu sources, which does not fit in its "
                         "%llu bytes", path, (unsigned long long)ns, (unsigned long long)len);
            goto done;
        }
    }
    uint64_t body = len - hl - 8 - 8 * ns; /* bytes of the tokens */
    if (body % 4 != 0 || cnt != body / 4 || cnt > SIZE_MAX / 4 - 1) {
        st = moe_err(err, MOE_ERR_FORMAT, "token cache %s: header says %llu tokens, which needs %s bytes, but "
                     "the file has %llu bytes", path, (unsigned long long)cnt,
                     ver >= 2 ? "56 + 4 * n_tokens + 8 * n_sources" : "48 + 4 * n_tokens", (unsigned long long)len);
        goto done;
    }
    tok = malloc(cnt ? (size_t)cnt * 4 : 4);
    cnts = malloc(ns ? (size_t)ns * 8 : 8);
    if (!tok || !cnts) { st = moe_err(err, MOE_ERR_NOMEM, "out of memory for %llu cached tokens", (unsigned long long)cnt); goto done; }
    if (data_read_full(fd, tok, (size_t)cnt * 4) != (ssize_t)(cnt * 4) ||
        data_read_full(fd, cnts, (size_t)ns * 8) != (ssize_t)(ns * 8) || data_read_full(fd, sum, 8) != 8) {
        st = moe_err(err, MOE_ERR_IO, "token cache %s: short read (did it change while reading?)", path);
        goto done;
    }
    moe_hash fs;
    moe_hash_init(&fs);
    moe_hash_update(&fs, hdr, hl);
    moe_hash_update(&fs, (const uint8_t *)tok, (size_t)cnt * 4);
    moe_hash_update(&fs, (const uint8_t *)cnts, (size_t)ns * 8);
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
    uint64_t total = 0;
    const uint8_t *cb = (const uint8_t *)cnts;
    for (size_t s = 0; s < (size_t)ns; s++) {
        cnts[s] = load_le64(cb + 8 * s); /* in place, as above */
        total += cnts[s] > cnt ? cnt + 1 : cnts[s];
    }
    if (ns && total != cnt) {
        st = moe_err(err, MOE_ERR_FORMAT, "token cache %s: its %llu sources' token counts do not add up to its "
                     "%llu tokens", path, (unsigned long long)ns, (unsigned long long)cnt);
        goto done;
    }
done:
    close(fd);
    if (st) { free(tok); free(cnts); return st; }
    *tokens = tok;
    *n = (size_t)cnt;
    if (ns) { *src_tokens = cnts; *n_src = (size_t)ns; }
    else free(cnts);
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

void data_val_batch(data_split val, int i, int nb, int B, int T, int32_t *x, int32_t *y) {
    const int all = data_val_batches(val, B, T);
    MOE_ASSERT(nb >= 1 && nb <= all && i >= 0 && i < nb);
    size_t W = (val.n - 1) / (size_t)T, S = (size_t)nb * (size_t)B; /* windows, slots */
    for (int b = 0; b < B; b++) {
        size_t j = (size_t)i * (size_t)B + (size_t)b;
        /* every window (the last batch wraps), or S windows evenly spaced,
           each at the middle of its stretch of W / S windows */
        size_t w = S >= W ? j % W : (size_t)(((2 * (unsigned __int128)j + 1) * W) / (2 * (unsigned __int128)S));
        const int32_t *src = val.tokens + w * (size_t)T;
        memcpy(x + (size_t)b * (size_t)T, src, (size_t)T * sizeof *x);
        memcpy(y + (size_t)b * (size_t)T, src + 1, (size_t)T * sizeof *y);
    }
}

/* Each source of m tokens is cut into ceil(m / DATA_VAL_BLOCK) blocks of
 * equal size (within one token); the last floor(c1 f) - floor(c0 f) tokens of
 * the block [c0, c1) (positions in the whole stream) are held out. */
moe_status data_split_sources(int32_t *out, const int32_t *tokens, size_t n, const uint64_t *src_tokens,
                              size_t n_src, float val_fraction, int T, int B, data_split *train, data_split *val,
                              uint64_t *val_per_src, moe_error *err) {
    if (!train || !val || !out) return moe_err(err, MOE_ERR_ARG, "data_split_sources: NULL output");
    if (!tokens && n) return moe_err(err, MOE_ERR_ARG, "data_split_sources: NULL tokens");
    if (!src_tokens || n_src < 1) return moe_err(err, MOE_ERR_ARG, "data_split_sources: no source table");
    uint64_t sum = 0;
    for (size_t s = 0; s < n_src; s++) sum += src_tokens[s];
    if (sum != (uint64_t)n)
        return moe_err(err, MOE_ERR_ARG, "data_split_sources: the sources hold %llu tokens, not %zu",
                       (unsigned long long)sum, n);
    /* the sizes and their checks are data_split_tokens' */
    data_split tr, va;
    moe_status st = data_split_tokens(tokens, n, val_fraction, T, B, &tr, &va, err);
    if (st) return st;
    const double f = (double)val_fraction;
    size_t at = 0, wt = 0, wv = tr.n; /* read position, train and validation write positions */
    for (size_t s = 0; s < n_src; s++) {
        size_t m = (size_t)src_tokens[s], nb = (m + DATA_VAL_BLOCK - 1) / DATA_VAL_BLOCK;
        uint64_t vs = 0;
        for (size_t j = 0; j < nb; j++) {
            size_t b0 = at + (size_t)((unsigned __int128)j * m / nb), b1 = at + (size_t)((unsigned __int128)(j + 1) * m / nb);
            /* floor(cumulative * f) at both ends: the total is floor(n f) */
            size_t v = (size_t)((double)b1 * f) - (size_t)((double)b0 * f);
            if (v > b1 - b0) v = b1 - b0;
            memcpy(out + wt, tokens + b0, (b1 - b0 - v) * sizeof *out);
            wt += b1 - b0 - v;
            memcpy(out + wv, tokens + b1 - v, v * sizeof *out);
            wv += v;
            vs += v;
        }
        if (val_per_src) val_per_src[s] = vs;
        at += m;
    }
    MOE_ASSERT(wt == tr.n && wv == n);
    train->tokens = out;
    train->n = tr.n;
    val->tokens = out + tr.n;
    val->n = n - tr.n;
    return MOE_OK;
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
