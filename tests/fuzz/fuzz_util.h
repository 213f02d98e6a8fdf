/* fuzz_util.h: what the libFuzzer harnesses of tests/fuzz share (see
 * docs/TESTING.md): a private scratch folder for the entry points that read
 * files or folders, writing an input there, and cutting an input into parts.
 *
 * Each harness defines LLVMFuzzerTestOneInput. Built with clang and
 * -fsanitize=fuzzer,address,undefined by `make fuzz`; built with the normal
 * compiler and replay_main.c (a main that runs each file named on the
 * command line once) into the normal test suite, which replays the seed
 * corpora and tests/fuzz/regressions. Not for: library code.
 */
#ifndef MOE_FUZZ_UTIL_H
#define MOE_FUZZ_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The scratch folder of this process ($TMPDIR or /tmp, then moe_fuzz_PID),
 * created on first use and removed (with the files the harness names) at
 * exit. */
static char fz_dir_[256];
static const char *fz_files_[8];
static int fz_n_files_;

static void fz_cleanup_(void) {
    char p[512];
    for (int i = 0; i < fz_n_files_; i++) {
        snprintf(p, sizeof p, "%s/%s", fz_dir_, fz_files_[i]);
        unlink(p);
    }
    rmdir(fz_dir_);
}

/* Names files (relative to the scratch folder) to remove at exit. */
static inline const char *fz_dir(void) {
    if (!fz_dir_[0]) {
        const char *t = getenv("TMPDIR");
        snprintf(fz_dir_, sizeof fz_dir_, "%s/moe_fuzz_%d", t && t[0] ? t : "/tmp", (int)getpid());
        mkdir(fz_dir_, 0700);
        atexit(fz_cleanup_);
    }
    return fz_dir_;
}

static inline void fz_own(const char *name) {
    for (int i = 0; i < fz_n_files_; i++)
        if (!strcmp(fz_files_[i], name)) return;
    if (fz_n_files_ < 8) fz_files_[fz_n_files_++] = name;
}

/* path <- the scratch folder + "/" + name; writes data[0, n) there (a NULL
 * data removes the file). Returns 1 when done. */
static inline int fz_write(char *path, size_t cap, const char *name, const void *data, size_t n) {
    snprintf(path, cap, "%s/%s", fz_dir(), name);
    fz_own(name);
    if (!data) {
        unlink(path);
        return 1;
    }
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    int ok = fwrite(data, 1, n, f) == n;
    ok &= fclose(f) == 0;
    return ok;
}

/* Cuts data[0, n) at each occurrence of sep into at most max parts; part i
 * is [start[i], start[i] + len[i]). Returns the number of parts (>= 1). */
static inline int fz_split(const uint8_t *data, size_t n, const char *sep, int max,
                           const uint8_t **start, size_t *len) {
    const size_t sn = strlen(sep);
    int k = 0;
    size_t b = 0;
    for (size_t i = 0; i + sn <= n && k < max - 1;) {
        if (!memcmp(data + i, sep, sn)) {
            start[k] = data + b;
            len[k++] = i - b;
            i += sn;
            b = i;
        } else {
            i++;
        }
    }
    start[k] = data + b;
    len[k++] = n - b;
    return k;
}

/* Aborts (a finding) when a failure has no message, or when a message holds
 * a control byte other than '\n' (names from files are escaped, so a file
 * cannot send escape sequences to a terminal through an error). */
static inline void fz_check_err(int failed, const char *msg) {
    if (failed && !msg[0]) {
        fprintf(stderr, "a failure without a message\n");
        abort();
    }
    for (const unsigned char *p = (const unsigned char *)msg; failed && *p; p++)
        if ((*p < 0x20 && *p != '\n') || *p == 0x7f || (p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f)) {
            fprintf(stderr, "control byte 0x%02x in the message: %s\n", *p, msg);
            abort();
        }
}

/* The separator of multi-file inputs (safetensors shards, Hugging Face
 * folders): a line no JSON or binary header of ours contains. */
#define FZ_SEP "\n#moe-fuzz-file#\n"

#endif
