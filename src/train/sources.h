/* sources.h: the files a user names for `moe train --data` to one text
 * (internal): folder walks, links read once, compressed files, and what to
 * do with files that are not text.
 *
 * For: turning paths into one byte string and a table of which bytes came
 * from which file (the validation split takes a share of each). Not for:
 * tokenizing (bpe.h), the token cache or batches (data.h).
 *
 * Rules:
 * - Each path is a regular file or a folder. A folder contributes every
 *   regular file below it, recursively, in strcmp order of the full path;
 *   names that start with "." (hidden files and folders) are skipped,
 *   symbolic links to folders are not followed (no cycles), symbolic links
 *   to files are, and empty files are skipped.
 * - A file is read once however many names reach it (symbolic links, hard
 *   links, a folder named twice): files are told apart by (device, inode),
 *   and the first name in reading order is the one kept; a note says so.
 * - Compressed files (gzip, xz, zstd; told by their first bytes, whatever
 *   their name) are read through zlib / liblzma / libzstd.
 * - The contents are joined with "\n\n" in the order of paths (then of the
 *   folder's sorted listing).
 * - A "bad" file is one that cannot be opened or read, a compressed file that
 *   is damaged or truncated, or a binary file: a NUL byte, or bytes that are
 *   not UTF-8 (overlong forms, surrogates and code points above U+10FFFF
 *   count as invalid). Without skip_bad, the first bad file is an error
 *   naming it, the reason, and that --skip-bad skips such files; with
 *   skip_bad, it is skipped with a warning.
 * - A text file that ends in the middle of a UTF-8 character (the last 1-3
 *   bytes are a valid but incomplete sequence) is read, bytes kept, with a
 *   warning.
 * Nothing here prints or exits: warnings and notes are lines of text in
 * data_sources.notes for the caller to show.
 */
#ifndef MOE_TRAIN_SOURCES_H
#define MOE_TRAIN_SOURCES_H

#include <stddef.h>
#include <stdint.h>

#include "moe.h"

#define DATA_NOTES_MAX_LINES 20 /* notes kept in full; more are counted */

/* One file that was read. */
typedef struct data_source {
    char *path;     /* owned: the name it was read under */
    size_t off;     /* first byte of its text in the joined text */
    size_t len;     /* its bytes, plus the "\n\n" after it unless it is last */
} data_source;

/* What data_read_sources read, and what it has to say about it. */
typedef struct data_sources {
    data_source *v;      /* [n] in text order */
    size_t n, cap;
    char *notes;         /* lines "warning: ..." / "note: ...", each ending
                            in '\n'; NUL-terminated; NULL when none */
    size_t notes_len, notes_cap;
    int n_notes;         /* lines produced (kept or not) */
    int n_skipped;       /* bad files skipped (skip_bad) */
    int n_same;          /* names that reached a file already read */
    int n_partial_utf8;  /* files read with an incomplete last character */
    int n_compressed;    /* compressed files read */
} data_sources;

void data_sources_free(data_sources *s);

/* Reads the sources named by paths[0, n_paths) into one text (the rules
 * above). *text is malloc'd and NUL-terminated (the NUL is not counted in
 * *n). src (may be NULL) gets the table of files and the notes; free it with
 * data_sources_free, on failure too.
 * Errors, each message naming the path: no paths (MOE_ERR_ARG); a missing
 * path, or a bad file without skip_bad (MOE_ERR_IO when it cannot be read,
 * MOE_ERR_FORMAT when binary or damaged); a path that is neither file nor
 * folder, a named file that is empty ("data file X is empty"), a folder with
 * no usable files, every file skipped, a total above DATA_MAX_BYTES
 * (MOE_ERR_FORMAT); out of memory. On failure *text is NULL and *n is 0. */
moe_status data_read_sources(uint8_t **text, size_t *n, data_sources *src, const char *const *paths,
                             int n_paths, int skip_bad, moe_error *err);

#endif /* MOE_TRAIN_SOURCES_H */
