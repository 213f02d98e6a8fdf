/* test_cancel.c: moe_cancel (include/moe.h) and the runs that never lose
 * work, at the library level: a pending cancellation makes the atomic writer,
 * moe_model_save, tokenizer training and moe_trainer_create stop with
 * MOE_ERR_CANCELLED, remove their temporary files and leave an existing
 * target as it was; a trainer that fails (cancelled, or a data error) leaves
 * no empty run folder; the learning-rate schedule keeps its first length on
 * a resume with more steps and then holds min_lr. */
#include "testutil.h"
#include "moe.h"
#include "core/atomic_file.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char root[256];

/* Number of temporary files (".NAME.tmp.*") in dir. */
static int n_tmp(const char *dir) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (e->d_name[0] == '.' && strstr(e->d_name, ".tmp.")) n++;
    if (d) closedir(d);
    return n;
}

static int exists(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0;
}

static void tiny(moe_train_config *c) {
    moe_train_config_default(c);
    c->model.vocab_size = 300;
    c->model.d_model = 32;
    c->model.n_layers = 1;
    c->model.n_heads = 2;
    c->model.n_kv_heads = 1;
    c->model.ctx_len = 16;
    c->model.d_ff = 32;
    c->model.moe.n_experts = 4;
    c->model.moe.top_k = 2;
    c->model.moe.d_ff = 16;
    c->model.n_threads = 1;
    c->batch = 2;
    c->model.max_batch = 2;
    c->steps = 4;
    c->warmup = 1;
    c->eval_every = 0;
    c->save_every = 2;
    c->corpus_bytes = 40000;
}

static void test_atomic_file(void) {
    char target[512];
    snprintf(target, sizeof target, "%s/a.bin", root);
    moe_error err;
    atomic_file f;
    /* a write after the request: cancelled, nothing left */
    if (atomic_file_open(&f, target, &err) != MOE_OK) { tu_fail("cancel/atomic_open", "%s", err.msg); return; }
    atomic_file_write(&f, "abc", 3, &err);
    moe_cancel();
    moe_status st = atomic_file_write(&f, "def", 3, &err);
    moe_cancel_clear();
    if (st != MOE_ERR_CANCELLED || n_tmp(root) != 0 || exists(target) || !strstr(err.msg, "cancelled"))
        tu_fail("cancel/atomic_write", "status %s, %d temporary files, target %s, message \"%s\"",
                moe_status_str(st), n_tmp(root), exists(target) ? "exists" : "absent", err.msg);
    else tu_ok("cancel/atomic_write");
    /* a commit after the request: the old target stays */
    FILE *o = fopen(target, "wb");
    fputs("old", o);
    fclose(o);
    if (atomic_file_open(&f, target, &err) != MOE_OK) { tu_fail("cancel/atomic_open2", "%s", err.msg); return; }
    atomic_file_write(&f, "new content", 11, &err);
    moe_cancel();
    st = atomic_file_commit(&f, &err);
    moe_cancel_clear();
    char buf[16] = {0};
    o = fopen(target, "rb");
    size_t got = o ? fread(buf, 1, sizeof buf - 1, o) : 0;
    if (o) fclose(o);
    if (st != MOE_ERR_CANCELLED || n_tmp(root) != 0 || got != 3 || strcmp(buf, "old"))
        tu_fail("cancel/atomic_commit_keeps_old", "status %s, %d temporary files, target \"%s\"",
                moe_status_str(st), n_tmp(root), buf);
    else tu_ok("cancel/atomic_commit_keeps_old");
    unlink(target);
    if (strcmp(moe_status_str(MOE_ERR_CANCELLED), "cancelled"))
        tu_fail("cancel/status_str", "\"%s\"", moe_status_str(MOE_ERR_CANCELLED));
    else tu_ok("cancel/status_str");
    moe_cancel();
    int req = moe_cancel_requested();
    moe_cancel_clear();
    if (!req || moe_cancel_requested()) tu_fail("cancel/requested", "after cancel %d, after clear %d", req,
                                                moe_cancel_requested());
    else tu_ok("cancel/requested");
}

static void test_tokenizer_and_trainer(void) {
    moe_error err;
    char *text;
    size_t n;
    if (moe_corpus_text(&text, &n, -1, 200000, 3, &err) != MOE_OK) { tu_fail("cancel/corpus", "%s", err.msg); return; }
    moe_tokenizer *tok = (moe_tokenizer *)1;
    moe_cancel();
    moe_status st = moe_tokenizer_train(&tok, text, n, 2000, &err);
    moe_cancel_clear();
    if (st != MOE_ERR_CANCELLED || tok != NULL)
        tu_fail("cancel/tokenizer_train", "status %s (%s)", moe_status_str(st), err.msg);
    else tu_ok("cancel/tokenizer_train");
    free(text);

    moe_train_config c;
    tiny(&c);
    char dir[512];
    snprintf(dir, sizeof dir, "%s/run-cancelled", root);
    moe_trainer *t = NULL;
    moe_cancel();
    st = moe_trainer_create(&t, &c, NULL, 0, dir, &err);
    moe_cancel_clear();
    if (st != MOE_ERR_CANCELLED || t || exists(dir))
        tu_fail("cancel/trainer_create_leaves_no_folder", "status %s, folder %s (%s)", moe_status_str(st),
                exists(dir) ? "left" : "absent", err.msg);
    else tu_ok("cancel/trainer_create_leaves_no_folder");

    snprintf(dir, sizeof dir, "%s/run-bad-data", root);
    char missing[512];
    snprintf(missing, sizeof missing, "%s/no-such-file.txt", root);
    const char *data[1] = {missing};
    st = moe_trainer_create(&t, &c, data, 1, dir, &err);
    if (st == MOE_OK || exists(dir))
        tu_fail("trainer/data_error_leaves_no_folder", "status %s, folder %s", moe_status_str(st),
                exists(dir) ? "left" : "absent");
    else tu_ok("trainer/data_error_leaves_no_folder");

    /* the model file writer */
    snprintf(dir, sizeof dir, "%s/run", root);
    if (moe_trainer_create(&t, &c, NULL, 0, dir, &err) != MOE_OK) { tu_fail("trainer/create", "%s", err.msg); return; }
    char model[600];
    snprintf(model, sizeof model, "%s/other.gguf", dir);
    moe_cancel();
    st = moe_model_save(moe_trainer_model(t), moe_trainer_tokenizer(t), model, &err);
    moe_cancel_clear();
    if (st != MOE_ERR_CANCELLED || exists(model) || n_tmp(dir) != 0)
        tu_fail("cancel/model_save", "status %s, file %s, %d temporary files", moe_status_str(st),
                exists(model) ? "written" : "absent", n_tmp(dir));
    else tu_ok("cancel/model_save");

    /* the schedule: 4 steps, then a resume to 8 holds min_lr */
    moe_train_step_info s;
    float lr4 = 0;
    while (moe_trainer_steps_done(t) < 4 && moe_trainer_step(t, &s, &err) == MOE_OK) lr4 = s.lr;
    if (moe_trainer_save(t, &err) != MOE_OK) { tu_fail("trainer/save", "%s", err.msg); moe_trainer_free(t); return; }
    moe_trainer_free(t);
    moe_train_config c2;
    if (moe_trainer_read_config(dir, &c2, &err) != MOE_OK) { tu_fail("trainer/read_config", "%s", err.msg); return; }
    c2.steps = 8;
    c2.model.n_threads = 1;
    if (moe_trainer_resume(&t, dir, &c2, &err) != MOE_OK) { tu_fail("trainer/resume", "%s", err.msg); return; }
    int ok = moe_trainer_schedule_steps(t) == 4;
    float worst = 0;
    while (moe_trainer_steps_done(t) < 8 && moe_trainer_step(t, &s, &err) == MOE_OK)
        if (s.lr != c.min_lr) { ok = 0; worst = s.lr; }
    if (!ok || moe_trainer_steps_done(t) != 8 || !(lr4 >= c.min_lr))
        tu_fail("trainer/resume_holds_min_lr", "schedule %lld, a step's lr %g (min_lr %g), step 4's %g",
                (long long)moe_trainer_schedule_steps(t), (double)worst, (double)c.min_lr, (double)lr4);
    else tu_ok("trainer/resume_holds_min_lr");
    moe_trainer_free(t);
}

int main(void) {
    snprintf(root, sizeof root, "/tmp/moe-test-cancel-XXXXXX");
    if (!mkdtemp(root)) { tu_fail("cancel/setup", "mkdtemp: %s", strerror(errno)); return 1; }
    test_atomic_file();
    test_tokenizer_and_trainer();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd) != 0) tu_fail("cancel/cleanup", "%s", cmd);
    return tu_exit_code();
}
