/* eval.c: `moe eval MODEL TEXT...` (perplexity of a GGUF model on text files
 * or folders: a table per file, totals, a JSON line) and `moe tokenize MODEL
 * TEXT` (ids and pieces). Only the public API (moe_infer.h); the scoring
 * itself is moe_infer_perplexity (src/infer/eval.c).
 *
 * Not for: the trainer's validation (moe train), generation (run.c).
 */
#include "cli.h"
#include "moe_infer.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------- files */

typedef struct path_list {
    char **p;
    int n, cap;
} path_list;

static int push(path_list *L, const char *s) {
    if (L->n == L->cap) {
        int c = L->cap ? 2 * L->cap : 16;
        char **q = realloc(L->p, sizeof(char *) * (size_t)c);
        if (!q) return 0;
        L->p = q;
        L->cap = c;
    }
    return (L->p[L->n] = strdup(s)) ? (L->n++, 1) : 0;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Adds path (a file, or every regular file under a folder, sorted, names
 * starting with '.' skipped). 0 on an error (printed). */
static int collect(path_list *L, const char *path) {
    struct stat sb;
    if (stat(path, &sb) != 0) { fprintf(stderr, "moe eval: %s: %s\n", path, strerror(errno)); return 0; }
    if (!S_ISDIR(sb.st_mode)) return push(L, path) || (fprintf(stderr, "moe: out of memory\n"), 0);
    DIR *d = opendir(path);
    if (!d) { fprintf(stderr, "moe eval: %s: %s\n", path, strerror(errno)); return 0; }
    path_list sub = {0};
    struct dirent *e;
    int ok = 1;
    while (ok && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        size_t len = strlen(path) + strlen(e->d_name) + 2;
        char *full = malloc(len);
        if (!full) { ok = 0; break; }
        snprintf(full, len, "%s/%s", path, e->d_name);
        ok = push(&sub, full);
        free(full);
    }
    closedir(d);
    qsort(sub.p, (size_t)sub.n, sizeof(char *), cmp_str);
    for (int i = 0; i < sub.n; i++) {
        if (ok) ok = collect(L, sub.p[i]);
        free(sub.p[i]);
    }
    free(sub.p);
    return ok;
}

static char *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) { fprintf(stderr, "moe: %s: %s\n", path, strerror(errno)); return NULL; }
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap + 1);
    while (buf) {
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (len < cap) break;
        char *q = realloc(buf, 2 * cap + 1);
        if (!q) { free(buf); buf = NULL; break; }
        buf = q;
        cap *= 2;
    }
    int bad = ferror(f);
    fclose(f);
    if (!buf || bad) { fprintf(stderr, "moe: %s: %s\n", path, buf ? "read error" : "out of memory"); free(buf); return NULL; }
    buf[len] = '\0';
    *n = len;
    return buf;
}

/* Encodes text[0, n) into a malloc'd array; -1 on an error (printed). */
static long encode(const moe_vocab *v, const char *text, size_t n, int add_bos, int parse_special, int32_t **ids) {
    moe_error err;
    size_t cap = n + 8, got = 0;
    for (int attempt = 0; attempt < 2; attempt++) {
        int32_t *p = realloc(*ids, sizeof(int32_t) * cap);
        if (!p) { fprintf(stderr, "moe: out of memory tokenizing %zu bytes\n", n); return -1; }
        *ids = p;
        moe_status st = moe_vocab_encode(v, text, n, add_bos, parse_special, *ids, cap, &got, &err);
        if (st == MOE_OK) return (long)got;
        if (st != MOE_ERR_SHAPE) break;
        cap = got;
    }
    fprintf(stderr, "moe: %s\n", cli_msg(NULL, err.msg));
    return -1;
}

static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        const unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
    fputc('"', f);
}

/* ------------------------------------------------------------- eval */

typedef struct progress_state {
    const char *file;
    int i, n_files;
    double t0, last;
} progress_state;

static void progress(void *user, int64_t done, int64_t total) {
    progress_state *p = user;
    double now = cli_now();
    if (done < total && now - p->last < 0.2) return;
    p->last = now;
    fprintf(stderr, "\r[%d/%d] %s: %lld/%lld tokens scored (%.0f%%, %.1f tok/s)   ", p->i + 1, p->n_files,
            p->file, (long long)done, (long long)total, total ? 100.0 * done / total : 100.0,
            now > p->t0 ? done / (now - p->t0) : 0.0);
    fflush(stderr);
}

static void eval_usage(FILE *f) {
    fprintf(f, "usage: moe eval MODEL.gguf TEXT... [options]\n"
               "  perplexity of the model on text files (folders: every file under them, sorted);\n"
               "  each file is tokenized on its own (BOS as the model asks) and scored; a table per\n"
               "  file and the total on stdout, then one JSON line\n"
               "  --ctx N       window length in tokens (default: the model's context, at most 4096)\n"
               "  --stride N    tokens between window starts (default: ctx: each token scored once,\n"
               "                with the context since its window's start; as the trainer's validation)\n"
               "  --batch N     tokens per evaluation call (default 512)\n"
               "  --scoring llama   llama.cpp's llama-perplexity: non-overlapping windows of ctx, BOS\n"
               "                first, only the second half of each window scored (--scoring sliding:\n"
               "                the default)\n"
               "  --no-bos      do not add the BOS token\n"
               "  --experts-per-token K   route each token to K experts (default 0: the model's k)\n"
               "  -m MODEL.gguf           the model (instead of the first argument)\n"
               "nats/token: mean -ln p per scored token; ppl = exp(nats/token); bits/byte: the\n"
               "same total in bits over the bytes of the scored tokens (compares tokenizers)\n");
}

int cmd_eval(int argc, char **argv, int n_threads) {
    const char *model = NULL;
    const char **texts = calloc((size_t)argc + 1, sizeof(char *));
    int n_texts = 0, bad = 0, no_bos = 0, k = 0;
    moe_ppl_options po;
    moe_ppl_options_default(&po);
    if (!texts) return 1;
    for (int i = 0; i < argc && !bad; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { eval_usage(stdout); free(texts); return 0; }
        if (cli_int_opt("--ctx", argc, argv, &i, &po.ctx, &bad) ||
            cli_int_opt("--stride", argc, argv, &i, &po.stride, &bad) ||
            cli_int_opt("--batch", argc, argv, &i, &po.batch, &bad) ||
            cli_int_opt("--experts-per-token", argc, argv, &i, &k, &bad))
            continue;
        const char *v = NULL;
        if (cli_str_opt("-m", "--model", argc, argv, &i, &model, &bad)) continue;
        if (!strcmp(a, "--no-bos")) no_bos = 1;
        else if (cli_str_opt("--scoring", NULL, argc, argv, &i, &v, &bad)) {
            if (!v) continue;
            if (!strcmp(v, "llama")) po.scoring = MOE_PPL_LLAMA;
            else if (!strcmp(v, "sliding")) po.scoring = MOE_PPL_SLIDING;
            else { fprintf(stderr, "moe eval: --scoring: '%s' (expected sliding or llama)\n", v); bad = 1; }
        } else if (a[0] != '-' && !model) model = a;
        else if (a[0] != '-') texts[n_texts++] = a;
        else { free(texts); return cli_unknown("eval", a); }
    }
    if (bad) { free(texts); return 2; }
    if (!model || n_texts == 0) { free(texts); return cli_usage_error("eval", "needs MODEL.gguf and at least one TEXT"); }
    if (!bad && (po.ctx < 0 || po.stride < 0 || po.batch < 0 || k < 0 || (po.ctx == 1))) {
        fprintf(stderr, "moe eval: --ctx must be >= 2, --stride, --batch and --experts-per-token >= 0\n");
        bad = 1;
    }
    if (!bad && po.scoring == MOE_PPL_LLAMA && po.stride > 0) {
        fprintf(stderr, "moe eval: --scoring llama uses non-overlapping windows; drop --stride\n");
        bad = 1;
    }
    if (bad) { free(texts); return 2; }

    path_list files = {0};
    int rc = 1;
    moe_infer *m = NULL;
    int32_t *ids = NULL;
    char *text = NULL;
    for (int i = 0; i < n_texts; i++)
        if (!collect(&files, texts[i])) goto done;
    if (files.n == 0) { fprintf(stderr, "moe eval: no files in %s\n", texts[0]); goto done; }

    moe_error err;
    moe_infer_options io;
    moe_infer_options_default(&io);
    io.n_threads = n_threads;
    io.ctx_len = po.ctx;
    io.experts_per_token = k;
    if (po.batch > 0) io.max_batch = po.batch;
    if (moe_infer_open(&m, model, &io, &err) != MOE_OK) { fprintf(stderr, "moe: %s\n", cli_msg(NULL, err.msg)); goto done; }
    const moe_infer_info *in = moe_infer_get_info(m);
    const moe_vocab *v = moe_infer_vocab(m);
    if (!v) { fprintf(stderr, "moe eval: %s has no tokenizer (no tokenizer.ggml.* metadata)\n", model); goto done; }
    if (po.ctx == 0) po.ctx = in->ctx_len;
    if (po.stride == 0) po.stride = po.ctx;
    if (po.stride > po.ctx) { fprintf(stderr, "moe eval: --stride %d > --ctx %d\n", po.stride, po.ctx); goto done; }
    if (po.batch == 0) po.batch = 512;

    const int tty = isatty(2);
    progress_state ps = {0};
    po.progress = tty ? progress : NULL;
    po.user = &ps;
    printf("%-40s %10s %10s %10s %10s %12s %10s\n", "file", "tokens", "bytes", "scored", "nats/tok", "ppl",
           "bits/byte");
    double nll = 0, t0 = cli_now();
    int64_t n_tok = 0, n_bytes = 0, n_scored = 0, n_sbytes = 0;
    int n_done = 0;
    for (int i = 0; i < files.n; i++) {
        size_t len;
        free(text);
        if (!(text = read_all(files.p[i], &len))) goto done;
        long n = encode(v, text, len, !no_bos, 0, &ids);
        if (n < 0) goto done;
        if (n < 2 || (po.scoring == MOE_PPL_LLAMA && n < po.ctx)) {
            printf("%-40s %10ld %10zu  skipped: fewer tokens than %s\n", files.p[i], n, len,
                   po.scoring == MOE_PPL_LLAMA ? "one window (--ctx)" : "2");
            continue;
        }
        moe_ppl_result r;
        ps.file = files.p[i];
        ps.i = i;
        ps.n_files = files.n;
        ps.t0 = cli_now();
        ps.last = 0;
        moe_status st = moe_infer_perplexity(m, ids, n, &po, NULL, &r, &err);
        if (tty) fprintf(stderr, "\r%*s\r", 100, "");
        if (st != MOE_OK) { fprintf(stderr, "moe eval: %s: %s\n", files.p[i], err.msg); goto done; }
        const double npt = r.nll / (double)r.n_scored;
        printf("%-40s %10ld %10zu %10lld %10.5f %12.4f %10.5f\n", files.p[i], n, len, (long long)r.n_scored, npt,
               exp(npt), r.n_bytes ? r.nll / log(2.0) / (double)r.n_bytes : NAN);
        fflush(stdout);
        nll += r.nll;
        n_tok += n;
        n_bytes += (int64_t)len;
        n_scored += r.n_scored;
        n_sbytes += r.n_bytes;
        n_done++;
    }
    if (n_scored == 0) { fprintf(stderr, "moe eval: no file had enough tokens to score\n"); goto done; }
    const double secs = cli_now() - t0, npt = nll / (double)n_scored;
    const double bpb = n_sbytes ? nll / log(2.0) / (double)n_sbytes : NAN;
    char lab[64];
    snprintf(lab, sizeof lab, "total (%d file%s)", n_done, n_done == 1 ? "" : "s");
    printf("%-40s %10lld %10lld %10lld %10.5f %12.4f %10.5f\n", lab, (long long)n_tok, (long long)n_bytes,
           (long long)n_scored, npt, exp(npt), bpb);
    printf("{\"model\":");
    json_str(stdout, model);
    printf(",\"arch\":");
    json_str(stdout, in->arch);
    printf(",\"scoring\":\"%s\",\"ctx\":%d,\"stride\":%d,\"batch\":%d,\"files\":%d,\"tokens\":%lld,"
           "\"bytes\":%lld,\"scored\":%lld,\"scored_bytes\":%lld,\"nll\":%.17g,\"nats_per_token\":%.17g,"
           "\"ppl\":%.17g,\"bits_per_byte\":%.17g,\"seconds\":%.3f,\"tokens_per_second\":%.1f}\n",
           po.scoring == MOE_PPL_LLAMA ? "llama" : "sliding", po.ctx,
           po.scoring == MOE_PPL_LLAMA ? po.ctx : po.stride, po.batch, n_done, (long long)n_tok,
           (long long)n_bytes, (long long)n_scored, (long long)n_sbytes, nll, npt, exp(npt),
           n_sbytes ? bpb : 0.0, secs, secs > 0 ? (double)n_tok / secs : 0.0);
    rc = 0;
done:
    for (int i = 0; i < files.n; i++) free(files.p[i]);
    free(files.p);
    free(texts);
    free(ids);
    free(text);
    moe_infer_close(m);
    return rc;
}

/* ----------------------------------------------------------- tokenize */

static void tokenize_usage(FILE *f) {
    fprintf(f, "usage: moe tokenize MODEL.gguf TEXT [--file] [--no-bos] [--raw] [--ids]\n"
               "  one line per token: index, id, the piece as a quoted string (\\n, \\xNN escapes)\n"
               "  --file   TEXT names a file to read     --no-bos   do not add the BOS token\n"
               "  --raw    control-token text stays plain text (no parse_special)\n"
               "  --ids    only the ids, on one line, separated by spaces\n"
               "  (every flag is off by default)\n");
}

/* 1 if p[0, n) is whole UTF-8 characters. */
static int utf8_whole(const char *p, size_t n) {
    for (size_t i = 0; i < n;) {
        const unsigned char c = (unsigned char)p[i];
        size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (!len || i + len > n) return 0;
        for (size_t k = 1; k < len; k++)
            if (((unsigned char)p[i + k] >> 6) != 2) return 0;
        i += len;
    }
    return 1;
}

/* The piece as a C-style quoted string (bytes of a partial UTF-8 character
 * as \xNN). */
static void print_piece(FILE *f, const char *p, size_t n) {
    const int whole = utf8_whole(p, n);
    fputc('"', f);
    for (size_t i = 0; i < n; i++) {
        const unsigned char c = (unsigned char)p[i];
        if (c >= 0x80 && !whole) { fprintf(f, "\\x%02x", c); continue; }
        if (c == '\n') fputs("\\n", f);
        else if (c == '\r') fputs("\\r", f);
        else if (c == '\t') fputs("\\t", f);
        else if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c < 0x20 || c == 0x7f) fprintf(f, "\\x%02x", c);
        else fputc(c, f);
    }
    fputc('"', f);
}

int cmd_tokenize(int argc, char **argv, int n_threads) {
    (void)n_threads;
    const char *model = NULL, *arg = NULL;
    int from_file = 0, no_bos = 0, raw = 0, only_ids = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { tokenize_usage(stdout); return 0; }
        if (!strcmp(a, "--file")) from_file = 1;
        else if (!strcmp(a, "--no-bos")) no_bos = 1;
        else if (!strcmp(a, "--raw")) raw = 1;
        else if (!strcmp(a, "--ids")) only_ids = 1;
        else if (!model && a[0] != '-') model = a;
        else if (!arg && (a[0] != '-' || model)) arg = a;
        else return cli_unknown("tokenize", a);
    }
    if (!model || !arg) return cli_usage_error("tokenize", "needs MODEL.gguf and TEXT");
    moe_error err;
    moe_vocab *v = NULL;
    if (moe_vocab_load(&v, model, &err) != MOE_OK) { fprintf(stderr, "moe: %s\n", cli_msg(NULL, err.msg)); return 1; }
    char *owned = NULL;
    size_t len = strlen(arg);
    if (from_file && !(owned = read_all(arg, &len))) { moe_vocab_free(v); return 1; }
    int32_t *ids = NULL;
    long n = encode(v, owned ? owned : arg, len, !no_bos, !raw, &ids);
    if (n >= 0) {
        for (long i = 0; i < n; i++) {
            if (only_ids) { printf(i ? " %d" : "%d", ids[i]); continue; }
            char buf[64];
            size_t pl = 0;
            const char *p = moe_vocab_piece(v, ids[i], 1, buf, sizeof buf, &pl);
            printf("%6ld %8d ", i, ids[i]);
            print_piece(stdout, p, pl);
            fputc('\n', stdout);
        }
        if (only_ids) fputc('\n', stdout);
        else printf("%ld tokens, %zu bytes\n", n, len);
    }
    free(ids);
    free(owned);
    moe_vocab_free(v);
    return n >= 0 ? 0 : 1;
}
