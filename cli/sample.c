/* sample.c: `moe sample MODEL -p TEXT -n N`: text from a model trained by
 * `moe train`, through the training model's forward pass (the context is
 * re-run for each token: fine for the small models trained here; `moe run`
 * has the KV cache). Only the public API. */
#include "cli.h"
#include "moe.h"
#include "moe_infer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int sample_generate(moe_model *m, const moe_tokenizer *tok, const char *prompt, int n, const sample_opts *o,
                    FILE *out) {
    const moe_model_config *c = moe_model_get_config(m);
    moe_error err;
    size_t np = strlen(prompt), cap = np + (size_t)n + 1, len = 0;
    int32_t *ids = malloc(sizeof(int32_t) * (cap + 1));
    int V = c->vocab_size;
    float *logits = malloc(sizeof(float) * (size_t)V);
    moe_sampler *s = NULL;
    moe_sampler_config sc;
    moe_sampler_config_default(&sc);
    sc.temperature = o->temperature;
    sc.top_k = o->top_k;
    sc.top_p = o->top_p;
    sc.min_p = o->min_p;
    sc.seed = o->seed;
    int rc = 1;
    if (!ids || !logits) { fprintf(stderr, "moe: out of memory\n"); goto done; }
    if (moe_tokenizer_encode(tok, prompt, np, ids, cap, &len, &err) != MOE_OK ||
        moe_sampler_create(&s, &sc, V, &err) != MOE_OK) {
        fprintf(stderr, "moe: %s\n", err.msg);
        goto done;
    }
    if (len == 0) ids[len++] = moe_tokenizer_bos(tok) >= 0 ? moe_tokenizer_bos(tok) : 0;
    fputs(prompt, out);
    for (int i = 0; i < n; i++) {
        int T = (int)len < c->ctx_len ? (int)len : c->ctx_len;
        const int32_t *win = ids + len - (size_t)T;
        if (moe_model_forward(m, win, NULL, 1, T, 0, NULL, &err) != MOE_OK) {
            fprintf(stderr, "moe: %s\n", err.msg);
            goto done;
        }
        memcpy(logits, moe_model_logits(m) + (size_t)(T - 1) * V, sizeof(float) * (size_t)V);
        int next = moe_sampler_sample(s, logits, ids, (int)len);
        if (next == moe_tokenizer_eos(tok)) break;
        ids[len++] = next;
        char buf[256];
        size_t nb;
        if (moe_tokenizer_decode(tok, &ids[len - 1], 1, buf, sizeof buf, &nb, &err) == MOE_OK)
            fwrite(buf, 1, nb, out);
        fflush(out);
    }
    fputc('\n', out);
    rc = 0;
done:
    moe_sampler_free(s);
    free(ids);
    free(logits);
    return rc;
}

static void usage(FILE *f) {
    fprintf(f, "usage: moe sample MODEL.gguf [-p TEXT] [-n N] [--temp T] [--top-k K] [--top-p P] [--min-p P] [--seed S]\n"
               "  generates N tokens (default 200) after TEXT with a model written by `moe train`\n"
               "  (temperature 0 is greedy; defaults: --temp 0.8 --top-k 40 --top-p 0.95 --min-p 0)\n");
}

int cmd_sample(int argc, char **argv, int n_threads) {
    const char *path = NULL, *prompt = "";
    int n = 200, bad = 0, seed = 1;
    sample_opts o = {.temperature = 0.8f, .top_p = 0.95f, .min_p = 0.0f, .top_k = 40, .seed = 1};
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) { usage(stdout); return 0; }
        if ((!strcmp(argv[i], "-p") || !strcmp(argv[i], "--prompt")) && i + 1 < argc) prompt = argv[++i];
        else if (cli_int_opt("-n", argc, argv, &i, &n, &bad)) {}
        else if (cli_float_opt("--temp", argc, argv, &i, &o.temperature, &bad)) {}
        else if (cli_int_opt("--top-k", argc, argv, &i, &o.top_k, &bad)) {}
        else if (cli_float_opt("--top-p", argc, argv, &i, &o.top_p, &bad)) {}
        else if (cli_float_opt("--min-p", argc, argv, &i, &o.min_p, &bad)) {}
        else if (cli_int_opt("--seed", argc, argv, &i, &seed, &bad)) {}
        else if (argv[i][0] != '-' && !path) path = argv[i];
        else { fprintf(stderr, "moe sample: unknown option '%s'\n", argv[i]); bad = 1; }
        if (bad) break;
    }
    if (bad || !path || n < 0) { usage(stderr); return 2; }
    o.seed = (uint64_t)seed;
    moe_model *m;
    moe_tokenizer *tok;
    moe_error err;
    if (moe_model_load(&m, &tok, path, 1, n_threads, &err) != MOE_OK) {
        fprintf(stderr, "moe: %s\n", err.msg);
        return 1;
    }
    int rc = sample_generate(m, tok, prompt, n, &o, stdout);
    moe_model_free(m);
    moe_tokenizer_free(tok);
    return rc;
}
