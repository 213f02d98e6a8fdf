/* pretok.c: the byte-level BPE pre-tokenizers (see pretok.h for the
 * patterns) and the Unicode class lookup they use.
 * Not for: merges, special tokens, SentencePiece.
 *
 * Reading order: Unicode helpers, the names table, the single-regex matchers
 * (GPT-2, llama3/qwen2, DeepSeek-V3's last stage), the small matchers of the
 * multi-regex patterns, the splitting engine.
 *
 * A matcher m(t, i, e) returns the length in characters of the match of its
 * regex that starts exactly at character i of a chunk ending at e (0: none),
 * trying the alternatives in order as a backtracking regex engine does;
 * lookarounds and $ see the chunk's end as the end of the text, as they do
 * when each chunk is matched as its own string. A stage finds matches left to
 * right (leftmost start, then that match), and the text between matches
 * becomes chunks of its own.
 */
#include "text/pretok.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "text/bpe.h"

/* ------------------------------------------------------------- Unicode */

static int is_white_space(uint32_t cp) {
    return (cp >= 9 && cp <= 13) || cp == 32 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
           cp == 0x205F || cp == 0x3000;
}

uint8_t uni_class(uint32_t cp) {
    if (cp > 0x10FFFF) return UNI_OTHER;
    size_t lo = 0, hi = uni_n_runs; /* the last run starting at or before cp */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if ((uni_runs[mid] >> 3) <= cp) lo = mid;
        else hi = mid;
    }
    uint8_t c = (uint8_t)(uni_runs[lo] & 7);
    return is_white_space(cp) ? (uint8_t)(c | UNI_WS) : c;
}

size_t uni_decode(const uint8_t *s, size_t n, uint32_t *cp) {
    uint8_t b = s[0];
    size_t len;
    uint32_t c, min;
    if (b < 0x80) { *cp = b; return 1; }
    if ((b & 0xE0) == 0xC0) { len = 2; c = b & 0x1Fu; min = 0x80; }
    else if ((b & 0xF0) == 0xE0) { len = 3; c = b & 0x0Fu; min = 0x800; }
    else if ((b & 0xF8) == 0xF0) { len = 4; c = b & 0x07u; min = 0x10000; }
    else goto bad;
    if (len > n) goto bad;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) goto bad;
        c = (c << 6) | (s[i] & 0x3Fu);
    }
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) goto bad;
    *cp = c;
    return len;
bad:
    *cp = 0x110000u + b;
    return 1;
}

/* ---------------------------------------------------------------- names */

static const struct {
    const char *name;
    pretok_kind kind;
    int llama3; /* llama.cpp's ignore_merges + add_bos for these names */
} k_names[] = {
    {"gpt2", PRETOK_MOE_GPT2, 0},
    {"default", PRETOK_DEFAULT, 0},
    {"gpt-2", PRETOK_GPT2, 0}, {"phi-2", PRETOK_GPT2, 0}, {"roberta-bpe", PRETOK_GPT2, 0},
    {"olmo", PRETOK_GPT2, 0}, {"mpt", PRETOK_GPT2, 0}, {"jais", PRETOK_GPT2, 0},
    {"gigachat", PRETOK_GPT2, 0}, {"exaone4", PRETOK_GPT2, 0}, {"jina-es", PRETOK_GPT2, 0},
    {"jina-de", PRETOK_GPT2, 0}, {"jina-v1-en", PRETOK_GPT2, 0}, {"jina-v2-es", PRETOK_GPT2, 0},
    {"jina-v2-de", PRETOK_GPT2, 0}, {"jina-v2-code", PRETOK_GPT2, 0},
    {"llama3", PRETOK_LLAMA3, 1}, {"llama-v3", PRETOK_LLAMA3, 1}, {"llama-bpe", PRETOK_LLAMA3, 1},
    {"falcon3", PRETOK_LLAMA3, 1}, {"dbrx", PRETOK_LLAMA3, 0}, {"smaug-bpe", PRETOK_LLAMA3, 0},
    {"chatglm-bpe", PRETOK_LLAMA3, 0},
    {"qwen2", PRETOK_QWEN2, 0}, {"stablelm2", PRETOK_QWEN2, 0}, {"megrez", PRETOK_QWEN2, 0},
    {"deepseek-r1-qwen", PRETOK_QWEN2, 0},
    {"deepseek-llm", PRETOK_DEEPSEEK_LLM, 0},
    {"deepseek-coder", PRETOK_DEEPSEEK_CODER, 0},
    {"deepseek-v3", PRETOK_DEEPSEEK3, 0},
    {"refact", PRETOK_STARCODER, 0}, {"starcoder", PRETOK_STARCODER, 0},
    {"command-r", PRETOK_STARCODER, 0}, {"smollm", PRETOK_STARCODER, 0},
    {"codeshell", PRETOK_STARCODER, 0}, {"exaone", PRETOK_STARCODER, 0},
    {"minerva-7b", PRETOK_STARCODER, 0},
};

int pretok_lookup(const char *name, pretok_kind *kind, int *llama3_flags) {
    if (!name) {
        *kind = PRETOK_DEFAULT;
        *llama3_flags = 0;
        return 1;
    }
    for (size_t i = 0; i < sizeof k_names / sizeof k_names[0]; i++)
        if (!strcmp(k_names[i].name, name)) {
            *kind = k_names[i].kind;
            *llama3_flags = k_names[i].llama3;
            return 1;
        }
    return 0;
}

const char *pretok_kind_name(pretok_kind k) {
    static const char *const n[PRETOK_COUNT] = {
        "moe-gpt2", "gpt-2", "llama3", "qwen2", "deepseek-llm", "deepseek-coder",
        "deepseek-v3", "starcoder", "default"};
    return (unsigned)k < PRETOK_COUNT ? n[k] : "unknown";
}

/* ------------------------------------------------- characters of a text */

typedef struct ptext {
    const uint32_t *cp; /* [m] code points (0x110000 + b for an invalid byte b) */
    const uint8_t *cls; /* [m] uni_class of each */
} ptext;

static inline int c_ws(const ptext *t, size_t i) { return (t->cls[i] & UNI_WS) != 0; }
static inline int c_is(const ptext *t, size_t i, int cl) { return (t->cls[i] & 7) == cl; }
static inline int c_L(const ptext *t, size_t i) { return c_is(t, i, UNI_L); }
static inline int c_N(const ptext *t, size_t i) { return c_is(t, i, UNI_N); }
static inline int c_P(const ptext *t, size_t i) { return c_is(t, i, UNI_P); }
static inline int c_crlf(const ptext *t, size_t i) { return t->cp[i] == '\r' || t->cp[i] == '\n'; }
/* [^\s\p{L}\p{N}] */
static inline int c_other(const ptext *t, size_t i) { return !c_ws(t, i) && !c_L(t, i) && !c_N(t, i); }
/* [\p{L}\p{M}] */
static inline int c_LM(const ptext *t, size_t i) { return c_L(t, i) || c_is(t, i, UNI_M); }
/* [\p{P}\p{S}] */
static inline int c_PS(const ptext *t, size_t i) { return c_P(t, i) || c_is(t, i, UNI_S); }

typedef int (*cpred)(const ptext *t, size_t i);

/* The end of the run of pred starting at i (i itself when pred(i) is false). */
static inline size_t run(const ptext *t, size_t i, size_t e, cpred pred) {
    while (i < e && pred(t, i)) i++;
    return i;
}

/* ------------------------------------------------- single-regex matchers */

static inline uint32_t ascii_lower(uint32_t c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

/* 's|'t|'re|'ve|'m|'ll|'d, case-insensitively (ASCII) when icase. */
static size_t contraction(const ptext *t, size_t i, size_t e, int icase) {
    if (t->cp[i] != '\'' || i + 1 >= e) return 0;
    uint32_t a = t->cp[i + 1], b = i + 2 < e ? t->cp[i + 2] : 0;
    if (icase) { a = ascii_lower(a); b = ascii_lower(b); }
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
    return 0;
}

/* The whitespace alternatives that end the big patterns:
 * (\s*[\r\n]+ when nl)|\s+(?!\S)|\s+ ; 0 when t[i] is not whitespace.
 * \s*[\r\n]+ backtracks to the last CR/LF of the whitespace run; \s+(?!\S)
 * takes the run, less its last character unless the run ends the chunk. */
static size_t ws_tail(const ptext *t, size_t i, size_t e, int nl) {
    if (!c_ws(t, i)) return 0;
    size_t r = run(t, i + 1, e, c_ws);
    if (nl) {
        size_t q = r;
        while (q > i && !c_crlf(t, q - 1)) q--;
        if (q > i) return q - i;
    }
    if (r == e || r - i == 1) return r - i;
    return r - i - 1;
}

/* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
static size_t m_gpt2(const ptext *t, size_t i, size_t e) {
    size_t k = contraction(t, i, e, 0);
    if (k) return k;
    size_t j = t->cp[i] == ' ' && i + 1 < e ? i + 1 : i; /* " ?" */
    if (c_L(t, j)) return run(t, j, e, c_L) - i;
    if (c_N(t, j)) return run(t, j, e, c_N) - i;
    if (c_other(t, j)) return run(t, j, e, c_other) - i;
    return ws_tail(t, i, e, 0);
}

/* (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,maxdig}|
 *  ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+ */
static size_t m_llama_like(const ptext *t, size_t i, size_t e, size_t maxdig) {
    size_t k = contraction(t, i, e, 1);
    if (k) return k;
    size_t j = i;
    if (!c_L(t, i) && !c_N(t, i) && !c_crlf(t, i) && i + 1 < e && c_L(t, i + 1)) j = i + 1;
    if (c_L(t, j)) return run(t, j, e, c_L) - i;
    if (c_N(t, i)) {
        size_t r = run(t, i, e, c_N);
        return r - i < maxdig ? r - i : maxdig;
    }
    j = t->cp[i] == ' ' && i + 1 < e && c_other(t, i + 1) ? i + 1 : i;
    if (c_other(t, j)) return run(t, run(t, j, e, c_other), e, c_crlf) - i;
    return ws_tail(t, i, e, 1);
}
static size_t m_llama3(const ptext *t, size_t i, size_t e) { return m_llama_like(t, i, e, 3); }
static size_t m_qwen2(const ptext *t, size_t i, size_t e) { return m_llama_like(t, i, e, 1); }

static inline int ascii_punct(uint32_t c) {
    return (c >= 0x21 && c <= 0x2F) || (c >= 0x3A && c <= 0x40) || (c >= 0x5B && c <= 0x60) ||
           (c >= 0x7B && c <= 0x7E);
}
static int c_ascii_alpha(const ptext *t, size_t i) {
    uint32_t c = t->cp[i] | 32u;
    return t->cp[i] < 0x80 && c >= 'a' && c <= 'z';
}

/* DeepSeek-V3's last stage:
 * [!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+|
 *  ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+ */
static size_t m_ds3(const ptext *t, size_t i, size_t e) {
    if (ascii_punct(t->cp[i]) && i + 1 < e && c_ascii_alpha(t, i + 1))
        return run(t, i + 1, e, c_ascii_alpha) - i;
    size_t j = i;
    if (!c_crlf(t, i) && !c_L(t, i) && !c_PS(t, i) && i + 1 < e && c_LM(t, i + 1)) j = i + 1;
    if (c_LM(t, j)) return run(t, j, e, c_LM) - i;
    j = t->cp[i] == ' ' && i + 1 < e && c_PS(t, i + 1) ? i + 1 : i;
    if (c_PS(t, j)) return run(t, run(t, j, e, c_PS), e, c_crlf) - i;
    return ws_tail(t, i, e, 1);
}

/* ---------------------------------------------- multi-regex pattern parts */

typedef struct urange { uint32_t lo, hi; } urange;

static int in_ranges(uint32_t c, const urange *r, size_t n) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (c < r[mid].lo) hi = mid;
        else if (c > r[mid].hi) lo = mid + 1;
        else return 1;
    }
    return 0;
}

/* The letters of llama.cpp's DeepSeek-LLM pattern (cased letters, Lu Ll Lt,
 * of the scripts it lists), sorted and merged. */
static const urange k_ds_letters[] = {
    {0x41, 0x5A}, {0x61, 0x7A}, {0xB5, 0xB5}, {0xC0, 0xD6}, {0xD8, 0xF6}, {0xF8, 0x1BA},
    {0x1BC, 0x1BF}, {0x1C4, 0x293}, {0x295, 0x2AF}, {0x370, 0x373}, {0x376, 0x377},
    {0x37B, 0x37D}, {0x37F, 0x37F}, {0x386, 0x386}, {0x388, 0x38A}, {0x38C, 0x38C},
    {0x38E, 0x3A1}, {0x3A3, 0x3F5}, {0x3F7, 0x481}, {0x48A, 0x52F}, {0x531, 0x556},
    {0x10A0, 0x10C5}, {0x13A0, 0x13F5}, {0x13F8, 0x13FD}, {0x1C90, 0x1CBA}, {0x1CBD, 0x1CBF},
    {0x1D00, 0x1D2B}, {0x1D6B, 0x1D77}, {0x1D79, 0x1D9A}, {0x1E00, 0x1F15}, {0x1F18, 0x1F1D},
    {0x1F20, 0x1F45}, {0x1F48, 0x1F4D}, {0x1F50, 0x1F57}, {0x1F59, 0x1F59}, {0x1F5B, 0x1F5B},
    {0x1F5D, 0x1F5D}, {0x1F5F, 0x1F7D}, {0x1F80, 0x1FB4}, {0x1FB6, 0x1FBC}, {0x1FBE, 0x1FBE},
    {0x1FC2, 0x1FC4}, {0x1FC6, 0x1FCC}, {0x1FD0, 0x1FD3}, {0x1FD6, 0x1FDB}, {0x1FE0, 0x1FEC},
    {0x1FF2, 0x1FF4}, {0x1FF6, 0x1FFC}, {0x2102, 0x2102}, {0x2107, 0x2107}, {0x210A, 0x2113},
    {0x2115, 0x2115}, {0x2119, 0x211D}, {0x2124, 0x2124}, {0x2126, 0x2126}, {0x2128, 0x2128},
    {0x212A, 0x212D}, {0x212F, 0x2134}, {0x2139, 0x2139}, {0x213C, 0x213F}, {0x2145, 0x2149},
    {0x214E, 0x214E}, {0x2183, 0x2184}, {0x2C00, 0x2C7B}, {0x2C7E, 0x2CE4}, {0x2CEB, 0x2CEE},
    {0x2CF2, 0x2CF3}, {0xA640, 0xA66D}, {0xA680, 0xA69B}, {0xA722, 0xA76F}, {0xA771, 0xA787},
    {0xA78B, 0xA78E}, {0xAB70, 0xABBF}, {0xFB00, 0xFB06}, {0xFB13, 0xFB17}, {0xFF21, 0xFF3A},
    {0xFF41, 0xFF5A}, {0x10400, 0x1044F}, {0x104B0, 0x104D3}, {0x104D8, 0x104FB},
    {0x10C80, 0x10CB2}, {0x10CC0, 0x10CF2}, {0x118A0, 0x118DF}, {0x1E900, 0x1E943},
};
/* [!-/:-~！-／：-～‘-‟　-。] */
static const urange k_ds_punct[] = {
    {0x21, 0x2F}, {0x3A, 0x7E}, {0x2018, 0x201F}, {0x3000, 0x3002}, {0xFF01, 0xFF0F}, {0xFF1A, 0xFF5E},
};
/* [一-龥ࠀ-一가-퟿] */
static const urange k_ds_cjk[] = { {0x800, 0x9FA5}, {0xAC00, 0xD7FF} };
/* [一-龥぀-ゟ゠-ヿ] */
static const urange k_ds3_cjk[] = { {0x3040, 0x30FF}, {0x4E00, 0x9FA5} };

#define NR(a) (sizeof a / sizeof a[0])
static int c_ds_letter(const ptext *t, size_t i) { return in_ranges(t->cp[i], k_ds_letters, NR(k_ds_letters)); }
static int c_ds_punct(const ptext *t, size_t i) { return in_ranges(t->cp[i], k_ds_punct, NR(k_ds_punct)); }
static int c_ds_cjk(const ptext *t, size_t i) { return in_ranges(t->cp[i], k_ds_cjk, NR(k_ds_cjk)); }
static int c_ds3_cjk(const ptext *t, size_t i) { return in_ranges(t->cp[i], k_ds3_cjk, NR(k_ds3_cjk)); }
/* [\p{P}\$\+<=>\^~\|] */
static int c_default_punct(const ptext *t, size_t i) {
    uint32_t c = t->cp[i];
    return c_P(t, i) || c == '$' || c == '+' || c == '<' || c == '=' || c == '>' || c == '^' ||
           c == '~' || c == '|';
}
static int c_digit(const ptext *t, size_t i) { return t->cp[i] >= '0' && t->cp[i] <= '9'; }

/* \s?X+ : the optional whitespace is taken only when X follows it. */
static size_t ws_opt_run(const ptext *t, size_t i, size_t e, cpred x) {
    if (c_ws(t, i) && i + 1 < e && x(t, i + 1)) return run(t, i + 1, e, x) - i;
    return run(t, i, e, x) - i;
}

static size_t m_crlf(const ptext *t, size_t i, size_t e) { (void)e; return c_crlf(t, i) ? 1 : 0; }
static size_t m_ds_letters(const ptext *t, size_t i, size_t e) { return ws_opt_run(t, i, e, c_ds_letter); }
static size_t m_ds_punct(const ptext *t, size_t i, size_t e) { return ws_opt_run(t, i, e, c_ds_punct); }
static size_t m_ds_cjk(const ptext *t, size_t i, size_t e) { return run(t, i, e, c_ds_cjk) - i; }
static size_t m_ds3_cjk(const ptext *t, size_t i, size_t e) { return run(t, i, e, c_ds3_cjk) - i; }
static size_t m_ws_letters(const ptext *t, size_t i, size_t e) { return ws_opt_run(t, i, e, c_L); }
static size_t m_ws_punct(const ptext *t, size_t i, size_t e) { return ws_opt_run(t, i, e, c_P); }
static size_t m_digits(const ptext *t, size_t i, size_t e) { return run(t, i, e, c_N) - i; }
static size_t m_digit1(const ptext *t, size_t i, size_t e) { (void)e; return c_N(t, i) ? 1 : 0; }
static size_t m_digit3(const ptext *t, size_t i, size_t e) {
    size_t r = run(t, i, e, c_N) - i;
    return r < 3 ? r : 3;
}
static size_t m_default_punct(const ptext *t, size_t i, size_t e) { return run(t, i, e, c_default_punct) - i; }
static size_t m_3digits(const ptext *t, size_t i, size_t e) {
    return i + 3 <= e && c_digit(t, i) && c_digit(t, i + 1) && c_digit(t, i + 2) ? 3 : 0;
}

/* --------------------------------------------------------------- engine */

typedef size_t (*matcher)(const ptext *t, size_t i, size_t e);
#define TRAILING_WS ((matcher)0) /* the stage \s+$ (split off a chunk's trailing whitespace) */
#define MAX_STAGES 6

static const struct pattern {
    int n;
    matcher m[MAX_STAGES];
} k_patterns[PRETOK_COUNT] = {
    [PRETOK_MOE_GPT2] = {0, {0}},
    [PRETOK_GPT2] = {1, {m_gpt2}},
    [PRETOK_LLAMA3] = {1, {m_llama3}},
    [PRETOK_QWEN2] = {1, {m_qwen2}},
    [PRETOK_DEEPSEEK_LLM] = {6, {m_crlf, m_ds_letters, m_ds_punct, TRAILING_WS, m_ds_cjk, m_digits}},
    [PRETOK_DEEPSEEK_CODER] = {5, {m_crlf, m_ws_letters, m_ws_punct, m_ds_cjk, m_digit1}},
    [PRETOK_DEEPSEEK3] = {3, {m_digit3, m_ds3_cjk, m_ds3}},
    [PRETOK_STARCODER] = {2, {m_digit1, m_gpt2}},
    [PRETOK_DEFAULT] = {4, {m_default_punct, m_gpt2, m_digits, m_3digits}},
};

/* One stage over chunks in[0, n_in) (character ends); writes the new ends to
 * out and returns their count. */
static size_t split_stage(const ptext *t, matcher m, const size_t *in, size_t n_in, size_t *out) {
    size_t n_out = 0, s = 0;
    for (size_t c = 0; c < n_in; c++) {
        size_t e = in[c];
        if (m == TRAILING_WS) {
            size_t r = e;
            while (r > s && c_ws(t, r - 1)) r--;
            if (r > s && r < e) out[n_out++] = r;
            out[n_out++] = e;
        } else {
            size_t p = s; /* start of the pending gap */
            for (size_t q = s; q < e;) {
                size_t len = m(t, q, e);
                if (len == 0) { q++; continue; }
                if (q > p) out[n_out++] = q;
                q += len;
                out[n_out++] = q;
                p = q;
            }
            if (p < e) out[n_out++] = e;
        }
        s = e;
    }
    return n_out;
}

moe_status pretok_split(pretok_kind kind, const uint8_t *text, size_t n,
                        size_t *ends, size_t *n_chunks, moe_error *err) {
    *n_chunks = 0;
    if ((unsigned)kind >= PRETOK_COUNT) return moe_err(err, MOE_ERR_ARG, "pretok_split: kind %d out of range", (int)kind);
    if (n == 0) return MOE_OK;
    if (kind == PRETOK_MOE_GPT2) {
        size_t k = 0;
        for (size_t i = 0; i < n; i = ends[k++]) ends[k] = bpe_chunk_end(text, n, i);
        *n_chunks = k;
        return MOE_OK;
    }
    uint32_t *cp = malloc(n * sizeof *cp);
    uint8_t *cls = malloc(n);
    size_t *off = malloc((n + 1) * sizeof *off);
    size_t *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
    if (!cp || !cls || !off || !a || !b) {
        free(cp); free(cls); free(off); free(a); free(b);
        return moe_err(err, MOE_ERR_NOMEM, "pretok_split: out of memory (text of %zu bytes)", n);
    }
    size_t m = 0;
    for (size_t i = 0; i < n; m++) {
        off[m] = i;
        i += uni_decode(text + i, n - i, &cp[m]);
        cls[m] = uni_class(cp[m]);
    }
    off[m] = n;
    ptext t = { cp, cls };
    const struct pattern *pat = &k_patterns[kind];
    size_t na = 1;
    a[0] = m;
    for (int s = 0; s < pat->n; s++) {
        size_t nb = split_stage(&t, pat->m[s], a, na, b);
        size_t *tmp = a; a = b; b = tmp;
        na = nb;
    }
    for (size_t c = 0; c < na; c++) ends[c] = off[a[c]];
    *n_chunks = na;
    free(cp); free(cls); free(off); free(a); free(b);
    return MOE_OK;
}
