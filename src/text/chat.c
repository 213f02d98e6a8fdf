/* chat.c: chat templates: picking one for a GGUF file and rendering a
 * conversation as the text the model was tuned on.
 * Not for: Jinja (tokenizer.chat_template is only read for distinctive
 * substrings, as llama.cpp's llm_chat_detect_template does), tokenizing the
 * result (moe_vocab_encode with parse_special = 1 does that; the BOS token is
 * left to add_bos, never written here).
 *
 * The templates (C = content, R = role; the assistant turn opened when
 * add_assistant is the last part of each line):
 *   chatml    <|im_start|>R\nC<|im_end|>\n ... <|im_start|>assistant\n
 *             (Qwen-MoE, Qwen3-MoE and most fine-tunes)
 *   mistral   [INST] S\n\nC [/INST]C</s>[INST] C [/INST] ...  (Mixtral; the
 *             system message S goes before the first user message)
 *   llama3    <|start_header_id|>R<|end_header_id|>\n\nC'<|eot_id|> ...
 *             <|start_header_id|>assistant<|end_header_id|>\n\n  (C' trimmed)
 *   deepseek  S\n\nUser: C\n\nAssistant: C<｜end▁of▁sentence｜>User: ... Assistant:
 *             (DeepSeek-MoE and DeepSeek-V2 chat)
 *   deepseek3 S\n\n<｜User｜>C<｜Assistant｜>C<｜end▁of▁sentence｜> ... <｜Assistant｜>
 *   granite   <|start_of_role|>R<|end_of_role|>C<|end_of_text|>\n ...
 *             <|start_of_role|>assistant<|end_of_role|>\n  (Granite-MoE)
 *   phi3      <|R|>\nC<|end|>\n ... <|assistant|>\n  (Phi-3.5-MoE)
 *   tulu      <|R|>\nC\n ... assistant turns C<|endoftext|>\n ... <|assistant|>\n
 *             (OLMoE-Instruct)
 */
#include <stdio.h>
#include <string.h>

#include "core/error.h"
#include "io/gguf.h"
#include "moe_infer.h"

#define DS_EOS "<\xEF\xBD\x9C" "end\xE2\x96\x81" "of\xE2\x96\x81" "sentence\xEF\xBD\x9C>"
#define DS_USER "<\xEF\xBD\x9C" "User\xEF\xBD\x9C>"
#define DS_ASSISTANT "<\xEF\xBD\x9C" "Assistant\xEF\xBD\x9C>"

/* ------------------------------------------------------------ detection */

static int has(const char *s, const char *needle) { return strstr(s, needle) != NULL; }

/* The template for a tokenizer.chat_template text, or NULL if none fits. */
static const char *detect(const char *t) {
    if (has(t, "<|im_start|>")) return "chatml";
    if (has(t, "<|start_header_id|>") && has(t, "<|end_header_id|>")) return "llama3";
    if (has(t, "<|start_of_role|>")) return "granite";
    if (has(t, DS_ASSISTANT) && has(t, DS_USER)) return "deepseek3";
    if (has(t, "'Assistant: ' + message['content'] + eos_token") ||
        (has(t, "'User: '") && has(t, "'Assistant:'")))
        return "deepseek";
    if (has(t, "[INST]")) return "mistral";
    if (has(t, "<|assistant|>") && has(t, "<|end|>")) return "phi3";
    if (has(t, "<|assistant|>") && has(t, "<|user|>")) return "tulu";
    return NULL;
}

const char *moe_chat_template_for(const char *gguf_path) {
    gguf_ctx *g;
    const char *tmpl = NULL, *s;
    if (!gguf_path || gguf_open_file(&g, gguf_path, NULL) != MOE_OK) return "chatml";
    if (gguf_get_str(g, "tokenizer.chat_template", &s, NULL, NULL) == MOE_OK) tmpl = detect(s);
    if (!tmpl && gguf_get_str(g, "general.architecture", &s, NULL, NULL) == MOE_OK) {
        const char *model = "";
        gguf_get_str(g, "tokenizer.ggml.model", &model, NULL, NULL);
        if (!strcmp(s, "llama")) tmpl = strcmp(model, "gpt2") ? "mistral" : "llama3";
        else if (!strcmp(s, "deepseek") || !strcmp(s, "deepseek2")) tmpl = "deepseek";
        else if (!strcmp(s, "granite") || !strcmp(s, "granitemoe")) tmpl = "granite";
        else if (!strcmp(s, "olmoe")) tmpl = "tulu";
        else if (!strcmp(s, "phimoe") || !strcmp(s, "phi3")) tmpl = "phi3";
    }
    gguf_close(g);
    return tmpl ? tmpl : "chatml";
}

/* ------------------------------------------------------------ rendering */

/* The text being written: bytes beyond cap - 1 are counted, not stored. */
typedef struct sbuf {
    char *p;
    size_t cap, n;
} sbuf;

static void put_n(sbuf *b, const char *s, size_t n) {
    if (b->n + 1 < b->cap) {
        size_t room = b->cap - 1 - b->n;
        memcpy(b->p + b->n, s, n < room ? n : room);
    }
    b->n += n;
}
static void put(sbuf *b, const char *s) { put_n(b, s, strlen(s)); }

/* s without leading and trailing ASCII whitespace. */
static void put_trimmed(sbuf *b, const char *s) {
    size_t n = strlen(s);
    while (n > 0 && (*s == ' ' || (*s >= '\t' && *s <= '\r'))) { s++; n--; }
    while (n > 0 && (s[n - 1] == ' ' || (s[n - 1] >= '\t' && s[n - 1] <= '\r'))) n--;
    put_n(b, s, n);
}

static int is_role(const moe_chat_msg *m, const char *r) { return !strcmp(m->role, r); }

static void render(const char *tmpl, const moe_chat_msg *msgs, int n, int add_assistant, sbuf *b) {
    if (!strcmp(tmpl, "chatml")) {
        for (int i = 0; i < n; i++) {
            put(b, "<|im_start|>"); put(b, msgs[i].role); put(b, "\n");
            put(b, msgs[i].content); put(b, "<|im_end|>\n");
        }
        if (add_assistant) put(b, "<|im_start|>assistant\n");
    } else if (!strcmp(tmpl, "mistral")) {
        const char *sys = NULL;
        int first_user = 1;
        for (int i = 0; i < n; i++) {
            if (is_role(&msgs[i], "system")) { sys = msgs[i].content; continue; }
            if (is_role(&msgs[i], "user")) {
                put(b, "[INST] ");
                if (sys && first_user) { put(b, sys); put(b, "\n\n"); }
                first_user = 0;
                put(b, msgs[i].content); put(b, " [/INST]");
            } else {
                put(b, msgs[i].content); put(b, "</s>");
            }
        }
        if (sys && first_user) { put(b, "[INST] "); put(b, sys); put(b, " [/INST]"); }
    } else if (!strcmp(tmpl, "llama3")) {
        for (int i = 0; i < n; i++) {
            put(b, "<|start_header_id|>"); put(b, msgs[i].role); put(b, "<|end_header_id|>\n\n");
            put_trimmed(b, msgs[i].content); put(b, "<|eot_id|>");
        }
        if (add_assistant) put(b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
    } else if (!strcmp(tmpl, "deepseek")) {
        for (int i = 0; i < n; i++) {
            if (is_role(&msgs[i], "system")) { put(b, msgs[i].content); put(b, "\n\n"); }
            else if (is_role(&msgs[i], "user")) { put(b, "User: "); put(b, msgs[i].content); put(b, "\n\n"); }
            else { put(b, "Assistant: "); put(b, msgs[i].content); put(b, DS_EOS); }
        }
        if (add_assistant) put(b, "Assistant:");
    } else if (!strcmp(tmpl, "deepseek3")) {
        for (int i = 0; i < n; i++) {
            if (is_role(&msgs[i], "system")) { put(b, msgs[i].content); put(b, "\n\n"); }
            else if (is_role(&msgs[i], "user")) { put(b, DS_USER); put(b, msgs[i].content); }
            else { put(b, DS_ASSISTANT); put(b, msgs[i].content); put(b, DS_EOS); }
        }
        if (add_assistant) put(b, DS_ASSISTANT);
    } else if (!strcmp(tmpl, "granite")) {
        for (int i = 0; i < n; i++) {
            put(b, "<|start_of_role|>"); put(b, msgs[i].role); put(b, "<|end_of_role|>");
            put(b, msgs[i].content); put(b, "<|end_of_text|>\n");
        }
        if (add_assistant) put(b, "<|start_of_role|>assistant<|end_of_role|>\n");
    } else if (!strcmp(tmpl, "phi3")) {
        for (int i = 0; i < n; i++) {
            put(b, "<|"); put(b, msgs[i].role); put(b, "|>\n");
            put(b, msgs[i].content); put(b, "<|end|>\n");
        }
        if (add_assistant) put(b, "<|assistant|>\n");
    } else { /* tulu */
        for (int i = 0; i < n; i++) {
            put(b, "<|"); put(b, msgs[i].role); put(b, "|>\n"); put(b, msgs[i].content);
            put(b, is_role(&msgs[i], "assistant") ? "<|endoftext|>\n" : "\n");
        }
        if (add_assistant) put(b, "<|assistant|>\n");
    }
}

moe_status moe_chat_render(const char *tmpl, const moe_chat_msg *msgs, int n,
                           int add_assistant, char *out, size_t cap,
                           size_t *len, moe_error *err) {
    static const char *const names[] = {"chatml", "mistral", "llama3", "deepseek", "deepseek3",
                                        "granite", "phi3", "tulu"};
    if (len) *len = 0;
    int known = 0;
    for (size_t i = 0; tmpl && i < sizeof names / sizeof names[0]; i++) known |= !strcmp(tmpl, names[i]);
    if (!known)
        return moe_err(err, MOE_ERR_ARG, "moe_chat_render: unknown template \"%s\" (chatml, mistral, llama3, deepseek, "
                       "deepseek3, granite, phi3, tulu)", tmpl ? tmpl : "(null)");
    if (n < 0 || (n > 0 && !msgs)) return moe_err(err, MOE_ERR_ARG, "moe_chat_render: %d messages at %p", n, (const void *)msgs);
    if (!out && cap > 0) return moe_err(err, MOE_ERR_ARG, "moe_chat_render: out is NULL with cap = %zu", cap);
    for (int i = 0; i < n; i++)
        if (!msgs[i].role || !msgs[i].content)
            return moe_err(err, MOE_ERR_ARG, "moe_chat_render: message %d has a NULL %s", i, msgs[i].role ? "content" : "role");
    sbuf b = { out, cap, 0 };
    render(tmpl, msgs, n, add_assistant, &b);
    if (cap > 0) out[b.n < cap ? b.n : cap - 1] = '\0';
    if (len) *len = b.n;
    if (b.n >= cap)
        return moe_err(err, MOE_ERR_SHAPE, "moe_chat_render: %zu bytes and a NUL do not fit in cap = %zu", b.n, cap);
    return MOE_OK;
}
