/* tokenizer.h: what moe_tokenizer is (internal): the byte-level BPE of
 * bpe.h, owned. src/model/model_file.c reads and writes its GGUF form. */
#ifndef MOE_TEXT_TOKENIZER_H
#define MOE_TEXT_TOKENIZER_H

#include "moe.h"
#include "text/bpe.h"

struct moe_tokenizer {
    bpe_tokenizer bpe;
};

#endif
