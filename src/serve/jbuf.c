/* jbuf.c: the JSON writer of `moe serve` (over core/strbuf.h).
 *
 * For: building responses (JSON bodies, server-sent events) with strings
 * that are always valid UTF-8 JSON whatever the model generated. Not for:
 * parsing (src/io/json.c).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve/serve.h"

/* The length of the well-formed UTF-8 character at s[0, n), or 0 when the
 * bytes there are ill-formed; *sub gets the maximal subpart's length (the
 * bytes one U+FFFD replaces, >= 1) then. */
static size_t utf8_char(const unsigned char *s, size_t n, size_t *sub) {
    const unsigned c = s[0];
    size_t len;
    unsigned lo = 0x80, hi = 0xBF;
    *sub = 1;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else {
        return 0;
    }
    size_t i = 1;
    for (; i < len && i < n; i++) {
        const unsigned d = s[i];
        if (i == 1 ? (d < lo || d > hi) : (d < 0x80 || d > 0xBF)) break;
    }
    if (i == len) return len;
    *sub = i;
    return 0;
}

size_t utf8_safe_len(const char *s, size_t n) {
    /* the last lead byte within 3 bytes of the end: hold it back when its
       character is incomplete but could still be completed */
    for (size_t back = 1; back <= 3 && back <= n; back++) {
        const unsigned char c = (unsigned char)s[n - back];
        if ((c & 0xC0) == 0x80) continue; /* a continuation byte */
        if (c < 0xC2 || c > 0xF4) return n;
        size_t sub;
        const size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
        if (back >= need) return n; /* complete (or ill-formed anyway) */
        if (utf8_char((const unsigned char *)s + n - back, back, &sub) == 0 && sub == back)
            return n - back; /* a valid prefix so far */
        return n;
    }
    return n;
}

void jb_str(jbuf *b, const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    strbuf_put(b, "\"", 1);
    size_t i = 0;
    while (i < n) {
        const unsigned c = u[i];
        if (c >= 0x80) {
            size_t sub;
            const size_t len = utf8_char(u + i, n - i, &sub);
            if (len) strbuf_put(b, s + i, len);
            else strbuf_put(b, "\xEF\xBF\xBD", 3);
            i += len ? len : sub;
            continue;
        }
        switch (c) {
        case '"': strbuf_put(b, "\\\"", 2); break;
        case '\\': strbuf_put(b, "\\\\", 2); break;
        case '\n': strbuf_put(b, "\\n", 2); break;
        case '\r': strbuf_put(b, "\\r", 2); break;
        case '\t': strbuf_put(b, "\\t", 2); break;
        default:
            if (c < 0x20 || c == 0x7F) strbuf_printf(b, "\\u%04x", c);
            else strbuf_put(b, s + i, 1);
        }
        i++;
    }
    strbuf_put(b, "\"", 1);
}
