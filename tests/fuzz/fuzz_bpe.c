/* fuzz_bpe.c: the byte-level BPE tokenizer moe trains (src/train/bpe*):
 * trained on the input (a small vocabulary), then encode and decode must
 * give back the input exactly, as moe.h promises for any byte string. */
#include "fuzz_util.h"
#include "moe.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 4096) return 0;
    const char *text = (const char *)data;
    const int vocab = 258 + (size ? data[0] % 64 : 0); /* bytes, bos, eos, merges */
    moe_tokenizer *t = NULL;
    moe_error err;
    moe_status st = moe_tokenizer_train(&t, text, size, vocab, &err);
    fz_check_err(st != MOE_OK, err.msg);
    if (st != MOE_OK) return 0;
    int32_t *ids = malloc(sizeof(int32_t) * (size + 1));
    char *back = malloc(size + 1);
    size_t n_ids = 0, n_back = 0;
    st = moe_tokenizer_encode(t, text, size, ids, size + 1, &n_ids, &err);
    if (st != MOE_OK || n_ids > size) {
        fprintf(stderr, "encode: %s (%zu ids for %zu bytes)\n", err.msg, n_ids, size);
        abort();
    }
    for (size_t i = 0; i < n_ids; i++)
        if (ids[i] < 0 || ids[i] >= moe_tokenizer_n_vocab(t)) abort();
    st = moe_tokenizer_decode(t, ids, n_ids, back, size + 1, &n_back, &err);
    if (st != MOE_OK || n_back != size || memcmp(back, text, size)) {
        fprintf(stderr, "decode(encode(x)) != x: %zu bytes back of %zu\n", n_back, size);
        abort();
    }
    free(ids);
    free(back);
    moe_tokenizer_free(t);
    return 0;
}
