/* corpus_api.c: the public face of the built-in corpus (corpus.h): domain
 * names, prompts and text for the CLI's demo and sampling. */
#include "moe.h"
#include "core/error.h"
#include "corpus/corpus.h"

int moe_corpus_n_domains(void) { return CORPUS_N_DOMAINS; }

const char *moe_corpus_domain_name(int d) {
    return d >= 0 && d < CORPUS_N_DOMAINS ? corpus_domain_name(d) : "all";
}

const char *moe_corpus_domain_prompt(int d) {
    return d >= 0 && d < CORPUS_N_DOMAINS ? corpus_domain_prompt(d) : "";
}

moe_status moe_corpus_text(char **text, size_t *n, int domain, size_t bytes, uint64_t seed, moe_error *err) {
    uint8_t *t = NULL;
    moe_status st;
    if (!text || !n) return moe_err(err, MOE_ERR_ARG, "moe_corpus_text: %s is NULL", text ? "n" : "text");
    *text = NULL;
    if (domain < -1 || domain >= CORPUS_N_DOMAINS)
        return moe_err(err, MOE_ERR_ARG, "corpus: domain %d outside -1..%d", domain, CORPUS_N_DOMAINS - 1);
    if (domain < 0) st = corpus_generate(&t, n, bytes, seed, err);
    else st = corpus_generate_domain(&t, n, domain, bytes, seed, err);
    *text = (char *)t;
    return st;
}
