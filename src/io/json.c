/* json.c: the strict JSON parser of json.h.
 *
 * Recursive descent over the input with the depth bounded by the limits.
 * Finished arrays and objects are copied from two growable stacks (values,
 * members) into an arena of large chunks, so the tree costs one allocation
 * per chunk and json_free is a walk over the chunks. Strings are decoded
 * straight into the arena (the decoded form is never longer than the
 * escaped one). Not for: writing JSON.
 */
#include "io/json.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

#define JSON_DEFAULT_DEPTH 512
#define JSON_DEFAULT_MAX ((size_t)1 << 30)
#define ARENA_CHUNK ((size_t)1 << 20)

typedef struct chunk {
    struct chunk *next;
    size_t used, cap;
    /* data follows, 16-byte aligned */
} chunk;

struct json_doc {
    chunk *chunks;
    json_value root;
    char name[256];
};

typedef struct parser {
    const unsigned char *p; /* input */
    size_t n, pos;
    int depth, max_depth;
    json_doc *doc;
    json_value *vs;         /* value stack */
    size_t vn, vcap;
    json_member *ms;        /* member stack */
    size_t mn, mcap;
    moe_error *err;
} parser;

/* ----------------------------------------------------------------- arena */

static void *arena_alloc(json_doc *d, size_t n) {
    n = (n + 15) & ~(size_t)15;
    chunk *c = d->chunks;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > ARENA_CHUNK ? n : ARENA_CHUNK;
        size_t hdr = (sizeof(chunk) + 15) & ~(size_t)15;
        c = malloc(hdr + cap);
        if (!c) return NULL;
        c->cap = cap;
        c->used = 0;
        c->next = d->chunks;
        d->chunks = c;
    }
    size_t hdr = (sizeof(chunk) + 15) & ~(size_t)15;
    void *r = (char *)c + hdr + c->used;
    c->used += n;
    return r;
}

void json_free(json_doc *d) {
    if (!d) return;
    chunk *c = d->chunks;
    while (c) {
        chunk *nx = c->next;
        free(c);
        c = nx;
    }
    free(d);
}

/* ---------------------------------------------------------------- errors */

static moe_status fail_at(parser *ps, size_t off, moe_status st, const char *what) {
    size_t line = 1, col = 1;
    for (size_t i = 0; i < off && i < ps->n; i++) {
        if (ps->p[i] == '\n') { line++; col = 1; }
        else if ((ps->p[i] & 0xC0) != 0x80) col++;
    }
    return moe_err(ps->err, st, "%s: byte %zu (line %zu, column %zu): %s", ps->doc->name, off,
                   line, col, what);
}

static moe_status fail(parser *ps, const char *what) {
    return fail_at(ps, ps->pos, MOE_ERR_FORMAT, what);
}

static moe_status oom(parser *ps) {
    return fail_at(ps, ps->pos, MOE_ERR_NOMEM, "out of memory");
}

/* ---------------------------------------------------------------- lexing */

static void skip_ws(parser *ps) {
    while (ps->pos < ps->n) {
        unsigned char c = ps->p[ps->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
        ps->pos++;
    }
}

static int hexval(unsigned char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Four hex digits at ps->pos + 2 (after "\u"); -1 if not. */
static long hex4(const parser *ps, size_t at) {
    if (at + 4 > ps->n) return -1;
    long v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(ps->p[at + (size_t)i]);
        if (h < 0) return -1;
        v = v * 16 + h;
    }
    return v;
}

/* Length of a valid UTF-8 sequence at p[0, n) (1..4), 0 if invalid. */
static size_t utf8_len(const unsigned char *p, size_t n) {
    unsigned char c = p[0];
    if (c < 0x80) return 1;
    size_t len;
    uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) { len = 2; cp = c & 0x1Fu; }
    else if (c >= 0xE0 && c <= 0xEF) { len = 3; cp = c & 0x0Fu; }
    else if (c >= 0xF0 && c <= 0xF4) { len = 4; cp = c & 0x07u; }
    else return 0;
    if (len > n) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (p[i] & 0x3Fu);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF))) return 0;
    if (cp >= 0xD800 && cp <= 0xDFFF) return 0;
    return len;
}

static size_t put_utf8(char *o, uint32_t cp) {
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* A string at ps->pos (the opening quote): *s and *len get the decoded
 * text in the arena. */
static moe_status parse_string(parser *ps, const char **s, size_t *len) {
    const size_t start = ps->pos;
    size_t i = start + 1;
    /* pass 1: validate and find the end */
    for (;;) {
        if (i >= ps->n) return fail_at(ps, start, MOE_ERR_FORMAT, "string not terminated");
        unsigned char c = ps->p[i];
        if (c == '"') break;
        if (c < 0x20) return fail_at(ps, i, MOE_ERR_FORMAT, "raw control character in a string "
                                     "(must be escaped)");
        if (c == '\\') {
            if (i + 1 >= ps->n) return fail_at(ps, start, MOE_ERR_FORMAT, "string not terminated");
            unsigned char e = ps->p[i + 1];
            if (e == 'u') {
                long h = hex4(ps, i + 2);
                if (h < 0) return fail_at(ps, i, MOE_ERR_FORMAT, "\\u needs four hex digits");
                if (h >= 0xDC00 && h <= 0xDFFF)
                    return fail_at(ps, i, MOE_ERR_FORMAT, "lone low surrogate \\u escape");
                if (h >= 0xD800 && h <= 0xDBFF) {
                    long lo = (i + 7 < ps->n && ps->p[i + 6] == '\\' && ps->p[i + 7] == 'u')
                                  ? hex4(ps, i + 8) : -1;
                    if (lo < 0xDC00 || lo > 0xDFFF)
                        return fail_at(ps, i, MOE_ERR_FORMAT, "high surrogate \\u escape not "
                                       "followed by a low surrogate \\u escape");
                    i += 12;
                } else {
                    i += 6;
                }
                continue;
            }
            if (!strchr("\"\\/bfnrt", e) || e == 0)
                return fail_at(ps, i, MOE_ERR_FORMAT, "invalid escape in a string (expected one "
                               "of \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX)");
            i += 2;
            continue;
        }
        if (c >= 0x80) {
            size_t l = utf8_len(ps->p + i, ps->n - i);
            if (!l) return fail_at(ps, i, MOE_ERR_FORMAT, "invalid UTF-8 in a string");
            i += l;
            continue;
        }
        i++;
    }
    const size_t end = i; /* the closing quote */
    char *o = arena_alloc(ps->doc, end - start);
    if (!o) return oom(ps);
    /* pass 2: decode (already validated) */
    size_t k = 0;
    for (i = start + 1; i < end;) {
        unsigned char c = ps->p[i];
        if (c != '\\') { o[k++] = (char)c; i++; continue; }
        unsigned char e = ps->p[i + 1];
        switch (e) {
        case 'b': o[k++] = '\b'; i += 2; break;
        case 'f': o[k++] = '\f'; i += 2; break;
        case 'n': o[k++] = '\n'; i += 2; break;
        case 'r': o[k++] = '\r'; i += 2; break;
        case 't': o[k++] = '\t'; i += 2; break;
        case 'u': {
            uint32_t cp = (uint32_t)hex4(ps, i + 2);
            i += 6;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                uint32_t lo = (uint32_t)hex4(ps, i + 2);
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                i += 6;
            }
            k += put_utf8(o + k, cp);
            break;
        }
        default: o[k++] = (char)e; i += 2; break;
        }
    }
    o[k] = '\0';
    *s = o;
    *len = k;
    ps->pos = end + 1;
    return MOE_OK;
}

static moe_status parse_number(parser *ps, double *out) {
    const size_t start = ps->pos;
    size_t i = start;
    const unsigned char *p = ps->p;
    int is_int = 1;
    if (i < ps->n && p[i] == '-') i++;
    if (i >= ps->n || !(p[i] >= '0' && p[i] <= '9'))
        return fail_at(ps, i, MOE_ERR_FORMAT, "expected a digit in a number");
    if (p[i] == '0') {
        i++;
        if (i < ps->n && p[i] >= '0' && p[i] <= '9')
            return fail_at(ps, i, MOE_ERR_FORMAT, "leading zero in a number");
    } else {
        while (i < ps->n && p[i] >= '0' && p[i] <= '9') i++;
    }
    if (i < ps->n && p[i] == '.') {
        is_int = 0;
        i++;
        if (i >= ps->n || !(p[i] >= '0' && p[i] <= '9'))
            return fail_at(ps, i, MOE_ERR_FORMAT, "expected a digit after the decimal point");
        while (i < ps->n && p[i] >= '0' && p[i] <= '9') i++;
    }
    if (i < ps->n && (p[i] == 'e' || p[i] == 'E')) {
        is_int = 0;
        i++;
        if (i < ps->n && (p[i] == '+' || p[i] == '-')) i++;
        if (i >= ps->n || !(p[i] >= '0' && p[i] <= '9'))
            return fail_at(ps, i, MOE_ERR_FORMAT, "expected a digit in the exponent");
        while (i < ps->n && p[i] >= '0' && p[i] <= '9') i++;
    }
    size_t len = i - start;
    double v = 0.0;
    if (is_int && len <= 16) { /* exact: at most 15 digits plus the sign */
        size_t j = start;
        int neg = p[j] == '-';
        if (neg) j++;
        for (; j < i; j++) v = v * 10.0 + (double)(p[j] - '0');
        if (neg) v = -v;
    } else {
        char buf[512];
        if (len >= sizeof buf) return fail_at(ps, start, MOE_ERR_FORMAT, "number longer than 511 characters");
        memcpy(buf, p + start, len);
        buf[len] = '\0';
        errno = 0;
        v = strtod(buf, NULL);
        if (isinf(v)) return fail_at(ps, start, MOE_ERR_FORMAT, "number out of the range of a double");
    }
    *out = v;
    ps->pos = i;
    return MOE_OK;
}

static moe_status lit(parser *ps, const char *word) {
    size_t n = strlen(word);
    if (ps->n - ps->pos < n || memcmp(ps->p + ps->pos, word, n) != 0)
        return fail(ps, "expected a value (object, array, string, number, true, false or null)");
    ps->pos += n;
    return MOE_OK;
}

/* --------------------------------------------------------------- values */

static moe_status parse_value(parser *ps, json_value *v);

static moe_status push_value(parser *ps, const json_value *v) {
    if (ps->vn == ps->vcap) {
        size_t cap = ps->vcap ? 2 * ps->vcap : 64;
        json_value *nv = realloc(ps->vs, cap * sizeof *nv);
        if (!nv) return oom(ps);
        ps->vs = nv;
        ps->vcap = cap;
    }
    ps->vs[ps->vn++] = *v;
    return MOE_OK;
}

static moe_status push_member(parser *ps, const json_member *m) {
    if (ps->mn == ps->mcap) {
        size_t cap = ps->mcap ? 2 * ps->mcap : 64;
        json_member *nm = realloc(ps->ms, cap * sizeof *nm);
        if (!nm) return oom(ps);
        ps->ms = nm;
        ps->mcap = cap;
    }
    ps->ms[ps->mn++] = *m;
    return MOE_OK;
}

static moe_status parse_array(parser *ps, json_value *v) {
    const size_t base = ps->vn;
    moe_status st;
    ps->pos++; /* [ */
    skip_ws(ps);
    if (ps->pos < ps->n && ps->p[ps->pos] == ']') {
        ps->pos++;
    } else {
        for (;;) {
            json_value e;
            if ((st = parse_value(ps, &e)) || (st = push_value(ps, &e))) return st;
            skip_ws(ps);
            if (ps->pos >= ps->n) return fail(ps, "array not closed (expected ',' or ']')");
            unsigned char c = ps->p[ps->pos];
            if (c == ',') { ps->pos++; continue; }
            if (c == ']') { ps->pos++; break; }
            return fail(ps, "expected ',' or ']' in an array");
        }
    }
    size_t n = ps->vn - base;
    json_value *items = NULL;
    if (n) {
        if (!(items = arena_alloc(ps->doc, n * sizeof *items))) return oom(ps);
        memcpy(items, ps->vs + base, n * sizeof *items);
    }
    ps->vn = base;
    v->type = JSON_ARRAY;
    v->u.arr.v = items;
    v->u.arr.n = n;
    return MOE_OK;
}

static moe_status parse_object(parser *ps, json_value *v) {
    const size_t base = ps->mn;
    moe_status st;
    ps->pos++; /* { */
    skip_ws(ps);
    if (ps->pos < ps->n && ps->p[ps->pos] == '}') {
        ps->pos++;
    } else {
        for (;;) {
            json_member m;
            skip_ws(ps);
            if (ps->pos >= ps->n || ps->p[ps->pos] != '"')
                return fail(ps, "expected a string key in an object");
            if ((st = parse_string(ps, &m.key, &m.key_n))) return st;
            skip_ws(ps);
            if (ps->pos >= ps->n || ps->p[ps->pos] != ':')
                return fail(ps, "expected ':' after an object key");
            ps->pos++;
            if ((st = parse_value(ps, &m.val)) || (st = push_member(ps, &m))) return st;
            skip_ws(ps);
            if (ps->pos >= ps->n) return fail(ps, "object not closed (expected ',' or '}')");
            unsigned char c = ps->p[ps->pos];
            if (c == ',') { ps->pos++; continue; }
            if (c == '}') { ps->pos++; break; }
            return fail(ps, "expected ',' or '}' in an object");
        }
    }
    size_t n = ps->mn - base;
    json_member *items = NULL;
    if (n) {
        if (!(items = arena_alloc(ps->doc, n * sizeof *items))) return oom(ps);
        memcpy(items, ps->ms + base, n * sizeof *items);
    }
    ps->mn = base;
    v->type = JSON_OBJECT;
    v->u.obj.m = items;
    v->u.obj.n = n;
    return MOE_OK;
}

static moe_status parse_value(parser *ps, json_value *v) {
    skip_ws(ps);
    memset(v, 0, sizeof *v);
    v->offset = ps->pos;
    if (ps->pos >= ps->n) return fail(ps, "unexpected end of input (expected a value)");
    unsigned char c = ps->p[ps->pos];
    moe_status st;
    switch (c) {
    case '{': case '[':
        if (ps->depth >= ps->max_depth) {
            char msg[96];
            snprintf(msg, sizeof msg, "nesting deeper than %d", ps->max_depth);
            return fail(ps, msg);
        }
        ps->depth++;
        st = c == '{' ? parse_object(ps, v) : parse_array(ps, v);
        ps->depth--;
        return st;
    case '"':
        v->type = JSON_STRING;
        return parse_string(ps, &v->u.str.s, &v->u.str.n);
    case 't': v->type = JSON_TRUE; return lit(ps, "true");
    case 'f': v->type = JSON_FALSE; return lit(ps, "false");
    case 'n': v->type = JSON_NULL; return lit(ps, "null");
    default:
        if (c == '-' || (c >= '0' && c <= '9')) {
            v->type = JSON_NUMBER;
            return parse_number(ps, &v->u.num);
        }
        return fail(ps, "expected a value (object, array, string, number, true, false or null)");
    }
}

/* ------------------------------------------------------------------ API */

moe_status json_parse(json_doc **out, const char *text, size_t n, const char *name,
                      const json_limits *limits, moe_error *err) {
    *out = NULL;
    const char *nm = name ? name : "<json>";
    size_t max_size = limits && limits->max_size ? limits->max_size : JSON_DEFAULT_MAX;
    int max_depth = limits && limits->max_depth > 0 ? limits->max_depth : JSON_DEFAULT_DEPTH;
    if (!text && n) return moe_err(err, MOE_ERR_ARG, "%s: text is NULL", nm);
    if (n > max_size)
        return moe_err(err, MOE_ERR_FORMAT, "%s: %zu bytes, more than the limit of %zu", nm, n,
                       max_size);
    json_doc *d = calloc(1, sizeof *d);
    if (!d) return moe_err(err, MOE_ERR_NOMEM, "%s: out of memory", nm);
    snprintf(d->name, sizeof d->name, "%s", nm);
    parser ps;
    memset(&ps, 0, sizeof ps);
    ps.p = (const unsigned char *)text;
    ps.n = n;
    ps.max_depth = max_depth;
    ps.doc = d;
    ps.err = err;
    moe_status st = parse_value(&ps, &d->root);
    if (!st) {
        skip_ws(&ps);
        if (ps.pos != ps.n) st = fail(&ps, "unexpected text after the value");
    }
    free(ps.vs);
    free(ps.ms);
    if (st) {
        json_free(d);
        return st;
    }
    *out = d;
    return MOE_OK;
}

moe_status json_parse_file(json_doc **out, const char *path, const json_limits *limits,
                           moe_error *err) {
    *out = NULL;
    size_t max_size = limits && limits->max_size ? limits->max_size : JSON_DEFAULT_MAX;
    FILE *f = fopen(path, "rb");
    if (!f) return moe_err(err, MOE_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    char *buf = NULL;
    size_t n = 0, cap = 0;
    moe_status st = MOE_OK;
    for (;;) {
        if (cap - n < 65536) {
            size_t nc = cap ? 2 * cap : 1 << 16;
            if (nc > max_size + 65536) nc = max_size + 65536;
            if (nc <= cap) {
                st = moe_err(err, MOE_ERR_FORMAT, "%s: more than the limit of %zu bytes", path,
                             max_size);
                break;
            }
            char *nb = realloc(buf, nc);
            if (!nb) { st = moe_err(err, MOE_ERR_NOMEM, "%s: out of memory", path); break; }
            buf = nb;
            cap = nc;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) {
            if (ferror(f)) st = moe_err(err, MOE_ERR_IO, "%s: read error", path);
            break;
        }
    }
    fclose(f);
    if (!st) st = json_parse(out, buf, n, path, limits, err);
    free(buf);
    return st;
}

const json_value *json_root(const json_doc *d) { return d ? &d->root : NULL; }

const json_value *json_get(const json_value *o, const char *key) {
    if (!o || o->type != JSON_OBJECT || !key) return NULL;
    size_t kn = strlen(key);
    for (size_t i = 0; i < o->u.obj.n; i++) {
        const json_member *m = &o->u.obj.m[i];
        if (m->key_n == kn && memcmp(m->key, key, kn) == 0) return &m->val;
    }
    return NULL;
}

int json_as_int(const json_value *v, int64_t *out) {
    if (!v || v->type != JSON_NUMBER) return 0;
    double x = v->u.num;
    if (!(fabs(x) <= 9007199254740992.0) || x != floor(x)) return 0;
    *out = (int64_t)x;
    return 1;
}

int json_get_str(const json_value *o, const char *key, const char **out) {
    const json_value *v = json_get(o, key);
    if (!v || v->type != JSON_STRING) return 0;
    *out = v->u.str.s;
    return 1;
}

int json_get_num(const json_value *o, const char *key, double *out) {
    const json_value *v = json_get(o, key);
    if (!v || v->type != JSON_NUMBER) return 0;
    *out = v->u.num;
    return 1;
}

int json_get_int(const json_value *o, const char *key, int64_t *out) {
    return json_as_int(json_get(o, key), out);
}

int json_get_bool(const json_value *o, const char *key, int *out) {
    const json_value *v = json_get(o, key);
    if (!v || (v->type != JSON_TRUE && v->type != JSON_FALSE)) return 0;
    *out = v->type == JSON_TRUE;
    return 1;
}

const char *json_type_name(json_type t) {
    static const char *const names[] = {"null", "false", "true", "number", "string", "array",
                                        "object"};
    return (unsigned)t <= JSON_OBJECT ? names[t] : "unknown";
}
