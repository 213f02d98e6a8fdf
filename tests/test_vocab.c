/* test_vocab.c: tokenizers read from GGUF metadata, the pre-tokenizers and
 * the chat templates (src/text/vocab.c, spm.c, bpe_gguf.c, pretok.c,
 * chat.c).
 *
 * Every vocabulary is written as a GGUF file with the GGUF writer and read
 * back with moe_vocab_load. Checked: pre-tokenizer chunks of every pattern
 * against lists derived by hand from the regexes (accents, CJK, digit runs,
 * contractions, whitespace runs, newlines, invalid UTF-8) and chunk coverage
 * on random bytes; SentencePiece encodings that follow the scores (two
 * vocabularies that differ in one score), byte fallback, the space prefix,
 * special and user-defined tokens, BOS; byte-level BPE by merge rank,
 * ignore_merges, ids equal to train/bpe.c's bpe_encode for .pre "gpt2";
 * decode(encode(x)) == x on random bytes and random multilingual UTF-8;
 * pieces, EOG, the errors of malformed files; chat rendering and template
 * detection.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "text/pretok.h"
#include "text/vocab.h"
#include "io/gguf.h"
#include "moe_infer.h"
#include "testutil.h"
#include "text/bpe.h"

static char tmpdir[256];

/* ------------------------------------------------------------- helpers */

/* A vocabulary under construction. */
typedef struct vspec {
    const char *model, *pre, *arch, *chat_template; /* NULL: key omitted */
    char *tok[1200];
    float score[1200];
    int32_t type[1200];
    size_t n;
    const char *merges[64];
    size_t n_merges;
    int with_scores, with_types, with_merges;
    int bos, eos, eot, unk;     /* -1: omitted */
    int add_bos, add_space_prefix; /* -1: omitted */
} vspec;

static void vs_init(vspec *s, const char *model) {
    memset(s, 0, sizeof *s);
    s->model = model;
    s->with_scores = s->with_types = 1;
    s->with_merges = !strcmp(model, "gpt2");
    s->bos = s->eos = s->eot = s->unk = -1;
    s->add_bos = s->add_space_prefix = -1;
}
static int vs_add(vspec *s, const char *text, float score, int type) {
    s->tok[s->n] = strdup(text);
    s->score[s->n] = score;
    s->type[s->n] = type;
    return (int)s->n++;
}
static void vs_free(vspec *s) { for (size_t i = 0; i < s->n; i++) free(s->tok[i]); }

/* GPT-2's spelling of byte b (NUL-terminated). */
static void spell_byte(uint8_t b, char *d) {
    uint32_t cp = bpe_byte_to_codepoint(b);
    if (cp < 0x80) { d[0] = (char)cp; d[1] = 0; }
    else { d[0] = (char)(0xC0 | (cp >> 6)); d[1] = (char)(0x80 | (cp & 0x3F)); d[2] = 0; }
}

static moe_status vs_write(const vspec *s, const char *path, moe_error *err) {
    gguf_writer *w;
    moe_status st = gguf_writer_create(&w, err);
    if (st) return st;
    if (!st && s->arch) st = gguf_writer_set_str(w, "general.architecture", s->arch, err);
    if (!st && s->model) st = gguf_writer_set_str(w, "tokenizer.ggml.model", s->model, err);
    if (!st && s->pre) st = gguf_writer_set_str(w, "tokenizer.ggml.pre", s->pre, err);
    if (!st && s->n) st = gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)s->tok, s->n, err);
    if (!st && s->n && s->with_scores) st = gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_VT_F32, s->score, s->n, err);
    if (!st && s->n && s->with_types) st = gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_VT_I32, s->type, s->n, err);
    if (!st && s->with_merges) st = gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", s->merges, s->n_merges, err);
    if (!st && s->bos >= 0) st = gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)s->bos, err);
    if (!st && s->eos >= 0) st = gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)s->eos, err);
    if (!st && s->eot >= 0) st = gguf_writer_set_u32(w, "tokenizer.ggml.eot_token_id", (uint32_t)s->eot, err);
    if (!st && s->unk >= 0) st = gguf_writer_set_u32(w, "tokenizer.ggml.unknown_token_id", (uint32_t)s->unk, err);
    if (!st && s->add_bos >= 0) st = gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", s->add_bos, err);
    if (!st && s->add_space_prefix >= 0) st = gguf_writer_set_bool(w, "tokenizer.ggml.add_space_prefix", s->add_space_prefix, err);
    if (!st && s->chat_template) st = gguf_writer_set_str(w, "tokenizer.chat_template", s->chat_template, err);
    if (!st) st = gguf_writer_write(w, path, err);
    gguf_writer_free(w);
    return st;
}

/* Writes s to a temporary file and loads it; *st gets the status. */
static moe_vocab *vs_load(const vspec *s, moe_status *st, moe_error *err) {
    char path[300];
    snprintf(path, sizeof path, "%s/v.gguf", tmpdir);
    moe_vocab *v = NULL;
    *st = vs_write(s, path, err);
    if (!*st) *st = moe_vocab_load(&v, path, err);
    return v;
}

static size_t enc(const moe_vocab *v, const char *s, size_t n, int bos, int special, int32_t *ids, size_t cap) {
    moe_error err = { "" };
    size_t k = 0;
    if (moe_vocab_encode(v, s, n, bos, special, ids, cap, &k, &err) != MOE_OK) {
        printf("  (encode: %s)\n", err.msg);
        return (size_t)-1;
    }
    return k;
}

/* Compares encode(text) with the tokens named in want (NULL-terminated). */
static int expect_tokens(const char *name, const moe_vocab *v, const char *text, int bos, int special,
                         const char *const *want) {
    int32_t ids[256], wid[64];
    size_t nw = 0;
    for (; want[nw]; nw++) {
        wid[nw] = vocab_find(v, want[nw], strlen(want[nw]));
        if (wid[nw] < 0) { tu_fail(name, "expected token \"%s\" is not in the vocabulary", want[nw]); return 0; }
    }
    size_t k = enc(v, text, strlen(text), bos, special, ids, 256);
    int ok = k == nw;
    for (size_t i = 0; ok && i < k; i++) ok = ids[i] == wid[i];
    if (!ok) {
        printf("FAIL %s: \"%s\" gave", name, text);
        for (size_t i = 0; i < k && k != (size_t)-1; i++) printf(" %d(%s)", (int)ids[i], vocab_text(v, ids[i], NULL));
        printf(" ; expected");
        for (size_t i = 0; i < nw; i++) printf(" %d(%s)", (int)wid[i], want[i]);
        printf("\n");
        tu_failed_ = 1;
    }
    return ok;
}

/* Random multilingual UTF-8 (letters with accents, Greek, Cyrillic, CJK,
 * kana, Hangul, digits, punctuation, marks, emoji, spaces, tabs, newlines). */
static size_t rand_utf8(tu_rng *r, char *d, size_t max_chars) {
    static const uint32_t R[][2] = {
        {'a', 'z'}, {'A', 'Z'}, {'0', '9'}, {' ', ' '}, {' ', ' '}, {'!', '/'}, {':', '@'},
        {'\n', '\n'}, {'\t', '\t'}, {0xC0, 0xFF}, {0x391, 0x3C9}, {0x410, 0x44F}, {0x4E00, 0x4FFF},
        {0x3041, 0x30FF}, {0xAC00, 0xAC80}, {0x300, 0x36F}, {0x1F600, 0x1F64F}, {0x2018, 0x201F},
        {0x3000, 0x3002}, {0x660, 0x669}, {'\'', '\''}, {'\r', '\r'}};
    size_t k = 0, n = tu_next(r) % max_chars;
    for (size_t i = 0; i < n; i++) {
        const uint32_t *g = R[tu_next(r) % (sizeof R / sizeof R[0])];
        uint32_t c = g[0] + (uint32_t)(tu_next(r) % (g[1] - g[0] + 1));
        if (c < 0x80) d[k++] = (char)c;
        else if (c < 0x800) { d[k++] = (char)(0xC0 | (c >> 6)); d[k++] = (char)(0x80 | (c & 63)); }
        else if (c < 0x10000) {
            d[k++] = (char)(0xE0 | (c >> 12)); d[k++] = (char)(0x80 | ((c >> 6) & 63)); d[k++] = (char)(0x80 | (c & 63));
        } else {
            d[k++] = (char)(0xF0 | (c >> 18)); d[k++] = (char)(0x80 | ((c >> 12) & 63));
            d[k++] = (char)(0x80 | ((c >> 6) & 63)); d[k++] = (char)(0x80 | (c & 63));
        }
    }
    return k;
}

/* decode(encode(x)) == x on random byte strings and random UTF-8. */
static void check_round_trip(const char *name, const moe_vocab *v, uint64_t seed) {
    tu_rng r = { seed };
    char text[2048], back[4096];
    int32_t ids[2048];
    moe_error err = { "" };
    for (int t = 0; t < 300; t++) {
        size_t n;
        if (t % 2) n = rand_utf8(&r, text, 400);
        else {
            n = tu_next(&r) % 300;
            for (size_t i = 0; i < n; i++) text[i] = (char)(tu_next(&r) & 255);
        }
        size_t k = enc(v, text, n, 0, 0, ids, 2048), m = 0;
        if (k == (size_t)-1 || vocab_decode(v, ids, k, 0, back, sizeof back, &m, &err) != MOE_OK) {
            tu_fail(name, "case %d: %s", t, err.msg);
            return;
        }
        if (m != n || memcmp(back, text, n)) {
            size_t i = 0;
            while (i < m && i < n && back[i] == text[i]) i++;
            tu_fail(name, "case %d (%s, %zu bytes): decoded %zu bytes, first difference at byte %zu", t,
                    t % 2 ? "utf-8" : "random bytes", n, m, i);
            return;
        }
    }
    tu_ok(name);
}

/* --------------------------------------------------------- pre-tokenizer */

static void expect_split(const char *name, pretok_kind kind, const char *text, const char *const *want) {
    size_t n = strlen(text), ends[512], nc = 0, nw = 0;
    moe_error err = { "" };
    if (pretok_split(kind, (const uint8_t *)text, n, ends, &nc, &err) != MOE_OK) { tu_fail(name, "%s", err.msg); return; }
    while (want[nw]) nw++;
    int ok = nc == nw;
    for (size_t c = 0, s = 0; ok && c < nc; s = ends[c++])
        ok = strlen(want[c]) == ends[c] - s && !memcmp(want[c], text + s, ends[c] - s);
    if (!ok) {
        printf("FAIL %s: [%s] \"%s\" gave", name, pretok_kind_name(kind), text);
        for (size_t c = 0, s = 0; c < nc; s = ends[c++]) printf(" [%.*s]", (int)(ends[c] - s), text + s);
        printf(" ; expected");
        for (size_t c = 0; c < nw; c++) printf(" [%s]", want[c]);
        printf("\n");
        tu_failed_ = 1;
    }
}

#define W(...) ((const char *const[]){__VA_ARGS__, NULL})

static void test_pretok(void) {
    int f0 = tu_failed_;
    /* GPT-2: case-sensitive contractions, " ?" only before a non-space, unbounded digit runs */
    expect_split("pretok/gpt2", PRETOK_GPT2, "I'm here's it'S", W("I", "'m", " here", "'s", " it", "'", "S"));
    expect_split("pretok/gpt2", PRETOK_GPT2, "x123456 y 3.14", W("x", "123456", " y", " 3", ".", "14"));
    expect_split("pretok/gpt2", PRETOK_GPT2, "caf\xC3\xA9 \xC3\xBC" "ber \xE4\xB8\xAD\xE6\x96\x87",
                 W("caf\xC3\xA9", " \xC3\xBC" "ber", " \xE4\xB8\xAD\xE6\x96\x87"));
    expect_split("pretok/gpt2", PRETOK_GPT2, "a\n\nb  c   ", W("a", "\n", "\n", "b", " ", " c", "   "));
    expect_split("pretok/gpt2", PRETOK_GPT2, "a \tb hi!!! ok", W("a", " ", "\t", "b", " hi", "!!!", " ok"));
    expect_split("pretok/gpt2", PRETOK_GPT2, "a\xFF" "b\xC3", W("a", "\xFF", "b", "\xC3"));
    /* llama3: case-insensitive contractions, digits in groups of 1-3, a non-letter glued to letters */
    expect_split("pretok/llama3", PRETOK_LLAMA3, "I'M HERE'S you'Re", W("I", "'M", " HERE", "'S", " you", "'Re"));
    expect_split("pretok/llama3", PRETOK_LLAMA3, "x1234567 42", W("x", "123", "456", "7", " ", "42"));
    expect_split("pretok/llama3", PRETOK_LLAMA3, "a\n\nb a \n b", W("a", "\n\n", "b", " a", " \n", " b"));
    expect_split("pretok/llama3", PRETOK_LLAMA3, "hello!!\n\nworld (ok) a.b", W("hello", "!!\n\n", "world", " (", "ok", ")", " a", ".b"));
    expect_split("pretok/llama3", PRETOK_LLAMA3, "\tfoo  x end  ", W("\tfoo", " ", " x", " end", "  "));
    expect_split("pretok/llama3", PRETOK_LLAMA3, "\xC3\xA9t\xC3\xA9 \xE4\xB8\xAD\xE6\x96\x87!",
                 W("\xC3\xA9t\xC3\xA9", " \xE4\xB8\xAD\xE6\x96\x87", "!"));
    /* qwen2: single digits */
    expect_split("pretok/qwen2", PRETOK_QWEN2, "x123 y 45", W("x", "1", "2", "3", " y", " ", "4", "5"));
    expect_split("pretok/qwen2", PRETOK_QWEN2, "don't\n  go", W("don", "'t", "\n", " ", " go"));
    /* DeepSeek-LLM: newlines alone, cased letters, ASCII/fullwidth punctuation, trailing spaces, CJK, numbers */
    expect_split("pretok/deepseek-llm", PRETOK_DEEPSEEK_LLM, "Hello, world!\n123 \xE4\xB8\xAD\xE6\x96\x87 ok",
                 W("Hello", ",", " world", "!", "\n", "123", " ", "\xE4\xB8\xAD\xE6\x96\x87", " ok"));
    expect_split("pretok/deepseek-llm", PRETOK_DEEPSEEK_LLM, "\xE4\xB8\xAD ", W("\xE4\xB8\xAD", " "));
    /* Armenian capitals are in llama.cpp's list, small letters are not */
    expect_split("pretok/deepseek-llm", PRETOK_DEEPSEEK_LLM, "\xD4\xB1\xD5\xA1 \xCE\xA9mega",
                 W("\xD4\xB1", "\xD5\xA1", " \xCE\xA9", "mega")); /* "mega" is ASCII punctuation's range */
    /* DeepSeek-Coder */
    expect_split("pretok/deepseek-coder", PRETOK_DEEPSEEK_CODER, "def foo(x):\n  return x+1",
                 W("def", " foo", "(", "x", "):", "\n", " ", " return", " x", "+", "1"));
    /* DeepSeek-V3 */
    expect_split("pretok/deepseek-v3", PRETOK_DEEPSEEK3,
                 "abc 12345 \xE4\xB8\xAD\xE6\x96\x87\xE3\x81\x8B\xE3\x81\xAA,hello",
                 W("abc", " ", "123", "45", " ", "\xE4\xB8\xAD\xE6\x96\x87\xE3\x81\x8B\xE3\x81\xAA", ",hello"));
    /* StarCoder / refact, default */
    expect_split("pretok/starcoder", PRETOK_STARCODER, "x = 12;", W("x", " =", " ", "1", "2", ";"));
    expect_split("pretok/default", PRETOK_DEFAULT, "Hello, world 12345", W("Hello", ",", " world", " ", "123", "45"));
    /* moe's trainer ("gpt2"): bpe_chunk_end */
    expect_split("pretok/moe-gpt2", PRETOK_MOE_GPT2, "x123456 y", W("x", "123", "456", " y"));
    if (tu_failed_ == f0) tu_ok("pretok/patterns");

    /* coverage: chunks are non-empty, in order, cover the text, and never cut a valid UTF-8 character */
    tu_rng r = { 7 };
    char text[1024];
    size_t ends[1024];
    for (int kind = 0; kind < PRETOK_COUNT; kind++) {
        int ok = 1;
        for (int t = 0; t < 200 && ok; t++) {
            size_t n = t % 2 ? rand_utf8(&r, text, 200) : tu_next(&r) % 200, nc;
            if (t % 2 == 0) for (size_t i = 0; i < n; i++) text[i] = (char)(tu_next(&r) & 255);
            moe_error err = { "" };
            if (pretok_split((pretok_kind)kind, (const uint8_t *)text, n, ends, &nc, &err)) { ok = 0; break; }
            size_t s = 0;
            for (size_t c = 0; c < nc && ok; s = ends[c++]) {
                ok = ends[c] > s && ends[c] <= n;
                if (t % 2 && ends[c] < n) ok = ok && ((uint8_t)text[ends[c]] & 0xC0) != 0x80;
            }
            ok = ok && s == n;
        }
        char name[64];
        snprintf(name, sizeof name, "pretok/cover/%s", pretok_kind_name((pretok_kind)kind));
        if (ok) tu_ok(name);
        else tu_fail(name, "chunks do not cover the text exactly");
    }
    pretok_kind k;
    int l3;
    int ok = pretok_lookup("llama-bpe", &k, &l3) && k == PRETOK_LLAMA3 && l3 &&
             pretok_lookup("dbrx", &k, &l3) && k == PRETOK_LLAMA3 && !l3 &&
             pretok_lookup("qwen2", &k, &l3) && k == PRETOK_QWEN2 &&
             pretok_lookup("olmo", &k, &l3) && k == PRETOK_GPT2 &&
             pretok_lookup("refact", &k, &l3) && k == PRETOK_STARCODER &&
             pretok_lookup(NULL, &k, &l3) && k == PRETOK_DEFAULT && !pretok_lookup("tekken", &k, &l3);
    if (ok) tu_ok("pretok/names");
    else tu_fail("pretok/names", "a .pre name maps to the wrong pattern");
}

/* ------------------------------------------------------- SentencePiece */

/* <unk> <s> </s>, 256 byte tokens, then pieces for "Hello world"; the score
 * of "Hell" is a parameter. */
static void spm_vocab(vspec *s, float hell_score) {
    vs_init(s, "llama");
    vs_add(s, "<unk>", 0, VOCAB_T_UNKNOWN);
    vs_add(s, "<s>", 0, VOCAB_T_CONTROL);
    vs_add(s, "</s>", 0, VOCAB_T_CONTROL);
    for (int b = 0; b < 256; b++) {
        char t[8];
        snprintf(t, sizeof t, "<0x%02X>", b);
        vs_add(s, t, 0, VOCAB_T_BYTE);
    }
    static const struct { const char *t; float s; } P[] = {
        {"\xE2\x96\x81", -1}, {"H", -1}, {"e", -1}, {"l", -1}, {"o", -1}, {"w", -1}, {"r", -1}, {"d", -1},
        {"ll", -2}, {"or", -2.5f}, {"He", -3}, {"\xE2\x96\x81w", -3.5f}, {"\xE2\x96\x81H", -4}, {"wor", -4},
        {"\xE2\x96\x81wor", -4.5f}, {"\xE2\x96\x81He", -5}, {"ld", -5}, {"llo", -6},
        {"\xE2\x96\x81Hello", -7}, {"\xE2\x96\x81world", -9}};
    for (size_t i = 0; i < sizeof P / sizeof P[0]; i++) vs_add(s, P[i].t, P[i].s, VOCAB_T_NORMAL);
    vs_add(s, "Hell", hell_score, VOCAB_T_NORMAL);
    vs_add(s, "<tool>", 0, VOCAB_T_USER);
}

#define U "\xE2\x96\x81" /* U+2581 */

static void test_spm(void) {
    vspec s;
    moe_error err = { "" };
    moe_status st;
    spm_vocab(&s, -5.5f);
    moe_vocab *v = vs_load(&s, &st, &err);
    if (!v) { tu_fail("spm/load", "%s", err.msg); vs_free(&s); return; }
    tu_ok("spm/load");
    int f0 = tu_failed_;
    expect_tokens("spm/scores", v, "Hello world", 0, 0, W(U "Hello", U "world"));
    expect_tokens("spm/scores", v, "Hell", 0, 0, W(U "He", "ll")); /* "He" then "▁He" beat "Hell" */
    expect_tokens("spm/byte-fallback", v, "Hi \xE2\x98\x83", 0, 0, W(U "H", "<0x69>", U, "<0xE2>", "<0x98>", "<0x83>"));
    expect_tokens("spm/bos", v, "Hello", 1, 0, W("<s>", U "Hello"));
    expect_tokens("spm/special", v, "<s>Hello</s>", 0, 1, W("<s>", U "Hello", "</s>"));
    expect_tokens("spm/user-defined", v, "Hello<tool>world", 0, 0, W(U "Hello", "<tool>", U "world"));
    expect_tokens("spm/no-parse-special", v, "<s>", 0, 0, W(U, "<0x3C>", "<0x73>", "<0x3E>"));
    if (tu_failed_ == f0) tu_ok("spm/encode");
    moe_vocab_free(v);
    vs_free(&s);

    spm_vocab(&s, -4.5f); /* now "Hell" outranks "▁He" */
    v = vs_load(&s, &st, &err);
    if (v) {
        if (expect_tokens("spm/scores-changed", v, "Hell", 0, 0, W(U, "Hell"))) tu_ok("spm/scores-changed");
        moe_vocab_free(v);
    } else tu_fail("spm/scores-changed", "%s", err.msg);

    s.add_space_prefix = 0;
    s.add_bos = 0;
    v = vs_load(&s, &st, &err);
    if (v) {
        int32_t ids[16];
        size_t k = enc(v, "Hello", 5, 1, 0, ids, 16);
        if (expect_tokens("spm/no-prefix", v, "Hello", 1, 0, W("Hell", "o")) && k == 2) tu_ok("spm/no-prefix");
        moe_vocab_free(v);
    } else tu_fail("spm/no-prefix", "%s", err.msg);
    vs_free(&s);

    spm_vocab(&s, -5.5f);
    v = vs_load(&s, &st, &err);
    check_round_trip("spm/round-trip", v, 11);
    /* pieces, EOG, ids */
    char buf[8];
    size_t len;
    int hello = vocab_find(v, U "Hello", strlen(U "Hello")), a = vocab_find(v, "<0x41>", 6);
    int ok = !strcmp(moe_vocab_piece(v, hello, 0, NULL, 0, &len), " Hello") && len == 6 &&
             !strcmp(moe_vocab_piece(v, a, 0, NULL, 0, &len), "A") &&
             !strcmp(moe_vocab_piece(v, 1, 0, buf, sizeof buf, &len), "") && len == 0 &&
             !strcmp(moe_vocab_piece(v, 1, 1, buf, sizeof buf, &len), "<s>") &&
             !strcmp(moe_vocab_piece(v, hello, 0, buf, 3, &len), " H") && len == 6 &&
             !strcmp(moe_vocab_piece(v, 99999, 1, NULL, 0, &len), "") && len == 0;
    if (ok) tu_ok("spm/piece");
    else tu_fail("spm/piece", "a piece differs from the expected text");
    ok = moe_vocab_bos(v) == 1 && moe_vocab_eos(v) == 2 && moe_vocab_is_eog(v, 2) && !moe_vocab_is_eog(v, 1) &&
         !moe_vocab_is_eog(v, hello) && !moe_vocab_is_eog(v, -1) && moe_vocab_size(v) == (int)s.n;
    if (ok) tu_ok("spm/ids");
    else tu_fail("spm/ids", "bos %d eos %d size %d", moe_vocab_bos(v), moe_vocab_eos(v), moe_vocab_size(v));
    int32_t ids[4];
    size_t k = 0;
    st = moe_vocab_encode(v, "Hello world", 11, 0, 0, ids, 1, &k, &err);
    if (st == MOE_ERR_SHAPE && k == 2 && ids[0] == hello) tu_ok("spm/cap");
    else tu_fail("spm/cap", "status %d, n_out %zu (expected MOE_ERR_SHAPE, 2)", (int)st, k);
    moe_vocab_free(v);
    vs_free(&s);
}

/* ------------------------------------------------------ byte-level BPE */

static const char *k_merges[] = {"\xC4\xA0 t", "h e", "\xC4\xA0t he", "e r", "t h", "th e"};
static const char *k_merged[] = {"\xC4\xA0t", "he", "\xC4\xA0the", "er", "th", "the"};

/* 256 bytes (by value), the merges above, "Ġther" (no merge makes it),
 * <|endoftext|> <|im_start|> <|im_end|> (control), <tool> (user-defined). */
static void bpe_vocab(vspec *s, const char *pre) {
    vs_init(s, "gpt2");
    s->pre = pre;
    s->with_scores = 0;
    for (int b = 0; b < 256; b++) {
        char t[4];
        spell_byte((uint8_t)b, t);
        vs_add(s, t, 0, VOCAB_T_NORMAL);
    }
    for (size_t i = 0; i < 6; i++) { vs_add(s, k_merged[i], 0, VOCAB_T_NORMAL); s->merges[i] = k_merges[i]; }
    s->n_merges = 6;
    vs_add(s, "\xC4\xA0ther", 0, VOCAB_T_NORMAL);
    s->eos = vs_add(s, "<|endoftext|>", 0, VOCAB_T_CONTROL);
    vs_add(s, "<|im_start|>", 0, VOCAB_T_CONTROL);
    vs_add(s, "<|im_end|>", 0, VOCAB_T_CONTROL);
    vs_add(s, "<tool>", 0, VOCAB_T_USER);
}

#define G "\xC4\xA0" /* Ġ, the spelling of a space */

static void test_bpe(void) {
    vspec s;
    moe_error err = { "" };
    moe_status st;
    bpe_vocab(&s, "qwen2");
    moe_vocab *v = vs_load(&s, &st, &err);
    if (!v) { tu_fail("bpe/load", "%s", err.msg); vs_free(&s); return; }
    int f0 = tu_failed_;
    /* "the": (h,e) rank 1 beats (t,h) rank 4 and "t he" is no merge; " ther": Ġt, he, Ġthe, then r */
    expect_tokens("bpe/ranks", v, "the ther", 0, 0, W("t", "he", G "the", "r"));
    expect_tokens("bpe/ranks", v, "ther", 0, 0, W("t", "he", "r"));
    expect_tokens("bpe/special", v, "<|im_start|>the<|im_end|>", 0, 1, W("<|im_start|>", "t", "he", "<|im_end|>"));
    expect_tokens("bpe/no-parse-special", v, "<|im_end|>", 0, 0, W("<", "|", "i", "m", "_", "e", "n", "d", "|", ">"));
    if (tu_failed_ == f0) tu_ok("bpe/encode");
    int im_end = vocab_find(v, "<|im_end|>", 10), the = vocab_find(v, "the", 3);
    size_t len;
    int ok = moe_vocab_is_eog(v, im_end) && moe_vocab_is_eog(v, s.eos) && !moe_vocab_is_eog(v, the) &&
             moe_vocab_bos(v) == -1 && !strcmp(moe_vocab_piece(v, vocab_find(v, G "the", 5), 0, NULL, 0, &len), " the") &&
             !strcmp(moe_vocab_piece(v, vocab_find(v, "\xC4\x8A", 2), 0, NULL, 0, &len), "\n") &&
             !strcmp(moe_vocab_piece(v, im_end, 0, NULL, 0, &len), "") &&
             !strcmp(moe_vocab_piece(v, im_end, 1, NULL, 0, &len), "<|im_end|>") &&
             !strcmp(moe_vocab_piece(v, vocab_find(v, "<tool>", 6), 0, NULL, 0, &len), "<tool>");
    if (ok) tu_ok("bpe/piece-eog");
    else tu_fail("bpe/piece-eog", "a piece or EOG flag differs: eog %d %d %d bos %d pieces [%s] [%s] [%s] [%s] [%s]",
                 moe_vocab_is_eog(v, im_end), moe_vocab_is_eog(v, s.eos), moe_vocab_is_eog(v, the), moe_vocab_bos(v),
                 moe_vocab_piece(v, vocab_find(v, G "the", 5), 0, NULL, 0, &len),
                 moe_vocab_piece(v, vocab_find(v, "\xC4\x8A", 2), 0, NULL, 0, &len),
                 moe_vocab_piece(v, im_end, 0, NULL, 0, &len), moe_vocab_piece(v, im_end, 1, NULL, 0, &len),
                 moe_vocab_piece(v, vocab_find(v, "<tool>", 6), 0, NULL, 0, &len));
    moe_vocab_free(v);
    vs_free(&s);

    /* ignore_merges: llama-bpe takes a chunk that is a whole token as it is */
    bpe_vocab(&s, "llama-bpe");
    v = vs_load(&s, &st, &err);
    if (v && expect_tokens("bpe/ignore-merges", v, " ther", 0, 0, W(G "ther")) && v->add_bos == 1)
        tu_ok("bpe/ignore-merges");
    else if (!v) tu_fail("bpe/ignore-merges", "%s", err.msg);
    moe_vocab_free(v);
    vs_free(&s);

    /* every pattern: decode(encode(x)) == x */
    static const char *pres[] = {"gpt2", "gpt-2", "llama-bpe", "qwen2", "deepseek-llm", "deepseek-coder",
                                 "deepseek-v3", "refact", "default"};
    for (size_t p = 0; p < sizeof pres / sizeof pres[0]; p++) {
        char name[64];
        snprintf(name, sizeof name, "bpe/round-trip/%s", pres[p]);
        bpe_vocab(&s, pres[p]);
        v = vs_load(&s, &st, &err);
        if (v) check_round_trip(name, v, 100 + p);
        else tu_fail(name, "%s", err.msg);
        moe_vocab_free(v);
        vs_free(&s);
    }
}

/* .pre "gpt2": the ids of bpe_encode, for a vocabulary trained by bpe_train. */
static void test_bpe_trained(void) {
    static const char corpus[] =
        "The quick brown fox jumps over the lazy dog. The dog sleeps; the fox runs 12345 times.\n"
        "Les \xC3\xA9l\xC3\xA8ves \xC3\xA9tudient. \xE4\xB8\xAD\xE6\x96\x87\xE5\xAD\x97 and more text, "
        "with numbers 2024 and 3.14159, code: if (x == 1) { return y; }\n\n  indented  lines  here.\n";
    bpe_tokenizer tok;
    bpe_gguf_vocab gv;
    moe_error err = { "" };
    if (bpe_train(&tok, (const uint8_t *)corpus, sizeof corpus - 1, 400, &err) ||
        bpe_export_gguf(&tok, &gv, &err)) { tu_fail("bpe/trained", "%s", err.msg); return; }
    vspec s;
    vs_init(&s, "gpt2");
    s.pre = "gpt2";
    s.with_scores = 0;
    for (size_t i = 0; i < gv.n_tokens; i++) vs_add(&s, gv.tokens[i], 0, gv.token_type[i]);
    moe_status st = MOE_OK;
    gguf_writer *w;
    char path[300];
    snprintf(path, sizeof path, "%s/t.gguf", tmpdir);
    /* the merges do not fit vspec's table: write this file directly */
    if (!(st = gguf_writer_create(&w, &err))) {
        if (!st) st = gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2", &err);
        if (!st) st = gguf_writer_set_str(w, "tokenizer.ggml.pre", "gpt2", &err);
        if (!st) st = gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)s.tok, s.n, &err);
        if (!st) st = gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_VT_I32, s.type, s.n, &err);
        if (!st) st = gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", (const char *const *)gv.merges, gv.n_merges, &err);
        if (!st) st = gguf_writer_write(w, path, &err);
        gguf_writer_free(w);
    }
    moe_vocab *v = NULL;
    if (!st) st = moe_vocab_load(&v, path, &err);
    if (st) { tu_fail("bpe/trained", "%s", err.msg); goto out; }
    tu_rng r = { 3 };
    char text[2048];
    int32_t a[2048], b[2048];
    int bad = -1;
    for (int t = 0; t < 300 && bad < 0; t++) {
        size_t n;
        if (t % 3 == 0) { /* slices of the corpus */
            size_t from = tu_next(&r) % (sizeof corpus - 1);
            n = tu_next(&r) % (sizeof corpus - from);
            memcpy(text, corpus + from, n);
        } else if (t % 3 == 1) n = rand_utf8(&r, text, 300);
        else { n = tu_next(&r) % 300; for (size_t i = 0; i < n; i++) text[i] = (char)(tu_next(&r) & 255); }
        size_t ka = enc(v, text, n, 0, 0, a, 2048), kb = 0;
        if (bpe_encode(&tok, (const uint8_t *)text, n, b, 2048, &kb, &err) || ka != kb || memcmp(a, b, ka * sizeof *a))
            bad = t;
    }
    if (bad < 0) tu_ok("bpe/trained-ids");
    else tu_fail("bpe/trained-ids", "case %d: ids differ from bpe_encode's", bad);
    moe_vocab_free(v);
out:
    vs_free(&s);
    bpe_gguf_vocab_free(&gv);
    bpe_free(&tok);
}

/* --------------------------------------------------------- bad files */

static void expect_load_error(const char *name, const vspec *s, moe_status want) {
    moe_error err = { "" };
    moe_status st;
    moe_vocab *v = vs_load(s, &st, &err);
    if (!v && st == want && err.msg[0]) tu_ok(name);
    else tu_fail(name, "status %d (%s), expected %d", (int)st, err.msg, (int)want);
    moe_vocab_free(v);
}

static void test_errors(void) {
    vspec s;
    spm_vocab(&s, -5.5f);
    s.model = NULL;
    expect_load_error("vocab/err/no-model", &s, MOE_ERR_FORMAT);
    s.model = "bert";
    expect_load_error("vocab/err/model", &s, MOE_ERR_UNSUPPORTED);
    s.model = "llama";
    s.bos = (int)s.n;
    expect_load_error("vocab/err/bos-range", &s, MOE_ERR_FORMAT);
    s.bos = -1;
    s.type[5] = 9;
    expect_load_error("vocab/err/type", &s, MOE_ERR_FORMAT);
    s.type[5] = VOCAB_T_BYTE;
    size_t n = s.n;
    s.n = 0;
    expect_load_error("vocab/err/no-tokens", &s, MOE_ERR_FORMAT);
    s.n = n;
    vs_free(&s);
    bpe_vocab(&s, "tekken");
    expect_load_error("vocab/err/pre", &s, MOE_ERR_UNSUPPORTED);
    s.pre = "qwen2";
    s.with_merges = 0;
    expect_load_error("vocab/err/no-merges", &s, MOE_ERR_FORMAT);
    vs_free(&s);
    moe_vocab *v = (moe_vocab *)1;
    moe_error err = { "" };
    if (moe_vocab_load(&v, "/nonexistent-moe/v.gguf", &err) != MOE_OK && v == NULL) tu_ok("vocab/err/no-file");
    else tu_fail("vocab/err/no-file", "a missing file loaded");
}

/* ----------------------------------------------------- chat templates */

static void expect_render(const char *tmpl, const moe_chat_msg *m, int n, const char *want) {
    char out[1024], name[64];
    size_t len = 0;
    moe_error err = { "" };
    snprintf(name, sizeof name, "chat/render/%s", tmpl);
    if (moe_chat_render(tmpl, m, n, 1, out, sizeof out, &len, &err)) { tu_fail(name, "%s", err.msg); return; }
    if (!strcmp(out, want) && len == strlen(want)) tu_ok(name);
    else tu_fail(name, "got \"%s\", expected \"%s\"", out, want);
}

static void expect_template(const char *name, const char *arch, const char *model, const char *tmpl_text,
                            const char *want) {
    vspec s;
    bpe_vocab(&s, "qwen2");
    s.model = model;
    s.arch = arch;
    s.chat_template = tmpl_text;
    char path[300];
    moe_error err = { "" };
    snprintf(path, sizeof path, "%s/c.gguf", tmpdir);
    if (vs_write(&s, path, &err)) { tu_fail(name, "%s", err.msg); vs_free(&s); return; }
    const char *got = moe_chat_template_for(path);
    if (!strcmp(got, want)) tu_ok(name);
    else tu_fail(name, "\"%s\", expected \"%s\"", got, want);
    vs_free(&s);
}

static void test_chat(void) {
    const moe_chat_msg m[] = {{"system", "Be brief."}, {"user", "Hi"}, {"assistant", " Hello! "}, {"user", "Why?"}};
    expect_render("chatml", m, 4,
                  "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
                  " Hello! <|im_end|>\n<|im_start|>user\nWhy?<|im_end|>\n<|im_start|>assistant\n");
    expect_render("mistral", m, 4, "[INST] Be brief.\n\nHi [/INST] Hello! </s>[INST] Why? [/INST]");
    expect_render("llama3", m, 4,
                  "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n"
                  "Hi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|><|start_header_id|>user"
                  "<|end_header_id|>\n\nWhy?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n");
    expect_render("deepseek", m, 4,
                  "Be brief.\n\nUser: Hi\n\nAssistant:  Hello! <\xEF\xBD\x9C" "end\xE2\x96\x81" "of\xE2\x96\x81"
                  "sentence\xEF\xBD\x9C>User: Why?\n\nAssistant:");
    expect_render("granite", m, 4,
                  "<|start_of_role|>system<|end_of_role|>Be brief.<|end_of_text|>\n<|start_of_role|>user<|end_of_role|>Hi"
                  "<|end_of_text|>\n<|start_of_role|>assistant<|end_of_role|> Hello! <|end_of_text|>\n<|start_of_role|>user"
                  "<|end_of_role|>Why?<|end_of_text|>\n<|start_of_role|>assistant<|end_of_role|>\n");
    expect_render("tulu", m, 4,
                  "<|system|>\nBe brief.\n<|user|>\nHi\n<|assistant|>\n Hello! <|endoftext|>\n<|user|>\nWhy?\n<|assistant|>\n");
    char small[10];
    size_t len = 0;
    moe_error err = { "" };
    moe_status st = moe_chat_render("chatml", m + 1, 1, 0, small, sizeof small, &len, &err);
    if (st == MOE_ERR_SHAPE && len == strlen("<|im_start|>user\nHi<|im_end|>\n") && strlen(small) == 9)
        tu_ok("chat/cap");
    else tu_fail("chat/cap", "status %d, len %zu", (int)st, len);
    if (moe_chat_render("jinja", m, 1, 1, small, sizeof small, &len, &err) == MOE_ERR_ARG) tu_ok("chat/unknown");
    else tu_fail("chat/unknown", "an unknown template was accepted");

    expect_template("chat/detect/chatml", "qwen2moe", "gpt2", "{% for m in messages %}<|im_start|>{{ m.role }}", "chatml");
    expect_template("chat/detect/llama3", "llama", "gpt2", "<|start_header_id|>' + role + '<|end_header_id|>", "llama3");
    expect_template("chat/detect/mistral", "llama", "llama", "{{ '[INST] ' + message['content'] + ' [/INST]' }}", "mistral");
    expect_template("chat/detect/granite", "granitemoe", "gpt2", "<|start_of_role|>system", "granite");
    expect_template("chat/detect/deepseek", "deepseek", "gpt2",
                    "{{ 'User: ' + message['content'] + '\\n\\n' }}{{ 'Assistant: ' + message['content'] + eos_token }}", "deepseek");
    expect_template("chat/arch/qwen", "qwen3moe", "gpt2", NULL, "chatml");
    expect_template("chat/arch/mixtral", "llama", "llama", NULL, "mistral");
    expect_template("chat/arch/deepseek", "deepseek", "gpt2", NULL, "deepseek");
    expect_template("chat/arch/granite", "granitemoe", "gpt2", NULL, "granite");
    expect_template("chat/arch/olmoe", "olmoe", "gpt2", NULL, "tulu");
    if (!strcmp(moe_chat_template_for("/nonexistent-moe/x.gguf"), "chatml")) tu_ok("chat/no-file");
    else tu_fail("chat/no-file", "not the chatml fallback");
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/moe-test-vocab-XXXXXX");
    if (!mkdtemp(tmpdir)) { tu_fail("vocab/tmpdir", "mkdtemp failed"); return 1; }
    test_pretok();
    test_spm();
    test_bpe();
    test_bpe_trained();
    test_errors();
    test_chat();
    char path[300];
    const char *files[] = {"v.gguf", "t.gguf", "c.gguf"};
    for (int i = 0; i < 3; i++) { snprintf(path, sizeof path, "%s/%s", tmpdir, files[i]); unlink(path); }
    rmdir(tmpdir);
    return tu_exit_code();
}
