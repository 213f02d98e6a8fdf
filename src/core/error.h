/* error.h: status and message helpers shared by every part of the library
 * (internal). For: filling a moe_error with a formatted message and returning
 * the status in one statement. Not for: printing; the library never prints. */
#ifndef MOE_CORE_ERROR_H
#define MOE_CORE_ERROR_H

#include "moe.h"

#include <stddef.h>
#include <stdint.h>

/* Formats the message into e->msg (when e is not NULL) and returns s, so that
 * a failure reads: return moe_err(err, MOE_ERR_ARG, "top_k = %d > E = %d", k, E); */
moe_status moe_err(moe_error *e, moe_status s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Copies src[0, n) to dst[cap] (always NUL-terminated; an escape is
 * never cut) with each control character written as \xNN: C0 bytes (but
 * '\n' when keep_nl), DEL, and the C1 controls U+0080..U+009F in UTF-8. So
 * a name from a file (a GGUF key, a tensor name, general.name) cannot send
 * escape sequences to the terminal it is printed on. Returns the length.
 * moe_err does this to every message (keeping '\n'). */
size_t moe_escape_ctrl(char *dst, size_t cap, const char *src, size_t n, int keep_nl);

/* Clears a message. */
static inline void moe_err_clear(moe_error *e) { if (e) e->msg[0] = '\0'; }

/* 1 when the byte ranges [a, a + na) and [b, b + nb) share a byte: an
 * output that overlaps an input it still has to read (checked on integers,
 * since comparing pointers into different objects is undefined in C). */
static inline int moe_overlap(const void *a, size_t na, const void *b, size_t nb) {
    uintptr_t x = (uintptr_t)a, y = (uintptr_t)b;
    return na > 0 && nb > 0 && x < y + nb && y < x + na;
}

/* Programmer errors only (a broken invariant, never bad input): file:line, abort. */
#define MOE_ASSERT(c) do { if (!(c)) moe_assert_fail(#c, __FILE__, __LINE__); } while (0)
void moe_assert_fail(const char *cond, const char *file, int line);

#endif
