/* bpe.c: byte-level BPE: pre-tokenizer, trainer, encoder and decoder (see
 * bpe.h for the rules and the layout).
 * Not for: file I/O, special-token parsing, or the GGUF-convention
 * export/import (bpe_export.c).
 *
 * Reading order: helpers, pre-tokenizer, tokenizer building blocks,
 * training, encoding, decoding. The hashes are core/hash.h's.
 */
#include "text/bpe.h"

#include <stdlib.h>
#include <string.h>

#include "core/cancel.h"
#include "core/error.h"
#include "core/heap.h"
#include "text/bpe_internal.h"

/* -------------------------------------------------------- pre-tokenizer */

static inline int is_space(uint8_t c) { return c == ' ' || (c >= '\t' && c <= '\r'); }
static inline int is_digit(uint8_t c) { return c >= '0' && c <= '9'; }
static inline int is_letter(uint8_t c) {
    return ((c | 32) >= 'a' && (c | 32) <= 'z') || c >= 0x80;
}
static inline int is_other(uint8_t c) { return !is_space(c) && !is_letter(c) && !is_digit(c); }

size_t bpe_chunk_end(const uint8_t *t, size_t n, size_t i) {
    uint8_t c = t[i];
    if (c == '\'' && i + 1 < n) { /* rule 1: contractions */
        uint8_t d = t[i + 1];
        if (d == 's' || d == 't' || d == 'm' || d == 'd') return i + 2;
        if (i + 2 < n) {
            uint8_t e = t[i + 2];
            if ((d == 'r' && e == 'e') || (d == 'v' && e == 'e') || (d == 'l' && e == 'l'))
                return i + 3;
        }
    }
    size_t j = i; /* rule 2: optional space, then one class */
    if (c == ' ' && i + 1 < n && !is_space(t[i + 1])) j = i + 1;
    uint8_t h = t[j];
    if (is_letter(h)) {
        for (j++; j < n && is_letter(t[j]); j++) {}
        return j;
    }
    if (is_digit(h)) {
        size_t s = j;
        for (j++; j < n && j - s < 3 && is_digit(t[j]); j++) {}
        return j;
    }
    if (!is_space(h)) {
        for (j++; j < n && is_other(t[j]); j++) {}
        return j;
    }
    size_t e = i + 1; /* rule 3: whitespace run (j == i here) */
    while (e < n && is_space(t[e])) e++;
    if (e == n || e - i == 1) return e;
    return e - 1;
}

/* ----------------------------------------------------- building blocks */

void bpe_free(bpe_tokenizer *tok) {
    if (!tok) return;
    free(tok->merges);
    free(tok->token_type);
    free(tok->token_off);
    free(tok->token_bytes);
    bpe_pairs_free(&tok->pairs);
    memset(tok, 0, sizeof *tok);
}

/* Builds the pair -> rank map from tok->merges (see bpe_internal.h). */
int bpe_build_map(bpe_tokenizer *tok) {
    if (!bpe_pairs_init(&tok->pairs, (size_t)tok->n_merges)) return 0;
    for (int32_t r = 0; r < tok->n_merges; r++) {
        const bpe_merge *m = &tok->merges[r];
        if (!bpe_pairs_add(&tok->pairs, m->left, m->right, r, m->result)) return -1 - r;
    }
    return 1;
}

/* ------------------------------------------------------------ training */

/* A distinct chunk of the training text ("word") and how often it occurs. */
typedef struct tword {
    size_t off;    /* into the symbol array */
    int32_t len;   /* current number of symbols (shrinks as merges apply) */
    int32_t stamp; /* last merge step that visited this word */
    int64_t count; /* occurrences in the text */
} tword;

/* A pair of adjacent symbols and where it occurs. */
typedef struct tpair {
    int64_t count;   /* occurrences over all words, weighted by word count */
    int64_t before;  /* count when first touched in the current step */
    int32_t a, b;    /* left and right symbol */
    int32_t *words;  /* words that contain (or contained) the pair; may repeat */
    size_t nw, cw;   /* used and allocated length of words */
    int32_t stamp;   /* last step that changed count */
} tpair;

/* Max-heap entry: higher count first, then lower (a, b). */
typedef struct hent {
    int64_t count;
    int32_t a, b, idx;
} hent;

typedef struct trainer {
    const uint8_t *text;
    tword *w; size_t nw, cw;           /* distinct words */
    int32_t *sym;                      /* symbols of all words */
    tpair *p; size_t np, cp;           /* pairs */
    uint64_t *pk; int32_t *pv; size_t pcap; /* pair map (a, b) -> index */
    int32_t *changed; size_t nch, cch; /* pairs changed in the current step */
    hent *heap; size_t nh, ch;
    int32_t step;
} trainer;

static inline int hent_before(const hent *x, const hent *y) {
    if (x->count != y->count) return x->count > y->count;
    if (x->a != y->a) return x->a < y->a;
    return x->b < y->b;
}

MOE_HEAP_DEFINE(hent_heap, hent, hent_before)

static int heap_push(trainer *T, hent e) {
    if (!bpe_grow((void **)&T->heap, &T->ch, T->nh + 1, sizeof *T->heap)) return 0;
    hent_heap_push(T->heap, &T->nh, e);
    return 1;
}

/* Index of pair (a, b), created with count 0 if new; -1 on out of memory. */
static int32_t pair_get(trainer *T, int32_t a, int32_t b) {
    if (2 * (T->np + 1) > T->pcap) {
        size_t cap = T->pcap ? 2 * T->pcap : 1024;
        uint64_t *k = malloc(cap * sizeof *k);
        int32_t *v = malloc(cap * sizeof *v);
        if (!k || !v) { free(k); free(v); return -1; }
        memset(k, 0xFF, cap * sizeof *k);
        for (size_t i = 0; i < T->np; i++) {
            uint64_t key = pair_key(T->p[i].a, T->p[i].b), s = moe_mix64(key) & (cap - 1);
            while (k[s] != BPE_PAIR_EMPTY) s = (s + 1) & (cap - 1);
            k[s] = key;
            v[s] = (int32_t)i;
        }
        free(T->pk); free(T->pv);
        T->pk = k; T->pv = v; T->pcap = cap;
    }
    uint64_t key = pair_key(a, b), s = moe_mix64(key) & (T->pcap - 1);
    for (; T->pk[s] != BPE_PAIR_EMPTY; s = (s + 1) & (T->pcap - 1))
        if (T->pk[s] == key) return T->pv[s];
    if (T->np >= INT32_MAX || !bpe_grow((void **)&T->p, &T->cp, T->np + 1, sizeof *T->p)) return -1;
    tpair *q = &T->p[T->np];
    memset(q, 0, sizeof *q);
    q->a = a; q->b = b; q->stamp = -1;
    T->pk[s] = key;
    T->pv[s] = (int32_t)T->np;
    return (int32_t)T->np++;
}

/* count(a, b) += delta; if word >= 0, also records that word contains the
 * pair. Remembers the pair as changed in this step. 0 on out of memory. */
static int pair_add(trainer *T, int32_t a, int32_t b, int64_t delta, int32_t word) {
    int32_t i = pair_get(T, a, b);
    if (i < 0) return 0;
    tpair *q = &T->p[i];
    if (q->stamp != T->step) {
        q->stamp = T->step;
        q->before = q->count;
        if (!bpe_grow((void **)&T->changed, &T->cch, T->nch + 1, sizeof *T->changed)) return 0;
        T->changed[T->nch++] = i;
    }
    q->count += delta;
    if (word >= 0 && (q->nw == 0 || q->words[q->nw - 1] != word)) {
        if (!bpe_grow((void **)&q->words, &q->cw, q->nw + 1, sizeof *q->words)) return 0;
        q->words[q->nw++] = word;
    }
    return 1;
}

/* Pushes every pair changed in this step whose count is positive. */
static int push_changed(trainer *T) {
    for (size_t k = 0; k < T->nch; k++) {
        tpair *q = &T->p[T->changed[k]];
        if (q->count > 0 && q->count != q->before) {
            hent e = { q->count, q->a, q->b, T->changed[k] };
            if (!heap_push(T, e)) return 0;
        }
    }
    T->nch = 0;
    return 1;
}

/* Counts the distinct chunks of the text and lays out their symbols. 1 on
 * success, 0 on out of memory, -1 (err set) for a size past the int32 limits. */
static int count_words(trainer *T, size_t n, moe_error *err) {
    size_t cap = 1024;
    int32_t *slot = malloc(cap * sizeof *slot);
    if (!slot) return 0;
    for (size_t i = 0; i < cap; i++) slot[i] = -1;
    uint64_t *wh = NULL; size_t cwh = 0;  /* hash of each word */
    size_t *woff = NULL; size_t cwo = 0;  /* text offset of each word */
    int ok = 0;
    for (size_t i = 0; i < n;) {
        size_t e = bpe_chunk_end(T->text, n, i), len = e - i;
        if (len > INT32_MAX) { moe_err(err, MOE_ERR_UNSUPPORTED, "bpe_train: a chunk of %zu bytes (limit 2^31 - 1)", len); ok = -1; goto done; }
        uint64_t h = moe_hash_bytes(T->text + i, len), s = h & (cap - 1);
        for (; slot[s] >= 0; s = (s + 1) & (cap - 1)) {
            tword *w = &T->w[slot[s]];
            if (wh[slot[s]] == h && (size_t)w->len == len && !memcmp(T->text + woff[slot[s]], T->text + i, len)) break;
        }
        if (slot[s] >= 0) {
            T->w[slot[s]].count++;
        } else {
            if (T->nw >= INT32_MAX - 1) { moe_err(err, MOE_ERR_UNSUPPORTED, "bpe_train: more than 2^31 distinct chunks"); ok = -1; goto done; }
            if (!bpe_grow((void **)&T->w, &T->cw, T->nw + 1, sizeof *T->w) ||
                !bpe_grow((void **)&wh, &cwh, T->nw + 1, sizeof *wh) ||
                !bpe_grow((void **)&woff, &cwo, T->nw + 1, sizeof *woff)) goto done;
            tword nwd = { 0, (int32_t)len, -1, 1 };
            T->w[T->nw] = nwd;
            wh[T->nw] = h;
            woff[T->nw] = i;
            slot[s] = (int32_t)T->nw++;
            if (2 * T->nw > cap) { /* rehash */
                size_t nc = 2 * cap;
                int32_t *ns = malloc(nc * sizeof *ns);
                if (!ns) goto done;
                for (size_t k = 0; k < nc; k++) ns[k] = -1;
                for (size_t k = 0; k < T->nw; k++) {
                    uint64_t t = wh[k] & (nc - 1);
                    while (ns[t] >= 0) t = (t + 1) & (nc - 1);
                    ns[t] = (int32_t)k;
                }
                free(slot);
                slot = ns;
                cap = nc;
            }
        }
        i = e;
    }
    /* symbols: each word starts as its bytes */
    size_t total = 0;
    for (size_t k = 0; k < T->nw; k++) total += (size_t)T->w[k].len;
    T->sym = malloc((total ? total : 1) * sizeof *T->sym);
    if (!T->sym) goto done;
    total = 0;
    for (size_t k = 0; k < T->nw; k++) {
        T->w[k].off = total;
        for (size_t j = 0; j < (size_t)T->w[k].len; j++) T->sym[total + j] = T->text[woff[k] + j];
        total += (size_t)T->w[k].len;
    }
    ok = 1;
done:
    free(slot); free(wh); free(woff);
    return ok;
}

/* Applies merge (a, b) -> x to every word that holds the pair, keeping the
 * pair counts exact: at each occurrence, with L the symbol before (already
 * rewritten) and R the one after, pairs (L,a), (a,b), (b,R) lose the word's
 * count and (L,x), (x,R) gain it. 0 on out of memory. */
static int apply_merge(trainer *T, int32_t pi, int32_t x) {
    int32_t a = T->p[pi].a, b = T->p[pi].b;
    int32_t *list = T->p[pi].words;
    size_t nl = T->p[pi].nw;
    for (size_t k = 0; k < nl; k++) {
        int32_t wi = list[k];
        tword *w = &T->w[wi];
        if (w->stamp == T->step) continue;
        w->stamp = T->step;
        int32_t *s = T->sym + w->off, L = w->len, o = 0;
        int64_t c = w->count;
        for (int32_t i = 0; i < L;) {
            if (i + 1 < L && s[i] == a && s[i + 1] == b) {
                if (!pair_add(T, a, b, -c, -1)) return 0;
                if (o > 0) {
                    if (!pair_add(T, s[o - 1], a, -c, -1) || !pair_add(T, s[o - 1], x, c, wi)) return 0;
                }
                if (i + 2 < L) {
                    if (!pair_add(T, b, s[i + 2], -c, -1) || !pair_add(T, x, s[i + 2], c, wi)) return 0;
                }
                s[o++] = x;
                i += 2;
            } else {
                s[o++] = s[i++];
            }
        }
        w->len = o;
    }
    tpair *q = &T->p[pi]; /* every occurrence is gone and cannot come back */
    free(q->words);
    q->words = NULL;
    q->nw = q->cw = 0;
    return 1;
}

static void trainer_free(trainer *T) {
    for (size_t i = 0; i < T->np; i++) free(T->p[i].words);
    free(T->w); free(T->sym); free(T->p); free(T->pk); free(T->pv);
    free(T->changed); free(T->heap);
}

/* Fills tok from 256 bytes + merges (token 256 + r is merge r) + BOS + EOS. */
static moe_status build_trained(bpe_tokenizer *tok, bpe_merge *merges, int32_t n_merges,
                                moe_error *err) {
    int32_t nv = BPE_N_BYTES + n_merges + BPE_N_SPECIAL;
    tok->merges = merges;
    tok->n_merges = n_merges;
    tok->n_vocab = nv;
    tok->token_type = malloc((size_t)nv * sizeof *tok->token_type);
    tok->token_off = malloc(((size_t)nv + 1) * sizeof *tok->token_off);
    if (!tok->token_type || !tok->token_off) goto nomem;
    size_t total = 0;
    tok->token_off[0] = 0;
    for (int32_t i = 0; i < nv; i++) {
        size_t len;
        if (i < BPE_N_BYTES) len = 1;
        else if (i < BPE_N_BYTES + n_merges) {
            const bpe_merge *m = &merges[i - BPE_N_BYTES];
            len = (tok->token_off[m->left + 1] - tok->token_off[m->left]) +
                  (tok->token_off[m->right + 1] - tok->token_off[m->right]);
        } else len = strlen(i == nv - 2 ? BPE_BOS_TEXT : BPE_EOS_TEXT);
        total += len;
        tok->token_off[i + 1] = total;
        tok->token_type[i] = i < nv - BPE_N_SPECIAL ? BPE_TOKEN_NORMAL : BPE_TOKEN_CONTROL;
    }
    tok->token_bytes = malloc(total);
    if (!tok->token_bytes) goto nomem;
    for (int32_t i = 0; i < nv; i++) {
        uint8_t *d = tok->token_bytes + tok->token_off[i];
        if (i < BPE_N_BYTES) d[0] = (uint8_t)i;
        else if (i < BPE_N_BYTES + n_merges) {
            const bpe_merge *m = &merges[i - BPE_N_BYTES];
            size_t ll = tok->token_off[m->left + 1] - tok->token_off[m->left];
            memcpy(d, tok->token_bytes + tok->token_off[m->left], ll);
            memcpy(d + ll, tok->token_bytes + tok->token_off[m->right],
                   tok->token_off[m->right + 1] - tok->token_off[m->right]);
        } else {
            const char *t = i == nv - 2 ? BPE_BOS_TEXT : BPE_EOS_TEXT;
            memcpy(d, t, strlen(t));
        }
    }
    for (int i = 0; i < BPE_N_BYTES; i++) tok->byte_token[i] = i;
    tok->bos_id = nv - 2;
    tok->eos_id = nv - 1;
    int bm = bpe_build_map(tok);
    MOE_ASSERT(bm >= 0); /* training never learns one pair twice */
    if (bm == 0) goto nomem;
    return MOE_OK;
nomem:
    bpe_free(tok);
    return moe_err(err, MOE_ERR_NOMEM, "bpe_train: out of memory building the vocabulary of %d tokens", (int)nv);
}

moe_status bpe_train(bpe_tokenizer *tok, const uint8_t *text, size_t n,
                     int vocab_size, moe_error *err) {
    return bpe_train_progress(tok, text, n, vocab_size, NULL, NULL, err);
}

moe_status bpe_train_progress(bpe_tokenizer *tok, const uint8_t *text, size_t n, int vocab_size,
                              moe_progress_fn fn, void *user, moe_error *err) {
    if (!tok) return moe_err(err, MOE_ERR_ARG, "bpe_train: tok is NULL");
    memset(tok, 0, sizeof *tok);
    if (!text && n > 0) return moe_err(err, MOE_ERR_ARG, "bpe_train: text is NULL with n = %zu", n);
    if (vocab_size < BPE_N_BYTES + BPE_N_SPECIAL || vocab_size > BPE_MAX_VOCAB)
        return moe_err(err, MOE_ERR_ARG, "bpe_train: vocab_size = %d, expected %d..%d (256 bytes + %d specials + merges)",
                       vocab_size, BPE_N_BYTES + BPE_N_SPECIAL, BPE_MAX_VOCAB, BPE_N_SPECIAL);
    int32_t want = vocab_size - BPE_N_BYTES - BPE_N_SPECIAL, nm = 0;
    bpe_merge *merges = malloc(((size_t)want + 1) * sizeof *merges);
    trainer T;
    memset(&T, 0, sizeof T);
    T.text = text;
    if (!merges) goto nomem;
    int r = count_words(&T, n, err);
    if (r < 0) { trainer_free(&T); free(merges); return MOE_ERR_UNSUPPORTED; }
    if (r == 0) goto nomem;
    for (size_t k = 0; k < T.nw; k++) { /* initial pair counts */
        const int32_t *s = T.sym + T.w[k].off;
        for (int32_t j = 0; j + 1 < T.w[k].len; j++)
            if (!pair_add(&T, s[j], s[j + 1], T.w[k].count, (int32_t)k)) goto nomem;
    }
    if (!push_changed(&T)) goto nomem;
    while (nm < want && T.nh > 0) {
        if ((nm & 63) == 0) {
            if (moe_cancel_requested()) { /* moe_cancel */
                trainer_free(&T);
                free(merges);
                return cancel_check(err, "tokenizer training");
            }
            if (fn) fn(user, "training the tokenizer", nm, want);
        }
        hent e = hent_heap_pop(T.heap, &T.nh);
        tpair *q = &T.p[e.idx];
        if (q->count != e.count || q->count <= 0) continue; /* stale entry */
        int32_t x = BPE_N_BYTES + nm;
        merges[nm].left = e.a;
        merges[nm].right = e.b;
        merges[nm].result = x;
        nm++;
        T.step = nm;
        if (!apply_merge(&T, e.idx, x) || !push_changed(&T)) goto nomem;
    }
    trainer_free(&T);
    if (fn) fn(user, "training the tokenizer", want, want);
    return build_trained(tok, merges, nm, err);
nomem:
    trainer_free(&T);
    free(merges);
    return moe_err(err, MOE_ERR_NOMEM, "bpe_train: out of memory (text of %zu bytes)", n);
}

/* ------------------------------------------------------------ encoding */

moe_status bpe_encode(const bpe_tokenizer *tok, const uint8_t *text, size_t n,
                      int32_t *out, size_t cap, size_t *n_out, moe_error *err) {
    if (n_out) *n_out = 0;
    if (!tok || !tok->pairs.key) return moe_err(err, MOE_ERR_ARG, "bpe_encode: tokenizer is NULL or empty");
    if (!text && n > 0) return moe_err(err, MOE_ERR_ARG, "bpe_encode: text is NULL with n = %zu", n);
    if (!out && cap > 0) return moe_err(err, MOE_ERR_ARG, "bpe_encode: out is NULL with cap = %zu", cap);
    if (!n_out) return moe_err(err, MOE_ERR_ARG, "bpe_encode: n_out is NULL");
    bpe_merger M;
    if (!bpe_merger_init(&M, n))
        return moe_err(err, MOE_ERR_NOMEM, "bpe_encode: out of memory (text of %zu bytes)", n);
    size_t total = 0;
    moe_status st = MOE_OK;
    for (size_t i = 0; i < n;) {
        size_t e = bpe_chunk_end(text, n, i), len = e - i;
        if (len > INT32_MAX) { st = moe_err(err, MOE_ERR_UNSUPPORTED, "bpe_encode: a chunk of %zu bytes at offset %zu (limit 2^31 - 1)", len, i); goto out; }
        const int32_t *ids;
        const int64_t k = bpe_merger_chunk(&M, &tok->pairs, tok->byte_token, text + i, len, &ids);
        if (k < 0) {
            st = moe_err(err, MOE_ERR_NOMEM, "bpe_encode: out of memory (text of %zu bytes)", n);
            goto out;
        }
        if (total < cap) {
            size_t m = cap - total < (size_t)k ? cap - total : (size_t)k;
            memcpy(out + total, ids, m * sizeof *ids);
        }
        total += (size_t)k;
        i = e;
    }
    *n_out = total;
    if (total > cap)
        st = moe_err(err, MOE_ERR_SHAPE, "bpe_encode: %zu ids do not fit in cap = %zu", total, cap);
out:
    bpe_merger_free(&M);
    return st;
}

/* ------------------------------------------------------------ decoding */

moe_status bpe_decode(const bpe_tokenizer *tok, const int32_t *ids, size_t n_ids,
                      int with_special, uint8_t *out, size_t cap, size_t *n_out,
                      moe_error *err) {
    if (n_out) *n_out = 0;
    if (!tok || !tok->token_off) return moe_err(err, MOE_ERR_ARG, "bpe_decode: tokenizer is NULL or empty");
    if (!ids && n_ids > 0) return moe_err(err, MOE_ERR_ARG, "bpe_decode: ids is NULL with n_ids = %zu", n_ids);
    if (!out && cap > 0) return moe_err(err, MOE_ERR_ARG, "bpe_decode: out is NULL with cap = %zu", cap);
    if (!n_out) return moe_err(err, MOE_ERR_ARG, "bpe_decode: n_out is NULL");
    size_t total = 0;
    for (size_t i = 0; i < n_ids; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= tok->n_vocab)
            return moe_err(err, MOE_ERR_ARG, "bpe_decode: ids[%zu] = %d, expected 0..%d", i, (int)id, (int)tok->n_vocab - 1);
        int t = tok->token_type[id];
        if (!with_special && t != BPE_TOKEN_NORMAL && t != BPE_TOKEN_BYTE) continue;
        size_t len = tok->token_off[id + 1] - tok->token_off[id];
        if (total < cap)
            memcpy(out + total, tok->token_bytes + tok->token_off[id], cap - total < len ? cap - total : len);
        total += len;
    }
    *n_out = total;
    if (total > cap)
        return moe_err(err, MOE_ERR_SHAPE, "bpe_decode: %zu bytes do not fit in cap = %zu", total, cap);
    return MOE_OK;
}
