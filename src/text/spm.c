/* spm.c: SentencePiece-style ("llama") encoding by token scores, as
 * llama.cpp does it for GGUF files: spaces become U+2581 (one prepended when
 * asked), the text is cut into UTF-8 characters, and while some adjacent pair
 * of symbols concatenates to a token, the pair whose token has the highest
 * score (ties: the leftmost) is merged. A final symbol that is not a token is
 * a single character: its bytes become <0xNN> byte tokens (byte fallback), or
 * the unknown token when the vocabulary lacks them.
 * Not for: special tokens (vocab.c), byte-level BPE (bpe_gguf.c).
 */
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/heap.h"
#include "text/vocab.h"

typedef struct sym {
    size_t start, n;   /* bytes buf[start, start + n); n == 0 once merged away */
    int32_t prev, next; /* neighbours in the list, -1 at the ends */
} sym;

typedef struct bigram {
    float score;        /* the score of the token left + right makes */
    int32_t left, right;
    size_t size;        /* bytes of left + right when pushed (a stale entry differs) */
} bigram;

/* Heap order: higher score first, then the leftmost pair. */
static inline int before(const bigram *a, const bigram *b) {
    return a->score != b->score ? a->score > b->score : a->left < b->left;
}

typedef struct spm_work {
    const moe_vocab *v;
    const char *buf;
    sym *s;
    bigram *heap;
    size_t nh;
} spm_work;

MOE_HEAP_DEFINE(bigram_heap, bigram, before)

/* Pushes the pair (l, r) if their concatenation is a token. */
static void try_pair(spm_work *w, int32_t l, int32_t r) {
    if (l < 0 || r < 0) return;
    size_t size = w->s[l].n + w->s[r].n;
    int32_t id = vocab_find(w->v, w->buf + w->s[l].start, size);
    if (id < 0) return;
    bigram b = { w->v->score[id], l, r, size };
    bigram_heap_push(w->heap, &w->nh, b);
}

moe_status spm_encode(const moe_vocab *v, const char *text, size_t n, int prefix_space,
                      vocab_out *o, moe_error *err) {
    size_t spaces = 0;
    for (size_t i = 0; i < n; i++) spaces += text[i] == ' ';
    size_t len = n + 2 * spaces + (prefix_space ? 3 : 0);
    if (len == 0) return MOE_OK;
    char *buf = malloc(len);
    sym *s = malloc(len * sizeof *s);
    bigram *heap = malloc(3 * len * sizeof *heap); /* len - 1 first pairs + 2 per merge */
    if (!buf || !s || !heap) {
        free(buf); free(s); free(heap);
        return moe_err(err, MOE_ERR_NOMEM, "spm_encode: out of memory (text of %zu bytes)", n);
    }
    size_t k = 0;
    if (prefix_space) { memcpy(buf, "\xE2\x96\x81", 3); k = 3; }
    for (size_t i = 0; i < n; i++) {
        if (text[i] == ' ') { memcpy(buf + k, "\xE2\x96\x81", 3); k += 3; }
        else buf[k++] = text[i];
    }
    int32_t ns = 0;
    for (size_t i = 0; i < len; ns++) {
        uint32_t cp;
        size_t c = uni_decode((const uint8_t *)buf + i, len - i, &cp);
        s[ns].start = i;
        s[ns].n = c;
        s[ns].prev = ns - 1;
        i += c;
        s[ns].next = i < len ? ns + 1 : -1;
    }
    spm_work w = { v, buf, s, heap, 0 };
    for (int32_t i = 1; i < ns; i++) try_pair(&w, i - 1, i);
    while (w.nh > 0) {
        bigram b = bigram_heap_pop(w.heap, &w.nh);
        sym *l = &s[b.left], *r = &s[b.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != b.size) continue; /* stale */
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) s[r->next].prev = b.left;
        try_pair(&w, l->prev, b.left);
        try_pair(&w, b.left, l->next);
    }
    for (int32_t i = 0; i >= 0; i = s[i].next) {
        int32_t id = vocab_find(v, buf + s[i].start, s[i].n);
        if (id >= 0) { vocab_push(o, id); continue; }
        for (size_t j = 0; j < s[i].n; j++) { /* byte fallback */
            int32_t b = v->byte_tok[(uint8_t)buf[s[i].start + j]];
            if (b < 0) b = v->unk;
            if (b >= 0) vocab_push(o, b);
        }
    }
    free(buf); free(s); free(heap);
    return MOE_OK;
}
