/* autothreads.h: the default thread count, chosen by measurement while a
 * run goes.
 *
 * With every core, a run is fastest on a quiet machine; next to another busy
 * process, its threads wait at each barrier for a partner that is not
 * running, and one thread can be many times faster (docs/BENCHMARKS.md,
 * "Busy machines"). Which case holds changes while a run goes, so a run that
 * was given no thread count times its own units (a decoded token, a
 * training step) and now and then runs some at another count (half, or
 * double, of the current one): if those are clearly faster per unit than
 * the units at the current count since the last probe, it switches.
 *
 * A probe's first unit is not counted (the threads of the count left are
 * still winding down); then it runs at least probe_len units and
 * AT_PROBE_MIN seconds, unless one of its units (the first too) takes
 * AT_ABORT times the base's mean: then it has lost already and stops. Probes come at growing intervals while the choice
 * holds (AT_PERIOD_MIN doubling to AT_PERIOD_MAX), and never sooner than
 * AT_COST probe durations after the last one (the first: AT_COST times
 * probe_len + 1 units), so even a probe at a count many times slower costs
 * at most ~1/AT_COST of the time; a switch shortens
 * the interval again, and two units in a row twice as slow or as fast as
 * the mean since the last probe (the machine changed) probe as soon as a
 * new base is measured. Both sides of a comparison span AT_PROBE_MIN
 * seconds at least, so one odd unit does not decide.
 *
 * The first choice is the cores that nothing else runs on at the start
 * (Linux's count of running threads less this process's own, the fewest
 * of a few looks over 8 ms; all of them where it is unknown).
 *
 * Every result of the library is bitwise the same at any thread count
 * (tests/test_model.c, test_infer_kernels.c), so the choice changes speed
 * only. Not thread-safe: one per model or engine, used by its caller's
 * thread. */
#ifndef MOE_CORE_AUTOTHREADS_H
#define MOE_CORE_AUTOTHREADS_H

#define AT_PERIOD_MIN 0.05  /* s between the first probes */
#define AT_PERIOD_MAX 5.0   /* s between probes while the choice holds, at most */
#define AT_PROBE_MIN 0.01   /* s a probe runs at least (its counted units) */
#define AT_COST 20.0        /* the next probe waits at least this many probe durations */
#define AT_ABORT 4.0        /* a probe unit this many times the base mean ends the probe */
#define AT_GAIN 0.90        /* switch when the probe's units take < 0.90 of the time */
#define AT_CHANGE 2.0       /* two units in a row this many times slower or faster than
                               the mean since the last probe: probe soon */

typedef struct autothreads {
    int max;          /* the most threads; <= 1: nothing to choose */
    int cur;          /* the count the units run at */
    int probe_len;    /* units a probe counts at least */
    int probe_at;     /* the count of the probe running now; 0: none */
    int probe_units;  /* its units so far (the first is not counted) */
    double probe_sum; /* time of its counted units */
    double probe_t0;  /* when it began */
    int down;         /* 1: the next probe tries fewer threads (alternates) */
    double base_sum;  /* units at cur since the last probe or switch: time */
    long base_n;      /*   and count */
    int odd;          /* units in a row far from that mean (not in it) */
    double period;    /* s between probes now */
    double next_probe;/* time (s, monotonic) of the next probe; < 0: unset */
    double since;     /* when the last probe ended (or the first unit began) */
    double not_before;/* no probe before: AT_COST times the last probe's duration after it */
    int unit_threads; /* the count the current unit runs at */
    double unit_t0;   /* when it began */
    long switches;    /* times the choice changed (for reports and tests) */
    int guess_pending;/* the first guess is still to be made */
} autothreads;

/* max: the most threads (all cores); probe_len >= 1. The first guess is
 * made when the first unit begins (or autothreads_current asks), so that
 * creating an engine costs nothing. */
void autothreads_init(autothreads *a, int max, int probe_len);
/* The count chosen now (for work that is not a unit: prefill chunks). */
int autothreads_current(autothreads *a);
/* The same starting at start threads (tests). */
void autothreads_init_at(autothreads *a, int max, int probe_len, int start);
/* The thread count for the next unit; starts its clock. */
int autothreads_begin(autothreads *a);
/* Ends the unit begun last; its time decides the next choices. */
void autothreads_end(autothreads *a);
/* The same with the clock given (seconds, monotonic; tests). */
int autothreads_begin_at(autothreads *a, double now);
void autothreads_end_time(autothreads *a, double now, double seconds);

#endif
