/* test_autothreads.c: the measured choice of the default thread count
 * (src/core/autothreads.c), on a simulated machine whose unit times depend
 * on the thread count and on whether something else runs:
 *   quiet: 2 threads 1 ms a unit, 1 thread 1.9 ms (decode of the demo model);
 *   busy:  2 threads 40 ms, 1 thread 4 ms (a spinning partner descheduled).
 * Checks: on a quiet machine it stays at all threads and the probes cost
 * under 2% of the time; with noise of +-25% on every unit it still spends
 * under 5% of the time at the slow count; when the machine turns busy it
 * switches within 0.2 s of simulated time, and back within 0.5 s when it
 * turns quiet again; a probe at a count 10x slower costs under 6% of the
 * time; with max 1 it never asks for more; probe lengths. */
#include "core/autothreads.h"
#include "testutil.h"

typedef struct sim {
    double now;        /* simulated clock, s */
    double t_at[9];    /* unit time at each thread count (index = threads) */
    double noise;      /* relative, uniform +-noise */
    tu_rng rng;
    double time_at[9]; /* time spent at each count */
    long units;
} sim;

static void run(sim *s, autothreads *a, double until) {
    while (s->now < until) {
        int nt = autothreads_begin_at(a, s->now);
        double t = s->t_at[nt];
        if (s->noise > 0) t *= 1.0 + s->noise * tu_uniform(&s->rng); /* uniform in [-1, 1) */
        s->now += t;
        s->time_at[nt] += t;
        s->units++;
        autothreads_end_time(a, s->now, t);
    }
}

static void set_quiet(sim *s) { s->t_at[1] = 1.9e-3; s->t_at[2] = 1.0e-3; }
static void set_busy(sim *s) { s->t_at[1] = 4e-3; s->t_at[2] = 40e-3; }

static void quiet_costs_little(double noise, double max_slow_share, const char *name) {
    sim s = {.noise = noise, .rng = {7}};
    set_quiet(&s);
    autothreads a;
    autothreads_init_at(&a, 2, 2, 2);
    run(&s, &a, 30.0);
    const double slow = s.time_at[1] / (s.time_at[1] + s.time_at[2]);
    if (a.cur != 2) tu_fail(name, "ended at %d threads on a quiet machine", a.cur);
    else if (slow > max_slow_share)
        tu_fail(name, "%.2f%% of the time at 1 thread (at most %.1f%%)", 100 * slow, 100 * max_slow_share);
    else tu_okf("%s (%.2f%% of the time at 1 thread, %ld switches)", name, 100 * slow, a.switches);
}

static void follows_the_machine(void) {
    const char *name = "autothreads/follows_busy_and_quiet";
    sim s = {.rng = {3}};
    set_quiet(&s);
    autothreads a;
    autothreads_init_at(&a, 2, 2, 2);
    run(&s, &a, 10.0);
    set_busy(&s);
    const double t_busy = s.now;
    while (a.cur != 1 && s.now < t_busy + 5.0) run(&s, &a, s.now + 1e-3);
    const double to_one = s.now - t_busy;
    const double t2_before = s.time_at[2], t_stay = s.now;
    run(&s, &a, s.now + 20.0); /* stays at 1 while busy */
    const int busy_choice = a.cur;
    const double probe_share = (s.time_at[2] - t2_before) / (s.now - t_stay);
    set_quiet(&s);
    const double t_quiet = s.now;
    while (a.cur != 2 && s.now < t_quiet + 20.0) run(&s, &a, s.now + 1e-3);
    const double to_two = s.now - t_quiet;
    if (to_one > 0.2) tu_fail(name, "took %.3f s to leave 2 threads on a busy machine", to_one);
    else if (busy_choice != 1) tu_fail(name, "went back to %d threads while busy", busy_choice);
    else if (probe_share > 0.06) tu_fail(name, "probes at 2 threads took %.1f%% of a busy run", 100 * probe_share);
    else if (to_two > 0.5) tu_fail(name, "took %.3f s to return to 2 threads", to_two);
    else tu_okf("%s (to 1 thread in %.3f s, probes %.1f%% of a busy run, back to 2 in %.3f s)", name, to_one,
                100 * probe_share, to_two);
}

/* A busy machine whose unit times swing by +-90% (our thread descheduled
 * now and then): the swings trigger probes, but probes at 2 threads still
 * take under 8% of the time. */
static void busy_noisy(void) {
    const char *name = "autothreads/busy_noisy_probes_bounded";
    sim s = {.noise = 0.9, .rng = {11}};
    set_busy(&s);
    autothreads a;
    autothreads_init_at(&a, 2, 2, 1);
    run(&s, &a, 30.0);
    const double share = s.time_at[2] / s.now;
    if (a.cur != 1) tu_fail(name, "ended at %d threads", a.cur);
    else if (share > 0.08) tu_fail(name, "probes at 2 threads took %.1f%% of the time", 100 * share);
    else tu_okf("%s (%.1f%% of the time at 2 threads)", name, 100 * share);
}

/* A first guess of 1 thread (something ran at the start) on a machine
 * that is quiet: back to 2 within 0.2 s. */
static void wrong_guess(void) {
    const char *name = "autothreads/wrong_first_guess";
    sim s = {.rng = {9}};
    set_quiet(&s);
    autothreads a;
    autothreads_init_at(&a, 2, 2, 1);
    while (a.cur != 2 && s.now < 5.0) run(&s, &a, s.now + 1e-3);
    if (a.cur != 2 || s.now > 0.2) tu_fail(name, "at %d threads after %.3f s", a.cur, s.now);
    else tu_okf("%s (2 threads after %.3f s)", name, s.now);
}

static void one_thread_stays(void) {
    const char *name = "autothreads/max_1";
    sim s = {.rng = {1}};
    set_quiet(&s);
    autothreads a;
    autothreads_init_at(&a, 1, 2, 1);
    run(&s, &a, 1.0);
    if (s.time_at[2] > 0) tu_fail(name, "asked for 2 threads with max 1");
    else tu_ok(name);
}

static void probe_shape(void) {
    const char *name = "autothreads/probe_length_and_range";
    sim s = {.rng = {5}};
    s.t_at[1] = 1e-3; s.t_at[2] = 1e-3; s.t_at[4] = 1e-3; s.t_at[8] = 1e-3;
    for (int i = 3; i <= 8; i++) if (!s.t_at[i]) s.t_at[i] = 1e-3;
    autothreads a;
    autothreads_init_at(&a, 8, 3, 8);
    /* a probe runs probe_len units in a row at one count in 1..max */
    int run_len = 0, prev = -1, bad = 0;
    for (int u = 0; u < 20000; u++) {
        int nt = autothreads_begin_at(&a, s.now);
        if (nt < 1 || nt > 8) bad = 1;
        if (nt != a.cur) run_len = nt == prev ? run_len + 1 : 1;
        else if (prev != a.cur && prev != -1 && run_len < 4) bad = 2;
        prev = nt;
        s.now += 1e-3;
        autothreads_end_time(&a, s.now, 1e-3);
    }
    if (bad == 1) tu_fail(name, "a count outside 1..8");
    else if (bad == 2) tu_fail(name, "a probe of fewer than 3 + 1 units");
    else if (a.cur != 8) tu_fail(name, "equal times moved the choice to %d", a.cur);
    else tu_ok(name);
}

int main(void) {
    quiet_costs_little(0.0, 0.02, "autothreads/quiet_probes_under_2pct");
    quiet_costs_little(0.25, 0.05, "autothreads/quiet_noisy_under_5pct");
    follows_the_machine();
    wrong_guess();
    busy_noisy();
    one_thread_stays();
    probe_shape();
    return tu_exit_code();
}
