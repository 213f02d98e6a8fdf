/* src_routing.c: the source of every training token and the per-source routing
 * of the validation text (see src_routing.h). */
#include "train/src_routing.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/atomic_file.h"
#include "core/error.h"
#include "corpus/corpus.h"

static char *dup_clean(const char *s) {
    size_t n = strlen(s);
    if (n > 200) n = 200;
    char *d = malloc(n + 1);
    if (!d) return NULL;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        d[i] = c < 0x20 || c == 0x7f ? '?' : (char)c;
    }
    d[n] = 0;
    return d;
}

void src_text_free(src_text *s) {
    if (!s) return;
    for (int i = 0; i < s->n_src; i++) free(s->names[i]);
    free(s->names);
    free(s->tag);
    memset(s, 0, sizeof *s);
}

static moe_status names_alloc(char ***names, int S, moe_error *err) {
    *names = calloc((size_t)S, sizeof(char *));
    return *names ? MOE_OK : moe_err(err, MOE_ERR_NOMEM, "sources: out of memory");
}

/* One source for the whole text. */
static moe_status one_source(src_text *s, size_t n, const char *name, moe_error *err) {
    s->n_src = 1;
    if (names_alloc(&s->names, 1, err)) return MOE_ERR_NOMEM;
    s->names[0] = dup_clean(name);
    s->tag = calloc(n + 1, 1);
    if (!s->names[0] || !s->tag) { src_text_free(s); return moe_err(err, MOE_ERR_NOMEM, "sources: out of memory"); }
    return MOE_OK;
}

/* The source of file path f: the index of the --data path it is under (or
 * equal to), -1 if none; with one folder, the entry below it (named into
 * *entry, the path component after the folder). */
static int under(const char *f, const char *p) {
    size_t n = strlen(p);
    while (n > 1 && p[n - 1] == '/') n--;
    return !strncmp(f, p, n) && (f[n] == 0 || f[n] == '/' || p[n - 1] == '/');
}

moe_status src_tags_files(src_text *s, size_t n_text, const data_sources *srcs, const char *const *paths,
                          int n_paths, moe_error *err) {
    memset(s, 0, sizeof *s);
    s->tag = calloc(n_text + 1, 1);
    char **names = calloc(SRC_MAX, sizeof(char *));
    int *grp = calloc(srcs->n + 1, sizeof(int));
    if (!s->tag || !names || !grp) { free(names); free(grp); src_text_free(s); return moe_err(err, MOE_ERR_NOMEM, "sources: out of memory"); }
    struct stat sb;
    const int folder = n_paths == 1 && paths && paths[0] && stat(paths[0], &sb) == 0 && S_ISDIR(sb.st_mode);
    int S = 0, ok = 1;
    for (size_t i = 0; ok && i < srcs->n; i++) {
        const char *f = srcs->v[i].path;
        char key[256];
        if (folder) {
            size_t n = strlen(paths[0]);
            while (n > 1 && paths[0][n - 1] == '/') n--;
            if (!under(f, paths[0])) { ok = 0; break; }
            const char *e = f + n;
            while (*e == '/') e++;
            size_t k = strcspn(e, "/");
            snprintf(key, sizeof key, "%.*s", (int)(k < 200 ? k : 200), e);
        } else {
            int g = -1;
            for (int a = 0; a < n_paths && g < 0; a++) if (paths[a] && under(f, paths[a])) g = a;
            if (g < 0) { ok = 0; break; }
            snprintf(key, sizeof key, "%.200s", paths[g]);
        }
        int g = -1;
        for (int k = 0; k < S && g < 0; k++) if (!strcmp(names[k], key)) g = k;
        if (g < 0) {
            if (S == SRC_MAX) { ok = 0; break; }
            if (!(names[S] = dup_clean(key))) { ok = 0; break; }
            g = S++;
        }
        grp[i] = g;
    }
    if (ok && S > 0) {
        for (size_t i = 0; i < srcs->n; i++) {
            size_t a = srcs->v[i].off, b = a + srcs->v[i].len;
            if (a > n_text) a = n_text;
            if (b > n_text) b = n_text;
            memset(s->tag + a, grp[i], b - a);
        }
        s->n_src = S;
        s->names = names;
        free(grp);
        return MOE_OK;
    }
    for (int k = 0; k < S; k++) free(names[k]);
    free(names);
    free(grp);
    free(s->tag);
    s->tag = NULL;
    return one_source(s, n_text, "all", err);
}

moe_status src_tags_corpus(src_text *s, size_t n_text, const corpus_docs *docs, moe_error *err) {
    memset(s, 0, sizeof *s);
    s->n_src = CORPUS_N_DOMAINS;
    s->tag = calloc(n_text + 1, 1);
    moe_status st = names_alloc(&s->names, CORPUS_N_DOMAINS, err);
    for (int i = 0; st == MOE_OK && i < CORPUS_N_DOMAINS; i++)
        if (!(s->names[i] = dup_clean(corpus_domain_name(i)))) st = moe_err(err, MOE_ERR_NOMEM, "sources: out of memory");
    if (st == MOE_OK && !s->tag) st = moe_err(err, MOE_ERR_NOMEM, "sources: out of memory");
    if (st != MOE_OK) { src_text_free(s); return st; }
    for (size_t i = 0; i < docs->n; i++) {
        size_t a = docs->d[i].start, b = i + 1 < docs->n ? docs->d[i + 1].start : n_text;
        if (a < b && b <= n_text) memset(s->tag + a, docs->d[i].domain, b - a);
    }
    return MOE_OK;
}

/* ------------------------------------------------------------ token map */

void src_map_free(src_map *m) {
    if (!m) return;
    for (int i = 0; i < m->n_src; i++) free(m->names[i]);
    free(m->names);
    free(m->src_of);
    memset(m, 0, sizeof *m);
}

moe_status src_map_build(src_map *m, const src_text *s, size_t n_text, const bpe_tokenizer *tok,
                         const int32_t *tokens, size_t n_tokens, moe_error *err) {
    memset(m, 0, sizeof *m);
    m->src_of = malloc(sizeof(int32_t) * (n_tokens + 1));
    m->names = calloc((size_t)s->n_src, sizeof(char *));
    if (!m->src_of || !m->names) { src_map_free(m); return moe_err(err, MOE_ERR_NOMEM, "sources: out of memory"); }
    m->n_src = s->n_src;
    m->n_tokens = n_tokens;
    for (int i = 0; i < s->n_src; i++)
        if (!(m->names[i] = dup_clean(s->names[i]))) { src_map_free(m); return moe_err(err, MOE_ERR_NOMEM, "sources: out of memory"); }
    size_t off = 0;
    for (size_t i = 0; i < n_tokens; i++) {
        const int32_t id = tokens[i];
        m->src_of[i] = off < n_text ? s->tag[off] : s->tag[n_text ? n_text - 1 : 0];
        if (id >= 0 && id < tok->n_vocab) off += tok->token_off[id + 1] - tok->token_off[id];
    }
    return MOE_OK;
}

moe_status src_map_save(const src_map *m, const char *path, moe_error *err) {
    size_t runs = 0;
    for (size_t i = 0; i < m->n_tokens; i++) runs += i == 0 || m->src_of[i] != m->src_of[i - 1];
    size_t cap = 64 + (size_t)m->n_src * 210 + runs * 32;
    char *buf = malloc(cap);
    if (!buf) return moe_err(err, MOE_ERR_NOMEM, "sources: out of memory");
    size_t at = (size_t)snprintf(buf, cap, "moe-sources 1 %d %zu %zu\n", m->n_src, runs, m->n_tokens);
    for (int s = 0; s < m->n_src; s++) at += (size_t)snprintf(buf + at, cap - at, "%s\n", m->names[s]);
    for (size_t i = 0; i < m->n_tokens; i++)
        if (i == 0 || m->src_of[i] != m->src_of[i - 1])
            at += (size_t)snprintf(buf + at, cap - at, "%zu %d\n", i, (int)m->src_of[i]);
    atomic_file f;
    moe_status st = atomic_file_open(&f, path, err);
    if (st == MOE_OK) st = atomic_file_write(&f, buf, at, err);
    if (st == MOE_OK) st = atomic_file_commit(&f, err);
    free(buf);
    return st;
}

static moe_status map_all(src_map *m, size_t n_tokens, moe_error *err) {
    src_map_free(m);
    m->n_src = 1;
    m->names = calloc(1, sizeof(char *));
    m->src_of = calloc(n_tokens + 1, sizeof(int32_t));
    if (m->names) m->names[0] = dup_clean("all");
    m->n_tokens = n_tokens;
    if (!m->names || !m->names[0] || !m->src_of) { src_map_free(m); return moe_err(err, MOE_ERR_NOMEM, "sources: out of memory"); }
    return MOE_OK;
}

moe_status src_map_load(src_map *m, const char *path, size_t n_tokens, moe_error *err) {
    memset(m, 0, sizeof *m);
    FILE *f = fopen(path, "r");
    if (!f) return map_all(m, n_tokens, err);
    int S;
    size_t R, nt;
    char line[512];
    int ok = fgets(line, sizeof line, f) && sscanf(line, "moe-sources 1 %d %zu %zu", &S, &R, &nt) == 3 &&
             S >= 1 && S <= SRC_MAX && nt == n_tokens && R >= 1 && R <= n_tokens + 1;
    if (ok) {
        m->names = calloc((size_t)S, sizeof(char *));
        m->src_of = malloc(sizeof(int32_t) * (n_tokens + 1));
        m->n_src = S;
        m->n_tokens = n_tokens;
        if (!m->names || !m->src_of) { fclose(f); src_map_free(m); return moe_err(err, MOE_ERR_NOMEM, "sources: out of memory"); }
        for (int s = 0; ok && s < S; s++) {
            ok = fgets(line, sizeof line, f) != NULL;
            if (ok) { line[strcspn(line, "\n")] = 0; ok = (m->names[s] = dup_clean(line)) != NULL; }
        }
        size_t prev = 0;
        int prev_src = 0;
        for (size_t r = 0; ok && r < R; r++) {
            size_t first;
            int src;
            ok = fgets(line, sizeof line, f) && sscanf(line, "%zu %d", &first, &src) == 2 && src >= 0 && src < S &&
                 (r == 0 ? first == 0 : first > prev) && first < n_tokens + (n_tokens == 0);
            if (!ok) break;
            for (size_t i = prev; r > 0 && i < first; i++) m->src_of[i] = prev_src;
            prev = first;
            prev_src = src;
        }
        for (size_t i = prev; ok && i < n_tokens; i++) m->src_of[i] = prev_src;
    }
    fclose(f);
    if (!ok) return map_all(m, n_tokens, err);
    return MOE_OK;
}

/* ------------------------------------------------------------ routing */

double src_mutual_information(const int64_t *c, int S, int E) {
    double N = 0;
    for (int i = 0; i < S * E; i++) N += (double)c[i];
    if (N <= 0) return 0;
    double mi = 0;
    for (int s = 0; s < S; s++) {
        double ps = 0;
        for (int e = 0; e < E; e++) ps += (double)c[(size_t)s * E + e];
        if (ps <= 0) continue;
        for (int e = 0; e < E; e++) {
            double pse = (double)c[(size_t)s * E + e];
            if (pse <= 0) continue;
            double pe = 0;
            for (int k = 0; k < S; k++) pe += (double)c[(size_t)k * E + e];
            mi += pse / N * log2(pse * N / (ps * pe));
        }
    }
    return mi < 0 ? 0 : mi;
}

void src_routing_free(src_routing *r) {
    if (!r) return;
    free(r->xs); free(r->ys); free(r->ex); free(r->kept); free(r->layers); free(r->counts);
    free(r->src_tokens); free(r->mi); free(r->val_src_buf); free(r->load); free(r->max_violation); free(r->dead);
    memset(r, 0, sizeof *r);
}

moe_status src_routing_init(src_routing *r, moe_model *m, const char *const *names, int n_src,
                            const int32_t *val_src, data_split val, int B, int T, moe_error *err) {
    memset(r, 0, sizeof *r);
    const moe_model_config *c = moe_model_get_config(m);
    const int E = c->moe.n_experts, S = n_src;
    int M = 0, slots = 1;
    for (int l = 0; l < c->n_layers; l++) {
        moe_layer *L = moe_model_moe_layer(m, l);
        if (!L) continue;
        M++;
        if (moe_layer_slots(L) > slots) slots = moe_layer_slots(L);
    }
    size_t bt = (size_t)B * (size_t)T;
    r->xs = malloc(sizeof(int32_t) * bt);
    r->ys = malloc(sizeof(int32_t) * bt);
    r->ex = malloc(sizeof(int) * bt * (size_t)slots);
    r->kept = malloc(sizeof(int) * bt * (size_t)slots);
    r->layers = malloc(sizeof(int) * (size_t)(M + 1));
    r->counts = calloc((size_t)(M + 1) * (size_t)S * (size_t)(E + 1), sizeof(int64_t));
    r->src_tokens = calloc((size_t)S, sizeof(int64_t));
    r->mi = calloc((size_t)M + 1, sizeof(double));
    r->load = calloc((size_t)(M + 1) * (size_t)(E + 1), sizeof(int64_t));
    r->max_violation = calloc((size_t)M + 1, sizeof(float));
    r->dead = calloc((size_t)M + 1, sizeof(int));
    r->val_src_buf = malloc(sizeof(int32_t) * (val.n + 1));
    if (!r->val_src_buf ||!r->xs || !r->ys || !r->ex || !r->kept || !r->layers || !r->counts || !r->src_tokens || !r->mi || !r->load ||
        !r->max_violation || !r->dead) {
        src_routing_free(r);
        return moe_err(err, MOE_ERR_NOMEM, "sources: out of memory");
    }
    M = 0;
    for (int l = 0; l < c->n_layers; l++)
        if (moe_model_moe_layer(m, l)) r->layers[M++] = l;
    r->slots_max = slots;
    for (size_t i = 0; i < val.n; i++) r->val_src_buf[i] = val_src[i] >= 0 && val_src[i] < S ? val_src[i] : 0;
    r->val_src = (data_split){r->val_src_buf, val.n};
    r->pub = (moe_eval_routing){
        .n_layers = M, .layers = r->layers, .n_experts = E, .n_sources = S,
        .source_names = names, .source_tokens = r->src_tokens,
        .counts = r->counts, .load = r->load, .max_violation = r->max_violation,
        .dead_experts = r->dead, .mi_bits = r->mi, .tokens = 0};
    return MOE_OK;
}

void src_routing_begin(src_routing *r) {
    const moe_eval_routing *p = &r->pub;
    memset(r->counts, 0, sizeof(int64_t) * (size_t)p->n_layers * (size_t)p->n_sources * (size_t)p->n_experts);
    memset(r->src_tokens, 0, sizeof(int64_t) * (size_t)p->n_sources);
    r->pub.tokens = 0;
}

void src_routing_add(src_routing *r, moe_model *m, int b, int nb, int B, int T) {
    if (r->val_src.n == 0) return;
    const int E = r->pub.n_experts, S = r->pub.n_sources;
    const int n = B * T;
    data_val_batch(r->val_src, b, nb, B, T, r->xs, r->ys);
    for (int t = 0; t < n; t++) {
        if (r->xs[t] < 0 || r->xs[t] >= S) r->xs[t] = 0;
        r->src_tokens[r->xs[t]]++;
    }
    r->pub.tokens += n;
    for (int j = 0; j < r->pub.n_layers; j++) {
        moe_layer *L = moe_model_moe_layer(m, r->layers[j]);
        const int slots = moe_layer_slots(L);
        moe_layer_routing(L, r->ex, NULL, r->kept);
        int64_t *c = r->counts + (size_t)j * S * E;
        for (int t = 0; t < n; t++)
            for (int k = 0; k < slots; k++) {
                const int e = r->ex[(size_t)t * slots + k];
                if (e >= 0 && e < E && r->kept[(size_t)t * slots + k]) c[(size_t)r->xs[t] * E + e]++;
            }
    }
}

void src_routing_end(src_routing *r) {
    const int E = r->pub.n_experts, S = r->pub.n_sources;
    for (int j = 0; j < r->pub.n_layers; j++) {
        const int64_t *c = r->counts + (size_t)j * S * E;
        int64_t *ld = r->load + (size_t)j * E, tot = 0, mx = 0;
        int dead = 0;
        for (int e = 0; e < E; e++) {
            ld[e] = 0;
            for (int s = 0; s < S; s++) ld[e] += c[(size_t)s * E + e];
            tot += ld[e];
            if (ld[e] > mx) mx = ld[e];
            dead += ld[e] == 0;
        }
        r->max_violation[j] = tot > 0 ? (float)((double)mx * E / (double)tot - 1.0) : 0.0f;
        r->dead[j] = tot > 0 ? dead : 0;
        r->mi[j] = src_mutual_information(c, S, E);
    }
}
