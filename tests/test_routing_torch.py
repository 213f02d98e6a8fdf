#!/usr/bin/env python3
"""test_routing_torch.py: the routing family of the MoE layer of libmoe
(docs/ROUTING.md) against an independent PyTorch reference.

Loads $MOE_LIB (default build/libmoe.so) through ctypes (tests/moe_ctypes.py)
and, for one configuration per routing method and a few combinations, checks
y, dx, every parameter gradient, the routing decisions, every loss and the
statistics of moe_route_stats against the layer written here in torch float64
(autograd for the gradients) from the specification, not from the C code:

  jitter     xr = x * u (u = draws.jitter, training only); experts see x
  noisy gate H = z + n softplus(xr Wn^T) (n = draws.noise, training only)
  gates      softmax p, sigmoid q, relu r; normalised scores pn (p, q/sum q,
             r/sum r); selection scores p or q + b (b the balance bias)
  selection  top-k (ties to the lower index, best first), group-limited top-k,
             GShard's random second (u2 = draws.second < 2 p1/(p0+p1)), top-p,
             expert choice (C = min(T, ceil(c T / E)) tokens per expert), hash
             (splitmix64 of the token id), ReLU "all"
  capacity   as the basic layer: ceil(cf T k / E) with k the current top_k,
             also where slots stay empty (GShard, top-p); position or score
             priority (p or q, without b)
  shared     y += sigmoid(x . w_sr) (or 1) * FFN_shared(x)
  losses     aux (f from the counts; slot 0 only for balance_top1_only;
             accumulated for global_stats), z, importance, load, entropy,
             sequence-wise, L1; objective L = sum(y dy) + router_loss

The random draws of training forwards come from the C layer
(moe_layer_get_draws) and the reference uses the same ones.

Prints "ok NAME (err ...)" or "FAIL NAME: ..." per check, exits 1 if any
failed. Without torch/numpy: SKIPPED (FAIL when CI=true).
"""
import math
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import torch_guard

np, torch = torch_guard.import_torch("test_routing_torch")

import ctypes

import moe_ctypes as mc

TOL = 1e-4
FLOOR = 1e-2        # normalised error: max|c - ref| / max(max|ref|, FLOOR)
NEAR = 1e-5         # a decision margin below this is reported as a near tie

SOFTMAX, SIGMOID, RELU = mc.MOE_GATE_SOFTMAX, mc.MOE_GATE_SIGMOID, mc.MOE_GATE_RELU
TOPK, TOPP, EC, HASH, ALL = (mc.MOE_SELECT_TOPK, mc.MOE_SELECT_TOPP,
                             mc.MOE_SELECT_EXPERT_CHOICE, mc.MOE_SELECT_HASH,
                             mc.MOE_SELECT_ALL)
SWIGLU, GELU = mc.MOE_EXPERT_SWIGLU, mc.MOE_EXPERT_GELU
POS, SCORE = mc.MOE_DROP_POSITION, mc.MOE_DROP_SCORE
DROPLESS = mc.MOE_DROPLESS
M64 = (1 << 64) - 1


from checks import ok, fail, check, note, fmt_idx, check_exact, f32, counts
import checks


def check_close(name, tensor, c, ref, tol=TOL, floor=FLOOR):
    return checks.check_close(name, tensor, c, ref, tol, floor)


# -------------------------------------------------------- the reference
def splitmix64(i):
    """The splitmix64 finalizer of the uint64 value of the id."""
    z = (int(i) + 0x9E3779B97F4A7C15) & M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def stable_desc(a):
    """Indices sorting each row of a descending, ties to the lower index."""
    return np.argsort(-a, axis=-1, kind="stable")


def cv2(v):
    """Squared coefficient of variation (population variance)."""
    m = v.mean()
    return ((v - m) ** 2).mean() / (m * m + 1e-10)


def gelu(z):
    return 0.5 * z * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (z + 0.044715 * z ** 3)))


def ffn(kind, X, Wg, Wu, Wd):
    if kind == SWIGLU:
        g = X @ Wg.t()
        h = g * torch.sigmoid(g) * (X @ Wu.t())
    else:
        h = gelu(X @ Wu.t())
    return h @ Wd.t()


def reference(c, rt, params, x, dy, train, draws, ids):
    """The layer in torch float64 from the spec.

    c: the config as a dict (float fields already float32 values); rt: the run
    state {k, top_p, bias, lam, S, acc_cnt, acc_den}; params: float32 numpy
    arrays by name; draws: the C layer's draws of this forward (train only).
    Returns numpy results and the decision margins (near-tie warnings)."""
    T, d = x.shape
    E = c["n_experts"]
    k = rt["k"]
    S = rt["S"]
    gate, sel = c["gate"], c["select"]
    ws = c["weight_scale"]
    dt = torch.float64
    margins = {}

    X = torch.tensor(x.astype(np.float64), dtype=dt, requires_grad=True)
    W = {n: torch.tensor(v.astype(np.float64), dtype=dt, requires_grad=True)
         for n, v in params.items() if v is not None}
    DY = torch.tensor(dy.astype(np.float64), dtype=dt)
    zero = torch.zeros((), dtype=dt)

    hashed = sel == HASH
    g = pn = H = None
    if not hashed:
        # 1-2: jitter, logits, noisy gate
        if c["jitter"] > 0 and train:
            xr = X * torch.tensor(draws["jitter"].astype(np.float64), dtype=dt)
        else:
            xr = X
        z = xr @ W["router"].t()
        if c["noisy_gate"]:
            a = xr @ W["noise"].t()
            sigma = torch.logaddexp(torch.zeros_like(a), a)       # softplus
            if train:
                n = torch.tensor(draws["noise"].astype(np.float64), dtype=dt)
                H = z + n * sigma
            else:
                H = z
        else:
            sigma = None
            H = z
        # 3: gates and normalised scores
        if gate == SOFTMAX:
            g = torch.softmax(H, dim=1)
            pn = g
        elif gate == SIGMOID:
            g = torch.sigmoid(H)
            pn = g / g.sum(dim=1, keepdim=True)
        else:
            g = torch.relu(H)
            s = g.sum(dim=1, keepdim=True)
            pn = g / torch.where(s > 0, s, torch.ones_like(s))
        gn = g.detach().numpy()
        Hn = H.detach().numpy()
        if gate == RELU:
            margins["relu_zero"] = float(np.min(np.abs(Hn)))

    # 4-11: selection into [T, S] slots
    mode = sel
    kk = k
    if sel == EC and not train and not c["ec_inference"]:
        mode = TOPK
        kk = c["top_k"]
    ex = np.full((T, S), -1, dtype=np.int64)
    renorm_ok = False
    gshard_drop = None
    if mode == TOPK:
        sc = gn + (rt["bias"].astype(np.float64)[None, :] if gate == SIGMOID else 0.0)
        allowed = np.ones((T, E), dtype=bool)
        G = c["n_groups"]
        if G > 0:
            gs = E // G
            gscore = np.zeros((T, G))
            for gi in range(G):
                srt = -np.sort(-sc[:, gi * gs:(gi + 1) * gs], axis=1)
                gscore[:, gi] = srt[:, :2].sum(axis=1) if gs >= 2 else srt[:, 0]
            gord = stable_desc(gscore)
            ng = c["topk_groups"]
            gsrt = -np.sort(-gscore, axis=1)
            if ng < G:
                margins["group"] = float(np.min(gsrt[:, ng - 1] - gsrt[:, ng]))
            allowed[:] = False
            for t in range(T):
                for gi in gord[t, :ng]:
                    allowed[t, gi * gs:(gi + 1) * gs] = True
        scm = np.where(allowed, sc, -np.inf)
        order = stable_desc(scm)
        ex[:, :kk] = order[:, :kk]
        srt = -np.sort(-scm, axis=1)
        m = min(kk + 1, E)
        gaps = srt[:, :m - 1] - srt[:, 1:m]
        gaps = gaps[np.isfinite(gaps)]
        if gaps.size:
            margins["topk"] = float(np.min(gaps))
        renorm_ok = True
        if c["gshard_random_second"] and train and kk == 2:
            u2 = draws["second"].astype(np.float64)
            p0 = gn[np.arange(T), ex[:, 0]]
            p1 = gn[np.arange(T), ex[:, 1]]
            thr = 2.0 * p1 / (p0 + p1)
            margins["gshard"] = float(np.min(np.abs(u2 - thr)))
            gshard_drop = ~(u2 < thr)
    elif mode == TOPP:
        order = stable_desc(gn)
        pt = rt["top_p"]
        mg = np.inf
        for t in range(T):
            cum = 0.0
            for j in range(kk):
                e = order[t, j]
                ex[t, j] = e
                cum += gn[t, e]
                mg = min(mg, abs(cum - pt))
                if cum >= pt:
                    break
        srt = -np.sort(-gn, axis=1)
        margins["topp_sum"] = mg
        margins["topp_order"] = float(np.min(srt[:, :min(kk + 1, E) - 1] - srt[:, 1:min(kk + 1, E)]))
        renorm_ok = True
    elif mode == EC:
        C = min(T, int(math.ceil(c["ec_capacity"] * T / E)))
        mg = np.inf
        for e in range(E):
            toks = np.argsort(-gn[:, e], kind="stable")
            for t in toks[:C]:
                ex[t, e] = e
            if C < T:
                col = -np.sort(-gn[:, e])
                mg = min(mg, col[C - 1] - col[C])
        margins["ec"] = mg
    elif mode == HASH:
        for t in range(T):
            e0 = splitmix64(int(ids[t]) & M64) % E
            for j in range(kk):
                ex[t, j] = (e0 + j) % E
    elif mode == ALL:
        for e in range(E):
            ex[:, e] = np.where(gn[:, e] > 0, e, -1)

    # weights
    sel_mask = ex >= 0
    idx = torch.tensor(np.maximum(ex, 0), dtype=torch.long)
    selm = torch.tensor(sel_mask.astype(np.float64), dtype=dt)
    if hashed:
        w = selm * (ws / kk)
    else:
        val = g.gather(1, idx) * selm
        # the noisy gate is softmax(KeepTopK(H, k)) (Shazeer et al. 2017):
        # a softmax over the kept logits, so always renormalised
        if renorm_ok and (c["renormalize"] or c["noisy_gate"]):
            w = val / val.sum(dim=1, keepdim=True)
        else:
            w = val
        w = w * ws
    if gshard_drop is not None:
        ex[gshard_drop, 1] = -1
        w = w * torch.tensor((ex >= 0).astype(np.float64), dtype=dt)
    nonempty = ex >= 0

    # capacity
    kept = nonempty.copy()
    cf = c["capacity_factor"]
    cap_margin = np.inf
    if cf == -1.0:
        cap = -1
    else:
        cap = int(math.ceil(cf * T * kk / E))
        for e in range(E):
            assign = [(t, j) for j in range(S) for t in range(T) if ex[t, j] == e]
            if c["drop_policy"] == SCORE:
                assign.sort(key=lambda tj: (-gn[tj[0], e], tj[0]))
                if 0 < cap < len(assign):
                    a, b = assign[cap - 1], assign[cap]
                    cap_margin = min(cap_margin, abs(gn[a[0], e] - gn[b[0], e]))
            for (t, j) in assign[max(cap, 0):]:
                kept[t, j] = False
    margins["capacity"] = cap_margin

    # experts and combine
    Wg = W.get("gate")
    outs = torch.stack([ffn(c["expert"], X, None if Wg is None else Wg[e],
                            W["up"][e], W["down"][e]) for e in range(E)])  # [E,T,d]
    ar = torch.arange(T)
    mask = torch.tensor(kept.astype(np.float64), dtype=dt)
    y = torch.zeros(T, d, dtype=dt)
    for j in range(S):
        y = y + (mask[:, j] * w[:, j])[:, None] * outs[idx[:, j], ar]
    # 12: shared expert
    if c["shared_d_ff"] > 0:
        fs = ffn(c["expert"], X, W.get("shared_gate"), W["shared_up"], W["shared_down"])
        if c["shared_gate"]:
            fs = torch.sigmoid(X @ W["shared_router"])[:, None] * fs
        y = y + fs

    # counts
    routed = np.bincount(ex[nonempty], minlength=E).astype(np.int64)
    n_assign = int(nonempty.sum())
    kpe = np.bincount(ex[kept], minlength=E).astype(np.int64)
    n_kept = int(kept.sum())

    # 13: losses
    losses = {}
    out_stats = {}
    if not hashed:
        if c["balance_top1_only"]:
            e0 = ex[:, 0]
            cnt = np.bincount(e0[e0 >= 0], minlength=E).astype(np.float64)
            den = float(T)
        else:
            cnt = routed.astype(np.float64)
            den = float(n_assign)
        new_acc = (rt["acc_cnt"] + cnt, rt["acc_den"] + den)
        if c["global_stats"]:
            cnt, den = new_acc
        f = torch.tensor(cnt / den if den > 0 else cnt * 0, dtype=dt)
        balance = E * (f * pn.mean(dim=0)).sum()
        losses["aux_loss"] = c["aux_loss_coef"] * balance
        lse = torch.logsumexp(H, dim=1)
        lse_sq = (lse ** 2).mean()
        losses["z_loss"] = c["z_loss_coef"] * lse_sq
        out_stats["balance"] = float(balance)
        out_stats["lse_sq"] = float(lse_sq)
        pnn = pn.detach().numpy()
        with np.errstate(divide="ignore", invalid="ignore"):
            plogp = np.where(pnn > 0, pnn * np.log(np.where(pnn > 0, pnn, 1.0)), 0.0)
        out_stats["entropy"] = float(np.mean(-plogp.sum(axis=1)))
    else:
        new_acc = (rt["acc_cnt"], rt["acc_den"])
        for n_ in ("aux_loss", "z_loss"):
            losses[n_] = zero
    # importance: w summed per expert over the token's slots (dropped count)
    onehot = np.zeros((T, S, E))
    for t in range(T):
        for j in range(S):
            if ex[t, j] >= 0:
                onehot[t, j, ex[t, j]] = 1.0
    Imp = (w[:, :, None] * torch.tensor(onehot, dtype=dt)).sum(dim=(0, 1))
    losses["importance_loss"] = c["importance_loss_coef"] * cv2(Imp)
    # load (noisy top-k, training)
    if c["load_loss_coef"] > 0 and train and c["noisy_gate"] and kk < E:
        order = stable_desc(Hn)
        rank = np.empty_like(order)
        for t in range(T):
            rank[t, order[t]] = np.arange(E)
        thr_idx = np.where(rank < kk, order[:, kk][:, None], order[:, kk - 1][:, None])
        thr = H.gather(1, torch.tensor(thr_idx, dtype=torch.long))
        zz = (z - thr) / sigma
        Phi = 0.5 * (1.0 + torch.erf(zz / math.sqrt(2.0)))
        losses["load_loss"] = c["load_loss_coef"] * cv2(Phi.sum(dim=0))
    else:
        losses["load_loss"] = zero
    # entropy regulariser (softmax)
    if c["entropy_loss_coef"] > 0:
        p = torch.softmax(H, dim=1)
        losses["entropy_loss"] = c["entropy_loss_coef"] * (-(p * torch.log(p)).sum(dim=1)).mean()
    else:
        losses["entropy_loss"] = zero
    # sequence-wise balance
    if c["seq_aux_loss_coef"] > 0:
        Ls = c["seq_len"]
        terms = []
        for s0 in range(0, T, Ls):
            exs = ex[s0:s0 + Ls]
            cnt = np.bincount(exs[exs >= 0], minlength=E).astype(np.float64)
            fi = torch.tensor(E / (kk * Ls) * cnt, dtype=dt)
            terms.append((fi * pn[s0:s0 + Ls].mean(dim=0)).sum())
        losses["seq_aux_loss"] = c["seq_aux_loss_coef"] * torch.stack(terms).mean()
    else:
        losses["seq_aux_loss"] = zero
    # L1 of the ReLU router
    if gate == RELU and not hashed:
        losses["l1_loss"] = rt["lam"] * g.sum(dim=1).mean()
        out_stats["sparsity"] = float(np.mean(gn == 0))
        out_stats["l1_coef"] = rt["lam"]
    else:
        losses["l1_loss"] = zero
    router_loss = sum(losses.values(), zero)

    Lobj = (y * DY).sum() + router_loss
    Lobj.backward()

    mean_r = routed.sum() / float(E)
    out = {
        "y": y.detach().numpy(),
        "dx": X.grad.numpy(),
        "grads": {n: (t.grad.numpy() if t.grad is not None else np.zeros(t.shape))
                  for n, t in W.items()},
        "experts": ex.astype(np.int32),
        "weights": w.detach().numpy(),
        "kept": kept.astype(np.int32),
        "tokens_per_expert": routed, "kept_per_expert": kpe,
        "n_tokens": T, "assignments": n_assign, "capacity": cap,
        "dropped": n_assign - n_kept,
        "max_violation": (routed.max() / mean_r - 1.0) if mean_r > 0 else 0.0,
        "load_cv": (np.std(routed.astype(np.float64)) / mean_r) if mean_r > 0 else 0.0,
        "dropped_fraction": (n_assign - n_kept) / float(n_assign) if n_assign else 0.0,
        "active_mean": n_kept / float(T),
        "active_hist": np.bincount(kept.sum(axis=1), minlength=S + 1)[:S + 1],
        "router_loss": float(router_loss),
        "margins": margins,
        "new_acc": new_acc,
        "routed": routed,
    }
    for n_, v in losses.items():
        out[n_] = float(v)
    out.update(out_stats)
    return out


# ---------------------------------------------------------- a test case
class Case(object):
    """One layer and the state the reference follows across calls."""

    def __init__(self, lib, name, d, dff, E, k, seed, max_tokens=64, rscale=1.0, **fields):
        self.lib = lib
        self.name = "routing/" + name
        fields.setdefault("n_threads", 1)
        fields.setdefault("seed", 1000 + seed)
        cfg = mc.config_default(lib, d, dff, E, k, max_tokens=max_tokens, **fields)
        self.cfg = cfg
        self.c = mc.config_to_dict(cfg)          # float fields read back as float32
        self.L = mc.Layer(lib, cfg)              # raises MoeCallError
        self.rng = np.random.default_rng(seed)
        self.E, self.d = E, d
        self.T = None
        c = self.c
        want_S = E if c["select"] in (EC, ALL) else max(c["top_k"], c["max_top_k"])
        S = self.L.slots()
        check(self.name + "/slots", S == want_S,
              "moe_layer_slots %d, want %d" % (S, want_S), "%d" % S)
        self.rt = dict(k=k, top_p=c["top_p"], bias=np.zeros(E, dtype=np.float32),
                       lam=c["relu_l1_coef"], S=S, acc_cnt=np.zeros(E), acc_den=0.0)
        self.params = self._make_params(rscale)
        self.L.set_params(**self.params)

    def _make_params(self, rscale):
        c, d, E = self.c, self.d, self.E
        f, fs = c["d_ff"], c["shared_d_ff"]
        views = self.L.params()
        want = {"router": True, "gate": c["expert"] == SWIGLU, "up": True, "down": True,
                "noise": bool(c["noisy_gate"]),
                "shared_gate": fs > 0 and c["expert"] == SWIGLU,
                "shared_up": fs > 0, "shared_down": fs > 0,
                "shared_router": fs > 0 and bool(c["shared_gate"])}
        have = {n: views.get(n) is not None for n in want}
        bad = {n: (have[n], want[n]) for n in want
               if have[n] != want[n] and not (n == "router" and c["select"] == HASH)}
        count = sum(v.size for v in views.values() if v is not None)
        check(self.name + "/param_layout", not bad and self.L.param_count() == count,
              "pointers (set, want) %s; param_count %d, sum of the non-NULL %d"
              % (bad, self.L.param_count(), count), "%d floats" % count)
        rng = self.rng
        sd, sf = 1.0 / math.sqrt(d), 1.0 / math.sqrt(f)
        gen = {"router": lambda: rng.normal(0.0, rscale * sd, (E, d)),
               "gate": lambda: rng.normal(0.0, sd, (E, f, d)),
               "up": lambda: rng.normal(0.0, sd, (E, f, d)),
               "down": lambda: rng.normal(0.0, sf, (E, d, f)),
               "noise": lambda: rng.normal(0.0, sd, (E, d)),
               "shared_gate": lambda: rng.normal(0.0, sd, (fs, d)),
               "shared_up": lambda: rng.normal(0.0, sd, (fs, d)),
               "shared_down": lambda: rng.normal(0.0, 1.0 / math.sqrt(max(fs, 1)), (d, fs)),
               "shared_router": lambda: rng.normal(0.0, 2.0 * sd, (d,))}
        return {n: gen[n]().astype(np.float32) for n, v in views.items() if v is not None}

    def free(self):
        self.L.free()

    def data(self, T):
        x = self.rng.normal(0.0, 1.0, (T, self.d)).astype(np.float32)
        dy = self.rng.normal(0.0, 1.0, (T, self.d)).astype(np.float32)
        return x, dy

    def ids(self, T):
        return self.rng.integers(0, 2 ** 31 - 1, T).astype(np.int32)

    def step(self, tag, T=None, x=None, dy=None, train=1, ids=None, backward=True):
        """Forward (and backward) on the C layer and the reference; compares
        everything. Returns the reference results (None on a failure)."""
        tag = self.name + "/" + tag
        if x is None:
            x, dy = self.data(T)
        T = x.shape[0]
        L = self.L
        if ids is not None:
            L.set_token_ids(ids)
        x_before = x.copy()
        try:
            y = L.forward(x, train=train)
        except mc.MoeCallError as e:
            fail(tag + "/forward", "moe_layer_forward failed: %s" % e)
            return None
        draws = L.draws(T) if train else None
        if train:
            self._check_draws(tag, draws)
        ex, w, kept = L.routing()
        st = L.stats()
        ref = reference(self.c, self.rt, self.params, x, dy, train, draws, ids)
        near = {n: m for n, m in ref["margins"].items() if m < NEAR}
        if near:
            note("%s: near ties %s; routing comparisons may be fragile"
                 % (tag, ", ".join("%s %.2e" % kv for kv in sorted(near.items()))))
        self.rt["acc_cnt"], self.rt["acc_den"] = ref["new_acc"]
        self.last_ref = ref

        check_exact(tag + "/experts", "experts", ex, ref["experts"])
        check_exact(tag + "/kept", "kept", kept, ref["kept"])
        check_close(tag + "/weights", "weights", w, ref["weights"])
        check_exact(tag + "/tokens_per_expert", "tokens_per_expert",
                    st["tokens_per_expert"], ref["tokens_per_expert"])
        check_exact(tag + "/kept_per_expert", "kept_per_expert",
                    st["kept_per_expert"], ref["kept_per_expert"])
        counts_c = np.array([st["n_tokens"], st["assignments"], st["capacity"], st["dropped"]])
        counts_r = np.array([ref["n_tokens"], ref["assignments"], ref["capacity"],
                             ref["dropped"]])
        check_exact(tag + "/counts", "[n_tokens, assignments, capacity, dropped]",
                    counts_c, counts_r)
        check_exact(tag + "/active_hist", "active_hist", st["active_hist"], ref["active_hist"])
        names = ["aux_loss", "z_loss", "importance_loss", "load_loss", "entropy_loss",
                 "seq_aux_loss", "l1_loss", "router_loss", "max_violation", "load_cv",
                 "dropped_fraction", "active_mean"]
        if self.c["select"] != HASH:
            names += ["balance", "lse_sq", "entropy"]
        if self.c["gate"] == RELU:
            names += ["sparsity", "l1_coef"]
        for n in names:
            check_close(tag + "/" + n, n, st[n], ref[n])
        check_close(tag + "/y", "y", y, ref["y"])
        if not backward:
            return ref
        L.zero_grads()
        try:
            dx = L.backward(dy)
        except mc.MoeCallError as e:
            fail(tag + "/backward", "moe_layer_backward failed: %s" % e)
            return ref
        check(tag + "/x_unchanged", np.array_equal(x, x_before),
              "forward/backward modified the input x")
        check_close(tag + "/dx", "dx", dx, ref["dx"])
        g = L.grads()
        for n, gc in g.items():
            if gc is None:
                continue
            check_close(tag + "/grad_" + n, "grad_" + n, gc, ref["grads"][n])
        return ref

    def _check_draws(self, tag, dr):
        c = self.c
        if c["jitter"] > 0:
            u = dr["jitter"]
            j = c["jitter"]
            good = u is not None and bool(np.all((u >= 1 - j - 1e-6) & (u <= 1 + j + 1e-6)))
            spread = u is not None and float(np.std(u)) > 0.3 * j
            check(tag + "/draws_jitter", good and spread,
                  "draws.jitter %s: within [1-j, 1+j] %s, std %s (j = %g)"
                  % ("NULL" if u is None else "set", good,
                     None if u is None else float(np.std(u)), j))
        if c["noisy_gate"]:
            n = dr["noise"]
            good = n is not None and bool(np.all(np.isfinite(n)))
            mn = float(np.mean(n)) if good else float("nan")
            sd = float(np.std(n)) if good else float("nan")
            good = good and abs(mn) < 0.35 and 0.7 < sd < 1.3
            check(tag + "/draws_noise", good,
                  "draws.noise %s: mean %.3f, std %.3f (want about N(0,1))"
                  % ("NULL" if n is None else "set", mn, sd), "mean %.2f std %.2f" % (mn, sd))
        if c["gshard_random_second"]:
            s = dr["second"]
            good = s is not None and bool(np.all((s >= 0) & (s < 1)))
            check(tag + "/draws_second", good,
                  "draws.second %s: within [0, 1) %s"
                  % ("NULL" if s is None else "set", good))

    # run-time state changes the reference mirrors
    def set_top_k(self, tag, k):
        st = self.L.set_top_k(k)
        if check(self.name + "/" + tag, st == 0, "moe_layer_set_top_k(%d): status %d %s"
                 % (k, st, self.L.errmsg())):
            self.rt["k"] = k

    def set_top_p(self, tag, p):
        st = self.L.set_top_p(p)
        if check(self.name + "/" + tag, st == 0, "moe_layer_set_top_p(%g): status %d %s"
                 % (p, st, self.L.errmsg())):
            self.rt["top_p"] = f32(p)

    def update_balance(self, tag, routed):
        """moe_layer_update_balance; checks the bias and mirrors the bias and
        lambda updates from `routed` (the counts it should use)."""
        c = self.c
        before = self.L.balance_bias().copy()
        self.L.update_balance()
        after = self.L.balance_bias().copy()
        if c["bias_update_rate"] > 0:
            routed = np.asarray(routed, dtype=np.float64)
            sgn = np.sign(routed.mean() - routed)
            want = (before.astype(np.float32)
                    + np.float32(c["bias_update_rate"]) * sgn.astype(np.float32))
            check_close(self.name + "/" + tag + "/bias", "balance_bias", after, want)
            self.rt["bias"] = after.copy()
        else:
            check_exact(self.name + "/" + tag + "/bias_unchanged", "balance_bias",
                        after, before)
        if c["gate"] == RELU:
            sp = self.last_ref["sparsity"]
            self.rt["lam"] = self.rt["lam"] * 1.2 ** np.sign(c["relu_target_sparsity"] - sp)

    def reset_stats(self):
        self.L.reset_stats()
        self.rt["acc_cnt"] = np.zeros(self.E)
        self.rt["acc_den"] = 0.0


def run_case(lib, name, d, dff, E, k, seed, body, **kw):
    try:
        cs = Case(lib, name, d, dff, E, k, seed, **kw)
    except mc.MoeCallError as e:
        fail("routing/" + name + "/create", "moe_layer_create failed: %s" % e)
        return
    try:
        body(cs)
    except Exception as e:  # a bug in one case should not hide the others
        import traceback
        traceback.print_exc()
        fail("routing/" + name, "exception %s: %s" % (type(e).__name__, e))
    finally:
        cs.free()


# ------------------------------------------------------- configurations
def case_jitter(lib):
    def body(cs):
        x, dy = cs.data(40)
        cs.step("train", x=x, dy=dy, train=1)
        d1 = cs.L.draws(40)["jitter"]
        cs.step("train_again", x=x, dy=dy, train=1)
        d2 = cs.L.draws(40)["jitter"]
        check(cs.name + "/draws_advance", d1 is not None and d2 is not None
              and not np.array_equal(d1, d2),
              "two training forwards got the same jitter draws")
        cs.step("eval", x=x, dy=dy, train=0)
        # same seed, same draws (a second layer)
        other = mc.Layer(lib, cs.cfg)
        try:
            other.set_params(**cs.params)
            other.forward(x, train=1)
            d3 = other.draws(40)["jitter"]
            check(cs.name + "/draws_deterministic", d3 is not None and np.array_equal(d1, d3),
                  "a second layer with the same seed drew other jitter factors")
        finally:
            other.free()
    run_case(lib, "jitter_top2", 24, 32, 6, 2, 101, body, jitter=0.2, aux_loss_coef=0.05,
             z_loss_coef=0.01, renormalize=1)


def case_noisy(lib):
    def body(cs):
        x, dy = cs.data(48)
        cs.step("train", x=x, dy=dy, train=1)
        cs.step("eval", x=x, dy=dy, train=0)
    run_case(lib, "noisy_top2", 24, 32, 8, 2, 102, body, noisy_gate=1,
             importance_loss_coef=0.1, load_loss_coef=0.1, renormalize=1)
    run_case(lib, "noisy_top2_cap_score", 24, 32, 8, 2, 135,
             lambda cs: cs.step("train", T=40, train=1), noisy_gate=1,
             importance_loss_coef=0.1, load_loss_coef=0.1, renormalize=1,
             capacity_factor=1.0, drop_policy=SCORE)
    run_case(lib, "noisy_top1_norenorm_z", 16, 24, 4, 1, 103,
             lambda cs: cs.step("train", T=32, train=1), noisy_gate=1,
             importance_loss_coef=0.05, load_loss_coef=0.2, z_loss_coef=0.01, renormalize=0)


def case_gshard(lib):
    def body(cs):
        x, dy = cs.data(40)
        r = cs.step("train", x=x, dy=dy, train=1)
        if r is not None:
            n_drop = int(np.sum(r["experts"][:, 1] < 0))
            check(cs.name + "/some_second_dropped", 0 < n_drop < 40,
                  "the reference dropped %d of 40 second choices (test data too extreme)"
                  % n_drop, "%d of 40" % n_drop)
        cs.step("eval", x=x, dy=dy, train=0)
    run_case(lib, "gshard_top2", 24, 32, 4, 2, 104, body, gshard_random_second=1,
             balance_top1_only=1, aux_loss_coef=0.1, capacity_factor=1.0,
             drop_policy=POS, renormalize=1)


def case_switch(lib):
    run_case(lib, "switch_top1_cap1_jitter", 24, 32, 4, 1, 105,
             lambda cs: cs.step("train", T=48, train=1), jitter=0.01, capacity_factor=1.0,
             drop_policy=POS, renormalize=0, aux_loss_coef=0.01, z_loss_coef=0.001,
             rscale=2.0)


def case_expert_choice(lib):
    run_case(lib, "ec_c1", 16, 24, 4, 2, 106,
             lambda cs: cs.step("train", T=32, train=1), select=EC, ec_capacity=1.0,
             z_loss_coef=0.01, aux_loss_coef=0.01)

    def body2(cs):
        cs.step("train_T32", T=32, train=1)
        cs.step("train_T6", T=6, train=1)
    run_case(lib, "ec_c2", 16, 24, 4, 2, 107, body2, select=EC, ec_capacity=2.0,
             weight_scale=1.5)
    run_case(lib, "ec_c4.5_T8", 16, 24, 4, 2, 108,
             lambda cs: cs.step("train", T=8, train=1), select=EC, ec_capacity=4.5)

    def body_inf(cs):
        x, dy = cs.data(32)
        cs.step("train", x=x, dy=dy, train=1)
        cs.step("eval", x=x, dy=dy, train=0)
    run_case(lib, "ec_inference0", 16, 24, 4, 2, 109, body_inf, select=EC, ec_capacity=1.0,
             ec_inference=0, renormalize=1)
    run_case(lib, "ec_inference0_norenorm", 16, 24, 6, 3, 110, body_inf, select=EC,
             ec_capacity=1.0, ec_inference=0, renormalize=0)
    run_case(lib, "ec_inference1", 16, 24, 4, 2, 111, body_inf, select=EC, ec_capacity=1.0,
             ec_inference=1)


def case_sigmoid_bias(lib):
    def body(cs):
        b0 = cs.L.balance_bias()
        check_exact(cs.name + "/bias_initial", "balance_bias",
                    None if b0 is None else b0.copy(), np.zeros(cs.E, dtype=np.float32))
        x, dy = cs.data(48)
        r1 = cs.step("fwd1", x=x, dy=dy, train=1)
        if r1 is None:
            return
        cs.update_balance("update1", r1["routed"])
        # does the moved bias change the selection of this x?
        gn = torch.sigmoid(torch.tensor(x.astype(np.float64))
                           @ torch.tensor(cs.params["router"].astype(np.float64)).t()).numpy()
        k = cs.rt["k"]
        a = stable_desc(gn)[:, :k]
        b = stable_desc(gn + cs.rt["bias"][None, :].astype(np.float64))[:, :k]
        nchg = int(np.sum(np.any(a != b, axis=1)))
        check(cs.name + "/bias_changes_selection", nchg > 0,
              "the test's bias changed no selection (test design)", "%d tokens" % nchg)
        r2 = cs.step("fwd2_biased", x=x, dy=dy, train=1)
        if r2 is None:
            return
        cs.update_balance("update2", r2["routed"])
        cs.step("fwd3_biased", T=40, train=1)
        # restore a bias through the live view
        bias = cs.L.balance_bias()
        bias[:] = cs.rng.normal(0.0, 0.1, cs.E).astype(np.float32)
        cs.rt["bias"] = bias.copy()
        cs.step("fwd4_restored_bias", x=x, dy=dy, train=1)
    run_case(lib, "sigmoid_bias", 16, 24, 8, 2, 112, body, gate=SIGMOID, renormalize=1,
             bias_update_rate=0.1, weight_scale=2.5, aux_loss_coef=0.01)

    def body_cap(cs):
        x, dy = cs.data(40)
        r1 = cs.step("fwd1", x=x, dy=dy, train=1)
        if r1 is not None:
            cs.update_balance("update1", r1["routed"])
            cs.step("fwd2_biased", x=x, dy=dy, train=1)
    run_case(lib, "sigmoid_bias_cap_score", 16, 24, 8, 2, 113, body_cap, gate=SIGMOID,
             renormalize=1, bias_update_rate=0.1, capacity_factor=1.0, drop_policy=SCORE)
    run_case(lib, "sigmoid_norenorm_z", 16, 24, 6, 2, 114,
             lambda cs: cs.step("train", T=30, train=1), gate=SIGMOID, renormalize=0,
             z_loss_coef=0.01, aux_loss_coef=0.01)


def case_dead(lib):
    def body(cs):
        x, dy = cs.data(24)
        bias = cs.L.balance_bias()
        bias[:] = 0.0
        bias[3] = -10.0          # expert 3 never selected
        cs.rt["bias"] = bias.copy()
        got = []
        for i in range(3):
            r = cs.step("fwd%d_expert3_off" % (i + 1), x=x, dy=dy, train=1, backward=False)
            got.append(cs.L.stats()["dead_experts"])
            if r is not None and i == 0:
                check(cs.name + "/expert3_unused", r["routed"][3] == 0,
                      "the reference routed %d tokens to expert 3" % r["routed"][3])
        bias[3] = 0.0
        cs.rt["bias"] = bias.copy()
        cs.step("fwd4_expert3_on", x=x, dy=dy, train=1, backward=False)
        got.append(cs.L.stats()["dead_experts"])
        # dead_window 2: dead after the 2nd forward without tokens; alive again
        # as soon as it gets tokens (the 1st forward's value is not checked)
        check(cs.name + "/dead_experts", got[1:] == [1, 1, 0],
              "dead_experts after forwards 1..4: %s, want [?, 1, 1, 0]" % got,
              "after forwards 1..4: %s" % got)
    run_case(lib, "dead_window2", 16, 24, 6, 2, 138, body, gate=SIGMOID, renormalize=1,
             bias_update_rate=0.1, dead_window=2)


def case_seq(lib):
    run_case(lib, "seq_aux_sigmoid", 16, 24, 8, 2, 115,
             lambda cs: cs.step("train", T=24, train=1), gate=SIGMOID, renormalize=1,
             seq_aux_loss_coef=0.1, seq_len=8, z_loss_coef=0.001)
    run_case(lib, "seq_aux_softmax", 16, 24, 6, 2, 116,
             lambda cs: cs.step("train", T=20, train=1), renormalize=1,
             seq_aux_loss_coef=0.05, seq_len=5, aux_loss_coef=0.01)


def case_groups(lib):
    run_case(lib, "groups_softmax", 16, 24, 8, 2, 117,
             lambda cs: cs.step("train", T=40, train=1), n_groups=4, topk_groups=2,
             renormalize=1, aux_loss_coef=0.01)

    def body(cs):
        x, dy = cs.data(40)
        r1 = cs.step("fwd1", x=x, dy=dy, train=1)
        if r1 is not None:
            cs.update_balance("update1", r1["routed"])
            cs.step("fwd2_biased", x=x, dy=dy, train=1)
    run_case(lib, "groups_sigmoid", 16, 24, 8, 2, 118, body, gate=SIGMOID, n_groups=4,
             topk_groups=2, renormalize=1, bias_update_rate=0.05, z_loss_coef=0.01)


def case_shared(lib):
    for sg in (0, 1):
        run_case(lib, "shared_top2_gate%d" % sg, 16, 24, 4, 2, 119 + sg,
                 lambda cs: cs.step("train", T=32, train=1), shared_d_ff=20, shared_gate=sg,
                 renormalize=1, aux_loss_coef=0.01)
    run_case(lib, "shared_gelu_gate1", 16, 24, 4, 2, 121,
             lambda cs: cs.step("train", T=32, train=1), expert=GELU, shared_d_ff=12,
             shared_gate=1, renormalize=0)


def case_fine(lib):
    run_case(lib, "fine_E16_k6", 16, 8, 16, 6, 142,
             lambda cs: cs.step("train", T=40, train=1), renormalize=1, aux_loss_coef=0.01,
             z_loss_coef=0.001, capacity_factor=1.0, drop_policy=SCORE)


def case_topp(lib):
    def body(cs):
        x, dy = cs.data(48)
        r = cs.step("p0.5", x=x, dy=dy, train=1)
        if r is not None:
            n = (r["experts"] >= 0).sum(axis=1)
            check(cs.name + "/variable_count", len(set(n.tolist())) > 1,
                  "every token took %s experts (test data too uniform)" % n[0],
                  "counts %s" % sorted(set(n.tolist())))
        cs.set_top_p("set_top_p_0.8", 0.8)
        cs.step("p0.8", x=x, dy=dy, train=1)
        for bad in (0.0, 1.5):
            st = cs.L.set_top_p(bad)
            check(cs.name + "/set_top_p_%g_fails" % bad, st != 0,
                  "moe_layer_set_top_p(%g) returned %d" % (bad, st), "status %d" % st)
        cs.step("p0.8_after_bad", x=x, dy=dy, train=1)
        cs.set_top_p("set_top_p_1", 1.0)
        cs.step("p1.0", x=x, dy=dy, train=1)
    run_case(lib, "topp", 16, 24, 8, 4, 123, body, select=TOPP, top_p=0.5,
             entropy_loss_coef=0.05, aux_loss_coef=0.01, renormalize=1, rscale=1.5)
    run_case(lib, "topp_cap", 16, 24, 6, 3, 136,
             lambda cs: cs.step("train", T=32, train=1), select=TOPP, top_p=0.6,
             renormalize=1, capacity_factor=1.0, drop_policy=POS, rscale=1.5)
    run_case(lib, "topp_norenorm", 16, 24, 6, 3, 124,
             lambda cs: cs.step("train", T=32, train=1), select=TOPP, top_p=0.6,
             renormalize=0, weight_scale=2.0, z_loss_coef=0.01, rscale=1.5)


def case_set_top_k(lib):
    def body(cs):
        x, dy = cs.data(36)
        cs.step("k2", x=x, dy=dy, train=1)
        cs.set_top_k("set_top_k_1", 1)
        cs.step("k1", x=x, dy=dy, train=1)
        cs.set_top_k("set_top_k_3", 3)
        cs.step("k3", x=x, dy=dy, train=1)
        for bad in (4, 0):
            st = cs.L.set_top_k(bad)
            check(cs.name + "/set_top_k_%d_fails" % bad, st != 0,
                  "moe_layer_set_top_k(%d) with max_top_k 3 returned %d" % (bad, st),
                  "status %d" % st)
        cs.step("k3_after_bad", x=x, dy=dy, train=1)
    run_case(lib, "set_top_k", 16, 24, 6, 2, 125, body, max_top_k=3, renormalize=1,
             aux_loss_coef=0.05)

    def body_cap(cs):
        x, dy = cs.data(30)
        cs.step("k2", x=x, dy=dy, train=1)
        cs.set_top_k("set_top_k_1", 1)
        cs.step("k1", x=x, dy=dy, train=1)
        cs.set_top_k("set_top_k_3", 3)
        cs.step("k3", x=x, dy=dy, train=1)
    run_case(lib, "set_top_k_cap", 16, 24, 6, 2, 137, body_cap, max_top_k=3, renormalize=1,
             capacity_factor=1.0, drop_policy=SCORE)

    def body0(cs):
        st = cs.L.set_top_k(3)
        check(cs.name + "/set_top_k_above_top_k_fails", st != 0,
              "moe_layer_set_top_k(3) with top_k 2, max_top_k 0 returned %d" % st,
              "status %d" % st)
        cs.set_top_k("set_top_k_1", 1)
        cs.step("k1", T=20, train=1)
    run_case(lib, "set_top_k_nomax", 16, 24, 6, 2, 126, body0, renormalize=0)


def case_hash(lib):
    def body_err(cs):
        x, dy = cs.data(16)
        st, _ = cs.L.forward_raw(x, 16, 1)
        msg = cs.L.errmsg()
        check(cs.name + "/forward_without_ids_fails", st != 0 and bool(msg),
              "hash forward without token ids: status %d, message %r" % (st, msg),
              "status %d: %s" % (st, msg))
        ids = cs.ids(16)
        cs.step("train", x=x, dy=dy, train=1, ids=ids)
        cs.step("eval", x=x, dy=dy, train=0, ids=ids)
        # fixed ids with known hashes: 0 and a large one
        ids = np.array([0, 1, 2, 3, 2147483647, 12345, 0, 7] * 2, dtype=np.int32)
        cs.step("fixed_ids", x=x, dy=dy, train=1, ids=ids)
    run_case(lib, "hash_k1", 16, 24, 4, 1, 127, body_err, select=HASH)

    def body2(cs):
        cs.step("train", T=30, train=1, ids=cs.ids(30))
    run_case(lib, "hash_k2_cap", 16, 24, 5, 2, 128, body2, select=HASH,
             capacity_factor=1.0, drop_policy=POS, weight_scale=2.0)
    run_case(lib, "hash_k2_dropless_gelu", 16, 24, 5, 2, 129, body2, select=HASH,
             expert=GELU)


def case_relu(lib):
    def body(cs):
        x, dy = cs.data(40)
        r1 = cs.step("fwd1", x=x, dy=dy, train=1)
        if r1 is None:
            return
        lam0 = cs.rt["lam"]
        cs.update_balance("update1", r1["routed"])
        check(cs.name + "/lambda_moves", cs.rt["lam"] != lam0,
              "the reference lambda did not move (sparsity %g == target?)" % r1["sparsity"],
              "%g -> %g (sparsity %.3f, target %g)"
              % (lam0, cs.rt["lam"], r1["sparsity"], cs.c["relu_target_sparsity"]))
        cs.step("fwd2", x=x, dy=dy, train=1)
        cs.update_balance("update2", cs.last_ref["routed"])
        cs.step("fwd3", T=24, train=1)
    run_case(lib, "relu_all_up", 16, 24, 8, 2, 130, body, gate=RELU, select=ALL,
             relu_l1_coef=0.01, relu_target_sparsity=0.9, weight_scale=1.5,
             aux_loss_coef=0.01)
    run_case(lib, "relu_all_down", 16, 24, 8, 2, 131, body, gate=RELU, select=ALL,
             relu_l1_coef=0.05, relu_target_sparsity=0.1, z_loss_coef=0.001)


def case_global(lib):
    def body(cs):
        rA = cs.step("fwdA", T=24, train=1)
        rB = cs.step("fwdB_accumulated", T=16, train=1)
        if rA is None or rB is None:
            return
        if cs.c["bias_update_rate"] > 0:
            cs.update_balance("update_accumulated", rA["routed"] + rB["routed"])
        cs.reset_stats()
        cs.step("fwdC_after_reset", T=20, train=1)
    run_case(lib, "global_softmax", 16, 24, 6, 2, 132, body, global_stats=1,
             aux_loss_coef=0.1, renormalize=1)
    run_case(lib, "global_sigmoid_bias", 16, 24, 6, 2, 133, body, global_stats=1,
             gate=SIGMOID, bias_update_rate=0.1, aux_loss_coef=0.1, renormalize=1)


def case_threads(lib):
    run_case(lib, "noisy_top2_threads2", 24, 32, 8, 2, 134,
             lambda cs: cs.step("train", T=48, train=1), noisy_gate=1, n_threads=2,
             importance_loss_coef=0.1, load_loss_coef=0.1, jitter=0.05, renormalize=1,
             shared_d_ff=16, shared_gate=1)


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
    check("routing/api/" + name, good,
          "create status %d, handle %s, message %r; config_check status %d, message %r"
          % (st, "NULL" if not h.value else "set", msg, st2, msg2),
          "status %d: %s" % (st, msg))
    if st == 0 and h.value:
        lib.moe_layer_free(h)


def create_expect_ok(lib, name, cfg):
    err = mc.MoeError()
    h = ctypes.c_void_p()
    st = lib.moe_layer_create(ctypes.byref(h), ctypes.byref(cfg), ctypes.byref(err))
    check("routing/api/" + name, st == 0 and bool(h.value),
          "create status %d: %s" % (st, err.msg.decode(errors="replace")))
    if st == 0 and h.value:
        lib.moe_layer_free(h)


def api_checks(lib):
    cd = lambda E=8, k=2, **kw: mc.config_default(lib, 16, 24, E, k, max_tokens=32, **kw)
    c = cd()
    zero_fields = [n for n, _ in mc.LayerConfig._fields_
                   if n in ("seed", "max_top_k", "jitter", "noisy_gate", "importance_loss_coef",
                            "load_loss_coef", "gshard_random_second", "balance_top1_only",
                            "entropy_loss_coef", "ec_inference", "n_groups", "topk_groups",
                            "bias_update_rate", "seq_aux_loss_coef", "seq_len", "shared_d_ff",
                            "shared_gate", "relu_l1_coef", "global_stats")]
    got = mc.config_to_dict(c)
    bad = {n: got[n] for n in zero_fields if got[n] != 0}
    check("routing/api/config_default_off", not bad,
          "routing fields not zero (off) by default: %s" % bad)

    create_expect_fail(lib, "ec_capacity0", cd(select=EC, ec_capacity=0.0))
    create_expect_fail(lib, "ec_not_dropless", cd(select=EC, ec_capacity=1.0,
                                                  capacity_factor=1.0))
    create_expect_fail(lib, "groups_not_dividing", cd(E=8, n_groups=3, topk_groups=1))
    create_expect_fail(lib, "topp_0", cd(select=TOPP, top_p=0.0))
    create_expect_fail(lib, "topp_1.5", cd(select=TOPP, top_p=1.5))
    create_expect_ok(lib, "topp_1_ok", cd(select=TOPP, top_p=1.0))
    create_expect_fail(lib, "hash_aux", cd(select=HASH, aux_loss_coef=0.1))
    create_expect_fail(lib, "hash_z", cd(select=HASH, z_loss_coef=0.1))
    create_expect_fail(lib, "hash_entropy", cd(select=HASH, entropy_loss_coef=0.1))
    create_expect_fail(lib, "load_without_noise", cd(load_loss_coef=0.1))
    create_expect_fail(lib, "load_k_eq_E", cd(E=4, k=4, noisy_gate=1, load_loss_coef=0.1))
    create_expect_fail(lib, "max_top_k_gt_E", cd(E=4, k=2, max_top_k=5))

    # seq_len: a forward whose T is not a multiple fails
    cfg = cd(gate=SIGMOID, seq_aux_loss_coef=0.1, seq_len=8)
    try:
        L = mc.Layer(lib, cfg)
    except mc.MoeCallError as e:
        fail("routing/api/seq_create", "create failed: %s" % e)
        return
    try:
        L.lib.moe_layer_init_params(L.h, 7)
        x = np.random.default_rng(3).normal(0.0, 1.0, (12, 16)).astype(np.float32)
        st, _ = L.forward_raw(x, 12, 1)
        check("routing/api/seq_T_not_multiple_fails", st != 0 and bool(L.errmsg()),
              "forward with T=12, seq_len=8: status %d, message %r" % (st, L.errmsg()),
              "status %d: %s" % (st, L.errmsg()))
    finally:
        L.free()

    # the config comes back as set
    cfg = cd(select=TOPP, top_p=0.7, max_top_k=3, entropy_loss_coef=0.01, seed=77,
             jitter=0.1, shared_d_ff=8, shared_gate=1)
    try:
        L = mc.Layer(lib, cfg)
    except mc.MoeCallError as e:
        fail("routing/api/get_config_create", "create failed: %s" % e)
        return
    try:
        gc = mc.config_to_dict(lib.moe_layer_get_config(L.h).contents)
        sc = mc.config_to_dict(cfg)
        bad = {n: (gc[n], sc[n]) for n in sc if n != "n_threads" and gc[n] != sc[n]}
        check("routing/api/get_config", not bad, "fields (got, set): %s" % bad)
    finally:
        L.free()


def main():
    lib = mc.load_for_test("test_routing_torch",
                           ("moe_layer_slots", "moe_layer_set_token_ids", "moe_layer_set_top_k",
                            "moe_layer_set_top_p", "moe_layer_update_balance",
                            "moe_layer_balance_bias", "moe_layer_reset_stats", "moe_layer_get_draws"))
    if lib is None:
        return 1
    torch.set_num_threads(1)
    only = os.environ.get("ROUTING_ONLY")    # a debugging aid: run one group
    groups = [("api", api_checks), ("jitter", case_jitter), ("noisy", case_noisy),
              ("gshard", case_gshard), ("switch", case_switch),
              ("ec", case_expert_choice), ("bias", case_sigmoid_bias), ("dead", case_dead), ("seq", case_seq),
              ("groups", case_groups), ("shared", case_shared), ("fine", case_fine),
              ("topp", case_topp), ("topk", case_set_top_k), ("hash", case_hash),
              ("relu", case_relu), ("global", case_global), ("threads", case_threads)]
    for gname, fn in groups:
        if only and gname not in only.split(","):
            continue
        try:
            fn(lib)
        except Exception as e:
            import traceback
            traceback.print_exc()
            fail("routing/" + gname, "exception %s: %s" % (type(e).__name__, e))
    n_checks, failed = counts()
    print("# test_routing_torch: %d checks, %d failed" % (n_checks, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
