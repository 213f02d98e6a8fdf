/* strbuf.h: a growing NUL-terminated byte string, the one buffer of the
 * writers that build text in memory (the JSON of `moe serve`, the SVG/XHTML
 * of `moe report`). An allocation that fails sets oom and stops the writes
 * (the buffer keeps what fitted); callers check oom once at the end.
 *   strbuf b = {0}; strbuf_puts(&b, "x"); strbuf_printf(&b, "%d", 1);
 *   ... b.p, b.n ...; strbuf_free(&b); */
#ifndef MOE_CORE_STRBUF_H
#define MOE_CORE_STRBUF_H

#include <stddef.h>

typedef struct strbuf {
    char *p;
    size_t n, cap;
    int oom;           /* an append failed (the buffer keeps what fitted) */
} strbuf;

void strbuf_free(strbuf *b);
/* Room for extra more bytes (and the NUL); 0 (and oom) when it cannot grow. */
int strbuf_reserve(strbuf *b, size_t extra);
void strbuf_put(strbuf *b, const char *s, size_t n);
void strbuf_puts(strbuf *b, const char *s);
void strbuf_printf(strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
