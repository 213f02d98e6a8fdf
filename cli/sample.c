/* sample.c: `moe sample MODEL -p TEXT -n N`: text from a model trained by
 * `moe train`, through the training model's forward pass (the context is
 * re-run for each token: fine for the small models trained here; `moe run`
 * has the KV cache). It takes the options and defaults of `moe run`
 * (sampling, -f, -m, --echo, --stop, --experts-per-token, --ctx, --seed -1)
 * except --stats, --show-prompt, --chat and --raw (docs/CLI.md says why).
 * Only the public API. */
#include "cli.h"
#include "moe.h"
#include "moe_infer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Writes gen[*printed, upto) to out. */
static void put_upto(FILE *out, const char *gen, size_t *printed, size_t upto) {
    if (upto > *printed) fwrite(gen + *printed, 1, upto - *printed, out);
    if (upto > *printed) *printed = upto;
    fflush(out);
}

int sample_generate(moe_model *m, const moe_tokenizer *tok, const char *prompt, int n, const sample_opts *o,
                    FILE *out) {
    const moe_model_config *c = moe_model_get_config(m);
    moe_error err;
    size_t np = strlen(prompt), cap = np + (size_t)n + 1, len = 0;
    int32_t *ids = malloc(sizeof(int32_t) * (cap + 1));
    int V = c->vocab_size;
    float *logits = malloc(sizeof(float) * (size_t)V);
    size_t gcap = 256 + (size_t)n * 16, glen = 0, printed = 0, max_stop = 0;
    char *gen = malloc(gcap);
    moe_sampler *s = NULL;
    int rc = 1, window = o->ctx > 0 && o->ctx < c->ctx_len ? o->ctx : c->ctx_len;
    for (int k = 0; k < o->n_stop; k++)
        if (strlen(o->stop[k]) > max_stop) max_stop = strlen(o->stop[k]);
    if (!ids || !logits || !gen) { fprintf(stderr, "moe: out of memory\n"); goto done; }
    if (moe_tokenizer_encode(tok, prompt, np, ids, cap, &len, &err) != MOE_OK ||
        moe_sampler_create(&s, &o->sc, V, &err) != MOE_OK) {
        fprintf(stderr, "moe: %s\n", cli_msg(NULL, err.msg));
        goto done;
    }
    if (o->experts_per_token > 0)
        for (int l = 0; l < c->n_layers; l++) {
            moe_layer *L = moe_model_moe_layer(m, l);
            if (L && moe_layer_set_top_k(L, o->experts_per_token, &err) != MOE_OK) {
                fprintf(stderr, "moe: --experts-per-token: %s\n", err.msg);
                goto done;
            }
        }
    if (len == 0) ids[len++] = moe_tokenizer_bos(tok) >= 0 ? moe_tokenizer_bos(tok) : 0;
    if (o->echo) fputs(prompt, out);
    int stopped = 0;
    for (int i = 0; i < n && !stopped && !cli_signal(); i++) {
        int T = (int)len < window ? (int)len : window; /* the last `window` tokens */
        const int32_t *win = ids + len - (size_t)T;
        if (moe_model_forward(m, win, NULL, 1, T, 0, NULL, &err) != MOE_OK) {
            fprintf(stderr, "moe: %s\n", cli_msg(NULL, err.msg));
            goto done;
        }
        memcpy(logits, moe_model_logits(m) + (size_t)(T - 1) * V, sizeof(float) * (size_t)V);
        int next = moe_sampler_sample(s, logits, ids, (int)len);
        if (next == moe_tokenizer_eos(tok)) break;
        ids[len++] = next;
        char buf[256];
        size_t nb;
        if (moe_tokenizer_decode(tok, &ids[len - 1], 1, buf, sizeof buf, &nb, &err) != MOE_OK) continue;
        if (glen + nb + 1 > gcap) {
            char *q = realloc(gen, gcap * 2 + nb);
            if (!q) { fprintf(stderr, "moe: out of memory\n"); goto done; }
            gen = q;
            gcap = gcap * 2 + nb;
        }
        memcpy(gen + glen, buf, nb);
        glen += nb;
        /* --stop: the earliest stop string ends the text (not printed); a
           tail that may begin one is held back */
        size_t cut = glen;
        for (int k = 0; k < o->n_stop; k++) {
            const size_t L = strlen(o->stop[k]);
            for (size_t j = printed > L ? printed - L : 0; j + L <= glen && j < cut; j++)
                if (!memcmp(gen + j, o->stop[k], L)) { cut = j; break; }
        }
        if (cut < glen) { put_upto(out, gen, &printed, cut); stopped = 1; break; }
        put_upto(out, gen, &printed, max_stop > 0 && glen >= max_stop - 1 ? glen - (max_stop - 1) : max_stop ? printed : glen);
    }
    if (!stopped) put_upto(out, gen, &printed, glen);
    fputc('\n', out);
    rc = 0;
done:
    moe_sampler_free(s);
    free(ids);
    free(logits);
    free(gen);
    return rc;
}

void sample_opts_default(sample_opts *o) {
    memset(o, 0, sizeof *o);
    moe_sampler_config_default(&o->sc);
}

static void usage(FILE *f) {
    moe_sampler_config d;
    moe_sampler_config_default(&d);
    fprintf(f, "usage: moe sample MODEL.gguf [-p TEXT | -f FILE] [-n N] [options]   (or -m MODEL.gguf)\n"
               "  generates N tokens (default 128, as moe run) after TEXT with a model written by `moe train`, through\n"
               "  the training forward (no KV cache: each token re-runs the last --ctx tokens)\n"
               "  -p TEXT, -f FILE  the prompt, or the prompt read from FILE (default: empty, BOS only)\n"
               "  --echo            print the prompt first (default off, as in moe run)\n"
               "  --stop STR        stop before STR (repeatable; STR is not printed)\n"
               "  --experts-per-token K  route each token to K experts, K <= the model's k (default 0: k)\n"
               "  --ctx N           tokens of context per step (default 0: the model's context length)\n"
               "  --temp T (default %g; 0: greedy)  --top-k K (%d)  --top-p P (%g)  --min-p P (%g)\n"
               "  --repeat-penalty R (%g; 1: off)  --repeat-last-n N (%d)\n"
               "  --seed S, -s S    sampler seed (default %llu; -1: a random one, printed)\n"
               "  Ctrl-C stops the generation (exit status 130).\n",
            (double)d.temperature, d.top_k, (double)d.top_p, (double)d.min_p, (double)d.repeat_penalty,
            d.repeat_last_n, (unsigned long long)d.seed);
}

int cmd_sample(int argc, char **argv, int n_threads) {
    const char *path = NULL, *prompt = "", *file = NULL;
    int n = 128, bad = 0;
    sample_opts o;
    sample_opts_default(&o);
    const char **stop = calloc((size_t)argc + 1, sizeof(char *));
    int64_t seed = (int64_t)o.sc.seed;
    if (!stop) return 1;
    o.stop = stop;
    for (int i = 0; i < argc && !bad; i++) {
        const char *a = argv[i], *v = NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); free(stop); return 0; }
        if (cli_str_opt("-p", "--prompt", argc, argv, &i, &prompt, &bad) ||
            cli_str_opt("-f", "--file", argc, argv, &i, &file, &bad) ||
            cli_str_opt("-m", "--model", argc, argv, &i, &path, &bad) ||
            cli_int_opt("-n", argc, argv, &i, &n, &bad) ||
            cli_int_opt("--experts-per-token", argc, argv, &i, &o.experts_per_token, &bad) ||
            cli_int_opt("--ctx", argc, argv, &i, &o.ctx, &bad) ||
            cli_sampler_opt(&o.sc, &seed, argc, argv, &i, &bad))
            continue;
        if (cli_str_opt("--stop", NULL, argc, argv, &i, &v, &bad)) {
            if (v && !*v) { fprintf(stderr, "moe: --stop: an empty stop string\n"); bad = 1; }
            else if (v) stop[o.n_stop++] = v;
        } else if (!strcmp(a, "--echo")) o.echo = 1;
        else if (a[0] != '-' && !path) path = a;
        else { free(stop); return cli_unknown("sample", a); }
    }
    if (bad) { free(stop); return 2; }
    if (!path) { free(stop); return cli_usage_error("sample", "which model? Give MODEL.gguf or -m MODEL.gguf"); }
    if (n < 0 || o.ctx < 0 || o.experts_per_token < 0) {
        free(stop);
        return cli_usage_error("sample", "-n, --ctx and --experts-per-token must be >= 0");
    }
    char *text = NULL;
    if (file && !(text = cli_read_file(file))) { free(stop); return 1; }
    if (text) prompt = text;
    o.sc.seed = cli_seed_resolve(seed);
    moe_model *m;
    moe_tokenizer *tok;
    moe_error err;
    if (moe_model_load(&m, &tok, path, 1, n_threads, &err) != MOE_OK) {
        fprintf(stderr, "moe sample: %s\n", cli_msg("sample", err.msg));
        free(text);
        free(stop);
        return 1;
    }
    int rc = sample_generate(m, tok, prompt, n, &o, stdout);
    moe_model_free(m);
    moe_tokenizer_free(tok);
    free(text);
    free(stop);
    return rc;
}
