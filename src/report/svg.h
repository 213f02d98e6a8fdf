/* svg.h: a small writer of XHTML and inline SVG into a growing buffer, and
 * the two kinds of figure the reports draw (internal).
 *
 * For: `moe report` and `moe route --html` pages that are one file with no
 * external resource, well-formed XML (an XML parser reads them) and stable
 * DOM ids. Not for: general plotting, fonts, interactivity beyond CSS and
 * <title> tooltips.
 *
 * Every text goes through sb_text / sb_attr (XML escaped; control bytes and
 * invalid UTF-8 become U+FFFD). Sizes are in SVG user units (px).
 */
#ifndef MOE_REPORT_SVG_H
#define MOE_REPORT_SVG_H

#include <stddef.h>
#include <stdint.h>

#include "core/strbuf.h"
#include "moe.h"

/* The page is built in a core/strbuf.h string. */
typedef strbuf sb;

/* XML-escaped text (& < > " '), invalid UTF-8 and control bytes (but \n \t)
 * as U+FFFD. */
void sb_text(sb *b, const char *s);
void sb_textn(sb *b, const char *s, size_t n);

/* The i-th colour of a palette of 10 distinct colours ("#rrggbb"). */
const char *svg_color(int i);
/* A sequential colour for v in [0, 1] (white to dark blue). */
void svg_heat_color(char out[8], double v);

/* One line of a line chart. */
typedef struct svg_series {
    const char *name;   /* legend text */
    const double *x, *y;/* [n]; non-finite points are skipped */
    int n;
    int color;          /* svg_color index */
    int dashed;         /* 1: dashed line */
    int markers;        /* 1: a dot at each point */
} svg_series;

typedef struct svg_lines_opts {
    const char *id;       /* DOM id of the <svg> */
    const char *title;
    const char *xlabel, *ylabel;
    int logy;             /* 1: log10 y axis (positive values only) */
    int width, height;    /* 0: 460 x 280 */
} svg_lines_opts;

/* A line chart with axes, ticks, labels and a legend (when > 1 series).
 * Series without finite points are listed as "(no data)". */
void svg_lines(sb *b, const svg_lines_opts *o, const svg_series *s, int n_series);

typedef struct svg_heat_opts {
    const char *id;
    const char *title;
    const char *xlabel, *ylabel;
    const char *const *row_labels; /* [rows] or NULL (row index) */
    const char *const *col_labels; /* [cols] or NULL (column index) */
    double vmax;                   /* colour scale top; <= 0: the maximum */
    const char *fmt;               /* printf format of a cell's value in its tooltip ("%.3f") */
    int show_values;               /* write values in the cells (small tables) */
} svg_heat_opts;

/* A heatmap of v[rows, cols] (row r drawn top to bottom), a <title> tooltip
 * per cell, and a colour bar. */
void svg_heat(sb *b, const svg_heat_opts *o, const double *v, int rows, int cols);

#endif /* MOE_REPORT_SVG_H */
