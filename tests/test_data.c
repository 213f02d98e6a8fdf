/* test_data.c: the built-in corpus (corpus/corpus.h) and the data pipeline
 * (train/data.h).
 *
 * Corpus: determinism per seed, sizes and document separators, valid UTF-8,
 * every document recognisable as its domain and all domains present in a
 * mixed corpus, arithmetic lines parsed and checked, records in one schema
 * with emails derived from names, code indented in steps of 4 with blocks
 * after every ":", unigram byte entropy of 4 MB. Sources: concatenation order,
 * folder walks (sorted, hidden and empty files skipped, symlink loops), and
 * errors naming the path: missing, empty, NUL byte, invalid UTF-8 (with its
 * offset), empty folder, unreadable, more than 4 GiB (a sparse file). Token
 * cache: round trip, absent file, stale fingerprints, every truncation, every
 * single-byte flip, crafted out-of-range tokens. Split errors, loader bounds,
 * determinism and exact resume from a saved state, validation batches.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lzma.h>
#include <zlib.h>
#include <zstd.h>

#include "testutil.h"
#include "corpus/corpus.h"
#include "train/data.h"
#include "train/sources.h"

static char tmpdir[256];

/* ------------------------------------------------------------ helpers */

static void path_of(char *out, size_t cap, const char *rel) { snprintf(out, cap, "%s/%s", tmpdir, rel); }

static int write_file(const char *rel, const void *p, size_t n) {
    char path[512];
    path_of(path, sizeof path, rel);
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = n ? fwrite(p, 1, n, f) : 0;
    return fclose(f) == 0 && w == n ? 0 : -1;
}
static int make_dir(const char *rel) {
    char path[512];
    path_of(path, sizeof path, rel);
    return mkdir(path, 0755);
}
static void remove_tree(const char *path) {
    struct stat sb;
    if (lstat(path, &sb) != 0) return;
    if (S_ISDIR(sb.st_mode)) {
        chmod(path, 0755);
        DIR *d = opendir(path);
        if (d) {
            struct dirent *e;
            while ((e = readdir(d)) != NULL) {
                if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
                char c[1024];
                snprintf(c, sizeof c, "%s/%s", path, e->d_name);
                remove_tree(c);
            }
            closedir(d);
        }
        rmdir(path);
    } else {
        unlink(path);
    }
}
/* Reads sources given as paths relative to tmpdir. */
static moe_status read_rel(uint8_t **t, size_t *n, const char *const *rel, int k, moe_error *e) {
    char buf[8][512];
    const char *p[8];
    for (int i = 0; i < k; i++) { path_of(buf[i], sizeof buf[i], rel[i]); p[i] = buf[i]; }
    return data_read_sources(t, n, NULL, p, k, 0, e);
}

/* ------------------------------------------------------------ corpus */

static int count_sub(const uint8_t *t, size_t n, const char *s) {
    size_t l = strlen(s);
    int c = 0;
    for (size_t i = 0; i + l <= n; i++) if (!memcmp(t + i, s, l)) c++;
    return c;
}

/* Which domain a document looks like, by its markers; -1 none, -2 several. */
static int classify(const char *d, size_t n) {
    char *s = malloc(n + 1);
    memcpy(s, d, n);
    s[n] = 0;
    int arith = 1, rec = 1, code = !strncmp(s, "def ", 4) || !strncmp(s, "class ", 6);
    for (char *line = s; *line;) {
        char *e = strchr(line, '\n');
        if (e) *e = 0;
        int a, b, c, used = 0;
        char op;
        if (!(sscanf(line, "%d %c %d = %d%n", &a, &op, &b, &c, &used) == 4 && used == (int)strlen(line) &&
              strchr("+-*", op)))
            arith = 0;
        size_t ll = strlen(line);
        if (strncmp(line, "{\"name\": \"", 10) || ll < 2 || line[ll - 1] != '}') rec = 0;
        if (e) *e = '\n';
        line = e ? e + 1 : line + strlen(line);
    }
    int de = strstr(s, " der ") || strstr(s, " die ") || strstr(s, " das ") || strstr(s, " und ") ||
             strstr(s, " ein") || strstr(s, "Es war");
    int en = strstr(s, " the ") || strstr(s, "The ") || strstr(s, " was ");
    int prose = !arith && !rec && !code;
    int en_ok = prose && en && !de, de_ok = prose && de && !en;
    int k = arith + rec + code + en_ok + de_ok;
    free(s);
    if (k == 0) return -1;
    if (k > 1) return -2;
    return arith ? CORPUS_ARITH : rec ? CORPUS_RECORDS : code ? CORPUS_CODE : en_ok ? CORPUS_ENGLISH : CORPUS_GERMAN;
}

static void test_corpus_determinism(void) {
    const char *name = "corpus/determinism";
    uint8_t *a = NULL, *b = NULL, *c = NULL;
    size_t na, nb, nc;
    moe_error e;
    if (corpus_generate(&a, &na, 200000, 7, &e) || corpus_generate(&b, &nb, 200000, 7, &e) ||
        corpus_generate(&c, &nc, 200000, 8, &e)) {
        tu_fail(name, "%s", e.msg);
    } else if (na != nb || memcmp(a, b, na)) {
        tu_fail(name, "same seed, different text (%zu vs %zu bytes)", na, nb);
    } else if (na == nc && !memcmp(a, c, na)) {
        tu_fail(name, "seeds 7 and 8 give the same text");
    } else {
        int bad = 0;
        for (int d = 0; d < CORPUS_N_DOMAINS && !bad; d++) {
            uint8_t *x, *y;
            size_t nx, ny;
            if (corpus_generate_domain(&x, &nx, d, 20000, 3, &e) || corpus_generate_domain(&y, &ny, d, 20000, 3, &e)) {
                tu_fail(name, "domain %d: %s", d, e.msg);
                return;
            }
            if (nx != ny || memcmp(x, y, nx)) { tu_fail(name, "domain %s not deterministic", corpus_domain_name(d)); bad = 1; }
            free(x);
            free(y);
        }
        if (!bad) tu_ok(name);
    }
    free(a);
    free(b);
    free(c);
}

static void test_corpus_shape(void) {
    const char *name = "corpus/size_separators_utf8";
    const size_t targets[] = {1, 100, 5000, 123457};
    for (size_t k = 0; k < sizeof targets / sizeof *targets; k++) {
        for (int d = -1; d < CORPUS_N_DOMAINS; d++) {
            uint8_t *t;
            size_t n, bad;
            int nul;
            moe_error e;
            moe_status s = d < 0 ? corpus_generate(&t, &n, targets[k], 11, &e)
                                 : corpus_generate_domain(&t, &n, d, targets[k], 11, &e);
            if (s) { tu_fail(name, "domain %d target %zu: %s", d, targets[k], e.msg); return; }
            const char *why = NULL;
            if (n < targets[k] || n > targets[k] + 4096) why = "size outside [target, target + 4096]";
            else if (t[n] != 0) why = "not NUL-terminated";
            else if (t[n - 1] != '\n' || (n >= 2 && t[n - 2] == '\n')) why = "does not end with exactly one newline";
            else if (t[0] == '\n' || count_sub(t, n, "\n\n\n")) why = "a blank line too many";
            else if (!data_check_text(t, n, &bad, &nul)) why = "not UTF-8 text";
            free(t);
            if (why) { tu_fail(name, "domain %d target %zu (%zu bytes): %s", d, targets[k], n, why); return; }
        }
    }
    tu_ok(name);
}

static void test_corpus_domains(void) {
    const char *name = "corpus/every_document_is_its_domain";
    uint8_t *t;
    size_t n;
    moe_error e;
    if (corpus_generate(&t, &n, 1000000, 5, &e)) { tu_fail(name, "%s", e.msg); return; }
    size_t bytes[CORPUS_N_DOMAINS] = {0};
    int docs = 0;
    for (size_t i = 0; i < n;) {
        const uint8_t *end = NULL;
        for (size_t j = i; j + 1 < n; j++) if (t[j] == '\n' && t[j + 1] == '\n') { end = t + j + 1; break; }
        size_t len = end ? (size_t)(end - (t + i)) : n - i;
        int d = classify((const char *)t + i, len);
        if (d < 0) {
            tu_fail(name, "document %d at byte %zu looks like %s: %.200s", docs, i, d == -1 ? "no domain" : "several",
                    (const char *)t + i);
            free(t);
            return;
        }
        bytes[d] += len;
        docs++;
        i += len + 1;
    }
    for (int d = 0; d < CORPUS_N_DOMAINS; d++) {
        double share = (double)bytes[d] / (double)n;
        if (share < 0.12 || share > 0.28) {
            tu_fail(name, "domain %s has %.1f%% of the bytes, expected 12..28%%", corpus_domain_name(d), 100 * share);
            free(t);
            return;
        }
    }
    /* and each single-domain stream is only that domain */
    for (int d = 0; d < CORPUS_N_DOMAINS; d++) {
        uint8_t *u;
        size_t m;
        if (corpus_generate_domain(&u, &m, d, 100000, 9, &e)) { tu_fail(name, "%s", e.msg); free(t); return; }
        for (size_t i = 0; i < m;) {
            const uint8_t *end = NULL;
            for (size_t j = i; j + 1 < m; j++) if (u[j] == '\n' && u[j + 1] == '\n') { end = u + j + 1; break; }
            size_t len = end ? (size_t)(end - (u + i)) : m - i;
            int c = classify((const char *)u + i, len);
            if (c != d) {
                tu_fail(name, "corpus_generate_domain(%s) gave a document classified %d: %.200s",
                        corpus_domain_name(d), c, (const char *)u + i);
                free(u);
                free(t);
                return;
            }
            i += len + 1;
        }
        free(u);
    }
    /* domain markers in the mixed text */
    const char *markers[] = {"Once there was", "Es war einmal", "    return", " = ", "\"email\": \"", "ä", "ü",
                             "ß", "for ", "def ", " because ", " weil ", "\", sagte"};
    for (size_t k = 0; k < sizeof markers / sizeof *markers; k++)
        if (!count_sub(t, n, markers[k])) { tu_fail(name, "marker \"%s\" never occurs", markers[k]); free(t); return; }
    free(t);
    char m[96];
    snprintf(m, sizeof m, "%s (%d documents)", name, docs);
    tu_ok(m);
}

static void test_corpus_arith(void) {
    const char *name = "corpus/arith_lines_correct";
    uint8_t *t;
    size_t n;
    moe_error e;
    if (corpus_generate_domain(&t, &n, CORPUS_ARITH, 20000, 1, &e)) { tu_fail(name, "%s", e.msg); return; }
    int lines = 0, ops[3] = {0, 0, 0};
    char *s = (char *)t;
    for (char *line = strtok(s, "\n"); line; line = strtok(NULL, "\n")) {
        long a, b, c;
        char op;
        int used = 0;
        if (sscanf(line, "%ld %c %ld = %ld%n", &a, &op, &b, &c, &used) != 4 || used != (int)strlen(line)) {
            tu_fail(name, "line %d \"%s\" is not \"a op b = c\"", lines, line);
            free(t);
            return;
        }
        long want = op == '+' ? a + b : op == '-' ? a - b : op == '*' ? a * b : -1;
        if (want != c || c < 0) { tu_fail(name, "line %d \"%s\": expected %ld", lines, line, want); free(t); return; }
        ops[op == '+' ? 0 : op == '-' ? 1 : 2]++;
        lines++;
    }
    free(t);
    if (lines < 300 || !ops[0] || !ops[1] || !ops[2]) { tu_fail(name, "%d lines (+ %d, - %d, * %d)", lines, ops[0], ops[1], ops[2]); return; }
    char m[96];
    snprintf(m, sizeof m, "%s (%d lines)", name, lines);
    tu_ok(m);
}

static void test_corpus_records(void) {
    const char *name = "corpus/records_schema";
    uint8_t *t;
    size_t n;
    moe_error e;
    if (corpus_generate_domain(&t, &n, CORPUS_RECORDS, 30000, 2, &e)) { tu_fail(name, "%s", e.msg); return; }
    int lines = 0;
    for (char *line = strtok((char *)t, "\n"); line; line = strtok(NULL, "\n")) {
        char first[64], last[64], city[64], email[128], job[64], act[8];
        int age, used = 0;
        if (sscanf(line, "{\"name\": \"%63[A-Za-z] %63[A-Za-z]\", \"age\": %d, \"city\": \"%63[A-Za-z]\", "
                         "\"email\": \"%127[a-z0-9.@]\", \"job\": \"%63[a-z]\", \"active\": %7[a-z]}%n",
                   first, last, &age, city, email, job, act, &used) != 7 || used != (int)strlen(line)) {
            tu_fail(name, "line %d does not follow the schema: %s", lines, line);
            free(t);
            return;
        }
        for (char *p = last; *p; p++) if (*p >= 'A' && *p <= 'Z') *p = (char)(*p + 32);
        if (age < 18 || age > 90 || (strcmp(act, "true") && strcmp(act, "false")) || !strstr(email, last) ||
            !strchr(email, '@') || email[0] != (char)(first[0] + 32)) {
            tu_fail(name, "line %d has inconsistent fields: %s", lines, line);
            free(t);
            return;
        }
        lines++;
    }
    free(t);
    if (lines < 100) { tu_fail(name, "only %d records", lines); return; }
    tu_ok(name);
}

static void test_corpus_code(void) {
    const char *name = "corpus/code_indentation";
    uint8_t *t;
    size_t n;
    moe_error e;
    if (corpus_generate_domain(&t, &n, CORPUS_CODE, 60000, 4, &e)) { tu_fail(name, "%s", e.msg); return; }
    int prev_ind = -1, prev_colon = 0, lines = 0, defs = 0;
    char *s = (char *)t;
    for (char *line = s, *next; *line; line = next) {
        char *nl = strchr(line, '\n');
        next = nl + 1;
        *nl = 0;
        if (!*line) { prev_ind = -1; prev_colon = 0; continue; } /* document boundary */
        int ind = 0;
        while (line[ind] == ' ') ind++;
        size_t len = strlen(line);
        int depth = 0;
        for (char *p = line; *p; p++) { if (*p == '(' || *p == '[') depth++; if (*p == ')' || *p == ']') depth--; }
        const char *why = NULL;
        if (ind % 4) why = "indentation not a multiple of 4";
        else if (prev_ind < 0 && ind) why = "a document starts indented";
        else if (prev_colon && ind != prev_ind + 4) why = "no indented block after ':'";
        else if (!prev_colon && prev_ind >= 0 && ind > prev_ind) why = "indented without ':'";
        else if (depth) why = "unbalanced brackets";
        if (why) { tu_fail(name, "line %d \"%s\": %s", lines, line, why); free(t); return; }
        if (!strncmp(line + ind, "def ", 4)) defs++;
        prev_colon = line[len - 1] == ':' && line[ind] != '#';
        prev_ind = ind;
        lines++;
    }
    free(t);
    if (defs < 20) { tu_fail(name, "only %d functions", defs); return; }
    tu_ok(name);
}

static void test_corpus_entropy_api(void) {
    const char *name = "corpus/entropy_and_api";
    uint8_t *t;
    size_t n;
    moe_error e;
    if (corpus_generate(&t, &n, 4u << 20, 1, &e)) { tu_fail(name, "%s", e.msg); return; }
    int32_t *ids = malloc(n * sizeof *ids);
    for (size_t i = 0; i < n; i++) ids[i] = t[i];
    double h = data_unigram_entropy_bits(ids, n, 256);
    free(ids);
    free(t);
    if (!(h > 3.5 && h < 6.0)) { tu_fail(name, "byte entropy %.3f bits outside (3.5, 6)", h); return; }
    moe_status s1 = corpus_generate(&t, &n, 0, 1, &e);
    moe_status s2 = corpus_generate_domain(&t, &n, CORPUS_N_DOMAINS, 10, 1, &e);
    if (s1 != MOE_ERR_ARG || s2 != MOE_ERR_ARG || t != NULL || n != 0) {
        tu_fail(name, "bad arguments gave %d, %d", s1, s2);
        return;
    }
    for (int d = 0; d < CORPUS_N_DOMAINS; d++)
        if (corpus_domain_from_name(corpus_domain_name(d)) != d || !corpus_domain_prompt(d)[0]) {
            tu_fail(name, "domain %d: name/prompt", d);
            return;
        }
    if (strcmp(corpus_domain_name(-1), "?") || corpus_domain_from_name("nope") != -1) { tu_fail(name, "out of range"); return; }
    char m[96];
    snprintf(m, sizeof m, "%s (4 MiB: %.3f bits/byte)", name, h);
    tu_ok(m);
}

/* ------------------------------------------------------------ sources */

static void test_check_text(void) {
    const char *name = "data/utf8_check";
    struct { const char *s; size_t n; int ok; size_t off; int nul; } c[] = {
        {"plain ascii text, long enough for the fast path", 47, 1, 0, 0},
        {"caf\xC3\xA9 \xE2\x82\xAC \xF0\x9D\x84\x9E", 14, 1, 0, 0},
        {"abc\0def", 7, 0, 3, 1},
        {"0123456789ab\0", 13, 0, 12, 1},
        {"ab\xC3\x28", 4, 0, 3, 0},
        {"\xC0\x80", 2, 0, 0, 0},
        {"\xED\xA0\x80", 3, 0, 1, 0},
        {"abc\xE2\x82", 5, 0, 3, 0},
        {"\xF4\x90\x80\x80", 4, 0, 1, 0},
        {"\xE2\x82\x41", 3, 0, 2, 0},
        {"\xFF", 1, 0, 0, 0},
        {"x\x80", 2, 0, 1, 0},
    };
    for (size_t i = 0; i < sizeof c / sizeof *c; i++) {
        size_t off = 999;
        int nul = -1;
        int ok = data_check_text((const uint8_t *)c[i].s, c[i].n, &off, &nul);
        if (ok != c[i].ok || (!ok && (off != c[i].off || nul != c[i].nul))) {
            tu_fail(name, "case %zu: ok %d off %zu nul %d, expected %d %zu %d", i, ok, off, nul, c[i].ok, c[i].off, c[i].nul);
            return;
        }
    }
    tu_ok(name);
}

#define ONE(x) (&(uint64_t){(uint64_t)(x)}) /* a table of one source */

static int msg_has(const moe_error *e, const char *a, const char *b) {
    return strstr(e->msg, a) && (!b || strstr(e->msg, b));
}

static void test_sources(void) {
    const char *name = "data/read_sources";
    uint8_t *t = NULL;
    size_t n;
    moe_error e;
    char full[512];
    if (write_file("a.txt", "alpha", 5) || write_file("b.txt", "beta\n", 5) || make_dir("dir") || make_dir("dir/sub") ||
        make_dir("dir/.git") || write_file("dir/z.txt", "zed", 3) || write_file("dir/a.txt", "aaa", 3) ||
        write_file("dir/sub/m.txt", "mmm", 3) || write_file("dir/.hidden", "hidden", 6) ||
        write_file("dir/.git/x", "x", 1) || write_file("dir/empty.txt", "", 0)) {
        tu_fail(name, "setup: %s", strerror(errno));
        return;
    }
    char loop[512], target[512];
    path_of(loop, sizeof loop, "dir/sub/loop");
    path_of(target, sizeof target, "dir");
    if (symlink(target, loop) != 0) { tu_fail(name, "symlink: %s", strerror(errno)); return; }
    const char *order[] = {"b.txt", "a.txt", "dir"};
    if (read_rel(&t, &n, order, 3, &e)) { tu_fail(name, "%s", e.msg); return; }
    const char *want = "beta\n\n\nalpha\n\naaa\n\nmmm\n\nzed";
    if (n != strlen(want) || memcmp(t, want, n) || t[n] != 0) {
        tu_fail(name, "got \"%.*s\", expected \"%s\"", (int)n, (const char *)t, want);
        free(t);
        return;
    }
    free(t);
    tu_ok(name);

    name = "data/read_sources_errors";
    struct { const char *rel; const char *file; const char *text; moe_status st; } c[] = {
        {"missing.txt", NULL, "does not exist", MOE_ERR_IO},
        {"dir/empty.txt", NULL, "is empty", MOE_ERR_FORMAT},
        {"nul.txt", "nul.txt", "NUL byte at offset 3", MOE_ERR_FORMAT},
        {"bad.txt", "bad.txt", "offset 3", MOE_ERR_FORMAT},
        {"emptydir", NULL, "no usable files", MOE_ERR_FORMAT},
        {"hiddenonly", NULL, "no usable files", MOE_ERR_FORMAT},
        {"bindir", "bindir/b.bin", "invalid byte 0x89 at offset 0", MOE_ERR_FORMAT},
    };
    if (write_file("nul.txt", "abc\0def", 7) || write_file("bad.txt", "ab\xC3\x28", 4) || make_dir("emptydir") ||
        make_dir("hiddenonly") || write_file("hiddenonly/.x", "x", 1) || write_file("hiddenonly/e", "", 0) ||
        make_dir("bindir") || write_file("bindir/a.txt", "fine", 4) || write_file("bindir/b.bin", "\x89PNG", 4)) {
        tu_fail(name, "setup: %s", strerror(errno));
        return;
    }
    for (size_t i = 0; i < sizeof c / sizeof *c; i++) {
        const char *p[2] = {"a.txt", c[i].rel};
        t = (uint8_t *)"x";
        n = 1;
        moe_status s = read_rel(&t, &n, p, 2, &e);
        path_of(full, sizeof full, c[i].file ? c[i].file : c[i].rel);
        if (s != c[i].st || t != NULL || n != 0 || !msg_has(&e, full, c[i].text)) {
            tu_fail(name, "%s: status %d (expected %d), message \"%s\" (expected the path and \"%s\")", c[i].rel, s,
                    c[i].st, s ? e.msg : "", c[i].text);
            if (!s) free(t);
            return;
        }
    }
    const char *none[1] = {NULL};
    if (data_read_sources(&t, &n, NULL, none, 0, 0, &e) != MOE_ERR_ARG) { tu_fail(name, "no paths accepted"); return; }
    tu_ok(name);

    name = "data/read_sources_unreadable";
    if (geteuid() == 0) {
        tu_skip(name, "running as root: permissions do not stop reads");
    } else {
        const char *p[1] = {"locked.txt"};
        write_file("locked.txt", "secret", 6);
        path_of(full, sizeof full, "locked.txt");
        chmod(full, 0);
        moe_status s = read_rel(&t, &n, p, 1, &e);
        if (s != MOE_ERR_IO || !msg_has(&e, full, "cannot read")) tu_fail(name, "status %d: %s", s, e.msg);
        else tu_ok(name);
        chmod(full, 0644);
    }

    name = "data/read_sources_4GiB_limit";
    path_of(full, sizeof full, "huge.txt");
    int fd = open(full, O_CREAT | O_WRONLY | O_TRUNC, 0644);
    if (fd < 0 || ftruncate(fd, (off_t)DATA_MAX_BYTES + 1) != 0) {
        tu_skip(name, "cannot make a sparse file of 4 GiB here");
        if (fd >= 0) close(fd);
    } else {
        close(fd);
        const char *p[1] = {"huge.txt"};
        moe_status s = read_rel(&t, &n, p, 1, &e);
        if (s != MOE_ERR_FORMAT || !msg_has(&e, "4 GiB", "4294967297")) tu_fail(name, "status %d: %s", s, e.msg);
        else tu_ok(name);
    }
    unlink(full);
}

/* ------------------------------------------------------------ fingerprint, cache */

static void test_fingerprint(void) {
    const char *name = "data/fingerprint";
    uint8_t buf[100];
    for (int i = 0; i < 100; i++) buf[i] = (uint8_t)(i * 37 + 1);
    uint64_t h = data_fingerprint(buf, 100);
    if (h != data_fingerprint(buf, 100)) { tu_fail(name, "not deterministic"); return; }
    for (int i = 0; i < 100 * 8; i++) {
        buf[i / 8] ^= (uint8_t)(1u << (i % 8));
        uint64_t g = data_fingerprint(buf, 100);
        buf[i / 8] ^= (uint8_t)(1u << (i % 8));
        if (g == h) { tu_fail(name, "flipping bit %d leaves the hash", i); return; }
    }
    uint8_t z[65] = {0};
    uint64_t hz[65];
    for (int i = 0; i <= 64; i++) {
        hz[i] = data_fingerprint(z, (size_t)i);
        for (int j = 0; j < i; j++) if (hz[j] == hz[i]) { tu_fail(name, "%d and %d zero bytes collide", j, i); return; }
    }
    tu_ok(name);
}

static uint8_t *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long l = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *p = malloc((size_t)l + 1);
    *n = fread(p, 1, (size_t)l, f);
    fclose(f);
    return p;
}

static void test_cache(void) {
    const char *name = "data/cache_roundtrip";
    char path[512];
    path_of(path, sizeof path, "tok.cache");
    const uint32_t V = 5000;
    const size_t N = 10000;
    int32_t *tok = malloc(N * sizeof *tok);
    tu_rng r = {99};
    for (size_t i = 0; i < N; i++) tok[i] = (int32_t)(tu_next(&r) % V);
    tok[0] = 0;
    tok[1] = (int32_t)V - 1;
    moe_error e;
    int32_t *back = NULL;
    uint64_t *bsrc = NULL;
    size_t nbsrc = 0;
    size_t nb = 0;
    if (data_cache_write(path, tok, N, ONE(N), 1, V, 111, 222, &e) || data_cache_read(path, &back, &nb, &bsrc, &nbsrc, V, 111, 222, &e)) {
        tu_fail(name, "%s", e.msg);
        free(tok);
        return;
    }
    if (nb != N || memcmp(back, tok, N * sizeof *tok)) tu_fail(name, "tokens differ after the round trip (%zu of %zu)", nb, N);
    else tu_ok(name);
    { free(back); free(bsrc); bsrc = NULL; }

    name = "data/cache_empty_and_errors";
    char p0[512];
    path_of(p0, sizeof p0, "empty.cache");
    moe_status s;
    if ((s = data_cache_write(p0, tok, 0, ONE(0), 1, V, 1, 2, &e)) || (s = data_cache_read(p0, &back, &nb, &bsrc, &nbsrc, V, 1, 2, &e)) ||
        nb != 0 || back == NULL) {
        tu_fail(name, "empty cache: status %d %s", s, s ? e.msg : "");
    } else {
        { free(back); free(bsrc); bsrc = NULL; }
        char absent[512];
        path_of(absent, sizeof absent, "absent.cache");
        struct { uint32_t v; uint64_t t, src; moe_status st; const char *text; } c[] = {
            {V, 111, 222, MOE_OK, ""},
            {V + 1, 111, 222, MOE_ERR_ARG, "other data/tokenizer"},
            {V, 112, 222, MOE_ERR_ARG, "other data/tokenizer"},
            {V, 111, 221, MOE_ERR_ARG, "other data/tokenizer"},
        };
        int ok = 1;
        for (size_t i = 0; i < sizeof c / sizeof *c && ok; i++) {
            back = (int32_t *)1;
            s = data_cache_read(path, &back, &nb, &bsrc, &nbsrc, c[i].v, c[i].t, c[i].src, &e);
            if (s != c[i].st || (s && (back != NULL || nb != 0 || !msg_has(&e, path, c[i].text)))) {
                tu_fail(name, "case %zu: status %d, %s", i, s, e.msg);
                ok = 0;
            }
            if (!s) { free(back); free(bsrc); bsrc = NULL; }
        }
        if (ok && ((s = data_cache_read(absent, &back, &nb, &bsrc, &nbsrc, V, 111, 222, &e)) != MOE_ERR_IO || !msg_has(&e, absent, "ENOENT"))) {
            tu_fail(name, "absent cache: status %d, %s", s, e.msg);
            ok = 0;
        }
        int32_t badtok[2] = {1, (int32_t)V};
        char p2[512];
        path_of(p2, sizeof p2, "never.cache");
        if (ok && (data_cache_write(p2, badtok, 2, ONE(2), 1, V, 1, 2, &e) != MOE_ERR_ARG || access(p2, F_OK) == 0)) {
            tu_fail(name, "writing a token >= vocab was accepted");
            ok = 0;
        }
        if (ok) tu_ok(name);
    }

    /* every truncation and every single-byte flip of a small cache */
    name = "data/cache_truncated_and_flipped";
    char ps[512], pc[512];
    path_of(ps, sizeof ps, "small.cache");
    path_of(pc, sizeof pc, "case.cache");
    const size_t NS = 300;
    size_t len = 0;
    uint8_t *img = NULL;
    if (data_cache_write(ps, tok, NS, ONE(NS), 1, V, 7, 8, &e) || !(img = slurp(ps, &len)) || len != 56 + 4 * NS + 8) {
        tu_fail(name, "setup: %s (%zu bytes)", e.msg, len);
        free(img);
        free(tok);
        return;
    }
    int fails = 0;
    for (size_t l = 0; l < len && !fails; l++) {
        write_file("case.cache", img, l);
        back = (int32_t *)1;
        s = data_cache_read(pc, &back, &nb, &bsrc, &nbsrc, V, 7, 8, &e);
        if (s != MOE_ERR_FORMAT || back != NULL || nb != 0 || !strstr(e.msg, pc)) {
            tu_fail(name, "truncated to %zu bytes: status %d, %s", l, s, e.msg);
            fails++;
        }
    }
    for (size_t i = 0; i < len && !fails; i++) {
        for (int v = 0; v < 2 && !fails; v++) {
            uint8_t old = img[i];
            img[i] = (uint8_t)(v ? old ^ 0x80 : old + 1);
            write_file("case.cache", img, len);
            img[i] = old;
            back = (int32_t *)1;
            s = data_cache_read(pc, &back, &nb, &bsrc, &nbsrc, V, 7, 8, &e);
            if (s != MOE_ERR_FORMAT || back != NULL) {
                tu_fail(name, "byte %zu changed: status %d, %s", i, s, s ? e.msg : "accepted");
                if (!s) { free(back); free(bsrc); bsrc = NULL; }
                fails++;
            }
        }
    }
    /* one byte more; a valid checksum over an out-of-range token */
    if (!fails) {
        uint8_t *more = malloc(len + 1);
        memcpy(more, img, len);
        more[len] = 0;
        write_file("case.cache", more, len + 1);
        free(more);
        if ((s = data_cache_read(pc, &back, &nb, &bsrc, &nbsrc, V, 7, 8, &e)) != MOE_ERR_FORMAT) { tu_fail(name, "trailing byte: %d", s); fails++; }
    }
    if (!fails) {
        img[48] = 0x88; img[49] = 0x13; img[50] = 0; img[51] = 0; /* token 0 = 5000 = V */
        uint64_t h = data_fingerprint(img, len - 8);
        for (int k = 0; k < 8; k++) img[len - 8 + (size_t)k] = (uint8_t)(h >> (8 * k));
        write_file("case.cache", img, len);
        s = data_cache_read(pc, &back, &nb, &bsrc, &nbsrc, V, 7, 8, &e);
        if (s != MOE_ERR_FORMAT || !msg_has(&e, "outside the vocabulary", NULL)) { tu_fail(name, "token = vocab: %d %s", s, e.msg); fails++; }
        img[51] = 0x80; /* negative */
        h = data_fingerprint(img, len - 8);
        for (int k = 0; k < 8; k++) img[len - 8 + (size_t)k] = (uint8_t)(h >> (8 * k));
        write_file("case.cache", img, len);
        s = data_cache_read(pc, &back, &nb, &bsrc, &nbsrc, V, 7, 8, &e);
        if (!fails && s != MOE_ERR_FORMAT) { tu_fail(name, "negative token: %d %s", s, e.msg); fails++; }
    }
    if (!fails) {
        char m[128];
        snprintf(m, sizeof m, "%s (%zu truncations, %zu flips)", name, len, 2 * len);
        tu_ok(m);
    }
    free(img);
    free(tok);
    unlink(path);
    unlink(p0);
    unlink(ps);
    unlink(pc);
}

/* ------------------------------------------------------------ split, loader */

static void test_split(void) {
    const char *name = "data/split";
    int32_t tok[1000];
    for (int i = 0; i < 1000; i++) tok[i] = i;
    data_split tr, va;
    moe_error e;
    moe_status s;
    if ((s = data_split_tokens(tok, 50, 0.1f, 16, 4, &tr, &va, &e)) != MOE_ERR_SHAPE ||
        !msg_has(&e, "corpus of 50 tokens", "smaller than one batch of 4 x 16 (+1)")) {
        tu_fail(name, "tiny corpus: status %d, %s", s, e.msg);
        return;
    }
    if ((s = data_split_tokens(tok, 1000, 0.01f, 16, 4, &tr, &va, &e)) != MOE_ERR_SHAPE || !msg_has(&e, "validation", NULL)) {
        tu_fail(name, "tiny validation: status %d, %s", s, e.msg);
        return;
    }
    float bad[] = {-0.1f, 1.0f, NAN};
    for (int i = 0; i < 3; i++)
        if (data_split_tokens(tok, 1000, bad[i], 16, 4, &tr, &va, &e) != MOE_ERR_ARG) { tu_fail(name, "fraction %g accepted", (double)bad[i]); return; }
    if (data_split_tokens(tok, 1000, 0.1f, 0, 4, &tr, &va, &e) != MOE_ERR_ARG) { tu_fail(name, "T = 0 accepted"); return; }
    if ((s = data_split_tokens(tok, 1000, 0.1f, 16, 4, &tr, &va, &e)) || tr.tokens != tok || tr.n != 900 ||
        va.tokens != tok + 900 || va.n != 100) {
        tu_fail(name, "1000 tokens, 0.1: status %d, train %zu, val %zu", s, tr.n, va.n);
        return;
    }
    if ((s = data_split_tokens(tok, 65, 0.0f, 16, 4, &tr, &va, &e)) || tr.n != 65 || va.n != 0) {
        tu_fail(name, "exactly one batch, no validation: status %d %s", s, e.msg);
        return;
    }
    tu_ok(name);
}

static void test_loader(void) {
    const char *name = "data/loader";
    enum { NT = 5000, B = 4, T = 32 };
    int32_t *tok = malloc(NT * sizeof *tok);
    for (int i = 0; i < NT; i++) tok[i] = i;
    data_split s = {tok, NT};
    data_loader a, b, c;
    data_loader_init(&a, s, B, T, 123);
    data_loader_init(&b, s, B, T, 123);
    data_loader_init(&c, s, B, T, 124);
    int32_t xa[B * T], ya[B * T], xb[B * T], yb[B * T];
    int differ = 0;
    for (int step = 0; step < 50; step++) {
        data_loader_next(&a, xa, ya);
        data_loader_next(&b, xb, yb);
        if (memcmp(xa, xb, sizeof xa) || memcmp(ya, yb, sizeof ya)) { tu_fail(name, "same seed differs at step %d", step); free(tok); return; }
        for (int r = 0; r < B; r++) {
            int o = xa[r * T];
            if (o < 0 || o > NT - T - 1) { tu_fail(name, "offset %d outside [0, %d]", o, NT - T - 1); free(tok); return; }
            for (int t = 0; t < T; t++)
                if (xa[r * T + t] != o + t || ya[r * T + t] != o + t + 1) { tu_fail(name, "row %d is not a window", r); free(tok); return; }
        }
        data_loader_next(&c, xb, yb);
        if (memcmp(xa, xb, sizeof xa)) differ = 1;
    }
    if (!differ) { tu_fail(name, "seeds 123 and 124 give the same batches"); free(tok); return; }
    /* every offset is reachable, including the last */
    data_split tiny = {tok, T + 5};
    data_loader d;
    data_loader_init(&d, tiny, B, T, 1);
    int seen[5] = {0};
    for (int i = 0; i < 100; i++) {
        data_loader_next(&d, xa, ya);
        for (int r = 0; r < B; r++) {
            if (xa[r * T] < 0 || xa[r * T] > 4) { tu_fail(name, "tiny: offset %d", xa[r * T]); free(tok); return; }
            seen[xa[r * T]]++;
        }
    }
    for (int i = 0; i < 5; i++) if (!seen[i]) { tu_fail(name, "offset %d never drawn", i); free(tok); return; }
    tu_ok(name);

    name = "data/loader_resume";
    data_loader_init(&a, s, B, T, 77);
    for (int i = 0; i < 7; i++) data_loader_next(&a, xa, ya);
    uint64_t st = data_loader_state(&a);
    int32_t want[10][B * T];
    for (int i = 0; i < 10; i++) data_loader_next(&a, want[i], ya);
    data_loader_init(&b, s, B, T, 999);
    data_loader_next(&b, xb, yb);
    data_loader_set_state(&b, st);
    for (int i = 0; i < 10; i++) {
        data_loader_next(&b, xb, yb);
        if (memcmp(xb, want[i], sizeof xb)) { tu_fail(name, "step %d after the restore differs", i); free(tok); return; }
    }
    tu_ok(name);

    name = "data/val_batches";
    data_split v = {tok + 1000, 100};
    int nb = data_val_batches(v, 5, 8); /* W = 99 / 8 = 12 windows, 3 batches */
    if (nb != 3 || data_val_batches(v, 5, 100) != 0 || data_val_batches(v, 5, 99) != 1) {
        tu_fail(name, "batch counts %d, %d, %d; expected 3, 0, 1", nb, data_val_batches(v, 5, 100), data_val_batches(v, 5, 99));
        free(tok);
        return;
    }
    int32_t x1[5 * 8], y1[5 * 8], x2[5 * 8], y2[5 * 8];
    int used[12] = {0};
    for (int i = 0; i < nb; i++) {
        data_val_batch(v, i, nb, 5, 8, x1, y1);
        data_val_batch(v, i, nb, 5, 8, x2, y2);
        if (memcmp(x1, x2, sizeof x1) || memcmp(y1, y2, sizeof y1)) { tu_fail(name, "batch %d not deterministic", i); free(tok); return; }
        for (int r = 0; r < 5; r++) {
            int w = (i * 5 + r) % 12;
            used[w]++;
            for (int t = 0; t < 8; t++)
                if (x1[r * 8 + t] != 1000 + 8 * w + t || y1[r * 8 + t] != 1000 + 8 * w + t + 1) {
                    tu_fail(name, "batch %d row %d: x %d, expected %d", i, r, x1[r * 8 + t], 1000 + 8 * w + t);
                    free(tok);
                    return;
                }
        }
    }
    for (int w = 0; w < 12; w++) if (used[w] < 1 || used[w] > 2) { tu_fail(name, "window %d used %d times", w, used[w]); free(tok); return; }
    tu_ok(name);
    free(tok);
}

static void test_entropy(void) {
    const char *name = "data/unigram_entropy";
    int32_t t[8] = {0, 1, 2, 3, 0, 1, 2, 3};
    int32_t one[4] = {5, 5, 5, 5};
    int32_t mixed[6] = {0, 1, -1, 99, 0, 1};
    double h4 = data_unigram_entropy_bits(t, 8, 4), h0 = data_unigram_entropy_bits(one, 4, 10);
    double hm = data_unigram_entropy_bits(mixed, 6, 2), he = data_unigram_entropy_bits(t, 0, 4);
    if (fabs(h4 - 2.0) > 1e-12 || fabs(h0) > 1e-12 || fabs(hm - 1.0) > 1e-12 || !isnan(he) ||
        !isnan(data_unigram_entropy_bits(t, 8, 0)))
        tu_fail(name, "got %g %g %g %g, expected 2 0 1 nan", h4, h0, hm, he);
    else
        tu_ok(name);
}

/* ------------------------------------------------------------ data as it comes */

/* gzip / xz / zstd images of p[0, n), made with the same libraries */
static uint8_t *gz_of(const char *p, size_t n, size_t *out) {
    z_stream z;
    memset(&z, 0, sizeof z);
    if (deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) return NULL;
    size_t cap = deflateBound(&z, (uLong)n) + 64;
    uint8_t *b = malloc(cap);
    z.next_in = (Bytef *)(uintptr_t)p;
    z.avail_in = (uInt)n;
    z.next_out = b;
    z.avail_out = (uInt)cap;
    int r = deflate(&z, Z_FINISH);
    *out = cap - z.avail_out;
    deflateEnd(&z);
    if (r != Z_STREAM_END) { free(b); return NULL; }
    return b;
}
static uint8_t *xz_of(const char *p, size_t n, size_t *out) {
    size_t cap = lzma_stream_buffer_bound(n);
    uint8_t *b = malloc(cap);
    *out = 0;
    if (lzma_easy_buffer_encode(6, LZMA_CHECK_CRC64, NULL, (const uint8_t *)p, n, b, out, cap) != LZMA_OK) {
        free(b);
        return NULL;
    }
    return b;
}
static uint8_t *zst_of(const char *p, size_t n, size_t *out) {
    size_t cap = ZSTD_compressBound(n);
    uint8_t *b = malloc(cap);
    *out = ZSTD_compress(b, cap, p, n, 3);
    if (ZSTD_isError(*out)) { free(b); return NULL; }
    return b;
}

/* Writes the compressed image of text (made by fn) to rel. */
static int write_img(const char *rel, uint8_t *(*fn)(const char *, size_t, size_t *), const char *text) {
    size_t n = 0;
    uint8_t *img = fn(text, strlen(text), &n);
    int r = img ? write_file(rel, img, n) : -1;
    free(img);
    return r;
}

/* The folder of the issue: plain, gzip, xz and zstd files (one gzip file
 * without a telling name: the magic decides), a symbolic link and a hard
 * link to the plain file, and a binary file. */
static void test_sources_as_they_come(void) {
    const char *name = "data/sources_compressed_links_binary";
    const char *A = "alpha plain text\n", *G = "gamma from gzip\n", *X = "xi from xz\n", *Z = "zeta from zstd\n",
               *H = "eta: gzip named like plain text\n";
    size_t n;
    char p[512], q[512];
    if (make_dir("mix") || write_file("mix/a.txt", A, strlen(A)) ||
        write_img("mix/b.txt.gz", gz_of, G) || write_img("mix/c.xz", xz_of, X) || write_img("mix/d.zst", zst_of, Z) ||
        write_img("mix/e.txt", gz_of, H) ||
        write_file("mix/f.bin", "\x7f" "ELF\0\0\0\x01", 8)) {
        tu_fail(name, "setup: %s", strerror(errno));
        return;
    }
    path_of(p, sizeof p, "mix/a.txt");
    path_of(q, sizeof q, "mix/link.txt");
    int ok_links = symlink(p, q) == 0;
    path_of(q, sizeof q, "mix/hard.txt");
    ok_links = ok_links && link(p, q) == 0;
    if (!ok_links) { tu_fail(name, "setup: links: %s", strerror(errno)); return; }
    uint8_t *t = NULL;
    moe_error e;
    data_sources src;
    /* with skip_bad: each file once, the binary one skipped with a warning */
    char buf[512];
    path_of(buf, sizeof buf, "mix");
    const char *paths[2] = {buf, buf}; /* the folder named twice: still once */
    moe_status s = data_read_sources(&t, &n, &src, paths, 2, 1, &e);
    char want[512];
    snprintf(want, sizeof want, "%s\n\n%s\n\n%s\n\n%s\n\n%s", A, G, X, Z, H); /* a, b, c, d, e */
    char bin[512], lnk[512], hard[512];
    path_of(bin, sizeof bin, "mix/f.bin");
    path_of(lnk, sizeof lnk, "mix/link.txt");
    path_of(hard, sizeof hard, "mix/hard.txt");
    if (s) {
        tu_fail(name, "skip_bad: %s", e.msg);
    } else if (n != strlen(want) || memcmp(t, want, n)) {
        tu_fail(name, "text \"%.*s\", expected \"%s\"", (int)n, (const char *)t, want);
    } else if (src.n != 5 || src.n_skipped != 1 || src.n_compressed != 4 || src.n_same != 2 + 8) {
        tu_fail(name, "%zu sources, %d skipped, %d compressed, %d second names; expected 5, 1, 4, 10", src.n,
                src.n_skipped, src.n_compressed, src.n_same);
    } else if (!src.notes || !strstr(src.notes, "warning: skipped: data file") || !strstr(src.notes, bin) ||
               !strstr(src.notes, "NUL byte") || !strstr(src.notes, lnk) || !strstr(src.notes, hard) ||
               !strstr(src.notes, "read once")) {
        tu_fail(name, "notes do not name the skipped binary file and both links: %s", src.notes ? src.notes : "(none)");
    } else {
        /* the table: each source's bytes, separators with the one before */
        size_t at = 0;
        int bad = 0;
        for (size_t i = 0; i < src.n; i++) {
            if (src.v[i].off != at) bad = 1;
            at += src.v[i].len;
        }
        if (bad || at != n) tu_fail(name, "the source table does not tile the text (%zu of %zu bytes)", at, n);
        else tu_ok(name);
    }
    free(t);
    data_sources_free(&src);

    /* without skip_bad: one line naming the binary file and the way out */
    name = "data/sources_binary_error_names_skip_bad";
    t = (uint8_t *)"x";
    s = data_read_sources(&t, &n, NULL, paths, 1, 0, &e);
    if (s != MOE_ERR_FORMAT || t != NULL || !strstr(e.msg, bin) || !strstr(e.msg, "--skip-bad") ||
        !strstr(e.msg, "binary") || strchr(e.msg, '\n'))
        tu_fail(name, "status %d, message \"%s\"", s, e.msg);
    else
        tu_ok(name);

    /* a damaged and a truncated compressed file: skipped or an error */
    name = "data/sources_damaged_compressed";
    uint8_t *img = gz_of(G, strlen(G), &n);
    uint8_t *xz = xz_of(X, strlen(X), &n);
    size_t nxz = n;
    uint8_t *zs = zst_of(Z, strlen(Z), &n);
    size_t nzs = n;
    if (!img || !xz || !zs || make_dir("damaged") || write_file("damaged/ok.txt", A, strlen(A)) ||
        write_file("damaged/cut.gz", img, 12) || write_file("damaged/cut.xz", xz, nxz - 9) ||
        write_file("damaged/cut.zst", zs, nzs - 3)) {
        tu_fail(name, "setup");
    } else {
        const char *dm[1] = {"damaged"};
        s = read_rel(&t, &n, dm, 1, &e);
        char cut[512];
        path_of(cut, sizeof cut, "damaged/cut.gz");
        if (s == MOE_OK || !strstr(e.msg, cut) || !strstr(e.msg, "--skip-bad")) {
            tu_fail(name, "truncated gzip without skip_bad: status %d, \"%s\"", s, e.msg);
            if (!s) free(t);
        } else {
            path_of(buf, sizeof buf, "damaged");
            const char *pp[1] = {buf};
            s = data_read_sources(&t, &n, &src, pp, 1, 1, &e);
            if (s || n != strlen(A) || memcmp(t, A, n) || src.n_skipped != 3 || !strstr(src.notes, "cut.gz") ||
                !strstr(src.notes, "cut.xz") || !strstr(src.notes, "cut.zst"))
                tu_fail(name, "skip_bad: status %d (%s), %zu bytes, %d skipped, notes %s", s, s ? e.msg : "", n,
                        src.n_skipped, src.notes ? src.notes : "(none)");
            else
                tu_ok(name);
            if (!s) free(t);
            data_sources_free(&src);
        }
    }
    free(img);
    free(xz);
    free(zs);

    /* every file bad: an error even with skip_bad */
    name = "data/sources_all_skipped";
    if (make_dir("allbad") || write_file("allbad/x.bin", "\0\1\2", 3)) {
        tu_fail(name, "setup");
    } else {
        const char *ab[1] = {"allbad"};
        char bb[512];
        path_of(bb, sizeof bb, "allbad");
        const char *pp[1] = {bb};
        (void)ab;
        s = data_read_sources(&t, &n, &src, pp, 1, 1, &e);
        if (s != MOE_ERR_FORMAT || !strstr(e.msg, "no usable text")) tu_fail(name, "status %d, \"%s\"", s, e.msg);
        else tu_ok(name);
        if (!s) free(t);
        data_sources_free(&src);
    }
}

/* A text file cut in the middle of a UTF-8 character is read, bytes kept. */
static void test_partial_utf8(void) {
    const char *name = "data/partial_utf8_tail";
    struct { const char *s; size_t n, tail; } c[] = {
        {"caf\xC3", 4, 1}, {"x\xE2\x82", 3, 2}, {"x\xF0\x9F\x98", 4, 3}, {"\xE2", 1, 1},
        {"caf\xC3\xA9", 5, 0}, {"abc", 3, 0}, {"x\x80", 2, 0}, {"x\xE2\x41", 3, 0},
        {"x\xE0\x80", 3, 0} /* overlong prefix */, {"x\xED\xA0", 3, 0} /* surrogate prefix */,
        {"x\xF0\x9F\x98\x80", 5, 0}, {"x\xC0", 2, 0}, {"", 0, 0},
    };
    for (size_t i = 0; i < sizeof c / sizeof *c; i++) {
        size_t got = data_partial_utf8_tail((const uint8_t *)c[i].s, c[i].n);
        if (got != c[i].tail) { tu_fail(name, "case %zu: tail %zu, expected %zu", i, got, c[i].tail); return; }
    }
    tu_ok(name);

    name = "data/partial_utf8_file_read_with_warning";
    const char txt[] = "na\xC3\xAFve caf\xC3"; /* the last character cut after its first byte */
    if (write_file("cut_utf8.txt", txt, sizeof txt - 1)) { tu_fail(name, "setup"); return; }
    char p[512];
    path_of(p, sizeof p, "cut_utf8.txt");
    const char *pp[1] = {p};
    uint8_t *t = NULL;
    size_t n;
    moe_error e;
    data_sources src;
    moe_status s = data_read_sources(&t, &n, &src, pp, 1, 0, &e);
    if (s || n != sizeof txt - 1 || memcmp(t, txt, n) || src.n_partial_utf8 != 1 || !src.notes ||
        !strstr(src.notes, "warning:") || !strstr(src.notes, p) || !strstr(src.notes, "middle of a UTF-8 character"))
        tu_fail(name, "status %d (%s), %zu bytes, notes %s", s, s ? e.msg : "", n, src.notes ? src.notes : "(none)");
    else
        tu_ok(name);
    if (!s) free(t);
    data_sources_free(&src);
}

/* Validation drawn from every source: a share of each block of each. */
static void test_split_sources(void) {
    const char *name = "data/split_sources_every_source";
    /* source s holds tokens s * 1000000 + i: a long one (several blocks),
       two middling ones, a tiny one */
    const uint64_t cnt[4] = {3 * DATA_VAL_BLOCK + 1234, 5000, 20000, 30};
    size_t n = 0;
    for (int s = 0; s < 4; s++) n += (size_t)cnt[s];
    int32_t *tok = malloc(n * sizeof *tok), *out = malloc(n * sizeof *out);
    size_t at = 0;
    for (int s = 0; s < 4; s++)
        for (uint64_t i = 0; i < cnt[s]; i++) tok[at++] = s * 1000000 + (int32_t)i;
    data_split tr, va;
    uint64_t vps[4];
    moe_error e;
    const float f = 0.05f;
    moe_status st = data_split_sources(out, tok, n, cnt, 4, f, 16, 4, &tr, &va, vps, &e);
    if (st) { tu_fail(name, "%s", e.msg); free(tok); free(out); return; }
    size_t want_val = (size_t)((double)n * f);
    int ok = 1;
    if (va.n != want_val || tr.n + va.n != n || tr.tokens != out || va.tokens != out + tr.n) {
        tu_fail(name, "sizes: train %zu, validation %zu (expected %zu of %zu)", tr.n, va.n, want_val, n);
        ok = 0;
    }
    /* a permutation, each part in stream order, each source's share near f */
    uint64_t seen[4] = {0}, vseen[4] = {0};
    for (size_t i = 0; ok && i < n; i++) {
        int s = out[i] / 1000000;
        if (s < 0 || s > 3) { tu_fail(name, "token %d", out[i]); ok = 0; break; }
        seen[s]++;
        if (i >= tr.n) vseen[s]++;
        if (i && i != tr.n && out[i] <= out[i - 1]) { tu_fail(name, "position %zu is out of stream order", i); ok = 0; }
    }
    for (int s = 0; ok && s < 4; s++) {
        size_t blocks = (size_t)((cnt[s] + DATA_VAL_BLOCK - 1) / DATA_VAL_BLOCK);
        double share = (double)vseen[s] / (double)cnt[s];
        if (seen[s] != cnt[s] || vseen[s] != vps[s]) { tu_fail(name, "source %d: counts differ", s); ok = 0; }
        else if (s < 3 && fabs((double)vseen[s] - f * (double)cnt[s]) > (double)blocks + 1) {
            tu_fail(name, "source %d gives %llu validation tokens (%.3f), expected about %.0f", s,
                    (unsigned long long)vseen[s], share, f * (double)cnt[s]);
            ok = 0;
        }
    }
    /* the long source: a validation piece at the end of each of its blocks */
    for (int b = 0; ok && b < 4; b++) {
        int32_t end = (int32_t)(((uint64_t)(b + 1) * cnt[0]) / 4) - 1; /* last token of block b */
        int found = 0;
        for (size_t i = tr.n; i < n && !found; i++) found = out[i] == end;
        if (!found) { tu_fail(name, "block %d of source 0 holds out nothing at its end (token %d)", b, end); ok = 0; }
    }
    if (ok) {
        /* the old rule (the last 5% of the stream) took none of sources 0 and 1 */
        data_split otr, ova;
        data_split_tokens(tok, n, f, 16, 4, &otr, &ova, &e);
        int from0 = 0;
        for (size_t i = 0; i < ova.n; i++) from0 |= ova.tokens[i] / 1000000 == 0;
        if (from0) { tu_fail(name, "the test cannot tell the rules apart"); ok = 0; }
    }
    if (ok) tu_okf("%s (validation from each source: %llu %llu %llu %llu tokens)", name, (unsigned long long)vps[0],
                   (unsigned long long)vps[1], (unsigned long long)vps[2], (unsigned long long)vps[3]);
    uint64_t badcnt[2] = {10, 20};
    name = "data/split_sources_errors";
    if (data_split_sources(out, tok, n, badcnt, 2, f, 16, 4, &tr, &va, NULL, &e) != MOE_ERR_ARG ||
        data_split_sources(out, tok, 50, (uint64_t[]){50}, 1, 0.1f, 16, 4, &tr, &va, NULL, &e) != MOE_ERR_SHAPE)
        tu_fail(name, "a table that does not add up, or a corpus under one batch, was accepted");
    else
        tu_ok(name);
    free(tok);
    free(out);
}

/* --eval-batches N: N batches spread over the whole held-out set. */
static void test_val_spread(void) {
    const char *name = "data/val_batches_spread";
    enum { NV = 100001, T = 10, B = 4 };
    int32_t *tok = malloc(NV * sizeof *tok);
    for (int i = 0; i < NV; i++) tok[i] = i;
    data_split v = {tok, NV};
    const int all = data_val_batches(v, B, T), W = (NV - 1) / T; /* 10000 windows, 2500 batches */
    const int nb = 5, S = nb * B;
    int32_t x[B * T], y[B * T];
    int prev = -1, ok = 1, first = -1, last = -1;
    for (int i = 0; i < nb && ok; i++) {
        data_val_batch(v, i, nb, B, T, x, y);
        for (int b = 0; b < B; b++) {
            int w = x[b * T] / T;
            if (x[b * T] % T || w <= prev || y[b * T] != x[b * T] + 1) { tu_fail(name, "slot %d: window %d after %d", i * B + b, w, prev); ok = 0; break; }
            /* slot j in the j-th of S equal stretches */
            int j = i * B + b;
            if (w < (long)j * W / S || w >= (long)(j + 1) * W / S) { tu_fail(name, "slot %d: window %d outside its stretch", j, w); ok = 0; break; }
            if (first < 0) first = w;
            last = w;
            prev = w;
        }
    }
    if (ok && !(first < W / S && last >= W - W / S)) { tu_fail(name, "windows %d .. %d do not span 0 .. %d", first, last, W); ok = 0; }
    /* all batches: every window, as before */
    if (ok) {
        data_val_batch(v, all - 1, all, B, T, x, y);
        if (x[(B - 1) * T] != (W - 1) * T) { tu_fail(name, "the last batch of all does not end at the last window"); ok = 0; }
    }
    if (ok) tu_okf("%s (%d of %d batches: windows %d .. %d of %d)", name, nb, all, first, last, W);
    free(tok);
}

/* A version-2 cache keeps its table of sources; a version-1 cache (no
 * table) still reads, with no table (the run keeps the old split). */
static void test_cache_sources(void) {
    const char *name = "data/cache_source_table_and_v1";
    char path[512];
    path_of(path, sizeof path, "src.cache");
    int32_t tok[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 0};
    uint64_t cnt[3] = {4, 5, 1}, *back_cnt = NULL;
    int32_t *back = NULL;
    size_t nb, ns;
    moe_error e;
    if (data_cache_write(path, tok, 10, cnt, 3, 10, 5, 6, &e) ||
        data_cache_read(path, &back, &nb, &back_cnt, &ns, 10, 5, 6, &e)) {
        tu_fail(name, "%s", e.msg);
        return;
    }
    int ok = nb == 10 && ns == 3 && !memcmp(back, tok, sizeof tok) && !memcmp(back_cnt, cnt, sizeof cnt);
    free(back);
    free(back_cnt);
    if (!ok) { tu_fail(name, "round trip differs"); return; }
    /* version 1 by hand: 40-byte header, tokens, checksum */
    uint8_t img[40 + 40 + 8];
    memcpy(img, "MOETOK1", 8);
    uint32_t h32[2] = {1, 10};
    uint64_t h64[3] = {10, 5, 6};
    memcpy(img + 8, h32, 8);
    memcpy(img + 16, h64, 24);
    memcpy(img + 40, tok, 40);
    uint64_t sum = data_fingerprint(img, 80);
    memcpy(img + 80, &sum, 8);
    write_file("v1.cache", img, sizeof img);
    path_of(path, sizeof path, "v1.cache");
    back_cnt = (uint64_t *)1;
    if (data_cache_read(path, &back, &nb, &back_cnt, &ns, 10, 5, 6, &e)) { tu_fail(name, "v1: %s", e.msg); return; }
    ok = nb == 10 && ns == 0 && back_cnt == NULL && !memcmp(back, tok, sizeof tok);
    free(back);
    if (!ok) { tu_fail(name, "v1 read: %zu tokens, %zu sources", nb, ns); return; }
    if (data_cache_write(path, tok, 10, (uint64_t[]){4, 5}, 2, 10, 5, 6, &e) != MOE_ERR_ARG) {
        tu_fail(name, "a table that does not add up was written");
        return;
    }
    tu_ok(name);
}

int main(void) {
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/moe_data_XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(tmpdir)) {
        tu_fail("data/setup", "mkdtemp: %s", strerror(errno));
        return tu_exit_code();
    }
    test_corpus_determinism();
    test_corpus_shape();
    test_corpus_domains();
    test_corpus_arith();
    test_corpus_records();
    test_corpus_code();
    test_corpus_entropy_api();
    test_check_text();
    test_sources();
    test_fingerprint();
    test_cache();
    test_split();
    test_loader();
    test_entropy();
    test_sources_as_they_come();
    test_partial_utf8();
    test_split_sources();
    test_val_spread();
    test_cache_sources();
    remove_tree(tmpdir);
    return tu_exit_code();
}
