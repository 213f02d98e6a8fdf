/* cancel.h: polling the cancellation request of moe_cancel (internal).
 * For: long loops and writers that must stop cleanly when the program asks
 * (Ctrl-C). Not for: signal handling (the program's). */
#ifndef MOE_CORE_CANCEL_H
#define MOE_CORE_CANCEL_H

#include "moe.h"

/* MOE_ERR_CANCELLED with "WHAT: cancelled" when moe_cancel was called
 * (and not cleared since); MOE_OK otherwise. Cheap: one load. */
moe_status cancel_check(moe_error *err, const char *what);

#endif
