/* bench_contention.c: `moe bench contention`: decode and training speed of
 * the demo-sized model while 0, 1, 2 ... other processes keep cores busy,
 * with the default thread count and with each explicit one, measured in the
 * same run. Figures are printed, never asserted (docs/BENCHMARKS.md,
 * "Busy machines").
 *
 * Each measurement runs in a fresh child process (this program again, with
 * `--threads N` or none, and `bench contention --worker decode|train`), so
 * that the OpenMP runtime and the thread pools start as a user's run does
 * and one setting's threads cannot disturb the next. The competing
 * processes are forked spin loops at the same priority; they die with the
 * parent (PR_SET_PDEATHSIG). Settings are interleaved round by round and
 * the median of the rounds is printed, which is what a shared machine
 * allows.
 *
 *   moe bench contention [--model FILE] [--secs S] [--rounds R] [--busy N,N..]
 *                        [--env NAME=VALUE]
 * --model: a GGUF for the decode part (default: a demo-sized Mixtral-layout
 * model generated once into build/bench-models/); training always uses the
 * demo's configuration on random tokens. --env adds a column: the default
 * thread count with that environment variable set (e.g.
 * OMP_WAIT_POLICY=passive), to compare with the runtime's own switches.
 * Only the public API. */
#define _GNU_SOURCE
#include "cli.h"
#include "moe.h"
#include "moe_infer.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---------------------------------------------------------------- workers */

/* Decode: greedy generation from a short prompt, restarted whenever the
 * context is full, for secs seconds; prints "rate TOK_PER_S". */
static int worker_decode(const char *path, double secs, int nt) {
    moe_infer_options io;
    moe_infer_options_default(&io);
    io.n_threads = nt;
    moe_infer *m;
    moe_error err;
    if (moe_infer_open(&m, path, &io, &err) != MOE_OK) {
        fprintf(stderr, "moe bench contention: %s\n", err.msg);
        return 1;
    }
    const moe_infer_info *in = moe_infer_get_info(m);
    const int V = in->vocab_size, ctx = in->ctx_len < 256 ? in->ctx_len : 256;
    float *logits = malloc(sizeof(float) * (size_t)V);
    if (!logits) { moe_infer_close(m); return 1; }
    int32_t prompt[4] = {1 % V, 7 % V, 42 % V, 99 % V};
    long n = 0;
    double t_gen = 0;
    const double t_end = cli_now() + secs;
    int rc = 0;
    while (cli_now() < t_end && rc == 0) {
        moe_infer_reset(m);
        if (moe_infer_eval(m, prompt, 4, 0, logits, 0, &err) != MOE_OK) { rc = 1; break; }
        double t0 = cli_now();
        for (int pos = 4; pos < ctx; pos++) {
            int32_t tok = 0;
            for (int i = 1; i < V; i++) if (logits[i] > logits[tok]) tok = i;
            if (moe_infer_eval(m, &tok, 1, pos, logits, 0, &err) != MOE_OK) { rc = 1; break; }
            n++;
        }
        t_gen += cli_now() - t0;
    }
    if (rc) fprintf(stderr, "moe bench contention: %s\n", err.msg);
    else printf("rate %.3f\n", n / t_gen);
    free(logits);
    moe_infer_close(m);
    return rc;
}

/* Removes dir and the files in it (one level: what a trainer writes). */
static void remove_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        char p[1024];
        while ((e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            unlink(p);
        }
        closedir(d);
    }
    rmdir(dir);
}

/* Training: the steps `moe train` runs (the trainer, the demo's
 * configuration, a small slice of the built-in corpus: a step's speed does
 * not depend on the text), for secs seconds after one warm-up step; prints
 * "rate STEPS_PER_S". nt 0: the trainer's own choice, as `moe train`. */
static int worker_train(double secs, int nt) {
    moe_train_config c;
    moe_train_config_default(&c);
    c.model.n_threads = nt;
    c.corpus_bytes = 1 << 18;
    c.steps = 1000000;
    c.eval_every = 0;
    c.save_every = 1000000000;
    char dir[] = "/tmp/moe-contention-XXXXXX";
    if (!mkdtemp(dir)) { fprintf(stderr, "moe bench contention: cannot create a folder in /tmp\n"); return 1; }
    moe_trainer *t = NULL;
    moe_error err;
    int rc = 1;
    if (moe_trainer_create(&t, &c, NULL, 0, dir, &err) != MOE_OK) {
        fprintf(stderr, "moe bench contention: %s\n", err.msg);
        goto done;
    }
    double t_start = 0, t_end = 0;
    long steps = -1; /* step 0 warms up */
    for (;;) {
        if (steps == 0) { t_start = cli_now(); t_end = t_start + secs; }
        if (steps > 0 && cli_now() >= t_end) break;
        if (moe_trainer_step(t, NULL, &err) != MOE_OK) {
            fprintf(stderr, "moe bench contention: %s\n", err.msg);
            goto done;
        }
        steps++;
    }
    printf("rate %.3f\n", steps / (cli_now() - t_start));
    rc = 0;
done:
    moe_trainer_free(t);
    remove_dir(dir);
    return rc;
}

/* ------------------------------------------------------------ the parent */

/* The demo-sized decode model (d 128, 4 layers, 8 experts top-2, d_ff 384,
 * F32), written once. 0 on failure (printed). */
static int demo_model(char *out, size_t cap) {
    snprintf(out, cap, "build/bench-models/demo-size-f32.gguf");
    struct stat sb;
    if (stat(out, &sb) == 0) return 1;
    mkdir("build", 0755);
    mkdir("build/bench-models", 0755);
    moe_synth_config c;
    moe_synth_config_default(&c);
    c.d_model = 128;
    c.n_layers = 4;
    c.n_experts = 8;
    c.top_k = 2;
    c.d_ff = 384;
    moe_error err;
    if (moe_synth_model(out, &c, NULL, &err) != MOE_OK) {
        fprintf(stderr, "moe bench contention: %s\n", err.msg);
        return 0;
    }
    return 1;
}

/* Forks a process that spins until killed (or until this one exits). */
static pid_t start_busy(void) {
    pid_t parent = getpid();
    pid_t p = fork();
    if (p == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(0);
        volatile unsigned long x = 0;
        for (;;) x++;
    }
    return p;
}

/* Runs this program as a worker; returns its rate, or -1 on failure.
 * threads 0: the default (no --threads); env: "NAME=VALUE" or NULL. */
static double run_worker(const char *what, const char *model, double secs, int threads, const char *env) {
    int fd[2];
    if (pipe(fd) != 0) return -1;
    pid_t p = fork();
    if (p < 0) { close(fd[0]); close(fd[1]); return -1; }
    if (p == 0) {
        dup2(fd[1], 1);
        close(fd[0]);
        close(fd[1]);
        if (env) {
            putenv((char *)env);
        }
        else unsetenv("MOE_THREADS");
        char ts[16], ss[32];
        snprintf(ts, sizeof ts, "%d", threads);
        snprintf(ss, sizeof ss, "%g", secs);
        const char *av[16];
        int n = 0;
        av[n++] = "moe";
        if (threads > 0) { av[n++] = "--threads"; av[n++] = ts; }
        av[n++] = "bench"; av[n++] = "contention"; av[n++] = "--worker"; av[n++] = what;
        av[n++] = "--secs"; av[n++] = ss;
        if (model) { av[n++] = "--model"; av[n++] = model; }
        av[n] = NULL;
        execv("/proc/self/exe", (char *const *)av);
        _exit(127);
    }
    close(fd[1]);
    char buf[256];
    size_t len = 0;
    ssize_t r;
    while (len + 1 < sizeof buf && (r = read(fd[0], buf + len, sizeof buf - 1 - len)) > 0) len += (size_t)r;
    buf[len] = '\0';
    close(fd[0]);
    int status;
    while (waitpid(p, &status, 0) < 0 && errno == EINTR) {}
    double v;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || sscanf(buf, "rate %lf", &v) != 1) return -1;
    return v;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

#define MAX_ROUNDS 15
#define MAX_BUSY 8

int bench_contention(int argc, char **argv, int nt) {
    const char *model = NULL, *worker = NULL, *env = NULL, *busy_list = "0,1,2";
    float secs = 2.0f;
    int rounds = 3, bad = 0;
    for (int i = 0; i < argc; i++) {
        if (cli_float_opt("--secs", argc, argv, &i, &secs, &bad) ||
            cli_int_opt("--rounds", argc, argv, &i, &rounds, &bad)) continue;
        if (!strcmp(argv[i], "--model") && i + 1 < argc) model = argv[++i];
        else if (!strcmp(argv[i], "--worker") && i + 1 < argc) worker = argv[++i];
        else if (!strcmp(argv[i], "--busy") && i + 1 < argc) busy_list = argv[++i];
        else if (!strcmp(argv[i], "--env") && i + 1 < argc) env = argv[++i];
        else {
            fprintf(stderr, "moe bench contention: unknown option '%s' ([--model FILE] [--secs S] "
                    "[--rounds R] [--busy N,N..] [--env NAME=VALUE])\n", argv[i]);
            return 2;
        }
    }
    if (bad || secs <= 0 || rounds < 1 || rounds > MAX_ROUNDS) {
        fprintf(stderr, "moe bench contention: bad option values (--rounds 1..%d)\n", MAX_ROUNDS);
        return 2;
    }
    if (worker) {
        if (!strcmp(worker, "decode")) return worker_decode(model, secs, nt);
        if (!strcmp(worker, "train")) return worker_train(secs, nt);
        fprintf(stderr, "moe bench contention: --worker decode | train\n");
        return 2;
    }
    if (env && !strchr(env, '=')) { fprintf(stderr, "moe bench contention: --env wants NAME=VALUE\n"); return 2; }
    char path[512];
    if (model) snprintf(path, sizeof path, "%s", model);
    else if (!demo_model(path, sizeof path)) return 1;
    const long cores = sysconf(_SC_NPROCESSORS_ONLN);
    /* the settings: default, each explicit count up to the cores, env */
    int thr[10], n_set = 0;
    thr[n_set++] = 0;
    for (int t = 1; t <= cores && n_set < 8; t++) thr[n_set++] = t;
    const int env_col = env ? n_set++ : -1;
    if (env) thr[env_col] = 0;
    const char *sc = getenv("GOMP_SPINCOUNT"), *wp = getenv("OMP_WAIT_POLICY");
    printf("contention: %ld cores; decode model %s; training: the demo's configuration; %g s per "
           "measurement, median of %d rounds; GOMP_SPINCOUNT=%s OMP_WAIT_POLICY=%s\n", cores, path,
           (double)secs, rounds, sc ? sc : "(unset)", wp ? wp : "(unset)");
    printf("%-6s %-7s", "busy", "part");
    for (int s = 0; s < n_set; s++) {
        char h[40];
        if (s == env_col) snprintf(h, sizeof h, "%.18s", env);
        else if (thr[s] == 0) snprintf(h, sizeof h, "default");
        else snprintf(h, sizeof h, "threads=%d", thr[s]);
        printf(" %18s", h);
    }
    printf(" %14s\n", "default/best");
    const char *parts[2] = {"decode", "train"};
    for (const char *b = busy_list; *b;) {
        char *end;
        long nb = strtol(b, &end, 10);
        if (end == b || nb < 0 || nb > MAX_BUSY) {
            fprintf(stderr, "moe bench contention: --busy wants counts 0..%d separated by commas\n", MAX_BUSY);
            return 2;
        }
        b = *end == ',' ? end + 1 : end;
        pid_t kids[MAX_BUSY];
        for (int i = 0; i < nb; i++) kids[i] = start_busy();
        for (int pi = 0; pi < 2; pi++) {
            double r[10][MAX_ROUNDS];
            int failed = 0;
            for (int k = 0; k < rounds; k++)
                for (int s = 0; s < n_set; s++) {
                    r[s][k] = run_worker(parts[pi], pi == 0 ? path : NULL, secs, thr[s],
                                         s == env_col ? env : NULL);
                    failed |= r[s][k] < 0;
                }
            printf("%-6ld %-7s", nb, parts[pi]);
            double med[10], best = 0;
            for (int s = 0; s < n_set; s++) {
                qsort(r[s], (size_t)rounds, sizeof(double), cmp_d);
                med[s] = r[s][rounds / 2];
                if (s != env_col && med[s] > best) best = med[s];
                printf(" %12.1f %s", med[s], pi == 0 ? "tok/s" : "st/s ");
            }
            printf(" %14.2f%s\n", best > 0 ? med[0] / best : 0.0, failed ? "  (a run failed)" : "");
            fflush(stdout);
        }
        for (int i = 0; i < nb; i++) {
            kill(kids[i], SIGKILL);
            waitpid(kids[i], NULL, 0);
        }
    }
    return 0;
}
