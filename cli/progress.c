/* progress.c: one progress line on stderr for long library calls
 * (moe_progress_fn): convert, synth, tokenizer training and tokenizing in
 * train / demo. Only when stderr is a terminal (cli_progress_init says);
 * redrawn at most 5 times a second, erased at the end. Quantize keeps its own
 * line (cli/quantize.c). */
#include "cli.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

void cli_progress_init(cli_progress *p, const char *cmd) {
    memset(p, 0, sizeof *p);
    p->cmd = cmd;
    p->t0 = cli_now();
    p->on = isatty(2);
}

void cli_progress_cb(void *user, const char *what, int64_t done, int64_t total) {
    cli_progress *p = user;
    if (!p || !p->on) return;
    const double now = cli_now();
    if (done < total && now - p->last < 0.2 && what == p->what) return;
    p->last = now;
    p->what = what;
    p->shown = 1;
    fprintf(stderr, "\r\033[Kmoe %s: %s %3.0f%% (%lld / %lld)  %.0f s", p->cmd, what,
            total > 0 ? 100.0 * (double)done / (double)total : 100.0, (long long)done, (long long)total,
            now - p->t0);
    fflush(stderr);
}

void cli_progress_end(cli_progress *p) {
    if (p->shown) fprintf(stderr, "\r\033[K");
    p->shown = 0;
}
