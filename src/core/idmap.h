/* idmap.h: text -> id lookup over ids whose text the caller stores
 * (internal). One open-addressing table of int32 ids (linear probing,
 * moe_hash_bytes), used by the GGUF vocabulary (text/vocab.c), the BPE
 * import (text/bpe_export.c) and the Hugging Face tokenizer conversion
 * (tools/convert_tok.c). The table holds ids only; a callback gives an id's
 * text, so each caller keeps its own storage and its own policy for
 * duplicate texts (replace, keep the first, or separate kinds of token:
 * the callback answers NULL for an id that must not match).
 * Not for: the BPE merge table (text/bpe_merge.c: pairs, not texts).
 */
#ifndef MOE_CORE_IDMAP_H
#define MOE_CORE_IDMAP_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/hash.h"

typedef struct moe_idmap {
    int32_t *slot; /* [cap] ids, -1 empty */
    size_t cap;    /* a power of two, at least twice the keys */
} moe_idmap;

/* The text of id (its length in *n), or NULL when id must not match. */
typedef const void *(*moe_idmap_text_fn)(const void *ctx, int32_t id, size_t *n);

/* Room for n_keys texts, every slot empty. 0, or -1 when out of memory
 * (m->slot NULL then; moe_idmap_free is safe either way). */
static inline int moe_idmap_init(moe_idmap *m, size_t n_keys) {
    for (m->cap = 16; m->cap < 2 * n_keys; m->cap *= 2) {}
    m->slot = malloc(m->cap * sizeof *m->slot);
    if (!m->slot) return -1;
    for (size_t k = 0; k < m->cap; k++) m->slot[k] = -1;
    return 0;
}

static inline void moe_idmap_free(moe_idmap *m) {
    free(m->slot);
    m->slot = NULL;
}

/* The slot holding an id whose text is s[0, n), or the empty slot where such
 * an id would go: m->slot[result] is the id, or -1. */
static inline size_t moe_idmap_slot(const moe_idmap *m, const void *s, size_t n, moe_idmap_text_fn text,
                                    const void *ctx) {
    const size_t mask = m->cap - 1;
    size_t k = moe_hash_bytes(s, n) & mask;
    for (; m->slot[k] >= 0; k = (k + 1) & mask) {
        size_t len;
        const void *t = text(ctx, m->slot[k], &len);
        if (t && len == n && !memcmp(t, s, n)) break;
    }
    return k;
}

/* The id whose text is s[0, n), or -1. */
static inline int32_t moe_idmap_find(const moe_idmap *m, const void *s, size_t n, moe_idmap_text_fn text,
                                     const void *ctx) {
    return m->slot[moe_idmap_slot(m, s, n, text, ctx)];
}

#endif
