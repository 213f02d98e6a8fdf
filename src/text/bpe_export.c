/* bpe_export.c: the byte-level BPE vocabulary in the GGUF convention
 * (tokenizer.ggml.model = "gpt2"): GPT-2's byte-to-unicode map, export of a
 * tokenizer to token / type / merge strings, and import back with every
 * entry checked (see bpe.h for the rules).
 * Not for: reading or writing GGUF files (the callers move the arrays in and
 * out of gguf_ctx / gguf_writer), training or encoding (bpe.c), or the
 * inference-side vocabulary (src/text/bpe_gguf.c). */
#include "text/bpe.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/idmap.h"
#include "text/bpe_internal.h"

/* Bytes that GPT-2 spells as themselves: '!'..'~', 0xA1..0xAC, 0xAE..0xFF.
 * The other 68 bytes, in order, become U+0100 + their rank. */
uint32_t bpe_byte_to_codepoint(uint8_t b) {
    if (b <= 32) return 256u + b;
    if (b <= 126) return b;
    if (b <= 160) return 256u + 33 + (b - 127u);
    if (b == 173) return 256u + 33 + 34;
    return b;
}

int bpe_codepoint_to_byte(uint32_t cp) {
    if ((cp >= 33 && cp <= 126) || (cp >= 161 && cp <= 172) || (cp >= 174 && cp <= 255)) return (int)cp;
    if (cp >= 256 && cp < 256 + 33) return (int)(cp - 256);
    if (cp >= 256 + 33 && cp < 256 + 67) return (int)(cp - 256 - 33 + 127);
    if (cp == 256 + 67) return 173;
    return -1;
}

size_t bpe_spell(char *d, const uint8_t *p, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t cp = bpe_byte_to_codepoint(p[i]);
        if (cp < 0x80) d[k++] = (char)cp;
        else {
            d[k++] = (char)(0xC0 | (cp >> 6));
            d[k++] = (char)(0x80 | (cp & 0x3F));
        }
    }
    return k;
}

/* Reads a spelling s[0, n) back into bytes d (at most n); returns the count or
 * -1 if s holds a character outside the map (or invalid UTF-8). */
static int64_t unspell(uint8_t *d, const char *s, size_t n) {
    const uint8_t *u = (const uint8_t *)s;
    int64_t k = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        if (u[i] < 0x80) cp = u[i++];
        else if ((u[i] & 0xE0) == 0xC0 && i + 1 < n && (u[i + 1] & 0xC0) == 0x80) {
            cp = ((uint32_t)(u[i] & 0x1F) << 6) | (u[i + 1] & 0x3F);
            if (cp < 0x80) return -1; /* overlong */
            i += 2;
        } else return -1;
        int b = bpe_codepoint_to_byte(cp);
        if (b < 0) return -1;
        d[k++] = (uint8_t)b;
    }
    return k;
}

static int is_bytes_type(int32_t t) { return t == BPE_TOKEN_NORMAL || t == BPE_TOKEN_BYTE; }

void bpe_gguf_vocab_free(bpe_gguf_vocab *v) {
    if (!v) return;
    free(v->tokens); free(v->token_type); free(v->merges); free(v->pool_);
    memset(v, 0, sizeof *v);
}

moe_status bpe_export_gguf(const bpe_tokenizer *tok, bpe_gguf_vocab *v, moe_error *err) {
    if (!v) return moe_err(err, MOE_ERR_ARG, "bpe_export_gguf: v is NULL");
    memset(v, 0, sizeof *v);
    if (!tok || !tok->token_off) return moe_err(err, MOE_ERR_ARG, "bpe_export_gguf: tokenizer is NULL or empty");
    size_t nv = (size_t)tok->n_vocab, nm = (size_t)tok->n_merges, size = 0;
    for (size_t i = 0; i < nv; i++) size += 2 * (tok->token_off[i + 1] - tok->token_off[i]) + 1;
    for (size_t r = 0; r < nm; r++) {
        const bpe_merge *m = &tok->merges[r];
        size += 2 * (tok->token_off[m->left + 1] - tok->token_off[m->left] +
                     tok->token_off[m->right + 1] - tok->token_off[m->right]) + 2;
    }
    v->tokens = malloc((nv ? nv : 1) * sizeof *v->tokens);
    v->token_type = malloc((nv ? nv : 1) * sizeof *v->token_type);
    v->merges = malloc((nm ? nm : 1) * sizeof *v->merges);
    v->pool_ = malloc(size ? size : 1);
    if (!v->tokens || !v->token_type || !v->merges || !v->pool_) {
        bpe_gguf_vocab_free(v);
        return moe_err(err, MOE_ERR_NOMEM, "bpe_export_gguf: out of memory (%zu bytes of strings)", size);
    }
    char *d = v->pool_;
    for (size_t i = 0; i < nv; i++) {
        size_t len = tok->token_off[i + 1] - tok->token_off[i];
        const uint8_t *p = tok->token_bytes + tok->token_off[i];
        v->tokens[i] = d;
        v->token_type[i] = tok->token_type[i];
        if (is_bytes_type(tok->token_type[i])) d += bpe_spell(d, p, len);
        else { memcpy(d, p, len); d += len; }
        *d++ = '\0';
    }
    for (size_t r = 0; r < nm; r++) {
        const bpe_merge *m = &tok->merges[r];
        v->merges[r] = d;
        d += bpe_spell(d, tok->token_bytes + tok->token_off[m->left], tok->token_off[m->left + 1] - tok->token_off[m->left]);
        *d++ = ' ';
        d += bpe_spell(d, tok->token_bytes + tok->token_off[m->right], tok->token_off[m->right + 1] - tok->token_off[m->right]);
        *d++ = '\0';
    }
    v->n_tokens = nv;
    v->n_merges = nm;
    v->bos_id = tok->bos_id;
    v->eos_id = tok->eos_id;
    return MOE_OK;
}

/* Token lookup by bytes, for import (core/idmap.h): byte tokens match only
 * byte tokens and the others only the others. */
typedef struct import_key {
    const bpe_tokenizer *tok;
    int want_bytes_type;
} import_key;

static const void *import_text(const void *ctx, int32_t id, size_t *n) {
    const import_key *k = ctx;
    if (is_bytes_type(k->tok->token_type[id]) != k->want_bytes_type) return NULL;
    *n = k->tok->token_off[id + 1] - k->tok->token_off[id];
    return k->tok->token_bytes + k->tok->token_off[id];
}

/* The id of a token with bytes p[0, n) of the wanted kind, or -1; *slot_out
 * (when not NULL): where it is, or where it would go. */
static int32_t strmap_find(const moe_idmap *M, const bpe_tokenizer *tok, const uint8_t *p, size_t n,
                           int want_bytes_type, size_t *slot_out) {
    const import_key k = {tok, want_bytes_type};
    size_t s = moe_idmap_slot(M, p, n, import_text, &k);
    if (slot_out) *slot_out = s;
    return M->slot[s];
}

moe_status bpe_import_gguf(bpe_tokenizer *tok,
                           const char *const *tokens, const size_t *token_len,
                           const int32_t *token_type, size_t n_tokens,
                           const char *const *merges, const size_t *merge_len,
                           size_t n_merges, int32_t bos_id, int32_t eos_id,
                           moe_error *err) {
    if (!tok) return moe_err(err, MOE_ERR_ARG, "bpe_import_gguf: tok is NULL");
    memset(tok, 0, sizeof *tok);
    if (!tokens || n_tokens == 0 || (!merges && n_merges > 0))
        return moe_err(err, MOE_ERR_ARG, "bpe_import_gguf: tokens NULL or empty, or merges NULL with n_merges = %zu", n_merges);
    if (n_tokens > BPE_MAX_VOCAB || n_merges > BPE_MAX_VOCAB)
        return moe_err(err, MOE_ERR_FORMAT, "bpe_import_gguf: %zu tokens and %zu merges, expected at most %d each",
                       n_tokens, n_merges, BPE_MAX_VOCAB);
    if (bos_id < -1 || bos_id >= (int64_t)n_tokens || eos_id < -1 || eos_id >= (int64_t)n_tokens)
        return moe_err(err, MOE_ERR_FORMAT, "bpe_import_gguf: bos_id = %d, eos_id = %d, expected -1 or 0..%zu",
                       (int)bos_id, (int)eos_id, n_tokens - 1);
    moe_status st = MOE_OK;
    moe_idmap M = {NULL, 0};
    uint8_t *tmp = NULL;
    size_t total = 0, maxlen = 0;
    tok->n_vocab = (int32_t)n_tokens;
    tok->bos_id = bos_id;
    tok->eos_id = eos_id;
    tok->token_type = malloc(n_tokens * sizeof *tok->token_type);
    tok->token_off = malloc((n_tokens + 1) * sizeof *tok->token_off);
    if (!tok->token_type || !tok->token_off) goto nomem;
    for (size_t i = 0; i < n_tokens; i++) {
        if (!tokens[i]) { st = moe_err(err, MOE_ERR_FORMAT, "tokenizer.ggml.tokens[%zu] is NULL", i); goto fail; }
        size_t len = token_len ? token_len[i] : strlen(tokens[i]);
        int32_t t = token_type ? token_type[i] : BPE_TOKEN_NORMAL;
        if (t < 1 || t > 6) { st = moe_err(err, MOE_ERR_FORMAT, "tokenizer.ggml.token_type[%zu] = %d, expected 1..6", i, (int)t); goto fail; }
        tok->token_type[i] = t;
        total += len;
        if (len > maxlen) maxlen = len;
    }
    tok->token_bytes = malloc(total ? total : 1);
    tmp = malloc(maxlen * 2 + 2);
    moe_idmap_init(&M, n_tokens);
    if (!tok->token_bytes || !tmp || !M.slot) goto nomem;
    for (int i = 0; i < 256; i++) tok->byte_token[i] = -1;
    total = 0;
    for (size_t i = 0; i < n_tokens; i++) {
        size_t len = token_len ? token_len[i] : strlen(tokens[i]);
        int bt = is_bytes_type(tok->token_type[i]);
        uint8_t *d = tok->token_bytes + total;
        if (len == 0 || memchr(tokens[i], '\0', len)) {
            st = moe_err(err, MOE_ERR_FORMAT, "tokenizer.ggml.tokens[%zu] is empty or holds a NUL byte", i);
            goto fail;
        }
        if (bt) {
            int64_t k = unspell(d, tokens[i], len);
            if (k < 0) {
                st = moe_err(err, MOE_ERR_FORMAT, "tokenizer.ggml.tokens[%zu] = \"%.*s\": a character outside GPT-2's byte-to-unicode map",
                             i, (int)(len < 64 ? len : 64), tokens[i]);
                goto fail;
            }
            len = (size_t)k;
        } else memcpy(d, tokens[i], len);
        tok->token_off[i] = total;
        tok->token_off[i + 1] = total + len;
        size_t s;
        /* duplicates: the same bytes among byte tokens, the same text among the others */
        int32_t prev = strmap_find(&M, tok, d, len, bt, &s);
        if (prev >= 0) {
            st = moe_err(err, MOE_ERR_FORMAT, "tokenizer.ggml.tokens[%zu] repeats tokens[%d] (\"%.*s\")",
                         i, (int)prev, (int)(token_len ? (token_len[i] < 64 ? token_len[i] : 64) : 64), tokens[i]);
            goto fail;
        }
        M.slot[s] = (int32_t)i;
        if (bt && len == 1) tok->byte_token[d[0]] = (int32_t)i;
        total += len;
    }
    /* The map compares byte tokens by bytes and the others by text. A text
     * token has the string of a byte token exactly when it unspells to that
     * token's bytes. */
    for (size_t i = 0; i < n_tokens; i++) {
        if (is_bytes_type(tok->token_type[i])) continue;
        size_t len = tok->token_off[i + 1] - tok->token_off[i];
        int64_t k = unspell(tmp, (const char *)tok->token_bytes + tok->token_off[i], len);
        if (k < 0) continue;
        int32_t prev = strmap_find(&M, tok, tmp, (size_t)k, 1, NULL);
        if (prev >= 0) {
            st = moe_err(err, MOE_ERR_FORMAT, "tokenizer.ggml.tokens[%zu] repeats tokens[%d] (\"%.*s\")",
                         i, (int)prev, (int)(len < 64 ? len : 64), (const char *)tok->token_bytes + tok->token_off[i]);
            goto fail;
        }
    }
    for (int b = 0; b < 256; b++)
        if (tok->byte_token[b] < 0) {
            st = moe_err(err, MOE_ERR_FORMAT, "tokenizer.ggml.tokens: no normal token for byte 0x%02X (spelled U+%04X)",
                         b, (unsigned)bpe_byte_to_codepoint((uint8_t)b));
            goto fail;
        }
    tok->merges = malloc((n_merges ? n_merges : 1) * sizeof *tok->merges);
    if (!tok->merges) goto nomem;
    for (size_t r = 0; r < n_merges; r++) {
        const char *m = merges[r];
        size_t len = m ? (merge_len ? merge_len[r] : strlen(m)) : 0;
        const char *sp = m ? memchr(m, ' ', len) : NULL;
        if (!sp || sp == m || sp == m + len - 1 || memchr(sp + 1, ' ', len - (size_t)(sp + 1 - m))) {
            st = moe_err(err, MOE_ERR_FORMAT, "tokenizer.ggml.merges[%zu] = \"%.*s\": expected \"left right\" with one space",
                         r, (int)(len < 64 ? len : 64), m ? m : "");
            goto fail;
        }
        int32_t id[2];
        size_t blen[2];
        const char *part[2] = { m, sp + 1 };
        size_t plen[2] = { (size_t)(sp - m), len - (size_t)(sp + 1 - m) };
        for (int h = 0; h < 2; h++) {
            int64_t k = plen[h] <= maxlen ? unspell(tmp, part[h], plen[h]) : -1;
            id[h] = k < 0 ? -1 : strmap_find(&M, tok, tmp, (size_t)k, 1, NULL);
            if (id[h] < 0) {
                st = moe_err(err, MOE_ERR_FORMAT, "tokenizer.ggml.merges[%zu] = \"%.*s\": \"%.*s\" is not a normal token",
                             r, (int)(len < 64 ? len : 64), m, (int)(plen[h] < 64 ? plen[h] : 64), part[h]);
                goto fail;
            }
            blen[h] = (size_t)k;
        }
        memcpy(tmp, tok->token_bytes + tok->token_off[id[0]], blen[0]);
        memcpy(tmp + blen[0], tok->token_bytes + tok->token_off[id[1]], blen[1]);
        int32_t res = blen[0] + blen[1] <= maxlen ? strmap_find(&M, tok, tmp, blen[0] + blen[1], 1, NULL) : -1;
        if (res < 0) {
            st = moe_err(err, MOE_ERR_FORMAT, "tokenizer.ggml.merges[%zu] = \"%.*s\": the merged token is not in tokenizer.ggml.tokens",
                         r, (int)(len < 64 ? len : 64), m);
            goto fail;
        }
        tok->merges[r].left = id[0];
        tok->merges[r].right = id[1];
        tok->merges[r].result = res;
    }
    tok->n_merges = (int32_t)n_merges;
    int b = bpe_build_map(tok);
    if (b == 0) goto nomem;
    if (b < 0) {
        size_t r = (size_t)(-1 - b), len = merge_len ? merge_len[r] : strlen(merges[r]);
        st = moe_err(err, MOE_ERR_FORMAT, "tokenizer.ggml.merges[%zu] = \"%.*s\" repeats an earlier merge",
                     r, (int)(len < 64 ? len : 64), merges[r]);
        goto fail;
    }
    goto out;
nomem:
    st = moe_err(err, MOE_ERR_NOMEM, "bpe_import_gguf: out of memory (%zu tokens, %zu merges)", n_tokens, n_merges);
fail:
    bpe_free(tok);
out:
    moe_idmap_free(&M);
    free(tmp);
    return st;
}
