/* train.c: `moe train`: option parsing, the step loop with its log lines,
 * progress bar and JSON-lines metrics, validation with per-layer routing
 * statistics, checkpoints, and Ctrl-C (save, then exit cleanly).
 * Used by the demo too (train_run). Only the public API. */
#include "cli.h"
#include "moe.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t g_interrupted; /* set by SIGINT/SIGTERM only */

static void on_signal(int sig) {
    (void)sig;
    g_interrupted = 1;
}

static void fmt_time(char *buf, size_t n, double s) {
    if (s < 0 || !isfinite(s)) s = 0;
    int t = (int)(s + 0.5);
    if (t >= 3600) snprintf(buf, n, "%dh%02dm", t / 3600, (t / 60) % 60);
    else if (t >= 60) snprintf(buf, n, "%dm%02ds", t / 60, t % 60);
    else snprintf(buf, n, "%ds", t);
}

/* One JSON line of per-layer routing statistics of the last forward. */
static void json_routing(FILE *f, moe_model *m) {
    const moe_model_config *c = moe_model_get_config(m);
    fprintf(f, "\"layers\":[");
    int first = 1;
    for (int l = 0; l < c->n_layers; l++) {
        moe_layer *L = moe_model_moe_layer(m, l);
        if (!L) continue;
        const moe_route_stats *s = moe_layer_stats(L);
        fprintf(f, "%s{\"layer\":%d,\"load\":[", first ? "" : ",", l);
        for (int e = 0; e < c->moe.n_experts; e++) fprintf(f, "%s%d", e ? "," : "", s->tokens_per_expert[e]);
        fprintf(f, "],\"max_violation\":%.4f,\"dropped_fraction\":%.4f,\"dead_experts\":%d,\"starved_experts\":%d,"
                "\"entropy\":%.4f}", s->max_violation, s->dropped_fraction, s->dead_experts, s->starved_experts,
                s->entropy);
        first = 0;
    }
    fprintf(f, "]");
}

void train_print_routing(FILE *f, moe_model *m) {
    const moe_model_config *c = moe_model_get_config(m);
    int E = c->moe.n_experts;
    int any = 0;
    for (int l = 0; l < c->n_layers; l++) {
        moe_layer *L = moe_model_moe_layer(m, l);
        if (!L) continue;
        if (!any) {
            fprintf(f, "  layer  load per expert (%% of assignments)%*s max-viol dropped dead starved\n",
                    E * 5 - 30 > 0 ? E * 5 - 30 : 0, "");
            any = 1;
        }
        const moe_route_stats *s = moe_layer_stats(L);
        double tot = 0;
        for (int e = 0; e < E; e++) tot += s->tokens_per_expert[e];
        fprintf(f, "  %5d  ", l);
        for (int e = 0; e < E && e < 64; e++) fprintf(f, "%4.0f ", tot > 0 ? 100.0 * s->tokens_per_expert[e] / tot : 0.0);
        fprintf(f, " %7.2f %6.1f%% %4d %7d\n", s->max_violation, 100.0 * s->dropped_fraction, s->dead_experts,
                s->starved_experts);
    }
}

int train_run(moe_trainer *t, const train_run_opts *o) {
    const moe_train_config *c = moe_trainer_config(t);
    moe_model *m = moe_trainer_model(t);
    moe_error err;
    FILE *metrics = NULL;
    if (o->metrics_path) {
        metrics = fopen(o->metrics_path, "a");
        if (!metrics) {
            fprintf(stderr, "moe: cannot open the metrics file %s\n", o->metrics_path);
            return 1;
        }
    }
    struct sigaction sa, old_int, old_term;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    g_interrupted = 0;
    int tty = isatty(2) && !o->quiet;
    int64_t start = moe_trainer_steps_done(t);
    double t0 = cli_now(), tok = 0, tok_time = 0;
    int rc = 0;
    float loss_ema = -1;
    int64_t log_every = o->log_every > 0 ? o->log_every : 10;
    while (moe_trainer_steps_done(t) < c->steps) {
        if (g_interrupted) break;
        moe_train_step_info s;
        if (moe_trainer_step(t, &s, &err) != MOE_OK) {
            fprintf(stderr, "%smoe: training failed: %s\n", tty ? "\n" : "", err.msg);
            rc = 1;
            break;
        }
        tok += s.tokens;
        tok_time += s.seconds;
        loss_ema = loss_ema < 0 ? s.loss : 0.9f * loss_ema + 0.1f * s.loss;
        double tps = s.tokens / (s.seconds > 0 ? s.seconds : 1e-9);
        if (metrics)
            fprintf(metrics, "{\"step\":%lld,\"loss\":%.6f,\"aux\":%.6f,\"z\":%.6f,\"router\":%.6f,\"lr\":%.6g,"
                    "\"grad_norm\":%.5f,\"tokens_per_s\":%.1f}\n",
                    (long long)s.step, s.loss, s.aux, s.z, s.router, s.lr, s.grad_norm, tps);
        int last = s.step == c->steps;
        int do_eval = c->eval_every > 0 && (s.step % c->eval_every == 0 || last);
        if (!o->quiet && (s.step % log_every == 0 || s.step == start + 1 || last)) {
            if (tty) fprintf(stderr, "\r\033[K");
            printf("step %6lld/%lld  loss %.4f  aux %.4f  z %.4f  lr %.2e  |g| %.2f  %.0f tok/s\n",
                   (long long)s.step, (long long)c->steps, s.loss, s.aux, s.z, s.lr, s.grad_norm, tok / tok_time);
            fflush(stdout);
        }
        if (do_eval) {
            /* routing statistics of this training step, before validation
               runs other batches through the layers */
            if (metrics) {
                fprintf(metrics, "{\"step\":%lld,\"routing\":{", (long long)s.step);
                json_routing(metrics, m);
                fprintf(metrics, "}}\n");
            }
            if (!o->quiet && o->show_routing) train_print_routing(stdout, m);
            float vl;
            if (moe_trainer_eval(t, &vl, &err) != MOE_OK) {
                fprintf(stderr, "moe: validation failed: %s\n", err.msg);
                rc = 1;
                break;
            }
            if (metrics) fprintf(metrics, "{\"step\":%lld,\"val_loss\":%.6f}\n", (long long)s.step, vl);
            if (!o->quiet) {
                if (tty) fprintf(stderr, "\r\033[K");
                printf("step %6lld  validation loss %.4f (%.3f bits/token)\n", (long long)s.step, vl, vl / log(2.0));
                fflush(stdout);
            }
        }
        if (c->save_every > 0 && s.step % c->save_every == 0 && !last) {
            if (moe_trainer_save(t, &err) != MOE_OK) {
                fprintf(stderr, "moe: checkpoint failed (the previous one is intact): %s\n", err.msg);
                rc = 1;
                break;
            }
        }
        if (tty) {
            double done = (double)(s.step - start) / (double)(c->steps - start);
            double el = cli_now() - t0;
            char eta[32];
            fmt_time(eta, sizeof eta, el / done * (1 - done));
            int w = 30, fill = (int)(done * w);
            fprintf(stderr, "\r[%.*s%*s] %3.0f%% step %lld/%lld loss %.3f ETA %s ", fill,
                    "##############################", w - fill, "", 100 * done, (long long)s.step,
                    (long long)c->steps, loss_ema, eta);
        }
    }
    if (tty) fprintf(stderr, "\r\033[K");
    if (metrics) fclose(metrics);
    if (rc == 0 || g_interrupted) {
        if (moe_trainer_save(t, &err) != MOE_OK) {
            fprintf(stderr, "moe: checkpoint failed (the previous one is intact): %s\n", err.msg);
            rc = 1;
        } else if (g_interrupted) {
            printf("interrupted at step %lld: checkpoint saved; continue with --resume\n",
                   (long long)moe_trainer_steps_done(t));
        }
    }
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    return rc;
}

void train_print_summary(moe_trainer *t) {
    const moe_train_config *c = moe_trainer_config(t);
    moe_model_counts k;
    moe_model_count(&c->model, &k);
    moe_data_info di = moe_trainer_data_info(t);
    int n_moe = 0;
    for (int l = 0; l < c->model.n_layers; l++) n_moe += moe_model_layer_is_moe(&c->model, l);
    printf("model: d=%d layers=%d (MoE %d: %d experts top-%d, width %d; dense width %d) heads=%d/%d ctx=%d vocab=%d\n",
           c->model.d_model, c->model.n_layers, n_moe, c->model.moe.n_experts, c->model.moe.top_k, c->model.moe.d_ff,
           c->model.d_ff, c->model.n_heads, c->model.n_kv_heads, c->model.ctx_len, c->model.vocab_size);
    printf("parameters: %.2fM total, %.2fM active per token; %.1f MFLOP/token forward, %.1f training\n",
           k.params / 1e6, k.active_params / 1e6, k.fwd_flops / 1e6, k.train_flops / 1e6);
    printf("data: %.2f MB of text -> %lld training + %lld validation tokens%s; unigram entropy %.3f bits/token "
           "(%.3f nats)\n",
           di.text_bytes / 1e6, (long long)di.train_tokens, (long long)di.val_tokens,
           di.cache_reused ? " (token cache reused)" : "", di.unigram_bits, di.unigram_bits * log(2.0));
    /* where validation comes from; warnings go to stderr in
       train_print_data_notes */
    const char *notes = moe_trainer_data_notes(t);
    for (const char *p = notes; *p;) {
        const char *e = strchr(p, '\n');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (!strncmp(p, "validation:", 11)) printf("%.*s\n", (int)l, p);
        p += l + (e != NULL);
    }
    printf("training: %lld steps x %d x %d sequences of %d tokens, lr %.2g -> %.2g, warmup %lld\n",
           (long long)c->steps, c->accum, c->batch, c->model.ctx_len, c->lr, c->min_lr, (long long)c->warmup);
}

/* The data's warnings and notes (files skipped or read once, an incomplete
 * last character, a byte vocabulary), on stderr, "moe: " before each. */
void train_print_data_notes(moe_trainer *t) {
    const char *notes = moe_trainer_data_notes(t);
    for (const char *p = notes; *p;) {
        const char *e = strchr(p, '\n');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (strncmp(p, "validation:", 11)) fprintf(stderr, "moe: %.*s\n", (int)l, p);
        p += l + (e != NULL);
    }
}

static void usage(FILE *f) {
    fprintf(f, "usage: moe train [--data PATH]... [--out DIR] [options]\n"
               "       moe train --resume DIR [--steps N] [options that must match the checkpoint]\n"
               "  --data PATH       a text file or folder (repeatable; default: the built-in corpus)\n"
               "  --out DIR         run directory (default moe-run): model.gguf, state.gguf, tokens.bin, metrics.jsonl\n"
               "  --quiet           no log lines\n"
               "  data: folders are read recursively; .gz/.xz/.zst files decompressed; a file reached by\n"
               "  several names (links) is read once; --skip-bad skips unreadable or binary files\n"
               "options:\n");
    train_opts_usage(f);
}

int cmd_train(int argc, char **argv, int n_threads) {
    const char *resume = NULL, *out = "moe-run";
    const char **data = calloc((size_t)argc + 1, sizeof(char *));
    int n_data = 0, bad = 0, quiet = 0;
    if (!data) return 1;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--resume") && i + 1 < argc) resume = argv[++i];
        else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { usage(stdout); free(data); return 0; }
    }
    moe_train_config c;
    moe_error err;
    if (resume) {
        if (moe_trainer_read_config(resume, &c, &err) != MOE_OK) {
            fprintf(stderr, "moe: %s\n", err.msg);
            free(data);
            return 1;
        }
    } else {
        moe_train_config_default(&c);
    }
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--resume")) { i++; continue; }
        if (!strcmp(argv[i], "--data")) {
            if (i + 1 >= argc) { fprintf(stderr, "moe: --data needs a path\n"); bad = 1; break; }
            data[n_data++] = argv[++i];
        } else if (!strcmp(argv[i], "--out")) {
            if (i + 1 >= argc) { fprintf(stderr, "moe: --out needs a directory\n"); bad = 1; break; }
            out = argv[++i];
        } else if (!strcmp(argv[i], "--quiet")) {
            quiet = 1;
        } else if (!train_opts_apply(&c, argc, argv, &i, &bad)) {
            fprintf(stderr, "moe train: unknown option '%s'\n", argv[i]);
            bad = 1;
        }
        if (bad) break;
    }
    if (bad) { usage(stderr); free(data); return 2; }
    train_opts_warn(&c);
    c.model.n_threads = n_threads;
    c.model.max_batch = c.batch;
    moe_trainer *t = NULL;
    moe_status st;
    if (resume) {
        if (n_data) fprintf(stderr, "moe: --data is ignored on --resume (the run's token cache is used)\n");
        out = resume;
        st = moe_trainer_resume(&t, resume, &c, &err);
    } else {
        st = moe_trainer_create(&t, &c, n_data ? data : NULL, n_data, out, &err);
    }
    free(data);
    if (st != MOE_OK) {
        fprintf(stderr, "moe: %s\n", err.msg);
        return 1;
    }
    train_print_data_notes(t);
    if (!quiet) {
        train_print_summary(t);
        if (resume) printf("resuming %s at step %lld\n", resume, (long long)moe_trainer_steps_done(t));
    }
    char metrics[4096];
    snprintf(metrics, sizeof metrics, "%s/metrics.jsonl", out);
    train_run_opts o = {.quiet = quiet, .metrics_path = metrics, .show_routing = 1, .log_every = 0};
    int rc = train_run(t, &o);
    if (rc == 0 && !quiet) printf("saved %s/model.gguf and %s/state.gguf at step %lld\n", out, out,
                                  (long long)moe_trainer_steps_done(t));
    moe_trainer_free(t);
    return rc;
}
