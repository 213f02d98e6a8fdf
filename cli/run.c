/* run.c: `moe run MODEL.gguf -p TEXT` (a prompt, then generated text streamed
 * token by token) and `moe chat MODEL.gguf` (an interactive conversation
 * from stdin that keeps the KV cache of the common prefix between turns),
 * for GGUF models through the inference engine. Only the public API
 * (moe_infer.h).
 *
 * Not for: models written by `moe train` through the training forward
 * (sample.c), the engine itself (src/infer/), benchmarks (cli/bench_infer.c).
 *
 * Streaming: generated pieces go through a small hold-back buffer so that a
 * UTF-8 character split across tokens is printed whole and a --stop string
 * split across tokens is never printed: only bytes that cannot begin a stop
 * string or complete a character are written at each step.
 */
#include "cli.h"
#include "moe_infer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_STOP 16

/* Options shared by run and chat. */
typedef struct gen_opts {
    moe_sampler_config sc;
    const char *stop[MAX_STOP];
    int n_stop;
    int n_predict;         /* tokens to generate at most (per reply) */
    int experts_per_token; /* 0: the model's */
    int ctx;               /* 0: the engine's default */
    int stats, no_bos, raw, echo;
    int show_prompt;       /* print the text tokenized and its ids (stderr) */
    int chat;              /* run: render the prompt as one user message */
    const char *prompt;    /* run */
    const char *system;    /* chat */
    const char *tmpl;      /* chat; NULL: from the file */
    int ep;                /* run: --expert-parallel P (one rank of mpirun -np P) */
    const char *logits_out;/* run: the prompt's last logits, raw f32, to this file */
    int64_t seed;          /* -1: a random one (printed) */
    char *prompt_file;     /* -f FILE's text (owned) */
} gen_opts;

/* 1 if argv[*i] was one of the shared options (then *i is past its value). */
static int gen_opt(gen_opts *o, int argc, char **argv, int *i, int *bad) {
    const char *a = argv[*i];
    if (cli_int_opt("-n", argc, argv, i, &o->n_predict, bad) ||
        cli_sampler_opt(&o->sc, &o->seed, argc, argv, i, bad) ||
        cli_int_opt("--experts-per-token", argc, argv, i, &o->experts_per_token, bad) ||
        cli_int_opt("--ctx", argc, argv, i, &o->ctx, bad))
        return 1;
    if (!strcmp(a, "--stats")) { o->stats = 1; return 1; }
    if (!strcmp(a, "--show-prompt")) { o->show_prompt = 1; return 1; }
    if (!strcmp(a, "--stop")) {
        if (*i + 1 >= argc) { fprintf(stderr, "moe: %s needs a value\n", a); *bad = 1; return 1; }
        const char *v = argv[++*i];
        if (!*v || o->n_stop == MAX_STOP) {
            fprintf(stderr, "moe: --stop: %s\n", *v ? "at most 16 stop strings" : "an empty stop string");
            *bad = 1;
        } else {
            o->stop[o->n_stop++] = v;
        }
        return 1;
    }
    return 0;
}

static void gen_usage(FILE *f) {
    moe_sampler_config d;
    moe_sampler_config_default(&d);
    fprintf(f, "sampling (the same options and defaults as moe sample):\n"
               "  --temp T (default %g; 0: greedy)  --top-k K (%d)  --top-p P (%g)  --min-p P (%g)\n"
               "  --repeat-penalty R (%g; 1: off)  --repeat-last-n N (%d)\n"
               "  --seed S, -s S           sampler seed (default %llu; -1: a random one, printed)\n"
               "  --stop STR               stop before STR (repeatable; STR is not printed)\n"
               "  --experts-per-token K    route each token to K experts (default 0: the model's k)\n"
               "  --ctx N                  context length (KV cache; default 0: min(model's, 4096));\n"
               "                           a prompt longer than N - 1 tokens is an error\n"
               "  --stats                  expert usage per MoE layer at the end (to stderr; default off)\n"
               "  --show-prompt            print the text given to the model (the rendered template)\n"
               "                           and its token ids and pieces to stderr (default off)\n",
            (double)d.temperature, d.top_k, (double)d.top_p, (double)d.min_p, (double)d.repeat_penalty,
            d.repeat_last_n, (unsigned long long)d.seed);
}

/* ------------------------------------------------------------ streaming */

typedef struct streamer {
    char *pend;            /* [cap] bytes generated but not yet written */
    size_t n, cap;
    char *text;            /* [tcap] everything written (the reply) */
    size_t tn, tcap;
    const gen_opts *o;
    FILE *out;
    int stopped;           /* a stop string was met */
} streamer;

static int grow(char **p, size_t *cap, size_t need) {
    if (need <= *cap) return 1;
    size_t c = *cap ? *cap : 256;
    while (c < need) c *= 2;
    char *q = realloc(*p, c);
    if (!q) return 0;
    *p = q;
    *cap = c;
    return 1;
}

static int emit(streamer *s, const char *p, size_t n) {
    if (n == 0) return 1;
    fwrite(p, 1, n, s->out);
    fflush(s->out);
    if (!grow(&s->text, &s->tcap, s->tn + n + 1)) return 0;
    memcpy(s->text + s->tn, p, n);
    s->tn += n;
    s->text[s->tn] = '\0';
    return 1;
}

/* Bytes at the end of p[0, n) that start a UTF-8 character not yet complete. */
static size_t utf8_partial(const char *p, size_t n) {
    for (size_t back = 1; back <= 3 && back <= n; back++) {
        const unsigned char c = (unsigned char)p[n - back];
        if ((c & 0xC0) == 0x80) continue; /* a continuation byte: look further */
        size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
        return need > back ? back : 0;
    }
    return 0;
}

/* Adds a piece; writes what is safe to write. 0 when out of memory. */
static int stream_put(streamer *s, const char *p, size_t n) {
    if (!grow(&s->pend, &s->cap, s->n + n + 1)) return 0;
    memcpy(s->pend + s->n, p, n);
    s->n += n;
    /* the earliest complete stop string ends the text */
    size_t cut = s->n;
    for (int k = 0; k < s->o->n_stop; k++) {
        const size_t L = strlen(s->o->stop[k]);
        for (size_t i = 0; i + L <= s->n && i < cut; i++)
            if (!memcmp(s->pend + i, s->o->stop[k], L)) { cut = i; break; }
    }
    if (cut < s->n) {
        s->stopped = 1;
        s->n = cut;
        int ok = emit(s, s->pend, cut);
        s->n = 0;
        return ok;
    }
    /* hold back the longest tail that may begin a stop string */
    size_t hold = utf8_partial(s->pend, s->n);
    for (int k = 0; k < s->o->n_stop; k++) {
        const size_t L = strlen(s->o->stop[k]);
        for (size_t t = L - 1 < s->n ? L - 1 : s->n; t > hold; t--)
            if (!memcmp(s->pend + s->n - t, s->o->stop[k], t)) { hold = t; break; }
    }
    if (!emit(s, s->pend, s->n - hold)) return 0;
    memmove(s->pend, s->pend + s->n - hold, hold);
    s->n = hold;
    return 1;
}

static int stream_flush(streamer *s) {
    int ok = emit(s, s->pend, s->n);
    s->n = 0;
    return ok;
}

/* ----------------------------------------------------------- the session */

typedef struct session {
    moe_dist *dist;        /* --expert-parallel, or NULL */
    moe_infer *m;
    const moe_vocab *v;
    moe_sampler *smp;
    const moe_infer_info *info;
    float *logits;         /* [V] */
    int32_t *hist;         /* [ctx] tokens in the KV cache, in order */
    int n_hist;
    int32_t *ids;          /* [ids_cap] scratch for tokenizing */
    size_t ids_cap;
    double t_prompt, t_gen;
    int n_prompt_eval, n_gen_eval;
} session;

static int session_open(session *S, const char *path, const gen_opts *o, int n_threads) {
    memset(S, 0, sizeof *S);
    moe_error err;
    moe_infer_options io;
    moe_infer_options_default(&io);
    io.n_threads = n_threads;
    io.ctx_len = o->ctx;
    io.experts_per_token = o->experts_per_token;
    if (o->ep > 0) {
        if (moe_dist_init(&S->dist, o->ep, &err) != MOE_OK) {
            fprintf(stderr, "moe: %s\n", err.msg);
            return 0;
        }
        /* one output: rank 0's */
        if (moe_dist_rank(S->dist) && !freopen("/dev/null", "w", stdout)) return 0;
    }
    if (moe_infer_open(&S->m, path, &io, &err) != MOE_OK) {
        fprintf(stderr, "moe: %s\n", cli_msg(NULL, err.msg));
        if (S->dist) moe_dist_abort(S->dist, 1);
        return 0;
    }
    if (S->dist && moe_infer_attach_dist(S->m, S->dist, &err) != MOE_OK) {
        fprintf(stderr, "moe: rank %d: %s\n", moe_dist_rank(S->dist), cli_msg(NULL, err.msg));
        return 0;
    }
    S->info = moe_infer_get_info(S->m);
    S->v = moe_infer_vocab(S->m);
    if (!S->v) {
        fprintf(stderr, "moe: %s has no tokenizer (no tokenizer.ggml.* metadata)\n", path);
        return 0;
    }
    if (moe_sampler_create(&S->smp, &o->sc, S->info->vocab_size, &err) != MOE_OK) {
        fprintf(stderr, "moe: %s\n", cli_msg(NULL, err.msg));
        return 0;
    }
    S->logits = malloc(sizeof(float) * (size_t)S->info->vocab_size);
    S->hist = malloc(sizeof(int32_t) * (size_t)S->info->ctx_len);
    if (!S->logits || !S->hist) { fprintf(stderr, "moe: out of memory\n"); return 0; }
    return 1;
}

static void session_close(session *S) {
    if (S->dist)
        fprintf(stderr, "rank %d of %d: resident memory %.1f MB\n", moe_dist_rank(S->dist), moe_dist_size(S->dist),
                cli_status_kb("VmRSS") / 1024.0);
    moe_sampler_free(S->smp);
    moe_infer_close(S->m);
    moe_dist_free(S->dist);
    free(S->logits);
    free(S->hist);
    free(S->ids);
}

/* Tokenizes text into S->ids; returns the count, or -1 (printed). */
static long tokenize(session *S, const char *text, int add_bos, int parse_special) {
    moe_error err;
    size_t n = strlen(text), got = 0;
    for (int attempt = 0; attempt < 2; attempt++) {
        size_t need = attempt ? got : n + 8;
        if (need > S->ids_cap) {
            int32_t *p = realloc(S->ids, sizeof(int32_t) * need);
            if (!p) { fprintf(stderr, "moe: out of memory tokenizing %zu bytes\n", n); return -1; }
            S->ids = p;
            S->ids_cap = need;
        }
        moe_status st = moe_vocab_encode(S->v, text, n, add_bos, parse_special, S->ids, S->ids_cap,
                                         &got, &err);
        if (st == MOE_OK) return (long)got;
        if (st != MOE_ERR_SHAPE) break;
    }
    fprintf(stderr, "moe: %s\n", cli_msg(NULL, err.msg));
    return -1;
}

/* --show-prompt: the text and its n ids with their pieces, to stderr. */
static void show_prompt(const session *S, const char *text, long n) {
    fprintf(stderr, "--- prompt (%zu bytes) ---\n%s\n--- %ld tokens ---\n", strlen(text), text, n);
    for (long i = 0; i < n; i++) {
        char buf[64];
        size_t len = 0;
        const char *p = moe_vocab_piece(S->v, S->ids[i], 1, buf, sizeof buf, &len);
        fprintf(stderr, "%d:'", S->ids[i]);
        for (size_t j = 0; j < len; j++) {
            const unsigned char c = (unsigned char)p[j];
            if (c == '\n') fputs("\\n", stderr);
            else if (c < 0x20) fprintf(stderr, "\\x%02x", c);
            else fputc(c, stderr);
        }
        fputs(i + 1 < n ? "' " : "'\n", stderr);
    }
    fputs("---\n", stderr);
}

/* Makes the cache hold S->ids[0, n) (re-using the common prefix with what
 * it holds) and leaves the last token's logits in S->logits. */
static int feed(session *S, long n) {
    moe_error err;
    if (n < 1) { fprintf(stderr, "moe: the prompt is empty (and the model has no BOS token)\n"); return 0; }
    if (n >= S->info->ctx_len) {
        fprintf(stderr, "moe: the prompt has %ld tokens, the context holds %d and needs room for the "
                "reply (raise --ctx, up to the model's context length)\n", n, S->info->ctx_len);
        return 0;
    }
    int p = 0;
    while (p < S->n_hist && p < n && S->hist[p] == S->ids[p]) p++;
    if (p == n) p = n - 1; /* re-run the last token for its logits */
    double t0 = cli_now();
    if (moe_infer_eval(S->m, S->ids + p, (int)n - p, p, S->logits, 0, &err) != MOE_OK) {
        fprintf(stderr, "moe: %s\n", cli_msg(NULL, err.msg));
        return 0;
    }
    S->t_prompt += cli_now() - t0;
    S->n_prompt_eval += (int)n - p;
    memcpy(S->hist, S->ids, sizeof(int32_t) * (size_t)n);
    S->n_hist = (int)n;
    return 1;
}

/* Samples up to n_max tokens after the cache's content, streaming them to
 * st. *n_gen gets the count. 0 on an error (printed). */
static int generate(session *S, int n_max, streamer *st, int *n_gen) {
    moe_error err;
    *n_gen = 0;
    while (*n_gen < n_max && !cli_signal()) {
        const int32_t tok = moe_sampler_sample(S->smp, S->logits, S->hist, S->n_hist);
        if (moe_vocab_is_eog(S->v, tok)) break;
        ++*n_gen;
        size_t len;
        const char *piece = moe_vocab_piece(S->v, tok, 0, NULL, 0, &len);
        if (!stream_put(st, piece, len)) { fprintf(stderr, "moe: out of memory\n"); return 0; }
        if (st->stopped || *n_gen == n_max) break;
        if (S->n_hist >= S->info->ctx_len) {
            fprintf(stderr, "\nmoe: the context (%d tokens) is full\n", S->info->ctx_len);
            break;
        }
        double t0 = cli_now();
        if (moe_infer_eval(S->m, &tok, 1, S->n_hist, S->logits, 0, &err) != MOE_OK) {
            fprintf(stderr, "moe: %s\n", cli_msg(NULL, err.msg));
            return 0;
        }
        S->t_gen += cli_now() - t0;
        S->n_gen_eval++;
        S->hist[S->n_hist++] = tok;
    }
    if (!stream_flush(st)) { fprintf(stderr, "moe: out of memory\n"); return 0; }
    return 1;
}

/* Expert usage per MoE layer since the last reset, as % of the layer's
 * routed assignments, to f. */
static void print_stats(FILE *f, const session *S) {
    const moe_infer_info *in = S->info;
    const int E = in->n_experts;
    const int64_t *c = moe_infer_expert_counts(S->m);
    const long tokens = (long)S->n_prompt_eval + S->n_gen_eval;
    fprintf(f, "model: %s, %d layers, d %d, %d experts, k = %d; %.4g M weights, %.4g M active per "
            "token, %.2f MiB read per token\n", in->arch, in->n_layers, in->d_model, E, in->top_k,
            in->params_total * 1e-6, in->params_active * 1e-6, in->bytes_active / 1048576.0);
    if (E == 0 || !c) { fprintf(f, "expert usage: the model is dense\n"); return; }
    int64_t all = 0;
    for (int l = 0; l < in->n_layers; l++)
        for (int e = 0; e < E; e++) all += c[(size_t)l * E + e];
    const int n_moe = in->n_layers - in->n_dense_layers;
    fprintf(f, "expert usage (%% of each MoE layer's routed tokens; %ld tokens evaluated, %.2f "
            "experts per token):\n", tokens, n_moe > 0 && tokens > 0 ? (double)all / n_moe / tokens : 0.0);
    const int cols = E <= 16;
    fprintf(f, "  layer");
    if (cols)
        for (int e = 0; e < E; e++) {
            char lab[16];
            snprintf(lab, sizeof lab, "e%d", e);
            fprintf(f, " %5s", lab);
        }
    fprintf(f, "   max   min  unused\n");
    for (int l = 0; l < in->n_layers; l++) {
        const int64_t *r = c + (size_t)l * E;
        int64_t tot = 0, mx = 0, mn = INT64_MAX;
        int unused = 0;
        for (int e = 0; e < E; e++) {
            tot += r[e];
            mx = r[e] > mx ? r[e] : mx;
            mn = r[e] < mn ? r[e] : mn;
            unused += r[e] == 0;
        }
        fprintf(f, "  %5d", l);
        if (tot == 0) { fprintf(f, "  (dense or no tokens)\n"); continue; }
        if (cols)
            for (int e = 0; e < E; e++) fprintf(f, " %5.1f", 100.0 * r[e] / tot);
        fprintf(f, " %5.1f %5.1f  %6d\n", 100.0 * mx / tot, 100.0 * mn / tot, unused);
    }
    fprintf(f, "  (uniform share: %.1f%%)\n", 100.0 / E);
}

static void print_speed(FILE *f, const session *S, int n_gen) {
    fprintf(f, "prompt: %d tokens in %.3f s (%.2f tok/s); generation: %d tokens, %d evaluated in "
            "%.3f s (%.2f tok/s)\n", S->n_prompt_eval, S->t_prompt,
            S->t_prompt > 0 ? S->n_prompt_eval / S->t_prompt : 0.0, n_gen, S->n_gen_eval, S->t_gen,
            S->t_gen > 0 ? S->n_gen_eval / S->t_gen : 0.0);
}

/* ------------------------------------------------------------------ run */

static int parse(const char *cmd, int argc, char **argv, gen_opts *o, const char **path,
                 void (*usage)(FILE *)) {
    int bad = 0;
    const int chat = !strcmp(cmd, "chat");
    const char *file = NULL;
    o->seed = (int64_t)o->sc.seed;
    for (int i = 0; i < argc && !bad; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        if (gen_opt(o, argc, argv, &i, &bad)) continue;
        if (cli_str_opt("-m", "--model", argc, argv, &i, path, &bad)) continue;
        if (!chat && (cli_str_opt("-p", "--prompt", argc, argv, &i, &o->prompt, &bad) ||
                      cli_str_opt("-f", "--file", argc, argv, &i, &file, &bad)))
            continue;
        if (chat && cli_str_opt("--system", NULL, argc, argv, &i, &o->system, &bad)) continue;
        if (cli_str_opt("--template", NULL, argc, argv, &i, &o->tmpl, &bad)) { o->chat = !chat; continue; }
        if (!strcmp(a, "--no-bos")) o->no_bos = 1;
        else if (!strcmp(a, "--raw")) o->raw = 1;
        else if (!strcmp(a, "--echo")) o->echo = 1;
        else if (!chat && !strcmp(a, "--chat")) o->chat = 1;
        else if (!chat && !strcmp(a, "--expert-parallel") && i + 1 < argc) o->ep = atoi(argv[++i]);
        else if (!chat && !strcmp(a, "--logits-out") && i + 1 < argc) o->logits_out = argv[++i];
        else if (a[0] != '-' && !*path) *path = a;
        else return cli_unknown(cmd, a);
    }
    if (bad) return 2;
    if (!*path) return cli_usage_error(cmd, "which model? Give MODEL.gguf or -m MODEL.gguf");
    if (o->n_predict < 0 || o->ctx < 0 || o->experts_per_token < 0)
        return cli_usage_error(cmd, "-n, --ctx and --experts-per-token must be >= 0");
    if (file) {
        if (!(o->prompt_file = cli_read_file(file))) return 1;
        o->prompt = o->prompt_file;
    }
    o->sc.seed = cli_seed_resolve(o->seed);
    return -1;
}

static void run_usage(FILE *f) {
    fprintf(f, "usage: moe run MODEL.gguf -p TEXT [-n N] [options]   (or -m MODEL.gguf, -f FILE)\n"
               "  evaluates TEXT as one batch, then streams up to N (default 128) generated tokens to\n"
               "  stdout; speeds to stderr. Ctrl-C stops the generation (exit status 130).\n"
               "  -p TEXT, -f FILE  the prompt, or the prompt read from FILE (default: empty, BOS only)\n"
               "  --no-bos   do not add the BOS token   --raw   control-token text stays plain text\n"
               "  --echo     print the prompt first (default off)\n"
               "  --chat     render TEXT as one user message with the model's chat template\n"
               "  --expert-parallel P  one rank of mpirun -np P: this rank runs 1/P of the experts\n"
               "             (docs/SCALING.md); prints each rank's resident memory at the end\n"
               "  --logits-out FILE    write the prompt's last logits (raw f32) to FILE\n"
               "             (--template NAME: that template; implies --chat)\n");
    gen_usage(f);
}

static char *render(const char *tmpl, const moe_chat_msg *msgs, int n, char **buf, size_t *cap);

int cmd_run(int argc, char **argv, int n_threads) {
    gen_opts o;
    memset(&o, 0, sizeof o);
    moe_sampler_config_default(&o.sc);
    o.n_predict = 128;
    o.prompt = "";
    const char *path = NULL;
    int rc = parse("run", argc, argv, &o, &path, run_usage);
    if (rc >= 0) return rc;

    session S;
    streamer st = {.o = &o, .out = stdout};
    int n_gen = 0;
    char *chat_text = NULL;
    size_t chat_cap = 0;
    rc = 1;
    if (!session_open(&S, path, &o, n_threads)) goto done;
    const char *prompt = o.prompt;
    if (o.chat) {
        const moe_chat_msg msg = {"user", o.prompt};
        if (!(prompt = render(o.tmpl ? o.tmpl : moe_chat_template_for(path), &msg, 1, &chat_text, &chat_cap)))
            goto done;
    }
    long n = tokenize(&S, prompt, !o.no_bos, !o.raw || o.chat);
    if (n < 0) goto done;
    if (n == 0 && moe_vocab_bos(S.v) >= 0) S.ids[n++] = moe_vocab_bos(S.v);
    if (o.show_prompt) show_prompt(&S, prompt, n);
    if (!feed(&S, n)) goto done;
    if (o.logits_out && (!S.dist || moe_dist_rank(S.dist) == 0)) {
        FILE *lf = fopen(o.logits_out, "wb");
        if (!lf || fwrite(S.logits, sizeof(float), (size_t)S.info->vocab_size, lf) != (size_t)S.info->vocab_size) {
            fprintf(stderr, "moe: cannot write %s\n", o.logits_out);
            if (lf) fclose(lf);
            goto done;
        }
        fclose(lf);
    }
    if (o.echo) { fputs(o.prompt, stdout); fflush(stdout); }
    if (!generate(&S, o.n_predict, &st, &n_gen)) goto done;
    fputc('\n', stdout);
    fflush(stdout);
    print_speed(stderr, &S, n_gen);
    if (o.stats) print_stats(stderr, &S);
    rc = 0;
done:
    free(o.prompt_file);
    free(chat_text);
    free(st.pend);
    free(st.text);
    session_close(&S);
    return rc;
}

/* ----------------------------------------------------------------- chat */

static void chat_usage(FILE *f) {
    fprintf(f, "usage: moe chat MODEL.gguf [--system TEXT] [--template NAME] [options]   (or -m MODEL.gguf)\n"
               "  reads one user message per line from stdin (EOF ends) and streams each reply\n"
               "  (at most -n tokens, default 512); the conversation is rendered with the\n"
               "  template (from the file unless NAME: chatml, mistral, llama3, deepseek,\n"
               "  deepseek3, granite, phi3, tulu) and the KV cache keeps the common prefix.\n");
    gen_usage(f);
}

/* Renders msgs[0, n) into *buf (grown as needed); NULL on an error. */
static char *render(const char *tmpl, const moe_chat_msg *msgs, int n, char **buf, size_t *cap) {
    moe_error err;
    size_t len = 0;
    moe_status s = moe_chat_render(tmpl, msgs, n, 1, *buf, *cap, &len, &err);
    if (s == MOE_ERR_SHAPE) {
        if (!grow(buf, cap, len + 1)) { fprintf(stderr, "moe: out of memory\n"); return NULL; }
        s = moe_chat_render(tmpl, msgs, n, 1, *buf, *cap, &len, &err);
    }
    if (s != MOE_OK) { fprintf(stderr, "moe chat: %s\n", err.msg); return NULL; }
    return *buf;
}

int cmd_chat(int argc, char **argv, int n_threads) {
    gen_opts o;
    memset(&o, 0, sizeof o);
    moe_sampler_config_default(&o.sc);
    o.n_predict = 512;
    const char *path = NULL;
    int rc = parse("chat", argc, argv, &o, &path, chat_usage);
    if (rc >= 0) return rc;
    const char *tmpl = o.tmpl ? o.tmpl : moe_chat_template_for(path);

    session S;
    streamer st = {.o = &o, .out = stdout};
    moe_chat_msg *msgs = NULL;
    int n_msgs = 0, turn = 0, interactive = isatty(0);
    char *line = NULL, *text = NULL;
    size_t line_cap = 0, text_cap = 0;
    rc = 1;
    if (!session_open(&S, path, &o, n_threads)) goto done;
    /* one message per line of input at most, plus the system message */
    size_t msgs_cap = 8;
    if (!(msgs = malloc(sizeof *msgs * msgs_cap))) goto done;
    if (o.system) msgs[n_msgs++] = (moe_chat_msg){"system", o.system};
    if (!render(tmpl, msgs, n_msgs, &text, &text_cap)) goto done; /* checks the template */
    if (interactive) fprintf(stderr, "moe chat: %s, template %s; an empty line is skipped, EOF ends\n",
                             path, tmpl);
    while (!cli_signal()) {
        if (interactive) { fputs("> ", stderr); fflush(stderr); }
        ssize_t got = getline(&line, &line_cap, stdin);
        if (got < 0) break;
        while (got > 0 && (line[got - 1] == '\n' || line[got - 1] == '\r')) line[--got] = '\0';
        if (got == 0) continue;
        if ((size_t)n_msgs + 2 > msgs_cap) {
            moe_chat_msg *p = realloc(msgs, sizeof *msgs * msgs_cap * 2);
            if (!p) { fprintf(stderr, "moe: out of memory\n"); goto done; }
            msgs = p;
            msgs_cap *= 2;
        }
        char *user = strdup(line);
        if (!user) goto done;
        msgs[n_msgs++] = (moe_chat_msg){"user", user};
        if (!render(tmpl, msgs, n_msgs, &text, &text_cap)) goto done;
        long n = tokenize(&S, text, !o.no_bos, 1);
        if (n < 0) goto done;
        if (o.show_prompt) show_prompt(&S, text, n);
        const int before = S.n_prompt_eval, gen_before = S.n_gen_eval;
        const double t_before = S.t_gen;
        if (!feed(&S, n)) goto done;
        st.tn = 0;
        st.stopped = 0;
        int n_gen = 0;
        if (!generate(&S, o.n_predict, &st, &n_gen)) goto done;
        fputc('\n', stdout);
        fflush(stdout);
        char *reply = strdup(st.text ? st.text : "");
        if (!reply) goto done;
        msgs[n_msgs++] = (moe_chat_msg){"assistant", reply};
        turn++;
        fprintf(stderr, "[turn %d: %ld prompt tokens, %d evaluated (%ld re-used from the cache); "
                "reply %d tokens, %.2f tok/s]\n", turn, n, S.n_prompt_eval - before,
                n - (S.n_prompt_eval - before), n_gen,
                S.t_gen > t_before ? (S.n_gen_eval - gen_before) / (S.t_gen - t_before) : 0.0);
    }
    if (o.stats) print_stats(stderr, &S);
    rc = 0;
done:
    for (int i = o.system ? 1 : 0; msgs && i < n_msgs; i++) free((char *)msgs[i].content);
    free(msgs);
    free(line);
    free(text);
    free(st.pend);
    free(st.text);
    session_close(&S);
    return rc;
}
