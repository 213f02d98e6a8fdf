/* comm_impl.h: the job's communicator (internal): comm_mpi.c over MPI, or
 * comm_stub.c (one rank) in a build without MPI. Only these files know
 * which; the rest of the library sees core/comm.h. */
#ifndef MOE_DIST_COMM_IMPL_H
#define MOE_DIST_COMM_IMPL_H

#include "core/comm.h"

/* 1 when this build talks MPI. */
int dist_comm_has_mpi(void);
/* Starts the job's communication (MPI_Init once) and fills c with every
 * rank of the job. */
moe_status dist_comm_world(moe_comm *c, moe_error *err);
/* Ends it (MPI_Finalize), after which no collective may run. */
void dist_comm_finish(moe_comm *c);
/* Ends every rank of the job with this exit code (MPI_Abort): for a rank
 * that failed alone while the others wait in a collective. */
void dist_comm_abort(moe_comm *c, int code);

#endif
