/* dist.c: the public face of distributed runs (moe.h, "distributed"):
 * the job handle and attaching a trainer to it.
 * Not for: MPI calls (comm_mpi.c) or the arithmetic (train/trainer_dist.c,
 * layer/layer_dist.c). */
#include "moe.h"
#include "core/error.h"
#include "dist/comm_impl.h"
#include "infer/engine.h"
#include "train/trainer_internal.h"

#include <stdlib.h>
#include <time.h>

struct moe_dist {
    moe_comm world;   /* every rank of the job */
    int ep;           /* expert-parallel ranks */
};

int moe_dist_available(void) { return dist_comm_has_mpi(); }

moe_status moe_dist_init(moe_dist **out, int expert_parallel, moe_error *err) {
    moe_err_clear(err);
    if (!out) return moe_err(err, MOE_ERR_ARG, "moe_dist_init: out is NULL");
    *out = NULL;
    moe_dist *d = calloc(1, sizeof *d);
    if (!d) return moe_err(err, MOE_ERR_NOMEM, "moe_dist_init: out of memory");
    moe_status st = dist_comm_world(&d->world, err);
    if (st != MOE_OK) { free(d); return st; }
    if (expert_parallel == 0) expert_parallel = d->world.size;
    if (expert_parallel < 1 || d->world.size % expert_parallel) {
        st = moe_err(err, MOE_ERR_ARG, "distributed: --expert-parallel %d must divide the %d ranks of the job "
                     "(ranks = expert-parallel x data-parallel)", expert_parallel, d->world.size);
        dist_comm_finish(&d->world);
        free(d);
        return st;
    }
    d->ep = expert_parallel;
    *out = d;
    return MOE_OK;
}

void moe_dist_free(moe_dist *d) {
    if (!d) return;
    dist_comm_finish(&d->world);
    free(d);
}

int moe_dist_rank(const moe_dist *d) { return d ? d->world.rank : 0; }
int moe_dist_size(const moe_dist *d) { return d ? d->world.size : 1; }
int moe_dist_expert_parallel(const moe_dist *d) { return d ? d->ep : 1; }
uint64_t moe_dist_bytes_moved(const moe_dist *d) { return d ? d->world.bytes_moved : 0; }
double moe_dist_comm_seconds(const moe_dist *d) { return d ? d->world.seconds : 0.0; }

double moe_dist_stalled(const moe_dist *d, const char **what) {
    if (what) *what = NULL;
    if (!d) return 0.0;
    /* const: the fields are only read (atomically) */
    moe_comm *w = (moe_comm *)&d->world;
    int64_t since = atomic_load(&w->busy_since_ns);
    if (!since) return 0.0;
    if (what) *what = atomic_load(&w->busy_what);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    double s = ((double)ts.tv_sec * 1e9 + (double)ts.tv_nsec - (double)since) / 1e9;
    return s > 0 ? s : 0.0;
}

moe_status moe_dist_barrier(moe_dist *d, moe_error *err) {
    moe_err_clear(err);
    if (!d) return MOE_OK;
    return d->world.barrier(&d->world, err);
}

void moe_dist_set_overlap(moe_dist *d, int on) {
    if (d) d->world.overlap = on ? 1 : 0;
}

moe_status moe_dist_max(moe_dist *d, int *value, moe_error *err) {
    moe_err_clear(err);
    if (!value) return moe_err(err, MOE_ERR_ARG, "moe_dist_max: value is NULL");
    if (!d) return MOE_OK;
    int *all = calloc((size_t)d->world.size, sizeof *all);
    if (!all) return moe_err(err, MOE_ERR_NOMEM, "moe_dist_max: out of memory");
    moe_status st = d->world.allgather(&d->world, all, value, sizeof *value, err);
    for (int r = 0; r < d->world.size && st == MOE_OK; r++)
        if (all[r] > *value) *value = all[r];
    free(all);
    return st;
}

void moe_dist_abort(moe_dist *d, int code) {
    if (d) dist_comm_abort(&d->world, code);
}

moe_status moe_trainer_attach_dist(moe_trainer *t, moe_dist *d, moe_error *err) {
    moe_err_clear(err);
    if (!t || !d) return moe_err(err, MOE_ERR_ARG, "moe_trainer_attach_dist: %s is NULL", t ? "d" : "t");
    return trainer_set_comm(t, &d->world, d->ep, err);
}

moe_status moe_infer_attach_dist(moe_infer *m, moe_dist *d, moe_error *err) {
    moe_err_clear(err);
    if (!m || !d) return moe_err(err, MOE_ERR_ARG, "moe_infer_attach_dist: %s is NULL", m ? "d" : "m");
    if (d->ep != d->world.size)
        return moe_err(err, MOE_ERR_ARG, "distributed inference: --expert-parallel %d must be the rank count %d",
                       d->ep, d->world.size);
    return infer_set_dist(m, &d->world, err);
}
