/* pretok.h: the pre-tokenizers of byte-level BPE vocabularies (internal).
 *
 * For: cutting text into the chunks that BPE merges never cross, as named by
 * a GGUF file's tokenizer.ggml.pre, and the Unicode classes they need
 * (\p{L}, \p{N}, \p{P}, \p{S}, \p{M}, \s). Each pattern of llama.cpp's
 * llama-vocab.cpp (the same regexes as the Hugging Face tokenizer.json files)
 * is a hand-written scanner here; a pattern made of several regexes applies
 * them in turn, each splitting every chunk of the one before (matches and the
 * text between matches both become chunks, as "Isolated" splits do).
 * Not for: the merges (bpe_gguf.c), special tokens (vocab.c), SentencePiece
 * vocabularies (spm.c).
 *
 * The patterns (\s is the Unicode White_Space property; classes are those of
 * Unicode 14):
 *   PRETOK_MOE_GPT2  "gpt2": the rules of moe's own trainer, bpe_chunk_end in
 *                    text/bpe.h (so ids equal bpe_encode's)
 *   PRETOK_GPT2      's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 *   PRETOK_LLAMA3    (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
 *                     ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
 *   PRETOK_QWEN2     as LLAMA3 with \p{N} (single digits)
 *   PRETOK_DEEPSEEK_LLM  [\r\n] ; \s?[cased letters of llama.cpp's list]+ ;
 *                    \s?[!-/:-~！-／：-～‘-‟　-。]+ ; \s+$ ; [一-龥ࠀ-一가-퟿]+ ; \p{N}+
 *   PRETOK_DEEPSEEK_CODER  [\r\n] ; \s?\p{L}+ ; \s?\p{P}+ ; [一-龥ࠀ-一가-퟿]+ ; \p{N}
 *   PRETOK_DEEPSEEK3 \p{N}{1,3} ; [一-龥぀-ゟ゠-ヿ]+ ;
 *                    [ASCII punctuation][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+|
 *                     ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
 *   PRETOK_STARCODER \p{N} ; GPT2
 *   PRETOK_DEFAULT   [\p{P}\$\+<=>\^~\|]+ ; GPT2 ; \p{N}+ ; [0-9][0-9][0-9]
 *                    (llama.cpp's pattern for "default" and a missing .pre)
 * Text that is not valid UTF-8 is read one byte at a time, each invalid byte a
 * character of no class (not a letter, digit or space), so every byte string
 * is split into chunks that cover it exactly.
 */
#ifndef MOE_TEXT_PRETOK_H
#define MOE_TEXT_PRETOK_H

#include <stddef.h>
#include <stdint.h>

#include "moe.h"

typedef enum pretok_kind {
    PRETOK_MOE_GPT2 = 0,
    PRETOK_GPT2,
    PRETOK_LLAMA3,
    PRETOK_QWEN2,
    PRETOK_DEEPSEEK_LLM,
    PRETOK_DEEPSEEK_CODER,
    PRETOK_DEEPSEEK3,
    PRETOK_STARCODER,
    PRETOK_DEFAULT,
    PRETOK_COUNT
} pretok_kind;

/* Looks up a tokenizer.ggml.pre value (NULL, a missing key: DEFAULT): sets
 * *kind, and *llama3_flags to 1 for the names after which llama.cpp skips
 * merges for chunks that are whole tokens ("ignore_merges") and adds BOS by
 * default (llama3, llama-v3, llama-bpe, falcon3). Returns 0 for a name this
 * code does not know. The names are llama.cpp's (the table is in pretok.c),
 * plus "gpt2" for moe's own trainer. */
int pretok_lookup(const char *name, pretok_kind *kind, int *llama3_flags);
/* A short name of the kind ("llama3", ...), for messages. */
const char *pretok_kind_name(pretok_kind k);

/* Splits text[0, n) into chunks: ends[0, *n_chunks) get the exclusive byte
 * end of each chunk in order (the last is n; none when n == 0). ends must
 * hold n entries (chunks are never empty). Errors: out of memory, kind out of
 * range (MOE_ERR_ARG). */
moe_status pretok_split(pretok_kind kind, const uint8_t *text, size_t n,
                        size_t *ends, size_t *n_chunks, moe_error *err);

/* ------------------------------------------------------ Unicode classes */

enum {
    UNI_OTHER = 0, /* C*: controls, format, unassigned, private use */
    UNI_L = 1,     /* letters */
    UNI_M = 2,     /* marks */
    UNI_N = 3,     /* numbers */
    UNI_P = 4,     /* punctuation */
    UNI_S = 5,     /* symbols */
    UNI_Z = 6,     /* separators */
    UNI_WS = 8     /* flag: White_Space property (may be set with any class) */
};

/* The run-length table of unicode_tab.c: (first code point << 3) | class. */
extern const uint32_t uni_runs[];
extern const size_t uni_n_runs;

/* UNI_OTHER .. UNI_Z for a code point (UNI_OTHER above U+10FFFF), with
 * UNI_WS or-ed in for White_Space code points. */
uint8_t uni_class(uint32_t cp);

/* Decodes one UTF-8 character at s[0, n) (n >= 1): returns its length (1..4)
 * and sets *cp; an invalid or truncated sequence, an overlong form or a
 * surrogate gives length 1 and *cp = 0x110000 + the byte. */
size_t uni_decode(const uint8_t *s, size_t n, uint32_t *cp);

#endif
