/* fuzz_chat.c: chat templates: the choice of a template from a GGUF file's
 * tokenizer.chat_template and architecture (moe_chat_template_for), and
 * moe_chat_render of any messages into buffers of any size.
 * Input: byte 0 picks the architecture written, byte 1 the buffer size;
 * then, up to FZ_SEP, the tokenizer.chat_template text (none if empty);
 * after it, the messages: role and content strings cut at NUL bytes.
 * The rendered text must be NUL-terminated within cap and its length the
 * same at every cap. */
#include "fuzz_util.h"
#include "io/gguf.h"
#include "moe_infer.h"

static const char *const k_archs[] = {"llama", "mixtral", "qwen2moe", "deepseek", "deepseek2",
                                      "granitemoe", "olmoe", "phimoe", "gpt2", ""};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    const char *arch = k_archs[data[0] % (sizeof k_archs / sizeof k_archs[0])];
    const size_t cap = (size_t)data[1] * 4;
    const uint8_t *part[2];
    size_t len[2];
    const int np = fz_split(data + 2, size - 2, FZ_SEP, 2, part, len);
    /* the GGUF file: architecture, tokenizer model, chat template */
    gguf_writer *w = NULL;
    moe_error err;
    char path[512];
    snprintf(path, sizeof path, "%s/chat.gguf", fz_dir());
    fz_own("chat.gguf");
    if (gguf_writer_create(&w, &err) != MOE_OK) return 0;
    int ok = gguf_writer_set_str(w, "general.architecture", arch, &err) == MOE_OK &&
             gguf_writer_set_str(w, "tokenizer.ggml.model", (data[0] & 0x80) ? "gpt2" : "llama", &err) == MOE_OK;
    if (ok && len[0] > 0)
        ok = gguf_writer_set_strn(w, "tokenizer.chat_template", (const char *)part[0], len[0], &err) == MOE_OK;
    if (ok) ok = gguf_writer_write(w, path, &err) == MOE_OK;
    gguf_writer_free(w);
    const char *tmpl = ok ? moe_chat_template_for(path) : "chatml";
    if (!tmpl) abort();
    for (const char *p = tmpl; *p; p++)
        if (*p < 'a' || *p > 'z') { if (*p < '0' || *p > '9') abort(); } /* a name of ours */
    /* the messages */
    moe_chat_msg msgs[16];
    int n = 0;
    char *text = NULL;
    if (np == 2) {
        text = malloc(len[1] + 1);
        memcpy(text, part[1], len[1]);
        text[len[1]] = '\0';
        char *p = text, *end = text + len[1];
        while (p < end && n < 16) {
            msgs[n].role = p;
            p += strlen(p) + 1;
            msgs[n].content = p < end ? p : "";
            if (p < end) p += strlen(p) + 1;
            n++;
        }
    }
    char *out = malloc(cap ? cap : 1);
    size_t got = 0, full = 0;
    moe_status st = moe_chat_render(tmpl, msgs, n, data[0] & 1, out, cap, &got, &err);
    fz_check_err(st != MOE_OK, err.msg);
    if (cap > 0 && strlen(out) >= cap) abort();
    /* the full length does not depend on cap */
    char *big = malloc(got + 1);
    st = moe_chat_render(tmpl, msgs, n, data[0] & 1, big, got + 1, &full, &err);
    if (st != MOE_OK || full != got || strlen(big) > full) abort();
    if (cap > 0 && memcmp(out, big, strlen(out))) abort();
    free(big);
    free(out);
    free(text);
    return 0;
}
