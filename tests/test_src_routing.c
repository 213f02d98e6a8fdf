/* test_src_routing.c: the source of every training token (src_routing.c):
 * the bytes data_read_sources read are tagged by --data path, or by the
 * entry of a single folder; the token map from a real tokenizer follows the
 * byte tags; sources.txt round-trips and a damaged one falls back to one
 * source; the built-in corpus is tagged by domain; I(source; expert) of
 * known tables. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "corpus/corpus.h"
#include "testutil.h"
#include "text/tokenizer.h"
#include "train/data.h"
#include "train/sources.h"
#include "train/src_routing.h"

static void put(const char *path, const char *s) {
    FILE *f = fopen(path, "wb");
    fputs(s, f);
    fclose(f);
}

int main(void) {
    char dir[] = "/tmp/moe_test_src_XXXXXX";
    if (!mkdtemp(dir)) { tu_fail("src/setup", "mkdtemp"); return 1; }
    char a[256], b[256], sub[256], c[256], d[256];
    snprintf(a, sizeof a, "%s/a.txt", dir);
    snprintf(sub, sizeof sub, "%s/b", dir);
    snprintf(b, sizeof b, "%s/b/one.txt", dir);
    snprintf(c, sizeof c, "%s/b/two.txt", dir);
    snprintf(d, sizeof d, "%s/sources.txt", dir);
    mkdir(sub, 0777);
    put(a, "alpha alpha alpha\nthe quick brown fox\n");
    put(b, "int main(void) { return 0; }\n");
    put(c, "for (int i = 0; i < n; i++) x += i;\n");
    moe_error err;

    /* two paths: the same bytes as one data_read_sources call, tagged 0 then 1 */
    const char *paths[2] = {a, sub};
    uint8_t *t1 = NULL, *t2 = NULL;
    size_t n1 = 0, n2 = 0;
    src_text st;
    data_sources ds;
    memset(&ds, 0, sizeof ds);
    moe_status s2 = data_read_sources(&t1, &n1, &ds, paths, 2, 0, &err);
    moe_status s1 = s2 == MOE_OK ? src_tags_files(&st, n1, &ds, paths, 2, &err) : s2;
    data_sources_free(&ds);
    size_t la = strlen("alpha alpha alpha\nthe quick brown fox\n");
    int tags_ok = s1 == MOE_OK && st.n_src == 2;
    for (size_t i = 0; tags_ok && i < n1; i++) tags_ok = st.tag[i] == (i < la + 2 ? 0 : 1); /* the "\n\n" after a file is its own */
    if (s1 == MOE_OK && tags_ok && !strcmp(st.names[1], sub)) tu_ok("src/files_two_paths");
    else tu_fail("src/files_two_paths", "status %d/%d, tags %d: %s", s1, s2, tags_ok, err.msg);

    /* the token map of a trained tokenizer follows the tags */
    moe_tokenizer *tok = NULL;
    if (s1 == MOE_OK && moe_tokenizer_train(&tok, (const char *)t1, n1, 300, &err) == MOE_OK) {
        int32_t *ids = malloc(sizeof(int32_t) * (n1 + 1));
        size_t ni = 0;
        moe_tokenizer_encode(tok, (const char *)t1, n1, ids, n1 + 1, &ni, &err);
        src_map m;
        int ok = src_map_build(&m, &st, n1, &tok->bpe, ids, ni, &err) == MOE_OK;
        /* decode the tokens one by one: each token's first byte has its tag */
        size_t off = 0, bad = 0;
        for (size_t i = 0; ok && i < ni; i++) {
            if (m.src_of[i] != st.tag[off]) bad++;
            off += tok->bpe.token_off[ids[i] + 1] - tok->bpe.token_off[ids[i]];
        }
        if (ok && off == n1 && bad == 0 && m.src_of[0] == 0 && m.src_of[ni - 1] == 1) tu_ok("src/token_map");
        else tu_fail("src/token_map", "ok %d, %zu of %zu bytes, %zu tokens mis-tagged", ok, off, n1, bad);
        /* round trip of sources.txt, and a damaged file */
        src_map back;
        int rt = ok && src_map_save(&m, d, &err) == MOE_OK && src_map_load(&back, d, ni, &err) == MOE_OK &&
                 back.n_src == 2 && !memcmp(back.src_of, m.src_of, sizeof(int32_t) * ni) &&
                 !strcmp(back.names[0], m.names[0]);
        if (rt) src_map_free(&back);
        if (rt) tu_ok("src/map_roundtrip"); else tu_fail("src/map_roundtrip", "%s", err.msg);
        put(d, "moe-sources 1 2 3 5\na\nb\n0 0\n9 1\n");
        int fb = src_map_load(&back, d, ni, &err) == MOE_OK && back.n_src == 1 && !strcmp(back.names[0], "all") &&
                 back.src_of[ni - 1] == 0;
        src_map_free(&back);
        if (fb) tu_ok("src/map_damaged"); else tu_fail("src/map_damaged", "a wrong sources.txt was trusted");
        src_map_free(&m);
        free(ids);
        moe_tokenizer_free(tok);
    } else tu_fail("src/token_map", "tokenizer: %s", err.msg);
    free(t1);
    free(t2);
    src_text_free(&st);

    /* one folder: its entries are the sources, same bytes as data_read_sources */
    const char *one[1] = {dir};
    unlink(d);
    memset(&ds, 0, sizeof ds);
    s2 = data_read_sources(&t1, &n1, &ds, one, 1, 0, &err);
    s1 = s2 == MOE_OK ? src_tags_files(&st, n1, &ds, one, 1, &err) : s2;
    data_sources_free(&ds);
    if (s1 == MOE_OK && s2 == MOE_OK && st.n_src == 2 &&
        !strcmp(st.names[0], "a.txt") && !strcmp(st.names[1], "b") && st.tag[0] == 0 && st.tag[n1 - 1] == 1)
        tu_ok("src/folder_entries");
    else tu_fail("src/folder_entries", "status %d/%d, %zu vs %zu bytes, %d sources", s1, s2, n1, n2, st.n_src);
    free(t1);
    free(t2);
    src_text_free(&st);

    /* the built-in corpus, tagged by domain */
    corpus_docs docs;
    s1 = corpus_generate_docs(&t1, &n1, &docs, 20000, 7, &err);
    if (s1 == MOE_OK) { s1 = src_tags_corpus(&st, n1, &docs, &err); free(docs.d); }
    s2 = corpus_generate(&t2, &n2, 20000, 7, &err);
    int seen[CORPUS_N_DOMAINS] = {0};
    for (size_t i = 0; s1 == MOE_OK && i < n1; i++) if (st.tag[i] < CORPUS_N_DOMAINS) seen[st.tag[i]] = 1;
    int all = 1;
    for (int i = 0; i < CORPUS_N_DOMAINS; i++) all &= seen[i];
    /* a JSON record line belongs to "records" */
    const char *rec = s1 == MOE_OK ? strstr((const char *)t1, "{\"name\": \"") : NULL;
    if (s1 == MOE_OK && s2 == MOE_OK && n1 == n2 && !memcmp(t1, t2, n1) && all && rec &&
        !strcmp(st.names[st.tag[rec - (const char *)t1]], "records"))
        tu_ok("src/corpus_domains");
    else tu_fail("src/corpus_domains", "status %d/%d, bytes %zu/%zu, every domain %d", s1, s2, n1, n2, all);
    free(t1);
    free(t2);
    src_text_free(&st);

    /* I(S; E): independent -> 0; a perfect 1:1 map of 4 sources -> 2 bits */
    int64_t ind[2 * 4] = {10, 20, 30, 40, 5, 10, 15, 20};
    int64_t diag[4 * 4] = {7, 0, 0, 0, 0, 7, 0, 0, 0, 0, 7, 0, 0, 0, 0, 7};
    double m0 = src_mutual_information(ind, 2, 4), m2 = src_mutual_information(diag, 4, 4);
    if (fabs(m0) < 1e-12 && fabs(m2 - 2.0) < 1e-12) tu_ok("src/mutual_information");
    else tu_fail("src/mutual_information", "%g (want 0), %g (want 2)", m0, m2);

    unlink(a); unlink(b); unlink(c); unlink(d); rmdir(sub); rmdir(dir);
    return tu_exit_code();
}
