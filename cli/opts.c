/* opts.c: option parsing shared by the commands: string, seed and file
 * options, and the one-line usage errors (no page of usage after a typo).
 * The integer and float options are in main.c (cli_int_opt, cli_float_opt),
 * the training ones in train_opts.c. */
#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int cli_str_opt(const char *name, const char *alt, int argc, char **argv, int *i, const char **out, int *bad) {
    if (strcmp(argv[*i], name) && (!alt || strcmp(argv[*i], alt))) return 0;
    if (*i + 1 >= argc) {
        fprintf(stderr, "moe: %s needs a value\n", argv[*i]);
        *bad = 1;
        return 1;
    }
    *out = argv[++*i];
    return 1;
}

int cli_seed_opt(const char *name, int argc, char **argv, int *i, int64_t *out, int *bad) {
    if (strcmp(argv[*i], name)) return 0;
    if (*i + 1 >= argc) { fprintf(stderr, "moe: %s needs a value (-1: a random seed)\n", name); *bad = 1; return 1; }
    const char *v = argv[++*i];
    char *end = NULL;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (!*v || *end || errno || x < -1) {
        fprintf(stderr, "moe: %s: '%s' is not a seed (an integer >= 0, or -1 for a random one)\n", name, v);
        *bad = 1;
    } else {
        *out = x;
    }
    return 1;
}

uint64_t cli_seed_resolve(int64_t seed) {
    if (seed >= 0) return (uint64_t)seed;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t s = ((uint64_t)ts.tv_sec * 1000003u) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32);
    s %= 4294967296ull; /* short enough to type back */
    fprintf(stderr, "moe: seed %llu (give --seed %llu to repeat this run)\n", (unsigned long long)s,
            (unsigned long long)s);
    return s;
}

char *cli_read_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) { fprintf(stderr, "moe: cannot read %s: %s\n", path, strerror(errno)); return NULL; }
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        n += fread(buf + n, 1, cap - n - 1, f);
        if (n < cap - 1) break;
        char *q = realloc(buf, cap * 2);
        if (!q) { free(buf); buf = NULL; break; }
        buf = q;
        cap *= 2;
    }
    int bad = ferror(f);
    fclose(f);
    if (!buf || bad) {
        fprintf(stderr, "moe: cannot read %s: %s\n", path, buf ? "read error" : "out of memory");
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    return buf;
}

int cli_unknown(const char *cmd, const char *opt) {
    if (opt[0] == '-')
        fprintf(stderr, "moe %s: unknown option '%s' (moe %s --help lists them)\n", cmd, opt, cmd);
    else
        fprintf(stderr, "moe %s: unexpected argument '%s' (moe %s --help)\n", cmd, opt, cmd);
    return 2;
}

int cli_usage_error(const char *cmd, const char *what) {
    fprintf(stderr, "moe %s: %s (moe %s --help)\n", cmd, what, cmd);
    return 2;
}

int cli_sampler_opt(moe_sampler_config *sc, int64_t *seed, int argc, char **argv, int *i, int *bad) {
    return cli_float_opt("--temp", argc, argv, i, &sc->temperature, bad) ||
           cli_int_opt("--top-k", argc, argv, i, &sc->top_k, bad) ||
           cli_float_opt("--top-p", argc, argv, i, &sc->top_p, bad) ||
           cli_float_opt("--min-p", argc, argv, i, &sc->min_p, bad) ||
           cli_float_opt("--repeat-penalty", argc, argv, i, &sc->repeat_penalty, bad) ||
           cli_int_opt("--repeat-last-n", argc, argv, i, &sc->repeat_last_n, bad) ||
           cli_seed_opt("--seed", argc, argv, i, seed, bad) || cli_seed_opt("-s", argc, argv, i, seed, bad);
}

const char *cli_msg(const char *cmd, const char *msg) {
    for (int round = 0; round < 2; round++) {
        size_t n = 0;
        int under = 0;
        while ((msg[n] >= 'a' && msg[n] <= 'z') || (msg[n] >= '0' && msg[n] <= '9') || msg[n] == '_')
            under |= msg[n++] == '_';
        const int is_cmd = cmd && n == strlen(cmd) && !strncmp(msg, cmd, n);
        if (n > 0 && (under || is_cmd) && msg[n] == ':' && msg[n + 1] == ' ') msg += n + 2;
        else break;
    }
    return msg;
}
