/* bpe_gguf.c: byte-level BPE ("gpt2" GGUF vocabularies): the merge table
 * from tokenizer.ggml.merges, and encoding: pre-tokenize (pretok.c), then in
 * each chunk start from one token per byte (the token that spells the byte in
 * GPT-2's byte-to-unicode map) and apply the merge of lowest rank, leftmost
 * first, until none applies; as llama.cpp and Hugging Face's BPE do. With
 * ignore_merges (llama3) a chunk whose spelling is a token is that token.
 * Not for: special tokens (vocab.c), SentencePiece vocabularies (spm.c),
 * training (train/bpe.c; its encoder runs its own pre-tokenizer, so this
 * file has its own merge loop over the chunks pretok.c makes).
 */
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/heap.h"
#include "text/vocab.h"
#include "text/bpe.h"

#define MERGE_EMPTY UINT64_MAX

static inline uint64_t pair_key(int32_t a, int32_t b) {
    return ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
}

static inline size_t pair_slot(uint64_t k, size_t cap) {
    k ^= k >> 33;
    k *= 0xFF51AFD7ED558CCDull;
    k ^= k >> 33;
    return (size_t)k & (cap - 1);
}

/* Rank and result of the merge (a, b); -1 when there is none. */
static inline int32_t merge_find(const moe_vocab *v, int32_t a, int32_t b, int32_t *res) {
    uint64_t k = pair_key(a, b);
    for (size_t s = pair_slot(k, v->merge_cap);; s = (s + 1) & (v->merge_cap - 1)) {
        if (v->merge_key[s] == k) { *res = v->merge_res[s]; return v->merge_rank[s]; }
        if (v->merge_key[s] == MERGE_EMPTY) return -1;
    }
}

moe_status bpe_gguf_init(moe_vocab *v, const gguf_str *merges, size_t n_merges, moe_error *err) {
    for (int b = 0; b < 256; b++) {
        char d[2];
        uint8_t byte = (uint8_t)b;
        v->byte_tok[b] = vocab_find(v, d, bpe_spell(d, &byte, 1));
    }
    size_t cap = 16;
    while (cap < 2 * n_merges + 2) cap *= 2;
    v->merge_key = malloc(cap * sizeof *v->merge_key);
    v->merge_rank = malloc(cap * sizeof *v->merge_rank);
    v->merge_res = malloc(cap * sizeof *v->merge_res);
    size_t maxlen = 0;
    for (size_t r = 0; r < n_merges; r++) if (merges[r].n > maxlen) maxlen = merges[r].n;
    char *tmp = malloc(maxlen + 1);
    if (!v->merge_key || !v->merge_rank || !v->merge_res || !tmp) {
        free(tmp);
        return moe_err(err, MOE_ERR_NOMEM, "bpe_gguf_init: out of memory for %zu merges", n_merges);
    }
    v->merge_cap = cap;
    memset(v->merge_key, 0xFF, cap * sizeof *v->merge_key);
    v->n_merges = n_merges;
    for (size_t r = 0; r < n_merges; r++) {
        const char *m = merges[r].s;
        size_t n = merges[r].n;
        /* "left right": the first space after the first byte (as llama.cpp) */
        const char *sp = n > 1 ? memchr(m + 1, ' ', n - 1) : NULL;
        int32_t a = -1, b = -1, res = -1;
        if (sp) {
            size_t la = (size_t)(sp - m), lb = n - la - 1;
            a = vocab_find(v, m, la);
            b = vocab_find(v, sp + 1, lb);
            memcpy(tmp, m, la);
            memcpy(tmp + la, sp + 1, lb);
            res = vocab_find(v, tmp, la + lb);
        }
        if (a < 0 || b < 0 || res < 0 || r > INT32_MAX) { v->n_merges_skipped++; continue; }
        uint64_t k = pair_key(a, b);
        size_t s = pair_slot(k, cap);
        while (v->merge_key[s] != MERGE_EMPTY && v->merge_key[s] != k) s = (s + 1) & (cap - 1);
        if (v->merge_key[s] == k) continue; /* a repeated pair keeps its first rank */
        v->merge_key[s] = k;
        v->merge_rank[s] = (int32_t)r;
        v->merge_res[s] = res;
    }
    free(tmp);
    return MOE_OK;
}

/* ---------------------------------------------------------- encoding */

typedef struct cand {
    int32_t rank, pos, right; /* merge rank; positions of the two symbols */
    int32_t l, r;             /* their ids when pushed (a stale entry differs) */
    int32_t res;              /* the merged token */
} cand;

static inline int cand_before(const cand *x, const cand *y) {
    return x->rank != y->rank ? x->rank < y->rank : x->pos < y->pos;
}

typedef struct bpe_work {
    const moe_vocab *v;
    int32_t *sym, *nxt, *prv; /* [L] per byte position of the chunk */
    cand *heap;               /* [3 L] */
    size_t nh;
} bpe_work;

MOE_HEAP_DEFINE(cand_heap, cand, cand_before)

static void try_pair(bpe_work *w, int32_t p, int32_t q) {
    int32_t res, a = w->sym[p], b = w->sym[q];
    if (a < 0 || b < 0) return;
    int32_t rank = merge_find(w->v, a, b, &res);
    if (rank < 0) return;
    cand c = { rank, p, q, a, b, res };
    cand_heap_push(w->heap, &w->nh, c);
}

/* Merges one chunk s[0, L) and pushes its ids. */
static void encode_chunk(bpe_work *w, const uint8_t *s, int32_t L, vocab_out *o) {
    const moe_vocab *v = w->v;
    for (int32_t i = 0; i < L; i++) {
        w->sym[i] = v->byte_tok[s[i]];
        w->prv[i] = i - 1;
        w->nxt[i] = i + 1;
    }
    w->nh = 0;
    for (int32_t i = 0; i + 1 < L; i++) try_pair(w, i, i + 1);
    while (w->nh > 0) {
        cand c = cand_heap_pop(w->heap, &w->nh);
        int32_t p = c.pos, q = c.right;
        if (w->sym[p] != c.l || w->nxt[p] != q || w->sym[q] != c.r) continue; /* stale */
        w->sym[p] = c.res;
        w->sym[q] = -2; /* merged away */
        w->nxt[p] = w->nxt[q];
        if (w->nxt[q] < L) w->prv[w->nxt[q]] = p;
        if (w->prv[p] >= 0) try_pair(w, w->prv[p], p);
        if (w->nxt[p] < L) try_pair(w, p, w->nxt[p]);
    }
    for (int32_t i = 0; i < L; i = w->nxt[i]) {
        int32_t id = w->sym[i] >= 0 ? w->sym[i] : v->unk; /* a byte without a token */
        if (id >= 0) vocab_push(o, id);
    }
}

moe_status bpe_gguf_encode(const moe_vocab *v, const char *text, size_t n, vocab_out *o,
                           moe_error *err) {
    if (n == 0) return MOE_OK;
    if (n > INT32_MAX / 4)
        return moe_err(err, MOE_ERR_UNSUPPORTED, "bpe_gguf_encode: a text of %zu bytes (limit 2^29)", n);
    const uint8_t *t = (const uint8_t *)text;
    size_t *ends = malloc(n * sizeof *ends), nc = 0, maxc = 0;
    if (!ends) return moe_err(err, MOE_ERR_NOMEM, "bpe_gguf_encode: out of memory (text of %zu bytes)", n);
    moe_status st = pretok_split(v->pre, t, n, ends, &nc, err);
    if (st) { free(ends); return st; }
    for (size_t c = 0, s = 0; c < nc; s = ends[c++]) if (ends[c] - s > maxc) maxc = ends[c] - s;
    bpe_work w = { v, malloc(maxc * sizeof(int32_t)), malloc(maxc * sizeof(int32_t)),
                   malloc(maxc * sizeof(int32_t)), malloc(3 * maxc * sizeof(cand)), 0 };
    char *spelled = v->ignore_merges ? malloc(2 * maxc) : NULL;
    if (!w.sym || !w.nxt || !w.prv || !w.heap || (v->ignore_merges && !spelled)) {
        st = moe_err(err, MOE_ERR_NOMEM, "bpe_gguf_encode: out of memory (text of %zu bytes)", n);
        goto out;
    }
    for (size_t c = 0, s = 0; c < nc; s = ends[c++]) {
        size_t L = ends[c] - s;
        if (v->ignore_merges) {
            int32_t id = vocab_find(v, spelled, bpe_spell(spelled, t + s, L));
            if (id >= 0) { vocab_push(o, id); continue; }
        }
        encode_chunk(&w, t + s, (int32_t)L, o);
    }
out:
    free(ends); free(w.sym); free(w.nxt); free(w.prv); free(w.heap); free(spelled);
    return st;
}
