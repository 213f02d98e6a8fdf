/* atomic_file.h: write a file so that readers see either the old content or
 * the complete new content, never a mix (internal).
 *
 * For: models, checkpoints and training state. The data goes to a temporary
 * file in the same directory (".<name>.tmp.<pid>.<n>"); commit flushes,
 * fsyncs, renames it over the target and fsyncs the directory. Any failure, a
 * pending moe_cancel (checked at each write and at commit), or
 * an abort, removes the temporary file and leaves the old target untouched.
 * Not for: appending, or files shared by several writers at once (the last
 * commit wins).
 *
 *   atomic_file f;
 *   if (atomic_file_open(&f, path, err)) return ...;
 *   if (atomic_file_write(&f, buf, n, err)) return ...;  // aborted already
 *   return atomic_file_commit(&f, err);                  // aborted on failure
 *
 * A failed write or commit has already aborted (the temporary file is gone);
 * calling atomic_file_abort after that, or twice, is harmless.
 */
#ifndef MOE_CORE_ATOMIC_FILE_H
#define MOE_CORE_ATOMIC_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "moe.h"

#define ATOMIC_FILE_BUF (1u << 16) /* bytes buffered before a write(2) */

typedef struct atomic_file {
    int fd;              /* the temporary file; -1 when not open */
    char *path;          /* the target path (owned) */
    char *tmp_path;      /* the temporary path (owned) */
    uint64_t written;    /* bytes accepted so far */
    size_t buf_used;     /* bytes waiting in buf */
    unsigned char *buf;  /* [ATOMIC_FILE_BUF] write buffer (owned) */
    uint64_t fail_after; /* tests only, set after open: when non-zero, the
                            write that would pass this many bytes fails as a
                            full disk would */
} atomic_file;

/* Creates the temporary file next to path (mode 0666 less the umask).
 * On failure nothing is left on disk and f is safe to abort. */
moe_status atomic_file_open(atomic_file *f, const char *path, moe_error *err);

/* Appends n bytes. On failure the file is aborted. */
moe_status atomic_file_write(atomic_file *f, const void *data, size_t n,
                             moe_error *err);

/* Flushes, fsyncs, closes, renames over the target and fsyncs the directory.
 * On failure before the rename the target is untouched and the temporary
 * file is removed. f is closed either way. */
moe_status atomic_file_commit(atomic_file *f, moe_error *err);

/* Closes and removes the temporary file; the target is untouched. */
void atomic_file_abort(atomic_file *f);

#endif
