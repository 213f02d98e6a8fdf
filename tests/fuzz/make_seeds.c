/* make_seeds.c OUT: the seed corpora of the GGUF-shaped harnesses, written
 * by the project's own writers into OUT/<harness>/: synthetic models of
 * every architecture and several weight types (moe_synth_model), their
 * tokenizers alone and with other pre-tokenizers, a SentencePiece vocabulary,
 * the reproducers of issue #19 that are GGUF files, and a training run's
 * state.gguf and model.gguf. The text-shaped corpora (Hugging Face folders,
 * safetensors, JSON, chat) come from make_seeds.py. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz_train.h"
#include "tools/synth.h"
#include "io/gguf.h"
#include "moe_infer.h"

static const char *out_root;

static void die(const char *what, const char *msg) {
    fprintf(stderr, "make_seeds: %s: %s\n", what, msg);
    exit(1);
}

static void path_in(char *p, size_t cap, const char *harness, const char *name) {
    snprintf(p, cap, "%s/%s", out_root, harness);
    mkdir(p, 0755);
    snprintf(p, cap, "%s/%s/%s", out_root, harness, name);
}

static void put(const char *harness, const char *name, const void *data, size_t n) {
    char p[1024];
    path_in(p, sizeof p, harness, name);
    FILE *f = fopen(p, "wb");
    if (!f || fwrite(data, 1, n, f) != n || fclose(f) != 0) die(p, "cannot write");
}

static void *slurp(const char *p, size_t *n) {
    FILE *f = fopen(p, "rb");
    if (!f) die(p, "cannot read");
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    void *b = malloc(*n ? *n : 1);
    if (fread(b, 1, *n, f) != *n) die(p, "cannot read");
    fclose(f);
    return b;
}

/* The metadata of a GGUF image (no tensors), pre replaced when not NULL. */
static void *tokenizer_only(const void *buf, size_t n, const char *pre, size_t *out_n) {
    gguf_ctx *g = NULL;
    gguf_writer *w = NULL;
    moe_error err;
    void *out = NULL;
    if (gguf_open_memory(&g, buf, n, "seed", &err) || gguf_writer_create(&w, &err)) die("tokenizer", err.msg);
    for (size_t i = 0; i < gguf_n_kv(g); i++) {
        const gguf_kv *kv = gguf_kv_at(g, i);
        if (pre && !strcmp(kv->key.s, "tokenizer.ggml.pre")) continue;
        if (synth_copy_kv(w, kv, &err)) die("copy", err.msg);
    }
    if (pre && gguf_writer_set_str(w, "tokenizer.ggml.pre", pre, &err)) die("pre", err.msg);
    if (gguf_writer_write_mem(w, &out, out_n, &err)) die("write", err.msg);
    gguf_writer_free(w);
    gguf_close(g);
    return out;
}

/* A SentencePiece ("llama") vocabulary: <unk> <s> </s>, the 256 byte tokens,
 * pieces with U+2581 for spaces. */
static void spm_vocab(void) {
    static const char *const pieces[] = {"\xe2\x96\x81", "\xe2\x96\x81the", "\xe2\x96\x81" "a", "er", "in",
                                         "\xe2\x96\x81t", "he", "\xe2\x96\x81th", "on", "es", "[INST]",
                                         "[/INST]", "\xe2\x96\x81" "12", "\xc3\xa9"};
    const int n_p = (int)(sizeof pieces / sizeof pieces[0]), n = 3 + 256 + n_p;
    char **tok = malloc(sizeof(char *) * (size_t)n);
    float *scores = malloc(sizeof(float) * (size_t)n);
    int32_t *types = malloc(sizeof(int32_t) * (size_t)n);
    const char *fixed[3] = {"<unk>", "<s>", "</s>"};
    for (int i = 0; i < n; i++) {
        tok[i] = malloc(16);
        if (i < 3) { snprintf(tok[i], 16, "%s", fixed[i]); types[i] = i == 0 ? 2 : 3; scores[i] = 0; }
        else if (i < 259) { snprintf(tok[i], 16, "<0x%02X>", i - 3); types[i] = 6; scores[i] = 0; }
        else {
            snprintf(tok[i], 16, "%s", pieces[i - 259]);
            types[i] = i - 259 == 10 || i - 259 == 11 ? 4 : 1;
            scores[i] = -(float)(i - 259);
        }
    }
    gguf_writer *w = NULL;
    moe_error err;
    void *buf = NULL;
    size_t nb = 0;
    if (gguf_writer_create(&w, &err) ||
        gguf_writer_set_str(w, "general.architecture", "llama", &err) ||
        gguf_writer_set_str(w, "tokenizer.ggml.model", "llama", &err) ||
        gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)tok, (uint64_t)n, &err) ||
        gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_VT_F32, scores, (uint64_t)n, &err) ||
        gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_VT_I32, types, (uint64_t)n, &err) ||
        gguf_writer_set_u32(w, "tokenizer.ggml.unknown_token_id", 0, &err) ||
        gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1, &err) ||
        gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 2, &err) ||
        gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", 1, &err) ||
        gguf_writer_set_str(w, "tokenizer.chat_template", "[INST] {{ m }} [/INST]", &err) ||
        gguf_writer_write_mem(w, &buf, &nb, &err))
        die("spm vocab", err.msg);
    put("vocab", "spm.gguf", buf, nb);
    put("gguf", "spm.gguf", buf, nb);
    free(buf);
    gguf_writer_free(w);
    for (int i = 0; i < n; i++) free(tok[i]);
    free(tok);
    free(scores);
    free(types);
}

/* Issue #19, 6: key, string value and tensor names with terminal escape
 * sequences (ESC [ 2 J clears the screen; OSC 0 sets the window title). */
static void escapes(void) {
    gguf_writer *w = NULL;
    moe_error err;
    void *buf = NULL;
    size_t nb = 0;
    float x[4] = {1, 2, 3, 4};
    int64_t ne[1] = {4};
    const char *arr[2] = {"ok", "\x1b]0;pwned\x07"};
    if (gguf_writer_create(&w, &err) ||
        gguf_writer_set_str(w, "general.architecture", "llama", &err) ||
        gguf_writer_set_str(w, "general.name", "\x1b[2J\x1b[31mred\r\x9b", &err) ||
        gguf_writer_set_u32(w, "evil.\x1b[2J.key", 7, &err) ||
        gguf_writer_set_arr_str(w, "evil.strings", arr, 2, &err) ||
        gguf_writer_set_str(w, "evil.c1", "\xc2\x9b" "31m", &err) ||
        gguf_writer_add_tensor(w, "tensor\x1b[5m\x07.weight", 0, 1, ne, x, sizeof x, &err) ||
        gguf_writer_write_mem(w, &buf, &nb, &err))
        die("escapes", err.msg);
    put("gguf_dump", "escapes.gguf", buf, nb);
    put("gguf", "escapes.gguf", buf, nb);
    put("engine", "escapes.gguf", buf, nb);
    free(buf);
    gguf_writer_free(w);
}

static void synth(const char *arch, const char *type, int d, int with_tokenizer_seed) {
    moe_synth_config c;
    moe_synth_config_default(&c);
    c.arch = arch;
    c.wtype = type;
    c.d_model = d;
    c.n_layers = 1;
    c.d_ff = d;
    if (strcmp(arch, "llama")) { c.n_experts = 2; c.top_k = 1; }
    if (!strcmp(arch, "deepseek")) c.n_layers = 2; /* a dense first layer, then MoE */
    char name[128], p[1024];
    snprintf(name, sizeof name, "%s_%s.gguf", arch, type);
    path_in(p, sizeof p, "engine", name);
    moe_error err;
    if (moe_synth_model(p, &c, NULL, &err)) die(name, err.msg);
    size_t n;
    void *buf = slurp(p, &n);
    put("gguf", name, buf, n);
    put("gguf_dump", name, buf, n);
    if (with_tokenizer_seed) {
        size_t tn;
        void *t = tokenizer_only(buf, n, NULL, &tn);
        snprintf(name, sizeof name, "%s_tokenizer.gguf", arch);
        put("vocab", name, t, tn);
        free(t);
    }
    free(buf);
}

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: make_seeds OUT\n"); return 2; }
    out_root = argv[1];
    mkdir(out_root, 0755);
    static const char *const archs[] = {"llama", "mixtral", "qwen2moe", "qwen3moe", "olmoe",
                                        "deepseek", "granitemoe"};
    for (int i = 0; i < 7; i++) synth(archs[i], "q8_0", 32, i == 1);
    static const char *const types[] = {"f32", "f16", "bf16", "q4_0", "q4_1", "q5_0", "q5_1"};
    for (int i = 0; i < 7; i++) synth("mixtral", types[i], 32, 0);
    synth("qwen2moe", "q4_K", 256, 0);
    synth("mixtral", "q6_K", 256, 0);
    synth("olmoe", "q2_K", 256, 0);
    /* the tokenizer with every pre-tokenizer family; one with a text after it */
    char p[1024];
    path_in(p, sizeof p, "engine", "mixtral_q8_0.gguf");
    size_t n;
    void *model = slurp(p, &n);
    static const char *const pres[] = {"gpt-2", "llama3", "qwen2", "deepseek-llm", "deepseek-coder",
                                       "deepseek-v3", "starcoder", "default"};
    for (int i = 0; i < 8; i++) {
        size_t tn;
        void *t = tokenizer_only(model, n, pres[i], &tn);
        char name[64];
        snprintf(name, sizeof name, "pre_%s.gguf", pres[i]);
        put("vocab", name, t, tn);
        if (i == 1) {
            const char text[] = "\n#moe-fuzz-file#\nI'm  12345 caf\xc3\xa9\r\n\t<|im_start|>x";
            char *both = malloc(tn + sizeof text);
            memcpy(both, t, tn);
            memcpy(both + tn, text, sizeof text - 1);
            put("vocab", "pre_llama3_text.gguf", both, tn + sizeof text - 1);
            free(both);
        }
        free(t);
    }
    free(model);
    spm_vocab();
    escapes();
    /* the training checkpoint */
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/.train_run", out_root);
    moe_error err;
    if (fz_train_run(dir, &err)) die("training run", err.msg);
    snprintf(p, sizeof p, "%s/state.gguf", dir);
    void *st = slurp(p, &n);
    put("checkpoint", "state.gguf", st, n);
    free(st);
    snprintf(p, sizeof p, "%s/model.gguf", dir);
    st = slurp(p, &n);
    put("checkpoint", "model.gguf", st, n);
    put("engine", "trained_model.gguf", st, n);
    free(st);
    return 0;
}
