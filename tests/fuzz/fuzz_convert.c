/* fuzz_convert.c: Hugging Face conversion (moe_convert_hf) of any folder.
 * Input: byte 0 picks the output type; the rest is cut at FZ_SEP into
 * config.json, tokenizer.json, model.safetensors and (optional)
 * tokenizer_config.json. A conversion that succeeds must have written a
 * valid GGUF file; the engine then opens it (and may refuse it). */
#include "fuzz_util.h"
#include "io/gguf.h"
#include "moe_infer.h"

static const char *const k_types[] = {"f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0",
                                      "q5_1", "q2_k", "q3_k", "q4_k", "q5_k", "q6_k"};
static const char *const k_files[] = {"config.json", "tokenizer.json", "model.safetensors",
                                      "tokenizer_config.json"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const char *type = k_types[data[0] % (sizeof k_types / sizeof k_types[0])];
    const uint8_t *part[4];
    size_t len[4];
    const int np = fz_split(data + 1, size - 1, FZ_SEP, 4, part, len);
    char path[512], out[512];
    for (int i = 0; i < 4; i++)
        if (!fz_write(path, sizeof path, k_files[i], i < np ? part[i] : NULL, i < np ? len[i] : 0))
            return 0;
    fz_write(out, sizeof out, "out.gguf", NULL, 0);
    moe_error err;
    moe_status st = moe_convert_hf(fz_dir(), out, type, &err);
    fz_check_err(st != MOE_OK, err.msg);
    if (st != MOE_OK) return 0;
    gguf_ctx *g = NULL;
    if (gguf_open_file(&g, out, &err) != MOE_OK) {
        fprintf(stderr, "moe_convert_hf wrote a file the GGUF reader refuses: %s\n", err.msg);
        abort();
    }
    gguf_close(g);
    moe_infer_options o;
    moe_infer_options_default(&o);
    o.n_threads = 1;
    o.ctx_len = 8;
    o.max_batch = 2;
    moe_infer *m = NULL;
    st = moe_infer_open(&m, out, &o, &err);
    fz_check_err(st != MOE_OK, err.msg);
    if (st == MOE_OK) {
        int32_t tok[2] = {0, 1};
        if (moe_infer_get_info(m)->vocab_size >= 2) moe_infer_eval(m, tok, 2, 0, NULL, 0, &err);
    }
    moe_infer_close(m);
    return 0;
}
