/* decompress.c: gzip / xz / zstd to bytes through zlib, liblzma and libzstd
 * (see decompress.h). Not for: any format the three libraries do not read.
 * Each decoder appends to a growing buffer in steps, checking the limit
 * before each step, so a small "bomb" cannot take more than limit bytes. */
#include "train/decompress.h"

#include <limits.h>
#include <lzma.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>

#include "core/error.h"

#define DZ_STEP ((size_t)1 << 20) /* output bytes made room for at a time, at least */

dz_kind dz_detect(const uint8_t *p, size_t n) {
    if (n >= 2 && p[0] == 0x1f && p[1] == 0x8b) return DZ_GZIP;
    if (n >= 6 && !memcmp(p, "\xfd" "7zXZ\0", 6)) return DZ_XZ;
    if (n >= 4 && p[0] == 0x28 && p[1] == 0xb5 && p[2] == 0x2f && p[3] == 0xfd) return DZ_ZSTD;
    return DZ_NONE;
}

const char *dz_name(dz_kind k) {
    switch (k) {
    case DZ_GZIP: return "gzip";
    case DZ_XZ: return "xz";
    case DZ_ZSTD: return "zstd";
    default: return "plain";
    }
}

/* Makes room for at least one more step of output; the room may exceed
 * what the limit allows (the caller checks the limit on what it wrote). */
static moe_status grow(uint8_t **buf, size_t len, size_t *cap, const char *path, moe_error *err) {
    if (*cap - len >= DZ_STEP / 4) return MOE_OK;
    size_t nc = *cap < DZ_STEP ? DZ_STEP : *cap;
    while (nc - len < DZ_STEP / 4) nc *= 2;
    if (nc < *cap) return moe_err(err, MOE_ERR_NOMEM, "data file %s: output too large", path);
    uint8_t *b = realloc(*buf, nc);
    if (!b) return moe_err(err, MOE_ERR_NOMEM, "data file %s: out of memory decompressing", path);
    *buf = b;
    *cap = nc;
    return MOE_OK;
}

static moe_status too_big(const char *path, dz_kind k, uint64_t limit, moe_error *err) {
    return moe_err(err, MOE_ERR_FORMAT, "data file %s (%s) expands to more than %llu bytes, the space left under the "
                   "4 GiB limit of the data", path, dz_name(k), (unsigned long long)limit);
}

static moe_status gunzip(uint8_t **buf, size_t *len, size_t *cap, const uint8_t *in, size_t n_in, uint64_t limit,
                         const char *path, moe_error *err) {
    const size_t start = *len;
    z_stream z;
    memset(&z, 0, sizeof z);
    if (inflateInit2(&z, 15 + 16) != Z_OK) return moe_err(err, MOE_ERR_NOMEM, "data file %s: zlib init failed", path);
    moe_status st = MOE_OK;
    size_t used = 0; /* input bytes handed to zlib */
    for (;;) {
        if ((st = grow(buf, *len, cap, path, err))) break;
        if (z.avail_in == 0 && used < n_in) {
            size_t m = n_in - used > UINT_MAX ? UINT_MAX : n_in - used;
            z.next_in = (Bytef *)(uintptr_t)(in + used);
            z.avail_in = (uInt)m;
            used += m;
        }
        size_t room = *cap - *len > UINT_MAX ? UINT_MAX : *cap - *len;
        z.next_out = *buf + *len;
        z.avail_out = (uInt)room;
        int r = inflate(&z, Z_NO_FLUSH);
        *len += room - z.avail_out;
        if ((uint64_t)(*len - start) > limit) { st = too_big(path, DZ_GZIP, limit, err); break; }
        if (r == Z_STREAM_END) {
            size_t left = z.avail_in + (n_in - used);
            if (left == 0) break;
            const uint8_t *next = z.next_in;
            if (z.avail_in == 0) next = in + used;
            if (left >= 2 && next[0] == 0x1f && next[1] == 0x8b) { inflateReset(&z); continue; } /* next member */
            st = moe_err(err, MOE_ERR_FORMAT, "data file %s (gzip): %zu bytes after the end of the compressed data",
                         path, left);
            break;
        }
        if (r == Z_BUF_ERROR && z.avail_in == 0 && used == n_in) {
            st = moe_err(err, MOE_ERR_FORMAT, "data file %s (gzip) is truncated: the compressed data ends early", path);
            break;
        }
        if (r != Z_OK && r != Z_BUF_ERROR) {
            st = moe_err(err, r == Z_MEM_ERROR ? MOE_ERR_NOMEM : MOE_ERR_FORMAT, "data file %s (gzip) is damaged: %s",
                         path, z.msg ? z.msg : "zlib error");
            break;
        }
    }
    inflateEnd(&z);
    if (st) *len = start;
    return st;
}

static moe_status unxz(uint8_t **buf, size_t *len, size_t *cap, const uint8_t *in, size_t n_in, uint64_t limit,
                       const char *path, moe_error *err) {
    const size_t start = *len;
    lzma_stream s = LZMA_STREAM_INIT;
    if (lzma_stream_decoder(&s, UINT64_MAX, LZMA_CONCATENATED) != LZMA_OK)
        return moe_err(err, MOE_ERR_NOMEM, "data file %s: liblzma init failed", path);
    s.next_in = in;
    s.avail_in = n_in;
    moe_status st = MOE_OK;
    for (;;) {
        if ((st = grow(buf, *len, cap, path, err))) break;
        size_t room = *cap - *len;
        s.next_out = *buf + *len;
        s.avail_out = room;
        lzma_ret r = lzma_code(&s, LZMA_FINISH);
        *len += room - s.avail_out;
        if ((uint64_t)(*len - start) > limit) { st = too_big(path, DZ_XZ, limit, err); break; }
        if (r == LZMA_STREAM_END) break;
        if (r == LZMA_OK) continue;
        const char *why = r == LZMA_BUF_ERROR ? "truncated: the compressed data ends early"
                        : r == LZMA_DATA_ERROR ? "damaged: corrupt data"
                        : r == LZMA_FORMAT_ERROR ? "damaged: not an xz stream"
                        : r == LZMA_OPTIONS_ERROR ? "damaged: unsupported options"
                        : r == LZMA_MEM_ERROR ? "out of memory" : "damaged";
        st = moe_err(err, r == LZMA_MEM_ERROR ? MOE_ERR_NOMEM : MOE_ERR_FORMAT, "data file %s (xz) is %s", path, why);
        break;
    }
    lzma_end(&s);
    if (st) *len = start;
    return st;
}

static moe_status unzstd(uint8_t **buf, size_t *len, size_t *cap, const uint8_t *in, size_t n_in, uint64_t limit,
                         const char *path, moe_error *err) {
    const size_t start = *len;
    ZSTD_DStream *d = ZSTD_createDStream();
    if (!d) return moe_err(err, MOE_ERR_NOMEM, "data file %s: libzstd init failed", path);
    ZSTD_inBuffer ib = {in, n_in, 0};
    moe_status st = MOE_OK;
    size_t r = 1; /* 0 at the end of a frame */
    for (;;) {
        if ((st = grow(buf, *len, cap, path, err))) break;
        ZSTD_outBuffer ob = {*buf + *len, *cap - *len, 0};
        r = ZSTD_decompressStream(d, &ob, &ib);
        *len += ob.pos;
        if (ZSTD_isError(r)) {
            st = moe_err(err, MOE_ERR_FORMAT, "data file %s (zstd) is damaged: %s", path, ZSTD_getErrorName(r));
            break;
        }
        if ((uint64_t)(*len - start) > limit) { st = too_big(path, DZ_ZSTD, limit, err); break; }
        if (ib.pos == ib.size && ob.pos < ob.size) { /* all input used and output not full: done */
            if (r != 0) st = moe_err(err, MOE_ERR_FORMAT, "data file %s (zstd) is truncated: the compressed data "
                                     "ends early", path);
            break;
        }
    }
    ZSTD_freeDStream(d);
    if (st) *len = start;
    return st;
}

moe_status dz_decompress(uint8_t **buf, size_t *len, size_t *cap, const uint8_t *in, size_t n_in, dz_kind k,
                         uint64_t limit, const char *path, moe_error *err) {
    switch (k) {
    case DZ_GZIP: return gunzip(buf, len, cap, in, n_in, limit, path, err);
    case DZ_XZ: return unxz(buf, len, cap, in, n_in, limit, path, err);
    case DZ_ZSTD: return unzstd(buf, len, cap, in, n_in, limit, path, err);
    default: return moe_err(err, MOE_ERR_ARG, "data file %s: not a compressed format", path);
    }
}
