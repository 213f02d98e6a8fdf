/* train_opts.c: the options of `moe train` (and of the demo and the train
 * bench): one table maps each option to a field of moe_train_config, so
 * parsing, resume comparisons and the usage text agree. */
#include "cli.h"
#include "moe.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { O_INT, O_I64, O_FLOAT, O_U64, O_FLAG } opt_kind;

typedef struct train_opt {
    const char *name;
    opt_kind kind;
    size_t off;        /* in moe_train_config */
    int flag_value;    /* O_FLAG: the value stored */
    const char *help;
} train_opt;

#define TC(f) offsetof(moe_train_config, f)
static const train_opt opts[] = {
    {"--steps", O_I64, TC(steps), 0, "optimizer steps"},
    {"--batch", O_INT, TC(batch), 0, "sequences per micro-batch"},
    {"--accum", O_INT, TC(accum), 0, "micro-batches per step (gradient accumulation)"},
    {"--lr", O_FLOAT, TC(lr), 0, "peak learning rate"},
    {"--min-lr", O_FLOAT, TC(min_lr), 0, "final learning rate of the cosine"},
    {"--warmup", O_I64, TC(warmup), 0, "warmup steps"},
    {"--wd", O_FLOAT, TC(adamw.weight_decay), 0, "AdamW weight decay (matrices only)"},
    {"--clip", O_FLOAT, TC(adamw.grad_clip), 0, "gradient clipping norm (0: off)"},
    {"--beta2", O_FLOAT, TC(adamw.beta2), 0, "AdamW beta2"},
    {"--seed", O_U64, TC(seed), 0, "seed of init, data order and routing noise"},
    {"--eval-every", O_I64, TC(eval_every), 0, "steps between validation losses"},
    {"--eval-batches", O_INT, TC(eval_batches), 0, "validation batches (0: all)"},
    {"--save-every", O_I64, TC(save_every), 0, "steps between checkpoints (0: at the end)"},
    {"--val-fraction", O_FLOAT, TC(val_fraction), 0, "share of tokens held out"},
    {"--corpus-bytes", O_I64, TC(corpus_bytes), 0, "size of the built-in corpus"},
    {"--skip-bad", O_FLAG, TC(skip_bad), 1, "skip unreadable, binary or damaged data files with a warning"},
    {"--vocab", O_INT, TC(model.vocab_size), 0, "tokenizer vocabulary size"},
    {"--d", O_INT, TC(model.d_model), 0, "model width"},
    {"--layers", O_INT, TC(model.n_layers), 0, "blocks"},
    {"--heads", O_INT, TC(model.n_heads), 0, "query heads"},
    {"--kv-heads", O_INT, TC(model.n_kv_heads), 0, "key/value heads (grouped-query)"},
    {"--ctx", O_INT, TC(model.ctx_len), 0, "context length"},
    {"--dff", O_INT, TC(model.d_ff), 0, "hidden width of dense feed-forward blocks"},
    {"--rope-theta", O_FLOAT, TC(model.rope_theta), 0, "RoPE base"},
    {"--tie", O_FLAG, TC(model.tie_embeddings), 1, "tie the output head to the embedding"},
    {"--moe-every", O_INT, TC(model.moe_every), 0, "every n-th block is MoE (0: dense model)"},
    {"--dense", O_FLAG, TC(model.moe_every), 0, "a dense model (same as --moe-every 0)"},
    {"--dense-first", O_INT, TC(model.n_dense_first), 0, "the first n blocks stay dense"},
    {"--experts", O_INT, TC(model.moe.n_experts), 0, "experts per MoE block"},
    {"--k", O_INT, TC(model.moe.top_k), 0, "experts per token"},
    {"--expert-dff", O_INT, TC(model.moe.d_ff), 0, "hidden width of each expert"},
    {"--shared-dff", O_INT, TC(model.moe.shared_d_ff), 0, "hidden width of a shared expert (0: none)"},
    {"--capacity", O_FLOAT, TC(model.moe.capacity_factor), 0, "capacity factor (-1: dropless)"},
    {"--aux", O_FLOAT, TC(model.moe.aux_loss_coef), 0, "load-balancing loss coefficient"},
    {"--renorm", O_INT, TC(model.moe.renormalize), 0,
     "1: the k gate weights sum to 1; 0: raw probabilities (--k 1: the Switch form)"},
    {"--bias-rate", O_FLOAT, TC(model.moe.bias_update_rate), 0,
     "aux-loss-free balancing: selection-bias step per optimizer step (0: off)"},
    {"--zloss", O_FLOAT, TC(model.moe.z_loss_coef), 0, "router z-loss coefficient"},
};
#define N_OPTS ((int)(sizeof opts / sizeof opts[0]))

void train_opts_usage(FILE *f) {
    for (int i = 0; i < N_OPTS; i++)
        fprintf(f, "    %-16s %s%s\n", opts[i].name, opts[i].kind == O_FLAG ? "" : "N  ", opts[i].help);
    fprintf(f, "    %-16s %s\n", "--router NAME", "routing method preset (moe_router_names)");
}

/* Applies the table option at argv[*i] (advancing *i past its value).
 * Returns 1 when argv[*i] is a table option, 0 when not; *bad = 1 on a bad
 * value, with a message unless quiet. */
static int apply_table(moe_train_config *c, int argc, char **argv, int *i, int *bad, int quiet) {
    for (int k = 0; k < N_OPTS; k++) {
        const train_opt *o = &opts[k];
        if (strcmp(argv[*i], o->name)) continue;
        char *p = (char *)c + o->off;
        if (o->kind == O_FLAG) { *(int *)p = o->flag_value; return 1; }
        if (*i + 1 >= argc) {
            if (!quiet) fprintf(stderr, "moe: %s needs a value\n", o->name);
            *bad = 1;
            return 1;
        }
        const char *v = argv[++*i];
        char *end = NULL;
        if (o->kind == O_FLOAT) {
            double x = strtod(v, &end);
            if (!*v || *end) {
                if (!quiet) fprintf(stderr, "moe: %s: '%s' is not a number\n", o->name, v);
                *bad = 1;
                return 1;
            }
            *(float *)p = (float)x;
        } else {
            long long x = strtoll(v, &end, 10);
            if (!*v || *end || (o->kind == O_INT && (x < -2147483647LL || x > 2147483647LL)) ||
                (o->kind == O_U64 && x < 0)) {
                if (!quiet) fprintf(stderr, "moe: %s: '%s' is not an integer in range\n", o->name, v);
                *bad = 1;
                return 1;
            }
            if (o->kind == O_INT) *(int *)p = (int)x;
            else if (o->kind == O_I64) *(int64_t *)p = x;
            else *(uint64_t *)p = (uint64_t)x;
        }
        return 1;
    }
    return 0;
}

/* Every table option of the whole command line, silently (the caller's
 * loop reports bad values where they stand). */
static void apply_all_explicit(moe_train_config *c, int argc, char **argv) {
    for (int j = 0; j < argc; j++) {
        int bad = 0;
        if (!strcmp(argv[j], "--router")) { j++; continue; }
        apply_table(c, argc, argv, &j, &bad, 1);
    }
}

/* A router preset sets defaults; explicit options win wherever they stand.
 * At --router NAME: every explicit option of the command line is applied
 * (so the preset sees the final sizes: `--router shared --expert-dff 256`
 * gives a shared expert of 256), then the preset, then the explicit options
 * again (so `--aux 0 --router softmax` keeps aux 0). The caller's loop then
 * applies the options after --router once more, which changes nothing. */
int train_opts_apply(moe_train_config *c, int argc, char **argv, int *i, int *bad) {
    if (!strcmp(argv[*i], "--router")) {
        if (*i + 1 >= argc) { fprintf(stderr, "moe: --router needs a name\n"); *bad = 1; return 1; }
        moe_error err;
        moe_train_config k = *c;
        apply_all_explicit(&k, argc, argv);
        if (moe_layer_config_router(&k.model.moe, argv[*i + 1], &err) != MOE_OK) {
            fprintf(stderr, "moe: --router: %s\n", err.msg);
            *bad = 1;
        } else {
            apply_all_explicit(&k, argc, argv);
            *c = k;
        }
        (*i)++;
        return 1;
    }
    return apply_table(c, argc, argv, i, bad, 0);
}

/* The --k 1 trap: with top-1 selection and renormalised weights (or the
 * noisy gate, which renormalises either way) the gate weight is always 1,
 * so the language-model loss gives the router no gradient; only the
 * balance losses train it. Prints a warning naming the way out. */
void train_opts_warn(const moe_train_config *c) {
    const moe_layer_config *m = &c->model.moe;
    if (c->model.moe_every <= 0 || m->top_k != 1 || m->select != MOE_SELECT_TOPK) return;
    if (!m->renormalize && !m->noisy_gate) return;
    fprintf(stderr, "moe: warning: --k 1 with %s: the one gate weight is always 1, so the router gets no gradient "
            "from the language-model loss (only from the balance losses); %s\n",
            m->noisy_gate ? "the noisy gate (which renormalises)" : "renormalised weights",
            m->noisy_gate ? "use --router switch for the Switch form (gate = the chosen expert's probability)"
                          : "--renorm 0 gives the Switch form (gate = the chosen expert's probability), as "
                            "--router switch does");
}
