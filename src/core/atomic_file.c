/* atomic_file.c: temporary file + fsync + rename (see atomic_file.h).
 * Not for: anything but plain local files; the rename must stay within one
 * directory, which is why the temporary file lives next to the target. */
#include "core/atomic_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/cancel.h"
#include "core/error.h"

/* The fuzz build only (make fuzz): its harnesses write thousands of files a
 * second into a scratch folder, where durability is not what is tested. */
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
#define fsync(fd) ((void)(fd), 0)
#endif

/* Length of the directory part of path ("" -> none, "/x" -> "/"). */
static size_t dir_len(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return 0;
    return slash == path ? 1 : (size_t)(slash - path);
}

static void reset(atomic_file *f) {
    f->fd = -1;
    f->path = NULL;
    f->tmp_path = NULL;
    f->written = 0;
    f->buf_used = 0;
    f->buf = NULL;
    f->fail_after = 0;
}

moe_status atomic_file_open(atomic_file *f, const char *path, moe_error *err) {
    reset(f);
    if (!path || !*path)
        return moe_err(err, MOE_ERR_ARG, "atomic_file_open: empty path");
    size_t n = strlen(path);
    if (path[n - 1] == '/')
        return moe_err(err, MOE_ERR_ARG, "%s: path names a directory, expected a file", path);
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t dl = dir_len(path);

    f->path = malloc(n + 1);
    f->tmp_path = malloc(n + 64);
    f->buf = malloc(ATOMIC_FILE_BUF);
    if (!f->path || !f->tmp_path || !f->buf) {
        atomic_file_abort(f);
        return moe_err(err, MOE_ERR_NOMEM, "%s: out of memory opening for writing", path);
    }
    memcpy(f->path, path, n + 1);

    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t nonce = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^ (uint64_t)(uintptr_t)f;
    for (int attempt = 0; attempt < 100; attempt++) {
        nonce = nonce * 6364136223846793005ull + 1442695040888963407ull;
        int w;
        if (dl == 0)
            w = snprintf(f->tmp_path, n + 64, ".%s.tmp.%ld.%08x", base, (long)getpid(),
                         (unsigned)(nonce >> 32));
        else
            w = snprintf(f->tmp_path, n + 64, "%.*s/.%s.tmp.%ld.%08x",
                         (int)(dl == 1 && path[0] == '/' ? 0 : dl), path, base,
                         (long)getpid(), (unsigned)(nonce >> 32));
        if (w < 0 || (size_t)w >= n + 64) {
            atomic_file_abort(f);
            return moe_err(err, MOE_ERR_ARG, "%s: cannot form a temporary file name", path);
        }
        f->fd = open(f->tmp_path, O_WRONLY | O_CREAT | O_EXCL, 0666);
        if (f->fd >= 0) return MOE_OK;
        if (errno != EEXIST && errno != EINTR) break;
    }
    int e = errno;
    /* tmp_path was never created by us: forget it so abort removes nothing */
    free(f->tmp_path);
    f->tmp_path = NULL;
    atomic_file_abort(f);
    return moe_err(err, MOE_ERR_IO, "%s: cannot create a temporary file in its directory: %s",
                   path, strerror(e));
}

/* Writes all n bytes to fd, retrying partial writes and EINTR. */
static moe_status write_all(atomic_file *f, const unsigned char *p, size_t n, moe_error *err) {
    while (n > 0) {
        ssize_t w = write(f->fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            int e = errno;
            moe_status s = moe_err(err, MOE_ERR_IO, "%s: write failed after %llu bytes: %s",
                                   f->path, (unsigned long long)f->written, strerror(e));
            atomic_file_abort(f);
            return s;
        }
        p += (size_t)w;
        n -= (size_t)w;
    }
    return MOE_OK;
}

static moe_status flush_buf(atomic_file *f, moe_error *err) {
    if (f->buf_used == 0) return MOE_OK;
    size_t n = f->buf_used;
    f->buf_used = 0;
    return write_all(f, f->buf, n, err);
}

moe_status atomic_file_write(atomic_file *f, const void *data, size_t n, moe_error *err) {
    if (f->fd < 0)
        return moe_err(err, MOE_ERR_ARG, "%s: write to a file that is not open",
                       f->path ? f->path : "(atomic file)");
    if (f->fail_after && f->written + n > f->fail_after) {
        moe_status s = moe_err(err, MOE_ERR_IO,
                               "%s: write failed after %llu bytes: no space left on device "
                               "(simulated)", f->path, (unsigned long long)f->written);
        atomic_file_abort(f);
        return s;
    }
    if (cancel_check(err, f->path) != MOE_OK) { /* moe_cancel: remove the temporary file */
        atomic_file_abort(f);
        return MOE_ERR_CANCELLED;
    }
    const unsigned char *p = data;
    if (f->buf_used + n <= ATOMIC_FILE_BUF) {
        if (n) memcpy(f->buf + f->buf_used, p, n);
        f->buf_used += n;
    } else {
        moe_status s = flush_buf(f, err);
        if (s) return s;
        if (n < ATOMIC_FILE_BUF) {
            memcpy(f->buf, p, n);
            f->buf_used = n;
        } else if ((s = write_all(f, p, n, err)) != MOE_OK) {
            return s;
        }
    }
    f->written += n;
    return MOE_OK;
}

/* fsync of the directory holding path, so the rename itself is durable.
 * Some file systems cannot fsync a directory (EINVAL): not an error. */
static moe_status sync_dir(const char *path, moe_error *err) {
    size_t dl = dir_len(path);
    char *dir = malloc(dl + 2);
    if (!dir) return moe_err(err, MOE_ERR_NOMEM, "%s: out of memory", path);
    if (dl == 0) {
        dir[0] = '.';
        dir[1] = '\0';
    } else {
        memcpy(dir, path, dl);
        dir[dl] = '\0';
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    moe_status s = MOE_OK;
    if (fd < 0) {
        s = moe_err(err, MOE_ERR_IO, "%s: written, but cannot open directory %s to sync it: %s",
                    path, dir, strerror(errno));
    } else {
        if (fsync(fd) != 0 && errno != EINVAL && errno != EROFS)
            s = moe_err(err, MOE_ERR_IO, "%s: written, but fsync of directory %s failed: %s",
                        path, dir, strerror(errno));
        close(fd);
    }
    free(dir);
    return s;
}

moe_status atomic_file_commit(atomic_file *f, moe_error *err) {
    if (f->fd < 0)
        return moe_err(err, MOE_ERR_ARG, "%s: commit of a file that is not open",
                       f->path ? f->path : "(atomic file)");
    moe_status s = cancel_check(err, f->path);
    if (s) {
        atomic_file_abort(f);
        return s;
    }
    s = flush_buf(f, err);
    if (s) return s;
    if (fsync(f->fd) != 0) {
        s = moe_err(err, MOE_ERR_IO, "%s: fsync failed: %s", f->path, strerror(errno));
        atomic_file_abort(f);
        return s;
    }
    int rc = close(f->fd);
    f->fd = -1;
    if (rc != 0) {
        s = moe_err(err, MOE_ERR_IO, "%s: close failed: %s", f->path, strerror(errno));
        atomic_file_abort(f);
        return s;
    }
    if (rename(f->tmp_path, f->path) != 0) {
        s = moe_err(err, MOE_ERR_IO, "%s: rename from %s failed: %s", f->path, f->tmp_path,
                    strerror(errno));
        atomic_file_abort(f);
        return s;
    }
    /* the temporary file is now the target: nothing left to remove */
    free(f->tmp_path);
    f->tmp_path = NULL;
    s = sync_dir(f->path, err);
    atomic_file_abort(f); /* frees the rest */
    return s;
}

void atomic_file_abort(atomic_file *f) {
    if (!f) return;
    if (f->fd >= 0) close(f->fd);
    if (f->tmp_path) unlink(f->tmp_path);
    free(f->tmp_path);
    free(f->path);
    free(f->buf);
    reset(f);
}
