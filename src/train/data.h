/* data.h: the training data pipeline of `moe train` (internal): the token
 * cache on disk, the train / validation split, and batches (sources.h turns
 * the paths a user names into one text).
 *
 * For: keeping the tokenization of the text next to it so a second run
 * skips the tokenizer, holding out validation tokens from every source, and
 * cutting the token stream into reproducible training batches and a fixed
 * validation set. Not for: tokenizing (bpe.h), generating text (corpus.h),
 * shuffling documents, or streaming corpora larger than memory.
 *
 * Token cache file, version 2 (all integers little-endian):
 *   offset  size  field
 *        0     8  magic "MOETOK1\0"
 *        8     4  version (u32) = DATA_CACHE_VERSION
 *       12     4  vocab_size (u32): the tokenizer's vocabulary size
 *       16     8  n_tokens (u64)
 *       24     8  tokenizer fingerprint (u64): a hash of the tokenizer
 *       32     8  source fingerprint (u64): data_fingerprint of the text
 *       40     8  n_sources (u64) >= 1
 *       48  4*n   tokens (i32), each in [0, vocab_size), source after source
 *   48+4n   8*s   tokens of each source (u64), adding up to n_tokens
 *   48+4n+8s  8  checksum (u64): data_fingerprint of every byte before it
 * The file length must be exactly 56 + 4 * n_tokens + 8 * n_sources.
 * Version 1 (read, never written) has no n_sources and no table: a 40-byte
 * header, the tokens and the checksum; its run keeps the old split (the last
 * tokens held out). Written atomically (core/atomic_file.h): a reader sees
 * the old cache or the new one.
 *
 * Ownership: buffers returned through int32_t ** / uint64_t ** are malloc'd
 * and the caller frees them. data_split and data_loader point into the
 * caller's token array, which must outlive them. No global state; nothing
 * here prints or exits.
 */
#ifndef MOE_TRAIN_DATA_H
#define MOE_TRAIN_DATA_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "moe.h"

#define DATA_MAX_BYTES ((uint64_t)1 << 32) /* largest source text: 4 GiB */
#define DATA_CACHE_MAGIC "MOETOK1"         /* 8 bytes with its NUL */
#define DATA_CACHE_VERSION 2u
#define DATA_CACHE_HEADER 48               /* bytes before the tokens */
#define DATA_CACHE_HEADER_V1 40            /* the same in version 1 */
#define DATA_VAL_BLOCK ((size_t)1 << 16)   /* tokens per block of the split */

/* ------------------------------------------------------------ text */

/* Checks that p[0, n) is UTF-8 text without NUL bytes. Returns 1 when it is;
 * else 0 with *bad_off the offset of the first bad byte and *is_nul set when
 * that byte is a NUL. */
int data_check_text(const uint8_t *p, size_t n, size_t *bad_off, int *is_nul);

/* The length (1..3) of an incomplete but so far valid UTF-8 sequence at the
 * very end of p[0, n) (a file cut in the middle of a character), else 0. */
size_t data_partial_utf8_tail(const uint8_t *p, size_t n);

/* A 64-bit content hash of p[0, n) (src/core/hash.h). */
uint64_t data_fingerprint(const uint8_t *p, size_t n);

/* ------------------------------------------------------------ token cache */

/* Reads exactly n bytes from fd (fewer only at end of file), retrying on
 * EINTR; returns the bytes read, or -1 with errno set. */
ssize_t data_read_full(int fd, void *buf, size_t n);

/* Writes tokens[0, n) with their header and the table src_tokens[n_src] (the
 * tokens of each source, in order) to path, atomically.
 * Errors: NULL path or tokens with n > 0, vocab 0, no table (n_src < 1) or
 * one that does not add up to n, a token outside [0, vocab) (MOE_ERR_ARG);
 * write failures (MOE_ERR_IO, path named). */
moe_status data_cache_write(const char *path, const int32_t *tokens, size_t n, const uint64_t *src_tokens,
                            size_t n_src, uint32_t vocab, uint64_t tok_fp, uint64_t src_fp, moe_error *err);

/* Reads a cache written for (vocab, tok_fp, src_fp). On success *tokens is
 * malloc'd (never NULL, even when *n is 0) and so is *src_tokens [*n_src],
 * except for a version-1 cache: NULL and 0 (no table). Every size is checked
 * against the file length before anything is read into memory. Returns:
 *   MOE_ERR_IO      the file is absent (the message says "ENOENT"; the caller
 *                   then tokenizes and writes the cache) or cannot be read;
 *   MOE_ERR_FORMAT  not a cache or a damaged one: wrong magic or version, a
 *                   length that disagrees with n_tokens and n_sources, a
 *                   checksum mismatch, a token outside [0, vocab), a table
 *                   that does not add up;
 *   MOE_ERR_ARG     a sound cache for other data or another tokenizer: the
 *                   vocabulary size or a fingerprint differs ("cache is for
 *                   other data/tokenizer"); the caller re-tokenizes;
 *   MOE_ERR_NOMEM.
 * On failure *tokens and *src_tokens are NULL and *n, *n_src 0. */
moe_status data_cache_read(const char *path, int32_t **tokens, size_t *n, uint64_t **src_tokens, size_t *n_src,
                           uint32_t vocab, uint64_t tok_fp, uint64_t src_fp, moe_error *err);

/* ------------------------------------------------------------ split, batches */

/* A contiguous run of tokens (not owned). */
typedef struct data_split {
    const int32_t *tokens; /* [n] */
    size_t n;
} data_split;

/* The split of a version-1 cache (and the sizes every split checks):
 * validation = the last floor(n * val_fraction) tokens, training = the rest
 * (both contiguous, so no window spans the two). val_fraction in [0, 1);
 * 0 gives an empty validation split (no validation). B, T >= 1.
 * Errors: bad arguments (MOE_ERR_ARG); a training part shorter than one batch
 * (B * T + 1 tokens: "corpus of N tokens is smaller than one batch ...") or a
 * non-empty validation part shorter than one window (T + 1 tokens)
 * (MOE_ERR_SHAPE). */
moe_status data_split_tokens(const int32_t *tokens, size_t n, float val_fraction,
                             int T, int B, data_split *train, data_split *val,
                             moe_error *err);

/* Validation drawn from every source: tokens[0, n) are the sources' tokens
 * one after the other (src_tokens[n_src], adding up to n). Each source is cut
 * into blocks of at most DATA_VAL_BLOCK tokens (equal sizes within one
 * token), and the last share of each block is held out: the block that
 * spans stream positions [c0, c1) gives floor(c1 f) - floor(c0 f) tokens,
 * f = val_fraction, so the total is floor(n f) as in data_split_tokens and
 * every source of at least 1 / f tokens contributes. out[n] gets the
 * training parts in stream order, then the validation parts in stream
 * order; *train and *val point into out. val_per_src[n_src] (may be NULL)
 * gets each source's held-out tokens. Errors: those of data_split_tokens,
 * and a table that does not add up to n (MOE_ERR_ARG). */
moe_status data_split_sources(int32_t *out, const int32_t *tokens, size_t n, const uint64_t *src_tokens,
                              size_t n_src, float val_fraction, int T, int B, data_split *train, data_split *val,
                              uint64_t *val_per_src, moe_error *err);

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
 * data_val_batches = ceil(W / B) batches cover every window, 0 when the split
 * is shorter than T + 1 tokens. An evaluation of nb batches (1 <= nb <=
 * data_val_batches) fills S = nb B slots; batch i holds slots i B .. i B +
 * B - 1, and slot j takes:
 *   S >= W: window j mod W (every window counts; the last batch wraps around
 *           to the first windows, so at most B - 1 count twice);
 *   S < W:  window floor((2 j + 1) W / (2 S)), the middle of the j-th of S
 *           equal stretches: the S windows are spread evenly over the whole
 *           split (not its first S), the same ones at every evaluation. */
int data_val_batches(data_split val, int B, int T);
void data_val_batch(data_split val, int i, int nb, int B, int T, int32_t *x, int32_t *y);

/* Entropy of the unigram distribution of tokens[0, n) in bits per token:
 * -sum p log2 p over the ids in [0, vocab) (ids outside are ignored). A model
 * that learns nothing beyond token frequencies reaches a cross-entropy of
 * this many bits (times ln 2 in nats). NaN when there are no tokens in range,
 * vocab < 1, or out of memory. */
double data_unigram_entropy_bits(const int32_t *tokens, size_t n, int vocab);

#endif /* MOE_TRAIN_DATA_H */
