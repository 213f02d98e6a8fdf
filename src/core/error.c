/* error.c: status names and formatted error messages (see error.h). */
#include "core/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

const char *moe_status_str(moe_status s) {
    switch (s) {
    case MOE_OK: return "ok";
    case MOE_ERR_ARG: return "bad argument";
    case MOE_ERR_SHAPE: return "shape mismatch";
    case MOE_ERR_NONFINITE: return "non-finite value";
    case MOE_ERR_NOMEM: return "out of memory";
    case MOE_ERR_IO: return "input/output error";
    case MOE_ERR_FORMAT: return "bad file format";
    case MOE_ERR_UNSUPPORTED: return "unsupported";
    case MOE_STATUS_COUNT: break;
    }
    return "unknown status";
}

moe_status moe_err(moe_error *e, moe_status s, const char *fmt, ...) {
    if (e) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->msg, sizeof e->msg, fmt, ap);
        va_end(ap);
    }
    return s;
}

void moe_assert_fail(const char *cond, const char *file, int line) {
    fprintf(stderr, "moe: assertion failed: %s (%s:%d)\n", cond, file, line);
    abort();
}
