/* route_html.c: moe_route_render_html, the page of `moe route --html`: a
 * text coloured token by token by its top expert, one view per MoE layer
 * chosen by CSS radio buttons (no script), tooltips with every expert and
 * weight, and a layers x experts usage heatmap. Not for: computing the
 * routing (the engine's hook, cli/route.c). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "moe_infer.h"
#include "report/svg.h"

/* The top expert (largest weight) of (token t, layer j), -1 when none. */
static int top_expert(const moe_route_doc *d, int t, int j) {
    const size_t base = ((size_t)t * d->n_layers + j) * (size_t)d->stride;
    const int c = d->n_sel[(size_t)t * d->n_layers + j];
    int best = -1;
    for (int k = 0; k < c; k++)
        if (best < 0 || d->weights[base + k] > d->weights[base + best]) best = k;
    return best < 0 ? -1 : d->experts[base + best];
}

moe_status moe_route_render_html(char **out, size_t *out_n, const moe_route_doc *d, moe_error *err) {
    if (!out || !out_n || !d) return moe_err(err, MOE_ERR_ARG, "moe_route_render_html: NULL argument");
    *out = NULL;
    *out_n = 0;
    if (d->n_tokens < 0 || d->n_layers < 0 || d->n_experts < 1 || d->stride < 1 ||
        (d->n_tokens > 0 && d->n_layers > 0 && (!d->n_sel || !d->experts || !d->weights || !d->pieces || !d->layers)))
        return moe_err(err, MOE_ERR_ARG, "moe_route_render_html: n_tokens %d, n_layers %d, n_experts %d, stride %d or "
                       "a NULL array", d->n_tokens, d->n_layers, d->n_experts, d->stride);
    const int n = d->n_tokens, M = d->n_layers, E = d->n_experts, K = d->stride;
    sb b = {0};
    strbuf_puts(&b, "<!DOCTYPE html>\n<html xmlns=\"http://www.w3.org/1999/xhtml\" lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n"
               "<title>moe route</title>\n<style>");
    strbuf_puts(&b, "body{font-family:sans-serif;margin:16px;color:#111;background:#fff}h1{font-size:18px}"
               ".view{display:none;white-space:pre-wrap;font-family:monospace;font-size:14px;line-height:1.9;"
               "border:1px solid #ccc;padding:8px}.t{border-radius:3px;padding:1px 0;box-shadow:inset -1px 0 #fff}.nl{color:#999}"
               ".sw{display:inline-block;min-width:26px;text-align:center;font-size:11px;margin:1px;border-radius:3px}"
               "#route-layers label{margin-right:8px;font-size:13px}.note{font-size:12px;color:#444}"
               "svg .ft{font-size:13px;font-weight:bold}svg .tk{font-size:10px;fill:#333}svg .lb{font-size:11px}"
               "svg .cv{font-size:9px}");
    /* one colour per expert: hues around the circle, two lightnesses */
    for (int e = 0; e < E; e++)
        strbuf_printf(&b, ".e%d{background:hsl(%d,75%%,%d%%)}", e, (int)(360.0 * e / E + 0.5) % 360, e % 2 ? 72 : 82);
    for (int j = 0; j < M; j++)
        strbuf_printf(&b, "#sel-%d:checked ~ #route-views #route-layer-%d{display:block}", d->layers[j], d->layers[j]);
    strbuf_puts(&b, "@media print{.view{display:block !important;page-break-inside:auto}#route-layers input{display:none}}");
    strbuf_puts(&b, "</style>\n</head>\n<body>\n<h1 id=\"route-title\">Routing of ");
    sb_text(&b, d->title ? d->title : "a model");
    strbuf_printf(&b, "</h1>\n<p class=\"note\">%d tokens, %d MoE layers, %d experts. Each token is coloured by its top "
                  "expert (largest gate weight) in the chosen layer; hover a token for all its experts and weights.</p>\n",
              n, M, E);
    strbuf_puts(&b, "<div id=\"route-layers\">\n");
    for (int j = 0; j < M; j++) {
        strbuf_printf(&b, "<input type=\"radio\" name=\"layer\" id=\"sel-%d\"%s/><label for=\"sel-%d\">layer %d</label>\n",
                  d->layers[j], j == 0 ? " checked=\"checked\"" : "", d->layers[j], d->layers[j]);
    }
    strbuf_puts(&b, "<p class=\"note\">experts: ");
    for (int e = 0; e < E; e++) strbuf_printf(&b, "<span class=\"sw e%d\">%d</span>", e, e);
    strbuf_puts(&b, "</p>\n<div id=\"route-views\">\n");
    for (int j = 0; j < M; j++) {
        strbuf_printf(&b, "<div class=\"view\" id=\"route-layer-%d\">", d->layers[j]);
        for (int t = 0; t < n; t++) {
            const int top = top_expert(d, t, j);
            const size_t base = ((size_t)t * M + j) * (size_t)K;
            const int c = d->n_sel[(size_t)t * M + j];
            if (top >= 0) strbuf_printf(&b, "<span class=\"t e%d\" title=\"", top);
            else strbuf_puts(&b, "<span class=\"t\" title=\"");
            strbuf_printf(&b, "token %d (id %d), layer %d:", t, d->ids ? (int)d->ids[t] : -1, d->layers[j]);
            for (int k = 0; k < c; k++) strbuf_printf(&b, " e%d %.3f", d->experts[base + k], d->weights[base + k]);
            if (c == 0) strbuf_puts(&b, " no expert");
            strbuf_puts(&b, "\">");
            const char *p = d->pieces[t] ? d->pieces[t] : "";
            size_t len = strlen(p), a = 0;
            if (len == 0) strbuf_puts(&b, "\xE2\x88\x85"); /* an empty piece (BOS): the empty-set sign */
            for (size_t i = 0; i < len; i++)
                if (p[i] == '\n') {
                    sb_textn(&b, p + a, i - a);
                    strbuf_puts(&b, "<span class=\"nl\">\xE2\x86\xB5</span>\n");
                    a = i + 1;
                }
            sb_textn(&b, p + a, len - a);
            strbuf_puts(&b, "</span>");
        }
        strbuf_puts(&b, "</div>\n");
    }
    strbuf_puts(&b, "</div>\n</div>\n");
    /* usage: layers x experts, share of the layer's assignments */
    double *u = calloc((size_t)M * E + 1, sizeof *u);
    char (*rn)[24] = calloc((size_t)M + 1, sizeof *rn);
    const char **rl = calloc((size_t)M + 1, sizeof *rl);
    if (!u || !rn || !rl) b.oom = 1;
    else {
        for (int j = 0; j < M; j++) {
            double tot = 0;
            for (int t = 0; t < n; t++) {
                const size_t base = ((size_t)t * M + j) * (size_t)K;
                for (int k = 0; k < d->n_sel[(size_t)t * M + j]; k++) {
                    const int e = d->experts[base + k];
                    if (e >= 0 && e < E) { u[(size_t)j * E + e] += 1; tot += 1; }
                }
            }
            for (int e = 0; e < E; e++) u[(size_t)j * E + e] = tot > 0 ? u[(size_t)j * E + e] / tot : NAN;
            snprintf(rn[j], sizeof rn[0], "layer %d", d->layers[j]);
            rl[j] = rn[j];
        }
        strbuf_puts(&b, "<h2 style=\"font-size:15px\">Expert usage on this text</h2>\n");
        svg_heat_opts o = {"fig-route-usage", "share of each layer's assignments", "expert", "layer", rl, NULL, 0,
                           "%.3f", 0};
        if (M > 0) svg_heat(&b, &o, u, M, E);
        else strbuf_puts(&b, "<p id=\"fig-route-usage\">The model has no MoE layer.</p>\n");
    }
    free(u);
    free(rn);
    free(rl);
    strbuf_puts(&b, "</body>\n</html>\n");
    if (b.oom) { strbuf_free(&b); return moe_err(err, MOE_ERR_NOMEM, "moe_route_render_html: out of memory"); }
    *out = b.p;
    *out_n = b.n;
    return MOE_OK;
}
