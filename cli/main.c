/* main.c: the `moe` command: picks the subcommand, the thread count
 * (--threads N or -t N, else the MOE_THREADS environment variable, else the
 * OpenMP default) and maps failures to exit codes (0 ok, 1 failure, 2 usage,
 * 128 + the signal when interrupted: 130 for Ctrl-C, 143 for SIGTERM). A
 * failed write to stdout (a full disk, > /dev/full) is a failure too. */
#include "cli.h"
#include "moe.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void usage(FILE *f) {
    fprintf(f,
        "moe %s: sparse Mixture-of-Experts models in C\n"
        "usage: moe [--threads N] COMMAND [options]\n"
        "commands:\n"
        "  demo                 train a small MoE language model on the built-in corpus and show it working\n"
        "  demo routing         route a batch through one MoE layer and show the expert loads\n"
        "  train [opts]         train a MoE (or dense) language model: moe train --help\n"
        "  sample MODEL [opts]  generate text with a model written by moe train: moe sample --help\n"
        "  bench layer [opts]   MoE layer forward / forward+backward GFLOP/s vs a dense GEMM\n"
        "                       (--router NAME --tokens T --d D --dff F --experts E --k K --capacity CF --gelu --iters N)\n"
        "  bench gemm  [opts]   dense fp32 GEMM GFLOP/s\n"
        "  bench train [--demo|--big] [--steps N]  training tokens/s and model GFLOP/s vs a dense GEMM\n"
        "  run MODEL.gguf -p TEXT [opts]  generate text with a GGUF model: moe run --help\n"
        "  serve MODEL.gguf [opts]  an OpenAI-compatible HTTP server: moe serve --help\n"
        "  chat MODEL.gguf [opts]         chat with a GGUF model, one message per line of stdin\n"
        "  inspect MODEL.gguf   GGUF metadata, tensors, and weights/bytes per token\n"
        "  synth OUT.gguf [opts]  write a random GGUF model of any architecture and type: moe synth --help\n"
        "  bench decode|prefill [--model M | --gen ARCH:TYPE]  inference tok/s vs bandwidth / GEMM\n"
        "  bench bandwidth      this machine's memory read bandwidth\n"
        "  eval MODEL.gguf TEXT... [opts]  perplexity and bits per byte on text files or folders: moe eval --help\n"
        "  tokenize MODEL.gguf TEXT       the token ids and pieces of TEXT\n"
        "  quantize IN.gguf OUT.gguf --type T  re-write a GGUF model's matrices as type T: moe quantize --help\n"
        "  report RUN_DIR... [-o report.html]  one HTML page: curves, expert loads, routing per source\n"
        "  route MODEL -p TEXT | -f FILE [--html F | --json]  which experts each token goes to\n"
        "  convert DIR OUT.gguf [--type T]  a Hugging Face folder to GGUF, quantized: moe convert --help\n"
        "  version              print the version\n"
        "threads: --threads N (or -t N), or MOE_THREADS=N, else all cores\n"
        "exit status: 0 done, 1 failed, 2 bad usage, 130 interrupted (Ctrl-C), 143 terminated (SIGTERM)\n",
        moe_version());
}

long cli_status_kb(const char *field) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    const size_t n = strlen(field);
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, field, n) && line[n] == ':') kb = strtol(line + n + 1, NULL, 10);
    if (f) fclose(f);
    return kb;
}

double cli_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int cli_int_opt(const char *name, int argc, char **argv, int *i, int *out, int *bad) {
    if (strcmp(argv[*i], name)) return 0;
    char *end = NULL;
    if (*i + 1 >= argc) { fprintf(stderr, "moe: %s needs a value\n", name); *bad = 1; return 1; }
    long v = strtol(argv[*i + 1], &end, 10);
    if (!*argv[*i + 1] || *end || v < -2147483647L || v > 2147483647L) {
        fprintf(stderr, "moe: %s: '%s' is not an integer\n", name, argv[*i + 1]);
        *bad = 1;
    } else *out = (int)v;
    (*i)++;
    return 1;
}

int cli_float_opt(const char *name, int argc, char **argv, int *i, float *out, int *bad) {
    if (strcmp(argv[*i], name)) return 0;
    char *end = NULL;
    if (*i + 1 >= argc) { fprintf(stderr, "moe: %s needs a value\n", name); *bad = 1; return 1; }
    double v = strtod(argv[*i + 1], &end);
    if (!*argv[*i + 1] || *end) {
        fprintf(stderr, "moe: %s: '%s' is not a number\n", name, argv[*i + 1]);
        *bad = 1;
    } else *out = (float)v;
    (*i)++;
    return 1;
}

int main(int argc, char **argv) {
    int n_threads = 0, bad = 0;
    const char *env = getenv("MOE_THREADS");
    if (env && *env) {
        char *end;
        long v = strtol(env, &end, 10);
        if (*end || v < 1 || v > 4096) { fprintf(stderr, "moe: MOE_THREADS='%s' is not a thread count\n", env); return 2; }
        n_threads = (int)v;
    }
    /* global options, then the command and its arguments (with --threads
       also accepted after the command) */
    int argc2 = 0;
    char **argv2 = calloc((size_t)argc + 1, sizeof(char *));
    if (!argv2) return 1;
    for (int i = 1; i < argc; i++) {
        if (cli_int_opt("--threads", argc, argv, &i, &n_threads, &bad) ||
            cli_int_opt("-t", argc, argv, &i, &n_threads, &bad)) {
            if (!bad && n_threads < 1) { fprintf(stderr, "moe: --threads must be >= 1\n"); bad = 1; }
            if (bad) break;
            continue;
        }
        argv2[argc2++] = argv[i];
    }
    int rc;
    /* the commands that stop cleanly on Ctrl-C / SIGTERM (the others,
       benchmarks and listings, end at once as without a handler) */
    static const char *const stoppable[] = {"demo", "train", "sample", "run", "chat", "synth", "eval",
                                            "quantize", "convert", NULL};
    for (int k = 0; argc2 > 0 && stoppable[k]; k++)
        if (!strcmp(argv2[0], stoppable[k])) cli_signals_install();
    if (bad) rc = 2;
    else if (argc2 == 0 || !strcmp(argv2[0], "help") || !strcmp(argv2[0], "--help") || !strcmp(argv2[0], "-h")) {
        usage(argc2 == 0 ? stderr : stdout);
        rc = argc2 == 0 ? 2 : 0;
    } else if (!strcmp(argv2[0], "version") || !strcmp(argv2[0], "--version")) {
        printf("moe %s (gemm kernel: %s)\n", moe_version(), moe_sgemm_kernel_name());
        rc = 0;
    } else if (!strcmp(argv2[0], "demo")) rc = cmd_demo(argc2 - 1, argv2 + 1, n_threads);
    else if (!strcmp(argv2[0], "bench")) rc = cmd_bench(argc2 - 1, argv2 + 1, n_threads);
    else if (!strcmp(argv2[0], "train")) rc = cmd_train(argc2 - 1, argv2 + 1, n_threads);
    else if (!strcmp(argv2[0], "sample")) rc = cmd_sample(argc2 - 1, argv2 + 1, n_threads);
    else if (!strcmp(argv2[0], "run")) rc = cmd_run(argc2 - 1, argv2 + 1, n_threads);
    else if (!strcmp(argv2[0], "chat")) rc = cmd_chat(argc2 - 1, argv2 + 1, n_threads);
    else if (!strcmp(argv2[0], "inspect")) rc = cmd_inspect(argc2 - 1, argv2 + 1, n_threads);
    else if (!strcmp(argv2[0], "synth")) rc = cmd_synth(argc2 - 1, argv2 + 1, n_threads);
    else if (!strcmp(argv2[0], "eval")) rc = cmd_eval(argc2 - 1, argv2 + 1, n_threads);
    else if (!strcmp(argv2[0], "quantize")) rc = cmd_quantize(argc2 - 1, argv2 + 1, n_threads);
    else if (!strcmp(argv2[0], "report")) rc = cmd_report(argc2 - 1, argv2 + 1, n_threads);
    else if (!strcmp(argv2[0], "route")) rc = cmd_route(argc2 - 1, argv2 + 1, n_threads);
    else if (!strcmp(argv2[0], "tokenize")) rc = cmd_tokenize(argc2 - 1, argv2 + 1, n_threads);
    else if (!strcmp(argv2[0], "serve")) rc = cmd_serve(argc2 - 1, argv2 + 1, n_threads);
    else if (!strcmp(argv2[0], "convert")) rc = cmd_convert(argc2 - 1, argv2 + 1, n_threads);
    else {
        fprintf(stderr, "moe: unknown command '%s' (moe --help lists them)\n", argv2[0]);
        rc = 2;
    }
    free(argv2);
    if (cli_signal() && rc != cli_signal_exit()) { /* a command that did not say so itself */
        rc = cli_signal_exit();
        fprintf(stderr, "moe: %s\n", cli_signal() == 2 ? "interrupted" : "terminated");
    }
    /* output that could not be written is a failure, not a success */
    errno = 0;
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "moe: could not write the output%s%s\n", errno ? ": " : "", errno ? strerror(errno) : "");
        if (rc == 0) rc = 1;
    }
    return rc;
}
