/* decompress.h: compressed data files (gzip, xz, zstd) to bytes, through the
 * system's zlib, liblzma and libzstd (internal).
 *
 * For: `moe train --data` on folders that hold .gz / .xz / .zst files. The
 * format is told by the file's first bytes (magic), never by its name.
 * Not for: writing compressed files, or streaming (the whole output is held
 * in memory, as the rest of the data pipeline does).
 */
#ifndef MOE_TRAIN_DECOMPRESS_H
#define MOE_TRAIN_DECOMPRESS_H

#include <stddef.h>
#include <stdint.h>

#include "moe.h"

typedef enum {
    DZ_NONE = 0, /* not compressed (or a format we do not read) */
    DZ_GZIP,     /* 1f 8b: gzip (zlib), several members are read in turn */
    DZ_XZ,       /* fd 37 7a 58 5a 00: xz (liblzma), concatenated streams too */
    DZ_ZSTD,     /* 28 b5 2f fd: zstd frames (libzstd) */
} dz_kind;

/* The format of a file whose first n bytes are p. */
dz_kind dz_detect(const uint8_t *p, size_t n);
/* "gzip", "xz", "zstd" or "plain". */
const char *dz_name(dz_kind k);

/* Decompresses in[0, n_in) of format k, APPENDING to the buffer *buf of
 * *len bytes used and *cap allocated (realloc'd as it grows; *buf may be
 * NULL with *len = *cap = 0). At most `limit` bytes are appended: more is
 * MOE_ERR_FORMAT ("expands to more than ..."). On failure *len is back to
 * its value on entry (the buffer may have grown). Errors name `path`: a
 * damaged or truncated stream (MOE_ERR_FORMAT, with the library's reason),
 * out of memory (MOE_ERR_NOMEM). */
moe_status dz_decompress(uint8_t **buf, size_t *len, size_t *cap, const uint8_t *in, size_t n_in, dz_kind k,
                         uint64_t limit, const char *path, moe_error *err);

#endif /* MOE_TRAIN_DECOMPRESS_H */
