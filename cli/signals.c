/* signals.c: what Ctrl-C (SIGINT) and SIGTERM do to the `moe` command.
 * The handler only records the signal and, where the command cannot stop by
 * itself, asks the library to cancel (moe_cancel: long calls return
 * MOE_ERR_CANCELLED and remove their temporary files). The training loop
 * stops by itself between steps and saves (cli_signals_soft): there the
 * first signal only sets the flag, a second one cancels (the save too: the
 * previous checkpoint stays), a third ends the process. Elsewhere the
 * second signal ends the process at once. main exits 128 + the signal
 * (130 for SIGINT, 143 for SIGTERM).
 * One rank of an MPI job (cli_signals_rank) also says at once, from the
 * handler, which rank got which signal in which step: mpirun sends SIGTERM
 * to every rank when one dies or is interrupted, and a rank that waits in a
 * collective for a dead one is killed a second later, so this line is what
 * names the step of the failure.
 * Not for: the library (it installs no handler). */
#include "cli.h"
#include "moe.h"

#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t g_sig;   /* the first signal received */
static volatile sig_atomic_t g_count; /* signals received */
static volatile sig_atomic_t g_soft;  /* 1: the command stops by itself */
static volatile sig_atomic_t g_rank = -1; /* this process's rank in an MPI job, or -1 */
/* what it does now ("step", ...) and of which step: atomics (lock-free,
   so async-signal-safe) since the watchdog thread reads them too */
static _Atomic(const char *) g_what = "start-up, before step";
static _Atomic long long g_step;

/* Appends s to b[*n] (async-signal-safe). */
static void put_s(char *b, size_t cap, size_t *n, const char *s) {
    while (*s && *n + 1 < cap) b[(*n)++] = *s++;
}
static void put_i(char *b, size_t cap, size_t *n, long long v) {
    char t[24];
    int k = 0;
    if (v < 0) { put_s(b, cap, n, "-"); v = -v; }
    do { t[k++] = (char)('0' + v % 10); v /= 10; } while (v && k < 23);
    while (k && *n + 1 < cap) b[(*n)++] = t[--k];
}

/* "moe: rank 1: SIGTERM in step 12 ..." on stderr, from the handler. */
static void say_rank(int sig) {
    char b[320];
    size_t n = 0;
    put_s(b, sizeof b, &n, "moe: rank ");
    put_i(b, sizeof b, &n, g_rank);
    put_s(b, sizeof b, &n, sig == SIGINT ? ": SIGINT " : sig == SIGTERM ? ": SIGTERM " : ": a signal ");
    if (g_what[0] != 'a') put_s(b, sizeof b, &n, "in ");
    put_s(b, sizeof b, &n, g_what);
    put_s(b, sizeof b, &n, " ");
    put_i(b, sizeof b, &n, g_step);
    put_s(b, sizeof b, &n, g_count > 1 ? " (again: stopping without saving)\n"
                                       : " (mpirun ends the job: a rank ended or it was interrupted); "
                                         "the ranks stop together after a step\n");
    ssize_t w = write(2, b, n);
    (void)w;
}

static void on_signal(int sig) {
    if (!g_sig) g_sig = sig;
    g_count++;
    if (g_rank >= 0) say_rank(sig);
    if (g_count > 1 + g_soft) { /* asked too often: end now */
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    if (!g_soft || g_count > 1) moe_cancel();
}

void cli_signals_install(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; /* no SA_RESTART: a blocking read (chat's stdin) returns */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

void cli_signals_soft(int on) {
    g_soft = on;
    if (!on && g_sig) moe_cancel(); /* what runs next must stop too */
}

int cli_signal(void) { return g_sig; }

int cli_signal_exit(void) { return g_sig ? 128 + g_sig : 0; }

void cli_signals_rank(int rank) { g_rank = rank; }

void cli_signals_where(const char *what, int64_t step) {
    g_what = what;
    g_step = (long long)step;
}

const char *cli_signals_where_now(int64_t *step) {
    if (step) *step = (int64_t)g_step;
    return g_what;
}
