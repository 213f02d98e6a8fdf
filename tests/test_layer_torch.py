#!/usr/bin/env python3
"""test_layer_torch.py: the MoE layer of libmoe against an independent PyTorch
reference.

Loads $MOE_LIB (default build/libmoe.so) through ctypes (tests/moe_ctypes.py),
runs moe_layer_forward / moe_layer_backward on many configurations, and checks
y, dx, every parameter gradient, the routing decisions and the route statistics
against the same layer written in PyTorch (float64, autograd for gradients)
straight from the specification:

  p = softmax(x router^T); top-k by p (ties to the lower index), best first;
  w_j = p[t,e_j] (/ sum_j p[t,e_j] if renormalize) * weight_scale;
  capacity = ceil(cf * T * k / E) in double (cf == -1: dropless), keeping per
  expert the first `capacity` assignments by (slot, token) or by (score desc,
  token); y[t] = sum over kept slots of w_j * Expert_{e_j}(x[t]);
  aux = coef * E * sum_i f_i P_i (f from the counts before dropping, no grad);
  z = coef * mean_t logsumexp(logits_t)^2; objective L = sum(y*dy) + aux + z.

Prints "ok NAME (err ...)" or "FAIL NAME: ..." per check, exits 1 if any
failed. Without torch/numpy: SKIPPED (FAIL when CI=true).
"""
import math
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import torch_guard

np, torch = torch_guard.import_torch("test_layer_torch")

import ctypes

import moe_ctypes as mc

TOL = 1e-4


from checks import ok, fail, check, note, fmt_idx, check_exact, f32, counts
import checks


def check_close(name, tensor, c, ref, tol=TOL):
    return checks.check_close(name, tensor, c, ref, tol)


# -------------------------------------------------------- the reference
def reference(spec, params, x, dy):
    """The MoE layer in torch float64 from the spec. Returns a dict of numpy
    arrays: y, dx, grads, routing decisions and stats, plus tie margins."""
    d, E, k = spec["d"], spec["E"], spec["k"]
    T = x.shape[0]
    dt = torch.float64
    X = torch.tensor(x.astype(np.float64), dtype=dt, requires_grad=True)
    W = {}
    for n, v in params.items():
        if v is not None:
            W[n] = torch.tensor(v.astype(np.float64), dtype=dt, requires_grad=True)
    DY = torch.tensor(dy.astype(np.float64), dtype=dt)

    logits = X @ W["router"].t()                       # [T, E]
    p = torch.softmax(logits, dim=1)
    pn = p.detach().numpy()

    # top-k, best first, ties to the lower expert index (stable sort)
    order = np.argsort(-pn, axis=1, kind="stable")
    ex = order[:, :k].copy()                          # [T, k]
    # margins between adjacent ranks among the first k+1: near-ties warning
    srt = -np.sort(-pn, axis=1)
    m = min(k + 1, E)
    topk_margin = float(np.min(srt[:, :m - 1] - srt[:, 1:m])) if m > 1 else np.inf

    tpe = np.bincount(ex.ravel(), minlength=E).astype(np.int64)
    kept = np.ones((T, k), dtype=bool)
    cf = f32(spec["cf"])
    cap_margin = np.inf
    if cf == -1.0:
        cap = -1
    else:
        cap = int(math.ceil(cf * T * k / E))
        for e in range(E):
            assign = [(t, j) for j in range(k) for t in range(T) if ex[t, j] == e]
            if spec["drop"] == mc.MOE_DROP_SCORE:
                assign.sort(key=lambda tj: (-pn[tj[0], e], tj[0]))
                if 0 < cap < len(assign):
                    a, b = assign[cap - 1], assign[cap]
                    cap_margin = min(cap_margin, abs(pn[a[0], e] - pn[b[0], e]))
            for (t, j) in assign[max(cap, 0):]:
                kept[t, j] = False
    kpe = np.zeros(E, dtype=np.int64)
    for t in range(T):
        for j in range(k):
            if kept[t, j]:
                kpe[ex[t, j]] += 1

    idx = torch.tensor(ex, dtype=torch.long)
    sel = p.gather(1, idx)                            # [T, k]
    w = sel / sel.sum(dim=1, keepdim=True) if spec["renorm"] else sel
    w = w * f32(spec["ws"])
    mask = torch.tensor(kept.astype(np.float64), dtype=dt)

    # every expert on every token (small sizes), then pick the routed ones
    outs = []
    for e in range(E):
        if spec["expert"] == mc.MOE_EXPERT_SWIGLU:
            g = X @ W["gate"][e].t()
            u = X @ W["up"][e].t()
            h = g * torch.sigmoid(g) * u
        else:
            z = X @ W["up"][e].t()
            h = 0.5 * z * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (z + 0.044715 * z ** 3)))
        outs.append(h @ W["down"][e].t())             # [T, d]
    outs = torch.stack(outs)                          # [E, T, d]
    ar = torch.arange(T)
    y = torch.zeros(T, d, dtype=dt)
    for j in range(k):
        y = y + (mask[:, j] * w[:, j])[:, None] * outs[idx[:, j], ar]

    f = torch.tensor(tpe / float(T * k), dtype=dt)    # no gradient
    Pm = p.mean(dim=0)
    balance = E * (f * Pm).sum()
    aux = f32(spec["aux"]) * balance
    lse = torch.logsumexp(logits, dim=1)
    lse_sq = (lse ** 2).mean()
    zl = f32(spec["z"]) * lse_sq
    entropy = (-(p * torch.log(p)).sum(dim=1)).mean()

    L = (y * DY).sum() + aux + zl
    L.backward()

    out = {
        "y": y.detach().numpy(), "dx": X.grad.numpy(),
        "experts": ex.astype(np.int32), "weights": w.detach().numpy(),
        "kept": kept.astype(np.int32),
        "tokens_per_expert": tpe, "kept_per_expert": kpe,
        "capacity": cap, "dropped": int(T * k - kpe.sum()),
        "n_tokens": T, "assignments": T * k,
        "aux_loss": float(aux), "z_loss": float(zl), "balance": float(balance),
        "lse_sq": float(lse_sq), "entropy": float(entropy),
        "topk_margin": topk_margin, "cap_margin": cap_margin,
        "grads": {n: t.grad.numpy() for n, t in W.items()},
    }
    return out


def dense_swiglu(x, gate, up, down):
    """A plain dense SwiGLU FFN with torch.nn.functional (for E = 1)."""
    F = torch.nn.functional
    X = torch.tensor(x.astype(np.float64))
    G = torch.tensor(gate.astype(np.float64))
    U = torch.tensor(up.astype(np.float64))
    D = torch.tensor(down.astype(np.float64))
    return F.linear(F.silu(F.linear(X, G)) * F.linear(X, U), D).numpy()


# ------------------------------------------------------- configurations
def spec_of(name, d, dff, E, k, T, **kw):
    s = dict(name=name, d=d, dff=dff, E=E, k=k, Ts=T if isinstance(T, list) else [T],
             expert=mc.MOE_EXPERT_SWIGLU, cf=mc.MOE_DROPLESS, drop=mc.MOE_DROP_POSITION,
             renorm=1, ws=1.0, aux=0.0, z=0.0, threads=[1], seed=1, bias=None,
             accumulate=False, dense_check=False, extra_max=3)
    s.update(kw)
    return s


P, S = mc.MOE_DROP_POSITION, mc.MOE_DROP_SCORE
GELU = mc.MOE_EXPERT_GELU
CONFIGS = [
    spec_of("top1_dropless", 32, 48, 4, 1, 32, renorm=0, seed=11),
    spec_of("top2_renorm", 32, 48, 8, 2, [48, 5], renorm=1, threads=[1, 2], seed=12,
            accumulate=True),
    spec_of("top2_norenorm", 32, 48, 8, 2, 48, renorm=0, seed=13),
    spec_of("topE", 24, 32, 4, 4, 20, renorm=1, aux=0.1, z=0.05, seed=14),
    spec_of("cap0.5_position", 32, 40, 4, 2, 40, cf=0.5, drop=P, renorm=1, threads=[2],
            seed=15),
    spec_of("cap0.5_score", 32, 40, 4, 2, [40, 9], cf=0.5, drop=S, renorm=1, seed=16),
    spec_of("cap1.25_top2", 32, 48, 8, 2, 64, cf=1.25, drop=P, renorm=0, seed=17),
    spec_of("cap1.25_top2_score", 32, 48, 8, 2, 64, cf=1.25, drop=S, renorm=1,
            aux=0.1, z=0.05, seed=17),
    spec_of("cap1.1_double", 16, 24, 4, 2, 20, cf=1.1, drop=P, renorm=1, seed=18),
    spec_of("losses_small", 32, 48, 6, 2, 40, renorm=1, aux=0.01, z=0.001, seed=19),
    spec_of("losses_large", 32, 48, 6, 2, 40, cf=1.0, drop=S, renorm=1, aux=0.1, z=0.05,
            threads=[1, 2], seed=20),
    spec_of("biased_top1", 32, 48, 4, 1, 64, renorm=0, aux=0.1, z=0.01, seed=21,
            bias=(2.0, 1.0)),
    spec_of("biased_top1_cap", 32, 48, 4, 1, 64, cf=1.25, drop=S, renorm=0, aux=0.1,
            seed=22, bias=(2.5, 1.0)),
    spec_of("T1", 32, 48, 4, 2, 1, renorm=1, aux=0.1, z=0.05, seed=23),
    spec_of("T1_cap", 32, 48, 4, 2, 1, cf=1.0, drop=P, renorm=1, seed=24),
    spec_of("E1_dense", 32, 48, 1, 1, 24, renorm=1, z=0.05, aux=0.1, seed=25,
            dense_check=True),
    spec_of("cap0", 32, 48, 4, 2, 24, cf=0.0, drop=P, renorm=1, aux=0.1, z=0.05, seed=26),
    spec_of("gelu_top2_cap", 32, 48, 4, 2, 48, expert=GELU, cf=1.0, drop=P, renorm=1,
            aux=0.01, threads=[2], seed=27),
    spec_of("gelu_top1", 24, 40, 6, 1, 30, expert=GELU, renorm=0, z=0.05, seed=28),
    spec_of("weight_scale2.5", 32, 48, 8, 2, 40, renorm=1, ws=2.5, aux=0.01, z=0.001,
            seed=29),
    spec_of("weight_scale2.5_norenorm", 16, 32, 4, 2, 16, renorm=0, ws=2.5, seed=30),
    spec_of("odd_13_19_5_3", 13, 19, 5, 3, 17, cf=0.75, drop=S, renorm=1, aux=0.1,
            z=0.05, threads=[1, 2], seed=31),
    spec_of("odd_13_19_5_3_dropless", 13, 19, 5, 3, 17, renorm=0, seed=32),
    spec_of("odd_13_19_5_3_position", 13, 19, 5, 3, 17, cf=0.75, drop=P, renorm=0,
            aux=0.1, seed=33),
]


def make_data(spec, rng):
    d, f, E = spec["d"], spec["dff"], spec["E"]
    params = {
        "router": rng.normal(0.0, 1.0 / math.sqrt(d), (E, d)),
        "gate": rng.normal(0.0, 1.0 / math.sqrt(d), (E, f, d))
        if spec["expert"] == mc.MOE_EXPERT_SWIGLU else None,
        "up": rng.normal(0.0, 1.0 / math.sqrt(d), (E, f, d)),
        "down": rng.normal(0.0, 1.0 / math.sqrt(f), (E, d, f)),
    }
    u = None
    if spec["bias"] is not None:
        a, b = spec["bias"]
        u = rng.normal(0.0, 1.0, d)
        u /= np.linalg.norm(u)
        params["router"][0] = b * u + rng.normal(0.0, 0.2 / math.sqrt(d), d)
    params = {n: (None if v is None else v.astype(np.float32)) for n, v in params.items()}
    return params, u


def make_x(spec, rng, T, u):
    x = rng.normal(0.0, 1.0, (T, spec["d"]))
    if u is not None:
        x += spec["bias"][0] * u[None, :]
    return x.astype(np.float32)


def run_config(lib, spec):
    name = "layer/" + spec["name"]
    d, f, E, k = spec["d"], spec["dff"], spec["E"], spec["k"]
    rng = np.random.default_rng(spec["seed"])
    cfg = mc.config_default(lib, d, f, E, k)
    cfg.expert = spec["expert"]
    cfg.capacity_factor = spec["cf"]
    cfg.drop_policy = spec["drop"]
    cfg.renormalize = spec["renorm"]
    cfg.weight_scale = spec["ws"]
    cfg.aux_loss_coef = spec["aux"]
    cfg.z_loss_coef = spec["z"]
    cfg.max_tokens = max(spec["Ts"]) + spec["extra_max"]
    cfg.n_threads = spec["threads"][0]
    try:
        L = mc.Layer(lib, cfg)
    except mc.MoeCallError as e:
        fail(name + "/create", "moe_layer_create failed: %s" % e)
        return
    try:
        params, u = make_data(spec, rng)
        n_mats = 3 if spec["expert"] == mc.MOE_EXPERT_SWIGLU else 2
        want_count = E * d + n_mats * E * f * d
        views = L.params()
        gview = L.grads()
        is_gelu = spec["expert"] == GELU
        good_ptrs = (views["router"] is not None and views["up"] is not None
                     and views["down"] is not None
                     and (views["gate"] is None) == is_gelu
                     and (gview["gate"] is None) == is_gelu)
        check(name + "/param_layout", L.param_count() == want_count and good_ptrs,
              "param_count %d (want %d), gate pointer %s for %s"
              % (L.param_count(), want_count,
                 "NULL" if views["gate"] is None else "set",
                 "GELU" if is_gelu else "SwiGLU"))
        L.set_params(**params)
        for T in spec["Ts"]:
            x = make_x(spec, rng, T, u)
            dy = rng.normal(0.0, 1.0, (T, d)).astype(np.float32)
            ref = reference(spec, params, x, dy)
            if ref["topk_margin"] < 1e-6 or ref["cap_margin"] < 1e-6:
                print("# note %s T=%d: near tie (top-k margin %.2e, capacity margin %.2e);"
                      " routing comparisons may be fragile" %
                      (name, T, ref["topk_margin"], ref["cap_margin"]))
            for nth in spec["threads"]:
                L.set_threads(nth)
                tag = name
                if len(spec["Ts"]) > 1:
                    tag += "/T%d" % T
                if len(spec["threads"]) > 1:
                    tag += "/th%d" % nth
                compare_run(L, spec, tag, x, dy, ref, params)
    finally:
        L.free()


def compare_run(L, spec, tag, x, dy, ref, params):
    T = x.shape[0]
    E, k = spec["E"], spec["k"]
    x_before = x.copy()
    try:
        y = L.forward(x, train=1)
    except mc.MoeCallError as e:
        fail(tag + "/forward", "moe_layer_forward failed: %s" % e)
        return
    ex, w, kept = L.routing()
    st = L.stats()
    check_exact(tag + "/experts", "experts", ex, ref["experts"])
    check_exact(tag + "/kept", "kept", kept, ref["kept"])
    check_close(tag + "/weights", "weights", w, ref["weights"])
    check_exact(tag + "/tokens_per_expert", "tokens_per_expert",
                st["tokens_per_expert"], ref["tokens_per_expert"])
    check_exact(tag + "/kept_per_expert", "kept_per_expert",
                st["kept_per_expert"], ref["kept_per_expert"])
    counts_c = np.array([st["n_tokens"], st["assignments"], st["capacity"], st["dropped"]])
    counts_r = np.array([ref["n_tokens"], ref["assignments"], ref["capacity"], ref["dropped"]])
    check_exact(tag + "/counts", "[n_tokens, assignments, capacity, dropped]",
                counts_c, counts_r)
    for s in ("aux_loss", "z_loss", "balance", "lse_sq", "entropy"):
        check_close(tag + "/" + s, s, st[s], ref[s])
    check_close(tag + "/y", "y", y, ref["y"])
    if spec["dense_check"]:
        yd = dense_swiglu(x, params["gate"][0], params["up"][0], params["down"][0])
        check_close(tag + "/y_vs_dense_ffn", "y", y, yd)
    if spec["bias"] is not None:
        tpe = st["tokens_per_expert"]
        share = float(tpe[0]) / float(st["assignments"]) if tpe is not None else 0.0
        check(tag + "/expert0_share", share > 0.8,
              "expert 0 got %.3f of the assignments, not > 0.8 (tokens_per_expert %s)"
              % (share, tpe), "%.3f of assignments" % share)

    L.zero_grads()
    try:
        dx = L.backward(dy)
    except mc.MoeCallError as e:
        fail(tag + "/backward", "moe_layer_backward failed: %s" % e)
        return
    check(tag + "/x_unchanged", np.array_equal(x, x_before),
          "forward/backward modified the input x")
    check_close(tag + "/dx", "dx", dx, ref["dx"])
    g = L.grads()
    for n in ("router", "gate", "up", "down"):
        if n not in ref["grads"]:
            continue
        check_close(tag + "/grad_" + n, "grad_" + n, g[n], ref["grads"][n])
    if spec["accumulate"]:
        try:
            L.backward(dy)
        except mc.MoeCallError as e:
            fail(tag + "/grad_accumulates", "second backward failed: %s" % e)
            return
        g2 = L.grads()
        for n in ("router", "gate", "up", "down"):
            if n in ref["grads"]:
                check_close(tag + "/grad_accumulates_" + n, "2x grad_" + n, g2[n],
                            2.0 * ref["grads"][n])


# --------------------------------------------------------- API checks
def create_expect_fail(lib, name, cfg):
    err = mc.MoeError()
    err.msg = b"untouched"
    h = ctypes.c_void_p(12345)
    st = lib.moe_layer_create(ctypes.byref(h), ctypes.byref(cfg), ctypes.byref(err))
    msg = err.msg.decode(errors="replace")
    err2 = mc.MoeError()
    st2 = lib.moe_layer_config_check(ctypes.byref(cfg), ctypes.byref(err2))
    msg2 = err2.msg.decode(errors="replace")
    good = st != 0 and not h.value and msg not in ("", "untouched") and st2 != 0 and msg2
    check(name, good,
          "create status %d, handle %s, message %r; config_check status %d, message %r"
          % (st, "NULL" if not h.value else "set", msg, st2, msg2),
          "status %d: %s" % (st, msg))
    if st == 0 and h.value:
        lib.moe_layer_free(h)


def api_checks(lib):
    # documented defaults
    c = mc.config_default(lib, 16, 24, 4, 2)
    want = dict(d_model=16, d_ff=24, n_experts=4, top_k=2, expert=mc.MOE_EXPERT_SWIGLU,
                gate=mc.MOE_GATE_SOFTMAX, select=mc.MOE_SELECT_TOPK,
                capacity_factor=mc.MOE_DROPLESS, drop_policy=mc.MOE_DROP_POSITION,
                weight_scale=1.0, aux_loss_coef=0.0, z_loss_coef=0.0, max_tokens=4096)
    got = mc.config_to_dict(c)
    bad = {n: (got[n], v) for n, v in want.items() if got[n] != v}
    check("api/config_default", not bad, "fields (got, want): %s" % bad)
    err = mc.MoeError()
    st = lib.moe_layer_config_check(ctypes.byref(c), ctypes.byref(err))
    check("api/config_check_default", st == 0,
          "config_check of the default config: status %d %r" % (st, err.msg))

    # bad configurations
    create_expect_fail(lib, "api/create_k_gt_E", mc.config_default(lib, 16, 24, 4, 5))
    create_expect_fail(lib, "api/create_E0", mc.config_default(lib, 16, 24, 0, 1))
    create_expect_fail(lib, "api/create_k0", mc.config_default(lib, 16, 24, 4, 0))
    create_expect_fail(lib, "api/create_cf_neg",
                       mc.config_default(lib, 16, 24, 4, 2, capacity_factor=-0.5))

    # forward errors
    d, f, E, k, Tm = 16, 24, 4, 2, 8
    cfg = mc.config_default(lib, d, f, E, k, max_tokens=Tm, n_threads=1, renormalize=1)
    try:
        L = mc.Layer(lib, cfg)
    except mc.MoeCallError as e:
        fail("api/create_ok", "moe_layer_create of a valid config failed: %s" % e)
        return
    try:
        gc = lib.moe_layer_get_config(L.h).contents
        gd, cd = mc.config_to_dict(gc), mc.config_to_dict(cfg)
        bad = {n: (gd[n], cd[n]) for n in cd if n != "n_threads" and gd[n] != cd[n]}
        check("api/get_config", not bad, "fields (got, set): %s" % bad)

        # init_params: bounds, determinism
        L.lib.moe_layer_init_params(L.h, 42)
        a = {n: (None if v is None else v.copy()) for n, v in L.params().items()}
        L.lib.moe_layer_init_params(L.h, 42)
        b = L.params()
        same = all(np.array_equal(a[n], b[n]) for n in a if a[n] is not None)
        bd, bf = 1.0 / math.sqrt(d), 1.0 / math.sqrt(f)
        inb = (np.all(np.abs(a["router"]) <= bd * (1 + 1e-6))
               and np.all(np.abs(a["gate"]) <= bd * (1 + 1e-6))
               and np.all(np.abs(a["up"]) <= bd * (1 + 1e-6))
               and np.all(np.abs(a["down"]) <= bf * (1 + 1e-6)))
        spread = all(np.std(a[n]) > 0.3 * (bf if n == "down" else bd) for n in a)
        L.lib.moe_layer_init_params(L.h, 43)
        differs = not np.array_equal(a["up"], L.params()["up"])
        check("api/init_params", same and inb and spread and differs,
              "deterministic %s, within U bounds %s, spread %s, seed-dependent %s"
              % (same, inb, spread, differs))

        rng = np.random.default_rng(5)
        x = rng.normal(0.0, 1.0, (Tm + 1, d)).astype(np.float32)
        st, y0 = L.forward_raw(x, Tm, 1)
        check("api/forward_ok", st == 0, "forward status %d: %s" % (st, L.errmsg()))
        y0 = y0.copy()

        xn = x.copy()
        xn[3, 5] = np.nan
        st, _ = L.forward_raw(xn, Tm, 1)
        msg = L.errmsg()
        check("api/forward_nan", st != 0 and bool(msg),
              "forward with NaN in x: status %d, message %r" % (st, msg),
              "status %d: %s" % (st, msg))
        xi = x.copy()
        xi[Tm - 1, d - 1] = np.inf
        st, _ = L.forward_raw(xi, Tm, 1)
        check("api/forward_inf", st != 0,
              "forward with Inf in x: status %d" % st, "status %d" % st)
        st, _ = L.forward_raw(x, Tm + 1, 1)
        msg = L.errmsg()
        check("api/forward_T_gt_max", st != 0 and bool(msg),
              "forward with T=%d > max_tokens=%d: status %d, message %r"
              % (Tm + 1, Tm, st, msg), "status %d: %s" % (st, msg))
        st, _ = L.forward_raw(x, 0, 1)
        check("api/forward_T0", st != 0, "forward with T=0: status %d" % st,
              "status %d" % st)

        st, y1 = L.forward_raw(x, Tm, 1)
        check("api/forward_after_errors", st == 0 and np.array_equal(y0[:Tm], y1[:Tm]),
              "after failed calls: status %d, y equal to the first forward: %s"
              % (st, np.array_equal(y0[:Tm], y1[:Tm])))

        # zero_grads clears what backward added
        dy = rng.normal(0.0, 1.0, (Tm, d)).astype(np.float32)
        L.zero_grads()
        L.backward(dy)
        g = L.grads()
        nz = any(np.any(v != 0) for v in g.values() if v is not None)
        L.zero_grads()
        g = L.grads()
        allz = all(np.all(v == 0) for v in g.values() if v is not None)
        check("api/zero_grads", nz and allz,
              "backward gave nonzero grads: %s; zero_grads cleared them: %s" % (nz, allz))
    except mc.MoeCallError as e:
        fail("api/calls", "unexpected failure: %s" % e)
    finally:
        L.free()


def main():
    lib = mc.load_for_test("test_layer_torch")
    if lib is None:
        return 1
    torch.set_num_threads(1)
    api_checks(lib)
    for spec in CONFIGS:
        try:
            run_config(lib, spec)
        except Exception as e:  # a bug in a config should not hide the others
            fail("layer/" + spec["name"], "exception %s: %s" % (type(e).__name__, e))
    n_checks, failed = counts()
    print("# test_layer_torch: %d checks, %d failed" % (n_checks, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
