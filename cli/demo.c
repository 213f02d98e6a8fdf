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
#include <unistd.h>

/* Removes the demo's own files from its run directory (only those names). */
static void clean_run_dir(const char *dir) {
    const char *names[] = {"model.gguf", "state.gguf", "tokens.bin", "metrics.jsonl"};
    char p[4096];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        unlink(p);
    }
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
        moe_status st = moe_tokenizer_encode(tok, text, n, ids, (size_t)(N + 1) * 8, &nt, &err);
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

int cmd_demo(int argc, char **argv, int n_threads) {
    if (argc > 0 && !strcmp(argv[0], "routing")) return cmd_demo_routing(argc - 1, argv + 1, n_threads);
    moe_train_config c;
    moe_train_config_default(&c); /* the defaults are the demo's run */
    const char *out = "build/demo-run";
    int bad = 0;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--out") && i + 1 < argc) out = argv[++i];
        else if (!train_opts_apply(&c, argc, argv, &i, &bad)) {
            fprintf(stderr, "moe demo: unknown option '%s' (options of `moe train` apply)\n", argv[i]);
            bad = 1;
        }
        if (bad) return 2;
    }
    train_opts_warn(&c);
    c.model.n_threads = n_threads;
    c.model.max_batch = c.batch;
    printf("moe demo: train a small sparse Mixture-of-Experts language model on the built-in corpus\n"
           "(%d domains: ", moe_corpus_n_domains());
    for (int d = 0; d < moe_corpus_n_domains(); d++) printf("%s%s", d ? ", " : "", moe_corpus_domain_name(d));
    printf("), then look at its routing and its samples. Run directory: %s\n\n", out);
    clean_run_dir(out);
    moe_trainer *t;
    moe_error err;
    double t0 = cli_now();
    if (moe_trainer_create(&t, &c, NULL, 0, out, &err) != MOE_OK) {
        fprintf(stderr, "moe: %s\n", err.msg);
        return 1;
    }
    train_print_summary(t);
    printf("(corpus, tokenizer and token cache took %.1f s)\n\n", cli_now() - t0);
    char metrics[4200];
    snprintf(metrics, sizeof metrics, "%s/metrics.jsonl", out);
    train_run_opts o = {.quiet = 0, .metrics_path = metrics, .show_routing = 0, .log_every = c.steps / 12};
    double t1 = cli_now();
    int rc = train_run(t, &o);
    if (rc) { moe_trainer_free(t); return rc; }
    double train_s = cli_now() - t1;
    moe_model *m = moe_trainer_model(t);
    float vl;
    if (moe_trainer_eval(t, &vl, &err) != MOE_OK) {
        fprintf(stderr, "moe: %s\n", err.msg);
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
    sample_opts so = {.temperature = 0.7f, .top_p = 0.95f, .min_p = 0.0f, .top_k = 40, .seed = 7};
    for (int d = 0; d < moe_corpus_n_domains() && rc == 0; d++) {
        printf("--- %s ---\n", moe_corpus_domain_name(d));
        rc = sample_generate(m, moe_trainer_tokenizer(t), moe_corpus_domain_prompt(d), 60, &so, stdout);
    }
    printf("\nThe model is in %s/model.gguf (GGUF, llama/Mixtral layout). Try:\n"
           "  build/moe sample %s/model.gguf -p \"%s\" -n 100\n"
           "  build/moe train --resume %s --steps %lld     (continues exactly)\n",
           out, out, "The ", out, (long long)c.steps * 2);
    printf("demo done in %.0f s\n", cli_now() - t0);
    moe_trainer_free(t);
    return rc;
}
