/* comm_mpi.c: core/comm.h over MPI (Open MPI): the only file that includes
 * mpi.h. MPI_COMM_WORLD keeps MPI's default handler, errors are fatal: a
 * dead rank or a broken connection ends every rank of the job (mpirun names
 * the rank), which is what a collective that can never complete must do.
 * A connection that breaks silently raises no error: each collective
 * records when it began and its name (begin, tick), so that a watchdog in
 * the program sees how long it has waited (moe_dist_stalled).
 * Sizes above INT_MAX elements are refused (one call per collective). */
#include "dist/comm_impl.h"

#include <limits.h>
#include <mpi.h>
#include <time.h>

/* Weak references: libmoe.so and the moe command link libmpi (make's
 * MPI_LIBS), but a program linked fully static against libmoe.a, where no
 * static libmpi exists, links too and finds MPI absent (one rank). */
#pragma weak MPI_Init_thread
#pragma weak MPI_Initialized
#pragma weak MPI_Finalized
#pragma weak MPI_Finalize
#pragma weak MPI_Abort
#pragma weak MPI_Comm_rank
#pragma weak MPI_Comm_size
#pragma weak MPI_Allreduce
#pragma weak MPI_Iallreduce
#pragma weak MPI_Wait
#pragma weak MPI_Allgather
#pragma weak MPI_Gather
#pragma weak MPI_Reduce_scatter_block
#pragma weak MPI_Bcast
#pragma weak MPI_Alltoallv
#pragma weak MPI_Comm_split
#pragma weak MPI_Comm_free
#pragma weak MPI_Wtime
#pragma weak MPI_Barrier
#pragma weak ompi_mpi_comm_world
#pragma weak ompi_mpi_float
#pragma weak ompi_mpi_double
#pragma weak ompi_mpi_byte
#pragma weak ompi_mpi_op_sum

int dist_comm_has_mpi(void) { return MPI_Init_thread != NULL; }

#define CHECK_N(what, n)                                                                  \
    if ((n) > (size_t)INT_MAX)                                                            \
        return moe_err(err, MOE_ERR_ARG, "MPI %s: %zu elements exceed one call's INT_MAX", \
                       what, (size_t)(n))
#define CHECK_RC(what, rc)                                                                \
    if ((rc) != MPI_SUCCESS) return moe_err(err, MOE_ERR_IO, "MPI %s failed (code %d)", what, rc)

/* Each collective says what it is and when it began (begin: for
 * moe_dist_stalled, read by another thread), and its wall time goes to the
 * root communicator's seconds (tick, which also marks it finished). */
static double begin(moe_comm *c, const char *what) {
    moe_comm *r = comm_root(c);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
    atomic_store(&r->busy_what, what);
    atomic_store(&r->busy_since_ns, ns ? ns : 1);
    return MPI_Wtime();
}
static void tick(moe_comm *c, double t0) {
    moe_comm *r = comm_root(c);
    r->seconds += MPI_Wtime() - t0;
    atomic_store(&r->busy_since_ns, 0);
}

static MPI_Comm mc(moe_comm *c) {
    MPI_Comm m;
    memcpy(&m, &c->impl, sizeof m);
    return m;
}

static moe_status ar_f32(moe_comm *c, float *buf, size_t n, moe_error *err) {
    CHECK_N("all-reduce", n);
    double t0 = begin(c, "all-reduce");
    int rc = MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM, mc(c));
    tick(c, t0);
    CHECK_RC("all-reduce", rc);
    comm_root(c)->bytes_moved += 2 * sizeof(float) * n * (size_t)(c->size - 1) / (size_t)c->size;
    return MOE_OK;
}

static moe_status iar_f32(moe_comm *c, float *buf, size_t n, moe_comm_req *req, moe_error *err) {
    CHECK_N("all-reduce", n);
    _Static_assert(sizeof(MPI_Request) <= sizeof(void *), "MPI_Request fits the request's impl pointer");
    MPI_Request r;
    double t0 = begin(c, "all-reduce (start)");
    int rc = MPI_Iallreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM, mc(c), &r);
    tick(c, t0);
    CHECK_RC("all-reduce (started)", rc);
    memcpy(&req->impl, &r, sizeof r);
    comm_root(c)->bytes_moved += 2 * sizeof(float) * n * (size_t)(c->size - 1) / (size_t)c->size;
    return MOE_OK;
}

/* The time spent here is the part of the started collectives that the
 * computation in between did not hide. */
static moe_status waitall(moe_comm *c, moe_comm_req *reqs, int n, moe_error *err) {
    double t0 = begin(c, "all-reduce (wait)");
    int rc = MPI_SUCCESS;
    for (int i = 0; i < n && rc == MPI_SUCCESS; i++) {
        MPI_Request r;
        memcpy(&r, &reqs[i].impl, sizeof r);
        rc = MPI_Wait(&r, MPI_STATUS_IGNORE);
        reqs[i].impl = NULL;
    }
    tick(c, t0);
    CHECK_RC("all-reduce (waited)", rc);
    return MOE_OK;
}

static moe_status ar_f64(moe_comm *c, double *buf, size_t n, moe_error *err) {
    CHECK_N("all-reduce", n);
    double t0 = begin(c, "all-reduce");
    int rc = MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_DOUBLE, MPI_SUM, mc(c));
    tick(c, t0);
    CHECK_RC("all-reduce", rc);
    comm_root(c)->bytes_moved += 2 * sizeof(double) * n * (size_t)(c->size - 1) / (size_t)c->size;
    return MOE_OK;
}

static moe_status ag(moe_comm *c, void *dst, const void *src, size_t bytes, moe_error *err) {
    CHECK_N("all-gather", bytes);
    int rc;
    double t0 = begin(c, "all-gather");
    if (dst == src) rc = MPI_Allgather(MPI_IN_PLACE, 0, MPI_BYTE, dst, (int)bytes, MPI_BYTE, mc(c));
    else rc = MPI_Allgather(src, (int)bytes, MPI_BYTE, dst, (int)bytes, MPI_BYTE, mc(c));
    tick(c, t0);
    CHECK_RC("all-gather", rc);
    comm_root(c)->bytes_moved += bytes * (size_t)(c->size - 1);
    return MOE_OK;
}

static moe_status gat(moe_comm *c, void *dst, const void *src, size_t bytes, int root, moe_error *err) {
    CHECK_N("gather", bytes * (size_t)c->size);
    double t0 = begin(c, "gather");
    int rc = MPI_Gather(src, (int)bytes, MPI_BYTE, dst, (int)bytes, MPI_BYTE, root, mc(c));
    tick(c, t0);
    CHECK_RC("gather", rc);
    if (c->rank == root) comm_root(c)->bytes_moved += bytes * (size_t)(c->size - 1);
    return MOE_OK;
}

static moe_status rs_f32(moe_comm *c, float *dst, const float *src, size_t n, moe_error *err) {
    CHECK_N("reduce-scatter", n);
    double t0 = begin(c, "reduce-scatter");
    int rc = MPI_Reduce_scatter_block(src, dst, (int)n, MPI_FLOAT, MPI_SUM, mc(c));
    tick(c, t0);
    CHECK_RC("reduce-scatter", rc);
    comm_root(c)->bytes_moved += sizeof(float) * n * (size_t)(c->size - 1);
    return MOE_OK;
}

static moe_status a2av(moe_comm *c, const float *send, const int *scount, const int *sdispl, float *recv,
                       const int *rcount, const int *rdispl, moe_error *err) {
    double t0 = begin(c, "all-to-all-v");
    int rc = MPI_Alltoallv(send, scount, sdispl, MPI_FLOAT, recv, rcount, rdispl, MPI_FLOAT, mc(c));
    tick(c, t0);
    CHECK_RC("all-to-all-v", rc);
    for (int r = 0; r < c->size; r++)
        if (r != c->rank) comm_root(c)->bytes_moved += sizeof(float) * (size_t)rcount[r];
    return MOE_OK;
}

static moe_status bc(moe_comm *c, void *buf, size_t bytes, int root, moe_error *err) {
    CHECK_N("broadcast", bytes);
    double t0 = begin(c, "broadcast");
    int rc = MPI_Bcast(buf, (int)bytes, MPI_BYTE, root, mc(c));
    tick(c, t0);
    CHECK_RC("broadcast", rc);
    if (c->rank != root) comm_root(c)->bytes_moved += bytes;
    return MOE_OK;
}

static moe_status bar(moe_comm *c, moe_error *err) {
    double t0 = begin(c, "barrier");
    int rc = MPI_Barrier(mc(c));
    tick(c, t0);
    CHECK_RC("barrier", rc);
    return MOE_OK;
}

static void fill(moe_comm *c, MPI_Comm w);

static moe_status split(moe_comm *c, int color, int key, moe_comm *out, moe_error *err) {
    MPI_Comm s;
    (void)begin(c, "comm split");
    int rc = MPI_Comm_split(mc(c), color, key, &s);
    atomic_store(&comm_root(c)->busy_since_ns, 0);
    CHECK_RC("comm split", rc);
    fill(out, s);
    out->parent = c;
    return MOE_OK;
}

static void release(moe_comm *c) {
    MPI_Comm m = mc(c);
    if (m != MPI_COMM_WORLD) MPI_Comm_free(&m);
}

static void fill(moe_comm *c, MPI_Comm w) {
    comm_self(c);
    _Static_assert(sizeof(MPI_Comm) <= sizeof(void *), "MPI_Comm fits the impl pointer");
    memcpy(&c->impl, &w, sizeof w);
    MPI_Comm_rank(w, &c->rank);
    MPI_Comm_size(w, &c->size);
    c->allreduce_f32 = ar_f32;
    c->allreduce_f64 = ar_f64;
    c->iallreduce_f32 = iar_f32;
    c->waitall = waitall;
    c->allgather = ag;
    c->gather = gat;
    c->reduce_scatter_f32 = rs_f32;
    c->alltoallv_f32 = a2av;
    c->bcast = bc;
    c->barrier = bar;
    c->split = split;
    c->release = release;
}

moe_status dist_comm_world(moe_comm *c, moe_error *err) {
    if (!dist_comm_has_mpi())
        return moe_err(err, MOE_ERR_ARG, "distributed: this program was linked without libmpi "
                       "(a static link of libmoe.a has no MPI; link libmoe.so or add -lmpi)");
    int inited = 0;
    MPI_Initialized(&inited);
    if (!inited) {
        int provided;
        /* only the main thread calls MPI; OpenMP threads never do */
        int rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
        CHECK_RC("init", rc);
    }
    fill(c, MPI_COMM_WORLD);
    return MOE_OK;
}

void dist_comm_finish(moe_comm *c) {
    (void)c;
    int fin = 0;
    MPI_Finalized(&fin);
    if (!fin) MPI_Finalize();
}

void dist_comm_abort(moe_comm *c, int code) { MPI_Abort(mc(c), code); }
