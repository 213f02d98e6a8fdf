/* fuzz_vocab.c: tokenizers read from GGUF metadata (moe_vocab_load:
 * SentencePiece "llama" and byte-level BPE "gpt2" with its pre-tokenizer)
 * on any file. The input is the GGUF file, optionally followed by FZ_SEP
 * and a text; the fixed texts below and that one are encoded (with and
 * without special tokens and BOS), every id is turned back into its piece,
 * and the pieces of the whole vocabulary are read. */
#include "fuzz_util.h"
#include "moe_infer.h"

static const char *const k_texts[] = {
    "Hello, world! It's 2024: 3.14159 and 42 apples.",
    "  leading spaces\tand\ttabs\r\nnew lines\n\n",
    "<|im_start|>user\nhi<|im_end|>[INST] x [/INST]<s></s><|begin_of_text|>",
    "\xc3\xa9t\xc3\xa9 \xe2\x96\x81 \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e \xf0\x9f\x98\x80 \xd0\xbf\xd1\x80\xd0\xb8",
    "bad utf-8: \xff\xfe \xc3 \xe2\x82 \xf0\x9f\x98 end",
    "",
};

static void encode_decode(const moe_vocab *v, const char *text, size_t n) {
    int32_t ids[512];
    char buf[64];
    for (int mode = 0; mode < 4; mode++) {
        size_t got = 0;
        moe_error err;
        moe_status st = moe_vocab_encode(v, text, n, mode & 1, mode >> 1, ids, 512, &got, &err);
        fz_check_err(st != MOE_OK, err.msg);
        if (st != MOE_OK) continue;
        if (got > 512) abort(); /* MOE_ERR_SHAPE when more than cap */
        for (size_t i = 0; i < got; i++) {
            if (ids[i] < 0 || ids[i] >= moe_vocab_size(v)) abort();
            size_t len = 0;
            const char *p = moe_vocab_piece(v, ids[i], mode >> 1, buf, sizeof buf, &len);
            if (p && len && p[len - 1] == (char)0xAB) buf[0] = 0; /* touch every byte's end */
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *part[2];
    size_t len[2];
    const int np = fz_split(data, size, FZ_SEP, 2, part, len);
    char path[512];
    if (!fz_write(path, sizeof path, "vocab.gguf", part[0], len[0])) return 0;
    moe_vocab *v = NULL;
    moe_error err;
    moe_status st = moe_vocab_load(&v, path, &err);
    fz_check_err(st != MOE_OK, err.msg);
    if (st != MOE_OK) return 0;
    for (size_t i = 0; i < sizeof k_texts / sizeof k_texts[0]; i++)
        encode_decode(v, k_texts[i], strlen(k_texts[i]));
    if (np == 2) encode_decode(v, (const char *)part[1], len[1] < 2048 ? len[1] : 2048);
    char buf[64];
    for (int id = -1; id <= moe_vocab_size(v); id++) {
        size_t l;
        moe_vocab_piece(v, id, 1, buf, sizeof buf, &l);
        moe_vocab_is_eog(v, id);
    }
    moe_vocab_bos(v);
    moe_vocab_eos(v);
    moe_vocab_free(v);
    return 0;
}
