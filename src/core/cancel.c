/* cancel.c: the process-wide cancellation request (moe_cancel in moe.h):
 * one flag that a signal handler may set, polled by the long library calls
 * (every atomic file write, tokenizer training, the trainer's phases).
 * This is the library's only mutable global: a signal reaches a handler
 * with no argument to carry a handle, so the flag cannot live in one.
 * Not for: deciding what a signal means (the program does that), or
 * installing handlers (the library never does). */
#include "core/cancel.h"

#include <signal.h>

#include "core/error.h"

/* volatile sig_atomic_t: the only object C lets a handler write */
static volatile sig_atomic_t g_cancel;

void moe_cancel(void) { g_cancel = 1; }
void moe_cancel_clear(void) { g_cancel = 0; }
int moe_cancel_requested(void) { return g_cancel != 0; }

moe_status cancel_check(moe_error *err, const char *what) {
    if (!g_cancel) return MOE_OK;
    return moe_err(err, MOE_ERR_CANCELLED, "%s: cancelled (interrupted)", what);
}
