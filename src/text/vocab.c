/* vocab.c: tokenizers read from GGUF metadata: loading (vocab_from_gguf,
 * moe_vocab_load), the token text map, special-token splitting, encoding
 * (dispatching each piece of text to spm.c or bpe_gguf.c), pieces and
 * decoding. See vocab.h for the rules.
 * Not for: the merge algorithms themselves (spm.c, bpe_gguf.c), the
 * pre-tokenizer patterns (pretok.c).
 */
#include "text/vocab.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/hash.h"
#include "text/bpe.h"

/* The text of id for the map (moe_idmap_text_fn). */
static const void *map_text(const void *ctx, int32_t id, size_t *n) {
    return vocab_text((const moe_vocab *)ctx, id, n);
}

int32_t vocab_find(const moe_vocab *v, const char *s, size_t n) {
    return moe_idmap_find(&v->map, s, n, map_text, v);
}

/* Inserts id under its text; a later token with the same text replaces the
 * earlier one (as llama.cpp's map does). Empty texts are not mapped. */
static void map_insert(moe_vocab *v, int32_t id) {
    size_t n;
    const char *s = vocab_text(v, id, &n);
    if (n > 0) v->map.slot[moe_idmap_slot(&v->map, s, n, map_text, v)] = id;
}

/* ------------------------------------------------------------- loading */

void moe_vocab_free(moe_vocab *v) {
    if (!v) return;
    free(v->type); free(v->score); free(v->eog);
    free(v->text); free(v->text_off); free(v->piece); free(v->piece_off);
    moe_idmap_free(&v->map); free(v->special);
    bpe_pairs_free(&v->pairs);
    free(v);
}

/* Reads an optional token id key into *id (kept when the key is absent). */
static moe_status read_id(const gguf_ctx *g, const char *key, int32_t n, int32_t *id, moe_error *err) {
    if (!gguf_find_kv(g, key)) return MOE_OK;
    uint32_t u;
    moe_status st = gguf_get_u32(g, key, &u, err);
    if (st) return st;
    if (u >= (uint32_t)n)
        return moe_err(err, MOE_ERR_FORMAT, "%s: %s = %u, expected 0..%d", gguf_name(g), key, u, (int)n - 1);
    *id = (int32_t)u;
    return MOE_OK;
}

static moe_status read_flag(const gguf_ctx *g, const char *key, int *flag, moe_error *err) {
    if (!gguf_find_kv(g, key)) return MOE_OK;
    return gguf_get_bool(g, key, flag, err);
}

static int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* Writes the piece of token id at d (room for its text: a piece is never
 * longer); returns its length. */
static size_t make_piece(const moe_vocab *v, int32_t id, char *d) {
    size_t n;
    const char *s = vocab_text(v, id, &n);
    int t = v->type[id];
    if (v->kind == VOCAB_SPM && t == VOCAB_T_BYTE && n == 6 && !memcmp(s, "<0x", 3) && s[5] == '>') {
        int hi = hex_digit(s[3]), lo = hex_digit(s[4]);
        if (hi >= 0 && lo >= 0) { d[0] = (char)(hi * 16 + lo); return 1; }
    }
    if (t != VOCAB_T_NORMAL && t != VOCAB_T_BYTE) { memcpy(d, s, n); return n; }
    size_t k = 0;
    if (v->kind == VOCAB_SPM) {
        for (size_t i = 0; i < n;) {
            if (i + 3 <= n && !memcmp(s + i, "\xE2\x96\x81", 3)) { d[k++] = ' '; i += 3; }
            else d[k++] = s[i++];
        }
        return k;
    }
    for (size_t i = 0; i < n;) { /* undo GPT-2's byte map; other characters stay as they are */
        uint32_t cp;
        size_t len = uni_decode((const uint8_t *)s + i, n - i, &cp);
        int b = bpe_codepoint_to_byte(cp);
        if (b >= 0) d[k++] = (char)b;
        else { memcpy(d + k, s + i, len); k += len; }
        i += len;
    }
    return k;
}

static int is_eog_name(const char *s, size_t n) {
    static const char *const names[] = {
        "<|im_end|>", "<|eot_id|>", "<|endoftext|>", "</s>", "<|end_of_text|>",
        "<\xEF\xBD\x9C" "end\xE2\x96\x81" "of\xE2\x96\x81" "sentence\xEF\xBD\x9C>", /* <｜end▁of▁sentence｜> */
        "<|end|>", "<end_of_turn>", "<|eom_id|>", "<EOT>", "<|EOT|>"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strlen(names[i]) == n && !memcmp(names[i], s, n)) return 1;
    return 0;
}

/* qsort order of special tokens: longer text first, then lower id. */
typedef struct spec_key { size_t len; int32_t id; } spec_key;
static int spec_cmp(const void *a, const void *b) {
    const spec_key *x = a, *y = b;
    if (x->len != y->len) return x->len > y->len ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

/* Fills v->special (user-defined and control tokens with text, longest
 * first) and the EOG flags of tokens named like an end of turn; 0 when out of
 * memory. */
static int index_specials(moe_vocab *v, size_t n_special) {
    spec_key *keys = malloc((n_special ? n_special : 1) * sizeof *keys);
    v->special = malloc((n_special ? n_special : 1) * sizeof *v->special);
    if (!keys || !v->special) { free(keys); return 0; }
    size_t ns = 0;
    for (int32_t i = 0; i < v->n_tokens; i++) {
        size_t len;
        const char *s = vocab_text(v, i, &len);
        if ((v->type[i] != VOCAB_T_CONTROL && v->type[i] != VOCAB_T_USER) || len == 0) continue;
        keys[ns].len = len;
        keys[ns++].id = i;
        if (is_eog_name(s, len)) v->eog[i] = 1;
    }
    qsort(keys, ns, sizeof *keys, spec_cmp);
    for (size_t i = 0; i < ns; i++) v->special[i] = keys[i].id;
    v->n_special = ns;
    free(keys);
    return 1;
}

moe_status vocab_from_gguf(moe_vocab **out, const gguf_ctx *g, moe_error *err) {
    if (!out) return moe_err(err, MOE_ERR_ARG, "vocab_from_gguf: out is NULL");
    *out = NULL;
    if (!g) return moe_err(err, MOE_ERR_ARG, "vocab_from_gguf: g is NULL");
    const char *file = gguf_name(g), *model, *pre = NULL;
    if (!gguf_find_kv(g, "tokenizer.ggml.model"))
        return moe_err(err, MOE_ERR_FORMAT, "%s: no tokenizer (key tokenizer.ggml.model not found)", file);
    moe_status st = gguf_get_str(g, "tokenizer.ggml.model", &model, NULL, err);
    if (st) return st;
    vocab_kind kind;
    if (!strcmp(model, "llama")) kind = VOCAB_SPM;
    else if (!strcmp(model, "gpt2")) kind = VOCAB_BPE;
    else return moe_err(err, MOE_ERR_UNSUPPORTED, "%s: tokenizer.ggml.model = \"%s\", supported: \"llama\", \"gpt2\"", file, model);
    pretok_kind pk = PRETOK_DEFAULT;
    int llama3 = 0;
    if (kind == VOCAB_BPE) {
        /* moe.tokenizer.pre (files moe writes) names moe's own rules, which
           the tokenizer.ggml.pre written for other tools approximates */
        const char *pkey = gguf_find_kv(g, "moe.tokenizer.pre") ? "moe.tokenizer.pre" : "tokenizer.ggml.pre";
        if (gguf_find_kv(g, pkey) && (st = gguf_get_str(g, pkey, &pre, NULL, err)))
            return st;
        if (!pretok_lookup(pre, &pk, &llama3))
            return moe_err(err, MOE_ERR_UNSUPPORTED, "%s: tokenizer.ggml.pre = \"%s\" is a pre-tokenizer this build does not know", file, pre);
    }
    uint64_t n64;
    const gguf_str *tok;
    if ((st = gguf_get_arr_of(g, "tokenizer.ggml.tokens", GGUF_VT_STR, &n64, (const void **)&tok, err))) return st;
    if (n64 == 0 || n64 > (1u << 30))
        return moe_err(err, MOE_ERR_FORMAT, "%s: tokenizer.ggml.tokens has %llu entries, expected 1..2^30", file, (unsigned long long)n64);
    int32_t n = (int32_t)n64;
    const float *scores = NULL;
    if (gguf_find_kv(g, "tokenizer.ggml.scores")) {
        uint64_t ns;
        if ((st = gguf_get_arr_of(g, "tokenizer.ggml.scores", GGUF_VT_F32, &ns, (const void **)&scores, err))) return st;
        if (ns != n64)
            return moe_err(err, MOE_ERR_FORMAT, "%s: tokenizer.ggml.scores has %llu entries, tokens %d", file, (unsigned long long)ns, (int)n);
    }
    gguf_vtype tt = GGUF_VT_I32;
    const void *types = NULL;
    if (gguf_find_kv(g, "tokenizer.ggml.token_type")) {
        uint64_t nt;
        if ((st = gguf_get_arr(g, "tokenizer.ggml.token_type", &tt, &nt, &types, err))) return st;
        if (nt != n64 || (tt != GGUF_VT_I32 && tt != GGUF_VT_U32 && tt != GGUF_VT_I8 && tt != GGUF_VT_U8))
            return moe_err(err, MOE_ERR_FORMAT, "%s: tokenizer.ggml.token_type has %llu entries of type %s, expected %d of i32",
                           file, (unsigned long long)nt, gguf_vtype_name(tt), (int)n);
    }
    const gguf_str *merges = NULL;
    uint64_t n_merges = 0;
    if (kind == VOCAB_BPE) {
        if (!gguf_find_kv(g, "tokenizer.ggml.merges"))
            return moe_err(err, MOE_ERR_FORMAT, "%s: a \"gpt2\" tokenizer without tokenizer.ggml.merges", file);
        if ((st = gguf_get_arr_of(g, "tokenizer.ggml.merges", GGUF_VT_STR, &n_merges, (const void **)&merges, err))) return st;
    }

    moe_vocab *v = calloc(1, sizeof *v);
    if (!v) return moe_err(err, MOE_ERR_NOMEM, "%s: out of memory for the vocabulary", file);
    v->kind = kind;
    v->pre = pk;
    v->n_tokens = n;
    v->bos = v->eos = v->eot = v->eom = v->unk = -1;
    if (kind == VOCAB_SPM) { /* llama.cpp's defaults for SentencePiece files */
        if (n > 1) v->bos = 1;
        if (n > 2) v->eos = 2;
        v->unk = 0;
        v->add_bos = 1;
        v->add_space_prefix = 1;
    } else {
        v->add_bos = llama3;
        v->ignore_merges = llama3;
    }
    if ((st = read_id(g, "tokenizer.ggml.bos_token_id", n, &v->bos, err)) ||
        (st = read_id(g, "tokenizer.ggml.eos_token_id", n, &v->eos, err)) ||
        (st = read_id(g, "tokenizer.ggml.eot_token_id", n, &v->eot, err)) ||
        (st = read_id(g, "tokenizer.ggml.eom_token_id", n, &v->eom, err)) ||
        (st = read_id(g, "tokenizer.ggml.unknown_token_id", n, &v->unk, err)) ||
        (st = read_flag(g, "tokenizer.ggml.add_bos_token", &v->add_bos, err)) ||
        (st = read_flag(g, "tokenizer.ggml.add_space_prefix", &v->add_space_prefix, err)))
        goto fail;
    if (kind == VOCAB_BPE) v->add_space_prefix = 0;

    size_t total = 0, un = (size_t)n;
    for (size_t i = 0; i < un; i++) total += tok[i].n + 1;
    v->type = malloc(un);
    v->score = calloc(un, sizeof *v->score);
    v->eog = calloc(un, 1);
    v->text = malloc(total);
    v->text_off = malloc((un + 1) * sizeof *v->text_off);
    v->piece = malloc(total);
    v->piece_off = malloc((un + 1) * sizeof *v->piece_off);
    moe_idmap_init(&v->map, un);
    if (!v->type || !v->score || !v->eog || !v->text || !v->text_off || !v->piece || !v->piece_off || !v->map.slot)
        goto nomem;
    size_t off = 0, n_special = 0;
    for (size_t i = 0; i < un; i++) {
        int64_t t = VOCAB_T_NORMAL;
        if (types) {
            if (tt == GGUF_VT_I32) t = ((const int32_t *)types)[i];
            else if (tt == GGUF_VT_U32) t = ((const uint32_t *)types)[i];
            else if (tt == GGUF_VT_I8) t = ((const int8_t *)types)[i];
            else t = ((const uint8_t *)types)[i];
        }
        if (t < 1 || t > 6) {
            st = moe_err(err, MOE_ERR_FORMAT, "%s: tokenizer.ggml.token_type[%zu] = %lld, expected 1..6", file, i, (long long)t);
            goto fail;
        }
        v->type[i] = (uint8_t)t;
        if (scores) v->score[i] = scores[i];
        v->text_off[i] = off;
        memcpy(v->text + off, tok[i].s, tok[i].n);
        off += tok[i].n;
        v->text[off++] = '\0';
        if ((t == VOCAB_T_CONTROL || t == VOCAB_T_USER) && tok[i].n > 0) n_special++;
    }
    v->text_off[un] = off;
    for (size_t i = 0; i < un; i++) map_insert(v, (int32_t)i);

    size_t poff = 0; /* pieces */
    for (size_t i = 0; i < un; i++) {
        v->piece_off[i] = poff;
        poff += make_piece(v, (int32_t)i, v->piece + poff);
        v->piece[poff++] = '\0';
    }
    v->piece_off[un] = poff;

    if (!index_specials(v, n_special)) goto nomem;
    if (v->eos >= 0) v->eog[v->eos] = 1;
    if (v->eot >= 0) v->eog[v->eot] = 1;
    if (v->eom >= 0) v->eog[v->eom] = 1;

    if (kind == VOCAB_SPM) {
        for (int b = 0; b < 256; b++) {
            char name[8];
            static const char hx[] = "0123456789ABCDEF";
            memcpy(name, "<0x", 3);
            name[3] = hx[b >> 4];
            name[4] = hx[b & 15];
            name[5] = '>';
            v->byte_tok[b] = vocab_find(v, name, 6);
        }
    } else if ((st = bpe_gguf_init(v, merges, (size_t)n_merges, err))) {
        goto fail;
    }
    *out = v;
    return MOE_OK;
nomem:
    st = moe_err(err, MOE_ERR_NOMEM, "%s: out of memory for a vocabulary of %d tokens", file, (int)n);
fail:
    moe_vocab_free(v);
    return st;
}

moe_status moe_vocab_load(moe_vocab **out, const char *gguf_path, moe_error *err) {
    if (!out) return moe_err(err, MOE_ERR_ARG, "moe_vocab_load: out is NULL");
    *out = NULL;
    if (!gguf_path) return moe_err(err, MOE_ERR_ARG, "moe_vocab_load: path is NULL");
    gguf_ctx *g;
    moe_status st = gguf_open_file(&g, gguf_path, err);
    if (st) return st;
    st = vocab_from_gguf(out, g, err);
    gguf_close(g);
    return st;
}

/* ------------------------------------------------------------ getters */

int moe_vocab_size(const moe_vocab *v) { return v ? v->n_tokens : 0; }
int moe_vocab_bos(const moe_vocab *v) { return v ? v->bos : -1; }
int moe_vocab_eos(const moe_vocab *v) { return v ? v->eos : -1; }
int moe_vocab_is_eog(const moe_vocab *v, int id) {
    return v && id >= 0 && id < v->n_tokens && v->eog[id];
}

static int hidden(const moe_vocab *v, int32_t id) {
    int t = v->type[id];
    return t == VOCAB_T_CONTROL || t == VOCAB_T_UNKNOWN || t == VOCAB_T_UNUSED;
}

/* With buf (cap > 0) the piece is copied there, cut to cap - 1 bytes and
 * NUL-terminated, and buf is returned; without, a pointer into v (valid until
 * moe_vocab_free, NUL-terminated) is. *len is always the piece's full length;
 * an id out of range gives "" and 0. */
const char *moe_vocab_piece(const moe_vocab *v, int id, int with_special,
                            char *buf, size_t cap, size_t *len) {
    const char *p = "";
    size_t n = 0;
    if (v && id >= 0 && id < v->n_tokens && (with_special || !hidden(v, id))) {
        p = v->piece + v->piece_off[id];
        n = v->piece_off[id + 1] - v->piece_off[id] - 1;
    }
    if (len) *len = n;
    if (buf && cap > 0) {
        size_t m = n < cap - 1 ? n : cap - 1;
        memcpy(buf, p, m);
        buf[m] = '\0';
        return buf;
    }
    return p;
}

moe_status vocab_decode(const moe_vocab *v, const int32_t *ids, size_t n, int with_special,
                        char *out, size_t cap, size_t *len, moe_error *err) {
    size_t total = 0;
    if (len) *len = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= v->n_tokens)
            return moe_err(err, MOE_ERR_ARG, "vocab_decode: ids[%zu] = %d, expected 0..%d", i, (int)ids[i], (int)v->n_tokens - 1);
        size_t k;
        const char *p = moe_vocab_piece(v, ids[i], with_special, NULL, 0, &k);
        if (i == 0 && v->kind == VOCAB_SPM && v->add_space_prefix && k > 0 && p[0] == ' ') { p++; k--; }
        if (total < cap) memcpy(out + total, p, cap - total < k ? cap - total : k);
        total += k;
    }
    if (len) *len = total;
    if (cap > 0) out[total < cap ? total : cap - 1] = '\0';
    if (total >= cap)
        return moe_err(err, MOE_ERR_SHAPE, "vocab_decode: %zu bytes and a NUL do not fit in cap = %zu", total, cap);
    return MOE_OK;
}

/* ------------------------------------------------------------ encoding */

/* A special token found in the text. */
typedef struct spec_hit { size_t pos; int32_t id; } spec_hit;

static int hit_cmp(const void *a, const void *b) {
    const spec_hit *x = a, *y = b;
    return (x->pos > y->pos) - (x->pos < y->pos);
}

/* Finds the special tokens in text[0, n): hits sorted by position. taken[n]
 * is scratch. Returns the number of hits, or -1 when out of memory. */
static int64_t find_specials(const moe_vocab *v, const char *text, size_t n, int parse_special,
                             uint8_t *taken, spec_hit **hits_out) {
    spec_hit *hits = NULL;
    size_t nh = 0, ch = 0;
    memset(taken, 0, n);
    for (size_t s = 0; s < v->n_special; s++) {
        int32_t id = v->special[s];
        if (v->type[id] == VOCAB_T_CONTROL && !parse_special) continue;
        size_t L;
        const char *t = vocab_text(v, id, &L);
        if (L > n) continue;
        for (size_t p = 0; p + L <= n;) {
            const char *q = memchr(text + p, t[0], n - L + 1 - p);
            if (!q) break;
            size_t at = (size_t)(q - text);
            if (memcmp(q, t, L) || memchr(taken + at, 1, L)) { p = at + 1; continue; }
            if (nh == ch) {
                size_t c = ch ? 2 * ch : 16;
                spec_hit *h = realloc(hits, c * sizeof *h);
                if (!h) { free(hits); return -1; }
                hits = h;
                ch = c;
            }
            hits[nh].pos = at;
            hits[nh++].id = id;
            memset(taken + at, 1, L);
            p = at + L;
        }
    }
    if (nh > 1) qsort(hits, nh, sizeof *hits, hit_cmp);
    *hits_out = hits;
    return (int64_t)nh;
}

moe_status moe_vocab_encode(const moe_vocab *v, const char *text, size_t n,
                            int add_bos, int parse_special, int32_t *out,
                            size_t cap, size_t *n_out, moe_error *err) {
    if (n_out) *n_out = 0;
    if (!v) return moe_err(err, MOE_ERR_ARG, "moe_vocab_encode: vocab is NULL");
    if (!text && n > 0) return moe_err(err, MOE_ERR_ARG, "moe_vocab_encode: text is NULL with n = %zu", n);
    if (!out && cap > 0) return moe_err(err, MOE_ERR_ARG, "moe_vocab_encode: out is NULL with cap = %zu", cap);
    if (!n_out) return moe_err(err, MOE_ERR_ARG, "moe_vocab_encode: n_out is NULL");
    if (out && moe_overlap(out, cap * sizeof *out, text, n))
        return moe_err(err, MOE_ERR_ARG, "moe_vocab_encode: out overlaps text");
    vocab_out o = { out, cap, 0 };
    if (add_bos && v->add_bos && v->bos >= 0) vocab_push(&o, v->bos);
    moe_status st = MOE_OK;
    spec_hit *hits = NULL;
    int64_t nh = 0;
    if (n > 0 && v->n_special > 0) {
        uint8_t *taken = malloc(n);
        if (!taken) return moe_err(err, MOE_ERR_NOMEM, "moe_vocab_encode: out of memory (text of %zu bytes)", n);
        nh = find_specials(v, text, n, parse_special, taken, &hits);
        free(taken);
        if (nh < 0) return moe_err(err, MOE_ERR_NOMEM, "moe_vocab_encode: out of memory (text of %zu bytes)", n);
    }
    int prev_special = 1; /* SPM: the space prefix goes on the first piece and after specials */
    size_t p = 0;
    for (int64_t h = 0; h <= nh && !st; h++) {
        size_t end = h < nh ? hits[h].pos : n;
        if (end > p) {
            if (v->kind == VOCAB_SPM)
                st = spm_encode(v, text + p, end - p, v->add_space_prefix && prev_special, &o, err);
            else
                st = bpe_gguf_encode(v, text + p, end - p, &o, err);
            prev_special = 0;
        }
        if (h < nh) {
            vocab_push(&o, hits[h].id);
            size_t L;
            vocab_text(v, hits[h].id, &L);
            p = end + L;
            prev_special = 1;
        }
    }
    free(hits);
    if (st) return st;
    *n_out = o.n;
    if (o.n > cap)
        return moe_err(err, MOE_ERR_SHAPE, "moe_vocab_encode: %zu ids do not fit in cap = %zu", o.n, cap);
    return MOE_OK;
}
