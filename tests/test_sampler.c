/* test_sampler.c: the token sampler (src/infer/sampler.c).
 *
 * Greedy is the argmax (ties to the lower id) and top_k = 1 is greedy; with a
 * fixed seed, 20000 draws follow softmax(logits / T) (chi-square against the
 * exact probabilities) for plain, top-k, top-p and min-p sampling, and never
 * give what those exclude; top-p comes before min-p (a case where the other
 * order differs); the repetition penalty changes exactly the logits of
 * distinct recent tokens; the same seed repeats the same draws; bad
 * configurations are refused; a 150k vocabulary with top-p draws only from
 * the nucleus (checked against a full sort).
 */
#include <string.h>

#include "moe_infer.h"
#include "testutil.h"

#define NDRAW 20000

static moe_sampler *make(float temp, int top_k, float top_p, float min_p, int n_vocab, uint64_t seed) {
    moe_sampler_config c;
    moe_sampler_config_default(&c);
    c.temperature = temp;
    c.top_k = top_k;
    c.top_p = top_p;
    c.min_p = min_p;
    c.seed = seed;
    moe_sampler *s = NULL;
    moe_error err = { "" };
    if (moe_sampler_create(&s, &c, n_vocab, &err) != MOE_OK) printf("  (create: %s)\n", err.msg);
    return s;
}

/* Draws NDRAW tokens from logits[V] and compares the counts with the
 * probabilities want[V] (0 where a token must never appear): chi-square over
 * the allowed tokens below bound, and no draw of an excluded one. */
static void check_dist(const char *name, moe_sampler *s, const float *logits, const double *want, int V) {
    int count[64] = {0};
    float tmp[64];
    for (int d = 0; d < NDRAW; d++) {
        memcpy(tmp, logits, (size_t)V * sizeof *tmp);
        int t = moe_sampler_sample(s, tmp, NULL, 0);
        if (t < 0 || t >= V) { tu_fail(name, "draw %d gave token %d", d, t); return; }
        count[t]++;
    }
    double chi2 = 0;
    int df = -1;
    for (int i = 0; i < V; i++) {
        if (want[i] == 0) {
            if (count[i]) { tu_fail(name, "token %d (excluded) drawn %d times", i, count[i]); return; }
            continue;
        }
        double e = want[i] * NDRAW;
        chi2 += (count[i] - e) * (count[i] - e) / e;
        df++;
    }
    /* the 0.999 quantile of chi-square is below 3.5 df + 11 for df <= 20 */
    double bound = 3.5 * df + 11;
    if (chi2 < bound) tu_ok(name);
    else tu_fail(name, "chi-square %.2f over %d degrees of freedom (bound %.1f)", chi2, df, bound);
}

/* softmax(l / T) over the tokens with keep[i], into p. */
static void softmax_ref(const float *l, const int *keep, int V, double T, double *p) {
    double mx = -1e300, sum = 0;
    for (int i = 0; i < V; i++) if (keep[i] && l[i] > mx) mx = l[i];
    for (int i = 0; i < V; i++) sum += p[i] = keep[i] ? exp((l[i] - mx) / T) : 0;
    for (int i = 0; i < V; i++) p[i] /= sum;
}

static void test_greedy(void) {
    tu_rng r = { 5 };
    float l[1000], copy[1000];
    int ok = 1;
    moe_sampler *g = make(0.0f, 40, 0.95f, 0.05f, 1000, 1), *k1 = make(1.0f, 1, 1.0f, 0.0f, 1000, 2);
    for (int t = 0; t < 50 && ok; t++) {
        tu_fill(&r, l, 1000, 3.0f);
        int am = 0;
        for (int i = 1; i < 1000; i++) if (l[i] > l[am]) am = i;
        memcpy(copy, l, sizeof l);
        ok = moe_sampler_sample(g, copy, NULL, 0) == am;
        memcpy(copy, l, sizeof l);
        ok = ok && moe_sampler_sample(k1, copy, NULL, 0) == am;
    }
    float tie[4] = {1, 3, 3, -2}, nan_l[4] = {NAN, 1, 0, NAN};
    moe_sampler *g4 = make(0.0f, 0, 1.0f, 0.0f, 4, 1), *s4 = make(1.0f, 0, 1.0f, 0.0f, 4, 3);
    ok = ok && moe_sampler_sample(g4, tie, NULL, 0) == 1 && moe_sampler_sample(g4, nan_l, NULL, 0) == 1;
    for (int d = 0; d < 1000 && ok; d++) { /* sampling never picks a NaN */
        float x[4] = {NAN, 1, 0, NAN};
        int t = moe_sampler_sample(s4, x, NULL, 0);
        ok = t == 1 || t == 2;
    }
    moe_sampler_free(g4);
    moe_sampler_free(s4);
    if (ok) tu_ok("sampler/greedy");
    else tu_fail("sampler/greedy", "not the argmax (or ties not to the lower id, or NaN chosen)");
    moe_sampler_free(g);
    moe_sampler_free(k1);
}

static void test_distributions(void) {
    const float l[8] = {1.0f, 0.5f, 2.0f, -1.0f, 0.0f, 1.5f, -0.5f, 0.25f};
    const int all[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    double p[8];
    moe_sampler *s;

    softmax_ref(l, all, 8, 1.0, p);
    s = make(1.0f, 0, 1.0f, 0.0f, 8, 42);
    check_dist("sampler/softmax-T1", s, l, p, 8);
    moe_sampler_free(s);

    softmax_ref(l, all, 8, 0.5, p);
    s = make(0.5f, 0, 1.0f, 0.0f, 8, 43);
    check_dist("sampler/softmax-T0.5", s, l, p, 8);
    moe_sampler_free(s);

    const int top3[8] = {1, 0, 1, 0, 0, 1, 0, 0}; /* 2.0, 1.5, 1.0 */
    softmax_ref(l, top3, 8, 1.0, p);
    s = make(1.0f, 3, 1.0f, 0.0f, 8, 44);
    check_dist("sampler/top-k", s, l, p, 8);
    moe_sampler_free(s);

    /* p = 0.5 0.3 0.15 0.05: top-p 0.75 keeps {0, 1}; min-p 0.2 keeps p >= 0.1: {0, 1, 2} */
    const float q[4] = {logf(0.5f), logf(0.3f), logf(0.15f), logf(0.05f)};
    const int k01[4] = {1, 1, 0, 0}, k012[4] = {1, 1, 1, 0};
    softmax_ref(q, k01, 4, 1.0, p);
    s = make(1.0f, 0, 0.75f, 0.0f, 4, 45);
    check_dist("sampler/top-p", s, q, p, 4);
    moe_sampler_free(s);
    softmax_ref(q, k012, 4, 1.0, p);
    s = make(1.0f, 0, 1.0f, 0.2f, 4, 46);
    check_dist("sampler/min-p", s, q, p, 4);
    moe_sampler_free(s);

    /* p = 0.4 0.3 0.2 0.1, top-p 0.75 then min-p 0.4: top-p keeps {0, 1, 2}
     * (0.7 < 0.75), min-p keeps p >= 0.16: {0, 1, 2}. Min-p first would leave
     * mass 0.9 and top-p would then stop at 0.7 >= 0.675: {0, 1}. */
    const float o[4] = {logf(0.4f), logf(0.3f), logf(0.2f), logf(0.1f)};
    softmax_ref(o, k012, 4, 1.0, p);
    s = make(1.0f, 0, 0.75f, 0.4f, 4, 47);
    check_dist("sampler/top-p-then-min-p", s, o, p, 4);
    moe_sampler_free(s);
    /* top-k 3 with top-p 0.6 (of the top 3's mass 0.9: 0.54 -> {0, 1}) */
    softmax_ref(o, k01, 4, 1.0, p);
    s = make(1.0f, 3, 0.6f, 0.0f, 4, 48);
    check_dist("sampler/top-k-then-top-p", s, o, p, 4);
    moe_sampler_free(s);
}

static void test_penalty(void) {
    moe_sampler_config c;
    moe_sampler_config_default(&c);
    c.temperature = 0;
    c.repeat_penalty = 2.0f;
    c.repeat_last_n = 64;
    moe_sampler *s = NULL;
    moe_error err = { "" };
    moe_sampler_create(&s, &c, 5, &err);
    float l[5] = {2, -2, 1, 0.5f, 3};
    const int32_t hist[4] = {0, 1, 1, 7}; /* 7 is out of range: ignored */
    int t = moe_sampler_sample(s, l, hist, 4);
    const float want[5] = {1, -4, 1, 0.5f, 3};
    int ok = t == 4 && !memcmp(l, want, sizeof want);
    float l2[5] = {2, -2, 1, 0.5f, 3};
    const int32_t hist2[2] = {4, 4};
    t = moe_sampler_sample(s, l2, hist2, 2); /* 3 -> 1.5: now token 0 (2) wins */
    ok = ok && t == 0 && l2[4] == 1.5f && l2[0] == 2;
    moe_sampler_free(s);
    c.repeat_last_n = 1; /* only the last token counts */
    moe_sampler_create(&s, &c, 5, &err);
    float l3[5] = {2, -2, 1, 0.5f, 3};
    moe_sampler_sample(s, l3, hist, 3);
    const float want3[5] = {2, -4, 1, 0.5f, 3};
    ok = ok && !memcmp(l3, want3, sizeof want3);
    moe_sampler_free(s);
    if (ok) tu_ok("sampler/repeat-penalty");
    else tu_fail("sampler/repeat-penalty", "logits after the penalty: %g %g %g %g %g", l[0], l[1], l[2], l[3], l[4]);
}

static void test_determinism(void) {
    tu_rng r = { 9 };
    float l[100], tmp[100];
    tu_fill(&r, l, 100, 2.0f);
    moe_sampler *a = make(0.9f, 20, 0.9f, 0.02f, 100, 123), *b = make(0.9f, 20, 0.9f, 0.02f, 100, 123),
                *c = make(0.9f, 20, 0.9f, 0.02f, 100, 124);
    int same = 1, differ = 0;
    for (int i = 0; i < 1000; i++) {
        memcpy(tmp, l, sizeof l);
        int x = moe_sampler_sample(a, tmp, NULL, 0);
        memcpy(tmp, l, sizeof l);
        int y = moe_sampler_sample(b, tmp, NULL, 0);
        memcpy(tmp, l, sizeof l);
        int z = moe_sampler_sample(c, tmp, NULL, 0);
        same &= x == y;
        differ |= x != z;
    }
    if (same && differ) tu_ok("sampler/determinism");
    else tu_fail("sampler/determinism", "same seed same draws: %d, another seed differs: %d", same, differ);
    moe_sampler_free(a);
    moe_sampler_free(b);
    moe_sampler_free(c);
}

static int cmp_desc(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x < y) - (x > y);
}

/* A large vocabulary: top-p keeps hundreds of tokens (several sorted blocks). */
static void test_large(void) {
    enum { V = 150000 };
    static float l[V], tmp[V], sorted[V];
    tu_rng r = { 77 };
    tu_fill(&r, l, V, 4.0f);
    const float T = 0.7f, top_p = 0.9f;
    memcpy(sorted, l, sizeof l);
    qsort(sorted, V, sizeof *sorted, cmp_desc);
    double mass = 0, acc = 0;
    for (int i = 0; i < V; i++) mass += exp((sorted[i] - sorted[0]) / T);
    int keep = V;
    for (int i = 0; i < V; i++) {
        acc += exp((sorted[i] - sorted[0]) / T);
        if (acc >= top_p * mass) { keep = i + 1; break; }
    }
    float threshold = sorted[keep - 1];
    moe_sampler *s = make(T, 0, top_p, 0.0f, V, 5);
    int ok = 1, worst = 0;
    for (int d = 0; d < 200 && ok; d++) {
        memcpy(tmp, l, sizeof l);
        int t = moe_sampler_sample(s, tmp, NULL, 0);
        ok = t >= 0 && t < V && l[t] >= threshold;
        worst = t;
    }
    moe_sampler_free(s);
    if (ok && keep > 200) tu_ok("sampler/large-top-p");
    else tu_fail("sampler/large-top-p", "token %d (logit %g) outside the nucleus of %d (threshold %g)", worst,
                 worst >= 0 && worst < V ? l[worst] : 0.0f, keep, threshold);
}

static void test_config(void) {
    moe_sampler_config c;
    moe_sampler_config_default(&c);
    int ok = c.temperature == 0.8f && c.top_k == 40 && c.top_p == 0.95f && c.min_p == 0.05f &&
             c.repeat_penalty == 1.0f && c.repeat_last_n == 64 && c.seed == 1;
    if (ok) tu_ok("sampler/defaults");
    else tu_fail("sampler/defaults", "not temp 0.8, top_k 40, top_p 0.95, min_p 0.05, penalty 1, last_n 64, seed 1");
    struct { const char *what; moe_sampler_config c; int V; } bad[7];
    for (int i = 0; i < 7; i++) { bad[i].c = c; bad[i].V = 10; }
    bad[0].what = "temperature -1"; bad[0].c.temperature = -1;
    bad[1].what = "top_k -1"; bad[1].c.top_k = -1;
    bad[2].what = "top_p 0"; bad[2].c.top_p = 0;
    bad[3].what = "min_p 1.5"; bad[3].c.min_p = 1.5f;
    bad[4].what = "repeat_penalty 0"; bad[4].c.repeat_penalty = 0;
    bad[5].what = "repeat_last_n -1"; bad[5].c.repeat_last_n = -1;
    bad[6].what = "n_vocab 0"; bad[6].V = 0;
    for (int i = 0; i < 7; i++) {
        moe_sampler *s = (moe_sampler *)1;
        moe_error err = { "" };
        if (moe_sampler_create(&s, &bad[i].c, bad[i].V, &err) != MOE_ERR_ARG || s != NULL || !err.msg[0]) {
            tu_fail("sampler/bad-config", "%s accepted", bad[i].what);
            return;
        }
    }
    tu_ok("sampler/bad-config");
}

int main(void) {
    test_greedy();
    test_distributions();
    test_penalty();
    test_determinism();
    test_large();
    test_config();
    return tu_exit_code();
}
