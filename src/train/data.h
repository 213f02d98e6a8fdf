/* data.h: the training data pipeline of `moe train` (internal): source files
 * to text, a token cache on disk, the train / validation split, and batches.
 *
 * For: turning the paths a user names into one UTF-8 text, keeping its
 * tokenization next to it so a second run skips the tokenizer, and cutting
 * the token stream into reproducible training batches and a fixed validation
 * set. Not for: tokenizing (bpe.h), generating text (corpus.h), shuffling
 * documents, or streaming corpora larger than memory.
 *
 * Token cache file (all integers little-endian):
 *   offset  size  field
 *        0     8  magic "MOETOK1\0"
 *        8     4  version (u32) = DATA_CACHE_VERSION
 *       12     4  vocab_size (u32): the tokenizer's vocabulary size
 *       16     8  n_tokens (u64)
 *       24     8  tokenizer fingerprint (u64): a hash of the tokenizer
 *       32     8  source fingerprint (u64): data_fingerprint of the text
 *       40  4*n   tokens (i32), each in [0, vocab_size)
 *   40+4n     8  checksum (u64): data_fingerprint of bytes [0, 40 + 4n), the
 *                 header and the tokens
 * The file length must be exactly 48 + 4 * n_tokens. Written atomically
 * (core/atomic_file.h): a reader sees the old cache or the new one.
 *
 * Ownership: buffers returned through uint8_t ** / int32_t ** are malloc'd
 * and the caller frees them. data_split and data_loader point into the
 * caller's token array, which must outlive them. No global state; nothing
 * here prints or exits.
 */
#ifndef MOE_TRAIN_DATA_H
#define MOE_TRAIN_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "moe.h"

#define DATA_MAX_BYTES ((uint64_t)1 << 32) /* largest source text: 4 GiB */
#define DATA_CACHE_MAGIC "MOETOK1"         /* 8 bytes with its NUL */
#define DATA_CACHE_VERSION 1u
#define DATA_CACHE_HEADER 40               /* bytes before the tokens */

/* ------------------------------------------------------------ sources */

/* Reads the sources named by paths[0, n_paths) into one text.
 * Each path is a regular file or a folder. A folder contributes every regular
 * file below it, recursively, in strcmp order of the full path; names that
 * start with "." (hidden files and folders) are skipped, symbolic links to
 * folders are not followed (no cycles), and empty files are skipped. The
 * files' contents are joined with "\n\n" in the order of paths (then of the
 * folder's sorted listing). *text is malloc'd and NUL-terminated (the NUL is
 * not counted in *n).
 * Errors, each message naming the path: no paths (MOE_ERR_ARG); a missing or
 * unreadable path, a read failure (MOE_ERR_IO); a path that is neither file
 * nor folder, a named file that is empty ("data file X is empty"), a file that
 * is binary: a NUL byte, or bytes that are not valid UTF-8 (overlong forms,
 * surrogates and code points above U+10FFFF count as invalid), with the byte
 * offset of the first bad byte, a folder with no usable files, a total above
 * DATA_MAX_BYTES (MOE_ERR_FORMAT); out of memory. On failure *text is NULL
 * and *n is 0. */
moe_status data_read_sources(uint8_t **text, size_t *n, const char *const *paths,
                             int n_paths, moe_error *err);

/* Checks that p[0, n) is UTF-8 text without NUL bytes. Returns 1 when it is;
 * else 0 with *bad_off the offset of the first bad byte and *is_nul set when
 * that byte is a NUL. */
int data_check_text(const uint8_t *p, size_t n, size_t *bad_off, int *is_nul);

/* A 64-bit content hash of p[0, n) (src/core/hash.h). */
uint64_t data_fingerprint(const uint8_t *p, size_t n);

/* ------------------------------------------------------------ token cache */

/* Writes tokens[0, n) with their header to path, atomically.
 * Errors: NULL path or tokens with n > 0, vocab 0, a token outside
 * [0, vocab) (MOE_ERR_ARG); write failures (MOE_ERR_IO, path named). */
moe_status data_cache_write(const char *path, const int32_t *tokens, size_t n,
                            uint32_t vocab, uint64_t tok_fp, uint64_t src_fp,
                            moe_error *err);

/* Reads a cache written for (vocab, tok_fp, src_fp). On success *tokens is
 * malloc'd (never NULL, even when *n is 0). Every size is checked against the
 * file length before anything is read into memory. Returns:
 *   MOE_ERR_IO      the file is absent (the message says "ENOENT"; the caller
 *                   then tokenizes and writes the cache) or cannot be read;
 *   MOE_ERR_FORMAT  not a cache or a damaged one: wrong magic or version, a
 *                   length that disagrees with n_tokens, a checksum mismatch,
 *                   a token outside [0, vocab);
 *   MOE_ERR_ARG     a sound cache for other data or another tokenizer: the
 *                   vocabulary size or a fingerprint differs ("cache is for
 *                   other data/tokenizer"); the caller re-tokenizes;
 *   MOE_ERR_NOMEM.
 * On failure *tokens is NULL and *n is 0. */
moe_status data_cache_read(const char *path, int32_t **tokens, size_t *n,
                           uint32_t vocab, uint64_t tok_fp, uint64_t src_fp,
                           moe_error *err);

/* ------------------------------------------------------------ split, batches */

/* A contiguous run of tokens (not owned). */
typedef struct data_split {
    const int32_t *tokens; /* [n] */
    size_t n;
} data_split;

/* Validation = the last floor(n * val_fraction) tokens, training = the rest
 * (both contiguous, so no window spans the two). val_fraction in [0, 1);
 * 0 gives an empty validation split (no validation). B, T >= 1.
 * Errors: bad arguments (MOE_ERR_ARG); a training part shorter than one batch
 * (B * T + 1 tokens: "corpus of N tokens is smaller than one batch ...") or a
 * non-empty validation part shorter than one window (T + 1 tokens)
 * (MOE_ERR_SHAPE). */
moe_status data_split_tokens(const int32_t *tokens, size_t n, float val_fraction,
                             int T, int B, data_split *train, data_split *val,
                             moe_error *err);

/* Random training batches. All of its state is rng (with the split, B, T
 * given again at init): data_loader_state / data_loader_set_state save and
 * restore the position of the stream exactly. */
typedef struct data_loader {
    data_split s; /* the tokens drawn from, s.n >= T + 1 */
    int B, T;     /* batch size, context length */
    uint64_t rng; /* splitmix64 state: the whole mutable state */
} data_loader;

/* Sets up L over s (s.n >= T + 1, as data_split_tokens guarantees). */
void data_loader_init(data_loader *L, data_split s, int B, int T, uint64_t seed);

/* Fills x, y [B, T] with B windows at offsets drawn uniformly from
 * [0, s.n - T - 1] (one 64-bit draw each): x[b] = tokens[o, o + T),
 * y[b] = tokens[o + 1, o + T + 1). Deterministic from the state. */
void data_loader_next(data_loader *L, int32_t *x, int32_t *y);

uint64_t data_loader_state(const data_loader *L);
void data_loader_set_state(data_loader *L, uint64_t state);

/* Validation windows are fixed: window w takes x = tokens[w T, w T + T) and
 * y = tokens[w T + 1, w T + T + 1), for w in [0, W) with W = (n - 1) / T
 * (targets never overlap; the tail of fewer than T + 1 tokens is unused).
 * Batch i holds windows i B .. i B + B - 1, taken modulo W: the last batch
 * wraps around to the first windows, so every window counts at least once and
 * at most B - 1 windows count twice. data_val_batches = ceil(W / B), 0 when
 * the split is shorter than T + 1 tokens. */
int data_val_batches(data_split val, int B, int T);
void data_val_batch(data_split val, int i, int B, int T, int32_t *x, int32_t *y);

/* Entropy of the unigram distribution of tokens[0, n) in bits per token:
 * -sum p log2 p over the ids in [0, vocab) (ids outside are ignored). A model
 * that learns nothing beyond token frequencies reaches a cross-entropy of
 * this many bits (times ln 2 in nats). NaN when there are no tokens in range,
 * vocab < 1, or out of memory. */
double data_unigram_entropy_bits(const int32_t *tokens, size_t n, int vocab);

#endif /* MOE_TRAIN_DATA_H */
