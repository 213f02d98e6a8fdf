/* tokenizer.h: what moe_tokenizer is (internal): the byte-level BPE of
 * bpe.h, owned. checkpoint.c reads and writes its GGUF form. */
#ifndef MOE_TRAIN_TOKENIZER_H
#define MOE_TRAIN_TOKENIZER_H

#include "moe.h"
#include "train/bpe.h"

struct moe_tokenizer {
    bpe_tokenizer bpe;
};

#endif
