/* fig_lines.c: the line chart of svg.h: axes with "nice" ticks, one
 * polyline per series, a legend below the plot. */
#include "report/svg.h"

#include <math.h>
#include <stdio.h>

/* A tick step of 1, 2 or 5 times a power of ten giving about n ticks. */
static double nice_step(double span, int n) {
    if (!(span > 0)) return 1;
    double raw = span / n, p = pow(10, floor(log10(raw))), f = raw / p;
    return (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * p;
}

static void fmt_num(char *o, size_t n, double v) {
    double a = fabs(v);
    if (a == 0) snprintf(o, n, "0");
    else if (a >= 1e5 || a < 1e-3) snprintf(o, n, "%.2g", v);
    else if (a >= 100) snprintf(o, n, "%.0f", v);
    else snprintf(o, n, "%.3g", v);
}

static int ok_point(const svg_lines_opts *o, double x, double y) {
    return isfinite(x) && isfinite(y) && (!o->logy || y > 0);
}

void svg_lines(sb *b, const svg_lines_opts *o, const svg_series *s, int n_series) {
    const int W = o->width > 0 ? o->width : 460, H0 = o->height > 0 ? o->height : 280;
    const int legend_rows = n_series > 1 ? (n_series + 1) / 2 : 0;
    const int H = H0 + 16 * legend_rows + (legend_rows ? 6 : 0);
    const double L = 62, R = 14, T = 28, B = 44; /* margins of the plot area */
    const double pw = W - L - R, ph = H0 - T - B;
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    for (int i = 0; i < n_series; i++)
        for (int j = 0; j < s[i].n; j++) {
            double x = s[i].x[j], y = s[i].y[j];
            if (!ok_point(o, x, y)) continue;
            if (o->logy) y = log10(y);
            if (x < x0) x0 = x;
            if (x > x1) x1 = x;
            if (y < y0) y0 = y;
            if (y > y1) y1 = y;
        }
    int empty = !(x0 <= x1);
    if (empty) { x0 = 0; x1 = 1; y0 = 0; y1 = 1; }
    if (x1 == x0) { x0 -= 0.5; x1 += 0.5; }
    const int nonneg = y0 >= 0 && !o->logy;
    if (y1 == y0) { double d = fabs(y0) > 0 ? fabs(y0) * 0.1 : 1; y0 -= d; y1 += d; }
    double pad = (y1 - y0) * 0.05;
    y0 -= pad;
    if (nonneg && y0 < 0) y0 = 0;
    y1 += pad;
    strbuf_printf(b, "<svg xmlns=\"http://www.w3.org/2000/svg\" id=\"");
    sb_text(b, o->id);
    strbuf_printf(b, "\" class=\"fig\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" role=\"img\">\n", W, H, W, H);
    strbuf_puts(b, "<title>");
    sb_text(b, o->title);
    strbuf_puts(b, "</title>\n");
    strbuf_printf(b, "<rect x=\"0\" y=\"0\" width=\"%d\" height=\"%d\" fill=\"#ffffff\"/>\n", W, H);
    strbuf_printf(b, "<text x=\"%d\" y=\"17\" text-anchor=\"middle\" class=\"ft\">", W / 2);
    sb_text(b, o->title);
    strbuf_puts(b, "</text>\n");
    /* ticks and grid */
    double xs = nice_step(x1 - x0, 5), ys = nice_step(y1 - y0, 5);
    if (o->logy) ys = ys < 1 ? (ys < 0.5 ? ys : 0.5) : ceil(ys);
    #define PX(x) (L + ((x) - x0) / (x1 - x0) * pw)
    #define PY(y) (T + ph - ((y) - y0) / (y1 - y0) * ph)
    char lab[32];
    for (double v = ceil(x0 / xs) * xs; v <= x1 + 1e-9 * xs; v += xs) {
        fmt_num(lab, sizeof lab, fabs(v) < 1e-12 * xs ? 0 : v);
        strbuf_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" class=\"grid\"/>", PX(v), T, PX(v), T + ph);
        strbuf_printf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" class=\"tk\">%s</text>\n", PX(v), T + ph + 14, lab);
    }
    for (double v = ceil(y0 / ys) * ys; v <= y1 + 1e-9 * ys; v += ys) {
        fmt_num(lab, sizeof lab, o->logy ? pow(10, v) : (fabs(v) < 1e-12 * ys ? 0 : v));
        strbuf_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" class=\"grid\"/>", L, PY(v), L + pw, PY(v));
        strbuf_printf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" class=\"tk\">%s</text>\n", L - 4, PY(v) + 4, lab);
    }
    strbuf_printf(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" class=\"frame\"/>\n", L, T, pw, ph);
    strbuf_printf(b, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\" class=\"lb\">", L + pw / 2, H0 - 8);
    sb_text(b, o->xlabel);
    strbuf_printf(b, "</text>\n<text x=\"12\" y=\"%.1f\" text-anchor=\"middle\" class=\"lb\" transform=\"rotate(-90 12 %.1f)\">",
              T + ph / 2, T + ph / 2);
    sb_text(b, o->ylabel);
    strbuf_puts(b, o->logy ? " (log)</text>\n" : "</text>\n");
    /* the series */
    for (int i = 0; i < n_series; i++) {
        const char *col = svg_color(s[i].color);
        int started = 0, npts = 0;
        for (int j = 0; j < s[i].n; j++) {
            double x = s[i].x[j], y = s[i].y[j];
            if (!ok_point(o, x, y)) continue;
            if (o->logy) y = log10(y);
            if (!started) {
                strbuf_printf(b, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\"%s points=\"", col,
                          s[i].dashed ? " stroke-dasharray=\"5,3\"" : "");
                started = 1;
            }
            strbuf_printf(b, "%.1f,%.1f ", PX(x), PY(y));
            npts++;
        }
        if (started) strbuf_puts(b, "\"/>\n");
        if (s[i].markers || npts == 1)
            for (int j = 0; j < s[i].n; j++) {
                double x = s[i].x[j], y = s[i].y[j];
                if (!ok_point(o, x, y)) continue;
                if (o->logy) y = log10(y);
                strbuf_printf(b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.5\" fill=\"%s\"><title>", PX(x), PY(y), col);
                sb_text(b, s[i].name);
                strbuf_printf(b, ": %g at %g</title></circle>", s[i].y[j], x);
            }
        /* legend */
        if (n_series > 1) {
            double lx = L + (i % 2) * (pw / 2), ly = H0 + 16 * (i / 2) + 6;
            strbuf_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"2\"%s/>",
                      lx, ly, lx + 18, ly, col, s[i].dashed ? " stroke-dasharray=\"5,3\"" : "");
            strbuf_printf(b, "<text x=\"%.1f\" y=\"%.1f\" class=\"lg\">", lx + 22, ly + 4);
            sb_text(b, s[i].name);
            strbuf_puts(b, npts ? "</text>\n" : " (no data)</text>\n");
        }
    }
    if (empty)
        strbuf_printf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" class=\"lb\">no data</text>\n", L + pw / 2,
                  T + ph / 2);
    #undef PX
    #undef PY
    strbuf_puts(b, "</svg>\n");
}
