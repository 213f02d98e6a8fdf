/* bpe_merge.c: the BPE merge loop and its chunk cache (see bpe_merge.h).
 * Not for: pre-tokenization, training, special tokens. */
#include "text/bpe_merge.h"

#include <stdlib.h>
#include <string.h>

#include "core/heap.h"

/* ---------------------------------------------------------- pair table */

int bpe_pairs_init(bpe_pairs *p, size_t n) {
    size_t cap = 16;
    while (cap < 2 * n + 2) cap *= 2;
    p->key = malloc(cap * sizeof *p->key);
    p->rank = malloc(cap * sizeof *p->rank);
    p->res = malloc(cap * sizeof *p->res);
    if (!p->key || !p->rank || !p->res) {
        bpe_pairs_free(p);
        return 0;
    }
    p->cap = cap;
    memset(p->key, 0xFF, cap * sizeof *p->key);
    return 1;
}

void bpe_pairs_free(bpe_pairs *p) {
    free(p->key); free(p->rank); free(p->res);
    memset(p, 0, sizeof *p);
}

int bpe_pairs_add(bpe_pairs *p, int32_t a, int32_t b, int32_t rank, int32_t res) {
    const uint64_t k = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b, m = p->cap - 1;
    uint64_t s = moe_mix64(k) & m;
    for (; p->key[s] != BPE_PAIR_EMPTY; s = (s + 1) & m)
        if (p->key[s] == k) return 0;
    p->key[s] = k;
    p->rank[s] = rank;
    p->res[s] = res;
    return 1;
}

/* ---------------------------------------------------------- merge loop */

/* Heap order: lowest rank first, then leftmost. */
static inline int cand_before(const bpe_cand *x, const bpe_cand *y) {
    return x->rank != y->rank ? x->rank < y->rank : x->pos < y->pos;
}

MOE_HEAP_DEFINE(cand_heap, bpe_cand, cand_before)

static void try_pair(bpe_merger *M, const bpe_pairs *P, int32_t p, int32_t q) {
    int32_t res, a = M->sym[p], b = M->sym[q];
    const int32_t rank = bpe_pairs_find(P, a, b, &res);
    if (rank < 0) return;
    const bpe_cand c = {rank, p, q, a, b, res};
    cand_heap_push(M->heap, &M->nh, c);
}

/* BPE of one chunk s[0, L) into dst (at most L ids); the count, or -1 when
 * out of memory. */
static int64_t merge_chunk(bpe_merger *M, const bpe_pairs *P, const int32_t *byte_tok,
                           const uint8_t *s, int32_t L, int32_t *dst) {
    if (L == 1) { dst[0] = byte_tok[s[0]]; return 1; }
    if ((size_t)L > M->cap) {
        size_t c = M->cap ? M->cap : 64;
        while (c < (size_t)L) c *= 2;
        free(M->sym); free(M->nxt); free(M->prv); free(M->heap);
        M->sym = malloc(c * sizeof *M->sym);
        M->nxt = malloc(c * sizeof *M->nxt);
        M->prv = malloc(c * sizeof *M->prv);
        M->heap = malloc(3 * c * sizeof *M->heap); /* L-1 initial + 2 per merge */
        M->cap = c;
        if (!M->sym || !M->nxt || !M->prv || !M->heap) { M->cap = 0; return -1; }
    }
    for (int32_t i = 0; i < L; i++) {
        M->sym[i] = byte_tok[s[i]];
        M->prv[i] = i - 1;
        M->nxt[i] = i + 1;
    }
    M->nh = 0;
    for (int32_t i = 0; i + 1 < L; i++) try_pair(M, P, i, i + 1);
    while (M->nh > 0) {
        const bpe_cand e = cand_heap_pop(M->heap, &M->nh);
        const int32_t p = e.pos, q = e.right;
        if (M->sym[p] != e.l || M->nxt[p] != q || M->sym[q] != e.r) continue; /* stale */
        M->sym[p] = e.res;
        M->sym[q] = -1; /* merged away */
        M->nxt[p] = M->nxt[q];
        if (M->nxt[q] < L) M->prv[M->nxt[q]] = p;
        if (M->prv[p] >= 0) try_pair(M, P, M->prv[p], p);
        if (M->nxt[p] < L) try_pair(M, P, p, M->nxt[p]);
    }
    int64_t k = 0;
    for (int32_t i = 0; i < L; i = M->nxt[i]) dst[k++] = M->sym[i];
    return k;
}

/* ------------------------------------------------------------- merger */

int bpe_merger_init(bpe_merger *M, size_t n) {
    memset(M, 0, sizeof *M);
    /* the cache holds at most one entry per chunk of 2 bytes or more */
    M->maxcache = n / 2 + 1 < BPE_CACHE_MAX ? n / 2 + 1 : BPE_CACHE_MAX;
    for (M->nslot = 16; M->nslot < 2 * M->maxcache; M->nslot *= 2) {}
    M->slot = malloc(M->nslot * sizeof *M->slot);
    M->c_key = malloc(M->maxcache * sizeof *M->c_key);
    M->c_len = malloc(M->maxcache * sizeof *M->c_len);
    M->c_tok = malloc(M->maxcache * sizeof *M->c_tok);
    M->c_ntok = malloc(M->maxcache * sizeof *M->c_ntok);
    if (!M->slot || !M->c_key || !M->c_len || !M->c_tok || !M->c_ntok) {
        bpe_merger_free(M);
        return 0;
    }
    for (size_t i = 0; i < M->nslot; i++) M->slot[i] = -1;
    return 1;
}

void bpe_merger_free(bpe_merger *M) {
    free(M->sym); free(M->nxt); free(M->prv); free(M->heap); free(M->out);
    free(M->slot); free(M->c_key); free(M->c_len); free(M->c_tok); free(M->c_ntok);
    free(M->pool);
    memset(M, 0, sizeof *M);
}


int64_t bpe_merger_chunk(bpe_merger *M, const bpe_pairs *P, const int32_t byte_tok[256],
                         const uint8_t *s, size_t L, const int32_t **ids) {
    if (L == 1) {
        M->small[0] = byte_tok[s[0]];
        *ids = M->small;
        return 1;
    }
    if (L > BPE_CACHE_MAX_LEN) {
        if (!bpe_grow((void **)&M->out, &M->cout, L, sizeof *M->out)) return -1;
        *ids = M->out;
        return merge_chunk(M, P, byte_tok, s, (int32_t)L, M->out);
    }
    uint64_t h = moe_hash_bytes(s, L), i = h & (M->nslot - 1);
    for (; M->slot[i] >= 0; i = (i + 1) & (M->nslot - 1)) {
        const int32_t c = M->slot[i];
        if (M->c_len[c] == L && !memcmp(M->c_key[c], s, L)) {
            *ids = M->pool + M->c_tok[c];
            return M->c_ntok[c];
        }
    }
    const int64_t k = merge_chunk(M, P, byte_tok, s, (int32_t)L, M->small);
    if (k < 0) return -1;
    *ids = M->small;
    if (M->ncache < M->maxcache && M->npool + (size_t)k <= UINT32_MAX) {
        if (!bpe_grow((void **)&M->pool, &M->cpool, M->npool + (size_t)k, sizeof *M->pool)) return -1;
        const size_t c = M->ncache++;
        memcpy(M->pool + M->npool, M->small, (size_t)k * sizeof *M->small);
        M->c_key[c] = s;
        M->c_len[c] = (uint32_t)L;
        M->c_tok[c] = (uint32_t)M->npool;
        M->c_ntok[c] = (uint32_t)k;
        M->npool += (size_t)k;
        M->slot[i] = (int32_t)c;
    }
    return k;
}
