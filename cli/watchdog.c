/* watchdog.c: `moe train --dist-timeout SECONDS` (cli.h, "watchdog.c").
 * A link that goes down silently (no reset reaches either end) leaves every
 * rank waiting in a collective forever: MPI's TCP transport has no timeout
 * of its own and mpirun sees nothing wrong. This thread asks the library
 * every 0.5 s how long the collective in progress has waited
 * (moe_dist_stalled); past the timeout it writes one line naming the rank,
 * the step and the collective, and ends the process with _exit(1). mpirun
 * sees a rank exit non-zero and ends the others (each of which, being stuck
 * too, also ends itself by its own watchdog). It never touches the
 * checkpoint: the files on disk are the last complete save (atomic writes).
 * Paused around a checkpoint, where the other ranks wait for rank 0's write
 * (a legitimate wait as long as the disk takes); after a pause the wait is
 * counted from the resume at the earliest.
 * Not for: the library (which never ends the process). */
#include "cli.h"
#include "moe.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

struct cli_watchdog {
    moe_dist *d;
    double timeout;          /* seconds */
    atomic_int paused;       /* 1: never fire */
    _Atomic double resumed;  /* monotonic seconds of the last resume (0: never paused) */
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;       /* signalled by stop */
    int stop;                /* under mu */
};

static double mono(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void fire(cli_watchdog *w, double waited, const char *what) {
    int64_t step = 0;
    const char *where = cli_signals_where_now(&step);
    char b[400];
    int n = snprintf(b, sizeof b, "moe: rank %d: no progress for %.0f s in %s (%s %lld): a rank or the "
                     "connection is gone; ending the job\n", moe_dist_rank(w->d), waited,
                     what ? what : "a collective", where, (long long)step);
    if (n > (int)sizeof b - 1) n = (int)sizeof b - 1;
    ssize_t r = write(2, b, (size_t)n);
    (void)r;
    fflush(stdout);
    _exit(1);
}

static void *run(void *arg) {
    cli_watchdog *w = arg;
    pthread_mutex_lock(&w->mu);
    while (!w->stop) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += 500000000L;
        if (until.tv_nsec >= 1000000000L) { until.tv_sec++; until.tv_nsec -= 1000000000L; }
        pthread_cond_timedwait(&w->cv, &w->mu, &until);
        if (w->stop) break;
        if (atomic_load(&w->paused)) continue;
        const char *what = NULL;
        double waited = moe_dist_stalled(w->d, &what);
        double since_resume = mono() - atomic_load(&w->resumed);
        if (waited > since_resume) waited = since_resume;
        if (waited > w->timeout && !atomic_load(&w->paused)) fire(w, waited, what);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

cli_watchdog *cli_watchdog_start(moe_dist *d, double timeout) {
    if (!d || !(timeout > 0)) return NULL;
    cli_watchdog *w = calloc(1, sizeof *w);
    if (!w) return NULL;
    w->d = d;
    w->timeout = timeout;
    atomic_store(&w->resumed, 0.0);
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    if (pthread_create(&w->th, NULL, run, w) != 0) {
        fprintf(stderr, "moe: rank %d: the --dist-timeout watchdog could not start; running without it\n",
                moe_dist_rank(d));
        pthread_cond_destroy(&w->cv);
        pthread_mutex_destroy(&w->mu);
        free(w);
        return NULL;
    }
    return w;
}

void cli_watchdog_pause(cli_watchdog *w, int on) {
    if (!w) return;
    if (!on) atomic_store(&w->resumed, mono());
    atomic_store(&w->paused, on ? 1 : 0);
}

void cli_watchdog_stop(cli_watchdog *w) {
    if (!w) return;
    pthread_mutex_lock(&w->mu);
    w->stop = 1;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->th, NULL);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    free(w);
}
