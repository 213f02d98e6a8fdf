/* fig_heat.c: the heatmap of svg.h: cells coloured white to dark blue,
 * row and column labels (thinned when many), a tooltip per cell, a colour bar. */
#include "report/svg.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

void svg_heat(sb *b, const svg_heat_opts *o, const double *v, int rows, int cols) {
    const double L = 96, T = 30, R = 60, B = 40;
    double cw = cols > 0 ? 420.0 / cols : 10, ch = rows > 0 ? 260.0 / rows : 10;
    if (cw > 36) cw = 36;
    if (cw < 3) cw = 3;
    if (ch > 24) ch = 24;
    if (ch < 3) ch = 3;
    const double pw = cw * cols, ph = ch * rows;
    int W = (int)(L + pw + R) + 1;
    const int H = (int)(T + ph + B) + 1;
    const int title_w = o->title ? (int)strlen(o->title) * 7 + 20 : 0;
    if (W < title_w) W = title_w;
    double vmax = o->vmax;
    if (!(vmax > 0)) {
        vmax = 0;
        for (int i = 0; i < rows * cols; i++) if (isfinite(v[i]) && v[i] > vmax) vmax = v[i];
        if (vmax <= 0) vmax = 1;
    }
    const char *fmt = o->fmt ? o->fmt : "%.3f";
    strbuf_puts(b, "<svg xmlns=\"http://www.w3.org/2000/svg\" id=\"");
    sb_text(b, o->id);
    strbuf_printf(b, "\" class=\"fig\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" role=\"img\">\n", W, H, W, H);
    strbuf_puts(b, "<title>");
    sb_text(b, o->title);
    strbuf_puts(b, "</title>\n");
    strbuf_printf(b, "<rect x=\"0\" y=\"0\" width=\"%d\" height=\"%d\" fill=\"#ffffff\"/>\n", W, H);
    strbuf_printf(b, "<text x=\"%d\" y=\"17\" text-anchor=\"middle\" class=\"ft\">", W / 2);
    sb_text(b, o->title);
    strbuf_puts(b, "</text>\n");
    char col[8], num[64];
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) {
            double x = v[(size_t)r * cols + c];
            svg_heat_color(col, isfinite(x) ? x / vmax : 0);
            strbuf_printf(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.2f\" height=\"%.2f\" fill=\"%s\"><title>", L + c * cw,
                      T + r * ch, cw + 0.05, ch + 0.05, col);
            if (o->row_labels) sb_text(b, o->row_labels[r]); else strbuf_printf(b, "%d", r);
            strbuf_puts(b, ", ");
            if (o->col_labels) sb_text(b, o->col_labels[c]); else strbuf_printf(b, "%d", c);
            if (isfinite(x)) snprintf(num, sizeof num, fmt, x);
            else snprintf(num, sizeof num, "n/a");
            strbuf_puts(b, ": ");
            sb_text(b, num);
            strbuf_puts(b, "</title></rect>");
            if (o->show_values && cw >= 28 && ch >= 12) {
                strbuf_printf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" class=\"cv\" fill=\"%s\">",
                          L + c * cw + cw / 2, T + r * ch + ch / 2 + 3.5, isfinite(x) && x / vmax > 0.55 ? "#ffffff" : "#000000");
                sb_text(b, num);
                strbuf_puts(b, "</text>");
            }
        }
    strbuf_puts(b, "\n");
    /* labels: at most ~25 per axis */
    int rstep = rows > 25 ? (rows + 24) / 25 : 1, cstep = cols > 25 ? (cols + 24) / 25 : 1;
    for (int r = 0; r < rows; r += rstep) {
        strbuf_printf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" class=\"tk\">", L - 4, T + r * ch + ch / 2 + 3.5);
        if (o->row_labels) sb_text(b, o->row_labels[r]); else strbuf_printf(b, "%d", r);
        strbuf_puts(b, "</text>");
    }
    for (int c = 0; c < cols; c += cstep) {
        strbuf_printf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" class=\"tk\">", L + c * cw + cw / 2, T + ph + 12);
        if (o->col_labels) sb_text(b, o->col_labels[c]); else strbuf_printf(b, "%d", c);
        strbuf_puts(b, "</text>");
    }
    strbuf_printf(b, "\n<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" class=\"lb\">", L + pw / 2, T + ph + 30);
    sb_text(b, o->xlabel);
    strbuf_printf(b, "</text><text x=\"10\" y=\"%.1f\" text-anchor=\"middle\" class=\"lb\" transform=\"rotate(-90 10 %.1f)\">",
              T + ph / 2, T + ph / 2);
    sb_text(b, o->ylabel);
    strbuf_puts(b, "</text>\n");
    /* colour bar */
    const double bx = L + pw + 14, bh = ph > 60 ? ph : 60;
    for (int i = 0; i < 20; i++) {
        svg_heat_color(col, (19 - i) / 19.0);
        strbuf_printf(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"10\" height=\"%.2f\" fill=\"%s\"/>", bx, T + i * bh / 20, bh / 20 + 0.05, col);
    }
    snprintf(num, sizeof num, fmt, vmax);
    strbuf_printf(b, "<text x=\"%.1f\" y=\"%.1f\" class=\"tk\">", bx + 13, T + 8);
    sb_text(b, num);
    strbuf_printf(b, "</text><text x=\"%.1f\" y=\"%.1f\" class=\"tk\">0</text>\n", bx + 13, T + bh);
    strbuf_puts(b, "</svg>\n");
}
