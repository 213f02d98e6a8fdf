/* comm_stub.c: the job's communicator in a build without MPI: one rank
 * (core/comm.h's comm_self). A job launched by mpirun with more ranks is
 * refused, since each process would otherwise train alone. */
#include "dist/comm_impl.h"

#include <stdlib.h>

int dist_comm_has_mpi(void) { return 0; }

moe_status dist_comm_world(moe_comm *c, moe_error *err) {
    const char *n = getenv("OMPI_COMM_WORLD_SIZE");
    if (!n) n = getenv("PMI_SIZE");
    if (n && atoi(n) > 1)
        return moe_err(err, MOE_ERR_ARG, "distributed: launched as one of %s ranks, but this build has no MPI "
                       "(rebuild with mpicc installed, or make MPI=1)", n);
    comm_self(c);
    return MOE_OK;
}

void dist_comm_finish(moe_comm *c) { (void)c; }
void dist_comm_abort(moe_comm *c, int code) { (void)c; (void)code; }
