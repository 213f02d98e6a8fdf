/* comm.h: the communicator the distributed paths talk through (internal).
 *
 * For: the few collectives expert and data parallelism need (all-reduce,
 * all-gather, gather, reduce-scatter, all-to-all-v, broadcast, barrier), as a table of functions
 * over an opaque implementation, so that the layer, the model and the
 * trainer never include mpi.h. src/dist/comm_mpi.c implements it over MPI;
 * comm_self() below is the one-rank communicator (every collective is a
 * copy), which is all a build without MPI has. Not for: point-to-point
 * messages or anything that owns model state.
 *
 * Every rank calls every collective in the same order with the same sizes;
 * a call returns MOE_OK or MOE_ERR_IO with the failing operation named.
 */
#ifndef MOE_CORE_COMM_H
#define MOE_CORE_COMM_H

#include "moe.h"
#include "core/error.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct moe_comm moe_comm;
/* A collective in flight (iallreduce_f32), finished by waitall. */
typedef struct moe_comm_req {
    void *impl;            /* the implementation's request (MPI_Request), or NULL */
} moe_comm_req;
struct moe_comm {
    int rank, size;   /* this process's rank in 0..size-1 */
    void *impl;       /* the implementation's handle (MPI_Comm ...), or NULL */
    /* buf[n] = sum over ranks of buf[n] */
    moe_status (*allreduce_f32)(moe_comm *c, float *buf, size_t n, moe_error *err);
    moe_status (*allreduce_f64)(moe_comm *c, double *buf, size_t n, moe_error *err);
    /* starts buf[n] = sum over ranks and returns: buf is neither read nor
       written by the caller until waitall has finished *req */
    moe_status (*iallreduce_f32)(moe_comm *c, float *buf, size_t n, moe_comm_req *req, moe_error *err);
    /* finishes reqs[n] (each started on c) */
    moe_status (*waitall)(moe_comm *c, moe_comm_req *reqs, int n, moe_error *err);
    /* dst[size * bytes] = rank 0's src[bytes], rank 1's, ... */
    moe_status (*allgather)(moe_comm *c, void *dst, const void *src, size_t bytes, moe_error *err);
    /* on root: dst[size * bytes] = rank 0's src[bytes], rank 1's, ...
       (dst is only read on root) */
    moe_status (*gather)(moe_comm *c, void *dst, const void *src, size_t bytes, int root, moe_error *err);
    /* dst[n] = sum over ranks of src[rank * n .. (rank + 1) * n) */
    moe_status (*reduce_scatter_f32)(moe_comm *c, float *dst, const float *src, size_t n, moe_error *err);
    /* all-to-all-v of floats: send[sdispl[r] .. + scount[r]) goes to rank r,
       recv[rdispl[r] .. + rcount[r]) comes from rank r (counts in floats) */
    moe_status (*alltoallv_f32)(moe_comm *c, const float *send, const int *scount, const int *sdispl,
                                float *recv, const int *rcount, const int *rdispl, moe_error *err);
    /* buf[bytes] = rank root's buf */
    moe_status (*bcast)(moe_comm *c, void *buf, size_t bytes, int root, moe_error *err);
    moe_status (*barrier)(moe_comm *c, moe_error *err);
    /* out = the ranks of c with the same color, ranked by key (collective) */
    moe_status (*split)(moe_comm *c, int color, int key, moe_comm *out, moe_error *err);
    /* releases a communicator made by split */
    void (*release)(moe_comm *c);
    uint64_t bytes_moved;  /* bytes this rank received by collectives since create
                              (of the communicator it was split from, when parent) */
    double seconds;        /* wall time spent inside collectives, likewise */
    moe_comm *parent;      /* the communicator split made this one from, or NULL */
    /* the collective in progress (kept on the root communicator, written by
       the thread that calls the collectives, read by any other, e.g. a
       watchdog through moe_dist_stalled): when it began (CLOCK_MONOTONIC
       nanoseconds; 0: none in progress) and its name (a string literal) */
    _Atomic int64_t busy_since_ns;
    _Atomic(const char *) busy_what;
    int overlap;           /* 1: a trainer starts the all-reduce of each block's
                              gradients as soon as its backward is done
                              (trainer_dist.c); 0 (default): all after the
                              backward */
};

/* The counters a collective adds to: the root communicator's. */
static inline moe_comm *comm_root(moe_comm *c) {
    while (c->parent) c = c->parent;
    return c;
}

static inline moe_status comm_self_allreduce_f32(moe_comm *c, float *b, size_t n, moe_error *e) {
    (void)c; (void)b; (void)n; (void)e; return MOE_OK;
}
static inline moe_status comm_self_allreduce_f64(moe_comm *c, double *b, size_t n, moe_error *e) {
    (void)c; (void)b; (void)n; (void)e; return MOE_OK;
}
static inline moe_status comm_self_iallreduce_f32(moe_comm *c, float *b, size_t n, moe_comm_req *r, moe_error *e) {
    (void)c; (void)b; (void)n; (void)e;
    r->impl = NULL;
    return MOE_OK;
}
static inline moe_status comm_self_waitall(moe_comm *c, moe_comm_req *r, int n, moe_error *e) {
    (void)c; (void)r; (void)n; (void)e; return MOE_OK;
}
static inline moe_status comm_self_allgather(moe_comm *c, void *dst, const void *src, size_t bytes, moe_error *e) {
    (void)c; (void)e;
    if (dst != src) memmove(dst, src, bytes);
    return MOE_OK;
}
static inline moe_status comm_self_gather(moe_comm *c, void *dst, const void *src, size_t bytes, int root,
                                          moe_error *e) {
    (void)c; (void)root; (void)e;
    if (dst != src) memmove(dst, src, bytes);
    return MOE_OK;
}
static inline moe_status comm_self_reduce_scatter_f32(moe_comm *c, float *dst, const float *src, size_t n,
                                                      moe_error *e) {
    (void)c; (void)e;
    if (dst != src) memmove(dst, src, sizeof(float) * n);
    return MOE_OK;
}
static inline moe_status comm_self_alltoallv_f32(moe_comm *c, const float *send, const int *scount,
                                                  const int *sdispl, float *recv, const int *rcount,
                                                  const int *rdispl, moe_error *e) {
    (void)c; (void)e; (void)rcount;
    if (scount[0]) memmove(recv + rdispl[0], send + sdispl[0], sizeof(float) * (size_t)scount[0]);
    return MOE_OK;
}
static inline moe_status comm_self_bcast(moe_comm *c, void *b, size_t bytes, int root, moe_error *e) {
    (void)c; (void)b; (void)bytes; (void)root; (void)e; return MOE_OK;
}
static inline moe_status comm_self_barrier(moe_comm *c, moe_error *e) { (void)c; (void)e; return MOE_OK; }

static inline void comm_self(moe_comm *c);
static inline moe_status comm_self_split(moe_comm *c, int color, int key, moe_comm *out, moe_error *e) {
    (void)c; (void)color; (void)key; (void)e;
    comm_self(out);
    return MOE_OK;
}
static inline void comm_self_release(moe_comm *c) { (void)c; }

/* The one-rank communicator. */
static inline void comm_self(moe_comm *c) {
    memset(c, 0, sizeof *c);
    c->rank = 0;
    c->size = 1;
    c->allreduce_f32 = comm_self_allreduce_f32;
    c->allreduce_f64 = comm_self_allreduce_f64;
    c->iallreduce_f32 = comm_self_iallreduce_f32;
    c->waitall = comm_self_waitall;
    c->allgather = comm_self_allgather;
    c->gather = comm_self_gather;
    c->reduce_scatter_f32 = comm_self_reduce_scatter_f32;
    c->alltoallv_f32 = comm_self_alltoallv_f32;
    c->bcast = comm_self_bcast;
    c->barrier = comm_self_barrier;
    c->split = comm_self_split;
    c->release = comm_self_release;
}

#endif
