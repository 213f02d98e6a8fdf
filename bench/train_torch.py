#!/usr/bin/env python3
"""train_torch.py: the PyTorch CPU peer of `moe bench train` (cli/bench_train.c).

Builds the same model as `moe bench train --big` (or --demo), in float32,
written the way a PyTorch user would write a fast CPU MoE, and times whole
training steps (zero_grad, forward, backward, clip_grad_norm_, AdamW) on
random tokens: warm-up step(s), then best-of-N and mean. Also times a dense
fp32 GEMM with torch.mm (2048 x 2048 x 512, C = A B^T as ours) in the same
run: torch's fp32 GEMMs are the BLAS sgemm, OpenBLAS on this install.
Prints figures; asserts nothing except that the parameter and FLOP counts
equal moe_model_count's formula (src/model/model_config.c).

Not for: correctness (tests/test_model_torch.py compares our model against
an independent float64 reference); this file only has to be the same
amount of work, done as fast as PyTorch can.

The model (include/moe.h, src/model/model_pass.c):
  x = token_embd[tokens]                                           [B, T, d]
  per block: n1 = rmsnorm(x) * attn_norm,  rmsnorm = x / sqrt(mean x^2 + eps)
    q, k, v = n1 Wq^T, n1 Wk^T, n1 Wv^T (one fused [Wq; Wk; Wv] linear, no bias)
    RoPE on q, k, adjacent pairs (x[2i], x[2i+1]) turned by pos theta^(-2i/hd)
    causal softmax(q k^T / sqrt(hd)) v (GQA: query head h reads kv head h / (H/Hkv))
    h = x + ao Wo^T;  n2 = rmsnorm(h) * ffn_norm
    MoE over the B*T rows: softmax router, top-k, renormalised (config),
    SwiGLU experts down(silu(gate x) * up x) (gate and up fused per expert);
    aux = alpha E sum_i f_i P_i (f_i = routed_i / (N k), constant),
    z = beta mean_t logsumexp(logits_t)^2;  x = h + moe(n2)
  logits = (rmsnorm(x) * output_norm) Wout^T (untied); ce = mean cross-entropy
  objective = ce + sum over layers of (aux + z)
AdamW as src/train/adamw.c: betas (0.9, 0.95), eps 1e-8, weight decay 0.1
on matrices only (not the norm weights), global-norm clipping at 1.0, lr 1e-4.
Initialisation: matrices N(0, 0.02), residual outputs (Wo, expert down)
N(0, 0.02 / sqrt(2 L)), norms 1 (the same distribution, not the same numbers).

Usage: /usr/bin/python3 bench/train_torch.py [--demo|--big] [--steps N] [--threads T]
       [--warmup W] [--attn baddbmm|masked] [--rope real|complex]
       [--no-fuse] [--foreach 0|1] [--no-keep-heap] [-v]
Summary lines (parsed by bench/compare_train.sh):
  torch OpenBLAS sgemm 2048x2048x512 threads=T: X ms, Y GFLOP/s (best of before and after the steps)
  torch big threads=T: step X ms (forward Y ms, clip+AdamW Z ms), best of N: R tokens/s (mean M),
    G GFLOP/s model = ...
Choices, measured on this install (Debian torch 1.13, 2 cores): there is
no torch.compile (2.0+) nor scaled_dot_product_attention (2.0+), so
attention is one baddbmm (scale + additive causal mask) + softmax + bmm;
RoPE through complex multiplication (2x faster than flip/mul/add); experts as
a ModuleList fed by one split of the sorted rows (the backward of a slice,
or of a stacked [E, ...] parameter indexed per expert, zero-fills a
full-size gradient per expert); AdamW foreach=False (1.13's CPU
foreach path is slower: 0.54 vs 0.68-0.83 s per step at 1 thread); 2
warm-up steps (the step after the AdamW state appears runs its forward up to
3x slower while the heap settles); glibc malloc kept from unmapping large
blocks (keep_heap: 1-3% on a quiet machine). Fused q/k/v and gate/up
linears are the same model (concatenated weights; AdamW is elementwise and
the clipping norm global): loaded with libmoe's parameters (big config,
B = 2) it gave the same losses to 1e-7 and gradients to 2e-6 relative.
"""
import argparse
import ctypes
import math
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


# ------------------------------------------------------------ configurations
def big_config():
    """cli/bench_train.c big_config(): moe_train_config_default + overrides."""
    return dict(name="big", V=4096, d=512, L=8, H=8, Hkv=8, hd=0, ctx=256, E=8, k=2, F=1408,
                renorm=True, aux=0.01, z=0.001, batch=8, eps=1e-5, theta=10000.0)


def demo_config():
    """moe_train_config_default (src/train/trainer.c) on moe_model_config_default."""
    return dict(name="demo", V=768, d=128, L=4, H=4, Hkv=2, hd=0, ctx=128, E=8, k=2, F=192,
                renorm=True, aux=0.01, z=0.001, batch=16, eps=1e-5, theta=10000.0)


def head_dim(c):
    return c["hd"] if c["hd"] else c["d"] // c["H"]


def model_count(c):
    """moe_model_count (src/model/model_config.c), every block MoE, SwiGLU
    experts, untied: (total params, active params, train FLOPs per token)."""
    d, V, H, Hkv, hd = c["d"], c["V"], c["H"], c["Hkv"], head_dim(c)
    total = V * d + d + V * d
    active = float(total)
    mm = float(V * d)                              # multiply-adds per token: head
    for _ in range(c["L"]):
        attn = 2 * d + d * H * hd * 2 + d * Hkv * hd * 2
        total += attn
        active += attn
        mm += attn - 2 * d
        mm += 2.0 * H * hd * (c["ctx"] + 1) / 2.0  # scores + values, causal prefix
        ex, other, frac = c["E"] * 3 * c["F"] * d, c["E"] * d, c["k"] / c["E"]
        total += ex + other
        active += ex * frac + other
        mm += ex * frac + other
    return total, int(round(active)), 6.0 * mm


# ------------------------------------------------------------------- model
def rmsnorm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


class Expert(nn.Module):
    """SwiGLU expert: down(silu(gate x) * up x); gate and up in one linear."""

    def __init__(self, d, Fh, fuse):
        super().__init__()
        self.Fh, self.fuse = Fh, fuse
        if fuse:
            self.gate_up = nn.Linear(d, 2 * Fh, bias=False)   # rows [gate; up]
        else:
            self.gate = nn.Linear(d, Fh, bias=False)
            self.up = nn.Linear(d, Fh, bias=False)
        self.down = nn.Linear(Fh, d, bias=False)

    def forward(self, x):
        if self.fuse:
            g, u = self.gate_up(x).split(self.Fh, dim=-1)
        else:
            g, u = self.gate(x), self.up(x)
        return self.down(F.silu(g) * u)


class Block(nn.Module):
    def __init__(self, c, fuse, attn_kind, rope_kind):
        super().__init__()
        d, H, Hkv, hd = c["d"], c["H"], c["Hkv"], head_dim(c)
        self.c, self.H, self.Hkv, self.hd = c, H, Hkv, hd
        self.fuse, self.attn_kind, self.rope_kind = fuse, attn_kind, rope_kind
        self.attn_norm = nn.Parameter(torch.ones(d))
        if fuse:
            self.wqkv = nn.Linear(d, (H + 2 * Hkv) * hd, bias=False)
        else:
            self.wq = nn.Linear(d, H * hd, bias=False)
            self.wk = nn.Linear(d, Hkv * hd, bias=False)
            self.wv = nn.Linear(d, Hkv * hd, bias=False)
        self.wo = nn.Linear(H * hd, d, bias=False)
        self.ffn_norm = nn.Parameter(torch.ones(d))
        self.router = nn.Linear(d, c["E"], bias=False)
        self.experts = nn.ModuleList(Expert(d, c["F"], fuse) for _ in range(c["E"]))

    def rope(self, x, tabs):
        """x [B, T, nh, hd] -> rotated, pairs (x[2i], x[2i+1])."""
        B, T, nh, hd = x.shape
        if self.rope_kind == "complex":
            xc = torch.view_as_complex(x.reshape(B, T, nh, hd // 2, 2))
            return torch.view_as_real(xc * tabs["cis"][:T]).reshape(B, T, nh, hd)
        sw = x.reshape(B, T, nh, hd // 2, 2).flip(-1).reshape(B, T, nh, hd)  # (b, a)
        return x * tabs["cos2"][:T] + sw * tabs["sin2"][:T]

    def attention(self, n1, B, T, tabs):
        H, Hkv, hd = self.H, self.Hkv, self.hd
        if self.fuse:
            q, k, v = self.wqkv(n1).split((H * hd, Hkv * hd, Hkv * hd), dim=-1)
        else:
            q, k, v = self.wq(n1), self.wk(n1), self.wv(n1)
        q = self.rope(q.reshape(B, T, H, hd), tabs).transpose(1, 2)      # [B, H, T, hd]
        k = self.rope(k.reshape(B, T, Hkv, hd), tabs).transpose(1, 2)    # [B, Hkv, T, hd]
        v = v.reshape(B, T, Hkv, hd).transpose(1, 2)
        if Hkv != H:
            k = k.repeat_interleave(H // Hkv, dim=1)
            v = v.repeat_interleave(H // Hkv, dim=1)
        scale = 1.0 / math.sqrt(hd)
        q, k, v = (t.reshape(B * H, T, hd) for t in (q, k, v))
        if self.attn_kind == "baddbmm":
            # scale, mask (0 / -inf) and Q K^T in one BLAS call
            s = torch.baddbmm(tabs["mask_add"][:T, :T], q, k.transpose(1, 2), alpha=scale)
        else:
            s = torch.bmm(q, k.transpose(1, 2)).mul_(scale).masked_fill_(tabs["mask_bool"][:T, :T], float("-inf"))
        o = torch.bmm(s.softmax(dim=-1), v)                               # [B*H, T, hd]
        return self.wo(o.reshape(B, H, T, hd).transpose(1, 2).reshape(B * T, H * hd))

    def moe(self, x):
        """x [N, d] -> (y [N, d], aux + z). Tokens sorted by expert, one
        gather, a loop of per-expert GEMMs, one index_add_ combine."""
        c = self.c
        N, E, k = x.shape[0], c["E"], c["k"]
        logits = self.router(x)                                          # [N, E]
        probs = logits.softmax(dim=-1)
        w, idx = probs.topk(k, dim=-1)                                   # [N, k]
        if c["renorm"]:
            w = w / w.sum(dim=-1, keepdim=True)
        flat = idx.reshape(-1)                                           # [N k]
        _, order = torch.sort(flat, stable=True)
        counts = torch.bincount(flat, minlength=E)
        tok = order // k                                                 # token of each sorted row
        xs = x.index_select(0, tok)                                      # [N k, d]
        ws = w.reshape(-1).index_select(0, order)                        # [N k]
        cl = counts.tolist()
        # split (not slices): its backward is one cat, not a zero-filled
        # [N k, d] gradient per expert
        outs = [self.experts[e](xe) for e, xe in enumerate(xs.split(cl)) if cl[e]]
        out = torch.cat(outs) * ws.unsqueeze(1)
        y = torch.zeros_like(x).index_add_(0, tok, out)
        f = counts.to(x.dtype) / float(N * k)                            # constant
        loss = c["aux"] * E * (f * probs.mean(dim=0)).sum()
        loss = loss + c["z"] * torch.logsumexp(logits, dim=-1).pow(2).mean()
        return y, loss

    def forward(self, x, B, T, tabs):
        eps = self.c["eps"]
        h = x + self.attention(rmsnorm(x, self.attn_norm, eps), B, T, tabs)
        y, rl = self.moe(rmsnorm(h, self.ffn_norm, eps))
        return h + y, rl


class Model(nn.Module):
    def __init__(self, c, fuse=True, attn_kind="baddbmm", rope_kind="complex"):
        super().__init__()
        self.c = c
        self.token_embd = nn.Embedding(c["V"], c["d"])
        self.blocks = nn.ModuleList(Block(c, fuse, attn_kind, rope_kind) for _ in range(c["L"]))
        self.output_norm = nn.Parameter(torch.ones(c["d"]))
        self.output = nn.Linear(c["d"], c["V"], bias=False)
        self.tabs = self.tables()
        self.init_params()

    def tables(self):
        c, hd = self.c, head_dim(self.c)
        T = c["ctx"]
        i = torch.arange(hd // 2, dtype=torch.float64)
        ang = torch.arange(T, dtype=torch.float64)[:, None] * (c["theta"] ** (-2.0 * i / hd))[None, :]
        cos, sin = torch.cos(ang).float(), torch.sin(ang).float()        # [T, hd/2]
        cos2 = cos.repeat_interleave(2, dim=-1)[:, None, :]              # [T, 1, hd]
        sin2 = torch.stack((-sin, sin), dim=-1).reshape(T, hd)[:, None, :]
        mask_bool = torch.ones(T, T, dtype=torch.bool).triu(1)
        mask_add = torch.zeros(T, T).masked_fill(mask_bool, float("-inf"))
        return dict(cos2=cos2.contiguous(), sin2=sin2.contiguous(),
                    cis=torch.polar(torch.ones_like(cos), ang.float())[:, None, :],
                    mask_bool=mask_bool, mask_add=mask_add)

    @torch.no_grad()
    def init_params(self):
        std, std_out = 0.02, 0.02 / math.sqrt(2.0 * self.c["L"])
        for name, p in self.named_parameters():
            if p.dim() == 1:
                p.fill_(1.0)
            else:
                p.normal_(0.0, std_out if (name.endswith("wo.weight") or ".down." in name) else std)

    def forward(self, tokens, targets):
        B, T = tokens.shape
        x = self.token_embd(tokens).reshape(B * T, -1)                   # [N, d]
        router_loss = 0.0
        for blk in self.blocks:
            x, rl = blk(x, B, T, self.tabs)
            router_loss = router_loss + rl
        logits = self.output(rmsnorm(x, self.output_norm, self.c["eps"]))  # [N, V]
        ce = F.cross_entropy(logits, targets.reshape(-1))
        return ce + router_loss, ce


def counted(model, c):
    """(total, active) parameters of the built model: experts count k/E."""
    total = active = 0.0
    for name, p in model.named_parameters():
        total += p.numel()
        active += p.numel() * (c["k"] / c["E"] if ".experts." in name else 1.0)
    return int(total), int(round(active))


# ------------------------------------------------------------------ BLAS
def blas_report(threads):
    """(config line, runtime BLAS line): the libblas.so.3 torch loaded and,
    when it is OpenBLAS, its core and thread count (set to `threads`:
    torch.set_num_threads does not reach OpenBLAS's own pthread pool)."""
    cfg = [l.strip() for l in torch.__config__.show().splitlines() if "BLAS" in l]
    cfg_line = "; ".join(cfg)
    import re
    m = re.search(r"BLAS_INFO=([^,]*)", cfg_line)
    cfg_line = ("BLAS_INFO=" + m.group(1)) if m else cfg_line
    libs = set()
    with open("/proc/self/maps") as f:
        for line in f:
            p = line.split()[-1]
            if "blas" in p.lower() and p.startswith("/"):
                libs.add(os.path.realpath(p))
    rt = "loaded: " + ", ".join(sorted(libs))
    try:
        ob = ctypes.CDLL("libopenblas.so.0")
        ob.openblas_get_config.restype = ctypes.c_char_p
        ob.openblas_get_corename.restype = ctypes.c_char_p
        ob.openblas_set_num_threads(ctypes.c_int(threads))
        rt += "; OpenBLAS %s, core %s, %d threads" % (
            ob.openblas_get_config().decode().split()[1], ob.openblas_get_corename().decode(),
            ob.openblas_get_num_threads())
    except (OSError, AttributeError) as e:
        rt += "; not OpenBLAS (%s)" % e
    return cfg_line, rt


def time_gemm(M=2048, N=2048, K=512, iters=5):
    """Best of `iters` C[M, N] = A[M, K] B[N, K]^T (torch.mm -> sgemm)."""
    g = torch.Generator().manual_seed(1)
    A = torch.rand(M, K, generator=g) * 2 - 1
    Bm = torch.rand(N, K, generator=g) * 2 - 1
    C = torch.empty(M, N)
    torch.mm(A, Bm.t(), out=C)
    best = 1e30
    for _ in range(iters):
        t0 = time.perf_counter()
        torch.mm(A, Bm.t(), out=C)
        best = min(best, time.perf_counter() - t0)
    return best, 2.0 * M * N * K / best * 1e-9


def keep_heap():
    """glibc malloc serves blocks over 128 KiB-32 MiB by mmap and gives them
    back on free, so every large temporary of a step page-faults fresh
    zeroed pages (PyTorch's CPU allocator is plain malloc). Keep them in the
    heap instead: the effect of LD_PRELOADing jemalloc/tcmalloc, without
    the library. Returns whether mallopt accepted it."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    big = ctypes.c_int(1 << 30)
    return bool(libc.mallopt(M_MMAP_THRESHOLD, big)) and bool(libc.mallopt(M_TRIM_THRESHOLD, big))


# ------------------------------------------------------------------ bench
def lcg_tokens(state, N, V):
    """The token stream of bench_train.c: s = s * 1664525 + 1013904223,
    x = (s >> 8) % V, y = (s >> 4) % V."""
    x, y, s = [0] * N, [0] * N, state
    for i in range(N):
        s = (s * 1664525 + 1013904223) & 0xFFFFFFFF
        x[i] = (s >> 8) % V
        y[i] = (s >> 4) % V
    return x, y, s


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--big", action="store_true", help="d=512, 8 layers, 8 experts top-2, ctx 256 (default)")
    g.add_argument("--demo", action="store_true", help="make demo's model")
    ap.add_argument("--steps", type=int, default=3, help="timed steps (best and mean of these)")
    ap.add_argument("--warmup", type=int, default=2,
                    help="untimed steps first (2: the heap settles after the AdamW state appears)")
    ap.add_argument("--threads", type=int, default=0, help="torch and OpenBLAS threads (0: all cores)")
    ap.add_argument("--attn", choices=("baddbmm", "masked"), default="baddbmm")
    ap.add_argument("--rope", choices=("real", "complex"), default="complex")
    ap.add_argument("--no-fuse", action="store_true", help="separate q/k/v and gate/up linears")
    ap.add_argument("--foreach", type=int, choices=(0, 1), default=0,
                    help="AdamW's foreach implementation (1.13 has no fused CPU kernels for it: slower)")
    ap.add_argument("--no-keep-heap", action="store_true", help="leave glibc malloc's mmap threshold alone")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every step's times")
    a = ap.parse_args()
    if a.steps < 1 or a.warmup < 0:
        ap.error("--steps must be >= 1 and --warmup >= 0")
    heap = False if a.no_keep_heap else keep_heap()
    nt = a.threads if a.threads > 0 else (len(os.sched_getaffinity(0)) or 1)
    torch.set_num_threads(nt)
    c = demo_config() if a.demo else big_config()
    cfg_line, rt_line = blas_report(nt)

    tg, gemm = time_gemm()
    print("torch %s (%s), threads %d (torch %d, interop %d); OMP_WAIT_POLICY=%s OPENBLAS_CORETYPE=%s "
          "OPENBLAS_L2_SIZE=%s OPENBLAS_NUM_THREADS=%s OMP_NUM_THREADS=%s" % (
              torch.__version__, sys.executable, nt, torch.get_num_threads(), torch.get_num_interop_threads(),
              *(os.environ.get(v, "unset") for v in ("OMP_WAIT_POLICY", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
                                                      "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"))))
    print("torch BLAS: config %s; %s" % (cfg_line, rt_line))
    print("torch OpenBLAS sgemm 2048x2048x512 threads=%d, before the steps: %.2f ms, %.1f GFLOP/s"
          % (nt, tg * 1e3, gemm))

    torch.manual_seed(1)
    model = Model(c, fuse=not a.no_fuse, attn_kind=a.attn, rope_kind=a.rope)
    total, active, flops = model_count(c)
    mt, ma = counted(model, c)
    if (mt, ma) != (total, active):
        print("torch %s: parameter count %d (%d active) differs from moe_model_count's %d (%d active)"
              % (c["name"], mt, ma, total, active), file=sys.stderr)
        return 1
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=1e-4, betas=(0.9, 0.95), eps=1e-8, foreach=bool(a.foreach))
    params = list(model.parameters())
    B, T = c["batch"], c["ctx"]
    N = B * T
    print("%-5s d=%d L=%d E=%d k=%d ctx=%d batch=%d: %.1fM params (%.1fM active), %.0f MFLOP/token "
          "[%d, %d; fuse=%d attn=%s rope=%s foreach=%d keep_heap=%d]" % (
              c["name"], c["d"], c["L"], c["E"], c["k"], T, B, total / 1e6, active / 1e6, flops / 1e6,
              total, active, not a.no_fuse, a.attn, a.rope, a.foreach, heap))
    sys.stdout.flush()

    s = 12345
    best = fwd_best = opt_best = 1e30
    tot = 0.0
    for it in range(a.warmup + a.steps):
        xs, ys, s = lcg_tokens(s, N, c["V"])
        x = torch.tensor(xs, dtype=torch.long).reshape(B, T)
        y = torch.tensor(ys, dtype=torch.long).reshape(B, T)
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss, ce = model(x, y)
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        t3 = time.perf_counter()
        opt.step()
        t = time.perf_counter() - t0
        if a.verbose:
            print("  step %d%s: %.1f ms (forward %.1f, backward %.1f, clip %.1f, AdamW %.1f ms), loss %.4f" % (
                it, " (warm-up)" if it < a.warmup else "", t * 1e3, (t1 - t0) * 1e3, (t2 - t1) * 1e3,
                (t3 - t2) * 1e3, (t0 + t - t3) * 1e3, float(loss)))
        if it >= a.warmup:
            best, fwd_best, tot = min(best, t), min(fwd_best, t1 - t0), tot + t
            opt_best = min(opt_best, t0 + t - t2)
    tg2, gemm2 = time_gemm()   # again after the steps: the best of both (a shared machine)
    if gemm2 > gemm:
        tg, gemm = tg2, gemm2
    print("torch OpenBLAS sgemm 2048x2048x512 threads=%d: %.2f ms, %.1f GFLOP/s (best of before and after the steps)"
          % (nt, tg * 1e3, gemm))
    tps, mean_tps = N / best, N * a.steps / tot
    print("torch %s threads=%d: step %.1f ms (forward %.1f ms, clip+AdamW %.1f ms), best of %d: %.0f tokens/s "
          "(mean %.0f), %.1f GFLOP/s model = %.2f of the sgemm's %.1f (loss %.4f)" % (
              c["name"], nt, best * 1e3, fwd_best * 1e3, opt_best * 1e3, a.steps, tps, mean_tps, flops * tps * 1e-9,
              flops * tps * 1e-9 / gemm, gemm, float(loss)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
