/* runs.h: a run's metrics.jsonl read into series for the report (internal).
 *
 * For: report.c. Reads the records that `moe train` writes (docs/REPORT.md):
 * step lines, "val_loss", "routing" (the training step's statistics at each
 * evaluation), "eval_routing" (held-out routing per layer and source) and
 * "header". Lines that do not parse (a run killed mid-line) are counted and
 * skipped. A header with resumed_at = R after earlier records drops the
 * records of steps beyond R (work lost by the restart) and continues the
 * wall-clock axis from the last kept point.
 */
#ifndef MOE_REPORT_RUNS_H
#define MOE_REPORT_RUNS_H

#include <stddef.h>
#include <stdint.h>

#include "io/json.h"
#include "moe.h"

typedef struct dvec {
    double *v;
    int n, cap;
} dvec;

/* One "routing" record: per MoE layer of the training step at an evaluation. */
typedef struct rp_route {
    double step;
    const json_value *layers; /* the array of layer objects */
} rp_route;

typedef struct rp_run {
    char *dir;                  /* as given */
    json_doc **docs;            /* every parsed line, kept for the values below */
    int n_docs, cap_docs;
    int bad_lines;              /* lines that did not parse */
    const json_value *header;   /* the last header object, or NULL */
    /* step records */
    dvec step, loss, aux, z, lr, grad_norm, tps, wall;
    /* validation */
    dvec vstep, vloss, vwall;
    /* routing records */
    rp_route *route;            /* [n_route] */
    int n_route, cap_route;
    const json_value **evr;     /* [n_evr] eval_routing objects */
    double *evr_step;
    int n_evr, cap_evr;
} rp_run;

/* Reads dir/metrics.jsonl. Errors: a missing or unreadable file (MOE_ERR_IO,
 * the path named), a file with no record that parses (MOE_ERR_FORMAT). */
moe_status rp_run_read(rp_run *r, const char *dir, moe_error *err);
void rp_run_free(rp_run *r);

/* The value at the last point of v, NAN when empty. */
double dvec_last(const dvec *v);

#endif /* MOE_REPORT_RUNS_H */
