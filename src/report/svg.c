/* svg.c: the string buffer, XML escaping and colours of svg.h. The figures
 * are fig_lines.c and fig_heat.c. */
#include "report/svg.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sb_free(sb *b) {
    free(b->p);
    memset(b, 0, sizeof *b);
}

static int sb_grow(sb *b, size_t more) {
    if (b->oom) return 0;
    if (b->n + more + 1 <= b->cap) return 1;
    size_t nc = b->cap ? b->cap : 4096;
    while (nc < b->n + more + 1) nc *= 2;
    char *p = realloc(b->p, nc);
    if (!p) { b->oom = 1; return 0; }
    b->p = p;
    b->cap = nc;
    return 1;
}

static void sb_raw(sb *b, const char *s, size_t n) {
    if (!sb_grow(b, n)) return;
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

void sb_put(sb *b, const char *s) { sb_raw(b, s, strlen(s)); }

void sb_printf(sb *b, const char *fmt, ...) {
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (k < 0) return;
    if ((size_t)k < sizeof tmp) { sb_raw(b, tmp, (size_t)k); return; }
    if (!sb_grow(b, (size_t)k)) return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->n, (size_t)k + 1, fmt, ap);
    va_end(ap);
    b->n += (size_t)k;
}

/* Length of the valid UTF-8 sequence at s[0, n), 0 if invalid. */
static size_t utf8_len(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    size_t len;
    unsigned lo = 0x80, hi = 0xBF;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c >= 0xE0 && c <= 0xEF) { len = 3; if (c == 0xE0) lo = 0xA0; if (c == 0xED) hi = 0x9F; }
    else if (c >= 0xF0 && c <= 0xF4) { len = 4; if (c == 0xF0) lo = 0x90; if (c == 0xF4) hi = 0x8F; }
    else return 0;
    if (len > n) return 0;
    if (s[1] < lo || s[1] > hi) return 0;
    for (size_t k = 2; k < len; k++) if (s[k] < 0x80 || s[k] > 0xBF) return 0;
    return len;
}

void sb_textn(sb *b, const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        unsigned c = u[i];
        if (c == '&') { sb_put(b, "&amp;"); i++; }
        else if (c == '<') { sb_put(b, "&lt;"); i++; }
        else if (c == '>') { sb_put(b, "&gt;"); i++; }
        else if (c == '"') { sb_put(b, "&quot;"); i++; }
        else if (c == '\'') { sb_put(b, "&#39;"); i++; }
        else if (c == '\n' || c == '\t') { sb_raw(b, (const char *)u + i, 1); i++; }
        else if (c < 0x20 || c == 0x7f) { sb_put(b, "\xEF\xBF\xBD"); i++; }
        else {
            size_t k = utf8_len(u + i, n - i);
            if (k == 0) { sb_put(b, "\xEF\xBF\xBD"); i++; }
            else { sb_raw(b, (const char *)u + i, k); i += k; }
        }
    }
}

void sb_text(sb *b, const char *s) { sb_textn(b, s ? s : "", s ? strlen(s) : 0); }

const char *svg_color(int i) {
    static const char *pal[10] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                  "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};
    if (i < 0) i = -i;
    return pal[i % 10];
}

void svg_heat_color(char out[8], double v) {
    if (!(v >= 0)) v = 0;
    if (v > 1) v = 1;
    /* white (255,255,255) -> light blue (158,202,225) -> dark blue (8,48,107) */
    double r, g, bl;
    if (v < 0.5) {
        double t = v / 0.5;
        r = 255 + t * (158 - 255); g = 255 + t * (202 - 255); bl = 255 + t * (225 - 255);
    } else {
        double t = (v - 0.5) / 0.5;
        r = 158 + t * (8 - 158); g = 202 + t * (48 - 202); bl = 225 + t * (107 - 225);
    }
    snprintf(out, 8, "#%02x%02x%02x", (int)lround(r), (int)lround(g), (int)lround(bl));
}
