/* demo.c: `moe demo` (make demo): the project's main job on a built-in
 * default. Generates the multi-domain corpus, trains a small MoE language
 * model on it for about two minutes, and shows that it works: the loss
 * falling, validation loss against the corpus's unigram entropy, the expert
 * loads per layer, which experts each domain's tokens go to, and samples
 * for each domain. `moe demo routing` is the older MoE-layer-only demo. */
#include "cli.h"
#include "moe.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* 1 if dir holds a run (a model, a checkpoint or a token cache). */
static int holds_run(const char *dir) {
    const char *names[] = {"model.gguf", "state.gguf", "tokens.bin", "metrics.jsonl"};
    char p[4200];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        if (access(p, F_OK) == 0) return 1;
    }
    return 0;
}

/* For each domain, the share of its tokens whose first expert is e, per MoE
 * layer, and the mutual information between domain and expert. */
static int domain_table(moe_model *m, const moe_tokenizer *tok) {
    const moe_model_config *c = moe_model_get_config(m);
    const int E = c->moe.n_experts, ND = moe_corpus_n_domains(), T = c->ctx_len, B = c->max_batch;
    const int N = B * T;
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)(N + 1) * 8);
    int *ex = NULL;
    double *cnt = calloc((size_t)c->n_layers * ND * E, sizeof(double));
    moe_error err;
    int rc = 1;
    if (!ids || !cnt) goto done;
    for (int l = 0; l < c->n_layers; l++) {
        moe_layer *L = moe_model_moe_layer(m, l);
        if (!L) continue;
        if (!ex) ex = malloc(sizeof(int) * (size_t)N * (size_t)moe_layer_slots(L));
        if (!ex) goto done;
    }
    for (int d = 0; d < ND; d++) {
        char *text;
        size_t n, nt;
        if (moe_corpus_text(&text, &n, d, (size_t)N * 8, 4242, &err) != MOE_OK) goto fail;
        /* the corpus gives about the bytes asked; n ids always suffice */
        int32_t *q = realloc(ids, sizeof(int32_t) * (n + 1));
        if (!q) { free(text); goto done; }
        ids = q;
        moe_status st = moe_tokenizer_encode(tok, text, n, ids, n + 1, &nt, &err);
        free(text);
        if (st != MOE_OK) goto fail;
        int Bd = (int)(nt / (size_t)T) < B ? (int)(nt / (size_t)T) : B;
        if (Bd < 1) continue;
        if (moe_model_forward(m, ids, NULL, Bd, T, 0, NULL, &err) != MOE_OK) {
            fprintf(stderr, "moe: %s\n", err.msg);
            goto done;
        }
        for (int l = 0; l < c->n_layers; l++) {
            moe_layer *L = moe_model_moe_layer(m, l);
            if (!L) continue;
            int S = moe_layer_slots(L);
            moe_layer_routing(L, ex, NULL, NULL);
            for (int t = 0; t < Bd * T; t++)
                if (ex[(size_t)t * S] >= 0) cnt[((size_t)l * ND + d) * E + ex[(size_t)t * S]] += 1;
        }
    }
    printf("\nWhich expert each domain's tokens go to first (%% of the domain's tokens, held-out text):\n");
    for (int l = 0; l < c->n_layers; l++) {
        if (!moe_model_moe_layer(m, l)) continue;
        printf("  layer %d      ", l);
        for (int e = 0; e < E; e++) printf("  e%-3d", e);
        /* mutual information I(domain; expert) over equal domain weights */
        double pe[64] = {0}, mi = 0;
        for (int d = 0; d < ND; d++) {
            double tot = 0;
            for (int e = 0; e < E; e++) tot += cnt[((size_t)l * ND + d) * E + e];
            for (int e = 0; e < E && e < 64; e++)
                pe[e] += tot > 0 ? cnt[((size_t)l * ND + d) * E + e] / tot / ND : 0;
        }
        for (int d = 0; d < ND; d++) {
            double tot = 0;
            for (int e = 0; e < E; e++) tot += cnt[((size_t)l * ND + d) * E + e];
            for (int e = 0; e < E && e < 64; e++) {
                double p = tot > 0 ? cnt[((size_t)l * ND + d) * E + e] / tot : 0;
                if (p > 0 && pe[e] > 0) mi += p / ND * log2(p / pe[e]);
            }
        }
        printf("   I(domain;expert) = %.2f of %.2f bits\n", mi, log2((double)ND));
        for (int d = 0; d < ND; d++) {
            double tot = 0;
            for (int e = 0; e < E; e++) tot += cnt[((size_t)l * ND + d) * E + e];
            printf("    %-10s ", moe_corpus_domain_name(d));
            for (int e = 0; e < E; e++) {
                double p = tot > 0 ? 100.0 * cnt[((size_t)l * ND + d) * E + e] / tot : 0;
                printf(p >= 25 ? " [%3.0f]" : "  %3.0f ", p);
            }
            printf("\n");
        }
    }
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "moe: %s\n", err.msg);
done:
    free(ids);
    free(ex);
    free(cnt);
    return rc;
}

static void demo_usage(FILE *f) {
    fprintf(f, "usage: moe demo [--out DIR] [options of moe train]\n"
               "       moe demo routing        (one MoE layer's routing, no training)\n"
               "  trains a small MoE language model on the built-in corpus (a couple of minutes), then\n"
               "  shows its validation loss, expert loads, which experts each domain uses, and samples.\n"
               "  --out DIR   run directory (default build/demo-run; when that holds an earlier run,\n"
               "              the next free build/demo-run.N, so no run is ever overwritten; an --out\n"
               "              that holds a run is refused)\n"
               "  Ctrl-C stops it (checkpoint saved, exit status 130). The options of `moe train`\n"
               "  apply (e.g. --steps 100); their defaults are the demo's run:\n");
    train_opts_usage(f);
}

int cmd_demo(int argc, char **argv, int n_threads) {
    if (argc > 0 && !strcmp(argv[0], "routing")) return cmd_demo_routing(argc - 1, argv + 1, n_threads);
    moe_train_config c;
    moe_train_config_default(&c); /* the defaults are the demo's run */
    const char *out = NULL;
    int bad = 0;
    int64_t seed = 0;
    for (int i = 0; i < argc && !bad; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) { demo_usage(stdout); return 0; }
        if (cli_str_opt("--out", NULL, argc, argv, &i, &out, &bad)) continue;
        if (cli_seed_opt("--seed", argc, argv, &i, &seed, &bad)) { if (!bad) c.seed = cli_seed_resolve(seed); continue; }
        if (!train_opts_apply(&c, argc, argv, &i, &bad)) bad = cli_unknown("demo", argv[i]);
    }
    if (bad) return 2;
    train_opts_warn(&c);
    char dir[4200];
    if (out) {
        if (holds_run(out)) {
            fprintf(stderr, "moe demo: %s holds an earlier run; remove it first (rm -r %s) or choose another "
                    "--out (nothing was overwritten)\n", out, out);
            return 1;
        }
        snprintf(dir, sizeof dir, "%s", out);
    } else {
        snprintf(dir, sizeof dir, "build/demo-run");
        for (int n = 2; holds_run(dir) && n < 10000; n++) snprintf(dir, sizeof dir, "build/demo-run.%d", n);
        if (access("build", F_OK) != 0 && mkdir("build", 0777) != 0) {
            fprintf(stderr, "moe demo: cannot create the folder build/ here (give --out DIR)\n");
            return 1;
        }
    }
    out = dir;
    c.model.n_threads = n_threads;
    c.model.max_batch = c.batch;
    printf("moe demo: train a small sparse Mixture-of-Experts language model on the built-in corpus\n"
           "(%d domains: ", moe_corpus_n_domains());
    for (int d = 0; d < moe_corpus_n_domains(); d++) printf("%s%s", d ? ", " : "", moe_corpus_domain_name(d));
    printf("), then look at its routing and its samples. Run directory: %s\n", out);
    if (strcmp(out, "build/demo-run") && !strncmp(out, "build/demo-run.", 15))
        printf("(earlier demo runs are kept in build/demo-run*; rm -r build/demo-run* removes them)\n");
    printf("\n");
    moe_trainer *t;
    moe_error err;
    double t0 = cli_now();
    cli_progress pr;
    cli_progress_init(&pr, "demo");
    c.progress = cli_progress_cb;
    c.progress_user = &pr;
    moe_status st = moe_trainer_create(&t, &c, NULL, 0, out, &err);
    cli_progress_end(&pr);
    if (st != MOE_OK) {
        if (st == MOE_ERR_CANCELLED && cli_signal()) return cli_signal_exit();
        fprintf(stderr, "moe demo: %s\n", cli_msg("demo", err.msg));
        return 1;
    }
    train_print_summary(t);
    printf("(corpus, tokenizer and token cache took %.1f s)\n\n", cli_now() - t0);
    char metrics[4200];
    snprintf(metrics, sizeof metrics, "%s/metrics.jsonl", out);
    train_run_opts o = {.quiet = 0, .metrics_path = metrics, .show_routing = 0, .log_every = c.steps / 12,
                        .dir = out};
    double t1 = cli_now();
    int rc = train_run(t, &o);
    if (rc) { moe_trainer_free(t); return rc; } /* interrupted (130 / 143) or failed: no summary */
    double train_s = cli_now() - t1;
    moe_model *m = moe_trainer_model(t);
    float vl;
    if (moe_trainer_eval(t, &vl, &err) != MOE_OK) {
        fprintf(stderr, "moe demo: %s\n", cli_msg("demo", err.msg));
        moe_trainer_free(t);
        return 1;
    }
    moe_data_info di = moe_trainer_data_info(t);
    double uni = di.unigram_bits * log(2.0);
    printf("\ntrained %lld steps in %.0f s. Validation loss %.3f nats/token vs the unigram entropy %.3f "
           "nats/token: %.1fx lower (%.2f bits/token of %.2f)\n",
           (long long)c.steps, train_s, vl, uni, uni / vl, vl / log(2.0), di.unigram_bits);
    printf("\nExpert loads per MoE layer (last validation batch, dropless):\n");
    train_print_routing(stdout, m);
    rc = domain_table(m, moe_trainer_tokenizer(t));
    printf("\nSamples (temperature 0.7, top-k 40; the prompt, then the model):\n");
    sample_opts so;
    sample_opts_default(&so);
    so.sc.temperature = 0.7f;
    so.sc.min_p = 0.0f;
    so.sc.seed = 7;
    so.echo = 1;
    for (int d = 0; d < moe_corpus_n_domains() && rc == 0 && !cli_signal(); d++) {
        printf("--- %s ---\n", moe_corpus_domain_name(d));
        rc = sample_generate(m, moe_trainer_tokenizer(t), moe_corpus_domain_prompt(d), 60, &so, stdout);
    }
    printf("\nThe model is in %s/model.gguf (GGUF, llama/Mixtral layout). Try:\n"
           "  build/moe sample %s/model.gguf -p \"%s\" -n 100\n"
           "  build/moe train --resume %s --steps %lld     (continues exactly)\n",
           out, out, "The ", out, (long long)c.steps * 2);
    printf("  (a resume past the run's steps holds the final learning rate; see moe train --help)\n");
    printf("demo done in %.0f s\n", cli_now() - t0);
    moe_trainer_free(t);
    return cli_signal() ? cli_signal_exit() : rc;
}
