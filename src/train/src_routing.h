/* src_routing.h: where each training token came from, and the routing of the
 * held-out tokens per source (internal).
 *
 * For: the per-source routing statistics of a run (source x expert counts
 * per MoE layer on the validation text, I(source; expert)), which `moe
 * report` draws. A source is one --data path as given; a single folder
 * given alone contributes one source per entry directly inside it; the
 * built-in corpus has one source per domain. Not for: reading files
 * (data.h does; this file calls it once per source), the split or batches.
 *
 * A run directory keeps the map next to tokens.bin in `sources.txt` (text,
 * written atomically) so that a resumed run has it too:
 *   moe-sources 1 <S> <R> <n_tokens>
 *   <name of source 0>            (S lines; tabs and line ends replaced)
 *   <first token> <source>        (R runs, ascending first tokens, the first 0)
 * A missing, damaged or mismatched file gives one source "all".
 */
#ifndef MOE_TRAIN_SRC_ROUTING_H
#define MOE_TRAIN_SRC_ROUTING_H

#include <stddef.h>
#include <stdint.h>

#include "moe.h"
#include "text/bpe.h"
#include "corpus/corpus.h"
#include "train/data.h"
#include "train/sources.h"

#define SRC_MAX 64 /* more sources than this count as one ("all") */

/* The text's sources: a tag per byte of the text. */
typedef struct src_text {
    int n_src;      /* S >= 1 */
    char **names;   /* [S] owned */
    uint8_t *tag;   /* [n bytes of the text] source of each byte, owned */
} src_text;

/* Tags the bytes of the text data_read_sources read (srcs: its files, in
 * text order) by report source: the --data path each file came from, or,
 * when paths is one folder, the entry directly inside it. More than SRC_MAX
 * sources, or a file under none of the paths, give one source "all". */
moe_status src_tags_files(src_text *s, size_t n_text, const data_sources *srcs, const char *const *paths,
                          int n_paths, moe_error *err);
/* Tags the built-in corpus (corpus_generate_docs' text) by domain. */
moe_status src_tags_corpus(src_text *s, size_t n_text, const corpus_docs *docs, moe_error *err);
void src_text_free(src_text *s);

/* The source of each token. */
typedef struct src_map {
    int n_src;
    char **names;     /* [S] owned */
    int32_t *src_of;  /* [n_tokens] owned */
    size_t n_tokens;
} src_map;

/* Tags each token with the source of its first byte (tokens decode to the
 * text byte for byte: their lengths give the offsets). */
moe_status src_map_build(src_map *m, const src_text *s, size_t n_text, const bpe_tokenizer *tok,
                         const int32_t *tokens, size_t n_tokens, moe_error *err);
moe_status src_map_save(const src_map *m, const char *path, moe_error *err);
/* Reads path for n_tokens tokens; anything wrong gives one source "all"
 * (MOE_OK; only out of memory fails). */
moe_status src_map_load(src_map *m, const char *path, size_t n_tokens, moe_error *err);
void src_map_free(src_map *m);

/* Routing of the validation batches, per MoE layer and source. */
typedef struct src_routing {
    moe_eval_routing pub;   /* what moe_trainer_eval_routing returns */
    data_split val_src;     /* the source ids aligned with the validation split (owned) */
    int32_t *val_src_buf;   /* [val.n] */
    int32_t *xs, *ys;       /* [B, T] source ids of a batch */
    int *ex, *kept;         /* [B T, slots_max] */
    int *layers;            /* [M] */
    int64_t *counts;        /* [M, S, E] */
    int64_t *src_tokens;    /* [S] */
    double *mi;             /* [M] */
    int64_t *load;          /* [M, E] */
    float *max_violation;   /* [M] */
    int *dead;              /* [M] */
    int slots_max;
} src_routing;

/* Sets r up for model m (its MoE layers) and the validation split val, with
 * val_src[val.n] the source of each validation token (copied) and names[S]
 * the sources' names (not copied: they must outlive r). */
moe_status src_routing_init(src_routing *r, moe_model *m, const char *const *names, int n_src,
                            const int32_t *val_src, data_split val, int B, int T, moe_error *err);
void src_routing_begin(src_routing *r);
/* Counts the routing of the last forward of m over validation batch b of nb. */
void src_routing_add(src_routing *r, moe_model *m, int b, int nb, int B, int T);
/* Loads, max-violation, dead experts and I(source; expert) from the counts. */
void src_routing_end(src_routing *r);
void src_routing_free(src_routing *r);

/* I(S; E) in bits of a joint count table c[S, E] (0 for an empty table). */
double src_mutual_information(const int64_t *c, int S, int E);

#endif /* MOE_TRAIN_SRC_ROUTING_H */
