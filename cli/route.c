/* route.c: `moe route MODEL -p TEXT | -f FILE [--html OUT | --json]`: which
 * experts every token goes to in every MoE layer, and with what weight, as
 * the inference engine routes it (moe_infer_set_route_hook); any GGUF the
 * engine runs, a model trained here included. Only the public API.
 *
 * --json: one JSON object per line and token:
 *   {"i":T,"id":ID,"piece":"...","layers":[{"layer":L,"experts":[..],"weights":[..]},..]}
 * then one line {"counts":[[..]..],"layers":[..]}: the engine's expert counts
 * of the MoE layers (moe_infer_expert_counts, what `moe run --stats` prints).
 * Without --html or --json: a short table per token (top expert per layer). */
#include "cli.h"
#include "moe.h"
#include "moe_infer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What the hook records: one entry per (chunk, MoE layer) event, appended. */
typedef struct rec {
    int n_tok;          /* tokens of the text */
    int E;
    int *lay_of;        /* [n_layers] index j of model layer l, or -1 */
    int n_model_layers;
    int base;           /* index of the evaluated window's first token */
    int M;              /* MoE layers seen */
    int *layers;        /* [M] */
    int *n_sel;         /* [n_tok, Lmax] by model layer */
    int *ex;            /* [n_tok, Lmax, E] */
    float *w;           /* [n_tok, Lmax, E] */
    int oom;
} rec;

static void on_route(void *user, const moe_route_event *ev) {
    rec *r = user;
    const int L = r->n_model_layers, E = r->E;
    if (ev->layer < 0 || ev->layer >= L || ev->stride < 1) return;
    if (r->lay_of[ev->layer] < 0) {
        r->lay_of[ev->layer] = 1; /* seen; compacted at the end */
        r->M++;
    }
    for (int t = 0; t < ev->n_tokens; t++) {
        const int p = r->base + ev->pos + t;
        if (p < 0 || p >= r->n_tok) continue;
        int c = ev->n_experts[t];
        if (c > E) c = E;
        const size_t at = (size_t)p * L + ev->layer;
        r->n_sel[at] = c;
        for (int k = 0; k < c; k++) {
            r->ex[at * E + k] = ev->experts[(size_t)t * ev->stride + k];
            r->w[at * E + k] = ev->weights[(size_t)t * ev->stride + k];
        }
    }
}

static void usage(FILE *f) {
    fprintf(f, "usage: moe route MODEL.gguf (-p TEXT | -f FILE) [--html OUT.html | --json] [options]\n"
               "  which experts each token of the text goes to, in every MoE layer, with their weights,\n"
               "  as the inference engine routes it (a model trained here or any supported GGUF)\n"
               "  -p TEXT        the text\n"
               "  -f FILE        the text from a file\n"
               "  --html OUT     a page: tokens coloured by top expert, a layer selector, weights on hover\n"
               "  --json         one JSON object per token and line, then the engine's expert counts\n"
               "  --k N          experts per token (default: the model's; also --experts-per-token N)\n"
               "  --no-bos       do not add the BOS token\n"
               "  --ctx N        the longest text in tokens (default: the model's, at most 4096); longer is cut\n"
               "  --window N     route the whole text in independent windows of N tokens (each from\n"
               "                 position 0, as the model was trained; N <= ctx)\n");
}

static char *read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, len = 0;
    char *b = malloc(cap + 1);
    while (b) {
        size_t got = fread(b + len, 1, cap - len, f);
        len += got;
        if (len < cap) break;
        char *nb = realloc(b, 2 * cap + 1);
        if (!nb) { free(b); b = NULL; break; }
        b = nb;
        cap *= 2;
    }
    int bad = ferror(f);
    fclose(f);
    if (!b || bad) { free(b); return NULL; }
    b[len] = 0;
    *n = len;
    return b;
}

int cmd_route(int argc, char **argv, int n_threads) {
    const char *model = NULL, *text = NULL, *file = NULL, *html = NULL;
    int json = 0, k = 0, no_bos = 0, ctx = 0, window = 0, bad = 0;
    for (int i = 0; i < argc && !bad; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        if ((!strcmp(a, "-p") || !strcmp(a, "--prompt")) && i + 1 < argc) text = argv[++i];
        else if (!strcmp(a, "-f") && i + 1 < argc) file = argv[++i];
        else if (!strcmp(a, "--html") && i + 1 < argc) html = argv[++i];
        else if (!strcmp(a, "--json")) json = 1;
        else if (!strcmp(a, "--no-bos")) no_bos = 1;
        else if (cli_int_opt("--k", argc, argv, &i, &k, &bad) ||
                 cli_int_opt("--experts-per-token", argc, argv, &i, &k, &bad)) {}
        else if (cli_int_opt("--ctx", argc, argv, &i, &ctx, &bad)) {}
        else if (cli_int_opt("--window", argc, argv, &i, &window, &bad)) {}
        else if (a[0] != '-' && !model) model = a;
        else { fprintf(stderr, "moe route: unknown or incomplete option '%s'\n", a); bad = 1; }
    }
    if (!bad && (!model || (!text == !file) || (html && json) || k < 0 || ctx < 0 || window < 0)) {
        fprintf(stderr, "moe route: %s\n", !model ? "no model given" : !text == !file ? "give one of -p TEXT or -f FILE"
                        : html && json ? "--html and --json exclude each other" : "--k, --ctx and --window must be >= 0");
        bad = 1;
    }
    if (bad) { usage(stderr); return 2; }
    size_t n_text = 0;
    char *owned = NULL;
    if (file) {
        if (!(owned = read_file(file, &n_text))) { fprintf(stderr, "moe route: cannot read %s\n", file); return 1; }
        text = owned;
    } else n_text = strlen(text);

    int rc = 1;
    moe_error err;
    moe_infer *m = NULL;
    int32_t *ids = NULL;
    char **pieces = NULL;
    rec r;
    memset(&r, 0, sizeof r);
    int *cmp_layers = NULL, *cmp_nsel = NULL, *cmp_ex = NULL;
    float *cmp_w = NULL;
    size_t n_ids = 0;
    moe_infer_options o;
    moe_infer_options_default(&o);
    o.n_threads = n_threads;
    o.ctx_len = ctx;
    o.experts_per_token = k;
    if (moe_infer_open(&m, model, &o, &err) != MOE_OK) { fprintf(stderr, "moe: %s\n", err.msg); goto done; }
    const moe_infer_info *in = moe_infer_get_info(m);
    const moe_vocab *v = moe_infer_vocab(m);
    if (!v) { fprintf(stderr, "moe route: %s has no tokenizer\n", model); goto done; }
    size_t cap = n_text + 8;
    ids = malloc(sizeof(int32_t) * cap);
    if (!ids) { fprintf(stderr, "moe: out of memory\n"); goto done; }
    if (moe_vocab_encode(v, text, n_text, !no_bos, 1, ids, cap, &n_ids, &err) != MOE_OK) {
        fprintf(stderr, "moe: %s\n", err.msg);
        goto done;
    }
    if (n_ids == 0) { fprintf(stderr, "moe route: the text has no tokens\n"); goto done; }
    if (window > in->ctx_len) {
        fprintf(stderr, "moe route: --window %d is longer than the context (%d)\n", window, in->ctx_len);
        goto done;
    }
    if (window == 0 && n_ids > (size_t)in->ctx_len) {
        fprintf(stderr, "moe route: the text has %zu tokens; routing the first %d (--ctx)\n", n_ids, in->ctx_len);
        n_ids = (size_t)in->ctx_len;
    }
    const int n = (int)n_ids, L = in->n_layers, E = in->n_experts > 0 ? in->n_experts : 1;
    r.n_tok = n;
    r.E = E;
    r.n_model_layers = L;
    r.lay_of = malloc(sizeof(int) * (size_t)L);
    r.n_sel = calloc((size_t)n * L, sizeof(int));
    r.ex = calloc((size_t)n * L * E, sizeof(int));
    r.w = calloc((size_t)n * L * E, sizeof(float));
    pieces = calloc((size_t)n, sizeof(char *));
    if (!r.lay_of || !r.n_sel || !r.ex || !r.w || !pieces) { fprintf(stderr, "moe: out of memory\n"); goto done; }
    for (int l = 0; l < L; l++) r.lay_of[l] = -1;
    moe_infer_set_route_hook(m, on_route, &r);
    for (int w0 = 0; w0 < n; w0 += window > 0 ? window : n) {
        const int len = window > 0 && n - w0 > window ? window : n - w0;
        r.base = w0;
        if (moe_infer_eval(m, ids + w0, len, 0, NULL, 0, &err) != MOE_OK) { fprintf(stderr, "moe: %s\n", err.msg); goto done; }
    }
    moe_infer_set_route_hook(m, NULL, NULL);
    for (int t = 0; t < n; t++) {
        char buf[256];
        size_t len = 0;
        const char *p = moe_vocab_piece(v, ids[t], 1, buf, sizeof buf, &len);
        pieces[t] = malloc(len + 1);
        if (!pieces[t]) { fprintf(stderr, "moe: out of memory\n"); goto done; }
        memcpy(pieces[t], p ? p : "", p ? len : 0);
        pieces[t][p ? len : 0] = 0;
    }
    /* the MoE layers, compacted: [n, M, K] with K = E */
    const int M = r.M;
    cmp_layers = malloc(sizeof(int) * (size_t)(M + 1));
    cmp_nsel = calloc((size_t)n * M + 1, sizeof(int));
    cmp_ex = calloc((size_t)n * M * E + 1, sizeof(int));
    cmp_w = calloc((size_t)n * M * E + 1, sizeof(float));
    if (!cmp_layers || !cmp_nsel || !cmp_ex || !cmp_w) { fprintf(stderr, "moe: out of memory\n"); goto done; }
    int j = 0;
    for (int l = 0; l < L; l++) if (r.lay_of[l] >= 0) cmp_layers[j++] = l;
    for (int t = 0; t < n; t++)
        for (j = 0; j < M; j++) {
            const size_t src = (size_t)t * L + cmp_layers[j], dst = (size_t)t * M + j;
            cmp_nsel[dst] = r.n_sel[src];
            memcpy(cmp_ex + dst * E, r.ex + src * E, sizeof(int) * (size_t)E);
            memcpy(cmp_w + dst * E, r.w + src * E, sizeof(float) * (size_t)E);
        }
    if (html) {
        moe_route_doc d = {model, n, ids, (const char *const *)pieces, M, cmp_layers, E, E, cmp_nsel, cmp_ex, cmp_w};
        char *page;
        size_t len;
        if (moe_route_render_html(&page, &len, &d, &err) != MOE_OK) { fprintf(stderr, "moe: %s\n", err.msg); goto done; }
        FILE *f = fopen(html, "wb");
        int ok = f && fwrite(page, 1, len, f) == len;
        if (f && fclose(f) != 0) ok = 0;
        free(page);
        if (!ok) { fprintf(stderr, "moe route: cannot write %s\n", html); goto done; }
        printf("wrote %s (%d tokens, %d MoE layers)\n", html, n, M);
    } else if (json) {
        for (int t = 0; t < n; t++) {
            printf("{\"i\":%d,\"id\":%d,\"piece\":", t, (int)ids[t]);
            cli_json_str(stdout, pieces[t]);
            printf(",\"layers\":[");
            for (j = 0; j < M; j++) {
                const size_t at = (size_t)t * M + j;
                printf("%s{\"layer\":%d,\"experts\":[", j ? "," : "", cmp_layers[j]);
                for (int q = 0; q < cmp_nsel[at]; q++) printf("%s%d", q ? "," : "", cmp_ex[at * E + q]);
                printf("],\"weights\":[");
                for (int q = 0; q < cmp_nsel[at]; q++) printf("%s%.9g", q ? "," : "", (double)cmp_w[at * E + q]);
                printf("]}");
            }
            printf("]}\n");
        }
        const int64_t *c = moe_infer_expert_counts(m);
        printf("{\"layers\":[");
        for (j = 0; j < M; j++) printf("%s%d", j ? "," : "", cmp_layers[j]);
        printf("],\"counts\":[");
        for (j = 0; j < M; j++) {
            printf("%s[", j ? "," : "");
            for (int e = 0; e < E; e++) printf("%s%lld", e ? "," : "", c ? (long long)c[(size_t)cmp_layers[j] * E + e] : 0LL);
            printf("]");
        }
        printf("]}\n");
    } else {
        printf("%d tokens, %d MoE layers, %d experts; top expert of each token per layer:\n", n, M, E);
        for (int t = 0; t < n; t++) {
            printf("%5d %7d ", t, (int)ids[t]);
            cli_json_str(stdout, pieces[t]);
            for (j = 0; j < M; j++) {
                const size_t at = (size_t)t * M + j;
                int best = -1;
                for (int q = 0; q < cmp_nsel[at]; q++) if (best < 0 || cmp_w[at * E + q] > cmp_w[at * E + best]) best = q;
                if (best < 0) printf("   -");
                else printf(" %3d", cmp_ex[at * E + best]);
            }
            printf("\n");
        }
    }
    if (fflush(stdout) != 0 || ferror(stdout)) { fprintf(stderr, "moe route: cannot write the output\n"); goto done; }
    rc = 0;
done:
    if (pieces) for (size_t t = 0; t < n_ids && (int)t < r.n_tok; t++) free(pieces[t]);
    free(pieces);
    free(ids);
    free(r.lay_of); free(r.n_sel); free(r.ex); free(r.w);
    free(cmp_layers); free(cmp_nsel); free(cmp_ex); free(cmp_w);
    moe_infer_close(m);
    free(owned);
    return rc;
}
