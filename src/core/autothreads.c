/* autothreads.c: the measured choice of the default thread count (see
 * autothreads.h for why and when). */
#include "core/autothreads.h"

#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static double mono_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Processes and threads running or waiting for a core now, ours included
 * (Linux: /proc/stat's procs_running); -1 when unknown. */
static int procs_running(void) {
    FILE *f = fopen("/proc/stat", "r");
    if (!f) return -1;
    char line[256];
    int n = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "procs_running %d", &n) == 1) break;
    fclose(f);
    return n;
}

/* This process's threads running or waiting for a core now (its idle
 * OpenMP threads may still be spinning): /proc/self/task/N/stat in state
 * R; 1 when unknown. */
static int own_running(void) {
    DIR *d = opendir("/proc/self/task");
    if (!d) return 1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[300], buf[512];
        snprintf(path, sizeof path, "/proc/self/task/%s/stat", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        size_t len = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[len] = '\0';
        const char *p = strrchr(buf, ')'); /* the name may hold spaces */
        if (p && p[1] == ' ' && p[2] == 'R') n++;
    }
    closedir(d);
    return n > 0 ? n : 1;
}

void autothreads_init(autothreads *a, int max, int probe_len) {
    autothreads_init_at(a, max, probe_len, max);
    a->guess_pending = 1; /* looked at when the first unit needs it, not at creation */
}

/* The first guess: the cores nothing else is running on now (the probes
 * correct it); our own threads do not count, and the fewest of 5 looks 2 ms
 * apart counts (a process that runs for a moment is not a competitor). */
static void first_guess(autothreads *a) {
    a->guess_pending = 0;
    int others = 1 << 20;
    for (int i = 0; i < 5 && others > 0; i++) {
        if (i) nanosleep(&(struct timespec){0, 2000000}, NULL);
        const int running = procs_running(), own = own_running();
        if (running < 0) { others = 0; break; }
        const int o = running > own ? running - own : 0;
        if (o < others) others = o;
    }
    const int start = a->max - others;
    a->cur = a->unit_threads = start < 1 ? 1 : start;
}

int autothreads_current(autothreads *a) {
    if (a->guess_pending) first_guess(a);
    return a->cur;
}

void autothreads_init_at(autothreads *a, int max, int probe_len, int start) {
    *a = (autothreads){0};
    a->max = max < 1 ? 1 : max;
    a->cur = start < 1 ? 1 : start > a->max ? a->max : start;
    a->probe_len = probe_len < 1 ? 1 : probe_len;
    a->down = 1;
    a->period = AT_PERIOD_MIN;
    a->next_probe = -1; /* set by the first unit */
    a->unit_threads = a->cur;
}

/* The count a probe from cur tries: fewer threads and more in turn, within
 * 1 .. max. */
static int probe_count(autothreads *a) {
    int down = a->cur >= a->max ? 1 : a->cur <= 1 ? 0 : a->down;
    a->down = !down;
    int n = down ? a->cur / 2 : a->cur * 2;
    return n < 1 ? 1 : n > a->max ? a->max : n;
}

int autothreads_begin_at(autothreads *a, double now) {
    if (a->max <= 1) return a->unit_threads = 1;
    if (a->next_probe < 0) {
        a->next_probe = now + a->period;
        a->since = now;
    }
    /* a probe costs about probe_len + 1 units: not before AT_COST of those
     * have passed since the last one (or the start) */
    if (!a->probe_at && now >= a->next_probe && now >= a->not_before && a->base_n >= a->probe_len &&
        a->base_sum >= AT_PROBE_MIN &&
        now - a->since >= AT_COST * (a->probe_len + 1) * (a->base_sum / (double)a->base_n)) {
        const int n = probe_count(a);
        if (n != a->cur) {
            a->probe_at = n;
            a->probe_units = 0;
            a->probe_sum = 0;
            a->probe_t0 = now;
        }
    }
    a->unit_threads = a->probe_at ? a->probe_at : a->cur;
    a->unit_t0 = now;
    return a->unit_threads;
}

int autothreads_begin(autothreads *a) {
    if (a->guess_pending) first_guess(a);
    return autothreads_begin_at(a, mono_now());
}

/* The probe ends: switch if its units were clearly faster. */
static void end_probe(autothreads *a, double now) {
    const double probe = a->probe_sum / (a->probe_units - 1), base = a->base_sum / (double)a->base_n;
    if (probe < AT_GAIN * base) {
        a->cur = a->probe_at;
        a->switches++;
        a->period = AT_PERIOD_MIN;
    } else {
        a->period = a->period * 2 < AT_PERIOD_MAX ? a->period * 2 : AT_PERIOD_MAX;
    }
    a->not_before = now + AT_COST * (now - a->probe_t0); /* a change seen later does not lift this */
    a->next_probe = now + a->period;
    a->probe_at = 0;
    a->since = now;
    a->base_sum = 0;
    a->base_n = 0;
}

void autothreads_end_time(autothreads *a, double now, double seconds) {
    if (a->max <= 1) return;
    if (a->probe_at && a->unit_threads == a->probe_at) {
        if (seconds > AT_ABORT * a->base_sum / (double)a->base_n) {
            /* a unit this slow loses whatever follows: stop the probe */
            a->probe_units = 2;
            a->probe_sum = seconds;
            end_probe(a, now);
            return;
        }
        if (a->probe_units++ > 0) a->probe_sum += seconds; /* the first is not counted */
        if (a->probe_units > a->probe_len && a->probe_sum >= AT_PROBE_MIN) end_probe(a, now);
        return;
    }
    if (a->base_n >= a->probe_len) {
        /* units twice as slow, or as fast, as the mean so far, twice in a
         * row: the machine changed; probe as soon as the units from here on
         * make a base (one odd unit is a hiccup, not a change) */
        const double mean = a->base_sum / (double)a->base_n;
        if (seconds > AT_CHANGE * mean || seconds * AT_CHANGE < mean) {
            if (++a->odd >= 2) {
                a->odd = 0;
                a->period = AT_PERIOD_MIN;
                a->next_probe = now;
                a->base_sum = 0;
                a->base_n = 0;
            }
            return;
        }
    }
    a->odd = 0;
    a->base_sum += seconds;
    a->base_n++;
}

void autothreads_end(autothreads *a) {
    const double now = mono_now();
    autothreads_end_time(a, now, now - a->unit_t0);
}
