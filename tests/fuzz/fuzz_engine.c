/* fuzz_engine.c: the engine on any model file: moe_infer_open (every key and
 * tensor check of every architecture), the file's tokenizer encoding a
 * prompt, one batched eval of the prompt and one decode step. One thread, a
 * 16-position cache, so the tiny seed models run in about a millisecond. */
#include "fuzz_util.h"
#include "moe_infer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[512];
    if (!fz_write(path, sizeof path, "model.gguf", data, size)) return 0;
    moe_infer_options o;
    moe_infer_options_default(&o);
    o.n_threads = 1;
    o.ctx_len = 16;
    o.max_batch = 4;
    moe_infer *m = NULL;
    moe_error err;
    moe_status st = moe_infer_open(&m, path, &o, &err);
    fz_check_err(st != MOE_OK, err.msg);
    if (st != MOE_OK) return 0;
    const moe_infer_info *in = moe_infer_get_info(m);
    int32_t tok[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    size_t nt = 5;
    const moe_vocab *v = moe_infer_vocab(m);
    if (v) {
        const char *prompt = "<|im_start|>Hi there, 12 \xc3\xa9l\xc3\xa8ves!";
        st = moe_vocab_encode(v, prompt, strlen(prompt), 1, 1, tok, 8, &nt, &err);
        fz_check_err(st != MOE_OK, err.msg);
        if (st != MOE_OK || nt == 0) { nt = 2; tok[0] = 0; tok[1] = 1; }
        if (nt > 8) nt = 8;
    }
    for (size_t i = 0; i < nt; i++)
        if (tok[i] >= in->vocab_size) tok[i] = in->vocab_size - 1;
    float *logits = malloc(sizeof(float) * (size_t)(in->vocab_size > 0 ? in->vocab_size : 1));
    st = moe_infer_eval(m, tok, (int)nt, 0, logits, 0, &err);
    fz_check_err(st != MOE_OK, err.msg);
    if (st == MOE_OK) {
        int32_t next = 0;
        for (int i = 1; i < in->vocab_size; i++)
            if (logits[i] > logits[next]) next = i;
        st = moe_infer_eval(m, &next, 1, (int)nt, logits, 0, &err);
        fz_check_err(st != MOE_OK, err.msg);
    }
    free(logits);
    moe_infer_close(m);
    return 0;
}
