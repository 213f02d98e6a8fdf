/* signals.c: what Ctrl-C (SIGINT) and SIGTERM do to the `moe` command.
 * The handler only records the signal and, where the command cannot stop by
 * itself, asks the library to cancel (moe_cancel: long calls return
 * MOE_ERR_CANCELLED and remove their temporary files). The training loop
 * stops by itself between steps and saves (cli_signals_soft): there the
 * first signal only sets the flag, a second one cancels (the save too: the
 * previous checkpoint stays), a third ends the process. Elsewhere the
 * second signal ends the process at once. main exits 128 + the signal
 * (130 for SIGINT, 143 for SIGTERM).
 * Not for: the library (it installs no handler). */
#include "cli.h"
#include "moe.h"

#include <signal.h>
#include <string.h>

static volatile sig_atomic_t g_sig;   /* the first signal received */
static volatile sig_atomic_t g_count; /* signals received */
static volatile sig_atomic_t g_soft;  /* 1: the command stops by itself */

static void on_signal(int sig) {
    if (!g_sig) g_sig = sig;
    g_count++;
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
