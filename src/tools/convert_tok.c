/* convert_tok.c: the tokenizer of a Hugging Face folder as GGUF
 * tokenizer.ggml.* keys (see convert.h).
 *
 * tokenizer.json with a "BPE" model is read in one of two ways:
 *  - SentencePiece converted (byte_fallback, a Metaspace pre-tokenizer or a
 *    normalizer that turns spaces into U+2581): tokenizer.ggml.model
 *    "llama", the tokens as they are, <0xNN> tokens typed as bytes, scores
 *    -rank of the first merge that makes each token (so the engine's
 *    highest-score-first merging follows the merge list), add_space_prefix
 *    from the Metaspace / Prepend setting;
 *  - byte-level (a ByteLevel pre-tokenizer): "gpt2" with the merges and
 *    the .pre name of the pre-tokenizer, found from the regexes of its
 *    Split steps (gpt-2, llama-bpe / smaug-bpe, qwen2, deepseek-llm,
 *    deepseek-coder, deepseek-v3, refact = digits then GPT-2).
 * Added tokens: special ones are control tokens (type 3), others
 * user-defined (4). Ids without a token, and ids up to the embedding's
 * rows, become "[PAD<id>]" unused tokens (5). bos / eos / unk / pad from
 * tokenizer_config.json ("bos_token" ...), else config.json
 * ("bos_token_id" ...); add_bos / add_eos from tokenizer_config.json, else
 * the post-processor's template. The chat template from
 * tokenizer_config.json, else chat_template.jinja.
 * Not for: Unigram / WordPiece models or tokenizer.model files (a clear
 * MOE_ERR_UNSUPPORTED).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/idmap.h"
#include "tools/convert.h"
#include "text/pretok.h"
#include "text/vocab.h"

/* A token table: id -> text, text -> id (open addressing). */
typedef struct ttab {
    const char **text;   /* [n] NULL: no token yet */
    uint8_t *type;       /* [n] */
    float *score;        /* [n] */
    int32_t n;
    moe_idmap map;       /* text -> id */
    char *pad;           /* "[PAD<i>]" strings */
} ttab;

static void ttab_free(ttab *t) {
    free(t->text);
    free(t->type);
    free(t->score);
    moe_idmap_free(&t->map);
    free(t->pad);
}

/* The text of id for the map (moe_idmap_text_fn). */
static const void *ttab_text(const void *ctx, int32_t id, size_t *n) {
    const char *s = ((const ttab *)ctx)->text[id];
    *n = strlen(s);
    return s;
}

static int32_t ttab_find(const ttab *t, const char *s, size_t n) {
    return moe_idmap_find(&t->map, s, n, ttab_text, t);
}

/* Maps id under its text unless a lower id has that text (it keeps it). */
static void ttab_insert(ttab *t, int32_t id) {
    const char *s = t->text[id];
    size_t k = moe_idmap_slot(&t->map, s, strlen(s), ttab_text, t);
    if (t->map.slot[k] < 0) t->map.slot[k] = id;
}

/* A special token given as "text" or {"content": "text"} in
 * tokenizer_config.json. */
static const char *tok_content(const json_value *v) {
    if (!v) return NULL;
    if (v->type == JSON_STRING) return v->u.str.s;
    const char *s;
    return json_get_str(v, "content", &s) ? s : NULL;
}

/* ----------------------------------------------------------- pre-tokenizer */

#define RX_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"
#define RX_LLAMA3_A "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
#define RX_LLAMA3_B "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RX_LLAMA3 RX_LLAMA3_A "\\p{N}{1,3}" RX_LLAMA3_B
#define RX_QWEN2 RX_LLAMA3_A "\\p{N}" RX_LLAMA3_B

/* The .pre name of a byte-level tokenizer's pre-tokenizer, or NULL with
 * what was found in why. */
static const char *detect_pre(const json_value *pt, int ignore_merges, int *prefix_space,
                              char *why, size_t why_cap) {
    const json_value *steps = pt;
    size_t n = 1;
    if (pt && pt->type == JSON_OBJECT) {
        const char *ty = "";
        json_get_str(pt, "type", &ty);
        if (!strcmp(ty, "Sequence")) {
            const json_value *a = json_get(pt, "pretokenizers");
            if (!a || a->type != JSON_ARRAY) { snprintf(why, why_cap, "a Sequence without pretokenizers"); return NULL; }
            steps = a->u.arr.v;
            n = a->u.arr.n;
        }
    } else {
        snprintf(why, why_cap, "no pre_tokenizer");
        return NULL;
    }
    const char *rx[8];
    size_t n_rx = 0;
    int bytelevel = 0, bl_regex = 0, digits = 0, other = 0;
    size_t wl = 0;
    why[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        const json_value *s = &steps[i];
        const char *ty = "";
        json_get_str(s, "type", &ty);
        if (!strcmp(ty, "ByteLevel")) {
            bytelevel = 1;
            if (!json_get_bool(s, "use_regex", &bl_regex)) bl_regex = 1;
            int aps = 0;
            if (json_get_bool(s, "add_prefix_space", &aps) && aps) *prefix_space = 1;
        } else if (!strcmp(ty, "Split")) {
            const char *r = NULL, *beh = "Isolated";
            int inv = 0;
            json_get_str(json_get(s, "pattern"), "Regex", &r);
            json_get_str(s, "behavior", &beh);
            json_get_bool(s, "invert", &inv);
            if (!r || strcmp(beh, "Isolated") || inv || n_rx == 8) other = 1;
            else rx[n_rx++] = r;
        } else if (!strcmp(ty, "Digits")) {
            int ind = 0;
            json_get_bool(s, "individual_digits", &ind);
            if (ind) digits = 1;
            else other = 1;
        } else {
            other = 1;
        }
        if (wl + 40 < why_cap)
            wl += (size_t)snprintf(why + wl, why_cap - wl, "%s%s", i ? ", " : "", ty);
    }
    if (!bytelevel || other) return NULL;
    if (bl_regex) {
        if (n_rx == 0 && !digits) return "gpt-2";
        if (n_rx == 0 && digits) return "refact";
        return NULL;
    }
    if (digits) return NULL;
    if (n_rx == 1) {
        if (!strcmp(rx[0], RX_GPT2)) return "gpt-2";
        if (!strcmp(rx[0], RX_LLAMA3)) return ignore_merges ? "llama-bpe" : "smaug-bpe";
        if (!strcmp(rx[0], RX_QWEN2)) return "qwen2";
    }
    /* "[\r\n]" with the characters themselves or as regex escapes */
    const int crlf = n_rx > 0 && (!strcmp(rx[0], "[\r\n]") || !strcmp(rx[0], "[\\r\\n]"));
    if (n_rx == 6 && crlf && !strcmp(rx[3], "\\s+$") && !strcmp(rx[5], "\\p{N}+") &&
        !strncmp(rx[1], "\\s?[", 4))
        return "deepseek-llm";
    if (n_rx == 5 && crlf && !strcmp(rx[1], "\\s?\\p{L}+") && !strcmp(rx[2], "\\s?\\p{P}+") &&
        !strcmp(rx[4], "\\p{N}"))
        return "deepseek-coder";
    if (n_rx == 3 && !strcmp(rx[0], "\\p{N}{1,3}")) return "deepseek-v3";
    if (n_rx && wl + 60 < why_cap)
        snprintf(why + wl, why_cap - wl, "; first regex %.40s%s", rx[0],
                 strlen(rx[0]) > 40 ? "..." : "");
    return NULL;
}

/* 1 if the tokenizer is a SentencePiece conversion; *space gets its
 * add_space_prefix. */
static int is_spm(const json_value *tj, const json_value *model, int *space) {
    int bf = 0, spm = 0;
    *space = 0;
    json_get_bool(model, "byte_fallback", &bf);
    spm = bf;
    const json_value *pt = json_get(tj, "pre_tokenizer");
    const char *ty = "";
    if (json_get_str(pt, "type", &ty) && !strcmp(ty, "Metaspace")) {
        spm = 1;
        const char *scheme;
        int aps = 1;
        if (json_get_str(pt, "prepend_scheme", &scheme)) *space = strcmp(scheme, "never") != 0;
        else if (json_get_bool(pt, "add_prefix_space", &aps)) *space = aps;
        else *space = 1;
    }
    /* normalizer: Prepend("▁") and Replace(" " -> "▁"), alone or in a Sequence */
    const json_value *nm = json_get(tj, "normalizer");
    const json_value *items = nm;
    size_t n = nm ? 1 : 0;
    if (json_get_str(nm, "type", &ty) && !strcmp(ty, "Sequence")) {
        const json_value *a = json_get(nm, "normalizers");
        if (a && a->type == JSON_ARRAY) { items = a->u.arr.v; n = a->u.arr.n; }
    }
    for (size_t i = 0; i < n; i++) {
        const char *t2 = "", *s;
        json_get_str(&items[i], "type", &t2);
        if (!strcmp(t2, "Prepend") && json_get_str(&items[i], "prepend", &s) && !strcmp(s, "\xe2\x96\x81")) {
            spm = 1;
            *space = 1;
        }
        if (!strcmp(t2, "Replace") && json_get_str(&items[i], "content", &s) && !strcmp(s, "\xe2\x96\x81"))
            spm = 1;
    }
    return spm;
}

/* add_bos / add_eos from a TemplateProcessing post-processor (alone or in
 * a Sequence): 1/0 when it says, -1 when there is none. */
static void template_flags(const json_value *pp, int *bos, int *eos) {
    *bos = *eos = -1;
    const char *ty = "";
    if (!json_get_str(pp, "type", &ty)) return;
    if (!strcmp(ty, "Sequence")) {
        const json_value *a = json_get(pp, "processors");
        for (size_t i = 0; a && a->type == JSON_ARRAY && i < a->u.arr.n; i++) {
            template_flags(&a->u.arr.v[i], bos, eos);
            if (*bos >= 0) return;
        }
        return;
    }
    if (strcmp(ty, "TemplateProcessing")) return;
    const json_value *single = json_get(pp, "single");
    if (!single || single->type != JSON_ARRAY || single->u.arr.n == 0) return;
    *bos = json_get(&single->u.arr.v[0], "SpecialToken") != NULL;
    *eos = json_get(&single->u.arr.v[single->u.arr.n - 1], "SpecialToken") != NULL;
}

/* ------------------------------------------------------------- the keys */

typedef struct tk_ctx {
    const char *path;     /* tokenizer.json */
    moe_error *err;
} tk_ctx;

/* Fills t->text from the vocab and the added tokens. */
static moe_status read_tokens(const tk_ctx *c, ttab *t, const json_value *vocab,
                              const json_value *added, int64_t n_vocab) {
    int64_t max_id = -1, id;
    for (size_t i = 0; i < vocab->u.obj.n; i++) {
        if (!json_as_int(&vocab->u.obj.m[i].val, &id) || id < 0)
            return moe_err(c->err, MOE_ERR_FORMAT, "%s: model.vocab[\"%s\"] is not an id >= 0",
                           c->path, vocab->u.obj.m[i].key);
        if (id > max_id) max_id = id;
    }
    for (size_t i = 0; added && i < added->u.arr.n; i++) {
        if (!json_get_int(&added->u.arr.v[i], "id", &id) || id < 0)
            return moe_err(c->err, MOE_ERR_FORMAT, "%s: added_tokens[%zu] has no id >= 0", c->path, i);
        if (id > max_id) max_id = id;
    }
    if (max_id >= n_vocab)
        return moe_err(c->err, MOE_ERR_FORMAT, "%s: token id %lld, but the embedding has %lld rows",
                       c->path, (long long)max_id, (long long)n_vocab);
    t->n = (int32_t)n_vocab;
    t->text = calloc((size_t)n_vocab, sizeof *t->text);
    t->type = calloc((size_t)n_vocab, 1);
    t->score = calloc((size_t)n_vocab, sizeof *t->score);
    moe_idmap_init(&t->map, (size_t)n_vocab);
    t->pad = malloc((size_t)n_vocab * 20);
    if (!t->text || !t->type || !t->score || !t->map.slot || !t->pad)
        return moe_err(c->err, MOE_ERR_NOMEM, "%s: out of memory for %lld tokens", c->path,
                       (long long)n_vocab);
    for (size_t i = 0; i < vocab->u.obj.n; i++) {
        const json_member *m = &vocab->u.obj.m[i];
        json_as_int(&m->val, &id);
        if (t->text[id])
            return moe_err(c->err, MOE_ERR_FORMAT, "%s: id %lld is both \"%s\" and \"%s\"", c->path,
                           (long long)id, t->text[id], m->key);
        if (strlen(m->key) != m->key_n)
            return moe_err(c->err, MOE_ERR_UNSUPPORTED, "%s: token %lld contains a NUL character",
                           c->path, (long long)id);
        t->text[id] = m->key;
        t->type[id] = VOCAB_T_NORMAL;
    }
    for (size_t i = 0; added && i < added->u.arr.n; i++) {
        const json_value *a = &added->u.arr.v[i];
        const json_value *cv = json_get(a, "content");
        int special = 0;
        json_get_int(a, "id", &id);
        json_get_bool(a, "special", &special);
        if (!cv || cv->type != JSON_STRING)
            return moe_err(c->err, MOE_ERR_FORMAT, "%s: added_tokens[%zu] has no string content",
                           c->path, i);
        if (strlen(cv->u.str.s) != cv->u.str.n)
            return moe_err(c->err, MOE_ERR_UNSUPPORTED, "%s: added token %lld contains a NUL "
                           "character", c->path, (long long)id);
        if (t->text[id] && strcmp(t->text[id], cv->u.str.s))
            return moe_err(c->err, MOE_ERR_FORMAT, "%s: id %lld is both \"%s\" (vocab) and \"%s\" "
                           "(added_tokens)", c->path, (long long)id, t->text[id], cv->u.str.s);
        t->text[id] = cv->u.str.s;
        t->type[id] = special ? VOCAB_T_CONTROL : VOCAB_T_USER;
    }
    for (int32_t i = 0; i < t->n; i++) {
        if (!t->text[i]) {
            char *p = t->pad + (size_t)i * 20;
            snprintf(p, 20, "[PAD%d]", (int)i);
            t->text[i] = p;
            t->type[i] = VOCAB_T_UNUSED;
        }
        ttab_insert(t, i);
    }
    return MOE_OK;
}

/* "a b" or ["a", "b"]: the two parts (into buf) */
static int merge_parts(const json_value *m, char *buf, size_t cap, size_t *la, const char **b) {
    if (m->type == JSON_STRING) {
        const char *sp = strchr(m->u.str.s, ' ');
        if (!sp || m->u.str.n >= cap) return 0;
        memcpy(buf, m->u.str.s, m->u.str.n + 1);
        *la = (size_t)(sp - m->u.str.s);
        *b = buf + *la + 1;
        return 1;
    }
    if (m->type != JSON_ARRAY || m->u.arr.n != 2 || m->u.arr.v[0].type != JSON_STRING ||
        m->u.arr.v[1].type != JSON_STRING)
        return 0;
    size_t na = m->u.arr.v[0].u.str.n, nb = m->u.arr.v[1].u.str.n;
    if (na + nb + 2 > cap) return 0;
    memcpy(buf, m->u.arr.v[0].u.str.s, na);
    buf[na] = ' ';
    memcpy(buf + na + 1, m->u.arr.v[1].u.str.s, nb + 1);
    *la = na;
    *b = buf + na + 1;
    return 1;
}

static moe_status set_id(gguf_writer *w, const char *key, int32_t id, moe_error *err) {
    return id >= 0 ? gguf_writer_set_u32(w, key, (uint32_t)id, err) : MOE_OK;
}

/* A special token id: tokenizer_config.json's "<name>_token", else
 * config.json's "<name>_token_id" (the first of a list). */
static int32_t special_id(const ttab *t, const json_value *tc, const json_value *cfg,
                          const char *name) {
    char key[64];
    snprintf(key, sizeof key, "%s_token", name);
    const char *s = tok_content(json_get(tc, key));
    if (s) {
        int32_t id = ttab_find(t, s, strlen(s));
        if (id >= 0) return id;
    }
    snprintf(key, sizeof key, "%s_token_id", name);
    const json_value *v = json_get(cfg, key);
    if (v && v->type == JSON_ARRAY && v->u.arr.n > 0) v = &v->u.arr.v[0];
    int64_t id;
    if (json_as_int(v, &id) && id >= 0 && id < t->n) return (int32_t)id;
    return -1;
}

static moe_status read_file_text(const char *path, char **out, size_t *n) {
    *out = NULL;
    *n = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return MOE_ERR_IO;
    size_t cap = 1 << 14, len = 0;
    char *b = malloc(cap);
    while (b) {
        size_t got = fread(b + len, 1, cap - len - 1, f);
        len += got;
        if (got == 0) break;
        if (cap - len < 2) {
            char *nb = cap < ((size_t)1 << 26) ? realloc(b, cap * 2) : NULL;
            if (!nb) { free(b); b = NULL; break; }
            b = nb;
            cap *= 2;
        }
    }
    fclose(f);
    if (!b) return MOE_ERR_NOMEM;
    b[len] = '\0';
    *out = b;
    *n = len;
    return MOE_OK;
}

moe_status convert_tokenizer(gguf_writer *w, const char *dir, const json_value *config,
                             int64_t n_vocab, const char *pre_override, cv_notes *notes,
                             moe_error *err) {
    char path[4096], tcpath[4096];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    snprintf(tcpath, sizeof tcpath, "%s/tokenizer_config.json", dir);
    FILE *probe = fopen(path, "rb");
    if (!probe) {
        snprintf(tcpath, sizeof tcpath, "%s/tokenizer.model", dir);
        FILE *sp = fopen(tcpath, "rb");
        if (sp) fclose(sp);
        return moe_err(err, MOE_ERR_IO, "%s: not found%s", path,
                       sp ? " (tokenizer.model files are not supported: a tokenizer.json is "
                            "needed)" : "");
    }
    fclose(probe);
    json_doc *td = NULL, *tcd = NULL;
    ttab t;
    memset(&t, 0, sizeof t);
    tk_ctx c = {path, err};
    const char **merges = NULL;
    char *mbuf = NULL, *tmpl = NULL;
    moe_status st = json_parse_file(&td, path, NULL, err);
    if (st) return st;
    FILE *tcf = fopen(tcpath, "rb");
    if (tcf) {
        fclose(tcf);
        if ((st = json_parse_file(&tcd, tcpath, NULL, err))) goto done;
    }
    const json_value *tj = json_root(td), *tc = tcd ? json_root(tcd) : NULL;
    const json_value *model = json_get(tj, "model");
    const char *mtype = "";
    if (!json_get_str(model, "type", &mtype) || strcmp(mtype, "BPE")) {
        st = moe_err(err, MOE_ERR_UNSUPPORTED, "%s: model type \"%s\" is not supported (BPE: "
                     "byte-level or SentencePiece-converted)", path, mtype);
        goto done;
    }
    const json_value *vocab = json_get(model, "vocab");
    const json_value *mlist = json_get(model, "merges");
    const json_value *added = json_get(tj, "added_tokens");
    if (!vocab || vocab->type != JSON_OBJECT || vocab->u.obj.n == 0) {
        st = moe_err(err, MOE_ERR_FORMAT, "%s: model.vocab is missing or empty", path);
        goto done;
    }
    if (added && added->type != JSON_ARRAY) added = NULL;
    if (mlist && mlist->type != JSON_ARRAY) {
        st = moe_err(err, MOE_ERR_FORMAT, "%s: model.merges is not an array", path);
        goto done;
    }
    if ((st = read_tokens(&c, &t, vocab, added, n_vocab))) goto done;
    const size_t n_merges = mlist ? mlist->u.arr.n : 0;
    int space = 0;
    const int spm = is_spm(tj, model, &space);
    char mb[1024];
    if (spm) {
        /* scores: -rank of the first merge making the token; bytes and unk typed */
        for (int32_t i = 0; i < t.n; i++) t.score[i] = -(float)n_merges - (float)i;
        for (size_t r = 0; r < n_merges; r++) {
            size_t la;
            const char *b;
            if (!merge_parts(&mlist->u.arr.v[r], mb, sizeof mb, &la, &b)) continue;
            memmove(mb + la, b, strlen(b) + 1); /* "a b" -> "ab" */
            int32_t id = ttab_find(&t, mb, strlen(mb));
            if (id >= 0 && t.score[id] < -(float)r) t.score[id] = -(float)r;
        }
        for (int32_t i = 0; i < t.n; i++) {
            const char *s = t.text[i];
            if (t.type[i] == VOCAB_T_NORMAL && strlen(s) == 6 && !strncmp(s, "<0x", 3) && s[5] == '>')
                t.type[i] = VOCAB_T_BYTE;
        }
        const char *unk;
        if (json_get_str(model, "unk_token", &unk)) {
            int32_t id = ttab_find(&t, unk, strlen(unk));
            if (id >= 0) t.type[id] = VOCAB_T_UNKNOWN;
        }
        st = gguf_writer_set_str(w, "tokenizer.ggml.model", "llama", err);
        if (!st) st = gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", t.text, (uint64_t)t.n, err);
        if (!st) st = gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_VT_F32, t.score, (uint64_t)t.n, err);
        if (!st) st = gguf_writer_set_bool(w, "tokenizer.ggml.add_space_prefix", space, err);
    } else {
        int ign = 0, prefix = 0;
        char why[200];
        json_get_bool(model, "ignore_merges", &ign);
        const char *pre = detect_pre(json_get(tj, "pre_tokenizer"), ign, &prefix, why, sizeof why);
        if (pre_override) {
            pre = pre_override;
        } else if (!pre) {
            st = moe_err(err, MOE_ERR_UNSUPPORTED, "%s: pre_tokenizer (%s) is not one this "
                         "converter recognises (gpt-2, llama-bpe, qwen2, deepseek-llm, "
                         "deepseek-coder, deepseek-v3, refact patterns)",
                         path, why);
            goto done;
        }
        pretok_kind pk;
        int fl;
        if (!pretok_lookup(pre, &pk, &fl)) {
            st = moe_err(err, MOE_ERR_UNSUPPORTED, "tokenizer.ggml.pre \"%s\" is not a name the "
                         "engine knows", pre);
            goto done;
        }
        if (prefix) cv_note(notes, "the ByteLevel add_prefix_space setting is not kept");
        const char *nty;
        if (json_get_str(json_get(tj, "normalizer"), "type", &nty))
            cv_note(notes, "the %s normalizer of tokenizer.json is not applied", nty);
        merges = malloc((n_merges + 1) * sizeof *merges);
        if (!merges) { st = moe_err(err, MOE_ERR_NOMEM, "%s: out of memory", path); goto done; }
        size_t total = 0;
        for (size_t r = 0; r < n_merges; r++) { /* pass 1: check and measure */
            size_t la;
            const char *b;
            if (!merge_parts(&mlist->u.arr.v[r], mb, sizeof mb, &la, &b)) {
                st = moe_err(err, MOE_ERR_FORMAT, "%s: model.merges[%zu] is not \"a b\" or [\"a\", "
                             "\"b\"] (at most 1022 bytes)", path, r);
                goto done;
            }
            total += strlen(mb) + 1;
        }
        mbuf = malloc(total + 1);
        if (!mbuf) { st = moe_err(err, MOE_ERR_NOMEM, "%s: out of memory", path); goto done; }
        size_t off = 0;
        for (size_t r = 0; r < n_merges; r++) { /* pass 2: copy */
            size_t la;
            const char *b;
            merge_parts(&mlist->u.arr.v[r], mb, sizeof mb, &la, &b);
            size_t l = strlen(mb);
            merges[r] = memcpy(mbuf + off, mb, l + 1);
            off += l + 1;
        }
        st = gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2", err);
        if (!st) st = gguf_writer_set_str(w, "tokenizer.ggml.pre", pre, err);
        if (!st) st = gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", t.text, (uint64_t)t.n, err);
        if (!st) st = gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", merges, n_merges, err);
    }
    int32_t *types = malloc((size_t)t.n * sizeof *types);
    if (!types && !st) st = moe_err(err, MOE_ERR_NOMEM, "%s: out of memory", path);
    for (int32_t i = 0; types && i < t.n; i++) types[i] = t.type[i];
    if (!st) st = gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_VT_I32, types, (uint64_t)t.n, err);
    free(types);
    if (!st) st = set_id(w, "tokenizer.ggml.bos_token_id", special_id(&t, tc, config, "bos"), err);
    if (!st) st = set_id(w, "tokenizer.ggml.eos_token_id", special_id(&t, tc, config, "eos"), err);
    if (!st) st = set_id(w, "tokenizer.ggml.unknown_token_id", special_id(&t, tc, config, "unk"), err);
    if (!st) st = set_id(w, "tokenizer.ggml.padding_token_id", special_id(&t, tc, config, "pad"), err);
    int bos = -1, eos = -1, v;
    template_flags(json_get(tj, "post_processor"), &bos, &eos);
    if (json_get_bool(tc, "add_bos_token", &v)) bos = v;
    if (json_get_bool(tc, "add_eos_token", &v)) eos = v;
    if (!st && bos >= 0) st = gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", bos, err);
    if (!st && eos >= 0) st = gguf_writer_set_bool(w, "tokenizer.ggml.add_eos_token", eos, err);
    /* the chat template */
    const json_value *ct = json_get(tc, "chat_template");
    const char *tx = NULL;
    size_t tn = 0;
    if (ct && ct->type == JSON_STRING) {
        tx = ct->u.str.s;
        tn = ct->u.str.n;
    } else if (ct && ct->type == JSON_ARRAY) { /* [{"name": ..., "template": ...}] */
        for (size_t i = 0; i < ct->u.arr.n; i++) {
            const char *nm;
            const json_value *tv = json_get(&ct->u.arr.v[i], "template");
            if (json_get_str(&ct->u.arr.v[i], "name", &nm) && !strcmp(nm, "default") && tv &&
                tv->type == JSON_STRING) {
                tx = tv->u.str.s;
                tn = tv->u.str.n;
            }
        }
    } else {
        snprintf(tcpath, sizeof tcpath, "%s/chat_template.jinja", dir);
        if (read_file_text(tcpath, &tmpl, &tn) == MOE_OK) tx = tmpl;
    }
    if (!st && tx) st = gguf_writer_set_strn(w, "tokenizer.chat_template", tx, tn, err);
done:
    free(tmpl);
    free(merges);
    free(mbuf);
    ttab_free(&t);
    json_free(td);
    json_free(tcd);
    return st;
}
