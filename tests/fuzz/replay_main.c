/* replay_main.c: a main for the fuzz harnesses outside libFuzzer: runs
 * LLVMFuzzerTestOneInput once on each file named (a folder: on each file in
 * it), so the normal test suite replays the seed corpora and the crash
 * inputs kept in tests/fuzz/regressions with the normal compiler (and under
 * make sanitize with ASan + UBSan). Prints "ok fuzz_replay/HARNESS (N inputs)"
 * at the end; a crash is the failure. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) { printf("FAIL fuzz_replay: cannot read %s\n", path); return -1; }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc(n > 0 ? (size_t)n : 1);
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
        fclose(f);
        free(buf);
        printf("FAIL fuzz_replay: cannot read %s\n", path);
        return -1;
    }
    fclose(f);
    LLVMFuzzerTestOneInput(buf, (size_t)n);
    free(buf);
    return 1;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int main(int argc, char **argv) {
    const char *name = argc > 1 ? argv[1] : "?";
    int n = 0, bad = 0;
    for (int i = 2; i < argc; i++) {
        struct stat sb;
        if (stat(argv[i], &sb) != 0) continue; /* no regressions yet */
        if (!S_ISDIR(sb.st_mode)) {
            int r = run_file(argv[i]);
            n += r > 0;
            bad |= r < 0;
            continue;
        }
        DIR *d = opendir(argv[i]);
        if (!d) continue;
        char **names = NULL;
        size_t nn = 0;
        struct dirent *de;
        while ((de = readdir(d))) {
            if (de->d_name[0] == '.') continue;
            names = realloc(names, (nn + 1) * sizeof *names);
            names[nn++] = strdup(de->d_name);
        }
        closedir(d);
        if (nn > 1) qsort(names, nn, sizeof *names, cmp_str);
        for (size_t k = 0; k < nn; k++) {
            char p[4096];
            snprintf(p, sizeof p, "%s/%s", argv[i], names[k]);
            if (stat(p, &sb) == 0 && S_ISREG(sb.st_mode)) {
                int r = run_file(p);
                n += r > 0;
                bad |= r < 0;
            }
            free(names[k]);
        }
        free(names);
    }
    if (!bad) printf("ok fuzz_replay/%s (%d inputs)\n", name, n);
    return bad;
}
