/* cli.h: shared pieces of the `moe` command (subcommand entry points and the
 * option helpers). The command uses only the public API in include/moe.h. */
#ifndef MOE_CLI_H
#define MOE_CLI_H

/* Each subcommand gets argv after its own name; returns the exit code. */
int cmd_demo(int argc, char **argv, int n_threads);
int cmd_bench(int argc, char **argv, int n_threads);

/* Parses "--name value" style integer/float options; 1 if matched. On a bad
 * value it prints the problem and sets *bad. */
int cli_int_opt(const char *name, int argc, char **argv, int *i, int *out, int *bad);
int cli_float_opt(const char *name, int argc, char **argv, int *i, float *out, int *bad);

/* Seconds from a monotonic clock. */
double cli_now(void);

#endif
