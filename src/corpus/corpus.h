/* corpus.h: a built-in, seeded generator of a multi-domain text corpus
 * (internal).
 *
 * For: giving `moe train` something to learn when the user brings no text,
 * and giving the demo text whose domains are easy to tell apart, so that a
 * small MoE language model trained for a few minutes visibly learns and its
 * experts can specialise (a domain-by-expert routing table, samples per
 * domain). Not for: real language modelling data, reading files (data.h).
 *
 * Output. UTF-8 text made of whole documents. Each document belongs to one
 * domain, ends with "\n" and contains no blank line; documents are separated
 * by one blank line, so the text reads "doc\n\ndoc\n\n...doc\n" and splitting
 * it on "\n\n" gives back the documents. Generation stops at the first
 * document boundary at or after target_bytes, so n is target_bytes plus less
 * than one document (documents are 100 bytes to ~2 KB, ~550 on average).
 * The same (target_bytes, seed) always gives the same bytes, on every
 * platform: everything comes from one splitmix64 stream (core/rng.h).
 *
 * The domains and how they are built:
 *   english  prose from sentence templates over word lists (~780 distinct words:
 *            names, jobs, places, things, animals, adjectives split by what
 *            they describe, verbs in the past tense). Two kinds of document:
 *            a short story ("Once there was a ... named ..."; a main character
 *            referred to by name, pronoun or job; motion, action, dialogue,
 *            "because"/"when" clauses, a second character, an ending) in 2-3
 *            paragraphs, and a news item (a headline line, then sentences
 *            about councils, prices, weather, police reports, quotes with
 *            names, ages, numbers, days and months).
 *   german   the same two kinds in German with its own vocabulary (~900
 *            distinct words; UTF-8: ä ö ü ß) and grammar: nouns with
 *            gender, articles and adjective
 *            endings declined for nominative / accusative / dative, the
 *            contractions zum, zur, im, ins, am, beim, vom; verb-second word
 *            order after a fronted time phrase, verb-final subordinate
 *            clauses (weil, als, dass) and relative clauses (der ... wohnte).
 *   code     Python: a function (def name(params): docstring, statements,
 *            return) or a small class (__init__ and methods). Statements come
 *            from a recursive generator that tracks which variables exist and
 *            whether they hold an int or a list, so names are used after they
 *            are defined: assignments, +=, for over range()/len() or items,
 *            while with a counter, if/elif/else, append, print, break and
 *            continue, comments; 4-space indentation, blocks nested up to two
 *            deep inside a function; a block never holds only comments.
 *   arith    lines "a + b = c", "a - b = c" (a >= b) and "a * b = c" with
 *            1-3 digit operands (1-2 digits for *), always correct.
 *   records  JSON lines with one schema, in this key order:
 *            {"name": "First Last", "age": N, "city": "...",
 *             "email": "...", "job": "...", "active": true|false}
 *            where the email is derived from the name (first.last@..., or
 *            f.last@..., or first.last + 2 digits @...), lower case.
 *
 * Mixed corpora (corpus_generate) take the domains in rounds: each round is a
 * random permutation of the five domains, one document each, so every domain
 * gets a fifth of the documents (and, by design of the document lengths,
 * roughly a fifth of the bytes each).
 */
#ifndef MOE_CORPUS_CORPUS_H
#define MOE_CORPUS_CORPUS_H

#include <stddef.h>
#include <stdint.h>

#include "moe.h"

typedef enum corpus_domain {
    CORPUS_ENGLISH = 0, /* stories and news in English */
    CORPUS_GERMAN,      /* stories and news in German (UTF-8) */
    CORPUS_CODE,        /* Python functions and classes */
    CORPUS_ARITH,       /* "a op b = c" lines, correct */
    CORPUS_RECORDS,     /* JSON lines, one schema */
    CORPUS_N_DOMAINS    /* append new domains above this line */
} corpus_domain;

/* Largest target_bytes accepted (4 GiB, the limit of data_read_sources). */
#define CORPUS_MAX_BYTES ((size_t)1 << 32)

/* "english", "german", "code", "arith", "records"; "?" out of range. */
const char *corpus_domain_name(int d);

/* The domain named name (as above), or -1. */
int corpus_domain_from_name(const char *name);

/* A short typical opening of a document of that domain, to prompt sampling
 * ("Once there was a", "Es war einmal ein", "def ", "37 + 85 =",
 * "{\"name\": \""); "" out of range. */
const char *corpus_domain_prompt(int domain);

/* Generates documents of all domains, interleaved (see above), until the text
 * has at least target_bytes bytes. *text gets a malloc'd buffer (the caller
 * frees it; it is NUL-terminated, the NUL not counted in *n). Errors:
 * NULL outputs, target_bytes 0 or > CORPUS_MAX_BYTES (MOE_ERR_ARG); out of
 * memory. On failure *text is NULL and *n is 0. */
moe_status corpus_generate(uint8_t **text, size_t *n, size_t target_bytes,
                           uint64_t seed, moe_error *err);

/* Where each document of a mixed corpus starts and its domain: what the
 * trainer tags tokens with (per-domain routing statistics). */
typedef struct corpus_doc {
    size_t start; /* byte offset of the document's first byte */
    int domain;   /* corpus_domain */
} corpus_doc;
typedef struct corpus_docs {
    corpus_doc *d; /* [n] in text order; malloc'd, the caller frees d */
    size_t n, cap;
} corpus_docs;

/* corpus_generate, also listing the documents (the same bytes). */
moe_status corpus_generate_docs(uint8_t **text, size_t *n, corpus_docs *docs,
                                size_t target_bytes, uint64_t seed, moe_error *err);

/* The same, with documents of one domain only. The stream for (domain, seed)
 * is not the one corpus_generate uses for seed, so held-out text is best
 * taken with another seed anyway. Errors as above, and a domain out of range
 * (MOE_ERR_ARG). */
moe_status corpus_generate_domain(uint8_t **text, size_t *n, int domain,
                                  size_t target_bytes, uint64_t seed,
                                  moe_error *err);

#endif /* MOE_CORPUS_CORPUS_H */
