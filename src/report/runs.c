/* runs.c: metrics.jsonl into series (see runs.h). */
#include "report/runs.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

static int dvec_push(dvec *d, double x) {
    if (d->n == d->cap) {
        int nc = d->cap ? 2 * d->cap : 256;
        double *v = realloc(d->v, sizeof(double) * (size_t)nc);
        if (!v) return 0;
        d->v = v;
        d->cap = nc;
    }
    d->v[d->n++] = x;
    return 1;
}

double dvec_last(const dvec *v) { return v->n ? v->v[v->n - 1] : NAN; }

static void dvec_free(dvec *d) { free(d->v); memset(d, 0, sizeof *d); }

void rp_run_free(rp_run *r) {
    for (int i = 0; i < r->n_docs; i++) json_free(r->docs[i]);
    free(r->docs);
    free(r->dir);
    dvec *all[] = {&r->step, &r->loss, &r->aux, &r->z, &r->lr, &r->grad_norm, &r->tps, &r->wall,
                   &r->vstep, &r->vloss, &r->vwall};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) dvec_free(all[i]);
    free(r->route);
    free(r->evr);
    free(r->evr_step);
    memset(r, 0, sizeof *r);
}

static double num(const json_value *o, const char *k) {
    double x;
    return json_get_num(o, k, &x) ? x : NAN;
}

/* Drops the step-indexed points beyond step R (a restart from a checkpoint). */
static void truncate_after(rp_run *r, double R) {
    int n = 0;
    while (n < r->step.n && r->step.v[n] <= R) n++;
    dvec *s[] = {&r->step, &r->loss, &r->aux, &r->z, &r->lr, &r->grad_norm, &r->tps, &r->wall};
    for (size_t i = 0; i < sizeof s / sizeof s[0]; i++) if (s[i]->n > n) s[i]->n = n;
    n = 0;
    while (n < r->vstep.n && r->vstep.v[n] <= R) n++;
    r->vstep.n = r->vloss.n = r->vwall.n = n;
    while (r->n_route > 0 && r->route[r->n_route - 1].step > R) r->n_route--;
    while (r->n_evr > 0 && r->evr_step[r->n_evr - 1] > R) r->n_evr--;
}

moe_status rp_run_read(rp_run *r, const char *dir, moe_error *err) {
    memset(r, 0, sizeof *r);
    size_t dl = strlen(dir);
    char *path = malloc(dl + 16);
    r->dir = malloc(dl + 1);
    if (!path || !r->dir) { free(path); rp_run_free(r); return moe_err(err, MOE_ERR_NOMEM, "report: out of memory"); }
    memcpy(r->dir, dir, dl + 1);
    snprintf(path, dl + 16, "%s/metrics.jsonl", dir);
    FILE *f = fopen(path, "rb");
    if (!f) {
        moe_status st = moe_err(err, MOE_ERR_IO, "report: cannot read %s (is %s a run folder of moe train?)", path, dir);
        free(path);
        rp_run_free(r);
        return st;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    double wall_off = 0, last_wall = 0;
    int any = 0, oom = 0;
    while (!oom && (len = getline(&line, &cap, f)) > 0) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) len--;
        if (len == 0) continue;
        json_doc *d = NULL;
        if (json_parse(&d, line, (size_t)len, path, NULL, NULL) != MOE_OK) { r->bad_lines++; continue; }
        const json_value *o = json_root(d);
        if (!o || o->type != JSON_OBJECT) { json_free(d); r->bad_lines++; continue; }
        if (r->n_docs == r->cap_docs) {
            int nc = r->cap_docs ? 2 * r->cap_docs : 256;
            json_doc **nd = realloc(r->docs, sizeof *nd * (size_t)nc);
            if (!nd) { json_free(d); oom = 1; break; }
            r->docs = nd;
            r->cap_docs = nc;
        }
        r->docs[r->n_docs++] = d;
        any = 1;
        const json_value *h = json_get(o, "header");
        if (h && h->type == JSON_OBJECT) {
            double R = num(h, "resumed_at");
            if (isfinite(R) && R > 0) {
                truncate_after(r, R);
                wall_off = r->wall.n ? r->wall.v[r->wall.n - 1] : last_wall;
            } else if (r->step.n > 0) {
                wall_off = last_wall; /* a second run appended without resume */
            }
            r->header = h;
            continue;
        }
        double step = num(o, "step");
        if (!isfinite(step)) continue;
        const json_value *v;
        if ((v = json_get(o, "routing")) && v->type == JSON_OBJECT) {
            const json_value *ls = json_get(v, "layers");
            if (ls && ls->type == JSON_ARRAY) {
                if (r->n_route == r->cap_route) {
                    int nc = r->cap_route ? 2 * r->cap_route : 64;
                    rp_route *nr = realloc(r->route, sizeof *nr * (size_t)nc);
                    if (!nr) { oom = 1; break; }
                    r->route = nr;
                    r->cap_route = nc;
                }
                r->route[r->n_route++] = (rp_route){step, ls};
            }
        } else if ((v = json_get(o, "eval_routing")) && v->type == JSON_OBJECT) {
            if (r->n_evr == r->cap_evr) {
                int nc = r->cap_evr ? 2 * r->cap_evr : 64;
                const json_value **ne = realloc(r->evr, sizeof *ne * (size_t)nc);
                double *ns = ne ? realloc(r->evr_step, sizeof *ns * (size_t)nc) : NULL;
                if (ne) r->evr = ne;
                if (!ne || !ns) { oom = 1; break; }
                r->evr_step = ns;
                r->cap_evr = nc;
            }
            r->evr[r->n_evr] = v;
            r->evr_step[r->n_evr++] = step;
            double w = num(o, "wall");
            if (r->vwall.n > 0 && isfinite(w) && r->vstep.n && r->vstep.v[r->vstep.n - 1] == step)
                r->vwall.v[r->vwall.n - 1] = w + wall_off;
        } else if (json_get(o, "val_loss")) {
            oom |= !dvec_push(&r->vstep, step) || !dvec_push(&r->vloss, num(o, "val_loss")) ||
                   !dvec_push(&r->vwall, dvec_last(&r->wall));
        } else if (json_get(o, "loss")) {
            double w = num(o, "wall");
            if (isfinite(w)) last_wall = w + wall_off;
            oom |= !dvec_push(&r->step, step) || !dvec_push(&r->loss, num(o, "loss")) ||
                   !dvec_push(&r->aux, num(o, "aux")) || !dvec_push(&r->z, num(o, "z")) ||
                   !dvec_push(&r->lr, num(o, "lr")) || !dvec_push(&r->grad_norm, num(o, "grad_norm")) ||
                   !dvec_push(&r->tps, num(o, "tokens_per_s")) || !dvec_push(&r->wall, isfinite(w) ? w + wall_off : NAN);
        }
    }
    free(line);
    fclose(f);
    if (oom) { free(path); rp_run_free(r); return moe_err(err, MOE_ERR_NOMEM, "report: out of memory reading %s", dir); }
    if (!any) {
        moe_status st = moe_err(err, MOE_ERR_FORMAT, "report: %s holds no record that parses", path);
        free(path);
        rp_run_free(r);
        return st;
    }
    free(path);
    return MOE_OK;
}
