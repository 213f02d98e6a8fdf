/* test_json.c: the strict JSON parser (src/io/json.h) and the safetensors
 * reader built on it (src/io/safetensors.h).
 *
 * JSON: a corpus of valid documents with their values checked (escapes,
 * surrogate pairs, \u0000 inside a string, numbers at the edges, empty and
 * nested containers, duplicate keys); a corpus of invalid ones, each with
 * the byte offset its message must name; the depth and size limits; every
 * valid document and random generated ones survive a round trip (written
 * back by a small serializer here, parsed again, equal); then random
 * mutations of the corpus (byte flips, insertions of structural characters,
 * deletions, truncations): each must parse or fail with a message, never
 * crash or read out of bounds (run under ASan + UBSan by `make sanitize`),
 * and what parses must round-trip.
 * Safetensors: a small valid file opens and reads back its values; every
 * truncation, seeded byte flips of its header and lying headers fail with a
 * message or open consistently, never crash.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/json.h"
#include "io/safetensors.h"
#include "testutil.h"

/* ------------------------------------------------------------ serializer */

typedef struct sbuf {
    char *p;
    size_t n, cap;
} sbuf;

static void strbuf_puts(sbuf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        b->p = realloc(b->p, cap);
        if (!b->p) abort();
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}
static void sb_str(sbuf *b, const char *s) { strbuf_puts(b, s, strlen(s)); }

static void ser_string(sbuf *b, const char *s, size_t n) {
    sb_str(b, "\"");
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char e[8];
        if (c == '"') sb_str(b, "\\\"");
        else if (c == '\\') sb_str(b, "\\\\");
        else if (c < 0x20) { snprintf(e, sizeof e, "\\u%04x", c); sb_str(b, e); }
        else strbuf_puts(b, (const char *)&c, 1);
    }
    sb_str(b, "\"");
}

static void ser(sbuf *b, const json_value *v) {
    char num[64];
    switch (v->type) {
    case JSON_NULL: sb_str(b, "null"); break;
    case JSON_TRUE: sb_str(b, "true"); break;
    case JSON_FALSE: sb_str(b, "false"); break;
    case JSON_NUMBER: snprintf(num, sizeof num, "%.17g", v->u.num); sb_str(b, num); break;
    case JSON_STRING: ser_string(b, v->u.str.s, v->u.str.n); break;
    case JSON_ARRAY:
        sb_str(b, "[");
        for (size_t i = 0; i < v->u.arr.n; i++) {
            if (i) sb_str(b, ",");
            ser(b, &v->u.arr.v[i]);
        }
        sb_str(b, "]");
        break;
    case JSON_OBJECT:
        sb_str(b, "{");
        for (size_t i = 0; i < v->u.obj.n; i++) {
            if (i) sb_str(b, ",");
            ser_string(b, v->u.obj.m[i].key, v->u.obj.m[i].key_n);
            sb_str(b, ":");
            ser(b, &v->u.obj.m[i].val);
        }
        sb_str(b, "}");
        break;
    }
}

static int equal(const json_value *a, const json_value *b) {
    if (a->type != b->type) return 0;
    switch (a->type) {
    case JSON_NUMBER: return a->u.num == b->u.num && signbit(a->u.num) == signbit(b->u.num);
    case JSON_STRING: return a->u.str.n == b->u.str.n && !memcmp(a->u.str.s, b->u.str.s, a->u.str.n);
    case JSON_ARRAY:
        if (a->u.arr.n != b->u.arr.n) return 0;
        for (size_t i = 0; i < a->u.arr.n; i++)
            if (!equal(&a->u.arr.v[i], &b->u.arr.v[i])) return 0;
        return 1;
    case JSON_OBJECT:
        if (a->u.obj.n != b->u.obj.n) return 0;
        for (size_t i = 0; i < a->u.obj.n; i++) {
            const json_member *x = &a->u.obj.m[i], *y = &b->u.obj.m[i];
            if (x->key_n != y->key_n || memcmp(x->key, y->key, x->key_n) || !equal(&x->val, &y->val))
                return 0;
        }
        return 1;
    default: return 1;
    }
}

/* Parses text, writes it back, parses that: 1 if the trees are equal.
 * *parsed: whether the first parse succeeded; err gets its message. */
static int round_trip(const char *text, size_t n, int *parsed, moe_error *err) {
    json_doc *a = NULL, *b = NULL;
    *parsed = json_parse(&a, text, n, "t", NULL, err) == MOE_OK;
    if (!*parsed) return 1;
    sbuf s = {0};
    ser(&s, json_root(a));
    moe_error e2;
    int ok = json_parse(&b, s.p, s.n, "rt", NULL, &e2) == MOE_OK && equal(json_root(a), json_root(b));
    json_free(a);
    json_free(b);
    free(s.p);
    return ok;
}

/* ------------------------------------------------------------ the corpus */

static const char *const valid[] = {
    "{}", "[]", " \t\r\n[ ]\n", "0", "-0", "1", "-1", "3.25", "-0.5e-3", "1E+2", "1e308", "2.2250738585072014e-308",
    "123456789012345678", "9007199254740993", "true", "false", "null", "\"\"",
    "\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\"", "\"\\u00e9\\u4e2d\\ud83d\\ude00\"", "\"caf\xc3\xa9 \xe4\xb8\xad \xf0\x9f\x98\x80\"",
    "\"nul\\u0000inside\"", "[1,[2,[3,[4,[]]]],{\"a\":{\"b\":{}}}]",
    "{\"a\":1,\"a\":2}", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2},"
    "\"merges\":[\"a b\",[\"a\",\"b\"]]},\"added_tokens\":[{\"id\":3,\"content\":\"<s>\",\"special\":true}]}",
    "{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}",
};

typedef struct bad_case {
    const char *text;
    size_t offset; /* where the message must point */
} bad_case;

static const bad_case invalid[] = {
    {"", 0}, {"   ", 3}, {"[1,]", 3}, {"[01]", 2}, {"[1.]", 3}, {"[.5]", 1}, {"[+1]", 1},
    {"[1e]", 3}, {"[-]", 2}, {"\"abc", 0}, {"\"a\\xb\"", 2}, {"\"a\tb\"", 2},
    {"\"\\ud800\"", 1}, {"\"\\udc00\"", 1}, {"\"\\ud800\\u0041\"", 1}, {"\"\\u12G4\"", 1},
    {"[1 2]", 3}, {"{\"a\" 1}", 5}, {"{1:2}", 1}, {"[1]x", 3}, {"tru", 0}, {"nul", 0},
    {"NaN", 0}, {"Infinity", 0}, {"-Infinity", 1}, {"1e999", 0}, {"\"\xff\"", 1},
    {"\"\xc0\xaf\"", 1}, {"\"\xed\xa0\x80\"", 1}, {"[", 1}, {"{", 1}, {"{\"a\":}", 5},
    {"{\"a\":1,}", 7}, {"[1,2", 4}, {"{\"a\":1", 6}, {"'a'", 0}, {"[1]\n// c", 4},
    {"\"\xe4\xb8\"", 1}, {"[true false]", 6},
};

static void check_valid(void) {
    int bad = 0;
    for (size_t i = 0; i < sizeof valid / sizeof valid[0]; i++) {
        moe_error err;
        int parsed;
        if (!round_trip(valid[i], strlen(valid[i]), &parsed, &err) || !parsed) {
            tu_fail("json/valid", "case %zu '%s': %s", i, valid[i], parsed ? "round trip differs" : err.msg);
            bad = 1;
        }
    }
    if (!bad) tu_okf("json/valid (%zu documents, round trip)", sizeof valid / sizeof valid[0]);

    /* values */
    json_doc *d = NULL;
    moe_error err;
    const char *t = "{\"s\":\"x\\u00e9\\ud83d\\ude00\\u0000y\",\"n\":-12.25e1,\"i\":9007199254740992,"
                    "\"a\":[true,false,null],\"dup\":1,\"dup\":2,\"big\":123456789012345678}";
    if (json_parse(&d, t, strlen(t), "values", NULL, &err)) {
        tu_fail("json/values", "%s", err.msg);
        return;
    }
    const json_value *r = json_root(d), *s = json_get(r, "s"), *a = json_get(r, "a");
    double n = 0;
    int64_t iv = 0, dup = 0;
    const char *want = "x\xc3\xa9\xf0\x9f\x98\x80\0y";
    int ok = s && s->type == JSON_STRING && s->u.str.n == 9 && !memcmp(s->u.str.s, want, 9) &&
             s->u.str.s[9] == '\0' && json_get_num(r, "n", &n) && n == -122.5 &&
             json_get_int(r, "i", &iv) && iv == 9007199254740992LL && a && a->type == JSON_ARRAY &&
             a->u.arr.n == 3 && a->u.arr.v[0].type == JSON_TRUE && a->u.arr.v[2].type == JSON_NULL &&
             json_get_int(r, "dup", &dup) && dup == 1 && !json_get_int(r, "big", &iv) &&
             !json_get_int(r, "n", &iv) && !json_get(r, "missing") && !json_get(s, "x");
    if (ok) tu_ok("json/values");
    else tu_fail("json/values", "a value read back wrong (string of %zu bytes, n = %g, dup = %lld)",
                 s ? s->u.str.n : 0, n, (long long)dup);
    json_free(d);
}

static void check_invalid(void) {
    int bad = 0;
    for (size_t i = 0; i < sizeof invalid / sizeof invalid[0]; i++) {
        json_doc *d = NULL;
        moe_error err;
        err.msg[0] = '\0';
        moe_status st = json_parse(&d, invalid[i].text, strlen(invalid[i].text), "bad.json", NULL, &err);
        char want[64];
        snprintf(want, sizeof want, "bad.json: byte %zu ", invalid[i].offset);
        if (st != MOE_ERR_FORMAT || d || strncmp(err.msg, want, strlen(want))) {
            tu_fail("json/invalid", "case %zu '%s': status %d, message '%s' (expected it to start "
                    "with '%s')", i, invalid[i].text, (int)st, err.msg, want);
            json_free(d);
            bad = 1;
        }
    }
    if (!bad) tu_okf("json/invalid (%zu documents, each error at its byte)",
                     sizeof invalid / sizeof invalid[0]);
}

static void check_limits(void) {
    char deep[1300];
    size_t n = 0;
    for (int i = 0; i < 600; i++) deep[n++] = '[';
    for (int i = 0; i < 600; i++) deep[n++] = ']';
    json_doc *d = NULL;
    moe_error err;
    moe_status st = json_parse(&d, deep, n, "deep", NULL, &err);
    int ok1 = st == MOE_ERR_FORMAT && strstr(err.msg, "nesting deeper than 512") &&
              strstr(err.msg, "byte 512");
    json_limits lim = {10, 0};
    int ok2 = json_parse(&d, deep + 590, 20, "ten", &lim, &err) == MOE_OK;
    json_free(d);
    d = NULL;
    int ok3 = json_parse(&d, deep + 589, 22, "eleven", &lim, &err) == MOE_ERR_FORMAT;
    json_limits small = {0, 10};
    int ok4 = json_parse(&d, "[1,2,3,4,5,6]", 13, "big", &small, &err) == MOE_ERR_FORMAT &&
              strstr(err.msg, "limit");
    int ok5 = json_parse_file(&d, "/nonexistent/x.json", NULL, &err) == MOE_ERR_IO &&
              strstr(err.msg, "/nonexistent/x.json");
    if (ok1 && ok2 && ok3 && ok4 && ok5) tu_ok("json/limits");
    else tu_fail("json/limits", "depth 600 %d, depth 10 ok %d, depth 11 fails %d, size %d, missing file %d",
                 ok1, ok2, ok3, ok4, ok5);
}

/* A random document (depth-limited) into b. */
static void gen(sbuf *b, tu_rng *r, int depth) {
    static const char *const pieces[] = {"a", "\\n", "\\u00e9", "\\ud83d\\ude00", "\xe4\xb8\xad", " ",
                                         "\\\"", "\\\\", "\\u0000", "z9", "\\t"};
    int k = (int)(tu_next(r) % (depth > 4 ? 4 : 7));
    char num[64];
    switch (k) {
    case 0: sb_str(b, (tu_next(r) & 1) ? "true" : "null"); break;
    case 1: {
        double v = tu_uniform(r) * pow(10.0, (double)(int)(tu_next(r) % 40) - 20);
        if (tu_next(r) & 1) snprintf(num, sizeof num, "%.17g", v);
        else snprintf(num, sizeof num, "%lld", (long long)fmod(v * 1e6, 9e18)); /* in range */
        sb_str(b, num);
        break;
    }
    case 2: case 3: {
        sb_str(b, "\"");
        int n = (int)(tu_next(r) % 6);
        for (int i = 0; i < n; i++) sb_str(b, pieces[tu_next(r) % (sizeof pieces / sizeof pieces[0])]);
        sb_str(b, "\"");
        break;
    }
    case 4: case 5: {
        int n = (int)(tu_next(r) % 5);
        sb_str(b, "[");
        for (int i = 0; i < n; i++) {
            if (i) sb_str(b, ", ");
            gen(b, r, depth + 1);
        }
        sb_str(b, "]");
        break;
    }
    default: {
        int n = (int)(tu_next(r) % 5);
        sb_str(b, "{");
        for (int i = 0; i < n; i++) {
            if (i) sb_str(b, ",");
            snprintf(num, sizeof num, "\"k%d\\u00e9\" : ", (int)(tu_next(r) % 100));
            sb_str(b, num);
            gen(b, r, depth + 1);
        }
        sb_str(b, "}");
        break;
    }
    }
}

static void check_fuzz(void) {
    tu_rng r = {12345};
    int fails = 0, n_ok = 0, n_bad = 0, trips = 0;
    char first[300] = "";
    /* generated documents must parse and round-trip */
    for (int it = 0; it < 2000; it++) {
        sbuf b = {0};
        gen(&b, &r, 0);
        moe_error err;
        int parsed;
        if (!round_trip(b.p, b.n, &parsed, &err) || !parsed) {
            if (!fails++) snprintf(first, sizeof first, "generated '%.120s': %.150s", b.p, parsed ? "round trip" : err.msg);
        } else trips++;
        free(b.p);
    }
    /* mutations of the corpus and of generated documents */
    static const char structural[] = "[]{},:\"\\u0123456789eE+-.tfn \x80\xc3\xed\xf0";
    for (int it = 0; it < 20000; it++) {
        sbuf b = {0};
        if (it % 2) gen(&b, &r, 0);
        else sb_str(&b, valid[tu_next(&r) % (sizeof valid / sizeof valid[0])]);
        int muts = 1 + (int)(tu_next(&r) % 3);
        for (int m = 0; m < muts && b.n > 0; m++) {
            size_t at = tu_next(&r) % b.n;
            switch (tu_next(&r) % 4) {
            case 0: b.p[at] = (char)(tu_next(&r) & 0xff); break;
            case 1: b.p[at] = structural[tu_next(&r) % (sizeof structural - 1)]; break;
            case 2: memmove(b.p + at, b.p + at + 1, b.n - at); b.n--; break;
            default: b.n = at; break;
            }
        }
        /* an exact-size copy, so ASan sees any read past the end */
        char *copy = malloc(b.n ? b.n : 1);
        memcpy(copy, b.p, b.n);
        moe_error err;
        err.msg[0] = '\0';
        int parsed;
        int rt = round_trip(copy, b.n, &parsed, &err);
        if (parsed) n_ok++;
        else n_bad++;
        if (!rt || (!parsed && (!err.msg[0] || !strstr(err.msg, "byte ")))) {
            if (!fails++) snprintf(first, sizeof first, "mutated document of %zu bytes: %s", b.n,
                                   parsed ? "round trip differs" : "no message with a byte offset");
        }
        free(copy);
        free(b.p);
    }
    if (!fails) tu_okf("json/fuzz (%d generated round trips, 20000 mutations: %d parsed, %d rejected)",
                       trips, n_ok, n_bad);
    else tu_fail("json/fuzz", "%d failures; first: %s", fails, first);
}

/* ----------------------------------------------------------- safetensors */

static char st_path[256];

static void write_file(const char *p, const void *data, size_t n) {
    unlink(p); /* a new file: truncating one makes some file systems flush it */
    FILE *f = fopen(p, "wb");
    if (!f) { perror(p); exit(1); }
    fwrite(data, 1, n, f);
    fclose(f);
}

/* A file with a [2, 3] F32, a [4] F16 and a [3] BF16 tensor. */
static size_t make_st(uint8_t *buf) {
    const char *h = "{\"__metadata__\":{\"format\":\"pt\"},"
                    "\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
                    "\"h\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[24,32]},"
                    "\"b\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[32,38]},"
                    "\"i\":{\"dtype\":\"I32\",\"shape\":[],\"data_offsets\":[38,42]}}";
    size_t hn = strlen(h);
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)((uint64_t)hn >> (8 * i));
    memcpy(buf + 8, h, hn);
    uint8_t *d = buf + 8 + hn;
    float w[6] = {1, -2, 3.5f, 0.25f, -1e3f, 7};
    memcpy(d, w, 24);
    const uint16_t hv[4] = {0x3c00, 0xc000, 0x3800, 0x0000}; /* 1, -2, 0.5, 0 */
    memcpy(d + 24, hv, 8);
    const uint16_t bv[3] = {0x3f80, 0x4040, 0xbf00};         /* 1, 3, -0.5 */
    memcpy(d + 32, bv, 6);
    memset(d + 38, 0, 4);
    return 8 + hn + 42;
}

static void check_safetensors(void) {
    uint8_t buf[1024], tmp[1024];
    size_t n = make_st(buf);
    write_file(st_path, buf, n);
    st_model *m = NULL;
    moe_error err;
    if (st_open_file(&m, st_path, &err)) {
        tu_fail("safetensors/valid", "%s", err.msg);
        return;
    }
    const st_tensor *w = st_find(m, "w"), *h = st_find(m, "h"), *b = st_find(m, "b"), *i = st_find(m, "i");
    float x[6] = {0}, y[4] = {0}, z[3] = {0};
    int ok = st_count(m) == 4 && w && h && b && i && w->n_dims == 2 && w->shape[1] == 3 &&
             st_rows(w) == 2 && st_cols(w) == 3 && i->n_dims == 0 && i->n_elem == 1 &&
             !st_read_f32(w, 0, 6, x, &err) && x[2] == 3.5f && x[4] == -1e3f &&
             !st_read_f32(h, 0, 4, y, &err) && y[1] == -2.0f && y[2] == 0.5f &&
             !st_read_f32(b, 1, 2, z, &err) && z[0] == 3.0f && z[1] == -0.5f &&
             st_read_f32(i, 0, 1, x, &err) == MOE_ERR_UNSUPPORTED && strstr(err.msg, "I32") &&
             st_read_f32(w, 4, 3, x, &err) == MOE_ERR_ARG;
    st_close(m);
    if (ok) tu_ok("safetensors/valid");
    else tu_fail("safetensors/valid", "a tensor read back wrong");

    /* every truncation must fail (the last tensor ends at the end) */
    int bad = 0;
    for (size_t len = 0; len < n; len++) {
        write_file(st_path, buf, len);
        m = NULL;
        err.msg[0] = '\0';
        if (st_open_file(&m, st_path, &err) == MOE_OK || !err.msg[0]) {
            if (!bad++) tu_fail("safetensors/truncated", "a file cut at %zu of %zu bytes opened", len, n);
            st_close(m);
        }
    }
    if (!bad) tu_okf("safetensors/truncated (%zu lengths)", n);

    /* seeded byte flips in the header: fail with a message, or open with
       tensors inside the file */
    tu_rng r = {99};
    int opened = 0, failed = 0;
    bad = 0;
    for (int it = 0; it < 3000; it++) {
        memcpy(tmp, buf, n);
        int flips = 1 + (int)(tu_next(&r) % 3);
        for (int f = 0; f < flips; f++) tmp[tu_next(&r) % (n - 42)] = (uint8_t)tu_next(&r);
        write_file(st_path, tmp, n);
        m = NULL;
        err.msg[0] = '\0';
        if (st_open_file(&m, st_path, &err) == MOE_OK) {
            opened++;
            for (size_t k = 0; k < st_count(m); k++) {
                const st_tensor *t = st_at(m, k);
                float v[8];
                if (t->n_elem <= 8) st_read_f32(t, 0, t->n_elem, v, &err); /* reads stay in the map */
            }
            st_close(m);
        } else if (!err.msg[0]) {
            bad++;
        } else {
            failed++;
        }
    }
    if (!bad) tu_okf("safetensors/flips (3000 files: %d opened, %d rejected with a message)", opened, failed);
    else tu_fail("safetensors/flips", "%d failures without a message", bad);
}

int main(void) {
    snprintf(st_path, sizeof st_path, "/tmp/moe_test_json_%d.safetensors", (int)getpid());
    check_valid();
    check_invalid();
    check_limits();
    check_fuzz();
    check_safetensors();
    unlink(st_path);
    return tu_exit_code();
}
