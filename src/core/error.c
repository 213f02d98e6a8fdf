/* error.c: status names and formatted error messages (see error.h). */
#include "core/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    case MOE_ERR_CANCELLED: return "cancelled";
    case MOE_STATUS_COUNT: break;
    }
    return "unknown status";
}

/* The length of the control character at s[i] (0: none): 1 for C0 (but
 * '\n' when keep_nl) and DEL, 2 for a C1 control U+0080..U+009F in UTF-8
 * (C2 80..C2 9F). */
static size_t ctrl_len(const unsigned char *s, size_t i, size_t n, int keep_nl) {
    if (s[i] == '\n' && keep_nl) return 0;
    if (s[i] < 0x20 || s[i] == 0x7f) return 1;
    if (s[i] == 0xc2 && i + 1 < n && s[i + 1] >= 0x80 && s[i + 1] <= 0x9f) return 2;
    return 0;
}

size_t moe_escape_ctrl(char *dst, size_t cap, const char *src, size_t n, int keep_nl) {
    const unsigned char *s = (const unsigned char *)src;
    size_t o = 0;
    if (cap == 0) return 0;
    for (size_t i = 0; i < n; i++) {
        const size_t c = ctrl_len(s, i, n, keep_nl);
        if (c == 0) {
            if (o + 1 >= cap) break;
            dst[o++] = (char)s[i];
            continue;
        }
        if (o + 4 * c >= cap) break;
        for (size_t k = 0; k < c; k++, o += 4) snprintf(dst + o, 5, "\\x%02x", s[i + k]);
        i += c - 1;
    }
    dst[o] = '\0';
    return o;
}

moe_status moe_err(moe_error *e, moe_status s, const char *fmt, ...) {
    if (e) {
        char raw[sizeof e->msg];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(raw, sizeof raw, fmt, ap);
        va_end(ap);
        /* names from files reach terminals through messages: no control bytes */
        moe_escape_ctrl(e->msg, sizeof e->msg, raw, strlen(raw), 1);
    }
    return s;
}

void moe_assert_fail(const char *cond, const char *file, int line) {
    fprintf(stderr, "moe: assertion failed: %s (%s:%d)\n", cond, file, line);
    abort();
}
