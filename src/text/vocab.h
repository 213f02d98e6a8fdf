/* vocab.h: what a moe_vocab is, and the pieces of the tokenizer that the
 * files of src/infer share (internal).
 *
 * For: building a vocabulary from an open GGUF file (the engine calls
 * vocab_from_gguf on the file it has mapped), the token text map, and the two
 * encoders behind moe_vocab_encode: SentencePiece-style "llama" vocabularies
 * (spm.c) and byte-level BPE "gpt2" vocabularies (bpe_gguf.c, with the
 * pre-tokenizers of pretok.c). Not for: reading files (io/gguf.c), chat
 * templates (chat.c), sampling (sampler.c).
 *
 * Encoding follows llama.cpp's llama-vocab.cpp, the reference that GGUF files
 * are converted for:
 *   1. special tokens: the text of every user-defined token (type 4), and of
 *      every control token (type 3) when parse_special, is cut out of the
 *      input, longest token text first (each token: every occurrence, left to
 *      right, that lies wholly in text no earlier token took);
 *   2. each remaining piece of text is encoded on its own: SPM replaces
 *      spaces by U+2581, with one prepended when add_space_prefix and the
 *      piece starts the text or follows a special token, then merges the
 *      adjacent pair whose concatenation is the token of highest score
 *      (ties: leftmost) until none is a token; a character that is no token
 *      becomes its bytes' <0xNN> tokens (else the unknown token). BPE splits
 *      the piece with the .pre pattern, then in each chunk merges from single
 *      bytes the pair of lowest merge rank (ties: leftmost); with
 *      ignore_merges (llama3) a chunk that is a whole token is that token.
 * Pieces (moe_vocab_piece): normal SPM tokens with U+2581 as spaces, <0xNN>
 * tokens as their byte, normal BPE tokens through GPT-2's byte map, user-
 * defined tokens as their text; control, unknown and unused tokens give their
 * text only with_special.
 */
#ifndef MOE_TEXT_VOCAB_H
#define MOE_TEXT_VOCAB_H

#include <stddef.h>
#include <stdint.h>

#include "text/bpe_merge.h"
#include "core/idmap.h"
#include "text/pretok.h"
#include "io/gguf.h"
#include "moe_infer.h"

typedef enum vocab_kind { VOCAB_SPM = 0, VOCAB_BPE = 1 } vocab_kind;

/* tokenizer.ggml.token_type values. */
enum {
    VOCAB_T_NORMAL = 1,
    VOCAB_T_UNKNOWN = 2,
    VOCAB_T_CONTROL = 3,
    VOCAB_T_USER = 4,
    VOCAB_T_UNUSED = 5,
    VOCAB_T_BYTE = 6
};

struct moe_vocab {
    vocab_kind kind;
    pretok_kind pre;          /* BPE only */
    int32_t n_tokens;
    int32_t bos, eos, eot, eom, unk; /* -1 when none */
    int add_bos;              /* tokenizer.ggml.add_bos_token or the family's default */
    int add_space_prefix;     /* SPM: tokenizer.ggml.add_space_prefix (default 1) */
    int ignore_merges;        /* BPE: llama3-style vocabularies */
    uint8_t *type;            /* [n_tokens] VOCAB_T_* */
    float *score;             /* [n_tokens] SPM merge priority (0 without .scores) */
    uint8_t *eog;             /* [n_tokens] 1 if the token ends generation */
    char *text;               /* every token's text as in the file, each NUL-terminated */
    size_t *text_off;         /* [n_tokens + 1]; token i is text[off[i], off[i+1] - 1) */
    char *piece;              /* the bytes each token contributes, each NUL-terminated */
    size_t *piece_off;        /* [n_tokens + 1], as text_off */
    moe_idmap map;            /* text -> id */
    int32_t byte_tok[256];    /* SPM: the <0xNN> token of each byte; BPE: the token
                                 spelling the byte in GPT-2's map; -1 when none */
    int32_t *special;         /* [n_special] user-defined and control tokens,
                                 longest text first (ties: lower id) */
    size_t n_special;
    bpe_pairs pairs;          /* BPE merges: (left, right) -> rank and result */
    size_t n_merges;          /* merges read (some may be skipped: n_merges_skipped) */
    size_t n_merges_skipped;  /* merges naming or making text that is no token */
};

/* Builds *out from the tokenizer.ggml.* keys of g (which may be closed
 * afterwards: everything is copied). Errors (MOE_ERR_FORMAT unless said):
 * no tokenizer.ggml.model; a model other than "llama" or "gpt2", or a .pre
 * this code does not know (MOE_ERR_UNSUPPORTED); tokens missing or empty;
 * .scores / .token_type of another length or element type; a token type
 * outside 1..6; a special token id (bos, eos, eot, eom, unknown) out of range;
 * add_bos_token / add_space_prefix not bool; a "gpt2" model without merges;
 * out of memory (MOE_ERR_NOMEM). On failure *out is NULL. */
moe_status vocab_from_gguf(moe_vocab **out, const gguf_ctx *g, moe_error *err);

/* The id of the token whose file text is s[0, n), or -1. */
int32_t vocab_find(const moe_vocab *v, const char *s, size_t n);

/* The text of token id as in the file (NUL-terminated); *len its length. */
static inline const char *vocab_text(const moe_vocab *v, int32_t id, size_t *len) {
    if (len) *len = v->text_off[id + 1] - v->text_off[id] - 1;
    return v->text + v->text_off[id];
}

/* Concatenates the pieces of ids[0, n) (see moe_vocab_piece) into out (at
 * most cap bytes, NUL-terminated when cap > 0); *len gets the full length.
 * For SPM with add_space_prefix, one leading space of the first token's piece
 * is dropped (the space that encoding prepended), as llama.cpp does. Errors:
 * an id out of range (MOE_ERR_ARG), more than cap - 1 bytes (MOE_ERR_SHAPE). */
moe_status vocab_decode(const moe_vocab *v, const int32_t *ids, size_t n, int with_special,
                        char *out, size_t cap, size_t *len, moe_error *err);

/* ------------------------------------------------------------ encoders */

/* Token ids being written: ids beyond cap are counted, not stored. */
typedef struct vocab_out {
    int32_t *ids;
    size_t cap, n;
} vocab_out;

static inline void vocab_push(vocab_out *o, int32_t id) {
    if (o->n < o->cap) o->ids[o->n] = id;
    o->n++;
}

/* spm.c: SentencePiece-style encoding of text[0, n) (no special tokens in
 * it), with a U+2581 prepended when prefix_space. */
moe_status spm_encode(const moe_vocab *v, const char *text, size_t n, int prefix_space,
                      vocab_out *o, moe_error *err);

/* bpe_gguf.c: fills v->byte_tok and the merge table from
 * tokenizer.ggml.merges (merges[0, n_merges), "left right" strings). Merges
 * whose parts or result are not tokens are skipped and counted. */
moe_status bpe_gguf_init(moe_vocab *v, const gguf_str *merges, size_t n_merges, moe_error *err);

/* bpe_gguf.c: byte-level BPE encoding of text[0, n) (no special tokens). */
moe_status bpe_gguf_encode(const moe_vocab *v, const char *text, size_t n, vocab_out *o,
                           moe_error *err);

#endif
