/* bpe_gguf.c: byte-level BPE ("gpt2" GGUF vocabularies): the merge table
 * from tokenizer.ggml.merges, and encoding: pre-tokenize (pretok.c), then in
 * each chunk start from one token per byte (the token that spells the byte in
 * GPT-2's byte-to-unicode map) and apply the merge of lowest rank, leftmost
 * first, until none applies; as llama.cpp and Hugging Face's BPE do. With
 * ignore_merges (llama3) a chunk whose spelling is a token is that token.
 * Not for: special tokens (vocab.c), SentencePiece vocabularies (spm.c),
 * training (bpe.c), the merge loop itself (bpe_merge.c, shared with the
 * training tokenizer's encoder).
 */
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/heap.h"
#include "text/vocab.h"
#include "text/bpe.h"

moe_status bpe_gguf_init(moe_vocab *v, const gguf_str *merges, size_t n_merges, moe_error *err) {
    for (int b = 0; b < 256; b++) {
        char d[2];
        uint8_t byte = (uint8_t)b;
        v->byte_tok[b] = vocab_find(v, d, bpe_spell(d, &byte, 1));
    }
    size_t maxlen = 0;
    for (size_t r = 0; r < n_merges; r++) if (merges[r].n > maxlen) maxlen = merges[r].n;
    char *tmp = malloc(maxlen + 1);
    if (!tmp || !bpe_pairs_init(&v->pairs, n_merges)) {
        free(tmp);
        return moe_err(err, MOE_ERR_NOMEM, "bpe_gguf_init: out of memory for %zu merges", n_merges);
    }
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
        bpe_pairs_add(&v->pairs, a, b, (int32_t)r, res); /* a repeated pair keeps its first rank */
    }
    free(tmp);
    return MOE_OK;
}

/* ---------------------------------------------------------- encoding */

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
    bpe_merger M;
    const int have_m = bpe_merger_init(&M, n);
    char *spelled = v->ignore_merges ? malloc(2 * maxc) : NULL;
    if (!have_m || (v->ignore_merges && !spelled)) goto nomem;
    for (size_t c = 0, s = 0; c < nc; s = ends[c++]) {
        size_t L = ends[c] - s;
        if (v->ignore_merges) {
            int32_t id = vocab_find(v, spelled, bpe_spell(spelled, t + s, L));
            if (id >= 0) { vocab_push(o, id); continue; }
        }
        const int32_t *ids;
        const int64_t k = bpe_merger_chunk(&M, &v->pairs, v->byte_tok, t + s, L, &ids);
        if (k < 0) goto nomem;
        for (int64_t i = 0; i < k; i++) {
            const int32_t id = ids[i] >= 0 ? ids[i] : v->unk; /* a byte without a token */
            if (id >= 0) vocab_push(o, id);
        }
    }
    goto out;
nomem:
    st = moe_err(err, MOE_ERR_NOMEM, "bpe_gguf_encode: out of memory (text of %zu bytes)", n);
out:
    if (have_m) bpe_merger_free(&M);
    free(ends); free(spelled);
    return st;
}
