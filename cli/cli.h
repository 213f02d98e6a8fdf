/* cli.h: shared pieces of the `moe` command (subcommand entry points and the
 * option helpers). The command uses only the public API in include/moe.h. */
#ifndef MOE_CLI_H
#define MOE_CLI_H

#include <stdint.h>
#include <stdio.h>

#include "moe.h"
#include "moe_infer.h"

/* Each subcommand gets argv after its own name; returns the exit code. */
int cmd_demo(int argc, char **argv, int n_threads);
int cmd_demo_routing(int argc, char **argv, int n_threads);
int cmd_bench(int argc, char **argv, int n_threads);
int cmd_train(int argc, char **argv, int n_threads);
int cmd_sample(int argc, char **argv, int n_threads);
/* run.c, inspect.c: GGUF models through the inference engine (moe_infer.h). */
int cmd_run(int argc, char **argv, int n_threads);
int cmd_chat(int argc, char **argv, int n_threads);
int cmd_inspect(int argc, char **argv, int n_threads);
int cmd_synth(int argc, char **argv, int n_threads);
/* convert.c: `moe convert DIR OUT.gguf`, a Hugging Face folder to GGUF. */
int cmd_convert(int argc, char **argv, int n_threads);
/* eval.c: `moe eval MODEL TEXT...` (perplexity) and `moe tokenize MODEL TEXT`. */
int cmd_eval(int argc, char **argv, int n_threads);
int cmd_tokenize(int argc, char **argv, int n_threads);
/* quantize.c: `moe quantize IN.gguf OUT.gguf --type T`. */
int cmd_quantize(int argc, char **argv, int n_threads);
/* report.c: `moe report RUN_DIR...`; route.c: `moe route MODEL`. */
int cmd_report(int argc, char **argv, int n_threads);
int cmd_route(int argc, char **argv, int n_threads);
/* serve.c: `moe serve MODEL.gguf`, the OpenAI-compatible HTTP server. */
int cmd_serve(int argc, char **argv, int n_threads);

/* train.c: the training loop shared by `moe train` and the demo. */
typedef struct train_run_opts {
    int quiet;                /* no log lines */
    const char *metrics_path; /* JSON lines appended here (NULL: none) */
    int show_routing;         /* print per-layer loads at each evaluation */
    int64_t log_every;        /* steps between log lines (0: 10) */
    int64_t until;            /* stop (and save) after this step (0: at the end) */
    int has_checkpoint;       /* the run's folder holds the checkpoint of the
                                 current step (a resume) */
    const char *dir;          /* the run's folder, for messages */
    const char *run_dir;      /* the run's folder (for the report) */
    const char *report_path;  /* HTML report written here (NULL: none) */
    int64_t report_every;     /* steps between report refreshes (0: at the end only) */
    moe_dist *dist;           /* one rank of this MPI job, or NULL: a signal to
                                 any rank stops every rank after the same step */
    double dist_timeout;      /* with dist: seconds a collective may wait before
                                 the watchdog ends the job (0: no watchdog) */
} train_run_opts;
/* Returns 0, 1 (failed), or 128 + the signal when interrupted (after
 * saving a checkpoint). */
int train_run(moe_trainer *t, const train_run_opts *o);
void train_print_summary(moe_trainer *t);
void train_print_data_notes(moe_trainer *t);
void train_print_routing(FILE *f, moe_model *m);
/* train_metrics.c: metrics.jsonl's header and held-out routing records. */
void train_metrics_header(FILE *f, moe_trainer *t, const char *label);
void train_metrics_eval(FILE *f, moe_trainer *t, int64_t step, double wall);
void cli_json_str(FILE *f, const char *s);

/* train_opts.c: options that set moe_train_config fields; 1 if argv[*i]
 * was one (then *i is advanced past its value). */
int train_opts_apply(moe_train_config *c, int argc, char **argv, int *i, int *bad);
void train_opts_usage(FILE *f);
void train_opts_warn(const moe_train_config *c);

/* sample.c: generates n tokens after prompt with the training model; streams
 * the text to out. Returns 0 or prints the error and returns 1. The options
 * are moe run's (defaults: moe_sampler_config_default, no echo). */
typedef struct sample_opts {
    moe_sampler_config sc;
    int echo;                 /* print the prompt first */
    const char *const *stop;  /* [n_stop] stop strings (not printed) */
    int n_stop;
    int experts_per_token;    /* 0: the model's k */
    int ctx;                  /* tokens of context per step (0: ctx_len) */
} sample_opts;
void sample_opts_default(sample_opts *o);
int sample_generate(moe_model *m, const moe_tokenizer *tok, const char *prompt, int n,
                    const sample_opts *o, FILE *out);
/* opts.c: the sampling options shared by run, chat and sample (--temp,
 * --top-k, --top-p, --min-p, --repeat-penalty, --repeat-last-n, --seed / -s
 * with -1 for random into *seed); 1 if argv[*i] was one. */
int cli_sampler_opt(moe_sampler_config *sc, int64_t *seed, int argc, char **argv, int *i, int *bad);

/* Parses "--name value" style integer/float options; 1 if matched. On a bad
 * value it prints the problem and sets *bad. */
int cli_int_opt(const char *name, int argc, char **argv, int *i, int *out, int *bad);
int cli_float_opt(const char *name, int argc, char **argv, int *i, float *out, int *bad);

/* bench: best time in seconds of a dense C = A B^T GEMM [M,K]x[N,K];
 * the training benchmark. */
double bench_time_gemm(int nt, int M, int N, int K, int iters);
int bench_train(int argc, char **argv, int n_threads);
/* bench_dist.c: `moe bench dist` (one rank of mpirun -np P). */
int bench_dist(int argc, char **argv, int n_threads);
/* bench_infer.c: inference decode / prefill speed and memory bandwidth. */
int bench_decode(int argc, char **argv, int n_threads);
int bench_prefill(int argc, char **argv, int n_threads);
int bench_bandwidth(int argc, char **argv, int n_threads);
/* The model file of a benchmark: model, or the ~1e9-weight model of gen
 * ("ARCH:TYPE") written once into build/bench-models/. 0 on failure (printed). */
int bench_model_path(const char *model, const char *gen, char *out, size_t cap);
/* bench_serve.c: aggregate decode speed of many sequences in one batch. */
int bench_serve(int argc, char **argv, int n_threads);
/* bench_contention.c: decode and training next to busy processes. */
int bench_contention(int argc, char **argv, int n_threads);

/* signals.c: SIGINT / SIGTERM. install: at start, for the commands that
 * stop cleanly; soft(1): the command checks cli_signal() itself between
 * steps (the first signal does not cancel library calls); cli_signal():
 * the signal received (0: none); cli_signal_exit(): 128 + it (0: none). */
void cli_signals_install(void);
void cli_signals_soft(int on);
int cli_signal(void);
int cli_signal_exit(void);
/* One rank of an MPI job: a signal prints at once which rank got it, in
 * what ("step", "validation after step", ...) and which step (set by
 * cli_signals_where; what must be a string literal). */
void cli_signals_rank(int rank);
void cli_signals_where(const char *what, int64_t step);
/* What cli_signals_where last recorded (any thread may ask). */
const char *cli_signals_where_now(int64_t *step);

/* watchdog.c: a distributed run's watchdog. A thread polls the collective
 * in progress (moe_dist_stalled) every 0.5 s; one that has waited more
 * than timeout seconds (a rank or the connection is gone without a reset)
 * gets one line on stderr naming the rank, the step (cli_signals_where)
 * and the collective, then _exit(1): mpirun ends the other ranks. While
 * paused (a checkpoint, whose ranks legitimately wait for rank 0's write)
 * it fires never. start: NULL when timeout <= 0 or d is NULL (no thread);
 * the others accept NULL. */
typedef struct cli_watchdog cli_watchdog;
cli_watchdog *cli_watchdog_start(moe_dist *d, double timeout);
void cli_watchdog_pause(cli_watchdog *w, int on);
void cli_watchdog_stop(cli_watchdog *w);

/* opts.c: option helpers shared by the commands. Each matches argv[*i]
 * against name (and alt, may be NULL); 1 if matched, then *i is past the
 * value. A missing or bad value prints one line naming the option and sets
 * *bad. cli_seed_opt takes -1 for a random seed (the seed is then printed to
 * stderr by cli_seed_resolve). */
int cli_str_opt(const char *name, const char *alt, int argc, char **argv, int *i, const char **out, int *bad);
int cli_seed_opt(const char *name, int argc, char **argv, int *i, int64_t *out, int *bad);
uint64_t cli_seed_resolve(int64_t seed);
/* Reads a whole file (-f FILE) into a malloc'd NUL-terminated string;
 * NULL with the problem printed. */
char *cli_read_file(const char *path);
/* The one-line errors: "moe CMD: unknown option 'X' (moe CMD --help lists
 * them)" and "moe CMD: WHAT (moe CMD --help)"; both return 2. */
int cli_unknown(const char *cmd, const char *opt);
/* A library message without a leading C function name ("bpe_train: ") or
 * the command's own name ("quantize: "): what the user reads. */
const char *cli_msg(const char *cmd, const char *msg);
int cli_usage_error(const char *cmd, const char *what);

/* progress.c: a progress line on stderr (a terminal only) for a library
 * call's moe_progress_fn: pass cli_progress_cb with &p as its user. */
typedef struct cli_progress {
    const char *cmd;      /* "convert", "train" ... */
    const char *what;     /* the phase shown last */
    double t0, last;      /* start, last redraw */
    int on, shown;        /* stderr is a terminal; a line is on screen */
} cli_progress;
void cli_progress_init(cli_progress *p, const char *cmd);
void cli_progress_cb(void *user, const char *what, int64_t done, int64_t total);
void cli_progress_end(cli_progress *p);

/* Seconds from a monotonic clock. */
double cli_now(void);
/* A field of /proc/self/status in kB ("VmRSS", "RssAnon", "VmHWM"); -1 if unknown. */
long cli_status_kb(const char *field);

#endif
