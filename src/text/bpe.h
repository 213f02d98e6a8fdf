/* bpe.h: the byte-level BPE tokenizer that moe trains itself (internal).
 *
 * For: training a byte-level BPE vocabulary on raw bytes, encoding any byte
 * string to token ids and back exactly, and moving the vocabulary in and out of
 * the GGUF convention of byte-level BPE files (tokenizer.ggml.model = "gpt2":
 * .tokens, .token_type, .merges, .pre) without depending on the GGUF code.
 * Not for: SentencePiece ("llama") vocabularies, reading or writing files,
 * recognising special-token text inside the input (callers add BOS/EOS ids).
 *
 * Vocabulary of a trained tokenizer (n_vocab = vocab_size):
 *   0..255                  the 256 single bytes (token id = byte value)
 *   256..256+n_merges-1     learned merges, in the order they were learned
 *   n_vocab-2, n_vocab-1    <|bos|>, <|eos|> (token_type 3, control)
 * An imported vocabulary may order its tokens any way; what the encoder needs
 * is one normal token per single byte and the merges in rank order.
 *
 * Pre-tokenization (bpe_chunk_end). Text is cut into chunks and merges never
 * cross a chunk boundary. The rules are GPT-2's pattern
 *   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * read on bytes, with two differences:
 *   - letters are A-Z, a-z and every byte >= 0x80 (so UTF-8 words stay
 *     whole); digits are 0-9; whitespace is space, \t \n \v \f \r; every other
 *     byte (punctuation, control bytes, NUL) is "other";
 *   - a digit run is at most 3 digits long (" 12345" -> " 123", "45").
 * So, at each position, first match wins:
 *   1. an apostrophe followed by s, t, m, d, re, ve or ll (lowercase);
 *   2. an optional single space (0x20) followed by: a run of letters, or 1 to 3
 *      digits, or a run of other bytes;
 *   3. a whitespace run: up to the end of the text if it ends the text;
 *      otherwise all but its last byte (that byte then starts the next chunk,
 *      where a space joins the following word), or the single byte if the run
 *      is one byte long.
 * Other GGUF readers that see .pre = "gpt2" split with Unicode classes and
 * unbounded digit runs: they produce a valid tokenization of the same text,
 * but not always the same ids as bpe_encode.
 *
 * Ownership: a bpe_tokenizer is a caller-owned struct filled by bpe_train or
 * bpe_import_gguf and emptied by bpe_free. Encoding and decoding only read it,
 * so several threads may encode with one tokenizer at once. No global mutable
 * state; the library never prints or exits.
 */
#ifndef MOE_TEXT_BPE_H
#define MOE_TEXT_BPE_H

#include <stddef.h>
#include <stdint.h>

#include "moe.h"
#include "text/bpe_merge.h"

#define BPE_N_BYTES 256          /* base vocabulary: every byte value */
#define BPE_N_SPECIAL 2          /* specials a trained tokenizer appends */
#define BPE_BOS_TEXT "<|bos|>"   /* text of the BOS token (control) */
#define BPE_EOS_TEXT "<|eos|>"   /* text of the EOS token (control) */
#define BPE_GGUF_MODEL "gpt2"    /* value for tokenizer.ggml.model */
#define BPE_GGUF_PRE "gpt2"      /* value for tokenizer.ggml.pre (closest
                                    name other readers know; see above) */

/* GGUF token types (tokenizer.ggml.token_type). */
enum {
    BPE_TOKEN_NORMAL = 1,  /* bytes, spelled with GPT-2's byte-to-unicode map */
    BPE_TOKEN_UNKNOWN = 2,
    BPE_TOKEN_CONTROL = 3, /* BOS, EOS ...: plain text, never produced by encode */
    BPE_TOKEN_USER = 4,
    BPE_TOKEN_UNUSED = 5,
    BPE_TOKEN_BYTE = 6     /* treated like NORMAL */
};

/* One merge: tokens left and right, adjacent, become token result. */
typedef struct bpe_merge {
    int32_t left;   /* token id */
    int32_t right;  /* token id */
    int32_t result; /* token id whose bytes are left's bytes then right's */
} bpe_merge;

typedef struct bpe_tokenizer {
    int32_t n_vocab;           /* number of tokens */
    int32_t n_merges;          /* number of merges; the rank of a merge is its index */
    int32_t bos_id;            /* -1 when none */
    int32_t eos_id;            /* -1 when none */
    int32_t byte_token[256];   /* the normal token of each single byte */
    bpe_merge *merges;         /* [n_merges] in rank order (lowest first) */
    int32_t *token_type;       /* [n_vocab] BPE_TOKEN_* */
    size_t *token_off;         /* [n_vocab + 1] token i is token_bytes[off[i], off[i+1]) */
    uint8_t *token_bytes;      /* raw bytes of normal tokens, text of the others */
    bpe_pairs pairs;           /* (left, right) -> merge index and result */
} bpe_tokenizer;

/* Frees what tok holds and zeroes it. Safe on a zeroed struct. */
void bpe_free(bpe_tokenizer *tok);

/* Trains on text[0, n) a vocabulary of vocab_size tokens: 256 bytes, then
 * vocab_size - 258 merges, then BOS and EOS. Each step merges the pair with
 * the highest count over all chunk occurrences; ties go to the lowest
 * (left id, right id). If the text runs out of pairs first, training stops
 * early and tok->n_vocab is smaller than asked (BOS/EOS still come last).
 * Deterministic. *tok is overwritten (it must not hold a tokenizer); on failure
 * it is left zeroed. Errors: tok NULL, vocab_size < 258 or > 2^24, text NULL
 * with n > 0 (MOE_ERR_ARG); out of memory. */
moe_status bpe_train(bpe_tokenizer *tok, const uint8_t *text, size_t n,
                     int vocab_size, moe_error *err);
/* The same, reporting merges done of those asked to fn (may be NULL). */
moe_status bpe_train_progress(bpe_tokenizer *tok, const uint8_t *text, size_t n, int vocab_size,
                              moe_progress_fn fn, void *user, moe_error *err);

/* Encodes text[0, n) (any bytes; text may be NULL when n == 0). Writes at most
 * cap ids to out and sets *n_out to the number of ids of the whole text, which
 * is never more than n (so cap = n always suffices). Returns MOE_ERR_SHAPE if
 * *n_out > cap (out then holds the first cap ids). Merges are applied by rank
 * within each chunk (lowest rank first, leftmost first), as GPT-2 does. No BOS
 * or EOS is added, and special-token text in the input is encoded as bytes. */
moe_status bpe_encode(const bpe_tokenizer *tok, const uint8_t *text, size_t n,
                      int32_t *out, size_t cap, size_t *n_out, moe_error *err);

/* Decodes ids[0, n_ids) to bytes: the concatenated bytes of normal tokens.
 * Tokens of other types (BOS, EOS, ...) give their text when with_special is
 * 1 and nothing when 0. Writes at most cap bytes, sets *n_out to the length of
 * the whole result, returns MOE_ERR_SHAPE if that is more than cap, and
 * MOE_ERR_ARG for an id outside [0, n_vocab). */
moe_status bpe_decode(const bpe_tokenizer *tok, const int32_t *ids, size_t n_ids,
                      int with_special, uint8_t *out, size_t cap, size_t *n_out,
                      moe_error *err);

/* Where the chunk that starts at text[i] ends (exclusive), i < n; see the
 * pre-tokenization rules above. */
size_t bpe_chunk_end(const uint8_t *text, size_t n, size_t i);

/* ------------------------------------------------------------ GGUF form */

/* A vocabulary in the GGUF convention. All strings are NUL-terminated UTF-8;
 * normal tokens are spelled with GPT-2's byte-to-unicode map (space -> "Ġ"
 * U+0120, newline -> "Ċ" U+010A, printable ASCII as itself), control tokens
 * as their text. Merges are "left right" in those spellings. */
typedef struct bpe_gguf_vocab {
    size_t n_tokens;      /* tokenizer.ggml.tokens has this many entries */
    char **tokens;        /* [n_tokens] tokenizer.ggml.tokens */
    int32_t *token_type;  /* [n_tokens] tokenizer.ggml.token_type */
    size_t n_merges;
    char **merges;        /* [n_merges] tokenizer.ggml.merges */
    int32_t bos_id;       /* tokenizer.ggml.bos_token_id; -1 when none */
    int32_t eos_id;       /* tokenizer.ggml.eos_token_id; -1 when none */
    char *pool_;          /* one allocation holding every string */
} bpe_gguf_vocab;

/* Fills *v (overwritten) from tok. Free it with bpe_gguf_vocab_free. */
moe_status bpe_export_gguf(const bpe_tokenizer *tok, bpe_gguf_vocab *v,
                           moe_error *err);
void bpe_gguf_vocab_free(bpe_gguf_vocab *v);

/* Builds *tok (overwritten; zeroed on failure) from GGUF arrays. tokens[i] has
 * token_len[i] bytes, or is NUL-terminated when token_len is NULL; the same for
 * merges / merge_len. token_type NULL means every token is normal. bos_id and
 * eos_id are -1 or ids in range. Checks, each failing with MOE_ERR_FORMAT and
 * a message naming the entry: a type outside 1..6; an empty token, a NUL byte,
 * or a normal token with a character outside the byte-to-unicode map; two
 * tokens with the same string; a byte without a normal single-byte token; a
 * merge that is not "left right" with one space, names an unknown or non-normal
 * token, repeats an earlier pair, or whose concatenation is not a normal token. */
moe_status bpe_import_gguf(bpe_tokenizer *tok,
                           const char *const *tokens, const size_t *token_len,
                           const int32_t *token_type, size_t n_tokens,
                           const char *const *merges, const size_t *merge_len,
                           size_t n_merges, int32_t bos_id, int32_t eos_id,
                           moe_error *err);

/* GPT-2's byte-to-unicode map: the code point that spells byte b, and the
 * reverse (-1 for a code point that spells no byte). */
uint32_t bpe_byte_to_codepoint(uint8_t b);
int bpe_codepoint_to_byte(uint32_t cp);

/* Writes GPT-2's spelling of bytes p[0, n) (the UTF-8 of each byte's code
 * point) to d, 2 * n bytes at most; returns its length. */
size_t bpe_spell(char *d, const uint8_t *p, size_t n);

#endif /* MOE_TEXT_BPE_H */
