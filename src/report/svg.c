/* svg.c: the string buffer, XML escaping and colours of svg.h. The figures
 * are fig_lines.c and fig_heat.c. */
#include "report/svg.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
        if (c == '&') { strbuf_puts(b, "&amp;"); i++; }
        else if (c == '<') { strbuf_puts(b, "&lt;"); i++; }
        else if (c == '>') { strbuf_puts(b, "&gt;"); i++; }
        else if (c == '"') { strbuf_puts(b, "&quot;"); i++; }
        else if (c == '\'') { strbuf_puts(b, "&#39;"); i++; }
        else if (c == '\n' || c == '\t') { strbuf_put(b, (const char *)u + i, 1); i++; }
        else if (c < 0x20 || c == 0x7f) { strbuf_puts(b, "\xEF\xBF\xBD"); i++; }
        else {
            size_t k = utf8_len(u + i, n - i);
            if (k == 0) { strbuf_puts(b, "\xEF\xBF\xBD"); i++; }
            else { strbuf_put(b, (const char *)u + i, k); i += k; }
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
