/* tokenizer.c: the public moe_tokenizer, a thin owner of the byte-level BPE
 * of bpe.h (train, encode, decode). Not for: GGUF reading and writing of the
 * vocabulary (src/model/model_file.c) or other tokenizer families (vocab.c, spm.c, bpe_gguf.c). */
#include "text/tokenizer.h"
#include "core/error.h"

#include <stdlib.h>

moe_status moe_tokenizer_train(moe_tokenizer **out, const char *text, size_t n, int vocab_size,
                               moe_error *err) {
    if (!out) return moe_err(err, MOE_ERR_ARG, "moe_tokenizer_train: out is NULL");
    *out = NULL;
    if (!text && n > 0) return moe_err(err, MOE_ERR_ARG, "moe_tokenizer_train: text is NULL with n = %zu", n);
    moe_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return moe_err(err, MOE_ERR_NOMEM, "tokenizer: out of memory");
    moe_status st = bpe_train(&t->bpe, (const uint8_t *)text, n, vocab_size, err);
    if (st != MOE_OK) { free(t); return st; }
    *out = t;
    return MOE_OK;
}

void moe_tokenizer_free(moe_tokenizer *t) {
    if (!t) return;
    bpe_free(&t->bpe);
    free(t);
}

int moe_tokenizer_n_vocab(const moe_tokenizer *t) { return t->bpe.n_vocab; }
int moe_tokenizer_bos(const moe_tokenizer *t) { return t->bpe.bos_id; }
int moe_tokenizer_eos(const moe_tokenizer *t) { return t->bpe.eos_id; }

moe_status moe_tokenizer_encode(const moe_tokenizer *t, const char *text, size_t n, int32_t *out,
                                size_t cap, size_t *n_out, moe_error *err) {
    if (!t) return moe_err(err, MOE_ERR_ARG, "moe_tokenizer_encode: tokenizer is NULL");
    if (out && moe_overlap(out, cap * sizeof *out, text, n))
        return moe_err(err, MOE_ERR_ARG, "moe_tokenizer_encode: out overlaps text");
    return bpe_encode(&t->bpe, (const uint8_t *)text, n, out, cap, n_out, err);
}

moe_status moe_tokenizer_decode(const moe_tokenizer *t, const int32_t *ids, size_t n, char *out,
                                size_t cap, size_t *n_out, moe_error *err) {
    if (!t) return moe_err(err, MOE_ERR_ARG, "moe_tokenizer_decode: tokenizer is NULL");
    if (out && moe_overlap(out, cap, ids, n * sizeof *ids))
        return moe_err(err, MOE_ERR_ARG, "moe_tokenizer_decode: out overlaps ids");
    return bpe_decode(&t->bpe, ids, n, 0, (uint8_t *)out, cap, n_out, err);
}
