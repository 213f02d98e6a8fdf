/* report.c: moe_report_write, the page of `moe report RUN_DIR...`: a
 * configuration table, training curves of every run overlaid, and per run
 * the routing figures (expert load over evaluations per MoE layer,
 * max-violation and dead experts, source x expert heatmaps with
 * I(source; expert)). One XHTML file with inline SVG and CSS, no script, no
 * external resource; written atomically. Figure ids are listed in
 * docs/REPORT.md and stay stable. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/atomic_file.h"
#include "core/error.h"
#include "report/runs.h"
#include "report/svg.h"

static const char *jstr(const json_value *o, const char *k, const char *dflt) {
    const char *s;
    return json_get_str(o, k, &s) ? s : dflt;
}
static double jnum(const json_value *o, const char *k) {
    double x;
    return json_get_num(o, k, &x) ? x : NAN;
}

/* A run's name in legends: its folder as given. */
static const char *run_name(const rp_run *r) { return r->dir; }

/* One figure of every run's series (x from xs, y from ys, picked by the getters). */
typedef const dvec *(*get_fn)(const rp_run *r);
#define GETTER(name, field) static const dvec *name(const rp_run *r) { return &r->field; }
GETTER(g_step, step)
GETTER(g_wall, wall)
GETTER(g_loss, loss)
GETTER(g_aux, aux)
GETTER(g_z, z)
GETTER(g_lr, lr)
GETTER(g_gn, grad_norm)
GETTER(g_tps, tps)
GETTER(g_vstep, vstep)
GETTER(g_vwall, vwall)
GETTER(g_vloss, vloss)

static void fig_runs(sb *b, const rp_run *runs, int n, const char *id, const char *title, const char *xl,
                     const char *yl, get_fn gx, get_fn gy, get_fn vx, get_fn vy, int logy) {
    svg_series *s = calloc((size_t)(2 * n + 1), sizeof *s);
    char (*names)[300] = calloc((size_t)(2 * n + 1), sizeof *names);
    if (!s || !names) { free(s); free(names); b->oom = 1; return; }
    int k = 0;
    for (int i = 0; i < n; i++) {
        const dvec *x = gx(&runs[i]), *y = gy(&runs[i]);
        int m = x->n < y->n ? x->n : y->n;
        snprintf(names[k], sizeof names[0], "%s%s", run_name(&runs[i]), vx ? " train" : "");
        s[k] = (svg_series){names[k], x->v, y->v, m, i, 0, 0};
        k++;
        if (vx) {
            const dvec *a = vx(&runs[i]), *c = vy(&runs[i]);
            m = a->n < c->n ? a->n : c->n;
            snprintf(names[k], sizeof names[0], "%s validation", run_name(&runs[i]));
            s[k] = (svg_series){names[k], a->v, c->v, m, i, 1, 1};
            k++;
        }
    }
    svg_lines_opts o = {id, title, xl, yl, logy, 0, 0};
    strbuf_puts(b, "<div class=\"cell\">");
    svg_lines(b, &o, s, k);
    strbuf_puts(b, "</div>\n");
    free(s);
    free(names);
}

/* Validation loss only, one line with markers per run (the training loss's
 * noise hides differences of a few hundredths); late: only the evaluations
 * in the second half of the longest run (the end, where runs are compared). */
static void fig_val(sb *b, const rp_run *runs, int n, const char *id, const char *title, const char *xl, get_fn vx,
                    int late) {
    svg_series *s = calloc((size_t)n + 1, sizeof *s);
    if (!s) { b->oom = 1; return; }
    double last = 0;
    for (int i = 0; i < n; i++) {
        const dvec *st = g_vstep(&runs[i]);
        for (int j = 0; j < st->n; j++) if (st->v[j] > last) last = st->v[j];
    }
    for (int i = 0; i < n; i++) {
        const dvec *x = vx(&runs[i]), *y = g_vloss(&runs[i]), *st = g_vstep(&runs[i]);
        int m = x->n < y->n ? x->n : y->n, a = 0;
        if (st->n < m) m = st->n;
        while (late && a < m && st->v[a] < 0.5 * last) a++;
        s[i] = (svg_series){run_name(&runs[i]), x->v + a, y->v + a, m - a, i, 0, 1};
    }
    svg_lines_opts o = {id, title, xl, "validation cross-entropy (nats)", 0, 0, 0};
    strbuf_puts(b, "<div class=\"cell\">");
    svg_lines(b, &o, s, n);
    strbuf_puts(b, "</div>\n");
    free(s);
}

static void td_num(sb *b, double x, const char *fmt) {
    strbuf_puts(b, "<td>");
    if (isfinite(x)) strbuf_printf(b, fmt, x); else strbuf_puts(b, "-");
    strbuf_puts(b, "</td>");
}

static double median_tail(const dvec *v) {
    /* median of the second half (after warm-up) */
    int n = v->n, a = n / 2;
    if (n == 0) return NAN;
    int m = n - a;
    double *t = malloc(sizeof(double) * (size_t)m);
    if (!t) return NAN;
    int k = 0;
    for (int i = a; i < n; i++) if (isfinite(v->v[i])) t[k++] = v->v[i];
    for (int i = 1; i < k; i++) { double x = t[i]; int j = i; while (j > 0 && t[j - 1] > x) { t[j] = t[j - 1]; j--; } t[j] = x; }
    double med = k ? (k % 2 ? t[k / 2] : 0.5 * (t[k / 2 - 1] + t[k / 2])) : NAN;
    free(t);
    return med;
}

static double min_of(const dvec *v) {
    double m = NAN;
    for (int i = 0; i < v->n; i++) if (isfinite(v->v[i]) && !(m <= v->v[i])) m = v->v[i];
    return m;
}

static void config_table(sb *b, const rp_run *runs, int n) {
    strbuf_puts(b, "<table id=\"tab-config\" class=\"cfg\"><thead><tr><th>run</th>");
    for (int i = 0; i < n; i++) {
        strbuf_printf(b, "<th style=\"color:%s\">", svg_color(i));
        sb_text(b, run_name(&runs[i]));
        strbuf_puts(b, "</th>");
    }
    strbuf_puts(b, "</tr></thead><tbody>\n");
    static const char *rows[] = {"steps done", "final train loss", "final validation loss", "best validation loss",
                                 "parameters total (M)", "parameters active per token (M)", "forward MFLOP/token",
                                 "training MFLOP/token", "model", "experts", "router",
                                 "capacity factor", "aux / z coefficients", "batch x accum x ctx", "lr (peak, final, warmup)",
                                 "tokens/s (median, 2nd half)", "wall time (s)", "hardware", "threads", "data",
                                 "records skipped"};
    for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++) {
        strbuf_puts(b, "<tr><th>");
        sb_text(b, rows[r]);
        strbuf_puts(b, "</th>");
        for (int i = 0; i < n; i++) {
            const rp_run *u = &runs[i];
            const json_value *h = u->header, *m = json_get(h, "model"), *ro = json_get(h, "router"),
                             *tr = json_get(h, "train"), *hw = json_get(h, "hardware"), *da = json_get(h, "data");
            switch (r) {
            case 0: td_num(b, dvec_last(&u->step), "%.0f"); break;
            case 1: td_num(b, dvec_last(&u->loss), "%.4f"); break;
            case 2: td_num(b, dvec_last(&u->vloss), "%.4f"); break;
            case 3: td_num(b, min_of(&u->vloss), "%.4f"); break;
            case 4: td_num(b, jnum(h, "params") / 1e6, "%.3f"); break;
            case 5: td_num(b, jnum(h, "active_params") / 1e6, "%.3f"); break;
            case 6: td_num(b, jnum(h, "fwd_flops") / 1e6, "%.2f"); break;
            case 7: td_num(b, jnum(h, "train_flops") / 1e6, "%.2f"); break;
            case 8:
                if (!m) { strbuf_puts(b, "<td>-</td>"); break; }
                strbuf_printf(b, "<td>d %.0f, %.0f layers (%.0f MoE), %.0f/%.0f heads, ctx %.0f, vocab %.0f, dense d_ff %.0f</td>",
                          jnum(m, "d_model"), jnum(m, "n_layers"), jnum(m, "n_moe_layers"), jnum(m, "n_heads"),
                          jnum(m, "n_kv_heads"), jnum(m, "ctx"), jnum(m, "vocab"), jnum(m, "d_ff"));
                break;
            case 9:
                if (!ro) { strbuf_puts(b, "<td>-</td>"); break; }
                strbuf_printf(b, "<td>%.0f experts, top-%.0f, width %.0f", jnum(ro, "n_experts"), jnum(ro, "top_k"),
                          jnum(ro, "expert_d_ff"));
                if (jnum(ro, "shared_d_ff") > 0) strbuf_printf(b, ", shared %.0f", jnum(ro, "shared_d_ff"));
                strbuf_puts(b, "</td>");
                break;
            case 10:
                if (!ro) { strbuf_puts(b, "<td>-</td>"); break; }
                strbuf_puts(b, "<td>");
                sb_text(b, jstr(ro, "gate", "?"));
                strbuf_puts(b, " / ");
                sb_text(b, jstr(ro, "select", "?"));
                if (jnum(ro, "bias_update_rate") > 0) strbuf_printf(b, ", aux-free bias %g", jnum(ro, "bias_update_rate"));
                if (jnum(ro, "n_groups") > 0) strbuf_printf(b, ", %g groups", jnum(ro, "n_groups"));
                strbuf_puts(b, "</td>");
                break;
            case 11: {
                double cf = jnum(ro, "capacity_factor");
                if (isfinite(cf) && cf < 0) strbuf_puts(b, "<td>dropless</td>"); else td_num(b, cf, "%g");
                break;
            }
            case 12:
                if (!ro) strbuf_puts(b, "<td>-</td>");
                else strbuf_printf(b, "<td>%g / %g</td>", jnum(ro, "aux"), jnum(ro, "z"));
                break;
            case 13:
                if (!tr) strbuf_puts(b, "<td>-</td>");
                else strbuf_printf(b, "<td>%g x %g x %g</td>", jnum(tr, "batch"), jnum(tr, "accum"), jnum(m, "ctx"));
                break;
            case 14:
                if (!tr) strbuf_puts(b, "<td>-</td>");
                else strbuf_printf(b, "<td>%g, %g, %g</td>", jnum(tr, "lr"), jnum(tr, "min_lr"), jnum(tr, "warmup"));
                break;
            case 15: td_num(b, median_tail(&u->tps), "%.0f"); break;
            case 16: td_num(b, dvec_last(&u->wall), "%.1f"); break;
            case 17:
                strbuf_puts(b, "<td>");
                sb_text(b, jstr(hw, "cpu", "-"));
                if (hw) strbuf_printf(b, "; %g cores, %g GiB", jnum(hw, "cores"), jnum(hw, "memory_gib"));
                strbuf_puts(b, "</td>");
                break;
            case 18: td_num(b, jnum(h, "threads"), "%.0f"); break;
            case 19:
                if (!da) strbuf_puts(b, "<td>-</td>");
                else strbuf_printf(b, "<td>%.2f MB, %.0f train + %.0f validation tokens</td>", jnum(da, "text_bytes") / 1e6,
                               jnum(da, "train_tokens"), jnum(da, "val_tokens"));
                break;
            case 20: strbuf_printf(b, "<td>%d</td>", u->bad_lines); break;
            }
        }
        strbuf_puts(b, "</tr>\n");
    }
    strbuf_puts(b, "</tbody></table>\n");
}

/* The number array a as doubles into out[n] (missing entries NAN). */
static void arr_nums(const json_value *a, double *out, int n) {
    for (int i = 0; i < n; i++) {
        out[i] = NAN;
        if (a && a->type == JSON_ARRAY && (size_t)i < a->u.arr.n && a->u.arr.v[i].type == JSON_NUMBER)
            out[i] = a->u.arr.v[i].u.num;
    }
}

static int arr_len(const json_value *a) { return a && a->type == JSON_ARRAY ? (int)a->u.arr.n : 0; }

/* The routing figures of run i. */
static void run_routing(sb *b, const rp_run *u, int i) {
    const int use_ev = u->n_evr > 0;
    const int n_ev = use_ev ? u->n_evr : u->n_route;
    if (n_ev == 0) {
        strbuf_puts(b, "<p>No routing records (a dense model, or no evaluation yet).</p>\n");
        return;
    }
    const json_value *layers0 = use_ev ? json_get(u->evr[0], "layers") : u->route[0].layers;
    const int M = arr_len(layers0);
    if (M == 0) { strbuf_puts(b, "<p>No MoE layers.</p>\n"); return; }
    const int E = arr_len(json_get(&layers0->u.arr.v[0], "load"));
    if (E == 0) return;
    char id[96], title[256], (*steps)[24] = calloc((size_t)n_ev, sizeof *steps);
    const char **cl = calloc((size_t)n_ev, sizeof *cl);
    const char **rl = calloc((size_t)E, sizeof *rl);
    char (*enames)[16] = calloc((size_t)E, sizeof *enames);
    double *v = calloc((size_t)E * (size_t)n_ev, sizeof *v), *row = calloc((size_t)E + 1, sizeof *row);
    if (!steps || !cl || !rl || !enames || !v || !row) { b->oom = 1; goto out; }
    for (int t = 0; t < n_ev; t++) {
        snprintf(steps[t], sizeof steps[0], "%.0f", use_ev ? u->evr_step[t] : u->route[t].step);
        cl[t] = steps[t];
    }
    for (int e = 0; e < E; e++) { snprintf(enames[e], sizeof enames[0], "e%d", e); rl[e] = enames[e]; }
    /* expert load heatmaps */
    strbuf_printf(b, "<h3>Expert load over training (%s)</h3>\n<div class=\"grid\">\n",
              use_ev ? "held-out text at each evaluation" : "the training batch at each evaluation");
    for (int j = 0; j < M; j++) {
        int layer = 0;
        for (int t = 0; t < n_ev; t++) {
            const json_value *ls = use_ev ? json_get(u->evr[t], "layers") : u->route[t].layers;
            const json_value *ly = arr_len(ls) > j ? &ls->u.arr.v[j] : NULL;
            double lay;
            if (ly && json_get_num(ly, "layer", &lay)) layer = (int)lay;
            arr_nums(json_get(ly, "load"), row, E);
            double tot = 0;
            for (int e = 0; e < E; e++) if (isfinite(row[e])) tot += row[e];
            for (int e = 0; e < E; e++) v[(size_t)e * n_ev + t] = tot > 0 && isfinite(row[e]) ? row[e] * E / tot : NAN;
        }
        snprintf(id, sizeof id, "fig-load-r%d-l%d", i, layer);
        snprintf(title, sizeof title, "layer %d: load / mean load (1 = balanced)", layer);
        svg_heat_opts o = {id, title, "step", "expert", rl, cl, 0, "%.2f", 0};
        double mx = 0;
        for (int k = 0; k < E * n_ev; k++) if (isfinite(v[k]) && v[k] > mx) mx = v[k];
        o.vmax = mx > 2 ? mx : 2;
        strbuf_puts(b, "<div class=\"cell\">");
        svg_heat(b, &o, v, E, n_ev);
        strbuf_puts(b, "</div>\n");
    }
    strbuf_puts(b, "</div>\n");
    /* max-violation and dead experts over time: the training step's statistics */
    if (u->n_route > 0) {
        const int Mr = arr_len(u->route[0].layers);
        svg_series *s = calloc((size_t)Mr, sizeof *s);
        double *xs = calloc((size_t)u->n_route, sizeof *xs), *mv = calloc((size_t)Mr * u->n_route, sizeof *mv),
               *dd = calloc((size_t)Mr * u->n_route, sizeof *dd);
        char (*ln)[32] = calloc((size_t)Mr + 1, sizeof *ln);
        if (s && xs && mv && dd && ln) {
            for (int t = 0; t < u->n_route; t++) {
                xs[t] = u->route[t].step;
                for (int j = 0; j < Mr; j++) {
                    const json_value *ls = u->route[t].layers;
                    const json_value *ly = arr_len(ls) > j ? &ls->u.arr.v[j] : NULL;
                    mv[(size_t)j * u->n_route + t] = jnum(ly, "max_violation");
                    dd[(size_t)j * u->n_route + t] = jnum(ly, "dead_experts");
                }
            }
            for (int j = 0; j < Mr; j++) {
                snprintf(ln[j], sizeof ln[0], "layer %.0f", jnum(&u->route[0].layers->u.arr.v[j], "layer"));
                s[j] = (svg_series){ln[j], xs, mv + (size_t)j * u->n_route, u->n_route, j, 0, 1};
            }
            strbuf_puts(b, "<h3>Balance over training (the training batch at each evaluation)</h3>\n<div class=\"grid\">\n<div class=\"cell\">");
            snprintf(id, sizeof id, "fig-maxviol-r%d", i);
            svg_lines_opts lo = {id, "max-violation (max load / mean - 1)", "step", "max-violation", 0, 0, 0};
            svg_lines(b, &lo, s, Mr);
            strbuf_puts(b, "</div><div class=\"cell\">");
            for (int j = 0; j < Mr; j++) s[j].y = dd + (size_t)j * u->n_route;
            snprintf(id, sizeof id, "fig-dead-r%d", i);
            svg_lines_opts lo2 = {id, "dead experts", "step", "experts", 0, 0, 0};
            svg_lines(b, &lo2, s, Mr);
            strbuf_puts(b, "</div>\n</div>\n");
        } else b->oom = 1;
        free(s); free(xs); free(mv); free(dd); free(ln);
    }
    /* per-source routing on held-out text */
    if (use_ev) {
        const json_value *last = u->evr[u->n_evr - 1];
        const json_value *srcs = json_get(last, "sources");
        const int S = arr_len(srcs);
        const json_value *ls = json_get(last, "layers");
        const char **sl = calloc((size_t)S + 1, sizeof *sl);
        double *h = calloc((size_t)S * E + 1, sizeof *h), *stok = calloc((size_t)S + 1, sizeof *stok);
        int *keep = calloc((size_t)S + 1, sizeof *keep);
        char (*sn)[96] = calloc((size_t)S + 1, sizeof *sn);
        if (!sl || !h || !stok || !keep || !sn) { b->oom = 1; free(sl); free(h); free(stok); free(keep); free(sn); goto out; }
        /* the sources with held-out tokens, named with their token counts */
        arr_nums(json_get(last, "source_tokens"), stok, S);
        int S2 = 0;
        for (int s = 0; s < S; s++) {
            if (!(stok[s] > 0)) continue;
            snprintf(sn[S2], sizeof sn[0], "%.60s (%.0f)", srcs->u.arr.v[s].type == JSON_STRING ? srcs->u.arr.v[s].u.str.s : "?",
                     stok[s]);
            sl[S2] = sn[S2];
            keep[S2++] = s;
        }
        strbuf_printf(b, "<h3>Routing per source on held-out text (step %.0f)</h3>\n", u->evr_step[u->n_evr - 1]);
        strbuf_printf(b, "<table id=\"tab-mi-r%d\" class=\"cfg\"><thead><tr><th>layer</th><th>I(source; expert) bits</th>"
                     "<th>max-violation</th><th>dead experts</th></tr></thead><tbody>", i);
        for (int j = 0; j < arr_len(ls); j++) {
            const json_value *ly = &ls->u.arr.v[j];
            strbuf_printf(b, "<tr><td>%.0f</td>", jnum(ly, "layer"));
            td_num(b, jnum(ly, "mi_bits"), "%.4f");
            td_num(b, jnum(ly, "max_violation"), "%.3f");
            td_num(b, jnum(ly, "dead_experts"), "%.0f");
            strbuf_puts(b, "</tr>");
        }
        strbuf_puts(b, "</tbody></table>\n");
        /* MI over evaluations */
        {
            const int Ml = arr_len(ls);
            svg_series *s = calloc((size_t)Ml + 1, sizeof *s);
            double *mi = calloc((size_t)(Ml + 1) * u->n_evr, sizeof *mi);
            char (*ln)[32] = calloc((size_t)Ml + 1, sizeof *ln);
            if (s && mi && ln) {
                for (int t = 0; t < u->n_evr; t++) {
                    const json_value *lt = json_get(u->evr[t], "layers");
                    for (int j = 0; j < Ml; j++)
                        mi[(size_t)j * u->n_evr + t] = arr_len(lt) > j ? jnum(&lt->u.arr.v[j], "mi_bits") : NAN;
                }
                for (int j = 0; j < Ml; j++) {
                    snprintf(ln[j], sizeof ln[0], "layer %.0f", jnum(&ls->u.arr.v[j], "layer"));
                    s[j] = (svg_series){ln[j], u->evr_step, mi + (size_t)j * u->n_evr, u->n_evr, j, 0, 1};
                }
                snprintf(id, sizeof id, "fig-mi-r%d", i);
                svg_lines_opts lo = {id, "I(source; expert) on held-out text", "step", "bits", 0, 0, 0};
                strbuf_puts(b, "<div class=\"cell\">");
                svg_lines(b, &lo, s, Ml);
                strbuf_puts(b, "</div>\n");
            } else b->oom = 1;
            free(s); free(mi); free(ln);
        }
        strbuf_puts(b, "<div class=\"grid\">\n");
        for (int j = 0; j < arr_len(ls); j++) {
            const json_value *ly = &ls->u.arr.v[j];
            const json_value *cnt = json_get(ly, "counts");
            for (int s2 = 0; s2 < S2; s2++) {
                const int s = keep[s2];
                arr_nums(arr_len(cnt) > s ? &cnt->u.arr.v[s] : NULL, row, E);
                double tot = 0;
                for (int e = 0; e < E; e++) if (isfinite(row[e])) tot += row[e];
                for (int e = 0; e < E; e++) h[(size_t)s2 * E + e] = tot > 0 && isfinite(row[e]) ? row[e] / tot : NAN;
            }
            snprintf(id, sizeof id, "fig-src-r%d-l%.0f", i, jnum(ly, "layer"));
            snprintf(title, sizeof title, "layer %.0f: share of each source's assignments (held-out tokens); I = %.3f bits",
                     jnum(ly, "layer"), jnum(ly, "mi_bits"));
            svg_heat_opts o = {id, title, "expert", "source", sl, rl, 0, "%.3f", 1};
            strbuf_puts(b, "<div class=\"cell\">");
            svg_heat(b, &o, h, S2, E);
            strbuf_puts(b, "</div>\n");
        }
        strbuf_puts(b, "</div>\n");
        if (S2 < S) strbuf_printf(b, "<p class=\"note\">%d of %d sources have no held-out tokens (not shown).</p>\n", S - S2, S);
        free(sl);
        free(h);
        free(stok);
        free(keep);
        free(sn);
    }
out:
    free(steps); free(cl); free(rl); free(enames); free(v); free(row);
}

static const char *CSS =
    "body{font-family:sans-serif;margin:16px;color:#111;background:#fff}"
    "h1{font-size:20px}h2{font-size:17px;border-bottom:1px solid #ccc;margin-top:28px}h3{font-size:14px}"
    ".grid{display:flex;flex-wrap:wrap;gap:8px}.cell{page-break-inside:avoid;break-inside:avoid}"
    "table.cfg{border-collapse:collapse;font-size:12px}table.cfg td,table.cfg th{border:1px solid #ccc;padding:2px 6px;"
    "text-align:left;vertical-align:top}"
    "svg.fig{font-family:sans-serif}svg .ft{font-size:13px;font-weight:bold}svg .tk{font-size:10px;fill:#333}"
    "svg .lb{font-size:11px;fill:#111}svg .lg{font-size:10px}svg .cv{font-size:9px}"
    "svg .grid{stroke:#e6e6e6;stroke-width:1}svg .frame{fill:none;stroke:#888;stroke-width:1}"
    ".note{font-size:12px;color:#444}"
    "@media print{body{margin:0}h2{page-break-before:auto}}";

moe_status moe_report_render(char **out, size_t *out_n, const char *const *dirs, int n, moe_error *err) {
    if (!out || !out_n || !dirs || n < 1) return moe_err(err, MOE_ERR_ARG, "report: no run folders given");
    *out = NULL;
    *out_n = 0;
    rp_run *runs = calloc((size_t)n, sizeof *runs);
    if (!runs) return moe_err(err, MOE_ERR_NOMEM, "report: out of memory");
    moe_status st = MOE_OK;
    int got = 0;
    for (; got < n; got++) {
        if (!dirs[got]) { st = moe_err(err, MOE_ERR_ARG, "report: run folder %d is NULL", got); break; }
        if ((st = rp_run_read(&runs[got], dirs[got], err)) != MOE_OK) break;
    }
    sb b = {0};
    if (st == MOE_OK) {
        strbuf_puts(&b, "<!DOCTYPE html>\n<html xmlns=\"http://www.w3.org/1999/xhtml\" lang=\"en\">\n<head>\n"
                   "<meta charset=\"utf-8\"/>\n<title>moe report</title>\n<style>");
        strbuf_puts(&b, CSS);
        strbuf_puts(&b, "</style>\n</head>\n<body>\n<h1 id=\"report-title\">moe training report</h1>\n<p class=\"note\">Runs: ");
        for (int i = 0; i < n; i++) {
            strbuf_printf(&b, "%s<span style=\"color:%s\">", i ? ", " : "", svg_color(i));
            sb_text(&b, runs[i].dir);
            strbuf_puts(&b, "</span>");
        }
        strbuf_puts(&b, ". Written by <code>moe report</code> from each run's metrics.jsonl. Hover a heatmap cell or a point "
                   "for its value.</p>\n<h2>Configuration</h2>\n");
        config_table(&b, runs, n);
        strbuf_puts(&b, "<h2>Training curves</h2>\n<div class=\"grid\">\n");
        fig_runs(&b, runs, n, "fig-loss-steps", "loss vs steps", "step", "cross-entropy (nats)", g_step, g_loss, g_vstep,
                 g_vloss, 0);
        fig_runs(&b, runs, n, "fig-loss-wall", "loss vs wall time", "seconds", "cross-entropy (nats)", g_wall, g_loss,
                 g_vwall, g_vloss, 0);
        fig_val(&b, runs, n, "fig-val-steps", "validation loss vs steps", "step", g_vstep, 0);
        fig_val(&b, runs, n, "fig-val-late", "validation loss, second half of training", "step", g_vstep, 1);
        fig_val(&b, runs, n, "fig-val-wall", "validation loss vs wall time", "seconds", g_vwall, 0);
        fig_runs(&b, runs, n, "fig-lr", "learning rate", "step", "lr", g_step, g_lr, NULL, NULL, 0);
        fig_runs(&b, runs, n, "fig-grad-norm", "gradient norm (before clipping)", "step", "norm", g_step, g_gn, NULL, NULL, 1);
        fig_runs(&b, runs, n, "fig-aux", "load-balancing loss (with its coefficient)", "step", "aux", g_step, g_aux, NULL,
                 NULL, 0);
        fig_runs(&b, runs, n, "fig-z", "router z-loss (with its coefficient)", "step", "z", g_step, g_z, NULL, NULL, 0);
        fig_runs(&b, runs, n, "fig-tokens-per-s", "throughput", "step", "tokens/s", g_step, g_tps, NULL, NULL, 0);
        strbuf_puts(&b, "</div>\n");
        for (int i = 0; i < n; i++) {
            strbuf_printf(&b, "<h2 id=\"run-%d\">Routing of run %d: <span style=\"color:%s\">", i, i, svg_color(i));
            sb_text(&b, runs[i].dir);
            strbuf_puts(&b, "</span></h2>\n");
            run_routing(&b, &runs[i], i);
        }
        strbuf_puts(&b, "</body>\n</html>\n");
        if (b.oom) st = moe_err(err, MOE_ERR_NOMEM, "report: out of memory");
    }
    for (int i = 0; i < got && i < n; i++) rp_run_free(&runs[i]);
    free(runs);
    if (st != MOE_OK) { strbuf_free(&b); return st; }
    *out = b.p;
    *out_n = b.n;
    return MOE_OK;
}

moe_status moe_report_write(const char *path, const char *const *dirs, int n, moe_error *err) {
    if (!path || !*path) return moe_err(err, MOE_ERR_ARG, "report: no output path");
    char *html;
    size_t len;
    moe_status st = moe_report_render(&html, &len, dirs, n, err);
    if (st != MOE_OK) return st;
    atomic_file f;
    st = atomic_file_open(&f, path, err);
    if (st == MOE_OK) st = atomic_file_write(&f, html, len, err);
    if (st == MOE_OK) st = atomic_file_commit(&f, err);
    free(html);
    return st;
}
