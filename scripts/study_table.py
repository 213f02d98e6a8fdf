#!/usr/bin/env python3
"""study_table.py OUT CORPUS [--eval-bytes N] [--timing FILE] [NAME...]:
the tables of docs/STUDY.md from the runs of scripts/study_run.sh
(OUT/NAME/metrics.jsonl, model.gguf), the step times of
scripts/study_timing.py (FILE, default OUT/timing.json) and the held-out
files of scripts/study_corpus.sh (CORPUS/heldout/*.txt). Prints Markdown.

Per configuration (NAMEs, default: every run in OUT, the study's order):
- final validation loss (nats/token, the trainer's validation: 16 batches
  drawn from every source);
- steps to reach the dense run's final validation loss: the first
  evaluation at or below it, linearly interpolated with the one before;
  "-" when never reached; ratio to dense's steps;
- s/step: the median of scripts/study_timing.py (interleaved, apart from
  the runs); wall seconds to dense's final loss = steps x s/step, ratio to
  dense's steps x dense's s/step; tokens/s = tokens per step / s/step;
- max-violation (mean / max over layers): "batch" of the training batch of
  the last evaluation (2048 tokens, the trainer's routing), "val" of the
  last validation (16 batches from every source, the routing of
  evaluation: token choice for expert choice); experts per token
  (assignments / tokens, mean over layers) of the same training batch;
  dead experts: the most in any layer of any evaluation's batch;
- I(domain; expert) in bits, mean over layers: "val" from the trainer's
  per-source routing of the last validation (every source, training-mode
  routing); "held-out" from `moe route --json --window 128` (the engine's
  routing) on each domain's first N bytes of CORPUS/heldout;
- bits per byte per domain: `moe eval` on the same prefixes (default
  N = 40000 bytes per domain). Both are cached in MODEL.study.json.
Capacity sweep: top2 (dropless) and cap2.0 / cap1.25 / cap1.0 with the
dropped fraction averaged over all evaluations too.
"""
import json
import math
import os
import subprocess
import sys
import tempfile

MOE = os.environ.get("MOE", "build/moe")
ORDER = ["dense", "top2", "nobal", "top1", "ec", "sigmoid", "fine_shared", "topp", "cap1.0", "cap1.25", "cap2.0",
         "e16", "e32", "fine_k8", "fine64_k8"]


def read_metrics(d):
    head, steps, val, route, evr = {}, [], [], [], []
    for line in open(os.path.join(d, "metrics.jsonl")):
        try:
            r = json.loads(line)
        except ValueError:
            continue
        if "header" in r:
            head = r["header"]
        elif "loss" in r and "step" in r:
            steps.append(r)
        elif "val_loss" in r:
            val.append((r["step"], r["val_loss"]))
        elif "routing" in r:
            route.append(r)
        elif "eval_routing" in r:
            evr.append(r)
    return head, steps, val, route, evr


def reach(val, target):
    """the step where the validation curve first reaches target, interpolated"""
    prev = None
    for s, v in val:
        if v <= target:
            if prev is None or prev[1] == v:
                return float(s)
            s0, v0 = prev
            return s0 + (v0 - target) / (v0 - v) * (s - s0)
        prev = (s, v)
    return None


def mi(counts):
    N = sum(sum(r) for r in counts)
    if N == 0:
        return 0.0
    ps = [sum(r) / N for r in counts]
    E = len(counts[0])
    pe = [sum(r[e] for r in counts) / N for e in range(E)]
    return sum(c / N * math.log2(c / N / (ps[s] * pe[e])) for s, r in enumerate(counts)
               for e, c in enumerate(r) if c > 0)


def prefixes(corpus, n, tmp):
    out = {}
    hd = os.path.join(corpus, "heldout")
    for f in sorted(os.listdir(hd)):
        b = open(os.path.join(hd, f), "rb").read()[:n]
        cut = b.rfind(b"\n")
        b = b[:cut + 1] if cut > 0 else b
        p = os.path.join(tmp, f)
        open(p, "wb").write(b.decode("utf-8", "ignore").encode())
        out[f[:-4]] = p
    return out


def routed_mi(model, files):
    per_layer = {}
    doms = sorted(files)
    for di, dname in enumerate(doms):
        r = subprocess.run([MOE, "route", model, "-f", files[dname], "--json", "--window", "128"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        if r.returncode != 0:
            return float("nan")
        for line in r.stdout.decode().splitlines():
            t = json.loads(line)
            if "i" not in t:
                continue
            for ly in t["layers"]:
                tab = per_layer.setdefault(ly["layer"], {})
                row = tab.setdefault(di, {})
                for e in ly["experts"]:
                    row[e] = row.get(e, 0) + 1
    vals = []
    for tab in per_layer.values():
        E = 1 + max(e for row in tab.values() for e in row)
        vals.append(mi([[tab.get(d, {}).get(e, 0) for e in range(E)] for d in range(len(doms))]))
    return sum(vals) / len(vals) if vals else float("nan")


def bpb(model, files):
    """bits per byte per file of one `moe eval` call (its per-file table)"""
    doms = sorted(files)
    r = subprocess.run([MOE, "eval", model] + [files[d] for d in doms], stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL)
    out = {}
    for line in r.stdout.decode().splitlines():
        f = line.split()
        if len(f) >= 7 and f[0] in files.values():
            out[doms[[files[d] for d in doms].index(f[0])]] = float(f[-1])
        if line.startswith("{"):
            out["all"] = json.loads(line).get("bits_per_byte", float("nan"))
    return [out.get(d, float("nan")) for d in doms] + [out.get("all", float("nan"))]


def cached(model, key, fn):
    """fn() once per model file and key: kept in MODEL.study.json next to the
    model (dropped when the model is newer), so that a second table costs nothing"""
    path = model + ".study.json"
    c = {}
    try:
        if os.path.getmtime(path) >= os.path.getmtime(model):
            c = json.load(open(path))
    except (OSError, ValueError):
        c = {}
    if key not in c:
        c[key] = fn()
        with open(path + ".tmp", "w") as f:
            json.dump(c, f)
        os.replace(path + ".tmp", path)
    return c[key]


def fmt(x, f="%.3f"):
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f % x


def opt(args, name, default):
    if name in args:
        i = args.index(name)
        v = args[i + 1]
        del args[i:i + 2]
        return type(default)(v)
    return default


def main():
    args = sys.argv[1:]
    nbytes = opt(args, "--eval-bytes", 40000)
    timing_path = opt(args, "--timing", "")
    if len(args) < 2:
        print(__doc__)
        return 2
    out, corpus = args[0], args[1]
    have = [n for n in sorted(os.listdir(out)) if os.path.exists(os.path.join(out, n, "metrics.jsonl"))]
    names = args[2:] or [n for n in ORDER if n in have] + [n for n in have if n not in ORDER]
    timing = {}
    tp = timing_path or os.path.join(out, "timing.json")
    if os.path.exists(tp):
        timing = json.load(open(tp))
    data = {n: read_metrics(os.path.join(out, n)) for n in names}
    dval = data["dense"][2] if "dense" in data else []
    target = dval[-1][1] if dval else None
    d_step = dval[-1][0] if dval else None
    d_sps = timing.get("dense", {}).get("s_per_step")
    d_wall = d_step * d_sps if d_step and d_sps else None
    if target is not None:
        print("Target: dense's final validation loss %.4f at step %d%s.\n" % (
            target, d_step, "; dense %.4f s/step, %.0f s" % (d_sps, d_wall) if d_wall else ""))
    rows, rows_bpb = [], []
    with tempfile.TemporaryDirectory() as tmp:
        files = prefixes(corpus, nbytes, tmp)
        doms = sorted(files)
        print("| config | params total / active | final val loss | steps to dense final | ratio | s/step | "
              "wall s to dense final | ratio | max-viol batch (mean / max) | max-viol val (mean / max) | dead | "
              "experts/token | I(domain; expert) val / held-out |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for n in names:
            head, steps, val, route, evr = data[n]
            s = reach(val, target) if target is not None else None
            sps = timing.get(n, {}).get("s_per_step")
            w = s * sps if s is not None and sps else None
            tok = head.get("tokens_per_step", 2048)
            lays = route[-1]["routing"]["layers"] if route else []
            mv = [l["max_violation"] for l in lays]
            ept = [sum(l["load"]) / tok for l in lays]
            dead = max([l["dead_experts"] for r in route for l in r["routing"]["layers"]], default=None)
            mi_val, mvv = None, []
            if evr:
                el = evr[-1]["eval_routing"]["layers"]
                mi_val = sum(l["mi_bits"] for l in el) / len(el) if el else None
                mvv = [l["max_violation"] for l in el]
            moe = n != "dense" and lays
            model = os.path.join(out, n, "model.gguf")
            m_held = cached(model, "mi_%d" % nbytes, lambda: routed_mi(model, files)) if moe else None
            print("| %s | %.2f M / %.2f M | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                n, head.get("params", 0) / 1e6, head.get("active_params", 0) / 1e6,
                fmt(val[-1][1] if val else None), fmt(s, "%.0f"), fmt(s / d_step if s and d_step else None, "%.2f"),
                fmt(sps, "%.3f"), fmt(w, "%.0f"), fmt(w / d_wall if w and d_wall else None, "%.2f"),
                "%s / %s" % (fmt(sum(mv) / len(mv) if mv else None, "%.2f"), fmt(max(mv) if mv else None, "%.2f"))
                if moe else "-",
                "%s / %s" % (fmt(sum(mvv) / len(mvv) if mvv else None, "%.2f"), fmt(max(mvv) if mvv else None, "%.2f"))
                if moe else "-", fmt(dead, "%d") if moe else "-",
                fmt(sum(ept) / len(ept) if ept else None, "%.2f") if moe else "-",
                "%s / %s" % (fmt(mi_val), fmt(m_held)) if moe else "-"))
            rows.append((n, head, steps, val, route, sps))
            rows_bpb.append((n, cached(model, "bpb_%d" % nbytes, lambda: bpb(model, files))))
        print()
        print("Bits per byte on the first %d bytes of each domain's held-out file (`moe eval`):\n" % nbytes)
        print("| config | " + " | ".join(doms) + " | all |")
        print("|---|" + "---|" * (len(doms) + 1))
        for n, v in rows_bpb:
            print("| %s | %s |" % (n, " | ".join(fmt(x) for x in v)))
    cap = [r for r in rows if r[0] in ("top2", "cap2.0", "cap1.25", "cap1.0")]
    if cap:
        print()
        print("Capacity sweep (top-2 of 8 x 192, balance loss 0.01; drops by position):\n")
        print("| config | capacity | final val loss | steps to dense final | dropped (last eval) | "
              "dropped (mean over evals) | tokens/s (timing) |")
        print("|---|---|---|---|---|---|---|")
        for n, head, steps, val, route, sps in cap:
            cf = head.get("router", {}).get("capacity_factor", -1)
            last = route[-1]["routing"]["layers"] if route else []
            dl = sum(l["dropped_fraction"] for l in last) / len(last) if last else None
            allv = [sum(l["dropped_fraction"] for l in r["routing"]["layers"]) / len(r["routing"]["layers"])
                    for r in route]
            s = reach(val, target) if target is not None else None
            print("| %s | %s | %s | %s | %s | %s | %s |" % (
                n, "dropless" if cf < 0 else "%g" % cf, fmt(val[-1][1] if val else None), fmt(s, "%.0f"),
                fmt(dl, "%.4f"), fmt(sum(allv) / len(allv) if allv else None, "%.4f"),
                fmt(head.get("tokens_per_step", 2048) / sps if sps else None, "%.0f")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
