/* train.c: `moe train`: option parsing, the step loop with its log lines,
 * progress bar and JSON-lines metrics, validation with per-layer routing
 * statistics, checkpoints (every --save-every steps, and at the end), and
 * Ctrl-C / SIGTERM (stop between steps, save, exit 130 / 143; signals.c).
 * metrics.jsonl gets whole lines, flushed at each step, so after a kill it
 * ends on a complete line. Used by the demo too (train_run). Only the
 * public API. */
#include "cli.h"
#include "moe.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

/* Writes one whole JSON line (built in memory) to f and flushes it, so a
 * kill leaves metrics.jsonl ending on a complete line. 0 on a write error. */
static int put_line(FILE *f, char *line, size_t n) {
    int ok = fwrite(line, 1, n, f) == n && fflush(f) == 0;
    free(line);
    return ok;
}

/* The identity of dir/state.gguf (an atomic write gives it a new inode);
 * 0 when missing. */
static unsigned long long state_id(const char *dir) {
    char p[4200];
    struct stat sb;
    snprintf(p, sizeof p, "%s/state.gguf", dir ? dir : ".");
    return stat(p, &sb) == 0 ? (unsigned long long)sb.st_ino * 1000003ull ^ (unsigned long long)sb.st_mtim.tv_nsec
                             : 0;
}

/* Saves a checkpoint; on failure says what is on disk (which step
 * state.gguf holds, or that there is none) and returns 0. */
static int save(moe_trainer *t, const char *dir, int64_t *last_saved) {
    moe_error err;
    int64_t step = moe_trainer_steps_done(t);
    unsigned long long before = state_id(dir);
    moe_status st = moe_trainer_save(t, &err);
    if (st == MOE_OK) {
        *last_saved = step;
        return 1;
    }
    const char *why = st == MOE_ERR_CANCELLED ? "interrupted again" : err.msg;
    if (state_id(dir) != before) { /* state.gguf written, model.gguf not */
        fprintf(stderr, "moe: the checkpoint of step %lld is only partly saved: %s; %s/state.gguf holds step %lld "
                "(--resume continues from it), model.gguf an older step\n", (long long)step, why, dir, (long long)step);
        *last_saved = step;
    } else if (*last_saved >= 0) {
        fprintf(stderr, "moe: the checkpoint of step %lld was not saved: %s; the previous checkpoint (step %lld) "
                "is intact\n", (long long)step, why, (long long)*last_saved);
    } else {
        fprintf(stderr, "moe: the checkpoint of step %lld was not saved: %s; this run has no checkpoint yet\n",
                (long long)step, why);
    }
    return 0;
}

/* save() with the watchdog paused: the other ranks wait for rank 0's write
 * (a legitimate wait as long as the disk takes). Distributed, a barrier
 * (still paused) keeps them until the files are written, so that their next
 * collective does not count the write as a stall. */
static int save_paused(moe_trainer *t, const train_run_opts *o, cli_watchdog *wd, int64_t *last_saved) {
    cli_watchdog_pause(wd, 1);
    int ok = save(t, o->dir, last_saved);
    moe_error err;
    if (ok && o->dist && moe_dist_barrier(o->dist, &err) != MOE_OK) {
        fprintf(stderr, "moe: rank %d: %s\n", moe_dist_rank(o->dist), err.msg);
        ok = 0;
    }
    cli_watchdog_pause(wd, 0);
    return ok;
}

/* "rank R: " of a distributed run's messages. */
static const char *rank_tag(moe_dist *d) {
    static char b[32];
    snprintf(b, sizeof b, "rank %d: ", moe_dist_rank(d));
    return b;
}

/* The signal to stop at (0: go on): this process's, or in an MPI job the
 * largest any rank received, so that every rank stops after the same step
 * and joins the same checkpoint (collective: every rank calls it once
 * before the first step and once after each). Sets *rc on a failure. */
static int agree_stop(const train_run_opts *o, int *rc) {
    int sig = cli_signal();
    if (!o->dist) return sig;
    moe_error err;
    if (moe_dist_max(o->dist, &sig, &err) != MOE_OK) {
        fprintf(stderr, "moe: %s%s\n", rank_tag(o->dist), err.msg);
        *rc = 1;
    }
    return sig;
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
    cli_signals_soft(1); /* Ctrl-C: finish the step, save, stop */
    int tty = isatty(2) && !o->quiet;
    int64_t start = moe_trainer_steps_done(t);
    int64_t last_saved = o->has_checkpoint ? start : -1;
    double t0 = cli_now(), tok = 0, tok_time = 0;
    int rc = 0, metrics_ok = 1;
    float loss_ema = -1;
    int64_t log_every = o->log_every > 0 ? o->log_every : 10;
    if (metrics) { /* the header record, one whole line like the others */
        char *hl = NULL;
        size_t hn = 0;
        FILE *hf = open_memstream(&hl, &hn);
        if (hf) {
            train_metrics_header(hf, t, o->run_dir);
            fclose(hf);
            metrics_ok = put_line(metrics, hl, hn);
        }
    }
    /* distributed: a collective stuck longer than --dist-timeout ends the job */
    cli_watchdog *wd = o->dist ? cli_watchdog_start(o->dist, o->dist_timeout) : NULL;
    int stop = agree_stop(o, &rc); /* a signal: every rank stops after the same step */
    while (moe_trainer_steps_done(t) < c->steps && (o->until <= 0 || moe_trainer_steps_done(t) < o->until)) {
        if (!o->dist) stop = cli_signal(); /* one process: whenever it came */
        if (stop || rc) break;
        moe_train_step_info s;
        cli_signals_where("step", moe_trainer_steps_done(t) + 1);
        if (moe_trainer_step(t, &s, &err) != MOE_OK) {
            fprintf(stderr, "%smoe: %straining failed: %s\n", tty ? "\n" : "", o->dist ? rank_tag(o->dist) : "",
                    err.msg);
            rc = 1;
            break;
        }
        stop = agree_stop(o, &rc);
        if (rc) break;
        cli_signals_where("after step", s.step);
        tok += s.tokens;
        tok_time += s.seconds;
        loss_ema = loss_ema < 0 ? s.loss : 0.9f * loss_ema + 0.1f * s.loss;
        double tps = s.tokens / (s.seconds > 0 ? s.seconds : 1e-9);
        char *line = NULL;
        size_t len = 0;
        FILE *mf = metrics ? open_memstream(&line, &len) : NULL;
        if (mf) {
            fprintf(mf, "{\"step\":%lld,\"loss\":%.6f,\"aux\":%.6f,\"z\":%.6f,\"router\":%.6f,\"lr\":%.6g,"
                    "\"grad_norm\":%.5f,\"tokens_per_s\":%.1f,\"wall\":%.3f}\n",
                    (long long)s.step, s.loss, s.aux, s.z, s.router, s.lr, s.grad_norm, tps, cli_now() - t0);
            fclose(mf);
            if (metrics_ok && !put_line(metrics, line, len)) {
                fprintf(stderr, "moe: writing %s failed; training goes on without metrics\n", o->metrics_path);
                metrics_ok = 0;
            }
        }
        int last = s.step == c->steps;
        int do_eval = c->eval_every > 0 && (s.step % c->eval_every == 0 || last);
        if (!o->quiet && (s.step % log_every == 0 || s.step == start + 1 || last)) {
            if (tty) fprintf(stderr, "\r\033[K");
            printf("step %6lld/%lld  loss %.4f  aux %.4f  z %.4f  lr %.2e  |g| %.2f  %.0f tok/s\n",
                   (long long)s.step, (long long)c->steps, s.loss, s.aux, s.z, s.lr, s.grad_norm, tok / tok_time);
            fflush(stdout);
        }
        if (do_eval && !stop) {
            cli_signals_where("validation after step", s.step);
            /* routing statistics of this training step, before validation
               runs other batches through the layers */
            if (metrics && metrics_ok && (mf = open_memstream(&line, &len))) {
                fprintf(mf, "{\"step\":%lld,\"routing\":{", (long long)s.step);
                json_routing(mf, m);
                fprintf(mf, "}}\n");
                fclose(mf);
                metrics_ok = put_line(metrics, line, len);
            }
            if (!o->quiet && o->show_routing) train_print_routing(stdout, m);
            float vl;
            if (moe_trainer_eval(t, &vl, &err) != MOE_OK) {
                fprintf(stderr, "moe: validation failed: %s\n", err.msg);
                rc = 1;
                break;
            }
            if (metrics && metrics_ok && (mf = open_memstream(&line, &len))) {
                fprintf(mf, "{\"step\":%lld,\"val_loss\":%.6f}\n", (long long)s.step, vl);
                fclose(mf);
                metrics_ok = put_line(metrics, line, len);
            }
            if (metrics && metrics_ok && (mf = open_memstream(&line, &len))) {
                train_metrics_eval(mf, t, s.step, cli_now() - t0);
                fclose(mf);
                metrics_ok = len == 0 ? 1 : put_line(metrics, line, len);
                if (len == 0) free(line);
            }
            if (!o->quiet) {
                if (tty) fprintf(stderr, "\r\033[K");
                printf("step %6lld  validation loss %.4f (%.3f bits/token)\n", (long long)s.step, vl, vl / log(2.0));
                fflush(stdout);
            }
        }
        if (c->save_every > 0 && s.step % c->save_every == 0 && !last && !stop) {
            cli_signals_where("the checkpoint of step", s.step);
            if (!save_paused(t, o, wd, &last_saved)) { rc = 1; break; }
        }
        if (o->report_path && metrics && (last || (o->report_every > 0 && s.step % o->report_every == 0))) {
            fflush(metrics);
            const char *dirs[1] = {o->run_dir};
            if (moe_report_write(o->report_path, dirs, 1, &err) != MOE_OK)
                fprintf(stderr, "%smoe: report not written: %s\n", tty ? "\n" : "", err.msg);
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
    if (!o->dist) stop = cli_signal();
    const int64_t done = moe_trainer_steps_done(t);
    /* stop: the signal every rank agreed on (one process: its own) */
    const char *how = stop == SIGINT ? "interrupted" : "terminated";
    const int quiet_rank = o->dist && moe_dist_rank(o->dist) != 0;
    if ((rc == 0 || stop) && done > last_saved) {
        cli_signals_where("the checkpoint of step", done);
        if (!save_paused(t, o, wd, &last_saved)) rc = 1;
        else if (stop && !quiet_rank)
            fprintf(stderr, "moe: %s at step %lld: checkpoint saved; continue with: moe train --resume %s\n", how,
                    (long long)done, o->dir ? o->dir : "DIR");
    } else if (stop && last_saved >= 0 && !quiet_rank) {
        fprintf(stderr, "moe: %s at step %lld (the checkpoint of that step is saved)\n", how,
                (long long)last_saved);
    }
    /* no rank leaves (mpirun ends the others when one exits non-zero)
       before rank 0 has written the checkpoint */
    cli_watchdog_pause(wd, 1);
    if (o->dist && stop && rc == 0 && moe_dist_barrier(o->dist, &err) != MOE_OK) rc = 1;
    cli_watchdog_stop(wd);
    cli_signals_soft(0);
    if (stop && rc == 0) return 128 + stop;
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
    printf("parameters: %.2fM total, %.2fM active per token (%lld and %lld, as moe inspect counts them); "
           "%.1f MFLOP/token forward, %.1f training\n", k.params / 1e6, k.active_params / 1e6, (long long)k.params,
           (long long)k.active_params, k.fwd_flops / 1e6, k.train_flops / 1e6);
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

/* On resume: metrics.jsonl may hold steps after the checkpoint (a kill
 * between two checkpoints); those steps run again, so their lines go (and a
 * line cut short by an older writer). Rewritten through a temporary file
 * only when something is dropped. */
static void trim_metrics(const char *path, int64_t done) {
    if (access(path, F_OK) != 0) return;
    char *text = cli_read_file(path);
    if (!text) return;
    size_t n = strlen(text), keep = 0;
    char *outb = malloc(n + 1);
    int dropped = 0;
    for (char *p = text; outb && *p;) {
        char *e = strchr(p, '\n');
        long long st;
        if (!e || (sscanf(p, "{\"step\":%lld", &st) == 1 && st > done)) dropped = 1;
        else {
            memcpy(outb + keep, p, (size_t)(e - p) + 1);
            keep += (size_t)(e - p) + 1;
        }
        if (!e) break;
        p = e + 1;
    }
    if (outb && dropped) {
        char tmp[4200];
        snprintf(tmp, sizeof tmp, "%s.tmp", path);
        FILE *f = fopen(tmp, "wb");
        int ok = f && fwrite(outb, 1, keep, f) == keep;
        if (f && fclose(f) != 0) ok = 0;
        if (ok && rename(tmp, path) == 0)
            printf("metrics.jsonl: dropped the lines after step %lld (those steps run again)\n", (long long)done);
        else
            unlink(tmp);
    }
    free(outb);
    free(text);
}

/* On resume: removes the temporary files that a killed save left in dir
 * (".NAME.tmp.PID.N" of a process that no longer runs). */
static void clean_stale_tmp(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *t = strstr(e->d_name, ".tmp.");
        long pid = 0;
        if (e->d_name[0] != '.' || !t || sscanf(t, ".tmp.%ld.", &pid) != 1 || pid <= 0) continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue; /* its writer still runs */
        char p[4200];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (unlink(p) == 0) printf("removed %s (left by a save that was killed)\n", p);
    }
    closedir(d);
}

static void usage(FILE *f) {
    fprintf(f, "usage: moe train [--data PATH]... [--out DIR] [options]\n"
               "       moe train --resume DIR [--steps N] [options that may change]\n"
               "  --data PATH       a text file or folder (repeatable; default: the built-in corpus)\n"
               "  --out DIR         run directory (default moe-run): model.gguf, state.gguf, tokens.bin, metrics.jsonl\n"
               "  --resume DIR      continue the run in DIR from its last checkpoint, exactly\n"
               "  --quiet           no log lines (default off)\n"
               "  --report-every N  write DIR/report.html (moe report) every N steps and at the end\n"
               "data: folders are read recursively; .gz/.xz/.zst files decompressed; a file reached by\n"
               "  several names (links) is read once; --skip-bad skips unreadable or binary files\n"
               "checkpoints: every --save-every steps (default 100), at the end, and on Ctrl-C or SIGTERM\n"
               "  (the step in progress finishes, then the checkpoint is saved; exit status 130 / 143).\n"
               "  After kill -9 or a crash, --resume continues from the last checkpoint.\n"
               "resume: --steps N larger than the run's steps continues it; the learning rate keeps the\n"
               "  cosine of the run's first length and then holds at --min-lr (it never jumps back up).\n"
               "  N at or below the steps done: nothing is trained and nothing is rewritten.\n"
               "  On resume only --steps, --eval-every, --eval-batches, --save-every and threads may change.\n"
               "  --expert-parallel EP  one rank of an MPI job (mpirun -np P, P = EP x DP): experts sharded\n"
               "                    over EP ranks, batch split over all P (docs/SCALING.md)\n"
               "  --overlap         with --expert-parallel: start each block's gradient all-reduce during\n"
               "                    the backward (measured no faster on one machine: docs/SCALING.md)\n"
               "  --dist-timeout S  with --expert-parallel: a collective that waits more than S seconds (a rank\n"
               "                    or the connection is gone) ends the job, naming rank, step and collective\n"
               "                    (default 300; 0: off; paused while a checkpoint is written)\n"
               "  --until STEP      stop after this step and save (resume later with --resume)\n"
               "options (defaults are the demo's run; --seed -1 picks a random seed and prints it):\n");
    train_opts_usage(f);
}

int cmd_train(int argc, char **argv, int n_threads) {
    const char *resume = NULL, *out = "moe-run";
    const char **data = calloc((size_t)argc + 1, sizeof(char *));
    int n_data = 0, bad = 0, quiet = 0, report_every = -1;
    int64_t seed = 0;
    if (!data) return 1;
    int ep = 0; /* --expert-parallel: a distributed run (mpirun) */
    int until = 0; /* --until STEP: stop and save there */
    int overlap = 0; /* --overlap: gradient all-reduce during the backward */
    float dist_timeout = 300; /* --dist-timeout: the watchdog's seconds (0: off) */
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { usage(stdout); free(data); return 0; }
        if (cli_int_opt("--expert-parallel", argc, argv, &i, &ep, &bad)) {
            if (!bad && ep < 1) { fprintf(stderr, "moe: --expert-parallel must be >= 1\n"); bad = 1; }
            if (bad) { free(data); return 2; }
            continue;
        }
        if (cli_float_opt("--dist-timeout", argc, argv, &i, &dist_timeout, &bad)) {
            if (!bad && !(dist_timeout >= 0)) { fprintf(stderr, "moe: --dist-timeout must be >= 0 (0: off)\n"); bad = 1; }
            if (bad) { free(data); return 2; }
            continue;
        }
        if (cli_int_opt("--until", argc, argv, &i, &until, &bad)) {
            if (!bad && until < 1) { fprintf(stderr, "moe: --until must be >= 1\n"); bad = 1; }
            if (bad) { free(data); return 2; }
            continue;
        }
        if (!strcmp(argv[i], "--resume")) {
            if (i + 1 >= argc) { fprintf(stderr, "moe: --resume needs a value (the run's folder)\n"); free(data); return 2; }
            resume = argv[++i];
        }
    }
    moe_train_config c;
    moe_error err;
    if (resume) {
        if (moe_trainer_read_config(resume, &c, &err) != MOE_OK) {
            fprintf(stderr, "moe train: %s\n", cli_msg("train", err.msg));
            free(data);
            return 1;
        }
    } else {
        moe_train_config_default(&c);
    }
    for (int i = 0; i < argc && !bad; i++) {
        if (!strcmp(argv[i], "--resume") || !strcmp(argv[i], "--expert-parallel") ||
            !strcmp(argv[i], "--until") || !strcmp(argv[i], "--dist-timeout")) { i++; continue; }
        const char *v = NULL;
        if (cli_str_opt("--data", NULL, argc, argv, &i, &v, &bad)) { if (v) data[n_data++] = v; }
        else if (cli_str_opt("--out", NULL, argc, argv, &i, &out, &bad)) {}
        else if (!strcmp(argv[i], "--quiet")) quiet = 1;
        else if (!strcmp(argv[i], "--overlap")) overlap = 1;
        else if (cli_int_opt("--report-every", argc, argv, &i, &report_every, &bad)) {
            if (!bad && report_every < 0) { fprintf(stderr, "moe: --report-every must be >= 0\n"); bad = 1; }
        }
        else if (cli_seed_opt("--seed", argc, argv, &i, &seed, &bad)) { if (!bad) c.seed = cli_seed_resolve(seed); }
        else if (!train_opts_apply(&c, argc, argv, &i, &bad)) bad = cli_unknown("train", argv[i]);
    }
    if (bad) { free(data); return 2; }
    train_opts_warn(&c);
    c.model.n_threads = n_threads;
    c.model.max_batch = c.batch;
    moe_trainer *t = NULL;
    moe_status st;
    moe_dist *dist = NULL;
    int rank = 0;
    const int user_quiet = quiet;
    if (ep) {
        if (moe_dist_init(&dist, ep, &err) != MOE_OK) {
            fprintf(stderr, "moe: %s\n", err.msg);
            free(data);
            return 1;
        }
        rank = moe_dist_rank(dist);
        if (rank) quiet = 1;
        c.dist = dist; /* each rank allocates only its own experts */
        moe_dist_set_overlap(dist, overlap);
    }
    if (resume) {
        if (n_data && rank == 0) fprintf(stderr, "moe: --data is ignored on --resume (the run's token cache is used)\n");
        out = resume;
        st = moe_trainer_resume(&t, resume, &c, &err);
    } else {
        cli_progress pr;
        cli_progress_init(&pr, "train");
        if (!quiet) {
            c.progress = cli_progress_cb;
            c.progress_user = &pr;
        }
        /* distributed: rank 0 makes the run directory (tokenizer, token
           cache) first; the others then reuse its cache */
        st = MOE_OK;
        if (rank == 0) st = moe_trainer_create(&t, &c, n_data ? data : NULL, n_data, out, &err);
        if (dist) {
            if (st != MOE_OK) {
                fprintf(stderr, "moe: rank 0: %s\n", err.msg);
                moe_dist_abort(dist, 1);
            }
            moe_error be;
            if (moe_dist_barrier(dist, &be) != MOE_OK) { fprintf(stderr, "moe: %s\n", be.msg); moe_dist_abort(dist, 1); }
            if (rank) st = moe_trainer_create(&t, &c, n_data ? data : NULL, n_data, out, &err);
        }
        cli_progress_end(&pr);
    }
    free(data);
    if (st == MOE_OK && dist) st = moe_trainer_attach_dist(t, dist, &err);
    if (st != MOE_OK) {
        if (st == MOE_ERR_CANCELLED) return cli_signal_exit() ? cli_signal_exit() : 130;
        if (dist) fprintf(stderr, "moe train: rank %d: %s\n", rank, cli_msg("train", err.msg));
        else fprintf(stderr, "moe train: %s\n", cli_msg("train", err.msg));
        moe_trainer_free(t);
        moe_dist_free(dist);
        return 1;
    }
    if (dist && !quiet)
        printf("distributed: %d ranks, expert-parallel %d x data-parallel %d; %d sequences per rank\n",
               moe_dist_size(dist), ep, moe_dist_size(dist) / ep, moe_trainer_config(t)->batch / moe_dist_size(dist));
    if (rank == 0) train_print_data_notes(t);
    const int64_t done = moe_trainer_steps_done(t), sched = moe_trainer_schedule_steps(t);
    if (resume && done >= c.steps) {
        if (!quiet)
            printf("nothing left to train: %s is at step %lld and --steps is %lld (give a larger --steps to continue; "
                   "the checkpoint is unchanged)\n", resume, (long long)done, (long long)c.steps);
        moe_trainer_free(t);
        moe_dist_free(dist);
        return 0;
    }
    if (!quiet) {
        train_print_summary(t);
        if (resume) printf("resuming %s at step %lld of %lld\n", resume, (long long)done, (long long)c.steps);
    }
    if (resume && c.steps > sched && rank == 0) {
        if (done >= sched)
            printf("learning rate: the run's cosine schedule ended at step %lld; steps %lld-%lld hold %.3g "
                   "(--min-lr)\n", (long long)sched, (long long)done + 1, (long long)c.steps, c.min_lr);
        else
            printf("learning rate: the run's cosine schedule goes on to step %lld; steps %lld-%lld then hold %.3g "
                   "(--min-lr)\n", (long long)sched, (long long)sched + 1, (long long)c.steps, c.min_lr);
    }
    char metrics[4096];
    snprintf(metrics, sizeof metrics, "%s/metrics.jsonl", out);
    if (resume && rank == 0) {
        trim_metrics(metrics, done);
        clean_stale_tmp(out);
    }
    char report[4096];
    snprintf(report, sizeof report, "%s/report.html", out);
    if (dist) cli_signals_rank(rank);
    train_run_opts o = {.dist = dist, .dist_timeout = dist_timeout, .quiet = quiet, .metrics_path = rank ? NULL : metrics, .show_routing = 1,
                        .log_every = 0, .has_checkpoint = resume != NULL, .dir = out, .until = until, .run_dir = out,
                        .report_path = report_every >= 0 && !rank ? report : NULL, .report_every = report_every};
    int rc = train_run(t, &o);
    if (rc == 0 && !quiet) printf("saved %s/model.gguf and %s/state.gguf at step %lld\n", out, out,
                                  (long long)moe_trainer_steps_done(t));
    if (dist && !user_quiet) /* every rank: what went over the network */
        printf("communication: rank %d received %llu bytes by collectives, %.2f s in them\n", rank,
               (unsigned long long)moe_dist_bytes_moved(dist), moe_dist_comm_seconds(dist));
    /* a rank that failed alone would leave the others in a collective */
    if (rc && rc < 128 && dist) moe_dist_abort(dist, rc);
    if (dist) {
        /* what each rank holds (its experts' share of the stacked tensors) */
        moe_model *m = moe_trainer_model(t);
        double held = 0, all = 0;
        for (int i = 0; i < moe_model_n_tensors(m); i++) {
            moe_tensor tn;
            moe_model_tensor(m, i, &tn, NULL);
            held += (double)tn.held_n;
            all += (double)tn.n;
        }
        fprintf(stderr, "rank %d of %d: resident memory %.1f MB (anonymous %.1f MB, peak %.1f MB); holds %.2fM of "
                "the model's %.2fM parameters (with their gradients and moments)\n", rank, moe_dist_size(dist),
                cli_status_kb("VmRSS") / 1024.0, cli_status_kb("RssAnon") / 1024.0, cli_status_kb("VmHWM") / 1024.0,
                held / 1e6, all / 1e6);
    }
    if (rc >= 128 && dist) {
        /* stopped by mpirun's signal, after the checkpoint: mpirun is ending
           the job, and MPI_Finalize would wait for its daemons until the
           SIGKILL; leave now (every rank passed train_run's barrier) */
        moe_trainer_free(t);
        fflush(stdout);
        fflush(stderr);
        _exit(rc);
    }
    moe_trainer_free(t);
    moe_dist_free(dist);
    return rc;
}
