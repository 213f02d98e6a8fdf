/* corpus_code.c: the Python documents of the built-in corpus (a function or a
 * small class); see corpus.h for what they look like.
 * Not for: the prose, arith or records domains, the corpus API, or code that
 * must run (it only has to read like Python: names are defined before use).
 * A pure function of the text builder's random stream. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "corpus/corpus_gen.h"

/* ------------------------------------------------------------ code (Python) */

typedef struct py_var { const char *name; int list; int fixed; } py_var;
typedef struct py {
    gen *g;
    py_var v[48];             /* variables in scope */
    int nv;
    const char *ilist[8];     /* for i in range(len(ilist[j])): ivar[j] indexes it */
    const char *ivar[8];
    int nidx;
    int loops;                /* enclosing loops */
    int in_while;             /* the innermost loop is a while (no continue) */
} py;

static const char *const PY_INT[] = {
    "total", "count", "result", "best", "value", "score", "acc", "low", "high", "mid",
    "delta", "step_size", "offset", "level", "width", "height", "weight", "cost", "price",
    "hits", "misses", "largest", "smallest", "current", "previous", "tmp", "span", "gap"};
static const char *const PY_LIST[] = {"out", "seen", "parts", "pairs", "buf", "stack",
                                      "queue", "evens", "odds", "chunk", "found", "rows",
                                      "picked", "kept", "diffs", "window"};
static const char *const PY_LPARAM[] = {"items", "values", "scores", "numbers", "prices",
                                        "weights", "counts", "sizes", "data", "nums",
                                        "heights", "samples", "ages", "readings", "lengths"};
static const char *const PY_IPARAM[] = {"n", "limit", "size", "k", "step", "threshold",
                                        "start", "stop", "factor", "target", "base", "depth"};
static const char *const PY_LOOP[] = {"i", "j", "idx", "pos"};
static const char *const PY_ITEM[] = {"x", "item", "v", "num", "entry", "elem"};
static const char *const PY_VERB[] = {"compute", "find", "count", "sum", "scale", "filter",
                                      "merge", "update", "check", "build", "collect", "split",
                                      "normalize", "clip", "rank", "group", "average",
                                      "select", "shift", "mark", "trim", "pick", "score"};
static const char *const PY_NOUN[] = {"total", "max", "min", "values", "items", "scores",
                                      "pairs", "evens", "prices", "weights", "steps", "peaks",
                                      "gaps", "runs", "ranges", "outliers", "window", "chunks",
                                      "counts", "limits", "totals"};
static const char *const PY_CLASS[] = {"Counter", "Buffer", "Tracker", "Inventory", "Ledger",
                                       "Scoreboard", "Histogram", "Cache", "Recorder", "Stats",
                                       "Pool", "Register", "Budget", "Meter", "Journal"};
static const char *const PY_METHOD[] = {"total", "mean", "largest", "count_above", "update",
                                        "report", "size", "smallest", "spread", "summary"};

static void py_indent(py *c, int ind) { for (int i = 0; i < ind; i++) raw(c->g, "    ", 4); c->g->space = 0; }
static int py_has(const py *c, const char *name) {
    for (int i = 0; i < c->nv; i++) if (!strcmp(c->v[i].name, name)) return 1;
    return 0;
}
static void py_add(py *c, const char *name, int list, int fixed) {
    if (c->nv < (int)NELEM(c->v)) c->v[c->nv++] = (py_var){name, list, fixed};
}
/* a variable of the kind (list 0/1), or NULL; fixed ones only when allowed */
static const char *py_pick(py *c, int list, int allow_fixed) {
    int cand[48], n = 0;
    for (int i = 0; i < c->nv; i++)
        if (c->v[i].list == list && (allow_fixed || !c->v[i].fixed)) cand[n++] = i;
    return n ? c->v[cand[below(c->g, (uint32_t)n)]].name : NULL;
}
/* a fresh name from list, or NULL when all are taken */
static const char *py_fresh(py *c, const char *const *names, size_t n) {
    for (int tries = 0; tries < 8; tries++) {
        const char *s = names[below(c->g, (uint32_t)n)];
        if (!py_has(c, s)) return s;
    }
    return NULL;
}
static void py_atom(py *c) {
    gen *g = c->g;
    int k = (int)below(g, 10);
    const char *v = py_pick(c, 0, 1), *l = py_pick(c, 1, 1);
    if (k < 2 && c->nidx) { int j = (int)below(g, (uint32_t)c->nidx); put(g, c->ilist[j]); put(g, "["); put(g, c->ivar[j]); put(g, "]"); }
    else if (k < 6 && v) put(g, v);
    else if (k < 7 && l) { put(g, "len("); put(g, l); put(g, ")"); }
    else put_uint(g, below(g, 10) < 7 ? below(g, 10) : below(g, 100));
}
static void py_expr(py *c) {
    gen *g = c->g;
    int k = (int)below(g, 10);
    const char *l = py_pick(c, 1, 1);
    if (k < 4) py_atom(c);
    else if (k < 7) {
        py_atom(c);
        int op = (int)below(g, 5);
        put(g, (const char *[]){" + ", " - ", " * ", " // ", " % "}[op]);
        if (op >= 3) put_uint(g, 2 + below(g, 8)); else py_atom(c);
    } else if (k < 8) { put(g, pct(g, 50) ? "max(" : "min("); py_atom(c); put(g, ", "); py_atom(c); put(g, ")"); }
    else if (k < 9 && l) { put(g, "sum("); put(g, l); put(g, ")"); }
    else { put(g, "abs("); py_atom(c); put(g, " - "); py_atom(c); put(g, ")"); }
}
static void py_cond(py *c) {
    gen *g = c->g;
    int k = (int)below(g, 10);
    const char *l = py_pick(c, 1, 1);
    if (k < 5) { py_atom(c); put(g, (const char *[]){" > ", " < ", " >= ", " == ", " != "}[below(g, 5)]); py_atom(c); }
    else if (k < 7) { py_atom(c); put(g, " % 2 == 0"); }
    else if (k < 8 && l) { py_atom(c); put(g, " in "); put(g, l); }
    else if (k < 9 && l) { put(g, "not "); put(g, l); }
    else { py_atom(c); put(g, " > 0 and "); py_atom(c); put(g, " < "); put_uint(g, 10 + below(g, 90)); }
}
static void py_block(py *c, int ind, int depth, int lo, int hi);

/* one statement (or a comment); returns 0 when it wrote no statement */
static int py_stmt(py *c, int ind, int depth) {
    gen *g = c->g;
    int k = (int)below(g, 20);
    if (depth >= 3 && k >= 11) k = (int)below(g, 11);
    const char *iv = py_pick(c, 0, 0), *lv = py_pick(c, 1, 1);
    if (k < 3) { /* new int */
        const char *nm = py_fresh(c, PY_INT, NELEM(PY_INT));
        if (!nm) nm = iv;
        if (!nm) return 0;
        py_indent(c, ind); put(g, nm); put(g, " = "); py_expr(c); endline(g);
        if (!py_has(c, nm)) py_add(c, nm, 0, 0);
    } else if (k < 5 && iv) {
        py_indent(c, ind); put(g, iv); put(g, (const char *[]){" += ", " -= ", " += ", " *= "}[below(g, 4)]);
        py_expr(c); endline(g);
    } else if (k < 7) { /* new list */
        const char *nm = py_fresh(c, PY_LIST, NELEM(PY_LIST));
        if (!nm) return 0;
        py_indent(c, ind); put(g, nm); put(g, " = ");
        int m = (int)below(g, 5);
        if (m == 0 || !lv) put(g, "[]");
        else if (m == 1) { put(g, "sorted("); put(g, lv); put(g, ")"); }
        else if (m == 2) { put(g, "list("); put(g, lv); put(g, ")"); }
        else {
            const char *x = py_fresh(c, PY_ITEM, NELEM(PY_ITEM));
            if (!x) x = "x";
            put(g, "["); put(g, x); put(g, (const char *[]){" * ", " + ", " - "}[below(g, 3)]);
            put_uint(g, 1 + below(g, 9)); put(g, " for "); put(g, x); put(g, " in "); put(g, lv);
            if (m == 4) { put(g, " if "); put(g, x); put(g, " > "); py_atom(c); }
            put(g, "]");
        }
        endline(g);
        py_add(c, nm, 1, 0);
    } else if (k < 9 && py_pick(c, 1, 0)) {
        py_indent(c, ind); put(g, py_pick(c, 1, 0)); put(g, ".append("); py_expr(c); put(g, ")"); endline(g);
    } else if (k < 10) {
        py_indent(c, ind); put(g, "print(");
        const char *v = py_pick(c, 0, 1);
        if (v && pct(g, 60)) { put(g, "\""); put(g, v); put(g, ":\", "); put(g, v); }
        else py_expr(c);
        put(g, ")"); endline(g);
    } else if (k < 11 && c->loops && depth > 1) {
        py_indent(c, ind); put(g, "if "); py_cond(c); put(g, ":"); endline(g);
        py_indent(c, ind + 1); put(g, pct(g, 50) || c->in_while ? "break" : "continue"); endline(g);
    } else if (k < 11) {
        py_indent(c, ind); put(g, "# "); put(g, PICK(g, PY_VERB)); put(g, " the ");
        put(g, PICK(g, PY_NOUN)); endline(g);
        return 0;
    } else if (k < 14) { /* if / elif / else */
        py_indent(c, ind); put(g, "if "); py_cond(c); put(g, ":"); endline(g);
        py_block(c, ind + 1, depth + 1, 1, 3);
        if (pct(g, 25)) { py_indent(c, ind); put(g, "elif "); py_cond(c); put(g, ":"); endline(g); py_block(c, ind + 1, depth + 1, 1, 2); }
        if (pct(g, 40)) { py_indent(c, ind); put(g, "else:"); endline(g); py_block(c, ind + 1, depth + 1, 1, 2); }
    } else if (k < 18) { /* for */
        const char *l = py_pick(c, 1, 1);
        if (pct(g, 50) && l) {
            const char *x = py_fresh(c, PY_ITEM, NELEM(PY_ITEM));
            if (!x) return 0;
            py_indent(c, ind); put(g, "for "); put(g, x); put(g, " in "); put(g, l); put(g, ":"); endline(g);
            int nv = c->nv; py_add(c, x, 0, 1);
            int w = c->in_while; c->in_while = 0;
            c->loops++; py_block(c, ind + 1, depth + 1, 1, 4); c->loops--;
            c->in_while = w;
            c->nv = nv;
        } else {
            const char *i = py_fresh(c, PY_LOOP, NELEM(PY_LOOP));
            if (!i) return 0;
            py_indent(c, ind); put(g, "for "); put(g, i); put(g, " in range(");
            int nidx = c->nidx;
            if (l && pct(g, 60)) {
                put(g, "len("); put(g, l); put(g, ")");
                if (c->nidx < 8) { c->ilist[c->nidx] = l; c->ivar[c->nidx++] = i; }
            } else if (pct(g, 50) && py_pick(c, 0, 1)) put(g, py_pick(c, 0, 1));
            else { put_uint(g, below(g, 3)); put(g, ", "); put_uint(g, 5 + below(g, 20)); }
            put(g, "):"); endline(g);
            int nv = c->nv; py_add(c, i, 0, 1);
            int w = c->in_while; c->in_while = 0;
            c->loops++; py_block(c, ind + 1, depth + 1, 1, 4); c->loops--;
            c->in_while = w;
            c->nv = nv; c->nidx = nidx;
        }
    } else { /* while with a counter */
        const char *i = py_fresh(c, PY_LOOP, NELEM(PY_LOOP));
        if (!i) return 0;
        py_indent(c, ind); put(g, i); put(g, " = 0"); endline(g);
        py_indent(c, ind); put(g, "while "); put(g, i); put(g, " < ");
        const char *bound = py_pick(c, 0, 1);
        if (bound && pct(g, 50)) put(g, bound); else put_uint(g, 3 + below(g, 20));
        put(g, ":"); endline(g);
        int nv = c->nv; py_add(c, i, 0, 1);
        int w = c->in_while; c->in_while = 1;
        c->loops++; py_block(c, ind + 1, depth + 1, 1, 3); c->loops--;
        c->in_while = w;
        py_indent(c, ind + 1); put(g, i); put(g, " += 1"); endline(g);
        c->nv = nv;
        py_add(c, i, 0, 0);
    }
    return 1;
}
static void py_block(py *c, int ind, int depth, int lo, int hi) {
    int nv = c->nv, nidx = c->nidx;
    int real = 0;
    for (int i = between(c->g, lo, hi); i > 0; i--) real += py_stmt(c, ind, depth);
    if (!real) { py_indent(c, ind); put(c->g, "print("); py_expr(c); put(c->g, ")"); endline(c->g); }
    c->nv = nv;
    c->nidx = nidx;
}
/* "(a, b)" params: one or two lists and up to two ints, registered in scope */
static void py_params(py *c, int self) {
    gen *g = c->g;
    put(g, "(");
    if (self) put(g, "self");
    int nl = between(g, self ? 0 : 1, 2), ni = between(g, 0, 2), first = !self;
    for (int i = 0; i < nl + ni; i++) {
        const char *nm = i < nl ? py_fresh(c, PY_LPARAM, NELEM(PY_LPARAM)) : py_fresh(c, PY_IPARAM, NELEM(PY_IPARAM));
        if (!nm) continue;
        if (!first) put(g, ", ");
        first = 0;
        put(g, nm);
        py_add(c, nm, i < nl, 1);
    }
    put(g, "):");
    endline(g);
}
static void py_return(py *c, int ind) {
    gen *g = c->g;
    const char *v = py_pick(c, pct(c->g, 40), 0);
    if (!v) v = py_pick(c, 0, 1);
    if (!v) v = py_pick(c, 1, 1);
    py_indent(c, ind); put(g, "return ");
    if (v) put(g, v); else put(g, "None");
    endline(g);
}
static void py_function(gen *g) {
    py c = {.g = g};
    const char *verb = PICK(g, PY_VERB), *noun = PICK(g, PY_NOUN);
    put(g, "def "); put(g, verb); put(g, "_"); put(g, noun);
    py_params(&c, 0);
    if (pct(g, 60)) {
        const char *l = py_pick(&c, 1, 1);
        py_indent(&c, 1); put(g, "\"\"\""); start(g); put(g, verb); put(g, " the "); put(g, noun);
        put(g, " of "); put(g, l ? l : "the input"); put(g, ".\"\"\""); endline(g);
    }
    int nv = c.nv;
    for (int i = between(g, 3, 6); i > 0; i--) py_stmt(&c, 1, 1);
    py_return(&c, 1);
    c.nv = nv;
}
static void py_class(gen *g) {
    py c = {.g = g};
    const char *name = PICK(g, PY_CLASS);
    const char *lf = PICK(g, PY_LIST), *cf = PICK(g, PY_INT);
    char lself[32], cself[32];
    snprintf(lself, sizeof lself, "self.%s", lf);
    snprintf(cself, sizeof cself, "self.%s", cf);
    put(g, "class "); put(g, name); put(g, ":"); endline(g);
    py_indent(&c, 1); put(g, "def __init__(self, limit):"); endline(g);
    py_indent(&c, 2); put(g, "self.limit = limit"); endline(g);
    py_indent(&c, 2); put(g, lself); put(g, " = []"); endline(g);
    py_indent(&c, 2); put(g, cself); put(g, " = 0"); endline(g);
    py_indent(&c, 1); put(g, "def add(self, value):"); endline(g);
    py_indent(&c, 2); put(g, lself); put(g, ".append(value)"); endline(g);
    py_indent(&c, 2); put(g, cself); put(g, " += value"); endline(g);
    py_indent(&c, 2); put(g, "return len("); put(g, lself); put(g, ") <= self.limit"); endline(g);
    for (int m = between(g, 1, 2); m > 0; m--) {
        c.nv = 0;
        py_add(&c, "self.limit", 0, 1);
        py_add(&c, lself, 1, 1);
        py_add(&c, cself, 0, 1);
        py_indent(&c, 1); put(g, "def "); put(g, PICK(g, PY_METHOD));
        py_params(&c, 1);
        for (int i = between(g, 2, 4); i > 0; i--) py_stmt(&c, 2, 2);
        py_return(&c, 2);
    }
}

/* ------------------------------------------------------------ entry point */

void corpus_code_doc(gen *g) {
    if (pct(g, 80)) py_function(g); else py_class(g);
}
