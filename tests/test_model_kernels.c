/* test_model_kernels.c: the dense transformer kernels of the language model
 * (RMSNorm, RoPE, causal grouped-query attention, softmax cross-entropy)
 * against naive double-precision references written here, and their backward
 * passes against central finite differences of those references.
 *
 * For: forward values at several shapes, odd ones included (T = 1, d = 3,
 * hd = 2, H = Hkv, H = 4 Hkv, attention rows across GEMM row blocks);
 * gradients by finite differences in double (loss = sum(out * G), G random);
 * accumulation (RMSNorm adds into dx, dw) and overwrite (attention) contracts;
 * bitwise equal results for 1, 2 and 3 threads; RoPE inverse(apply(x)) = x;
 * attention rows summing to 1 with exact zeros above the diagonal; a stable
 * log-sum-exp; in-place cross-entropy backward; the target >= V assertion.
 * Each ok line reports the worst normalized error (max |got - want| / max |want|).
 * Not for: speed (tests never assert on time).
 */
#include "kernels/attention.h"
#include "kernels/norm.h"
#include "kernels/rope.h"
#include "kernels/xent.h"
#include "testutil.h"

#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define TOL_FWD 1e-5  /* float kernel vs double reference */
#define TOL_GRAD 2e-5 /* float backward vs double (finite differences, reference backward) */
#define FD_H 1e-5     /* central difference step (inputs are O(1)) */
#define FD_MAX 64     /* coordinates checked per tensor when it is larger */

/* ------------------------------------------------------------ helpers */

static void *xmalloc(size_t bytes) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p) {
        fprintf(stderr, "test_model_kernels: out of memory\n");
        exit(2);
    }
    return p;
}
static float *fnew(size_t n) { return xmalloc(n * sizeof(float)); }
static double *dnew(size_t n) { return xmalloc(n * sizeof(double)); }
static void to_d(double *d, const float *f, size_t n) {
    for (size_t i = 0; i < n; i++) d[i] = f[i];
}
static void fill_nan(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = NAN;
}

/* max |a - b| / max |b| over n values (NaN counts as worst); *w the index. */
static double nerr(const float *a, const double *b, size_t n, size_t *w) {
    double scale = 0, m = 0;
    *w = 0;
    for (size_t i = 0; i < n; i++) if (fabs(b[i]) > scale) scale = fabs(b[i]);
    if (scale < 1e-30) scale = 1e-30;
    for (size_t i = 0; i < n; i++) {
        const double e = fabs((double)a[i] - b[i]);
        if (!(e <= m)) { m = e; *w = i; }
    }
    return m / scale;
}

/* One named check made of several comparisons: one ok line listing the
 * worst errors, or a FAIL line for the first comparison that failed. */
typedef struct chk {
    char name[128];
    char info[384];
    int failed;
} chk;

static void chk_begin(chk *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void chk_begin(chk *c, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->name, sizeof c->name, fmt, ap);
    va_end(ap);
    c->info[0] = '\0';
    c->failed = 0;
}

/* Compares got [n] (float) with want [n] (double) at tolerance tol. */
static void chk_err(chk *c, const char *what, const float *got, const double *want, size_t n,
                    double tol) {
    if (c->failed || n == 0) return;
    size_t w;
    const double e = nerr(got, want, n, &w);
    if (!(e <= tol)) {
        tu_fail(c->name, "%s: normalized error %.3g > %.0e at [%zu]: got %.9g, want %.9g", what,
                e, tol, w, (double)got[w], want[w]);
        c->failed = 1;
        return;
    }
    const size_t len = strlen(c->info);
    snprintf(c->info + len, sizeof c->info - len, "%s%s %.2g", len ? ", " : "", what, e);
}

static void chk_true(chk *c, int cond, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void chk_true(chk *c, int cond, const char *fmt, ...) {
    if (c->failed || cond) return;
    char why[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    tu_fail(c->name, "%s", why);
    c->failed = 1;
}

/* Bitwise equality of two float arrays. */
static void chk_same(chk *c, const char *what, const float *a, const float *b, size_t n) {
    if (c->failed) return;
    for (size_t i = 0; i < n; i++) {
        if (memcmp(&a[i], &b[i], sizeof(float)) != 0) {
            tu_fail(c->name, "%s differs at [%zu]: %.9g vs %.9g", what, i, (double)a[i],
                    (double)b[i]);
            c->failed = 1;
            return;
        }
    }
}

static void chk_end(chk *c) {
    if (c->failed) return;
    char line[600];
    snprintf(line, sizeof line, "%s (%s)", c->name, c->info[0] ? c->info : "exact");
    tu_ok(line);
}

/* The coordinates a finite-difference check visits: all of [0, n) when
 * n <= FD_MAX, else the first, the last and random ones. Returns the count. */
static int fd_coords(size_t *idx, size_t n, tu_rng *rng) {
    if (n <= FD_MAX) {
        for (size_t i = 0; i < n; i++) idx[i] = i;
        return (int)n;
    }
    idx[0] = 0;
    idx[1] = n - 1;
    for (int i = 2; i < FD_MAX; i++) idx[i] = (size_t)(tu_next(rng) % n);
    return FD_MAX;
}

/* ------------------------------------------------------------ RMSNorm */

/* y = x / sqrt(mean(x^2) + eps) * w in double; rstd may be NULL. */
static void ref_rmsnorm(double *y, double *rstd, const double *x, const double *w, int T,
                        int d, double eps) {
    for (int t = 0; t < T; t++) {
        double ss = 0;
        for (int i = 0; i < d; i++) ss += x[t * d + i] * x[t * d + i];
        const double r = 1.0 / sqrt(ss / d + eps);
        if (rstd) rstd[t] = r;
        for (int i = 0; i < d; i++) y[t * d + i] = x[t * d + i] * r * w[i];
    }
}

static double rms_loss(const double *x, const double *w, const double *g, double *ybuf, int T,
                       int d, double eps) {
    ref_rmsnorm(ybuf, NULL, x, w, T, d, eps);
    double L = 0;
    for (int i = 0; i < T * d; i++) L += ybuf[i] * g[i];
    return L;
}

static void test_rmsnorm_shape(int T, int d, float xscale, tu_rng *rng) {
    const float eps = 1e-5f;
    const size_t n = (size_t)T * d;
    float *x = fnew(n), *w = fnew(d), *y = fnew(n), *rstd = fnew(T), *g = fnew(n);
    float *dx = fnew(n), *dw = fnew(d), *dx0 = fnew(n), *dw0 = fnew(d);
    double *xd = dnew(n), *wd = dnew(d), *gd = dnew(n), *yd = dnew(n), *rd = dnew(T);
    double *want = dnew(n + d), *tmp = dnew(n);
    float *got = fnew(n + d);
    size_t *idx = xmalloc((n + d) * sizeof(size_t));
    tu_fill(rng, x, n, xscale);
    for (int i = 0; i < d; i++) w[i] = 1.0f + 0.5f * tu_uniform(rng);
    tu_fill(rng, g, n, 1.0f);
    tu_fill(rng, dx0, n, 1.0f);
    tu_fill(rng, dw0, d, 1.0f);
    to_d(xd, x, n); to_d(wd, w, d); to_d(gd, g, n);

    chk c;
    chk_begin(&c, "rmsnorm/forward T=%d d=%d xscale=%g", T, d, (double)xscale);
    rmsnorm_forward(y, rstd, x, w, T, d, eps, 2);
    ref_rmsnorm(yd, rd, xd, wd, T, d, eps);
    chk_err(&c, "y", y, yd, n, TOL_FWD);
    chk_err(&c, "rstd", rstd, rd, T, TOL_FWD);
    chk_end(&c);

    /* Backward adds into dx0, dw0: compare with dx0 + FD, dw0 + FD. */
    chk_begin(&c, "rmsnorm/backward_fd T=%d d=%d xscale=%g", T, d, (double)xscale);
    memcpy(dx, dx0, n * sizeof(float));
    memcpy(dw, dw0, d * sizeof(float));
    rmsnorm_backward(dx, dw, g, x, w, rstd, T, d, 2);
    int m = fd_coords(idx, n, rng);
    const double h = FD_H * xscale;
    for (int q = 0; q < m; q++) {
        const size_t i = idx[q];
        const double x0 = xd[i];
        xd[i] = x0 + h;
        const double lp = rms_loss(xd, wd, gd, tmp, T, d, eps);
        xd[i] = x0 - h;
        const double lm = rms_loss(xd, wd, gd, tmp, T, d, eps);
        xd[i] = x0;
        want[q] = dx0[i] + (lp - lm) / (2 * h);
        got[q] = dx[i];
    }
    chk_err(&c, "dx", got, want, m, TOL_GRAD);
    m = fd_coords(idx, d, rng);
    for (int q = 0; q < m; q++) {
        const size_t i = idx[q];
        const double w0 = wd[i];
        wd[i] = w0 + FD_H;
        const double lp = rms_loss(xd, wd, gd, tmp, T, d, eps);
        wd[i] = w0 - FD_H;
        const double lm = rms_loss(xd, wd, gd, tmp, T, d, eps);
        wd[i] = w0;
        want[q] = dw0[i] + (lp - lm) / (2 * FD_H);
        got[q] = dw[i];
    }
    chk_err(&c, "dw", got, want, m, TOL_GRAD);
    chk_end(&c);

    free(x); free(w); free(y); free(rstd); free(g); free(dx); free(dw); free(dx0); free(dw0);
    free(xd); free(wd); free(gd); free(yd); free(rd); free(want); free(tmp); free(got);
    free(idx);
}

static void test_rmsnorm_threads(int T, int d, tu_rng *rng) {
    const size_t n = (size_t)T * d;
    float *x = fnew(n), *w = fnew(d), *g = fnew(n), *y[3], *r[3], *dx[3], *dw[3];
    tu_fill(rng, x, n, 1.0f);
    tu_fill(rng, w, d, 1.0f);
    tu_fill(rng, g, n, 1.0f);
    for (int k = 0; k < 3; k++) {
        y[k] = fnew(n); r[k] = fnew(T); dx[k] = fnew(n); dw[k] = fnew(d);
        memset(dx[k], 0, n * sizeof(float));
        for (int i = 0; i < d; i++) dw[k][i] = 0.25f;
        rmsnorm_forward(y[k], r[k], x, w, T, d, 1e-6f, k + 1);
        rmsnorm_backward(dx[k], dw[k], g, x, w, r[k], T, d, k + 1);
    }
    chk c;
    chk_begin(&c, "rmsnorm/threads_1_2_3_bitwise T=%d d=%d", T, d);
    for (int k = 1; k < 3; k++) {
        chk_same(&c, "y", y[k], y[0], n);
        chk_same(&c, "rstd", r[k], r[0], T);
        chk_same(&c, "dx", dx[k], dx[0], n);
        chk_same(&c, "dw", dw[k], dw[0], d);
    }
    chk_end(&c);
    for (int k = 0; k < 3; k++) { free(y[k]); free(r[k]); free(dx[k]); free(dw[k]); }
    free(x); free(w); free(g);
}

/* --------------------------------------------------------------- RoPE */

/* Rotation of x [T, H*hd] in double, angles from scratch (not the table). */
static void ref_rope(double *x, int T, int H, int hd, const int32_t *pos, double theta,
                     int neox, int inverse) {
    const int half = hd / 2;
    for (int t = 0; t < T; t++)
        for (int h = 0; h < H; h++)
            for (int i = 0; i < half; i++) {
                const double ang = (inverse ? -1.0 : 1.0) * pos[t] *
                                   exp(-2.0 * i / hd * log(theta));
                const int ia = neox ? i : 2 * i, ib = neox ? i + half : 2 * i + 1;
                double *r = x + ((size_t)t * H + h) * hd;
                const double a = r[ia], b = r[ib];
                r[ia] = a * cos(ang) - b * sin(ang);
                r[ib] = a * sin(ang) + b * cos(ang);
            }
}

static void test_rope_shape(int T, int H, int hd, int neox, int max_pos, float theta,
                            tu_rng *rng) {
    const int half = hd / 2;
    const size_t n = (size_t)T * H * hd;
    float *ct = fnew((size_t)max_pos * half), *st = fnew((size_t)max_pos * half);
    float *x = fnew(n), *y = fnew(n), *g = fnew(n), *dx = fnew(n), *got = fnew(n);
    double *yd = dnew(n), *want = dnew(n), *tabd = dnew((size_t)max_pos * half);
    int32_t *pos = xmalloc((size_t)T * sizeof(int32_t));
    for (int t = 0; t < T; t++) pos[t] = (int32_t)(tu_next(rng) % (uint64_t)max_pos);
    if (T > 1) pos[T - 1] = max_pos - 1;
    tu_fill(rng, x, n, 1.0f);
    tu_fill(rng, g, n, 1.0f);

    chk c;
    chk_begin(&c, "rope/%s T=%d H=%d hd=%d max_pos=%d", neox ? "neox" : "normal", T, H, hd,
              max_pos);
    rope_table(ct, st, max_pos, hd, theta);
    for (int p = 0; p < max_pos; p++)
        for (int i = 0; i < half; i++)
            tabd[(size_t)p * half + i] = cos(p * pow(theta, -2.0 * i / hd));
    chk_err(&c, "cos_table", ct, tabd, (size_t)max_pos * half, 1e-6);
    for (int p = 0; p < max_pos; p++)
        for (int i = 0; i < half; i++)
            tabd[(size_t)p * half + i] = sin(p * pow(theta, -2.0 * i / hd));
    chk_err(&c, "sin_table", st, tabd, (size_t)max_pos * half, 1e-6);

    memcpy(y, x, n * sizeof(float));
    rope_apply(y, T, H, hd, pos, ct, st, neox, 0, 2);
    to_d(yd, x, n);
    ref_rope(yd, T, H, hd, pos, theta, neox, 0);
    chk_err(&c, "apply", y, yd, n, TOL_FWD);

    /* inverse(apply(x)) == x */
    memcpy(got, y, n * sizeof(float));
    rope_apply(got, T, H, hd, pos, ct, st, neox, 1, 2);
    to_d(want, x, n);
    chk_err(&c, "inverse(apply)", got, want, n, TOL_FWD);

    /* Backward: dx = inverse(G) against FD of L = sum(G * rope(x)), in double. */
    memcpy(dx, g, n * sizeof(float));
    rope_apply(dx, T, H, hd, pos, ct, st, neox, 1, 2);
    size_t *idx = xmalloc(n * sizeof(size_t));
    double *xd = dnew(n);
    to_d(xd, x, n);
    const int m = fd_coords(idx, n, rng);
    for (int q = 0; q < m; q++) {
        double L[2];
        for (int s = 0; s < 2; s++) {
            to_d(yd, x, n);
            yd[idx[q]] += s ? -FD_H : FD_H;
            ref_rope(yd, T, H, hd, pos, theta, neox, 0);
            L[s] = 0;
            for (size_t i = 0; i < n; i++) L[s] += yd[i] * g[i];
        }
        want[q] = (L[0] - L[1]) / (2 * FD_H);
        got[q] = dx[idx[q]];
    }
    chk_err(&c, "backward_fd", got, want, m, TOL_GRAD);
    chk_end(&c);

    /* Threads: 1, 2, 3 bitwise equal, forward and inverse. */
    chk_begin(&c, "rope/%s/threads_1_2_3_bitwise T=%d H=%d hd=%d", neox ? "neox" : "normal", T,
              H, hd);
    for (int k = 2; k <= 3; k++) {
        memcpy(got, x, n * sizeof(float));
        rope_apply(got, T, H, hd, pos, ct, st, neox, 0, k);
        float *y1 = fnew(n);
        memcpy(y1, x, n * sizeof(float));
        rope_apply(y1, T, H, hd, pos, ct, st, neox, 0, 1);
        chk_same(&c, "apply", got, y1, n);
        rope_apply(got, T, H, hd, pos, ct, st, neox, 1, k);
        rope_apply(y1, T, H, hd, pos, ct, st, neox, 1, 1);
        chk_same(&c, "inverse", got, y1, n);
        free(y1);
    }
    chk_end(&c);

    free(ct); free(st); free(x); free(y); free(g); free(dx); free(got); free(yd); free(want);
    free(tabd); free(pos); free(idx); free(xd);
}

/* ---------------------------------------------------------- attention */

typedef struct attn_shape { int B, T, H, Hkv, hd; } attn_shape;

/* Causal GQA attention in double: out [B*T, H*hd], P [B, H, T, T] (may be
 * NULL). */
static void ref_attention(double *out, double *P, const double *q, const double *k,
                          const double *v, attn_shape s) {
    const int G = s.H / s.Hkv, ldq = s.H * s.hd, ldk = s.Hkv * s.hd;
    const double scale = 1.0 / sqrt((double)s.hd);
    double *p = dnew((size_t)s.T);
    for (int b = 0; b < s.B; b++)
        for (int h = 0; h < s.H; h++)
            for (int i = 0; i < s.T; i++) {
                const double *qi = q + ((size_t)b * s.T + i) * ldq + h * s.hd;
                double mx = -INFINITY, z = 0;
                for (int j = 0; j <= i; j++) {
                    const double *kj = k + ((size_t)b * s.T + j) * ldk + (h / G) * s.hd;
                    double dot = 0;
                    for (int c = 0; c < s.hd; c++) dot += qi[c] * kj[c];
                    p[j] = dot * scale;
                    if (p[j] > mx) mx = p[j];
                }
                for (int j = 0; j <= i; j++) { p[j] = exp(p[j] - mx); z += p[j]; }
                double *oi = out + ((size_t)b * s.T + i) * ldq + h * s.hd;
                for (int c = 0; c < s.hd; c++) oi[c] = 0;
                for (int j = 0; j <= i; j++) {
                    p[j] /= z;
                    const double *vj = v + ((size_t)b * s.T + j) * ldk + (h / G) * s.hd;
                    for (int c = 0; c < s.hd; c++) oi[c] += p[j] * vj[c];
                }
                if (P) {
                    double *row = P + (((size_t)b * s.H + h) * s.T + i) * s.T;
                    for (int j = 0; j < s.T; j++) row[j] = j <= i ? p[j] : 0.0;
                }
            }
    free(p);
}

/* L = sum(out * g) of the double reference. */
static double attn_loss(const double *q, const double *k, const double *v, const double *g,
                        double *obuf, attn_shape s) {
    ref_attention(obuf, NULL, q, k, v, s);
    double L = 0;
    const size_t n = (size_t)s.B * s.T * s.H * s.hd;
    for (size_t i = 0; i < n; i++) L += obuf[i] * g[i];
    return L;
}

/* The backward in double, straight from the chain rule (dq, dk, dv zeroed here). */
static void ref_attention_backward(double *dq, double *dk, double *dv, const double *P,
                                   const double *g, const double *q, const double *k,
                                   const double *v, attn_shape s) {
    const int G = s.H / s.Hkv, ldq = s.H * s.hd, ldk = s.Hkv * s.hd;
    const double scale = 1.0 / sqrt((double)s.hd);
    memset(dq, 0, (size_t)s.B * s.T * ldq * sizeof(double));
    memset(dk, 0, (size_t)s.B * s.T * ldk * sizeof(double));
    memset(dv, 0, (size_t)s.B * s.T * ldk * sizeof(double));
    double *dp = dnew((size_t)s.T);
    for (int b = 0; b < s.B; b++)
        for (int h = 0; h < s.H; h++)
            for (int i = 0; i < s.T; i++) {
                const double *row = P + (((size_t)b * s.H + h) * s.T + i) * s.T;
                const size_t qi = ((size_t)b * s.T + i) * ldq + h * s.hd;
                double dot = 0;
                for (int j = 0; j <= i; j++) {
                    const size_t kj = ((size_t)b * s.T + j) * ldk + (h / G) * s.hd;
                    dp[j] = 0;
                    for (int c = 0; c < s.hd; c++) {
                        dp[j] += g[qi + c] * v[kj + c];
                        dv[kj + c] += row[j] * g[qi + c];
                    }
                    dot += row[j] * dp[j];
                }
                for (int j = 0; j <= i; j++) {
                    const size_t kj = ((size_t)b * s.T + j) * ldk + (h / G) * s.hd;
                    const double dsij = row[j] * (dp[j] - dot) * scale;
                    for (int c = 0; c < s.hd; c++) {
                        dq[qi + c] += dsij * k[kj + c];
                        dk[kj + c] += dsij * q[qi + c];
                    }
                }
            }
    free(dp);
}

static void test_attention_shape(attn_shape s, int do_fd, tu_rng *rng) {
    const size_t nq = (size_t)s.B * s.T * s.H * s.hd, nk = (size_t)s.B * s.T * s.Hkv * s.hd;
    const size_t na = (size_t)s.B * s.H * s.T * s.T;
    const size_t ns = attention_scratch_floats(s.B, s.T, s.H, s.Hkv, s.hd, 2);
    float *q = fnew(nq), *k = fnew(nk), *v = fnew(nk), *out = fnew(nq), *att = fnew(na);
    float *g = fnew(nq), *dq = fnew(nq), *dk = fnew(nk), *dv = fnew(nk), *scr = fnew(ns);
    double *qd = dnew(nq), *kd = dnew(nk), *vd = dnew(nk), *gd = dnew(nq), *od = dnew(nq);
    double *Pd = dnew(na), *dqd = dnew(nq), *dkd = dnew(nk), *dvd = dnew(nk);
    /* q, k at scale 2 so that the softmax is far from uniform. */
    tu_fill(rng, q, nq, 2.0f);
    tu_fill(rng, k, nk, 2.0f);
    tu_fill(rng, v, nk, 1.0f);
    tu_fill(rng, g, nq, 1.0f);
    to_d(qd, q, nq); to_d(kd, k, nk); to_d(vd, v, nk); to_d(gd, g, nq);

    chk c;
    chk_begin(&c, "attention/forward B=%d T=%d H=%d Hkv=%d hd=%d", s.B, s.T, s.H, s.Hkv, s.hd);
    fill_nan(out, nq);
    fill_nan(att, na);
    attention_forward(out, att, q, k, v, s.B, s.T, s.H, s.Hkv, s.hd, 2, NULL);
    ref_attention(od, Pd, qd, kd, vd, s);
    chk_err(&c, "out", out, od, nq, TOL_FWD);
    chk_err(&c, "att", att, Pd, na, TOL_FWD);
    double worst_sum = 0;
    for (size_t r = 0; r < (size_t)s.B * s.H * s.T && !c.failed; r++) {
        const int i = (int)(r % (size_t)s.T);
        const float *row = att + r * s.T;
        double sum = 0;
        for (int j = 0; j <= i; j++) sum += row[j];
        if (fabs(sum - 1) > worst_sum || sum != sum) worst_sum = fabs(sum - 1);
        chk_true(&c, fabs(sum - 1) <= 1e-5, "row %zu sums to %.9g", r, sum);
        for (int j = i + 1; j < s.T; j++)
            chk_true(&c, row[j] == 0.0f && !signbit(row[j]),
                     "row %zu (i=%d) col %d above the diagonal: %g", r, i, j, (double)row[j]);
    }
    if (!c.failed) {
        const size_t len = strlen(c.info);
        snprintf(c.info + len, sizeof c.info - len, ", |row sum - 1| %.2g, causal zeros exact",
                 worst_sum);
    }
    chk_end(&c);

    /* Backward overwrites: dq, dk, dv and the scratch start as NaN. */
    fill_nan(dq, nq); fill_nan(dk, nk); fill_nan(dv, nk); fill_nan(scr, ns);
    attention_backward(dq, dk, dv, scr, g, att, q, k, v, s.B, s.T, s.H, s.Hkv, s.hd, 2, NULL);
    chk_begin(&c, "attention/backward_ref B=%d T=%d H=%d Hkv=%d hd=%d", s.B, s.T, s.H, s.Hkv,
              s.hd);
    ref_attention_backward(dqd, dkd, dvd, Pd, gd, qd, kd, vd, s);
    chk_err(&c, "dq", dq, dqd, nq, TOL_GRAD);
    chk_err(&c, "dk", dk, dkd, nk, TOL_GRAD);
    chk_err(&c, "dv", dv, dvd, nk, TOL_GRAD);
    chk_end(&c);

    if (do_fd) {
        chk_begin(&c, "attention/backward_fd B=%d T=%d H=%d Hkv=%d hd=%d", s.B, s.T, s.H, s.Hkv,
                  s.hd);
        size_t *idx = xmalloc(nq * sizeof(size_t));
        float *got = fnew(nq);
        double *want = dnew(nq);
        struct { const char *name; double *xd; const float *grad; size_t n; } ts[3] = {
            { "dq", qd, dq, nq }, { "dk", kd, dk, nk }, { "dv", vd, dv, nk } };
        for (int t = 0; t < 3; t++) {
            const int m = fd_coords(idx, ts[t].n, rng);
            for (int j = 0; j < m; j++) {
                double *p = ts[t].xd + idx[j];
                const double p0 = *p;
                *p = p0 + FD_H;
                const double lp = attn_loss(qd, kd, vd, gd, od, s);
                *p = p0 - FD_H;
                const double lm = attn_loss(qd, kd, vd, gd, od, s);
                *p = p0;
                want[j] = (lp - lm) / (2 * FD_H);
                got[j] = ts[t].grad[idx[j]];
            }
            chk_err(&c, ts[t].name, got, want, m, TOL_GRAD);
        }
        chk_end(&c);
        free(idx); free(got); free(want);
    }

    free(q); free(k); free(v); free(out); free(att); free(g); free(dq); free(dk); free(dv);
    free(scr); free(qd); free(kd); free(vd); free(gd); free(od); free(Pd); free(dqd); free(dkd);
    free(dvd);
}

static void test_attention_threads(attn_shape s, tu_rng *rng) {
    const size_t nq = (size_t)s.B * s.T * s.H * s.hd, nk = (size_t)s.B * s.T * s.Hkv * s.hd;
    const size_t na = (size_t)s.B * s.H * s.T * s.T;
    float *q = fnew(nq), *k = fnew(nk), *v = fnew(nk), *g = fnew(nq);
    float *out[3], *att[3], *dq[3], *dk[3], *dv[3];
    tu_fill(rng, q, nq, 2.0f);
    tu_fill(rng, k, nk, 2.0f);
    tu_fill(rng, v, nk, 1.0f);
    tu_fill(rng, g, nq, 1.0f);
    for (int t = 0; t < 3; t++) {
        const size_t ns = attention_scratch_floats(s.B, s.T, s.H, s.Hkv, s.hd, t + 1);
        float *scr = fnew(ns);
        out[t] = fnew(nq); att[t] = fnew(na); dq[t] = fnew(nq); dk[t] = fnew(nk);
        dv[t] = fnew(nk);
        attention_forward(out[t], att[t], q, k, v, s.B, s.T, s.H, s.Hkv, s.hd, t + 1, NULL);
        attention_backward(dq[t], dk[t], dv[t], scr, g, att[t], q, k, v, s.B, s.T, s.H, s.Hkv,
                           s.hd, t + 1, NULL);
        free(scr);
    }
    chk c;
    chk_begin(&c, "attention/threads_1_2_3_bitwise B=%d T=%d H=%d Hkv=%d hd=%d", s.B, s.T, s.H,
              s.Hkv, s.hd);
    for (int t = 1; t < 3; t++) {
        chk_same(&c, "out", out[t], out[0], nq);
        chk_same(&c, "att", att[t], att[0], na);
        chk_same(&c, "dq", dq[t], dq[0], nq);
        chk_same(&c, "dk", dk[t], dk[0], nk);
        chk_same(&c, "dv", dv[t], dv[0], nk);
    }
    chk_end(&c);
    for (int t = 0; t < 3; t++) { free(out[t]); free(att[t]); free(dq[t]); free(dk[t]); free(dv[t]); }
    free(q); free(k); free(v); free(g);
}

/* ------------------------------------------------------- cross-entropy */

/* Mean over valid rows of lse - logit[target] in double; lse [N] (may be NULL). */
static double ref_xent(double *lse, const double *l, const int32_t *tg, int N, int V,
                       int *n_valid) {
    double sum = 0;
    int nv = 0;
    for (int n = 0; n < N; n++) {
        double mx = -INFINITY, z = 0;
        for (int j = 0; j < V; j++) if (l[(size_t)n * V + j] > mx) mx = l[(size_t)n * V + j];
        for (int j = 0; j < V; j++) z += exp(l[(size_t)n * V + j] - mx);
        const double e = mx + log(z);
        if (lse) lse[n] = e;
        if (tg[n] >= 0) { sum += e - l[(size_t)n * V + tg[n]]; nv++; }
    }
    *n_valid = nv;
    return nv ? sum / nv : 0.0;
}

/* ignore_every > 0: every ignore_every-th row has target -1; all_ignored: all. */
static void test_xent_shape(int N, int V, int ignore_every, int all_ignored, float offset,
                            tu_rng *rng) {
    const size_t n = (size_t)N * V;
    float *l = fnew(n), *lse = fnew(N), *dl = fnew(n), *inpl = fnew(n), *got = fnew(n);
    double *ld = dnew(n), *lsed = dnew(N), *want = dnew(n);
    int32_t *tg = xmalloc((size_t)N * sizeof(int32_t));
    tu_fill(rng, l, n, 4.0f);
    for (int r = 0; r < N; r++) {
        for (int j = 0; j < V; j++) l[(size_t)r * V + j] += offset * (float)(r % 2);
        tg[r] = (int32_t)(tu_next(rng) % (uint64_t)V);
        if (all_ignored || (ignore_every > 0 && r % ignore_every == 1)) tg[r] = -1 - r % 3;
    }
    if (N > 2 && !all_ignored) tg[N - 1] = V - 1;
    to_d(ld, l, n);

    chk c;
    chk_begin(&c, "xent/forward N=%d V=%d%s%s", N, V, all_ignored ? " all_ignored" : "",
              offset != 0 ? " large_logits" : "");
    int nv = -1, nvd;
    const float loss = xent_forward(lse, l, tg, N, V, &nv, 2);
    const double lossd = ref_xent(lsed, ld, tg, N, V, &nvd);
    chk_true(&c, nv == nvd, "n_valid %d, want %d", nv, nvd);
    chk_err(&c, "lse", lse, lsed, N, 1e-6);
    chk_err(&c, "loss", &loss, &lossd, 1, TOL_FWD);
    if (all_ignored) chk_true(&c, loss == 0.0f, "loss %g with no valid row, want 0", (double)loss);
    chk_end(&c);

    /* Backward of the mean: scale = 1 / n_valid; FD of the double mean. */
    const float scale = nv ? 1.0f / (float)nv : 0.0f;
    fill_nan(dl, n);
    xent_backward(dl, l, lse, tg, N, V, scale, 2);
    chk_begin(&c, "xent/backward_fd N=%d V=%d%s%s", N, V, all_ignored ? " all_ignored" : "",
              offset != 0 ? " large_logits" : "");
    size_t *idx = xmalloc(n * sizeof(size_t));
    int m = fd_coords(idx, n, rng);
    /* When sampling, visit the target logit of the first valid row too. */
    for (int r = 0; r < N && m == FD_MAX; r++)
        if (tg[r] >= 0) { idx[2] = (size_t)r * V + tg[r]; break; }
    for (int q = 0; q < m; q++) {
        const double x0 = ld[idx[q]];
        ld[idx[q]] = x0 + FD_H;
        const double lp = ref_xent(NULL, ld, tg, N, V, &nvd);
        ld[idx[q]] = x0 - FD_H;
        const double lm = ref_xent(NULL, ld, tg, N, V, &nvd);
        ld[idx[q]] = x0;
        want[q] = (lp - lm) / (2 * FD_H);
        got[q] = dl[idx[q]];
    }
    chk_err(&c, "dlogits", got, want, m, all_ignored ? 0.0 : TOL_GRAD);
    for (int r = 0; r < N; r++)
        if (tg[r] < 0)
            for (int j = 0; j < V; j++)
                chk_true(&c, dl[(size_t)r * V + j] == 0.0f, "ignored row %d col %d: %g", r, j,
                         (double)dl[(size_t)r * V + j]);
    /* In place gives the same bits. */
    memcpy(inpl, l, n * sizeof(float));
    xent_backward(inpl, inpl, lse, tg, N, V, scale, 2);
    chk_same(&c, "in-place dlogits", inpl, dl, n);
    chk_end(&c);

    free(l); free(lse); free(dl); free(inpl); free(got); free(ld); free(lsed); free(want);
    free(tg); free(idx);
}

static void test_xent_threads(int N, int V, tu_rng *rng) {
    const size_t n = (size_t)N * V;
    float *l = fnew(n), *lse[3], *dl[3], loss[3];
    int32_t *tg = xmalloc((size_t)N * sizeof(int32_t));
    tu_fill(rng, l, n, 4.0f);
    for (int r = 0; r < N; r++) tg[r] = r % 5 == 0 ? -1 : (int32_t)(tu_next(rng) % (uint64_t)V);
    for (int t = 0; t < 3; t++) {
        int nv;
        lse[t] = fnew(N);
        dl[t] = fnew(n);
        loss[t] = xent_forward(lse[t], l, tg, N, V, &nv, t + 1);
        xent_backward(dl[t], l, lse[t], tg, N, V, 1.0f / (float)nv, t + 1);
    }
    chk c;
    chk_begin(&c, "xent/threads_1_2_3_bitwise N=%d V=%d", N, V);
    for (int t = 1; t < 3; t++) {
        chk_same(&c, "loss", &loss[t], &loss[0], 1);
        chk_same(&c, "lse", lse[t], lse[0], N);
        chk_same(&c, "dlogits", dl[t], dl[0], n);
    }
    chk_end(&c);
    for (int t = 0; t < 3; t++) { free(lse[t]); free(dl[t]); }
    free(l); free(tg);
}

/* A target >= V is a programmer error: the forward must abort (MOE_ASSERT),
 * checked in a child process. */
static void test_xent_bad_target(void) {
    fflush(stdout);
    const pid_t pid = fork();
    if (pid < 0) {
        tu_skip("xent/target_ge_V_asserts", "fork failed");
        return;
    }
    if (pid == 0) {
        if (!freopen("/dev/null", "w", stderr)) _exit(3);
        float l[6] = {0}, lse[2];
        const int32_t tg[2] = {1, 3}; /* V = 3 */
        int nv;
        xent_forward(lse, l, tg, 2, 3, &nv, 1);
        _exit(0);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    if (WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT) tu_ok("xent/target_ge_V_asserts (SIGABRT)");
    else tu_fail("xent/target_ge_V_asserts", "child status %d, want SIGABRT", st);
}

/* ---------------------------------------------------------------- main */

int main(void) {
    tu_rng rng = { 20240611u };

    const int rms[][2] = { {1, 1}, {1, 3}, {5, 7}, {3, 16}, {33, 64}, {4, 515} };
    for (size_t i = 0; i < sizeof rms / sizeof rms[0]; i++)
        test_rmsnorm_shape(rms[i][0], rms[i][1], 1.0f, &rng);
    test_rmsnorm_shape(6, 40, 0.004f, &rng); /* mean(x^2) ~ eps: eps matters */
    test_rmsnorm_threads(67, 515, &rng);

    test_rope_shape(1, 1, 2, 0, 1, 10000.0f, &rng);
    test_rope_shape(1, 1, 2, 1, 4, 10000.0f, &rng);
    test_rope_shape(7, 3, 8, 0, 32, 10000.0f, &rng);
    test_rope_shape(7, 3, 8, 1, 32, 10000.0f, &rng);
    test_rope_shape(9, 2, 6, 1, 512, 500000.0f, &rng);
    test_rope_shape(37, 4, 64, 0, 4096, 10000.0f, &rng);
    test_rope_shape(37, 4, 64, 1, 4096, 1000000.0f, &rng);

    /* B, T, H, Hkv, hd; T = 64 / 65 / 130 straddle the kernel's row blocks. */
    const attn_shape fd_shapes[] = {
        {1, 1, 1, 1, 2}, {2, 7, 4, 1, 8}, {2, 7, 2, 2, 3}, {1, 5, 6, 3, 4},
        {1, 65, 2, 2, 5}, {1, 70, 4, 2, 16}, {2, 130, 2, 1, 8},
    };
    for (size_t i = 0; i < sizeof fd_shapes / sizeof fd_shapes[0]; i++)
        test_attention_shape(fd_shapes[i], 1, &rng);
    test_attention_shape((attn_shape){1, 64, 4, 4, 32}, 0, &rng);
    test_attention_shape((attn_shape){1, 256, 4, 2, 64}, 0, &rng);
    test_attention_threads((attn_shape){2, 130, 4, 2, 16}, &rng);
    test_attention_threads((attn_shape){1, 200, 4, 4, 64}, &rng);

    test_xent_shape(1, 1, 0, 0, 0.0f, &rng);
    test_xent_shape(3, 2, 0, 0, 0.0f, &rng);
    test_xent_shape(5, 17, 2, 0, 0.0f, &rng);
    test_xent_shape(7, 1000, 3, 0, 0.0f, &rng);
    test_xent_shape(4, 33, 0, 1, 0.0f, &rng);
    test_xent_shape(6, 300, 4, 0, 1000.0f, &rng); /* exp(1000) would overflow unshifted */
    test_xent_threads(64, 4099, &rng);
    test_xent_bad_target();

    return tu_exit_code();
}
