/* fuzz_checkpoint.c: the training checkpoint (state.gguf) through
 * moe_trainer_resume, and the same file through moe_model_load. The run's
 * folder (its tokens.bin) comes from a tiny training run made once per
 * process; the input replaces its state.gguf. Built by `make fuzz` with
 * FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION, under which a wrong moe.checksum
 * does not stop the reader (src/model/model_file.c), so the metadata and
 * tensors behind it are reached; in the normal build (the replay of the
 * suite) the checksum is checked as always. */
#include "fuzz_train.h"
#include "fuzz_util.h"

static int ready;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[512];
    moe_error err;
    if (!ready) {
        fz_own("state.gguf");
        fz_own("model.gguf");
        fz_own("tokens.bin");
        if (fz_train_run(fz_dir(), &err) != MOE_OK) {
            fprintf(stderr, "fuzz_checkpoint: the training run failed: %s\n", err.msg);
            abort();
        }
        ready = 1;
    }
    if (!fz_write(path, sizeof path, "state.gguf", data, size)) return 0;
    moe_trainer *t = NULL;
    moe_status st = moe_trainer_resume(&t, fz_dir(), NULL, &err);
    fz_check_err(st != MOE_OK, err.msg);
    moe_trainer_free(t);
    moe_model *m = NULL;
    moe_tokenizer *tok = NULL;
    st = moe_model_load(&m, &tok, path, 1, 1, &err);
    fz_check_err(st != MOE_OK, err.msg);
    if (st == MOE_OK && tok) {
        int32_t ids[32];
        size_t n = 0;
        const char *s = "fuzz me";
        if (moe_tokenizer_encode(tok, s, strlen(s), ids, 32, &n, &err) == MOE_OK && n > 0 && n <= 32) {
            char back[64];
            size_t nb = 0;
            moe_tokenizer_decode(tok, ids, n, back, sizeof back, &nb, &err);
        }
    }
    moe_tokenizer_free(tok);
    moe_model_free(m);
    return 0;
}
