/* cli.h: shared pieces of the `moe` command (subcommand entry points and the
 * option helpers). The command uses only the public API in include/moe.h. */
#ifndef MOE_CLI_H
#define MOE_CLI_H

#include <stdint.h>
#include <stdio.h>

#include "moe.h"

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
/* serve.c: `moe serve MODEL.gguf`, the OpenAI-compatible HTTP server. */
int cmd_serve(int argc, char **argv, int n_threads);

/* train.c: the training loop shared by `moe train` and the demo. */
typedef struct train_run_opts {
    int quiet;                /* no log lines */
    const char *metrics_path; /* JSON lines appended here (NULL: none) */
    int show_routing;         /* print per-layer loads at each evaluation */
    int64_t log_every;        /* steps between log lines (0: 10) */
} train_run_opts;
int train_run(moe_trainer *t, const train_run_opts *o);
void train_print_summary(moe_trainer *t);
void train_print_data_notes(moe_trainer *t);
void train_print_routing(FILE *f, moe_model *m);

/* train_opts.c: options that set moe_train_config fields; 1 if argv[*i]
 * was one (then *i is advanced past its value). */
int train_opts_apply(moe_train_config *c, int argc, char **argv, int *i, int *bad);
void train_opts_usage(FILE *f);
void train_opts_warn(const moe_train_config *c);

/* sample.c: generates n tokens after prompt with the training model; streams
 * the text to out. Returns 0 or prints the error and returns 1. */
typedef struct sample_opts {
    float temperature, top_p, min_p;
    int top_k;
    uint64_t seed;
} sample_opts;
int sample_generate(moe_model *m, const moe_tokenizer *tok, const char *prompt, int n,
                    const sample_opts *o, FILE *out);

/* Parses "--name value" style integer/float options; 1 if matched. On a bad
 * value it prints the problem and sets *bad. */
int cli_int_opt(const char *name, int argc, char **argv, int *i, int *out, int *bad);
int cli_float_opt(const char *name, int argc, char **argv, int *i, float *out, int *bad);

/* bench: best time in seconds of a dense C = A B^T GEMM [M,K]x[N,K];
 * the training benchmark. */
double bench_time_gemm(int nt, int M, int N, int K, int iters);
int bench_train(int argc, char **argv, int n_threads);
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

/* Seconds from a monotonic clock. */
double cli_now(void);

#endif
