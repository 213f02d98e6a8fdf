/* bpe_merge.h: the one byte-level BPE merge loop (internal), shared by the
 * training tokenizer (bpe.c's bpe_encode) and GGUF "gpt2" vocabularies
 * (bpe_gguf.c): the pair -> merge table, and the merging of one pre-tokenized
 * chunk with a cache of short chunks already seen.
 * Not for: pre-tokenization (bpe_chunk_end in bpe.c, pretok.c), training
 * (bpe.c), special tokens (vocab.c).
 *
 * A chunk starts as one symbol per byte (byte_tok[byte], -1 when the byte has
 * no token); the adjacent pair whose merge has the lowest rank is merged,
 * ties to the leftmost, until no pair has a merge. Symbols form a linked
 * list; a heap holds candidate merges (rank, position), each checked against
 * the list when popped. A merge makes a new id of higher rank, so the
 * occurrences of one rank are taken left to right exactly as GPT-2's "merge
 * every occurrence of the best pair". */
#ifndef MOE_TEXT_BPE_MERGE_H
#define MOE_TEXT_BPE_MERGE_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "core/hash.h"

#define BPE_PAIR_EMPTY UINT64_MAX

/* Grows *p (elements of size sz) to hold at least need, doubling; 0 when
 * out of memory (*p unchanged). */
static inline int bpe_grow(void **p, size_t *cap, size_t need, size_t sz) {
    if (need <= *cap) return 1;
    size_t c = *cap ? *cap : 16;
    while (c < need) c *= 2;
    void *q = realloc(*p, c * sz);
    if (!q) return 0;
    *p = q;
    *cap = c;
    return 1;
}

/* (left, right) -> merge rank and result token, open addressing. */
typedef struct bpe_pairs {
    uint64_t *key;  /* [cap] left << 32 | right; BPE_PAIR_EMPTY when free */
    int32_t *rank;  /* [cap] merge rank (lower merges first) */
    int32_t *res;   /* [cap] the token the merge makes */
    size_t cap;     /* power of two, at least 2 * pairs + 2 */
} bpe_pairs;

/* An empty table with room for n pairs; 0 when out of memory (p zeroed). */
int bpe_pairs_init(bpe_pairs *p, size_t n);
void bpe_pairs_free(bpe_pairs *p);

/* Adds (a, b) -> (rank, res) (a, b >= 0); 1 if added, 0 if the pair is
 * already there (it keeps its first rank and result). */
int bpe_pairs_add(bpe_pairs *p, int32_t a, int32_t b, int32_t rank, int32_t res);

/* The rank of the merge of (a, b) and its result in *res, or -1. */
static inline int32_t bpe_pairs_find(const bpe_pairs *p, int32_t a, int32_t b, int32_t *res) {
    if (a < 0 || b < 0) return -1;
    const uint64_t k = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b, m = p->cap - 1;
    for (uint64_t s = moe_mix64(k) & m;; s = (s + 1) & m) {
        if (p->key[s] == k) { *res = p->res[s]; return p->rank[s]; }
        if (p->key[s] == BPE_PAIR_EMPTY) return -1;
    }
}

/* Heap entry: a candidate merge of the symbols at pos and right. */
typedef struct bpe_cand {
    int32_t rank, pos, right; /* merge rank; positions of the two symbols */
    int32_t l, r;             /* their ids when pushed (a stale entry differs) */
    int32_t res;              /* the merged token */
} bpe_cand;

#define BPE_CACHE_MAX (1u << 16) /* entries of the chunk cache, at most */
#define BPE_CACHE_MAX_LEN 48     /* longest chunk that is cached */

/* Working memory of the merges over one text, and the cache of its chunks
 * of 2 .. BPE_CACHE_MAX_LEN bytes (keys point into the text, which must
 * outlive the merger). */
typedef struct bpe_merger {
    int32_t *sym, *nxt, *prv; size_t cap; /* [cap] per chunk position */
    bpe_cand *heap; size_t nh;            /* [3 cap] */
    int32_t *out; size_t cout;            /* ids of a long chunk */
    int32_t small[BPE_CACHE_MAX_LEN];     /* ids of a short chunk */
    int32_t *slot; size_t nslot;          /* [nslot] cache entry or -1 */
    size_t ncache, maxcache;              /* entries used, allowed */
    const uint8_t **c_key; uint32_t *c_len, *c_tok, *c_ntok; /* [maxcache] entries */
    int32_t *pool; size_t npool, cpool;   /* cached token ids */
} bpe_merger;

/* A merger for the chunks of a text of n bytes; 0 when out of memory. */
int bpe_merger_init(bpe_merger *M, size_t n);
void bpe_merger_free(bpe_merger *M);

/* Merges chunk s[0, L) (1 <= L <= INT32_MAX): *ids gets its token ids (valid
 * until the next call; -1 for a byte without a token) and the count is
 * returned; -1 when out of memory. */
int64_t bpe_merger_chunk(bpe_merger *M, const bpe_pairs *P, const int32_t byte_tok[256],
                         const uint8_t *s, size_t L, const int32_t **ids);

#endif
