#!/usr/bin/env python3
"""test_model_torch.py: the transformer language model of libmoe
(moe_model_*, moe_adamw_*, moe_lr_schedule) against an independent PyTorch
reference.

Not for: the MoE layer alone (test_layer_torch.py) or finite differences and
the error paths of the C API (test_model.c).

The reference is written from the specification of include/moe.h, not from
the C loops:
  x = token_embd[tokens]                                         [B, T, d]
  per block: n1 = rmsnorm(x) * attn_norm, rmsnorm(x) = x / sqrt(mean x^2 + eps)
    q, k, v = n1 Wq^T, n1 Wk^T, n1 Wv^T (W[out, in], no bias)
    RoPE on q, k: per head, pair (x[2i], x[2i+1]) turned by pos * theta^(-2i/hd)
    causal softmax(q k^T / sqrt(hd)) v, query head h reads kv head h / (H/Hkv)
    h = x + ao Wo^T;  n2 = rmsnorm(h) * ffn_norm
    MoE layer over the B*T rows (softmax router, top-k ties to the lower
    index, renormalised when asked, SwiGLU experts down(silu(gate x) * up x),
    aux = alpha E sum_i f_i P_i with f_i = routed_i / (N k) constant,
    z = beta mean_t lse_t^2) or dense SwiGLU;  x = h + ffn(n2)
  logits = (rmsnorm(x) * output_norm) Wout^T, Wout = token_embd when tied
  ce = mean over targets >= 0 of lse - logit[target]
  objective = ce + sum over MoE layers of (aux + z)
The reference runs in float64 (the truth the fp32 C code is measured against)
and once in float32 (to show that the tolerance is what fp32 reaches).

Checks per configuration: the tensor table (names, shapes, decay flags), the
initialisation, logits, ce / aux / z, the routing decisions, every parameter
gradient (max|c - ref| / max|ref| <= 1e-4), then a 10-step AdamW trajectory
(moe_lr_schedule + moe_adamw_step against torch.optim.AdamW with
clip_grad_norm_): loss and gradient norm at every step, final parameters.

Prints "ok NAME ..." / "FAIL NAME: ..." per check, exits 1 if any failed.
Without torch/numpy: SKIPPED (FAIL when CI=true).
"""
import math
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import torch_guard

np, torch = torch_guard.import_torch("test_model_torch")

import ctypes

import moe_ctypes as mc
from checks import ok, fail, check, note, fmt_idx, f32, counts

TOL = 1e-4          # fp32 C against the float64 reference
TRAJ_TOL = 1e-4     # losses along the AdamW trajectory
PARAM_TOL = 3e-4    # final parameters after 10 steps (loosely: Adam divides
                    # by |g|, so rounding-level gradients move by up to lr)


def rel_err(c, ref):
    """(max|c - ref| / max|ref|, flat index of the worst); NaN is the worst."""
    c = np.asarray(c, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    scale = max(float(np.max(np.abs(ref))) if ref.size else 0.0, 1e-30)
    diff = np.abs(c - ref)
    diff = np.where(np.isfinite(diff), diff, np.inf)
    i = int(np.argmax(diff)) if diff.size else 0
    return (float(diff.flat[i]) / scale if diff.size else 0.0), i


def close(name, c, ref, tol=TOL):
    """ok NAME max_rel=... or FAIL with the worst index and both values."""
    c = np.asarray(c, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if c.shape != ref.shape:
        fail(name, "shape %s, reference %s" % (c.shape, ref.shape))
        return False
    err, i = rel_err(c, ref)
    if err <= tol:
        ok("%s max_rel=%.1e" % (name, err))
        return True
    idx = np.unravel_index(i, ref.shape) if ref.ndim else ()
    fail(name, "worst index %s: c=%.9g ref=%.9g, max_rel %.3e > %.0e (max|ref| %.3e)"
         % (fmt_idx(idx), c.flat[i], ref.flat[i], err, tol, float(np.max(np.abs(ref)))))
    return False


# -------------------------------------------------------- the reference
def is_moe(cfg, l):
    """The rule of moe.h: MoE when moe_every > 0, l >= n_dense_first and
    (l - n_dense_first) % moe_every == 0."""
    return cfg.moe_every > 0 and l >= cfg.n_dense_first and \
        (l - cfg.n_dense_first) % cfg.moe_every == 0


def head_dim(cfg):
    return cfg.head_dim if cfg.head_dim else cfg.d_model // cfg.n_heads


def expected_table(cfg):
    """[(name, shape, decay)] the model of cfg should have, in table order."""
    d, V, H, Hkv, hd = cfg.d_model, cfg.vocab_size, cfg.n_heads, cfg.n_kv_heads, head_dim(cfg)
    E, Fe, F = cfg.moe.n_experts, cfg.moe.d_ff, cfg.d_ff
    t = [("token_embd.weight", (V, d), 1)]
    for l in range(cfg.n_layers):
        b = "blk.%d." % l
        t += [(b + "attn_norm.weight", (d,), 0), (b + "attn_q.weight", (H * hd, d), 1),
              (b + "attn_k.weight", (Hkv * hd, d), 1), (b + "attn_v.weight", (Hkv * hd, d), 1),
              (b + "attn_output.weight", (d, H * hd), 1), (b + "ffn_norm.weight", (d,), 0)]
        if is_moe(cfg, l):
            t += [(b + "ffn_gate_inp.weight", (E, d), 1), (b + "ffn_gate_exps.weight", (E, Fe, d), 1),
                  (b + "ffn_up_exps.weight", (E, Fe, d), 1), (b + "ffn_down_exps.weight", (E, d, Fe), 1)]
        else:
            t += [(b + "ffn_gate.weight", (F, d), 1), (b + "ffn_up.weight", (F, d), 1),
                  (b + "ffn_down.weight", (d, F), 1)]
    t.append(("output_norm.weight", (d,), 0))
    if not cfg.tie_embeddings:
        t.append(("output.weight", (V, d), 1))
    return t


def rmsnorm(x, w, eps):
    return x * torch.rsqrt((x * x).mean(dim=-1, keepdim=True) + eps) * w


def rope(x, theta):
    """x [B, T, nh, hd]: pair (x[2i], x[2i+1]) of each head turned by the
    angle pos * theta^(-2i/hd), pos = 0..T-1 in every sequence."""
    B, T, nh, hd = x.shape
    i = torch.arange(hd // 2, dtype=torch.float64)
    inv = torch.tensor(float(theta), dtype=torch.float64) ** (-2.0 * i / hd)
    ang = torch.arange(T, dtype=torch.float64)[:, None] * inv[None, :]      # [T, hd/2]
    cos = torch.cos(ang).to(x.dtype)[None, :, None, :]
    sin = torch.sin(ang).to(x.dtype)[None, :, None, :]
    a, b = x[..., 0::2], x[..., 1::2]
    return torch.stack((a * cos - b * sin, a * sin + b * cos), dim=-1).reshape(B, T, nh, hd)


def attention(q, k, v):
    """q [B, T, H, hd], k, v [B, T, Hkv, hd] -> [B, T, H*hd], causal."""
    B, T, H, hd = q.shape
    Hkv = k.shape[2]
    rep = H // Hkv
    q = q.transpose(1, 2)                                   # [B, H, T, hd]
    k = k.transpose(1, 2).repeat_interleave(rep, dim=1)     # head h -> kv h // rep
    v = v.transpose(1, 2).repeat_interleave(rep, dim=1)
    s = q @ k.transpose(-1, -2) / math.sqrt(hd)
    mask = torch.ones(T, T, dtype=torch.bool).triu(1)
    s = s.masked_fill(mask, float("-inf"))
    o = torch.softmax(s, dim=-1) @ v                         # [B, H, T, hd]
    return o.transpose(1, 2).reshape(B, T, H * hd)


def swiglu(x, gate, up, down):
    g = x @ gate.t()
    return (torch.nn.functional.silu(g) * (x @ up.t())) @ down.t()


def moe_ffn(x, Wr, Wg, Wu, Wd, mc_cfg):
    """x [N, d] -> (y [N, d], aux, z, experts [N, k] int, min top-k margin)."""
    E, k = mc_cfg.n_experts, mc_cfg.top_k
    N = x.shape[0]
    logits = x @ Wr.t()                                      # [N, E]
    p = torch.softmax(logits, dim=1)
    pn = p.detach().double().numpy()
    order = np.argsort(-pn, axis=1, kind="stable")          # ties: lower index first
    ex = order[:, :k]
    srt = -np.sort(-pn, axis=1)
    m = min(k + 1, E)
    margin = float(np.min(srt[:, :m - 1] - srt[:, 1:m])) if m > 1 else np.inf
    idx = torch.tensor(ex, dtype=torch.long)
    w = p.gather(1, idx)
    if mc_cfg.renormalize:
        w = w / w.sum(dim=1, keepdim=True)
    w = w * f32(mc_cfg.weight_scale)
    y = torch.zeros_like(x)
    for e in range(E):
        rows, slot = np.nonzero(ex == e)
        if len(rows) == 0:
            continue
        r = torch.tensor(rows, dtype=torch.long)
        out = swiglu(x[r], Wg[e], Wu[e], Wd[e])
        y = y.index_add(0, r, w[r, torch.tensor(slot, dtype=torch.long)][:, None] * out)
    f = torch.tensor(np.bincount(ex.ravel(), minlength=E) / float(N * k), dtype=x.dtype)
    aux = f32(mc_cfg.aux_loss_coef) * E * (f * p.mean(dim=0)).sum()
    z = f32(mc_cfg.z_loss_coef) * (torch.logsumexp(logits, dim=1) ** 2).mean()
    return y, aux, z, ex, w.detach().double().numpy(), margin


def reference_forward(cfg, P, tokens, targets):
    """P: name -> torch tensor (any float dtype). Returns a dict with logits
    [N, V], ce, aux, z, objective (tensors), routing {l: (experts, gate
    weights)} and the smallest top-k margin."""
    B, T = tokens.shape
    d, H, Hkv, hd = cfg.d_model, cfg.n_heads, cfg.n_kv_heads, head_dim(cfg)
    eps, theta = f32(cfg.norm_eps), f32(cfg.rope_theta)
    x = P["token_embd.weight"][torch.tensor(tokens, dtype=torch.long)]   # [B, T, d]
    aux_sum = torch.zeros((), dtype=x.dtype)
    z_sum = torch.zeros((), dtype=x.dtype)
    routing, margin = {}, np.inf
    for l in range(cfg.n_layers):
        b = "blk.%d." % l
        n1 = rmsnorm(x, P[b + "attn_norm.weight"], eps)
        q = rope((n1 @ P[b + "attn_q.weight"].t()).reshape(B, T, H, hd), theta)
        k = rope((n1 @ P[b + "attn_k.weight"].t()).reshape(B, T, Hkv, hd), theta)
        v = (n1 @ P[b + "attn_v.weight"].t()).reshape(B, T, Hkv, hd)
        h = x + attention(q, k, v) @ P[b + "attn_output.weight"].t()
        n2 = rmsnorm(h, P[b + "ffn_norm.weight"], eps)
        if is_moe(cfg, l):
            y, aux, z, ex, w, mg = moe_ffn(n2.reshape(B * T, d), P[b + "ffn_gate_inp.weight"],
                                        P[b + "ffn_gate_exps.weight"], P[b + "ffn_up_exps.weight"],
                                        P[b + "ffn_down_exps.weight"], cfg.moe)
            y = y.reshape(B, T, d)
            aux_sum = aux_sum + aux
            z_sum = z_sum + z
            routing[l] = (ex, w)
            margin = min(margin, mg)
        else:
            y = swiglu(n2, P[b + "ffn_gate.weight"], P[b + "ffn_up.weight"], P[b + "ffn_down.weight"])
        x = h + y
    nf = rmsnorm(x, P["output_norm.weight"], eps)
    Wout = P["token_embd.weight"] if cfg.tie_embeddings else P["output.weight"]
    logits = (nf @ Wout.t()).reshape(B * T, -1)
    tg = torch.tensor(np.asarray(targets).reshape(-1), dtype=torch.long)
    valid = tg >= 0
    lse = torch.logsumexp(logits, dim=1)
    picked = logits.gather(1, tg.clamp(min=0)[:, None])[:, 0]
    ce = (lse - picked)[valid].mean()
    return {"logits": logits, "ce": ce, "aux": aux_sum, "z": z_sum,
            "objective": ce + aux_sum + z_sum, "routing": routing, "margin": margin,
            "n_targets": int(valid.sum())}


def torch_params(model, dtype):
    """Leaf tensors (requires_grad) holding copies of the C parameters."""
    return {t["name"]: torch.tensor(t["data"].astype(np.float64), dtype=dtype, requires_grad=True)
            for t in model.tensors()}


# ------------------------------------------------------- configurations
def make_cfg(lib, **kw):
    c = mc.ModelConfig()
    lib.moe_model_config_default(ctypes.byref(c))
    moe = kw.pop("moe", {})
    for name, v in kw.items():
        setattr(c, name, v)
    for name, v in moe.items():
        setattr(c.moe, name, v)
    return c


def configs(lib):
    moe_a = dict(n_experts=4, top_k=2, d_ff=24, renormalize=1, aux_loss_coef=0.01, z_loss_coef=0.001)
    moe_b2 = dict(moe_a, renormalize=0, aux_loss_coef=0.02, z_loss_coef=0.002)
    base = dict(vocab_size=61, d_model=32, n_heads=4, n_kv_heads=2, d_ff=40, ctx_len=12,
                max_batch=4, n_threads=2)
    return [
        ("a", make_cfg(lib, n_layers=2, moe_every=1, tie_embeddings=0, moe=moe_a, **base), 3, 9),
        ("b", make_cfg(lib, n_layers=3, moe_every=2, n_dense_first=0, tie_embeddings=1,
                       moe=moe_a, **base), 3, 9),
        # layers dense, MoE, dense; head_dim 6 so that H*hd = 24 != d
        ("b_dense_first", make_cfg(lib, n_layers=3, moe_every=2, n_dense_first=1, tie_embeddings=1,
                                   moe=moe_b2, **dict(base, head_dim=6)), 2, 12),
        # dense only, multi-head (Hkv = H), T = ctx_len
        ("c", make_cfg(lib, n_layers=2, moe_every=0, tie_embeddings=0, moe=moe_a,
                       **dict(base, n_kv_heads=4)), 4, 12),
    ]


def make_batch(rng, V, B, T):
    tok = rng.integers(0, V, size=(B, T)).astype(np.int32)
    tgt = rng.integers(0, V, size=(B, T)).astype(np.int32)
    tgt[rng.random((B, T)) < 0.2] = -1
    tgt[0, 0] = -1                     # at least one ignored target
    tgt[-1, -1] = 5                    # and at least one counted
    return tok, tgt


# --------------------------------------------------------------- checks
def check_table(tag, cfg, model):
    want = expected_table(cfg)
    got = [(t["name"], t["shape"], t["decay"]) for t in model.tensors()]
    check("model_torch/%s/table" % tag, got == want,
          "tensor table differs: first mismatch %s" %
          next(((g, w) for g, w in zip(got + [None] * len(want), want + [None] * len(got)) if g != w), None),
          "%d tensors" % len(got))
    n_sum = sum(t["n"] for t in model.tensors())
    cnt = mc.ModelCounts()
    model.lib.moe_model_count(ctypes.byref(cfg), ctypes.byref(cnt))
    check("model_torch/%s/count" % tag, cnt.params == n_sum,
          "moe_model_count params %d, tensor table sums to %d" % (cnt.params, n_sum),
          "%d params" % n_sum)


def check_init(tag, cfg, model, seed):
    """Norm weights 1; matrices N(0, 0.02); attn_output and ffn_down*
    N(0, 0.02 / sqrt(2 L)); the same seed gives the same values."""
    std_out = 0.02 / math.sqrt(2.0 * cfg.n_layers)
    bad = []
    for t in model.tensors():
        a = t["data"].astype(np.float64)
        if len(t["shape"]) == 1:
            if not np.all(a == 1.0):
                bad.append("%s: not all ones" % t["name"])
            continue
        want = std_out if ("attn_output." in t["name"] or "ffn_down" in t["name"]) else 0.02
        s, mu = float(a.std()), float(a.mean())
        # the sample std of n normals is within a few / sqrt(2n) of the truth
        slack = 5.0 / math.sqrt(2.0 * a.size) + 0.02
        if not (abs(s / want - 1.0) <= slack and abs(mu) <= 5.0 * want / math.sqrt(a.size)):
            bad.append("%s: std %.4g mean %.3g, expected std %.4g mean 0" % (t["name"], s, mu, want))
    check("model_torch/%s/init" % tag, not bad, "; ".join(bad[:4]))
    snap = [t["data"].copy() for t in model.tensors()]
    model.init_params(seed + 1)
    moved = all(not np.array_equal(t["data"], s) for t, s in zip(model.tensors(), snap)
                if len(t["shape"]) > 1)
    model.init_params(seed)
    same = all(np.array_equal(t["data"], s) for t, s in zip(model.tensors(), snap))
    check("model_torch/%s/init_seed" % tag, moved and same,
          "another seed %s every matrix; the same seed %s the values"
          % ("changes" if moved else "does NOT change", "repeats" if same else "does NOT repeat"))


def check_pass(tag, cfg, model, tok, tgt):
    """Forward and backward of C against the float64 reference."""
    model.zero_grads()
    loss = model.forward(tok, tgt, train=1)
    logits = model.logits()
    L = model.losses()
    routing = {l: model.routing(l) for l in range(cfg.n_layers) if is_moe(cfg, l)}
    model.backward()
    grads = {t["name"]: t["grad"].copy() for t in model.tensors()}

    P = torch_params(model, torch.float64)
    ref = reference_forward(cfg, P, tok, tgt)
    ref["objective"].backward()
    note("%s: ce %.6f aux %.3g z %.3g, smallest top-k margin %.2e" %
         (tag, float(ref["ce"]), float(ref["aux"]), float(ref["z"]), ref["margin"]))

    close("model_torch/%s/logits" % tag, logits, ref["logits"].detach().numpy())
    close("model_torch/%s/ce" % tag, L["ce"], float(ref["ce"]))
    close("model_torch/%s/loss_out" % tag, loss, float(ref["ce"]))
    check("model_torch/%s/n_targets" % tag, L["n_targets"] == ref["n_targets"],
          "n_targets %d, reference %d" % (L["n_targets"], ref["n_targets"]))
    if routing:
        close("model_torch/%s/aux" % tag, L["aux"], float(ref["aux"]))
        close("model_torch/%s/z" % tag, L["z"], float(ref["z"]))
        close("model_torch/%s/router" % tag, L["router"], float(ref["aux"] + ref["z"]))
        for l, (ex, w, kept) in routing.items():
            k = cfg.moe.top_k
            same = np.array_equal(ex[:, :k], ref["routing"][l][0])
            check("model_torch/%s/routing/blk.%d" % (tag, l), same and np.all(kept[:, :k] == 1),
                  "experts differ from the reference (margin %.2e)" % ref["margin"])
            close("model_torch/%s/gate_weights/blk.%d" % (tag, l), w[:, :k], ref["routing"][l][1])
    else:
        check("model_torch/%s/no_router_loss" % tag, L["aux"] == 0 and L["z"] == 0 and L["router"] == 0,
              "a dense model reports router losses %r" % (L,))
    for name, g in grads.items():
        rg = P[name].grad.numpy()
        if not np.any(rg != 0):   # a comparison of zeros proves nothing
            fail("model_torch/%s/grad/%s" % (tag, name),
                 "the reference gradient is zero everywhere (a degenerate model?); C max|g| %.3g"
                 % float(np.max(np.abs(g))))
            continue
        close("model_torch/%s/grad/%s" % (tag, name), g, rg)

    # The same reference in float32: what fp32 arithmetic reaches, to show the
    # tolerance is not loose for the C side (and the float64 reference sane).
    P32 = torch_params(model, torch.float32)
    r32 = reference_forward(cfg, P32, tok, tgt)
    r32["objective"].backward()
    worst, wname = 0.0, "logits"
    worst = rel_err(r32["logits"].detach().numpy(), ref["logits"].detach().numpy())[0]
    for name in grads:
        e = rel_err(P32[name].grad.numpy(), P[name].grad.numpy())[0]
        if e > worst:
            worst, wname = e, name
    check("model_torch/%s/ref_fp32_vs_fp64 max_rel=%.1e" % (tag, worst), worst <= TOL,
          "torch float32 differs from float64 by %.3e at %s" % (worst, wname), "worst %s" % wname)


def check_trajectory(tag, cfg, model, seed, batches):
    """10 AdamW steps on both sides from the same parameters and batches."""
    lib = model.lib
    model.init_params(seed)
    ocfg = mc.AdamWConfig()
    lib.moe_adamw_config_default(ctypes.byref(ocfg))
    defaults = (f32(ocfg.beta1), f32(ocfg.beta2), f32(ocfg.eps), f32(ocfg.weight_decay), f32(ocfg.grad_clip))
    check("model_torch/%s/adamw_defaults" % tag,
          defaults == (f32(0.9), f32(0.95), f32(1e-8), f32(0.1), f32(1.0)),
          "moe_adamw_config_default gives %r" % (defaults,))
    opt = ctypes.c_void_p()
    err = mc.MoeError()
    st = lib.moe_adamw_create(ctypes.byref(opt), model.h, ctypes.byref(ocfg), ctypes.byref(err))
    if st != mc.MOE_OK:
        fail("model_torch/%s/adamw_create" % tag, err.msg.decode(errors="replace"))
        return
    try:
        P = torch_params(model, torch.float64)
        decay = {t["name"]: t["decay"] for t in model.tensors()}
        groups = [{"params": [P[n] for n in P if decay[n]], "weight_decay": f32(ocfg.weight_decay)},
                  {"params": [P[n] for n in P if not decay[n]], "weight_decay": 0.0}]
        topt = torch.optim.AdamW(groups, lr=1e-3, betas=(f32(ocfg.beta1), f32(ocfg.beta2)),
                                 eps=f32(ocfg.eps))
        steps, warmup, lr_max, lr_min = 10, 3, 3e-3, 3e-4
        worst_loss, worst_norm, flips = 0.0, 0.0, 0
        bad = None
        for s in range(steps):
            tok, tgt = batches[s]
            lr = float(lib.moe_lr_schedule(s, steps, warmup, f32(lr_max), f32(lr_min)))
            # C
            model.zero_grads()
            model.forward(tok, tgt, train=1)
            cl = model.losses()
            c_obj = cl["ce"] + cl["router"]
            c_routing = {l: model.routing(l)[0][:, :cfg.moe.top_k]
                         for l in range(cfg.n_layers) if is_moe(cfg, l)}
            model.backward()
            gn = ctypes.c_float(np.nan)
            st = lib.moe_adamw_step(opt, lr, ctypes.byref(gn), ctypes.byref(err))
            if st != mc.MOE_OK:
                bad = "step %d: moe_adamw_step: %s" % (s, err.msg.decode(errors="replace"))
                break
            # torch
            topt.zero_grad()
            ref = reference_forward(cfg, P, tok, tgt)
            ref["objective"].backward()
            tn = float(torch.nn.utils.clip_grad_norm_(list(P.values()), f32(ocfg.grad_clip)))
            for g in topt.param_groups:
                g["lr"] = lr
            topt.step()
            flips += sum(int(not np.array_equal(c_routing[l], ref["routing"][l][0])) for l in c_routing)
            el = abs(c_obj - float(ref["objective"])) / abs(float(ref["objective"]))
            ec = abs(cl["ce"] - float(ref["ce"])) / abs(float(ref["ce"]))
            en = abs(gn.value - tn) / tn
            worst_loss = max(worst_loss, el, ec)
            worst_norm = max(worst_norm, en)
            note("%s step %d: lr %.3e  C loss %.7f torch %.7f  |g| C %.6f torch %.6f"
                 % (tag, s, lr, c_obj, float(ref["objective"]), gn.value, tn))
            if (el > TRAJ_TOL or ec > TRAJ_TOL) and bad is None:
                bad = "step %d: C objective %.8g ce %.8g, torch %.8g ce %.8g" % (
                    s, c_obj, cl["ce"], float(ref["objective"]), float(ref["ce"]))
        check("model_torch/%s/adamw/loss max_rel=%.1e" % (tag, worst_loss), bad is None, bad or "",
              "10 steps, %d routing flips" % flips)
        check("model_torch/%s/adamw/grad_norm max_rel=%.1e" % (tag, worst_norm), worst_norm <= TRAJ_TOL,
              "the gradient norm before clipping differs by %.3e" % worst_norm)
        check("model_torch/%s/adamw/steps" % tag, lib.moe_adamw_steps(opt) == steps,
              "moe_adamw_steps says %d after %d steps" % (lib.moe_adamw_steps(opt), steps))
        worst, wname = 0.0, ""
        for t in model.tensors():
            e = rel_err(t["data"], P[t["name"]].detach().numpy())[0]
            if e > worst:
                worst, wname = e, t["name"]
        check("model_torch/%s/adamw/params max_rel=%.1e" % (tag, worst), worst <= PARAM_TOL,
              "final parameters differ by %.3e at %s" % (worst, wname), "worst %s" % wname)
    finally:
        lib.moe_adamw_free(opt)


def check_schedule(lib):
    """The schedule against its formula: lr (s+1)/warmup during warmup, then
    min + (lr - min)(1 + cos(pi (s - w) / (total - w - 1))) / 2."""
    total, w, lr, mn = 10, 3, f32(3e-3), f32(3e-4)
    got = np.array([lib.moe_lr_schedule(s, total, w, lr, mn) for s in range(total)])
    want = np.array([lr * (s + 1) / w if s < w else
                     mn + 0.5 * (lr - mn) * (1 + math.cos(math.pi * (s - w) / (total - w - 1)))
                     for s in range(total)])
    close("model_torch/lr_schedule", got, want, 1e-6)


def run_config(lib, tag, cfg, B, T, seed=7):
    rng = np.random.default_rng(seed)
    model = mc.Model(lib, cfg)
    try:
        model.init_params(seed)
        check_table(tag, cfg, model)
        check_init(tag, cfg, model, seed)
        tok, tgt = make_batch(rng, cfg.vocab_size, B, T)
        check_pass(tag, cfg, model, tok, tgt)
        batches = [make_batch(rng, cfg.vocab_size, B, T) for _ in range(10)]
        check_trajectory(tag, cfg, model, seed, batches)
    finally:
        model.free()


def main():
    lib = mc.load_for_test("test_model_torch", ("moe_model_create",))
    if lib is None:
        return 1
    torch.set_num_threads(1)
    bad = mc.check_layouts()
    check("model_torch/ctypes_layouts", not bad, "; ".join(bad))
    c = mc.ModelConfig()
    lib.moe_model_config_default(ctypes.byref(c))
    got = (c.vocab_size, c.d_model, c.n_layers, c.n_heads, c.n_kv_heads, c.ctx_len, c.d_ff,
           c.moe.n_experts, c.moe.top_k, c.moe.d_ff, c.moe.renormalize, c.max_batch)
    check("model_torch/config_default", got == (512, 128, 4, 4, 4, 128, 384, 8, 2, 192, 1, 8),
          "moe_model_config_default gives %r (a field out of place?)" % (got,))
    check_schedule(lib)
    for tag, cfg, B, T in configs(lib):
        try:
            run_config(lib, tag, cfg, B, T)
        except Exception as e:  # a failure in one config should not hide the others
            fail("model_torch/" + tag, "exception %s: %s" % (type(e).__name__, e))
    n_checks, failed = counts()
    print("# test_model_torch: %d checks, %d failed" % (n_checks, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
