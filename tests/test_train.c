/* test_train.c: the trainer end to end on a tiny model: exact resume (2N
 * steps in one run == N + resume + N), checkpoints that survive a failed or
 * killed write, model files that load back to the same logits, and every
 * bad input of the training issue giving a clear error that names it; the
 * router of --k 1 (renormalised: no gradient; the Switch form: one), starved
 * experts, a vocabulary of bytes alone, validation from every source. */
#define _DEFAULT_SOURCE
#include "testutil.h"
#include "moe.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* the message of the last failed layer or model call */
static moe_error lerr;

static char root[256];

static void tiny_config(moe_train_config *c) {
    moe_train_config_default(c);
    c->model.vocab_size = 300;
    c->model.d_model = 32;
    c->model.n_layers = 2;
    c->model.n_heads = 4;
    c->model.n_kv_heads = 2;
    c->model.ctx_len = 32;
    c->model.d_ff = 64;
    c->model.moe.n_experts = 4;
    c->model.moe.top_k = 2;
    c->model.moe.d_ff = 48;
    c->model.moe.aux_loss_coef = 0.01f;
    c->model.moe.z_loss_coef = 0.001f;
    c->model.moe.jitter = 0.01f;           /* the routers' RNG must resume too */
    c->model.moe.capacity_factor = 1.25f;  /* and the plan with drops */
    c->model.n_threads = 2;
    c->batch = 4;
    c->model.max_batch = 4;
    c->steps = 8;
    c->warmup = 2;
    c->eval_every = 0;
    c->eval_batches = 4;
    c->corpus_bytes = 120000;
}

static void path_of(char *buf, size_t n, const char *name) { snprintf(buf, n, "%s/%s", root, name); }

static unsigned char *slurp(const char *p, long *n) {
    FILE *f = fopen(p, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)*n + 1);
    if (b && fread(b, 1, (size_t)*n, f) != (size_t)*n) { free(b); b = NULL; }
    fclose(f);
    return b;
}

static void write_file(const char *p, const void *data, size_t n) {
    FILE *f = fopen(p, "wb");
    if (!f) return;
    fwrite(data, 1, n, f);
    fclose(f);
}

static void rm_rf(const char *dir) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "note: could not remove %s\n", dir);
}

/* Runs `steps` steps, writing each loss into losses (may be NULL). */
static int run_steps(moe_trainer *t, int steps, float *losses, moe_error *err) {
    for (int i = 0; i < steps; i++) {
        moe_train_step_info s;
        if (moe_trainer_step(t, &s, err) != MOE_OK) return 1;
        if (losses) losses[i] = s.loss;
    }
    return 0;
}

static void test_resume_exact(void) {
    moe_train_config c;
    tiny_config(&c);
    char a[512], b[512];
    path_of(a, sizeof a, "full");
    path_of(b, sizeof b, "split");
    moe_error err;
    moe_trainer *t;
    float full[8], split[8], vfull, vsplit;
    if (moe_trainer_create(&t, &c, NULL, 0, a, &err) != MOE_OK) { tu_fail("train/resume", "create: %s", err.msg); return; }
    if (run_steps(t, 8, full, &err) || moe_trainer_eval(t, &vfull, &err)) { tu_fail("train/resume", "%s", err.msg); return; }
    moe_trainer_free(t);

    if (moe_trainer_create(&t, &c, NULL, 0, b, &err) != MOE_OK) { tu_fail("train/resume", "create: %s", err.msg); return; }
    if (run_steps(t, 4, split, &err) || moe_trainer_save(t, &err)) { tu_fail("train/resume", "%s", err.msg); return; }
    moe_trainer_free(t);
    if (moe_trainer_resume(&t, b, NULL, &err) != MOE_OK) { tu_fail("train/resume", "resume: %s", err.msg); return; }
    if (moe_trainer_steps_done(t) != 4) tu_fail("train/resume/step", "resumed at %lld, expected 4", (long long)moe_trainer_steps_done(t));
    if (run_steps(t, 4, split + 4, &err) || moe_trainer_eval(t, &vsplit, &err)) { tu_fail("train/resume", "%s", err.msg); return; }
    int same = 1, worst = -1;
    for (int i = 0; i < 8; i++)
        if (memcmp(&full[i], &split[i], sizeof(float))) { same = 0; if (worst < 0) worst = i; }
    if (same && !memcmp(&vfull, &vsplit, sizeof(float)))
        tu_okf("train/resume_exact (8 losses and the validation loss bitwise equal; last %.5f)", full[7]);
    else
        tu_fail("train/resume_exact", "step %d: %.9g (one run) vs %.9g (resumed); val %.9g vs %.9g", worst + 1,
                worst >= 0 ? full[worst] : 0, worst >= 0 ? split[worst] : 0, vfull, vsplit);
    if (full[7] < full[0]) tu_okf("train/loss_falls (%.3f -> %.3f)", full[0], full[7]);
    else tu_fail("train/loss_falls", "%.3f -> %.3f", full[0], full[7]);

    /* a different configuration is refused, naming the field */
    moe_train_config want;
    moe_trainer_free(t);
    if (moe_trainer_read_config(b, &want, &err) != MOE_OK) { tu_fail("train/resume_config", "%s", err.msg); return; }
    want.model.d_model = 64;
    moe_trainer *t2 = NULL;
    moe_status st = moe_trainer_resume(&t2, b, &want, &err);
    if (st != MOE_OK && strstr(err.msg, "d_model") && strstr(err.msg, "32") && strstr(err.msg, "64"))
        tu_okf("train/resume_other_config_refused: %s", err.msg);
    else
        tu_fail("train/resume_other_config_refused", "status %d: %s", st, err.msg);
    moe_trainer_free(t2);
    /* steps may change */
    moe_trainer_read_config(b, &want, &err);
    want.steps = 12;
    st = moe_trainer_resume(&t2, b, &want, &err);
    if (st == MOE_OK) tu_okf("train/resume_more_steps");
    else tu_fail("train/resume_more_steps", "%s", err.msg);
    moe_trainer_free(t2);

    /* a new run in a directory with a checkpoint is refused */
    st = moe_trainer_create(&t2, &c, NULL, 0, b, &err);
    if (st != MOE_OK && strstr(err.msg, "already holds a checkpoint")) tu_okf("train/no_overwrite: %s", err.msg);
    else tu_fail("train/no_overwrite", "status %d: %s", st, err.msg);
    moe_trainer_free(t2);
}

/* A save that fails half-way (file size limit: EFBIG) and a save killed
 * mid-write leave the previous checkpoint byte for byte as it was. */
static void test_interrupted_save(void) {
    moe_train_config c;
    tiny_config(&c);
    char dir[512], state[600], model[600];
    path_of(dir, sizeof dir, "interrupt");
    snprintf(state, sizeof state, "%s/state.gguf", dir);
    snprintf(model, sizeof model, "%s/model.gguf", dir);
    moe_error err;
    moe_trainer *t;
    if (moe_trainer_create(&t, &c, NULL, 0, dir, &err) != MOE_OK || run_steps(t, 2, NULL, &err) ||
        moe_trainer_save(t, &err) != MOE_OK) {
        tu_fail("train/interrupt", "%s", err.msg);
        return;
    }
    long ns, nm;
    unsigned char *s0 = slurp(state, &ns), *m0 = slurp(model, &nm);
    if (!s0 || !m0) { tu_fail("train/interrupt", "no checkpoint files"); free(s0); free(m0); moe_trainer_free(t); return; }
    /* one more step (in the parent: OpenMP does not survive fork), then a
       child saves it under a file size limit of half the checkpoint */
    if (run_steps(t, 1, NULL, &err)) { tu_fail("train/interrupt", "%s", err.msg); return; }
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        struct rlimit rl = {.rlim_cur = (rlim_t)(ns / 2), .rlim_max = (rlim_t)(ns / 2)};
        signal(SIGXFSZ, SIG_IGN);
        setrlimit(RLIMIT_FSIZE, &rl);
        moe_error e2;
        _exit(moe_trainer_save(t, &e2) == MOE_OK ? 0 : 3);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    long ns1, nm1;
    unsigned char *s1 = slurp(state, &ns1), *m1 = slurp(model, &nm1);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 3 && s1 && m1 && ns1 == ns && nm1 == nm && !memcmp(s0, s1, (size_t)ns) &&
        !memcmp(m0, m1, (size_t)nm))
        tu_okf("train/failed_save_keeps_checkpoint (EFBIG at %ld of %ld bytes)", ns / 2, ns);
    else
        tu_fail("train/failed_save_keeps_checkpoint", "child status %d, sizes %ld/%ld vs %ld/%ld", status, ns1, nm1, ns, nm);
    free(s1);
    free(m1);

    /* killed while saving, again and again: the files are always whole */
    int killed_ok = 1, tries = 0;
    for (int k = 0; k < 6; k++) {
        fflush(NULL);
        pid = fork();
        if (pid == 0) {
            moe_error e2;
            for (;;) moe_trainer_save(t, &e2);
        }
        struct timespec ts = {0, 2000000L + 3000000L * k};
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        tries++;
        moe_trainer *t2;
        if (moe_trainer_resume(&t2, dir, NULL, &err) != MOE_OK) { killed_ok = 0; break; }
        moe_trainer_free(t2);
    }
    if (killed_ok) tu_okf("train/killed_save_keeps_checkpoint (%d kills, resume works after each)", tries);
    else tu_fail("train/killed_save_keeps_checkpoint", "after a kill: %s", err.msg);
    free(s0);
    free(m0);
    moe_trainer_free(t);

    /* corrupt and truncated checkpoints: clear errors */
    unsigned char *s = slurp(state, &ns);
    if (!s) { tu_fail("train/corrupt", "no state"); return; }
    char bad[640];
    snprintf(bad, sizeof bad, "%s/state.gguf", dir);
    int fails = 0, cases = 0;
    long cuts[] = {0, 3, 16, 100, ns / 3, ns / 2, ns - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        write_file(bad, s, (size_t)cuts[i]);
        moe_trainer *t2 = NULL;
        cases++;
        if (moe_trainer_resume(&t2, dir, NULL, &err) == MOE_OK || !err.msg[0]) { fails++; moe_trainer_free(t2); }
    }
    /* a flipped byte deep in the tensor data: caught by the checksum */
    s[ns - 100] ^= 0x40;
    write_file(bad, s, (size_t)ns);
    moe_trainer *t2 = NULL;
    cases++;
    moe_status st = moe_trainer_resume(&t2, dir, NULL, &err);
    if (st == MOE_OK || !strstr(err.msg, "checksum")) { fails++; moe_trainer_free(t2); }
    if (!fails) tu_okf("train/corrupt_checkpoint_errors (%d files; e.g. %s)", cases, err.msg);
    else tu_fail("train/corrupt_checkpoint_errors", "%d of %d corrupt files were accepted", fails, cases);
    /* the model file: a flipped byte is caught by moe_model_load too */
    long nmm;
    unsigned char *mm = slurp(model, &nmm);
    if (mm) {
        mm[nmm - 50] ^= 0x01;
        char bm[640];
        snprintf(bm, sizeof bm, "%s/bad-model.gguf", dir);
        write_file(bm, mm, (size_t)nmm);
        moe_model *m;
        st = moe_model_load(&m, NULL, bm, 1, 1, &err);
        if (st != MOE_OK && strstr(err.msg, "checksum")) tu_okf("train/corrupt_model_file: %s", err.msg);
        else { tu_fail("train/corrupt_model_file", "status %d: %s", st, err.msg); if (st == MOE_OK) moe_model_free(m); }
        free(mm);
    }
    free(s);
}

/* The model file gives back the same model: equal logits. */
static void test_model_file(void) {
    moe_train_config c;
    tiny_config(&c);
    char dir[512], model[600];
    path_of(dir, sizeof dir, "modelfile");
    snprintf(model, sizeof model, "%s/model.gguf", dir);
    moe_error err;
    moe_trainer *t;
    if (moe_trainer_create(&t, &c, NULL, 0, dir, &err) != MOE_OK || run_steps(t, 2, NULL, &err) ||
        moe_trainer_save(t, &err)) {
        tu_fail("train/model_file", "%s", err.msg);
        return;
    }
    moe_model *a = moe_trainer_model(t), *b;
    moe_tokenizer *tok;
    if (moe_model_load(&b, &tok, model, 4, 2, &err) != MOE_OK) {
        tu_fail("train/model_file", "load: %s", err.msg);
        moe_trainer_free(t);
        return;
    }
    int32_t ids[4 * 32];
    for (int i = 0; i < 4 * 32; i++) ids[i] = (i * 37 + 11) % 300;
    const moe_model_config *ca = moe_model_get_config(a);
    for (int l = 0; l < ca->n_layers; l++) moe_layer_set_capacity_factor(moe_model_moe_layer(a, l), MOE_DROPLESS, &lerr);
    for (int l = 0; l < ca->n_layers; l++) moe_layer_set_capacity_factor(moe_model_moe_layer(b, l), MOE_DROPLESS, &lerr);
    moe_model_forward(a, ids, NULL, 4, 32, 0, NULL, &lerr);
    moe_model_forward(b, ids, NULL, 4, 32, 0, NULL, &lerr);
    size_t n = (size_t)4 * 32 * (size_t)ca->vocab_size;
    if (!memcmp(moe_model_logits(a), moe_model_logits(b), n * sizeof(float)) &&
        moe_tokenizer_n_vocab(tok) == ca->vocab_size)
        tu_okf("train/model_file_roundtrip (logits bitwise equal, %d tensors)", moe_model_n_tensors(b));
    else
        tu_fail("train/model_file_roundtrip", "logits differ after save + load");
    /* the tokenizer round trip from the file */
    const char *text = "def f(x):\n    return 37 + 85 = 122 {\"name\": \"Zoë\"} \xff\x00 end";
    size_t len = strlen(text) + 4, nid, nb;
    int32_t out[128];
    char back[256];
    if (moe_tokenizer_encode(tok, text, len, out, 128, &nid, &err) == MOE_OK &&
        moe_tokenizer_decode(tok, out, nid, back, sizeof back, &nb, &err) == MOE_OK && nb == len && !memcmp(back, text, len))
        tu_okf("train/tokenizer_from_file_roundtrip (%zu bytes -> %zu tokens)", len, nid);
    else
        tu_fail("train/tokenizer_from_file_roundtrip", "%s", err.msg);
    moe_model_free(b);
    moe_tokenizer_free(tok);
    moe_trainer_free(t);
}

static void expect_error(const char *name, moe_status st, const char *msg, const char *must) {
    if (st != MOE_OK && strstr(msg, must)) tu_okf("%s: %s", name, msg);
    else tu_fail(name, "status %d, message '%s' (expected it to mention '%s')", st, msg, must);
}

static void test_bad_inputs(void) {
    moe_train_config c;
    tiny_config(&c);
    moe_error err;
    moe_trainer *t = NULL;
    char dir[512], p[600];
    path_of(dir, sizeof dir, "bad");
    mkdir(dir, 0777);

    snprintf(p, sizeof p, "%s/does-not-exist.txt", dir);
    const char *paths[1] = {p};
    expect_error("train/bad/missing_file", moe_trainer_create(&t, &c, paths, 1, dir, &err), err.msg, "does-not-exist.txt");
    moe_trainer_free(t), t = NULL;

    snprintf(p, sizeof p, "%s/empty.txt", dir);
    write_file(p, "", 0);
    expect_error("train/bad/empty_file", moe_trainer_create(&t, &c, paths, 1, dir, &err), err.msg, "empty.txt");
    moe_trainer_free(t), t = NULL;

    snprintf(p, sizeof p, "%s/binary.bin", dir);
    unsigned char bin[4096];
    for (int i = 0; i < 4096; i++) bin[i] = (unsigned char)(i * 7);
    write_file(p, bin, sizeof bin);
    expect_error("train/bad/binary_file", moe_trainer_create(&t, &c, paths, 1, dir, &err), err.msg, "binary.bin");
    moe_trainer_free(t), t = NULL;

    snprintf(p, sizeof p, "%s/small.txt", dir);
    const char *small = "A tiny corpus. It has far fewer tokens than one batch of four sequences of 32 tokens.\n";
    write_file(p, small, strlen(small));
    expect_error("train/bad/corpus_smaller_than_batch", moe_trainer_create(&t, &c, paths, 1, dir, &err), err.msg,
                 "smaller than one batch");
    moe_trainer_free(t), t = NULL;

    moe_train_config big = c;
    big.model.d_model = 8192;
    big.model.n_layers = 64;
    big.model.n_heads = 64;
    big.model.n_kv_heads = 64;
    big.model.moe.d_ff = 16384;
    big.model.moe.n_experts = 64;
    big.model.ctx_len = 4096;
    big.batch = big.model.max_batch = 64;
    expect_error("train/bad/does_not_fit_in_memory", moe_trainer_create(&t, &big, NULL, 0, dir, &err), err.msg, "GiB");
    moe_trainer_free(t), t = NULL;

    char nodir[512];
    path_of(nodir, sizeof nodir, "no-such-run");
    expect_error("train/bad/resume_without_checkpoint", moe_trainer_resume(&t, nodir, NULL, &err), err.msg, "no-such-run");
    moe_trainer_free(t), t = NULL;

    moe_train_config odd = c;
    odd.model.n_kv_heads = 3;
    expect_error("train/bad/config", moe_trainer_create(&t, &odd, NULL, 0, dir, &err), err.msg, "n_kv_heads");
    moe_trainer_free(t), t = NULL;

    snprintf(p, sizeof p, "%s/not-a-model.gguf", dir);
    write_file(p, "GGUF but not really", 19);
    moe_model *m = NULL;
    expect_error("train/bad/model_file_garbage", moe_model_load(&m, NULL, p, 1, 1, &err), err.msg, "not-a-model.gguf");
    moe_model_free(m);
}

/* ------------------------------------------------------------ training that tells the truth */

/* --k 1 with renormalised weights: the one weight is p / p = 1, so the loss
 * of the layer's output gives the router nothing (fp32 noise at most); the
 * Switch form (renormalize = 0, gate = p) gives it a real gradient, which
 * tests/test_layer.c checks by finite differences (layer/fd/top1_switch). */
static void test_k1_router_gradient(void) {
    const char *name = "train/k1_renormalised_router_has_no_lm_gradient";
    double gmax[2] = {0, 0};
    enum { d = 16, F = 24, E = 4, T = 32 };
    for (int renorm = 1; renorm >= 0; renorm--) {
        moe_layer_config c;
        moe_layer_config_default(&c, d, F, E, 1);
        c.renormalize = renorm;
        c.aux_loss_coef = 0.0f;
        c.z_loss_coef = 0.0f;
        c.max_tokens = T;
        c.n_threads = 1;
        moe_layer *L;
        if (moe_layer_create(&L, &c, &lerr) != MOE_OK) { tu_fail(name, "create: %s", lerr.msg); return; }
        moe_layer_init_params(L, 3);
        float x[T * d], y[T * d], dy[T * d], dx[T * d];
        tu_rng r = {11};
        tu_fill(&r, x, T * d, 1.0f);
        tu_fill(&r, dy, T * d, 1.0f);
        moe_layer_zero_grads(L);
        if (moe_layer_forward(L, y, x, T, 1, &lerr) || moe_layer_backward(L, dx, dy, &lerr)) {
            tu_fail(name, "%s", lerr.msg);
            moe_layer_free(L);
            return;
        }
        const float *g = moe_layer_grads(L).router;
        for (int i = 0; i < E * d; i++) gmax[renorm] = fabs(g[i]) > gmax[renorm] ? fabs(g[i]) : gmax[renorm];
        moe_layer_free(L);
    }
    /* gmax[1]: renormalised; gmax[0]: the Switch form */
    if (!(gmax[0] > 1e-3) || !(gmax[1] < 1e-5 * gmax[0]))
        tu_fail(name, "router gradient: renormalised %.3g, Switch form %.3g (expected ~0 and clearly > 0)", gmax[1],
                gmax[0]);
    else
        tu_okf("%s (max |dWr|: renormalised %.2g, Switch form %.2g)", name, gmax[1], gmax[0]);
}

/* Starved experts: a share below MOE_STARVED_SHARE / E counts at once, while
 * "dead" needs dead_window forwards without a token. */
static void test_starved_experts(void) {
    const char *name = "train/starved_experts_counted";
    enum { d = 16, F = 16, E = 8, T = 256 };
    moe_layer_config c;
    moe_layer_config_default(&c, d, F, E, 1);
    c.max_tokens = T;
    c.n_threads = 1;
    c.dead_window = 3;
    moe_layer *L;
    if (moe_layer_create(&L, &c, &lerr) != MOE_OK) { tu_fail(name, "create: %s", lerr.msg); return; }
    moe_layer_init_params(L, 5);
    moe_layer_weights w = moe_layer_params(L);
    static float x[T * d], y[T * d];
    tu_rng r = {21};
    tu_fill(&r, x, T * d, 0.3f);
    for (int t = 0; t < T; t++) x[t * d] = 1.0f; /* a feature every token has */
    /* experts 6 and 7 get a logit 8 lower on it: starved, yet not dead at once;
       the others stay about even */
    for (int e = 0; e < E; e++) {
        for (int i = 0; i < d; i++) w.router[e * d + i] *= 0.2f;
        w.router[e * d] = e >= 6 ? -8.0f : 0.0f;
    }
    int ok = 1, starved = -1, dead = -1;
    for (int f = 0; f < 4 && ok; f++) {
        if (moe_layer_forward(L, y, x, T, 0, &lerr)) { tu_fail(name, "%s", lerr.msg); ok = 0; break; }
        const moe_route_stats *s = moe_layer_stats(L);
        int zero = 0, low = 0;
        for (int e = 0; e < E; e++) {
            zero += s->tokens_per_expert[e] == 0;
            low += s->tokens_per_expert[e] < MOE_STARVED_SHARE * T / E;
        }
        starved = s->starved_experts;
        dead = s->dead_experts;
        if (starved != low || low != 2) { tu_fail(name, "forward %d: starved %d, experts below a quarter of uniform %d (expected 2)", f, starved, low); ok = 0; }
        if (f == 0 && dead != 0) { tu_fail(name, "dead %d after one forward", dead); ok = 0; }
        if (f == 3 && dead != zero) { tu_fail(name, "dead %d after 4 forwards, %d experts without tokens", dead, zero); ok = 0; }
    }
    /* even routing: nobody starved */
    for (int e = 0; e < E; e++) w.router[e * d] = 0.0f;
    if (ok && (moe_layer_forward(L, y, x, T, 0, &lerr) || moe_layer_stats(L)->starved_experts != 0)) {
        tu_fail(name, "even routing: %d starved", moe_layer_stats(L)->starved_experts);
        ok = 0;
    }
    if (ok) tu_okf("%s (2 of 8 starved; dead %d after 4 forwards)", name, dead);
    moe_layer_free(L);
}

/* --vocab 256: the bytes alone; the model gets 258 ids and trains. */
static void test_vocab_bytes(void) {
    const char *name = "train/vocab_256_bytes_alone";
    moe_train_config c;
    tiny_config(&c);
    c.model.vocab_size = 256;
    c.corpus_bytes = 30000;
    c.model.n_layers = 1;
    char dir[512];
    path_of(dir, sizeof dir, "vocab256");
    moe_trainer *t = NULL;
    moe_error err;
    moe_train_step_info s;
    float vl;
    if (moe_trainer_create(&t, &c, NULL, 0, dir, &err) || moe_trainer_step(t, &s, &err) ||
        moe_trainer_eval(t, &vl, &err)) {
        tu_fail(name, "%s", err.msg);
    } else if (moe_trainer_config(t)->model.vocab_size != 258 || moe_tokenizer_n_vocab(moe_trainer_tokenizer(t)) != 258 ||
               !strstr(moe_trainer_data_notes(t), "256 bytes alone") || !isfinite(s.loss)) {
        tu_fail(name, "vocab %d, tokenizer %d, loss %g, notes %s", moe_trainer_config(t)->model.vocab_size,
                moe_tokenizer_n_vocab(moe_trainer_tokenizer(t)), (double)s.loss, moe_trainer_data_notes(t));
    } else {
        tu_okf("%s (model vocabulary 258, first loss %.3f)", name, (double)s.loss);
    }
    moe_trainer_free(t);
}

/* A run on a folder of several sources: every source gives validation
 * tokens, and the notes say so; eval with fewer batches than all works. */
static void test_val_from_every_source(void) {
    const char *name = "train/validation_from_every_source";
    char dir[512], data[512], p[600];
    path_of(dir, sizeof dir, "every_source_run");
    path_of(data, sizeof data, "every_source_data");
    mkdir(data, 0777);
    const char *words[3] = {"license terms and conditions apply. ", "changelog: fixed a bug in the parser. ",
                            "int main(void) { return 0; } "};
    for (int f = 0; f < 3; f++) {
        snprintf(p, sizeof p, "%s/%c.txt", data, 'a' + f);
        size_t n = strlen(words[f]);
        char *b = malloc(n * 400 + 1);
        for (int i = 0; i < 400; i++) memcpy(b + (size_t)i * n, words[f], n);
        write_file(p, b, n * 400);
        free(b);
    }
    moe_train_config c;
    tiny_config(&c);
    c.model.n_layers = 1;
    c.eval_batches = 1;
    const char *paths[1] = {data};
    moe_trainer *t = NULL;
    moe_error err;
    float vl;
    if (moe_trainer_create(&t, &c, paths, 1, dir, &err) || moe_trainer_eval(t, &vl, &err)) {
        tu_fail(name, "%s", err.msg);
    } else {
        moe_data_info di = moe_trainer_data_info(t);
        const char *notes = moe_trainer_data_notes(t);
        if (di.n_sources != 3 || di.n_val_sources != 3 || !strstr(notes, "validation:") || !strstr(notes, "a.txt") ||
            !strstr(notes, "b.txt") || !strstr(notes, "c.txt") || !strstr(notes, "from 3 of 3 sources"))
            tu_fail(name, "%lld sources, %lld with validation tokens; notes: %s", (long long)di.n_sources,
                    (long long)di.n_val_sources, notes);
        else
            tu_okf("%s (%lld validation tokens)", name, (long long)di.val_tokens);
    }
    moe_trainer_free(t);
}

int main(void) {
    snprintf(root, sizeof root, "/tmp/moe-test-train-XXXXXX");
    if (!mkdtemp(root)) { tu_fail("train/setup", "mkdtemp: %s", strerror(errno)); return 1; }
    test_resume_exact();
    test_interrupted_save();
    test_model_file();
    test_bad_inputs();
    test_k1_router_gradient();
    test_starved_experts();
    test_vocab_bytes();
    test_val_from_every_source();
    rm_rf(root);
    return tu_exit_code();
}
