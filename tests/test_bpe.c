/* test_bpe.c: checks of the byte-level BPE tokenizer (src/text/bpe.c).
 *
 * Pre-tokenizer chunks on named examples, a hand-worked training example,
 * exact encode/decode round trips (training text, random bytes, empty input),
 * the heap encoder against a naive GPT-2 style reference, determinism, the
 * GGUF-convention export/import, and bad arguments and vocabularies.
 * `test_bpe --bench [MB] [vocab]` prints training and encoding speeds instead.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "testutil.h"
#include "text/bpe.h"

/* ------------------------------------------------------------ test text */

static const char *const WORDS[] = {
    "the", "of", "and", "to", "in", "a", "is", "that", "for", "it", "as", "was",
    "with", "be", "by", "on", "not", "he", "this", "are", "or", "his", "from",
    "at", "which", "but", "have", "an", "had", "they", "you", "were", "their",
    "one", "all", "we", "can", "her", "has", "there", "been", "if", "more",
    "when", "will", "would", "who", "so", "no", "model", "expert", "router",
    "token", "training", "language", "mixture", "sparse", "layer", "gradient",
    "memory", "network", "attention", "learning", "different", "between",
    "important", "information", "government", "development", "because",
    "Straße", "Müller", "über", "Größe", "schön", "français", "élève", "naïve",
    "café", "déjà", "garçon", "Ärger", "Übung", "Zürich", "señor", "año",
};
static const char *const CODE[] = {
    "for (int i = 0; i < n; i++) {\n", "    sum += x[i] * w[i];\n", "}\n",
    "if (err != MOE_OK) return err;\n", "static inline float silu(float x) {\n",
    "    return x / (1.0f + expf(-x));\n", "#include <stdio.h>\n",
    "def forward(self, x):\n", "        return self.proj(x)\n",
    "x = np.zeros((4, 8), dtype=np.float32)\n", "// TODO: check the shape\n",
};

typedef struct sbuf { uint8_t *p; size_t n, cap; } sbuf;

static void put(sbuf *b, const void *s, size_t n) {
    if (b->n + n > b->cap) {
        while (b->n + n > b->cap) b->cap = b->cap ? 2 * b->cap : 4096;
        b->p = realloc(b->p, b->cap);
        if (!b->p) abort();
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
}
static void puts_(sbuf *b, const char *s) { put(b, s, strlen(s)); }

/* A lexicon of 20000 pseudo-words built from syllables (some accented), so
 * that the text has many distinct words like natural text does. */
#define N_LEX 20000
static char (*make_lexicon(tu_rng *r))[24] {
    static const char *const on[] = { "", "b", "c", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t",
                                      "v", "w", "th", "st", "str", "ch", "sh", "pl", "gr", "br", "sch", "z" };
    static const char *const nu[] = { "a", "e", "i", "o", "u", "ou", "ea", "ai", "ie", "Ã¤", "Ã©",
                                      "Ã¼", "Ã¶", "a", "e", "o" };
    static const char *const co[] = { "", "", "", "n", "r", "s", "t", "ng", "st", "l", "m", "ck", "nd" };
    char (*lex)[24] = malloc(N_LEX * sizeof *lex);
    for (int w = 0; w < N_LEX; w++) {
        size_t k = 0;
        int syl = 1 + (int)(tu_next(r) % 3) + (tu_next(r) % 4 == 0);
        lex[w][0] = '\0';
        for (int i = 0; i < syl; i++) {
            const char *p[3] = { on[tu_next(r) % (sizeof on / sizeof *on)], nu[tu_next(r) % (sizeof nu / sizeof *nu)],
                                 co[tu_next(r) % (sizeof co / sizeof *co)] };
            for (int j = 0; j < 3; j++)
                if (k + strlen(p[j]) < 23) { strcpy(lex[w] + k, p[j]); k += strlen(p[j]); }
        }
    }
    return lex;
}

/* About n bytes of English-like sentences (Zipf-ish choice among common
 * words, then the pseudo-word lexicon), numbers, code lines and accented
 * UTF-8 words. */
static sbuf gen_text(uint64_t seed, size_t n) {
    tu_rng r = { seed };
    sbuf b = { NULL, 0, 0 };
    size_t nw = sizeof WORDS / sizeof *WORDS, nc = sizeof CODE / sizeof *CODE;
    char (*lex)[24] = make_lexicon(&r);
    while (b.n < n) {
        uint64_t kind = tu_next(&r) % 10;
        if (kind < 7) { /* a sentence */
            int len = 4 + (int)(tu_next(&r) % 12);
            for (int i = 0; i < len; i++) {
                double u = (double)(tu_next(&r) >> 11) / 9007199254740992.0;
                char tmp[64];
                if (tu_next(&r) % 2) strcpy(tmp, WORDS[(size_t)(u * u * (double)nw)]); /* low ranks more often */
                else strcpy(tmp, lex[(size_t)(u * u * u * N_LEX)]);
                if (i == 0 && tmp[0] >= 'a' && tmp[0] <= 'z') tmp[0] -= 32;
                if (i) puts_(&b, " ");
                puts_(&b, tmp);
                if (tu_next(&r) % 15 == 0) puts_(&b, ",");
            }
            puts_(&b, tu_next(&r) % 5 == 0 ? "?\n" : ". ");
        } else if (kind < 8) { /* numbers */
            char tmp[96];
            snprintf(tmp, sizeof tmp, "In %d, %llu items cost $%d.%02d. ", 1900 + (int)(tu_next(&r) % 130),
                     (unsigned long long)(tu_next(&r) % 100000), (int)(tu_next(&r) % 1000), (int)(tu_next(&r) % 100));
            puts_(&b, tmp);
        } else {
            puts_(&b, CODE[tu_next(&r) % nc]);
        }
    }
    free(lex);
    return b;
}

/* ------------------------------------------------------------- helpers */

/* encode then decode; 1 if the bytes come back exactly. */
static int round_trip(const bpe_tokenizer *tok, const uint8_t *s, size_t n, size_t *n_ids, char *why) {
    moe_error err = { "" };
    int32_t *ids = malloc((n ? n : 1) * sizeof *ids);
    uint8_t *back = malloc(n ? n : 1);
    size_t k = 0, m = 0;
    int ok = 0;
    moe_status st = bpe_encode(tok, s, n, ids, n, &k, &err);
    if (st != MOE_OK) { sprintf(why, "encode: %s", err.msg); goto out; }
    st = bpe_decode(tok, ids, k, 0, back, n, &m, &err);
    if (st != MOE_OK) { sprintf(why, "decode: %s", err.msg); goto out; }
    if (m != n) { sprintf(why, "decoded %zu bytes of %zu", m, n); goto out; }
    for (size_t i = 0; i < n; i++)
        if (back[i] != s[i]) { sprintf(why, "byte %zu: 0x%02X, expected 0x%02X", i, back[i], s[i]); goto out; }
    ok = 1;
    if (n_ids) *n_ids = k;
out:
    free(ids);
    free(back);
    return ok;
}

/* Naive GPT-2 BPE (the reference): per chunk, repeatedly take the adjacent
 * pair of lowest rank and merge all its occurrences left to right. */
static size_t ref_encode(const bpe_tokenizer *tok, const int32_t *rank_tab, const uint8_t *s, size_t n, int32_t *out) {
    size_t k = 0, nv = (size_t)tok->n_vocab;
    int32_t *w = malloc((n ? n : 1) * sizeof *w);
    for (size_t i = 0; i < n;) {
        size_t e = bpe_chunk_end(s, n, i), L = 0;
        for (size_t j = i; j < e; j++) w[L++] = tok->byte_token[s[j]];
        for (;;) {
            int32_t best = INT32_MAX;
            for (size_t j = 0; j + 1 < L; j++) {
                int32_t r = rank_tab[(size_t)w[j] * nv + (size_t)w[j + 1]];
                if (r >= 0 && r < best) best = r;
            }
            if (best == INT32_MAX) break;
            const bpe_merge *m = &tok->merges[best];
            size_t o = 0;
            for (size_t j = 0; j < L;) {
                if (j + 1 < L && w[j] == m->left && w[j + 1] == m->right) { w[o++] = m->result; j += 2; }
                else w[o++] = w[j++];
            }
            L = o;
        }
        memcpy(out + k, w, L * sizeof *w);
        k += L;
        i = e;
    }
    free(w);
    return k;
}

/* Naive trainer (the reference): every step recounts all pairs of all chunks
 * into a dense [nv, nv] table, takes the largest count (ties: lowest
 * (left, right)) and rewrites every chunk. Returns the number of merges. */
static int ref_train(const uint8_t *s, size_t n, int n_merges, bpe_merge *out) {
    size_t nv = 256 + (size_t)n_merges, nc = 0;
    int32_t *w = malloc((n ? n : 1) * sizeof *w);
    size_t *cb = malloc((n + 1) * sizeof *cb), *ce = malloc((n + 1) * sizeof *ce); /* chunk [begin, end) in w */
    int64_t *cnt = malloc(nv * nv * sizeof *cnt);
    for (size_t i = 0; i < n; nc++) {
        size_t e = bpe_chunk_end(s, n, i);
        cb[nc] = i;
        ce[nc] = e;
        for (size_t j = i; j < e; j++) w[j] = s[j];
        i = e;
    }
    int m = 0;
    for (; m < n_merges; m++) {
        memset(cnt, 0, nv * nv * sizeof *cnt);
        for (size_t c = 0; c < nc; c++)
            for (size_t j = cb[c]; j + 1 < ce[c]; j++) cnt[(size_t)w[j] * nv + (size_t)w[j + 1]]++;
        size_t best = 0;
        for (size_t k = 1; k < nv * nv; k++) if (cnt[k] > cnt[best]) best = k;
        if (cnt[best] == 0) break;
        int32_t a = (int32_t)(best / nv), b = (int32_t)(best % nv), x = 256 + m;
        out[m].left = a; out[m].right = b; out[m].result = x;
        for (size_t c = 0; c < nc; c++) {
            size_t o = cb[c];
            for (size_t j = cb[c]; j < ce[c];) {
                if (j + 1 < ce[c] && w[j] == a && w[j + 1] == b) { w[o++] = x; j += 2; }
                else w[o++] = w[j++];
            }
            ce[c] = o;
        }
    }
    free(w); free(cb); free(ce); free(cnt);
    return m;
}

static void test_train_vs_reference(void) {
    /* two texts: the mixed text, and one full of repeated letters and digit
     * runs where overlapping pairs ("aaaa") and ties are common */
    static const char *const name[2] = { "bpe_train_vs_reference_mixed", "bpe_train_vs_reference_repetitive" };
    for (int t = 0; t < 2; t++) {
        sbuf text = gen_text(5, 20000);
        if (t == 1) {
            tu_rng r = { 11 };
            for (size_t i = 0; i < text.n; i++) text.p[i] = (uint8_t)"aaab 00 ba\n"[tu_next(&r) % 11];
        }
        const int nm = 300;
        bpe_merge *ref = malloc(nm * sizeof *ref);
        int nref = ref_train(text.p, text.n, nm, ref);
        bpe_tokenizer tok;
        moe_error err = { "" };
        if (bpe_train(&tok, text.p, text.n, 256 + nm + 2, &err) != MOE_OK) {
            tu_fail(name[t], "%s", err.msg);
        } else {
            int bad = -1;
            for (int m = 0; m < nref && m < tok.n_merges && bad < 0; m++)
                if (memcmp(&ref[m], &tok.merges[m], sizeof *ref)) bad = m;
            if (nref != tok.n_merges || bad >= 0)
                tu_fail(name[t], "%d merges vs reference %d; first difference at merge %d",
                        tok.n_merges, nref, bad);
            else tu_ok(name[t]);
            bpe_free(&tok);
        }
        free(ref);
        free(text.p);
    }
}

static int same_encoding(const bpe_tokenizer *a, const bpe_tokenizer *b, const uint8_t *s, size_t n, char *why) {
    moe_error err = { "" };
    int32_t *x = malloc((n ? n : 1) * sizeof *x), *y = malloc((n ? n : 1) * sizeof *y);
    size_t kx = 0, ky = 0;
    int ok = 0;
    if (bpe_encode(a, s, n, x, n, &kx, &err) || bpe_encode(b, s, n, y, n, &ky, &err)) { sprintf(why, "%s", err.msg); goto out; }
    if (kx != ky) { sprintf(why, "%zu ids vs %zu", kx, ky); goto out; }
    for (size_t i = 0; i < kx; i++)
        if (x[i] != y[i]) { sprintf(why, "id %zu: %d vs %d", i, x[i], y[i]); goto out; }
    ok = 1;
out:
    free(x);
    free(y);
    return ok;
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* --------------------------------------------------------------- checks */

static void test_chunks(void) {
    static const struct { const char *text; const char *chunks[8]; } cases[] = {
        { "Hello world", { "Hello", " world" } },
        { "I'm 12345 ok", { "I", "'m", " 123", "45", " ok" } },
        { "a  b", { "a", " ", " b" } },
        { "x\n\ny", { "x", "\n", "\n", "y" } },
        { "end.  ", { "end", ".", "  " } },
        { "foo(bar);", { "foo", "(", "bar", ");" } },
        { "Stra\xc3\x9f" "e \xc3\xbc" "ber", { "Stra\xc3\x9f" "e", " \xc3\xbc" "ber" } },
        { "they'll x7 \t\tq", { "they", "'ll", " x", "7", " \t", "\t", "q" } },
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        const uint8_t *t = (const uint8_t *)cases[c].text;
        size_t n = strlen(cases[c].text), i = 0, k = 0;
        int bad = 0;
        while (i < n && !bad) {
            size_t e = bpe_chunk_end(t, n, i);
            const char *want = cases[c].chunks[k++];
            if (!want || strlen(want) != e - i || memcmp(want, t + i, e - i)) {
                tu_fail("bpe_chunks", "case %zu chunk %zu: got \"%.*s\", expected \"%s\"", c, k - 1, (int)(e - i),
                        (const char *)t + i, want ? want : "(end)");
                bad = 1;
            }
            i = e;
        }
        if (!bad && cases[c].chunks[k]) { tu_fail("bpe_chunks", "case %zu: missing chunk \"%s\"", c, cases[c].chunks[k]); bad = 1; }
        if (bad) return;
    }
    tu_ok("bpe_chunks");
}

/* "aaabdaaabac": counts aa 4, ab 2 -> merge (a,a)=256: "Z a b d Z a b a c";
 * now Za 2 and ab 2 tie, lowest (left, right) is (97,98) -> 257:
 * "Z Y d Z Y a c"; ZY 2 -> (256,257)=258: "X d X a c"; all pairs 1, lowest is
 * (97,99) "ac" -> 259; then (100,258) "dX" -> 260, leaving "X V W". */
static void test_hand_example(void) {
    const char *s = "aaabdaaabac";
    bpe_tokenizer tok;
    moe_error err = { "" };
    static const int32_t want[][3] = { { 97, 97, 256 }, { 97, 98, 257 }, { 256, 257, 258 }, { 97, 99, 259 }, { 100, 258, 260 } };
    if (bpe_train(&tok, (const uint8_t *)s, strlen(s), 256 + 5 + 2, &err) != MOE_OK) {
        tu_fail("bpe_hand_example", "train: %s", err.msg);
        return;
    }
    int ok = tok.n_merges == 5 && tok.n_vocab == 263 && tok.bos_id == 261 && tok.eos_id == 262;
    for (int r = 0; ok && r < 5; r++)
        ok = tok.merges[r].left == want[r][0] && tok.merges[r].right == want[r][1] && tok.merges[r].result == want[r][2];
    /* the whole string encodes to "X V W" = 258 260 259 */
    int32_t ids[16];
    size_t k = 0;
    static const int32_t want_ids[] = { 258, 260, 259 };
    if (ok && (bpe_encode(&tok, (const uint8_t *)s, strlen(s), ids, 16, &k, &err) != MOE_OK || k != 3 ||
               memcmp(ids, want_ids, sizeof want_ids))) {
        tu_fail("bpe_hand_example", "encode gave %zu ids (%d %d %d), expected 258 260 259", k, ids[0], ids[1], ids[2]);
    } else if (!ok) {
        tu_fail("bpe_hand_example", "n_merges %d n_vocab %d; merges:", tok.n_merges, tok.n_vocab);
        for (int r = 0; r < tok.n_merges; r++) printf("  (%d,%d)->%d\n", tok.merges[r].left, tok.merges[r].right, tok.merges[r].result);
    } else {
        tu_ok("bpe_hand_example");
    }
    /* merges stop at chunk boundaries: "ab ab ab" has chunks "ab", " ab", " ab" */
    bpe_tokenizer t2;
    const char *s2 = "ab ab ab";
    if (bpe_train(&t2, (const uint8_t *)s2, strlen(s2), 256 + 8 + 2, &err) != MOE_OK) {
        tu_fail("bpe_chunk_boundaries", "train: %s", err.msg);
    } else if (t2.n_merges != 2 || t2.merges[0].left != 'a' || t2.merges[0].right != 'b' ||
               t2.merges[1].left != ' ' || t2.merges[1].right != 256 || t2.n_vocab != 256 + 2 + 2) {
        tu_fail("bpe_chunk_boundaries", "%d merges, first (%d,%d), expected (a,b) then (' ',256) and an early stop",
                t2.n_merges, t2.n_merges ? t2.merges[0].left : -1, t2.n_merges ? t2.merges[0].right : -1);
    } else {
        tu_ok("bpe_chunk_boundaries");
    }
    bpe_free(&t2);
    bpe_free(&tok);
}

static void test_trained(const bpe_tokenizer *tok, const sbuf *text, int vocab) {
    char why[256];
    size_t k = 0;
    if (tok->n_vocab != vocab || tok->n_merges != vocab - 258 || tok->bos_id != vocab - 2 || tok->eos_id != vocab - 1 ||
        tok->token_type[vocab - 1] != BPE_TOKEN_CONTROL || tok->token_type[vocab - 3] != BPE_TOKEN_NORMAL)
        tu_fail("bpe_vocab_size", "n_vocab %d n_merges %d bos %d eos %d, expected %d tokens", tok->n_vocab,
                tok->n_merges, tok->bos_id, tok->eos_id, vocab);
    else tu_ok("bpe_vocab_size");

    if (!round_trip(tok, text->p, text->n, &k, why)) tu_fail("bpe_round_trip_training_text", "%s", why);
    else tu_ok("bpe_round_trip_training_text");
    double bpt = (double)text->n / (double)(k ? k : 1);
    if (bpt > 2.0) tu_ok("bpe_compression");
    else tu_fail("bpe_compression", "%.3f bytes per token on the training text, expected > 2", bpt);

    /* random bytes: all values, invalid UTF-8, NUL; long runs of one class */
    tu_rng r = { 7 };
    int ok = 1;
    for (int trial = 0; trial < 50 && ok; trial++) {
        size_t n = 1 + tu_next(&r) % 3000;
        uint8_t *s = malloc(n);
        int mode = trial % 5;
        for (size_t i = 0; i < n; i++) {
            uint64_t v = tu_next(&r);
            s[i] = mode == 0 ? (uint8_t)v : mode == 1 ? (uint8_t)(0x80 | (v & 0x7F))  /* one long "word" */
                 : mode == 2 ? (uint8_t)" \n\t"[v % 3] : mode == 3 ? (uint8_t)("0123456789 "[v % 11])
                 : text->p[(v % (text->n - 1))];
        }
        if (!round_trip(tok, s, n, NULL, why)) { tu_fail("bpe_round_trip_random_bytes", "trial %d (n %zu): %s", trial, n, why); ok = 0; }
        free(s);
    }
    uint8_t all[512];
    for (int i = 0; i < 512; i++) all[i] = (uint8_t)(i < 256 ? i : 511 - i);
    if (ok && !round_trip(tok, all, 512, NULL, why)) { tu_fail("bpe_round_trip_random_bytes", "all 256 values: %s", why); ok = 0; }
    if (ok) tu_ok("bpe_round_trip_random_bytes");

    moe_error err = { "" };
    size_t n_out = 99;
    if (bpe_encode(tok, NULL, 0, NULL, 0, &n_out, &err) != MOE_OK || n_out != 0) tu_fail("bpe_empty_input", "encode: %s, n_out %zu", err.msg, n_out);
    else if (bpe_decode(tok, NULL, 0, 1, NULL, 0, &n_out, &err) != MOE_OK || n_out != 0) tu_fail("bpe_empty_input", "decode: %s", err.msg);
    else tu_ok("bpe_empty_input");

    /* the heap encoder against the naive reference */
    size_t nv = (size_t)tok->n_vocab;
    int32_t *rank_tab = malloc(nv * nv * sizeof *rank_tab);
    for (size_t i = 0; i < nv * nv; i++) rank_tab[i] = -1;
    for (int32_t m = 0; m < tok->n_merges; m++) rank_tab[(size_t)tok->merges[m].left * nv + (size_t)tok->merges[m].right] = m;
    size_t n = text->n < 200000 ? text->n : 200000;
    int32_t *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
    size_t ka = 0, kb = ref_encode(tok, rank_tab, text->p, n, b);
    bpe_encode(tok, text->p, n, a, n, &ka, &err);
    ok = ka == kb;
    size_t i = 0;
    for (; ok && i < ka; i++) ok = a[i] == b[i];
    /* runs of one letter stress overlapping merges ("aaaa") */
    uint8_t run[300];
    memset(run, 'e', sizeof run);
    for (size_t L = 1; ok && L <= sizeof run; L += 7) {
        ka = 0;
        kb = ref_encode(tok, rank_tab, run, L, b);
        bpe_encode(tok, run, L, a, n, &ka, &err);
        ok = ka == kb && !memcmp(a, b, ka * sizeof *a);
        if (!ok) tu_fail("bpe_encode_vs_reference", "run of %zu 'e': %zu ids vs %zu", L, ka, kb);
    }
    if (ok) tu_ok("bpe_encode_vs_reference");
    else if (i) tu_fail("bpe_encode_vs_reference", "%zu ids vs reference %zu; first difference at id %zu", ka, kb, i - 1);
    free(a);
    free(b);
    free(rank_tab);

    /* cap too small, special tokens, bad ids */
    int32_t ids[4];
    uint8_t bytes[64];
    const char *hello = "hello there";
    moe_status st = bpe_encode(tok, (const uint8_t *)hello, strlen(hello), ids, 1, &n_out, &err);
    int32_t sp[3] = { tok->bos_id, 'h', tok->eos_id };
    size_t m1 = 0, m2 = 0;
    moe_status s1 = bpe_decode(tok, sp, 3, 0, bytes, sizeof bytes, &m1, &err);
    moe_status s2 = bpe_decode(tok, sp, 3, 1, bytes, sizeof bytes, &m2, &err);
    int sp_ok = s1 == MOE_OK && s2 == MOE_OK && m1 == 1 && m2 == 15 && !memcmp(bytes, "<|bos|>h<|eos|>", 15);
    int32_t bad_id = tok->n_vocab;
    err.msg[0] = '\0';
    moe_status s3 = bpe_decode(tok, &bad_id, 1, 0, bytes, sizeof bytes, &m1, &err);
    if (st != MOE_ERR_SHAPE || n_out < 2) tu_fail("bpe_small_cap", "status %d, n_out %zu", st, n_out);
    else if (!sp_ok) tu_fail("bpe_decode_special", "lengths %zu and %zu, statuses %d %d", m1, m2, s1, s2);
    else if (s3 != MOE_ERR_ARG || !err.msg[0]) tu_fail("bpe_decode_bad_id", "status %d", s3);
    else tu_ok("bpe_cap_special_bad_id");
}

static void test_gguf(const bpe_tokenizer *tok, const sbuf *text) {
    char why[256];
    moe_error err = { "" };
    /* the byte map is a bijection onto printable code points */
    int ok = 1;
    for (int b = 0; b < 256 && ok; b++) ok = bpe_codepoint_to_byte(bpe_byte_to_codepoint((uint8_t)b)) == b;
    if (!ok || bpe_byte_to_codepoint(' ') != 0x120 || bpe_byte_to_codepoint('\n') != 0x10A || bpe_byte_to_codepoint(0xAD) != 0x143)
        tu_fail("bpe_byte_map", "not GPT-2's map");
    else tu_ok("bpe_byte_map");

    bpe_gguf_vocab v;
    if (bpe_export_gguf(tok, &v, &err) != MOE_OK) { tu_fail("bpe_gguf_export", "%s", err.msg); return; }
    /* spot checks of the spelling */
    size_t k = 0;
    int32_t id_the = -1;
    bpe_encode(tok, (const uint8_t *)" the", 4, &id_the, 1, &k, &err);
    if (v.n_tokens != (size_t)tok->n_vocab || v.n_merges != (size_t)tok->n_merges ||
        strcmp(v.tokens[' '], "\xc4\xa0") || strcmp(v.tokens['\n'], "\xc4\x8a") || strcmp(v.tokens['a'], "a") ||
        strcmp(v.tokens[tok->bos_id], "<|bos|>") || v.token_type[tok->bos_id] != 3 || v.token_type[0] != 1 ||
        k != 1 || strcmp(v.tokens[id_the], "\xc4\xa0the"))
        tu_fail("bpe_gguf_export", "unexpected spellings (\" the\" -> %d \"%s\")", id_the, k == 1 ? v.tokens[id_the] : "?");
    else tu_ok("bpe_gguf_export");

    bpe_tokenizer t2;
    if (bpe_import_gguf(&t2, (const char *const *)v.tokens, NULL, v.token_type, v.n_tokens,
                        (const char *const *)v.merges, NULL, v.n_merges, v.bos_id, v.eos_id, &err) != MOE_OK) {
        tu_fail("bpe_gguf_round_trip", "import: %s", err.msg);
    } else {
        ok = t2.n_vocab == tok->n_vocab && t2.n_merges == tok->n_merges && t2.bos_id == tok->bos_id &&
             t2.eos_id == tok->eos_id && !memcmp(t2.byte_token, tok->byte_token, sizeof t2.byte_token) &&
             !memcmp(t2.merges, tok->merges, (size_t)t2.n_merges * sizeof *t2.merges) &&
             !memcmp(t2.token_type, tok->token_type, (size_t)t2.n_vocab * sizeof *t2.token_type) &&
             !memcmp(t2.token_off, tok->token_off, ((size_t)t2.n_vocab + 1) * sizeof *t2.token_off) &&
             !memcmp(t2.token_bytes, tok->token_bytes, tok->token_off[tok->n_vocab]);
        uint8_t all[256];
        for (int i = 0; i < 256; i++) all[i] = (uint8_t)(255 - i);
        if (!ok) tu_fail("bpe_gguf_round_trip", "imported tables differ");
        else if (!same_encoding(tok, &t2, text->p, text->n, why) || !same_encoding(tok, &t2, all, 256, why))
            tu_fail("bpe_gguf_round_trip", "encodings differ: %s", why);
        else tu_ok("bpe_gguf_round_trip");
        bpe_free(&t2);
    }

    /* with explicit lengths (strings not NUL-terminated in a GGUF file) */
    size_t *tl = malloc(v.n_tokens * sizeof *tl), *ml = malloc(v.n_merges * sizeof *ml);
    for (size_t i = 0; i < v.n_tokens; i++) tl[i] = strlen(v.tokens[i]);
    for (size_t i = 0; i < v.n_merges; i++) ml[i] = strlen(v.merges[i]);
    if (bpe_import_gguf(&t2, (const char *const *)v.tokens, tl, v.token_type, v.n_tokens,
                        (const char *const *)v.merges, ml, v.n_merges, v.bos_id, v.eos_id, &err) != MOE_OK ||
        !same_encoding(tok, &t2, text->p, text->n < 50000 ? text->n : 50000, why))
        tu_fail("bpe_gguf_import_lengths", "%s", err.msg);
    else tu_ok("bpe_gguf_import_lengths");
    bpe_free(&t2);
    free(tl);
    free(ml);

    /* bad vocabularies: each must fail with MOE_ERR_FORMAT and a message */
    const char **tk = malloc(v.n_tokens * sizeof *tk), **mg = malloc((v.n_merges + 1) * sizeof *mg);
    int32_t *ty = malloc(v.n_tokens * sizeof *ty);
    struct { const char *name; int what; } bad[] = {
        { "unknown token in a merge", 0 }, { "duplicate token", 1 }, { "merge result not in vocabulary", 2 },
        { "merge without a space", 3 }, { "missing byte token", 4 }, { "character outside the byte map", 5 },
        { "token type 9", 6 }, { "repeated merge", 7 }, { "control token in a merge", 8 },
        { "bos_id out of range", 9 }, { "text token spelled like a byte token", 10 },
    };
    char buf[64];
    ok = 1;
    for (size_t c = 0; c < sizeof bad / sizeof *bad && ok; c++) {
        memcpy(tk, v.tokens, v.n_tokens * sizeof *tk);
        memcpy(mg, v.merges, v.n_merges * sizeof *mg);
        memcpy(ty, v.token_type, v.n_tokens * sizeof *ty);
        size_t nm = v.n_merges;
        int32_t bos = v.bos_id;
        switch (bad[c].what) {
        case 0: mg[3] = "\xc4\xa0zzqq e"; break;
        case 1: tk[300] = tk[299]; break;
        case 2: /* two existing tokens whose concatenation "QZ" is not one */
            snprintf(buf, sizeof buf, "%s %s", tk['Q'], tk['Z']);
            mg[nm++] = buf;
            break;
        case 3: mg[5] = "abc"; break;
        case 4: tk['x'] = "<|x|>"; ty['x'] = 3; break;
        case 5: tk[280] = "a b"; break;
        case 6: ty[10] = 9; break;
        case 7: mg[nm++] = mg[0]; break;
        case 8: snprintf(buf, sizeof buf, "%s %s", v.tokens[v.bos_id], v.tokens['a']); mg[0] = buf; break;
        case 9: bos = (int32_t)v.n_tokens; break;
        case 10: tk[v.bos_id] = tk['a']; break;
        }
        err.msg[0] = '\0';
        moe_status st = bpe_import_gguf(&t2, tk, NULL, ty, v.n_tokens, mg, NULL, nm, bos, v.eos_id, &err);
        if (st != MOE_ERR_FORMAT || !err.msg[0] || t2.n_vocab != 0) {
            tu_fail("bpe_gguf_bad_vocab", "%s: status %d, message \"%s\"", bad[c].name, st, err.msg);
            ok = 0;
        } else if (getenv("BPE_SHOW")) {
            printf("  %s -> %s\n", bad[c].name, err.msg);
        }
        bpe_free(&t2);
    }
    if (ok) tu_ok("bpe_gguf_bad_vocab");
    free(tk);
    free(mg);
    free(ty);
    bpe_gguf_vocab_free(&v);
}

static void test_bad_args(void) {
    moe_error err = { "" };
    bpe_tokenizer tok;
    const uint8_t s[] = "abc";
    struct { const char *name; moe_status st; } c[4];
    c[0].name = "vocab_size 257"; c[0].st = bpe_train(&tok, s, 3, 257, &err);
    c[1].name = "vocab_size -1"; c[1].st = bpe_train(&tok, s, 3, -1, &err);
    c[2].name = "NULL text, n 3"; c[2].st = bpe_train(&tok, NULL, 3, 300, &err);
    c[3].name = "NULL tok"; c[3].st = bpe_train(NULL, s, 3, 300, &err);
    for (int i = 0; i < 4; i++)
        if (c[i].st != MOE_ERR_ARG) { tu_fail("bpe_bad_args", "%s: status %d", c[i].name, c[i].st); return; }
    /* vocab_size 258: no merges, still round trips; NULL text with n = 0 trains */
    if (bpe_train(&tok, NULL, 0, 258, &err) != MOE_OK || tok.n_vocab != 258 || tok.n_merges != 0) {
        tu_fail("bpe_bad_args", "empty training text: %s", err.msg);
        return;
    }
    size_t k;
    int32_t ids[4];
    moe_status e1 = bpe_encode(&tok, NULL, 3, ids, 4, &k, &err);
    moe_status e2 = bpe_encode(&tok, s, 3, NULL, 4, &k, &err);
    bpe_free(&tok);
    moe_status e3 = bpe_encode(&tok, s, 3, ids, 4, &k, &err); /* freed, empty */
    if (e1 != MOE_ERR_ARG || e2 != MOE_ERR_ARG || e3 != MOE_ERR_ARG) tu_fail("bpe_bad_args", "encode statuses %d %d %d", e1, e2, e3);
    else tu_ok("bpe_bad_args");
}

static int bench(double mb, int vocab) {
    sbuf t = gen_text(99, (size_t)(mb * 1e6));
    bpe_tokenizer tok;
    moe_error err = { "" };
    double t0 = now_s();
    if (bpe_train(&tok, t.p, t.n, vocab, &err) != MOE_OK) { printf("train: %s\n", err.msg); return 1; }
    double t1 = now_s();
    int32_t *ids = malloc(t.n * sizeof *ids);
    size_t k = 0;
    bpe_encode(&tok, t.p, t.n, ids, t.n, &k, &err);
    double t2 = now_s();
    uint8_t *back = malloc(t.n);
    size_t m = 0;
    bpe_decode(&tok, ids, k, 0, back, t.n, &m, &err);
    double t3 = now_s();
    printf("text %.2f MB, vocab %d: train %.3f s (%.2f MB/s), encode %.3f s (%.1f MB/s), decode %.4f s, %.3f bytes/token, exact %d\n",
           (double)t.n / 1e6, tok.n_vocab, t1 - t0, (double)t.n / 1e6 / (t1 - t0), t2 - t1, (double)t.n / 1e6 / (t2 - t1),
           t3 - t2, (double)t.n / (double)k, m == t.n && !memcmp(back, t.p, t.n));
    free(ids); free(back); free(t.p);
    bpe_free(&tok);
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "--bench"))
        return bench(argc > 2 ? atof(argv[2]) : 5.0, argc > 3 ? atoi(argv[3]) : 2000);
    test_chunks();
    test_hand_example();
    test_train_vs_reference();
    sbuf text = gen_text(1, 300000);
    const int vocab = 1000;
    bpe_tokenizer tok, tok2;
    moe_error err = { "" };
    if (bpe_train(&tok, text.p, text.n, vocab, &err) != MOE_OK) {
        tu_fail("bpe_train", "%s", err.msg);
    } else {
        test_trained(&tok, &text, vocab);
        if (bpe_train(&tok2, text.p, text.n, vocab, &err) != MOE_OK) tu_fail("bpe_deterministic", "%s", err.msg);
        else {
            if (tok2.n_merges != tok.n_merges || memcmp(tok.merges, tok2.merges, (size_t)tok.n_merges * sizeof *tok.merges))
                tu_fail("bpe_deterministic", "two trainings gave different merges");
            else tu_ok("bpe_deterministic");
            bpe_free(&tok2);
        }
        test_gguf(&tok, &text);
        bpe_free(&tok);
    }
    test_bad_args();
    free(text.p);
    return tu_exit_code();
}
