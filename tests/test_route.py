"""test_route.py: `moe route --json` reports the routing that is computed.

  - Models trained here (a few steps; routers softmax top-2, sigmoid with the
    aux-loss-free bias, shared expert, top-p; and one with a dense first
    block): for the same token ids, the experts of every token in every MoE
    layer (ids, in order) equal those of the training forward in evaluation
    mode (moe_model_load + moe_model_forward + moe_layer_routing through
    libmoe.so), and their weights agree within 1e-5 (relative to 1).
  - GGUF files (`moe synth`, mixtral and qwen2moe, and with --k 1): the
    per-token experts of `moe route --json`, tallied per layer, equal the
    engine's counters (the JSON's last line, moe_infer_expert_counts) exactly,
    and equal `moe run -n 0 --stats`'s percentages on the same prompt to its
    printed precision; the same with --window 16.
"""
import ctypes
import json
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MOE = os.environ.get("MOE_BIN") or os.path.join(ROOT, "build", "moe")
LIB = os.environ.get("MOE_LIB") or os.path.join(ROOT, "build", "libmoe.so")
NAME = "test_route"
failed = False
TEXT = ("Once there was a fox named Max who lived near the river. 12 + 7 = 19 für Größe naïve 日本語 👍\n"
        "def total(xs):\n    s = 0\n    for x in xs:\n        s += x\n    return s\n")


def ok(name):
    print("ok %s/%s" % (NAME, name))


def fail(name, why):
    global failed
    failed = True
    print("FAIL %s/%s: %s" % (NAME, name, why))


def moe(*args, timeout=300):
    r = subprocess.run([MOE, "--threads", "2"] + [str(a) for a in args], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=timeout)
    return r.returncode, r.stdout.decode("utf-8", "replace"), r.stderr.decode("utf-8", "replace")


def route_json(model, *extra):
    r = subprocess.run([MOE, "--threads", "2", "route", model, "-p", TEXT, "--json"] + [str(a) for a in extra],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300)
    if r.returncode != 0:
        raise RuntimeError("moe route: rc %d: %s" % (r.returncode, r.stderr.decode("utf-8", "replace")[-300:]))
    try:
        out = r.stdout.decode("utf-8")  # strict: the JSON must be valid UTF-8
    except UnicodeDecodeError as e:
        raise RuntimeError("moe route --json is not valid UTF-8: %s" % e)
    lines = [json.loads(l) for l in out.splitlines() if l.strip()]
    return [l for l in lines if "i" in l], lines[-1]


class Training:
    """The training model's forward and routing through the public C API."""

    def __init__(self):
        L = self.lib = ctypes.CDLL(LIB)
        vp = ctypes.c_void_p
        L.moe_model_load.argtypes = [ctypes.POINTER(vp), ctypes.POINTER(vp), ctypes.c_char_p, ctypes.c_int,
                                     ctypes.c_int, ctypes.c_char_p]
        L.moe_model_forward.argtypes = [vp, ctypes.POINTER(ctypes.c_int32), ctypes.POINTER(ctypes.c_int32),
                                        ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.POINTER(ctypes.c_float),
                                        ctypes.c_char_p]
        L.moe_model_moe_layer.argtypes = [vp, ctypes.c_int]
        L.moe_model_moe_layer.restype = vp
        L.moe_layer_slots.argtypes = [vp]
        L.moe_layer_routing.argtypes = [vp, ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_float),
                                        ctypes.POINTER(ctypes.c_int)]
        L.moe_model_free.argtypes = [vp]
        L.moe_tokenizer_free.argtypes = [vp]

    def routing(self, path, ids, n_layers):
        L = self.lib
        m, tok = ctypes.c_void_p(), ctypes.c_void_p()
        err = ctypes.create_string_buffer(512)
        if L.moe_model_load(ctypes.byref(m), ctypes.byref(tok), path.encode(), 1, 1, err) != 0:
            raise RuntimeError(err.value.decode())
        try:
            n = len(ids)
            x = (ctypes.c_int32 * n)(*ids)
            if L.moe_model_forward(m, x, None, 1, n, 0, None, err) != 0:
                raise RuntimeError(err.value.decode())
            out = {}
            for l in range(n_layers):
                ly = L.moe_model_moe_layer(m, l)
                if not ly:
                    continue
                s = L.moe_layer_slots(ly)
                ex = (ctypes.c_int * (n * s))()
                w = (ctypes.c_float * (n * s))()
                kept = (ctypes.c_int * (n * s))()
                L.moe_layer_routing(ly, ex, w, kept)
                out[l] = [[(ex[t * s + j], w[t * s + j]) for j in range(s) if ex[t * s + j] >= 0 and kept[t * s + j]]
                          for t in range(n)]
            return out
        finally:
            L.moe_model_free(m)
            L.moe_tokenizer_free(tok)


def compare_trained(tag, model, n_layers, tr):
    try:
        toks, _ = route_json(model)
    except RuntimeError as e:
        fail(tag, str(e))
        return
    ids = [t["id"] for t in toks]
    try:
        ref = tr.routing(model, ids, n_layers)
    except RuntimeError as e:
        fail(tag, "training forward: %s" % e)
        return
    layers_json = [ly["layer"] for ly in toks[0]["layers"]]
    if layers_json != sorted(ref):
        fail(tag, "MoE layers: route says %s, the model has %s" % (layers_json, sorted(ref)))
        return
    worst, bad = 0.0, []
    for t, tj in enumerate(toks):
        for ly in tj["layers"]:
            want = ref[ly["layer"]][t]
            if ly["experts"] != [e for e, _ in want]:
                bad.append("token %d layer %d: route %s, training %s" % (t, ly["layer"], ly["experts"],
                                                                         [e for e, _ in want]))
                continue
            for a, (_, b) in zip(ly["weights"], want):
                worst = max(worst, abs(a - b))
    if bad:
        fail(tag, "%d (token, layer) pairs differ; first: %s" % (len(bad), bad[0]))
    elif worst > 1e-5:
        fail(tag, "weights differ by %.3g (> 1e-5)" % worst)
    else:
        print("ok %s/%s (%d tokens, layers %s, worst weight difference %.2g)" % (NAME, tag, len(toks),
                                                                                 layers_json, worst))


def stats_percentages(model, *extra):
    rc, out, err = moe("run", model, "-p", TEXT, "-n", "0", "--temp", "0", "--stats", *extra)
    if rc != 0:
        raise RuntimeError("moe run --stats: rc %d: %s" % (rc, err[-300:]))
    rows = {}
    for line in err.splitlines():
        m = re.match(r"^\s+(\d+)((?:\s+\d+\.\d)+)\s+\d+\s*$", line)
        if m:
            vals = [float(v) for v in m.group(2).split()]
            rows[int(m.group(1))] = vals[:-2]  # the per-expert columns (then max, min)
    return rows


def compare_gguf(tag, model, k=0):
    try:
        toks, summary = route_json(model, *(["--k", k] if k else []))
        stats = stats_percentages(model, *(["--experts-per-token", k] if k else []))
    except RuntimeError as e:
        fail(tag, str(e))
        return
    layers = summary.get("layers", [])
    counts = summary.get("counts", [])
    E = len(counts[0]) if counts else 0
    tally = {l: [0] * E for l in layers}
    for t in toks:
        for ly in t["layers"]:
            for e in ly["experts"]:
                tally[ly["layer"]][e] += 1
    exact = all(tally[l] == counts[j] for j, l in enumerate(layers))
    pct_bad = []
    for j, l in enumerate(layers):
        tot = sum(counts[j])
        mine = [round(100.0 * c / tot, 1) for c in counts[j]]
        if l not in stats or any(abs(a - b) > 0.051 for a, b in zip(mine, stats[l])) or len(stats[l]) != E:
            pct_bad.append("layer %d: route %s, --stats %s" % (l, mine, stats.get(l)))
    if not layers:
        fail(tag, "no MoE layer in the route output")
    elif not exact:
        fail(tag, "per-token experts tallied %s != engine counts %s" % (tally, counts))
    elif pct_bad:
        fail(tag, "; ".join(pct_bad[:3]))
    else:
        print("ok %s/%s (%d tokens, %d layers; counts %s)" % (NAME, tag, len(toks), len(layers), counts[0]))


def check_window(model):
    """--window W: the first window is routed as the whole text's first W
    tokens, every token is reported once, and the per-token experts still add
    up to the engine's counters."""
    try:
        whole, _ = route_json(model)
        win, summary = route_json(model, "--window", "16")
    except RuntimeError as e:
        fail("gguf/window", str(e))
        return
    layers = summary["layers"]
    E = len(summary["counts"][0])
    tally = [[0] * E for _ in layers]
    for t in win:
        for j, ly in enumerate(t["layers"]):
            for e in ly["experts"]:
                tally[j][e] += 1
    same_first = [t["layers"] for t in win[:16]] == [t["layers"] for t in whole[:16]]
    if tally != summary["counts"] or not same_first or len(win) != len(whole):
        fail("gguf/window", "counts equal %s, first window equal %s, %d vs %d tokens" % (
            tally == summary["counts"], same_first, len(win), len(whole)))
    else:
        ok("gguf/window")


def main():
    for p in (MOE, LIB):
        if not os.path.exists(p):
            print("FAIL %s: %s does not exist" % (NAME, p))
            return 1
    tr = Training()
    with tempfile.TemporaryDirectory() as tmp:
        common = ["--corpus-bytes", "60000", "--steps", "4", "--eval-every", "0", "--batch", "2", "--ctx", "128",
                  "--d", "32", "--heads", "2", "--kv-heads", "2", "--layers", "2", "--vocab", "300", "--quiet"]
        cases = [("softmax", ["--experts", "4", "--k", "2"]),
                 ("sigmoid_bias", ["--router", "sigmoid", "--experts", "4", "--k", "2"]),
                 ("shared", ["--router", "shared", "--experts", "4", "--k", "2"]),
                 ("top_p", ["--router", "top-p", "--experts", "4"]),
                 ("dense_first", ["--experts", "4", "--k", "2", "--layers", "3", "--dense-first", "1"])]
        for tag, opts in cases:
            run = os.path.join(tmp, tag)
            args = common + opts
            rc, out, err = moe("train", "--out", run, *args)
            if rc != 0:
                fail("trained/" + tag, "moe train: rc %d: %s" % (rc, err.strip()[-300:]))
                continue
            nl = int(args[len(args) - 1 - args[::-1].index("--layers") + 1])
            compare_trained("trained/" + tag, os.path.join(run, "model.gguf"), nl, tr)
        for arch in ("mixtral", "qwen2moe"):
            path = os.path.join(tmp, arch + ".gguf")
            rc, out, err = moe("synth", path, "--arch", arch)
            if rc != 0:
                fail("gguf/" + arch, "moe synth: rc %d: %s" % (rc, err.strip()[-300:]))
                continue
            compare_gguf("gguf/" + arch, path)
        compare_gguf("gguf/mixtral_k1", os.path.join(tmp, "mixtral.gguf"), 1)
        check_window(os.path.join(tmp, "mixtral.gguf"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
