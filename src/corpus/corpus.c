/* corpus.c: the built-in multi-domain corpus generator (see corpus.h for the
 * domains and how each is built): the corpus API, the mixing of domains,
 * and the two small domains, arith and records.
 * Not for: reading the user's text (data.c); the prose and code generators
 * (corpus_prose.c, corpus_code.c); the text builder (corpus_gen.h).
 * Everything here is a pure function of (domain, target size, seed); the word
 * lists are constant. */
#include "corpus/corpus.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/rng.h"
#include "corpus/corpus_gen.h"

/* ------------------------------------------------------------ arith, records */

static void arith_doc(gen *g) {
    for (int i = between(g, 30, 55); i > 0; i--) {
        int op = (int)below(g, 3);
        uint32_t a, b, c;
        if (op == 2) {
            a = below(g, pct(g, 50) ? 10 : 100); b = below(g, pct(g, 50) ? 10 : 100); c = a * b;
        } else {
            a = below(g, (uint32_t[]){10, 100, 1000}[below(g, 3)]);
            b = below(g, (uint32_t[]){10, 100, 1000}[below(g, 3)]);
            if (op == 1 && b > a) { uint32_t t = a; a = b; b = t; }
            c = op == 0 ? a + b : a - b;
        }
        put_uint(g, a); put(g, op == 0 ? " + " : op == 1 ? " - " : " * "); put_uint(g, b);
        put(g, " = "); put_uint(g, c); endline(g);
    }
}
static void put_lower(gen *g, const char *s) {
    char b[64];
    size_t i = 0;
    for (; s[i] && i < sizeof b - 1; i++) b[i] = (char)(s[i] >= 'A' && s[i] <= 'Z' ? s[i] + 32 : s[i]);
    b[i] = 0;
    put(g, b);
}
static void records_doc(gen *g) {
    static const char *const domain[] = {"example.com", "mail.org", "post.net", "webmail.io",
                                         "inbox.de", "letters.co"};
    static const char *const city2[] = {"Hamburg", "Munich", "Cologne", "Dresden", "Leipzig",
                                        "Bremen", "Zurich", "Basel", "Lyon", "Nantes"};
    for (int i = between(g, 3, 6); i > 0; i--) {
        int fem = pct(g, 50), de = pct(g, 30);
        const char *first = de ? (fem ? PICK_N(g, corpus_de_female, corpus_n_de_female)
                                      : PICK_N(g, corpus_de_male, corpus_n_de_male))
                               : (fem ? PICK_N(g, corpus_female, corpus_n_female)
                                      : PICK_N(g, corpus_male, corpus_n_male));
        const char *last = PICK_N(g, corpus_surname, corpus_n_surname);
        put(g, "{\"name\": \""); put(g, first); put(g, " "); put(g, last);
        put(g, "\", \"age\": "); put_uint(g, (uint64_t)between(g, 18, 90));
        put(g, ", \"city\": \""); put(g, pct(g, 80) ? PICK_N(g, corpus_city, corpus_n_city) : PICK(g, city2));
        put(g, "\", \"email\": \"");
        int form = (int)below(g, 3);
        if (form == 1) { char f[2] = {(char)(first[0] + 32), 0}; put(g, f); } else put_lower(g, first);
        if (form != 2 || pct(g, 50)) put(g, ".");
        put_lower(g, last);
        if (form == 2) { put_uint(g, below(g, 10)); put_uint(g, below(g, 10)); }
        put(g, "@"); put(g, PICK(g, domain));
        put(g, "\", \"job\": \""); put(g, PICK_N(g, corpus_job, corpus_n_job));
        put(g, "\", \"active\": "); put(g, pct(g, 70) ? "true" : "false");
        put(g, "}"); endline(g);
    }
}

/* ------------------------------------------------------------ API */

static void document(gen *g, int d) {
    g->space = 0;
    g->cap_next = 0;
    switch (d) {
    case CORPUS_ENGLISH: corpus_english_doc(g); break;
    case CORPUS_GERMAN: corpus_german_doc(g); break;
    case CORPUS_CODE: corpus_code_doc(g); break;
    case CORPUS_ARITH: arith_doc(g); break;
    default: records_doc(g); break;
    }
}

static const char *const NAMES[CORPUS_N_DOMAINS] = {"english", "german", "code", "arith", "records"};
static const char *const PROMPTS[CORPUS_N_DOMAINS] = {"Once there was a", "Es war einmal ein",
                                                      "def ", "37 + 85 =", "{\"name\": \""};

const char *corpus_domain_name(int d) {
    return d >= 0 && d < CORPUS_N_DOMAINS ? NAMES[d] : "?";
}
int corpus_domain_from_name(const char *name) {
    for (int d = 0; name && d < CORPUS_N_DOMAINS; d++) if (!strcmp(name, NAMES[d])) return d;
    return -1;
}
const char *corpus_domain_prompt(int d) {
    return d >= 0 && d < CORPUS_N_DOMAINS ? PROMPTS[d] : "";
}

/* domain -1: rounds of all domains in random order */
static moe_status generate(uint8_t **text, size_t *n, int domain, size_t target,
                           uint64_t seed, corpus_docs *docs, moe_error *err) {
    if (!text || !n) return moe_err(err, MOE_ERR_ARG, "corpus: NULL output");
    *text = NULL;
    *n = 0;
    if (target == 0 || target > CORPUS_MAX_BYTES)
        return moe_err(err, MOE_ERR_ARG, "corpus: target size %zu bytes is outside 1 .. %zu",
                       target, CORPUS_MAX_BYTES);
    gen g = {0};
    moe_rng_seed(&g.r, seed);
    g.cap = target + 4096;
    g.p = malloc(g.cap);
    if (!g.p) return moe_err(err, MOE_ERR_NOMEM, "corpus: out of memory for %zu bytes", target);
    int order[CORPUS_N_DOMAINS], at = CORPUS_N_DOMAINS;
    while (g.n < target && !g.oom) {
        int d = domain;
        if (d < 0) {
            if (at == CORPUS_N_DOMAINS) { /* a new round: Fisher-Yates shuffle */
                for (int i = 0; i < CORPUS_N_DOMAINS; i++) order[i] = i;
                for (int i = CORPUS_N_DOMAINS - 1; i > 0; i--) {
                    int j = (int)below(&g, (uint32_t)i + 1), t = order[i];
                    order[i] = order[j];
                    order[j] = t;
                }
                at = 0;
            }
            d = order[at++];
        }
        if (g.n) raw(&g, "\n", 1);
        if (docs && !g.oom) {
            if (docs->n == docs->cap) {
                size_t nc = docs->cap ? 2 * docs->cap : 1024;
                corpus_doc *nd = realloc(docs->d, nc * sizeof *nd);
                if (!nd) { g.oom = 1; break; }
                docs->d = nd;
                docs->cap = nc;
            }
            docs->d[docs->n++] = (corpus_doc){g.n, d};
        }
        document(&g, d);
    }
    if (g.oom) {
        free(g.p);
        return moe_err(err, MOE_ERR_NOMEM, "corpus: out of memory at %zu bytes", g.n);
    }
    g.p[g.n] = 0; /* raw() keeps one byte spare */
    *text = g.p;
    *n = g.n;
    return MOE_OK;
}

moe_status corpus_generate(uint8_t **text, size_t *n, size_t target_bytes, uint64_t seed,
                           moe_error *err) {
    return generate(text, n, -1, target_bytes, seed, NULL, err);
}

moe_status corpus_generate_docs(uint8_t **text, size_t *n, corpus_docs *docs, size_t target_bytes,
                                uint64_t seed, moe_error *err) {
    if (!docs) return moe_err(err, MOE_ERR_ARG, "corpus: NULL document list");
    memset(docs, 0, sizeof *docs);
    moe_status st = generate(text, n, -1, target_bytes, seed, docs, err);
    if (st != MOE_OK) { free(docs->d); memset(docs, 0, sizeof *docs); }
    return st;
}

moe_status corpus_generate_domain(uint8_t **text, size_t *n, int domain, size_t target_bytes,
                                  uint64_t seed, moe_error *err) {
    if (domain < 0 || domain >= CORPUS_N_DOMAINS) {
        if (text) *text = NULL;
        if (n) *n = 0;
        return moe_err(err, MOE_ERR_ARG, "corpus: domain %d is outside 0 .. %d", domain,
                       CORPUS_N_DOMAINS - 1);
    }
    /* a stream of its own per domain */
    return generate(text, n, domain, target_bytes,
                    seed ^ (0xD1B54A32D192ED03ull * (uint64_t)(domain + 1)), NULL, err);
}
